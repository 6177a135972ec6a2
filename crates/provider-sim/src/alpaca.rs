//! Alpaca market data v2 WebSocket simulator (docs/providers.md, market-data WebSockets), JSON mode, at `/v2/{feed}`.
//!
//! `[{"T":"success","msg":"connected"}]` on open; auth with key + secret within the timeout
//! (else 404 and close); a wrong key gets 402 and close; a second authenticated connection of
//! the same key gets 406 as the reply to its auth (the first stays); subscribe before auth gets
//! 401; past `max_symbols` a subscribe gets 405 and changes nothing; otherwise the
//! `subscription` message lists the whole current set (`corrections` and `cancelErrors` follow
//! `trades`). `refuse_auth_with` makes every auth fail with a given code (409, 410, 411…).
//!
//! With a [`Tape`] ([`AlpacaHandle::tape`]) the market runs on a clock: subscribed connections
//! stream the trades of their `trades` symbols as they happen (`{"T":"t","S":…,"i":…,"x":…,
//! "p":…,"s":…,"t":"…Z","c":[…],"z":"C"}`, `t` to the nanosecond), and the data API serves the
//! same trades as history: `GET /v2/stocks/trades` (`feed` iex, sip, otc or boats) and
//! `GET /v1beta3/crypto/{loc}/trades` (no `x`, a taker side `tks`), with `symbols`, inclusive
//! RFC 3339 `start`/`end`, `limit` (1–10,000, for the whole response), results ordered by
//! symbol then time, and an opaque `next_page_token` (`page_token` continues). The keys travel
//! in `APCA-API-KEY-ID` / `APCA-API-SECRET-KEY` (else 403 `forbidden`); `fail_rest` injects
//! statuses (429 `rate limit exceeded`); a plan without `history` gets the free plan's 403
//! `subscription does not permit querying recent SIP data` for the latest 15 minutes.

use std::collections::{HashMap, VecDeque};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{Message, Utf8Bytes, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::SecondsFormat;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::tape::{Tape, TapeTrade};

/// Simulator settings.
#[derive(Debug, Clone)]
pub struct AlpacaConfig {
    /// Accepted key id.
    pub key: String,
    /// Accepted secret.
    pub secret: String,
    /// Time a client has to authenticate.
    pub auth_timeout: Duration,
    /// Symbols a connection may subscribe to (trades + quotes + bars, distinct).
    pub max_symbols: usize,
    /// Answer every auth with this error instead (e.g. `(409, "insufficient subscription")`).
    pub refuse_auth_with: Option<(u16, String)>,
    /// The plan may query the latest 15 minutes of history (false: the free plan's 403).
    pub history: bool,
}

impl Default for AlpacaConfig {
    fn default() -> Self {
        Self {
            key: "demo".into(),
            secret: "demo".into(),
            auth_timeout: Duration::from_secs(10),
            max_symbols: 30,
            refuse_auth_with: None,
            history: true,
        }
    }
}

enum Cmd {
    Send(Message),
    Drop,
}

#[derive(Default)]
struct Shared {
    /// Authenticated connections: id → (subscribed, commands).
    conns: HashMap<u64, (bool, mpsc::UnboundedSender<Cmd>)>,
    client_messages: Vec<String>,
    tape: Option<Arc<Tape>>,
    /// Statuses the next data API calls answer with (injected failures).
    rest_failures: VecDeque<u16>,
}

/// Control of a running Alpaca simulator. Cheap to clone.
#[derive(Clone)]
pub struct AlpacaHandle {
    cfg: Arc<AlpacaConfig>,
    shared: Arc<Mutex<Shared>>,
    next_id: Arc<AtomicU64>,
}

impl std::fmt::Debug for AlpacaHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlpacaHandle").finish_non_exhaustive()
    }
}

fn one(v: Value) -> Message {
    Message::Text(Utf8Bytes::from(json!([v]).to_string()))
}

fn error(code: u16, msg: &str) -> Message {
    one(json!({"T": "error", "code": code, "msg": msg}))
}

impl AlpacaHandle {
    /// A simulator with `cfg`; mount [`AlpacaHandle::router`].
    pub fn new(cfg: AlpacaConfig) -> Self {
        Self { cfg: Arc::new(cfg), shared: Arc::default(), next_id: Arc::new(AtomicU64::new(1)) }
    }

