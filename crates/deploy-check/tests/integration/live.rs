//! The monitoring stack for real: provider-sim and the five producer binaries in demo mode
//! (environment from scripts/demo-env.sh, as in `make run` and the containers) against the local
//! Kafka, scraped by a real Prometheus server (Debian's `prometheus`) that also loads the alert
//! rules. Checked through Prometheus's HTTP API: the seed metrics have non-zero values for every
//! producer, every target is up, the rules load and evaluate, and every Grafana and alert query
//! parses and only names metrics the producers really export (from their live /metrics).

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test, with its location")]

use super::common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::{bin, demo_env, demo_overlay, free_port, sim_addr, spawn_logged, topic_env};

use deploy_check::{dashboard_exprs, exposed_names, grafana_to_promql, metric_names, repo, tool, yaml_file};
use ingest_core::kafka::admin::TopicToCreate;
use ingest_core::testkit::{self, ProducerProcess};
use serde_json::Value;

const PRODUCERS: [&str; 5] = ["market", "news", "social", "sec", "altdata"];

async fn query(client: &reqwest::Client, prom: &str, q: &str) -> Value {
    let r = client.get(format!("{prom}/api/v1/query")).query(&[("query", q)]).send().await.unwrap();
    r.json().await.unwrap()
}

/// `{producer → value}` of a query's vector result.
fn by_producer(v: &Value) -> BTreeMap<String, f64> {
    v["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| Some((s["metric"]["producer"].as_str()?.to_string(), s["value"][1].as_str()?.parse().ok()?)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_every_producer_and_every_dashboard_and_alert_query_is_real() {
    let tmp = tempfile::tempdir().unwrap();
    let stem = testkit::unique_topic("deploy");
    let topic = |t: &str| format!("{stem}.{t}");
    let data = ["market.raw", "news.raw", "social.raw", "sec.raw", "altdata.raw"];
    let mut topics: Vec<TopicToCreate> = data.iter().map(|t| TopicToCreate::new(topic(t), 2)).collect();
    topics.extend(data.iter().map(|t| TopicToCreate::new(topic(&t.replace(".raw", ".dlq")), 1)));
    topics.push(TopicToCreate::new(topic("events"), 1));
    topics.push(TopicToCreate::new(topic("state"), 1));
    testkit::create_topics(&topics).await;

    // provider-sim on an OS-assigned port, in demo mode.
    let sim = spawn_logged(
        &bin("provider-sim"),
        &[
            "--listen=127.0.0.1:0",
            "--firehose-symbols=AAPL,MSFT",
            "--firehose-fps=20",
            "--news-every-secs=2",
            "--sec-every-secs=2",
            "--social-every-secs=2",
            "--altdata-every-secs=2",
        ]
        .map(String::from),
        tmp.path().join("sim.log"),
    );
    let sim_addr = sim_addr(&sim).await;

    // One config for all: the repository's, with the demo overlay of scripts/demo-env.sh (the
    // altdata examples pointed at this simulator) plus a source that always fails (its breaker
    // opens) and one whose items have no id (they are dead-lettered:
    // producer_messages_failed_total{reason="invalid"}).
    let mut env = demo_env(&sim_addr);
    let extra = format!(
        "    - {{name: always-failing, kind: json, url: \"http://{sim_addr}/altdata/status/503\", interval_secs: 1}}\n    \
         - {{name: no-ids, kind: json, url: \"http://{sim_addr}/altdata/rates.json\", interval_secs: 1, items: /data/items, id: /missing}}\n"
    );
    let overlay_path = tmp.path().join("overlay.yaml");
    std::fs::write(&overlay_path, demo_overlay(&env) + &extra).unwrap();
    env.retain(|(k, _)| k != "FINSTREAM_CONFIG_OVERLAY");
    env.push(("FINSTREAM_CONFIG_OVERLAY".into(), overlay_path.display().to_string()));
    let config_path = repo().join("configs/config.yaml");

    env.extend(topic_env(&stem));
    env.push(("FINSTREAM_CONFIG".into(), config_path.display().to_string()));
    env.push(("FINSTREAM__RUNTIME__INSTANCE_ID".into(), testkit::unique_topic("inst")));
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let producers: Vec<(String, ProducerProcess)> = PRODUCERS
        .iter()
        .map(|p| (format!("{p}-producer"), ProducerProcess::spawn(&bin(&format!("{p}-producer")), &env_refs)))
        .collect();

    // A real Prometheus scraping them every second, with the alert rules loaded.
    let targets: Vec<String> = producers
        .iter()
        .map(|(name, p)| format!("      - targets: [\"{}\"]\n        labels: {{ service: {name} }}\n", p.metrics))
        .collect();
    std::fs::copy(repo().join("infrastructure/prometheus/alerts.yml"), tmp.path().join("alerts.yml")).unwrap();
    std::fs::write(
        tmp.path().join("prometheus.yml"),
        format!(
            "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\nrule_files: [alerts.yml]\nscrape_configs:\n  \
             - job_name: finstream-producers\n    static_configs:\n{}",
            targets.concat()
        ),
    )
    .unwrap();
    let port = free_port();
    let prometheus = spawn_logged(
        &tool("prometheus"),
        &[
            format!("--config.file={}", tmp.path().join("prometheus.yml").display()),
            format!("--storage.tsdb.path={}", tmp.path().join("tsdb").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
        ],
        tmp.path().join("prometheus.log"),
    );
    let prom = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();

    // Records flowed from every producer and each seed metric is non-zero.
    let seed = [
        "producer_messages_sent_total",
        "producer_latency_seconds_count",
        "producer_api_calls_total",
        "producer_messages_failed_total",
        "producer_circuit_breaker_state",
    ];
    let deadline = Instant::now() + Duration::from_secs(120);
    let sent = loop {
        let ready = async {
            let sent = by_producer(&query(&client, &prom, "sum by (producer) (producer_messages_sent_total)").await);
            let all_sent = producers.iter().all(|(n, _)| sent.get(n).copied().unwrap_or(0.0) > 0.0);
            let mut rest = true;
            for m in &seed[1..] {
                let v = query(&client, &prom, &format!("sum({m})")).await;
                let total: f64 =
                    v["data"]["result"][0]["value"][1].as_str().and_then(|s| s.parse().ok()).unwrap_or(0.0);
                rest &= total > 0.0;
            }
            (all_sent && rest).then_some(sent)
        };
        let up = client.get(format!("{prom}/-/ready")).send().await.is_ok_and(|r| r.status().is_success());
        if up && let Some(sent) = ready.await {
            break sent;
        }
        assert!(
            Instant::now() < deadline,
            "seed metrics not all non-zero after 120 s\nprometheus: {}\nproducers:\n{}",
            prometheus.log().lines().rev().take(10).collect::<Vec<_>>().join("\n"),
            producers.iter().map(|(n, p)| format!("--- {n}\n{}", p.log())).collect::<Vec<_>>().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(sent.len(), 5, "{sent:?}");
    let failed = by_producer(
        &query(&client, &prom, "sum by (producer) (producer_messages_failed_total{reason=\"invalid\"})").await,
    );
    assert!(failed.get("altdata-producer").copied().unwrap_or(0.0) > 0.0, "dead letters counted: {failed:?}");
    let breaker =
        query(&client, &prom, "max by (source) (producer_circuit_breaker_state{source=\"always-failing\"})").await;
    assert_ne!(breaker["data"]["result"][0]["value"][1], "0", "{breaker}");

    // Every target up, and the rules loaded and evaluated without errors.
    let t: Value = client.get(format!("{prom}/api/v1/targets")).send().await.unwrap().json().await.unwrap();
    let active = t["data"]["activeTargets"].as_array().unwrap();
    assert_eq!(active.len(), 5);
    assert!(active.iter().all(|t| t["health"] == "up"), "{t}");
    let alerts = yaml_file("infrastructure/prometheus/alerts.yml");
    let want_rules: usize =
        alerts["groups"].as_array().unwrap().iter().map(|g| g["rules"].as_array().unwrap().len()).sum();
    let rules = testkit::wait_for(Duration::from_secs(30), "the rules to be evaluated", || {
        let client = client.clone();
        let prom = prom.clone();
        async move {
            let r: Value = client.get(format!("{prom}/api/v1/rules")).send().await.ok()?.json().await.ok()?;
            let rules: Vec<Value> = r["data"]["groups"]
                .as_array()?
                .iter()
                .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
                .collect();
            rules.iter().all(|r| r["lastEvaluation"].as_str().is_some_and(|t| !t.starts_with("0001"))).then_some(rules)
        }
    })
    .await;
    assert_eq!(rules.len(), want_rules);
    for r in &rules {
        assert_eq!(r["health"], "ok", "{r}");
    }

    // The metric names the producers really export, from their live /metrics.
    let mut exported = BTreeSet::new();
    for (name, p) in &producers {
        let text = client.get(format!("http://{}/metrics", p.metrics)).send().await.unwrap().text().await.unwrap();
        assert!(text.contains(&format!("producer=\"{name}\"")), "{name}");
        exported.extend(exposed_names(&text));
    }
    let mut checked = 0;
    let dir = repo().join("infrastructure/grafana/dashboards");
    for f in std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()) {
        let d: Value = serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        for expr in dashboard_exprs(&d) {
            for m in metric_names(&expr) {
                // The consumer-lag panel reads kafka-exporter's metric (scraped beside the producers).
                assert!(
                    exported.contains(&m) || m == "kafka_consumergroup_lag",
                    "{}: `{m}` is not exported by any producer ({expr})",
                    f.display()
                );
            }
            let q = grafana_to_promql(&expr);
            let v = query(&client, &prom, &q).await;
            assert_eq!(v["status"], "success", "{}: {q}\n{v}", f.display());
            checked += 1;
        }
    }
    assert!(checked > 50, "{checked} dashboard queries");
    // Alert rules: producer metrics must exist too (up and the Kafka exporter's lag excepted).
    for g in alerts["groups"].as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            let expr = r["expr"].as_str().unwrap();
            for m in metric_names(expr) {
                assert!(
                    exported.contains(&m) || m == "up" || m == "kafka_consumergroup_lag",
                    "alert {}: `{m}` is not exported",
                    r["alert"]
                );
            }
        }
    }

    for (name, mut p) in producers {
        assert_eq!(p.terminate(Duration::from_secs(30)), Some(0), "{name}:\n{}", p.log());
    }
    drop(prometheus);
    drop(sim);
}
