//! The state machine: user data in memory (`state.rs`, a persistent map whose copies
//! share structure), snapshots written to our own fsynced files from an O(1) copy of the
//! state while applies go on, and the openraft `RaftStateMachine` implementation.
//! The Raft log is the write-ahead log and snapshot files are the checkpoints: on open,
//! the state is the newest snapshot's, and openraft applies the entries after it again
//! as it learns they are committed.

pub mod apply;
mod archived;
mod state;
pub mod value;
pub mod view;

use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine, Snapshot};
use openraft::{OptionalSend, StorageIOError};
use tracing::info;

use self::apply::ApplyBatch;
use self::state::{Data, State};
use self::view::KvView;
use crate::cluster_config::ClusterConfig;
use crate::command::CommandResponse;
use crate::error::{SnapshotError, StateMachineError};
use crate::snapshot::{SnapshotDir, SnapshotFile, SnapshotHeader, SnapshotReader};
use crate::types::{Entry, LogId, RaftStorageError, SnapshotMeta, StoredMembership, TypeConfig};

/// The Raft state machine of one node.
pub struct StateMachineStore {
    dir: PathBuf,
    view: KvView,
    snapshots: Arc<SnapshotDir>,
    receiving: Option<PathBuf>,
    archived: Arc<AtomicU64>,
}

impl StateMachineStore {
    /// Opens the state machine under `dir` (`dir/snapshots`, `dir/archived`): the state
    /// is loaded from the newest snapshot, if there is one, after checking it end to end.
    pub fn open(dir: &Path) -> Result<Self, StateMachineError> {
        std::fs::create_dir_all(dir).map_err(|source| StateMachineError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let snapshots = SnapshotDir::open(&dir.join("snapshots"))?;
        let archived = archived::read(dir)?;
        let store = StateMachineStore {
            dir: dir.to_path_buf(),
            view: KvView::new(),
            snapshots: Arc::new(snapshots),
            receiving: None,
            archived: Arc::new(AtomicU64::new(archived)),
        };
        if let Some(newest) = store.snapshots.newest()? {
            info!(snapshot = %newest.path.display(), "loading the state from the newest snapshot");
            load_snapshot(&store.view, &newest.path)?;
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

    /// Stores a raised archive mark durably, then publishes it.
    async fn raise_archived(&self, through: u64) -> Result<(), StateMachineError> {
        if through <= self.archived.load(Ordering::Acquire) {
            return Ok(());
        }
        let dir = self.dir.clone();
        blocking(move || Ok(archived::write(&dir, through)?)).await?;
        self.archived.fetch_max(through, Ordering::Release);
        Ok(())
    }
}

/// Replaces the whole state with the snapshot at `path`: reads the file end to end into a
/// new state, checking every record and the trailer, and swaps that in only then, so
/// readers see the old state or the new one and a bad file changes nothing.
pub fn load_snapshot(view: &KvView, path: &Path) -> Result<SnapshotHeader, StateMachineError> {
    fill_from_snapshot(view, path)
}

/// Reads a snapshot file end to end, checking every checksum; returns its header.
pub fn verify_snapshot(path: &Path) -> Result<SnapshotHeader, StateMachineError> {
    let mut check = SnapshotReader::open(path)?;
    while check.next_record()?.is_some() {}
    Ok(check.header().clone())
}

fn fill_from_snapshot(view: &KvView, path: &Path) -> Result<SnapshotHeader, StateMachineError> {
    let mut reader = SnapshotReader::open(path)?;
    let header = reader.header().clone();
    let mut data = Data::new();
    while let Some((key, value)) = reader.next_record()? {
        data.insert(Arc::from(key), Arc::new(value));
    }
    let loaded = State {
        data,
        applied: header.meta.last_log_id,
        membership: header.meta.last_membership.clone(),
        last_hlc: header.last_hlc,
        cluster: Arc::new(header.cluster.clone()),
    };
    *view.write() = loaded;
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

/// Builder handed to openraft: holds a copy of the state as it was when openraft asked
/// for it, and writes the snapshot from that copy while applies go on.
pub struct SnapshotBuilder {
    snapshots: Arc<SnapshotDir>,
    state: Option<State>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, RaftStorageError> {
        let Some(state) = self.state.take() else {
            return Err(sm_err(StateMachineError::Meta {
                name: "snapshot".into(),
                reason: "builder used twice".into(),
            }));
        };
        let snapshots = self.snapshots.clone();
        let file = blocking(move || {
            let header = snapshot_header(&state);
            let records = state.data.iter().map(|(k, v)| (k.as_ref(), v.as_ref()));
            let file = snapshots.build(header, records)?;
            info!(path = %file.path.display(), keys = state.data.len(), "snapshot written");
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
        Ok((applied, self.view.membership()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResponse>, RaftStorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut responses = Vec::new();
        let archived = {
            let mut batch = ApplyBatch::new(self.view.write());
            for entry in entries {
                let resp = batch
                    .apply(&entry)
                    .map_err(|e| RaftStorageError::from(StorageIOError::apply(entry.log_id, &e)))?;
                responses.push(resp);
            }
            batch.finish()
        };
        if let Some(through) = archived {
            self.raise_archived(through).await.map_err(sm_err)?;
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        // openraft asks between applies; the copy shares structure with the live state,
        // and the file itself is written by `build_snapshot`.
        SnapshotBuilder {
            snapshots: self.snapshots.clone(),
            state: Some(self.view.copy()),
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

/// The header of a snapshot of `state`.
fn snapshot_header(state: &State) -> SnapshotHeader {
    SnapshotHeader {
        meta: SnapshotMeta {
            last_log_id: state.applied,
            last_membership: state.membership.clone(),
            snapshot_id: snapshot_id(state.applied),
        },
        last_hlc: state.last_hlc,
        cluster: ClusterConfig::clone(&state.cluster),
    }
}

fn snapshot_id(applied: Option<LogId>) -> String {
    match applied {
        Some(l) => format!("{}-{}-{}", l.leader_id.term, l.leader_id.node_id, l.index),
        None => "empty".to_string(),
    }
}
