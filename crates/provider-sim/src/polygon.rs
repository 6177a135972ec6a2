//! Polygon.io / Massive real-time WebSocket simulator (docs/providers.md, market-data WebSockets), mounted at `/stocks`
//! and `/crypto`.
//!
//! Speaks the real handshake: `connected` status on open, `{"action":"auth"}` →
//! `auth_success` / `auth_failed` (then close), `auth_timeout` when no auth comes in time,
//! `{"action":"subscribe","params":"T.AAPL,Q.AAPL"}` → one `subscribed to: …` ack per param. One
//! connection per key: a new connection makes the oldest one receive `max_connections` and be
//! closed. Every server message is a JSON array.
//!
//! Tests drive it through [`PolygonHandle`]: push frames to subscribed connections, drop them
//! abruptly, send arbitrary bytes, or start the firehose (generated trades with per-symbol
//! increasing sequence numbers).
//!
//! With a [`Tape`] ([`PolygonHandle::tape`]) the market runs on a clock whether anyone listens
//! or not: each subscribed connection receives the trades of its symbols as they happen from
//! the moment it subscribed, and the REST history `GET /v3/trades/{ticker}` serves the same
//! trades (ids, sequence numbers, nanosecond SIP times) with Polygon's parameters, `next_url`
//! paging, its 401/403/429 bodies, a plan without history and injected failures. What a client
//! missed while away is then exactly what the history holds. The same holds for the tape's
//! NBBO quotes (`Q.<sym>`, `GET /v3/quotes/{ticker}`) and its minute bars (`AM.<sym>`, sent
//! when each minute ends; `GET /v2/aggs/ticker/{ticker}/range/1/minute/{from}/{to}`). On the
//! crypto cluster (`/crypto`, `XT.<pair>`) the tape's trades are `XT` events whose `t` is their
//! exchange's time, which lags the feed by up to 1.35 s by venue, so they arrive out of `t`
//! order; `GET /v3/trades/X:{pair}` serves them as Polygon's crypto trades, by that time.

use std::collections::{HashMap, VecDeque};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::Scheme;
use crate::tape::{self, Tape, TapeTrade};
use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::mpsc;

/// Simulator settings.
#[derive(Debug, Clone)]
pub struct PolygonConfig {
    /// The API key that authenticates.
    pub api_key: String,
    /// Time a client has to authenticate.
    pub auth_timeout: Duration,
    /// Connections allowed per key (the oldest is dropped beyond this).
    pub max_connections: usize,
    /// The account's plan includes trade history (`/v3/trades`); without it, 403 NOT_AUTHORIZED.
    pub history: bool,
    /// The plan includes NBBO quotes (`/v3/quotes`; Polygon's Developer plan has trades but not
    /// quotes); without them, 403 NOT_AUTHORIZED there.
    pub quotes: bool,
    /// REST requests allowed per minute (the free tier's 5); beyond, 429. 0 = no limit.
    pub rest_per_minute: usize,
}

impl Default for PolygonConfig {
    fn default() -> Self {
        Self {
            api_key: "demo".into(),
            auth_timeout: Duration::from_secs(10),
            max_connections: 1,
            history: true,
            quotes: true,
            rest_per_minute: 0,
        }
    }
}

/// Firehose: generated trades for `symbols`, `events_per_frame` per frame, `frames_per_sec`
/// (0 = as fast as the socket takes), `total` events then stop (0 = endless).
#[derive(Debug, Clone)]
pub struct Firehose {
    /// Tickers to cycle through.
    pub symbols: Vec<String>,
    /// Events in each frame.
    pub events_per_frame: usize,
    /// Frame rate; 0 = unthrottled.
    pub frames_per_sec: u64,
    /// Events to send in all; 0 = endless.
    pub total: u64,
    /// Demo data that looks like a market (`make run`): each symbol at its own price level
    /// moving in a random walk, varied trade sizes, and a quote around each trade. Off for
    /// benchmarks and tests, which want identical cheap trades.
    pub demo: bool,
}

enum Cmd {
    Send(Message),
    Drop,
}

struct Conn {
    key: String,
    opened: u64,
    subscribed: Vec<String>,
    tx: mpsc::UnboundedSender<Cmd>,
}

#[derive(Default)]
struct Shared {
    conns: HashMap<u64, Conn>,
    client_messages: Vec<String>,
    firehose: Option<Firehose>,
    tape: Option<Arc<Tape>>,
    /// When the REST calls of the last minute came (the rate limit).
    rest_calls: VecDeque<tokio::time::Instant>,
    /// Statuses the next REST calls answer with (injected failures).
    rest_failures: VecDeque<u16>,
    /// Until when connections send nothing (a stalled feed: trades of the stall are lost).
    stalled_until: Option<tokio::time::Instant>,
}

/// Control of a running Polygon simulator. Cheap to clone.
#[derive(Clone)]
pub struct PolygonHandle {
    cfg: Arc<PolygonConfig>,
    shared: Arc<Mutex<Shared>>,
    next_id: Arc<AtomicU64>,
}

impl std::fmt::Debug for PolygonHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolygonHandle").finish_non_exhaustive()
    }
}

fn array(events: serde_json::Value) -> Message {
    Message::Text(Utf8Bytes::from(events.to_string()))
}

fn status(status: &str, message: &str) -> Message {
    array(json!([{"ev": "status", "status": status, "message": message}]))
}

impl PolygonHandle {
    /// A simulator with `cfg`; mount [`PolygonHandle::router`].
    pub fn new(cfg: PolygonConfig) -> Self {
        Self { cfg: Arc::new(cfg), shared: Arc::default(), next_id: Arc::new(AtomicU64::new(1)) }
    }

