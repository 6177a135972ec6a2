//! provider-sim: local stand-ins for the providers, speaking their exact wire protocols
//! (`docs/providers.md`), so that tests, benchmarks and `make run` demo mode never need
//! the network.
//!
//! This module is the harness every simulator runs in: an HTTP/WebSocket server on an address
//! of the caller's choosing (`127.0.0.1:0` in tests), a log of every request it received (tests
//! assert on it: reconnect schedules, headers, query parameters), and explicit shutdown. The
//! simulators themselves are axum routers mounted with [`Sim::start`]; the harness adds
//! `GET /_sim/health` and `GET /_sim/requests`.

pub mod alpaca;
pub mod altdata;
pub mod edgar;
pub mod finnhub;
pub mod news;
pub mod polygon;
pub mod proxy;
pub mod social;
pub mod tape;
pub mod tls;
pub mod trap;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// One request the simulator received.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LoggedRequest {
    /// When it arrived.
    pub at: DateTime<Utc>,
    /// HTTP method.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Raw query string, if any.
    pub query: Option<String>,
    /// Request headers (names lower-case).
    pub headers: Vec<(String, String)>,
}

/// The shared request log. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct RequestLog(Arc<Mutex<Vec<LoggedRequest>>>);

impl RequestLog {
    /// Everything logged so far, oldest first.
    pub fn all(&self) -> Vec<LoggedRequest> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The requests to `path`.
    pub fn to_path(&self, path: &str) -> Vec<LoggedRequest> {
        self.all().into_iter().filter(|r| r.path == path).collect()
    }

    /// The requests that carry `secret` anywhere: path, query or any header value (a leak
    /// check for credentials).
    pub fn carrying(&self, secret: &str) -> Vec<LoggedRequest> {
        self.all()
            .into_iter()
            .filter(|r| {
                r.path.contains(secret)
                    || r.query.as_deref().unwrap_or("").contains(secret)
                    || r.headers.iter().any(|(_, v)| v.contains(secret))
            })
            .collect()
    }

    fn push(&self, r: LoggedRequest) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).push(r);
    }
}

async fn log_request(State(log): State<RequestLog>, req: Request, next: Next) -> Response {
    if !req.uri().path().starts_with("/_sim/") {
        log.push(LoggedRequest {
            at: Utc::now(),
            method: req.method().to_string(),
            path: req.uri().path().to_string(),
            query: req.uri().query().map(str::to_string),
            headers: req
                .headers()
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                .collect(),
        });
    }
    next.run(req).await
}

