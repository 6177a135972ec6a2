//! What producers implement: a [`Source`] (anything that runs and hands records to the sink,
//! e.g. a WebSocket feed) or a [`Poller`] (request → response → pure `normalize`), which a
//! [`crate::poll::PollGroup`] runs exactly once: schedule with jitter, rate limits and daily
//! quotas, circuit breaker, retries with backoff, body caps, metrics, dead letters, and the
//! cursor and dedup window committed with the records in one Kafka transaction.

use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::config::KafkaConfig;
use crate::http::HttpResponse;
use crate::kafka::Sink;
use crate::record::{IngestEvent, Record};
use crate::resilience::{ErrorClass, classify_http};
use crate::telemetry::{Health, Metrics, SourceHealth};

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
    /// The Kafka settings (sources with their own producer, e.g. transactional ones, use them).
    pub kafka: KafkaConfig,
    /// The process's health (a source's own producer reports fatal client states there).
    pub process_health: Health,
}

impl SourceCtx {
    /// For streaming sources: when the previous process died without a clean stop (its spool
    /// says so), the start of the window in which data may be lost and why. The source
    /// publishes it as a gap ending at its first subscription.
    pub fn restart_gap(&self) -> Option<(chrono::DateTime<chrono::Utc>, String)> {
        let u = self.sink.unclean_stop()?;
        let from = chrono::DateTime::from_timestamp_millis(u.at_risk_since_ms)?;
        let why = format!(
            "the previous process (pid {}) stopped without a clean shutdown: records it held only in memory and data sent while no process ran are lost",
            u.pid
        );
        Some((from, why))
    }
}

impl crate::telemetry::events::EventSink for SourceCtx {
    fn producer(&self) -> &str {
        &self.producer
    }
    fn publish(&self, event: &IngestEvent) {
        self.sink.publish_event(event);
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

    /// How many independent members it runs (a poll group's pollers), each of which a provider
    /// may refuse on its own.
    fn members(&self) -> usize {
        1
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
    /// Items the provider still had that this poll gave up on (a catch-up cut at its page
    /// limit): published as a `gap` event and counted, never dropped silently.
    pub cut: Option<Cut>,
    /// A next page (or redirect) the response pointed to that a guard refused (another origin,
    /// https to http, the SSRF policy): not fetched; counted as `outcome="refused"` with a
    /// `request_refused` event saying why.
    pub refused: Option<String>,
}

impl<R, C> Normalized<R, C> {
    /// Nothing yet, ending at `cursor`, no further page.
    pub fn at(cursor: C) -> Self {
        Self { records: Vec::new(), rejects: Vec::new(), cursor, more: false, cut: None, refused: None }
    }
}

/// A window of items a poll knowingly did not read.
#[derive(Debug, Clone, PartialEq)]
pub struct Cut {
    /// The older edge: the time of the last item read before (the catch-up's target), if known.
    pub from: Option<chrono::DateTime<chrono::Utc>>,
    /// The newer edge: the time of the oldest item this catch-up read.
    pub to: Option<chrono::DateTime<chrono::Utc>>,
    /// What was given up and why.
    pub message: String,
}

/// A polled provider endpoint. Everything but `request` and `normalize` has a default.
pub trait Poller: Send + Sync + 'static {
    /// The record type produced.
    type Record: Record + Send + Sync + 'static;
    /// Where the next poll starts (a timestamp, an id, a page token). Stored as JSON in
    /// `ingest.state`.
    type Cursor: Clone + Default + Send + Sync + std::fmt::Debug + Serialize + DeserializeOwned + 'static;

    /// Source name (unique within the producer).
    fn name(&self) -> &str;
    /// Provider label for metrics and records.
    fn provider(&self) -> &str;
    /// The `source` label of this poller's circuit-breaker series: a bounded name, never a
    /// symbol, an id or a query (pollers that share it share the series, which shows the worst
    /// of their breakers). The default is the provider; a source the operator names (an altdata
    /// source) returns that name.
    fn metric_source(&self) -> &str {
        self.provider()
    }
    /// Time between polls.
    fn interval(&self) -> Duration;
    /// The HTTP client of this poller, when it needs its own (a guarded resolver, a redirect
    /// policy); `None` uses the shared one built from the poll settings.
    fn http_client(&self, _cfg: &crate::http::HttpConfig) -> Option<Result<reqwest::Client, String>> {
        None
    }
    /// Runs before each request, e.g. to get or refresh an OAuth token the request will carry.
    /// `Err` counts as a failed call of that class (a refused client secret is `Fatal`).
    /// `cursor` is where the request will go (a next page's URL, for instance).
    fn prepare<'a>(
        &'a self,
        _client: &'a reqwest::Client,
        _cursor: &'a Self::Cursor,
    ) -> BoxFuture<'a, Result<(), (ErrorClass, String)>> {
        Box::pin(async { Ok(()) })
    }
    /// How long to hold this provider's next requests after `resp`, read from its rate-limit
    /// headers (e.g. nothing left in the window until the reset). Applied to the provider's
    /// shared limiter, whatever the response's status.
    fn rate_hint(&self, _resp: &HttpResponse) -> Option<Duration> {
        None
    }
    /// The request for the next poll.
    fn request(&self, client: &reqwest::Client, cursor: &Self::Cursor) -> reqwest::RequestBuilder;
    /// Classifies a response to the request made for `cursor`: `None` for success. The default is generic HTTP; providers that
    /// report errors in 200 bodies override it.
    fn classify(&self, resp: &HttpResponse, _cursor: &Self::Cursor) -> Option<ErrorClass> {
        classify_http(resp.status, resp.header("retry-after"), SystemTime::now())
    }
    /// The message a fatal response (a refused key every source of the provider shares) stops
    /// the producer with. Providers override it to name their key's setting.
    fn fatal_message(&self, what: &str, _resp: Option<&HttpResponse>) -> String {
        format!("the provider refused the credentials every source of it shares ({what}); check the API key")
    }
    /// Pure conversion of a successful response. `Err` means the whole body is unusable (it is
    /// dead-lettered with the reason).
    fn normalize(
        &self,
        resp: &HttpResponse,
        cursor: &Self::Cursor,
    ) -> Result<Normalized<Self::Record, Self::Cursor>, String>;
}
