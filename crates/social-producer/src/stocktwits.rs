//! StockTwits symbol streams (docs/providers.md, StockTwits): `GET /api/2/streams/symbol/{SYMBOL}.json?since=<id>`,
//! one poller per symbol, normalized to `social.post/v1`.
//!
//! - Cursor: the newest message id seen (`since`); the first poll reads the latest 30. When a
//!   poll's page (newest first) does not reach back to `since` (`cursor.more`, or a full page),
//!   older pages follow with `max` = the oldest id read − 1 (`max` is inclusive: asking for the
//!   oldest id itself would repeat it), up to `catch_up_pages`; a cut is a `gap` event.
//! - Bodies are HTML-escaped (`&#39;`): unescaped once. The user's `Bullish`/`Bearish` label is
//!   kept (`sentiment_label`) and is the sentiment (+1 / −1, source `provider`); messages without
//!   one are scored by the lexicon.
//! - Tickers: the message's `symbols[]`, then cashtags in the text.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ingest_core::http::HttpResponse;
use ingest_core::record::{Engagement, Platform, SentimentSource, SocialPost};
use ingest_core::source::{Cut, Normalized, Poller, Reject};
use serde::{Deserialize, Serialize};
use text_signals::{sentiment, text};

use crate::catch_up::{Paging, Step};

/// Provider label.
pub const PROVIDER: &str = "stocktwits";

/// Where the next poll starts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    /// Newest message id seen by a completed poll.
    pub since: Option<u64>,
    /// A catch-up in progress: older pages follow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch_up: Option<CatchUp>,
}

/// A catch-up through older pages, stored with each page's records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatchUp {
    /// The next page's `max` (inclusive).
    pub max: u64,
    /// The newest id before the catch-up began (`since` of every page).
    pub target: u64,
    /// The newest id of the catch-up's first page.
    pub newest: u64,
    /// Pages read so far.
    pub pages: u32,
}

/// Messages per page StockTwits returns at most.
const PAGE: usize = 30;

/// One symbol's stream poller.
#[derive(Debug, Clone)]
pub struct SymbolStream {
    name: String,
    base_url: String,
    symbol: String,
    symbols: Arc<Vec<String>>,
    interval: Duration,
    catch_up_pages: u32,
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
            catch_up_pages: 5,
        }
    }

    /// At most `pages` pages per catch-up (at least 1).
    #[must_use]
    pub fn with_catch_up(mut self, pages: u32) -> Self {
        self.catch_up_pages = pages.max(1);
        self
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
        let req = match cursor.catch_up.as_ref().map(|c| c.target).or(cursor.since) {
            Some(id) => req.query(&[("since", id)]),
            None => req,
        };
        match &cursor.catch_up {
            Some(c) => req.query(&[("max", c.max)]),
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
        let mut out = Normalized::at(cursor.clone());
        let (mut page_newest, mut page_oldest) = (None::<u64>, None::<u64>);
        let mut oldest_at = None;
        for raw in messages {
            let bytes = serde_json::to_vec(raw).unwrap_or_default();
            let id = raw.get("id").and_then(serde_json::Value::as_u64);
            match post(raw, &self.symbol, &self.symbols, resp.received_at) {
                Ok(p) => {
                    if let Some(id) = id {
                        page_newest = page_newest.max(Some(id));
                        if page_oldest.is_none_or(|o| id < o) {
                            (page_oldest, oldest_at) = (Some(id), Some(p.created_at));
                        }
                    }
                    out.records.push((p, bytes));
                }
                Err(reason) => out.rejects.push(Reject { raw: bytes, reason }),
            }
        }
        let more = v.pointer("/cursor/more").and_then(serde_json::Value::as_bool).unwrap_or(false);
        let paging = Paging {
            target: cursor.catch_up.as_ref().map(|c| c.target).or(cursor.since),
            newest: cursor.catch_up.as_ref().map(|c| c.newest).into_iter().chain(page_newest).max(),
            pages: cursor.catch_up.as_ref().map_or(0, |c| c.pages) + 1,
            page_oldest,
            has_older: more || messages.len() >= PAGE,
        };
        match paging.step(self.catch_up_pages) {
            Step::Done { newest, cut } => {
                out.cursor = Cursor { since: newest.or(cursor.since), catch_up: None };
                out.cut = cut.map(|(_, _, pages)| Cut {
                    // Message ids carry no time: the gap runs from the previous poll's time to
                    // the oldest message read.
                    from: None,
                    to: oldest_at,
                    message: format!(
                        "catch-up stopped after {pages} pages (social.stocktwits.catch_up_pages): ${} messages between id {} and id {} were not fetched",
                        self.symbol,
                        paging.target.unwrap_or_default(),
                        page_oldest.unwrap_or_default()
                    ),
                });
            }
            Step::Next { target, newest } => {
                let max = page_oldest.unwrap_or(1).saturating_sub(1);
                out.cursor.catch_up = Some(CatchUp { max, target, newest, pages: paging.pages });
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

    fn page(ids: &[u64], more: bool) -> HttpResponse {
        let messages: Vec<serde_json::Value> = ids
            .iter()
            .map(|id| serde_json::json!({"id": id, "body": "b", "created_at": "2024-01-02T14:00:00Z", "user": {"username": "u"}}))
            .collect();
        let body = serde_json::json!({"response": {"status": 200}, "cursor": {"more": more}, "messages": messages});
        HttpResponse {
            status: 200,
            headers: HeaderMap::new(),
            body: Bytes::from(body.to_string()),
            received_at: Utc::now(),
        }
    }

    #[test]
    fn older_pages_follow_with_max_back_to_since() {
        let p =
            SymbolStream::new("https://st.example", "F", Arc::new(vec![]), Duration::from_secs(60)).with_catch_up(3);
        let seen = Cursor { since: Some(100), catch_up: None };
        let first = p.normalize(&page(&[190, 180], true), &seen).unwrap();
        assert!(first.more);
        assert_eq!(first.cursor.catch_up, Some(CatchUp { max: 179, target: 100, newest: 190, pages: 1 }));
        let req = p.request(&reqwest::Client::new(), &first.cursor).build().unwrap();
        assert_eq!(req.url().query(), Some("since=100&max=179"), "max is inclusive: one below the oldest read");
        let second = p.normalize(&page(&[150, 120], false), &first.cursor).unwrap();
        assert!(!second.more && second.cut.is_none());
        assert_eq!(second.cursor, Cursor { since: Some(190), catch_up: None });
        // Cut at the page limit: an event's worth of detail, the newest id kept.
        let p = p.with_catch_up(1);
        let cut = p.normalize(&page(&[190, 180], true), &seen).unwrap();
        assert!(!cut.more);
        assert!(cut.cut.unwrap().message.contains("between id 100 and id 180"));
        assert_eq!(cut.cursor.since, Some(190));
    }
}
