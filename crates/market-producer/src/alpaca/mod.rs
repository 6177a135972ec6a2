//! Alpaca market data v2 WebSocket (docs/providers.md, market-data WebSockets), JSON mode.
//!
//! ```text
//! S> [{"T":"success","msg":"connected"}]
//! C> {"action":"auth","key":"PK…","secret":"…"}          (within 10 s)
//! S> [{"T":"success","msg":"authenticated"}]
//! C> {"action":"subscribe","trades":[…],"quotes":[…],"bars":[…]}
//! S> [{"T":"subscription","trades":[…],…}]              (the whole current set)
//! ```
//! Errors as the docs and the official SDK treat them: 402 auth failed, 405 symbol limit,
//! 408 v2 not enabled, 409 insufficient subscription, 410 invalid action for the feed, 411
//! insufficient scope and 400 invalid syntax are fatal; 406 connection limit (another client on
//! the key), 401, 404 auth timeout, 407 slow client and 500 reconnect with backoff.

pub(crate) mod history;
pub(crate) mod normalize;
pub(crate) mod wire;

use chrono::{DateTime, Utc};
use ingest_core::config::Secret;
use ingest_core::ws::{Frame, Step, WsSession};

use crate::book::QuoteBook;
use crate::config::{Channel, MarketConfig};
use crate::provider::{ProtocolSession, Provider};
use ingest_core::config::{ConfigError, require_secret};
use ingest_core::market_hours::MarketSession as Hours;
use ingest_core::ws::emit::{TickOutput, finish_frame, frame_text, merge};
use ingest_core::ws::frame::for_each_element;
use wire::Msg;

/// Alpaca market data v2: `wss://stream.data.alpaca.markets/v2/iex` (`/v2/sip`, `/v2/test`,
/// `/v1beta3/crypto/us`).
#[derive(Debug)]
pub(crate) struct Alpaca;

impl Provider for Alpaca {
    fn label(&self) -> &'static str {
        normalize::PROVIDER
    }

    /// Bars of every symbol (`bars: ["*"]`) arrive in frames of up to a few MB.
    fn default_max_frame_bytes(&self) -> usize {
        8 * 1024 * 1024
    }

    fn validate(&self, cfg: &MarketConfig) -> Result<(), ConfigError> {
        require_secret("market.api_secret", &cfg.api_secret, "Alpaca needs a key id and a secret key")?;
        if cfg.channels.contains(&Channel::SecondBars) {
            return Err(ConfigError::key("market.channels", "Alpaca has no second bars (trades, quotes, minute_bars)"));
        }
        Ok(())
    }

    /// Crypto (`/v1beta3/crypto/us`) and the `/v2/test` stream (FAKEPACA) run at all hours.
    fn auto_hours(&self, _cfg: &MarketConfig, path: &str) -> Hours {
        if path.contains("/crypto") || path.ends_with("/test") { Hours::Always } else { Hours::UsEquities }
    }

    /// Historical trades of the stream's market: stocks of its feed (`/v2/iex` → `feed=iex`),
    /// crypto of its location (`/v1beta3/crypto/us`); the `/v2/test` stream has none.
    fn history(
        &self,
        cfg: &MarketConfig,
    ) -> Result<Box<dyn crate::repair::TradeHistory>, (ingest_core::ws::gap::Unrepaired, String)> {
        use ingest_core::ws::gap::Unrepaired;
        let path = url::Url::parse(&cfg.ws_url).map(|u| u.path().trim_end_matches('/').to_string()).unwrap_or_default();
        let market = if let Some(loc) = path.strip_prefix("/v1beta3/crypto/") {
            history::Market::Crypto { loc: loc.to_string() }
        } else if let Some(feed) = path.strip_prefix("/v2/").filter(|f| !f.is_empty() && !f.contains('/')) {
            if feed == "test" {
                return Err((Unrepaired::NoHistory, "the test stream (FAKEPACA) has no history".into()));
            }
            history::Market::Stocks { feed: feed.to_string() }
        } else {
            return Err((Unrepaired::Unsupported, format!("no Alpaca history is known for the stream {path}")));
        };
        let base = if cfg.repair.rest_url.is_empty() { rest_url_for(&cfg.ws_url) } else { cfg.repair.rest_url.clone() };
        let http = ingest_core::http::client(&ingest_core::http::HttpConfig::default())
            .map_err(|e| (Unrepaired::Failed, format!("no HTTP client for the history: {e}")))?;
        let (r, keys) = (&cfg.repair, (cfg.api_key.clone(), cfg.api_secret.clone()));
        history::History::new(http, &base, market, keys, r.requests_per_second, r.page_size)
            .map(|h| Box::new(h) as Box<dyn crate::repair::TradeHistory>)
            .map_err(|e| (Unrepaired::Failed, format!("market.repair.rest_url {base}: {e}")))
    }

    fn session(&self, cfg: &MarketConfig, book: QuoteBook) -> Box<ProtocolSession> {
        let with = |c: Channel| if cfg.channels.contains(&c) { cfg.shard() } else { Vec::new() };
        let channels = [with(Channel::Trades), with(Channel::Quotes), with(Channel::MinuteBars)];
        Box::new(AlpacaSession::new(cfg.api_key.clone(), cfg.api_secret.clone(), channels, book))
    }
}

