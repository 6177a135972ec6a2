//! Gap repair end to end: the market-producer binary streaming provider-sim's tape over TLS
//! (trades happen on a clock whether anyone listens; what a dropped connection missed is in
//! the REST history), the real local Kafka, and an independent consumer that checks every
//! trade of the tape is in the topic exactly once, live or repaired.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use ingest_core::record::{EventKind, IngestEvent, RepairCounts};
use ingest_core::testkit::{self, ProducerProcess};
use provider_sim::Sim;
use provider_sim::alpaca::{AlpacaConfig, AlpacaHandle};
use provider_sim::polygon::{PolygonConfig, PolygonHandle};
use provider_sim::tape::Tape;
use serde_json::Value;

use crate::common::{Topics, sim_tls, value};

const KEY: &str = "pk-repair-4f1d2c";
const SYMBOLS: [&str; 2] = ["MSFT", "AAPL"];

struct Setup {
    sim: Sim,
    polygon: PolygonHandle,
    tape: Tape,
    topics: Topics,
    producer: ProducerProcess,
    /// The producer's environment (to start it again).
    env: Vec<(String, String)>,
}

impl Setup {
    fn restart(&mut self) {
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.producer = ProducerProcess::spawn(Path::new(env!("CARGO_BIN_EXE_market-producer")), &env);
    }
}

fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap()
}

/// A tape of `per_second` trades of each symbol, `total` each, starting now; the producer
/// streaming its trades, repairing from the simulator's REST history (`page_size` trades a page).
async fn start(cfg: PolygonConfig, per_second: u64, total: u64, extra: &[(&str, &str)]) -> Setup {
    start_with(&SYMBOLS, cfg, per_second, total, extra).await
}

/// [`start`] with these symbols.
async fn start_with(
    symbols: &[&str],
    cfg: PolygonConfig,
    per_second: u64,
    total: u64,
    extra: &[(&str, &str)],
) -> Setup {
    let topics = Topics::create().await;
    let polygon = PolygonHandle::new(PolygonConfig { api_key: KEY.into(), ..cfg });
    let tape = Tape::new(symbols.iter().map(|s| s.to_string()).collect(), now_ns(), per_second, total);
    polygon.tape(tape.clone());
    let symbol_list = symbols.join(",");
    let (sim, ca) = sim_tls(polygon.router()).await;
    // The socket's URL as a user writes it; the REST history is found on its origin.
    let ws = sim.ws_url("/stocks");
    let mut env: Vec<(&str, &str)> = vec![
        ("MARKET_PROVIDER", "polygon"),
        ("MARKET_API_KEY", KEY),
        ("MARKET_WS_URL", &ws),
        ("TLS_EXTRA_CA_FILE", &ca),
        ("FINSTREAM__MARKET__SESSION", "always"),
        ("FINSTREAM__MARKET__SYMBOLS", &symbol_list),
        ("FINSTREAM__MARKET__CHANNELS", "trades"),
        ("FINSTREAM__MARKET__RECONNECT_BASE_MS", "50"),
        ("FINSTREAM__MARKET__REPAIR__SETTLE_SECS", "1"),
        ("FINSTREAM__MARKET__REPAIR__REQUESTS_PER_SECOND", "100"),
    ];
    env.extend_from_slice(extra);
    env.extend(topics.env());
    let producer = ProducerProcess::spawn(Path::new(env!("CARGO_BIN_EXE_market-producer")), &env);
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Setup { sim, polygon, tape, topics, producer, env }
}

async fn subscriptions(p: &PolygonHandle, n: usize) {
    testkit::wait_for(Duration::from_secs(30), "subscriptions", || {
        let p = p.clone();
        async move {
            let subs = p.client_messages().iter().filter(|m| m.contains("\"subscribe\"")).count();
            (subs >= n && p.subscribed_connections() == 1).then_some(())
        }
    })
    .await;
}

/// The events topic until it holds `n` events of `kind`.
async fn events_until(topic: &str, kind: EventKind, n: usize) -> Vec<IngestEvent> {
    testkit::wait_for(Duration::from_secs(60), &format!("{n} {kind:?} events"), || async move {
        let evs = all_events(topic);
        (evs.iter().filter(|e| e.kind == kind).count() >= n).then_some(evs)
    })
    .await
}

/// 50 more records reach the topic.
fn stream_goes_on(topic: &str) {
    let before = testkit::consume_committed(topic, Duration::from_secs(10)).len();
    testkit::consume(topic, before + 50, Duration::from_secs(30));
}

/// Per symbol, every trade's sequence number in the topic and whether it was repaired.
fn trades(topic: &str) -> BTreeMap<String, Vec<(u64, bool)>> {
    ticks_of(topic, "trade")
}

/// Per symbol, every tick's sequence number of one `event_type` in the topic and whether it was
/// repaired.
fn ticks_of(topic: &str, event_type: &str) -> BTreeMap<String, Vec<(u64, bool)>> {
    let mut out: BTreeMap<String, Vec<(u64, bool)>> = BTreeMap::new();
    for m in testkit::consume_committed(topic, Duration::from_secs(10)) {
        let v: Value = value(&m);
        assert_eq!(rdkafka::Message::key(&m), v["symbol"].as_str().map(str::as_bytes), "keyed by symbol");
        if v["event_type"] != event_type {
            continue;
        }
        let backfill = v.get("backfill").is_some_and(|b| b == &Value::Bool(true));
        out.entry(v["symbol"].as_str().unwrap().to_string())
            .or_default()
            .push((v["sequence"].as_u64().unwrap(), backfill));
    }
    out
}

