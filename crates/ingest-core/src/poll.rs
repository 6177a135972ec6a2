//! Polled sources, exactly once (docs/contracts.md, Delivery).
//!
//! A [`PollGroup`] runs one or more [`Poller`]s that share a durable state: their cursors and
//! one dedup window, stored in the compacted `ingest.state` topic under the group's key. Every
//! poll's records, its dead letters and the group's new state are written in **one Kafka
//! transaction** by a producer whose `transactional.id` belongs to the group (the approach of
//! Kafka Connect's exactly-once source connectors, KIP-618):
//!
//! 1. At start, `init_transactions` completes or aborts whatever a previous instance left open
//!    and fences it: a zombie with the same id can no longer commit.
//! 2. The state is restored with a `read_committed` consumer that reads `ingest.state` up to the
//!    high watermark seen at start, so it is exactly the state of the last committed poll.
//! 3. Each poll: fetch → classify → pure `normalize` (outside any lock) → under the group lock:
//!    begin, send every record whose key the window has not seen, dead letters, the new state,
//!    commit. A failed commit is aborted and the poll retried from the old cursor; the in-memory
//!    state only advances after a successful commit.
//!
//! So a `kill -9` at any point is followed by a restart that neither repeats nor skips, for
//! `read_committed` consumers. Pollers that can see the same item (NewsAPI and Alpha Vantage
//! reporting one story; the EDGAR feed and the submissions API reporting one filing) belong in
//! one group, so the shared window makes them one record.
//!
//! Around the transaction, per provider: a token-bucket rate limit and an optional daily quota
//! shared by the provider's pollers; per poller: a circuit breaker, retries with jittered
//! backoff, `Retry-After`, body caps, and `producer_api_calls_total` by outcome.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Utc};
use futures::future::BoxFuture;
use rand::RngExt;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::KafkaConfig;
use crate::http::{self, FetchError, HttpConfig};
use crate::kafka::{Outcome, Route, SendError, Sink, SinkError, TxError};
use crate::record::{EventKind, IngestEvent, Record, SourceState};
use crate::resilience::{Backoff, BackoffConfig, BreakerConfig, BreakerState, CircuitBreaker, ErrorClass, RateLimiter};
use crate::source::{FatalError, Normalized, Poller, Reject, Source, SourceCtx};
use crate::telemetry::metrics::REASON_ABORTED;

/// Settings of one poller's loop.
#[derive(Debug, Clone)]
pub struct PollSettings {
    /// HTTP client settings.
    pub http: HttpConfig,
    /// Requests per second to this provider (sustained), shared by its pollers in the group
    /// (by those with the same `limit_key`, when set).
    pub rate_per_second: f64,
    /// Burst of the rate limit.
    pub rate_burst: u32,
    /// Requests per UTC day to this provider (`None`: no quota), shared like the rate limit.
    pub daily_quota: Option<u32>,
    /// Backoff between retries of a failed poll.
    pub backoff: BackoffConfig,
    /// Breaker of this poller.
    pub breaker: BreakerConfig,
    /// Random share of the interval added or removed, in [0, 1).
    pub interval_jitter: f64,
    /// What shares the rate limit and quota: pollers of the group with the same key (`None`: the
    /// provider name). The altdata producer keys by site host, so one site's pages do not hold
    /// back another site.
    pub limit_key: Option<String>,
}

impl Default for PollSettings {
    fn default() -> Self {
        Self {
            http: HttpConfig::default(),
            rate_per_second: 1.0,
            rate_burst: 1,
            daily_quota: None,
            backoff: BackoffConfig::default(),
            breaker: BreakerConfig::default(),
            interval_jitter: 0.1,
            limit_key: None,
        }
    }
}

/// Settings of a group's durable state.
#[derive(Debug, Clone)]
pub struct GroupSettings {
    /// The producer's `transactional.id`. One per running instance of the group: a second
    /// process started with the same id fences the first.
    pub transactional_id: String,
    /// Keys remembered for dedup (oldest forgotten first).
    pub dedup_window: usize,
    /// How long a commit (flush included) may take before it is retried or aborted.
    pub commit_timeout: Duration,
    /// How long restoring the state may take at start (open transactions of other writers hold
    /// `read_committed` readers back until they end or time out).
    pub restore_timeout: Duration,
    /// How long a source the provider refused (401/403 for that resource) waits before it tries
    /// again.
    pub refused_retry: Duration,
    /// How long a source whose configured name the provider does not know (404) waits before it
    /// tries again.
    pub missing_retry: Duration,
}

impl GroupSettings {
    /// Defaults for `transactional_id`: a 10,000-key window, 30 s commits, 180 s restore, a
    /// refused source retried after 5 min, an unknown name after 15 min.
    pub fn new(transactional_id: impl Into<String>) -> Self {
        Self {
            transactional_id: transactional_id.into(),
            dedup_window: 10_000,
            commit_timeout: Duration::from_secs(30),
            restore_timeout: Duration::from_secs(180),
            refused_retry: Duration::from_secs(300),
            missing_retry: Duration::from_secs(900),
        }
    }
}

