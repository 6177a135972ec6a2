//! NewsAPI.org v2 (docs/providers.md, NewsAPI): `/v2/everything` per configured query and
//! `/v2/top-headlines` for a category, normalized to `news.article/v1`.
//!
//! - Auth: the `X-Api-Key` header (keeps the key out of URLs).
//! - Cursor: the newest `publishedAt` seen; the next poll asks `from=` it (inclusive, so the
//!   boundary story comes again and the group's dedup window drops it), newest first, 100 per
//!   page, paging on while pages are full.
//! - Errors: 401 (`apiKeyInvalid`/`Missing`/`Disabled`) is fatal; 429 (`rateLimited`,
//!   `apiKeyExhausted`) waits for `Retry-After` or backs off; 426 `maximumResultsReached` (the
//!   developer plan's 100-result window) ends paging without an error; 5xx retries.
//! - Content arrives cut to ~200 characters with `… [+N chars]`: the marker is removed and
//!   `content_truncated` set. Sentiment comes from the built-in lexicon scorer.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use ingest_core::config::Secret;
use ingest_core::http::HttpResponse;
use ingest_core::record::{NewsArticle, SentimentSource};
use ingest_core::resilience::{ErrorClass, classify_http};
use ingest_core::source::{Normalized, Poller, Reject};
use serde::{Deserialize, Serialize};

use crate::{canon, sentiment, text};

/// Provider label.
pub const PROVIDER: &str = "newsapi";

/// Results per page (NewsAPI's maximum).
pub const PAGE_SIZE: u32 = 100;

/// Which endpoint a poller reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v2/everything?q=…`
    Everything {
        /// The search query.
        q: String,
    },
    /// `/v2/top-headlines?country=…&category=…`
    Headlines {
        /// Two-letter country.
        country: String,
        /// Category (`business`, …).
        category: String,
    },
}

/// Where the next poll starts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    /// Articles published at or after this (`from=`); `None` on the first poll.
    pub since: Option<DateTime<Utc>>,
    /// Page to ask for (1-based; 0 means 1).
    pub page: u32,
    /// Newest `publishedAt` seen in the current pass (becomes `since` when paging ends).
    pub newest: Option<DateTime<Utc>>,
}

/// One NewsAPI poller.
#[derive(Debug, Clone)]
pub struct NewsApi {
    name: String,
    base_url: String,
    key: Secret,
    endpoint: Endpoint,
    symbols: Arc<Vec<String>>,
    interval: Duration,
}

impl NewsApi {
    /// A poller of `endpoint`.
    pub fn new(base_url: &str, key: Secret, endpoint: Endpoint, symbols: Arc<Vec<String>>, interval: Duration) -> Self {
        let name = match &endpoint {
            Endpoint::Everything { q } => format!("newsapi:everything:{q}"),
            Endpoint::Headlines { country, category } => format!("newsapi:top-headlines:{country}:{category}"),
        };
        Self { name, base_url: base_url.trim_end_matches('/').to_string(), key, endpoint, symbols, interval }
    }
}

