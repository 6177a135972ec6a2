use std::sync::Arc;

use bytes::Bytes;
use chrono::TimeZone;
use ingest_core::record::Record;
use reqwest::header::HeaderMap;

use super::*;

fn fixture(name: &str) -> Bytes {
    let path = format!("{}/test_data/newsapi/{name}", env!("CARGO_MANIFEST_DIR"));
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
}

fn response(status: u16, body: Bytes) -> HttpResponse {
    HttpResponse {
        status,
        headers: HeaderMap::new(),
        body,
        received_at: Utc.with_ymd_and_hms(2020, 8, 9, 9, 0, 0).unwrap(),
    }
}

fn poller() -> NewsApi {
    NewsApi::new(
        "https://newsapi.example/",
        Secret::new("k"),
        Endpoint::Everything { q: "stocks".into() },
        Arc::new(vec!["AAPL".into(), "MSFT".into()]),
        Duration::from_secs(60),
    )
}

#[test]
fn articles_field_by_field() {
    let p = poller();
    let n = p.normalize(&response(200, fixture("everything.json")), &Cursor::default()).unwrap();
    assert_eq!(n.records.len(), 2);
    let (a, raw) = &n.records[0];
    assert_eq!(a.title, "Yield Farming Fuels Buzz Around DeFi, but Fundamentals Are Lagging");
    assert_eq!(a.content, "The hype surrounding decentralized finance is sometimes credited with a rally in $ETH");
    assert!(a.content_truncated);
    assert_eq!(a.source, "Cointelegraph");
    assert_eq!(
        a.url,
        "https://cointelegraph.com/news/yield-farming-fuels-buzz-around-defi-but-fundamentals-are-lagging"
    );
    assert_eq!(a.canonical_url, a.url, "already canonical");
    assert_eq!(a.id, canon::article_id(&a.canonical_url));
    assert_eq!(a.published_at, Utc.with_ymd_and_hms(2020, 8, 9, 7, 0, 0).unwrap());
    assert_eq!(a.authors, ["Cointelegraph By Andrey Shevchenko"]);
    assert_eq!(
        a.summary.as_deref(),
        Some("DeFi has been the name of the game since the start of the summer, but growth is slowing.")
    );
    assert_eq!(a.tickers, ["ETH"]);
    assert_eq!(a.sentiment_source, Some(SentimentSource::Lexicon));
    assert!(a.sentiment.is_some_and(|s| (-1.0..=1.0).contains(&s)));
    assert_eq!(a.provider, "newsapi");
    assert_eq!(a.validate(), Ok(()));
    assert!(String::from_utf8_lossy(raw).contains("yield-farming"), "the raw article is kept for the DLQ");

    let (b, _) = &n.records[1];
    assert_eq!(
        b.url, "http://www.reuters.com/technology/apple-beats-estimates/?utm_source=newsapi&utm_medium=rss",
        "the link as NewsAPI sent it"
    );
    assert_eq!(
        b.canonical_url, "https://reuters.com/technology/apple-beats-estimates",
        "https, tracking parameters, www. and the trailing slash removed"
    );
    assert_eq!(b.id, canon::article_id(&b.canonical_url), "the id is the canonical URL's, as before");
    assert_eq!(b.published_at, Utc.with_ymd_and_hms(2020, 8, 9, 6, 30, 0).unwrap(), "offset converted to UTC");
    assert_eq!(b.authors, ["Jane Doe", "John Roe"]);
    assert_eq!((b.content.as_str(), b.content_truncated, b.summary.as_deref()), ("", false, None));
    assert_eq!(b.tickers, Vec::<String>::new(), "\"Apple\" is not a configured symbol");
    assert!(b.sentiment.unwrap() > 0.3, "beats + surge");

    assert_eq!(n.rejects.len(), 1);
    assert!(n.rejects[0].reason.starts_with("`url`"), "{}", n.rejects[0].reason);
    // Not a full page: the pass ends, the next poll starts from the newest article.
    assert_eq!(
        n.cursor,
        Cursor { since: Some(Utc.with_ymd_and_hms(2020, 8, 9, 7, 0, 0).unwrap()), page: 1, newest: None }
    );
    assert!(!n.more);
}

