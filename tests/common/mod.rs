//! Black-box harness shared by the multi-process tests: start a local cluster of real
//! `reprise` processes (stopped by pid when the test ends, pass or fail), run a writer
//! workload that records every acknowledged write, and check that nothing acknowledged
//! was lost and that replicas converged.

#![allow(dead_code)]

pub mod pit;
pub mod s3;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reprise_api::{Client, ClientError, ClientOptions};
use reprise_chaos::backend::local::{self, LocalCluster, LocalSpec};
use tempfile::TempDir;
use tokio::task::JoinHandle;

/// The `reprise` binary under test.
pub fn exe() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_BIN_EXE_reprise"))
}

/// Runs the `reprise` binary with `--endpoints endpoints` and `args`.
pub fn reprise(endpoints: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(exe())
        .arg("--endpoints")
        .arg(endpoints)
        .args(args)
        .envs(s3::env())
        .output()
        .expect("run reprise")
}

/// Runs `reprise` like [`reprise`] and asserts it succeeded (its stderr in the message).
pub fn reprise_ok(endpoints: &str, args: &[&str]) -> std::process::Output {
    succeeded(reprise(endpoints, args), args)
}

/// Runs `reprise` like [`reprise_offline`] and asserts it succeeded.
pub fn reprise_offline_ok(args: &[&str]) -> std::process::Output {
    succeeded(reprise_offline(args), args)
}

fn succeeded(out: std::process::Output, args: &[&str]) -> std::process::Output {
    assert!(
        out.status.success(),
        "reprise {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs the `reprise` binary with `args` and no endpoints at all (as after losing every
/// node), with the test buckets' secret in its environment.
pub fn reprise_offline(args: &[&str]) -> std::process::Output {
    std::process::Command::new(exe())
        .args(args)
        .env_remove("REPRISE_ENDPOINTS")
        .envs(s3::env())
        .output()
        .expect("run reprise")
}

/// A local cluster in a temporary directory; its processes die with it.
pub struct TestCluster {
    pub cluster: LocalCluster,
    pub dir: TempDir,
}

impl TestCluster {
    pub async fn start(sites: u32, per_site: u32) -> TestCluster {
        Self::start_with(sites, per_site, "").await
    }

    /// Like `start`, with TOML appended to every node's config.
    pub async fn start_with(sites: u32, per_site: u32, extra_config: &str) -> TestCluster {
        let spec = LocalSpec {
            extra_config: extra_config.to_string(),
            ..LocalSpec::new(sites, per_site)
        };
        Self::start_spec(&spec).await
    }

    /// Starts the cluster `spec` describes.
    pub async fn start_spec(spec: &LocalSpec) -> TestCluster {
        let dir = TempDir::new().expect("temp dir");
        let cluster = local::up(&exe(), dir.path(), spec)
            .await
            .expect("cluster up");
        TestCluster { cluster, dir }
    }

    pub fn client(&self) -> Client {
        let eps: Vec<String> = self
            .cluster
            .file
            .nodes
            .iter()
            .map(|n| n.addr.clone())
            .collect();
        Client::new(
            &eps,
            ClientOptions {
                deadline: Duration::from_secs(15),
                ..Default::default()
            },
        )
        .expect("client")
    }

    /// Current leader id, awaited.
    pub async fn leader(&self) -> u64 {
        let client = self.client();
        wait_for("a leader", Duration::from_secs(20), || async {
            for n in &self.cluster.file.nodes {
                if let Ok(s) = client.status_of(&n.addr).await {
                    if s.role == "leader" {
                        return Some(s.id);
                    }
                }
            }
            None
        })
        .await
    }

    /// A running node other than `leader`.
    pub fn follower_of(&self, leader: u64) -> u64 {
        self.cluster
            .running()
            .into_iter()
            .find(|id| *id != leader)
            .expect("a running follower")
    }

    /// Site of node `id`.
    pub fn site_of(&self, id: u64) -> String {
        self.node(id).site.clone()
    }

    /// Address of node `id`.
    pub fn addr_of(&self, id: u64) -> String {
        self.node(id).addr.clone()
    }

    fn node(&self, id: u64) -> &local::LocalNode {
        self.cluster
            .file
            .nodes
            .iter()
            .find(|n| n.id == id)
            .expect("known node")
    }

    /// Waits until every running node applied the leader's last index, then asserts that
    /// they all report the same state checksum at that index.
    pub async fn assert_converged(&self) {
        let client = self.client();
        let barrier = local::barrier(&client).await.expect("barrier");
        let _ = barrier;
        let running = self.cluster.running();
        let sums = wait_for("replicas to converge", Duration::from_secs(30), || async {
            let mut sums = Vec::new();
            for id in &running {
                let addr = self.cluster.addr(*id).ok()?;
                let s = client.checksum_of(&addr).await.ok()?;
                sums.push((*id, s.applied_index, s.digest));
            }
            let first = sums.first()?.clone();
            sums.iter().all(|s| s.1 == first.1).then_some(sums)
        })
        .await;
        let digest = &sums[0].2;
        for (id, applied, d) in &sums {
            assert_eq!(
                d, digest,
                "node {id} at applied index {applied} has a different state checksum: {sums:?}"
            );
        }
    }
}

impl Drop for TestCluster {
    /// On a failing test, keep the cluster's directory (logs, data) for the post-mortem.
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.cluster.stop_all();
            let keep = std::env::temp_dir().join(format!(
                "reprise-failed-{}-{}",
                std::process::id(),
                rand_suffix()
            ));
            let copied = std::process::Command::new("cp")
                .arg("-r")
                .arg(self.dir.path())
                .arg(&keep)
                .status();
            eprintln!(
                "test failed: cluster directory kept in {} ({copied:?})",
                keep.display()
            );
        }
    }
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Polls `check` until it returns Some, failing the test after `limit`.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What a writer saw.
#[derive(Debug, Default)]
pub struct History {
    /// Keys and values whose put was acknowledged.
    pub acked: Vec<(String, String)>,
    /// Puts whose outcome is unknown (may or may not have been applied).
    pub unknown: Vec<(String, String)>,
    /// Puts that certainly failed.
    pub failed: usize,
}

/// A background writer putting unique keys until stopped.
pub struct Writer {
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<History>>,
    pub acked_count: Arc<std::sync::atomic::AtomicUsize>,
}

impl Writer {
    /// Starts `clients` concurrent writers with key prefix `prefix`.
    pub fn start(cluster: &TestCluster, prefix: &str, clients: usize) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let acked_count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let tasks = (0..clients)
            .map(|c| {
                let client = cluster.client();
                let stop = stop.clone();
                let count = acked_count.clone();
                let prefix = format!("{prefix}/{c}");
                tokio::spawn(async move {
                    let mut h = History::default();
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let (k, v) = (format!("{prefix}/{i:08}"), format!("v{i}-{prefix}"));
                        i += 1;
                        match client.put(k.as_bytes(), v.as_bytes()).await {
                            Ok(_) => {
                                h.acked.push((k, v));
                                count.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(ClientError::Indeterminate { .. }) => h.unknown.push((k, v)),
                            Err(_) => h.failed += 1,
                        }
                    }
                    h
                })
            })
            .collect();
        Writer {
            stop,
            tasks,
            acked_count,
        }
    }

    /// Acknowledged writes so far.
    pub fn acked(&self) -> usize {
        self.acked_count.load(Ordering::Relaxed)
    }

    /// Waits until `n` more writes than now were acknowledged.
    pub async fn wait_progress(&self, n: usize) {
        let target = self.acked() + n;
        wait_for(
            "writes to be acknowledged",
            Duration::from_secs(30),
            || async { (self.acked() >= target).then_some(()) },
        )
        .await;
    }

    /// Stops the writers and returns the merged history.
    pub async fn stop(self) -> History {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = History::default();
        for t in self.tasks {
            let h = t.await.expect("writer task");
            all.acked.extend(h.acked);
            all.unknown.extend(h.unknown);
            all.failed += h.failed;
        }
        all
    }
}

