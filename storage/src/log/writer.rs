//! The log writer thread: the only code that touches the segment files after open. It
//! drains every queued request, writes them, issues one fdatasync for the whole batch
//! (group commit) and only then fires openraft's flush callbacks. After any I/O error it
//! refuses all further work: a failed fsync leaves the page cache in an unknown state.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot};
use tracing::error;

use super::segment::SegmentLog;
use crate::atomic_file::write_atomic;

/// File (in the log directory) recording the last purged log id.
pub const PURGED_FILE: &str = "purged";

/// Called once the appended records are durable (or failed).
pub type Completion = Box<dyn FnOnce(io::Result<()>) + Send>;

/// Work for the writer thread.
pub enum WriterRequest {
    /// Append encoded entries; call back once they are durable.
    Append {
        records: Vec<(u64, Vec<u8>)>,
        done: Completion,
    },
    /// Durably remove entries with index >= `index`.
    Truncate {
        index: u64,
        done: oneshot::Sender<io::Result<()>>,
    },
    /// Durably record the purge point, then drop whole segments at or below it.
    Purge {
        index: u64,
        purged_record: Vec<u8>,
        done: oneshot::Sender<io::Result<()>>,
    },
}

/// Starts the writer thread over `log`; `syncs` counts the fdatasync calls it makes.
pub fn spawn(
    log: SegmentLog,
    dir: PathBuf,
    rx: mpsc::Receiver<WriterRequest>,
    syncs: Arc<AtomicU64>,
) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("raft-log-writer".into())
        .spawn(move || {
            Writer {
                log,
                dir,
                failed: None,
                syncs,
            }
            .run(rx)
        })
}

struct Writer {
    log: SegmentLog,
    dir: PathBuf,
    failed: Option<String>,
    syncs: Arc<AtomicU64>,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<WriterRequest>) {
        while let Some(first) = rx.blocking_recv() {
            let mut flushed = Vec::new();
            self.handle(first, &mut flushed);
            while let Ok(next) = rx.try_recv() {
                self.handle(next, &mut flushed);
            }
            if flushed.is_empty() {
                continue;
            }
            let synced = self.check().and_then(|()| {
                let r = self.log.sync().map_err(io::Error::other);
                self.syncs.fetch_add(1, Ordering::Relaxed);
                self.note(r)
            });
            for done in flushed {
                done(clone_result(&synced));
            }
        }
    }

    fn handle(&mut self, req: WriterRequest, flushed: &mut Vec<Completion>) {
        match req {
            WriterRequest::Append { records, done } => {
                let r = self.check().and_then(|()| {
                    let mut r = Ok(());
                    for (index, bytes) in &records {
                        r = self.log.append(*index, bytes).map_err(io::Error::other);
                        if r.is_err() {
                            break;
                        }
                    }
                    self.note(r)
                });
                match r {
                    Ok(()) => flushed.push(done),
                    Err(e) => done(Err(e)),
                }
            }
            WriterRequest::Truncate { index, done } => {
                let r = self.check().and_then(|()| {
                    let r = self
                        .log
                        .sync()
                        .and_then(|()| self.log.truncate_from(index))
                        .map_err(io::Error::other);
                    self.note(r)
                });
                let _ = done.send(r);
            }
            WriterRequest::Purge {
                index,
                purged_record,
                done,
            } => {
                let r = self.check().and_then(|()| {
                    let r = write_atomic(&self.dir, PURGED_FILE, &purged_record)
                        .map_err(io::Error::other)
                        .and_then(|()| self.purge(index).map_err(io::Error::other));
                    self.note(r)
                });
                let _ = done.send(r);
            }
        }
    }

    /// Drops segments at or below `index`. When the purge passes the end of the log (a
    /// snapshot installed beyond it), the log is emptied so the next append may start at
    /// `index + 1`.
    fn purge(&mut self, index: u64) -> Result<(), super::segment::SegmentLogError> {
        match (self.log.first_index(), self.log.last_index()) {
            (Some(first), Some(last)) if last <= index => self.log.truncate_from(first),
            _ => self.log.purge_upto(index),
        }
    }

    fn check(&self) -> io::Result<()> {
        match &self.failed {
            Some(cause) => Err(io::Error::other(format!(
                "raft log is failed after an earlier I/O error ({cause}); restart the node"
            ))),
            None => Ok(()),
        }
    }

    fn note(&mut self, r: io::Result<()>) -> io::Result<()> {
        if let Err(e) = &r {
            error!(error = %e, "raft log I/O failed; refusing further writes");
            self.failed = Some(e.to_string());
        }
        r
    }
}

fn clone_result(r: &io::Result<()>) -> io::Result<()> {
    match r {
        Ok(()) => Ok(()),
        Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
    }
}
