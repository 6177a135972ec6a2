//! Alpaca market data v2 WebSocket simulator (docs/providers.md, market-data WebSockets), JSON mode, at `/v2/{feed}`.
//!
//! `[{"T":"success","msg":"connected"}]` on open; auth with key + secret within the timeout
//! (else 404 and close); a wrong key gets 402 and close; a second authenticated connection of
//! the same key gets 406 as the reply to its auth (the first stays); subscribe before auth gets
//! 401; past `max_symbols` a subscribe gets 405 and changes nothing; otherwise the
//! `subscription` message lists the whole current set (`corrections` and `cancelErrors` follow
//! `trades`). `refuse_auth_with` makes every auth fail with a given code (409, 410, 411…).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message, Utf8Bytes, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;

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
}

impl Default for AlpacaConfig {
    fn default() -> Self {
        Self {
            key: "demo".into(),
            secret: "demo".into(),
            auth_timeout: Duration::from_secs(10),
            max_symbols: 30,
            refuse_auth_with: None,
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

    /// The route: `GET /v2/{feed}` (WebSocket upgrade; feeds iex, sip, test, …).
    pub fn router(&self) -> Router {
        Router::new().route("/v2/{feed}", get(upgrade)).with_state(self.clone())
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

async fn upgrade(State(h): State<AlpacaHandle>, ws: WebSocketUpgrade) -> Response {
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
        loop {
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
            }
        }
        h.lock().conns.remove(&id);
    })
}
