//! What producers implement: a [`Source`] (anything that runs and hands records to the sink,
//! e.g. a WebSocket feed) or a [`Poller`] (request → response → pure `normalize`), which
//! [`PollingSource`] turns into a source by owning the loop: schedule with jitter, rate limit,
//! circuit breaker, retries with backoff, body caps, metrics, dead letters and the cursor.
//!
//! Seam for durable state: the cursor lives in memory here. The polled-sources issue stores it
//! (with the dedup state) in `ingest.state`, committed in the same Kafka transaction as the
//! poll's records; `PollingSource` is the single place that will change.

use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use rand::RngExt;
use tokio_util::sync::CancellationToken;

use crate::http::{self, FetchError, HttpConfig, HttpResponse};
use crate::kafka::{Route, SendError, Sink};
use crate::record::{EventKind, IngestEvent, Record};
use crate::resilience::{
    Backoff, BackoffConfig, BreakerConfig, CircuitBreaker, ErrorClass, RateLimiter, classify_http,
};
use crate::telemetry::{Metrics, SourceHealth};

/// What the runtime gives a running source.
#[derive(Debug, Clone)]
pub struct SourceCtx {
    /// The producer's name.
    pub producer: String,
    /// The only way to Kafka.
    pub sink: Sink,
    /// This source's readiness cell.
    pub health: SourceHealth,
    /// Metrics handles.
    pub metrics: Metrics,
    /// Fires on SIGTERM/SIGINT or a fatal error elsewhere; the source returns promptly.
    pub shutdown: CancellationToken,
}

impl SourceCtx {
    /// Publishes a lifecycle event on `ingest.events` (best effort: a full queue is logged).
    pub fn event(&self, event: &IngestEvent) {
        let route = self.sink.route::<IngestEvent>(&event.provider);
        if let Err(error) = self.sink.try_send(&route, event, b"") {
            tracing::warn!(%error, kind = ?event.kind, "could not publish lifecycle event");
        }
    }
}

/// A source stopped for a reason retrying cannot fix; the process exits 1.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}: {message}")]
pub struct FatalError {
    /// Which source.
    pub source_name: String,
    /// What to fix.
    pub message: String,
}

/// A running input: a WebSocket feed, a polling loop, a replay.
pub trait Source: Send + 'static {
    /// Unique name within the producer (`polygon`, `newsapi:everything`).
    fn name(&self) -> &str;

    /// No data for this long while connected makes the producer not ready. `None`: no limit.
    fn stale_after(&self) -> Option<Duration> {
        None
    }

    /// Runs until `ctx.shutdown` fires (then returns `Ok`) or a fatal error.
    fn run(self: Box<Self>, ctx: SourceCtx) -> BoxFuture<'static, Result<(), FatalError>>;
}

/// One item the poller could not turn into a record: dead-lettered with its reason.
#[derive(Debug, Clone, PartialEq)]
pub struct Reject {
    /// The raw item.
    pub raw: Vec<u8>,
    /// Why.
    pub reason: String,
}

/// The result of normalizing one response.
#[derive(Debug, Clone)]
pub struct Normalized<R, C> {
    /// Records, each with the raw item it came from (for the DLQ if it fails validation).
    pub records: Vec<(R, Vec<u8>)>,
    /// Items that could not be parsed.
    pub rejects: Vec<Reject>,
    /// The cursor after this response.
    pub cursor: C,
    /// True when another page should be fetched right away.
    pub more: bool,
}

