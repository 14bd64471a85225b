//! A follower that was down while the log moved past a snapshot and was purged can only
//! catch up by receiving the snapshot over gRPC; it must, and end with the same state.
//! Also: a log that grows past its size limit is snapshotted whatever its entry count, and
//! a node whose log is corrupt in the middle refuses to start and says where.

mod common;

use std::time::Duration;

use common::{assert_no_lost_writes, wait_for, TestCluster, Writer};

const SMALL_SNAPSHOTS: &str = "\n[raft]\nsnapshot_logs_since_last = 200\nlogs_kept_after_snapshot = 20\nsegment_bytes_max = 65536\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lagging_follower_catches_up_by_snapshot() {
    let mut tc = TestCluster::start_with(3, 1, SMALL_SNAPSHOTS).await;
    let leader = tc.leader().await;
    let follower = tc.follower_of(leader);
    let client = tc.client();
    let follower_last = client
        .status_of(&tc.cluster.addr(follower).unwrap())
        .await
        .unwrap()
        .last_log_index;
    tc.cluster.kill9(follower).expect("kill follower");

    let writer = Writer::start(&tc, "snap", 4);
    let leader_addr = tc.cluster.addr(leader).unwrap();
    wait_for(
        "the leader to purge past the follower's log",
        Duration::from_secs(60),
        || async {
            let s = client.status_of(&leader_addr).await.ok()?;
            (s.purged_index > follower_last + 50).then_some(())
        },
    )
    .await;

    tc.cluster
        .restart(follower)
        .await
        .expect("restart follower");
    let follower_addr = tc.cluster.addr(follower).unwrap();
    let status = wait_for(
        "the follower to install a snapshot",
        Duration::from_secs(60),
        || async {
            let s = client.status_of(&follower_addr).await.ok()?;
            (s.snapshot_index > follower_last).then_some(s)
        },
    )
    .await;
    println!(
        "follower {follower} installed a snapshot at index {} (its log ended at {follower_last})",
        status.snapshot_index
    );
    writer.wait_progress(50).await;
    let history = writer.stop().await;
    assert_no_lost_writes(&client, &history).await;
    tc.assert_converged().await;
}

/// Snapshots by entry count effectively off; by size after 256 KiB of keys and values.
const SNAPSHOTS_BY_SIZE: &str =
    "\n[raft]\nsnapshot_logs_since_last = 1000000\nsnapshot_log_bytes = 262144\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_log_past_its_size_limit_is_snapshotted_whatever_its_entry_count() {
    let tc = TestCluster::start_with(3, 1, SNAPSHOTS_BY_SIZE).await;
    let leader = tc.leader().await;
    let leader_addr = tc.cluster.addr(leader).unwrap();
    let client = tc.client();
    let value = vec![7u8; 16 * 1024];
    // 48 entries of 16 KiB: 768 KiB, far fewer entries than the count policy needs.
    for i in 0..48 {
        client
            .put(format!("big-{i}").as_bytes(), &value)
            .await
            .expect("put");
    }
    let status = wait_for(
        "the leader to snapshot the log by its size",
        Duration::from_secs(30),
        || async {
            let s = client.status_of(&leader_addr).await.ok()?;
            (s.snapshot_index > 0).then_some(s)
        },
    )
    .await;
    assert!(
        status.snapshot_index <= status.applied_index,
        "snapshot {} past applied {}",
        status.snapshot_index,
        status.applied_index
    );
    tc.assert_converged().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn node_with_corrupt_log_refuses_to_start_naming_file_and_offset() {
    let mut tc = TestCluster::start(3, 1).await;
    let writer = Writer::start(&tc, "corrupt", 2);
    writer.wait_progress(100).await;
    let victim = tc.cluster.running()[0];
    tc.cluster.kill9(victim).expect("kill");
    writer.stop().await;
    let node = tc
        .cluster
        .file
        .nodes
        .iter()
        .find(|n| n.id == victim)
        .unwrap()
        .clone();
    let log_dir = node.data_dir.join("log");
    // The segment holding the most records (`spare.log`, the zero-filled next segment, is
    // not one). The middle of the records, not of the file: a segment is preallocated,
    // and a flipped byte in the zeros after its last record would be junk past the end
    // (cut as a torn tail), not damage to anything written.
    let written_bytes = |bytes: &[u8]| bytes.iter().rposition(|b| *b != 0).map_or(0, |p| p + 1);
    let (seg, mut bytes) = std::fs::read_dir(&log_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with("seg-") && name.ends_with(".log")
        })
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .max_by_key(|(_, bytes)| written_bytes(bytes))
        .expect("a log segment");
    let written = written_bytes(&bytes);
    assert!(
        written > 1000,
        "the writer's records are in {}",
        seg.display()
    );
    let mid = written / 2;
    bytes[mid] ^= 0xFF;
    std::fs::write(&seg, &bytes).unwrap();

    // A node that starts after all must not hang the test: it is killed at the deadline.
    let mut child = std::process::Command::new(common::exe())
        .args(["node", "start", "--config"])
        .arg(&node.config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let mut err = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        std::io::Read::read_to_string(&mut stderr, &mut err).unwrap();
    }
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(2),
        "the node must refuse to start (killed after 60 s if it did not): {err}"
    );
    assert!(
        err.contains(&seg.display().to_string()) && err.contains("byte"),
        "must name file and offset: {err}"
    );
}
