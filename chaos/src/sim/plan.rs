//! What one simulated run does, derived entirely from its seed: how many clients and keys,
//! network latency and disk fsync latency, and the fault schedule. The same seed always
//! yields the same plan, so `reprise chaos sim --seed S` replays a run.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

/// Number of simulated nodes, one per site.
pub const NODES: u64 = 3;

/// One injected fault of a simulated run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SimFault {
    /// The node's process dies (kill -9): writes not yet fsynced stay in the page cache.
    Kill { node: u64 },
    /// The nodes lose power at once: writes not yet fsynced are lost.
    PowerLoss { nodes: Vec<u64> },
    /// The node's site is cut off from the other sites in both directions.
    Isolate { node: u64 },
    /// Messages from the other sites into the node's site are dropped; it can still send.
    PartitionInto { node: u64 },
    /// Messages to and from the node are held, then delivered at once (a paused process,
    /// as its peers see it).
    Hold { node: u64 },
    /// The node's disk fills up: its log refuses writes, which stops its Raft. Healed by
    /// freeing space and restarting the node, as an operator would.
    DiskFull { node: u64 },
}

impl SimFault {
    /// Nodes the fault acts on.
    pub fn victims(&self) -> Vec<u64> {
        match self {
            SimFault::PowerLoss { nodes } => nodes.clone(),
            SimFault::Kill { node }
            | SimFault::Isolate { node }
            | SimFault::PartitionInto { node }
            | SimFault::Hold { node }
            | SimFault::DiskFull { node } => vec![*node],
        }
    }

    /// Short name for summaries.
    pub fn name(&self) -> &'static str {
        match self {
            SimFault::Kill { .. } => "kill",
            SimFault::PowerLoss { .. } => "power-loss",
            SimFault::Isolate { .. } => "isolate",
            SimFault::PartitionInto { .. } => "partition-into",
            SimFault::Hold { .. } => "hold",
            SimFault::DiskFull { .. } => "disk-full",
        }
    }
}

/// A fault and its window in simulated time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScheduledFault {
    pub at_ms: u64,
    pub lasts_ms: u64,
    pub fault: SimFault,
}

/// Everything a run does, derived from `seed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SimPlan {
    pub seed: u64,
    /// Concurrent clients of the register and set workloads.
    pub clients: u32,
    /// Register keys the clients share.
    pub keys: u32,
    /// One-way message latency range between hosts.
    pub min_latency_ms: u64,
    pub max_latency_ms: u64,
    /// Time one log fsync takes on every node.
    pub fsync_ms: u64,
    /// Pause between a client's operations, at most.
    pub think_ms_max: u64,
    pub faults: Vec<ScheduledFault>,
}

/// Time before the first fault: the cluster elects a leader and takes writes first.
const WARMUP_MS: u64 = 800;

impl SimPlan {
    /// The plan of `seed`.
    pub fn from_seed(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let min_latency_ms = rng.random_range(1..=3);
        let max_latency_ms = min_latency_ms + rng.random_range(1..=12);
        let mut faults = Vec::new();
        let mut at_ms = WARMUP_MS;
        for _ in 0..rng.random_range(2..=4) {
            let node = rng.random_range(1..=NODES);
            let fault = match rng.random_range(0..7) {
                0 => SimFault::Kill { node },
                1 => SimFault::PowerLoss { nodes: vec![node] },
                2 => SimFault::PowerLoss {
                    nodes: vec![node, node % NODES + 1],
                },
                3 => SimFault::Isolate { node },
                4 => SimFault::PartitionInto { node },
                5 => SimFault::DiskFull { node },
                _ => SimFault::Hold { node },
            };
            let lasts_ms = rng.random_range(1_000..=2_000);
            faults.push(ScheduledFault {
                at_ms,
                lasts_ms,
                fault,
            });
            at_ms += lasts_ms + rng.random_range(400..=900);
        }
        SimPlan {
            seed,
            clients: rng.random_range(2..=4),
            keys: rng.random_range(2..=4),
            min_latency_ms,
            max_latency_ms,
            fsync_ms: rng.random_range(1..=6),
            think_ms_max: rng.random_range(0..=20),
            faults,
        }
    }

    /// Simulated time at which the last fault is healed.
    pub fn faults_end_ms(&self) -> u64 {
        self.faults
            .iter()
            .map(|f| f.at_ms + f.lasts_ms)
            .max()
            .unwrap_or(WARMUP_MS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_always_yields_the_same_plan_and_seeds_differ() {
        assert_eq!(SimPlan::from_seed(42), SimPlan::from_seed(42));
        let distinct: std::collections::BTreeSet<String> = (0..20)
            .map(|s| format!("{:?}", SimPlan::from_seed(s)))
            .collect();
        assert_eq!(distinct.len(), 20);
    }

    #[test]
    fn fault_windows_never_overlap_and_every_victim_exists() {
        for seed in 0..200 {
            let plan = SimPlan::from_seed(seed);
            for pair in plan.faults.windows(2) {
                assert!(
                    pair[0].at_ms + pair[0].lasts_ms < pair[1].at_ms,
                    "seed {seed}"
                );
            }
            for f in &plan.faults {
                let victims = f.fault.victims();
                assert!(
                    victims.iter().all(|v| (1..=NODES).contains(v)),
                    "seed {seed}"
                );
                let mut unique = victims.clone();
                unique.dedup();
                assert_eq!(unique.len(), victims.len(), "seed {seed}");
            }
        }
    }
}
