//! news-producer: financial news from NewsAPI and Alpha Vantage NEWS_SENTIMENT, normalized to
//! `news.article/v1` on `news.articles.raw`, exactly once (Kafka transactions with the cursors
//! and dedup window in `ingest.state`).
//!
//! This binary is thin: it parses the CLI and config and hands its sources to
//! `ingest_core::main`, which owns telemetry, the Kafka sink and shutdown.

use std::process::ExitCode;

use ingest_core::ProducerSpec;
use ingest_core::runtime::NoArgs;
use ingest_core::source::Source;
use news_producer::config::NewsConfig;

ingest_core::process_allocator!();

const SPEC: ProducerSpec = ProducerSpec {
    name: env!("CARGO_PKG_NAME"),
    version: env!("CARGO_PKG_VERSION"),
    about: "Polls financial news (NewsAPI, Alpha Vantage NEWS_SENTIMENT) into Kafka",
};

fn main() -> ExitCode {
    ingest_core::main::<NewsConfig, NoArgs, _>(SPEC, |cfg, _| {
        let group: Box<dyn Source> = Box::new(news_producer::group(cfg, SPEC.name));
        Ok(vec![group])
    })
}
