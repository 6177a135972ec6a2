//! Small helpers the providers' normalizers share.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use ingest_core::record::{MarketTick, TickType};

/// A tick of `provider` for `symbol`, borrowed from the frame, every optional field empty.
pub(crate) fn tick<'a>(
    provider: &'static str,
    symbol: &'a str,
    event_type: TickType,
    timestamp: DateTime<Utc>,
    received_at: DateTime<Utc>,
) -> MarketTick<'a> {
    MarketTick::new(Cow::Borrowed(symbol), event_type, timestamp, Cow::Borrowed(provider), received_at)
}

/// A required field: its value or "missing `field`".
pub(crate) fn req<T>(v: Option<T>, field: &'static str) -> Result<T, String> {
    v.ok_or_else(|| format!("missing `{field}`"))
}
