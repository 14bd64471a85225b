//! The restore drill primitive (used by `reprise backup drill`, chaos drills and
//! runbooks): proves that the backups restore, without touching any cluster. Every point
//! is restored into a scratch directory and checked against an independent copy of the
//! same state:
//! - the newest point the backups hold, restored from the newest snapshot backup plus the
//!   archive, and again without that backup (an older one, or the empty state, plus a
//!   longer replay): both must have the same state checksum;
//! - an earlier point, a snapshot backup B chosen from the seed, restored *without* B
//!   (older backups and the archive, replayed up to B's index): its checksum must equal
//!   the one B recorded at backup time.
//!
//! Every rebuilt object is also checked against its own manifest's checksum. The drill
//! fails when a comparison differs and when no independent comparison is possible (no
//! snapshot backup, or an archive gap): an unverified restore is not a passed one.
//!
//! It measures the restore time of each point and the age of the newest restorable
//! point: the data a restore right now would lose at most (the real RPO).

use std::path::Path;
use std::time::Instant;

use reprise_storage::backup::manifest::Manifest;
use reprise_storage::backup::restore::{plan, Plan, RestoreError, Target};
use reprise_storage::backup::target::BackupTargets;
use serde::Serialize;

use crate::restore::{restore_point, RestoreEvent, RestoreRunError, RestoredPoint};

/// One restored point of a drill.
#[derive(Debug, Clone, Serialize)]
pub struct DrillPoint {
    pub target: Target,
    pub restored: RestoredPoint,
    pub restore_ms: u128,
    /// The snapshot backup whose recorded state checksum this point was compared with.
    pub compared_with: Option<String>,
    /// Whether that comparison held (None: nothing independent to compare with).
    pub checksum_matches: Option<bool>,
}

/// The outcome of a restore drill.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreDrillReport {
    pub latest: DrillPoint,
    pub earlier: Option<DrillPoint>,
    /// Stamp of the newest write in the newest restorable point, and its age when the
    /// drill finished (ms): the data a restore right now would lose at most.
    pub newest_restorable_hlc: u64,
    pub newest_restorable_age_ms: u64,
    /// Every check held.
    pub passed: bool,
    /// What failed, one line each.
    pub failures: Vec<String>,
}

fn not_restorable(e: RestoreError) -> RestoreRunError {
    RestoreRunError::NotRestorable(format!("cannot restore: {e}"))
}

async fn run_point(
    p: &Plan,
    targets: &BackupTargets,
    target: Target,
    dir: &Path,
) -> Result<(RestoredPoint, u128), RestoreRunError> {
    let started = Instant::now();
    let quiet = |_: RestoreEvent| {};
    let restored = restore_point(p, targets, target, dir, &quiet).await?;
    Ok((restored, started.elapsed().as_millis()))
}

/// Runs the drill over `manifests` (every manifest the sites hold) in `scratch`, which is
/// removed afterwards. `now_unix_ms` dates the RPO; `seed` picks the earlier point.
pub async fn restore_drill(
    manifests: &[Manifest],
    targets: &BackupTargets,
    scratch: &Path,
    seed: u64,
    now_unix_ms: u64,
) -> Result<RestoreDrillReport, RestoreRunError> {
    let result = drill(manifests, targets, scratch, seed, now_unix_ms).await;
    let _ = std::fs::remove_dir_all(scratch);
    result
}

