//! The state machine: user data in sled with applied log id, membership and last HLC
//! stored beside it, snapshots written to our own fsynced files while applies go on
//! (copy-on-write, `capture.rs`), and the openraft `RaftStateMachine` implementation.
//! sled is never the only durable copy: on open, a sled state older than the newest
//! snapshot is rebuilt from that snapshot.

pub mod apply;
mod capture;
pub mod keyspace;
pub mod value;
pub mod view;

use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine, Snapshot};
use openraft::{OptionalSend, StorageIOError};
use tracing::info;

use self::apply::{encode_meta, ApplyBatch};
use self::capture::CaptureGuard;
use self::keyspace::{
    data_key, META_APPLIED, META_ARCHIVED, META_CLUSTER, META_LAST_HLC, META_MEMBERSHIP,
};
use self::view::KvView;
use crate::command::CommandResponse;
use crate::error::{SnapshotError, StateMachineError};
use crate::limits::SNAPSHOT_LOAD_BATCH_KEYS;
use crate::snapshot::{SnapshotDir, SnapshotFile, SnapshotHeader, SnapshotReader};
use crate::types::{Entry, LogId, RaftStorageError, SnapshotMeta, StoredMembership, TypeConfig};

/// The Raft state machine of one node.
pub struct StateMachineStore {
    _db: sled::Db,
    view: KvView,
    snapshots: Arc<SnapshotDir>,
    receiving: Option<PathBuf>,
    archived: Arc<AtomicU64>,
}

impl StateMachineStore {
    /// Opens the state machine under `dir` (`dir/sled`, `dir/snapshots`), rebuilding sled from
    /// the newest snapshot when sled is behind it.
    pub fn open(dir: &Path) -> Result<Self, StateMachineError> {
        let db = sled::Config::new().path(dir.join("sled")).open()?;
        let tree = db.open_tree("state")?;
        let snapshots = SnapshotDir::open(&dir.join("snapshots"))?;
        let view = KvView::new(tree);
        let archived = view.meta::<u64>(META_ARCHIVED)?.unwrap_or(0);
        let store = StateMachineStore {
            _db: db,
            view,
            snapshots: Arc::new(snapshots),
            receiving: None,
            archived: Arc::new(AtomicU64::new(archived)),
        };
        if let Some(newest) = store.snapshots.newest()? {
            let applied = store.view.applied()?;
            if applied < newest.header.meta.last_log_id {
                info!(
                    snapshot = %newest.path.display(),
                    ?applied,
                    "state machine is behind the newest snapshot; rebuilding from it"
                );
                load_snapshot(&store.view, &newest.path)?;
            }
        }
        Ok(store)
    }

    /// A read handle for gets, scans and checksums.
    pub fn view(&self) -> KvView {
        self.view.clone()
    }

    /// The snapshot directory this state machine writes to. Share it rather than opening
    /// the directory again: opening removes partial files, which may be in use.
    pub fn snapshot_dir(&self) -> Arc<SnapshotDir> {
        self.snapshots.clone()
    }

    /// The highest log index recorded as archived (by applied `ArchiveMark` commands),
    /// shared and kept current; wire it to `LogStore::limit_purge_to` so the log is never
    /// purged past what the archive holds.
    pub fn archived_through(&self) -> Arc<AtomicU64> {
        self.archived.clone()
    }

    fn membership(&self) -> Result<StoredMembership, StateMachineError> {
        Ok(self.view.meta(META_MEMBERSHIP)?.unwrap_or_default())
    }
}

/// Replaces the whole state with the snapshot at `path`: verifies the file end to end
/// first, then loads it in bounded batches. The applied id is written last, so a crash
/// during the load leaves a state that the next open rebuilds again.
pub fn load_snapshot(view: &KvView, path: &Path) -> Result<SnapshotHeader, StateMachineError> {
    verify_snapshot(path)?;
    fill_from_snapshot(view, path)
}

