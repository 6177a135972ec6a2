//! The shared HTTP client: pooling, timeouts, gzip, a redirect limit, and bodies read with a
//! size cap (applied after decompression, so a small gzip bomb cannot expand without bound).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use reqwest::header::HeaderMap;

/// HTTP client settings.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// `User-Agent` sent with every request.
    pub user_agent: String,
    /// Whole-request timeout (connect + headers + body).
    pub timeout: Duration,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Largest accepted body, after decompression.
    pub max_body_bytes: usize,
    /// Redirects followed at most.
    pub max_redirects: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            user_agent: concat!("finstream-ingest/", env!("CARGO_PKG_VERSION")).into(),
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            max_body_bytes: 16 * 1024 * 1024,
            max_redirects: 5,
        }
    }
}

/// Why a request produced no response.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Connect, TLS, timeout or reset: worth retrying.
    #[error("request failed: {0}")]
    Transport(String),
    /// A guard of the client (e.g. the SSRF guard in its resolver) refused the target: retrying
    /// cannot help.
    #[error("{0}")]
    Refused(Refused),
    /// The body exceeded the cap.
    #[error("response body larger than {limit} bytes")]
    TooLarge {
        /// The cap.
        limit: usize,
    },
}

/// A guard refused a request's target (raised by a client's resolver or redirect policy and
/// found again in reqwest's error chain by [`fetch`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refused by the SSRF guard: {0}")]
pub struct Refused(pub String);

/// Finds a [`Refused`] in an error's source chain.
pub fn refused_in(e: &(dyn std::error::Error + 'static)) -> Option<Refused> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<Refused>() {
            return Some(r.clone());
        }
        // `io::Error::source` skips the error it wraps; look at it directly.
        if let Some(inner) = err.downcast_ref::<std::io::Error>().and_then(std::io::Error::get_ref)
            && let Some(r) = inner.downcast_ref::<Refused>()
        {
            return Some(r.clone());
        }
        cur = err.source();
    }
    None
}

/// A response with its body fully read.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// Body (decompressed).
    pub body: Bytes,
    /// When the response headers arrived.
    pub received_at: DateTime<Utc>,
}

impl HttpResponse {
    /// A header as text, if present and valid.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Builds the client (trusting the process's TLS roots, see [`crate::tls`]).
pub fn client(cfg: &HttpConfig) -> Result<reqwest::Client, reqwest::Error> {
    builder()
        .user_agent(cfg.user_agent.clone())
        .timeout(cfg.timeout)
        .connect_timeout(cfg.connect_timeout)
        .gzip(true)
        .redirect(reqwest::redirect::Policy::limited(cfg.max_redirects))
        .build()
}

/// A reqwest builder with the process's TLS configuration (built-in, system and
/// `tls.extra_ca_file` roots). Every HTTPS client of the project starts here.
pub fn builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder().use_preconfigured_tls(crate::tls::client_config().as_ref().clone())
}

/// Sends `req` and reads the body, refusing bodies over `max_body_bytes`. Errors never include
/// the URL (it may carry an API key in its query).
pub async fn fetch(req: reqwest::RequestBuilder, max_body_bytes: usize) -> Result<HttpResponse, FetchError> {
    let mut resp = req.send().await.map_err(|e| match refused_in(&e) {
        Some(r) => FetchError::Refused(r),
        None => FetchError::Transport(describe(&e)),
    })?;
    let received_at = Utc::now();
    if resp.content_length().is_some_and(|n| n > max_body_bytes as u64) {
        return Err(FetchError::TooLarge { limit: max_body_bytes });
    }
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let mut body = BytesMut::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| FetchError::Transport(describe(&e)))? {
        if body.len() + chunk.len() > max_body_bytes {
            return Err(FetchError::TooLarge { limit: max_body_bytes });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(HttpResponse { status, headers, body: body.freeze(), received_at })
}

/// A reqwest error without its URL.
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_redirect() {
        "too many redirects"
    } else if e.is_decode() || e.is_body() {
        "body could not be read"
    } else {
        "request error"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() { kind.to_string() } else { format!("{kind}: {detail}") }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use axum::Router;
    use axum::routing::get;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(data).expect("gzip");
        enc.finish().expect("gzip")
    }

    async fn serve() -> String {
        let bomb = gzip(&vec![0u8; 8 << 20]);
        let small = gzip(b"{\"ok\":true}");
        let app = Router::new()
            .route("/big", get(|| async { vec![b'x'; 2 << 20] }))
            .route("/bomb", get(move || async move { ([("content-encoding", "gzip")], bomb) }))
            .route("/small", get(move || async move { ([("content-encoding", "gzip")], small) }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn bodies_are_capped_after_decompression() {
        let base = serve().await;
        let c = client(&HttpConfig::default()).expect("client");
        let cap = 1 << 20;
        assert!(matches!(fetch(c.get(format!("{base}/big")), cap).await, Err(FetchError::TooLarge { .. })));
        // 8 MiB of zeros is ~8 KiB gzipped: the cap applies to what it expands to.
        let bomb = fetch(c.get(format!("{base}/bomb")), cap).await;
        assert!(matches!(bomb, Err(FetchError::TooLarge { limit }) if limit == cap), "{bomb:?}");
        let ok = fetch(c.get(format!("{base}/small")), cap).await.expect("small body");
        assert_eq!(&ok.body[..], b"{\"ok\":true}", "decompressed");
    }

    #[tokio::test]
    async fn errors_never_show_the_url() {
        let c = client(&HttpConfig { connect_timeout: Duration::from_millis(500), ..HttpConfig::default() })
            .expect("client");
        let err = fetch(c.get("http://127.0.0.1:9/query?apikey=SECRET-KEY"), 1024).await.expect_err("closed port");
        let text = err.to_string();
        assert!(!text.contains("SECRET-KEY") && !text.contains("apikey"), "{text}");
    }
}
