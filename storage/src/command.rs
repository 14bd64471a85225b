//! Commands replicated through the Raft log and the responses the state machine returns.
//!
//! Every command carries the hybrid-logical-clock timestamp the leader stamped it with, so
//! the state machine never reads a clock and replays give identical results.
//!
//! Keys and values are serialized as byte strings (`serde_bytes`, and `Bytes`' own
//! byte-string form), so postcard copies them whole instead of one element at a time. Its
//! encoding (length, then the bytes) is the same as the per-element sequence written
//! before, so logs, snapshots and archives written earlier still decode
//! (`byte_fields_keep_the_earlier_encoding` below).
//!
//! A put's value is a reference-counted [`Bytes`]: the log's cache, every replication
//! stream, the archive and the state machine share one copy of it instead of each cloning
//! the value (at 4 KiB values those copies were the largest memcpy on the leader).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::backup::manifest::Manifest;
use crate::backup::target::BackupTargets;
use crate::types::Entry;

/// One replicated command: an operation plus the leader's HLC stamp.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// Hybrid logical clock timestamp assigned by the leader (see `reprise_node::hlc`).
    pub hlc: u64,
    /// What to do.
    pub op: Operation,
}

/// The operations the state machine knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Operation {
    /// Changes no data; used to confirm that a leader can commit (barrier).
    Noop,
    /// Set `key` to `value`.
    Put {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        value: Bytes,
    },
    /// Remove `key` (no error if absent).
    Delete {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// Compare-and-swap over several keys at once.
    Txn(Txn),
    /// Every entry up to `through` is stored in the log archive on every site; logs may
    /// be purged up to there. Changes no user data.
    ArchiveMark { through: u64 },
    /// Replaces the backup targets of every site in the cluster config.
    SetBackupTargets(BackupTargets),
    /// Records a snapshot backup whose shards and manifests are all stored.
    RecordBackup(Box<Manifest>),
    /// Forgets backups from the catalog (retention removed them).
    ForgetBackups(Vec<String>),
    /// Several commands proposed together as one log entry (many clients share one append
    /// and one fsync). Applied in order, atomically; each keeps its own stamp, and stamps
    /// increase through the batch (the entry's own stamp is the last one).
    Batch(Vec<Command>),
}

/// A transaction: if every compare holds, run `success`, otherwise run `failure`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Txn {
    pub compares: Vec<Compare>,
    pub success: Vec<TxnOp>,
    pub failure: Vec<TxnOp>,
}

/// One condition of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compare {
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    pub op: CompareOp,
    pub target: CompareTarget,
}

/// Relation between the key's current value/version and the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareOp {
    Equal,
    NotEqual,
    Greater,
    Less,
}

/// What a compare looks at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareTarget {
    /// The value; `None` stands for "key absent" (only meaningful with Equal / NotEqual).
    Value(#[serde(with = "serde_bytes")] Option<Vec<u8>>),
    /// The key's version: 0 when absent, 1 after creation, +1 on every put.
    Version(u64),
}

/// A write inside a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOp {
    Put {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        value: Bytes,
    },
    Delete {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
}

/// What applying one log entry produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandResponse {
    /// HLC stamp of the command (0 for blank and membership entries).
    pub hlc: u64,
    pub outcome: Outcome,
}

/// Outcome of one applied entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Blank, membership or no-op entry.
    Nothing,
    /// A put; the key's version after it.
    Put { version: u64 },
    /// A delete; whether the key existed.
    Delete { existed: bool },
    /// A transaction; whether the compares held (the success branch ran).
    Txn { succeeded: bool },
    /// A batch: one response per command, in order.
    Batch(Vec<CommandResponse>),
}

impl CommandResponse {
    /// Response for entries that carry no command (blank, membership).
    pub fn nothing() -> Self {
        CommandResponse {
            hlc: 0,
            outcome: Outcome::Nothing,
        }
    }
}

/// Approximate bytes an entry carries (keys and values, plus a small constant): what
/// batching limits count.
pub fn entry_payload_bytes(entry: &Entry) -> usize {
    const OVERHEAD: usize = 64;
    let ops = match &entry.payload {
        openraft::EntryPayload::Normal(cmd) => operation_bytes(&cmd.op),
        openraft::EntryPayload::Blank | openraft::EntryPayload::Membership(_) => 0,
    };
    ops + OVERHEAD
}

/// Approximate bytes an operation carries (keys and values).
pub fn operation_bytes(op: &Operation) -> usize {
    {
        match op {
            Operation::Put { key, value } => key.len() + value.len(),
            Operation::Delete { key } => key.len(),
            Operation::Txn(txn) => {
                let compares: usize = txn
                    .compares
                    .iter()
                    .map(|c| {
                        c.key.len()
                            + match &c.target {
                                CompareTarget::Value(v) => v.as_ref().map_or(0, Vec::len),
                                CompareTarget::Version(_) => 8,
                            }
                    })
                    .sum();
                let writes: usize = txn
                    .success
                    .iter()
                    .chain(&txn.failure)
                    .map(|op| match op {
                        TxnOp::Put { key, value } => key.len() + value.len(),
                        TxnOp::Delete { key } => key.len(),
                    })
                    .sum();
                compares + writes
            }
            Operation::Noop
            | Operation::ArchiveMark { .. }
            | Operation::SetBackupTargets(_)
            | Operation::RecordBackup(_)
            | Operation::ForgetBackups(_) => 0,
            Operation::Batch(cmds) => cmds.iter().map(|c| operation_bytes(&c.op) + 16).sum(),
        }
    }
}

