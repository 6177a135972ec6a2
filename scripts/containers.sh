#!/usr/bin/env bash
# The project's images, built and run for real with podman (CI's machines have no Docker engine
# and reach no image registry; podman runs real containers there).
#
#   scripts/containers.sh setup     install podman (Debian packages) and write its settings
#   scripts/containers.sh base      local base images under the names the Dockerfile and the
#                                   compose file use: debian:bookworm-slim (mmdebstrap, from
#                                   Debian's packages), rust:1.95-bookworm (that base plus this
#                                   machine's Rust toolchain), apache/kafka:4.1.1 (the Maven
#                                   Central Kafka jars scripts/kafka.sh resolves),
#                                   prom/prometheus:v2.55.1 (Prometheus from Debian's package)
#   scripts/containers.sh build     the five producer images and provider-sim's, with the real
#                                   Dockerfile (one compile shared by all six)
#   scripts/containers.sh check     per image: runs as a non-root user, --version names the
#                                   commit, its HEALTHCHECK passes, and it delivers demo records
#                                   to a Kafka broker (a container of the same Kafka release)
#   scripts/containers.sh push      `make docker-push` to a registry on 127.0.0.1 (Debian's
#                                   docker-registry), then every image of the Kubernetes
#                                   manifests rendered for it (`make k8s-manifests`) found there,
#                                   and one pulled back and run
#   scripts/containers.sh compose   docker-compose.yml started as a whole (docker-compose against
#                                   podman's Docker API) with every service whose image can be had
#                                   here: records in every data topic, every producer ready, every
#                                   Prometheus target up; lists what was not run and why
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
prometheus_image=docker.io/prom/prometheus:v2.55.1
revision=${REVISION:-$(git rev-parse --short=12 HEAD)}

