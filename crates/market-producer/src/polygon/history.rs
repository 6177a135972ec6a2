//! Polygon/Massive REST trade history, `GET /v3/trades/{ticker}` (docs/providers.md, REST
//! history), for repairing stream gaps: every trade of one ticker in a window of SIP time,
//! oldest first, through every page.
//!
//! - The key goes in `Authorization: Bearer` (as the provider's own SDKs send it), never in the
//!   URL, so it cannot leak through a logged URL; `next_url` is requested as given (its cursor
//!   carries the filters) but only on the origin the client was configured with: a `next_url`
//!   pointing anywhere else ends the fetch, and the key is never sent there.
//! - A cursor seen before ends the fetch (the provider has looped `next_url` back).
//! - 429 and 5xx wait (Retry-After when given, else a growing backoff) and try again, until the
//!   caller's deadline; 403 is a plan without trade history; 401 a refused key.
//! - Timestamps are nanosecond integers and are parsed as such (never through a double).

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use ingest_core::config::Secret;
use ingest_core::http::{FetchError, Origin, fetch};
use ingest_core::record::{Code, MarketTick, TickType};
use ingest_core::resilience::{Backoff, BackoffConfig, ErrorClass, RateLimiter, classify_http};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::time::Instant;

use crate::exchanges;
use crate::repair::TradeHistory;

/// One trade of the history, in the provider's terms.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub(crate) struct HistoryTrade {
    /// Trade id: unique per (ticker, exchange, TRF).
    pub(crate) id: String,
    /// Exchange id.
    pub(crate) exchange: i64,
    /// Trade reporting facility (off-exchange prints).
    #[serde(default)]
    pub(crate) trf_id: Option<i64>,
    /// Per-ticker sequence number (`q` on the WebSocket); resets each day.
    pub(crate) sequence_number: u64,
    /// SIP time, ns (`t` on the WebSocket is this in ms).
    pub(crate) sip_timestamp: i64,
    /// Exchange time, ns.
    #[serde(default)]
    pub(crate) participant_timestamp: Option<i64>,
    /// Price.
    pub(crate) price: f64,
    /// Size (a double in REST).
    pub(crate) size: f64,
    /// Condition codes.
    #[serde(default)]
    pub(crate) conditions: Vec<i64>,
    /// Tape (1 = A, 2 = B, 3 = C).
    #[serde(default)]
    pub(crate) tape: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct Page {
    #[serde(default)]
    status: String,
    /// Absent (not empty) when nothing matches.
    #[serde(default)]
    results: Vec<HistoryTrade>,
    #[serde(default)]
    next_url: Option<String>,
    /// Error text: `error` for status ERROR, `message` for NOT_AUTHORIZED.
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// Why a window could not be fetched (whole: a partial window is never returned).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HistoryError {
    /// 403: the plan has no trade history (the provider's message).
    #[error("no history on this plan: {0}")]
    NoHistory(String),
    /// 401: the key is refused.
    #[error("the API key is refused: {0}")]
    Unauthorized(String),
    /// Still rate limited (`rate_limited`: the last answer was a 429) or failing when the
    /// deadline came.
    #[error("gave up at the deadline: {why}")]
    Deadline {
        /// The last failure.
        why: String,
        /// It was a 429.
        rate_limited: bool,
    },
    /// `next_url` leads to another origin (or a cursor came back): not followed.
    #[error("{0}")]
    Refused(String),
    /// A response that is not the documented shape.
    #[error("unexpected response: {0}")]
    Malformed(String),
}

/// The history client of one Polygon account.
#[derive(Debug)]
pub(crate) struct History {
    http: reqwest::Client,
    /// `https://api.massive.com` (no trailing slash).
    base: String,
    origin: Origin,
    key: Secret,
    limiter: RateLimiter,
    /// Trades per page (Polygon allows up to 50,000).
    page: u32,
    max_body: usize,
}

