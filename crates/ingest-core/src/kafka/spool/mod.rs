//! The outage spool: where records go once librdkafka's bounded memory queue is full (Kafka
//! down, or slower than the sources), so that a Kafka outage costs disk space, not data.
//!
//! Layout of `<dir>`:
//! - `LOCK`: held (`flock`) by the one process that owns the spool.
//! - `<id>.seg`: segments, appended in order. Each starts with [`MAGIC`], then records framed as
//!   `[u32 body length][u32 CRC-32 of body][body]` (little endian). A body is
//!   `[i64 spooled-at ms][u16 n][topic][u16 n][provider][u32 n][key][u8 count]
//!   {[u8 n][header name][u32 n][header value]}*[payload]`.
//! - `cursor`: `[u64 segment][u64 offset][u32 CRC-32]`, the position before which every record
//!   was acknowledged by Kafka (or counted as failed). Replaced atomically (write + rename).
//! - `front.seg`: records a stopping process took back from librdkafka's memory queue (Kafka
//!   away at shutdown), sent before everything else. It starts with [`FRONT_MAGIC`] and
//!   `[u64 segment][u64 offset][u32 CRC-32]`, the position in the ordinary segments where reading
//!   resumes after it (the records it holds that were taken from the segments come before it);
//!   then frames as above. While it is being sent the cursor points into it (segment 0); before
//!   it is deleted the cursor is set to the resume position, so a cursor at or past that
//!   position means it was sent, and one before it (the process died between writing the front
//!   and moving the cursor) means it was not.
//! - `session`: `pid heartbeat_ms oldest_unacknowledged_ms clean`, rewritten every ~500 ms. A
//!   process that finds `clean` 0 knows its predecessor died (SIGKILL, OOM, power): the records
//!   that one held only in memory since `oldest_unacknowledged_ms` may be lost, and streaming
//!   sources publish that window as a gap.
//!
//! Every append is written to the file at once (a crashed process loses nothing written);
//! `fsync` decides what a crashed *machine* may lose. Reading starts at the cursor, so a record
//! handed to Kafka but not acknowledged when the process died is sent again (at-least-once
//! across a crash; never lost). The spool is FIFO: once a record is spooled, every later one is
//! too until the spool is drained, which keeps per-key (and global) order.

