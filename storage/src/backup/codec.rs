//! Erasure coding of backup objects across datacenter sites. This module owns the k+m
//! parameters of an object ([`CodecParams`]), the split of one stripe into Reed-Solomon
//! shards and its rebuild from whatever shards survive ([`encode_stripe`],
//! [`decode_stripe`]), and the self-describing, checksummed byte form of one shard
//! ([`ShardRecord::write_to`], [`ShardRecord::read_from`]).
//!
//! It does not own where shards are placed, how object ids are assigned, or the files
//! and transports that carry records: callers hand it bytes and streams.

use std::io::{ErrorKind, Read, Write};

use reed_solomon_erasure::galois_8::ReedSolomon;
use thiserror::Error;

/// Largest stripe an object may be cut into.
pub const STRIPE_BYTES_MAX: u32 = 64 * 1024 * 1024;
/// Largest shard payload a record may carry; a longer `payload_len` on disk is corruption.
pub const SHARD_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Fewest sites that a backup can be erasure-coded across.
pub const SITES_MIN: usize = 2;
/// Most shards (k + m) per stripe: GF(2^8) Reed-Solomon with a `u8` shard index.
pub const TOTAL_SHARDS_MAX: usize = 255;
/// Leading bytes of every serialized shard record.
pub const RECORD_MAGIC: [u8; 4] = *b"RPSH";
/// Version of the serialized shard record layout written by this module.
pub const RECORD_FORMAT: u16 = 1;

/// Bytes of the header fields: magic, format, object, stripe, shard, k, m, data len, payload len.
const HEADER_FIELDS_BYTES: usize = 4 + 2 + 8 + 8 + 1 + 1 + 1 + 4 + 4;
/// Bytes of one CRC32C checksum.
const CRC_BYTES: usize = 4;
/// Header fields plus their checksum: everything read before the payload.
const HEADER_BYTES: usize = HEADER_FIELDS_BYTES + CRC_BYTES;

/// Failures of erasure coding and of shard record (de)serialization.
#[derive(Debug, Error)]
pub enum CodecError {
    #[error("invalid codec parameters: {0}")]
    InvalidParams(String),
    #[error(
        "stripe {stripe}: {have} usable shards, need {need}; missing or rejected shard indices {missing:?}"
    )]
    TooFewShards {
        stripe: u64,
        have: usize,
        need: usize,
        missing: Vec<u8>,
    },
    #[error("corrupt shard record: {reason}")]
    Corrupt { reason: String },
    #[error("shard record i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("erasure coding: {0}")]
    Encode(String),
}

fn corrupt(reason: impl Into<String>) -> CodecError {
    CodecError::Corrupt {
        reason: reason.into(),
    }
}

/// Erasure-coding parameters of one backup object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodecParams {
    pub data_shards: u8,
    pub parity_shards: u8,
    pub stripe_bytes: u32,
}

impl CodecParams {
    /// k data + m parity derived from the number of sites: one shard per site per stripe,
    /// k = ceil(sites/2), m = sites - k (3 sites -> 2+1, 4 -> 2+2, 5 -> 3+2). Fewer than
    /// [`SITES_MIN`] or more than [`TOTAL_SHARDS_MAX`] sites is an error.
    pub fn for_sites(sites: usize, stripe_bytes: u32) -> Result<CodecParams, CodecError> {
        if !(SITES_MIN..=TOTAL_SHARDS_MAX).contains(&sites) {
            return Err(CodecError::InvalidParams(format!(
                "{sites} sites; erasure coding needs {SITES_MIN}..={TOTAL_SHARDS_MAX} sites"
            )));
        }
        let k = sites.div_ceil(2);
        let m = sites - k;
        let to_u8 = |n: usize| {
            u8::try_from(n)
                .map_err(|_| CodecError::InvalidParams(format!("{n} shards for {sites} sites")))
        };
        CodecParams::new(to_u8(k)?, to_u8(m)?, stripe_bytes)
    }

    /// Validates explicit parameters: k >= 1, m >= 1, k + m <= [`TOTAL_SHARDS_MAX`],
    /// k <= stripe_bytes <= [`STRIPE_BYTES_MAX`].
    pub fn new(
        data_shards: u8,
        parity_shards: u8,
        stripe_bytes: u32,
    ) -> Result<CodecParams, CodecError> {
        let params = CodecParams {
            data_shards,
            parity_shards,
            stripe_bytes,
        };
        params.validate()?;
        Ok(params)
    }

    /// Checks the invariants of [`CodecParams::new`]; the fields are public, so encode and
    /// decode re-check them.
    fn validate(&self) -> Result<(), CodecError> {
        let (k, m, bytes) = (self.data_shards, self.parity_shards, self.stripe_bytes);
        let problem = if k == 0 {
            format!("data_shards is 0 (with {m} parity); need at least 1")
        } else if m == 0 {
            format!("parity_shards is 0 (with {k} data); need at least 1")
        } else if self.total_shards() > TOTAL_SHARDS_MAX {
            let total = self.total_shards();
            format!("{k}+{m} = {total} shards; at most {TOTAL_SHARDS_MAX}")
        } else if bytes < u32::from(k) {
            format!("stripe_bytes {bytes} is smaller than data_shards {k}")
        } else if bytes > STRIPE_BYTES_MAX {
            format!("stripe_bytes {bytes} exceeds the limit {STRIPE_BYTES_MAX}")
        } else {
            return Ok(());
        };
        Err(CodecError::InvalidParams(problem))
    }

    /// k + m.
    pub fn total_shards(&self) -> usize {
        usize::from(self.data_shards) + usize::from(self.parity_shards)
    }

    /// Bytes per shard of a full stripe: ceil(stripe_bytes / k) (0 if k is 0, which
    /// [`CodecParams::new`] rejects).
    pub fn shard_bytes(&self) -> usize {
        shard_len(self.stripe_bytes as usize, self.data_shards)
    }
}

/// Bytes per shard of a stripe holding `data_len` bytes over `k` data shards.
fn shard_len(data_len: usize, k: u8) -> usize {
    match usize::from(k) {
        0 => 0,
        k => data_len.div_ceil(k),
    }
}

fn reed_solomon(params: &CodecParams) -> Result<ReedSolomon, CodecError> {
    let (k, m) = (params.data_shards, params.parity_shards);
    ReedSolomon::new(usize::from(k), usize::from(m))
        .map_err(|e| CodecError::InvalidParams(format!("{k}+{m}: {e}")))
}

