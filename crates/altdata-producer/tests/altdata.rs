//! Custom sources end to end, in process: the real runtime and broker, a local HTTP server
//! playing the sites, an injected resolver (names map to loopback or to private addresses) and
//! a tripwire that records any address that is not loopback reaching the connector: these
//! tests never send a packet anywhere but loopback, and a broken guard fails them loudly.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test, with its location")]

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use altdata_producer::config::AltDataConfig;
use altdata_producer::ssrf::{Lookup, Tripwire};
use axum::Router;
use axum::extract::Query;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use futures::future::BoxFuture;
use ingest_core::config::{Config, CoreConfig};
use ingest_core::kafka::admin::TopicToCreate;
use ingest_core::record::AltDataRecord;
use ingest_core::runtime::{self, ProducerSpec};
use ingest_core::source::Source;
use ingest_core::testkit;
use rdkafka::message::Message;

#[derive(Debug)]
struct Table(HashMap<&'static str, IpAddr>);

impl Lookup for Table {
    fn lookup(&self, host: &str) -> BoxFuture<'static, std::io::Result<Vec<IpAddr>>> {
        let r = self.0.get(host).map(|ip| vec![*ip]).ok_or_else(|| std::io::Error::other(format!("NXDOMAIN {host}")));
        Box::pin(async move { r })
    }
}

