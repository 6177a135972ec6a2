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

/// When appended records are forced to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// After every record (slowest; survives a power cut with nothing lost).
    Always,
    /// At most this long after a write (a machine crash loses at most this window).
    Interval(Duration),
    /// Left to the OS (a process crash still loses nothing; a machine crash may).
    Never,
}

/// What happens to a record when the spool is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// The source waits until there is room (nothing dropped; a WebSocket provider may then
    /// disconnect us, which is published as a gap).
    Block,
    /// The oldest segment is deleted and its unsent records counted as failed with reason
    /// `spool_overflow`, exactly.
    DropOldest,
}

/// Where and how much to spool.
#[derive(Debug, Clone)]
pub struct SpoolSettings {
    /// The spool's own directory (one per producer process).
    pub dir: PathBuf,
    /// Bound on the bytes of all segments.
    pub max_bytes: u64,
    /// A segment is closed and a new one started past this size.
    pub segment_bytes: u64,
    /// Durability policy.
    pub fsync: Fsync,
    /// Policy when full.
    pub overflow: Overflow,
}

/// A record to spool, borrowed from the sink.
#[derive(Debug)]
pub(crate) struct Entry<'a> {
    pub(crate) ts_ms: i64,
    pub(crate) topic: &'a str,
    pub(crate) provider: &'a str,
    pub(crate) key: &'a [u8],
    pub(crate) headers: &'a [(&'a str, &'a [u8])],
    pub(crate) payload: &'a [u8],
}

/// A record read back from the spool, and where it ends (for the cursor).
#[derive(Debug)]
pub(crate) struct Spooled {
    pub(crate) route: usize,
    pub(crate) ts_ms: i64,
    pub(crate) topic: String,
    pub(crate) key: Vec<u8>,
    pub(crate) headers: Vec<(String, Vec<u8>)>,
    pub(crate) payload: Vec<u8>,
    pub(crate) seg: u64,
    pub(crate) start: u64,
    pub(crate) end: u64,
}

/// A record taken back from librdkafka's memory queue at shutdown, for [`Spool::rescue`].
#[derive(Debug)]
pub(crate) struct Rescued {
    pub(crate) route: usize,
    /// When it was handed to librdkafka (µs since the sink started), then 0 if it was in flight
    /// to a broker and 1 if still queued: per partition, that is librdkafka's order.
    pub(crate) order: (u64, u8),
    /// Its sequence number if it was sent from the spool.
    pub(crate) spooled_seq: Option<u64>,
    pub(crate) ts_ms: i64,
    pub(crate) topic: String,
    pub(crate) provider: String,
    pub(crate) key: Vec<u8>,
    pub(crate) headers: Vec<(String, Vec<u8>)>,
    pub(crate) payload: Vec<u8>,
}

/// Outcome of [`Spool::append`].
#[derive(Debug)]
pub(crate) enum Append {
    /// Written; `dropped` lists `(route, records)` deleted to make room (drop-oldest).
    Written { dropped: Vec<(usize, u64)> },
    /// The spool is not in use and the caller asked to write only if it was.
    NotSpooling,
    /// No room (block policy), or the disk refused the write: try again later.
    Full,
    /// The record is larger than a segment: it can never be spooled.
    TooLarge,
}

/// What the drainer gets from [`Spool::next`].
#[derive(Debug)]
pub(crate) enum Next {
    Record(Box<Spooled>),
    Idle,
    Closed,
}

/// What [`Spool::open`] found on disk.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// Segment files kept.
    pub segments: usize,
    /// Records not yet acknowledged, to be sent.
    pub records: u64,
    /// Their bytes on disk.
    pub bytes: u64,
    /// Torn or unreadable tails cut off (a record being written when the machine crashed).
    pub corrupt: u64,
    /// Set when the previous process using this spool did not stop cleanly.
    pub unclean: Option<UncleanStop>,
}

