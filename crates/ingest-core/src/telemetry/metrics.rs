//! Every metric the producers export, defined once. Labels are bounded: producer (a constant
//! label on the registry), provider, topic, reason/outcome. Never a symbol or an id.

#![allow(clippy::disallowed_methods, reason = "metric labels are chosen here, and only here")]

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use std::time::{SystemTime, UNIX_EPOCH};

use super::Health;
use super::handles::BreakerTally;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    CounterVec, Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// `producer_messages_sent_total`: records acknowledged by Kafka.
pub const MESSAGES_SENT: &str = "producer_messages_sent_total";
/// `producer_messages_failed_total`: inputs not delivered, by reason (`invalid`, `delivery`, …).
pub const MESSAGES_FAILED: &str = "producer_messages_failed_total";
/// `producer_latency_seconds`: from hand-off to the sink until Kafka acknowledged.
pub const LATENCY: &str = "producer_latency_seconds";
/// `producer_api_calls_total`: calls to a provider, by outcome.
pub const API_CALLS: &str = "producer_api_calls_total";
/// `producer_circuit_breaker_state`: 0 closed, 1 open, 2 half-open.
pub const BREAKER_STATE: &str = "producer_circuit_breaker_state";
/// `producer_kafka_in_flight_messages`: handed to librdkafka, not yet acknowledged or failed.
pub const KAFKA_IN_FLIGHT: &str = "producer_kafka_in_flight_messages";
/// `producer_kafka_errors_total`: client-level errors reported by librdkafka, by kind.
pub const KAFKA_ERRORS: &str = "producer_kafka_errors_total";
/// `producer_ws_reconnects_total`: streaming connections (WebSocket feeds, the X filtered stream)
/// that ended (or failed) and were retried.
pub const WS_RECONNECTS: &str = "producer_ws_reconnects_total";
/// `producer_ws_gaps_total`: disconnect-to-resubscribe windows (each also a `gap` event).
pub const WS_GAPS: &str = "producer_ws_gaps_total";
/// `producer_ws_gap_seconds_total`: total length of those windows.
pub const WS_GAP_SECONDS: &str = "producer_ws_gap_seconds_total";
/// `producer_ws_connect_errors_total`: streaming connections that could not be opened, by
/// reason (`tls_certificate`, `tls`, `http`, `connect`, `timeout`).
pub const WS_CONNECT_ERRORS: &str = "producer_ws_connect_errors_total";
/// `producer_market_open`: 1 while a streaming feed's market is open (its session calendar),
/// 0 while it is closed. Alerts on silence and gaps use it instead of a clock in PromQL.
pub const MARKET_OPEN: &str = "producer_market_open";
/// `producer_provider_enabled`: 1 for a provider the producer runs, 0 for one it was configured
/// with but does not run (disabled in the config, or its credentials are not set).
pub const PROVIDER_ENABLED: &str = "producer_provider_enabled";
/// `producer_kafka_ready`: 1 while the last Kafka check found a broker answering and every
/// topic present, 0 otherwise (set every `kafka.healthcheck_interval_secs`, and at once when
/// librdkafka reports all brokers down): an outage keeps it at 0 for as long as it lasts.
pub const KAFKA_READY: &str = "producer_kafka_ready";
/// `producer_source_last_data_timestamp_seconds`: Unix time of a source's last data (a frame,
/// a poll that returned records), read from its health at scrape time; absent until the first.
/// `time() - …` is how long the source has been quiet.
pub const SOURCE_LAST_DATA: &str = "producer_source_last_data_timestamp_seconds";
/// `producer_source_fresh`: the `/ready` rule per source: 1 while its data is within its own
/// staleness limit or its market is closed (session calendar: nights, weekends, holidays), 0
/// while it is quiet for longer during market hours.
pub const SOURCE_FRESH: &str = "producer_source_fresh";
/// `producer_source_connected`: 1 while a source is connected (streams) or its last poll
/// succeeded (polled sources).
pub const SOURCE_CONNECTED: &str = "producer_source_connected";
/// `producer_up`: 1 while the process runs (build info in labels).
pub const UP: &str = "producer_up";
/// Kafka transactions of polled sources by outcome (`committed`, `aborted`).
pub const TRANSACTIONS: &str = "producer_transactions_total";
/// Polled records not sent again because the dedup window had seen their key.
pub const DUPLICATES_SKIPPED: &str = "producer_duplicates_skipped_total";
/// Polls not made because a provider's quota for its period was used up (our daily quota, or
/// the provider's daily or monthly cap).
pub const QUOTA_EXHAUSTED: &str = "producer_quota_exhausted_total";
/// `producer_log_lines_dropped_total`: log lines stderr could not take (its reader went away or
/// stalled); logging never blocks or stops the process.
pub const LOG_LINES_DROPPED: &str = "producer_log_lines_dropped_total";
/// `producer_catchup_cut_total`: catch-up paging that stopped at its page limit before reaching
/// the last item seen (each also a `gap` event with the window).
pub const CATCHUP_CUT: &str = "producer_catchup_cut_total";
/// `producer_gap_repairs_total`: stream gaps whose repair from the provider's REST history
/// ended, by outcome (`repaired`; otherwise the reason it was not: `no_history`,
/// `rate_limited`, `too_long`, `refused`, `unsupported`, `failed`), each also a `gap_repaired`
/// or `gap_unrepaired` event.
pub const GAP_REPAIRS: &str = "producer_gap_repairs_total";
/// `producer_gap_repaired_ticks_total`: trades, quotes and minute bars published from the history (`backfill: true`).
pub const GAP_REPAIRED_TICKS: &str = "producer_gap_repaired_ticks_total";
/// `producer_gap_repair_duplicates_total`: history trades not published because they had
/// arrived live at a window's edge (or were repeated in the history).
pub const GAP_REPAIR_DUPLICATES: &str = "producer_gap_repair_duplicates_total";
/// `producer_gap_repair_lag_seconds`: from the end of a gap (the stream live again) until its
/// repair ended, whatever the outcome.
pub const GAP_REPAIR_LAG: &str = "producer_gap_repair_lag_seconds";

