//! The Raft log of our own: checksummed segment files, the writer that makes every append
//! durable before it returns, the appender that writes segments in whole pages, the
//! janitor thread that finishes purges off the Raft path, the thread that keeps the next
//! segment ready zero-filled,
//! the vote file, and the openraft `RaftLogStorage` implementation over them.

mod janitor;
mod page_appender;
pub mod segment;
mod spare;
pub mod store;
pub mod writer;

pub use segment::{SegmentLog, SegmentLogError, SegmentLogOptions};
pub use store::{LogOpenError, LogReader, LogStore};
