//! One poller's loop: wait for the gate (breaker, quota, rate limit) → fetch → on success
//! (normalize, commit, advance) or on failure (by error class: wait, park, pause, stop).

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use chrono::Utc;
use futures::future::BoxFuture;

use super::commit::{CommitError, Shared};
use super::quota::ProviderLimits;
use super::{Member, PollSettings, jittered, sleep_or_stop};
use crate::http::{self, FetchError, HttpResponse};
use crate::kafka::Route;
use crate::record::SourceState;
use crate::resilience::{Backoff, BreakerState, CircuitBreaker, ErrorClass};
use crate::source::{Cut, FatalError, Normalized, Poller, Reject, SourceCtx};
use crate::telemetry::events::{
    BreakerChanged, CatchUpCut, InternalEvent, QuotaExhausted, RateLimited, RequestBudgetUsedUp, RequestRefused,
    SourceRecovered, SourceRefused,
};
use crate::telemetry::handles::{BreakerGauge, PollerCounters};

/// How long a used-up quota pauses its provider when the provider did not say when it resets.
const QUOTA_FALLBACK: Duration = Duration::from_secs(3600);

/// A poller with its settings and its provider's shared limits.
pub(super) struct Polled<P: Poller> {
    pub(super) poller: P,
    pub(super) settings: PollSettings,
    pub(super) limits: Arc<ProviderLimits>,
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
        Box::pin(async move {
            let mut run = Run::start(*self, group, cursor, ctx)?;
            run.run().await
        })
    }
}

/// A failed attempt: its class, the response if there was one, what happened.
struct Failure {
    class: ErrorClass,
    resp: Option<HttpResponse>,
    what: String,
}

impl Failure {
    fn new(class: ErrorClass, resp: Option<HttpResponse>, what: impl Into<String>) -> Self {
        Self { class, resp, what: what.into() }
    }
}

/// What the loop does next.
enum Flow {
    /// Poll again after this wait.
    Wait(Duration),
    /// Shutdown came: return.
    Stop,
}

/// The loop's state.
struct Run<P: Poller> {
    member: Polled<P>,
    group: Arc<Shared>,
    ctx: SourceCtx,
    client: reqwest::Client,
    route: Route,
    cursor: P::Cursor,
    backoff: Backoff,
    breaker: CircuitBreaker,
    counters: PollerCounters,
    /// True while the provider refuses this source (it waits `refused_retry`/`missing_retry`).
    blocked: bool,
}

impl<P: Poller> Run<P> {
    fn start(
        member: Polled<P>,
        group: Arc<Shared>,
        stored: Option<serde_json::Value>,
        ctx: SourceCtx,
    ) -> Result<Self, FatalError> {
        let p = &member.poller;
        let fatal = |message: String| FatalError { source_name: p.name().to_string(), message };
        let cursor: P::Cursor = match stored {
            Some(v) => serde_json::from_value(v).map_err(|e| fatal(format!("stored cursor unreadable: {e}")))?,
            None => P::Cursor::default(),
        };
        let client = match p.http_client(&member.settings.http) {
            Some(c) => c.map_err(|e| fatal(format!("cannot build HTTP client: {e}")))?,
            None => http::client(&member.settings.http).map_err(|e| fatal(format!("cannot build HTTP client: {e}")))?,
        };
        let route: Route = group.sink.route::<P::Record>(p.provider());
        // Readiness checks the topics routed through the process's main sink: register ours.
        let _ = ctx.sink.route::<P::Record>(p.provider());
        let _ = ctx.sink.route::<SourceState>(&ctx.producer);
        let gauge = BreakerGauge::new(&ctx.metrics, p.provider(), p.metric_source());
        let breaker = CircuitBreaker::new(member.settings.breaker, Some(gauge));
        let counters = PollerCounters::new(&ctx.metrics, p.provider());
        let backoff = Backoff::new(member.settings.backoff);
        Ok(Self { member, group, ctx, client, route, cursor, backoff, breaker, counters, blocked: false })
    }

    fn poller(&self) -> &P {
        &self.member.poller
    }

    fn fatal(&self, message: String) -> FatalError {
        FatalError { source_name: self.poller().name().to_string(), message }
    }

    async fn run(&mut self) -> Result<(), FatalError> {
        let mut next_wait = Duration::ZERO;
        loop {
            if !sleep_or_stop(next_wait, &self.ctx.shutdown).await {
                return Ok(());
            }
            if let Some(wait) = self.gate() {
                next_wait = wait;
                continue;
            }
            let flow = match self.fetch().await {
                None => Flow::Stop,
                Some(Ok(resp)) => match self.on_success(resp).await? {
                    Ok(flow) => flow,
                    Err(failure) => self.on_failure(failure).await?,
                },
                Some(Err(failure)) => self.on_failure(failure).await?,
            };
            match flow {
                Flow::Wait(wait) => next_wait = wait,
                Flow::Stop => return Ok(()),
            }
        }
    }

