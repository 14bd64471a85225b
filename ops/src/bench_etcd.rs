//! The etcd side of `reprise bench --target etcd`: a client for etcd's v3 gRPC API (our
//! minimal wire-compatible subset in `ops/proto/etcd_min.proto`: put, linearizable or
//! serializable range, status) and a scratch 3-member etcd cluster on 127.0.0.1 (the
//! `etcd` binary from Debian's `etcd-server` package), every member stopped by pid when
//! dropped. etcd fsyncs its WAL on every commit by default, as Reprise does.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use tonic::transport::{Channel, Endpoint};

/// Generated from `ops/proto/etcd_min.proto`.
#[allow(clippy::all)]
pub mod etcdpb {
    tonic::include_proto!("etcdserverpb");
}

use etcdpb::kv_client::KvClient;
use etcdpb::maintenance_client::MaintenanceClient;
use etcdpb::{PutRequest, RangeRequest, StatusRequest};

/// Per-request timeout: a request to a dead member fails fast and moves on.
const RPC_TIMEOUT: Duration = Duration::from_secs(2);

/// A client of one etcd cluster: one channel per member, requests go to the current one
/// (the first endpoint to begin with: the bench puts the leader there) and move to the
/// next after an error (etcd members forward writes to their leader).
#[derive(Clone)]
pub struct EtcdClient {
    channels: Arc<Vec<Channel>>,
    current: Arc<AtomicUsize>,
}

impl EtcdClient {
    /// Lazily connecting channels to `endpoints` (`host:port`).
    pub fn new(endpoints: &[String]) -> anyhow::Result<EtcdClient> {
        EtcdClient::with_timeout(endpoints, RPC_TIMEOUT)
    }

