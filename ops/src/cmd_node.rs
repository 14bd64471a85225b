//! `reprise node start`: loads the config, sets up logging, runs the node until SIGTERM or
//! SIGINT.

use std::path::Path;

use anyhow::Context;
use reprise_node::NodeConfig;
use tracing_subscriber::EnvFilter;

use crate::output::{CliError, CliResult};

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
