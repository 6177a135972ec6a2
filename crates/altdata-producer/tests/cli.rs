//! The CLI and exit-code contract of `altdata-producer` (design.md §4), against the real local Kafka.

use std::path::Path;

#[test]
fn cli_contract() {
    ingest_core::testkit::check_cli_contract(
        Path::new(env!("CARGO_BIN_EXE_altdata-producer")),
        "altdata-producer",
        &[],
        None,
    );
}
