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

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use ingest_core::config::Secret;
use ingest_core::http::Origin;
use ingest_core::record::{Code, MarketTick, TickType};
use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde_json::value::RawValue;
use tokio::time::Instant;

use crate::exchanges;
pub(crate) use crate::history::{HistoryBar, HistoryError, HistoryQuote, HistoryTrade};
use crate::history::{Pages, backfill_tick};
use crate::repair::TradeHistory;

#[derive(Debug, Deserialize)]
#[serde(bound = "T: DeserializeOwned")]
struct Page<T> {
    #[serde(default)]
    status: String,
    /// Absent (not empty) when nothing matches.
    #[serde(default = "Vec::new")]
    results: Vec<T>,
    #[serde(default)]
    next_url: Option<String>,
    /// Error text: `error` for status ERROR, `message` for NOT_AUTHORIZED.
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// The history client of one Polygon account.
#[derive(Debug)]
pub(crate) struct History {
    pages: Pages,
    /// `https://api.massive.com` (no trailing slash).
    base: String,
    origin: Origin,
    key: Secret,
    /// Trades per page (Polygon allows up to 50,000).
    page: u32,
    /// The crypto cluster's history: tickers `X:<pair>`, trades timed by the exchange.
    crypto: bool,
}

/// A crypto trade as `/v3/trades/X:{pair}` writes it: no SIP time or sequence number; its time
/// is the exchange's (the stream's `t`), its id a string unique per exchange.
#[derive(Debug, Deserialize)]
struct CryptoTrade {
    #[serde(default)]
    conditions: serde_json::Value,
    exchange: i64,
    id: String,
    participant_timestamp: i64,
    price: f64,
    size: f64,
}

impl From<CryptoTrade> for HistoryTrade {
    fn from(t: CryptoTrade) -> Self {
        HistoryTrade {
            id: t.id,
            exchange: t.exchange,
            trf_id: None,
            sequence_number: 0,
            sip_timestamp: t.participant_timestamp,
            participant_timestamp: Some(t.participant_timestamp),
            price: t.price,
            size: t.size,
            conditions: t.conditions,
            tape: None,
        }
    }
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
        Ok(Self { pages: Pages::new(http, per_second), base, origin, key, page: page.clamp(1, 50_000), crypto: false })
    }

    /// The same client for the crypto cluster's history.
    pub(crate) fn crypto(self) -> Self {
        Self { crypto: true, ..self }
    }

    /// Every trade of `ticker` with SIP time (a crypto pair's: exchange time) in
    /// `[from_ns, to_ns)`, oldest first, or why not.
    pub(crate) async fn trades(
        &self,
        ticker: &str,
        from_ns: i64,
        to_ns: i64,
        deadline: Instant,
    ) -> Result<Vec<HistoryTrade>, HistoryError> {
        let ticker = if self.crypto { format!("X:{ticker}") } else { ticker.to_string() };
        let url = format!(
            "{}/v3/trades/{}?timestamp.gte={from_ns}&timestamp.lt={to_ns}&order=asc&limit={}",
            self.base,
            urlencode(&ticker),
            self.page
        );
        if self.crypto {
            let trades: Vec<CryptoTrade> = self.follow(url, deadline).await?;
            return Ok(trades.into_iter().map(HistoryTrade::from).collect());
        }
        self.follow(url, deadline).await
    }

    /// Every NBBO quote of `ticker` with SIP time in `[from_ns, to_ns)` (`/v3/quotes`), oldest
    /// first, or why not.
    pub(crate) async fn nbbo(
        &self,
        ticker: &str,
        from_ns: i64,
        to_ns: i64,
        deadline: Instant,
    ) -> Result<Vec<HistoryQuote>, HistoryError> {
        let url = format!(
            "{}/v3/quotes/{}?timestamp.gte={from_ns}&timestamp.lt={to_ns}&order=asc&limit={}",
            self.base,
            urlencode(ticker),
            self.page
        );
        self.follow(url, deadline).await
    }

    /// Every minute bar of `ticker` starting in `[from_ms, to_ms]` (`/v2/aggs`, unadjusted as
    /// the stream's are), oldest first, or why not.
    pub(crate) async fn minute_bars(
        &self,
        ticker: &str,
        from_ms: i64,
        to_ms: i64,
        deadline: Instant,
    ) -> Result<Vec<HistoryBar>, HistoryError> {
        if to_ms < from_ms {
            return Ok(Vec::new());
        }
        let url = format!(
            "{}/v2/aggs/ticker/{}/range/1/minute/{from_ms}/{to_ms}?adjusted=false&sort=asc&limit={}",
            self.base,
            urlencode(ticker),
            self.page
        );
        let mut bars: Vec<HistoryBar> = self.follow(url, deadline).await?;
        bars.retain(|b| (from_ms..=to_ms).contains(&b.t));
        Ok(bars)
    }

