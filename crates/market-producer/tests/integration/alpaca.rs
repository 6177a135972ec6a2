//! The Alpaca path end to end: the market-producer binary, provider-sim's Alpaca simulator on
//! 127.0.0.1:0, and the real local Kafka.

use std::path::Path;
use std::time::Duration;

use ingest_core::record::EventKind;
use ingest_core::testkit::{self, ProducerProcess};
use provider_sim::Sim;
use provider_sim::alpaca::{AlpacaConfig, AlpacaHandle};
use serde_json::{Value, json};

use crate::common::{Topics, sim_tls, value, wait_event};

const KEY: &str = "PKTEST0000000001";
const SECRET: &str = "alpaca-secret-do-not-log";

fn sim_cfg() -> AlpacaConfig {
    AlpacaConfig { key: KEY.into(), secret: SECRET.into(), ..AlpacaConfig::default() }
}

async fn sim(cfg: AlpacaConfig) -> (Sim, AlpacaHandle) {
    let alpaca = AlpacaHandle::new(cfg);
    // wss:// with a certificate of the test CA, as stream.data.alpaca.markets serves it.
    let (sim, _ca) = sim_tls(alpaca.router()).await;
    (sim, alpaca)
}

fn producer(sim: &Sim, topics: &Topics, secret: &str) -> ProducerProcess {
    let url = sim.ws_url("/v2/iex");
    let ca = provider_sim::tls::TestCa::get().unwrap().ca_file().display().to_string();
    let mut env: Vec<(&str, &str)> = vec![
        ("TLS_EXTRA_CA_FILE", &ca),
        ("MARKET_PROVIDER", "alpaca"),
        ("MARKET_API_KEY", KEY),
        ("MARKET_API_SECRET", secret),
        ("MARKET_WS_URL", &url),
        // The simulator trades around the clock: a calendar would make the test depend on the hour.
        ("FINSTREAM__MARKET__SESSION", "always"),
        ("FINSTREAM__MARKET__SYMBOLS", "AMD,AAPL,SPY"),
        ("FINSTREAM__MARKET__CHANNELS", "trades,quotes,minute_bars"),
        ("FINSTREAM__MARKET__RECONNECT_BASE_MS", "50"),
        ("FINSTREAM__MARKET__RECONNECT_MAX_SECS", "1"),
    ];
    env.extend(topics.env());
    ProducerProcess::spawn(Path::new(env!("CARGO_BIN_EXE_market-producer")), &env)
}

