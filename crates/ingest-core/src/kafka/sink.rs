//! The Kafka sink: the only code that produces to Kafka.
//!
//! A source gets a typed [`Route`] per (record type, provider) once, then hands records to
//! [`Sink::send`] / [`Sink::try_send`]. The sink validates, serializes into a reused buffer,
//! attaches the headers of docs/contracts.md and enqueues into librdkafka; delivery reports (on
//! librdkafka's polling thread) update the metrics. Invalid input goes to the route's `.dlq`
//! topic with the raw payload and the reason. No future is awaited per record.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use prometheus::IntCounter;
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, PurgeConfig, ThreadedProducer};
use tokio_util::sync::CancellationToken;

use super::context::{MAX_ROUTES, RouteStats, RouteTable, SinkContext, pack_at, pack_spooled};
use super::spool::{Append, Entry, Next, Recovered, Spool, SpoolSettings, UncleanStop};
use crate::config::{ConfigError, KafkaConfig, Topics};
use crate::record::{DeadLetter, Record, TopicKind, ValidationError, ts};
use crate::telemetry::handles::RouteCounters;
use crate::telemetry::{Health, Metrics};

/// What happened to a record handed to the sink.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Enqueued for delivery; the delivery report will count it as sent or failed.
    Enqueued,
    /// Refused by validation; the raw input went to the dead-letter topic.
    DeadLettered(ValidationError),
}

/// Why the sink could not take a record.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// librdkafka's queue is full (Kafka slow or down): retry later. [`Sink::send`] waits.
    #[error("the Kafka producer queue is full")]
    QueueFull,
    /// Shutdown came while waiting for queue space; the record was given up and counted as
    /// failed with reason `shutdown`.
    #[error("gave up waiting for Kafka queue space at shutdown")]
    ShutDown,
    /// Kafka will never take this record (too large, unknown topic…); it was counted as failed
    /// with reason `rejected`.
    #[error("record rejected by the Kafka client: {0}")]
    Rejected(KafkaError),
    /// The record could not be serialized (a bug in a record type).
    #[error("cannot serialize record: {0}")]
    Serialize(#[from] serde_json::Error),
}

/// Why the sink could not start.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// A librdkafka property was refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The client could not be created.
    #[error("cannot create the Kafka producer: {0}")]
    Create(String),
    /// The outage spool could not be opened (unwritable directory, held by another process).
    #[error("cannot open the outage spool: {0}")]
    Spool(String),
}

/// What the outage spool still holds when the sink closes (sent by the next process that opens
/// the same spool, so not lost), and what could not be kept.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SpoolLeft {
    /// Records on disk not yet handed to Kafka's client (including those taken back).
    pub unsent: u64,
    /// Spooled records handed to Kafka's client but not acknowledged (sent again next time).
    pub unacknowledged: u64,
    /// Records taken back from Kafka's client (memory queue and in-flight requests) into the
    /// spool's front because Kafka did not acknowledge them before the shutdown timeout.
    pub taken_back: u64,
    /// Records held only in Kafka's client that could not be taken back: lost, and counted as
    /// failed (reason `delivery`) where their delivery report came.
    pub lost: u64,
}

/// Where records of one type from one provider go, with their metric handles resolved. Made by
/// [`Sink::route`] for a record type; sending another record type through it is a bug (checked
/// in debug builds).
pub struct Route {
    kind: TopicKind,
    index: usize,
    dlq_index: usize,
    topic: Arc<str>,
    dlq_topic: Arc<str>,
    provider: Arc<str>,
    invalid: IntCounter,
    rejected: IntCounter,
    abandoned: IntCounter,
    conn_epoch: Option<u64>,
}

impl fmt::Debug for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Route").field("topic", &self.topic).field("provider", &self.provider).finish_non_exhaustive()
    }
}

impl Route {
    /// The topic records go to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The topic dead letters go to.
    pub fn dlq_topic(&self) -> &str {
        &self.dlq_topic
    }

    /// The provider label.
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// Sets the `conn_epoch` header of the following records (WebSocket sources bump it on
    /// every reconnect).
    pub fn set_conn_epoch(&mut self, epoch: u64) {
        self.conn_epoch = Some(epoch);
    }
}

/// The Kafka sink. Cheap to clone; all clones share one producer.
#[derive(Clone)]
pub struct Sink {
    inner: Arc<Inner>,
}

struct Inner {
    producer: ThreadedProducer<SinkContext>,
    producer_name: String,
    topics: Topics,
    spool: Option<Arc<Spool>>,
    drainer: Mutex<Option<std::thread::JoinHandle<()>>>,
    unclean: Option<UncleanStop>,
}

/// First and longest sleep of [`Sink::wait_for_space`].
const FIRST_WAIT: Duration = Duration::from_millis(1);
const MAX_WAIT: Duration = Duration::from_millis(100);

