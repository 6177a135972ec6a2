//! Finnhub WebSocket trades (docs/providers.md, market-data WebSockets): token in the URL, one subscribe message per
//! symbol and no acknowledgement (the subscription counts as live once sent), trade arrays,
//! `ping` keepalives (they prove the feed alive for the staleness watchdog), and an `error`
//! message when the plan's symbol limit is exceeded (logged; the other symbols keep streaming).

pub(crate) mod normalize;
pub(crate) mod wire;

use chrono::{DateTime, Utc};
use ingest_core::ws::{Frame, Step, WsSession};

use crate::book::QuoteBook;
use crate::config::MarketConfig;
use crate::provider::{ProtocolSession, Provider};
use ingest_core::config::ConfigError;
use ingest_core::market_hours::MarketSession as Hours;
use ingest_core::ws::emit::{TickOutput, frame_text};
use ingest_core::ws::frame::for_each_element;

/// Venue prefixes of Finnhub forex symbols (`OANDA:EUR_USD`, `FXCM:EUR/USD`, `IC MARKETS:1`).
const FOREX_VENUES: &[&str] = &["OANDA", "FXCM", "FOREX", "FXPRO", "IC MARKETS", "PEPPERSTONE", "OCTAFX"];

/// Finnhub: `wss://ws.finnhub.io`, the token taken from `market.api_key`.
#[derive(Debug)]
pub(crate) struct Finnhub;

impl Provider for Finnhub {
    fn label(&self) -> &'static str {
        normalize::PROVIDER
    }

    /// Trade messages are small (a few KB).
    fn default_max_frame_bytes(&self) -> usize {
        1024 * 1024
    }

    fn validate(&self, cfg: &MarketConfig) -> Result<(), ConfigError> {
        if url::Url::parse(&cfg.ws_url).is_ok_and(|u| u.query_pairs().any(|(k, _)| k == "token")) {
            return Err(ConfigError::key(
                "market.ws_url",
                "leave the token out of the URL (wss://ws.finnhub.io); it is taken from market.api_key (MARKET_API_KEY)",
            ));
        }
        Ok(())
    }

    /// A feed is as open as its most open symbol: crypto (any venue prefix but a forex one)
    /// flows at all hours, forex (`OANDA:…`) through the week, plain tickers follow US equities.
    fn auto_hours(&self, cfg: &MarketConfig, _path: &str) -> Hours {
        let venue = |s: &String| s.split_once(':').map(|(v, _)| v.to_ascii_uppercase());
        let venues: Vec<Option<String>> = cfg.symbols.iter().map(venue).collect();
        if venues.iter().flatten().any(|v| !FOREX_VENUES.contains(&v.as_str())) {
            Hours::Always
        } else if venues.iter().any(Option::is_some) {
            Hours::Forex
        } else {
            Hours::UsEquities
        }
    }

    /// The token goes in the query of the URL users write without a path
    /// (`wss://ws.finnhub.io`): the request is `/?token=…` (the runner never logs the query).
    fn connect_url(&self, cfg: &MarketConfig) -> String {
        match url::Url::parse(&cfg.ws_url) {
            Ok(mut u) => {
                u.query_pairs_mut().append_pair("token", cfg.api_key.expose());
                u.to_string()
            }
            Err(_) => cfg.ws_url.clone(),
        }
    }

    /// Finnhub's tick history (`/stock/tick`) is a premium product: ordinary plans have none.
    fn history(
        &self,
        _cfg: &MarketConfig,
    ) -> Result<Box<dyn crate::repair::TradeHistory>, (ingest_core::ws::gap::Unrepaired, String)> {
        Err((
            ingest_core::ws::gap::Unrepaired::NoHistory,
            "Finnhub offers no trade history on ordinary plans: the window stays a gap".into(),
        ))
    }

    fn session(&self, cfg: &MarketConfig, book: QuoteBook) -> Box<ProtocolSession> {
        Box::new(FinnhubSession::new(cfg.shard(), book))
    }
}

/// One Finnhub connection's protocol.
#[derive(Debug)]
pub(crate) struct FinnhubSession {
    symbols: Vec<String>,
    book: QuoteBook,
}

impl FinnhubSession {
    pub(crate) fn new(symbols: Vec<String>, book: QuoteBook) -> Self {
        Self { symbols, book }
    }

