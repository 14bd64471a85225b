//! A directory as a backup target: storage that belongs to the site but not to any node
//! (the site's NAS, a mounted object-store gateway), reached at the same path by every
//! process that uses it (the leader writing backups, `reprise restore` reading them).
//! Same layout and guarantees as a node's shard store (`shard_store`): shard files appear
//! under their final name only once complete and fsynced; manifests are atomic files.

use std::path::{Path, PathBuf};

use super::shard_store::{ShardStore, ShardStoreError};
use super::target::{
    read_chunks, BackupStore, ChunkReceiver, ChunkStream, HeldBackup, Location, Piece, StoreFuture,
    StoredShard, TargetError,
};

/// A directory of a site, as a backup target.
#[derive(Debug, Clone)]
pub struct DirStore {
    path: PathBuf,
    store: ShardStore,
}

impl DirStore {
    pub fn new(path: &Path) -> Self {
        DirStore {
            path: path.to_path_buf(),
            store: ShardStore::new(path),
        }
    }

    fn failed(&self, e: impl std::fmt::Display) -> TargetError {
        TargetError::Unavailable {
            target: self.describe(),
            reason: e.to_string(),
        }
    }

    fn store_err(&self, e: ShardStoreError) -> TargetError {
        match e {
            ShardStoreError::BadName(_) => TargetError::Refused {
                target: self.describe(),
                reason: e.to_string(),
            },
            other => self.failed(other),
        }
    }

    /// Runs blocking file work off the async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(ShardStore) -> Result<T, ShardStoreError> + Send + 'static,
    ) -> Result<T, TargetError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || work(store))
            .await
            .map_err(|e| self.failed(format!("file task: {e}")))?
            .map_err(|e| self.store_err(e))
    }
}

impl BackupStore for DirStore {
    fn location(&self) -> Location {
        Location::Dir {
            path: self.path.display().to_string(),
        }
    }

    fn describe(&self) -> String {
        format!("directory {}", self.path.display())
    }

    fn put_shard<'a>(
        &'a self,
        backup_id: &'a str,
        object_id: u64,
        shard: u8,
        mut chunks: ChunkReceiver,
    ) -> StoreFuture<'a, StoredShard> {
        Box::pin(async move {
            let id = backup_id.to_string();
            let target = self.describe();
            self.blocking(move |store| {
                let mut writer = store.create_shard(&id, object_id, shard)?;
                loop {
                    match chunks.blocking_recv() {
                        Some(Piece::Data(data)) => {
                            if let Err(e) = writer.write(&data) {
                                writer.discard();
                                return Err(e);
                            }
                        }
                        Some(Piece::End) => break,
                        None => {
                            writer.discard();
                            return Err(ShardStoreError::Io {
                                what: "receive (cut off before its end) shard for",
                                path: PathBuf::from(&target),
                                source: std::io::Error::other("upload stopped"),
                            });
                        }
                    }
                }
                let (bytes, crc32c) = writer.finish()?;
                Ok(StoredShard { bytes, crc32c })
            })
            .await
        })
    }

    fn get_shard<'a>(
        &'a self,
        backup_id: &'a str,
        object_id: u64,
        shard: u8,
    ) -> StoreFuture<'a, Option<ChunkStream>> {
        Box::pin(async move {
            let path = self
                .store
                .shard_path(backup_id, object_id, shard)
                .map_err(|e| self.store_err(e))?;
            match std::fs::File::open(&path) {
                Ok(file) => Ok(Some(read_chunks(
                    file,
                    path.display().to_string(),
                    self.describe(),
                ))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(self.failed(format!("open {}: {e}", path.display()))),
            }
        })
    }

    fn put_manifest<'a>(&'a self, backup_id: &'a str, json: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let (id, json) = (backup_id.to_string(), json.to_string());
            self.blocking(move |store| store.put_manifest(&id, &json))
                .await
        })
    }

    fn list(&self) -> StoreFuture<'_, Vec<HeldBackup>> {
        Box::pin(async move {
            self.blocking(|store| {
                let mut out = Vec::new();
                for (backup_id, shards) in store.list()? {
                    let manifest_json = store.manifest(&backup_id)?;
                    out.push(HeldBackup {
                        backup_id,
                        manifest_json,
                        shards,
                    });
                }
                Ok(out)
            })
            .await
        })
    }

    fn delete<'a>(&'a self, backup_ids: &'a [String]) -> StoreFuture<'a, u32> {
        Box::pin(async move {
            let ids = backup_ids.to_vec();
            self.blocking(move |store| {
                let mut deleted = 0;
                for id in &ids {
                    if store.delete(id)? {
                        deleted += 1;
                    }
                }
                Ok(deleted)
            })
            .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_cut_off_upload_leaves_nothing_and_a_complete_one_round_trips() {
        let dir = tempfile::TempDir::new().unwrap();
        let store = DirStore::new(dir.path());
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.send(Piece::Data(b"half".to_vec())).await.unwrap();
        drop(tx);
        assert!(store.put_shard("bk-1", 0, 0, rx).await.is_err());
        assert!(store.get_shard("bk-1", 0, 0).await.unwrap().is_none());

        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.send(Piece::Data(b"whole ".to_vec())).await.unwrap();
        tx.send(Piece::Data(b"shard".to_vec())).await.unwrap();
        tx.send(Piece::End).await.unwrap();
        let stored = store.put_shard("bk-1", 0, 1, rx).await.unwrap();
        assert_eq!(stored.bytes, 11);
        store.put_manifest("bk-1", "{}").await.unwrap();
        let mut got = Vec::new();
        let mut rx = store.get_shard("bk-1", 0, 1).await.unwrap().unwrap();
        while let Some(chunk) = rx.recv().await {
            got.extend(chunk.unwrap());
        }
        assert_eq!(got, b"whole shard");
        let held = store.list().await.unwrap();
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].shards.len(), 1, "only the complete shard is listed");
        assert_eq!(held[0].manifest_json.as_deref(), Some("{}"));
        assert_eq!(store.delete(&["bk-1".to_string()]).await.unwrap(), 1);
        assert!(store.list().await.unwrap().is_empty());
    }
}