/// What the previous process recorded before it died without a clean stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UncleanStop {
    /// Its process id.
    pub pid: u32,
    /// From when records it held only in memory (not yet acknowledged, not spooled) may be
    /// lost: its oldest unacknowledged record's hand-off time, or its last heartbeat if it held
    /// none (milliseconds since the Unix epoch).
    pub at_risk_since_ms: i64,
}

fn read_session(dir: &Path) -> Option<UncleanStop> {
    let text = fs::read_to_string(dir.join("session")).ok()?;
    let f: Vec<i64> = text.split_whitespace().map(str::parse).collect::<Result<_, _>>().ok()?;
    let [pid, heartbeat, oldest, clean] = f[..] else { return None };
    (clean == 0).then(|| UncleanStop {
        pid: u32::try_from(pid).unwrap_or(0),
        at_risk_since_ms: if oldest > 0 { oldest.min(heartbeat) } else { heartbeat },
    })
}

fn write_session(dir: &Path, oldest_unacked_ms: Option<i64>, clean: bool) -> io::Result<()> {
    let tmp = dir.join("session.tmp");
    let line = format!("{} {} {} {}\n", std::process::id(), now_ms(), oldest_unacked_ms.unwrap_or(0), u8::from(clean));
    fs::write(&tmp, line)?;
    fs::rename(tmp, dir.join("session"))
}

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

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    if id == FRONT { dir.join("front.seg") } else { dir.join(format!("{id:020}.seg")) }
}

fn seg_start(id: u64) -> u64 {
    if id == FRONT { FRONT_START } else { SEG_START }
}

/// The resume position of `front.seg`, if there is one. `Err` if it exists but its header is
/// unreadable.
fn read_front(dir: &Path) -> io::Result<Option<(u64, u64)>> {
    let mut f = match File::open(segment_path(dir, FRONT)) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut h = [0u8; FRONT_START as usize];
    io::Read::read_exact(&mut f, &mut h)?;
    let pos = (&h[..8] == FRONT_MAGIC).then(|| decode_pos(&h[8..])).flatten();
    pos.map(Some).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad front segment header"))
}

fn encode_pos((seg, off): (u64, u64)) -> [u8; POS_BYTES] {
    let mut b = [0u8; POS_BYTES];
    b[..8].copy_from_slice(&seg.to_le_bytes());
    b[8..16].copy_from_slice(&off.to_le_bytes());
    let crc = crc32fast::hash(&b[..16]);
    b[16..].copy_from_slice(&crc.to_le_bytes());
    b
}

