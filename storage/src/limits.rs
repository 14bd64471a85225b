//! Size limits that storage enforces on what it reads from disk. The client-facing limits
//! live in `reprise_api::limits`; these bound what a damaged file can make us allocate.

/// Longest key a record on disk may carry.
pub const KEY_BYTES_MAX: usize = 64 * 1024;
/// Longest encoded value record on disk (value plus its header).
pub const VALUE_RECORD_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Longest snapshot header (metadata with membership).
pub const SNAPSHOT_HEADER_BYTES_MAX: usize = 1024 * 1024;
/// Snapshot backups the replicated catalog remembers (oldest forgotten first).
pub const BACKUP_CATALOG_MAX: usize = 256;
/// Encoded size the replicated catalog may reach (oldest forgotten first): it travels in
/// every snapshot header, which is bounded by `SNAPSHOT_HEADER_BYTES_MAX`.
pub const BACKUP_CATALOG_BYTES_MAX: usize = 256 * 1024;
