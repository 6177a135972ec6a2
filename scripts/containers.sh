#!/usr/bin/env bash
# The project's images, built and run for real with podman (CI's machines have no Docker engine
# and reach no image registry; podman runs real containers there).
#
#   scripts/containers.sh setup     install podman (Debian packages) and write its settings
#   scripts/containers.sh base      local base images under the names the Dockerfile and the
#                                   compose file use: debian:bookworm-slim (mmdebstrap, from
#                                   Debian's packages), rust:1.95-bookworm (that base plus this
#                                   machine's Rust toolchain), apache/kafka:4.1.1 (the Maven
#                                   Central Kafka jars scripts/kafka.sh resolves)
#   scripts/containers.sh build     the five producer images and provider-sim's, with the real
#                                   Dockerfile (one compile shared by all six)
#   scripts/containers.sh check     per image: runs as a non-root user, --version names the
#                                   commit, its HEALTHCHECK passes, and it delivers demo records
#                                   to a Kafka broker (a container of the same Kafka release)
#   scripts/containers.sh test      all of the above, then removes what it started
#   scripts/containers.sh clean     removes every container, network and volume it made
#
# podman here needs runc (crun refuses the machine's hybrid cgroup layout), explicit ulimits under
# the machine's hard limits, and netavark (container-to-container DNS by name): they live in
# .local/podman/containers.conf, which every command below points CONTAINERS_CONF at.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

dir=.local/podman
conf=$dir/containers.conf
export CONTAINERS_CONF=$PWD/$conf
# Names of everything this script creates start with this (clean removes them by it).
prefix=finstream-ct
tag=${IMAGE_TAG:-dev}
images=${IMAGE_PREFIX:-localhost/finstream}
producers=(market news social sec altdata)
rust_image=docker.io/library/rust:1.95-bookworm
debian_image=docker.io/library/debian:bookworm-slim
kafka_image=docker.io/apache/kafka:4.1.1
revision=${REVISION:-$(git rev-parse --short=12 HEAD)}

