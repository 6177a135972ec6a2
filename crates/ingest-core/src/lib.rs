//! Everything the FinStream producers share: the record schemas, the Kafka sink, config,
//! resilience (backoff, rate limiting, circuit breaking), telemetry, the source abstractions
//! and the process runtime.
//!
//! Guarantees this crate upholds for every producer (see ARCHITECTURE.md):
//! - sources never touch rdkafka: records go through [`kafka::Sink`] only;
//! - every input is delivered, dead-lettered with its reason, or counted as failed;
//! - secrets are only reachable through [`config::Secret::expose`] and never printed;
//! - SIGTERM/SIGINT stop sources, flush Kafka and exit 0 within the configured timeout.

pub mod blocking;
pub mod clock;
pub mod config;
pub mod hostile;
pub mod http;
pub mod kafka;
pub mod market_hours;
pub mod poll;
pub mod proxy;
pub mod record;
pub mod resilience;
pub mod runtime;
pub mod source;
pub mod telemetry;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod tls;
pub mod ws;

pub use runtime::{ProducerSpec, main};
