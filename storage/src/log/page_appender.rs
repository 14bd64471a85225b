//! `PageAppender`: appends to the active segment file in whole pages. Appended bytes are
//! buffered; each write to the file starts at the beginning of the page holding the end
//! of what the file already has (those bytes are kept in memory and written again) and,
//! in a preallocated file, ends on a page boundary, padded with zeros. The page cache
//! then never has to read a block from the disk before an append can go into it (a
//! write that covers part of an uncached page reads the rest first): appends cost the
//! same whether the segment's pages are cached or not, so the zero-filled spare segment
//! is written around the page cache (`spare.rs`) and never has to be read back into it.
//!
//! Since every write of a preallocated segment covers whole pages from a page-aligned
//! buffer, those writes go around the page cache too (`O_DIRECT`): the kernel neither
//! copies the bytes into cache pages nor writes dirty pages back at the fdatasync, which
//! then only has to flush the disk's cache. Where the filesystem refuses `O_DIRECT` (when
//! it is turned on or at a write), the appender writes through the page cache: slower,
//! never different.
//!
//! The zeros past the end are what a preallocated segment holds there anyway: recovery
//! reads a record header of zeros as the end of the records, exactly as before. A file
//! that grows is not padded (and not written around the cache): past its end the page
//! cache needs nothing from the disk.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use crate::direct_file::{aligned_buffer, set_direct, DIRECT_ALIGN};

/// The unit the page cache reads and writes (the largest page size in use on common
/// systems is a multiple of it, and ext4's block size is at most it).
const PAGE_BYTES: usize = DIRECT_ALIGN;

/// Appender on one segment file.
#[derive(Debug)]
pub(crate) struct PageAppender {
    file: File,
    /// `room` bytes from `start` hold, from the start of the page holding the file's end:
    /// the bytes already in the file (`in_file` of them), then the appended bytes not
    /// written yet (`len` in all).
    buffer: Vec<u8>,
    start: usize,
    room: usize,
    len: usize,
    /// File offset of the buffered bytes, a multiple of `PAGE_BYTES`.
    page_start: u64,
    in_file: usize,
    /// Buffered bytes beyond which `write_all` writes to the file.
    flush_at: usize,
    /// Writes end on a page boundary (the file is preallocated past its end).
    pad: bool,
    /// Writes go around the page cache (`O_DIRECT` is on for the file).
    direct: bool,
}

impl PageAppender {
    /// An appender continuing `file` at `end`; the bytes of `end`'s page before it are
    /// read back. Writes go to the file once `flush_at` bytes are buffered, or on
    /// [`PageAppender::flush`]. `pad`: the file is preallocated past `end`, and writes
    /// are padded with zeros to a page boundary (and go around the page cache where the
    /// filesystem allows).
    pub(crate) fn open(
        file: File,
        end: u64,
        flush_at: usize,
        pad: bool,
    ) -> io::Result<PageAppender> {
        let page_start = end - end % PAGE_BYTES as u64;
        // Less than a page, so it fits a usize on every platform.
        let in_file = (end - page_start) as usize;
        let room = (flush_at + PAGE_BYTES).next_multiple_of(PAGE_BYTES);
        let (mut buffer, aligned) = aligned_buffer(room);
        let start = aligned.unwrap_or(0);
        // The read back is not aligned: through the page cache, whatever an earlier
        // appender on this file (a clone of it) left turned on.
        set_direct(&file, false)?;
        file.read_exact_at(&mut buffer[start..start + in_file], page_start)?;
        let direct = pad && aligned.is_some() && set_direct(&file, true).is_ok();
        Ok(PageAppender {
            file,
            buffer,
            start,
            room,
            len: in_file,
            page_start,
            in_file,
            flush_at,
            pad,
            direct,
        })
    }

    /// Buffers `bytes` after everything appended so far.
    pub(crate) fn write_all(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let n = (self.room - self.len).min(bytes.len());
            let at = self.start + self.len;
            self.buffer[at..at + n].copy_from_slice(&bytes[..n]);
            self.len += n;
            bytes = &bytes[n..];
            if self.len == self.room {
                // Full: `room` is whole pages, so this write leaves nothing to keep.
                self.flush()?;
            }
        }
        if self.len >= self.flush_at {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes every buffered byte to the file (not synced), from the start of the page
    /// holding the file's previous end; when padding, zeros to the next page boundary.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        let end = self.len;
        if end == self.in_file {
            return Ok(());
        }
        let write_len = if self.pad {
            let padded = end.next_multiple_of(PAGE_BYTES);
            self.buffer[self.start + end..self.start + padded].fill(0);
            padded
        } else {
            end
        };
        self.write_at_page_start(write_len)?;
        // Keep the page holding the new end, without its padding.
        let last_page = end - end % PAGE_BYTES;
        self.buffer
            .copy_within(self.start + last_page..self.start + end, self.start);
        self.page_start += last_page as u64;
        self.len = end - last_page;
        self.in_file = self.len;
        Ok(())
    }

    fn write_at_page_start(&mut self, n: usize) -> io::Result<()> {
        let bytes = &self.buffer[self.start..self.start + n];
        match self.file.write_all_at(bytes, self.page_start) {
            Err(e) if self.direct && e.raw_os_error() == Some(nix::libc::EINVAL) => {
                // The filesystem took O_DIRECT but refuses this write (a block size
                // above a page): through the page cache from now on. A refused write
                // wrote nothing.
                set_direct(&self.file, false)?;
                self.direct = false;
                self.file.write_all_at(bytes, self.page_start)
            }
            r => r,
        }
    }

