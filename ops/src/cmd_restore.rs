//! `reprise restore`: rebuild a backup from any k shards of each stripe and start a fresh
//! local cluster from it. The restored cluster is a new epoch: new node ids and addresses,
//! its own cluster name, so a client of the old cluster cannot mix the two silently.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{anyhow, Context};
use clap::Args;
use reprise_chaos::backend::local::{self, LocalSpec, CLUSTER_FILE};
use serde::Serialize;

use crate::cli::Global;
use crate::cmd_backup::{fetch_and_rebuild, latest_backup};
use crate::cmd_local::this_exe;
use crate::output::{print_json, CliError, CliResult, Format};

/// Restore options.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Restore this backup.
    #[arg(long, conflicts_with = "latest", required_unless_present = "latest")]
    pub backup: Option<String>,
    /// Restore the newest backup any site holds.
    #[arg(long)]
    pub latest: bool,
    /// Directory for the restored cluster (must not hold a cluster yet).
    #[arg(long)]
    pub into: PathBuf,
    #[arg(long, default_value_t = 3)]
    pub sites: u32,
    #[arg(long, default_value_t = 1)]
    pub nodes_per_site: u32,
}

#[derive(Serialize)]
struct RestoreOut {
    backup_id: String,
    log_index: u64,
    hlc: u64,
    bytes: u64,
    state_digest: String,
    rebuild_ms: u128,
    total_ms: u128,
    rebuild_mb_per_s: f64,
    cluster_name: String,
    endpoints: String,
    cluster_file: PathBuf,
}

/// Runs `reprise restore`.
pub async fn run(args: RestoreArgs, global: &Global) -> CliResult {
    let started = Instant::now();
    let client = global.client()?;
    let id = match &args.backup {
        Some(id) => id.clone(),
        None => latest_backup(&client).await?,
    };
    if local::ClusterFile::read(&args.into).is_ok() {
        return Err(anyhow!(
            "{} already holds a cluster ({CLUSTER_FILE}); restore into a new directory",
            args.into.display()
        )
        .into());
    }
    std::fs::create_dir_all(&args.into)
        .with_context(|| format!("create {}", args.into.display()))?;
    let snapshot = args.into.join(format!("{id}.snap"));
    if global.output == Format::Table {
        eprintln!("restoring backup {id}: fetching shards from every site and rebuilding...");
    }
    let (manifest, rebuilt) = fetch_and_rebuild(&client, &id, &snapshot).await?;
    let rebuilt = rebuilt
        .map_err(|e| CliError::NotApplied(format!("backup {id} cannot be restored: {e}")))?;
    if !rebuilt.digest_matches {
        return Err(CliError::NotApplied(format!(
            "backup {id}: rebuilt state checksum differs from the manifest; refusing to restore"
        )));
    }
    let rebuild_ms = started.elapsed().as_millis();
    if global.output == Format::Table {
        eprintln!(
            "rebuilt {} bytes in {rebuild_ms} ms; starting a fresh cluster from it...",
            rebuilt.bytes
        );
    }
    let cluster_name = format!("restored-{id}");
    let spec = LocalSpec {
        cluster_name: Some(cluster_name.clone()),
        seed_snapshot: Some(snapshot.clone()),
        ..LocalSpec::new(args.sites, args.nodes_per_site)
    };
    let mut cluster = local::up(&this_exe()?, &args.into.join("cluster"), &spec)
        .await
        .map_err(anyhow::Error::from)?;
    cluster.detach();
    let out = RestoreOut {
        backup_id: id,
        log_index: manifest.log_index,
        hlc: manifest.hlc,
        bytes: rebuilt.bytes,
        state_digest: rebuilt.state_digest.clone(),
        rebuild_ms,
        total_ms: started.elapsed().as_millis(),
        rebuild_mb_per_s: rebuilt.bytes as f64 / 1e6 / (rebuild_ms.max(1) as f64 / 1000.0),
        cluster_name,
        endpoints: cluster.file.endpoints(),
        cluster_file: cluster.dir.join(CLUSTER_FILE),
    };
    match global.output {
        Format::Json => print_json(&out),
        Format::Table => {
            println!(
                "restored backup {} (log index {}, hlc {}) into cluster {}",
                out.backup_id, out.log_index, out.hlc, out.cluster_name
            );
            println!(
                "  {} bytes rebuilt in {} ms ({:.1} MB/s); cluster serving after {} ms",
                out.bytes, out.rebuild_ms, out.rebuild_mb_per_s, out.total_ms
            );
            println!("  state checksum {}", out.state_digest);
            println!("  described in {}", out.cluster_file.display());
            println!("export REPRISE_ENDPOINTS={}", out.endpoints);
            Ok(())
        }
    }
}
