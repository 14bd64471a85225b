//! Restore equality: after a restore to instant T, the restored set holds exactly the
//! acknowledged inserts stamped at or before T (none may be missing), may hold inserts
//! that were attempted but not acknowledged, and holds nothing never attempted.
//! Acknowledged inserts stamped after T are the writes the restore lost: counted, and
//! measured as the RPO (the newest lost write's stamp minus T), never an anomaly.

use std::collections::BTreeSet;

use super::{CheckerResult, Verdict};
use crate::workload::set::SetLog;

/// What a restore lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RestoreLoss {
    /// Acknowledged inserts stamped after the restore point (absent, as they may be).
    pub writes_lost: usize,
    /// Milliseconds between the restore point and the newest acknowledged insert.
    pub rpo_ms: u64,
}

/// Judges `present` (the restored set) against `log`, for a restore to HLC `restored_hlc`.
pub fn check(
    log: &SetLog,
    present: &BTreeSet<String>,
    restored_hlc: u64,
) -> (CheckerResult, RestoreLoss) {
    let mut details = Vec::new();
    let mut loss = RestoreLoss::default();
    let mut newest_acked = 0u64;
    for key in &log.acked {
        let Some(&stamp) = log.acked_hlc.get(key) else {
            details.push(format!("acknowledged insert {key} has no recorded stamp"));
            continue;
        };
        newest_acked = newest_acked.max(stamp);
        if present.contains(key) {
            continue;
        }
        if stamp <= restored_hlc {
            details.push(format!(
                "acknowledged insert {key} stamped {stamp} (at or before the restore point {restored_hlc}) is missing"
            ));
        } else {
            loss.writes_lost += 1;
        }
    }
    for key in present.difference(&log.attempted) {
        details.push(format!("restored {key}, which was never attempted"));
    }
    if loss.writes_lost > 0 {
        loss.rpo_ms = (newest_acked >> 16).saturating_sub(restored_hlc >> 16);
    }
    let summary = format!(
        "{} acknowledged inserts, {} restored; {} acknowledged after the restore point lost ({} ms of writes)",
        log.acked.len(),
        present.len(),
        loss.writes_lost,
        loss.rpo_ms
    );
    details.truncate(100);
    let verdict = if details.is_empty() {
        Verdict::Pass
    } else {
        Verdict::Fail { details }
    };
    (
        CheckerResult {
            checker: "restore-equality".into(),
            verdict,
            summary,
        },
        loss,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(acked: &[(&str, u64)], attempted_only: &[&str]) -> SetLog {
        let mut l = SetLog::default();
        for (k, ms) in acked {
            l.attempted.insert(k.to_string());
            l.acked.insert(k.to_string());
            l.acked_hlc.insert(k.to_string(), ms << 16);
        }
        for k in attempted_only {
            l.attempted.insert(k.to_string());
        }
        l
    }

    fn set(keys: &[&str]) -> BTreeSet<String> {
        keys.iter().map(|k| k.to_string()).collect()
    }

    #[test]
    fn writes_after_the_restore_point_are_lost_and_measured_but_earlier_ones_must_be_there() {
        let l = log(&[("a", 1000), ("b", 2000), ("c", 3500)], &["d"]);
        let (r, loss) = check(&l, &set(&["a", "b", "d"]), (2000 << 16) | 7);
        assert!(r.passed(), "{r:?}");
        assert_eq!(
            loss,
            RestoreLoss {
                writes_lost: 1,
                rpo_ms: 1500
            }
        );

        let (r, _) = check(&l, &set(&["a", "c"]), (2000 << 16) | 7);
        assert!(
            matches!(&r.verdict, Verdict::Fail { details } if details[0].contains("insert b")),
            "{r:?}"
        );
        let (r, _) = check(&l, &set(&["a", "b", "zz"]), 2000 << 16);
        assert!(
            matches!(&r.verdict, Verdict::Fail { details } if details[0].contains("zz")),
            "{r:?}"
        );
    }
}
