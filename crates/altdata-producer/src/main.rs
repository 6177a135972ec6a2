//! altdata-producer: user-configured HTTP JSON, HTML and CSV sources, normalized to
//! `altdata.record/v1` on `altdata.records.raw`.
//!
//! This binary is thin: it parses the CLI and config and hands its sources to
//! `ingest_core::main`, which owns telemetry, the Kafka sink and shutdown.

use std::process::ExitCode;
use std::sync::Arc;

use altdata_producer::config;
use altdata_producer::ssrf::SystemLookup;
use ingest_core::source::Source;

use ingest_core::ProducerSpec;
use ingest_core::runtime::NoArgs;

ingest_core::process_allocator!();

const SPEC: ProducerSpec = ProducerSpec {
    name: env!("CARGO_PKG_NAME"),
    version: env!("CARGO_PKG_VERSION"),
    about: "Polls user-configured HTTP JSON / HTML / CSV sources into Kafka",
};

fn main() -> ExitCode {
    ingest_core::main::<config::AltDataConfig, NoArgs, _>(SPEC, |cfg, _| {
        let proxy = ingest_core::proxy::ProxyEnv::from_env();
        let group = altdata_producer::group(cfg, SPEC.name, Arc::new(SystemLookup), None, &proxy);
        let sources: Vec<Box<dyn Source>> = if group.is_empty() { Vec::new() } else { vec![Box::new(group)] };
        Ok(sources)
    })
}