/// Bounded set of delivered keys, oldest evicted first. Keys are kept as 64-bit FNV-1a hashes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DedupWindow {
    capacity: usize,
    order: VecDeque<u64>,
    set: HashSet<u64>,
}

impl DedupWindow {
    /// An empty window of `capacity` keys (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self { capacity: capacity.max(1), order: VecDeque::new(), set: HashSet::new() }
    }

    /// The hash a key is remembered by.
    pub fn hash(key: &str) -> u64 {
        key.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
    }

    /// Whether `key` was seen.
    pub fn contains(&self, key: &str) -> bool {
        self.set.contains(&Self::hash(key))
    }

    /// Remembers `key`; returns false if it was already there.
    pub fn insert(&mut self, key: &str) -> bool {
        self.insert_hash(Self::hash(key))
    }

    fn insert_hash(&mut self, h: u64) -> bool {
        if !self.set.insert(h) {
            return false;
        }
        self.order.push_back(h);
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }

    /// Keys remembered.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The window as stored in `ingest.state`: 16-digit hex hashes, oldest first.
    pub fn to_hex(&self) -> Vec<String> {
        self.order.iter().map(|h| format!("{h:016x}")).collect()
    }

    /// Restores a stored window (the newest `capacity` entries if the capacity shrank).
    pub fn from_hex(capacity: usize, hashes: &[String]) -> Result<Self, String> {
        let mut w = Self::new(capacity);
        for h in hashes {
            w.insert_hash(u64::from_str_radix(h, 16).map_err(|_| format!("`{h}` is not a hex hash"))?);
        }
        Ok(w)
    }
}

/// Requests per UTC day to one provider.
#[derive(Debug)]
struct Quota {
    limit: u32,
    day: NaiveDate,
    used: u32,
}

impl Quota {
    /// Takes one request, or says how long until the next UTC midnight.
    fn take(&mut self, now: DateTime<Utc>) -> Result<(), Duration> {
        let today = now.date_naive();
        if today != self.day {
            (self.day, self.used) = (today, 0);
        }
        if self.used < self.limit {
            self.used += 1;
            return Ok(());
        }
        let midnight = today.succ_opt().and_then(|d| d.and_hms_opt(0, 0, 0)).map(|t| t.and_utc());
        Err(midnight.and_then(|m| (m - now).to_std().ok()).unwrap_or(Duration::from_secs(3600)))
    }
}

/// What a provider's pollers share.
#[derive(Debug)]
struct ProviderLimits {
    limiter: RateLimiter,
    quota: Option<Mutex<Quota>>,
}

/// A poller with its settings, type-erased so one group holds pollers of different types.
trait Member: Send {
    fn name(&self) -> &str;
    fn run(
        self: Box<Self>,
        group: Arc<Shared>,
        cursor: Option<serde_json::Value>,
        ctx: SourceCtx,
    ) -> BoxFuture<'static, Result<(), FatalError>>;
}

struct Polled<P: Poller> {
    poller: P,
    settings: PollSettings,
    limits: Arc<ProviderLimits>,
}

/// Pollers that share one durable state and one transactional producer. A [`Source`].
pub struct PollGroup {
    name: String,
    settings: GroupSettings,
    members: Vec<Box<dyn Member>>,
    providers: HashMap<String, Arc<ProviderLimits>>,
}

impl std::fmt::Debug for PollGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let members: Vec<&str> = self.members.iter().map(|m| m.name()).collect();
        f.debug_struct("PollGroup").field("name", &self.name).field("members", &members).finish_non_exhaustive()
    }
}

impl PollGroup {
    /// An empty group named `name` (the source name in health and the state key).
    pub fn new(name: impl Into<String>, settings: GroupSettings) -> Self {
        Self { name: name.into(), settings, members: Vec::new(), providers: HashMap::new() }
    }

    /// Adds a poller. Its provider's (or `limit_key`'s) rate limit and quota come from the first
    /// poller added for that provider (or key).
    pub fn add<P: Poller>(&mut self, poller: P, settings: PollSettings) -> &mut Self {
        let key = settings.limit_key.clone().unwrap_or_else(|| poller.provider().to_string());
        let limits = self
            .providers
            .entry(key)
            .or_insert_with(|| {
                Arc::new(ProviderLimits {
                    limiter: RateLimiter::new(settings.rate_per_second, settings.rate_burst),
                    quota: settings
                        .daily_quota
                        .map(|limit| Mutex::new(Quota { limit, day: Utc::now().date_naive(), used: 0 })),
                })
            })
            .clone();
        self.members.push(Box::new(Polled { poller, settings, limits }));
        self
    }

    /// Number of pollers.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// True when no poller was added.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

/// The group's transactional producer and state, shared by its pollers.
struct Shared {
    group: String,
    transactional_id: String,
    key: String,
    producer: String,
    sink: Sink,
    state_route: Route,
    state: tokio::sync::Mutex<GroupState>,
    commit_timeout: Duration,
    refused_retry: Duration,
    missing_retry: Duration,
}

#[derive(Debug, Clone)]
struct GroupState {
    cursors: BTreeMap<String, serde_json::Value>,
    window: DedupWindow,
}

/// Why a poll's transaction did not commit.
#[derive(Debug)]
enum CommitError {
    /// Shutdown came first; the transaction was aborted (or is left for the next start).
    ShutDown,
    /// Aborted; the poll is retried from the old cursor.
    Retry(String),
    /// The producer is unusable (fenced by a newer instance, or a fatal client error).
    Fatal(String),
}

/// Sleeps unless shutdown fires first; returns false on shutdown.
async fn sleep_or_stop(d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => true,
        () = shutdown.cancelled() => false,
    }
}

