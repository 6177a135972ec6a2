//! Opening a spool (recovering what a previous process left) and writing the front segment
//! at shutdown.

use super::*;

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
