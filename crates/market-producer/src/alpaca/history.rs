//! Alpaca historical trades (docs/providers.md, REST trade history), for repairing stream gaps:
//! `GET {data}/v2/stocks/trades?symbols=…` (the feed of the stream) and
//! `GET {data}/v1beta3/crypto/{loc}/trades?symbols=…`, every trade of one symbol in a window,
//! oldest first, through every `next_page_token`.
//!
//! - The key id and secret go in the `APCA-API-KEY-ID` / `APCA-API-SECRET-KEY` headers (as the
//!   official SDKs send them), never in the URL; paging only adds `page_token` to the same
//!   request, so no page can lead to another host. A token seen before ends the fetch.
//! - `start` and `end` are both inclusive RFC 3339 with nanoseconds: the window `[from, to)`
//!   is asked as `start=from`, `end=to - 1 ns`.
//! - 429 and 5xx wait (Retry-After when given, else a growing backoff) until the caller's
//!   deadline. A 403 or 422 naming the subscription (the free plan may not query the latest
//!   15 minutes of SIP data) is a plan without that history; other 401/403s refuse the keys.
//! - A trade is identified by (symbol, exchange letter, integer id); its `t` is the stream's `t`.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use chrono::{DateTime, SecondsFormat, Utc};
use futures::future::BoxFuture;
use ingest_core::config::Secret;
use ingest_core::record::{Code, MarketTick, TickType};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::time::Instant;

use crate::exchanges;
use crate::history::{HistoryError, HistoryTrade, Pages, backfill_tick, exchange_code};
use crate::repair::TradeHistory;

/// Which of Alpaca's histories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Market {
    /// Stocks, of a feed (`iex`, `sip`, …; the stream's path names it).
    Stocks { feed: String },
    /// Crypto, of a location (`us`, …).
    Crypto { loc: String },
}

/// One trade as Alpaca writes it (stream and history use the same short keys).
#[derive(Debug, Deserialize)]
struct Trade {
    t: String,
    #[serde(default)]
    x: Option<String>,
    p: f64,
    s: f64,
    #[serde(default)]
    c: serde_json::Value,
    i: i64,
}

#[derive(Debug, Deserialize)]
struct Page {
    /// Absent or `{}` when nothing matches.
    #[serde(default)]
    trades: HashMap<String, Vec<Trade>>,
    #[serde(default)]
    next_page_token: Option<String>,
}

/// The history client of one Alpaca account.
#[derive(Debug)]
pub(crate) struct History {
    pages: Pages,
    /// `https://data.alpaca.markets` (no trailing slash).
    base: String,
    market: Market,
    key: Secret,
    secret: Secret,
    /// Trades per page (Alpaca allows up to 10,000, for the whole response).
    page: u32,
}

impl History {
    pub(crate) fn new(
        http: reqwest::Client,
        base: &str,
        market: Market,
        (key, secret): (Secret, Secret),
        per_second: f64,
        page: u32,
    ) -> Result<Self, String> {
        let base = base.trim_end_matches('/').to_string();
        ingest_core::http::Origin::parse(&base)?;
        Ok(Self { pages: Pages::new(http, per_second), base, market, key, secret, page: page.clamp(1, 10_000) })
    }

    /// Every trade of `symbol` with time in `[from_ns, to_ns)`, oldest first, or why not.
    pub(crate) async fn trades(
        &self,
        symbol: &str,
        from_ns: i64,
        to_ns: i64,
        deadline: Instant,
    ) -> Result<Vec<HistoryTrade>, HistoryError> {
        if to_ns <= from_ns {
            return Ok(Vec::new());
        }
        let time = |ns: i64| DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(SecondsFormat::Nanos, true);
        let (path, feed) = match &self.market {
            Market::Stocks { feed } => ("/v2/stocks/trades".to_string(), Some(feed.as_str())),
            Market::Crypto { loc } => (format!("/v1beta3/crypto/{loc}/trades"), None),
        };
        let mut query: Vec<(&str, String)> = vec![
            ("symbols", symbol.to_string()),
            ("start", time(from_ns)),
            ("end", time(to_ns - 1)),
            ("limit", self.page.to_string()),
            ("sort", "asc".to_string()),
        ];
        if let Some(feed) = feed {
            query.push(("feed", feed.to_string()));
        }
        let url = format!("{}{path}", self.base);
        let mut out = Vec::new();
        let mut tokens = HashSet::new();
        let mut token: Option<String> = None;
        loop {
            let page = self.page(&url, &query, token.as_deref(), deadline).await?;
            for (sym, trades) in page.trades {
                if sym != symbol {
                    continue;
                }
                for t in trades {
                    out.push(convert(t)?);
                }
            }
            match page.next_page_token {
                None => return Ok(out),
                Some(next) if next.is_empty() => return Ok(out),
                Some(next) => {
                    if !tokens.insert(next.clone()) {
                        return Err(HistoryError::Refused("next_page_token came back to a page already read".into()));
                    }
                    token = Some(next);
                }
            }
        }
    }

