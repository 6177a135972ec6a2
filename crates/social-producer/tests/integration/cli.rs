//! The CLI and exit-code contract of `social-producer` (docs/contracts.md, Operation), against the real local Kafka.

use std::path::Path;

#[test]
fn cli_contract() {
    let instance = ingest_core::testkit::unique_topic("cli");
    ingest_core::testkit::check_cli_contract(
        Path::new(env!("CARGO_BIN_EXE_social-producer")),
        "social-producer",
        // Providers on a closed loopback port: the test never sends a packet off this machine.
        &[
            ("REDDIT_CLIENT_ID", "id"),
            ("REDDIT_CLIENT_SECRET", "s"),
            ("TWITTER_BEARER_TOKEN", "t"),
            // StockTwits needs no credentials: off, so that no provider is left without Reddit's and X's.
            ("FINSTREAM__SOCIAL__STOCKTWITS__ENABLED", "false"),
            ("FINSTREAM__SOCIAL__REDDIT__BASE_URL", "http://127.0.0.1:9"),
            ("FINSTREAM__SOCIAL__REDDIT__AUTH_URL", "http://127.0.0.1:9"),
            ("FINSTREAM__SOCIAL__STOCKTWITS__BASE_URL", "http://127.0.0.1:9"),
            ("FINSTREAM__SOCIAL__TWITTER__BASE_URL", "http://127.0.0.1:9"),
            ("FINSTREAM__RUNTIME__INSTANCE_ID", &instance),
        ],
        &[
            ("REDDIT_CLIENT_ID", "social.reddit.client_id"),
            ("REDDIT_CLIENT_SECRET", "social.reddit.client_secret"),
            ("TWITTER_BEARER_TOKEN", "social.twitter.bearer_token"),
        ],
    );
}
