//! The state machine's state, held in memory: user data in a persistent ordered map
//! (`imbl::OrdMap`, whose clones share structure, so taking a point-in-time copy for a
//! snapshot or a checksum costs O(1) and later applies copy only the nodes they touch),
//! plus the applied log id, membership, last HLC and replicated cluster config.
//!
//! Nothing here is durable by itself: the Raft log is the write-ahead log and snapshot
//! files are the checkpoints. On open the state is the newest snapshot's, and openraft
//! applies the committed entries after it again.

use std::sync::Arc;

use imbl::OrdMap;

use super::value::StoredValue;
use crate::cluster_config::ClusterConfig;
use crate::types::{LogId, StoredMembership};

/// A user key as the map stores it: shared, so that copying a map node is cheap.
pub(crate) type Key = Arc<[u8]>;

/// User data by key.
pub(crate) type Data = OrdMap<Key, Arc<StoredValue>>;

/// Everything the state machine holds. Cloning shares the data map's structure.
#[derive(Clone, Default)]
pub(crate) struct State {
    pub(crate) data: Data,
    pub(crate) applied: Option<LogId>,
    pub(crate) membership: StoredMembership,
    pub(crate) last_hlc: u64,
    pub(crate) cluster: Arc<ClusterConfig>,
}
