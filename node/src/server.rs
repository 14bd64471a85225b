//! Starting and stopping a node: opens storage, starts Raft, serves the client, peer,
//! admin and health gRPC services on one listener, and shuts everything down in order.

use std::future::Future;
use std::sync::Arc;

use openraft::storage::RaftLogStorage;
use reprise_api::limits::GRPC_MESSAGE_BYTES_MAX;
use reprise_api::pb::admin::admin_server::AdminServer;
use reprise_api::pb::backup::backup_server::BackupServer;
use reprise_api::pb::kv::kv_server::KvServer;
use reprise_api::pb::raft::raft_server::RaftServer;
use reprise_storage::log::SegmentLogOptions;
use reprise_storage::{LogStore, StateMachineStore};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tracing::info;

use crate::admin_service::AdminService;
use crate::backup_service::BackupService;
use crate::config::NodeConfig;
use crate::hlc::{Hlc, SystemClock};
use crate::kv_service::KvService;
use crate::network::PeerNetwork;
use crate::raft_service::RaftService;
use crate::read_buffered::ReadBuffered;
use crate::read_index::ReadBatcher;
use crate::rejoin::{self, LeaderHeard};
use crate::state::NodeState;
use crate::Raft;

/// The largest HTTP/2 DATA frame this node accepts (`SETTINGS_MAX_FRAME_SIZE`). A peer's
/// frames are read whole into the connection's buffer, so this is also the most one
/// connection buffers for a frame.
const HTTP2_FRAME_BYTES_MAX: u32 = 1024 * 1024;

