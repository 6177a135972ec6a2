//! Finnhub WebSocket trades (docs/providers.md, market-data WebSockets): token in the URL, one subscribe message per
//! symbol and no acknowledgement (the subscription counts as live once sent), trade arrays,
//! `ping` keepalives (they prove the feed alive for the staleness watchdog), and an `error`
//! message when the plan's symbol limit is exceeded (logged; the other symbols keep streaming).

pub(crate) mod normalize;
pub(crate) mod wire;

use chrono::{DateTime, Utc};
use ingest_core::ws::{Frame, Step, WsSession};

use crate::book::QuoteBook;
use crate::emit::{TickOutput, frame_text};
use crate::frame::for_each_element;

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
    use crate::emit::testing::Driver;

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
