//! `reprise bench compare`: the side-by-side benchmark against etcd. Starts a scratch
//! Reprise cluster (3 sites x 1 node) and a scratch 3-member etcd cluster on 127.0.0.1,
//! runs the same matrix on both (clients x put / linearizable get x value size), each cell
//! in rounds that measure the two systems one after the other (which system goes first
//! alternates from round to round, so neither always runs just after the other's run or
//! preload; a cell's figures are each system's round of median throughput), measures
//! each node's resident memory after loading the same keys, times leader failover on both, and writes BENCHMARKS.md with
//! every figure and the Reprise/etcd ratio measured in the same run. Everything it
//! starts it stops.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Context};
use clap::Args;
use serde::Serialize;

use crate::cli::Global;
use crate::cmd_bench::{
    cluster, cluster_with, etcd_failover_trials, failover_trials, idle_count, load_on, preload,
    IdleReport, LoadArgs, LoadReport, Target,
};
use crate::output::{print_json, CliResult, Format};

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Seconds per cell.
    #[arg(long, default_value_t = 5)]
    pub duration_s: u64,
    /// Seconds of the same load run before each cell's measured seconds and not counted
    /// (on both systems).
    #[arg(long, default_value_t = 1)]
    pub warmup_s: u64,
    /// Rounds per cell: each round measures both systems, one after the other; a cell's
    /// figures are each system's round of median throughput.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub rounds: u32,
    /// Client counts, comma separated.
    #[arg(long, default_value = "1,16,64,256")]
    pub clients: String,
    /// Value sizes in bytes, comma separated.
    #[arg(long, default_value = "256,4096")]
    pub values: String,
    /// Keys of 256 B loaded before reading each node's resident memory.
    #[arg(long, default_value_t = 1_000_000)]
    pub memory_keys: u64,
    /// Failover trials per system.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub trials: u32,
    /// Seconds an idle Reprise cluster is watched for elections (0 = skip).
    #[arg(long, default_value_t = 600)]
    pub idle_s: u64,
    /// Where to write the markdown report.
    #[arg(long, default_value = "BENCHMARKS.md")]
    pub out: PathBuf,
}

#[derive(Debug, Serialize)]
struct Cell {
    workload: String,
    value_size: usize,
    clients: u32,
    /// Each system's round of median throughput: the figures the table shows.
    reprise: LoadReport,
    etcd: LoadReport,
    /// Reprise's median throughput over etcd's.
    ratio: f64,
    /// Every round's throughput, in the order measured.
    reprise_rounds_ops_per_s: Vec<f64>,
    etcd_rounds_ops_per_s: Vec<f64>,
    /// Each round's own ratio: Reprise's run over etcd's run of the same round.
    round_ratios: Vec<f64>,
    /// The system measured first in the cell's first round (the order alternates from
    /// round to round).
    first: &'static str,
}

/// The report of median throughput among `rounds` (the upper one of two middles).
fn median_round(mut rounds: Vec<LoadReport>) -> anyhow::Result<LoadReport> {
    rounds.sort_by(|a, b| a.ops_per_s.total_cmp(&b.ops_per_s));
    let middle = rounds.len() / 2;
    rounds
        .into_iter()
        .nth(middle)
        .ok_or_else(|| anyhow!("a cell was measured in no rounds"))
}

/// `lo-hi x` over the rounds' own ratios, or the one ratio when there was one round.
fn ratio_range(ratios: &[f64]) -> String {
    let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    match ratios.len() {
        0 => "-".to_string(),
        1 => format!("{lo:.2}x"),
        _ => format!("{lo:.2}-{hi:.2}x"),
    }
}

/// Node config of the reference cluster without the continuous log archive.
const ARCHIVE_OFF_CONFIG: &str = "[archive]\ninterval_ms = 0\n";

/// A reference measurement of Reprise put in another setup than the matrix's, beside the
/// same run's etcd figure for the same cell. Not a target; shows what one part costs.
#[derive(Debug, Serialize)]
struct ReferenceCell {
    /// "unary calls" (the client without its Multiplex stream) or "archive off" (a
    /// cluster without the continuous log archive).
    variant: &'static str,
    value_size: usize,
    clients: u32,
    reprise: LoadReport,
    etcd_ops_per_s: f64,
    ratio: f64,
}