    /// The routes: `GET /stocks` and `GET /crypto` (WebSocket upgrade), `GET /v3/trades/{ticker}`
    /// `GET /v3/quotes/{ticker}` and `GET /v2/aggs/ticker/{ticker}/range/1/minute/{from}/{to}`
    /// (REST history of the tape).
    pub fn router(&self) -> Router {
        Router::new()
            .route("/stocks", get(upgrade))
            .route("/crypto", get(upgrade_crypto))
            .route("/v3/{kind}/{ticker}", get(history))
            .route("/v2/aggs/ticker/{ticker}/range/{multiplier}/{timespan}/{from}/{to}", get(aggregates))
            .with_state(self.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Connections that completed a subscription.
    pub fn subscribed_connections(&self) -> usize {
        self.lock().conns.values().filter(|c| !c.subscribed.is_empty()).count()
    }

    /// Every message clients sent (auth, subscribe), oldest first.
    pub fn client_messages(&self) -> Vec<String> {
        self.lock().client_messages.clone()
    }

    /// Sends a text frame to every subscribed connection; returns how many got it.
    pub fn push(&self, frame: &str) -> usize {
        self.send_all(&Message::Text(Utf8Bytes::from(frame)))
    }

    /// Sends a binary frame to every subscribed connection.
    pub fn push_binary(&self, bytes: &[u8]) -> usize {
        self.send_all(&Message::Binary(bytes.to_vec().into()))
    }

    fn send_all(&self, m: &Message) -> usize {
        self.lock()
            .conns
            .values()
            .filter(|c| !c.subscribed.is_empty())
            .filter(|c| c.tx.send(Cmd::Send(m.clone())).is_ok())
            .count()
    }

    /// Sends a status message (e.g. `force_disconnect`) to every connection.
    pub fn push_status(&self, status_name: &str, message: &str) {
        for c in self.lock().conns.values() {
            let _ = c.tx.send(Cmd::Send(status(status_name, message)));
        }
    }

    /// Drops every connection without a close frame (a network failure, as seen by clients).
    pub fn drop_all(&self) {
        for c in self.lock().conns.values() {
            let _ = c.tx.send(Cmd::Drop);
        }
    }

    /// Starts (or replaces) the firehose on every subscribed connection, present and future.
    pub fn firehose(&self, f: Firehose) {
        self.lock().firehose = Some(f);
    }

    /// Runs the market on `tape`: subscribed connections stream its trades as they happen, and
    /// `/v3/trades` serves its history.
    pub fn tape(&self, tape: Tape) {
        self.lock().tape = Some(Arc::new(tape));
    }

    /// The next REST calls answer with these statuses instead (429, 500, …), one each.
    pub fn fail_rest(&self, statuses: &[u16]) {
        self.lock().rest_failures.extend(statuses);
    }

    /// Forgets the injected REST failures not yet answered.
    pub fn clear_rest_failures(&self) {
        self.lock().rest_failures.clear();
    }

    /// Every connection sends nothing for `d`, then goes on with the trades happening then: the
    /// trades of the stall are never streamed (they are in the history).
    pub fn stall(&self, d: Duration) {
        self.lock().stalled_until = Some(tokio::time::Instant::now() + d);
    }
}

async fn upgrade(State(h): State<PolygonHandle>, ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(move |socket| serve(socket, h, false))
}

/// The crypto cluster: its tape trades are `XT` events timed by their exchanges.
async fn upgrade_crypto(State(h): State<PolygonHandle>, ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(move |socket| serve(socket, h, true))
}

async fn serve(socket: WebSocket, h: PolygonHandle, crypto: bool) {
    let id = h.next_id.fetch_add(1, Ordering::Relaxed);
    let (tx, mut cmds) = mpsc::unbounded_channel();
    let (mut out, mut inp) = socket.split();
    if out.send(status("connected", "Connected Successfully")).await.is_err() {
        return;
    }
    let auth_deadline = tokio::time::sleep(h.cfg.auth_timeout);
    tokio::pin!(auth_deadline);
    let mut authed = false;
    let mut seq: HashMap<String, u64> = HashMap::new();
    let mut sent = 0u64;
    let mut hose_tick = tokio::time::interval(Duration::from_millis(1));
    // A paced firehose sends on an absolute schedule (frame n at start + n / frames_per_sec), so
    // the offered rate is exact on average: a sleep after each send would add the send's own
    // time and the timer's granularity to every period (~85k instead of 100k ticks/s).
    let mut hose_due: Option<tokio::time::Instant> = None;
    // The tape: the next n to send per subscribed symbol.
    let mut tape_next: HashMap<String, u64> = HashMap::new();
    // The tape's quotes (`Q.<sym>`): the next n to send per subscribed symbol.
    let mut quotes_next: HashMap<String, u64> = HashMap::new();
    // The tape's minute bars (`AM.<sym>`): the start of the next minute to send per symbol.
    let mut bars_next: HashMap<String, i64> = HashMap::new();
    let mut tape_tick = tokio::time::interval(Duration::from_millis(5));
    loop {
        let tape = if authed { h.lock().tape.clone() } else { None };
        let hose = if authed {
            let s = h.lock();
            s.conns.get(&id).filter(|c| !c.subscribed.is_empty()).and(s.firehose.clone())
        } else {
            None
        };
        tokio::select! {
            msg = inp.next() => {
                let Some(Ok(msg)) = msg else { break };
                let Message::Text(text) = msg else { continue };
                h.lock().client_messages.push(text.to_string());
                let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                let params = v["params"].as_str().unwrap_or_default().to_string();
                match v["action"].as_str() {
                    Some("auth") if params == h.cfg.api_key => {
                        authed = true;
                        register(&h, id, &params, tx.clone());
                        if out.send(status("auth_success", "authenticated")).await.is_err() { break }
                    }
                    Some("auth") => {
                        let _ = out.send(status("auth_failed", "authentication failed")).await;
                        let _ = out.close().await;
                        break;
                    }
                    Some("subscribe") if authed => {
                        for p in params.split(',').filter(|p| !p.is_empty()) {
                            if let Some(c) = h.lock().conns.get_mut(&id) { c.subscribed.push(p.to_string()); }
                            if let Some(t) = &tape {
                                subscribe_tape(t, p, &mut tape_next);
                                subscribe_quotes(t, p, &mut quotes_next);
                                subscribe_bars(t, p, &mut bars_next);
                            }
                            if out.send(status("success", &format!("subscribed to: {p}"))).await.is_err() { break }
                        }
                    }
                    Some(_) if !authed => {
                        let refused = out.send(status("auth_required", "authentication required")).await;
                        if refused.is_err() { break }
                    }
                    _ => {}
                }
            }
            cmd = cmds.recv() => match cmd {
                Some(Cmd::Send(m)) => if out.send(m).await.is_err() { break },
                Some(Cmd::Drop) | None => break,
            },
            () = &mut auth_deadline, if !authed => {
                let _ = out.send(status("auth_timeout", "No authentication request received.")).await;
                let _ = out.close().await;
                break;
            }
            _ = tape_tick.tick(), if tape.is_some() && (!tape_next.is_empty() || !quotes_next.is_empty() || !bars_next.is_empty()) => {
                let Some(t) = &tape else { continue };
                let bars = bars_frame(t, &mut bars_next);
                if h.lock().stalled_until.is_some_and(|u| tokio::time::Instant::now() < u) {
                    // Stalled: the trades happening now (and the bars due) are lost to this
                    // connection.
                    subscribe_all_again(t, &mut tape_next);
                    for (s, n) in quotes_next.iter_mut() {
                        *n = t.quotes_at(s, now_ns()) + 1;
                    }
                    continue;
                }
                if let Some(frame) = tape_frame(t, &mut tape_next, crypto)
                    && out.send(Message::Text(Utf8Bytes::from(frame))).await.is_err()
                {
                    break;
                }
                if let Some(frame) = quotes_frame(t, &mut quotes_next)
                    && out.send(Message::Text(Utf8Bytes::from(frame))).await.is_err()
                {
                    break;
                }
                if let Some(frame) = bars
                    && out.send(Message::Text(Utf8Bytes::from(frame))).await.is_err()
                {
                    break;
                }
            }
            _ = hose_tick.tick(), if hose.is_some() => {
                let Some(f) = hose else { continue };
                if !send_hose(&mut out, &f, &mut hose_due, &mut seq, &mut sent).await { break }
            }
        }
    }
    h.lock().conns.remove(&id);
}

/// One tick of the firehose: every frame that is due (paced), or frames for up to one tick
/// (unthrottled: as fast as the client reads, the socket's back-pressure being the only
/// limit; one frame per tick would cap the offered rate at `1000 × events_per_frame`).
/// The burst is bounded so commands and client messages are still served between ticks.
/// Returns `false` when the client is gone.
async fn send_hose<S>(
    out: &mut S,
    f: &Firehose,
    due: &mut Option<tokio::time::Instant>,
    seq: &mut HashMap<String, u64>,
    sent: &mut u64,
) -> bool
where
    S: futures::Sink<Message> + Unpin,
{
    const MAX_BURST: usize = 256;
    let started = tokio::time::Instant::now();
    let period = Duration::from_secs(1).checked_div(u32::try_from(f.frames_per_sec).unwrap_or(u32::MAX));
    for _ in 0..MAX_BURST {
        if f.total > 0 && *sent >= f.total {
            break;
        }
        let now = tokio::time::Instant::now();
        match period {
            Some(period) => {
                let next = *due.get_or_insert(now);
                if now < next {
                    break;
                }
                *due = Some(next + period);
            }
            None if now.duration_since(started) >= Duration::from_millis(1) => break,
            None => {}
        }
        let frame = firehose_frame(f, seq, sent);
        if out.send(Message::Text(Utf8Bytes::from(frame))).await.is_err() {
            return false;
        }
    }
    true
}

/// Registers an authenticated connection, dropping the oldest of the key beyond the limit.
fn register(h: &PolygonHandle, id: u64, key: &str, tx: mpsc::UnboundedSender<Cmd>) {
    let mut s = h.lock();
    s.conns.insert(id, Conn { key: key.into(), opened: id, subscribed: Vec::new(), tx });
    let mut same: Vec<(u64, u64)> = s.conns.iter().filter(|(_, c)| c.key == key).map(|(i, c)| (c.opened, *i)).collect();
    same.sort_unstable();
    while same.len() > h.cfg.max_connections {
        let (_, oldest) = same.remove(0);
        if let Some(c) = s.conns.remove(&oldest) {
            let _ =
                c.tx.send(Cmd::Send(status("max_connections", "Maximum number of websocket connections exceeded.")));
            let _ = c.tx.send(Cmd::Drop);
        }
    }
}

fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

/// A `T.<sym>` or `T.*` subscription on the tape (the crypto cluster's `XT.<pair>`): its trades
/// from the one happening next.
fn subscribe_tape(t: &Tape, param: &str, next: &mut HashMap<String, u64>) {
    let Some(sym) = param.strip_prefix("T.").or_else(|| param.strip_prefix("XT.")) else { return };
    let now = now_ns();
    for s in t.symbols().iter().filter(|s| sym == "*" || sym == s.as_str()) {
        next.insert(s.clone(), t.count_at(s, now) + 1);
    }
}

/// A `Q.<sym>` or `Q.*` subscription on the tape: its quotes from the one happening next.
fn subscribe_quotes(t: &Tape, param: &str, next: &mut HashMap<String, u64>) {
    let Some(sym) = param.strip_prefix("Q.") else { return };
    let now = now_ns();
    for s in t.symbols().iter().filter(|s| sym == "*" || sym == s.as_str()) {
        next.insert(s.clone(), t.quotes_at(s, now) + 1);
    }
}

/// The quotes of the subscribed symbols that happened since the last frame, in time order, as
/// one frame of `Q` events (`None` when there are none).
fn quotes_frame(t: &Tape, next: &mut HashMap<String, u64>) -> Option<String> {
    let quotes = t.due_quotes(next, now_ns());
    if quotes.is_empty() {
        return None;
    }
    let events: Vec<serde_json::Value> = quotes
        .iter()
        .map(|(s, q)| {
            json!({"ev": "Q", "sym": s, "bx": q.bid_exchange, "bp": price(q.bid_cents), "bs": q.bid_size,
                   "ax": q.ask_exchange, "ap": price(q.ask_cents), "as": q.ask_size, "c": 1, "i": [],
                   "t": q.sip_ns / 1_000_000, "q": q.sequence_number, "z": 3})
        })
        .collect();
    Some(serde_json::Value::Array(events).to_string())
}

/// An `AM.<sym>` or `AM.*` subscription on the tape: its minute bars from the minute under way
/// (each is sent when its minute has ended).
fn subscribe_bars(t: &Tape, param: &str, next: &mut HashMap<String, i64>) {
    let Some(sym) = param.strip_prefix("AM.") else { return };
    let minute = (now_ns() / 1_000_000).div_euclid(60_000) * 60_000;
    for s in t.symbols().iter().filter(|s| sym == "*" || sym == s.as_str()) {
        next.insert(s.clone(), minute);
    }
}

/// The minute bars that are due (their minute ended [`BAR_DELAY_MS`] ago), as one frame of
/// `AM` events; every symbol's next minute moves on whether or not the frame is sent.
fn bars_frame(t: &Tape, next: &mut HashMap<String, i64>) -> Option<String> {
    let now = now_ns();
    let mut events = Vec::new();
    for (s, start) in next.iter_mut() {
        while (*start + 60_000 + BAR_DELAY_MS) * 1_000_000 <= now {
            if let Some(b) = t.minute_bar(s, *start, now) {
                events.push(json!({"ev": "AM", "sym": s, "v": b.volume, "av": b.volume, "op": price(b.open),
                    "vw": b.vwap, "o": price(b.open), "c": price(b.close), "h": price(b.high), "l": price(b.low),
                    "a": b.vwap, "z": b.volume / b.trades.max(1), "s": b.start_ms, "e": b.start_ms + 60_000}));
            }
            *start += 60_000;
        }
    }
    (!events.is_empty()).then(|| serde_json::Value::Array(events).to_string())
}

/// How long after its minute ends a bar is sent.
const BAR_DELAY_MS: i64 = 100;

fn subscribe_all_again(t: &Tape, next: &mut HashMap<String, u64>) {
    let now = now_ns();
    for (s, n) in next.iter_mut() {
        *n = t.count_at(s, now) + 1;
    }
}

/// The trades of the subscribed symbols that happened since the last frame, in time order, as
/// one frame of `T` events (`None` when there are none).
fn tape_frame(t: &Tape, next: &mut HashMap<String, u64>, crypto: bool) -> Option<String> {
    let trades = t.due_trades(next, now_ns());
    if trades.is_empty() {
        return None;
    }
    let events: Vec<serde_json::Value> = trades
        .iter()
        .map(|(s, tr)| {
            if crypto {
                // The crypto cluster's trade: `t` the exchange's time, `r` when Polygon got it,
                // an integer id, no sequence number.
                let id: u64 = tr.id.parse().unwrap_or_default();
                json!({"ev": "XT", "pair": s, "p": price(tr.cents), "t": Tape::crypto_ns(tr) / 1_000_000,
                       "s": tr.size, "c": [1 + tr.n % 2], "i": id, "x": tr.exchange, "r": tr.sip_ns / 1_000_000})
            } else {
                json!({"ev": "T", "sym": s, "x": tr.exchange, "i": tr.id, "z": 3, "p": price(tr.cents), "s": tr.size,
                       "c": [12], "t": tr.sip_ns / 1_000_000, "q": tr.sequence_number})
            }
        })
        .collect();
    Some(serde_json::Value::Array(events).to_string())
}

fn price(cents: u64) -> serde_json::Value {
    serde_json::Number::from_f64(cents as f64 / 100.0).map_or(serde_json::Value::Null, serde_json::Value::Number)
}

/// Polygon's error bodies (docs/providers.md): `error` for ERROR, `message` for NOT_AUTHORIZED.
fn rest_error(code: StatusCode, status: &str, text: &str) -> Response {
    let key = if status == "NOT_AUTHORIZED" { "message" } else { "error" };
    (code, axum::Json(json!({"status": status, "request_id": request_id(), key: text}))).into_response()
}

fn request_id() -> String {
    format!("{:032x}", now_ns())
}

/// A timestamp parameter: nanoseconds, `YYYY-MM-DD` (that UTC day's midnight) or RFC 3339.
fn parse_ns(v: &str) -> Option<i64> {
    if let Ok(ns) = v.parse::<i64>() {
        return Some(ns);
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        return d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_nanos_opt();
    }
    chrono::DateTime::parse_from_rfc3339(v).ok()?.timestamp_nanos_opt()
}

/// What every REST history request goes through: the key (`apiKey` or `Authorization:
/// Bearer`), injected failures, the rate limit, the plan. The tape and the request's parameters
/// (a cursor's, when it has one: a cursor carries the original filters and where the next page
/// starts, and nothing else is read with it), or the refusal.
fn gate(h: &PolygonHandle, q: HashMap<String, String>, headers: &HeaderMap) -> Result<Passed, Box<Response>> {
    let bearer = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match q.get("apiKey").map(String::as_str).or(bearer) {
        None => return Err(Box::new(rest_error(StatusCode::UNAUTHORIZED, "ERROR", "API Key was not provided"))),
        Some(k) if k != h.cfg.api_key => {
            return Err(Box::new(rest_error(StatusCode::UNAUTHORIZED, "ERROR", "Unknown API Key")));
        }
        Some(_) => {}
    }
    let (tape, injected) = {
        let mut s = h.lock();
        let now = tokio::time::Instant::now();
        while s.rest_calls.front().is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60)) {
            s.rest_calls.pop_front();
        }
        let limited = h.cfg.rest_per_minute > 0 && s.rest_calls.len() >= h.cfg.rest_per_minute;
        s.rest_calls.push_back(now);
        let injected = s.rest_failures.pop_front().or(limited.then_some(429));
        (s.tape.clone(), injected)
    };
    if let Some(code) = injected {
        let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if code == StatusCode::TOO_MANY_REQUESTS {
            return Err(Box::new(rest_error(
                code,
                "ERROR",
                "You've exceeded the maximum requests per minute, please wait or upgrade your subscription to continue. https://polygon.io/pricing",
            )));
        }
        return Err(Box::new(rest_error(code, "ERROR", "Unexpected error")));
    }
    if !h.cfg.history {
        return Err(Box::new(not_entitled()));
    }
    let Some(cursor) = q.get("cursor") else { return Ok((tape, q)) };
    let decoded = URL_SAFE_NO_PAD.decode(cursor.as_bytes()).ok().and_then(|b| String::from_utf8(b).ok());
    match decoded {
        Some(d) => Ok((tape, url_params(&d))),
        None => Err(Box::new(rest_error(StatusCode::BAD_REQUEST, "ERROR", "Invalid cursor"))),
    }
}

