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

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use futures::future::BoxFuture;
use rand::RngExt;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::http::HttpConfig;
use crate::kafka::{RestoreError, SinkError, TxSink, restore_state, until_done};
use crate::record::SourceState;
use crate::resilience::{Backoff, BackoffConfig, BreakerConfig, RateLimiter};
use crate::source::{FatalError, Poller, Source, SourceCtx};
use crate::telemetry::handles::TransactionCounters;

mod commit;
mod dedup;
mod member;
mod quota;

use self::commit::{GroupState, Shared};
pub use self::dedup::DedupWindow;
use self::member::Polled;
use self::quota::{ProviderLimits, Quota};

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

/// Sleeps unless shutdown fires first; returns false on shutdown.
async fn sleep_or_stop(d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => true,
        () = shutdown.cancelled() => false,
    }
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
        let sink = TxSink::new(
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
            transactional_id: self.settings.transactional_id.clone(),
            state_route: sink.route::<SourceState>(&ctx.producer),
            key,
            producer: ctx.producer.clone(),
            sink,
            state: tokio::sync::Mutex::new(GroupState { cursors: cursors.clone(), window }),
            commit_timeout: self.settings.commit_timeout,
            refused_retry: self.settings.refused_retry,
            missing_retry: self.settings.missing_retry,
            transactions: TransactionCounters::new(&ctx.metrics, &self.name),
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

/// `d` ± up to `jitter` of it.
fn jittered(d: Duration, jitter: f64) -> Duration {
    let j = jitter.clamp(0.0, 0.99);
    if j == 0.0 {
        return d;
    }
    d.mul_f64(1.0 + rand::rng().random_range(-j..=j))
}
