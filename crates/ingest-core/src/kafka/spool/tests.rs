use std::sync::{Arc, Mutex};

use super::*;

const SEG: u64 = 64 << 10;

fn settings(dir: &Path, max_bytes: u64, overflow: Overflow) -> SpoolSettings {
    SpoolSettings {
        dir: dir.to_path_buf(),
        max_bytes,
        segment_bytes: SEG,
        fsync: Fsync::Never,
        overflow,
        engage_after: Duration::ZERO,
    }
}

/// Routes seen by a test resolver: (topic, provider) by index.
type Routes = Arc<Mutex<Vec<(String, String)>>>;

/// A resolver over a shared route list, as the sink's route table.
fn resolver() -> (Resolve, Routes) {
    let routes = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
    let r = routes.clone();
    let resolve: Resolve = Box::new(move |t: &str, p: &str| {
        let mut v = r.lock().unwrap_or_else(PoisonError::into_inner);
        v.iter().position(|(a, b)| a == t && b == p).unwrap_or_else(|| {
            v.push((t.to_string(), p.to_string()));
            v.len() - 1
        })
    });
    (resolve, routes)
}

fn open(s: &SpoolSettings) -> (Spool, Recovered) {
    Spool::open(s.clone(), Metrics::new("t", "0"), resolver().0).expect("open spool")
}

fn payload(i: u64) -> Vec<u8> {
    format!(r#"{{"seq":{i},"pad":"{}"}}"#, "x".repeat((i % 300) as usize)).into_bytes()
}

fn append(s: &Spool, route: usize, topic: &str, i: u64) -> Append {
    let key = format!("k{}", i % 7);
    let p = payload(i);
    let seq = i.to_string();
    let headers: [(&str, &[u8]); 2] = [("provider", b"polygon"), ("seq", seq.as_bytes())];
    let e = Entry {
        ts_ms: 1_700_000_000_000 + i as i64,
        topic,
        provider: "polygon",
        key: key.as_bytes(),
        headers: &headers,
        payload: &p,
    };
    s.append(route, &e, false)
}

/// Takes every readable record, settling each (as acknowledged deliveries would).
fn drain_all(s: &Spool) -> Vec<u64> {
    let mut seen = Vec::new();
    while let Next::Record(r) = s.next(Duration::from_millis(1)) {
        let seq = s.begin(r.seg, r.end, r.ts_ms);
        seen.push(seq_of(&r));
        s.settle(seq);
    }
    seen
}

/// The next record, which the test knows is there.
fn next_record(s: &Spool) -> Box<Spooled> {
    match s.next(Duration::from_millis(1)) {
        Next::Record(r) => r,
        other => panic!("expected a record, got {other:?}"),
    }
}

fn seq_of(r: &Spooled) -> u64 {
    let v: serde_json::Value = serde_json::from_slice(&r.payload).expect("payload is the JSON written");
    v["seq"].as_u64().expect("seq")
}

#[test]
fn records_come_back_in_order_with_every_field_and_the_spool_then_hands_over() {
    let dir = tempfile::tempdir().unwrap();
    let (s, rec) = open(&settings(dir.path(), 1 << 20, Overflow::Block));
    assert_eq!(rec, Recovered::default());
    assert!(!s.is_spooling());
    assert!(matches!(
        s.append(0, &Entry { ts_ms: 5, topic: "t", provider: "p", key: b"", headers: &[], payload: b"" }, true),
        Append::NotSpooling
    ));
    for i in 0..2000 {
        assert!(matches!(append(&s, 0, "market.ticks.raw", i), Append::Written { .. }));
    }
    assert!(s.is_spooling());
    let first = next_record(&s);
    assert_eq!(first.topic, "market.ticks.raw");
    assert_eq!(first.key, b"k0");
    assert_eq!(first.ts_ms, 1_700_000_000_000);
    assert_eq!(first.payload, payload(0));
    assert_eq!(first.headers, vec![("provider".to_string(), b"polygon".to_vec()), ("seq".to_string(), b"0".to_vec())]);
    let seq = s.begin(first.seg, first.end, first.ts_ms);
    s.settle(seq);
    let rest = drain_all(&s);
    assert_eq!(rest, (1..2000).collect::<Vec<_>>());
    // Drained: the next call hands over to direct sending.
    assert!(matches!(s.next(Duration::from_millis(1)), Next::Idle));
    assert!(!s.is_spooling());
    // Settled segments are deleted at the checkpoint, except the one being written.
    s.checkpoint();
    let files = fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "seg"))
        .count();
    assert_eq!(files, 1, "only the active segment is kept");
    assert!(s.metrics.spool_bytes.get() < SEG as i64);
    assert_eq!(s.metrics.spool_records.get(), 0);
    assert_eq!(s.metrics.spool_written.get(), 2000);
}

