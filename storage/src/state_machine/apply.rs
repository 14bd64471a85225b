//! Applying committed entries: evaluates commands (put, delete, compare-and-swap
//! transactions, cluster config changes) against the in-memory state under its
//! exclusive lock. Deterministic: reads nothing but the entries and the state.

use std::sync::{Arc, RwLockWriteGuard};

use bytes::Bytes;
use openraft::EntryPayload;

use super::state::State;
use super::value::StoredValue;
use crate::cluster_config::ClusterConfig;
use crate::command::{
    Command, CommandResponse, Compare, CompareOp, CompareTarget, Operation, Outcome, TxnOp,
};
use crate::error::StateMachineError;
use crate::types::{Entry, StoredMembership};

/// Applies a batch of entries to the state, holding its exclusive lock throughout, so
/// that readers see all of the batch or none of it.
pub(crate) struct ApplyBatch<'a> {
    state: RwLockWriteGuard<'a, State>,
    /// Set when the batch holds an archive mark: the highest `through` seen.
    archived: Option<u64>,
}

impl<'a> ApplyBatch<'a> {
    pub(crate) fn new(state: RwLockWriteGuard<'a, State>) -> Self {
        ApplyBatch {
            state,
            archived: None,
        }
    }

    /// Applies one entry and returns its response.
    pub(crate) fn apply(&mut self, entry: &Entry) -> Result<CommandResponse, StateMachineError> {
        self.state.applied = Some(entry.log_id);
        match &entry.payload {
            EntryPayload::Blank => Ok(CommandResponse::nothing()),
            EntryPayload::Membership(m) => {
                self.state.membership = StoredMembership::new(Some(entry.log_id), m.clone());
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
        self.state.last_hlc = self.state.last_hlc.max(cmd.hlc);
        let outcome = match &cmd.op {
            Operation::Noop => Outcome::Nothing,
            Operation::ArchiveMark { through } => {
                self.archived = Some(self.archived.unwrap_or(0).max(*through));
                Outcome::Nothing
            }
            Operation::SetBackupTargets(targets) => {
                self.cluster().backup_targets = targets.clone();
                Outcome::Nothing
            }
            Operation::RecordBackup(manifest) => {
                self.cluster().record_backup(manifest.as_ref().clone());
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
                let cluster = self.cluster();
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

    /// The cluster config, to be changed by this batch.
    fn cluster(&mut self) -> &mut ClusterConfig {
        Arc::make_mut(&mut self.state.cluster)
    }

    fn current(&self, key: &[u8]) -> Option<&StoredValue> {
        self.state.data.get(key).map(|v| v.as_ref())
    }

    fn put(
        &mut self,
        key: &[u8],
        value: &Bytes,
        index: u64,
        hlc: u64,
    ) -> Result<u64, StateMachineError> {
        // One lookup for a key that exists (the common case under load), two for a new one.
        if let Some(slot) = self.state.data.get_mut(key) {
            let stored = StoredValue {
                value: value.clone(),
                version: slot.version + 1,
                create_index: slot.create_index,
                mod_index: index,
                mod_hlc: hlc,
            };
            let version = stored.version;
            *slot = Arc::new(stored);
            return Ok(version);
        }
        let stored = StoredValue {
            value: value.clone(),
            version: 1,
            create_index: index,
            mod_index: index,
            mod_hlc: hlc,
        };
        self.state.data.insert(Arc::from(key), Arc::new(stored));
        Ok(1)
    }

    fn delete(&mut self, key: &[u8]) -> Result<bool, StateMachineError> {
        Ok(self.state.data.remove(key).is_some())
    }

    fn compare(&self, c: &Compare) -> Result<bool, StateMachineError> {
        let current = self.current(&c.key);
        let ordering = match &c.target {
            CompareTarget::Version(v) => current.map(|s| s.version).unwrap_or(0).cmp(v),
            CompareTarget::Value(target) => {
                let cur = current.map(|s| &s.value[..]);
                match (cur, target) {
                    (Some(a), Some(b)) => a.cmp(b.as_slice()),
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

    /// Ends the batch, releasing the state's lock. Returns the highest archive mark the
    /// batch applied, if any.
    pub(crate) fn finish(self) -> Option<u64> {
        self.archived
    }
}