fn give_up(route: &Route) -> SendError {
    route.abandoned.inc();
    SendError::ShutDown
}

impl fmt::Debug for Sink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sink").field("producer", &self.inner.producer_name).finish_non_exhaustive()
    }
}

/// The librdkafka properties of a config, in the order they are applied (later wins).
fn client_properties(cfg: &KafkaConfig, client_id: &str) -> Vec<(String, String)> {
    let mut p: Vec<(String, String)> = [
        // Same key -> partition mapping as the Java client, so Kafka Streams / Flink jobs that
        // join our topics with Java-produced ones see co-partitioned keys.
        ("partitioner", "murmur2_random".to_string()),
        ("client.id", if cfg.client_id.is_empty() { client_id.to_string() } else { cfg.client_id.clone() }),
        ("acks", cfg.acks.clone()),
        ("enable.idempotence", cfg.enable_idempotence.to_string()),
        ("compression.type", cfg.compression_type.clone()),
        ("linger.ms", cfg.linger_ms.to_string()),
        ("batch.size", cfg.batch_size_bytes.to_string()),
        ("message.timeout.ms", cfg.delivery_timeout_ms.to_string()),
        ("queue.buffering.max.messages", cfg.queue_max_messages.to_string()),
        ("queue.buffering.max.kbytes", cfg.queue_max_kbytes.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    p.extend(cfg.connection_properties());
    p.extend(cfg.properties.iter().map(|(k, v)| (k.clone(), v.clone())));
    p
}

/// The config key a librdkafka property came from, for error messages.
fn config_key_of(property: &str, cfg: &KafkaConfig) -> String {
    if cfg.properties.contains_key(property) {
        return format!("kafka.properties.{property}");
    }
    match property {
        "bootstrap.servers" => "kafka.brokers",
        "security.protocol" => "kafka.security.protocol",
        "sasl.mechanism" => "kafka.security.sasl_mechanism",
        "sasl.username" => "kafka.security.sasl_username",
        "sasl.password" => "kafka.security.sasl_password",
        "ssl.ca.location" => "kafka.security.ssl_ca_location",
        "ssl.certificate.location" => "kafka.security.ssl_certificate_location",
        "ssl.key.location" => "kafka.security.ssl_key_location",
        "ssl.key.password" => "kafka.security.ssl_key_password",
        "client.id" => "kafka.client_id",
        "acks" => "kafka.acks",
        "enable.idempotence" => "kafka.enable_idempotence",
        "compression.type" => "kafka.compression_type",
        "linger.ms" => "kafka.linger_ms",
        "batch.size" => "kafka.batch_size_bytes",
        "message.timeout.ms" => "kafka.delivery_timeout_ms",
        "queue.buffering.max.messages" => "kafka.queue_max_messages",
        "queue.buffering.max.kbytes" => "kafka.queue_max_kbytes",
        _ => "kafka.properties",
    }
    .to_string()
}

thread_local! {
    /// Serialization buffer, reused for every record sent from this thread.
    static BUF: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(4096));
}

/// A short header value formatted on the stack (headers need bytes, not a `String`).
struct StackStr {
    buf: [u8; 40],
    len: usize,
}

impl StackStr {
    fn of(v: impl fmt::Display) -> Self {
        let mut s = StackStr { buf: [0; 40], len: 0 };
        let _ = write!(s, "{v}");
        s
    }
    fn ts(t: DateTime<Utc>) -> Self {
        Self::of(ts::Rfc3339(t))
    }
    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl fmt::Write for StackStr {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        self.buf.get_mut(self.len..end).ok_or(fmt::Error)?.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// The headers (docs/contracts.md, Records) of one record, borrowed (at most 7).
struct Headers<'a> {
    items: [(&'static str, &'a [u8]); 7],
    len: usize,
}

impl<'a> Headers<'a> {
    fn push(&mut self, key: &'static str, value: &'a [u8]) {
        self.items[self.len] = (key, value);
        self.len += 1;
    }

    fn list(&self) -> &[(&'static str, &'a [u8])] {
        &self.items[..self.len]
    }

    fn owned(&self) -> OwnedHeaders {
        self.list().iter().fold(OwnedHeaders::new_with_capacity(self.len), |h, (key, value)| {
            h.insert(Header { key, value: Some(*value) })
        })
    }
}

/// A failed transaction call, classified as librdkafka classifies it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct TxError {
    /// What happened.
    pub message: String,
    /// The producer is unusable (fenced by a newer instance with the same `transactional.id`,
    /// or another fatal error): stop.
    pub fatal: bool,
    /// The transaction must be aborted before the producer can go on.
    pub requires_abort: bool,
}

impl From<KafkaError> for TxError {
    fn from(e: KafkaError) -> Self {
        match &e {
            KafkaError::Transaction(t) => {
                Self { message: e.to_string(), fatal: t.is_fatal(), requires_abort: t.txn_requires_abort() }
            }
            _ => Self { message: e.to_string(), fatal: false, requires_abort: true },
        }
    }
}

impl Sink {
    /// Creates the producer with the seed defaults and the config's overrides. Does not wait for
    /// the brokers: readiness reports whether they answer (see [`Sink::check_kafka`]).
    pub fn new(
        cfg: &KafkaConfig,
        producer_name: &str,
        metrics: Metrics,
        health: Health,
        fatal: CancellationToken,
    ) -> Result<Self, SinkError> {
        Self::build(cfg, producer_name, &[], metrics, health, fatal, None).map(|(sink, _)| sink)
    }

    /// A sink whose producer is transactional with `transactional_id` (one per instance of a
    /// polled source group; a newer producer with the same id fences this one). Call
    /// [`Sink::init_transactions`] before the first transaction.
    pub fn transactional(
        cfg: &KafkaConfig,
        producer_name: &str,
        transactional_id: &str,
        metrics: Metrics,
        health: Health,
        fatal: CancellationToken,
    ) -> Result<Self, SinkError> {
        // librdkafka requires message.timeout.ms <= transaction.timeout.ms; the broker's default
        // ceiling (transaction.max.timeout.ms) is 15 minutes.
        let extra = [
            ("transactional.id", transactional_id.to_string()),
            ("transaction.timeout.ms", cfg.delivery_timeout_ms.max(60_000).to_string()),
        ];
        Self::build(cfg, producer_name, &extra, metrics, health, fatal, None).map(|(sink, _)| sink)
    }

    /// A sink with an outage spool in `spool.dir`: once librdkafka's bounded queue is full (Kafka
    /// down or slow), records are appended to the spool and a drainer thread feeds them to Kafka
    /// in order as it takes them. Records a previous process left there are sent first. Records
    /// wait for Kafka without a deadline (`message.timeout.ms` 0 unless set in
    /// `kafka.properties`): the spool's bounds, not a timer, decide what is given up.
    pub fn spooled(
        cfg: &KafkaConfig,
        producer_name: &str,
        spool: SpoolSettings,
        metrics: Metrics,
        health: Health,
        fatal: CancellationToken,
    ) -> Result<(Self, Recovered), SinkError> {
        let mut extra = Vec::new();
        if !cfg.properties.contains_key("message.timeout.ms") {
            extra.push(("message.timeout.ms", "0".to_string()));
        }
        let (sink, recovered) = Self::build(cfg, producer_name, &extra, metrics, health, fatal, Some(spool))?;
        Ok((sink, recovered.unwrap_or_default()))
    }

    fn build(
        cfg: &KafkaConfig,
        producer_name: &str,
        extra: &[(&str, String)],
        metrics: Metrics,
        health: Health,
        fatal: CancellationToken,
        spool: Option<SpoolSettings>,
    ) -> Result<(Self, Option<Recovered>), SinkError> {
        let mut cc = ClientConfig::new();
        for (k, v) in client_properties(cfg, producer_name) {
            cc.set(k, v);
        }
        for (k, v) in extra {
            cc.set(*k, v);
        }
        let mut ctx = SinkContext::new(metrics.clone(), health, fatal);
        let spool = match spool {
            None => None,
            Some(settings) => {
                let dir = settings.dir.display().to_string();
                let (routes, m) = (ctx.routes.clone(), metrics);
                let resolve = Box::new(move |topic: &str, provider: &str| register(&routes, &m, topic, provider));
                let (spool, recovered) = Spool::open(settings, ctx.metrics.clone(), resolve)
                    .map_err(|e| SinkError::Spool(format!("{dir}: {e}")))?;
                if recovered.records > 0 || recovered.corrupt > 0 {
                    tracing::warn!(spool = %dir, records = recovered.records, bytes = recovered.bytes, corrupt = recovered.corrupt, "a previous process left records in the spool; sending them first");
                }
                let spool = Arc::new(spool);
                let _ = ctx.spool.set(spool.clone());
                ctx.unacked = Some(Mutex::default());
                Some((spool, recovered))
            }
        };
        let producer: ThreadedProducer<SinkContext> = cc.create_with_context(ctx).map_err(|e| match e {
            // Never print the value: it may be a password.
            KafkaError::ClientConfig(_, desc, key, _) => {
                SinkError::Config(ConfigError::key(config_key_of(&key, cfg), format!("refused by librdkafka: {desc}")))
            }
            other => SinkError::Create(other.to_string()),
        })?;
        let (spool, recovered) = spool.unzip();
        let inner = Arc::new(Inner {
            producer,
            producer_name: producer_name.into(),
            topics: cfg.topics.clone(),
            spool: spool.clone(),
            drainer: Mutex::new(None),
            unclean: recovered.as_ref().and_then(|r| r.unclean),
        });
        if let Some(spool) = spool {
            let drainer_inner = inner.clone();
            let handle = std::thread::Builder::new()
                .name("spool-drainer".into())
                .spawn(move || drain(&drainer_inner, &spool))
                .map_err(|e| SinkError::Spool(format!("cannot start the drainer thread: {e}")))?;
            *inner.drainer.lock().unwrap_or_else(PoisonError::into_inner) = Some(handle);
        }
        Ok((Self { inner }, recovered))
    }

    fn ctx(&self) -> &SinkContext {
        self.inner.producer.context()
    }

    fn topic_name(&self, kind: TopicKind) -> &str {
        let t = &self.inner.topics;
        match kind {
            TopicKind::MarketTicks => &t.market_ticks.name,
            TopicKind::NewsArticles => &t.news_articles.name,
            TopicKind::SocialPosts => &t.social_posts.name,
            TopicKind::SecFilings => &t.sec_filings.name,
            TopicKind::AltDataRecords => &t.altdata_records.name,
            TopicKind::Events => &t.events.name,
            TopicKind::State => &t.state.name,
        }
    }

    fn dlq_name(&self, kind: TopicKind) -> String {
        let t = &self.inner.topics;
        match kind {
            TopicKind::MarketTicks => t.market_ticks.dlq_name(),
            TopicKind::NewsArticles => t.news_articles.dlq_name(),
            TopicKind::SocialPosts => t.social_posts.dlq_name(),
            TopicKind::SecFilings => t.sec_filings.dlq_name(),
            TopicKind::AltDataRecords => t.altdata_records.dlq_name(),
            // An invalid lifecycle event is our bug, not bad input: it stays in the events
            // topic, recognisable by its `ingest.dead_letter/v1` schema header.
            TopicKind::Events => t.events.name.clone(),
            // A state record is ours and validated before it is built; it has no DLQ.
            TopicKind::State => t.state.name.clone(),
        }
    }

    fn register(&self, topic: &str, provider: &str) -> usize {
        register(&self.ctx().routes, &self.ctx().metrics, topic, provider)
    }

    /// The route for records of type `R` from `provider`, to `R::TOPIC` (and its `.dlq`).
    pub fn route<R: Record>(&self, provider: &str) -> Route {
        let topic = self.topic_name(R::TOPIC).to_string();
        self.route_to::<R>(&topic, &self.dlq_name(R::TOPIC), provider)
    }

    /// A route to explicitly named topics (tests with unique topics, custom deployments).
    pub fn route_to<R: Record>(&self, topic: &str, dlq_topic: &str, provider: &str) -> Route {
        let c = RouteCounters::new(&self.ctx().metrics, provider, topic);
        Route {
            kind: R::TOPIC,
            index: self.register(topic, provider),
            dlq_index: self.register(dlq_topic, provider),
            topic: topic.into(),
            dlq_topic: dlq_topic.into(),
            provider: provider.into(),
            invalid: c.invalid,
            rejected: c.rejected,
            abandoned: c.abandoned,
            conn_epoch: None,
        }
    }

    /// Validates `record` and enqueues it, or dead-letters `raw` (the provider's input it was
    /// made from) when validation fails. Never blocks; `Err(QueueFull)` means retry later.
    pub fn try_send<R: Record>(&self, route: &Route, record: &R, raw: &[u8]) -> Result<Outcome, SendError> {
        debug_assert_eq!(route.kind, R::TOPIC, "record sent through a route made for another record type");
        if let Err(e) = record.validate() {
            self.dead_letter(route, raw, &e.to_string(), record.received_at())?;
            return Ok(Outcome::DeadLettered(e));
        }
        BUF.with(|buf| {
            let mut buf = buf.borrow_mut();
            buf.clear();
            record.write_json(&mut buf)?;
            let event_time = StackStr::ts(record.event_time());
            let received_at = StackStr::ts(record.received_at());
            let epoch = route.conn_epoch.map(StackStr::of);
            let headers = self.headers(R::SCHEMA, record.provider(), &event_time, &received_at, epoch.as_ref());
            let key = record.key();
            let sent = self.enqueue(route.index, &route.topic, &route.provider, key.as_bytes(), &buf, &headers);
            match sent {
                Err(SendError::Rejected(KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge))) => {
                    // Too big for Kafka: keep it as a dead letter rather than lose it.
                    self.dead_letter(
                        route,
                        &buf,
                        "record larger than the Kafka message size limit",
                        record.received_at(),
                    )?;
                    Ok(Outcome::DeadLettered(ValidationError::new(
                        "record",
                        "larger than the Kafka message size limit",
                    )))
                }
                Err(SendError::Rejected(e)) => {
                    route.rejected.inc();
                    Err(SendError::Rejected(e))
                }
                other => other.map(|()| Outcome::Enqueued),
            }
        })
    }

    /// As [`Sink::try_send`], waiting while librdkafka's queue is full (backpressure: the source
    /// slows down to what Kafka takes). See [`Sink::wait_for_space`].
    pub async fn send<R: Record>(
        &self,
        route: &Route,
        record: &R,
        raw: &[u8],
        shutdown: &CancellationToken,
    ) -> Result<Outcome, SendError> {
        self.wait_for_space(route, shutdown, || self.try_send(route, record, raw)).await
    }

    /// Repeats `attempt` (a `try_send` or `dead_letter` through `route`) while librdkafka's
    /// queue is full, sleeping between tries. If `shutdown` fires first, the input is given up
    /// and counted as failed with reason `shutdown` (`SendError::ShutDown`): never silently.
    pub async fn wait_for_space<T>(
        &self,
        route: &Route,
        shutdown: &CancellationToken,
        mut attempt: impl FnMut() -> Result<T, SendError>,
    ) -> Result<T, SendError> {
        let mut wait = FIRST_WAIT;
        loop {
            match attempt() {
                Err(SendError::QueueFull) => {
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = shutdown.cancelled() => return Err(give_up(route)),
                    }
                    wait = (wait * 2).min(MAX_WAIT);
                }
                other => return other,
            }
        }
    }

    /// As [`Sink::wait_for_space`] for synchronous callers (a WebSocket session's frame
    /// handler): the thread waits, off the tokio worker ([`crate::blocking::off_worker`]: the
    /// worker's other tasks move on). librdkafka drains on its own thread, so this cannot
    /// deadlock; the caller stops reading its socket meanwhile, which pushes back on the
    /// provider.
    pub fn wait_for_space_blocking<T>(
        &self,
        route: &Route,
        shutdown: &CancellationToken,
        mut attempt: impl FnMut() -> Result<T, SendError>,
    ) -> Result<T, SendError> {
        match attempt() {
            Err(SendError::QueueFull) => {}
            other => return other,
        }
        crate::blocking::off_worker(|| {
            let mut wait = FIRST_WAIT / 20;
            loop {
                if shutdown.is_cancelled() {
                    return Err(give_up(route));
                }
                crate::blocking::thread_sleep(wait);
                wait = (wait * 2).min(MAX_WAIT / 10);
                match attempt() {
                    Err(SendError::QueueFull) => {}
                    other => return other,
                }
            }
        })
    }

    /// Writes `raw` (input that could not be parsed or validated) to the route's `.dlq` topic
    /// with `reason`, and, once enqueued, counts it as failed with reason `invalid`.
    pub fn dead_letter(
        &self,
        route: &Route,
        raw: &[u8],
        reason: &str,
        received_at: DateTime<Utc>,
    ) -> Result<(), SendError> {
        let letter =
            DeadLetter::new(&self.inner.producer_name, &route.provider, &route.topic, reason, raw, received_at);
        let payload = serde_json::to_vec(&letter)?;
        let now = StackStr::ts(Utc::now());
        let received = StackStr::ts(received_at);
        let epoch = route.conn_epoch.map(StackStr::of);
        let headers = self.headers(DeadLetter::SCHEMA, &route.provider, &now, &received, epoch.as_ref());
        // Counted once it is enqueued: a retried dead letter must not count twice.
        self.enqueue(
            route.dlq_index,
            &route.dlq_topic,
            &route.provider,
            route.provider.as_bytes(),
            &payload,
            &headers,
        )?;
        route.invalid.inc();
        Ok(())
    }

    fn headers<'a>(
        &'a self,
        schema: &'a str,
        provider: &'a str,
        event_time: &'a StackStr,
        received_at: &'a StackStr,
        conn_epoch: Option<&'a StackStr>,
    ) -> Headers<'a> {
        let mut h = Headers { items: [("", b""); 7], len: 0 };
        h.push("producer", self.inner.producer_name.as_bytes());
        h.push("provider", provider.as_bytes());
        h.push("schema", schema.as_bytes());
        h.push("content-type", b"application/json");
        h.push("event_time", event_time.as_bytes());
        h.push("received_at", received_at.as_bytes());
        if let Some(epoch) = conn_epoch {
            h.push("conn_epoch", epoch.as_bytes());
        }
        h
    }

    /// Hands a record to librdkafka, or to the spool when it is in use or librdkafka's queue is
    /// full. `Err(QueueFull)` means neither has room now.
    fn enqueue(
        &self,
        route: usize,
        topic: &str,
        provider: &str,
        key: &[u8],
        payload: &[u8],
        headers: &Headers<'_>,
    ) -> Result<(), SendError> {
        let Some(spool) = &self.inner.spool else { return self.produce(route, topic, key, payload, headers) };
        // Built (and the clock read) only when the spool takes the record, not per direct send.
        let entry =
            || Entry { ts_ms: Utc::now().timestamp_millis(), topic, provider, key, headers: headers.list(), payload };
        if spool.is_spooling()
            && let Some(done) = self.spool_append(spool, route, &entry(), true)
        {
            return done;
        }
        match self.produce(route, topic, key, payload, headers) {
            Err(SendError::QueueFull) => {
                self.spool_append(spool, route, &entry(), false).unwrap_or(Err(SendError::QueueFull))
            }
            other => other,
        }
    }

    /// Appends to the spool; `None` if `only_if_spooling` and it was drained meanwhile.
    fn spool_append(
        &self,
        spool: &Spool,
        route: usize,
        entry: &Entry<'_>,
        only_if_spooling: bool,
    ) -> Option<Result<(), SendError>> {
        match spool.append(route, entry, only_if_spooling) {
            Append::Written { dropped } => {
                if !dropped.is_empty() {
                    let routes = self.ctx().routes.read().unwrap_or_else(PoisonError::into_inner);
                    for (r, n) in dropped {
                        if let Some(stats) = routes.get(r) {
                            stats.overflow.inc_by(n);
                        }
                    }
                }
                Some(Ok(()))
            }
            Append::NotSpooling => None,
            Append::Full => Some(Err(SendError::QueueFull)),
            Append::TooLarge => {
                Some(Err(SendError::Rejected(KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge))))
            }
        }
    }

    fn produce(
        &self,
        route: usize,
        topic: &str,
        key: &[u8],
        payload: &[u8],
        headers: &Headers<'_>,
    ) -> Result<(), SendError> {
        let ctx = self.ctx();
        let us = ctx.now_us();
        let rec =
            BaseRecord::with_opaque_to(topic, pack_at(route, us)).key(key).payload(payload).headers(headers.owned());
        ctx.metrics.kafka_in_flight.inc();
        ctx.note_handed(us);
        match self.inner.producer.send(rec) {
            Ok(()) => Ok(()),
            Err((e, _)) => {
                ctx.metrics.kafka_in_flight.dec();
                ctx.note_settled(us);
                match e {
                    KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull) => Err(SendError::QueueFull),
                    other => Err(SendError::Rejected(other)),
                }
            }
        }
    }

    /// Test hook (feature `testkit`): makes librdkafka raise a fatal error on this producer
    /// through its own `rd_kafka_test_fatal_error`, which exists because real fatal errors of
    /// the idempotent producer cannot be provoked on demand. Everything after (the error event,
    /// our callback, health, exit) is the production path.
    #[cfg(feature = "testkit")]
    #[allow(unsafe_code, reason = "FFI call into librdkafka's test hook")]
    pub fn inject_fatal_error(&self, reason: &str) {
        let reason = std::ffi::CString::new(reason).unwrap_or_default();
        let code = rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER;
        // SAFETY: the client pointer is valid while `self` holds the producer, and `reason` is a
        // NUL-terminated string that outlives the call (librdkafka copies it).
        unsafe {
            rdkafka::bindings::rd_kafka_test_fatal_error(
                self.inner.producer.client().native_ptr(),
                code,
                reason.as_ptr(),
            );
        }
    }

    /// If librdkafka is in a fatal state (the producer is unusable: fenced, out-of-order
    /// sequence, …), records it in health, fires the fatal token (the runtime exits 1) and
    /// returns the error.
    pub fn check_fatal(&self) -> Option<String> {
        let (code, reason) = self.inner.producer.client().fatal_error()?;
        let message = format!("fatal Kafka error ({code:?}): {reason}");
        if !self.ctx().fatal.is_cancelled() {
            tracing::error!(error = %message, "the Kafka producer is unusable; stopping");
        }
        self.ctx().health.set_fatal(message.clone());
        self.ctx().fatal.cancel();
        Some(message)
    }

    /// Resolves at the next client error reported by librdkafka (or at once if one came since
    /// the last call).
    pub async fn client_error(&self) {
        self.ctx().errors.notified().await;
    }

    async fn blocking<T: Send + 'static>(
        &self,
        call: impl FnOnce(&ThreadedProducer<SinkContext>) -> Result<T, KafkaError> + Send + 'static,
    ) -> Result<T, TxError> {
        let sink = self.clone();
        tokio::task::spawn_blocking(move || call(&sink.inner.producer))
            .await
            .map_err(|e| TxError {
                message: format!("transaction call panicked: {e}"),
                fatal: true,
                requires_abort: false,
            })?
            .map_err(TxError::from)
    }

    /// Registers the `transactional.id` with the coordinator, completing or aborting whatever
    /// a previous instance left open, and fencing that instance.
    pub async fn init_transactions(&self, timeout: Duration) -> Result<(), TxError> {
        self.blocking(move |p| p.init_transactions(timeout)).await
    }

    /// Starts a transaction (local; no network round trip).
    pub fn begin_transaction(&self) -> Result<(), TxError> {
        self.inner.producer.begin_transaction().map_err(TxError::from)
    }

    /// Flushes and commits the current transaction.
    pub async fn commit_transaction(&self, timeout: Duration) -> Result<(), TxError> {
        self.blocking(move |p| p.commit_transaction(timeout)).await
    }

    /// Aborts the current transaction: its records become invisible to `read_committed` readers.
    pub async fn abort_transaction(&self, timeout: Duration) -> Result<(), TxError> {
        self.blocking(move |p| p.abort_transaction(timeout)).await
    }

    /// Records handed to librdkafka and not yet acknowledged or failed.
    pub fn in_flight(&self) -> i32 {
        self.inner.producer.in_flight_count()
    }

    /// Waits up to `timeout` for every enqueued record to be acknowledged or to fail. Returns
    /// the number still in flight when it gave up (0 = all settled).
    /// With a spool, first waits for the spool to be handed to librdkafka.
    pub async fn flush(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        if let Some(spool) = &self.inner.spool {
            while !spool.drained() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        let sink = self.clone();
        let res = tokio::task::spawn_blocking(move || {
            let _ = sink.inner.producer.flush(deadline.saturating_duration_since(Instant::now()));
            sink.in_flight()
        })
        .await;
        usize::try_from(res.unwrap_or(i32::MAX)).unwrap_or(0)
    }

    /// Stops the spool's drainer and saves its cursor (after [`Sink::flush`], at shutdown).
    /// Records Kafka has still not acknowledged are then taken back from librdkafka (purged from
    /// its queue and in-flight requests) and written, in the order they were handed to it, to
    /// the spool's front, so the next process sends them first and in order (a purged in-flight
    /// record may have reached the broker: at-least-once, as for spooled records). Returns what
    /// the spool holds and what could not be kept; `None` without a spool.
    pub async fn close_spool(&self) -> Option<SpoolLeft> {
        let spool = self.inner.spool.clone()?;
        spool.close();
        let handle = self.inner.drainer.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(h) = handle {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
        spool.checkpoint();
        let sink = self.clone();
        let held = usize::try_from(self.in_flight()).unwrap_or(0);
        let spooled = spool.in_flight();
        let direct = held.saturating_sub(spooled) as u64;
        let (taken_back, lost) = if held == 0 {
            (0, 0)
        } else {
            let s = spool.clone();
            tokio::task::spawn_blocking(move || sink.take_back(&s, direct)).await.unwrap_or((0, direct))
        };
        Some(SpoolLeft { unsent: spool.unread(), unacknowledged: spool.in_flight() as u64, taken_back, lost })
    }

    /// Purges librdkafka's queues into the spool's front (see [`Sink::close_spool`]). `direct`
    /// records are held only in librdkafka's memory. Returns (taken back, lost).
    fn take_back(&self, spool: &Spool, direct: u64) -> (u64, u64) {
        const SERVE: Duration = Duration::from_secs(2);
        let ctx = self.ctx();
        *ctx.rescue.lock().unwrap_or_else(PoisonError::into_inner) = Some(Vec::new());
        self.inner.producer.purge(PurgeConfig::default().queue().inflight());
        let deadline = Instant::now() + SERVE;
        while self.in_flight() > 0 && Instant::now() < deadline {
            let _ = self.inner.producer.flush(Duration::from_millis(50));
        }
        let mut taken = ctx.rescue.lock().unwrap_or_else(PoisonError::into_inner).take().unwrap_or_default();
        // Stable: equal hand-off times keep the order librdkafka reported them in.
        taken.sort_by_key(|r| r.order);
        let taken_direct = taken.iter().filter(|r| r.spooled_seq.is_none()).count() as u64;
        match spool.rescue(&taken) {
            Ok(n) => {
                tracing::warn!(
                    records = n,
                    dir = %spool.dir().display(),
                    "Kafka did not acknowledge these records before the shutdown timeout; they were taken back from the client into the spool and are sent first at the next start"
                );
                (n, direct.saturating_sub(taken_direct))
            }
            Err(e) => {
                tracing::error!(error = %e, records = taken_direct, "could not move unacknowledged records into the spool; they are lost and counted as failed");
                let routes = ctx.routes.read().unwrap_or_else(PoisonError::into_inner);
                for r in taken.iter().filter(|r| r.spooled_seq.is_none()) {
                    if let Some(stats) = routes.get(r.route) {
                        stats.failed_delivery.inc();
                    }
                }
                (0, direct)
            }
        }
    }

    /// If the previous process using this sink's spool died without a clean stop: since when
    /// records it held only in memory may be lost. Streaming sources publish the window from
    /// then to their first subscription as a gap.
    pub fn unclean_stop(&self) -> Option<UncleanStop> {
        self.inner.unclean
    }

    /// True once any broker answered one of [`Sink::check_kafka`]'s metadata requests.
    pub fn broker_answered(&self) -> bool {
        self.ctx().answered.load(Ordering::Acquire)
    }

    /// Asks the brokers for metadata and checks that every routed topic exists. Updates health
    /// and returns the outcome.
    pub async fn check_kafka(&self, timeout: Duration) -> Result<String, String> {
        let sink = self.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let md = sink
                .inner
                .producer
                .client()
                .fetch_metadata(None, timeout)
                .map_err(|e| format!("metadata request failed: {e}"))?;
            sink.ctx().answered.store(true, Ordering::Release);
            let wanted: Vec<String> = {
                let routes = sink.ctx().routes.read().unwrap_or_else(PoisonError::into_inner);
                let mut t: Vec<String> = routes.iter().map(|r| r.topic.clone()).collect();
                t.sort();
                t.dedup();
                t
            };
            let missing: Vec<&str> = wanted
                .iter()
                .filter(|w| !md.topics().iter().any(|t| t.name() == w.as_str() && t.error().is_none()))
                .map(String::as_str)
                .collect();
            if missing.is_empty() {
                Ok(format!("{} broker(s), {} topic(s) present", md.brokers().len(), wanted.len()))
            } else {
                Err(format!("missing topics: {}", missing.join(", ")))
            }
        })
        .await
        .unwrap_or_else(|e| Err(format!("check panicked: {e}")));
        match &outcome {
            Ok(d) => self.ctx().health.set_kafka(true, d.clone()),
            Err(d) => self.ctx().health.set_kafka(false, d.clone()),
        }
        outcome
    }
}

