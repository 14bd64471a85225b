//! The deterministic simulation tier: a 3-site cluster, its clients and its faults run in
//! one process on turmoil's simulated network and clock. Everything a run does comes from
//! its seed ([`plan::SimPlan`]): workload, latencies, fsync time, faults and their times,
//! openraft's election timeouts (`reprise_storage::runtime`) and tokio's scheduling choices
//! (turmoil seeds each host's runtime; needs the `tokio_unstable` cfg of
//! `.cargo/config.toml`). So a failing seed replays: `reprise chaos sim --seed S`.
//!
//! Real code under test: openraft, the state machine and its commands, the HLC, the
//! read-index barrier, and the checkers. Simulated: the network ([`net`], [`wire`]), the
//! log's disk with explicit fsync ([`disk`]) and the clients ([`client`]). Not covered:
//! snapshots and the write batching of the real node (its proposer needs the real server).

pub mod client;
pub mod disk;
pub mod host;
pub mod net;
pub mod plan;
pub mod wire;

use std::cell::RefCell;
use std::hash::{Hash, Hasher};
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;

use self::client::{Phase, Shared, REGISTER_PREFIX};
use self::disk::{SimBug, SimDisk};
use self::host::NodeSlot;
use self::plan::{ScheduledFault, SimFault, SimPlan, NODES};
use crate::checker::convergence::NodeChecksum;
use crate::checker::{convergence, registers, set, CheckerResult};
use crate::history::Outcome;
use crate::recorder::OpCounts;

/// Whether tokio takes its scheduling randomness from the simulation's seed: only with the
/// `tokio_unstable` cfg (`.cargo/config.toml`). Without it runs still check everything but a
/// seed may not replay exactly.
pub const REPLAYABLE: bool = cfg!(tokio_unstable);

/// Simulated time the cluster gets to settle after the last fault before the workload stops.
const SETTLE_MS: u64 = 500;
/// Longest the replicas may take to converge once everything is healed.
const CONVERGE_MS_MAX: u64 = 20_000;
/// Time budget of the linearizability search per run.
const CHECK_BUDGET: Duration = Duration::from_secs(20);
/// A run that has not finished after this much simulated time fails.
const SIMULATION_MAX: Duration = Duration::from_secs(600);

/// What happened to one scheduled fault.
#[derive(Debug, Clone, Serialize)]
pub struct FaultRecord {
    #[serde(flatten)]
    pub scheduled: ScheduledFault,
    /// Whether the fault demonstrably took effect (see `evidence`).
    pub verified: bool,
    pub evidence: String,
}

/// The result of one simulated run.
#[derive(Debug, Clone, Serialize)]
pub struct SimReport {
    pub seed: u64,
    pub plan: SimPlan,
    pub bug: Option<SimBug>,
    pub ops: OpCounts,
    /// Longest stretch of the workload without any acknowledged operation (availability).
    pub longest_gap_ms: u64,
    pub set_inserts_attempted: usize,
    pub set_inserts_acked: usize,
    pub faults: Vec<FaultRecord>,
    pub checkers: Vec<CheckerResult>,
    pub simulated_ms: u64,
    /// Hash of the whole recorded history: equal for two runs of one seed.
    pub fingerprint: String,
    /// Why the simulation itself failed (a host's software errored, or it never ended).
    pub error: Option<String>,
}

impl SimReport {
    /// No error, every fault verified, every checker passed.
    pub fn passed(&self) -> bool {
        self.error.is_none()
            && self.faults.iter().all(|f| f.verified)
            && self.checkers.iter().all(|c| c.passed())
    }

    /// The command that replays this run.
    pub fn reproduce_with(&self) -> String {
        let bug = match self.bug {
            Some(SimBug::AckBeforeFsync) => " --bug ack-before-fsync",
            None => "",
        };
        format!(
            "REPRODUCE WITH: reprise chaos sim --seed {}{bug}",
            self.seed
        )
    }

    /// Every reason the run did not pass, one per line.
    pub fn problems(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .error
            .iter()
            .map(|e| format!("simulation: {e}"))
            .collect();
        for f in self.faults.iter().filter(|f| !f.verified) {
            out.push(format!(
                "fault {} at {} ms not verified: {}",
                f.scheduled.fault.name(),
                f.scheduled.at_ms,
                f.evidence
            ));
        }
        for c in self.checkers.iter().filter(|c| !c.passed()) {
            out.push(format!(
                "checker {}: {:?} ({})",
                c.checker, c.verdict, c.summary
            ));
        }
        out
    }
}

