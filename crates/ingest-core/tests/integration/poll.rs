//! Exactly-once polling against the real broker: records and state in one transaction, state
//! restored at restart, overlapping polls deduplicated, a second instance fencing the first.
//! Every check reads with an independent `read_committed` consumer.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::Query;
use axum::routing::get;
use ingest_core::config::{Config, ConfigError, CoreConfig, Section};
use ingest_core::http::HttpResponse;
use ingest_core::kafka::admin::TopicToCreate;
use ingest_core::poll::{GroupSettings, PollGroup, PollSettings};
use ingest_core::record::{AltDataRecord, SourceState};
use ingest_core::runtime::{self, ProducerSpec, Running};
use ingest_core::source::{Normalized, Poller, Source};
use ingest_core::testkit;
use rdkafka::message::Message;
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
struct NoSection {}

impl Section for NoSection {
    const NAME: &'static str = "altdata";
    fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}

/// A feed of items `1..=last` (`last` grows as the test says). `GET /feed?after=N` answers the
/// items after `N - 2` (each answer repeats two already-seen items, as real feeds overlap),
/// at most 4 per page.
async fn serve_feed(last: Arc<AtomicU64>) -> std::net::SocketAddr {
    let app = Router::new().route(
        "/feed",
        get(move |Query(q): Query<HashMap<String, u64>>| {
            let last = last.load(Ordering::SeqCst);
            async move {
                let after = q.get("after").copied().unwrap_or(0);
                let ids: Vec<u64> = (after.saturating_sub(2) + 1..=last).take(4).collect();
                serde_json::json!({ "items": ids }).to_string()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

struct Feed {
    base: String,
}

impl Poller for Feed {
    type Record = AltDataRecord;
    type Cursor = u64;

    fn name(&self) -> &str {
        "feed"
    }
    fn provider(&self) -> &str {
        "itest-feed"
    }
    fn interval(&self) -> Duration {
        Duration::from_millis(100)
    }
    fn request(&self, client: &reqwest::Client, after: &u64) -> reqwest::RequestBuilder {
        client.get(format!("{}/feed", self.base)).query(&[("after", after)])
    }
    fn normalize(&self, resp: &HttpResponse, after: &u64) -> Result<Normalized<AltDataRecord, u64>, String> {
        let v: serde_json::Value = serde_json::from_slice(&resp.body).map_err(|e| e.to_string())?;
        let ids: Vec<u64> = v["items"].as_array().ok_or("no items")?.iter().filter_map(|i| i.as_u64()).collect();
        let records = ids
            .iter()
            .map(|id| {
                let r = AltDataRecord {
                    source: "feed".into(),
                    id: id.to_string(),
                    observed_at: resp.received_at,
                    url: None,
                    data: serde_json::Map::new(),
                    provider: "itest-feed".into(),
                    received_at: resp.received_at,
                };
                (r, id.to_string().into_bytes())
            })
            .collect();
        let next = ids.iter().copied().max().unwrap_or(*after).max(*after);
        Ok(Normalized { records, rejects: vec![], cursor: next, more: next > *after, cut: None, refused: None })
    }
}

struct Topics {
    raw: String,
    state: String,
}

async fn topics() -> Topics {
    let stem = testkit::unique_topic("poll");
    let t = Topics { raw: format!("{stem}.raw"), state: format!("{stem}.state") };
    testkit::create_topics(&[
        TopicToCreate::new(&t.raw, 3),
        TopicToCreate::new(format!("{stem}.dlq"), 1),
        TopicToCreate::new(&t.state, 1),
    ])
    .await;
    t
}

async fn start(t: &Topics, addr: std::net::SocketAddr, transactional_id: &str) -> Running {
    start_with(t, addr, transactional_id, |_| {}).await
}

/// As [`start`], with `more` pollers added to the group after the feed.
async fn start_with(
    t: &Topics,
    addr: std::net::SocketAddr,
    transactional_id: &str,
    more: impl FnOnce(&mut PollGroup),
) -> Running {
    let mut core = CoreConfig::default();
    core.kafka.spool.dir = ingest_core::testkit::unique_dir("spool").display().to_string();
    core.kafka.brokers = testkit::kafka_brokers();
    core.kafka.topics.altdata_records.name = t.raw.clone();
    core.kafka.topics.state.name = t.state.clone();
    core.telemetry.metrics_addr = "127.0.0.1:0".parse().unwrap();
    core.telemetry.health_addr = "127.0.0.1:0".parse().unwrap();
    let cfg = Config { core, section: NoSection {} };
    let mut group = PollGroup::new("feed", GroupSettings::new(transactional_id));
    group.add(
        Feed { base: format!("http://{addr}") },
        PollSettings { rate_per_second: 100.0, rate_burst: 10, ..PollSettings::default() },
    );
    more(&mut group);
    let source: Box<dyn Source> = Box::new(group);
    runtime::start(ProducerSpec { name: "itest-poll", version: "0", about: "test" }, &cfg, vec![source])
        .await
        .expect("start")
}

/// The ids on the raw topic (committed only), in arrival order.
fn committed_ids(topic: &str) -> Vec<u64> {
    testkit::consume_committed(topic, Duration::from_secs(60))
        .iter()
        .map(|m| serde_json::from_slice::<AltDataRecord>(m.payload().unwrap()).unwrap().id.parse().unwrap())
        .collect()
}

async fn wait_for_ids(topic: &str, n: usize) -> Vec<u64> {
    let topic = topic.to_string();
    testkit::wait_for(Duration::from_secs(60), "all items committed", || {
        let topic = topic.clone();
        async move {
            let ids = tokio::task::spawn_blocking(move || committed_ids(&topic)).await.unwrap();
            (ids.len() >= n).then_some(ids)
        }
    })
    .await
}

fn sorted(mut v: Vec<u64>) -> Vec<u64> {
    v.sort_unstable();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_polls_and_a_restart_deliver_every_item_exactly_once() {
    let t = topics().await;
    let last = Arc::new(AtomicU64::new(10));
    let addr = serve_feed(last.clone()).await;
    let tid = testkit::unique_topic("tx");

    let first = start(&t, addr, &tid).await;
    let ids = wait_for_ids(&t.raw, 10).await;
    assert_eq!(sorted(ids), (1..=10).collect::<Vec<_>>(), "each item once although every page overlaps");
    let metrics = first.metrics.render();
    first.shutdown_token().cancel();
    tokio::time::timeout(Duration::from_secs(20), first.wait()).await.expect("stops").expect("clean stop");
    let value = |prefix: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    // Pages 2..: two overlapping items each, skipped by the window.
    assert!(value("producer_duplicates_skipped_total{provider=\"itest-feed\"") >= 6.0, "{metrics}");
    assert!(value("producer_transactions_total{outcome=\"committed\",source=\"feed\"") >= 4.0, "{metrics}");
    assert_eq!(value("producer_transactions_total{outcome=\"aborted\""), 0.0, "{metrics}");

    // The state on the topic is the last committed one: cursor 10, the ten keys in the window.
    let states: Vec<SourceState> = testkit::consume_committed(&t.state, Duration::from_secs(30))
        .iter()
        .map(|m| serde_json::from_slice(m.payload().unwrap()).unwrap())
        .collect();
    let state = states.last().expect("a state record");
    assert_eq!(state.source, "itest-poll/feed");
    assert_eq!(state.cursors["feed"], 10);
    assert_eq!(state.seen.len(), 10);

    // More items arrive while the producer is down; the restart resumes from the stored
    // cursor (the first page again overlaps items 9 and 10, which the restored window skips).
    last.store(15, Ordering::SeqCst);
    let second = start(&t, addr, &tid).await;
    let ids = wait_for_ids(&t.raw, 15).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ids_after = committed_ids(&t.raw);
    second.shutdown_token().cancel();
    tokio::time::timeout(Duration::from_secs(20), second.wait()).await.expect("stops").expect("clean stop");
    assert_eq!(sorted(ids), (1..=15).collect::<Vec<_>>());
    assert_eq!(sorted(ids_after), (1..=15).collect::<Vec<_>>(), "no duplicate after the restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_with_the_same_transactional_id_fences_the_first() {
    let t = topics().await;
    let last = Arc::new(AtomicU64::new(4));
    let addr = serve_feed(last.clone()).await;
    let tid = testkit::unique_topic("tx");

    let zombie = start(&t, addr, &tid).await;
    wait_for_ids(&t.raw, 4).await;
    let successor = start(&t, addr, &tid).await;
    // Once the successor has registered (fencing the first) and restored the state, new items
    // arrive. Both poll every 100 ms; the first instance's next transaction is refused and it
    // stops with a fatal error that names the cause. (An idle zombie has nothing to commit.)
    let health = successor.health.clone();
    testkit::wait_for(Duration::from_secs(60), "the successor to be ready", || {
        let ready = health.readiness().ready;
        async move { ready.then_some(()) }
    })
    .await;
    last.store(8, Ordering::SeqCst);
    let err = tokio::time::timeout(Duration::from_secs(60), zombie.wait())
        .await
        .expect("the fenced instance stops")
        .expect_err("fenced is fatal");
    assert!(matches!(err, runtime::RunError::Fatal(_)), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("transactional") || msg.to_lowercase().contains("fenced"), "{msg}");

    let ids = wait_for_ids(&t.raw, 8).await;
    successor.shutdown_token().cancel();
    tokio::time::timeout(Duration::from_secs(20), successor.wait()).await.expect("stops").expect("clean stop");
    assert_eq!(sorted(ids), (1..=8).collect::<Vec<_>>(), "the successor continues; nothing twice");
}

/// A server that answers `200` with a 100 kB `content-length`, then trickles one byte every
/// 200 ms forever (slow loris). Records how long each connection lived.
async fn serve_slow_loris() -> (std::net::SocketAddr, Arc<std::sync::Mutex<Vec<Duration>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let lifetimes = Arc::new(std::sync::Mutex::new(Vec::new()));
    let l = lifetimes.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let l = l.clone();
            tokio::spawn(async move {
                let start = std::time::Instant::now();
                let mut buf = [0u8; 1024];
                let _ = sock.read(&mut buf).await;
                let _ = sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n{").await;
                while sock.write_all(b" ").await.is_ok() {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                l.lock().unwrap().push(start.elapsed());
            });
        }
    });
    (addr, lifetimes)
}

struct Slow {
    base: String,
}

impl Poller for Slow {
    type Record = AltDataRecord;
    type Cursor = u64;

    fn name(&self) -> &str {
        "slow"
    }
    fn provider(&self) -> &str {
        "itest-slow"
    }
    fn interval(&self) -> Duration {
        Duration::from_millis(100)
    }
    fn request(&self, client: &reqwest::Client, _: &u64) -> reqwest::RequestBuilder {
        client.get(format!("{}/", self.base))
    }
    fn normalize(&self, _: &HttpResponse, after: &u64) -> Result<Normalized<AltDataRecord, u64>, String> {
        Ok(Normalized::at(*after))
    }
}

/// A slow-loris provider is cut off by the request timeout every time, counted as a retryable
/// failure, and the healthy source in the same group keeps delivering meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_loris_response_is_cut_off_in_bounded_time_without_hurting_other_sources() {
    let t = topics().await;
    let last = Arc::new(AtomicU64::new(12));
    let feed = serve_feed(last).await;
    let (slow, lifetimes) = serve_slow_loris().await;
    let http = ingest_core::http::HttpConfig { timeout: Duration::from_secs(1), ..Default::default() };
    let running = start_with(&t, feed, &testkit::unique_topic("tx"), |group| {
        group.add(Slow { base: format!("http://{slow}") }, PollSettings { http, ..PollSettings::default() });
    })
    .await;

    // The healthy feed delivers all 12 items while the slow one hangs.
    let started = std::time::Instant::now();
    assert_eq!(sorted(wait_for_ids(&t.raw, 12).await), (1..=12).collect::<Vec<_>>());
    let healthy_after = started.elapsed();
    let failures = testkit::wait_for(Duration::from_secs(30), "two cut-off slow polls", || {
        let text = running.metrics.render();
        async move {
            let n: f64 = text
                .lines()
                .filter(|l| {
                    l.starts_with("producer_api_calls_total{")
                        && l.contains("itest-slow")
                        && l.contains("retryable_error")
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum();
            (n >= 2.0).then_some(n)
        }
    })
    .await;
    running.shutdown_token().cancel();
    tokio::time::timeout(Duration::from_secs(20), running.wait()).await.expect("stops").expect("clean stop");
    // The server sees a cut-off connection only at its next failing write (up to two 200 ms
    // writes after the client closed): wait for the second one's lifetime.
    let lived = testkit::wait_for(Duration::from_secs(10), "two slow-loris connections ended", || {
        let lived = lifetimes.lock().unwrap().clone();
        async move { (lived.len() >= 2).then_some(lived) }
    })
    .await;
    for l in &lived {
        assert!(*l < Duration::from_secs(3), "a slow-loris connection lived {l:?} with a 1 s timeout");
    }
    println!(
        "slow loris: {failures} polls cut off, connections lived {lived:?}; the healthy feed delivered 12 items in {healthy_after:?}"
    );
}
