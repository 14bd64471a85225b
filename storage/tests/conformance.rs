//! openraft's storage conformance suite run against our log store and state machine.

use openraft::testing::{StoreBuilder, Suite};
use reprise_storage::log::SegmentLogOptions;
use reprise_storage::types::RaftStorageError;
use reprise_storage::{LogStore, StateMachineStore, TypeConfig};
use tempfile::TempDir;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), RaftStorageError> {
        let dir = TempDir::new().expect("create temp dir");
        let log = LogStore::open(
            &dir.path().join("log"),
            SegmentLogOptions {
                segment_bytes_max: 64 * 1024,
                preallocate: true,
                zero_filled_spares: true,
            },
        )
        .expect("open log");
        let sm = StateMachineStore::open(&dir.path().join("sm")).expect("open state machine");
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite_passes() {
    if let Err(e) = Suite::test_all(Builder) {
        panic!("openraft storage suite failed: {e}");
    }
}
