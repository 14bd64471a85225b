//! The deterministic simulation tier in `cargo test`: a sweep of seeds over the fault
//! catalogue of the simulation must pass every checker with every fault verified; a seed
//! must replay to the identical history; and the planted "acknowledged before fsync" bug
//! must be caught by the checkers, with the offending operations listed.

use reprise_chaos::checker::Verdict;
use reprise_chaos::sim::disk::SimBug;
use reprise_chaos::sim::plan::{ScheduledFault, SimFault, SimPlan};
use reprise_chaos::sim::{run_plan, run_seed, SimReport, REPLAYABLE};

/// Seeds every `cargo test` runs (a larger sweep: `reprise chaos sim --seeds N`).
const SWEEP_SEEDS: u64 = 36;

fn explain(report: &SimReport) -> String {
    format!(
        "{}\n{}\n{}",
        report.problems().join("\n"),
        serde_json::to_string_pretty(&report.faults).unwrap_or_default(),
        report.reproduce_with()
    )
}

#[test]
fn a_sweep_of_seeds_passes_every_checker_with_every_fault_verified() {
    let mut failures = Vec::new();
    let mut kinds = std::collections::BTreeSet::new();
    for seed in 1..=SWEEP_SEEDS {
        let report = run_seed(seed, None);
        assert!(
            report.ops.ok > 50,
            "seed {seed} barely ran: {:?}",
            report.ops
        );
        kinds.extend(report.faults.iter().map(|f| f.scheduled.fault.name()));
        if !report.passed() {
            failures.push(explain(&report));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert_eq!(
        kinds.len(),
        6,
        "the sweep must exercise every simulated fault kind, got {kinds:?}"
    );
}

#[test]
fn a_seed_replays_to_the_identical_history() {
    // A build setting (a RUSTFLAGS variable replaces .cargo/config.toml's), read at run time.
    assert!(
        std::hint::black_box(REPLAYABLE),
        "built without the tokio_unstable cfg of .cargo/config.toml"
    );
    for seed in [3, 13, 28] {
        let first = run_seed(seed, None);
        let again = run_seed(seed, None);
        assert_eq!(first.fingerprint, again.fingerprint, "seed {seed}");
        assert_eq!(first.ops, again.ops, "seed {seed}");
        assert_eq!(first.simulated_ms, again.simulated_ms, "seed {seed}");
    }
    assert_ne!(run_seed(3, None).fingerprint, run_seed(4, None).fingerprint);
}

/// Node 3's site is cut off while nodes 1 and 2 take writes; then 1 and 2 lose power.
/// Only they held the newest writes, so whatever they acknowledged must have been fsynced.
fn power_loss_of_the_quorum(seed: u64) -> SimPlan {
    SimPlan {
        seed,
        clients: 3,
        keys: 2,
        min_latency_ms: 1,
        max_latency_ms: 3,
        // A slow disk: with the bug, every write of the last 25 ms is acknowledged yet volatile.
        fsync_ms: 25,
        think_ms_max: 2,
        faults: vec![
            ScheduledFault {
                at_ms: 800,
                lasts_ms: 3_000,
                fault: SimFault::Isolate { node: 3 },
            },
            // Late enough that the clients left node 3 for the new leader.
            ScheduledFault {
                at_ms: 2_600,
                lasts_ms: 400,
                fault: SimFault::PowerLoss { nodes: vec![1, 2] },
            },
        ],
    }
}

#[test]
fn acknowledging_before_fsync_is_caught_as_lost_writes_and_the_correct_code_is_not() {
    for seed in [1, 2] {
        let honest = run_plan(power_loss_of_the_quorum(seed), None);
        assert!(honest.passed(), "{}", explain(&honest));

        let planted = run_plan(power_loss_of_the_quorum(seed), Some(SimBug::AckBeforeFsync));
        assert!(
            !planted.passed(),
            "seed {seed}: the planted bug went unnoticed: {}",
            serde_json::to_string_pretty(&planted.faults).unwrap_or_default()
        );
        let failed: Vec<_> = planted
            .checkers
            .iter()
            .filter_map(|c| match &c.verdict {
                Verdict::Fail { details } => Some((c.checker.as_str(), details)),
                _ => None,
            })
            .collect();
        assert!(
            !failed.is_empty(),
            "seed {seed}: no checker reported an anomaly: {}",
            explain(&planted)
        );
        for (checker, details) in failed {
            // The offending operations or keys are listed.
            assert!(
                details
                    .iter()
                    .any(|d| d.contains("r/") || d.contains("set/")),
                "{checker}: {details:?}"
            );
        }
        assert!(planted.reproduce_with().ends_with("--bug ack-before-fsync"));
    }
}
