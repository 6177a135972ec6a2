//! Kafka: the sink (the only producer of records), delivery accounting, dead-letter routing
//! and topic administration.

pub mod admin;
mod context;
mod sink;
pub mod spool;
mod state;

pub use self::context::SinkContext;
pub use self::sink::{Outcome, Route, SendError, Sink, SinkError, SpoolLeft, TxError, TxSink, until_done};
pub use self::spool::{Fsync, Overflow, Recovered, SpoolSettings, UncleanStop};
pub use self::state::{RestoreError, read_committed_since, read_committed_to_end, restore_state};
