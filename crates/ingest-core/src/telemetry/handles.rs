//! Labelled metric handles, resolved once per source, route or connection. Every metric label
//! value is chosen here, from a bounded set: a provider, a topic, a reason or outcome constant,
//! a group or an operator-named source; never a symbol, an id or a query. Code outside
//! `telemetry/` cannot call `with_label_values` (a clippy `disallowed-methods` rule): it asks
//! for one of these handles.

#![allow(clippy::disallowed_methods, reason = "metric labels are chosen here, and only here")]

use std::sync::{Arc, Mutex, PoisonError};

use prometheus::{Counter, Histogram, IntCounter, IntGauge};

use super::metrics::{
    Metrics, REASON_ABORTED, REASON_DELIVERY, REASON_INVALID, REASON_REJECTED, REASON_SHUTDOWN, REASON_SPOOL_OVERFLOW,
};
use crate::resilience::{BreakerState, ErrorClass};

/// The counters of one route (provider × topic) of a sink.
#[derive(Debug, Clone)]
pub struct RouteCounters {
    /// `producer_messages_sent_total`.
    pub sent: IntCounter,
    /// `producer_latency_seconds`.
    pub latency: Histogram,
    /// `failed{reason="invalid"}`: dead-lettered.
    pub invalid: IntCounter,
    /// `failed{reason="delivery"}`: not acknowledged.
    pub failed_delivery: IntCounter,
    /// `failed{reason="rejected"}`: refused by the client.
    pub rejected: IntCounter,
    /// `failed{reason="shutdown"}`: a wait for queue space cut by shutdown.
    pub abandoned: IntCounter,
    /// `failed{reason="spool_overflow"}`: deleted unsent from a full spool.
    pub overflow: IntCounter,
}

impl RouteCounters {
    /// The counters of `provider` writing to `topic` (all created at 0).
    pub fn new(m: &Metrics, provider: &str, topic: &str) -> Self {
        let failed = |reason: &str| m.messages_failed.with_label_values(&[provider, topic, reason]);
        Self {
            sent: m.messages_sent.with_label_values(&[provider, topic]),
            latency: m.latency.with_label_values(&[provider, topic]),
            invalid: failed(REASON_INVALID),
            failed_delivery: failed(REASON_DELIVERY),
            rejected: failed(REASON_REJECTED),
            abandoned: failed(REASON_SHUTDOWN),
            overflow: failed(REASON_SPOOL_OVERFLOW),
        }
    }
}

/// What a polled source's loop counts.
#[derive(Debug, Clone)]
pub struct PollerCounters {
    calls: Vec<(&'static str, IntCounter)>,
    /// `producer_quota_exhausted_total`.
    pub quota_exhausted: IntCounter,
    /// `producer_catchup_cut_total`.
    pub catchup_cut: IntCounter,
    /// `producer_duplicates_skipped_total`.
    pub duplicates: IntCounter,
}

impl PollerCounters {
    /// The counters of a poller of `provider`, every outcome created at 0 (rate() and alerts
    /// see the first failure; dashboards find the series before anything failed).
    pub fn new(m: &Metrics, provider: &str) -> Self {
        Self {
            calls: ErrorClass::OUTCOMES.iter().map(|o| (*o, m.api_calls.with_label_values(&[provider, o]))).collect(),
            quota_exhausted: m.quota_exhausted.with_label_values(&[provider]),
            catchup_cut: m.catchup_cut.with_label_values(&[provider]),
            duplicates: m.duplicates_skipped.with_label_values(&[provider]),
        }
    }

    /// Counts one call with `outcome` (one of [`ErrorClass::OUTCOMES`]).
    pub fn call(&self, outcome: &str) {
        if let Some((_, c)) = self.calls.iter().find(|(o, _)| *o == outcome) {
            c.inc();
        }
    }
}

/// What a poll group's transactions count.
#[derive(Debug, Clone)]
pub struct TransactionCounters {
    /// `producer_transactions_total{outcome="committed"}`.
    pub committed: IntCounter,
    /// `producer_transactions_total{outcome="aborted"}`.
    pub aborted: IntCounter,
}

impl TransactionCounters {
    /// The counters of group `group` (created at 0).
    pub fn new(m: &Metrics, group: &str) -> Self {
        Self {
            committed: m.transactions.with_label_values(&[group, "committed"]),
            aborted: m.transactions.with_label_values(&[group, "aborted"]),
        }
    }

