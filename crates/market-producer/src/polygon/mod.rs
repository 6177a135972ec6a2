//! Polygon.io / Massive real-time WebSocket (stocks and crypto clusters).
//!
//! Handshake (docs/providers.md, market-data WebSockets), all frames JSON arrays:
//! ```text
//! S> [{"ev":"status","status":"connected","message":"Connected Successfully"}]
//! C> {"action":"auth","params":"<API_KEY>"}
//! S> [{"ev":"status","status":"auth_success","message":"authenticated"}]
//! C> {"action":"subscribe","params":"T.AAPL,Q.AAPL,AM.*"}
//! S> [{"ev":"status","status":"success","message":"subscribed to: T.AAPL"}]   (one per param)
//! ```
//! `auth_failed` is fatal (exit 1); `auth_timeout`, `max_connections` (the oldest connection of
//! a key is dropped when another opens), `force_disconnect` and `slow_consumer` reconnect.

pub(crate) mod history;
pub(crate) mod normalize;
pub(crate) mod wire;

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use ingest_core::config::Secret;
use ingest_core::record::MarketTick;
use ingest_core::ws::{Frame, Step, WsSession};

use crate::book::QuoteBook;
use crate::config::{Channel, MarketConfig};
use crate::provider::{ProtocolSession, Provider};
use ingest_core::config::ConfigError;
use ingest_core::market_hours::MarketSession as Hours;
use ingest_core::ws::emit::{TickOutput, finish_frame, frame_text, merge};
use ingest_core::ws::frame::for_each_element;
use wire::Msg;

/// Polygon.io / Massive: `wss://socket.massive.com/stocks` (or `/crypto`; the delayed
/// `delayed.massive.com` and the legacy `socket.polygon.io` hosts alike).
#[derive(Debug)]
pub(crate) struct Polygon;

impl Provider for Polygon {
    fn label(&self) -> &'static str {
        normalize::PROVIDER
    }

    /// All-symbol minute aggregates (`AM.*`) arrive as one frame of several MB each minute
    /// (~11,000 tickers × ~230 bytes ≈ 2.5 MB).
    fn default_max_frame_bytes(&self) -> usize {
        16 * 1024 * 1024
    }

    fn validate(&self, cfg: &MarketConfig) -> Result<(), ConfigError> {
        if cfg.ws_url.trim_end_matches('/').ends_with("/forex") {
            return Err(ConfigError::key(
                "market.ws_url",
                "the Polygon forex cluster is not supported (stocks and crypto are)",
            ));
        }
        Ok(())
    }

    /// `/crypto` trades around the clock; the stocks cluster follows US equities.
    fn auto_hours(&self, _cfg: &MarketConfig, path: &str) -> Hours {
        if path.ends_with("/crypto") { Hours::Always } else { Hours::UsEquities }
    }

    /// Stocks: `/v3/trades/{ticker}` of the REST API that goes with the socket's host.
    fn history(
        &self,
        cfg: &MarketConfig,
    ) -> Result<Box<dyn crate::repair::TradeHistory>, (ingest_core::ws::gap::Unrepaired, String)> {
        use ingest_core::ws::gap::Unrepaired;
        let crypto = cfg.ws_url.trim_end_matches('/').ends_with("/crypto");
        let base = if cfg.repair.rest_url.is_empty() { rest_url_for(&cfg.ws_url) } else { cfg.repair.rest_url.clone() };
        let http = ingest_core::http::client(&ingest_core::http::HttpConfig::default())
            .map_err(|e| (Unrepaired::Failed, format!("no HTTP client for the history: {e}")))?;
        let r = &cfg.repair;
        history::History::new(http, &base, cfg.api_key.clone(), r.requests_per_second, r.page_size)
            .map(|h| if crypto { h.crypto() } else { h })
            .map(|h| Box::new(h) as Box<dyn crate::repair::TradeHistory>)
            .map_err(|e| (Unrepaired::Failed, format!("market.repair.rest_url {base}: {e}")))
    }

    fn session(&self, cfg: &MarketConfig, book: QuoteBook) -> Box<ProtocolSession> {
        Box::new(PolygonSession::new(cfg.api_key.clone(), params(cfg), book))
    }
}

