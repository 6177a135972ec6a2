//! The Polygon path end to end: the market-producer binary, provider-sim's Polygon simulator on
//! 127.0.0.1:0, and the real local Kafka, checked with an independent consumer.

use std::path::Path;
use std::time::Duration;

use ingest_core::record::{DeadLetter, EventKind};
use ingest_core::testkit::{self, ProducerProcess, header};
use provider_sim::Sim;
use provider_sim::polygon::{PolygonConfig, PolygonHandle};
use rdkafka::message::Message;
use serde_json::Value;

use crate::common::{Topics, sim_tls, value, wait_event};

const KEY: &str = "pk-test-0123456789";

struct Setup {
    sim: Sim,
    polygon: PolygonHandle,
    topic: String,
    dlq: String,
    events: String,
    producer: ProducerProcess,
}

/// Unique topics, a simulator and a producer subscribed to MSFT and AAPL trades and quotes.
async fn start(key_in_sim: &str, extra_env: &[(&str, &str)]) -> Setup {
    let topics = Topics::create().await;
    let polygon = PolygonHandle::new(PolygonConfig { api_key: key_in_sim.into(), ..PolygonConfig::default() });
    // wss:// with a certificate of the test CA, as socket.massive.com serves it.
    let (sim, ca) = sim_tls(polygon.router()).await;
    let url = sim.ws_url("/stocks");
    let mut env: Vec<(&str, &str)> = vec![
        ("MARKET_PROVIDER", "polygon"),
        ("MARKET_API_KEY", KEY),
        ("MARKET_WS_URL", &url),
        ("TLS_EXTRA_CA_FILE", &ca),
        // The simulator trades around the clock: a calendar would make the test depend on the hour.
        ("FINSTREAM__MARKET__SESSION", "always"),
        ("FINSTREAM__MARKET__SYMBOLS", "MSFT,AAPL"),
        ("FINSTREAM__MARKET__CHANNELS", "trades,quotes"),
        ("FINSTREAM__MARKET__RECONNECT_BASE_MS", "50"),
        ("FINSTREAM__KAFKA__HEALTHCHECK_INTERVAL_SECS", "1"),
    ];
    env.extend(topics.env());
    env.extend_from_slice(extra_env);
    let producer = ProducerProcess::spawn(Path::new(env!("CARGO_BIN_EXE_market-producer")), &env);
    let Topics { topic, dlq, events, .. } = topics;
    Setup { sim, polygon, topic, dlq, events, producer }
}

