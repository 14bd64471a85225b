//! `reprise bench`: a load generator against the Reprise gRPC API (throughput and latency
//! percentiles, with a progress line) and `bench failover` (kill -9 of the leader → first
//! acknowledged write, over several trials). Without `--endpoints` it starts a scratch
//! local 3-site cluster (or, for `--target etcd`, a scratch 3-member etcd cluster) and
//! stops it afterwards, reporting each node's resident memory at the end. Both targets
//! run the same load loop.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use clap::{Args, Subcommand, ValueEnum};
use rand::{Rng, SeedableRng};
use reprise_api::{Client, ClientOptions};
use reprise_chaos::backend::local::{self, LocalCluster, LocalSpec};
use serde::Serialize;

use crate::bench_etcd::{EtcdClient, EtcdCluster};
use crate::cli::Global;
use crate::cmd_local::this_exe;
use crate::output::{print_json, print_table, CliResult, Format};

/// What the benchmark targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Reprise,
    Etcd,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: Option<BenchCommand>,
    #[command(flatten)]
    pub load: LoadArgs,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// kill -9 the leader while a retrying client writes; time to the first acknowledged write.
    Failover {
        #[arg(long, value_enum, default_value = "reprise")]
        target: Target,
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
        trials: u32,
    },
    /// Backup and restore throughput against the disk's sequential write speed.
    Backup(crate::bench_backup::BackupBenchArgs),
    /// The same matrix against Reprise and etcd, alternating; writes BENCHMARKS.md.
    Compare(crate::bench_compare::CompareArgs),
    /// Leave a scratch cluster idle and count elections (term changes) and leader changes.
    Idle {
        #[arg(long, default_value_t = 600)]
        duration_s: u64,
    },
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    #[arg(long, value_enum, default_value = "reprise")]
    pub target: Target,
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    pub clients: u32,
    /// Total operations (ignored when --duration is given).
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub ops: u64,
    /// Run this long instead of a fixed number of operations: `30s`, `2m`, `1500ms`, or a
    /// bare number of seconds (`--duration-s` is the older spelling of the same option).
    #[arg(long, visible_alias = "duration-s", value_parser = parse_run_duration)]
    pub duration: Option<Duration>,
    /// Run the same load this long before measuring, and count nothing from it
    /// (connections opened, both ends' buffers and batching settled): `1s`, `500ms`, or
    /// a bare number of seconds; 0, the default, measures from the first request.
    #[arg(long, default_value = "0", value_parser = parse_warmup)]
    pub warmup: Duration,
    #[arg(long, default_value_t = 16)]
    pub key_size: usize,
    #[arg(long, default_value_t = 256)]
    pub value_size: usize,
    /// Distinct keys written or read.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub keyspace: u64,
    /// put | get-linearizable | get-stale | mixed:R (R = percent reads, linearizable)
    #[arg(long, default_value = "put", value_parser = check_workload)]
    pub workload: String,
    /// Reprise only: send each request as its own unary RPC (one HTTP/2 stream each, as
    /// etcd's client does) instead of over the client's Multiplex stream.
    #[arg(long)]
    pub unary: bool,
}

#[derive(Debug, Clone, Copy)]
enum Workload {
    Put,
    Get { stale: bool },
    Mixed { read_percent: u32 },
}

/// `--duration`: a bare number is seconds; otherwise a length with its unit (`30s`, `2m`,
/// `1500ms`, `1m 30s`). Zero is refused: a run must measure something.
fn parse_run_duration(text: &str) -> Result<Duration, String> {
    let parsed = parse_length(text)?;
    if parsed.is_zero() {
        return Err(format!(
            "{:?} is zero; a run must last some time",
            text.trim()
        ));
    }
    Ok(parsed)
}

/// `--warmup`: as `--duration`, and zero (no warm-up) is allowed.
fn parse_warmup(text: &str) -> Result<Duration, String> {
    parse_length(text)
}

/// A bare number of seconds, or a length with its unit.
fn parse_length(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    match text.parse::<u64>() {
        Ok(secs) => Ok(Duration::from_secs(secs)),
        Err(_) => humantime::parse_duration(text).map_err(|e| {
            format!("{text:?} is not a duration ({e}); give seconds (30) or a length with its unit (30s, 2m, 1500ms)")
        }),
    }
}

