//! RFC 3339 UTC timestamps as they appear in our records: `2018-09-04T04:53:38.784Z`.
//!
//! The fraction is printed with 0, 3, 6 or 9 digits, whichever keeps the full precision of the
//! value (milliseconds from Polygon, nanoseconds from Alpaca). Formatting writes straight into
//! the serializer, with no intermediate `String`.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serializer};

/// `Display` of a UTC time in our record format.
#[derive(Debug, Clone, Copy)]
pub struct Rfc3339(pub DateTime<Utc>);

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `%.f` picks 0/3/6/9 fractional digits as needed.
        write!(f, "{}", self.0.format("%Y-%m-%dT%H:%M:%S%.fZ"))
    }
}

/// Formats into an owned string (for Kafka headers).
pub fn to_string(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// `#[serde(with = "ts")]`
pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&Rfc3339(*t))
}

/// `#[serde(with = "ts")]`: any RFC 3339 offset, converted to UTC.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
    DateTime::parse_from_rfc3339(&s).map(|t| t.with_timezone(&Utc)).map_err(serde::de::Error::custom)
}

/// `#[serde(with = "ts::option")]`
pub mod option {
    use super::*;

    /// Serializes `None` as `null`.
    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.collect_str(&Rfc3339(*t)),
            None => s.serialize_none(),
        }
    }

    /// Accepts `null` or an RFC 3339 string.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        Option::<std::borrow::Cow<'de, str>>::deserialize(d)?
            .map(|s| DateTime::parse_from_rfc3339(&s).map(|t| t.with_timezone(&Utc)).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn keeps_provider_precision() {
        let cases = [
            (Utc.timestamp_millis_opt(1_536_036_818_784).unwrap(), "2018-09-04T04:53:38.784Z"),
            (Utc.timestamp_nanos(1_536_036_818_000_000_000), "2018-09-04T04:53:38Z"),
            (Utc.timestamp_nanos(1_641_547_200_123_456_789), "2022-01-07T09:20:00.123456789Z"),
            (Utc.timestamp_nanos(1_641_547_200_123_456_000), "2022-01-07T09:20:00.123456Z"),
        ];
        for (t, want) in cases {
            assert_eq!(Rfc3339(t).to_string(), want);
            assert_eq!(to_string(t), want);
        }
    }

    #[test]
    fn round_trips_through_json_and_normalizes_offsets() {
        #[derive(serde::Serialize, serde::Deserialize)]
        struct W(#[serde(with = "super")] DateTime<Utc>);
        let w: W = serde_json::from_str("\"2024-01-02T09:30:00.5-05:00\"").unwrap();
        assert_eq!(serde_json::to_string(&w).unwrap(), "\"2024-01-02T14:30:00.500Z\"");
    }
}