#[test]
fn a_crashed_process_leaves_unacknowledged_records_for_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let st = settings(dir.path(), 4 << 20, Overflow::Block);
    {
        let (s, _) = open(&st);
        for i in 0..1000 {
            append(&s, 0, "t", i);
        }
        // 600 taken; 500 acknowledged, but the 100th and the last 100 taken are not.
        let mut taken = Vec::new();
        for _ in 0..600 {
            let r = next_record(&s);
            taken.push(s.begin(r.seg, r.end, r.ts_ms));
        }
        for (i, seq) in taken.iter().enumerate() {
            if i < 500 && i != 99 {
                s.settle(*seq);
            }
        }
        s.checkpoint();
        // Dropped without close: as a SIGKILL would.
    }
    let (s, rec) = open(&st);
    // The cursor stops before the first unacknowledged record (index 99): nothing lost, the
    // acknowledged records after it are sent again (at-least-once across a crash).
    assert_eq!(rec.records, 901, "{rec:?}");
    assert_eq!(rec.corrupt, 0);
    assert!(s.is_spooling(), "recovered records are sent before new ones");
    append(&s, 0, "t", 1000);
    assert_eq!(drain_all(&s), (99..=1000).collect::<Vec<_>>());
}

#[test]
fn a_torn_tail_is_cut_off_and_counted_and_a_bad_checksum_skips_one_record() {
    let dir = tempfile::tempdir().unwrap();
    let st = settings(dir.path(), 4 << 20, Overflow::Block);
    let seg_path = {
        let (s, _) = open(&st);
        for i in 0..10 {
            append(&s, 0, "t", i);
        }
        segment_path(dir.path(), s.lock().segments[0].id)
    };
    // A record half written when the machine died, and a flipped bit in record 3's payload.
    let mut bytes = fs::read(&seg_path).unwrap();
    let good_len = bytes.len();
    let mut frame = Vec::new();
    encode(&Entry { ts_ms: 1, topic: "t", provider: "p", key: b"k", headers: &[], payload: &payload(99) }, &mut frame);
    bytes.extend_from_slice(&frame[..frame.len() / 2]);
    let mut at = SEG_START as usize;
    for _ in 0..3 {
        at += FRAME + u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    }
    let last = at + FRAME + u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize - 1;
    bytes[last] ^= 0x20;
    fs::write(&seg_path, &bytes).unwrap();

    let metrics = Metrics::new("t", "0");
    let (s, rec) = Spool::open(st.clone(), metrics.clone(), resolver().0).unwrap();
    assert_eq!(rec.corrupt, 1, "the torn tail");
    assert_eq!(fs::metadata(&seg_path).unwrap().len(), good_len as u64, "cut back to the last whole record");
    append(&s, 0, "t", 10);
    assert_eq!(drain_all(&s), vec![0, 1, 2, 4, 5, 6, 7, 8, 9, 10]);
    assert_eq!(metrics.spool_corrupt.get(), 2, "torn tail + bad checksum");
}

#[test]
fn drop_oldest_counts_every_dropped_record_exactly_per_route() {
    let dir = tempfile::tempdir().unwrap();
    let (resolve, routes) = resolver();
    let metrics = Metrics::new("t", "0");
    let (s, _) = Spool::open(settings(dir.path(), 4 * SEG, Overflow::DropOldest), metrics.clone(), resolve).unwrap();
    let mut dropped = [0u64; 2];
    let n = 6000;
    for i in 0..n {
        let route = (i % 2) as usize;
        match append(&s, route, if route == 0 { "a" } else { "b" }, i) {
            Append::Written { dropped: d } => d.iter().for_each(|(r, k)| dropped[*r] += k),
            other => panic!("drop-oldest never refuses: {other:?}"),
        }
    }
    assert!(s.metrics.spool_bytes.get() as u64 <= 4 * SEG);
    let kept = drain_all(&s);
    let total: u64 = dropped.iter().sum();
    assert!(total > 0, "the bound was reached");
    assert_eq!(total + kept.len() as u64, n, "appended = delivered + dropped, exactly");
    assert_eq!(metrics.spool_dropped.get(), total);
    // The oldest went: what is left is the newest, contiguous and in order.
    assert_eq!(kept, (total..n).collect::<Vec<_>>());
    let per_route_kept =
        [kept.iter().filter(|i| *i % 2 == 0).count() as u64, kept.iter().filter(|i| *i % 2 == 1).count() as u64];
    assert_eq!(dropped[0] + per_route_kept[0], n / 2);
    assert_eq!(dropped[1] + per_route_kept[1], n / 2);
    drop(routes);
}

