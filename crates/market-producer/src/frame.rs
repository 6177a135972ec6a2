//! Iterating the elements of a JSON-array frame without allocating.
//!
//! Polygon and Alpaca send every server message as a JSON array of events. Each element is
//! handed over as a borrowed `&RawValue`, so one malformed element can be dead-lettered on its
//! own while the others go through.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde_json::value::RawValue;

struct Each<F>(F);

impl<'de, F: FnMut(&'de RawValue)> Visitor<'de> for Each<F> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array of events")
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        while let Some(el) = seq.next_element::<&'de RawValue>()? {
            (self.0)(el);
        }
        Ok(())
    }
}

impl<'de, F: FnMut(&'de RawValue)> DeserializeSeed<'de> for Each<F> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

/// Calls `f` for each element of the JSON array `frame`. An error means the frame as a whole is
/// not a JSON array (elements before the fault were already handed to `f`).
pub(crate) fn for_each_element<'de>(frame: &'de str, f: impl FnMut(&'de RawValue)) -> Result<(), serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(frame);
    Each(f).deserialize(&mut de)?;
    de.end()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yields_each_element_raw() {
        let mut got = Vec::new();
        for_each_element(r#"[{"ev":"T"}, {"ev":"Q","x":[1,2]} ,3]"#, |e| got.push(e.get().to_string())).unwrap();
        assert_eq!(got, [r#"{"ev":"T"}"#, r#"{"ev":"Q","x":[1,2]}"#, "3"]);
    }

    #[test]
    fn refuses_non_arrays_and_trailing_garbage() {
        assert!(for_each_element(r#"{"ev":"T"}"#, |_| {}).is_err());
        assert!(for_each_element("[1] x", |_| {}).is_err());
        assert!(for_each_element("", |_| {}).is_err());
        let mut n = 0;
        assert!(for_each_element("[1,2,", |_| n += 1).is_err());
        assert_eq!(n, 2, "elements before the fault were seen");
    }
}
