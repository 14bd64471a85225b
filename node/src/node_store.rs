//! The embedded default backup target: a node of the site keeps the shards and manifests
//! under its data directory (`backup_service`), reached over the Backup gRPC service.
//! Implements `reprise_storage::backup::target::BackupStore` so backups, retention and
//! restore treat it like any other target. When the node is this process's own, shards
//! go straight into its shard directory: the same files and guarantees as the Backup
//! service's, without a gRPC round trip through the loopback to itself.

use std::path::Path;
use std::time::Duration;

use reprise_api::limits::GRPC_MESSAGE_BYTES_MAX;
use reprise_api::pb::backup::backup_client::BackupClient;
use reprise_api::pb::backup::{
    BackupManifest, DeleteBackupsRequest, GetShardsRequest, ListBackupsRequest, ShardChunk,
};
use reprise_storage::backup::dir_store::DirStore;
use reprise_storage::backup::shard_store::HeldShard;
use reprise_storage::backup::target::{
    forward_chunks, BackupStore, ChunkReceiver, ChunkStream, HeldBackup, Location, Piece,
    StoreFuture, StoredShard, TargetError,
};
use reprise_storage::NodeId;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// A node of a site, as a backup target.
#[derive(Debug, Clone)]
pub struct NodeStore {
    pub node: NodeId,
    pub addr: String,
    /// Deadline of unary calls (list, delete, manifests); streams have none.
    pub rpc_timeout: Duration,
    /// The node's shard directory, when the node is this process: shards are written
    /// there directly.
    local: Option<DirStore>,
}

impl NodeStore {
    pub fn new(node: NodeId, addr: &str) -> Self {
        NodeStore {
            node,
            addr: addr.to_string(),
            rpc_timeout: Duration::from_secs(30),
            local: None,
        }
    }

    /// This process's own node, whose shards live in `shard_dir` (what its Backup
    /// service serves).
    pub fn this_node(node: NodeId, addr: &str, shard_dir: &Path) -> Self {
        NodeStore {
            local: Some(DirStore::new(shard_dir)),
            ..NodeStore::new(node, addr)
        }
    }

    fn unavailable(&self, reason: impl std::fmt::Display) -> TargetError {
        TargetError::Unavailable {
            target: self.describe(),
            reason: reason.to_string(),
        }
    }

    async fn client(&self, unary: bool) -> Result<BackupClient<Channel>, TargetError> {
        let mut endpoint = Endpoint::from_shared(format!("http://{}", self.addr))
            .map_err(|e| self.unavailable(e))?
            .connect_timeout(CONNECT_TIMEOUT)
            // A node that stops answering mid-stream is noticed (streams have no deadline).
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true);
        if unary {
            endpoint = endpoint.timeout(self.rpc_timeout);
        }
        let channel = endpoint.connect().await.map_err(|e| self.unavailable(e))?;
        Ok(BackupClient::new(channel)
            .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX))
    }

    fn status(&self, s: tonic::Status) -> TargetError {
        match s.code() {
            Code::InvalidArgument | Code::FailedPrecondition => TargetError::Refused {
                target: self.describe(),
                reason: s.message().to_string(),
            },
            _ => self.unavailable(s.message()),
        }
    }
}

impl BackupStore for NodeStore {
    fn location(&self) -> Location {
        Location::Node
    }

    fn describe(&self) -> String {
        format!("node {} at {}", self.node, self.addr)
    }

