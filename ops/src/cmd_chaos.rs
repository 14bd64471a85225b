//! `reprise chaos sim`: the deterministic simulation tier from the command line. One seed
//! (`--seed S`) replays a run exactly; `--seeds N` sweeps N seeds from `--from`. Progress
//! goes to stderr one line per seed; the summary (or `-o json`: every run's report) to
//! stdout; the exit code is 1 when any seed found a problem, each with its REPRODUCE WITH
//! line. Runs on the calling thread: the simulation brings its own runtimes.

use std::time::Instant;

use clap::{Subcommand, ValueEnum};
use reprise_chaos::sim::{self, disk::SimBug, SimReport};
use serde::Serialize;

use crate::output::{print_json, CliError, CliResult, Format};

#[derive(Debug, Subcommand)]
pub enum ChaosCommand {
    /// Deterministic simulation of a 3-site cluster under seeded faults.
    Sim {
        /// Run (or replay) this one seed.
        #[arg(long, conflicts_with = "seeds")]
        seed: Option<u64>,
        /// Sweep this many seeds, starting at --from.
        #[arg(long)]
        seeds: Option<u64>,
        /// First seed of a sweep.
        #[arg(long, default_value_t = 1, requires = "seeds")]
        from: u64,
        /// Plant a deliberately broken behaviour, to see the checkers catch it.
        #[arg(long, value_enum)]
        bug: Option<BugArg>,
    },
}

/// Planted bugs the simulation knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BugArg {
    /// The log acknowledges appends before they are fsynced.
    AckBeforeFsync,
}

impl From<BugArg> for SimBug {
    fn from(b: BugArg) -> Self {
        match b {
            BugArg::AckBeforeFsync => SimBug::AckBeforeFsync,
        }
    }
}

#[derive(Serialize)]
struct SweepSummary<'a> {
    seeds: usize,
    passed: usize,
    failed: Vec<u64>,
    ops_ok: u64,
    ops_failed: u64,
    ops_unknown: u64,
    faults: usize,
    /// Longest stretch without an acknowledged operation in any run, and its seed.
    longest_gap_ms: u64,
    longest_gap_seed: Option<u64>,
    simulated_ms: u64,
    wall_ms: u128,
    replayable: bool,
    runs: &'a [SimReport],
}

/// Runs a chaos command.
pub fn run(cmd: ChaosCommand, format: Format) -> CliResult {
    let ChaosCommand::Sim {
        seed,
        seeds,
        from,
        bug,
    } = cmd;
    let list: Vec<u64> = match (seed, seeds) {
        (Some(s), _) => vec![s],
        (None, Some(0)) => {
            return Err(CliError::Runtime(anyhow::anyhow!(
                "--seeds must be at least 1"
            )))
        }
        (None, Some(n)) => (from..from.saturating_add(n)).collect(),
        (None, None) => {
            return Err(CliError::Runtime(anyhow::anyhow!(
                "give --seed S to run one seed or --seeds N to sweep N seeds"
            )))
        }
    };
    if !sim::REPLAYABLE {
        eprintln!(
            "warning: built without the tokio_unstable cfg (.cargo/config.toml): a seed may not replay exactly"
        );
    }
    let started = Instant::now();
    let mut runs = Vec::with_capacity(list.len());
    for (i, s) in list.iter().enumerate() {
        let t = Instant::now();
        let report = sim::run_seed(*s, bug.map(SimBug::from));
        let kinds: Vec<&str> = report
            .faults
            .iter()
            .map(|f| f.scheduled.fault.name())
            .collect();
        eprintln!(
            "[{}/{}] seed {s}: {} in {:.1} s ({} ms simulated; ops {} ok, {} failed, {} unknown; longest gap {} ms; faults {})",
            i + 1,
            list.len(),
            if report.passed() { "pass" } else { "FAIL" },
            t.elapsed().as_secs_f64(),
            report.simulated_ms,
            report.ops.ok,
            report.ops.failed,
            report.ops.unknown,
            report.longest_gap_ms,
            kinds.join(", ")
        );
        if !report.passed() {
            for p in report.problems() {
                eprintln!("    {p}");
            }
            eprintln!("    {}", report.reproduce_with());
        }
        runs.push(report);
    }
    let failed: Vec<u64> = runs
        .iter()
        .filter(|r| !r.passed())
        .map(|r| r.seed)
        .collect();
    let summary = SweepSummary {
        seeds: runs.len(),
        passed: runs.len() - failed.len(),
        failed: failed.clone(),
        ops_ok: runs.iter().map(|r| r.ops.ok).sum(),
        ops_failed: runs.iter().map(|r| r.ops.failed).sum(),
        ops_unknown: runs.iter().map(|r| r.ops.unknown).sum(),
        faults: runs.iter().map(|r| r.faults.len()).sum(),
        longest_gap_ms: runs.iter().map(|r| r.longest_gap_ms).max().unwrap_or(0),
        longest_gap_seed: runs.iter().max_by_key(|r| r.longest_gap_ms).map(|r| r.seed),
        simulated_ms: runs.iter().map(|r| r.simulated_ms).sum(),
        wall_ms: started.elapsed().as_millis(),
        replayable: sim::REPLAYABLE,
        runs: &runs,
    };
    match format {
        Format::Json => print_json(&summary)?,
        Format::Table => print_table(&summary),
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(CliError::NotApplied(format!(
            "{} of {} seeds found problems: {}",
            failed.len(),
            runs.len(),
            runs.iter()
                .filter(|r| !r.passed())
                .map(|r| r.reproduce_with())
                .collect::<Vec<_>>()
                .join("; ")
        )))
    }
}

fn print_table(s: &SweepSummary<'_>) {
    println!("simulation: {} seeds, {} passed", s.seeds, s.passed);
    println!(
        "  operations: {} ok, {} failed, {} unknown",
        s.ops_ok, s.ops_failed, s.ops_unknown
    );
    println!(
        "  faults injected: {} (all verified: {})",
        s.faults,
        s.runs.iter().all(|r| r.faults.iter().all(|f| f.verified))
    );
    if let Some(seed) = s.longest_gap_seed {
        println!(
            "  longest stretch without an acknowledged operation: {} ms (seed {seed})",
            s.longest_gap_ms
        );
    }
    println!(
        "  simulated {:.1} s in {:.1} s of wall time",
        s.simulated_ms as f64 / 1000.0,
        s.wall_ms as f64 / 1000.0
    );
    if let [one] = s.runs {
        for f in &one.faults {
            println!(
                "  fault {} at {} ms for {} ms: {}",
                f.scheduled.fault.name(),
                f.scheduled.at_ms,
                f.scheduled.lasts_ms,
                f.evidence
            );
        }
        for c in &one.checkers {
            println!("  checker {}: {:?} ({})", c.checker, c.verdict, c.summary);
        }
        println!("  history fingerprint: {}", one.fingerprint);
    }
    for r in s.runs.iter().filter(|r| !r.passed()) {
        println!("  {}", r.reproduce_with());
    }
}
