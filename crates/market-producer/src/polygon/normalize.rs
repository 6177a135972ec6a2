//! Polygon events → `market.tick/v1`. Pure: no I/O, no allocation on the success path.
//!
//! - `T`/`XT` trades: price `p`, size `s`, conditions `c` (passed through), trade id `i`,
//!   exchange `x` (stocks: venue name + MIC from the table), sequence `q`, TRF id `trfi`;
//!   bid/ask from the last quote of the symbol.
//! - `Q`/`XQ` quotes: `price` = midpoint, `volume` = 0; stock sizes are round lots → × 100 shares
//!   (crypto sizes are units).
//! - `A`/`AM` (stocks) and `XAS`/`XA` (crypto) bars: `price` = close `c`, `volume` = `v`,
//!   open/high/low/vwap, window `s`..`e`; `timestamp` = window start.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use ingest_core::record::{Code, MarketTick, TickType};
use serde_json::value::RawValue;

use super::wire::Msg;
use crate::book::QuoteBook;
use crate::exchanges;
use crate::tick::Text;
use crate::tick::{req, tick};

/// Provider label of Polygon records.
pub(crate) const PROVIDER: &str = "polygon";

/// Shares per round lot (Polygon stock quote sizes are in round lots).
pub(crate) const ROUND_LOT: f64 = 100.0;

/// Why an event could not be turned into a tick (it is dead-lettered with this reason).
pub(crate) type Reason = Cow<'static, str>;

fn num(raw: Option<&RawValue>, field: &'static str) -> Result<f64, Reason> {
    let raw = raw.ok_or_else(|| Reason::from(format!("missing `{field}`")))?;
    // The text is one valid JSON value, so when it is a number, Rust's float parser reads it
    // (correctly rounded, as serde_json with `float_roundtrip`) without a second JSON pass.
    raw.get()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| format!("`{field}` is not a number: {}", raw.get()).into())
}

fn int(raw: Option<&RawValue>, field: &'static str) -> Result<i64, Reason> {
    let raw = raw.ok_or_else(|| Reason::from(format!("missing `{field}`")))?;
    serde_json::from_str::<i64>(raw.get()).map_err(|_| format!("`{field}` is not an integer: {}", raw.get()).into())
}

fn millis(ms: i64, field: &'static str) -> Result<DateTime<Utc>, Reason> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| format!("`{field}` is not a valid time: {ms}").into())
}

/// A code that is a number or a string in the frame.
fn code<'a>(raw: Option<&'a RawValue>) -> Option<Code<'a>> {
    // Decide by the first byte: a failed parse would allocate its error.
    let raw = raw?.get();
    if raw.starts_with('"') {
        // `Cow<str>` would always deserialize owned; borrow unless the text has escapes.
        match serde_json::from_str::<&'a str>(raw) {
            Ok(s) => Some(Code::Str(Cow::Borrowed(s))),
            Err(_) => serde_json::from_str::<String>(raw).ok().map(|s| Code::Str(Cow::Owned(s))),
        }
    } else {
        serde_json::from_str::<i64>(raw).ok().map(Code::Int)
    }
}

/// Converts one data event. `Ok(None)` for events that carry no tick (there are none among the
/// handled types today; status messages never reach here).
pub(crate) fn normalize<'a>(
    m: &Msg<'a>,
    received_at: DateTime<Utc>,
    book: &mut QuoteBook,
) -> Result<MarketTick<'a>, Reason> {
    let ev: &str = &m.ev;
    // The pair for crypto events, the ticker for stock events; borrowed unless escaped.
    let symbol = |crypto: bool| {
        req(if crypto { m.pair.clone() } else { m.sym.clone() }, if crypto { "pair" } else { "sym" })
            .map(Text::into_cow)
    };
    match ev {
        "T" | "XT" => {
            let crypto = ev == "XT";
            let mut t = tick(PROVIDER, symbol(crypto)?, TickType::Trade, millis(req(m.t, "t")?, "t")?, received_at);
            t.price = num(m.p, "p")?;
            t.volume = num(m.s, "s")?;
            if let Some((bid, ask)) = book.get(&t.symbol) {
                (t.bid_price, t.ask_price) = (Some(bid), Some(ask));
            }
            t.exchange_code = code(m.x);
            if !crypto
                && let Some(Code::Int(id)) = t.exchange_code
                && let Some(v) = exchanges::by_polygon_id(id)
            {
                (t.exchange, t.mic) = (Some(Cow::Borrowed(v.name)), Some(Cow::Borrowed(v.mic)));
            }
            t.sequence = m.q;
            t.conditions = m.c.filter(|c| c.get().starts_with('['));
            t.trade_id = code(m.i);
            t.trf_id = m.trfi;
            Ok(t)
        }
        "Q" | "XQ" => {
            let crypto = ev == "XQ";
            let mut t = tick(PROVIDER, symbol(crypto)?, TickType::Quote, millis(req(m.t, "t")?, "t")?, received_at);
            let (bid, ask) = (req(m.bp, "bp")?, req(m.ap, "ap")?);
            let lot = if crypto { 1.0 } else { ROUND_LOT };
            t.price = (bid + ask) / 2.0;
            (t.bid_price, t.ask_price) = (Some(bid), Some(ask));
            (t.bid_size, t.ask_size) = (m.bs.map(|s| s * lot), m.as_.map(|s| s * lot));
            t.sequence = m.q;
            book.update(&t.symbol, bid, ask);
            Ok(t)
        }
        "A" | "AM" | "XA" | "XAS" => {
            let crypto = ev.starts_with('X');
            let start = millis(int(m.s, "s")?, "s")?;
            let mut t = tick(PROVIDER, symbol(crypto)?, TickType::Bar, start, received_at);
            t.price = num(m.c, "c")?;
            t.volume = req(m.v, "v")?;
            (t.open, t.high, t.low, t.vwap) = (m.o, m.h, m.l, m.vw);
            t.window_start = Some(start);
            t.window_end = m.e.map(|e| millis(e, "e")).transpose()?;
            Ok(t)
        }
        other => Err(format!("unknown event type `{other}`").into()),
    }
}

#[cfg(test)]
mod tests;
