//! Shard files and manifests kept by one node for its site: `DIR/<backup>/obj-<o>.shard-<i>`
//! (a stream of shard records) and `DIR/<backup>/manifest` (checksummed atomic file).
//! A shard file appears under its final name only once complete and fsynced.
//!
//! A shard file is also flushed to disk as it is received, every
//! [`SHARD_SYNC_EVERY_BYTES`]: left to the final fsync, a second of the log archive
//! (tens of megabytes per node under load) reached the disk in one burst, and the Raft
//! log's fdatasyncs queued behind it (the write p99 at 64 clients x 4 KiB was 35-39 ms
//! with the archive on, 24-25 ms with it off). The bytes go around the page cache where
//! the filesystem allows (`direct_file`): shards are written once and read only by a
//! restore or a verify.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::target::{parse_shard_name, shard_name, valid_backup_id};
use crate::atomic_file::{read_checked, write_atomic, AtomicFileError};
use crate::direct_file::DirectFileWriter;

const MANIFEST_FILE: &str = "manifest";

/// A shard file being written is fdatasynced each time this many more bytes came in.
pub const SHARD_SYNC_EVERY_BYTES: u64 = 1 << 20;

/// A shard-store failure.
#[derive(Debug, Error)]
pub enum ShardStoreError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Manifest(#[from] AtomicFileError),
    #[error("invalid backup name {0:?}")]
    BadName(String),
}

fn io<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> ShardStoreError + 'a {
    move |source| ShardStoreError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// A shard file this node holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldShard {
    pub object_id: u64,
    pub shard: u8,
    pub bytes: u64,
}

/// The backups directory of one node.
#[derive(Debug, Clone)]
pub struct ShardStore {
    dir: PathBuf,
}

/// A shard file being received.
pub struct ShardWriter {
    tmp: PathBuf,
    path: PathBuf,
    file: DirectFileWriter,
    bytes: u64,
    /// Bytes written since the last fdatasync.
    unsynced: u64,
    crc: u32,
    /// Renamed into place: dropping the writer leaves the file alone.
    finished: bool,
}

fn check_name(backup_id: &str) -> Result<(), ShardStoreError> {
    if valid_backup_id(backup_id) {
        Ok(())
    } else {
        Err(ShardStoreError::BadName(backup_id.to_string()))
    }
}

impl ShardStore {
    pub fn new(dir: &Path) -> Self {
        ShardStore {
            dir: dir.to_path_buf(),
        }
    }

    fn backup_dir(&self, backup_id: &str) -> Result<PathBuf, ShardStoreError> {
        check_name(backup_id)?;
        Ok(self.dir.join(backup_id))
    }

    /// Path of a shard file.
    pub fn shard_path(
        &self,
        backup_id: &str,
        object_id: u64,
        shard: u8,
    ) -> Result<PathBuf, ShardStoreError> {
        Ok(self
            .backup_dir(backup_id)?
            .join(shard_name(object_id, shard)))
    }

    /// Starts receiving a shard file.
    pub fn create_shard(
        &self,
        backup_id: &str,
        object_id: u64,
        shard: u8,
    ) -> Result<ShardWriter, ShardStoreError> {
        let dir = self.backup_dir(backup_id)?;
        fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        let path = self.shard_path(backup_id, object_id, shard)?;
        let tmp = path.with_extension(format!("shard-{shard}.partial"));
        let file = DirectFileWriter::create(&tmp).map_err(io("create", &tmp))?;
        Ok(ShardWriter {
            tmp,
            path,
            file,
            bytes: 0,
            unsynced: 0,
            crc: 0,
            finished: false,
        })
    }

    /// Stores a manifest durably.
    pub fn put_manifest(&self, backup_id: &str, json: &str) -> Result<(), ShardStoreError> {
        let dir = self.backup_dir(backup_id)?;
        fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        Ok(write_atomic(&dir, MANIFEST_FILE, json.as_bytes())?)
    }