    /// Whether a poll may go now: `Some(wait)` when the breaker is open or the quota used up.
    fn gate(&mut self) -> Option<Duration> {
        match self.breaker.allow() {
            Ok(Some(state)) => self.breaker_changed(state),
            Ok(None) => {}
            Err(wait) => return Some(wait),
        }
        let quota = self.member.limits.quota.as_ref()?;
        let wait = quota.lock().unwrap_or_else(PoisonError::into_inner).take(Utc::now()).err()?;
        let (p, counter) = (self.poller(), &self.counters.quota_exhausted);
        RequestBudgetUsedUp { counter, provider: p.provider(), source: p.name(), wait }.emit(&self.ctx);
        Some(wait)
    }

    /// Rate limit, prepare, request, classify. `None` on shutdown.
    async fn fetch(&self) -> Option<Result<HttpResponse, Failure>> {
        let (p, ctx) = (self.poller(), &self.ctx);
        tokio::select! {
            () = self.member.limits.limiter.acquire() => {}
            () = ctx.shutdown.cancelled() => return None,
        }
        let prepared = tokio::select! {
            r = p.prepare(&self.client, &self.cursor) => r,
            () = ctx.shutdown.cancelled() => return None,
        };
        if let Err((class, what)) = prepared {
            return Some(Err(Failure::new(class, None, what)));
        }
        let fetched = tokio::select! {
            r = http::fetch(p.request(&self.client, &self.cursor), self.member.settings.http.max_body_bytes) => r,
            () = ctx.shutdown.cancelled() => return None,
        };
        Some(match fetched {
            Ok(resp) => {
                if let Some(hold) = p.rate_hint(&resp) {
                    tracing::info!(
                        source = p.name(),
                        hold_secs = hold.as_secs_f64(),
                        "provider's rate window used up; holding requests"
                    );
                    self.member.limits.limiter.pause(hold);
                }
                match p.classify(&resp, &self.cursor) {
                    None => Ok(resp),
                    Some(class) => {
                        let what = format!("HTTP {}", resp.status);
                        Err(Failure::new(class, Some(resp), what))
                    }
                }
            }
            Err(e @ FetchError::Transport(_)) => {
                Err(Failure::new(ErrorClass::Retryable { after: None }, None, e.to_string()))
            }
            Err(e @ FetchError::TooLarge { .. }) => Err(Failure::new(ErrorClass::Permanent, None, e.to_string())),
            Err(FetchError::Refused(r)) => Err(Failure::new(ErrorClass::Refused, None, r.to_string())),
        })
    }

    /// A successful response: normalize (off the async worker), commit, advance the cursor.
    /// A commit that was aborted comes back as a retryable failure.
    async fn on_success(&mut self, resp: HttpResponse) -> Result<Result<Flow, Failure>, FatalError> {
        self.counters.call("ok");
        let p = &self.member.poller;
        // Parsing a large body is CPU work: off the async worker when the runtime can lend the
        // thread, so other sources' I/O keeps moving meanwhile.
        let parsed = if tokio::runtime::Handle::current().runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
        {
            tokio::task::block_in_place(|| p.normalize(&resp, &self.cursor))
        } else {
            p.normalize(&resp, &self.cursor)
        };
        let (committed, more) = match parsed {
            Ok(Normalized { records, rejects, cursor: next, more, cut, refused }) => {
                let committed = self.commit(records, rejects, &next, &resp).await;
                if let (Ok(()), Some(cut)) = (&committed, cut) {
                    self.report_cut(cut);
                }
                if let Some(why) = refused {
                    self.counters.call("refused");
                    self.report_refused(&why);
                }
                (committed.map(|()| next), more)
            }
            Err(reason) => {
                tracing::warn!(source = p.name(), error = %reason, "response could not be normalized; dead-lettered");
                let reject = Reject { raw: resp.body.to_vec(), reason };
                let cursor = self.cursor.clone();
                (self.commit(Vec::new(), vec![reject], &cursor, &resp).await.map(|()| cursor), false)
            }
        };
        let next = match committed {
            Ok(next) => next,
            Err(CommitError::ShutDown) => return Ok(Ok(Flow::Stop)),
            Err(CommitError::Fatal(m)) => return Err(self.fatal(self.group.fatal_tx(&m))),
            Err(CommitError::Retry(m)) => {
                let what = format!("Kafka transaction aborted: {m}");
                return Ok(Err(Failure::new(ErrorClass::Retryable { after: None }, None, what)));
            }
        };
        self.cursor = next;
        if let Some(state) = self.breaker.on_success() {
            self.breaker_changed(state);
        }
        if std::mem::take(&mut self.blocked) {
            let p = self.poller();
            self.ctx.health.set_blocked(p.name(), None);
            SourceRecovered { provider: p.provider(), source: p.name() }.emit(&self.ctx);
        }
        self.backoff.reset();
        self.ctx.health.set_connected(true, "last poll committed");
        self.ctx.health.mark_data();
        Ok(Ok(Flow::Wait(if more { Duration::ZERO } else { self.interval() })))
    }

