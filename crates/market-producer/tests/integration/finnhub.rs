//! The Finnhub path end to end: the market-producer binary, provider-sim's Finnhub simulator on
//! 127.0.0.1:0, and the real local Kafka.

use std::path::Path;
use std::time::Duration;

use ingest_core::record::{DeadLetter, EventKind};
use ingest_core::testkit::{self, ProducerProcess};
use provider_sim::Sim;
use provider_sim::finnhub::{FinnhubConfig, FinnhubHandle};
use rdkafka::message::Message;

use crate::common::{Topics, sim_tls, value, wait_event};

const TOKEN: &str = "fh-test-token-42";

async fn start(sim_cfg: FinnhubConfig, symbols: &str) -> (Sim, FinnhubHandle, Topics, ProducerProcess) {
    let topics = Topics::create().await;
    let finnhub = FinnhubHandle::new(sim_cfg);
    // The URL exactly as Finnhub documents it: wss:// and no path (`wss://ws.finnhub.io`).
    let (sim, ca) = sim_tls(finnhub.router()).await;
    let url = sim.ws_url("");
    assert!(url.starts_with("wss://") && !url.ends_with('/'), "{url}");
    let mut env: Vec<(&str, &str)> = vec![
        ("TLS_EXTRA_CA_FILE", &ca),
        ("MARKET_PROVIDER", "finnhub"),
        ("MARKET_API_KEY", TOKEN),
        ("MARKET_WS_URL", &url),
        // The simulator trades around the clock: a calendar would make the test depend on the hour.
        ("FINSTREAM__MARKET__SESSION", "always"),
        ("FINSTREAM__MARKET__SYMBOLS", symbols),
        ("FINSTREAM__MARKET__RECONNECT_BASE_MS", "50"),
    ];
    env.extend(topics.env());
    let producer = ProducerProcess::spawn(Path::new(env!("CARGO_BIN_EXE_market-producer")), &env);
    (sim, finnhub, topics, producer)
}

async fn wait_subscriptions(f: &FinnhubHandle, want: &[&str]) {
    let want: Vec<String> = want.iter().map(|s| (*s).to_string()).collect();
    testkit::wait_for(Duration::from_secs(30), "subscriptions", || {
        let (f, want) = (f.clone(), want.clone());
        async move { f.subscriptions().contains(&want).then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trades_flow_with_pings_and_the_symbol_limit_is_reported() {
    let (_sim, f, t, p) =
        start(FinnhubConfig { token: TOKEN.into(), max_symbols: 2 }, "AAPL,BINANCE:BTCUSDT,MSFT").await;
    wait_subscriptions(&f, &["AAPL", "BINANCE:BTCUSDT"]).await;
    let frames =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data/finnhub/trades.frames.jsonl"))
            .unwrap();
    for frame in frames.lines() {
        f.ping();
        assert_eq!(f.push(frame), 1);
    }
    let got = testkit::consume(&t.topic, 3, Duration::from_secs(30));
    let mut prices: Vec<f64> = got.iter().map(|m| value(m)["price"].as_f64().unwrap()).collect();
    prices.sort_by(f64::total_cmp);
    assert_eq!(prices, [146.76, 7296.89, 7296.9]);
    let aapl = got.iter().map(value).find(|v| v["symbol"] == "AAPL").unwrap();
    assert_eq!(aapl["conditions"], serde_json::json!(["1", "24", "12"]));
    assert_eq!(aapl["timestamp"], "2021-08-06T08:28:50.221Z");
    assert!(got.iter().all(|m| value(m)["provider"] == "finnhub"));
    testkit::wait_for(Duration::from_secs(10), "the symbol-limit error in the log", || {
        let log = p.log();
        async move { log.contains("symbol limit").then_some(()) }
    })
    .await;
    assert!(!p.log().contains(TOKEN), "the token must never be logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_token_is_refused_on_upgrade_and_exits_1() {
    let (_sim, f, _t, mut p) = start(FinnhubConfig { token: "the-right-one".into(), max_symbols: 50 }, "AAPL").await;
    assert_eq!(p.wait_exit(Duration::from_secs(30)), Some(1));
    let log = p.log();
    assert!(log.contains("HTTP 401") && log.contains("check the API key"), "{log}");
    assert!(!log.contains(TOKEN), "the token (in the URL) must never be logged: {log}");
    assert_eq!(f.upgrades_refused(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_resubscribes_every_symbol_and_publishes_the_gap() {
    let (_sim, f, t, _p) = start(FinnhubConfig { token: TOKEN.into(), max_symbols: 50 }, "AAPL,MSFT").await;
    wait_subscriptions(&f, &["AAPL", "MSFT"]).await;
    f.push(r#"{"data":[{"p":1.5,"s":"AAPL","t":1704205800000,"v":1}],"type":"trade"}"#);
    testkit::consume(&t.topic, 1, Duration::from_secs(30));
    f.drop_all();
    let evs = wait_event(&t.events, EventKind::Gap, 4).await;
    let gap = evs.iter().find(|e| e.kind == EventKind::Gap).unwrap();
    assert!(gap.from.unwrap() <= gap.to.unwrap());
    wait_subscriptions(&f, &["AAPL", "MSFT"]).await;
    let subs = f.client_messages().iter().filter(|m| m.contains("subscribe")).count();
    assert_eq!(subs, 4, "both symbols subscribed again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_are_dead_lettered() {
    let (_sim, f, t, _p) = start(FinnhubConfig { token: TOKEN.into(), max_symbols: 50 }, "AAPL").await;
    wait_subscriptions(&f, &["AAPL"]).await;
    f.push("{not json");
    f.push(r#"{"data":[{"p":"x","s":"AAPL","t":1}, {"p":2.5,"s":"AAPL","t":1704205800000,"v":3}],"type":"trade"}"#);
    f.push(r#"{"type":"mystery"}"#);
    let letters: Vec<DeadLetter> = testkit::consume(&t.dlq, 3, Duration::from_secs(30))
        .iter()
        .map(|m| serde_json::from_slice(m.payload().unwrap()).unwrap())
        .collect();
    assert!(letters[0].error.contains("malformed message"), "{letters:?}");
    assert!(letters[1].error.contains("malformed trade"), "{letters:?}");
    assert!(letters[2].error.contains("unknown message type `mystery`"), "{letters:?}");
    let good = testkit::consume(&t.topic, 1, Duration::from_secs(30));
    assert_eq!(value(&good[0])["price"], 2.5);
}
