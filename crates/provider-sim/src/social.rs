//! Reddit and StockTwits (docs/providers.md).
//!
//! - Reddit token: `POST /api/v1/access_token` with HTTP Basic client credentials and
//!   `grant_type=client_credentials` → `{"access_token","token_type":"bearer","expires_in",
//!   "scope":"*"}`; wrong credentials → 401 `{"message":"Unauthorized","error":401}`; another
//!   grant type → HTTP 200 `{"error":"unsupported_grant_type"}`. Tokens expire after
//!   `token_ttl` (tests make it short to exercise refresh).
//! - Reddit listing: `GET /r/{sub}/new?limit=&raw_json=1[&after=t3_…]` with `Authorization:
//!   bearer <token>` (401 for an unknown or expired token), newest first, paged back with
//!   `after` (the fullname of the last post of the previous page; `null` at the end), pages of
//!   at most `limit` (and `reddit_page_size`), `x-ratelimit-used/-remaining/-reset` headers from
//!   a window of `window_requests` requests; past it 429 with the HTML "whoa there, pardner!"
//!   page and `retry-after`. Without `raw_json=1` text is HTML-escaped, as Reddit does. A
//!   private subreddit answers 403 `{"error": 403}`, a banned or never created one 404
//!   `{"reason": "PAGE_NOT_CREATED", "message": "Not Found"}`.
//! - StockTwits: `GET /api/2/streams/symbol/{SYMBOL}.json[?since=<id>][&max=<id>]`, newest first,
//!   ids above `since` and at most `max` (inclusive), pages of `stocktwits_page_size` (30),
//!   HTML-escaped bodies, `cursor` (`more` while older messages in range are left), 404 with the
//!   documented error body for unknown symbols, 403 (a Cloudflare page) for a blocked one.
//! - X recent search: `GET /2/tweets/search/recent` with `Authorization: Bearer`, `since_id`,
//!   `next_token` pages, `created_at`/`author_id`/`public_metrics` only when asked for in
//!   `tweet.fields`, `includes.users` with `expansions=author_id`, HTML-escaped `text`,
//!   `x-rate-limit-*` headers (reset in Unix seconds). Every tweet matches any query.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

/// A Reddit post of the catalogue.
#[derive(Debug, Clone, PartialEq)]
pub struct SimRedditPost {
    /// Base-36 id (`18wxyz`).
    pub id: String,
    /// Subreddit (without `r/`).
    pub subreddit: String,
    /// Title.
    pub title: String,
    /// Self text (`[removed]` for a removed post).
    pub selftext: String,
    /// Author (`[deleted]`).
    pub author: String,
    /// Creation time.
    pub created: DateTime<Utc>,
    /// Score.
    pub score: i64,
    /// Comments.
    pub num_comments: i64,
}

/// A StockTwits message of the catalogue.
#[derive(Debug, Clone, PartialEq)]
pub struct SimTwit {
    /// Message id.
    pub id: u64,
    /// Stream symbol (and the message's symbol).
    pub symbol: String,
    /// Body, unescaped (served escaped).
    pub body: String,
    /// Username.
    pub user: String,
    /// Time.
    pub created: DateTime<Utc>,
    /// `Bullish`, `Bearish` or none.
    pub label: Option<String>,
    /// Likes.
    pub likes: i64,
}

/// A tweet of the catalogue (X recent search).
#[derive(Debug, Clone, PartialEq)]
pub struct SimTweet {
    /// Tweet id (64-bit, served as a string).
    pub id: u64,
    /// Text, unescaped (served with `&`, `<`, `>` escaped, as X does).
    pub text: String,
    /// Author id.
    pub author_id: u64,
    /// Author's username.
    pub username: String,
    /// Creation time.
    pub created: DateTime<Utc>,
}

