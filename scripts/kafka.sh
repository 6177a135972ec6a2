#!/usr/bin/env bash
# Local Apache Kafka for development and tests: the real broker, resolved from Maven Central,
# run in KRaft mode with the machine's Java 17. No Docker needed.
#
#   scripts/kafka.sh deps          resolve the broker jars into .local/kafka/lib (Maven)
#   scripts/kafka.sh up            single node on 127.0.0.1:$KAFKA_PORT, wait until ready, create topics
#   scripts/kafka.sh down          stop the single node started by `up` (by PID file)
#   scripts/kafka.sh cluster-up    three nodes (RF=3, min.insync.replicas=2) on $KAFKA_CLUSTER_PORT + 0/100/200
#   scripts/kafka.sh cluster-down  stop the three nodes
#   scripts/kafka.sh secure-up     one node with TLS + SASL/SCRAM-SHA-512 clients on $KAFKA_SECURE_PORT+1
#                                  (test CA, user and password in .local/kafka/secure/)
#   scripts/kafka.sh secure-down   stop it
#   scripts/kafka.sh chaos-up      a second single node on $KAFKA_CHAOS_PORT, for tests that SIGKILL it
#   scripts/kafka.sh chaos-down    stop it
#   scripts/kafka.sh status        what is running
#   scripts/kafka.sh topics        list topics and partition counts
#   scripts/kafka.sh clean         stop everything and delete the data folders
#
# Settings (environment):
#   KAFKA_PORT=9092                 client port of the single node (controller: KAFKA_PORT+1)
#   KAFKA_CLUSTER_PORT=19092        client port of cluster node 1 (node i: +100*(i-1), controller +1)
#   KAFKA_SECURE_PORT=9292          secure node: plaintext admin port (SASL_SSL: +1, controller: +2)
#   KAFKA_CHAOS_PORT=29092          client port of the chaos node (controller: +1)
#   KAFKA_HEAP_OPTS="-Xms256m -Xmx512m"
#   KAFKA_READY_TIMEOUT_SECS=120
#   KAFKA_LOCAL_DIR=<repo>/.local/kafka   jars, data and logs (git-ignored)
#
# Idempotent: `up` on a running node only re-checks readiness and topics; `down` only stops a
# process whose PID file and command line prove it was started here.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
local_dir=${KAFKA_LOCAL_DIR:-$repo/.local/kafka}
lib=$local_dir/lib
port=${KAFKA_PORT:-9092}
cluster_port=${KAFKA_CLUSTER_PORT:-19092}
secure_port=${KAFKA_SECURE_PORT:-9292}
chaos_port=${KAFKA_CHAOS_PORT:-29092}
heap=${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}
ready_timeout=${KAFKA_READY_TIMEOUT_SECS:-120}

