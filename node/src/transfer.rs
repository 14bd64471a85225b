//! Leader transfer on openraft 0.9, which has no transfer primitive. The leader refuses
//! new writes, waits until the target has every log entry, stops heartbeats (so the
//! followers' leader lease runs out), and asks the target to campaign just after the
//! lease expires, before any other follower's election timer fires. Its own read lease is
//! suspended meanwhile (a lease holder refuses votes, `read_index.rs`), and the target
//! campaigns only if it heard no leader for `election_timeout_max` (`campaign_gate.rs`).
//! One transfer runs at a time. Heartbeats, writes and leases are restored on every path.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::ServerState;
use reprise_api::pb::admin::CampaignRequest;
use reprise_api::{Client, ClientOptions};
use reprise_storage::NodeId;
use tonic::Status;

use crate::state::NodeState;

/// How long a transfer may take before it is abandoned.
const TRANSFER_DEADLINE: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(10);

/// Restores heartbeats, writes and read leases when the transfer ends, however it ends.
struct Pause<'a>(&'a NodeState);

impl Drop for Pause<'_> {
    fn drop(&mut self) {
        self.0.raft.runtime_config().heartbeat(true);
        self.0.transferring.store(false, Ordering::Release);
        self.0.reads.resume_lease();
    }
}

/// Moves leadership from this node (the leader) to `to`; returns the new leader.
pub async fn transfer_leader(state: &Arc<NodeState>, to: NodeId) -> Result<NodeId, Status> {
    let metrics = state.raft.metrics().borrow().clone();
    if metrics.state != ServerState::Leader {
        return Err(crate::state::redirect_to(
            metrics.current_leader,
            &metrics.membership_config,
        ));
    }
    if to == state.id {
        return Ok(to);
    }
    let membership = metrics.membership_config.membership().clone();
    let target = membership
        .get_node(&to)
        .filter(|_| membership.voter_ids().any(|v| v == to))
        .ok_or_else(|| Status::failed_precondition(format!("node {to} is not a voter")))?
        .clone();
    let started = Instant::now();
    if state
        .transferring
        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return Err(Status::failed_precondition(
            "a leader transfer is already running on this node",
        ));
    }
    state.reads.suspend_lease();
    let _pause = Pause(state);
    wait_caught_up(state, to, started).await?;
    state.raft.runtime_config().heartbeat(false);
    let lease_ms =
        state.raft.config().election_timeout_max + state.raft.config().heartbeat_interval;
    let client = Client::new(std::slice::from_ref(&target.addr), ClientOptions::default())
        .map_err(|e| Status::internal(e.to_string()))?;
    client
        .call(reprise_api::client::Retry::Idempotent, |c| async move {
            Client::admin(c)
                .campaign(CampaignRequest { after_ms: lease_ms })
                .await
        })
        .await
        .map_err(|e| Status::unavailable(format!("ask node {to} to campaign: {e}")))?;
    loop {
        let leader = state.raft.metrics().borrow().current_leader;
        if leader == Some(to) {
            return Ok(to);
        }
        if started.elapsed() > TRANSFER_DEADLINE {
            return Err(Status::deadline_exceeded(format!(
                "leadership did not move to node {to} within {TRANSFER_DEADLINE:?}; leader is {leader:?}"
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn wait_caught_up(state: &NodeState, to: NodeId, started: Instant) -> Result<(), Status> {
    loop {
        let m = state.raft.metrics().borrow().clone();
        let matched = m
            .replication
            .as_ref()
            .and_then(|r| r.get(&to).copied().flatten())
            .map(|l| l.index);
        if matched.is_some() && matched == m.last_log_index {
            return Ok(());
        }
        if started.elapsed() > TRANSFER_DEADLINE {
            return Err(Status::failed_precondition(format!(
                "node {to} did not catch up (matched {matched:?}, last log {:?})",
                m.last_log_index
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// On the target: wait out the old leader's lease, then start an election, unless this
/// node still owes a leader its refusal to vote (`campaign_gate.rs`): it heard one too
/// recently, holds a read lease itself, or restarted too recently to know.
pub async fn campaign(state: &NodeState, after_ms: u64) -> Result<(), Status> {
    tokio::time::sleep(Duration::from_millis(after_ms.min(10_000))).await;
    let owed = Duration::from_millis(state.raft.config().election_timeout_max);
    let elect = || async {
        if state.reads.refuses_votes() {
            return Err(Status::failed_precondition(format!(
                "node {} will not campaign: it holds a read lease or restarted less than {}ms ago",
                state.id,
                owed.as_millis()
            )));
        }
        state
            .raft
            .trigger()
            .elect()
            .await
            .map_err(|e| Status::unavailable(format!("raft stopped: {e}")))
    };
    state
        .campaign_gate
        .campaign(owed, elect)
        .await
        .map_err(|e| {
            Status::failed_precondition(format!("node {} will not campaign: {e}", state.id))
        })?
}
