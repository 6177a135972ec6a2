//! Polygon.io / Massive WebSocket messages, exactly as sent (docs/providers.md, market-data WebSockets).
//!
//! Every server frame is a JSON array of events; one frame may mix event types:
//!
//! ```json
//! [{"ev":"status","status":"connected","message":"Connected Successfully"}]
//! [{"ev":"T","sym":"MSFT","x":4,"i":"12345","z":3,"p":114.125,"s":100,"c":[0,12],"t":1536036818784,"q":3681328},
//!  {"ev":"Q","sym":"MSFT","bx":4,"bp":114.125,"bs":100,"ax":7,"ap":114.128,"as":160,"c":0,"i":[604],"t":1536036818784,"q":50385480,"z":3}]
//! [{"ev":"AM","sym":"GTE","v":4110,"av":9470157,"op":0.4372,"vw":0.4488,"o":0.4488,"c":0.4486,"h":0.4489,"l":0.4486,"a":0.4352,"z":685,"s":1610144640000,"e":1610144700000}]
//! ```
//!
//! The event types reuse keys with different meanings (`c`: trade conditions, quote condition,
//! bar close; `s`: trade size, bar window start; `i`: trade id, quote indicators; `p`: price, or
//! the forex pair), so the fields are one flat, borrowed struct whose ambiguous keys stay raw
//! until `ev` says what they are.

use std::borrow::Cow;

use serde::Deserialize;

use crate::tick::Text;
use serde_json::value::RawValue;

/// One element of a server frame. Borrowed from the frame; unknown keys are ignored.
#[derive(Debug, Deserialize)]
pub(crate) struct Msg<'a> {
    /// Event type: `T`, `Q`, `A`, `AM`, `XT`, `XQ`, `XA`, `XAS`, `status`, …
    #[serde(borrow)]
    pub(crate) ev: Text<'a>,
    /// Stock ticker.
    #[serde(default, borrow)]
    pub(crate) sym: Option<Text<'a>>,
    /// Crypto pair (`BTC-USD`).
    #[serde(default, borrow)]
    pub(crate) pair: Option<Text<'a>>,
    /// Exchange id (number; a string in some forex examples).
    #[serde(default, borrow)]
    pub(crate) x: Option<&'a RawValue>,
    /// Trade id (string for stocks) or quote indicators.
    #[serde(default, borrow)]
    pub(crate) i: Option<&'a RawValue>,
    /// Price (number), or the forex pair (string) in `C` quotes.
    #[serde(default, borrow)]
    pub(crate) p: Option<&'a RawValue>,
    /// Trade size, or bar window start (ms).
    #[serde(default, borrow)]
    pub(crate) s: Option<&'a RawValue>,
    /// Trade conditions (array), quote condition (number) or bar close (number).
    #[serde(default, borrow)]
    pub(crate) c: Option<&'a RawValue>,
    /// Event time, Unix milliseconds.
    #[serde(default)]
    pub(crate) t: Option<i64>,
    /// Sequence number (increasing per ticker, not contiguous).
    #[serde(default)]
    pub(crate) q: Option<u64>,
    /// Trade reporting facility id of an off-exchange trade (REST `trf_id`).
    #[serde(default)]
    pub(crate) trfi: Option<i64>,
    /// Bid price.
    #[serde(default)]
    pub(crate) bp: Option<f64>,
    /// Bid size in round lots (stocks) or units (crypto).
    #[serde(default)]
    pub(crate) bs: Option<f64>,
    /// Ask price.
    #[serde(default)]
    pub(crate) ap: Option<f64>,
    /// Ask size in round lots (stocks) or units (crypto).
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
    /// Bar window end (ms).
    #[serde(default)]
    pub(crate) e: Option<i64>,
    /// Status messages: `connected`, `auth_success`, `auth_failed`, `success`, `error`, …
    #[serde(default, borrow)]
    pub(crate) status: Option<Text<'a>>,
    /// Status message text.
    #[serde(default, borrow)]
    pub(crate) message: Option<Cow<'a, str>>,
}

/// `{"action":"auth","params":"<key>"}`
pub(crate) fn auth(key: &str) -> String {
    serde_json::json!({"action": "auth", "params": key}).to_string()
}

/// `{"action":"subscribe","params":"T.AAPL,Q.AAPL"}`
pub(crate) fn subscribe(params: &str) -> String {
    serde_json::json!({"action": "subscribe", "params": params}).to_string()
}
