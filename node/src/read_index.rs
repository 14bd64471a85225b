//! Linearizable reads: under a leader lease when this node holds one, else through batched
//! read-index rounds.
//!
//! **Rounds.** One read-index round (openraft's `ensure_linearizable`: a heartbeat round
//! confirming leadership with a quorum, then waiting until the state machine applied
//! everything the leader's log held when the round began) serves every read that arrived
//! before the round started. A read that arrives while a round is in flight waits for the
//! next one, since the running round may have begun before it.
//!
//! **Lease.** A round that began at `t0` and succeeded proves that a quorum accepted this
//! leader's heartbeats, each sent after `t0`. openraft 0.9 makes a follower refuse every
//! vote for `election_timeout_max` after it accepted the leader's message, and this node
//! refuses votes itself while it holds a lease (`refuses_votes`, asked by the peer
//! service): every quorum contains one of those nodes, so no other leader can be elected
//! before `t0 + election_timeout_max`. The lease runs until `t0 + lease_for`, a fraction of
//! that bound, so clocks that run at slightly different rates cannot break it. Within the
//! lease no other node can commit anything, so the local state machine, once it applied
//! everything in this leader's log, is the latest state: a read is served locally and
//! checked against the lease again *after* it read, so a thread descheduled between the
//! check and the read cannot serve an old state late. A read outside the lease, or whose
//! lease ran out while it read, takes a round. A lease is tied to the term and membership
//! it was won in, is suspended while leadership is handed over (`suspend_lease`), and is
//! renewed by a background round once half of it has run out while reads keep coming.
//!
//! **Votes against rounds.** A vote this node lets through to Raft may depose it; a round
//! running meanwhile could still succeed and win a lease it no longer refuses votes for.
//! So votes are admitted under the lease lock (`admit_vote`), and a round wins a lease
//! only if no vote was being handled at any time since the round began.
//!
//! **Triggered campaigns.** openraft's election timer waits out the refusal, but a campaign
//! triggered by leader transfer would not: `campaign_gate.rs` holds it back.
//!
//! **Restarts.** A follower restarted within a leader's lease owes it the same refusal.
//! openraft 0.9 stamps a committed vote it loads at start with the start time, which
//! gives that; this node does not rest on it: one whose log holds any vote refuses every
//! vote for `election_timeout_max` after it started. A node that never voted owes none.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use openraft::error::{CheckIsLeaderError, RaftError};
use openraft::{RaftMetrics, ServerState};
use reprise_storage::types::LogId;
use reprise_storage::{Member, NodeId};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tonic::Status;

use crate::state::redirect;
use crate::Raft;

/// Longest a linearizable read waits for the leader to apply what its log held.
const READ_WAIT: Duration = Duration::from_secs(3);

type Waiter = oneshot::Sender<Result<(), Status>>;

#[derive(Default)]
struct Pending {
    running: bool,
    /// A round was asked for with nobody waiting on it: the lease is running out.
    renew: bool,
    waiters: Vec<Waiter>,
}

/// A leadership lease won by a read-index round.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Lease {
    term: u64,
    membership: Option<LogId>,
    until: Instant,
}

#[derive(Default)]
struct LeaseState {
    current: Option<Lease>,
    suspended: bool,
    /// Votes admitted to Raft and not yet answered.
    votes_in_flight: u32,
    /// When the last admitted vote was answered (or abandoned).
    last_vote_ended: Option<Instant>,
}

impl LeaseState {
    /// Takes `lease`, won by a round that began at `began`, unless leases are suspended, a
    /// vote was being handled since `began`, or the current lease lasts longer.
    fn win(&mut self, lease: Lease, began: Instant) -> bool {
        let vote_overlapped =
            self.votes_in_flight > 0 || self.last_vote_ended.is_some_and(|ended| ended >= began);
        if self.suspended || vote_overlapped || self.current.is_some_and(|c| c.until >= lease.until)
        {
            return false;
        }
        self.current = Some(lease);
        true
    }

