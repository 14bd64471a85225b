//! Storing backup objects from the leader: cut an object into stripes, encode each into k
//! data + m parity shards, stream every shard index to a backup target of the site it is
//! placed in (a node of the site, or a bucket: `backup_targets`), then store the manifest
//! on every target of every site. Snapshot backups (a fresh snapshot) are created here and
//! recorded in the replicated catalog; the log archive (`archiver`) stores its segments
//! the same way.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::ServerState;
use reprise_api::pb::backup::CreateBackupRequest;
use reprise_storage::backup::codec::{encode_stripe_records, CodecParams};
use reprise_storage::backup::manifest::{
    place_shards, BackupObject, Manifest, ShardPlacement, KIND_SNAPSHOT, MANIFEST_FORMAT,
};
use reprise_storage::backup::target::{BackupStore, Location, Piece, StoredShard, TargetError};
use reprise_storage::command::Operation;
use reprise_storage::snapshot::format::read_trailer;
use reprise_storage::{Member, NodeId};
use tokio::sync::mpsc;
use tonic::Status;

use crate::background_thread;
use crate::backup_targets::{site_stores, Store};
use crate::node_store::NodeStore;
use crate::state::{internal, redirect_to, NodeState};

/// Default stripe size.
pub const STRIPE_BYTES_DEFAULT: u32 = 4 * 1024 * 1024;
/// The object id of the one object (snapshot or log segment) inside a backup.
pub const OBJECT_ID: u64 = 0;
const SNAPSHOT_DEADLINE: Duration = Duration::from_secs(120);
/// Encoded records in flight per shard stream.
const SHARD_QUEUE: usize = 4;

/// The target one shard index of every stripe goes to.
pub struct ShardTarget {
    pub site: String,
    pub store: Store,
    /// For a node target: the node and its address (recorded in the manifest).
    pub node: NodeId,
    pub addr: String,
}

/// Where the shards of a new backup object go: the codec, one target per shard index,
/// the targets of every site (for the manifest) and every member (a node target's
/// manifest may go to another node of its site when the first one is down).
pub struct Placement {
    pub params: CodecParams,
    pub targets: Vec<ShardTarget>,
    pub site_stores: BTreeMap<String, Vec<Store>>,
    pub members: BTreeMap<NodeId, Member>,
}

fn target_failed(e: TargetError) -> Status {
    match e {
        TargetError::Config(_) => Status::failed_precondition(e.to_string()),
        TargetError::Refused { .. } => Status::failed_precondition(e.to_string()),
        TargetError::Unavailable { .. } => Status::unavailable(e.to_string()),
    }
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
    let config = state.view.cluster_config().map_err(internal)?;
    let stores = site_stores(&config.backup_targets, &members).map_err(target_failed)?;
    let mut used: BTreeMap<&str, usize> = BTreeMap::new();
    let targets = sited
        .iter()
        .map(|site| {
            let (id, m) = members
                .iter()
                .find(|(_, m)| &m.site == site)
                .ok_or_else(|| Status::internal("site without node"))?;
            let candidates = stores
                .get(site)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| Status::internal("site without backup target"))?;
            // Several targets on one site share its shards round-robin.
            let n = used.entry(site.as_str()).or_default();
            let mut store = candidates[*n % candidates.len()].clone();
            *n += 1;
            let (node, addr) = match store.location() {
                Location::Node => (*id, m.addr.clone()),
                Location::S3 { .. } | Location::Dir { .. } => (0, String::new()),
            };
            if store.location() == Location::Node && node == state.id {
                // This node's own shard: written to its shard directory directly.
                store = Arc::new(NodeStore::this_node(node, &addr, &state.shard_dir()));
            }
            Ok(ShardTarget {
                site: site.clone(),
                store,
                node,
                addr,
            })
        })
        .collect::<Result<_, Status>>()?;
    Ok(Placement {
        params,
        targets,
        site_stores: stores,
        members,
    })
}

/// Erasure-codes one object read from `source`, stores shard `i` on `targets[i]`, then the
/// manifest (built by `describe` from the stored shards, the size and the stripe count)
/// on every site. `encoded` counts the object's bytes as they are encoded (progress).
/// Returns the manifest.
pub async fn store_object(
    backup_id: &str,
    source: Box<dyn Read + Send>,
    placement: &Placement,
    encoded: Arc<AtomicU64>,
    describe: impl FnOnce(Vec<ShardPlacement>, u64, u64) -> Manifest,
) -> Result<Manifest, Status> {
    let (stored, bytes, stripes) = stream_shards(
        backup_id,
        source,
        placement.params,
        &placement.targets,
        encoded,
    )
    .await?;
    let shards = placement
        .targets
        .iter()
        .zip(stored)
        .enumerate()
        .map(|(i, (t, r))| ShardPlacement {
            shard: i as u8,
            site: t.site.clone(),
            node: t.node,
            addr: t.addr.clone(),
            bytes: r.bytes,
            crc32c: r.crc32c,
            location: t.store.location(),
        })
        .collect();
    let manifest = describe(shards, bytes, stripes);
    store_manifest_everywhere(&manifest, placement).await?;
    Ok(manifest)
}

