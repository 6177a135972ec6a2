//! End to end: provider-sim's Polygon firehose → the market-producer binary (release) → the
//! real local Kafka (acks=all, idempotence, the shipped defaults), verified by an independent
//! consumer: count, no duplicate, per-symbol sequence order. Prints ticks/s, p50/p99 latency
//! (provider timestamp → broker append time, `LogAppendTime`) and the producer's peak RSS.
//!
//! In the same run, a naive baseline the way most tutorials do it: `serde_json::Value` parsing
//! and one awaited `FutureProducer` send per tick, against the same simulator and broker; and
//! the ceiling: Kafka's own kafka-producer-perf-test (`ProducerPerformance`, from the Maven-resolved
//! jars in .local/kafka/lib) sending the same number of records of our average value size with
//! the same settings (unkeyed, no headers). The broker's CPU per record is printed for both.
//!
//! Then a paced run: BENCH_PACED_RATE ticks/s (100,000) offered for BENCH_PACED_SECS (10), not
//! saturating, for the latency a live feed sees (provider timestamp → broker append).
//!
//! `make bench` (starts Kafka). Settings: BENCH_TICKS (default 1000000), BENCH_SYMBOLS (50),
//! BENCH_EVENTS_PER_FRAME (100), BENCH_NAIVE_SECS (10), BENCH_SPOOL (true: the outage spool on, as
//! shipped; false to measure what it costs while Kafka keeps up), BENCH_PROFILE (`shipped`:
//! configs/config.yaml, or `seed`: with configs/kafka-seed.yaml overlaid, the first release's
//! 16 KiB snappy batches, 1 GiB memory queue and seven headers), and each setting alone: BENCH_BATCH_BYTES, BENCH_LINGER_MS,
//! BENCH_COMPRESSION, BENCH_HEADERS, BENCH_QUEUE_KBYTES, BENCH_QUEUE_MESSAGES.

#![allow(clippy::unwrap_used, reason = "benchmark harness")]

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use ingest_core::kafka::admin::TopicToCreate;
use ingest_core::testkit::{self, ProducerProcess};
use provider_sim::Sim;
use provider_sim::polygon::{Firehose, PolygonConfig, PolygonHandle};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Message, Timestamp};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_tungstenite::tungstenite::Message as WsMessage;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn topic() -> String {
    let name = format!("{}.raw", testkit::unique_topic("bench"));
    let mut t = TopicToCreate::new(&name, 16);
    t.configs.push(("message.timestamp.type".into(), "LogAppendTime".into()));
    testkit::create_topics(&[t, TopicToCreate::new(format!("{}.dlq", name.trim_end_matches(".raw")), 1)]).await;
    name
}

struct Verified {
    count: usize,
    duplicates: usize,
    out_of_order: usize,
    first_append_ms: i64,
    last_append_ms: i64,
    latencies_ms: Vec<i64>,
    value_bytes: usize,
}

/// Reads `n` records and checks them. The value's `timestamp` (provider time) and `sequence`
/// are located by substring, so the consumer does not become the bottleneck.
fn verify(topic: &str, n: usize, timeout: Duration) -> Verified {
    use rdkafka::{Offset, TopicPartitionList};
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", testkit::kafka_brokers())
        .set("group.id", testkit::unique_topic("bench-verify"))
        .set("fetch.max.bytes", "52428800")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..16 {
        tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    c.assign(&tpl).unwrap();
    let deadline = Instant::now() + timeout;
    let mut last_seq: HashMap<Vec<u8>, u64> = HashMap::new();
    let mut seen: HashMap<Vec<u8>, std::collections::HashSet<u64>> = HashMap::new();
    let mut v = Verified {
        count: 0,
        duplicates: 0,
        out_of_order: 0,
        first_append_ms: i64::MAX,
        last_append_ms: 0,
        latencies_ms: Vec::new(),
        value_bytes: 0,
    };
    while v.count < n && Instant::now() < deadline {
        let Some(m) = c.poll(Duration::from_millis(200)) else { continue };
        let m = m.unwrap();
        let payload = std::str::from_utf8(m.payload().unwrap()).unwrap();
        v.value_bytes += payload.len();
        let seq: u64 = field(payload, "\"sequence\":").parse().unwrap();
        let event_ms =
            chrono::DateTime::parse_from_rfc3339(field(payload, "\"timestamp\":\"")).unwrap().timestamp_millis();
        let append_ms = match m.timestamp() {
            Timestamp::LogAppendTime(t) | Timestamp::CreateTime(t) => t,
            Timestamp::NotAvailable => 0,
        };
        let key = m.key().unwrap().to_vec();
        if !seen.entry(key.clone()).or_default().insert(seq) {
            v.duplicates += 1;
        }
        if let Some(prev) = last_seq.insert(key, seq)
            && seq < prev
        {
            v.out_of_order += 1;
        }
        v.first_append_ms = v.first_append_ms.min(append_ms);
        v.last_append_ms = v.last_append_ms.max(append_ms);
        v.latencies_ms.push(append_ms - event_ms);
        v.count += 1;
    }
    v.latencies_ms.sort_unstable();
    v
}

/// Waits until `topic`'s 16 partitions hold `n` records (the producer's work is done), so that
/// the broker CPU measured up to here is the producer's alone and not the verifying reads'.
fn wait_for_records(topic: &str, n: i64, timeout: Duration) {
    let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", testkit::kafka_brokers()).create().unwrap();
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let total: i64 =
            (0..16).map(|p| c.fetch_watermarks(topic, p, Duration::from_secs(5)).map_or(0, |(lo, hi)| hi - lo)).sum();
        if total >= n {
            return;
        }
        ingest_core::blocking::sleep(Duration::from_millis(100));
    }
}

