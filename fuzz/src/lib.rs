//! The fuzz targets' shared half: every wire parser of the five producers, reached through the
//! same code as in production, one function per target (each file in `fuzz_targets/` calls
//! one). The pollers are built once; an input's first byte picks the HTTP status it is served
//! with (`ingest_core::hostile::STATUSES`), the rest is the body.
//!
//! Run with `make fuzz` (scripts/fuzz.sh): cargo-fuzz, libFuzzer, AddressSanitizer.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use altdata_producer::custom::CustomSource;
use altdata_producer::ssrf::{GuardedResolver, Policy, SystemLookup};
use ingest_core::config::Secret;
use ingest_core::hostile::{poll_body, status_and_body};
use ingest_core::source::Poller;

pub use ingest_core::hostile::spool_segment;
pub use market_producer::hostile::market_frame;

const EVERY: Duration = Duration::from_secs(60);

fn symbols() -> Arc<Vec<String>> {
    Arc::new(vec!["AAPL".into(), "MSFT".into(), "TSLA".into()])
}

fn serve<P: Poller>(poller: &P, data: &[u8])
where
    P::Cursor: Default,
{
    let (status, body) = status_and_body(data);
    poll_body(poller, &P::Cursor::default(), status, body);
}

macro_rules! target {
    ($(#[$doc:meta])* $name:ident: $ty:ty = $init:expr) => {
        $(#[$doc])*
        pub fn $name(data: &[u8]) {
            static P: LazyLock<$ty> = LazyLock::new(|| $init);
            serve(&*P, data);
        }
    };
}

target!(
    /// NewsAPI `/v2/everything` responses.
    newsapi: news_producer::newsapi::NewsApi = news_producer::newsapi::NewsApi::new(
        "https://newsapi.example/",
        Secret::new("k"),
        news_producer::newsapi::Endpoint::Everything { q: "stocks".into() },
        symbols(),
        EVERY,
    )
);

target!(
    /// Alpha Vantage `NEWS_SENTIMENT` responses (and its in-band notes and errors).
    alphavantage: news_producer::alphavantage::AlphaVantage = news_producer::alphavantage::AlphaVantage::new(
        "https://av.example",
        Secret::new("k"),
        news_producer::alphavantage::Query::Ticker("AAPL".into()),
        symbols(),
        EVERY,
    )
);

target!(
    /// Reddit listing pages (`/r/<sub>/new`).
    reddit: social_producer::reddit::Subreddit = social_producer::reddit::Subreddit::new(
        "https://oauth.example",
        "stocks",
        Arc::new(social_producer::reddit::TokenCache::new(
            "https://auth.example",
            Secret::new("id"),
            Secret::new("s"),
            1 << 20
        )),
        symbols(),
        EVERY,
    )
);

target!(
    /// StockTwits symbol streams.
    stocktwits: social_producer::stocktwits::SymbolStream =
        social_producer::stocktwits::SymbolStream::new("https://st.example", "F", symbols(), EVERY)
);

target!(
    /// X v2 recent-search pages (and problem documents).
    x_search: social_producer::x::RecentSearch = social_producer::x::RecentSearch::new(
        "https://api.x.example",
        Secret::new("tok"),
        &["$AAPL lang:en".into()],
        symbols(),
        EVERY,
    )
);

target!(
    /// EDGAR current-filings Atom pages (hostile XML included).
    sec_feed: sec_producer::feed::CurrentFeed =
        sec_producer::feed::CurrentFeed::new("https://sec.example", "8-K", 10, EVERY, Duration::from_secs(600))
);

target!(
    /// EDGAR submissions JSON (the document and its history pages).
    sec_submissions: sec_producer::submissions::Submissions = sec_producer::submissions::Submissions::new(
        "https://data.sec.example",
        "https://www.sec.example/Archives",
        "320193",
        vec![],
        true,
        EVERY,
        Duration::from_secs(600),
    )
);

fn custom(cfg: serde_json::Value) -> CustomSource {
    let resolver = GuardedResolver::new(Arc::new(SystemLookup), Arc::new(Policy::default()), None);
    CustomSource::new(
        serde_json::from_value(cfg).expect("a valid altdata source"),
        resolver,
        ingest_core::proxy::ProxyEnv::default(),
    )
}

target!(
    /// A JSON altdata source with JSON-pointer mappings and cursor paging.
    altdata_json: CustomSource = custom(serde_json::json!({"name": "j", "kind": "json",
        "url": "https://a.example/r", "items": "/data/items", "id": "/id", "time": "/observed",
        "fields": {"rate": "/value", "label": "/label"},
        "pagination": {"kind": "cursor", "param": "cursor", "cursor_path": "/next"}}))
);

target!(
    /// A CSV altdata source with a time format.
    altdata_csv: CustomSource = custom(serde_json::json!({"name": "c", "kind": "csv",
        "url": "https://a.example/p.csv", "id": "key", "time": "date", "time_format": "%Y-%m-%d"}))
);

target!(
    /// An HTML (scrape) altdata source with CSS selectors and a next link.
    altdata_html: CustomSource = custom(serde_json::json!({"name": "h", "kind": "html",
        "url": "https://a.example/c.html", "items": "table#calendar tr.event", "id": "@data-id",
        "time": "td.when", "time_format": "%Y-%m-%d",
        "fields": {"event": "td.name", "link": "td.name a@href"},
        "pagination": {"kind": "link", "cursor_path": "a[rel=next]@href"}}))
);

/// A chunk of the X filtered stream: split into lines as the stream reader does, each parsed.
pub fn x_stream(data: &[u8]) {
    static SYMBOLS: LazyLock<Vec<String>> = LazyLock::new(|| symbols().to_vec());
    let now = chrono::Utc::now();
    for line in data.split(|&b| b == b'\n') {
        let line = social_producer::x_stream::trim_line(line);
        if !line.is_empty() {
            let _ = social_producer::x_stream::parse_line(line, &SYMBOLS, now);
        }
    }
}

/// A spool segment left by a crashed process, recovered and drained (see
/// `ingest_core::hostile::spool_segment`); one directory per fuzzing process.
pub fn spool_recovery(data: &[u8]) {
    static DIR: LazyLock<std::path::PathBuf> =
        LazyLock::new(|| std::env::temp_dir().join(format!("finstream-fuzz-spool-{}", std::process::id())));
    let _ = spool_segment(&DIR, data);
}