/// The position encoded in `b` (exactly [`POS_BYTES`]), if its checksum holds.
fn decode_pos(b: &[u8]) -> Option<(u64, u64)> {
    let b: &[u8; POS_BYTES] = b.try_into().ok()?;
    let crc = u32::from_le_bytes(b[16..20].try_into().ok()?);
    (crc32fast::hash(&b[..16]) == crc)
        .then(|| Some((u64::from_le_bytes(b[..8].try_into().ok()?), u64::from_le_bytes(b[8..16].try_into().ok()?))))
        .flatten()
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Frames `e` into `out` (cleared first). `None` if a field exceeds its length prefix.
fn encode(e: &Entry<'_>, out: &mut Vec<u8>) -> Option<()> {
    out.clear();
    out.extend_from_slice(&[0; FRAME]);
    out.extend_from_slice(&e.ts_ms.to_le_bytes());
    for s in [e.topic, e.provider] {
        out.extend_from_slice(&u16::try_from(s.len()).ok()?.to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    out.extend_from_slice(&u32::try_from(e.key.len()).ok()?.to_le_bytes());
    out.extend_from_slice(e.key);
    out.push(u8::try_from(e.headers.len()).ok()?);
    for (k, v) in e.headers {
        out.push(u8::try_from(k.len()).ok()?);
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(&u32::try_from(v.len()).ok()?.to_le_bytes());
        out.extend_from_slice(v);
    }
    out.extend_from_slice(e.payload);
    let body_len = out.len() - FRAME;
    if body_len > MAX_RECORD_BYTES {
        return None;
    }
    let crc = crc32fast::hash(&out[FRAME..]);
    out[..4].copy_from_slice(&u32::try_from(body_len).ok()?.to_le_bytes());
    out[4..8].copy_from_slice(&crc.to_le_bytes());
    Some(())
}

/// A decoded body, borrowing from the read buffer.
struct Body<'a> {
    ts_ms: i64,
    topic: &'a str,
    provider: &'a str,
    key: &'a [u8],
    headers: Vec<(&'a str, &'a [u8])>,
    payload: &'a [u8],
}

fn decode(b: &[u8]) -> Option<Body<'_>> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (h, t) = (b.get(..n)?, b.get(n..)?);
        *b = t;
        Some(h)
    }
    fn num<const N: usize>(b: &mut &[u8]) -> Option<[u8; N]> {
        take(b, N)?.try_into().ok()
    }
    let mut b = b;
    let ts_ms = i64::from_le_bytes(num(&mut b)?);
    let n = u16::from_le_bytes(num(&mut b)?) as usize;
    let topic = std::str::from_utf8(take(&mut b, n)?).ok()?;
    let n = u16::from_le_bytes(num(&mut b)?) as usize;
    let provider = std::str::from_utf8(take(&mut b, n)?).ok()?;
    let n = u32::from_le_bytes(num(&mut b)?) as usize;
    let key = take(&mut b, n)?;
    let count = num::<1>(&mut b)?[0];
    let mut headers = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let n = num::<1>(&mut b)?[0] as usize;
        let k = std::str::from_utf8(take(&mut b, n)?).ok()?;
        let n = u32::from_le_bytes(num(&mut b)?) as usize;
        headers.push((k, take(&mut b, n)?));
    }
    Some(Body { ts_ms, topic, provider, key, headers, payload: b })
}

/// The frame at `at` of `seg` as (body length, CRC), if its length is sane and within `len`.
fn frame_at(r: &mut Reader, dir: &Path, seg: u64, len: u64, at: u64) -> io::Result<Option<(usize, u32)>> {
    if at + FRAME as u64 > len {
        return Ok(None);
    }
    let h = r.bytes(dir, seg, len, at, FRAME)?;
    let n = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
    let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    if n > MAX_RECORD_BYTES || at + (FRAME + n) as u64 > len {
        return Ok(None);
    }
    Ok(Some((n, crc)))
}

fn read_cursor(dir: &Path) -> Option<(u64, u64)> {
    decode_pos(&fs::read(dir.join("cursor")).ok()?)
}

