//! Backup targets: where one site keeps its backup shards and manifests. Every target
//! implements [`BackupStore`], so backups, the log archive, retention, verification and
//! restore never care which kind they talk to. The kinds are the embedded default (a node
//! of the site keeps them under its data directory, reached over gRPC; implemented in
//! reprise-node) and S3-compatible object storage ([`super::s3::S3Store`]).
//!
//! [`BackupTargets`] is the per-site configuration kept in the replicated cluster config;
//! [`Location`] is what a manifest records of the target that holds each shard. Neither
//! ever holds a secret: the replicated config names the environment variable that holds
//! a bucket's secret key, read by whichever process uses the bucket (the leader's node,
//! or the `reprise` command restoring), so secrets never enter the Raft log, snapshots,
//! the log archive or backups.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::mpsc;

use super::shard_store::HeldShard;

/// A boxed future returned by [`BackupStore`] methods (the trait is used as `dyn`).
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, TargetError>> + Send + 'a>>;

/// One piece of a shard file being stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// The next bytes.
    Data(Vec<u8>),
    /// The file is complete. A stream that ends without it was cut off (the encoder or
    /// another upload failed): the target must discard what it received.
    End,
}

/// Pieces of one shard file, in order, as the encoder produces them.
pub type ChunkReceiver = mpsc::Receiver<Piece>;

/// Chunks of one shard file as a target serves them; an error ends the stream.
pub type ChunkStream = mpsc::Receiver<Result<Vec<u8>, TargetError>>;

/// Chunks read ahead of the consumer of a [`ChunkStream`].
const READ_AHEAD_CHUNKS: usize = 8;
/// Bytes per chunk when a shard is read from a file.
const READ_CHUNK_BYTES: usize = 1024 * 1024;

/// Serves `source` as a [`ChunkStream`] from a task: chunks in order, ending after the
/// first error (which is passed on) or when the consumer goes away.
pub fn forward_chunks<S>(source: S) -> ChunkStream
where
    S: futures::Stream<Item = Result<Vec<u8>, TargetError>> + Send + 'static,
{
    use futures::StreamExt;
    let (tx, rx) = mpsc::channel(READ_AHEAD_CHUNKS);
    tokio::spawn(async move {
        let mut source = std::pin::pin!(source);
        while let Some(item) = source.next().await {
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                break;
            }
        }
    });
    rx
}

/// Serves a blocking reader (a shard file) as a [`ChunkStream`] from a blocking thread;
/// a read error names `what` and `target`.
pub fn read_chunks(
    mut reader: impl std::io::Read + Send + 'static,
    what: String,
    target: String,
) -> ChunkStream {
    let (tx, rx) = mpsc::channel(READ_AHEAD_CHUNKS);
    tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; READ_CHUNK_BYTES];
        loop {
            let item = match reader.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => Ok(buf[..n].to_vec()),
                Err(e) => Err(TargetError::Unavailable {
                    target: target.clone(),
                    reason: format!("read {what}: {e}"),
                }),
            };
            let failed = item.is_err();
            if tx.blocking_send(item).is_err() || failed {
                return;
            }
        }
    });
    rx
}

/// A backup target failure, naming the target.
#[derive(Debug, Error)]
pub enum TargetError {
    #[error("{target}: {reason}")]
    Unavailable { target: String, reason: String },
    #[error("{target}: {reason}")]
    Refused { target: String, reason: String },
    #[error("backup target configuration: {0}")]
    Config(String),
}

/// One stored shard file: its size and crc32c, as the target computed them while storing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredShard {
    pub bytes: u64,
    pub crc32c: u32,
}

/// What a target holds of one backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldBackup {
    pub backup_id: String,
    /// The manifest, when this target holds a copy.
    pub manifest_json: Option<String>,
    pub shards: Vec<HeldShard>,
}

/// Where backup shards and manifests are kept for one site.
pub trait BackupStore: Send + Sync {
    /// Where this target is, as manifests record it.
    fn location(&self) -> Location;

    /// A short human description for errors and progress ("node 3 at 127.0.0.1:7003").
    fn describe(&self) -> String;

    /// Stores one shard file from `chunks`; it becomes visible only once `Piece::End`
    /// arrived, and never if the stream ends without it.
    fn put_shard<'a>(
        &'a self,
        backup_id: &'a str,
        object_id: u64,
        shard: u8,
        chunks: ChunkReceiver,
    ) -> StoreFuture<'a, StoredShard>;

    /// Streams one shard file; `None` when the target does not hold it.
    fn get_shard<'a>(
        &'a self,
        backup_id: &'a str,
        object_id: u64,
        shard: u8,
    ) -> StoreFuture<'a, Option<ChunkStream>>;

    /// Stores the manifest of `backup_id` durably.
    fn put_manifest<'a>(&'a self, backup_id: &'a str, json: &'a str) -> StoreFuture<'a, ()>;

    /// Every backup this target holds anything of.
    fn list(&self) -> StoreFuture<'_, Vec<HeldBackup>>;

    /// Removes everything held of these backups (manifest first); returns how many
    /// backups had anything here.
    fn delete<'a>(&'a self, backup_ids: &'a [String]) -> StoreFuture<'a, u32>;
}

