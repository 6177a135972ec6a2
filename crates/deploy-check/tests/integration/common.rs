//! Helpers shared by the tests that run the shipped binaries: start them with captured logs,
//! find them in the target directory, compute the demo-mode environment.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test, with its location")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use deploy_check::repo;

/// A child process killed on drop (provider-sim, Prometheus).
pub(crate) struct Guard(Child, PathBuf);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Guard {
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.1).unwrap_or_default()
    }
}

/// `target/debug` (or wherever this test binary was built): the workspace binaries are there,
/// built by `cargo test --workspace` (`make test`).
pub(crate) fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let path = dir.join(name);
    assert!(path.is_file(), "{} missing: run `cargo build --workspace --bins` (make test builds it)", path.display());
    path
}

pub(crate) fn spawn_logged(program: &Path, args: &[String], log: PathBuf) -> Guard {
    let file = std::fs::File::create(&log).unwrap();
    let child = Command::new(program)
        .args(args)
        .current_dir(repo())
        .stdout(Stdio::from(file.try_clone().unwrap()))
        .stderr(Stdio::from(file))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
    Guard(child, log)
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The environment scripts/demo-env.sh exports for a simulator at `sim`, with no credentials set.
pub(crate) fn demo_env(sim: &str) -> Vec<(String, String)> {
    let out = Command::new("bash")
        .args(["-c", ". scripts/demo-env.sh && env -0"])
        .current_dir(repo())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("demo_sim", sim)
        .output()
        .unwrap();
    assert!(out.status.success(), "demo-env.sh: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let env: Vec<(String, String)> = text
        .split('\0')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| {
            k.starts_with("FINSTREAM__")
                || k.chars().all(|c| c.is_ascii_uppercase() || c == '_')
                    && *k != "PATH"
                    && *k != "PWD"
                    && *k != "SHLVL"
                    && *k != "_"
        })
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert!(env.iter().any(|(k, v)| k == "MARKET_WS_URL" && v == &format!("ws://{sim}/stocks")), "{env:?}");
    env
}

/// The environment that points a producer at topics `<stem>.market.raw`, …, `<stem>.events`,
/// `<stem>.state` (created by the test).
pub(crate) fn topic_env(stem: &str) -> Vec<(String, String)> {
    [
        ("MARKET_TICKS", "market.raw"),
        ("NEWS_ARTICLES", "news.raw"),
        ("SOCIAL_POSTS", "social.raw"),
        ("SEC_FILINGS", "sec.raw"),
        ("ALTDATA_RECORDS", "altdata.raw"),
        ("EVENTS", "events"),
        ("STATE", "state"),
    ]
    .iter()
    .map(|(key, t)| (format!("FINSTREAM__KAFKA__TOPICS__{key}__NAME"), format!("{stem}.{t}")))
    .collect()
}

/// The address provider-sim listens on, from its log (it is started on `127.0.0.1:0`).
pub(crate) async fn sim_addr(sim: &Guard) -> String {
    ingest_core::testkit::wait_for(std::time::Duration::from_secs(30), "provider-sim to listen", || {
        let log = sim.log();
        async move { log.split("listening on ").nth(1)?.split_whitespace().next().map(str::to_string) }
    })
    .await
}

/// The demo overlay scripts/demo-env.sh generated for `env` (its `FINSTREAM_CONFIG_OVERLAY`),
/// whose `altdata.sources` list ends the file: tests append sources to it.
pub(crate) fn demo_overlay(env: &[(String, String)]) -> String {
    let path = env.iter().find(|(k, _)| k == "FINSTREAM_CONFIG_OVERLAY").map(|(_, v)| v.clone()).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(text.trim_end().ends_with("max_pages: 5}"), "the sources list ends configs/demo.yaml:\n{text}");
    if text.ends_with('\n') { text } else { text + "\n" }
}
