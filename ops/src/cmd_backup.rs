//! `reprise backup create|list|verify`: erasure-coded backups across sites.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, Context};
use clap::Subcommand;
use reprise_api::client::Retry;
use reprise_api::pb::backup::backup_client::BackupClient;
use reprise_api::pb::backup::{
    CreateBackupRequest, GetShardsRequest, ListBackupsRequest, ListBackupsResponse,
};
use reprise_api::Client;
use reprise_storage::backup::manifest::Manifest;
use reprise_storage::backup::reconstruct::{
    rebuild, rebuild_from, Rebuilt, ReconstructError, ShardSource,
};
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tonic::transport::Channel;

use crate::cli::Global;
use crate::output::{print_json, print_table, CliError, CliResult, Format};

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Snapshot the state now and store it erasure-coded across sites.
    Create {
        /// Stripe size in bytes (default 4 MiB).
        #[arg(long, default_value_t = 0)]
        stripe_bytes: u32,
        /// Data shards k (default: derived from the number of sites).
        #[arg(long, default_value_t = 0)]
        data_shards: u32,
        /// Parity shards m (default: derived from the number of sites).
        #[arg(long, default_value_t = 0)]
        parity_shards: u32,
    },
    /// Backups, their size and instant, shards present per site, survivability.
    List,
    /// Read every shard, check checksums, rebuild, compare the state checksum.
    Verify { id: String },
}

