//! altdata-producer: user-configured HTTP JSON, HTML and CSV sources, normalized to
//! `altdata.record/v1` on `altdata.records.raw`.
//!
//! This binary is thin: it parses the CLI and config and hands its sources to
//! `ingest_core::main`, which owns telemetry, the Kafka sink and shutdown.

use std::process::ExitCode;

use altdata_producer::config;

use ingest_core::ProducerSpec;
use ingest_core::runtime::NoArgs;

const SPEC: ProducerSpec = ProducerSpec {
    name: env!("CARGO_PKG_NAME"),
    version: env!("CARGO_PKG_VERSION"),
    about: "Polls user-configured HTTP JSON / HTML / CSV sources into Kafka",
};

fn main() -> ExitCode {
    ingest_core::main::<config::AltDataConfig, NoArgs, _>(SPEC, |cfg, _| {
        // The custom sources are not built yet: the producer runs, serves metrics and health and
        // publishes lifecycle events, and the runtime warns at start that no source is enabled.
        // It never pretends to ingest.
        let _ = cfg;
        Ok(Vec::new())
    })
}
