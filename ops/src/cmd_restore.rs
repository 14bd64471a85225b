//! `reprise restore`: point-in-time restore into a fresh local cluster. Picks the newest
//! snapshot backup at or before the target (`--at TIME`, `--index N`, `--latest`, or
//! exactly one `--backup ID`); the restore engine (`reprise_node::restore`) rebuilds it
//! and the log archive segments after it from any k shards of each stripe and replays the
//! archived entries up to the target; then a fresh cluster starts from the result.
//! Backups are read from the live cluster's targets, or from the buckets of a targets
//! file (`--targets`) when no cluster is left. The restored cluster is a new epoch: new node ids,
//! addresses and cluster name, so a client of the old cluster cannot mix the two.
//!
//! Everything is staged under `INTO/.staging`; if any step fails, what this command
//! created is removed and no cluster is started.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::anyhow;
use clap::Args;
use rand::Rng;
use reprise_chaos::backend::local::{self, LocalSpec, CLUSTER_FILE};
use reprise_node::backup_fetch::all_manifests;
use reprise_node::restore::{restore_point, DamagedShard, RestoreEvent, RestoreRunError};
use reprise_storage::backup::restore::{plan, Plan, RestoreError, Target};
use reprise_storage::backup::target::BackupTargets;
use serde::Serialize;

use crate::backup_sources::sources;
use crate::cli::Global;
use crate::cmd_local::this_exe;
use crate::output::{print_json, CliError, CliResult, Format};

/// Restore options.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("point").required(true).args(["at", "index", "latest", "backup"])))]
pub struct RestoreArgs {
    /// Restore the state as of this instant (RFC 3339, e.g. 2026-11-22T03:12:45.250Z):
    /// every write stamped at or before it, nothing after.
    #[arg(long)]
    pub at: Option<String>,
    /// Restore the state right after log index N.
    #[arg(long)]
    pub index: Option<u64>,
    /// Restore the newest state the backups and the log archive hold.
    #[arg(long)]
    pub latest: bool,
    /// Restore exactly this snapshot backup (no log replay).
    #[arg(long)]
    pub backup: Option<String>,
    /// Directory for the restored cluster (must not hold a cluster yet).
    #[arg(long)]
    pub into: PathBuf,
    /// Write the restored state to `INTO/restored.snap` and start nothing: seed real
    /// nodes from it (`reprise node seed`) or a local cluster (`cluster local up --from`).
    #[arg(long)]
    pub no_start: bool,
    /// Read backups from the buckets of this targets file (needed when no cluster is
    /// left to ask; see deploy/config/backup-targets.toml).
    #[arg(long)]
    pub targets: Option<PathBuf>,
    #[arg(long, default_value_t = 3)]
    pub sites: u32,
    #[arg(long, default_value_t = 1)]
    pub nodes_per_site: u32,
}

#[derive(Serialize)]
struct RestoreOut {
    target: Target,
    /// The snapshot backup the restore started from (None: from an empty state).
    base_backup: Option<String>,
    segments_replayed: usize,
    entries_replayed: u64,
    /// Exact point restored to: the last log index and the stamp of the last write in it.
    log_index: u64,
    hlc: u64,
    restored_to: String,
    /// The target lies after the end of the log archive: writes after `restored_to` are in
    /// no backup.
    archive_ends_before_target: bool,
    keys: u64,
    state_digest: String,
    bytes_fetched: u64,
    damaged_shards: Vec<DamagedShard>,
    rebuild_ms: u128,
    replay_ms: u128,
    total_ms: u128,
    rebuild_mb_per_s: f64,
    /// Stores that could not be listed and manifests that could not be read: the restore
    /// used what the others hold.
    problems: Vec<String>,
    /// The restored cluster (None with `--no-start`).
    #[serde(flatten)]
    cluster: Option<RestoredCluster>,
    /// With `--no-start`: the verified snapshot of the restored state.
    snapshot: Option<PathBuf>,
}

#[derive(Serialize)]
struct RestoredCluster {
    cluster_name: String,
    endpoints: String,
    cluster_file: PathBuf,
}

/// Formats an HLC stamp's physical part as an RFC 3339 instant (milliseconds, UTC).
pub fn hlc_instant(hlc: u64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(hlc >> 16);
    humantime::format_rfc3339_millis(t).to_string()
}