/// One shard of one stripe, as stored: self-describing and checksummed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardRecord {
    /// Which backup object (caller-assigned).
    pub object_id: u64,
    /// Stripe number within the object.
    pub stripe: u64,
    /// 0..k are data, k..k+m parity.
    pub shard: u8,
    pub data_shards: u8,
    pub parity_shards: u8,
    /// Real data bytes in this stripe (the last stripe may be short; padding is zeros).
    pub stripe_data_len: u32,
    /// ceil(stripe_data_len / k) bytes.
    pub payload: Vec<u8>,
}

/// Splits one stripe of data (1..=stripe_bytes bytes) into k+m shard records: k data shards
/// of ceil(len / k) bytes (the tail padded with zeros) followed by m parity shards.
pub fn encode_stripe(
    params: &CodecParams,
    object_id: u64,
    stripe: u64,
    data: &[u8],
) -> Result<Vec<ShardRecord>, CodecError> {
    let stripe_data_len = checked_stripe_len(params, stripe, data)?;
    let shards = coded_shards(params, stripe, data, 0, 0, |_, _| Ok(()))?;
    Ok(shards
        .into_iter()
        .zip(0..=u8::MAX)
        .map(|(payload, shard)| {
            let header = Header::of_shard(params, object_id, stripe, shard, stripe_data_len, 0);
            ShardRecord::from_header(&header, payload)
        })
        .collect())
}

/// Erasure-codes one stripe exactly as [`encode_stripe`] and returns each shard's record
/// already serialized (the bytes [`ShardRecord::write_to`] writes). The payloads are coded
/// in place inside the record buffers, so the stripe's data is copied once, where
/// `encode_stripe` then `write_to` copy it twice into fresh buffers.
pub fn encode_stripe_records(
    params: &CodecParams,
    object_id: u64,
    stripe: u64,
    data: &[u8],
) -> Result<Vec<Vec<u8>>, CodecError> {
    let stripe_data_len = checked_stripe_len(params, stripe, data)?;
    let len = shard_len(data.len(), params.data_shards);
    let payload_len = u32::try_from(len)
        .map_err(|_| CodecError::InvalidParams(format!("stripe {stripe}: shard of {len} bytes")))?;
    let mut records = coded_shards(
        params,
        stripe,
        data,
        HEADER_BYTES,
        CRC_BYTES,
        |shard, out| {
            let header = Header::of_shard(
                params,
                object_id,
                stripe,
                shard,
                stripe_data_len,
                payload_len,
            );
            header.check_layout().map_err(|reason| {
                CodecError::InvalidParams(format!("cannot write {}: {reason}", header.describe()))
            })?;
            out.extend_from_slice(&header.to_bytes());
            Ok(())
        },
    )?;
    for record in &mut records {
        let crc = crc32c::crc32c(&record[HEADER_BYTES..]);
        record.extend_from_slice(&crc.to_le_bytes());
    }
    Ok(records)
}

/// The k+m shard buffers of one stripe, coded: each starts with `offset` bytes written by
/// `prefix` (given the shard index), then its payload of ceil(len / k) bytes (a data
/// shard's chunk padded with zeros, or parity), with room for `room_after` more bytes.
/// The payloads are coded where they lie, after their prefixes.
fn coded_shards(
    params: &CodecParams,
    stripe: u64,
    data: &[u8],
    offset: usize,
    room_after: usize,
    mut prefix: impl FnMut(u8, &mut Vec<u8>) -> Result<(), CodecError>,
) -> Result<Vec<Vec<u8>>, CodecError> {
    let k = usize::from(params.data_shards);
    let len = shard_len(data.len(), params.data_shards);
    let mut chunks = data.chunks(len);
    let mut shards = Vec::with_capacity(params.total_shards());
    for (index, shard) in (0..params.total_shards()).zip(0..=u8::MAX) {
        let mut buf = Vec::with_capacity(offset + len + room_after);
        prefix(shard, &mut buf)?;
        if buf.len() != offset {
            return Err(CodecError::Encode(format!(
                "stripe {stripe} shard {shard}: a {}-byte prefix where {offset} were expected",
                buf.len()
            )));
        }
        if index < k {
            buf.extend_from_slice(chunks.next().unwrap_or_default());
        }
        buf.resize(offset + len, 0);
        shards.push(buf);
    }
    let mut payloads: Vec<&mut [u8]> = shards.iter_mut().map(|s| &mut s[offset..]).collect();
    reed_solomon(params)?
        .encode(&mut payloads)
        .map_err(|e| CodecError::Encode(format!("stripe {stripe}: encode: {e}")))?;
    Ok(shards)
}

/// The stripe's data length, once the parameters and the length are known to be valid.
fn checked_stripe_len(params: &CodecParams, stripe: u64, data: &[u8]) -> Result<u32, CodecError> {
    params.validate()?;
    u32::try_from(data.len())
        .ok()
        .filter(|&len| (1..=params.stripe_bytes).contains(&len))
        .ok_or_else(|| {
            CodecError::InvalidParams(format!(
                "stripe {stripe}: {} data bytes; a stripe holds 1..={} bytes",
                data.len(),
                params.stripe_bytes
            ))
        })
}

/// The identity that the shards of one stripe share beyond the codec parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StripeKey {
    object_id: u64,
    stripe: u64,
    stripe_data_len: u32,
}

impl StripeKey {
    fn of(record: &ShardRecord) -> StripeKey {
        StripeKey {
            object_id: record.object_id,
            stripe: record.stripe,
            stripe_data_len: record.stripe_data_len,
        }
    }
}

/// Whether `record`, found at slot `index`, agrees with `params` and with itself.
fn fits_slot(params: &CodecParams, index: usize, record: &ShardRecord) -> bool {
    usize::from(record.shard) == index
        && record.data_shards == params.data_shards
        && record.parity_shards == params.parity_shards
        && (1..=params.stripe_bytes).contains(&record.stripe_data_len)
        && record.payload.len() == shard_len(record.stripe_data_len as usize, params.data_shards)
}

