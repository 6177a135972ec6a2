//! The CLI and exit-code contract of `market-producer` (docs/contracts.md, Operation), against the real local Kafka.

use std::path::Path;

#[test]
fn cli_contract() {
    ingest_core::testkit::check_cli_contract(
        Path::new(env!("CARGO_BIN_EXE_market-producer")),
        "market-producer",
        // A closed loopback port: the source keeps reconnecting; no packet leaves the machine.
        &[("MARKET_API_KEY", "test-key"), ("MARKET_WS_URL", "ws://127.0.0.1:9/stocks")],
        &[("MARKET_API_KEY", "market.api_key")],
    );
}