    async fn page(
        &self,
        url: &str,
        query: &[(&str, String)],
        token: Option<&str>,
        deadline: Instant,
    ) -> Result<Page, HistoryError> {
        let message = |body: &[u8]| {
            #[derive(Deserialize)]
            struct Error {
                message: String,
            }
            serde_json::from_slice::<Error>(body).ok().map(|e| e.message)
        };
        let refusal = |status: u16, text: String| match status {
            403 | 422 if text.contains("subscription") => HistoryError::NoHistory(text),
            401 | 403 => HistoryError::Unauthorized(text),
            _ => HistoryError::Malformed(format!("HTTP {status}: {text}")),
        };
        let request = |http: &reqwest::Client| {
            let mut r = http
                .get(url)
                .query(query)
                .header("APCA-API-KEY-ID", self.key.expose())
                .header("APCA-API-SECRET-KEY", self.secret.expose());
            if let Some(t) = token {
                r = r.query(&[("page_token", t)]);
            }
            r
        };
        let body = self.pages.get(request, deadline, message, refusal).await?;
        serde_json::from_slice(&body).map_err(|e| HistoryError::Malformed(format!("page: {e}")))
    }
}

/// An Alpaca trade in the history's neutral terms.
fn convert(t: Trade) -> Result<HistoryTrade, HistoryError> {
    let at = DateTime::parse_from_rfc3339(&t.t)
        .map_err(|e| HistoryError::Malformed(format!("`t` is not an RFC 3339 time ({e}): {}", t.t)))?;
    let ns = at.timestamp_nanos_opt().ok_or_else(|| HistoryError::Malformed(format!("`t` out of range: {}", t.t)))?;
    let exchange = match &t.x {
        None => 0,
        Some(x) => exchange_code(x).ok_or_else(|| HistoryError::Malformed(format!("`x` is not a venue code: {x}")))?,
    };
    Ok(HistoryTrade {
        id: t.i.to_string(),
        exchange,
        trf_id: None,
        sequence_number: 0,
        sip_timestamp: ns,
        participant_timestamp: None,
        price: t.p,
        size: t.s,
        conditions: t.c,
        tape: None,
    })
}

