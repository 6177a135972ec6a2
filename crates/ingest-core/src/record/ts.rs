//! RFC 3339 UTC timestamps as they appear in our records: `2018-09-04T04:53:38.784Z`.
//!
//! The fraction is printed with 0, 3, 6 or 9 digits, whichever keeps the full precision of the
//! value (milliseconds from Polygon, nanoseconds from Alpaca). Formatting writes straight into
//! the serializer, with no intermediate `String`.

use std::fmt;

use chrono::{DateTime, Datelike, SecondsFormat, Timelike, Utc};
use serde::{Deserialize, Deserializer, Serializer};

/// `Display` of a UTC time in our record format.
#[derive(Debug, Clone, Copy)]
pub struct Rfc3339(pub DateTime<Utc>);

/// The longest form: `-262143-12-31T23:59:59.999999999Z` fits in 40 bytes.
pub(crate) const MAX_LEN: usize = 40;

/// Writes `t` into `buf` and returns the length. Hand-rolled because chrono's formatting
/// builds a `String` per call, and this runs for every record on the hot path.
pub(crate) fn format_into(t: DateTime<Utc>, buf: &mut [u8; MAX_LEN]) -> usize {
    fn put(buf: &mut [u8], at: &mut usize, v: u32, width: usize) {
        let mut v = v;
        for i in (0..width).rev() {
            buf[*at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
        *at += width;
    }
    let (date, time) = (t.date_naive(), t.time());
    let mut n = 0;
    let year = date.year();
    if !(0..=9999).contains(&year) {
        // Outside four digits: rare enough for the general formatter.
        let s = t.to_rfc3339_opts(SecondsFormat::AutoSi, true);
        let len = s.len().min(MAX_LEN);
        buf[..len].copy_from_slice(&s.as_bytes()[..len]);
        return len;
    }
    put(buf, &mut n, year.unsigned_abs(), 4);
    buf[n] = b'-';
    n += 1;
    put(buf, &mut n, date.month(), 2);
    buf[n] = b'-';
    n += 1;
    put(buf, &mut n, date.day(), 2);
    buf[n] = b'T';
    n += 1;
    put(buf, &mut n, time.hour(), 2);
    buf[n] = b':';
    n += 1;
    put(buf, &mut n, time.minute(), 2);
    buf[n] = b':';
    n += 1;
    // A leap second shows as :60 with chrono's nanosecond >= 1e9.
    let nanos = time.nanosecond();
    put(buf, &mut n, time.second() + nanos / 1_000_000_000, 2);
    let frac = nanos % 1_000_000_000;
    if frac != 0 {
        buf[n] = b'.';
        n += 1;
        let (digits, value) = if frac % 1_000_000 == 0 {
            (3, frac / 1_000_000)
        } else if frac % 1_000 == 0 {
            (6, frac / 1_000)
        } else {
            (9, frac)
        };
        put(buf, &mut n, value, digits);
    }
    buf[n] = b'Z';
    n + 1
}

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; MAX_LEN];
        let n = format_into(self.0, &mut buf);
        f.write_str(std::str::from_utf8(&buf[..n]).map_err(|_| fmt::Error)?)
    }
}

/// Formats into an owned string (for Kafka headers).
pub fn to_string(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// `#[serde(with = "ts")]`
pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    let mut buf = [0u8; MAX_LEN];
    let n = format_into(*t, &mut buf);
    s.serialize_str(std::str::from_utf8(&buf[..n]).map_err(serde::ser::Error::custom)?)
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
            Some(t) => super::serialize(t, s),
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
    use chrono::{TimeZone, Timelike};

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
    fn agrees_with_chrono_across_the_calendar() {
        // Every precision, leap days, year boundaries, the epoch, far dates.
        let mut t = Utc.timestamp_nanos(-2_208_988_800_000_000_000); // 1900-01-01
        let step = chrono::Duration::nanoseconds(7_919_999_999_937); // ~2.2 h, odd nanos
        for i in 0..200_000 {
            let ours = Rfc3339(t).to_string();
            assert_eq!(ours, to_string(t), "at {t:?}");
            t += step;
            if i % 3 == 0 {
                t = t.with_nanosecond((i % 1000) as u32 * 1_000_000).unwrap_or(t);
            }
        }
        for y in [1, 999, 2000, 9999] {
            let t = Utc.with_ymd_and_hms(y, 2, 28, 23, 59, 59).unwrap();
            assert_eq!(Rfc3339(t).to_string(), to_string(t));
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
