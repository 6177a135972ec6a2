//! Kafka outages under a live market stream: provider-sim's Polygon firehose → the
//! market-producer binary → a broker of the tests' own (`scripts/kafka.sh chaos-up`,
//! 127.0.0.1:$KAFKA_CHAOS_PORT, default 29092) that they SIGKILL. An independent consumer counts
//! what arrived, per symbol and in order. The scenarios need the whole machine, so they run one
//! at a time (a lock); each prints its figures (`chaos: …`), quoted in docs/reliability.md.
//!
//! Settings: CHAOS_RATE (ticks/s the simulator offers, default 100000), CHAOS_OUTAGE_SECS
//! (default 30). `make test` runs them with the debug build; `make test-chaos-release` with the
//! release build (producer, simulator and auditor), which is where 100k ticks/s is reached.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test, with its location")]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ingest_core::kafka::admin::{TopicToCreate, ensure_topics};
use ingest_core::testkit::{self, ProducerProcess};
use provider_sim::Sim;
use provider_sim::polygon::{Firehose, PolygonConfig, PolygonHandle};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const PARTITIONS: i32 = 16;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn bootstrap() -> String {
    format!("127.0.0.1:{}", env_or("KAFKA_CHAOS_PORT", 29092))
}

fn kafka_sh(arg: &str) {
    let out = Command::new(testkit::workspace_root().join("scripts/kafka.sh")).arg(arg).output().unwrap();
    assert!(out.status.success(), "kafka.sh {arg}: {}", String::from_utf8_lossy(&out.stderr));
}

fn kill_broker() {
    let pid_file = testkit::workspace_root().join(".local/kafka/chaos/kafka.pid");
    let pid = std::fs::read_to_string(pid_file).expect("the chaos broker runs (make kafka-chaos-up)");
    assert!(Command::new("kill").args(["-KILL", pid.trim()]).status().unwrap().success());
}

/// Restarts the broker (scripts/kafka.sh waits until it answers); how long that took.
fn restart_broker() -> Duration {
    let t = Instant::now();
    kafka_sh("chaos-up");
    t.elapsed()
}

/// A scenario's own topics on the chaos broker (`<stem>.raw` with 16 partitions, its `.dlq`,
/// an events topic) and spool directory. Dropping it deletes them, also when the test fails:
/// the 100k ticks/s scenario writes ~1.4 GB to the broker and up to ~750 MB to the spool, and
/// repeated runs must not fill the disk.
struct Scenario {
    topic: String,
    events: String,
    spool: PathBuf,
    all: Vec<String>,
}

async fn scenario() -> Scenario {
    kafka_sh("chaos-up");
    let stem = testkit::unique_topic("chaos");
    let (topic, events, dlq) = (format!("{stem}.raw"), format!("{stem}.events"), format!("{stem}.dlq"));
    let list = [TopicToCreate::new(&topic, PARTITIONS), TopicToCreate::new(&dlq, 1), TopicToCreate::new(&events, 1)];
    ensure_topics(&[("bootstrap.servers".into(), bootstrap())], 1, &list).await.unwrap();
    let all = vec![topic.clone(), events.clone(), dlq];
    Scenario { topic, events, spool: testkit::unique_dir("chaos-spool"), all }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        use rdkafka::admin::{AdminClient, AdminOptions};
        use rdkafka::client::DefaultClientContext;
        let _ = std::fs::remove_dir_all(&self.spool);
        let admin: Option<AdminClient<DefaultClientContext>> =
            ClientConfig::new().set("bootstrap.servers", bootstrap()).create().ok();
        if let Some(admin) = admin {
            let names: Vec<&str> = self.all.iter().map(String::as_str).collect();
            let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
            let _ = futures::executor::block_on(admin.delete_topics(&names, &opts));
        }
    }
}

fn symbols() -> Vec<String> {
    (0..100).map(|i| format!("S{i:03}")).collect()
}