async fn wait_subscribed(a: &AlpacaHandle) {
    testkit::wait_for(Duration::from_secs(30), "an Alpaca subscription", || {
        let a = a.clone();
        async move { (a.subscribed_connections() == 1).then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn normal_flow_values_and_venues() {
    let (sim, a) = sim(sim_cfg()).await;
    let t = Topics::create().await;
    let p = producer(&sim, &t, SECRET);
    wait_subscribed(&a).await;
    let sent: Vec<Value> = a.client_messages().iter().map(|m| serde_json::from_str(m).unwrap()).collect();
    assert_eq!(sent[0], json!({"action":"auth","key":KEY,"secret":SECRET}));
    assert_eq!(
        sent[1],
        json!({"action":"subscribe","trades":["AMD","AAPL","SPY"],"quotes":["AMD","AAPL","SPY"],"bars":["AMD","AAPL","SPY"]})
    );
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data/alpaca");
    assert_eq!(a.push(&std::fs::read_to_string(dir.join("data.frame.json")).unwrap()), 1);
    let got = testkit::consume(&t.topic, 4, Duration::from_secs(30));
    let expected: Vec<Value> = std::fs::read_to_string(dir.join("data.expected.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for w in &expected {
        let g = got
            .iter()
            .map(value)
            .find(|g| {
                g["symbol"] == w["symbol"] && g["event_type"] == w["event_type"] && g["timestamp"] == w["timestamp"]
            })
            .unwrap_or_else(|| panic!("no record like {w}"));
        for (k, wv) in w.as_object().unwrap() {
            if k != "received_at" {
                assert_eq!(&g[k], wv, "{k} of {w}");
            }
        }
    }
    assert!(got.iter().all(|m| value(m)["provider"] == "alpaca"));
    assert!(!p.log().contains(SECRET) && !p.log().contains(KEY), "credentials must never be logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_failure_402_exits_1_naming_the_variables() {
    let (sim, _a) = sim(sim_cfg()).await;
    let t = Topics::create().await;
    let mut p = producer(&sim, &t, "wrong-secret");
    assert_eq!(p.wait_exit(Duration::from_secs(30)), Some(1));
    let log = p.log();
    assert!(log.contains("402") && log.contains("MARKET_API_SECRET"), "{log}");
    assert!(!log.contains("wrong-secret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insufficient_subscription_409_is_fatal() {
    let (sim, _a) =
        sim(AlpacaConfig { refuse_auth_with: Some((409, "insufficient subscription".into())), ..sim_cfg() }).await;
    let t = Topics::create().await;
    let mut p = producer(&sim, &t, SECRET);
    assert_eq!(p.wait_exit(Duration::from_secs(30)), Some(1));
    assert!(p.log().contains("409 insufficient subscription"), "{}", p.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limit_406_is_retried_until_the_other_client_leaves() {
    let (sim, a) = sim(sim_cfg()).await;
    let (t1, t2) = (Topics::create().await, Topics::create().await);
    let mut first = producer(&sim, &t1, SECRET);
    wait_subscribed(&a).await;
    let second_from = chrono::Utc::now();
    let second = producer(&sim, &t2, SECRET);
    // Three connections of the second producer, counted where they arrive (a count of "406" in
    // its log also matched timestamps such as 06:03:17.406 and passed after one refusal).
    testkit::wait_for(Duration::from_secs(30), "406 refusals of the second producer", || {
        let n = sim.log.to_path("/v2/iex").into_iter().filter(|r| r.at >= second_from).count();
        async move { (n >= 3).then_some(()) }
    })
    .await;
    assert!(second.log().contains("Alpaca 406 connection limit exceeded"), "{}", second.log());
    // Alpaca still counts a closed connection for a moment: retries come a second or more apart
    // (jittered), not at the 50 ms reconnect base.
    let upgrades: Vec<_> =
        sim.log.to_path("/v2/iex").into_iter().filter(|r| r.at >= second_from).map(|r| r.at).collect();
    assert!(upgrades.len() >= 3, "{upgrades:?}");
    for w in upgrades.windows(2) {
        assert!(w[1] - w[0] >= chrono::Duration::milliseconds(990), "406 retried too soon: {upgrades:?}");
    }
    assert_eq!(first.terminate(Duration::from_secs(20)), Some(0));
    // The second producer gets the connection once the first is gone.
    testkit::wait_for(Duration::from_secs(30), "the second producer to subscribe", || {
        let a = a.clone();
        async move { (a.subscribed_connections() == 1).then_some(()) }
    })
    .await;
    a.push(r#"[{"T":"t","i":1,"S":"AAPL","x":"V","p":150.0,"s":1,"t":"2024-01-02T14:30:00Z","c":["@"],"z":"C"}]"#);
    let got = testkit::consume(&t2.topic, 1, Duration::from_secs(30));
    assert_eq!(value(&got[0])["price"], 150.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symbol_limit_405_keeps_what_the_plan_allows() {
    // The plan allows 2 symbols; market.symbols lists 3. Alpaca refuses the whole request with
    // 405 and changes nothing; the producer subscribes symbol by symbol and keeps two.
    let (sim, a) = sim(AlpacaConfig { max_symbols: 2, ..sim_cfg() }).await;
    let t = Topics::create().await;
    let p = producer(&sim, &t, SECRET);
    wait_subscribed(&a).await;
    testkit::wait_for(Duration::from_secs(30), "the symbol-limit error naming the limit", || {
        let log = p.log();
        async move { log.contains("allows 2 of the 3 symbols").then_some(()) }
    })
    .await;
    assert!(p.log().contains("SPY"), "the symbol not streamed is named: {}", p.log());
    a.push(r#"[{"T":"t","i":7,"S":"AMD","x":"V","p":99.5,"s":3,"t":"2024-01-02T14:30:00Z","c":["@"],"z":"C"}]"#);
    let got = testkit::consume(&t.topic, 1, Duration::from_secs(30));
    assert_eq!(value(&got[0])["symbol"], "AMD");
    assert_eq!(a.subscribed_connections(), 1, "still connected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_and_publishes_the_gap() {
    let (sim, a) = sim(sim_cfg()).await;
    let t = Topics::create().await;
    let _p = producer(&sim, &t, SECRET);
    wait_subscribed(&a).await;
    a.drop_all();
    let evs = wait_event(&t.events, EventKind::Gap, 4).await;
    let gap = evs.iter().find(|e| e.kind == EventKind::Gap).unwrap();
    assert!(gap.from.unwrap() <= gap.to.unwrap() && gap.conn_epoch == Some(2), "{gap:?}");
    wait_subscribed(&a).await;
    let subscribes = a.client_messages().iter().filter(|m| m.contains("\"subscribe\"")).count();
    assert_eq!(subscribes, 2, "the whole set again after the reconnect");
}