    /// A failed attempt, by class.
    async fn on_failure(&mut self, failure: Failure) -> Result<Flow, FatalError> {
        let Failure { class, resp, what } = failure;
        self.counters.call(class.label());
        let (p, ctx) = (&self.member.poller, &self.ctx);
        let wait = match class {
            ErrorClass::Fatal => {
                ctx.health.set_connected(false, format!("fatal: {what}"));
                return Err(self.fatal(p.fatal_message(&what, resp.as_ref())));
            }
            ErrorClass::Denied | ErrorClass::NotFound => return self.park(class, &what),
            ErrorClass::QuotaExhausted { until } => {
                let wait = until.unwrap_or(QUOTA_FALLBACK);
                self.member.limits.limiter.pause(wait);
                let counter = &self.counters.quota_exhausted;
                QuotaExhausted { counter, provider: p.provider(), source: p.name(), detail: &what, wait }.emit(ctx);
                Duration::ZERO
            }
            ErrorClass::RateLimited { after } => {
                let wait = after.unwrap_or_else(|| self.backoff.next_delay());
                self.member.limits.limiter.pause(wait);
                RateLimited { provider: p.provider(), source: p.name(), wait }.emit(ctx);
                Duration::ZERO
            }
            ErrorClass::Retryable { after } => {
                ctx.health.set_connected(false, what.clone());
                if let Some(state) = self.breaker.on_failure() {
                    self.breaker_changed(state);
                }
                let wait = after.unwrap_or_else(|| self.backoff.next_delay());
                tracing::warn!(source = self.poller().name(), error = %what, retry_in_secs = wait.as_secs_f64(), "poll failed");
                wait
            }
            ErrorClass::Permanent | ErrorClass::Refused => {
                if class == ErrorClass::Refused {
                    ctx.health.set_connected(false, what.clone());
                    self.report_refused(&what);
                }
                if let Some(state) = self.breaker.on_failure() {
                    self.breaker_changed(state);
                }
                if let Some(resp) = &resp {
                    let reject = Reject { raw: resp.body.to_vec(), reason: what.clone() };
                    let cursor = self.cursor.clone();
                    match self.commit(Vec::new(), vec![reject], &cursor, resp).await {
                        Ok(()) | Err(CommitError::Retry(_)) => {}
                        Err(CommitError::ShutDown) => return Ok(Flow::Stop),
                        Err(CommitError::Fatal(m)) => return Err(self.fatal(self.group.fatal_tx(&m))),
                    }
                }
                if class == ErrorClass::Permanent {
                    tracing::warn!(source = self.poller().name(), error = %what, "poll failed permanently; will try again next interval");
                }
                self.interval()
            }
        };
        Ok(Flow::Wait(wait))
    }

    /// The provider refused this source (`Denied`) or does not know its name (`NotFound`): it
    /// waits, the others keep running; the process stops only when nothing can run.
    fn park(&mut self, class: ErrorClass, what: &str) -> Result<Flow, FatalError> {
        let (p, ctx) = (&self.member.poller, &self.ctx);
        let denied = class == ErrorClass::Denied;
        let (wait, why) = if denied {
            (self.group.refused_retry, format!("refused by {} ({what})", p.provider()))
        } else {
            (self.group.missing_retry, format!("not found at {} ({what})", p.provider()))
        };
        // Never sooner than the source's own interval.
        let wait = wait.max(p.interval());
        let detail = format!("{why}; next try in {}s", wait.as_secs());
        let first = !std::mem::replace(&mut self.blocked, true);
        let (provider, source) = (p.provider(), p.name());
        SourceRefused { provider, source, denied, error: what, detail: &detail, retry_in: wait, first }.emit(ctx);
        ctx.health.set_blocked(p.name(), Some(detail));
        if let Some(all) = ctx.process_health.nothing_can_run() {
            return Err(
                self.fatal(format!("no source can run: every configured source was refused by its provider ({all})"))
            );
        }
        Ok(Flow::Wait(wait))
    }

    async fn commit(
        &self,
        records: Vec<(P::Record, Vec<u8>)>,
        rejects: Vec<Reject>,
        next: &P::Cursor,
        resp: &HttpResponse,
    ) -> Result<(), CommitError> {
        let next = serde_json::to_value(next).unwrap_or(serde_json::Value::Null);
        let name = self.poller().name();
        self.group.commit(&self.ctx, &self.route, &self.counters, name, records, rejects, next, resp.received_at).await
    }

    fn interval(&self) -> Duration {
        jittered(self.poller().interval(), self.member.settings.interval_jitter)
    }

    fn breaker_changed(&self, state: BreakerState) {
        let p = self.poller();
        BreakerChanged { provider: p.provider(), source: p.name(), state }.emit(&self.ctx);
    }

    /// A catch-up cut: a `gap` event with the window, a counter, a warning.
    fn report_cut(&self, cut: Cut) {
        let (p, counter) = (self.poller(), &self.counters.catchup_cut);
        CatchUpCut { counter, provider: p.provider(), source: p.name(), cut }.emit(&self.ctx);
    }

    /// A refusal by one of our guards: one warning and a `request_refused` event.
    fn report_refused(&self, why: &str) {
        let p = self.poller();
        RequestRefused { provider: p.provider(), source: p.name(), why }.emit(&self.ctx);
    }
}
