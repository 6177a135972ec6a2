#!/usr/bin/env bash
# Checks the dependency tree against a RustSec advisory-database snapshot without any network:
#   scripts/advisories-offline.sh path/to/rustsec-advisory-db.tar.gz
# CI runs it with the snapshot its machines carry. cargo-deny (the version `make deny` pins)
# opens a database as a git checkout in <db-path>/advisory-db-<hash of its URL>, reading the
# HEAD commit's date: the snapshot's files are unpacked there in a scratch folder and committed
# once, dated like the snapshot; deny.toml's policy is run with its db-path pointed there.
# Exit status: cargo-deny's (non-zero on any finding that deny.toml does not explain).
set -euo pipefail
cd "$(dirname "$0")/.."
tarball=${1:?usage: $0 <rustsec-advisory-db.tar.gz>}
[[ -f $tarball ]] || { echo "advisories-offline: no snapshot at $tarball" >&2; exit 1; }
scratch=$(pwd)/.local/advisory-db
# The folder name cargo-deny 0.20 derives from the default database URL.
db=$scratch/advisory-db-3157b0e258782691
rm -rf "$scratch" && mkdir -p "$db"
tar -xzf "$tarball" -C "$db"
[[ -d $db/crates ]] || { echo "advisories-offline: $tarball is not the RustSec advisory database" >&2; exit 1; }
stamp=$(date -u -r "$tarball" +%Y-%m-%dT%H:%M:%SZ)
(
  cd "$db"
  git init -q
  git add -A
  GIT_AUTHOR_DATE=$stamp GIT_COMMITTER_DATE=$stamp \
    git -c user.name=finstream-ci -c user.email=ci@localhost -c commit.gpgsign=false commit -q -m "RustSec snapshot $stamp"
)
echo "advisories-offline: $(find "$db/crates" -name '*.md' | wc -l) advisories, snapshot of $stamp"
# deny.toml's policy, with the database read from the scratch folder.
awk -v db="$scratch" '{ print } /^\[advisories\]$/ { print "db-path = \"" db "\"" }' deny.toml >"$scratch/deny.toml"
cargo deny --offline --config "$scratch/deny.toml" check advisories
