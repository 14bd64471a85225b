//! The continuous log archive, run by the leader: every interval, the committed entries
//! after the archived index are cut into a segment, erasure-coded and placed across sites
//! exactly like a backup (`backup_create::store_object`), and once every site holds its
//! shards an `ArchiveMark` command records the new archived index in the replicated
//! state. Every node's log is purged no further than that mark (see
//! `LogStore::limit_purge_to`), so a new leader always still holds what is left to archive.
//!
//! When the entries after the mark are gone from the local log (a node that caught up by
//! snapshot became leader, or a freshly restored cluster), the archive cannot continue
//! from its mark: a snapshot backup is taken instead and the archive continues after it.

use std::io::Read;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::ServerState;
use reprise_api::pb::backup::CreateBackupRequest;
use reprise_storage::backup::archive::Segment;
use reprise_storage::backup::manifest::{BackupObject, Manifest, KIND_LOG, MANIFEST_FORMAT};
use reprise_storage::command::Operation;
use tokio::task::JoinHandle;
use tonic::Status;
use tracing::{info, warn};

use crate::backup_create::{create_backup, placement, store_object, OBJECT_ID};
use crate::config::ArchiveSettings;
use crate::state::NodeState;

/// A segment is closed once it holds this many bytes of entries (the whole segment is
/// encoded in memory).
const SEGMENT_BYTES_MAX: usize = 64 * 1024 * 1024;

/// What the archive last did, for `cluster status`.
#[derive(Debug, Default)]
pub struct ArchiveStatus {
    /// When the archive last caught up with the applied index (on this node as leader).
    pub caught_up_at: Option<Instant>,
    /// The last archiving error; empty after a success.
    pub last_error: String,
}

/// The shared, lock-protected archive status.
pub type SharedArchiveStatus = Arc<Mutex<ArchiveStatus>>;

/// Starts the archive loop; it archives only while this node is leader.
pub fn spawn(state: Arc<NodeState>, settings: ArchiveSettings) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(settings.interval_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tick.tick().await;
            if state.raft.metrics().borrow().state != ServerState::Leader {
                continue;
            }
            let result = archive_pending(&state, &settings).await;
            let mut status = lock(&state.archive_status);
            match result {
                Ok(()) => {
                    status.caught_up_at = Some(Instant::now());
                    status.last_error.clear();
                    if failing {
                        info!("log archive caught up again");
                    }
                    failing = false;
                }
                Err(e) => {
                    if !failing {
                        warn!(error = %e.message(), "log archive is falling behind");
                    }
                    failing = true;
                    status.last_error = e.message().to_string();
                }
            }
        }
    })
}

/// The status, even if a panic poisoned its lock (it only holds plain values).
pub fn lock(status: &SharedArchiveStatus) -> std::sync::MutexGuard<'_, ArchiveStatus> {
    status.lock().unwrap_or_else(|p| p.into_inner())
}

/// Archives every committed entry after the mark, one segment at a time.
async fn archive_pending(state: &Arc<NodeState>, settings: &ArchiveSettings) -> Result<(), Status> {
    loop {
        let applied = state
            .raft
            .metrics()
            .borrow()
            .last_applied
            .map(|l| l.index)
            .unwrap_or(0);
        let through = state.archived.load(Ordering::Acquire);
        if applied <= through {
            return Ok(());
        }
        let max = usize::try_from(settings.segment_entries_max).unwrap_or(usize::MAX);
        // Copying and checking up to 64 MiB of entries is CPU work: off the runtime's
        // workers, so client requests and Raft messages are not held up behind it.
        let log = state.log.clone();
        let entries = tokio::task::spawn_blocking(move || {
            log.entries_between(through + 1, applied, max, SEGMENT_BYTES_MAX)
        })
        .await
        .map_err(|e| Status::internal(format!("read entries to archive: {e}")))?;
        if entries.first().map(|e| e.log_id.index) != Some(through + 1) {
            restart_after_gap(state, through).await?;
            continue;
        }
        let segment = Segment::new(entries).map_err(|e| Status::internal(e.to_string()))?;
        if !segment.has_content() {
            // Only earlier archive marks (and blank entries) are pending: archiving them
            // would only produce another mark.
            return Ok(());
        }
        let last = segment.last_index();
        store_segment(state, segment).await?;
        state
            .write(Operation::ArchiveMark { through: last })
            .await?;
        if last >= applied {
            return Ok(());
        }
    }
}

async fn store_segment(state: &Arc<NodeState>, segment: Segment) -> Result<(), Status> {
    let placement = placement(state, &CreateBackupRequest::default())?;
    let id = segment.id();
    let (first, last, hlc) = (
        segment.first_index(),
        segment.last_index(),
        segment.max_hlc(),
    );
    let entries = segment.entries.len() as u64;
    let term = segment
        .entries
        .last()
        .map(|e| e.log_id.leader_id.term)
        .unwrap_or(0);
    let params = placement.params;
    let cluster_name = state.raft.config().cluster_name.clone();
    // The segment is encoded and hashed as the erasure coder reads it (on the coder's
    // background thread), never held whole in one buffer.
    let hasher = Arc::new(Mutex::new(blake3::Hasher::new()));
    let source = Hashing {
        inner: segment.into_reader(),
        hasher: hasher.clone(),
    };
    let describe = |shards, size, stripes| Manifest {
        format: MANIFEST_FORMAT,
        backup_id: id.clone(),
        cluster_name,
        log_index: last,
        term,
        hlc,
        data_shards: params.data_shards,
        parity_shards: params.parity_shards,
        stripe_bytes: params.stripe_bytes,
        objects: vec![BackupObject {
            object_id: OBJECT_ID,
            kind: KIND_LOG.into(),
            bytes: size,
            stripes,
            state_digest: lock_hasher(&hasher).finalize().to_hex().to_string(),
            keys: entries,
        }],
        shards,
        first_index: first,
    };
    store_object(
        &id,
        Box::new(source),
        &placement,
        Default::default(),
        describe,
    )
    .await?;
    Ok(())
}

/// A reader that hashes (blake3) every byte read through it.
struct Hashing<R> {
    inner: R,
    hasher: Arc<Mutex<blake3::Hasher>>,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        lock_hasher(&self.hasher).update(&buf[..n]);
        Ok(n)
    }
}

/// The hasher, even if a panic poisoned its lock (a panicked encoder fails the segment).
fn lock_hasher(hasher: &Mutex<blake3::Hasher>) -> std::sync::MutexGuard<'_, blake3::Hasher> {
    hasher.lock().unwrap_or_else(|p| p.into_inner())
}

/// The entries after the mark are no longer in the local log: back up the whole state
/// and continue the archive after that backup's index.
async fn restart_after_gap(state: &Arc<NodeState>, through: u64) -> Result<(), Status> {
    let purged = state.log.purged_index();
    warn!(
        archived = through,
        purged, "entries after the archived index are not in this node's log; taking a snapshot backup to continue the archive from"
    );
    let manifest =
        create_backup(state, CreateBackupRequest::default(), &Default::default()).await?;
    state
        .write(Operation::ArchiveMark {
            through: manifest.log_index,
        })
        .await?;
    Ok(())
}