    /// Like [`EtcdClient::new`] with a per-request timeout (short for failover timing, so
    /// a request stuck on a dead leader is retried soon).
    pub fn with_timeout(endpoints: &[String], timeout: Duration) -> anyhow::Result<EtcdClient> {
        if endpoints.is_empty() {
            return Err(anyhow!("no etcd endpoints"));
        }
        let channels = endpoints
            .iter()
            .map(|e| {
                Ok(Endpoint::from_shared(format!("http://{e}"))
                    .with_context(|| format!("etcd endpoint {e:?}"))?
                    .connect_timeout(Duration::from_millis(500))
                    .timeout(timeout)
                    .tcp_nodelay(true)
                    .connect_lazy())
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(EtcdClient {
            channels: Arc::new(channels),
            current: Arc::new(AtomicUsize::new(0)),
        })
    }

    fn channel(&self) -> (usize, Channel) {
        let i = self.current.load(Ordering::Relaxed) % self.channels.len();
        (i, self.channels[i].clone())
    }

    fn failed(&self, i: usize) {
        let _ = self.current.compare_exchange(
            i,
            (i + 1) % self.channels.len(),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// One durable put; Err on any failure (the caller counts or retries).
    pub async fn put(&self, key: &[u8], value: &[u8]) -> Result<(), tonic::Status> {
        let (i, channel) = self.channel();
        let r = KvClient::new(channel)
            .put(PutRequest {
                key: key.to_vec(),
                value: value.to_vec(),
                ..Default::default()
            })
            .await;
        if r.is_err() {
            self.failed(i);
        }
        r.map(|_| ())
    }

    /// One read: linearizable unless `serializable`.
    pub async fn get(&self, key: &[u8], serializable: bool) -> Result<(), tonic::Status> {
        let (i, channel) = self.channel();
        let r = KvClient::new(channel)
            .range(RangeRequest {
                key: key.to_vec(),
                serializable,
                ..Default::default()
            })
            .await;
        if r.is_err() {
            self.failed(i);
        }
        r.map(|_| ())
    }
}

/// The status of the member at `endpoint`: (its member id, the leader's member id).
async fn member_status(endpoint: &str) -> anyhow::Result<(u64, u64)> {
    let channel = Endpoint::from_shared(format!("http://{endpoint}"))?
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(1))
        .connect()
        .await?;
    let s = MaintenanceClient::new(channel)
        .status(StatusRequest {})
        .await?
        .into_inner();
    let member = s.header.map(|h| h.member_id).unwrap_or(0);
    Ok((member, s.leader))
}

/// `endpoints` with the one whose member leads first; as given when no member answers
/// with a leader (the client then finds its way by its errors, as before).
pub async fn leader_first(endpoints: &[String]) -> Vec<String> {
    let mut leader = None;
    for e in endpoints {
        if let Ok((member, leads)) = member_status(e).await {
            if member != 0 && member == leads {
                leader = Some(e.clone());
                break;
            }
        }
    }
    match leader {
        Some(l) => std::iter::once(l.clone())
            .chain(endpoints.iter().filter(|e| **e != l).cloned())
            .collect(),
        None => endpoints.to_vec(),
    }
}

/// One member of a scratch cluster.
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    child: Option<Child>,
}

/// A scratch 3-member etcd cluster on 127.0.0.1; members are killed by pid on drop.
pub struct EtcdCluster {
    exe: PathBuf,
    dir: PathBuf,
    members: Vec<Member>,
}

/// The etcd binary: `$REPRISE_ETCD`, else `etcd` on the PATH.
pub fn etcd_exe() -> anyhow::Result<PathBuf> {
    if let Ok(p) = std::env::var("REPRISE_ETCD") {
        return Ok(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("etcd"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            anyhow!("no etcd binary on the PATH: install Debian's etcd-server package (apt-get install etcd-server) or set REPRISE_ETCD")
        })
}

impl EtcdCluster {
    /// Starts `n` members under `dir` and waits until they elected a leader.
    pub async fn start(dir: &Path, n: usize) -> anyhow::Result<EtcdCluster> {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let mut ports = reprise_chaos::backend::local::free_ports(2 * n)?.into_iter();
        let mut port = || {
            ports
                .next()
                .ok_or_else(|| anyhow!("fewer free ports than needed"))
        };
        let mut members = Vec::new();
        for i in 1..=n {
            members.push(Member {
                name: format!("m{i}"),
                client_port: port()?,
                peer_port: port()?,
                data_dir: dir.join(format!("m{i}")),
                child: None,
            });
        }
        let mut cluster = EtcdCluster {
            exe: etcd_exe()?,
            dir: dir.to_path_buf(),
            members,
        };
        for i in 0..n {
            cluster.spawn(i, "new")?;
        }
        cluster.wait_leader(Duration::from_secs(30)).await?;
        Ok(cluster)
    }

    fn spawn(&mut self, i: usize, state: &str) -> anyhow::Result<()> {
        let initial: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect();
        let m = &self.members[i];
        let log = std::fs::File::create(self.dir.join(format!("{}.log", m.name)))
            .context("etcd log file")?;
        let client_url = format!("http://127.0.0.1:{}", m.client_port);
        let peer_url = format!("http://127.0.0.1:{}", m.peer_port);
        let child = Command::new(&self.exe)
            .arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(&m.data_dir)
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &initial.join(",")])
            .args(["--initial-cluster-state", state])
            .args(["--initial-cluster-token", "reprise-bench"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {}", self.exe.display()))?;
        self.members[i].child = Some(child);
        Ok(())
    }

    /// Client endpoints, `127.0.0.1:port`.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.client_port))
            .collect()
    }

    /// Pids of the running members.
    pub fn pids(&self) -> Vec<u32> {
        self.members
            .iter()
            .filter_map(|m| m.child.as_ref().map(Child::id))
            .collect()
    }

    /// Waits until every running member reports the same leader; returns the index of
    /// the leader's member.
    pub async fn wait_leader(&self, limit: Duration) -> anyhow::Result<usize> {
        let started = Instant::now();
        loop {
            let mut ids = Vec::new();
            let mut leaders = Vec::new();
            for m in self.members.iter().filter(|m| m.child.is_some()) {
                if let Ok((id, leader)) =
                    member_status(&format!("127.0.0.1:{}", m.client_port)).await
                {
                    ids.push(Some(id));
                    leaders.push(leader);
                } else {
                    ids.push(None);
                }
            }
            let running: Vec<&Member> = self.members.iter().filter(|m| m.child.is_some()).collect();
            let agreed = leaders.len() == running.len()
                && leaders
                    .first()
                    .is_some_and(|l| *l != 0 && leaders.iter().all(|x| x == l));
            if agreed {
                if let Some(pos) = ids.iter().position(|id| *id == leaders.first().copied()) {
                    let name = &running[pos].name;
                    if let Some(i) = self.members.iter().position(|m| &m.name == name) {
                        return Ok(i);
                    }
                }
            }
            if started.elapsed() > limit {
                return Err(anyhow!(
                    "etcd members did not agree on a leader within {limit:?} (logs in {})",
                    self.dir.display()
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// kill -9 member `i` and reap it.
    pub fn kill9(&mut self, i: usize) -> anyhow::Result<()> {
        if let Some(mut child) = self.members[i].child.take() {
            child.kill().context("kill etcd member")?;
            child.wait().context("reap etcd member")?;
        }
        Ok(())
    }

    /// Restarts member `i` on its data directory.
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.spawn(i, "existing")
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut child) = m.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