impl ReferenceCell {
    fn new(
        variant: &'static str,
        reprise: LoadReport,
        cells: &[Cell],
        value: usize,
        n: u32,
    ) -> Self {
        let etcd_ops_per_s = cells
            .iter()
            .find(|c| c.workload == "put" && c.value_size == value && c.clients == n)
            .map(|c| c.etcd.ops_per_s)
            .unwrap_or(0.0);
        let ratio = reprise.ops_per_s / etcd_ops_per_s.max(1e-9);
        eprintln!(
            "put ({variant:<11}) {value:>5} B {n:>4} clients: reprise {:>7.0} ops/s p99 {:>6.1} ms | {ratio:.2}x etcd's put cell",
            reprise.ops_per_s, reprise.p99_ms
        );
        ReferenceCell {
            variant,
            value_size: value,
            clients: n,
            reprise,
            etcd_ops_per_s,
            ratio,
        }
    }
}

#[derive(Debug, Serialize)]
struct Comparison {
    cells: Vec<Cell>,
    references: Vec<ReferenceCell>,
    memory_keys: u64,
    reprise_rss_mib: Vec<f64>,
    etcd_rss_mib: Vec<f64>,
    reprise_failover_ms: Vec<u128>,
    etcd_failover_ms: Vec<u128>,
    idle: Option<IdleReport>,
    machine: String,
    versions: String,
}

fn list<T: std::str::FromStr>(text: &str, what: &str) -> anyhow::Result<Vec<T>> {
    text.split(',')
        .map(|p| {
            p.trim()
                .parse::<T>()
                .map_err(|_| anyhow!("--{what}: {p:?} is not a number"))
        })
        .collect()
}

/// The load of one cell (or preload): `clients` running `workload` with values of `value`
/// bytes, for the cell length and warm-up `run` asks for.
fn load_args(
    target: Target,
    workload: &str,
    clients: u32,
    value: usize,
    run: &CompareArgs,
) -> LoadArgs {
    LoadArgs {
        target,
        clients,
        ops: 0,
        duration: Some(Duration::from_secs(run.duration_s)),
        warmup: Duration::from_secs(run.warmup_s),
        key_size: 16,
        value_size: value,
        keyspace: 10_000,
        workload: workload.to_string(),
        unary: false,
    }
}

