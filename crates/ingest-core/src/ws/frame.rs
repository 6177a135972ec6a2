//! Splitting a JSON-array frame into its elements without allocating.
//!
//! Polygon and Alpaca send every server message as a JSON array of events. One scan finds the
//! elements' boundaries (aware of strings and escapes, checking the array's own punctuation);
//! each element's text is handed over as is and parsed by serde, which validates it. So one
//! malformed element is dead-lettered on its own while the others go through, and nothing is
//! allocated (serde_json's own raw-value pass allocates a scratch buffer per frame).

use std::fmt;

/// The frame is not a JSON array of values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError {
    /// Byte offset of the fault.
    pub at: usize,
    /// What was wrong.
    pub what: &'static str,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.what, self.at)
    }
}

impl std::error::Error for FrameError {}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\n' | b'\r' | b'\t') {
        i += 1;
    }
    i
}

/// The end (exclusive) of the value starting at `i`: nested arrays and objects are followed
/// to their matching bracket, strings to their closing quote; a scalar ends at `,`, `]` or
/// whitespace.
fn value_end(b: &[u8], start: usize) -> Result<usize, FrameError> {
    let err = |at, what| FrameError { at, what };
    let mut i = start;
    let mut depth = 0usize;
    let mut in_str = false;
    while i < b.len() {
        let c = b[i];
        if in_str {
            match c {
                b'\\' => i += 1,
                b'"' => {
                    in_str = false;
                    if depth == 0 {
                        return Ok(i + 1);
                    }
                }
                _ => {}
            }
        } else {
            match c {
                b'"' => in_str = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' if depth == 0 => return Ok(i),
                b'}' | b']' => {
                    depth -= 1;
                    if depth == 0 {
                        return Ok(i + 1);
                    }
                }
                b',' | b' ' | b'\n' | b'\r' | b'\t' if depth == 0 => return Ok(i),
                _ => {}
            }
        }
        i += 1;
    }
    Err(err(b.len(), if in_str { "unterminated string" } else { "unterminated value" }))
}

/// Calls `f` with the text of each element of the JSON array `frame`, in order. An error
/// means the frame as a whole is not a JSON array (elements before the fault were handed over).
pub fn for_each_element<'a>(frame: &'a str, mut f: impl FnMut(&'a str)) -> Result<(), FrameError> {
    let b = frame.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'[') {
        return Err(FrameError { at: i, what: "expected `[`" });
    }
    i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b']') {
        return trailing(b, i + 1);
    }
    loop {
        let end = value_end(b, i)?;
        if end == i {
            return Err(FrameError { at: i, what: "expected a value" });
        }
        f(&frame[i..end]);
        i = skip_ws(b, end);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b']') => return trailing(b, i + 1),
            _ => return Err(FrameError { at: i, what: "expected `,` or `]`" }),
        }
    }
}

fn trailing(b: &[u8], i: usize) -> Result<(), FrameError> {
    let i = skip_ws(b, i);
    if i == b.len() { Ok(()) } else { Err(FrameError { at: i, what: "trailing characters after the array" }) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elements(frame: &str) -> Result<Vec<&str>, FrameError> {
        let mut got = Vec::new();
        for_each_element(frame, |e| got.push(e)).map(|()| got)
    }

    #[test]
    fn yields_each_element_as_written() {
        assert_eq!(
            elements(r#"[{"ev":"T"}, {"ev":"Q","x":[1,2]} ,3, "a]\"b", [[]], true]"#).unwrap(),
            [r#"{"ev":"T"}"#, r#"{"ev":"Q","x":[1,2]}"#, "3", r#""a]\"b""#, "[[]]", "true"]
        );
        assert_eq!(elements(" [ ] ").unwrap(), Vec::<&str>::new());
        assert_eq!(elements(r#"[{"s":"}{]["}]"#).unwrap(), [r#"{"s":"}{]["}"#]);
    }

    #[test]
    fn refuses_what_is_not_an_array() {
        for bad in [r#"{"ev":"T"}"#, "[1] x", "", "[1,2,", "[1 2]", "[,1]", r#"["abc"#, "[{]"] {
            assert!(elements(bad).is_err(), "{bad}");
        }
        let mut n = 0;
        assert!(for_each_element("[1,2,", |_| n += 1).is_err());
        assert_eq!(n, 2, "elements before the fault were seen");
    }

    #[test]
    fn agrees_with_serde_json_on_valid_frames() {
        let frames = [
            r#"[{"ev":"T","sym":"MSFT","c":[0,12],"p":114.125},{"ev":"Q","i":[604],"m":"x\\\"y"}]"#,
            r#"[1, -2.5e3, null, false, "x", {"a":{"b":[{"c":"]"}]}}]"#,
        ];
        for f in frames {
            let ours: Vec<serde_json::Value> =
                elements(f).unwrap().iter().map(|e| serde_json::from_str(e).unwrap()).collect();
            let theirs: Vec<serde_json::Value> = serde_json::from_str(f).unwrap();
            assert_eq!(ours, theirs);
        }
    }
}
