//! Rebuilding a backed-up object from whichever shard files are available: reads the
//! shard files stripe by stripe, treats a missing file or a record that fails its
//! checksum as a missing shard, decodes each stripe from any k shards, and writes the
//! object to a new file only if every stripe could be rebuilt. A snapshot object is then
//! verified end to end against the state checksum in the manifest.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use thiserror::Error;

use super::codec::{decode_stripe, CodecError, CodecParams, ShardRecord};
use super::manifest::{BackupObject, Manifest, KIND_SNAPSHOT};
use crate::snapshot::SnapshotReader;

/// Why an object could not be rebuilt.
#[derive(Debug, Error)]
pub enum ReconstructError {
    #[error("stripe {stripe}: only {have} of the {need} shards needed are usable (missing or corrupt shards: {missing:?}); nothing was written")]
    TooFewShards {
        stripe: u64,
        have: usize,
        need: usize,
        missing: Vec<u8>,
    },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("codec: {0}")]
    Codec(String),
    #[error("rebuilt snapshot does not verify: {0}")]
    Verify(String),
}

/// What happened to one shard file during a rebuild.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ShardHealth {
    pub shard: u8,
    pub present: bool,
    /// Stripes whose record from this shard was usable.
    pub good_records: u64,
    /// The first problem met, if any (corrupt record, short file).
    pub problem: Option<String>,
}

/// Outcome of a successful rebuild.
#[derive(Debug, Clone, Serialize)]
pub struct Rebuilt {
    pub bytes: u64,
    pub stripes: u64,
    pub shards: Vec<ShardHealth>,
    /// For snapshots: the digest recomputed from the rebuilt records, and whether it equals
    /// the manifest's.
    pub state_digest: String,
    pub digest_matches: bool,
}

/// A source of one shard's records (a file, or bytes arriving over the network).
pub type ShardSource = Box<dyn Read + Send>;

struct ShardStream {
    reader: Option<BufReader<ShardSource>>,
    health: ShardHealth,
}

impl ShardStream {
    fn open(shard: u8, source: Option<ShardSource>) -> Self {
        let reader = source.map(|f| BufReader::with_capacity(1 << 20, f));
        let health = ShardHealth {
            shard,
            present: reader.is_some(),
            ..Default::default()
        };
        ShardStream { reader, health }
    }

    /// The record of `stripe`, or None (missing, corrupt, or the stream already failed).
    fn next(&mut self, object_id: u64, stripe: u64) -> Option<ShardRecord> {
        let reader = self.reader.as_mut()?;
        match ShardRecord::read_from(reader) {
            Ok(Some(r)) if r.object_id == object_id && r.stripe == stripe => {
                self.health.good_records += 1;
                Some(r)
            }
            Ok(Some(r)) => self.fail(format!(
                "expected stripe {stripe}, found object {} stripe {}",
                r.object_id, r.stripe
            )),
            Ok(None) => self.fail(format!("ends before stripe {stripe}")),
            Err(e) => self.fail(format!("stripe {stripe}: {e}")),
        }
    }

    fn fail(&mut self, problem: String) -> Option<ShardRecord> {
        // After a bad record the stream cannot be trusted to be aligned: drop it.
        self.reader = None;
        self.health.problem.get_or_insert(problem);
        None
    }
}

/// Rebuilds `object` of `manifest` from `shard_files[i]` (None = unavailable) into `out`.
/// `out` is written through a temporary file and renamed only on success.
pub fn rebuild(
    manifest: &Manifest,
    object: &BackupObject,
    shard_files: &[Option<PathBuf>],
    out: &Path,
) -> Result<Rebuilt, ReconstructError> {
    let sources = shard_files
        .iter()
        .map(|p| {
            p.as_deref()
                .and_then(|p| File::open(p).ok())
                .map(|f| Box::new(f) as ShardSource)
        })
        .collect();
    rebuild_from(manifest, object, sources, out)
}