/// `--workload`, checked when the command line is read (before any cluster starts).
fn check_workload(text: &str) -> Result<String, String> {
    parse_workload(text)
        .map(|_| text.to_string())
        .map_err(|e| e.to_string())
}

fn parse_workload(text: &str) -> anyhow::Result<Workload> {
    match text {
        "put" => Ok(Workload::Put),
        "get-linearizable" => Ok(Workload::Get { stale: false }),
        "get-stale" => Ok(Workload::Get { stale: true }),
        other => {
            let pct = other
                .strip_prefix("mixed:")
                .and_then(|r| r.parse::<u32>().ok())
                .filter(|r| *r <= 100)
                .ok_or_else(|| anyhow!("unknown workload {other:?}: use put, get-linearizable, get-stale or mixed:R (0-100)"))?;
            Ok(Workload::Mixed { read_percent: pct })
        }
    }
}

/// Measured figures of one load run.
#[derive(Debug, Serialize)]
pub struct LoadReport {
    pub target: Target,
    pub workload: String,
    pub clients: u32,
    pub key_size: usize,
    pub value_size: usize,
    pub keyspace: u64,
    /// Reprise only: one unary RPC per request instead of the Multiplex stream.
    pub unary: bool,
    /// Operations acknowledged; throughput and latencies count these only.
    pub ops: u64,
    /// Operations that failed (not in `ops`, nor in the latencies).
    pub errors: u64,
    /// Seconds of unmeasured load before the measured window (`--warmup`).
    pub warmup_s: f64,
    /// Length of the measured window (after the warm-up).
    pub seconds: f64,
    pub ops_per_s: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Resident memory of each node at the end, when the bench started the cluster.
    pub node_rss_mib: Vec<f64>,
}

/// What every benchmark key starts with.
const KEY_PREFIX: &str = "bench/";

/// Key `i` of a run: `bench/` and `i` in decimal, zero-padded to exactly `size` bytes
/// (longer only when `size` cannot hold `i`, which `check_key_size` refuses up front).
fn key(i: u64, size: usize) -> Vec<u8> {
    let digits = size.saturating_sub(KEY_PREFIX.len());
    format!("{KEY_PREFIX}{i:0digits$}").into_bytes()
}

/// Keys of `key_size` bytes must tell `keys` keys apart.
pub(crate) fn check_key_size(key_size: usize, keys: u64) -> anyhow::Result<()> {
    let needed = KEY_PREFIX.len() + keys.saturating_sub(1).max(1).to_string().len();
    if key_size < needed {
        return Err(anyhow!(
            "--key-size {key_size} cannot hold {keys} distinct keys: they need at least {needed} bytes (\"{KEY_PREFIX}\" and the key's number)"
        ));
    }
    Ok(())
}

/// A cluster to benchmark: the given endpoints, or a scratch one stopped on drop.
pub(crate) struct Cluster {
    target: Target,
    endpoints: Vec<String>,
    /// How long a Reprise client call may follow leaders and retry (`--timeout-ms`).
    deadline: Duration,
    scratch: Scratch,
}

enum Scratch {
    None,
    Reprise(LocalCluster, std::path::PathBuf),
    Etcd(EtcdCluster, std::path::PathBuf),
}

impl Cluster {
    pub(crate) fn pids(&self) -> Vec<u32> {
        match &self.scratch {
            Scratch::None => Vec::new(),
            Scratch::Reprise(c, _) => c.file.nodes.iter().map(|n| n.pid).collect(),
            Scratch::Etcd(c, _) => c.pids(),
        }
    }

    /// The endpoints in the order a run's clients use them. etcd's leader comes first, so
    /// etcd's puts and linearizable reads go straight to it instead of being forwarded
    /// by a follower (Reprise's client finds the leader by itself).
    async fn run_endpoints(&self) -> Vec<String> {
        match self.target {
            Target::Reprise => self.endpoints.clone(),
            Target::Etcd => crate::bench_etcd::leader_first(&self.endpoints).await,
        }
    }