    /// The manifest of `backup_id`, if this node holds one.
    pub fn manifest(&self, backup_id: &str) -> Result<Option<String>, ShardStoreError> {
        let dir = self.backup_dir(backup_id)?;
        Ok(read_checked(&dir, MANIFEST_FILE)?.map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    /// Removes everything this node holds of `backup_id` (manifest first, so a crash midway
    /// never leaves a manifest whose shards are gone). Returns whether anything was held.
    pub fn delete(&self, backup_id: &str) -> Result<bool, ShardStoreError> {
        let dir = self.backup_dir(backup_id)?;
        if !dir.exists() {
            return Ok(false);
        }
        match fs::remove_file(dir.join(MANIFEST_FILE)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(ShardStoreError::Io {
                    what: "remove",
                    path: dir.join(MANIFEST_FILE),
                    source: e,
                })
            }
        }
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io("fsync", &dir))?;
        fs::remove_dir_all(&dir).map_err(io("remove", &dir))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io("fsync", &self.dir))?;
        Ok(true)
    }

    /// Backups this node holds anything of, with their complete shard files.
    pub fn list(&self) -> Result<Vec<(String, Vec<HeldShard>)>, ShardStoreError> {
        let mut out = Vec::new();
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => {
                return Err(ShardStoreError::Io {
                    what: "list",
                    path: self.dir.clone(),
                    source: e,
                })
            }
        };
        for entry in entries {
            let entry = entry.map_err(io("list", &self.dir))?;
            let id = entry.file_name().to_string_lossy().into_owned();
            if check_name(&id).is_err() || !entry.path().is_dir() {
                continue;
            }
            out.push((id, held_shards(&entry.path())?));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

fn held_shards(dir: &Path) -> Result<Vec<HeldShard>, ShardStoreError> {
    let mut shards = Vec::new();
    for entry in fs::read_dir(dir).map_err(io("list", dir))? {
        let entry = entry.map_err(io("list", dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some((object_id, shard)) = parse_shard_name(&name) {
            let bytes = entry.metadata().map_err(io("stat", &entry.path()))?.len();
            shards.push(HeldShard {
                object_id,
                shard,
                bytes,
            });
        }
    }
    shards.sort_by_key(|s| (s.object_id, s.shard));
    Ok(shards)
}

impl ShardWriter {
    /// Appends received bytes, and fdatasyncs the file once [`SHARD_SYNC_EVERY_BYTES`]
    /// more were written: this blocks on the disk, so call it off the async runtime.
    pub fn write(&mut self, data: &[u8]) -> Result<(), ShardStoreError> {
        self.file.write_all(data).map_err(io("write", &self.tmp))?;
        self.crc = crc32c::crc32c_append(self.crc, data);
        self.bytes += data.len() as u64;
        self.unsynced += data.len() as u64;
        if self.unsynced >= SHARD_SYNC_EVERY_BYTES {
            self.file.sync_data().map_err(io("fdatasync", &self.tmp))?;
            self.unsynced = 0;
        }
        Ok(())
    }

    /// Bytes written since the file was last fdatasynced.
    pub fn bytes_left_unsynced(&self) -> u64 {
        self.unsynced
    }

    /// Abandons the file: nothing of it becomes visible (dropping the writer does the same).
    pub fn discard(self) {}

    /// fsyncs, renames into place, fsyncs the directory. Returns (bytes, crc32c).
    pub fn finish(mut self) -> Result<(u64, u32), ShardStoreError> {
        let file = self.file.finish().map_err(io("write", &self.tmp))?;
        file.sync_all().map_err(io("fsync", &self.tmp))?;
        fs::rename(&self.tmp, &self.path).map_err(io("rename", &self.tmp))?;
        self.finished = true;
        if let Some(dir) = self.path.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io("fsync", dir))?;
        }
        Ok((self.bytes, self.crc))
    }
}

/// A writer dropped before `finish` renamed its file (an error, a cut-off upload, a panic
/// on the thread writing it) deletes the partial file.
impl Drop for ShardWriter {
    fn drop(&mut self) {
        if !self.finished {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_shard_is_flushed_as_it_grows_and_complete_once_finished() {
        let dir = tempfile::TempDir::new().unwrap();
        let store = ShardStore::new(dir.path());
        let mut writer = store.create_shard("b1", 0, 2).unwrap();
        let chunk = vec![0xabu8; 300 * 1024];
        for _ in 0..10 {
            writer.write(&chunk).unwrap();
            assert!(writer.bytes_left_unsynced() < SHARD_SYNC_EVERY_BYTES);
        }
        // Flushed after the 4th and the 8th chunk (1200 KiB each time): two chunks remain.
        assert_eq!(writer.bytes_left_unsynced(), 600 * 1024);
        let (bytes, _) = writer.finish().unwrap();
        assert_eq!(bytes, 10 * 300 * 1024);
        let path = store.shard_path("b1", 0, 2).unwrap();
        assert_eq!(fs::read(&path).unwrap().len() as u64, bytes);
        assert_eq!(files_in(path.parent().unwrap()), vec!["obj-0.shard-2"]);
    }

    #[test]
    fn a_writer_dropped_before_finishing_leaves_nothing_behind() {
        let dir = tempfile::TempDir::new().unwrap();
        let store = ShardStore::new(dir.path());
        let mut writer = store.create_shard("b1", 0, 1).unwrap();
        writer.write(b"half a shard").unwrap();
        let backup_dir = store.shard_path("b1", 0, 1).unwrap();
        let backup_dir = backup_dir.parent().unwrap();
        assert_eq!(files_in(backup_dir).len(), 1, "the partial file exists");
        drop(writer);
        assert!(files_in(backup_dir).is_empty());
    }
}