    /// Whether votes must be refused at `now` (a lease is held).
    fn lease_held(&self, now: Instant) -> bool {
        self.current.is_some_and(|l| now < l.until)
    }
}

/// A vote admitted to Raft: while it lives, no round wins a lease (`admit_vote`).
pub struct VoteAdmitted(Arc<ReadBatcher>);

impl Drop for VoteAdmitted {
    fn drop(&mut self) {
        let mut s = self.0.lease_state();
        s.votes_in_flight = s.votes_in_flight.saturating_sub(1);
        s.last_vote_ended = Some(Instant::now());
    }
}

/// Serves linearizable reads: coalesces rounds and keeps the leader lease.
pub struct ReadBatcher {
    pending: Mutex<Pending>,
    lease: Mutex<LeaseState>,
    /// How long after a round began its lease lasts; zero turns leases off.
    lease_for: Duration,
    /// Votes are refused until then (start plus `election_timeout_max`).
    votes_held_until: Instant,
}

impl ReadBatcher {
    /// A batcher for a node starting now under `config`, with leases of `safe_lease_for`.
    /// `voted_before`: the node's log holds a vote, so it may owe a leader the refusal to
    /// vote (see the module comment).
    pub fn for_config(config: &openraft::Config, voted_before: bool) -> Self {
        let follower_lease = Duration::from_millis(config.election_timeout_max);
        let now = Instant::now();
        ReadBatcher {
            pending: Mutex::default(),
            lease: Mutex::default(),
            lease_for: Self::safe_lease_for(config),
            votes_held_until: if voted_before {
                now + follower_lease
            } else {
                now
            },
        }
    }

    /// The same batcher with leases of `lease_for` (zero: no lease, every read takes a
    /// round): `safe_lease_for` of the config, or longer for a planted bug.
    pub fn with_lease_for(self, lease_for: Duration) -> Self {
        ReadBatcher { lease_for, ..self }
    }

    /// The lease length the argument in the module comment allows under `config`: two
    /// thirds of the time a follower refuses votes after hearing from the leader
    /// (openraft 0.9: `election_timeout_max`).
    pub fn safe_lease_for(config: &openraft::Config) -> Duration {
        Duration::from_millis(config.election_timeout_max) * 2 / 3
    }

