//! X (Twitter) API v2 recent search (docs/providers.md, X), the polling alternative to the filtered
//! stream for accounts without stream access: `GET /2/tweets/search/recent` with the configured
//! rules as one query, normalized to `social.post/v1`.
//!
//! - Auth: `Authorization: Bearer <app bearer token>`; 401/403 are fatal.
//! - Fields: `created_at`, `author_id` and `public_metrics` exist only when asked for in
//!   `tweet.fields`; usernames come from `expansions=author_id` (`includes.users`).
//! - Cursor: `since_id` = the newest id seen; a pass follows `next_token` while the provider
//!   gives one, then the next poll starts from the pass's newest id.
//! - Rate limits: X sends no `Retry-After`. `x-rate-limit-remaining: 0` holds every X poller
//!   until `x-rate-limit-reset` (Unix seconds); a 429 waits for that reset too.
//! - `text` is HTML-escaped by X: unescaped once.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use ingest_core::config::Secret;
use ingest_core::http::HttpResponse;
use ingest_core::record::{Engagement, Platform, SentimentSource, SocialPost};
use ingest_core::resilience::{ErrorClass, classify_http};
use ingest_core::source::{Normalized, Poller, Reject};
use serde::{Deserialize, Serialize};
use text_signals::{sentiment, text};

/// Provider label.
pub const PROVIDER: &str = "x";

/// Where the next poll starts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    /// Tweets newer than this id (`since_id`).
    pub since_id: Option<String>,
    /// `next_token` of the pass in progress.
    pub next_token: Option<String>,
    /// Newest id seen in the pass in progress (becomes `since_id` when it ends).
    pub pass_newest: Option<String>,
}

/// The recent-search poller.
#[derive(Debug, Clone)]
pub struct RecentSearch {
    base_url: String,
    bearer: Secret,
    query: String,
    symbols: Arc<Vec<String>>,
    interval: Duration,
}

impl RecentSearch {
    /// A poller of tweets matching any of `rules` (joined with `OR`, each in parentheses).
    pub fn new(
        base_url: &str,
        bearer: Secret,
        rules: &[String],
        symbols: Arc<Vec<String>>,
        interval: Duration,
    ) -> Self {
        let query = rules.iter().map(|r| format!("({r})")).collect::<Vec<_>>().join(" OR ");
        Self { base_url: base_url.trim_end_matches('/').to_string(), bearer, query, symbols, interval }
    }
}

/// Numeric comparison of tweet ids (64-bit integers sent as strings).
fn newer(a: &str, b: &str) -> bool {
    (a.len(), a) > (b.len(), b)
}

/// Seconds until the reset of `x-rate-limit-reset` (Unix seconds), from now.
/// True for X's usage-cap answer (`{"title":"UsageCapExceeded",…,"period":"Monthly"}`): the
/// app's Post reads for the month are used up; only the next period (or a plan change) lifts it.
pub fn is_usage_cap(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("title").and_then(|t| t.as_str()).map(|t| t == "UsageCapExceeded"))
        .unwrap_or(false)
}

fn until_reset(resp: &HttpResponse) -> Option<Duration> {
    let reset: u64 = resp.header("x-rate-limit-reset")?.trim().parse().ok()?;
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(reset.saturating_sub(now).clamp(1, 900)))
}

#[derive(Debug, Deserialize)]
struct Metrics {
    #[serde(default)]
    like_count: Option<i64>,
    #[serde(default)]
    reply_count: Option<i64>,
    #[serde(default)]
    retweet_count: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct Tweet {
    id: String,
    text: String,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    author_id: Option<String>,
    #[serde(default)]
    public_metrics: Option<Metrics>,
}

#[derive(Debug, Deserialize)]
struct User {
    id: String,
    username: String,
}

/// One tweet (with the response's `includes.users`) → `social.post/v1`.
pub fn post(
    raw: &serde_json::Value,
    users: &[(String, String)],
    symbols: &[String],
    received_at: DateTime<Utc>,
) -> Result<SocialPost, String> {
    let t: Tweet = serde_json::from_value(raw.clone()).map_err(|e| format!("malformed tweet: {e}"))?;
    if t.id.is_empty() || !t.id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("tweet id is not numeric: {:?}", t.id));
    }
    let created_at =
        DateTime::parse_from_rfc3339(t.created_at.as_deref().ok_or("no `created_at` (ask for it in tweet.fields)")?)
            .map_err(|e| format!("`created_at` is not RFC 3339 ({e})"))?
            .with_timezone(&Utc);
    let author = t
        .author_id
        .as_ref()
        .and_then(|a| users.iter().find(|(id, _)| id == a).map(|(_, u)| u.clone()))
        .unwrap_or_default();
    let body = text::html_unescape(&t.text);
    let tickers = text::tickers(&body, &[], symbols);
    let url = if author.is_empty() {
        format!("https://x.com/i/web/status/{}", t.id)
    } else {
        format!("https://x.com/{author}/status/{}", t.id)
    };
    let m = t.public_metrics;
    Ok(SocialPost {
        id: format!("x:{}", t.id),
        platform: Platform::X,
        author,
        sentiment: Some(sentiment::score(&body)),
        sentiment_source: Some(SentimentSource::Lexicon),
        sentiment_label: None,
        removed: false,
        text: body,
        url,
        created_at,
        tickers,
        engagement: Engagement {
            score: m.as_ref().and_then(|m| m.retweet_count),
            comments: m.as_ref().and_then(|m| m.reply_count),
            likes: m.as_ref().and_then(|m| m.like_count),
        },
        community: None,
        provider: PROVIDER.into(),
        received_at,
    })
}

