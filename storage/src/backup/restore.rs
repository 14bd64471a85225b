//! Point-in-time restore: choosing the backups that reach a target point ([`plan`]) and
//! rebuilding the state at that point ([`replay`]): the newest snapshot backup at or
//! before the target, then archived log entries applied in order through the ordinary
//! state machine until the target. The result is a snapshot file that seeds a fresh
//! cluster (see `seed`).
//!
//! Stamps increase with the log index (only the leader stamps, under the lock that hands
//! commands to Raft), so "every write stamped at or before T" is a prefix of the log.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use serde::Serialize;
use thiserror::Error;

use super::archive::{entry_hlc, Segment, SegmentError};
use super::manifest::Manifest;
use crate::snapshot::format::read_trailer;
use crate::snapshot::SnapshotDir;
use crate::state_machine::load_snapshot;
use crate::types::{Entry, LogId};
use crate::StateMachineStore;

/// Entries applied per state-machine batch during replay.
const REPLAY_BATCH: usize = 1024;

/// The point to restore to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Everything any backup or the archive holds.
    Latest,
    /// The state right after applying log index N.
    Index(u64),
    /// Every command stamped at or before this HLC value (and nothing after it).
    Hlc(u64),
}

impl Target {
    /// The HLC bound of "at or before the instant `unix_ms`": every logical tick of that
    /// millisecond is included.
    pub fn at_unix_ms(unix_ms: u64) -> Target {
        Target::Hlc((unix_ms << 16) | 0xFFFF)
    }
}

/// Why a restore cannot reach its target.
#[derive(Debug, Error)]
pub enum RestoreError {
    #[error(
        "nothing to restore from: no snapshot backup and no log archive on any reachable site"
    )]
    NothingToRestore,
    #[error("{0}")]
    Unreachable(String),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Segment(#[from] SegmentError),
    #[error(transparent)]
    StateMachine(#[from] crate::StateMachineError),
    #[error("replay: {0}")]
    Replay(String),
}

/// Which backups a restore uses.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The snapshot backup to start from; None = start from an empty state at index 0
    /// (the archive then starts at index 1).
    pub base: Option<Manifest>,
    /// Log archive segments to replay after the base, in log order, contiguous.
    pub segments: Vec<Manifest>,
    /// Set when the target lies beyond the last archived entry: the restore reaches the
    /// end of the archive, which is all the backups hold.
    pub archive_ends_before_target: bool,
}

impl Plan {
    /// Index of the last entry the plan can reach.
    pub fn reach(&self) -> u64 {
        self.segments
            .last()
            .map(|s| s.log_index)
            .or(self.base.as_ref().map(|b| b.log_index))
            .unwrap_or(0)
    }
}

fn before_target(m: &Manifest, target: Target) -> bool {
    match target {
        Target::Latest => true,
        Target::Index(n) => m.log_index <= n,
        Target::Hlc(t) => m.hlc <= t,
    }
}

/// Chooses the newest snapshot backup at or before `target` and the chain of contiguous
/// log segments after it that reaches the target. Refuses, naming the missing range, when
/// the archive has a gap before the target.
pub fn plan(manifests: &[Manifest], target: Target) -> Result<Plan, RestoreError> {
    let base = manifests
        .iter()
        .filter(|m| !m.is_log_segment() && before_target(m, target))
        .max_by_key(|m| m.log_index)
        .cloned();
    // Segments by first index; for equal starts keep the longest.
    let mut by_first: BTreeMap<u64, &Manifest> = BTreeMap::new();
    for m in manifests.iter().filter(|m| m.is_log_segment()) {
        let longer = by_first
            .get(&m.first_index)
            .is_none_or(|have| m.log_index > have.log_index);
        if longer {
            by_first.insert(m.first_index, m);
        }
    }
    if base.is_none() && by_first.is_empty() {
        return Err(RestoreError::NothingToRestore);
    }
    let start = base.as_ref().map(|b| b.log_index).unwrap_or(0);
    let mut pos = start;
    let mut segments: Vec<Manifest> = Vec::new();
    let mut reached = false;
    loop {
        let done = match target {
            Target::Latest => false,
            Target::Index(n) => pos >= n,
            Target::Hlc(t) => segments.last().is_some_and(|s| s.hlc > t),
        };
        if done {
            reached = true;
            break;
        }
        // The segment that continues the chain the furthest.
        let next = by_first
            .range(..=pos + 1)
            .map(|(_, m)| *m)
            .filter(|m| m.log_index > pos)
            .max_by_key(|m| m.log_index);
        match next {
            Some(m) => {
                pos = m.log_index;
                segments.push(m.clone());
            }
            None => break,
        }
    }
    if base.is_none() && by_first.range(..=1).next().is_none() {
        let first = by_first.keys().next().copied().unwrap_or(0);
        return Err(RestoreError::Unreachable(format!(
            "no snapshot backup at or before the target, and the log archive starts at index {first}, not 1: entries 1..{first} are in no backup"
        )));
    }
    let later = by_first.range(pos + 2..).next().map(|(first, _)| *first);
    if !reached {
        match (target, later) {
            (Target::Latest, Some(first)) | (Target::Hlc(_), Some(first)) => {
                return Err(RestoreError::Unreachable(format!(
                    "the log archive has a gap: entries {}..={} are in no segment on any reachable site, so no point after index {pos} can be restored",
                    pos + 1,
                    first - 1
                )));
            }
            (Target::Index(n), _) => {
                return Err(RestoreError::Unreachable(format!(
                    "index {n} cannot be reached: backups and the log archive cover up to index {pos}{}",
                    later
                        .map(|f| format!(" (then a gap until index {f})"))
                        .unwrap_or_default()
                )));
            }
            _ => {}
        }
    }
    Ok(Plan {
        base,
        segments,
        archive_ends_before_target: !reached && target != Target::Latest,
    })
}