/// Reads a snapshot file end to end, checking every checksum; returns its header.
pub fn verify_snapshot(path: &Path) -> Result<SnapshotHeader, StateMachineError> {
    let mut check = SnapshotReader::open(path)?;
    while check.next_record()?.is_some() {}
    Ok(check.header().clone())
}

fn fill_from_snapshot(view: &KvView, path: &Path) -> Result<SnapshotHeader, StateMachineError> {
    // A snapshot still being written describes the state this load replaces.
    view.captures.wait_closed();
    let _gate = view.write_gate();
    let archived = view.tree.get(META_ARCHIVED)?;
    view.tree.clear()?;
    let mut reader = SnapshotReader::open(path)?;
    let header = reader.header().clone();
    let mut batch = sled::Batch::default();
    let mut pending = 0;
    while let Some((key, value)) = reader.next_record()? {
        batch.insert(data_key(&key), value.encode());
        pending += 1;
        if pending == SNAPSHOT_LOAD_BATCH_KEYS {
            view.tree.apply_batch(std::mem::take(&mut batch))?;
            pending = 0;
        }
    }
    batch.insert(META_MEMBERSHIP, encode_meta(&header.meta.last_membership)?);
    batch.insert(META_LAST_HLC, encode_meta(&header.last_hlc)?);
    batch.insert(META_CLUSTER, header.cluster.encode());
    batch.insert(META_APPLIED, encode_meta(&header.meta.last_log_id)?);
    if let Some(archived) = archived {
        batch.insert(META_ARCHIVED, archived);
    }
    view.tree.apply_batch(batch)?;
    view.tree.flush()?;
    Ok(header)
}

fn sm_err(e: impl std::error::Error + 'static) -> RaftStorageError {
    StorageIOError::write_state_machine(&e).into()
}

fn read_err(e: impl std::error::Error + 'static) -> RaftStorageError {
    StorageIOError::read_state_machine(&e).into()
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StateMachineError> + Send + 'static,
) -> Result<T, StateMachineError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StateMachineError::Meta {
            name: "blocking task".into(),
            reason: e.to_string(),
        })?
}

async fn open_snapshot(file: SnapshotFile) -> Result<Snapshot<TypeConfig>, RaftStorageError> {
    let handle = tokio::fs::File::open(&file.path)
        .await
        .map_err(|e| read_err(SnapshotError::io(&file.path, e)))?;
    Ok(Snapshot {
        meta: file.header.meta,
        snapshot: Box::new(handle),
    })
}

