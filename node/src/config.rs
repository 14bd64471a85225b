//! Node configuration: the TOML file an operator writes (`NodeConfigFile`, every field
//! documented with its default) and its validation into the runtime `NodeConfig`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reprise_api::limits::SNAPSHOT_CHUNK_BYTES;
use reprise_storage::{Member, NodeId};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Why a config file was refused.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// The config file as written by an operator (see `deploy/config/node.toml`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfigFile {
    /// Unique node id, never reused. Required.
    pub id: NodeId,
    /// Site (datacenter) this node runs in; must be listed in `sites`. Required.
    pub site: String,
    /// Zone inside the site. Default: none.
    #[serde(default)]
    pub zone: Option<String>,
    /// Address the gRPC server binds. Required.
    pub listen_addr: SocketAddr,
    /// Address peers and clients use to reach this node. Default: `listen_addr`.
    #[serde(default)]
    pub advertise_addr: Option<String>,
    /// Directory for the Raft log, state machine and snapshots. Required.
    pub data_dir: PathBuf,
    /// Every site of the cluster. Required, at least one.
    pub sites: Vec<String>,
    /// Cluster name; peers must agree. Default: "reprise".
    #[serde(default = "default_cluster_name")]
    pub cluster_name: String,
    /// Members used by `reprise cluster init` to bootstrap. Default: none.
    #[serde(default)]
    pub initial_members: Vec<InitialMember>,
    /// Raft timing and log settings.
    #[serde(default)]
    pub raft: RaftSettings,
    /// Continuous log archive settings.
    #[serde(default)]
    pub archive: ArchiveSettings,
    /// Scheduled snapshot backups and retention.
    #[serde(default)]
    pub backup: BackupSettings,
    /// Address of the Prometheus metrics endpoint (`GET /metrics`). Default: none (off).
    #[serde(default)]
    pub metrics_addr: Option<SocketAddr>,
}

/// Scheduled snapshot backups, taken by the leader, and retention of old backups.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackupSettings {
    /// Take a snapshot backup this often; 0 = only on demand. Default: 0.
    pub interval_s: u64,
    /// Keep the newest N snapshot backups. Default: 7.
    pub keep_last: usize,
    /// Also keep the newest backup of each of the last D days. Default: 7.
    pub keep_daily_days: u64,
}

impl Default for BackupSettings {
    fn default() -> Self {
        BackupSettings {
            interval_s: 0,
            keep_last: 7,
            keep_daily_days: 7,
        }
    }
}

/// The continuous log archive, run by the leader: committed entries are erasure-coded
/// across sites like backups, so losing every live replica loses at most about one
/// interval of acknowledged writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArchiveSettings {
    /// Archive new committed entries this often; 0 turns the archive off (and with it the
    /// hold on log purging). Default: 500 (a shorter interval ships smaller segments: at
    /// 1000 the burst of each second's segment raised the write p99 at 64 clients x 4 KiB
    /// from 27-29 ms to 35-37 ms).
    pub interval_ms: u64,
    /// Most entries per archive segment. Default: 50000.
    pub segment_entries_max: u64,
}

impl Default for ArchiveSettings {
    fn default() -> Self {
        ArchiveSettings {
            interval_ms: 500,
            segment_entries_max: 50_000,
        }
    }
}

impl ArchiveSettings {
    /// Whether the archive runs.
    pub fn enabled(&self) -> bool {
        self.interval_ms > 0
    }
}

/// One bootstrap member.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct InitialMember {
    pub id: NodeId,
    pub site: String,
    #[serde(default)]
    pub zone: Option<String>,
    pub addr: String,
}

/// Raft settings, tuned for sites a few milliseconds apart.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RaftSettings {
    /// Leader heartbeat period; openraft's timer ticks every 1.5 of it, which is how often
    /// heartbeats go out and election timeouts are checked. Default: 30.
    pub heartbeat_interval_ms: u64,
    /// Lower bound of the randomized election timeout. Default: 110.
    pub election_timeout_ms_min: u64,
    /// Upper bound of the randomized election timeout; also the leader lease, during which
    /// followers refuse to vote for another candidate. A follower campaigns once it has
    /// heard nothing for the lease plus its election timeout: 290–360 ms by default. The
    /// leader's read lease is two thirds of it (`read_index.rs`). Default: 180.
    pub election_timeout_ms_max: u64,
    /// Build a snapshot after this many applied entries. Default: 10000.
    pub snapshot_logs_since_last: u64,
    /// Also build one once the applied entries since the last snapshot carry this many
    /// bytes of keys and values, or as many as the newest snapshot file if that is larger
    /// (an entry batches up to 512 writes); 0 = by count only. Default: 67108864 (64 MiB).
    pub snapshot_log_bytes: u64,
    /// Entries kept in the log behind the snapshot, for lagging followers. Default: 1000.
    pub logs_kept_after_snapshot: u64,
    /// Roll over to a new log segment file past this size. Default: 67108864 (64 MiB).
    pub segment_bytes_max: u64,
    /// Most entries per AppendEntries RPC. Default: 512.
    pub append_entries_max: u64,
}