/// Picks the stripe the consistent shards belong to: the one with the most shards (the
/// lowest slot wins a tie). Two different stripes that could each be decoded are an error.
fn choose_stripe(
    params: &CodecParams,
    usable: &[Option<ShardRecord>],
) -> Result<Option<StripeKey>, CodecError> {
    let mut groups: Vec<(StripeKey, usize)> = Vec::new();
    for key in usable.iter().flatten().map(StripeKey::of) {
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, count)) => *count += 1,
            None => groups.push((key, 1)),
        }
    }
    let need = usize::from(params.data_shards);
    let mut decodable = groups.iter().filter(|(_, count)| *count >= need);
    if let (Some((a, na)), Some((b, nb))) = (decodable.next(), decodable.next()) {
        return Err(corrupt(format!(
            "conflicting shards: object {} stripe {} ({na} shards) and object {} stripe {} \
             ({nb} shards) could each be decoded",
            a.object_id, a.stripe, b.object_id, b.stripe
        )));
    }
    let mut best: Option<(StripeKey, usize)> = None;
    for &(key, count) in &groups {
        if best.is_none_or(|(_, most)| count > most) {
            best = Some((key, count));
        }
    }
    Ok(best.map(|(key, _)| key))
}

/// Rebuilds one stripe's data from whatever shards are available (index = shard number;
/// None = missing; a vector shorter than k+m leaves the tail missing, a longer one is an
/// error). Shards whose metadata disagrees with the parameters or the slot (k, m, shard
/// index, data length, payload length) are treated as missing; so are shards outvoted by
/// the largest group agreeing on object, stripe and data length. Needs at least k usable
/// shards, otherwise `TooFewShards` naming that group's stripe (or the first given shard's
/// stripe if none is usable, or 0 if none was given). Returns exactly stripe_data_len bytes.
pub fn decode_stripe(
    params: &CodecParams,
    shards: Vec<Option<ShardRecord>>,
) -> Result<Vec<u8>, CodecError> {
    params.validate()?;
    let total = params.total_shards();
    if shards.len() > total {
        return Err(CodecError::InvalidParams(format!(
            "{} shard slots given; {}+{} has {total}",
            shards.len(),
            params.data_shards,
            params.parity_shards
        )));
    }
    let fallback_stripe = shards.iter().flatten().next().map_or(0, |r| r.stripe);
    let usable: Vec<Option<ShardRecord>> = shards
        .into_iter()
        .enumerate()
        .map(|(index, shard)| shard.filter(|r| fits_slot(params, index, r)))
        .collect();
    let key = choose_stripe(params, &usable)?;
    let mut pieces: Vec<Option<Vec<u8>>> = vec![None; total];
    for (piece, record) in pieces.iter_mut().zip(usable) {
        *piece = record
            .filter(|r| Some(StripeKey::of(r)) == key)
            .map(|r| r.payload);
    }
    let have = pieces.iter().flatten().count();
    let need = usize::from(params.data_shards);
    let stripe = key.map_or(fallback_stripe, |key| key.stripe);
    let Some(key) = key.filter(|_| have >= need) else {
        let missing = (0..=u8::MAX)
            .zip(&pieces)
            .filter(|(_, piece)| piece.is_none())
            .map(|(index, _)| index)
            .collect();
        return Err(CodecError::TooFewShards {
            stripe,
            have,
            need,
            missing,
        });
    };
    reed_solomon(params)?
        .reconstruct_data(&mut pieces)
        .map_err(|e| CodecError::Encode(format!("stripe {stripe}: reconstruct: {e}")))?;
    join_data(pieces, need, key)
}

/// Concatenates the first `k` (rebuilt) shards and cuts the padding off.
fn join_data(
    pieces: Vec<Option<Vec<u8>>>,
    k: usize,
    key: StripeKey,
) -> Result<Vec<u8>, CodecError> {
    let len = key.stripe_data_len as usize;
    let mut data = Vec::with_capacity(len);
    for (index, piece) in pieces.into_iter().take(k).enumerate() {
        let piece = piece.ok_or_else(|| {
            let stripe = key.stripe;
            CodecError::Encode(format!(
                "stripe {stripe}: data shard {index} was not rebuilt"
            ))
        })?;
        let take = piece.len().min(len - data.len());
        data.extend_from_slice(&piece[..take]);
    }
    if data.len() != len {
        return Err(CodecError::Encode(format!(
            "stripe {}: rebuilt {} data bytes, expected {len}",
            key.stripe,
            data.len()
        )));
    }
    Ok(data)
}

/// The fixed-size fields in front of a record's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    object_id: u64,
    stripe: u64,
    shard: u8,
    data_shards: u8,
    parity_shards: u8,
    stripe_data_len: u32,
    payload_len: u32,
}

impl Header {
    /// The header of shard `shard` of a stripe coded with `params`.
    fn of_shard(
        params: &CodecParams,
        object_id: u64,
        stripe: u64,
        shard: u8,
        stripe_data_len: u32,
        payload_len: u32,
    ) -> Header {
        Header {
            object_id,
            stripe,
            shard,
            data_shards: params.data_shards,
            parity_shards: params.parity_shards,
            stripe_data_len,
            payload_len,
        }
    }

    fn describe(&self) -> String {
        format!(
            "object {} stripe {} shard {}",
            self.object_id, self.stripe, self.shard
        )
    }

    /// Serializes the header fields and their checksum, without judging them.
    fn to_bytes(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_BYTES);
        out.extend_from_slice(&RECORD_MAGIC);
        out.extend_from_slice(&RECORD_FORMAT.to_le_bytes());
        out.extend_from_slice(&self.object_id.to_le_bytes());
        out.extend_from_slice(&self.stripe.to_le_bytes());
        out.extend_from_slice(&[self.shard, self.data_shards, self.parity_shards]);
        out.extend_from_slice(&self.stripe_data_len.to_le_bytes());
        out.extend_from_slice(&self.payload_len.to_le_bytes());
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Whether the fields describe a record this module could have written.
    fn check_layout(&self) -> Result<(), String> {
        let (k, m, shard) = (self.data_shards, self.parity_shards, self.shard);
        let (data_len, payload_len) = (self.stripe_data_len, self.payload_len as usize);
        let total = usize::from(k) + usize::from(m);
        if payload_len > SHARD_BYTES_MAX {
            Err(format!(
                "payload length {payload_len} exceeds the limit {SHARD_BYTES_MAX}"
            ))
        } else if k == 0 || m == 0 || total > TOTAL_SHARDS_MAX {
            Err(format!(
                "shard counts {k}+{m}; need k >= 1, m >= 1, k + m <= {TOTAL_SHARDS_MAX}"
            ))
        } else if usize::from(shard) >= total {
            Err(format!("shard index {shard} out of range for {k}+{m}"))
        } else if !(1..=STRIPE_BYTES_MAX).contains(&data_len) {
            Err(format!(
                "stripe data length {data_len}; must be 1..={STRIPE_BYTES_MAX}"
            ))
        } else if payload_len != shard_len(data_len as usize, k) {
            let expected = shard_len(data_len as usize, k);
            Err(format!(
                "payload length {payload_len}, expected {expected} for {data_len} stripe bytes over {k} data shards"
            ))
        } else {
            Ok(())
        }
    }
}