/// Asserts every acknowledged write is readable (linearizably) with its value, and that
/// writes of unknown outcome are either absent or carry their value.
pub async fn assert_no_lost_writes(client: &Client, history: &History) {
    let mut lost = Vec::new();
    for (k, v) in &history.acked {
        let got = client.get(k.as_bytes(), false).await.expect("read back").kv;
        if got.map(|kv| kv.value) != Some(v.as_bytes().to_vec()) {
            lost.push(k.clone());
        }
    }
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost: {:?}",
        lost.len(),
        history.acked.len(),
        &lost[..lost.len().min(10)]
    );
    for (k, v) in &history.unknown {
        if let Some(kv) = client.get(k.as_bytes(), false).await.expect("read back").kv {
            assert_eq!(kv.value, v.as_bytes(), "key {k} holds a value nobody wrote");
        }
    }
}

/// Stops a cluster that another process started (a restore) by pid when dropped.
pub struct StopOnDrop(pub std::path::PathBuf);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = reprise_chaos::backend::local::down(&self.0);
    }
}

/// Damages a file in place: xors the byte in its middle with `mask`.
pub fn flip_middle_byte(path: &std::path::Path, mask: u8) {
    let mut bytes = std::fs::read(path).expect("read file to damage");
    let mid = bytes.len() / 2;
    bytes[mid] ^= mask;
    std::fs::write(path, &bytes).expect("write damaged file");
}

/// Destroys a directory a running node may still be writing into (a site's shards while
/// the log archive runs): moved aside first, atomically, so the node's next file lands in
/// a fresh directory instead of racing the deletion, then deleted.
pub fn burn_dir(path: &std::path::Path) {
    let mut aside = path.as_os_str().to_owned();
    aside.push(".burned");
    let aside = std::path::PathBuf::from(aside);
    std::fs::rename(path, &aside).expect("move the directory aside");
    std::fs::remove_dir_all(&aside).expect("delete the moved directory");
}
