//! The point-in-time restore scenario shared by the node-target and S3-target tests:
//! concurrent clients put and delete over a shared keyspace while every acknowledged
//! write's HLC stamp is recorded; a snapshot backup is taken halfway; then one whole site
//! burns (kill -9, data directory wiped, and its backup target wiped) and another site
//! loses its copy of the backup manifest. Restores `--at` three instants (before the
//! backup, between the backup and the fire, and after the last write) must each equal
//! exactly the state implied by the writes acknowledged at or before that instant.
//! Finally a damaged shard on a second site makes a segment unrebuildable: the restore
//! refuses, names the segment and leaves nothing behind.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use reprise_api::pb::kv as kpb;
use reprise_api::{Client, ClientOptions};

use super::s3::S3Site;
use super::{flip_middle_byte, reprise, wait_for, StopOnDrop, TestCluster};

/// Where the sites keep their backups in a scenario.
pub enum Backups<'a> {
    /// The embedded default: a node of each site.
    Nodes,
    /// One S3 server per site; `targets_file` configures them.
    S3 {
        sites: &'a [S3Site],
        targets_file: &'a Path,
    },
}

impl Backups<'_> {
    /// The directory holding `<backup_id>/` directories of `site`.
    fn dir(&self, tc: &TestCluster, site: &str) -> PathBuf {
        match self {
            Backups::Nodes => tc
                .cluster
                .file
                .node_at(site)
                .expect("site's node")
                .data_dir
                .join("backups"),
            Backups::S3 { sites, .. } => sites
                .iter()
                .find(|s| s.site == site)
                .expect("site's bucket")
                .backups_dir(),
        }
    }

    fn burn(&self, site: &str) {
        if let Backups::S3 { sites, .. } = self {
            sites
                .iter()
                .find(|s| s.site == site)
                .expect("site's bucket")
                .burn();
        }
    }
}

/// One acknowledged write: its stamp, key, and value (None = delete).
type Acked = (u64, String, Option<String>);

pub const KEYS: u64 = 40;