    fn backend(&self, endpoints: &[String], unary: bool) -> CliResult<Backend> {
        Ok(match self.target {
            Target::Reprise => Backend::Reprise(Arc::new(Client::new(
                endpoints,
                ClientOptions {
                    multiplex: !unary,
                    deadline: self.deadline,
                    ..Default::default()
                },
            )?)),
            Target::Etcd => Backend::Etcd(EtcdClient::new(endpoints)?),
        })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        match std::mem::replace(&mut self.scratch, Scratch::None) {
            Scratch::None => {}
            Scratch::Reprise(c, dir) => {
                drop(c);
                let _ = std::fs::remove_dir_all(dir);
            }
            Scratch::Etcd(c, dir) => {
                drop(c);
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
}

/// Resident set size of `pid` in MiB (0 when unknown).
pub(crate) fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

pub(crate) async fn cluster(target: Target, global: &Global) -> CliResult<Cluster> {
    cluster_with(target, global, "").await
}

/// [`cluster`], with `node_config` (TOML) appended to every scratch Reprise node's config.
pub(crate) async fn cluster_with(
    target: Target,
    global: &Global,
    node_config: &str,
) -> CliResult<Cluster> {
    let deadline = Duration::from_millis(global.timeout_ms);
    if !global.endpoints.is_empty() {
        return Ok(Cluster {
            target,
            endpoints: global.endpoints.clone(),
            deadline,
            scratch: Scratch::None,
        });
    }
    let variant = if node_config.is_empty() {
        ""
    } else {
        "-configured"
    };
    let dir = crate::scratch_dir::base()?.join(format!(
        "reprise-bench-{target:?}{variant}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    match target {
        Target::Reprise => {
            eprintln!(
                "no --endpoints: starting a scratch local cluster (3 sites x 1 node) in {}",
                dir.display()
            );
            let spec = LocalSpec {
                extra_config: node_config.to_string(),
                ..LocalSpec::new(3, 1)
            };
            let c = local::up(&this_exe()?, &dir, &spec)
                .await
                .map_err(anyhow::Error::from)?;
            let endpoints = c.file.nodes.iter().map(|n| n.addr.clone()).collect();
            Ok(Cluster {
                target,
                endpoints,
                deadline,
                scratch: Scratch::Reprise(c, dir),
            })
        }
        Target::Etcd => {
            eprintln!(
                "no --endpoints: starting a scratch 3-member etcd cluster in {}",
                dir.display()
            );
            let c = EtcdCluster::start(&dir, 3).await?;
            Ok(Cluster {
                target,
                endpoints: c.endpoints(),
                deadline,
                scratch: Scratch::Etcd(c, dir),
            })
        }
    }
}

/// One load client of either target.
#[derive(Clone)]
enum Backend {
    Reprise(Arc<Client>),
    Etcd(EtcdClient),
}

impl Backend {
    async fn put(&self, key: &[u8], value: &[u8]) -> bool {
        match self {
            Backend::Reprise(c) => c.put(key, value).await.is_ok(),
            Backend::Etcd(c) => c.put(key, value).await.is_ok(),
        }
    }

    async fn get(&self, key: &[u8], stale: bool) -> bool {
        match self {
            Backend::Reprise(c) => c.get(key, stale).await.is_ok(),
            Backend::Etcd(c) => c.get(key, stale).await.is_ok(),
        }
    }
}

/// Runs a bench command.
pub async fn run(args: BenchArgs, global: &Global) -> CliResult {
    match args.command {
        Some(BenchCommand::Failover { .. }) if !global.endpoints.is_empty() => Err(anyhow!(
            "bench failover kills nodes of a scratch cluster it starts itself; drop --endpoints (or unset REPRISE_ENDPOINTS)"
        )
        .into()),
        Some(BenchCommand::Failover {
            target: Target::Reprise,
            trials,
        }) => failover(trials, global).await,
        Some(BenchCommand::Failover {
            target: Target::Etcd,
            trials,
        }) => etcd_failover(trials, global).await,
        Some(BenchCommand::Backup(args)) => crate::bench_backup::run(args, global).await,
        Some(BenchCommand::Compare(args)) => crate::bench_compare::run(args, global).await,
        Some(BenchCommand::Idle { duration_s }) => idle(duration_s, global).await,
        None => {
            let report = load(&args.load, global).await?;
            match global.output {
                Format::Json => print_json(&report),
                Format::Table => {
                    let row = vec![
                        format!("{:?}", report.target).to_lowercase(),
                        report.workload.clone(),
                        report.clients.to_string(),
                        report.ops.to_string(),
                        format!("{:.0}", report.ops_per_s),
                        format!("{:.2}", report.p50_ms),
                        format!("{:.2}", report.p90_ms),
                        format!("{:.2}", report.p99_ms),
                        format!("{:.2}", report.max_ms),
                        report.errors.to_string(),
                        report
                            .node_rss_mib
                            .iter()
                            .map(|m| format!("{m:.0}"))
                            .collect::<Vec<_>>()
                            .join("/"),
                    ];
                    print_table(
                        &[
                            "TARGET",
                            "WORKLOAD",
                            "CLIENTS",
                            "OPS",
                            "OPS/S",
                            "P50 MS",
                            "P90 MS",
                            "P99 MS",
                            "MAX MS",
                            "ERRORS",
                            "NODE RSS MIB",
                        ],
                        &[row],
                    );
                    Ok(())
                }
            }
        }
    }
}

async fn load(args: &LoadArgs, global: &Global) -> CliResult<LoadReport> {
    if args.unary && matches!(args.target, Target::Etcd) {
        return Err(anyhow!("--unary applies to --target reprise only").into());
    }
    let workload = parse_workload(&args.workload)?;
    check_key_size(args.key_size, args.keyspace)?;
    let target = cluster(args.target, global).await?;
    // Progress goes to stderr: shown on a terminal even with `-o json` on stdout.
    let show = global.output == Format::Table || std::io::stderr().is_terminal();
    if !matches!(workload, Workload::Put) {
        preload(&target, args, args.keyspace, show).await?;
    }
    load_on(&target, args, show).await
}

/// Puts keys `0..keys` (values of the run's size) with 64 concurrent clients.
pub(crate) async fn preload(target: &Cluster, args: &LoadArgs, keys: u64, show: bool) -> CliResult {
    if show {
        eprintln!("preloading {keys} keys of {} bytes...", args.value_size);
    }
    check_key_size(args.key_size, keys)?;
    let endpoints = target.run_endpoints().await;
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (c, next) = (target.backend(&endpoints, args.unary)?, next.clone());
        let (key_size, value) = (args.key_size, vec![b'v'; args.value_size]);
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= keys {
                    return Ok(());
                }
                if !c.put(&key(i, key_size), &value).await {
                    return Err(anyhow!("preloading key {i} failed"));
                }
            }
        }));
    }
    let ticker = progress(next, keys, show);
    let loaded: CliResult = async {
        for t in tasks {
            t.await.context("preload task")??;
        }
        Ok(())
    }
    .await;
    ticker.abort();
    loaded
}