fn backup_client(c: Channel) -> BackupClient<Channel> {
    BackupClient::new(c)
        .max_decoding_message_size(reprise_api::limits::GRPC_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(reprise_api::limits::GRPC_MESSAGE_BYTES_MAX)
}

fn hlc_time(hlc: u64) -> String {
    let ms = hlc >> 16;
    format!("{}.{:03} s since the Unix epoch", ms / 1000, ms % 1000)
}

/// Runs a backup command.
pub async fn run(cmd: BackupCommand, global: &Global) -> CliResult {
    let client = global.client()?;
    match cmd {
        BackupCommand::Create {
            stripe_bytes,
            data_shards,
            parity_shards,
        } => {
            if global.output == Format::Table {
                eprintln!("creating a backup: snapshot, encode, store shards on every site...");
            }
            let client = global.long_client()?;
            let started = Instant::now();
            let req = CreateBackupRequest {
                stripe_bytes,
                data_shards,
                parity_shards,
            };
            let resp = client
                .call(Retry::Idempotent, |c| async move {
                    backup_client(c).create_backup(req).await
                })
                .await?;
            let manifest = Manifest::from_json(&resp.json).map_err(anyhow::Error::from)?;
            let took = started.elapsed();
            match global.output {
                Format::Json => print_json(
                    &serde_json::json!({ "manifest": manifest, "took_ms": took.as_millis() }),
                ),
                Format::Table => {
                    print_manifest(&manifest);
                    let bytes: u64 = manifest.objects.iter().map(|o| o.bytes).sum();
                    println!(
                        "took {:.2} s ({:.1} MB/s of state)",
                        took.as_secs_f64(),
                        bytes as f64 / 1e6 / took.as_secs_f64().max(1e-9)
                    );
                    Ok(())
                }
            }
        }
        BackupCommand::List => list(&client, global.output).await,
        BackupCommand::Verify { id } => verify(&client, &id, global.output).await,
    }
}

fn print_manifest(m: &Manifest) {
    let bytes: u64 = m.objects.iter().map(|o| o.bytes).sum();
    let stripes: u64 = m.objects.iter().map(|o| o.stripes).sum();
    println!("backup {} of cluster {}", m.backup_id, m.cluster_name);
    println!(
        "  state at log index {} (term {}), hlc {}",
        m.log_index,
        m.term,
        hlc_time(m.hlc)
    );
    println!(
        "  {bytes} bytes in {stripes} stripes, {}+{} Reed-Solomon, stripe {} bytes",
        m.data_shards, m.parity_shards, m.stripe_bytes
    );
    for s in &m.shards {
        println!(
            "  shard {} -> site {} (node {} at {}), {} bytes",
            s.shard, s.site, s.node, s.addr, s.bytes
        );
    }
    println!(
        "  survives loss of any {} site(s)",
        m.survivable_site_losses()
    );
}

/// Every node's view of the backups it holds.
async fn holdings(client: &Client) -> CliResult<Vec<ListBackupsResponse>> {
    let status = crate::cmd_cluster::gather(client).await?;
    let mut out = Vec::new();
    for m in status.members.iter().filter(|m| m.reachable) {
        let eps = [m.addr.clone()];
        let one = Client::new(&eps, Default::default())?;
        if let Ok(r) = one
            .call(Retry::Idempotent, |c| async move {
                backup_client(c).list_backups(ListBackupsRequest {}).await
            })
            .await
        {
            out.push(r);
        }
    }
    Ok(out)
}

#[derive(Serialize)]
struct ListRow {
    backup_id: String,
    log_index: u64,
    hlc: u64,
    bytes: u64,
    shards_present: usize,
    shards_total: usize,
    present_per_site: BTreeMap<String, usize>,
    survives_site_losses: usize,
}

async fn list(client: &Client, format: Format) -> CliResult {
    let mut manifests: BTreeMap<String, Manifest> = BTreeMap::new();
    let mut present: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for node in holdings(client).await? {
        for b in node.backups {
            if let Ok(m) = Manifest::from_json(&b.manifest_json) {
                manifests.entry(b.backup_id.clone()).or_insert(m);
            }
            *present
                .entry(b.backup_id)
                .or_default()
                .entry(node.site.clone())
                .or_default() += b.shards.len();
        }
    }
    let archive = archive_summary(manifests.values().filter(|m| m.is_log_segment()), &present);
    let rows: Vec<ListRow> = manifests
        .values()
        .filter(|m| !m.is_log_segment())
        .map(|m| {
            let per_site = present.get(&m.backup_id).cloned().unwrap_or_default();
            ListRow {
                backup_id: m.backup_id.clone(),
                log_index: m.log_index,
                hlc: m.hlc,
                bytes: m.objects.iter().map(|o| o.bytes).sum(),
                shards_present: per_site.values().sum(),
                shards_total: m.shards.len(),
                present_per_site: per_site,
                survives_site_losses: m.survivable_site_losses(),
            }
        })
        .collect();
    match format {
        Format::Json => print_json(&serde_json::json!({ "backups": rows, "archive": archive })),
        Format::Table => {
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r.backup_id.clone(),
                        r.log_index.to_string(),
                        hlc_time(r.hlc),
                        r.bytes.to_string(),
                        format!("{}/{}", r.shards_present, r.shards_total),
                        r.present_per_site
                            .iter()
                            .map(|(s, n)| format!("{s}:{n}"))
                            .collect::<Vec<_>>()
                            .join(" "),
                        format!("any {} site(s)", r.survives_site_losses),
                    ]
                })
                .collect();
            print_table(
                &[
                    "ID", "INDEX", "INSTANT", "BYTES", "SHARDS", "PER SITE", "SURVIVES",
                ],
                &table,
            );
            print_archive(&archive);
            Ok(())
        }
    }
}

/// The log archive as `backup list` shows it: one line, not one row per segment.
#[derive(Serialize)]
struct ArchiveSummary {
    segments: usize,
    first_index: Option<u64>,
    last_index: Option<u64>,
    /// Stamp of the newest archived write: the newest instant a restore can reach.
    newest_hlc: u64,
    newest_instant: Option<String>,
    bytes: u64,
    /// Ranges of log indices in no segment, between the first and the last.
    gaps: Vec<(u64, u64)>,
    /// Segments with fewer shards present than placed, and the fewest sites any segment
    /// can still lose.
    degraded_segments: usize,
    survives_site_losses: Option<usize>,
}

