//! The CLI and exit-code contract of `sec-producer` (docs/contracts.md, Operation), against the real local Kafka.

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_sec-producer");

#[test]
fn cli_contract() {
    let instance = ingest_core::testkit::unique_topic("cli");
    ingest_core::testkit::check_cli_contract(
        Path::new(BIN),
        "sec-producer",
        // The SEC on a closed loopback port: the test never sends a packet off this machine.
        &[
            ("SEC_USER_AGENT", "FinStream tests ci@example.com"),
            ("FINSTREAM__SEC__BASE_URL", "http://127.0.0.1:9"),
            ("FINSTREAM__SEC__DATA_URL", "http://127.0.0.1:9"),
            ("FINSTREAM__RUNTIME__INSTANCE_ID", &instance),
        ],
        &[],
    );
}

#[test]
fn a_user_agent_without_a_contact_email_is_refused_with_exit_2() {
    for ua in ["", "FinStream tests"] {
        let out = Command::new(BIN)
            .arg("--check-config")
            .current_dir(ingest_core::testkit::workspace_root())
            .env_remove("FINSTREAM_CONFIG")
            .env("SEC_USER_AGENT", ua)
            .output()
            .unwrap_or_else(|e| panic!("{BIN}: {e}"));
        assert_eq!(out.status.code(), Some(2), "{ua:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("`sec.user_agent`") && err.contains("SEC_USER_AGENT") && err.contains("email"), "{err}");
    }
}
