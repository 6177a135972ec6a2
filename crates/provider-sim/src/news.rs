//! NewsAPI.org v2 and Alpha Vantage `NEWS_SENTIMENT` (docs/providers.md, NewsAPI and Alpha Vantage) over one shared
//! catalogue of stories, so a story both providers report can be recognised as one.
//!
//! - NewsAPI `GET /v2/everything` and `/v2/top-headlines`: key by `X-Api-Key`, `apiKey=` or
//!   `Authorization`; 401 `apiKeyMissing`/`apiKeyInvalid`; 400 `parametersMissing` without `q`;
//!   `from`, `sortBy=publishedAt`, `pageSize` (default 100 / 20 for headlines, max 100), `page`;
//!   426 `maximumResultsReached` past the developer plan's first 100 results; `content` cut to
//!   200 characters plus `… [+N chars]`; nullable `author`, `description`, `content`.
//! - Alpha Vantage `GET /query?function=NEWS_SENTIMENT`: every error with HTTP 200 (`Error
//!   Message` for a bad key or function, `Information` for the daily cap and for an empty
//!   window); `tickers` (articles mentioning all), `time_from` (`YYYYMMDDTHHMM`), `sort`,
//!   `limit`; `items` as a string, scores as strings inside `ticker_sentiment`. Its URLs carry
//!   `?utm_source=alphavantage`, as aggregators' links do, so clients must canonicalize.
//! - Faults for tests: [`NewsHandle::fail_next`] answers the next requests to a path with a
//!   given status, body and `Retry-After`, or delays them.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde_json::{Value, json};

/// One story of the catalogue.
#[derive(Debug, Clone, PartialEq)]
pub struct SimArticle {
    /// Canonical link (NewsAPI shows it as is; Alpha Vantage adds a tracking parameter).
    pub url: String,
    /// Headline.
    pub title: String,
    /// Description (NewsAPI) / summary (Alpha Vantage).
    pub description: Option<String>,
    /// Full text (NewsAPI truncates it).
    pub content: Option<String>,
    /// Publisher.
    pub source: String,
    /// Author(s), comma-separated.
    pub author: Option<String>,
    /// Publication time.
    pub published_at: DateTime<Utc>,
    /// Tickers it is about (Alpha Vantage `ticker_sentiment`).
    pub tickers: Vec<String>,
    /// Alpha Vantage overall sentiment.
    pub sentiment: f64,
    /// NewsAPI top-headlines category (`business`, …).
    pub category: Option<String>,
    /// Served by NewsAPI.
    pub on_newsapi: bool,
    /// Served by Alpha Vantage.
    pub on_alphavantage: bool,
}

/// A canned answer for the next request(s) to a path.
#[derive(Debug, Clone)]
pub struct Fault {
    /// HTTP status.
    pub status: u16,
    /// Body.
    pub body: String,
    /// `Retry-After` header value.
    pub retry_after: Option<String>,
    /// Wait this long before answering (a slow provider).
    pub delay: Duration,
}

/// Keys and limits.
#[derive(Debug, Clone)]
pub struct NewsConfig {
    /// Key NewsAPI accepts.
    pub newsapi_key: String,
    /// Key Alpha Vantage accepts.
    pub alphavantage_key: String,
    /// Alpha Vantage requests answered per day before the daily-cap notice (`None`: no cap).
    pub alphavantage_daily_limit: Option<u32>,
}

#[derive(Debug)]
struct Inner {
    cfg: NewsConfig,
    articles: Vec<SimArticle>,
    faults: HashMap<String, VecDeque<Fault>>,
    delays: HashMap<String, VecDeque<Duration>>,
    av_calls: u32,
}

/// The news simulators' shared state. Cheap to clone.
#[derive(Debug, Clone)]
pub struct NewsHandle(Arc<Mutex<Inner>>);

