//! sec-producer: SEC EDGAR filings from the current-filings Atom feed and the submissions JSON
//! API, normalized to `sec.filing/v1` on `sec.filings.raw`.
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
    about: "Polls SEC EDGAR filings (current-filings feed, submissions API) into Kafka",
};

fn main() -> ExitCode {
    ingest_core::main::<config::SecConfig, NoArgs, _>(SPEC, |cfg, _| {
        // The EDGAR sources are not built yet: the producer runs, serves metrics and health and
        // publishes lifecycle events, and the runtime warns at start that no source is enabled.
        // It never pretends to ingest.
        let _ = cfg;
        Ok(Vec::new())
    })
}