pub async fn write_phase(
    tc: &TestCluster,
    phase: &str,
    clients: u64,
    per_client: u64,
) -> Vec<Acked> {
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
pub fn expected_at(writes: &[Acked], unix_ms: u64) -> BTreeMap<String, String> {
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

pub fn rfc3339(unix_ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(unix_ms)).to_string()
}

/// A stamp's millisecond half-way through a phase's writes.
pub fn middle_ms(writes: &[Acked]) -> u64 {
    let mut stamps: Vec<u64> = writes.iter().map(|w| w.0).collect();
    stamps.sort_unstable();
    stamps[stamps.len() / 2] >> 16
}

pub async fn scan_all(endpoints: &str) -> BTreeMap<String, String> {
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

pub fn restore_at(eps: &str, at: &str, into: &Path) -> serde_json::Value {
    let out = super::reprise_ok(
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
    serde_json::from_slice(&out.stdout).expect("restore json")
}

/// Runs the scenario on `tc` (3 sites, log archive on) with its backups in `backups`.
pub async fn fire_then_restore_three_instants(tc: &mut TestCluster, backups: &Backups<'_>) {
    let eps = tc.cluster.file.endpoints();

    let before = write_phase(tc, "a", 4, 60).await;
    let t1 = middle_ms(&before);
    let out = super::reprise_ok(&eps, &["-o", "json", "backup", "create"]);
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let backup_id = created["manifest"]["backup_id"]
        .as_str()
        .expect("backup id")
        .to_string();
    if let Backups::S3 { .. } = backups {
        // Every shard went to a bucket, none to a node.
        let shards = created["manifest"]["shards"].as_array().expect("shards");
        assert!(
            shards.iter().all(|s| s["location"]["S3"].is_object()),
            "every shard must be placed in a bucket: {created}"
        );
        for n in &tc.cluster.file.nodes {
            assert!(
                !n.data_dir.join("backups").join(&backup_id).exists(),
                "node {} holds part of the backup",
                n.id
            );
        }
    }
    let between = write_phase(tc, "b", 4, 60).await;
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
    let burnt = tc.cluster.file.node_at("site-3").expect("site-3").id;
    tc.cluster.kill9(burnt).expect("kill site-3");
    tc.cluster.wipe(burnt).expect("wipe site-3");
    backups.burn("site-3");
    // Site-1 also lost its copy of the backup's manifest: site-2's copy is enough.
    let site1_backups = backups.dir(tc, "site-1");
    std::fs::remove_file(site1_backups.join(&backup_id).join("manifest"))
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
        check_restored(name, t, base, &restored, &writes).await;
    }
    restore_drill_passes(&live, &backup_id);
    restore_without_starting_then_seed(&live, scratch.path(), t3, &writes, &mut stops).await;
    match backups {
        Backups::Nodes => {
            damaged_segment_refuses(&site1_backups, &["--endpoints", &live], scratch.path())
        }
        Backups::S3 { targets_file, .. } => {
            // Every live replica lost: the buckets alone, named by the targets file, suffice.
            for node in tc.cluster.file.nodes.clone() {
                if node.id != burnt {
                    tc.cluster.kill9(node.id).expect("kill the surviving nodes");
                }
            }
            let file = targets_file.to_str().expect("utf8");
            let into = scratch.path().join("from-buckets-only");
            stops.push(StopOnDrop(into.join("cluster")));
            let at = rfc3339(t3);
            let into_arg = into.to_str().expect("utf8");
            let out = super::reprise_offline_ok(&[
                "-o",
                "json",
                "restore",
                "--at",
                &at,
                "--into",
                into_arg,
                "--targets",
                file,
            ]);
            let restored: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
            check_restored("buckets-only", t3, Some(&backup_id), &restored, &writes).await;
            damaged_segment_refuses(&site1_backups, &["--targets", file], scratch.path());
        }
    }
}

/// `restore --no-start` leaves only the verified snapshot; a local cluster started from
/// it holds the restored state, and a real node's data directory can be seeded from it
/// (once: a seeded directory is not seeded again).
async fn restore_without_starting_then_seed(
    live: &str,
    scratch: &Path,
    t: u64,
    writes: &[Acked],
    stops: &mut Vec<StopOnDrop>,
) {
    let into = scratch.join("no-start");
    let out = super::reprise_ok(
        live,
        &[
            "-o",
            "json",
            "restore",
            "--at",
            &rfc3339(t),
            "--into",
            into.to_str().expect("utf8"),
            "--no-start",
        ],
    );
    let restored: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let snap = into.join("restored.snap");
    assert_eq!(restored["snapshot"].as_str(), snap.to_str(), "{restored}");
    assert!(
        restored["endpoints"].is_null(),
        "nothing started: {restored}"
    );
    let left: Vec<_> = std::fs::read_dir(&into)
        .expect("into")
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        left,
        vec![std::ffi::OsString::from("restored.snap")],
        "only the snapshot is left"
    );

    let local_dir = scratch.join("from-snapshot");
    stops.push(StopOnDrop(local_dir.clone()));
    let out = super::reprise_ok(
        live,
        &[
            "-o",
            "json",
            "cluster",
            "local",
            "up",
            "--from",
            snap.to_str().expect("utf8"),
            "--dir",
            local_dir.to_str().expect("utf8"),
        ],
    );
    let up: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let endpoints: Vec<&str> = up["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter_map(|n| n["addr"].as_str())
        .collect();
    let got = scan_all(&endpoints.join(",")).await;
    assert_eq!(
        got,
        expected_at(writes, t),
        "a cluster started from the restored snapshot"
    );

    let node_dir = scratch.join("real-node");
    let config = node_dir.join("node.toml");
    std::fs::create_dir_all(&node_dir).expect("node dir");
    std::fs::write(
        &config,
        format!(
            "id = 1\nsite = \"site-1\"\nlisten_addr = \"127.0.0.1:1\"\ndata_dir = \"{}\"\nsites = [\"site-1\"]\n[[initial_members]]\nid = 1\nsite = \"site-1\"\naddr = \"127.0.0.1:1\"\n",
            node_dir.join("data").display()
        ),
    )
    .expect("node config");
    let seed = |config: &Path| {
        reprise(
            live,
            &[
                "-o",
                "json",
                "node",
                "seed",
                "--config",
                config.to_str().expect("utf8"),
                "--snapshot",
                snap.to_str().expect("utf8"),
            ],
        )
    };
    let out = seed(&config);
    assert!(
        out.status.success(),
        "node seed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seeded: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(seeded["log_index"], restored["log_index"], "{seeded}");
    let again = seed(&config);
    let err = String::from_utf8_lossy(&again.stderr);
    assert_eq!(again.status.code(), Some(2), "{err}");
    assert!(err.contains("not empty"), "{err}");
}

/// The restore drill, after the fire: the newest point, and the one snapshot backup
/// rebuilt without it (from the empty state plus the whole archive): its checksum must
/// equal the one recorded at backup time.
fn restore_drill_passes(live: &str, backup_id: &str) {
    let out = reprise(live, &["-o", "json", "backup", "drill", "--seed", "0"]);
    let drill: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert!(
        out.status.success(),
        "restore drill: {} {drill}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = &drill["report"];
    assert_eq!(report["passed"], true, "{drill}");
    assert_eq!(report["earlier"]["compared_with"], backup_id, "{drill}");
    assert_eq!(report["earlier"]["checksum_matches"], true, "{drill}");
    assert_eq!(report["latest"]["checksum_matches"], true, "{drill}");
    assert!(
        report["earlier"]["restored"]["base_backup"].is_null(),
        "the earlier point must come from the archive alone: {drill}"
    );
    assert!(
        report["newest_restorable_age_ms"]
            .as_u64()
            .is_some_and(|a| a < 60_000),
        "{drill}"
    );
}

/// The restored cluster holds exactly the state the acknowledged writes imply at `t`.
async fn check_restored(
    name: &str,
    t: u64,
    base: Option<&str>,
    restored: &serde_json::Value,
    writes: &[Acked],
) {
    {
        assert_eq!(
            restored["base_backup"].as_str(),
            base,
            "{name}: base backup chosen: {restored}"
        );
        assert!(
            restored["hlc"].as_u64().expect("hlc") >> 16 <= t,
            "{name}: restored past the target: {restored}"
        );
        let expected = expected_at(writes, t);
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
}

/// Site-1 damages its shard of the newest segment; with site-3 burnt, that segment has
/// one usable shard of the two needed: the restore refuses, names it, writes nothing.
fn damaged_segment_refuses(site1_backups: &Path, source: &[&str], scratch: &Path) {
    // (Only segments with a manifest: uploads attempted after the fire left shards
    // without one.)
    let seg_dir = std::fs::read_dir(site1_backups)
        .expect("site-1 backups")
        .filter_map(Result::ok)
        .filter(|e| e.path().join("manifest").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("log-"))
        .max()
        .expect("a log segment on site-1");
    let shard = std::fs::read_dir(site1_backups.join(&seg_dir))
        .expect("segment dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().contains(".shard-"))
        .expect("site-1's shard file");
    flip_middle_byte(&shard, 0x5A);
    let refused = scratch.join("refused");
    let mut args = vec![
        "restore",
        "--latest",
        "--into",
        refused.to_str().expect("utf8"),
    ];
    args.extend_from_slice(source);
    let out = super::reprise_offline(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&seg_dir), "the error names the segment: {err}");
    assert!(
        !refused.exists(),
        "nothing may be half-written: {:?}",
        std::fs::read_dir(&refused).map(|d| d.count())
    );
}