/// Credentials and limits.
#[derive(Debug, Clone)]
pub struct SocialConfig {
    /// Reddit client id.
    pub client_id: String,
    /// Reddit client secret.
    pub client_secret: String,
    /// Lifetime of issued tokens (`expires_in`).
    pub token_ttl: Duration,
    /// Listing requests per rate window before 429.
    pub window_requests: u32,
    /// Length of the rate window.
    pub window: Duration,
    /// X bearer token accepted.
    pub x_bearer: String,
    /// Tweets per recent-search page (X allows up to 100; small pages exercise `next_token`).
    pub x_page_size: usize,
    /// Most posts per Reddit listing page (Reddit: 100; small pages exercise `after`).
    pub reddit_page_size: usize,
    /// Messages per StockTwits page (StockTwits: 30; small pages exercise `max`).
    pub stocktwits_page_size: usize,
}

impl SocialConfig {
    /// The real services' page sizes and generous limits, with these credentials.
    pub fn new(client_id: &str, client_secret: &str, x_bearer: &str) -> Self {
        Self {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            token_ttl: Duration::from_secs(3600),
            window_requests: 600,
            window: Duration::from_secs(600),
            x_bearer: x_bearer.into(),
            x_page_size: 100,
            reddit_page_size: 100,
            stocktwits_page_size: 30,
        }
    }
}

#[derive(Debug)]
struct Inner {
    cfg: SocialConfig,
    posts: Vec<SimRedditPost>,
    twits: Vec<SimTwit>,
    tweets: Vec<SimTweet>,
    x_calls: u32,
    rules: Vec<(String, String, String)>,
    next_rule_id: u64,
    stream: Option<tokio::sync::mpsc::UnboundedSender<Option<String>>>,
    stream_pending: Vec<String>,
    stream_faults: std::collections::VecDeque<u16>,
    stream_connections: u32,
    /// When the last stream connection ended: X still counts it for a moment
    /// ([`STREAM_LINGER`]), and a connect within that time meets 429 TooManyConnections.
    stream_ended_at: Option<std::time::Instant>,
    tokens: HashMap<String, Instant>,
    issued: u64,
    window: (Instant, u32),
    /// Subreddits that answer with an error status (403 private, 404 unknown).
    sub_status: HashMap<String, u16>,
    /// StockTwits symbols blocked with 403.
    blocked_symbols: Vec<String>,
}

/// The Reddit and StockTwits simulators' state. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SocialHandle(Arc<Mutex<Inner>>);

impl SocialHandle {
    /// Empty catalogues.
    pub fn new(cfg: SocialConfig) -> Self {
        Self(Arc::new(Mutex::new(Inner {
            cfg,
            posts: Vec::new(),
            twits: Vec::new(),
            tweets: Vec::new(),
            x_calls: 0,
            rules: Vec::new(),
            next_rule_id: 1_364_459_511_319_130_000,
            stream: None,
            stream_pending: Vec::new(),
            stream_faults: std::collections::VecDeque::new(),
            stream_connections: 0,
            stream_ended_at: None,
            tokens: HashMap::new(),
            issued: 0,
            window: (Instant::now(), 0),
            sub_status: HashMap::new(),
            blocked_symbols: Vec::new(),
        })))
    }

    /// Makes subreddit `sub` private (403) or unknown (404).
    pub fn subreddit_status(&self, sub: &str, status: u16) {
        self.lock().sub_status.insert(sub.to_string(), status);
    }