/// Runs `reprise bench compare`.
pub async fn run(args: CompareArgs, global: &Global) -> CliResult {
    if !global.endpoints.is_empty() {
        return Err(anyhow!("bench compare starts its own clusters; drop --endpoints").into());
    }
    let clients: Vec<u32> = list(&args.clients, "clients")?;
    let values: Vec<usize> = list(&args.values, "values")?;
    let scratch = Global {
        endpoints: Vec::new(),
        ..global.clone()
    };
    let mut cells = Vec::new();
    let mut references = Vec::new();
    // The reference runs (Reprise's client without the Multiplex stream, a cluster
    // without the log archive): puts at 64 clients, or the largest count asked for.
    let reference_clients = if clients.contains(&64) {
        Some(64)
    } else {
        clients.iter().copied().max()
    };
    {
        let reprise = cluster(Target::Reprise, &scratch).await?;
        let etcd = cluster(Target::Etcd, &scratch).await?;
        // Which system goes first alternates (preloads and cells alike): the one measured
        // second gets a disk and page cache settled by the other's run.
        let mut reprise_first = true;
        for &value in &values {
            let mut order = [("reprise", &reprise), ("etcd", &etcd)];
            if !reprise_first {
                order.reverse();
            }
            reprise_first = !reprise_first;
            for (system, c) in order {
                let pre = load_args(c_target(system), "put", 64, value, &args);
                eprintln!("preloading 10000 keys of {value} B into {system}...");
                preload(c, &pre, 10_000, false).await?;
            }
            for workload in ["put", "get-linearizable"] {
                for &n in &clients {
                    let on_reprise = load_args(Target::Reprise, workload, n, value, &args);
                    let on_etcd = load_args(Target::Etcd, workload, n, value, &args);
                    let first = if reprise_first { "reprise" } else { "etcd" };
                    let (mut r_rounds, mut e_rounds) = (Vec::new(), Vec::new());
                    for round in 1..=args.rounds {
                        let (r, e) = if reprise_first {
                            let r = load_on(&reprise, &on_reprise, false).await?;
                            (r, load_on(&etcd, &on_etcd, false).await?)
                        } else {
                            let e = load_on(&etcd, &on_etcd, false).await?;
                            (load_on(&reprise, &on_reprise, false).await?, e)
                        };
                        reprise_first = !reprise_first;
                        eprintln!(
                            "{workload:<17} {value:>5} B {n:>4} clients, round {round}: reprise {:>7.0} ops/s p99 {:>6.1} ms | etcd {:>7.0} ops/s p99 {:>6.1} ms | {:.2}x",
                            r.ops_per_s,
                            r.p99_ms,
                            e.ops_per_s,
                            e.p99_ms,
                            r.ops_per_s / e.ops_per_s.max(1e-9)
                        );
                        r_rounds.push(r);
                        e_rounds.push(e);
                    }
                    let round_ratios: Vec<f64> = r_rounds
                        .iter()
                        .zip(&e_rounds)
                        .map(|(r, e)| r.ops_per_s / e.ops_per_s.max(1e-9))
                        .collect();
                    let reprise_rounds_ops_per_s = r_rounds.iter().map(|r| r.ops_per_s).collect();
                    let etcd_rounds_ops_per_s = e_rounds.iter().map(|e| e.ops_per_s).collect();
                    let r = median_round(r_rounds)?;
                    let e = median_round(e_rounds)?;
                    let ratio = r.ops_per_s / e.ops_per_s.max(1e-9);
                    eprintln!(
                        "{workload:<17} {value:>5} B {n:>4} clients: medians reprise {:>7.0} ops/s | etcd {:>7.0} ops/s | {ratio:.2}x (rounds {})",
                        r.ops_per_s,
                        e.ops_per_s,
                        ratio_range(&round_ratios)
                    );
                    cells.push(Cell {
                        workload: workload.to_string(),
                        value_size: value,
                        clients: n,
                        reprise: r,
                        etcd: e,
                        ratio,
                        reprise_rounds_ops_per_s,
                        etcd_rounds_ops_per_s,
                        round_ratios,
                        first,
                    });
                }
            }
            if let Some(n) = reference_clients {
                let mut on_reprise = load_args(Target::Reprise, "put", n, value, &args);
                on_reprise.unary = true;
                let r = load_on(&reprise, &on_reprise, false).await?;
                references.push(ReferenceCell::new("unary calls", r, &cells, value, n));
            }
        }
    }
    // What the continuous log archive costs: the same put cells on a cluster without it
    // (after the matrix, so the matrix's clusters are stopped).
    if let Some(n) = reference_clients {
        for &value in &values {
            let off = cluster_with(Target::Reprise, &scratch, ARCHIVE_OFF_CONFIG).await?;
            let pre = load_args(Target::Reprise, "put", 64, value, &args);
            eprintln!("preloading 10000 keys of {value} B into reprise (archive off)...");
            preload(&off, &pre, 10_000, false).await?;
            let on_off = load_args(Target::Reprise, "put", n, value, &args);
            let r = load_on(&off, &on_off, false).await?;
            references.push(ReferenceCell::new("archive off", r, &cells, value, n));
        }
    }
    eprintln!(
        "memory: loading {} keys of 256 B into fresh clusters...",
        args.memory_keys
    );
    let mut rss = Vec::new();
    for target in [Target::Reprise, Target::Etcd] {
        let c = cluster(target, &scratch).await?;
        let mut pre = load_args(target, "put", 64, 256, &args);
        pre.key_size = 16;
        preload(&c, &pre, args.memory_keys, true).await?;
        rss.push(
            c.pids()
                .into_iter()
                .map(crate::cmd_bench::rss_mib)
                .collect::<Vec<_>>(),
        );
    }
    eprintln!("failover: {} trials each...", args.trials);
    let reprise_failover = failover_trials(args.trials).await?;
    let etcd_failover = etcd_failover_trials(args.trials).await?;
    let idle = if args.idle_s > 0 {
        eprintln!("idle: watching a Reprise cluster for {} s...", args.idle_s);
        Some(idle_count(args.idle_s, &scratch).await?)
    } else {
        None
    };
    let comparison = Comparison {
        cells,
        references,
        memory_keys: args.memory_keys,
        reprise_rss_mib: rss.first().cloned().unwrap_or_default(),
        etcd_rss_mib: rss.get(1).cloned().unwrap_or_default(),
        reprise_failover_ms: reprise_failover,
        etcd_failover_ms: etcd_failover,
        idle,
        machine: machine(),
        versions: versions(),
    };
    let markdown = render(&comparison, &args);
    std::fs::write(&args.out, &markdown)
        .with_context(|| format!("write {}", args.out.display()))?;
    match global.output {
        Format::Json => print_json(&comparison),
        Format::Table => {
            println!("{markdown}");
            println!("written to {}", args.out.display());
            Ok(())
        }
    }
}

