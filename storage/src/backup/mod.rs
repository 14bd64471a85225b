//! Erasure-coded backups: the Reed-Solomon codec and shard records, manifests and shard
//! placement across sites, the per-node shard store, log archive segments, and
//! point-in-time restore (planning which backups to use, replaying archived entries).

pub mod archive;
pub mod codec;
pub mod manifest;
pub mod reconstruct;
pub mod restore;
pub mod retention;
pub mod seed;
pub mod shard_store;