/// Runs the plan of `seed`.
pub fn run_seed(seed: u64, bug: Option<SimBug>) -> SimReport {
    run_plan(SimPlan::from_seed(seed), bug)
}

thread_local! {
    /// The message of the last panic on this thread (see [`record_panics`]).
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Chains a panic hook that remembers each panic's message and place on its thread, so a
/// run that a node's panic ended (openraft's own assertions, for one) can say why.
fn record_panics() {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let place = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".into());
            LAST_PANIC.with(|p| {
                let mut p = p.borrow_mut();
                // Keep the first (root) panic; the runtime's own "a task panicked" follows.
                if p.is_none() {
                    *p = Some(format!("{message}{place}"));
                }
            });
            previous(info);
        }));
    });
}

/// Runs `plan` (tests build plans by hand; the CLI derives them from seeds). A panic
/// anywhere in the simulated cluster ends the run as a failure naming the panic; what was
/// recorded until then is still judged.
pub fn run_plan(plan: SimPlan, bug: Option<SimBug>) -> SimReport {
    record_panics();
    LAST_PANIC.with(|p| p.borrow_mut().take());
    let mut report = SimReport {
        seed: plan.seed,
        plan: plan.clone(),
        bug,
        ops: OpCounts::default(),
        longest_gap_ms: 0,
        set_inserts_attempted: 0,
        set_inserts_acked: 0,
        faults: Vec::new(),
        checkers: Vec::new(),
        simulated_ms: 0,
        fingerprint: String::new(),
        error: None,
    };
    let shared = Rc::new(Shared::default());
    let mut driver = Driver {
        faults: plan
            .faults
            .iter()
            .map(|f| FaultRun {
                scheduled: f.clone(),
                state: FaultState::Pending,
                verified: false,
                evidence: "never injected".into(),
            })
            .collect(),
        clients: Vec::new(),
        sums: Vec::new(),
        converge_note: None,
        simulated_ms: 0,
    };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        simulate(&plan, bug, &shared, &mut driver)
    }));
    report.error = match outcome {
        Ok(result) => result.err(),
        Err(_) => Some(format!(
            "a simulated node panicked: {}",
            LAST_PANIC
                .with(|p| p.borrow_mut().take())
                .unwrap_or_else(|| "unknown panic".into())
        )),
    };
    report.simulated_ms = driver.simulated_ms;
    report.faults = driver
        .faults
        .into_iter()
        .map(|f| FaultRecord {
            scheduled: f.scheduled,
            verified: f.verified,
            evidence: f.evidence,
        })
        .collect();
    judge(&mut report, &shared, driver.sums, driver.converge_note);
    report
}

/// Drives the simulation until every client finished; Err says why it could not.
fn simulate(
    plan: &SimPlan,
    bug: Option<SimBug>,
    shared: &Rc<Shared>,
    driver: &mut Driver,
) -> Result<(), String> {
    let dir = tempfile::Builder::new()
        .prefix("reprise-sim-")
        .tempdir()
        .map_err(|e| format!("create a scratch directory: {e}"))?;
    let _simulation = reprise_storage::runtime::enter_simulation(plan.seed);
    let mut sim = turmoil::Builder::new()
        .rng_seed(plan.seed)
        .epoch(UNIX_EPOCH + Duration::from_secs(1_800_000_000))
        .tick_duration(Duration::from_millis(1))
        .min_message_latency(Duration::from_millis(plan.min_latency_ms))
        .max_message_latency(Duration::from_millis(plan.max_latency_ms))
        .simulation_duration(SIMULATION_MAX)
        // A held or partitioned node sees connection attempts pile up; the default
        // backlog of 64 is a turmoil panic, not a fault of ours.
        .tcp_capacity(1 << 16)
        .build();
    let slots: Vec<Rc<NodeSlot>> = (1..=NODES)
        .map(|id| {
            Rc::new(NodeSlot {
                id,
                disk: SimDisk::default(),
                live: RefCell::new(None),
                dir: dir.path().to_path_buf(),
                incarnations: RefCell::new(0),
                fsync: Duration::from_millis(plan.fsync_ms),
                bug,
            })
        })
        .collect();
    for slot in &slots {
        let slot = slot.clone();
        sim.host(wire::host_name(slot.id), move || host::run(slot.clone()));
    }
    for process in 0..u64::from(plan.clients) {
        let name = format!("client-{process}");
        sim.client(
            name.as_str(),
            client::workload(shared.clone(), plan.clone(), process),
        );
        driver.clients.push(name);
    }
    let reader = u64::from(plan.clients);
    sim.client(
        "final-reader",
        client::final_reads(shared.clone(), plan.clone(), reader),
    );
    driver.clients.push("final-reader".into());

    let faults_end = plan.faults_end_ms();
    let mut converging_since = None;
    let result = loop {
        let now_ms = sim.elapsed().as_millis() as u64;
        driver.simulated_ms = now_ms;
        driver.inject_and_heal(&mut sim, &slots, now_ms);
        if shared.phase.get() == Phase::Load
            && driver.all_healed()
            && now_ms >= faults_end + SETTLE_MS
        {
            shared.phase.set(Phase::Converging);
            shared.load_ended_ns.set(now_ms * 1_000_000);
            converging_since = Some(now_ms);
        }
        if let Some(since) = converging_since.filter(|_| now_ms.is_multiple_of(20)) {
            if shared.phase.get() == Phase::Converging {
                if shared.workloads_running.get() > 0 {
                    // A client is still finishing its last operation.
                    if now_ms - since > CONVERGE_MS_MAX {
                        driver.converge_note = Some(format!(
                            "workload clients still had operations in flight {CONVERGE_MS_MAX} ms after the load ended"
                        ));
                        shared.phase.set(Phase::FinalReads);
                    }
                } else if let Some(sums) = converged(&mut sim, &slots) {
                    driver.sums = sums;
                    shared.phase.set(Phase::FinalReads);
                } else if now_ms - since > CONVERGE_MS_MAX {
                    driver.converge_note = Some(format!(
                        "replicas did not converge within {CONVERGE_MS_MAX} ms after the last fault healed"
                    ));
                    shared.phase.set(Phase::FinalReads);
                }
            }
        }
        match sim.step() {
            Ok(true) => break Ok(()),
            Ok(false) => {}
            Err(e) => break Err(e.to_string()),
        }
    };
    driver.simulated_ms = sim.elapsed().as_millis() as u64;
    result
}

