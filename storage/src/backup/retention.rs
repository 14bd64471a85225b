//! Backup retention: which snapshot backups to keep (the newest N, and the newest of each
//! day for the last D days) and which log archive segments become useless once older
//! backups are gone (every segment that ends at or before the oldest kept snapshot: no
//! restore can use it any more). Pure: the caller lists manifests and deletes.

use std::collections::BTreeSet;

use super::manifest::Manifest;

/// What to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Keep the newest `keep_last` snapshot backups.
    pub keep_last: usize,
    /// Also keep the newest backup of each of the last `keep_daily_days` days (UTC).
    pub keep_daily_days: u64,
}

const DAY_MS: u64 = 24 * 3600 * 1000;

/// The backup ids (snapshots and segments) that retention removes, given every manifest
/// and the current time. Never removes the newest snapshot backup, and removes nothing
/// when there is no snapshot backup at all (segments are then the only copy of the data).
pub fn expired(manifests: &[Manifest], policy: Retention, now_unix_ms: u64) -> Vec<String> {
    let mut snapshots: Vec<&Manifest> = manifests.iter().filter(|m| !m.is_log_segment()).collect();
    snapshots.sort_by_key(|m| std::cmp::Reverse(m.log_index));
    if snapshots.is_empty() {
        return Vec::new();
    }
    let mut keep: BTreeSet<&str> = snapshots
        .iter()
        .take(policy.keep_last.max(1))
        .map(|m| m.backup_id.as_str())
        .collect();
    let today = now_unix_ms / DAY_MS;
    let mut days_seen = BTreeSet::new();
    for m in &snapshots {
        let day = (m.hlc >> 16) / DAY_MS;
        if today.saturating_sub(day) < policy.keep_daily_days && days_seen.insert(day) {
            keep.insert(m.backup_id.as_str());
        }
    }
    let oldest_kept = snapshots
        .iter()
        .filter(|m| keep.contains(m.backup_id.as_str()))
        .map(|m| m.log_index)
        .min()
        .unwrap_or(0);
    let mut out: Vec<String> = snapshots
        .iter()
        .filter(|m| !keep.contains(m.backup_id.as_str()))
        .map(|m| m.backup_id.clone())
        .collect();
    out.extend(
        manifests
            .iter()
            .filter(|m| m.is_log_segment() && m.log_index <= oldest_kept)
            .map(|m| m.backup_id.clone()),
    );
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::manifest::{Manifest, KIND_LOG, KIND_SNAPSHOT};

    fn manifest(kind: &str, id: &str, first: u64, last: u64, unix_ms: u64) -> Manifest {
        Manifest::example(kind, id, first, last, unix_ms << 16)
    }

    #[test]
    fn keeps_the_newest_n_and_one_per_recent_day_and_drops_segments_before_them() {
        let now = 100 * DAY_MS;
        let all = vec![
            manifest(KIND_SNAPSHOT, "s10", 0, 10, now - 5 * DAY_MS),
            manifest(KIND_SNAPSHOT, "s20", 0, 20, now - 2 * DAY_MS),
            manifest(KIND_SNAPSHOT, "s25", 0, 25, now - 2 * DAY_MS + 1000),
            manifest(KIND_SNAPSHOT, "s30", 0, 30, now - 1000),
            manifest(KIND_SNAPSHOT, "s40", 0, 40, now - 500),
            manifest(KIND_LOG, "l1-12", 1, 12, now - 4 * DAY_MS),
            manifest(KIND_LOG, "l13-26", 13, 26, now - 2 * DAY_MS),
            manifest(KIND_LOG, "l27-45", 27, 45, now),
        ];
        let policy = Retention {
            keep_last: 2,
            keep_daily_days: 3,
        };
        // Kept: s40, s30 (newest two), s25 (newest of two days ago); s10 is 5 days old.
        assert_eq!(expired(&all, policy, now), ["l1-12", "s10", "s20"]);
        let only_last = Retention {
            keep_last: 1,
            keep_daily_days: 0,
        };
        assert_eq!(
            expired(&all, only_last, now),
            ["l1-12", "l13-26", "s10", "s20", "s25", "s30"]
        );
    }

    #[test]
    fn never_removes_the_only_copies() {
        let now = 10 * DAY_MS;
        let segments_only = vec![manifest(KIND_LOG, "l1-9", 1, 9, now)];
        let policy = Retention {
            keep_last: 0,
            keep_daily_days: 0,
        };
        assert!(expired(&segments_only, policy, now).is_empty());
        let one = vec![manifest(KIND_SNAPSHOT, "s5", 0, 5, 0)];
        assert!(
            expired(&one, policy, now).is_empty(),
            "keep_last 0 still keeps the newest"
        );
    }
}
