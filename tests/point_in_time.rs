//! Point-in-time restore end to end on a local 3-site cluster with the log archive on,
//! backups kept by a node of each site (the default): see `common::pit` for the
//! scenario (a site fire, three restore instants, a damaged segment). Also: scheduled
//! backups and retention.

mod common;

use std::time::Duration;

use common::pit::{fire_then_restore_three_instants, Backups, KEYS};
use common::{reprise, reprise_ok, wait_for, StopOnDrop, TestCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restore_at_three_instants_after_a_site_fire_equals_the_acknowledged_history() {
    let mut tc = TestCluster::start_with(3, 1, "[archive]\ninterval_ms = 200\n").await;
    fire_then_restore_three_instants(&mut tc, &Backups::Nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scheduled_backups_keep_the_newest_and_drop_what_no_restore_needs() {
    let tc = TestCluster::start_with(
        3,
        1,
        "[archive]\ninterval_ms = 200\n[backup]\ninterval_s = 1\nkeep_last = 2\nkeep_daily_days = 0\n",
    )
    .await;
    let eps = tc.cluster.file.endpoints();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (client, stop) = (tc.client(), stop.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                client
                    .put(
                        format!("acct/{:02}", i % KEYS).as_bytes(),
                        format!("w{i}").as_bytes(),
                    )
                    .await
                    .expect("put");
                i += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let list = || {
        let out = reprise(&eps, &["-o", "json", "backup", "list"]);
        serde_json::from_slice::<serde_json::Value>(&out.stdout).ok()
    };
    // Retention has run once the archive no longer starts at index 1 (segments before
    // the oldest kept backup are gone) and at most keep_last backups are left.
    let listed = wait_for(
        "scheduled backups and retention",
        Duration::from_secs(30),
        || async {
            let l = list()?;
            let backups = l["backups"].as_array()?.len();
            let first = l["archive"]["first_index"].as_u64()?;
            (backups == 2 && first > 1).then_some(l)
        },
    )
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.await.expect("writer");
    let oldest_kept = listed["backups"]
        .as_array()
        .and_then(|b| b.iter().filter_map(|b| b["log_index"].as_u64()).min())
        .expect("kept backups");
    let first = listed["archive"]["first_index"]
        .as_u64()
        .expect("archive start");
    assert!(
        first <= oldest_kept + 1,
        "the archive must still cover everything after the oldest kept backup: {listed}"
    );
    assert!(
        listed["archive"]["gaps"]
            .as_array()
            .is_some_and(Vec::is_empty),
        "{listed}"
    );
    // What is left still restores the newest state.
    let scratch = tempfile::TempDir::new().expect("temp dir");
    let into = scratch.path().join("latest");
    let _stop = StopOnDrop(into.join("cluster"));
    reprise_ok(
        &eps,
        &[
            "-o",
            "json",
            "restore",
            "--latest",
            "--into",
            into.to_str().expect("utf8"),
        ],
    );
}
