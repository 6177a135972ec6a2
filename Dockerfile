# syntax=docker/dockerfile:1
# One small image per producer (and one for provider-sim), from one Dockerfile:
#   docker build --build-arg PRODUCER=market-producer -t finstream/market-producer .
# `make docker-build` builds all five producers and provider-sim.
#
# Stages: chef (toolchain + cargo-chef) → planner (dependency recipe from the manifests) →
# build (dependencies compiled from the recipe: this layer is cached until Cargo.toml/Cargo.lock
# change, so a source edit rebuilds only our crates) → runtime (debian-slim, non-root, no
# compiler, shell kept for the demo-mode entrypoint and curl for the healthcheck).
ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS chef
# librdkafka is compiled by rdkafka-sys: C toolchain (in the image), OpenSSL, zlib.
RUN apt-get update \
 && apt-get install -y --no-install-recommends pkg-config libssl-dev zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS build
ARG PRODUCER=market-producer
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json -p "${PRODUCER}"
COPY . .
RUN cargo build --release --locked -p "${PRODUCER}" --bin "${PRODUCER}" \
 && install -D "target/release/${PRODUCER}" /out/producer

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
ARG PRODUCER=market-producer
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="${PRODUCER}" \
      org.opencontainers.image.description="FinStream ingest: ${PRODUCER}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="https://github.com/finstream/ingest" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="FinStream"
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 zlib1g curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 finstream \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin finstream \
 && mkdir -p /var/lib/finstream/spool && chown -R 10001:10001 /var/lib/finstream
COPY --from=build /out/producer /usr/local/bin/producer
COPY scripts/docker-entrypoint.sh /usr/local/bin/finstream-entrypoint
COPY scripts/demo-env.sh /usr/local/share/finstream/demo-env.sh
COPY configs/demo.yaml /usr/local/share/finstream/demo.yaml
COPY configs/config.yaml /etc/finstream/config.yaml
COPY configs/kafka-seed.yaml /etc/finstream/kafka-seed.yaml
# The config's defaults listen on 0.0.0.0:9090 (metrics) and 0.0.0.0:8081 (health).
# The outage spool (kafka.spool): records held on disk while Kafka is away. Mount a volume here
# so that a restarted container sends what the previous one left.
ENV FINSTREAM_CONFIG=/etc/finstream/config.yaml \
    KAFKA_SPOOL_DIR=/var/lib/finstream/spool
VOLUME ["/var/lib/finstream/spool"]
WORKDIR /var/lib/finstream
USER 10001:10001
# 9090: /metrics (Prometheus); 8081: /health (liveness) and /ready (readiness).
EXPOSE 9090 8081
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
  CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8081/health"]
ENTRYPOINT ["/usr/local/bin/finstream-entrypoint"]
