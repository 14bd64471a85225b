//! The snapshot file format: a checksummed header with the snapshot metadata, one
//! checksummed record per key in key order, and a trailer holding the key count and the
//! state checksum. Written and read as a stream: never the whole state in memory.
//!
//! ```text
//! header : "RPSN" | format u16 | header_len u32 | crc32c(header) u32 | header (postcard)
//!          format 1: (meta, last_hlc); format 2 adds the cluster config (JSON bytes).
//!          Format 1 files still decode (cluster config: the default); we write format 2.
//! record : 0x01 | key_len u32 | value_len u32 | crc32c(key ++ value) u32 | key | value
//! trailer: 0xFF | keys u64 | digest [32] | crc32c(keys ++ digest) u32
//! ```
//! `value` is a [`StoredValue`] encoding; `digest` is the [`StateHasher`] digest.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cluster_config::ClusterConfig;
use crate::direct_file::DirectFileWriter;
use crate::error::SnapshotError;
use crate::limits::{KEY_BYTES_MAX, SNAPSHOT_HEADER_BYTES_MAX, VALUE_RECORD_BYTES_MAX};
use crate::state_machine::value::StoredValue;
use crate::state_machine::view::StateHasher;
use crate::types::SnapshotMeta;

const MAGIC: &[u8; 4] = b"RPSN";
const FORMAT_V1: u16 = 1;
const FORMAT_V2: u16 = 2;
const TAG_RECORD: u8 = 0x01;
const TAG_TRAILER: u8 = 0xFF;

/// What the header of a snapshot file records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotHeader {
    pub meta: SnapshotMeta,
    /// Highest HLC stamp applied in the state the snapshot holds.
    pub last_hlc: u64,
    /// The replicated cluster config at that point (not covered by the state checksum).
    pub cluster: ClusterConfig,
}

/// The header as format 1 stored it.
#[derive(Serialize, Deserialize)]
struct HeaderV1 {
    meta: SnapshotMeta,
    last_hlc: u64,
}

/// The header as format 2 stores it.
#[derive(Serialize, Deserialize)]
struct HeaderV2 {
    meta: SnapshotMeta,
    last_hlc: u64,
    cluster: Vec<u8>,
}

fn decode_header(path: &Path, format: u16, body: &[u8]) -> Result<SnapshotHeader, SnapshotError> {
    let bad = |e: &dyn std::fmt::Display| SnapshotError::corrupt(path, format!("header: {e}"));
    match format {
        FORMAT_V1 => {
            let v1: HeaderV1 = postcard::from_bytes(body).map_err(|e| bad(&e))?;
            Ok(SnapshotHeader {
                meta: v1.meta,
                last_hlc: v1.last_hlc,
                cluster: ClusterConfig::default(),
            })
        }
        FORMAT_V2 => {
            let v2: HeaderV2 = postcard::from_bytes(body).map_err(|e| bad(&e))?;
            Ok(SnapshotHeader {
                meta: v2.meta,
                last_hlc: v2.last_hlc,
                cluster: ClusterConfig::decode(&v2.cluster).map_err(|e| bad(&e))?,
            })
        }
        other => Err(SnapshotError::corrupt(
            path,
            format!("unknown format version {other}"),
        )),
    }
}

/// Writes one snapshot file record by record.
pub struct SnapshotWriter {
    path: PathBuf,
    /// Around the page cache where the filesystem allows: a snapshot is written once
    /// and read back only by a restart, a backup or a lagging follower.
    out: DirectFileWriter,
    hasher: StateHasher,
}

impl SnapshotWriter {
    /// Creates `path` (truncating it) and writes the header.
    pub fn create(path: &Path, header: &SnapshotHeader) -> Result<Self, SnapshotError> {
        let out = DirectFileWriter::create(path).map_err(|e| SnapshotError::io(path, e))?;
        let mut w = SnapshotWriter {
            path: path.to_path_buf(),
            out,
            hasher: StateHasher::default(),
        };
        let encoded = encode_header(path, header)?;
        w.write(&encoded)?;
        Ok(w)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        self.out
            .write_all(bytes)
            .map_err(|e| SnapshotError::io(&self.path, e))
    }

