//! Encoding of one stored key's value record in the state machine tree.
//!
//! Format (version 1): `format u8 = 1 | version u64 | create_index u64 | mod_index u64 |
//! mod_hlc u64 | value bytes` (integers little-endian). Decoding never panics on bad bytes.

use bytes::Bytes;
use thiserror::Error;

const FORMAT_V1: u8 = 1;
const HEADER_LEN: usize = 1 + 8 * 4;

/// The state of one live key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredValue {
    /// Shared with the command that wrote it (see `command`), not a copy.
    pub value: Bytes,
    /// 1 after creation, +1 on every put; a deleted key starts again at 1.
    pub version: u64,
    /// Log index that created the key.
    pub create_index: u64,
    /// Log index of the last write to the key.
    pub mod_index: u64,
    /// HLC stamp of the last write to the key.
    pub mod_hlc: u64,
}

/// A value record that cannot be decoded.
#[derive(Debug, Error)]
#[error("undecodable value record: {0}")]
pub struct ValueDecodeError(pub &'static str);

impl StoredValue {
    /// Serializes in the current format.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.extend_from_slice(&self.header());
        out.extend_from_slice(&self.value);
        out
    }

    /// The record's header: what [`StoredValue::encode`] writes before the value bytes.
    /// Writers that stream records (snapshots) write it and then the value, without
    /// copying the value into a record of its own first.
    pub fn header(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0] = FORMAT_V1;
        for (i, n) in [
            self.version,
            self.create_index,
            self.mod_index,
            self.mod_hlc,
        ]
        .into_iter()
        .enumerate()
        {
            out[1 + i * 8..9 + i * 8].copy_from_slice(&n.to_le_bytes());
        }
        out
    }

    /// Length of the encoded record.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.value.len()
    }

    /// Parses a record written by [`StoredValue::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self, ValueDecodeError> {
        let (&format, rest) = bytes.split_first().ok_or(ValueDecodeError("empty"))?;
        if format != FORMAT_V1 {
            return Err(ValueDecodeError("unknown format version"));
        }
        if rest.len() < HEADER_LEN - 1 {
            return Err(ValueDecodeError("shorter than its header"));
        }
        let word = |i: usize| {
            let mut buf = [0u8; 8];
            buf.copy_from_slice(&rest[i * 8..i * 8 + 8]);
            u64::from_le_bytes(buf)
        };
        Ok(StoredValue {
            version: word(0),
            create_index: word(1),
            mod_index: word(2),
            mod_hlc: word(3),
            value: Bytes::copy_from_slice(&rest[HEADER_LEN - 1..]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects_garbage() {
        let v = StoredValue {
            value: Bytes::from_static(b"hello"),
            version: 3,
            create_index: 10,
            mod_index: 12,
            mod_hlc: 99,
        };
        assert_eq!(StoredValue::decode(&v.encode()).unwrap(), v);
        assert!(StoredValue::decode(&[]).is_err());
        assert!(StoredValue::decode(&[2, 0, 0]).is_err());
        assert!(StoredValue::decode(&v.encode()[..10]).is_err());
    }

    #[test]
    fn encoding_is_the_documented_layout() {
        let v = StoredValue {
            value: Bytes::from_static(b"xy"),
            version: 1,
            create_index: 2,
            mod_index: 3,
            mod_hlc: 0x0102,
        };
        let mut expected = vec![FORMAT_V1];
        for n in [1u64, 2, 3, 0x0102] {
            expected.extend_from_slice(&n.to_le_bytes());
        }
        expected.extend_from_slice(b"xy");
        assert_eq!(v.encode(), expected);
        assert_eq!(v.header()[..], expected[..HEADER_LEN]);
        assert_eq!(v.encoded_len(), expected.len());
    }
}
