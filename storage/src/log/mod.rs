//! The Raft log of our own: checksummed segment files, the writer that makes every append
//! durable before it returns, the vote file, and the openraft `RaftLogStorage`
//! implementation over them.

pub mod segment;
pub mod store;
pub mod writer;

pub use segment::{SegmentLog, SegmentLogError, SegmentLogOptions};
pub use store::{LogOpenError, LogReader, LogStore};
