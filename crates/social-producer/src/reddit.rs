//! Reddit (providers.md §6): application-only OAuth2 and `/r/{sub}/new` listings, one poller per
//! subreddit, normalized to `social.post/v1`.
//!
//! - Token: `POST {auth_url}/api/v1/access_token` with HTTP Basic `client_id:client_secret` and
//!   `grant_type=client_credentials`; kept until shortly before `expires_in` and shared by every
//!   subreddit poller; refreshed early, and at once after a 401 from a listing. Errors that
//!   Reddit returns with HTTP 200 (`{"error": "invalid_grant"}`) are read as errors; a refused
//!   client is fatal.
//! - Listings: `GET {base_url}/r/{sub}/new?limit=100&raw_json=1` with `Authorization: bearer`,
//!   a descriptive User-Agent. `raw_json=1` makes text arrive unescaped. The newest 100 posts
//!   are read each poll; the group's dedup window (post fullnames) drops repeats.
//! - Rate limits: `x-ratelimit-remaining` (a float string) below 1 holds every Reddit poller
//!   for `x-ratelimit-reset` seconds; 429 (an HTML page) honours `Retry-After`.
//! - `created_utc` (float seconds) is the time; `created` is not UTC and is ignored. A post whose
//!   author is `[deleted]` or whose text is `[removed]`/`[deleted]` is kept, flagged `removed`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use ingest_core::config::Secret;
use ingest_core::http::{self, HttpResponse};
use ingest_core::record::{Engagement, Platform, SentimentSource, SocialPost};
use ingest_core::resilience::{ErrorClass, classify_http};
use ingest_core::source::{Normalized, Poller, Reject};
use ingest_core::{sentiment, text};
use serde::{Deserialize, Serialize};

/// Provider label.
pub const PROVIDER: &str = "reddit";