/// Waits until the topic holds the tape's last trade of every symbol.
async fn tape_done(topic: &str, symbols: &[&str], total: u64) -> BTreeMap<String, Vec<(u64, bool)>> {
    testkit::wait_for(Duration::from_secs(90), "the tape's last trades in the topic", || async move {
        let got = trades(topic);
        symbols.iter().all(|s| got.get(*s).is_some_and(|t| t.iter().any(|(q, _)| *q == total))).then_some(got)
    })
    .await
}

/// Each symbol's trades from its first received one to the tape's end, each exactly once.
fn assert_exactly_once(got: &BTreeMap<String, Vec<(u64, bool)>>, symbols: &[&str], total: u64) -> u64 {
    let mut repaired = 0;
    for &s in symbols {
        let mut seqs: Vec<u64> = got[s].iter().map(|(q, _)| *q).collect();
        seqs.sort_unstable();
        let first = seqs[0];
        let dups = seqs.windows(2).filter(|w| w[0] == w[1]).count();
        assert_eq!(dups, 0, "{s}: {dups} trades published twice");
        let missing: Vec<u64> = (first..=total).filter(|q| seqs.binary_search(q).is_err()).collect();
        assert!(
            missing.is_empty(),
            "{s}: {} trades missing, first {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
        assert_eq!(seqs.len() as u64, total - first + 1, "{s}");
        repaired += got[s].iter().filter(|(_, b)| *b).count() as u64;
    }
    repaired
}

/// Every gap event's answer, each a `gap_repaired` whose fetched trades are those published and
/// those already received: their counts, in the order of the gaps.
fn repairs(evs: &[IngestEvent]) -> Vec<&RepairCounts> {
    evs.iter()
        .filter(|e| e.kind == EventKind::Gap)
        .map(|gap| {
            let r = repair_of(evs, gap);
            assert_eq!(r.kind, EventKind::GapRepaired, "{r:?}");
            let c = r.repair.as_ref().unwrap();
            assert_eq!(c.fetched, c.published + c.duplicates, "{r:?}");
            c
        })
        .collect()
}

/// Each gap event is answered by a repair event of the same window and connection.
fn repair_of<'a>(evs: &'a [IngestEvent], gap: &IngestEvent) -> &'a IngestEvent {
    evs.iter()
        .find(|e| {
            matches!(e.kind, EventKind::GapRepaired | EventKind::GapUnrepaired)
                && (e.from, e.to, e.conn_epoch) == (gap.from, gap.to, gap.conn_epoch)
        })
        .unwrap_or_else(|| panic!("no repair event for {gap:?} in {evs:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_are_repaired_with_exactly_the_missing_trades() {
    // Two trades of each symbol per millisecond: the edges of every window share milliseconds
    // with trades that did arrive live.
    let (per_second, total) = (2000, 24_000);
    let s = start(PolygonConfig::default(), per_second, total, &[("FINSTREAM__MARKET__REPAIR__PAGE_SIZE", "40")]).await;
    subscriptions(&s.polygon, 1).await;
    testkit::consume(&s.topics.topic, 500, Duration::from_secs(30));

    s.polygon.drop_all();
    subscriptions(&s.polygon, 2).await;
    events_until(&s.topics.events, EventKind::GapRepaired, 1).await;

    // The second repair meets rate limits: waited out (Retry-After absent: backoff), still whole.
    s.polygon.fail_rest(&[429, 429]);
    s.polygon.drop_all();
    subscriptions(&s.polygon, 3).await;
    let evs = events_until(&s.topics.events, EventKind::GapRepaired, 2).await;

    let got = tape_done(&s.topics.topic, &SYMBOLS, total).await;
    let repaired = assert_exactly_once(&got, &SYMBOLS, total);
    let repairs = repairs(&evs);
    assert_eq!(repairs.len(), 2, "{evs:#?}");
    for c in &repairs {
        assert_eq!((c.symbols, c.symbols_failed), (2, 0), "{c:?}");
        assert!(c.duplicates > 0, "the edges' live trades were recognised: {c:?}");
    }
    let published: u64 = repairs.iter().map(|c| c.published).sum();
    assert!(repaired > 0, "some trades came from the history");
    assert_eq!(repaired, published, "the topic holds what the events say was published");

    // The history was read in pages, with the key only in the header.
    let requests = s.sim.log.to_path("/v3/trades/MSFT");
    assert!(requests.iter().any(|r| r.query.as_deref().is_some_and(|q| q.starts_with("cursor="))), "paged");
    assert!(requests.iter().all(|r| !r.query.as_deref().unwrap_or("").contains(KEY)));
    let labels = [("provider", "polygon"), ("outcome", "repaired")];
    assert_eq!(s.producer.metric("producer_gap_repairs_total", &labels).await, 2.0);
    assert_eq!(
        s.producer.metric("producer_gap_repaired_ticks_total", &[("provider", "polygon")]).await,
        published as f64
    );
    assert!(!s.producer.log().contains(KEY), "the API key is never logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotes_are_repaired_with_trades_exactly_once_when_configured() {
    // Two trades and two quotes of each symbol per millisecond; quote repair on. Both kinds of
    // every window's edges share milliseconds with ticks that did arrive live.
    let (per_second, total) = (2000, 16_000);
    let extra = [
        ("FINSTREAM__MARKET__CHANNELS", "trades,quotes"),
        ("FINSTREAM__MARKET__REPAIR__QUOTES", "true"),
        ("FINSTREAM__MARKET__REPAIR__PAGE_SIZE", "40"),
    ];
    let s = start(PolygonConfig::default(), per_second, total, &extra).await;
    subscriptions(&s.polygon, 1).await;
    testkit::consume(&s.topics.topic, 500, Duration::from_secs(30));
    s.polygon.drop_all();
    subscriptions(&s.polygon, 2).await;
    events_until(&s.topics.events, EventKind::GapRepaired, 1).await;
    s.polygon.fail_rest(&[429]);
    s.polygon.drop_all();
    subscriptions(&s.polygon, 3).await;
    let evs = events_until(&s.topics.events, EventKind::GapRepaired, 2).await;

    let got = tape_done(&s.topics.topic, &SYMBOLS, total).await;
    assert_exactly_once(&got, &SYMBOLS, total);
    // Quote n has sequence number 1,000,000 + n.
    let quotes = testkit::wait_for(Duration::from_secs(60), "the tape's last quotes in the topic", || async {
        let q: BTreeMap<String, Vec<(u64, bool)>> = ticks_of(&s.topics.topic, "quote")
            .into_iter()
            .map(|(sym, v)| (sym, v.into_iter().map(|(seq, b)| (seq - 1_000_000, b)).collect()))
            .collect();
        SYMBOLS.iter().all(|sym| q.get(*sym).is_some_and(|t| t.iter().any(|(n, _)| *n == total))).then_some(q)
    })
    .await;
    let repaired = assert_exactly_once(&quotes, &SYMBOLS, total);
    let repairs = repairs(&evs);
    assert!(
        repairs.iter().all(|c| c.quotes_fetched > c.quotes_published),
        "the edges' live quotes were recognised: {repairs:?}"
    );
    let published: u64 = repairs.iter().map(|c| c.quotes_published).sum();
    let fetched: u64 = repairs.iter().map(|c| c.quotes_fetched).sum();
    assert!(repaired > 0, "some quotes came from the history");
    assert_eq!(repaired, published, "the topic holds the quotes the events say were published ({fetched} fetched)");
    let requests = s.sim.log.to_path("/v3/quotes/MSFT");
    assert!(requests.iter().any(|r| r.query.as_deref().is_some_and(|q| q.starts_with("cursor="))), "paged");
    assert!(requests.iter().all(|r| !r.query.as_deref().unwrap_or("").contains(KEY)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_without_quotes_still_gets_its_trades_repaired_and_the_gap_says_what_is_missing() {
    // Quote repair on, but the plan has trades and not quotes (Polygon's Developer plan).
    let (per_second, total) = (1000, 8_000);
    let extra = [("FINSTREAM__MARKET__CHANNELS", "trades,quotes"), ("FINSTREAM__MARKET__REPAIR__QUOTES", "true")];
    let s = start(PolygonConfig { quotes: false, ..PolygonConfig::default() }, per_second, total, &extra).await;
    subscriptions(&s.polygon, 1).await;
    testkit::consume(&s.topics.topic, 500, Duration::from_secs(30));
    s.polygon.drop_all();
    subscriptions(&s.polygon, 2).await;
    let evs = events_until(&s.topics.events, EventKind::GapUnrepaired, 1).await;
    let got = tape_done(&s.topics.topic, &SYMBOLS, total).await;
    let repaired = assert_exactly_once(&got, &SYMBOLS, total);
    let gap = evs.iter().find(|e| e.kind == EventKind::Gap).unwrap();
    let r = repair_of(&evs, gap);
    let c = r.repair.as_ref().unwrap();
    assert_eq!((r.kind, c.outcome.as_str()), (EventKind::GapUnrepaired, "no_history"), "{r:?}");
    assert!(r.message.as_deref().is_some_and(|m| m.contains("quotes") && m.contains("not entitled")), "{r:?}");
    assert!(c.published > 0 && c.published == repaired, "the trades were repaired all the same: {r:?}");
    assert_eq!((c.quotes_published, c.symbols_failed), (0, 2), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crypto_gaps_are_repaired_exactly_once_though_trades_arrive_out_of_exchange_time() {
    // The crypto cluster's `t` is each exchange's time, and the venues' trades reach the feed
    // up to 1.35 s late relative to one another: a window cannot be cut at a millisecond. Every
    // trade of the tape is in the topic once, live or repaired.
    let pairs = ["BTC-USD", "ETH-USD"];
    let (per_second, total) = (500, 9_000);
    let topics = Topics::create().await;
    let tape = Tape::new(pairs.iter().map(|s| s.to_string()).collect(), now_ns(), per_second, total);
    let polygon = PolygonHandle::new(PolygonConfig { api_key: KEY.into(), ..PolygonConfig::default() });
    polygon.tape(tape.clone());
    let (sim, ca) = sim_tls(polygon.router()).await;
    let ws = sim.ws_url("/crypto");
    let mut env: Vec<(&str, &str)> = vec![
        ("MARKET_PROVIDER", "polygon"),
        ("MARKET_API_KEY", KEY),
        ("MARKET_WS_URL", &ws),
        ("TLS_EXTRA_CA_FILE", &ca),
        ("FINSTREAM__MARKET__SYMBOLS", "BTC-USD,ETH-USD"),
        ("FINSTREAM__MARKET__CHANNELS", "trades"),
        ("FINSTREAM__MARKET__RECONNECT_BASE_MS", "50"),
        ("FINSTREAM__MARKET__REPAIR__SETTLE_SECS", "1"),
        ("FINSTREAM__MARKET__REPAIR__REQUESTS_PER_SECOND", "100"),
        ("FINSTREAM__MARKET__REPAIR__PAGE_SIZE", "100"),
    ];
    env.extend(topics.env());
    let _producer = ProducerProcess::spawn(Path::new(env!("CARGO_BIN_EXE_market-producer")), &env);
    subscriptions(&polygon, 1).await;
    testkit::consume(&topics.topic, 500, Duration::from_secs(30));
    polygon.drop_all();
    subscriptions(&polygon, 2).await;
    events_until(&topics.events, EventKind::GapRepaired, 1).await;
    polygon.fail_rest(&[429]);
    polygon.drop_all();
    subscriptions(&polygon, 3).await;
    let evs = events_until(&topics.events, EventKind::GapRepaired, 2).await;

    // Each trade by its id (an integer on the stream, a string in the history).
    let n_of: BTreeMap<(String, String), u64> =
        pairs.iter().flat_map(|p| (1..=total).map(|n| ((p.to_string(), tape.trade(p, n).unwrap().id), n))).collect();
    let got = testkit::wait_for(Duration::from_secs(90), "the tape's last trades in the topic", || async {
        let mut got: BTreeMap<String, Vec<(u64, bool)>> = BTreeMap::new();
        for m in testkit::consume_committed(&topics.topic, Duration::from_secs(10)) {
            let v: Value = value(&m);
            let pair = v["symbol"].as_str().unwrap().to_string();
            let id = v["trade_id"].as_str().map(str::to_string).unwrap_or_else(|| v["trade_id"].to_string());
            let n = n_of[&(pair.clone(), id)];
            got.entry(pair).or_default().push((n, v.get("backfill") == Some(&Value::Bool(true))));
        }
        pairs.iter().all(|p| got.get(*p).is_some_and(|t| t.iter().any(|(n, _)| *n == total))).then_some(got)
    })
    .await;
    let repaired = assert_exactly_once(&got, &pairs, total);
    let repairs = repairs(&evs);
    assert!(
        repairs.iter().all(|c| c.duplicates > 0),
        "trades received live around the window were recognised: {repairs:?}"
    );
    let published: u64 = repairs.iter().map(|c| c.published).sum();
    assert!(repaired > 0, "some trades came from the history");
    assert_eq!(repaired, published, "the topic holds what the events say was published");
    let requests = sim.log.to_path("/v3/trades/X:BTC-USD");
    assert!(requests.iter().any(|r| r.query.as_deref().is_some_and(|q| q.starts_with("cursor="))), "paged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_without_history_leaves_the_gap_named_unrepaired() {
    let s = start(PolygonConfig { history: false, ..PolygonConfig::default() }, 200, 0, &[]).await;
    subscriptions(&s.polygon, 1).await;
    testkit::consume(&s.topics.topic, 50, Duration::from_secs(30));
    s.polygon.drop_all();
    subscriptions(&s.polygon, 2).await;
    let evs = events_until(&s.topics.events, EventKind::GapUnrepaired, 1).await;
    let gap = evs.iter().find(|e| e.kind == EventKind::Gap).unwrap();
    let r = repair_of(&evs, gap);
    assert_eq!(r.repair.as_ref().map(|c| c.outcome.as_str()), Some("no_history"), "{r:?}");
    assert!(r.message.as_deref().is_some_and(|m| m.contains("no history on this plan")), "{r:?}");
    let labels = [("provider", "polygon"), ("outcome", "no_history")];
    assert_eq!(s.producer.metric("producer_gap_repairs_total", &labels).await, 1.0);
    // The stream goes on.
    stream_goes_on(&s.topics.topic);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_past_the_deadline_leave_the_gap_unrepaired_and_the_stream_running() {
    let s = start(PolygonConfig::default(), 200, 0, &[("FINSTREAM__MARKET__REPAIR__DEADLINE_SECS", "3")]).await;
    subscriptions(&s.polygon, 1).await;
    testkit::consume(&s.topics.topic, 50, Duration::from_secs(30));
    // Every history request is refused with 429 for longer than the repair may take.
    s.polygon.fail_rest(&[429; 40]);
    s.polygon.drop_all();
    subscriptions(&s.polygon, 2).await;
    let evs = events_until(&s.topics.events, EventKind::GapUnrepaired, 1).await;
    let gap = evs.iter().find(|e| e.kind == EventKind::Gap).unwrap();
    let r = repair_of(&evs, gap);
    let counts = r.repair.as_ref().unwrap();
    assert_eq!((counts.outcome.as_str(), counts.symbols_failed, counts.published), ("rate_limited", 2, 0), "{r:?}");
    assert!(r.message.as_deref().is_some_and(|m| m.contains("HTTP 429")), "{r:?}");
    let labels = [("provider", "polygon"), ("outcome", "rate_limited")];
    assert_eq!(s.producer.metric("producer_gap_repairs_total", &labels).await, 1.0);
    assert_eq!(
        s.producer.metric("producer_gap_repairs_total", &[("provider", "polygon"), ("outcome", "repaired")]).await,
        0.0,
        "every outcome is exported from the start"
    );
    stream_goes_on(&s.topics.topic);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_producer_repairs_its_loss_window_after_the_restart_without_repeats() {
    let (per_second, total) = (2000, 20_000);
    let spool = testkit::unique_dir("spool").display().to_string();
    let mut s = start(PolygonConfig::default(), per_second, total, &[("KAFKA_SPOOL_DIR", &spool)]).await;
    subscriptions(&s.polygon, 1).await;
    testkit::consume(&s.topics.topic, 2000, Duration::from_secs(30));
    let pid = s.producer.pid().to_string();
    assert!(std::process::Command::new("kill").args(["-KILL", &pid]).status().unwrap().success());
    assert_eq!(s.producer.wait_exit(Duration::from_secs(10)), None, "killed by the signal");
    // The next process finds the spool's unclean stop: the window since its oldest
    // unacknowledged record is a gap, repaired against what the topic already holds.
    s.restart();
    subscriptions(&s.polygon, 2).await;
    let evs = events_until(&s.topics.events, EventKind::GapRepaired, 1).await;
    let gap = evs.iter().find(|e| e.kind == EventKind::Gap).unwrap();
    assert!(gap.message.as_deref().is_some_and(|m| m.contains("previous process")), "{gap:?}");
    let r = repair_of(&evs, gap);
    assert_eq!(r.kind, EventKind::GapRepaired, "{r:?}");
    let got = tape_done(&s.topics.topic, &SYMBOLS, total).await;
    let repaired = assert_exactly_once(&got, &SYMBOLS, total);
    assert!(repaired > 0, "what the killed process never received came from the history");
    assert_eq!(repaired, r.repair.as_ref().unwrap().published);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_feed_is_reconnected_and_what_the_stall_lost_is_repaired() {
    // The provider stops sending (a stall: the trades of those seconds never reach this
    // connection) for longer than the staleness limit: the producer reconnects, and every gap it
    // publishes is repaired.
    let (per_second, total) = (2000, 16_000);
    let extra = [("FINSTREAM__MARKET__STALE_AFTER_SECS", "1")];
    let s = start(PolygonConfig::default(), per_second, total, &extra).await;
    subscriptions(&s.polygon, 1).await;
    testkit::consume(&s.topics.topic, 1000, Duration::from_secs(30));
    s.polygon.stall(Duration::from_millis(2500));
    let got = tape_done(&s.topics.topic, &SYMBOLS, total).await;
    let evs = testkit::wait_for(Duration::from_secs(60), "an answer to every gap", || async {
        let evs = events_until(&s.topics.events, EventKind::Gap, 1).await;
        let gaps = evs.iter().filter(|e| e.kind == EventKind::Gap).count();
        let answers =
            evs.iter().filter(|e| matches!(e.kind, EventKind::GapRepaired | EventKind::GapUnrepaired)).count();
        (answers >= gaps).then_some(evs)
    })
    .await;
    let repaired = assert_exactly_once(&got, &SYMBOLS, total);
    assert!(repaired > 0, "the stall's trades came from the history");
    repairs(&evs);
}

/// Per symbol, every minute bar in the topic: its start (ms), whether it was repaired, the record.
fn minute_bars(topic: &str) -> BTreeMap<String, Vec<(i64, bool, Value)>> {
    let mut out: BTreeMap<String, Vec<(i64, bool, Value)>> = BTreeMap::new();
    for m in testkit::consume_committed(topic, Duration::from_secs(10)) {
        let v: Value = value(&m);
        if v["event_type"] != "bar" {
            continue;
        }
        let start =
            chrono::DateTime::parse_from_rfc3339(v["window_start"].as_str().unwrap()).unwrap().timestamp_millis();
        let backfill = v.get("backfill") == Some(&Value::Bool(true));
        out.entry(v["symbol"].as_str().unwrap().to_string()).or_default().push((start, backfill, v));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minute_bar_lost_in_a_stall_is_repaired_once_and_the_live_bars_are_not_repeated() {
    // Trades and minute bars; the feed stalls across a minute's end, so that minute's bar (sent
    // when it ends) never reaches the producer. It is repaired from the aggregates, once; the
    // bars received live before and after are not published again.
    let extra = [("FINSTREAM__MARKET__CHANNELS", "trades,minute_bars"), ("FINSTREAM__MARKET__STALE_AFTER_SECS", "1")];
    let s = start(PolygonConfig::default(), 50, 0, &extra).await;
    subscriptions(&s.polygon, 1).await;
    testkit::consume(&s.topics.topic, 100, Duration::from_secs(30));
    // The next minute's end at least 3 s away; the stall runs from 1.5 s before it to 1.5 s after.
    let now_ms = now_ns() / 1_000_000;
    let mut boundary = (now_ms / 60_000 + 1) * 60_000;
    if boundary - now_ms < 3_000 {
        boundary += 60_000;
    }
    tokio::time::sleep(Duration::from_millis((boundary - 1_500 - now_ms) as u64)).await;
    s.polygon.stall(Duration::from_millis(3_000));
    let lost = boundary - 60_000;
    // The next minute's bar arrives live (its minute ends a minute after the stall).
    let bars = testkit::wait_for(Duration::from_secs(120), "the lost bar repaired and the next one live", || async {
        let bars = minute_bars(&s.topics.topic);
        SYMBOLS
            .iter()
            .all(|sym| {
                bars.get(*sym).is_some_and(|b| {
                    b.iter().any(|(t, bf, _)| *t == lost && *bf) && b.iter().any(|(t, _, _)| *t == boundary)
                })
            })
            .then_some(bars)
    })
    .await;
    for sym in SYMBOLS {
        let mut starts: Vec<i64> = bars[sym].iter().map(|(t, _, _)| *t).collect();
        starts.sort_unstable();
        let n = starts.len();
        starts.dedup();
        assert_eq!(
            starts.len(),
            n,
            "{sym}: a bar published twice: {:?}",
            bars[sym].iter().map(|b| (b.0, b.1)).collect::<Vec<_>>()
        );
        assert!(starts.windows(2).all(|w| w[1] - w[0] == 60_000), "{sym}: every minute, none missing: {starts:?}");
        let repaired: Vec<&(i64, bool, Value)> = bars[sym].iter().filter(|(_, bf, _)| *bf).collect();
        assert_eq!(repaired.len(), 1, "{sym}: only the lost minute is repaired");
        let (want, v) = (s.tape.minute_bar(sym, lost, now_ns()).unwrap(), &repaired[0].2);
        let dollars = |cents: u64| cents as f64 / 100.0;
        assert_eq!(
            (v["open"].as_f64(), v["high"].as_f64(), v["low"].as_f64(), v["price"].as_f64(), v["volume"].as_f64()),
            (
                Some(dollars(want.open)),
                Some(dollars(want.high)),
                Some(dollars(want.low)),
                Some(dollars(want.close)),
                Some(want.volume as f64)
            ),
            "{sym}: the tape's bar"
        );
    }
    let evs = testkit::wait_for(Duration::from_secs(60), "an answer to every gap", || async {
        let evs = all_events(&s.topics.events);
        let gaps = evs.iter().filter(|e| e.kind == EventKind::Gap).count();
        let answers =
            evs.iter().filter(|e| matches!(e.kind, EventKind::GapRepaired | EventKind::GapUnrepaired)).count();
        (gaps > 0 && answers >= gaps).then_some(evs)
    })
    .await;
    let bars_published: u64 = repairs(&evs).iter().map(|c| c.bars_published).sum();
    assert_eq!(bars_published, 2, "the events count the repaired bars: {evs:#?}");
    let requests: Vec<_> = s.sim.log.all().into_iter().filter(|r| r.path.starts_with("/v2/aggs/ticker/")).collect();
    assert!(
        !requests.is_empty()
            && requests.iter().all(|r| r.query.as_deref().is_some_and(|q| q.contains("adjusted=false")))
    );
}

/// The gaps waiting for repair in the producer's state (`ingest.state`), as last committed.
fn waiting_repairs(state_topic: &str) -> usize {
    let last = testkit::consume_committed(state_topic, Duration::from_secs(10))
        .iter()
        .filter(|m| rdkafka::Message::key(*m) == Some(b"market-producer/repair-polygon".as_slice()))
        .map(value)
        .next_back();
    last.map_or(0, |v| v["cursors"].as_object().map_or(0, serde_json::Map::len))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repair_pending_when_the_producer_is_killed_is_done_once_by_the_next_process() {
    let (per_second, total) = (2000, 20_000);
    let spool = testkit::unique_dir("spool").display().to_string();
    let mut s = start(PolygonConfig::default(), per_second, total, &[("KAFKA_SPOOL_DIR", &spool)]).await;
    subscriptions(&s.polygon, 1).await;
    testkit::consume(&s.topics.topic, 1000, Duration::from_secs(30));
    // The history refuses every request: the repair of the next gap waits them out.
    s.polygon.fail_rest(&[429; 10_000]);
    s.polygon.drop_all();
    subscriptions(&s.polygon, 2).await;
    testkit::wait_for(Duration::from_secs(30), "the repair's first (refused) history request", || async {
        (!s.sim.log.to_path("/v3/trades/MSFT").is_empty()).then_some(())
    })
    .await;
    assert_eq!(waiting_repairs(&s.topics.state), 1, "the gap was stored before its repair began");
    let pid = s.producer.pid().to_string();
    assert!(std::process::Command::new("kill").args(["-KILL", &pid]).status().unwrap().success());
    assert_eq!(s.producer.wait_exit(Duration::from_secs(10)), None, "killed by the signal");

    // The next process repairs the gap the killed one left waiting, then its own restart gap.
    s.polygon.clear_rest_failures();
    s.restart();
    subscriptions(&s.polygon, 3).await;
    let evs = events_until(&s.topics.events, EventKind::GapRepaired, 2).await;
    let gaps: Vec<&IngestEvent> = evs.iter().filter(|e| e.kind == EventKind::Gap).collect();
    assert_eq!(gaps.len(), 2, "the reconnect's gap and the restart's: {evs:#?}");
    let published: u64 = repairs(&evs).iter().map(|c| c.published).sum();
    let got = tape_done(&s.topics.topic, &SYMBOLS, total).await;
    let repaired = assert_exactly_once(&got, &SYMBOLS, total);
    assert!(repaired > 0, "the gaps' trades came from the history");
    assert_eq!(repaired, published, "the topic holds what the events say was published");
    testkit::wait_for(Duration::from_secs(30), "no gap left waiting", || async {
        (waiting_repairs(&s.topics.state) == 0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_finding_the_repair_queue_full_is_answered_at_once_and_the_stream_goes_on() {
    let s = start(PolygonConfig::default(), 200, 0, &[("FINSTREAM__MARKET__REPAIR__QUEUE", "1")]).await;
    subscriptions(&s.polygon, 1).await;
    testkit::consume(&s.topics.topic, 50, Duration::from_secs(30));
    // The first gap's repair waits out refusals; the second finds it waiting.
    s.polygon.fail_rest(&[429; 10_000]);
    s.polygon.drop_all();
    subscriptions(&s.polygon, 2).await;
    s.polygon.drop_all();
    subscriptions(&s.polygon, 3).await;
    let evs = events_until(&s.topics.events, EventKind::GapUnrepaired, 1).await;
    let gaps: Vec<&IngestEvent> = evs.iter().filter(|e| e.kind == EventKind::Gap).collect();
    assert_eq!(gaps.len(), 2, "{evs:#?}");
    let r = repair_of(&evs, gaps[1]);
    assert_eq!(r.repair.as_ref().map(|c| c.outcome.as_str()), Some("failed"), "{r:?}");
    assert!(r.message.as_deref().is_some_and(|m| m.contains("market.repair.queue")), "{r:?}");
    assert!(
        !evs.iter().any(|e| e.kind != EventKind::Gap && (e.from, e.to) == (gaps[0].from, gaps[0].to)),
        "the first gap still waits for its repair"
    );
    assert_eq!(waiting_repairs(&s.topics.state), 1, "only the first gap is stored");
    let labels = [("provider", "polygon"), ("outcome", "failed")];
    assert_eq!(s.producer.metric("producer_gap_repairs_total", &labels).await, 1.0);
    stream_goes_on(&s.topics.topic);
}

/// Every gap event in `evs` has its answer.
fn all_answered(evs: &[IngestEvent]) -> bool {
    evs.iter().filter(|e| e.kind == EventKind::Gap).all(|g| {
        evs.iter().any(|e| {
            matches!(e.kind, EventKind::GapRepaired | EventKind::GapUnrepaired)
                && (e.from, e.to, e.conn_epoch) == (g.from, g.to, g.conn_epoch)
        })
    })
}

fn all_events(topic: &str) -> Vec<IngestEvent> {
    testkit::consume_committed(topic, Duration::from_secs(10))
        .iter()
        .map(|m| serde_json::from_slice(rdkafka::Message::payload(m).unwrap()).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_disconnects_a_stall_and_a_sigkill_under_a_firehose_leave_every_trade_exactly_once() {
    // Six symbols, a trade of each every millisecond (6,000 trades a second), for 40 s.
    const CHAOS: [&str; 6] = ["MSFT", "AAPL", "NVDA", "AMZN", "GOOGL", "META"];
    let (per_second, total) = (1000, 40_000);
    let spool = testkit::unique_dir("spool").display().to_string();
    let extra = [("KAFKA_SPOOL_DIR", spool.as_str()), ("FINSTREAM__MARKET__STALE_AFTER_SECS", "1")];
    let mut s = start_with(&CHAOS, PolygonConfig::default(), per_second, total, &extra).await;
    subscriptions(&s.polygon, 1).await;
    testkit::consume(&s.topics.topic, 5000, Duration::from_secs(30));

    // 1. A forced disconnect, repaired.
    s.polygon.drop_all();
    events_until(&s.topics.events, EventKind::GapRepaired, 1).await;

    // 2. A stall longer than the staleness limit, while the history refuses every request: its
    //    gaps are stored and wait.
    s.polygon.fail_rest(&[429; 100_000]);
    s.polygon.stall(Duration::from_millis(2500));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let before_kill =
        testkit::wait_for(Duration::from_secs(30), "the stall's gaps stored, the stream back", || async {
            let evs = all_events(&s.topics.events);
            let gaps = evs.iter().filter(|e| e.kind == EventKind::Gap).count();
            let answered = evs.iter().filter(|e| e.kind == EventKind::GapRepaired).count();
            (gaps >= 2
                && waiting_repairs(&s.topics.state) == gaps - answered
                && s.polygon.subscribed_connections() == 1)
                .then_some(evs)
        })
        .await;

    // 3. SIGKILL with those repairs waiting; the next process starts on the spool and answers
    //    them.
    let pid = s.producer.pid().to_string();
    assert!(std::process::Command::new("kill").args(["-KILL", &pid]).status().unwrap().success());
    assert_eq!(s.producer.wait_exit(Duration::from_secs(10)), None, "killed by the signal");
    s.polygon.clear_rest_failures();
    s.restart();
    testkit::wait_for(Duration::from_secs(60), "the killed process's gaps answered", || async {
        let mut evs = all_events(&s.topics.events);
        evs.retain(|e| e.kind != EventKind::Gap || before_kill.contains(e));
        (all_answered(&evs) && s.polygon.subscribed_connections() == 1).then_some(())
    })
    .await;

    // 4. Another forced disconnect, with two 429s in its repair.
    s.polygon.fail_rest(&[429, 429]);
    s.polygon.drop_all();

    let got = tape_done(&s.topics.topic, &CHAOS, total).await;
    let evs = testkit::wait_for(Duration::from_secs(90), "an answer to every gap", || async {
        let evs = all_events(&s.topics.events);
        all_answered(&evs).then_some(evs)
    })
    .await;
    let repaired = assert_exactly_once(&got, &CHAOS, total);
    let gaps: Vec<&IngestEvent> = evs.iter().filter(|e| e.kind == EventKind::Gap).collect();
    assert!(gaps.len() >= 4, "a disconnect, the stall's, the restart's and a disconnect: {gaps:#?}");
    let published: u64 = repairs(&evs).iter().map(|c| c.published).sum();
    assert!(repaired > 0);
    assert_eq!(repaired, published, "the topic holds what the events say was published");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpaca_gaps_are_repaired_from_its_historical_trades_exactly_once() {
    const SECRET: &str = "alpaca-repair-secret-9d3b";
    let (per_second, total) = (2000, 20_000);
    let topics = Topics::create().await;
    let tape = Tape::new(SYMBOLS.iter().map(|s| s.to_string()).collect(), now_ns(), per_second, total);
    let alpaca = AlpacaHandle::new(AlpacaConfig { key: KEY.into(), secret: SECRET.into(), ..AlpacaConfig::default() });
    alpaca.tape(tape.clone());
    let (sim, ca) = sim_tls(alpaca.router()).await;
    // The stream's URL as Alpaca documents it (the SIP feed); its history is asked with feed=sip.
    let ws = sim.ws_url("/v2/sip");
    let mut env: Vec<(&str, &str)> = vec![
        ("MARKET_PROVIDER", "alpaca"),
        ("MARKET_API_KEY", KEY),
        ("MARKET_API_SECRET", SECRET),
        ("MARKET_WS_URL", &ws),
        ("TLS_EXTRA_CA_FILE", &ca),
        ("FINSTREAM__MARKET__SESSION", "always"),
        ("FINSTREAM__MARKET__SYMBOLS", "MSFT,AAPL"),
        ("FINSTREAM__MARKET__CHANNELS", "trades"),
        ("FINSTREAM__MARKET__RECONNECT_BASE_MS", "50"),
        ("FINSTREAM__MARKET__RECONNECT_MAX_SECS", "1"),
        ("FINSTREAM__MARKET__REPAIR__SETTLE_SECS", "1"),
        ("FINSTREAM__MARKET__REPAIR__REQUESTS_PER_SECOND", "100"),
        ("FINSTREAM__MARKET__REPAIR__PAGE_SIZE", "40"),
    ];
    env.extend(topics.env());
    let producer = ProducerProcess::spawn(Path::new(env!("CARGO_BIN_EXE_market-producer")), &env);
    let subscribed = |n: usize| {
        let a = alpaca.clone();
        async move {
            testkit::wait_for(Duration::from_secs(30), "subscriptions", || async {
                let subs = a.client_messages().iter().filter(|m| m.contains("\"subscribe\"")).count();
                (subs >= n && a.subscribed_connections() == 1).then_some(())
            })
            .await;
        }
    };
    subscribed(1).await;
    testkit::consume(&topics.topic, 500, Duration::from_secs(30));
    alpaca.drop_all();
    subscribed(2).await;
    events_until(&topics.events, EventKind::GapRepaired, 1).await;
    alpaca.fail_rest(&[429, 429]);
    alpaca.drop_all();
    subscribed(3).await;
    let evs = events_until(&topics.events, EventKind::GapRepaired, 2).await;

    // Each tape trade by its Alpaca id; every one from each symbol's first received to the end,
    // exactly once.
    let n_of: BTreeMap<(String, i64), u64> = SYMBOLS
        .iter()
        .flat_map(|s| (1..=total).map(|n| ((s.to_string(), tape.trade(s, n).unwrap().id.parse().unwrap()), n)))
        .collect();
    let got = testkit::wait_for(Duration::from_secs(90), "the tape's last trades in the topic", || async {
        let mut got: BTreeMap<String, Vec<(u64, bool)>> = BTreeMap::new();
        for m in testkit::consume_committed(&topics.topic, Duration::from_secs(10)) {
            let v: Value = value(&m);
            let symbol = v["symbol"].as_str().unwrap().to_string();
            // Codes are written as strings.
            let id: i64 = v["trade_id"].as_str().and_then(|i| i.parse().ok()).or(v["trade_id"].as_i64()).unwrap();
            let n = n_of[&(symbol.clone(), id)];
            got.entry(symbol).or_default().push((n, v.get("backfill") == Some(&Value::Bool(true))));
        }
        SYMBOLS.iter().all(|s| got.get(*s).is_some_and(|t| t.iter().any(|(n, _)| *n == total))).then_some(got)
    })
    .await;
    let repaired = assert_exactly_once(&got, &SYMBOLS, total);
    let repairs = repairs(&evs);
    assert_eq!(repairs.len(), 2, "{evs:#?}");
    assert!(repairs.iter().all(|c| c.duplicates > 0), "the edges' live trades were recognised: {repairs:?}");
    let published: u64 = repairs.iter().map(|c| c.published).sum();
    assert!(repaired > 0, "some trades came from the history");
    assert_eq!(repaired, published, "the topic holds what the events say was published");
    let requests = sim.log.to_path("/v2/stocks/trades");
    assert!(requests.iter().all(|r| r.query.as_deref().is_some_and(|q| q.contains("feed=sip"))), "the stream's feed");
    assert!(requests.iter().any(|r| r.query.as_deref().is_some_and(|q| q.contains("page_token="))), "paged");
    assert!(sim.log.carrying(SECRET).iter().all(|r| r.query.as_deref().is_none_or(|q| !q.contains(SECRET))));
    assert!(!producer.log().contains(SECRET), "the secret is never logged");
}
