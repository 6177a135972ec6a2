//! Helpers shared by the providers' end-to-end tests.

use std::time::{Duration, Instant};

use ingest_core::kafka::admin::TopicToCreate;
use ingest_core::record::{EventKind, IngestEvent};
use ingest_core::testkit;
use rdkafka::message::{Message, OwnedMessage};
use serde_json::Value;

/// A test's own data, dead-letter, events and state topics, and its own instance id (the gap
/// repair's Kafka `transactional.id` and state are the test's alone).
pub(crate) struct Topics {
    pub(crate) topic: String,
    pub(crate) dlq: String,
    pub(crate) events: String,
    pub(crate) state: String,
    pub(crate) instance: String,
}

impl Topics {
    pub(crate) async fn create() -> Self {
        let stem = testkit::unique_topic("market");
        let t = Self {
            topic: format!("{stem}.raw"),
            dlq: format!("{stem}.dlq"),
            events: format!("{stem}.events"),
            state: format!("{stem}.state"),
            instance: stem.replace(|c: char| !c.is_ascii_alphanumeric(), "-"),
        };
        testkit::create_topics(&[
            TopicToCreate::new(&t.topic, 4),
            TopicToCreate::new(&t.dlq, 1),
            TopicToCreate::new(&t.events, 1),
            TopicToCreate::new(&t.state, 1),
        ])
        .await;
        t
    }

    /// The environment that points a producer at these topics.
    pub(crate) fn env(&self) -> [(&'static str, &str); 4] {
        [
            ("FINSTREAM__KAFKA__TOPICS__MARKET_TICKS__NAME", &self.topic),
            ("FINSTREAM__KAFKA__TOPICS__EVENTS__NAME", &self.events),
            ("FINSTREAM__KAFKA__TOPICS__STATE__NAME", &self.state),
            ("FINSTREAM__RUNTIME__INSTANCE_ID", &self.instance),
        ]
    }
}

pub(crate) fn value(m: &OwnedMessage) -> Value {
    serde_json::from_slice(m.payload().unwrap()).unwrap()
}

pub(crate) fn events_of(topic: &str, n: usize) -> Vec<IngestEvent> {
    testkit::consume(topic, n, Duration::from_secs(30))
        .iter()
        .map(|m| serde_json::from_slice(m.payload().unwrap()).unwrap())
        .collect()
}

/// Waits until the events topic holds an event of `kind` (and returns all events so far).
pub(crate) async fn wait_event(topic: &str, kind: EventKind, min_total: usize) -> Vec<IngestEvent> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut n = min_total;
    loop {
        let evs = events_of(topic, n);
        if evs.iter().any(|e| e.kind == kind) {
            return evs;
        }
        assert!(Instant::now() < deadline, "no {kind:?} event in {evs:#?}");
        n = evs.len() + 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// provider-sim over TLS (`wss://localhost:<port>`, `https://…`) with the test CA's certificate,
/// as the real providers serve; and the CA file the producer is told to trust
/// (`TLS_EXTRA_CA_FILE`).
pub(crate) async fn sim_tls(routes: axum::Router) -> (provider_sim::Sim, String) {
    let ca = provider_sim::tls::TestCa::get().expect("test CA (scripts/test-ca.sh)");
    let sim = provider_sim::Sim::start_tls("127.0.0.1:0".parse().unwrap(), routes, &ca.identity().expect("identity"))
        .await
        .expect("simulator");
    (sim, ca.ca_file().display().to_string())
}
