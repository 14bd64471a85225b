//! The in-memory state machine: command semantics (versions, deletes, compare-and-swap),
//! snapshots streamed to another node with equal state checksums, the state reloaded from
//! the newest snapshot on open (and the archive mark kept), and refusal of a corrupt
//! snapshot.

use openraft::storage::Snapshot;
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::{CommittedLeaderId, EntryPayload, LogId};
use reprise_storage::command::*;
use reprise_storage::types::{Entry, TypeConfig};
use reprise_storage::StateMachineStore;
use std::sync::atomic::Ordering;
use tempfile::TempDir;
use tokio::io::AsyncWriteExt;

fn entry(index: u64, op: Operation) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Command {
            hlc: 1000 + index,
            op,
        }),
    }
}

fn put(k: &str, v: &str) -> Operation {
    Operation::Put {
        key: k.as_bytes().to_vec(),
        value: v.as_bytes().to_vec().into(),
    }
}

fn cas_version(k: &str, version: u64, v: &str) -> Operation {
    Operation::Txn(Txn {
        compares: vec![Compare {
            key: k.as_bytes().to_vec(),
            op: CompareOp::Equal,
            target: CompareTarget::Version(version),
        }],
        success: vec![TxnOp::Put {
            key: k.as_bytes().to_vec(),
            value: v.as_bytes().to_vec().into(),
        }],
        failure: vec![],
    })
}

/// Builds a snapshot of `a` and streams the file into a new state machine at `b_dir`
/// through its receiving handle, as the network would; returns it once installed.
async fn install_snapshot_of(
    a: &mut StateMachineStore,
    b_dir: &std::path::Path,
) -> StateMachineStore {
    let snap = a
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build a snapshot");
    install(snap, b_dir).await
}

/// Streams `snap` into a new state machine at `b_dir`; returns it once installed.
async fn install(snap: Snapshot<TypeConfig>, b_dir: &std::path::Path) -> StateMachineStore {
    let mut b = StateMachineStore::open(b_dir).expect("open the receiving state machine");
    let mut sink = b
        .begin_receiving_snapshot()
        .await
        .expect("open the snapshot sink");
    let mut source = tokio::fs::File::from_std(snap.snapshot.into_std().await);
    tokio::io::copy(&mut source, &mut *sink)
        .await
        .expect("stream the snapshot");
    sink.flush().await.expect("stream the snapshot");
    b.install_snapshot(&snap.meta, sink)
        .await
        .expect("install the snapshot");
    b
}

fn delete(k: &str) -> Operation {
    Operation::Delete {
        key: k.as_bytes().to_vec(),
    }
}

#[tokio::test]
async fn versions_deletes_and_compare_and_swap() {
    let dir = TempDir::new().unwrap();
    let mut sm = StateMachineStore::open(dir.path()).unwrap();
    let out = sm
        .apply(vec![
            entry(1, put("a", "1")),
            entry(2, put("a", "2")),
            entry(3, cas_version("a", 1, "stale")),
            entry(4, cas_version("a", 2, "3")),
            entry(5, Operation::Delete { key: b"a".to_vec() }),
            entry(6, Operation::Delete { key: b"a".to_vec() }),
            entry(7, put("a", "again")),
        ])
        .await
        .unwrap();
    let outcomes: Vec<Outcome> = out.into_iter().map(|r| r.outcome).collect();
    assert_eq!(
        outcomes,
        vec![
            Outcome::Put { version: 1 },
            Outcome::Put { version: 2 },
            Outcome::Txn { succeeded: false },
            Outcome::Txn { succeeded: true },
            Outcome::Delete { existed: true },
            Outcome::Delete { existed: false },
            Outcome::Put { version: 1 },
        ]
    );
    let view = sm.view();
    let a = view.get(b"a").unwrap().unwrap();
    assert_eq!(
        (&a.value[..], a.version, a.create_index, a.mod_hlc),
        (&b"again"[..], 1, 7, 1007)
    );
    assert_eq!(view.applied().unwrap().map(|l| l.index), Some(7));
    assert_eq!(view.last_hlc().unwrap(), 1007);
}

