//! Incoming peer RPCs: decodes openraft messages from `RaftPayload`s, hands them to the
//! local Raft, and encodes the whole result (success or openraft error) back. RPCs from a
//! peer cut off by an injected partition are refused, and so are votes while this node
//! holds a read lease (`read_index.rs`). Leader messages (AppendEntries, InstallSnapshot)
//! pass the campaign gate, which orders them against triggered campaigns.

use std::sync::Arc;

use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest, VoteResponse};
use openraft::Vote;
use reprise_api::pb::raft::raft_server::Raft as RaftRpc;
use reprise_api::pb::raft::RaftPayload;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};

use reprise_storage::{NodeId, TypeConfig};

use crate::campaign_gate::CampaignGate;
use crate::partition::Partition;
use crate::read_index::ReadBatcher;
use crate::rejoin::LeaderHeard;
use crate::Raft;

/// The peer Raft gRPC service.
pub struct RaftService {
    pub raft: Raft,
    pub partition: Arc<Partition>,
    /// Told about every AppendEntries answered (quiet rejoin, `rejoin.rs`).
    pub leader_heard: Arc<LeaderHeard>,
    /// Asked before granting a vote: a lease holder refuses every vote.
    pub reads: Arc<ReadBatcher>,
    /// Every leader message is stamped and handed to Raft through it (`campaign_gate.rs`).
    pub campaign_gate: Arc<CampaignGate>,
}

impl RaftService {
    /// Refuses an RPC whose sender (the node in its vote) is cut off by a partition.
    fn admit(&self, vote: &Vote<NodeId>) -> Result<(), Status> {
        match vote.leader_id().voted_for() {
            Some(sender) if self.partition.blocks_from(sender) => Err(Status::unavailable(
                format!("link from node {sender} cut by an injected partition"),
            )),
            _ => Ok(()),
        }
    }
}

fn decode<T: DeserializeOwned>(req: Request<RaftPayload>) -> Result<T, Status> {
    postcard::from_bytes(&req.into_inner().data)
        .map_err(|e| Status::invalid_argument(format!("undecodable raft message: {e}")))
}

fn encode<T: Serialize>(value: &T) -> Result<Response<RaftPayload>, Status> {
    reprise_storage::encoding::to_exact_vec(value)
        .map(|data| Response::new(RaftPayload { data }))
        .map_err(|e| Status::internal(format!("encode raft reply: {e}")))
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn append_entries(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = decode(req)?;
        self.admit(&rpc.vote)?;
        let result = self
            .campaign_gate
            .deliver(self.raft.append_entries(rpc))
            .await;
        self.leader_heard.answered(&result);
        encode(&result)
    }

    async fn vote(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let rpc: VoteRequest<NodeId> = decode(req)?;
        self.admit(&rpc.vote)?;
        // Held until Raft answered: no round overlapping this vote wins a lease.
        let Some(_admitted) = self.reads.admit_vote() else {
            let vote = self.raft.metrics().borrow().vote;
            let refused: Result<VoteResponse<NodeId>, openraft::error::RaftError<NodeId>> =
                Ok(VoteResponse::new(vote, None, false));
            return encode(&refused);
        };
        let result = self.raft.vote(rpc).await;
        encode(&result)
    }

    async fn install_snapshot(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let rpc: InstallSnapshotRequest<TypeConfig> = decode(req)?;
        self.admit(&rpc.vote)?;
        let result = self
            .campaign_gate
            .deliver(self.raft.install_snapshot(rpc))
            .await;
        encode(&result)
    }
}
