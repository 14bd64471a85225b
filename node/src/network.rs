//! Outgoing peer RPCs: openraft's `RaftNetworkFactory` over our gRPC Raft service. Each
//! openraft message is encoded with postcard into a `RaftPayload`; the remote result
//! (including openraft's own errors) comes back the same way. AppendEntries go over one
//! long-lived stream per peer link (`append_stream.rs`), votes and snapshots as unary
//! RPCs. AppendEntries batches are cut to a byte budget (a partial success tells
//! openraft how far the follower got).

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use reprise_api::limits::{APPEND_ENTRIES_BYTES_MAX, GRPC_MESSAGE_BYTES_MAX};
use reprise_api::pb::raft::raft_client::RaftClient;
use reprise_api::pb::raft::RaftPayload;
use reprise_storage::command::entry_payload_bytes;
use reprise_storage::types::{Entry, LogId};
use reprise_storage::{Member, NodeId, TypeConfig};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::{Channel, Endpoint};

use crate::append_stream::AppendStream;
use crate::partition::Partition;

/// How long openraft waits before retrying a peer it could not reach (its default is
/// 500 ms). A restarted peer is heard from again this much sooner; a dead one costs one
/// refused or timed-out connection attempt per period.
pub const PEER_RETRY: Duration = Duration::from_millis(100);

/// Makes one client per peer.
#[derive(Clone, Default)]
pub struct PeerNetwork {
    partition: Arc<Partition>,
}

impl PeerNetwork {
    /// A network whose outgoing links obey `partition` (the chaos seam).
    pub fn new(partition: Arc<Partition>) -> Self {
        PeerNetwork { partition }
    }
}

/// Connection to one peer.
pub struct PeerClient {
    target: NodeId,
    member: Member,
    channel: Result<Channel, String>,
    partition: Arc<Partition>,
    /// The AppendEntries stream, opened by the first AppendEntries and after any failure.
    append: Option<AppendStream>,
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
            partition: self.partition.clone(),
            append: None,
        }
    }
}

type RpcResult<T, E> = Result<T, RPCError<NodeId, Member, RaftError<NodeId, E>>>;

impl PeerClient {
    /// Refuses a message to a peer cut off by an injected partition; otherwise the channel.
    // The error is openraft's `RPCError`, which every `RaftNetwork` method returns.
    #[allow(clippy::result_large_err)]
    fn link<E: std::error::Error>(&self) -> RpcResult<Channel, E> {
        if self.partition.blocks_to(self.target) {
            let cut = std::io::Error::other(format!(
                "node {} at {}: link cut by an injected partition",
                self.target, self.member.addr
            ));
            return Err(RPCError::Unreachable(Unreachable::new(&cut)));
        }
        self.channel
            .clone()
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&std::io::Error::other(e))))
    }

    /// The peer's result, decoded from a reply's payload.
    #[allow(clippy::result_large_err)]
    fn result<Resp, E>(&self, data: &[u8]) -> RpcResult<Resp, E>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let result: Result<Resp, RaftError<NodeId, E>> =
            postcard::from_bytes(data).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.member.clone(),
                e,
            ))
        })
    }

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
        let channel = self.link()?;
        let data = reprise_storage::encoding::to_exact_vec(req)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut client = RaftClient::new(channel)
            .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX);
        let mut request = tonic::Request::new(RaftPayload { data });
        request.set_timeout(timeout);
        let reply = match method {
            Method::Vote => client.vote(request).await,
            Method::Snapshot => client.install_snapshot(request).await,
        };
        let payload = reply.map_err(|s| self.transport_error(s))?.into_inner();
        self.result(&payload.data)
    }

    /// One AppendEntries over the peer's stream, opening it first when there is none.
    async fn send_append(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        timeout: Duration,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, openraft::error::Infallible> {
        let channel = self.link()?;
        let deadline = tokio::time::Instant::now() + timeout;
        // Taken out while the call is out: an error, or this future being dropped before
        // the reply came, drops the stream with it.
        let mut stream = match self.append.take() {
            Some(stream) if stream.usable() => stream,
            _ => AppendStream::open(channel, timeout)
                .await
                .map_err(|s| self.transport_error(s))?,
        };
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let reply = stream
            .call(rpc, left)
            .await
            .map_err(|s| self.transport_error(s))?;
        self.append = Some(stream);
        if !reply.refused.is_empty() {
            let e = std::io::Error::other(format!(
                "node {} at {}: {}",
                self.target, self.member.addr, reply.refused
            ));
            return Err(RPCError::Unreachable(Unreachable::new(&e)));
        }
        self.result(&reply.data)
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

/// Cuts `entries` to the longest prefix within `budget` bytes (at least one entry).
/// Returns the last kept log id when entries were cut.
fn keep_byte_budget(entries: &mut Vec<Entry>, budget: usize) -> Option<LogId> {
    let mut total = 0;
    let mut keep = 0;
    for e in entries.iter() {
        total += entry_payload_bytes(e);
        if keep > 0 && total > budget {
            break;
        }
        keep += 1;
    }
    if keep == entries.len() {
        return None;
    }
    entries.truncate(keep);
    entries.last().map(|e| e.log_id)
}

#[derive(Clone, Copy)]
enum Method {
    Vote,
    Snapshot,
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, openraft::error::Infallible> {
        let mut rpc = rpc;
        let sent_prefix = keep_byte_budget(&mut rpc.entries, APPEND_ENTRIES_BYTES_MAX);
        let resp = self.send_append(rpc, option.hard_ttl()).await?;
        // Only a prefix went out: the follower's success covers that prefix alone.
        Ok(match (resp, sent_prefix) {
            (AppendEntriesResponse::Success, Some(last)) => {
                AppendEntriesResponse::PartialSuccess(Some(last))
            }
            (other, _) => other,
        })
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

    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(PEER_RETRY))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::CommittedLeaderId;
    use openraft::EntryPayload;
    use reprise_storage::command::{Command, Operation};

    fn put(index: u64, value_bytes: usize) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Command {
                hlc: index,
                op: Operation::Put {
                    key: b"k".to_vec(),
                    value: vec![0; value_bytes].into(),
                },
            }),
        }
    }

    #[test]
    fn big_batches_are_cut_to_the_byte_budget_but_never_to_nothing() {
        let mut entries: Vec<Entry> = (1..=100).map(|i| put(i, 64 * 1024)).collect();
        let last = keep_byte_budget(&mut entries, 1024 * 1024);
        assert_eq!(entries.len(), 15, "15 x (64 KiB + overhead) fit in 1 MiB");
        assert_eq!(last.map(|l| l.index), Some(15));
        let mut one = vec![put(1, 4 * 1024 * 1024)];
        assert_eq!(keep_byte_budget(&mut one, 1024 * 1024), None);
        assert_eq!(
            one.len(),
            1,
            "an entry larger than the budget still goes alone"
        );
        let mut small: Vec<Entry> = (1..=512).map(|i| put(i, 100)).collect();
        assert_eq!(keep_byte_budget(&mut small, 1024 * 1024), None);
        assert_eq!(small.len(), 512);
    }
}
