//! Test helpers shared by the crates' integration tests (feature `testkit`): the real local
//! Kafka (never a mock), unique topics, bounded polling, an independent consumer, and the CLI
//! contract every producer binary must honour.
//!
//! Tests that need Kafka fail, not skip, when it is unreachable: `make test` starts it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message, OwnedMessage};

use crate::kafka::admin::{TopicToCreate, ensure_topics};

/// `KAFKA_BROKERS` or the local default.
pub fn kafka_brokers() -> String {
    std::env::var("KAFKA_BROKERS").ok().filter(|b| !b.is_empty()).unwrap_or_else(|| "127.0.0.1:9092".into())
}

/// A topic name no other test (or test run) uses.
pub fn unique_topic(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("test.{prefix}.{}.{}.{nanos}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// Creates topics on the real broker; panics with a clear message if Kafka is unreachable.
pub async fn create_topics(topics: &[TopicToCreate]) {
    let brokers = kafka_brokers();
    ensure_topics(&[("bootstrap.servers".to_string(), brokers.clone())], 1, topics)
        .await
        .unwrap_or_else(|e| panic!("cannot create test topics on Kafka at {brokers} (run `make kafka-up`): {e}"));
}

/// Polls `f` every 50 ms until it returns `Some`, or panics after `timeout` with `what`.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads `topic` from the beginning with an independent rdkafka consumer (read_committed)
/// until `n` records arrived, or panics after `timeout` saying how many came. Partitions are
/// assigned explicitly once the topic's metadata shows a leader for each (a subscription to a
/// topic created a moment ago could otherwise see no partitions for minutes).
pub fn consume(topic: &str, n: usize, timeout: Duration) -> Vec<OwnedMessage> {
    use rdkafka::{Offset, TopicPartitionList};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .set("group.id", unique_topic("group"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .expect("consumer config is valid");
    let deadline = Instant::now() + timeout;
    let partitions = loop {
        let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(5));
        let ready = md.ok().and_then(|md| {
            let t = md.topics().iter().find(|t| t.name() == topic)?;
            let ps: Vec<i32> = t.partitions().iter().filter(|p| p.leader() >= 0).map(|p| p.id()).collect();
            (t.error().is_none() && !ps.is_empty() && ps.len() == t.partitions().len()).then_some(ps)
        });
        if let Some(ps) = ready {
            break ps;
        }
        assert!(Instant::now() < deadline, "topic {topic} has no ready partitions (is Kafka up?)");
        crate::blocking::sleep(Duration::from_millis(100));
    };
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning).expect("valid offset");
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    while out.len() < n && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => out.push(m.detach()),
            Some(Err(e)) => panic!("consumer error on {topic}: {e}"),
            None => {}
        }
    }
    assert!(out.len() >= n, "expected {n} records on {topic} within {timeout:?}, got {}", out.len());
    out
}

/// Every record of `topic` committed up to its current end (`read_committed`, offset order per
/// partition); waits for transactions open at the call to end.
pub fn consume_committed(topic: &str, timeout: Duration) -> Vec<OwnedMessage> {
    let kafka = crate::config::KafkaConfig { brokers: kafka_brokers(), ..Default::default() };
    let mut out = Vec::new();
    crate::kafka::read_committed_to_end(&kafka, topic, timeout, |m| out.push(m.detach()))
        .unwrap_or_else(|e| panic!("reading {topic}: {e}"));
    out
}

/// The value of header `key` of a message, as text.
pub fn header(m: &OwnedMessage, key: &str) -> Option<String> {
    let h = m.headers()?;
    h.iter().find(|h| h.key == key).and_then(|h| h.value).map(|v| String::from_utf8_lossy(v).into_owned())
}

/// Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`), to check partitioning.
pub fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    let len = data.len();
    let mut h = SEED ^ u32::try_from(len).unwrap_or(u32::MAX);
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for c in chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

/// The partition the Java client (and our sink) picks for `key`.
pub fn java_partition(key: &[u8], partitions: i32) -> i32 {
    i32::try_from((murmur2(key) & 0x7fff_ffff) % u32::try_from(partitions).unwrap_or(1)).unwrap_or(0)
}

fn run(bin: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin);
    cmd.args(args).current_dir(workspace_root()).env_remove("FINSTREAM_CONFIG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()))
}

/// The repository root (where `configs/config.yaml` is).
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(Path::parent)
        .expect("crates/ingest-core is two levels down")
}