/// Runs the load of `args` against `target` (already preloaded for reads).
pub(crate) async fn load_on(
    target: &Cluster,
    args: &LoadArgs,
    show: bool,
) -> CliResult<LoadReport> {
    let workload = parse_workload(&args.workload)?;
    let value = vec![b'v'; args.value_size];
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let budget = if args.duration.is_some() {
        u64::MAX
    } else {
        args.ops
    };
    let endpoints = target.run_endpoints().await;
    // Requests started before `measured_from` are the warm-up: sent, and counted nowhere.
    let measured_from = Instant::now() + args.warmup;
    let deadline = args.duration.map(|d| measured_from + d);
    if show && !args.warmup.is_zero() {
        eprintln!("  warming up for {:?}...", args.warmup);
    }
    let mut tasks = Vec::new();
    for n in 0..args.clients {
        let (c, done, errors, value) = (
            target.backend(&endpoints, args.unary)?,
            done.clone(),
            errors.clone(),
            value.clone(),
        );
        let (key_size, keyspace) = (args.key_size, args.keyspace.max(1));
        tasks.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(u64::from(n));
            let mut lat = Vec::new();
            loop {
                let warming = Instant::now() < measured_from;
                if !warming
                    && (done.fetch_add(1, Ordering::Relaxed) >= budget
                        || deadline.is_some_and(|d| Instant::now() >= d))
                {
                    break;
                }
                let k = key(rng.random_range(0..keyspace), key_size);
                let read = match workload {
                    Workload::Put => None,
                    Workload::Get { stale } => Some(stale),
                    Workload::Mixed { read_percent } => {
                        (rng.random_range(0..100) < read_percent).then_some(false)
                    }
                };
                let t = Instant::now();
                let ok = match read {
                    Some(stale) => c.get(&k, stale).await,
                    None => c.put(&k, &value).await,
                };
                if warming {
                    continue;
                }
                if ok {
                    lat.push(t.elapsed().as_secs_f64() * 1000.0);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            lat
        }));
    }
    let ticker = progress(done.clone(), budget, show);
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.context("bench client task")?);
    }
    ticker.abort();
    let seconds = measured_from.elapsed().as_secs_f64();
    lat.sort_by(|a, b| a.total_cmp(b));
    let pick = |q: f64| {
        lat.get(((lat.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    let errors = errors.load(Ordering::Relaxed);
    if lat.is_empty() && errors > 0 {
        return Err(anyhow!(
            "every request failed ({errors} errors): are the endpoints ({}) a {:?} cluster that answers?",
            target.endpoints.join(","),
            target.target
        )
        .into());
    }
    Ok(LoadReport {
        target: target.target,
        workload: args.workload.clone(),
        clients: args.clients,
        key_size: args.key_size,
        value_size: args.value_size,
        keyspace: args.keyspace,
        unary: args.unary,
        ops: lat.len() as u64,
        errors,
        warmup_s: args.warmup.as_secs_f64(),
        seconds,
        ops_per_s: lat.len() as f64 / seconds.max(1e-9),
        p50_ms: pick(0.5),
        p90_ms: pick(0.9),
        p99_ms: pick(0.99),
        max_ms: lat.last().copied().unwrap_or(0.0),
        node_rss_mib: target.pids().into_iter().map(rss_mib).collect(),
    })
}

/// Prints "N ops, R ops/s" once a second on stderr while the run lasts.
fn progress(done: Arc<AtomicU64>, budget: u64, show: bool) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if !show {
            return;
        }
        let mut last = 0;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = done.load(Ordering::Relaxed).min(budget);
            eprintln!("  {now} ops, {} ops/s", now - last);
            last = now;
        }
    })
}