#[test]
fn block_refuses_when_full_and_takes_again_once_acknowledged_segments_are_freed() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Metrics::new("t", "0");
    let (s, _) = Spool::open(settings(dir.path(), 2 * SEG, Overflow::Block), metrics.clone(), resolver().0).unwrap();
    let mut written = 0;
    while let Append::Written { dropped } = append(&s, 0, "t", written) {
        assert!(dropped.is_empty());
        written += 1;
    }
    assert!(matches!(append(&s, 0, "t", written), Append::Full));
    assert!(metrics.spool_full.get() >= 2);
    // Taken but unacknowledged: still on disk, still full.
    let mut taken = Vec::new();
    while let Next::Record(r) = s.next(Duration::from_millis(1)) {
        taken.push(s.begin(r.seg, r.end, r.ts_ms));
    }
    assert_eq!(taken.len() as u64, written);
    s.checkpoint();
    assert!(matches!(append(&s, 0, "t", written), Append::Full));
    for seq in taken {
        s.settle(seq);
    }
    s.checkpoint();
    assert!(matches!(append(&s, 0, "t", written), Append::Written { .. }));
}

#[test]
fn one_spool_directory_belongs_to_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let st = settings(dir.path(), 1 << 20, Overflow::Block);
    let (_held, _) = open(&st);
    let err = Spool::open(st, Metrics::new("t", "0"), resolver().0).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    assert!(err.to_string().contains("in use by another process"), "{err}");
}

#[test]
fn a_garbled_cursor_or_foreign_file_is_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let st = settings(dir.path(), 1 << 20, Overflow::Block);
    {
        let (s, _) = open(&st);
        for i in 0..5 {
            append(&s, 0, "t", i);
        }
    }
    fs::write(dir.path().join("cursor"), b"garbage").unwrap();
    fs::write(segment_path(dir.path(), 999), b"not a segment").unwrap();
    let (s, rec) = open(&st);
    assert_eq!((rec.records, rec.corrupt), (5, 1));
    assert_eq!(drain_all(&s), (0..5).collect::<Vec<_>>());
}

mod prop {
    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        Append(u8),
        Take,
        AckOldest,
        Checkpoint,
        Crash,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => any::<u8>().prop_map(Op::Append),
            4 => Just(Op::Take),
            3 => Just(Op::AckOldest),
            1 => Just(Op::Checkpoint),
            1 => Just(Op::Crash),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, rng_seed: proptest::test_runner::RngSeed::Fixed(7), ..ProptestConfig::default() })]

        /// Any interleaving of appends, takes, acknowledgements, checkpoints and crashes: every
        /// appended record is acknowledged at least once, first deliveries come in append order,
        /// and only records unacknowledged at a crash are sent again.
        #[test]
        fn nothing_is_lost_or_reordered_across_crashes(ops in proptest::collection::vec(op(), 1..400)) {
            let dir = tempfile::tempdir().unwrap();
            let st = SpoolSettings { segment_bytes: 1 << 16, ..settings(dir.path(), 1 << 30, Overflow::Block) };
            let mut spool = Some(open(&st).0);
            let mut next = 0u64;
            let mut in_flight: VecDeque<(u64, u64)> = VecDeque::new();
            let mut acked: Vec<u64> = Vec::new();
            let mut first_seen: Vec<u64> = Vec::new();
            let mut seen = std::collections::HashSet::new();
            for op in ops {
                let s = spool.as_ref().unwrap();
                match op {
                    Op::Append(size) => {
                        let p = vec![b'x'; size as usize * 8];
                        let seq_text = next.to_string();
                        let e = Entry { ts_ms: 0, topic: "t", provider: "p", key: seq_text.as_bytes(), headers: &[], payload: &p };
                        let written = matches!(s.append(0, &e, false), Append::Written { .. });
                        prop_assert!(written);
                        next += 1;
                    }
                    Op::Take => {
                        if let Next::Record(r) = s.next(Duration::from_millis(0)) {
                            let n: u64 = std::str::from_utf8(&r.key).unwrap().parse().unwrap();
                            if seen.insert(n) {
                                first_seen.push(n);
                            }
                            in_flight.push_back((s.begin(r.seg, r.end, 0), n));
                        }
                    }
                    Op::AckOldest => {
                        if let Some((seq, n)) = in_flight.pop_front() {
                            s.settle(seq);
                            acked.push(n);
                        }
                    }
                    Op::Checkpoint => s.checkpoint(),
                    Op::Crash => {
                        in_flight.clear();
                        drop(spool.take());
                        spool = Some(open(&st).0);
                    }
                }
            }
            // Finish: take and acknowledge everything left.
            let s = spool.as_ref().unwrap();
            for (seq, n) in in_flight.drain(..) {
                s.settle(seq);
                acked.push(n);
            }
            while let Next::Record(r) = s.next(Duration::from_millis(0)) {
                let n: u64 = std::str::from_utf8(&r.key).unwrap().parse().unwrap();
                if seen.insert(n) {
                    first_seen.push(n);
                }
                s.settle(s.begin(r.seg, r.end, 0));
                acked.push(n);
            }
            prop_assert_eq!(first_seen, (0..next).collect::<Vec<_>>());
            let mut all: Vec<u64> = acked.clone();
            all.sort_unstable();
            all.dedup();
            prop_assert_eq!(all, (0..next).collect::<Vec<_>>());
        }
    }
}

