//! The proposer: turns concurrent writes into few log entries. openraft 0.9 appends and
//! flushes every client write as its own entry, so without batching each write costs a
//! leader fsync and a follower fsync of its own. The proposer keeps at most
//! `PROPOSALS_IN_FLIGHT_MAX` entries in flight; the writes that arrive meanwhile are
//! stamped (in order, under the propose lock) and proposed together as one
//! `Operation::Batch` entry, so many clients share one append and one fsync. A lone
//! write is proposed alone, at once: batching never delays an idle cluster.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::ClientWriteError;
use openraft::raft::ClientWriteResponse;
use openraft::{RaftMetrics, ServerState};
use reprise_api::redirect::not_leader;
use reprise_storage::command::{operation_bytes, Command, CommandResponse, Operation, Outcome};
use reprise_storage::{Member, NodeId, TypeConfig};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tokio::task::JoinHandle;
use tonic::Status;

use crate::state::{internal, redirect, NodeState, Written};

/// Entries proposed and not yet committed at once.
pub const PROPOSALS_IN_FLIGHT_MAX: usize = 2;
/// Most commands in one batch entry.
pub const BATCH_COMMANDS_MAX: usize = 512;
/// Most key and value bytes in one batch entry (AppendEntries are cut at 1 MiB).
pub const BATCH_BYTES_MAX: usize = 512 * 1024;
/// Writes waiting for the proposer before `write` waits too.
pub const PROPOSAL_QUEUE_MAX: usize = 4096;
/// A proposed entry not answered within this is reported as of unknown outcome.
pub const PROPOSAL_ANSWER_TIMEOUT: Duration = Duration::from_secs(60);
/// After this node was deposed, how long openraft may still answer a proposed entry before
/// it is reported as of unknown outcome.
pub const DEPOSED_ANSWER_GRACE: Duration = Duration::from_secs(5);

/// One write waiting to be proposed.
pub struct Proposal {
    pub op: Operation,
    pub reply: oneshot::Sender<Result<Written, Status>>,
}

/// The sending side, kept in `NodeState`.
pub type ProposalSender = mpsc::Sender<Proposal>;

/// A bounded proposal queue.
pub fn channel() -> (ProposalSender, mpsc::Receiver<Proposal>) {
    mpsc::channel(PROPOSAL_QUEUE_MAX)
}

/// Starts the proposer over `rx`.
pub fn spawn(state: Arc<NodeState>, mut rx: mpsc::Receiver<Proposal>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let in_flight = Arc::new(Semaphore::new(PROPOSALS_IN_FLIGHT_MAX));
        // A write that did not fit the previous batch opens the next one.
        let mut carried: Option<Proposal> = None;
        loop {
            // Wait for room first: what arrives meanwhile joins the next batch.
            let Ok(permit) = in_flight.clone().acquire_owned().await else {
                return;
            };
            let first = match carried.take() {
                Some(p) => p,
                None => match rx.recv().await {
                    Some(p) => p,
                    None => return,
                },
            };
            let mut bytes = operation_bytes(&first.op);
            let mut batch = vec![first];
            while batch.len() < BATCH_COMMANDS_MAX {
                match rx.try_recv() {
                    Ok(p) if bytes + operation_bytes(&p.op) > BATCH_BYTES_MAX => {
                        carried = Some(p);
                        break;
                    }
                    Ok(p) => {
                        bytes += operation_bytes(&p.op);
                        batch.push(p);
                    }
                    Err(_) => break,
                }
            }
            let (ops, replies): (Vec<Operation>, Vec<_>) =
                batch.into_iter().map(|p| (p.op, p.reply)).unzip();
            // Stamp and submit under one lock: stamps then follow log order.
            let submitted = {
                let _order = state.propose.lock().await;
                if state.transferring.load(Ordering::Acquire) {
                    // Leadership is being handed over: nothing new may enter the log.
                    Err(not_leader(None))
                } else {
                    match stamp(&state, ops) {
                        Ok(cmd) => state
                            .raft
                            .client_write_ff(cmd)
                            .await
                            .map_err(|f| Status::unavailable(format!("raft stopped: {f}"))),
                        Err(status) => Err(status),
                    }
                }
            };
            match submitted {
                Ok(pending) => {
                    let mut metrics = state.raft.metrics();
                    let term = metrics.borrow().current_term;
                    tokio::spawn(async move {
                        tokio::select! {
                            biased;
                            outcome = pending => answer(outcome, replies),
                            _ = async {
                                leadership_lost(&mut metrics, term).await;
                                // openraft usually still answers (the new leader commits
                                // the entry, or it is truncated): give it time to.
                                tokio::time::sleep(DEPOSED_ANSWER_GRACE).await;
                            } => fail(replies, unknown(
                                "leadership changed before the write was acknowledged",
                            )),
                            _ = tokio::time::sleep(PROPOSAL_ANSWER_TIMEOUT) => fail(replies, unknown(
                                "the write was not acknowledged in time",
                            )),
                        }
                        // The permit is freed whatever happened: a lost answer never
                        // stops the node's writes.
                        drop(permit);
                    });
                }
                Err(status) => fail(replies, status),
            }
        }
    })
}