    /// Blocks StockTwits symbol `symbol` with a 403 page (as Cloudflare does).
    pub fn block_symbol(&self, symbol: &str) {
        self.lock().blocked_symbols.push(symbol.to_string());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a Reddit post.
    pub fn post(&self, p: SimRedditPost) {
        self.lock().posts.push(p);
    }

    /// Adds a StockTwits message.
    pub fn twit(&self, t: SimTwit) {
        self.lock().twits.push(t);
    }

    /// Adds a tweet.
    pub fn tweet(&self, t: SimTweet) {
        self.lock().tweets.push(t);
    }

    /// Adds a filtered-stream rule (as if made earlier by someone else); returns its id.
    pub fn add_rule(&self, value: &str, tag: &str) -> String {
        let mut inner = self.lock();
        inner.next_rule_id += 1;
        let id = inner.next_rule_id.to_string();
        inner.rules.push((id.clone(), value.into(), tag.into()));
        id
    }

    /// The stream's rules: (id, value, tag).
    pub fn rules(&self) -> Vec<(String, String, String)> {
        self.lock().rules.clone()
    }

    /// Sends `line` (plus `\r\n`) on the open stream connection, or on the next one.
    pub fn stream_line(&self, line: &str) {
        let mut inner = self.lock();
        let sent = inner.stream.as_ref().is_some_and(|tx| tx.send(Some(format!("{line}\r\n"))).is_ok());
        if !sent {
            inner.stream_pending.push(format!("{line}\r\n"));
        }
    }

    /// Sends a keep-alive (`\r\n`) on the open connection.
    pub fn stream_keepalive(&self) {
        if let Some(tx) = &self.lock().stream {
            let _ = tx.send(Some("\r\n".into()));
        }
    }

    /// X's in-band `operational-disconnect` error line, then the end of the response.
    pub fn stream_operational_disconnect(&self) {
        let line = r#"{"errors":[{"title":"operational-disconnect","disconnect_type":"OperationalDisconnect","detail":"This stream has been disconnected for operational reasons.","type":"https://api.twitter.com/2/problems/operational-disconnect"}]}"#;
        let mut inner = self.lock();
        if let Some(tx) = inner.stream.take() {
            let _ = tx.send(Some(format!("{line}\r\n")));
            let _ = tx.send(None);
            inner.stream_ended_at = Some(std::time::Instant::now());
        }
    }

    /// Ends the open stream connection abruptly.
    pub fn stream_drop(&self) {
        if let Some(tx) = self.lock().stream.take() {
            let _ = tx.send(None);
        }
    }

    /// Answers the next `n` stream connects with `status` (429: TooManyConnections).
    pub fn stream_fail_connects(&self, status: u16, n: usize) {
        self.lock().stream_faults.extend(std::iter::repeat_n(status, n));
    }

    /// Stream connections accepted (200) so far.
    pub fn stream_connections(&self) -> u32 {
        self.lock().stream_connections
    }

    /// Tokens issued so far.
    pub fn tokens_issued(&self) -> u64 {
        self.lock().issued
    }

    /// The routes.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/api/v1/access_token", post(token))
            .route("/r/{sub}/new", get(listing))
            .route("/api/2/streams/symbol/{file}", get(stream))
            .route("/2/tweets/search/recent", get(recent_search))
            .route("/2/tweets/search/stream/rules", get(get_rules).post(post_rules))
            .route("/2/tweets/search/stream", get(stream_connect))
            .with_state(self.clone())
    }
}

fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    use base64::Engine as _;
    let v = headers.get("authorization")?.to_str().ok()?;
    let b64 = v.strip_prefix("Basic ").or_else(|| v.strip_prefix("basic "))?;
    let raw = base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok()?;
    let (id, secret) = std::str::from_utf8(&raw).ok()?.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

async fn token(State(h): State<SocialHandle>, headers: HeaderMap, body: String) -> Response {
    let mut inner = h.lock();
    let creds = basic(&headers);
    if creds.as_ref().is_none_or(|(id, secret)| *id != inner.cfg.client_id || *secret != inner.cfg.client_secret) {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"message": "Unauthorized", "error": 401})))
            .into_response();
    }
    if !body.split('&').any(|kv| kv == "grant_type=client_credentials") {
        return axum::Json(json!({"error": "unsupported_grant_type"})).into_response();
    }
    inner.issued += 1;
    let value = format!("sim-token-{}", inner.issued);
    let ttl = inner.cfg.token_ttl;
    inner.tokens.insert(value.clone(), Instant::now() + ttl);
    axum::Json(json!({"access_token": value, "token_type": "bearer", "expires_in": ttl.as_secs(), "scope": "*"}))
        .into_response()
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

