//! news-producer: financial news from NewsAPI and Alpha Vantage NEWS_SENTIMENT, normalized to
//! `news.article/v1` on `news.articles.raw`.
//!
//! This binary is thin: it parses the CLI and config and hands its sources to
//! `ingest_core::main`, which owns telemetry, the Kafka sink and shutdown.

mod config;

use std::process::ExitCode;

use ingest_core::ProducerSpec;
use ingest_core::runtime::NoArgs;

const SPEC: ProducerSpec = ProducerSpec {
    name: env!("CARGO_PKG_NAME"),
    version: env!("CARGO_PKG_VERSION"),
    about: "Polls financial news (NewsAPI, Alpha Vantage NEWS_SENTIMENT) into Kafka",
};

fn main() -> ExitCode {
    ingest_core::main::<config::NewsConfig, NoArgs, _>(SPEC, |cfg, _| {
        // The polled news sources are not built yet: the producer runs, serves metrics and health and
        // publishes lifecycle events, and the runtime warns at start that no source is enabled.
        // It never pretends to ingest.
        let _ = cfg;
        Ok(Vec::new())
    })
}