/// The data API that goes with the stream: `stream.data.alpaca.markets` →
/// `https://data.alpaca.markets`, `stream.data.sandbox.alpaca.markets` →
/// `https://data.sandbox.alpaca.markets`; any other host (a relay, a simulator) serves both on
/// one origin.
fn rest_url_for(ws_url: &str) -> String {
    let Some((host, origin)) = crate::history::socket_origin(ws_url) else {
        return "https://data.alpaca.markets".into();
    };
    match host.strip_prefix("stream.") {
        Some(data) if host.ends_with(".alpaca.markets") => format!("https://{data}"),
        _ => origin,
    }
}

/// One Alpaca connection's protocol state.
#[derive(Debug)]
pub(crate) struct AlpacaSession {
    key: Secret,
    secret: Secret,
    /// Symbols per channel: trades, quotes, bars.
    channels: [Vec<String>; 3],
    live: bool,
    /// After a 405 (symbol limit): the symbols subscribed one by one whose answer (a
    /// `subscription` or a 405) is still to come, in order, and those refused.
    one_by_one: std::collections::VecDeque<String>,
    refused: Vec<String>,
    book: QuoteBook,
}

impl AlpacaSession {
    pub(crate) fn new(key: Secret, secret: Secret, channels: [Vec<String>; 3], book: QuoteBook) -> Self {
        let (one_by_one, refused) = (std::collections::VecDeque::new(), Vec::new());
        Self { key, secret, channels, live: false, one_by_one, refused, book }
    }

    fn subscribe_all(&self) -> String {
        let [t, q, b] = &self.channels;
        wire::subscribe(t, q, b)
    }

    /// Every configured symbol, in config order, once.
    fn symbols(&self) -> Vec<String> {
        let mut all: Vec<String> = Vec::new();
        for s in self.channels.iter().flatten() {
            if !all.contains(s) {
                all.push(s.clone());
            }
        }
        all
    }

    /// A 405 to the whole subscription (Alpaca changes nothing then): subscribe symbol by
    /// symbol, so that the stream keeps every symbol the plan allows.
    fn subscribe_one_by_one(&mut self, out: &mut Vec<String>) {
        for sym in self.symbols() {
            let only = |c: &Vec<String>| if c.contains(&sym) { vec![sym.clone()] } else { Vec::new() };
            let [t, q, b] = &self.channels;
            out.push(wire::subscribe(&only(t), &only(q), &only(b)));
            self.one_by_one.push_back(sym);
        }
    }

    /// One answer of the symbol-by-symbol subscription; the summary once the last came.
    fn one_answered(&mut self, refused: bool) {
        if let Some(sym) = self.one_by_one.pop_front()
            && refused
        {
            self.refused.push(sym);
        }
        if self.one_by_one.is_empty() && !self.refused.is_empty() {
            let total = self.symbols().len();
            let kept = total - self.refused.len();
            tracing::error!(
                provider = normalize::PROVIDER,
                limit = kept,
                configured = total,
                not_streamed = %self.refused.join(","),
                "Alpaca 405 symbol limit exceeded: the plan allows {kept} of the {total} symbols in market.symbols; streaming those, the rest are not streamed (reduce market.symbols or upgrade the plan)"
            );
            self.refused.clear();
        }
    }

