//! social-producer: posts from Reddit, StockTwits and X recent search (polled, exactly once) and
//! the X v2 filtered stream, normalized to `social.post/v1` on `social.posts.raw`.
//!
//! This binary is thin: it parses the CLI and config and hands its sources to
//! `ingest_core::main`, which owns telemetry, the Kafka sink and shutdown.

use std::process::ExitCode;

use ingest_core::ProducerSpec;
use ingest_core::runtime::NoArgs;
use ingest_core::source::Source;
use social_producer::config::SocialConfig;

ingest_core::process_allocator!();

const SPEC: ProducerSpec = ProducerSpec {
    name: env!("CARGO_PKG_NAME"),
    version: env!("CARGO_PKG_VERSION"),
    about: "Streams and polls social posts (Reddit, X, StockTwits) into Kafka",
};

fn main() -> ExitCode {
    ingest_core::main::<SocialConfig, NoArgs, _>(SPEC, |cfg, _| {
        let group = social_producer::group(cfg, SPEC.name);
        let mut sources: Vec<Box<dyn Source>> = if group.is_empty() { Vec::new() } else { vec![Box::new(group)] };
        if let Some(stream) = social_producer::x_stream(cfg) {
            sources.push(Box::new(stream));
        }
        Ok(sources)
    })
}
