//! The log store end to end: appends are durable when they return, one append of many
//! entries costs one fsync (group commit), truncation and purge survive reopen,
//! the vote is durable, and a damaged log is handled (torn tail truncated, middle
//! corruption refused with the file named).

use std::fs;
use std::path::Path;

use openraft::storage::{RaftLogReader, RaftLogStorage};
use openraft::{CommittedLeaderId, EntryPayload, LogId, Vote};
use reprise_storage::command::{Command, Operation};
use reprise_storage::log::SegmentLogOptions;
use reprise_storage::types::Entry;
use reprise_storage::LogStore;
use tempfile::TempDir;

fn entry(index: u64) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Command {
            hlc: index,
            op: Operation::Put {
                key: format!("k{index}").into_bytes(),
                value: vec![index as u8; 100].into(),
            },
        }),
    }
}

/// Opens with preallocated 16 KiB segments, as a node does (with 64 MiB ones).
fn open(dir: &Path) -> LogStore {
    LogStore::open(dir, options(true)).expect("open log")
}

/// Opens with files that grow with every append: for damage placed at a file's end.
fn open_growing(dir: &Path) -> LogStore {
    LogStore::open(dir, options(false)).expect("open log")
}

fn options(preallocate: bool) -> SegmentLogOptions {
    SegmentLogOptions {
        segment_bytes_max: 16 * 1024,
        preallocate,
        zero_filled_spares: false,
    }
}

/// Appends `entries`; they are durable when it returns.
fn append_durably(log: &mut LogStore, entries: impl IntoIterator<Item = Entry>) {
    log.append_entries(entries).expect("append durable");
}

async fn indices(log: &mut LogStore) -> Vec<u64> {
    log.try_get_log_entries(..)
        .await
        .expect("read")
        .iter()
        .map(|e| e.log_id.index)
        .collect()
}

#[tokio::test]
async fn each_append_costs_one_fsync_whatever_its_size_and_survives_reopen() {
    let dir = TempDir::new().unwrap();
    let mut log = open(dir.path());
    // 500 entries in 10 appends of 50: the 16 KiB segments roll over on the way.
    for batch in 0..10u64 {
        append_durably(&mut log, (batch * 50 + 1..=batch * 50 + 50).map(entry));
    }
    assert_eq!(log.sync_count(), 10, "one fdatasync per append");
    append_durably(&mut log, [entry(501)]);
    assert_eq!(log.sync_count(), 11);
    drop(log);
    let mut log = open(dir.path());
    assert_eq!(indices(&mut log).await, (1..=501).collect::<Vec<_>>());
}

#[tokio::test]
async fn truncate_purge_and_vote_survive_reopen() {
    let dir = TempDir::new().unwrap();
    let mut log = open(dir.path());
    append_durably(&mut log, (1..=300).map(entry));
    log.truncate(LogId::new(CommittedLeaderId::new(1, 1), 251))
        .await
        .unwrap();
    log.purge(LogId::new(CommittedLeaderId::new(1, 1), 100))
        .await
        .unwrap();
    log.save_vote(&Vote::new(7, 3)).await.unwrap();
    drop(log);
    let mut log = open(dir.path());
    assert_eq!(indices(&mut log).await, (101..=250).collect::<Vec<_>>());
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(100));
    assert_eq!(state.last_log_id.map(|l| l.index), Some(250));
    assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(7, 3)));
    // Appending after truncation continues at the truncated index.
    append_durably(&mut log, [entry(251)]);
    drop(log);
    let mut log = open(dir.path());
    assert_eq!(indices(&mut log).await.last(), Some(&251));
}

#[tokio::test]
async fn purge_never_passes_the_archive_limit() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    let dir = TempDir::new().unwrap();
    let limit = Arc::new(AtomicU64::new(0));
    {
        let mut log = open(dir.path());
        log.limit_purge_to(limit.clone());
        append_durably(&mut log, (1..=10).map(entry));
        log.purge(entry(8).log_id).await.expect("purge");
        assert_eq!(
            indices(&mut log).await,
            (1..=10).collect::<Vec<_>>(),
            "nothing archived, nothing purged"
        );
        limit.store(4, Ordering::Release);
        log.purge(entry(8).log_id).await.expect("purge");
        assert_eq!(indices(&mut log).await, (5..=10).collect::<Vec<_>>());
        limit.store(9, Ordering::Release);
        log.purge(entry(6).log_id).await.expect("purge");
        assert_eq!(indices(&mut log).await, (7..=10).collect::<Vec<_>>());
        limit.store(5, Ordering::Release);
        log.purge(entry(8).log_id)
            .await
            .expect("purge below what is purged is a no-op");
        assert_eq!(
            log.get_log_state()
                .await
                .unwrap()
                .last_purged_log_id
                .map(|l| l.index),
            Some(6)
        );
    }
    let mut log = open(dir.path());
    assert_eq!(
        indices(&mut log).await,
        (7..=10).collect::<Vec<_>>(),
        "the clamped purge point is durable"
    );
    // Regression: a lagging follower installs a snapshot past its log's end; the purge that
    // follows must empty the log whatever the limit, or the next append (after the
    // snapshot) is out of order.
    log.limit_purge_to(Arc::new(AtomicU64::new(5)));
    log.purge(entry(600).log_id)
        .await
        .expect("purge past the end");
    assert!(indices(&mut log).await.is_empty());
    append_durably(&mut log, [entry(601)]);
    assert_eq!(indices(&mut log).await, vec![601]);
}