/// The REST API that goes with the socket: `socket.polygon.io` → `https://api.polygon.io`, the
/// Massive hosts (`socket.massive.com`, `delayed.massive.com`) → `https://api.massive.com`; any
/// other host (a relay, a simulator) serves both on one origin: `wss://h:p` → `https://h:p`.
fn rest_url_for(ws_url: &str) -> String {
    let Some((host, origin)) = crate::history::socket_origin(ws_url) else { return "https://api.massive.com".into() };
    if host == "polygon.io" || host.ends_with(".polygon.io") {
        return "https://api.polygon.io".into();
    }
    if host == "massive.com" || host.ends_with(".massive.com") {
        return "https://api.massive.com".into();
    }
    origin
}

/// The subscription parameters: `T.AAPL,Q.AAPL,…` (crypto cluster: `XT.BTC-USD,…`).
fn params(cfg: &MarketConfig) -> String {
    let crypto = cfg.ws_url.trim_end_matches('/').ends_with("/crypto");
    let mut out = String::new();
    for s in &cfg.shard() {
        for c in &cfg.channels {
            let prefix = match (c, crypto) {
                (Channel::Trades, false) => "T",
                (Channel::Quotes, false) => "Q",
                (Channel::SecondBars, false) => "A",
                (Channel::MinuteBars, false) => "AM",
                (Channel::Trades, true) => "XT",
                (Channel::Quotes, true) => "XQ",
                (Channel::SecondBars, true) => "XAS",
                (Channel::MinuteBars, true) => "XA",
            };
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(prefix);
            out.push('.');
            out.push_str(s);
        }
    }
    out
}

/// One element of a Polygon frame, classified.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "passed by value once per element; boxing the tick would allocate per tick"
)]
pub enum Element<'a> {
    /// A normalized tick and the raw element it came from.
    Tick(MarketTick<'a>, &'a str),
    /// A status message: status and message text.
    Status(Cow<'a, str>, Cow<'a, str>),
    /// An element that cannot be used: the raw element and why.
    Bad(&'a str, Cow<'static, str>),
}

