//! The CLI and exit-code contract of `news-producer` (design.md §4), against the real local Kafka.

use std::path::Path;

#[test]
fn cli_contract() {
    ingest_core::testkit::check_cli_contract(
        Path::new(env!("CARGO_BIN_EXE_news-producer")),
        "news-producer",
        &[("NEWS_API_KEY", "k1"), ("ALPHAVANTAGE_API_KEY", "k2")],
        Some(("NEWS_API_KEY", "news.newsapi.api_key")),
    );
}