async fn drill(
    manifests: &[Manifest],
    targets: &BackupTargets,
    scratch: &Path,
    seed: u64,
    now_unix_ms: u64,
) -> Result<RestoreDrillReport, RestoreRunError> {
    let mut failures = Vec::new();
    let latest_plan = plan(manifests, Target::Latest).map_err(not_restorable)?;
    let (restored, ms) = run_point(
        &latest_plan,
        targets,
        Target::Latest,
        &scratch.join("latest"),
    )
    .await?;
    let mut latest = compared(Target::Latest, restored, ms, None, &mut failures);

    // The newest point again, without its base backup: an older base (or the empty state)
    // and a longer replay must reach the same state.
    if let Some(base) = &latest_plan.base {
        let others = without(manifests, &base.backup_id);
        if let Ok(alt) = plan(&others, Target::Latest) {
            if alt.reach() == latest.restored.log_index {
                let (again, _) =
                    run_point(&alt, targets, Target::Latest, &scratch.join("latest-alt")).await?;
                let same = again.state_digest == latest.restored.state_digest;
                if !same {
                    failures.push(format!(
                        "the newest point (index {}) has checksum {} from backup {}, but {} when rebuilt from {} and the archive",
                        latest.restored.log_index,
                        latest.restored.state_digest,
                        base.backup_id,
                        again.state_digest,
                        alt.base.as_ref().map_or("the empty state", |b| b.backup_id.as_str()),
                    ));
                }
                latest.compared_with = Some(format!(
                    "{} and the archive",
                    alt.base
                        .as_ref()
                        .map_or("the empty state", |b| b.backup_id.as_str())
                ));
                latest.checksum_matches = Some(same);
            }
        }
    }

    // The earlier point: a snapshot backup rebuilt without it, from older backups and the
    // archive; its checksum must equal the one it recorded.
    let mut backups: Vec<&Manifest> = manifests.iter().filter(|m| !m.is_log_segment()).collect();
    backups.sort_by_key(|m| m.log_index);
    let earlier = match backups.len() {
        0 => {
            failures.push(
                "no snapshot backup to check the archive against: take one (reprise backup create)"
                    .into(),
            );
            None
        }
        n => {
            // The oldest backup has nothing older: it qualifies only when the archive
            // reaches back to the first entry.
            let pick = if n == 1 {
                backups[0]
            } else {
                backups[1 + (seed % (n as u64 - 1)) as usize]
            };
            let target = Target::Index(pick.log_index);
            match plan(&without(manifests, &pick.backup_id), target) {
                Ok(p) if p.reach() >= pick.log_index => {
                    let (restored, ms) =
                        run_point(&p, targets, target, &scratch.join("earlier")).await?;
                    Some(compared(target, restored, ms, Some(pick), &mut failures))
                }
                Ok(p) => {
                    failures.push(format!(
                        "backup {} (index {}) cannot be rebuilt from older backups and the archive: they reach index {} only",
                        pick.backup_id,
                        pick.log_index,
                        p.reach()
                    ));
                    None
                }
                Err(e) => {
                    failures.push(format!(
                        "backup {} (index {}) cannot be rebuilt from older backups and the archive: {e}{}",
                        pick.backup_id,
                        pick.log_index,
                        if n == 1 {
                            " (keep at least two snapshot backups so one can be checked against the other)"
                        } else {
                            ""
                        }
                    ));
                    None
                }
            }
        }
    };
    let newest_restorable_hlc = latest.restored.hlc;
    Ok(RestoreDrillReport {
        newest_restorable_age_ms: now_unix_ms.saturating_sub(newest_restorable_hlc >> 16),
        newest_restorable_hlc,
        latest,
        earlier,
        passed: failures.is_empty(),
        failures,
    })
}

fn without(manifests: &[Manifest], backup_id: &str) -> Vec<Manifest> {
    manifests
        .iter()
        .filter(|m| m.backup_id != backup_id)
        .cloned()
        .collect()
}

fn compared(
    target: Target,
    restored: RestoredPoint,
    restore_ms: u128,
    with: Option<&Manifest>,
    failures: &mut Vec<String>,
) -> DrillPoint {
    let recorded = with.and_then(|m| m.objects.first().map(|o| (m, o.state_digest.clone())));
    let checksum_matches = recorded.as_ref().map(|(m, digest)| {
        let ok = *digest == restored.state_digest && m.log_index == restored.log_index;
        if !ok {
            failures.push(format!(
                "restored state at index {} has checksum {}, but backup {} recorded {} at index {}",
                restored.log_index, restored.state_digest, m.backup_id, digest, m.log_index
            ));
        }
        ok
    });
    DrillPoint {
        target,
        compared_with: recorded.map(|(m, _)| m.backup_id.clone()),
        checksum_matches,
        restored,
        restore_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reprise_storage::backup::manifest::KIND_SNAPSHOT;

    fn point(index: u64, digest: &str) -> RestoredPoint {
        RestoredPoint {
            snapshot: Default::default(),
            base_backup: None,
            segments_replayed: 1,
            entries_replayed: index,
            log_index: index,
            hlc: 0,
            keys: 1,
            state_digest: digest.into(),
            bytes_fetched: 0,
            damaged_shards: vec![],
            rebuild_ms: 0,
            replay_ms: 0,
        }
    }

    fn backup(index: u64, digest: &str) -> Manifest {
        let mut m = Manifest::example(KIND_SNAPSHOT, &format!("bk-{index}"), 0, index, 0);
        m.objects[0].state_digest = digest.into();
        m
    }

    #[test]
    fn a_checksum_that_differs_from_the_recorded_one_fails_the_drill() {
        let mut failures = Vec::new();
        // (restored digest, compared with a backup recording "aa"?, expected verdict)
        let cases = [
            ("aa", true, Some(true)),
            ("ab", true, Some(false)),
            ("ab", false, None),
        ];
        let recorded = backup(7, "aa");
        for (digest, with, expected) in cases {
            let p = compared(
                Target::Index(7),
                point(7, digest),
                1,
                with.then_some(&recorded),
                &mut failures,
            );
            assert_eq!(p.checksum_matches, expected, "{digest} {with}");
        }
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(failures[0].contains("bk-7"), "{failures:?}");
    }
}