log() { printf 'containers.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

setup() {
  # shellcheck source=scripts/lib/apt.sh
  . scripts/lib/apt.sh
  # iptables: netavark 1.4 (bookworm) sets up container networks through it, and fails with "No
  # such file or directory" on a machine without it (it is no dependency of the package).
  apt_install_missing containers.sh podman runc uidmap mmdebstrap netavark aardvark-dns iptables fuse-overlayfs \
    slirp4netns catatonit docker-compose iproute2 util-linux curl docker-registry
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
  if ! podman image exists "$prometheus_image"; then
    log "building $prometheus_image from Debian's prometheus package"
    podman build -q --format docker -t "$prometheus_image" scripts/containers/prometheus >/dev/null
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

# Records in topic $2 (sum of the partitions' end offsets), read inside Kafka container $1 through
# its listener $3 (one whose advertised addresses resolve there).
records() {
  podman exec "$1" /opt/kafka/bin/kafka-get-offsets.sh --bootstrap-server "${3:-localhost:9092}" --topic "$2" \
    2>/dev/null | awk -F: '{n += $3} END {print n + 0}'
}

has_records() { (($(records "$@") > 0)); }

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

# ---- The registry ----------------------------------------------------------------------------
registry_dir=$dir/registry
registry_pid=

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Is there a manifest of repository $2, tag $3 in the registry at $1?
in_registry() {
  curl -fsS -o /dev/null -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$1/v2/$2/manifests/$3"
}

push() {
  local port addr reg rendered img ref ok=1 pushed
  registry_clean
  port=$(free_port)
  addr=127.0.0.1:$port
  mkdir -p "$registry_dir/data"
  printf 'version: 0.1\nlog: { level: warn }\nstorage:\n  filesystem: { rootdirectory: %s }\nhttp:\n  addr: %s\n' \
    "$PWD/$registry_dir/data" "$addr" >"$registry_dir/config.yml"
  docker-registry serve "$registry_dir/config.yml" >"$registry_dir/log" 2>&1 &
  registry_pid=$!
  wait_for 30 "the registry on $addr" curl -fsS "http://$addr/v2/"
  reg=$addr/finstream
  log "make docker-push REGISTRY=$reg (Debian's docker-registry)"
  pushed=$(date +%s)
  make -s docker-push DOCKER=podman REGISTRY="$reg" IMAGE_PREFIX="$images" IMAGE_TAG="$tag" \
    PUSH_FLAGS="--tls-verify=false --quiet" >/dev/null
  pushed=$(($(date +%s) - pushed))
  rendered=$(REGISTRY=$reg IMAGE_TAG=$tag scripts/k8s-manifests.sh)
  printf '\nmake docker-push REGISTRY=%s IMAGE_TAG=%s: %s s. The images of `make k8s-manifests` for it:\n' \
    "$reg" "$tag" "$pushed"
  printf '| image in the manifests | in the registry |\n|---|---|\n'
  for img in $(sed -n 's/^ *image: *//p' <<<"$rendered" | sort -u); do
    if [[ $img == "$addr"/* ]]; then
      ref=${img#"$addr"/}
      if in_registry "$addr" "${ref%:*}" "${ref##*:}"; then
        printf '| %s | yes |\n' "$img"
      else
        printf '| %s | NO (FAIL) |\n' "$img"
        ok=0
      fi
    else
      printf '| %s | not ours: the topics Job pulls Apache Kafka from Docker Hub or your mirror |\n' "$img"
    fi
  done
  # One pulled back from the registry (its local tag removed first) and run: the same program.
  img=$reg/market-producer:$tag
  local built pulled_version=
  built=$(podman run --rm --no-healthcheck "$images/market-producer:$tag" --version)
  podman rmi "$img" >/dev/null
  if podman pull -q --tls-verify=false "$img" >/dev/null &&
    pulled_version=$(podman run --rm --no-healthcheck "$img" --version) && [[ $pulled_version == "$built" ]]; then
    printf '\n%s pulled back from the registry and run: %s\n' "$img" "$pulled_version"
  else
    log "$img pulled back from the registry: '${pulled_version:-did not run}', built: '$built'"
    ok=0
  fi
  ((ok))
}

# Stops the registry, removes its data and the image tags made for it.
registry_clean() {
  local refs
  [[ -z $registry_pid ]] || kill "$registry_pid" 2>/dev/null || true
  pkill -f "docker-registry serve $registry_dir/config.yml" 2>/dev/null || true
  refs=$(podman images --format '{{.Repository}}:{{.Tag}}' 2>/dev/null | grep -E '^127\.0\.0\.1:[0-9]+/finstream/' || true)
  [[ -z $refs ]] || podman rmi $refs >/dev/null 2>&1 || true
  rm -rf "$registry_dir"
}

# ---- The compose stack ----------------------------------------------------------------------
# docker-compose.yml as a user starts it, with docker-compose talking to podman's Docker API.
# It runs in a network namespace of its own: the 127.0.0.1 ports it publishes (9092, 9090,
# 8081…) are then that namespace's, free whatever the machine runs (`make test` leaves a broker
# on 9092). Everything below reaches them from inside the namespace.
compose_project=$prefix-compose
compose_netns=$prefix-compose
# The brokers' INTERNAL listener (EXTERNAL advertises the host's localhost ports).
compose_bootstrap=kafka-1:19092
compose_sock=$PWD/$dir/compose.sock
compose_log=$dir/compose-service.log
compose_services=(kafka-1 kafka-2 kafka-3 topic-init provider-sim prometheus
  market-producer news-producer social-producer sec-producer altdata-producer)
# service, port of its /ready on 127.0.0.1 (as docker-compose.yml publishes them)
compose_ready=(market-producer:8181 news-producer:8182 social-producer:8183 sec-producer:8184
  altdata-producer:8185)
# Topics that must have records: the five producers' and the events/state topics.
compose_topics=(market.ticks.raw news.articles.raw social.posts.raw sec.filings.raw altdata.records.raw
  ingest.events ingest.state)
# Not run, and why: no image registry is reachable, and none can be built from real packages here.
compose_not_run=(
  "grafana|grafana/grafana:11.3.1|not packaged by Debian, not on Maven Central; every dashboard query runs against a live Prometheus in make check-deploy"
  "kafka-ui|provectuslabs/kafka-ui:v0.7.2|not packaged by Debian, not on Maven Central"
  "schema-registry|confluentinc/cp-schema-registry:7.9.1|Confluent publishes it on its own repository, not Maven Central or Debian; the producers do not need it"
  "kafka-exporter|danielqsj/kafka-exporter:v1.9.0|not packaged by Debian; its Prometheus target is therefore the one left down"
)
compose_service_pid=
compose_scheduler_pid=

in_ns() { nsenter --net="/run/netns/$compose_netns" "$@"; }

# podman runs a container's HEALTHCHECK from a systemd timer, and there is no systemd here. This
# loop does that timer's work: every container of the project gets `podman healthcheck run` (the
# command the timer runs, which records the status docker-compose's `condition: service_healthy`
# waits on) once per its own healthcheck interval.
health_scheduler() {
  local -A every=() due=()
  local id now
  while true; do
    now=$(date +%s)
    for id in $(podman ps -q --filter "label=com.docker.compose.project=$compose_project" 2>/dev/null); do
      if [[ -z ${every[$id]:-} ]]; then
        every[$id]=$(healthcheck_interval "$id")
        due[$id]=$((now + ${every[$id]}))
      fi
      if ((${every[$id]} > 0 && now >= ${due[$id]})); then
        due[$id]=$((now + ${every[$id]}))
        podman healthcheck run "$id" >/dev/null 2>&1 || true
      fi
    done
    sleep 1
  done
}

# A container's healthcheck interval in seconds (Docker's default 30 when unset), 0 without one.
healthcheck_interval() {
  local ns
  ns=$(podman inspect -f '{{with .Config.Healthcheck}}{{.Interval.Nanoseconds}}{{end}}' "$1" 2>/dev/null || true)
  [[ $ns =~ ^[0-9]+$ ]] || { echo 0; return; }
  ((ns > 0)) || ns=30000000000
  echo $((ns / 1000000000))
}

dc() {
  env DOCKER_HOST="unix://$compose_sock" COMPOSE_PROJECT_NAME="$compose_project" IMAGE_TAG="$tag" \
    docker-compose "$@"
}

# Prometheus's targets as "job url health" lines.
prom_targets() {
  in_ns curl -fsS http://127.0.0.1:9090/api/v1/targets | python3 -c '
import json, sys
for t in json.load(sys.stdin)["data"]["activeTargets"]:
    print(t["labels"]["job"], t["scrapeUrl"], t["health"])'
}

# Every target up but the one of a service not run.
targets_up() {
  local out
  out=$(prom_targets) || return 1
  [[ -n $out ]] && ! grep -v '^kafka-exporter ' <<<"$out" | grep -qv ' up$'
}

ready() { in_ns curl -fsS -o /dev/null "http://127.0.0.1:$1/ready" 2>/dev/null; }

compose() {
  local started kafka ok=1 s p svc port state t n
  started=$(date +%s)
  compose_clean
  ip netns add "$compose_netns"
  in_ns ip link set lo up
  log "podman's Docker API on $compose_sock, in network namespace $compose_netns"
  in_ns podman system service --time=0 "unix://$compose_sock" >"$compose_log" 2>&1 &
  compose_service_pid=$!
  wait_for 30 "podman's API socket" test -S "$compose_sock"
  health_scheduler &
  compose_scheduler_pid=$!
  # What a user's .env carries (.env.example): compose refuses to start without these passwords.
  KAFKA_UI_PASSWORD=$(openssl rand -hex 12) GRAFANA_ADMIN_PASSWORD=$(openssl rand -hex 12)
  export KAFKA_UI_PASSWORD GRAFANA_ADMIN_PASSWORD
  log "docker-compose up -d: ${compose_services[*]}"
  if ! timeout 900 env DOCKER_HOST="unix://$compose_sock" COMPOSE_PROJECT_NAME="$compose_project" \
    IMAGE_TAG="$tag" docker-compose up -d --no-build "${compose_services[@]}"; then
    ok=0
  fi
  kafka=${compose_project}_kafka-1_1
  if ((ok)); then
    for s in "${compose_ready[@]}"; do
      wait_for 240 "${s%%:*} ready on 127.0.0.1:${s##*:}" ready "${s##*:}" || ok=0
    done
    for t in "${compose_topics[@]}"; do
      wait_for 180 "records in $t" has_records "$kafka" "$t" "$compose_bootstrap" || ok=0
    done
    wait_for 180 "every Prometheus target up" targets_up || ok=0
  fi
  printf '\ndocker-compose up (%s), %s s:\n| service | image | state |\n|---|---|---|\n' \
    "$(docker-compose version --short 2>/dev/null) against podman $(podman version -f '{{.Client.Version}}')" \
    "$(($(date +%s) - started))"
  for svc in "${compose_services[@]}"; do
    state=$(podman inspect -f '{{.Config.Image}}|{{.State.Status}}{{if eq .State.Status "exited"}} (exit {{.State.ExitCode}}){{end}}{{with .State.Health}}{{with .Status}}, {{.}}{{end}}{{end}}' \
      "${compose_project}_${svc}_1" 2>/dev/null || echo "–|not created")
    printf '| %s | %s | %s |\n' "$svc" "${state%%|*}" "${state#*|}"
  done
  printf '\n| producer | /ready on 127.0.0.1 |\n|---|---|\n'
  for s in "${compose_ready[@]}"; do
    port=${s##*:}
    printf '| %s | :%s %s |\n' "${s%%:*}" "$port" "$(ready "$port" && echo ready || echo 'NOT ready')"
  done
  printf '\n| topic | records |\n|---|---|\n'
  while read -r t _; do
    [[ -z $t || $t == \#* ]] && continue
    printf '| %s | %s |\n' "$t" "$(records "$kafka" "$t" "$compose_bootstrap")"
  done <scripts/kafka/topics.txt
  printf '\n| Prometheus job | target | health |\n|---|---|---|\n'
  prom_targets 2>/dev/null | sort | while read -r s t n; do printf '| %s | %s | %s |\n' "$s" "$t" "$n"; done
  printf '\nAlert rules loaded by Prometheus: %s\n' "$(in_ns curl -fsS http://127.0.0.1:9090/api/v1/rules 2>/dev/null |
    python3 -c 'import json,sys; g=json.load(sys.stdin)["data"]["groups"]; print(sum(len(x["rules"]) for x in g), "in", len(g), "groups")' 2>/dev/null || echo none)"
  printf '\nNot run (no image registry is reachable here; never replaced by a fake):\n| service | image | why |\n|---|---|---|\n'
  for s in "${compose_not_run[@]}"; do
    IFS='|' read -r svc state t <<<"$s"
    printf '| %s | %s | %s |\n' "$svc" "$state" "$t"
  done
  if ((!ok)); then
    for svc in "${compose_services[@]}"; do
      log "---- last log lines of $svc"
      podman logs --tail 20 "${compose_project}_${svc}_1" 2>&1 | sed 's/^/    /' >&2 || true
    done
    return 1
  fi
}

# Removes the compose stack: `docker-compose down -v`, then by name whatever it left (it can
# leave provider-sim, whose network namespace altdata shares), the API service, the namespace.
compose_clean() {
  local ids pass vols
  if [[ -S $compose_sock ]]; then
    dc down -v --remove-orphans -t 5 >/dev/null 2>&1 || true
  fi
  [[ -z $compose_scheduler_pid ]] || kill "$compose_scheduler_pid" 2>/dev/null || true
  local run=()
  [[ -e /run/netns/$compose_netns ]] && run=(in_ns)
  for pass in 1 2; do
    ids=$(podman ps -aq --filter "name=^$compose_project" 2>/dev/null || true)
    [[ -z $ids ]] || "${run[@]}" podman rm -f -v -t 2 $ids >/dev/null 2>&1 || true
  done
  "${run[@]}" podman network rm -f "${compose_project}_default" >/dev/null 2>&1 || true
  vols=$(podman volume ls -q --filter "name=^$compose_project" 2>/dev/null || true)
  [[ -z $vols ]] || podman volume rm -f $vols >/dev/null 2>&1 || true
  [[ -z $compose_service_pid ]] || kill "$compose_service_pid" 2>/dev/null || true
  pkill -f "podman system service --time=0 unix://$compose_sock" 2>/dev/null || true
  rm -f "$compose_sock"
  ip netns del "$compose_netns" 2>/dev/null || true
}

# Removes the containers and network of one run (by name), whatever state they are in.
clean_run() {
  local ids
  ids=$(podman ps -aq --filter "name=^$1" 2>/dev/null || true)
  # -v: the anonymous volumes of the images' VOLUMEs (the producers' spool) go with them.
  [[ -z $ids ]] || podman rm -f -v -t 2 $ids >/dev/null 2>&1 || true
  podman network rm -f "$1" >/dev/null 2>&1 || true
}

clean() {
  compose_clean
  registry_clean
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
  push) trap clean EXIT; push ;;
  compose) trap clean EXIT; compose ;;
  test)
    setup
    base
    build
    trap clean EXIT
    check
    push
    # One run's network at a time: podman's DNS server (aardvark-dns) is one process per machine.
    clean
    compose
    ;;
  clean) clean ;;
  *) die "usage: $0 setup|base|build|check|push|compose|test|clean" ;;
esac
