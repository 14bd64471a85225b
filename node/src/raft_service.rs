//! Incoming peer RPCs: decodes openraft messages from `RaftPayload`s, hands them to the
//! local Raft, and encodes the whole result (success or openraft error) back. RPCs from a
//! peer cut off by an injected partition are refused, and so are votes while this node
//! holds a read lease (`read_index.rs`). Leader messages (AppendEntries, InstallSnapshot)
//! pass the campaign gate, which orders them against triggered campaigns. AppendEntries
//! arrive on a long-lived stream per peer link (`AppendStream`), served one at a time in
//! order, or as unary RPCs; both are served alike.

use std::sync::Arc;

use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest, VoteResponse};
use openraft::Vote;
use reprise_api::pb::raft::raft_server::Raft as RaftRpc;
use reprise_api::pb::raft::RaftPayload;
use reprise_api::pb::raft::{AppendFrame, AppendReply};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use reprise_storage::{NodeId, TypeConfig};

use crate::campaign_gate::CampaignGate;
use crate::partition::Partition;
use crate::read_index::ReadBatcher;
use crate::rejoin::LeaderHeard;
use crate::Raft;

/// The peer Raft gRPC service.
#[derive(Clone)]
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

    /// Serves one encoded AppendEntries request; the encoded result.
    async fn serve_append(&self, data: &[u8]) -> Result<Vec<u8>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = decode(data)?;
        self.admit(&rpc.vote)?;
        let result = self
            .campaign_gate
            .deliver(self.raft.append_entries(rpc))
            .await;
        self.leader_heard.answered(&result);
        encode(&result)
    }

    /// Serves the requests of one append stream in order until the sender ends it.
    async fn serve_append_stream(
        self,
        mut frames: Streaming<AppendFrame>,
        replies: mpsc::Sender<Result<AppendReply, Status>>,
    ) {
        while let Ok(Some(frame)) = frames.message().await {
            let reply = match self.serve_append(&frame.data).await {
                Ok(data) => Ok(AppendReply {
                    seq: frame.seq,
                    data,
                    refused: String::new(),
                }),
                Err(status) if status.code() == tonic::Code::Unavailable => Ok(AppendReply {
                    seq: frame.seq,
                    data: Vec::new(),
                    refused: status.message().to_string(),
                }),
                Err(status) => Err(status),
            };
            let failed = reply.is_err();
            if replies.send(reply).await.is_err() || failed {
                return;
            }
        }
    }
}

fn decode<T: DeserializeOwned>(data: &[u8]) -> Result<T, Status> {
    postcard::from_bytes(data)
        .map_err(|e| Status::invalid_argument(format!("undecodable raft message: {e}")))
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, Status> {
    reprise_storage::encoding::to_exact_vec(value)
        .map_err(|e| Status::internal(format!("encode raft reply: {e}")))
}

fn reply<T: Serialize>(value: &T) -> Result<Response<RaftPayload>, Status> {
    encode(value).map(|data| Response::new(RaftPayload { data }))
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
    type AppendStreamStream = ReceiverStream<Result<AppendReply, Status>>;

    async fn append_entries(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        self.serve_append(&req.into_inner().data)
            .await
            .map(|data| Response::new(RaftPayload { data }))
    }

    async fn append_stream(
        &self,
        req: Request<Streaming<AppendFrame>>,
    ) -> Result<Response<Self::AppendStreamStream>, Status> {
        let (replies, out) = mpsc::channel(1);
        tokio::spawn(self.clone().serve_append_stream(req.into_inner(), replies));
        Ok(Response::new(ReceiverStream::new(out)))
    }

    async fn vote(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let rpc: VoteRequest<NodeId> = decode(&req.into_inner().data)?;
        self.admit(&rpc.vote)?;
        // Held until Raft answered: no round overlapping this vote wins a lease.
        let Some(_admitted) = self.reads.admit_vote() else {
            let vote = self.raft.metrics().borrow().vote;
            let refused: Result<VoteResponse<NodeId>, openraft::error::RaftError<NodeId>> =
                Ok(VoteResponse::new(vote, None, false));
            return reply(&refused);
        };
        let result = self.raft.vote(rpc).await;
        reply(&result)
    }

    async fn install_snapshot(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let rpc: InstallSnapshotRequest<TypeConfig> = decode(&req.into_inner().data)?;
        self.admit(&rpc.vote)?;
        let result = self
            .campaign_gate
            .deliver(self.raft.install_snapshot(rpc))
            .await;
        reply(&result)
    }
}
