//! Telemetry as named events (the internal-events pattern of Vector): one type per occurrence,
//! whose [`InternalEvent::emit`] does at once everything that occurrence means for an operator:
//! the log line, the counters, and the `ingest.event/v1` record on `ingest.events`. A call site
//! names what happened (`StreamGap { … }.emit(ctx)`) instead of assembling a log, a counter and a
//! record that could disagree; the streaming runner and the X filtered stream share the stream
//! events, so every stream's lifecycle reads the same in logs, metrics and `ingest.events`.

use std::time::Duration;

use chrono::Utc;
use prometheus::IntCounter;

use crate::record::{EventKind, IngestEvent, RepairCounts};
use crate::resilience::BreakerState;
use crate::source::Cut;
use crate::telemetry::handles::{RepairCounters, StreamCounters};
use crate::ws::gap::{Gap, Unrepaired};

/// Where an event's record goes: `SourceCtx` in production (best effort on `ingest.events`),
/// a collector in tests.
pub trait EventSink {
    /// The producer the events are of (the record's key).
    fn producer(&self) -> &str;
    /// Publishes the record.
    fn publish(&self, event: &IngestEvent);
}

/// An occurrence worth telling an operator about.
pub trait InternalEvent {
    /// Logs, counts and publishes it.
    fn emit(self, to: &dyn EventSink);
}

fn record(to: &dyn EventSink, provider: &str, kind: EventKind) -> IngestEvent {
    IngestEvent::new(to.producer(), provider, kind)
}

fn after(wait: Duration) -> Option<chrono::DateTime<Utc>> {
    chrono::Duration::from_std(wait).ok().map(|d| Utc::now() + d)
}

// ---- streams (the WebSocket runner, the X filtered stream) ----

/// A stream's connection is open (for WebSocket feeds: upgraded; the subscription follows).
#[derive(Debug)]
pub struct StreamConnected<'a> {
    /// The stream's provider.
    pub provider: &'a str,
    /// Where, without credentials.
    pub url: &'a str,
    /// The connection's epoch, where the stream numbers them.
    pub epoch: Option<u64>,
}

impl InternalEvent for StreamConnected<'_> {
    fn emit(self, to: &dyn EventSink) {
        tracing::info!(provider = self.provider, url = self.url, epoch = self.epoch, "connected");
        to.publish(&IngestEvent { conn_epoch: self.epoch, ..record(to, self.provider, EventKind::Connected) });
    }
}

/// Data flows again after a window in which it may have been missed.
#[derive(Debug)]
pub struct StreamGap<'a> {
    /// The stream's counters (gaps, gap seconds).
    pub counters: &'a StreamCounters,
    /// The connection that resumed.
    pub epoch: Option<u64>,
    /// The window.
    pub gap: Gap,
    /// The reason when the window has none of its own (a plain disconnect).
    pub plain_disconnect: &'a str,
}

impl InternalEvent for StreamGap<'_> {
    fn emit(self, to: &dyn EventSink) {
        let (provider, secs) = (self.counters.provider(), self.gap.secs());
        self.counters.gaps.inc();
        self.counters.gap_seconds.inc_by(secs);
        tracing::warn!(
            provider,
            epoch = self.epoch,
            gap_secs = secs,
            "resumed after a gap; data in the window was not received"
        );
        let Gap { from, to: until, why } = self.gap;
        let message = if why.is_empty() { self.plain_disconnect.to_string() } else { why };
        to.publish(&IngestEvent {
            from: Some(from),
            to: Some(until),
            conn_epoch: self.epoch,
            message: Some(message),
            ..record(to, provider, EventKind::Gap)
        });
    }
}

/// The repair of a published gap from the provider's REST history ended: `gap_repaired` when
/// every symbol of the window was filled, `gap_unrepaired` with the reason otherwise. Same
/// window and connection epoch as the `gap` event it answers.
#[derive(Debug)]
pub struct GapRepairEnded<'a> {
    /// The stream's repair counters.
    pub counters: &'a RepairCounters,
    /// The gap's window.
    pub from: chrono::DateTime<Utc>,
    /// The gap's end.
    pub to: chrono::DateTime<Utc>,
    /// The connection that resumed after the gap.
    pub epoch: Option<u64>,
    /// `None` when repaired; else why not, and the detail.
    pub unrepaired: Option<(Unrepaired, String)>,
    /// Symbols, fetched, published, duplicates (`outcome` is filled in here).
    pub counts: RepairCounts,
    /// From the end of the gap until now.
    pub lag: Duration,
}

