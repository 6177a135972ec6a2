#!/usr/bin/env bash
# Creates the topics of docs/contracts.md from a topics file (scripts/kafka/topics.txt: name, partitions,
# configs) on a running cluster, and checks the ones that already exist. Used by
# docker-compose's `topic-init` service and the Kubernetes `finstream-topics` Job (which carries a
# copy of this script and of topics.txt; a test keeps the copies identical).
#
# Environment:
#   BOOTSTRAP_SERVERS      host:port[,host:port...]                      (required)
#   TOPICS_FILE            the topics file            (default /etc/finstream/topics.txt)
#   REPLICATION_FACTOR     of every topic                                 (default 3)
#   MIN_INSYNC_REPLICAS    min.insync.replicas of every topic             (default 2)
#   KAFKA_TOPICS_CMD       the kafka-topics command   (default /opt/kafka/bin/kafka-topics.sh)
#   WAIT_SECS              how long to wait for the cluster               (default 180)
#
# Idempotent: existing topics are left as they are; one with fewer partitions than the file
# asks for is an error (producers key by symbol/id, so partitions are never changed silently).
set -euo pipefail

bootstrap=${BOOTSTRAP_SERVERS:?set BOOTSTRAP_SERVERS}
topics_file=${TOPICS_FILE:-/etc/finstream/topics.txt}
rf=${REPLICATION_FACTOR:-3}
min_isr=${MIN_INSYNC_REPLICAS:-2}
wait_secs=${WAIT_SECS:-180}
read -ra kafka_topics <<<"${KAFKA_TOPICS_CMD:-/opt/kafka/bin/kafka-topics.sh}"

log() { printf 'create-topics: %s\n' "$*" >&2; }
topics() { "${kafka_topics[@]}" --bootstrap-server "$bootstrap" "$@"; }

[[ -r $topics_file ]] || { log "cannot read $topics_file"; exit 1; }

deadline=$((SECONDS + wait_secs))
until existing=$(topics --list 2>/dev/null); do
  ((SECONDS < deadline)) || { log "cluster at $bootstrap not reachable after ${wait_secs}s"; exit 1; }
  sleep 2
done

created=0 checked=0
while read -r name partitions configs _; do
  [[ -z ${name:-} || $name == \#* ]] && continue
  if grep -qxF "$name" <<<"$existing"; then
    have=$(topics --describe --topic "$name" | sed -n 's/.*PartitionCount:[[:space:]]*\([0-9]*\).*/\1/p' | head -1)
    if [[ -z $have ]]; then
      log "$name: cannot read its partition count"; exit 1
    elif ((have < partitions)); then
      log "$name has $have partitions, the topics file asks for $partitions: add them deliberately (kafka-topics --alter)"
      exit 1
    fi
    checked=$((checked + 1))
    continue
  fi
  args=(--create --if-not-exists --topic "$name" --partitions "$partitions" --replication-factor "$rf"
    --config "min.insync.replicas=$min_isr")
  if [[ ${configs:--} != - ]]; then
    IFS=, read -ra kv <<<"$configs"
    for c in "${kv[@]}"; do args+=(--config "$c"); done
  fi
  topics "${args[@]}" >/dev/null
  extra=""
  [[ ${configs:--} != - ]] && extra=", $configs"
  log "created $name ($partitions partitions, RF $rf, min.insync.replicas $min_isr$extra)"
  created=$((created + 1))
done <"$topics_file"
log "done: $created created, $checked already present"
