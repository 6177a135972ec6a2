//! The librdkafka callbacks: delivery reports drive the metrics; client errors drive health;
//! librdkafka's own logs go to `tracing`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock, PoisonError, RwLock};
use std::time::{Duration, Instant};

use prometheus::{Histogram, IntCounter};
use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers as _, Message};
use rdkafka::producer::{DeliveryResult, ProducerContext};
use tokio_util::sync::CancellationToken;

use super::spool::{Rescued, SEQ_BITS, Spool};
use crate::telemetry::handles::kafka_error;
use crate::telemetry::throttle::LogThrottle;
use crate::telemetry::{Health, Metrics};

/// Metric handles of one (topic, provider) pair, resolved once when the route is made.
#[derive(Debug)]
pub(crate) struct RouteStats {
    pub(crate) topic: String,
    pub(crate) provider: String,
    pub(crate) sent: IntCounter,
    pub(crate) failed_delivery: IntCounter,
    pub(crate) latency: Histogram,
    /// `messages_failed{reason="rejected"}`: refused by the client when sent from the spool.
    pub(crate) rejected: IntCounter,
    /// `messages_failed{reason="spool_overflow"}`: deleted unsent by the drop-oldest policy.
    pub(crate) overflow: IntCounter,
}

/// Append-only table of routes; the delivery opaque carries an index into it.
pub(crate) type RouteTable = Arc<RwLock<Vec<RouteStats>>>;

/// The delivery opaque is one machine word, so a record costs no allocation:
/// - sent directly: `[0][route: 19 bits][enqueue time: 44 bits]` (microseconds since the sink
///   started: 2^44 µs ≈ 203 days, after which the latency clock wraps and one sample may be off);
/// - sent from the spool: `[1][route: 23 bits][spool sequence: 40 bits]` (the spool knows when
///   the record was spooled).
const TIME_BITS: u32 = 44;
const TIME_MASK: usize = (1 << TIME_BITS) - 1;
const SPOOLED: usize = 1 << (usize::BITS - 1);
const SEQ_MASK: usize = (1 << SEQ_BITS) - 1;
/// Route indexes must fit in the bits left.
pub(crate) const MAX_ROUTES: usize = 1 << (usize::BITS - TIME_BITS - 1);

#[cfg(test)]
pub(crate) fn pack(route: usize, epoch: Instant) -> usize {
    pack_at(route, u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX))
}

/// As [`pack`] for a record handed over `us` microseconds after the sink started.
pub(crate) fn pack_at(route: usize, us: u64) -> usize {
    (route << TIME_BITS) | (usize::try_from(us).unwrap_or(usize::MAX) & TIME_MASK)
}

pub(crate) fn pack_spooled(route: usize, seq: u64) -> usize {
    SPOOLED | (route << SEQ_BITS) | (usize::try_from(seq).unwrap_or(usize::MAX) & SEQ_MASK)
}

/// What a delivery opaque says.
#[derive(Debug, PartialEq, Eq)]
enum Opaque {
    Direct { route: usize, took: Duration, sent_us: u64 },
    Spooled { route: usize, seq: u64 },
}

fn unpack(opaque: usize, epoch: Instant) -> Opaque {
    if opaque & SPOOLED != 0 {
        return Opaque::Spooled { route: (opaque & !SPOOLED) >> SEQ_BITS, seq: (opaque & SEQ_MASK) as u64 };
    }
    let route = opaque >> TIME_BITS;
    let sent_us = (opaque & TIME_MASK) as u64;
    let now_us = u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX) & TIME_MASK as u64;
    let took = now_us.wrapping_sub(sent_us) & TIME_MASK as u64;
    Opaque::Direct { route, took: Duration::from_micros(took), sent_us }
}

