//! Chaos against the real three-node cluster of `scripts/kafka.sh cluster-up` (RF=3,
//! min.insync.replicas=2; `make test` and `make test-chaos` start it): brokers are SIGKILLed
//! while the sink streams, and an independent consumer counts what arrived, per key and in
//! order. The scenarios share the cluster, so they run one at a time (a lock).
//!
//! Each scenario prints its figures (`chaos: …`); docs/reliability.md quotes them.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test, with its location")]

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use ingest_core::config::KafkaConfig;
use ingest_core::kafka::Sink;
use ingest_core::kafka::admin::{TopicToCreate, ensure_topics};
use ingest_core::record::{MarketTick, TickType};
use ingest_core::telemetry::{Health, Metrics};
use ingest_core::testkit;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use tokio_util::sync::CancellationToken;

static CLUSTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn cluster_port() -> u16 {
    std::env::var("KAFKA_CLUSTER_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(19092)
}

fn bootstrap() -> String {
    let p = cluster_port();
    format!("127.0.0.1:{p},127.0.0.1:{},127.0.0.1:{}", p + 100, p + 200)
}

fn node_dir(id: i32) -> PathBuf {
    std::env::var("KAFKA_LOCAL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| testkit::workspace_root().join(".local/kafka"))
        .join(format!("cluster/node{id}"))
}

fn kill(id: i32) {
    let pid = std::fs::read_to_string(node_dir(id).join("kafka.pid"))
        .unwrap_or_else(|_| panic!("node {id} not running: make kafka-cluster-up"));
    let status = Command::new("kill").args(["-KILL", pid.trim()]).status().unwrap();
    assert!(status.success(), "kill node {id}");
}

/// Restarts the nodes that are down (scripts/kafka.sh cluster-up leaves running ones alone) and
/// waits until all three answer.
fn restart_missing() {
    let out = Command::new(testkit::workspace_root().join("scripts/kafka.sh")).arg("cluster-up").output().unwrap();
    assert!(out.status.success(), "cluster-up: {}", String::from_utf8_lossy(&out.stderr));
}

fn leader_of(topic: &str, partition: i32) -> i32 {
    let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", bootstrap()).create().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(md) = c.fetch_metadata(Some(topic), Duration::from_secs(5)) {
            let leader = md.topics()[0].partitions().iter().find(|p| p.id() == partition).map(|p| p.leader());
            if let Some(l) = leader.filter(|l| *l > 0) {
                return l;
            }
        }
        assert!(Instant::now() < deadline, "no leader for {topic}/{partition}");
        ingest_core::blocking::sleep(Duration::from_millis(200));
    }
}

fn tick(symbol: usize, seq: u64) -> MarketTick<'static> {
    let ts = Utc.timestamp_millis_opt(1_704_205_800_000 + i64::try_from(seq).unwrap()).unwrap();
    MarketTick {
        price: 100.0,
        volume: 1.0,
        sequence: Some(seq),
        ..MarketTick::new(format!("S{symbol:02}").into(), TickType::Trade, ts, "polygon".into(), ts)
    }
}

async fn topic(partitions: i32) -> String {
    let name = testkit::unique_topic("chaos");
    let mut t = TopicToCreate::new(&name, partitions);
    t.configs.push(("min.insync.replicas".into(), "2".into()));
    ensure_topics(&[("bootstrap.servers".into(), bootstrap())], 3, &[t]).await.unwrap();
    name
}

fn sink() -> (Sink, Metrics) {
    let cfg = KafkaConfig { brokers: bootstrap(), ..KafkaConfig::default() };
    let metrics = Metrics::new("chaos", "0");
    let sink = Sink::new(&cfg, "chaos", metrics.clone(), Health::new("chaos", "0"), CancellationToken::new()).unwrap();
    (sink, metrics)
}

/// (records, duplicates, out-of-order) read back per symbol by `sequence`.
fn audit(topic: &str, expected: u64) -> (u64, u64, u64) {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", testkit::unique_topic("chaos-audit"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    c.subscribe(&[topic]).unwrap();
    let mut last: HashMap<String, u64> = HashMap::new();
    let mut seen: HashMap<u64, u32> = HashMap::new();
    let (mut n, mut dups, mut reordered) = (0u64, 0u64, 0u64);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut idle_since = Instant::now();
    while Instant::now() < deadline {
        match c.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                idle_since = Instant::now();
                let v: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
                let seq = v["sequence"].as_u64().unwrap();
                let sym = v["symbol"].as_str().unwrap().to_string();
                n += 1;
                let count = seen.entry(seq).or_default();
                *count += 1;
                if *count > 1 {
                    dups += 1;
                }
                if let Some(prev) = last.insert(sym, seq)
                    && seq < prev
                {
                    reordered += 1;
                }
            }
            _ if n >= expected && idle_since.elapsed() > Duration::from_secs(3) => break,
            _ => {}
        }
    }
    (u64::try_from(seen.len()).unwrap(), dups, reordered)
}

