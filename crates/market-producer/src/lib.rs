//! market-producer: real-time trades, quotes and bars from market-data WebSockets (Polygon.io /
//! Massive, Alpaca, Finnhub), normalized to `market.tick/v1` on `market.ticks.raw`.
//!
//! The library holds the providers' protocols and the pure normalization; `main.rs` only
//! wires them into `ingest_core::main`. `polygon::elements` is public so that the benchmark
//! measures the production hot path itself.

pub(crate) mod alpaca;
pub mod book;
pub(crate) mod config;
pub(crate) mod exchanges;
pub(crate) mod finnhub;
pub(crate) mod history;
pub mod hostile;
pub mod polygon;
pub(crate) mod provider;
pub(crate) mod repair;
pub(crate) mod repair_state;
pub(crate) mod replay;
pub(crate) mod shard;
pub(crate) mod source;
pub(crate) mod tick;

pub use config::MarketConfig;
pub use replay::{ReplaySource, Speed};
pub use source::MarketSource;