/// Runs every checker over what the clients recorded.
fn judge(
    report: &mut SimReport,
    shared: &Shared,
    sums: Vec<NodeChecksum>,
    converge_note: Option<String>,
) {
    let ops = shared.ops.borrow();
    for op in ops.iter() {
        match op.outcome {
            Outcome::Ok(_) => report.ops.ok += 1,
            Outcome::Failed => report.ops.failed += 1,
            Outcome::Unknown => report.ops.unknown += 1,
        }
    }
    let load_ended = match shared.load_ended_ns.get() {
        0 => u64::MAX,
        t => t,
    };
    let mut acked: Vec<u64> = ops
        .iter()
        .filter(|o| matches!(o.outcome, Outcome::Ok(_)) && o.complete_ns <= load_ended)
        .map(|o| o.complete_ns)
        .collect();
    acked.sort_unstable();
    report.longest_gap_ms = acked.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0) / 1_000_000;
    let set_log = shared.set.borrow();
    report.set_inserts_attempted = set_log.attempted.len();
    report.set_inserts_acked = set_log.acked.len();
    report
        .checkers
        .push(registers::check(&ops, REGISTER_PREFIX, CHECK_BUDGET));
    let final_set = shared.final_set.borrow();
    report.checkers.push(match final_set.as_ref() {
        Some(present) => set::check(&set_log, present),
        None => CheckerResult {
            checker: "lost-writes".into(),
            verdict: crate::checker::Verdict::Unknown {
                reason: shared
                    .final_error
                    .borrow()
                    .clone()
                    .unwrap_or_else(|| "the set was never read back".into()),
            },
            summary: format!("{} acknowledged inserts not checked", set_log.acked.len()),
        },
    });
    let mut conv = convergence::check(&sums);
    if let Some(note) = converge_note {
        conv.verdict = crate::checker::Verdict::Unknown { reason: note };
    }
    report.checkers.push(conv);
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for op in ops.iter() {
        (op.id, op.process, &op.key, op.invoke_ns, op.complete_ns).hash(&mut hasher);
        format!("{:?}{:?}", op.input, op.outcome).hash(&mut hasher);
    }
    set_log.acked.hash(&mut hasher);
    final_set.hash(&mut hasher);
    report.fingerprint = format!("{:016x}", hasher.finish());
}

