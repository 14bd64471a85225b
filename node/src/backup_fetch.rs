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

/// A rebuild that could not complete, with why each unavailable shard was unavailable.
#[derive(Debug, Error)]
#[error("{source}{}", because(unavailable))]
pub struct RebuildFailed {
    pub source: ReconstructError,
    /// One line per shard that could not be fetched: which, from where, and why.
    pub unavailable: Vec<String>,
}

fn because(unavailable: &[String]) -> String {
    if unavailable.is_empty() {
        String::new()
    } else {
        format!("; could not fetch {}", unavailable.join("; "))
    }
}

/// Every manifest (snapshot backups and log archive segments) any reachable store holds,
/// one per backup id, and the problems met: stores that could not be asked and manifests
/// that could not be read (with why).
pub async fn all_manifests(stores: &[(String, Store)]) -> (Vec<Manifest>, Vec<String>) {
    let mut by_id: BTreeMap<String, Manifest> = BTreeMap::new();
    let mut problems = Vec::new();
    for h in holdings(stores).await {
        match h.held {
            Ok(held) => {
                for b in held {
                    let Some(json) = b.manifest_json else {
                        continue;
                    };
                    match Manifest::from_json(&json) {
                        Ok(m) => {
                            by_id.entry(m.backup_id.clone()).or_insert(m);
                        }
                        Err(e) => problems.push(format!(
                            "site {}: the manifest of {} on {} is unreadable: {e}",
                            h.site, b.backup_id, h.store
                        )),
                    }
                }
            }
            Err(e) => problems.push(format!("site {}: {e}", h.site)),
        }
    }
    (by_id.into_values().collect(), problems)
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

/// Opens the stream of shard `i` of `manifest`; Err says why it is unavailable (a
/// missing shard, for the decoder).
async fn open_shard(
    manifest: &Manifest,
    i: usize,
    object_id: u64,
    targets: &BackupTargets,
) -> Result<ChunkStream, String> {
    let placement = manifest
        .shards
        .get(i)
        .ok_or_else(|| format!("shard {i}: not in the manifest"))?;
    let name = format!("shard {} (site {})", placement.shard, placement.site);
    let store = store_for(placement, targets).map_err(|e| format!("{name}: {e}"))?;
    match store
        .get_shard(&manifest.backup_id, object_id, placement.shard)
        .await
    {
        Ok(Some(rx)) => Ok(rx),
        Ok(None) => Err(format!("{name}: {} does not hold it", store.describe())),
        Err(e) => Err(format!("{name}: {e}")),
    }
}

/// Downloads shard `i` into `dir`; Err says why it is unavailable.
async fn fetch_shard(
    manifest: &Manifest,
    i: usize,
    object_id: u64,
    targets: &BackupTargets,
    dir: &Path,
) -> Result<PathBuf, String> {
    let mut rx = open_shard(manifest, i, object_id, targets).await?;
    let path = dir.join(format!("obj-{object_id}.shard-{i}"));
    let failed = |e: &dyn std::fmt::Display| format!("shard {i}: {e}");
    let mut file = tokio::fs::File::create(&path)
        .await
        .map_err(|e| failed(&format!("create {}: {e}", path.display())))?;
    while let Some(chunk) = rx.recv().await {
        let chunk = chunk.map_err(|e| failed(&e))?;
        file.write_all(&chunk)
            .await
            .map_err(|e| failed(&format!("write {}: {e}", path.display())))?;
    }
    file.flush()
        .await
        .map_err(|e| failed(&format!("write {}: {e}", path.display())))?;
    Ok(path)
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
) -> Result<Result<Rebuilt, RebuildFailed>, FetchError> {
    let object = manifest
        .objects
        .first()
        .cloned()
        .ok_or_else(|| FetchError::NoObject(manifest.backup_id.clone()))?;
    let total = manifest.shards.len();
    let data = usize::from(manifest.data_shards).min(total);
    let mut attempted = 0;
    let mut result = None;
    let mut unavailable = Vec::new();
    if fetch == Fetch::DataFirst {
        // Stream the k data shards straight into the decoder: nothing is staged on disk.
        let mut sources: Vec<Option<ShardSource>> = Vec::new();
        for i in 0..data {
            match open_shard(manifest, i, object.object_id, targets).await {
                Ok(rx) => sources.push(Some(Box::new(ArrivingShard {
                    rx,
                    chunk: Vec::new(),
                    pos: 0,
                }))),
                Err(why) => {
                    unavailable.push(why);
                    sources.push(None);
                }
            }
        }
        attempted = data;
        let (m, o, dst) = (manifest.clone(), object.clone(), out.to_path_buf());
        let streamed = tokio::task::spawn_blocking(move || rebuild_from(&m, &o, sources, &dst))
            .await
            .map_err(|e| FetchError::Task(e.to_string()))?;
        if !matches!(streamed, Err(ReconstructError::TooFewShards { .. })) {
            result = Some(streamed);
        } else {
            // Every shard is fetched again below: its reasons replace these.
            unavailable.clear();
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
            for (i, t) in tasks.into_iter().enumerate() {
                match t.await {
                    Ok(Ok(path)) => files.push(Some(path)),
                    Ok(Err(why)) => {
                        unavailable.push(why);
                        files.push(None);
                    }
                    Err(e) => {
                        unavailable.push(format!("shard {i}: fetch task failed: {e}"));
                        files.push(None);
                    }
                }
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
    Ok(result
        .map(|mut rebuilt| {
            rebuilt.shards.retain(|h| usize::from(h.shard) < attempted);
            rebuilt
        })
        .map_err(|source| RebuildFailed {
            source,
            unavailable,
        }))
}
