//! What the providers' REST trade histories have in common, for gap repair: one trade in
//! provider-neutral terms, why a window could not be fetched, and the request loop every page
//! goes through (the rate limiter, 429 and 5xx waited out until the caller's deadline, body caps,
//! the provider's refusals named).

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};

use ingest_core::http::{FetchError, fetch};
use ingest_core::record::{MarketTick, TickType};
use ingest_core::resilience::{Backoff, BackoffConfig, ErrorClass, RateLimiter, classify_http};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// One trade of a history. The field names are Polygon's REST ones (it is deserialized from
/// them); other providers' trades are converted into it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub(crate) struct HistoryTrade {
    /// Trade id: unique per (ticker, exchange, TRF) at Polygon, per (symbol, exchange) at
    /// Alpaca (whose integer ids are kept as their decimal text).
    pub(crate) id: String,
    /// Exchange: Polygon's numeric id, or [`exchange_code`] of a venue letter.
    pub(crate) exchange: i64,
    /// Trade reporting facility (off-exchange prints).
    #[serde(default)]
    pub(crate) trf_id: Option<i64>,
    /// Per-ticker sequence number (`q` on the WebSocket); resets each day; 0 without one.
    #[serde(default)]
    pub(crate) sequence_number: u64,
    /// The time the stream reports (its `t`), ns: Polygon's SIP time, Alpaca's trade time.
    pub(crate) sip_timestamp: i64,
    /// Exchange time, ns.
    #[serde(default)]
    pub(crate) participant_timestamp: Option<i64>,
    /// Price.
    pub(crate) price: f64,
    /// Size (a double in REST).
    pub(crate) size: f64,
    /// Condition codes, as the provider writes them (Polygon: numbers; Alpaca: letters).
    #[serde(default)]
    pub(crate) conditions: serde_json::Value,
    /// Tape (1 = A, 2 = B, 3 = C).
    #[serde(default)]
    pub(crate) tape: Option<i64>,
}

impl HistoryTrade {
    /// The conditions as the stream would carry them (`None`: none).
    pub(crate) fn raw_conditions(&self) -> Option<Box<serde_json::value::RawValue>> {
        let any = self.conditions.as_array().is_some_and(|a| !a.is_empty());
        if any { serde_json::value::to_raw_value(&self.conditions).ok() } else { None }
    }
}

/// One NBBO quote of a history, in Polygon's REST terms (sizes in round lots).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub(crate) struct HistoryQuote {
    /// Per-ticker sequence number (`q` on the WebSocket): a quote's identity within its day.
    pub(crate) sequence_number: u64,
    /// SIP time, ns (the stream's `t` is it in ms).
    pub(crate) sip_timestamp: i64,
    #[serde(default)]
    pub(crate) participant_timestamp: Option<i64>,
    /// Absent on a one-sided quote (the stream's `Q` would be dead-lettered without it too).
    #[serde(default)]
    pub(crate) bid_price: Option<f64>,
    #[serde(default)]
    pub(crate) bid_size: f64,
    #[serde(default)]
    pub(crate) bid_exchange: Option<i64>,
    #[serde(default)]
    pub(crate) ask_price: Option<f64>,
    #[serde(default)]
    pub(crate) ask_size: f64,
    #[serde(default)]
    pub(crate) ask_exchange: Option<i64>,
    #[serde(default)]
    pub(crate) tape: Option<i64>,
}

/// One minute bar of a history, in Polygon's aggregate terms (`t` the minute's start in ms).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub(crate) struct HistoryBar {
    /// The minute's start, ms.
    pub(crate) t: i64,
    pub(crate) o: f64,
    pub(crate) h: f64,
    pub(crate) l: f64,
    pub(crate) c: f64,
    /// Volume (a double in REST).
    pub(crate) v: f64,
    /// Volume-weighted average price.
    #[serde(default)]
    pub(crate) vw: Option<f64>,
    /// Trades in the bar.
    #[serde(default)]
    pub(crate) n: Option<u64>,
}

/// A tick rebuilt from a provider's history: `kind` of `symbol` at `at`, marked `backfill`
/// (the callers fill in what the stream would have carried).
pub(crate) fn backfill_tick<'a>(
    symbol: &'a str,
    kind: TickType,
    at: DateTime<Utc>,
    provider: &'static str,
    received_at: DateTime<Utc>,
) -> MarketTick<'a> {
    let mut tick = MarketTick::new(Cow::Borrowed(symbol), kind, at, Cow::Borrowed(provider), received_at);
    tick.backfill = true;
    tick
}