/// The simulator offering `rate` ticks/s (1,000-trade frames) until `total` were sent.
async fn firehose(rate: u64, total: u64) -> (Sim, PolygonHandle) {
    let polygon = PolygonHandle::new(PolygonConfig { api_key: "chaos".into(), ..PolygonConfig::default() });
    polygon.firehose(Firehose {
        symbols: symbols(),
        events_per_frame: 1000,
        frames_per_sec: rate / 1000,
        total,
        demo: false,
    });
    (Sim::start("127.0.0.1:0".parse().unwrap(), polygon.router()).await.unwrap(), polygon)
}

/// The producer, streaming the firehose into `topic` on the chaos broker, spooling into
/// `spool`, with `extra` settings.
fn producer(sim: &Sim, topic: &str, events: &str, spool: &Path, extra: &[(&str, &str)]) -> ProducerProcess {
    let url = format!("ws://{}/stocks", sim.addr);
    let symbols = symbols().join(",");
    let brokers = bootstrap();
    let spool = spool.display().to_string();
    let mut env: Vec<(&str, &str)> = vec![
        ("KAFKA_BROKERS", &brokers),
        ("KAFKA_SPOOL_DIR", &spool),
        ("MARKET_PROVIDER", "polygon"),
        ("MARKET_API_KEY", "chaos"),
        ("MARKET_WS_URL", &url),
        // The simulator trades around the clock: a calendar would make the test depend on the hour.
        ("FINSTREAM__MARKET__SESSION", "always"),
        ("FINSTREAM__MARKET__SYMBOLS", &symbols),
        ("FINSTREAM__MARKET__CHANNELS", "trades"),
        ("FINSTREAM__KAFKA__TOPICS__MARKET_TICKS__NAME", topic),
        ("FINSTREAM__KAFKA__TOPICS__EVENTS__NAME", events),
        ("FINSTREAM__KAFKA__HEALTHCHECK_INTERVAL_SECS", "1"),
        // The end-to-end benchmark's 100k ticks/s settings (docs/benchmarks.md).
        ("FINSTREAM__KAFKA__BATCH_SIZE_BYTES", "1048576"),
        ("FINSTREAM__KAFKA__COMPRESSION_TYPE", "lz4"),
    ];
    env.extend_from_slice(extra);
    ProducerProcess::spawn(Path::new(env!("CARGO_BIN_EXE_market-producer")), &env)
}

fn rss_mib(p: &ProducerProcess) -> f64 {
    p.rss_kib() as f64 / 1024.0
}

/// A consumer of every partition of `topic` on the chaos broker, from the beginning.
fn from_beginning(topic: &str) -> BaseConsumer {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", testkit::unique_topic("chaos-audit"))
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", "52428800")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    c.assign(&tpl).unwrap();
    c
}

async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Which offsets of each partition a reader has had: a record handed out again at an offset
/// already read is the consumer reading again, not a record the topic holds twice, and the
/// topic is judged by its offsets. Seen once here: the audit after a broker SIGKILL was handed
/// 5.4 M records a second time, each symbol going back once; more than the producer ever held
/// (its spool peaked at 1.03 M records), so not records it sent again.
#[derive(Debug, Default)]
struct Offsets(HashMap<i32, i64>);

impl Offsets {
    /// Whether `m` is at an offset of its partition not read before.
    fn first_time(&mut self, m: &impl Message) -> bool {
        let last = self.0.entry(m.partition()).or_insert(-1);
        let fresh = m.offset() > *last;
        *last = (*last).max(m.offset());
        fresh
    }
}

/// What an independent consumer read back.
#[derive(Debug, Default)]
struct Audit {
    /// Records handed out again at an offset already read (the consumer's doing, not the topic's).
    reread: u64,
    records: u64,
    distinct: u64,
    duplicates: u64,
    reordered: u64,
    /// Per symbol: the sequence numbers present, as (first, last, count, runs of missing
    /// numbers between first and last).
    per_symbol: HashMap<String, (u64, u64, u64, u64)>,
}

