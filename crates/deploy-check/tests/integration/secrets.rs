//! Secrets never leave the process except on the wire to their provider: sentinel values are
//! put into every credential of the five producer binaries, which run at log level `trace`
//! against provider-sim, three times: the provider accepts them (normal operation), rejects them
//! (the error paths), or cannot be reached (transport errors, which carry URLs). Then no
//! sentinel, nor its base64 or URL-encoded form, may appear in any log line, `/metrics`,
//! `/health`, `/ready`, or any record on any topic of the run (data, dead letters, events,
//! state). The simulator's request log proves the sentinels were really in use.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test, with its location")]

use super::common;

use std::time::Duration;

use base64::Engine as _;
use common::{bin, demo_env, demo_overlay, sim_addr, spawn_logged, topic_env};
use ingest_core::kafka::admin::TopicToCreate;
use ingest_core::testkit::{self, ProducerProcess};
use rdkafka::message::Message;

/// Every credential a producer reads, with its sentinel.
const SENTINELS: &[(&str, &str)] = &[
    ("MARKET_API_KEY", "SNTLmarketKey7f3a"),
    ("NEWS_API_KEY", "SNTLnewsapiKey2b9c"),
    ("ALPHAVANTAGE_API_KEY", "SNTLalphavKey5d1e"),
    ("REDDIT_CLIENT_ID", "SNTLredditId8a4f"),
    ("REDDIT_CLIENT_SECRET", "SNTLredditSecret3c7b"),
    ("TWITTER_BEARER_TOKEN", "SNTLxBearer6e2d"),
    ("TWITTER_API_KEY", "SNTLxApiKey1f8a"),
    ("TWITTER_API_SECRET", "SNTLxApiSecret9b3c"),
    ("KAFKA_SASL_PASSWORD", "SNTLkafkaPw4d6e"),
    ("ALTDATA_SENTINEL_TOKEN", "SNTLaltdataTok2a5f"),
];

/// The forms a sentinel could leak in.
fn forms() -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out: Vec<String> = SENTINELS.iter().map(|(_, s)| (*s).to_string()).collect();
    out.extend(SENTINELS.iter().map(|(_, s)| b64.encode(s)));
    // Reddit's client credentials travel as Basic base64(id:secret).
    out.push(b64.encode(format!("{}:{}", SENTINELS[3].1, SENTINELS[4].1)));
    out
}

fn assert_clean(what: &str, text: &str) {
    for f in forms() {
        assert!(!text.contains(&f), "a secret ({f}) leaked into {what}:\n{}", excerpt(text, &f));
    }
}

fn excerpt(text: &str, needle: &str) -> String {
    text.lines().filter(|l| l.contains(needle)).take(3).collect::<Vec<_>>().join("\n")
}

struct Run {
    stem: String,
    config: std::path::PathBuf,
}

impl Run {
    async fn new(tmp: &std::path::Path, sim: &str) -> Self {
        let stem = testkit::unique_topic("secrets");
        let mut topics = Vec::new();
        for t in ["market", "news", "social", "sec", "altdata"] {
            topics.push(TopicToCreate::new(format!("{stem}.{t}.raw"), 1));
            topics.push(TopicToCreate::new(format!("{stem}.{t}.dlq"), 1));
        }
        topics.push(TopicToCreate::new(format!("{stem}.events"), 1));
        topics.push(TopicToCreate::new(format!("{stem}.state"), 1));
        testkit::create_topics(&topics).await;
        // The repository's config with the demo overlay (the altdata examples pointed at this
        // simulator) and one more source that sends a secret header read from the environment.
        let extra = format!(
            "    - {{name: with-auth, kind: json, url: \"http://{sim}/altdata/rates.json\", interval_secs: 1, \
             items: /data/items, id: /id, auth: {{header: Authorization, prefix: \"Bearer \", env: ALTDATA_SENTINEL_TOKEN}}}}\n"
        );
        let path = tmp.join(format!("{stem}.yaml"));
        std::fs::write(&path, demo_overlay(&demo_env(sim)) + &extra).unwrap();
        Self { stem, config: path }
    }

