//! Finnhub WebSocket trades (docs/providers.md, market-data WebSockets): token in the URL, one subscribe message per
//! symbol and no acknowledgement (the subscription counts as live once sent), trade arrays,
//! `ping` keepalives (they prove the feed alive for the staleness watchdog), and an `error`
//! message when the plan's symbol limit is exceeded (logged; the other symbols keep streaming).

pub(crate) mod normalize;
pub(crate) mod wire;

use chrono::{DateTime, Utc};
use ingest_core::ws::{Frame, Step, WsSession};

use crate::book::QuoteBook;
use crate::emit::Emitter;
use crate::frame::for_each_element;

/// One Finnhub connection's protocol.
#[derive(Debug)]
pub(crate) struct FinnhubSession {
    symbols: Vec<String>,
    emit: Emitter,
    book: QuoteBook,
}

impl FinnhubSession {
    pub(crate) fn new(symbols: Vec<String>, emit: Emitter, book: QuoteBook) -> Self {
        Self { symbols, emit, book }
    }

    fn on_text(&mut self, text: &str, received_at: DateTime<Utc>) -> Step {
        let env: wire::Envelope<'_> = match serde_json::from_str(text) {
            Ok(e) => e,
            Err(e) => {
                self.emit.dead_letter(text.as_bytes(), &format!("malformed message: {e}"), received_at);
                return Step::Data;
            }
        };
        match &*env.kind {
            "trade" => {
                let Some(data) = env.data else {
                    self.emit.dead_letter(text.as_bytes(), "trade message without `data`", received_at);
                    return Step::Data;
                };
                let (emit, book) = (&self.emit, &self.book);
                let parsed = for_each_element(data.get(), |el| match serde_json::from_str::<wire::Trade<'_>>(el) {
                    Ok(t) => match normalize::normalize(&t, received_at, book) {
                        Ok(tick) => emit.send(&tick, el.as_bytes()),
                        Err(reason) => emit.dead_letter(el.as_bytes(), &reason, received_at),
                    },
                    Err(e) => emit.dead_letter(el.as_bytes(), &format!("malformed trade: {e}"), received_at),
                });
                if let Err(e) = parsed {
                    self.emit.dead_letter(
                        text.as_bytes(),
                        &format!("`data` is not an array of trades: {e}"),
                        received_at,
                    );
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
                self.emit.dead_letter(text.as_bytes(), &format!("unknown message type `{other}`"), received_at);
                Step::Data
            }
        }
    }
}

impl WsSession for FinnhubSession {
    fn provider(&self) -> &str {
        normalize::PROVIDER
    }

    fn on_open(&mut self, epoch: u64, out: &mut Vec<String>) -> Step {
        self.emit.set_epoch(epoch);
        out.extend(self.symbols.iter().map(|s| wire::subscribe(s)));
        Step::Subscribed
    }

    fn on_frame(&mut self, frame: Frame<'_>, received_at: DateTime<Utc>, _out: &mut Vec<String>) -> Step {
        match self.emit.frame_text(frame, received_at) {
            Some(t) => self.on_text(t, received_at),
            None => Step::Data,
        }
    }

    fn on_transport_error(&mut self, error: &ingest_core::ws::WsError) {
        self.emit.transport_error(error);
    }
}
