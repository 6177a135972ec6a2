//! The CLI and exit-code contract of `altdata-producer` (design.md §4), against the real local Kafka.

use std::path::Path;

#[test]
fn cli_contract() {
    // The example sources of configs/config.yaml point at 127.0.0.1 (the simulator's port,
    // closed here): the test never sends a packet off this machine.
    let instance = ingest_core::testkit::unique_topic("cli");
    ingest_core::testkit::check_cli_contract(
        Path::new(env!("CARGO_BIN_EXE_altdata-producer")),
        "altdata-producer",
        &[("FINSTREAM__RUNTIME__INSTANCE_ID", &instance)],
        None,
    );
}
