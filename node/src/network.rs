//! Outgoing peer RPCs: openraft's `RaftNetworkFactory` over our gRPC Raft service. Each
//! openraft message is encoded with postcard into a `RaftPayload`; the remote result
//! (including openraft's own errors) comes back the same way.

use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use reprise_api::limits::GRPC_MESSAGE_BYTES_MAX;
use reprise_api::pb::raft::raft_client::RaftClient;
use reprise_api::pb::raft::RaftPayload;
use reprise_storage::{Member, NodeId, TypeConfig};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::{Channel, Endpoint};

/// Makes one client per peer.
#[derive(Clone, Default)]
pub struct PeerNetwork;

/// Connection to one peer.
pub struct PeerClient {
    target: NodeId,
    member: Member,
    channel: Result<Channel, String>,
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> PeerClient {
        let channel = Endpoint::from_shared(format!("http://{}", node.addr))
            .map(|e| {
                e.connect_timeout(Duration::from_millis(300))
                    .tcp_nodelay(true)
                    .http2_keep_alive_interval(Duration::from_secs(5))
                    .connect_lazy()
            })
            .map_err(|e| format!("bad peer address {}: {e}", node.addr));
        PeerClient {
            target,
            member: node.clone(),
            channel,
        }
    }
}

type RpcResult<T, E> = Result<T, RPCError<NodeId, Member, RaftError<NodeId, E>>>;

impl PeerClient {
    async fn send<Req, Resp, E>(
        &self,
        method: Method,
        req: &Req,
        timeout: Duration,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let channel = self
            .channel
            .clone()
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&std::io::Error::other(e))))?;
        let data =
            postcard::to_allocvec(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut client = RaftClient::new(channel)
            .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX);
        let mut request = tonic::Request::new(RaftPayload { data });
        request.set_timeout(timeout);
        let reply = match method {
            Method::Append => client.append_entries(request).await,
            Method::Vote => client.vote(request).await,
            Method::Snapshot => client.install_snapshot(request).await,
        };
        let payload = reply.map_err(|s| self.transport_error(s))?.into_inner();
        let result: Result<Resp, RaftError<NodeId, E>> = postcard::from_bytes(&payload.data)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.member.clone(),
                e,
            ))
        })
    }

    fn transport_error<E: std::error::Error>(
        &self,
        status: tonic::Status,
    ) -> RPCError<NodeId, Member, RaftError<NodeId, E>> {
        let e = std::io::Error::other(format!(
            "node {} at {}: {}",
            self.target,
            self.member.addr,
            status.message()
        ));
        if status.code() == tonic::Code::Unavailable {
            RPCError::Unreachable(Unreachable::new(&e))
        } else {
            RPCError::Network(NetworkError::new(&e))
        }
    }
}

#[derive(Clone, Copy)]
enum Method {
    Append,
    Vote,
    Snapshot,
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, openraft::error::Infallible> {
        self.send(Method::Append, &rpc, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.send(Method::Snapshot, &rpc, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, openraft::error::Infallible> {
        self.send(Method::Vote, &rpc, option.hard_ttl()).await
    }
}