/// Polygon's answer to a request the plan does not cover.
fn not_entitled() -> Response {
    rest_error(
        StatusCode::FORBIDDEN,
        "NOT_AUTHORIZED",
        "You are not entitled to this data. Please upgrade your plan at https://massive.com/pricing",
    )
}

/// The tape and the parameters of a request that passed [`gate`].
type Passed = (Option<Arc<Tape>>, HashMap<String, String>);

/// The `limit` parameter (1 to 50,000; `default` without it), or the 400 Polygon answers.
fn limit(q: &HashMap<String, String>, default: u64) -> Result<u64, Box<Response>> {
    match q.get("limit").map(|l| l.parse::<u64>()) {
        None => Ok(default),
        Some(Ok(l)) if (1..=50_000).contains(&l) => Ok(l),
        Some(_) => Err(Box::new(rest_error(StatusCode::BAD_REQUEST, "ERROR", "limit must be between 1 and 50000"))),
    }
}

/// A next page's URL: `path` on the host the request came to, with `params` in its cursor.
fn next_url(headers: &HeaderMap, scheme: Option<Extension<Scheme>>, path: &str, mut params: Vec<String>) -> String {
    params.sort();
    let cursor = URL_SAFE_NO_PAD.encode(params.join("&"));
    let host = headers.get("host").and_then(|v| v.to_str().ok()).unwrap_or("localhost");
    let scheme = scheme.map_or("http", |Extension(Scheme(s))| s);
    format!("{scheme}://{host}{path}?cursor={cursor}")
}

