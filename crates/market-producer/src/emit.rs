//! The market sources' way to the sink: ticks, dead letters, and backpressure.

use chrono::{DateTime, Utc};
use ingest_core::kafka::{Route, SendError, Sink};
use ingest_core::record::MarketTick;
use ingest_core::source::SourceCtx;
use ingest_core::ws::{Frame, Step, WsError};
use tokio_util::sync::CancellationToken;

use crate::frame::FrameError;

/// Sends a session's ticks and dead letters. When librdkafka's queue is full the WebSocket
/// reader waits in the sink (`Sink::wait_for_space_blocking`) and TCP pushes back on the
/// provider: the "block the source" policy. Only shutdown ends a wait early, and the sink counts
/// what it gives up (`producer_messages_failed_total{reason="shutdown"}`).
#[derive(Debug)]
pub(crate) struct Emitter {
    sink: Sink,
    route: Route,
    shutdown: CancellationToken,
}

impl Emitter {
    pub(crate) fn new(ctx: &SourceCtx, provider: &str) -> Self {
        Self {
            sink: ctx.sink.clone(),
            route: ctx.sink.route::<MarketTick<'_>>(provider),
            shutdown: ctx.shutdown.clone(),
        }
    }

    /// Tags the following records with the connection epoch.
    pub(crate) fn set_epoch(&mut self, epoch: u64) {
        self.route.set_conn_epoch(epoch);
    }

    /// Validates and sends `tick` (or dead-letters `raw` if it is invalid).
    pub(crate) fn send(&self, tick: &MarketTick<'_>, raw: &[u8]) {
        self.with_backpressure(|| self.sink.try_send(&self.route, tick, raw).map(drop));
    }

    /// Dead-letters input that could not be turned into a tick.
    pub(crate) fn dead_letter(&self, raw: &[u8], reason: &str, received_at: DateTime<Utc>) {
        self.with_backpressure(|| self.sink.dead_letter(&self.route, raw, reason, received_at));
    }

    /// The text of a frame: text frames as they are, binary frames if they are UTF-8 (JSON
    /// providers); otherwise the frame is dead-lettered and `None` returned.
    pub(crate) fn frame_text<'f>(&self, frame: Frame<'f>, received_at: DateTime<Utc>) -> Option<&'f str> {
        match frame {
            Frame::Text(t) => Some(t),
            Frame::Binary(b) => match std::str::from_utf8(b) {
                Ok(t) => Some(t),
                Err(e) => {
                    self.dead_letter(b, &format!("binary frame is not UTF-8 JSON: {e}"), received_at);
                    None
                }
            },
        }
    }

    /// Records what the sessions must keep of a failed connection: a frame refused for its
    /// size becomes a dead letter with the reason (the frame itself was never read).
    pub(crate) fn transport_error(&self, error: &WsError) {
        if let WsError::FrameTooLarge { .. } = error {
            self.dead_letter(b"", &error.to_string(), Utc::now());
        }
    }

    /// The step of a whole frame: `step` merged from its elements, or, when the frame is not
    /// a JSON array of events, the frame dead-lettered (what its elements yielded still counts).
    pub(crate) fn finish_frame(
        &self,
        parsed: Result<(), FrameError>,
        step: Step,
        text: &str,
        received_at: DateTime<Utc>,
    ) -> Step {
        match parsed {
            Ok(()) => step,
            Err(e) => {
                self.dead_letter(
                    text.as_bytes(),
                    &format!("malformed frame (not a JSON array of events): {e}"),
                    received_at,
                );
                merge(step, Step::Data)
            }
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

/// The most significant of two steps (fatal > reconnect > subscribed > data > continue).
pub(crate) fn merge(a: Step, b: Step) -> Step {
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