log() { printf 'containers.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

setup() {
  # shellcheck source=scripts/lib/apt.sh
  . scripts/lib/apt.sh
  apt_install_missing containers.sh podman runc uidmap mmdebstrap netavark aardvark-dns fuse-overlayfs \
    slirp4netns catatonit
  mkdir -p "$dir"
  # nofile: Kafka wants many; podman's default is above this machine's hard limit.
  local nofile
  nofile=$(ulimit -Hn)
  [[ $nofile == unlimited || $nofile -gt 65536 ]] && nofile=65536
  cat >"$conf" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=1024:1024"]
[engine]
runtime = "runc"
[network]
network_backend = "netavark"
EOF
  podman info >/dev/null || die "podman does not run here (podman info failed)"
}

base() {
  if ! podman image exists "$debian_image"; then
    log "building $debian_image from Debian's packages (mmdebstrap, ~1 min)"
    local sources=/etc/apt/sources.list.d/debian.sources
    [[ -f $sources ]] || sources=/etc/apt/sources.list
    # As Docker Hub's -slim images: no documentation, man pages or locales; no apt lists or
    # package cache left in the image.
    mmdebstrap --quiet --variant=minbase --format=tar \
      --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
      --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
      --dpkgopt='path-exclude=/usr/share/info/*' \
      --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
      bookworm "$dir/bookworm.tar" "$sources"
    podman import -q "$dir/bookworm.tar" "$debian_image" >/dev/null
    rm -f "$dir/bookworm.tar"
  fi
  if ! podman image exists "$rust_image"; then
    log "building $rust_image: the Debian base and this machine's Rust toolchain"
    local ctx=$dir/rust-ctx sysroot
    sysroot=$(rustc --print sysroot)
    rm -rf "$ctx" && mkdir -p "$ctx/toolchain"
    (cd "$sysroot" && tar --exclude=./share/doc -cf - .) | tar -xf - -C "$ctx/toolchain"
    cp scripts/containers/rust.Containerfile "$ctx/Containerfile"
    cp /etc/ssl/certs/ca-certificates.crt "$ctx/host-ca.crt"
    podman build -q -t "$rust_image" "$ctx" >/dev/null
    rm -rf "$ctx"
  fi
  if ! podman image exists "$kafka_image"; then
    log "building $kafka_image from the Maven Central jars (scripts/kafka.sh deps)"
    scripts/kafka.sh deps
    local ctx=$dir/kafka-ctx
    rm -rf "$ctx" && mkdir -p "$ctx"
    cp -r scripts/containers/kafka/. "$ctx/"
    cp -r .local/kafka/lib "$ctx/libs"
    podman build -q -t "$kafka_image" "$ctx" >/dev/null
    rm -rf "$ctx"
  fi
}

# --format docker keeps HEALTHCHECK (the OCI image format has no field for it).
build_one() {
  podman build --format docker --build-arg REVISION="$revision" "$@"
}

build() {
  local p started
  started=$(date +%s)
  for p in "${producers[@]}"; do
    log "building $images/$p-producer:$tag"
    build_one --build-arg PRODUCER="$p-producer" -t "$images/$p-producer:$tag" . | tail -n 1
  done
  log "building $images/provider-sim:$tag"
  build_one --target provider-sim -t "$images/provider-sim:$tag" . | tail -n 1
  log "six images built in $(($(date +%s) - started)) s"
}

# Polls `cmd` every second until it succeeds or `secs` pass.
wait_for() {
  local secs=$1 what=$2
  shift 2
  local deadline=$(($(date +%s) + secs))
  until "$@" >/dev/null 2>&1; do
    (($(date +%s) < deadline)) || { log "timed out after ${secs}s waiting for $what"; return 1; }
    sleep 1
  done
}

healthy() { podman healthcheck run "$1"; }

# `podman run -d`, quiet about the one thing it cannot do here: schedule the image's health
# checks through systemd (there is none; `podman healthcheck run` runs them on demand below).
run_detached() {
  podman run -d "$@" 2> >(grep -v 'unable to get systemd connection' >&2) >/dev/null
}

# A single-node KRaft broker of the stand-in image, on network $1, reachable as kafka:9092.
start_kafka() {
  local net=$1 name=$2
  run_detached --name "$name" --network "$net" --network-alias kafka \
    -e CLUSTER_ID=fInStReAmInGeStCl0001A -e KAFKA_NODE_ID=1 -e KAFKA_PROCESS_ROLES=broker,controller \
    -e KAFKA_LISTENERS=PLAINTEXT://:9092,CONTROLLER://:9093 -e KAFKA_ADVERTISED_LISTENERS=PLAINTEXT://kafka:9092 \
    -e KAFKA_CONTROLLER_QUORUM_VOTERS=1@kafka:9093 -e KAFKA_CONTROLLER_LISTENER_NAMES=CONTROLLER \
    -e KAFKA_LISTENER_SECURITY_PROTOCOL_MAP=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT \
    -e KAFKA_AUTO_CREATE_TOPICS_ENABLE=false -e KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR=1 \
    -e KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR=1 -e KAFKA_TRANSACTION_STATE_LOG_MIN_ISR=1 \
    -e KAFKA_HEAP_OPTS="-Xms256m -Xmx256m" "$kafka_image"
  wait_for 180 "the Kafka container" podman exec "$name" /opt/kafka/bin/kafka-broker-api-versions.sh \
    --bootstrap-server localhost:9092
  # The topics as compose's topic-init makes them: the same script and topics file.
  podman run --rm --no-healthcheck --network "$net" --entrypoint /bin/bash \
    -v "$PWD/infrastructure/kafka/create-topics.sh:/etc/finstream/create-topics.sh:ro" \
    -v "$PWD/scripts/kafka/topics.txt:/etc/finstream/topics.txt:ro" \
    -e BOOTSTRAP_SERVERS=kafka:9092 -e TOPICS_FILE=/etc/finstream/topics.txt \
    -e REPLICATION_FACTOR=1 -e MIN_INSYNC_REPLICAS=1 \
    "$kafka_image" /etc/finstream/create-topics.sh >/dev/null
}

# Records in topic $2 (sum of the partitions' end offsets), read inside Kafka container $1.
records() {
  podman exec "$1" /opt/kafka/bin/kafka-get-offsets.sh --bootstrap-server localhost:9092 --topic "$2" \
    2>/dev/null | awk -F: '{n += $3} END {print n + 0}'
}

has_records() { (($(records "$1" "$2") > 0)); }

topic_of() {
  case $1 in
    market) echo market.ticks.raw ;;
    news) echo news.articles.raw ;;
    social) echo social.posts.raw ;;
    sec) echo sec.filings.raw ;;
    altdata) echo altdata.records.raw ;;
  esac
}

human() { numfmt --to=iec --suffix=B "$1"; }

