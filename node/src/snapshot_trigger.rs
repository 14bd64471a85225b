//! Snapshots by size as well as by count. openraft 0.9 builds a snapshot after a number
//! of log entries (`snapshot_logs_since_last`), but an entry is a batch of up to 512
//! writes (`proposer.rs`): with 4 KiB values, 10,000 entries can be gigabytes of log,
//! held decoded in memory and on disk by every node until the snapshot that lets it be
//! purged. This task asks openraft for a snapshot as soon as the applied entries after
//! the last snapshot hold `snapshot_log_bytes` of keys and values, or as many bytes as
//! the newest snapshot file if that is larger: a snapshot writes the whole state, so a
//! large state is not rewritten for every few megabytes of log (at most one state's
//! worth of snapshot per state's worth of log).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::state::NodeState;

/// How often the size of the log since the last snapshot is checked.
const CHECK_EVERY: Duration = Duration::from_millis(500);

/// A snapshot asked for and not seen in the metrics after this long is asked for again.
const ASK_AGAIN_AFTER: Duration = Duration::from_secs(30);

/// Starts the size check; `limit_bytes` > 0.
pub fn spawn(state: Arc<NodeState>, limit_bytes: u64) -> JoinHandle<()> {
    let limit = usize::try_from(limit_bytes).unwrap_or(usize::MAX);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The snapshot index when we last asked, and when: until the snapshot index
        // moves past it, the snapshot we asked for is still being built.
        let mut asked: Option<(u64, Instant)> = None;
        loop {
            tick.tick().await;
            let (snapshot, applied) = {
                let m = state.raft.metrics();
                let m = m.borrow();
                (
                    m.snapshot.map(|l| l.index).unwrap_or(0),
                    m.last_applied.map(|l| l.index).unwrap_or(0),
                )
            };
            if let Some((at, when)) = asked {
                if at == snapshot && when.elapsed() < ASK_AGAIN_AFTER {
                    continue;
                }
            }
            let (log, snapshots) = (state.log.clone(), state.snapshots.clone());
            let measured = tokio::task::spawn_blocking(move || {
                let state_bytes = snapshots.newest_len().ok().flatten().unwrap_or(0);
                let state_bytes = usize::try_from(state_bytes).unwrap_or(usize::MAX);
                (
                    log.payload_bytes_between(snapshot + 1, applied),
                    state_bytes,
                )
            })
            .await;
            let (bytes, state_bytes) = match measured {
                Ok(measured) => measured,
                Err(e) => {
                    warn!(error = %e, "measuring the log since the last snapshot failed");
                    continue;
                }
            };
            if bytes < limit.max(state_bytes) {
                continue;
            }
            debug!(
                bytes,
                state_bytes,
                snapshot,
                applied,
                "log since the last snapshot is over its size limit: snapshot"
            );
            if let Err(e) = state.raft.trigger().snapshot().await {
                warn!(error = %e, "asking raft for a snapshot failed");
                return;
            }
            asked = Some((snapshot, Instant::now()));
        }
    })
}
