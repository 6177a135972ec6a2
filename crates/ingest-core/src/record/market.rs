//! `market.tick/v1`: one trade, quote or bar.
//!
//! ```json
//! {"symbol":"MSFT","event_type":"trade","price":114.125,"volume":100.0,
//!  "timestamp":"2018-09-04T04:53:38.784Z","bid_price":114.12,"ask_price":114.13,
//!  "exchange":"NASDAQ","mic":"XNAS","exchange_code":"12","sequence":3681328,
//!  "conditions":[0,12],"trade_id":"12345","provider":"polygon",
//!  "received_at":"2018-09-04T04:53:38.801Z"}
//! ```
//!
//! The type borrows from the frame it was parsed from (`'a`), so the hot path builds a tick
//! without allocating: text fields are `Cow`s, `conditions` is the provider's JSON array passed
//! through as is (Polygon sends numbers, Alpaca and Finnhub strings).

use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

use super::{Record, TopicKind, ValidationError, check, json, ts};

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

/// A provider code (exchange id, trade id) that is a number for some providers and a string
/// for others; always written as a JSON string (`12`, `"D"` → `"12"`, `"D"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Code<'a> {
    /// A numeric code.
    Int(i64),
    /// A textual code.
    Str(Cow<'a, str>),
}

impl fmt::Display for Code<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Code::Int(i) => write!(f, "{i}"),
            Code::Str(s) => f.write_str(s),
        }
    }
}

impl Serialize for Code<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            // itoa: formatting on the stack (collect_str may build a String).
            Code::Int(i) => s.serialize_str(itoa::Buffer::new().format(*i)),
            Code::Str(v) => s.serialize_str(v),
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Code<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Code::Str(<Cow<'a, str> as Deserialize>::deserialize(d)?))
    }
}

/// A normalized market-data event (docs/contracts.md, Records).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MarketTick<'a> {
    /// Ticker or pair as the provider names it (`AAPL`, `BTC-USD`). Kafka key.
    #[serde(borrow)]
    pub symbol: Cow<'a, str>,
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
    #[serde(borrow)]
    pub exchange: Option<Cow<'a, str>>,
    /// ISO 10383 market identifier code (`XNAS`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none", borrow)]
    pub mic: Option<Cow<'a, str>>,
    /// The provider's raw exchange code.
    #[serde(default, skip_serializing_if = "Option::is_none", borrow)]
    pub exchange_code: Option<Code<'a>>,
    /// The provider's sequence number, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<u64>,
    /// Trade or quote condition codes: the provider's JSON array, unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none", borrow)]
    pub conditions: Option<&'a RawValue>,
    /// The provider's trade id.
    #[serde(default, skip_serializing_if = "Option::is_none", borrow)]
    pub trade_id: Option<Code<'a>>,
    /// Polygon's trade reporting facility id (`trfi`) of an off-exchange print: with the
    /// exchange and the trade id, the trade's identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trf_id: Option<i64>,
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
    #[serde(borrow)]
    pub provider: Cow<'a, str>,
    /// When we received the frame (for a repaired tick: when the history was fetched).
    #[serde(with = "ts")]
    pub received_at: DateTime<Utc>,
    /// True for a tick fetched from the provider's REST history to fill a stream gap (it was
    /// never received live); absent for live ticks.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub backfill: bool,
}

impl<'a> MarketTick<'a> {
    /// A tick with the required fields and every optional one empty; normalizers fill in what
    /// their provider sends.
    pub fn new(
        symbol: Cow<'a, str>,
        event_type: TickType,
        timestamp: DateTime<Utc>,
        provider: Cow<'a, str>,
        received_at: DateTime<Utc>,
    ) -> Self {
        Self {
            symbol,
            event_type,
            price: 0.0,
            volume: 0.0,
            timestamp,
            bid_price: None,
            ask_price: None,
            bid_size: None,
            ask_size: None,
            exchange: None,
            mic: None,
            exchange_code: None,
            sequence: None,
            conditions: None,
            trade_id: None,
            trf_id: None,
            open: None,
            high: None,
            low: None,
            vwap: None,
            window_start: None,
            window_end: None,
            provider,
            received_at,
            backfill: false,
        }
    }
}

impl Code<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            Code::Int(i) => {
                out.push(b'"');
                out.extend_from_slice(itoa::Buffer::new().format(*i).as_bytes());
                out.push(b'"');
            }
            Code::Str(s) => json::string(out, s),
        }
    }
}

