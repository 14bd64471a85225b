//! openraft's network between simulated nodes: each RPC is one [`wire::call`] over
//! turmoil's TCP, so partitions, held links and latency are turmoil's. The simulation never
//! snapshots (the log is never purged), so InstallSnapshot is refused, loudly.

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use reprise_storage::{Member, NodeId, TypeConfig};

use super::wire::{self, CallError, Request, Response};

/// openraft's result taken out of an answer, or a description of an answer of another kind.
type Answer<T> = Result<Result<T, RaftError<NodeId>>, String>;

type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<NodeId, Member, RaftError<NodeId, E>>>;

/// Makes one [`SimPeer`] per target.
#[derive(Clone, Default)]
pub struct SimNetwork;

/// Link to one simulated peer.
pub struct SimPeer {
    target: NodeId,
    member: Member,
}

impl RaftNetworkFactory<TypeConfig> for SimNetwork {
    type Network = SimPeer;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> SimPeer {
        SimPeer {
            target,
            member: node.clone(),
        }
    }
}

impl SimPeer {
    /// Sends `req` and takes openraft's result out of the answer with `expect`, which
    /// describes any answer of the wrong kind.
    async fn rpc<T>(
        &self,
        req: Request,
        option: &RPCOption,
        expect: fn(Response) -> Answer<T>,
    ) -> RpcResult<T> {
        let resp = match wire::call(&wire::host_name(self.target), &req, option.hard_ttl()).await {
            Ok(resp) => resp,
            Err(e @ CallError::NotSent { .. }) => {
                return Err(RPCError::Unreachable(Unreachable::new(&e)))
            }
            Err(e @ CallError::NoAnswer { .. }) => {
                return Err(RPCError::Network(NetworkError::new(&e)))
            }
        };
        match expect(resp) {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.member.clone(),
                e,
            ))),
            Err(other) => {
                let e = std::io::Error::other(format!("node {} answered {other}", self.target));
                Err(RPCError::Network(NetworkError::new(&e)))
            }
        }
    }
}

impl RaftNetwork<TypeConfig> for SimPeer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        self.rpc(Request::Append(rpc), &option, |r| match r {
            Response::Append(result) => Ok(result),
            other => Err(format!("{other:?}")),
        })
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        self.rpc(Request::Vote(rpc), &option, |r| match r {
            Response::Vote(result) => Ok(result),
            other => Err(format!("{other:?}")),
        })
        .await
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        let e = std::io::Error::other("the simulation does not transfer snapshots");
        Err(RPCError::Unreachable(Unreachable::new(&e)))
    }
}