#[derive(Debug, Deserialize)]
struct Response {
    status: String,
    #[serde(default)]
    code: Option<String>,
    #[serde(default, rename = "totalResults")]
    total_results: Option<u64>,
    #[serde(default)]
    articles: Vec<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct Source {
    #[serde(default)]
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Article {
    #[serde(default)]
    source: Option<Source>,
    #[serde(default)]
    author: Option<String>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    description: Option<String>,
    url: String,
    #[serde(rename = "publishedAt")]
    published_at: String,
    #[serde(default)]
    content: Option<String>,
}

/// One NewsAPI article → `news.article/v1`.
pub fn article(raw: &serde_json::Value, symbols: &[String], received_at: DateTime<Utc>) -> Result<NewsArticle, String> {
    let a: Article = serde_json::from_value(raw.clone()).map_err(|e| format!("malformed article: {e}"))?;
    let canonical_url = canon::canonical_url(&a.url).map_err(|e| format!("`url`: {e}"))?;
    let published_at = DateTime::parse_from_rfc3339(&a.published_at)
        .map_err(|e| format!("`publishedAt` is not an RFC 3339 time ({e})"))?
        .with_timezone(&Utc);
    let title = a.title.unwrap_or_default().trim().to_string();
    let (content, truncated) = text::strip_truncation(a.content.as_deref().unwrap_or(""));
    let description = a.description.filter(|d| !d.trim().is_empty());
    let all_text = format!("{title}. {}. {content}", description.as_deref().unwrap_or(""));
    let authors = a
        .author
        .map(|au| au.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect())
        .unwrap_or_default();
    Ok(NewsArticle {
        id: canon::article_id(&canonical_url),
        title,
        content,
        source: a.source.and_then(|s| s.name).unwrap_or_default(),
        url: a.url.trim().to_string(),
        canonical_url,
        published_at,
        sentiment: Some(sentiment::score(&all_text)),
        sentiment_source: Some(SentimentSource::Lexicon),
        tickers: text::tickers(&all_text, &[], symbols),
        authors,
        summary: description,
        content_truncated: truncated,
        provider: PROVIDER.into(),
        received_at,
    })
}

impl Poller for NewsApi {
    type Record = NewsArticle;
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

    fn request(&self, client: &reqwest::Client, cursor: &Cursor) -> reqwest::RequestBuilder {
        let page = cursor.page.max(1).to_string();
        let size = PAGE_SIZE.to_string();
        let req = match &self.endpoint {
            Endpoint::Everything { q } => {
                let mut params = vec![("q", q.clone()), ("sortBy", "publishedAt".into())];
                if let Some(since) = cursor.since {
                    params.push(("from", since.format("%Y-%m-%dT%H:%M:%S").to_string()));
                }
                client.get(format!("{}/v2/everything", self.base_url)).query(&params)
            }
            Endpoint::Headlines { country, category } => client
                .get(format!("{}/v2/top-headlines", self.base_url))
                .query(&[("country", country), ("category", category)]),
        };
        req.query(&[("pageSize", size), ("page", page)]).header("X-Api-Key", self.key.expose())
    }

    fn classify(&self, resp: &HttpResponse, _cursor: &Self::Cursor) -> Option<ErrorClass> {
        // 426 maximumResultsReached: the plan's result window is exhausted; paging ends.
        if resp.status == 426 {
            return None;
        }
        // One API key serves every NewsAPI source: its refusal stops the producer.
        if resp.status == 401 {
            return Some(ErrorClass::Fatal);
        }
        classify_http(resp.status, resp.header("retry-after"), SystemTime::now())
    }

    fn fatal_message(&self, what: &str, resp: Option<&HttpResponse>) -> String {
        let code = resp
            .and_then(|r| serde_json::from_slice::<Response>(&r.body).ok())
            .and_then(|r| r.code)
            .unwrap_or_else(|| "no error code".into());
        format!("NewsAPI refused the API key ({what}, {code}); check NEWS_API_KEY")
    }

    fn normalize(&self, resp: &HttpResponse, cursor: &Cursor) -> Result<Normalized<NewsArticle, Cursor>, String> {
        let body: Response = serde_json::from_slice(&resp.body).map_err(|e| format!("malformed response: {e}"))?;
        let end_of_pass =
            |newest: Option<DateTime<Utc>>| Cursor { since: newest.or(cursor.since), page: 1, newest: None };
        if body.status != "ok" {
            return match body.code.as_deref() {
                Some("maximumResultsReached") => Ok(Normalized::at(end_of_pass(cursor.newest))),
                other => Err(format!("NewsAPI error status `{}` ({})", body.status, other.unwrap_or("no code"))),
            };
        }
        let mut out = Normalized::at(cursor.clone());
        let mut newest = cursor.newest;
        for raw in &body.articles {
            let bytes = serde_json::to_vec(raw).unwrap_or_default();
            match article(raw, &self.symbols, resp.received_at) {
                Ok(a) => {
                    newest = newest.max(Some(a.published_at));
                    out.records.push((a, bytes));
                }
                Err(reason) => out.rejects.push(Reject { raw: bytes, reason }),
            }
        }
        let page = cursor.page.max(1);
        let seen = u64::from(page) * u64::from(PAGE_SIZE);
        let full = body.articles.len() == PAGE_SIZE as usize;
        if full && body.total_results.is_some_and(|t| t > seen) {
            out.cursor = Cursor { since: cursor.since, page: page + 1, newest };
            out.more = true;
        } else {
            out.cursor = end_of_pass(newest);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
