# Demo mode, shared by `make run` (scripts/run-local.sh) and the container entrypoint
# (scripts/docker-entrypoint.sh): for each provider whose credentials are not set, point the
# producer at provider-sim on $demo_sim (host:port) with the simulator's demo credentials and
# short intervals. Providers whose credentials are set are left alone (the real APIs).
# Sourced, not run: sets demo_market, demo_news, demo_social, demo_sec (1 = demo) and exports
# the variables the producers read.
: "${demo_sim:?demo-env.sh: set demo_sim=<host:port of provider-sim> before sourcing}"
demo_market=0
if [[ -z ${MARKET_API_KEY:-} ]]; then
  demo_market=1
  # The simulator trades around the clock, so demo data is not held to the NYSE calendar.
  export MARKET_API_KEY=demo MARKET_PROVIDER=polygon MARKET_WS_URL=ws://$demo_sim/stocks \
    FINSTREAM__MARKET__SESSION=always
fi
demo_news=0
if [[ -z ${NEWS_API_KEY:-} && -z ${ALPHAVANTAGE_API_KEY:-} ]]; then
  demo_news=1
  export NEWS_API_KEY=demo ALPHAVANTAGE_API_KEY=demo \
    FINSTREAM__NEWS__NEWSAPI__BASE_URL=http://$demo_sim \
    FINSTREAM__NEWS__ALPHAVANTAGE__BASE_URL=http://$demo_sim \
    FINSTREAM__NEWS__NEWSAPI__INTERVAL_SECS=10 FINSTREAM__NEWS__ALPHAVANTAGE__INTERVAL_SECS=10 \
    FINSTREAM__NEWS__NEWSAPI__DAILY_QUOTA=0 FINSTREAM__NEWS__ALPHAVANTAGE__DAILY_QUOTA=0 \
    FINSTREAM__NEWS__NEWSAPI__QUERIES=markets
elif [[ -z ${NEWS_API_KEY:-} ]]; then
  export FINSTREAM__NEWS__NEWSAPI__ENABLED=false NEWS_API_KEY=unused
elif [[ -z ${ALPHAVANTAGE_API_KEY:-} ]]; then
  export FINSTREAM__NEWS__ALPHAVANTAGE__ENABLED=false ALPHAVANTAGE_API_KEY=unused
fi
demo_social=0
if [[ -z ${REDDIT_CLIENT_ID:-} || -z ${REDDIT_CLIENT_SECRET:-} ]]; then
  demo_social=1
  export REDDIT_CLIENT_ID=demo REDDIT_CLIENT_SECRET=demo \
    FINSTREAM__SOCIAL__REDDIT__BASE_URL=http://$demo_sim \
    FINSTREAM__SOCIAL__REDDIT__AUTH_URL=http://$demo_sim \
    FINSTREAM__SOCIAL__STOCKTWITS__BASE_URL=http://$demo_sim \
    FINSTREAM__SOCIAL__REDDIT__INTERVAL_SECS=10 FINSTREAM__SOCIAL__STOCKTWITS__INTERVAL_SECS=10 \
    FINSTREAM__SOCIAL__STOCKTWITS__REQUESTS_PER_HOUR=3600
fi
# Without an X bearer token the filtered stream comes from the simulator.
if [[ -z ${TWITTER_BEARER_TOKEN:-} ]]; then
  demo_social=1
  export TWITTER_BEARER_TOKEN=demo FINSTREAM__SOCIAL__TWITTER__BASE_URL=http://$demo_sim
fi
demo_sec=0
if [[ -z ${SEC_USER_AGENT:-} ]]; then
  demo_sec=1
  export SEC_USER_AGENT="FinStream ingest demo demo@example.com" \
    FINSTREAM__SEC__BASE_URL=http://$demo_sim FINSTREAM__SEC__DATA_URL=http://$demo_sim \
    FINSTREAM__SEC__INTERVAL_SECS=10 FINSTREAM__SEC__SUBMISSIONS_INTERVAL_SECS=60
fi
# The altdata examples (configs/demo.yaml, or $FINSTREAM_DEMO_OVERLAY in the images) pointed at
# the simulator, with its host let through the SSRF guard: a generated overlay the producers
# merge over their config (FINSTREAM_CONFIG_OVERLAY). The shipped config has neither.
demo_overlay_src=${FINSTREAM_DEMO_OVERLAY:-configs/demo.yaml}
if [[ -f $demo_overlay_src ]]; then
  demo_host=${demo_sim%:*}
  demo_overlay=$(mktemp "${TMPDIR:-/tmp}/finstream-demo-XXXXXX")
  sed -e "s|127\.0\.0\.1:9400|$demo_sim|g" -e "s|allow_private: \[\"127\.0\.0\.1\"\]|allow_private: [\"$demo_host\"]|" \
    "$demo_overlay_src" >"$demo_overlay"
  export FINSTREAM_CONFIG_OVERLAY=$demo_overlay
fi
