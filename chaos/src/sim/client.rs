//! Simulated clients: the register workload (unique values, so each read maps to one
//! write) and the append-only set, recorded as a history with simulated invocation and
//! completion times; then, once the driver says the cluster converged, the final reads
//! the checkers judge. A client follows the leader the way the real client does: a
//! not-leader answer or a refused connection means "not applied, try the next node"; a
//! request sent without an answer is an unknown outcome.

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::rc::Rc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reprise_storage::NodeId;

use super::plan::{SimPlan, NODES};
use super::wire::{self, CallError, Request, Response};
use crate::history::{Input, Op, Outcome, Output};
use crate::workload::set::SetLog;

/// How long one client operation may take before its outcome is unknown.
const OP_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause before retrying elsewhere after a refusal.
const RETRY_PAUSE: Duration = Duration::from_millis(20);
/// Most nodes one operation tries before it gives up as failed.
const ATTEMPTS_MAX: u32 = 6;
/// Key prefix of the register workload.
pub const REGISTER_PREFIX: &str = "r/";
/// Key prefix of the set workload.
pub const SET_PREFIX: &str = "set/";

/// Where the run is; set by the driver, read by the clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Workload running, faults being injected.
    Load,
    /// Faults healed, workload stopping: each client finishes the operation it is in.
    /// Once none is in flight (`workloads_running` is 0), waiting for the replicas to
    /// converge.
    Converging,
    /// The final reads may run.
    FinalReads,
}

/// What the clients share with the driver.
pub struct Shared {
    pub phase: Cell<Phase>,
    pub ops: RefCell<Vec<Op>>,
    pub set: RefCell<SetLog>,
    /// The set's final contents, once read.
    pub final_set: RefCell<Option<BTreeSet<String>>>,
    /// Why the final reads could not complete, if they could not.
    pub final_error: RefCell<Option<String>>,
    /// Simulated time the workload was told to stop (0 while it runs).
    pub load_ended_ns: Cell<u64>,
    /// Workload clients that have not returned yet. The final reads wait for 0: a write
    /// still in flight when they ran could be acknowledged after them, and would look lost.
    pub workloads_running: Cell<u32>,
    next_id: Cell<u64>,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            phase: Cell::new(Phase::Load),
            ops: RefCell::default(),
            set: RefCell::default(),
            final_set: RefCell::default(),
            final_error: RefCell::default(),
            load_ended_ns: Cell::new(0),
            workloads_running: Cell::new(0),
            next_id: Cell::new(0),
        }
    }
}

