#!/bin/bash
# Starts a KRaft broker/controller configured as apache/kafka's image is: each KAFKA_* variable
# (but KAFKA_HEAP_OPTS/KAFKA_OPTS/KAFKA_TOOL_HEAP_OPTS) is a server property, CLUSTER_ID formats
# the log directory on first start.
set -euo pipefail
props=/opt/kafka/config/server.properties
: >"$props"
while IFS='=' read -r name value; do
  case $name in
    KAFKA_HEAP_OPTS | KAFKA_OPTS | KAFKA_TOOL_HEAP_OPTS) continue ;;
    KAFKA_*) ;;
    *) continue ;;
  esac
  key=${name#KAFKA_}
  key=${key,,}
  key=${key//___/@}
  key=${key//__/-}
  key=${key//_/.}
  key=${key//@/_}
  printf '%s=%s\n' "$key" "$value" >>"$props"
done < <(env)
log_dirs=$(awk -F= '$1=="log.dirs" {print $2}' "$props")
log_dirs=${log_dirs:-/var/lib/kafka/data}
grep -q '^log.dirs=' "$props" || echo "log.dirs=$log_dirs" >>"$props"
[[ -n ${CLUSTER_ID:-} ]] || { echo "run: CLUSTER_ID is required" >&2; exit 1; }
java -Xmx128m -cp '/opt/kafka/libs/*' kafka.tools.StorageTool format --ignore-formatted \
  --cluster-id "$CLUSTER_ID" --config "$props" >/dev/null
exec java ${KAFKA_HEAP_OPTS:--Xmx512m} ${KAFKA_OPTS:-} -XX:+UseG1GC -Djava.awt.headless=true \
  -cp '/opt/kafka/libs/*' kafka.Kafka "$props"