    fn pending(&self) -> MutexGuard<'_, Pending> {
        // Only flags and a list of senders are held under the lock.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lease_state(&self) -> MutexGuard<'_, LeaseState> {
        // Only a few plain values are held under the lock.
        self.lease.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Serves `read` linearizably: locally under the lease when this node holds one (and
    /// the lease still holds once `read` returned), otherwise after a read-index round.
    pub async fn read<T>(
        self: &Arc<Self>,
        raft: &Raft,
        read: impl Fn() -> Result<T, Status>,
    ) -> Result<T, Status> {
        if let Some(lease) = self.held_lease(raft) {
            let target = raft.metrics().borrow().last_log_index;
            wait_applied(raft, target).await?;
            let value = read()?;
            let now = Instant::now();
            // A lease renewed meanwhile (same term and membership) holds the read as well.
            let still = self.lease_state().current.is_some_and(|c| {
                c.term == lease.term && c.membership == lease.membership && now < c.until
            });
            if still {
                return Ok(value);
            }
        }
        self.barrier(raft).await?;
        read()
    }

    /// Whether this node must refuse to vote for anyone now: it holds a lease, which counts
    /// on no other leader being elected before it ends, or it started too recently to know
    /// whether it owes another leader that refusal.
    pub fn refuses_votes(&self) -> bool {
        let now = Instant::now();
        now < self.votes_held_until || self.lease_state().lease_held(now)
    }

    /// Admits a vote request to Raft, or None when this node must refuse it
    /// (`refuses_votes`). Keep the result until Raft answered the vote: no round that
    /// overlaps it wins a lease.
    pub fn admit_vote(self: &Arc<Self>) -> Option<VoteAdmitted> {
        let now = Instant::now();
        let mut s = self.lease_state();
        if now < self.votes_held_until || s.lease_held(now) {
            return None;
        }
        s.votes_in_flight += 1;
        drop(s);
        Some(VoteAdmitted(self.clone()))
    }

    /// Drops the lease and wins no new one until `resume_lease`: leadership is about to be
    /// handed over, and the new leader's election must not be refused.
    pub fn suspend_lease(&self) {
        let mut s = self.lease_state();
        s.suspended = true;
        s.current = None;
    }

    /// Lets rounds win leases again.
    pub fn resume_lease(&self) {
        self.lease_state().suspended = false;
    }

    /// The lease, if this node holds one for its current term and membership; asks for a
    /// renewal when half of it has run out.
    fn held_lease(self: &Arc<Self>, raft: &Raft) -> Option<Lease> {
        let lease = self.lease_state().current?;
        let now = Instant::now();
        if now >= lease.until || !leads_under(&raft.metrics().borrow(), &lease) {
            return None;
        }
        if lease.until - now < self.lease_for / 2 {
            self.renew(raft);
        }
        Some(lease)
    }

    /// Starts a round with nobody waiting on it, unless one is running.
    fn renew(self: &Arc<Self>, raft: &Raft) {
        let start = {
            let mut p = self.pending();
            p.renew = true;
            !std::mem::replace(&mut p.running, true)
        };
        if start {
            self.spawn_rounds(raft);
        }
    }

    /// Returns once a read-index round that began after this call confirmed leadership
    /// and the state machine caught up with it.
    pub async fn barrier(self: &Arc<Self>, raft: &Raft) -> Result<(), Status> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut p = self.pending();
            p.waiters.push(tx);
            !std::mem::replace(&mut p.running, true)
        };
        if start {
            self.spawn_rounds(raft);
        }
        rx.await
            .map_err(|_| Status::unavailable("read-index round abandoned"))?
    }

    fn spawn_rounds(self: &Arc<Self>, raft: &Raft) {
        let (me, raft) = (self.clone(), raft.clone());
        tokio::spawn(async move { me.rounds(raft).await });
    }

    /// Runs rounds until no read is waiting and no renewal is asked for.
    async fn rounds(self: Arc<Self>, raft: Raft) {
        loop {
            let waiters = {
                let mut p = self.pending();
                if p.waiters.is_empty() && !p.renew {
                    p.running = false;
                    return;
                }
                p.renew = false;
                std::mem::take(&mut p.waiters)
            };
            let result = self.round(&raft).await;
            for w in waiters {
                let _ = w.send(result.clone());
            }
        }
    }

    /// One read-index round; on success it also wins a lease starting when it began.
    async fn round(&self, raft: &Raft) -> Result<(), Status> {
        let began = Instant::now();
        let (term, membership, target) = {
            let m = raft.metrics();
            let m = m.borrow();
            (
                m.current_term,
                m.membership_config.log_id().to_owned(),
                // Everything this leader holds in its log when the round starts must be
                // applied first. openraft's read index alone is not enough: a leader
                // restarted in the same term does not know its commit index (0.9 does not
                // persist it) and would serve a state machine that has not re-applied
                // entries acknowledged before the crash.
                m.last_log_index,
            )
        };
        match raft.ensure_linearizable().await {
            Ok(_) => {
                let lease = Lease {
                    term,
                    membership,
                    until: began + self.lease_for,
                };
                if !self.lease_for.is_zero() && leads_under(&raft.metrics().borrow(), &lease) {
                    self.lease_state().win(lease, began);
                }
                wait_applied(raft, target).await
            }
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => Err(redirect(&f)),
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q))) => Err(
                Status::unavailable(format!("leader cannot reach a quorum: {q}")),
            ),
            Err(RaftError::Fatal(f)) => Err(Status::unavailable(format!("raft stopped: {f}"))),
        }
    }
}

