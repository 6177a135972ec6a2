//! The librdkafka callbacks: delivery reports drive the metrics; client errors drive health;
//! librdkafka's own logs go to `tracing`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use prometheus::{Histogram, IntCounter};
use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryResult, ProducerContext};
use tokio_util::sync::CancellationToken;

use crate::telemetry::{Health, Metrics};

/// Metric handles of one (topic, provider) pair, resolved once when the route is made.
#[derive(Debug)]
pub(crate) struct RouteStats {
    pub(crate) topic: String,
    pub(crate) provider: String,
    pub(crate) sent: IntCounter,
    pub(crate) failed_delivery: IntCounter,
    pub(crate) latency: Histogram,
}

/// Append-only table of routes; the delivery opaque carries an index into it.
pub(crate) type RouteTable = Arc<RwLock<Vec<RouteStats>>>;

/// Bits of the delivery opaque used for the enqueue time (microseconds since the sink started:
/// 2^44 µs ≈ 203 days, after which the latency clock wraps and one sample may be off).
const TIME_BITS: u32 = 44;
const TIME_MASK: usize = (1 << TIME_BITS) - 1;
/// Route indexes must fit in the remaining bits.
pub(crate) const MAX_ROUTES: usize = 1 << (usize::BITS - TIME_BITS);

pub(crate) fn pack(route: usize, epoch: Instant) -> usize {
    let us = usize::try_from(epoch.elapsed().as_micros()).unwrap_or(usize::MAX) & TIME_MASK;
    (route << TIME_BITS) | us
}

fn unpack(opaque: usize, epoch: Instant) -> (usize, Duration) {
    let route = opaque >> TIME_BITS;
    let sent_us = (opaque & TIME_MASK) as u64;
    let now_us = u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX) & TIME_MASK as u64;
    let took = now_us.wrapping_sub(sent_us) & TIME_MASK as u64;
    (route, Duration::from_micros(took))
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
    /// Last time (ms since epoch) a delivery failure was logged; failures are counted always,
    /// logged at most once per second.
    last_failure_log_ms: AtomicU64,
    suppressed_failures: AtomicU64,
}

impl std::fmt::Debug for SinkContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkContext").finish_non_exhaustive()
    }
}

impl SinkContext {
    pub(crate) fn new(metrics: Metrics, health: Health, fatal: CancellationToken) -> Self {
        // The kind an on-call engineer alerts on exists from the start, at 0 (`kind` is the
        // librdkafka error code's name, as below).
        let _ = metrics.kafka_errors.with_label_values(&[&format!("{:?}", RDKafkaErrorCode::AllBrokersDown)]);
        Self {
            routes: Arc::new(RwLock::new(Vec::new())),
            epoch: Instant::now(),
            metrics,
            health,
            fatal,
            errors: Arc::new(tokio::sync::Notify::new()),
            last_failure_log_ms: AtomicU64::new(0),
            suppressed_failures: AtomicU64::new(0),
        }
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
}

impl ClientContext for SinkContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", fac, "{message}");
            }
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", fac, "{message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => tracing::info!(target: "librdkafka", fac, "{message}"),
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", fac, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let code = error.rdkafka_error_code();
        let kind = code.map_or_else(|| "other".to_string(), |c| format!("{c:?}"));
        self.metrics.kafka_errors.with_label_values(&[&kind]).inc();
        // Fatal state is not decided here: the error event carries the underlying code, so the
        // sink asks librdkafka itself (`Sink::check_fatal`) when woken below.
        match code {
            Some(RDKafkaErrorCode::AllBrokersDown) => {
                tracing::warn!(error = reason, "all Kafka brokers are down; records are held and retried");
                self.health.set_kafka(false, format!("all brokers down: {reason}"));
            }
            _ => tracing::warn!(error = reason, kind, "Kafka client error"),
        }
        self.errors.notify_one();
    }
}

impl ProducerContext for SinkContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        self.metrics.kafka_in_flight.dec();
        let (route, took) = unpack(opaque, self.epoch);
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
        std::thread::sleep(Duration::from_millis(2));
        let (route, took) = unpack(o, epoch);
        assert_eq!(route, 1234);
        assert!(took >= Duration::from_millis(2) && took < Duration::from_secs(60), "{took:?}");
        assert_eq!(unpack(pack(MAX_ROUTES - 1, epoch), epoch).0, MAX_ROUTES - 1);
    }
}