#[tokio::test]
async fn snapshot_streams_to_another_node_and_is_the_state_after_a_restart() {
    let (a_dir, b_dir) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let mut a = StateMachineStore::open(a_dir.path()).unwrap();
    let entries: Vec<Entry> = (1..=2000)
        .map(|i| {
            entry(
                i,
                put(&format!("key/{i:05}"), &"v".repeat(i as usize % 300)),
            )
        })
        .collect();
    a.apply(entries).await.unwrap();
    let sum_a = a.view().checksum().unwrap();
    assert_eq!((sum_a.applied_index, sum_a.keys), (2000, 2000));
    let b = install_snapshot_of(&mut a, b_dir.path()).await;
    assert_eq!(b.view().checksum().unwrap(), sum_a);
    drop(b);

    // A restart loses the memory: reopening loads the state from the snapshot file.
    let b = StateMachineStore::open(b_dir.path()).unwrap();
    assert_eq!(b.view().checksum().unwrap(), sum_a);
}

/// Reopened, a state machine holds its newest snapshot's state, not the entries applied
/// after it (openraft applies those again from the log), and keeps the archive mark,
/// which is a fact about the archive rather than about the data.
#[tokio::test]
async fn reopening_starts_from_the_newest_snapshot_and_keeps_the_archive_mark() {
    let dir = TempDir::new().unwrap();
    let mut sm = StateMachineStore::open(dir.path()).unwrap();
    sm.apply(vec![entry(1, put("a", "1")), entry(2, put("b", "2"))])
        .await
        .unwrap();
    let at_snapshot = sm.view().checksum().unwrap();
    sm.get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    sm.apply(vec![
        entry(3, put("a", "after the snapshot")),
        entry(4, Operation::ArchiveMark { through: 3 }),
    ])
    .await
    .unwrap();
    assert_eq!(sm.archived_through().load(Ordering::Acquire), 3);
    drop(sm);

    let mut sm = StateMachineStore::open(dir.path()).unwrap();
    assert_eq!(sm.view().checksum().unwrap(), at_snapshot);
    assert_eq!(sm.view().applied().unwrap().map(|l| l.index), Some(2));
    assert_eq!(sm.archived_through().load(Ordering::Acquire), 3);
    // Applying the later entries again gives the state they gave before.
    sm.apply(vec![
        entry(3, put("a", "after the snapshot")),
        entry(4, Operation::ArchiveMark { through: 3 }),
    ])
    .await
    .unwrap();
    let a = sm.view().get(b"a").unwrap().expect("a is present");
    assert_eq!((&a.value[..], a.version), (&b"after the snapshot"[..], 2));
    assert_eq!(sm.archived_through().load(Ordering::Acquire), 3);

    // Without any snapshot, a reopened state machine is empty.
    let fresh = TempDir::new().unwrap();
    let mut sm = StateMachineStore::open(fresh.path()).unwrap();
    sm.apply(vec![entry(1, put("a", "1"))]).await.unwrap();
    drop(sm);
    let sm = StateMachineStore::open(fresh.path()).unwrap();
    assert_eq!(sm.view().applied().unwrap(), None);
    assert_eq!(sm.view().checksum().unwrap().keys, 0);
}