use std::collections::{HashSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::telemetry::Metrics;

mod files;
mod format;
mod recovery;
mod types;

use self::files::{read_cursor, read_front, read_session, sync_dir, write_cursor, write_session};
use self::format::{decode, decode_pos, encode, encode_pos, frame_at, now_ms, seg_start, segment_path};
pub(crate) use self::types::{Append, Entry, Next, Rescued, Spooled};
pub use self::types::{Fsync, Overflow, Recovered, SpoolSettings, UncleanStop};

/// First bytes of every segment file.
pub const MAGIC: &[u8; 8] = b"FSSPOOL1";
const SEG_START: u64 = MAGIC.len() as u64;
/// First bytes of the front segment (see the module docs).
pub const FRONT_MAGIC: &[u8; 8] = b"FSFRONT1";
/// The front segment's id: before every ordinary segment (their ids start at 1).
const FRONT: u64 = 0;
const FRONT_START: u64 = (FRONT_MAGIC.len() + POS_BYTES) as u64;
/// A position (`cursor`, the front's resume position): `[u64 segment][u64 offset][u32 CRC-32]`.
const POS_BYTES: usize = 20;
const FRAME: usize = 8;
/// Largest record body accepted (a larger length field means corruption).
pub const MAX_RECORD_BYTES: usize = 64 << 20;
const READ_CHUNK: usize = 256 << 10;
/// Sequence numbers travel in this many bits of the delivery opaque.
pub(crate) const SEQ_BITS: u32 = 40;
const SEQ_MASK: u64 = (1 << SEQ_BITS) - 1;

/// Maps a (topic, provider) pair to the sink's route index.
pub(crate) type Resolve = Box<dyn Fn(&str, &str) -> usize + Send + Sync>;

#[derive(Debug)]
struct Segment {
    id: u64,
    len: u64,
    unread: u64,
    by_route: Vec<(usize, u64)>,
}

impl Segment {
    fn count(&mut self, route: usize, delta: i64) {
        match self.by_route.iter_mut().find(|(r, _)| *r == route) {
            Some((_, n)) => *n = n.saturating_add_signed(delta),
            None if delta > 0 => self.by_route.push((route, delta.unsigned_abs())),
            None => {}
        }
    }
}

#[derive(Debug, Default)]
struct Reader {
    seg: u64,
    off: u64,
    file: Option<(u64, File)>,
    buf: Vec<u8>,
    buf_at: u64,
}

impl Reader {
    fn move_to(&mut self, seg: u64) {
        self.seg = seg;
        self.off = seg_start(seg);
        self.file = None;
        self.buf.clear();
    }

    /// `n` bytes at `at` of segment `seg` (of length `len`), through a read-ahead buffer.
    fn bytes(&mut self, dir: &Path, seg: u64, len: u64, at: u64, n: usize) -> io::Result<&[u8]> {
        if self.file.as_ref().is_none_or(|(id, _)| *id != seg) {
            self.file = Some((seg, File::open(segment_path(dir, seg))?));
            self.buf.clear();
        }
        let have = at >= self.buf_at && at + n as u64 <= self.buf_at + self.buf.len() as u64;
        if !have {
            let (_, f) = self.file.as_ref().ok_or_else(|| io::Error::other("segment not open"))?;
            let want = usize::try_from((len - at).min(n.max(READ_CHUNK) as u64)).unwrap_or(n);
            self.buf.resize(want, 0);
            f.read_exact_at(&mut self.buf, at)?;
            self.buf_at = at;
        }
        let from = usize::try_from(at - self.buf_at).unwrap_or(0);
        Ok(&self.buf[from..from + n])
    }
}

#[derive(Debug)]
struct State {
    spooling: bool,
    closed: bool,
    segments: VecDeque<Segment>,
    /// Appends go to `segments.back()` through this file, once one was opened by this process.
    writer: Option<File>,
    next_id: u64,
    bytes: u64,
    unread: u64,
    reader: Reader,
    /// With a front segment: where reading resumes in the ordinary segments after it.
    resume: Option<(u64, u64)>,
    scratch: Vec<u8>,
    dirty: bool,
    last_sync: Instant,
}

impl State {
    /// Moves the reader to the start of `seg` (or to the resume position, after a front).
    fn move_reader(&mut self, seg: u64) {
        self.reader.move_to(seg);
        if let Some((rs, ro)) = self.resume
            && rs == seg
        {
            self.reader.off = ro.max(SEG_START);
        }
    }

    fn caught_up(&self) -> bool {
        self.segments.iter().all(|s| s.id < self.reader.seg || (s.id == self.reader.seg && self.reader.off >= s.len))
    }
}

#[derive(Debug, Default)]
struct Slot {
    seg: u64,
    end: u64,
    ts_ms: i64,
    handed_us: u64,
    settled: bool,
}

#[derive(Debug, Default)]
struct Inflight {
    base: u64,
    ring: VecDeque<Slot>,
    durable: (u64, u64),
    dirty: bool,
}

/// The spool of one producer process. See the module docs.
pub(crate) struct Spool {
    settings: SpoolSettings,
    state: Mutex<State>,
    wake: Condvar,
    inflight: Mutex<Inflight>,
    spooling: AtomicBool,
    closed: AtomicBool,
    resolve: Resolve,
    metrics: Metrics,
    _lock: File,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool").field("dir", &self.settings.dir).finish_non_exhaustive()
    }
}

