//! Parse + normalize + serialize of realistic Polygon frames: the production hot path
//! (`market_producer::polygon::elements`, then the record serialized as the sink does), without
//! Kafka. Reports ticks/s on one core and heap allocations per tick (counting allocator).
//!
//! `cargo bench -p market-producer --bench pipeline` (part of `make bench`).

#![allow(unsafe_code, reason = "a counting global allocator for the allocations-per-tick figure")]
#![allow(clippy::unwrap_used, reason = "benchmark setup")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use criterion::{Criterion, Throughput};
use ingest_core::record::Record;
use market_producer::book::QuoteBook;
use market_producer::polygon::{Element, elements};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
/// Bytes allocated and not yet freed, and the most of that seen since the last reset.
static LIVE: AtomicU64 = AtomicU64::new(0);
static PEAK: AtomicU64 = AtomicU64::new(0);

fn grew(by: usize) {
    let now = LIVE.fetch_add(by as u64, Ordering::Relaxed) + by as u64;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: forwards every call to the system allocator unchanged; only counts allocations.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        grew(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        grew(new_size);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Frames as Polygon sends them in a busy session: 10 events each, trades and quotes mixed
/// (3 trades : 1 quote), 50 symbols, full field sets.
fn frames(count: usize) -> (Vec<String>, usize) {
    let symbols: Vec<String> = (0..50).map(|i| format!("SYM{i:02}")).collect();
    let mut seq = 0u64;
    let mut events = 0;
    let frames = (0..count)
        .map(|f| {
            let evs: Vec<String> = (0..10)
                .map(|e| {
                    seq += 1;
                    events += 1;
                    let sym = &symbols[(f * 10 + e) % symbols.len()];
                    let t = 1_704_205_800_000u64 + seq;
                    if e % 4 == 3 {
                        format!(r#"{{"ev":"Q","sym":"{sym}","bx":12,"bp":185.63,"bs":3,"ax":11,"ap":185.65,"as":2,"c":0,"i":[604],"t":{t},"q":{seq},"z":3}}"#)
                    } else {
                        format!(r#"{{"ev":"T","sym":"{sym}","x":12,"i":"52983525029461","z":3,"p":185.64,"s":100,"c":[14,41],"t":{t},"q":{seq}}}"#)
                    }
                })
                .collect();
            format!("[{}]", evs.join(","))
        })
        .collect();
    (frames, events)
}

/// Runs the hot path over `frames` once; returns the ticks produced.
fn run(frames: &[String], book: &mut QuoteBook, buf: &mut Vec<u8>) -> usize {
    let received_at = Utc.timestamp_millis_opt(1_704_205_800_500).unwrap();
    let mut ticks = 0;
    for f in frames {
        elements(f, received_at, book, |e| {
            if let Element::Tick(tick, _) = e {
                buf.clear();
                tick.write_json(buf).unwrap();
                ticks += 1;
            }
        })
        .unwrap();
        black_box(&buf);
    }
    ticks
}

/// One all-symbol minute-bar frame (`AM.*`) of at least `bytes` bytes, as Polygon sends each
/// minute.
fn minute_bars_frame(bytes: usize) -> String {
    let mut out = String::with_capacity(bytes + 256);
    out.push('[');
    let mut i = 0u32;
    while out.len() < bytes {
        if i > 0 {
            out.push(',');
        }
        let o = 10.0 + f64::from(i % 5000) / 100.0;
        out.push_str(&format!(
            r#"{{"ev":"AM","sym":"T{i:06}","v":{v},"av":{av},"op":{o:.4},"vw":{o:.4},"o":{o:.4},"c":{o:.4},"h":{o:.4},"l":{o:.4},"a":{o:.4},"z":{z},"s":1704205800000,"e":1704205860000}}"#,
            v = 1000 + i,
            av = 9_470_157 + i,
            z = 100 + i % 50
        ));
        i += 1;
    }
    out.push(']');
    out
}

/// Memory of one maximal frame: the frame is held once (the WebSocket layer's message buffer,
/// up to the limit), and normalizing it allocates only the quote book's growth and the output
/// buffer. Prints the frame size, its bars, and the peak heap beyond the frame itself.
fn frame_memory() {
    println!();
    println!(
        "| frame (Polygon AM.*, all symbols) | bytes | bars | peak heap while normalizing, beyond the frame | allocations per bar |"
    );
    println!("|---|---|---|---|---|");
    for (label, bytes) in
        [("2.5 MB, a busy minute", 2_500_000usize), ("16 MiB, the polygon default limit", 16 * 1024 * 1024)]
    {
        let frame = minute_bars_frame(bytes);
        let mut book = QuoteBook::new(10_000);
        let mut buf = Vec::with_capacity(1024);
        let base = LIVE.load(Ordering::Relaxed);
        PEAK.store(base, Ordering::Relaxed);
        let allocs = ALLOCATIONS.load(Ordering::Relaxed);
        let bars = run(std::slice::from_ref(&frame), &mut book, &mut buf);
        let peak = PEAK.load(Ordering::Relaxed).saturating_sub(base);
        let per = (ALLOCATIONS.load(Ordering::Relaxed) - allocs) as f64 / bars.max(1) as f64;
        println!("| {label} | {} | {bars} | {:.1} KiB | {per:.4} |", frame.len(), peak as f64 / 1024.0);
    }
}

fn main() {
    let (frames, events) = frames(2_000);
    let mut book = QuoteBook::new(10_000);
    let mut buf = Vec::with_capacity(1024);
    // Warm up (the book's first insertions allocate once per symbol).
    run(&frames, &mut book, &mut buf);

    let mut c = Criterion::default().configure_from_args().measurement_time(Duration::from_secs(5));
    let mut g = c.benchmark_group("polygon");
    g.throughput(Throughput::Elements(events as u64));
    g.bench_function("parse+normalize+serialize", |b| b.iter(|| run(&frames, &mut book, &mut buf)));
    g.finish();

    // The table's figures: one core, fixed work, plus allocations per tick.
    let rounds = 50;
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let t = Instant::now();
    let mut ticks = 0;
    for _ in 0..rounds {
        ticks += run(&frames, &mut book, &mut buf);
    }
    let secs = t.elapsed().as_secs_f64();
    let allocs = ALLOCATIONS.load(Ordering::Relaxed) - before;
    println!();
    println!("| benchmark | ticks | seconds | ticks/s (1 core) | heap allocations per tick |");
    println!("|---|---|---|---|---|");
    println!(
        "| parse+normalize+serialize (Polygon, 10 events/frame) | {ticks} | {secs:.3} | {:.0} | {:.4} |",
        ticks as f64 / secs,
        allocs as f64 / ticks as f64
    );
    frame_memory();
}
