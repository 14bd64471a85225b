//! S3-compatible object storage as a backup target, through the `object_store` crate.
//! Layout inside the bucket, under the configured prefix:
//! `PREFIX/<backup>/obj-<o>.shard-<i>` (one object per shard file, uploaded in parts and
//! visible only once complete) and `PREFIX/<backup>/manifest`. The shard's crc32c is
//! computed while uploading, exactly as a node computes it while storing.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
    WriteMultipart,
};

use super::shard_store::HeldShard;
use super::target::{
    forward_chunks, parse_shard_name, shard_name, valid_backup_id, BackupStore, ChunkReceiver,
    ChunkStream, HeldBackup, Location, Piece, S3Spec, StoreFuture, StoredShard, TargetError,
};

const MANIFEST_OBJECT: &str = "manifest";
/// Bytes per uploaded part (S3 needs at least 5 MiB for every part but the last).
const PART_BYTES: usize = 8 * 1024 * 1024;
/// Parts of one shard in flight at once.
const PARTS_IN_FLIGHT: usize = 2;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Whole-request limit (body included): generous, since a shard of a large state is
/// gigabytes; a dead endpoint is caught by the connect timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// A failing request is retried a few times, briefly: an unreachable site must not hold a
/// backup or a restore for minutes (the other sites' shards suffice).
const RETRIES_MAX: usize = 2;
const RETRY_WINDOW: Duration = Duration::from_secs(10);

/// One bucket (and prefix) as a backup target.
#[derive(Debug)]
pub struct S3Store {
    spec: S3Spec,
    store: AmazonS3,
}

impl S3Store {
    /// A client for `spec` (no request is made yet). The secret key is read from the
    /// environment variable the spec names.
    pub fn new(spec: &S3Spec) -> Result<S3Store, TargetError> {
        let secret = std::env::var(&spec.secret_access_key_env).map_err(|_| {
            TargetError::Config(format!(
                "{}: environment variable {} (its secret access key) is not set in this process",
                spec.location(),
                spec.secret_access_key_env
            ))
        })?;
        let store = AmazonS3Builder::new()
            .with_endpoint(&spec.endpoint)
            .with_bucket_name(&spec.bucket)
            .with_region(&spec.region)
            .with_access_key_id(&spec.access_key_id)
            .with_secret_access_key(secret)
            .with_virtual_hosted_style_request(false)
            .with_client_options(
                ClientOptions::new()
                    .with_allow_http(spec.endpoint.starts_with("http://"))
                    .with_connect_timeout(CONNECT_TIMEOUT)
                    .with_timeout(REQUEST_TIMEOUT),
            )
            .with_retry(RetryConfig {
                backoff: BackoffConfig::default(),
                max_retries: RETRIES_MAX,
                retry_timeout: RETRY_WINDOW,
            })
            .build()
            .map_err(|e| TargetError::Config(format!("s3 target {}: {e}", spec.location())))?;
        Ok(S3Store {
            spec: spec.clone(),
            store,
        })
    }

    fn key(&self, parts: &[&str]) -> ObjectPath {
        let mut all: Vec<&str> = Vec::new();
        if !self.spec.prefix.is_empty() {
            all.extend(self.spec.prefix.split('/'));
        }
        all.extend_from_slice(parts);
        ObjectPath::from_iter(all)
    }