/// Reads fixed-size fields off the front of a byte slice.
struct FieldReader<'a> {
    rest: &'a [u8],
}

impl FieldReader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let (field, rest) = self
            .rest
            .split_first_chunk::<N>()
            .ok_or_else(|| corrupt(format!("header ends before a {N}-byte field")))?;
        self.rest = rest;
        Ok(*field)
    }
}

/// Parses and checks a record header: magic, header checksum, format, then field sanity.
fn parse_header(bytes: &[u8; HEADER_BYTES]) -> Result<Header, CodecError> {
    let mut f = FieldReader { rest: bytes };
    let magic: [u8; 4] = f.take()?;
    if magic != RECORD_MAGIC {
        return Err(corrupt(format!(
            "bad magic {magic:02x?}, expected {RECORD_MAGIC:02x?} (\"RPSH\")"
        )));
    }
    let (fields, stored) = bytes
        .split_first_chunk::<HEADER_FIELDS_BYTES>()
        .ok_or_else(|| corrupt("header shorter than its fields"))?;
    let stored = u32::from_le_bytes(FieldReader { rest: stored }.take()?);
    let computed = crc32c::crc32c(fields);
    if stored != computed {
        return Err(corrupt(format!(
            "header checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
        )));
    }
    let format = u16::from_le_bytes(f.take()?);
    if format != RECORD_FORMAT {
        return Err(corrupt(format!(
            "unsupported record format {format}, expected {RECORD_FORMAT}"
        )));
    }
    let header = Header {
        object_id: u64::from_le_bytes(f.take()?),
        stripe: u64::from_le_bytes(f.take()?),
        shard: u8::from_le_bytes(f.take()?),
        data_shards: u8::from_le_bytes(f.take()?),
        parity_shards: u8::from_le_bytes(f.take()?),
        stripe_data_len: u32::from_le_bytes(f.take()?),
        payload_len: u32::from_le_bytes(f.take()?),
    };
    header
        .check_layout()
        .map_err(|reason| corrupt(format!("{}: {reason}", header.describe())))?;
    Ok(header)
}

/// Fills `buf` from `r` until it is full or the stream ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> Result<usize, CodecError> {
    let mut filled = 0;
    while let Some(rest) = buf.get_mut(filled..).filter(|rest| !rest.is_empty()) {
        match r.read(rest) {
            Ok(0) => break,
            Ok(n) => filled += n.min(rest.len()),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(CodecError::Io(e)),
        }
    }
    Ok(filled)
}

/// Reads the payload and its checksum that follow an already-checked header.
fn read_payload(r: &mut impl Read, header: &Header) -> Result<Vec<u8>, CodecError> {
    let len = header.payload_len as usize;
    let mut payload = Vec::with_capacity(len);
    let got = r.by_ref().take(len as u64).read_to_end(&mut payload)?;
    if got < len {
        let what = header.describe();
        return Err(corrupt(format!(
            "{what}: truncated payload: {got} of {len} bytes"
        )));
    }
    let mut crc = [0u8; CRC_BYTES];
    let got = read_full(r, &mut crc)?;
    if got < CRC_BYTES {
        let what = header.describe();
        return Err(corrupt(format!(
            "{what}: truncated payload checksum: {got} of {CRC_BYTES} bytes"
        )));
    }
    let stored = u32::from_le_bytes(crc);
    let computed = crc32c::crc32c(&payload);
    if stored != computed {
        return Err(corrupt(format!(
            "{}: payload checksum mismatch: stored {stored:#010x}, computed {computed:#010x}",
            header.describe()
        )));
    }
    Ok(payload)
}

impl ShardRecord {
    /// The record of `header`'s shard holding `payload` (its length is the payload's, not
    /// the header's `payload_len`).
    fn from_header(header: &Header, payload: Vec<u8>) -> ShardRecord {
        ShardRecord {
            object_id: header.object_id,
            stripe: header.stripe,
            shard: header.shard,
            data_shards: header.data_shards,
            parity_shards: header.parity_shards,
            stripe_data_len: header.stripe_data_len,
            payload,
        }
    }

    fn header(&self) -> Header {
        Header {
            object_id: self.object_id,
            stripe: self.stripe,
            shard: self.shard,
            data_shards: self.data_shards,
            parity_shards: self.parity_shards,
            stripe_data_len: self.stripe_data_len,
            payload_len: u32::try_from(self.payload.len()).unwrap_or(u32::MAX),
        }
    }

    /// Serialized form: magic b"RPSH" | format u16 = 1 | object_id u64 | stripe u64 |
    /// shard u8 | k u8 | m u8 | stripe_data_len u32 | payload_len u32 | crc32c(header
    /// fields) u32 | payload | crc32c(payload) u32 — little-endian. A record that
    /// [`ShardRecord::read_from`] would reject (bad shard counts or index, payload length
    /// not ceil(stripe_data_len / k) or over [`SHARD_BYTES_MAX`]) is refused with
    /// `InvalidInput` before anything is written.
    pub fn write_to(&self, w: &mut impl Write) -> std::io::Result<()> {
        let header = self.header();
        if let Err(reason) = header.check_layout() {
            let message = format!("cannot write {}: {reason}", header.describe());
            return Err(std::io::Error::new(ErrorKind::InvalidInput, message));
        }
        w.write_all(&header.to_bytes())?;
        w.write_all(&self.payload)?;
        w.write_all(&crc32c::crc32c(&self.payload).to_le_bytes())
    }