/// Reads the whole topic (until `expected` distinct ticks arrived and 5 s passed without
/// more, or `timeout`): count, duplicates and per-symbol order by Polygon's sequence number.
fn audit(topic: &str, expected: u64, timeout: Duration) -> Audit {
    let c = from_beginning(topic);
    let mut seen: HashMap<String, std::collections::HashSet<u64>> = HashMap::new();
    let mut last: HashMap<String, u64> = HashMap::new();
    let mut a = Audit::default();
    let mut offsets = Offsets::default();
    let deadline = Instant::now() + timeout;
    let mut idle = Instant::now();
    while Instant::now() < deadline {
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                idle = Instant::now();
                if !offsets.first_time(&m) {
                    a.reread += 1;
                    continue;
                }
                let payload = std::str::from_utf8(m.payload().unwrap()).unwrap();
                let seq: u64 = field(payload, "\"sequence\":").parse().unwrap();
                let sym = field(payload, "\"symbol\":\"").to_string();
                a.records += 1;
                if seen.entry(sym.clone()).or_default().insert(seq) {
                    a.distinct += 1;
                } else {
                    a.duplicates += 1;
                }
                if let Some(prev) = last.insert(sym, seq)
                    && seq < prev
                {
                    a.reordered += 1;
                }
            }
            Some(Err(e)) => panic!("audit consumer: {e}"),
            None if a.distinct >= expected && idle.elapsed() > Duration::from_secs(5) => break,
            None => {}
        }
    }
    for (sym, seqs) in seen {
        let mut v: Vec<u64> = seqs.into_iter().collect();
        v.sort_unstable();
        let holes = v.windows(2).filter(|w| w[1] != w[0] + 1).count() as u64;
        a.per_symbol.insert(sym, (v[0], v[v.len() - 1], v.len() as u64, holes));
    }
    a
}

/// Ticks per symbol: (sequence, received ms).
type PerSymbol = HashMap<String, Vec<(u64, i64)>>;

/// Reads the whole topic (until 5 s pass without more): the ticks received before `t` per
/// symbol as (sequence, received ms) in the order read, how many were received later (a second
/// process: its connection's sequence numbers start again), and how many of the first arrived
/// behind a higher sequence number of their symbol.
fn split_at(topic: &str, t: chrono::DateTime<chrono::Utc>) -> (PerSymbol, u64, u64) {
    let c = from_beginning(topic);
    let mut first = PerSymbol::new();
    let (mut later, mut reordered, mut idle) = (0u64, 0u64, Instant::now());
    // A repeat of a tick already seen is a duplicate (counted by the callers), not a reorder.
    let mut seen: std::collections::HashSet<(String, u64)> = std::collections::HashSet::new();
    let mut offsets = Offsets::default();
    while idle.elapsed() < Duration::from_secs(5) {
        let Some(m) = c.poll(Duration::from_millis(200)) else { continue };
        let m = m.unwrap().detach();
        idle = Instant::now();
        if !offsets.first_time(&m) {
            continue;
        }
        let payload = std::str::from_utf8(m.payload().unwrap()).unwrap();
        let received = field(payload, "\"received_at\":\"");
        let received = chrono::DateTime::parse_from_rfc3339(received).unwrap().with_timezone(&chrono::Utc);
        if received >= t {
            later += 1;
            continue;
        }
        let seq: u64 = field(payload, "\"sequence\":").parse().unwrap();
        let sym = field(payload, "\"symbol\":\"").to_string();
        let fresh = seen.insert((sym.clone(), seq));
        let ticks = first.entry(sym).or_default();
        if fresh && ticks.last().is_some_and(|(prev, _)| *prev > seq) {
            reordered += 1;
        }
        ticks.push((seq, received.timestamp_millis()));
    }
    (first, later, reordered)
}

fn field<'a>(json: &'a str, prefix: &str) -> &'a str {
    let rest = &json[json.find(prefix).unwrap() + prefix.len()..];
    &rest[..rest.find([',', '"', '}']).unwrap()]
}