/// Creates a backup of the current state, records it in the replicated catalog, and
/// returns its manifest. `progress` gets the snapshot's size, then the bytes encoded.
pub async fn create_backup(
    state: &Arc<NodeState>,
    req: CreateBackupRequest,
    progress: &BackupProgress,
) -> Result<Manifest, Status> {
    let _one_at_a_time = state.backup_lock.lock().await;
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
    let catalog = state.view.cluster_config().map_err(internal)?.backups;
    if let Some(done) = catalog.get(&backup_id) {
        // Nothing was written since that backup: it is this backup.
        return Ok(done.clone());
    }
    let source = std::fs::File::open(&file.path)
        .map_err(|e| internal(format!("open {}: {e}", file.path.display())))?;
    if let Ok(meta) = source.metadata() {
        progress.total.store(meta.len(), Ordering::Relaxed);
    }
    let params = placement.params;
    let cluster_name = state.raft.config().cluster_name.clone();
    let manifest = store_object(
        &backup_id,
        Box::new(source),
        &placement,
        progress.encoded.clone(),
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
    .await?;
    state
        .write(Operation::RecordBackup(Box::new(manifest.clone())))
        .await?;
    Ok(manifest)
}

/// How far a backup got: the object's size once known, and the bytes encoded and handed
/// to the targets so far.
#[derive(Debug, Default, Clone)]
pub struct BackupProgress {
    pub total: Arc<AtomicU64>,
    pub encoded: Arc<AtomicU64>,
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
    state
        .snapshots
        .newest()
        .map_err(internal)?
        .ok_or_else(|| Status::internal("snapshot vanished"))
}

/// Encodes the object read from `source` and streams shard `i` to `targets[i]`. Returns
/// each target's stored size and checksum, the object size and the stripe count.
async fn stream_shards(
    backup_id: &str,
    source: Box<dyn Read + Send>,
    params: CodecParams,
    targets: &[ShardTarget],
    encoded: Arc<AtomicU64>,
) -> Result<(Vec<StoredShard>, u64, u64), Status> {
    let mut senders = Vec::new();
    let mut uploads = Vec::new();
    for (shard, target) in targets.iter().enumerate() {
        let (tx, rx) = mpsc::channel::<Piece>(SHARD_QUEUE);
        senders.push(tx);
        let store = target.store.clone();
        let id = backup_id.to_string();
        uploads.push(tokio::spawn(async move {
            store
                .put_shard(&id, OBJECT_ID, shard as u8, rx)
                .await
                .map_err(|e| Status::unavailable(format!("store shard {shard} of {id}: {e}")))
        }));
    }
    let id = backup_id.to_string();
    let encoded = background_thread::run("backup-encode", move || {
        encode_object(&id, source, params, senders, &encoded)
    })
    .await
    .map_err(internal)?;
    // An upload that failed closed its channel and stopped the encoder: its own error
    // says why, so it is reported before the encoder's.
    let mut stored = Vec::new();
    for u in uploads {
        stored.push(u.await.map_err(internal)??);
    }
    let (bytes, stripes) = encoded?;
    Ok((stored, bytes, stripes))
}

fn encode_object(
    backup_id: &str,
    mut source: Box<dyn Read + Send>,
    params: CodecParams,
    senders: Vec<mpsc::Sender<Piece>>,
    encoded: &AtomicU64,
) -> Result<(u64, u64), Status> {
    let mut buf = vec![0u8; params.stripe_bytes as usize];
    let (mut bytes, mut stripe) = (0u64, 0u64);
    loop {
        let n = read_full(&mut source, &mut buf)
            .map_err(|e| internal(format!("read backup {backup_id}: {e}")))?;
        if n == 0 {
            for (i, s) in senders.iter().enumerate() {
                s.blocking_send(Piece::End)
                    .map_err(|_| Status::unavailable(format!("upload of shard {i} stopped")))?;
            }
            return Ok((bytes, stripe));
        }
        let records =
            encode_stripe_records(&params, OBJECT_ID, stripe, &buf[..n]).map_err(internal)?;
        for (i, data) in records.into_iter().enumerate() {
            senders[i]
                .blocking_send(Piece::Data(data))
                .map_err(|_| Status::unavailable(format!("upload of shard {i} stopped")))?;
        }
        bytes += n as u64;
        encoded.fetch_add(n as u64, Ordering::Relaxed);
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

/// Stores the manifest on every target of every site; a node target may be served by any
/// node of its site (the first that accepts it).
async fn store_manifest_everywhere(
    manifest: &Manifest,
    placement: &Placement,
) -> Result<(), Status> {
    let json = manifest.to_json();
    let id = &manifest.backup_id;
    for (site, stores) in &placement.site_stores {
        for store in stores {
            let mut result = store.put_manifest(id, &json).await;
            if result.is_err() && store.location() == Location::Node {
                for (node, m) in placement.members.iter().filter(|(_, m)| &m.site == site) {
                    let other = NodeStore::new(*node, &m.addr);
                    result = other.put_manifest(id, &json).await;
                    if result.is_ok() {
                        break;
                    }
                }
            }
            result.map_err(|e| {
                Status::unavailable(format!("store the manifest of {id} on site {site}: {e}"))
            })?;
        }
    }
    Ok(())
}
