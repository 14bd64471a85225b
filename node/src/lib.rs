//! reprise-node: the server. The only crate that knows both Raft and gRPC: openraft glue
//! (network, storage wiring), the client, peer and admin services, site-aware membership,
//! and the hybrid logical clock that stamps every write.

pub mod admin_service;
pub mod append_frame;
pub mod append_stream;
pub mod archiver;
pub mod background_thread;
pub mod backup_create;
pub mod backup_fetch;
pub mod backup_schedule;
pub mod backup_service;
pub mod backup_targets;
pub mod campaign_gate;
pub mod config;
pub mod convert;
pub mod hlc;
pub mod kv_multiplex;
pub mod kv_service;
pub mod metrics;
pub mod network;
pub mod node_store;
pub mod partition;
pub mod planted;
pub mod proposer;
pub mod raft_service;
pub mod read_buffered;
pub mod read_index;
pub mod rejoin;
pub mod restore;
pub mod restore_drill;
pub mod server;
pub mod snapshot_trigger;
pub mod state;
pub mod transfer;

/// The Raft instance of a node.
pub type Raft = openraft::Raft<reprise_storage::TypeConfig>;

pub use config::{ConfigError, NodeConfig};
pub use server::{run, NodeError};