/// Checks the CLI contract of a producer binary (docs/contracts.md, Operation):
/// `--help`/`--version` exit 0; `--check-config` exits 0 with `valid_env` and 2 with a message
/// naming the key for an unknown key, a bad value and a missing secret; SIGTERM of a running
/// producer exits 0 promptly. `secrets` are the credentials (variable, config key) of its
/// enabled providers: each one unset alone disables its provider only (exit 0, `--check-config`
/// names it) while another provider has its own; all unset exits 2 naming the first.
pub fn check_cli_contract(bin: &Path, name: &str, valid_env: &[(&str, &str)], secrets: &[(&str, &str)]) {
    let out = run(bin, &["--help"], &[]);
    assert!(out.status.success(), "--help failed");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--check-config") && help.contains("--config"), "{help}");

    let out = run(bin, &["--version"], &[]);
    assert!(out.status.success());
    // The version and the commit it was built from (images are checked by the same line).
    let version = format!("{name} {} (commit {})", env!("CARGO_PKG_VERSION"), crate::runtime::REVISION);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), version);

    let out = run(bin, &["--no-such-flag"], &[]);
    assert_eq!(out.status.code(), Some(2), "usage error must exit 2");

    let out = run(bin, &["--check-config"], valid_env);
    assert!(out.status.success(), "valid config refused: {}", String::from_utf8_lossy(&out.stderr));

    let dir = tempfile_dir();
    let original = std::fs::read_to_string(workspace_root().join("configs/config.yaml")).expect("configs/config.yaml");
    let unknown = dir.join("unknown.yaml");
    std::fs::write(&unknown, original.replace("  linger_ms: 10", "  linger_ms: 10\n  lingr_ms: 5")).expect("write");
    let out = run(bin, &["--check-config", "--config", unknown.to_str().expect("utf8 path")], valid_env);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`kafka.lingr_ms`") && err.contains("unknown key"), "{err}");

    let mut bad = valid_env.to_vec();
    bad.push(("KAFKA_BROKERS", "not-a-broker"));
    let out = run(bin, &["--check-config"], &bad);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`kafka.brokers`"));

    fn without<'a>(valid: &[(&'a str, &'a str)], unset: &[&'a str]) -> Vec<(&'a str, &'a str)> {
        valid.iter().filter(|(k, _)| !unset.contains(k)).copied().chain(unset.iter().map(|v| (*v, ""))).collect()
    }
    let all: Vec<&str> = secrets.iter().map(|(v, _)| *v).collect();
    if let Some((var, key)) = secrets.first() {
        let out = run(bin, &["--check-config"], &without(valid_env, &all));
        assert_eq!(out.status.code(), Some(2), "no provider left with its credentials must exit 2");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("`{key}`")) && err.contains("missing secret") && err.contains(var), "{err}");
    }
    // Several providers (the callers pass credentials of at least two): one without its
    // credentials while another has its own is disabled, not an error.
    if secrets.len() > 1 {
        for (var, _) in secrets {
            let out = run(bin, &["--check-config"], &without(valid_env, &[var]));
            let said = String::from_utf8_lossy(&out.stdout);
            assert_eq!(out.status.code(), Some(0), "{var} unset alone must disable only its provider: {said}");
            assert!(said.contains("disabled:") && said.contains(&format!("{var} is not set")), "{said}");
        }
    }

    check_sigterm(bin, valid_env);
    let _ = std::fs::remove_dir_all(dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(unique_topic("cli"));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// Starts the binary with OS-assigned ports, waits until it logged that it started, sends
/// SIGTERM and expects exit 0 within 20 s (the shutdown timeout is 10 s).
fn check_sigterm(bin: &Path, env: &[(&str, &str)]) {
    let mut p = ProducerProcess::spawn(bin, env);
    let code = p.terminate(Duration::from_secs(20));
    assert_eq!(code, Some(0), "SIGTERM must exit 0; log:\n{}", p.log());
    assert!(p.log().contains("stopped cleanly"), "{}", p.log());
}

/// A producer binary running for a test: logs captured, health address learned from its
/// startup line, SIGTERM (then SIGKILL) on drop.
#[derive(Debug)]
pub struct ProducerProcess {
    child: std::process::Child,
    /// The spool directory made for this process (removed on drop), unless the caller gave
    /// `KAFKA_SPOOL_DIR`.
    own_spool: Option<PathBuf>,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// Where `/health` and `/ready` are served.
    pub health: std::net::SocketAddr,
    /// Where `/metrics` is served.
    pub metrics: std::net::SocketAddr,
}

impl ProducerProcess {
    /// Starts `bin` from the workspace root with OS-assigned telemetry ports, the local Kafka
    /// and `env`; waits (up to 30 s) until it logged that it started.
    pub fn spawn(bin: &Path, env: &[(&str, &str)]) -> Self {
        Self::spawn_with_args(bin, &[], env)
    }

    /// As [`ProducerProcess::spawn`], with command-line arguments.
    pub fn spawn_with_args(bin: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        use std::io::{BufRead, BufReader};
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .current_dir(workspace_root())
            .env_remove("FINSTREAM_CONFIG")
            .env("FINSTREAM__TELEMETRY__METRICS_ADDR", "127.0.0.1:0")
            .env("FINSTREAM__TELEMETRY__HEALTH_ADDR", "127.0.0.1:0")
            .env("KAFKA_BROKERS", kafka_brokers())
            .env("LOG_LEVEL", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // Every process gets its own spool: two at once in one directory would fight over its
        // lock. Tests of crash recovery pass KAFKA_SPOOL_DIR to share one across restarts.
        let own_spool = (!env.iter().any(|(k, _)| *k == "KAFKA_SPOOL_DIR")).then(|| unique_dir("spool"));
        if let Some(dir) = &own_spool {
            cmd.env("KAFKA_SPOOL_DIR", dir);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let stderr = child.stderr.take().expect("stderr piped");
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = |l: &str, key: &str| -> Option<std::net::SocketAddr> {
            l.split(key).nth(1)?.split_whitespace().next()?.parse().ok()
        };
        let (health, metrics) = loop {
            let found = log
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .iter()
                .find_map(|l| Some((addr(l, "health=")?, addr(l, "metrics=")?)));
            if let Some(addrs) = found {
                break addrs;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "producer exited with {status} before starting:\n{}",
                    log.lock().map(|l| l.join("\n")).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "producer did not start within 30s");
            crate::blocking::sleep(Duration::from_millis(20));
        };
        Self { child, own_spool, log, health, metrics }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its resident memory (KiB).
    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.pid())
    }

    /// The sum of its series `name` whose labels contain every `labels` pair (with no pairs: an
    /// unlabelled metric too), from its own
    /// `/metrics` (served with `/health` when both addresses are 127.0.0.1:0).
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let url = format!("http://{}/metrics", self.health);
        let text = reqwest::get(url).await.expect("scrape /metrics").text().await.expect("metrics body");
        text.lines()
            .filter(|l| {
                l.starts_with(&format!("{name}{{")) || (labels.is_empty() && l.starts_with(&format!("{name} ")))
            })
            .filter(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(std::sync::PoisonError::into_inner).join("\n")
    }

    /// Waits up to `timeout` for it to exit on its own; its exit code (None if killed by a
    /// signal). Panics on timeout.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                // Let the log reader catch up with the last lines.
                crate::blocking::sleep(Duration::from_millis(100));
                return s.code();
            }
            assert!(Instant::now() < deadline, "producer still running after {timeout:?}:\n{}", self.log());
            crate::blocking::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then waits up to `timeout`; the exit code.
    pub fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        self.wait_exit(timeout)
    }
}

