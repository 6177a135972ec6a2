#!/usr/bin/env bash
# Checks the invariants of ARCHITECTURE.md that a search can check (the compiler and clippy check
# the others: see clippy.toml). Run by `make lint` (and so by CI).
#
#   scripts/check-invariants.sh [ROOT]      check the tree at ROOT (default: the repository)
#   scripts/check-invariants.sh --self-test  break each invariant in a scratch copy of the
#                                           repository and show that its check fails
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Each check prints its violations and returns 1 when there is one.

# Nothing in the repository refers to documents outside it (CI's use of the vendored advisory
# snapshot in .ci/run aside).
check_self_contained() {
  local root=$1 hits
  hits=$(cd "$root" && grep -rnE '\.\./shared|(^|[^/a-z-])(design|style|containers|providers-backfill)\.md|(^|[^/])providers\.md ?§' \
    --include='*.rs' --include='*.md' --include='*.toml' --include='*.yaml' --include='*.yml' \
    --include='*.sh' --include='*.json' --include='*.java' --include='*.xml' --include='Makefile' \
    --include='Dockerfile' --include='*.txt' --include='.env.example' \
    --exclude-dir=target --exclude-dir=.git --exclude-dir=.local --exclude-dir=node_modules . |
    grep -v '^\./scripts/check-invariants\.sh:' || true)
  [[ -z $hits ]] || { echo "refers to documents outside the repository:"; echo "$hits"; return 1; }
}

# Only ingest-core's kafka/ module (and the test kit, an independent consumer) uses rdkafka.
check_rdkafka_confined() {
  local root=$1 hits
  hits=$(cd "$root" && grep -rnE '\brdkafka::|use rdkafka' --include='*.rs' crates/*/src |
    grep -vE '^crates/ingest-core/src/(kafka/|testkit\.rs:)' || true)
  [[ -z $hits ]] || { echo "rdkafka used outside ingest-core/src/kafka/:"; echo "$hits"; return 1; }
}

# No ingest-core source file above 600 lines: one concern per file.
check_core_file_size() {
  local root=$1 hits
  hits=$(cd "$root" && find crates/ingest-core/src -name '*.rs' -print0 | xargs -0 wc -l |
    awk '$2 != "total" && $1 > 600 { print $2 ": " $1 " lines" }')
  [[ -z $hits ]] || { echo "ingest-core source files above 600 lines:"; echo "$hits"; return 1; }
}

# Each crate has one integration-test binary (tests/integration/main.rs), plus the chaos
# scenarios (tests/chaos/main.rs) where a crate has them: no other test targets.
check_test_binaries() {
  local root=$1 hits=""
  for dir in "$root"/crates/*/tests; do
    [[ -d $dir ]] || continue
    for entry in "$dir"/*; do
      case "$(basename "$entry")" in
        integration | chaos) [[ -f $entry/main.rs ]] || hits+="${entry#"$root"/}: no main.rs"$'\n' ;;
        *) hits+="${entry#"$root"/}: a test target besides tests/integration and tests/chaos"$'\n' ;;
      esac
    done
  done
  [[ -z $hits ]] || { echo "integration tests not one binary per crate:"; printf '%s' "$hits"; return 1; }
}

# The compiler-checked rules exist (clippy.toml), and each is lifted only where its concern
# lives: metric labels in telemetry/ (handles.rs, metrics.rs), the one blocking sleep in
# blocking.rs.
check_clippy_rules() {
  local root=$1 hits missing=""
  for path in prometheus::core::MetricVec::with_label_values std::thread::sleep; do
    grep -q "path = \"$path\"" "$root/clippy.toml" || missing+="clippy.toml lacks the disallowed-methods rule for $path"$'\n'
  done
  hits=$(cd "$root" && grep -rn 'clippy::disallowed_methods' --include='*.rs' crates fuzz 2>/dev/null |
    grep -vE '^crates/ingest-core/src/(telemetry/(handles|metrics)\.rs|blocking\.rs):' || true)
  [[ -z $missing && -z $hits ]] || {
    printf '%s' "$missing"
    [[ -z $hits ]] || { echo "disallowed methods allowed outside their home:"; echo "$hits"; }
    return 1
  }
}

# Market WebSocket sessions (the folder of each provider: the mod.rs that implements Provider)
# never hold the sink or do I/O: what they produce goes to the output the runner hands them.
check_sessions_pure() {
  local root=$1 hits folders
  folders=$(cd "$root" && grep -l 'impl Provider for' crates/market-producer/src/*/mod.rs || true)
  [[ -n $folders ]] || { echo "no provider folder found (impl Provider for … in crates/market-producer/src/*/mod.rs)"; return 1; }
  # shellcheck disable=SC2086 # one path per word
  hits=$(cd "$root" && grep -nE '\b(Sink|Emitter|SourceCtx|tokio::|std::(net|fs|thread))\b' $folders |
    grep -vE '^\S+:[0-9]+:\s*//' || true)
  [[ -z $hits ]] || { echo "a market session does I/O or holds the sink:"; echo "$hits"; return 1; }
}