/// The repository root (benches run in the crate's directory).
fn repo_root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The CPU seconds the local single-node broker has used so far (0 when its pid is unknown).
fn broker_cpu_secs() -> f64 {
    let pid = std::fs::read_to_string(repo_root().join(".local/kafka/single/kafka.pid")).unwrap_or_default();
    pid.trim().parse().map_or(0.0, cpu_secs)
}

/// kafka-producer-perf-test with our settings: `records` of `size` bytes to a fresh 16-partition
/// topic. Returns (records/s as it reports them, its own CPU seconds), or why it could not run.
async fn perf_test(records: u64, size: usize, k: &Settings) -> Result<(f64, f64), String> {
    use std::io::Read;
    let topic = topic().await;
    let lib =
        std::env::var("KAFKA_LIB").map_or_else(|_| repo_root().join(".local/kafka/lib"), std::path::PathBuf::from);
    let mut child = std::process::Command::new("java")
        .arg("-cp")
        .arg(format!("{}/*", lib.display()))
        .arg("org.apache.kafka.tools.ProducerPerformance")
        .args(["--topic", &topic, "--num-records", &records.to_string(), "--record-size", &size.to_string()])
        .args(["--throughput", "-1", "--producer-props"])
        .arg(format!("bootstrap.servers={}", testkit::kafka_brokers()))
        .args(["acks=all", "enable.idempotence=true"])
        .arg(format!("linger.ms={}", k.linger_ms))
        .arg(format!("batch.size={}", k.batch_size_bytes))
        .arg(format!("compression.type={}", k.compression))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("java: {e}"))?;
    let pid = child.id();
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).map_err(|e| e.to_string())?;
    // Its stdout closed: it is exiting. Read its CPU time while it is a zombie (not yet reaped).
    let mut cpu = 0.0;
    for _ in 0..200 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        cpu = cpu_secs(pid).max(cpu);
        if stat.rsplit_once(')').is_some_and(|(_, r)| r.trim_start().starts_with('Z')) {
            break;
        }
        ingest_core::blocking::sleep(Duration::from_millis(50));
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    // The summary: "N records sent, R records/sec (…), … ms avg latency, …".
    let summary = out.lines().rev().find(|l| l.contains(" records sent, ")).ok_or(format!("{status}: {out}"))?;
    let rate = summary.split(", ").nth(1).and_then(|r| r.split(' ').next()).and_then(|r| r.parse().ok());
    rate.map(|r| (r, cpu)).ok_or_else(|| format!("cannot read its summary: {summary}"))
}

fn field<'a>(json: &'a str, prefix: &str) -> &'a str {
    let rest = &json[json.find(prefix).unwrap() + prefix.len()..];
    let end = rest.find([',', '"', '}']).unwrap();
    &rest[..end]
}

