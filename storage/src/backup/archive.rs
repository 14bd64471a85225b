//! Log archive segments: a run of consecutive committed log entries, serialized as one
//! backup object (then erasure-coded and placed like a snapshot). This module owns the
//! byte form of a segment and its checks (magic, format, contiguous indices); the digest
//! that proves a rebuilt segment intact is recorded in its manifest.
//!
//! ```text
//! segment: "RPLA" | format u16 | postcard(SegmentBody)
//! ```
//!
//! The archive streams that form out of a [`SegmentReader`], entry by entry, instead of
//! building it in one buffer first.

use std::io::{ErrorKind, Read};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::command::Command;
use crate::types::Entry;

const MAGIC: &[u8; 4] = b"RPLA";
const FORMAT_V1: u16 = 1;

/// Prefix of every log-archive backup id.
pub const SEGMENT_ID_PREFIX: &str = "log-";

/// A segment that cannot be decoded.
#[derive(Debug, Error)]
pub enum SegmentError {
    #[error("log archive segment {id}: {reason}")]
    Corrupt { id: String, reason: String },
    #[error("log archive segment: no entries")]
    Empty,
    #[error("log archive segment {id}: cannot encode: {reason}")]
    Encode { id: String, reason: String },
}

/// What `encode` writes: the body over borrowed entries (serde writes a slice exactly as
/// the `Vec` that `SegmentBody` reads back).
#[derive(Serialize)]
struct SegmentBodyRef<'a> {
    first: u64,
    last: u64,
    entries: &'a [Entry],
}

#[derive(Serialize, Deserialize)]
struct SegmentBody {
    first: u64,
    last: u64,
    entries: Vec<Entry>,
}

/// A run of consecutive committed entries.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub entries: Vec<Entry>,
}

impl Segment {
    /// A segment of `entries`, which must be non-empty and consecutive.
    pub fn new(entries: Vec<Entry>) -> Result<Segment, SegmentError> {
        let segment = Segment { entries };
        segment.check("new")?;
        Ok(segment)
    }

    fn check(&self, id: &str) -> Result<(), SegmentError> {
        let first = self
            .entries
            .first()
            .ok_or(SegmentError::Empty)?
            .log_id
            .index;
        for (i, e) in self.entries.iter().enumerate() {
            if e.log_id.index != first + i as u64 {
                return Err(SegmentError::Corrupt {
                    id: id.to_string(),
                    reason: format!(
                        "entry {} follows index {} (indices must be consecutive)",
                        e.log_id.index,
                        first + i as u64 - 1
                    ),
                });
            }
        }
        Ok(())
    }

    /// First log index held.
    pub fn first_index(&self) -> u64 {
        self.entries.first().map(|e| e.log_id.index).unwrap_or(0)
    }

    /// Last log index held.
    pub fn last_index(&self) -> u64 {
        self.entries.last().map(|e| e.log_id.index).unwrap_or(0)
    }

    /// Highest HLC stamp of any command in the segment (0 if it holds none).
    pub fn max_hlc(&self) -> u64 {
        self.entries.iter().filter_map(entry_hlc).max().unwrap_or(0)
    }

    /// The backup id naming this segment: `log-<first>-<last>`, zero-padded so ids sort
    /// in log order.
    pub fn id(&self) -> String {
        segment_id(self.first_index(), self.last_index())
    }

    /// Whether archiving the segment would record anything a restore needs: only archive
    /// marks and blank entries are not worth a segment of their own.
    pub fn has_content(&self) -> bool {
        self.entries.iter().any(|e| match &e.payload {
            openraft::EntryPayload::Blank => false,
            openraft::EntryPayload::Membership(_) => true,
            openraft::EntryPayload::Normal(c) => {
                !matches!(c.op, crate::command::Operation::ArchiveMark { .. })
            }
        })
    }

