//! Reddit (docs/providers.md, Reddit): application-only OAuth2 and `/r/{sub}/new` listings, one poller per
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
use text_signals::{sentiment, text};

use crate::catch_up::{Paging, Step};
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
    /// The token, when to refresh it, and when it was issued.
    token: Mutex<Option<(String, Instant, Instant)>>,
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
        t.as_ref().filter(|(_, refresh_at, _)| Instant::now() < *refresh_at).map(|(v, _, _)| v.clone())
    }

    /// True when the current token was issued less than a minute ago: a 401 then is about the
    /// resource, not an expired token.
    fn is_fresh(&self) -> bool {
        let t = self.token.lock().unwrap_or_else(PoisonError::into_inner);
        t.as_ref().is_some_and(|(_, _, issued)| issued.elapsed() < Duration::from_secs(60))
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
        let resp = http::fetch(req, self.max_body_bytes).await.map_err(|e| {
            // A guard refusing the target (a redirect away from Reddit's origin) is not retried
            // like a network error.
            let class = match e {
                http::FetchError::Refused(_) => ErrorClass::Refused,
                _ => ErrorClass::Retryable { after: None },
            };
            (class, format!("token request: {e}"))
        })?;
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
                let now = Instant::now();
                let refresh_at = now + ttl - (ttl / 10).min(Duration::from_secs(60));
                *self.token.lock().unwrap_or_else(PoisonError::into_inner) = Some((token, refresh_at, now));
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

/// Where the next poll starts: the newest page, or the next older page of a catch-up.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    /// `created_utc` of the newest post seen by a completed poll.
    pub newest_created_utc: Option<f64>,
    /// A catch-up in progress: more than a page of new posts arrived, older pages follow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch_up: Option<CatchUp>,
}

