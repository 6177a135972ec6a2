#!/usr/bin/env bash
# Copies the files the Kubernetes manifests carry into them: configs/config.yaml into
# infrastructure/kubernetes/01-config.yaml (key `config.yaml`), and the topics script and file
# docker-compose's topic-init uses into 02-topics-job.yaml (keys `create-topics.sh`, `topics.txt`),
# indented four spaces, and the alert rules into the PrometheusRule. `make test` checks that the
# copies are equal; run this (`make sync-configmap`) after editing any of the sources.
set -euo pipefail
cd "$(dirname "$0")/.."

# sync MANIFEST KEY SOURCE: replaces the block literal of KEY in MANIFEST with SOURCE.
sync() {
  local cm=$1 key=$2 src=$3 tmp
  tmp=$(mktemp)
  awk -v src="$src" -v key="  $key: |" '
    # Inside the block: lines indented 4+ spaces or blank; the block ends at the next key.
    inblock && /^    / { blank = 0; next }
    inblock && /^$/ { blank++; next }
    inblock { inblock = 0 }
    !inblock && blank > 0 { for (i = 0; i < blank; i++) print ""; blank = 0 }
    $0 == key {
      print
      while ((getline line < src) > 0) print (line == "" ? "" : "    " line)
      inblock = 1
      next
    }
    { print }
  ' "$cm" >"$tmp"
  mv "$tmp" "$cm"
}

sync infrastructure/kubernetes/01-config.yaml config.yaml configs/config.yaml
sync infrastructure/kubernetes/02-topics-job.yaml create-topics.sh infrastructure/kafka/create-topics.sh
sync infrastructure/kubernetes/02-topics-job.yaml topics.txt scripts/kafka/topics.txt

# The PrometheusRule carries infrastructure/prometheus/alerts.yml's groups under `spec:`.
rule=infrastructure/kubernetes/monitoring/prometheusrule.yaml
tmp=$(mktemp)
{
  sed '/^spec:$/q' "$rule"
  sed -n '/^groups:/,$p' infrastructure/prometheus/alerts.yml | sed 's/^\(.\)/  \1/'
} >"$tmp"
mv "$tmp" "$rule"
