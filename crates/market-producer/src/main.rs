//! market-producer: real-time trades, quotes and bars from market-data WebSockets (Polygon.io /
//! Massive, Alpaca, Finnhub), normalized to `market.tick/v1` on `market.ticks.raw`.
//!
//! This binary is thin: it parses the CLI and config and hands its sources to
//! `ingest_core::main`, which owns telemetry, the Kafka sink and shutdown.

mod alpaca;
mod book;
mod config;
mod emit;
mod exchanges;
mod finnhub;
mod frame;
mod polygon;
mod shard;
mod source;

use std::process::ExitCode;

use ingest_core::ProducerSpec;
use ingest_core::runtime::NoArgs;
use ingest_core::source::Source;

const SPEC: ProducerSpec = ProducerSpec {
    name: env!("CARGO_PKG_NAME"),
    version: env!("CARGO_PKG_VERSION"),
    about: "Streams real-time market data (Polygon/Massive, Alpaca, Finnhub) into Kafka",
};

fn main() -> ExitCode {
    ingest_core::main::<config::MarketConfig, NoArgs, _>(SPEC, |cfg, _| {
        let source: Box<dyn Source> = Box::new(source::MarketSource::new(cfg.section.clone()));
        Ok(vec![source])
    })
}