    /// `failed{reason="aborted"}` of `provider` on `topic`: records sent in an aborted
    /// transaction.
    pub fn aborted_records(m: &Metrics, provider: &str, topic: &str, n: u64) {
        if n > 0 {
            m.messages_failed.with_label_values(&[provider, topic, REASON_ABORTED]).inc_by(n);
        }
    }
}

/// What a streaming source (a WebSocket feed, the X filtered stream) counts.
#[derive(Debug, Clone)]
pub struct StreamCounters {
    provider: String,
    metrics: Metrics,
    /// `producer_ws_reconnects_total`.
    pub reconnects: IntCounter,
    /// `producer_ws_gaps_total`.
    pub gaps: IntCounter,
    /// `producer_ws_gap_seconds_total`.
    pub gap_seconds: Counter,
}

impl StreamCounters {
    /// The counters of the stream of `provider`.
    pub fn new(m: &Metrics, provider: &str) -> Self {
        Self {
            provider: provider.to_string(),
            metrics: m.clone(),
            reconnects: m.ws_reconnects.with_label_values(&[provider]),
            gaps: m.ws_gaps.with_label_values(&[provider]),
            gap_seconds: m.ws_gap_seconds.with_label_values(&[provider]),
        }
    }

    /// Counts a connection that could not be opened, for `reason` (a fixed label:
    /// `tls_certificate`, `tls`, `http`, `connect`, `timeout`).
    pub fn connect_error(&self, reason: &'static str) {
        self.metrics.ws_connect_errors.with_label_values(&[&self.provider, reason]).inc();
    }

    /// The stream's provider.
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// `producer_market_open` of this stream.
    pub fn market_open(&self) -> IntGauge {
        self.metrics.market_open.with_label_values(&[&self.provider])
    }
}

/// What the gap repair of a streaming source counts.
#[derive(Debug, Clone)]
pub struct RepairCounters {
    provider: String,
    metrics: Metrics,
    /// `producer_gap_repaired_ticks_total`.
    pub ticks: IntCounter,
    /// `producer_gap_repair_duplicates_total`.
    pub duplicates: IntCounter,
    /// `producer_gap_repair_lag_seconds`.
    pub lag: Histogram,
}

impl RepairCounters {
    /// The repair counters of `provider`'s stream, every outcome's series at 0.
    pub fn new(m: &Metrics, provider: &str) -> Self {
        for outcome in std::iter::once("repaired").chain(crate::ws::gap::Unrepaired::ALL.map(|u| u.label())) {
            m.gap_repairs.with_label_values(&[provider, outcome]);
        }
        Self {
            provider: provider.to_string(),
            metrics: m.clone(),
            ticks: m.gap_repaired_ticks.with_label_values(&[provider]),
            duplicates: m.gap_repair_duplicates.with_label_values(&[provider]),
            lag: m.gap_repair_lag.with_label_values(&[provider]),
        }
    }

    /// Counts a repair that ended with `outcome` (`repaired`, or an [`Unrepaired`] label).
    ///
    /// [`Unrepaired`]: crate::ws::gap::Unrepaired
    pub fn ended(&self, outcome: &'static str) {
        self.metrics.gap_repairs.with_label_values(&[&self.provider, outcome]).inc();
    }