/// `GET /v3/trades/{ticker}` and `GET /v3/quotes/{ticker}`: the tape's trades or NBBO quotes
/// with Polygon's parameters and paging.
async fn history(
    State(h): State<PolygonHandle>,
    Path((kind, ticker)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    scheme: Option<Extension<Scheme>>,
    headers: HeaderMap,
) -> Response {
    let kind = match kind.as_str() {
        "trades" if ticker.starts_with("X:") => Ticks::Crypto,
        "trades" => Ticks::Trades,
        "quotes" => Ticks::Quotes,
        _ => return rest_error(StatusCode::NOT_FOUND, "ERROR", "not found"),
    };
    ticks(kind, &h, &ticker, q, scheme, &headers)
}

/// Which of the tape's tick histories.
#[derive(Debug, Clone, Copy)]
enum Ticks {
    Trades,
    Quotes,
    /// The crypto cluster's trades (`X:<pair>`): timed, filtered and ordered by their exchanges'
    /// time, without SIP time or sequence number.
    Crypto,
}

/// A page of trades or quotes.
fn ticks(
    kind: Ticks,
    h: &PolygonHandle,
    ticker: &str,
    q: HashMap<String, String>,
    scheme: Option<Extension<Scheme>>,
    headers: &HeaderMap,
) -> Response {
    let (tape, q) = match gate(h, q, headers) {
        Ok(passed) => passed,
        Err(refused) => return *refused,
    };
    if matches!(kind, Ticks::Quotes) && !h.cfg.quotes {
        return not_entitled();
    }
    let order_desc = match q.get("order").map(String::as_str) {
        None | Some("desc") => true,
        Some("asc") => false,
        Some(_) => return rest_error(StatusCode::BAD_REQUEST, "ERROR", "order must be asc or desc"),
    };
    let limit = match limit(&q, 1000) {
        Ok(l) => l,
        Err(refused) => return *refused,
    };
    let mut lo = Bound::Unbounded;
    let mut hi = Bound::Unbounded;
    for (key, v) in &q {
        let Some(ns) = (key.starts_with("timestamp")).then(|| parse_ns(v)) else { continue };
        let Some(ns) = ns else {
            return rest_error(StatusCode::BAD_REQUEST, "ERROR", &format!("{key}: not a timestamp"));
        };
        match key.as_str() {
            "timestamp.gte" => lo = Bound::Included(ns),
            "timestamp.gt" => lo = Bound::Excluded(ns),
            "timestamp.lte" => hi = Bound::Included(ns),
            "timestamp.lt" => hi = Bound::Excluded(ns),
            "timestamp" if v.len() == 10 => {
                lo = Bound::Included(ns);
                hi = Bound::Excluded(ns + 86_400_000_000_000);
            }
            "timestamp" => {
                lo = Bound::Included(ns);
                hi = Bound::Included(ns);
            }
            _ => return rest_error(StatusCode::BAD_REQUEST, "ERROR", &format!("unknown parameter {key}")),
        }
    }
    // Paging position: the n the next page starts from (inclusive), in the page's order.
    let from: Option<u64> = q.get("ap").and_then(|a| a.parse().ok());
    let range = tape.as_ref().and_then(|t| match kind {
        Ticks::Trades => t.range(ticker, lo, hi, now_ns()),
        Ticks::Quotes => t.quote_range(ticker, lo, hi, now_ns()),
        Ticks::Crypto => None,
    });
    if let (Ticks::Crypto, Some(tape)) = (kind, &tape) {
        let page = CryptoPage { pair: ticker.trim_start_matches("X:"), lo, hi, desc: order_desc, limit, from };
        return crypto_trades(tape, &page, ticker, &q, scheme, headers);
    }
    let mut body = json!({"status": "OK", "request_id": request_id()});
    let Some((first, last)) = range else { return axum::Json(body).into_response() };
    let (start, end) = if order_desc {
        let top = from.map_or(last, |f| f.min(last));
        (top, top.saturating_sub(limit - 1).max(first))
    } else {
        let bottom = from.map_or(first, |f| f.max(first));
        (bottom, (bottom + limit - 1).min(last))
    };
    let ns: Vec<u64> = if order_desc { (end..=start).rev().collect() } else { (start..=end).collect() };
    let tape = tape.unwrap_or_else(|| Arc::new(Tape::new(Vec::new(), 0, 1, 0)));
    let results: Vec<serde_json::Value> = ns
        .iter()
        .filter_map(|n| match kind {
            Ticks::Trades => tape.trade(ticker, *n).map(|tr| {
                json!({"conditions": [12], "exchange": tr.exchange, "id": tr.id, "participant_timestamp": tr.participant_ns,
                       "price": price(tr.cents), "sequence_number": tr.sequence_number, "sip_timestamp": tr.sip_ns,
                       "size": tr.size, "tape": 3})
            }),
            Ticks::Crypto => None,
            Ticks::Quotes => tape.quote(ticker, *n).map(|q| {
                json!({"ask_exchange": q.ask_exchange, "ask_price": price(q.ask_cents), "ask_size": q.ask_size,
                       "bid_exchange": q.bid_exchange, "bid_price": price(q.bid_cents), "bid_size": q.bid_size,
                       "participant_timestamp": q.participant_ns, "sequence_number": q.sequence_number,
                       "sip_timestamp": q.sip_ns, "tape": 3})
            }),
        })
        .collect();
    if !results.is_empty() {
        body["results"] = serde_json::Value::Array(results);
    }
    let more = if order_desc { end > first } else { end < last };
    if more {
        let next = if order_desc { end - 1 } else { end + 1 };
        let mut params: Vec<String> =
            q.iter().filter(|(k, _)| *k != "ap" && *k != "apiKey").map(|(k, v)| format!("{k}={v}")).collect();
        params.push(format!("ap={next}"));
        let path = match kind {
            Ticks::Trades | Ticks::Crypto => format!("/v3/trades/{ticker}"),
            Ticks::Quotes => format!("/v3/quotes/{ticker}"),
        };
        body["next_url"] = json!(next_url(headers, scheme, &path, params));
    }
    axum::Json(body).into_response()
}

/// One page's request of a crypto pair's trades.
struct CryptoPage<'a> {
    pair: &'a str,
    lo: Bound<i64>,
    hi: Bound<i64>,
    desc: bool,
    limit: u64,
    /// How many of the matching trades earlier pages held.
    from: Option<u64>,
}

