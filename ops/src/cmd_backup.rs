//! `reprise backup create|list|verify|drill|targets`: erasure-coded backups across sites.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context};
use clap::Subcommand;
use reprise_api::client::Retry;
use reprise_api::pb::backup::{BackupTargetsJson, CreateBackupRequest};
use reprise_node::backup_fetch::{all_manifests, rebuild_object, Fetch};
use reprise_node::backup_targets::holdings;
use reprise_node::restore_drill::{restore_drill, DrillPoint, RestoreDrillReport};
use reprise_storage::backup::manifest::Manifest;
use reprise_storage::backup::reconstruct::Rebuilt;
use reprise_storage::backup::target::TargetSpec;
use serde::Serialize;

use crate::backup_sources::{backup_client, cluster_config, sources, Sources};
use crate::cli::Global;
use crate::output::{print_json, print_table, CliError, CliResult, Format};
use crate::targets_file;

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
    List {
        /// Read bucket credentials from this targets file instead of the cluster.
        #[arg(long)]
        targets: Option<PathBuf>,
    },
    /// Read every shard, check checksums, rebuild, compare the state checksum.
    Verify {
        id: String,
        /// Read bucket credentials from this targets file instead of the cluster.
        #[arg(long)]
        targets: Option<PathBuf>,
    },
    /// Restore the newest point and an earlier one into a scratch directory, check their
    /// state checksums, and measure restore time and the real RPO. Starts no cluster.
    Drill {
        /// Picks the earlier point (default: random).
        #[arg(long)]
        seed: Option<u64>,
        /// Read bucket credentials from this targets file instead of the cluster.
        #[arg(long)]
        targets: Option<PathBuf>,
    },
    /// Where each site keeps its backups (replicated cluster config).
    Targets {
        #[command(subcommand)]
        command: TargetsCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum TargetsCommand {
    /// The configured targets of every site.
    Show,
    /// Replace every site's targets with those of a targets file
    /// (see deploy/config/backup-targets.toml).
    Set {
        #[arg(long)]
        file: PathBuf,
    },
}

fn hlc_time(hlc: u64) -> String {
    let ms = hlc >> 16;
    format!("{}.{:03} s since the Unix epoch", ms / 1000, ms % 1000)
}

/// Runs a backup command.
pub async fn run(cmd: BackupCommand, global: &Global) -> CliResult {
    match cmd {
        BackupCommand::Create {
            stripe_bytes,
            data_shards,
            parity_shards,
        } => {
            let req = CreateBackupRequest {
                stripe_bytes,
                data_shards,
                parity_shards,
            };
            create(global, req).await
        }
        BackupCommand::List { targets } => {
            list(&sources(global, targets.as_deref()).await?, global.output).await
        }
        BackupCommand::Verify { id, targets } => {
            verify(
                &sources(global, targets.as_deref()).await?,
                &id,
                global.output,
            )
            .await
        }
        BackupCommand::Drill { seed, targets } => {
            drill(
                &sources(global, targets.as_deref()).await?,
                seed,
                global.output,
            )
            .await
        }
        BackupCommand::Targets { command } => targets(command, global).await,
    }
}

async fn create(global: &Global, req: CreateBackupRequest) -> CliResult {
    let show = global.output == Format::Table;
    let tty = show && std::io::stderr().is_terminal();
    if show {
        eprintln!("creating a backup: snapshot, encode, store shards on every site...");
    }
    let client = global.long_client()?;
    let started = Instant::now();
    let mut stream = client
        .call(Retry::Idempotent, |c| async move {
            backup_client(c).create_backup_watch(req).await
        })
        .await?;
    let mut manifest = None;
    while let Some(update) = stream
        .message()
        .await
        .map_err(|s| CliError::Runtime(anyhow!("backup failed: {}", s.message())))?
    {
        if !update.manifest_json.is_empty() {
            manifest =
                Some(Manifest::from_json(&update.manifest_json).map_err(anyhow::Error::from)?);
        } else if tty && update.bytes_total > 0 {
            eprint!(
                "\r  encoded {:.1} of {:.1} MB ({:.0} %)   ",
                update.bytes_encoded as f64 / 1e6,
                update.bytes_total as f64 / 1e6,
                100.0 * update.bytes_encoded as f64 / update.bytes_total as f64
            );
        }
    }
    if tty {
        eprintln!();
    }
    let manifest =
        manifest.ok_or_else(|| anyhow!("the leader ended the backup without a manifest"))?;
    let took = started.elapsed();
    match global.output {
        Format::Json => {
            print_json(&serde_json::json!({ "manifest": manifest, "took_ms": took.as_millis() }))
        }
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

async fn targets(cmd: TargetsCommand, global: &Global) -> CliResult {
    let client = global.client()?;
    match cmd {
        TargetsCommand::Show => {
            let shown = cluster_config(&client).await?.backup_targets;
            match global.output {
                Format::Json => print_json(&shown),
                Format::Table => {
                    let status = crate::cmd_cluster::gather(&client).await?;
                    let mut sites: Vec<String> =
                        status.members.iter().map(|m| m.site.clone()).collect();
                    sites.sort();
                    sites.dedup();
                    for site in sites {
                        for t in shown.for_site(&site) {
                            match t {
                                TargetSpec::Node => println!("{site}: a node of the site"),
                                TargetSpec::S3(s) => println!("{site}: {}", s.location()),
                                TargetSpec::Dir { path } => println!("{site}: directory {path}"),
                            }
                        }
                    }
                    Ok(())
                }
            }
        }
        TargetsCommand::Set { file } => {
            let targets = targets_file::read(&file)?;
            let json = serde_json::to_string(&targets).context("encode targets")?;
            let resp = client
                .call(Retry::OnlyIfNotApplied, |c| {
                    let json = json.clone();
                    async move {
                        backup_client(c)
                            .set_backup_targets(BackupTargetsJson { json })
                            .await
                    }
                })
                .await?;
            match global.output {
                Format::Json => print_json(&serde_json::json!({
                    "log_index": resp.log_index,
                    "targets": targets,
                })),
                Format::Table => {
                    println!(
                        "backup targets set for {} site(s) (log index {}); new backups and archive segments use them",
                        targets.sites.len(),
                        resp.log_index
                    );
                    Ok(())
                }
            }
        }
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
        let at = match &s.location {
            reprise_storage::backup::target::Location::Node => {
                format!("node {} at {}", s.node, s.addr)
            }
            other => other.to_string(),
        };
        println!(
            "  shard {} -> site {} ({at}), {} bytes",
            s.shard, s.site, s.bytes
        );
    }
    println!(
        "  survives loss of any {} site(s)",
        m.survivable_site_losses()
    );
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
    /// Recorded in the cluster's replicated catalog.
    recorded: bool,
}

async fn list(src: &Sources, format: Format) -> CliResult {
    let mut manifests: BTreeMap<String, Manifest> = BTreeMap::new();
    let mut present: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    let mut unreachable = Vec::new();
    for h in holdings(&src.stores).await {
        let held = match h.held {
            Ok(held) => held,
            Err(e) => {
                unreachable.push(format!("site {}: {e}", h.site));
                continue;
            }
        };
        for b in held {
            let manifest = b
                .manifest_json
                .as_deref()
                .and_then(|j| Manifest::from_json(j).ok());
            if let Some(m) = manifest {
                manifests.entry(b.backup_id.clone()).or_insert(m);
            }
            *present
                .entry(b.backup_id)
                .or_default()
                .entry(h.site.clone())
                .or_default() += b.shards.len();
        }
    }
    // Recorded in the catalog but with no manifest left on any site: still listed.
    for (id, m) in &src.catalog {
        manifests.entry(id.clone()).or_insert_with(|| m.clone());
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
                recorded: src.catalog.contains_key(&m.backup_id),
            }
        })
        .collect();
    match format {
        Format::Json => print_json(
            &serde_json::json!({ "backups": rows, "archive": archive, "unreachable": unreachable }),
        ),
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
            for u in &unreachable {
                println!("warning: could not list {u}");
            }
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

#[derive(Serialize)]
struct VerifyOut<'a> {
    backup_id: &'a str,
    restorable: bool,
    digest_matches: bool,
    rebuilt: Option<&'a Rebuilt>,
    error: Option<String>,
    took_ms: u128,
}

async fn verify(src: &Sources, id: &str, format: Format) -> CliResult {
    let started = Instant::now();
    let (manifests, _) = all_manifests(&src.stores).await;
    let manifest = manifests
        .into_iter()
        .find(|m| m.backup_id == id)
        .or_else(|| src.catalog.get(id).cloned())
        .ok_or_else(|| CliError::NotFound(format!("no site holds a manifest for backup {id:?}")))?;
    let scratch = tempdir()?;
    let result = rebuild_object(
        &manifest,
        &src.targets,
        &scratch.join("rebuilt.snap"),
        &scratch,
        Fetch::Every,
    )
    .await
    .map_err(anyhow::Error::from);
    let _ = std::fs::remove_dir_all(&scratch);
    let result = result?;
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

async fn drill(src: &Sources, seed: Option<u64>, format: Format) -> CliResult {
    let seed = seed.unwrap_or_else(rand::random);
    let (manifests, unreachable) = all_manifests(&src.stores).await;
    if format == Format::Table {
        eprintln!(
            "restore drill (seed {seed}): {} manifest(s) found; restoring the newest point and an earlier one...",
            manifests.len()
        );
        for u in &unreachable {
            eprintln!("  could not list {u}");
        }
    }
    let scratch = tempdir()?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let report = restore_drill(&manifests, &src.targets, &scratch, seed, now)
        .await
        .map_err(|e| match e {
            reprise_node::restore::RestoreRunError::NotRestorable(m) => CliError::NotApplied(m),
            other => CliError::Runtime(other.into()),
        })?;
    match format {
        Format::Json => print_json(
            &serde_json::json!({ "seed": seed, "report": report, "problems": unreachable }),
        )?,
        Format::Table => print_drill(&report),
    }
    if report.passed {
        Ok(())
    } else {
        Err(CliError::NotApplied(format!(
            "restore drill failed: {}",
            report.failures.join("; ")
        )))
    }
}

fn print_point(name: &str, p: &DrillPoint) {
    let against = |b: &str| {
        if name == "earlier point" {
            format!("backup {b}'s recorded checksum")
        } else {
            format!("the state rebuilt from {b}")
        }
    };
    let compared = match (&p.compared_with, p.checksum_matches) {
        (Some(b), Some(true)) => format!(", equals {}", against(b)),
        (Some(b), Some(false)) => format!(", DIFFERS from {}", against(b)),
        _ => ", not compared".to_string(),
    };
    println!(
        "  {name}: index {} ({}), from {} + {} segment(s), {} entries replayed, restored in {} ms{compared}",
        p.restored.log_index,
        crate::cmd_restore::hlc_instant(p.restored.hlc),
        p.restored.base_backup.as_deref().unwrap_or("an empty state"),
        p.restored.segments_replayed,
        p.restored.entries_replayed,
        p.restore_ms,
    );
}

fn print_drill(r: &RestoreDrillReport) {
    println!(
        "restore drill: {}",
        if r.passed { "PASSED" } else { "FAILED" }
    );
    print_point("newest point", &r.latest);
    if let Some(e) = &r.earlier {
        print_point("earlier point", e);
    }
    println!(
        "  newest restorable write is {:.1} s old (what a restore now would lose at most)",
        r.newest_restorable_age_ms as f64 / 1000.0
    );
    for f in &r.failures {
        println!("  failure: {f}");
    }
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