/// Where a shard was stored, as recorded in its manifest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
pub enum Location {
    /// A node of the shard's site (the placement's `node` and `addr`).
    #[default]
    Node,
    /// An S3-compatible bucket.
    S3 {
        endpoint: String,
        bucket: String,
        prefix: String,
    },
    /// A directory of the site, mounted at the same path wherever it is used.
    Dir { path: String },
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Node => write!(f, "node"),
            Location::S3 {
                endpoint,
                bucket,
                prefix,
            } => write!(f, "s3://{bucket}/{prefix} at {endpoint}"),
            Location::Dir { path } => write!(f, "directory {path}"),
        }
    }
}

/// One configured target of a site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TargetSpec {
    /// The embedded default: a node of the site keeps the shards under its data dir.
    Node,
    /// S3-compatible object storage.
    S3(S3Spec),
    /// A directory of the site (its NAS, a mounted gateway): an absolute path, the same
    /// wherever it is used.
    Dir { path: String },
}

/// An S3-compatible bucket (AWS, MinIO, Garage, s3s-fs ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct S3Spec {
    /// Base URL, e.g. `https://s3.eu-west-1.amazonaws.com` or `http://127.0.0.1:9000`.
    pub endpoint: String,
    pub bucket: String,
    /// Key prefix inside the bucket (no leading or trailing slash; may be empty).
    pub prefix: String,
    pub region: String,
    pub access_key_id: String,
    /// Name of the environment variable holding the secret access key, in every process
    /// that uses the bucket (each node that may lead, and `reprise restore`).
    pub secret_access_key_env: String,
}

impl S3Spec {
    /// Where shards stored through this spec are recorded to be.
    pub fn location(&self) -> Location {
        Location::S3 {
            endpoint: self.endpoint.clone(),
            bucket: self.bucket.clone(),
            prefix: self.prefix.clone(),
        }
    }

    fn validate(&self, site: &str) -> Result<(), TargetError> {
        let bad = |what: &str| {
            Err(TargetError::Config(format!(
                "site {site}: s3 target {what}"
            )))
        };
        if !(self.endpoint.starts_with("http://") || self.endpoint.starts_with("https://")) {
            return bad(&format!(
                "endpoint {:?} must start with http:// or https://",
                self.endpoint
            ));
        }
        let bucket_ok = (3..=63).contains(&self.bucket.len())
            && self
                .bucket
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
        if !bucket_ok {
            return bad(&format!(
                "bucket {:?} is not a valid bucket name (3-63 of a-z 0-9 . -)",
                self.bucket
            ));
        }
        if self.prefix.starts_with('/') || self.prefix.ends_with('/') {
            return bad(&format!(
                "prefix {:?} must not start or end with '/'",
                self.prefix
            ));
        }
        if self.region.is_empty() {
            return bad("region is empty");
        }
        if self.endpoint.ends_with('/') {
            return bad(&format!(
                "endpoint {:?} must not end with '/'",
                self.endpoint
            ));
        }
        if self.access_key_id.is_empty() {
            return bad("needs access_key_id");
        }
        let env_ok = !self.secret_access_key_env.is_empty()
            && self
                .secret_access_key_env
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !env_ok {
            return bad(&format!(
                "secret_access_key_env {:?} is not an environment variable name",
                self.secret_access_key_env
            ));
        }
        Ok(())
    }
}

/// The backup targets of every site. A site not listed uses the embedded default (a node
/// of that site).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupTargets {
    pub sites: BTreeMap<String, Vec<TargetSpec>>,
}

impl BackupTargets {
    /// The targets of `site` (the default when none are configured).
    pub fn for_site(&self, site: &str) -> Vec<TargetSpec> {
        match self.sites.get(site) {
            Some(t) if !t.is_empty() => t.clone(),
            _ => vec![TargetSpec::Node],
        }
    }

