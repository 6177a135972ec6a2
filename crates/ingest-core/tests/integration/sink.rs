//! The sink against the real broker, read back by an independent consumer.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use ingest_core::config::KafkaConfig;
use ingest_core::kafka::admin::TopicToCreate;
use ingest_core::kafka::{Fsync, Outcome, Overflow, SendError, Sink, SinkError, SpoolSettings};
use ingest_core::record::{Code, DeadLetter, MarketTick, TickType};
use ingest_core::telemetry::{Health, Metrics};
use ingest_core::testkit::{self, header, java_partition};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use tokio_util::sync::CancellationToken;

fn sink_with(cfg: &KafkaConfig) -> (Sink, Metrics) {
    let metrics = Metrics::new("itest-producer", "0.0.0");
    let sink =
        Sink::new(cfg, "itest-producer", metrics.clone(), Health::new("itest-producer", "0"), CancellationToken::new())
            .expect("sink");
    (sink, metrics)
}

fn kafka_cfg() -> KafkaConfig {
    KafkaConfig { brokers: testkit::kafka_brokers(), ..KafkaConfig::default() }
}

fn tick(symbol: &str, seq: u64, price: f64) -> MarketTick<'static> {
    let ts = Utc.timestamp_millis_opt(1_704_205_800_000 + i64::try_from(seq).unwrap()).unwrap();
    MarketTick {
        price,
        volume: 100.0,
        bid_price: Some(price - 0.01),
        ask_price: Some(price + 0.01),
        exchange: Some("NASDAQ".into()),
        mic: Some("XNAS".into()),
        exchange_code: Some(Code::Int(12)),
        sequence: Some(seq),
        trade_id: Some(Code::Str(format!("t{seq}").into())),
        ..MarketTick::new(
            symbol.to_string().into(),
            TickType::Trade,
            ts,
            "polygon".into(),
            ts + chrono::Duration::milliseconds(3),
        )
    }
}

fn counter(metrics: &Metrics, name: &str, labels: &[(&str, &str)]) -> f64 {
    metrics
        .registry()
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric().to_vec())
        .filter(|m| labels.iter().all(|(k, v)| m.get_label().iter().any(|l| l.name() == *k && l.value() == *v)))
        .map(|m| m.get_counter().value())
        .sum()
}