impl History {
    /// A client of `base` (e.g. `https://api.massive.com`) with `key`, at most `per_second`
    /// requests a second (the free tier allows 5 a minute).
    pub(crate) fn new(
        http: reqwest::Client,
        base: &str,
        key: Secret,
        per_second: f64,
        page: u32,
    ) -> Result<Self, String> {
        let base = base.trim_end_matches('/').to_string();
        let origin = Origin::parse(&base)?;
        Ok(Self {
            http,
            base,
            origin,
            key,
            limiter: RateLimiter::new(per_second, 1),
            page: page.clamp(1, 50_000),
            max_body: 64 * 1024 * 1024,
        })
    }

    /// Every trade of `ticker` with SIP time in `[from_ns, to_ns)`, oldest first, or why not.
    pub(crate) async fn trades(
        &self,
        ticker: &str,
        from_ns: i64,
        to_ns: i64,
        deadline: Instant,
    ) -> Result<Vec<HistoryTrade>, HistoryError> {
        let mut url = format!(
            "{}/v3/trades/{}?timestamp.gte={from_ns}&timestamp.lt={to_ns}&order=asc&limit={}",
            self.base,
            urlencode(ticker),
            self.page
        );
        let mut out = Vec::new();
        let mut cursors = HashSet::new();
        loop {
            let page = self.page(&url, deadline).await?;
            out.extend(page.results);
            let Some(next) = page.next_url else { return Ok(out) };
            let parsed = url::Url::parse(&next).map_err(|e| HistoryError::Malformed(format!("next_url: {e}")))?;
            if Origin::of(&parsed).as_ref() != Some(&self.origin) {
                return Err(HistoryError::Refused(format!(
                    "next_url leads to {}, not {}: not followed (the key stays with its origin)",
                    parsed.host_str().unwrap_or("?"),
                    self.origin
                )));
            }
            if !cursors.insert(parsed.query().unwrap_or_default().to_string()) {
                return Err(HistoryError::Refused("next_url came back to a cursor already read".into()));
            }
            url = next;
        }
    }

    /// One page, retried through 429s and 5xx until `deadline`.
    async fn page(&self, url: &str, deadline: Instant) -> Result<Page, HistoryError> {
        let mut backoff = Backoff::new(BackoffConfig { max: Duration::from_secs(30), ..BackoffConfig::default() });
        loop {
            self.limiter.acquire().await;
            let req = self.http.get(url).bearer_auth(self.key.expose());
            let wait = match fetch(req, self.max_body).await {
                Err(FetchError::Refused(r)) => return Err(HistoryError::Refused(r.0)),
                Err(e @ FetchError::TooLarge { .. }) => return Err(HistoryError::Malformed(e.to_string())),
                Err(FetchError::Transport(e)) => (backoff.next_delay(), format!("request failed: {e}")),
                Ok(resp) => {
                    let parsed: Result<Page, _> = serde_json::from_slice(&resp.body);
                    let text = |p: &Result<Page, serde_json::Error>| match p {
                        Ok(p) => p.error.clone().or_else(|| p.message.clone()).unwrap_or_else(|| p.status.clone()),
                        Err(_) => String::from_utf8_lossy(&resp.body[..resp.body.len().min(200)]).into_owned(),
                    };
                    match classify_http(resp.status, resp.header("retry-after"), SystemTime::now()) {
                        None => {
                            return parsed.map_err(|e| HistoryError::Malformed(format!("page: {e}")));
                        }
                        Some(_) if resp.status == 401 => return Err(HistoryError::Unauthorized(text(&parsed))),
                        Some(_) if resp.status == 403 => return Err(HistoryError::NoHistory(text(&parsed))),
                        Some(ErrorClass::RateLimited { after } | ErrorClass::Retryable { after }) => {
                            let wait = after.unwrap_or_else(|| backoff.next_delay());
                            if resp.status == 429 {
                                // Every request of this account waits, not only this page's.
                                self.limiter.pause(wait);
                            }
                            (wait, format!("HTTP {}: {}", resp.status, text(&parsed)))
                        }
                        Some(_) => {
                            return Err(HistoryError::Malformed(format!("HTTP {}: {}", resp.status, text(&parsed))));
                        }
                    }
                }
            };
            let (wait, why) = wait;
            if Instant::now() + wait > deadline {
                let rate_limited = why.starts_with("HTTP 429");
                return Err(HistoryError::Deadline { why, rate_limited });
            }
            tokio::time::sleep(wait).await;
        }
    }
}

