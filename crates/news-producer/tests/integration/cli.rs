//! The CLI and exit-code contract of `news-producer` (docs/contracts.md, Operation), against the real local Kafka.

use std::path::Path;

#[test]
fn cli_contract() {
    let instance = ingest_core::testkit::unique_topic("cli");
    ingest_core::testkit::check_cli_contract(
        Path::new(env!("CARGO_BIN_EXE_news-producer")),
        "news-producer",
        // Providers on a closed loopback port: the test never sends a packet off this machine.
        &[
            ("NEWS_API_KEY", "k1"),
            ("ALPHAVANTAGE_API_KEY", "k2"),
            ("FINSTREAM__NEWS__NEWSAPI__BASE_URL", "http://127.0.0.1:9"),
            ("FINSTREAM__NEWS__ALPHAVANTAGE__BASE_URL", "http://127.0.0.1:9"),
            ("FINSTREAM__RUNTIME__INSTANCE_ID", &instance),
        ],
        &[("NEWS_API_KEY", "news.newsapi.api_key"), ("ALPHAVANTAGE_API_KEY", "news.alphavantage.api_key")],
    );
}