    /// Checks every target, that every configured site is one of `known_sites`, and that
    /// no bucket and prefix serves two targets (two sites sharing one would make the
    /// placement's "survives the loss of any N sites" untrue).
    pub fn validate(&self, known_sites: &[String]) -> Result<(), TargetError> {
        let mut seen: BTreeMap<Location, &str> = BTreeMap::new();
        for (site, targets) in &self.sites {
            for t in targets {
                let location = match t {
                    TargetSpec::S3(s) => s.location(),
                    TargetSpec::Dir { path } => {
                        if !std::path::Path::new(path).is_absolute() {
                            return Err(TargetError::Config(format!(
                                "site {site}: directory target {path:?} must be an absolute path"
                            )));
                        }
                        Location::Dir { path: path.clone() }
                    }
                    TargetSpec::Node => continue,
                };
                if let Some(other) = seen.insert(location.clone(), site) {
                    return Err(TargetError::Config(format!(
                        "{location} is a target of both site {other} and site {site}: give each target its own place"
                    )));
                }
            }
        }
        for (site, targets) in &self.sites {
            if !known_sites.contains(site) {
                return Err(TargetError::Config(format!(
                    "site {site:?} is not a site of this cluster (sites: {})",
                    known_sites.join(", ")
                )));
            }
            if targets.is_empty() {
                return Err(TargetError::Config(format!("site {site}: no targets")));
            }
            for t in targets {
                if let TargetSpec::S3(s) = t {
                    s.validate(site)?;
                }
            }
        }
        Ok(())
    }

    /// The S3 spec whose location is `location`, if configured on any site.
    pub fn s3_for(&self, location: &Location) -> Option<&S3Spec> {
        self.sites.values().flatten().find_map(|t| match t {
            TargetSpec::S3(s) if &s.location() == location => Some(s),
            _ => None,
        })
    }
}

/// Name of a shard file or object: `obj-<object>.shard-<index>`.
pub fn shard_name(object_id: u64, shard: u8) -> String {
    format!("obj-{object_id}.shard-{shard}")
}

/// Parses a [`shard_name`].
pub fn parse_shard_name(name: &str) -> Option<(u64, u8)> {
    let (o, s) = name.strip_prefix("obj-")?.split_once(".shard-")?;
    Some((o.parse().ok()?, s.parse().ok()?))
}

/// Whether `backup_id` is a name targets accept (also a path and key segment).
pub fn valid_backup_id(backup_id: &str) -> bool {
    !backup_id.is_empty()
        && backup_id.len() <= 128
        && backup_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3(bucket: &str) -> S3Spec {
        S3Spec {
            endpoint: "http://127.0.0.1:9000".into(),
            bucket: bucket.into(),
            prefix: "reprise".into(),
            region: "us-east-1".into(),
            access_key_id: "AK".into(),
            secret_access_key_env: "SITE_SECRET".into(),
        }
    }

    #[test]
    fn unlisted_sites_use_a_node_and_bad_configs_are_named() {
        let mut t = BackupTargets::default();
        t.sites
            .insert("site-1".into(), vec![TargetSpec::S3(s3("bucket-1"))]);
        let known = vec!["site-1".to_string(), "site-2".to_string()];
        t.validate(&known).expect("valid");
        assert_eq!(t.for_site("site-2"), vec![TargetSpec::Node]);
        assert!(matches!(t.for_site("site-1")[0], TargetSpec::S3(_)));
        assert!(t.s3_for(&s3("bucket-1").location()).is_some());
        assert!(t.s3_for(&s3("bucket-2").location()).is_none());

        let mut unknown = t.clone();
        unknown
            .sites
            .insert("site-9".into(), vec![TargetSpec::Node]);
        let e = unknown.validate(&known).unwrap_err().to_string();
        assert!(e.contains("site-9"), "{e}");

        let mut bad = t.clone();
        bad.sites
            .insert("site-2".into(), vec![TargetSpec::S3(s3("Bad_Bucket"))]);
        let e = bad.validate(&known).unwrap_err().to_string();
        assert!(e.contains("Bad_Bucket") && e.contains("site-2"), "{e}");
    }

    #[test]
    fn two_sites_cannot_share_a_bucket_and_prefix() {
        let mut t = BackupTargets::default();
        t.sites
            .insert("site-1".into(), vec![TargetSpec::S3(s3("bucket-1"))]);
        t.sites
            .insert("site-2".into(), vec![TargetSpec::S3(s3("bucket-1"))]);
        let known = vec!["site-1".to_string(), "site-2".to_string()];
        let e = t.validate(&known).unwrap_err().to_string();
        assert!(e.contains("site-1") && e.contains("site-2"), "{e}");
    }

    #[test]
    fn shard_names_round_trip() {
        assert_eq!(parse_shard_name(&shard_name(7, 2)), Some((7, 2)));
        assert_eq!(parse_shard_name("obj-7.shard-2.partial"), None);
        assert!(valid_backup_id("bk-000000000042-1"));
        assert!(!valid_backup_id("../x"));
    }
}
