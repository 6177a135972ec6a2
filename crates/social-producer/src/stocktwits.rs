//! StockTwits symbol streams (providers.md §9): `GET /api/2/streams/symbol/{SYMBOL}.json?since=<id>`,
//! one poller per symbol, normalized to `social.post/v1`.
//!
//! - Cursor: the newest message id seen (`since`); the first poll reads the latest 30.
//! - Bodies are HTML-escaped (`&#39;`): unescaped once. The user's `Bullish`/`Bearish` label is
//!   kept (`sentiment_label`) and is the sentiment (+1 / −1, source `provider`); messages without
//!   one are scored by the lexicon.
//! - Tickers: the message's `symbols[]`, then cashtags in the text.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ingest_core::http::HttpResponse;
use ingest_core::record::{Engagement, Platform, SentimentSource, SocialPost};
use ingest_core::source::{Normalized, Poller, Reject};
use ingest_core::{sentiment, text};
use serde::{Deserialize, Serialize};

/// Provider label.
pub const PROVIDER: &str = "stocktwits";

/// Where the next poll starts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    /// Newest message id seen.
    pub since: Option<u64>,
}

/// One symbol's stream poller.
#[derive(Debug, Clone)]
pub struct SymbolStream {
    name: String,
    base_url: String,
    symbol: String,
    symbols: Arc<Vec<String>>,
    interval: Duration,
}

impl SymbolStream {
    /// A poller of `symbol`'s stream.
    pub fn new(base_url: &str, symbol: &str, symbols: Arc<Vec<String>>, interval: Duration) -> Self {
        Self {
            name: format!("stocktwits:{symbol}"),
            base_url: base_url.trim_end_matches('/').to_string(),
            symbol: symbol.to_string(),
            symbols,
            interval,
        }
    }
}

#[derive(Debug, Deserialize)]
struct User {
    username: String,
}

#[derive(Debug, Deserialize)]
struct Symbol {
    symbol: String,
}

#[derive(Debug, Deserialize)]
struct Likes {
    #[serde(default)]
    total: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct Label {
    basic: String,
}

#[derive(Debug, Default, Deserialize)]
struct Entities {
    #[serde(default)]
    sentiment: Option<Label>,
}

#[derive(Debug, Deserialize)]
struct Message {
    id: u64,
    body: String,
    created_at: String,
    user: User,
    #[serde(default)]
    symbols: Vec<Symbol>,
    #[serde(default)]
    likes: Option<Likes>,
    #[serde(default)]
    entities: Option<Entities>,
}

/// One message → `social.post/v1`.
pub fn post(
    raw: &serde_json::Value,
    stream: &str,
    symbols: &[String],
    received_at: DateTime<Utc>,
) -> Result<SocialPost, String> {
    let m: Message = serde_json::from_value(raw.clone()).map_err(|e| format!("malformed message: {e}"))?;
    let created_at = DateTime::parse_from_rfc3339(&m.created_at)
        .map_err(|e| format!("`created_at` is not RFC 3339 ({e})"))?
        .with_timezone(&Utc);
    let body = text::html_unescape(&m.body);
    let tagged: Vec<String> = m.symbols.iter().map(|s| s.symbol.clone()).collect();
    let tickers = text::tickers(&body, &tagged, symbols);
    let label = m.entities.and_then(|e| e.sentiment).map(|l| l.basic);
    let (score, source) = match label.as_deref() {
        Some("Bullish") => (1.0, SentimentSource::Provider),
        Some("Bearish") => (-1.0, SentimentSource::Provider),
        _ => (sentiment::score(&body), SentimentSource::Lexicon),
    };
    Ok(SocialPost {
        id: format!("stocktwits:{}", m.id),
        platform: Platform::Stocktwits,
        url: format!("https://stocktwits.com/{}/message/{}", m.user.username, m.id),
        author: m.user.username,
        text: body,
        created_at,
        tickers,
        sentiment: Some(score),
        sentiment_source: Some(source),
        sentiment_label: label,
        removed: false,
        engagement: Engagement { score: None, comments: None, likes: m.likes.and_then(|l| l.total) },
        community: Some(format!("${stream}")),
        provider: PROVIDER.into(),
        received_at,
    })
}

impl Poller for SymbolStream {
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