impl Default for RaftSettings {
    fn default() -> Self {
        RaftSettings {
            heartbeat_interval_ms: 30,
            election_timeout_ms_min: 110,
            election_timeout_ms_max: 180,
            snapshot_logs_since_last: 10_000,
            snapshot_log_bytes: 64 * 1024 * 1024,
            logs_kept_after_snapshot: 1_000,
            segment_bytes_max: 64 * 1024 * 1024,
            append_entries_max: 512,
        }
    }
}

fn default_cluster_name() -> String {
    "reprise".to_string()
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub id: NodeId,
    pub member: Member,
    pub listen_addr: SocketAddr,
    pub data_dir: PathBuf,
    pub sites: BTreeSet<String>,
    pub cluster_name: String,
    pub initial_members: BTreeMap<NodeId, Member>,
    pub raft: RaftSettings,
    pub archive: ArchiveSettings,
    pub backup: BackupSettings,
    pub metrics_addr: Option<SocketAddr>,
}

impl NodeConfig {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let file: NodeConfigFile = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: describe_parse_error(&text, &e),
        })?;
        file.validate().map_err(|message| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        })
    }

    /// The openraft configuration derived from these settings.
    pub fn openraft(&self) -> Result<openraft::Config, String> {
        let r = &self.raft;
        openraft::Config {
            cluster_name: self.cluster_name.clone(),
            heartbeat_interval: r.heartbeat_interval_ms,
            election_timeout_min: r.election_timeout_ms_min,
            election_timeout_max: r.election_timeout_ms_max,
            install_snapshot_timeout: 10_000,
            max_payload_entries: r.append_entries_max,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(r.snapshot_logs_since_last),
            max_in_snapshot_log_to_keep: r.logs_kept_after_snapshot,
            snapshot_max_chunk_size: SNAPSHOT_CHUNK_BYTES,
            ..Default::default()
        }
        .validate()
        .map_err(|e| e.to_string())
    }

    /// Heartbeat period.
    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.raft.heartbeat_interval_ms)
    }
}

/// One line naming where a TOML error is: `key (line N): message`.
fn describe_parse_error(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim().replace('\n', " ");
    let Some(span) = e.span().filter(|s| s.start > 0 || s.end < text.len()) else {
        return message;
    };
    let start = span.start.min(text.len());
    let line_no = text[..start].matches('\n').count() + 1;
    let line = text.lines().nth(line_no - 1).unwrap_or("");
    match line.split_once('=') {
        Some((key, _)) => format!("{} (line {line_no}): {message}", key.trim()),
        None => format!("line {line_no}: {message}"),
    }
}

