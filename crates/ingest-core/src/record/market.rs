//! `market.tick/v1`: one trade, quote or bar.
//!
//! ```json
//! {"symbol":"MSFT","event_type":"trade","price":114.125,"volume":100.0,
//!  "timestamp":"2018-09-04T04:53:38.784Z","bid_price":114.12,"ask_price":114.13,
//!  "exchange":"NASDAQ","mic":"XNAS","exchange_code":"4","sequence":3681328,
//!  "conditions":["0","12"],"trade_id":"12345","provider":"polygon",
//!  "received_at":"2018-09-04T04:53:38.801Z"}
//! ```

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Record, TopicKind, ValidationError, check, ts};

/// What a tick is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TickType {
    /// An executed trade: `price`/`volume` are the trade's.
    Trade,
    /// A top-of-book quote: `price` is the midpoint, `volume` 0.
    Quote,
    /// An aggregate bar: `price` is the close, `volume` the bar volume.
    Bar,
}

/// A normalized market-data event (design.md §2, "Market tick").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarketTick {
    /// Ticker or pair as the provider names it (`AAPL`, `BTC-USD`). Kafka key.
    pub symbol: String,
    /// trade, quote or bar.
    pub event_type: TickType,
    /// Trade price, quote midpoint or bar close.
    pub price: f64,
    /// Trade size or bar volume in shares (units for crypto); 0 for quotes.
    pub volume: f64,
    /// Event time by the provider's clock.
    #[serde(with = "ts")]
    pub timestamp: DateTime<Utc>,
    /// Latest bid (for trades: the last quote seen for the symbol; null until one is seen).
    pub bid_price: Option<f64>,
    /// Latest ask, as `bid_price`.
    pub ask_price: Option<f64>,
    /// Bid size in shares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bid_size: Option<f64>,
    /// Ask size in shares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ask_size: Option<f64>,
    /// Readable venue name (`NASDAQ`), when the code is known.
    pub exchange: Option<String>,
    /// ISO 10383 market identifier code (`XNAS`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mic: Option<String>,
    /// The provider's raw exchange code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchange_code: Option<String>,
    /// The provider's sequence number, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<u64>,
    /// Trade or quote condition codes as the provider sends them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<String>,
    /// The provider's trade id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trade_id: Option<String>,
    /// Bar open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open: Option<f64>,
    /// Bar high.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high: Option<f64>,
    /// Bar low.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low: Option<f64>,
    /// Bar volume-weighted average price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vwap: Option<f64>,
    /// Bar window start.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "ts::option")]
    pub window_start: Option<DateTime<Utc>>,
    /// Bar window end.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "ts::option")]
    pub window_end: Option<DateTime<Utc>>,
    /// `polygon`, `alpaca`, `finnhub`, …
    pub provider: String,
    /// When we received the frame.
    #[serde(with = "ts")]
    pub received_at: DateTime<Utc>,
}

impl Record for MarketTick {
    const SCHEMA: &'static str = "market.tick/v1";
    const TOPIC: TopicKind = TopicKind::MarketTicks;

