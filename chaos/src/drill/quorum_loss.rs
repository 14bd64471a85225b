//! The quorum-loss drill's fault and recovery: a majority of sites burns (every node
//! killed with -9 and its disk wiped), so the cluster cannot commit; the survivors are
//! fenced (stopped), and the store is rebuilt from the backups alone by point-in-time
//! restore into a new cluster (a new epoch). The backups live in each site's vault, a
//! directory target outside every node (a site's NAS or bucket gateway in production),
//! which survives the loss of the site's machines.
//!
//! Measured: RTO (fault to the first acknowledged write on the restored cluster) and RPO
//! (the restore point against the newest acknowledged write; judged by the
//! restore-equality checker in `drill::run`).

use std::path::Path;
use std::time::{Duration, Instant};

use reprise_api::client::Retry;
use reprise_api::pb::backup::backup_client::BackupClient;
use reprise_api::pb::backup::{BackupTargetsJson, CreateBackupRequest};
use reprise_api::{Client, ClientOptions};
use reprise_node::backup_fetch::all_manifests;
use reprise_node::backup_targets::all_stores;
use reprise_node::restore::{restore_point, RestoreEvent};
use reprise_storage::backup::restore::{plan, Plan, Target};
use reprise_storage::backup::target::{BackupTargets, TargetSpec};

use super::{DrillError, DrillOptions, Run};
use crate::backend::local::{self, LocalCluster, LocalSpec};

/// How often the log archive runs during the drill (bounds the RPO).
pub(crate) const ARCHIVE_INTERVAL_MS: u64 = 200;
/// A write to the survivors must not be acknowledged within this to call quorum lost.
const NO_QUORUM_PROBE: Duration = Duration::from_secs(3);
const RTO_DEADLINE: Duration = Duration::from_secs(120);

/// What the restore produced.
pub(crate) struct Restored {
    pub cluster: LocalCluster,
    pub rto_ms: Option<u64>,
    /// HLC stamp of the newest write in the restored state (the restore point).
    pub hlc: u64,
}

fn long_client(cluster: &LocalCluster) -> Result<Client, DrillError> {
    let eps: Vec<String> = cluster.file.nodes.iter().map(|n| n.addr.clone()).collect();
    Ok(Client::new(
        &eps,
        ClientOptions {
            deadline: Duration::from_secs(30),
            rpc_timeout: Duration::from_secs(120),
            ..Default::default()
        },
    )?)
}

/// Points every site's backups at its vault directory under the drill's directory.
pub(crate) async fn use_site_vaults(run: &mut Run<'_>, dir: &Path) -> Result<(), DrillError> {
    let mut targets = BackupTargets::default();
    let sites = run.cluster.file.sites();
    for site in &sites {
        let vault = dir.join("vaults").join(site);
        std::fs::create_dir_all(&vault)
            .map_err(|e| DrillError::Stuck(format!("create {}: {e}", vault.display())))?;
        let path = vault
            .canonicalize()
            .map_err(|e| DrillError::Stuck(format!("resolve {}: {e}", vault.display())))?;
        targets.sites.insert(
            site.clone(),
            vec![TargetSpec::Dir {
                path: path.display().to_string(),
            }],
        );
    }
    let json = serde_json::to_string(&targets)
        .map_err(|e| DrillError::Stuck(format!("encode targets: {e}")))?;
    long_client(&run.cluster)?
        .call(Retry::OnlyIfNotApplied, |c| {
            let json = json.clone();
            async move {
                BackupClient::new(c)
                    .set_backup_targets(BackupTargetsJson { json })
                    .await
            }
        })
        .await?;
    run.event(format!(
        "backups go to each site's vault ({} sites, outside every node)",
        sites.len()
    ));
    Ok(())
}

/// Takes a snapshot backup now.
pub(crate) async fn backup(run: &mut Run<'_>) -> Result<(), DrillError> {
    let resp = long_client(&run.cluster)?
        .call(Retry::Idempotent, |c| async move {
            BackupClient::new(c)
                .create_backup(CreateBackupRequest::default())
                .await
        })
        .await?;
    let id = reprise_storage::backup::manifest::Manifest::from_json(&resp.json)
        .map(|m| m.backup_id)
        .unwrap_or_else(|_| "?".into());
    run.event(format!("snapshot backup {id} taken"));
    Ok(())
}