#[tokio::test]
async fn corrupt_snapshot_is_refused_and_state_is_untouched() {
    let (a_dir, b_dir) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let mut a = StateMachineStore::open(a_dir.path()).unwrap();
    a.apply(
        (1..=100)
            .map(|i| entry(i, put(&format!("k{i}"), "value")))
            .collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    let snap = a
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    let mut bytes = std::fs::read(
        std::fs::read_dir(a_dir.path().join("snapshots"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path(),
    )
    .unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;

    let mut b = StateMachineStore::open(b_dir.path()).unwrap();
    b.apply(vec![entry(1, put("mine", "kept"))]).await.unwrap();
    let before = b.view().checksum().unwrap();
    let mut sink = b.begin_receiving_snapshot().await.unwrap();
    sink.write_all(&bytes).await.unwrap();
    sink.flush().await.unwrap();
    let err = b.install_snapshot(&snap.meta, sink).await.unwrap_err();
    assert!(
        err.to_string().contains("corrupt") || err.to_string().contains("checksum"),
        "{err}"
    );
    assert_eq!(b.view().checksum().unwrap(), before);
}

/// The replicated cluster config (backup targets, backup catalog) changes only by
/// commands, stays out of the state checksum, and travels with snapshots to a node that
/// catches up by one.
#[tokio::test]
async fn cluster_config_is_replicated_by_commands_and_carried_in_snapshots() {
    use reprise_storage::backup::manifest::{Manifest, KIND_SNAPSHOT};
    use reprise_storage::backup::target::{BackupTargets, TargetSpec};

    let (a_dir, b_dir) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let mut a = StateMachineStore::open(a_dir.path()).unwrap();
    let mut targets = BackupTargets::default();
    targets
        .sites
        .insert("site-2".into(), vec![TargetSpec::Node, TargetSpec::Node]);
    let manifest = |id: &str, index: u64| Manifest::example(KIND_SNAPSHOT, id, 0, index, 0);
    a.apply(vec![entry(1, put("k", "v"))]).await.unwrap();
    let before = a.view().checksum().unwrap();
    a.apply(vec![
        entry(2, Operation::SetBackupTargets(targets.clone())),
        entry(3, Operation::RecordBackup(Box::new(manifest("bk-1", 1)))),
        entry(4, Operation::RecordBackup(Box::new(manifest("bk-2", 3)))),
        entry(5, Operation::ForgetBackups(vec!["bk-1".into()])),
    ])
    .await
    .unwrap();
    let config = a.view().cluster_config().unwrap();
    assert_eq!(config.backup_targets, targets);
    assert_eq!(config.backups.keys().collect::<Vec<_>>(), vec!["bk-2"]);
    let after = a.view().checksum().unwrap();
    assert_eq!((after.keys, after.digest), (before.keys, before.digest));

    let b = install_snapshot_of(&mut a, b_dir.path()).await;
    assert_eq!(b.view().cluster_config().unwrap(), config);
}

/// A batch entry applies its commands in order, atomically, each with its own outcome,
/// and the highest stamp among them becomes the applied stamp.
#[tokio::test]
async fn a_batch_entry_applies_every_command_in_order() {
    let dir = TempDir::new().unwrap();
    let mut sm = StateMachineStore::open(dir.path()).unwrap();
    let cmd = |hlc: u64, op: Operation| Command { hlc, op };
    let batch = Operation::Batch(vec![
        cmd(2001, put("a", "1")),
        cmd(2002, put("a", "2")),
        cmd(2003, cas_version("a", 1, "stale")),
        cmd(2004, Operation::Delete { key: b"b".to_vec() }),
    ]);
    let out = sm
        .apply(vec![entry(1, put("b", "x")), entry(2, batch)])
        .await
        .unwrap();
    let outcomes: Vec<Outcome> = match &out[1].outcome {
        Outcome::Batch(each) => each.iter().map(|r| r.outcome.clone()).collect(),
        other => panic!("not a batch outcome: {other:?}"),
    };
    assert_eq!(
        outcomes,
        vec![
            Outcome::Put { version: 1 },
            Outcome::Put { version: 2 },
            Outcome::Txn { succeeded: false },
            Outcome::Delete { existed: true },
        ]
    );
    let view = sm.view();
    assert_eq!(
        view.get(b"a").unwrap().map(|v| v.value.to_vec()),
        Some(b"2".to_vec())
    );
    assert_eq!(view.get(b"b").unwrap(), None);
    assert_eq!(view.last_hlc().unwrap(), 2004);
}

/// Applies `ops` as entries `first..` in batches of `per_batch`; returns the next index.
async fn apply_all(
    sm: &mut StateMachineStore,
    first: u64,
    ops: Vec<Operation>,
    per_batch: usize,
) -> u64 {
    let mut index = first;
    let mut entries = Vec::new();
    for op in ops {
        entries.push(entry(index, op));
        index += 1;
        if entries.len() == per_batch {
            sm.apply(std::mem::take(&mut entries)).await.expect("apply");
        }
    }
    if !entries.is_empty() {
        sm.apply(entries).await.expect("apply");
    }
    index
}

/// Overwrites, deletes, re-creates and inserts keys on both sides of the existing ones:
/// every way a key can differ from the state a snapshot began at.
fn churn(round: usize) -> Vec<Operation> {
    let mut ops = Vec::new();
    for i in (0..200).step_by(3) {
        ops.push(put(&format!("k{i:04}"), &format!("changed-{round}")));
    }
    for i in (1..200).step_by(3) {
        ops.push(delete(&format!("k{i:04}")));
    }
    for i in (1..200).step_by(9) {
        ops.push(put(&format!("k{i:04}"), "deleted then back"));
    }
    for i in 0..50 {
        ops.push(put(&format!("a-new-{round}-{i}"), "before every old key"));
        ops.push(put(&format!("k{i:04}-new-{round}"), "between old keys"));
        ops.push(put(&format!("z-new-{round}-{i}"), "after every old key"));
    }
    ops
}

fn initial_keys() -> Vec<Operation> {
    (0..200)
        .map(|i| put(&format!("k{i:04}"), &format!("v{i}")))
        .collect()
}

/// A snapshot describes the state at the moment openraft asked for a builder, even when
/// entries are applied before and while it is written (the builder holds a structural
/// copy: applies are not held off for the length of a snapshot).
#[tokio::test]
async fn snapshot_is_the_state_at_its_start_while_applies_go_on() {
    let dir = TempDir::new().unwrap();
    let mut a = StateMachineStore::open(&dir.path().join("a")).unwrap();
    let next = apply_all(&mut a, 1, initial_keys(), 16).await;
    let at_start = a.view().checksum().unwrap();

    let mut builder = a.get_snapshot_builder().await;
    apply_all(&mut a, next, churn(1), 7).await;
    let after = a.view().checksum().unwrap();
    assert_ne!(after.digest, at_start.digest, "the churn changed the state");

    let snap = builder.build_snapshot().await.expect("build the snapshot");
    assert_eq!(
        snap.meta.last_log_id.map(|l| l.index),
        Some(next - 1),
        "the snapshot is labelled with the index applied when it began"
    );
    let b = install(snap, &dir.path().join("b")).await;
    assert_eq!(b.view().checksum().unwrap(), at_start);
    // The live state machine kept every change made meanwhile.
    assert_eq!(a.view().checksum().unwrap(), after);
}

/// The same, with the applies running at the same time as the snapshot's scan, so that
/// keys change before, under and after the scan's position.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_written_during_concurrent_applies_is_the_state_at_its_start() {
    let dir = TempDir::new().unwrap();
    let mut a = StateMachineStore::open(&dir.path().join("a")).unwrap();
    let mut next = apply_all(&mut a, 1, initial_keys(), 16).await;
    let at_start = a.view().checksum().unwrap();
    let mut builder = a.get_snapshot_builder().await;
    let build = tokio::spawn(async move { builder.build_snapshot().await });
    let mut round = 0;
    while !build.is_finished() || round < 3 {
        round += 1;
        next = apply_all(&mut a, next, churn(round), 1).await;
    }
    let snap = build.await.expect("join").expect("build the snapshot");
    let b = install(snap, &dir.path().join("b")).await;
    assert_eq!(
        b.view().checksum().unwrap(),
        at_start,
        "after {round} rounds of churn"
    );
}

/// Loading a snapshot whose last record is damaged fails naming the file, and the state
/// it was to replace is untouched (the file is read in full before anything is swapped).
#[tokio::test]
async fn a_damaged_snapshot_is_not_loaded_and_the_state_is_kept() {
    let dir = TempDir::new().unwrap();
    let mut a = StateMachineStore::open(&dir.path().join("a")).unwrap();
    apply_all(&mut a, 1, initial_keys(), 16).await;
    a.get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    let file = std::fs::read_dir(dir.path().join("a").join("snapshots"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&file).unwrap();
    let near_end = bytes.len() - 60;
    bytes[near_end] ^= 0x01;
    let damaged = dir.path().join("damaged.snap");
    std::fs::write(&damaged, &bytes).unwrap();

    let mut b = StateMachineStore::open(&dir.path().join("b")).unwrap();
    b.apply(vec![entry(1, put("mine", "kept"))]).await.unwrap();
    let before = b.view().checksum().unwrap();
    let err = reprise_storage::state_machine::load_snapshot(&b.view(), &damaged).unwrap_err();
    assert!(err.to_string().contains("damaged.snap"), "{err}");
    assert_eq!(b.view().checksum().unwrap(), before);
}
