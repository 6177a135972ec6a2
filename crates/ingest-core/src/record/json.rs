//! The pieces of a hand-written JSON writer, each producing exactly the bytes serde_json's
//! compact serializer produces for the same value, so a record written by hand and one written
//! through `Serialize` are indistinguishable (`market.rs` tests that as a property). Numbers go
//! through serde_json's own `CompactFormatter`; string escaping is private to serde_json, so it
//! is repeated here. What the hand-written writer saves is the serializer's per-field state
//! machine and the escaping of field names (written pre-escaped).

use chrono::{DateTime, Utc};
use serde_json::ser::{CompactFormatter, Formatter};

use super::ts;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// A JSON string, escaped as serde_json does: `"`, `\` and the C0 controls, with the short
/// forms `\b \t \n \f \r` and `\u00XX` (lower-case hex) for the others; everything else,
/// including non-ASCII, is copied as is.
pub(crate) fn string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            0x08 => b'b',
            b'\t' => b't',
            b'\n' => b'n',
            0x0c => b'f',
            b'\r' => b'r',
            0x00..=0x1f => b'u',
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if short == b'u' {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.push(b'\\');
            out.push(short);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// A number as serde_json writes an `f64`: shortest round-trip form, `null` when not finite.
pub(crate) fn number(out: &mut Vec<u8>, v: f64) {
    if v.is_finite() {
        // Writing into a Vec cannot fail.
        let _ = CompactFormatter.write_f64(out, v);
    } else {
        out.extend_from_slice(b"null");
    }
}

/// `number`, or `null` for `None`.
pub(crate) fn opt_number(out: &mut Vec<u8>, v: Option<f64>) {
    match v {
        Some(v) => number(out, v),
        None => out.extend_from_slice(b"null"),
    }
}

/// An unsigned integer.
pub(crate) fn unsigned(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// A time in the record format ([`ts`]), quoted. Its characters never need escaping.
pub(crate) fn time(out: &mut Vec<u8>, t: DateTime<Utc>) {
    let mut buf = [0u8; ts::MAX_LEN];
    let n = ts::format_into(t, &mut buf);
    out.push(b'"');
    out.extend_from_slice(&buf[..n]);
    out.push(b'"');
}