async fn listing(
    State(h): State<SocialHandle>,
    headers: HeaderMap,
    Path(sub): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut inner = h.lock();
    let now = Instant::now();
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bearer ").or_else(|| v.strip_prefix("Bearer ")))
        .map(str::to_string);
    let valid = bearer.and_then(|t| inner.tokens.get(&t).copied()).is_some_and(|exp| now < exp);
    if !valid {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"message": "Unauthorized", "error": 401})))
            .into_response();
    }
    let window = inner.cfg.window;
    if now.duration_since(inner.window.0) >= window {
        inner.window = (now, 0);
    }
    inner.window.1 += 1;
    let used = inner.window.1;
    let budget = inner.cfg.window_requests;
    // Whole seconds to the end of the window, rounded up (never 0 while the window lasts).
    let reset = window.saturating_sub(now.duration_since(inner.window.0)).as_millis().div_ceil(1000).max(1);
    let rate_headers = [
        ("x-ratelimit-used", used.to_string()),
        ("x-ratelimit-remaining", format!("{:.1}", f64::from(budget.saturating_sub(used)))),
        ("x-ratelimit-reset", reset.to_string()),
    ];
    if used > budget {
        let mut resp = (
            StatusCode::TOO_MANY_REQUESTS,
            [("content-type", "text/html; charset=UTF-8"), ("retry-after", &reset.to_string())],
            "<!doctype html><html><head><title>Too Many Requests</title></head><body><h1>whoa there, pardner!</h1></body></html>",
        )
            .into_response();
        for (k, v) in &rate_headers {
            if let Ok(v) = v.parse() {
                resp.headers_mut().insert(*k, v);
            }
        }
        return resp;
    }
    match inner.sub_status.get(&sub) {
        Some(403) => return (StatusCode::FORBIDDEN, axum::Json(json!({"error": 403}))).into_response(),
        Some(404) => {
            return (StatusCode::NOT_FOUND, axum::Json(json!({"reason": "PAGE_NOT_CREATED", "message": "Not Found"})))
                .into_response();
        }
        _ => {}
    }
    let raw_json = q.get("raw_json").map(String::as_str) == Some("1");
    let limit = q
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(25)
        .clamp(1, 100)
        .min(inner.cfg.reddit_page_size);
    let mut posts: Vec<&SimRedditPost> = inner.posts.iter().filter(|p| p.subreddit == sub).collect();
    posts.sort_by_key(|p| std::cmp::Reverse((p.created, p.id.clone())));
    if let Some(after) = q.get("after").and_then(|a| a.strip_prefix("t3_")) {
        // Older than the named post (Reddit's `after`); an unknown name gives an empty page.
        match posts.iter().position(|p| p.id == after) {
            Some(i) => drop(posts.drain(..=i)),
            None => posts.clear(),
        }
    }
    let more = posts.len() > limit;
    let text = |s: &str| if raw_json { s.to_string() } else { html_escape(s) };
    let children: Vec<Value> = posts
        .iter()
        .take(limit)
        .map(|p| {
            let secs = p.created.timestamp() as f64 + f64::from(p.created.timestamp_subsec_millis()) / 1000.0;
            json!({"kind": "t3", "data": {
                "id": p.id, "name": format!("t3_{}", p.id), "title": text(&p.title), "selftext": text(&p.selftext),
                "author": p.author, "created_utc": secs, "created": secs + 28_800.0, "subreddit": p.subreddit,
                "subreddit_id": "t5_2qh3l", "permalink": format!("/r/{}/comments/{}/post/", p.subreddit, p.id),
                "score": p.score, "ups": p.score, "num_comments": p.num_comments, "url": format!("https://www.reddit.com/r/{}/comments/{}/post/", p.subreddit, p.id),
                "is_self": true, "over_18": false, "edited": false, "stickied": false, "link_flair_text": null}})
        })
        .collect();
    let after = if more { children.last().and_then(|c| c.pointer("/data/name").cloned()) } else { None };
    let mut resp =
        axum::Json(json!({"kind": "Listing", "data": {"modhash": "", "dist": children.len(), "after": after,
                                    "before": null, "geo_filter": "", "children": children}}))
        .into_response();
    for (k, v) in &rate_headers {
        if let Ok(v) = v.parse() {
            resp.headers_mut().insert(*k, v);
        }
    }
    resp
}

