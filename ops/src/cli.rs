//! Command-line definition (clap, noun-verb) and dispatch. Every command takes
//! `-o table|json`; client commands take `--endpoints` or `REPRISE_ENDPOINTS`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use reprise_api::{Client, ClientOptions};

use crate::output::{CliError, CliResult, Format};
use crate::{
    cmd_backup, cmd_bench, cmd_chaos, cmd_cluster, cmd_drill, cmd_kv, cmd_local, cmd_node,
    cmd_restore, demo,
};

/// Reprise: a multi-site replicated store that survives the loss of a datacenter.
#[derive(Debug, Parser)]
#[command(name = "reprise", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command accepts.
#[derive(Debug, Args, Clone)]
pub struct Global {
    /// Cluster endpoints, host:port, comma separated.
    #[arg(long, global = true, env = "REPRISE_ENDPOINTS", value_delimiter = ',')]
    pub endpoints: Vec<String>,
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value = "table")]
    pub output: Format,
    /// Give up on a request after this many milliseconds of retries and leader changes.
    #[arg(long, global = true, default_value_t = 10_000)]
    pub timeout_ms: u64,
}

impl Global {
    /// A leader-following client for `--endpoints`.
    pub fn client(&self) -> CliResult<Client> {
        let opts = ClientOptions {
            deadline: Duration::from_millis(self.timeout_ms),
            ..Default::default()
        };
        Ok(Client::new(&self.endpoints, opts)?)
    }

    /// A client for one long request (a backup of a large state): each RPC may take up to
    /// an hour; finding the leader still gives up after `--timeout-ms`.
    pub fn long_client(&self) -> CliResult<Client> {
        let opts = ClientOptions {
            deadline: Duration::from_millis(self.timeout_ms),
            rpc_timeout: LONG_RPC_TIMEOUT,
            ..Default::default()
        };
        Ok(Client::new(&self.endpoints, opts)?)
    }
}

/// Longest a single long-running RPC (backup creation) may take.
pub const LONG_RPC_TIMEOUT: Duration = Duration::from_secs(3600);

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a server node.
    Node {
        #[command(subcommand)]
        command: NodeCommand,
    },
    /// Inspect and change the cluster.
    Cluster {
        #[command(subcommand)]
        command: cmd_cluster::ClusterCommand,
    },
    /// Read and write keys.
    Kv {
        #[command(subcommand)]
        command: cmd_kv::KvCommand,
    },
    /// Erasure-coded backups across sites.
    Backup {
        #[command(subcommand)]
        command: cmd_backup::BackupCommand,
    },
    /// Rebuild a backup from its shards and start a fresh local cluster from it.
    Restore(cmd_restore::RestoreArgs),
    /// Load generator and failover timing.
    Bench(cmd_bench::BenchArgs),
    /// Disaster drills: inject a fault on a scratch cluster, recover, check, measure.
    Drill {
        #[command(subcommand)]
        command: cmd_drill::DrillCommand,
    },
    /// Deterministic simulation: seeded faults on an in-process cluster; a seed replays.
    Chaos {
        #[command(subcommand)]
        command: cmd_chaos::ChaosCommand,
    },
    /// Guided demonstrations on a scratch local cluster.
    Demo {
        #[command(subcommand)]
        command: demo::DemoCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Start a node from a TOML config file (see deploy/config/node.toml).
    Start {
        #[arg(long)]
        config: PathBuf,
    },
    /// Prepare this node's (empty) data directory from a restored snapshot
    /// (`reprise restore --no-start`): the new cluster's members are the config's
    /// `initial_members`. Run on every node with the same snapshot, then start them.
    Seed {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        snapshot: PathBuf,
    },
}

/// Parses the command line, runs the command, maps failures to exit codes.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

fn run(cli: Cli) -> CliResult {
    if let Command::Node {
        command: NodeCommand::Start { config },
    } = &cli.command
    {
        return cmd_node::start(config);
    }
    if let Command::Chaos { command } = cli.command {
        // The simulation drives its own runtimes on this thread.
        return cmd_chaos::run(command, cli.global.output);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Runtime(anyhow::anyhow!("start async runtime: {e}")))?;
    let outcome = runtime.block_on(async {
        let command = async {
            match cli.command {
                Command::Node {
                    command: NodeCommand::Seed { config, snapshot },
                } => cmd_node::seed(&config, &snapshot, &cli.global),
                Command::Node { .. } | Command::Chaos { .. } => Ok(()),
                Command::Cluster { command } => match command {
                    cmd_cluster::ClusterCommand::Local { command } => {
                        cmd_local::run(command, &cli.global).await
                    }
                    other => cmd_cluster::run(other, &cli.global).await,
                },
                Command::Kv { command } => cmd_kv::run(command, &cli.global).await,
                Command::Demo { command } => demo::run(command, &cli.global).await,
                Command::Drill { command } => cmd_drill::run(command, &cli.global).await,
                Command::Backup { command } => cmd_backup::run(command, &cli.global).await,
                Command::Restore(args) => cmd_restore::run(args, &cli.global).await,
                Command::Bench(args) => cmd_bench::run(args, &cli.global).await,
            }
        };
        // A signal drops the command's future: the clusters, etcd members and nodes it
        // started are stopped by pid as they are dropped, instead of outliving it.
        tokio::select! {
            result = command => result,
            signal = stop_signal() => Err(CliError::Interrupted(format!(
                "interrupted by {signal}; every process this command had started was stopped"
            ))),
        }
    });
    if matches!(outcome, Err(CliError::Interrupted(_))) {
        // Blocking work the command left running is not waited for long.
        runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    }
    outcome
}

/// The first of SIGINT, SIGTERM and SIGHUP to arrive (never, if the handlers cannot be
/// installed: the signals then end the process as they would without them).
async fn stop_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
        _ = hup.recv() => "SIGHUP",
    }
}
