//! Alpha Vantage `NEWS_SENTIMENT` (docs/providers.md, Alpha Vantage), one poller per ticker, normalized to
//! `news.article/v1` with the provider's sentiment.
//!
//! - Cursor: the newest `time_published` seen; the next poll asks `time_from=` it (minute
//!   precision, so the boundary stories come again and the dedup window drops them).
//! - Every error comes with HTTP 200, as a body without `feed`: `Error Message` or an
//!   `Information`/`Note` mentioning the API key is fatal; "No articles found" is an empty
//!   success; "Invalid inputs" is permanent; the rate notices are told apart by what they
//!   limit, not by any "per day" in their text (see [`rate_notice_wait`]): the per-second burst
//!   notice (which mentions the daily limit in passing) waits ≥ 1 s, the legacy per-minute note
//!   ≥ 12 s, only the daily cap waits until the next UTC midnight.
//! - `time_published` (`20240102T160013`) carries no zone; it is read as UTC (docs/providers.md
//!   marks the zone unverified) and the raw item stays in the DLQ path if it does not parse.

use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use ingest_core::config::Secret;
use ingest_core::http::HttpResponse;
use ingest_core::record::{NewsArticle, SentimentSource};
use ingest_core::resilience::ErrorClass;
use ingest_core::source::{Normalized, Poller, Reject};
use serde::{Deserialize, Serialize};

use crate::{canon, text};

/// Provider label.
pub const PROVIDER: &str = "alphavantage";

/// Articles asked for per request.
pub const LIMIT: u32 = 200;

/// Where the next poll starts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    /// Articles published at or after this minute; `None` on the first poll.
    pub since: Option<DateTime<Utc>>,
}

/// Topics `NEWS_SENTIMENT` accepts (request form).
pub const TOPICS: &[&str] = &[
    "blockchain",
    "earnings",
    "ipo",
    "mergers_and_acquisitions",
    "financial_markets",
    "economy_fiscal",
    "economy_monetary",
    "economy_macro",
    "energy_transportation",
    "finance",
    "life_sciences",
    "manufacturing",
    "real_estate",
    "retail_wholesale",
    "technology",
];

/// What one poller asks about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// `tickers=<ticker>`
    Ticker(String),
    /// `topics=<topic>`
    Topic(String),
}

/// One `NEWS_SENTIMENT` poller (a ticker or a topic).
#[derive(Debug, Clone)]
pub struct AlphaVantage {
    name: String,
    base_url: String,
    key: Secret,
    query: Query,
    symbols: std::sync::Arc<Vec<String>>,
    interval: Duration,
}

impl AlphaVantage {
    /// A poller of news about `query`.
    pub fn new(
        base_url: &str,
        key: Secret,
        query: Query,
        symbols: std::sync::Arc<Vec<String>>,
        interval: Duration,
    ) -> Self {
        let name = match &query {
            Query::Ticker(t) => format!("alphavantage:{t}"),
            Query::Topic(t) => format!("alphavantage:topic:{t}"),
        };
        Self { name, base_url: base_url.trim_end_matches('/').to_string(), key, query, symbols, interval }
    }
}

#[derive(Debug, Deserialize)]
struct TickerSentiment {
    ticker: String,
}

#[derive(Debug, Deserialize)]
struct Item {
    title: String,
    url: String,
    time_published: String,
    #[serde(default)]
    authors: Vec<String>,
    #[serde(default)]
    summary: Option<String>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    overall_sentiment_score: Option<f64>,
    #[serde(default)]
    ticker_sentiment: Vec<TickerSentiment>,
}

/// The notice of a body without `feed` (`Error Message`, `Information` or `Note`).
fn notice(body: &[u8]) -> Option<(String, String)> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    if v.get("feed").is_some() {
        return None;
    }
    ["Error Message", "Information", "Note"]
        .iter()
        .find_map(|k| v.get(*k).and_then(|m| m.as_str()).map(|m| ((*k).to_string(), m.to_string())))
}

fn is_no_articles(message: &str) -> bool {
    message.contains("No articles found")
}

/// Parses `YYYYMMDDTHHMMSS` as UTC.
fn published(raw: &str) -> Result<DateTime<Utc>, String> {
    NaiveDateTime::parse_from_str(raw, "%Y%m%dT%H%M%S")
        .map(|t| t.and_utc())
        .map_err(|_| format!("`time_published` is not YYYYMMDDTHHMMSS: {raw:?}"))
}