async fn stream(
    State(h): State<SocialHandle>,
    Path(file): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(symbol) = file.strip_suffix(".json") else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let inner = h.lock();
    let since = q.get("since").and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    let mut twits: Vec<&SimTwit> = inner.twits.iter().filter(|t| t.symbol == symbol).collect();
    if twits.is_empty() {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"response": {"status": 404}, "errors": [{"message": "Symbol not found"}]})),
        )
            .into_response();
    }
    if inner.blocked_symbols.iter().any(|b| b == symbol) {
        return (
            StatusCode::FORBIDDEN,
            [("content-type", "text/html; charset=UTF-8")],
            "<html><title>Attention Required! | Cloudflare</title><body>Sorry, you have been blocked</body></html>",
        )
            .into_response();
    }
    let max = q.get("max").and_then(|s| s.parse::<u64>().ok()).unwrap_or(u64::MAX);
    twits.retain(|t| t.id > since && t.id <= max);
    twits.sort_by_key(|t| std::cmp::Reverse(t.id));
    let page = inner.cfg.stocktwits_page_size.max(1);
    let more = twits.len() > page;
    twits.truncate(page);
    let messages: Vec<Value> = twits
        .iter()
        .map(|t| {
            json!({"id": t.id, "body": html_escape(&t.body), "created_at": t.created.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                   "user": {"id": 1, "username": t.user, "name": t.user, "official": false, "identity": "User", "followers": 3},
                   "source": {"id": 1, "title": "StockTwits Web", "url": "https://stocktwits.com"},
                   "symbols": [{"id": 1, "symbol": t.symbol, "title": t.symbol}],
                   "likes": {"total": t.likes, "user_ids": []},
                   "entities": {"sentiment": t.label.as_ref().map(|l| json!({"basic": l}))}})
        })
        .collect();
    let (newest, oldest) = (twits.first().map(|t| t.id), twits.last().map(|t| t.id));
    axum::Json(json!({"response": {"status": 200}, "symbol": {"id": 1, "symbol": symbol, "title": symbol},
                      "cursor": {"more": more, "since": newest, "max": oldest}, "messages": messages}))
    .into_response()
}

/// A demo Reddit post (for `make run`) in one of the default subreddits.
pub fn demo_reddit_post(n: u64, now: DateTime<Utc>) -> SimRedditPost {
    const SUBS: &[&str] = &["wallstreetbets", "stocks", "investing"];
    const TITLES: &[&str] = &[
        "$NVDA earnings beat again, guidance strong",
        "Is $TSLA overvalued after the rally?",
        "AAPL buyback: bullish or priced in?",
        "Bank stocks plunge on credit concerns",
    ];
    let i = usize::try_from(n).unwrap_or(0);
    SimRedditPost {
        id: format!("demo{n:x}"),
        subreddit: SUBS[i % SUBS.len()].into(),
        title: TITLES[i % TITLES.len()].into(),
        selftext: if n % 5 == 4 { "[removed]".into() } else { "What do you all think?".into() },
        author: if n % 5 == 4 { "[deleted]".into() } else { format!("demo_user_{}", n % 7) },
        created: now,
        score: i64::try_from(n * 13 % 500).unwrap_or(0),
        num_comments: i64::try_from(n * 3 % 90).unwrap_or(0),
    }
}

/// A demo StockTwits message (for `make run`).
pub fn demo_twit(n: u64, now: DateTime<Utc>) -> SimTwit {
    const SYMBOLS: &[&str] = &["AAPL", "TSLA", "NVDA"];
    let i = usize::try_from(n).unwrap_or(0);
    let symbol = SYMBOLS[i % SYMBOLS.len()];
    let (body, label) = match n % 3 {
        0 => (format!("${symbol} breaking out, loading up"), Some("Bullish")),
        1 => (format!("${symbol} looks weak here, taking profits"), Some("Bearish")),
        _ => (format!("Watching ${symbol} into earnings"), None),
    };
    SimTwit {
        id: 500_000_000 + n,
        symbol: symbol.into(),
        body,
        user: format!("demo_trader_{}", n % 5),
        created: now,
        label: label.map(String::from),
        likes: i64::try_from(n % 11).unwrap_or(0),
    }
}

