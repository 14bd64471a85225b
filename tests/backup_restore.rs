//! Backups end to end on a local 3-site cluster: write a known workload recording each
//! acknowledged write's log index, take an erasure-coded backup, keep writing, burn one
//! site's backup shards, restore into a fresh cluster and check that the restored state is
//! exactly the writes acknowledged at or before the backup's index. Then damage a second
//! shard: the restore refuses, names the missing shards, and writes no cluster.

mod common;

use common::{flip_middle_byte, reprise, reprise_ok, StopOnDrop, TestCluster};
use reprise_api::{Client, ClientOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backup_survives_a_site_fire_and_restores_exactly_the_acknowledged_state() {
    let tc = TestCluster::start(3, 1).await;
    let eps = tc.cluster.file.endpoints();
    let client = tc.client();
    let mut writes = Vec::new();
    for i in 0..300 {
        let (k, v) = (format!("acct/{i:04}"), format!("v{i}"));
        let r = client.put(k.as_bytes(), v.as_bytes()).await.expect("put");
        writes.push((k, v, r.header.expect("header").index));
    }
    let out = reprise_ok(&eps, &["-o", "json", "backup", "create"]);
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let manifest = &created["manifest"];
    let backup_index = manifest["log_index"].as_u64().expect("log_index");
    let backup_id = manifest["backup_id"].as_str().expect("id").to_string();
    assert_eq!(
        manifest["shards"].as_array().map(Vec::len),
        Some(3),
        "2+1 shards over 3 sites: {manifest}"
    );
    for i in 300..400 {
        let (k, v) = (format!("acct/{i:04}"), format!("v{i}"));
        let r = client.put(k.as_bytes(), v.as_bytes()).await.expect("put");
        writes.push((k, v, r.header.expect("header").index));
    }

    // Fire: site-3's node loses every backup shard it held.
    let site3 = tc.cluster.file.node_at("site-3").expect("site-3");
    common::burn_dir(&site3.data_dir.join("backups"));
    let verify = reprise(&eps, &["backup", "verify", &backup_id]);
    assert!(
        verify.status.success(),
        "verify with one site gone: {}",
        String::from_utf8_lossy(&verify.stdout)
    );

    let target = tempfile::TempDir::new().expect("temp dir");
    let into = target.path().join("restored");
    let out = reprise(
        &eps,
        &[
            "-o",
            "json",
            "restore",
            "--backup",
            &backup_id,
            "--into",
            into.to_str().expect("utf8"),
        ],
    );
    let _stop = StopOnDrop(into.join("cluster"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let restored: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let restored_eps = restored["endpoints"]
        .as_str()
        .expect("endpoints")
        .to_string();
    let file = reprise_chaos::backend::local::ClusterFile::read(&into.join("cluster"))
        .expect("cluster.json");
    assert_ne!(
        restored["cluster_name"], "reprise-local",
        "the restored cluster is a new epoch"
    );
    assert_eq!(file.nodes.len(), 3);

    let rc = Client::new(&[restored_eps], ClientOptions::default()).expect("client");
    for (k, v, index) in &writes {
        let got = rc
            .get(k.as_bytes(), false)
            .await
            .expect("read restored")
            .kv
            .map(|kv| kv.value);
        if *index <= backup_index {
            assert_eq!(
                got.as_deref(),
                Some(v.as_bytes()),
                "{k} (index {index}) was acknowledged before the backup"
            );
        } else {
            assert_eq!(
                got, None,
                "{k} (index {index}) came after the backup at {backup_index}"
            );
        }
    }
    rc.put(b"after-restore", b"ok")
        .await
        .expect("the restored cluster takes writes");

    // A second damaged shard leaves too few: refuse, name them, write nothing.
    let site1 = tc.cluster.file.node_at("site-1").expect("site-1");
    let shard = site1
        .data_dir
        .join("backups")
        .join(&backup_id)
        .join("obj-0.shard-0");
    flip_middle_byte(&shard, 0xFF);
    let refused_into = target.path().join("refused");
    let out = reprise(
        &eps,
        &[
            "restore",
            "--backup",
            &backup_id,
            "--into",
            refused_into.to_str().expect("utf8"),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("[0, 2]"),
        "the error must name the unusable shards: {err}"
    );
    assert!(
        !refused_into.join("cluster").join("cluster.json").exists(),
        "nothing may be started"
    );
    assert!(
        !refused_into.join(format!("{backup_id}.snap")).exists(),
        "nothing may be half-written"
    );
}
