//! Point-in-time restore end to end on a local 3-site cluster with the log archive on:
//! concurrent clients put and delete over a shared keyspace while every acknowledged
//! write's HLC stamp is recorded; a snapshot backup is taken halfway; then one whole site
//! burns (kill -9, data directory and backup shards wiped) and another site loses its copy
//! of the backup manifest. Restores `--at` three instants (before the backup, between the
//! backup and the fire, and after the last write) must each equal exactly the state
//! implied by the writes acknowledged at or before that instant. Finally a damaged shard
//! on a second site makes a segment unrebuildable: the restore refuses, names the segment
//! and leaves nothing behind.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use common::{flip_middle_byte, reprise, wait_for, StopOnDrop, TestCluster};
use reprise_api::pb::kv as kpb;
use reprise_api::{Client, ClientOptions};

/// One acknowledged write: its stamp, key, and value (None = delete).
type Acked = (u64, String, Option<String>);

const KEYS: u64 = 40;

async fn write_phase(tc: &TestCluster, phase: &str, clients: u64, per_client: u64) -> Vec<Acked> {
    let mut tasks = Vec::new();
    for c in 0..clients {
        let client = tc.client();
        let phase = phase.to_string();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..per_client {
                let key = format!("acct/{:02}", (c * 7 + i * 3) % KEYS);
                if i % 9 == 8 {
                    let r = client.delete(key.as_bytes()).await.expect("delete");
                    acked.push((r.header.expect("header").hlc, key, None));
                } else {
                    let value = format!("{phase}-{c}-{i}");
                    let r = client
                        .put(key.as_bytes(), value.as_bytes())
                        .await
                        .expect("put (no fault is injected while writing)");
                    acked.push((r.header.expect("header").hlc, key, Some(value)));
                }
            }
            acked
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("writer task"));
    }
    all
}

/// The state implied by every write stamped at or before `unix_ms` (stamps follow log
/// order, so applying them in stamp order is applying them in log order).
fn expected_at(writes: &[Acked], unix_ms: u64) -> BTreeMap<String, String> {
    let mut sorted: Vec<&Acked> = writes.iter().filter(|w| w.0 >> 16 <= unix_ms).collect();
    sorted.sort_by_key(|w| w.0);
    let mut state = BTreeMap::new();
    for (_, k, v) in sorted {
        match v {
            Some(v) => state.insert(k.clone(), v.clone()),
            None => state.remove(k),
        };
    }
    state
}

fn rfc3339(unix_ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(unix_ms)).to_string()
}

/// A stamp's millisecond half-way through a phase's writes.
fn middle_ms(writes: &[Acked]) -> u64 {
    let mut stamps: Vec<u64> = writes.iter().map(|w| w.0).collect();
    stamps.sort_unstable();
    stamps[stamps.len() / 2] >> 16
}