    fn on_control(&mut self, m: &Msg<'_>, out: &mut Vec<String>) -> Step {
        let text = m.msg.as_deref().unwrap_or("");
        match (&*m.kind, m.code) {
            ("success", _) if text == "connected" => {
                out.push(wire::auth(self.key.expose(), self.secret.expose()));
                Step::Continue
            }
            ("success", _) if text == "authenticated" => {
                self.one_by_one.clear();
                self.refused.clear();
                out.push(self.subscribe_all());
                Step::Continue
            }
            ("subscription", _) => {
                self.one_answered(false);
                if self.live {
                    return Step::Continue;
                }
                self.live = true;
                Step::Subscribed
            }
            ("error", Some(405)) if !self.one_by_one.is_empty() => {
                self.one_answered(true);
                // Nothing subscribed at all: the plan allows no symbol of this feed.
                if self.one_by_one.is_empty() && !self.live {
                    return Step::Fatal(format!(
                        "Alpaca refused every symbol: 405 {text}; check the plan's symbol limit"
                    ));
                }
                Step::Continue
            }
            ("error", Some(405)) => {
                tracing::warn!(
                    provider = normalize::PROVIDER,
                    "Alpaca 405 {text}: subscribing symbol by symbol to keep what the plan allows"
                );
                self.subscribe_one_by_one(out);
                Step::Continue
            }
            ("error", Some(code @ (400 | 402 | 408 | 409 | 410 | 411))) => {
                let hint = match code {
                    402 => "check MARKET_API_KEY and MARKET_API_SECRET",
                    409 | 411 => "the plan does not include this feed or data",
                    410 => "the feed in market.ws_url does not allow this subscription",
                    _ => "see the Alpaca market data documentation",
                };
                Step::Fatal(format!("Alpaca refused the stream: {code} {text}; {hint}"))
            }
            // Alpaca still counts the old connection for a moment after it closed: come back
            // after at least a second (jittered by the runner), not in 0.2 s.
            ("error", Some(406)) => Step::ReconnectAfter(
                format!("Alpaca 406 {text}: another client uses this key; retrying in a second or more"),
                std::time::Duration::from_secs(1),
            ),
            ("error", code) => Step::Reconnect(format!("Alpaca error {}: {text}", code.unwrap_or(0))),
            _ => Step::Continue,
        }
    }

    fn on_element(
        &mut self,
        el: &str,
        received_at: DateTime<Utc>,
        replies: &mut Vec<String>,
        output: &mut dyn TickOutput,
    ) -> Step {
        let msg: Msg<'_> = match serde_json::from_str(el) {
            Ok(m) => m,
            Err(e) => {
                output.dead_letter(el.as_bytes(), &format!("malformed event: {e}"), received_at);
                return Step::Data;
            }
        };
        if matches!(&*msg.kind, "success" | "subscription" | "error") {
            return self.on_control(&msg, replies);
        }
        match normalize::normalize(&msg, received_at, &mut self.book) {
            Ok(tick) => output.tick(&tick, el.as_bytes()),
            Err(reason) => output.dead_letter(el.as_bytes(), &reason, received_at),
        }
        Step::Data
    }
}

impl WsSession for AlpacaSession {
    type Output = dyn TickOutput;

    fn provider(&self) -> &str {
        normalize::PROVIDER
    }

