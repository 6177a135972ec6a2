//! The market sessions' output: the [`TickOutput`] they hand ticks and dead letters to, the
//! [`Emitter`] that takes them to the sink with backpressure (the hand-off to Kafka is the
//! runner's side, never the session's), and the pure helpers the sessions share (frame text,
//! frame steps). `testing` drives a session without a socket or Kafka.

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::frame::FrameError;
use super::{Frame, Step, WsError, WsOutput, WsSession};
use crate::kafka::{Route, SendError, Sink};
use crate::record::MarketTick;
use crate::source::SourceCtx;

/// A market session: pure protocol, its ticks handed to a [`TickOutput`].
pub type TickSession = dyn WsSession<Output = dyn TickOutput>;

/// Sends a session's ticks and dead letters. When librdkafka's queue is full the WebSocket
/// reader waits in the sink (`Sink::wait_for_space_blocking`) and TCP pushes back on the
/// provider: the "block the source" policy. Only shutdown ends a wait early, and the sink counts
/// what it gives up (`producer_messages_failed_total{reason="shutdown"}`).
#[derive(Debug)]
pub struct Emitter {
    sink: Sink,
    route: Route,
    shutdown: CancellationToken,
}

impl Emitter {
    /// The output of `provider`'s stream in `ctx`: its route on the market ticks topic.
    pub fn new(ctx: &SourceCtx, provider: &str) -> Self {
        Self {
            sink: ctx.sink.clone(),
            route: ctx.sink.route::<MarketTick<'_>>(provider),
            shutdown: ctx.shutdown.clone(),
        }
    }

    fn with_backpressure(&self, attempt: impl FnMut() -> Result<(), SendError>) {
        match self.sink.wait_for_space_blocking(&self.route, &self.shutdown, attempt) {
            // Counted by the sink (reasons `rejected`, `shutdown`).
            Ok(()) | Err(SendError::ShutDown) => {}
            Err(error) => tracing::error!(%error, "tick not accepted by the Kafka client"),
        }
    }
}

impl WsOutput for Emitter {
    /// Tags the following records with the connection epoch.
    fn connected(&mut self, epoch: u64) {
        self.route.set_conn_epoch(epoch);
    }

    /// A frame refused for its size becomes a dead letter with the reason (the frame itself
    /// was never read).
    fn transport_error(&mut self, error: &WsError) {
        if let WsError::FrameTooLarge { .. } = error {
            TickOutput::dead_letter(self, b"", &error.to_string(), Utc::now());
        }
    }
}

impl TickOutput for Emitter {
    fn tick(&mut self, tick: &MarketTick<'_>, raw: &[u8]) {
        self.with_backpressure(|| self.sink.try_send(&self.route, tick, raw).map(drop));
    }

    fn dead_letter(&mut self, raw: &[u8], reason: &str, received_at: DateTime<Utc>) {
        self.with_backpressure(|| self.sink.dead_letter(&self.route, raw, reason, received_at));
    }
}

/// What a market session hands its ticks and dead letters to. The session stays pure; the
/// implementation ([`Emitter`] in production, a collector in unit tests) does the rest.
pub trait TickOutput: WsOutput {
    /// A tick, with the raw element it came from (dead-lettered instead if it is invalid).
    fn tick(&mut self, tick: &MarketTick<'_>, raw: &[u8]);
    /// Input that could not be turned into a tick.
    fn dead_letter(&mut self, raw: &[u8], reason: &str, received_at: DateTime<Utc>);
}

/// The text of a frame: text frames as they are, binary frames if they are UTF-8 (JSON
/// providers); otherwise the frame is dead-lettered and `None` returned.
pub fn frame_text<'f>(frame: Frame<'f>, received_at: DateTime<Utc>, out: &mut dyn TickOutput) -> Option<&'f str> {
    match frame {
        Frame::Text(t) => Some(t),
        Frame::Binary(b) => match std::str::from_utf8(b) {
            Ok(t) => Some(t),
            Err(e) => {
                out.dead_letter(b, &format!("binary frame is not UTF-8 JSON: {e}"), received_at);
                None
            }
        },
    }
}

/// The step of a whole frame: `step` merged from its elements, or, when the frame is not a
/// JSON array of events, the frame dead-lettered (what its elements yielded still counts).
pub fn finish_frame(
    parsed: Result<(), FrameError>,
    step: Step,
    text: &str,
    received_at: DateTime<Utc>,
    out: &mut dyn TickOutput,
) -> Step {
    match parsed {
        Ok(()) => step,
        Err(e) => {
            out.dead_letter(
                text.as_bytes(),
                &format!("malformed frame (not a JSON array of events): {e}"),
                received_at,
            );
            merge(step, Step::Data)
        }
    }
}

/// The most significant of two steps (fatal > reconnect > subscribed > data > continue).
pub fn merge(a: Step, b: Step) -> Step {
    fn rank(s: &Step) -> u8 {
        match s {
            Step::Continue => 0,
            Step::Data => 1,
            Step::Subscribed => 2,
            Step::Reconnect(_) | Step::ReconnectAfter(..) => 3,
            Step::Fatal(_) => 4,
        }
    }
    if rank(&b) > rank(&a) { b } else { a }
}

/// A session driven without a socket or Kafka, for the providers' handshake and error-table
/// tests.
#[cfg(any(test, feature = "testkit"))]
pub mod testing {
    use super::*;

    /// What a session handed its output.
    #[derive(Debug, Default)]
    pub struct Collected {
        /// Connections announced.
        pub epochs: Vec<u64>,
        /// Ticks as their JSON values.
        pub ticks: Vec<serde_json::Value>,
        /// Dead letters: (raw, reason).
        pub dead: Vec<(String, String)>,
    }

    impl WsOutput for Collected {
        fn connected(&mut self, epoch: u64) {
            self.epochs.push(epoch);
        }
        fn transport_error(&mut self, _error: &WsError) {}
    }

    impl TickOutput for Collected {
        fn tick(&mut self, tick: &MarketTick<'_>, _raw: &[u8]) {
            self.ticks.push(serde_json::to_value(tick).expect("a tick serializes"));
        }
        fn dead_letter(&mut self, raw: &[u8], reason: &str, _received_at: DateTime<Utc>) {
            self.dead.push((String::from_utf8_lossy(raw).into_owned(), reason.to_string()));
        }
    }

    /// A session on one connection: opened, then fed text frames.
    #[allow(missing_debug_implementations, reason = "a test helper around a session trait object")]
    pub struct Driver {
        pub session: Box<TickSession>,
        pub out: Collected,
    }

    impl Driver {
        /// Opens a connection; returns the step and the replies `on_open` sent.
        pub fn open(session: Box<TickSession>) -> (Self, Step, Vec<String>) {
            let mut d = Self { session, out: Collected::default() };
            d.out.connected(1);
            let mut replies = Vec::new();
            let step = d.session.on_open(&mut replies);
            (d, step, replies)
        }

        /// One text frame: the step and the replies.
        pub fn frame(&mut self, text: &str) -> (Step, Vec<String>) {
            let mut replies = Vec::new();
            let step = self.session.on_frame(Frame::Text(text), Utc::now(), &mut replies, &mut self.out);
            (step, replies)
        }
    }
}
