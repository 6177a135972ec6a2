//! Record headers and serialization buffers, without a heap allocation per record.

use std::cell::RefCell;
use std::fmt::{self, Write as _};

use chrono::{DateTime, Utc};
use rdkafka::message::{Header, OwnedHeaders};

use super::Sink;
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

impl Sink {
    /// A record's headers (docs/contracts.md): `schema` and, when the route has one,
    /// `conn_epoch`; with `times` (event time, received at: given only for `kafka.headers: full`)
    /// the seed's full set.
    pub(super) fn headers<'a>(
        &'a self,
        schema: &'a str,
        provider: &'a str,
        times: Option<&'a (StackStr, StackStr)>,
        conn_epoch: Option<&'a StackStr>,
    ) -> Headers<'a> {
        let mut h = Headers { items: [("", b""); 7], len: 0 };
        if let Some((event_time, received_at)) = times {
            h.push("producer", self.inner.producer_name.as_bytes());
            h.push("provider", provider.as_bytes());
            h.push("schema", schema.as_bytes());
            h.push("content-type", b"application/json");
            h.push("event_time", event_time.as_bytes());
            h.push("received_at", received_at.as_bytes());
        } else {
            h.push("schema", schema.as_bytes());
        }
        if let Some(epoch) = conn_epoch {
            h.push("conn_epoch", epoch.as_bytes());
        }
        h
    }
}