/// One feed item → `news.article/v1`.
pub fn article(raw: &serde_json::Value, symbols: &[String], received_at: DateTime<Utc>) -> Result<NewsArticle, String> {
    let it: Item = serde_json::from_value(raw.clone()).map_err(|e| format!("malformed feed item: {e}"))?;
    let canonical_url = canon::canonical_url(&it.url).map_err(|e| format!("`url`: {e}"))?;
    let summary = it.summary.filter(|s| !s.trim().is_empty());
    let tagged: Vec<String> =
        it.ticker_sentiment.iter().map(|t| t.ticker.trim().to_string()).filter(|t| !t.is_empty()).collect();
    let tick = text::tickers(&format!("{}. {}", it.title, summary.as_deref().unwrap_or("")), &tagged, symbols);
    let sentiment = it.overall_sentiment_score.filter(|s| s.is_finite()).map(|s| s.clamp(-1.0, 1.0));
    Ok(NewsArticle {
        id: canon::article_id(&canonical_url),
        title: it.title.trim().to_string(),
        content: summary.clone().unwrap_or_default(),
        source: it.source.unwrap_or_default(),
        url: it.url.trim().to_string(),
        canonical_url,
        published_at: published(&it.time_published)?,
        sentiment,
        sentiment_source: sentiment.map(|_| SentimentSource::Provider),
        tickers: tick,
        authors: it.authors.into_iter().filter(|a| !a.trim().is_empty()).collect(),
        summary,
        content_truncated: false,
        provider: PROVIDER.into(),
        received_at,
    })
}

/// How long until the next UTC midnight (when a daily cap resets).
fn until_midnight(now: DateTime<Utc>) -> Duration {
    let next = now.date_naive().succ_opt().and_then(|d| d.and_hms_opt(0, 0, 0)).map(|t| t.and_utc());
    next.and_then(|n| (n - now).to_std().ok()).unwrap_or(Duration::from_secs(3600))
}

impl Poller for AlphaVantage {
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
        let about = match &self.query {
            Query::Ticker(t) => ("tickers", t.clone()),
            Query::Topic(t) => ("topics", t.clone()),
        };
        let mut params = vec![
            ("function", "NEWS_SENTIMENT".to_string()),
            about,
            ("sort", "LATEST".into()),
            ("limit", LIMIT.to_string()),
        ];
        if let Some(since) = cursor.since {
            params.push(("time_from", since.format("%Y%m%dT%H%M").to_string()));
        }
        params.push(("apikey", self.key.expose().to_string()));
        client.get(format!("{}/query", self.base_url)).query(&params)
    }

    fn classify(&self, resp: &HttpResponse, _cursor: &Self::Cursor) -> Option<ErrorClass> {
        if resp.status != 200 {
            return ingest_core::resilience::classify_http(
                resp.status,
                resp.header("retry-after"),
                std::time::SystemTime::now(),
            );
        }
        let (kind, message) = notice(&resp.body)?;
        let lower = message.to_lowercase();
        Some(if lower.contains("apikey") || lower.contains("api key is invalid") {
            ErrorClass::Fatal
        } else if is_no_articles(&message) {
            return None;
        } else if kind == "Error Message" || lower.contains("invalid inputs") || lower.contains("invalid api call") {
            ErrorClass::Permanent
        } else {
            rate_notice(&lower, resp.received_at)
        })
    }

    fn fatal_message(&self, what: &str, _resp: Option<&HttpResponse>) -> String {
        format!("Alpha Vantage refused the API key ({what}); check ALPHAVANTAGE_API_KEY")
    }

    fn normalize(&self, resp: &HttpResponse, cursor: &Cursor) -> Result<Normalized<NewsArticle, Cursor>, String> {
        let mut out = Normalized::at(cursor.clone());
        if let Some((_, message)) = notice(&resp.body) {
            if is_no_articles(&message) {
                return Ok(out);
            }
            return Err(format!("Alpha Vantage notice: {message}"));
        }
        let v: serde_json::Value =
            serde_json::from_slice(&resp.body).map_err(|e| format!("malformed response: {e}"))?;
        let feed = v.get("feed").and_then(|f| f.as_array()).ok_or("response has no `feed` array")?;
        let mut newest = cursor.since;
        for raw in feed {
            let bytes = serde_json::to_vec(raw).unwrap_or_default();
            match article(raw, &self.symbols, resp.received_at) {
                Ok(a) => {
                    newest = newest.max(Some(a.published_at));
                    out.records.push((a, bytes));
                }
                Err(reason) => out.rejects.push(Reject { raw: bytes, reason }),
            }
        }
        out.cursor = Cursor { since: newest };
        Ok(out)
    }
}

/// How to read an Alpha Vantage rate notice (`lower`: its text, lower-cased):
/// - the per-second burst notice ("…spreading out your free API requests more sparingly (1
///   request per second)… to lift the free key rate limit (25 requests per day)…"): 1.5 s;
/// - the legacy note ("…5 calls per minute and 500 calls per day…"): 12 s, one call's share
///   of a minute at 5 per minute;
/// - the daily cap ("Our standard API rate limit is 25 requests per day…"): the quota is used
///   up until the next UTC midnight, when it resets (an event says so);
/// - any other notice: 60 s.
fn rate_notice(lower: &str, now: DateTime<Utc>) -> ErrorClass {
    let after = |d| ErrorClass::RateLimited { after: Some(d) };
    if lower.contains("per second") || lower.contains("burst") {
        after(Duration::from_millis(1500))
    } else if lower.contains("per minute") {
        after(Duration::from_secs(12))
    } else if lower.contains("per day") {
        ErrorClass::QuotaExhausted { until: Some(until_midnight(now)) }
    } else {
        after(Duration::from_secs(60))
    }
}

#[cfg(test)]
mod tests;
