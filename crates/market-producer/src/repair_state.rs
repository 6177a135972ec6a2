//! Durable gap repairs: the gaps waiting for repair, kept in `ingest.state` and changed only in
//! Kafka transactions together with the repaired trades (docs/contracts.md, Delivery).
//!
//! The repair task owns a transactional producer (`transactional.id`
//! `market-producer.repair-<provider>[-<shard>].<instance_id>`) and one state record, keyed
//! `market-producer/repair-<provider>[-<shard>]`, in the `ingest.state/v1` schema: each waiting
//! gap is a cursor named by its window, holding the gap and the symbols already repaired.
//!
//! - A gap is stored (one small transaction) as soon as the task takes it from the stream.
//! - Each symbol's repaired trades are published in **one transaction with the state that marks
//!   the symbol done**: a process killed during a repair leaves either both or neither (the next
//!   process's `init_transactions` aborts what it left open), so a symbol is never published
//!   twice and never marked done without its trades.
//! - The gap leaves the state when its repair ends, repaired or not (then its event is sent).
//! - At start the task reads the state back (`read_committed`) and repairs every gap still in it,
//!   first, deduplicated against what the ticks topic already holds: what the dead process
//!   received live, and anything repaired before it died.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ingest_core::kafka::{Outcome, RestoreError, Route, SendError, TxError, TxSink, restore_state, until_done};
use ingest_core::record::{MarketTick, RepairCounts, SourceState, TickType};
use ingest_core::resilience::{Backoff, BackoffConfig};
use ingest_core::source::SourceCtx;
use ingest_core::ws::gap::Gap;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// How long a transaction call may take before it is retried.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long reading the state back may take.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(180);

/// Where a replica's repairs are kept: its state key and its producer's `transactional.id`.
#[derive(Debug, Clone)]
pub(crate) struct StoreNames {
    pub(crate) key: String,
    pub(crate) transactional_id: String,
}

/// One gap waiting for repair, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct StoredGap {
    /// The gap's window and reason, as its `gap` event had them.
    pub(crate) from: DateTime<Utc>,
    pub(crate) to: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(crate) why: String,
    /// The connection epoch of its `gap` event (of the process that published it).
    pub(crate) epoch: u64,
    /// Symbols whose trades are published and counted in `counts`.
    #[serde(default)]
    pub(crate) done: Vec<String>,
    /// The counts of the symbols done.
    #[serde(default)]
    pub(crate) counts: Counts,
}

/// What the symbols done came to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Counts {
    pub(crate) fetched: u64,
    pub(crate) published: u64,
    pub(crate) duplicates: u64,
    #[serde(default)]
    pub(crate) quotes_fetched: u64,
    #[serde(default)]
    pub(crate) quotes_published: u64,
    #[serde(default)]
    pub(crate) bars_fetched: u64,
    #[serde(default)]
    pub(crate) bars_published: u64,
}

impl StoredGap {
    pub(crate) fn new(gap: &Gap, epoch: u64) -> Self {
        Self { from: gap.from, to: gap.to, why: gap.why.clone(), epoch, done: Vec::new(), counts: Counts::default() }
    }

    /// The gap it stores.
    pub(crate) fn gap(&self) -> Gap {
        Gap { from: self.from, to: self.to, why: self.why.clone() }
    }

    /// Its name in the state: the window, in ns (unique: windows of one stream never coincide).
    pub(crate) fn id(&self) -> String {
        let ns = |t: DateTime<Utc>| t.timestamp_nanos_opt().unwrap_or(0);
        format!("{}-{}", ns(self.from), ns(self.to))
    }

    /// Adds the symbols' counts to `counts`.
    pub(crate) fn add_to(&self, counts: &mut RepairCounts) {
        counts.fetched += self.counts.fetched;
        counts.published += self.counts.published;
        counts.duplicates += self.counts.duplicates;
        counts.quotes_fetched += self.counts.quotes_fetched;
        counts.quotes_published += self.counts.quotes_published;
        counts.bars_fetched += self.counts.bars_fetched;
        counts.bars_published += self.counts.bars_published;
    }
}

/// What one commit published to the ticks topic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Published {
    /// Trades.
    pub(crate) trades: u64,
    /// Quotes.
    pub(crate) quotes: u64,
    /// Minute bars.
    pub(crate) bars: u64,
}

/// A change of the state, committed with the records sent before it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Change<'a> {
    /// A new gap waits.
    Add(&'a StoredGap),
    /// `symbol` of gap `id` is repaired, with these counts (`published`: the trades sent).
    Done { id: &'a str, symbol: &'a str, counts: Counts },
    /// Gap `id` is answered.
    Remove(&'a str),
}

/// Why a transaction did not commit.
#[derive(Debug)]
pub(crate) enum StoreError {
    /// Aborted (Kafka unavailable, a record refused): may be retried.
    Retry(String),
    /// The producer is unusable (fenced by another instance with the same id): repairs stop.
    Fatal(String),
    /// The producer is stopping.
    ShutDown,
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Retry(m) | Self::Fatal(m) => f.write_str(m),
            Self::ShutDown => f.write_str("the producer stopped"),
        }
    }
}

