//! `ingest.event/v1` (lifecycle events on `ingest.events`) and `ingest.dead_letter/v1` (the
//! value of every `.dlq` record).
//!
//! ```json
//! {"producer":"market-producer","provider":"polygon","kind":"gap",
//!  "at":"2024-01-02T14:30:05.2Z","from":"2024-01-02T14:30:01.1Z","to":"2024-01-02T14:30:05.2Z",
//!  "conn_epoch":3,"message":"reconnected after close 1006"}
//! ```

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Record, TopicKind, ValidationError, check, ts};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The producer process started and reached Kafka.
    Started,
    /// The producer process is stopping (`message` says why).
    Stopped,
    /// A source connected (and authenticated).
    Connected,
    /// A source lost its connection.
    Disconnected,
    /// Data between `from` and `to` was not received (WebSocket sources cannot replay).
    Gap,
    /// A source re-sent its subscriptions after reconnecting.
    Resubscribed,
    /// A provider told us to slow down.
    RateLimited,
    /// A circuit breaker changed state (`state`).
    BreakerState,
    /// A provider refused one source (401/403 for that resource, or 404 for a configured name):
    /// that source waits and tries again (`message` says why and when); the others run on.
    SourceRefused,
    /// A source refused earlier works again.
    SourceRecovered,
    /// A period quota is used up (a daily or monthly cap): paused until it resets (`to`).
    QuotaExhausted,
    /// A guard of ours refused a request target before it was sent (the SSRF policy; a
    /// redirect or next page leaving the credentials' origin; https to http): `message` says
    /// which and why.
    RequestRefused,
    /// A stream gap (`from`, `to`, `conn_epoch` as in its `gap` event) was filled from the
    /// provider's REST history: `repair` counts what was fetched, published and skipped.
    GapRepaired,
    /// A stream gap could not be filled: `message` says why (`repair.outcome` names it), and
    /// `repair` counts what was published anyway (symbols that could be repaired).
    GapUnrepaired,
}

/// What the repair of one gap did (`gap_repaired` and `gap_unrepaired` events).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairCounts {
    /// `repaired`, or why not: `no_history`, `rate_limited`, `too_long`, `refused`,
    /// `unsupported`, `failed`.
    pub outcome: String,
    /// Symbols of the window.
    pub symbols: u64,
    /// Symbols whose part of the window could not be fetched.
    pub symbols_failed: u64,
    /// History trades fetched for the window.
    pub fetched: u64,
    /// Trades published with `backfill: true` (never received live).
    pub published: u64,
    /// History trades that had arrived live at an edge of the window, or repeated in the history.
    pub duplicates: u64,
    /// History quotes fetched for the window (with `market.repair.quotes` and the quote channel
    /// subscribed).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub quotes_fetched: u64,
    /// Quotes published with `backfill: true` (the others had arrived live at an edge).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub quotes_published: u64,
    /// History minute bars fetched for the window (with `market.repair.bars` and the minute-bar
    /// channel subscribed).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub bars_fetched: u64,
    /// Minute bars published with `backfill: true` (the others had arrived live).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub bars_published: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A lifecycle event, keyed by producer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngestEvent {
    /// `market-producer`, …
    pub producer: String,
    /// Provider the event is about; `process` for the producer process itself.
    pub provider: String,
    /// What happened.
    pub kind: EventKind,
    /// When it happened.
    #[serde(with = "ts")]
    pub at: DateTime<Utc>,
    /// Start of a gap window.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "ts::option")]
    pub from: Option<DateTime<Utc>>,
    /// End of a gap window.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "ts::option")]
    pub to: Option<DateTime<Utc>>,
    /// Breaker state (`closed`, `open`, `half_open`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Connection epoch of WebSocket sources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conn_epoch: Option<u64>,
    /// Human-readable detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// What a gap's repair did (`gap_repaired`, `gap_unrepaired`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repair: Option<RepairCounts>,
}

impl IngestEvent {
    /// An event of `kind` now, with no detail.
    pub fn new(producer: &str, provider: &str, kind: EventKind) -> Self {
        Self {
            producer: producer.into(),
            provider: provider.into(),
            kind,
            at: Utc::now(),
            from: None,
            to: None,
            state: None,
            conn_epoch: None,
            message: None,
            repair: None,
        }
    }

    /// Adds a message.
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }
}

impl Record for IngestEvent {
    const SCHEMA: &'static str = "ingest.event/v1";
    const TOPIC: TopicKind = TopicKind::Events;

