//! Erasure-coded backups: the Reed-Solomon codec and shard records, manifests and shard
//! placement across sites, the per-node shard store, log archive segments, and
//! point-in-time restore (planning which backups to use, replaying archived entries), and
//! the backup targets a site keeps them in (a node of the site, or S3).

pub mod archive;
pub mod codec;
pub mod dir_store;
pub mod manifest;
pub mod reconstruct;
pub mod restore;
pub mod retention;
pub mod s3;
pub mod seed;
pub mod shard_store;
pub mod target;