/// The repair task's transactional producer and the gaps waiting.
#[derive(Debug)]
pub(crate) struct Store {
    sink: TxSink,
    key: String,
    transactional_id: String,
    producer: String,
    state_route: Route,
    ticks_route: Route,
    pending: BTreeMap<String, StoredGap>,
    shutdown: CancellationToken,
}

impl Store {
    /// Registers the transactional producer `transactional_id` and reads the waiting gaps of
    /// `key` back; retries while Kafka does not answer, until shutdown (`Ok(None)`).
    pub(crate) async fn open(
        ctx: &SourceCtx,
        key: String,
        transactional_id: String,
        provider: &str,
    ) -> Result<Option<(Self, Vec<StoredGap>)>, String> {
        let fatal = CancellationToken::new();
        let sink = TxSink::new(
            &ctx.kafka,
            &ctx.producer,
            &transactional_id,
            ctx.metrics.clone(),
            ctx.process_health.clone(),
            fatal,
        )
        .map_err(|e| format!("cannot create the repair's transactional producer: {e}"))?;
        let registered = tokio::select! {
            r = until_done(&ctx.shutdown, || sink.init_transactions(COMMIT_TIMEOUT)) => r,
            () = ctx.shutdown.cancelled() => return Ok(None),
        };
        match registered {
            Ok(()) => {}
            Err(_) if ctx.shutdown.is_cancelled() => return Ok(None),
            Err(e) => return Err(format!("cannot initialize the repair's Kafka transactions: {e}")),
        }
        let topic = ctx.kafka.topics.state.name.clone();
        let mut backoff = Backoff::new(BackoffConfig::default());
        let stored = loop {
            let (kafka, topic, k) = (ctx.kafka.clone(), topic.clone(), key.clone());
            let restored = tokio::task::spawn_blocking(move || restore_state(&kafka, &topic, &k, RESTORE_TIMEOUT))
                .await
                .map_err(|e| format!("reading the repair state panicked: {e}"))?;
            match restored {
                Ok(s) => break s,
                Err(RestoreError::Unreadable(m)) => return Err(m),
                Err(RestoreError::Kafka(m)) => {
                    tracing::warn!(error = %m, "cannot read the gaps waiting for repair yet; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(backoff.next_delay()) => {}
                        () = ctx.shutdown.cancelled() => return Ok(None),
                    }
                }
            }
        };
        let mut pending = BTreeMap::new();
        for (id, v) in stored.map(|s| s.cursors).unwrap_or_default() {
            let gap: StoredGap = serde_json::from_value(v)
                .map_err(|e| format!("the stored repair `{id}` of `{key}` is unreadable ({e})"))?;
            pending.insert(id, gap);
        }
        let waiting: Vec<StoredGap> = pending.values().cloned().collect();
        if !waiting.is_empty() {
            tracing::info!(
                gaps = waiting.len(),
                "gaps an earlier process left waiting for repair; repairing them first"
            );
        }
        let store = Self {
            state_route: sink.route::<SourceState>(&ctx.producer),
            ticks_route: sink.route::<MarketTick<'_>>(provider),
            sink,
            key,
            transactional_id,
            producer: ctx.producer.clone(),
            pending,
            shutdown: ctx.shutdown.clone(),
        };
        Ok(Some((store, waiting)))
    }

    /// The gaps waiting.
    pub(crate) fn waiting(&self) -> usize {
        self.pending.len()
    }