fn write_cursor(dir: &Path, pos: (u64, u64), sync: bool) -> io::Result<()> {
    let tmp = dir.join("cursor.tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(&encode_pos(pos))?;
    if sync {
        f.sync_data()?;
    }
    fs::rename(tmp, dir.join("cursor"))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Spool {
    /// Opens (creating) the spool in `settings.dir`, takes its lock, and recovers what a
    /// previous process left: records after the cursor are queued for sending, a torn tail is
    /// cut off and counted.
    pub(crate) fn open(settings: SpoolSettings, metrics: Metrics, resolve: Resolve) -> io::Result<(Self, Recovered)> {
        let dir = settings.dir.clone();
        fs::create_dir_all(&dir)?;
        let lock = OpenOptions::new().create(true).truncate(false).write(true).open(dir.join("LOCK"))?;
        lock.try_lock().map_err(|e| match e {
            fs::TryLockError::WouldBlock => io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("the spool {} is in use by another process", dir.display()),
            ),
            fs::TryLockError::Error(e) => e,
        })?;
        let unclean = read_session(&dir);
        write_session(&dir, None, false)?;
        let cursor = read_cursor(&dir);
        let mut rec = Recovered { unclean, ..Recovered::default() };
        let front = read_front(&dir).unwrap_or_else(|e| {
            tracing::error!(dir = %dir.display(), error = %e, "the spool's front segment is unreadable; deleted");
            rec.corrupt += 1;
            let _ = fs::remove_file(segment_path(&dir, FRONT));
            None
        });
        // Where the front (if any) is read from, and where the ordinary segments are.
        let (front_from, (cur_seg, cur_off)) = match (front, cursor) {
            (None, c) => (None, c.unwrap_or((0, 0))),
            (Some(resume), Some((FRONT, off))) => (Some(off.max(FRONT_START)), resume),
            (Some(resume), Some(c)) if c >= resume => {
                // Sent completely; the process stopped before deleting it.
                fs::remove_file(segment_path(&dir, FRONT))?;
                (None, c)
            }
            (Some(resume), _) => (Some(FRONT_START), resume),
        };
        let mut ids: Vec<u64> = fs::read_dir(&dir)?
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".seg")?.parse().ok())
            .collect();
        ids.sort_unstable();
        let mut segments = VecDeque::new();
        let mut reader = Reader::default();
        let mut scratch = Reader::default();
        let last = ids.last().copied();
        if front_from.is_some() {
            ids.insert(0, FRONT);
        }
        for &id in &ids {
            let path = segment_path(&dir, id);
            if id != FRONT && id < cur_seg {
                fs::remove_file(&path)?;
                continue;
            }
            let file_len = fs::metadata(&path)?.len();
            let mut magic = [0u8; 8];
            let want = if id == FRONT { FRONT_MAGIC } else { MAGIC };
            let ok_magic =
                file_len >= SEG_START && File::open(&path)?.read_exact_at(&mut magic, 0).is_ok() && &magic == want;
            if !ok_magic {
                tracing::error!(segment = %path.display(), "not a spool segment (bad header); deleted");
                rec.corrupt += 1;
                fs::remove_file(&path)?;
                continue;
            }
            let start = match front_from {
                Some(from) if id == FRONT => from,
                _ if id == cur_seg => cur_off.max(SEG_START),
                _ => SEG_START,
            };
            let mut seg = Segment { id, len: file_len, unread: 0, by_route: Vec::new() };
            let mut at = start;
            while at < file_len {
                let Some((n, crc)) = frame_at(&mut scratch, &dir, id, file_len, at)? else {
                    // A frame cut short or a garbled length: the tail cannot be read.
                    rec.corrupt += 1;
                    tracing::warn!(segment = %path.display(), offset = at, dropped_bytes = file_len - at, "spool segment has a torn or unreadable tail; cut off");
                    if Some(id) == last && id != FRONT {
                        OpenOptions::new().write(true).open(&path)?.set_len(at)?;
                    }
                    seg.len = at;
                    break;
                };
                let body = scratch.bytes(&dir, id, file_len, at + FRAME as u64, n)?;
                if crc32fast::hash(body) == crc
                    && let Some(b) = decode(body)
                {
                    let route = resolve(b.topic, b.provider);
                    seg.count(route, 1);
                    seg.unread += 1;
                }
                at += (FRAME + n) as u64;
            }
            if segments.is_empty() {
                reader.move_to(id);
                reader.off = start.min(seg.len);
            }
            rec.segments += 1;
            rec.records += seg.unread;
            rec.bytes += seg.len;
            segments.push_back(seg);
        }
        let next_id = ids.last().map_or(cur_seg.max(1), |l| l + 1).max(cur_seg + 1);
        if segments.is_empty() {
            reader.move_to(next_id);
        }
        metrics.spool_corrupt.inc_by(rec.corrupt);
        let st = State {
            spooling: rec.records > 0,
            closed: false,
            segments,
            writer: None,
            next_id,
            bytes: rec.bytes,
            unread: rec.records,
            reader,
            resume: front_from.map(|_| (cur_seg, cur_off)),
            scratch: Vec::with_capacity(4096),
            dirty: false,
            last_sync: Instant::now(),
        };
        let spool = Self {
            spooling: AtomicBool::new(st.spooling),
            state: Mutex::new(st),
            wake: Condvar::new(),
            inflight: Mutex::new(Inflight {
                durable: front_from.map_or((cur_seg, cur_off), |from| (FRONT, from)),
                ..Inflight::default()
            }),
            closed: AtomicBool::new(false),
            resolve,
            metrics,
            settings,
            _lock: lock,
        };
        spool.publish_gauges(&spool.lock());
        Ok((spool, rec))
    }

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

    /// Persists the cursor, deletes segments whose records are all settled, applies the fsync
    /// interval and refreshes the gauges. The drainer calls it every ~100 ms.
    pub(crate) fn checkpoint(&self) {
        let (durable, dirty, oldest) = {
            let mut r = self.ring();
            let d = std::mem::take(&mut r.dirty);
            (r.durable, d, r.ring.front().map(|s| s.ts_ms))
        };
        let sync = self.settings.fsync != Fsync::Never;
        if dirty && let Err(e) = write_cursor(&self.settings.dir, durable, sync) {
            self.io_failed("saving the spool cursor", &e);
            self.ring().dirty = true;
        }
        let mut st = self.lock();
        let writing = st.writer.is_some();
        while st.segments.len() > usize::from(writing) {
            let Some(front) = st.segments.front() else { break };
            let settled = front.id < durable.0 || (front.id == durable.0 && durable.1 >= front.len);
            let read = st.reader.seg > front.id || (st.reader.seg == front.id && st.reader.off >= front.len);
            if !(settled && read) {
                break;
            }
            if front.id == FRONT
                && let Some(resume) = st.resume
            {
                // The cursor leaves the front for where the segments resume, before the front
                // goes: a cursor at or past that position says it was sent.
                let mut r = self.ring();
                if r.durable.0 == FRONT {
                    if let Err(e) = write_cursor(&self.settings.dir, resume, sync) {
                        self.io_failed("saving the spool cursor", &e);
                        break;
                    }
                    r.durable = resume;
                }
            }
            let Some(seg) = st.segments.pop_front() else { break };
            let _ = fs::remove_file(segment_path(&self.settings.dir, seg.id));
            st.bytes -= seg.len;
            if seg.id == FRONT {
                st.resume = None;
            }
        }
        if let Fsync::Interval(every) = self.settings.fsync
            && st.dirty
            && st.last_sync.elapsed() >= every
        {
            if let Some(Err(e)) = st.writer.as_ref().map(File::sync_data) {
                self.io_failed("syncing the spool", &e);
            }
            st.dirty = false;
            st.last_sync = Instant::now();
        }
        let age = oldest.map_or(0.0, |ts| (now_ms() - ts).max(0) as f64 / 1000.0);
        self.metrics.spool_oldest_age.set(if st.unread == 0 && oldest.is_none() { 0.0 } else { age });
        self.publish_gauges(&st);
    }

    /// Records that the process is alive and, if it holds records only in memory, since when
    /// (the oldest unacknowledged one not in the spool).
    pub(crate) fn heartbeat(&self, oldest_unacked_ms: Option<i64>) {
        if let Err(e) = write_session(&self.settings.dir, oldest_unacked_ms, false) {
            self.io_failed("writing the spool's session file", &e);
        }
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

    /// After [`Spool::close`]: writes `records`, taken back from librdkafka's memory queue and
    /// sorted in the order they were handed to it, to the front segment, so the next process
    /// sends them before everything else (the spool is FIFO, and these came first). Every
    /// spooled record in flight must be among them (the check fails otherwise): the front takes
    /// their place, and reading resumes after the last one handed over. An existing front's
    /// unsent tail is kept after them. Returns the records written.
    ///
    /// Crash safety: the new front is written and synced under a temporary name, then renamed;
    /// the cursor then moves into it. Dying before the rename leaves the previous state; between
    /// the rename and the cursor, the next process sees a cursor before the front's resume
    /// position and sends the front first. Replacing an older front moves the cursor to its
    /// start first, so dying in between sends that front's acknowledged part twice, not never.
    pub(crate) fn rescue(&self, records: &[Rescued]) -> io::Result<u64> {
        let mut st = self.lock();
        let mut ring = self.ring();
        let taken: HashSet<u64> = records.iter().filter_map(|r| r.spooled_seq).collect();
        let base = ring.base;
        let missing = ring
            .ring
            .iter()
            .enumerate()
            .filter(|(i, slot)| !slot.settled && !taken.contains(&((base + *i as u64) & SEQ_MASK)))
            .count();
        if missing > 0 {
            return Err(io::Error::other(format!(
                "{missing} spooled record(s) in flight were not taken back from Kafka's client"
            )));
        }
        if records.is_empty() {
            return Ok(0);
        }
        let dir = self.settings.dir.clone();
        let in_front = st.reader.seg == FRONT;
        let resume =
            if in_front { st.resume.unwrap_or((st.next_id, SEG_START)) } else { (st.reader.seg, st.reader.off) };
        let mut out = Vec::with_capacity(64 << 10);
        out.extend_from_slice(FRONT_MAGIC);
        out.extend_from_slice(&encode_pos(resume));
        let mut frame = Vec::with_capacity(4096);
        let mut tally = Segment { id: FRONT, len: 0, unread: 0, by_route: Vec::new() };
        for r in records {
            let headers: Vec<(&str, &[u8])> = r.headers.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
            let e = Entry {
                ts_ms: r.ts_ms,
                topic: &r.topic,
                provider: &r.provider,
                key: &r.key,
                headers: &headers,
                payload: &r.payload,
            };
            if encode(&e, &mut frame).is_none() {
                return Err(io::Error::other("a record taken back from Kafka's client cannot be framed"));
            }
            out.extend_from_slice(&frame);
            tally.unread += 1;
            tally.count(r.route, 1);
        }
        let old_front = st.segments.front().filter(|s| s.id == FRONT).map(|s| (s.len, s.unread, s.by_route.clone()));
        if let Some((len, unread, by_route)) = old_front.as_ref().filter(|_| in_front) {
            // The old front's unsent tail follows (its in-flight part is among `records`).
            let from = st.reader.off.min(*len);
            let mut tail = vec![0u8; usize::try_from(len - from).unwrap_or(0)];
            File::open(segment_path(&dir, FRONT))?.read_exact_at(&mut tail, from)?;
            out.extend_from_slice(&tail);
            tally.unread += unread;
            for (route, n) in by_route {
                tally.count(*route, i64::try_from(*n).unwrap_or(i64::MAX));
            }
        }
        let tmp = dir.join("front.tmp");
        let mut f = File::create(&tmp)?;
        f.write_all(&out)?;
        f.sync_data()?;
        drop(f);
        if old_front.is_some() {
            write_cursor(&dir, (FRONT, FRONT_START), true)?;
        }
        fs::rename(&tmp, segment_path(&dir, FRONT))?;
        sync_dir(&dir)?;
        write_cursor(&dir, (FRONT, FRONT_START), true)?;
        // The in-memory state follows, for what the sink reports and a later checkpoint.
        tally.len = out.len() as u64;
        let written = records.len() as u64;
        if let Some((len, unread, _)) = old_front {
            st.bytes = st.bytes.saturating_sub(len);
            st.unread = st.unread.saturating_sub(unread);
            st.segments.pop_front();
        }
        st.bytes += tally.len;
        st.unread += tally.unread;
        st.segments.push_front(tally);
        st.resume = Some(resume);
        st.reader.move_to(FRONT);
        ring.ring.clear();
        ring.durable = (FRONT, FRONT_START);
        ring.dirty = false;
        self.metrics.spool_written.inc_by(written);
        self.publish_gauges(&st);
        Ok(written)
    }
}

#[cfg(test)]
mod tests;