fn pct(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// CPU seconds (user + system) a process has used so far, from /proc/<pid>/stat.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_comm = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let f: Vec<f64> = after_comm.split_whitespace().map(|x| x.parse().unwrap_or(0.0)).collect();
    let tck = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse::<f64>().ok())
        .unwrap_or(100.0);
    (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) / tck
}

fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

async fn sim(symbols: &[String], per_frame: usize, total: u64, frames_per_sec: u64) -> (Sim, PolygonHandle) {
    let polygon = PolygonHandle::new(PolygonConfig { api_key: "bench".into(), ..PolygonConfig::default() });
    polygon.firehose(Firehose {
        symbols: symbols.to_vec(),
        events_per_frame: per_frame,
        frames_per_sec,
        total,
        demo: false,
    });
    (Sim::start("127.0.0.1:0".parse().unwrap(), polygon.router()).await.unwrap(), polygon)
}

/// The naive pipeline: Value parsing, a Value per tick, one awaited send per tick.
async fn naive(url: &str, topic: &str, symbols: &str, secs: u64) -> usize {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", testkit::kafka_brokers())
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut sent = 0;
    while let Some(Ok(msg)) = ws.next().await {
        let WsMessage::Text(text) = msg else { continue };
        let events: serde_json::Value = serde_json::from_str(&text).unwrap();
        for e in events.as_array().unwrap() {
            match e["status"].as_str() {
                Some("connected") => ws.send(WsMessage::text(r#"{"action":"auth","params":"bench"}"#)).await.unwrap(),
                Some("auth_success") => {
                    let params: Vec<String> = symbols.split(',').map(|s| format!("T.{s}")).collect();
                    let sub = serde_json::json!({"action":"subscribe","params":params.join(",")}).to_string();
                    ws.send(WsMessage::text(sub)).await.unwrap();
                }
                Some(_) => {}
                None => {
                    let tick = serde_json::json!({
                        "symbol": e["sym"], "price": e["p"], "volume": e["s"], "timestamp": e["t"],
                        "exchange": e["x"], "sequence": e["q"], "provider": "polygon",
                    });
                    let payload = tick.to_string();
                    let key = e["sym"].as_str().unwrap_or_default().to_string();
                    producer
                        .send(FutureRecord::to(topic).key(&key).payload(&payload), Duration::from_secs(30))
                        .await
                        .unwrap();
                    sent += 1;
                }
            }
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    sent
}

/// The Kafka settings of a run: those of `configs/config.yaml` (the shipped defaults) or, with
/// `BENCH_PROFILE=seed`, with `configs/kafka-seed.yaml` overlaid, as a user selects it; each
/// overridable from the environment. The producer and perf-test get the same.
struct Settings {
    profile: String,
    batch_size_bytes: u64,
    linger_ms: u64,
    compression: String,
    headers: String,
    queue_max_kbytes: u64,
    queue_max_messages: u64,
    spool: String,
}

#[derive(Debug, Default, serde::Deserialize)]
struct NoSection {}

impl ingest_core::config::Section for NoSection {
    const NAME: &'static str = "none";
    fn validate(&self) -> Result<(), ingest_core::config::ConfigError> {
        Ok(())
    }
}

impl Settings {
    fn from_env() -> Self {
        let profile = std::env::var("BENCH_PROFILE").unwrap_or_else(|_| "shipped".into());
        let mut env = HashMap::new();
        if profile == "seed" {
            let seed = repo_root().join("configs/kafka-seed.yaml").display().to_string();
            env.insert(ingest_core::config::OVERLAY_ENV.to_string(), seed);
        }
        let file = repo_root().join("configs/config.yaml");
        let d = ingest_core::config::load_with_env::<NoSection>(&file, &env).unwrap().core.kafka;
        Self {
            profile,
            batch_size_bytes: env_or("BENCH_BATCH_BYTES", d.batch_size_bytes),
            linger_ms: env_or("BENCH_LINGER_MS", d.linger_ms),
            compression: std::env::var("BENCH_COMPRESSION").unwrap_or(d.compression_type),
            headers: std::env::var("BENCH_HEADERS").unwrap_or(d.headers),
            queue_max_kbytes: env_or("BENCH_QUEUE_KBYTES", d.queue_max_kbytes),
            queue_max_messages: env_or("BENCH_QUEUE_MESSAGES", d.queue_max_messages),
            spool: std::env::var("BENCH_SPOOL").unwrap_or_else(|_| "true".into()),
        }
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("FINSTREAM__KAFKA__BATCH_SIZE_BYTES", self.batch_size_bytes.to_string()),
            ("FINSTREAM__KAFKA__LINGER_MS", self.linger_ms.to_string()),
            ("FINSTREAM__KAFKA__COMPRESSION_TYPE", self.compression.clone()),
            ("FINSTREAM__KAFKA__HEADERS", self.headers.clone()),
            ("FINSTREAM__KAFKA__QUEUE_MAX_KBYTES", self.queue_max_kbytes.to_string()),
            ("FINSTREAM__KAFKA__QUEUE_MAX_MESSAGES", self.queue_max_messages.to_string()),
            ("FINSTREAM__KAFKA__SPOOL__ENABLED", self.spool.clone()),
        ]
    }
}

/// One run of the producer binary against a fresh simulator and topic.
struct Run {
    verified: Verified,
    broker_cpu: f64,
    producer_cpu: f64,
    rss_mib: f64,
    wall_s: f64,
    /// Records that went through the outage spool (the memory queue had no room for
    /// `kafka.spool.engage_after_ms`).
    spooled: u64,
}

async fn run_ours(k: &Settings, symbols: &[String], per_frame: usize, ticks: u64, frames_per_sec: u64) -> Run {
    let topic = topic().await;
    let (sim, _h) = sim(symbols, per_frame, ticks, frames_per_sec).await;
    let url = format!("ws://{}/stocks", sim.addr);
    let symbol_list = symbols.join(",");
    let started = Instant::now();
    let broker_before = broker_cpu_secs();
    let mut env: Vec<(&str, String)> = vec![
        ("MARKET_API_KEY", "bench".into()),
        ("MARKET_WS_URL", url),
        // The simulator trades around the clock: a calendar would make the run depend on the hour.
        ("FINSTREAM__MARKET__SESSION", "always".into()),
        ("FINSTREAM__MARKET__SYMBOLS", symbol_list),
        ("FINSTREAM__MARKET__CHANNELS", "trades".into()),
        ("FINSTREAM__KAFKA__TOPICS__MARKET_TICKS__NAME", topic.clone()),
        ("LOG_LEVEL", "warn,ingest_core::runtime=info".into()),
    ];
    env.extend(k.env());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut producer = ProducerProcess::spawn(Path::new(env!("CARGO_BIN_EXE_market-producer")), &env);
    let n = usize::try_from(ticks).unwrap();
    let t = topic.clone();
    tokio::task::spawn_blocking(move || wait_for_records(&t, ticks as i64, Duration::from_secs(600))).await.unwrap();
    let wall_s = started.elapsed().as_secs_f64();
    let broker_cpu = broker_cpu_secs() - broker_before;
    let rss_mib = peak_rss_mib(producer.pid());
    let producer_cpu = cpu_secs(producer.pid());
    let spooled = producer.metric(ingest_core::telemetry::metrics::SPOOL_WRITTEN, &[]).await as u64;
    let verified = tokio::task::spawn_blocking(move || verify(&topic, n, Duration::from_secs(600))).await.unwrap();
    assert_eq!(producer.terminate(Duration::from_secs(30)), Some(0), "{}", producer.log());
    Run { verified, broker_cpu, producer_cpu, rss_mib, wall_s, spooled }
}

fn row(name: &str, r: &Run, ticks: u64, rate: f64) -> String {
    let v = &r.verified;
    format!(
        "| {name} | {} of {ticks} | {rate:.0} | {} ms | {} ms | {} | {} | {:.1} MiB | {:.2} µs | {} |",
        v.count,
        pct(&v.latencies_ms, 0.5),
        pct(&v.latencies_ms, 0.99),
        v.duplicates,
        v.out_of_order,
        r.rss_mib,
        r.producer_cpu * 1e6 / ticks as f64,
        r.spooled
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let ticks = env_or("BENCH_TICKS", 1_000_000);
    let n_symbols = env_or("BENCH_SYMBOLS", 50);
    let per_frame = usize::try_from(env_or("BENCH_EVENTS_PER_FRAME", 100)).unwrap();
    let naive_secs = env_or("BENCH_NAIVE_SECS", 10);
    let paced_rate = env_or("BENCH_PACED_RATE", 100_000);
    let paced_secs = env_or("BENCH_PACED_SECS", 10);
    let symbols: Vec<String> = (0..n_symbols).map(|i| format!("S{i:03}")).collect();
    let k = Settings::from_env();

    // Ours, saturated: the simulator sends as fast as the socket takes.
    let ours = run_ours(&k, &symbols, per_frame, ticks, 0).await;
    let v = &ours.verified;
    let avg_value = v.value_bytes / v.count.max(1);
    let span_s = ((v.last_append_ms - v.first_append_ms).max(1)) as f64 / 1000.0;
    let ours_rate = v.count as f64 / span_s;

    // The ceiling: the broker's own client, same record count, size and settings.
    let broker_before = broker_cpu_secs();
    let ceiling = perf_test(ticks, avg_value, &k).await;
    let broker_perf = broker_cpu_secs() - broker_before;

    // Paced: a live feed's rate, for latency.
    let fps = (paced_rate / per_frame as u64).max(1);
    let paced_ticks = fps * per_frame as u64 * paced_secs;
    let paced = run_ours(&k, &symbols, per_frame, paced_ticks, fps).await;
    let pv = &paced.verified;
    let paced_rate_seen = pv.count as f64 / (((pv.last_append_ms - pv.first_append_ms).max(1)) as f64 / 1000.0);

    // Naive baseline.
    let topic_naive = topic().await;
    let (sim_naive, _h2) = sim(&symbols, per_frame, 0, 0).await;
    let naive_url = format!("ws://{}/stocks", sim_naive.addr);
    let t = Instant::now();
    let naive_sent = naive(&naive_url, &topic_naive, &symbols.join(","), naive_secs).await;
    let naive_rate = naive_sent as f64 / t.elapsed().as_secs_f64();

    let machine = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name").map(|m| m.trim_start_matches([' ', '\t', ':']).to_string()))
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    println!();
    println!("machine: {machine}, {cores} cores; broker, simulator, producer and consumer on the same machine");
    println!(
        "settings: profile {}, {ticks} trades, {n_symbols} symbols, {per_frame} events/frame, acks=all, idempotence, {}, linger {} ms, batch.size {} B, headers {}, queue {} KiB / {} records, 16 partitions, spool {}, allocator {}",
        k.profile,
        k.compression,
        k.linger_ms,
        k.batch_size_bytes,
        k.headers,
        k.queue_max_kbytes,
        k.queue_max_messages,
        k.spool,
        if cfg!(feature = "jemalloc") { "jemalloc" } else { "system (--no-default-features)" }
    );
    println!();
    println!(
        "| pipeline | ticks delivered | ticks/s | p50 latency | p99 latency | duplicates | out of order | peak RSS | producer CPU per tick | spooled |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    println!("{}", row("market-producer (release), saturated", &ours, ticks, ours_rate));
    println!(
        "{}",
        row(&format!("market-producer (release), paced at {paced_rate} ticks/s"), &paced, paced_ticks, paced_rate_seen)
    );
    match &ceiling {
        Ok((rate, java_cpu)) => println!(
            "| kafka-producer-perf-test ({avg_value} B values, unkeyed, no headers) | {ticks} | {rate:.0} | – | – | – | – | – | {:.2} µs (JVM start included) | – |",
            java_cpu * 1e6 / ticks as f64
        ),
        Err(why) => println!("| kafka-producer-perf-test | not run: {why} |"),
    }
    println!(
        "| naive baseline (Value + awaited send per tick) | {naive_sent} in {naive_secs} s | {naive_rate:.0} | – | – | – | – | – | – | – |"
    );
    println!();
    if let Ok((rate, _)) = &ceiling {
        println!("ceiling: ours is {:.0}% of kafka-producer-perf-test's records/s", 100.0 * ours_rate / rate);
    }
    let per_record = |secs: f64| secs * 1e6 / ticks as f64;
    if ceiling.is_ok() && ours.broker_cpu > 0.0 && broker_perf > 0.0 {
        println!(
            "broker CPU per record: {:.2} µs serving market-producer, {:.2} µs serving kafka-producer-perf-test ({:.2}x)",
            per_record(ours.broker_cpu),
            per_record(broker_perf),
            ours.broker_cpu / broker_perf
        );
    }
    println!(
        "ratio: {:.1}x the naive baseline; wall time of our saturated run incl. startup {:.1} s",
        ours_rate / naive_rate.max(1e-9),
        ours.wall_s
    );
    drop(sim_naive);
}
