//! Telemetry: Prometheus metrics, the health endpoints and logs.

pub mod events;
pub mod handles;
pub mod health;
pub mod logging;
pub mod metrics;
mod server;
pub mod throttle;

pub use self::health::{Health, SourceHealth};
pub use self::metrics::Metrics;
pub use self::server::{ServerAddrs, serve};
