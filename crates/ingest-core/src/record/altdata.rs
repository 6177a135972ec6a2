//! `altdata.record/v1`: one item of a user-configured source.
//!
//! ```json
//! {"source":"fed-rates","id":"2024-01-02","observed_at":"2024-01-02T00:00:00Z",
//!  "url":"https://example.org/rates.json","data":{"rate":5.33},
//!  "provider":"altdata","received_at":"2024-01-02T14:30:00.123Z"}
//! ```

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Record, TopicKind, ValidationError, check, ts};

/// A record of a custom source (docs/contracts.md, Records).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AltDataRecord {
    /// Name of the configured source.
    pub source: String,
    /// The item's id within the source (id field or content hash).
    pub id: String,
    /// Event time of the item (or receive time when the source has none).
    #[serde(with = "ts")]
    pub observed_at: DateTime<Utc>,
    /// Where it was fetched from.
    pub url: Option<String>,
    /// The mapped fields.
    pub data: serde_json::Map<String, serde_json::Value>,
    /// `altdata` or the source's provider label.
    pub provider: String,
    /// When we received it.
    #[serde(with = "ts")]
    pub received_at: DateTime<Utc>,
}

impl Record for AltDataRecord {
    const SCHEMA: &'static str = "altdata.record/v1";
    const TOPIC: TopicKind = TopicKind::AltDataRecords;

    fn key(&self) -> Cow<'_, str> {
        Cow::Owned(format!("{}:{}", self.source, self.id))
    }
    fn provider(&self) -> &str {
        &self.provider
    }
    fn event_time(&self) -> DateTime<Utc> {
        self.observed_at
    }
    fn received_at(&self) -> DateTime<Utc> {
        self.received_at
    }

    fn validate(&self) -> Result<(), ValidationError> {
        check::token("source", &self.source, 64)?;
        check::non_empty("id", &self.id)?;
        if self.id.len() > 256 {
            return Err(ValidationError::new("id", "longer than 256 bytes"));
        }
        check::event_time("observed_at", self.observed_at, self.received_at)?;
        if let Some(u) = &self.url {
            check::http_url("url", u)?;
        }
        check::non_empty("provider", &self.provider)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::testutil::t0;

    #[test]
    fn key_is_source_colon_id_and_validation_names_fields() {
        let mut r = AltDataRecord {
            source: "fed-rates".into(),
            id: "2024-01-02".into(),
            observed_at: t0(),
            url: None,
            data: serde_json::Map::new(),
            provider: "altdata".into(),
            received_at: t0(),
        };
        assert_eq!(r.key(), "fed-rates:2024-01-02");
        assert_eq!(r.validate(), Ok(()));
        r.source = "has space".into();
        assert_eq!(r.validate().unwrap_err().field, "source");
    }
}
