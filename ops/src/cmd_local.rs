//! `reprise cluster local up|down|start`: local clusters of processes on 127.0.0.1,
//! through the chaos crate's local backend.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use clap::Subcommand;
use reprise_chaos::backend::local::{self, ClusterFile, CLUSTER_FILE};

use crate::cli::Global;
use crate::output::{print_json, print_table, CliResult, Format};

#[derive(Debug, Subcommand)]
pub enum LocalCommand {
    /// Start a local cluster and wait until it commits writes.
    Up {
        #[arg(long, default_value_t = 3)]
        sites: u32,
        #[arg(long, default_value_t = 1)]
        nodes_per_site: u32,
        #[arg(long)]
        dir: PathBuf,
        /// Start from a restored snapshot (`reprise restore --no-start`) as a new epoch.
        #[arg(long)]
        from: Option<PathBuf>,
    },
    /// Stop every node of a local cluster (SIGTERM, then SIGKILL after 10 s).
    Down {
        #[arg(long)]
        dir: PathBuf,
    },
    /// (Re)start one stopped node of a local cluster.
    Start {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        id: u64,
    },
}

/// The running `reprise` binary, which also serves as the node binary.
pub fn this_exe() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("locate the reprise binary")
}

/// Runs a `cluster local` command.
pub async fn run(cmd: LocalCommand, global: &Global) -> CliResult {
    match cmd {
        LocalCommand::Up {
            sites,
            nodes_per_site,
            dir,
            from,
        } => {
            let started = Instant::now();
            let mut spec = local::LocalSpec::new(sites, nodes_per_site);
            if let Some(snapshot) = from {
                let header = reprise_storage::state_machine::verify_snapshot(&snapshot)
                    .map_err(|e| anyhow!("--from {}: {e}", snapshot.display()))?;
                let index = header.meta.last_log_id.map(|l| l.index).unwrap_or(0);
                spec.cluster_name = Some(crate::cmd_restore::new_epoch_name(index));
                spec.seed_snapshot = Some(snapshot);
            }
            let mut cluster = local::up(&this_exe()?, &dir, &spec)
                .await
                .map_err(anyhow::Error::from)?;
            cluster.detach();
            let file = &cluster.file;
            match global.output {
                Format::Json => print_json(file)?,
                Format::Table => {
                    let rows: Vec<Vec<String>> = file
                        .nodes
                        .iter()
                        .map(|n| {
                            vec![
                                n.id.to_string(),
                                n.site.clone(),
                                n.addr.clone(),
                                n.pid.to_string(),
                                n.data_dir.display().to_string(),
                            ]
                        })
                        .collect();
                    print_table(&["ID", "SITE", "ADDR", "PID", "DATA DIR"], &rows);
                    println!(
                        "cluster up in {:.2} s, serving writes; described in {}",
                        started.elapsed().as_secs_f64(),
                        cluster.dir.join(CLUSTER_FILE).display()
                    );
                    println!("export REPRISE_ENDPOINTS={}", file.endpoints());
                }
            }
            Ok(())
        }
        LocalCommand::Down { dir } => {
            let stopped = local::down(&dir).map_err(anyhow::Error::from)?;
            match global.output {
                Format::Json => print_json(
                    &stopped
                        .iter()
                        .map(|(id, pid)| serde_json::json!({"id": id, "pid": pid}))
                        .collect::<Vec<_>>(),
                ),
                Format::Table => {
                    if stopped.is_empty() {
                        println!("no node of {} was running", dir.display());
                    }
                    for (id, pid) in &stopped {
                        println!("stopped node {id} (pid {pid})");
                    }
                    Ok(())
                }
            }
        }
        LocalCommand::Start { dir, id } => {
            let mut file = ClusterFile::read(&dir).map_err(anyhow::Error::from)?;
            let idx = file
                .nodes
                .iter()
                .position(|n| n.id == id)
                .ok_or_else(|| anyhow!("no node {id} in {}", dir.display()))?;
            if local::is_our_process(&file.nodes[idx]) {
                return Err(
                    anyhow!("node {id} is already running (pid {})", file.nodes[idx].pid).into(),
                );
            }
            let mut child = local::spawn_node(&this_exe()?, &file.nodes[idx], &[])
                .map_err(anyhow::Error::from)?;
            let pid = child.id();
            file.nodes[idx].pid = pid;
            local::wait_serving(&file.nodes[idx], &mut child, Duration::from_secs(30))
                .await
                .map_err(anyhow::Error::from)?;
            // Re-read under the lock: another node may have been started meanwhile.
            ClusterFile::update(&dir, |f| {
                if let Some(node) = f.nodes.iter_mut().find(|n| n.id == id) {
                    node.pid = pid;
                }
                Ok(())
            })
            .map_err(anyhow::Error::from)?;
            println!("started node {id} (pid {pid})");
            Ok(())
        }
    }
}
