//! The spool's small files: `cursor` (and the checkpoint that moves it), `session` (and its
//! heartbeat), and the front segment's header.

use super::*;

pub(super) fn read_session(dir: &Path) -> Option<UncleanStop> {
    let text = fs::read_to_string(dir.join("session")).ok()?;
    let f: Vec<i64> = text.split_whitespace().map(str::parse).collect::<Result<_, _>>().ok()?;
    let [pid, heartbeat, oldest, clean] = f[..] else { return None };
    (clean == 0).then(|| UncleanStop {
        pid: u32::try_from(pid).unwrap_or(0),
        at_risk_since_ms: if oldest > 0 { oldest.min(heartbeat) } else { heartbeat },
    })
}

pub(super) fn write_session(dir: &Path, oldest_unacked_ms: Option<i64>, clean: bool) -> io::Result<()> {
    let tmp = dir.join("session.tmp");
    let line = format!("{} {} {} {}\n", std::process::id(), now_ms(), oldest_unacked_ms.unwrap_or(0), u8::from(clean));
    fs::write(&tmp, line)?;
    fs::rename(tmp, dir.join("session"))
}

/// The resume position of `front.seg`, if there is one. `Err` if it exists but its header is
/// unreadable.
pub(super) fn read_front(dir: &Path) -> io::Result<Option<(u64, u64)>> {
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

pub(super) fn read_cursor(dir: &Path) -> Option<(u64, u64)> {
    decode_pos(&fs::read(dir.join("cursor")).ok()?)
}

pub(super) fn write_cursor(dir: &Path, pos: (u64, u64), sync: bool) -> io::Result<()> {
    let tmp = dir.join("cursor.tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(&encode_pos(pos))?;
    if sync {
        f.sync_data()?;
    }
    fs::rename(tmp, dir.join("cursor"))
}

pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Spool {
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
}