fn now_ns() -> u64 {
    turmoil::sim_elapsed()
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

impl Shared {
    fn record(&self, process: u64, key: &str, input: Input, invoke_ns: u64, outcome: Outcome) {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        self.ops.borrow_mut().push(Op {
            id,
            process,
            key: key.to_string(),
            invoke_ns,
            complete_ns: now_ns(),
            input,
            outcome,
        });
    }
}

/// How a routed request ended without an answer to use.
enum Failure {
    /// Certainly not applied.
    NotApplied,
    /// Sent without a usable answer: may or may not have been applied.
    Unknown,
}

/// A client's connection state: which node it believes leads.
struct Router {
    leader: NodeId,
}

impl Router {
    async fn exec(&mut self, req: &Request) -> Result<Response, Failure> {
        let deadline = tokio::time::Instant::now() + OP_TIMEOUT;
        let mut target = self.leader;
        for _ in 0..ATTEMPTS_MAX {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            match wire::call(&wire::host_name(target), req, left).await {
                Ok(Response::NotLeader { leader }) => {
                    target = leader
                        .filter(|l| *l != target)
                        .unwrap_or(target % NODES + 1);
                }
                Ok(Response::Error(_)) | Err(CallError::NoAnswer { .. }) => {
                    self.leader = target % NODES + 1;
                    return Err(Failure::Unknown);
                }
                Err(CallError::NotSent { .. }) => target = target % NODES + 1,
                Ok(resp) => {
                    self.leader = target;
                    return Ok(resp);
                }
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
        self.leader = target;
        Err(Failure::NotApplied)
    }
}

fn register_key(k: u32) -> String {
    format!("{REGISTER_PREFIX}{k}")
}

fn decode_value(bytes: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(bytes).ok().map(u64::from_be_bytes)
}

/// Counts a workload client as running until dropped.
struct Running<'a>(&'a Shared);

impl<'a> Running<'a> {
    fn start(shared: &'a Shared) -> Self {
        shared
            .workloads_running
            .set(shared.workloads_running.get() + 1);
        Running(shared)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let n = self.0.workloads_running.get();
        self.0.workloads_running.set(n.saturating_sub(1));
    }
}

/// One workload client: register writes and reads and set inserts until the load phase ends.
pub async fn workload(shared: Rc<Shared>, plan: SimPlan, process: u64) -> turmoil::Result {
    let _running = Running::start(&shared);
    let mut rng = StdRng::seed_from_u64(plan.seed ^ (process + 1).wrapping_mul(0x9E37_79B9));
    let mut router = Router {
        leader: process % NODES + 1,
    };
    let mut n: u64 = 0;
    while shared.phase.get() == Phase::Load {
        n += 1;
        let invoke = now_ns();
        match rng.random_range(0..10) {
            0..=3 => {
                let key = register_key(rng.random_range(0..plan.keys));
                let value = (process << 32) | n;
                let req = Request::Put {
                    key: key.clone(),
                    value: value.to_be_bytes().to_vec(),
                };
                let outcome = match router.exec(&req).await {
                    Ok(Response::Written) => Outcome::Ok(Output::Write),
                    Ok(_) | Err(Failure::Unknown) => Outcome::Unknown,
                    Err(Failure::NotApplied) => Outcome::Failed,
                };
                shared.record(process, &key, Input::Write(value), invoke, outcome);
            }
            4..=7 => {
                let key = register_key(rng.random_range(0..plan.keys));
                let outcome = match router.exec(&Request::Get { key: key.clone() }).await {
                    Ok(Response::Value(v)) => match v.as_deref().map(decode_value) {
                        None => Outcome::Ok(Output::Read(None)),
                        Some(Some(x)) => Outcome::Ok(Output::Read(Some(x))),
                        // Not a value any client wrote: record it so the checker sees it.
                        Some(None) => Outcome::Ok(Output::Read(Some(u64::MAX))),
                    },
                    // A read changes nothing: without an answer it simply did not happen.
                    _ => Outcome::Failed,
                };
                shared.record(process, &key, Input::Read, invoke, outcome);
            }
            _ => {
                let key = format!("{SET_PREFIX}{process}-{n}");
                shared.set.borrow_mut().attempted.insert(key.clone());
                let req = Request::Put {
                    key: key.clone(),
                    value: Vec::new(),
                };
                if let Ok(Response::Written) = router.exec(&req).await {
                    shared.set.borrow_mut().acked.insert(key);
                }
            }
        }
        let think = rng.random_range(0..=plan.think_ms_max);
        tokio::time::sleep(Duration::from_millis(think)).await;
    }
    Ok(())
}

/// Waits for the final-reads phase, then reads every register and the whole set.
pub async fn final_reads(shared: Rc<Shared>, plan: SimPlan, process: u64) -> turmoil::Result {
    while shared.phase.get() != Phase::FinalReads {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut router = Router { leader: 1 };
    for k in 0..plan.keys {
        let key = register_key(k);
        let invoke = now_ns();
        match read_until_answered(&mut router, Request::Get { key: key.clone() }).await {
            Some(Response::Value(v)) => {
                let value = v.as_deref().map(|b| decode_value(b).unwrap_or(u64::MAX));
                shared.record(
                    process,
                    &key,
                    Input::Read,
                    invoke,
                    Outcome::Ok(Output::Read(value)),
                );
            }
            other => {
                *shared.final_error.borrow_mut() = Some(format!("final read of {key}: {other:?}"));
                return Ok(());
            }
        }
    }
    let scan = Request::Scan {
        prefix: SET_PREFIX.to_string(),
    };
    match read_until_answered(&mut router, scan).await {
        Some(Response::Keys(keys)) => {
            *shared.final_set.borrow_mut() = Some(keys.into_iter().collect())
        }
        other => {
            *shared.final_error.borrow_mut() = Some(format!("final scan of the set: {other:?}"))
        }
    }
    Ok(())
}

/// A read retried (reads change nothing) for up to 10 simulated seconds.
async fn read_until_answered(router: &mut Router, req: Request) -> Option<Response> {
    for _ in 0..10 {
        if let Ok(resp) = router.exec(&req).await {
            return Some(resp);
        }
    }
    None
}