/// `producer_spool_bytes`: bytes of the outage spool's segments on disk.
pub const SPOOL_BYTES: &str = "producer_spool_bytes";
/// `producer_spool_records`: spooled records not yet handed to Kafka's client.
pub const SPOOL_RECORDS: &str = "producer_spool_records";
/// `producer_spool_oldest_age_seconds`: age of the oldest spooled record not yet acknowledged.
pub const SPOOL_OLDEST_AGE: &str = "producer_spool_oldest_age_seconds";
/// `producer_spool_active`: 1 while records go to the spool instead of straight to Kafka.
pub const SPOOL_ACTIVE: &str = "producer_spool_active";
/// `producer_spool_written_records_total`: records written to the spool.
pub const SPOOL_WRITTEN: &str = "producer_spool_written_records_total";
/// `producer_spool_dropped_records_total`: spooled records deleted unsent by the drop-oldest
/// policy (each also counted in `producer_messages_failed_total{reason="spool_overflow"}`).
pub const SPOOL_DROPPED: &str = "producer_spool_dropped_records_total";
/// `producer_spool_full_total`: appends refused because the spool was full (block policy).
pub const SPOOL_FULL: &str = "producer_spool_full_total";
/// `producer_spool_corrupt_records_total`: records or tails skipped because their checksum or
/// framing failed (a torn write after a machine crash, disk corruption).
pub const SPOOL_CORRUPT: &str = "producer_spool_corrupt_records_total";
/// `producer_spool_io_errors_total`: spool reads/writes the disk refused.
pub const SPOOL_IO_ERRORS: &str = "producer_spool_io_errors_total";

/// The reason label of [`MESSAGES_FAILED`] for input that failed parsing or validation (it went
/// to the dead-letter topic).
pub const REASON_INVALID: &str = "invalid";
/// The reason label for records Kafka did not acknowledge within the delivery timeout.
pub const REASON_DELIVERY: &str = "delivery";
/// The reason label for records refused before reaching librdkafka (too large, unknown topic…).
pub const REASON_REJECTED: &str = "rejected";
/// The reason label for records still waiting for queue space when shutdown cut the wait.
pub const REASON_SHUTDOWN: &str = "shutdown";
/// `messages_failed` reason: sent inside a Kafka transaction that was then aborted (invisible
/// to `read_committed` consumers; the poll is retried, so the item is sent again).
pub const REASON_ABORTED: &str = "aborted";
/// `messages_failed` reason: a spooled record deleted unsent because the spool was full and its
/// policy is drop-oldest.
pub const REASON_SPOOL_OVERFLOW: &str = "spool_overflow";

