//! `Janitor`: the thread that finishes a purge off the Raft path. Once the log has let go
//! of purged segments (they no longer belong to the `SegmentLog`), the janitor records
//! the new purge point, deletes the segment files oldest first, and frees the purged
//! entries' memory.
//!
//! Why a thread: openraft 0.9's `RaftCore` waits for `purge` before it does anything else,
//! and on ext4 removing a 64 MiB segment and fsyncing the purge record took 30-60 ms
//! under a 4 KiB write load (strace), during which no write could commit.
//!
//! Why this is safe: a purge only drops entries that a snapshot already holds, so a purge
//! that a crash interrupts leaves more of the log on disk than openraft asked for, never
//! less, and never a gap (the purge record is written before any file goes, and files go
//! oldest first). The next purge, or the next open, finishes the job. Jobs run in the
//! order they were queued; [`Janitor::drain`] waits for all of them, for the callers that
//! must write a purge record themselves and may not let an older one land after it.

use std::any::Any;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

use tracing::error;

use super::segment::remove_segment_files;
use crate::atomic_file::write_atomic;

/// One purge to finish.
pub struct PurgeJob {
    /// File name (in the log directory) and contents of the purge record.
    pub record: (&'static str, Vec<u8>),
    /// Segment files that hold only purged entries, oldest first.
    pub segments: Vec<PathBuf>,
    /// Purged entries to free here rather than on the Raft path.
    pub garbage: Box<dyn Any + Send>,
}

enum Job {
    Purge(PurgeJob),
    Drain(mpsc::SyncSender<()>),
}

/// The janitor thread of one log directory.
pub struct Janitor {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Janitor {
    /// Starts the janitor for the log in `dir`.
    pub fn start(dir: &Path) -> io::Result<Janitor> {
        let (tx, rx) = mpsc::channel::<Job>();
        let dir = dir.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("raft-log-janitor".into())
            .spawn(move || {
                for job in rx {
                    match job {
                        Job::Purge(job) => finish_purge(&dir, job),
                        Job::Drain(done) => {
                            let _ = done.send(());
                        }
                    }
                }
            })?;
        Ok(Janitor {
            jobs: Some(tx),
            thread: Some(thread),
        })
    }

    /// Queues `job`. If the thread is gone (it only stops when dropped) the job runs here.
    pub fn submit(&self, dir: &Path, job: PurgeJob) {
        let job = match &self.jobs {
            Some(jobs) => match jobs.send(Job::Purge(job)) {
                Ok(()) => return,
                Err(mpsc::SendError(Job::Purge(job))) => job,
                Err(mpsc::SendError(Job::Drain(_))) => return,
            },
            None => job,
        };
        finish_purge(dir, job);
    }

    /// Waits until every job queued so far is finished.
    pub fn drain(&self) {
        let (done, wait) = mpsc::sync_channel(1);
        if let Some(jobs) = &self.jobs {
            if jobs.send(Job::Drain(done)).is_ok() {
                let _ = wait.recv();
            }
        }
    }
}

impl Drop for Janitor {
    /// Finishes the queued jobs before the log directory can be opened again.
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Records the purge point, then deletes the segment files. A failure is logged and left
/// for later: the files still on disk hold only entries a snapshot already has, and the
/// next open (or a later purge record) skips them.
fn finish_purge(dir: &Path, job: PurgeJob) {
    let (name, bytes) = &job.record;
    if let Err(e) = write_atomic(dir, name, bytes) {
        error!(error = %e, dir = %dir.display(), "could not record the raft log's purge point; its segments stay until the next purge");
        return;
    }
    if let Err(e) = remove_segment_files(dir, &job.segments) {
        error!(error = %e, "could not delete a purged raft log segment; it is skipped on the next open");
    }
    drop(job.garbage);
}
