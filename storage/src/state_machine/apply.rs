//! Applying committed entries: evaluates commands against the tree plus an overlay of the
//! writes made earlier in the same batch, then commits data and metadata in one atomic
//! sled batch. Deterministic: reads nothing but the entries and the tree.

use std::collections::BTreeMap;

use openraft::EntryPayload;

use super::keyspace::{
    data_key, META_APPLIED, META_ARCHIVED, META_CLUSTER, META_LAST_HLC, META_MEMBERSHIP,
};
use super::value::StoredValue;
use super::view::KvView;
use crate::cluster_config::ClusterConfig;
use crate::command::{
    Command, CommandResponse, Compare, CompareOp, CompareTarget, Operation, Outcome, TxnOp,
};
use crate::error::StateMachineError;
use crate::types::{Entry, LogId, StoredMembership};

/// Accumulates the effects of a batch of entries before they are written atomically.
pub(crate) struct ApplyBatch<'a> {
    view: &'a KvView,
    overlay: BTreeMap<Vec<u8>, Option<StoredValue>>,
    applied: Option<LogId>,
    membership: Option<StoredMembership>,
    last_hlc: u64,
    /// Set when the batch holds an archive mark: the highest `through` seen.
    archived: Option<u64>,
    /// Set when the batch changed the cluster config: the config after the batch.
    cluster: Option<ClusterConfig>,
}

impl<'a> ApplyBatch<'a> {
    pub(crate) fn new(view: &'a KvView) -> Result<Self, StateMachineError> {
        Ok(ApplyBatch {
            view,
            overlay: BTreeMap::new(),
            applied: None,
            membership: None,
            last_hlc: view.last_hlc()?,
            archived: None,
            cluster: None,
        })
    }

    /// Applies one entry to the overlay and returns its response.
    pub(crate) fn apply(&mut self, entry: &Entry) -> Result<CommandResponse, StateMachineError> {
        self.applied = Some(entry.log_id);
        match &entry.payload {
            EntryPayload::Blank => Ok(CommandResponse::nothing()),
            EntryPayload::Membership(m) => {
                self.membership = Some(StoredMembership::new(Some(entry.log_id), m.clone()));
                Ok(CommandResponse::nothing())
            }
            EntryPayload::Normal(cmd) => self.apply_command(entry.log_id.index, cmd),
        }
    }

    fn apply_command(
        &mut self,
        index: u64,
        cmd: &Command,
    ) -> Result<CommandResponse, StateMachineError> {
        self.last_hlc = self.last_hlc.max(cmd.hlc);
        let outcome = match &cmd.op {
            Operation::Noop => Outcome::Nothing,
            Operation::ArchiveMark { through } => {
                self.archived = Some(self.archived.unwrap_or(0).max(*through));
                Outcome::Nothing
            }
            Operation::SetBackupTargets(targets) => {
                self.cluster()?.backup_targets = targets.clone();
                Outcome::Nothing
            }
            Operation::RecordBackup(manifest) => {
                self.cluster()?.record_backup(manifest.as_ref().clone());
                Outcome::Nothing
            }
            Operation::Batch(cmds) => {
                let mut outcomes = Vec::with_capacity(cmds.len());
                for c in cmds {
                    outcomes.push(self.apply_command(index, c)?);
                }
                Outcome::Batch(outcomes)
            }
            Operation::ForgetBackups(ids) => {
                let cluster = self.cluster()?;
                for id in ids {
                    cluster.backups.remove(id);
                }
                Outcome::Nothing
            }
            Operation::Put { key, value } => Outcome::Put {
                version: self.put(key, value, index, cmd.hlc)?,
            },
            Operation::Delete { key } => Outcome::Delete {
                existed: self.delete(key)?,
            },
            Operation::Txn(txn) => {
                let mut holds = true;
                for c in &txn.compares {
                    holds &= self.compare(c)?;
                }
                let branch = if holds { &txn.success } else { &txn.failure };
                for op in branch {
                    match op {
                        TxnOp::Put { key, value } => {
                            self.put(key, value, index, cmd.hlc)?;
                        }
                        TxnOp::Delete { key } => {
                            self.delete(key)?;
                        }
                    }
                }
                Outcome::Txn { succeeded: holds }
            }
        };
        Ok(CommandResponse {
            hlc: cmd.hlc,
            outcome,
        })
    }

