//! What every service of a node shares: its id and address, the Raft handle, the read
//! view of the state machine and the HLC; plus the mapping of openraft's "not leader"
//! errors to the protocol's redirect answer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use openraft::error::ForwardToLeader;
use reprise_api::redirect::not_leader;
use reprise_storage::command::{CommandResponse, Operation};
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
    /// The clock behind `hlc`; chaos shifts it to inject skew.
    pub clock: Arc<crate::hlc::SystemClock>,
    /// Highest stamp in the local log (see `LogStore::hlc_watermark`).
    pub log_hlc: Arc<std::sync::atomic::AtomicU64>,
    /// Held while a write is stamped and handed to openraft, so stamps follow log order.
    pub propose: tokio::sync::Mutex<()>,
    /// Writes go through the proposer (`proposer`), which batches concurrent ones.
    pub proposals: crate::proposer::ProposalSender,
    /// Set by the leader while it hands leadership over: writes are refused meanwhile.
    pub transferring: AtomicBool,
    /// A deliberately broken behaviour for checker tests (see `planted`); None in production.
    pub planted_bug: Option<crate::planted::PlantedBug>,
    /// The in-memory log (for the archiver).
    pub log: reprise_storage::log::store::LogReader,
    /// The state machine's snapshot directory (shared: opening it again would remove
    /// partial files that may be in use).
    pub snapshots: Arc<reprise_storage::snapshot::SnapshotDir>,
    /// Highest log index recorded as archived (applied `ArchiveMark`s).
    pub archived: Arc<std::sync::atomic::AtomicU64>,
    /// Whether this node runs the log archive when leader.
    pub archive_enabled: bool,
    pub archive_status: crate::archiver::SharedArchiveStatus,
    /// Peer links cut by chaos (see `partition`); empty in production.
    pub partition: Arc<crate::partition::Partition>,
    /// Shared read-index rounds for linearizable reads.
    pub reads: Arc<crate::read_index::ReadBatcher>,
    /// Orders leader messages against campaigns this node is asked for (leader transfer).
    pub campaign_gate: Arc<crate::campaign_gate::CampaignGate>,
    /// Held while a snapshot backup is taken: scheduled, requested and archive-restart
    /// backups at one index would otherwise write the same shard files at once.
    pub backup_lock: tokio::sync::Mutex<()>,
}

/// A committed and applied write.
pub struct Written {
    pub log_id: LogId,
    pub response: CommandResponse,
}

impl NodeState {
    /// Where this node keeps backup shards and manifests (served by its Backup service).
    pub fn shard_dir(&self) -> std::path::PathBuf {
        self.data_dir.join("backups")
    }

    /// Stamps `op` with the HLC and commits it through Raft (durable on a quorum, applied
    /// here) before returning. Concurrent writes may share one log entry (a batch).
    pub async fn write(self: &Arc<Self>, op: Operation) -> Result<Written, Status> {
        if self.transferring.load(Ordering::Acquire) {
            return Err(not_leader(None));
        }
        // The proposer stamps and submits (batching concurrent writes into one entry).
        let (reply, answered) = tokio::sync::oneshot::channel();
        self.proposals
            .send(crate::proposer::Proposal { op, reply })
            .await
            .map_err(|_| Status::unavailable("the node is shutting down"))?;
        answered
            .await
            .map_err(|_| Status::unavailable("the node stopped before answering the write"))?
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
