//! Writing a new file front to back around the page cache (`O_DIRECT`), for the large
//! files a node writes once and does not read back soon: snapshot files and backup
//! shards. Through the page cache, every byte is first copied by the kernel into pages
//! it has just allocated; on this project's test machine (a VM) that copy cost a
//! follower about 9% of its CPU at 64 clients x 4 KiB (`copy_folio_from_iter_atomic`
//! under the snapshot writer alone, perf), as the zeros of the log's spare segment did
//! before they went around the cache (`log/spare.rs`).
//!
//! The writer stages bytes in an aligned buffer of [`STAGE_BYTES`] and writes it whole.
//! The last, partial block is written padded with zeros and the file then cut to its
//! exact length, so the caller's final fsync (`sync_all`, which also covers the length)
//! leaves exactly the bytes written. Where the filesystem refuses `O_DIRECT` (tmpfs,
//! some network filesystems), at open or at a write, the same writer goes through the
//! page cache instead: slower, never different.
//!
//! Nothing is durable before the caller's fsync, as with any write.
//!
//! The aligned buffer and the `O_DIRECT` switch are shared with the log's whole-page
//! appender (`log/page_appender.rs`).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use nix::fcntl::{fcntl, FcntlArg, OFlag};

/// Alignment of `O_DIRECT` buffers, offsets and lengths: a page, which covers any
/// logical block size up to it.
pub(crate) const DIRECT_ALIGN: usize = 4096;
/// Bytes staged before one write: large enough that a write is one request to the disk
/// of a useful size, small enough to stay in the CPU's caches between fills.
pub const STAGE_BYTES: usize = 1 << 20;

/// A new file written sequentially, around the page cache where the filesystem allows.
pub struct DirectFileWriter {
    file: File,
    /// Writes go around the page cache (`O_DIRECT` is set on the file).
    direct: bool,
    /// Backing storage of the stage: `STAGE_BYTES` from `start` are aligned.
    buffer: Vec<u8>,
    start: usize,
    /// Bytes staged, not yet written.
    staged: usize,
    /// Bytes written to the file (a multiple of `DIRECT_ALIGN` while `direct`).
    written: u64,
    /// The tail is written and the length cut: no more writes.
    finished: bool,
}

impl DirectFileWriter {
    /// Creates (or truncates) `path` for writing.
    pub fn create(path: &Path) -> io::Result<Self> {
        let (buffer, aligned) = aligned_buffer(STAGE_BYTES);
        let direct_file = if aligned.is_some() {
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .custom_flags(OFlag::O_DIRECT.bits())
                .open(path)
                .ok()
        } else {
            None
        };
        let (file, direct) = match direct_file {
            Some(file) => (file, true),
            None => (File::create(path)?, false),
        };
        Ok(DirectFileWriter {
            file,
            direct,
            buffer,
            start: aligned.unwrap_or(0),
            staged: 0,
            written: 0,
            finished: false,
        })
    }

    /// Whether writes go around the page cache.
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    /// Bytes accepted so far.
    pub fn len(&self) -> u64 {
        self.written + self.staged as u64
    }

    /// True before the first byte.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends `bytes`; a full stage is written to the file (blocking on the disk).
    pub fn write_all(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        if self.finished {
            return Err(io::Error::other("written after the file was finished"));
        }
        while !bytes.is_empty() {
            let room = STAGE_BYTES - self.staged;
            let n = room.min(bytes.len());
            let at = self.start + self.staged;
            self.buffer[at..at + n].copy_from_slice(&bytes[..n]);
            self.staged += n;
            bytes = &bytes[n..];
            if self.staged == STAGE_BYTES {
                self.write_stage(STAGE_BYTES)?;
            }
        }
        Ok(())
    }

    /// Writes every whole block staged, then fdatasyncs: all but the last partial block
    /// of what was accepted is then on the disk.
    pub fn sync_data(&mut self) -> io::Result<()> {
        if self.finished {
            return self.file.sync_data();
        }
        let whole = self.staged - self.staged % DIRECT_ALIGN;
        if whole > 0 {
            self.write_stage(whole)?;
        }
        self.file.sync_data()
    }

    /// Writes what is staged and cuts the file to exactly the bytes accepted. Returns
    /// the file for the caller's fsync (`sync_all`: the length is metadata). Nothing may
    /// be written after this: a write then is refused.
    pub fn finish(&mut self) -> io::Result<&File> {
        if self.finished {
            return Ok(&self.file);
        }
        let len = self.len();
        if self.staged > 0 {
            if self.direct {
                let padded = self.staged.div_ceil(DIRECT_ALIGN) * DIRECT_ALIGN;
                let (from, to) = (self.start + self.staged, self.start + padded);
                self.buffer[from..to].fill(0);
                self.staged = padded;
            }
            self.write_stage(self.staged)?;
        }
        if self.written != len {
            self.file.set_len(len)?;
            self.written = len;
        }
        self.finished = true;
        Ok(&self.file)
    }