    fn on_text(&mut self, text: &str, received_at: DateTime<Utc>, output: &mut dyn TickOutput) -> Step {
        let env: wire::Envelope<'_> = match serde_json::from_str(text) {
            Ok(e) => e,
            Err(e) => {
                output.dead_letter(text.as_bytes(), &format!("malformed message: {e}"), received_at);
                return Step::Data;
            }
        };
        match &*env.kind {
            "trade" => {
                let Some(data) = env.data else {
                    output.dead_letter(text.as_bytes(), "trade message without `data`", received_at);
                    return Step::Data;
                };
                let book = &self.book;
                let parsed = for_each_element(data.get(), |el| match serde_json::from_str::<wire::Trade<'_>>(el) {
                    Ok(t) => match normalize::normalize(&t, received_at, book) {
                        Ok(tick) => output.tick(&tick, el.as_bytes()),
                        Err(reason) => output.dead_letter(el.as_bytes(), &reason, received_at),
                    },
                    Err(e) => output.dead_letter(el.as_bytes(), &format!("malformed trade: {e}"), received_at),
                });
                if let Err(e) = parsed {
                    output.dead_letter(text.as_bytes(), &format!("`data` is not an array of trades: {e}"), received_at);
                }
                Step::Data
            }
            "ping" => Step::Data,
            "error" => {
                let msg = env.msg.as_deref().unwrap_or("");
                tracing::error!(
                    provider = normalize::PROVIDER,
                    message = msg,
                    "Finnhub refused a request (symbol limit of the plan?)"
                );
                Step::Continue
            }
            other => {
                output.dead_letter(text.as_bytes(), &format!("unknown message type `{other}`"), received_at);
                Step::Data
            }
        }
    }
}

impl WsSession for FinnhubSession {
    type Output = dyn TickOutput;

    fn provider(&self) -> &str {
        normalize::PROVIDER
    }

    fn on_open(&mut self, replies: &mut Vec<String>) -> Step {
        replies.extend(self.symbols.iter().map(|s| wire::subscribe(s)));
        Step::Subscribed
    }

    fn on_frame(
        &mut self,
        frame: Frame<'_>,
        received_at: DateTime<Utc>,
        _replies: &mut Vec<String>,
        output: &mut Self::Output,
    ) -> Step {
        match frame_text(frame, received_at, output) {
            Some(t) => self.on_text(t, received_at, output),
            None => Step::Data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ingest_core::config::Section;
    use ingest_core::ws::emit::testing::Driver;

    #[test]
    fn provider_puts_the_token_in_the_query_and_follows_its_symbols_hours() {
        let mut cfg = MarketConfig::sample(Finnhub.label(), "wss://ws.finnhub.io", &["AAPL"]);
        assert_eq!(Finnhub.connect_url(&cfg), "wss://ws.finnhub.io/?token=KEY");
        assert!(cfg.validate().is_ok());
        for (symbols, hours) in [
            (&["AAPL", "MSFT"][..], Hours::UsEquities),
            (&["OANDA:EUR_USD", "fxcm:GBP/USD"][..], Hours::Forex),
            (&["OANDA:EUR_USD", "BINANCE:BTCUSDT"][..], Hours::Always),
            (&["AAPL", "BINANCE:BTCUSDT"][..], Hours::Always),
        ] {
            cfg.symbols = symbols.iter().map(|s| s.to_string()).collect();
            assert_eq!(cfg.session(), hours, "{symbols:?}");
        }
        cfg.ws_url = "wss://ws.finnhub.io?token=abc".into();
        assert!(cfg.validate().is_err_and(|e| e.to_string().contains("leave the token out of the URL")));
    }

    #[test]
    fn subscribes_every_symbol_on_open_and_counts_as_live_at_once() {
        let symbols = vec!["AAPL".to_string(), "BINANCE:BTCUSDT".to_string()];
        let (_, step, replies) = Driver::open(Box::new(FinnhubSession::new(symbols, QuoteBook::new(8))));
        assert_eq!(step, Step::Subscribed, "Finnhub acknowledges nothing");
        assert_eq!(replies, [wire::subscribe("AAPL"), wire::subscribe("BINANCE:BTCUSDT")]);
    }

    #[test]
    fn message_table() {
        let (mut d, _, _) = Driver::open(Box::new(FinnhubSession::new(vec!["AAPL".into()], QuoteBook::new(8))));
        let trade = r#"{"data":[{"c":["1","24","12"],"p":146.76,"s":"AAPL","t":1628238530221,"v":43}],"type":"trade"}"#;
        assert_eq!(d.frame(trade).0, Step::Data);
        assert_eq!(d.out.ticks.len(), 1);
        assert_eq!(d.frame(r#"{"type":"ping"}"#).0, Step::Data, "a ping proves the feed alive");
        assert_eq!(d.frame(r#"{"type":"error","msg":"Subscribing to too many symbols"}"#).0, Step::Continue);
        assert!(d.out.dead.is_empty(), "{:?}", d.out.dead);
        for (frame, reason) in [
            ("{", "malformed message"),
            (r#"{"type":"trade"}"#, "without `data`"),
            (r#"{"type":"trade","data":{"p":1}}"#, "not an array"),
            (r#"{"type":"news"}"#, "unknown message type"),
        ] {
            assert_eq!(d.frame(frame).0, Step::Data, "{frame}");
            assert!(d.out.dead.last().is_some_and(|(_, r)| r.contains(reason)), "{frame}: {:?}", d.out.dead);
        }
        assert_eq!(d.out.dead.len(), 4);
    }
}