    /// Reads the next record; Ok(None) at a clean end of stream. A failed checksum, bad
    /// magic, unknown format, nonsensical fields, a payload_len over [`SHARD_BYTES_MAX`]
    /// (checked before allocating) or truncation mid-record is `Corrupt`.
    pub fn read_from(r: &mut impl Read) -> Result<Option<ShardRecord>, CodecError> {
        let mut bytes = [0u8; HEADER_BYTES];
        match read_full(r, &mut bytes)? {
            0 => return Ok(None),
            HEADER_BYTES => {}
            got => {
                return Err(corrupt(format!(
                    "truncated header: {got} of {HEADER_BYTES} bytes"
                )))
            }
        }
        let header = parse_header(&bytes)?;
        let payload = read_payload(r, &header)?;
        Ok(Some(ShardRecord::from_header(&header, payload)))
    }

    /// Serialized size in bytes.
    pub fn encoded_len(&self) -> usize {
        HEADER_BYTES + self.payload.len() + CRC_BYTES
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;
    use proptest::sample::{subsequence, Index};
    use std::hint::black_box;
    use std::io::Cursor;
    use std::time::Instant;

    const OBJECT: u64 = 0x5eed_0b1e;

    fn pseudo_random_bytes(len: usize, mut seed: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            out.extend_from_slice(&seed.to_le_bytes());
        }
        out.truncate(len);
        out
    }

    fn all_present(records: &[ShardRecord]) -> Vec<Option<ShardRecord>> {
        records.iter().cloned().map(Some).collect()
    }

    /// Every record present except those at `dropped`.
    fn without(records: &[ShardRecord], dropped: &[u8]) -> Vec<Option<ShardRecord>> {
        let mut shards = all_present(records);
        for &index in dropped {
            shards[usize::from(index)] = None;
        }
        shards
    }

    /// Only the records at `kept`.
    fn only(records: &[ShardRecord], kept: &[u8]) -> Vec<Option<ShardRecord>> {
        let dropped: Vec<u8> = (0..records.len() as u8)
            .filter(|i| !kept.contains(i))
            .collect();
        without(records, &dropped)
    }

    fn serialize(record: &ShardRecord) -> Vec<u8> {
        let mut bytes = Vec::new();
        record.write_to(&mut bytes).unwrap();
        bytes
    }

    fn read_one(bytes: &[u8]) -> Result<Option<ShardRecord>, CodecError> {
        ShardRecord::read_from(&mut Cursor::new(bytes))
    }

