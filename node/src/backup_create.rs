//! Storing backup objects from the leader: cut an object into stripes, encode each into k
//! data + m parity shards, stream every shard index to a node of the site it is placed
//! in, then store the manifest on every site. Snapshot backups (a fresh snapshot) are
//! created here; the log archive (`archiver`) stores its segments the same way.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::ServerState;
use reprise_api::limits::GRPC_MESSAGE_BYTES_MAX;
use reprise_api::pb::backup::backup_client::BackupClient;
use reprise_api::pb::backup::{BackupManifest, CreateBackupRequest, PutShardsResponse, ShardChunk};
use reprise_storage::backup::codec::{encode_stripe, CodecParams};
use reprise_storage::backup::manifest::{
    place_shards, BackupObject, Manifest, ShardPlacement, KIND_SNAPSHOT, MANIFEST_FORMAT,
};
use reprise_storage::snapshot::format::read_trailer;
use reprise_storage::snapshot::SnapshotDir;
use reprise_storage::{Member, NodeId};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;
use tonic::Status;

use crate::state::{internal, redirect_to, NodeState};

/// Default stripe size.
pub const STRIPE_BYTES_DEFAULT: u32 = 4 * 1024 * 1024;
/// The object id of the one object (snapshot or log segment) inside a backup.
pub const OBJECT_ID: u64 = 0;
const SNAPSHOT_DEADLINE: Duration = Duration::from_secs(120);
/// Encoded records in flight per shard stream.
const SHARD_QUEUE: usize = 4;

/// Where the shards of a new backup object go: the codec, one `(site, node, addr)` per
/// shard index, and every member (for storing the manifest on every site).
pub struct Placement {
    pub params: CodecParams,
    pub targets: Vec<(String, NodeId, String)>,
    pub members: BTreeMap<NodeId, Member>,
}

/// Computes the placement from the current membership; only the leader places shards.
pub fn placement(state: &NodeState, req: &CreateBackupRequest) -> Result<Placement, Status> {
    let metrics = state.raft.metrics().borrow().clone();
    if metrics.state != ServerState::Leader {
        return Err(redirect_to(
            metrics.current_leader,
            &metrics.membership_config,
        ));
    }
    let members: BTreeMap<NodeId, Member> = metrics
        .membership_config
        .membership()
        .nodes()
        .map(|(id, m)| (*id, m.clone()))
        .collect();
    let sites: Vec<String> = members.values().map(|m| m.site.clone()).collect();
    let params = codec_params(req, &sites)?;
    let sited = place_shards(&sites, params.data_shards, params.parity_shards)
        .map_err(|e| Status::failed_precondition(e.to_string()))?;
    let targets = sited
        .iter()
        .map(|site| {
            let (id, m) = members
                .iter()
                .find(|(_, m)| &m.site == site)
                .ok_or_else(|| Status::internal("site without node"))?;
            Ok((site.clone(), *id, m.addr.clone()))
        })
        .collect::<Result<_, Status>>()?;
    Ok(Placement {
        params,
        targets,
        members,
    })
}

/// Erasure-codes one object read from `source`, stores shard `i` on `targets[i]`, then the
/// manifest (built by `describe` from the stored shards, the size and the stripe count)
/// on every site. Returns the manifest.
pub async fn store_object(
    backup_id: &str,
    source: Box<dyn Read + Send>,
    placement: &Placement,
    describe: impl FnOnce(Vec<ShardPlacement>, u64, u64) -> Manifest,
) -> Result<Manifest, Status> {
    let (stored, bytes, stripes) =
        stream_shards(backup_id, source, placement.params, &placement.targets).await?;
    let shards = placement
        .targets
        .iter()
        .zip(stored)
        .enumerate()
        .map(|(i, ((site, node, addr), r))| ShardPlacement {
            shard: i as u8,
            site: site.clone(),
            node: *node,
            addr: addr.clone(),
            bytes: r.bytes,
            crc32c: r.crc32c,
        })
        .collect();
    let manifest = describe(shards, bytes, stripes);
    store_manifest_everywhere(&manifest, &placement.members).await?;
    Ok(manifest)
}

