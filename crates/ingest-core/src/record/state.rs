//! `ingest.state/v1`: the durable state of a group of polled sources, in the compacted
//! `ingest.state` topic, keyed by the group. Written in the same Kafka transaction as the
//! records of the poll that produced it, so a `read_committed` reader always sees a state that
//! matches exactly the records before it (docs/contracts.md, Delivery).
//!
//! ```json
//! {"source":"news-producer/news","cursors":{"newsapi:everything":"2024-01-02T14:00:00Z"},
//!  "seen":["9f1c2b7a00e4d3c1","…"],"provider":"news-producer","updated_at":"2024-01-02T14:30:00.123Z"}
//! ```
//!
//! `seen` is the dedup window: 64-bit FNV-1a hashes (16 hex digits) of the Kafka keys already
//! delivered, oldest first. Hashes keep the record small (19 bytes an entry); with a window of
//! 10,000 keys the chance of any collision is about 3 in 10^12.

use std::borrow::Cow;
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Record, TopicKind, ValidationError, check, ts};

/// The state of one group of polled sources.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceState {
    /// The group: `<producer>/<group>`. Kafka key.
    pub source: String,
    /// Each member source's cursor, as its poller serializes it.
    pub cursors: BTreeMap<String, serde_json::Value>,
    /// Dedup window: hashes of delivered keys, oldest first.
    pub seen: Vec<String>,
    /// The producer that wrote it.
    pub provider: String,
    /// When it was written.
    #[serde(with = "ts")]
    pub updated_at: DateTime<Utc>,
}

impl Record for SourceState {
    const SCHEMA: &'static str = "ingest.state/v1";
    const TOPIC: TopicKind = TopicKind::State;

    fn key(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.source)
    }
    fn provider(&self) -> &str {
        &self.provider
    }
    fn event_time(&self) -> DateTime<Utc> {
        self.updated_at
    }
    fn received_at(&self) -> DateTime<Utc> {
        self.updated_at
    }

    fn validate(&self) -> Result<(), ValidationError> {
        check::non_empty("source", &self.source)?;
        if let Some(bad) = self.seen.iter().find(|h| h.len() != 16 || !h.bytes().all(|b| b.is_ascii_hexdigit())) {
            return Err(ValidationError::new("seen", format!("`{bad}` is not a 16-digit hex hash")));
        }
        Ok(())
    }
}
