//! The Raft type configuration shared by every crate that speaks Raft: node ids, the
//! member record (address and site), and the entry, command and response types.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::command::{Command, CommandResponse};

/// Identifier of a Raft member. Never reused: a node that lost its disk rejoins under a new id.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// Reprise's Raft type configuration.
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        NodeId = NodeId,
        Node = Member,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
        AsyncRuntime = crate::runtime::RepriseRuntime,
);

/// What the cluster records about every member: where to reach it and which site it is in.
/// Carried inside Raft membership, so every node agrees on the sites of all members.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// gRPC address (`host:port`) for peers and clients.
    pub addr: String,
    /// Site (datacenter) the member runs in. Quorum placement is computed over sites.
    pub site: String,
    /// Optional zone (room, rack row) inside the site.
    pub zone: Option<String>,
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.zone {
            Some(zone) => write!(f, "{}@{}/{}", self.addr, self.site, zone),
            None => write!(f, "{}@{}", self.addr, self.site),
        }
    }
}

/// Log id of our type configuration.
pub type LogId = openraft::LogId<NodeId>;
/// Raft log entry of our type configuration.
pub type Entry = openraft::Entry<TypeConfig>;
/// Membership as stored in the log and the state machine.
pub type StoredMembership = openraft::StoredMembership<NodeId, Member>;
/// Snapshot metadata of our type configuration.
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, Member>;
/// Storage error reported to openraft.
pub type RaftStorageError = openraft::StorageError<NodeId>;
