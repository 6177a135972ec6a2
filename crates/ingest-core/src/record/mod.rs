//! The records we write to Kafka (schema version 1, docs/contracts.md, Records): their fields, validation,
//! Kafka key and headers.
//!
//! Field names are a contract with the stream processors: fields may be added, never removed or
//! renamed. Every record carries `provider` and `received_at` besides its event time. Times are
//! RFC 3339 UTC strings keeping the provider's precision (see [`ts`]).

mod altdata;
mod event;
mod json;
mod market;
mod news;
mod sec;
mod social;
mod state;
pub mod ts;

use std::borrow::Cow;

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde::Serialize;

pub use self::altdata::AltDataRecord;
pub use self::event::{DeadLetter, EventKind, IngestEvent, RepairCounts};
pub use self::market::{Code, MarketTick, TickType};
pub use self::news::{NewsArticle, SentimentSource};
pub use self::sec::{FilingParty, SecFiling};
pub use self::social::{Engagement, Platform, SocialPost};
pub use self::state::SourceState;

/// The topic family a record type is written to (names come from `kafka.topics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TopicKind {
    /// `market.ticks.raw`
    MarketTicks,
    /// `news.articles.raw`
    NewsArticles,
    /// `social.posts.raw`
    SocialPosts,
    /// `sec.filings.raw`
    SecFilings,
    /// `altdata.records.raw`
    AltDataRecords,
    /// `ingest.events`
    Events,
    /// `ingest.state` (compacted; cursors and dedup windows of polled sources)
    State,
}

/// A record that can be validated and written to Kafka.
pub trait Record: Serialize {
    /// Value of the `schema` header, e.g. `market.tick/v1`.
    const SCHEMA: &'static str;
    /// Where records of this type go.
    const TOPIC: TopicKind;

    /// The Kafka key (decides the partition, so per-key order holds).
    fn key(&self) -> Cow<'_, str>;
    /// The provider that produced the data (`polygon`, `newsapi`, …).
    fn provider(&self) -> &str;
    /// When the event happened, by the provider's clock.
    fn event_time(&self) -> DateTime<Utc>;
    /// When we received it.
    fn received_at(&self) -> DateTime<Utc>;
    /// Checks the record before it is written; a failure sends the raw input to the DLQ.
    fn validate(&self) -> Result<(), ValidationError>;
    /// Appends the record's JSON to `out`. serde_json by default; the market tick, written
    /// millions of times a second, has a hand-written writer that produces the same bytes.
    fn write_json(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        serde_json::to_writer(out, self)
    }
}

/// Why a record was refused. `field` is the record field at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid `{field}`: {reason}")]
pub struct ValidationError {
    /// The field at fault.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: Cow<'static, str>,
}

impl ValidationError {
    /// A new error.
    pub fn new(field: &'static str, reason: impl Into<Cow<'static, str>>) -> Self {
        Self { field, reason: reason.into() }
    }
}

/// Event times earlier than this are refused (no market data or filing we ingest predates it).
pub fn earliest_event_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(1990, 1, 1, 0, 0, 0).single().unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// How far an event time may be ahead of its receive time (clock skew between provider and us).
pub const MAX_FUTURE_SKEW: Duration = Duration::minutes(5);

/// Shared checks, so every record type says the same thing about the same fault.
pub(crate) mod check {
    use super::*;

    pub(crate) fn non_empty(field: &'static str, v: &str) -> Result<(), ValidationError> {
        if v.trim().is_empty() {
            return Err(ValidationError::new(field, "must not be empty"));
        }
        Ok(())
    }

    /// Non-empty, at most `max` bytes, no whitespace or control characters.
    pub(crate) fn token(field: &'static str, v: &str, max: usize) -> Result<(), ValidationError> {
        non_empty(field, v)?;
        if v.len() > max {
            return Err(ValidationError::new(field, format!("longer than {max} bytes")));
        }
        if v.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ValidationError::new(field, "contains whitespace or control characters"));
        }
        Ok(())
    }

    pub(crate) fn positive(field: &'static str, v: f64) -> Result<(), ValidationError> {
        if !v.is_finite() || v <= 0.0 {
            return Err(ValidationError::new(field, format!("must be a finite number > 0, got {v}")));
        }
        Ok(())
    }

    pub(crate) fn non_negative(field: &'static str, v: f64) -> Result<(), ValidationError> {
        if !v.is_finite() || v < 0.0 {
            return Err(ValidationError::new(field, format!("must be a finite number >= 0, got {v}")));
        }
        Ok(())
    }

    pub(crate) fn opt_positive(field: &'static str, v: Option<f64>) -> Result<(), ValidationError> {
        v.map_or(Ok(()), |v| positive(field, v))
    }

    pub(crate) fn opt_non_negative(field: &'static str, v: Option<f64>) -> Result<(), ValidationError> {
        v.map_or(Ok(()), |v| non_negative(field, v))
    }

    /// Not before 1990, not more than [`MAX_FUTURE_SKEW`] after it was received.
    pub(crate) fn event_time(
        field: &'static str,
        t: DateTime<Utc>,
        received_at: DateTime<Utc>,
    ) -> Result<(), ValidationError> {
        if t < earliest_event_time() {
            return Err(ValidationError::new(field, format!("{} is before 1990", ts::Rfc3339(t))));
        }
        if t > received_at + MAX_FUTURE_SKEW {
            return Err(ValidationError::new(
                field,
                format!("{} is more than 5 minutes after receipt ({})", ts::Rfc3339(t), ts::Rfc3339(received_at)),
            ));
        }
        Ok(())
    }

    pub(crate) fn http_url(field: &'static str, v: &str) -> Result<(), ValidationError> {
        let rest = v.strip_prefix("https://").or_else(|| v.strip_prefix("http://"));
        match rest {
            Some(r) if !r.is_empty() && !r.starts_with('/') && !v.chars().any(char::is_whitespace) => Ok(()),
            _ => Err(ValidationError::new(field, "must be an absolute http(s) URL")),
        }
    }

    pub(crate) fn unit_interval(field: &'static str, v: Option<f64>) -> Result<(), ValidationError> {
        match v {
            Some(s) if !s.is_finite() || !(-1.0..=1.0).contains(&s) => {
                Err(ValidationError::new(field, format!("must be in [-1, 1], got {s}")))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    use chrono::{DateTime, TimeZone, Utc};

    /// 2024-01-02T14:30:00.123Z, a fixed receive time for table tests.
    pub(crate) fn t0() -> DateTime<Utc> {
        Utc.timestamp_millis_opt(1_704_205_800_123).single().unwrap_or_default()
    }
}