impl InternalEvent for GapRepairEnded<'_> {
    fn emit(self, to: &dyn EventSink) {
        let provider = self.counters.provider();
        let (kind, outcome, message) = match &self.unrepaired {
            None => (EventKind::GapRepaired, "repaired", {
                let c = &self.counts;
                let mut m = format!(
                    "gap repaired from the provider's history: {} trades published, {} already received live",
                    c.published, c.duplicates
                );
                if c.quotes_fetched > 0 {
                    m.push_str(&format!("; {} quotes published of {} fetched", c.quotes_published, c.quotes_fetched));
                }
                if c.bars_fetched > 0 {
                    m.push_str(&format!("; {} minute bars published of {} fetched", c.bars_published, c.bars_fetched));
                }
                m
            }),
            Some((why, detail)) => (EventKind::GapUnrepaired, why.label(), format!("gap not repaired: {detail}")),
        };
        self.counters.ended(outcome);
        // Every record repaired into the ticks topic: trades, quotes and minute bars.
        self.counters.ticks.inc_by(self.counts.published + self.counts.quotes_published + self.counts.bars_published);
        self.counters.duplicates.inc_by(self.counts.duplicates);
        self.counters.lag.observe(self.lag.as_secs_f64());
        let c = &self.counts;
        if self.unrepaired.is_none() {
            tracing::info!(
                provider,
                epoch = self.epoch,
                symbols = c.symbols,
                fetched = c.fetched,
                published = c.published,
                duplicates = c.duplicates,
                bars_published = c.bars_published,
                lag_secs = self.lag.as_secs_f64(),
                "{message}"
            );
        } else {
            tracing::warn!(
                provider,
                epoch = self.epoch,
                outcome,
                symbols = c.symbols,
                symbols_failed = c.symbols_failed,
                published = c.published,
                "{message}"
            );
        }
        to.publish(&IngestEvent {
            from: Some(self.from),
            to: Some(self.to),
            conn_epoch: self.epoch,
            message: Some(message),
            repair: Some(RepairCounts { outcome: outcome.to_string(), ..self.counts }),
            ..record(to, provider, kind)
        });
    }
}

/// A reconnected WebSocket feed re-sent its subscriptions.
#[derive(Debug)]
pub struct StreamResubscribed<'a> {
    /// The stream's provider.
    pub provider: &'a str,
    /// The new connection.
    pub epoch: u64,
}

impl InternalEvent for StreamResubscribed<'_> {
    fn emit(self, to: &dyn EventSink) {
        tracing::info!(provider = self.provider, epoch = self.epoch, "resubscribed");
        to.publish(&IngestEvent { conn_epoch: Some(self.epoch), ..record(to, self.provider, EventKind::Resubscribed) });
    }
}

/// A stream's connection ended (or could not be opened); it reconnects after `retry_in`.
#[derive(Debug)]
pub struct StreamDisconnected<'a> {
    /// The stream's counters (reconnects).
    pub counters: &'a StreamCounters,
    /// The connection that ended.
    pub epoch: Option<u64>,
    /// Why.
    pub error: String,
    /// The wait before the next attempt.
    pub retry_in: Duration,
    /// The server's certificate is not trusted: retrying will not help until someone fixes the
    /// trust store or the server, so it is logged as an error saying what to do.
    pub untrusted_certificate: bool,
}

impl InternalEvent for StreamDisconnected<'_> {
    fn emit(self, to: &dyn EventSink) {
        let provider = self.counters.provider();
        self.counters.reconnects.inc();
        let (error, retry_in_secs) = (self.error, self.retry_in.as_secs_f64());
        if self.untrusted_certificate {
            tracing::error!(provider, epoch = self.epoch, error = %error, retry_in_secs,
                "the server's certificate is not trusted: add its CA to tls.extra_ca_file (TLS_EXTRA_CA_FILE) if it is a TLS-inspecting proxy, or check market.ws_url");
        } else {
            tracing::warn!(provider, epoch = self.epoch, error = %error, retry_in_secs, "disconnected");
        }
        to.publish(&IngestEvent {
            conn_epoch: self.epoch,
            message: Some(error),
            ..record(to, provider, EventKind::Disconnected)
        });
    }
}