    /// The routes: `GET /v2/{feed}` and `GET /v1beta3/crypto/{loc}` (WebSocket upgrade; feeds
    /// iex, sip, test, …), and the data API's historical trades of the tape.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/v2/stocks/trades", get(stock_trades))
            .route("/v1beta3/crypto/{loc}/trades", get(crypto_trades))
            .route("/v2/{feed}", get(upgrade))
            .route("/v1beta3/crypto/{loc}", get(upgrade))
            .with_state(self.clone())
    }

    /// Runs the market on `tape`: subscribed connections stream its trades as they happen, and
    /// the data API serves its history.
    pub fn tape(&self, tape: Tape) {
        self.lock().tape = Some(Arc::new(tape));
    }

    /// The next data API calls answer with these statuses instead (429, 500, …), one each.
    pub fn fail_rest(&self, statuses: &[u16]) {
        self.lock().rest_failures.extend(statuses);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Connections with a live subscription.
    pub fn subscribed_connections(&self) -> usize {
        self.lock().conns.values().filter(|(s, _)| *s).count()
    }

    /// Messages clients sent, oldest first.
    pub fn client_messages(&self) -> Vec<String> {
        self.lock().client_messages.clone()
    }

    /// Sends a text frame to every subscribed connection; how many got it.
    pub fn push(&self, frame: &str) -> usize {
        let m = Message::Text(Utf8Bytes::from(frame));
        self.lock().conns.values().filter(|(s, tx)| *s && tx.send(Cmd::Send(m.clone())).is_ok()).count()
    }

    /// Drops every connection without a close frame.
    pub fn drop_all(&self) {
        for (_, tx) in self.lock().conns.values() {
            let _ = tx.send(Cmd::Drop);
        }
    }
}

async fn upgrade(State(h): State<AlpacaHandle>, uri: axum::http::Uri, ws: WebSocketUpgrade) -> Response {
    let crypto = uri.path().starts_with("/v1beta3/crypto");
    ws.on_upgrade(move |socket| async move {
        let id = h.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, mut cmds) = mpsc::unbounded_channel();
        let (mut out, mut inp) = socket.split();
        if out.send(one(json!({"T": "success", "msg": "connected"}))).await.is_err() {
            return;
        }
        let deadline = tokio::time::sleep(h.cfg.auth_timeout);
        tokio::pin!(deadline);
        let mut authed = false;
        let mut set: HashMap<&'static str, Vec<String>> = HashMap::new();
        // The tape: the next n to send per symbol of `trades`.
        let mut tape_next: HashMap<String, u64> = HashMap::new();
        let mut tape_tick = tokio::time::interval(Duration::from_millis(5));
        loop {
            let tape = if authed { h.lock().tape.clone() } else { None };
            tokio::select! {
                msg = inp.next() => {
                    let Some(Ok(msg)) = msg else { break };
                    let Message::Text(text) = msg else { continue };
                    h.lock().client_messages.push(text.to_string());
                    let v: Value = serde_json::from_str(&text).unwrap_or_default();
                    let reply = match v["action"].as_str() {
                        Some("auth") => {
                            if let Some((code, msg)) = &h.cfg.refuse_auth_with {
                                let _ = out.send(error(*code, msg)).await;
                                break;
                            }
                            if v["key"] != h.cfg.key.as_str() || v["secret"] != h.cfg.secret.as_str() {
                                let _ = out.send(error(402, "auth failed")).await;
                                break;
                            }
                            if !h.lock().conns.is_empty() {
                                let _ = out.send(error(406, "connection limit exceeded")).await;
                                break;
                            }
                            authed = true;
                            h.lock().conns.insert(id, (false, tx.clone()));
                            one(json!({"T": "success", "msg": "authenticated"}))
                        }
                        Some("subscribe") if !authed => error(401, "not authenticated"),
                        Some("subscribe") => {
                            let mut next = set.clone();
                            for k in ["trades", "quotes", "bars"] {
                                for s in v[k].as_array().into_iter().flatten().filter_map(Value::as_str) {
                                    let e = next.entry(k).or_default();
                                    if !e.iter().any(|x| x == s) { e.push(s.to_string()); }
                                }
                            }
                            let mut distinct: Vec<&String> = next.values().flatten().collect();
                            distinct.sort();
                            distinct.dedup();
                            if distinct.len() > h.cfg.max_symbols {
                                error(405, "symbol limit exceeded")
                            } else {
                                set = next;
                                if let Some(c) = h.lock().conns.get_mut(&id) { c.0 = true; }
                                if let Some(t) = &tape {
                                    let now = now_ns();
                                    for s in set.get("trades").into_iter().flatten() {
                                        for sym in t.symbols().iter().filter(|x| s == "*" || *x == s) {
                                            tape_next.entry(sym.clone()).or_insert_with(|| t.count_at(sym, now) + 1);
                                        }
                                    }
                                }
                                let l = |k: &str| json!(set.get(k).cloned().unwrap_or_default());
                                one(json!({"T": "subscription", "trades": l("trades"), "quotes": l("quotes"), "bars": l("bars"),
                                    "updatedBars": [], "dailyBars": [], "statuses": [], "lulds": [],
                                    "corrections": l("trades"), "cancelErrors": l("trades")}))
                            }
                        }
                        _ => error(400, "invalid syntax"),
                    };
                    if out.send(reply).await.is_err() { break }
                }
                cmd = cmds.recv() => match cmd {
                    Some(Cmd::Send(m)) => if out.send(m).await.is_err() { break },
                    Some(Cmd::Drop) | None => break,
                },
                () = &mut deadline, if !authed => {
                    let _ = out.send(error(404, "auth timeout")).await;
                    break;
                }
                _ = tape_tick.tick(), if tape.is_some() && !tape_next.is_empty() => {
                    let Some(t) = &tape else { continue };
                    if let Some(frame) = tape_frame(t, &mut tape_next, crypto)
                        && out.send(Message::Text(Utf8Bytes::from(frame))).await.is_err()
                    {
                        break;
                    }
                }
            }
        }
        h.lock().conns.remove(&id);
    })
}

fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

/// The venue letters of the tape's exchanges (10–13).
const VENUES: [&str; 4] = ["K", "P", "Q", "V"];

/// A tape trade as Alpaca writes it, in the stream (`with_type`) or in the history.
fn trade_json(sym: Option<&str>, tr: &TapeTrade, crypto: bool) -> Value {
    let t = chrono::DateTime::from_timestamp_nanos(tr.sip_ns).to_rfc3339_opts(SecondsFormat::Nanos, true);
    let id: i64 = tr.id.parse().unwrap_or_default();
    let price = serde_json::Number::from_f64(tr.cents as f64 / 100.0).map_or(Value::Null, Value::Number);
    let mut v = if crypto {
        json!({"i": id, "p": price, "s": tr.size, "t": t, "tks": if tr.n.is_multiple_of(2) { "B" } else { "S" }})
    } else {
        let x = VENUES[usize::try_from(tr.exchange % 4).unwrap_or(0)];
        json!({"i": id, "x": x, "p": price, "s": tr.size, "t": t, "c": ["@"], "z": "C"})
    };
    if let Some(sym) = sym {
        v["T"] = json!("t");
        v["S"] = json!(sym);
    }
    v
}

/// The trades of the subscribed symbols that happened since the last frame, in time order, as
/// one frame (`None` when there are none).
fn tape_frame(t: &Tape, next: &mut HashMap<String, u64>, crypto: bool) -> Option<String> {
    let trades = t.due_trades(next, now_ns());
    if trades.is_empty() {
        return None;
    }
    let events: Vec<Value> = trades.iter().map(|(s, tr)| trade_json(Some(s), tr, crypto)).collect();
    Some(Value::Array(events).to_string())
}

/// Alpaca's error body.
fn rest_error(code: StatusCode, message: &str) -> Response {
    (code, axum::Json(json!({"message": message}))).into_response()
}

/// `start`/`end`: RFC 3339 or `YYYY-MM-DD` (that UTC day's midnight).
fn parse_time(v: &str) -> Option<i64> {
    if let Ok(d) = chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        return d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_nanos_opt();
    }
    chrono::DateTime::parse_from_rfc3339(v).ok()?.timestamp_nanos_opt()
}

