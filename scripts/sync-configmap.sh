#!/usr/bin/env bash
# Copies configs/config.yaml into the Kubernetes ConfigMap (infrastructure/kubernetes/01-config.yaml,
# key `config.yaml`, indented four spaces). `make test` checks that the two are equal; run this
# (`make sync-configmap`) after editing configs/config.yaml.
set -euo pipefail
cd "$(dirname "$0")/.."
cm=infrastructure/kubernetes/01-config.yaml
tmp=$(mktemp)
awk -v src=configs/config.yaml '
  # Inside the block: lines indented 4+ spaces or blank; the block ends at the next key.
  inblock && /^    / { blank = 0; next }
  inblock && /^$/ { blank++; next }
  inblock { inblock = 0 }
  !inblock && blank > 0 { for (i = 0; i < blank; i++) print ""; blank = 0 }
  /^  config.yaml: \|$/ {
    print
    while ((getline line < src) > 0) print (line == "" ? "" : "    " line)
    inblock = 1
    next
  }
  { print }
' "$cm" >"$tmp"
mv "$tmp" "$cm"
