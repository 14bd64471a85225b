//! The drill report: scenario, seed, commit, operations by outcome, faults injected (and
//! whether each was verified to have happened), a timeline, checker verdicts, RTO and RPO.

use serde::Serialize;

use crate::checker::CheckerResult;
use crate::recorder::OpCounts;

/// One injected fault.
#[derive(Debug, Clone, Serialize)]
pub struct FaultRecord {
    pub kind: String,
    pub target: String,
    pub at_ms: u64,
    /// The injector checked afterwards that the fault really happened.
    pub verified: bool,
}

/// One line of the timeline.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub at_ms: u64,
    pub what: String,
}

/// Operations completed in one second of the run, and their latency.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SecondStats {
    pub second: u64,
    pub ok: u64,
    pub failed: u64,
    pub unknown: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Per-second availability and latency of `ops` (by completion time).
pub fn per_second(ops: &[crate::history::Op]) -> Vec<SecondStats> {
    use crate::history::Outcome;
    let last = ops
        .iter()
        .map(|o| o.complete_ns / 1_000_000_000)
        .max()
        .unwrap_or(0);
    let mut buckets: Vec<(SecondStats, Vec<f64>)> = (0..=last)
        .map(|second| {
            (
                SecondStats {
                    second,
                    ok: 0,
                    failed: 0,
                    unknown: 0,
                    p50_ms: 0.0,
                    p99_ms: 0.0,
                    max_ms: 0.0,
                },
                Vec::new(),
            )
        })
        .collect();
    for o in ops {
        let (stats, lat) = &mut buckets[(o.complete_ns / 1_000_000_000) as usize];
        match o.outcome {
            Outcome::Ok(_) => {
                stats.ok += 1;
                lat.push(o.complete_ns.saturating_sub(o.invoke_ns) as f64 / 1e6);
            }
            Outcome::Failed => stats.failed += 1,
            Outcome::Unknown => stats.unknown += 1,
        }
    }
    buckets
        .into_iter()
        .map(|(mut stats, mut lat)| {
            lat.sort_by(|a, b| a.total_cmp(b));
            let pick = |q: f64| {
                lat.get(((lat.len() as f64 - 1.0) * q).round() as usize)
                    .copied()
                    .unwrap_or(0.0)
            };
            stats.p50_ms = pick(0.5);
            stats.p99_ms = pick(0.99);
            stats.max_ms = lat.last().copied().unwrap_or(0.0);
            stats
        })
        .collect()
}

/// Everything a drill measured and concluded.
#[derive(Debug, Clone, Serialize)]
pub struct DrillReport {
    pub scenario: String,
    pub seed: u64,
    pub commit: String,
    pub sites: u32,
    pub nodes_per_site: u32,
    pub duration_ms: u64,
    pub ops: OpCounts,
    pub faults: Vec<FaultRecord>,
    pub timeline: Vec<Event>,
    pub checkers: Vec<CheckerResult>,
    /// Availability and latency per second.
    pub seconds: Vec<SecondStats>,
    /// Fault → first acknowledged write invoked after it.
    pub rto_ms: Option<u64>,
    /// Acknowledged writes missing after recovery (0 unless quorum was lost).
    pub rpo_writes_lost: usize,
    /// After a restore from backups: the newest acknowledged write's stamp minus the
    /// restore point, in ms (the seconds of writes lost), and the instant restored to.
    pub rpo_ms: Option<u64>,
    pub restored_to_hlc: Option<u64>,
    /// Every fault verified, every checker passed, RTO measured, RPO 0.
    pub passed: bool,
}

impl DrillReport {
    /// Human summary, a few lines.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "drill {} (seed {}, commit {}): {}\n",
            self.scenario,
            self.seed,
            self.commit,
            if self.passed { "PASSED" } else { "FAILED" }
        );
        out.push_str(&format!(
            "  operations: {} ok, {} failed, {} unknown in {:.1} s\n",
            self.ops.ok,
            self.ops.failed,
            self.ops.unknown,
            self.duration_ms as f64 / 1000.0
        ));
        for f in &self.faults {
            out.push_str(&format!(
                "  fault at {} ms: {} {} (verified: {})\n",
                f.at_ms, f.kind, f.target, f.verified
            ));
        }
        let rto = self
            .rto_ms
            .map(|r| format!("{r} ms"))
            .unwrap_or_else(|| "not measured".into());
        let rpo_ms = self
            .rpo_ms
            .map(|ms| format!(" ({ms} ms of writes after the restore point)"))
            .unwrap_or_default();
        out.push_str(&format!(
            "  RTO {rto}, RPO {} acknowledged writes lost{rpo_ms}\n",
            self.rpo_writes_lost
        ));
        for c in &self.checkers {
            let v = match &c.verdict {
                crate::checker::Verdict::Pass => "pass".to_string(),
                crate::checker::Verdict::Fail { details } => {
                    format!("FAIL ({} findings)", details.len())
                }
                crate::checker::Verdict::Unknown { reason } => format!("unknown ({reason})"),
            };
            out.push_str(&format!(
                "  checker {:<18} {v:<20} {}\n",
                c.checker, c.summary
            ));
        }
        out
    }
}
