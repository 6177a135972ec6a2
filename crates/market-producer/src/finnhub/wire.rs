//! Finnhub WebSocket messages, exactly as sent (docs/providers.md, market-data WebSockets). One JSON object per frame:
//!
//! ```json
//! {"data":[{"c":["1","24","12"],"p":146.76,"s":"AAPL","t":1628238530221,"v":43}],"type":"trade"}
//! {"type":"ping"}
//! {"msg":"Subscribing to too many symbols","type":"error"}
//! ```
//!
//! The token goes in the URL (`wss://ws.finnhub.io?token=…`); a bad token is refused with HTTP
//! 401 on the upgrade. Subscriptions are one message per symbol, without acknowledgement.

use std::borrow::Cow;

use serde::Deserialize;

use crate::tick::Text;
use serde_json::value::RawValue;

/// A server frame.
#[derive(Debug, Deserialize)]
pub(crate) struct Envelope<'a> {
    /// `trade`, `ping`, `error`, `news`, …
    #[serde(borrow, rename = "type")]
    pub(crate) kind: Text<'a>,
    /// The trades of a `trade` message (array).
    #[serde(default, borrow)]
    pub(crate) data: Option<&'a RawValue>,
    /// Error text.
    #[serde(default, borrow)]
    pub(crate) msg: Option<Cow<'a, str>>,
}

/// One trade of a `trade` message.
#[derive(Debug, Deserialize)]
pub(crate) struct Trade<'a> {
    /// Symbol (`AAPL`, `BINANCE:BTCUSDT`).
    #[serde(borrow)]
    pub(crate) s: Text<'a>,
    /// Last price.
    pub(crate) p: f64,
    /// Time, Unix milliseconds.
    pub(crate) t: i64,
    /// Volume (0 for price-only updates of FX/crypto venues).
    #[serde(default)]
    pub(crate) v: f64,
    /// Condition codes (strings); may be absent or empty.
    #[serde(default, borrow)]
    pub(crate) c: Option<&'a RawValue>,
}

/// `{"type":"subscribe","symbol":"AAPL"}`
pub(crate) fn subscribe(symbol: &str) -> String {
    serde_json::json!({"type": "subscribe", "symbol": symbol}).to_string()
}