/// Repeats a transaction call while librdkafka says it may be retried (a timeout), up to the
/// shutdown.
async fn until_done<F, Fut>(shutdown: &CancellationToken, mut call: F) -> Result<(), TxError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), TxError>>,
{
    let mut backoff = Backoff::new(BackoffConfig {
        base: Duration::from_millis(200),
        max: Duration::from_secs(5),
        factor: 2.0,
        jitter: 0.2,
    });
    loop {
        match call().await {
            Err(e) if !e.fatal && !e.requires_abort && !shutdown.is_cancelled() => {
                tracing::warn!(error = %e, "Kafka transaction call timed out; retrying");
                if !sleep_or_stop(backoff.next_delay(), shutdown).await {
                    return Err(e);
                }
            }
            other => return other,
        }
    }
}

impl Shared {
    /// The message of a fatal transaction error (fencing is the usual cause).
    fn fatal_tx(&self, error: &str) -> String {
        format!(
            "Kafka transaction failed fatally ({error}); if another instance with transactional.id `{}` started, this one is fenced (give each instance its own runtime.instance_id)",
            self.transactional_id
        )
    }

    /// Writes one poll's outcome in one transaction: records whose key the window has not seen,
    /// dead letters, and the group state with `member`'s new cursor.
    #[allow(clippy::too_many_arguments, reason = "one call site per poll outcome; a struct would only rename them")]
    async fn commit<R: Record>(
        &self,
        ctx: &SourceCtx,
        route: &Route,
        member: &str,
        records: Vec<(R, Vec<u8>)>,
        rejects: Vec<Reject>,
        cursor: serde_json::Value,
        received_at: DateTime<Utc>,
    ) -> Result<(), CommitError> {
        let mut state = self.state.lock().await;
        let unchanged = rejects.is_empty()
            && state.cursors.get(member) == Some(&cursor)
            && records.iter().all(|(r, _)| state.window.contains(&r.key()));
        if unchanged {
            // Nothing new: no transaction (an idle source would otherwise rewrite its state on
            // every poll).
            if !records.is_empty() {
                ctx.metrics.duplicates_skipped.with_label_values(&[route.provider()]).inc_by(records.len() as u64);
            }
            return Ok(());
        }
        let mut next = state.clone();
        next.cursors.insert(member.to_string(), cursor);
        let fatal_or_retry =
            |e: TxError| if e.fatal { CommitError::Fatal(e.message) } else { CommitError::Retry(e.message) };
        self.sink.begin_transaction().map_err(fatal_or_retry)?;
        let (mut sent, mut dead, mut skipped) = (0u64, 0u64, 0u64);
        let outcome: Result<(), CommitError> = async {
            for r in &rejects {
                let letter = self.sink.wait_for_space(route, &ctx.shutdown, || {
                    self.sink.dead_letter(route, &r.raw, &r.reason, received_at)
                });
                match letter.await {
                    Ok(()) => dead += 1,
                    Err(SendError::ShutDown) => return Err(CommitError::ShutDown),
                    Err(e) => return Err(CommitError::Retry(e.to_string())),
                }
            }
            for (record, raw) in &records {
                let key = record.key();
                if next.window.contains(&key) {
                    skipped += 1;
                    continue;
                }
                match self.sink.send(route, record, raw, &ctx.shutdown).await {
                    Ok(Outcome::Enqueued) => sent += 1,
                    Ok(Outcome::DeadLettered(_)) => dead += 1,
                    Err(SendError::ShutDown) => return Err(CommitError::ShutDown),
                    Err(e) => return Err(CommitError::Retry(e.to_string())),
                }
                next.window.insert(&key);
            }
            let record = SourceState {
                source: self.key.clone(),
                cursors: next.cursors.clone(),
                seen: next.window.to_hex(),
                provider: self.producer.clone(),
                updated_at: Utc::now(),
            };
            match self.sink.send(&self.state_route, &record, b"", &ctx.shutdown).await {
                Ok(Outcome::Enqueued) => {}
                Ok(Outcome::DeadLettered(e)) => return Err(CommitError::Retry(format!("state record refused: {e}"))),
                Err(SendError::ShutDown) => return Err(CommitError::ShutDown),
                Err(e) => return Err(CommitError::Retry(e.to_string())),
            }
            let timeout = self.commit_timeout;
            until_done(&ctx.shutdown, || self.sink.commit_transaction(timeout)).await.map_err(fatal_or_retry)
        }
        .await;
        let tx = |outcome: &str| ctx.metrics.transactions.with_label_values(&[&self.group, outcome]).inc();
        match outcome {
            Ok(()) => {
                *state = next;
                tx("committed");
                if skipped > 0 {
                    ctx.metrics.duplicates_skipped.with_label_values(&[route.provider()]).inc_by(skipped);
                }
                Ok(())
            }
            Err(CommitError::Fatal(m)) => Err(CommitError::Fatal(m)),
            Err(e) => {
                let failed = |topic: &str, n: u64| {
                    if n > 0 {
                        ctx.metrics
                            .messages_failed
                            .with_label_values(&[route.provider(), topic, REASON_ABORTED])
                            .inc_by(n);
                    }
                };
                failed(route.topic(), sent);
                failed(route.dlq_topic(), dead);
                let timeout = self.commit_timeout;
                let aborted = until_done(&ctx.shutdown, || self.sink.abort_transaction(timeout)).await;
                tx("aborted");
                match aborted {
                    Err(a) if a.fatal => Err(CommitError::Fatal(a.message)),
                    // Not aborted before shutdown: the next instance's init_transactions does it.
                    _ => Err(e),
                }
            }
        }
    }
}