async fn stock_trades(
    State(h): State<AlpacaHandle>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    match q.get("feed").map(String::as_str) {
        None | Some("iex" | "sip" | "otc" | "boats") => history(&h, &q, &headers, false),
        Some(_) => rest_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid feed"),
    }
}

async fn crypto_trades(
    State(h): State<AlpacaHandle>,
    Path(_loc): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    history(&h, &q, &headers, true)
}

/// The tape's trades of `symbols` in [`start`, `end`], by symbol then time, `limit` in all.
fn history(h: &AlpacaHandle, q: &HashMap<String, String>, headers: &HeaderMap, crypto: bool) -> Response {
    let header = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if header("apca-api-key-id") != h.cfg.key || header("apca-api-secret-key") != h.cfg.secret {
        return rest_error(StatusCode::FORBIDDEN, "forbidden");
    }
    let (tape, injected) = {
        let mut s = h.lock();
        let injected = s.rest_failures.pop_front();
        (s.tape.clone(), injected)
    };
    if let Some(code) = injected {
        let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let text = if code == StatusCode::TOO_MANY_REQUESTS { "rate limit exceeded" } else { "internal server error" };
        return rest_error(code, text);
    }
    let Some(symbols) = q.get("symbols").filter(|s| !s.is_empty()) else {
        return rest_error(StatusCode::BAD_REQUEST, "missing symbols");
    };
    let mut symbols: Vec<&str> = symbols.split(',').collect();
    symbols.sort_unstable();
    symbols.dedup();
    let now = now_ns();
    let time = |k: &str, default: i64| match q.get(k) {
        None => Some(default),
        Some(v) => parse_time(v),
    };
    let (Some(start), Some(end)) = (time("start", now - now.rem_euclid(86_400_000_000_000)), time("end", now)) else {
        return rest_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid start or end");
    };
    if !h.cfg.history && !crypto && end > now - 15 * 60 * 1_000_000_000 {
        return rest_error(StatusCode::FORBIDDEN, "subscription does not permit querying recent SIP data");
    }
    let limit = match q.get("limit").map(|l| l.parse::<usize>()) {
        None => 1000,
        Some(Ok(l)) if (1..=10_000).contains(&l) => l,
        Some(_) => return rest_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid limit"),
    };
    if q.get("sort").is_some_and(|s| s != "asc") {
        return rest_error(StatusCode::UNPROCESSABLE_ENTITY, "only sort=asc is simulated");
    }
    // The token: where the page starts (a symbol of the request and its next n), opaque.
    let (mut at_symbol, mut at_n) = (0usize, 0u64);
    if let Some(token) = q.get("page_token") {
        let decoded = STANDARD.decode(token.as_bytes()).ok().and_then(|b| String::from_utf8(b).ok());
        let Some((s, n)) = decoded.as_deref().and_then(|d| d.split_once('|')) else {
            return rest_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid page token");
        };
        at_symbol = symbols.iter().position(|x| *x == s).unwrap_or(symbols.len());
        at_n = n.parse().unwrap_or(0);
    }
    let mut out = serde_json::Map::new();
    let mut left = limit;
    let mut next_token = Value::Null;
    if let Some(tape) = tape {
        'symbols: for (i, sym) in symbols.iter().enumerate().skip(at_symbol) {
            let Some((first, last)) = tape.range(sym, Bound::Included(start), Bound::Included(end), now) else {
                continue;
            };
            let from = if i == at_symbol { first.max(at_n) } else { first };
            for n in from..=last {
                if left == 0 {
                    next_token = json!(STANDARD.encode(format!("{sym}|{n}")));
                    break 'symbols;
                }
                if let Some(tr) = tape.trade(sym, n) {
                    let list = out.entry((*sym).to_string()).or_insert_with(|| json!([]));
                    if let Some(a) = list.as_array_mut() {
                        a.push(trade_json(None, &tr, crypto));
                    }
                    left -= 1;
                }
            }
        }
    }
    axum::Json(json!({"trades": out, "next_page_token": next_token})).into_response()
}
