//! The archive mark: the highest log index known to be in the log archive (raised by
//! applied `ArchiveMark` commands). A fact about the archive, not about the data, so it
//! lives in its own small durable file beside the snapshots and survives restarts and
//! snapshot installs; the log store reads it to never purge past what the archive holds.

use std::path::Path;

use crate::atomic_file::{read_checked, write_atomic, AtomicFileError};

const FILE_NAME: &str = "archived";

/// Reads the mark stored in `dir` (0 when none was ever stored).
pub(crate) fn read(dir: &Path) -> Result<u64, AtomicFileError> {
    match read_checked(dir, FILE_NAME)? {
        None => Ok(0),
        Some(payload) => {
            let bytes: [u8; 8] =
                payload
                    .as_slice()
                    .try_into()
                    .map_err(|_| AtomicFileError::Corrupt {
                        path: dir.join(FILE_NAME),
                        reason: format!("payload is {} bytes, expected 8", payload.len()),
                    })?;
            Ok(u64::from_le_bytes(bytes))
        }
    }
}

/// Durably stores `through` as the mark in `dir`.
pub(crate) fn write(dir: &Path, through: u64) -> Result<(), AtomicFileError> {
    write_atomic(dir, FILE_NAME, &through.to_le_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_mark_is_read_back_and_a_damaged_one_is_refused() {
        let dir = tempfile::TempDir::new().unwrap();
        assert_eq!(read(dir.path()).unwrap(), 0);
        write(dir.path(), 42).unwrap();
        assert_eq!(read(dir.path()).unwrap(), 42);
        write_atomic(dir.path(), FILE_NAME, b"short").unwrap();
        let err = read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("expected 8"), "{err}");
    }
}
