//! Read-only view of the state machine for the read path (get, scan) and for state
//! checksums. Cheap to clone. Reads hold the shared side of the state's lock for one
//! lookup or one bounded scan; an apply batch (and a snapshot install) holds the
//! exclusive side, so a read never observes half of a transaction or of an install.
//! Whole-state reads (checksums, snapshots) take an O(1) copy of the state and read it
//! without holding the lock.

use std::ops::Bound;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::state::State;
use super::value::StoredValue;
use crate::cluster_config::ClusterConfig;
use crate::error::StateMachineError;
use crate::types::{LogId, StoredMembership};

/// Read handle on the state machine's state.
#[derive(Clone)]
pub struct KvView {
    state: Arc<RwLock<State>>,
}

/// One key and its stored value, as returned by scans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Vec<u8>,
    pub value: StoredValue,
}

/// A state checksum taken at a known applied index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateChecksum {
    pub applied_index: u64,
    pub keys: u64,
    /// blake3 over `(len key, key, version, len value, value)` of every key in order.
    pub digest: [u8; 32],
}

impl StateChecksum {
    /// Lowercase hex of the digest.
    pub fn hex(&self) -> String {
        self.digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl KvView {
    pub(crate) fn new() -> Self {
        KvView {
            state: Arc::new(RwLock::new(State::default())),
        }
    }

    /// Shared side of the state's lock: held by reads.
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Exclusive side of the state's lock: held while a batch is applied or a snapshot
    /// installed.
    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// A point-in-time copy of the whole state (shares structure; O(1)).
    pub(crate) fn copy(&self) -> State {
        self.read().clone()
    }

    /// Current value of `key`, or None when absent.
    pub fn get(&self, key: &[u8]) -> Result<Option<StoredValue>, StateMachineError> {
        Ok(self.read().data.get(key).map(|v| StoredValue::clone(v)))
    }

    /// Keys in `[start, end)` (end None = unbounded), at most `limit` of them, in order.
    pub fn range(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<KeyValue>, StateMachineError> {
        let upper = match end {
            Some(end) if end <= start => return Ok(Vec::new()),
            Some(end) => Bound::Excluded(end),
            None => Bound::Unbounded,
        };
        let state = self.read();
        let out = state
            .data
            .range::<_, [u8]>((Bound::Included(start), upper))
            .take(limit)
            .map(|(k, v)| KeyValue {
                key: k.to_vec(),
                value: StoredValue::clone(v),
            })
            .collect();
        Ok(out)
    }

    /// Keys starting with `prefix`, from `start_after` (exclusive) on, at most `limit`.
    pub fn prefix(
        &self,
        prefix: &[u8],
        start: &[u8],
        limit: usize,
    ) -> Result<Vec<KeyValue>, StateMachineError> {
        let end = prefix_end(prefix);
        let start = if start > prefix { start } else { prefix };
        self.range(start, end.as_deref(), limit)
    }

    /// Last applied log id.
    pub fn applied(&self) -> Result<Option<LogId>, StateMachineError> {
        Ok(self.read().applied)
    }

    /// Membership as of the last applied entry.
    pub(crate) fn membership(&self) -> StoredMembership {
        self.read().membership.clone()
    }

    /// The replicated cluster config (backup targets, backup catalog).
    pub fn cluster_config(&self) -> Result<ClusterConfig, StateMachineError> {
        Ok(ClusterConfig::clone(&self.read().cluster))
    }

    /// Highest HLC stamp applied so far (0 when nothing was applied).
    pub fn last_hlc(&self) -> Result<u64, StateMachineError> {
        Ok(self.read().last_hlc)
    }

    /// Checksum of the whole user state and the applied index it corresponds to.
    pub fn checksum(&self) -> Result<StateChecksum, StateMachineError> {
        let state = self.copy();
        let mut hasher = StateHasher::default();
        for (key, value) in state.data.iter() {
            hasher.push(key, value);
        }
        let (keys, digest) = hasher.finish();
        Ok(StateChecksum {
            applied_index: state.applied.map(|l| l.index).unwrap_or(0),
            keys,
            digest,
        })
    }
}

/// The smallest key strictly greater than every key starting with `prefix`, or None
/// when no such key exists (empty prefix, or all 0xff).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Bytes staged before they are handed to blake3. blake3 hashes many 1 KiB chunks at
/// once with SIMD only when one `update` brings several of them; a key's small fields
/// and a value that does not start on a chunk boundary would otherwise go through its
/// one-block-at-a-time path (measured: a follower spent 9% of its CPU in blake3 while
/// snapshotting 10,000 values of 4 KiB every few seconds).
const HASH_STAGING_BYTES: usize = 64 * 1024;

/// Incremental state checksum; the same definition is used for snapshots. The digest
/// is blake3 of the concatenated fields, so staging them changes nothing in it.
pub struct StateHasher {
    hasher: blake3::Hasher,
    staged: Vec<u8>,
    keys: u64,
}

impl Default for StateHasher {
    fn default() -> Self {
        StateHasher {
            hasher: blake3::Hasher::new(),
            staged: Vec::with_capacity(HASH_STAGING_BYTES),
            keys: 0,
        }
    }
}

impl StateHasher {
    /// Adds one key; keys must come in ascending order.
    pub fn push(&mut self, key: &[u8], value: &StoredValue) {
        self.stage(&(key.len() as u32).to_le_bytes());
        self.stage(key);
        self.stage(&value.version.to_le_bytes());
        self.stage(&(value.value.len() as u32).to_le_bytes());
        self.stage(&value.value);
        self.keys += 1;
    }

    fn stage(&mut self, bytes: &[u8]) {
        if self.staged.len() + bytes.len() > HASH_STAGING_BYTES {
            self.hasher.update(&self.staged);
            self.staged.clear();
        }
        if bytes.len() >= HASH_STAGING_BYTES {
            // Large enough to be hashed wide on its own.
            self.hasher.update(bytes);
        } else {
            self.staged.extend_from_slice(bytes);
        }
    }

    /// Number of keys and digest.
    pub fn finish(&self) -> (u64, [u8; 32]) {
        let mut hasher = self.hasher.clone();
        hasher.update(&self.staged);
        (self.keys, *hasher.finalize().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::{prefix_end, StateHasher, StoredValue};

    /// The digest is blake3 of every key's fields concatenated in order, however the
    /// hasher stages them: values below, at and above the staging size, including ones
    /// that straddle a flush.
    #[test]
    fn state_digest_is_blake3_of_the_fields_in_order() {
        let mut hasher = StateHasher::default();
        let mut plain = blake3::Hasher::new();
        let sizes = [
            0usize, 1, 4096, 70_000, 65_536, 65_535, 13, 200_000, 4096, 5,
        ];
        for (i, size) in sizes.iter().enumerate() {
            let key = format!("key-{i:03}").into_bytes();
            let value = StoredValue {
                value: (0..*size).map(|b| (b * 7 + i) as u8).collect(),
                version: i as u64 + 1,
                create_index: 1,
                mod_index: 2,
                mod_hlc: 3,
            };
            hasher.push(&key, &value);
            plain.update(&(key.len() as u32).to_le_bytes());
            plain.update(&key);
            plain.update(&value.version.to_le_bytes());
            plain.update(&(value.value.len() as u32).to_le_bytes());
            plain.update(&value.value);
            // finish() may be called midway and must not disturb what follows.
            assert_eq!(
                hasher.finish(),
                (i as u64 + 1, *plain.finalize().as_bytes())
            );
        }
        assert_eq!(hasher.finish().0, sizes.len() as u64);
    }

    #[test]
    fn prefix_end_is_the_first_key_past_the_prefix() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }
}