/// Context shared by the producer's callbacks.
pub struct SinkContext {
    pub(crate) routes: RouteTable,
    pub(crate) epoch: Instant,
    pub(crate) metrics: Metrics,
    pub(crate) health: Health,
    /// Cancelled on a fatal client error; the runtime exits 1.
    pub(crate) fatal: CancellationToken,
    /// Woken on every client error, so the sink can ask librdkafka whether it is now in a
    /// fatal state (the error event carries the underlying code, not `__FATAL`).
    pub(crate) errors: Arc<tokio::sync::Notify>,
    /// The outage spool, when the sink has one: delivery reports of spooled records settle
    /// them there.
    pub(crate) spool: OnceLock<Arc<Spool>>,
    /// Wall clock at `epoch` (ms since the Unix epoch).
    pub(crate) epoch_wall_ms: i64,
    /// With a spool: records handed straight to librdkafka and not yet settled, counted per
    /// second of hand-off (sorted), so the session file can say since when memory-only records
    /// are at risk if the process dies.
    pub(crate) unacked: Option<Mutex<VecDeque<(u64, u64)>>>,
    /// Last time (ms since epoch) a delivery failure was logged; failures are counted always,
    /// logged at most once per second.
    last_failure_log_ms: AtomicU64,
    suppressed_failures: AtomicU64,
    /// Armed at shutdown with a spool: records purged from librdkafka's queue are collected
    /// here (to go to the spool's front) instead of being counted as failed.
    pub(crate) rescue: Mutex<Option<Vec<Rescued>>>,
    /// Set once any broker answered a metadata request (the start-up timeout watches it).
    pub(crate) answered: AtomicBool,
}

/// Client errors and librdkafka's own log lines of every Kafka client of the process (the sink,
/// the transactional producers, the state readers report the same unreachable broker): each
/// distinct one logged once per 30 s with its repeat count (a wrong broker address otherwise
/// logs dozens of lines a second). Every error is still counted in the metrics.
static CLIENT_LOG: LazyLock<LogThrottle> = LazyLock::new(|| LogThrottle::new(Duration::from_secs(30)));

impl std::fmt::Debug for SinkContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkContext").finish_non_exhaustive()
    }
}

impl SinkContext {
    pub(crate) fn new(metrics: Metrics, health: Health, fatal: CancellationToken) -> Self {
        // The kind an on-call engineer alerts on exists from the start, at 0 (`kind` is the
        // librdkafka error code's name, as below).
        let _ = kafka_error(&metrics, &format!("{:?}", RDKafkaErrorCode::AllBrokersDown));
        Self {
            routes: Arc::new(RwLock::new(Vec::new())),
            epoch: Instant::now(),
            epoch_wall_ms: chrono::Utc::now().timestamp_millis(),
            unacked: None,
            metrics,
            health,
            fatal,
            errors: Arc::new(tokio::sync::Notify::new()),
            spool: OnceLock::new(),
            last_failure_log_ms: AtomicU64::new(0),
            suppressed_failures: AtomicU64::new(0),
            rescue: Mutex::new(None),
            answered: AtomicBool::new(false),
        }
    }

    /// The outcome of a Kafka check, in the one pair that reports it: readiness (`/ready`) and
    /// `producer_kafka_ready` (which the unreachable alert reads).
    pub(crate) fn set_kafka(&self, ok: bool, detail: String) {
        self.health.set_kafka(ok, detail);
        self.metrics.kafka_ready.set(i64::from(ok));
    }