impl Spool {
    /// The spool's directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.settings.dir
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn ring(&self) -> MutexGuard<'_, Inflight> {
        self.inflight.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// True while records go to the spool (from the first full queue until it is drained).
    pub(crate) fn is_spooling(&self) -> bool {
        self.spooling.load(Ordering::Acquire)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Appends `e` (for route `route`). With `only_if_spooling`, writes only if the spool is
    /// in use (the caller then sends straight to Kafka); without, starts spooling.
    pub(crate) fn append(&self, route: usize, e: &Entry<'_>, only_if_spooling: bool) -> Append {
        let mut st = self.lock();
        if only_if_spooling && !st.spooling {
            return Append::NotSpooling;
        }
        if st.closed {
            return Append::Full;
        }
        let mut scratch = std::mem::take(&mut st.scratch);
        let out = self.append_locked(&mut st, route, e, &mut scratch);
        st.scratch = scratch;
        if matches!(out, Append::Written { .. }) {
            if !st.spooling {
                st.spooling = true;
                self.spooling.store(true, Ordering::Release);
                tracing::warn!(dir = %self.settings.dir.display(), "Kafka's queue is full: spooling records to disk until it drains");
            }
            self.metrics.spool_written.inc();
            self.publish_gauges(&st);
            self.wake.notify_one();
        }
        out
    }

    fn append_locked(&self, st: &mut State, route: usize, e: &Entry<'_>, buf: &mut Vec<u8>) -> Append {
        if encode(e, buf).is_none() || buf.len() as u64 + SEG_START > self.settings.segment_bytes {
            return Append::TooLarge;
        }
        let need = buf.len() as u64;
        let mut dropped = Vec::new();
        let fresh_segment =
            st.writer.is_none() || st.segments.back().is_none_or(|s| s.len + need > self.settings.segment_bytes);
        let need_total = need + if fresh_segment { SEG_START } else { 0 };
        while st.bytes + need_total > self.settings.max_bytes {
            // The front (records a stopping process took back from memory) is never dropped:
            // it is bounded by librdkafka's queue, and the cursor may point into it.
            let first = usize::from(st.segments.front().is_some_and(|s| s.id == FRONT));
            let droppable = st.segments.len() > first + usize::from(st.writer.is_some());
            if self.settings.overflow == Overflow::Block || !droppable {
                self.metrics.spool_full.inc();
                return Append::Full;
            }
            let Some(seg) = st.segments.remove(first) else { return Append::Full };
            let _ = fs::remove_file(segment_path(&self.settings.dir, seg.id));
            st.bytes -= seg.len;
            st.unread = st.unread.saturating_sub(seg.unread);
            self.metrics.spool_dropped.inc_by(seg.unread);
            dropped.extend(seg.by_route.iter().copied().filter(|(_, n)| *n > 0));
            if st.reader.seg != FRONT && st.reader.seg <= seg.id {
                let next = st.segments.iter().find(|s| s.id != FRONT).map_or(st.next_id, |s| s.id);
                st.move_reader(next);
            }
            tracing::warn!(
                segment = seg.id,
                records = seg.unread,
                "spool full: dropped its oldest segment (counted as failed, reason spool_overflow)"
            );
        }
        if fresh_segment && let Err(e) = self.rotate(st) {
            self.io_failed("opening a new spool segment", &e);
            return Append::Full;
        }
        let Some(w) = st.writer.as_mut() else { return Append::Full };
        if let Err(e) = w.write_all(buf).and_then(|()| match self.settings.fsync {
            Fsync::Always => w.sync_data(),
            _ => Ok(()),
        }) {
            // Cut a partial write off so the segment stays readable.
            let len = st.segments.back().map_or(SEG_START, |s| s.len);
            if let Some(w) = st.writer.as_ref() {
                let _ = w.set_len(len);
            }
            self.io_failed("writing to the spool", &e);
            return Append::Full;
        }
        st.dirty = true;
        st.bytes += need;
        st.unread += 1;
        if let Some(seg) = st.segments.back_mut() {
            seg.len += need;
            seg.unread += 1;
            seg.count(route, 1);
        }
        Append::Written { dropped }
    }

    fn io_failed(&self, what: &str, e: &io::Error) {
        self.metrics.spool_errors.inc();
        tracing::error!(dir = %self.settings.dir.display(), error = %e, "{what} failed; the source waits");
    }

    /// Seals the segment being written (if any) and starts a new one.
    fn rotate(&self, st: &mut State) -> io::Result<()> {
        if let Some(w) = st.writer.take()
            && self.settings.fsync != Fsync::Never
        {
            w.sync_data()?;
        }
        let id = st.next_id;
        let path = segment_path(&self.settings.dir, id);
        let mut f = OpenOptions::new().create_new(true).append(true).open(&path)?;
        f.write_all(MAGIC)?;
        if self.settings.fsync != Fsync::Never {
            sync_dir(&self.settings.dir)?;
        }
        st.next_id += 1;
        st.bytes += SEG_START;
        st.segments.push_back(Segment { id, len: SEG_START, unread: 0, by_route: Vec::new() });
        st.writer = Some(f);
        Ok(())
    }

    /// The next record to send, in spool order. Waits up to `wait` for one; when the spool is
    /// drained, records go straight to Kafka again.
    pub(crate) fn next(&self, wait: Duration) -> Next {
        let mut st = self.lock();
        loop {
            if st.closed {
                return Next::Closed;
            }
            match self.take(&mut st) {
                Ok(Some(r)) => {
                    self.publish_gauges(&st);
                    return Next::Record(Box::new(r));
                }
                Ok(None) => {}
                Err(e) => {
                    self.io_failed("reading the spool", &e);
                    drop(st);
                    crate::blocking::sleep(wait);
                    return Next::Idle;
                }
            }
            if st.spooling && st.caught_up() {
                st.spooling = false;
                self.spooling.store(false, Ordering::Release);
                self.publish_gauges(&st);
                tracing::info!("spool drained: records go straight to Kafka again");
            }
            let (guard, timeout) = self.wake.wait_timeout(st, wait).unwrap_or_else(PoisonError::into_inner);
            st = guard;
            if timeout.timed_out() {
                return if st.closed { Next::Closed } else { Next::Idle };
            }
        }
    }

    fn take(&self, st: &mut State) -> io::Result<Option<Spooled>> {
        let dir = &self.settings.dir;
        loop {
            let rs = st.reader.seg;
            let Some(idx) = st.segments.iter().position(|s| s.id >= rs) else { return Ok(None) };
            let (id, len, is_last) = {
                let s = &st.segments[idx];
                (s.id, s.len, idx + 1 == st.segments.len())
            };
            if id != rs {
                st.move_reader(id);
            }
            let at = st.reader.off;
            if at >= len {
                if is_last {
                    return Ok(None);
                }
                let next = st.segments[idx + 1].id;
                st.move_reader(next);
                continue;
            }
            let Some((n, crc)) = frame_at(&mut st.reader, dir, id, len, at)? else {
                // Unreadable from here on (the file changed under us): skip the rest.
                self.metrics.spool_corrupt.inc();
                st.reader.off = len;
                self.skip(id, len);
                continue;
            };
            let end = at + (FRAME + n) as u64;
            st.reader.off = end;
            let body = st.reader.bytes(dir, id, len, at + FRAME as u64, n)?;
            let decoded = if crc32fast::hash(body) == crc { decode(body) } else { None };
            let Some(b) = decoded else {
                self.metrics.spool_corrupt.inc();
                tracing::error!(segment = id, offset = at, "spool record failed its checksum; skipped and counted");
                st.unread = st.unread.saturating_sub(1);
                if let Some(s) = st.segments.get_mut(idx) {
                    s.unread = s.unread.saturating_sub(1);
                }
                self.skip(id, end);
                continue;
            };
            let route = (self.resolve)(b.topic, b.provider);
            let rec = Spooled {
                route,
                ts_ms: b.ts_ms,
                topic: b.topic.to_string(),
                key: b.key.to_vec(),
                headers: b.headers.iter().map(|(k, v)| ((*k).to_string(), v.to_vec())).collect(),
                payload: b.payload.to_vec(),
                seg: id,
                start: at,
                end,
            };
            st.unread = st.unread.saturating_sub(1);
            if let Some(s) = st.segments.get_mut(idx) {
                s.unread = s.unread.saturating_sub(1);
                s.count(route, -1);
            }
            return Ok(Some(rec));
        }
    }

    /// Marks a position as settled without a record (a skipped corrupt one), so the cursor can
    /// pass it.
    fn skip(&self, seg: u64, end: u64) {
        let seq = self.begin(seg, end, now_ms());
        self.settle(seq);
    }

    /// Registers a record taken by the drainer as in flight; returns its sequence number for
    /// the delivery opaque.
    pub(crate) fn begin(&self, seg: u64, end: u64, ts_ms: i64) -> u64 {
        self.begin_at(seg, end, ts_ms, 0)
    }

    /// As [`Spool::begin`] for a record handed to librdkafka at `handed_us` (µs since the
    /// sink started), which orders it among the others if it is taken back at shutdown.
    pub(crate) fn begin_at(&self, seg: u64, end: u64, ts_ms: i64, handed_us: u64) -> u64 {
        let mut r = self.ring();
        r.ring.push_back(Slot { seg, end, ts_ms, handed_us, settled: false });
        r.base + r.ring.len() as u64 - 1
    }

    /// Gives back `rec` (registered as `seq`, the last one begun) that the drainer took but
    /// never handed to librdkafka, because the spool closed while librdkafka's queue was full:
    /// the reader moves back before it, so it stays unsent rather than in flight.
    pub(crate) fn untake(&self, rec: &Spooled, seq: u64) {
        let mut st = self.lock();
        {
            let mut r = self.ring();
            let last = (r.base + r.ring.len() as u64).wrapping_sub(1) & SEQ_MASK;
            if last != seq & SEQ_MASK || r.ring.back().is_none_or(|s| s.settled) {
                return;
            }
            r.ring.pop_back();
        }
        st.move_reader(rec.seg);
        st.reader.off = rec.start;
        st.unread += 1;
        if let Some(seg) = st.segments.iter_mut().find(|s| s.id == rec.seg) {
            seg.unread += 1;
            seg.count(rec.route, 1);
        }
        self.publish_gauges(&st);
    }

    /// When in-flight record `seq` was spooled (ms) and handed to librdkafka (µs).
    pub(crate) fn slot_times(&self, seq: u64) -> Option<(i64, u64)> {
        let r = self.ring();
        let idx = (seq.wrapping_sub(r.base) & SEQ_MASK) as usize;
        r.ring.get(idx).map(|s| (s.ts_ms, s.handed_us))
    }

    /// Marks in-flight record `seq` (low 40 bits suffice) acknowledged or failed; returns when
    /// it was spooled. The cursor advances over the settled prefix.
    pub(crate) fn settle(&self, seq: u64) -> Option<i64> {
        let mut r = self.ring();
        let idx = (seq.wrapping_sub(r.base) & SEQ_MASK) as usize;
        let slot = r.ring.get_mut(idx)?;
        slot.settled = true;
        let ts = slot.ts_ms;
        while r.ring.front().is_some_and(|s| s.settled) {
            let Some(s) = r.ring.pop_front() else { break };
            r.base += 1;
            r.durable = (s.seg, s.end);
            r.dirty = true;
        }
        Some(ts)
    }

    /// Spooled records handed to Kafka's client and not yet settled.
    pub(crate) fn in_flight(&self) -> usize {
        self.ring().ring.iter().filter(|s| !s.settled).count()
    }

    /// Records on disk not yet handed to Kafka's client.
    pub(crate) fn unread(&self) -> u64 {
        self.lock().unread
    }

    /// True when every spooled record was handed to Kafka's client.
    pub(crate) fn drained(&self) -> bool {
        self.lock().caught_up()
    }

    fn publish_gauges(&self, st: &State) {
        self.metrics.spool_bytes.set(i64::try_from(st.bytes).unwrap_or(i64::MAX));
        self.metrics.spool_records.set(i64::try_from(st.unread).unwrap_or(i64::MAX));
        self.metrics.spool_active.set(i64::from(st.spooling));
    }

    /// Stops the drainer, saves the cursor and syncs what was written. Records left are sent by
    /// the next process that opens this spool.
    pub(crate) fn close(&self) {
        {
            let mut st = self.lock();
            st.closed = true;
            self.closed.store(true, Ordering::Release);
            if let Some(Err(e)) = st.writer.as_ref().map(File::sync_data) {
                self.io_failed("syncing the spool", &e);
            }
        }
        self.wake.notify_all();
        self.checkpoint();
        if let Err(e) = write_session(&self.settings.dir, None, true) {
            self.io_failed("writing the spool's session file", &e);
        }
    }
}

#[cfg(test)]
mod tests;