impl NewsHandle {
    /// Simulators with an empty catalogue.
    pub fn new(cfg: NewsConfig) -> Self {
        Self(Arc::new(Mutex::new(Inner {
            cfg,
            articles: Vec::new(),
            faults: HashMap::new(),
            delays: HashMap::new(),
            av_calls: 0,
        })))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a story.
    pub fn publish(&self, a: SimArticle) {
        self.lock().articles.push(a);
    }

    /// Answers the next `n` requests to `path` (`/v2/everything`, `/query`, …) with `fault`.
    pub fn fail_next(&self, path: &str, n: usize, fault: Fault) {
        let mut inner = self.lock();
        let q = inner.faults.entry(path.to_string()).or_default();
        q.extend(std::iter::repeat_n(fault, n));
    }

    /// Answers the next `n` requests to `path` normally, but only after `delay` (a slow
    /// provider; tests kill the client while it waits).
    pub fn delay_next(&self, path: &str, n: usize, delay: Duration) {
        self.lock().delays.entry(path.to_string()).or_default().extend(std::iter::repeat_n(delay, n));
    }

    /// Every story of the catalogue.
    pub fn articles(&self) -> Vec<SimArticle> {
        self.lock().articles.clone()
    }

    fn take_fault(&self, path: &str) -> Option<Fault> {
        self.lock().faults.get_mut(path).and_then(VecDeque::pop_front)
    }

    fn take_delay(&self, path: &str) -> Option<Duration> {
        self.lock().delays.get_mut(path).and_then(VecDeque::pop_front)
    }

    /// The routes: `/v2/everything`, `/v2/top-headlines`, `/query`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/v2/everything", get(everything))
            .route("/v2/top-headlines", get(headlines))
            .route("/query", get(alphavantage))
            .with_state(self.clone())
    }
}

async fn fault_response(handle: &NewsHandle, path: &str) -> Option<Response> {
    if let Some(d) = handle.take_delay(path) {
        tokio::time::sleep(d).await;
    }
    let f = handle.take_fault(path)?;
    if !f.delay.is_zero() {
        tokio::time::sleep(f.delay).await;
    }
    let status = StatusCode::from_u16(f.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, [("content-type", "application/json; charset=utf-8")], f.body).into_response();
    if let Some(ra) = f.retry_after.and_then(|v| v.parse().ok()) {
        resp.headers_mut().insert("retry-after", ra);
    }
    Some(resp)
}

fn newsapi_error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, axum::Json(json!({"status": "error", "code": code, "message": message}))).into_response()
}

/// NewsAPI's key check; `Err` is the 401 to send.
fn newsapi_auth(handle: &NewsHandle, headers: &HeaderMap, q: &HashMap<String, String>) -> Result<(), Box<Response>> {
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
    let given = header("x-api-key")
        .or_else(|| q.get("apiKey").cloned())
        .or_else(|| header("authorization").map(|a| a.trim_start_matches("Bearer ").to_string()));
    match given {
        None => Err(Box::new(newsapi_error(
            StatusCode::UNAUTHORIZED,
            "apiKeyMissing",
            "Your API key is missing. Append this to the URL with the apiKey param, or use the x-api-key HTTP header.",
        ))),
        Some(k) if k != handle.lock().cfg.newsapi_key => Err(Box::new(newsapi_error(
            StatusCode::UNAUTHORIZED,
            "apiKeyInvalid",
            "Your API key is invalid or incorrect. Check your key, or go to https://newsapi.org to create a free API key.",
        ))),
        Some(_) => Ok(()),
    }
}

fn parse_from(v: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(v)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M:%S").ok().map(|t| t.and_utc()))
        .or_else(|| {
            NaiveDate::parse_from_str(v, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)).map(|t| t.and_utc())
        })
}

/// NewsAPI's ~200-character cut with `… [+N chars]`.
fn truncate(content: &str) -> String {
    let total = content.chars().count();
    if total <= 200 {
        return content.to_string();
    }
    let head: String = content.chars().take(200).collect();
    format!("{head}… [+{} chars]", total - 200)
}

/// An article as NewsAPI serves it (`content` cut at 200 characters with NewsAPI's marker).
pub fn newsapi_json(a: &SimArticle) -> Value {
    json!({
        "source": {"id": null, "name": a.source},
        "author": a.author,
        "title": a.title,
        "description": a.description,
        "url": a.url,
        "urlToImage": null,
        "publishedAt": a.published_at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "content": a.content.as_deref().map(truncate),
    })
}

fn page_of(
    q: &HashMap<String, String>,
    default_size: usize,
    mut matching: Vec<SimArticle>,
) -> Result<Value, Box<Response>> {
    let size = q.get("pageSize").and_then(|s| s.parse::<usize>().ok()).unwrap_or(default_size).clamp(1, 100);
    let page = q.get("page").and_then(|s| s.parse::<usize>().ok()).unwrap_or(1).max(1);
    let (start, end) = ((page - 1) * size, page * size);
    if end > 100 {
        return Err(Box::new(newsapi_error(
            StatusCode::UPGRADE_REQUIRED,
            "maximumResultsReached",
            &format!(
                "You have requested too many results. Developer accounts are limited to a max of 100 results. You are trying to request results {start} to {end}. Please upgrade to a paid plan if you need more results."
            ),
        )));
    }
    matching.sort_by_key(|a| std::cmp::Reverse(a.published_at));
    let total = matching.len();
    let articles: Vec<Value> = matching.iter().skip(start).take(size).map(newsapi_json).collect();
    Ok(json!({"status": "ok", "totalResults": total, "articles": articles}))
}

