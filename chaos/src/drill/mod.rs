//! Drills: start a scratch local cluster, run the workloads, inject the scenario's faults
//! (verifying each happened), execute the recovery steps, run every checker, measure RTO
//! and RPO, and return the report.

pub mod html;
mod quorum_loss;
pub mod report;
pub mod scenario;
mod steps;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reprise_api::{Client, ClientOptions};
use thiserror::Error;

pub use self::report::DrillReport;
use self::report::{Event, FaultRecord};
pub use self::scenario::Scenario;
use crate::backend::local::{self, LocalCluster, LocalError, LocalSpec};
use crate::checker;
use crate::recorder::Recorder;
use crate::workload::{bank, register, set, StopFlag};

/// Why a drill could not run to a report.
#[derive(Debug, Error)]
pub enum DrillError {
    #[error(transparent)]
    Backend(#[from] LocalError),
    #[error("client: {0}")]
    Client(#[from] reprise_api::ClientError),
    #[error("{0}")]
    Stuck(String),
}

/// How to run a drill.
#[derive(Debug, Clone)]
pub struct DrillOptions {
    pub scenario: Scenario,
    pub seed: u64,
    /// The `reprise` binary the nodes run.
    pub exe: PathBuf,
    /// Scratch directory for the cluster.
    pub dir: PathBuf,
    pub nodes_per_site: u32,
    /// Acknowledged operations before the fault, and again after recovery.
    pub ops_per_phase: u64,
    /// Environment of the node processes (planted bugs in checker tests).
    pub node_env: Vec<(String, String)>,
}

const SITES: u32 = 3;
const REGISTER_KEYS: u32 = 6;
const ACCOUNTS: u32 = 8;
const PHASE_DEADLINE: Duration = Duration::from_secs(60);
const LINEARIZABILITY_BUDGET: Duration = Duration::from_secs(60);

/// A running drill: the cluster, the workloads and what has been recorded.
pub(crate) struct Run<'a> {
    pub cluster: LocalCluster,
    pub recorder: Arc<Recorder>,
    pub faults: Vec<FaultRecord>,
    pub timeline: Vec<Event>,
    pub progress: &'a (dyn Fn(&str) + Sync),
}

impl Run<'_> {
    /// Records an injected fault, and whether its injector saw it really happen.
    pub(crate) fn fault(&mut self, kind: &str, target: String, at_ms: u64, verified: bool) {
        self.faults.push(FaultRecord {
            kind: kind.into(),
            target,
            at_ms,
            verified,
        });
    }

    pub(crate) fn event(&mut self, what: impl Into<String>) {
        let what = what.into();
        let at_ms = self.recorder.now_ns() / 1_000_000;
        (self.progress)(&format!("[{:>6} ms] {what}", at_ms));
        self.timeline.push(Event { at_ms, what });
    }