/// The venue letter back from its code (see [`exchange_code`]).
fn letter(code: i64) -> Option<String> {
    if code == 0 || code & (1 << 62) == 0 {
        return None;
    }
    let bytes: Vec<u8> = (0..7).rev().map(|i| ((code >> (8 * i)) & 0xff) as u8).filter(|b| *b != 0).collect();
    String::from_utf8(bytes).ok()
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

    /// The tick the stream would have made of the trade (`t` to the nanosecond, the venue from
    /// its letter), without a bid/ask, marked `backfill`.
    fn tick<'a>(
        &self,
        symbol: &'a str,
        t: &'a HistoryTrade,
        conditions: Option<&'a RawValue>,
        received_at: DateTime<Utc>,
    ) -> Option<MarketTick<'a>> {
        let at = DateTime::from_timestamp_nanos(t.sip_timestamp);
        let mut tick = backfill_tick(symbol, TickType::Trade, at, super::normalize::PROVIDER, received_at);
        tick.price = t.price;
        tick.volume = t.size;
        if let Some(x) = letter(t.exchange) {
            if let Some(v) = exchanges::by_participant(&x) {
                (tick.exchange, tick.mic) = (Some(Cow::Borrowed(v.name)), Some(Cow::Borrowed(v.mic)));
            }
            tick.exchange_code = Some(Code::Str(Cow::Owned(x)));
        }
        tick.conditions = conditions;
        tick.trade_id = t.id.parse::<i64>().ok().map(Code::Int);
        Some(tick)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test, with its location")]

    use std::sync::Once;
    use std::time::Duration;

    use provider_sim::Sim;
    use provider_sim::alpaca::{AlpacaConfig, AlpacaHandle};
    use provider_sim::tape::Tape;

    use super::*;
    use crate::alpaca::wire::Msg;
    use crate::book::QuoteBook;
    use crate::repair::TickKey;

    const KEY: &str = "alpaca-history-key-77a1";
    const SECRET: &str = "alpaca-history-secret-0c9e";

    fn now_ns() -> i64 {
        Utc::now().timestamp_nanos_opt().unwrap()
    }

    fn trust() {
        static ONCE: Once = Once::new();
        ONCE.call_once(ingest_core::testkit::trust_test_ca);
    }

    /// The simulator over TLS, on a tape of 1000 AAPL and MSFT trades a second that started 3 s ago.
    async fn start_sim(cfg: AlpacaConfig) -> (AlpacaHandle, Sim, i64) {
        trust();
        let start = now_ns() - 3_000_000_000;
        let alpaca = AlpacaHandle::new(AlpacaConfig { key: KEY.into(), secret: SECRET.into(), ..cfg });
        alpaca.tape(Tape::new(vec!["AAPL".into(), "MSFT".into()], start, 1000, 0));
        let ca = provider_sim::tls::TestCa::get().unwrap();
        let sim =
            Sim::start_tls("127.0.0.1:0".parse().unwrap(), alpaca.router(), &ca.identity().unwrap()).await.unwrap();
        (alpaca, sim, start)
    }

    fn client(sim: &Sim, page: u32, secret: &str) -> History {
        trust();
        let http = ingest_core::http::client(&ingest_core::http::HttpConfig::default()).unwrap();
        let market = Market::Stocks { feed: "iex".into() };
        History::new(http, &sim.http_url(), market, (Secret::new(KEY), Secret::new(secret)), 1000.0, page).unwrap()
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(20)
    }

    #[tokio::test]
    async fn a_window_is_fetched_whole_through_its_page_tokens_with_the_keys_in_headers() {
        let (_a, sim, start) = start_sim(AlpacaConfig::default()).await;
        let at = |n: i64| start + n * 1_000_000;
        let got = client(&sim, 64, SECRET).trades("AAPL", at(1000), at(1500), soon()).await.unwrap();
        assert_eq!(got.len(), 500, "the window, whole");
        assert_eq!(got[0].sip_timestamp, at(1000), "ns timestamps exact");
        assert!(got.windows(2).all(|w| w[0].sip_timestamp < w[1].sip_timestamp), "oldest first, once");
        let requests = sim.log.to_path("/v2/stocks/trades");
        assert_eq!(requests.len(), 8, "500 trades in pages of 64");
        for r in &requests {
            let q = r.query.as_deref().unwrap_or("");
            assert!(q.contains("symbols=AAPL") && q.contains("feed=iex"), "{q}");
            assert!(!q.contains(KEY) && !q.contains(SECRET), "the keys are never in the URL");
            assert!(r.headers.iter().any(|(k, v)| k == "apca-api-key-id" && v == KEY));
        }
        assert!(requests[1..].iter().all(|r| r.query.as_deref().unwrap().contains("page_token=")));
        assert_eq!(client(&sim, 64, SECRET).trades("NOPE", at(1), at(9), soon()).await.unwrap(), vec![]);
        sim.stop().await.unwrap();
    }

    #[tokio::test]
    async fn a_crypto_window_is_asked_of_its_location_without_a_feed_and_has_one_venue() {
        let (_a, sim, start) = start_sim(AlpacaConfig::default()).await;
        let at = |n: i64| start + n * 1_000_000;
        let http = ingest_core::http::client(&ingest_core::http::HttpConfig::default()).unwrap();
        let market = Market::Crypto { loc: "us".into() };
        let h =
            History::new(http, &sim.http_url(), market, (Secret::new(KEY), Secret::new(SECRET)), 1000.0, 64).unwrap();
        let got = h.trades("AAPL", at(100), at(300), soon()).await.unwrap();
        assert_eq!(got.len(), 200, "the window, whole");
        assert!(got.iter().all(|t| t.exchange == 0), "crypto trades name no venue: one");
        let requests = sim.log.to_path("/v1beta3/crypto/us/trades");
        assert_eq!(requests.len(), 4, "200 trades in pages of 64");
        assert!(requests.iter().all(|r| !r.query.as_deref().unwrap_or("").contains("feed=")), "no feed for crypto");
        sim.stop().await.unwrap();
    }

    #[tokio::test]
    async fn rate_limits_wait_and_refusals_are_named() {
        let (alpaca, sim, start) = start_sim(AlpacaConfig::default()).await;
        let at = |n: i64| start + n * 1_000_000;
        alpaca.fail_rest(&[429, 429]);
        let got = client(&sim, 1000, SECRET).trades("AAPL", at(10), at(20), soon()).await.unwrap();
        assert_eq!(got.len(), 10, "the 429s were waited out");
        alpaca.fail_rest(&[429; 4]);
        let e = client(&sim, 1000, SECRET)
            .trades("AAPL", at(10), at(20), Instant::now() + Duration::from_millis(200))
            .await;
        assert!(matches!(&e, Err(HistoryError::Deadline { rate_limited: true, .. })), "{e:?}");
        let e = client(&sim, 1000, "wrong").trades("AAPL", at(10), at(20), soon()).await;
        assert!(matches!(&e, Err(HistoryError::Unauthorized(_))), "{e:?}");
        assert!(!format!("{e:?}").contains(SECRET));
        sim.stop().await.unwrap();

        let (_a, free, start) = start_sim(AlpacaConfig { history: false, ..AlpacaConfig::default() }).await;
        let e = client(&free, 1000, SECRET).trades("AAPL", start, start + 1_000_000_000, soon()).await;
        assert!(
            matches!(&e, Err(HistoryError::NoHistory(m)) if m.contains("subscription does not permit querying recent SIP data")),
            "{e:?}"
        );
        free.stop().await.unwrap();
    }

    #[test]
    fn a_live_trade_and_the_same_trade_from_the_history_have_one_identity_and_one_tick() {
        // Alpaca's documented trade (stream and history use the same keys).
        let live = r#"{"T":"t","S":"AAPL","i":52983525029461,"x":"V","p":140.2,"s":595,"c":["@","T"],"t":"2021-10-13T08:00:00.089607680Z","z":"C"}"#;
        let m: Msg<'_> = serde_json::from_str(live).unwrap();
        let received = Utc::now();
        let tick = crate::alpaca::normalize::normalize(&m, received, &mut QuoteBook::new(10)).unwrap();
        let rest = r#"{"t":"2021-10-13T08:00:00.08960768Z","x":"V","p":140.2,"s":595,"c":["@","T"],"i":52983525029461,"z":"C"}"#;
        let h = convert(serde_json::from_str(rest).unwrap()).unwrap();
        assert_eq!(TickKey::of_tick(&tick), Some(TickKey::of(&h)), "one identity live and in the history");
        trust(); // before any HTTPS client of this process is built
        let http = ingest_core::http::client(&ingest_core::http::HttpConfig::default()).unwrap();
        let market = Market::Stocks { feed: "sip".into() };
        let client = History::new(http, "https://data.alpaca.markets", market, Default::default(), 1.0, 10).unwrap();
        let conditions = h.raw_conditions().unwrap();
        let repaired = client.tick("AAPL", &h, Some(&conditions), received).unwrap();
        let json = |t: &MarketTick<'_>| {
            let mut v = serde_json::to_value(t).unwrap();
            v.as_object_mut().unwrap().remove("backfill");
            v
        };
        assert!(repaired.backfill);
        assert_eq!(json(&repaired), json(&tick), "the repaired tick reads as the live one");
    }
}
