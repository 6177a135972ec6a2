//! `--record` and `--replay`: the shipped sample recording replays to exactly the expected
//! records, and a live run recorded with `--record` replays to the same records.

use std::path::Path;
use std::time::Duration;

use ingest_core::record::DeadLetter;
use ingest_core::testkit::{self, ProducerProcess};
use provider_sim::Sim;
use provider_sim::polygon::{PolygonConfig, PolygonHandle};
use rdkafka::message::Message;
use serde_json::Value;

use crate::common::{Topics, value};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_market-producer"))
}

/// Replays `recording` into fresh topics; returns the topics once the producer exited 0.
async fn replay(recording: &Path) -> Topics {
    let t = Topics::create().await;
    let mut env: Vec<(&str, &str)> = vec![("MARKET_API_KEY", "unused-in-replay")];
    env.extend(t.env());
    let path = recording.to_str().unwrap();
    let mut p = ProducerProcess::spawn_with_args(bin(), &["--replay", path, "--speed", "max"], &env);
    assert_eq!(p.wait_exit(Duration::from_secs(60)), Some(0), "{}", p.log());
    assert!(p.log().contains("replay finished"), "{}", p.log());
    t
}

fn same_value(got: &Value, want: &Value) {
    let (g, w) = (got.as_object().unwrap(), want.as_object().unwrap());
    assert_eq!(g.keys().collect::<Vec<_>>().len(), w.keys().count(), "fields of {got} vs {want}");
    for (k, wv) in w {
        match (g[k].as_f64(), wv.as_f64()) {
            (Some(a), Some(b)) => assert!((a - b).abs() < 1e-9, "{k}: {a} != {b}"),
            _ => assert_eq!(&g[k], wv, "{k}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sample_recording_replays_to_exactly_the_expected_records() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data/recordings");
    let t = replay(&dir.join("polygon-sample.jsonl")).await;
    let expected: Vec<Value> = std::fs::read_to_string(dir.join("polygon-sample.expected.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let got = testkit::consume(&t.topic, expected.len(), Duration::from_secs(30));
    assert_eq!(got.len(), expected.len(), "exactly the expected count");
    for w in &expected {
        let g = got
            .iter()
            .map(value)
            .find(|g| g["sequence"] == w["sequence"] && g["event_type"] == w["event_type"])
            .unwrap_or_else(|| panic!("missing {w}"));
        same_value(&g, w);
    }
    // Nothing more than expected arrived.
    let more = std::panic::catch_unwind(|| testkit::consume(&t.topic, expected.len() + 1, Duration::from_secs(2)));
    assert!(more.is_err(), "more records than expected");
    let dead = testkit::consume(&t.dlq, 1, Duration::from_secs(30));
    let letter: DeadLetter = serde_json::from_slice(dead[0].payload().unwrap()).unwrap();
    assert!(letter.error.contains("`p` is not a number"), "{letter:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_recording_replays_to_the_same_records() {
    let polygon = PolygonHandle::new(PolygonConfig { api_key: "k".into(), ..PolygonConfig::default() });
    let sim = Sim::start("127.0.0.1:0".parse().unwrap(), polygon.router()).await.unwrap();
    let live = Topics::create().await;
    let rec = std::env::temp_dir().join(format!("{}.jsonl", testkit::unique_topic("rec")));
    let url = format!("ws://{}/stocks", sim.addr);
    let mut env: Vec<(&str, &str)> = vec![
        ("MARKET_API_KEY", "k"),
        ("MARKET_WS_URL", &url),
        ("FINSTREAM__MARKET__SYMBOLS", "AAPL,MSFT"),
        ("FINSTREAM__MARKET__SESSION", "always"),
    ];
    env.extend(live.env());
    let mut p = ProducerProcess::spawn_with_args(bin(), &["--record", rec.to_str().unwrap()], &env);
    testkit::wait_for(Duration::from_secs(30), "subscription", || {
        let pg = polygon.clone();
        async move { (pg.subscribed_connections() == 1).then_some(()) }
    })
    .await;
    polygon.push(r#"[{"ev":"Q","sym":"AAPL","bp":10.0,"bs":1,"ap":10.2,"as":2,"t":1704205800000,"q":1}]"#);
    polygon.push(r#"[{"ev":"T","sym":"AAPL","x":12,"i":"1","p":10.1,"s":5,"t":1704205800001,"q":2},{"ev":"T","sym":"MSFT","p":-1,"s":5,"t":1704205800002,"q":3}]"#);
    polygon.push_binary(&[0xff, 0x00]);
    let live_records = testkit::consume(&live.topic, 2, Duration::from_secs(30));
    testkit::consume(&live.dlq, 2, Duration::from_secs(30));
    assert_eq!(p.terminate(Duration::from_secs(20)), Some(0));

    let text = std::fs::read_to_string(&rec).unwrap();
    assert!(text.starts_with(r#"{"format":"finstream-ws-recording/1","provider":"polygon"}"#), "{text}");
    assert!(text.contains(r#"\"status\":\"connected\""#) && text.contains(r#""binary":"/wA=""#), "{text}");

    let replayed = replay(&rec).await;
    let again = testkit::consume(&replayed.topic, 2, Duration::from_secs(30));
    let key = |v: &Value| v["sequence"].as_u64();
    let mut a: Vec<Value> = live_records.iter().map(value).collect();
    let mut b: Vec<Value> = again.iter().map(value).collect();
    a.sort_by_key(key);
    b.sort_by_key(key);
    assert_eq!(a, b, "a replay reproduces the live records exactly, receive times included");
    let letters = testkit::consume(&replayed.dlq, 2, Duration::from_secs(30));
    assert_eq!(letters.len(), 2);
    let _ = std::fs::remove_file(rec);
}