/// An application-only token shared by the Reddit pollers.
#[derive(Debug)]
pub struct TokenCache {
    auth_url: String,
    client_id: Secret,
    client_secret: Secret,
    max_body_bytes: usize,
    token: Mutex<Option<(String, Instant)>>,
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Debug, Deserialize)]
struct TokenResponse {
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

impl TokenCache {
    /// A cache for this client's tokens.
    pub fn new(auth_url: &str, client_id: Secret, client_secret: Secret, max_body_bytes: usize) -> Self {
        Self {
            auth_url: auth_url.trim_end_matches('/').to_string(),
            client_id,
            client_secret,
            max_body_bytes,
            token: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    fn current(&self) -> Option<String> {
        let t = self.token.lock().unwrap_or_else(PoisonError::into_inner);
        t.as_ref().filter(|(_, refresh_at)| Instant::now() < *refresh_at).map(|(v, _)| v.clone())
    }

    /// Forgets the token (a listing answered 401).
    pub fn invalidate(&self) {
        *self.token.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// A valid token, fetched if there is none or it is about to expire.
    pub async fn ensure(&self, client: &reqwest::Client) -> Result<(), (ErrorClass, String)> {
        if self.current().is_some() {
            return Ok(());
        }
        let _one_at_a_time = self.fetching.lock().await;
        if self.current().is_some() {
            return Ok(());
        }
        let req = client
            .post(format!("{}/api/v1/access_token", self.auth_url))
            .basic_auth(self.client_id.expose(), Some(self.client_secret.expose()))
            .form(&[("grant_type", "client_credentials")]);
        let resp = http::fetch(req, self.max_body_bytes)
            .await
            .map_err(|e| (ErrorClass::Retryable { after: None }, format!("token request: {e}")))?;
        if let Some(class) = classify_http(resp.status, resp.header("retry-after"), SystemTime::now()) {
            let class = if resp.status == 401 || resp.status == 403 { ErrorClass::Fatal } else { class };
            return Err((class, format!("token request: HTTP {}", resp.status)));
        }
        let body: TokenResponse = serde_json::from_slice(&resp.body)
            .map_err(|e| (ErrorClass::Retryable { after: None }, format!("token response unreadable: {e}")))?;
        match (body.access_token, body.error) {
            (Some(token), None) => {
                let ttl = Duration::from_secs(body.expires_in.unwrap_or(3600));
                // Refresh a little early: a tenth of the lifetime, at most a minute.
                let refresh_at = Instant::now() + ttl - (ttl / 10).min(Duration::from_secs(60));
                *self.token.lock().unwrap_or_else(PoisonError::into_inner) = Some((token, refresh_at));
                Ok(())
            }
            (_, Some(error)) => {
                let e = error.as_str().map(String::from).unwrap_or_else(|| error.to_string());
                let class = match e.as_str() {
                    "invalid_client" | "unauthorized_client" | "invalid_grant" | "401" => ErrorClass::Fatal,
                    _ => ErrorClass::Retryable { after: None },
                };
                Err((class, format!("Reddit refused the token request with HTTP 200: {e}")))
            }
            (None, None) => Err((ErrorClass::Retryable { after: None }, "token response without a token".into())),
        }
    }
}

/// Where the next poll starts (for the record: every poll reads the newest page).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    /// `created_utc` of the newest post seen.
    pub newest_created_utc: Option<f64>,
}

/// One subreddit's poller.
#[derive(Debug, Clone)]
pub struct Subreddit {
    name: String,
    base_url: String,
    sub: String,
    tokens: Arc<TokenCache>,
    symbols: Arc<Vec<String>>,
    interval: Duration,
}

impl Subreddit {
    /// A poller of `/r/{sub}/new`.
    pub fn new(
        base_url: &str,
        sub: &str,
        tokens: Arc<TokenCache>,
        symbols: Arc<Vec<String>>,
        interval: Duration,
    ) -> Self {
        Self {
            name: format!("reddit:{sub}"),
            base_url: base_url.trim_end_matches('/').to_string(),
            sub: sub.to_string(),
            tokens,
            symbols,
            interval,
        }
    }
}

#[derive(Debug, Deserialize)]
struct Post {
    name: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    selftext: String,
    #[serde(default)]
    author: String,
    created_utc: f64,
    #[serde(default)]
    subreddit: String,
    permalink: String,
    #[serde(default)]
    score: Option<i64>,
    #[serde(default)]
    num_comments: Option<i64>,
}

fn time_of(secs: f64) -> Option<DateTime<Utc>> {
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    let whole = secs.trunc();
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "checked finite and non-negative")]
    DateTime::from_timestamp(whole as i64, ((secs - whole) * 1e9).round().min(999_999_999.0) as u32)
}

/// One listing child (`{"kind":"t3","data":{…}}`) → `social.post/v1`.
pub fn post(child: &serde_json::Value, symbols: &[String], received_at: DateTime<Utc>) -> Result<SocialPost, String> {
    let p: Post = serde_json::from_value(child.get("data").cloned().unwrap_or_default())
        .map_err(|e| format!("malformed post: {e}"))?;
    if !p.name.starts_with("t3_") {
        return Err(format!("not a post fullname: {:?}", p.name));
    }
    let created_at = time_of(p.created_utc).ok_or_else(|| format!("`created_utc` is not a time: {}", p.created_utc))?;
    let removed_text = matches!(p.selftext.as_str(), "[removed]" | "[deleted]");
    let removed = removed_text || p.author == "[deleted]";
    let mut body = p.title.trim().to_string();
    if !p.selftext.trim().is_empty() && !removed_text {
        body.push_str("\n\n");
        body.push_str(p.selftext.trim());
    }
    let tickers = text::tickers(&body, &[], symbols);
    Ok(SocialPost {
        id: format!("reddit:{}", p.name),
        platform: Platform::Reddit,
        author: p.author,
        sentiment: Some(sentiment::score(&body)),
        sentiment_source: Some(SentimentSource::Lexicon),
        sentiment_label: None,
        removed,
        text: body,
        url: format!("https://www.reddit.com{}", p.permalink),
        created_at,
        tickers,
        engagement: Engagement { score: p.score, comments: p.num_comments, likes: None },
        community: Some(p.subreddit).filter(|s| !s.is_empty()),
        provider: PROVIDER.into(),
        received_at,
    })
}

impl Poller for Subreddit {
    type Record = SocialPost;
    type Cursor = Cursor;