impl Command {
    /// The commands of a batch up to and including the last one stamped at or before
    /// `hlc` (stamps increase through a batch); None when that is every command, or the
    /// command is not a batch.
    pub fn batch_prefix(&self, hlc: u64) -> Option<Command> {
        match &self.op {
            Operation::Batch(cmds) => {
                let kept: Vec<Command> =
                    cmds.iter().take_while(|c| c.hlc <= hlc).cloned().collect();
                (kept.len() < cmds.len()).then(|| Command {
                    hlc: kept.last().map_or(0, |c| c.hlc),
                    op: Operation::Batch(kept),
                })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The command shapes as they were serialized before keys and values became byte
    /// strings: plain `Vec<u8>`, a sequence of single bytes.
    mod earlier {
        use serde::{Deserialize, Serialize};

        #[derive(Serialize, Deserialize)]
        pub struct Command {
            pub hlc: u64,
            pub op: Operation,
        }

        #[derive(Serialize, Deserialize)]
        pub enum Operation {
            Noop,
            Put { key: Vec<u8>, value: Vec<u8> },
            Delete { key: Vec<u8> },
            Txn(Txn),
        }

        #[derive(Serialize, Deserialize)]
        pub struct Txn {
            pub compares: Vec<Compare>,
            pub success: Vec<TxnOp>,
            pub failure: Vec<TxnOp>,
        }

        #[derive(Serialize, Deserialize)]
        pub struct Compare {
            pub key: Vec<u8>,
            pub op: super::CompareOp,
            pub target: CompareTarget,
        }

        #[derive(Serialize, Deserialize)]
        pub enum CompareTarget {
            Value(Option<Vec<u8>>),
            Version(u64),
        }

        #[derive(Serialize, Deserialize)]
        pub enum TxnOp {
            Put { key: Vec<u8>, value: Vec<u8> },
            Delete { key: Vec<u8> },
        }
    }

    #[test]
    fn byte_fields_keep_the_earlier_encoding() {
        let value: Vec<u8> = (0..=255u8).cycle().take(300).collect();
        let cases = [
            (
                earlier::Command {
                    hlc: 7,
                    op: earlier::Operation::Put {
                        key: b"k1".to_vec(),
                        value: value.clone(),
                    },
                },
                Command {
                    hlc: 7,
                    op: Operation::Put {
                        key: b"k1".to_vec(),
                        value: Bytes::from(value.clone()),
                    },
                },
            ),
            (
                earlier::Command {
                    hlc: 8,
                    op: earlier::Operation::Txn(earlier::Txn {
                        compares: vec![
                            earlier::Compare {
                                key: b"a".to_vec(),
                                op: CompareOp::Equal,
                                target: earlier::CompareTarget::Value(Some(value.clone())),
                            },
                            earlier::Compare {
                                key: b"b".to_vec(),
                                op: CompareOp::NotEqual,
                                target: earlier::CompareTarget::Value(None),
                            },
                        ],
                        success: vec![earlier::TxnOp::Put {
                            key: b"c".to_vec(),
                            value: vec![],
                        }],
                        failure: vec![earlier::TxnOp::Delete { key: b"d".to_vec() }],
                    }),
                },
                Command {
                    hlc: 8,
                    op: Operation::Txn(Txn {
                        compares: vec![
                            Compare {
                                key: b"a".to_vec(),
                                op: CompareOp::Equal,
                                target: CompareTarget::Value(Some(value.clone())),
                            },
                            Compare {
                                key: b"b".to_vec(),
                                op: CompareOp::NotEqual,
                                target: CompareTarget::Value(None),
                            },
                        ],
                        success: vec![TxnOp::Put {
                            key: b"c".to_vec(),
                            value: Bytes::new(),
                        }],
                        failure: vec![TxnOp::Delete { key: b"d".to_vec() }],
                    }),
                },
            ),
            (
                earlier::Command {
                    hlc: 9,
                    op: earlier::Operation::Delete { key: value.clone() },
                },
                Command {
                    hlc: 9,
                    op: Operation::Delete { key: value.clone() },
                },
            ),
        ];
        for (old, new) in cases {
            let old_bytes = postcard::to_allocvec(&old).unwrap();
            assert_eq!(postcard::to_allocvec(&new).unwrap(), old_bytes);
            let decoded: Command = postcard::from_bytes(&old_bytes).unwrap();
            assert_eq!(decoded, new);
        }
    }
}
