//! The group's transactional producer and state: one Kafka transaction per poll outcome.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::dedup::DedupWindow;
use crate::kafka::{Outcome, Route, SendError, TxError, TxSink, until_done};
use crate::record::{Record, SourceState};
use crate::source::{Reject, SourceCtx};
use crate::telemetry::handles::{PollerCounters, TransactionCounters};

/// The group's transactional producer and state, shared by its pollers.
pub(super) struct Shared {
    pub(super) transactional_id: String,
    pub(super) key: String,
    pub(super) producer: String,
    pub(super) sink: TxSink,
    pub(super) state_route: Route,
    pub(super) state: tokio::sync::Mutex<GroupState>,
    pub(super) commit_timeout: Duration,
    pub(super) refused_retry: Duration,
    pub(super) missing_retry: Duration,
    pub(super) transactions: TransactionCounters,
}

#[derive(Debug, Clone)]
pub(super) struct GroupState {
    pub(super) cursors: BTreeMap<String, serde_json::Value>,
    pub(super) window: DedupWindow,
}

/// Why a poll's transaction did not commit.
#[derive(Debug)]
pub(super) enum CommitError {
    /// Shutdown came first; the transaction was aborted (or is left for the next start).
    ShutDown,
    /// Aborted; the poll is retried from the old cursor.
    Retry(String),
    /// The producer is unusable (fenced by a newer instance, or a fatal client error).
    Fatal(String),
}

impl Shared {
    /// The message of a fatal transaction error (fencing is the usual cause).
    pub(super) fn fatal_tx(&self, error: &str) -> String {
        format!(
            "Kafka transaction failed fatally ({error}); if another instance with transactional.id `{}` started, this one is fenced (give each instance its own runtime.instance_id)",
            self.transactional_id
        )
    }

    /// Writes one poll's outcome in one transaction: records whose key the window has not seen,
    /// dead letters, and the group state with `member`'s new cursor.
    #[allow(clippy::too_many_arguments, reason = "one call site per poll outcome; a struct would only rename them")]
    pub(super) async fn commit<R: Record>(
        &self,
        ctx: &SourceCtx,
        route: &Route,
        counters: &PollerCounters,
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
                counters.duplicates.inc_by(records.len() as u64);
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
                match self.sink.dead_letter(route, &r.raw, &r.reason, received_at, &ctx.shutdown).await {
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
        match outcome {
            Ok(()) => {
                *state = next;
                self.transactions.committed.inc();
                counters.duplicates.inc_by(skipped);
                Ok(())
            }
            Err(CommitError::Fatal(m)) => Err(CommitError::Fatal(m)),
            Err(e) => {
                TransactionCounters::aborted_records(&ctx.metrics, route.provider(), route.topic(), sent);
                TransactionCounters::aborted_records(&ctx.metrics, route.provider(), route.dlq_topic(), dead);
                let timeout = self.commit_timeout;
                let aborted = until_done(&ctx.shutdown, || self.sink.abort_transaction(timeout)).await;
                self.transactions.aborted.inc();
                match aborted {
                    Err(a) if a.fatal => Err(CommitError::Fatal(a.message)),
                    // Not aborted before shutdown: the next instance's init_transactions does it.
                    _ => Err(e),
                }
            }
        }
    }
}
