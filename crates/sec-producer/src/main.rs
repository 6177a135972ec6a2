//! sec-producer: SEC EDGAR filings from the current-filings Atom feed and the submissions JSON
//! API, normalized to `sec.filing/v1` on `sec.filings.raw`, exactly once (one record per
//! accession number, Kafka transactions with the cursors in `ingest.state`).
//!
//! This binary is thin: it parses the CLI and config and hands its sources to
//! `ingest_core::main`, which owns telemetry, the Kafka sink and shutdown.

use std::process::ExitCode;

use ingest_core::ProducerSpec;
use ingest_core::runtime::NoArgs;
use ingest_core::source::Source;
use sec_producer::config;

ingest_core::process_allocator!();

const SPEC: ProducerSpec = ProducerSpec {
    name: env!("CARGO_PKG_NAME"),
    version: env!("CARGO_PKG_VERSION"),
    about: "Polls SEC EDGAR filings (current-filings feed, submissions API) into Kafka",
};

fn main() -> ExitCode {
    ingest_core::main::<config::SecConfig, NoArgs, _>(SPEC, |cfg, _| {
        let group: Box<dyn Source> = Box::new(sec_producer::group(cfg, SPEC.name));
        Ok(vec![group])
    })
}
