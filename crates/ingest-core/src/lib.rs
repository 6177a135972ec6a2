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

#[cfg(feature = "jemalloc")]
#[doc(hidden)]
pub use tikv_jemallocator;

/// The producers' process allocator, declared by each binary (`ingest_core::process_allocator!();`
/// at the top of its `main.rs`; benches and tests keep their own). With the `jemalloc` feature
/// (the binaries' default), jemalloc serves every allocation of the process, librdkafka's
/// included (its `malloc` and `free` resolve to jemalloc's): librdkafka allocates each message
/// and header list on the producing thread and frees it on its delivery-report thread, which
/// under glibc's malloc contends for the producing thread's arena lock (docs/benchmarks.md,
/// "The allocator"). Without the feature: the system allocator.
#[cfg(feature = "jemalloc")]
#[macro_export]
macro_rules! process_allocator {
    () => {
        #[global_allocator]
        static ALLOCATOR: $crate::tikv_jemallocator::Jemalloc = $crate::tikv_jemallocator::Jemalloc;
    };
}

/// See the `jemalloc` variant: without the feature the system allocator serves the process.
#[cfg(not(feature = "jemalloc"))]
#[macro_export]
macro_rules! process_allocator {
    () => {};
}
