//! The Kafka sink: the only code that produces to Kafka.
//!
//! A source gets a typed [`Route`] per (record type, provider) once, then hands records to
//! [`Sink::send`] / [`Sink::try_send`]. The sink validates, serializes into a reused buffer,
//! attaches the headers of docs/contracts.md and enqueues into librdkafka; delivery reports (on
//! librdkafka's polling thread) update the metrics. Invalid input goes to the route's `.dlq`
//! topic with the raw payload and the reason. No future is awaited per record.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use prometheus::IntCounter;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use tokio_util::sync::CancellationToken;

use self::headers::{BUF, Headers, StackStr};
use self::spooled::drain;
pub use self::tx::{TxError, TxSink, until_done};
use super::context::{MAX_ROUTES, RouteStats, RouteTable, SinkContext, pack_at};
use super::spool::{Entry, Recovered, Spool, SpoolSettings, UncleanStop};
use crate::config::{ConfigError, KafkaConfig, Topics};
use crate::record::{DeadLetter, IngestEvent, Record, TopicKind, ValidationError};
use crate::telemetry::handles::RouteCounters;
use crate::telemetry::{Health, Metrics};

mod client;
mod headers;
mod spooled;
mod status;
mod tx;

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
    /// `kafka.headers: full`: the five headers beyond `schema` and `conn_epoch` too.
    full_headers: bool,
    spool: Option<Arc<Spool>>,
    drainer: Mutex<Option<std::thread::JoinHandle<()>>>,
    unclean: Option<UncleanStop>,
    /// With a spool: how long librdkafka's queue may stay full before records are spooled.
    engage_after_us: u64,
    /// When (µs since the sink's epoch, at least 1) a send last found librdkafka's queue full
    /// with no send succeeding since; 0 while sends succeed.
    full_since_us: AtomicU64,
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

    pub(super) fn build(
        cfg: &KafkaConfig,
        producer_name: &str,
        extra: &[(&str, String)],
        metrics: Metrics,
        health: Health,
        fatal: CancellationToken,
        spool: Option<SpoolSettings>,
    ) -> Result<(Self, Option<Recovered>), SinkError> {
        let mut ctx = SinkContext::new(metrics.clone(), health, fatal);
        let engage_after_us =
            spool.as_ref().map_or(0, |s| u64::try_from(s.engage_after.as_micros()).unwrap_or(u64::MAX));
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
        let producer = client::create(cfg, producer_name, extra, ctx)?;
        let (spool, recovered) = spool.unzip();
        let inner = Arc::new(Inner {
            producer,
            producer_name: producer_name.into(),
            topics: cfg.topics.clone(),
            full_headers: cfg.headers == "full",
            spool: spool.clone(),
            drainer: Mutex::new(None),
            unclean: recovered.as_ref().and_then(|r| r.unclean),
            engage_after_us,
            full_since_us: AtomicU64::new(0),
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

    /// Publishes a lifecycle event on `ingest.events`, best effort: never blocks, and a full
    /// queue is logged (the event's log line and counters have happened already).
    pub fn publish_event(&self, event: &IngestEvent) {
        let route = self.route::<IngestEvent>(&event.provider);
        if let Err(error) = self.try_send(&route, event, b"") {
            tracing::warn!(%error, kind = ?event.kind, "could not publish lifecycle event");
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
            // Formatted only for `kafka.headers: full`.
            let times = self
                .inner
                .full_headers
                .then(|| (StackStr::ts(record.event_time()), StackStr::ts(record.received_at())));
            let epoch = route.conn_epoch.map(StackStr::of);
            let headers = self.headers(R::SCHEMA, record.provider(), times.as_ref(), epoch.as_ref());
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
        let times = self.inner.full_headers.then(|| (StackStr::ts(Utc::now()), StackStr::ts(received_at)));
        let epoch = route.conn_epoch.map(StackStr::of);
        let headers = self.headers(DeadLetter::SCHEMA, &route.provider, times.as_ref(), epoch.as_ref());
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

    /// Hands a record to librdkafka, or to the spool when it is in use or librdkafka's queue has
    /// had no room for `engage_after`. `Err(QueueFull)` means the caller should wait and retry:
    /// librdkafka's queue is full but Kafka was taking records moments ago (backpressure), or
    /// the spool is full too.
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
            Ok(()) => {
                if self.inner.full_since_us.load(Ordering::Relaxed) != 0 {
                    self.inner.full_since_us.store(0, Ordering::Relaxed);
                }
                Ok(())
            }
            Err(SendError::QueueFull) if !self.queue_stalled() => Err(SendError::QueueFull),
            Err(SendError::QueueFull) => {
                self.spool_append(spool, route, &entry(), false).unwrap_or(Err(SendError::QueueFull))
            }
            other => other,
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

impl crate::telemetry::events::EventSink for Sink {
    fn producer(&self) -> &str {
        &self.inner.producer_name
    }
    fn publish(&self, event: &IngestEvent) {
        self.publish_event(event);
    }
}