// ---- limits ----

/// The provider's quota for a period (a daily or monthly cap) is used up: paused until it resets.
#[derive(Debug)]
pub struct QuotaExhausted<'a> {
    /// `producer_quota_exhausted_total` of the provider.
    pub counter: &'a IntCounter,
    /// The provider.
    pub provider: &'a str,
    /// The source that met it.
    pub source: &'a str,
    /// What the provider said.
    pub detail: &'a str,
    /// Until the reset.
    pub wait: Duration,
}

impl InternalEvent for QuotaExhausted<'_> {
    fn emit(self, to: &dyn EventSink) {
        self.counter.inc();
        let resume_in_secs = self.wait.as_secs();
        tracing::warn!(
            source = self.source,
            error = self.detail,
            resume_in_secs,
            "the provider's quota for this period is used up"
        );
        to.publish(&IngestEvent {
            message: Some(format!("{}; paused {resume_in_secs}s until the quota resets", self.detail)),
            to: after(self.wait),
            ..record(to, self.provider, EventKind::QuotaExhausted)
        });
    }
}

/// The daily request budget configured for a source (our own limit, not the provider's) is
/// used up: its polls wait for the next day.
#[derive(Debug)]
pub struct RequestBudgetUsedUp<'a> {
    /// `producer_quota_exhausted_total` of the provider.
    pub counter: &'a IntCounter,
    /// The provider.
    pub provider: &'a str,
    /// The source.
    pub source: &'a str,
    /// Until the budget renews.
    pub wait: Duration,
}

impl InternalEvent for RequestBudgetUsedUp<'_> {
    fn emit(self, to: &dyn EventSink) {
        self.counter.inc();
        let resume_in_secs = self.wait.as_secs();
        tracing::warn!(source = self.source, resume_in_secs, "daily request quota used up");
        to.publish(&IngestEvent {
            message: Some(format!("daily quota used up; resuming in {resume_in_secs}s")),
            ..record(to, self.provider, EventKind::RateLimited)
        });
    }
}

/// The provider said to slow down (HTTP 429 or its equivalent): requests pause.
#[derive(Debug)]
pub struct RateLimited<'a> {
    /// The provider.
    pub provider: &'a str,
    /// The source that was told.
    pub source: &'a str,
    /// The pause.
    pub wait: Duration,
}

impl InternalEvent for RateLimited<'_> {
    fn emit(self, to: &dyn EventSink) {
        let wait_secs = self.wait.as_secs_f64();
        tracing::warn!(source = self.source, wait_secs, "rate limited by the provider");
        to.publish(&record(to, self.provider, EventKind::RateLimited).with_message(format!("paused {wait_secs:.1}s")));
    }
}

// ---- polled sources ----

/// A source's circuit breaker changed state (the gauge follows the breaker itself).
#[derive(Debug)]
pub struct BreakerChanged<'a> {
    /// The provider.
    pub provider: &'a str,
    /// The source.
    pub source: &'a str,
    /// The new state.
    pub state: BreakerState,
}

impl InternalEvent for BreakerChanged<'_> {
    fn emit(self, to: &dyn EventSink) {
        let state = self.state.as_str();
        tracing::warn!(source = self.source, state, "circuit breaker changed state");
        to.publish(&IngestEvent {
            state: Some(state.into()),
            message: Some(format!("source {}", self.source)),
            ..record(to, self.provider, EventKind::BreakerState)
        });
    }
}

/// The provider refused one source (`denied`) or does not know its name: it waits, the others
/// run on. Logged every time; the record only when the source was working before (`first`).
#[derive(Debug)]
pub struct SourceRefused<'a> {
    /// The provider.
    pub provider: &'a str,
    /// The source.
    pub source: &'a str,
    /// Refused (401/403) rather than unknown (404).
    pub denied: bool,
    /// What the provider answered.
    pub error: &'a str,
    /// Why and when the next try is, for the record and `/ready`.
    pub detail: &'a str,
    /// The wait before the next try.
    pub retry_in: Duration,
    /// The source worked until now.
    pub first: bool,
}

