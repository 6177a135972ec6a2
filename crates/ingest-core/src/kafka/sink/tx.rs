//! The transactional sink of polled sources: begin, send, commit or abort. It has no outage
//! spool (its records must be inside the transaction; a failed one is retried from the last
//! committed cursor), and only it can open a transaction: both are facts of its type.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rdkafka::error::KafkaError;
use rdkafka::producer::{Producer, ThreadedProducer};
use tokio_util::sync::CancellationToken;

use super::{Outcome, Route, SendError, Sink, SinkError};
use crate::config::KafkaConfig;
use crate::kafka::SinkContext;
use crate::record::Record;
use crate::resilience::{Backoff, BackoffConfig};
use crate::telemetry::{Health, Metrics};

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

/// A sink whose producer is transactional (one per instance of a polled source group; a newer
/// producer with the same `transactional.id` fences this one). Call
/// [`TxSink::init_transactions`] before the first transaction.
#[derive(Clone, Debug)]
pub struct TxSink {
    sink: Sink,
}

impl TxSink {
    /// Creates the transactional producer `transactional_id` of `producer_name`.
    pub fn new(
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
        let (sink, _) = Sink::build(cfg, producer_name, &extra, metrics, health, fatal, None)?;
        Ok(Self { sink })
    }

    /// The route for records of type `R` from `provider` ([`Sink::route`]).
    pub fn route<R: Record>(&self, provider: &str) -> Route {
        self.sink.route::<R>(provider)
    }

    /// Validates and sends `record` in the open transaction ([`Sink::send`]).
    pub async fn send<R: Record>(
        &self,
        route: &Route,
        record: &R,
        raw: &[u8],
        shutdown: &CancellationToken,
    ) -> Result<Outcome, SendError> {
        self.sink.send(route, record, raw, shutdown).await
    }

    /// Dead-letters `raw` in the open transaction, waiting for queue space
    /// ([`Sink::dead_letter`], [`Sink::wait_for_space`]).
    pub async fn dead_letter(
        &self,
        route: &Route,
        raw: &[u8],
        reason: &str,
        received_at: DateTime<Utc>,
        shutdown: &CancellationToken,
    ) -> Result<(), SendError> {
        self.sink.wait_for_space(route, shutdown, || self.sink.dead_letter(route, raw, reason, received_at)).await
    }

    /// [`Sink::check_fatal`].
    pub fn check_fatal(&self) -> Option<String> {
        self.sink.check_fatal()
    }

    async fn blocking<T: Send + 'static>(
        &self,
        call: impl FnOnce(&ThreadedProducer<SinkContext>) -> Result<T, KafkaError> + Send + 'static,
    ) -> Result<T, TxError> {
        let sink = self.sink.clone();
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
        self.sink.inner.producer.begin_transaction().map_err(TxError::from)
    }

    /// Flushes and commits the current transaction.
    pub async fn commit_transaction(&self, timeout: Duration) -> Result<(), TxError> {
        self.blocking(move |p| p.commit_transaction(timeout)).await
    }

    /// Aborts the current transaction: its records become invisible to `read_committed` readers.
    pub async fn abort_transaction(&self, timeout: Duration) -> Result<(), TxError> {
        self.blocking(move |p| p.abort_transaction(timeout)).await
    }
}

/// Repeats a transaction call while librdkafka says it may be retried (a timeout), up to the
/// shutdown.
pub async fn until_done<F, Fut>(shutdown: &CancellationToken, mut call: F) -> Result<(), TxError>
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
                tokio::select! {
                    () = tokio::time::sleep(backoff.next_delay()) => {}
                    () = shutdown.cancelled() => return Err(e),
                }
            }
            other => return other,
        }
    }
}