impl Drop for ProducerProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(15);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                crate::blocking::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Some(dir) = &self.own_spool {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Resident memory of process `pid` from /proc (KiB; 0 if it is gone).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("VmRSS:")?.trim().trim_end_matches(" kB").parse().ok()))
        .unwrap_or(0)
}

/// A fresh path under the system's temp directory (not created), unique in this machine's
/// run: `<tmp>/finstream-<what>-<pid>-<n>`.
pub fn unique_dir(what: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir().join(format!("finstream-{what}-{}-{n}", std::process::id()))
}

/// Hostile-input property test of a poller's `normalize`: `cases` bodies from
/// [`hostile_inputs`], served with status 200 and, in turn, with other statuses. `normalize`
/// must return (records, rejects or an error), never panic. Returns the number of inputs tried.
pub fn hostile_bodies<P: crate::source::Poller>(poller: &P, cursor: &P::Cursor, seeds: &[Vec<u8>], cases: u32) -> u32 {
    let tried = std::sync::atomic::AtomicU32::new(0);
    hostile_inputs(poller.name(), seeds, cases, |body| {
        let n = tried.fetch_add(1, Ordering::Relaxed) as usize;
        let status = crate::hostile::STATUSES[n % crate::hostile::STATUSES.len()];
        crate::hostile::poll_body(poller, cursor, status, body);
    })
}

