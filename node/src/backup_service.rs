//! The backup gRPC service: stores and serves shard files and manifests for this node's
//! site, and (on the leader) creates backups.

use std::sync::Arc;

use std::sync::atomic::Ordering;
use std::time::Duration;

use reprise_api::pb::backup as pb;
use reprise_api::pb::backup::backup_server::Backup;
use reprise_api::pb::backup::*;
use reprise_storage::backup::manifest::Manifest;
use reprise_storage::backup::s3::S3Store;
use reprise_storage::backup::shard_store::{ShardStore, ShardStoreError, ShardWriter};
use reprise_storage::backup::target::{BackupStore, BackupTargets, TargetSpec};
use reprise_storage::command::Operation;
use tokio::io::AsyncReadExt;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use crate::backup_create::{create_backup, BackupProgress};
use crate::state::{internal, NodeState};

/// How often `CreateBackupWatch` reports progress.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);

/// Bytes per GetShards message.
const READ_CHUNK_BYTES: usize = 1024 * 1024;

/// The `Backup` service of one node.
pub struct BackupService {
    pub state: Arc<NodeState>,
}

fn store_err(e: ShardStoreError) -> Status {
    match e {
        ShardStoreError::BadName(_) => Status::invalid_argument(e.to_string()),
        other => internal(other),
    }
}

/// Writes one received chunk on a blocking thread: a write may wait for the disk (the
/// shard file is flushed as it grows). A failed write discards the file.
async fn write_shard(mut writer: ShardWriter, data: Vec<u8>) -> Result<ShardWriter, Status> {
    tokio::task::spawn_blocking(move || match writer.write(&data) {
        Ok(()) => Ok(writer),
        Err(e) => {
            writer.discard();
            Err(store_err(e))
        }
    })
    .await
    .map_err(internal)?
}

fn shard_index(shard: u32) -> Result<u8, Status> {
    u8::try_from(shard)
        .map_err(|_| Status::invalid_argument(format!("shard index {shard} is over 255")))
}

impl BackupService {
    fn store(&self) -> ShardStore {
        ShardStore::new(&self.state.shard_dir())
    }
}

#[tonic::async_trait]
impl Backup for BackupService {
    async fn create_backup(
        &self,
        req: Request<CreateBackupRequest>,
    ) -> Result<Response<BackupManifest>, Status> {
        let manifest =
            create_backup(&self.state, req.into_inner(), &BackupProgress::default()).await?;
        Ok(Response::new(BackupManifest {
            json: manifest.to_json(),
        }))
    }

    type CreateBackupWatchStream = ReceiverStream<Result<pb::BackupProgress, Status>>;

