//! Record headers and serialization buffers, without a heap allocation per record.

use std::cell::RefCell;
use std::fmt::{self, Write as _};

use chrono::{DateTime, Utc};
use rdkafka::message::{Header, OwnedHeaders};

use crate::record::ts;

thread_local! {
    /// Serialization buffer, reused for every record sent from this thread.
    pub(super) static BUF: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(4096));
}

/// A short header value formatted on the stack (headers need bytes, not a `String`).
pub(super) struct StackStr {
    buf: [u8; 40],
    len: usize,
}

impl StackStr {
    pub(super) fn of(v: impl fmt::Display) -> Self {
        let mut s = StackStr { buf: [0; 40], len: 0 };
        let _ = write!(s, "{v}");
        s
    }
    pub(super) fn ts(t: DateTime<Utc>) -> Self {
        Self::of(ts::Rfc3339(t))
    }
    pub(super) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl fmt::Write for StackStr {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        self.buf.get_mut(self.len..end).ok_or(fmt::Error)?.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// The headers (docs/contracts.md, Records) of one record, borrowed (at most 7).
pub(super) struct Headers<'a> {
    pub(super) items: [(&'static str, &'a [u8]); 7],
    pub(super) len: usize,
}

impl<'a> Headers<'a> {
    pub(super) fn push(&mut self, key: &'static str, value: &'a [u8]) {
        self.items[self.len] = (key, value);
        self.len += 1;
    }

    pub(super) fn list(&self) -> &[(&'static str, &'a [u8])] {
        &self.items[..self.len]
    }

    pub(super) fn owned(&self) -> OwnedHeaders {
        self.list().iter().fold(OwnedHeaders::new_with_capacity(self.len), |h, (key, value)| {
            h.insert(Header { key, value: Some(*value) })
        })
    }
}
