//! reprise-storage: everything Reprise keeps on disk. The Raft log (our own segment files,
//! fdatasync, checksums, group commit), the vote, the in-memory state machine, and
//! snapshot files. No gRPC, no CLI, no clock: the state machine only knows what the log tells it.

pub mod atomic_file;
pub mod backup;
pub mod cluster_config;
pub mod command;
pub mod direct_file;
pub mod encoding;
pub mod error;
pub mod limits;
pub mod log;
pub mod runtime;
pub mod snapshot;
pub mod state_machine;
pub mod types;

pub use cluster_config::ClusterConfig;
pub use command::{Command, CommandResponse, Operation, Outcome};
pub use error::{SnapshotError, StateMachineError};
pub use log::{LogOpenError, LogStore};
pub use state_machine::view::{KeyValue, KvView, StateChecksum};
pub use state_machine::StateMachineStore;
pub use types::{Member, NodeId, TypeConfig};