fn register(routes: &RouteTable, m: &Metrics, topic: &str, provider: &str) -> usize {
    let mut routes = routes.write().unwrap_or_else(PoisonError::into_inner);
    if let Some(i) = routes.iter().position(|r| r.topic == topic && r.provider == provider) {
        return i;
    }
    assert!(routes.len() < MAX_ROUTES, "too many Kafka routes");
    let c = RouteCounters::new(m, provider, topic);
    routes.push(RouteStats {
        topic: topic.to_string(),
        provider: provider.to_string(),
        sent: c.sent,
        failed_delivery: c.failed_delivery,
        latency: c.latency,
        rejected: c.rejected,
        overflow: c.overflow,
    });
    routes.len() - 1
}

/// The spool's drainer thread: takes spooled records in order and hands them to librdkafka,
/// waiting while its queue is full (Kafka still away); checkpoints the spool every 100 ms.
fn drain(inner: &Inner, spool: &Spool) {
    const TICK: Duration = Duration::from_millis(100);
    let ctx = inner.producer.context();
    let mut last = Instant::now();
    let mut beats = 0u32;
    let mut checkpoint = |last: &mut Instant| {
        if last.elapsed() >= TICK {
            spool.checkpoint();
            *last = Instant::now();
            beats += 1;
            if beats.is_multiple_of(5) {
                spool.heartbeat(ctx.oldest_unacked_ms());
            }
        }
    };
    loop {
        checkpoint(&mut last);
        let rec = match spool.next(TICK) {
            Next::Closed => break,
            Next::Idle => continue,
            Next::Record(r) => r,
        };
        let seq = spool.begin_at(rec.seg, rec.end, rec.ts_ms, ctx.now_us());
        let headers = rec.headers.iter().fold(OwnedHeaders::new_with_capacity(rec.headers.len()), |h, (key, value)| {
            h.insert(Header { key, value: Some(value) })
        });
        let mut record = BaseRecord::with_opaque_to(&rec.topic, pack_spooled(rec.route, seq))
            .key(&rec.key)
            .payload(&rec.payload)
            .headers(headers);
        let mut wait = Duration::from_millis(1);
        loop {
            ctx.metrics.kafka_in_flight.inc();
            match inner.producer.send(record) {
                Ok(()) => break,
                Err((e, back)) => {
                    ctx.metrics.kafka_in_flight.dec();
                    if matches!(e, KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) {
                        // Given back unsent if closed now: the next process sends it.
                        if spool.is_closed() {
                            spool.untake(&rec, seq);
                            break;
                        }
                        checkpoint(&mut last);
                        crate::blocking::sleep(wait);
                        wait = (wait * 2).min(Duration::from_millis(50));
                        record = back;
                        continue;
                    }
                    spool.settle(seq);
                    let routes = ctx.routes.read().unwrap_or_else(PoisonError::into_inner);
                    if let Some(stats) = routes.get(rec.route) {
                        stats.rejected.inc();
                    }
                    tracing::error!(topic = %rec.topic, error = %e, "Kafka refused a spooled record; counted as failed (rejected)");
                    break;
                }
            }
        }
    }
    spool.checkpoint();
}