    fn request(&self, client: &reqwest::Client, cursor: &Cursor) -> reqwest::RequestBuilder {
        let req = client.get(format!("{}/api/2/streams/symbol/{}.json", self.base_url, self.symbol));
        match cursor.since {
            Some(id) => req.query(&[("since", id)]),
            None => req,
        }
    }

    fn normalize(&self, resp: &HttpResponse, cursor: &Cursor) -> Result<Normalized<SocialPost, Cursor>, String> {
        let v: serde_json::Value = serde_json::from_slice(&resp.body).map_err(|e| format!("malformed stream: {e}"))?;
        if let Some(status) = v.pointer("/response/status").and_then(serde_json::Value::as_u64).filter(|s| *s != 200) {
            return Err(format!(
                "StockTwits answered status {status}: {}",
                v.get("errors").unwrap_or(&serde_json::Value::Null)
            ));
        }
        let messages = v.get("messages").and_then(|m| m.as_array()).ok_or("no `messages` array")?;
        let mut out = Normalized { records: vec![], rejects: vec![], cursor: cursor.clone(), more: false };
        for raw in messages {
            let bytes = serde_json::to_vec(raw).unwrap_or_default();
            match post(raw, &self.symbol, &self.symbols, resp.received_at) {
                Ok(p) => {
                    if let Some(id) = raw.get("id").and_then(serde_json::Value::as_u64) {
                        out.cursor.since = out.cursor.since.max(Some(id));
                    }
                    out.records.push((p, bytes));
                }
                Err(reason) => out.rejects.push(Reject { raw: bytes, reason }),
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
    use reqwest::header::HeaderMap;

    use super::*;

    #[test]
    fn messages_field_by_field() {
        let body = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/test_data/stocktwits_f.json")).unwrap();
        let resp = HttpResponse {
            status: 200,
            headers: HeaderMap::new(),
            body: Bytes::from(body),
            received_at: Utc.with_ymd_and_hms(2019, 4, 26, 4, 0, 0).unwrap(),
        };
        let p = SymbolStream::new("https://st.example", "F", Arc::new(vec![]), Duration::from_secs(60));
        let n = p.normalize(&resp, &Cursor::default()).unwrap();
        assert_eq!((n.records.len(), n.rejects.len()), (2, 1));
        let m = &n.records[0].0;
        assert_eq!(m.id, "stocktwits:161970151");
        assert!(m.text.contains("Let's begin the fun") && m.text.contains("Tomorrow's watch list"), "{}", m.text);
        assert_eq!(m.tickers, ["F", "RBZ", "YUMA"]);
        assert_eq!(
            (m.sentiment, m.sentiment_source, m.sentiment_label.as_deref()),
            (Some(1.0), Some(SentimentSource::Provider), Some("Bullish"))
        );
        assert_eq!(m.engagement.likes, Some(2));
        assert_eq!(m.url, "https://stocktwits.com/todmacx/message/161970151");
        assert_eq!(m.created_at, Utc.with_ymd_and_hms(2019, 4, 26, 2, 31, 41).unwrap());
        assert_eq!(m.community.as_deref(), Some("$F"));
        assert_eq!(m.validate(), Ok(()));
        let b = &n.records[1].0;
        assert_eq!(b.text, "Ford recalls trucks & misses estimates");
        assert_eq!((b.sentiment_source, b.sentiment_label.as_deref()), (Some(SentimentSource::Lexicon), None));
        assert!(b.sentiment.unwrap() < 0.0);
        assert_eq!(n.cursor.since, Some(161_970_974));
        let req = p.request(&reqwest::Client::new(), &n.cursor).build().unwrap();
        assert_eq!(req.url().as_str(), "https://st.example/api/2/streams/symbol/F.json?since=161970974");
    }
}