/// Checksums of every node once all of them applied the whole log of a settled leader.
fn converged(sim: &mut turmoil::Sim<'_>, slots: &[Rc<NodeSlot>]) -> Option<Vec<NodeChecksum>> {
    let mut leaders = Vec::new();
    let mut applied = Vec::new();
    let mut last_log = 0;
    for slot in slots {
        if !sim.is_host_running(wire::host_name(slot.id)) {
            return None;
        }
        let live = slot.live.borrow().clone()?;
        let m = live.raft.metrics().borrow().clone();
        leaders.push(m.current_leader?);
        applied.push(m.last_applied.map(|l| l.index).unwrap_or(0));
        last_log = last_log.max(m.last_log_index.unwrap_or(0));
    }
    if leaders.windows(2).any(|w| w[0] != w[1]) || applied.iter().any(|a| *a != last_log) {
        return None;
    }
    let mut sums = Vec::new();
    for slot in slots {
        let live = slot.live.borrow().clone()?;
        let sum = live.view.checksum().ok()?;
        sums.push(NodeChecksum {
            node: slot.id,
            applied_index: sum.applied_index,
            digest: sum.hex(),
        });
    }
    Some(sums)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FaultState {
    Pending,
    /// Injected; where the victim stood then and, once half the window passed, at that point.
    Active(Progress, Option<Progress>),
    Healed,
}

struct FaultRun {
    scheduled: ScheduledFault,
    state: FaultState,
    verified: bool,
    evidence: String,
}

struct Driver {
    faults: Vec<FaultRun>,
    clients: Vec<String>,
    sums: Vec<NodeChecksum>,
    converge_note: Option<String>,
    simulated_ms: u64,
}

/// Where a running node's Raft stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Progress {
    term: u64,
    applied: u64,
    last_log: u64,
    leading: bool,
}

fn progress(slot: &NodeSlot) -> Option<Progress> {
    let live = slot.live.borrow().clone()?;
    let m = live.raft.metrics().borrow().clone();
    Some(Progress {
        term: m.current_term,
        applied: m.last_applied.map(|l| l.index).unwrap_or(0),
        last_log: m.last_log_index.unwrap_or(0),
        leading: m.current_leader == Some(slot.id),
    })
}