check() {
  local run=$prefix-check net kafka sim p img failed=0
  net=$run
  kafka=$run-kafka
  sim=$run-provider-sim
  clean_run "$run"
  podman network create "$net" >/dev/null
  log "starting Kafka (stand-in image) and provider-sim on network $net"
  start_kafka "$net" "$kafka"
  img=$images/provider-sim:$tag
  run_detached --name "$sim" --network "$net" --network-alias provider-sim "$img" \
    --listen=0.0.0.0:9400 --polygon-key=demo --firehose-symbols=AAPL,MSFT,SPY --firehose-fps=20 \
    --news-every-secs=2 --sec-every-secs=2 --social-every-secs=2 --altdata-every-secs=2
  printf '\n| image | size | user | --version | HEALTHCHECK | records delivered (topic) |\n|---|---|---|---|---|---|\n'
  check_image "$img" "$sim" "" || failed=1
  for p in "${producers[@]}"; do
    img=$images/$p-producer:$tag
    local name=$run-$p network=(--network "$net")
    # As in docker-compose.yml: altdata shares provider-sim's network namespace (its demo
    # sources are the simulator's pages, allowed as a private address by name).
    [[ $p == altdata ]] && network=(--network "container:$sim")
    run_detached --name "$name" "${network[@]}" -e KAFKA_BROKERS=kafka:9092 \
      -e FINSTREAM_DEMO_SIM=provider-sim:9400 -e LOG_LEVEL=info "$img"
    check_image "$img" "$name" "$(topic_of "$p")" "$kafka" || failed=1
  done
  printf '\nSizes include the base image %s: %s here (made locally with mmdebstrap).\n' \
    "${debian_image##*/}" "$(human "$(podman image inspect -f '{{.Size}}' "$debian_image")")"
  if ((failed)); then
    for p in "$sim" "${producers[@]/#/$run-}"; do
      log "---- last log lines of $p"
      podman logs --tail 20 "$p" 2>&1 | sed 's/^/    /' >&2 || true
    done
    return 1
  fi
}

# One row of the table: the image's checks, with its container already started as $2.
check_image() {
  local img=$1 name=$2 topic=$3 kafka=${4:-} size user version health="passed" delivered="–" ok=1
  size=$(human "$(podman image inspect -f '{{.Size}}' "$img")")
  user=$(podman run --rm --no-healthcheck --entrypoint id "$img" -u 2>&1)
  if [[ $user == 0 || $(podman image inspect -f '{{.Config.User}}' "$img") != 10001:10001 ]]; then
    user="root (FAIL)" ok=0
  fi
  version=$(podman run --rm --no-healthcheck "$img" --version 2>&1 | head -n 1)
  [[ $version == *"$revision"* ]] || { version="$version (FAIL: not $revision)"; ok=0; }
  if ! wait_for 120 "$name's HEALTHCHECK" healthy "$name"; then
    health="FAIL" ok=0
  fi
  if [[ -n $topic ]]; then
    if wait_for 120 "records from $name in $topic" has_records "$kafka" "$topic"; then
      delivered="$(records "$kafka" "$topic") ($topic)"
    else
      delivered="0 ($topic): FAIL" ok=0
    fi
  fi
  printf '| %s | %s | %s | %s | %s | %s |\n' "${img##*/}" "$size" "$user" "$version" "$health" "$delivered"
  ((ok))
}

# Removes the containers and network of one run (by name), whatever state they are in.
clean_run() {
  local ids
  ids=$(podman ps -aq --filter "name=^$1" 2>/dev/null || true)
  [[ -z $ids ]] || podman rm -f -t 2 $ids >/dev/null 2>&1 || true
  podman network rm -f "$1" >/dev/null 2>&1 || true
}

clean() {
  clean_run "$prefix"
  local nets vols
  nets=$(podman network ls -q --filter "name=^$prefix" 2>/dev/null || true)
  [[ -z $nets ]] || podman network rm -f $nets >/dev/null 2>&1 || true
  vols=$(podman volume ls -q --filter "name=^$prefix" 2>/dev/null || true)
  [[ -z $vols ]] || podman volume rm -f $vols >/dev/null 2>&1 || true
}

case ${1:-} in
  setup) setup ;;
  base) base ;;
  build) build ;;
  check) trap clean EXIT; check ;;
  test)
    setup
    base
    build
    trap clean EXIT
    check
    ;;
  clean) clean ;;
  *) die "usage: $0 setup|base|build|check|test|clean" ;;
esac