impl Poller for RecentSearch {
    type Record = SocialPost;
    type Cursor = Cursor;

    fn name(&self) -> &str {
        "x:recent-search"
    }

    fn provider(&self) -> &str {
        PROVIDER
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    fn request(&self, client: &reqwest::Client, cursor: &Cursor) -> reqwest::RequestBuilder {
        let mut params = vec![
            ("query", self.query.clone()),
            ("max_results", "100".to_string()),
            ("tweet.fields", "created_at,author_id,public_metrics".into()),
            ("expansions", "author_id".into()),
            ("user.fields", "username".into()),
        ];
        if let Some(id) = &cursor.since_id {
            params.push(("since_id", id.clone()));
        }
        if let Some(token) = &cursor.next_token {
            params.push(("next_token", token.clone()));
        }
        client.get(format!("{}/2/tweets/search/recent", self.base_url)).query(&params).bearer_auth(self.bearer.expose())
    }

    fn rate_hint(&self, resp: &HttpResponse) -> Option<Duration> {
        let remaining: u64 = resp.header("x-rate-limit-remaining")?.trim().parse().ok()?;
        if remaining == 0 { until_reset(resp) } else { None }
    }

    fn classify(&self, resp: &HttpResponse, _cursor: &Cursor) -> Option<ErrorClass> {
        match resp.status {
            // X sends no Retry-After: the reset header says when the window reopens.
            // The monthly usage cap also answers 429, but no window reset lifts it.
            429 if is_usage_cap(&resp.body) => Some(ErrorClass::QuotaExhausted { until: None }),
            429 => Some(ErrorClass::RateLimited { after: until_reset(resp) }),
            // One bearer token serves every X source: its refusal stops the producer.
            401 | 403 => Some(ErrorClass::Fatal),
            s => classify_http(s, None, SystemTime::now()),
        }
    }

    fn fatal_message(&self, what: &str, _resp: Option<&HttpResponse>) -> String {
        format!("X refused the bearer token ({what}); check TWITTER_BEARER_TOKEN and the app's access level")
    }

    fn normalize(&self, resp: &HttpResponse, cursor: &Cursor) -> Result<Normalized<SocialPost, Cursor>, String> {
        let v: serde_json::Value =
            serde_json::from_slice(&resp.body).map_err(|e| format!("malformed response: {e}"))?;
        let users: Vec<(String, String)> = v
            .pointer("/includes/users")
            .and_then(|u| serde_json::from_value::<Vec<User>>(u.clone()).ok())
            .unwrap_or_default()
            .into_iter()
            .map(|u| (u.id, u.username))
            .collect();
        let mut out = Normalized::at(cursor.clone());
        let mut pass_newest = cursor.pass_newest.clone();
        for raw in v.get("data").and_then(|d| d.as_array()).map(Vec::as_slice).unwrap_or_default() {
            let bytes = serde_json::to_vec(raw).unwrap_or_default();
            match post(raw, &users, &self.symbols, resp.received_at) {
                Ok(p) => {
                    let id = p.id.trim_start_matches("x:").to_string();
                    if pass_newest.as_deref().is_none_or(|n| newer(&id, n)) {
                        pass_newest = Some(id);
                    }
                    out.records.push((p, bytes));
                }
                Err(reason) => out.rejects.push(Reject { raw: bytes, reason }),
            }
        }
        match v.pointer("/meta/next_token").and_then(|t| t.as_str()) {
            Some(token) => {
                out.cursor =
                    Cursor { since_id: cursor.since_id.clone(), next_token: Some(token.to_string()), pass_newest };
                out.more = true;
            }
            None => {
                let since = match (pass_newest, &cursor.since_id) {
                    (Some(n), Some(s)) if !newer(&n, s) => Some(s.clone()),
                    (Some(n), _) => Some(n),
                    (None, s) => s.clone(),
                };
                out.cursor = Cursor { since_id: since, next_token: None, pass_newest: None };
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

    fn resp(status: u16, body: &str, headers: &[(&'static str, String)]) -> HttpResponse {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        HttpResponse {
            status,
            headers: h,
            body: Bytes::copy_from_slice(body.as_bytes()),
            received_at: Utc.with_ymd_and_hms(2023, 2, 1, 19, 0, 0).unwrap(),
        }
    }

    fn poller() -> RecentSearch {
        RecentSearch::new(
            "https://x.example",
            Secret::new("tok"),
            &["$AAPL lang:en".into(), "$TSLA".into()],
            Arc::new(vec![]),
            Duration::from_secs(60),
        )
    }

    const PAGE: &str = r#"{"data":[
        {"author_id":"2833017360","created_at":"2023-02-01T18:57:14.000Z","edit_history_tweet_ids":["1620858830937812995"],
         "id":"1620858830937812995","text":"$AAPL beats &amp; rallies","public_metrics":{"retweet_count":3,"reply_count":1,"like_count":9,"quote_count":0}},
        {"id":"999","text":"no created_at"}],
        "includes":{"users":[{"id":"2833017360","name":"Some One","username":"someone"}]},
        "meta":{"newest_id":"1620858830937812995","oldest_id":"999","result_count":2,"next_token":"b26v89c19zqg8o3fpzbn1e0ffhxjiofzw6po136rvbnul"}}"#;

    #[test]
    fn tweets_field_by_field_and_paging() {
        let p = poller();
        let n = p.normalize(&resp(200, PAGE, &[]), &Cursor::default()).unwrap();
        assert_eq!((n.records.len(), n.rejects.len()), (1, 1));
        let t = &n.records[0].0;
        assert_eq!(t.id, "x:1620858830937812995");
        assert_eq!((t.author.as_str(), t.text.as_str()), ("someone", "$AAPL beats & rallies"));
        assert_eq!(t.url, "https://x.com/someone/status/1620858830937812995");
        assert_eq!(t.created_at, Utc.with_ymd_and_hms(2023, 2, 1, 18, 57, 14).unwrap());
        assert_eq!(t.tickers, ["AAPL"]);
        assert_eq!(t.engagement, Engagement { score: Some(3), comments: Some(1), likes: Some(9) });
        assert_eq!(t.validate(), Ok(()));
        assert!(n.rejects[0].reason.contains("created_at"));
        assert!(n.more);
        assert_eq!(n.cursor.next_token.as_deref(), Some("b26v89c19zqg8o3fpzbn1e0ffhxjiofzw6po136rvbnul"));
        let last = p.normalize(&resp(200, r#"{"meta":{"result_count":0}}"#, &[]), &n.cursor).unwrap();
        assert!(!last.more);
        assert_eq!(
            last.cursor,
            Cursor { since_id: Some("1620858830937812995".into()), next_token: None, pass_newest: None }
        );
        let req = p.request(&reqwest::Client::new(), &last.cursor).build().unwrap();
        let url = req.url().to_string();
        for part in [
            "/2/tweets/search/recent?",
            "query=%28%24AAPL+lang%3Aen%29+OR+%28%24TSLA%29",
            "since_id=1620858830937812995",
            "tweet.fields=created_at%2Cauthor_id%2Cpublic_metrics",
            "expansions=author_id",
        ] {
            assert!(url.contains(part), "{part} in {url}");
        }
        assert_eq!(req.headers()["authorization"], "Bearer tok");
    }

    #[test]
    fn ids_compare_as_numbers() {
        assert!(newer("1620858830937812995", "999"));
        assert!(!newer("999", "1620858830937812995"));
        assert!(newer("20", "19"));
    }

    #[test]
    fn rate_limits_wait_for_the_reset() {
        let p = poller();
        let reset = (SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() + 30).to_string();
        let spent = resp(200, "{}", &[("x-rate-limit-remaining", "0".into()), ("x-rate-limit-reset", reset.clone())]);
        let hold = p.rate_hint(&spent).unwrap();
        assert!((Duration::from_secs(28)..=Duration::from_secs(30)).contains(&hold), "{hold:?}");
        assert_eq!(
            p.rate_hint(&resp(
                200,
                "{}",
                &[("x-rate-limit-remaining", "448".into()), ("x-rate-limit-reset", reset.clone())]
            )),
            None
        );
        let limited = resp(
            429,
            r#"{"title":"Too Many Requests","detail":"Too Many Requests","type":"about:blank","status":429}"#,
            &[("x-rate-limit-reset", reset)],
        );
        assert!(
            matches!(p.classify(&limited, &Cursor::default()), Some(ErrorClass::RateLimited { after: Some(d) }) if d >= Duration::from_secs(28))
        );
        assert_eq!(p.classify(&resp(401, "{}", &[]), &Cursor::default()), Some(ErrorClass::Fatal));
        assert_eq!(p.classify(&resp(403, "{}", &[]), &Cursor::default()), Some(ErrorClass::Fatal));
    }

    #[test]
    fn the_monthly_usage_cap_is_a_quota_not_a_rate_limit() {
        let p = poller();
        // The text X sends (docs/providers.md): a 429 whose window reset does not lift it.
        let capped = resp(
            429,
            r#"{"title":"UsageCapExceeded","detail":"Usage cap exceeded: Monthly product cap","type":"https://api.twitter.com/2/problems/usage-capped","period":"Monthly","scope":"Product"}"#,
            &[("x-rate-limit-reset", "1700000000".into())],
        );
        assert_eq!(p.classify(&capped, &Cursor::default()), Some(ErrorClass::QuotaExhausted { until: None }));
        assert_eq!(ErrorClass::QuotaExhausted { until: None }.label(), "quota_exhausted");
        assert!(!is_usage_cap(b"<html>429</html>"));
    }
}