    /// Serialized form, written once into a buffer of its exact size (a segment holds up
    /// to a second of writes: tens of megabytes under load).
    pub fn encode(&self) -> Result<Vec<u8>, SegmentError> {
        let body = SegmentBodyRef {
            first: self.first_index(),
            last: self.last_index(),
            entries: &self.entries,
        };
        let mut out = Vec::with_capacity(MAGIC.len() + 2);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_V1.to_le_bytes());
        crate::encoding::append_exact(&body, &mut out).map_err(|e| SegmentError::Encode {
            id: self.id(),
            reason: e.to_string(),
        })?;
        Ok(out)
    }

    /// The serialized form as a reader: the same bytes as [`Segment::encode`], each entry
    /// encoded straight into the caller's buffer when it fits there. A segment holds up to
    /// a second of writes (tens of megabytes under load); encoding it into one buffer of its
    /// own cost the leader a copy of every value onto memory the kernel had to zero first.
    pub fn into_reader(self) -> SegmentReader {
        let id = self.id();
        let header = (self.first_index(), self.last_index(), self.entries.len());
        let mut pending = Vec::with_capacity(64);
        pending.extend_from_slice(MAGIC);
        pending.extend_from_slice(&FORMAT_V1.to_le_bytes());
        // postcard writes a struct as its fields in order and a slice as its length then
        // its elements: the body's prefix is these three varints.
        let prefix = postcard::to_io(&header, &mut pending).map(|_| ());
        SegmentReader {
            id,
            entries: self.entries.into_iter(),
            pending,
            at: 0,
            failed: prefix.err(),
        }
    }

    /// Parses a segment rebuilt from backup `id`, checking magic, format, the declared
    /// range and that indices are consecutive.
    pub fn decode(id: &str, bytes: &[u8]) -> Result<Segment, SegmentError> {
        let corrupt = |reason: String| SegmentError::Corrupt {
            id: id.to_string(),
            reason,
        };
        if bytes.len() < 6 || &bytes[..4] != MAGIC {
            return Err(corrupt("not a log archive segment (bad magic)".into()));
        }
        let format = u16::from_le_bytes([bytes[4], bytes[5]]);
        if format != FORMAT_V1 {
            return Err(corrupt(format!(
                "segment format {format} is not known (this build reads {FORMAT_V1})"
            )));
        }
        let body: SegmentBody =
            postcard::from_bytes(&bytes[6..]).map_err(|e| corrupt(e.to_string()))?;
        let segment = Segment {
            entries: body.entries,
        };
        segment.check(id)?;
        if segment.first_index() != body.first || segment.last_index() != body.last {
            return Err(corrupt(format!(
                "declares {}..={} but holds {}..={}",
                body.first,
                body.last,
                segment.first_index(),
                segment.last_index()
            )));
        }
        Ok(segment)
    }
}

/// A segment's serialized form, read front to back (see [`Segment::into_reader`]).
pub struct SegmentReader {
    id: String,
    entries: std::vec::IntoIter<Entry>,
    /// Encoded bytes not yet read: the header, or an entry that did not fit the caller's
    /// buffer.
    pending: Vec<u8>,
    at: usize,
    /// Why encoding stopped, reported by the next read.
    failed: Option<postcard::Error>,
}

impl SegmentReader {
    fn encode_error(&self, e: postcard::Error) -> std::io::Error {
        let e = SegmentError::Encode {
            id: self.id.clone(),
            reason: e.to_string(),
        };
        std::io::Error::new(ErrorKind::InvalidData, e)
    }
}

impl Read for SegmentReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some(e) = self.failed.take() {
            return Err(self.encode_error(e));
        }
        let mut filled = 0;
        while filled < buf.len() {
            if self.at < self.pending.len() {
                let take = (buf.len() - filled).min(self.pending.len() - self.at);
                buf[filled..filled + take].copy_from_slice(&self.pending[self.at..self.at + take]);
                self.at += take;
                filled += take;
                continue;
            }
            let Some(entry) = self.entries.next() else {
                break;
            };
            match postcard::to_slice(&entry, &mut buf[filled..]) {
                Ok(written) => filled += written.len(),
                Err(postcard::Error::SerializeBufferFull) => {
                    // Only the last entry of a read lands here; the rest of it comes with
                    // the next read.
                    self.pending.clear();
                    self.at = 0;
                    if let Err(e) = crate::encoding::append_exact(&entry, &mut self.pending) {
                        return Err(self.encode_error(e));
                    }
                }
                Err(e) => return Err(self.encode_error(e)),
            }
        }
        Ok(filled)
    }
}

/// Backup id of the segment holding `first..=last`.
pub fn segment_id(first: u64, last: u64) -> String {
    format!("{SEGMENT_ID_PREFIX}{first:012}-{last:012}")
}

