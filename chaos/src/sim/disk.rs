//! The simulated disk of one node and the Raft log on it. Entries reach the "page cache"
//! when appended and become durable only when the simulated fsync, which takes simulated
//! time, completes. A process kill keeps the page cache; a power loss drops every entry not
//! yet fsynced. The vote and truncations are durable before their call returns, as in the
//! real log (`reprise_storage::log`). A full disk refuses appends and votes with ENOSPC.
//!
//! `append` returns only after the fsync, which is the property openraft 0.9 needs (it
//! answers a leader's AppendEntries as soon as `append` returns). The planted bug
//! [`SimBug::AckBeforeFsync`] breaks exactly that, for the checker tests.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{OptionalSend, StorageIOError, Vote};
use reprise_storage::types::{Entry, LogId, RaftStorageError};
use reprise_storage::{NodeId, TypeConfig};
use serde::Serialize;

/// Deliberately broken behaviours of the simulation, for checker tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SimBug {
    /// `append` returns (and the entries count as flushed) before the fsync completes.
    AckBeforeFsync,
}

#[derive(Debug, Default)]
struct DiskState {
    /// Entries by index with whether they are fsynced.
    entries: BTreeMap<u64, (Entry, bool)>,
    vote: Option<Vote<NodeId>>,
    /// Bumped by every crash: an fsync started before it never completes.
    generation: u64,
    /// The disk is full: writes fail with "no space left on device".
    full: bool,
    /// Writes refused because the disk was full.
    refused: u64,
}

/// One node's disk; survives the node's crashes (held by the simulation, not the host).
#[derive(Debug, Clone, Default)]
pub struct SimDisk {
    state: Arc<Mutex<DiskState>>,
}

impl SimDisk {
    fn lock(&self) -> MutexGuard<'_, DiskState> {
        // Only plain data is held under the lock; a poisoned one is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The process died: in-flight fsyncs never complete, the page cache survives.
    pub fn kill(&self) {
        self.lock().generation += 1;
    }

    /// Power lost: in-flight fsyncs never complete and every entry from the first one not
    /// fsynced on is gone. Returns how many entries were lost.
    pub fn power_loss(&self) -> usize {
        let mut s = self.lock();
        s.generation += 1;
        let first_volatile = s
            .entries
            .iter()
            .find(|(_, (_, synced))| !synced)
            .map(|(i, _)| *i);
        match first_volatile {
            Some(i) => s.entries.split_off(&i).len(),
            None => 0,
        }
    }

    /// Fills the disk (`true`) or frees space again (`false`).
    pub fn set_full(&self, full: bool) {
        self.lock().full = full;
    }

    /// Writes refused so far because the disk was full.
    pub fn refused_writes(&self) -> u64 {
        self.lock().refused
    }

    /// Index of the last entry on disk (durable or not).
    pub fn last_index(&self) -> Option<u64> {
        self.lock().entries.keys().next_back().copied()
    }

    /// Whether nothing was ever written (the node has never started).
    pub fn is_blank(&self) -> bool {
        let s = self.lock();
        s.entries.is_empty() && s.vote.is_none()
    }
}

/// openraft's log storage over a [`SimDisk`].
#[derive(Clone)]
pub struct SimLogStore {
    disk: SimDisk,
    fsync: Duration,
    bug: Option<SimBug>,
}

impl SimLogStore {
    pub fn new(disk: SimDisk, fsync: Duration, bug: Option<SimBug>) -> Self {
        SimLogStore { disk, fsync, bug }
    }
}

impl RaftLogReader<TypeConfig> for SimLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, RaftStorageError> {
        let s = self.disk.lock();
        Ok(s.entries
            .range(range)
            .map(|(_, (e, _))| e.clone())
            .collect())
    }
}

fn no_space() -> std::io::Error {
    std::io::Error::from_raw_os_error(28) // ENOSPC
}

/// Marks the entries up to `through` fsynced (what was written before the fsync began),
/// unless a crash happened since `generation`.
fn complete_fsync(disk: &SimDisk, generation: u64, through: u64) -> bool {
    let mut s = disk.lock();
    if s.generation != generation {
        return false;
    }
    for (_, synced) in s.entries.range_mut(..=through).map(|(_, v)| v) {
        *synced = true;
    }
    true
}

impl RaftLogStorage<TypeConfig> for SimLogStore {
    type LogReader = SimLogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, RaftStorageError> {
        let s = self.disk.lock();
        Ok(LogState {
            last_purged_log_id: None,
            last_log_id: s.entries.values().next_back().map(|(e, _)| e.log_id),
        })
    }

    async fn get_log_reader(&mut self) -> SimLogStore {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), RaftStorageError> {
        let mut s = self.disk.lock();
        if s.full {
            s.refused += 1;
            return Err(StorageIOError::write_vote(&no_space()).into());
        }
        s.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, RaftStorageError> {
        Ok(self.disk.lock().vote)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), RaftStorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let (generation, through) = {
            let mut s = self.disk.lock();
            if s.full {
                // Like the real log writer: nothing written, the error goes to openraft,
                // which stops this node until it is restarted.
                s.refused += 1;
                return Err(StorageIOError::write_logs(&no_space()).into());
            }
            let mut through = 0;
            for e in entries {
                through = e.log_id.index;
                s.entries.insert(e.log_id.index, (e, false));
            }
            (s.generation, through)
        };
        if self.bug == Some(SimBug::AckBeforeFsync) {
            callback.log_io_completed(Ok(()));
            let (disk, fsync) = (self.disk.clone(), self.fsync);
            tokio::task::spawn_local(async move {
                tokio::time::sleep(fsync).await;
                complete_fsync(&disk, generation, through);
            });
            return Ok(());
        }
        tokio::time::sleep(self.fsync).await;
        if complete_fsync(&self.disk, generation, through) {
            callback.log_io_completed(Ok(()));
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), RaftStorageError> {
        drop(self.disk.lock().entries.split_off(&log_id.index));
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), RaftStorageError> {
        // The simulation never snapshots, so openraft never purges; keep the call honest.
        let mut s = self.disk.lock();
        let keep = s.entries.split_off(&(log_id.index + 1));
        s.entries = keep;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;

    fn entry(index: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    fn put(disk: &SimDisk, index: u64, synced: bool) {
        disk.lock().entries.insert(index, (entry(index), synced));
    }

    #[test]
    fn power_loss_drops_the_unsynced_tail_and_a_kill_drops_nothing() {
        let disk = SimDisk::default();
        for i in 1..=3 {
            put(&disk, i, true);
        }
        for i in 4..=6 {
            put(&disk, i, false);
        }
        disk.kill();
        assert_eq!(disk.last_index(), Some(6));
        assert_eq!(disk.power_loss(), 3);
        assert_eq!(disk.last_index(), Some(3));
        assert_eq!(disk.power_loss(), 0);
    }

    #[test]
    fn an_fsync_covers_only_what_was_written_before_it() {
        let disk = SimDisk::default();
        put(&disk, 1, false);
        put(&disk, 2, false);
        let generation = disk.lock().generation;
        assert!(complete_fsync(&disk, generation, 1));
        assert_eq!(disk.power_loss(), 1);
        assert_eq!(disk.last_index(), Some(1));
    }

    #[test]
    fn an_fsync_started_before_a_crash_never_completes() {
        let disk = SimDisk::default();
        put(&disk, 1, false);
        let generation = disk.lock().generation;
        disk.kill();
        assert!(!complete_fsync(&disk, generation, 1));
        assert_eq!(disk.power_loss(), 1);
    }
}