/// A record handed straight to librdkafka and taken back at shutdown.
fn direct(i: u64) -> Rescued {
    Rescued {
        route: 0,
        order: (i, 1),
        spooled_seq: None,
        ts_ms: 1_800_000_000_000,
        topic: "t".into(),
        provider: "polygon".into(),
        key: format!("k{}", i % 7).into_bytes(),
        headers: vec![("seq".into(), i.to_string().into_bytes())],
        payload: payload(i),
    }
}

/// A spooled record in flight (`seq` from `begin`) taken back at shutdown.
fn taken_back(r: &Spooled, seq: u64) -> Rescued {
    Rescued {
        route: r.route,
        order: (0, 0),
        spooled_seq: Some(seq),
        ts_ms: r.ts_ms,
        topic: r.topic.clone(),
        provider: "polygon".into(),
        key: r.key.clone(),
        headers: r.headers.clone(),
        payload: r.payload.clone(),
    }
}

/// A spool of records 0..1000 (several segments) of which 0..300 were taken, 0..250
/// acknowledged and 250..300 still in flight when the process stopped with 1000..1005 in
/// librdkafka's memory too; all of those taken back (directs first, as handed). Returns the
/// cursor file as it was before the rescue.
fn stopped_with_records_in_memory(st: &SpoolSettings) -> Vec<u8> {
    let (s, _) = open(st);
    for i in 0..1000 {
        append(&s, 0, "t", i);
    }
    let mut back: Vec<Rescued> = (1000..1005).map(direct).collect();
    for i in 0..300 {
        let r = next_record(&s);
        let seq = s.begin(r.seg, r.end, r.ts_ms);
        if i < 250 {
            s.settle(seq);
        } else {
            back.push(taken_back(&r, seq));
        }
    }
    s.close();
    let before = fs::read(st.dir.join("cursor")).unwrap();
    assert_eq!(s.rescue(&back).unwrap(), 55);
    assert_eq!((s.unread(), s.in_flight()), (55 + 700, 0));
    s.checkpoint();
    before
}

fn expected_after_rescue() -> Vec<u64> {
    (1000..1005).chain(250..1000).collect()
}

#[test]
fn records_taken_back_at_shutdown_go_first_and_the_segments_resume_after_them() {
    let dir = tempfile::tempdir().unwrap();
    let st = settings(dir.path(), 4 << 20, Overflow::Block);
    stopped_with_records_in_memory(&st);
    let (s, rec) = open(&st);
    assert_eq!((rec.records, rec.corrupt), (755, 0), "{rec:?}");
    assert!(s.is_spooling());
    append(&s, 0, "t", 5000);
    let mut want = expected_after_rescue();
    want.push(5000);
    assert_eq!(drain_all(&s), want);
    s.checkpoint();
    assert!(!dir.path().join("front.seg").exists(), "the front is deleted once sent");
    drop(s);
    let (s, rec) = open(&st);
    assert_eq!(rec.records, 0, "nothing is sent twice after a clean stop: {rec:?}");
    assert!(drain_all(&s).is_empty());
}

