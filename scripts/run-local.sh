#!/usr/bin/env bash
# `make run` / `make run-<producer>`: local Kafka plus the producers, in the foreground.
#
#   scripts/run-local.sh [all|market|news|social|sec|altdata]
#
# Credentials come from the environment or .env. Without MARKET_API_KEY the market producer
# streams from provider-sim's Polygon simulator on 127.0.0.1:$PROVIDER_SIM_PORT (demo mode:
# generated trades). Without NEWS_API_KEY and ALPHAVANTAGE_API_KEY the news producer polls
# provider-sim's NewsAPI and Alpha Vantage (demo stories, a new one every 15 s); with only one
# of them, the other provider is disabled. Without SEC_USER_AGENT the SEC producer polls
# provider-sim's EDGAR (demo filings, a new one every 20 s). Without Reddit credentials the
# social producer polls the simulated Reddit and StockTwits; without TWITTER_BEARER_TOKEN the
# X filtered stream comes from the simulator. The altdata example sources (configs/demo.yaml,
# overlaid through FINSTREAM_CONFIG_OVERLAY) are served by the
# simulator as well. Each producer gets its own ports:
#   market 9101/8181, news 9102/8182, social 9103/8183, sec 9104/8184, altdata 9105/8185
# (metrics/health). Logs: .local/run/<producer>.log, and prefixed on this terminal.
# Ctrl-C stops the producers gracefully (Kafka keeps running: `make kafka-down`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

which=${1:-all}
case $which in
  all) producers=(market news social sec altdata) ;;
  market | news | social | sec | altdata) producers=("$which") ;;
  *) echo "usage: $0 [all|market|news|social|sec|altdata]" >&2; exit 2 ;;
esac

[[ -f .env ]] && { set -a; . ./.env; set +a; }
port=${KAFKA_PORT:-9092}
export KAFKA_BROKERS=${KAFKA_BROKERS:-127.0.0.1:$port}

sim_port=${PROVIDER_SIM_PORT:-9400}
demo_sim=127.0.0.1:$sim_port
. scripts/demo-env.sh
runs() { [[ " ${producers[*]} " == *" $1 "* ]]; }
# Only what concerns the producers being run.
((demo_market)) && runs market && echo "run-local: demo mode for market data: provider-sim on 127.0.0.1:$sim_port"
((demo_news)) && runs news && echo "run-local: demo mode for news: provider-sim on 127.0.0.1:$sim_port"
((demo_social)) && runs social && echo "run-local: demo mode for social (no Reddit credentials): provider-sim on 127.0.0.1:$sim_port"
((demo_sec)) && runs sec && echo "run-local: demo mode for SEC filings (no SEC_USER_AGENT): provider-sim on 127.0.0.1:$sim_port"

mkdir -p .local/run
# Kafka's own report (every topic of every producer) goes to a file: this terminal shows what
# concerns the producers being run.
scripts/kafka.sh up >.local/run/kafka-up.log || { cat .local/run/kafka-up.log; exit 1; }
# The first build compiles a few hundred crates (about 6 minutes on 2 cores); cargo shows its
# progress. Later runs rebuild only what changed.
packages=(-p provider-sim)
for p in "${producers[@]}"; do packages+=(-p "$p-producer"); done
[[ -x target/debug/provider-sim ]] || echo "run-local: first build of the producers: this takes a few minutes; progress below"
cargo build --bins "${packages[@]}"

mkdir -p .local/run
pids=()
stop() {
  trap - INT TERM EXIT
  ((${#pids[@]})) && kill -TERM "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
}
trap stop INT TERM EXIT

sim_args=()
if ((demo_market)) && runs market; then
  symbols=$(awk '/^market:/{m=1} m && /^  symbols:/{gsub(/.*\[|\].*| /,""); print; exit}' configs/config.yaml)
  sim_args+=(--polygon-key demo --firehose-symbols "${symbols:-AAPL,MSFT}" --firehose-fps 20)
fi
if ((demo_news)) && runs news; then
  sim_args+=(--newsapi-key demo --alphavantage-key demo --news-every-secs 15)
fi
if ((demo_sec)) && runs sec; then
  sim_args+=(--sec-every-secs 20)
fi
if ((demo_social)) && runs social; then
  sim_args+=(--reddit-client-id demo --reddit-client-secret demo --x-bearer-token demo --social-every-secs 10)
fi
# The altdata examples of the demo overlay are served by the simulator too.
start_sim=${#sim_args[@]}
runs altdata && start_sim=1
if ((start_sim)); then
  setsid target/debug/provider-sim --listen "127.0.0.1:$sim_port" "${sim_args[@]}" \
    > >(trap "" INT; tee .local/run/provider-sim.log | sed -u "s/^/[sim] /") 2>&1 &
  pids+=($!)
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$sim_port") 2>/dev/null && break; sleep 0.1; done
fi

n=0
for p in "${producers[@]}"; do
  case $p in market) n=1 ;; news) n=2 ;; social) n=3 ;; sec) n=4 ;; altdata) n=5 ;; esac
  # Process substitution, so that $! is the producer itself; setsid, so that a terminal Ctrl-C
  # reaches it once, through the trap below, and not twice (a second signal skips the flush).
  FINSTREAM__TELEMETRY__METRICS_ADDR=127.0.0.1:910$n FINSTREAM__TELEMETRY__HEALTH_ADDR=127.0.0.1:818$n \
    setsid "target/debug/$p-producer" > >(trap "" INT; tee ".local/run/$p.log" | sed -u "s/^/[$p] /") 2>&1 &
  pids+=($!)
  echo "run-local: $p-producer  metrics http://127.0.0.1:910$n/metrics  ready http://127.0.0.1:818$n/ready"
done
# Every topic the producers being run write, each with its dead-letter topic. Polled producers
# write in Kafka transactions: read them read_committed.
echo "run-local: watch the records with kcat:"
kcat_line() { echo "run-local:   kcat -b $KAFKA_BROKERS -C -t $1 $2-f '%k %s\\n'"; }
for p in "${producers[@]}"; do
  case $p in
    market) topic=market.ticks.raw committed='' ;;
    news) topic=news.articles.raw committed='-X isolation.level=read_committed ' ;;
    social) topic=social.posts.raw committed='-X isolation.level=read_committed ' ;;
    sec) topic=sec.filings.raw committed='-X isolation.level=read_committed ' ;;
    altdata) topic=altdata.records.raw committed='-X isolation.level=read_committed ' ;;
  esac
  kcat_line "$topic" "$committed"
  kcat_line "${topic%.raw}.dlq" "$committed"
done
kcat_line ingest.events ''
wait
