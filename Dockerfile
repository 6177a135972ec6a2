# syntax=docker/dockerfile:1
# One image per producer:
#   docker build --build-arg PRODUCER=market-producer -t finstream/market-producer .
# (`make docker-build` builds all five.)
ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
ARG PRODUCER=market-producer
RUN apt-get update \
 && apt-get install -y --no-install-recommends pkg-config libssl-dev zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p "${PRODUCER}" \
 && install -D "target/release/${PRODUCER}" /out/producer

FROM debian:bookworm-slim
ARG PRODUCER=market-producer
LABEL org.opencontainers.image.title="${PRODUCER}" \
      org.opencontainers.image.description="FinStream ingest: ${PRODUCER}" \
      org.opencontainers.image.source="https://github.com/finstream/ingest" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 zlib1g curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home finstream
COPY --from=build /out/producer /usr/local/bin/producer
COPY configs/config.yaml /etc/finstream/config.yaml
ENV FINSTREAM_CONFIG=/etc/finstream/config.yaml
USER 10001
EXPOSE 9090 8081
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8081/health >/dev/null || exit 1
ENTRYPOINT ["/usr/local/bin/producer"]