/// Reads every record of `topic` that is committed up to its current end, in offset order per
/// partition, handing each to `on_message`: a `read_committed` consumer reads every partition
/// from the start up to the high watermark taken (read_uncommitted) when it started, so
/// transactions still open then are waited for (until they end or `timeout`).
pub fn read_committed_to_end(
    kafka: &KafkaConfig,
    topic: &str,
    timeout: Duration,
    mut on_message: impl FnMut(&rdkafka::message::BorrowedMessage<'_>),
) -> Result<(), String> {
    let consumer = |isolation: &str| -> Result<BaseConsumer, String> {
        let mut cc = ClientConfig::new();
        // Security settings (TLS, SASL) apply to every client; producer tuning does not.
        for (k, v) in kafka.connection_properties() {
            cc.set(k, v);
        }
        cc.set("group.id", "finstream-state-restore")
            .set("enable.auto.commit", "false")
            .set("isolation.level", isolation);
        cc.create().map_err(|e| format!("cannot create a consumer: {e}"))
    };
    let deadline = Instant::now() + timeout;
    let probe = consumer("read_uncommitted")?;
    // A topic created a moment ago may not be in every broker's metadata yet: ask again, briefly.
    let metadata_deadline = Instant::now() + timeout.min(Duration::from_secs(10));
    let partitions = loop {
        let md = probe.fetch_metadata(Some(topic), timeout).map_err(|e| format!("metadata for `{topic}`: {e}"))?;
        // Every partition must have a leader, or its watermarks cannot be asked for yet.
        let n = md
            .topics()
            .first()
            .filter(|t| t.error().is_none() && t.partitions().iter().all(|p| p.leader() >= 0 && p.error().is_none()))
            .map(|t| t.partitions().len())
            .unwrap_or(0);
        if n > 0 {
            break n;
        }
        if Instant::now() >= metadata_deadline {
            return Err(format!("topic `{topic}` does not exist"));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut tpl = TopicPartitionList::new();
    let mut ends = Vec::new();
    for p in 0..i32::try_from(partitions).unwrap_or(i32::MAX) {
        // A leader change (or one still being elected) answers with a retriable error: ask again.
        let (low, high) = loop {
            match probe.fetch_watermarks(topic, p, timeout) {
                Ok(w) => break w,
                Err(e) if Instant::now() < metadata_deadline => {
                    tracing::debug!(topic, partition = p, error = %e, "watermarks not available yet; retrying");
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(format!("watermarks: {e}")),
            }
        };
        if high > low {
            tpl.add_partition_offset(topic, p, Offset::Offset(low)).map_err(|e| e.to_string())?;
            ends.push((p, high));
        }
    }
    if ends.is_empty() {
        return Ok(());
    }
    let reader = consumer("read_committed")?;
    reader.assign(&tpl).map_err(|e| format!("assign: {e}"))?;
    loop {
        let position = reader.position().map_err(|e| format!("position: {e}"))?;
        let done = ends.iter().all(|(p, high)| {
            matches!(position.find_partition(topic, *p).map(|e| e.offset()), Some(Offset::Offset(o)) if o >= *high)
        });
        if done {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "timed out reading `{topic}` up to its end (a transaction of another producer may still be open)"
            ));
        }
        match reader.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => on_message(&m),
            None => {}
            Some(Err(e)) => return Err(format!("reading `{topic}`: {e}")),
        }
    }
}

/// The group's last committed state in `topic` (`None` if it has none yet).
fn restore_state(
    kafka: &KafkaConfig,
    topic: &str,
    key: &str,
    timeout: Duration,
) -> Result<Option<SourceState>, RestoreError> {
    let mut latest: Option<Option<Vec<u8>>> = None;
    read_committed_to_end(kafka, topic, timeout, |m| {
        if m.key() == Some(key.as_bytes()) {
            latest = Some(m.payload().map(<[u8]>::to_vec));
        }
    })
    .map_err(RestoreError::Kafka)?;
    match latest.flatten() {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            RestoreError::Unreadable(format!(
                "the stored state of `{key}` is unreadable ({e}); refusing to start without it"
            ))
        }),
    }
}

/// Why the state could not be restored.
#[derive(Debug)]
enum RestoreError {
    /// Kafka did not answer in time (an outage): retried.
    Kafka(String),
    /// The stored record is not a state: starting without it could repeat records, so stop.
    Unreadable(String),
}