/// Burns a majority of sites (the leader's among them), verifies the cluster can no
/// longer commit, fences the survivors, and restores from the vaults into a new cluster
/// under `opts.dir/restored`. Returns it with the measured RTO.
pub(crate) async fn burn_majority_and_restore(
    run: &mut Run<'_>,
    opts: &DrillOptions,
    leader_site: &str,
) -> Result<Restored, DrillError> {
    let sites = run.cluster.file.sites();
    let lost = sites.len() / 2 + 1;
    let mut doomed = vec![leader_site.to_string()];
    doomed.extend(
        sites
            .iter()
            .filter(|s| *s != leader_site)
            .take(lost - 1)
            .cloned(),
    );
    let victims: Vec<u64> = run
        .cluster
        .file
        .nodes
        .iter()
        .filter(|n| doomed.contains(&n.site))
        .map(|n| n.id)
        .collect();
    run.event(format!(
        "burning {lost} of {} sites: {doomed:?} (nodes {victims:?})",
        sites.len()
    ));
    let fault_ns = run.recorder.now_ns();
    let at_ms = fault_ns / 1_000_000;
    let dead = super::steps::kill_and_check(run, &victims)?;
    let wiped = super::steps::wipe_and_check(run, &victims)?;
    run.fault(
        "kill -9 majority of sites",
        format!("{doomed:?} (nodes {victims:?})"),
        at_ms,
        dead,
    );
    run.fault(
        "wipe disks",
        format!("{doomed:?} (nodes {victims:?})"),
        at_ms,
        wiped,
    );
    let no_quorum = cannot_commit(&run.cluster).await?;
    run.fault(
        "quorum lost",
        format!(
            "no write acknowledged by the survivors within {} s",
            NO_QUORUM_PROBE.as_secs()
        ),
        run.recorder.now_ns() / 1_000_000,
        no_quorum,
    );
    run.event("quorum lost: the survivors cannot commit; fencing them before the restore");
    for id in run.cluster.running() {
        run.cluster.kill9(id)?;
    }
    let started = Instant::now();
    let (targets, planned) = plan_from_vaults(run, opts).await?;
    let damage = damage_backups(run, &opts.dir.join("vaults"), &planned);
    let restored = restore_planned(run, opts, &targets, &planned, &damage).await?;
    run.event(format!(
        "restored index {} into a new cluster in {} ms",
        restored.1,
        started.elapsed().as_millis()
    ));
    let (cluster, _, hlc) = restored;
    let rto_ms = first_write(&cluster, run, fault_ns).await;
    match rto_ms {
        Some(ms) => run.event(format!(
            "first acknowledged write on the restored cluster {ms} ms after the fault (RTO)"
        )),
        None => run.event("no write was acknowledged on the restored cluster"),
    }
    Ok(Restored {
        cluster,
        rto_ms,
        hlc,
    })
}

/// Whether a write to what is left of the cluster is refused or times out.
async fn cannot_commit(cluster: &LocalCluster) -> Result<bool, DrillError> {
    let eps: Vec<String> = cluster
        .running()
        .iter()
        .filter_map(|id| cluster.addr(*id).ok())
        .collect();
    if eps.is_empty() {
        return Ok(true);
    }
    let client = Client::new(
        &eps,
        ClientOptions {
            deadline: NO_QUORUM_PROBE,
            rpc_timeout: NO_QUORUM_PROBE,
            ..Default::default()
        },
    )?;
    Ok(client.put(b"drill/quorum-probe", b"1").await.is_err())
}

/// Backup shards damaged before the restore: (fault index in the report, backup id,
/// shard index) of each.
type Damage = Vec<(usize, String, u8)>;

/// Damages one data shard of the snapshot backup the restore starts from (a flipped
/// byte, in the first site's vault) and of the last archive segment it replays (deleted,
/// in the second site's vault): one shard of each object, which the parity covers. Only
/// objects in the plan are damaged, so the restore must read, notice and report both.
fn damage_backups(run: &mut Run<'_>, vaults: &Path, planned: &Plan) -> Damage {
    let sites = run.cluster.file.sites();
    let at_ms = run.recorder.now_ns() / 1_000_000;
    let mut damage = Damage::new();
    // Shards are placed round-robin over the sorted sites: shard i lives on site i.
    if let (Some(site), Some(base)) = (sites.first(), &planned.base) {
        let backup = &base.backup_id;
        let file = vaults.join(site).join(backup).join("obj-0.shard-0");
        let changed = std::fs::read(&file).is_ok_and(|mut bytes| {
            let mid = bytes.len() / 2;
            bytes.get_mut(mid).map(|b| *b ^= 0x5A).is_some()
                && std::fs::write(&file, &bytes).is_ok()
        });
        damage.push((run.faults.len(), backup.clone(), 0));
        run.fault(
            "corrupt backup shard",
            format!("{backup} shard 0 in {site}'s vault"),
            at_ms,
            changed,
        );
    }
    if let (Some(site), Some(last)) = (sites.get(1), planned.segments.last()) {
        let segment = &last.backup_id;
        let file = vaults.join(site).join(segment).join("obj-0.shard-1");
        let gone = std::fs::remove_file(&file).is_ok() && !file.exists();
        damage.push((run.faults.len(), segment.clone(), 1));
        run.fault(
            "missing backup shard",
            format!("{segment} shard 1 in {site}'s vault"),
            at_ms,
            gone,
        );
    }
    run.event(format!(
        "damaged {} backup shard(s) in the vaults (one per object: parity covers it)",
        damage.len()
    ));
    damage
}

