//! The stream sink's outage spool: when records go to it (librdkafka's queue without room for
//! `engage_after`), appending, the drainer thread that hands spooled records back to it, and
//! taking back what Kafka has not acknowledged at shutdown.

use std::sync::PoisonError;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, PurgeConfig};

use super::{Inner, SendError, Sink, SpoolLeft};
use crate::kafka::context::pack_spooled;
use crate::kafka::spool::{Append, Entry, Next, Spool, UncleanStop};

impl Sink {
    /// Appends to the spool; `None` if `only_if_spooling` and it was drained meanwhile.
    pub(super) fn spool_append(
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

    /// Whether librdkafka's queue has stayed full for `engage_after` (no send succeeded since
    /// the first one that found it full): Kafka is not taking records, so the spool takes them.
    pub(super) fn queue_stalled(&self) -> bool {
        if self.inner.engage_after_us == 0 {
            return true;
        }
        let now = self.ctx().now_us().max(1);
        match self.inner.full_since_us.compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => false,
            Err(since) => now.saturating_sub(since) >= self.inner.engage_after_us,
        }
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

    /// True when the outage spool (if any) holds nothing unsent and nothing unacknowledged:
    /// what a previous process left in it is in Kafka now (or counted as failed).
    pub fn spool_caught_up(&self) -> bool {
        self.inner.spool.as_ref().is_none_or(|s| s.drained() && s.in_flight() == 0)
    }
}

/// The spool's drainer thread: takes spooled records in order and hands them to librdkafka,
/// waiting while its queue is full (Kafka still away); checkpoints the spool every 100 ms.
pub(super) fn drain(inner: &Inner, spool: &Spool) {
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
                Ok(()) => {
                    // Kafka is taking records again: a full queue after the spool drains starts
                    // a new `engage_after` wait.
                    if inner.full_since_us.load(Ordering::Relaxed) != 0 {
                        inner.full_since_us.store(0, Ordering::Relaxed);
                    }
                    break;
                }
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
