//! Small helpers the providers' normalizers share.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use ingest_core::record::{MarketTick, TickType};

/// A tick of `provider` for `symbol` (borrowed from the frame unless it was escaped), every optional field empty.
pub(crate) fn tick<'a>(
    provider: &'static str,
    symbol: Cow<'a, str>,
    event_type: TickType,
    timestamp: DateTime<Utc>,
    received_at: DateTime<Utc>,
) -> MarketTick<'a> {
    MarketTick::new(symbol, event_type, timestamp, Cow::Borrowed(provider), received_at)
}

/// A required field: its value or "missing `field`".
pub(crate) fn req<T>(v: Option<T>, field: &'static str) -> Result<T, String> {
    v.ok_or_else(|| format!("missing `{field}`"))
}

/// A JSON string field of a wire type: borrowed from the frame when the text has no escapes
/// (no allocation, the common case), owned when it does (`"sym":"\u00c4PFEL"` is the same
/// string as `"sym":"ÄPFEL"` and must normalize the same).
///
/// serde's `#[serde(borrow)]` on `Option<Cow<str>>` still always allocates (only a bare
/// `Cow<str>` field borrows), and a bare `&str` refuses escaped text; this type does both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Text<'a>(pub(crate) Cow<'a, str>);

impl<'a> Text<'a> {
    /// The string, borrowed from the frame when it was.
    pub(crate) fn into_cow(self) -> Cow<'a, str> {
        self.0
    }
}

impl std::fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::ops::Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> serde::Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod text_tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct M<'a> {
        #[serde(borrow)]
        sym: Option<Text<'a>>,
    }

    #[test]
    fn borrows_plain_text_and_owns_escaped_text() {
        let plain: M<'_> = serde_json::from_str(r#"{"sym":"ÄPFEL"}"#).expect("plain");
        assert!(matches!(plain.sym.as_ref().map(|t| &t.0), Some(Cow::Borrowed("ÄPFEL"))));
        let escaped: M<'_> = serde_json::from_str(r#"{"sym":"\u00c4PFEL"}"#).expect("escaped");
        assert!(matches!(escaped.sym.as_ref().map(|t| &t.0), Some(Cow::Owned(s)) if s == "ÄPFEL"));
        assert!(serde_json::from_str::<M<'_>>(r#"{"sym":5}"#).is_err());
    }
}