fn parse_target(args: &RestoreArgs) -> CliResult<Target> {
    if let Some(at) = &args.at {
        let t = humantime::parse_rfc3339_weak(at).map_err(|e| {
            CliError::Runtime(anyhow!(
                "--at {at:?}: {e} (expected RFC 3339, e.g. 2026-11-22T03:12:45.250Z)"
            ))
        })?;
        let ms = t
            .duration_since(UNIX_EPOCH)
            .map_err(|_| CliError::Runtime(anyhow!("--at {at:?} is before 1970")))?
            .as_millis();
        if t > SystemTime::now() + Duration::from_secs(24 * 3600) {
            return Err(CliError::Runtime(anyhow!("--at {at:?} is in the future")));
        }
        return Ok(Target::at_unix_ms(ms as u64));
    }
    if let Some(n) = args.index {
        return Ok(Target::Index(n));
    }
    Ok(Target::Latest)
}

/// Runs `reprise restore`.
pub async fn run(args: RestoreArgs, global: &Global) -> CliResult {
    if local::ClusterFile::read(&args.into).is_ok()
        || local::ClusterFile::read(&args.into.join("cluster")).is_ok()
    {
        return Err(anyhow!(
            "{} already holds a cluster ({CLUSTER_FILE}); restore into a new directory",
            args.into.display()
        )
        .into());
    }
    let target = parse_target(&args)?;
    let src = sources(global, args.targets.as_deref()).await?;
    let (manifests, unreachable) = all_manifests(&src.stores).await;
    if global.output == Format::Table {
        for u in &unreachable {
            eprintln!("could not list {u}; restoring from what the other sites hold");
        }
    }
    let restore_plan = match &args.backup {
        Some(id) => Plan {
            base: Some(
                manifests
                    .iter()
                    .find(|m| &m.backup_id == id && !m.is_log_segment())
                    .cloned()
                    .ok_or_else(|| {
                        CliError::NotFound(format!(
                            "no site holds a manifest for snapshot backup {id:?}"
                        ))
                    })?,
            ),
            segments: Vec::new(),
            archive_ends_before_target: false,
        },
        None => plan(&manifests, target).map_err(|e| match e {
            RestoreError::NothingToRestore => CliError::NotFound(e.to_string()),
            other => CliError::NotApplied(format!("cannot restore: {other}")),
        })?,
    };
    let created_into = !args.into.exists();
    let staging = args.into.join(".staging");
    let result = restore(&args, target, &restore_plan, &src.targets, &staging, global).await;
    let _ = std::fs::remove_dir_all(&staging);
    if result.is_err() && created_into {
        let _ = std::fs::remove_dir_all(&args.into);
    }
    let mut out = result?;
    out.problems = unreachable;
    match global.output {
        Format::Json => print_json(&out),
        Format::Table => {
            print_summary(&out);
            Ok(())
        }
    }
}

async fn restore(
    args: &RestoreArgs,
    target: Target,
    p: &Plan,
    targets: &BackupTargets,
    staging: &Path,
    global: &Global,
) -> CliResult<RestoreOut> {
    let started = Instant::now();
    let show = global.output == Format::Table;
    let tty = show && std::io::stderr().is_terminal();
    if show {
        eprintln!(
            "restore plan: {} then {} log archive segment(s) up to index {}",
            p.base
                .as_ref()
                .map(|b| format!("snapshot backup {} (index {})", b.backup_id, b.log_index))
                .unwrap_or_else(|| "an empty state".into()),
            p.segments.len(),
            p.reach()
        );
    }
    let progress = move |event: RestoreEvent| match event {
        RestoreEvent::RebuildingBase { backup_id } if show => {
            eprintln!("rebuilding snapshot backup {backup_id} from every site...")
        }
        RestoreEvent::RebuildingSegment { done, of } if tty => {
            eprint!("\rrebuilding log archive segment {done}/{of}")
        }
        RestoreEvent::Rebuilt { bytes, ms } if show => {
            if tty {
                eprintln!();
            }
            eprintln!("rebuilt {bytes} bytes in {ms} ms; replaying archived entries...")
        }
        RestoreEvent::Replayed { entries, index, ms } if show => eprintln!(
            "replayed {entries} entries in {ms} ms; starting a fresh cluster from index {index}..."
        ),
        _ => {}
    };
    let restored = restore_point(p, targets, target, staging, &progress)
        .await
        .map_err(|e| match e {
            RestoreRunError::NotRestorable(m) => CliError::NotApplied(m),
            other => CliError::Runtime(other.into()),
        })?;
    let (cluster, snapshot) = if args.no_start {
        let kept = args.into.join(RESTORED_SNAPSHOT);
        keep_snapshot(&restored.snapshot, &kept)?;
        (None, Some(kept))
    } else {
        let cluster_name = new_epoch_name(restored.log_index);
        let spec = LocalSpec {
            cluster_name: Some(cluster_name.clone()),
            seed_snapshot: Some(restored.snapshot.clone()),
            ..LocalSpec::new(args.sites, args.nodes_per_site)
        };
        let mut cluster = local::up(&this_exe()?, &args.into.join("cluster"), &spec)
            .await
            .map_err(anyhow::Error::from)?;
        cluster.detach();
        let restored_cluster = RestoredCluster {
            cluster_name,
            endpoints: cluster.file.endpoints(),
            cluster_file: cluster.dir.join(CLUSTER_FILE),
        };
        (Some(restored_cluster), None)
    };
    Ok(RestoreOut {
        target,
        base_backup: restored.base_backup,
        segments_replayed: restored.segments_replayed,
        entries_replayed: restored.entries_replayed,
        log_index: restored.log_index,
        hlc: restored.hlc,
        restored_to: hlc_instant(restored.hlc),
        archive_ends_before_target: p.archive_ends_before_target,
        keys: restored.keys,
        state_digest: restored.state_digest,
        bytes_fetched: restored.bytes_fetched,
        damaged_shards: restored.damaged_shards,
        rebuild_ms: restored.rebuild_ms,
        replay_ms: restored.replay_ms,
        total_ms: started.elapsed().as_millis(),
        rebuild_mb_per_s: restored.bytes_fetched as f64
            / 1e6
            / (restored.rebuild_ms.max(1) as f64 / 1000.0),
        problems: Vec::new(),
        cluster,
        snapshot,
    })
}

