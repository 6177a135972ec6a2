#!/usr/bin/env bash
# Test certificates for provider-sim's https:// and wss:// listeners (tests and `make test`):
#   .local/test-ca/ca.pem, ca.key                  the test CA the producers are told to trust
#   .local/test-ca/server.pem, server.key          localhost / 127.0.0.1 and the test names
#                                                  data.example, cdn.example, evil.example,
#                                                  internal.example, signed by the test CA
#   .local/test-ca/untrusted-ca.pem                a CA nobody trusts
#   .local/test-ca/untrusted-server.pem, .key      localhost / 127.0.0.1, signed by that CA
# Made once (delete the folder to make new ones). Needs openssl.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
dir=${TEST_CA_DIR:-$repo/.local/test-ca}
# The marker names the version of this recipe: a folder made by an older one is made again.
marker=done-v2
[[ -f $dir/$marker ]] && exit 0
command -v openssl >/dev/null || { echo "test-ca.sh: openssl not found (Debian: openssl)" >&2; exit 1; }
tmp=$(mktemp -d "${dir%/*}/.test-ca.XXXXXX" 2>/dev/null || { mkdir -p "${dir%/*}"; mktemp -d "${dir%/*}/.test-ca.XXXXXX"; })
trap 'rm -rf "$tmp"' EXIT
(
  cd "$tmp"
  names=DNS:localhost,IP:127.0.0.1,DNS:data.example,DNS:cdn.example,DNS:evil.example,DNS:internal.example
  printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' "$names" >server.ext
  for who in "" untrusted-; do
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "${who}ca.key" -out "${who}ca.pem" -days 3650 \
      -subj "/CN=FinStream ${who:-test }CA" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout "${who}server.rsa" -out "${who}server.csr" -subj "/CN=localhost" 2>/dev/null
    openssl x509 -req -in "${who}server.csr" -CA "${who}ca.pem" -CAkey "${who}ca.key" -CAcreateserial \
      -out "${who}server.pem" -days 3650 -extfile server.ext 2>/dev/null
    openssl pkcs8 -topk8 -nocrypt -in "${who}server.rsa" -out "${who}server.key"
    rm -f "${who}server.rsa" "${who}server.csr"
  done
  chmod 600 ./*.key
)
rm -rf "$dir" && mv "$tmp" "$dir" && trap - EXIT
touch "$dir/$marker"
echo "test-ca.sh: test certificates in $dir"
