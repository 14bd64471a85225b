//! Small durable files (the vote, log metadata) replaced atomically: written to
//! `name.tmp`, fsynced, renamed over `name`, then the directory is fsynced. Each file
//! carries a magic, a format version, the payload length and a crc32c of the payload,
//! so a damaged file is reported instead of being silently misread.
//!
//! Layout: `b"RPAF"` | version u16 LE (= 1) | payload len u32 LE | crc32c(payload) u32 LE
//! | payload.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

/// First four bytes of every atomic file.
const MAGIC: &[u8; 4] = b"RPAF";
/// The only format version this code writes and reads.
const FORMAT_VERSION: u16 = 1;
/// Bytes before the payload: magic, version, length, crc.
const HEADER_LEN: usize = 4 + 2 + 4 + 4;

/// Failures reading or writing an atomic file.
#[derive(Debug, Error)]
pub enum AtomicFileError {
    #[error("file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("file {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> AtomicFileError + '_ {
    move |source| AtomicFileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Durably replaces `dir/name` with `payload`. A crash leaves either the old or the new
/// file in place (plus perhaps a stale `name.tmp`, which readers ignore and the next
/// write replaces).
pub fn write_atomic(dir: &Path, name: &str, payload: &[u8]) -> Result<(), AtomicFileError> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let len = u32::try_from(payload.len()).map_err(|_| AtomicFileError::Io {
        path: path.clone(),
        source: io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("payload of {} bytes is too large", payload.len()),
        ),
    })?;
    let mut bytes = Vec::with_capacity(HEADER_LEN + payload.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&len.to_le_bytes());
    bytes.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    bytes.extend_from_slice(payload);

    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    file.write_all(&bytes).map_err(io_err(&tmp))?;
    file.sync_all().map_err(io_err(&tmp))?;
    drop(file);
    fs::rename(&tmp, &path).map_err(io_err(&path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Reads and verifies `dir/name`. `Ok(None)` when the file does not exist; any damage
/// (bad magic, unknown version, wrong length, checksum mismatch) is an error naming the
/// file and what is wrong.
pub fn read_checked(dir: &Path, name: &str) -> Result<Option<Vec<u8>>, AtomicFileError> {
    let path = dir.join(name);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(&path)(e)),
    };
    decode(&bytes)
        .map(Some)
        .map_err(|reason| AtomicFileError::Corrupt { path, reason })
}

/// Checks the header and checksum and returns the payload, or why it is unusable.
fn decode(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let Some((header, payload)) = bytes.split_at_checked(HEADER_LEN) else {
        return Err(format!(
            "file is {} bytes, shorter than its {HEADER_LEN}-byte header",
            bytes.len()
        ));
    };
    if &header[0..4] != MAGIC {
        return Err(format!(
            "bad magic {:02x?} (expected {:02x?}); not a reprise atomic file",
            &header[0..4],
            MAGIC
        ));
    }
    let version = u16::from_le_bytes([header[4], header[5]]);
    if version != FORMAT_VERSION {
        return Err(format!(
            "unknown format version {version} (this build reads version {FORMAT_VERSION})"
        ));
    }
    let len = u32::from_le_bytes([header[6], header[7], header[8], header[9]]);
    if u64::from(len) != payload.len() as u64 {
        return Err(format!(
            "header says {len} payload bytes but the file holds {}",
            payload.len()
        ));
    }
    let stored = u32::from_le_bytes([header[10], header[11], header[12], header[13]]);
    let actual = crc32c::crc32c(payload);
    if stored != actual {
        return Err(format!(
            "checksum mismatch (stored {stored:#010x}, computed {actual:#010x})"
        ));
    }
    Ok(payload.to_vec())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        write_atomic(dir.path(), "vote", b"first").unwrap();
        assert_eq!(
            read_checked(dir.path(), "vote").unwrap().as_deref(),
            Some(&b"first"[..])
        );
        write_atomic(dir.path(), "vote", b"second, longer").unwrap();
        assert_eq!(
            read_checked(dir.path(), "vote").unwrap().as_deref(),
            Some(&b"second, longer"[..])
        );
        write_atomic(dir.path(), "empty", b"").unwrap();
        assert_eq!(
            read_checked(dir.path(), "empty").unwrap().as_deref(),
            Some(&b""[..])
        );
        assert!(!dir.path().join("vote.tmp").exists());
    }

    #[test]
    fn flipped_byte_is_corrupt_and_names_path() {
        let dir = tempfile::tempdir().unwrap();
        write_atomic(dir.path(), "vote", b"some payload").unwrap();
        let path = dir.path().join("vote");
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        fs::write(&path, &bytes).unwrap();
        let err = read_checked(dir.path(), "vote").unwrap_err();
        assert!(
            matches!(&err, AtomicFileError::Corrupt { path: p, .. } if *p == path),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("checksum mismatch"), "{msg}");
    }

    #[test]
    fn damaged_headers_are_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        write_atomic(dir.path(), "meta", b"payload").unwrap();
        let path = dir.path().join("meta");
        let good = fs::read(&path).unwrap();

        let mut v2 = good.clone();
        v2[4] = 2;
        fs::write(&path, &v2).unwrap();
        let msg = read_checked(dir.path(), "meta").unwrap_err().to_string();
        assert!(msg.contains("unknown format version 2"), "{msg}");

        fs::write(&path, &good[..good.len() - 1]).unwrap();
        let msg = read_checked(dir.path(), "meta").unwrap_err().to_string();
        assert!(msg.contains("header says 7 payload bytes"), "{msg}");

        fs::write(&path, &good[..5]).unwrap();
        let msg = read_checked(dir.path(), "meta").unwrap_err().to_string();
        assert!(msg.contains("shorter than"), "{msg}");

        let mut bad_magic = good.clone();
        bad_magic[0] = b'X';
        fs::write(&path, &bad_magic).unwrap();
        let msg = read_checked(dir.path(), "meta").unwrap_err().to_string();
        assert!(msg.contains("bad magic"), "{msg}");
    }

    #[test]
    fn missing_file_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_checked(dir.path(), "vote").unwrap().is_none());
    }

    #[test]
    fn leftover_tmp_is_ignored_then_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("vote.tmp");
        fs::write(&tmp, b"half-written garbage").unwrap();
        assert!(read_checked(dir.path(), "vote").unwrap().is_none());

        write_atomic(dir.path(), "vote", b"v1").unwrap();
        fs::write(&tmp, b"crash during the next write").unwrap();
        assert_eq!(
            read_checked(dir.path(), "vote").unwrap().as_deref(),
            Some(&b"v1"[..])
        );
        write_atomic(dir.path(), "vote", b"v2").unwrap();
        assert!(!tmp.exists());
        assert_eq!(
            read_checked(dir.path(), "vote").unwrap().as_deref(),
            Some(&b"v2"[..])
        );
    }
}
