//! Local backend: N sites × M nodes as `reprise node` processes on 127.0.0.1, each with
//! its own config, data directory and log file under one directory, described by
//! `DIR/cluster.json`. `up` returns only when a leader commits writes; every process is
//! stopped by pid (checked against its command line), also when the owner panics. Peer
//! links are cut through each node's partition seam (`cut`).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use reprise_api::client::Retry;
use reprise_api::pb::admin as apb;
use reprise_api::{Client, ClientError, ClientOptions};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// File, inside the cluster directory, that lists the nodes.
pub const CLUSTER_FILE: &str = "cluster.json";
/// Lock file serialising updates of `cluster.json` (`ClusterFile::update`).
pub const CLUSTER_LOCK: &str = "cluster.lock";
/// How long a started node may take to answer.
const SERVE_DEADLINE: Duration = Duration::from_secs(30);

/// Failures of the local backend.
#[derive(Debug, Error)]
pub enum LocalError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    ClusterFile { path: PathBuf, reason: String },
    #[error("start node {id}: {source}")]
    Spawn { id: u64, source: std::io::Error },
    #[error("node {id} exited ({status}) before serving; log {log}:\n{tail}")]
    Exited {
        id: u64,
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error("node {id} did not answer within {after:?}; log {log}")]
    NotServing {
        id: u64,
        after: Duration,
        log: PathBuf,
    },
    #[error("a local cluster is already running in {0}; run `reprise cluster local down --dir {0}` first")]
    AlreadyRunning(String),
    #[error("{0} already holds a stopped local cluster (its data would not match the new one); restart its nodes with `reprise cluster local start --dir {0} --id N`, or remove the directory")]
    AlreadyHolds(String),
    #[error("{0}")]
    Invalid(String),
    #[error("no node {0} in this cluster")]
    UnknownNode(u64),
    #[error("node {0} is not running")]
    NotRunning(u64),
    #[error("{what}: {source}")]
    Client {
        what: &'static str,
        source: ClientError,
    },
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> LocalError + 'a {
    move |source| LocalError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

type Result<T, E = LocalError> = std::result::Result<T, E>;

/// One node of a local cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LocalNode {
    pub id: u64,
    pub site: String,
    pub addr: String,
    pub pid: u32,
    pub data_dir: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
}

/// Contents of `cluster.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterFile {
    pub cluster_name: String,
    pub nodes: Vec<LocalNode>,
}

impl ClusterFile {
    /// Comma-separated client endpoints.
    pub fn endpoints(&self) -> String {
        self.nodes
            .iter()
            .map(|n| n.addr.clone())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Reads `dir/cluster.json`.
    pub fn read(dir: &Path) -> Result<ClusterFile> {
        let path = dir.join(CLUSTER_FILE);
        let text = fs::read_to_string(&path).map_err(io("read", &path))?;
        serde_json::from_str(&text).map_err(|e| LocalError::ClusterFile {
            path,
            reason: e.to_string(),
        })
    }

    /// Re-reads `dir/cluster.json`, applies `change` and writes it back, holding an
    /// exclusive lock on `dir/cluster.lock` throughout: updates from commands run at the
    /// same time (nodes restarted together) are applied one after another, none lost.
    pub fn update(
        dir: &Path,
        change: impl FnOnce(&mut ClusterFile) -> Result<()>,
    ) -> Result<ClusterFile> {
        let lock_path = dir.join(CLUSTER_LOCK);
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io("open", &lock_path))?;
        lock.lock().map_err(io("lock", &lock_path))?;
        let mut file = ClusterFile::read(dir)?;
        change(&mut file)?;
        file.write(dir)?;
        Ok(file)
    }

    /// Writes `dir/cluster.json` atomically (through a temporary file of this process).
    pub fn write(&self, dir: &Path) -> Result<()> {
        let tmp = dir.join(format!("{CLUSTER_FILE}.{}.tmp", std::process::id()));
        let text = serde_json::to_vec_pretty(self).map_err(|e| LocalError::ClusterFile {
            path: tmp.clone(),
            reason: e.to_string(),
        })?;
        fs::write(&tmp, text).map_err(io("write", &tmp))?;
        fs::rename(&tmp, dir.join(CLUSTER_FILE)).map_err(io("rename into place", &tmp))
    }

    /// The node with id `id`.
    /// The first node of `site`, if the cluster has one there.
    pub fn node_at(&self, site: &str) -> Option<&LocalNode> {
        self.nodes.iter().find(|n| n.site == site)
    }

