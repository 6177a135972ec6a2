//! Finnhub trades → `market.tick/v1`. Pure; no allocation on the success path. Finnhub sends
//! no quotes, exchange or sequence; conditions pass through as its array of strings.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use ingest_core::record::{MarketTick, TickType};

use super::wire::Trade;
use crate::book::QuoteBook;

/// Provider label of Finnhub records.
pub(crate) const PROVIDER: &str = "finnhub";

/// One trade.
pub(crate) fn normalize<'a>(
    t: &Trade<'a>,
    received_at: DateTime<Utc>,
    book: &QuoteBook,
) -> Result<MarketTick<'a>, String> {
    let timestamp = DateTime::from_timestamp_millis(t.t).ok_or_else(|| format!("`t` is not a valid time: {}", t.t))?;
    let (bid_price, ask_price) = book.get(&t.s).map_or((None, None), |(b, a)| (Some(b), Some(a)));
    Ok(MarketTick {
        price: t.p,
        volume: t.v,
        bid_price,
        ask_price,
        conditions: t.c.filter(|c| c.get().starts_with('[') && c.get() != "[]"),
        ..MarketTick::new(t.s.clone().into_cow(), TickType::Trade, timestamp, Cow::Borrowed(PROVIDER), received_at)
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use chrono::TimeZone;
    use serde_json::Value;

    use super::*;
    use crate::finnhub::wire::Envelope;
    use ingest_core::ws::frame::for_each_element;

    #[test]
    fn fixture_frames_normalize_to_the_expected_ticks() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data/finnhub");
        let frames = std::fs::read_to_string(dir.join("trades.frames.jsonl")).unwrap();
        let expected: Vec<Value> = std::fs::read_to_string(dir.join("trades.expected.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let received_at = Utc.timestamp_millis_opt(1_704_205_800_123).unwrap();
        let book = QuoteBook::new(10);
        let mut got = Vec::new();
        for frame in frames.lines() {
            let env: Envelope<'_> = serde_json::from_str(frame).unwrap();
            assert_eq!(&*env.kind, "trade");
            for_each_element(env.data.unwrap().get(), |el| {
                let t: Trade<'_> = serde_json::from_str(el).unwrap();
                got.push(serde_json::to_value(normalize(&t, received_at, &book).unwrap()).unwrap());
            })
            .unwrap();
        }
        assert_eq!(got, expected);
    }

    #[test]
    fn wrong_types_and_bad_times_are_refused() {
        assert!(serde_json::from_str::<Trade<'_>>(r#"{"s":"AAPL","p":"x","t":1}"#).is_err());
        assert!(serde_json::from_str::<Trade<'_>>(r#"{"p":1.0,"t":1}"#).is_err(), "symbol required");
        let t: Trade<'_> = serde_json::from_str(r#"{"s":"AAPL","p":1.0,"t":99999999999999999}"#).unwrap();
        let err = normalize(&t, Utc::now(), &QuoteBook::new(1)).unwrap_err();
        assert!(err.contains("not a valid time"), "{err}");
    }
}