/// A polled provider endpoint. Everything but `request` and `normalize` has a default.
pub trait Poller: Send + Sync + 'static {
    /// The record type produced.
    type Record: Record + Send + Sync + 'static;
    /// Where the next poll starts (a timestamp, an id, a page token).
    type Cursor: Clone + Default + Send + Sync + std::fmt::Debug + 'static;

    /// Source name (unique within the producer).
    fn name(&self) -> &str;
    /// Provider label for metrics and records.
    fn provider(&self) -> &str;
    /// Time between polls.
    fn interval(&self) -> Duration;
    /// The request for the next poll.
    fn request(&self, client: &reqwest::Client, cursor: &Self::Cursor) -> reqwest::RequestBuilder;
    /// Classifies a response: `None` for success. The default is generic HTTP; providers that
    /// report errors in 200 bodies override it.
    fn classify(&self, resp: &HttpResponse) -> Option<ErrorClass> {
        classify_http(resp.status, resp.header("retry-after"), SystemTime::now())
    }
    /// Pure conversion of a successful response. `Err` means the whole body is unusable (it is
    /// dead-lettered with the reason).
    fn normalize(
        &self,
        resp: &HttpResponse,
        cursor: &Self::Cursor,
    ) -> Result<Normalized<Self::Record, Self::Cursor>, String>;
}

/// Settings of the polling loop.
#[derive(Debug, Clone)]
pub struct PollSettings {
    /// HTTP client settings.
    pub http: HttpConfig,
    /// Requests per second to this provider (sustained) and burst.
    pub rate_per_second: f64,
    /// Burst of the rate limit.
    pub rate_burst: u32,
    /// Backoff between retries of a failed poll.
    pub backoff: BackoffConfig,
    /// Breaker of this source.
    pub breaker: BreakerConfig,
    /// Random share of the interval added or removed, in [0, 1).
    pub interval_jitter: f64,
}

impl Default for PollSettings {
    fn default() -> Self {
        Self {
            http: HttpConfig::default(),
            rate_per_second: 1.0,
            rate_burst: 1,
            backoff: BackoffConfig::default(),
            breaker: BreakerConfig::default(),
            interval_jitter: 0.1,
        }
    }
}

/// Runs a [`Poller`] as a [`Source`].
#[derive(Debug)]
pub struct PollingSource<P: Poller> {
    poller: P,
    settings: PollSettings,
}

impl<P: Poller> PollingSource<P> {
    /// A polling source.
    pub fn new(poller: P, settings: PollSettings) -> Self {
        Self { poller, settings }
    }
}

/// Sleeps unless shutdown fires first; returns false on shutdown.
async fn sleep_or_stop(d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => true,
        () = shutdown.cancelled() => false,
    }
}

impl<P: Poller> Source for PollingSource<P> {
    fn name(&self) -> &str {
        self.poller.name()
    }

    fn run(self: Box<Self>, ctx: SourceCtx) -> BoxFuture<'static, Result<(), FatalError>> {
        Box::pin(async move { self.run_loop(ctx).await })
    }
}

