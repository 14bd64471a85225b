//! Scheduled snapshot backups and retention, run by the leader: every `backup.interval_s`
//! a snapshot backup is taken, then every member is asked what it holds, the retention
//! policy (`reprise_storage::backup::retention`) picks what has expired, and every member
//! deletes it. A failure is logged and retried at the next tick.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openraft::ServerState;
use reprise_api::pb::backup::backup_client::BackupClient;
use reprise_api::pb::backup::{CreateBackupRequest, DeleteBackupsRequest, ListBackupsRequest};
use reprise_storage::backup::manifest::Manifest;
use reprise_storage::backup::retention::{expired, Retention};
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};
use tracing::{info, warn};

use crate::backup_create::create_backup;
use crate::config::BackupSettings;
use crate::state::NodeState;

const MEMBER_RPC_TIMEOUT: Duration = Duration::from_secs(30);

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
            match create_backup(&state, CreateBackupRequest::default()).await {
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

async fn connect(addr: &str) -> Result<BackupClient<Channel>, String> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(2))
        .timeout(MEMBER_RPC_TIMEOUT)
        .connect()
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    Ok(BackupClient::new(channel)
        .max_decoding_message_size(reprise_api::limits::GRPC_MESSAGE_BYTES_MAX))
}

/// Deletes expired backups on every member. Refuses to decide while a member cannot be
/// asked: a backup it alone knows of could make another look expired, or vice versa.
async fn apply_retention(state: &NodeState, policy: Retention) -> Result<(), String> {
    let addrs: Vec<String> = state
        .raft
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .nodes()
        .map(|(_, m)| m.addr.clone())
        .collect();
    let mut manifests: BTreeMap<String, Manifest> = BTreeMap::new();
    for addr in &addrs {
        let held = connect(addr)
            .await?
            .list_backups(ListBackupsRequest {})
            .await
            .map_err(|e| format!("list backups on {addr}: {}", e.message()))?
            .into_inner();
        for b in held.backups {
            if let Ok(m) = Manifest::from_json(&b.manifest_json) {
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
    for addr in &addrs {
        deleted += connect(addr)
            .await?
            .delete_backups(DeleteBackupsRequest {
                backup_ids: doomed.clone(),
            })
            .await
            .map_err(|e| format!("delete backups on {addr}: {}", e.message()))?
            .into_inner()
            .deleted;
    }
    info!(
        expired = doomed.len(),
        removed_on_members = deleted,
        "backup retention removed expired backups and archive segments"
    );
    Ok(())
}
