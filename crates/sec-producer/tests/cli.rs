//! The CLI and exit-code contract of `sec-producer` (design.md §4), against the real local Kafka.

use std::path::Path;

#[test]
fn cli_contract() {
    ingest_core::testkit::check_cli_contract(
        Path::new(env!("CARGO_BIN_EXE_sec-producer")),
        "sec-producer",
        &[("SEC_USER_AGENT", "FinStream tests ci@example.com")],
        None,
    );
}