/// A page of a crypto pair's trades, whose times are their exchanges': every trade of the tape
/// in the range by that time, ordered by it, `limit` from the offset the cursor carries.
fn crypto_trades(
    tape: &Tape,
    page: &CryptoPage<'_>,
    ticker: &str,
    q: &HashMap<String, String>,
    scheme: Option<Extension<Scheme>>,
    headers: &HeaderMap,
) -> Response {
    let lag = tape::CRYPTO_LAG_MS.iter().max().copied().unwrap_or(0) * 1_000_000;
    // A trade's feed time is its exchange time plus at most the largest lag.
    let feed_hi = match page.hi {
        Bound::Included(t) | Bound::Excluded(t) => Bound::Included(t + lag),
        Bound::Unbounded => Bound::Unbounded,
    };
    let mut trades: Vec<TapeTrade> = tape
        .range(page.pair, page.lo, feed_hi, now_ns())
        .map(|(first, last)| (first..=last).filter_map(|n| tape.trade(page.pair, n)).collect())
        .unwrap_or_default();
    trades.retain(|t| std::ops::RangeBounds::contains(&(page.lo, page.hi), &Tape::crypto_ns(t)));
    trades.sort_by_key(|t| (Tape::crypto_ns(t), t.n));
    if page.desc {
        trades.reverse();
    }
    let skip = usize::try_from(page.from.unwrap_or(0)).unwrap_or(usize::MAX);
    let take = usize::try_from(page.limit).unwrap_or(usize::MAX);
    let results: Vec<serde_json::Value> = trades
        .iter()
        .skip(skip)
        .take(take)
        .map(|t| {
            json!({"conditions": [1 + t.n % 2], "exchange": t.exchange, "id": t.id,
                   "participant_timestamp": Tape::crypto_ns(t), "price": price(t.cents), "size": t.size})
        })
        .collect();
    let mut body = json!({"status": "OK", "request_id": request_id()});
    let next = skip.saturating_add(results.len());
    if !results.is_empty() {
        body["results"] = serde_json::Value::Array(results);
    }
    if next < trades.len() {
        let mut params: Vec<String> =
            q.iter().filter(|(k, _)| *k != "ap" && *k != "apiKey").map(|(k, v)| format!("{k}={v}")).collect();
        params.push(format!("ap={next}"));
        body["next_url"] = json!(next_url(headers, scheme, &format!("/v3/trades/{ticker}"), params));
    }
    axum::Json(body).into_response()
}

