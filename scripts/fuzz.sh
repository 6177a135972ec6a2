#!/usr/bin/env bash
# Fuzzes every wire parser with cargo-fuzz (libFuzzer), one target after the other, and prints
# a table: target, inputs tried, seconds, corpus size, peak RSS, result.
#
#   scripts/fuzz.sh                      # every target, FUZZ_SECS (default 60) each
#   FUZZ_SECS=10 scripts/fuzz.sh reddit  # one target, 10 s
#   FUZZ_RUNS=20000 scripts/fuzz.sh      # a fixed number of inputs per target, seed 1 (CI:
#                                        # the same inputs on every run, given the same code)
#
# Works on the stable toolchain (no sanitizer: the code under test has no `unsafe`, and
# AddressSanitizer breaks librdkafka's configure; coverage instrumentation is what matters).
# Seeds: the producers' recorded provider fixtures plus fuzz/seeds/<target>; the corpus grows
# in .local/fuzz/corpus/<target> across runs. A crash leaves its input in
# fuzz/artifacts/<target>/ and makes the script exit 1 after the other targets have run.
# Limits per input: 128 KiB, 10 s; a single allocation over 256 MiB or RSS over 1 GiB is a
# failure (no input this small may cause an allocation that large).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECS=${FUZZ_SECS:-60}
RUNS=${FUZZ_RUNS:-}
if [[ -n $RUNS ]]; then BUDGET=(-runs="$RUNS" -seed=1); PER="$RUNS inputs"; else BUDGET=(-max_total_time="$SECS"); PER="${SECS}s"; fi
CARGO_FUZZ_VERSION=0.13.2
OUT=.local/fuzz
TARGETS=(market_frame newsapi alphavantage reddit stocktwits x_search x_stream
  sec_feed sec_submissions altdata_json altdata_csv altdata_html spool_recovery)
[[ $# -gt 0 ]] && TARGETS=("$@")

if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  echo "installing cargo-fuzz $CARGO_FUZZ_VERSION (crates.io)" >&2
  cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi

# Seeds: fixtures as the producers receive them, after a selector byte where the target takes
# one: poller targets an HTTP status (0 = 200, see ingest_core::hostile::STATUSES), market_frame
# the provider (its index in market_producer's MarketProvider::ALL: 0 polygon, 1 alpaca, 2 finnhub).
seed() { # target file [selector byte, decimal] [name]
  local dir=$OUT/seeds/$1 name
  name=${4:-$(basename "$2")}
  mkdir -p "$dir"
  if [[ -n ${3:-} ]]; then { printf "\\x$(printf %02x "$3")"; cat "$2"; } > "$dir/$name"; else cp "$2" "$dir/$name"; fi
}
status=0 polygon=0 alpaca=1 finnhub=2
rm -rf "$OUT/seeds"
M=crates/market-producer/test_data N=crates/news-producer/test_data S=crates/social-producer/test_data
for f in "$M"/polygon/*.frame.json; do seed market_frame "$f" $polygon; done
for f in "$M"/alpaca/*.frame.json; do seed market_frame "$f" $alpaca; done
i=0
while IFS= read -r line; do
  seed market_frame <(printf '%s' "$line") $finnhub "finnhub$((i++)).json"
done < "$M/finnhub/trades.frames.jsonl"
for f in "$N"/newsapi/*.json; do seed newsapi "$f" $status; done
for f in "$N"/alphavantage/*.json; do seed alphavantage "$f" $status; done
seed reddit "$S/reddit_new.json" $status
seed stocktwits "$S/stocktwits_f.json" $status
seed sec_feed crates/sec-producer/test_data/current_8k_4_13d.atom $status
for d in fuzz/seeds/*/; do
  t=$(basename "$d")
  mkdir -p "$OUT/seeds/$t"
  cp "$d"* "$OUT/seeds/$t/"
done

(cd fuzz && cargo fuzz build -O -s none)

summary=$OUT/summary.txt
mkdir -p "$OUT"
{
  echo "# cargo-fuzz $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(rustc --version), $PER per target, no sanitizer"
  printf '%-16s %12s %6s %8s %9s  %s\n' target inputs secs corpus peak_rss result
} | tee "$summary"
failed=0
for t in "${TARGETS[@]}"; do
  mkdir -p "$OUT/corpus/$t" "$OUT/seeds/$t"
  log=$OUT/$t.log
  start=$(date +%s)
  set +e
  (cd fuzz && cargo fuzz run -O -s none "$t" "$ROOT/$OUT/corpus/$t" "$ROOT/$OUT/seeds/$t" -- \
    "${BUDGET[@]}" -max_len=131072 -timeout=10 -rss_limit_mb=1024 -malloc_limit_mb=256 \
    -print_final_stats=1 -close_fd_mask=3) > "$log" 2>&1
  rc=$?
  set -e
  secs=$(($(date +%s) - start))
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
  rss=$(grep -o 'stat::peak_rss_mb: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
  corpus=$(find "$OUT/corpus/$t" -type f | wc -l)
  if [[ $rc -eq 0 ]]; then result="0 crashes"; else result="FAILED (exit $rc, see $log and fuzz/artifacts/$t)"; failed=1; fi
  printf '%-16s %12s %6s %8s %8sM  %s\n' "$t" "${runs:-?}" "$secs" "$corpus" "${rss:-?}" "$result" | tee -a "$summary"
done
echo "summary: $summary"
exit $failed
