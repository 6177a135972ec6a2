//! The shared HTTP client: pooling, timeouts, gzip, redirects that keep credentials with their
//! origin, and bodies read with a size cap (applied after decompression, so a small gzip bomb
//! cannot expand without bound).
//!
//! Credentials belong to an origin (scheme, host, port). reqwest strips only its standard
//! headers (`Authorization`, `Cookie`) when a redirect changes host; a provider key in
//! `X-Api-Key` or any custom header would follow a redirect anywhere. So every client follows a
//! redirect only within the origin of the request, never from https to http; any other
//! redirect is refused ([`Refused`], counted as `outcome="refused"`). A caller that may follow
//! other origins without credentials (an altdata source's `follow_origins`) gets the redirect
//! response back instead, and builds a new request without them.

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
/// found again in reqwest's error chain by [`fetch`]). The text says which guard and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

impl Refused {
    /// Refused by the SSRF guard (a private address, a host not allowed).
    pub fn ssrf(why: impl std::fmt::Display) -> Self {
        Self(format!("refused by the SSRF guard: {why}"))
    }

    /// Refused by the credential-origin rule (a redirect or next page to another origin, an
    /// https to http downgrade).
    pub fn origin(why: impl std::fmt::Display) -> Self {
        Self(format!("refused to leave the credentials' origin: {why}"))
    }
}

/// The origin of a URL: scheme, host and port (the default port when the URL names none).
/// Credentials are scoped to one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    /// The origin of `url` (`None` for URLs without a host).
    pub fn of(url: &url::Url) -> Option<Self> {
        Some(Self {
            scheme: url.scheme().to_ascii_lowercase(),
            host: url.host_str()?.to_ascii_lowercase(),
            port: url.port_or_known_default()?,
        })
    }

    /// Parses `https://host[:port]` (a path, if any, is ignored).
    pub fn parse(text: &str) -> Result<Self, String> {
        let u = url::Url::parse(text).map_err(|e| format!("`{text}` is not an origin URL ({e})"))?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(format!("`{text}`: only http and https origins"));
        }
        Self::of(&u).ok_or_else(|| format!("`{text}` has no host"))
    }

    /// True for `https`.
    pub fn is_https(&self) -> bool {
        self.scheme == "https"
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

/// What a redirect may do, judged against where the request started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedirectVerdict {
    /// Same origin: follow (the request's credentials may go along).
    Follow,
    /// Another origin the caller allows: hand the redirect back, to be re-requested without
    /// credentials.
    HandBack,
    /// Never: another origin not allowed, or https to http.
    Refuse(Refused),
}

/// The origin rule for one redirect hop from `chain` (the URLs so far, the first being the
/// request's) to `target`; `allowed` are the other origins the caller may follow without
/// credentials.
pub fn judge_redirect(chain: &[url::Url], target: &url::Url, allowed: &[Origin]) -> RedirectVerdict {
    let Some(first) = chain.first() else { return RedirectVerdict::Follow };
    if chain.iter().any(|u| u.scheme() == "https") && target.scheme() != "https" {
        return RedirectVerdict::Refuse(Refused::origin(format!(
            "a redirect from https to {} is never followed",
            target.scheme()
        )));
    }
    let (from, to) = (Origin::of(first), Origin::of(target));
    match (from, to) {
        (Some(f), Some(t)) if f == t => RedirectVerdict::Follow,
        (_, Some(t)) if allowed.contains(&t) => RedirectVerdict::HandBack,
        (Some(f), Some(t)) => RedirectVerdict::Refuse(Refused::origin(format!(
            "a redirect from {f} to {t}: not the request's origin and not allowed"
        ))),
        _ => RedirectVerdict::Refuse(Refused::origin("a redirect to a URL without a host")),
    }
}

/// The redirect policy of every provider client: at most `max` hops, within the request's
/// origin only (see [`judge_redirect`]).
pub fn same_origin_redirects(max: usize) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() > max {
            return attempt.error(format!("more than {max} redirects"));
        }
        match judge_redirect(attempt.previous(), attempt.url(), &[]) {
            RedirectVerdict::Follow => attempt.follow(),
            RedirectVerdict::HandBack => attempt.stop(),
            RedirectVerdict::Refuse(r) => attempt.error(r),
        }
    })
}

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
        .redirect(same_origin_redirects(cfg.max_redirects))
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

    #[test]
    fn redirects_stay_within_the_origin_of_the_credentials() {
        let u = |s: &str| url::Url::parse(s).unwrap();
        let start = [u("https://api.example.com/v1/news?apiKey=K")];
        let cdn = Origin::parse("https://cdn.example.net").unwrap();
        let verdict = |target: &str, allowed: &[Origin]| judge_redirect(&start, &u(target), allowed);
        assert_eq!(verdict("https://api.example.com/v2/news", &[]), RedirectVerdict::Follow);
        assert_eq!(
            verdict("https://API.example.com:443/x", &[]),
            RedirectVerdict::Follow,
            "same origin, spelled otherwise"
        );
        for other in ["https://evil.example.org/", "https://api.example.com:8443/", "https://sub.api.example.com/"] {
            assert!(matches!(verdict(other, &[]), RedirectVerdict::Refuse(_)), "{other}");
        }
        assert_eq!(verdict("https://cdn.example.net/file.csv", std::slice::from_ref(&cdn)), RedirectVerdict::HandBack);
        // A downgrade is refused even to an allowed or the same host.
        let down = verdict("http://api.example.com/v2/news", &[]);
        assert!(matches!(&down, RedirectVerdict::Refuse(r) if r.0.contains("https to http")), "{down:?}");
        let allowed_http = [Origin::parse("http://cdn.example.net").unwrap()];
        assert!(matches!(verdict("http://cdn.example.net/", &allowed_http), RedirectVerdict::Refuse(_)));
        assert!(Origin::parse("ftp://x").is_err() && Origin::parse("not a url").is_err());
        assert_eq!(cdn.to_string(), "https://cdn.example.net:443");
    }
}