#[tokio::test]
async fn a_purge_is_finished_by_the_janitor_and_complete_once_the_log_is_closed() {
    let dir = TempDir::new().unwrap();
    let mut log = open(dir.path());
    append_durably(&mut log, (1..=300).map(entry));
    let before = segments(dir.path()).len();
    log.purge(entry(200).log_id).await.expect("purge");
    // Readers see the purge at once, whatever the janitor has done yet.
    assert_eq!(indices(&mut log).await, (201..=300).collect::<Vec<_>>());
    // Closing the log waits for the janitor: the purge point is recorded and the
    // segments holding only purged entries are gone.
    drop(log);
    let after = segments(dir.path()).len();
    assert!(
        after < before,
        "purged segments are deleted: {before} files before, {after} after"
    );
    let mut log = open(dir.path());
    assert_eq!(indices(&mut log).await, (201..=300).collect::<Vec<_>>());
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(200));
}

#[tokio::test]
async fn a_purge_past_the_end_is_never_overtaken_by_an_older_queued_purge() {
    // The janitor writes the purge point of an ordinary purge later; a purge past the
    // end (snapshot installed) writes its own at once. Were the older one to land last,
    // the reopened log would start after a hole.
    let dir = TempDir::new().unwrap();
    let mut next = 1;
    for round in 0..20u64 {
        let mut log = open(dir.path());
        append_durably(&mut log, (next..next + 200).map(entry));
        log.purge(entry(next + 150).log_id).await.expect("purge");
        let past_end = next + 1000;
        log.purge(entry(past_end).log_id)
            .await
            .expect("purge past the end");
        append_durably(&mut log, [entry(past_end + 1)]);
        drop(log);
        let mut log = open(dir.path());
        let state = log.get_log_state().await.unwrap();
        assert_eq!(
            state.last_purged_log_id.map(|l| l.index),
            Some(past_end),
            "round {round}: the newest purge point is the one on disk"
        );
        assert_eq!(indices(&mut log).await, vec![past_end + 1], "round {round}");
        next = past_end + 2;
    }
}

fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .expect("list log dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("seg-"))
        })
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn torn_tail_is_truncated_and_middle_corruption_refuses_to_start() {
    let dir = TempDir::new().unwrap();
    let mut log = open_growing(dir.path());
    append_durably(&mut log, (1..=50).map(entry));
    drop(log);
    let segs = segments(dir.path());
    let last = segs.last().unwrap().clone();

    // Garbage appended to the tail: dropped, every acknowledged entry kept.
    let mut bytes = fs::read(&last).unwrap();
    bytes.extend_from_slice(&[0xAB; 37]);
    fs::write(&last, &bytes).unwrap();
    let mut log = open_growing(dir.path());
    assert_eq!(indices(&mut log).await, (1..=50).collect::<Vec<_>>());
    drop(log);

    // A flipped byte in the last record: that record is a torn tail and is dropped.
    let mut bytes = fs::read(&last).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0xFF;
    fs::write(&last, &bytes).unwrap();
    let mut log = open_growing(dir.path());
    assert_eq!(indices(&mut log).await, (1..=49).collect::<Vec<_>>());
    drop(log);

    // A flipped byte in the middle of the log: refuse to start, name the file and offset.
    let first = segments(dir.path())[0].clone();
    let mut bytes = fs::read(&first).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xFF;
    fs::write(&first, &bytes).unwrap();
    let err = LogStore::open(dir.path(), options(false))
        .err()
        .expect("a corrupt log must not open");
    let msg = err.to_string();
    assert!(
        msg.contains(&first.display().to_string()),
        "error must name the file: {msg}"
    );
    assert!(msg.contains("byte"), "error must name the offset: {msg}");
}

#[tokio::test]
async fn entries_between_stops_at_its_bounds() {
    let dir = TempDir::new().unwrap();
    let mut log = open(dir.path());
    append_durably(&mut log, (1..=100).map(entry));
    let reader = log.reader();
    let got = |from, last, max, bytes| -> Vec<u64> {
        reader
            .entries_between(from, last, max, bytes)
            .iter()
            .map(|e| e.log_id.index)
            .collect()
    };
    assert_eq!(
        got(1, 100, usize::MAX, usize::MAX),
        (1..=100).collect::<Vec<_>>()
    );
    assert_eq!(
        got(5, 70, usize::MAX, usize::MAX),
        (5..=70).collect::<Vec<_>>()
    );
    assert_eq!(got(5, 100, 40, usize::MAX), (5..=44).collect::<Vec<_>>());
    assert_eq!(got(99, 200, usize::MAX, usize::MAX), vec![99, 100]);
    assert!(got(101, 200, usize::MAX, usize::MAX).is_empty());
    // Every entry carries more than 100 bytes of payload: the entry that reaches the
    // budget is the last one returned.
    let one = reprise_storage::command::entry_payload_bytes(&entry(1));
    assert!(one > 100);
    assert_eq!(got(1, 100, usize::MAX, 3 * one), vec![1, 2, 3]);
    assert_eq!(got(1, 100, usize::MAX, 3 * one + 1), vec![1, 2, 3, 4]);
    assert_eq!(got(1, 100, usize::MAX, 1), vec![1], "at least one entry");
    // Only consecutive entries from `from`: after a purge, a range that starts in the
    // purged part returns nothing (the archive then sees the gap).
    log.purge(entry(10).log_id).await.expect("purge");
    assert!(got(5, 20, usize::MAX, usize::MAX).is_empty());
    assert_eq!(
        got(11, 20, usize::MAX, usize::MAX),
        (11..=20).collect::<Vec<_>>()
    );
}
