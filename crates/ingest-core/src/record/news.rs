//! `news.article/v1`: one news story.
//!
//! ```json
//! {"id":"5b1f7c0e-…","title":"Apple beats estimates","content":"…","source":"Reuters",
//!  "url":"https://www.reuters.com/…/?utm_source=feed","canonical_url":"https://reuters.com/…",
//!  "published_at":"2024-01-02T13:05:00Z","sentiment":0.41,
//!  "sentiment_source":"provider","tickers":["AAPL"],"authors":["Jane Doe"],
//!  "summary":"…","provider":"alphavantage","received_at":"2024-01-02T13:06:01.120Z"}
//! ```

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Record, TopicKind, ValidationError, check, ts};

/// Where `sentiment` came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SentimentSource {
    /// The provider's own score (Alpha Vantage).
    Provider,
    /// Our built-in finance lexicon scorer.
    Lexicon,
}

/// A normalized news article (docs/contracts.md, Records).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewsArticle {
    /// UUID v5 of `canonical_url`: the same story from two polls or providers has one id.
    pub id: String,
    /// Headline.
    pub title: String,
    /// Body text as the provider gives it (truncation markers removed).
    pub content: String,
    /// Publisher name.
    pub source: String,
    /// The article's link exactly as the provider gave it (what users open: some sites break
    /// without their `www.` or trailing slash).
    pub url: String,
    /// The normalized form of `url` (https, host without `www.`, no tracking parameters, no
    /// fragment, no trailing slash), from which `id` is derived; equal for the same story
    /// reported by two providers.
    pub canonical_url: String,
    /// Publication time.
    #[serde(with = "ts")]
    pub published_at: DateTime<Utc>,
    /// Sentiment in [-1, 1], when scored.
    pub sentiment: Option<f64>,
    /// Who scored it.
    pub sentiment_source: Option<SentimentSource>,
    /// Ticker symbols the article is about.
    #[serde(default)]
    pub tickers: Vec<String>,
    /// Authors.
    #[serde(default)]
    pub authors: Vec<String>,
    /// Provider summary or description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// True when the provider cut the content short.
    #[serde(default)]
    pub content_truncated: bool,
    /// `newsapi`, `alphavantage`.
    pub provider: String,
    /// When we received it.
    #[serde(with = "ts")]
    pub received_at: DateTime<Utc>,
}

impl Record for NewsArticle {
    const SCHEMA: &'static str = "news.article/v1";
    const TOPIC: TopicKind = TopicKind::NewsArticles;

    fn key(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.id)
    }
    fn provider(&self) -> &str {
        &self.provider
    }
    fn event_time(&self) -> DateTime<Utc> {
        self.published_at
    }
    fn received_at(&self) -> DateTime<Utc> {
        self.received_at
    }

    fn validate(&self) -> Result<(), ValidationError> {
        check::token("id", &self.id, 128)?;
        check::non_empty("title", &self.title)?;
        check::http_url("url", &self.url)?;
        check::http_url("canonical_url", &self.canonical_url)?;
        check::event_time("published_at", self.published_at, self.received_at)?;
        check::unit_interval("sentiment", self.sentiment)?;
        if self.sentiment.is_some() != self.sentiment_source.is_some() {
            return Err(ValidationError::new("sentiment_source", "set exactly when sentiment is set"));
        }
        for t in &self.tickers {
            check::token("tickers", t, 32)?;
        }
        check::non_empty("provider", &self.provider)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::testutil::t0;

    fn article() -> NewsArticle {
        NewsArticle {
            id: "0b7c6f2e-9d4b-5a43-8c55-2f5f6a3d9e10".into(),
            title: "Apple beats estimates".into(),
            content: "Apple reported…".into(),
            source: "Reuters".into(),
            url: "https://www.reuters.com/technology/apple/".into(),
            canonical_url: "https://reuters.com/technology/apple".into(),
            published_at: t0() - chrono::Duration::minutes(3),
            sentiment: Some(0.41),
            sentiment_source: Some(SentimentSource::Provider),
            tickers: vec!["AAPL".into()],
            authors: vec![],
            summary: None,
            content_truncated: false,
            provider: "alphavantage".into(),
            received_at: t0(),
        }
    }

    #[test]
    fn validation_table() {
        assert_eq!(article().validate(), Ok(()));
        type Mutate = fn(&mut NewsArticle);
        let cases: &[(&str, Mutate)] = &[
            ("id", |a| a.id.clear()),
            ("title", |a| a.title = " ".into()),
            ("url", |a| a.url = "ftp://x".into()),
            ("url", |a| a.url = "https://".into()),
            ("canonical_url", |a| a.canonical_url = "ftp://x".into()),
            ("sentiment", |a| a.sentiment = Some(1.5)),
            ("sentiment", |a| a.sentiment = Some(f64::NAN)),
            ("sentiment_source", |a| a.sentiment_source = None),
            ("tickers", |a| a.tickers = vec!["".into()]),
        ];
        for (field, mutate) in cases {
            let mut a = article();
            mutate(&mut a);
            assert_eq!(a.validate().expect_err(field).field, *field);
        }
        assert_eq!(article().key(), "0b7c6f2e-9d4b-5a43-8c55-2f5f6a3d9e10");
    }
}
