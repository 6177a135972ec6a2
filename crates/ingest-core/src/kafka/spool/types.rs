//! The spool's settings and the values it hands to the sink.

use super::*;

/// When appended records are forced to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// After every record (slowest; survives a power cut with nothing lost).
    Always,
    /// At most this long after a write (a machine crash loses at most this window).
    Interval(Duration),
    /// Left to the OS (a process crash still loses nothing; a machine crash may).
    Never,
}

/// What happens to a record when the spool is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// The source waits until there is room (nothing dropped; a WebSocket provider may then
    /// disconnect us, which is published as a gap).
    Block,
    /// The oldest segment is deleted and its unsent records counted as failed with reason
    /// `spool_overflow`, exactly.
    DropOldest,
}

/// Where and how much to spool.
#[derive(Debug, Clone)]
pub struct SpoolSettings {
    /// The spool's own directory (one per producer process).
    pub dir: PathBuf,
    /// Bound on the bytes of all segments.
    pub max_bytes: u64,
    /// A segment is closed and a new one started past this size.
    pub segment_bytes: u64,
    /// Durability policy.
    pub fsync: Fsync,
    /// Policy when full.
    pub overflow: Overflow,
    /// How long librdkafka's queue may stay without room before records go to the spool. Until
    /// then the source waits: a broker that is slow but taking records slows the feed down
    /// (backpressure) instead of costing a disk write and a read-back per record.
    pub engage_after: Duration,
}

/// A record to spool, borrowed from the sink.
#[derive(Debug)]
pub(crate) struct Entry<'a> {
    pub(crate) ts_ms: i64,
    pub(crate) topic: &'a str,
    pub(crate) provider: &'a str,
    pub(crate) key: &'a [u8],
    pub(crate) headers: &'a [(&'a str, &'a [u8])],
    pub(crate) payload: &'a [u8],
}

/// A record read back from the spool, and where it ends (for the cursor).
#[derive(Debug)]
pub(crate) struct Spooled {
    pub(crate) route: usize,
    pub(crate) ts_ms: i64,
    pub(crate) topic: String,
    pub(crate) key: Vec<u8>,
    pub(crate) headers: Vec<(String, Vec<u8>)>,
    pub(crate) payload: Vec<u8>,
    pub(crate) seg: u64,
    pub(crate) start: u64,
    pub(crate) end: u64,
}

/// A record taken back from librdkafka's memory queue at shutdown, for [`Spool::rescue`].
#[derive(Debug)]
pub(crate) struct Rescued {
    pub(crate) route: usize,
    /// When it was handed to librdkafka (µs since the sink started), then 0 if it was in flight
    /// to a broker and 1 if still queued: per partition, that is librdkafka's order.
    pub(crate) order: (u64, u8),
    /// Its sequence number if it was sent from the spool.
    pub(crate) spooled_seq: Option<u64>,
    pub(crate) ts_ms: i64,
    pub(crate) topic: String,
    pub(crate) provider: String,
    pub(crate) key: Vec<u8>,
    pub(crate) headers: Vec<(String, Vec<u8>)>,
    pub(crate) payload: Vec<u8>,
}

/// Outcome of [`Spool::append`].
#[derive(Debug)]
pub(crate) enum Append {
    /// Written; `dropped` lists `(route, records)` deleted to make room (drop-oldest).
    Written { dropped: Vec<(usize, u64)> },
    /// The spool is not in use and the caller asked to write only if it was.
    NotSpooling,
    /// No room (block policy), or the disk refused the write: try again later.
    Full,
    /// The record is larger than a segment: it can never be spooled.
    TooLarge,
}

/// What the drainer gets from [`Spool::next`].
#[derive(Debug)]
pub(crate) enum Next {
    Record(Box<Spooled>),
    Idle,
    Closed,
}

/// What [`Spool::open`] found on disk.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// Segment files kept.
    pub segments: usize,
    /// Records not yet acknowledged, to be sent.
    pub records: u64,
    /// Their bytes on disk.
    pub bytes: u64,
    /// Torn or unreadable tails cut off (a record being written when the machine crashed).
    pub corrupt: u64,
    /// Set when the previous process using this spool did not stop cleanly.
    pub unclean: Option<UncleanStop>,
}

/// What the previous process recorded before it died without a clean stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UncleanStop {
    /// Its process id.
    pub pid: u32,
    /// From when records it held only in memory (not yet acknowledged, not spooled) may be
    /// lost: its oldest unacknowledged record's hand-off time, or its last heartbeat if it held
    /// none (milliseconds since the Unix epoch).
    pub at_risk_since_ms: i64,
}