    /// Microseconds since the sink started.
    pub(crate) fn now_us(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn buckets(&self) -> Option<std::sync::MutexGuard<'_, VecDeque<(u64, u64)>>> {
        self.unacked.as_ref().map(|m| m.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// A record handed to librdkafka at `us` (before the send: its report may come at once).
    pub(crate) fn note_handed(&self, us: u64) {
        let sec = (us & TIME_MASK as u64) / 1_000_000;
        if let Some(mut b) = self.buckets() {
            match b.iter().rposition(|(s, _)| *s <= sec) {
                Some(i) if b[i].0 == sec => b[i].1 += 1,
                Some(i) => b.insert(i + 1, (sec, 1)),
                None => b.push_front((sec, 1)),
            }
        }
    }

    /// The record handed at `us` was settled (or never sent).
    pub(crate) fn note_settled(&self, us: u64) {
        let sec = (us & TIME_MASK as u64) / 1_000_000;
        if let Some(mut b) = self.buckets() {
            if let Some(i) = b.iter().position(|(s, _)| *s == sec) {
                b[i].1 = b[i].1.saturating_sub(1);
            }
            while b.front().is_some_and(|(_, n)| *n == 0) {
                b.pop_front();
            }
        }
    }

    /// Wall-clock ms before which every record handed straight to librdkafka was settled: the
    /// start of the oldest second holding an unsettled one, minus a second of margin (so the
    /// bound also covers the record handed just before it).
    pub(crate) fn oldest_unacked_ms(&self) -> Option<i64> {
        let b = self.buckets()?;
        let (sec, _) = b.front()?;
        Some(self.epoch_wall_ms + i64::try_from(sec * 1000).unwrap_or(i64::MAX) - 1000)
    }

    fn log_failure(&self, topic: &str, error: &KafkaError) {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.last_failure_log_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 1000
            && self.last_failure_log_ms.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            let suppressed = self.suppressed_failures.swap(0, Ordering::Relaxed);
            tracing::error!(topic, %error, suppressed, "Kafka did not acknowledge a record; it is counted as failed");
        } else {
            self.suppressed_failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A record purged from librdkafka's queue while a rescue is armed: collected (with what
    /// orders it) rather than counted. `false` if no rescue is armed.
    fn take_back(&self, opaque: usize, queued: bool, message: &BorrowedMessage<'_>) -> bool {
        let mut rescue = self.rescue.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(taken) = rescue.as_mut() else { return false };
        let (route, handed_us, ts_ms, spooled_seq) = match unpack(opaque, self.epoch) {
            Opaque::Direct { route, sent_us, .. } => {
                self.note_settled(sent_us);
                (route, sent_us, chrono::Utc::now().timestamp_millis(), None)
            }
            Opaque::Spooled { route, seq } => {
                let (ts, handed) = self.spool.get().and_then(|s| s.slot_times(seq)).unwrap_or_default();
                (route, handed, ts, Some(seq))
            }
        };
        let provider =
            self.routes.read().unwrap_or_else(PoisonError::into_inner).get(route).map(|r| r.provider.clone());
        let headers = message.headers().map_or_else(Vec::new, |h| {
            (0..h.count())
                .filter_map(|i| h.try_get(i))
                .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                .collect()
        });
        taken.push(Rescued {
            route,
            order: (handed_us & TIME_MASK as u64, u8::from(queued)),
            spooled_seq,
            ts_ms,
            topic: message.topic().to_string(),
            provider: provider.unwrap_or_default(),
            key: message.key().unwrap_or_default().to_vec(),
            headers,
            payload: message.payload().unwrap_or_default().to_vec(),
        });
        true
    }
}

impl ClientContext for SinkContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        if matches!(level, RDKafkaLogLevel::Debug) {
            tracing::debug!(target: "librdkafka", fac, "{message}");
            return;
        }
        let Some(repeated) = CLIENT_LOG.admit(&format!("{fac} {message}"), Instant::now()) else { return };
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", fac, repeated, "{message}");
            }
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", fac, repeated, "{message}"),
            _ => tracing::info!(target: "librdkafka", fac, repeated, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let code = error.rdkafka_error_code();
        let kind = code.map_or_else(|| "other".to_string(), |c| format!("{c:?}"));
        kafka_error(&self.metrics, &kind).inc();
        // Fatal state is not decided here: the error event carries the underlying code, so the
        // sink asks librdkafka itself (`Sink::check_fatal`) when woken below.
        if code == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.set_kafka(false, format!("no broker reachable (librdkafka: {reason})"));
        }
        if let Some(repeated) = CLIENT_LOG.admit(&format!("{kind} {reason}"), Instant::now()) {
            match code {
                // librdkafka's text counts brokers it had connected to ("0/1 brokers are down"
                // when the address never answered): say what it means.
                Some(RDKafkaErrorCode::AllBrokersDown) => tracing::warn!(
                    error = reason,
                    repeated,
                    "no Kafka broker is reachable; records are held and retried (check KAFKA_BROKERS and the network)"
                ),
                _ => tracing::warn!(error = reason, kind, repeated, "Kafka client error"),
            }
        }
        self.errors.notify_one();
    }
}

