use std::sync::Arc;

use bytes::Bytes;
use chrono::TimeZone;
use ingest_core::record::Record;
use reqwest::header::HeaderMap;

use super::*;

fn fixture(name: &str) -> Bytes {
    let path = format!("{}/test_data/alphavantage/{name}", env!("CARGO_MANIFEST_DIR"));
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
}

fn response(body: Bytes) -> HttpResponse {
    HttpResponse {
        status: 200,
        headers: HeaderMap::new(),
        body,
        received_at: Utc.with_ymd_and_hms(2024, 1, 2, 20, 0, 0).unwrap(),
    }
}

fn poller() -> AlphaVantage {
    AlphaVantage::new(
        "https://av.example",
        Secret::new("k"),
        Query::Ticker("AAPL".into()),
        Arc::new(vec!["MSFT".into()]),
        Duration::from_secs(60),
    )
}

#[test]
fn feed_items_field_by_field() {
    let p = poller();
    let resp = response(fixture("feed.json"));
    assert_eq!(p.classify(&resp, &Cursor::default()), None);
    let n = p.normalize(&resp, &Cursor::default()).unwrap();
    assert_eq!(n.records.len(), 2);
    let (a, _) = &n.records[0];
    assert_eq!(
        a.title,
        "Competitor Analysis: Evaluating Apple And Competitors In Technology Hardware - Apple  ( NASDAQ:AAPL )"
    );
    assert_eq!(
        a.url,
        "https://www.benzinga.com/news/24/01/36454259/competitor-analysis-evaluating-apple-and-competitors"
    );
    assert_eq!(
        a.canonical_url,
        "https://benzinga.com/news/24/01/36454259/competitor-analysis-evaluating-apple-and-competitors"
    );
    assert_eq!(a.published_at, Utc.with_ymd_and_hms(2024, 1, 2, 16, 0, 13).unwrap());
    assert_eq!((a.sentiment, a.sentiment_source), (Some(0.24126), Some(SentimentSource::Provider)));
    assert_eq!(a.tickers, ["AAPL", "CRYPTO:BTC"]);
    assert_eq!(a.authors, ["Benzinga Insights"]);
    assert_eq!(a.source, "Benzinga");
    assert_eq!(a.summary.as_deref(), Some(a.content.as_str()));
    assert_eq!(a.provider, "alphavantage");
    assert_eq!(a.validate(), Ok(()));
    assert_eq!(n.rejects.len(), 1);
    assert!(n.rejects[0].reason.contains("time_published"), "{}", n.rejects[0].reason);
    assert_eq!(n.cursor.since, Some(Utc.with_ymd_and_hms(2024, 1, 2, 16, 0, 13).unwrap()));
}

#[test]
fn the_same_story_from_newsapi_has_the_same_id() {
    let av = poller().normalize(&response(fixture("feed.json")), &Cursor::default()).unwrap();
    let body = std::fs::read(format!("{}/test_data/newsapi/everything.json", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let na = crate::newsapi::article(&v["articles"][1], &[], Utc::now()).unwrap();
    assert_eq!(av.records[1].0.id, na.id, "one story, one id");
    assert_eq!(av.records[1].0.canonical_url, na.canonical_url);
    assert_ne!(av.records[1].0.url, na.url, "each keeps the link its provider sent");
}

#[test]
fn http_200_errors_are_classified() {
    let p = poller();
    assert_eq!(p.classify(&response(fixture("invalid_key.json")), &Cursor::default()), Some(ErrorClass::Fatal));
    let midnight = Duration::from_secs(4 * 3600);
    assert_eq!(
        p.classify(&response(fixture("daily_cap.json")), &Cursor::default()),
        Some(ErrorClass::QuotaExhausted { until: Some(midnight) })
    );
    // The burst notice mentions "25 requests per day" in passing: it is a per-second limit, not
    // a reason to pause until midnight.
    assert_eq!(
        p.classify(&response(fixture("burst.json")), &Cursor::default()),
        Some(ErrorClass::RateLimited { after: Some(Duration::from_millis(1500)) })
    );
    // The legacy note says "5 calls per minute and 500 calls per day": a per-minute wait.
    assert_eq!(
        p.classify(&response(fixture("legacy_note.json")), &Cursor::default()),
        Some(ErrorClass::RateLimited { after: Some(Duration::from_secs(12)) })
    );
    assert_eq!(p.classify(&response(fixture("invalid_inputs.json")), &Cursor::default()), Some(ErrorClass::Permanent));
    let empty = response(fixture("no_articles.json"));
    assert_eq!(p.classify(&empty, &Cursor::default()), None, "an empty window is not an error");
    let n = p.normalize(&empty, &Cursor { since: Some(Utc.with_ymd_and_hms(2024, 1, 2, 0, 0, 0).unwrap()) }).unwrap();
    assert!(n.records.is_empty() && n.rejects.is_empty());
    assert_eq!(n.cursor.since, Some(Utc.with_ymd_and_hms(2024, 1, 2, 0, 0, 0).unwrap()), "cursor kept");
    assert!(p.fatal_message("HTTP 200", None).contains("ALPHAVANTAGE_API_KEY"));
}

#[test]
fn request_parameters() {
    let since = Utc.with_ymd_and_hms(2024, 1, 2, 16, 0, 13).unwrap();
    let req = poller().request(&reqwest::Client::new(), &Cursor { since: Some(since) }).build().unwrap();
    let url = req.url().as_str();
    for part in [
        "/query?",
        "function=NEWS_SENTIMENT",
        "tickers=AAPL",
        "sort=LATEST",
        "limit=200",
        "time_from=20240102T1600",
        "apikey=k",
    ] {
        assert!(url.contains(part), "{part} in {url}");
    }
    let topic = AlphaVantage::new(
        "https://av.example",
        Secret::new("k"),
        Query::Topic("earnings".into()),
        Arc::new(vec![]),
        Duration::from_secs(1),
    );
    assert_eq!(topic.name(), "alphavantage:topic:earnings");
    let url = topic.request(&reqwest::Client::new(), &Cursor::default()).build().unwrap().url().to_string();
    assert!(url.contains("topics=earnings") && !url.contains("tickers="), "{url}");
}

/// Hostile input: mutated real responses and random bytes never panic the normalizer.
#[test]
fn hostile_bodies_never_panic() {
    let seeds: Vec<Vec<u8>> = ["feed.json", "burst.json", "daily_cap.json", "invalid_inputs.json", "legacy_note.json"]
        .iter()
        .map(|f| fixture(f).to_vec())
        .collect();
    let tried = ingest_core::testkit::hostile_bodies(&poller(), &Cursor::default(), &seeds, 2000);
    assert_eq!(tried, 2000);
}