/// File name of the restored snapshot `--no-start` leaves in `INTO`.
pub const RESTORED_SNAPSHOT: &str = "restored.snap";

/// A cluster name for a new epoch restored at `index`.
pub fn new_epoch_name(index: u64) -> String {
    format!(
        "restored-{index}-{:06x}",
        rand::rng().random_range(0..0x100_0000u32)
    )
}

/// Copies the verified snapshot out of the staging directory, durably.
fn keep_snapshot(from: &Path, to: &Path) -> CliResult {
    let copy = || -> std::io::Result<()> {
        std::fs::copy(from, to)?;
        std::fs::File::open(to)?.sync_all()?;
        if let Some(dir) = to.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    };
    copy().map_err(|e| {
        CliError::Runtime(anyhow!(
            "keep the restored snapshot at {}: {e}",
            to.display()
        ))
    })
}

fn print_summary(out: &RestoreOut) {
    match &out.cluster {
        Some(c) => println!(
            "restored to {} (log index {}) into cluster {}",
            out.restored_to, out.log_index, c.cluster_name
        ),
        None => println!(
            "restored to {} (log index {}); no cluster started",
            out.restored_to, out.log_index
        ),
    }
    println!(
        "  from {} + {} archive segment(s): {} entries replayed, {} keys",
        out.base_backup
            .as_deref()
            .map(|b| format!("backup {b}"))
            .unwrap_or_else(|| "an empty state".into()),
        out.segments_replayed,
        out.entries_replayed,
        out.keys
    );
    if out.archive_ends_before_target {
        println!(
            "  warning: the log archive ends at {}; later writes are in no backup",
            out.restored_to
        );
    }
    let mut sites: Vec<&str> = out.damaged_shards.iter().map(|d| d.site.as_str()).collect();
    sites.sort_unstable();
    sites.dedup();
    if !out.damaged_shards.is_empty() {
        println!(
            "  {} shard(s) missing or damaged (sites: {}); rebuilt from parity",
            out.damaged_shards.len(),
            sites.join(", ")
        );
    }
    println!(
        "  {} bytes rebuilt in {} ms ({:.1} MB/s), replay {} ms, serving after {} ms",
        out.bytes_fetched, out.rebuild_ms, out.rebuild_mb_per_s, out.replay_ms, out.total_ms
    );
    println!("  state checksum {}", out.state_digest);
    println!(
        "  backup targets are not carried over (new epoch): set them with `reprise backup targets set`"
    );
    match (&out.cluster, &out.snapshot) {
        (Some(c), _) => {
            println!("  described in {}", c.cluster_file.display());
            println!("export REPRISE_ENDPOINTS={}", c.endpoints);
        }
        (None, Some(snap)) => {
            println!("  restored state in {}", snap.display());
            println!(
                "  seed each node: reprise node seed --config NODE.toml --snapshot {} (then start them), or",
                snap.display()
            );
            println!(
                "  a local cluster: reprise cluster local up --from {} --dir DIR",
                snap.display()
            );
        }
        (None, None) => {}
    }
}