    /// Waits until `n` more operations were acknowledged, reporting progress.
    pub(crate) async fn run_ops(&mut self, n: u64) -> Result<(), DrillError> {
        let target = self.recorder.counts().ok + n;
        let started = Instant::now();
        let mut last_report = Instant::now();
        while self.recorder.counts().ok < target {
            if started.elapsed() > PHASE_DEADLINE {
                return Err(DrillError::Stuck(format!(
                    "fewer than {n} operations acknowledged within {PHASE_DEADLINE:?}"
                )));
            }
            if last_report.elapsed() > Duration::from_secs(1) {
                let c = self.recorder.counts();
                (self.progress)(&format!(
                    "         ops: {} ok, {} failed, {} unknown",
                    c.ok, c.failed, c.unknown
                ));
                last_report = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }
}

fn clients(cluster: &LocalCluster, n: usize) -> Result<Vec<Arc<Client>>, DrillError> {
    let eps: Vec<String> = cluster.file.nodes.iter().map(|n| n.addr.clone()).collect();
    // Short per-request timeouts: a paused node must not stall a workload process for long.
    let opts = ClientOptions {
        deadline: Duration::from_secs(5),
        rpc_timeout: Duration::from_secs(1),
        ..Default::default()
    };
    (0..n)
        .map(|_| Ok(Arc::new(Client::new(&eps, opts.clone())?)))
        .collect()
}

/// Runs one drill to its report. The cluster is stopped whatever happens.
pub async fn run(
    opts: &DrillOptions,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<DrillReport, DrillError> {
    let quorum_loss = opts.scenario == Scenario::QuorumLoss;
    let spec = LocalSpec {
        env: opts.node_env.clone(),
        extra_config: if quorum_loss {
            format!(
                "[archive]\ninterval_ms = {}\n",
                quorum_loss::ARCHIVE_INTERVAL_MS
            )
        } else {
            String::new()
        },
        ..LocalSpec::new(SITES, opts.nodes_per_site)
    };
    progress(&format!(
        "starting a local cluster: {SITES} sites x {} nodes in {}",
        opts.nodes_per_site,
        opts.dir.display()
    ));
    let cluster = local::up(&opts.exe, &opts.dir, &spec).await?;
    let recorder = Arc::new(Recorder::default());
    let mut run = Run {
        cluster,
        recorder: recorder.clone(),
        faults: Vec::new(),
        timeline: Vec::new(),
        progress,
    };
    let setup = run.cluster.client()?;
    bank::open_accounts(&setup, ACCOUNTS).await?;
    let stop = StopFlag::default();
    let set_log = Arc::new(Mutex::new(set::SetLog::default()));
    let bank_reads = Arc::new(Mutex::new(Vec::new()));
    let reg = register::RegisterConfig::new(REGISTER_KEYS, 4, opts.seed);
    let mut tasks = register::spawn(
        clients(&run.cluster, 4)?,
        reg,
        recorder.clone(),
        stop.clone(),
    );
    tasks.extend(set::spawn(
        clients(&run.cluster, 2)?,
        2,
        recorder.clone(),
        set_log.clone(),
        stop.clone(),
    ));
    tasks.extend(bank::spawn(
        clients(&run.cluster, 2)?,
        ACCOUNTS,
        2,
        opts.seed,
        recorder.clone(),
        bank_reads.clone(),
        stop.clone(),
    ));
    run.event("workloads started: registers x4, set x2, bank x2");

    let outcome = if quorum_loss {
        lose_quorum_and_restore(&mut run, opts).await
    } else {
        steps::fault_and_recover(&mut run, opts)
            .await
            .map(|rto| (rto, None))
    };
    stop.stop();
    for t in tasks {
        let _ = t.await;
    }
    let (rto_ms, restored) = outcome?;
    run.event("workloads stopped; final reads and checks");

    // After a restore, the restored cluster is the store: the checks read it.
    let (final_cluster, restored_hlc) = match &restored {
        Some(r) => (&r.cluster, Some(r.hlc)),
        None => (&run.cluster, None),
    };
    let client = final_cluster.client()?;
    if restored.is_none() {
        register::final_reads(&client, reg, &recorder).await;
    }
    let present = set::read_all(&client).await?;
    let sums = steps::converged_checksums(final_cluster).await?;
    let set_log = set_log.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut bank_reads = bank_reads.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if restored.is_some() {
        bank_reads.push(bank::read_all(&client, ACCOUNTS, &recorder).await?);
    }
    let mut ops = recorder.ops();
    if restored.is_some() {
        // Registers are judged on the history the old cluster served; the restored one
        // legitimately lacks the writes after the restore point.
        let fault_ns = run.faults.first().map_or(u64::MAX, |f| f.at_ms * 1_000_000);
        ops.retain(|o| o.invoke_ns < fault_ns);
    }
    let mut checkers = vec![checker::registers::check(
        &ops,
        register::PREFIX,
        LINEARIZABILITY_BUDGET,
    )];
    let (rpo_writes_lost, rpo_ms) = match restored_hlc {
        Some(hlc) => {
            let (result, loss) = checker::restore::check(&set_log, &present, hlc);
            checkers.push(result);
            (loss.writes_lost, Some(loss.rpo_ms))
        }
        None => {
            checkers.push(checker::set::check(&set_log, &present));
            (checker::set::lost_count(&set_log, &present), None)
        }
    };
    checkers.extend([
        checker::bank::check(&bank_reads, ACCOUNTS),
        checker::convergence::check(&sums),
        checker::hlc::check(&recorder.stamps()),
    ]);
    // Writes may be lost only when quorum was (the restore-equality checker judged which).
    let passed = checkers.iter().all(|c| c.passed())
        && run.faults.iter().all(|f| f.verified)
        && !run.faults.is_empty()
        && rto_ms.is_some()
        && (rpo_writes_lost == 0 || quorum_loss);
    Ok(DrillReport {
        scenario: opts.scenario.to_string(),
        seed: opts.seed,
        commit: env!("REPRISE_COMMIT").to_string(),
        sites: SITES,
        nodes_per_site: opts.nodes_per_site,
        duration_ms: recorder.now_ns() / 1_000_000,
        ops: recorder.counts(),
        faults: run.faults.clone(),
        timeline: run.timeline.clone(),
        checkers,
        seconds: report::per_second(&ops),
        rto_ms,
        rpo_writes_lost,
        rpo_ms,
        restored_to_hlc: restored_hlc,
        passed,
    })
}

/// The quorum-loss scenario: backups to each site's vault, a phase of operations, a
/// snapshot backup, another phase, then a majority of sites burns and the store is
/// restored from the vaults into a new cluster.
async fn lose_quorum_and_restore(
    run: &mut Run<'_>,
    opts: &DrillOptions,
) -> Result<(Option<u64>, Option<quorum_loss::Restored>), DrillError> {
    quorum_loss::use_site_vaults(run, &opts.dir).await?;
    run.run_ops(opts.ops_per_phase).await?;
    quorum_loss::backup(run).await?;
    run.run_ops(opts.ops_per_phase).await?;
    let leader = steps::leader(&run.cluster).await?;
    let site = run.cluster.file.node(leader)?.site.clone();
    let restored = quorum_loss::burn_majority_and_restore(run, opts, &site).await?;
    Ok((restored.rto_ms, Some(restored)))
}