    /// Appends one key; keys must come in ascending order.
    pub fn push(&mut self, key: &[u8], value: &StoredValue) -> Result<(), SnapshotError> {
        // The record is the value's header then its bytes (`StoredValue::encode`),
        // written in two pieces so the value is not first copied into a record of its own.
        let header = value.header();
        let mut crc = crc32c::crc32c(key);
        crc = crc32c::crc32c_append(crc, &header);
        crc = crc32c::crc32c_append(crc, &value.value);
        self.write(&[TAG_RECORD])?;
        self.write(&(key.len() as u32).to_le_bytes())?;
        self.write(&(value.encoded_len() as u32).to_le_bytes())?;
        self.write(&crc.to_le_bytes())?;
        self.write(key)?;
        self.write(&header)?;
        self.write(&value.value)?;
        self.hasher.push(key, value);
        Ok(())
    }

    /// Writes the trailer and fsyncs the file. Returns the key count and state digest.
    pub fn finish(mut self) -> Result<(u64, [u8; 32]), SnapshotError> {
        let (keys, digest) = self.hasher.finish();
        let mut tail = keys.to_le_bytes().to_vec();
        tail.extend_from_slice(&digest);
        let crc = crc32c::crc32c(&tail);
        self.write(&[TAG_TRAILER])?;
        self.write(&tail)?;
        self.write(&crc.to_le_bytes())?;
        let file = self
            .out
            .finish()
            .map_err(|e| SnapshotError::io(&self.path, e))?;
        file.sync_all()
            .map_err(|e| SnapshotError::io(&self.path, e))?;
        Ok((keys, digest))
    }
}

/// Reads a snapshot file, verifying every checksum as it goes.
pub struct SnapshotReader<R: Read> {
    path: PathBuf,
    input: BufReader<R>,
    header: SnapshotHeader,
    hasher: StateHasher,
    done: bool,
}

impl SnapshotReader<File> {
    /// Opens `path` and reads its header.
    pub fn open(path: &Path) -> Result<Self, SnapshotError> {
        let file = File::open(path).map_err(|e| SnapshotError::io(path, e))?;
        SnapshotReader::new(path, file)
    }
}

impl<R: Read> SnapshotReader<R> {
    /// Reads the header from `input`; `path` names the source in errors.
    pub fn new(path: &Path, input: R) -> Result<Self, SnapshotError> {
        let mut input = BufReader::with_capacity(1 << 20, input);
        let mut fixed = [0u8; 14];
        read_exact(path, &mut input, &mut fixed)?;
        if &fixed[0..4] != MAGIC {
            return Err(SnapshotError::corrupt(
                path,
                "not a snapshot file (bad magic)",
            ));
        }
        let format = u16::from_le_bytes([fixed[4], fixed[5]]);
        if format != FORMAT_V1 && format != FORMAT_V2 {
            return Err(SnapshotError::corrupt(
                path,
                format!("unknown format version {format}"),
            ));
        }
        let len = u32_at(&fixed, 6) as usize;
        if len > SNAPSHOT_HEADER_BYTES_MAX {
            return Err(SnapshotError::corrupt(
                path,
                format!("header of {len} bytes"),
            ));
        }
        let mut body = vec![0u8; len];
        read_exact(path, &mut input, &mut body)?;
        if crc32c::crc32c(&body) != u32_at(&fixed, 10) {
            return Err(SnapshotError::corrupt(path, "header checksum mismatch"));
        }
        let header = decode_header(path, format, &body)?;
        Ok(SnapshotReader {
            path: path.to_path_buf(),
            input,
            header,
            hasher: StateHasher::default(),
            done: false,
        })
    }

