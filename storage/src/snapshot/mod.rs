//! Snapshot files: the durable copy of the state machine that allows log purging.

pub mod dir;
pub mod format;

pub use dir::{SnapshotDir, SnapshotFile};
pub use format::{SnapshotHeader, SnapshotReader, SnapshotWriter};