impl ProducerContext for SinkContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        self.metrics.kafka_in_flight.dec();
        if let Err((
            KafkaError::MessageProduction(code @ (RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight)),
            message,
        )) = result
            && self.take_back(opaque, *code == RDKafkaErrorCode::PurgeQueue, message)
        {
            return;
        }
        let (route, took) = match unpack(opaque, self.epoch) {
            Opaque::Direct { route, took, sent_us } => {
                self.note_settled(sent_us);
                (route, took)
            }
            Opaque::Spooled { route, seq } => {
                // Spooled at `ts`: the latency includes the time spent waiting on disk.
                let ts = self.spool.get().and_then(|s| s.settle(seq)).unwrap_or_default();
                let ms = (chrono::Utc::now().timestamp_millis() - ts).max(0);
                (route, Duration::from_millis(ms.unsigned_abs()))
            }
        };
        let routes = self.routes.read().unwrap_or_else(PoisonError::into_inner);
        let Some(stats) = routes.get(route) else {
            tracing::error!(route, "delivery report for an unknown route");
            return;
        };
        match result {
            Ok(_) => {
                stats.sent.inc();
                stats.latency.observe(took.as_secs_f64());
            }
            Err((error, message)) => {
                stats.failed_delivery.inc();
                self.log_failure(message.topic(), error);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opaque_round_trips_route_and_measures_time() {
        let epoch = Instant::now() - Duration::from_secs(3);
        let o = pack(1234, epoch);
        crate::blocking::sleep(Duration::from_millis(2));
        let Opaque::Direct { route, took, .. } = unpack(o, epoch) else { panic!("direct opaque read as spooled") };
        assert_eq!(route, 1234);
        assert!(took >= Duration::from_millis(2) && took < Duration::from_secs(60), "{took:?}");
        assert!(
            matches!(unpack(pack(MAX_ROUTES - 1, epoch), epoch), Opaque::Direct { route, .. } if route == MAX_ROUTES - 1)
        );
        let seq = (1u64 << 40) + 77;
        assert_eq!(
            unpack(pack_spooled(MAX_ROUTES - 1, seq), epoch),
            Opaque::Spooled { route: MAX_ROUTES - 1, seq: 77 }
        );
        assert_eq!(unpack(pack_spooled(3, 0), epoch), Opaque::Spooled { route: 3, seq: 0 });
    }
}

#[cfg(test)]
mod unacked_tests {
    use super::*;

    #[test]
    fn the_oldest_unsettled_second_bounds_what_is_at_risk() {
        let mut ctx = SinkContext::new(Metrics::new("t", "0"), Health::new("t", "0"), CancellationToken::new());
        ctx.unacked = Some(Mutex::default());
        assert_eq!(ctx.oldest_unacked_ms(), None);
        ctx.note_handed(2_500_000);
        ctx.note_handed(3_100_000);
        ctx.note_handed(1_200_000);
        assert_eq!(ctx.oldest_unacked_ms(), Some(ctx.epoch_wall_ms + 1000 - 1000));
        ctx.note_settled(1_200_000);
        assert_eq!(ctx.oldest_unacked_ms(), Some(ctx.epoch_wall_ms + 2000 - 1000));
        ctx.note_settled(2_500_000);
        ctx.note_settled(3_100_000);
        assert_eq!(ctx.oldest_unacked_ms(), None);
    }
}