fn archive_summary<'a>(
    segments: impl Iterator<Item = &'a Manifest>,
    present: &BTreeMap<String, BTreeMap<String, usize>>,
) -> ArchiveSummary {
    let mut segs: Vec<&Manifest> = segments.collect();
    segs.sort_by_key(|m| (m.first_index, m.log_index));
    let mut gaps = Vec::new();
    let mut reach: Option<u64> = None;
    for m in &segs {
        if let Some(r) = reach {
            if m.first_index > r + 1 {
                gaps.push((r + 1, m.first_index - 1));
            }
        }
        reach = Some(reach.unwrap_or(0).max(m.log_index));
    }
    let newest_hlc = segs.iter().map(|m| m.hlc).max().unwrap_or(0);
    ArchiveSummary {
        segments: segs.len(),
        first_index: segs.first().map(|m| m.first_index),
        last_index: reach,
        newest_hlc,
        newest_instant: (newest_hlc > 0).then(|| crate::cmd_restore::hlc_instant(newest_hlc)),
        bytes: segs
            .iter()
            .flat_map(|m| m.objects.iter())
            .map(|o| o.bytes)
            .sum(),
        gaps,
        degraded_segments: segs
            .iter()
            .filter(|m| {
                let held: usize = present
                    .get(&m.backup_id)
                    .map(|p| p.values().sum())
                    .unwrap_or(0);
                held < m.shards.len()
            })
            .count(),
        survives_site_losses: segs.iter().map(|m| m.survivable_site_losses()).min(),
    }
}

fn print_archive(a: &ArchiveSummary) {
    match (a.first_index, a.last_index) {
        (Some(first), Some(last)) => {
            println!(
                "log archive: {} segment(s), indices {first}..={last}, {} bytes, newest write {}",
                a.segments,
                a.bytes,
                a.newest_instant.as_deref().unwrap_or("-")
            );
            for (from, to) in &a.gaps {
                println!("  gap: entries {from}..={to} are in no segment");
            }
            if a.degraded_segments > 0 {
                println!(
                    "  warning: {} segment(s) have shards missing on some site",
                    a.degraded_segments
                );
            }
        }
        _ => println!("log archive: empty"),
    }
}

async fn find_manifest(client: &Client, id: &str) -> CliResult<Manifest> {
    for node in holdings(client).await? {
        for b in node.backups {
            if b.backup_id == id {
                if let Ok(m) = Manifest::from_json(&b.manifest_json) {
                    return Ok(m);
                }
            }
        }
    }
    Err(CliError::NotFound(format!(
        "no site holds a manifest for backup {id:?}"
    )))
}

/// Asks the node at `addr` for one shard file; None when the node or the file is
/// unavailable.
async fn open_shard_stream(
    addr: &str,
    id: &str,
    object_id: u64,
    shard: u8,
) -> Option<tonic::Streaming<reprise_api::pb::backup::ShardChunk>> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .ok()?
        .connect_timeout(std::time::Duration::from_secs(2))
        .connect()
        .await
        .ok()?;
    let req = GetShardsRequest {
        backup_id: id.to_string(),
        object_id,
        shard: u32::from(shard),
    };
    Some(
        backup_client(channel)
            .get_shards(req)
            .await
            .ok()?
            .into_inner(),
    )
}

/// Downloads one shard file; None when the node or the file is unavailable.
async fn fetch_shard(
    addr: &str,
    id: &str,
    object_id: u64,
    shard: u8,
    into: &Path,
) -> Option<PathBuf> {
    let mut stream = open_shard_stream(addr, id, object_id, shard).await?;
    let path = into.join(format!("obj-{object_id}.shard-{shard}"));
    let mut file = tokio::fs::File::create(&path).await.ok()?;
    while let Some(chunk) = stream.message().await.ok()? {
        file.write_all(&chunk.data).await.ok()?;
    }
    file.flush().await.ok()?;
    Some(path)
}

#[derive(Serialize)]
struct VerifyOut<'a> {
    backup_id: &'a str,
    restorable: bool,
    digest_matches: bool,
    rebuilt: Option<&'a Rebuilt>,
    error: Option<String>,
    took_ms: u128,
}

/// Fetches every shard of backup `id` and rebuilds its snapshot into `out` (nothing is
/// left at `out` when the rebuild fails). Returns the manifest and the rebuild outcome.
pub async fn fetch_and_rebuild(
    client: &Client,
    id: &str,
    out: &Path,
) -> CliResult<(Manifest, Result<Rebuilt, ReconstructError>)> {
    let manifest = find_manifest(client, id).await?;
    let result = rebuild_object(&manifest, out, Fetch::Every).await?;
    Ok((manifest, result))
}