async fn recent_search(
    State(h): State<SocialHandle>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut inner = h.lock();
    let bearer = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if bearer != Some(inner.cfg.x_bearer.as_str()) {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(
                json!({"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"}),
            ),
        )
            .into_response();
    }
    if q.get("query").is_none_or(|s| s.trim().is_empty()) {
        return (StatusCode::BAD_REQUEST, axum::Json(json!({"errors": [{"parameters": {"query": []}, "message": "The `query` query parameter can not be empty"}], "title": "Invalid Request", "detail": "One or more parameters to your request was invalid.", "type": "https://api.twitter.com/2/problems/invalid-request"}))).into_response();
    }
    inner.x_calls += 1;
    let remaining = 450u32.saturating_sub(inner.x_calls);
    let since = q.get("since_id").and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    let offset =
        q.get("next_token").and_then(|t| t.strip_prefix('p')).and_then(|o| o.parse::<usize>().ok()).unwrap_or(0);
    let max = q.get("max_results").and_then(|m| m.parse::<usize>().ok()).unwrap_or(10).clamp(10, 100);
    let size = max.min(inner.cfg.x_page_size.max(1));
    let fields = q.get("tweet.fields").cloned().unwrap_or_default();
    let expand = q.get("expansions").is_some_and(|e| e.contains("author_id"));
    let mut tweets: Vec<&SimTweet> = inner.tweets.iter().filter(|t| t.id > since).collect();
    tweets.sort_by_key(|t| std::cmp::Reverse(t.id));
    let page: Vec<&SimTweet> = tweets.iter().skip(offset).take(size).copied().collect();
    let data: Vec<Value> = page
        .iter()
        .map(|t| {
            let mut v = json!({"id": t.id.to_string(), "text": t.text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;"),
                               "edit_history_tweet_ids": [t.id.to_string()]});
            if fields.contains("created_at") {
                v["created_at"] = json!(t.created.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string());
            }
            if fields.contains("author_id") {
                v["author_id"] = json!(t.author_id.to_string());
            }
            if fields.contains("public_metrics") {
                v["public_metrics"] = json!({"retweet_count": 1, "reply_count": 2, "like_count": 3, "quote_count": 0});
            }
            v
        })
        .collect();
    let mut meta = json!({"result_count": data.len()});
    if let (Some(first), Some(last)) = (page.first(), page.last()) {
        meta["newest_id"] = json!(first.id.to_string());
        meta["oldest_id"] = json!(last.id.to_string());
    }
    if offset + size < tweets.len() {
        meta["next_token"] = json!(format!("p{}", offset + size));
    }
    let mut body = json!({"meta": meta});
    if !data.is_empty() {
        body["data"] = json!(data);
        if expand {
            let users: Vec<Value> = page
                .iter()
                .map(|t| json!({"id": t.author_id.to_string(), "name": t.username, "username": t.username}))
                .collect();
            body["includes"] = json!({"users": users});
        }
    }
    let reset = (Utc::now() + chrono::Duration::minutes(15)).timestamp().to_string();
    let mut resp = axum::Json(body).into_response();
    for (k, v) in [
        ("x-rate-limit-limit", "450".to_string()),
        ("x-rate-limit-remaining", remaining.to_string()),
        ("x-rate-limit-reset", reset),
    ] {
        if let Ok(v) = v.parse() {
            resp.headers_mut().insert(k, v);
        }
    }
    resp
}

fn x_authorized(inner: &Inner, headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "))
        == Some(inner.cfg.x_bearer.as_str())
}

fn x_unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        axum::Json(json!({"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"})),
    )
        .into_response()
}