log() { printf 'kafka.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

need_java() {
  command -v java >/dev/null || die "java not found: install a Java 17 runtime (Debian: openjdk-17-jre-headless)"
  local v
  v=$(java -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ {print $2}')
  [[ ${v%%.*} -ge 17 ]] || die "Java $v found; the Kafka 4 broker needs Java 17 or newer"
}

deps() {
  local stamp
  stamp="$lib/.pom-$(sha256sum "$here/kafka/pom.xml" | cut -c1-16)"
  [[ -f $stamp ]] && return 0
  command -v mvn >/dev/null || die "mvn not found: install Maven (Debian: maven)"
  log "resolving Apache Kafka jars from Maven Central into $lib"
  rm -rf "$lib" && mkdir -p "$lib"
  mvn -B -q -Dstyle.color=never -f "$here/kafka/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$lib" 2>&1 | sed "s/\x1b\[[0-9;]*m//g" >&2 \
    || die "Maven could not resolve the Kafka jars (see output above)"
  local bindings
  bindings=$(find "$lib" -name 'log4j-slf4j-impl-*.jar' -o -name 'slf4j-reload4j-*.jar' \
    -o -name 'logback-classic-*.jar' -o -name 'slf4j-simple-*.jar' | wc -l)
  [[ $bindings -eq 1 ]] || die "expected exactly one SLF4J binding in $lib, found $bindings"
  touch "$stamp"
}

admin() { java -cp "$lib/*" "$here/kafka/KafkaAdmin.java" "$@"; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# port_taken NODE_DIR PORT: is PORT held by a process other than the node's own broker? A node
# that was just SIGKILLed (the chaos tests do it) is no longer "ours" by pid_of (its cmdline is
# gone once its memory is released) but its listening sockets close only when its last thread
# exits, which for a multi-GiB JVM can take seconds. So while the recorded PID still exists,
# wait for it to go (up to 30 s) before deciding that someone else holds the port.
port_taken() {
  local dir=$1 port=$2 pid i
  port_open "$port" || return 1
  if [[ -f $dir/kafka.pid ]]; then
    pid=$(<"$dir/kafka.pid")
    for ((i = 0; i < 300; i++)); do
      [[ -e /proc/$pid ]] || break
      [[ $(tr -d '\0' <"/proc/$pid/stat" 2>/dev/null | awk '{print $3}') == Z ]] && break
      sleep 0.1
    done
    for ((i = 0; i < 50; i++)); do
      port_open "$port" || return 1
      sleep 0.1
    done
  fi
  return 0
}

# pid_of NODE_DIR: the PID recorded for a node, if that process is alive and is our broker.
pid_of() {
  local dir=$1 pid
  [[ -f $dir/kafka.pid ]] || return 1
  pid=$(<"$dir/kafka.pid")
  [[ -r /proc/$pid/cmdline ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$dir/server.properties" || return 1
  echo "$pid"
}

# write_config NODE_DIR NODE_ID CLIENT_PORT CONTROLLER_PORT VOTERS RF
write_config() {
  local dir=$1 id=$2 cport=$3 ctrl=$4 voters=$5 rf=$6
  mkdir -p "$dir/data" "$dir/logs"
  cat >"$dir/server.properties" <<EOF
# Generated by scripts/kafka.sh; edits are overwritten at the next start.
process.roles=broker,controller
node.id=$id
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$cport,CONTROLLER://127.0.0.1:$ctrl
advertised.listeners=PLAINTEXT://127.0.0.1:$cport
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/data
num.partitions=1
default.replication.factor=$rf
min.insync.replicas=$(( rf > 1 ? 2 : 1 ))
offsets.topic.replication.factor=$rf
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$(( rf > 1 ? 2 : 1 ))
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$(( rf > 1 ? 2 : 1 ))
auto.create.topics.enable=false
group.initial.rebalance.delay.ms=0
log.retention.hours=24
log.segment.bytes=67108864
EOF
}

# start_node NODE_DIR CLUSTER_ID
start_node() {
  local dir=$1 cluster_id=$2
  if pid_of "$dir" >/dev/null; then
    log "node in $dir already running (pid $(pid_of "$dir"))"
    return 0
  fi
  if [[ ! -f $dir/data/meta.properties ]]; then
    # `--cluster-id=ID`, not `-t ID`: a base64url id may start with `-` and would be read as
    # an option.
    java -cp "$lib/*" kafka.tools.StorageTool format --ignore-formatted \
      --cluster-id="$cluster_id" -c "$dir/server.properties" >"$dir/logs/format.log" 2>&1 \
      || { cat "$dir/logs/format.log" >&2; die "formatting the storage in $dir failed"; }
  fi
  # setsid: the broker must outlive the shell (and the make job) that started it.
  setsid nohup java $heap -XX:+UseG1GC -Djava.awt.headless=true \
    -Dkafka.logs.dir="$dir/logs" -Dlog4j2.configurationFile="$here/kafka/log4j2.properties" \
    -cp "$lib/*" kafka.Kafka "$dir/server.properties" >"$dir/logs/console.log" 2>&1 </dev/null &
  echo $! >"$dir/kafka.pid"
  log "started node in $dir (pid $!)"
}

# stop_nodes NODE_DIR...: SIGTERM all at once (a KRaft quorum shuts down cleanly only while a
# majority of controllers is still up), then wait up to 30 s, then SIGKILL what is left.
stop_nodes() {
  local dir pid i pids=() dirs=()
  for dir in "$@"; do
    if pid=$(pid_of "$dir"); then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid") dirs+=("$dir")
    else
      rm -f "$dir/kafka.pid"
    fi
  done
  ((${#pids[@]})) || return 0
  for ((i = 0; i < 300; i++)); do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  for i in "${!pids[@]}"; do
    if kill -0 "${pids[$i]}" 2>/dev/null; then
      log "node ${dirs[$i]} did not stop in 30s; killing"
      kill -KILL "${pids[$i]}" 2>/dev/null || true
    fi
    rm -f "${dirs[$i]}/kafka.pid"
    log "stopped node in ${dirs[$i]} (pid ${pids[$i]})"
  done
}

cluster_id_of() {
  local f=$1/cluster.id
  [[ -f $f ]] || head -c16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' >"$f"
  cat "$f"
}

fail_with_log() {
  local dir=$1
  log "broker log tail ($dir/logs/server.log):"
  tail -n 30 "$dir/logs/server.log" >&2 2>/dev/null || tail -n 30 "$dir/logs/console.log" >&2 || true
  die "$2"
}

# single_up NAME PORT PORT_VARIABLE: a one-node cluster in $local_dir/NAME.
single_up() {
  need_java
  deps
  local dir=$local_dir/$1 port=$2 var=$3 ctrl=$(($2 + 1))
  mkdir -p "$dir"
  if ! pid_of "$dir" >/dev/null; then
    port_taken "$dir" "$port" && die "port $port is in use by another process; set $var to a free port"
    port_taken "$dir" "$ctrl" && die "controller port $ctrl is in use by another process; set $var"
    write_config "$dir" 1 "$port" "$ctrl" "1@127.0.0.1:$ctrl" 1
    start_node "$dir" "$(cluster_id_of "$dir")"
  fi
  admin wait --bootstrap "127.0.0.1:$port" --brokers 1 --timeout-secs "$ready_timeout" \
    || fail_with_log "$dir" "broker on 127.0.0.1:$port not ready"
  admin topics --bootstrap "127.0.0.1:$port" --file "$here/kafka/topics.txt" --replication-factor 1 \
    || die "creating topics failed"
  log "Kafka ready on 127.0.0.1:$port"
}

up() { single_up single "$port" KAFKA_PORT; }

down() { stop_nodes "$local_dir/single"; }

cluster_dirs() { for i in 1 2 3; do echo "$local_dir/cluster/node$i"; done; }

# A test CA, a broker certificate for localhost/127.0.0.1 signed by it, a second CA that signed
# nothing (for the "wrong CA" test), and a SCRAM user with a random password. Made once.
secure_material() {
  local tls=$1/tls
  [[ -f $tls/done ]] && return 0
  command -v openssl >/dev/null || die "openssl not found (Debian: openssl)"
  rm -rf "$tls" && mkdir -p "$tls"
  (
    cd "$tls"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 3650 \
      -subj "/CN=FinStream test CA" 2>/dev/null
    openssl req -x509 -newkey rsa:2048 -nodes -keyout other-ca.key -out other-ca.pem -days 3650 \
      -subj "/CN=Some other CA" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=localhost" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >san.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem \
      -days 3650 -extfile san.ext 2>/dev/null
    # Kafka's PEM key store: the PKCS#8 key, then the certificate chain.
    openssl pkcs8 -topk8 -nocrypt -in server.key -out server.p8
    cat server.p8 server.pem ca.pem >server-keystore.pem
    chmod 600 ./*.key server.p8 server-keystore.pem
  ) || die "creating the test certificates failed"
  printf 'finstream' >"$1/sasl.user"
  head -c24 /dev/urandom | base64 | tr -d '/+=\n' >"$1/sasl.password"
  chmod 600 "$1/sasl.password"
  touch "$tls/done"
}

secure_up() {
  need_java
  deps
  local dir=$local_dir/secure sasl=$((secure_port + 1)) ctrl=$((secure_port + 2)) p
  mkdir -p "$dir/data" "$dir/logs"
  secure_material "$dir"
  if ! pid_of "$dir" >/dev/null; then
    for p in "$secure_port" "$sasl" "$ctrl"; do
      port_taken "$dir" "$p" && die "port $p is in use by another process; set KAFKA_SECURE_PORT"
    done
    cat >"$dir/server.properties" <<EOF
# Generated by scripts/kafka.sh secure-up; edits are overwritten at the next start.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$ctrl
listeners=INTERNAL://127.0.0.1:$secure_port,SASL_SSL://127.0.0.1:$sasl,CONTROLLER://127.0.0.1:$ctrl
advertised.listeners=INTERNAL://127.0.0.1:$secure_port,SASL_SSL://localhost:$sasl
controller.listener.names=CONTROLLER
inter.broker.listener.name=INTERNAL
listener.security.protocol.map=INTERNAL:PLAINTEXT,SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PEM
ssl.keystore.location=$dir/tls/server-keystore.pem
ssl.client.auth=none
log.dirs=$dir/data
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
auto.create.topics.enable=false
group.initial.rebalance.delay.ms=0
log.retention.hours=24
EOF
    if [[ ! -f $dir/data/meta.properties ]]; then
      java -cp "$lib/*" kafka.tools.StorageTool format --ignore-formatted \
        --cluster-id="$(cluster_id_of "$dir")" -c "$dir/server.properties" \
        --add-scram "SCRAM-SHA-512=[name=$(<"$dir/sasl.user"),password=$(<"$dir/sasl.password")]" \
        >"$dir/logs/format.log" 2>&1 \
        || { sed 's/password=[^]]*/password=***/' "$dir/logs/format.log" >&2; die "formatting the secure node failed"; }
    fi
    start_node "$dir" "$(cluster_id_of "$dir")"
  fi
  admin wait --bootstrap "127.0.0.1:$secure_port" --brokers 1 --timeout-secs "$ready_timeout" \
    || fail_with_log "$dir" "secure broker not ready"
  log "secure Kafka ready: SASL_SSL on localhost:$sasl (CA $dir/tls/ca.pem, user $(<"$dir/sasl.user"), password in $dir/sasl.password); plaintext admin on 127.0.0.1:$secure_port"
}

cluster_up() {
  need_java
  deps
  mkdir -p "$local_dir/cluster"
  local voters="" i p cid
  for i in 1 2 3; do
    p=$((cluster_port + 100 * (i - 1)))
    voters+="${voters:+,}$i@127.0.0.1:$((p + 1))"
  done
  cid=$(cluster_id_of "$local_dir/cluster")
  for i in 1 2 3; do
    local dir=$local_dir/cluster/node$i
    p=$((cluster_port + 100 * (i - 1)))
    mkdir -p "$dir"
    if ! pid_of "$dir" >/dev/null; then
      port_taken "$dir" "$p" && die "port $p is in use by another process; set KAFKA_CLUSTER_PORT"
      write_config "$dir" "$i" "$p" "$((p + 1))" "$voters" 3
      start_node "$dir" "$cid"
    fi
  done
  local bootstrap="127.0.0.1:$cluster_port,127.0.0.1:$((cluster_port + 100)),127.0.0.1:$((cluster_port + 200))"
  admin wait --bootstrap "$bootstrap" --brokers 3 --timeout-secs "$ready_timeout" \
    || fail_with_log "$local_dir/cluster/node1" "cluster not ready"
  admin topics --bootstrap "$bootstrap" --file "$here/kafka/topics.txt" --replication-factor 3 --min-isr 2 \
    || die "creating topics failed"
  log "Kafka cluster ready on $bootstrap"
}

cluster_down() {
  # shellcheck disable=SC2046
  stop_nodes $(cluster_dirs)
}

status() {
  local d pid
  for d in "$local_dir/single" "$local_dir/secure" "$local_dir/chaos" $(cluster_dirs); do
    if pid=$(pid_of "$d"); then
      echo "running  pid $pid  $d"
    fi
  done
}

case ${1:-} in
  deps) need_java; deps ;;
  up) up ;;
  down) down ;;
  cluster-up) cluster_up ;;
  cluster-down) cluster_down ;;
  secure-up) secure_up ;;
  secure-down) stop_nodes "$local_dir/secure" ;;
  chaos-up) single_up chaos "$chaos_port" KAFKA_CHAOS_PORT ;;
  chaos-down) stop_nodes "$local_dir/chaos" ;;
  status) status ;;
  topics) deps; admin list --bootstrap "${2:-127.0.0.1:$port}" ;;
  clean) down; cluster_down; stop_nodes "$local_dir/secure" "$local_dir/chaos"; rm -rf "$local_dir/single" "$local_dir/cluster" "$local_dir/secure" "$local_dir/chaos" ;;
  *) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