impl MarketTick<'_> {
    /// The hand-written form of `Serialize` (same field order, same omissions, same bytes):
    /// field names are written pre-escaped and values straight into `out`, with no serializer
    /// state machine in between. See [`Record::write_json`].
    fn write_json_fast(&self, out: &mut Vec<u8>) {
        /// `,"name":` when the value is present.
        fn opt<T>(out: &mut Vec<u8>, name: &[u8], v: Option<T>, write: impl FnOnce(&mut Vec<u8>, T)) {
            if let Some(v) = v {
                out.extend_from_slice(name);
                write(out, v);
            }
        }
        out.reserve(400);
        out.extend_from_slice(b"{\"symbol\":");
        json::string(out, &self.symbol);
        out.extend_from_slice(match self.event_type {
            TickType::Trade => b",\"event_type\":\"trade\",\"price\":",
            TickType::Quote => b",\"event_type\":\"quote\",\"price\":",
            TickType::Bar => b",\"event_type\":\"bar\",\"price\":",
        });
        json::number(out, self.price);
        out.extend_from_slice(b",\"volume\":");
        json::number(out, self.volume);
        out.extend_from_slice(b",\"timestamp\":");
        json::time(out, self.timestamp);
        out.extend_from_slice(b",\"bid_price\":");
        json::opt_number(out, self.bid_price);
        out.extend_from_slice(b",\"ask_price\":");
        json::opt_number(out, self.ask_price);
        opt(out, b",\"bid_size\":", self.bid_size, json::number);
        opt(out, b",\"ask_size\":", self.ask_size, json::number);
        out.extend_from_slice(b",\"exchange\":");
        match &self.exchange {
            Some(e) => json::string(out, e),
            None => out.extend_from_slice(b"null"),
        }
        opt(out, b",\"mic\":", self.mic.as_deref(), json::string);
        opt(out, b",\"exchange_code\":", self.exchange_code.as_ref(), |o, c| c.write_json(o));
        opt(out, b",\"sequence\":", self.sequence, json::unsigned);
        opt(out, b",\"conditions\":", self.conditions, |o, r| o.extend_from_slice(r.get().as_bytes()));
        opt(out, b",\"trade_id\":", self.trade_id.as_ref(), |o, c| c.write_json(o));
        opt(out, b",\"trf_id\":", self.trf_id, |o, v| o.extend_from_slice(itoa::Buffer::new().format(v).as_bytes()));
        opt(out, b",\"open\":", self.open, json::number);
        opt(out, b",\"high\":", self.high, json::number);
        opt(out, b",\"low\":", self.low, json::number);
        opt(out, b",\"vwap\":", self.vwap, json::number);
        opt(out, b",\"window_start\":", self.window_start, json::time);
        opt(out, b",\"window_end\":", self.window_end, json::time);
        out.extend_from_slice(b",\"provider\":");
        json::string(out, &self.provider);
        out.extend_from_slice(b",\"received_at\":");
        json::time(out, self.received_at);
        if self.backfill {
            out.extend_from_slice(b",\"backfill\":true");
        }
        out.push(b'}');
    }
}

impl PartialEq for MarketTick<'_> {
    fn eq(&self, o: &Self) -> bool {
        fn raw(r: Option<&RawValue>) -> Option<&str> {
            r.map(RawValue::get)
        }
        self.symbol == o.symbol
            && self.event_type == o.event_type
            && self.price == o.price
            && self.volume == o.volume
            && self.timestamp == o.timestamp
            && (self.bid_price, self.ask_price, self.bid_size, self.ask_size)
                == (o.bid_price, o.ask_price, o.bid_size, o.ask_size)
            && (&self.exchange, &self.mic, &self.exchange_code) == (&o.exchange, &o.mic, &o.exchange_code)
            && self.sequence == o.sequence
            && raw(self.conditions) == raw(o.conditions)
            && (&self.trade_id, self.trf_id) == (&o.trade_id, o.trf_id)
            && (self.open, self.high, self.low, self.vwap) == (o.open, o.high, o.low, o.vwap)
            && (self.window_start, self.window_end) == (o.window_start, o.window_end)
            && self.provider == o.provider
            && self.received_at == o.received_at
            && self.backfill == o.backfill
    }
}