/// Like [`rebuild`], reading shard `i` from `sources[i]` as it arrives (a source that fails
/// to read counts as a missing shard from there on).
pub fn rebuild_from(
    manifest: &Manifest,
    object: &BackupObject,
    sources: Vec<Option<ShardSource>>,
    out: &Path,
) -> Result<Rebuilt, ReconstructError> {
    let params = CodecParams::new(
        manifest.data_shards,
        manifest.parity_shards,
        manifest.stripe_bytes,
    )
    .map_err(|e| ReconstructError::Codec(e.to_string()))?;
    let mut sources = sources;
    sources.resize_with(params.total_shards(), || None);
    let mut streams: Vec<ShardStream> = sources
        .into_iter()
        .enumerate()
        .map(|(i, source)| ShardStream::open(i as u8, source))
        .collect();
    let tmp = out.with_extension("partial");
    let file = File::create(&tmp).map_err(|source| ReconstructError::Io {
        what: "create",
        path: tmp.clone(),
        source,
    })?;
    let mut writer = BufWriter::with_capacity(1 << 20, file);
    let result = (|| {
        let mut bytes = 0u64;
        for stripe in 0..object.stripes {
            let shards: Vec<Option<ShardRecord>> = streams
                .iter_mut()
                .map(|s| s.next(object.object_id, stripe))
                .collect();
            let data = decode_stripe(&params, shards).map_err(|e| match e {
                CodecError::TooFewShards {
                    have,
                    need,
                    missing,
                    ..
                } => ReconstructError::TooFewShards {
                    stripe,
                    have,
                    need,
                    missing,
                },
                other => ReconstructError::Codec(other.to_string()),
            })?;
            writer
                .write_all(&data)
                .map_err(|source| ReconstructError::Io {
                    what: "write",
                    path: tmp.clone(),
                    source,
                })?;
            bytes += data.len() as u64;
        }
        let file = writer.into_inner().map_err(|e| ReconstructError::Io {
            what: "write",
            path: tmp.clone(),
            source: e.into_error(),
        })?;
        file.sync_all().map_err(|source| ReconstructError::Io {
            what: "fsync",
            path: tmp.clone(),
            source,
        })?;
        Ok(bytes)
    })();
    let bytes = match result {
        Ok(b) => b,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    let state_digest = if object.kind == KIND_SNAPSHOT {
        verify_snapshot(&tmp)?
    } else {
        file_digest(&tmp)?
    };
    std::fs::rename(&tmp, out).map_err(|source| ReconstructError::Io {
        what: "rename",
        path: tmp.clone(),
        source,
    })?;
    Ok(Rebuilt {
        bytes,
        stripes: object.stripes,
        shards: streams.into_iter().map(|s| s.health).collect(),
        digest_matches: state_digest == object.state_digest,
        state_digest,
    })
}

/// blake3 (hex) of a whole file: the digest recorded for objects other than snapshots.
fn file_digest(path: &Path) -> Result<String, ReconstructError> {
    let mut hasher = blake3::Hasher::new();
    let mut file = File::open(path).map_err(|source| ReconstructError::Io {
        what: "open",
        path: path.to_path_buf(),
        source,
    })?;
    std::io::copy(&mut file, &mut hasher).map_err(|source| ReconstructError::Io {
        what: "read",
        path: path.to_path_buf(),
        source,
    })?;
    Ok(hasher.finalize().to_hex().to_string())
}

/// Reads a rebuilt snapshot end to end; returns its recomputed state digest (hex).
fn verify_snapshot(path: &Path) -> Result<String, ReconstructError> {
    let mut reader =
        SnapshotReader::open(path).map_err(|e| ReconstructError::Verify(e.to_string()))?;
    while reader
        .next_record()
        .map_err(|e| ReconstructError::Verify(e.to_string()))?
        .is_some()
    {}
    Ok(reader
        .digest()
        .1
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}
