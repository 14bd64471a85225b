//! `reprise node start`: loads the config, sets up logging, runs the node until SIGTERM or
//! SIGINT. `reprise node seed`: prepares a node's data directory from a restored snapshot.

use std::path::Path;

use anyhow::Context;
use reprise_node::NodeConfig;
use tracing_subscriber::EnvFilter;

use crate::cli::Global;
use crate::output::{print_json, CliError, CliResult, Format};

/// Seeds the data directory of the node `config_path` describes from `snapshot`, with the
/// config's `initial_members` as the new cluster's voters.
pub fn seed(config_path: &Path, snapshot: &Path, global: &Global) -> CliResult {
    let config = NodeConfig::load(config_path).map_err(|e| CliError::Runtime(e.into()))?;
    if !config.initial_members.contains_key(&config.id) {
        return Err(CliError::Runtime(anyhow::anyhow!(
            "{}: initial_members must list every member of the restored cluster, this node ({}) included",
            config_path.display(),
            config.id
        )));
    }
    let members: Vec<_> = config
        .initial_members
        .iter()
        .map(|(id, m)| (*id, m.clone()))
        .collect();
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("create {}", config.data_dir.display()))?;
    let last = reprise_storage::backup::seed::seed_data_dirs(
        snapshot,
        &members,
        std::slice::from_ref(&config.data_dir),
    )
    .map_err(|e| CliError::Runtime(e.into()))?;
    match global.output {
        Format::Json => print_json(&serde_json::json!({
            "node": config.id,
            "data_dir": config.data_dir,
            "log_index": last.index,
            "members": members.iter().map(|(id, _)| id).collect::<Vec<_>>(),
        })),
        Format::Table => {
            println!(
                "node {} seeded at log index {} in {} ({} members); start it with `reprise node start --config {}` (no `cluster init`)",
                config.id,
                last.index,
                config.data_dir.display(),
                members.len(),
                config_path.display()
            );
            Ok(())
        }
    }
}

/// Runs a node in the foreground.
pub fn start(config_path: &Path) -> CliResult {
    let config = NodeConfig::load(config_path).map_err(|e| CliError::Runtime(e.into()))?;
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,openraft=warn")),
        )
        .with_ansi(false)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("reprise-node")
        .build()
        .context("start async runtime")?;
    runtime.block_on(async move {
        reprise_node::run(config, shutdown_signal())
            .await
            .context("node stopped")
            .map_err(CliError::Runtime)
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the node with SIGKILL");
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}
