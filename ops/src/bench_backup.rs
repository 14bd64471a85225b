//! `reprise bench backup`: backup and restore throughput against the disk's own speed,
//! measured in the same run. It writes a file of the state's size with one fsync (disk
//! sequential write speed), encodes the same amount of data k+m in memory (encode
//! throughput), loads a scratch local 3-site cluster with that much state, times
//! `backup create` and then `restore --latest` (run as the real command), and reports
//! every figure as MB/s and as a ratio to the disk's speed. Everything it starts it stops.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use clap::Args;
use rand::{RngCore, SeedableRng};
use reprise_api::client::Retry;
use reprise_api::pb::backup::backup_client::BackupClient;
use reprise_api::pb::backup::CreateBackupRequest;
use reprise_api::{Client, ClientOptions};
use reprise_chaos::backend::local::{self, LocalSpec};
use reprise_storage::backup::codec::{encode_stripe_records, CodecParams};
use reprise_storage::backup::manifest::Manifest;
use serde::Serialize;

use crate::cli::Global;
use crate::cmd_local::this_exe;
use crate::output::{print_json, print_table, CliResult, Format};

/// Stripe size used for every figure (the backup default).
const STRIPE_BYTES: u32 = 4 * 1024 * 1024;

#[derive(Debug, Args)]
pub struct BackupBenchArgs {
    /// State size to back up and restore, in MiB.
    #[arg(long, default_value_t = 1024)]
    pub state_mib: u64,
    /// Value size of the loaded keys.
    #[arg(long, default_value_t = 65536)]
    pub value_size: usize,
    /// Concurrent clients loading the state.
    #[arg(long, default_value_t = 32)]
    pub clients: u32,
    /// Directory for the scratch cluster and the disk test (default: the temp dir).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct BackupBenchReport {
    state_bytes: u64,
    disk_write_mb_s: f64,
    encode_mb_s: f64,
    encode_vs_disk: f64,
    load_s: f64,
    backup_bytes: u64,
    backup_s: f64,
    backup_mb_s: f64,
    backup_vs_disk: f64,
    restore_rebuild_s: f64,
    restore_rebuild_mb_s: f64,
    restore_vs_disk: f64,
    restore_total_s: f64,
    data_shards: u8,
    parity_shards: u8,
}

fn mb_s(bytes: u64, seconds: f64) -> f64 {
    bytes as f64 / 1e6 / seconds.max(1e-9)
}

/// Runs `reprise bench backup`.
pub async fn run(args: BackupBenchArgs, global: &Global) -> CliResult {
    let show = global.output == Format::Table;
    let base = args
        .dir
        .clone()
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("reprise-bench-backup-{}", std::process::id()));
    std::fs::create_dir_all(&base).with_context(|| format!("create {}", base.display()))?;
    let result = measure(&args, &base, show).await;
    let _ = local::down(&base.join("restored").join("cluster"));
    let _ = std::fs::remove_dir_all(&base);
    let report = result?;
    match global.output {
        Format::Json => print_json(&report),
        Format::Table => {
            print_report(&report);
            Ok(())
        }
    }
}

