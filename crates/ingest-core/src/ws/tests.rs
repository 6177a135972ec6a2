//! The runner on tokio's paused clock, against an in-memory WebSocket server: market calendars
//! (a weekend, a holiday with an early close, both DST switches) and stalls during a session.
//!
//! The simulated provider sends data only inside windows written out here in UTC from the
//! published exchange hours, independently of `market_hours`: a calendar that got a date or an
//! offset wrong makes the watchdog reconnect (or miss a stall), and the counts below fail.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use tokio::io::DuplexStream;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::clock::utc;
use crate::config::KafkaConfig;
use crate::kafka::Sink;
use crate::telemetry::{Health, Metrics};

/// The provider's behaviour: data every 10 s inside `windows`, except during `stalls` (the
/// connection stays up and answers pings, but no data is sent).
#[derive(Clone)]
struct Script {
    clock: Clock,
    windows: Vec<(DateTime<Utc>, DateTime<Utc>)>,
    stalls: Vec<(DateTime<Utc>, DateTime<Utc>)>,
}

impl Script {
    fn sends_at(&self, t: DateTime<Utc>) -> bool {
        let within = |w: &[(DateTime<Utc>, DateTime<Utc>)]| w.iter().any(|(a, b)| *a <= t && t < *b);
        within(&self.windows) && !within(&self.stalls)
    }
}

/// An in-memory provider: each connection is a real WebSocket over a `tokio::io::duplex` pipe.
struct Pipe {
    script: Script,
    connections: Arc<Mutex<u32>>,
}

async fn serve(mut ws: WebSocketStream<DuplexStream>, script: Script) {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    let mut subscribed = false;
    loop {
        tokio::select! {
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(t))) if t.as_str() == "subscribe" => {
                    subscribed = true;
                    if ws.send(Message::text("ack")).await.is_err() { return; }
                }
                Some(Ok(_)) => {}
                _ => return,
            },
            _ = tick.tick() => {
                if subscribed && script.sends_at(script.clock.now()) && ws.send(Message::text("data")).await.is_err() {
                    return;
                }
            }
        }
    }
}

impl Connector for Pipe {
    fn connect(&self, config: WebSocketConfig) -> BoxFuture<'_, Result<WsStream, WsError>> {
        Box::pin(async move {
            *self.connections.lock().expect("lock") += 1;
            let (client, server) = tokio::io::duplex(1 << 16);
            let script = self.script.clone();
            tokio::spawn(async move {
                if let Ok(ws) = tokio_tungstenite::accept_async(server).await {
                    serve(ws, script).await;
                }
            });
            let io: Box<dyn connect::Io> = Box::new(client);
            let (ws, _) = tokio_tungstenite::client_async_with_config("ws://provider.test/feed", io, Some(config))
                .await
                .map_err(|e| classify(e, usize::MAX))?;
            Ok(ws)
        })
    }
}

struct TestSession;

/// The connections the runner announced.
#[derive(Default)]
struct Epochs(Vec<u64>);

impl WsOutput for Epochs {
    fn connected(&mut self, epoch: u64) {
        self.0.push(epoch);
    }
    fn transport_error(&mut self, _error: &WsError) {}
}

impl WsSession for TestSession {
    type Output = Epochs;

    fn provider(&self) -> &str {
        "test"
    }
    fn on_open(&mut self, out: &mut Vec<String>) -> Step {
        out.push("subscribe".into());
        Step::Continue
    }
    fn on_frame(&mut self, frame: Frame<'_>, _at: DateTime<Utc>, _out: &mut Vec<String>, _: &mut Epochs) -> Step {
        match frame.bytes() {
            b"ack" => Step::Subscribed,
            b"data" => Step::Data,
            _ => Step::Continue,
        }
    }
}

struct Outcome {
    reconnects: u64,
    gaps: u64,
    gap_secs: f64,
    connections: u32,
    market_open: i64,
    ready: crate::telemetry::health::Readiness,
}

