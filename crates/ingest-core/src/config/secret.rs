//! A string that must never be printed: API keys, tokens, passwords.

use std::fmt;

use serde::{Deserialize, Deserializer};

/// A credential. `Debug` and `Display` print `***` (or `<empty>`), so a `Secret` can sit in any
/// config struct that gets logged. The value is reachable only through [`Secret::expose`], which
/// makes every place that sends a credential over the wire easy to find.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The credential itself. Only call this where it is put on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when no value was configured (absent or empty string).
    pub fn is_empty(&self) -> bool {
        self.0.trim().is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_empty() { "<empty>" } else { "***" })
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new("sk-live-123456");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{:?}", Some(&s)), "Some(***)");
        assert_eq!(s.expose(), "sk-live-123456");
        assert_eq!(format!("{}", Secret::default()), "<empty>");
    }

    #[test]
    fn whitespace_only_counts_as_empty() {
        assert!(Secret::new("  ").is_empty());
        assert!(!Secret::new("k").is_empty());
    }
}
