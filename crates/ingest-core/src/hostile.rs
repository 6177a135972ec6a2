//! Entry points that run raw bytes through the real parsing code, for the fuzz targets in
//! `fuzz/` (libFuzzer) and the hostile-input property tests (`testkit::hostile_inputs`).
//! Each must return, whatever the bytes: an `Err`, a dead letter or records, never a panic,
//! never an allocation beyond the parser's own bounds.

use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::http::HttpResponse;
use crate::kafka::spool::{Fsync, Next, Overflow, Resolve, Spool, SpoolSettings};
use crate::source::Poller;
use crate::telemetry::Metrics;

/// HTTP statuses a fuzzed body is served with: mostly 200, and the error statuses each poller
/// classifies (rate limit, server error, auth).
pub const STATUSES: [u16; 8] = [200, 200, 200, 200, 429, 500, 401, 403];

/// Splits fuzzer input into (status, body): the first byte picks one of [`STATUSES`].
pub fn status_and_body(data: &[u8]) -> (u16, &[u8]) {
    match data.split_first() {
        Some((s, body)) => (STATUSES[*s as usize % STATUSES.len()], body),
        None => (200, data),
    }
}

/// Serves `body` with `status` to `poller`'s `normalize`, as the poll loop does after a fetch.
pub fn poll_body<P: Poller>(poller: &P, cursor: &P::Cursor, status: u16, body: &[u8]) {
    let resp = HttpResponse {
        status,
        headers: reqwest::header::HeaderMap::new(),
        body: body.to_vec().into(),
        received_at: chrono::Utc::now(),
    };
    let _ = poller.normalize(&resp, cursor);
}

/// Recovers a spool directory whose only segment holds `data` (after a valid header when the
/// first byte is even, so that the frame reader is reached; raw otherwise), as a producer does
/// at start after a crash; takes and acknowledges every record recovered, closes, and opens
/// again. Returns the records recovered. Panics if the second opening still finds records: a
/// settled spool must be empty.
pub fn spool_segment(dir: &Path, data: &[u8]) -> u64 {
    let settings = SpoolSettings {
        dir: dir.to_path_buf(),
        max_bytes: 1 << 30,
        segment_bytes: 64 << 20,
        fsync: Fsync::Never,
        overflow: Overflow::Block,
        engage_after: std::time::Duration::ZERO,
    };
    let _ = std::fs::remove_dir_all(dir);
    if std::fs::create_dir_all(dir).is_err() {
        return 0;
    }
    let mut file = Vec::with_capacity(data.len() + 8);
    if data.first().is_some_and(|b| b % 2 == 0) {
        file.extend_from_slice(crate::kafka::spool::MAGIC);
        file.extend_from_slice(&data[1..]);
    } else {
        file.extend_from_slice(data);
    }
    if std::fs::write(dir.join(format!("{:020}.seg", 1)), &file).is_err() {
        return 0;
    }
    let open = || {
        let routes = Mutex::new(Vec::<(String, String)>::new());
        let resolve: Resolve = Box::new(move |t: &str, p: &str| {
            let mut v = routes.lock().unwrap_or_else(PoisonError::into_inner);
            v.iter().position(|(a, b)| a == t && b == p).unwrap_or_else(|| {
                v.push((t.to_string(), p.to_string()));
                v.len() - 1
            })
        });
        Spool::open(settings.clone(), Metrics::new("fuzz", "0"), resolve)
    };
    let Ok((spool, first)) = open() else { return 0 };
    let mut taken = 0;
    while let Next::Record(r) = spool.next(Duration::ZERO) {
        let seq = spool.begin(r.seg, r.end, r.ts_ms);
        spool.settle(seq);
        taken += 1;
    }
    assert_eq!(taken, first.records, "every recovered record is taken");
    spool.close();
    drop(spool);
    if let Ok((_, again)) = open() {
        assert_eq!(again.records, 0, "a fully acknowledged spool recovers nothing");
    }
    first.records
}

#[cfg(all(test, feature = "testkit"))]
mod tests {
    fn seed() -> Vec<u8> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/seeds/spool_recovery/three_records.seg");
        std::fs::read(path).expect("the fuzz seed")
    }

    /// The fuzz seed is a valid segment (its first byte asks for the header): three records
    /// come back; a flipped payload byte fails its checksum and only that record is lost.
    #[test]
    fn the_spool_seed_recovers_and_a_bad_checksum_skips_one_record() {
        let dir = crate::testkit::unique_dir("hostile-spool");
        let mut seg = seed();
        assert_eq!(super::spool_segment(&dir, &seg), 3);
        let last = seg.len() - 2;
        seg[last] ^= 0x20;
        assert_eq!(super::spool_segment(&dir, &seg), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Mutated segments and random bytes: recovery never panics, and what it recovers is
    /// all taken and acknowledged.
    #[test]
    fn hostile_spool_segments_never_panic() {
        let dir = crate::testkit::unique_dir("hostile-spool");
        let tried = crate::testkit::hostile_inputs("spool recovery", &[seed()], 500, |b| {
            super::spool_segment(&dir, b);
        });
        assert_eq!(tried, 500);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