/// What a replay produced.
#[derive(Debug, Clone, Serialize)]
pub struct Replayed {
    /// The snapshot file of the restored state.
    #[serde(skip)]
    pub snapshot: PathBuf,
    /// The last log entry in the restored state.
    pub last_index: u64,
    pub last_term: u64,
    /// Highest HLC stamp in the restored state: the exact instant restored to.
    pub last_hlc: u64,
    pub entries_replayed: u64,
    pub keys: u64,
    pub state_digest: String,
}

/// Rebuilds the state at `target` in `scratch` (which must be empty or absent): loads the
/// base snapshot if any, applies the segments' entries in log order up to the target, and
/// writes a snapshot of the result. Segments must be given in log order; the first one
/// that fails to load stops the replay with its error.
pub async fn replay(
    base: Option<&Path>,
    segments: impl IntoIterator<Item = Result<Segment, RestoreError>>,
    target: Target,
    scratch: &Path,
) -> Result<Replayed, RestoreError> {
    let sm_dir = scratch.join("sm");
    std::fs::create_dir_all(&sm_dir).map_err(|source| RestoreError::Io {
        what: "create",
        path: sm_dir.clone(),
        source,
    })?;
    let mut sm = StateMachineStore::open(&sm_dir)?;
    let view = sm.view();
    let mut applied: Option<LogId> = None;
    let mut last_hlc = 0;
    if let Some(path) = base {
        let header = load_snapshot(&view, path)?;
        applied = header.meta.last_log_id;
        last_hlc = header.last_hlc;
    }
    let mut replayed = 0u64;
    let mut batch: Vec<Entry> = Vec::with_capacity(REPLAY_BATCH);
    'segments: for segment in segments {
        for entry in segment?.entries {
            let index = entry.log_id.index;
            let next = applied.map(|l| l.index + 1).unwrap_or(1);
            if index < next {
                continue;
            }
            if index > next {
                return Err(RestoreError::Replay(format!(
                    "entry {index} follows index {} (segments must be contiguous)",
                    next - 1
                )));
            }
            let past = match target {
                Target::Latest => false,
                Target::Index(n) => index > n,
                Target::Hlc(t) => entry_hlc(&entry).is_some_and(|h| h > t),
            };
            if past {
                // A batch straddling the instant: its commands stamped up to it happened
                // at or before the instant, the rest after.
                if let (Target::Hlc(t), openraft::EntryPayload::Normal(cmd)) =
                    (target, &entry.payload)
                {
                    if let Some(prefix) = cmd.batch_prefix(t).filter(|p| p.hlc > 0) {
                        last_hlc = last_hlc.max(prefix.hlc);
                        let partial = Entry {
                            log_id: entry.log_id,
                            payload: openraft::EntryPayload::Normal(prefix),
                        };
                        applied = Some(entry.log_id);
                        batch.push(partial);
                        replayed += 1;
                    }
                }
                break 'segments;
            }
            if let Some(h) = entry_hlc(&entry) {
                last_hlc = last_hlc.max(h);
            }
            applied = Some(entry.log_id);
            batch.push(entry);
            replayed += 1;
            if batch.len() == REPLAY_BATCH {
                sm.apply(std::mem::take(&mut batch))
                    .await
                    .map_err(|e| RestoreError::Replay(e.to_string()))?;
            }
        }
    }
    if !batch.is_empty() {
        sm.apply(batch)
            .await
            .map_err(|e| RestoreError::Replay(e.to_string()))?;
    }
    let last = applied.ok_or_else(|| {
        RestoreError::Unreachable(
            "the target precedes the first archived entry: there is no state to restore".into(),
        )
    })?;
    let mut builder = sm.get_snapshot_builder().await;
    builder
        .build_snapshot()
        .await
        .map_err(|e| RestoreError::Replay(e.to_string()))?;
    let dir =
        SnapshotDir::open(&sm_dir.join("snapshots")).map_err(crate::StateMachineError::from)?;
    let file = dir
        .newest()
        .map_err(crate::StateMachineError::from)?
        .ok_or_else(|| RestoreError::Replay("the replayed snapshot vanished".into()))?;
    let (keys, digest) = read_trailer(&file.path).map_err(crate::StateMachineError::from)?;
    Ok(Replayed {
        snapshot: file.path,
        last_index: last.index,
        last_term: last.leader_id.term,
        last_hlc,
        entries_replayed: replayed,
        keys,
        state_digest: digest.iter().map(|b| format!("{b:02x}")).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::manifest::{KIND_LOG, KIND_SNAPSHOT};
    use bytes::Bytes;

    fn manifest(kind: &str, first: u64, last: u64, hlc: u64) -> Manifest {
        Manifest::example(kind, &format!("{kind}-{first}-{last}"), first, last, hlc)
    }

    fn ids(p: &Plan) -> Vec<String> {
        p.base
            .iter()
            .chain(p.segments.iter())
            .map(|m| m.backup_id.clone())
            .collect()
    }

    #[test]
    fn picks_the_newest_snapshot_at_or_before_the_target_then_segments() {
        let all = vec![
            manifest(KIND_LOG, 1, 10, 100),
            manifest(KIND_LOG, 11, 20, 200),
            manifest(KIND_SNAPSHOT, 0, 15, 150),
            manifest(KIND_LOG, 21, 30, 300),
        ];
        let p = plan(&all, Target::Hlc(250)).unwrap();
        assert_eq!(ids(&p), ["snapshot-0-15", "log-11-20", "log-21-30"]);
        assert!(!p.archive_ends_before_target);
        let p = plan(&all, Target::Hlc(120)).unwrap();
        assert_eq!(ids(&p), ["log-1-10", "log-11-20"]);
        let p = plan(&all, Target::Index(15)).unwrap();
        assert_eq!(ids(&p), ["snapshot-0-15"]);
        let p = plan(&all, Target::Latest).unwrap();
        assert_eq!(p.reach(), 30);
        let p = plan(&all, Target::Hlc(999)).unwrap();
        assert!(p.archive_ends_before_target);
        assert_eq!(p.reach(), 30);
    }

    #[test]
    fn overlapping_segments_chain_by_the_furthest_reach() {
        let all = vec![
            manifest(KIND_LOG, 1, 10, 100),
            manifest(KIND_LOG, 5, 14, 140),
            manifest(KIND_LOG, 11, 12, 120),
            manifest(KIND_LOG, 15, 20, 200),
        ];
        let p = plan(&all, Target::Latest).unwrap();
        assert_eq!(ids(&p), ["log-1-10", "log-5-14", "log-15-20"]);
    }

    #[test]
    fn refuses_gaps_and_missing_starts_naming_the_range() {
        let gap = vec![
            manifest(KIND_LOG, 1, 10, 100),
            manifest(KIND_LOG, 14, 20, 200),
        ];
        let e = plan(&gap, Target::Hlc(150)).unwrap_err().to_string();
        assert!(e.contains("entries 11..=13"), "{e}");
        let e = plan(&gap, Target::Index(12)).unwrap_err().to_string();
        assert!(e.contains("cover up to index 10"), "{e}");
        assert!(plan(&gap, Target::Hlc(90)).is_ok());
        let late = vec![manifest(KIND_LOG, 5, 10, 100)];
        let e = plan(&late, Target::Latest).unwrap_err().to_string();
        assert!(e.contains("starts at index 5"), "{e}");
        assert!(matches!(
            plan(&[], Target::Latest),
            Err(RestoreError::NothingToRestore)
        ));
        let snap_only = vec![manifest(KIND_SNAPSHOT, 0, 40, 400)];
        let e = plan(&snap_only, Target::Index(41)).unwrap_err().to_string();
        assert!(e.contains("cover up to index 40"), "{e}");
        assert_eq!(plan(&snap_only, Target::Hlc(500)).unwrap().reach(), 40);
    }

    /// Concurrent writes share one log entry (a batch); an instant inside the batch
    /// restores exactly the commands stamped at or before it.
    #[tokio::test]
    async fn an_instant_inside_a_batch_restores_only_the_commands_stamped_before_it() {
        use crate::command::{Command, Operation};
        use openraft::{CommittedLeaderId, EntryPayload, LogId};
        let put = |k: &str, hlc: u64| Command {
            hlc,
            op: Operation::Put {
                key: k.as_bytes().to_vec(),
                value: Bytes::from_static(b"v"),
            },
        };
        let entry = |index: u64, cmd: Command| Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(cmd),
        };
        let batch = Command {
            hlc: 40,
            op: Operation::Batch(vec![put("b", 20), put("c", 30), put("d", 40)]),
        };
        let segment = Segment::new(vec![entry(1, put("a", 10)), entry(2, batch)]).unwrap();
        for (t, keys, hlc) in [(35, 3, 30), (40, 4, 40), (15, 1, 10)] {
            let dir = tempfile::TempDir::new().unwrap();
            let r = replay(None, [Ok(segment.clone())], Target::Hlc(t), dir.path())
                .await
                .unwrap();
            assert_eq!((r.keys, r.last_hlc), (keys, hlc), "at {t}");
        }
    }
}