/// Why a node could not start or stopped with an error.
#[derive(Debug, Error)]
pub enum NodeError {
    #[error("create data directory {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("open raft log: {0}")]
    Log(#[from] reprise_storage::LogOpenError),
    #[error("open state machine: {0}")]
    StateMachine(#[from] reprise_storage::StateMachineError),
    #[error("raft config: {0}")]
    RaftConfig(String),
    #[error("{0}")]
    PlantedBug(String),
    #[error("start raft: {0}")]
    Raft(String),
    #[error("listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("gRPC server: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// Runs a node until `shutdown` completes, then stops Raft and closes storage.
pub async fn run(
    config: NodeConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), NodeError> {
    let log_dir = config.data_dir.join("log");
    let sm_dir = config.data_dir.join("sm");
    for dir in [&log_dir, &sm_dir] {
        std::fs::create_dir_all(dir).map_err(|source| NodeError::DataDir {
            path: dir.clone(),
            source,
        })?;
    }
    let planted_bug = crate::planted::from_env().map_err(NodeError::PlantedBug)?;
    let mut log = LogStore::open(
        &log_dir,
        SegmentLogOptions {
            segment_bytes_max: config.raft.segment_bytes_max,
            preallocate: true,
            zero_filled_spares: true,
        },
    )?;
    let log_hlc = log.hlc_watermark();
    let voted_before = log
        .read_vote()
        .await
        .map_err(|e| NodeError::Raft(e.to_string()))?
        .is_some();
    let sm = StateMachineStore::open(&sm_dir)?;
    let view = sm.view();
    let archived = sm.archived_through();
    let snapshots = sm.snapshot_dir();
    if config.archive.enabled() {
        log.limit_purge_to(archived.clone());
    }
    let log_reader = log.reader();
    let raft_config = Arc::new(config.openraft().map_err(NodeError::RaftConfig)?);
    let partition = Arc::new(crate::partition::Partition::default());
    let raft = Raft::new(
        config.id,
        raft_config,
        PeerNetwork::new(partition.clone()),
        log,
        sm,
    )
    .await
    .map_err(|e| NodeError::Raft(e.to_string()))?;
    let leader_heard = Arc::new(LeaderHeard::default());
    rejoin::hold_elections(&raft, leader_heard.clone(), rejoin::grace(raft.config()));
    let reads = ReadBatcher::for_config(raft.config(), voted_before);
    let reads = match planted_bug {
        Some(crate::planted::PlantedBug::LongLease) => {
            reads.with_lease_for(std::time::Duration::from_secs(10))
        }
        _ => reads,
    };
    let clock = Arc::new(SystemClock::default());
    let (proposals, proposal_rx) = crate::proposer::channel();
    let state = Arc::new(NodeState {
        id: config.id,
        data_dir: config.data_dir.clone(),
        member: config.member.clone(),
        raft: raft.clone(),
        view,
        hlc: Hlc::new(clock.clone()),
        clock,
        log_hlc,
        propose: Default::default(),
        transferring: Default::default(),
        planted_bug,
        log: log_reader,
        snapshots,
        archived,
        archive_enabled: config.archive.enabled(),
        archive_status: Default::default(),
        partition,
        reads: Arc::new(reads),
        campaign_gate: Default::default(),
        backup_lock: Default::default(),
        proposals,
    });
    let metrics = match config.metrics_addr {
        Some(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| NodeError::Listen { addr, source })?;
            let state = state.clone();
            info!(%addr, "metrics endpoint serving");
            Some(crate::metrics::spawn(listener, move || {
                crate::metrics::render(&crate::metrics::sample(&state))
            }))
        }
        None => None,
    };
    let archiver = config
        .archive
        .enabled()
        .then(|| crate::archiver::spawn(state.clone(), config.archive.clone()));
    let snapshots_by_size = (config.raft.snapshot_log_bytes > 0)
        .then(|| crate::snapshot_trigger::spawn(state.clone(), config.raft.snapshot_log_bytes));
    let schedule = (config.backup.interval_s > 0)
        .then(|| crate::backup_schedule::spawn(state.clone(), config.backup.clone()));
    let listener = TcpListener::bind(config.listen_addr)
        .await
        .map_err(|source| NodeError::Listen {
            addr: config.listen_addr,
            source,
        })?;
    // Spawned once nothing can fail before `serve`: it owns the state until aborted.
    let proposer = crate::proposer::spawn(state.clone(), proposal_rx);
    info!(id = config.id, site = %config.member.site, addr = %config.listen_addr, "node serving");
    let served = serve(state, leader_heard, listener, shutdown).await;
    proposer.abort();
    for task in [archiver, snapshots_by_size, schedule, metrics]
        .into_iter()
        .flatten()
    {
        task.abort();
    }
    info!("stopping raft");
    if let Err(e) = raft.shutdown().await {
        tracing::warn!(error = %e, "raft shutdown");
    }
    served
}

async fn serve(
    state: Arc<NodeState>,
    leader_heard: Arc<LeaderHeard>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), NodeError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<KvServer<KvService>>().await;
    let kv = KvServer::new(KvService {
        state: state.clone(),
    })
    .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
    .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX);
    let peer = RaftServer::new(RaftService {
        raft: state.raft.clone(),
        partition: state.partition.clone(),
        leader_heard,
        reads: state.reads.clone(),
        campaign_gate: state.campaign_gate.clone(),
    })
    .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
    .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX);
    let backup = BackupServer::new(BackupService {
        state: state.clone(),
    })
    .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
    .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX);
    let admin = AdminServer::new(AdminService { state })
        .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX);
    // Accepted sockets need TCP_NODELAY set here: the builder's own setting only applies
    // to listeners it binds itself. Without it small replies wait on delayed ACKs (~40 ms).
    // Each accepted connection reads through a buffer of its own (`read_buffered.rs`).
    let incoming = tonic::transport::server::TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .map(|accepted| accepted.map(ReadBuffered::new));
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        // HTTP/2 splits a message into DATA frames of at most this size, and h2 sends each
        // frame with a `writev` of its own: with the protocol's default of 16 KiB, one
        // AppendEntries batch of 4 KiB values took a dozen system calls on the leader and
        // as many reads on the follower.
        .max_frame_size(HTTP2_FRAME_BYTES_MAX)
        .add_service(health_service)
        .add_service(kv)
        .add_service(peer)
        .add_service(admin)
        .add_service(backup)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}