    /// The header.
    pub fn header(&self) -> &SnapshotHeader {
        &self.header
    }

    /// Next key and value, or None after the trailer was read and verified.
    pub fn next_record(&mut self) -> Result<Option<(Vec<u8>, StoredValue)>, SnapshotError> {
        if self.done {
            return Ok(None);
        }
        let mut tag = [0u8; 1];
        read_exact(&self.path, &mut self.input, &mut tag)?;
        match tag[0] {
            TAG_RECORD => self.read_record().map(Some),
            TAG_TRAILER => {
                self.read_trailer()?;
                self.done = true;
                Ok(None)
            }
            other => Err(SnapshotError::corrupt(
                &self.path,
                format!("unknown record tag {other:#x}"),
            )),
        }
    }

    fn read_record(&mut self) -> Result<(Vec<u8>, StoredValue), SnapshotError> {
        let mut fixed = [0u8; 12];
        read_exact(&self.path, &mut self.input, &mut fixed)?;
        let (klen, vlen) = (u32_at(&fixed, 0) as usize, u32_at(&fixed, 4) as usize);
        if klen > KEY_BYTES_MAX || vlen > VALUE_RECORD_BYTES_MAX {
            return Err(SnapshotError::corrupt(
                &self.path,
                "record length over limit",
            ));
        }
        let mut buf = vec![0u8; klen + vlen];
        read_exact(&self.path, &mut self.input, &mut buf)?;
        if crc32c::crc32c(&buf) != u32_at(&fixed, 8) {
            return Err(SnapshotError::corrupt(
                &self.path,
                "record checksum mismatch",
            ));
        }
        let value = StoredValue::decode(&buf[klen..])
            .map_err(|e| SnapshotError::corrupt(&self.path, e.to_string()))?;
        buf.truncate(klen);
        self.hasher.push(&buf, &value);
        Ok((buf, value))
    }

    fn read_trailer(&mut self) -> Result<(), SnapshotError> {
        let mut tail = [0u8; 8 + 32 + 4];
        read_exact(&self.path, &mut self.input, &mut tail)?;
        if crc32c::crc32c(&tail[..40]) != u32_at(&tail, 40) {
            return Err(SnapshotError::corrupt(
                &self.path,
                "trailer checksum mismatch",
            ));
        }
        let (keys, digest) = self.hasher.finish();
        if tail[..8] != keys.to_le_bytes() || tail[8..40] != digest {
            return Err(SnapshotError::corrupt(
                &self.path,
                "state checksum in trailer does not match the records",
            ));
        }
        Ok(())
    }

    /// Key count and digest of the records read so far (complete after the trailer).
    pub fn digest(&self) -> (u64, [u8; 32]) {
        self.hasher.finish()
    }
}

fn read_exact<R: Read>(path: &Path, input: &mut R, buf: &mut [u8]) -> Result<(), SnapshotError> {
    input.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => SnapshotError::corrupt(path, "truncated"),
        _ => SnapshotError::io(path, e),
    })
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    u32::from_le_bytes(b)
}

/// Key count and state digest from the trailer of the complete snapshot file at `path`,
/// without reading the records (the trailer's own checksum is verified).
pub fn read_trailer(path: &Path) -> Result<(u64, [u8; 32]), SnapshotError> {
    use std::io::{Seek, SeekFrom};
    let mut file = File::open(path).map_err(|e| SnapshotError::io(path, e))?;
    let mut tail = [0u8; 1 + 8 + 32 + 4];
    file.seek(SeekFrom::End(-(tail.len() as i64)))
        .map_err(|e| SnapshotError::io(path, e))?;
    read_exact(path, &mut file, &mut tail)?;
    if tail[0] != TAG_TRAILER || crc32c::crc32c(&tail[1..41]) != u32_at(&tail, 41) {
        return Err(SnapshotError::corrupt(path, "trailer missing or damaged"));
    }
    let mut keys = [0u8; 8];
    keys.copy_from_slice(&tail[1..9]);
    let mut digest = [0u8; 32];
    digest.copy_from_slice(&tail[9..41]);
    Ok((u64::from_le_bytes(keys), digest))
}