impl Source for PollGroup {
    fn name(&self) -> &str {
        &self.name
    }

    fn members(&self) -> usize {
        self.members.len()
    }

    fn run(self: Box<Self>, ctx: SourceCtx) -> BoxFuture<'static, Result<(), FatalError>> {
        Box::pin(async move { self.run_group(ctx).await })
    }
}

impl PollGroup {
    async fn run_group(self, ctx: SourceCtx) -> Result<(), FatalError> {
        let fatal = |message: String| FatalError { source_name: self.name.clone(), message };
        let client_fatal = CancellationToken::new();
        let sink = Sink::transactional(
            &ctx.kafka,
            &ctx.producer,
            &self.settings.transactional_id,
            ctx.metrics.clone(),
            ctx.process_health.clone(),
            client_fatal.clone(),
        )
        .map_err(|e| match e {
            SinkError::Config(c) => fatal(c.to_string()),
            SinkError::Create(m) | SinkError::Spool(m) => fatal(m),
        })?;
        ctx.health.set_connected(false, "registering the transactional producer");
        let timeout = self.settings.commit_timeout;
        // A broker that never answers holds the registration for its whole timeout: a stop
        // does not wait for it (nothing is open yet; the next start registers again).
        let registered = tokio::select! {
            r = until_done(&ctx.shutdown, || sink.init_transactions(timeout)) => r,
            () = ctx.shutdown.cancelled() => return Ok(()),
        };
        match registered {
            Ok(()) => {}
            Err(_) if ctx.shutdown.is_cancelled() => return Ok(()),
            Err(e) => return Err(fatal(format!("cannot initialize Kafka transactions: {e}"))),
        }
        let key = format!("{}/{}", ctx.producer, self.name);
        let topic = ctx.kafka.topics.state.name.clone();
        let mut backoff = Backoff::new(BackoffConfig::default());
        let stored = loop {
            let (kafka, topic, key, t) = (ctx.kafka.clone(), topic.clone(), key.clone(), self.settings.restore_timeout);
            let restored = tokio::task::spawn_blocking(move || restore_state(&kafka, &topic, &key, t))
                .await
                .map_err(|e| fatal(format!("state restore panicked: {e}")))?;
            match restored {
                Ok(state) => break state,
                Err(RestoreError::Unreadable(m)) => return Err(fatal(m)),
                Err(RestoreError::Kafka(m)) => {
                    ctx.health.set_connected(false, format!("restoring state: {m}"));
                    tracing::warn!(group = %self.name, error = %m, "cannot read the polling state yet; retrying");
                    if !sleep_or_stop(backoff.next_delay(), &ctx.shutdown).await {
                        return Ok(());
                    }
                }
            }
        };
        let (cursors, window) = match stored {
            Some(s) => {
                let window = DedupWindow::from_hex(self.settings.dedup_window, &s.seen).map_err(fatal)?;
                tracing::info!(group = %self.name, cursors = s.cursors.len(), seen = window.len(), updated_at = %s.updated_at, "restored polling state");
                (s.cursors, window)
            }
            None => {
                tracing::info!(group = %self.name, "no stored polling state; starting fresh");
                (BTreeMap::new(), DedupWindow::new(self.settings.dedup_window))
            }
        };
        let shared = Arc::new(Shared {
            group: self.name.clone(),
            transactional_id: self.settings.transactional_id.clone(),
            state_route: sink.route::<SourceState>(&ctx.producer),
            key,
            producer: ctx.producer.clone(),
            sink,
            state: tokio::sync::Mutex::new(GroupState { cursors: cursors.clone(), window }),
            commit_timeout: self.settings.commit_timeout,
            refused_retry: self.settings.refused_retry,
            missing_retry: self.settings.missing_retry,
        });
        let mut running = JoinSet::new();
        for m in self.members {
            let cursor = cursors.get(m.name()).cloned();
            running.spawn(m.run(shared.clone(), cursor, ctx.clone()));
        }
        let mut result = Ok(());
        loop {
            tokio::select! {
                joined = running.join_next() => match joined {
                    None => break,
                    Some(Ok(Ok(()))) => {}
                    Some(Ok(Err(e))) => {
                        result = Err(e);
                        break;
                    }
                    Some(Err(e)) => {
                        result = Err(fatal(format!("a poller panicked: {e}")));
                        break;
                    }
                },
                () = client_fatal.cancelled() => {
                    let why = shared.sink.check_fatal().unwrap_or_else(|| "fatal Kafka client error".into());
                    result = Err(fatal(format!("the transactional producer is unusable ({why}); was another instance with transactional.id `{}` started?", self.settings.transactional_id)));
                    break;
                }
            }
        }
        running.abort_all();
        result
    }
}

impl<P: Poller> Member for Polled<P> {
    fn name(&self) -> &str {
        self.poller.name()
    }

    fn run(
        self: Box<Self>,
        group: Arc<Shared>,
        cursor: Option<serde_json::Value>,
        ctx: SourceCtx,
    ) -> BoxFuture<'static, Result<(), FatalError>> {
        Box::pin(async move { self.run_loop(group, cursor, ctx).await })
    }
}

