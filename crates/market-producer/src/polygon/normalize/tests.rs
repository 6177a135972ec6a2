//! Table-driven over the fixtures in `test_data/polygon/`: each `*.frame.json` is a frame in
//! Polygon's exact format, `*.expected.jsonl` the ticks it must produce, in order.

use std::path::Path;

use chrono::{TimeZone, Utc};
use serde_json::Value;

use super::*;
use crate::polygon::wire::Msg;
use ingest_core::ws::frame::for_each_element;

fn received_at() -> DateTime<Utc> {
    Utc.timestamp_millis_opt(1_704_205_800_123).unwrap()
}

fn fixture(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data/polygon").join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// JSON equality with a relative tolerance on numbers (midpoints are computed in f64).
fn assert_json_eq(got: &Value, want: &Value, path: &str) {
    match (got, want) {
        (Value::Number(g), Value::Number(w)) => {
            let (g, w) = (g.as_f64().unwrap(), w.as_f64().unwrap());
            assert!((g - w).abs() <= 1e-9 * w.abs().max(1.0), "{path}: {g} != {w}");
        }
        (Value::Object(g), Value::Object(w)) => {
            let mut gk: Vec<_> = g.keys().collect();
            let mut wk: Vec<_> = w.keys().collect();
            gk.sort();
            wk.sort();
            assert_eq!(gk, wk, "{path}: keys");
            for (k, wv) in w {
                assert_json_eq(&g[k], wv, &format!("{path}.{k}"));
            }
        }
        (Value::Array(g), Value::Array(w)) => {
            assert_eq!(g.len(), w.len(), "{path}: length");
            for (i, (gv, wv)) in g.iter().zip(w).enumerate() {
                assert_json_eq(gv, wv, &format!("{path}[{i}]"));
            }
        }
        _ => assert_eq!(got, want, "{path}"),
    }
}

#[test]
fn frames_normalize_to_the_expected_ticks() {
    for case in ["stocks_mixed", "crypto"] {
        let frame = fixture(&format!("{case}.frame.json"));
        let expected: Vec<Value> =
            fixture(&format!("{case}.expected.jsonl")).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let mut book = QuoteBook::new(100);
        let mut got = Vec::new();
        for_each_element(&frame, |el| {
            let msg: Msg<'_> = serde_json::from_str(el).unwrap();
            let tick = normalize(&msg, received_at(), &mut book).unwrap();
            got.push(serde_json::to_value(&tick).unwrap());
        })
        .unwrap();
        assert_eq!(got.len(), expected.len(), "{case}: tick count");
        for (i, (g, w)) in got.iter().zip(&expected).enumerate() {
            assert_json_eq(g, w, &format!("{case}[{i}]"));
        }
    }
}

#[test]
fn bad_events_are_refused_with_a_reason() {
    for line in fixture("bad_events.jsonl").lines() {
        let case: Value = serde_json::from_str(line).unwrap();
        let raw = case["event"].to_string();
        let want = case["reason"].as_str().unwrap();
        let msg: Msg<'_> = serde_json::from_str(&raw).unwrap();
        let err = normalize(&msg, received_at(), &mut QuoteBook::new(10)).expect_err(&raw);
        assert!(err.contains(want), "{raw}: got `{err}`, want `{want}`");
    }
}

#[test]
fn stock_quote_sizes_are_round_lots_and_trades_pick_up_the_latest_quote() {
    let mut book = QuoteBook::new(10);
    let q: Msg<'_> =
        serde_json::from_str(r#"{"ev":"Q","sym":"X","bp":10.0,"bs":2,"ap":10.2,"as":3,"t":1536036818784}"#).unwrap();
    let tick = normalize(&q, received_at(), &mut book).unwrap();
    assert_eq!((tick.bid_size, tick.ask_size), (Some(200.0), Some(300.0)));
    let t: Msg<'_> = serde_json::from_str(r#"{"ev":"T","sym":"X","p":10.1,"s":1,"t":1536036818785}"#).unwrap();
    let tick = normalize(&t, received_at(), &mut book).unwrap();
    assert_eq!((tick.bid_price, tick.ask_price), (Some(10.0), Some(10.2)));
    let other: Msg<'_> = serde_json::from_str(r#"{"ev":"T","sym":"Y","p":1.0,"s":1,"t":1536036818785}"#).unwrap();
    assert_eq!(normalize(&other, received_at(), &mut book).unwrap().bid_price, None, "null until a quote is seen");
}

#[test]
fn an_off_exchange_trade_keeps_its_trf_and_the_history_makes_the_same_tick() {
    use crate::repair::{TickKey, TradeHistory};
    let raw = r#"{"ev":"T","sym":"AAPL","x":4,"i":"183276","z":3,"p":156.43,"s":10,"c":[12,37],"t":1651181822461,"q":7179341,"trfi":3,"trft":1651181557090}"#;
    let m: Msg<'_> = serde_json::from_str(raw).unwrap();
    let live = normalize(&m, received_at(), &mut QuoteBook::new(10)).unwrap();
    assert_eq!(live.trf_id, Some(3));
    // The same print from /v3/trades (providers' REST history documentation).
    let rest = r#"{"conditions":[12,37],"correction":1,"exchange":4,"id":"183276","participant_timestamp":1651181822461636600,"price":156.43,"sequence_number":7179341,"sip_timestamp":1651181822461979400,"size":10,"tape":3,"trf_id":3,"trf_timestamp":1651181557090806500}"#;
    let h: crate::polygon::history::HistoryTrade = serde_json::from_str(rest).unwrap();
    assert_eq!(TickKey::of_tick(&live), Some(TickKey::of(&h)), "one identity live and in the history");
    // The process keeps the first TLS configuration built: the history tests need the test CA.
    ingest_core::testkit::trust_test_ca();
    let http = ingest_core::http::client(&ingest_core::http::HttpConfig::default()).unwrap();
    let client =
        crate::polygon::history::History::new(http, "https://api.massive.com", Default::default(), 1.0, 10).unwrap();
    let conditions = serde_json::value::to_raw_value(&h.conditions).unwrap();
    let repaired = client.tick("AAPL", &h, Some(&conditions), received_at()).unwrap();
    let (mut a, mut b) = (serde_json::to_value(&live).unwrap(), serde_json::to_value(&repaired).unwrap());
    assert_eq!(b["backfill"], true);
    for v in [&mut a, &mut b] {
        let o = v.as_object_mut().unwrap();
        for k in ["backfill", "bid_price", "ask_price"] {
            o.remove(k);
        }
    }
    assert_eq!(a, b, "a repaired trade reads as the live one would have");
}