/// Runs the feed from `start` until `end` (wall time on the paused clock).
async fn run_feed(session: MarketSession, start: &str, end: &str, script: impl Fn(Clock) -> Script) -> Outcome {
    let clock = Clock::starting_at(utc(start));
    let metrics = Metrics::new("test-producer", "0");
    let health = Health::new("test-producer", "0");
    health.set_kafka(true, "test");
    let kafka = KafkaConfig { brokers: "127.0.0.1:1".into(), ..KafkaConfig::default() };
    let sink =
        Sink::new(&kafka, "test-producer", metrics.clone(), health.clone(), CancellationToken::new()).expect("sink");
    let ctx = SourceCtx {
        producer: "test-producer".into(),
        sink,
        health: health.register_source("test", Some(Duration::from_secs(60))),
        metrics: metrics.clone(),
        shutdown: CancellationToken::new(),
        kafka,
        process_health: health.clone(),
    };
    // Every value spelled out: the shipped defaults live once, in the market config.
    let settings = WsSettings {
        url: "ws://provider.test/feed".into(),
        max_frame_bytes: 1024 * 1024,
        ping_interval: Duration::from_secs(25),
        dead_after: Duration::from_secs(60),
        stale_after: Duration::from_secs(60),
        connect_timeout: Duration::from_secs(10),
        handshake_timeout: Duration::from_secs(15),
        backoff: BackoffConfig {
            base: Duration::from_millis(250),
            max: Duration::from_secs(30),
            factor: 2.0,
            jitter: 0.5,
        },
        healthy_after: Duration::from_secs(30),
        record_to: None,
        session,
        clock,
    };
    let pipe = Pipe { script: script(clock), connections: Arc::new(Mutex::new(0)) };
    let stop = ctx.shutdown.clone();
    let until = clock.instant_at(utc(end));
    let runner = async {
        let (mut s, mut epochs) = (TestSession, Epochs::default());
        let result = run_with(&mut s, &mut epochs, &settings, &ctx, &pipe).await;
        // Every connection was announced to the output, numbered from 1.
        assert!(epochs.0.iter().enumerate().all(|(i, e)| *e == i as u64 + 1), "{:?}", epochs.0);
        result
    };
    let stopper = async {
        tokio::time::sleep_until(until).await;
        stop.cancel();
    };
    let (result, ()) = tokio::join!(runner, stopper);
    assert!(result.is_ok(), "{:?}", result.err());
    let counters = crate::telemetry::handles::StreamCounters::new(&ctx.metrics, "test");
    Outcome {
        reconnects: counters.reconnects.get(),
        gaps: counters.gaps.get(),
        gap_secs: counters.gap_seconds.get(),
        connections: *pipe.connections.lock().expect("lock"),
        market_open: counters.market_open().get(),
        ready: health.readiness(),
    }
}

fn windows(w: &[(&str, &str)]) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    w.iter().map(|(a, b)| (utc(a), utc(b))).collect()
}

fn assert_quiet(o: &Outcome, what: &str) {
    assert_eq!(
        (o.reconnects, o.gaps, o.connections),
        (0, 0, 1),
        "{what}: no reconnect and no gap while the market is closed"
    );
    assert!(o.gap_secs.abs() < f64::EPSILON);
}

#[tokio::test(start_paused = true)]
async fn a_weekend_is_silent_without_reconnects_and_ready_says_closed() {
    // Friday 2026-12-04 18:00 EST → Saturday noon: ready, "market closed (weekend)".
    let script = |clock| Script {
        clock,
        windows: windows(&[
            ("2026-12-04T09:00:00Z", "2026-12-05T01:00:00Z"),
            ("2026-12-07T09:00:00Z", "2026-12-08T01:00:00Z"),
        ]),
        stalls: vec![],
    };
    let sat = run_feed(MarketSession::UsEquities, "2026-12-04T23:00:00Z", "2026-12-05T17:00:00Z", script).await;
    assert_quiet(&sat, "Saturday");
    // (Kafka is unreachable in these tests: only the source's own part of /ready counts.)
    let src = &sat.ready.sources[0];
    assert!(src.connected && src.fresh, "{:?}", sat.ready);
    assert!(!sat.ready.reasons.iter().any(|r| r.starts_with("source")), "{:?}", sat.ready.reasons);
    let market = sat.ready.sources[0].market.clone().unwrap_or_default();
    assert!(market.contains("market closed (weekend) until 2026-12-07T09:00:00Z"), "{market}");
    assert_eq!(sat.market_open, 0);
    // Through the whole weekend into Monday's session.
    let mon = run_feed(MarketSession::UsEquities, "2026-12-04T23:00:00Z", "2026-12-07T15:00:00Z", script).await;
    assert_quiet(&mon, "weekend");
    assert_eq!(mon.market_open, 1);
    let src = &mon.ready.sources[0];
    assert!(src.connected && src.fresh && src.market.is_none(), "{:?}", mon.ready);
}