async fn everything(
    State(h): State<NewsHandle>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = newsapi_auth(&h, &headers, &q) {
        return *r;
    }
    if let Some(r) = fault_response(&h, "/v2/everything").await {
        return r;
    }
    let Some(query) = q.get("q").filter(|s| !s.trim().is_empty()) else {
        return newsapi_error(
            StatusCode::BAD_REQUEST,
            "parametersMissing",
            "Required parameters are missing, the scope of your search is too broad. Please set any of the following required parameters and try again: q, qInTitle, sources, domains.",
        );
    };
    let from = match q.get("from").map(|f| parse_from(f)) {
        Some(None) => {
            return newsapi_error(
                StatusCode::BAD_REQUEST,
                "parameterInvalid",
                "The from parameter is not a valid date.",
            );
        }
        Some(Some(t)) => Some(t),
        None => None,
    };
    let terms: Vec<String> = query.to_lowercase().split_whitespace().map(str::to_string).collect();
    let matching: Vec<SimArticle> = h
        .lock()
        .articles
        .iter()
        .filter(|a| a.on_newsapi && from.is_none_or(|f| a.published_at >= f))
        .filter(|a| {
            let text = format!(
                "{} {} {}",
                a.title,
                a.description.as_deref().unwrap_or(""),
                a.content.as_deref().unwrap_or("")
            )
            .to_lowercase();
            terms.iter().all(|t| text.contains(t.as_str()))
        })
        .cloned()
        .collect();
    page_of(&q, 100, matching).map_or_else(|r| *r, |v| axum::Json(v).into_response())
}

async fn headlines(
    State(h): State<NewsHandle>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = newsapi_auth(&h, &headers, &q) {
        return *r;
    }
    if let Some(r) = fault_response(&h, "/v2/top-headlines").await {
        return r;
    }
    let category = q.get("category").cloned();
    let matching: Vec<SimArticle> = h
        .lock()
        .articles
        .iter()
        .filter(|a| a.on_newsapi && (category.is_none() || a.category == category))
        .cloned()
        .collect();
    page_of(&q, 20, matching).map_or_else(|r| *r, |v| axum::Json(v).into_response())
}

fn av_label(s: f64) -> &'static str {
    match s {
        s if s <= -0.35 => "Bearish",
        s if s <= -0.15 => "Somewhat-Bearish",
        s if s < 0.15 => "Neutral",
        s if s < 0.35 => "Somewhat-Bullish",
        _ => "Bullish",
    }
}

fn av_json(a: &SimArticle) -> Value {
    let url = if a.url.contains('?') { a.url.clone() } else { format!("{}?utm_source=alphavantage", a.url) };
    let tickers: Vec<Value> = a
        .tickers
        .iter()
        .map(|t| {
            json!({"ticker": t, "relevance_score": "0.500000",
                   "ticker_sentiment_score": format!("{:.6}", a.sentiment), "ticker_sentiment_label": av_label(a.sentiment)})
        })
        .collect();
    json!({
        "title": a.title,
        "url": url,
        "time_published": a.published_at.format("%Y%m%dT%H%M%S").to_string(),
        "authors": a.author.as_deref().map(|au| au.split(", ").collect::<Vec<_>>()).unwrap_or_default(),
        "summary": a.description.clone().unwrap_or_default(),
        "banner_image": null,
        "source": a.source,
        "category_within_source": "n/a",
        "source_domain": url.split('/').nth(2).unwrap_or(""),
        "topics": [],
        "overall_sentiment_score": a.sentiment,
        "overall_sentiment_label": av_label(a.sentiment),
        "ticker_sentiment": tickers,
    })
}

fn av_info(text: &str) -> Response {
    axum::Json(json!({"Information": text})).into_response()
}