# Market providers are told apart in one place, the match in market-producer's provider.rs:
# elsewhere no code names a provider variant or matches on a provider's name.
check_providers_one_match() {
  local root=$1 hits
  hits=$(cd "$root" && grep -rnE 'MarketProvider::[A-Z][a-z]+|"(polygon|alpaca|finnhub)"\s*(=>|\|)|== *"(polygon|alpaca|finnhub)"' \
    crates/market-producer/src | grep -v '^crates/market-producer/src/provider\.rs:' || true)
  [[ -z $hits ]] || { echo "a provider told apart outside provider.rs:"; echo "$hits"; return 1; }
}

# Telemetry is named events: an `ingest.event/v1` record is built only by an event's emit
# (telemetry/events.rs), which logs and counts with it; the record type lives in record/event.rs.
check_events_named() {
  local root=$1 hits
  hits=$(cd "$root" && grep -rnE 'IngestEvent(::new\(| \{)' --include='*.rs' crates/*/src |
    grep -vE '^crates/ingest-core/src/(telemetry/events|record/event)\.rs:' || true)
  [[ -z $hits ]] || { echo "an ingest.events record built outside telemetry/events.rs:"; echo "$hits"; return 1; }
}

CHECKS=(self_contained rdkafka_confined core_file_size test_binaries clippy_rules sessions_pure providers_one_match
  events_named)

run_checks() {
  local root=$1 failed=0
  for c in "${CHECKS[@]}"; do
    if out=$("check_$c" "$root" 2>&1); then
      echo "ok    $c"
    else
      echo "FAIL  $c"
      sed 's/^/      /' <<<"$out"
      failed=1
    fi
  done
  return $failed
}

# Breaks each invariant in a scratch copy and expects exactly its check to fail.
self_test() {
  local scratch
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' RETURN
  fresh() {
    rm -rf "$scratch/repo"
    mkdir -p "$scratch/repo"
    (cd "$here" && git ls-files -z | xargs -0 cp --parents -t "$scratch/repo")
  }
  expect_failure() {
    local check=$1 what=$2
    local out
    if out=$("check_$check" "$scratch/repo" 2>&1); then
      echo "self-test FAILED: $check did not catch: $what"
      return 1
    fi
    echo "ok    $check catches: $what"
    # What the check said, its first two lines, so the failure is seen and not only claimed.
    head -n 2 <<<"$out" | sed 's/^/        | /'

  }
  local r="$scratch/repo"
  fresh
  run_checks "$r" >/dev/null || { echo "self-test: the unmodified copy does not pass"; run_checks "$r"; return 1; }
  # The outside path is assembled, so this script does not cite it itself.
  local outside="../${SHARED_DIR:-shared}/design.md"
  fresh; echo "//! See $outside" >>"$r/crates/ingest-core/src/clock.rs"
  expect_failure self_contained "a comment citing a design document outside the repository"
  fresh; echo 'See providers.md §1.' >>"$r/README.md"
  expect_failure self_contained "README citing providers.md §1"
  fresh; echo 'use rdkafka::ClientConfig;' >>"$r/crates/ingest-core/src/poll/mod.rs"
  expect_failure rdkafka_confined "poll/ importing rdkafka"
  fresh; seq 1 601 | sed 's#^#// #' >>"$r/crates/ingest-core/src/clock.rs"
  expect_failure core_file_size "clock.rs grown past 600 lines"
  fresh; echo '#[test] fn t() {}' >"$r/crates/news-producer/tests/extra.rs"
  expect_failure test_binaries "a second test binary in news-producer"
  fresh; echo '#[allow(clippy::disallowed_methods)] fn f() {}' >>"$r/crates/ingest-core/src/poll/mod.rs"
  expect_failure clippy_rules "a disallowed method allowed in poll/"
  fresh; sed -i '/std::thread::sleep/d' "$r/clippy.toml"
  expect_failure clippy_rules "the thread-sleep rule removed from clippy.toml"
  fresh; echo 'use ingest_core::kafka::Sink;' >>"$r/crates/market-producer/src/polygon/mod.rs"
  expect_failure sessions_pure "the Polygon session importing the sink"
  fresh; echo 'fn alpaca(p: crate::provider::MarketProvider) -> bool { p == MarketProvider::Alpaca }' \
    >>"$r/crates/market-producer/src/config.rs"
  expect_failure providers_one_match "config.rs testing for Alpaca"
  fresh; printf 'fn f(s: &str) -> u8 { match s { "finnhub" => 1, _ => 0 } }\n' >>"$r/crates/market-producer/src/source.rs"
  expect_failure providers_one_match "source.rs matching on a provider's name"
  fresh; echo 'fn f(p: &str) -> IngestEvent { IngestEvent::new(p, "x", EventKind::Gap) }' \
    >>"$r/crates/social-producer/src/x_stream.rs"
  expect_failure events_named "x_stream.rs building a gap record by hand"
  echo "self-test: every check fails on its violation"
}

case "${1:-}" in
  --self-test) self_test ;;
  -h | --help) sed -n '2,7p' "$0" ;;
  *) run_checks "${1:-$here}" ;;
esac