/// Partition leaders SIGKILLed three times (each brought back before the next) while records
/// stream in without pause: every record arrives once, in per-key order (idempotent producer,
/// acks=all, RF=3, min.insync.replicas=2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_kills_during_a_stream_lose_and_duplicate_nothing() {
    let _one_at_a_time = CLUSTER.lock().await;
    let topic = topic(6).await;
    let (sink, _metrics) = sink();
    let stop = CancellationToken::new();
    let started = Instant::now();
    let producer = {
        let sink = sink.clone();
        let route = sink.route_to::<MarketTick>(&topic, &format!("{topic}.dlq"), "polygon");
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut seq = 0u64;
            // ~5,000 records/s until told to stop: the stream spans every kill and restart.
            while !stop.is_cancelled() {
                for _ in 0..50 {
                    let t = tick(usize::try_from(seq % 24).unwrap(), seq);
                    sink.send(&route, &t, b"raw", &CancellationToken::new()).await.unwrap();
                    seq += 1;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            seq
        })
    };
    let mut kills = Vec::new();
    for round in 0..3 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let leader = tokio::task::spawn_blocking({
            let topic = topic.clone();
            move || leader_of(&topic, round % 6)
        })
        .await
        .unwrap();
        kill(leader);
        let t = Instant::now();
        tokio::task::spawn_blocking(restart_missing).await.unwrap();
        kills.push(format!("node {leader} back in {:.1} s", t.elapsed().as_secs_f64()));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.cancel();
    let n = producer.await.unwrap();
    let pending = sink.flush(Duration::from_secs(120)).await;
    let elapsed = started.elapsed();
    assert_eq!(pending, 0, "every record acknowledged");
    let (delivered, dups, reordered) = tokio::task::spawn_blocking(move || audit(&topic, n)).await.unwrap();
    println!(
        "chaos: 3 leader kills ({}) during a {:.1} s stream: sent {n}, delivered {delivered}, duplicated {dups}, reordered {reordered}",
        kills.join(", "),
        elapsed.as_secs_f64()
    );
    assert!(n > 50_000, "the stream ran throughout: {n}");
    assert_eq!((delivered, dups, reordered), (n, 0, 0));
}

/// With two of three brokers down nothing is acknowledged (min.insync.replicas=2); when they
/// return everything is delivered, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_of_three_brokers_down_acknowledge_nothing_and_lose_nothing() {
    let _one_at_a_time = CLUSTER.lock().await;
    let topic = topic(3).await;
    let (sink, metrics) = sink();
    let route = sink.route_to::<MarketTick>(&topic, &format!("{topic}.dlq"), "polygon");
    // Warm up: metadata and a producer id before the outage.
    sink.send(&route, &tick(0, 0), b"raw", &CancellationToken::new()).await.unwrap();
    assert_eq!(sink.flush(Duration::from_secs(30)).await, 0);
    let survivor = tokio::task::spawn_blocking({
        let topic = topic.clone();
        move || leader_of(&topic, 0)
    })
    .await
    .unwrap();
    for id in (1..=3).filter(|id| *id != survivor) {
        kill(id);
    }
    const N: u64 = 3_000;
    for seq in 1..=N {
        sink.send(&route, &tick(usize::try_from(seq % 12).unwrap(), seq), b"raw", &CancellationToken::new())
            .await
            .unwrap();
    }
    // Ten seconds with one broker: not one of them may be acknowledged.
    let pending = sink.flush(Duration::from_secs(10)).await;
    let sent = |m: &Metrics| {
        m.render()
            .lines()
            .filter(|l| l.starts_with("producer_messages_sent_total{") && l.contains(&topic))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    let acked_during_outage = sent(&metrics) - 1.0;
    assert_eq!(pending, usize::try_from(N).unwrap(), "nothing acknowledged with 2 of 3 brokers down");
    assert_eq!(acked_during_outage, 0.0);
    let t = Instant::now();
    tokio::task::spawn_blocking(restart_missing).await.unwrap();
    assert_eq!(sink.flush(Duration::from_secs(120)).await, 0, "delivered once the brokers returned");
    let recovery = t.elapsed();
    let (delivered, dups, reordered) = tokio::task::spawn_blocking(move || audit(&topic, N + 1)).await.unwrap();
    println!(
        "chaos: 2 of 3 brokers down (survivor {survivor}): acknowledged during the outage {acked_during_outage}, \
         delivered after {:.1} s: {delivered} of {}, duplicated {dups}, reordered {reordered}",
        recovery.as_secs_f64(),
        N + 1
    );
    assert_eq!((delivered, dups, reordered), (N + 1, 0, 0));
}
