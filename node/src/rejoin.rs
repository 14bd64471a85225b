//! Quiet rejoin: a (re)starting node holds its elections until it has heard a leader, or
//! until a grace period has passed without one (a whole-cluster restart).
//!
//! Why: openraft 0.9 has no PreVote, and a restarted node has no record of when it last
//! heard a leader, so it campaigns at its first timer tick, in a higher term. The others
//! refuse it (their leader lease holds), but the leader's next AppendEntries meets that
//! higher term and the leader steps down. Measured before this module: every follower
//! restart cost the cluster an election (about 140 ms without a leader), and left the
//! restarted node flagged by openraft as having seen a greater log, which adds twice the
//! election timeout to its next campaign (failovers after a restart took about 700 ms
//! instead of 350).
//!
//! Once a leader's AppendEntries has been accepted, openraft's own timers apply: the
//! node campaigns only after hearing nothing for the lease plus its election timeout.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openraft::raft::AppendEntriesResponse;
use openraft::Config;
use reprise_storage::NodeId;
use tokio::sync::Notify;
use tracing::info;

use crate::network::PEER_RETRY;
use crate::Raft;

/// Whether a leader has been heard since this node started.
#[derive(Default)]
pub struct LeaderHeard {
    heard: AtomicBool,
    notify: Notify,
}

impl LeaderHeard {
    /// Records the answer this node gave to an AppendEntries: any answer but a higher vote
    /// means it accepted the sender as the leader of the current term.
    pub fn answered<E>(&self, result: &Result<AppendEntriesResponse<NodeId>, E>) {
        let accepted =
            matches!(result, Ok(resp) if !matches!(resp, AppendEntriesResponse::HigherVote(_)));
        if accepted && !self.heard.swap(true, Ordering::AcqRel) {
            self.notify.notify_waiters();
        }
    }

    async fn wait(&self) {
        let notified = self.notify.notified();
        if self.heard.load(Ordering::Acquire) {
            return;
        }
        notified.await;
    }
}

/// How long a starting node waits for a leader before it may campaign: the followers'
/// lease plus the longest election timeout (by then a live leader's followers would vote
/// again), plus a leader's retry pause towards a peer it could not reach and two
/// heartbeat ticks.
pub fn grace(config: &Config) -> Duration {
    Duration::from_millis(config.election_timeout_max * 2 + config.heartbeat_interval * 3)
        + PEER_RETRY
}

/// Disables `raft`'s elections and re-enables them once `heard` reports a leader or
/// `grace` has passed. Call right after `Raft::new`.
pub fn hold_elections(raft: &Raft, heard: Arc<LeaderHeard>, grace: Duration) {
    raft.runtime_config().elect(false);
    let raft = raft.clone();
    tokio::spawn(async move {
        let outcome = tokio::time::timeout(grace, heard.wait()).await;
        raft.runtime_config().elect(true);
        match outcome {
            Ok(()) => info!("a leader was heard: elections enabled"),
            Err(_) => info!(
                grace_ms = grace.as_millis() as u64,
                "no leader heard since start: elections enabled"
            ),
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_append_entries_wakes_the_waiter_and_a_higher_vote_does_not() {
        let heard = Arc::new(LeaderHeard::default());
        let waiter = {
            let heard = heard.clone();
            tokio::spawn(async move { heard.wait().await })
        };
        let refused: Result<_, ()> =
            Ok(AppendEntriesResponse::HigherVote(openraft::Vote::new(3, 1)));
        heard.answered(&refused);
        let failed: Result<AppendEntriesResponse<NodeId>, ()> = Err(());
        heard.answered(&failed);
        assert!(!heard.heard.load(Ordering::Acquire));
        assert!(!waiter.is_finished());
        let accepted: Result<_, ()> = Ok(AppendEntriesResponse::<NodeId>::Success);
        heard.answered(&accepted);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the waiter wakes")
            .expect("join");
        // A later waiter returns at once.
        tokio::time::timeout(Duration::from_secs(5), heard.wait())
            .await
            .expect("already heard");
    }
}