    async fn create_backup_watch(
        &self,
        req: Request<CreateBackupRequest>,
    ) -> Result<Response<Self::CreateBackupWatchStream>, Status> {
        let req = req.into_inner();
        // Not the leader, or no valid placement: answer now, so the client can follow.
        crate::backup_create::placement(&self.state, &req)?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let progress = BackupProgress::default();
        let state = self.state.clone();
        tokio::spawn(async move {
            let watched = progress.clone();
            let backup = create_backup(&state, req, &watched);
            tokio::pin!(backup);
            let mut tick = tokio::time::interval(PROGRESS_INTERVAL);
            let done = loop {
                tokio::select! {
                    done = &mut backup => break done,
                    _ = tick.tick() => {
                        let update = pb::BackupProgress {
                            bytes_total: progress.total.load(Ordering::Relaxed),
                            bytes_encoded: progress.encoded.load(Ordering::Relaxed),
                            manifest_json: String::new(),
                        };
                        // A slow or vanished client never holds the backup up.
                        let _ = tx.try_send(Ok(update));
                    }
                }
            };
            let last = done.map(|m| pb::BackupProgress {
                bytes_total: progress.total.load(Ordering::Relaxed),
                bytes_encoded: progress.encoded.load(Ordering::Relaxed),
                manifest_json: m.to_json(),
            });
            let _ = tx.send(last).await;
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn get_backup_config(
        &self,
        _req: Request<pb::GetBackupConfigRequest>,
    ) -> Result<Response<pb::BackupConfig>, Status> {
        let config = self.state.view.cluster_config().map_err(internal)?;
        let json = serde_json::to_string(&config).map_err(internal)?;
        Ok(Response::new(pb::BackupConfig { json }))
    }

    async fn set_backup_targets(
        &self,
        req: Request<pb::BackupTargetsJson>,
    ) -> Result<Response<pb::SetBackupTargetsResponse>, Status> {
        let targets: BackupTargets = serde_json::from_str(&req.into_inner().json)
            .map_err(|e| Status::invalid_argument(format!("backup targets: {e}")))?;
        let metrics = self.state.raft.metrics().borrow().clone();
        let mut sites: Vec<String> = metrics
            .membership_config
            .membership()
            .nodes()
            .map(|(_, m)| m.site.clone())
            .collect();
        sites.sort();
        sites.dedup();
        targets
            .validate(&sites)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        check_buckets(&targets, &self.state.raft.config().cluster_name).await?;
        let written = self
            .state
            .write(Operation::SetBackupTargets(targets))
            .await?;
        Ok(Response::new(pb::SetBackupTargetsResponse {
            log_index: written.log_id.index,
        }))
    }

    async fn put_shards(
        &self,
        req: Request<Streaming<ShardChunk>>,
    ) -> Result<Response<PutShardsResponse>, Status> {
        let mut stream = req.into_inner();
        let first = stream
            .next()
            .await
            .ok_or_else(|| Status::invalid_argument("empty shard stream"))??;
        let mut writer = self
            .store()
            .create_shard(&first.backup_id, first.object_id, shard_index(first.shard)?)
            .map_err(store_err)?;
        let mut complete = first.last;
        writer = write_shard(writer, first.data).await?;
        while !complete {
            match stream.next().await {
                Some(Ok(chunk)) => {
                    complete = chunk.last;
                    writer = write_shard(writer, chunk.data).await?;
                }
                Some(Err(status)) => {
                    writer.discard();
                    return Err(status);
                }
                None => {
                    writer.discard();
                    return Err(Status::aborted(format!(
                        "shard {} of {} was cut off before its end; discarded",
                        first.shard, first.backup_id
                    )));
                }
            }
        }
        let (bytes, crc32c) = tokio::task::spawn_blocking(move || writer.finish())
            .await
            .map_err(internal)?
            .map_err(store_err)?;
        Ok(Response::new(PutShardsResponse { bytes, crc32c }))
    }

    type GetShardsStream = ReceiverStream<Result<ShardChunk, Status>>;

    async fn get_shards(
        &self,
        req: Request<GetShardsRequest>,
    ) -> Result<Response<Self::GetShardsStream>, Status> {
        let req = req.into_inner();
        let path = self
            .store()
            .shard_path(&req.backup_id, req.object_id, shard_index(req.shard)?)
            .map_err(store_err)?;
        let mut file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| Status::not_found(format!("shard file {}: {e}", path.display())))?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let mut buf = vec![0u8; READ_CHUNK_BYTES];
            loop {
                let n = match file.read(&mut buf).await {
                    Ok(0) => return,
                    Ok(n) => n,
                    Err(e) => {
                        let _ = tx
                            .send(Err(Status::internal(format!(
                                "read {}: {e}",
                                path.display()
                            ))))
                            .await;
                        return;
                    }
                };
                let chunk = ShardChunk {
                    backup_id: req.backup_id.clone(),
                    object_id: req.object_id,
                    shard: req.shard,
                    data: buf[..n].to_vec(),
                    last: false,
                };
                if tx.send(Ok(chunk)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn put_manifest(
        &self,
        req: Request<BackupManifest>,
    ) -> Result<Response<PutManifestResponse>, Status> {
        let json = req.into_inner().json;
        let manifest = reprise_storage::backup::manifest::Manifest::from_json(&json)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let store = self.store();
        tokio::task::spawn_blocking(move || store.put_manifest(&manifest.backup_id, &json))
            .await
            .map_err(internal)?
            .map_err(store_err)?;
        Ok(Response::new(PutManifestResponse {}))
    }

    async fn delete_backups(
        &self,
        req: Request<DeleteBackupsRequest>,
    ) -> Result<Response<DeleteBackupsResponse>, Status> {
        let ids = req.into_inner().backup_ids;
        let store = self.store();
        let deleted = tokio::task::spawn_blocking(move || {
            let mut deleted = 0;
            for id in &ids {
                if store.delete(id)? {
                    deleted += 1;
                }
            }
            Ok::<_, ShardStoreError>(deleted)
        })
        .await
        .map_err(internal)?
        .map_err(store_err)?;
        Ok(Response::new(DeleteBackupsResponse { deleted }))
    }

    async fn list_backups(
        &self,
        _req: Request<ListBackupsRequest>,
    ) -> Result<Response<ListBackupsResponse>, Status> {
        let store = self.store();
        let held = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            for (id, shards) in store.list()? {
                let manifest_json = store.manifest(&id).ok().flatten().unwrap_or_default();
                let shards = shards
                    .into_iter()
                    .map(|s| ShardFile {
                        object_id: s.object_id,
                        shard: u32::from(s.shard),
                        bytes: s.bytes,
                    })
                    .collect();
                out.push(HeldBackup {
                    backup_id: id,
                    manifest_json,
                    shards,
                });
            }
            Ok::<_, ShardStoreError>(out)
        })
        .await
        .map_err(internal)?
        .map_err(store_err)?;
        Ok(Response::new(ListBackupsResponse {
            node_id: self.state.id,
            site: self.state.member.site.clone(),
            backups: held,
        }))
    }
}

/// Before a bucket becomes a target: it must answer with these credentials, and its prefix
/// must not hold another cluster's backups (backup ids restart in a new epoch, so two
/// clusters sharing a prefix could overwrite each other's backups).
async fn check_buckets(targets: &BackupTargets, cluster: &str) -> Result<(), Status> {
    for (site, specs) in &targets.sites {
        for spec in specs {
            let TargetSpec::S3(s) = spec else { continue };
            let store = S3Store::new(s).map_err(|e| Status::invalid_argument(e.to_string()))?;
            let held = store.list().await.map_err(|e| {
                Status::failed_precondition(format!("site {site}: cannot list the bucket: {e}"))
            })?;
            let other = held
                .iter()
                .filter_map(|b| b.manifest_json.as_deref())
                .filter_map(|j| Manifest::from_json(j).ok())
                .find(|m| m.cluster_name != cluster);
            if let Some(m) = other {
                return Err(Status::failed_precondition(format!(
                    "site {site}: {} already holds backups of cluster {:?} (e.g. {}); give this cluster its own prefix",
                    store.describe(),
                    m.cluster_name,
                    m.backup_id
                )));
            }
        }
    }
    Ok(())
}