#[test]
fn full_pages_page_on_and_the_result_window_ends_paging() {
    let p = poller();
    let one = |i: u32| {
        serde_json::json!({"source":{"name":"S"},"title":format!("t{i}"),"url":format!("https://s.example/{i}"),
            "publishedAt":format!("2020-08-09T07:{:02}:00Z", i % 60)})
    };
    let page: Vec<_> = (0..PAGE_SIZE).map(one).collect();
    let body = serde_json::json!({"status":"ok","totalResults":250,"articles":page}).to_string();
    let n = p.normalize(&response(200, body.into()), &Cursor::default()).unwrap();
    assert!(n.more);
    assert_eq!((n.cursor.since, n.cursor.page), (None, 2));
    assert_eq!(n.cursor.newest, Some(Utc.with_ymd_and_hms(2020, 8, 9, 7, 59, 0).unwrap()));

    let resp = response(426, fixture("maximum_results.json"));
    assert_eq!(p.classify(&resp, &Cursor::default()), None, "426 is the end of paging, not a failure");
    let end = p.normalize(&resp, &n.cursor).unwrap();
    assert!(end.records.is_empty() && !end.more);
    assert_eq!(end.cursor, Cursor { since: n.cursor.newest, page: 1, newest: None });
}

#[test]
fn errors_are_classified_as_newsapi_documents_them() {
    let p = poller();
    assert_eq!(
        p.classify(&response(401, fixture("api_key_invalid.json")), &Cursor::default()),
        Some(ErrorClass::Fatal)
    );
    let msg = p.fatal_message("HTTP 401", Some(&response(401, fixture("api_key_invalid.json"))));
    assert!(msg.contains("apiKeyInvalid") && msg.contains("NEWS_API_KEY"), "{msg}");
    assert!(matches!(
        p.classify(&response(429, Bytes::new()), &Cursor::default()),
        Some(ErrorClass::RateLimited { .. })
    ));
    assert!(matches!(p.classify(&response(503, Bytes::new()), &Cursor::default()), Some(ErrorClass::Retryable { .. })));
    assert_eq!(p.classify(&response(400, Bytes::new()), &Cursor::default()), Some(ErrorClass::Permanent));
    assert!(p.normalize(&response(200, "<html>".into()), &Cursor::default()).is_err());
}

#[test]
fn requests_carry_the_key_in_a_header_and_the_cursor_in_from() {
    let p = poller();
    let client = reqwest::Client::new();
    let since = Utc.with_ymd_and_hms(2020, 8, 9, 7, 0, 0).unwrap();
    let req = p.request(&client, &Cursor { since: Some(since), page: 2, newest: None }).build().unwrap();
    let url = req.url().as_str();
    assert!(url.starts_with("https://newsapi.example/v2/everything?"), "{url}");
    for part in ["q=stocks", "sortBy=publishedAt", "from=2020-08-09T07%3A00%3A00", "pageSize=100", "page=2"] {
        assert!(url.contains(part), "{part} in {url}");
    }
    assert!(!url.contains("apiKey"), "the key is not in the URL");
    assert_eq!(req.headers()["x-api-key"], "k");
}

/// Hostile input: mutated real responses and random bytes never panic the normalizer.
#[test]
fn hostile_bodies_never_panic() {
    let seeds: Vec<Vec<u8>> = ["everything.json", "maximum_results.json", "api_key_invalid.json"]
        .iter()
        .map(|f| fixture(f).to_vec())
        .collect();
    let tried = ingest_core::testkit::hostile_bodies(&poller(), &Cursor::default(), &seeds, 2000);
    assert_eq!(tried, 2000);
}
