//! market-producer: real-time trades, quotes and bars from market-data WebSockets (Polygon.io /
//! Massive, Alpaca, Finnhub), normalized to `market.tick/v1` on `market.ticks.raw`.
//!
//! This binary is thin: it parses the CLI and config and hands its sources to
//! `ingest_core::main`, which owns telemetry, the Kafka sink and shutdown.

use std::path::PathBuf;
use std::process::ExitCode;

use ingest_core::ProducerSpec;
use ingest_core::source::Source;
use market_producer::{MarketConfig, MarketSource, ReplaySource, Speed};

ingest_core::process_allocator!();

const SPEC: ProducerSpec = ProducerSpec {
    name: env!("CARGO_PKG_NAME"),
    version: env!("CARGO_PKG_VERSION"),
    about: "Streams real-time market data (Polygon/Massive, Alpaca, Finnhub) into Kafka",
};

/// market-producer's own flags.
#[derive(Debug, Clone, clap::Args)]
struct MarketArgs {
    /// Record every frame received, with its receive time, to FILE (JSON Lines).
    #[arg(long, value_name = "FILE", conflicts_with = "replay")]
    record: Option<PathBuf>,
    /// Feed the recording FILE through the pipeline instead of connecting; stop when done.
    #[arg(long, value_name = "FILE")]
    replay: Option<PathBuf>,
    /// Replay pace: a factor of the recorded rate (1 = real time) or `max`.
    #[arg(long, value_name = "X|max", default_value = "max", requires = "replay")]
    speed: Speed,
}

fn main() -> ExitCode {
    ingest_core::main::<MarketConfig, MarketArgs, _>(SPEC, |cfg, args| {
        let source: Box<dyn Source> = match &args.replay {
            Some(path) => Box::new(ReplaySource::new(cfg.section.clone(), path.clone(), args.speed)),
            None => Box::new(MarketSource::new(cfg.section.clone(), args.record.clone(), &cfg.core.runtime)),
        };
        Ok(vec![source])
    })
}