#[test]
fn a_crash_while_the_front_is_sent_or_after_resumes_exactly() {
    // Half of the front acknowledged, then SIGKILL.
    let dir = tempfile::tempdir().unwrap();
    let st = settings(dir.path(), 4 << 20, Overflow::Block);
    stopped_with_records_in_memory(&st);
    {
        let (s, _) = open(&st);
        for _ in 0..20 {
            let r = next_record(&s);
            s.settle(s.begin(r.seg, r.end, r.ts_ms));
        }
        s.checkpoint();
    }
    let (s, _) = open(&st);
    assert_eq!(drain_all(&s), expected_after_rescue()[20..]);
    drop(s);

    // The front and 10 ordinary records acknowledged, then SIGKILL; and the same with the front
    // file left behind (killed between moving the cursor and deleting it).
    let dir = tempfile::tempdir().unwrap();
    let st = settings(dir.path(), 4 << 20, Overflow::Block);
    stopped_with_records_in_memory(&st);
    let front = fs::read(dir.path().join("front.seg")).unwrap();
    {
        let (s, _) = open(&st);
        for _ in 0..65 {
            let r = next_record(&s);
            s.settle(s.begin(r.seg, r.end, r.ts_ms));
        }
        s.checkpoint();
        assert!(!dir.path().join("front.seg").exists());
    }
    fs::write(dir.path().join("front.seg"), &front).unwrap();
    let (s, rec) = open(&st);
    assert_eq!(rec.records, 690, "a front behind the cursor was sent: {rec:?}");
    assert_eq!(drain_all(&s), (310..1000).collect::<Vec<_>>());
}

#[test]
fn a_crash_before_the_cursor_moved_into_the_front_sends_it_first() {
    let dir = tempfile::tempdir().unwrap();
    let st = settings(dir.path(), 4 << 20, Overflow::Block);
    let before = stopped_with_records_in_memory(&st);
    // Killed after the front was renamed into place, before the cursor was written.
    fs::write(dir.path().join("cursor"), before).unwrap();
    let (s, rec) = open(&st);
    assert_eq!(rec.records, 755, "{rec:?}");
    assert_eq!(drain_all(&s), expected_after_rescue());
}

#[test]
fn a_second_stop_with_kafka_still_away_keeps_the_front_and_its_order() {
    let dir = tempfile::tempdir().unwrap();
    let st = settings(dir.path(), 4 << 20, Overflow::Block);
    stopped_with_records_in_memory(&st);
    {
        // The next process hands 12 front records to librdkafka, Kafka acknowledges 4, and it
        // stops with 8 in flight: they are taken back ahead of the front's unsent rest.
        let (s, _) = open(&st);
        let mut back = Vec::new();
        for i in 0..12 {
            let r = next_record(&s);
            let seq = s.begin(r.seg, r.end, r.ts_ms);
            if i < 4 {
                s.settle(seq);
            } else {
                back.push(taken_back(&r, seq));
            }
        }
        s.close();
        assert_eq!(s.rescue(&back).unwrap(), 8);
        assert_eq!(s.unread(), 755 - 4);
    }
    let (s, rec) = open(&st);
    assert_eq!(rec.records, 751, "{rec:?}");
    assert_eq!(drain_all(&s), expected_after_rescue()[4..]);
}

#[test]
fn a_rescue_missing_a_spooled_record_in_flight_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let st = settings(dir.path(), 4 << 20, Overflow::Block);
    {
        let (s, _) = open(&st);
        for i in 0..100 {
            append(&s, 0, "t", i);
        }
        for _ in 0..10 {
            let r = next_record(&s);
            s.begin(r.seg, r.end, r.ts_ms);
        }
        s.close();
        let err = s.rescue(&[direct(1000)]).unwrap_err();
        assert!(err.to_string().contains("10 spooled record(s) in flight"), "{err}");
        assert!(!dir.path().join("front.seg").exists());
    }
    let (s, _) = open(&st);
    assert_eq!(drain_all(&s), (0..100).collect::<Vec<_>>(), "in flight means sent again, from the cursor");
}

#[test]
fn a_record_taken_but_never_handed_over_is_given_back_unsent() {
    let dir = tempfile::tempdir().unwrap();
    let st = settings(dir.path(), 4 << 20, Overflow::Block);
    {
        let (s, _) = open(&st);
        for i in 0..10 {
            append(&s, 0, "t", i);
        }
        let r = next_record(&s);
        s.settle(s.begin(r.seg, r.end, r.ts_ms));
        let r = next_record(&s);
        let seq = s.begin(r.seg, r.end, r.ts_ms);
        s.close();
        s.untake(&r, seq);
        assert_eq!((s.unread(), s.in_flight()), (9, 0));
        // Nothing in flight, nothing taken back: a rescue of nothing is not an error.
        assert_eq!(s.rescue(&[]).unwrap(), 0);
    }
    let (s, rec) = open(&st);
    assert_eq!(rec.records, 9);
    assert_eq!(drain_all(&s), (1..10).collect::<Vec<_>>());
}