struct Sampler {
    peak_rss: f64,
    peak_spool_bytes: f64,
    peak_spool_records: f64,
}

/// Samples RSS and the spool gauges every 250 ms for `d`.
async fn sample(p: &ProducerProcess, d: Duration, s: &mut Sampler) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        s.peak_rss = s.peak_rss.max(rss_mib(p));
        s.peak_spool_bytes = s.peak_spool_bytes.max(p.metric("producer_spool_bytes", &[]).await);
        s.peak_spool_records = s.peak_spool_records.max(p.metric("producer_spool_records", &[]).await);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The ticks the producer acknowledged and the spool being empty and idle.
async fn drained(p: &ProducerProcess, topic: &str) -> (f64, bool) {
    let sent = p.metric("producer_messages_sent_total", &[("topic", topic)]).await;
    let idle = p.metric("producer_spool_records", &[]).await == 0.0
        && p.metric("producer_spool_active", &[]).await == 0.0
        && p.metric("producer_kafka_in_flight_messages", &[]).await == 0.0;
    (sent, idle)
}

/// The broker SIGKILLed for CHAOS_OUTAGE_SECS while the firehose offers CHAOS_RATE ticks/s:
/// librdkafka's memory queue fills in about a second, the rest goes to the spool; when the broker
/// is back the spool drains in order. Every tick arrives exactly once, in per-symbol order, the
/// WebSocket never stalls (no gap), and nothing is counted as failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_sigkilled_for_30_s_under_a_100k_ticks_stream_loses_nothing() {
    let _one = ONE_AT_A_TIME.lock().await;
    let rate = env_or("CHAOS_RATE", 100_000);
    let outage = Duration::from_secs(env_or("CHAOS_OUTAGE_SECS", 30));
    let before = Duration::from_secs(8);
    // Offered through the kill, the outage, the broker's restart (~20 s here) and after it.
    let total = rate * ((before + outage).as_secs() + 30);
    let sc = scenario().await;
    let (topic, events, spool) = (sc.topic.clone(), sc.events.clone(), sc.spool.clone());
    let (sim, polygon) = firehose(rate, total).await;
    // Room for the whole outage at the offered rate (~600 bytes a tick on disk; the default
    // 1 GiB holds ~18 s of 100k ticks/s), so that the source never waits for the spool.
    let p = producer(&sim, &topic, &events, &spool, &[("FINSTREAM__KAFKA__SPOOL__MAX_BYTES", "8589934592")]);
    wait_until(Duration::from_secs(30), "the subscription", || async { polygon.subscribed_connections() == 1 }).await;
    let started = Instant::now();
    let mut s = Sampler { peak_rss: 0.0, peak_spool_bytes: 0.0, peak_spool_records: 0.0 };
    sample(&p, before, &mut s).await;
    let sent_before = p.metric("producer_messages_sent_total", &[("topic", &topic)]).await;
    let rss_before = rss_mib(&p);

    kill_broker();
    let killed = Instant::now();
    sample(&p, outage, &mut s).await;
    let spooled_during = p.metric("producer_spool_written_records_total", &[]).await;
    let spool_rate = spooled_during / outage.as_secs_f64();
    let back_in = restart_broker();
    let down_for = killed.elapsed();

    // Until every offered tick is acknowledged and the spool is idle again.
    let mut recovered_in = Duration::ZERO;
    let drain_started = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        s.peak_rss = s.peak_rss.max(rss_mib(&p));
        let (sent, idle) = drained(&p, &topic).await;
        if recovered_in.is_zero() && p.metric("producer_spool_active", &[]).await == 0.0 {
            recovered_in = drain_started.elapsed();
        }
        if sent >= total as f64 && idle {
            break;
        }
        assert!(Instant::now() < deadline, "not drained in 600 s: {sent} of {total} acknowledged\n{}", p.log());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let stream_secs = started.elapsed().as_secs_f64();
    let failed = p.metric("producer_messages_failed_total", &[("topic", &topic)]).await;
    let gaps = p.metric("producer_ws_gaps_total", &[]).await;
    let reconnects = p.metric("producer_ws_reconnects_total", &[]).await;
    let spool_full = p.metric("producer_spool_full_total", &[]).await;
    let a = audit(&topic, total, Duration::from_secs(300));
    println!(
        "chaos: broker SIGKILLed for {:.1} s (back in {:.1} s) under a {rate}/s firehose ({:.0} ticks/s acknowledged before the kill): \
         offered {total}, delivered {} ({} distinct), duplicated {}, reordered {} (records the audit consumer was handed again and skipped: {}), failed {failed}, gaps {gaps}, reconnects {reconnects}; \
         spooled {spooled_during:.0} during the outage ({spool_rate:.0} ticks/s; peak {:.0} records, {:.1} MiB on disk, \
         spool full {spool_full} times), spool drained {:.1} s after the broker was back, \
         whole run {stream_secs:.1} s; RSS {rss_before:.1} MiB before, peak {:.1} MiB",
        down_for.as_secs_f64(),
        back_in.as_secs_f64(),
        sent_before / before.as_secs_f64(),
        a.records,
        a.distinct,
        a.duplicates,
        a.reordered,
        a.reread,
        s.peak_spool_records,
        s.peak_spool_bytes / 1_048_576.0,
        recovered_in.as_secs_f64(),
        s.peak_rss,
    );
    assert!(spooled_during > 0.0, "the outage outlasted the memory queue, so the spool must have been used");
    assert_eq!((a.distinct, a.duplicates, a.reordered), (total, 0, 0), "lost, duplicated or reordered ticks");
    assert_eq!(failed, 0.0);
    assert_eq!(spool_full, 0.0, "the source never waited for the spool");
    assert_eq!(gaps, 0.0, "the feed never stalled: the spool took what Kafka could not\n{}", p.log());
    assert_eq!(a.per_symbol.len(), 100);
    for (sym, (lo, hi, n, holes)) in &a.per_symbol {
        assert_eq!((*lo, *hi, *holes), (1, *n, 0), "{sym}: a hole in the sequence");
    }
    drop(p);
}

