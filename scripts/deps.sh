#!/usr/bin/env bash
# Installs what building, testing and running locally need, on Debian/Ubuntu (a fresh CI
# machine included). Idempotent and quiet when everything is there already.
#
#   - system packages: a C toolchain, pkg-config, OpenSSL and zlib headers (librdkafka is built
#     from source by rdkafka-sys), Java 17 and Maven (the local Kafka broker), kcat (inspecting
#     topics), curl;
#   - the Apache Kafka jars, from Maven Central (scripts/kafka.sh deps);
#   - the Rust crates (cargo fetch --locked).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf 'deps.sh: %s\n' "$*" >&2; }

packages=(build-essential pkg-config libssl-dev zlib1g-dev openjdk-17-jre-headless maven kcat curl)
missing=()
if command -v dpkg >/dev/null; then
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
fi
if ((${#missing[@]})); then
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  log "installing: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

command -v cargo >/dev/null || { log "cargo not found: install Rust (https://rustup.rs), 1.85 or newer"; exit 1; }

scripts/kafka.sh deps
cargo fetch --locked -q
log "ok"