    /// The cluster config as this batch changes it (read from the tree on first use).
    fn cluster(&mut self) -> Result<&mut ClusterConfig, StateMachineError> {
        if self.cluster.is_none() {
            self.cluster = Some(self.view.cluster_config()?);
        }
        Ok(self.cluster.get_or_insert_with(ClusterConfig::default))
    }

    fn current(&self, key: &[u8]) -> Result<Option<StoredValue>, StateMachineError> {
        match self.overlay.get(key) {
            Some(v) => Ok(v.clone()),
            None => self.view.get_unguarded(key),
        }
    }

    fn put(
        &mut self,
        key: &[u8],
        value: &[u8],
        index: u64,
        hlc: u64,
    ) -> Result<u64, StateMachineError> {
        let prev = self.current(key)?;
        let stored = StoredValue {
            value: value.to_vec(),
            version: prev.as_ref().map(|p| p.version + 1).unwrap_or(1),
            create_index: prev.as_ref().map(|p| p.create_index).unwrap_or(index),
            mod_index: index,
            mod_hlc: hlc,
        };
        let version = stored.version;
        self.overlay.insert(key.to_vec(), Some(stored));
        Ok(version)
    }

    fn delete(&mut self, key: &[u8]) -> Result<bool, StateMachineError> {
        let existed = self.current(key)?.is_some();
        self.overlay.insert(key.to_vec(), None);
        Ok(existed)
    }

    fn compare(&self, c: &Compare) -> Result<bool, StateMachineError> {
        let current = self.current(&c.key)?;
        let ordering = match &c.target {
            CompareTarget::Version(v) => current.map(|s| s.version).unwrap_or(0).cmp(v),
            CompareTarget::Value(target) => {
                let cur = current.map(|s| s.value);
                match (cur, target) {
                    (Some(a), Some(b)) => a.as_slice().cmp(b.as_slice()),
                    (None, None) => std::cmp::Ordering::Equal,
                    // Absent compares unequal to any value, and is neither greater nor less.
                    _ => return Ok(c.op == CompareOp::NotEqual),
                }
            }
        };
        Ok(match c.op {
            CompareOp::Equal => ordering.is_eq(),
            CompareOp::NotEqual => ordering.is_ne(),
            CompareOp::Greater => ordering.is_gt(),
            CompareOp::Less => ordering.is_lt(),
        })
    }

    /// Writes every effect plus the applied id, membership and HLC in one atomic batch.
    /// Returns the archive mark the batch raised, if any.
    pub(crate) fn commit(self) -> Result<Option<u64>, StateMachineError> {
        let mut batch = sled::Batch::default();
        for (key, value) in &self.overlay {
            match value {
                Some(v) => batch.insert(data_key(key), v.encode()),
                None => batch.remove(data_key(key)),
            }
        }
        batch.insert(META_APPLIED, encode_meta(&self.applied)?);
        if let Some(m) = &self.membership {
            batch.insert(META_MEMBERSHIP, encode_meta(m)?);
        }
        batch.insert(META_LAST_HLC, encode_meta(&self.last_hlc)?);
        if let Some(cluster) = &self.cluster {
            batch.insert(META_CLUSTER, cluster.encode());
        }
        let archived = match self.archived {
            Some(through) => {
                let stored = self.view.meta::<u64>(META_ARCHIVED)?.unwrap_or(0);
                let raised = stored.max(through);
                batch.insert(META_ARCHIVED, encode_meta(&raised)?);
                Some(raised)
            }
            None => None,
        };
        let _gate = self.view.write_gate();
        // A snapshot being written needs the values these keys had before this batch.
        self.view
            .captures
            .record(&self.view.tree, self.overlay.keys())?;
        self.view.tree.apply_batch(batch)?;
        Ok(archived)
    }
}

pub(crate) fn encode_meta<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, StateMachineError> {
    postcard::to_allocvec(value).map_err(|e| StateMachineError::Meta {
        name: "encode".into(),
        reason: e.to_string(),
    })
}
