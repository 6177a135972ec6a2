//! Records the commit the binaries are built from, for `--version`, the start-up log line and
//! the images' checks: `FINSTREAM_REVISION` when set (the Dockerfile passes its REVISION build
//! argument; `.git` is not in the build context), else `git rev-parse` of the checkout, else
//! "unknown".

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok().filter(|o| o.status.success())?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    println!("cargo:rerun-if-env-changed=FINSTREAM_REVISION");
    let from_env = std::env::var("FINSTREAM_REVISION").ok().filter(|r| !r.trim().is_empty());
    let revision = from_env.unwrap_or_else(|| {
        // Rebuilt when HEAD moves (a commit, a checkout), so a local build names its commit.
        // Only paths that exist: cargo reruns a script every build for a path it cannot find
        // (a worktree's git dir has no refs of its own: they are in the common dir).
        for (flag, file) in [("--git-dir", "HEAD"), ("--git-common-dir", "refs/heads")] {
            if let Some(dir) = git(&["rev-parse", flag]) {
                let path = Path::new(&dir).join(file);
                if path.exists() {
                    println!("cargo:rerun-if-changed={}", path.display());
                }
            }
        }
        git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into())
    });
    println!("cargo:rustc-env=FINSTREAM_REVISION={revision}");
}
