//! Erasure-coded backups: the Reed-Solomon codec and shard records, manifests and shard
//! placement across sites, and the per-node shard store.

pub mod codec;
pub mod manifest;
pub mod reconstruct;
pub mod seed;
pub mod shard_store;