fn sent() -> String {
    Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

async fn get_rules(State(h): State<SocialHandle>, headers: HeaderMap) -> Response {
    let inner = h.lock();
    if !x_authorized(&inner, &headers) {
        return x_unauthorized();
    }
    let data: Vec<Value> = inner.rules.iter().map(|(id, v, t)| json!({"id": id, "value": v, "tag": t})).collect();
    let mut body = json!({"meta": {"sent": sent(), "result_count": data.len()}});
    if !data.is_empty() {
        body["data"] = json!(data);
    }
    axum::Json(body).into_response()
}

async fn post_rules(State(h): State<SocialHandle>, headers: HeaderMap, body: String) -> Response {
    let mut inner = h.lock();
    if !x_authorized(&inner, &headers) {
        return x_unauthorized();
    }
    let Ok(req) = serde_json::from_str::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, axum::Json(json!({"title": "Invalid Request", "detail": "body is not JSON", "type": "https://api.twitter.com/2/problems/invalid-request"}))).into_response();
    };
    if let Some(ids) = req.pointer("/delete/ids").and_then(Value::as_array) {
        let before = inner.rules.len();
        let ids: Vec<&str> = ids.iter().filter_map(Value::as_str).collect();
        inner.rules.retain(|(id, _, _)| !ids.contains(&id.as_str()));
        let deleted = before - inner.rules.len();
        return axum::Json(
            json!({"meta": {"sent": sent(), "summary": {"deleted": deleted, "not_deleted": ids.len() - deleted}}}),
        )
        .into_response();
    }
    let adds = req.get("add").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut data = Vec::new();
    for a in adds {
        let value = a.get("value").and_then(Value::as_str).unwrap_or("").to_string();
        let tag = a.get("tag").and_then(Value::as_str).unwrap_or("").to_string();
        inner.next_rule_id += 1;
        let id = inner.next_rule_id.to_string();
        data.push(json!({"value": value, "tag": tag, "id": id}));
        inner.rules.push((id, value, tag));
    }
    let n = data.len();
    (StatusCode::CREATED, axum::Json(json!({"data": data, "meta": {"sent": sent(), "summary": {"created": n, "not_created": 0, "valid": n, "invalid": 0}}})))
        .into_response()
}

/// How long the simulated X keeps counting a stream connection after it ended in-band.
pub const STREAM_LINGER: std::time::Duration = std::time::Duration::from_millis(500);

async fn stream_connect(State(h): State<SocialHandle>, headers: HeaderMap) -> Response {
    let mut inner = h.lock();
    if !x_authorized(&inner, &headers) {
        return x_unauthorized();
    }
    // One connection per app: a connect while X still counts the previous one is refused.
    let lingering = inner.stream_ended_at.is_some_and(|t| t.elapsed() < STREAM_LINGER);
    if let Some(status) = inner.stream_faults.pop_front().or(lingering.then_some(429)) {
        let body = if status == 429 {
            json!({"title": "ConnectionException", "detail": "This stream is currently at the maximum allowed connection limit.", "connection_issue": "TooManyConnections", "type": "https://api.twitter.com/2/problems/streaming-connection"})
        } else {
            json!({"title": "Service Unavailable", "detail": "Service Unavailable", "type": "about:blank", "status": status})
        };
        return (StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE), axum::Json(body))
            .into_response();
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Option<String>>();
    for line in inner.stream_pending.drain(..) {
        let _ = tx.send(Some(line));
    }
    inner.stream = Some(tx);
    inner.stream_connections += 1;
    let body = futures::stream::unfold(rx, |mut rx| async move {
        match rx.recv().await {
            Some(Some(chunk)) => Some((Ok::<_, std::convert::Infallible>(axum::body::Bytes::from(chunk)), rx)),
            // An explicit end, or the handle dropped the sender: the response ends.
            Some(None) | None => None,
        }
    });
    (StatusCode::OK, [("content-type", "application/json; charset=utf-8")], axum::body::Body::from_stream(body))
        .into_response()
}

impl SimTweet {
    /// The tweet as one filtered-stream line (without the `\r\n`).
    pub fn stream_line(&self) -> String {
        json!({
            "data": {"author_id": self.author_id.to_string(), "created_at": self.created.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
                     "edit_history_tweet_ids": [self.id.to_string()], "id": self.id.to_string(),
                     "text": self.text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;"),
                     "public_metrics": {"retweet_count": 1, "reply_count": 2, "like_count": 3, "quote_count": 0}},
            "includes": {"users": [{"id": self.author_id.to_string(), "name": self.username, "username": self.username}]},
            "matching_rules": [{"id": "1620041380532740096", "tag": "finstream"}]
        })
        .to_string()
    }
}
