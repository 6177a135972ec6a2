//! The HTTP endpoints: `GET /metrics` on `telemetry.metrics_addr`, `GET /health` and
//! `GET /ready` on `telemetry.health_addr` (one listener when both addresses are equal).

use std::io;
use std::net::SocketAddr;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{Health, Metrics};
use crate::config::TelemetryConfig;

/// The addresses really bound (differs from the config when it asked for port 0).
#[derive(Debug, Clone, Copy)]
pub struct ServerAddrs {
    /// Where `/metrics` is served.
    pub metrics: SocketAddr,
    /// Where `/health` and `/ready` are served.
    pub health: SocketAddr,
}

fn metrics_router(metrics: Metrics) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let m = metrics.clone();
            async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], m.render()) }
        }),
    )
}

fn health_router(health: Health) -> Router {
    let live = health.clone();
    Router::new()
        .route(
            "/health",
            get(move || {
                let l = live.liveness();
                let code = if l.status == "fatal" { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
                async move { (code, axum::Json(l)).into_response() }
            }),
        )
        .route(
            "/ready",
            get(move || {
                let r = health.readiness();
                let code = if r.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
                async move { (code, axum::Json(r)).into_response() }
            }),
        )
}

/// Binds the listeners (so a taken port fails at start, not later) and serves until `shutdown`.
/// The servers run on `tasks`.
pub async fn serve(
    cfg: &TelemetryConfig,
    metrics: Metrics,
    health: Health,
    shutdown: CancellationToken,
    tasks: &mut JoinSet<()>,
) -> io::Result<ServerAddrs> {
    let bind = |addr: SocketAddr| async move {
        TcpListener::bind(addr).await.map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
    };
    let mut listeners = Vec::new();
    let addrs = if cfg.metrics_addr == cfg.health_addr {
        let l = bind(cfg.metrics_addr).await?;
        let a = l.local_addr()?;
        listeners.push((l, metrics_router(metrics).merge(health_router(health))));
        ServerAddrs { metrics: a, health: a }
    } else {
        let lm = bind(cfg.metrics_addr).await?;
        let lh = bind(cfg.health_addr).await?;
        let addrs = ServerAddrs { metrics: lm.local_addr()?, health: lh.local_addr()? };
        listeners.push((lm, metrics_router(metrics)));
        listeners.push((lh, health_router(health)));
        addrs
    };
    for (listener, router) in listeners {
        let stop = shutdown.clone();
        tasks.spawn(async move {
            let served = axum::serve(listener, router).with_graceful_shutdown(stop.cancelled_owned()).await;
            if let Err(error) = served {
                tracing::error!(%error, "telemetry server failed");
            }
        });
    }
    Ok(addrs)
}