/// A longer outage than memory and a small spool with `drop_oldest`: the spool fills, its oldest
/// segments are deleted and counted, and once the broker is back what is left drains. Offered =
/// delivered + counted drops, exactly; what was dropped is a contiguous run per symbol (the
/// oldest spooled), never a scattered loss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_longer_than_the_bounds_drops_oldest_with_exact_counts() {
    let _one = ONE_AT_A_TIME.lock().await;
    let rate = 20_000;
    let sc = scenario().await;
    let (topic, events, spool) = (sc.topic.clone(), sc.events.clone(), sc.spool.clone());
    let total = rate * 30;
    let (sim, polygon) = firehose(rate, total).await;
    let p = producer(
        &sim,
        &topic,
        &events,
        &spool,
        &[
            // Memory bound: 10,000 records in librdkafka's queue.
            ("FINSTREAM__KAFKA__QUEUE_MAX_MESSAGES", "10000"),
            // Disk bound: 8 MiB in 1 MiB segments (~25,000 ticks), then drop the oldest.
            ("FINSTREAM__KAFKA__SPOOL__MAX_BYTES", "8388608"),
            ("FINSTREAM__KAFKA__SPOOL__SEGMENT_BYTES", "1048576"),
            ("FINSTREAM__KAFKA__SPOOL__OVERFLOW", "drop_oldest"),
        ],
    );
    wait_until(Duration::from_secs(30), "the subscription", || async { polygon.subscribed_connections() == 1 }).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    kill_broker();
    let mut s = Sampler { peak_rss: 0.0, peak_spool_bytes: 0.0, peak_spool_records: 0.0 };
    sample(&p, Duration::from_secs(20), &mut s).await;
    let back_in = restart_broker();
    let t = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(300);
    let (delivered, dropped) = loop {
        let (sent, idle) = drained(&p, &topic).await;
        let dropped =
            p.metric("producer_messages_failed_total", &[("topic", &topic), ("reason", "spool_overflow")]).await;
        if sent + dropped >= total as f64 && idle {
            break (sent, dropped);
        }
        assert!(Instant::now() < deadline, "{sent} delivered + {dropped} dropped of {total}\n{}", p.log());
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let drain_secs = t.elapsed().as_secs_f64();
    let spool_dropped = p.metric("producer_spool_dropped_records_total", &[]).await;
    let other_failures = p.metric("producer_messages_failed_total", &[("topic", &topic)]).await - dropped;
    let a = audit(&topic, delivered as u64, Duration::from_secs(120));
    println!(
        "chaos: 20 s outage at {rate}/s with a 10,000-record memory queue and an 8 MiB drop-oldest spool (back in {:.1} s): \
         offered {total}, delivered {} (acknowledged {delivered}), dropped and counted {dropped} (spool metric {spool_dropped}), \
         offered - delivered - dropped = {}, duplicated {}, reordered {}; peak spool {:.1} MiB; drained {drain_secs:.1} s after; peak RSS {:.1} MiB",
        back_in.as_secs_f64(),
        a.distinct,
        total as i64 - a.distinct as i64 - dropped as i64,
        a.duplicates,
        a.reordered,
        s.peak_spool_bytes / 1_048_576.0,
        s.peak_rss,
    );
    assert!(dropped > 0.0, "the outage was meant to overflow the spool");
    assert!(s.peak_spool_bytes <= 8_388_608.0, "the spool stayed within its bound");
    assert_eq!(dropped, spool_dropped);
    assert_eq!(other_failures, 0.0);
    assert_eq!(a.distinct, delivered as u64);
    assert_eq!(a.distinct + dropped as u64, total, "offered = delivered + dropped, exactly");
    assert_eq!((a.duplicates, a.reordered), (0, 0));
    // Per symbol, the first and last ticks arrived and what is missing is one run (the oldest
    // spooled segments), never scattered records.
    assert_eq!(a.per_symbol.len(), 100);
    for (sym, (lo, hi, _, holes)) in &a.per_symbol {
        assert_eq!((*lo, *hi), (1, total / 100), "{sym}: first and last tick kept");
        assert!(*holes <= 1, "{sym}: {holes} separate runs missing");
    }
    drop(p);
}