    fn checked<'a>(&self, backup_id: &'a str) -> Result<&'a str, TargetError> {
        if valid_backup_id(backup_id) {
            Ok(backup_id)
        } else {
            Err(TargetError::Refused {
                target: self.describe(),
                reason: format!("invalid backup name {backup_id:?}"),
            })
        }
    }

    fn failed(&self, what: &str, e: object_store::Error) -> TargetError {
        // The causes matter to an operator (a refused signature, a TLS failure), and
        // object_store's message does not always include them.
        let mut reason = format!("{what}: {e}");
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            let text = c.to_string();
            if !reason.contains(&text) {
                reason.push_str(": ");
                reason.push_str(&text);
            }
            cause = c.source();
        }
        TargetError::Unavailable {
            target: self.describe(),
            reason,
        }
    }

    /// The backup id and file name of a key under the prefix, if it has that shape.
    fn split_key<'k>(&self, key: &'k str) -> Option<(&'k str, &'k str)> {
        let rest = if self.spec.prefix.is_empty() {
            key
        } else {
            key.strip_prefix(self.spec.prefix.as_str())?
                .strip_prefix('/')?
        };
        let (backup, name) = rest.split_once('/')?;
        (valid_backup_id(backup) && !name.contains('/')).then_some((backup, name))
    }

    async fn upload(
        &self,
        path: &ObjectPath,
        mut chunks: ChunkReceiver,
    ) -> Result<StoredShard, TargetError> {
        let upload = self
            .store
            .put_multipart(path)
            .await
            .map_err(|e| self.failed("start upload", e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let (mut bytes, mut crc) = (0u64, 0u32);
        loop {
            match chunks.recv().await {
                Some(Piece::Data(chunk)) => {
                    if let Err(e) = writer.wait_for_capacity(PARTS_IN_FLIGHT).await {
                        let _ = writer.abort().await;
                        return Err(self.failed("upload part", e));
                    }
                    crc = crc32c::crc32c_append(crc, &chunk);
                    bytes += chunk.len() as u64;
                    writer.write(&chunk);
                }
                Some(Piece::End) => break,
                None => {
                    // Cut off: nothing of this shard may become visible.
                    let _ = writer.abort().await;
                    return Err(TargetError::Refused {
                        target: self.describe(),
                        reason: format!("upload of {path} was cut off before its end"),
                    });
                }
            }
        }
        writer
            .finish()
            .await
            .map_err(|e| self.failed("complete upload", e))?;
        Ok(StoredShard { bytes, crc32c: crc })
    }
}

impl BackupStore for S3Store {
    fn location(&self) -> Location {
        self.spec.location()
    }

    fn describe(&self) -> String {
        format!(
            "s3://{}/{} at {}",
            self.spec.bucket, self.spec.prefix, self.spec.endpoint
        )
    }

    fn put_shard<'a>(
        &'a self,
        backup_id: &'a str,
        object_id: u64,
        shard: u8,
        chunks: ChunkReceiver,
    ) -> StoreFuture<'a, StoredShard> {
        Box::pin(async move {
            let id = self.checked(backup_id)?;
            let path = self.key(&[id, &shard_name(object_id, shard)]);
            self.upload(&path, chunks).await
        })
    }

    fn get_shard<'a>(
        &'a self,
        backup_id: &'a str,
        object_id: u64,
        shard: u8,
    ) -> StoreFuture<'a, Option<ChunkStream>> {
        Box::pin(async move {
            let id = self.checked(backup_id)?;
            let path = self.key(&[id, &shard_name(object_id, shard)]);
            let got = match self.store.get(&path).await {
                Ok(g) => g,
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(self.failed("get shard", e)),
            };
            let target = self.describe();
            let body = got.into_stream().map(move |item| {
                item.map(|b| b.to_vec())
                    .map_err(|e| TargetError::Unavailable {
                        target: target.clone(),
                        reason: format!("read shard {shard}: {e}"),
                    })
            });
            Ok(Some(forward_chunks(body)))
        })
    }

    fn put_manifest<'a>(&'a self, backup_id: &'a str, json: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let id = self.checked(backup_id)?;
            self.store
                .put(
                    &self.key(&[id, MANIFEST_OBJECT]),
                    PutPayload::from(json.as_bytes().to_vec()),
                )
                .await
                .map_err(|e| self.failed("put manifest", e))?;
            Ok(())
        })
    }

    fn list(&self) -> StoreFuture<'_, Vec<HeldBackup>> {
        Box::pin(async move {
            let prefix = (!self.spec.prefix.is_empty()).then(|| self.key(&[]));
            let mut listing = self.store.list(prefix.as_ref());
            let mut held: BTreeMap<String, (bool, Vec<HeldShard>)> = BTreeMap::new();
            while let Some(meta) = listing.next().await {
                let meta = meta.map_err(|e| self.failed("list", e))?;
                let key = meta.location.to_string();
                let Some((backup, name)) = self.split_key(&key) else {
                    continue;
                };
                let entry = held.entry(backup.to_string()).or_default();
                if name == MANIFEST_OBJECT {
                    entry.0 = true;
                } else if let Some((object_id, shard)) = parse_shard_name(name) {
                    entry.1.push(HeldShard {
                        object_id,
                        shard,
                        bytes: meta.size,
                    });
                }
            }
            let mut out = Vec::new();
            for (backup_id, (has_manifest, mut shards)) in held {
                let manifest_json = if has_manifest {
                    match self
                        .store
                        .get(&self.key(&[&backup_id, MANIFEST_OBJECT]))
                        .await
                    {
                        Ok(g) => {
                            let bytes = g
                                .bytes()
                                .await
                                .map_err(|e| self.failed("read manifest", e))?;
                            Some(String::from_utf8_lossy(&bytes).into_owned())
                        }
                        Err(object_store::Error::NotFound { .. }) => None,
                        Err(e) => return Err(self.failed("read manifest", e)),
                    }
                } else {
                    None
                };
                shards.sort_by_key(|s| (s.object_id, s.shard));
                out.push(HeldBackup {
                    backup_id,
                    manifest_json,
                    shards,
                });
            }
            Ok(out)
        })
    }

    fn delete<'a>(&'a self, backup_ids: &'a [String]) -> StoreFuture<'a, u32> {
        Box::pin(async move {
            let mut deleted = 0;
            for id in backup_ids {
                let id = self.checked(id)?;
                let dir = self.key(&[id]);
                let mut keys = Vec::new();
                let mut listing = self.store.list(Some(&dir));
                while let Some(meta) = listing.next().await {
                    keys.push(meta.map_err(|e| self.failed("list", e))?.location);
                }
                if keys.is_empty() {
                    continue;
                }
                // The manifest goes first: a manifest never outlives its shards.
                keys.sort_by_key(|k| !k.as_ref().ends_with(MANIFEST_OBJECT));
                for key in keys {
                    match self.store.delete(&key).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                        Err(e) => return Err(self.failed("delete", e)),
                    }
                }
                deleted += 1;
            }
            Ok(deleted)
        })
    }
}
