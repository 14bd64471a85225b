//! The backup manifest (what a backup holds and where its shards are) and shard
//! placement across sites. Stored as versioned JSON on every site.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::target::Location;

/// Current manifest format.
pub const MANIFEST_FORMAT: u32 = 1;

/// A manifest or placement problem.
#[derive(Debug, Error)]
pub enum ManifestError {
    #[error("manifest: {0}")]
    Decode(String),
    #[error("manifest format {0} is not known (this build reads format {MANIFEST_FORMAT})")]
    Format(u32),
    #[error("placement: {0}")]
    Placement(String),
}

/// Where one shard index of every stripe lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardPlacement {
    pub shard: u8,
    pub site: String,
    pub node: u64,
    pub addr: String,
    /// Size and crc32c of the stored shard file, as reported by the target that stored it.
    pub bytes: u64,
    pub crc32c: u32,
    /// The target holding it: a node of the site (`node`, `addr`) or a bucket.
    #[serde(default)]
    pub location: Location,
}

/// One backed-up object (today: the state snapshot).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupObject {
    pub object_id: u64,
    pub kind: String,
    pub bytes: u64,
    pub stripes: u64,
    /// State checksum recorded in the snapshot (hex) and its key count.
    pub state_digest: String,
    pub keys: u64,
}

/// Everything needed to find, verify and restore a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub backup_id: String,
    pub cluster_name: String,
    /// Log index and term of the snapshot; for a log archive segment, of its last entry.
    pub log_index: u64,
    pub term: u64,
    /// Highest HLC stamp applied in the snapshot (the instant it represents).
    pub hlc: u64,
    pub data_shards: u8,
    pub parity_shards: u8,
    pub stripe_bytes: u32,
    pub objects: Vec<BackupObject>,
    pub shards: Vec<ShardPlacement>,
    /// For a log archive segment: its first log index (0 for snapshot backups).
    #[serde(default)]
    pub first_index: u64,
}

/// Object kind of a state snapshot.
pub const KIND_SNAPSHOT: &str = "snapshot";
/// Object kind of a log archive segment.
pub const KIND_LOG: &str = "log";

impl Manifest {
    pub fn to_json(&self) -> String {
        // A struct of plain fields always serializes.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    pub fn from_json(text: &str) -> Result<Manifest, ManifestError> {
        let m: Manifest =
            serde_json::from_str(text).map_err(|e| ManifestError::Decode(e.to_string()))?;
        if m.format != MANIFEST_FORMAT {
            return Err(ManifestError::Format(m.format));
        }
        Ok(m)
    }

    /// Whether this is a log archive segment (otherwise a snapshot backup).
    pub fn is_log_segment(&self) -> bool {
        self.objects.first().is_some_and(|o| o.kind == KIND_LOG)
    }

    /// How many whole sites can be lost with the backup still restorable: sites are lost
    /// worst-first (most shards first) until more than m shards of a stripe are gone.
    pub fn survivable_site_losses(&self) -> usize {
        let mut per_site: BTreeMap<&str, usize> = BTreeMap::new();
        for s in &self.shards {
            *per_site.entry(s.site.as_str()).or_default() += 1;
        }
        let mut counts: Vec<usize> = per_site.into_values().collect();
        counts.sort_unstable_by(|a, b| b.cmp(a));
        let (mut lost, mut sites) = (0usize, 0usize);
        for c in counts {
            if lost + c > usize::from(self.parity_shards) {
                break;
            }
            lost += c;
            sites += 1;
        }
        sites
    }
}

/// Assigns shard indices `0..k+m` to sites round-robin (sites in sorted order) and checks
/// that no site holds more than `m` shards of a stripe.
pub fn place_shards(
    sites: &[String],
    data_shards: u8,
    parity_shards: u8,
) -> Result<Vec<String>, ManifestError> {
    let mut sorted: Vec<String> = sites.to_vec();
    sorted.sort();
    sorted.dedup();
    if sorted.is_empty() {
        return Err(ManifestError::Placement(
            "no sites to place shards on".into(),
        ));
    }
    let total = usize::from(data_shards) + usize::from(parity_shards);
    let placement: Vec<String> = (0..total)
        .map(|i| sorted[i % sorted.len()].clone())
        .collect();
    let most = sorted
        .iter()
        .map(|s| placement.iter().filter(|p| *p == s).count())
        .max()
        .unwrap_or(0);
    if most > usize::from(parity_shards) {
        return Err(ManifestError::Placement(format!(
            "{total} shards over {} sites puts {most} on one site, more than the {parity_shards} parity shards: losing that site would lose the backup",
            sorted.len()
        )));
    }
    Ok(placement)
}

impl Manifest {
    /// A manifest of one object of `kind` covering log indices `first..=last`, stamped
    /// `hlc`, 2+1 with no shards placed: for tests and examples of planning, retention and
    /// catalogs, never stored.
    pub fn example(kind: &str, id: &str, first: u64, last: u64, hlc: u64) -> Manifest {
        Manifest {
            format: MANIFEST_FORMAT,
            backup_id: id.into(),
            cluster_name: "c".into(),
            log_index: last,
            term: 1,
            hlc,
            data_shards: 2,
            parity_shards: 1,
            stripe_bytes: 1024,
            objects: vec![BackupObject {
                object_id: 0,
                kind: kind.into(),
                bytes: 1,
                stripes: 1,
                state_digest: String::new(),
                keys: 0,
            }],
            shards: vec![],
            first_index: first,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sites(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("site-{i}")).collect()
    }

    #[test]
    fn one_shard_per_site_and_refuses_overloaded_sites() {
        assert_eq!(place_shards(&sites(3), 2, 1).unwrap(), sites(3));
        assert_eq!(place_shards(&sites(5), 3, 2).unwrap().len(), 5);
        let e = place_shards(&sites(2), 2, 1).unwrap_err();
        assert!(e.to_string().contains("more than the 1 parity"), "{e}");
    }

    #[test]
    fn survivable_losses_follow_parity() {
        let shard = |i: u8, site: &str| ShardPlacement {
            shard: i,
            site: site.into(),
            node: 1,
            addr: String::new(),
            bytes: 0,
            crc32c: 0,
            location: Location::Node,
        };
        let mut m = Manifest::example(KIND_SNAPSHOT, "b", 0, 1, 0);
        m.shards = vec![shard(0, "a"), shard(1, "b"), shard(2, "c")];
        assert_eq!(m.survivable_site_losses(), 1);
        m.data_shards = 3;
        m.parity_shards = 2;
        m.shards = vec![
            shard(0, "a"),
            shard(1, "b"),
            shard(2, "c"),
            shard(3, "d"),
            shard(4, "e"),
        ];
        assert_eq!(m.survivable_site_losses(), 2);
        assert_eq!(Manifest::from_json(&m.to_json()).unwrap(), m);
        assert!(
            Manifest::from_json(&m.to_json().replace("\"format\": 1", "\"format\": 9")).is_err()
        );
    }
}