/// What the two producer-stop scenarios start from: the firehose at 20,000 ticks/s into a
/// producer whose memory queue holds 20,000 records, the broker SIGKILLed after 4 s, and the
/// producer past 40,000 spooled ticks.
struct Outage {
    sc: Scenario,
    sim: Sim,
    polygon: PolygonHandle,
    a: ProducerProcess,
    rate: u64,
}

const STOP_QUEUE: [(&str, &str); 1] = [("FINSTREAM__KAFKA__QUEUE_MAX_MESSAGES", "20000")];

async fn outage_while_spooling() -> Outage {
    let rate = 20_000;
    let sc = scenario().await;
    let (sim, polygon) = firehose(rate, 0).await;
    let a = producer(&sim, &sc.topic, &sc.events, &sc.spool, &STOP_QUEUE);
    wait_until(Duration::from_secs(30), "the subscription", || async { polygon.subscribed_connections() == 1 }).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    kill_broker();
    wait_until(Duration::from_secs(60), "records spooled", || async {
        a.metric("producer_spool_written_records_total", &[]).await > 40_000.0
    })
    .await;
    Outage { sc, sim, polygon, a, rate }
}

/// After the first producer stopped: the broker back, a second producer on the same spool (it
/// found records there), when it started, once its spool has drained.
async fn next_process(
    sc: &Scenario,
    sim: &Sim,
    polygon: &PolygonHandle,
) -> (ProducerProcess, chrono::DateTime<chrono::Utc>) {
    restart_broker();
    wait_until(Duration::from_secs(30), "the old connection gone", || async { polygon.subscribed_connections() == 0 })
        .await;
    let b_started = chrono::Utc::now();
    let b = producer(sim, &sc.topic, &sc.events, &sc.spool, &STOP_QUEUE);
    wait_until(Duration::from_secs(30), "the resubscription", || async { polygon.subscribed_connections() == 1 }).await;
    assert!(b.log().contains("left records in the spool"), "{}", b.log());
    tokio::time::sleep(Duration::from_secs(3)).await;
    wait_until(Duration::from_secs(120), "the spool drained", || async { drained(&b, &sc.topic).await.1 }).await;
    (b, b_started)
}

