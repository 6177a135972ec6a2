#!/usr/bin/env bash
# Entrypoint of the producer images. With FINSTREAM_DEMO_SIM=<host:port> (docker-compose sets
# provider-sim:9400), every provider whose credentials are not set runs against provider-sim
# (scripts/demo-env.sh, the same rules as `make run`); without it (Kubernetes, production) the
# producer starts exactly as configured. Arguments go to the producer (--check-config, ...).
set -euo pipefail
share=${FINSTREAM_SHARE_DIR:-/usr/local/share/finstream}
producer=${FINSTREAM_PRODUCER_BIN:-/usr/local/bin/producer}
if [[ -n ${FINSTREAM_DEMO_SIM:-} ]]; then
  demo_sim=$FINSTREAM_DEMO_SIM
  export FINSTREAM_DEMO_OVERLAY=$share/demo.yaml
  # shellcheck source=scripts/demo-env.sh
  . "$share/demo-env.sh"
fi
exec "$producer" "$@"