/// A catch-up through older listing pages, stored with each page's records so a restart
/// resumes it where it stopped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatchUp {
    /// The fullname to page after (the last post of the page read).
    pub after: String,
    /// `created_utc` of the newest post before the catch-up began: reaching it ends the catch-up.
    pub target: f64,
    /// `created_utc` of the newest post of the catch-up's first page.
    pub newest: f64,
    /// Pages read so far.
    pub pages: u32,
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
    catch_up_pages: u32,
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
            catch_up_pages: 10,
        }
    }

    /// At most `pages` listing pages per catch-up (at least 1).
    #[must_use]
    pub fn with_catch_up(mut self, pages: u32) -> Self {
        self.catch_up_pages = pages.max(1);
        self
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

    fn prepare<'a>(
        &'a self,
        client: &'a reqwest::Client,
        _cursor: &'a Cursor,
    ) -> BoxFuture<'a, Result<(), (ErrorClass, String)>> {
        Box::pin(self.tokens.ensure(client))
    }

    fn request(&self, client: &reqwest::Client, cursor: &Cursor) -> reqwest::RequestBuilder {
        let token = self.tokens.current().unwrap_or_default();
        let req = client
            .get(format!("{}/r/{}/new", self.base_url, self.sub))
            .query(&[("limit", "100"), ("raw_json", "1")])
            .header("Authorization", format!("bearer {token}"));
        match &cursor.catch_up {
            Some(c) => req.query(&[("after", c.after.as_str())]),
            None => req,
        }
    }

    fn rate_hint(&self, resp: &HttpResponse) -> Option<Duration> {
        let remaining: f64 = resp.header("x-ratelimit-remaining")?.trim().parse().ok()?;
        let reset: f64 = resp.header("x-ratelimit-reset")?.trim().parse().ok()?;
        (remaining < 1.0 && reset.is_finite() && reset > 0.0).then(|| Duration::from_secs_f64(reset.min(600.0)))
    }

    fn classify(&self, resp: &HttpResponse, _cursor: &Cursor) -> Option<ErrorClass> {
        if resp.status == 401 {
            if self.tokens.is_fresh() {
                // Refused with a token issued a moment ago: this subreddit, not the token.
                return Some(ErrorClass::Denied);
            }
            // The token expired or was revoked early: fetch a new one and try again at once.
            self.tokens.invalidate();
            return Some(ErrorClass::Retryable { after: Some(Duration::ZERO) });
        }
        classify_http(resp.status, resp.header("retry-after"), SystemTime::now())
    }

    fn fatal_message(&self, what: &str, _resp: Option<&HttpResponse>) -> String {
        format!(
            "Reddit refused the application credentials every subreddit shares ({what}); check REDDIT_CLIENT_ID and REDDIT_CLIENT_SECRET"
        )
    }

    fn normalize(&self, resp: &HttpResponse, cursor: &Cursor) -> Result<Normalized<SocialPost, Cursor>, String> {
        let v: serde_json::Value = serde_json::from_slice(&resp.body).map_err(|e| format!("malformed listing: {e}"))?;
        let children = v.pointer("/data/children").and_then(|c| c.as_array()).ok_or("no `data.children` array")?;
        let after = v.pointer("/data/after").and_then(serde_json::Value::as_str).filter(|a| !a.is_empty());
        let mut out = Normalized::at(cursor.clone());
        let (mut page_newest, mut page_oldest) = (None::<f64>, None::<f64>);
        for child in children {
            let raw = serde_json::to_vec(child).unwrap_or_default();
            match post(child, &self.symbols, resp.received_at) {
                Ok(p) => {
                    let created = p.created_at.timestamp() as f64;
                    page_newest = Some(page_newest.map_or(created, |n| n.max(created)));
                    page_oldest = Some(page_oldest.map_or(created, |o| o.min(created)));
                    out.records.push((p, raw));
                }
                Err(reason) => out.rejects.push(Reject { raw, reason }),
            }
        }
        let paging = Paging {
            target: cursor.catch_up.as_ref().map(|c| c.target).or(cursor.newest_created_utc),
            newest: cursor.catch_up.as_ref().map(|c| c.newest).into_iter().chain(page_newest).reduce(f64::max),
            pages: cursor.catch_up.as_ref().map_or(0, |c| c.pages) + 1,
            page_oldest,
            has_older: after.is_some(),
        };
        match paging.step(self.catch_up_pages) {
            Step::Done { newest, cut } => {
                out.cursor = Cursor { newest_created_utc: newest.or(cursor.newest_created_utc), catch_up: None };
                out.cut = cut.map(|(from, to, pages)| ingest_core::source::Cut {
                    from: time_of(from),
                    to: time_of(to),
                    message: format!(
                        "catch-up stopped after {pages} pages (social.reddit.catch_up_pages): posts of r/{} between the last one seen and the oldest read were not fetched",
                        self.sub
                    ),
                });
            }
            Step::Next { target, newest } => {
                out.cursor.catch_up =
                    Some(CatchUp { after: after.unwrap_or_default().to_string(), target, newest, pages: paging.pages });
                out.more = true;
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
        *p.tokens.token.lock().unwrap() =
            Some(("tok".into(), Instant::now() + Duration::from_secs(60), Instant::now()));
        let req = p.request(&reqwest::Client::new(), &Cursor::default()).build().unwrap();
        assert_eq!(req.url().as_str(), "https://oauth.example/r/wallstreetbets/new?limit=100&raw_json=1");
        assert_eq!(req.headers()["authorization"], "bearer tok");
        let catching_up = Cursor {
            catch_up: Some(CatchUp { after: "t3_abc".into(), target: 1.0, newest: 9.0, pages: 1 }),
            ..Cursor::default()
        };
        let req = p.request(&reqwest::Client::new(), &catching_up).build().unwrap();
        assert_eq!(req.url().query(), Some("limit=100&raw_json=1&after=t3_abc"));
    }

    #[test]
    fn a_401_with_a_fresh_token_is_the_subreddit_refusing_not_an_expired_token() {
        let p = poller();
        *p.tokens.token.lock().unwrap() =
            Some(("tok".into(), Instant::now() + Duration::from_secs(60), Instant::now()));
        assert_eq!(p.classify(&resp(401, b"{}", &[]), &Cursor::default()), Some(ErrorClass::Denied));
        // A private subreddit (403) and an unknown one (404) are that source's problem only.
        assert_eq!(p.classify(&resp(403, br#"{"error": 403}"#, &[]), &Cursor::default()), Some(ErrorClass::Denied));
        let missing = br#"{"reason": "PAGE_NOT_CREATED", "message": "Not Found"}"#;
        assert_eq!(p.classify(&resp(404, missing, &[]), &Cursor::default()), Some(ErrorClass::NotFound));
    }

    fn listing(names: &[(&str, i64)], after: Option<&str>) -> HttpResponse {
        let children: Vec<serde_json::Value> = names
            .iter()
            .map(|(id, t)| serde_json::json!({"kind": "t3", "data": {"name": format!("t3_{id}"), "title": id, "created_utc": *t as f64, "permalink": format!("/r/x/comments/{id}/"), "subreddit": "x", "author": "a"}}))
            .collect();
        let body = serde_json::json!({"kind": "Listing", "data": {"after": after, "children": children}});
        resp(200, body.to_string().as_bytes(), &[])
    }

    #[test]
    fn more_than_a_page_of_new_posts_is_read_back_to_the_last_one_seen() {
        let p = poller().with_catch_up(2);
        let seen = Cursor { newest_created_utc: Some(100.0), catch_up: None };
        let first = p.normalize(&listing(&[("e", 500), ("d", 400)], Some("t3_d")), &seen).unwrap();
        assert!(first.more && first.cut.is_none());
        let c = first.cursor.catch_up.clone().unwrap();
        assert_eq!((c.after.as_str(), c.target, c.newest, c.pages), ("t3_d", 100.0, 500.0, 1));
        assert_eq!(first.cursor.newest_created_utc, Some(100.0), "not advanced before the catch-up ends");
        let second = p.normalize(&listing(&[("c", 300), ("b", 100)], Some("t3_b")), &first.cursor).unwrap();
        assert!(!second.more && second.cut.is_none());
        assert_eq!(second.cursor, Cursor { newest_created_utc: Some(500.0), catch_up: None });
        // The same with a page limit of 2 and a target further back: cut, with the window.
        let far = Cursor { newest_created_utc: Some(10.0), catch_up: None };
        let first = p.normalize(&listing(&[("e", 500), ("d", 400)], Some("t3_d")), &far).unwrap();
        let second = p.normalize(&listing(&[("c", 300), ("b", 200)], Some("t3_b")), &first.cursor).unwrap();
        let cut = second.cut.unwrap();
        assert_eq!((cut.from, cut.to), (time_of(10.0), time_of(200.0)));
        assert!(cut.message.contains("catch_up_pages"), "{}", cut.message);
        assert_eq!(second.cursor, Cursor { newest_created_utc: Some(500.0), catch_up: None });
    }
}