    fn key(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.symbol)
    }

    fn provider(&self) -> &str {
        &self.provider
    }

    fn event_time(&self) -> DateTime<Utc> {
        self.timestamp
    }

    fn received_at(&self) -> DateTime<Utc> {
        self.received_at
    }

    fn validate(&self) -> Result<(), ValidationError> {
        check::token("symbol", &self.symbol, 64)?;
        check::positive("price", self.price)?;
        check::non_negative("volume", self.volume)?;
        check::opt_positive("bid_price", self.bid_price)?;
        check::opt_positive("ask_price", self.ask_price)?;
        check::opt_non_negative("bid_size", self.bid_size)?;
        check::opt_non_negative("ask_size", self.ask_size)?;
        check::event_time("timestamp", self.timestamp, self.received_at)?;
        check::non_empty("provider", &self.provider)?;
        match self.event_type {
            TickType::Quote => {
                if self.volume != 0.0 {
                    return Err(ValidationError::new("volume", "must be 0 for a quote"));
                }
            }
            TickType::Bar => {
                for (f, v) in [("open", self.open), ("high", self.high), ("low", self.low)] {
                    match v {
                        Some(v) => check::positive(f, v)?,
                        None => return Err(ValidationError::new(f, "required for a bar")),
                    }
                }
                check::opt_positive("vwap", self.vwap)?;
                if let (Some(h), Some(l)) = (self.high, self.low) {
                    if l > h {
                        return Err(ValidationError::new("low", format!("{l} is above high {h}")));
                    }
                }
                if let (Some(s), Some(e)) = (self.window_start, self.window_end) {
                    if e < s {
                        return Err(ValidationError::new("window_end", "is before window_start"));
                    }
                }
            }
            TickType::Trade => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::record::testutil::t0;

    pub(crate) fn trade() -> MarketTick {
        MarketTick {
            symbol: "MSFT".into(),
            event_type: TickType::Trade,
            price: 114.125,
            volume: 100.0,
            timestamp: t0() - Duration::milliseconds(17),
            bid_price: None,
            ask_price: None,
            bid_size: None,
            ask_size: None,
            exchange: Some("NASDAQ".into()),
            mic: Some("XNAS".into()),
            exchange_code: Some("4".into()),
            sequence: Some(3_681_328),
            conditions: vec!["12".into()],
            trade_id: Some("12345".into()),
            open: None,
            high: None,
            low: None,
            vwap: None,
            window_start: None,
            window_end: None,
            provider: "polygon".into(),
            received_at: t0(),
        }
    }

    #[test]
    fn valid_trade_serializes_with_contract_fields() {
        let t = trade();
        assert_eq!(t.validate(), Ok(()));
        let v: serde_json::Value = serde_json::to_value(&t).unwrap();
        for f in ["symbol", "price", "volume", "timestamp", "bid_price", "ask_price", "exchange"] {
            assert!(v.get(f).is_some(), "missing contract field {f}");
        }
        assert_eq!(v["event_type"], "trade");
        assert_eq!(v["timestamp"], "2024-01-02T14:30:00.106Z");
        assert_eq!(v["bid_price"], serde_json::Value::Null);
        assert_eq!(t.key(), "MSFT");
        let back: MarketTick = serde_json::from_value(v).unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn refuses_bad_values_naming_the_field() {
        type Mutate = fn(&mut MarketTick);
        let cases: &[(&str, Mutate)] = &[
            ("symbol", |t| t.symbol = String::new()),
            ("symbol", |t| t.symbol = "MS FT".into()),
            ("price", |t| t.price = f64::NAN),
            ("price", |t| t.price = -1.0),
            ("price", |t| t.price = 0.0),
            ("price", |t| t.price = f64::INFINITY),
            ("volume", |t| t.volume = -5.0),
            ("bid_price", |t| t.bid_price = Some(0.0)),
            ("ask_size", |t| t.ask_size = Some(f64::NAN)),
            ("timestamp", |t| t.timestamp = t.received_at + Duration::hours(1)),
            ("timestamp", |t| t.timestamp = chrono::DateTime::UNIX_EPOCH),
            ("volume", |t| t.event_type = TickType::Quote),
            ("open", |t| t.event_type = TickType::Bar),
        ];
        for (field, mutate) in cases {
            let mut t = trade();
            mutate(&mut t);
            let err = t.validate().expect_err(field);
            assert_eq!(err.field, *field, "{err}");
        }
    }

    #[test]
    fn bar_low_above_high_is_refused() {
        let mut t = trade();
        t.event_type = TickType::Bar;
        (t.open, t.high, t.low) = (Some(1.0), Some(2.0), Some(3.0));
        assert_eq!(t.validate().unwrap_err().field, "low");
        t.low = Some(0.5);
        assert_eq!(t.validate(), Ok(()));
    }
}