impl TradeHistory for History {
    fn trades<'a>(
        &'a self,
        symbol: &'a str,
        from_ns: i64,
        to_ns: i64,
        deadline: Instant,
    ) -> BoxFuture<'a, Result<Vec<HistoryTrade>, HistoryError>> {
        Box::pin(History::trades(self, symbol, from_ns, to_ns, deadline))
    }

    /// The tick the stream would have made of the trade's `T` event (`t` is the SIP time in
    /// ms, the venue from the same table), without a bid/ask (the quote of that moment is not
    /// known), marked `backfill`.
    fn tick<'a>(
        &self,
        symbol: &'a str,
        t: &'a HistoryTrade,
        conditions: Option<&'a RawValue>,
        received_at: DateTime<Utc>,
    ) -> Option<MarketTick<'a>> {
        let at = DateTime::from_timestamp_millis(t.sip_timestamp.div_euclid(1_000_000))?;
        let mut tick = MarketTick::new(
            Cow::Borrowed(symbol),
            TickType::Trade,
            at,
            Cow::Borrowed(super::normalize::PROVIDER),
            received_at,
        );
        tick.price = t.price;
        tick.volume = t.size;
        tick.exchange_code = Some(Code::Int(t.exchange));
        if let Some(v) = exchanges::by_polygon_id(t.exchange) {
            (tick.exchange, tick.mic) = (Some(Cow::Borrowed(v.name)), Some(Cow::Borrowed(v.mic)));
        }
        tick.sequence = Some(t.sequence_number);
        tick.conditions = conditions;
        tick.trade_id = Some(Code::Str(Cow::Borrowed(&t.id)));
        tick.trf_id = t.trf_id.filter(|&f| f != 0);
        tick.backfill = true;
        Some(tick)
    }
}

