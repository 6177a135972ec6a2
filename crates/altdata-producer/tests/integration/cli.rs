//! The CLI and exit-code contract of `altdata-producer` (docs/contracts.md, Operation), against the real local Kafka.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test, with its location")]

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
        &[],
    );
}

#[test]
fn check_config_counts_every_configured_source() {
    // The demo overlay lists three example sources; they run in one poll group, which used to
    // be reported as "1 source(s)". The shipped config alone has none, and that is valid.
    let check = |overlay: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_altdata-producer"))
            .arg("--check-config")
            .current_dir(ingest_core::testkit::workspace_root())
            .env_remove("FINSTREAM_CONFIG")
            .env("FINSTREAM_CONFIG_OVERLAY", overlay)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
        stdout
    };
    assert!(check("configs/demo.yaml").contains("3 source(s)"));
    assert!(check("").contains("0 source(s)"), "production defaults: no example sources");
}