/// `GET /v2/aggs/ticker/{ticker}/range/{multiplier}/{timespan}/{from}/{to}`: the tape's minute
/// bars (the simulator serves `1/minute` only) whose start is in `[from, to]` (ms or
/// `YYYY-MM-DD`) and whose minute has ended, `sort` asc (default) or desc, `limit` bars a page;
/// a next page is `next_url` with `from` moved on and a cursor for the rest (as Polygon pages
/// aggregates).
async fn aggregates(
    State(h): State<PolygonHandle>,
    Path((ticker, multiplier, timespan, from, to)): Path<(String, String, String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
    scheme: Option<Extension<Scheme>>,
    headers: HeaderMap,
) -> Response {
    let (tape, q) = match gate(&h, q, &headers) {
        Ok(passed) => passed,
        Err(refused) => return *refused,
    };
    if (multiplier.as_str(), timespan.as_str()) != ("1", "minute") {
        return rest_error(StatusCode::BAD_REQUEST, "ERROR", "the simulator serves 1/minute aggregates only");
    }
    let ms = |v: &str| parse_ns(v).map(|ns| if v.len() == 10 { ns / 1_000_000 } else { ns });
    let (Some(from), Some(to)) = (ms(&from), ms(&to).map(|t| if to.len() == 10 { t + 86_399_999 } else { t })) else {
        return rest_error(StatusCode::BAD_REQUEST, "ERROR", "from and to must be ms timestamps or YYYY-MM-DD");
    };
    let desc = match q.get("sort").map(String::as_str) {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(_) => return rest_error(StatusCode::BAD_REQUEST, "ERROR", "sort must be asc or desc"),
    };
    let limit = match limit(&q, 5000) {
        Ok(l) => usize::try_from(l).unwrap_or(usize::MAX),
        Err(refused) => return *refused,
    };
    let now = now_ns();
    let first_minute = from.div_euclid(60_000) * 60_000 + if from.rem_euclid(60_000) == 0 { 0 } else { 60_000 };
    let mut starts: Vec<i64> =
        (0..).map(|i| first_minute + i * 60_000).take_while(|s| *s <= to && (*s + 60_000) * 1_000_000 <= now).collect();
    if desc {
        starts.reverse();
    }
    let mut bars = Vec::new();
    let mut next_from = None;
    for start in starts {
        if bars.len() == limit {
            next_from = Some(start);
            break;
        }
        if let Some(b) = tape.as_ref().and_then(|t| t.minute_bar(&ticker, start, now)) {
            bars.push(json!({"v": b.volume, "vw": b.vwap, "o": price(b.open), "c": price(b.close), "h": price(b.high),
                             "l": price(b.low), "t": b.start_ms, "n": b.trades}));
        }
    }
    let mut body = json!({"ticker": ticker, "adjusted": q.get("adjusted").is_none_or(|a| a != "false"),
        "queryCount": bars.len(), "resultsCount": bars.len(), "status": "OK", "request_id": request_id()});
    if !bars.is_empty() {
        body["results"] = serde_json::Value::Array(bars);
    }
    if let Some(next) = next_from {
        let (lo, hi) = if desc { (from, next) } else { (next, to) };
        let params: Vec<String> = q.iter().filter(|(k, _)| *k != "apiKey").map(|(k, v)| format!("{k}={v}")).collect();
        let path = format!("/v2/aggs/ticker/{ticker}/range/1/minute/{lo}/{hi}");
        body["next_url"] = json!(next_url(&headers, scheme, &path, params));
    }
    axum::Json(body).into_response()
}

fn url_params(query: &str) -> HashMap<String, String> {
    query.split('&').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// The symbol of the `sent`-th trade (round-robin) and its next sequence number.
fn next_trade<'f>(f: &'f Firehose, seq: &mut HashMap<String, u64>, sent: u64) -> (&'f String, u64) {
    let sym = &f.symbols[usize::try_from(sent).unwrap_or(0) % f.symbols.len().max(1)];
    let q = seq.entry(sym.clone()).or_insert(0);
    *q += 1;
    (sym, *q)
}

/// One firehose frame of trades, round-robin over the symbols, written directly (the
/// simulator must not be the bottleneck of a benchmark).
fn firehose_frame(f: &Firehose, seq: &mut HashMap<String, u64>, sent: &mut u64) -> String {
    use std::fmt::Write as _;
    if f.demo {
        return demo_frame(f, seq, sent);
    }
    let now_ms = chrono::Utc::now().timestamp_millis();
    let mut out = String::with_capacity(f.events_per_frame * 128 + 2);
    out.push('[');
    for n in 0..f.events_per_frame {
        if f.total > 0 && *sent >= f.total {
            break;
        }
        let (sym, q) = next_trade(f, seq, *sent);
        let cents = 10_000 + (q % 1000);
        if n > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            r#"{{"ev":"T","sym":"{sym}","x":12,"i":"{q}","z":3,"p":{}.{:02},"s":100,"c":[0,12],"t":{now_ms},"q":{q}}}"#,
            cents / 100,
            cents % 100
        );
        *sent += 1;
    }
    out.push(']');
    out
}