/// Whether `m` shows this node leading in the term and membership `lease` was won in.
fn leads_under(m: &RaftMetrics<NodeId, Member>, lease: &Lease) -> bool {
    m.state == ServerState::Leader
        && m.current_term == lease.term
        && *m.membership_config.log_id() == lease.membership
}

/// Waits until the state machine applied the entry at `target`.
async fn wait_applied(raft: &Raft, target: Option<u64>) -> Result<(), Status> {
    let applied = raft.metrics().borrow().last_applied.map(|l| l.index);
    if applied >= target {
        return Ok(());
    }
    raft.wait(Some(READ_WAIT))
        .applied_index_at_least(target, "linearizable read")
        .await
        .map(|_| ())
        .map_err(|e| Status::unavailable(format!("cannot serve a linearizable read yet: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> openraft::Config {
        openraft::Config {
            heartbeat_interval: 30,
            election_timeout_min: 110,
            election_timeout_max: 180,
            ..Default::default()
        }
    }

    /// A restarted node may have accepted a leader's heartbeat just before it crashed:
    /// it owes that leader the followers' refusal to vote, which openraft forgot.
    #[tokio::test(start_paused = true)]
    async fn a_restarted_node_refuses_votes_for_election_timeout_max() {
        assert!(
            !ReadBatcher::for_config(&config(), false).refuses_votes(),
            "a node that never voted owes no refusal"
        );
        let reads = ReadBatcher::for_config(&config(), true);
        assert!(reads.refuses_votes());
        tokio::time::advance(Duration::from_millis(179)).await;
        assert!(reads.refuses_votes());
        tokio::time::advance(Duration::from_millis(2)).await;
        assert!(!reads.refuses_votes());
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_holder_refuses_votes_until_its_lease_ends_or_is_suspended() {
        let reads = ReadBatcher::for_config(&config(), true)
            .with_lease_for(ReadBatcher::safe_lease_for(&config()));
        assert_eq!(reads.lease_for, Duration::from_millis(120));
        tokio::time::advance(Duration::from_millis(200)).await;
        assert!(!reads.refuses_votes());
        let lease = |until| Lease {
            term: 2,
            membership: None,
            until,
        };
        reads.lease_state().current = Some(lease(Instant::now() + reads.lease_for));
        assert!(reads.refuses_votes());
        tokio::time::advance(reads.lease_for).await;
        assert!(!reads.refuses_votes(), "the lease ended");

        reads.lease_state().current = Some(lease(Instant::now() + reads.lease_for));
        reads.suspend_lease();
        assert!(!reads.refuses_votes(), "a suspended lease is dropped");
    }

    /// A vote let through may depose the leader: a round that overlapped it must not win a
    /// lease, which would make this node refuse votes after it granted one.
    #[tokio::test(start_paused = true)]
    async fn a_round_overlapping_an_admitted_vote_wins_no_lease() {
        let reads = Arc::new(
            ReadBatcher::for_config(&config(), false)
                .with_lease_for(ReadBatcher::safe_lease_for(&config())),
        );
        let lease = |began: Instant| Lease {
            term: 2,
            membership: None,
            until: began + reads.lease_for,
        };
        let began = Instant::now();
        let admitted = reads
            .admit_vote()
            .expect("no lease is held: the vote is admitted");
        tokio::time::advance(Duration::from_millis(5)).await;
        assert!(
            !reads.lease_state().win(lease(began), began),
            "a vote is in flight"
        );
        drop(admitted);
        assert!(
            !reads.lease_state().win(lease(began), began),
            "the vote ended after the round began"
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        let later = Instant::now();
        assert!(reads.lease_state().win(lease(later), later));
        assert!(
            reads.admit_vote().is_none(),
            "a lease holder admits no vote"
        );
        tokio::time::advance(reads.lease_for).await;
        assert!(reads.admit_vote().is_some(), "the lease ended");
    }
}
