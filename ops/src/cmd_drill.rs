//! `reprise drill run SCENARIO`: runs a drill on a scratch local cluster, shows progress,
//! prints the summary, writes the JSON report. Exit code 1 when a check failed.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use reprise_chaos::drill::{self, DrillOptions, Scenario};

use crate::cli::Global;
use crate::cmd_local::this_exe;
use crate::output::{print_json, CliError, CliResult, Format};

#[derive(Debug, Subcommand)]
pub enum DrillCommand {
    /// Run a drill: site-loss, site-fire or leader-pause.
    Run {
        /// Scenario to run.
        scenario: Scenario,
        /// Write the JSON report here (default: DIR/report.json); the HTML page goes beside
        /// it with the extension .html.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Seed of the workload's choices (default: from the clock; printed in the report).
        #[arg(long)]
        seed: Option<u64>,
        /// Scratch directory for the cluster (default: a fresh temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        #[arg(long, default_value_t = 1)]
        nodes_per_site: u32,
        /// Acknowledged operations before the fault, and again after recovery.
        #[arg(long, default_value_t = 1500)]
        ops: u64,
    },
}

fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Runs a drill command.
pub async fn run(cmd: DrillCommand, global: &Global) -> CliResult {
    let DrillCommand::Run {
        scenario,
        report,
        seed,
        dir,
        nodes_per_site,
        ops,
    } = cmd;
    let seed = seed.unwrap_or_else(clock_seed);
    let dir = dir
        .unwrap_or_else(|| std::env::temp_dir().join(format!("reprise-drill-{scenario}-{seed}")));
    let opts = DrillOptions {
        scenario,
        seed,
        exe: this_exe()?,
        dir: dir.clone(),
        nodes_per_site,
        ops_per_phase: ops,
        node_env: Vec::new(),
    };
    let progress = |line: &str| eprintln!("{line}");
    let result = drill::run(&opts, &progress)
        .await
        .context("drill aborted")?;
    let report_path = report.unwrap_or_else(|| dir.join("report.json"));
    let json = serde_json::to_vec_pretty(&result).context("encode report")?;
    std::fs::write(&report_path, json)
        .with_context(|| format!("write report {}", report_path.display()))?;
    let html_path = report_path.with_extension("html");
    std::fs::write(&html_path, drill::html::render(&result))
        .with_context(|| format!("write {}", html_path.display()))?;
    match global.output {
        Format::Json => print_json(&result)?,
        Format::Table => {
            print!("{}", result.summary());
            println!(
                "  report: {} (readable: {})",
                report_path.display(),
                html_path.display()
            );
        }
    }
    if result.passed {
        Ok(())
    } else {
        Err(CliError::NotApplied(format!(
            "drill {scenario} found problems; see {}",
            report_path.display()
        )))
    }
}