impl InternalEvent for SourceRefused<'_> {
    fn emit(self, to: &dyn EventSink) {
        let what = if self.denied {
            "the provider refused this source; the others keep running"
        } else {
            "the provider does not know this source's name; the others keep running"
        };
        tracing::warn!(source = self.source, error = self.error, retry_in_secs = self.retry_in.as_secs(), "{what}");
        if self.first {
            let message = format!("source {}: {}", self.source, self.detail);
            to.publish(&record(to, self.provider, EventKind::SourceRefused).with_message(message));
        }
    }
}

/// A source refused earlier works again.
#[derive(Debug)]
pub struct SourceRecovered<'a> {
    /// The provider.
    pub provider: &'a str,
    /// The source.
    pub source: &'a str,
}

impl InternalEvent for SourceRecovered<'_> {
    fn emit(self, to: &dyn EventSink) {
        tracing::info!(source = self.source, "source accepted again");
        let message = format!("source {} works again", self.source);
        to.publish(&record(to, self.provider, EventKind::SourceRecovered).with_message(message));
    }
}

/// A catch-up stopped at its page limit: the window it did not fetch is a gap.
#[derive(Debug)]
pub struct CatchUpCut<'a> {
    /// `producer_catchup_cut_total` of the source's route.
    pub counter: &'a IntCounter,
    /// The provider.
    pub provider: &'a str,
    /// The source.
    pub source: &'a str,
    /// The window and why.
    pub cut: Cut,
}

impl InternalEvent for CatchUpCut<'_> {
    fn emit(self, to: &dyn EventSink) {
        let Cut { from, to: until, message } = self.cut;
        self.counter.inc();
        tracing::warn!(source = self.source, from = ?from, to = ?until, "{message}");
        to.publish(&IngestEvent {
            from,
            to: until,
            message: Some(format!("source {}: {message}", self.source)),
            ..record(to, self.provider, EventKind::Gap)
        });
    }
}

/// A guard of ours refused a request target before it was sent (the SSRF policy, a redirect
/// or next page leaving the credentials' origin, https to http).
#[derive(Debug)]
pub struct RequestRefused<'a> {
    /// The provider.
    pub provider: &'a str,
    /// The source.
    pub source: &'a str,
    /// Which guard and why.
    pub why: &'a str,
}

impl InternalEvent for RequestRefused<'_> {
    fn emit(self, to: &dyn EventSink) {
        tracing::warn!(source = self.source, reason = self.why, "request refused before it was sent");
        let message = format!("source {}: {}", self.source, self.why);
        to.publish(&record(to, self.provider, EventKind::RequestRefused).with_message(message));
    }
}

// ---- the process ----

/// The process reached Kafka and starts its sources.
#[derive(Debug)]
pub struct ProcessStarted<'a> {
    /// The producer's version.
    pub version: &'a str,
}

/// The process stops.
#[derive(Debug)]
pub struct ProcessStopped<'a> {
    /// Why.
    pub reason: &'a str,
}

/// `provider` of the process's own events.
pub const PROCESS_PROVIDER: &str = "process";

impl InternalEvent for ProcessStarted<'_> {
    fn emit(self, to: &dyn EventSink) {
        let message = format!("version {}", self.version);
        to.publish(&record(to, PROCESS_PROVIDER, EventKind::Started).with_message(message));
    }
}