/// Writes distinct keys with `put` until one is acknowledged, right after a kill; returns
/// the milliseconds from `killed` (taken just before the signal was sent, so the time the
/// kernel takes to tear the process down counts) to that acknowledgement (gives up after
/// 30 s).
async fn first_ack_after_kill<F, Fut>(trial: u32, killed: Instant, mut put: F) -> CliResult<u128>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for i in 0u64.. {
        if put(format!("failover/{trial}/{i}")).await {
            break;
        }
        if killed.elapsed() > Duration::from_secs(30) {
            return Err(anyhow!("trial {trial}: no write acknowledged within 30 s").into());
        }
    }
    Ok(killed.elapsed().as_millis())
}

#[derive(Debug, Serialize)]
pub struct IdleReport {
    pub seconds: u64,
    /// Times any node's term went up (each is an election), and leader changes seen.
    pub elections: u64,
    pub leader_changes: u64,
    pub first_term: u64,
    pub last_term: u64,
    pub polls: u64,
}

/// `bench idle`: an idle scratch cluster must not hold elections. Polls every node's term
/// and leader every 100 ms for the whole duration.
async fn idle(duration_s: u64, global: &Global) -> CliResult {
    let report = idle_count(duration_s, global).await?;
    match global.output {
        Format::Json => print_json(&report),
        Format::Table => {
            println!(
                "idle {} s: {} elections, {} leader changes (term {} -> {}, {} polls of every node)",
                report.seconds,
                report.elections,
                report.leader_changes,
                report.first_term,
                report.last_term,
                report.polls
            );
            Ok(())
        }
    }
}