    /// The results of `url` and of every `next_url` after it, on this origin only.
    async fn follow<T: DeserializeOwned>(&self, mut url: String, deadline: Instant) -> Result<Vec<T>, HistoryError> {
        let mut out = Vec::new();
        let mut cursors = HashSet::new();
        loop {
            let page: Page<T> = self.page(&url, deadline).await?;
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

    /// One page, retried through 429s and 5xx until `deadline`: 401 is a refused key, 403 a
    /// plan without the data.
    async fn page<T: DeserializeOwned>(&self, url: &str, deadline: Instant) -> Result<Page<T>, HistoryError> {
        let message = |body: &[u8]| {
            serde_json::from_slice::<Page<IgnoredAny>>(body).ok().map(|p| p.error.or(p.message).unwrap_or(p.status))
        };
        let refusal = |status: u16, text: String| match status {
            401 => HistoryError::Unauthorized(text),
            403 => HistoryError::NoHistory(text),
            _ => HistoryError::Malformed(format!("HTTP {status}: {text}")),
        };
        let body =
            self.pages.get(|http| http.get(url).bearer_auth(self.key.expose()), deadline, message, refusal).await?;
        serde_json::from_slice(&body).map_err(|e| HistoryError::Malformed(format!("page: {e}")))
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
    /// known), marked `backfill`; of a crypto trade, its `XT` event (`t` the exchange's time,
    /// no venue name or sequence number).
    fn tick<'a>(
        &self,
        symbol: &'a str,
        t: &'a HistoryTrade,
        conditions: Option<&'a RawValue>,
        received_at: DateTime<Utc>,
    ) -> Option<MarketTick<'a>> {
        let at = DateTime::from_timestamp_millis(t.sip_timestamp.div_euclid(1_000_000))?;
        let mut tick = backfill_tick(symbol, TickType::Trade, at, super::normalize::PROVIDER, received_at);
        tick.price = t.price;
        tick.volume = t.size;
        tick.exchange_code = Some(Code::Int(t.exchange));
        if !self.crypto
            && let Some(v) = exchanges::by_polygon_id(t.exchange)
        {
            (tick.exchange, tick.mic) = (Some(Cow::Borrowed(v.name)), Some(Cow::Borrowed(v.mic)));
        }
        tick.sequence = (!self.crypto).then_some(t.sequence_number);
        tick.conditions = conditions;
        tick.trade_id = Some(Code::Str(Cow::Borrowed(&t.id)));
        tick.trf_id = t.trf_id.filter(|&f| f != 0);
        Some(tick)
    }

    /// Crypto trades are timed by their exchanges and arrive out of that order.
    fn lateness_ms(&self) -> Option<i64> {
        self.crypto.then_some(CRYPTO_LATENESS_MS)
    }

    fn has_quotes(&self) -> bool {
        !self.crypto
    }

    fn quotes<'a>(
        &'a self,
        symbol: &'a str,
        from_ns: i64,
        to_ns: i64,
        deadline: Instant,
    ) -> BoxFuture<'a, Result<Vec<HistoryQuote>, HistoryError>> {
        Box::pin(self.nbbo(symbol, from_ns, to_ns, deadline))
    }

    /// The tick the stream would have made of the quote's `Q` event (`t` the SIP time in ms,
    /// the mid as its price, sizes from round lots to shares), marked `backfill`.
    fn quote_tick<'a>(
        &self,
        symbol: &'a str,
        q: &'a HistoryQuote,
        received_at: DateTime<Utc>,
    ) -> Option<MarketTick<'a>> {
        let at = DateTime::from_timestamp_millis(q.sip_timestamp.div_euclid(1_000_000))?;
        let (bid, ask) = (q.bid_price?, q.ask_price?);
        let mut tick = backfill_tick(symbol, TickType::Quote, at, super::normalize::PROVIDER, received_at);
        tick.price = (bid + ask) / 2.0;
        (tick.bid_price, tick.ask_price) = (Some(bid), Some(ask));
        (tick.bid_size, tick.ask_size) =
            (Some(q.bid_size * super::normalize::ROUND_LOT), Some(q.ask_size * super::normalize::ROUND_LOT));
        tick.sequence = Some(q.sequence_number);
        Some(tick)
    }

    fn has_bars(&self) -> bool {
        !self.crypto
    }

    fn bars<'a>(
        &'a self,
        symbol: &'a str,
        from_ms: i64,
        to_ms: i64,
        deadline: Instant,
    ) -> BoxFuture<'a, Result<Vec<HistoryBar>, HistoryError>> {
        Box::pin(self.minute_bars(symbol, from_ms, to_ms, deadline))
    }

    /// The tick the stream would have made of the bar's `AM` event (the start as its time, the
    /// close as its price, the minute as its window), marked `backfill`.
    fn bar_tick<'a>(&self, symbol: &'a str, b: &'a HistoryBar, received_at: DateTime<Utc>) -> Option<MarketTick<'a>> {
        let start = DateTime::from_timestamp_millis(b.t)?;
        let mut tick = backfill_tick(symbol, TickType::Bar, start, super::normalize::PROVIDER, received_at);
        tick.price = b.c;
        tick.volume = b.v;
        (tick.open, tick.high, tick.low, tick.vwap) = (Some(b.o), Some(b.h), Some(b.l), b.vw);
        tick.window_start = Some(start);
        tick.window_end = Some(start + chrono::Duration::minutes(1));
        Some(tick)
    }
}

