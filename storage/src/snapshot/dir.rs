//! The directory of snapshot files: naming, building a new snapshot from the state
//! machine, accepting a received one, finding the newest, and removing superseded ones.
//! A snapshot becomes visible only after it is complete, fsynced and renamed into place
//! (and the directory fsynced).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::format::{SnapshotHeader, SnapshotReader, SnapshotWriter};
use crate::error::SnapshotError;
use crate::error::StateMachineError;
use crate::state_machine::value::StoredValue;

const SUFFIX: &str = ".snap";
const PARTIAL_SUFFIX: &str = ".partial";

/// A durable snapshot file on disk.
#[derive(Debug, Clone)]
pub struct SnapshotFile {
    pub path: PathBuf,
    pub header: SnapshotHeader,
}

/// Owner of the snapshot directory.
#[derive(Debug)]
pub struct SnapshotDir {
    dir: PathBuf,
    partial_seq: AtomicU64,
}

impl SnapshotDir {
    /// Opens (creating) `dir` and removes partial files left by a crash.
    pub fn open(dir: &Path) -> Result<Self, SnapshotError> {
        fs::create_dir_all(dir).map_err(|e| SnapshotError::io(dir, e))?;
        for entry in fs::read_dir(dir).map_err(|e| SnapshotError::io(dir, e))? {
            let path = entry.map_err(|e| SnapshotError::io(dir, e))?.path();
            if path.to_string_lossy().ends_with(PARTIAL_SUFFIX) {
                fs::remove_file(&path).map_err(|e| SnapshotError::io(&path, e))?;
            }
        }
        Ok(SnapshotDir {
            dir: dir.to_path_buf(),
            partial_seq: AtomicU64::new(0),
        })
    }

    /// The newest complete snapshot (highest last log index), header verified.
    pub fn newest(&self) -> Result<Option<SnapshotFile>, SnapshotError> {
        let mut names: Vec<PathBuf> = self.complete_files()?;
        names.sort();
        match names.pop() {
            Some(path) => {
                let header = SnapshotReader::open(&path)?.header().clone();
                Ok(Some(SnapshotFile { path, header }))
            }
            None => Ok(None),
        }
    }

    /// Size in bytes of the newest complete snapshot file (its header is not read).
    pub fn newest_len(&self) -> Result<Option<u64>, SnapshotError> {
        let mut names = self.complete_files()?;
        names.sort();
        match names.pop() {
            Some(path) => fs::metadata(&path)
                .map(|m| Some(m.len()))
                .map_err(|e| SnapshotError::io(&path, e)),
            None => Ok(None),
        }
    }

    fn complete_files(&self) -> Result<Vec<PathBuf>, SnapshotError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(|e| SnapshotError::io(&self.dir, e))? {
            let path = entry.map_err(|e| SnapshotError::io(&self.dir, e))?.path();
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            if name.is_some_and(|n| n.starts_with("snap-") && n.ends_with(SUFFIX)) {
                out.push(path);
            }
        }
        Ok(out)
    }

    /// A fresh path for a snapshot being written or received.
    pub fn partial_path(&self) -> PathBuf {
        let seq = self.partial_seq.fetch_add(1, Ordering::Relaxed);
        self.dir.join(format!(
            "incoming-{}-{seq}{PARTIAL_SUFFIX}",
            std::process::id()
        ))
    }

    fn final_path(&self, header: &SnapshotHeader) -> PathBuf {
        let (index, term) = header
            .meta
            .last_log_id
            .map(|l| (l.index, l.leader_id.term))
            .unwrap_or((0, 0));
        self.dir
            .join(format!("snap-{index:020}-{term:020}{SUFFIX}"))
    }

    /// Writes `records` (every key and its stored value, in key order) as a snapshot
    /// with `header`. Returns the durable file.
    pub fn build<'a>(
        &self,
        header: SnapshotHeader,
        records: impl Iterator<Item = (&'a [u8], &'a StoredValue)>,
    ) -> Result<SnapshotFile, StateMachineError> {
        let partial = self.partial_path();
        let mut writer = SnapshotWriter::create(&partial, &header)?;
        for (key, value) in records {
            writer.push(key, value)?;
        }
        writer.finish()?;
        Ok(self.accept(&partial, header)?)
    }

    /// Moves a complete, fsynced partial file into place as the newest snapshot and removes
    /// the snapshots it supersedes.
    pub fn accept(
        &self,
        partial: &Path,
        header: SnapshotHeader,
    ) -> Result<SnapshotFile, SnapshotError> {
        let path = self.final_path(&header);
        fs::rename(partial, &path).map_err(|e| SnapshotError::io(&path, e))?;
        sync_dir(&self.dir)?;
        for old in self.complete_files()? {
            if old < path {
                fs::remove_file(&old).map_err(|e| SnapshotError::io(&old, e))?;
            }
        }
        sync_dir(&self.dir)?;
        Ok(SnapshotFile { path, header })
    }
}

/// fsyncs a directory so that renames and removals in it are durable.
pub fn sync_dir(dir: &Path) -> Result<(), SnapshotError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| SnapshotError::io(dir, e))
}