/// An answer for a write whose entry may or may not commit later.
fn unknown(why: &str) -> Status {
    Status::unavailable(format!("{why}; it may or may not have been applied"))
}

/// Resolves once this node has moved past `term` without being leader (or Raft stopped):
/// it was deposed. openraft does not answer an uncommitted entry that a snapshot later
/// purges; this frees its batch. Metrics may lag a fresh election (a new leader can still
/// show as candidate in the term it wins, or even the term before), so neither alone
/// means the leadership is lost.
async fn leadership_lost(metrics: &mut watch::Receiver<RaftMetrics<NodeId, Member>>, term: u64) {
    loop {
        {
            let m = metrics.borrow();
            if m.current_term > term && m.state != ServerState::Leader {
                return;
            }
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

/// Stamps `ops` in order, above every stamp in the log and the state machine, as one
/// command (a batch when there are several).
fn stamp(state: &NodeState, ops: Vec<Operation>) -> Result<Command, Status> {
    let applied = state.view.last_hlc().map_err(internal)?;
    let mut stamp = applied.max(state.log_hlc.load(Ordering::Acquire));
    let mut cmds: Vec<Command> = ops
        .into_iter()
        .map(|op| {
            stamp = state.hlc.stamp(stamp);
            Command { hlc: stamp, op }
        })
        .collect();
    Ok(if cmds.len() == 1 {
        cmds.remove(0)
    } else {
        Command {
            hlc: stamp,
            op: Operation::Batch(cmds),
        }
    })
}

/// Hands every waiting write its own result.
fn answer<E>(
    outcome: Result<Result<ClientWriteResponse<TypeConfig>, ClientWriteError<NodeId, Member>>, E>,
    replies: Vec<oneshot::Sender<Result<Written, Status>>>,
) {
    let resp = match outcome {
        Ok(Ok(resp)) => resp,
        Ok(Err(ClientWriteError::ForwardToLeader(f))) => return fail(replies, redirect(&f)),
        Ok(Err(ClientWriteError::ChangeMembershipError(e))) => {
            return fail(replies, Status::failed_precondition(e.to_string()))
        }
        Err(_) => {
            return fail(
                replies,
                Status::unavailable("raft stopped before answering the write"),
            )
        }
    };
    let responses: Vec<CommandResponse> = match resp.data.outcome {
        Outcome::Batch(each) if replies.len() > 1 => each,
        _ => vec![resp.data],
    };
    if responses.len() != replies.len() {
        let msg = format!(
            "a batch of {} writes produced {} responses",
            replies.len(),
            responses.len()
        );
        return fail(replies, internal(msg));
    }
    for (reply, response) in replies.into_iter().zip(responses) {
        let _ = reply.send(Ok(Written {
            log_id: resp.log_id,
            response,
        }));
    }
}

fn fail(replies: Vec<oneshot::Sender<Result<Written, Status>>>, status: Status) {
    for r in replies {
        let _ = r.send(Err(status.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch whose entry openraft never answers (purged by a snapshot after this node
    /// lost leadership) must still free its permit: the wait ends when the term changes.
    #[tokio::test]
    async fn a_lost_leadership_ends_the_wait_for_an_answer() {
        // Metrics lagging a fresh election: still candidate, then leader, in term 3.
        let mut leading = RaftMetrics::<NodeId, Member>::new_initial(1);
        leading.current_term = 3;
        leading.state = ServerState::Candidate;
        let (tx, mut rx) = watch::channel(leading.clone());
        let waiting = tokio::spawn(async move { leadership_lost(&mut rx, 3).await });
        leading.state = ServerState::Leader;
        tx.send(leading.clone()).unwrap();
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(
            !waiting.is_finished(),
            "a lagging metric is not a lost leadership"
        );
        let mut deposed = leading;
        deposed.current_term = 4;
        deposed.state = ServerState::Follower;
        tx.send(deposed).unwrap();
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the wait ends once leadership is lost")
            .unwrap();
    }
}