/// Builder handed to openraft: holds the header and an open capture of the state as it
/// was when openraft asked for it, and writes the snapshot from them while applies go on.
pub struct SnapshotBuilder {
    view: KvView,
    snapshots: Arc<SnapshotDir>,
    started: Option<Result<(SnapshotHeader, CaptureGuard), String>>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, RaftStorageError> {
        let (header, capture) = match self.started.take() {
            Some(Ok(started)) => started,
            Some(Err(reason)) => {
                return Err(sm_err(StateMachineError::Meta {
                    name: "snapshot".into(),
                    reason,
                }))
            }
            None => {
                return Err(sm_err(StateMachineError::Meta {
                    name: "snapshot".into(),
                    reason: "builder used twice".into(),
                }))
            }
        };
        let (view, snapshots) = (self.view.clone(), self.snapshots.clone());
        let file = blocking(move || {
            let file = snapshots.build(header, view.as_of(capture.capture()))?;
            info!(
                path = %file.path.display(),
                changed_keys_meanwhile = capture.capture().changed_keys(),
                "snapshot written while applies went on"
            );
            Ok(file)
        })
        .await
        .map_err(sm_err)?;
        open_snapshot(file).await
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership), RaftStorageError> {
        let applied = self.view.applied().map_err(read_err)?;
        Ok((applied, self.membership().map_err(read_err)?))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResponse>, RaftStorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = ApplyBatch::new(&self.view).map_err(sm_err)?;
        let mut responses = Vec::new();
        for entry in entries {
            let resp = batch
                .apply(&entry)
                .map_err(|e| RaftStorageError::from(StorageIOError::apply(entry.log_id, &e)))?;
            responses.push(resp);
        }
        if let Some(archived) = batch.commit().map_err(sm_err)? {
            self.archived.fetch_max(archived, Ordering::Release);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        // openraft asks between applies, so the header and the capture's start describe
        // the same state; the file itself is written by `build_snapshot`.
        let view = self.view.clone();
        let started = snapshot_header(&view).map(|header| (header, view.begin_capture()));
        SnapshotBuilder {
            view,
            snapshots: self.snapshots.clone(),
            started: Some(started.map_err(|e| e.to_string())),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, RaftStorageError> {
        let path = self.snapshots.partial_path();
        let file = tokio::fs::File::create(&path)
            .await
            .map_err(|e| sm_err(SnapshotError::io(&path, e)))?;
        self.receiving = Some(path);
        Ok(Box::new(file))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), RaftStorageError> {
        let received = snapshot.into_std().await;
        let receiving = self.receiving.take();
        let snapshots = self.snapshots.clone();
        let view = self.view.clone();
        let meta = meta.clone();
        blocking(move || {
            let partial = place_received(&snapshots, received, receiving)?;
            let header = match verify_snapshot(&partial) {
                Ok(h) if h.meta.last_log_id == meta.last_log_id => h,
                Ok(_) => {
                    let _ = std::fs::remove_file(&partial);
                    return Err(SnapshotError::corrupt(
                        &partial,
                        "header does not match the announced snapshot",
                    )
                    .into());
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&partial);
                    return Err(e);
                }
            };
            let file = snapshots.accept(&partial, header)?;
            fill_from_snapshot(&view, &file.path)?;
            Ok(())
        })
        .await
        .map_err(sm_err)
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, RaftStorageError> {
        match self.snapshots.newest().map_err(read_err)? {
            Some(file) => Ok(Some(open_snapshot(file).await?)),
            None => Ok(None),
        }
    }
}

/// Makes the received snapshot a durable partial file in our directory: the file we
/// handed out in `begin_receiving_snapshot` is fsynced in place; any other handle is
/// copied from its start.
fn place_received(
    snapshots: &SnapshotDir,
    mut received: std::fs::File,
    receiving: Option<PathBuf>,
) -> Result<PathBuf, StateMachineError> {
    if let Some(path) = receiving {
        if same_file(&received, &path) {
            received
                .sync_all()
                .map_err(|e| SnapshotError::io(&path, e))?;
            return Ok(path);
        }
        let _ = std::fs::remove_file(&path);
    }
    let partial = snapshots.partial_path();
    let mut out = std::fs::File::create(&partial).map_err(|e| SnapshotError::io(&partial, e))?;
    received
        .seek(SeekFrom::Start(0))
        .and_then(|_| std::io::copy(&mut received, &mut out))
        .and_then(|_| out.sync_all())
        .map_err(|e| SnapshotError::io(&partial, e))?;
    Ok(partial)
}

fn same_file(file: &std::fs::File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// The header of a snapshot of the state `view` holds now.
fn snapshot_header(view: &KvView) -> Result<SnapshotHeader, StateMachineError> {
    let applied = view.applied()?;
    Ok(SnapshotHeader {
        meta: SnapshotMeta {
            last_log_id: applied,
            last_membership: view.meta(META_MEMBERSHIP)?.unwrap_or_default(),
            snapshot_id: snapshot_id(applied),
        },
        last_hlc: view.last_hlc()?,
        cluster: view.cluster_config()?,
    })
}

fn snapshot_id(applied: Option<LogId>) -> String {
    match applied {
        Some(l) => format!("{}-{}-{}", l.leader_id.term, l.leader_id.node_id, l.index),
        None => "empty".to_string(),
    }
}
