//! The replicated cluster configuration kept beside the data: the backup targets of every
//! site and the catalog of snapshot backups (their manifests). Changed only by replicated
//! commands, stored in the state machine's metadata, and carried in snapshot headers, so
//! every node, and every node that catches up by snapshot, agrees on it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::backup::manifest::Manifest;
use crate::backup::target::BackupTargets;
use crate::limits::{BACKUP_CATALOG_BYTES_MAX, BACKUP_CATALOG_MAX};

/// Cluster-wide configuration and records (not user data: outside the state checksum).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterConfig {
    /// Where each site keeps backup shards (sites not listed: a node of the site).
    #[serde(default)]
    pub backup_targets: BackupTargets,
    /// Snapshot backups whose every shard and manifest were stored, by backup id. Bounded
    /// by [`BACKUP_CATALOG_MAX`]: past it, the oldest entries are forgotten (the backups
    /// themselves stay on their sites).
    #[serde(default)]
    pub backups: BTreeMap<String, Manifest>,
}

impl ClusterConfig {
    /// Encodes as JSON (self-describing, so fields can be added without a new format).
    pub fn encode(&self) -> Vec<u8> {
        // Plain structs and maps with string keys always serialize.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes [`ClusterConfig::encode`]'s output; an empty input is the default.
    pub fn decode(bytes: &[u8]) -> Result<ClusterConfig, serde_json::Error> {
        if bytes.is_empty() {
            return Ok(ClusterConfig::default());
        }
        serde_json::from_slice(bytes)
    }

    /// Records a snapshot backup, forgetting the oldest ones past the bounds (count and
    /// encoded size).
    pub fn record_backup(&mut self, manifest: Manifest) {
        self.backups.insert(manifest.backup_id.clone(), manifest);
        while self.backups.len() > 1
            && (self.backups.len() > BACKUP_CATALOG_MAX
                || serde_json::to_vec(&self.backups).map_or(0, |v| v.len())
                    > BACKUP_CATALOG_BYTES_MAX)
        {
            let oldest = self
                .backups
                .values()
                .min_by_key(|m| (m.log_index, m.backup_id.clone()))
                .map(|m| m.backup_id.clone());
            match oldest {
                Some(id) => self.backups.remove(&id),
                None => break,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::manifest::{Manifest, KIND_SNAPSHOT};

    #[test]
    fn catalog_is_bounded_and_round_trips() {
        let mut c = ClusterConfig::default();
        for i in 0..(BACKUP_CATALOG_MAX as u64 + 3) {
            c.record_backup(Manifest::example(
                KIND_SNAPSHOT,
                &format!("bk-{i:04}"),
                0,
                i + 1,
                i,
            ));
        }
        assert_eq!(c.backups.len(), BACKUP_CATALOG_MAX);
        assert!(c.encode().len() <= BACKUP_CATALOG_BYTES_MAX + 1024);
        assert!(!c.backups.contains_key("bk-0000"));
        assert!(c
            .backups
            .contains_key(&format!("bk-{:04}", BACKUP_CATALOG_MAX + 2)));
        assert_eq!(ClusterConfig::decode(&c.encode()).unwrap(), c);
        assert_eq!(
            ClusterConfig::decode(b"").unwrap(),
            ClusterConfig::default()
        );
        assert!(ClusterConfig::decode(b"{not json").is_err());
    }
}
