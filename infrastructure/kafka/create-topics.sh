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
# Security, with the variables the producers read (the finstream-env ConfigMap and the
# credentials Secret on Kubernetes, .env with docker-compose):
#   KAFKA_SECURITY_PROTOCOL        plaintext | ssl | sasl_plaintext | sasl_ssl (default plaintext)
#   KAFKA_SASL_MECHANISM           SCRAM-SHA-512 | SCRAM-SHA-256 | PLAIN   (default SCRAM-SHA-512)
#   KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD
#   KAFKA_SSL_CA_LOCATION          PEM file of the CA(s) to trust (default: the JVM's trust store)
#   KAFKA_SSL_CERTIFICATE_LOCATION, KAFKA_SSL_KEY_LOCATION, KAFKA_SSL_KEY_PASSWORD
#                                  a client certificate and its PKCS#8 key, PEM (mutual TLS)
# They go to kafka-topics as a --command-config file readable only by this user, removed at exit;
# the password is never printed.
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
die() { log "$*"; exit 1; }

[[ -r $topics_file ]] || die "cannot read $topics_file"

# Temporary files (the client config holds the password): removed however the script ends.
temporary=()
trap 'rm -f "${temporary[@]}"' EXIT
# scratch VAR: a new private temporary file, its path in VAR.
scratch() {
  local f
  f=$(mktemp "${TMPDIR:-/tmp}/create-topics.XXXXXX")
  chmod 600 "$f"
  temporary+=("$f")
  printf -v "$1" '%s' "$f"
}

# A value inside the JAAS option's double quotes, then as a Java properties value: backslashes
# and quotes escaped for JAAS, then backslashes again for the properties format.
jaas_quote() {
  local v=${1//\\/\\\\}
  v=${v//\"/\\\"}
  printf '%s' "${v//\\/\\\\}"
}
props_value() { printf '%s' "${1//\\/\\\\}"; }

security=()
protocol=${KAFKA_SECURITY_PROTOCOL:-plaintext}
protocol=${protocol,,}
case $protocol in
  plaintext) ;;
  ssl | sasl_plaintext | sasl_ssl)
    scratch client_config
    {
      printf 'security.protocol=%s\n' "${protocol^^}"
      if [[ $protocol == sasl_* ]]; then
        [[ -n ${KAFKA_SASL_USERNAME:-} ]] || die "KAFKA_SECURITY_PROTOCOL=$protocol needs KAFKA_SASL_USERNAME"
        [[ -n ${KAFKA_SASL_PASSWORD:-} ]] || die "KAFKA_SECURITY_PROTOCOL=$protocol needs KAFKA_SASL_PASSWORD"
        mechanism=${KAFKA_SASL_MECHANISM:-SCRAM-SHA-512}
        mechanism=${mechanism^^}
        case $mechanism in
          SCRAM-SHA-256 | SCRAM-SHA-512) module=org.apache.kafka.common.security.scram.ScramLoginModule ;;
          PLAIN) module=org.apache.kafka.common.security.plain.PlainLoginModule ;;
          *) die "KAFKA_SASL_MECHANISM=$mechanism: expected SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN" ;;
        esac
        printf 'sasl.mechanism=%s\n' "$mechanism"
        printf 'sasl.jaas.config=%s required username="%s" password="%s";\n' "$module" \
          "$(jaas_quote "$KAFKA_SASL_USERNAME")" "$(jaas_quote "$KAFKA_SASL_PASSWORD")"
      fi
      if [[ $protocol != sasl_plaintext ]]; then
        if [[ -n ${KAFKA_SSL_CA_LOCATION:-} ]]; then
          [[ -r $KAFKA_SSL_CA_LOCATION ]] || die "KAFKA_SSL_CA_LOCATION: cannot read $KAFKA_SSL_CA_LOCATION"
          printf 'ssl.truststore.type=PEM\nssl.truststore.location=%s\n' "$(props_value "$KAFKA_SSL_CA_LOCATION")"
        fi
        if [[ -n ${KAFKA_SSL_CERTIFICATE_LOCATION:-} || -n ${KAFKA_SSL_KEY_LOCATION:-} ]]; then
          [[ -r ${KAFKA_SSL_CERTIFICATE_LOCATION:-} && -r ${KAFKA_SSL_KEY_LOCATION:-} ]] ||
            die "a client certificate needs both KAFKA_SSL_CERTIFICATE_LOCATION and KAFKA_SSL_KEY_LOCATION, readable"
          # Java's PEM key store reads the key and its certificate chain from one file.
          scratch keystore
          cat "$KAFKA_SSL_KEY_LOCATION" "$KAFKA_SSL_CERTIFICATE_LOCATION" >"$keystore"
          printf 'ssl.keystore.type=PEM\nssl.keystore.location=%s\n' "$(props_value "$keystore")"
          [[ -z ${KAFKA_SSL_KEY_PASSWORD:-} ]] || printf 'ssl.key.password=%s\n' "$(props_value "$KAFKA_SSL_KEY_PASSWORD")"
        fi
      fi
    } >"$client_config"
    security=(--command-config "$client_config")
    ;;
  *) die "KAFKA_SECURITY_PROTOCOL=$protocol: expected plaintext, ssl, sasl_plaintext or sasl_ssl" ;;
esac

topics() { "${kafka_topics[@]}" --bootstrap-server "$bootstrap" "${security[@]}" "$@"; }

deadline=$((SECONDS + wait_secs))
scratch errors
until existing=$(topics --list 2>"$errors"); do
  if ((SECONDS >= deadline)); then
    # The tool's last error says why (refused connection, failed authentication, TLS); it
    # prints it on stdout or stderr.
    last=$({ printf '%s\n' "$existing"; cat "$errors"; } | grep -E 'Exception|Error' | tail -n 1 | cut -c1-300 || true)
    die "cluster at $bootstrap ($protocol) not reachable after ${wait_secs}s${last:+: $last}"
  fi
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
