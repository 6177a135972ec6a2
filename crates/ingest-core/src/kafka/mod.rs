//! Kafka: the sink (the only producer of records), delivery accounting, dead-letter routing
//! and topic administration.

pub mod admin;
mod context;
mod sink;

pub use self::context::SinkContext;
pub use self::sink::{Outcome, Route, SendError, Sink, SinkError, TxError};