impl NodeConfigFile {
    /// Checks everything that types alone cannot; the message names the offending field.
    pub fn validate(self) -> Result<NodeConfig, String> {
        let mut sites = BTreeSet::new();
        for s in &self.sites {
            if s.trim().is_empty() {
                return Err("sites: a site name is empty".into());
            }
            if !sites.insert(s.clone()) {
                return Err(format!("sites: {s:?} is listed twice"));
            }
        }
        if sites.is_empty() {
            return Err("sites: at least one site is required".into());
        }
        let known = |site: &str, field: &str| {
            if sites.contains(site) {
                Ok(())
            } else {
                Err(format!(
                    "{field}: unknown site {site:?} (sites are {:?})",
                    self.sites
                ))
            }
        };
        known(&self.site, "site")?;
        let mut initial = BTreeMap::new();
        let mut addrs = BTreeSet::new();
        for m in &self.initial_members {
            known(&m.site, &format!("initial_members id {}", m.id))?;
            if !addrs.insert(m.addr.clone()) {
                return Err(format!("initial_members: address {} is used twice", m.addr));
            }
            let member = Member {
                addr: m.addr.clone(),
                site: m.site.clone(),
                zone: m.zone.clone(),
            };
            if initial.insert(m.id, member).is_some() {
                return Err(format!("initial_members: duplicate id {}", m.id));
            }
        }
        let addr = self
            .advertise_addr
            .clone()
            .unwrap_or_else(|| self.listen_addr.to_string());
        let member = Member {
            addr,
            site: self.site.clone(),
            zone: self.zone.clone(),
        };
        if let Some(listed) = initial.get(&self.id) {
            if listed.site != member.site || listed.addr != member.addr {
                return Err(format!(
                    "initial_members: node {} is listed as {listed} but this config says {member}",
                    self.id
                ));
            }
        }
        let r = &self.raft;
        if !(r.heartbeat_interval_ms < r.election_timeout_ms_min
            && r.election_timeout_ms_min < r.election_timeout_ms_max)
        {
            return Err("raft: need heartbeat_interval_ms < election_timeout_ms_min < election_timeout_ms_max".into());
        }
        if r.snapshot_logs_since_last == 0
            || r.segment_bytes_max < 4096
            || r.append_entries_max == 0
        {
            return Err("raft: snapshot_logs_since_last and append_entries_max must be > 0, segment_bytes_max >= 4096".into());
        }
        if self.backup.interval_s > 0 && self.backup.keep_last == 0 {
            return Err("backup: keep_last must be at least 1 when interval_s is set".into());
        }
        if self.archive.enabled() && self.archive.segment_entries_max == 0 {
            return Err("archive: segment_entries_max must be > 0".into());
        }
        let config = NodeConfig {
            id: self.id,
            member,
            listen_addr: self.listen_addr,
            data_dir: self.data_dir,
            sites,
            cluster_name: self.cluster_name,
            initial_members: initial,
            raft: self.raft,
            archive: self.archive,
            backup: self.backup,
            metrics_addr: self.metrics_addr,
        };
        config.openraft().map_err(|e| format!("raft: {e}"))?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
id = 1
site = "a"
listen_addr = "127.0.0.1:7001"
data_dir = "/tmp/x"
sites = ["a", "b", "c"]
[[initial_members]]
id = 1
site = "a"
addr = "127.0.0.1:7001"
[[initial_members]]
id = 2
site = "b"
addr = "127.0.0.1:7002"
"#;

    fn parse(text: &str) -> Result<NodeConfig, String> {
        let file: NodeConfigFile = toml::from_str(text).map_err(|e| e.message().to_string())?;
        file.validate()
    }

    #[test]
    fn accepts_a_good_config_with_defaults() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.raft.heartbeat_interval_ms, 30);
        assert_eq!(c.initial_members.len(), 2);
        assert_eq!(c.member.addr, "127.0.0.1:7001");
    }

    #[test]
    fn refuses_unknown_site_duplicate_ids_and_missing_fields() {
        let e = parse(&GOOD.replace("site = \"a\"\nlisten", "site = \"z\"\nlisten")).unwrap_err();
        assert!(e.contains("unknown site \"z\""), "{e}");
        let e = parse(&GOOD.replace("id = 2", "id = 1")).unwrap_err();
        assert!(e.contains("duplicate id 1"), "{e}");
        let e = parse(&GOOD.replace("data_dir = \"/tmp/x\"\n", "")).unwrap_err();
        assert!(e.contains("data_dir"), "{e}");
        let e = parse(&format!("{GOOD}\nbogus = 1\n")).unwrap_err();
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn refuses_inverted_timeouts() {
        let e = parse(&format!("{GOOD}\n[raft]\nelection_timeout_ms_min = 20\n")).unwrap_err();
        assert!(e.contains("heartbeat_interval_ms"), "{e}");
    }
}

#[cfg(test)]
mod deploy_example {
    #[test]
    fn the_documented_example_config_is_valid() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/config/node.toml");
        let c = super::NodeConfig::load(&path).unwrap();
        assert_eq!(
            (c.id, c.member.site.as_str(), c.initial_members.len()),
            (1, "dc-north", 3)
        );
        assert_eq!(c.member.addr, "10.1.0.11:7400");
    }

    #[test]
    fn the_compose_cluster_configs_are_valid() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/compose");
        for id in 1..=3u64 {
            let c = super::NodeConfig::load(&dir.join(format!("node-{id}.toml"))).unwrap();
            assert_eq!(c.id, id);
            assert_eq!(c.member.addr, format!("n{id}:7400"));
            assert_eq!(c.initial_members.len(), 3);
        }
    }
}
