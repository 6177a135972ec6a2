//! `tracing` setup: text or JSON lines on stderr, filter from `telemetry.log_level` / `LOG_LEVEL`.
//!
//! Logging never stops the process. Lines go through a bounded queue to one writer thread, so a
//! log reader that stalls (a full pipe) cannot block a tokio worker or the shutdown; a reader
//! that went away (EPIPE, a closed terminal) cannot panic anything: a line that cannot be
//! queued or written is dropped and counted in `producer_log_lines_dropped_total`.

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{LazyLock, OnceLock};
use std::time::{Duration, Instant};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::LogFormat;

/// Libraries that log what they put on the wire at debug/trace level: WebSocket frames (the
/// auth message carries the API key), HTTP requests and headers. They stay at `info` whatever
/// the level, so `LOG_LEVEL=trace` never prints a credential; naming one in the filter
/// (`LOG_LEVEL=debug,tungstenite=trace`) lifts its cap, deliberately.
const WIRE_LEVEL_CRATES: &[&str] =
    &["tungstenite", "tokio_tungstenite", "hyper", "hyper_util", "h2", "reqwest", "rustls", "tokio_rustls"];

/// `level` plus the caps of [`WIRE_LEVEL_CRATES`] it does not name itself.
pub fn filter_directives(level: &str) -> String {
    let mut out = level.trim().to_string();
    for c in WIRE_LEVEL_CRATES {
        let named = level.split(',').any(|d| d.trim().split(['=', '[', ':']).next() == Some(*c));
        if !named {
            out.push_str(&format!(",{c}=info"));
        }
    }
    out.trim_start_matches(',').to_string()
}

/// Lines waiting for the writer thread at most; past it new lines are dropped (and counted).
const QUEUE_LINES: usize = 4096;

/// Lines dropped because the queue was full or stderr refused them.
static DROPPED: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    prometheus::IntCounter::new(
        crate::telemetry::metrics::LOG_LINES_DROPPED,
        "Log lines dropped because stderr could not take them (reader gone or stalled).",
    )
    .expect("valid metric")
});

/// Lines queued and not yet written (or dropped) by the writer thread.
static PENDING: AtomicU64 = AtomicU64::new(0);

static QUEUE: OnceLock<SyncSender<Vec<u8>>> = OnceLock::new();

/// The dropped-lines counter, registered by [`crate::telemetry::Metrics`].
pub fn dropped_lines() -> prometheus::IntCounter {
    DROPPED.clone()
}

fn queue() -> &'static SyncSender<Vec<u8>> {
    QUEUE.get_or_init(|| {
        let (tx, rx) = sync_channel(QUEUE_LINES);
        // Without the thread the receiver is gone and every line counts as dropped.
        let _ = std::thread::Builder::new().name("log-writer".into()).spawn(move || write_lines(&rx));
        tx
    })
}

fn write_lines(rx: &Receiver<Vec<u8>>) {
    let mut err = std::io::stderr();
    for line in rx {
        if err.write_all(&line).is_err() {
            DROPPED.inc();
        }
        PENDING.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One event's bytes, queued whole when the formatter is done with it.
#[derive(Debug)]
pub struct QueuedLine(Vec<u8>);

impl std::io::Write for QueuedLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for QueuedLine {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        PENDING.fetch_add(1, Ordering::AcqRel);
        match queue().try_send(std::mem::take(&mut self.0)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                PENDING.fetch_sub(1, Ordering::AcqRel);
                DROPPED.inc();
            }
        }
    }
}

/// The writer the subscriber formats into: one [`QueuedLine`] per event.
#[derive(Debug, Clone, Copy)]
pub struct Queued;

impl<'a> MakeWriter<'a> for Queued {
    type Writer = QueuedLine;

    fn make_writer(&'a self) -> Self::Writer {
        QueuedLine(Vec::with_capacity(256))
    }
}

/// Waits up to `timeout` for queued lines to be written (at exit, so the last lines are seen).
pub fn flush(timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while PENDING.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
        crate::blocking::sleep(Duration::from_millis(5));
    }
}

/// Writes `message` and a newline to stderr, or nothing when stderr cannot take it: for the
/// lines a producer prints outside the log (its last error). Never panics, unlike `eprintln!`.
pub fn stderr_line(message: &str) {
    let mut err = std::io::stderr();
    if writeln!(err, "{message}").is_err() {
        DROPPED.inc();
    }
}

/// Installs the global subscriber. Calling it twice is harmless (the second call is ignored),
/// which keeps tests that start several producers in one process simple.
pub fn init(level: &str, format: LogFormat) {
    let filter =
        EnvFilter::try_new(filter_directives(level)).unwrap_or_else(|_| EnvFilter::new(filter_directives("info")));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(Queued).log_internal_errors(false);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_level_crates_are_capped_unless_named() {
        let f = filter_directives("trace");
        assert!(f.starts_with("trace,") && f.contains("tungstenite=info") && f.contains("hyper=info"), "{f}");
        let f = filter_directives("debug,tungstenite=trace");
        assert!(f.contains("tungstenite=trace") && !f.split(',').any(|d| d == "tungstenite=info"), "{f}");
        assert!(f.contains("tokio_tungstenite=info"), "{f}");
        assert!(EnvFilter::try_new(filter_directives("info,ingest_core=debug")).is_ok());
    }
}
