# syntax=docker/dockerfile:1
# The five producer images and provider-sim's, from one Dockerfile and one compile:
#   docker build --build-arg PRODUCER=market-producer -t finstream/market-producer .
#   docker build --target provider-sim -t finstream/provider-sim .
# `make docker-build` builds all six; `docker compose up --build` builds them the same way.
#
# Stages: build (every binary in one `cargo build`; the cargo registry and target directory are
# cache mounts, so the six images share one compile and a source edit rebuilds only our crates)
# → runtime (debian-slim, non-root, no compiler; shell kept for the demo-mode entrypoint and
# curl for the healthcheck; the layers every image shares come first) → provider-sim and
# producer (the default target: the binary chosen by PRODUCER).
ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
# librdkafka is compiled by rdkafka-sys: C toolchain (in the image), OpenSSL, zlib.
RUN apt-get update \
 && apt-get install -y --no-install-recommends pkg-config libssl-dev zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# --version prints it (ingest-core's build script reads FINSTREAM_REVISION).
ARG REVISION=unknown
ENV FINSTREAM_REVISION=${REVISION}
# The binaries are stripped: the release profile keeps line tables for profiling, the images
# need none.
RUN --mount=type=cache,id=finstream-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=finstream-target,target=/src/target \
    cargo build --release --locked --bins \
      -p market-producer -p news-producer -p social-producer -p sec-producer -p altdata-producer \
      -p provider-sim \
 && mkdir -p /out \
 && for b in market-producer news-producer social-producer sec-producer altdata-producer provider-sim; do \
      install -s "target/release/$b" "/out/$b"; \
    done

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 zlib1g curl \
 && apt-get clean && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 finstream \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin finstream \
 && mkdir -p /var/lib/finstream/spool && chown -R 10001:10001 /var/lib/finstream
COPY scripts/docker-entrypoint.sh /usr/local/bin/finstream-entrypoint
COPY scripts/demo-env.sh /usr/local/share/finstream/demo-env.sh
COPY configs/demo.yaml /usr/local/share/finstream/demo.yaml
COPY configs/config.yaml /etc/finstream/config.yaml
COPY configs/kafka-seed.yaml /etc/finstream/kafka-seed.yaml
WORKDIR /var/lib/finstream
USER 10001:10001
# Labels every image carries; each target adds its title and description.
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="https://github.com/finstream/ingest" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="FinStream"

# The simulator of every provider (demo mode, tests): plain HTTP/WebSocket on 9400.
FROM runtime AS provider-sim
LABEL org.opencontainers.image.title="provider-sim" \
      org.opencontainers.image.description="FinStream ingest: provider simulator for demo mode and tests"
COPY --from=build /out/provider-sim /usr/local/bin/provider-sim
ENV PROVIDER_SIM_LISTEN=0.0.0.0:9400
EXPOSE 9400
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:9400/_sim/health"]
ENTRYPOINT ["/usr/local/bin/provider-sim"]

# A producer: PRODUCER names the binary (market-producer, news-producer, social-producer,
# sec-producer, altdata-producer).
FROM runtime AS producer
ARG PRODUCER=market-producer
LABEL org.opencontainers.image.title="${PRODUCER}" \
      org.opencontainers.image.description="FinStream ingest: ${PRODUCER}"
COPY --from=build /out/${PRODUCER} /usr/local/bin/producer
# The config's defaults listen on 0.0.0.0:9090 (metrics) and 0.0.0.0:8081 (health).
# The outage spool (kafka.spool): records held on disk while Kafka is away. Mount a volume here
# so that a restarted container sends what the previous one left.
ENV FINSTREAM_CONFIG=/etc/finstream/config.yaml \
    KAFKA_SPOOL_DIR=/var/lib/finstream/spool
VOLUME ["/var/lib/finstream/spool"]
# 9090: /metrics (Prometheus); 8081: /health (liveness) and /ready (readiness).
EXPOSE 9090 8081
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
  CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8081/health"]
ENTRYPOINT ["/usr/local/bin/finstream-entrypoint"]
