//! reprise-node: the server. The only crate that knows both Raft and gRPC: openraft glue
//! (network, storage wiring), the client, peer and admin services, site-aware membership,
//! and the hybrid logical clock that stamps every write.

pub mod admin_service;
pub mod archiver;
pub mod backup_create;
pub mod backup_schedule;
pub mod backup_service;
pub mod config;
pub mod convert;
pub mod hlc;
pub mod kv_service;
pub mod network;
pub mod partition;
pub mod planted;
pub mod raft_service;
pub mod read_index;
pub mod server;
pub mod state;
pub mod transfer;

/// The Raft instance of a node.
pub type Raft = openraft::Raft<reprise_storage::TypeConfig>;

pub use config::{ConfigError, NodeConfig};
pub use server::{run, NodeError};
