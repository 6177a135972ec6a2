//! Records the commit the binaries are built from, for `--version`, the start-up log line and
//! the `producer_up` metric: `FINSTREAM_REVISION` when set (the Dockerfile passes its REVISION
//! build argument, where `.git` is not in the build context), else `git rev-parse` of the
//! checkout, else "unknown".

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=FINSTREAM_REVISION");
    let from_env = std::env::var("FINSTREAM_REVISION").ok().filter(|r| !r.trim().is_empty());
    let revision = from_env.unwrap_or_else(|| {
        // Rebuilt when HEAD moves (a commit, a checkout), so a local build names its commit.
        if let Ok(out) = Command::new("git").args(["rev-parse", "--git-dir"]).output()
            && out.status.success()
        {
            let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
            println!("cargo:rerun-if-changed={dir}/HEAD");
            println!("cargo:rerun-if-changed={dir}/refs/heads");
        }
        Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| "unknown".into())
    });
    println!("cargo:rustc-env=FINSTREAM_REVISION={revision}");
}
