//! `reprise demo failover`: the main job until the site-fire drill lands. Starts a local
//! 3-site cluster, writes and reads keys, SIGKILLs the leader while a client keeps
//! writing, measures the time to the first acknowledged write after the kill, checks that
//! no acknowledged write was lost, restarts the killed node and waits until it caught up.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use clap::Subcommand;
use serde::Serialize;

use crate::cli::Global;
use crate::cmd_cluster::gather;
use reprise_chaos::backend::local::LocalCluster;

use crate::cmd_local::this_exe;
use crate::output::{print_json, CliResult, Format};

#[derive(Debug, Subcommand)]
pub enum DemoCommand {
    /// Kill the leader of a local 3-site cluster and show that writes continue.
    Failover {
        /// Directory for the scratch cluster (default: a fresh temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Keys written before the kill.
        #[arg(long, default_value_t = 5)]
        keys: u32,
    },
}

/// Measured outcome of the failover demo.
#[derive(Debug, Serialize)]
pub struct FailoverReport {
    pub dir: PathBuf,
    pub old_leader: u64,
    pub new_leader: u64,
    /// SIGKILL of the leader → first acknowledged write, in milliseconds.
    pub failover_ms: u128,
    pub acknowledged_writes: usize,
    pub lost_writes: usize,
    pub restarted_node_caught_up_ms: u128,
}

fn step(format: Format, text: &str) {
    if format == Format::Table {
        eprintln!("==> {text}");
    }
}

/// Runs the failover demo on a scratch cluster and stops it whatever happens.
pub async fn failover(dir: PathBuf, keys: u32, format: Format) -> anyhow::Result<FailoverReport> {
    step(
        format,
        &format!(
            "starting a local cluster: 3 sites x 1 node in {}",
            dir.display()
        ),
    );
    let mut cluster = reprise_chaos::backend::local::up(
        &this_exe()?,
        &dir,
        &reprise_chaos::backend::local::LocalSpec::new(3, 1),
    )
    .await?;
    let result = run_failover(&mut cluster, keys, format).await;
    step(format, "stopping the cluster");
    cluster.stop_all();
    result
}

async fn run_failover(
    cluster: &mut LocalCluster,
    keys: u32,
    format: Format,
) -> anyhow::Result<FailoverReport> {
    let client = cluster.client()?;
    let mut acked: Vec<(String, String)> = Vec::new();
    for i in 0..keys {
        let (k, v) = (format!("demo/key-{i:03}"), format!("value-{i}"));
        let r = client.put(k.as_bytes(), v.as_bytes()).await?;
        step(
            format,
            &format!(
                "put {k} = {v} (index {})",
                r.header.map(|h| h.index).unwrap_or(0)
            ),
        );
        acked.push((k, v));
    }
    for (k, v) in &acked {
        let got = client
            .get(k.as_bytes(), false)
            .await?
            .kv
            .ok_or_else(|| anyhow!("{k} missing"))?;
        if got.value != v.as_bytes() {
            bail!("{k} reads back wrong");
        }
    }
    step(
        format,
        &format!("read back {} keys (linearizable)", acked.len()),
    );
    let status = gather(&client).await?;
    let old_leader = status.leader.ok_or_else(|| anyhow!("no leader"))?;
    step(
        format,
        &format!("leader is node {old_leader}; sending it SIGKILL"),
    );
    cluster.kill9(old_leader)?;
    let killed_at = Instant::now();
    let mut i = 0;
    let failover = loop {
        let (k, v) = (format!("demo/after-{i:03}"), format!("after-{i}"));
        i += 1;
        match client.put(k.as_bytes(), v.as_bytes()).await {
            Ok(_) => {
                acked.push((k, v));
                break killed_at.elapsed();
            }
            Err(e) if killed_at.elapsed() > Duration::from_secs(30) => {
                return Err(e).context("no write succeeded within 30 s")
            }
            Err(_) => continue,
        }
    };
    let status = gather(&client).await?;
    let new_leader = status
        .leader
        .ok_or_else(|| anyhow!("no leader after failover"))?;
    step(
        format,
        &format!(
            "first write acknowledged {} ms after the kill; new leader is node {new_leader}",
            failover.as_millis()
        ),
    );
    for j in 0..keys {
        let (k, v) = (format!("demo/more-{j:03}"), format!("more-{j}"));
        client.put(k.as_bytes(), v.as_bytes()).await?;
        acked.push((k, v));
    }
    let mut lost = 0;
    for (k, v) in &acked {
        let got = client.get(k.as_bytes(), false).await?.kv;
        if got.map(|kv| kv.value) != Some(v.as_bytes().to_vec()) {
            lost += 1;
        }
    }
    step(
        format,
        &format!("{} acknowledged writes checked, {lost} lost", acked.len()),
    );
    step(format, &format!("restarting node {old_leader}"));
    let restarted = Instant::now();
    cluster.restart(old_leader).await?;
    let leader_applied = gather(&client)
        .await?
        .members
        .iter()
        .find(|m| Some(m.id) == Some(new_leader))
        .and_then(|m| m.applied_index)
        .unwrap_or(0);
    let addr = cluster
        .file
        .nodes
        .iter()
        .find(|n| n.id == old_leader)
        .map(|n| n.addr.clone())
        .unwrap_or_default();
    loop {
        let s = client.status_of(&addr).await?;
        if s.applied_index >= leader_applied {
            break;
        }
        if restarted.elapsed() > Duration::from_secs(30) {
            bail!("node {old_leader} did not catch up within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let caught_up = restarted.elapsed();
    step(
        format,
        &format!(
            "node {old_leader} caught up to index {leader_applied} in {} ms",
            caught_up.as_millis()
        ),
    );
    Ok(FailoverReport {
        dir: cluster.dir.clone(),
        old_leader,
        new_leader,
        failover_ms: failover.as_millis(),
        acknowledged_writes: acked.len(),
        lost_writes: lost,
        restarted_node_caught_up_ms: caught_up.as_millis(),
    })
}

/// Runs a demo command.
pub async fn run(cmd: DemoCommand, global: &Global) -> CliResult {
    match cmd {
        DemoCommand::Failover { dir, keys } => {
            let dir = match dir {
                Some(d) => d,
                None => std::env::temp_dir().join(format!("reprise-demo-{}", std::process::id())),
            };
            let report = failover(dir, keys, global.output).await?;
            match global.output {
                Format::Json => print_json(&report)?,
                Format::Table => {
                    println!(
                        "failover: node {} killed, node {} leads; first write {} ms after the kill",
                        report.old_leader, report.new_leader, report.failover_ms
                    );
                    println!(
                        "writes: {} acknowledged, {} lost; killed node caught up in {} ms",
                        report.acknowledged_writes,
                        report.lost_writes,
                        report.restarted_node_caught_up_ms
                    );
                }
            }
            if report.lost_writes > 0 {
                return Err(crate::output::CliError::NotApplied(format!(
                    "{} acknowledged writes lost",
                    report.lost_writes
                )));
            }
            Ok(())
        }
    }
}