/// Creates a backup of the current state; returns its manifest.
pub async fn create_backup(
    state: &Arc<NodeState>,
    req: CreateBackupRequest,
) -> Result<Manifest, Status> {
    let placement = placement(state, &req)?;
    let applied = state
        .raft
        .metrics()
        .borrow()
        .last_applied
        .map(|l| l.index)
        .unwrap_or(0);
    let file = fresh_snapshot(state, applied).await?;
    let header = file.header.clone();
    let (keys, digest) = read_trailer(&file.path).map_err(internal)?;
    let last = header
        .meta
        .last_log_id
        .ok_or_else(|| Status::failed_precondition("nothing to back up yet"))?;
    let backup_id = format!("bk-{:012}-{}", last.index, last.leader_id.term);
    let source = std::fs::File::open(&file.path)
        .map_err(|e| internal(format!("open {}: {e}", file.path.display())))?;
    let params = placement.params;
    let cluster_name = state.raft.config().cluster_name.clone();
    store_object(
        &backup_id,
        Box::new(source),
        &placement,
        |shards, bytes, stripes| Manifest {
            format: MANIFEST_FORMAT,
            backup_id: backup_id.clone(),
            cluster_name,
            log_index: last.index,
            term: last.leader_id.term,
            hlc: header.last_hlc,
            data_shards: params.data_shards,
            parity_shards: params.parity_shards,
            stripe_bytes: params.stripe_bytes,
            objects: vec![BackupObject {
                object_id: OBJECT_ID,
                kind: KIND_SNAPSHOT.into(),
                bytes,
                stripes,
                state_digest: digest.iter().map(|b| format!("{b:02x}")).collect(),
                keys,
            }],
            shards,
            first_index: 0,
        },
    )
    .await
}

fn codec_params(req: &CreateBackupRequest, sites: &[String]) -> Result<CodecParams, Status> {
    let stripe = if req.stripe_bytes == 0 {
        STRIPE_BYTES_DEFAULT
    } else {
        req.stripe_bytes
    };
    let mut distinct = sites.to_vec();
    distinct.sort();
    distinct.dedup();
    let result = if req.data_shards == 0 && req.parity_shards == 0 {
        CodecParams::for_sites(distinct.len(), stripe)
    } else {
        let k = u8::try_from(req.data_shards)
            .map_err(|_| Status::invalid_argument("data_shards over 255"))?;
        let m = u8::try_from(req.parity_shards)
            .map_err(|_| Status::invalid_argument("parity_shards over 255"))?;
        CodecParams::new(k, m, stripe)
    };
    result.map_err(|e| Status::failed_precondition(e.to_string()))
}

