//! Read-only view of the state machine for the read path (get, scan) and for state
//! checksums. Cheap to clone. sled iterators are not snapshots, so every read holds the
//! shared side of the apply gate and every apply batch (and snapshot load) the exclusive
//! side: a scan never observes half of a transaction or of a snapshot install. A snapshot
//! being written does not hold the gate: it reads through a capture (`capture.rs`).

use std::ops::Bound;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde::de::DeserializeOwned;

use super::capture::{AsOfCapture, Capture, CaptureGuard, Captures};
use super::keyspace::{
    data_key, prefix_end, user_key, DATA_PREFIX, META_APPLIED, META_CLUSTER, META_LAST_HLC,
};
use super::value::StoredValue;
use crate::cluster_config::ClusterConfig;
use crate::error::StateMachineError;
use crate::types::LogId;

/// Read handle on the state machine's tree.
#[derive(Clone)]
pub struct KvView {
    pub(crate) tree: sled::Tree,
    gate: Arc<RwLock<()>>,
    pub(crate) captures: Arc<Captures>,
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
    pub(crate) fn new(tree: sled::Tree) -> Self {
        KvView {
            tree,
            gate: Arc::new(RwLock::new(())),
            captures: Arc::new(Captures::default()),
        }
    }

    /// Opens a capture of the current state (see `capture.rs`); the caller makes sure no
    /// apply batch is being written.
    pub(crate) fn begin_capture(&self) -> CaptureGuard {
        self.captures.begin()
    }

    /// The data keys as they were when `capture` began, in order, as (tree key, raw value).
    pub(crate) fn as_of<'a>(&self, capture: &'a Capture) -> AsOfCapture<'a> {
        AsOfCapture::new(self.tree.scan_prefix([DATA_PREFIX]), capture)
    }

    /// Shared side of the apply gate: held by reads.
    fn read_gate(&self) -> RwLockReadGuard<'_, ()> {
        self.gate.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Exclusive side of the apply gate: held while a batch or snapshot is written.
    pub(crate) fn write_gate(&self) -> RwLockWriteGuard<'_, ()> {
        self.gate.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Current value of `key`, or None when absent.
    pub fn get(&self, key: &[u8]) -> Result<Option<StoredValue>, StateMachineError> {
        let _gate = self.read_gate();
        self.get_unguarded(key)
    }

    /// `get` for callers that already hold the gate (the apply path).
    pub(crate) fn get_unguarded(
        &self,
        key: &[u8],
    ) -> Result<Option<StoredValue>, StateMachineError> {
        match self.tree.get(data_key(key))? {
            Some(raw) => Ok(Some(StoredValue::decode(&raw)?)),
            None => Ok(None),
        }
    }

    /// Keys in `[start, end)` (end None = unbounded), at most `limit` of them, in order.
    pub fn range(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<KeyValue>, StateMachineError> {
        let lower = Bound::Included(data_key(start));
        let upper = match end {
            Some(end) => Bound::Excluded(data_key(end)),
            None => match prefix_end(&[DATA_PREFIX]) {
                Some(e) => Bound::Excluded(e),
                None => Bound::Unbounded,
            },
        };
        let mut out = Vec::new();
        let _gate = self.read_gate();
        for item in self.tree.range::<Vec<u8>, _>((lower, upper)).take(limit) {
            let (k, v) = item?;
            out.push(KeyValue {
                key: user_key(&k).to_vec(),
                value: StoredValue::decode(&v)?,
            });
        }
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
        self.meta(META_APPLIED).map(Option::flatten)
    }

    /// The replicated cluster config (backup targets, backup catalog).
    pub fn cluster_config(&self) -> Result<ClusterConfig, StateMachineError> {
        match self.tree.get(META_CLUSTER)? {
            Some(raw) => ClusterConfig::decode(&raw).map_err(|e| StateMachineError::Meta {
                name: "cluster config".into(),
                reason: e.to_string(),
            }),
            None => Ok(ClusterConfig::default()),
        }
    }

    /// Highest HLC stamp applied so far (0 when nothing was applied).
    pub fn last_hlc(&self) -> Result<u64, StateMachineError> {
        Ok(self.meta::<u64>(META_LAST_HLC)?.unwrap_or(0))
    }

    pub(crate) fn meta<T: DeserializeOwned>(
        &self,
        name: &[u8],
    ) -> Result<Option<T>, StateMachineError> {
        match self.tree.get(name)? {
            Some(raw) => Ok(Some(postcard::from_bytes(&raw).map_err(|e| {
                StateMachineError::Meta {
                    name: String::from_utf8_lossy(name).into_owned(),
                    reason: e.to_string(),
                }
            })?)),
            None => Ok(None),
        }
    }

    /// Checksum of the whole user state and the applied index it corresponds to.
    pub fn checksum(&self) -> Result<StateChecksum, StateMachineError> {
        let _gate = self.read_gate();
        let applied = self.applied()?;
        let mut hasher = StateHasher::default();
        for item in self.tree.scan_prefix([DATA_PREFIX]) {
            let (k, v) = item?;
            hasher.push(user_key(&k), &StoredValue::decode(&v)?);
        }
        let (keys, digest) = hasher.finish();
        Ok(StateChecksum {
            applied_index: applied.map(|l| l.index).unwrap_or(0),
            keys,
            digest,
        })
    }
}

/// Incremental state checksum; the same definition is used for snapshots.
#[derive(Default)]
pub struct StateHasher {
    hasher: blake3::Hasher,
    keys: u64,
}

impl StateHasher {
    /// Adds one key; keys must come in ascending order.
    pub fn push(&mut self, key: &[u8], value: &StoredValue) {
        self.hasher.update(&(key.len() as u32).to_le_bytes());
        self.hasher.update(key);
        self.hasher.update(&value.version.to_le_bytes());
        self.hasher
            .update(&(value.value.len() as u32).to_le_bytes());
        self.hasher.update(&value.value);
        self.keys += 1;
    }

    /// Number of keys and digest.
    pub fn finish(&self) -> (u64, [u8; 32]) {
        (self.keys, *self.hasher.finalize().as_bytes())
    }
}
