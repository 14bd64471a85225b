//! Scheduled snapshot backups and retention, run by the leader: every `backup.interval_s`
//! a snapshot backup is taken, then every backup target (each member, each bucket) is
//! asked what it holds, the retention policy (`reprise_storage::backup::retention`) picks
//! what has expired, every target deletes it, and the replicated catalog forgets it. A
//! failure is logged and retried at the next tick.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openraft::ServerState;
use reprise_api::pb::backup::CreateBackupRequest;
use reprise_storage::backup::manifest::Manifest;
use reprise_storage::backup::retention::{expired, Retention};
use reprise_storage::command::Operation;
use reprise_storage::{Member, NodeId};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::backup_create::create_backup;
use crate::backup_targets::{all_stores, holdings};
use crate::config::BackupSettings;
use crate::state::NodeState;

/// Starts the schedule; it acts only while this node is leader.
pub fn spawn(state: Arc<NodeState>, settings: BackupSettings) -> JoinHandle<()> {
    tokio::spawn(async move {
        let period = Duration::from_secs(settings.interval_s);
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if state.raft.metrics().borrow().state != ServerState::Leader {
                continue;
            }
            match create_backup(&state, CreateBackupRequest::default(), &Default::default()).await {
                Ok(m) => {
                    info!(backup = %m.backup_id, index = m.log_index, "scheduled backup taken")
                }
                Err(e) => {
                    warn!(error = %e.message(), "scheduled backup failed; retrying at the next tick");
                    continue;
                }
            }
            let policy = Retention {
                keep_last: settings.keep_last,
                keep_daily_days: settings.keep_daily_days,
            };
            if let Err(e) = apply_retention(&state, policy).await {
                warn!(error = %e, "backup retention failed; retrying at the next tick");
            }
        }
    })
}

/// Deletes expired backups on every target. Refuses to decide while a target cannot be
/// asked: a backup it alone knows of could make another look expired, or vice versa.
async fn apply_retention(state: &Arc<NodeState>, policy: Retention) -> Result<(), String> {
    let members: BTreeMap<NodeId, Member> = state
        .raft
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .nodes()
        .map(|(id, m)| (*id, m.clone()))
        .collect();
    let config = state.view.cluster_config().map_err(|e| e.to_string())?;
    let stores = all_stores(&config.backup_targets, &members).map_err(|e| e.to_string())?;
    let mut manifests: BTreeMap<String, Manifest> = BTreeMap::new();
    for holding in holdings(&stores).await {
        let held = holding
            .held
            .map_err(|e| format!("list backups on {}: {e}", holding.store))?;
        for b in held {
            if let Some(m) = b.manifest_json.and_then(|j| Manifest::from_json(&j).ok()) {
                manifests.entry(m.backup_id.clone()).or_insert(m);
            }
        }
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let all: Vec<Manifest> = manifests.into_values().collect();
    let doomed = expired(&all, policy, now);
    if doomed.is_empty() {
        return Ok(());
    }
    let mut deleted = 0;
    for (_, store) in &stores {
        deleted += store
            .delete(&doomed)
            .await
            .map_err(|e| format!("delete backups: {e}"))?;
    }
    let catalogued: Vec<String> = {
        let catalog = config.backups;
        doomed
            .iter()
            .filter(|id| catalog.contains_key(*id))
            .cloned()
            .collect()
    };
    if !catalogued.is_empty() {
        state
            .write(Operation::ForgetBackups(catalogued))
            .await
            .map_err(|e| format!("forget expired backups: {}", e.message()))?;
    }
    info!(
        expired = doomed.len(),
        removed_on_targets = deleted,
        "backup retention removed expired backups and archive segments"
    );
    Ok(())
}
