//! Reading backups back from their targets: every manifest the sites hold, and rebuilding
//! one backup object from its shards (wherever each shard's target is: a node of its
//! site or a bucket). Restore streams the k data shards straight into the decoder and
//! fetches every shard only when those do not suffice; verify reads every shard.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use reprise_storage::backup::manifest::Manifest;
use reprise_storage::backup::reconstruct::{
    rebuild, rebuild_from, Rebuilt, ReconstructError, ShardSource,
};
use reprise_storage::backup::target::{BackupTargets, ChunkStream};
use thiserror::Error;
use tokio::io::AsyncWriteExt;

use crate::backup_targets::{holdings, store_for, Store};

/// Why an object could not even be attempted (a rebuild that runs out of shards is a
/// `ReconstructError` instead).
#[derive(Debug, Error)]
pub enum FetchError {
    #[error("backup {0} lists no objects")]
    NoObject(String),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("rebuild task: {0}")]
    Task(String),
}

/// Every manifest (snapshot backups and log archive segments) any reachable store holds,
/// one per backup id, and the stores that could not be asked (with why).
pub async fn all_manifests(stores: &[(String, Store)]) -> (Vec<Manifest>, Vec<String>) {
    let mut by_id: BTreeMap<String, Manifest> = BTreeMap::new();
    let mut unreachable = Vec::new();
    for h in holdings(stores).await {
        match h.held {
            Ok(held) => {
                for b in held {
                    if let Some(m) = b.manifest_json.and_then(|j| Manifest::from_json(&j).ok()) {
                        by_id.entry(m.backup_id.clone()).or_insert(m);
                    }
                }
            }
            Err(e) => unreachable.push(format!("site {}: {e}", h.site)),
        }
    }
    (by_id.into_values().collect(), unreachable)
}

/// Which shards a rebuild downloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetch {
    /// Every shard, to check each one (verify).
    Every,
    /// The k data shards, streamed into the decoder; every shard (staged in files) only if
    /// the data shards do not suffice.
    DataFirst,
}

/// One shard's bytes as they arrive, readable by the blocking rebuild.
struct ArrivingShard {
    rx: ChunkStream,
    chunk: Vec<u8>,
    pos: usize,
}

impl std::io::Read for ArrivingShard {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.chunk.len() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                Some(Err(e)) => return Err(std::io::Error::other(e.to_string())),
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.chunk.len() - self.pos);
        out[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Opens the stream of shard `i` of `manifest`; None when its target or file is
/// unavailable (a missing shard, for the decoder).
async fn open_shard(
    manifest: &Manifest,
    i: usize,
    object_id: u64,
    targets: &BackupTargets,
) -> Option<ChunkStream> {
    let placement = manifest.shards.get(i)?;
    let store = store_for(placement, targets).ok()?;
    store
        .get_shard(&manifest.backup_id, object_id, placement.shard)
        .await
        .ok()
        .flatten()
}

/// Downloads shard `i` into `dir`; None when unavailable.
async fn fetch_shard(
    manifest: &Manifest,
    i: usize,
    object_id: u64,
    targets: &BackupTargets,
    dir: &Path,
) -> Option<PathBuf> {
    let mut rx = open_shard(manifest, i, object_id, targets).await?;
    let path = dir.join(format!("obj-{object_id}.shard-{i}"));
    let mut file = tokio::fs::File::create(&path).await.ok()?;
    while let Some(chunk) = rx.recv().await {
        file.write_all(&chunk.ok()?).await.ok()?;
    }
    file.flush().await.ok()?;
    Some(path)
}

/// Rebuilds the object of `manifest` into `out` from its targets (credentials for buckets
/// from `targets`); a shard that cannot be fetched counts as missing. `scratch` holds
/// staged shards while the rebuild runs and is left empty.
pub async fn rebuild_object(
    manifest: &Manifest,
    targets: &BackupTargets,
    out: &Path,
    scratch: &Path,
    fetch: Fetch,
) -> Result<Result<Rebuilt, ReconstructError>, FetchError> {
    let object = manifest
        .objects
        .first()
        .cloned()
        .ok_or_else(|| FetchError::NoObject(manifest.backup_id.clone()))?;
    let total = manifest.shards.len();
    let data = usize::from(manifest.data_shards).min(total);
    let mut attempted = 0;
    let mut result = None;
    if fetch == Fetch::DataFirst {
        // Stream the k data shards straight into the decoder: nothing is staged on disk.
        let mut sources: Vec<Option<ShardSource>> = Vec::new();
        for i in 0..data {
            sources.push(
                open_shard(manifest, i, object.object_id, targets)
                    .await
                    .map(|rx| {
                        Box::new(ArrivingShard {
                            rx,
                            chunk: Vec::new(),
                            pos: 0,
                        }) as ShardSource
                    }),
            );
        }
        attempted = data;
        let (m, o, dst) = (manifest.clone(), object.clone(), out.to_path_buf());
        let streamed = tokio::task::spawn_blocking(move || rebuild_from(&m, &o, sources, &dst))
            .await
            .map_err(|e| FetchError::Task(e.to_string()))?;
        if !matches!(streamed, Err(ReconstructError::TooFewShards { .. })) {
            result = Some(streamed);
        }
    }
    let result = match result {
        Some(r) => r,
        None => {
            // Every shard, staged in files, so each one is read and judged.
            let dir = scratch.join(format!("{}.shards", manifest.backup_id));
            std::fs::create_dir_all(&dir).map_err(|source| FetchError::Io {
                what: "create",
                path: dir.clone(),
                source,
            })?;
            let tasks: Vec<_> = (0..total)
                .map(|i| {
                    let (m, t, d) = (manifest.clone(), targets.clone(), dir.clone());
                    let object_id = object.object_id;
                    tokio::spawn(async move { fetch_shard(&m, i, object_id, &t, &d).await })
                })
                .collect();
            let mut files: Vec<Option<PathBuf>> = Vec::new();
            for t in tasks {
                files.push(t.await.ok().flatten());
            }
            attempted = total;
            let (m, o, dst) = (manifest.clone(), object.clone(), out.to_path_buf());
            let rebuilt = tokio::task::spawn_blocking(move || rebuild(&m, &o, &files, &dst))
                .await
                .map_err(|e| FetchError::Task(e.to_string()));
            let _ = std::fs::remove_dir_all(&dir);
            rebuilt?
        }
    };
    // Report health only for shards that were asked for: parity left alone is not missing.
    Ok(result.map(|mut rebuilt| {
        rebuilt.shards.retain(|h| usize::from(h.shard) < attempted);
        rebuilt
    }))
}