    /// In one transaction: `ticks` (each with its raw history trade; those the tick cannot be
    /// made of are dead-lettered) and the state after `change`. Returns how many were
    /// published.
    pub(crate) async fn commit(
        &mut self,
        ticks: &[(Option<MarketTick<'_>>, Vec<u8>)],
        change: Change<'_>,
    ) -> Result<Published, StoreError> {
        let txid = self.transactional_id.clone();
        let classify = |e: TxError| {
            if e.fatal {
                StoreError::Fatal(format!(
                    "the repair's Kafka transactions failed fatally ({e}); if another instance with transactional.id `{txid}` started, this one is fenced (give each instance its own runtime.instance_id)"
                ))
            } else {
                StoreError::Retry(e.message)
            }
        };
        self.sink.begin_transaction().map_err(classify)?;
        let sent: Result<(Published, BTreeMap<String, StoredGap>), StoreError> = async {
            let mut published = Published::default();
            for (tick, raw) in ticks {
                let sent = match tick {
                    Some(t) => self.sink.send(&self.ticks_route, t, raw, &self.shutdown).await,
                    None => {
                        let why = "a history record the stream would not have published (a time out of range, a one-sided quote)";
                        match self.sink.dead_letter(&self.ticks_route, raw, why, Utc::now(), &self.shutdown).await {
                            Ok(()) => continue,
                            Err(e) => Err(e),
                        }
                    }
                };
                match sent {
                    Ok(Outcome::Enqueued) if tick.as_ref().is_some_and(|t| t.event_type == TickType::Bar) => {
                        published.bars += 1;
                    }
                    Ok(Outcome::Enqueued) if tick.as_ref().is_some_and(|t| t.event_type == TickType::Quote) => {
                        published.quotes += 1;
                    }
                    Ok(Outcome::Enqueued) => published.trades += 1,
                    // Dead-lettered with the reason and counted by the sink.
                    Ok(Outcome::DeadLettered(_)) => {}
                    Err(SendError::ShutDown) => return Err(StoreError::ShutDown),
                    Err(e) => return Err(StoreError::Retry(format!("the repaired trades could not be sent: {e}"))),
                }
            }
            let next = self.next(&change, published);
            let record = SourceState {
                source: self.key.clone(),
                cursors: next.iter().map(|(id, g)| (id.clone(), serde_json::to_value(g).unwrap_or_default())).collect(),
                seen: Vec::new(),
                provider: self.producer.clone(),
                updated_at: Utc::now(),
            };
            match self.sink.send(&self.state_route, &record, b"", &self.shutdown).await {
                Ok(Outcome::Enqueued) => {}
                Ok(Outcome::DeadLettered(e)) => {
                    return Err(StoreError::Retry(format!("the repair state was refused: {e}")));
                }
                Err(SendError::ShutDown) => return Err(StoreError::ShutDown),
                Err(e) => return Err(StoreError::Retry(e.to_string())),
            }
            until_done(&self.shutdown, || self.sink.commit_transaction(COMMIT_TIMEOUT)).await.map_err(classify)?;
            Ok((published, next))
        }
        .await;
        match sent {
            Ok((published, next)) => {
                self.pending = next;
                Ok(published)
            }
            Err(StoreError::Fatal(m)) => Err(StoreError::Fatal(m)),
            Err(e) => {
                // Not aborted before a shutdown: the next process's init_transactions does it.
                if let Err(a) = until_done(&self.shutdown, || self.sink.abort_transaction(COMMIT_TIMEOUT)).await
                    && a.fatal
                {
                    return Err(classify(a));
                }
                Err(e)
            }
        }
    }

    /// The waiting gaps after `change`, `published` sent with it.
    fn next(&self, change: &Change<'_>, published: Published) -> BTreeMap<String, StoredGap> {
        let mut next = self.pending.clone();
        match change {
            Change::Add(g) => {
                next.insert(g.id(), (*g).clone());
            }
            Change::Done { id, symbol, counts } => {
                if let Some(g) = next.get_mut(*id) {
                    g.done.push((*symbol).to_string());
                    g.counts.fetched += counts.fetched;
                    g.counts.published += published.trades;
                    g.counts.duplicates += counts.duplicates;
                    g.counts.quotes_fetched += counts.quotes_fetched;
                    g.counts.quotes_published += published.quotes;
                    g.counts.bars_fetched += counts.bars_fetched;
                    g.counts.bars_published += published.bars;
                }
            }
            Change::Remove(id) => {
                next.remove(*id);
            }
        }
        next
    }

    /// [`Store::commit`], retried with backoff while Kafka refuses, until `deadline`.
    pub(crate) async fn commit_until(
        &mut self,
        ticks: &[(Option<MarketTick<'_>>, Vec<u8>)],
        change: Change<'_>,
        deadline: tokio::time::Instant,
    ) -> Result<Published, StoreError> {
        let mut backoff = Backoff::new(BackoffConfig::default());
        loop {
            match self.commit(ticks, change).await {
                Err(StoreError::Retry(m)) => {
                    let wait = backoff.next_delay();
                    if tokio::time::Instant::now() + wait >= deadline {
                        return Err(StoreError::Retry(m));
                    }
                    tracing::warn!(error = %m, "a repair transaction was aborted; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = self.shutdown.cancelled() => return Err(StoreError::ShutDown),
                    }
                }
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_gap_reads_back_as_written_and_is_named_by_its_window() {
        let from = DateTime::from_timestamp_millis(1_765_000_000_123).unwrap();
        let gap = Gap { from, to: from + chrono::Duration::milliseconds(2500), why: String::new() };
        let mut g = StoredGap::new(&gap, 3);
        g.done.push("AAPL".into());
        g.counts = Counts {
            fetched: 10,
            published: 7,
            duplicates: 3,
            bars_fetched: 2,
            bars_published: 1,
            ..Counts::default()
        };
        let json = serde_json::to_value(&g).unwrap();
        assert!(json.get("why").is_none(), "a reconnect's gap has no reason of its own");
        assert_eq!(serde_json::from_value::<StoredGap>(json).unwrap(), g);
        assert_eq!(g.id(), "1765000000123000000-1765000002623000000");
        assert_eq!(g.gap(), gap);
        let mut c = RepairCounts::default();
        g.add_to(&mut c);
        assert_eq!((c.fetched, c.published, c.duplicates, c.bars_fetched, c.bars_published), (10, 7, 3, 2, 1));
        // A state written before bars were repaired reads back with none.
        let old = serde_json::json!({"from": from, "to": gap.to, "epoch": 3, "done": [], "counts": {"fetched": 1, "published": 1, "duplicates": 0}});
        assert_eq!(serde_json::from_value::<StoredGap>(old).unwrap().counts.bars_fetched, 0);
    }
}
