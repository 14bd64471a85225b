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
    params.validate()?;
    let stripe_data_len = u32::try_from(data.len())
        .ok()
        .filter(|&len| (1..=params.stripe_bytes).contains(&len))
        .ok_or_else(|| {
            CodecError::InvalidParams(format!(
                "stripe {stripe}: {} data bytes; a stripe holds 1..={} bytes",
                data.len(),
                params.stripe_bytes
            ))
        })?;
    let k = usize::from(params.data_shards);
    let len = shard_len(data.len(), params.data_shards);
    let mut chunks = data.chunks(len);
    let mut shards: Vec<Vec<u8>> = Vec::with_capacity(params.total_shards());
    for index in 0..params.total_shards() {
        let mut shard = Vec::with_capacity(len);
        if index < k {
            shard.extend_from_slice(chunks.next().unwrap_or_default());
        }
        shard.resize(len, 0);
        shards.push(shard);
    }
    reed_solomon(params)?
        .encode(&mut shards)
        .map_err(|e| CodecError::Encode(format!("stripe {stripe}: encode: {e}")))?;
    Ok(shards
        .into_iter()
        .zip(0..=u8::MAX)
        .map(|(payload, shard)| ShardRecord {
            object_id,
            stripe,
            shard,
            data_shards: params.data_shards,
            parity_shards: params.parity_shards,
            stripe_data_len,
            payload,
        })
        .collect())
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
        Ok(Some(ShardRecord {
            object_id: header.object_id,
            stripe: header.stripe,
            shard: header.shard,
            data_shards: header.data_shards,
            parity_shards: header.parity_shards,
            stripe_data_len: header.stripe_data_len,
            payload,
        }))
    }

    /// Serialized size in bytes.
    pub fn encoded_len(&self) -> usize {
        HEADER_BYTES + self.payload.len() + CRC_BYTES
    }
}
