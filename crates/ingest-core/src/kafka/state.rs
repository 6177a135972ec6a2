//! The state-restore consumer: reads a topic's committed records up to its end (polled
//! sources restore their cursors and dedup window from `ingest.state` with it; the market
//! gap repair reads what was delivered since a time).

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::config::KafkaConfig;
use crate::record::SourceState;

/// Reads every record of `topic` that is committed up to its current end, in offset order per
/// partition, handing each to `on_message`: a `read_committed` consumer reads every partition
/// from the start up to the high watermark taken (read_uncommitted) when it started, so
/// transactions still open then are waited for (until they end or `timeout`).
pub fn read_committed_to_end(
    kafka: &KafkaConfig,
    topic: &str,
    timeout: Duration,
    on_message: impl FnMut(&rdkafka::message::BorrowedMessage<'_>),
) -> Result<(), String> {
    read_committed(kafka, topic, None, timeout, on_message)
}

/// As [`read_committed_to_end`], from each partition's first record with a Kafka timestamp at
/// or after `since_ms`, handing each record's value to `on_value` (the gap repair's view of
/// what was delivered in a window).
pub fn read_committed_since(
    kafka: &KafkaConfig,
    topic: &str,
    since_ms: i64,
    timeout: Duration,
    mut on_value: impl FnMut(&[u8]),
) -> Result<(), String> {
    read_committed(kafka, topic, Some(since_ms), timeout, |m| on_value(m.payload().unwrap_or_default()))
}

fn read_committed(
    kafka: &KafkaConfig,
    topic: &str,
    since_ms: Option<i64>,
    timeout: Duration,
    mut on_message: impl FnMut(&rdkafka::message::BorrowedMessage<'_>),
) -> Result<(), String> {
    let consumer = |isolation: &str| -> Result<BaseConsumer, String> {
        let mut cc = ClientConfig::new();
        // Security settings (TLS, SASL) apply to every client; producer tuning does not.
        for (k, v) in kafka.connection_properties() {
            cc.set(k, v);
        }
        cc.set("group.id", "finstream-state-restore")
            .set("enable.auto.commit", "false")
            .set("isolation.level", isolation);
        cc.create().map_err(|e| format!("cannot create a consumer: {e}"))
    };
    let deadline = Instant::now() + timeout;
    let probe = consumer("read_uncommitted")?;
    // A topic created a moment ago may not be in every broker's metadata yet: ask again, briefly.
    let metadata_deadline = Instant::now() + timeout.min(Duration::from_secs(10));
    let partitions = loop {
        let md = probe.fetch_metadata(Some(topic), timeout).map_err(|e| format!("metadata for `{topic}`: {e}"))?;
        // Every partition must have a leader, or its watermarks cannot be asked for yet.
        let n = md
            .topics()
            .first()
            .filter(|t| t.error().is_none() && t.partitions().iter().all(|p| p.leader() >= 0 && p.error().is_none()))
            .map(|t| t.partitions().len())
            .unwrap_or(0);
        if n > 0 {
            break n;
        }
        if Instant::now() >= metadata_deadline {
            return Err(format!("topic `{topic}` does not exist"));
        }
        crate::blocking::sleep(Duration::from_millis(100));
    };
    let mut tpl = TopicPartitionList::new();
    let mut ends = Vec::new();
    for p in 0..i32::try_from(partitions).unwrap_or(i32::MAX) {
        // A leader change (or one still being elected) answers with a retriable error: ask again.
        let (low, high) = loop {
            match probe.fetch_watermarks(topic, p, timeout) {
                Ok(w) => break w,
                Err(e) if Instant::now() < metadata_deadline => {
                    tracing::debug!(topic, partition = p, error = %e, "watermarks not available yet; retrying");
                    crate::blocking::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(format!("watermarks: {e}")),
            }
        };
        let start = match since_ms {
            None => low,
            Some(ms) => {
                let mut at = TopicPartitionList::new();
                at.add_partition_offset(topic, p, Offset::Offset(ms)).map_err(|e| e.to_string())?;
                let found = probe.offsets_for_times(at, timeout).map_err(|e| format!("offsets for times: {e}"))?;
                match found.find_partition(topic, p).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => o.max(low),
                    // No record at or after the time.
                    _ => high,
                }
            }
        };
        if high > start {
            tpl.add_partition_offset(topic, p, Offset::Offset(start)).map_err(|e| e.to_string())?;
            ends.push((p, high));
        }
    }
    if ends.is_empty() {
        return Ok(());
    }
    let reader = consumer("read_committed")?;
    reader.assign(&tpl).map_err(|e| format!("assign: {e}"))?;
    loop {
        let position = reader.position().map_err(|e| format!("position: {e}"))?;
        let done = ends.iter().all(|(p, high)| {
            matches!(position.find_partition(topic, *p).map(|e| e.offset()), Some(Offset::Offset(o)) if o >= *high)
        });
        if done {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "timed out reading `{topic}` up to its end (a transaction of another producer may still be open)"
            ));
        }
        match reader.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => on_message(&m),
            None => {}
            Some(Err(e)) => return Err(format!("reading `{topic}`: {e}")),
        }
    }
}

/// The group's last committed state in `topic` (`None` if it has none yet).
pub fn restore_state(
    kafka: &KafkaConfig,
    topic: &str,
    key: &str,
    timeout: Duration,
) -> Result<Option<SourceState>, RestoreError> {
    let mut latest: Option<Option<Vec<u8>>> = None;
    read_committed_to_end(kafka, topic, timeout, |m| {
        if m.key() == Some(key.as_bytes()) {
            latest = Some(m.payload().map(<[u8]>::to_vec));
        }
    })
    .map_err(RestoreError::Kafka)?;
    match latest.flatten() {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            RestoreError::Unreadable(format!(
                "the stored state of `{key}` is unreadable ({e}); refusing to start without it"
            ))
        }),
    }
}

/// Why the state could not be restored.
#[derive(Debug)]
pub enum RestoreError {
    /// Kafka did not answer in time (an outage): retried.
    Kafka(String),
    /// The stored record is not a state: starting without it could repeat records, so stop.
    Unreadable(String),
}