/// Hostile-input property test of any parser: `cases` inputs, each either arbitrary bytes or
/// one of `seeds` (real provider input) mutated (bytes flipped, inserted, deleted, chunks
/// repeated to nest deeper, truncated), handed to `check`, which must not panic. Proptest's
/// runner with a fixed seed: reproducible, and a failing input is shrunk. Returns the number of
/// inputs tried.
pub fn hostile_inputs(what: &str, seeds: &[Vec<u8>], cases: u32, check: impl Fn(&[u8])) -> u32 {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

    assert!(!seeds.is_empty() && seeds.iter().all(|s| !s.is_empty()), "{what}: give real input as seeds");
    let seeds = seeds.to_vec();
    let n = seeds.len();
    let mutated =
        (0..n, proptest::collection::vec((any::<u32>(), 0u8..5, any::<u8>()), 0..24)).prop_map(move |(i, ops)| {
            let mut b = seeds[i].clone();
            for (pos, op, byte) in ops {
                let at = if b.is_empty() { 0 } else { pos as usize % b.len() };
                match op {
                    0 if !b.is_empty() => b[at] = byte,
                    1 => b.insert(at, byte),
                    2 if !b.is_empty() => {
                        b.remove(at);
                    }
                    3 => {
                        // Repeat a chunk: deep nesting, long strings, duplicated keys.
                        let end = (at + 1 + byte as usize).min(b.len());
                        let chunk = b[at..end].to_vec();
                        for _ in 0..(byte % 16) {
                            b.splice(at..at, chunk.iter().copied());
                        }
                    }
                    _ => b.truncate(at),
                }
            }
            b
        });
    let strategy = prop_oneof![1 => proptest::collection::vec(any::<u8>(), 0..2048), 4 => mutated];
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]));
    let tried = std::sync::atomic::AtomicU32::new(0);
    let result = runner.run(&strategy, |input| {
        tried.fetch_add(1, Ordering::Relaxed);
        check(&input);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{what} failed on hostile input: {e}");
    }
    // Shrinking re-runs inputs; count the cases asked for, not the re-runs.
    tried.into_inner().min(cases)
}

/// The TLS + SASL/SCRAM-SHA-512 broker of `scripts/kafka.sh secure-up` (`make test` starts it):
/// a plaintext admin listener on `admin_port` (`KAFKA_SECURE_PORT`, 9292), SASL_SSL on the next
/// port as `localhost`, its test CA, user and random password in `dir`.
#[derive(Debug, Clone)]
pub struct SecureBroker {
    /// `.local/kafka/secure` (or under `KAFKA_LOCAL_DIR`).
    pub dir: std::path::PathBuf,
    /// The plaintext admin port.
    pub admin_port: u16,
}

impl SecureBroker {
    /// The running secure broker; panics, saying how to start it, when there is none.
    pub fn get() -> Self {
        let dir = std::env::var("KAFKA_LOCAL_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|_| workspace_root().join(".local/kafka"))
            .join("secure");
        let admin_port = std::env::var("KAFKA_SECURE_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(9292);
        assert!(
            dir.join("sasl.password").is_file(),
            "no secure broker: run `scripts/kafka.sh secure-up` (make test does)"
        );
        Self { dir, admin_port }
    }

    /// A file of the broker's directory, trimmed (`sasl.user`, `sasl.password`).
    pub fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.dir.join(file)).unwrap_or_default().trim().to_string()
    }

    /// The SASL_SSL port (clients connect to `localhost:<it>`).
    pub fn sasl_port(&self) -> u16 {
        self.admin_port + 1
    }

    /// A CA file of its test PKI (`ca.pem`, or `other-ca.pem` that did not sign it).
    pub fn ca(&self, name: &str) -> std::path::PathBuf {
        self.dir.join("tls").join(name)
    }
}

/// Trusts the test CA of `scripts/test-ca.sh` (`.local/test-ca/ca.pem`) in this process's TLS
/// configuration, for tests that call provider-sim over `https://` from inside the test process.
/// The process installs one configuration: call it before any HTTPS client is built.
pub fn trust_test_ca() {
    let ca = workspace_root().join(".local/test-ca/ca.pem");
    assert!(ca.is_file(), "no test CA at {}: run `make test-ca` (make test does)", ca.display());
    let cfg = crate::tls::TlsConfig { extra_ca_file: ca.display().to_string() };
    crate::tls::install(&cfg).expect("the test CA loads");
}

/// Asserts that `fetched` is a refused redirect to another origin (the credential-origin rule).
pub fn assert_refused_cross_origin(what: &str, fetched: &Result<crate::http::HttpResponse, crate::http::FetchError>) {
    match fetched {
        Err(crate::http::FetchError::Refused(r)) => {
            assert!(r.0.contains("refused to leave the credentials' origin"), "{what}: {r}");
        }
        other => panic!("{what}: a redirect to another origin was not refused: {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    /// A parser that panics on some input fails the property test (the harness itself can fail).
    #[test]
    #[should_panic(expected = "a fragile parser failed on hostile input")]
    fn a_panicking_parser_is_caught() {
        super::hostile_inputs("a fragile parser", &[b"[1]".to_vec()], 200, |b| assert!(b.len() < 100, "too long"));
    }
}