    /// Writes the first `n` staged bytes and keeps the rest staged.
    fn write_stage(&mut self, n: usize) -> io::Result<()> {
        let range = self.start..self.start + n;
        match self
            .file
            .write_all_at(&self.buffer[range.clone()], self.written)
        {
            Ok(()) => {}
            Err(e) if self.direct && e.raw_os_error() == Some(nix::libc::EINVAL) => {
                // The filesystem took O_DIRECT at open but refuses this write (a block
                // size above our alignment): the rest goes through the page cache.
                self.turn_direct_off()?;
                self.file.write_all_at(&self.buffer[range], self.written)?;
            }
            Err(e) => return Err(e),
        }
        self.written += n as u64;
        self.buffer
            .copy_within(self.start + n..self.start + self.staged, self.start);
        self.staged -= n;
        Ok(())
    }

    fn turn_direct_off(&mut self) -> io::Result<()> {
        set_direct(&self.file, false)?;
        self.direct = false;
        Ok(())
    }
}

/// A zeroed buffer of `len + DIRECT_ALIGN` bytes and the offset in it where `len` bytes
/// aligned for `O_DIRECT` start; `None` when the alignment cannot be found (`align_offset`
/// may decline to answer), and then the buffer must not be used for `O_DIRECT`.
pub(crate) fn aligned_buffer(len: usize) -> (Vec<u8>, Option<usize>) {
    let buffer = vec![0u8; len + DIRECT_ALIGN];
    let start = buffer.as_ptr().align_offset(DIRECT_ALIGN);
    (buffer, (start < DIRECT_ALIGN).then_some(start))
}

/// Turns `O_DIRECT` on or off for `file`'s open file description (shared by its clones).
/// A filesystem without direct I/O refuses to turn it on.
pub(crate) fn set_direct(file: &File, on: bool) -> io::Result<()> {
    let flags = OFlag::from_bits_truncate(fcntl(file, FcntlArg::F_GETFL).map_err(io::Error::from)?);
    let wanted = if on {
        flags | OFlag::O_DIRECT
    } else {
        flags - OFlag::O_DIRECT
    };
    if wanted != flags {
        fcntl(file, FcntlArg::F_SETFL(wanted)).map_err(io::Error::from)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    /// Whatever the pieces' sizes (below, across and at the stage and block sizes), the
    /// file holds exactly the bytes written, in order, and nothing after them.
    #[test]
    fn the_file_holds_exactly_what_was_written() {
        let dir = tempfile::TempDir::new().unwrap();
        let cases: [&[usize]; 5] = [
            &[],
            &[1],
            &[4096],
            &[STAGE_BYTES],
            &[
                17,
                4079,
                1,
                STAGE_BYTES - 3,
                70_000,
                2 * STAGE_BYTES + 5,
                300,
            ],
        ];
        for (i, sizes) in cases.iter().enumerate() {
            let path = dir.path().join(format!("f{i}"));
            let mut w = DirectFileWriter::create(&path).unwrap();
            let mut expected = Vec::new();
            for (j, size) in sizes.iter().enumerate() {
                let piece = pattern(*size, j as u8);
                w.write_all(&piece).unwrap();
                expected.extend_from_slice(&piece);
                assert_eq!(w.len(), expected.len() as u64);
            }
            w.finish().unwrap().sync_all().unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), expected, "case {i}");
        }
    }

    /// `sync_data` midway writes the whole blocks staged and keeps the partial one, so the
    /// bytes after it still land in order.
    #[test]
    fn syncing_midway_keeps_the_partial_block_for_later() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("f");
        let mut w = DirectFileWriter::create(&path).unwrap();
        let (a, b, c) = (pattern(10_000, 1), pattern(5, 2), pattern(300_000, 3));
        w.write_all(&a).unwrap();
        w.sync_data().unwrap();
        w.write_all(&b).unwrap();
        w.sync_data().unwrap();
        w.write_all(&c).unwrap();
        w.finish().unwrap().sync_all().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), [a, b, c].concat());
    }

    /// An existing file is replaced, not overwritten in place: a shorter new file leaves
    /// nothing of the old one behind.
    #[test]
    fn create_truncates_an_existing_file() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, pattern(3 * STAGE_BYTES, 9)).unwrap();
        let mut w = DirectFileWriter::create(&path).unwrap();
        w.write_all(b"short").unwrap();
        w.finish().unwrap().sync_all().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"short");
        // Finished is final: a later write is refused and the file stays as it is.
        assert!(w.write_all(b"more").is_err());
        w.finish().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"short");
    }

    /// The fallback path: with `O_DIRECT` turned off midway the result is the same.
    #[test]
    fn turning_direct_off_midway_changes_nothing_in_the_file() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("f");
        let mut w = DirectFileWriter::create(&path).unwrap();
        let (a, b) = (pattern(STAGE_BYTES + 123, 4), pattern(9_999, 5));
        w.write_all(&a).unwrap();
        w.turn_direct_off().unwrap();
        assert!(!w.is_direct());
        w.write_all(&b).unwrap();
        w.finish().unwrap().sync_all().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), [a, b].concat());
    }
}
