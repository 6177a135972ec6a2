//! Alpaca events → `market.tick/v1`. Pure; no allocation on the success path.
//!
//! Trades `t` carry the symbol's latest quote; quotes `q`: midpoint, sizes as sent; bars `b`:
//! price = close, one-minute window starting at `t`. Venues from the participant letter `x`.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use ingest_core::record::{Code, MarketTick, TickType};

use super::wire::Msg;
use crate::book::QuoteBook;
use crate::exchanges;
use crate::tick::Text;
use crate::tick::{req, tick};

/// Provider label of Alpaca records.
pub(crate) const PROVIDER: &str = "alpaca";

fn time(t: Option<&Text<'_>>) -> Result<DateTime<Utc>, String> {
    let t: &str = req(t, "t")?;
    DateTime::parse_from_rfc3339(t)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|e| format!("`t` is not an RFC 3339 time ({e}): {t}"))
}

/// Converts a data event (`t`, `q`, `b`); other types are refused with a reason.
pub(crate) fn normalize<'a>(
    m: &Msg<'a>,
    received_at: DateTime<Utc>,
    book: &mut QuoteBook,
) -> Result<MarketTick<'a>, String> {
    let symbol = || req(m.symbol.clone(), "S").map(Text::into_cow);
    match &*m.kind {
        "t" => {
            let mut t = tick(PROVIDER, symbol()?, TickType::Trade, time(m.t.as_ref())?, received_at);
            t.price = req(m.p, "p")?;
            t.volume = req(m.s, "s")?;
            if let Some((bid, ask)) = book.get(&t.symbol) {
                (t.bid_price, t.ask_price) = (Some(bid), Some(ask));
            }
            if let Some(x) = &m.x {
                t.exchange_code = Some(Code::Str(x.clone().into_cow()));
                if let Some(v) = exchanges::by_participant(x) {
                    (t.exchange, t.mic) = (Some(Cow::Borrowed(v.name)), Some(Cow::Borrowed(v.mic)));
                }
            }
            t.conditions = m.c.filter(|c| c.get().starts_with('[') && c.get() != "[]");
            t.trade_id = m.i.and_then(|i| serde_json::from_str::<i64>(i.get()).ok()).map(Code::Int);
            Ok(t)
        }
        "q" => {
            let mut t = tick(PROVIDER, symbol()?, TickType::Quote, time(m.t.as_ref())?, received_at);
            let (bid, ask) = (req(m.bp, "bp")?, req(m.ap, "ap")?);
            t.price = (bid + ask) / 2.0;
            (t.bid_price, t.ask_price, t.bid_size, t.ask_size) = (Some(bid), Some(ask), m.bs, m.as_);
            t.conditions = m.c.filter(|c| c.get().starts_with('[') && c.get() != "[]");
            book.update(&t.symbol, bid, ask);
            Ok(t)
        }
        "b" => {
            let start = time(m.t.as_ref())?;
            let mut t = tick(PROVIDER, symbol()?, TickType::Bar, start, received_at);
            let close = req(m.c, "c")?;
            t.price = serde_json::from_str::<f64>(close.get())
                .map_err(|_| format!("`c` is not a number: {}", close.get()))?;
            t.volume = req(m.v, "v")?;
            (t.open, t.high, t.low, t.vwap) = (m.o, m.h, m.l, m.vw);
            t.window_start = Some(start);
            t.window_end = Some(start + chrono::Duration::minutes(1));
            Ok(t)
        }
        "c" => Err("trade correction (`c`): no market.tick equivalent; kept here".into()),
        "x" => Err("trade cancel/error (`x`): no market.tick equivalent; kept here".into()),
        other => Err(format!("unknown event type `{other}`")),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use chrono::TimeZone;
    use serde_json::Value;

    use super::*;
    use ingest_core::ws::frame::for_each_element;

    #[test]
    fn fixture_frame_normalizes_to_the_expected_ticks() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data/alpaca");
        let frame = std::fs::read_to_string(dir.join("data.frame.json")).unwrap();
        let expected: Vec<Value> = std::fs::read_to_string(dir.join("data.expected.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let received_at = Utc.timestamp_millis_opt(1_704_205_800_123).unwrap();
        let mut book = QuoteBook::new(10);
        let mut got = Vec::new();
        for_each_element(&frame, |el| {
            let m: Msg<'_> = serde_json::from_str(el).unwrap();
            got.push(serde_json::to_value(normalize(&m, received_at, &mut book).unwrap()).unwrap());
        })
        .unwrap();
        assert_eq!(got.len(), expected.len());
        for (g, w) in got.iter().zip(&expected) {
            for (k, wv) in w.as_object().unwrap() {
                match (g[k].as_f64(), wv.as_f64()) {
                    (Some(a), Some(b)) => assert!((a - b).abs() < 1e-9, "{k}: {a} != {b}"),
                    _ => assert_eq!(&g[k], wv, "{k}"),
                }
            }
            assert_eq!(g.as_object().unwrap().len(), w.as_object().unwrap().len(), "{g}");
        }
    }

    #[test]
    fn bad_events_are_refused_with_a_reason() {
        let cases = [
            (r#"{"T":"t","S":"AAPL","p":1.0,"s":1,"t":"yesterday"}"#, "not an RFC 3339 time"),
            (r#"{"T":"t","S":"AAPL","s":1,"t":"2021-02-22T15:51:44.208Z"}"#, "missing `p`"),
            (r#"{"T":"b","S":"SPY","c":"x","v":1,"t":"2021-02-22T19:15:00Z"}"#, "`c` is not a number"),
            (r#"{"T":"c","S":"AAPL"}"#, "trade correction"),
            (r#"{"T":"zz"}"#, "unknown event type `zz`"),
        ];
        for (raw, want) in cases {
            let m: Msg<'_> = serde_json::from_str(raw).unwrap();
            let err = normalize(&m, Utc::now(), &mut QuoteBook::new(1)).unwrap_err();
            assert!(err.contains(want), "{raw}: {err}");
        }
    }
}