async fn measure(args: &BackupBenchArgs, base: &Path, show: bool) -> CliResult<BackupBenchReport> {
    let state_bytes = args.state_mib * 1024 * 1024;
    let say = |s: String| {
        if show {
            eprintln!("{s}");
        }
    };
    say(format!(
        "disk: writing {} MiB with one fsync...",
        args.state_mib
    ));
    let disk = disk_write_speed(&base.join("disk-test"), state_bytes)?;
    say(format!("  {disk:.0} MB/s"));

    let params = CodecParams::for_sites(3, STRIPE_BYTES).map_err(anyhow::Error::from)?;
    say(format!(
        "encode: {}+{} Reed-Solomon over {} MiB in memory...",
        params.data_shards, params.parity_shards, args.state_mib
    ));
    let encode = tokio::task::spawn_blocking(move || encode_speed(params, state_bytes))
        .await
        .context("encode task")??;
    say(format!("  {encode:.0} MB/s"));

    say("cluster: starting a scratch local 3-site cluster...".into());
    let cluster = local::up(&this_exe()?, &base.join("cluster"), &LocalSpec::new(3, 1))
        .await
        .map_err(anyhow::Error::from)?;
    let endpoints: Vec<String> = cluster.file.nodes.iter().map(|n| n.addr.clone()).collect();
    let load_started = Instant::now();
    load_state(&endpoints, args, state_bytes, show).await?;
    let load_s = load_started.elapsed().as_secs_f64();

    say("backup: snapshot, encode, store shards on every site...".into());
    let client = Client::new(
        &endpoints,
        ClientOptions {
            rpc_timeout: crate::cli::LONG_RPC_TIMEOUT,
            ..Default::default()
        },
    )?;
    let started = Instant::now();
    let resp = client
        .call(Retry::Idempotent, |c| async move {
            BackupClient::new(c)
                .max_decoding_message_size(reprise_api::limits::GRPC_MESSAGE_BYTES_MAX)
                .create_backup(CreateBackupRequest::default())
                .await
        })
        .await?;
    let backup_s = started.elapsed().as_secs_f64();
    let manifest = Manifest::from_json(&resp.json).map_err(anyhow::Error::from)?;
    let backup_bytes: u64 = manifest.objects.iter().map(|o| o.bytes).sum();
    say(format!(
        "  {backup_bytes} bytes in {backup_s:.1} s ({:.0} MB/s)",
        mb_s(backup_bytes, backup_s)
    ));

    say("restore: `reprise restore --latest` into a fresh cluster...".into());
    let into = base.join("restored");
    let started = Instant::now();
    let out = tokio::process::Command::new(this_exe()?)
        .args([
            "-o",
            "json",
            "--endpoints",
            &endpoints.join(","),
            "restore",
            "--latest",
            "--into",
        ])
        .arg(&into)
        .output()
        .await
        .context("run reprise restore")?;
    let restore_total_s = started.elapsed().as_secs_f64();
    if !out.status.success() {
        return Err(anyhow!(
            "restore failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    let restored: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("restore output")?;
    let rebuild_s = restored["rebuild_ms"].as_f64().unwrap_or(0.0) / 1000.0;
    let fetched = restored["bytes_fetched"].as_u64().unwrap_or(0);
    drop(cluster);
    Ok(BackupBenchReport {
        state_bytes,
        disk_write_mb_s: disk,
        encode_mb_s: encode,
        encode_vs_disk: encode / disk,
        load_s,
        backup_bytes,
        backup_s,
        backup_mb_s: mb_s(backup_bytes, backup_s),
        backup_vs_disk: mb_s(backup_bytes, backup_s) / disk,
        restore_rebuild_s: rebuild_s,
        restore_rebuild_mb_s: mb_s(fetched, rebuild_s),
        restore_vs_disk: mb_s(fetched, rebuild_s) / disk,
        restore_total_s,
        data_shards: manifest.data_shards,
        parity_shards: manifest.parity_shards,
    })
}

/// Sequential write of `bytes` (incompressible data) in 4 MiB blocks, one fsync at the end.
fn disk_write_speed(path: &Path, bytes: u64) -> anyhow::Result<f64> {
    let mut block = vec![0u8; 4 * 1024 * 1024];
    rand::rngs::StdRng::seed_from_u64(7).fill_bytes(&mut block);
    let started = Instant::now();
    let mut file =
        std::fs::File::create(path).with_context(|| format!("create {}", path.display()))?;
    let mut written = 0u64;
    while written < bytes {
        let n = block.len().min((bytes - written) as usize);
        file.write_all(&block[..n])
            .with_context(|| format!("write {}", path.display()))?;
        written += n as u64;
    }
    file.sync_all()
        .with_context(|| format!("fsync {}", path.display()))?;
    let seconds = started.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(path).with_context(|| format!("remove {}", path.display()))?;
    Ok(mb_s(bytes, seconds))
}

/// Encodes `bytes` of incompressible data stripe by stripe into serialized shard records
/// (what a backup does before sending), on one thread.
fn encode_speed(params: CodecParams, bytes: u64) -> anyhow::Result<f64> {
    let mut stripe = vec![0u8; params.stripe_bytes as usize];
    rand::rngs::StdRng::seed_from_u64(11).fill_bytes(&mut stripe);
    let started = Instant::now();
    let mut done = 0u64;
    let mut index = 0u64;
    while done < bytes {
        let n = stripe.len().min((bytes - done) as usize);
        let records = encode_stripe_records(&params, 0, index, &stripe[..n])?;
        std::hint::black_box(records);
        done += n as u64;
        index += 1;
    }
    Ok(mb_s(bytes, started.elapsed().as_secs_f64()))
}

/// Puts distinct keys with incompressible values until `bytes` of values are stored.
async fn load_state(
    endpoints: &[String],
    args: &BackupBenchArgs,
    bytes: u64,
    show: bool,
) -> CliResult {
    let value_size = args.value_size.max(1) as u64;
    let keys = bytes.div_ceil(value_size);
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for n in 0..args.clients.max(1) {
        let client = Client::new(endpoints, ClientOptions::default())?;
        let next = next.clone();
        let size = args.value_size.max(1);
        tasks.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(u64::from(n));
            let mut value = vec![0u8; size];
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= keys {
                    return Ok::<_, reprise_api::ClientError>(());
                }
                rng.fill_bytes(&mut value);
                client
                    .put(format!("bench/{i:010}").as_bytes(), &value)
                    .await?;
            }
        }));
    }
    let ticker = {
        let next = next.clone();
        tokio::spawn(async move {
            if !show {
                return;
            }
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                let done = next.load(Ordering::Relaxed).min(keys);
                eprintln!(
                    "  loading: {done}/{keys} keys ({} MiB)",
                    done * value_size / (1024 * 1024)
                );
            }
        })
    };
    let mut result = Ok(());
    for t in tasks {
        if let Err(e) = t.await.context("load task")? {
            result = Err(e.into());
        }
    }
    ticker.abort();
    result
}