/// The scheme clients reach the simulator by (`https` over TLS), for the absolute URLs some
/// providers return (Polygon's `next_url`): a request extension every simulator can read.
#[derive(Debug, Clone, Copy)]
pub struct Scheme(pub &'static str);

/// A running simulator server.
#[derive(Debug)]
pub struct Sim {
    /// The bound address.
    pub addr: SocketAddr,
    /// Serving `https://` and `wss://` (with a test CA's certificate) rather than plain.
    pub tls: bool,
    /// What it received.
    pub log: RequestLog,
    stop: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

impl Sim {
    /// Serves `simulators` (plus the harness routes) on `addr`, plain `http://` and `ws://`.
    pub async fn start(addr: SocketAddr, simulators: Router) -> std::io::Result<Sim> {
        Self::serve(addr, simulators, None).await
    }

    /// Serves `simulators` on `addr` over TLS (`https://`, `wss://`) with `identity`, as the
    /// real providers do.
    pub async fn start_tls(addr: SocketAddr, simulators: Router, identity: &tls::TlsIdentity) -> std::io::Result<Sim> {
        Self::serve(addr, simulators, Some(identity)).await
    }

    async fn serve(addr: SocketAddr, simulators: Router, identity: Option<&tls::TlsIdentity>) -> std::io::Result<Sim> {
        let log = RequestLog::default();
        let harness = Router::new()
            .route("/_sim/health", get(|| async { "ok" }))
            .route("/_sim/requests", get(|State(log): State<RequestLog>| async move { axum::Json(log.all()) }))
            .with_state(log.clone());
        let scheme = Scheme(if identity.is_some() { "https" } else { "http" });
        let app = simulators
            .merge(harness)
            .layer(middleware::from_fn_with_state(log.clone(), log_request))
            .layer(axum::Extension(scheme));
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let s = stop.clone();
        let task = match identity {
            None => tokio::spawn(async move {
                axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
                    .with_graceful_shutdown(s.cancelled_owned())
                    .await
            }),
            Some(identity) => {
                let listener = tls::TlsListener::new(listener, identity, stop.clone())?;
                tokio::spawn(async move {
                    axum::serve(listener, app.into_make_service()).with_graceful_shutdown(s.cancelled_owned()).await
                })
            }
        };
        Ok(Sim { addr, tls: identity.is_some(), log, stop, task })
    }

    /// `http://<addr>` of the server (`https://localhost:<port>` over TLS: the name in the test
    /// certificate).
    pub fn http_url(&self) -> String {
        if self.tls { format!("https://localhost:{}", self.addr.port()) } else { format!("http://{}", self.addr) }
    }

    /// The WebSocket URL of `path` (`""` for none, as Finnhub's URL is written):
    /// `wss://localhost:<port><path>` over TLS, `ws://<addr><path>` otherwise.
    pub fn ws_url(&self, path: &str) -> String {
        if self.tls {
            format!("wss://localhost:{}{path}", self.addr.port())
        } else {
            format!("ws://{}{path}", self.addr)
        }
    }

    /// Stops the server and waits for it.
    pub async fn stop(self) -> std::io::Result<()> {
        self.stop.cancel();
        self.task.await.unwrap_or_else(|e| Err(std::io::Error::other(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn logs_simulator_requests_but_not_harness_ones() {
        let routes = Router::new().route("/v2/everything", get(|| async { "{}" }));
        let sim = Sim::start("127.0.0.1:0".parse().unwrap(), routes).await.unwrap();
        let client = reqwest::Client::new();
        let r = client.get(format!("{}/v2/everything?q=tsla", sim.http_url())).header("X-Api-Key", "k").send().await;
        assert_eq!(r.unwrap().status(), 200);
        assert_eq!(
            client.get(format!("{}/_sim/health", sim.http_url())).send().await.unwrap().text().await.unwrap(),
            "ok"
        );
        let logged: Vec<serde_json::Value> =
            client.get(format!("{}/_sim/requests", sim.http_url())).send().await.unwrap().json().await.unwrap();
        assert_eq!(logged.len(), 1);
        assert_eq!(logged[0]["path"], "/v2/everything");
        assert_eq!(logged[0]["query"], "q=tsla");
        let got = sim.log.to_path("/v2/everything");
        assert!(got[0].headers.iter().any(|(k, v)| k == "x-api-key" && v == "k"));
        sim.stop().await.unwrap();
    }

    #[tokio::test]
    async fn serves_https_with_the_test_ca() {
        let ca = tls::TestCa::get().unwrap();
        let routes = Router::new().route("/v2/everything", get(|| async { "{}" }));
        let sim = Sim::start_tls("127.0.0.1:0".parse().unwrap(), routes, &ca.identity().unwrap()).await.unwrap();
        let pem = std::fs::read(ca.ca_file()).unwrap();
        let trusting = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
            .build()
            .unwrap();
        let url = format!("{}/v2/everything", sim.http_url());
        assert!(url.starts_with("https://localhost:"), "{url}");
        assert_eq!(trusting.get(&url).send().await.unwrap().status(), 200);
        let e = reqwest::Client::new().get(&url).send().await.expect_err("untrusted CA");
        assert!(format!("{e:?}").contains("UnknownIssuer"), "{e:?}");
        sim.stop().await.unwrap();
    }
}
