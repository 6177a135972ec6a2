//! `tracing` setup: text or JSON lines on stderr, filter from `telemetry.log_level` / `LOG_LEVEL`.

use tracing_subscriber::EnvFilter;

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

/// Installs the global subscriber. Calling it twice is harmless (the second call is ignored),
/// which keeps tests that start several producers in one process simple.
pub fn init(level: &str, format: LogFormat) {
    let filter =
        EnvFilter::try_new(filter_directives(level)).unwrap_or_else(|_| EnvFilter::new(filter_directives("info")));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
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