/// A ticker in a path segment (`X:BTC-USD` keeps its colon; anything unusual is escaped).
fn urlencode(ticker: &str) -> String {
    ticker
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' | b':' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test, with its location")]

    use std::sync::Once;

    use provider_sim::Sim;
    use provider_sim::polygon::{PolygonConfig, PolygonHandle};
    use provider_sim::tape::Tape;

    use super::*;

    const KEY: &str = "history-sentinel-key-5c1e";

    fn now_ns() -> i64 {
        chrono::Utc::now().timestamp_nanos_opt().unwrap()
    }

    fn trust() {
        static ONCE: Once = Once::new();
        ONCE.call_once(ingest_core::testkit::trust_test_ca);
    }

    /// The simulator over TLS, as the provider serves, on a tape of 1000 AAPL trades a second
    /// that started 3 s ago.
    async fn sim(cfg: PolygonConfig) -> (PolygonHandle, Sim, i64) {
        trust();
        let start = now_ns() - 3_000_000_000;
        let polygon = PolygonHandle::new(PolygonConfig { api_key: KEY.into(), ..cfg });
        polygon.tape(Tape::new(vec!["AAPL".into(), "MSFT".into()], start, 1000, 0));
        let ca = provider_sim::tls::TestCa::get().unwrap();
        let sim =
            Sim::start_tls("127.0.0.1:0".parse().unwrap(), polygon.router(), &ca.identity().unwrap()).await.unwrap();
        (polygon, sim, start)
    }

    fn client(sim: &Sim, page: u32) -> History {
        trust();
        let http = ingest_core::http::client(&ingest_core::http::HttpConfig::default()).unwrap();
        History::new(http, &sim.http_url(), Secret::new(KEY), 1000.0, page).unwrap()
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(20)
    }

    #[tokio::test]
    async fn a_window_is_fetched_whole_through_its_pages_with_the_key_in_a_header() {
        let (_p, sim, start) = sim(PolygonConfig::default()).await;
        let at = |n: i64| start + n * 1_000_000;
        let got = client(&sim, 64).trades("AAPL", at(1000), at(1500), soon()).await.unwrap();
        let seqs: Vec<u64> = got.iter().map(|t| t.sequence_number).collect();
        assert_eq!(seqs, (1000..1500).collect::<Vec<u64>>(), "the window, whole, oldest first, once");
        assert_eq!(got[0].sip_timestamp, at(1000), "ns timestamps exact");
        let requests = sim.log.to_path("/v3/trades/AAPL");
        assert_eq!(requests.len(), 8, "500 trades in pages of 64");
        for r in &requests {
            assert!(!r.query.as_deref().unwrap_or("").contains(KEY), "the key is never in the URL");
            assert!(r.headers.iter().any(|(k, v)| k == "authorization" && v == &format!("Bearer {KEY}")));
        }
        assert!(requests[1..].iter().all(|r| r.query.as_deref().unwrap().starts_with("cursor=")));
        // An unknown ticker and an empty window: nothing, not an error.
        assert_eq!(client(&sim, 64).trades("NOPE", at(1), at(9), soon()).await.unwrap(), vec![]);
        assert_eq!(client(&sim, 64).trades("AAPL", at(5) + 1, at(6), soon()).await.unwrap(), vec![]);
        sim.stop().await.unwrap();
    }

    #[tokio::test]
    async fn rate_limits_are_waited_out_until_the_deadline() {
        let (polygon, sim, start) = sim(PolygonConfig::default()).await;
        let at = |n: i64| start + n * 1_000_000;
        // Two 429s (no Retry-After: backoff from 0.5 s), then the pages.
        polygon.fail_rest(&[429, 429]);
        let t0 = Instant::now();
        let got = client(&sim, 1000).trades("AAPL", at(10), at(20), soon()).await.unwrap();
        assert_eq!(got.len(), 10);
        assert!(t0.elapsed() >= Duration::from_millis(500), "it waited before trying again");
        // A deadline that the waits would pass: the window is given up, named as such.
        polygon.fail_rest(&[429, 429, 429, 429]);
        let e = client(&sim, 1000).trades("AAPL", at(10), at(20), Instant::now() + Duration::from_millis(200)).await;
        assert!(
            matches!(&e, Err(HistoryError::Deadline { why, rate_limited: true }) if why.contains("HTTP 429")),
            "{e:?}"
        );
        sim.stop().await.unwrap();
    }

    #[tokio::test]
    async fn a_plan_without_history_and_a_refused_key_are_named() {
        let (_p, sim, start) = sim(PolygonConfig { history: false, ..PolygonConfig::default() }).await;
        let e = client(&sim, 100).trades("AAPL", start, start + 1_000_000_000, soon()).await;
        assert!(matches!(&e, Err(HistoryError::NoHistory(m)) if m.contains("not entitled")), "{e:?}");
        trust();
        let http = ingest_core::http::client(&ingest_core::http::HttpConfig::default()).unwrap();
        let wrong = History::new(http, &sim.http_url(), Secret::new("wrong"), 1000.0, 100).unwrap();
        let e = wrong.trades("AAPL", start, start + 1_000_000_000, soon()).await;
        assert!(matches!(&e, Err(HistoryError::Unauthorized(m)) if m.contains("Unknown API Key")), "{e:?}");
        sim.stop().await.unwrap();
    }

    #[tokio::test]
    async fn a_next_url_to_another_host_is_not_followed_and_gets_no_key() {
        // A provider page whose next_url points elsewhere (a hostile or broken response).
        let other = Sim::start("127.0.0.1:0".parse().unwrap(), axum::Router::new()).await.unwrap();
        let next = format!("{}/v3/trades/AAPL?cursor=abc", other.http_url());
        let body = serde_json::json!({"status": "OK", "request_id": "x", "results": [], "next_url": next}).to_string();
        let routes = axum::Router::new().route(
            "/v3/trades/{t}",
            axum::routing::get(move || async move { ([("content-type", "application/json")], body) }),
        );
        let sim = Sim::start("127.0.0.1:0".parse().unwrap(), routes).await.unwrap();
        let e = client(&sim, 100).trades("AAPL", 0, 1, soon()).await;
        assert!(matches!(&e, Err(HistoryError::Refused(m)) if m.contains("not followed")), "{e:?}");
        assert!(other.log.all().is_empty(), "the other host was never asked");
        assert!(!format!("{e:?}").contains(KEY));
        sim.stop().await.unwrap();
        other.stop().await.unwrap();
    }
}