impl<P: Poller> PollingSource<P> {
    async fn run_loop(self, ctx: SourceCtx) -> Result<(), FatalError> {
        let p = &self.poller;
        let s = &self.settings;
        let fatal = |message: String| FatalError { source_name: p.name().to_string(), message };
        let client = http::client(&s.http).map_err(|e| fatal(format!("cannot build HTTP client: {e}")))?;
        let route: Route = ctx.sink.route::<P::Record>(p.provider());
        let limiter = RateLimiter::new(s.rate_per_second, s.rate_burst);
        let mut backoff = Backoff::new(s.backoff);
        let gauge = ctx.metrics.breaker_state.with_label_values(&[p.provider()]);
        let mut breaker = CircuitBreaker::new(s.breaker, Some(gauge));
        let calls = |outcome: &str| ctx.metrics.api_calls.with_label_values(&[p.provider(), outcome]).inc();
        let breaker_event = |state: crate::resilience::BreakerState| {
            tracing::warn!(source = p.name(), state = state.as_str(), "circuit breaker changed state");
            let mut e = IngestEvent::new(&ctx.producer, p.provider(), EventKind::BreakerState);
            e.state = Some(state.as_str().into());
            ctx.event(&e);
        };
        let mut cursor = P::Cursor::default();
        let mut next_wait = Duration::ZERO;
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
            tokio::select! {
                () = limiter.acquire() => {}
                () = ctx.shutdown.cancelled() => return Ok(()),
            }
            let fetched = tokio::select! {
                r = http::fetch(p.request(&client, &cursor), s.http.max_body_bytes) => r,
                () = ctx.shutdown.cancelled() => return Ok(()),
            };
            // Ok(response) or Err((class, the response if there was one, what happened)).
            let outcome = match fetched {
                Ok(resp) => match p.classify(&resp) {
                    None => Ok(resp),
                    Some(class) => {
                        let what = format!("HTTP {}", resp.status);
                        Err((class, Some(resp), what))
                    }
                },
                Err(e @ FetchError::Transport(_)) => Err((ErrorClass::Retryable { after: None }, None, e.to_string())),
                Err(e @ FetchError::TooLarge { .. }) => Err((ErrorClass::Permanent, None, e.to_string())),
            };
            let (class, resp, what) = match outcome {
                Ok(resp) => {
                    calls("ok");
                    if let Some(state) = breaker.on_success() {
                        breaker_event(state);
                    }
                    backoff.reset();
                    ctx.health.set_connected(true, "last poll succeeded");
                    let more = match p.normalize(&resp, &cursor) {
                        Ok(n) => {
                            let more = n.more;
                            if !self.deliver(&ctx, &route, n.records, n.rejects, &resp).await {
                                return Ok(());
                            }
                            cursor = n.cursor;
                            ctx.health.mark_data();
                            more
                        }
                        Err(reason) => {
                            tracing::warn!(source = p.name(), error = %reason, "response could not be normalized; dead-lettered");
                            let dead = ctx.sink.wait_for_space(&route, &ctx.shutdown, || {
                                ctx.sink.dead_letter(&route, &resp.body, &reason, resp.received_at)
                            });
                            log_unsent(dead.await, p.name());
                            false
                        }
                    };
                    next_wait = if more { Duration::ZERO } else { jittered(p.interval(), s.interval_jitter) };
                    continue;
                }
                Err(failed) => failed,
            };
            calls(class.label());
            match class {
                ErrorClass::Fatal => {
                    ctx.health.set_connected(false, format!("fatal: {what}"));
                    return Err(fatal(format!(
                        "the provider refused our credentials or plan ({what}); check the API key"
                    )));
                }
                ErrorClass::RateLimited { after } => {
                    let wait = after.unwrap_or_else(|| backoff.next_delay());
                    limiter.pause(wait);
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
                ErrorClass::Permanent => {
                    if let Some(state) = breaker.on_failure() {
                        breaker_event(state);
                    }
                    if let Some(resp) = &resp {
                        let dead = ctx.sink.wait_for_space(&route, &ctx.shutdown, || {
                            ctx.sink.dead_letter(&route, &resp.body, &what, resp.received_at)
                        });
                        log_unsent(dead.await, p.name());
                    }
                    next_wait = jittered(p.interval(), s.interval_jitter);
                    tracing::warn!(source = p.name(), error = %what, "poll failed permanently; will try again next interval");
                }
            }
        }
    }

    /// Sends a poll's records and dead-letters its rejects. Every item ends enqueued or counted
    /// as failed (the sink counts what shutdown cuts short), so after shutdown the loop still
    /// runs to the end, quickly. False if shutdown came.
    async fn deliver(
        &self,
        ctx: &SourceCtx,
        route: &Route,
        records: Vec<(P::Record, Vec<u8>)>,
        rejects: Vec<Reject>,
        resp: &HttpResponse,
    ) -> bool {
        let name = self.poller.name();
        for r in rejects {
            let dead = ctx.sink.wait_for_space(route, &ctx.shutdown, || {
                ctx.sink.dead_letter(route, &r.raw, &r.reason, resp.received_at)
            });
            log_unsent(dead.await, name);
        }
        for (record, raw) in records {
            log_unsent(ctx.sink.send(route, &record, &raw, &ctx.shutdown).await.map(drop), name);
        }
        !ctx.shutdown.is_cancelled()
    }
}

/// Logs a send that did not make it to librdkafka. Every such case is already counted by the
/// sink (`rejected`, `shutdown`); shutdown give-ups are expected and not logged one by one.
fn log_unsent(result: Result<(), SendError>, source: &str) {
    match result {
        Ok(()) | Err(SendError::ShutDown) => {}
        Err(error) => tracing::error!(%error, source, "record not accepted by the Kafka client"),
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