/// Triggers a snapshot covering at least `applied` and returns it (kept open by path:
/// superseded snapshot files are removed only after a newer one is durable).
async fn fresh_snapshot(
    state: &NodeState,
    applied: u64,
) -> Result<reprise_storage::snapshot::SnapshotFile, Status> {
    state
        .raft
        .trigger()
        .snapshot()
        .await
        .map_err(|e| Status::unavailable(format!("raft stopped: {e}")))?;
    let started = Instant::now();
    loop {
        let snap = state
            .raft
            .metrics()
            .borrow()
            .snapshot
            .map(|l| l.index)
            .unwrap_or(0);
        if snap >= applied {
            break;
        }
        if started.elapsed() > SNAPSHOT_DEADLINE {
            return Err(Status::deadline_exceeded(format!(
                "no snapshot at index {applied} within {SNAPSHOT_DEADLINE:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dir = SnapshotDir::open(&state.data_dir.join("sm").join("snapshots")).map_err(internal)?;
    dir.newest()
        .map_err(internal)?
        .ok_or_else(|| Status::internal("snapshot vanished"))
}

/// Encodes the object read from `source` and streams shard `i` to `targets[i]`. Returns
/// each node's stored size and checksum, the object size and the stripe count.
async fn stream_shards(
    backup_id: &str,
    source: Box<dyn Read + Send>,
    params: CodecParams,
    targets: &[(String, NodeId, String)],
) -> Result<(Vec<PutShardsResponse>, u64, u64), Status> {
    let mut senders = Vec::new();
    let mut uploads = Vec::new();
    for (shard, (_, node, addr)) in targets.iter().enumerate() {
        let (tx, rx) = mpsc::channel::<ShardChunk>(SHARD_QUEUE);
        senders.push(tx);
        let addr = addr.clone();
        let node = *node;
        uploads.push(tokio::spawn(async move {
            let channel = Endpoint::from_shared(format!("http://{addr}"))
                .map_err(|e| Status::internal(e.to_string()))?
                .connect()
                .await
                .map_err(|e| {
                    Status::unavailable(format!("shard {shard} to node {node} at {addr}: {e}"))
                })?;
            let mut client =
                BackupClient::new(channel).max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX);
            client
                .put_shards(ReceiverStream::new(rx))
                .await
                .map(|r| r.into_inner())
        }));
    }
    let id = backup_id.to_string();
    let encoder = tokio::task::spawn_blocking(move || encode_object(&id, source, params, senders));
    let (bytes, stripes) = encoder.await.map_err(internal)??;
    let mut stored = Vec::new();
    for u in uploads {
        stored.push(u.await.map_err(internal)??);
    }
    Ok((stored, bytes, stripes))
}

fn encode_object(
    backup_id: &str,
    mut source: Box<dyn Read + Send>,
    params: CodecParams,
    senders: Vec<mpsc::Sender<ShardChunk>>,
) -> Result<(u64, u64), Status> {
    let mut buf = vec![0u8; params.stripe_bytes as usize];
    let (mut bytes, mut stripe) = (0u64, 0u64);
    loop {
        let n = read_full(&mut source, &mut buf)
            .map_err(|e| internal(format!("read backup {backup_id}: {e}")))?;
        if n == 0 {
            return Ok((bytes, stripe));
        }
        let records = encode_stripe(&params, OBJECT_ID, stripe, &buf[..n]).map_err(internal)?;
        for (i, record) in records.into_iter().enumerate() {
            let mut data = Vec::with_capacity(record.encoded_len());
            record.write_to(&mut data).map_err(internal)?;
            let chunk = ShardChunk {
                backup_id: backup_id.to_string(),
                object_id: OBJECT_ID,
                shard: i as u32,
                data,
            };
            senders[i]
                .blocking_send(chunk)
                .map_err(|_| Status::unavailable(format!("upload of shard {i} stopped")))?;
        }
        bytes += n as u64;
        stripe += 1;
    }
}

fn read_full(file: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Stores the manifest on one node of every site (the first that accepts it).
async fn store_manifest_everywhere(
    manifest: &Manifest,
    members: &BTreeMap<NodeId, Member>,
) -> Result<(), Status> {
    let json = manifest.to_json();
    let mut by_site: BTreeMap<&str, Vec<&Member>> = BTreeMap::new();
    for m in members.values() {
        by_site.entry(m.site.as_str()).or_default().push(m);
    }
    for (site, nodes) in by_site {
        let mut stored = false;
        let mut last_error = String::new();
        for m in nodes {
            match put_manifest(&m.addr, &json).await {
                Ok(()) => {
                    stored = true;
                    break;
                }
                Err(e) => last_error = e,
            }
        }
        if !stored {
            return Err(Status::unavailable(format!(
                "store the manifest on site {site}: {last_error}"
            )));
        }
    }
    Ok(())
}

async fn put_manifest(addr: &str, json: &str) -> Result<(), String> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    BackupClient::new(channel)
        .put_manifest(BackupManifest {
            json: json.to_string(),
        })
        .await
        .map(|_| ())
        .map_err(|e| format!("{addr}: {}", e.message()))
}
