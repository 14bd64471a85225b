//! Backups in S3-compatible object storage: one real S3 server per site (s3s-fs, which
//! checks request signatures), configured as each site's backup target through the
//! replicated cluster config (`reprise backup targets set`). The point-in-time scenario
//! of `common::pit` runs against them: a site fire also takes its S3 server down and wipes
//! its bucket, three restores `--at` must equal the acknowledged history, and a restore
//! with no live cluster at all reads the buckets named by the targets file alone.

mod common;

use common::pit::{fire_then_restore_three_instants, Backups};
use common::s3::S3Site;
use common::{reprise, TestCluster};
use reprise_chaos::backend::local::LocalSpec;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_backups_survive_a_site_fire_and_restore_to_three_instants() {
    let mut tc = TestCluster::start_spec(&LocalSpec {
        extra_config: "[archive]\ninterval_ms = 200\n".into(),
        env: common::s3::env(),
        ..LocalSpec::new(3, 1)
    })
    .await;
    let eps = tc.cluster.file.endpoints();
    let s3_root = tempfile::TempDir::new().expect("temp dir");
    let mut sites = Vec::new();
    for site in ["site-1", "site-2", "site-3"] {
        sites.push(S3Site::start(site, &s3_root.path().join(site)).await);
    }
    let targets_file = s3_root.path().join("targets.toml");
    let toml: String = sites.iter().map(S3Site::targets_toml).collect();
    std::fs::write(&targets_file, toml).expect("write targets file");

    // A wrong secret is refused before anything is replicated, naming the bucket.
    let bad_file = s3_root.path().join("bad-targets.toml");
    std::fs::write(
        &bad_file,
        sites[0]
            .targets_toml()
            .replace(common::s3::SECRET_ENV, common::s3::WRONG_SECRET_ENV),
    )
    .expect("write bad targets file");
    let set_targets = |file: &std::path::Path| {
        let file = file.to_str().expect("utf8");
        reprise(&eps, &["backup", "targets", "set", "--file", file])
    };
    let out = set_targets(&bad_file);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a wrong secret must be refused");
    assert!(err.contains("site-1") && err.contains("s3://"), "{err}");
    assert!(
        err.contains("Signature"),
        "the cause is the signature: {err}"
    );

    let out = set_targets(&targets_file);
    assert!(
        out.status.success(),
        "set targets: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = reprise(&eps, &["-o", "json", "backup", "targets", "show"]);
    let shown_text = String::from_utf8_lossy(&shown.stdout);
    assert!(shown_text.contains("site-3"), "{shown_text}");
    assert!(
        !shown_text.contains(common::s3::SECRET_KEY),
        "secrets are never replicated, only the name of their variable: {shown_text}"
    );

    let backups = Backups::S3 {
        sites: &sites,
        targets_file: &targets_file,
    };
    fire_then_restore_three_instants(&mut tc, &backups).await;
}