/// How late (in exchange time) a crypto trade may reach the stream after a later one: the
/// aggregated venues' clocks and paths differ. Repair windows of the crypto cluster reach this
/// far back, and every trade received live within it is recognised by (exchange, id).
pub(crate) const CRYPTO_LATENESS_MS: i64 = 5_000;

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
    use std::time::Duration;

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
    async fn quotes_are_fetched_whole_through_their_pages_as_the_stream_would_send_them() {
        let (_p, sim, start) = sim(PolygonConfig::default()).await;
        // Quote n is half a millisecond after trade n (1000 a second).
        let at = |n: i64| start + n * 1_000_000 + 500_000;
        let h = client(&sim, 64);
        let got = h.nbbo("AAPL", at(1000), at(1200), soon()).await.unwrap();
        let seqs: Vec<u64> = got.iter().map(|q| q.sequence_number).collect();
        assert_eq!(seqs, (1_001_000..1_001_200).collect::<Vec<u64>>(), "the window, whole, oldest first, once");
        assert_eq!(sim.log.to_path("/v3/quotes/AAPL").len(), 4, "200 quotes in pages of 64");
        let q = &got[0];
        let tick = TradeHistory::quote_tick(&h, "AAPL", q, Utc::now()).unwrap();
        assert_eq!((tick.event_type, tick.sequence, tick.backfill), (TickType::Quote, Some(q.sequence_number), true));
        assert_eq!(tick.price, (q.bid_price.unwrap() + q.ask_price.unwrap()) / 2.0);
        let one_sided = HistoryQuote { bid_price: None, ..q.clone() };
        assert!(TradeHistory::quote_tick(&h, "AAPL", &one_sided, Utc::now()).is_none(), "dead-lettered, as live");
        assert_eq!(tick.bid_size, Some(q.bid_size * 100.0), "round lots to shares, as the stream's");
        assert_eq!(tick.timestamp.timestamp_millis(), q.sip_timestamp / 1_000_000);
        sim.stop().await.unwrap();
    }

    #[tokio::test]
    async fn minute_bars_are_fetched_whole_through_their_pages_as_the_stream_would_send_them() {
        trust();
        // A tape that started 5 minutes ago: 4 or 5 complete minutes.
        let now_ms = now_ns() / 1_000_000;
        let tape = Tape::new(vec!["AAPL".into()], (now_ms - 300_000) * 1_000_000, 10, 0);
        let polygon = PolygonHandle::new(PolygonConfig { api_key: KEY.into(), ..PolygonConfig::default() });
        polygon.tape(tape.clone());
        let ca = provider_sim::tls::TestCa::get().unwrap();
        let sim =
            Sim::start_tls("127.0.0.1:0".parse().unwrap(), polygon.router(), &ca.identity().unwrap()).await.unwrap();
        let minute = now_ms.div_euclid(60_000) * 60_000;
        let (from, to) = (minute - 240_000, minute - 60_000);
        let got = client(&sim, 2).minute_bars("AAPL", from, to, soon()).await.unwrap();
        let starts: Vec<i64> = got.iter().map(|b| b.t).collect();
        assert_eq!(starts, vec![from, from + 60_000, from + 120_000, to], "every minute of the range, once, in order");
        let requests: Vec<_> =
            sim.log.all().into_iter().filter(|r| r.path.starts_with("/v2/aggs/ticker/AAPL/range/1/minute/")).collect();
        assert_eq!(requests.len(), 2, "4 bars in pages of 2: {requests:?}");
        assert!(
            requests.iter().all(|r| !r.query.as_deref().unwrap_or("").contains(KEY)),
            "the key is never in the URL"
        );
        let want = tape.minute_bar("AAPL", from, now_ns()).unwrap();
        let (b, ms) = (&got[0], |cents: u64| cents as f64 / 100.0);
        assert_eq!(
            (b.o, b.h, b.l, b.c, b.v),
            (ms(want.open), ms(want.high), ms(want.low), ms(want.close), want.volume as f64)
        );
        let h = client(&sim, 2);
        let tick = TradeHistory::bar_tick(&h, "AAPL", b, Utc::now()).unwrap();
        assert_eq!((tick.event_type, tick.price, tick.backfill), (TickType::Bar, b.c, true));
        assert_eq!(tick.window_end.unwrap() - tick.window_start.unwrap(), chrono::Duration::minutes(1));
        assert_eq!(h.minute_bars("AAPL", to, from, soon()).await.unwrap(), vec![], "an empty range asks nothing");
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