/// The HLC stamp of an entry's command, if it carries one.
pub fn entry_hlc(entry: &Entry) -> Option<u64> {
    match &entry.payload {
        openraft::EntryPayload::Normal(Command { hlc, .. }) => Some(*hlc),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Operation;
    use bytes::Bytes;
    use openraft::{CommittedLeaderId, EntryPayload, LogId};

    fn entry(index: u64, op: Operation) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(2, 1), index),
            payload: EntryPayload::Normal(Command {
                hlc: 100 + index,
                op,
            }),
        }
    }

    fn put(index: u64) -> Entry {
        entry(
            index,
            Operation::Put {
                key: format!("k{index}").into_bytes(),
                value: Bytes::from_static(b"v"),
            },
        )
    }

    #[test]
    fn round_trips_and_names_itself_in_log_order() {
        let s = Segment::new((7..=9).map(put).collect()).unwrap();
        assert_eq!(s.id(), "log-000000000007-000000000009");
        assert_eq!(s.max_hlc(), 109);
        assert!(s.id() < segment_id(10, 10));
        assert_eq!(Segment::decode("x", &s.encode().unwrap()).unwrap(), s);
    }

    #[test]
    fn the_byte_form_is_the_owned_body_s_encoding() {
        // Segments archived before `encode` borrowed its entries must still decode.
        let s = Segment::new((1..=40).map(put).collect()).unwrap();
        let owned = SegmentBody {
            first: 1,
            last: 40,
            entries: s.entries.clone(),
        };
        let mut expected = b"RPLA".to_vec();
        expected.extend_from_slice(&FORMAT_V1.to_le_bytes());
        expected.extend_from_slice(&postcard::to_allocvec(&owned).unwrap());
        assert_eq!(s.encode().unwrap(), expected);
    }

    fn read_in_pieces(mut reader: SegmentReader, piece: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; piece];
        loop {
            let n = reader.read(&mut buf).unwrap();
            if n == 0 {
                return out;
            }
            assert!(
                n == piece || reader.read(&mut buf).unwrap() == 0,
                "a short read before the end"
            );
            out.extend_from_slice(&buf[..n]);
        }
    }

    #[test]
    fn the_reader_yields_exactly_the_encoded_form_whatever_the_read_size() {
        let mut entries: Vec<Entry> = (300..=420)
            .map(|i| {
                entry(
                    i,
                    Operation::Put {
                        key: format!("key-{i}").into_bytes(),
                        value: Bytes::from(vec![i as u8; (i as usize * 37) % 5000]),
                    },
                )
            })
            .collect();
        entries[3] = Entry {
            log_id: entries[3].log_id,
            payload: EntryPayload::Blank,
        };
        entries[9] = entry(309, Operation::ArchiveMark { through: 290 });
        let s = Segment::new(entries).unwrap();
        let expected = s.encode().unwrap();
        // Pieces smaller than the header, than one entry, and larger than the whole.
        for piece in [1, 5, 7, 1000, 4096, 65_536, expected.len() + 10] {
            let got = read_in_pieces(s.clone().into_reader(), piece);
            assert_eq!(got.len(), expected.len(), "piece {piece}");
            assert!(got == expected, "piece {piece}: bytes differ");
        }
        let decoded = Segment::decode("x", &read_in_pieces(s.clone().into_reader(), 999)).unwrap();
        assert_eq!(decoded, s);
    }

    #[test]
    fn refuses_gaps_bad_magic_and_truncation() {
        let e = Segment::new(vec![put(1), put(3)]).unwrap_err();
        assert!(e.to_string().contains("entry 3 follows index 1"), "{e}");
        assert!(matches!(Segment::new(vec![]), Err(SegmentError::Empty)));
        let bytes = Segment::new(vec![put(1), put(2)])
            .unwrap()
            .encode()
            .unwrap();
        let e = Segment::decode("log-x", &bytes[1..]).unwrap_err();
        assert!(e.to_string().contains("log-x"), "{e}");
        assert!(Segment::decode("t", &bytes[..bytes.len() - 3]).is_err());
    }

    #[test]
    fn marks_and_blanks_alone_are_not_content() {
        let mark = entry(4, Operation::ArchiveMark { through: 3 });
        let blank = Entry {
            log_id: LogId::new(CommittedLeaderId::new(2, 1), 5),
            payload: EntryPayload::Blank,
        };
        assert!(!Segment::new(vec![mark.clone(), blank])
            .unwrap()
            .has_content());
        assert!(Segment::new(vec![mark, put(5)]).unwrap().has_content());
    }
}