fn c_target(system: &str) -> Target {
    if system == "etcd" {
        Target::Etcd
    } else {
        Target::Reprise
    }
}

fn machine() -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map(|kb| format!("{:.0} GiB", kb / 1024.0 / 1024.0))
        .unwrap_or_default();
    let data = crate::scratch_dir::base()
        .map(|d| crate::scratch_dir::describe(&d))
        .unwrap_or_else(|e| e.to_string());
    format!("{cores} cores ({cpu}), {mem} RAM; both systems' data on {data}")
}

fn versions() -> String {
    let etcd = crate::bench_etcd::etcd_exe()
        .ok()
        .and_then(|exe| {
            std::process::Command::new(exe)
                .arg("--version")
                .output()
                .ok()
        })
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_string)
        })
        .unwrap_or_else(|| "etcd (version unknown)".into());
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    format!(
        "reprise {} (checkout at commit {commit}), {etcd}",
        env!("CARGO_PKG_VERSION")
    )
}

fn median(v: &[u128]) -> u128 {
    let mut s = v.to_vec();
    s.sort_unstable();
    s.get(s.len() / 2).copied().unwrap_or(0)
}

fn render(c: &Comparison, args: &CompareArgs) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Benchmarks: Reprise against etcd\n");
    let _ = writeln!(
        md,
        "Measured by `bench/compare.sh` (`reprise bench compare`): both systems on this machine in one run. Each cell is measured in {} rounds; a round runs the load {} s on each system, one after the other, each after {} s of the same load that is not counted, and which system goes first alternates from round to round (column \"first\": the first round's). A cell's figures are each system's round of median throughput, the ratio is of those two medians, and the column \"rounds\" gives the range of the rounds' own ratios (each round's Reprise run over its etcd run).\n",
        args.rounds, args.duration_s, args.warmup_s
    );
    let _ = writeln!(md, "- Machine: {}", c.machine);
    let _ = writeln!(md, "- Versions: {}", c.versions);
    let _ = writeln!(
        md,
        "- Layout: Reprise 3 sites x 1 node, etcd 3 members, all on 127.0.0.1. Durability: both fsync every commit (etcd's WAL default; Reprise fdatasyncs on a quorum before acknowledging). Keys 16 B, 10,000 distinct keys; reads are linearizable on both (etcd: serializable=false, a ReadIndex round through its leader; Reprise: served by the leader under its lease, which assumes the nodes' clocks advance at about the same rate, `node/src/read_index.rs`).\n- Clients: Reprise's own client follows leader redirects; the etcd client (a wire-compatible subset of etcd's v3 gRPC API, `ops/proto/etcd_min.proto`, not the `etcd-client` crate) sends to the member that leads when the cell starts, so neither system's requests are forwarded by a follower.\n"
    );
    let _ = writeln!(md, "## Throughput and latency\n");
    let _ = writeln!(
        md,
        "| workload | value | clients | Reprise ops/s | etcd ops/s | Reprise/etcd | rounds | Reprise p50 / p99 ms | etcd p50 / p99 ms | errors R/E | first |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for cell in &c.cells {
        let _ = writeln!(
            md,
            "| {} | {} B | {} | {:.0} | {:.0} | {:.2}x | {} | {:.1} / {:.1} | {:.1} / {:.1} | {}/{} | {} |",
            cell.workload,
            cell.value_size,
            cell.clients,
            cell.reprise.ops_per_s,
            cell.etcd.ops_per_s,
            cell.ratio,
            ratio_range(&cell.round_ratios),
            cell.reprise.p50_ms,
            cell.reprise.p99_ms,
            cell.etcd.p50_ms,
            cell.etcd.p99_ms,
            cell.reprise.errors,
            cell.etcd.errors,
            cell.first
        );
    }
    let _ = writeln!(
        md,
        "\nEvery benchmark client has a connection of its own to each node, on both systems. Reprise's client sends its calls over one `Multiplex` stream per connection (one HTTP/2 stream for all of them, each call in a frame); etcd's v3 API has no such stream for puts and ranges, so its client makes one unary RPC, one HTTP/2 stream, per request."
    );
    if !c.references.is_empty() {
        let _ = writeln!(
            md,
            "\nFor reference, Reprise put in two other setups, each measured in the same run after the matrix above and set beside the matrix's etcd figure for the same cell (not alternated with etcd, and not what the targets are judged on):\n\n- *unary calls*: Reprise's client making one unary RPC per request as etcd's does (`reprise bench --unary`), on the matrix's cluster;\n- *archive off*: a fresh cluster, preloaded like the matrix's and with no etcd cluster running beside it, with the continuous log archive turned off (`[archive] interval_ms = 0`: no point-in-time restore). The matrix's cluster runs the archive, as every cluster does by default: every 500 ms it erasure-codes the newly committed entries and stores their shards across the sites. etcd does no such work.\n\n| setup | workload | value | clients | Reprise ops/s | Reprise p50 / p99 ms | etcd ops/s (put cell above) | Reprise/etcd |\n|---|---|---:|---:|---:|---:|---:|---:|"
        );
        for u in &c.references {
            let _ = writeln!(
                md,
                "| {} | put | {} B | {} | {:.0} | {:.1} / {:.1} | {:.0} | {:.2}x |",
                u.variant,
                u.value_size,
                u.clients,
                u.reprise.ops_per_s,
                u.reprise.p50_ms,
                u.reprise.p99_ms,
                u.etcd_ops_per_s,
                u.ratio
            );
        }
    }
    let _ = writeln!(
        md,
        "\n## Failover (kill -9 of the leader → first acknowledged write)\n"
    );
    let _ = writeln!(
        md,
        "| system | trials (ms) | median ms | max ms |\n|---|---|---:|---:|\n| Reprise | {:?} | {} | {} |\n| etcd | {:?} | {} | {} |",
        c.reprise_failover_ms,
        median(&c.reprise_failover_ms),
        c.reprise_failover_ms.iter().max().copied().unwrap_or(0),
        c.etcd_failover_ms,
        median(&c.etcd_failover_ms),
        c.etcd_failover_ms.iter().max().copied().unwrap_or(0)
    );
    let _ = writeln!(
        md,
        "\nThe etcd client abandons a request after 200 ms and retries on the next member (a request stuck on the dead leader would otherwise wait for its timeout); the Reprise client follows leader redirects and moves on when a connection fails."
    );
    let _ = writeln!(md, "\n## Memory after {} keys of 256 B\n", c.memory_keys);
    let fmt = |v: &[f64]| {
        v.iter()
            .map(|m| format!("{m:.0}"))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    let _ = writeln!(
        md,
        "| system | resident MiB per node |\n|---|---|\n| Reprise | {} |\n| etcd | {} |",
        fmt(&c.reprise_rss_mib),
        fmt(&c.etcd_rss_mib)
    );
    let _ = writeln!(
        md,
        "\n## Targets (issue 5), judged on the figures above (each system's median round)\n"
    );
    let find = |w: &str, n: u32| {
        c.cells
            .iter()
            .filter(|x| x.workload == w && x.clients == n)
            .collect::<Vec<_>>()
    };
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    for n in [64, 256] {
        if find("put", n).is_empty() {
            let _ = writeln!(
                md,
                "- Writes, {n} clients: not measured by this run (--clients has no {n})."
            );
        }
        for cell in find("put", n) {
            let ok = cell.ratio >= 3.0 && cell.reprise.p99_ms <= cell.etcd.p99_ms;
            let _ = writeln!(
                md,
                "- Writes, {n} clients, {} B: {:.2}x etcd (target >= 3x; rounds {}), p99 {:.1} vs {:.1} ms (target: no worse): {}",
                cell.value_size,
                cell.ratio,
                ratio_range(&cell.round_ratios),
                cell.reprise.p99_ms,
                cell.etcd.p99_ms,
                verdict(ok)
            );
        }
    }
    for cell in find("put", 1) {
        let _ = writeln!(
            md,
            "- Writes, 1 client, {} B: {:.2}x etcd (target >= 1x; rounds {}): {}",
            cell.value_size,
            cell.ratio,
            ratio_range(&cell.round_ratios),
            verdict(cell.ratio >= 1.0)
        );
    }
    for cell in find("get-linearizable", 64) {
        let _ = writeln!(
            md,
            "- Linearizable reads, 64 clients, {} B: {:.2}x etcd (target >= 2x; rounds {}): {}",
            cell.value_size,
            cell.ratio,
            ratio_range(&cell.round_ratios),
            verdict(cell.ratio >= 2.0)
        );
    }
    let rm = median(&c.reprise_failover_ms);
    let _ = writeln!(
        md,
        "- Failover median: {rm} ms (target <= 500 ms; etcd {} ms): {}",
        median(&c.etcd_failover_ms),
        verdict(rm <= 500)
    );
    match &c.idle {
        Some(i) => {
            let _ = writeln!(
                md,
                "- Spurious elections in a {}-second idle run: {} elections, {} leader changes (term {} -> {}; every node polled {} times): {}",
                i.seconds,
                i.elections,
                i.leader_changes,
                i.first_term,
                i.last_term,
                i.polls,
                verdict(i.elections == 0)
            );
        }
        None => {
            let _ = writeln!(
                md,
                "- Spurious elections in an idle run: not measured by this run (--idle-s 0)."
            );
        }
    }
    if let Ok(notes) = std::fs::read_to_string("bench/notes.md") {
        let _ = writeln!(md, "\n## What limits Reprise today\n\n{}", notes.trim_end());
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(ops_per_s: f64, p99_ms: f64) -> LoadReport {
        LoadReport {
            target: Target::Reprise,
            workload: "put".to_string(),
            clients: 64,
            key_size: 16,
            value_size: 256,
            keyspace: 10_000,
            unary: false,
            ops: 1,
            errors: 0,
            warmup_s: 1.0,
            seconds: 5.0,
            ops_per_s,
            p50_ms: 1.0,
            p90_ms: 2.0,
            p99_ms,
            max_ms: 9.0,
            node_rss_mib: Vec::new(),
        }
    }

    #[test]
    fn a_cell_shows_the_round_of_median_throughput_with_its_own_latencies() {
        let rounds = vec![report(300.0, 3.0), report(100.0, 1.0), report(200.0, 2.0)];
        let median = median_round(rounds).unwrap();
        assert_eq!(median.ops_per_s, 200.0);
        assert_eq!(median.p99_ms, 2.0, "the latencies come from the same round");
        let one = median_round(vec![report(50.0, 5.0)]).unwrap();
        assert_eq!(one.ops_per_s, 50.0);
        assert!(median_round(Vec::new()).is_err());
    }

    #[test]
    fn the_rounds_ratios_are_shown_as_a_range() {
        assert_eq!(ratio_range(&[3.53, 2.81, 2.98]), "2.81-3.53x");
        assert_eq!(ratio_range(&[1.5]), "1.50x");
        assert_eq!(ratio_range(&[]), "-");
    }

    #[test]
    fn rounds_of_zero_are_refused() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            compare: CompareArgs,
        }
        let rounds = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("compare").chain(args.iter().copied()))
                .map(|c| c.compare.rounds)
        };
        assert_eq!(rounds(&[]).ok(), Some(3));
        assert_eq!(rounds(&["--rounds", "5"]).ok(), Some(5));
        assert!(rounds(&["--rounds", "0"]).is_err());
    }
}
