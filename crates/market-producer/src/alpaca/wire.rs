//! Alpaca market data v2 WebSocket messages, JSON mode, exactly as sent (docs/providers.md, market-data WebSockets).
//! Every server frame is a JSON array; control messages come alone:
//!
//! ```json
//! [{"T":"success","msg":"connected"}]
//! [{"T":"subscription","trades":["AAPL"],"quotes":["AMD"],"bars":["*"],"corrections":["AAPL"],"cancelErrors":["AAPL"]}]
//! [{"T":"error","code":402,"msg":"auth failed"}]
//! [{"T":"t","i":96921,"S":"AAPL","x":"D","p":126.55,"s":1,"t":"2021-02-22T15:51:44.208Z","c":["@","I"],"z":"C"}]
//! [{"T":"q","S":"AMD","bx":"U","bp":87.66,"bs":1,"ax":"Q","ap":87.68,"as":4,"t":"2021-02-22T15:51:45.335689322Z","c":["R"],"z":"C"}]
//! [{"T":"b","S":"SPY","o":388.985,"h":389.13,"l":388.975,"c":389.12,"v":49378,"t":"2021-02-22T19:15:00Z","n":461,"vw":389.062639}]
//! ```
//! `c` is conditions for trades and quotes but the close for bars, so it stays raw until `T`
//! says which.

use std::borrow::Cow;

use serde::Deserialize;

use crate::tick::Text;
use serde_json::value::RawValue;

/// One element of a server frame; borrowed, unknown keys ignored.
#[derive(Debug, Deserialize)]
pub(crate) struct Msg<'a> {
    /// Type: `success`, `subscription`, `error`, `t`, `q`, `b`, `u`, `d`, `c`, `x`, …
    #[serde(borrow, rename = "T")]
    pub(crate) kind: Text<'a>,
    /// Symbol.
    #[serde(default, borrow, rename = "S")]
    pub(crate) symbol: Option<Text<'a>>,
    /// Trade id.
    #[serde(default, borrow)]
    pub(crate) i: Option<&'a RawValue>,
    /// Exchange (participant letter).
    #[serde(default, borrow)]
    pub(crate) x: Option<Text<'a>>,
    /// Trade price.
    #[serde(default)]
    pub(crate) p: Option<f64>,
    /// Trade size.
    #[serde(default)]
    pub(crate) s: Option<f64>,
    /// RFC 3339 time, nanosecond precision.
    #[serde(default, borrow)]
    pub(crate) t: Option<Text<'a>>,
    /// Conditions (trades, quotes) or close (bars).
    #[serde(default, borrow)]
    pub(crate) c: Option<&'a RawValue>,
    /// Bid price.
    #[serde(default)]
    pub(crate) bp: Option<f64>,
    /// Bid size.
    #[serde(default)]
    pub(crate) bs: Option<f64>,
    /// Ask price.
    #[serde(default)]
    pub(crate) ap: Option<f64>,
    /// Ask size.
    #[serde(default, rename = "as")]
    pub(crate) as_: Option<f64>,
    /// Bar open.
    #[serde(default)]
    pub(crate) o: Option<f64>,
    /// Bar high.
    #[serde(default)]
    pub(crate) h: Option<f64>,
    /// Bar low.
    #[serde(default)]
    pub(crate) l: Option<f64>,
    /// Bar volume.
    #[serde(default)]
    pub(crate) v: Option<f64>,
    /// Bar VWAP.
    #[serde(default)]
    pub(crate) vw: Option<f64>,
    /// Error code.
    #[serde(default)]
    pub(crate) code: Option<u16>,
    /// Control message text.
    #[serde(default, borrow)]
    pub(crate) msg: Option<Cow<'a, str>>,
}

/// `{"action":"auth","key":…,"secret":…}`
pub(crate) fn auth(key: &str, secret: &str) -> String {
    serde_json::json!({"action": "auth", "key": key, "secret": secret}).to_string()
}

/// `{"action":"subscribe","trades":[…],"quotes":[…],"bars":[…]}` (empty lists left out).
pub(crate) fn subscribe(trades: &[String], quotes: &[String], bars: &[String]) -> String {
    let mut m = serde_json::Map::new();
    m.insert("action".into(), "subscribe".into());
    for (k, v) in [("trades", trades), ("quotes", quotes), ("bars", bars)] {
        if !v.is_empty() {
            m.insert(k.into(), v.into());
        }
    }
    serde_json::Value::Object(m).to_string()
}
