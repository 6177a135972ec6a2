//! social-producer: posts from Reddit and StockTwits (polled, exactly once) normalized to
//! `social.post/v1` on `social.posts.raw`; X through recent search. The X v2 filtered stream is
//! not built yet.
//!
//! This binary is thin: it parses the CLI and config and hands its sources to
//! `ingest_core::main`, which owns telemetry, the Kafka sink and shutdown.

use std::process::ExitCode;

use ingest_core::ProducerSpec;
use ingest_core::runtime::NoArgs;
use ingest_core::source::Source;
use social_producer::config::SocialConfig;

const SPEC: ProducerSpec = ProducerSpec {
    name: env!("CARGO_PKG_NAME"),
    version: env!("CARGO_PKG_VERSION"),
    about: "Streams and polls social posts (Reddit, X, StockTwits) into Kafka",
};

fn main() -> ExitCode {
    ingest_core::main::<SocialConfig, NoArgs, _>(SPEC, |cfg, _| {
        if cfg.section.twitter.enabled && cfg.section.twitter.mode == "stream" {
            tracing::warn!(
                "social.twitter.mode is `stream` but the X filtered stream is not built yet: no X posts are ingested (mode `search` polls recent search)"
            );
        }
        let group = social_producer::group(cfg, SPEC.name);
        let sources: Vec<Box<dyn Source>> = if group.is_empty() { Vec::new() } else { vec![Box::new(group)] };
        Ok(sources)
    })
}
