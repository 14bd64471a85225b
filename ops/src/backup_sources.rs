//! Where the backup commands read backups from: the live cluster's members and its
//! replicated backup targets, or, when no cluster answers (quorum lost, every site gone),
//! the buckets named in a targets file. Used by `backup list|verify|drill` and `restore`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::anyhow;
use reprise_api::client::Retry;
use reprise_api::pb::backup::backup_client::BackupClient;
use reprise_api::pb::backup::GetBackupConfigRequest;
use reprise_api::Client;
use reprise_node::backup_targets::{all_stores, Store};
use reprise_storage::backup::manifest::Manifest;
use reprise_storage::backup::target::BackupTargets;
use reprise_storage::{ClusterConfig, Member, NodeId};
use tonic::transport::Channel;

use crate::cli::Global;
use crate::output::{CliError, CliResult};
use crate::targets_file;

/// A Backup service client with the protocol's message limits.
pub fn backup_client(c: Channel) -> BackupClient<Channel> {
    BackupClient::new(c)
        .max_decoding_message_size(reprise_api::limits::GRPC_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(reprise_api::limits::GRPC_MESSAGE_BYTES_MAX)
}

/// Everything backups can be read from.
pub struct Sources {
    /// Targets with credentials (from the file when given, else the cluster's).
    pub targets: BackupTargets,
    /// Every store that may hold shards or manifests, with its site.
    pub stores: Vec<(String, Store)>,
    /// The cluster's replicated catalog of snapshot backups (empty without a cluster).
    pub catalog: BTreeMap<String, Manifest>,
    /// The live cluster's name, if one answered.
    pub cluster_name: Option<String>,
}

/// The replicated backup config as any reachable node applied it.
pub async fn cluster_config(client: &Client) -> CliResult<ClusterConfig> {
    let resp = client
        .call(Retry::Idempotent, |c| async move {
            backup_client(c)
                .get_backup_config(GetBackupConfigRequest {})
                .await
        })
        .await?;
    serde_json::from_str(&resp.json)
        .map_err(|e| CliError::Runtime(anyhow!("backup config from the cluster: {e}")))
}

async fn live(global: &Global) -> CliResult<(BTreeMap<NodeId, Member>, ClusterConfig, String)> {
    let client = global.client()?;
    let status = crate::cmd_cluster::gather(&client).await?;
    let members = status
        .members
        .iter()
        .map(|m| {
            (
                m.id,
                Member {
                    addr: m.addr.clone(),
                    site: m.site.clone(),
                    zone: m.zone.clone(),
                },
            )
        })
        .collect();
    let config = cluster_config(&client).await?;
    Ok((members, config, status.cluster_name))
}

/// The sources for a backup command: the live cluster (its targets, or `targets_file`'s
/// when given), or only `targets_file`'s buckets when no cluster answers.
pub async fn sources(global: &Global, targets_file: Option<&Path>) -> CliResult<Sources> {
    let file = targets_file.map(targets_file::read).transpose()?;
    let cluster = if global.endpoints.is_empty() && file.is_some() {
        Err(CliError::Unavailable("no --endpoints given".into()))
    } else {
        live(global).await
    };
    match (cluster, file) {
        (Ok((members, config, name)), file) => {
            let targets = file.unwrap_or(config.backup_targets);
            let stores = all_stores(&targets, &members).map_err(anyhow::Error::from)?;
            Ok(Sources {
                targets,
                stores,
                catalog: config.backups,
                cluster_name: Some(name),
            })
        }
        (Err(CliError::Unavailable(why)), Some(targets)) => {
            tracing::info!(%why, "no cluster answers; reading backups from the targets file only");
            let stores = all_stores(&targets, &BTreeMap::new()).map_err(anyhow::Error::from)?;
            Ok(Sources {
                targets,
                stores,
                catalog: BTreeMap::new(),
                cluster_name: None,
            })
        }
        (Err(e), _) => Err(e),
    }
}
