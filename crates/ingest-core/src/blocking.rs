//! Blocking waits of synchronous code. A wait never holds a tokio worker: on a worker of the
//! multi-thread runtime it runs under `block_in_place` (the worker's other tasks move to another
//! thread first); elsewhere (a thread of our own, the blocking pool) it simply blocks.
//! `std::thread::sleep` is disallowed everywhere else (clippy.toml).

use std::time::Duration;

use tokio::runtime::{Handle, RuntimeFlavor};

/// Runs `f`, which may block, without holding a tokio worker: under `block_in_place` on a
/// worker of the multi-thread runtime, directly elsewhere. (A current-thread runtime, used only
/// by tests, has no other thread to move its tasks to: `f` blocks it.)
pub fn off_worker<T>(f: impl FnOnce() -> T) -> T {
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Sleeps the calling thread for `d`, off the tokio worker if called on one.
pub fn sleep(d: Duration) {
    off_worker(|| thread_sleep(d));
}

/// The thread sleep itself, for callers already off the workers.
#[allow(clippy::disallowed_methods, reason = "the one blocking sleep: every other goes through here")]
pub(crate) fn thread_sleep(d: Duration) {
    std::thread::sleep(d);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    /// A blocking wait in a task on the runtime's only worker does not stop the other tasks:
    /// one spawned beside it runs while the wait lasts (with a plain thread sleep it could not
    /// run until the wait ended: there is no other worker to take it).
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_blocking_wait_on_a_worker_lets_other_tasks_run() {
        let ran = Arc::new(AtomicBool::new(false));
        let waiter = tokio::spawn({
            let ran = ran.clone();
            async move {
                let other = tokio::spawn({
                    let ran = ran.clone();
                    async move { ran.store(true, Ordering::SeqCst) }
                });
                let mut waited = 0;
                while !ran.load(Ordering::SeqCst) && waited < 100 {
                    sleep(Duration::from_millis(10));
                    waited += 1;
                }
                let seen = ran.load(Ordering::SeqCst);
                other.await.unwrap();
                seen
            }
        });
        assert!(waiter.await.unwrap(), "the other task never ran while this one waited");
    }
}
