//! An AppendEntries request on its way out over the `AppendStream`: on the wire it is the
//! protobuf `AppendFrame { seq, data }` whose `data` is the request's postcard encoding,
//! exactly as the receiver decodes it. Here the request is serialized straight into
//! tonic's send buffer when the frame goes out, instead of into a vector of its own that
//! prost then copies (at 4 KiB values that was one large allocation and one copy of every
//! value per request and follower).

use openraft::raft::AppendEntriesRequest;
use prost::bytes::BufMut;
use prost::encoding::{self, DecodeContext, WireType};
use reprise_storage::TypeConfig;

/// Field numbers of `AppendFrame` in `raft.proto`.
const SEQ_FIELD: u32 = 1;
const DATA_FIELD: u32 = 2;

/// One outgoing frame. Encoding only: the receiver decodes the generated `AppendFrame`.
#[derive(Debug)]
pub struct OutgoingAppend {
    seq: u64,
    rpc: AppendEntriesRequest<TypeConfig>,
    /// Length of `rpc`'s postcard encoding, measured once when the frame is made.
    data_len: usize,
}

impl OutgoingAppend {
    /// The frame carrying `rpc` as request `seq`.
    pub fn new(
        seq: u64,
        rpc: AppendEntriesRequest<TypeConfig>,
    ) -> Result<OutgoingAppend, postcard::Error> {
        let data_len = postcard::experimental::serialized_size(&rpc)?;
        Ok(OutgoingAppend { seq, rpc, data_len })
    }
}

/// Writes into a buffer and refuses to write past `left` bytes.
struct Bounded<'a, B: BufMut> {
    buf: &'a mut B,
    left: usize,
}

impl<B: BufMut> std::io::Write for Bounded<'_, B> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if bytes.len() > self.left {
            return Err(std::io::Error::other(
                "the request encodes longer than it measured",
            ));
        }
        self.buf.put_slice(bytes);
        self.left -= bytes.len();
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl prost::Message for OutgoingAppend {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        if self.seq != 0 {
            encoding::uint64::encode(SEQ_FIELD, &self.seq, buf);
        }
        if self.data_len == 0 {
            return;
        }
        encoding::encode_key(DATA_FIELD, WireType::LengthDelimited, buf);
        encoding::encode_varint(self.data_len as u64, buf);
        let mut out = Bounded {
            buf,
            left: self.data_len,
        };
        let written = postcard::to_io(&self.rpc, &mut out).map(|out| out.left);
        // Serialization is deterministic and was measured in `new`, so the request fills
        // exactly the announced length. Were it ever otherwise, padding the frame would
        // hand the follower a truncated request that postcard might still decode (it
        // ignores trailing bytes), so the frame is abandoned instead: the panic ends the
        // task polling the request body before the frame reaches HTTP/2, the stream is
        // reset, the call fails and the next call opens a new stream (prost's own encoder
        // panics the same way on a short buffer).
        match written {
            Ok(0) => {}
            Ok(left) => panic!("append request encoded {left} bytes short of its measured length"),
            Err(e) => panic!("append request did not encode as measured: {e}"),
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl prost::bytes::Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        // Never decoded: the receiver reads the generated `AppendFrame`.
        encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        let seq = if self.seq != 0 {
            encoding::uint64::encoded_len(SEQ_FIELD, &self.seq)
        } else {
            0
        };
        let data = if self.data_len != 0 {
            encoding::key_len(DATA_FIELD)
                + encoding::encoded_len_varint(self.data_len as u64)
                + self.data_len
        } else {
            0
        };
        seq + data
    }

    fn clear(&mut self) {
        self.seq = 0;
        self.rpc.entries.clear();
        self.data_len = postcard::experimental::serialized_size(&self.rpc).unwrap_or(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Vote};
    use prost::Message;
    use reprise_api::pb::raft::AppendFrame;
    use reprise_storage::command::{Command, Operation};

    fn request(entries: u64, value_bytes: usize) -> AppendEntriesRequest<TypeConfig> {
        let log_id = |index| LogId::new(CommittedLeaderId::new(3, 1), index);
        AppendEntriesRequest {
            vote: Vote::new_committed(3, 1),
            prev_log_id: Some(log_id(9)),
            leader_commit: Some(log_id(9)),
            entries: (10..10 + entries)
                .map(|index| Entry::<TypeConfig> {
                    log_id: log_id(index),
                    payload: EntryPayload::Normal(Command {
                        hlc: index,
                        op: Operation::Put {
                            key: format!("k{index}").into_bytes(),
                            value: vec![index as u8; value_bytes].into(),
                        },
                    }),
                })
                .collect(),
        }
    }

    #[test]
    fn encodes_as_the_generated_frame_with_the_postcard_request() {
        for (seq, entries, value_bytes) in [(0, 0, 0), (1, 1, 10), (300, 40, 4096)] {
            let rpc = request(entries, value_bytes);
            let expected = AppendFrame {
                seq,
                data: postcard::to_allocvec(&rpc).unwrap().into(),
            }
            .encode_to_vec();
            let frame = OutgoingAppend::new(seq, rpc).unwrap();
            assert_eq!(frame.encoded_len(), expected.len());
            assert_eq!(frame.encode_to_vec(), expected);
            let decoded = AppendFrame::decode(&expected[..]).unwrap();
            let back: AppendEntriesRequest<TypeConfig> =
                postcard::from_bytes(&decoded.data).unwrap();
            assert_eq!(back.entries.len() as u64, entries);
        }
    }

    #[test]
    fn a_short_buffer_never_gets_more_than_the_announced_length() {
        let mut room = [0u8; 4];
        let mut slice = &mut room[..];
        let mut out = Bounded {
            buf: &mut slice,
            left: 3,
        };
        assert!(std::io::Write::write(&mut out, b"abcd").is_err());
        assert_eq!(std::io::Write::write(&mut out, b"abc").unwrap(), 3);
        assert_eq!(out.left, 0);
    }
}