    fn corrupt_reason(result: Result<Option<ShardRecord>, CodecError>) -> String {
        match result {
            Err(CodecError::Corrupt { reason }) => reason,
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[derive(Debug, Clone)]
    struct Case {
        k: u8,
        m: u8,
        stripe_bytes: u32,
        data: Vec<u8>,
        drop_m: Vec<u8>,
        drop_m_plus_1: Vec<u8>,
        flip_record: Index,
        flip_in_header: bool,
        flip_at: Index,
        flip_mask: u8,
    }

    fn codec_case() -> impl Strategy<Value = Case> {
        (1u8..=6, 1u8..=4, 0u32..=2048).prop_flat_map(|(k, m, extra)| {
            let stripe_bytes = u32::from(k) + extra;
            let indices: Vec<u8> = (0..k + m).collect();
            (
                vec(any::<u8>(), 1..=3 * stripe_bytes as usize),
                subsequence(indices.clone(), usize::from(m)),
                subsequence(indices, usize::from(m) + 1),
                (any::<Index>(), any::<bool>(), any::<Index>(), 1u8..=255),
            )
                .prop_map(move |(data, drop_m, drop_m_plus_1, flip)| Case {
                    k,
                    m,
                    stripe_bytes,
                    data,
                    drop_m,
                    drop_m_plus_1,
                    flip_record: flip.0,
                    flip_in_header: flip.1,
                    flip_at: flip.2,
                    flip_mask: flip.3,
                })
        })
    }

    /// One stripe's data and the records it was encoded into.
    type EncodedStripe = (Vec<u8>, Vec<ShardRecord>);

    /// A named change to a record or header.
    type Tweak<T> = (&'static str, fn(&mut T));

    /// Encodes `case.data` stripe by stripe.
    fn encode_case(case: &Case) -> (CodecParams, Vec<EncodedStripe>) {
        let params = CodecParams::new(case.k, case.m, case.stripe_bytes).unwrap();
        let stripes = case
            .data
            .chunks(case.stripe_bytes as usize)
            .zip(0u64..)
            .map(|(chunk, stripe)| {
                let records = encode_stripe(&params, OBJECT, stripe, chunk).unwrap();
                (chunk.to_vec(), records)
            })
            .collect();
        (params, stripes)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn prop_any_m_losses_decode_and_m_plus_1_fail(case in codec_case()) {
            let (params, stripes) = encode_case(&case);
            let k = usize::from(case.k);
            for (stripe, (chunk, records)) in (0u64..).zip(&stripes) {
                prop_assert_eq!(records.len(), k + usize::from(case.m));
                for record in records {
                    prop_assert_eq!(record.payload.len(), chunk.len().div_ceil(k));
                    prop_assert_eq!(record.stripe, stripe);
                }
                let decoded = decode_stripe(&params, without(records, &case.drop_m)).unwrap();
                prop_assert_eq!(&decoded, chunk);
                match decode_stripe(&params, without(records, &case.drop_m_plus_1)) {
                    Err(CodecError::TooFewShards { stripe: s, have, need, missing }) => {
                        // With k = 1 every shard is gone and nothing names the stripe.
                        prop_assert_eq!(s, if k == 1 { 0 } else { stripe });
                        prop_assert_eq!(have, k - 1);
                        prop_assert_eq!(need, k);
                        prop_assert_eq!(&missing, &case.drop_m_plus_1);
                    }
                    other => prop_assert!(false, "expected TooFewShards, got {:?}", other),
                }
            }
        }

        #[test]
        fn prop_records_round_trip_and_flipped_byte_is_corrupt(case in codec_case()) {
            let (_, stripes) = encode_case(&case);
            let records: Vec<&ShardRecord> = stripes.iter().flat_map(|(_, r)| r).collect();
            let mut stream = Vec::new();
            for record in &records {
                record.write_to(&mut stream).unwrap();
            }
            let mut reader = Cursor::new(&stream);
            for record in &records {
                let read = ShardRecord::read_from(&mut reader).unwrap();
                prop_assert_eq!(read.as_ref(), Some(*record));
            }
            prop_assert!(ShardRecord::read_from(&mut reader).unwrap().is_none());

            let record = records[case.flip_record.index(records.len())];
            let mut bytes = serialize(record);
            prop_assert_eq!(bytes.len(), record.encoded_len());
            let at = if case.flip_in_header {
                case.flip_at.index(HEADER_BYTES)
            } else {
                HEADER_BYTES + case.flip_at.index(bytes.len() - HEADER_BYTES)
            };
            bytes[at] ^= case.flip_mask;
            let result = read_one(&bytes);
            prop_assert!(
                matches!(result, Err(CodecError::Corrupt { .. })),
                "flip {:#04x} at byte {} of {}: {:?}", case.flip_mask, at, bytes.len(), result
            );
        }
    }

    #[test]
    fn for_sites_splits_half_data_half_parity() {
        for (sites, k, m) in [(2, 1, 1), (3, 2, 1), (4, 2, 2), (5, 3, 2), (255, 128, 127)] {
            let params = CodecParams::for_sites(sites, 1 << 20).unwrap();
            assert_eq!(
                (params.data_shards, params.parity_shards),
                (k, m),
                "{sites}"
            );
            assert_eq!(params.total_shards(), sites);
        }
        for sites in [0, 1, 256, usize::MAX] {
            let result = CodecParams::for_sites(sites, 1 << 20);
            assert!(
                matches!(result, Err(CodecError::InvalidParams(_))),
                "{sites}: {result:?}"
            );
        }
    }

    #[test]
    fn new_rejects_bad_parameters() {
        let max = STRIPE_BYTES_MAX;
        for (k, m, bytes) in [
            (0, 1, 16),
            (1, 0, 16),
            (200, 56, 4096),
            (4, 2, 3),
            (2, 1, max + 1),
        ] {
            let result = CodecParams::new(k, m, bytes);
            assert!(
                matches!(result, Err(CodecError::InvalidParams(_))),
                "{k}+{m} {bytes}: {result:?}"
            );
        }
        let edge = CodecParams::new(200, 55, max).unwrap();
        assert_eq!(edge.total_shards(), 255);
        assert_eq!(CodecParams::new(3, 2, 10).unwrap().shard_bytes(), 4);
        assert_eq!(
            CodecParams::new(1, 1, max).unwrap().shard_bytes(),
            SHARD_BYTES_MAX
        );
    }

    #[test]
    fn hand_built_invalid_params_are_errors_not_panics() {
        let params = CodecParams {
            data_shards: 0,
            parity_shards: 2,
            stripe_bytes: 16,
        };
        assert_eq!(params.shard_bytes(), 0);
        assert!(matches!(
            encode_stripe(&params, 1, 0, b"abc"),
            Err(CodecError::InvalidParams(_))
        ));
        assert!(matches!(
            decode_stripe(&params, vec![None, None]),
            Err(CodecError::InvalidParams(_))
        ));
    }

    #[test]
    fn encode_rejects_empty_and_oversized_stripes() {
        let params = CodecParams::new(2, 1, 8).unwrap();
        for data in [&b""[..], &[7u8; 9][..]] {
            let result = encode_stripe(&params, 1, 3, data);
            assert!(
                matches!(&result, Err(CodecError::InvalidParams(msg)) if msg.contains("stripe 3")),
                "{result:?}"
            );
        }
    }

    #[test]
    fn short_stripe_pads_with_zeros_and_decodes_exact_length() {
        let params = CodecParams::new(4, 2, 64).unwrap();
        let records = encode_stripe(&params, 1, 9, b"hello").unwrap();
        let payloads: Vec<&[u8]> = records.iter().map(|r| &r.payload[..]).collect();
        assert_eq!(&payloads[..4], &[&b"he"[..], b"ll", b"o\0", b"\0\0"]);
        assert!(records.iter().all(|r| r.stripe_data_len == 5));
        let decoded = decode_stripe(&params, without(&records, &[0, 2])).unwrap();
        assert_eq!(decoded, b"hello");
        // A vector shorter than k+m leaves the tail missing.
        let mut shards = only(&records, &[0, 1, 2, 3]);
        shards.truncate(4);
        assert_eq!(decode_stripe(&params, shards).unwrap(), b"hello");
    }

    #[test]
    fn too_many_slots_is_an_error() {
        let params = CodecParams::new(2, 1, 8).unwrap();
        let records = encode_stripe(&params, 1, 0, b"abcd").unwrap();
        let mut shards = all_present(&records);
        shards.push(None);
        let result = decode_stripe(&params, shards);
        assert!(
            matches!(&result, Err(CodecError::InvalidParams(msg)) if msg.contains("4 shard slots")),
            "{result:?}"
        );
    }

    #[test]
    fn no_shards_at_all_reports_every_index_missing() {
        let params = CodecParams::new(2, 2, 8).unwrap();
        match decode_stripe(&params, vec![None; 4]) {
            Err(CodecError::TooFewShards {
                stripe,
                have,
                need,
                missing,
            }) => {
                assert_eq!((stripe, have, need), (0, 0, 2));
                assert_eq!(missing, vec![0, 1, 2, 3]);
            }
            other => panic!("expected TooFewShards, got {other:?}"),
        }
    }

    fn expect_too_few(result: Result<Vec<u8>, CodecError>, stripe: u64, missing: &[u8]) {
        match result {
            Err(CodecError::TooFewShards {
                stripe: s,
                missing: m,
                ..
            }) => {
                assert_eq!(s, stripe);
                assert_eq!(m, missing);
            }
            other => panic!("expected TooFewShards, got {other:?}"),
        }
    }

    #[test]
    fn shard_from_other_stripe_or_object_at_right_index_is_missing() {
        let params = CodecParams::new(3, 2, 1024).unwrap();
        let data = pseudo_random_bytes(999, 1);
        let genuine = encode_stripe(&params, OBJECT, 5, &data).unwrap();
        let other_stripe = encode_stripe(&params, OBJECT, 6, &data).unwrap();
        let other_object = encode_stripe(&params, OBJECT + 1, 5, &data).unwrap();
        for foreign in [&other_stripe, &other_object] {
            // k-1 genuine shards plus a foreign one at slot 4: not enough.
            let mut shards = only(&genuine, &[0, 2]);
            shards[4] = Some(foreign[4].clone());
            expect_too_few(decode_stripe(&params, shards), 5, &[1, 3, 4]);
            // k genuine shards plus a foreign one: the foreign one is ignored.
            let mut shards = only(&genuine, &[0, 2, 3]);
            shards[4] = Some(foreign[4].clone());
            assert_eq!(decode_stripe(&params, shards).unwrap(), data);
        }
    }

    #[test]
    fn shard_with_disagreeing_metadata_is_missing() {
        let params = CodecParams::new(3, 2, 1024).unwrap();
        // 999 bytes: 333 per shard, so stripe_data_len 998 keeps the payload length.
        let data = pseudo_random_bytes(999, 2);
        let genuine = encode_stripe(&params, OBJECT, 5, &data).unwrap();
        let tampers: [Tweak<ShardRecord>; 7] = [
            ("object", |r| r.object_id += 1),
            ("stripe", |r| r.stripe += 1),
            ("k", |r| r.data_shards += 1),
            ("m", |r| r.parity_shards += 1),
            ("data len", |r| r.stripe_data_len -= 1),
            ("payload len", |r| r.payload.push(0)),
            ("shard index", |r| r.shard = 1),
        ];
        for (what, tamper) in tampers {
            let mut shards = only(&genuine, &[0, 2, 4]);
            if let Some(record) = shards[4].as_mut() {
                tamper(record);
            }
            let result = decode_stripe(&params, shards.clone());
            match result {
                Err(CodecError::TooFewShards { missing, .. }) => {
                    assert_eq!(missing, vec![1, 3, 4], "{what}")
                }
                other => panic!("{what}: expected TooFewShards, got {other:?}"),
            }
            shards[3] = Some(genuine[3].clone());
            assert_eq!(decode_stripe(&params, shards).unwrap(), data, "{what}");
        }
    }

    #[test]
    fn two_decodable_stripes_in_one_call_is_an_error() {
        let params = CodecParams::new(2, 2, 64).unwrap();
        let a = encode_stripe(&params, OBJECT, 1, b"first stripe").unwrap();
        let b = encode_stripe(&params, OBJECT, 2, b"other stripe").unwrap();
        let shards = vec![
            Some(a[0].clone()),
            Some(a[1].clone()),
            Some(b[2].clone()),
            Some(b[3].clone()),
        ];
        let result = decode_stripe(&params, shards);
        assert!(
            matches!(&result, Err(CodecError::Corrupt { reason }) if reason.contains("conflicting")),
            "{result:?}"
        );
    }

    fn sample_records() -> Vec<ShardRecord> {
        let params = CodecParams::new(3, 2, 100).unwrap();
        let mut records = encode_stripe(&params, 7, 0, &pseudo_random_bytes(100, 3)).unwrap();
        records.extend(encode_stripe(&params, 7, 1, &pseudo_random_bytes(41, 4)).unwrap());
        records.extend(encode_stripe(&params, 8, 0, b"x").unwrap());
        records
    }

    #[test]
    fn several_records_round_trip_in_one_stream_then_clean_eof() {
        let records = sample_records();
        let mut stream = Vec::new();
        for record in &records {
            record.write_to(&mut stream).unwrap();
        }
        let total: usize = records.iter().map(ShardRecord::encoded_len).sum();
        assert_eq!(stream.len(), total);
        let mut reader = Cursor::new(&stream);
        for record in &records {
            assert_eq!(
                ShardRecord::read_from(&mut reader).unwrap().as_ref(),
                Some(record)
            );
        }
        assert!(ShardRecord::read_from(&mut reader).unwrap().is_none());
        assert!(ShardRecord::read_from(&mut reader).unwrap().is_none());
        assert!(read_one(&[]).unwrap().is_none());
    }

    #[test]
    fn truncated_stream_is_corrupt_at_every_cut() {
        let records = sample_records();
        let first = serialize(&records[0]);
        let second = serialize(&records[1]);
        for cut in 1..first.len() {
            let reason = corrupt_reason(read_one(&first[..cut]));
            assert!(reason.contains("truncated"), "cut {cut}: {reason}");
        }
        for cut in 1..second.len() {
            let mut stream = first.clone();
            stream.extend_from_slice(&second[..cut]);
            let mut reader = Cursor::new(&stream);
            assert_eq!(
                ShardRecord::read_from(&mut reader).unwrap(),
                Some(records[0].clone())
            );
            let reason = corrupt_reason(ShardRecord::read_from(&mut reader));
            assert!(reason.contains("truncated"), "cut {cut}: {reason}");
        }
    }

    #[test]
    fn every_flipped_byte_is_corrupt_and_named() {
        let record = &sample_records()[4];
        let bytes = serialize(record);
        for at in 0..bytes.len() {
            for mask in [0x01, 0x80, 0xff] {
                let mut flipped = bytes.clone();
                flipped[at] ^= mask;
                let reason = corrupt_reason(read_one(&flipped));
                let expected = match at {
                    0..4 => "bad magic",
                    4..HEADER_BYTES => "header checksum",
                    _ => "payload checksum",
                };
                assert!(reason.contains(expected), "byte {at} ^ {mask:#x}: {reason}");
            }
        }
    }

    #[test]
    fn records_built_in_place_are_the_records_encode_stripe_writes() {
        for (k, m) in [(1, 1), (2, 1), (4, 2), (3, 3)] {
            let params = CodecParams::new(k, m, 64 * 1024).unwrap();
            for len in [1, 2, 3, 1000, 4097, 64 * 1024 - 1, 64 * 1024] {
                let data = pseudo_random_bytes(len, len as u64 + u64::from(k));
                let framed = encode_stripe_records(&params, OBJECT, 9, &data).unwrap();
                let records = encode_stripe(&params, OBJECT, 9, &data).unwrap();
                assert_eq!(framed.len(), records.len());
                for (bytes, record) in framed.iter().zip(&records) {
                    let mut expected = Vec::new();
                    record.write_to(&mut expected).unwrap();
                    assert!(
                        *bytes == expected,
                        "{k}+{m}, {len} B: shard {} differs",
                        record.shard
                    );
                }
            }
        }
        let params = CodecParams::new(2, 1, 1024).unwrap();
        let e = encode_stripe_records(&params, OBJECT, 0, &[0; 1025]).unwrap_err();
        assert!(e.to_string().contains("1..=1024"), "{e}");
        assert!(encode_stripe_records(&params, OBJECT, 0, &[]).is_err());
    }

    fn header_for(record: &ShardRecord) -> Header {
        record.header()
    }

    #[test]
    fn oversized_payload_len_is_corrupt_before_reading_payload() {
        let mut header = header_for(&sample_records()[0]);
        header.payload_len = SHARD_BYTES_MAX as u32 + 1;
        let reason = corrupt_reason(read_one(&header.to_bytes()));
        assert!(reason.contains("exceeds the limit"), "{reason}");
        assert!(reason.contains("object 7 stripe 0 shard 0"), "{reason}");
        header.payload_len = u32::MAX;
        let reason = corrupt_reason(read_one(&header.to_bytes()));
        assert!(reason.contains("exceeds the limit"), "{reason}");
    }

    #[test]
    fn checksummed_but_nonsensical_headers_are_corrupt() {
        let base = header_for(&sample_records()[0]);
        let cases: [Tweak<Header>; 5] = [
            ("shard index 5 out of range", |h| h.shard = 5),
            ("shard counts 0+2", |h| h.data_shards = 0),
            ("shard counts 3+0", |h| h.parity_shards = 0),
            ("stripe data length 0", |h| h.stripe_data_len = 0),
            ("expected 34", |h| h.payload_len += 1),
        ];
        for (expected, tweak) in cases {
            let mut header = base;
            tweak(&mut header);
            let reason = corrupt_reason(read_one(&header.to_bytes()));
            assert!(reason.contains(expected), "{expected}: {reason}");
        }
        let mut bytes = base.to_bytes();
        bytes[4] = 2;
        let crc = crc32c::crc32c(&bytes[..HEADER_FIELDS_BYTES]);
        bytes[HEADER_FIELDS_BYTES..].copy_from_slice(&crc.to_le_bytes());
        let reason = corrupt_reason(read_one(&bytes));
        assert!(reason.contains("unsupported record format 2"), "{reason}");
    }

    #[test]
    fn write_refuses_records_read_would_reject() {
        let mut record = sample_records()[0].clone();
        record.shard = 9;
        let mut out = Vec::new();
        let err = record.write_to(&mut out).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.to_string().contains("shard index 9"), "{err}");
        assert!(out.is_empty());
    }

    /// Hands out one byte per read and interrupts every other call.
    struct Trickle<'a> {
        bytes: &'a [u8],
        interrupt: bool,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.interrupt = !self.interrupt;
            if self.interrupt {
                return Err(ErrorKind::Interrupted.into());
            }
            match (self.bytes.split_first(), buf.first_mut()) {
                (Some((&byte, rest)), Some(slot)) => {
                    *slot = byte;
                    self.bytes = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    #[test]
    fn short_reads_and_interrupts_are_retried() {
        let records = sample_records();
        let mut stream = Vec::new();
        for record in &records {
            record.write_to(&mut stream).unwrap();
        }
        let mut reader = Trickle {
            bytes: &stream,
            interrupt: false,
        };
        for record in &records {
            assert_eq!(
                ShardRecord::read_from(&mut reader).unwrap().as_ref(),
                Some(record)
            );
        }
        assert!(ShardRecord::read_from(&mut reader).unwrap().is_none());
    }

    struct Broken;

    impl Read for Broken {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk on fire"))
        }
    }

    #[test]
    fn io_errors_are_passed_through() {
        let result = ShardRecord::read_from(&mut Broken);
        assert!(
            matches!(&result, Err(CodecError::Io(e)) if e.to_string() == "disk on fire"),
            "{result:?}"
        );
    }

    /// Encodes `data` in 4 MiB stripes; returns the seconds taken and the last stripe's
    /// records after checking the shard bytes produced.
    fn encode_all(params: &CodecParams, data: &[u8]) -> (f64, Vec<ShardRecord>) {
        let stripe_bytes = params.stripe_bytes as usize;
        let mut written = 0;
        let mut last = Vec::new();
        let started = Instant::now();
        for (stripe, chunk) in (0u64..).zip(data.chunks(stripe_bytes)) {
            last = black_box(encode_stripe(params, 1, stripe, chunk).unwrap());
            written += last.iter().map(|r| r.payload.len()).sum::<usize>();
        }
        let secs = started.elapsed().as_secs_f64();
        let stripes = data.len() / stripe_bytes;
        assert_eq!(
            written,
            stripes * params.total_shards() * params.shard_bytes()
        );
        (secs, last)
    }

    /// Informational: prints encode throughput beside a plain memcpy of the same bytes.
    /// Run with `cargo test --release -- --nocapture encode_throughput`. One untimed pass
    /// first warms the allocator (a cold first pass pays page faults on every stripe).
    /// Debug builds use less data so that an unoptimized `cargo test` stays quick.
    #[test]
    fn encode_throughput_report() {
        const STRIPE: u32 = 4 * 1024 * 1024;
        let total = if cfg!(debug_assertions) {
            32 << 20
        } else {
            256 << 20
        };
        let data = pseudo_random_bytes(total, 0x9e37_79b9_7f4a_7c15);
        let mb = total as f64 / 1e6;

        let mut copy = vec![1u8; total];
        let started = Instant::now();
        for (dst, src) in copy
            .chunks_mut(STRIPE as usize)
            .zip(data.chunks(STRIPE as usize))
        {
            dst.copy_from_slice(black_box(src));
        }
        let memcpy = started.elapsed().as_secs_f64();
        assert!(black_box(&copy) == &data);
        drop(copy);
        println!(
            "memcpy     {:>4} MiB: {:6.0} MB/s",
            total >> 20,
            mb / memcpy
        );

        let (cold, _) = encode_all(&CodecParams::new(2, 1, STRIPE).unwrap(), &data);
        println!(
            "cold pass  {:>4} MiB: {:6.0} MB/s (2+1, untimed warm-up)",
            total >> 20,
            mb / cold
        );
        for (k, m) in [(2, 1), (3, 2)] {
            let params = CodecParams::new(k, m, STRIPE).unwrap();
            let (secs, last) = encode_all(&params, &data);
            let dropped: Vec<u8> = (0..m).collect();
            let tail = &data[total - STRIPE as usize..];
            assert_eq!(
                decode_stripe(&params, without(&last, &dropped)).unwrap(),
                tail
            );
            println!(
                "encode {k}+{m} {:>4} MiB: {:6.0} MB/s of input ({secs:.3} s)",
                total >> 20,
                mb / secs
            );
        }
    }
}