async fn alphavantage(State(h): State<NewsHandle>, Query(q): Query<HashMap<String, String>>) -> Response {
    let (key, limit) = {
        let inner = h.lock();
        (inner.cfg.alphavantage_key.clone(), inner.cfg.alphavantage_daily_limit)
    };
    if q.get("apikey") != Some(&key) {
        return axum::Json(json!({"Error Message": "the parameter apikey is invalid or missing. Please claim your free API key on (https://www.alphavantage.co/support/#api-key). It should take less than 20 seconds."})).into_response();
    }
    if let Some(r) = fault_response(&h, "/query").await {
        return r;
    }
    let calls = {
        let mut inner = h.lock();
        inner.av_calls += 1;
        inner.av_calls
    };
    if limit.is_some_and(|l| calls > l) {
        return av_info(
            "Thank you for using Alpha Vantage! Our standard API rate limit is 25 requests per day. Please subscribe to any of the premium plans at https://www.alphavantage.co/premium/ to instantly remove all daily rate limits.",
        );
    }
    let function = q.get("function").map(String::as_str).unwrap_or("");
    if function != "NEWS_SENTIMENT" {
        return axum::Json(json!({"Error Message": format!("This API function ({function}) does not exist.")}))
            .into_response();
    }
    let from = match q.get("time_from").map(|t| NaiveDateTime::parse_from_str(t, "%Y%m%dT%H%M")) {
        Some(Err(_)) => {
            return av_info(
                "Invalid inputs. Please refer to the API documentation https://www.alphavantage.co/documentation#newsapi and try again.",
            );
        }
        Some(Ok(t)) => Some(t.and_utc()),
        None => None,
    };
    let wanted: Vec<String> = q
        .get("tickers")
        .map(|t| t.split(',').map(str::to_string).filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    let limit = q.get("limit").and_then(|l| l.parse::<usize>().ok()).unwrap_or(50).clamp(1, 1000);
    let mut matching: Vec<SimArticle> = h
        .lock()
        .articles
        .iter()
        .filter(|a| a.on_alphavantage && from.is_none_or(|f| a.published_at >= f))
        .filter(|a| wanted.iter().all(|t| a.tickers.contains(t)))
        .cloned()
        .collect();
    if matching.is_empty() {
        return av_info(
            "No articles found. Please adjust the time range or refer to the API documentation https://www.alphavantage.co/documentation#newsapi and try again.",
        );
    }
    match q.get("sort").map(String::as_str) {
        Some("EARLIEST") => matching.sort_by_key(|a| a.published_at),
        _ => matching.sort_by_key(|a| std::cmp::Reverse(a.published_at)),
    }
    let feed: Vec<Value> = matching.iter().take(limit).map(av_json).collect();
    axum::Json(json!({
        "items": feed.len().to_string(),
        "sentiment_score_definition": "x <= -0.35: Bearish; -0.35 < x <= -0.15: Somewhat-Bearish; -0.15 < x < 0.15: Neutral; 0.15 <= x < 0.35: Somewhat_Bullish; x >= 0.35: Bullish",
        "relevance_score_definition": "0 < x <= 1, with a higher score indicating higher relevance.",
        "feed": feed,
    }))
    .into_response()
}

/// Demo stories (for `make run`), published up to now; `n` is a counter for fresh ones. Each
/// names its company's ticker as wire copy does (`(NASDAQ: AAPL)`), so the records carry
/// tickers from NewsAPI's text too, not only from Alpha Vantage's tags.
pub fn demo_article(n: u64, now: DateTime<Utc>) -> SimArticle {
    const STORIES: &[(&str, &str, &[&str], f64)] = &[
        (
            "Apple beats estimates as iPhone sales surge",
            "Apple Inc. (NASDAQ: AAPL) reported quarterly revenue above expectations.",
            &["AAPL"],
            0.52,
        ),
        (
            "Microsoft raises guidance on strong cloud growth",
            "Microsoft Corp. (NASDAQ: MSFT) said Azure growth accelerated again.",
            &["MSFT"],
            0.44,
        ),
        (
            "Nvidia shares slump after export restrictions warning",
            "The chipmaker (NASDAQ: NVDA) warned of lower China sales.",
            &["NVDA"],
            -0.38,
        ),
        (
            "Tesla recalls vehicles over software issue",
            "The recall by Tesla (NASDAQ: TSLA) covers a driver-assistance feature.",
            &["TSLA"],
            -0.21,
        ),
        (
            "Amazon expands same-day delivery network",
            "The retailer (NASDAQ: AMZN) is adding facilities in 12 cities.",
            &["AMZN"],
            0.18,
        ),
    ];
    let idx = usize::try_from(n).unwrap_or(0) % STORIES.len();
    let (title, desc, tickers, sentiment) = STORIES[idx];
    SimArticle {
        url: format!("https://news.example.com/markets/{n}-{}", title.to_lowercase().replace(' ', "-")),
        title: format!("{title} ({n})"),
        description: Some(desc.to_string()),
        content: Some(format!("{desc} {}", "Analysts said the results matter for the sector. ".repeat(6))),
        source: "Demo Wire".into(),
        author: Some("Demo Desk".into()),
        published_at: now,
        tickers: tickers.iter().map(|t| (*t).to_string()).collect(),
        sentiment,
        category: Some("business".into()),
        on_newsapi: true,
        on_alphavantage: n.is_multiple_of(2),
    }
}