    /// The distinct sites of the cluster's nodes, sorted.
    pub fn sites(&self) -> Vec<String> {
        let mut sites: Vec<String> = self.nodes.iter().map(|n| n.site.clone()).collect();
        sites.sort();
        sites.dedup();
        sites
    }

    pub fn node(&self, id: u64) -> Result<&LocalNode> {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .ok_or(LocalError::UnknownNode(id))
    }
}

/// `n` distinct free TCP ports on 127.0.0.1, bound then released (the nodes bind them
/// right after). Every listener is held until all are chosen, so the kernel cannot hand
/// out the same port twice, as it may for binds made one after another.
pub fn free_ports(n: usize) -> Result<Vec<u16>> {
    let any = Path::new("127.0.0.1:0");
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").map_err(io("bind", any)))
        .collect::<Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()).map_err(io("bind", any)))
        .collect()
}

fn node_config(
    node: &LocalNode,
    sites: &[String],
    all: &[LocalNode],
    cluster_name: &str,
) -> String {
    let mut s = format!(
        "# Generated by `reprise cluster local up`.\nid = {}\nsite = \"{}\"\nlisten_addr = \"{}\"\ndata_dir = \"{}\"\nsites = [{}]\ncluster_name = \"{cluster_name}\"\n",
        node.id,
        node.site,
        node.addr,
        node.data_dir.display(),
        sites.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", ")
    );
    for m in all {
        s.push_str(&format!(
            "\n[[initial_members]]\nid = {}\nsite = \"{}\"\naddr = \"{}\"\n",
            m.id, m.site, m.addr
        ));
    }
    s
}

/// Starts the node process described by `node` with the `reprise` binary `exe`, in its
/// own process group (a Ctrl-C on the caller's terminal does not reach it).
pub fn spawn_node(exe: &Path, node: &LocalNode, env: &[(String, String)]) -> Result<Child> {
    use std::os::unix::process::CommandExt;
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&node.log)
        .map_err(io("open", &node.log))?;
    let log_err = log.try_clone().map_err(io("open", &node.log))?;
    Command::new(exe)
        .arg("node")
        .arg("start")
        .arg("--config")
        .arg(&node.config)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .process_group(0)
        .spawn()
        .map_err(|source| LocalError::Spawn {
            id: node.id,
            source,
        })
}

/// Last lines of a node's log, for error messages.
pub fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join("\n")
}

