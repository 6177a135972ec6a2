//! The CLI and exit-code contract of `social-producer` (design.md §4), against the real local Kafka.

use std::path::Path;

#[test]
fn cli_contract() {
    ingest_core::testkit::check_cli_contract(
        Path::new(env!("CARGO_BIN_EXE_social-producer")),
        "social-producer",
        &[("REDDIT_CLIENT_ID", "id"), ("REDDIT_CLIENT_SECRET", "s"), ("TWITTER_BEARER_TOKEN", "t")],
        Some(("TWITTER_BEARER_TOKEN", "social.twitter.bearer_token")),
    );
}