/// One shard's bytes as they arrive over gRPC, readable by the blocking rebuild.
struct ArrivingShard {
    rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, String>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl std::io::Read for ArrivingShard {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.chunk.len() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.chunk.len() - self.pos);
        out[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Opens the stream of one shard file; None when the node or the file is unavailable.
async fn stream_shard(addr: &str, id: &str, object_id: u64, shard: u8) -> Option<ShardSource> {
    let mut stream = open_shard_stream(addr, id, object_id, shard).await?;
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let addr = addr.to_string();
    tokio::spawn(async move {
        loop {
            let item = match stream.message().await {
                Ok(Some(chunk)) => Ok(chunk.data),
                Ok(None) => break,
                Err(e) => Err(format!("shard {shard} from {addr}: {}", e.message())),
            };
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                break;
            }
        }
    });
    Some(Box::new(ArrivingShard {
        rx,
        chunk: Vec::new(),
        pos: 0,
    }))
}

/// Which shards a rebuild downloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetch {
    /// Every shard, to check each one (verify).
    Every,
    /// The k data shards, streamed into the decoder; every shard (staged in files) only if
    /// the data shards do not suffice (restore: less to download and nothing staged on
    /// disk when every site is healthy).
    DataFirst,
}

/// Downloads the shards at `indices` concurrently into `scratch`.
async fn fetch_shards(
    manifest: &Manifest,
    object_id: u64,
    indices: &[usize],
    scratch: &Path,
    files: &mut [Option<PathBuf>],
) {
    let mut tasks = Vec::new();
    for &i in indices {
        let Some(s) = manifest.shards.get(i) else {
            continue;
        };
        let (addr, id, shard, dir) = (
            s.addr.clone(),
            manifest.backup_id.clone(),
            s.shard,
            scratch.to_path_buf(),
        );
        tasks.push((
            i,
            tokio::spawn(async move { fetch_shard(&addr, &id, object_id, shard, &dir).await }),
        ));
    }
    for (i, task) in tasks {
        if let Some(slot) = files.get_mut(i) {
            *slot = task.await.ok().flatten();
        }
    }
}

/// Fetches the shards `manifest` places (from the nodes it names) and rebuilds its object
/// into `out`; a shard that cannot be fetched counts as missing.
pub async fn rebuild_object(
    manifest: &Manifest,
    out: &Path,
    fetch: Fetch,
) -> CliResult<Result<Rebuilt, ReconstructError>> {
    let id = &manifest.backup_id;
    let scratch = tempdir()?;
    let object = manifest
        .objects
        .first()
        .cloned()
        .ok_or_else(|| anyhow!("backup {id} lists no objects"))?;
    let total = manifest.shards.len();
    let data = usize::from(manifest.data_shards).min(total);
    let run = |sources: Vec<Option<ShardSource>>| {
        let (m, o, out) = (manifest.clone(), object.clone(), out.to_path_buf());
        tokio::task::spawn_blocking(move || rebuild_from(&m, &o, sources, &out))
    };
    let mut attempted = 0;
    let mut result = None;
    if fetch == Fetch::DataFirst {
        // Stream the k data shards straight into the decoder: nothing is staged on disk.
        let mut sources = Vec::new();
        for s in &manifest.shards[..data] {
            sources.push(stream_shard(&s.addr, id, object.object_id, s.shard).await);
        }
        attempted = data;
        let streamed = run(sources).await.context("rebuild task")?;
        if !matches!(streamed, Err(ReconstructError::TooFewShards { .. })) {
            result = Some(streamed);
        }
    }
    let result = match result {
        Some(r) => r,
        None => {
            // Every shard, staged in files, so each one is read and judged.
            let mut files: Vec<Option<PathBuf>> = vec![None; total];
            let all: Vec<usize> = (0..total).collect();
            fetch_shards(manifest, object.object_id, &all, &scratch, &mut files).await;
            attempted = total;
            let (m, o, out) = (manifest.clone(), object.clone(), out.to_path_buf());
            tokio::task::spawn_blocking(move || rebuild(&m, &o, &files, &out))
                .await
                .context("rebuild task")?
        }
    };
    let _ = std::fs::remove_dir_all(&scratch);
    // Report health only for shards that were asked for: parity left alone is not missing.
    Ok(result.map(|mut rebuilt| {
        rebuilt.shards.retain(|h| usize::from(h.shard) < attempted);
        rebuilt
    }))
}