async fn serve_sites() -> u16 {
    let app = Router::new()
        .route(
            "/rates",
            get(|Query(q): Query<HashMap<String, String>>| async move {
                let body = match q.get("cursor").map(String::as_str) {
                    None => r#"{"data":{"items":[{"id":"r1","date":"2024-01-02","value":5.33,"label":"Fed funds"},{"id":"r2","date":"2024-01-03","value":5.31,"label":"SOFR"}]},"next":"c2"}"#,
                    Some("c2") => r#"{"data":{"items":[{"id":"r3","date":"2024-01-04","value":4.1,"label":"T-bill"},{"date":"2024-01-04","value":1}]},"next":null}"#,
                    Some(_) => r#"{"data":{"items":[]},"next":null}"#,
                };
                ([(header::CONTENT_TYPE, "application/json")], body)
            }),
        )
        .route(
            "/paged",
            get(|Query(q): Query<HashMap<String, String>>| async move {
                let body = match q.get("p").map(String::as_str) {
                    Some("1") => r#"[{"k":"p1"},{"k":"p2"}]"#,
                    Some("2") => r#"[{"k":"p3"}]"#,
                    _ => "[]",
                };
                ([(header::CONTENT_TYPE, "application/json")], body)
            }),
        )
        .route(
            "/linked",
            get(|| async {
                let next = "</linked2>; rel=\"next\", </linked>; rel=\"first\"";
                ([(header::CONTENT_TYPE, "application/json"), (header::LINK, next)], r#"[{"k":"l1"}]"#)
            }),
        )
        .route("/linked2", get(|| async { ([(header::CONTENT_TYPE, "application/json")], r#"[{"k":"l2"}]"#) }))
        .route(
            "/prices.csv",
            get(|| async { ([(header::CONTENT_TYPE, "text/csv")], "symbol,date,close\nAAPL,2024-01-02,185.64\nMSFT,2024-01-02,370.87\n") }),
        )
        .route(
            "/to-metadata",
            get(|| async { (StatusCode::FOUND, [(header::LOCATION, "http://169.254.169.254/latest/meta-data/")]).into_response() }),
        )
        .route(
            "/to-internal",
            get(|| async { (StatusCode::FOUND, [(header::LOCATION, "http://internal.example/secret")]).into_response() }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_and_csv_sources_deliver_and_ssrf_attempts_are_refused_and_counted() {
    let port = serve_sites().await;
    let stem = testkit::unique_topic("alt");
    let (raw, state) = (format!("{stem}.raw"), format!("{stem}.state"));
    testkit::create_topics(&[
        TopicToCreate::new(&raw, 2),
        TopicToCreate::new(format!("{stem}.dlq"), 1),
        TopicToCreate::new(format!("{stem}.events"), 1),
        TopicToCreate::new(&state, 1),
    ])
    .await;
    let site = format!("http://data.example:{port}");
    let section: AltDataConfig = serde_json::from_value(serde_json::json!({
        "allow_private": ["data.example"],
        "sources": [
            {"name": "rates", "kind": "json", "url": format!("{site}/rates"), "interval_secs": 1,
             "items": "/data/items", "id": "/id", "time": "/date", "time_format": "%Y-%m-%d",
             "fields": {"rate": "/value", "name": "/label"},
             "pagination": {"kind": "cursor", "param": "cursor", "cursor_path": "/next"}},
            {"name": "prices", "kind": "csv", "url": format!("{site}/prices.csv"), "interval_secs": 1,
             "id": "symbol", "time": "date", "time_format": "%Y-%m-%d"},
            {"name": "paged", "kind": "json", "url": format!("{site}/paged"), "interval_secs": 1, "id": "/k",
             "pagination": {"kind": "page", "param": "p"}},
            {"name": "linked", "kind": "json", "url": format!("{site}/linked"), "interval_secs": 1, "id": "/k",
             "pagination": {"kind": "link"}},
            {"name": "loopback", "kind": "json", "url": format!("http://127.0.0.1:{port}/rates"), "interval_secs": 1},
            {"name": "metadata", "kind": "json", "url": "http://169.254.169.254/latest/meta-data/", "interval_secs": 1},
            {"name": "internal", "kind": "json", "url": format!("http://internal.example:{port}/rates"), "interval_secs": 1},
            {"name": "redirect-metadata", "kind": "json", "url": format!("{site}/to-metadata"), "interval_secs": 1},
            {"name": "redirect-internal", "kind": "json", "url": format!("{site}/to-internal"), "interval_secs": 1}
        ]
    }))
    .unwrap();
    let mut core = CoreConfig::default();
    core.kafka.brokers = testkit::kafka_brokers();
    core.kafka.topics.altdata_records.name = raw.clone();
    core.kafka.topics.events.name = format!("{stem}.events");
    core.kafka.topics.state.name = state;
    core.runtime.instance_id = testkit::unique_topic("inst");
    core.telemetry.metrics_addr = "127.0.0.1:0".parse().unwrap();
    core.telemetry.health_addr = "127.0.0.1:0".parse().unwrap();
    let cfg = Config { core, section };

    let lookup = Arc::new(Table(HashMap::from([
        ("data.example", "127.0.0.1".parse().unwrap()),
        ("internal.example", "10.0.0.5".parse().unwrap()),
    ])));
    let escaped = Arc::new(Mutex::new(Vec::<String>::new()));
    let e = escaped.clone();
    let tripwire: Tripwire = Arc::new(move |host: &str, ip: IpAddr| {
        if !ip.is_loopback() {
            e.lock().unwrap().push(format!("{host} -> {ip}"));
        }
        ip.is_loopback()
    });
    let group = altdata_producer::group(&cfg, "itest-altdata", lookup, Some(tripwire));
    let sources: Vec<Box<dyn Source>> = vec![Box::new(group)];
    let running = runtime::start(ProducerSpec { name: "itest-altdata", version: "0", about: "t" }, &cfg, sources)
        .await
        .expect("start");

    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let got: Vec<AltDataRecord> = loop {
        let got: Vec<AltDataRecord> = testkit::consume_committed(&raw, Duration::from_secs(30))
            .iter()
            .map(|m| serde_json::from_slice(m.payload().unwrap()).unwrap())
            .collect();
        if got.len() >= 10 {
            break got;
        }
        assert!(std::time::Instant::now() < deadline, "{} of 10 records", got.len());
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    // A few more polls of every source, including the refused ones.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let metrics = running.metrics.render();
    running.shutdown_token().cancel();
    tokio::time::timeout(Duration::from_secs(20), running.wait()).await.expect("stops").expect("clean stop");

    let keys: Vec<String> = got.iter().map(|r| format!("{}:{}", r.source, r.id)).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            "linked:l1",
            "linked:l2",
            "paged:p1",
            "paged:p2",
            "paged:p3",
            "prices:AAPL",
            "prices:MSFT",
            "rates:r1",
            "rates:r2",
            "rates:r3"
        ],
        "each item once, every page read (cursor, page number, Link header); the id-less item dead-lettered"
    );
    let linked = got.iter().find(|r| r.id == "l2").unwrap();
    assert_eq!(linked.url.as_deref(), Some(format!("{site}/linked2").as_str()), "the Link target was followed");
    let r1 = got.iter().find(|r| r.id == "r1").unwrap();
    assert_eq!(r1.observed_at, chrono::DateTime::parse_from_rfc3339("2024-01-02T00:00:00Z").unwrap());
    assert_eq!(serde_json::Value::Object(r1.data.clone()), serde_json::json!({"rate": 5.33, "name": "Fed funds"}));
    assert_eq!(r1.url.as_deref(), Some(format!("{site}/rates").as_str()));
    let aapl = got.iter().find(|r| r.id == "AAPL").unwrap();
    assert_eq!(
        serde_json::Value::Object(aapl.data.clone()),
        serde_json::json!({"symbol": "AAPL", "date": "2024-01-02", "close": "185.64"})
    );

    let refused: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("producer_api_calls_total{") && l.contains("outcome=\"refused\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(refused >= 5.0, "five refused sources, each counted: {metrics}");
    assert!(
        escaped.lock().unwrap().is_empty(),
        "addresses that are not loopback reached the connector: {:?}",
        escaped.lock().unwrap()
    );
}