/// The hot path of a Polygon frame: each element parsed (borrowed) and normalized (pure), in
/// order, without allocating for valid data. `Err` if the frame is not a JSON array (elements
/// before the fault were already handed to `f`).
pub fn elements<'a>(
    frame: &'a str,
    received_at: DateTime<Utc>,
    book: &mut QuoteBook,
    mut f: impl FnMut(Element<'a>),
) -> Result<(), ingest_core::ws::frame::FrameError> {
    for_each_element(frame, |el| {
        let raw = el;
        f(match serde_json::from_str::<Msg<'a>>(raw) {
            Err(e) => Element::Bad(raw, format!("malformed event: {e}").into()),
            Ok(m) if &*m.ev == "status" => Element::Status(
                m.status.map_or(Cow::Borrowed(""), crate::tick::Text::into_cow),
                m.message.unwrap_or_default(),
            ),
            Ok(m) => match normalize::normalize(&m, received_at, book) {
                Ok(t) => Element::Tick(t, raw),
                Err(reason) => Element::Bad(raw, reason),
            },
        });
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitConnected,
    AwaitAuth,
    Subscribing,
    Live,
}

/// The handshake state of one connection.
#[derive(Debug)]
struct Handshake {
    key: Secret,
    params: String,
    expected_acks: usize,
    acks: usize,
    state: State,
}

impl Handshake {
    fn on_status(&mut self, status: &str, message: &str, out: &mut Vec<String>) -> Step {
        match status {
            "connected" => {
                self.state = State::AwaitAuth;
                out.push(wire::auth(self.key.expose()));
                Step::Continue
            }
            "auth_success" => {
                self.state = State::Subscribing;
                self.acks = 0;
                out.push(wire::subscribe(&self.params));
                Step::Continue
            }
            "auth_failed" => Step::Fatal(format!(
                "Polygon authentication failed ({message}); check MARKET_API_KEY and that the plan includes WebSocket access"
            )),
            "auth_timeout" | "auth_required" => Step::Reconnect(format!("Polygon: {message}")),
            "success" if self.state == State::Subscribing && message.starts_with("subscribed to") => self.ack(),
            "error" if self.state == State::Subscribing => {
                tracing::warn!(provider = "polygon", message, "subscription refused");
                self.ack()
            }
            "max_connections" => Step::Reconnect(format!(
                "Polygon max_connections ({message}): another client uses this key; the oldest connection is dropped"
            )),
            "force_disconnect" | "slow_consumer" => Step::Reconnect(format!("Polygon {status}: {message}")),
            other => {
                tracing::info!(provider = "polygon", status = other, message, "status message");
                Step::Continue
            }
        }
    }

    fn ack(&mut self) -> Step {
        self.acks += 1;
        if self.acks >= self.expected_acks && self.state == State::Subscribing {
            self.state = State::Live;
            return Step::Subscribed;
        }
        Step::Continue
    }
}

/// One Polygon connection's protocol state.
#[derive(Debug)]
pub(crate) struct PolygonSession {
    handshake: Handshake,
    book: QuoteBook,
}

impl PolygonSession {
    /// `params`: the subscription, e.g. `T.AAPL,Q.AAPL`.
    pub(crate) fn new(key: Secret, params: String, book: QuoteBook) -> Self {
        let expected_acks = params.split(',').filter(|p| !p.is_empty()).count();
        Self { handshake: Handshake { key, params, expected_acks, acks: 0, state: State::AwaitConnected }, book }
    }
}

impl WsSession for PolygonSession {
    type Output = dyn TickOutput;

    fn provider(&self) -> &str {
        normalize::PROVIDER
    }

    fn on_open(&mut self, _replies: &mut Vec<String>) -> Step {
        // The server speaks first ("connected"); auth follows it.
        self.handshake.state = State::AwaitConnected;
        self.handshake.acks = 0;
        Step::Continue
    }

    fn on_frame(
        &mut self,
        frame: Frame<'_>,
        received_at: DateTime<Utc>,
        replies: &mut Vec<String>,
        output: &mut Self::Output,
    ) -> Step {
        let Some(text) = frame_text(frame, received_at, output) else {
            return Step::Data;
        };
        let mut step = Step::Continue;
        let handshake = &mut self.handshake;
        let parsed = elements(text, received_at, &mut self.book, |e| {
            let s = match e {
                Element::Tick(tick, raw) => {
                    output.tick(&tick, raw.as_bytes());
                    Step::Data
                }
                Element::Bad(raw, reason) => {
                    output.dead_letter(raw.as_bytes(), &reason, received_at);
                    Step::Data
                }
                Element::Status(status, message) => handshake.on_status(&status, &message, replies),
            };
            step = merge(std::mem::replace(&mut step, Step::Continue), s);
        });
        finish_frame(parsed, step, text, received_at, output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ingest_core::config::Section;
    use ingest_core::ws::emit::testing::Driver;

    #[test]
    fn the_history_is_the_rest_api_of_the_sockets_host() {
        assert_eq!(rest_url_for("wss://socket.massive.com/stocks"), "https://api.massive.com");
        assert_eq!(rest_url_for("wss://delayed.massive.com/stocks"), "https://api.massive.com");
        assert_eq!(rest_url_for("wss://socket.polygon.io/stocks"), "https://api.polygon.io");
        assert_eq!(rest_url_for("wss://localhost:8443/stocks"), "https://localhost:8443", "one origin for both");
        assert_eq!(rest_url_for("ws://provider-sim:8080/stocks"), "http://provider-sim:8080");
    }

    #[test]
    fn provider_subscribes_per_cluster_and_follows_its_hours() {
        let mut cfg = MarketConfig::sample(Polygon.label(), "wss://socket.massive.com/stocks", &["AAPL", "MSFT"]);
        cfg.channels = vec![Channel::Trades, Channel::MinuteBars];
        assert_eq!(params(&cfg), "T.AAPL,AM.AAPL,T.MSFT,AM.MSFT");
        assert_eq!(cfg.session(), Hours::UsEquities);
        assert_eq!(Polygon.connect_url(&cfg), "wss://socket.massive.com/stocks", "the key goes in the auth message");
        cfg.ws_url = "wss://socket.massive.com/crypto/".into();
        cfg.symbols = vec!["BTC-USD".into()];
        assert_eq!(params(&cfg), "XT.BTC-USD,XA.BTC-USD");
        assert_eq!(cfg.session(), Hours::Always);
        assert!(cfg.validate().is_ok());
        cfg.ws_url = "wss://socket.massive.com/forex".into();
        assert!(cfg.validate().is_err_and(|e| e.to_string().contains("forex cluster is not supported")));
    }

    fn session(params: &str) -> (Driver, Step, Vec<String>) {
        Driver::open(Box::new(PolygonSession::new(Secret::new("KEY"), params.into(), QuoteBook::new(8))))
    }

    fn status(status: &str, message: &str) -> String {
        format!(r#"[{{"ev":"status","status":"{status}","message":"{message}"}}]"#)
    }

    #[test]
    fn handshake_authenticates_after_connected_and_is_live_after_every_ack() {
        let (mut d, step, replies) = session("T.AAPL,Q.AAPL");
        assert_eq!((step, replies.len()), (Step::Continue, 0), "the server speaks first");
        let (step, replies) = d.frame(&status("connected", "Connected Successfully"));
        assert_eq!(step, Step::Continue);
        assert_eq!(replies, [wire::auth("KEY")]);
        let (step, replies) = d.frame(&status("auth_success", "authenticated"));
        assert_eq!(step, Step::Continue);
        assert_eq!(replies, [wire::subscribe("T.AAPL,Q.AAPL")]);
        assert_eq!(d.frame(&status("success", "subscribed to: T.AAPL")).0, Step::Continue, "one ack of two");
        assert_eq!(d.frame(&status("success", "subscribed to: Q.AAPL")).0, Step::Subscribed);
        let trade = r#"[{"ev":"T","sym":"AAPL","i":"5096","x":10,"p":161.87,"s":300,"c":[14,41],"t":1651684192462,"q":4009402,"z":3}]"#;
        assert_eq!(d.frame(trade).0, Step::Data);
        assert_eq!(d.out.ticks.len(), 1);
        assert_eq!(d.out.ticks[0]["symbol"], "AAPL");
        assert!(d.out.dead.is_empty(), "{:?}", d.out.dead);
    }

    #[test]
    fn status_table() {
        type Expect = fn(&Step) -> bool;
        let cases: [(&str, Expect); 6] = [
            ("auth_failed", |s| matches!(s, Step::Fatal(m) if m.contains("MARKET_API_KEY"))),
            ("auth_timeout", |s| matches!(s, Step::Reconnect(_))),
            ("max_connections", |s| matches!(s, Step::Reconnect(m) if m.contains("another client"))),
            ("force_disconnect", |s| matches!(s, Step::Reconnect(_))),
            ("slow_consumer", |s| matches!(s, Step::Reconnect(_))),
            ("something_new", |s| *s == Step::Continue),
        ];
        for (name, expected) in cases {
            let (mut d, _, _) = session("T.AAPL");
            d.frame(&status("connected", ""));
            let (step, _) = d.frame(&status(name, "text"));
            assert!(expected(&step), "{name}: {step:?}");
        }
    }

    #[test]
    fn a_refused_subscription_still_counts_as_answered_and_bad_input_is_dead_lettered() {
        let (mut d, _, _) = session("T.AAPL,T.NOPE");
        d.frame(&status("connected", ""));
        d.frame(&status("auth_success", ""));
        d.frame(&status("success", "subscribed to: T.AAPL"));
        assert_eq!(d.frame(&status("error", "not authorized: T.NOPE")).0, Step::Subscribed);
        assert_eq!(d.frame("not json").0, Step::Data);
        assert_eq!(d.frame(r#"[{"ev":"NOPE","sym":"AAPL"}, 7]"#).0, Step::Data);
        assert_eq!(d.out.dead.len(), 3, "the frame, the unknown event, the element that is no event: {:?}", d.out.dead);
        assert!(d.out.ticks.is_empty());
    }
}
