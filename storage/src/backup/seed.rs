//! Seeding the data directories of a fresh cluster from a restored snapshot: each node
//! gets the snapshot (with the new cluster's membership in its header) as its newest
//! snapshot and a log whose purge point is the snapshot's last entry, so it starts as if
//! it had applied and compacted everything up to there. The old membership, addresses and
//! node ids are not carried over, nor are the backup targets and the backup catalog: the
//! restored cluster is a new epoch.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::atomic_file::write_atomic;
use crate::cluster_config::ClusterConfig;
use crate::log::store::VOTE_FILE;
use crate::log::writer::PURGED_FILE;
use crate::snapshot::format::rewrite_header;
use crate::snapshot::SnapshotDir;
use crate::types::{LogId, Member, NodeId, StoredMembership};

/// Why seeding failed.
#[derive(Debug, Error)]
pub enum SeedError {
    #[error(transparent)]
    Snapshot(#[from] crate::SnapshotError),
    #[error(transparent)]
    File(#[from] crate::atomic_file::AtomicFileError),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the snapshot holds no log position; nothing to restore")]
    Empty,
    #[error("data directory {0} is not empty; restore only into fresh directories")]
    NotEmpty(PathBuf),
}

/// Seeds `data_dirs[i]` for `members[i]`, all voters of the new cluster. Returns the log
/// id the new cluster starts after.
pub fn seed_data_dirs(
    snapshot: &Path,
    members: &[(NodeId, Member)],
    data_dirs: &[PathBuf],
) -> Result<LogId, SeedError> {
    for dir in data_dirs {
        if dir.read_dir().is_ok_and(|mut d| d.next().is_some()) {
            return Err(SeedError::NotEmpty(dir.clone()));
        }
    }
    let voters: BTreeSet<NodeId> = members.iter().map(|(id, _)| *id).collect();
    let nodes: BTreeMap<NodeId, Member> = members.iter().cloned().collect();
    let mut last = None;
    for dir in data_dirs {
        let snapshots = SnapshotDir::open(&dir.join("sm").join("snapshots"))?;
        let partial = snapshots.partial_path();
        let header = rewrite_header(snapshot, &partial, |mut h| {
            let log_id = h.meta.last_log_id;
            h.meta.last_membership = StoredMembership::new(
                log_id,
                openraft::Membership::new(vec![voters.clone()], nodes.clone()),
            );
            h.meta.snapshot_id = format!("restored-{}", h.meta.snapshot_id);
            // A new epoch starts with no backup targets and an empty catalog: it must
            // never write into (or list as its own) the old cluster's backups.
            h.cluster = ClusterConfig::default();
            h
        })?;
        let log_id = header.meta.last_log_id.ok_or(SeedError::Empty)?;
        snapshots.accept(&partial, header)?;
        let log_dir = dir.join("log");
        std::fs::create_dir_all(&log_dir).map_err(|source| SeedError::Io {
            what: "create",
            path: log_dir.clone(),
            source,
        })?;
        let record = postcard::to_allocvec(&log_id).map_err(|e| SeedError::Io {
            what: "encode purge point for",
            path: log_dir.clone(),
            source: std::io::Error::other(e),
        })?;
        write_atomic(&log_dir, PURGED_FILE, &record)?;
        // A vote in the snapshot's term for nobody (node 0 is never a member): the first
        // election of the new cluster happens in a later term than any logged entry.
        let vote = openraft::Vote::new(log_id.leader_id.term, 0);
        let vote = postcard::to_allocvec(&vote).map_err(|e| SeedError::Io {
            what: "encode vote for",
            path: log_dir.clone(),
            source: std::io::Error::other(e),
        })?;
        write_atomic(&log_dir, VOTE_FILE, &vote)?;
        last = Some(log_id);
    }
    last.ok_or(SeedError::Empty)
}