/// The producer SIGKILLed while the broker is down: what it had spooled survives on disk and
/// the next process sends it; what it held only in librdkafka's memory is lost, and exactly that
/// window is published: the next process's first subscription emits a `gap` event starting no
/// later than the first lost tick. Per symbol, the first process's ticks arrive as
/// "before the outage" + "spooled", with one hole (the memory window) and no duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_killed_during_an_outage_keeps_its_spool_and_publishes_its_loss_window() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Outage { sc, sim, polygon, mut a, rate } = outage_while_spooling().await;
    let topic = sc.topic.clone();
    let spooled = a.metric("producer_spool_written_records_total", &[]).await;
    assert!(Command::new("kill").args(["-KILL", &a.pid().to_string()]).status().unwrap().success());
    assert_eq!(a.wait_exit(Duration::from_secs(10)), None, "killed by the signal");
    let killed_at = chrono::Utc::now();
    let (b, b_started) = next_process(&sc, &sim, &polygon).await;
    let b_log = b.log();
    drop(b); // SIGTERM: the stream ends, so the audit below can reach the end of the topic.

    // The first process's ticks (received before it was killed), per symbol.
    let (mut first, from_b, reordered) = split_at(&topic, b_started);
    assert_eq!(reordered, 0, "per-symbol order");
    let mut delivered_a = 0;
    let mut lost = 0;
    let mut earliest_before_hole = i64::MAX;
    for (sym, v) in &mut first {
        v.sort_unstable();
        let before = v.len();
        v.dedup_by_key(|(s, _)| *s);
        assert_eq!(v.len(), before, "{sym}: duplicated ticks");
        delivered_a += v.len();
        assert_eq!(v[0].0, 1, "{sym}: the first tick");
        let holes: Vec<_> = v.windows(2).filter(|w| w[1].0 != w[0].0 + 1).collect();
        assert!(holes.len() <= 1, "{sym}: {} separate holes", holes.len());
        if let Some(w) = holes.first() {
            lost += w[1].0 - w[0].0 - 1;
            earliest_before_hole = earliest_before_hole.min(w[0].1);
        }
    }
    let ev: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", testkit::unique_topic("chaos-events"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    ev.subscribe(&[&sc.events]).unwrap();
    let mut evs = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Some(Ok(m)) = ev.poll(Duration::from_millis(200))
            && let Ok(e) = serde_json::from_slice::<ingest_core::record::IngestEvent>(m.payload().unwrap_or_default())
        {
            let gap = e.kind == ingest_core::record::EventKind::Gap;
            evs.push(e);
            if gap {
                break;
            }
        }
    }
    let gap = evs
        .into_iter()
        .find(|e| e.kind == ingest_core::record::EventKind::Gap)
        .unwrap_or_else(|| panic!("no gap event\n{b_log}"));
    let (from, to) = (gap.from.unwrap(), gap.to.unwrap());
    println!(
        "chaos: producer SIGKILLed during a broker outage at {rate}/s after spooling {spooled:.0}: the next process sent \
         {delivered_a} of its ticks (spool recovered), {lost} lost in one hole per symbol (its memory queue, 20,000 records), \
         0 duplicated; gap event {} → {} ({:.1} s; the last tick before the hole received {}), {from_b} ticks of the new connection",
        from.to_rfc3339(),
        to.to_rfc3339(),
        (to - from).num_milliseconds() as f64 / 1000.0,
        chrono::DateTime::from_timestamp_millis(earliest_before_hole).unwrap().to_rfc3339(),
    );
    assert_eq!(gap.provider, "polygon");
    assert!(gap.message.as_deref().unwrap_or_default().contains("without a clean shutdown"), "{gap:?}");
    assert!(lost > 0 && lost <= 20_000 + 2_000, "the loss is the memory window: {lost}");
    // The first lost tick was received after the last one delivered before its hole.
    assert!(from.timestamp_millis() <= earliest_before_hole, "the gap starts no later than the first lost tick");
    assert!(to >= killed_at, "the gap lasts until the new subscription");
    assert!(delivered_a as f64 >= spooled, "every spooled tick was sent by the next process");
    assert!(from_b > 0);
}