/// Waits until the node answers admin status, failing early if its process exits.
pub async fn wait_serving(node: &LocalNode, child: &mut Child, deadline: Duration) -> Result<()> {
    let client = Client::new(std::slice::from_ref(&node.addr), ClientOptions::default()).map_err(
        |source| LocalError::Client {
            what: "connect",
            source,
        },
    )?;
    let started = Instant::now();
    loop {
        if client.status_of(&node.addr).await.is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(LocalError::Exited {
                id: node.id,
                status: status.to_string(),
                log: node.log.clone(),
                tail: log_tail(&node.log),
            });
        }
        if started.elapsed() > deadline {
            return Err(LocalError::NotServing {
                id: node.id,
                after: deadline,
                log: node.log.clone(),
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Commits a no-op through the leader; returns the leader id.
pub async fn barrier(client: &Client) -> Result<u64> {
    client.barrier().await.map_err(|source| LocalError::Client {
        what: "wait for a leader to commit",
        source,
    })
}

/// A running local cluster: its description plus the child handles of this process.
pub struct LocalCluster {
    /// The `reprise` binary that runs the nodes.
    pub exe: PathBuf,
    pub dir: PathBuf,
    pub file: ClusterFile,
    pub children: BTreeMap<u64, Child>,
    /// TOML appended to every node config (also to nodes added later).
    pub extra_config: String,
    /// Environment of every node process.
    pub env: Vec<(String, String)>,
}

/// What to start.
#[derive(Debug, Clone, Default)]
pub struct LocalSpec {
    pub sites: u32,
    pub nodes_per_site: u32,
    /// TOML appended to every node's config (for example a `[raft]` table).
    pub extra_config: String,
    /// Environment variables set on every node process.
    pub env: Vec<(String, String)>,
    /// Cluster name (default "reprise-local").
    pub cluster_name: Option<String>,
    /// Start from this snapshot (a restore) instead of an empty, initialized cluster.
    pub seed_snapshot: Option<PathBuf>,
}

impl LocalSpec {
    /// `sites` × `nodes_per_site` nodes with default settings.
    pub fn new(sites: u32, nodes_per_site: u32) -> Self {
        LocalSpec {
            sites,
            nodes_per_site,
            ..Default::default()
        }
    }
}

/// Starts the nodes of `spec` under `dir` running `exe`, initializes the cluster, waits
/// for a committed write, and writes `cluster.json`.
pub async fn up(exe: &Path, dir: &Path, spec: &LocalSpec) -> Result<LocalCluster> {
    let (sites, per_site, extra_config) =
        (spec.sites, spec.nodes_per_site, spec.extra_config.as_str());
    if sites == 0 || per_site == 0 {
        return Err(LocalError::Invalid(
            "--sites and --nodes-per-site must be at least 1".into(),
        ));
    }
    if let Ok(existing) = ClusterFile::read(dir) {
        if existing.nodes.iter().any(is_our_process) {
            return Err(LocalError::AlreadyRunning(dir.display().to_string()));
        }
        return Err(LocalError::AlreadyHolds(dir.display().to_string()));
    }
    fs::create_dir_all(dir).map_err(io("create", dir))?;
    let dir = dir.canonicalize().map_err(io("resolve", dir))?;
    let site_names: Vec<String> = (1..=sites).map(|s| format!("site-{s}")).collect();
    let mut ports = free_ports((sites * per_site) as usize)?.into_iter();
    let mut nodes = Vec::new();
    for (s, site) in site_names.iter().enumerate() {
        for k in 0..per_site {
            let id = (s as u32 * per_site + k + 1) as u64;
            let port = ports
                .next()
                .ok_or_else(|| LocalError::Invalid("fewer free ports than nodes".into()))?;
            nodes.push(plan_node(&dir, id, site, port)?);
        }
    }
    let cluster_name = spec
        .cluster_name
        .clone()
        .unwrap_or_else(|| "reprise-local".into());
    if let Some(snapshot) = &spec.seed_snapshot {
        seed(snapshot, &nodes)?;
    }
    let mut cluster = LocalCluster {
        exe: exe.to_path_buf(),
        dir: dir.clone(),
        file: ClusterFile {
            cluster_name: cluster_name.clone(),
            nodes: Vec::new(),
        },
        children: BTreeMap::new(),
        extra_config: extra_config.to_string(),
        env: spec.env.clone(),
    };
    for mut node in nodes.clone() {
        let config = format!(
            "{}{extra_config}",
            node_config(&node, &site_names, &nodes, &cluster_name)
        );
        fs::write(&node.config, config).map_err(io("write", &node.config))?;
        let child = spawn_node(exe, &node, &spec.env)?;
        node.pid = child.id();
        cluster.children.insert(node.id, child);
        cluster.file.nodes.push(node);
    }
    cluster.file.write(&dir)?;
    cluster.bootstrap(spec.seed_snapshot.is_none()).await?;
    Ok(cluster)
}

/// Seeds the planned nodes' data directories from a restored snapshot.
fn seed(snapshot: &Path, nodes: &[LocalNode]) -> Result<()> {
    let members: Vec<(u64, reprise_storage::Member)> = nodes
        .iter()
        .map(|n| {
            (
                n.id,
                reprise_storage::Member {
                    addr: n.addr.clone(),
                    site: n.site.clone(),
                    zone: None,
                },
            )
        })
        .collect();
    let dirs: Vec<PathBuf> = nodes.iter().map(|n| n.data_dir.clone()).collect();
    reprise_storage::backup::seed::seed_data_dirs(snapshot, &members, &dirs)
        .map_err(|e| LocalError::Invalid(format!("seed from {}: {e}", snapshot.display())))?;
    Ok(())
}

fn plan_node(dir: &Path, id: u64, site: &str, port: u16) -> Result<LocalNode> {
    let home = dir.join(format!("node-{id}"));
    fs::create_dir_all(&home).map_err(io("create", &home))?;
    Ok(LocalNode {
        id,
        site: site.to_string(),
        addr: format!("127.0.0.1:{port}"),
        pid: 0,
        data_dir: home.join("data"),
        config: home.join("node.toml"),
        log: home.join("node.log"),
    })
}

/// Which links between the victims and the others a partition cuts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Every link restored.
    Heal,
    /// Both directions of every link.
    Both,
    /// Only messages from the others to the victims (the victims' own requests, and the
    /// answers to them, still arrive).
    IntoVictims,
}

impl LocalCluster {
    async fn bootstrap(&mut self, initialize: bool) -> Result<()> {
        for node in &self.file.nodes {
            let child = self
                .children
                .get_mut(&node.id)
                .ok_or(LocalError::NotRunning(node.id))?;
            wait_serving(node, child, SERVE_DEADLINE).await?;
        }
        if !initialize {
            barrier(&self.client()?).await?;
            return Ok(());
        }
        let members: Vec<apb::MemberInfo> = self
            .file
            .nodes
            .iter()
            .map(|n| apb::MemberInfo {
                id: n.id,
                addr: n.addr.clone(),
                site: n.site.clone(),
                zone: String::new(),
                voter: true,
            })
            .collect();
        let first = self
            .file
            .nodes
            .first()
            .ok_or_else(|| LocalError::Invalid("no nodes".into()))?;
        let client = Client::new(std::slice::from_ref(&first.addr), ClientOptions::default())
            .map_err(|source| LocalError::Client {
                what: "connect",
                source,
            })?;
        client
            .initialize(members)
            .await
            .map_err(|source| LocalError::Client {
                what: "initialize the cluster",
                source,
            })?;
        barrier(&self.client()?).await?;
        Ok(())
    }

    /// A client over every node.
    pub fn client(&self) -> Result<Client> {
        let eps: Vec<String> = self.file.nodes.iter().map(|n| n.addr.clone()).collect();
        Client::new(&eps, ClientOptions::default()).map_err(|source| LocalError::Client {
            what: "connect",
            source,
        })
    }

    /// Sends `signal` to node `id`'s process.
    pub fn signal(&self, id: u64, signal: Signal) -> Result<()> {
        let child = self.children.get(&id).ok_or(LocalError::NotRunning(id))?;
        kill(Pid::from_raw(child.id() as i32), signal).map_err(|e| LocalError::Io {
            what: "signal",
            path: PathBuf::from(format!("pid {}", child.id())),
            source: e.into(),
        })
    }

    /// SIGKILLs node `id` and reaps it.
    pub fn kill9(&mut self, id: u64) -> Result<()> {
        let mut child = self
            .children
            .remove(&id)
            .ok_or(LocalError::NotRunning(id))?;
        let what = PathBuf::from(format!("node {id}"));
        child.kill().map_err(io("kill", &what))?;
        child.wait().map_err(io("reap", &what))?;
        Ok(())
    }

    /// Starts node `id` again on its existing data directory and waits until it serves.
    pub async fn restart(&mut self, id: u64) -> Result<()> {
        let idx = self
            .file
            .nodes
            .iter()
            .position(|n| n.id == id)
            .ok_or(LocalError::UnknownNode(id))?;
        let mut child = spawn_node(&self.exe, &self.file.nodes[idx], &self.env)?;
        self.file.nodes[idx].pid = child.id();
        let served = wait_serving(&self.file.nodes[idx], &mut child, SERVE_DEADLINE).await;
        self.children.insert(id, child);
        served?;
        self.file.write(&self.dir)
    }

    /// Deletes node `id`'s data directory (the node must be stopped): its disk is gone.
    pub fn wipe(&self, id: u64) -> Result<()> {
        if self.children.contains_key(&id) {
            return Err(LocalError::Invalid(format!(
                "node {id} is running; kill it before wiping its disk"
            )));
        }
        let dir = &self.file.node(id)?.data_dir;
        match fs::remove_dir_all(dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(LocalError::Io {
                what: "wipe",
                path: dir.clone(),
                source: e,
            }),
        }
    }

    /// Creates and starts a new, uninitialized node at `site` (it joins once added to the
    /// membership). Returns its description.
    pub async fn spawn_new_node(&mut self, id: u64, site: &str) -> Result<LocalNode> {
        if self.file.nodes.iter().any(|n| n.id == id) {
            return Err(LocalError::Invalid(format!(
                "node id {id} is already used in {}",
                self.dir.display()
            )));
        }
        // A stopped node's port is free to the kernel but still named in the membership.
        let used: Vec<&str> = self.file.nodes.iter().map(|n| n.addr.as_str()).collect();
        let mut port = None;
        for _ in 0..16 {
            let candidate = free_ports(1)?[0];
            if !used.contains(&format!("127.0.0.1:{candidate}").as_str()) {
                port = Some(candidate);
                break;
            }
        }
        let port =
            port.ok_or_else(|| LocalError::Invalid("no free port unused by the cluster".into()))?;
        let mut node = plan_node(&self.dir, id, site, port)?;
        let mut sites: Vec<String> = self.file.nodes.iter().map(|n| n.site.clone()).collect();
        sites.push(site.to_string());
        sites.sort();
        sites.dedup();
        let config = format!(
            "{}{}",
            node_config(&node, &sites, &[], &self.file.cluster_name),
            self.extra_config
        );
        fs::write(&node.config, config).map_err(io("write", &node.config))?;
        let mut child = spawn_node(&self.exe, &node, &self.env)?;
        node.pid = child.id();
        let served = wait_serving(&node, &mut child, SERVE_DEADLINE).await;
        self.children.insert(id, child);
        self.file.nodes.push(node.clone());
        served?;
        self.file.write(&self.dir)?;
        Ok(node)
    }

    /// Address of node `id`.
    pub fn addr(&self, id: u64) -> Result<String> {
        Ok(self.file.node(id)?.addr.clone())
    }

    /// Cuts (or, with `Cut::Heal`, restores) the links between `victims` and the other
    /// running nodes through each node's partition seam; clients still reach every node.
    /// Returns whether every node confirmed exactly the links asked for.
    pub async fn cut(&self, victims: &[u64], cut: Cut) -> Result<bool> {
        let running = self.running();
        let others: Vec<u64> = running
            .iter()
            .copied()
            .filter(|id| !victims.contains(id))
            .collect();
        let mut confirmed = true;
        for id in &running {
            let is_victim = victims.contains(id);
            let (mut to, mut from): (Vec<u64>, Vec<u64>) = match (cut, is_victim) {
                (Cut::Heal, _) => (Vec::new(), Vec::new()),
                (Cut::Both, true) => (others.clone(), others.clone()),
                (Cut::Both, false) => (victims.to_vec(), victims.to_vec()),
                // The others do not send to the victims, and the victims refuse what the
                // others send: that direction is gone both ways it could be observed.
                (Cut::IntoVictims, true) => (Vec::new(), others.clone()),
                (Cut::IntoVictims, false) => (victims.to_vec(), Vec::new()),
            };
            to.sort_unstable();
            from.sort_unstable();
            let client =
                Client::new(&[self.addr(*id)?], ClientOptions::default()).map_err(|source| {
                    LocalError::Client {
                        what: "connect",
                        source,
                    }
                })?;
            let asked = apb::PartitionLinks {
                block_to: to,
                block_from: from,
            };
            let resp = client
                .call(Retry::Idempotent, |c| {
                    let asked = asked.clone();
                    async move { Client::admin(c).set_partition(asked).await }
                })
                .await
                .map_err(|source| LocalError::Client {
                    what: "set a partition",
                    source,
                })?;
            confirmed &= resp == asked;
        }
        Ok(confirmed)
    }

    /// Ids of nodes whose processes this cluster handle runs.
    pub fn running(&self) -> Vec<u64> {
        self.children.keys().copied().collect()
    }

    /// Lets the processes outlive this handle (`cluster local up` hands them to the user).
    pub fn detach(&mut self) {
        self.children.clear();
    }

    /// Stops every child started by this process (SIGCONT, SIGTERM, then SIGKILL after 10 s).
    pub fn stop_all(&mut self) -> Vec<u64> {
        let mut stopped = Vec::new();
        for (id, mut child) in std::mem::take(&mut self.children) {
            let pid = Pid::from_raw(child.id() as i32);
            let _ = kill(pid, Signal::SIGCONT);
            let _ = kill(pid, Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
            stopped.push(id);
        }
        stopped
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// Whether `node.pid` is alive and is this node's process (not a reused pid).
pub fn is_our_process(node: &LocalNode) -> bool {
    if node.pid == 0 {
        return false;
    }
    let stat = fs::read_to_string(format!("/proc/{}/stat", node.pid)).unwrap_or_default();
    let zombie = stat
        .rsplit(')')
        .next()
        .is_some_and(|rest| rest.trim_start().starts_with('Z'));
    if stat.is_empty() || zombie {
        return false;
    }
    let cmdline = fs::read(format!("/proc/{}/cmdline", node.pid)).unwrap_or_default();
    String::from_utf8_lossy(&cmdline).contains(node.config.to_string_lossy().as_ref())
}

/// Stops every running node listed in `dir/cluster.json`; returns (id, pid) of each.
pub fn down(dir: &Path) -> Result<Vec<(u64, u32)>> {
    let file = ClusterFile::read(dir)?;
    let running: Vec<&LocalNode> = file.nodes.iter().filter(|n| is_our_process(n)).collect();
    for n in &running {
        let _ = kill(Pid::from_raw(n.pid as i32), Signal::SIGCONT);
        let _ = kill(Pid::from_raw(n.pid as i32), Signal::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && running.iter().any(|n| is_our_process(n)) {
        std::thread::sleep(Duration::from_millis(20));
    }
    for n in running.iter().filter(|n| is_our_process(n)) {
        let _ = kill(Pid::from_raw(n.pid as i32), Signal::SIGKILL);
    }
    Ok(running.iter().map(|n| (n.id, n.pid)).collect())
}

/// The kernel's state letter for `pid` (R, S, T for stopped, Z for zombie, …), if it exists.
pub fn process_state(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')').next()?.trim_start().chars().next()
}