/// The breaker series by (provider, source), each shared by the breakers it shows.
type BreakerTallies = Arc<Mutex<HashMap<(String, String), Arc<Mutex<BreakerTally>>>>>;

/// The registry and handles of one producer process.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// [`MESSAGES_SENT`] {provider, topic}
    pub messages_sent: IntCounterVec,
    /// [`MESSAGES_FAILED`] {provider, topic, reason}
    pub messages_failed: IntCounterVec,
    /// [`GAP_REPAIRS`] {provider, outcome}
    pub gap_repairs: IntCounterVec,
    /// [`GAP_REPAIRED_TICKS`] {provider}
    pub gap_repaired_ticks: IntCounterVec,
    /// [`GAP_REPAIR_DUPLICATES`] {provider}
    pub gap_repair_duplicates: IntCounterVec,
    /// [`GAP_REPAIR_LAG`] {provider}
    pub gap_repair_lag: HistogramVec,
    /// [`LATENCY`] {provider, topic}
    pub latency: HistogramVec,
    /// [`API_CALLS`] {provider, outcome}
    pub api_calls: IntCounterVec,
    /// [`BREAKER_STATE`] {provider, source}: the worst breaker of the polled sources sharing the
    /// labels (see [`super::handles::BreakerGauge`])
    pub breaker_state: IntGaugeVec,
    breakers: BreakerTallies,
    /// [`KAFKA_IN_FLIGHT`]
    pub kafka_in_flight: IntGauge,
    /// [`KAFKA_READY`]
    pub kafka_ready: IntGauge,
    /// [`KAFKA_ERRORS`] {kind}
    pub kafka_errors: IntCounterVec,
    /// [`WS_RECONNECTS`] {provider}
    pub ws_reconnects: IntCounterVec,
    /// [`WS_GAPS`] {provider}
    pub ws_gaps: IntCounterVec,
    /// [`WS_GAP_SECONDS`] {provider}
    pub ws_gap_seconds: CounterVec,
    /// [`WS_CONNECT_ERRORS`] {provider, reason}
    pub ws_connect_errors: IntCounterVec,
    /// [`MARKET_OPEN`] {provider}
    pub market_open: IntGaugeVec,
    /// [`PROVIDER_ENABLED`] {provider}
    pub provider_enabled: IntGaugeVec,
    /// [`TRANSACTIONS`] {source, outcome}
    pub transactions: IntCounterVec,
    /// [`DUPLICATES_SKIPPED`] {provider}
    pub duplicates_skipped: IntCounterVec,
    /// [`QUOTA_EXHAUSTED`] {provider}
    pub quota_exhausted: IntCounterVec,
    /// [`CATCHUP_CUT`] {provider}
    pub catchup_cut: IntCounterVec,
    /// [`SPOOL_BYTES`]
    pub spool_bytes: IntGauge,
    /// [`SPOOL_RECORDS`]
    pub spool_records: IntGauge,
    /// [`SPOOL_OLDEST_AGE`]
    pub spool_oldest_age: Gauge,
    /// [`SPOOL_ACTIVE`]
    pub spool_active: IntGauge,
    /// [`SPOOL_WRITTEN`]
    pub spool_written: IntCounter,
    /// [`SPOOL_DROPPED`]
    pub spool_dropped: IntCounter,
    /// [`SPOOL_FULL`]
    pub spool_full: IntCounter,
    /// [`SPOOL_CORRUPT`]
    pub spool_corrupt: IntCounter,
    /// [`SPOOL_IO_ERRORS`]
    pub spool_errors: IntCounter,
}

