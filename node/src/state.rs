//! What every service of a node shares: its id and address, the Raft handle, the read
//! view of the state machine and the HLC; plus the mapping of openraft's "not leader"
//! errors to the protocol's redirect answer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use openraft::error::{ClientWriteError, ForwardToLeader, RaftError};
use reprise_api::redirect::not_leader;
use reprise_storage::command::{Command, CommandResponse, Operation};
use reprise_storage::types::{LogId, StoredMembership};
use reprise_storage::{KvView, Member, NodeId};
use tonic::Status;

use crate::hlc::Hlc;
use crate::Raft;

/// Shared state of a running node.
pub struct NodeState {
    pub id: NodeId,
    /// The node's data directory (log, state machine, snapshots, backup shards).
    pub data_dir: std::path::PathBuf,
    pub member: Member,
    pub raft: Raft,
    pub view: KvView,
    pub hlc: Hlc,
    /// Set by the leader while it hands leadership over: writes are refused meanwhile.
    pub transferring: AtomicBool,
    /// A deliberately broken behaviour for checker tests (see `planted`); None in production.
    pub planted_bug: Option<crate::planted::PlantedBug>,
}

/// A committed and applied write.
pub struct Written {
    pub log_id: LogId,
    pub response: CommandResponse,
}

impl NodeState {
    /// Stamps `op` with the HLC and commits it through Raft (durable on a quorum, applied
    /// here) before returning.
    pub async fn write(self: &Arc<Self>, op: Operation) -> Result<Written, Status> {
        if self.transferring.load(Ordering::Acquire) {
            return Err(not_leader(None));
        }
        let floor = self.view.last_hlc().map_err(internal)?;
        let cmd = Command {
            hlc: self.hlc.stamp(floor),
            op,
        };
        match self.raft.client_write(cmd).await {
            Ok(resp) => Ok(Written {
                log_id: resp.log_id,
                response: resp.data,
            }),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => Err(redirect(&f)),
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
                Err(Status::failed_precondition(e.to_string()))
            }
            Err(RaftError::Fatal(f)) => Err(Status::unavailable(format!("raft stopped: {f}"))),
        }
    }
}

/// The protocol's not-leader answer for openraft's forward-to-leader error.
pub fn redirect(f: &ForwardToLeader<NodeId, Member>) -> Status {
    match (f.leader_id, &f.leader_node) {
        (Some(id), Some(node)) => not_leader(Some((id, &node.addr))),
        _ => not_leader(None),
    }
}

/// The not-leader answer naming `leader` when the membership knows its address.
pub fn redirect_to(leader: Option<NodeId>, membership: &StoredMembership) -> Status {
    match leader.and_then(|id| {
        membership
            .membership()
            .get_node(&id)
            .map(|n| (id, n.addr.clone()))
    }) {
        Some((id, addr)) => not_leader(Some((id, &addr))),
        None => not_leader(None),
    }
}

/// An internal error as a gRPC status (logged once, here).
pub fn internal(e: impl std::fmt::Display) -> Status {
    tracing::error!(error = %e, "internal error serving a request");
    Status::internal(e.to_string())
}
