//! `PageAppender`: appends to the active segment file in whole pages. Appended bytes are
//! buffered; each write to the file starts at the beginning of the page holding the end
//! of what the file already has (those bytes are kept in memory and written again) and,
//! in a preallocated file, ends on a page boundary, padded with zeros. The page cache
//! then never has to read a block from the disk before an append can go into it (a
//! write that covers part of an uncached page reads the rest first): appends cost the
//! same whether the segment's pages are cached or not, so the zero-filled spare segment
//! is written around the page cache (`spare.rs`) and never has to be read back into it.
//!
//! The zeros past the end are what a preallocated segment holds there anyway: recovery
//! reads a record header of zeros as the end of the records, exactly as before. A file
//! that grows is not padded: past its end the page cache needs nothing from the disk.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// The unit the page cache reads and writes (the largest page size in use on common
/// systems is a multiple of it, and ext4's block size is at most it).
const PAGE_BYTES: usize = 4096;

/// Appender on one segment file.
#[derive(Debug)]
pub(crate) struct PageAppender {
    file: File,
    /// From the start of the page holding the file's end: the bytes already in the file
    /// (`in_file` of them), then the appended bytes not written yet.
    buf: Vec<u8>,
    /// File offset of `buf[0]`, a multiple of `PAGE_BYTES`.
    page_start: u64,
    in_file: usize,
    /// Buffered bytes beyond which `write_all` writes to the file.
    flush_at: usize,
    /// Writes end on a page boundary (the file is preallocated past its end).
    pad: bool,
}

impl PageAppender {
    /// An appender continuing `file` at `end`; the bytes of `end`'s page before it are
    /// read back. Writes go to the file once `flush_at` bytes are buffered, or on
    /// [`PageAppender::flush`]. `pad`: the file is preallocated past `end`, and writes
    /// are padded with zeros to a page boundary.
    pub(crate) fn open(
        file: File,
        end: u64,
        flush_at: usize,
        pad: bool,
    ) -> io::Result<PageAppender> {
        let page_start = end - end % PAGE_BYTES as u64;
        let mut buf = Vec::with_capacity(flush_at + 2 * PAGE_BYTES);
        // Less than a page, so it fits a usize on every platform.
        buf.resize((end - page_start) as usize, 0);
        file.read_exact_at(&mut buf, page_start)?;
        Ok(PageAppender {
            file,
            in_file: buf.len(),
            buf,
            page_start,
            flush_at,
            pad,
        })
    }

    /// Buffers `bytes` after everything appended so far.
    pub(crate) fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= self.flush_at {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes every buffered byte to the file (not synced), from the start of the page
    /// holding the file's previous end; when padding, zeros to the next page boundary.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        let end = self.buf.len();
        if end == self.in_file {
            return Ok(());
        }
        if self.pad {
            self.buf.resize(end.next_multiple_of(PAGE_BYTES), 0);
        }
        let written = self.file.write_all_at(&self.buf, self.page_start);
        self.buf.truncate(end);
        written?;
        // Keep the page holding the new end, without its padding.
        let last_page = end - end % PAGE_BYTES;
        self.buf.drain(..last_page);
        self.page_start += last_page as u64;
        self.in_file = self.buf.len();
        Ok(())
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
}