    /// Whether writes go around the page cache.
    #[cfg(test)]
    fn is_direct(&self) -> bool {
        self.direct
    }

    /// The file (for syncing).
    pub(crate) fn get_ref(&self) -> &File {
        &self.file
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;

    fn file(dir: &std::path::Path) -> File {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.join("f"))
            .unwrap()
    }

    /// Appends and flushes each of `writes` in turn.
    fn flushed_writes(appender: &mut PageAppender, writes: &[&[u8]]) {
        for bytes in writes {
            appender.write_all(bytes).unwrap();
            appender.flush().unwrap();
        }
    }

    /// Whatever the mix of small and page-crossing appends, flushes and reopenings, the
    /// file holds exactly the appended bytes followed by zeros to a page boundary.
    #[test]
    fn appends_land_in_order_with_zeros_to_the_page_end() {
        let dir = tempfile::tempdir().unwrap();
        let f = file(dir.path());
        f.write_all_at(b"HEADER", 0).unwrap();
        let mut expected = b"HEADER".to_vec();
        let mut appender = PageAppender::open(f, 6, 10_000, true).unwrap();
        for (i, len) in [1usize, 300, 4096, 5000, 7, 12_288, 4090, 1]
            .iter()
            .enumerate()
        {
            let bytes: Vec<u8> = (0..*len).map(|j| (i * 31 + j) as u8 | 1).collect();
            appender.write_all(&bytes).unwrap();
            expected.extend_from_slice(&bytes);
            if i % 3 == 0 {
                appender.flush().unwrap();
            }
            if i == 4 {
                // Reopened mid-page, as after a restart or a truncation.
                appender.flush().unwrap();
                let again = appender.get_ref().try_clone().unwrap();
                appender = PageAppender::open(again, expected.len() as u64, 10_000, true).unwrap();
            }
        }
        appender.flush().unwrap();
        let on_disk = std::fs::read(dir.path().join("f")).unwrap();
        assert_eq!(on_disk.len(), expected.len().next_multiple_of(PAGE_BYTES));
        assert_eq!(&on_disk[..expected.len()], &expected[..]);
        assert!(on_disk[expected.len()..].iter().all(|b| *b == 0));
    }

    /// Every write covers whole pages: none starts or ends inside one.
    #[test]
    fn writes_start_and_end_on_page_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let f = file(dir.path());
        let mut appender = PageAppender::open(f, 0, 1 << 20, true).unwrap();
        flushed_writes(&mut appender, &[&[7; 100]]);
        assert_eq!(appender.page_start, 0);
        assert_eq!(appender.in_file, 100);
        flushed_writes(&mut appender, &[&[8; 4000]]);
        // 4100 bytes: the second page holds the end.
        assert_eq!(appender.page_start, 4096);
        assert_eq!(appender.in_file, 4);
        let len = appender.get_ref().metadata().unwrap().len();
        assert_eq!(len % PAGE_BYTES as u64, 0);
        assert_eq!(len, 8192);
    }

    /// A growing file is not padded: it ends where the records end, and a write still
    /// starts at the beginning of the page holding the previous end.
    #[test]
    fn a_growing_file_ends_where_the_appends_end() {
        let dir = tempfile::tempdir().unwrap();
        let f = file(dir.path());
        let mut appender = PageAppender::open(f, 0, 1 << 20, false).unwrap();
        flushed_writes(&mut appender, &[&[7; 5000], &[8; 10]]);
        assert_eq!(appender.page_start, 4096);
        assert_eq!(appender.get_ref().metadata().unwrap().len(), 5010);
        let on_disk = std::fs::read(dir.path().join("f")).unwrap();
        assert_eq!(&on_disk[..5000], &[7; 5000][..]);
        assert_eq!(&on_disk[5000..], &[8; 10][..]);
    }

    /// A padded appender writes around the page cache wherever the filesystem takes
    /// `O_DIRECT`; one on a growing file never does (its writes end inside a page).
    #[test]
    fn padded_writes_go_around_the_page_cache_where_the_filesystem_allows() {
        let dir = tempfile::tempdir().unwrap();
        let f = file(dir.path());
        let takes_direct = set_direct(&f, true).is_ok();
        let padded = PageAppender::open(f.try_clone().unwrap(), 0, 1 << 20, true).unwrap();
        assert_eq!(padded.is_direct(), takes_direct);
        drop(padded);
        let growing = PageAppender::open(f, 0, 1 << 20, false).unwrap();
        assert!(!growing.is_direct());
    }

    /// One append larger than the whole buffer is written in full-buffer pieces and
    /// still lands in order, followed by zeros to the page end.
    #[test]
    fn an_append_larger_than_the_buffer_lands_whole() {
        let dir = tempfile::tempdir().unwrap();
        let f = file(dir.path());
        let mut appender = PageAppender::open(f, 0, 5000, true).unwrap();
        let big: Vec<u8> = (0..100_003u32).map(|i| (i % 251) as u8 | 1).collect();
        flushed_writes(&mut appender, &[b"head", &big, b"tail"]);
        let mut expected = b"head".to_vec();
        expected.extend_from_slice(&big);
        expected.extend_from_slice(b"tail");
        let on_disk = std::fs::read(dir.path().join("f")).unwrap();
        assert_eq!(on_disk.len(), expected.len().next_multiple_of(PAGE_BYTES));
        assert_eq!(&on_disk[..expected.len()], &expected[..]);
        assert!(on_disk[expected.len()..].iter().all(|b| *b == 0));
    }
}