/// SIGTERM while the broker is down: what librdkafka held in memory (its queue and in-flight
/// requests) is taken back into the spool's front, the process exits 0 within its shutdown
/// timeout, and the next process sends it first: every tick of the first process arrives once,
/// in per-symbol order, with no hole and no gap event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_stopped_during_an_outage_keeps_what_its_client_held_and_exits_0() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Outage { sc, sim, polygon, mut a, rate } = outage_while_spooling().await;
    let topic = sc.topic.clone();
    let stop = Instant::now();
    let code = a.terminate(Duration::from_secs(30));
    let (stopped_in, a_log) = (stop.elapsed(), a.log());
    assert_eq!(code, Some(0), "a clean stop, nothing lost:\n{a_log}");
    let line = a_log.lines().find(|l| l.contains("taken back from the client")).unwrap_or_else(|| panic!("{a_log}"));
    // The count, in the text or the JSON log format.
    let digits = &line[line.find("records").unwrap() + "records".len()..];
    let digits: String = digits.chars().skip_while(|c| !c.is_ascii_digit()).take_while(char::is_ascii_digit).collect();
    let taken_back: u64 = digits.parse().unwrap_or_else(|_| panic!("{line}"));
    let (b, b_started) = next_process(&sc, &sim, &polygon).await;
    assert!(!b.log().contains("without a clean shutdown"), "{}", b.log());
    drop(b);

    let (first, from_b, reordered) = split_at(&topic, b_started);
    let mut delivered_a = 0;
    let mut duplicated = 0;
    for (sym, v) in &first {
        let mut seqs: Vec<u64> = v.iter().map(|(s, _)| *s).collect();
        seqs.sort_unstable();
        // A request in flight when the broker was SIGKILLed may have been appended without an
        // acknowledgement: taken back and sent again by the next process (a new producer id,
        // so the broker cannot deduplicate it), it arrives twice. That is the documented
        // at-least-once window of a stop during an outage: at most one batch per symbol.
        let dups: Vec<u64> = seqs.windows(2).filter(|w| w[0] == w[1]).map(|w| w[0]).collect();
        assert!(dups.windows(2).all(|w| w[1] == w[0] + 1), "{sym}: duplicates beyond one in-flight batch: {dups:?}");
        duplicated += dups.len();
        seqs.dedup();
        assert_eq!((seqs[0], seqs[seqs.len() - 1]), (1, seqs.len() as u64), "{sym}: a hole");
        delivered_a += seqs.len();
    }
    assert!(duplicated as u64 <= taken_back, "{duplicated} duplicated, {taken_back} taken back");
    println!(
        "chaos: producer SIGTERMed during a broker outage at {rate}/s: exit 0 after {:.1} s, {taken_back} records taken \
         back from the Kafka client into the spool; the next process sent all {delivered_a} of its ticks, 0 lost, \
         {duplicated} duplicated (in flight when the broker died), {reordered} reordered; {from_b} ticks of the new connection",
        stopped_in.as_secs_f64()
    );
    assert_eq!(reordered, 0);
    assert!(taken_back >= 15_000, "the memory queue was full (20,000 records): {taken_back}");
    assert!(from_b > 0);
}