    fn env(&self, sim: &str) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> =
            demo_env(sim).into_iter().filter(|(k, _)| !SENTINELS.iter().any(|(s, _)| s == k)).collect();
        env.extend(SENTINELS.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())));
        env.extend(topic_env(&self.stem));
        // demo-env.sh's own overlay is replaced by ours (which extends it).
        if let Some((_, generated)) = env.iter().find(|(k, _)| k == "FINSTREAM_CONFIG_OVERLAY") {
            let _ = std::fs::remove_file(generated);
        }
        env.retain(|(k, _)| k != "FINSTREAM_CONFIG_OVERLAY");
        env.push(("FINSTREAM_CONFIG_OVERLAY".into(), self.config.display().to_string()));
        env.push(("FINSTREAM__RUNTIME__INSTANCE_ID".into(), testkit::unique_topic("inst")));
        env.push(("LOG_LEVEL".into(), "trace".into()));
        env
    }

    /// Runs the five producers for a while (or until they stop), checks everything they show.
    async fn producers(&self, sim: &str, extra: &[(&str, &str)], settle: Duration) {
        let mut env = self.env(sim);
        env.extend(extra.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())));
        let refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut running: Vec<(String, ProducerProcess)> = ["market", "news", "social", "sec", "altdata"]
            .iter()
            .map(|p| (format!("{p}-producer"), ProducerProcess::spawn(&bin(&format!("{p}-producer")), &refs)))
            .collect();
        tokio::time::sleep(settle).await;
        let client = reqwest::Client::new();
        for (name, p) in &running {
            for url in [
                format!("http://{}/metrics", p.metrics),
                format!("http://{}/health", p.health),
                format!("http://{}/ready", p.health),
            ] {
                // A producer that already exited (rejected credentials are fatal) serves nothing.
                if let Ok(r) = client.get(&url).send().await {
                    assert_clean(&format!("{name} {url}"), &r.text().await.unwrap_or_default());
                }
            }
        }
        for (name, p) in &mut running {
            p.terminate(Duration::from_secs(30));
            assert!(p.log().lines().count() > 10, "{name} logged at trace level");
            assert_clean(&format!("the log of {name}"), &p.log());
        }
    }

    fn topics(&self) {
        let mut records = 0;
        for t in ["market", "news", "social", "sec", "altdata"]
            .iter()
            .flat_map(|t| [format!("{t}.raw"), format!("{t}.dlq")])
            .chain(["events".to_string(), "state".to_string()])
        {
            let topic = format!("{}.{t}", self.stem);
            for m in testkit::consume_committed(&topic, Duration::from_secs(30)) {
                records += 1;
                let mut text = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
                if let Some(k) = m.key() {
                    text.push_str(&String::from_utf8_lossy(k));
                }
                if let Some(h) = m.headers() {
                    for i in 0..rdkafka::message::Headers::count(h) {
                        let hdr = rdkafka::message::Headers::get(h, i);
                        text.push_str(&String::from_utf8_lossy(hdr.value.unwrap_or_default()));
                    }
                }
                assert_clean(&format!("a record on {topic}"), &text);
            }
        }
        assert!(records > 0, "records were checked");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_secrets_never_appear_in_logs_metrics_health_or_records() {
    let tmp = tempfile::tempdir().unwrap();
    let sim_args = |accept: bool| -> Vec<String> {
        let mut a: Vec<String> = [
            "--listen=127.0.0.1:0",
            "--firehose-symbols=AAPL,MSFT",
            "--firehose-fps=20",
            "--news-every-secs=1",
            "--sec-every-secs=1",
            "--social-every-secs=1",
            "--altdata-every-secs=1",
        ]
        .map(String::from)
        .to_vec();
        if accept {
            let v = |k: &str| SENTINELS.iter().find(|(n, _)| *n == k).unwrap().1;
            a.push(format!("--polygon-key={}", v("MARKET_API_KEY")));
            a.push(format!("--newsapi-key={}", v("NEWS_API_KEY")));
            a.push(format!("--alphavantage-key={}", v("ALPHAVANTAGE_API_KEY")));
            a.push(format!("--reddit-client-id={}", v("REDDIT_CLIENT_ID")));
            a.push(format!("--reddit-client-secret={}", v("REDDIT_CLIENT_SECRET")));
            a.push(format!("--x-bearer-token={}", v("TWITTER_BEARER_TOKEN")));
        }
        a
    };
    let start_sim = |accept: bool, name: &str| {
        let sim = spawn_logged(&bin("provider-sim"), &sim_args(accept), tmp.path().join(format!("{name}.log")));
        (sim, name.to_string())
    };

    // 1. The providers accept the sentinels: everything runs normally.
    let (sim, _) = start_sim(true, "accepting");
    let addr = sim_addr(&sim).await;
    let run = Run::new(tmp.path(), &addr).await;
    run.producers(&addr, &[], Duration::from_secs(8)).await;
    let seen = reqwest::get(format!("http://{addr}/_sim/requests")).await.unwrap().text().await.unwrap();
    for k in ["NEWS_API_KEY", "ALPHAVANTAGE_API_KEY", "TWITTER_BEARER_TOKEN", "ALTDATA_SENTINEL_TOKEN"] {
        let v = SENTINELS.iter().find(|(n, _)| *n == k).unwrap().1;
        assert!(seen.contains(v), "{k} was not sent to the provider: the run did not exercise it");
    }
    run.topics();
    drop(sim);

    // 2. The providers reject them: authentication errors everywhere (several are fatal).
    let (sim, _) = start_sim(false, "rejecting");
    let addr = sim_addr(&sim).await;
    let run = Run::new(tmp.path(), &addr).await;
    run.producers(&addr, &[], Duration::from_secs(5)).await;
    run.topics_if_any();
    drop(sim);

    // 3. The providers cannot be reached: transport errors, whose messages name URLs (Alpha
    // Vantage and the altdata source carry credentials in the query or headers).
    let closed = common::free_port();
    let run = Run::new(tmp.path(), &format!("127.0.0.1:{closed}")).await;
    run.producers(&format!("127.0.0.1:{closed}"), &[], Duration::from_secs(5)).await;
}

impl Run {
    /// As [`Run::topics`], for runs where nothing may have been written.
    fn topics_if_any(&self) {
        for t in ["events", "news.dlq", "social.dlq", "market.dlq"] {
            let topic = format!("{}.{t}", self.stem);
            for m in testkit::consume_committed(&topic, Duration::from_secs(30)) {
                assert_clean(
                    &format!("a record on {topic}"),
                    &String::from_utf8_lossy(m.payload().unwrap_or_default()),
                );
            }
        }
    }
}