    fn put_shard<'a>(
        &'a self,
        backup_id: &'a str,
        object_id: u64,
        shard: u8,
        chunks: ChunkReceiver,
    ) -> StoreFuture<'a, StoredShard> {
        if let Some(local) = &self.local {
            return local.put_shard(backup_id, object_id, shard, chunks);
        }
        Box::pin(async move {
            let mut client = self.client(false).await?;
            let id = backup_id.to_string();
            let stream = ReceiverStream::new(chunks).map(move |piece| {
                let (data, last) = match piece {
                    Piece::Data(d) => (d, false),
                    Piece::End => (Vec::new(), true),
                };
                ShardChunk {
                    backup_id: id.clone(),
                    object_id,
                    shard: u32::from(shard),
                    data,
                    last,
                }
            });
            let r = client
                .put_shards(stream)
                .await
                .map_err(|s| self.status(s))?
                .into_inner();
            Ok(StoredShard {
                bytes: r.bytes,
                crc32c: r.crc32c,
            })
        })
    }

    fn get_shard<'a>(
        &'a self,
        backup_id: &'a str,
        object_id: u64,
        shard: u8,
    ) -> StoreFuture<'a, Option<ChunkStream>> {
        Box::pin(async move {
            let mut client = self.client(false).await?;
            let req = GetShardsRequest {
                backup_id: backup_id.to_string(),
                object_id,
                shard: u32::from(shard),
            };
            let stream = match client.get_shards(req).await {
                Ok(r) => r.into_inner(),
                Err(s) if s.code() == Code::NotFound => return Ok(None),
                Err(s) => return Err(self.status(s)),
            };
            let me = self.clone();
            let chunks = stream.map(move |item| {
                item.map(|chunk| chunk.data)
                    .map_err(|s| me.unavailable(format!("shard {shard}: {}", s.message())))
            });
            Ok(Some(forward_chunks(chunks)))
        })
    }

    fn put_manifest<'a>(&'a self, _backup_id: &'a str, json: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.client(true)
                .await?
                .put_manifest(BackupManifest {
                    json: json.to_string(),
                })
                .await
                .map_err(|s| self.status(s))?;
            Ok(())
        })
    }

    fn list(&self) -> StoreFuture<'_, Vec<HeldBackup>> {
        Box::pin(async move {
            let resp = self
                .client(true)
                .await?
                .list_backups(ListBackupsRequest {})
                .await
                .map_err(|s| self.status(s))?
                .into_inner();
            Ok(resp
                .backups
                .into_iter()
                .map(|b| HeldBackup {
                    backup_id: b.backup_id,
                    manifest_json: (!b.manifest_json.is_empty()).then_some(b.manifest_json),
                    shards: b
                        .shards
                        .into_iter()
                        .filter_map(|s| {
                            Some(HeldShard {
                                object_id: s.object_id,
                                shard: u8::try_from(s.shard).ok()?,
                                bytes: s.bytes,
                            })
                        })
                        .collect(),
                })
                .collect())
        })
    }

    fn delete<'a>(&'a self, backup_ids: &'a [String]) -> StoreFuture<'a, u32> {
        Box::pin(async move {
            Ok(self
                .client(true)
                .await?
                .delete_backups(DeleteBackupsRequest {
                    backup_ids: backup_ids.to_vec(),
                })
                .await
                .map_err(|s| self.status(s))?
                .into_inner()
                .deleted)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reprise_storage::backup::shard_store::ShardStore;
    use tokio::sync::mpsc;

    /// This node's own shards never touch the network: the address here answers nothing,
    /// yet the shard lands whole in the shard directory, where the Backup service serves
    /// it from; one cut off before its end leaves nothing behind.
    #[tokio::test]
    async fn this_nodes_shards_go_straight_to_its_shard_directory() {
        let dir = tempfile::tempdir().unwrap();
        let store = NodeStore::this_node(1, "127.0.0.1:1", dir.path());
        assert_eq!(store.location(), Location::Node);

        let (tx, rx) = mpsc::channel(4);
        tx.send(Piece::Data(b"first ".to_vec())).await.unwrap();
        tx.send(Piece::Data(b"second".to_vec())).await.unwrap();
        tx.send(Piece::End).await.unwrap();
        let stored = store.put_shard("b-1", 7, 2, rx).await.unwrap();
        assert_eq!(stored.bytes, 12);

        let shards = ShardStore::new(dir.path());
        let path = shards.shard_path("b-1", 7, 2).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"first second");

        let (tx, rx) = mpsc::channel(4);
        tx.send(Piece::Data(b"partial".to_vec())).await.unwrap();
        drop(tx);
        assert!(store.put_shard("b-2", 7, 2, rx).await.is_err());
        assert!(!shards.shard_path("b-2", 7, 2).unwrap().exists());
    }
}
