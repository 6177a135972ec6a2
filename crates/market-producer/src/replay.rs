//! `--replay FILE [--speed X|max]`: feeds a recording (see `ingest_core::ws::recording`)
//! through the same session code as a live connection (parse → normalize → sink), with the
//! recorded receive times, so a replay produces exactly the records the live run did. Frames
//! are paced at `X` times the recorded rate, or as fast as possible with `max`. The producer
//! stops by itself when the recording ends.

use std::path::PathBuf;
use std::str::FromStr;

use futures::future::BoxFuture;
use ingest_core::source::{FatalError, Source, SourceCtx};
use ingest_core::ws::recording;
use ingest_core::ws::{Step, WsOutput};

use crate::config::MarketConfig;
use crate::provider::MarketProvider;
use crate::source::session_for;
use ingest_core::ws::emit::Emitter;

/// Replay pace.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Speed {
    /// As fast as the pipeline goes.
    Max,
    /// This many times the recorded rate (1 = real time).
    Factor(f64),
}

impl FromStr for Speed {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("max") {
            return Ok(Speed::Max);
        }
        match s.parse::<f64>() {
            Ok(x) if x.is_finite() && x > 0.0 => Ok(Speed::Factor(x)),
            _ => Err(format!("`{s}` is neither `max` nor a positive number")),
        }
    }
}

/// Replays one recording.
#[derive(Debug)]
pub struct ReplaySource {
    cfg: MarketConfig,
    path: PathBuf,
    speed: Speed,
}

impl ReplaySource {
    pub fn new(cfg: MarketConfig, path: PathBuf, speed: Speed) -> Self {
        Self { cfg, path, speed }
    }
}

impl Source for ReplaySource {
    fn name(&self) -> &str {
        "replay"
    }

    fn run(self: Box<Self>, ctx: SourceCtx) -> BoxFuture<'static, Result<(), FatalError>> {
        Box::pin(async move {
            let fatal = |message: String| FatalError { source_name: "replay".into(), message };
            let (provider, frames) =
                recording::open(&self.path).map_err(|e| fatal(format!("{}: {e}", self.path.display())))?;
            let known = MarketProvider::from_label(&provider).ok_or_else(|| {
                fatal(format!("the recording is of provider `{provider}`, which this producer does not know"))
            })?;
            let mut session = session_for(known, &self.cfg);
            let mut output = Emitter::new(&ctx, &provider);
            output.connected(1);
            let mut out = Vec::new();
            session.on_open(&mut out);
            ctx.health.set_connected(true, format!("replaying {}", self.path.display()));
            let started = tokio::time::Instant::now();
            let mut first = None;
            let (mut frames_seen, mut bad_lines) = (0u64, 0u64);
            for line in frames {
                let f = match line.and_then(|f| f.payload().map(|p| (f, p))) {
                    Ok(f) => f,
                    Err(error) => {
                        bad_lines += 1;
                        tracing::error!(%error, "unreadable line in the recording; skipped");
                        continue;
                    }
                };
                let (frame, payload) = f;
                if let Speed::Factor(x) = self.speed {
                    let t0 = *first.get_or_insert(frame.received_at);
                    let offset = (frame.received_at - t0).to_std().unwrap_or_default().div_f64(x);
                    tokio::select! {
                        () = tokio::time::sleep_until(started + offset) => {}
                        () = ctx.shutdown.cancelled() => return Ok(()),
                    }
                } else if frames_seen % 256 == 0 {
                    tokio::task::yield_now().await;
                }
                if ctx.shutdown.is_cancelled() {
                    return Ok(());
                }
                frames_seen += 1;
                match session.on_frame(payload.frame(), frame.received_at, &mut out, &mut output) {
                    Step::Fatal(m) => return Err(fatal(m)),
                    Step::Data | Step::Subscribed => ctx.health.mark_data(),
                    Step::Continue | Step::Reconnect(_) | Step::ReconnectAfter(..) => {}
                }
                out.clear();
            }
            tracing::info!(
                frames = frames_seen,
                bad_lines,
                elapsed_secs = started.elapsed().as_secs_f64(),
                "replay finished"
            );
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speed_parses_max_and_positive_factors() {
        assert_eq!("max".parse::<Speed>(), Ok(Speed::Max));
        assert_eq!("MAX".parse::<Speed>(), Ok(Speed::Max));
        assert_eq!("2.5".parse::<Speed>(), Ok(Speed::Factor(2.5)));
        for bad in ["0", "-1", "fast", "NaN", "inf"] {
            assert!(bad.parse::<Speed>().is_err(), "{bad}");
        }
    }
}
