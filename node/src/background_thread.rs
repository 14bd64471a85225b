//! CPU-heavy background work (erasure-coding a backup or a log archive segment) on a
//! thread of its own at a lower scheduling priority than the node's other threads, so
//! that when the cores are busy the kernel runs client requests and Raft messages first
//! and the encoder takes the time left over.

use tokio::sync::oneshot;
use tracing::debug;

/// How much nicer than the node's other threads background threads run. At 10 more, a
/// busy thread of the node weighs about nine times as much as the encoder in the
/// kernel's fair scheduler; the encoder is never starved outright.
pub const BACKGROUND_NICE_OFFSET: i32 = 10;
/// The highest nice value there is.
const NICE_MAX: i32 = 19;

/// Runs `work` on a new thread named `name`, [`BACKGROUND_NICE_OFFSET`] nicer than the
/// thread that started it, and returns its result.
/// Where the priority cannot be lowered, the work runs at the normal one. Errs only if the
/// thread could not be started or panicked.
pub async fn run<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let (tx, rx) = oneshot::channel();
    let nice = background_nice(rustix::process::getpriority_process(None).unwrap_or(0));
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            lower_priority(nice);
            // The receiver is gone only if the caller stopped waiting: nothing to report.
            let _ = tx.send(work());
        })
        .map_err(|e| format!("start thread {name}: {e}"))?;
    rx.await.map_err(|_| format!("thread {name} panicked"))
}

fn background_nice(caller: i32) -> i32 {
    caller.saturating_add(BACKGROUND_NICE_OFFSET).min(NICE_MAX)
}

/// Sets the calling thread's nice value (on Linux, nice is per thread).
fn lower_priority(nice: i32) {
    let tid = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(tid), nice) {
        debug!(error = %e, "background thread keeps the normal priority");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_the_work_at_the_lower_priority_and_returns_its_result() {
        let caller = rustix::process::getpriority_process(None).unwrap();
        let nice = run("test-background", || {
            let tid = rustix::thread::gettid();
            rustix::process::getpriority_process(Some(tid))
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(nice, background_nice(caller));
        assert!(nice > caller || caller == NICE_MAX, "{nice} after {caller}");
        // The caller's own priority is unchanged.
        assert_eq!(rustix::process::getpriority_process(None).unwrap(), caller);
    }

    #[tokio::test]
    async fn a_panicking_work_is_an_error_not_a_hang() {
        let e = run("test-panic", || -> u8 { panic!("boom") })
            .await
            .unwrap_err();
        assert!(e.contains("test-panic"), "{e}");
    }
}