impl InternalEvent for ProcessStopped<'_> {
    fn emit(self, to: &dyn EventSink) {
        to.publish(&record(to, PROCESS_PROVIDER, EventKind::Stopped).with_message(self.reason));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::telemetry::Metrics;

    struct Collect(Mutex<Vec<IngestEvent>>);

    impl EventSink for Collect {
        fn producer(&self) -> &str {
            "market-producer"
        }
        fn publish(&self, event: &IngestEvent) {
            self.0.lock().expect("lock").push(event.clone());
        }
    }

    /// A gap counts exactly its window and publishes that window; a disconnect counts a
    /// reconnect and publishes why.
    #[test]
    fn stream_events_count_and_publish_the_same_facts() {
        let m = Metrics::new("market-producer", "0.0.0");
        let counters = StreamCounters::new(&m, "polygon");
        let sink = Collect(Mutex::new(Vec::new()));
        let from = Utc::now();
        let gap = Gap { from, to: from + chrono::Duration::milliseconds(2500), why: String::new() };
        StreamGap { counters: &counters, epoch: Some(2), gap, plain_disconnect: "cannot replay" }.emit(&sink);
        let (error, retry_in) = ("close 1006".to_string(), Duration::from_secs(1));
        StreamDisconnected { counters: &counters, epoch: Some(2), error, retry_in, untrusted_certificate: false }
            .emit(&sink);
        assert_eq!((counters.gaps.get(), counters.gap_seconds.get(), counters.reconnects.get()), (1, 2.5, 1));
        let got = sink.0.into_inner().expect("lock");
        assert_eq!(got.iter().map(|e| e.kind).collect::<Vec<_>>(), [EventKind::Gap, EventKind::Disconnected]);
        assert_eq!((got[0].from, got[0].to), (Some(from), Some(from + chrono::Duration::milliseconds(2500))));
        assert_eq!(got[0].message.as_deref(), Some("cannot replay"));
        assert_eq!((got[1].conn_epoch, got[1].message.as_deref()), (Some(2), Some("close 1006")));
        assert!(got.iter().all(|e| e.producer == "market-producer" && e.provider == "polygon"));
    }

    /// A repair answers its gap with the same window and epoch, and counts what it did.
    #[test]
    fn repair_events_answer_their_gap_and_count_what_was_done() {
        let m = Metrics::new("market-producer", "0.0.0");
        let counters = RepairCounters::new(&m, "polygon");
        let sink = Collect(Mutex::new(Vec::new()));
        let (from, to) = (Utc::now(), Utc::now() + chrono::Duration::seconds(3));
        let counts = RepairCounts { symbols: 2, fetched: 12, published: 9, duplicates: 3, ..RepairCounts::default() };
        let lag = Duration::from_secs(4);
        GapRepairEnded { counters: &counters, from, to, epoch: Some(2), unrepaired: None, counts, lag }.emit(&sink);
        let why = Some((Unrepaired::NoHistory, "the plan has no trade history".to_string()));
        let counts = RepairCounts { symbols: 2, symbols_failed: 2, ..RepairCounts::default() };
        GapRepairEnded { counters: &counters, from, to, epoch: Some(3), unrepaired: why, counts, lag }.emit(&sink);
        let got = sink.0.into_inner().expect("lock");
        assert_eq!(got.iter().map(|e| e.kind).collect::<Vec<_>>(), [EventKind::GapRepaired, EventKind::GapUnrepaired]);
        assert_eq!((got[0].from, got[0].to, got[0].conn_epoch), (Some(from), Some(to), Some(2)));
        let r = got[0].repair.as_ref().expect("counts");
        assert_eq!((r.outcome.as_str(), r.published, r.duplicates), ("repaired", 9, 3));
        assert_eq!(got[1].repair.as_ref().map(|r| r.outcome.as_str()), Some("no_history"));
        assert!(got[1].message.as_deref().is_some_and(|m| m.contains("no trade history")));
        assert_eq!((counters.ticks.get(), counters.duplicates.get(), counters.lag.get_sample_count()), (9, 3, 2));
        let text = m.render();
        for outcome in ["repaired", "no_history"] {
            let line = format!(
                "producer_gap_repairs_total{{outcome=\"{outcome}\",provider=\"polygon\",producer=\"market-producer\"}} 1"
            );
            assert!(text.contains(&line), "{line} in\n{text}");
        }
        assert!(got.iter().all(|e| crate::record::Record::validate(e).is_ok()));
    }

    /// A refusal is logged every time but published once, until the source recovers.
    #[test]
    fn a_refusal_is_published_only_when_it_is_new() {
        let sink = Collect(Mutex::new(Vec::new()));
        for first in [true, false, false] {
            let (provider, source, error) = ("reddit", "reddit:r/stocks", "HTTP 403");
            let retry_in = Duration::from_secs(600);
            SourceRefused { provider, source, denied: true, error, detail: "refused", retry_in, first }.emit(&sink);
        }
        SourceRecovered { provider: "reddit", source: "reddit:r/stocks" }.emit(&sink);
        let kinds: Vec<EventKind> = sink.0.into_inner().expect("lock").iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [EventKind::SourceRefused, EventKind::SourceRecovered]);
    }
}
