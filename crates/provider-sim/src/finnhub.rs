//! Finnhub WebSocket simulator (docs/providers.md, market-data WebSockets), mounted at `/` (`ws://…/?token=KEY`).
//!
//! A wrong or missing token is refused with HTTP 401 on the upgrade. Clients subscribe with
//! `{"type":"subscribe","symbol":"AAPL"}` (no acknowledgement); past `max_symbols` the server
//! answers `{"msg":"Subscribing to too many symbols","type":"error"}`. Tests push trade
//! messages, `{"type":"ping"}` keepalives, or drop connections.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::extract::ws::{Message, Utf8Bytes, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;

/// Simulator settings.
#[derive(Debug, Clone)]
pub struct FinnhubConfig {
    /// The token that is accepted.
    pub token: String,
    /// Symbols a connection may subscribe to (the free plan allows about 50).
    pub max_symbols: usize,
}

impl Default for FinnhubConfig {
    fn default() -> Self {
        Self { token: "demo".into(), max_symbols: 50 }
    }
}

enum Cmd {
    Send(Message),
    Drop,
}

#[derive(Default)]
struct Shared {
    conns: HashMap<u64, (Vec<String>, mpsc::UnboundedSender<Cmd>)>,
    client_messages: Vec<String>,
    upgrades_refused: usize,
}

/// Control of a running Finnhub simulator. Cheap to clone.
#[derive(Clone)]
pub struct FinnhubHandle {
    cfg: Arc<FinnhubConfig>,
    shared: Arc<Mutex<Shared>>,
    next_id: Arc<AtomicU64>,
}

impl std::fmt::Debug for FinnhubHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FinnhubHandle").finish_non_exhaustive()
    }
}

impl FinnhubHandle {
    /// A simulator with `cfg`; mount [`FinnhubHandle::router`].
    pub fn new(cfg: FinnhubConfig) -> Self {
        Self { cfg: Arc::new(cfg), shared: Arc::default(), next_id: Arc::new(AtomicU64::new(1)) }
    }

    /// The route: `GET /?token=…` (WebSocket upgrade).
    pub fn router(&self) -> Router {
        Router::new().route("/", get(upgrade)).with_state(self.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Symbols subscribed on each open connection.
    pub fn subscriptions(&self) -> Vec<Vec<String>> {
        self.lock().conns.values().map(|(s, _)| s.clone()).collect()
    }

    /// Messages clients sent, oldest first.
    pub fn client_messages(&self) -> Vec<String> {
        self.lock().client_messages.clone()
    }

    /// Upgrades refused for a bad token.
    pub fn upgrades_refused(&self) -> usize {
        self.lock().upgrades_refused
    }

    /// Sends a text frame to every connection; returns how many got it.
    pub fn push(&self, frame: &str) -> usize {
        let m = Message::Text(Utf8Bytes::from(frame));
        self.lock().conns.values().filter(|(_, tx)| tx.send(Cmd::Send(m.clone())).is_ok()).count()
    }

    /// Sends the `{"type":"ping"}` keepalive.
    pub fn ping(&self) -> usize {
        self.push(r#"{"type":"ping"}"#)
    }

    /// Drops every connection without a close frame.
    pub fn drop_all(&self) {
        for (_, tx) in self.lock().conns.values() {
            let _ = tx.send(Cmd::Drop);
        }
    }
}

async fn upgrade(
    State(h): State<FinnhubHandle>,
    Query(q): Query<HashMap<String, String>>,
    ws: WebSocketUpgrade,
) -> Response {
    if q.get("token").map(String::as_str) != Some(h.cfg.token.as_str()) {
        h.lock().upgrades_refused += 1;
        return (StatusCode::UNAUTHORIZED, "Unauthorized").into_response();
    }
    ws.on_upgrade(move |socket| async move {
        let id = h.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, mut cmds) = mpsc::unbounded_channel();
        h.lock().conns.insert(id, (Vec::new(), tx));
        let (mut out, mut inp) = socket.split();
        loop {
            tokio::select! {
                msg = inp.next() => {
                    let Some(Ok(Message::Text(text))) = msg else {
                        if matches!(msg, Some(Ok(_))) { continue }
                        break;
                    };
                    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                    let too_many = {
                        let mut s = h.lock();
                        s.client_messages.push(text.to_string());
                        let Some((subs, _)) = s.conns.get_mut(&id) else { break };
                        match (v["type"].as_str(), v["symbol"].as_str()) {
                            (Some("subscribe"), Some(_)) if subs.len() >= h.cfg.max_symbols => true,
                            (Some("subscribe"), Some(sym)) => { subs.push(sym.to_string()); false }
                            (Some("unsubscribe"), Some(sym)) => { subs.retain(|s| s != sym); false }
                            _ => false,
                        }
                    };
                    if too_many {
                        let err = r#"{"msg":"Subscribing to too many symbols","type":"error"}"#;
                        if out.send(Message::Text(Utf8Bytes::from(err))).await.is_err() { break }
                    }
                }
                cmd = cmds.recv() => match cmd {
                    Some(Cmd::Send(m)) => if out.send(m).await.is_err() { break },
                    Some(Cmd::Drop) | None => break,
                },
            }
        }
        h.lock().conns.remove(&id);
    })
}
