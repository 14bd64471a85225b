//! Batched linearizable reads. One read-index round (openraft's `ensure_linearizable`: a
//! heartbeat round confirming leadership with a quorum, then waiting until the state
//! machine applied everything the leader's log held when the round began) serves every
//! read that arrived before the round started. A read that arrives while a round is in
//! flight waits for the next one, since the running round may have begun before it.
//! Without batching every read costs its own quorum round trip.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{CheckIsLeaderError, RaftError};
use tokio::sync::oneshot;
use tonic::Status;

use crate::state::redirect;
use crate::Raft;

/// Longest a linearizable read waits for the leader to apply what its log held.
const READ_WAIT: Duration = Duration::from_secs(3);

type Waiter = oneshot::Sender<Result<(), Status>>;

#[derive(Default)]
struct Pending {
    running: bool,
    waiters: Vec<Waiter>,
}

/// Coalesces concurrent linearizable reads into shared read-index rounds.
#[derive(Default)]
pub struct ReadBatcher {
    pending: Mutex<Pending>,
}

impl ReadBatcher {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        // Only a flag and a list of senders are held under the lock.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Returns once a read-index round that began after this call confirmed leadership
    /// and the state machine caught up with it.
    pub async fn barrier(self: &Arc<Self>, raft: &Raft) -> Result<(), Status> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut p = self.lock();
            p.waiters.push(tx);
            !std::mem::replace(&mut p.running, true)
        };
        if start {
            let (me, raft) = (self.clone(), raft.clone());
            tokio::spawn(async move { me.rounds(raft).await });
        }
        rx.await
            .map_err(|_| Status::unavailable("read-index round abandoned"))?
    }

    /// Runs rounds until no read is waiting.
    async fn rounds(self: Arc<Self>, raft: Raft) {
        loop {
            let waiters = {
                let mut p = self.lock();
                if p.waiters.is_empty() {
                    p.running = false;
                    return;
                }
                std::mem::take(&mut p.waiters)
            };
            let result = round(&raft).await;
            for w in waiters {
                let _ = w.send(result.clone());
            }
        }
    }
}

/// One read-index round.
async fn round(raft: &Raft) -> Result<(), Status> {
    // Everything this leader holds in its log when the round starts must be applied first.
    // openraft's read index alone is not enough: a leader restarted in the same term does
    // not know its commit index (0.9 does not persist it) and would serve a state machine
    // that has not re-applied entries acknowledged before the crash.
    let target = raft.metrics().borrow().last_log_index;
    match raft.ensure_linearizable().await {
        Ok(_) => raft
            .wait(Some(READ_WAIT))
            .applied_index_at_least(target, "linearizable read")
            .await
            .map(|_| ())
            .map_err(|e| Status::unavailable(format!("cannot serve a linearizable read yet: {e}"))),
        Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => Err(redirect(&f)),
        Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q))) => Err(
            Status::unavailable(format!("leader cannot reach a quorum: {q}")),
        ),
        Err(RaftError::Fatal(f)) => Err(Status::unavailable(format!("raft stopped: {f}"))),
    }
}