fn print_report(r: &BackupBenchReport) {
    let row = |what: &str, mb: f64, ratio: Option<f64>, note: String| {
        vec![
            what.to_string(),
            format!("{mb:.0}"),
            ratio
                .map(|x| format!("{x:.2}x"))
                .unwrap_or_else(|| "1.00x".into()),
            note,
        ]
    };
    println!(
        "state {} MiB, {}+{} Reed-Solomon, stripe {} MiB",
        r.state_bytes / (1024 * 1024),
        r.data_shards,
        r.parity_shards,
        STRIPE_BYTES / (1024 * 1024)
    );
    print_table(
        &["WHAT", "MB/S", "VS DISK", "NOTE"],
        &[
            row(
                "disk sequential write",
                r.disk_write_mb_s,
                None,
                "one fsync at the end".into(),
            ),
            row(
                "encode (1 thread)",
                r.encode_mb_s,
                Some(r.encode_vs_disk),
                "target >= 5x disk".into(),
            ),
            row(
                "backup create",
                r.backup_mb_s,
                Some(r.backup_vs_disk),
                format!("{:.1} s", r.backup_s),
            ),
            row(
                "restore rebuild",
                r.restore_rebuild_mb_s,
                Some(r.restore_vs_disk),
                format!("{:.1} s; target >= 0.5x disk", r.restore_rebuild_s),
            ),
        ],
    );
    println!(
        "restore end to end (rebuild, replay, fresh cluster serving): {:.1} s; loading the state took {:.1} s",
        r.restore_total_s, r.load_s
    );
}
