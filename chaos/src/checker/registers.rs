//! Adapts the linearizability search to a run: picks the register workload's operations
//! and turns the search's verdict into a checker result listing offending operations.

use std::time::Duration;

use super::linearizability::{check_registers, CheckOptions, Verdict as LinVerdict};
use super::{CheckerResult, Verdict};
use crate::history::Op;

/// Checks the operations on keys starting with `prefix` within `budget`.
pub fn check(ops: &[Op], prefix: &str, budget: Duration) -> CheckerResult {
    let mine: Vec<Op> = ops
        .iter()
        .filter(|o| o.key.starts_with(prefix))
        .cloned()
        .collect();
    let report = check_registers(&mine, &CheckOptions { budget });
    let summary = format!(
        "{} operations on {} keys checked in {} ms",
        report.ops_checked, report.keys, report.elapsed_ms
    );
    let verdict = match report.verdict {
        LinVerdict::Linearizable => Verdict::Pass,
        LinVerdict::Unknown {
            reason,
            keys_checked,
            keys_total,
        } => Verdict::Unknown {
            reason: format!("{reason} ({keys_checked} of {keys_total} keys decided)"),
        },
        LinVerdict::NotLinearizable {
            key,
            explanation,
            ops,
            longest_prefix,
        } => {
            let mut details = vec![format!("key {key}: {explanation}")];
            details.extend(ops.iter().map(|o| format!("{o:?}")));
            details.push(format!(
                "longest linearizable prefix (op ids): {longest_prefix:?}"
            ));
            Verdict::Fail { details }
        }
    };
    CheckerResult {
        checker: "linearizability".into(),
        verdict,
        summary,
    }
}