/// Reads the manifests in every site's vault and plans a restore to the newest point
/// they reach; returns the vaults as backup targets and the plan.
async fn plan_from_vaults(
    run: &mut Run<'_>,
    opts: &DrillOptions,
) -> Result<(BackupTargets, Plan), DrillError> {
    let mut targets = BackupTargets::default();
    let vaults = opts.dir.join("vaults");
    let entries = std::fs::read_dir(&vaults)
        .map_err(|e| DrillError::Stuck(format!("list {}: {e}", vaults.display())))?;
    for entry in entries.filter_map(Result::ok) {
        let site = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path().canonicalize().unwrap_or(entry.path());
        targets.sites.insert(
            site,
            vec![TargetSpec::Dir {
                path: path.display().to_string(),
            }],
        );
    }
    let stores = all_stores(&targets, &Default::default())
        .map_err(|e| DrillError::Stuck(format!("backup targets: {e}")))?;
    let (manifests, problems) = all_manifests(&stores).await;
    for p in problems {
        run.event(format!("restore: {p}"));
    }
    let p = plan(&manifests, Target::Latest)
        .map_err(|e| DrillError::Stuck(format!("cannot plan a restore: {e}")))?;
    run.event(format!(
        "restore plan: {} then {} archive segment(s) up to index {}",
        p.base
            .as_ref()
            .map(|b| format!("backup {}", b.backup_id))
            .unwrap_or_else(|| "the empty state".into()),
        p.segments.len(),
        p.reach()
    ));
    Ok((targets, p))
}

/// Restores the planned point from the vaults into a new local cluster; returns it, the
/// restored log index and HLC stamp. A damaged shard counts as verified only if the
/// restore reported it.
async fn restore_planned(
    run: &mut Run<'_>,
    opts: &DrillOptions,
    targets: &BackupTargets,
    p: &Plan,
    damage: &Damage,
) -> Result<(LocalCluster, u64, u64), DrillError> {
    let quiet = |_: RestoreEvent| {};
    let staging = opts.dir.join("restore-staging");
    let point = restore_point(p, targets, Target::Latest, &staging, &quiet)
        .await
        .map_err(|e| DrillError::Stuck(format!("restore from the vaults: {e}")))?;
    for (fault, backup, shard) in damage {
        let noticed = point
            .damaged_shards
            .iter()
            .any(|d| &d.backup_id == backup && d.shard == *shard);
        if let Some(f) = run.faults.get_mut(*fault) {
            f.verified &= noticed;
        }
        run.event(format!(
            "restore {} the damaged shard {shard} of {backup}",
            if noticed {
                "reported"
            } else {
                "did NOT report"
            }
        ));
    }
    let spec = LocalSpec {
        cluster_name: Some(format!("drill-restored-{}", point.log_index)),
        seed_snapshot: Some(point.snapshot.clone()),
        extra_config: format!("[archive]\ninterval_ms = {ARCHIVE_INTERVAL_MS}\n"),
        env: opts.node_env.clone(),
        ..LocalSpec::new(super::SITES, opts.nodes_per_site)
    };
    let cluster = local::up(&opts.exe, &opts.dir.join("restored"), &spec).await;
    let _ = std::fs::remove_dir_all(&staging);
    Ok((cluster?, point.log_index, point.hlc))
}

/// Writes to the restored cluster until one is acknowledged; the time since the fault.
async fn first_write(cluster: &LocalCluster, run: &Run<'_>, fault_ns: u64) -> Option<u64> {
    let client = cluster.client().ok()?;
    let started = Instant::now();
    while started.elapsed() < RTO_DEADLINE {
        if client.put(b"drill/after-restore", b"1").await.is_ok() {
            return Some((run.recorder.now_ns() - fault_ns) / 1_000_000);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}