impl<P: Poller> Polled<P> {
    async fn run_loop(
        self,
        group: Arc<Shared>,
        stored: Option<serde_json::Value>,
        ctx: SourceCtx,
    ) -> Result<(), FatalError> {
        let p = &self.poller;
        let s = &self.settings;
        let fatal = |message: String| FatalError { source_name: p.name().to_string(), message };
        let mut cursor: P::Cursor = match stored {
            Some(v) => serde_json::from_value(v).map_err(|e| fatal(format!("stored cursor unreadable: {e}")))?,
            None => P::Cursor::default(),
        };
        let client = match p.http_client(&s.http) {
            Some(c) => c.map_err(|e| fatal(format!("cannot build HTTP client: {e}")))?,
            None => http::client(&s.http).map_err(|e| fatal(format!("cannot build HTTP client: {e}")))?,
        };
        let route: Route = group.sink.route::<P::Record>(p.provider());
        // Readiness checks the topics routed through the process's main sink: register ours.
        let _ = ctx.sink.route::<P::Record>(p.provider());
        let _ = ctx.sink.route::<SourceState>(&ctx.producer);
        let mut backoff = Backoff::new(s.backoff);
        let gauge = ctx.metrics.breaker_state.with_label_values(&[p.provider(), p.name()]);
        let mut breaker = CircuitBreaker::new(s.breaker, Some(gauge));
        // Every series this loop can move exists from the start, at 0: rate()/increase() and
        // alerts see the first failure, and dashboards find the series before anything failed.
        for outcome in ErrorClass::OUTCOMES {
            let _ = ctx.metrics.api_calls.with_label_values(&[p.provider(), outcome]);
        }
        let _ = ctx.metrics.duplicates_skipped.with_label_values(&[p.provider()]);
        let _ = ctx.metrics.quota_exhausted.with_label_values(&[p.provider()]);
        let _ = ctx.metrics.catchup_cut.with_label_values(&[p.provider()]);
        for outcome in ["committed", "aborted"] {
            let _ = ctx.metrics.transactions.with_label_values(&[&group.group, outcome]);
        }
        let calls = |outcome: &str| ctx.metrics.api_calls.with_label_values(&[p.provider(), outcome]).inc();
        let breaker_event = |state: BreakerState| {
            tracing::warn!(source = p.name(), state = state.as_str(), "circuit breaker changed state");
            let mut e = IngestEvent::new(&ctx.producer, p.provider(), EventKind::BreakerState);
            e.state = Some(state.as_str().into());
            e.message = Some(format!("source {}", p.name()));
            ctx.event(&e);
        };
        let commit = |records, rejects, next: &P::Cursor, received_at| {
            let next = serde_json::to_value(next).unwrap_or(serde_json::Value::Null);
            group.commit(&ctx, &route, p.name(), records, rejects, next, received_at)
        };
        let mut next_wait = Duration::ZERO;
        // True while the provider refuses this source (it waits `refused_retry`/`missing_retry`).
        let mut blocked = false;
        loop {
            if !sleep_or_stop(next_wait, &ctx.shutdown).await {
                return Ok(());
            }
            match breaker.allow() {
                Ok(Some(state)) => breaker_event(state),
                Ok(None) => {}
                Err(wait) => {
                    next_wait = wait;
                    continue;
                }
            }
            if let Some(quota) = &self.limits.quota {
                let taken = quota.lock().unwrap_or_else(PoisonError::into_inner).take(Utc::now());
                if let Err(wait) = taken {
                    ctx.metrics.quota_exhausted.with_label_values(&[p.provider()]).inc();
                    tracing::warn!(source = p.name(), resume_in_secs = wait.as_secs(), "daily request quota used up");
                    ctx.event(
                        &IngestEvent::new(&ctx.producer, p.provider(), EventKind::RateLimited)
                            .with_message(format!("daily quota used up; resuming in {}s", wait.as_secs())),
                    );
                    next_wait = wait;
                    continue;
                }
            }
            tokio::select! {
                () = self.limits.limiter.acquire() => {}
                () = ctx.shutdown.cancelled() => return Ok(()),
            }
            // Ok(response) or Err((class, the response if there was one, what happened)).
            let prepared = tokio::select! {
                r = p.prepare(&client, &cursor) => r,
                () = ctx.shutdown.cancelled() => return Ok(()),
            };
            let outcome = match prepared {
                Err((class, what)) => Err((class, None, what)),
                Ok(()) => {
                    let fetched = tokio::select! {
                        r = http::fetch(p.request(&client, &cursor), s.http.max_body_bytes) => r,
                        () = ctx.shutdown.cancelled() => return Ok(()),
                    };
                    match fetched {
                        Ok(resp) => {
                            if let Some(hold) = p.rate_hint(&resp) {
                                tracing::info!(
                                    source = p.name(),
                                    hold_secs = hold.as_secs_f64(),
                                    "provider's rate window used up; holding requests"
                                );
                                self.limits.limiter.pause(hold);
                            }
                            match p.classify(&resp, &cursor) {
                                None => Ok(resp),
                                Some(class) => {
                                    let what = format!("HTTP {}", resp.status);
                                    Err((class, Some(resp), what))
                                }
                            }
                        }
                        Err(e @ FetchError::Transport(_)) => {
                            Err((ErrorClass::Retryable { after: None }, None, e.to_string()))
                        }
                        Err(e @ FetchError::TooLarge { .. }) => Err((ErrorClass::Permanent, None, e.to_string())),
                        Err(FetchError::Refused(r)) => Err((ErrorClass::Refused, None, r.to_string())),
                    }
                }
            };
            let (class, resp, what) = match outcome {
                Ok(resp) => {
                    calls("ok");
                    // Parsing a large body is CPU work: off the async worker when the runtime can
                    // lend the thread, so other sources' I/O keeps moving meanwhile.
                    let parsed = if tokio::runtime::Handle::current().runtime_flavor()
                        == tokio::runtime::RuntimeFlavor::MultiThread
                    {
                        tokio::task::block_in_place(|| p.normalize(&resp, &cursor))
                    } else {
                        p.normalize(&resp, &cursor)
                    };
                    let (normalized, more) = match parsed {
                        Ok(Normalized { records, rejects, cursor: next, more, cut, refused }) => {
                            let committed = commit(records, rejects, &next, resp.received_at).await;
                            if let (Ok(()), Some(cut)) = (&committed, cut) {
                                report_cut(&ctx, p.provider(), p.name(), cut);
                            }
                            if let Some(why) = refused {
                                calls("refused");
                                report_refused(&ctx, p.provider(), p.name(), &why);
                            }
                            (committed.map(|()| next), more)
                        }
                        Err(reason) => {
                            tracing::warn!(source = p.name(), error = %reason, "response could not be normalized; dead-lettered");
                            let reject = Reject { raw: resp.body.to_vec(), reason };
                            (
                                commit(Vec::new(), vec![reject], &cursor, resp.received_at)
                                    .await
                                    .map(|()| cursor.clone()),
                                false,
                            )
                        }
                    };
                    match normalized {
                        Ok(next) => {
                            cursor = next;
                            if let Some(state) = breaker.on_success() {
                                breaker_event(state);
                            }
                            if std::mem::take(&mut blocked) {
                                ctx.health.set_blocked(p.name(), None);
                                tracing::info!(source = p.name(), "source accepted again");
                                ctx.event(
                                    &IngestEvent::new(&ctx.producer, p.provider(), EventKind::SourceRecovered)
                                        .with_message(format!("source {} works again", p.name())),
                                );
                            }
                            backoff.reset();
                            ctx.health.set_connected(true, "last poll committed");
                            ctx.health.mark_data();
                            next_wait = if more { Duration::ZERO } else { jittered(p.interval(), s.interval_jitter) };
                            continue;
                        }
                        Err(CommitError::ShutDown) => return Ok(()),
                        Err(CommitError::Fatal(m)) => {
                            return Err(fatal(group.fatal_tx(&m)));
                        }
                        Err(CommitError::Retry(m)) => {
                            (ErrorClass::Retryable { after: None }, None, format!("Kafka transaction aborted: {m}"))
                        }
                    }
                }
                Err(failed) => failed,
            };
            calls(class.label());
            match class {
                ErrorClass::Fatal => {
                    ctx.health.set_connected(false, format!("fatal: {what}"));
                    return Err(fatal(p.fatal_message(&what, resp.as_ref())));
                }
                ErrorClass::Denied | ErrorClass::NotFound => {
                    let (wait, why) = if class == ErrorClass::Denied {
                        (group.refused_retry, format!("refused by {} ({what})", p.provider()))
                    } else {
                        (group.missing_retry, format!("not found at {} ({what})", p.provider()))
                    };
                    // Never sooner than the source's own interval.
                    next_wait = wait.max(p.interval());
                    let detail = format!("{why}; next try in {}s", next_wait.as_secs());
                    tracing::warn!(source = p.name(), error = %what, retry_in_secs = next_wait.as_secs(), "{}", if class == ErrorClass::Denied {
                        "the provider refused this source; the others keep running"
                    } else {
                        "the provider does not know this source's name; the others keep running"
                    });
                    ctx.health.set_blocked(p.name(), Some(detail.clone()));
                    if !blocked {
                        blocked = true;
                        ctx.event(
                            &IngestEvent::new(&ctx.producer, p.provider(), EventKind::SourceRefused)
                                .with_message(format!("source {}: {detail}", p.name())),
                        );
                    }
                    if let Some(all) = ctx.process_health.nothing_can_run() {
                        return Err(fatal(format!(
                            "no source can run: every configured source was refused by its provider ({all})"
                        )));
                    }
                }
                ErrorClass::QuotaExhausted { until } => {
                    let wait = until.unwrap_or(QUOTA_FALLBACK);
                    self.limits.limiter.pause(wait);
                    ctx.metrics.quota_exhausted.with_label_values(&[p.provider()]).inc();
                    tracing::warn!(source = p.name(), error = %what, resume_in_secs = wait.as_secs(), "the provider's quota for this period is used up");
                    let mut e = IngestEvent::new(&ctx.producer, p.provider(), EventKind::QuotaExhausted)
                        .with_message(format!("{what}; paused {}s until the quota resets", wait.as_secs()));
                    e.to = chrono::Duration::from_std(wait).ok().map(|d| Utc::now() + d);
                    ctx.event(&e);
                    next_wait = Duration::ZERO;
                }
                ErrorClass::RateLimited { after } => {
                    let wait = after.unwrap_or_else(|| backoff.next_delay());
                    self.limits.limiter.pause(wait);
                    tracing::warn!(source = p.name(), wait_secs = wait.as_secs_f64(), "rate limited by the provider");
                    ctx.event(
                        &IngestEvent::new(&ctx.producer, p.provider(), EventKind::RateLimited)
                            .with_message(format!("paused {:.1}s", wait.as_secs_f64())),
                    );
                    next_wait = Duration::ZERO;
                }
                ErrorClass::Retryable { after } => {
                    ctx.health.set_connected(false, what.clone());
                    if let Some(state) = breaker.on_failure() {
                        breaker_event(state);
                    }
                    next_wait = after.unwrap_or_else(|| backoff.next_delay());
                    tracing::warn!(source = p.name(), error = %what, retry_in_secs = next_wait.as_secs_f64(), "poll failed");
                }
                ErrorClass::Permanent | ErrorClass::Refused => {
                    if class == ErrorClass::Refused {
                        ctx.health.set_connected(false, what.clone());
                        report_refused(&ctx, p.provider(), p.name(), &what);
                    }
                    if let Some(state) = breaker.on_failure() {
                        breaker_event(state);
                    }
                    if let Some(resp) = &resp {
                        let reject = Reject { raw: resp.body.to_vec(), reason: what.clone() };
                        match commit(Vec::new(), vec![reject], &cursor, resp.received_at).await {
                            Ok(()) | Err(CommitError::Retry(_)) => {}
                            Err(CommitError::ShutDown) => return Ok(()),
                            Err(CommitError::Fatal(m)) => {
                                return Err(fatal(group.fatal_tx(&m)));
                            }
                        }
                    }
                    next_wait = jittered(p.interval(), s.interval_jitter);
                    if class == ErrorClass::Permanent {
                        tracing::warn!(source = p.name(), error = %what, "poll failed permanently; will try again next interval");
                    }
                }
            }
        }
    }
}

