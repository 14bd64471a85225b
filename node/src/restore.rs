//! The restore engine: rebuilds the state at a point from the backups. Given a plan
//! (`reprise_storage::backup::restore::plan`: the newest snapshot backup at or before the
//! target, then the contiguous log archive segments after it), it rebuilds the base and
//! every segment from any k shards of each stripe (wherever the targets are), checks each
//! against its manifest's checksum, and replays the archived entries up to the target.
//! The result is a verified snapshot file under `staging`, ready to seed a cluster.
//! `reprise restore` starts a cluster from it; `restore_drill` only checks it.

use std::path::{Path, PathBuf};
use std::time::Instant;

use reprise_storage::backup::archive::Segment;
use reprise_storage::backup::manifest::Manifest;
use reprise_storage::backup::reconstruct::ShardHealth;
use reprise_storage::backup::restore::{replay, Plan, RestoreError, Target};
use reprise_storage::backup::target::BackupTargets;
use serde::Serialize;
use thiserror::Error;

use crate::backup_fetch::{rebuild_object, Fetch, FetchError};

/// Why a restore did not produce a state.
#[derive(Debug, Error)]
pub enum RestoreRunError {
    /// The backups cannot produce the requested state (too few shards, a checksum that
    /// does not match, a gap in the archive): nothing was restored.
    #[error("{0}")]
    NotRestorable(String),
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("create {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A shard found missing or damaged while rebuilding one backup object.
#[derive(Debug, Clone, Serialize)]
pub struct DamagedShard {
    pub backup_id: String,
    pub shard: u8,
    pub site: String,
    pub problem: String,
}

/// What a restore produced and what it took.
#[derive(Debug, Clone, Serialize)]
pub struct RestoredPoint {
    /// The snapshot file of the restored state (under the staging directory).
    #[serde(skip)]
    pub snapshot: PathBuf,
    pub base_backup: Option<String>,
    pub segments_replayed: usize,
    pub entries_replayed: u64,
    pub log_index: u64,
    pub hlc: u64,
    pub keys: u64,
    pub state_digest: String,
    pub bytes_fetched: u64,
    pub damaged_shards: Vec<DamagedShard>,
    pub rebuild_ms: u128,
    pub replay_ms: u128,
}

/// What a restore reports while it runs.
#[derive(Debug, Clone)]
pub enum RestoreEvent {
    RebuildingBase { backup_id: String },
    RebuildingSegment { done: usize, of: usize },
    Rebuilt { bytes: u64, ms: u128 },
    Replayed { entries: u64, index: u64, ms: u128 },
}

/// Rebuilds the state `plan` reaches for `target` under `staging` (created if missing).
pub async fn restore_point(
    plan: &Plan,
    targets: &BackupTargets,
    target: Target,
    staging: &Path,
    progress: &(dyn Fn(RestoreEvent) + Sync),
) -> Result<RestoredPoint, RestoreRunError> {
    let started = Instant::now();
    std::fs::create_dir_all(staging).map_err(|source| RestoreRunError::Io {
        path: staging.to_path_buf(),
        source,
    })?;
    let mut damaged = Vec::new();
    let mut bytes_fetched = 0u64;
    let base = match &plan.base {
        Some(m) => {
            progress(RestoreEvent::RebuildingBase {
                backup_id: m.backup_id.clone(),
            });
            let path = staging.join("base.snap");
            bytes_fetched += rebuild_checked(m, targets, &path, staging, &mut damaged).await?;
            Some(path)
        }
        None => None,
    };
    let mut segment_files = Vec::new();
    for (i, m) in plan.segments.iter().enumerate() {
        progress(RestoreEvent::RebuildingSegment {
            done: i + 1,
            of: plan.segments.len(),
        });
        let path = staging.join(format!("{}.seg", m.backup_id));
        bytes_fetched += rebuild_checked(m, targets, &path, staging, &mut damaged).await?;
        segment_files.push((m.backup_id.clone(), path));
    }
    let rebuild_ms = started.elapsed().as_millis();
    progress(RestoreEvent::Rebuilt {
        bytes: bytes_fetched,
        ms: rebuild_ms,
    });
    let replay_started = Instant::now();
    let segments = segment_files.into_iter().map(|(id, path)| {
        let bytes = std::fs::read(&path).map_err(|source| RestoreError::Io {
            what: "read",
            path: path.clone(),
            source,
        })?;
        Ok(Segment::decode(&id, &bytes)?)
    });
    let replayed = replay(base.as_deref(), segments, target, &staging.join("replay"))
        .await
        .map_err(|e| RestoreRunError::NotRestorable(format!("cannot restore: {e}")))?;
    let replay_ms = replay_started.elapsed().as_millis();
    progress(RestoreEvent::Replayed {
        entries: replayed.entries_replayed,
        index: replayed.last_index,
        ms: replay_ms,
    });
    Ok(RestoredPoint {
        snapshot: replayed.snapshot,
        base_backup: plan.base.as_ref().map(|b| b.backup_id.clone()),
        segments_replayed: plan.segments.len(),
        entries_replayed: replayed.entries_replayed,
        log_index: replayed.last_index,
        hlc: replayed.last_hlc,
        keys: replayed.keys,
        state_digest: replayed.state_digest,
        bytes_fetched,
        damaged_shards: damaged,
        rebuild_ms,
        replay_ms,
    })
}

/// Rebuilds one object and checks it against its manifest; returns its size.
async fn rebuild_checked(
    m: &Manifest,
    targets: &BackupTargets,
    out: &Path,
    scratch: &Path,
    damaged: &mut Vec<DamagedShard>,
) -> Result<u64, RestoreRunError> {
    let what = if m.is_log_segment() {
        "log archive segment"
    } else {
        "backup"
    };
    let rebuilt = rebuild_object(m, targets, out, scratch, Fetch::DataFirst)
        .await?
        .map_err(|e| {
            RestoreRunError::NotRestorable(format!(
                "{what} {} cannot be restored: {e}",
                m.backup_id
            ))
        })?;
    if !rebuilt.digest_matches {
        return Err(RestoreRunError::NotRestorable(format!(
            "{what} {}: rebuilt bytes differ from the manifest's checksum; refusing to restore",
            m.backup_id
        )));
    }
    note_damage(m, &rebuilt.shards, damaged);
    Ok(rebuilt.bytes)
}

fn note_damage(m: &Manifest, shards: &[ShardHealth], out: &mut Vec<DamagedShard>) {
    for h in shards {
        let problem = match (&h.problem, h.present) {
            (_, false) => "missing".to_string(),
            (Some(p), true) => p.clone(),
            (None, true) => continue,
        };
        out.push(DamagedShard {
            backup_id: m.backup_id.clone(),
            shard: h.shard,
            site: m
                .shards
                .iter()
                .find(|s| s.shard == h.shard)
                .map(|s| s.site.clone())
                .unwrap_or_else(|| "?".into()),
            problem,
        });
    }
}