    fn key(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.producer)
    }
    fn provider(&self) -> &str {
        &self.provider
    }
    fn event_time(&self) -> DateTime<Utc> {
        self.at
    }
    fn received_at(&self) -> DateTime<Utc> {
        self.at
    }

    fn validate(&self) -> Result<(), ValidationError> {
        check::non_empty("producer", &self.producer)?;
        if matches!(self.kind, EventKind::Gap | EventKind::GapRepaired | EventKind::GapUnrepaired) {
            match (self.from, self.to) {
                (Some(f), Some(t)) if f <= t => {}
                _ => return Err(ValidationError::new("from", "a gap needs from <= to")),
            }
        }
        Ok(())
    }
}

/// The value of a dead-letter record: what we received, why it was refused, and where it was
/// headed. `raw` is the payload as text when it is UTF-8, else base64 (`raw_encoding`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Producer that refused it.
    pub producer: String,
    /// Provider that sent it.
    pub provider: String,
    /// The topic it was meant for.
    pub topic: String,
    /// Why it was refused.
    pub error: String,
    /// The raw input (possibly cut, see `raw_truncated`).
    pub raw: String,
    /// `utf8` or `base64`.
    pub raw_encoding: String,
    /// Length of the whole raw input in bytes.
    pub raw_bytes: usize,
    /// True when `raw` holds only the first [`DeadLetter::MAX_RAW_BYTES`] bytes.
    pub raw_truncated: bool,
    /// When we received the input.
    #[serde(with = "ts")]
    pub received_at: DateTime<Utc>,
}

impl DeadLetter {
    /// Schema header value.
    pub const SCHEMA: &'static str = "ingest.dead_letter/v1";
    /// Raw inputs are cut to this size so that a dead letter always fits a Kafka message.
    pub const MAX_RAW_BYTES: usize = 256 * 1024;

    /// Builds a dead letter, encoding `raw` losslessly (text or base64) and capping its size.
    pub fn new(
        producer: &str,
        provider: &str,
        topic: &str,
        error: &str,
        raw: &[u8],
        received_at: DateTime<Utc>,
    ) -> Self {
        use base64::Engine as _;
        let cut = &raw[..raw.len().min(Self::MAX_RAW_BYTES)];
        let (raw_text, encoding) = match std::str::from_utf8(cut) {
            Ok(s) => (s.to_owned(), "utf8"),
            // A cut through a multi-byte character is still text up to that character.
            Err(e) if e.error_len().is_none() && cut.len() < raw.len() => {
                (String::from_utf8_lossy(&cut[..e.valid_up_to()]).into_owned(), "utf8")
            }
            Err(_) => (base64::engine::general_purpose::STANDARD.encode(cut), "base64"),
        };
        Self {
            producer: producer.into(),
            provider: provider.into(),
            topic: topic.into(),
            error: error.into(),
            raw: raw_text,
            raw_encoding: encoding.into(),
            raw_bytes: raw.len(),
            raw_truncated: cut.len() < raw.len(),
            received_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::testutil::t0;

    #[test]
    fn dead_letter_keeps_text_and_base64_encodes_binary() {
        let d = DeadLetter::new("p", "polygon", "market.ticks.raw", "bad", br#"[{"ev":"T"}]"#, t0());
        assert_eq!((d.raw.as_str(), d.raw_encoding.as_str(), d.raw_truncated), (r#"[{"ev":"T"}]"#, "utf8", false));
        let d = DeadLetter::new("p", "polygon", "t", "bad", &[0xff, 0xfe, b'a'], t0());
        assert_eq!((d.raw.as_str(), d.raw_encoding.as_str(), d.raw_bytes), ("//5h", "base64", 3));
    }

    #[test]
    fn dead_letter_caps_huge_payloads() {
        let raw = vec![b'x'; DeadLetter::MAX_RAW_BYTES + 10];
        let d = DeadLetter::new("p", "x", "t", "too big", &raw, t0());
        assert!(d.raw_truncated);
        assert_eq!(d.raw.len(), DeadLetter::MAX_RAW_BYTES);
        assert_eq!(d.raw_bytes, raw.len());
    }

    #[test]
    fn gap_needs_ordered_window() {
        let mut e = IngestEvent::new("market-producer", "polygon", EventKind::Gap);
        assert!(e.validate().is_err());
        e.from = Some(t0());
        e.to = Some(t0());
        assert_eq!(e.validate(), Ok(()));
        assert_eq!(serde_json::to_value(&e).unwrap()["kind"], "gap");
    }
}
