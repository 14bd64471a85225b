//! No acknowledged write lost: every acknowledged insert of the set workload is present
//! at the end, and nothing present was never attempted.

use std::collections::BTreeSet;

use super::{CheckerResult, Verdict};
use crate::workload::set::SetLog;

/// Compares the final contents of the set with what was attempted and acknowledged.
pub fn check(log: &SetLog, present: &BTreeSet<String>) -> CheckerResult {
    let lost: Vec<&String> = log.acked.difference(present).collect();
    let phantom: Vec<&String> = present.difference(&log.attempted).collect();
    let summary = format!(
        "{} acknowledged inserts, {} present at the end, {} lost, {} never attempted",
        log.acked.len(),
        present.len(),
        lost.len(),
        phantom.len()
    );
    let mut details: Vec<String> = lost
        .iter()
        .take(50)
        .map(|k| format!("acknowledged insert lost: {k}"))
        .collect();
    details.extend(
        phantom
            .iter()
            .take(50)
            .map(|k| format!("present but never attempted: {k}")),
    );
    let verdict = if details.is_empty() {
        Verdict::Pass
    } else {
        Verdict::Fail { details }
    };
    CheckerResult {
        checker: "lost-writes".into(),
        verdict,
        summary,
    }
}

/// Number of acknowledged inserts missing at the end (the measured RPO in writes).
pub fn lost_count(log: &SetLog, present: &BTreeSet<String>) -> usize {
    log.acked.difference(present).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(keys: &[&str]) -> BTreeSet<String> {
        keys.iter().map(|k| k.to_string()).collect()
    }

    #[test]
    fn flags_lost_and_phantom_keys() {
        let log = SetLog {
            attempted: set(&["a", "b", "c"]),
            acked: set(&["a", "b"]),
            ..Default::default()
        };
        assert!(check(&log, &set(&["a", "b"])).passed());
        assert!(
            check(&log, &set(&["a", "b", "c"])).passed(),
            "an unacknowledged insert may be present"
        );
        let r = check(&log, &set(&["a"]));
        assert_eq!(
            r.verdict,
            Verdict::Fail {
                details: vec!["acknowledged insert lost: b".into()]
            }
        );
        let r = check(&log, &set(&["a", "b", "zz"]));
        assert!(matches!(r.verdict, Verdict::Fail { ref details } if details[0].contains("zz")));
    }
}
