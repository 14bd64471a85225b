//! The Raft log of our own: checksummed segment files, a group-commit writer thread, the
//! vote file, and the openraft `RaftLogStorage` implementation over them.

pub mod segment;
pub mod store;
pub mod writer;

pub use segment::{SegmentLog, SegmentLogError, SegmentLogOptions};
pub use store::{LogOpenError, LogReader, LogStore};