fn encode_header(path: &Path, header: &SnapshotHeader) -> Result<Vec<u8>, SnapshotError> {
    let wire = HeaderV2 {
        meta: header.meta.clone(),
        last_hlc: header.last_hlc,
        cluster: header.cluster.encode(),
    };
    let body = postcard::to_allocvec(&wire)
        .map_err(|e| SnapshotError::corrupt(path, format!("encode header: {e}")))?;
    if body.len() > SNAPSHOT_HEADER_BYTES_MAX {
        return Err(SnapshotError::corrupt(
            path,
            format!(
                "header of {} bytes is over the {SNAPSHOT_HEADER_BYTES_MAX}-byte limit",
                body.len()
            ),
        ));
    }
    let mut out = Vec::with_capacity(14 + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_V2.to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Copies the snapshot `src` to `dst` with its header replaced by `change(header)`; the
/// records and trailer are copied verbatim (the state checksum does not cover the
/// header). `dst` is fsynced. Returns the new header.
pub fn rewrite_header(
    src: &Path,
    dst: &Path,
    change: impl FnOnce(SnapshotHeader) -> SnapshotHeader,
) -> Result<SnapshotHeader, SnapshotError> {
    let mut input = File::open(src).map_err(|e| SnapshotError::io(src, e))?;
    let mut fixed = [0u8; 14];
    read_exact(src, &mut input, &mut fixed)?;
    let old = SnapshotReader::open(src)?.header().clone();
    let mut skip = vec![0u8; u32_at(&fixed, 6) as usize];
    read_exact(src, &mut input, &mut skip)?;
    let header = change(old);
    let mut out = File::create(dst).map_err(|e| SnapshotError::io(dst, e))?;
    out.write_all(&encode_header(dst, &header)?)
        .map_err(|e| SnapshotError::io(dst, e))?;
    std::io::copy(&mut input, &mut out).map_err(|e| SnapshotError::io(dst, e))?;
    out.sync_all().map_err(|e| SnapshotError::io(dst, e))?;
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A format-1 file (header without the cluster config) still reads, with the default
    /// cluster config; files are written in format 2 and round-trip the config.
    #[test]
    fn format_1_headers_still_decode_and_format_2_round_trips() {
        let dir = tempfile::TempDir::new().unwrap();
        let v1 = HeaderV1 {
            meta: SnapshotMeta::default(),
            last_hlc: 42,
        };
        let body = postcard::to_allocvec(&v1).unwrap();
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&FORMAT_V1.to_le_bytes());
        bytes.extend_from_slice(&(body.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
        bytes.extend_from_slice(&body);
        let mut tail = 0u64.to_le_bytes().to_vec();
        tail.extend_from_slice(&StateHasher::default().finish().1);
        bytes.push(TAG_TRAILER);
        bytes.extend_from_slice(&tail);
        bytes.extend_from_slice(&crc32c::crc32c(&tail).to_le_bytes());
        let old = dir.path().join("v1.snap");
        std::fs::write(&old, &bytes).unwrap();
        let mut reader = SnapshotReader::open(&old).unwrap();
        assert_eq!(reader.header().last_hlc, 42);
        assert_eq!(reader.header().cluster, ClusterConfig::default());
        assert!(reader.next_record().unwrap().is_none());

        let mut header = reader.header().clone();
        header.cluster.backup_targets.sites.insert(
            "site-1".into(),
            vec![crate::backup::target::TargetSpec::Node],
        );
        let new = dir.path().join("v2.snap");
        SnapshotWriter::create(&new, &header)
            .unwrap()
            .finish()
            .unwrap();
        assert_eq!(SnapshotReader::open(&new).unwrap().header(), &header);
    }
}