#[tokio::test]
async fn records_arrive_with_value_key_headers_partition_and_order() {
    let topic = testkit::unique_topic("ticks");
    let dlq = format!("{topic}.dlq");
    testkit::create_topics(&[TopicToCreate::new(&topic, 16), TopicToCreate::new(&dlq, 1)]).await;
    // The seed's full header set; the shipped compact one is checked below.
    let (sink, metrics) = sink_with(&KafkaConfig { headers: "full".into(), ..kafka_cfg() });
    let route = sink.route_to::<MarketTick>(&topic, &dlq, "polygon");

    let symbols = ["AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "SPY"];
    let mut sent = Vec::new();
    for seq in 0..80u64 {
        let t = tick(symbols[(seq % 8) as usize], seq, 100.0 + seq as f64);
        let out = sink.send(&route, &t, b"raw frame", &CancellationToken::new()).await.expect("send");
        assert_eq!(out, Outcome::Enqueued);
        sent.push(t);
    }
    assert_eq!(sink.flush(Duration::from_secs(30)).await, 0, "everything acknowledged");

    let got = testkit::consume(&topic, sent.len(), Duration::from_secs(30));
    assert_eq!(got.len(), sent.len());
    let by_seq: HashMap<u64, &MarketTick<'_>> = sent.iter().map(|t| (t.sequence.unwrap(), t)).collect();
    let mut last_seq_per_symbol: HashMap<String, u64> = HashMap::new();
    let mut ordered = got.clone();
    ordered.sort_by_key(|m| (m.partition(), m.offset()));
    for m in &ordered {
        let value: MarketTick<'_> =
            serde_json::from_slice(m.payload().expect("payload")).expect("value is a market tick");
        let want = by_seq[&value.sequence.unwrap()];
        // Codes come back as strings ("12"); everything else field by field.
        assert_eq!(value.exchange_code, Some(Code::Str("12".into())));
        assert_eq!(&MarketTick { exchange_code: Some(Code::Int(12)), ..value.clone() }, want, "value round-trips");
        let key = std::str::from_utf8(m.key().expect("key")).unwrap();
        assert_eq!(key, want.symbol);
        assert_eq!(m.partition(), java_partition(key.as_bytes(), 16), "murmur2 partitioning like the Java client");
        assert_eq!(header(m, "producer").as_deref(), Some("itest-producer"));
        assert_eq!(header(m, "provider").as_deref(), Some("polygon"));
        assert_eq!(header(m, "schema").as_deref(), Some("market.tick/v1"));
        assert_eq!(header(m, "content-type").as_deref(), Some("application/json"));
        assert_eq!(header(m, "event_time"), Some(ingest_core::record::ts::to_string(want.timestamp)));
        assert_eq!(header(m, "received_at"), Some(ingest_core::record::ts::to_string(want.received_at)));
        let seq = value.sequence.unwrap();
        if let Some(prev) = last_seq_per_symbol.insert(value.symbol.to_string(), seq) {
            assert!(seq > prev, "per-key order kept: {} after {}", seq, prev);
        }
    }
    let partitions: std::collections::HashSet<i32> = got.iter().map(Message::partition).collect();
    assert!(partitions.len() > 1, "keys spread over partitions");
    assert_eq!(counter(&metrics, "producer_messages_sent_total", &[("topic", &topic)]), 80.0);
    assert_eq!(metrics.kafka_in_flight.get(), 0);
}

#[tokio::test]
async fn compact_headers_carry_the_schema_and_the_connection_epoch_only() {
    let topic = testkit::unique_topic("compact");
    let dlq = format!("{topic}.dlq");
    testkit::create_topics(&[TopicToCreate::new(&topic, 1), TopicToCreate::new(&dlq, 1)]).await;
    let (sink, _) = sink_with(&kafka_cfg());
    let mut route = sink.route_to::<MarketTick>(&topic, &dlq, "polygon");
    let none = CancellationToken::new();
    sink.send(&route, &tick("AAPL", 1, 100.0), b"raw", &none).await.expect("send");
    route.set_conn_epoch(7);
    sink.send(&route, &tick("AAPL", 2, 101.0), b"raw", &none).await.expect("send");
    assert_eq!(sink.flush(Duration::from_secs(30)).await, 0);
    let mut got = testkit::consume(&topic, 2, Duration::from_secs(30));
    got.sort_by_key(Message::offset);
    let names = |m: &rdkafka::message::OwnedMessage| -> Vec<String> {
        use rdkafka::message::Headers as _;
        m.headers().map_or_else(Vec::new, |h| h.iter().map(|h| h.key.to_string()).collect())
    };
    assert_eq!(names(&got[0]), ["schema"]);
    assert_eq!(names(&got[1]), ["schema", "conn_epoch"]);
    assert_eq!(header(&got[0], "schema").as_deref(), Some("market.tick/v1"));
    assert_eq!(header(&got[1], "conn_epoch").as_deref(), Some("7"));
}

#[tokio::test]
async fn invalid_records_are_dead_lettered_with_raw_payload_and_reason() {
    let topic = testkit::unique_topic("ticks");
    let dlq = format!("{topic}.dlq");
    testkit::create_topics(&[TopicToCreate::new(&topic, 4), TopicToCreate::new(&dlq, 1)]).await;
    let (sink, metrics) = sink_with(&kafka_cfg());
    let route = sink.route_to::<MarketTick>(&topic, &dlq, "polygon");

    let raw = br#"[{"ev":"T","sym":"MSFT","p":-1,"s":100,"t":1704205800000}]"#;
    let out = sink.try_send(&route, &tick("MSFT", 1, -1.0), raw).expect("dead-lettered, not an error");
    let Outcome::DeadLettered(reason) = out else { panic!("expected a dead letter, got {out:?}") };
    assert_eq!(reason.field, "price");
    // Input that never became a record (a parse failure), with bytes that are not UTF-8.
    sink.dead_letter(&route, &[0xff, 0x00, 0x7b], "malformed JSON at byte 0", Utc::now()).expect("dead letter");
    assert_eq!(sink.flush(Duration::from_secs(30)).await, 0);

    let got = testkit::consume(&dlq, 2, Duration::from_secs(30));
    let letters: Vec<DeadLetter> = got.iter().map(|m| serde_json::from_slice(m.payload().unwrap()).unwrap()).collect();
    assert_eq!(letters[0].raw, std::str::from_utf8(raw).unwrap());
    assert_eq!(letters[0].raw_encoding, "utf8");
    assert!(letters[0].error.contains("price") && letters[0].error.contains("-1"), "{}", letters[0].error);
    assert_eq!(
        (letters[0].topic.as_str(), letters[0].provider.as_str(), letters[0].producer.as_str()),
        (topic.as_str(), "polygon", "itest-producer")
    );
    assert_eq!((letters[1].raw.as_str(), letters[1].raw_encoding.as_str()), ("/wB7", "base64"));
    assert_eq!(letters[1].error, "malformed JSON at byte 0");
    for m in &got {
        assert_eq!(header(m, "schema").as_deref(), Some("ingest.dead_letter/v1"));
        assert_eq!(m.key(), Some(b"polygon".as_slice()));
    }
    assert_eq!(counter(&metrics, "producer_messages_failed_total", &[("topic", &topic), ("reason", "invalid")]), 2.0);
    assert_eq!(counter(&metrics, "producer_messages_sent_total", &[("topic", &dlq)]), 2.0);
    assert_eq!(counter(&metrics, "producer_messages_sent_total", &[("topic", &topic)]), 0.0);

    // Nothing reached the data topic.
    let consumer: BaseConsumer =
        rdkafka::ClientConfig::new().set("bootstrap.servers", testkit::kafka_brokers()).create().unwrap();
    for p in 0..4 {
        let (_, high) = consumer.fetch_watermarks(&topic, p, Duration::from_secs(10)).unwrap();
        assert_eq!(high, 0, "partition {p} of the data topic must be empty");
    }
}

#[tokio::test]
async fn readiness_check_reports_missing_topics_and_present_ones() {
    let topic = testkit::unique_topic("present");
    testkit::create_topics(&[TopicToCreate::new(&topic, 1), TopicToCreate::new(format!("{topic}.dlq"), 1)]).await;
    let (sink, _) = sink_with(&kafka_cfg());
    let _ok = sink.route_to::<MarketTick>(&topic, &format!("{topic}.dlq"), "polygon");
    let detail = sink.check_kafka(Duration::from_secs(10)).await.expect("topics exist");
    assert!(detail.contains("topic(s) present"), "{detail}");
    let missing = testkit::unique_topic("missing");
    let _bad = sink.route_to::<MarketTick>(&missing, &format!("{topic}.dlq"), "polygon");
    let err = sink.check_kafka(Duration::from_secs(10)).await.unwrap_err();
    assert!(err.contains(&missing), "{err}");
}

#[tokio::test]
async fn unreachable_kafka_fails_readiness_and_full_queue_applies_backpressure() {
    let cfg = KafkaConfig { brokers: "127.0.0.1:1".into(), queue_max_messages: 5, ..KafkaConfig::default() };
    let (sink, metrics) = sink_with(&cfg);
    let route = sink.route_to::<MarketTick>("nowhere.raw", "nowhere.dlq", "polygon");
    let err = sink.check_kafka(Duration::from_millis(500)).await.unwrap_err();
    assert!(err.contains("metadata request failed"), "{err}");
    for i in 0..5 {
        assert_eq!(sink.try_send(&route, &tick("AAPL", i, 1.0), b"").unwrap(), Outcome::Enqueued);
    }
    assert!(matches!(sink.try_send(&route, &tick("AAPL", 9, 1.0), b""), Err(SendError::QueueFull)));
    // A dead letter refused by the full queue is not counted as dead-lettered (it may be retried).
    assert!(matches!(sink.dead_letter(&route, b"x", "bad", Utc::now()), Err(SendError::QueueFull)));
    assert_eq!(counter(&metrics, "producer_messages_failed_total", &[("reason", "invalid")]), 0.0);
    // send() waits while full; when shutdown fires it gives up and counts it, never silently.
    let stop = CancellationToken::new();
    let waiter = {
        let (sink, stop) = (sink.clone(), stop.clone());
        tokio::spawn(async move {
            let route = sink.route_to::<MarketTick>("nowhere.raw", "nowhere.dlq", "polygon");
            sink.send(&route, &tick("AAPL", 10, 1.0), b"", &stop).await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished(), "send must wait while the queue is full");
    stop.cancel();
    assert!(matches!(waiter.await.unwrap(), Err(SendError::ShutDown)));
    assert_eq!(
        counter(&metrics, "producer_messages_failed_total", &[("topic", "nowhere.raw"), ("reason", "shutdown")]),
        1.0
    );
    // The blocking variant (WebSocket readers) gives up the same way once shutdown has come.
    let r = sink.wait_for_space_blocking(&route, &stop, || sink.try_send(&route, &tick("AAPL", 11, 1.0), b""));
    assert!(matches!(r, Err(SendError::ShutDown)));
    assert_eq!(
        counter(&metrics, "producer_messages_failed_total", &[("topic", "nowhere.raw"), ("reason", "shutdown")]),
        2.0
    );
    assert_eq!(sink.flush(Duration::from_millis(100)).await, 5, "unacknowledged records are reported, not hidden");
}

#[test]
fn refused_librdkafka_property_names_the_key_and_hides_the_value() {
    let mut cfg = kafka_cfg();
    cfg.properties.insert("no.such.property".into(), "hunter2-secret".into());
    let err =
        Sink::new(&cfg, "p", Metrics::new("p", "0"), Health::new("p", "0"), CancellationToken::new()).unwrap_err();
    let SinkError::Config(e) = err else { panic!("expected a config error") };
    assert_eq!(e.key.as_deref(), Some("kafka.properties.no.such.property"));
    assert!(!e.to_string().contains("hunter2"), "{e}");
}

/// A spooled sink to `brokers` with librdkafka's queue bounded to 500 records, spooling once the
/// queue has had no room for `engage_after`.
fn spooled_sink(
    brokers: &str,
    dir: &std::path::Path,
    engage_after: Duration,
) -> (Sink, ingest_core::kafka::Recovered, Metrics) {
    let cfg = KafkaConfig { brokers: brokers.into(), queue_max_messages: 500, ..KafkaConfig::default() };
    let settings = SpoolSettings {
        dir: dir.to_path_buf(),
        max_bytes: 64 << 20,
        segment_bytes: 1 << 20,
        fsync: Fsync::Never,
        overflow: Overflow::Block,
        engage_after,
    };
    let metrics = Metrics::new("itest-producer", "0.0.0");
    let health = Health::new("itest-producer", "0");
    let (sink, recovered) =
        Sink::spooled(&cfg, "itest-producer", settings, metrics.clone(), health, CancellationToken::new())
            .expect("spooled sink");
    (sink, recovered, metrics)
}

#[tokio::test]
async fn a_broker_taking_records_slows_the_source_and_only_one_taking_none_gets_the_spool() {
    const N: u64 = 20_000;
    let topic = testkit::unique_topic("pushback");
    testkit::create_topics(&[TopicToCreate::new(&topic, 4)]).await;
    let none = CancellationToken::new();
    // Reachable: 20,000 records through a 500-record queue. The queue is full most of the time,
    // but Kafka frees room long before 5 s: the sender waits and nothing touches the disk.
    let dir = testkit::unique_dir("pushback-spool");
    let (sink, _, metrics) = spooled_sink(&testkit::kafka_brokers(), &dir, Duration::from_secs(5));
    let route = sink.route_to::<MarketTick>(&topic, &format!("{topic}.dlq"), "polygon");
    for i in 0..N {
        assert_eq!(sink.send(&route, &tick("AAPL", i, 100.0), b"", &none).await.unwrap(), Outcome::Enqueued);
    }
    assert_eq!(sink.flush(Duration::from_secs(60)).await, 0);
    assert_eq!(counter(&metrics, "producer_spool_written_records_total", &[]), 0.0, "backpressure, not the spool");
    assert_eq!(counter(&metrics, "producer_messages_sent_total", &[]), N as f64);
    assert_eq!(testkit::consume(&topic, usize::try_from(N).unwrap(), Duration::from_secs(60)).len() as u64, N);
    let _ = sink.close_spool().await;
    let _ = std::fs::remove_dir_all(&dir);

    // Away: once the queue has had no room for `engage_after`, records go to the spool.
    let dir = testkit::unique_dir("away-spool");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let engage_after = Duration::from_millis(300);
    let (sink, _, metrics) = spooled_sink(&closed, &dir, engage_after);
    let route = sink.route_to::<MarketTick>(&topic, &format!("{topic}.dlq"), "polygon");
    for i in 0..500 {
        assert_eq!(sink.try_send(&route, &tick("AAPL", i, 100.0), b"").unwrap(), Outcome::Enqueued);
    }
    let full_at = std::time::Instant::now();
    assert!(matches!(sink.try_send(&route, &tick("AAPL", 500, 100.0), b""), Err(SendError::QueueFull)));
    let spooled = sink.send(&route, &tick("AAPL", 500, 100.0), b"", &none).await.unwrap();
    assert_eq!(spooled, Outcome::Enqueued);
    assert!(full_at.elapsed() >= engage_after, "spooled after {:?}", full_at.elapsed());
    assert_eq!(counter(&metrics, "producer_spool_written_records_total", &[]), 1.0);
    // From then on every record goes to the spool (order kept) without waiting.
    assert_eq!(sink.try_send(&route, &tick("AAPL", 501, 100.0), b"").unwrap(), Outcome::Enqueued);
    assert_eq!(counter(&metrics, "producer_spool_written_records_total", &[]), 2.0);
    let _ = sink.close_spool().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn records_in_the_client_at_a_shutdown_without_kafka_are_kept_and_sent_first_in_order() {
    const N: u64 = 3000;
    let topic = testkit::unique_topic("rescue");
    testkit::create_topics(&[TopicToCreate::new(&topic, 3)]).await;
    let dir = testkit::unique_dir("rescue-spool");
    // Kafka away: a port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    {
        let (sink, _, metrics) = spooled_sink(&closed, &dir, Duration::ZERO);
        let route = sink.route_to::<MarketTick>(&topic, &format!("{topic}.dlq"), "polygon");
        let symbols = ["AAPL", "MSFT", "NVDA", "TSLA", "AMZN"];
        for i in 0..N {
            let t = tick(symbols[(i % 5) as usize], i, 100.0);
            assert_eq!(sink.try_send(&route, &t, b"").unwrap(), Outcome::Enqueued);
        }
        // The first 500 sit in librdkafka's memory, the rest in the spool.
        assert_eq!(sink.flush(Duration::from_millis(300)).await, 500);
        let left = sink.close_spool().await.expect("a spool");
        assert_eq!((left.taken_back, left.lost, left.unacknowledged, left.unsent), (500, 0, 0, N), "{left:?}");
        assert_eq!(counter(&metrics, "producer_messages_failed_total", &[]), 0.0, "taken back, not failed");
        assert_eq!(sink.in_flight(), 0);
    }
    // The next process, with Kafka back: everything, once, in per-symbol order.
    let (sink, recovered, metrics) = spooled_sink(&testkit::kafka_brokers(), &dir, Duration::ZERO);
    assert_eq!(recovered.records, N, "{recovered:?}");
    let _route = sink.route_to::<MarketTick>(&topic, &format!("{topic}.dlq"), "polygon");
    let got = testkit::consume(&topic, usize::try_from(N).unwrap(), Duration::from_secs(60));
    let mut last: HashMap<String, u64> = HashMap::new();
    let mut seen = std::collections::HashSet::new();
    for m in &got {
        let t: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
        let (sym, seq) = (t["symbol"].as_str().unwrap().to_string(), t["sequence"].as_u64().unwrap());
        assert!(seen.insert(seq), "sequence {seq} delivered twice");
        let prev = last.insert(sym.clone(), seq);
        assert!(prev.is_none_or(|p| p < seq), "{sym}: {seq} after {prev:?}");
    }
    assert_eq!(seen.len() as u64, N);
    assert_eq!(sink.flush(Duration::from_secs(30)).await, 0);
    let left = sink.close_spool().await.unwrap();
    assert_eq!((left.unsent, left.unacknowledged, left.taken_back, left.lost), (0, 0, 0, 0), "{left:?}");
    assert_eq!(counter(&metrics, "producer_messages_sent_total", &[]), N as f64);
    let _ = std::fs::remove_dir_all(&dir);
}