/// A small deterministic generator (xorshift64*), seeded per symbol and step: demo data needs
/// variety, not cryptographic randomness.
fn noise(seed: u64) -> f64 {
    let mut x = seed ^ 0x9E37_79B9_7F4A_7C15;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
}

/// A symbol's price level: 20–620 USD from its name.
fn base_price(sym: &str) -> f64 {
    let h = sym.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    20.0 + noise(h) * 600.0
}

/// Demo trades with quotes: per symbol a random walk (±0.1 % a step, around its own level),
/// sizes from 1 share to a few round lots, a quote a cent or two around each trade.
fn demo_frame(f: &Firehose, seq: &mut HashMap<String, u64>, sent: &mut u64) -> String {
    use std::fmt::Write as _;
    let now_ms = chrono::Utc::now().timestamp_millis();
    let mut out = String::with_capacity(f.events_per_frame * 256 + 2);
    out.push('[');
    for n in 0..f.events_per_frame {
        if f.total > 0 && *sent >= f.total {
            break;
        }
        let (sym, q) = next_trade(f, seq, *sent);
        // The walk's position, in millionths of the symbol's level (0.5x to 1.5x).
        let w = seq.entry(format!("{sym}#walk")).or_insert(1_000_000);
        let step = noise(*w ^ sent.rotate_left(17) ^ q) - 0.5;
        *w = (*w as i64 + (step * 2000.0) as i64).clamp(500_000, 1_500_000) as u64;
        let price = (base_price(sym) * (*w as f64) / 1_000_000.0 * 100.0).round() / 100.0;
        let r = noise(sent.wrapping_mul(31) ^ 7);
        let size = if r < 0.3 { 1 + (r * 300.0) as u64 } else { 100 * (1 + (r * 10.0) as u64) };
        let spread = 0.01 + (noise(*sent ^ 99) * 2.0).floor() / 100.0;
        if n > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            r#"{{"ev":"Q","sym":"{sym}","bx":12,"bp":{bp:.2},"bs":{bs},"ax":11,"ap":{ap:.2},"as":{as_},"c":0,"t":{now_ms},"q":{q},"z":3}},{{"ev":"T","sym":"{sym}","x":12,"i":"{q}","z":3,"p":{price:.2},"s":{size},"c":[0,12],"t":{now_ms},"q":{q}}}"#,
            bp = price - spread,
            ap = price + spread,
            bs = 1 + (r * 7.0) as u64,
            as_ = 1 + (noise(*sent ^ 5) * 7.0) as u64,
        );
        *sent += 1;
    }
    out.push(']');
    out
}

