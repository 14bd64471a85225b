//! `LogStore`: openraft's `RaftLogStorage` over our segment files. Entries not yet purged
//! are also kept decoded in memory (bounded by the snapshot policy), so reads never touch
//! the disk; every change goes through the `LogWriter` on the caller's thread, and an
//! `append` returns (and fires openraft's flush callback) only after fdatasync.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::{Range, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{OptionalSend, StorageIOError, Vote};
use thiserror::Error;

use super::segment::{SegmentLog, SegmentLogError, SegmentLogOptions};
use super::writer::{LogWriter, PURGED_FILE};
use crate::atomic_file::{read_checked, write_atomic, AtomicFileError};
use crate::command::entry_payload_bytes;
use crate::types::{Entry, LogId, NodeId, RaftStorageError, TypeConfig};

/// File, in the log directory, holding the vote.
pub const VOTE_FILE: &str = "vote";

/// Why the log could not be opened.
#[derive(Debug, Error)]
pub enum LogOpenError {
    #[error(transparent)]
    Segment(#[from] SegmentLogError),
    #[error(transparent)]
    File(#[from] AtomicFileError),
    #[error("raft log entry {index} passed its checksum but cannot be decoded: {reason}")]
    Decode { index: u64, reason: String },
    #[error("cannot start the raft log's janitor thread: {0}")]
    Janitor(#[source] io::Error),
}

#[derive(Default)]
struct Inner {
    entries: BTreeMap<u64, Entry>,
    last_purged: Option<LogId>,
}

/// Shared in-memory view of the log, read by openraft's replication tasks.
#[derive(Clone, Default)]
pub struct LogReader {
    inner: Arc<Mutex<Inner>>,
}

impl LogReader {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock means a panic while holding it; the data is still consistent
        // because every critical section is a plain map update.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Consecutive entries from index `from` through at most `last`, in order: at most
    /// `max` of them, and none after the one that brings their payload to `max_bytes`.
    /// Fewer when the log ends or has a gap.
    pub fn entries_between(
        &self,
        from: u64,
        last: u64,
        max: usize,
        max_bytes: usize,
    ) -> Vec<Entry> {
        let (mut out, mut bytes) = (Vec::new(), 0usize);
        self.visit_between(from, last, |entry| {
            if out.len() == max || bytes >= max_bytes {
                return false;
            }
            bytes += entry_payload_bytes(entry);
            out.push(entry.clone());
            true
        });
        out
    }

    /// Payload bytes (`entry_payload_bytes`) of the consecutive entries from index `from`
    /// through at most `last`.
    pub fn payload_bytes_between(&self, from: u64, last: u64) -> usize {
        let mut bytes = 0usize;
        self.visit_between(from, last, |entry| {
            bytes += entry_payload_bytes(entry);
            true
        });
        bytes
    }

    /// Visits consecutive entries from `from` through at most `last` until `visit` says
    /// stop, the log ends or has a gap. The lock is taken once per few entries, so a long
    /// visit never holds up the write path's appends and replication's reads.
    fn visit_between(&self, from: u64, last: u64, mut visit: impl FnMut(&Entry) -> bool) {
        const ENTRIES_PER_LOCK: usize = 32;
        let mut next = from;
        while next <= last {
            let inner = self.lock();
            let before = next;
            for (&index, entry) in inner.entries.range(next..=last).take(ENTRIES_PER_LOCK) {
                if index != next || !visit(entry) {
                    return;
                }
                next += 1;
            }
            if next == before {
                return;
            }
        }
    }

    /// The index of the last purged entry (0 when nothing was purged).
    pub fn purged_index(&self) -> u64 {
        self.lock().last_purged.map(|l| l.index).unwrap_or(0)
    }
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, RaftStorageError> {
        Ok(self
            .lock()
            .entries
            .range(range)
            .map(|(_, e)| e.clone())
            .collect())
    }
}

/// The durable Raft log and vote of one node.
pub struct LogStore {
    reader: LogReader,
    dir: PathBuf,
    vote: Option<Vote<NodeId>>,
    writer: LogWriter,
    syncs: Arc<AtomicU64>,
    hlc_watermark: Arc<AtomicU64>,
    purge_limit: Arc<AtomicU64>,
    /// The entries of one append, encoded back to back. Kept between appends: a batch
    /// entry of 4 KiB values is hundreds of KiB, and a fresh buffer of that size each
    /// time lands on pages the kernel must zero first (about 5% of a follower's samples
    /// at 64 clients x 4 KiB; the A/B of keeping it was within noise).
    encoded: Vec<u8>,
}

impl LogStore {
    /// Opens the log in `dir`, recovering segments (torn tail truncated, corruption refused).
    pub fn open(dir: &Path, opts: SegmentLogOptions) -> Result<Self, LogOpenError> {
        let (segments, recovered) = SegmentLog::open(dir, opts)?;
        let last_purged: Option<LogId> = decode_file(dir, PURGED_FILE)?;
        let vote: Option<Vote<NodeId>> = decode_file(dir, VOTE_FILE)?;
        let floor = last_purged.map(|l| l.index);
        let mut entries = BTreeMap::new();
        for (index, bytes) in recovered.entries {
            if floor.is_some_and(|f| index <= f) {
                continue;
            }
            let entry: Entry = postcard::from_bytes(&bytes).map_err(|e| LogOpenError::Decode {
                index,
                reason: e.to_string(),
            })?;
            entries.insert(index, entry);
        }
        let highest = entries.values().filter_map(entry_hlc).max().unwrap_or(0);
        let syncs = Arc::new(AtomicU64::new(0));
        let writer = LogWriter::new(segments, dir.to_path_buf(), syncs.clone())
            .map_err(LogOpenError::Janitor)?;
        Ok(LogStore {
            reader: LogReader {
                inner: Arc::new(Mutex::new(Inner {
                    entries,
                    last_purged,
                })),
            },
            dir: dir.to_path_buf(),
            vote,
            writer,
            syncs,
            hlc_watermark: Arc::new(AtomicU64::new(highest)),
            purge_limit: Arc::new(AtomicU64::new(u64::MAX)),
            encoded: Vec::new(),
        })
    }

    /// Never purge past `limit` (read at every purge): with a log archive, entries not yet
    /// archived must stay. openraft still believes it purged what it asked for; the entries
    /// kept are only served to nobody and purged at a later request. A purge past the end
    /// of the log (after installing a snapshot) is never held back. No limit by default.
    pub fn limit_purge_to(&mut self, limit: Arc<AtomicU64>) {
        self.purge_limit = limit;
    }

    /// A handle reading the entries kept in memory (shared with openraft's reader).
    pub fn reader(&self) -> LogReader {
        self.reader.clone()
    }

    /// The highest HLC stamp of any command ever appended to this log (shared, updated on
    /// every append). A new leader's log holds every committed entry, so stamping above
    /// this keeps stamps increasing across leaders even before it applied them.
    pub fn hlc_watermark(&self) -> Arc<AtomicU64> {
        self.hlc_watermark.clone()
    }

    /// fdatasync calls made by appends so far: one per append, however many entries it holds.
    pub fn sync_count(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    /// Appends already-stamped entries; they are durable (one fdatasync) when this
    /// returns. openraft's `append` is this plus its flush callback.
    pub fn append_entries(&mut self, entries: impl IntoIterator<Item = Entry>) -> io::Result<()> {
        let located = self.encode(entries).map_err(io::Error::other)?;
        self.writer
            .append(&encoded_records(&self.encoded, &located))
    }

    /// Encodes `entries` for the segment files into `self.encoded` and adds them to the
    /// in-memory log. Returns each entry's index and where its encoding lies.
    fn encode(
        &mut self,
        entries: impl IntoIterator<Item = Entry>,
    ) -> Result<Vec<(u64, Range<usize>)>, postcard::Error> {
        let mut records = Vec::new();
        self.encoded.clear();
        let mut inner = self.reader.lock();
        for entry in entries {
            let index = entry.log_id.index;
            let start = self.encoded.len();
            crate::encoding::append_exact(&entry, &mut self.encoded)?;
            records.push((index, start..self.encoded.len()));
            if let Some(hlc) = entry_hlc(&entry) {
                self.hlc_watermark.fetch_max(hlc, Ordering::Relaxed);
            }
            inner.entries.insert(index, entry);
        }
        Ok(records)
    }
}

/// The records `LogStore::encode` located, as slices of the buffer it encoded them into.
fn encoded_records<'a>(encoded: &'a [u8], located: &[(u64, Range<usize>)]) -> Vec<(u64, &'a [u8])> {
    located
        .iter()
        .map(|(index, range)| (*index, &encoded[range.clone()]))
        .collect()
}

fn decode_file<T: serde::de::DeserializeOwned>(
    dir: &Path,
    name: &str,
) -> Result<Option<T>, LogOpenError> {
    let Some(bytes) = read_checked(dir, name)? else {
        return Ok(None);
    };
    let bad = |reason: String| LogOpenError::Decode {
        index: 0,
        reason: format!("{name} file: {reason}"),
    };
    match postcard::take_from_bytes::<T>(&bytes) {
        Ok((value, [])) => Ok(Some(value)),
        Ok((_, rest)) => Err(bad(format!("{} unexpected trailing bytes", rest.len()))),
        Err(e) => Err(bad(e.to_string())),
    }
}

fn entry_hlc(entry: &Entry) -> Option<u64> {
    match &entry.payload {
        openraft::EntryPayload::Normal(cmd) => Some(cmd.hlc),
        _ => None,
    }
}

fn log_io(e: io::Error) -> RaftStorageError {
    StorageIOError::write_logs(&e).into()
}

fn encode_err(e: postcard::Error) -> RaftStorageError {
    StorageIOError::write_logs(&e).into()
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, RaftStorageError> {
        self.reader.try_get_log_entries(range).await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, RaftStorageError> {
        let inner = self.reader.lock();
        let last = inner.entries.values().next_back().map(|e| e.log_id);
        Ok(LogState {
            last_purged_log_id: inner.last_purged,
            last_log_id: last.or(inner.last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> LogReader {
        self.reader.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), RaftStorageError> {
        let bytes = postcard::to_allocvec(vote).map_err(|e| StorageIOError::write_vote(&e))?;
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || write_atomic(&dir, VOTE_FILE, &bytes))
            .await
            .map_err(|e| StorageIOError::write_vote(&e))?
            .map_err(|e| StorageIOError::write_vote(&e))?;
        self.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, RaftStorageError> {
        Ok(self.vote)
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
        // openraft 0.9 answers a leader's AppendEntries as soon as `append` returns, without
        // waiting for the flush callback (its `Condition::LogFlushed` is unimplemented), and
        // the leader counts that answer towards the commit quorum. So `append` itself must
        // not return before the entries are fdatasync'ed, or a follower could acknowledge
        // entries it then loses. The write and the fdatasync run right here, on the
        // calling task's thread: `RaftCore` waits for this flush before anything else it
        // does, and a hand-off to another thread would cost two wake-ups per fsync.
        let located = self.encode(entries).map_err(encode_err)?;
        let r = self
            .writer
            .append(&encoded_records(&self.encoded, &located));
        let copy = r
            .as_ref()
            .map(|_| ())
            .map_err(|e| io::Error::new(e.kind(), e.to_string()));
        callback.log_io_completed(copy);
        r.map_err(log_io)
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), RaftStorageError> {
        drop(self.reader.lock().entries.split_off(&log_id.index));
        self.writer.truncate(log_id.index).map_err(log_io)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), RaftStorageError> {
        let limit = self.purge_limit.load(Ordering::Acquire);
        let last = self.reader.lock().entries.keys().next_back().copied();
        // A purge past the end of the log follows a snapshot install on a lagging node:
        // the next entries start after the snapshot, so everything must go (the limit only
        // holds back entries a leader could still archive, and these were never appended
        // here in order).
        let past_end = last.is_none_or(|l| log_id.index > l);
        let log_id = if log_id.index <= limit || past_end {
            log_id
        } else {
            match self.reader.lock().entries.get(&limit) {
                Some(kept) => kept.log_id,
                // The limit is at or below what was already purged: nothing to do.
                None => return Ok(()),
            }
        };
        let purged = {
            let mut inner = self.reader.lock();
            let keep = inner.entries.split_off(&(log_id.index + 1));
            inner.last_purged = Some(log_id);
            std::mem::replace(&mut inner.entries, keep)
        };
        let purged_record = postcard::to_allocvec(&log_id).map_err(encode_err)?;
        // The purged entries are freed by the log's janitor, off the Raft path.
        self.writer
            .purge(log_id.index, purged_record, Box::new(purged))
            .map_err(log_io)
    }
}
