//! Error types of the storage crate. Callers branch on these; openraft receives them
//! wrapped in its `StorageError`.

use std::path::PathBuf;

use thiserror::Error;

use crate::atomic_file::AtomicFileError;
use crate::state_machine::value::ValueDecodeError;

/// Failures of the state machine: its directory, its snapshot files, its archive mark.
#[derive(Debug, Error)]
pub enum StateMachineError {
    #[error("state machine directory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("state machine archive mark: {0}")]
    Archived(#[from] AtomicFileError),
    #[error(transparent)]
    Value(#[from] ValueDecodeError),
    #[error("state machine metadata {name}: {reason}")]
    Meta { name: String, reason: String },
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

/// Failures reading or writing snapshot files.
#[derive(Debug, Error)]
pub enum SnapshotError {
    #[error("snapshot file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("snapshot file {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

impl SnapshotError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        SnapshotError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn corrupt(path: &std::path::Path, reason: impl Into<String>) -> Self {
        SnapshotError::Corrupt {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
}