    fn name(&self) -> &str {
        &self.name
    }

    fn provider(&self) -> &str {
        PROVIDER
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    fn prepare<'a>(&'a self, client: &'a reqwest::Client) -> BoxFuture<'a, Result<(), (ErrorClass, String)>> {
        Box::pin(self.tokens.ensure(client))
    }

    fn request(&self, client: &reqwest::Client, _cursor: &Cursor) -> reqwest::RequestBuilder {
        let token = self.tokens.current().unwrap_or_default();
        client
            .get(format!("{}/r/{}/new", self.base_url, self.sub))
            .query(&[("limit", "100"), ("raw_json", "1")])
            .header("Authorization", format!("bearer {token}"))
    }

    fn rate_hint(&self, resp: &HttpResponse) -> Option<Duration> {
        let remaining: f64 = resp.header("x-ratelimit-remaining")?.trim().parse().ok()?;
        let reset: f64 = resp.header("x-ratelimit-reset")?.trim().parse().ok()?;
        (remaining < 1.0 && reset.is_finite() && reset > 0.0).then(|| Duration::from_secs_f64(reset.min(600.0)))
    }

    fn classify(&self, resp: &HttpResponse, _cursor: &Cursor) -> Option<ErrorClass> {
        if resp.status == 401 {
            // The token expired or was revoked early: fetch a new one and try again at once.
            self.tokens.invalidate();
            return Some(ErrorClass::Retryable { after: Some(Duration::ZERO) });
        }
        classify_http(resp.status, resp.header("retry-after"), SystemTime::now())
    }

    fn fatal_message(&self, what: &str, _resp: Option<&HttpResponse>) -> String {
        format!("Reddit refused the application credentials ({what}); check REDDIT_CLIENT_ID and REDDIT_CLIENT_SECRET")
    }

    fn normalize(&self, resp: &HttpResponse, cursor: &Cursor) -> Result<Normalized<SocialPost, Cursor>, String> {
        let v: serde_json::Value = serde_json::from_slice(&resp.body).map_err(|e| format!("malformed listing: {e}"))?;
        let children = v.pointer("/data/children").and_then(|c| c.as_array()).ok_or("no `data.children` array")?;
        let mut out = Normalized { records: vec![], rejects: vec![], cursor: cursor.clone(), more: false };
        for child in children {
            let raw = serde_json::to_vec(child).unwrap_or_default();
            match post(child, &self.symbols, resp.received_at) {
                Ok(p) => {
                    let created = p.created_at.timestamp() as f64;
                    if out.cursor.newest_created_utc.is_none_or(|n| created > n) {
                        out.cursor.newest_created_utc = Some(created);
                    }
                    out.records.push((p, raw));
                }
                Err(reason) => out.rejects.push(Reject { raw, reason }),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use chrono::TimeZone;
    use ingest_core::record::Record;
    use reqwest::header::{HeaderMap, HeaderValue};

    use super::*;

    fn resp(status: u16, body: &[u8], headers: &[(&'static str, &'static str)]) -> HttpResponse {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(*k, HeaderValue::from_static(v));
        }
        HttpResponse {
            status,
            headers: h,
            body: Bytes::copy_from_slice(body),
            received_at: Utc.with_ymd_and_hms(2024, 1, 2, 14, 0, 0).unwrap(),
        }
    }

    fn poller() -> Subreddit {
        let tokens = Arc::new(TokenCache::new("https://auth.example", Secret::new("id"), Secret::new("s"), 1 << 20));
        Subreddit::new(
            "https://oauth.example",
            "wallstreetbets",
            tokens,
            Arc::new(vec!["AAPL".into(), "NVDA".into()]),
            Duration::from_secs(60),
        )
    }

    #[test]
    fn listing_posts_field_by_field() {
        let body = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/test_data/reddit_new.json")).unwrap();
        let n = poller().normalize(&resp(200, &body, &[]), &Cursor::default()).unwrap();
        assert_eq!((n.records.len(), n.rejects.len()), (3, 0));
        let kal = &n.records[0].0;
        assert_eq!(kal.id, "reddit:t3_5qu55p");
        assert_eq!(kal.created_at, Utc.timestamp_opt(1_485_702_323, 0).unwrap(), "created_utc, not created");
        assert_eq!(
            kal.url,
            "https://www.reddit.com/r/news/comments/5qu55p/actor_kal_penn_raises_160k_in_few_hours_for/"
        );
        assert_eq!(kal.tickers, Vec::<String>::new(), "$160k is not a ticker");
        assert_eq!(kal.engagement, Engagement { score: Some(36250), comments: Some(2798), likes: None });
        assert_eq!(kal.community.as_deref(), Some("news"));
        let wsb = &n.records[1].0;
        assert_eq!(
            wsb.text,
            "$TSLA earnings beat, NVDA to follow?\n\nDeliveries surged & margins improved. Holding AAPL too."
        );
        assert_eq!(wsb.tickers, ["TSLA", "AAPL", "NVDA"]);
        assert_eq!(wsb.created_at, Utc.timestamp_opt(1_704_204_000, 500_000_000).unwrap(), "float seconds kept");
        assert_eq!(wsb.sentiment_source, Some(SentimentSource::Lexicon));
        assert!(wsb.sentiment.unwrap() > 0.0);
        assert!(!wsb.removed);
        assert_eq!(wsb.validate(), Ok(()));
        let gone = &n.records[2].0;
        assert!(gone.removed);
        assert_eq!(
            (gone.author.as_str(), gone.text.as_str()),
            ("[deleted]", "GME to the moon"),
            "[removed] body dropped"
        );
        assert_eq!(n.cursor.newest_created_utc, Some(1_704_204_100.0));
    }

    #[test]
    fn rate_headers_and_statuses() {
        let p = poller();
        let hold = resp(
            200,
            b"{}",
            &[("x-ratelimit-remaining", "0.0"), ("x-ratelimit-reset", "33"), ("x-ratelimit-used", "600")],
        );
        assert_eq!(p.rate_hint(&hold), Some(Duration::from_secs(33)));
        let fine = resp(200, b"{}", &[("x-ratelimit-remaining", "597.0"), ("x-ratelimit-reset", "33")]);
        assert_eq!(p.rate_hint(&fine), None);
        let html = resp(429, b"<html>whoa there, pardner!</html>", &[("retry-after", "4")]);
        assert_eq!(
            p.classify(&html, &Cursor::default()),
            Some(ErrorClass::RateLimited { after: Some(Duration::from_secs(4)) })
        );
        assert_eq!(
            p.classify(&resp(401, b"{}", &[]), &Cursor::default()),
            Some(ErrorClass::Retryable { after: Some(Duration::ZERO) })
        );
        assert!(p.fatal_message("HTTP 401", None).contains("REDDIT_CLIENT_SECRET"));
        assert!(p.normalize(&resp(200, b"<html>", &[]), &Cursor::default()).is_err());
    }

    #[test]
    fn requests_carry_the_token_and_raw_json() {
        let p = poller();
        *p.tokens.token.lock().unwrap() = Some(("tok".into(), Instant::now() + Duration::from_secs(60)));
        let req = p.request(&reqwest::Client::new(), &Cursor::default()).build().unwrap();
        assert_eq!(req.url().as_str(), "https://oauth.example/r/wallstreetbets/new?limit=100&raw_json=1");
        assert_eq!(req.headers()["authorization"], "bearer tok");
    }
}