    fn on_open(&mut self, _replies: &mut Vec<String>) -> Step {
        // The server speaks first ("connected"); auth follows it.
        self.live = false;
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
        let parsed = for_each_element(text, |el| {
            let s = self.on_element(el, received_at, replies, output);
            step = merge(std::mem::replace(&mut step, Step::Continue), s);
        });
        finish_frame(parsed, step, text, received_at, output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ingest_core::config::{Secret, Section};
    use ingest_core::ws::emit::testing::Driver;

    #[test]
    fn provider_needs_a_secret_has_no_second_bars_and_follows_its_hours() {
        let iex = "wss://stream.data.alpaca.markets/v2/iex";
        let mut cfg = MarketConfig::sample(Alpaca.label(), iex, &["AAPL"]);
        assert!(cfg.validate().is_ok());
        assert_eq!(cfg.session(), Hours::UsEquities);
        for (url, hours) in [
            ("wss://stream.data.alpaca.markets/v1beta3/crypto/us", Hours::Always),
            ("wss://stream.data.alpaca.markets/v2/test", Hours::Always),
            ("wss://stream.data.alpaca.markets/v2/sip/", Hours::UsEquities),
        ] {
            cfg.ws_url = url.into();
            assert_eq!(cfg.session(), hours, "{url}");
        }
        cfg.channels.push(Channel::SecondBars);
        assert!(cfg.validate().is_err_and(|e| e.to_string().contains("no second bars")));
        let cfg =
            MarketConfig { api_secret: Secret::default(), ..MarketConfig::sample(Alpaca.label(), iex, &["AAPL"]) };
        assert!(cfg.validate().is_err_and(|e| e.to_string().contains("market.api_secret")));
    }

    #[test]
    fn provider_session_subscribes_the_configured_channels() {
        let mut cfg = MarketConfig::sample(Alpaca.label(), "wss://x/v2/iex", &["AAPL", "MSFT"]);
        cfg.channels = vec![Channel::Trades, Channel::MinuteBars];
        let (mut d, _, _) = Driver::open(Alpaca.session(&cfg, QuoteBook::new(8)));
        let (_, replies) = d.frame(r#"[{"T":"success","msg":"connected"}]"#);
        assert_eq!(replies, [wire::auth("KEY", "SECRET")]);
        let (_, replies) = d.frame(r#"[{"T":"success","msg":"authenticated"}]"#);
        let both = vec!["AAPL".to_string(), "MSFT".to_string()];
        assert_eq!(replies, [wire::subscribe(&both, &[], &both)]);
    }

    fn session(symbols: &[&str]) -> Driver {
        let s: Vec<String> = symbols.iter().map(|s| (*s).to_string()).collect();
        let session =
            AlpacaSession::new(Secret::new("PK"), Secret::new("SK"), [s, Vec::new(), Vec::new()], QuoteBook::new(8));
        let (d, step, replies) = Driver::open(Box::new(session));
        assert_eq!((step, replies.len()), (Step::Continue, 0), "the server speaks first");
        d
    }

    fn error(code: u16, msg: &str) -> String {
        format!(r#"[{{"T":"error","code":{code},"msg":"{msg}"}}]"#)
    }

    fn authenticated(d: &mut Driver) {
        let (_, replies) = d.frame(r#"[{"T":"success","msg":"connected"}]"#);
        assert_eq!(replies, [wire::auth("PK", "SK")]);
        let (_, replies) = d.frame(r#"[{"T":"success","msg":"authenticated"}]"#);
        assert_eq!(replies.len(), 1, "the whole subscription at once");
    }

    #[test]
    fn handshake_then_data() {
        let mut d = session(&["AAPL", "AMD"]);
        authenticated(&mut d);
        assert_eq!(d.frame(r#"[{"T":"subscription","trades":["AAPL","AMD"]}]"#).0, Step::Subscribed);
        let trade = r#"[{"T":"t","i":96921,"S":"AMD","x":"D","p":87.67,"s":1,"t":"2021-02-22T15:51:45.4Z","c":["@","I"],"z":"C"}]"#;
        assert_eq!(d.frame(trade).0, Step::Data);
        assert_eq!(d.out.ticks.len(), 1);
        assert_eq!(d.out.ticks[0]["symbol"], "AMD");
    }

    #[test]
    fn error_table() {
        for code in [400, 402, 408, 409, 410, 411] {
            let mut d = session(&["AAPL"]);
            authenticated(&mut d);
            let (step, _) = d.frame(&error(code, "refused"));
            assert!(matches!(&step, Step::Fatal(m) if m.contains(&code.to_string())), "{code}: {step:?}");
        }
        let mut d = session(&["AAPL"]);
        authenticated(&mut d);
        assert_eq!(
            d.frame(&error(406, "connection limit exceeded")).0,
            Step::ReconnectAfter(
                "Alpaca 406 connection limit exceeded: another client uses this key; retrying in a second or more"
                    .into(),
                std::time::Duration::from_secs(1)
            )
        );
        for code in [401, 404, 407, 500] {
            let mut d = session(&["AAPL"]);
            authenticated(&mut d);
            assert!(matches!(d.frame(&error(code, "x")).0, Step::Reconnect(_)), "{code}");
        }
    }

    #[test]
    fn a_symbol_limit_subscribes_one_by_one_and_keeps_what_the_plan_allows() {
        let mut d = session(&["AAPL", "AMD", "TSLA"]);
        authenticated(&mut d);
        let (step, replies) = d.frame(&error(405, "symbol limit exceeded"));
        assert_eq!(step, Step::Continue);
        assert_eq!(replies.len(), 3, "one subscription per symbol: {replies:?}");
        assert_eq!(d.frame(r#"[{"T":"subscription","trades":["AAPL"]}]"#).0, Step::Subscribed);
        assert_eq!(d.frame(r#"[{"T":"subscription","trades":["AAPL","AMD"]}]"#).0, Step::Continue);
        assert_eq!(d.frame(&error(405, "symbol limit exceeded")).0, Step::Continue, "TSLA refused, the rest streams");
    }

    #[test]
    fn a_plan_without_any_symbol_is_fatal() {
        let mut d = session(&["AAPL", "AMD"]);
        authenticated(&mut d);
        d.frame(&error(405, "symbol limit exceeded"));
        assert_eq!(d.frame(&error(405, "symbol limit exceeded")).0, Step::Continue);
        assert!(matches!(d.frame(&error(405, "symbol limit exceeded")).0, Step::Fatal(_)));
    }

    #[test]
    fn the_history_is_the_data_api_of_the_streams_host() {
        assert_eq!(rest_url_for("wss://stream.data.alpaca.markets/v2/iex"), "https://data.alpaca.markets");
        assert_eq!(
            rest_url_for("wss://stream.data.sandbox.alpaca.markets/v2/sip"),
            "https://data.sandbox.alpaca.markets"
        );
        assert_eq!(rest_url_for("wss://localhost:8443/v2/iex"), "https://localhost:8443", "one origin for both");
        assert_eq!(rest_url_for("ws://provider-sim:8080/v2/iex"), "http://provider-sim:8080");
    }
}
