//! A provider that redirects elsewhere: every request to the trap's origin is answered with
//! `302 Found` to the same path and query on another origin (another port of the same host, so
//! reqwest's own host-change rule does not strip anything). Both serve TLS with the test CA and
//! log every request: a test sends a client with a sentinel credential at the origin and checks
//! that nothing carrying it reached the other one.

use axum::Router;
use axum::http::{StatusCode, Uri, header};
use axum::response::IntoResponse;

use crate::Sim;
use crate::tls::TestCa;

/// The two servers of the trap.
#[derive(Debug)]
pub struct RedirectTrap {
    /// Where clients are pointed; redirects every request.
    pub origin: Sim,
    /// Where the redirects lead; answers `200 {}`.
    pub elsewhere: Sim,
}

impl RedirectTrap {
    /// Starts both on `127.0.0.1` ports from the OS, over TLS with the test CA.
    pub async fn start() -> std::io::Result<Self> {
        let ca = TestCa::get()?;
        let any = "127.0.0.1:0".parse().map_err(std::io::Error::other)?;
        let elsewhere = Sim::start_tls(any, Router::new().fallback(|| async { "{}" }), &ca.identity()?).await?;
        let target = elsewhere.http_url();
        let redirect = Router::new().fallback(move |uri: Uri| {
            let to = format!("{target}{}", uri.path_and_query().map_or("/", |p| p.as_str()));
            async move { (StatusCode::FOUND, [(header::LOCATION, to)]).into_response() }
        });
        let origin = Sim::start_tls(any, redirect, &ca.identity()?).await?;
        Ok(Self { origin, elsewhere })
    }

    /// Panics unless the origin received exactly `requests` requests and nothing at all reached
    /// the other origin (naming any request there that carried `secret`).
    pub fn assert_only_origin_reached(&self, requests: usize, secret: &str) {
        assert_eq!(self.origin.log.all().len(), requests, "each credential went to its own origin");
        let leaks: Vec<String> = self.elsewhere.log.carrying(secret).into_iter().map(|r| r.path).collect();
        assert!(
            self.elsewhere.log.all().is_empty(),
            "requests reached the other origin; carrying the secret: {leaks:?}"
        );
    }
}