/// The exchange of a key: a number as itself, a venue letter (Alpaca's `x`, up to 7 bytes)
/// packed above every numeric id, so that both providers' keys are one integer.
pub(crate) fn exchange_code(text: &str) -> Option<i64> {
    if let Ok(n) = text.parse::<i64>() {
        return Some(n);
    }
    if text.is_empty() || text.len() > 7 {
        return None;
    }
    Some(text.bytes().fold(0i64, |acc, b| (acc << 8) | i64::from(b)) | (1i64 << 62))
}

/// The origin of a WebSocket URL as an HTTP one (`wss://h:p/x` → `https://h:p`): where a
/// relay or a simulator serves the history next to the stream; `None` for no URL.
pub(crate) fn socket_origin(ws_url: &str) -> Option<(String, String)> {
    let u = url::Url::parse(ws_url).ok()?;
    let host = u.host_str()?.to_string();
    let scheme = if u.scheme() == "ws" { "http" } else { "https" };
    let origin = match u.port() {
        Some(port) => format!("{scheme}://{host}:{port}"),
        None => format!("{scheme}://{host}"),
    };
    Some((host, origin))
}

/// Why a window could not be fetched (whole: a partial window is never returned).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HistoryError {
    /// The plan has no trade history for the window (the provider's message).
    #[error("no history on this plan: {0}")]
    NoHistory(String),
    /// The credentials are refused.
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
    /// A next page on another origin (or a cursor that came back): not followed.
    #[error("{0}")]
    Refused(String),
    /// A response that is not the documented shape.
    #[error("unexpected response: {0}")]
    Malformed(String),
}

/// The request loop of one account's history: at most the configured rate, 429s pausing every
/// request of the account.
#[derive(Debug)]
pub(crate) struct Pages {
    pub(crate) http: reqwest::Client,
    limiter: RateLimiter,
    max_body: usize,
}

impl Pages {
    /// At most `per_second` requests a second.
    pub(crate) fn new(http: reqwest::Client, per_second: f64) -> Self {
        Self { http, limiter: RateLimiter::new(per_second, 1), max_body: 64 * 1024 * 1024 }
    }

    /// The body of one page: `request` sent (again) until it is answered 2xx, through 429s and
    /// 5xx (Retry-After when given, else a growing backoff) until `deadline`. Any other status
    /// is `refusal(status, the provider's message)`; `message` finds that message in a body.
    pub(crate) async fn get(
        &self,
        request: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
        deadline: Instant,
        message: impl Fn(&[u8]) -> Option<String>,
        refusal: impl Fn(u16, String) -> HistoryError,
    ) -> Result<Vec<u8>, HistoryError> {
        let mut backoff = Backoff::new(BackoffConfig { max: Duration::from_secs(30), ..BackoffConfig::default() });
        loop {
            self.limiter.acquire().await;
            let (wait, why) = match fetch(request(&self.http), self.max_body).await {
                Err(FetchError::Refused(r)) => return Err(HistoryError::Refused(r.0)),
                Err(e @ FetchError::TooLarge { .. }) => return Err(HistoryError::Malformed(e.to_string())),
                Err(FetchError::Transport(e)) => (backoff.next_delay(), format!("request failed: {e}")),
                Ok(resp) => {
                    let text = || {
                        message(&resp.body).unwrap_or_else(|| {
                            String::from_utf8_lossy(&resp.body[..resp.body.len().min(200)]).into_owned()
                        })
                    };
                    match classify_http(resp.status, resp.header("retry-after"), SystemTime::now()) {
                        None => return Ok(resp.body.to_vec()),
                        Some(ErrorClass::RateLimited { after } | ErrorClass::Retryable { after }) => {
                            let wait = after.unwrap_or_else(|| backoff.next_delay());
                            if resp.status == 429 {
                                // Every request of this account waits, not only this page's.
                                self.limiter.pause(wait);
                            }
                            (wait, format!("HTTP {}: {}", resp.status, text()))
                        }
                        Some(_) => return Err(refusal(resp.status, text())),
                    }
                }
            };
            if Instant::now() + wait > deadline {
                let rate_limited = why.starts_with("HTTP 429");
                return Err(HistoryError::Deadline { why, rate_limited });
            }
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_and_letter_exchanges_are_distinct_codes() {
        assert_eq!(exchange_code("11"), Some(11));
        assert_eq!(exchange_code("V"), Some((1 << 62) | i64::from(b'V')));
        assert_eq!(exchange_code("AB"), Some((1 << 62) | (i64::from(b'A') << 8) | i64::from(b'B')));
        assert_ne!(exchange_code("V"), exchange_code("86"), "a letter is never taken for its byte value");
        assert_eq!(exchange_code(""), None);
        assert_eq!(exchange_code("TOOLONGX"), None);
    }
}
