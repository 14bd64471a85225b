//! Layout of the single sled tree that holds the state machine: user data and the
//! metadata stored beside it (applied log id, membership, last HLC), so that one atomic
//! sled batch updates both.

/// Prefix of every user key in the tree.
pub const DATA_PREFIX: u8 = b'd';
/// Last applied log id (postcard `Option<LogId>`).
pub const META_APPLIED: &[u8] = b"m/applied";
/// Last applied membership (postcard `StoredMembership`).
pub const META_MEMBERSHIP: &[u8] = b"m/membership";
/// Highest HLC stamp applied (u64 little-endian).
pub const META_LAST_HLC: &[u8] = b"m/last_hlc";
/// Highest log index known to be in the log archive (postcard u64). A fact about the
/// archive, not about the data: kept when a snapshot replaces the data.
pub const META_ARCHIVED: &[u8] = b"m/archived";

/// The replicated cluster config (`ClusterConfig::encode`): backup targets and the backup
/// catalog. Carried in snapshot headers.
pub const META_CLUSTER: &[u8] = b"m/cluster";

/// Tree key of a user key.
pub fn data_key(user_key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + user_key.len());
    k.push(DATA_PREFIX);
    k.extend_from_slice(user_key);
    k
}

/// User key of a tree key under [`DATA_PREFIX`].
pub fn user_key(tree_key: &[u8]) -> &[u8] {
    &tree_key[1..]
}

/// The smallest tree key strictly greater than every key starting with `prefix`, or None
/// when no such key exists (prefix of all 0xff).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}