    /// The stream's provider.
    pub fn provider(&self) -> &str {
        &self.provider
    }
}

/// `producer_provider_enabled{provider}`.
pub fn provider_enabled(m: &Metrics, provider: &str) -> IntGauge {
    m.provider_enabled.with_label_values(&[provider])
}

/// `producer_duplicates_skipped_total` of `provider` (a stream's repeats after a reconnect).
pub fn duplicates_skipped(m: &Metrics, provider: &str) -> IntCounter {
    m.duplicates_skipped.with_label_values(&[provider])
}

/// `producer_quota_exhausted_total` of `provider` (a stream refused for its usage cap).
pub fn quota_exhausted(m: &Metrics, provider: &str) -> IntCounter {
    m.quota_exhausted.with_label_values(&[provider])
}

/// `producer_kafka_errors_total` of `kind` (librdkafka's error code name: a closed set).
pub fn kafka_error(m: &Metrics, kind: &str) -> IntCounter {
    m.kafka_errors.with_label_values(&[kind])
}

/// One breaker's share of `producer_circuit_breaker_state{provider, source}`. Breakers that
/// share both labels (e.g. one per StockTwits symbol under `source="stocktwits"`) share the
/// series, which shows the worst of them: open (1) over half-open (2) over closed (0).
#[derive(Debug)]
pub struct BreakerGauge {
    shared: Arc<Mutex<BreakerTally>>,
    state: BreakerState,
}

#[derive(Debug)]
pub(crate) struct BreakerTally {
    gauge: IntGauge,
    open: u32,
    half_open: u32,
}

impl BreakerGauge {
    /// A closed breaker's share of the series `provider`, `source` (`source`: a bounded name,
    /// [`crate::source::Poller::metric_source`]).
    pub fn new(m: &Metrics, provider: &str, source: &str) -> Self {
        let shared = m.breaker_tally(provider, source, || m.breaker_state.with_label_values(&[provider, source]));
        Self::with(shared)
    }

    /// A gauge of its own (tests).
    pub fn standalone(gauge: IntGauge) -> Self {
        Self::with(Arc::new(Mutex::new(BreakerTally { gauge, open: 0, half_open: 0 })))
    }

    fn with(shared: Arc<Mutex<BreakerTally>>) -> Self {
        {
            let t = shared.lock().unwrap_or_else(PoisonError::into_inner);
            t.publish();
        }
        Self { shared, state: BreakerState::Closed }
    }

    /// This breaker is now in `to`.
    pub fn set(&mut self, to: BreakerState) {
        let mut t = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        t.count(self.state, -1);
        t.count(to, 1);
        self.state = to;
        t.publish();
    }
}

impl Drop for BreakerGauge {
    fn drop(&mut self) {
        let mut t = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        t.count(self.state, -1);
        t.publish();
    }
}

impl BreakerTally {
    pub(crate) fn new(gauge: IntGauge) -> Self {
        Self { gauge, open: 0, half_open: 0 }
    }

    fn count(&mut self, state: BreakerState, delta: i32) {
        let n = match state {
            BreakerState::Closed => return,
            BreakerState::Open => &mut self.open,
            BreakerState::HalfOpen => &mut self.half_open,
        };
        *n = n.saturating_add_signed(delta);
    }

    fn publish(&self) {
        let worst = if self.open > 0 {
            BreakerState::Open
        } else if self.half_open > 0 {
            BreakerState::HalfOpen
        } else {
            BreakerState::Closed
        };
        self.gauge.set(worst.as_gauge());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breakers_sharing_a_series_show_the_worst_state() {
        let m = Metrics::new("social-producer", "0");
        let mut a = BreakerGauge::new(&m, "stocktwits", "stocktwits");
        let mut b = BreakerGauge::new(&m, "stocktwits", "stocktwits");
        let g = m.breaker_state.with_label_values(&["stocktwits", "stocktwits"]);
        assert_eq!(g.get(), 0);
        a.set(BreakerState::HalfOpen);
        assert_eq!(g.get(), 2);
        b.set(BreakerState::Open);
        assert_eq!(g.get(), 1, "open wins");
        b.set(BreakerState::Closed);
        assert_eq!(g.get(), 2);
        drop(a);
        assert_eq!(g.get(), 0, "a dropped breaker no longer counts");
    }

    #[test]
    fn poller_counters_count_known_outcomes_only() {
        let m = Metrics::new("news-producer", "0");
        let c = PollerCounters::new(&m, "newsapi");
        c.call("ok");
        c.call("denied");
        c.call("no-such-outcome");
        let text = m.render();
        assert!(
            text.contains(r#"producer_api_calls_total{outcome="ok",provider="newsapi",producer="news-producer"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"outcome="fatal_error""#), "every outcome exists at 0: {text}");
    }
}