async fn scan_all(endpoints: &str) -> BTreeMap<String, String> {
    let client = Client::new(&[endpoints.to_string()], ClientOptions::default()).expect("client");
    let mut out = BTreeMap::new();
    let mut token = Vec::new();
    loop {
        let resp = client
            .scan(kpb::ScanRequest {
                prefix: b"acct/".to_vec(),
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .expect("scan restored cluster");
        for kv in resp.kvs {
            out.insert(
                String::from_utf8_lossy(&kv.key).into_owned(),
                String::from_utf8_lossy(&kv.value).into_owned(),
            );
        }
        if resp.next_page_token.is_empty() {
            return out;
        }
        token = resp.next_page_token;
    }
}

fn restore_at(eps: &str, at: &str, into: &Path) -> serde_json::Value {
    let out = reprise(
        eps,
        &[
            "-o",
            "json",
            "restore",
            "--at",
            at,
            "--into",
            into.to_str().expect("utf8"),
        ],
    );
    assert!(
        out.status.success(),
        "restore --at {at}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("restore json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restore_at_three_instants_after_a_site_fire_equals_the_acknowledged_history() {
    let mut tc = TestCluster::start_with(3, 1, "[archive]\ninterval_ms = 200\n").await;
    let eps = tc.cluster.file.endpoints();

    let before = write_phase(&tc, "a", 4, 60).await;
    let t1 = middle_ms(&before);
    let out = reprise(&eps, &["-o", "json", "backup", "create"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let backup_id = created["manifest"]["backup_id"]
        .as_str()
        .expect("backup id")
        .to_string();
    let between = write_phase(&tc, "b", 4, 60).await;
    let t2 = middle_ms(&between);
    let mut writes = before;
    writes.extend(between);

    // The archive must hold everything acknowledged before the fire.
    let client = tc.client();
    let fence = client.put(b"fence", b"1").await.expect("fence write");
    let last_index = fence.header.expect("header").index;
    wait_for(
        "the log archive to catch up",
        Duration::from_secs(20),
        || {
            let eps = eps.clone();
            async move {
                let out = reprise(&eps, &["-o", "json", "cluster", "status"]);
                let s: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
                (s["archive"]["archived_index"].as_u64()? >= last_index).then_some(())
            }
        },
    )
    .await;
    let t3 = std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;

    // Fire on site-3: the node dies and its disk (data, backup shards) is gone.
    let burnt = tc
        .cluster
        .file
        .nodes
        .iter()
        .find(|n| n.site == "site-3")
        .expect("site-3")
        .id;
    tc.cluster.kill9(burnt).expect("kill site-3");
    tc.cluster.wipe(burnt).expect("wipe site-3");
    // Site-1 also lost its copy of the backup's manifest: site-2's copy is enough.
    let site1 = tc
        .cluster
        .file
        .nodes
        .iter()
        .find(|n| n.site == "site-1")
        .expect("site-1")
        .clone();
    std::fs::remove_file(
        site1
            .data_dir
            .join("backups")
            .join(&backup_id)
            .join("manifest"),
    )
    .expect("remove site-1's manifest copy");
    let live = tc
        .cluster
        .file
        .nodes
        .iter()
        .filter(|n| n.id != burnt)
        .map(|n| n.addr.clone())
        .collect::<Vec<_>>()
        .join(",");

    let scratch = tempfile::TempDir::new().expect("temp dir");
    let mut stops = Vec::new();
    for (name, t, base) in [
        ("before-backup", t1, None),
        ("between", t2, Some(backup_id.as_str())),
        ("now", t3, Some(backup_id.as_str())),
    ] {
        let into = scratch.path().join(name);
        stops.push(StopOnDrop(into.join("cluster")));
        let restored = restore_at(&live, &rfc3339(t), &into);
        assert_eq!(
            restored["base_backup"].as_str(),
            base,
            "{name}: base backup chosen: {restored}"
        );
        assert!(
            restored["hlc"].as_u64().expect("hlc") >> 16 <= t,
            "{name}: restored past the target: {restored}"
        );
        let expected = expected_at(&writes, t);
        let got = scan_all(restored["endpoints"].as_str().expect("endpoints")).await;
        let differing: Vec<_> = expected
            .iter()
            .filter(|(k, v)| got.get(*k) != Some(*v))
            .map(|(k, _)| k)
            .chain(got.keys().filter(|k| !expected.contains_key(*k)))
            .collect();
        assert!(
            differing.is_empty(),
            "{name} (at {}): restored state differs from the acknowledged history on {} keys: {:?}; expected {} keys, restored {}; first: expected {:?}, restored {:?}; restore said {restored}",
            rfc3339(t),
            differing.len(),
            &differing[..differing.len().min(10)],
            expected.len(),
            got.len(),
            differing.first().and_then(|k| expected.get(*k)),
            differing.first().and_then(|k| got.get(*k)),
        );
    }

    // Site-1 damages its shard of the newest segment; with site-3 burnt, that segment
    // has one usable shard of the two needed.
    // (Only segments with a manifest: uploads attempted after the fire left shards
    // without one.)
    let seg_dir = std::fs::read_dir(site1.data_dir.join("backups"))
        .expect("site-1 backups")
        .filter_map(Result::ok)
        .filter(|e| e.path().join("manifest").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("log-"))
        .max()
        .expect("a log segment on site-1");
    let shard = std::fs::read_dir(site1.data_dir.join("backups").join(&seg_dir))
        .expect("segment dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().contains(".shard-"))
        .expect("site-1's shard file");
    flip_middle_byte(&shard, 0x5A);
    let refused = scratch.path().join("refused");
    let out = reprise(
        &live,
        &[
            "restore",
            "--latest",
            "--into",
            refused.to_str().expect("utf8"),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&seg_dir), "the error names the segment: {err}");
    assert!(
        !refused.exists(),
        "nothing may be half-written: {:?}",
        std::fs::read_dir(&refused).map(|d| d.count())
    );
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
    let out = reprise(
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
    assert!(
        out.status.success(),
        "restore after retention: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
