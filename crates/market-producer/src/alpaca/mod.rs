//! Alpaca market data v2 WebSocket (providers.md §2), JSON mode.
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

pub(crate) mod normalize;
pub(crate) mod wire;

use chrono::{DateTime, Utc};
use ingest_core::config::Secret;
use ingest_core::ws::{Frame, Step, WsSession};

use crate::book::QuoteBook;
use crate::emit::{Emitter, merge};
use crate::frame::for_each_element;
use wire::Msg;

/// One Alpaca connection's protocol state.
#[derive(Debug)]
pub(crate) struct AlpacaSession {
    key: Secret,
    secret: Secret,
    subscribe: String,
    live: bool,
    emit: Emitter,
    book: QuoteBook,
}

impl AlpacaSession {
    pub(crate) fn new(key: Secret, secret: Secret, subscribe: String, emit: Emitter, book: QuoteBook) -> Self {
        Self { key, secret, subscribe, live: false, emit, book }
    }

    fn on_control(&mut self, m: &Msg<'_>, out: &mut Vec<String>) -> Step {
        let text = m.msg.as_deref().unwrap_or("");
        match (&*m.kind, m.code) {
            ("success", _) if text == "connected" => {
                out.push(wire::auth(self.key.expose(), self.secret.expose()));
                Step::Continue
            }
            ("success", _) if text == "authenticated" => {
                out.push(self.subscribe.clone());
                Step::Continue
            }
            ("subscription", _) if !self.live => {
                self.live = true;
                Step::Subscribed
            }
            ("error", Some(code @ (400 | 402 | 405 | 408 | 409 | 410 | 411))) => {
                let hint = match code {
                    402 => "check MARKET_API_KEY and MARKET_API_SECRET",
                    405 => "reduce market.symbols to the plan's limit",
                    409 | 411 => "the plan does not include this feed or data",
                    410 => "the feed in market.ws_url does not allow this subscription",
                    _ => "see the Alpaca market data documentation",
                };
                Step::Fatal(format!("Alpaca refused the stream: {code} {text}; {hint}"))
            }
            ("error", Some(406)) => {
                Step::Reconnect(format!("Alpaca 406 {text}: another client uses this key; retrying with backoff"))
            }
            ("error", code) => Step::Reconnect(format!("Alpaca error {}: {text}", code.unwrap_or(0))),
            _ => Step::Continue,
        }
    }

    fn on_element(&mut self, el: &str, received_at: DateTime<Utc>, out: &mut Vec<String>) -> Step {
        let msg: Msg<'_> = match serde_json::from_str(el) {
            Ok(m) => m,
            Err(e) => {
                self.emit.dead_letter(el.as_bytes(), &format!("malformed event: {e}"), received_at);
                return Step::Data;
            }
        };
        if matches!(&*msg.kind, "success" | "subscription" | "error") {
            return self.on_control(&msg, out);
        }
        match normalize::normalize(&msg, received_at, &mut self.book) {
            Ok(tick) => self.emit.send(&tick, el.as_bytes()),
            Err(reason) => self.emit.dead_letter(el.as_bytes(), &reason, received_at),
        }
        Step::Data
    }
}

impl WsSession for AlpacaSession {
    fn provider(&self) -> &str {
        normalize::PROVIDER
    }

    fn on_open(&mut self, epoch: u64, _out: &mut Vec<String>) -> Step {
        // The server speaks first ("connected"); auth follows it.
        self.live = false;
        self.emit.set_epoch(epoch);
        Step::Continue
    }

    fn on_frame(&mut self, frame: Frame<'_>, received_at: DateTime<Utc>, out: &mut Vec<String>) -> Step {
        let Some(text) = self.emit.frame_text(frame, received_at) else {
            return Step::Data;
        };
        let mut step = Step::Continue;
        let parsed = for_each_element(text, |el| {
            let s = self.on_element(el, received_at, out);
            step = merge(std::mem::replace(&mut step, Step::Continue), s);
        });
        self.emit.finish_frame(parsed, step, text, received_at)
    }

    fn on_transport_error(&mut self, error: &ingest_core::ws::WsError) {
        self.emit.transport_error(error);
    }
}