async fn wait_subscribed(p: &PolygonHandle, n: usize) {
    testkit::wait_for(Duration::from_secs(30), "a subscribed connection", || async move {
        (p.subscribed_connections() == n).then_some(())
    })
    .await;
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data/polygon").join(name)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn normal_flow_values_headers_and_readiness() {
    let s = start(KEY, &[]).await;
    wait_subscribed(&s.polygon, 1).await;
    let sent = s.polygon.client_messages();
    assert_eq!(serde_json::from_str::<Value>(&sent[0]).unwrap(), serde_json::json!({"action":"auth","params":KEY}));
    assert_eq!(
        serde_json::from_str::<Value>(&sent[1]).unwrap(),
        serde_json::json!({"action":"subscribe","params":"T.MSFT,Q.MSFT,T.AAPL,Q.AAPL"})
    );

    assert_eq!(s.polygon.push(&fixture("stocks_mixed.frame.json")), 1);
    let got = testkit::consume(&s.topic, 5, Duration::from_secs(30));
    let expected: Vec<Value> =
        fixture("stocks_mixed.expected.jsonl").lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let mut by_seq_or_symbol: Vec<Value> = got.iter().map(value).collect();
    // Partitions interleave; order within a key is what Kafka keeps, so compare as sets keyed
    // by (symbol, sequence, event type).
    let k = |v: &Value| format!("{}|{}|{}|{}", v["symbol"], v["sequence"], v["event_type"], v["timestamp"]);
    by_seq_or_symbol.sort_by_key(k);
    let mut want = expected.clone();
    want.sort_by_key(k);
    for (g, w) in by_seq_or_symbol.iter().zip(&want) {
        for (field, wv) in w.as_object().unwrap() {
            if field == "received_at" {
                continue;
            }
            let gv = &g[field];
            match (gv.as_f64(), wv.as_f64()) {
                (Some(a), Some(b)) => assert!((a - b).abs() < 1e-9, "{field}: {gv} != {wv}"),
                _ => assert_eq!(gv, wv, "{field} of {}", k(w)),
            }
        }
    }
    for m in &got {
        let v = value(m);
        assert_eq!(m.key().map(|k| String::from_utf8_lossy(k).into_owned()), v["symbol"].as_str().map(String::from));
        assert_eq!(header(m, "schema").as_deref(), Some("market.tick/v1"));
        assert_eq!(v["provider"], "polygon");
        assert_eq!(header(m, "conn_epoch").as_deref(), Some("1"));
    }

    let url = format!("http://{}/ready", s.producer.health);
    let ready: Value = testkit::wait_for(Duration::from_secs(30), "/ready 200", || {
        let url = url.clone();
        async move {
            let r = reqwest::get(&url).await.ok()?;
            if r.status() != 200 {
                return None;
            }
            serde_json::from_str::<Value>(&r.text().await.ok()?).ok()
        }
    })
    .await;
    assert_eq!(ready["sources"][0]["name"], "polygon");
    assert!(!s.producer.log().contains(KEY), "the API key must never be logged");
    drop(s.sim);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_resubscribes_and_publishes_the_gap() {
    let s = start(KEY, &[]).await;
    wait_subscribed(&s.polygon, 1).await;
    s.polygon.push(r#"[{"ev":"T","sym":"MSFT","x":12,"i":"1","p":100.5,"s":10,"t":1704205800000,"q":1}]"#);
    testkit::consume(&s.topic, 1, Duration::from_secs(30));

    s.polygon.drop_all();
    // The producer reconnects, re-authenticates and resubscribes the whole set.
    testkit::wait_for(Duration::from_secs(30), "a second auth", || {
        let p = s.polygon.clone();
        async move { (p.client_messages().iter().filter(|m| m.contains("\"auth\"")).count() == 2).then_some(()) }
    })
    .await;
    wait_subscribed(&s.polygon, 1).await;
    let subs: Vec<String> = s.polygon.client_messages().into_iter().filter(|m| m.contains("subscribe")).collect();
    assert_eq!(subs.len(), 2);
    assert_eq!(subs[0], subs[1], "the full set is resubscribed");

    let evs = wait_event(&s.events, EventKind::Gap, 4).await;
    let gap = evs.iter().find(|e| e.kind == EventKind::Gap).unwrap();
    let (from, to) = (gap.from.unwrap(), gap.to.unwrap());
    assert!(from <= to, "{gap:?}");
    assert!(to - from < chrono::Duration::seconds(30), "{gap:?}");
    assert_eq!(gap.conn_epoch, Some(2));
    let kinds: Vec<EventKind> = evs.iter().map(|e| e.kind).collect();
    for k in [EventKind::Started, EventKind::Connected, EventKind::Disconnected] {
        assert!(kinds.contains(&k), "{kinds:?}");
    }

    assert_eq!(s.producer.metric("producer_ws_gaps_total", &[("provider", "polygon")]).await, 1.0);
    assert!(s.producer.metric("producer_ws_reconnects_total", &[("provider", "polygon")]).await >= 1.0);
    assert!(s.producer.metric("producer_ws_gap_seconds_total", &[("provider", "polygon")]).await > 0.0);
    s.polygon.push(r#"[{"ev":"T","sym":"MSFT","x":12,"i":"2","p":100.6,"s":10,"t":1704205801000,"q":2}]"#);
    let got = testkit::consume(&s.topic, 2, Duration::from_secs(30));
    assert!(
        got.iter().any(|m| header(m, "conn_epoch").as_deref() == Some("2")),
        "records after the reconnect carry epoch 2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_failure_exits_1_with_a_clear_message() {
    let mut s = start("another-key", &[]).await;
    let code = s.producer.wait_exit(Duration::from_secs(30));
    assert_eq!(code, Some(1));
    let log = s.producer.log();
    assert!(log.contains("authentication failed") && log.contains("MARKET_API_KEY"), "{log}");
    assert!(!log.contains(KEY), "the API key must never be logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_is_dead_lettered_and_the_stream_continues() {
    let s = start(KEY, &[]).await;
    wait_subscribed(&s.polygon, 1).await;
    s.polygon.push("this is not json");
    s.polygon.push(r#"[{"ev":"T","sym":"MSFT","p":"abc","s":1,"t":1704205800000}, {"ev":"T","sym":"MSFT","x":12,"p":101.0,"s":5,"t":1704205800001,"q":7}]"#);
    s.polygon.push(r#"[{"ev":"T","sym":"MSFT","p":-3.0,"s":1,"t":1704205800002}]"#);
    s.polygon.push(r#"[{"ev":"NOPE","sym":"MSFT"}]"#);
    s.polygon.push_binary(&[0x5b, 0xff, 0xfe, 0x5d]);
    s.polygon.push(r#"[{"ev":"T","sym":"AAPL","x":10,"p":150.0,"s":5,"t":1704205800003,"q":8}]"#);

    let letters: Vec<DeadLetter> = testkit::consume(&s.dlq, 5, Duration::from_secs(30))
        .iter()
        .map(|m| serde_json::from_slice(m.payload().unwrap()).unwrap())
        .collect();
    let reasons: Vec<&str> = letters.iter().map(|l| l.error.as_str()).collect();
    assert!(reasons[0].contains("malformed frame"), "{reasons:?}");
    assert_eq!(letters[0].raw, "this is not json");
    assert!(reasons[1].contains("`p` is not a number"), "{reasons:?}");
    assert!(reasons[2].contains("invalid `price`"), "{reasons:?}");
    assert!(reasons[3].contains("unknown event type `NOPE`"), "{reasons:?}");
    assert!(reasons[4].contains("not UTF-8"), "{reasons:?}");
    assert_eq!((letters[4].raw_encoding.as_str(), letters[4].raw.as_str()), ("base64", "W//+XQ=="));

    let good = testkit::consume(&s.topic, 2, Duration::from_secs(30));
    let mut prices: Vec<f64> = good.iter().map(|m| value(m)["price"].as_f64().unwrap()).collect();
    prices.sort_by(f64::total_cmp);
    assert_eq!(prices, [101.0, 150.0], "valid events of the same frames went through");
    assert_eq!(s.polygon.subscribed_connections(), 1, "no reconnect was needed");
    // Every bad input counted once, and no gap.
    let invalid = [("topic", s.topic.as_str()), ("reason", "invalid")];
    assert_eq!(s.producer.metric("producer_messages_failed_total", &invalid).await, 5.0);
    assert_eq!(s.producer.metric("producer_ws_gaps_total", &[("provider", "polygon")]).await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_feed_is_stale_and_reconnected() {
    let s = start(KEY, &[("FINSTREAM__MARKET__STALE_AFTER_SECS", "2")]).await;
    wait_subscribed(&s.polygon, 1).await;
    let evs = wait_event(&s.events, EventKind::Disconnected, 3).await;
    let d = evs.iter().find(|e| e.kind == EventKind::Disconnected).unwrap();
    assert!(d.message.as_deref().unwrap_or("").contains("no data for"), "{d:?}");
    testkit::wait_for(Duration::from_secs(30), "a second auth", || {
        let p = s.polygon.clone();
        async move { (p.client_messages().iter().filter(|m| m.contains("\"auth\"")).count() >= 2).then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_frame_is_refused_recorded_and_survived() {
    let s = start(KEY, &[("FINSTREAM__MARKET__MAX_FRAME_BYTES", "2048")]).await;
    wait_subscribed(&s.polygon, 1).await;
    let big = format!(r#"[{{"ev":"T","sym":"MSFT","pad":"{}","p":1.0,"s":1,"t":1704205800000}}]"#, "x".repeat(4096));
    s.polygon.push(&big);
    let letters = testkit::consume(&s.dlq, 1, Duration::from_secs(30));
    let l: DeadLetter = serde_json::from_slice(letters[0].payload().unwrap()).unwrap();
    assert!(l.error.contains("larger than 2048 bytes"), "{l:?}");
    wait_event(&s.events, EventKind::Gap, 4).await;
    wait_subscribed(&s.polygon, 1).await;
    s.polygon.push(r#"[{"ev":"T","sym":"MSFT","x":12,"p":100.5,"s":10,"t":1704205800000,"q":1}]"#);
    testkit::consume(&s.topic, 1, Duration::from_secs(30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_cover_each_symbol_exactly_once() {
    let polygon =
        PolygonHandle::new(PolygonConfig { api_key: KEY.into(), max_connections: 2, ..PolygonConfig::default() });
    let sim = Sim::start("127.0.0.1:0".parse().unwrap(), polygon.router()).await.unwrap();
    let url = format!("ws://{}/stocks", sim.addr);
    let symbols = "AAPL,MSFT,NVDA,AMZN,GOOGL,META,TSLA,SPY,QQQ,IWM";
    let spawn = |index: &str| {
        ProducerProcess::spawn(
            Path::new(env!("CARGO_BIN_EXE_market-producer")),
            &[
                ("MARKET_API_KEY", KEY),
                ("MARKET_WS_URL", &url),
                // The simulator trades around the clock: a calendar would make the test depend on the hour.
                ("FINSTREAM__MARKET__SESSION", "always"),
                ("FINSTREAM__MARKET__SYMBOLS", symbols),
                ("FINSTREAM__MARKET__CHANNELS", "trades"),
                ("REPLICA_COUNT", "2"),
                ("REPLICA_INDEX", index),
                // Plain ws:// and the shared topics: a test of the split, not of repairs.
                ("FINSTREAM__MARKET__REPAIR__ENABLED", "false"),
            ],
        )
    };
    let (_a, _b) = (spawn("0"), spawn("1"));
    wait_subscribed(&polygon, 2).await;
    let mut got: Vec<String> = polygon
        .client_messages()
        .iter()
        .filter_map(|m| serde_json::from_str::<Value>(m).ok())
        .filter(|v| v["action"] == "subscribe")
        .flat_map(|v| v["params"].as_str().unwrap().split(',').map(String::from).collect::<Vec<_>>())
        .collect();
    assert!(got.len() < 2 * 10, "each replica subscribed only its share");
    got.sort();
    let mut want: Vec<String> = symbols.split(',').map(|s| format!("T.{s}")).collect();
    want.sort();
    assert_eq!(got, want, "together exactly the whole set, no symbol twice");
}

/// A provider that drops the connection 8 times, a second after each resubscription, while a
/// firehose streams: the producer stays up, reconnects and resubscribes every time, counts each
/// gap, keeps delivering, and its memory stays flat (RSS sampled every 250 ms). Connections that
/// die young do not reset the reconnect backoff, so the storm slows the reconnects down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnect_storm_is_ridden_out_with_bounded_memory() {
    let s = start(KEY, &[]).await;
    wait_subscribed(&s.polygon, 1).await;
    s.polygon.firehose(provider_sim::polygon::Firehose {
        symbols: vec!["MSFT".into(), "AAPL".into()],
        events_per_frame: 50,
        frames_per_sec: 100,
        total: 0,
        demo: false,
    });
    let pid = s.producer.pid();
    let mut samples = vec![testkit::rss_kib(pid)];
    let drops: usize = 8;
    let started = std::time::Instant::now();
    let auths = |p: &PolygonHandle| p.client_messages().iter().filter(|m| m.contains("\"auth\"")).count();
    for i in 0..drops {
        // Connection i+1 authenticated and subscribed (the previous one is really gone).
        testkit::wait_for(Duration::from_secs(30), "the next connection", || {
            let p = s.polygon.clone();
            async move { (auths(&p) == i + 1 && p.subscribed_connections() == 1).then_some(()) }
        })
        .await;
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            samples.push(testkit::rss_kib(pid));
        }
        s.polygon.drop_all();
    }
    let storm = started.elapsed();
    // It comes back after the last drop and keeps delivering.
    testkit::wait_for(Duration::from_secs(30), "the last reconnection", || {
        let p = s.polygon.clone();
        async move { (auths(&p) == drops + 1 && p.subscribed_connections() == 1).then_some(()) }
    })
    .await;
    let before = s.producer.metric("producer_messages_sent_total", &[("provider", "polygon")]).await;
    testkit::wait_for(Duration::from_secs(30), "records after the storm", || {
        let p = &s.producer;
        async move { (p.metric("producer_messages_sent_total", &[("provider", "polygon")]).await > before).then_some(()) }
    })
    .await;
    let reconnects = s.producer.metric("producer_ws_reconnects_total", &[("provider", "polygon")]).await;
    let gaps = s.producer.metric("producer_ws_gaps_total", &[("provider", "polygon")]).await;
    let sent = s.producer.metric("producer_messages_sent_total", &[("provider", "polygon")]).await;
    let (first, peak, last) = (samples[4], *samples.iter().max().unwrap(), *samples.last().unwrap());
    println!(
        "chaos: {drops} disconnects in {:.1} s under a 5,000 ticks/s firehose: reconnects {reconnects}, gaps {gaps}, \
         ticks delivered {sent}; RSS after 1 s {first} KiB, peak {peak} KiB, at the end {last} KiB",
        storm.as_secs_f64()
    );
    assert!(reconnects >= drops as f64 && gaps >= drops as f64, "{reconnects} reconnects, {gaps} gaps");
    assert!(peak < 256 * 1024, "peak RSS {peak} KiB");
    assert!(last < first + 48 * 1024, "RSS grew from {first} to {last} KiB");
}

/// A server whose certificate no configured root trusts: a clear error naming the host and the
/// reason, counted, retried only at the longest delay (not a silent fast loop), and no data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_is_a_clear_counted_error() {
    let topics = Topics::create().await;
    let polygon = PolygonHandle::new(PolygonConfig { api_key: KEY.into(), ..PolygonConfig::default() });
    let ca = provider_sim::tls::TestCa::get().unwrap();
    let sim = Sim::start_tls("127.0.0.1:0".parse().unwrap(), polygon.router(), &ca.untrusted_identity().unwrap())
        .await
        .unwrap();
    let url = sim.ws_url("/stocks");
    let ca_file = ca.ca_file().display().to_string();
    let mut env: Vec<(&str, &str)> = vec![
        ("MARKET_PROVIDER", "polygon"),
        ("MARKET_API_KEY", KEY),
        ("MARKET_WS_URL", &url),
        ("TLS_EXTRA_CA_FILE", &ca_file),
        ("FINSTREAM__MARKET__SESSION", "always"),
        ("FINSTREAM__MARKET__RECONNECT_BASE_MS", "50"),
        ("FINSTREAM__MARKET__RECONNECT_MAX_SECS", "30"),
    ];
    env.extend(topics.env());
    let p = ProducerProcess::spawn(Path::new(env!("CARGO_BIN_EXE_market-producer")), &env);
    let tls_errors = [("reason", "tls_certificate")];
    testkit::wait_for(Duration::from_secs(30), "the certificate error in the log and the metric", || {
        let p = &p;
        async move {
            let counted = p.metric("producer_ws_connect_errors_total", &tls_errors).await;
            (p.log().contains("UnknownIssuer") && counted >= 1.0).then_some(())
        }
    })
    .await;
    let log = p.log();
    assert!(log.contains("TLS with localhost failed") && log.contains("tls.extra_ca_file"), "{log}");
    assert!(!log.contains(KEY), "the key never reaches the log");
    // Not a silent loop: one attempt, then the longest backoff (30 s) before the next.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(p.metric("producer_ws_connect_errors_total", &tls_errors).await, 1.0, "{}", p.log());
    assert_eq!(polygon.subscribed_connections(), 0);
}

/// A stall storm: the feed goes silent after each resubscription, the watchdog reconnects again
/// and again. `producer_ws_gap_seconds_total` equals the sum of the published gap windows, and
/// the windows never overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gap_counter_is_the_sum_of_published_windows_across_a_stall_storm() {
    let s = start(
        KEY,
        &[
            ("FINSTREAM__MARKET__STALE_AFTER_SECS", "1"),
            ("FINSTREAM__MARKET__PING_INTERVAL_SECS", "1"),
            ("FINSTREAM__MARKET__DEAD_AFTER_SECS", "5"),
        ],
    )
    .await;
    wait_subscribed(&s.polygon, 1).await;
    s.polygon.push(r#"[{"ev":"T","sym":"MSFT","x":12,"p":100.5,"s":10,"t":1704205800000,"q":1}]"#);
    let gaps = [("provider", "polygon")];
    testkit::wait_for(Duration::from_secs(60), "five stale reconnects with their gaps", || {
        let p = &s.producer;
        async move { (p.metric("producer_ws_gaps_total", &gaps).await >= 5.0).then_some(()) }
    })
    .await;
    // The counters from one consistent moment (the gap count the same before and after).
    let (n, secs) = loop {
        let before = s.producer.metric("producer_ws_gaps_total", &gaps).await;
        let secs = s.producer.metric("producer_ws_gap_seconds_total", &gaps).await;
        if s.producer.metric("producer_ws_gaps_total", &gaps).await == before {
            break (before as usize, secs);
        }
    };
    // The first n gap events (one partition: published in the order they were counted).
    let mut windows = Vec::new();
    let mut want = n + 4;
    while windows.len() < n {
        let evs = crate::common::events_of(&s.events, want);
        windows = evs.iter().filter(|e| e.kind == EventKind::Gap).map(|e| (e.from.unwrap(), e.to.unwrap())).collect();
        want = evs.len() + 1;
    }
    windows.truncate(n);
    let published: f64 = windows.iter().map(|(a, b)| (*b - *a).num_microseconds().unwrap() as f64 / 1e6).sum();
    // Event times are written with millisecond precision.
    assert!(
        (published - secs).abs() <= 0.002 * n as f64,
        "counter {secs} s, published windows {published} s: {windows:?}"
    );
    for w in windows.windows(2) {
        assert!(w[0].1 <= w[1].0, "windows overlap: {windows:?}");
    }
}

/// Polygon sends all-symbol minute bars (`AM.*`) as one frame of several MB each minute. Under
/// the shipped defaults (no frame limit set) a 2.5 MB frame is normalized: every bar delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2_5_mb_all_symbol_minute_bar_frame_is_normalized_under_the_defaults() {
    let s = start(KEY, &[("FINSTREAM__MARKET__CHANNELS", "minute_bars")]).await;
    wait_subscribed(&s.polygon, 1).await;
    let bars: Vec<String> = (0..13_000)
        .map(|i| {
            format!(
                r#"{{"ev":"AM","sym":"T{i:05}","v":{v},"av":{av},"op":{o:.4},"vw":{o:.4},"o":{o:.4},"c":{c:.4},"h":{h:.4},"l":{l:.4},"a":{o:.4},"z":{z},"s":1704205800000,"e":1704205860000,"otc":false}}"#,
                v = 1000 + i,
                av = 9_470_157 + i,
                o = 10.0 + f64::from(i) / 100.0,
                c = 10.01 + f64::from(i) / 100.0,
                h = 10.02 + f64::from(i) / 100.0,
                l = 9.99 + f64::from(i) / 100.0,
                z = 100 + i % 50,
            )
        })
        .collect();
    let frame = format!("[{}]", bars.join(","));
    assert!(frame.len() >= 2_500_000, "{} bytes", frame.len());
    s.polygon.push(&frame);
    let got = testkit::consume(&s.topic, 13_000, Duration::from_secs(60));
    assert_eq!(got.len(), 13_000);
    assert!(got.iter().all(|m| value(m)["event_type"] == "bar"));
    assert_eq!(s.producer.metric("producer_ws_reconnects_total", &[("provider", "polygon")]).await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_goes_through_https_proxy_unless_no_proxy_names_the_host() {
    // A corporate network: every connection out goes through a CONNECT proxy.
    let proxy = provider_sim::proxy::ConnectProxy::start().await.unwrap();
    let proxy_url = proxy.url();
    let s = start(KEY, &[("HTTPS_PROXY", &proxy_url), ("NO_PROXY", "")]).await;
    wait_subscribed(&s.polygon, 1).await;
    assert_eq!(s.polygon.push(&fixture("stocks_mixed.frame.json")), 1);
    assert_eq!(testkit::consume(&s.topic, 5, Duration::from_secs(30)).len(), 5, "ticks through the tunnel");
    let port = s.sim.addr.port();
    assert_eq!(proxy.targets(), [format!("localhost:{port}")], "the feed was tunnelled (TLS end to end)");
    drop(s);

    // NO_PROXY names the host: straight to it, the proxy sees nothing.
    let direct = provider_sim::proxy::ConnectProxy::start().await.unwrap();
    let direct_url = direct.url();
    let s = start(KEY, &[("HTTPS_PROXY", &direct_url), ("NO_PROXY", "example.com,localhost")]).await;
    wait_subscribed(&s.polygon, 1).await;
    assert!(direct.targets().is_empty(), "{:?}", direct.targets());
}
