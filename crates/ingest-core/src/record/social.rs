//! `social.post/v1`: one post from Reddit, X or StockTwits.
//!
//! ```json
//! {"id":"reddit:t3_18wxyz","platform":"reddit","author":"someone","text":"$TSLA to the moon",
//!  "url":"https://www.reddit.com/r/wallstreetbets/comments/18wxyz/","created_at":"2024-01-02T14:00:00Z",
//!  "tickers":["TSLA"],"sentiment":0.6,"sentiment_source":"lexicon","sentiment_label":null,
//!  "removed":false,"engagement":{"score":42,"comments":7,"likes":null},
//!  "community":"wallstreetbets","provider":"reddit","received_at":"2024-01-02T14:00:03.5Z"}
//! ```

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Record, SentimentSource, TopicKind, ValidationError, check, ts};

/// Where a post was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// reddit.com; ids `reddit:<fullname>`.
    Reddit,
    /// X (Twitter); ids `x:<id>`.
    X,
    /// StockTwits; ids `stocktwits:<id>`.
    Stocktwits,
}

impl Platform {
    /// The id prefix of the platform, with the colon.
    pub fn id_prefix(self) -> &'static str {
        match self {
            Platform::Reddit => "reddit:",
            Platform::X => "x:",
            Platform::Stocktwits => "stocktwits:",
        }
    }
}

/// Engagement counts; a platform that has no such count leaves it null.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Engagement {
    /// Net score (Reddit) or equivalent.
    pub score: Option<i64>,
    /// Replies or comments.
    pub comments: Option<i64>,
    /// Likes.
    pub likes: Option<i64>,
}

/// A normalized social post (docs/contracts.md, Records).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SocialPost {
    /// Platform-prefixed id; Kafka key.
    pub id: String,
    /// reddit, x, stocktwits.
    pub platform: Platform,
    /// Author handle (`[deleted]` when removed).
    pub author: String,
    /// HTML-unescaped text.
    pub text: String,
    /// Permalink.
    pub url: String,
    /// When it was posted.
    #[serde(with = "ts")]
    pub created_at: DateTime<Utc>,
    /// Cashtags and known symbols.
    #[serde(default)]
    pub tickers: Vec<String>,
    /// Sentiment in [-1, 1], when known.
    pub sentiment: Option<f64>,
    /// Who scored it: the platform's own label (`provider`) or the lexicon scorer.
    #[serde(default)]
    pub sentiment_source: Option<SentimentSource>,
    /// The platform's label as given (StockTwits `Bullish`/`Bearish`).
    #[serde(default)]
    pub sentiment_label: Option<String>,
    /// The post was deleted or removed by its author or moderators: `text` holds what is left
    /// (a title), `author` what the platform shows (`[deleted]`).
    #[serde(default)]
    pub removed: bool,
    /// Engagement counts.
    #[serde(default)]
    pub engagement: Engagement,
    /// Subreddit or equivalent.
    pub community: Option<String>,
    /// Provider that delivered it.
    pub provider: String,
    /// When we received it.
    #[serde(with = "ts")]
    pub received_at: DateTime<Utc>,
}

impl Record for SocialPost {
    const SCHEMA: &'static str = "social.post/v1";
    const TOPIC: TopicKind = TopicKind::SocialPosts;

    fn key(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.id)
    }
    fn provider(&self) -> &str {
        &self.provider
    }
    fn event_time(&self) -> DateTime<Utc> {
        self.created_at
    }
    fn received_at(&self) -> DateTime<Utc> {
        self.received_at
    }

    fn validate(&self) -> Result<(), ValidationError> {
        check::token("id", &self.id, 128)?;
        let prefix = self.platform.id_prefix();
        if !self.id.starts_with(prefix) || self.id.len() == prefix.len() {
            return Err(ValidationError::new("id", format!("must be `{prefix}<id>`")));
        }
        check::http_url("url", &self.url)?;
        check::event_time("created_at", self.created_at, self.received_at)?;
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

    fn post() -> SocialPost {
        SocialPost {
            id: "reddit:t3_18wxyz".into(),
            platform: Platform::Reddit,
            author: "someone".into(),
            text: "$TSLA to the moon".into(),
            url: "https://www.reddit.com/r/wallstreetbets/comments/18wxyz/".into(),
            created_at: t0(),
            tickers: vec!["TSLA".into()],
            sentiment: Some(0.6),
            sentiment_source: Some(SentimentSource::Lexicon),
            sentiment_label: None,
            removed: false,
            engagement: Engagement { score: Some(42), comments: Some(7), likes: None },
            community: Some("wallstreetbets".into()),
            provider: "reddit".into(),
            received_at: t0(),
        }
    }

    #[test]
    fn validation_table() {
        assert_eq!(post().validate(), Ok(()));
        type Mutate = fn(&mut SocialPost);
        let cases: &[(&str, Mutate)] = &[
            ("id", |p| p.id = "x:123".into()),
            ("id", |p| p.id = "reddit:".into()),
            ("url", |p| p.url = "/r/x".into()),
            ("sentiment", |p| p.sentiment = Some(-2.0)),
            ("sentiment_source", |p| p.sentiment_source = None),
        ];
        for (field, mutate) in cases {
            let mut p = post();
            mutate(&mut p);
            assert_eq!(p.validate().expect_err(field).field, *field);
        }
        let v = serde_json::to_value(post()).unwrap();
        assert_eq!(v["platform"], "reddit");
        assert_eq!(v["engagement"]["likes"], serde_json::Value::Null);
    }
}