/// One line with every node's term, log, applied index and role.
fn describe(slots: &[Rc<NodeSlot>]) -> String {
    slots
        .iter()
        .map(|slot| match progress(slot) {
            Some(p) => format!(
                "node-{}: term {} log {} applied {}{}",
                slot.id,
                p.term,
                p.last_log,
                p.applied,
                if p.leading { " leader" } else { "" }
            ),
            None => format!("node-{}: down", slot.id),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

impl Driver {
    fn all_healed(&self) -> bool {
        self.faults.iter().all(|f| f.state == FaultState::Healed)
    }

    fn inject_and_heal(&mut self, sim: &mut turmoil::Sim<'_>, slots: &[Rc<NodeSlot>], now_ms: u64) {
        let clients = self.clients.clone();
        for run in &mut self.faults {
            let s = &run.scheduled;
            match run.state {
                FaultState::Pending if now_ms >= s.at_ms => {
                    let before = s
                        .fault
                        .victims()
                        .first()
                        .and_then(|v| progress(&slots[(*v - 1) as usize]))
                        .unwrap_or_default();
                    inject(sim, slots, &clients, run);
                    run.state = FaultState::Active(before, None);
                }
                FaultState::Active(before, None) if now_ms >= s.at_ms + s.lasts_ms / 2 => {
                    let victim = s.fault.victims()[0];
                    let mid = progress(&slots[(victim - 1) as usize]).unwrap_or_default();
                    run.state = FaultState::Active(before, Some(mid));
                }
                FaultState::Active(before, mid) if now_ms >= s.at_ms + s.lasts_ms => {
                    heal(sim, slots, &clients, run, before, mid.unwrap_or_default());
                    run.state = FaultState::Healed;
                }
                _ => {}
            }
        }
    }
}

fn others(node: u64) -> Vec<String> {
    (1..=NODES)
        .filter(|n| *n != node)
        .map(wire::host_name)
        .collect()
}

fn inject(
    sim: &mut turmoil::Sim<'_>,
    slots: &[Rc<NodeSlot>],
    clients: &[String],
    run: &mut FaultRun,
) {
    match &run.scheduled.fault {
        SimFault::Kill { node } => {
            let host = wire::host_name(*node);
            let slot = &slots[(*node - 1) as usize];
            slot.disk.kill();
            sim.crash(host.as_str());
            *slot.live.borrow_mut() = None;
            run.verified = !sim.is_host_running(host.as_str());
            run.evidence = format!("{host} stopped with its page cache kept");
        }
        SimFault::PowerLoss { nodes } => {
            let mut lost = Vec::new();
            let mut stopped = true;
            for node in nodes {
                let host = wire::host_name(*node);
                let slot = &slots[(*node - 1) as usize];
                sim.crash(host.as_str());
                *slot.live.borrow_mut() = None;
                lost.push(format!(
                    "{host} lost {} unsynced entries",
                    slot.disk.power_loss()
                ));
                stopped &= !sim.is_host_running(host.as_str());
            }
            run.verified = stopped;
            run.evidence = lost.join(", ");
        }
        SimFault::Isolate { node } => {
            let host = wire::host_name(*node);
            for other in others(*node) {
                sim.partition(host.as_str(), other.as_str());
            }
        }
        SimFault::DiskFull { node } => {
            let slot = &slots[(*node - 1) as usize];
            slot.disk.set_full(true);
            run.evidence = format!("{} has no space left", wire::host_name(*node));
        }
        SimFault::PartitionInto { node } => {
            let host = wire::host_name(*node);
            for other in others(*node) {
                sim.partition_oneway(other.as_str(), host.as_str());
            }
        }
        SimFault::Hold { node } => {
            let host = wire::host_name(*node);
            for other in others(*node).iter().chain(clients) {
                sim.hold(host.as_str(), other.as_str());
            }
        }
    }
}

fn heal(
    sim: &mut turmoil::Sim<'_>,
    slots: &[Rc<NodeSlot>],
    clients: &[String],
    run: &mut FaultRun,
    before: Progress,
    mid: Progress,
) {
    let fault = run.scheduled.fault.clone();
    if let SimFault::DiskFull { node } = &fault {
        let (host, slot) = (wire::host_name(*node), &slots[(*node - 1) as usize]);
        let refused = slot.disk.refused_writes();
        let stopped = slot
            .live
            .borrow()
            .as_ref()
            .and_then(|l| l.raft.metrics().borrow().running_state.clone().err());
        run.verified = refused > 0 && stopped.is_some();
        run.evidence = match stopped {
            Some(fatal) => format!("{host} refused {refused} writes and its Raft stopped: {fatal}"),
            None => format!("{host} refused {refused} writes but its Raft kept running"),
        };
        // The operator frees space and restarts the node.
        slot.disk.set_full(false);
        sim.bounce(host.as_str());
        *slot.live.borrow_mut() = None;
        if !sim.is_host_running(host.as_str()) {
            run.verified = false;
            run.evidence.push_str("; it did not restart");
        }
        return;
    }
    if let SimFault::Kill { .. } | SimFault::PowerLoss { .. } = &fault {
        let mut all_up = true;
        for v in fault.victims() {
            let host = wire::host_name(v);
            sim.bounce(host.as_str());
            all_up &= sim.is_host_running(host.as_str());
        }
        run.verified &= all_up;
        if !all_up {
            run.evidence.push_str("; a victim did not restart");
        }
        return;
    }
    let victim = fault.victims()[0];
    let host = wire::host_name(victim);
    // Evidence before healing: the victim lost touch with the leader (it campaigned in a
    // higher term), fell behind the others, or, as leader, could not commit what it
    // appended for the second half of the window (it heard no acknowledgements).
    let victim_now = progress(&slots[(victim - 1) as usize]);
    let others_applied = (1..=NODES)
        .filter(|n| *n != victim)
        .filter_map(|n| progress(&slots[(n - 1) as usize]).map(|p| p.applied))
        .max()
        .unwrap_or(0);
    let cluster = describe(slots);
    (run.verified, run.evidence) = match victim_now {
        Some(p) if p.term > before.term => (
            true,
            format!("{host} campaigned: term {} -> {} [{cluster}]", before.term, p.term),
        ),
        Some(p) if p.applied < others_applied => (
            true,
            format!("{host} fell behind: applied {} against {others_applied} [{cluster}]", p.applied),
        ),
        Some(p) if p.leading && mid.leading && p.applied == mid.applied && p.last_log > p.applied => (
            true,
            format!(
                "{host} led but committed nothing in the second half of the fault: log {} -> {}, applied stayed {} [{cluster}]",
                mid.last_log, p.last_log, p.applied
            ),
        ),
        Some(_) => (false, format!("{host} kept up [{cluster}]")),
        None => (false, format!("{host} was not running [{cluster}]")),
    };
    match &fault {
        SimFault::Isolate { .. } => {
            for other in others(victim) {
                sim.repair(host.as_str(), other.as_str());
            }
        }
        SimFault::PartitionInto { .. } => {
            for other in others(victim) {
                sim.repair_oneway(other.as_str(), host.as_str());
            }
        }
        SimFault::Hold { .. } => {
            for other in others(victim).iter().chain(clients) {
                sim.release(host.as_str(), other.as_str());
            }
        }
        SimFault::Kill { .. } | SimFault::PowerLoss { .. } | SimFault::DiskFull { .. } => {}
    }
}