#[cfg(test)]
mod demo_tests {
    use super::*;

    #[test]
    fn demo_data_looks_like_a_market() {
        let f = Firehose {
            symbols: vec!["AAPL".into(), "MSFT".into()],
            events_per_frame: 200,
            frames_per_sec: 0,
            total: 0,
            demo: true,
        };
        let (mut seq, mut sent) = (HashMap::new(), 0);
        let frame: Vec<serde_json::Value> = serde_json::from_str(&firehose_frame(&f, &mut seq, &mut sent)).unwrap();
        let trades: Vec<&serde_json::Value> = frame.iter().filter(|e| e["ev"] == "T").collect();
        let quotes = frame.iter().filter(|e| e["ev"] == "Q").count();
        assert_eq!((trades.len(), quotes), (200, 200), "a quote with each trade");
        let prices = |sym: &str| -> Vec<f64> {
            trades.iter().filter(|t| t["sym"] == sym).map(|t| t["p"].as_f64().unwrap()).collect()
        };
        let (aapl, msft) = (prices("AAPL"), prices("MSFT"));
        assert!((aapl[0] - msft[0]).abs() > 1.0, "own price levels: {} vs {}", aapl[0], msft[0]);
        assert!(aapl.windows(2).any(|w| w[0] != w[1]), "prices move");
        let sizes: std::collections::HashSet<u64> = trades.iter().map(|t| t["s"].as_u64().unwrap()).collect();
        assert!(sizes.len() > 5, "varied sizes: {sizes:?}");
        for e in frame.iter().filter(|e| e["ev"] == "Q") {
            assert!(e["bp"].as_f64().unwrap() < e["ap"].as_f64().unwrap());
        }
    }
}