/// How long a used-up quota pauses its provider when the provider did not say when it resets.
const QUOTA_FALLBACK: Duration = Duration::from_secs(3600);

/// Publishes a catch-up cut: a `gap` event with the window, a counter, a warning.
fn report_cut(ctx: &SourceCtx, provider: &str, source: &str, cut: crate::source::Cut) {
    ctx.metrics.catchup_cut.with_label_values(&[provider]).inc();
    tracing::warn!(source, from = ?cut.from, to = ?cut.to, "{}", cut.message);
    let mut e = IngestEvent::new(&ctx.producer, provider, EventKind::Gap)
        .with_message(format!("source {source}: {}", cut.message));
    (e.from, e.to) = (cut.from, cut.to);
    ctx.event(&e);
}

/// Reports a refusal by one of our guards: one warning and a `request_refused` event.
fn report_refused(ctx: &SourceCtx, provider: &str, source: &str, why: &str) {
    tracing::warn!(source, reason = why, "request refused before it was sent");
    ctx.event(
        &IngestEvent::new(&ctx.producer, provider, EventKind::RequestRefused)
            .with_message(format!("source {source}: {why}")),
    );
}

/// `d` ± up to `jitter` of it.
fn jittered(d: Duration, jitter: f64) -> Duration {
    let j = jitter.clamp(0.0, 0.99);
    if j == 0.0 {
        return d;
    }
    d.mul_f64(1.0 + rand::rng().random_range(-j..=j))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn dedup_window_is_bounded_and_round_trips() {
        let mut w = DedupWindow::new(3);
        for k in ["a", "b", "c"] {
            assert!(w.insert(k));
        }
        assert!(!w.insert("b"), "already seen");
        assert!(w.insert("d"));
        assert_eq!(w.len(), 3);
        assert!(!w.contains("a"), "oldest evicted");
        assert!(w.contains("b") && w.contains("d"));
        let stored = w.to_hex();
        assert!(stored.iter().all(|h| h.len() == 16));
        assert_eq!(DedupWindow::from_hex(3, &stored).unwrap(), w);
        let smaller = DedupWindow::from_hex(2, &stored).unwrap();
        assert!(!smaller.contains("b") && smaller.contains("c") && smaller.contains("d"), "newest kept");
        assert!(DedupWindow::from_hex(3, &["xyz".into()]).is_err());
        // FNV-1a 64 of "a", a published test vector: stored hashes must never change.
        assert_eq!(DedupWindow::hash("a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn daily_quota_resets_at_utc_midnight() {
        let t = Utc.with_ymd_and_hms(2024, 1, 2, 23, 0, 0).unwrap();
        let mut q = Quota { limit: 2, day: t.date_naive(), used: 0 };
        assert!(q.take(t).is_ok() && q.take(t).is_ok());
        assert_eq!(q.take(t), Err(Duration::from_secs(3600)));
        assert!(q.take(t + chrono::Duration::hours(1)).is_ok(), "a new day");
    }
}
