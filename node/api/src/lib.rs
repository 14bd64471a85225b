//! reprise-api: the wire protocol of Reprise (generated from `proto/`), the validated
//! request types servers build from it, the size limits both sides enforce, the
//! site-aware fault-tolerance arithmetic, and the leader-following client used by the
//! CLI, chaos and applications. No openraft, no storage.

pub mod call_error;
pub mod client;
pub mod limits;
pub mod model;
mod multiplex;
pub mod redirect;
pub mod topology;

/// Generated protocol types and services.
pub mod pb {
    /// Public key-value API.
    pub mod kv {
        tonic::include_proto!("reprise.kv.v1");
    }
    /// Peer Raft transport.
    pub mod raft {
        tonic::include_proto!("reprise.raft.v1");
    }
    /// Cluster administration.
    pub mod admin {
        tonic::include_proto!("reprise.admin.v1");
    }
    /// Erasure-coded backups.
    pub mod backup {
        tonic::include_proto!("reprise.backup.v1");
    }
}

pub use client::{Client, ClientError, ClientOptions};
pub use model::ValidationError;
