//! Every size limit of the protocol, in one place. Servers and the client enforce the
//! same numbers, so an oversized request is refused before anything is written.

/// Longest key accepted.
pub const KEY_BYTES_MAX: usize = 4 * 1024;
/// Longest value accepted.
pub const VALUE_BYTES_MAX: usize = 1024 * 1024;
/// Most compares plus operations in one transaction.
pub const TXN_OPS_MAX: usize = 128;
/// Most keys one scan page returns.
pub const SCAN_LIMIT_MAX: u32 = 10_000;
/// Keys per scan page when the request does not say.
pub const SCAN_LIMIT_DEFAULT: u32 = 1_000;
/// Largest gRPC message, in either direction (a scan page of big values, a snapshot chunk).
pub const GRPC_MESSAGE_BYTES_MAX: usize = 32 * 1024 * 1024;
/// Snapshot bytes sent per InstallSnapshot RPC; well below the message limit.
pub const SNAPSHOT_CHUNK_BYTES: u64 = 4 * 1024 * 1024;
/// Entry bytes (keys and values) sent per AppendEntries RPC; more pending entries go in
/// the next RPC. openraft 0.9 gives every AppendEntries one heartbeat interval to be sent,
/// written and fsynced by the follower, so a batch must stay small enough for that.
pub const APPEND_ENTRIES_BYTES_MAX: usize = 1024 * 1024;
/// Most calls in one frame of the `Multiplex` stream; the node refuses every call of a
/// larger frame.
pub const MULTIPLEX_FRAME_CALLS_MAX: usize = 1024;
/// A frame (calls or replies) takes no more once its contents encode to this many bytes;
/// one call or reply alone may be larger, up to the message limit.
pub const MULTIPLEX_FRAME_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Most calls of one `Multiplex` stream a node serves at once; it reads no further frame
/// from that stream until some are answered.
pub const MULTIPLEX_CALLS_IN_FLIGHT_MAX: usize = 4096;