impl Metrics {
    /// A fresh registry whose every series carries `producer="<producer>"`.
    pub fn new(producer: &str, version: &str) -> Self {
        let labels = HashMap::from([("producer".to_string(), producer.to_string())]);
        let registry = Registry::new_custom(None, Some(labels)).expect("constant labels are valid");
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry.register(Box::new(c.clone())).expect("metric registered once");
            c
        };
        let messages_sent = counter(MESSAGES_SENT, "Records acknowledged by Kafka.", &["provider", "topic"]);
        let messages_failed = counter(
            MESSAGES_FAILED,
            "Inputs not delivered: invalid (dead-lettered), delivery (not acknowledged), rejected.",
            &["provider", "topic", "reason"],
        );
        let api_calls = counter(API_CALLS, "Calls to provider APIs by outcome.", &["provider", "outcome"]);
        let kafka_errors = counter(KAFKA_ERRORS, "Client-level errors reported by librdkafka.", &["kind"]);
        let ws_reconnects = counter(
            WS_RECONNECTS,
            "Streaming connections (WebSocket, X filtered stream) that ended or failed and were retried.",
            &["provider"],
        );
        let ws_gaps = counter(
            WS_GAPS,
            "Disconnect-to-resume windows of streaming sources (WebSocket, X filtered stream).",
            &["provider"],
        );
        let ws_connect_errors = counter(
            WS_CONNECT_ERRORS,
            "Streaming connections that could not be opened, by reason (tls_certificate, tls, http, connect, timeout).",
            &["provider", "reason"],
        );
        let transactions =
            counter(TRANSACTIONS, "Kafka transactions of polled sources by outcome.", &["source", "outcome"]);
        let duplicates_skipped = counter(
            DUPLICATES_SKIPPED,
            "Records not sent again because their key was already delivered (dedup window).",
            &["provider"],
        );
        let quota_exhausted = counter(
            QUOTA_EXHAUSTED,
            "Polls deferred because a daily or monthly quota (ours or the provider's) was used up.",
            &["provider"],
        );
        let catchup_cut = counter(
            CATCHUP_CUT,
            "Catch-up paging stopped at its page limit before reaching the last item seen (a gap event each).",
            &["provider"],
        );
        let gap_repairs = counter(
            GAP_REPAIRS,
            "Stream gap repairs from the provider's REST history by outcome (repaired, or why not).",
            &["provider", "outcome"],
        );
        let gap_repaired_ticks =
            counter(GAP_REPAIRED_TICKS, "Ticks published from REST history to fill stream gaps.", &["provider"]);
        let gap_repair_duplicates = counter(
            GAP_REPAIR_DUPLICATES,
            "History trades of a gap not published because they had arrived live (or repeated).",
            &["provider"],
        );
        let gap_repair_lag = HistogramVec::new(
            HistogramOpts::new(GAP_REPAIR_LAG, "Seconds from the end of a stream gap until its repair ended.")
                .buckets(vec![1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0]),
            &["provider"],
        )
        .expect("valid metric");
        registry.register(Box::new(gap_repair_lag.clone())).expect("metric registered once");
        let ws_gap_seconds =
            CounterVec::new(Opts::new(WS_GAP_SECONDS, "Total seconds of streaming-source gaps."), &["provider"])
                .expect("valid metric");
        registry.register(Box::new(ws_gap_seconds.clone())).expect("metric registered once");
        registry.register(Box::new(crate::telemetry::logging::dropped_lines())).expect("metric registered once");
        let latency = HistogramVec::new(
            HistogramOpts::new(LATENCY, "Seconds from hand-off to the sink until Kafka acknowledged.").buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["provider", "topic"],
        )
        .expect("valid metric");
        registry.register(Box::new(latency.clone())).expect("metric registered once");
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry.register(Box::new(g.clone())).expect("metric registered once");
            g
        };
        let breaker_state = gauge_vec(
            BREAKER_STATE,
            "Circuit breaker state of a polled source: 0 closed, 1 open, 2 half-open.",
            &["provider", "source"],
        );
        let market_open = gauge_vec(
            MARKET_OPEN,
            "1 while a streaming feed's market is open by its session calendar, 0 while closed.",
            &["provider"],
        );
        let provider_enabled = gauge_vec(
            PROVIDER_ENABLED,
            "1 for a provider the producer runs, 0 for one disabled (in the config, or for missing credentials).",
            &["provider"],
        );
        let kafka_in_flight =
            IntGauge::new(KAFKA_IN_FLIGHT, "Records handed to librdkafka and not yet settled.").expect("valid metric");
        registry.register(Box::new(kafka_in_flight.clone())).expect("metric registered once");
        let up = gauge_vec(UP, "1 while the producer runs.", &["version"]);
        up.with_label_values(&[version]).set(1);
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            registry.register(Box::new(g.clone())).expect("metric registered once");
            g
        };
        let count = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            registry.register(Box::new(c.clone())).expect("metric registered once");
            c
        };
        let kafka_ready =
            gauge(KAFKA_READY, "1 while the last Kafka check found a broker answering and every topic present.");
        let spool_bytes = gauge(SPOOL_BYTES, "Bytes of the outage spool's segments on disk.");
        let spool_records = gauge(SPOOL_RECORDS, "Spooled records not yet handed to Kafka's client.");
        let spool_active = gauge(SPOOL_ACTIVE, "1 while records go to the outage spool instead of straight to Kafka.");
        let spool_oldest_age = Gauge::new(SPOOL_OLDEST_AGE, "Age of the oldest spooled record not yet acknowledged.")
            .expect("valid metric");
        registry.register(Box::new(spool_oldest_age.clone())).expect("metric registered once");
        let spool_written = count(SPOOL_WRITTEN, "Records written to the outage spool.");
        let spool_dropped = count(SPOOL_DROPPED, "Spooled records deleted unsent by the drop-oldest policy.");
        let spool_full = count(SPOOL_FULL, "Appends refused because the spool was full (the source waited).");
        let spool_corrupt =
            count(SPOOL_CORRUPT, "Spooled records or tails skipped because their checksum or framing failed.");
        let spool_errors = count(SPOOL_IO_ERRORS, "Spool reads or writes the disk refused.");
        Self {
            registry,
            messages_sent,
            messages_failed,
            latency,
            api_calls,
            breaker_state,
            breakers: Arc::default(),
            kafka_in_flight,
            kafka_ready,
            kafka_errors,
            ws_reconnects,
            ws_gaps,
            ws_gap_seconds,
            ws_connect_errors,
            market_open,
            provider_enabled,
            transactions,
            duplicates_skipped,
            quota_exhausted,
            catchup_cut,
            gap_repairs,
            gap_repaired_ticks,
            gap_repair_duplicates,
            gap_repair_lag,
            spool_bytes,
            spool_records,
            spool_oldest_age,
            spool_active,
            spool_written,
            spool_dropped,
            spool_full,
            spool_corrupt,
            spool_errors,
        }
    }

    /// The tally behind the breaker series `provider`, `source` (created by `gauge` the first
    /// time).
    pub(crate) fn breaker_tally(
        &self,
        provider: &str,
        source: &str,
        gauge: impl FnOnce() -> IntGauge,
    ) -> Arc<Mutex<BreakerTally>> {
        let mut map = self.breakers.lock().unwrap_or_else(PoisonError::into_inner);
        map.entry((provider.to_string(), source.to_string()))
            .or_insert_with(|| Arc::new(Mutex::new(BreakerTally::new(gauge()))))
            .clone()
    }

    /// The registry, for crate-specific metrics a producer adds.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Exports the sources of `health` ([`SOURCE_LAST_DATA`], [`SOURCE_FRESH`],
    /// [`SOURCE_CONNECTED`] by `source`), read from it at every scrape: the hot path only ever
    /// touches its atomics. Once per process.
    pub fn watch_sources(&self, health: &Health) {
        let collector = SourcesCollector::new(health.clone());
        self.registry.register(Box::new(collector)).expect("sources registered once");
    }

    /// Prometheus text exposition of everything registered.
    pub fn render(&self) -> String {
        let mut buf = Vec::with_capacity(16 * 1024);
        // Encoding into a Vec cannot fail for the text format.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// The per-source gauges, filled from [`Health`] when scraped.
struct SourcesCollector {
    health: Health,
    /// Held while one scrape fills and reads the gauges.
    scrape: Mutex<()>,
    last_data: GaugeVec,
    fresh: IntGaugeVec,
    connected: IntGaugeVec,
}

impl SourcesCollector {
    fn new(health: Health) -> Self {
        let labels = &["source"];
        Self {
            health,
            scrape: Mutex::new(()),
            last_data: GaugeVec::new(Opts::new(SOURCE_LAST_DATA, "Unix time of the source's last data."), labels)
                .expect("valid metric"),
            fresh: IntGaugeVec::new(
                Opts::new(SOURCE_FRESH, "1 while the source's data is fresh or its market is closed, 0 while stale."),
                labels,
            )
            .expect("valid metric"),
            connected: IntGaugeVec::new(
                Opts::new(SOURCE_CONNECTED, "1 while the source is connected (or its last poll succeeded)."),
                labels,
            )
            .expect("valid metric"),
        }
    }
}

impl Collector for SourcesCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.last_data.desc().into_iter().chain(self.fresh.desc()).chain(self.connected.desc()).collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let _one_at_a_time = self.scrape.lock().unwrap_or_else(PoisonError::into_inner);
        self.last_data.reset();
        self.fresh.reset();
        self.connected.reset();
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        for s in self.health.readiness().sources {
            if let Some(age) = s.last_data_age_secs {
                self.last_data.with_label_values(&[&s.name]).set(now - age);
            }
            self.fresh.with_label_values(&[&s.name]).set(i64::from(s.fresh));
            self.connected.with_label_values(&[&s.name]).set(i64::from(s.connected));
        }
        [self.last_data.collect(), self.fresh.collect(), self.connected.collect()].concat()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_metric_names_are_exported_with_producer_label() {
        let m = Metrics::new("market-producer", "0.1.0");
        m.messages_sent.with_label_values(&["polygon", "market.ticks.raw"]).inc();
        m.messages_failed.with_label_values(&["polygon", "market.ticks.raw", REASON_INVALID]).inc();
        m.latency.with_label_values(&["polygon", "market.ticks.raw"]).observe(0.003);
        m.api_calls.with_label_values(&["polygon", "ok"]).inc();
        m.breaker_state.with_label_values(&["newsapi", "everything"]).set(0);
        let text = m.render();
        for name in [MESSAGES_SENT, MESSAGES_FAILED, "producer_latency_seconds_bucket", API_CALLS, BREAKER_STATE] {
            assert!(text.contains(&format!("{name}{{")), "{name} missing in\n{text}");
        }
        assert!(text.contains(r#"producer_messages_sent_total{provider="polygon",topic="market.ticks.raw",producer="market-producer"} 1"#), "{text}");
    }

    #[test]
    fn sources_are_read_from_health_at_scrape_time() {
        let m = Metrics::new("market-producer", "0.1.0");
        let h = Health::new("market-producer", "0.1.0");
        m.watch_sources(&h);
        let series = |text: &str, name: &str, source: &str| -> Option<f64> {
            let prefix = format!(r#"{name}{{source="{source}",producer="market-producer"}} "#);
            text.lines().find_map(|l| l.strip_prefix(&prefix)).map(|v| v.parse().unwrap())
        };
        let feed = h.register_source("polygon", Some(std::time::Duration::from_secs(60)));
        let text = m.render();
        assert_eq!(series(&text, SOURCE_LAST_DATA, "polygon"), None, "no data yet: no timestamp\n{text}");
        assert_eq!(series(&text, SOURCE_FRESH, "polygon"), Some(0.0), "no data yet is not fresh\n{text}");
        assert_eq!(series(&text, SOURCE_CONNECTED, "polygon"), Some(0.0));

        feed.set_connected(true, "subscribed");
        feed.mark_data();
        let text = m.render();
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
        let stamp = series(&text, SOURCE_LAST_DATA, "polygon").unwrap();
        assert!((now - stamp).abs() < 5.0, "the last data is now: {stamp} vs {now}");
        assert_eq!(series(&text, SOURCE_FRESH, "polygon"), Some(1.0));
        assert_eq!(series(&text, SOURCE_CONNECTED, "polygon"), Some(1.0));

        // A source whose market is closed is fresh without data: silence is expected then.
        let closed = h.register_source("alpaca", Some(std::time::Duration::from_secs(60)));
        closed.set_market_closed(Some("market closed (weekend)".into()));
        assert_eq!(series(&m.render(), SOURCE_FRESH, "alpaca"), Some(1.0));
    }
}