#[tokio::test(start_paused = true)]
async fn a_holiday_and_an_early_close() {
    // Thanksgiving (Thu 2026-11-26) closed all day; Friday closes at 13:00, after-hours at 17:00 EST.
    let o = run_feed(MarketSession::UsEquities, "2026-11-25T20:00:00Z", "2026-11-30T10:00:00Z", |clock| Script {
        clock,
        windows: windows(&[
            ("2026-11-25T09:00:00Z", "2026-11-26T01:00:00Z"),
            ("2026-11-27T09:00:00Z", "2026-11-27T22:00:00Z"),
            ("2026-11-30T09:00:00Z", "2026-12-01T01:00:00Z"),
        ]),
        stalls: vec![],
    })
    .await;
    assert_quiet(&o, "Thanksgiving and the early close");
}

#[tokio::test(start_paused = true)]
async fn both_dst_switches() {
    // Spring forward (Sun 2026-03-08): Monday's session is 08:00–00:00 UTC (EDT); Friday's was
    // 09:00–01:00 UTC (EST).
    let spring = run_feed(MarketSession::UsEquities, "2026-03-06T20:00:00Z", "2026-03-10T09:00:00Z", |clock| Script {
        clock,
        windows: windows(&[
            ("2026-03-06T09:00:00Z", "2026-03-07T01:00:00Z"),
            ("2026-03-09T08:00:00Z", "2026-03-10T00:00:00Z"),
            ("2026-03-10T08:00:00Z", "2026-03-11T00:00:00Z"),
        ]),
        stalls: vec![],
    })
    .await;
    assert_quiet(&spring, "spring DST switch");
    // Fall back (Sun 2026-11-01): Monday opens at 09:00 UTC (EST), not 08:00.
    let fall = run_feed(MarketSession::UsEquities, "2026-10-30T20:00:00Z", "2026-11-02T12:00:00Z", |clock| Script {
        clock,
        windows: windows(&[
            ("2026-10-30T08:00:00Z", "2026-10-31T00:00:00Z"),
            ("2026-11-02T09:00:00Z", "2026-11-03T01:00:00Z"),
        ]),
        stalls: vec![],
    })
    .await;
    assert_quiet(&fall, "fall DST switch");
}

#[tokio::test(start_paused = true)]
async fn a_stall_during_the_session_is_one_reconnect_and_one_gap() {
    let o = run_feed(MarketSession::UsEquities, "2026-12-02T14:00:00Z", "2026-12-02T16:00:00Z", |clock| Script {
        clock,
        windows: windows(&[("2026-12-02T09:00:00Z", "2026-12-03T01:00:00Z")]),
        // The provider stops sending at 15:00 for five minutes; the connection stays up.
        stalls: windows(&[("2026-12-02T15:00:00Z", "2026-12-02T15:01:30Z")]),
    })
    .await;
    assert_eq!((o.reconnects, o.gaps, o.connections), (1, 1, 2), "one stale reconnect, one gap");
    // The gap runs from the last frame of the old connection (a pong or the last data, at most
    // 60 s before the watchdog fired) to the resubscription.
    assert!(o.gap_secs > 0.0 && o.gap_secs <= 61.0, "{}", o.gap_secs);
    // The same stall on an always-open feed at night is also caught.
    let crypto = run_feed(MarketSession::Always, "2026-12-05T02:00:00Z", "2026-12-05T03:00:00Z", |clock| Script {
        clock,
        windows: windows(&[("2026-12-01T00:00:00Z", "2026-12-31T00:00:00Z")]),
        stalls: windows(&[("2026-12-05T02:30:00Z", "2026-12-05T02:31:30Z")]),
    })
    .await;
    assert_eq!((crypto.reconnects, crypto.gaps), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn the_gap_counter_is_the_sum_of_windows_across_a_stall_storm() {
    // Data stops at 15:00 for 20 minutes: the watchdog reconnects about once a minute, and each
    // resubscription publishes a window. The windows must not overlap: their sum is at most
    // the 20-minute outage plus one staleness limit, never the ~200 minutes that overlapping
    // windows (each reaching back to the last data at 15:00) would add up to.
    let o = run_feed(MarketSession::Always, "2026-12-02T14:59:00Z", "2026-12-02T15:30:00Z", |clock| Script {
        clock,
        windows: windows(&[("2026-12-02T00:00:00Z", "2026-12-03T00:00:00Z")]),
        stalls: windows(&[("2026-12-02T15:00:00Z", "2026-12-02T15:20:00Z")]),
    })
    .await;
    assert!(o.gaps >= 10, "a storm of stale reconnects: {}", o.gaps);
    assert!(o.gap_secs <= 20.0 * 60.0 + 61.0, "windows overlap: {} s of gap for a 20-minute stall", o.gap_secs);
}