impl Record for MarketTick<'_> {
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

    fn write_json(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        self.write_json_fast(out);
        Ok(())
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
                if let (Some(h), Some(l)) = (self.high, self.low)
                    && l > h
                {
                    return Err(ValidationError::new("low", format!("{l} is above high {h}")));
                }
                if let (Some(s), Some(e)) = (self.window_start, self.window_end)
                    && e < s
                {
                    return Err(ValidationError::new("window_end", "is before window_start"));
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

    pub(crate) fn trade() -> MarketTick<'static> {
        MarketTick {
            price: 114.125,
            volume: 100.0,
            exchange: Some("NASDAQ".into()),
            mic: Some("XNAS".into()),
            exchange_code: Some(Code::Int(12)),
            sequence: Some(3_681_328),
            conditions: serde_json::from_str("[0,12]").ok(),
            trade_id: Some(Code::Str("12345".into())),
            ..MarketTick::new("MSFT".into(), TickType::Trade, t0() - Duration::milliseconds(17), "polygon".into(), t0())
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
        assert_eq!(v["exchange_code"], "12", "codes are always strings");
        assert_eq!(v["conditions"], serde_json::json!([0, 12]), "conditions pass through unchanged");
        assert_eq!(t.key(), "MSFT");
        let text = serde_json::to_string(&t).unwrap();
        let back: MarketTick<'_> = serde_json::from_str(&text).unwrap();
        assert_eq!(back.exchange_code, Some(Code::Str("12".into())));
        assert_eq!(MarketTick { exchange_code: Some(Code::Int(12)), ..back }, t);
    }

    #[test]
    fn refuses_bad_values_naming_the_field() {
        type Mutate = fn(&mut MarketTick<'static>);
        let cases: &[(&str, Mutate)] = &[
            ("symbol", |t| t.symbol = "".into()),
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

    mod writer {
        use proptest::prelude::*;
        use proptest::{num, option};

        use super::*;

        fn code() -> impl Strategy<Value = Code<'static>> {
            prop_oneof![any::<i64>().prop_map(Code::Int), text().prop_map(|s| Code::Str(s.into()))]
        }

        /// Any string, or one dense in the characters JSON escapes (random Unicode rarely has them).
        fn text() -> impl Strategy<Value = String> {
            prop_oneof![any::<String>(), "[\\x00-\\x20\"\\\\a\\x7fé€😀]{0,16}"]
        }

        fn time() -> impl Strategy<Value = DateTime<Utc>> {
            // Years 0001-9999 (the writer's fast path) plus any nanosecond fraction.
            (-62_135_596_800i64..253_402_300_799, 0u32..1_000_000_000)
                .prop_map(|(s, n)| DateTime::from_timestamp(s, n).unwrap_or_default())
        }

        fn float() -> impl Strategy<Value = f64> {
            prop_oneof![num::f64::ANY, (0u32..10_000_000).prop_map(|c| f64::from(c) / 100.0)]
        }

        const CONDITIONS: &[&str] = &["[0,12]", "[]", r#"["@","F","T"]"#, r#"[1,"x\u0000"]"#];

        proptest! {
            /// The hand-written writer and serde_json agree byte for byte on any tick, including
            /// strings that need escaping, non-finite numbers and every optional field.
            #[test]
            fn matches_serde_json(
                symbol in text(), provider in text(),
                kind in prop_oneof![Just(TickType::Trade), Just(TickType::Quote), Just(TickType::Bar)],
                (price, volume) in (float(), float()),
                (timestamp, received_at) in (time(), time()),
                (bid_price, ask_price, bid_size, ask_size) in
                    (option::of(float()), option::of(float()), option::of(float()), option::of(float())),
                (exchange, mic) in (option::of(text()), option::of(text())),
                (exchange_code, trade_id) in (option::of(code()), option::of(code())),
                sequence in option::of(any::<u64>()),
                conditions in option::of(0..CONDITIONS.len()),
                (open, high, low, vwap) in
                    (option::of(float()), option::of(float()), option::of(float()), option::of(float())),
                (window_start, window_end) in (option::of(time()), option::of(time())),
                (trf_id, backfill) in (option::of(any::<i64>()), any::<bool>()),
            ) {
                let raw = conditions.map(|i| serde_json::value::RawValue::from_string(CONDITIONS[i].to_owned()).unwrap());
                let tick = MarketTick {
                    price, volume, bid_price, ask_price, bid_size, ask_size,
                    exchange: exchange.map(Into::into), mic: mic.map(Into::into), exchange_code, sequence,
                    conditions: raw.as_deref(), trade_id, open, high, low, vwap, window_start, window_end,
                    trf_id, backfill,
                    ..MarketTick::new(symbol.into(), kind, timestamp, provider.into(), received_at)
                };
                let mut fast = b"prefix".to_vec();
                tick.write_json(&mut fast).unwrap();
                let serde = serde_json::to_vec(&tick).unwrap();
                prop_assert_eq!(String::from_utf8_lossy(&fast[6..]), String::from_utf8_lossy(&serde));
                prop_assert_eq!(&fast[..6], b"prefix", "appends, never clears");
            }
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