/// Counts elections and leader changes of an idle cluster over `duration_s`.
pub async fn idle_count(duration_s: u64, global: &Global) -> CliResult<IdleReport> {
    let target = cluster(Target::Reprise, global).await?;
    let client = Client::new(&target.endpoints, ClientOptions::default())?;
    let started = Instant::now();
    let (mut term, mut leader) = (0u64, None);
    let (mut elections, mut leader_changes, mut polls) = (0u64, 0u64, 0u64);
    let mut first_term = None;
    let mut last_report = Instant::now();
    while started.elapsed() < Duration::from_secs(duration_s) {
        for ep in &target.endpoints {
            if let Ok(s) = client.status_of(ep).await {
                first_term.get_or_insert(s.term);
                if s.term > term {
                    if term != 0 {
                        elections += s.term - term;
                    }
                    term = s.term;
                }
                if s.role == "leader" && leader != Some(s.id) {
                    if leader.is_some() {
                        leader_changes += 1;
                    }
                    leader = Some(s.id);
                }
            }
        }
        polls += 1;
        if global.output == Format::Table && last_report.elapsed() > Duration::from_secs(10) {
            eprintln!(
                "  {} s idle: term {term}, {elections} elections, {leader_changes} leader changes",
                started.elapsed().as_secs()
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(IdleReport {
        seconds: duration_s,
        elections,
        leader_changes,
        first_term: first_term.unwrap_or(0),
        last_term: term,
        polls,
    })
}

#[derive(Debug, Serialize)]
struct FailoverReport {
    trials: Vec<u128>,
    median_ms: u128,
    max_ms: u128,
}

async fn failover(trials: u32, global: &Global) -> CliResult {
    report_failover(failover_trials(trials).await?, global)
}

/// kill -9 the Reprise leader `trials` times; each figure is kill → first acknowledged write.
pub async fn failover_trials(trials: u32) -> CliResult<Vec<u128>> {
    let dir =
        crate::scratch_dir::base()?.join(format!("reprise-bench-failover-{}", std::process::id()));
    let mut cluster = local::up(&this_exe()?, &dir, &LocalSpec::new(3, 1))
        .await
        .map_err(anyhow::Error::from)?;
    let writer = cluster.client().map_err(anyhow::Error::from)?;
    let mut measured = Vec::new();
    for trial in 0..trials {
        let leader = local::barrier(&writer).await.map_err(anyhow::Error::from)?;
        let killed = Instant::now();
        cluster.kill9(leader).map_err(anyhow::Error::from)?;
        let took = first_ack_after_kill(trial, killed, |key| {
            let writer = &writer;
            async move { writer.put(key.as_bytes(), b"x").await.is_ok() }
        })
        .await?;
        eprintln!(
            "  trial {}: leader node {leader} killed, first write after {took} ms",
            trial + 1
        );
        measured.push(took);
        cluster.restart(leader).await.map_err(anyhow::Error::from)?;
        wait_caught_up(&cluster, &writer, leader).await?;
    }
    cluster.stop_all();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(measured)
}

fn report_failover(measured: Vec<u128>, global: &Global) -> CliResult {
    let mut sorted = measured.clone();
    sorted.sort_unstable();
    let report = FailoverReport {
        median_ms: sorted.get(sorted.len() / 2).copied().unwrap_or(0),
        max_ms: sorted.last().copied().unwrap_or(0),
        trials: measured,
    };
    match global.output {
        Format::Json => print_json(&report),
        Format::Table => {
            println!(
                "failover over {} trials: median {} ms, max {} ms",
                report.trials.len(),
                report.median_ms,
                report.max_ms
            );
            Ok(())
        }
    }
}

/// `bench failover --target etcd`: kill -9 the etcd leader while a retrying client
/// writes; time to the first acknowledged put; restart the member and wait for a leader
/// everyone agrees on before the next trial.
async fn etcd_failover(trials: u32, global: &Global) -> CliResult {
    report_failover(etcd_failover_trials(trials).await?, global)
}

/// kill -9 the etcd leader `trials` times; each figure is kill → first acknowledged put.
pub async fn etcd_failover_trials(trials: u32) -> CliResult<Vec<u128>> {
    let dir = crate::scratch_dir::base()?.join(format!(
        "reprise-bench-etcd-failover-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let mut cluster = EtcdCluster::start(&dir, 3).await?;
    // Requests stuck on the dead leader are abandoned and retried after 200 ms, so the
    // measurement resolves to about that (the Reprise client fails over on its own).
    let writer = EtcdClient::with_timeout(&cluster.endpoints(), Duration::from_millis(200))?;
    let mut measured = Vec::new();
    let result: CliResult = async {
        for trial in 0..trials {
            let leader = cluster.wait_leader(Duration::from_secs(30)).await?;
            // Make sure the writer's connections are warm before the fault.
            writer
                .put(format!("failover/{trial}/warm").as_bytes(), b"x")
                .await
                .map_err(|e| anyhow!("etcd put before the fault: {}", e.message()))?;
            let killed = Instant::now();
            cluster.kill9(leader)?;
            let took = first_ack_after_kill(trial, killed, |key| {
                let writer = &writer;
                async move { writer.put(key.as_bytes(), b"x").await.is_ok() }
            })
            .await?;
            eprintln!(
                "  trial {}: etcd leader member {} killed, first put after {took} ms",
                trial + 1,
                leader + 1
            );
            measured.push(took);
            cluster.restart(leader)?;
        }
        Ok(())
    }
    .await;
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
    result?;
    Ok(measured)
}

/// Waits until node `id` applied everything the leader had when the wait began, so the
/// next trial starts from a fully replicated cluster.
async fn wait_caught_up(cluster: &LocalCluster, client: &Client, id: u64) -> CliResult {
    let leader = local::barrier(client).await.map_err(anyhow::Error::from)?;
    let leader_addr = cluster.addr(leader).map_err(anyhow::Error::from)?;
    let target = client.status_of(&leader_addr).await?.last_log_index;
    let addr = cluster.addr(id).map_err(anyhow::Error::from)?;
    let started = Instant::now();
    while client.status_of(&addr).await?.applied_index < target {
        if started.elapsed() > Duration::from_secs(30) {
            return Err(anyhow!("node {id} did not catch up within 30 s").into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        load: LoadArgs,
    }

    /// `bench ARGS` as the command line would parse it.
    fn parse(args: &[&str]) -> Result<LoadArgs, String> {
        Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))
            .map(|c| c.load)
            .map_err(|e| e.to_string())
    }

    fn duration_of(args: &[&str]) -> Result<Option<Duration>, String> {
        parse(args).map(|load| load.duration)
    }

    #[test]
    fn a_run_length_is_seconds_or_a_length_with_its_unit() {
        assert_eq!(duration_of(&[]), Ok(None));
        let cases: [(&[&str], Duration); 4] = [
            (&["--duration", "10"], Duration::from_secs(10)),
            (&["--duration", "1500ms"], Duration::from_millis(1500)),
            (&["--duration", "2m"], Duration::from_secs(120)),
            (&["--duration-s", "7"], Duration::from_secs(7)),
        ];
        for (args, expected) in cases {
            assert_eq!(duration_of(args), Ok(Some(expected)), "{args:?}");
        }
    }

    #[test]
    fn keys_have_exactly_the_size_asked_for() {
        assert_eq!(key(7, 16), b"bench/0000000007".to_vec());
        assert_eq!(key(9_999, 16).len(), 16);
        assert_ne!(key(1, 16), key(10, 16));
        assert!(check_key_size(16, 10_000).is_ok());
        assert!(check_key_size(16, 10_000_000_000).is_ok());
        let short = check_key_size(8, 1_000).unwrap_err().to_string();
        assert!(short.contains("--key-size 8 cannot hold 1000"), "{short}");
        assert!(short.contains("at least 9 bytes"), "{short}");
    }

    #[test]
    fn counts_of_zero_and_unknown_workloads_are_refused_when_parsed() {
        assert!(parse(&["--clients", "0"]).is_err());
        assert!(parse(&["--ops", "0"]).is_err());
        assert!(parse(&["--keyspace", "0"]).is_err());
        let bad = parse(&["--workload", "mixed:150"]).unwrap_err();
        assert!(bad.contains("unknown workload"), "{bad}");
        assert!(parse(&["--workload", "mixed:50", "--clients", "1"]).is_ok());
    }

    #[test]
    fn a_warm_up_may_be_zero_and_is_none_unless_asked_for() {
        let warmup_of = |args: &[&str]| parse(args).map(|load| load.warmup);
        assert_eq!(warmup_of(&[]), Ok(Duration::ZERO));
        assert_eq!(warmup_of(&["--warmup", "0"]), Ok(Duration::ZERO));
        assert_eq!(warmup_of(&["--warmup", "2"]), Ok(Duration::from_secs(2)));
        assert_eq!(
            warmup_of(&["--warmup", "500ms"]),
            Ok(Duration::from_millis(500))
        );
        let bad = warmup_of(&["--warmup", "soon"]).unwrap_err();
        assert!(bad.contains("\"soon\" is not a duration"), "{bad}");
    }

    #[test]
    fn a_bad_or_zero_run_length_is_refused_by_name() {
        let bad = duration_of(&["--duration", "ten"]).unwrap_err();
        assert!(bad.contains("\"ten\" is not a duration"), "{bad}");
        let zero = duration_of(&["--duration", "0s"]).unwrap_err();
        assert!(zero.contains("zero"), "{zero}");
    }
}