/// Every manifest (snapshot backups and log archive segments) any reachable site holds,
/// one per backup id.
pub async fn all_manifests(client: &Client) -> CliResult<Vec<Manifest>> {
    let mut by_id: BTreeMap<String, Manifest> = BTreeMap::new();
    for node in holdings(client).await? {
        for b in node.backups {
            if let Ok(m) = Manifest::from_json(&b.manifest_json) {
                by_id.entry(m.backup_id.clone()).or_insert(m);
            }
        }
    }
    Ok(by_id.into_values().collect())
}

/// The newest backup (highest log index) any site holds a manifest for.
pub async fn latest_backup(client: &Client) -> CliResult<String> {
    let mut best: Option<Manifest> = None;
    for node in holdings(client).await? {
        for b in node.backups {
            if let Ok(m) = Manifest::from_json(&b.manifest_json) {
                if m.is_log_segment() {
                    continue;
                }
                if best.as_ref().is_none_or(|x| m.log_index > x.log_index) {
                    best = Some(m);
                }
            }
        }
    }
    best.map(|m| m.backup_id)
        .ok_or_else(|| CliError::NotFound("no backup found on any site".into()))
}

async fn verify(client: &Client, id: &str, format: Format) -> CliResult {
    let started = Instant::now();
    let scratch = tempdir()?;
    let (manifest, result) = fetch_and_rebuild(client, id, &scratch.join("rebuilt.snap")).await?;
    let _ = std::fs::remove_dir_all(&scratch);
    let (rebuilt, error) = match &result {
        Ok(r) => (Some(r), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let out = VerifyOut {
        backup_id: id,
        restorable: rebuilt.is_some(),
        digest_matches: rebuilt.is_some_and(|r| r.digest_matches),
        rebuilt,
        error,
        took_ms: started.elapsed().as_millis(),
    };
    match format {
        Format::Json => print_json(&out)?,
        Format::Table => print_verify(&manifest, &out),
    }
    if out.restorable && out.digest_matches {
        Ok(())
    } else {
        Err(CliError::NotApplied(format!(
            "backup {id} is not restorable as recorded: {}",
            out.error.unwrap_or_else(|| "state checksum differs".into())
        )))
    }
}

fn print_verify(manifest: &Manifest, out: &VerifyOut<'_>) {
    println!(
        "backup {}: {}",
        out.backup_id,
        if out.restorable && out.digest_matches {
            "OK"
        } else {
            "NOT RESTORABLE"
        }
    );
    if let Some(r) = out.rebuilt {
        for h in &r.shards {
            let site = manifest
                .shards
                .iter()
                .find(|s| s.shard == h.shard)
                .map(|s| s.site.as_str())
                .unwrap_or("?");
            let state = match (&h.problem, h.present) {
                (_, false) => "missing".to_string(),
                (Some(p), true) => format!("damaged: {p}"),
                (None, true) => "ok".to_string(),
            };
            println!(
                "  shard {} (site {site}): {state}, {}/{} stripes usable",
                h.shard, h.good_records, r.stripes
            );
        }
        println!(
            "  rebuilt {} bytes, state checksum {} ({})",
            r.bytes,
            r.state_digest,
            if r.digest_matches {
                "matches the manifest"
            } else {
                "DIFFERS from the manifest"
            }
        );
    }
    if let Some(e) = &out.error {
        println!("  {e}");
    }
    println!("  took {} ms", out.took_ms);
}

/// A fresh scratch directory.
pub fn tempdir() -> anyhow::Result<PathBuf> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "reprise-verify-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    Ok(dir)
}
