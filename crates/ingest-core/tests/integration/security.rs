//! TLS and SASL/SCRAM-SHA-512 against the real broker of `scripts/kafka.sh secure-up` (`make
//! test` starts it): SASL_SSL on localhost:$KAFKA_SECURE_PORT+1, a test CA, a SCRAM user with a
//! random password. Every client of ours goes through `kafka.security`: the producer, the admin
//! client that creates topics, and the consumer that restores polled sources' state.

use std::time::Duration;

use ingest_core::config::{KafkaConfig, KafkaSecurity, Secret};
use ingest_core::kafka::Sink;
use ingest_core::kafka::admin::{TopicToCreate, ensure_topics};
use ingest_core::kafka::read_committed_to_end;
use ingest_core::record::{MarketTick, TickType};
use ingest_core::telemetry::{Health, Metrics};
use ingest_core::testkit;
use tokio_util::sync::CancellationToken;

/// The secure broker, with the client settings and topics these tests use.
struct Secure(testkit::SecureBroker);

impl Secure {
    fn get() -> Self {
        Self(testkit::SecureBroker::get())
    }

    fn read(&self, f: &str) -> String {
        self.0.read(f)
    }

    fn cfg(&self, password: &str, ca: &str) -> KafkaConfig {
        KafkaConfig {
            brokers: format!("localhost:{}", self.0.sasl_port()),
            security: KafkaSecurity {
                protocol: "sasl_ssl".into(),
                sasl_username: self.read("sasl.user"),
                sasl_password: Secret::new(password),
                ssl_ca_location: self.0.ca(ca).display().to_string(),
                ..KafkaSecurity::default()
            },
            delivery_timeout_ms: 20_000,
            ..KafkaConfig::default()
        }
    }

    async fn topic(&self) -> String {
        let topic = testkit::unique_topic("secure");
        let plaintext = [("bootstrap.servers".to_string(), format!("127.0.0.1:{}", self.0.admin_port))];
        ensure_topics(&plaintext, 1, &[TopicToCreate::new(&topic, 2)]).await.unwrap();
        topic
    }
}

fn tick(n: u64) -> MarketTick<'static> {
    let ts = chrono::DateTime::from_timestamp_millis(1_704_205_800_000 + i64::try_from(n).unwrap()).unwrap();
    MarketTick {
        price: 100.0,
        volume: 1.0,
        ..MarketTick::new("AAPL".into(), TickType::Trade, ts, "polygon".into(), ts)
    }
}

fn sink(cfg: &KafkaConfig) -> (Sink, Metrics, Health) {
    let metrics = Metrics::new("itest-secure", "0");
    let health = Health::new("itest-secure", "0");
    let sink = Sink::new(cfg, "itest-secure", metrics.clone(), health.clone(), CancellationToken::new()).expect("sink");
    (sink, metrics, health)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_scram_over_tls_produces_creates_topics_and_restores_state() {
    let s = Secure::get();
    let cfg = s.cfg(&s.read("sasl.password"), "ca.pem");
    // The admin client authenticates too: a topic created through SASL_SSL.
    let topic = testkit::unique_topic("secure-admin");
    let created = ensure_topics(&cfg.connection_properties(), 1, &[TopicToCreate::new(&topic, 2)]).await.unwrap();
    assert_eq!(created, std::slice::from_ref(&topic));

    let (sink, _metrics, _health) = sink(&cfg);
    let route = sink.route_to::<MarketTick>(&topic, &format!("{topic}.dlq"), "polygon");
    for n in 0..25 {
        sink.send(&route, &tick(n), b"raw", &CancellationToken::new()).await.unwrap();
    }
    assert_eq!(sink.flush(Duration::from_secs(30)).await, 0, "all 25 acknowledged over SASL_SSL");
    // The state-restore consumer reads them back with the same settings.
    let mut read = 0;
    tokio::task::spawn_blocking(move || {
        read_committed_to_end(&cfg, &topic, Duration::from_secs(30), |_| read += 1).map(|()| read)
    })
    .await
    .unwrap()
    .map(|n| assert_eq!(n, 25))
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_refused_counted_and_never_shown() {
    let s = Secure::get();
    let topic = s.topic().await;
    let sentinel = "SENTINEL-wrong-password-5b1e";
    let cfg = s.cfg(sentinel, "ca.pem");
    let (sink, metrics, health) = sink(&cfg);
    let route = sink.route_to::<MarketTick>(&topic, &format!("{topic}.dlq"), "polygon");
    sink.send(&route, &tick(1), b"raw", &CancellationToken::new()).await.unwrap();
    let err = sink.check_kafka(Duration::from_secs(10)).await.unwrap_err();
    let errors = testkit::wait_for(Duration::from_secs(30), "an authentication error", || {
        let text = metrics.render();
        async move { text.contains("kind=\"Authentication\"").then_some(text) }
    })
    .await;
    assert_eq!(sink.flush(Duration::from_secs(2)).await, 1, "nothing delivered without authentication");
    let shown = [
        err.clone(),
        errors,
        serde_json::to_string(&health.readiness()).unwrap(),
        format!("{cfg:?}"),
        format!("{:?}", cfg.security),
    ];
    for text in &shown {
        assert!(!text.contains(sentinel), "the password leaked: {text}");
    }
    assert!(format!("{cfg:?}").contains("sasl_password: ***"), "{cfg:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_certificate_from_an_untrusted_ca_is_refused() {
    let s = Secure::get();
    let topic = s.topic().await;
    let cfg = s.cfg(&s.read("sasl.password"), "other-ca.pem");
    let (sink, metrics, _health) = sink(&cfg);
    let _route = sink.route_to::<MarketTick>(&topic, &format!("{topic}.dlq"), "polygon");
    assert!(sink.check_kafka(Duration::from_secs(10)).await.is_err());
    testkit::wait_for(Duration::from_secs(30), "a TLS error", || {
        let text = metrics.render();
        async move {
            text.lines()
                .any(|l| {
                    l.starts_with("producer_kafka_errors_total{kind=\"") && (l.contains("SSL") || l.contains("Ssl"))
                })
                .then_some(())
        }
    })
    .await;
}
