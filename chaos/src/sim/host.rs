//! The software of one simulated node: openraft with the real state machine
//! (`reprise_storage::StateMachineStore`, applying the real commands) over the
//! simulated disk and network, the HLC stamping writes from simulated time, and the real
//! linearizable read path (leader lease, else batched read-index rounds; a lease holder
//! refuses votes, as the real peer service does) and quiet rejoin. A crash drops all of it; the disk
//! ([`SimDisk`]) survives. Each incarnation starts an empty state machine, so a restarted
//! node rebuilds its state by re-applying its log (the simulation never snapshots).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use openraft::raft::VoteResponse;
use reprise_node::hlc::{Clock, Hlc};
use reprise_node::read_index::ReadBatcher;
use reprise_node::rejoin::{self, LeaderHeard};
use reprise_node::Raft;
use reprise_storage::{Command, KvView, Member, NodeId, Operation, StateMachineStore};
use turmoil::net::{TcpListener, TcpStream};

use super::disk::{SimBug, SimDisk, SimLogStore};
use super::net::SimNetwork;
use super::plan::NODES;
use super::wire::{self, Request, Response, PORT};

/// Most keys a scan returns.
const SCAN_KEYS_MAX: usize = 1_000_000;

/// What the driver can see of a running node.
#[derive(Clone)]
pub struct LiveNode {
    pub raft: Raft,
    pub view: KvView,
}

/// One simulated node across its incarnations.
pub struct NodeSlot {
    pub id: NodeId,
    pub disk: SimDisk,
    /// The running incarnation, if any (cleared by the driver when it crashes the node).
    pub live: RefCell<Option<LiveNode>>,
    /// Parent of every incarnation's state machine directory.
    pub dir: PathBuf,
    pub incarnations: RefCell<u32>,
    pub fsync: Duration,
    pub bug: Option<SimBug>,
}

/// Wall clock of a simulated host: the simulation's own epoch-based time.
struct SimClock;

impl Clock for SimClock {
    fn now_ms(&self) -> u64 {
        turmoil::since_epoch()
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

/// Every node, one per site.
pub fn members() -> BTreeMap<NodeId, Member> {
    (1..=NODES)
        .map(|id| {
            let member = Member {
                addr: format!("{}:{PORT}", wire::host_name(id)),
                site: format!("site-{id}"),
                zone: None,
            };
            (id, member)
        })
        .collect()
}

/// openraft settings: the node's defaults, but never snapshotting (see the module doc).
fn raft_config() -> Result<openraft::Config, String> {
    let r = reprise_node::config::RaftSettings::default();
    openraft::Config {
        cluster_name: "reprise-sim".into(),
        heartbeat_interval: r.heartbeat_interval_ms,
        election_timeout_min: r.election_timeout_ms_min,
        election_timeout_max: r.election_timeout_ms_max,
        max_payload_entries: r.append_entries_max,
        snapshot_policy: openraft::SnapshotPolicy::Never,
        ..Default::default()
    }
    .validate()
    .map_err(|e| e.to_string())
}

/// Runs one incarnation of the node until it crashes.
pub async fn run(slot: Rc<NodeSlot>) -> turmoil::Result {
    let first_boot = slot.disk.is_blank();
    let incarnation = {
        let mut n = slot.incarnations.borrow_mut();
        *n += 1;
        *n
    };
    let dir = slot.dir.join(format!("node-{}-{incarnation}", slot.id));
    let state_machine = StateMachineStore::open(&dir)?;
    let view = state_machine.view();
    let log = SimLogStore::new(slot.disk.clone(), slot.fsync, slot.bug);
    let config = Arc::new(raft_config()?);
    let reads = Arc::new(ReadBatcher::for_config(&config, !first_boot));
    let raft = Raft::new(slot.id, config, SimNetwork, log, state_machine).await?;
    // Quiet rejoin, as in the real node: no campaign before a leader was heard or the
    // grace passed (the read lease counts on a restarted node not electing itself).
    let leader_heard = Arc::new(LeaderHeard::default());
    rejoin::hold_elections(&raft, leader_heard.clone(), rejoin::grace(raft.config()));
    if first_boot {
        // Every node initializes with the same membership; openraft accepts that.
        raft.initialize(members()).await?;
    }
    *slot.live.borrow_mut() = Some(LiveNode {
        raft: raft.clone(),
        view: view.clone(),
    });
    let node = Rc::new(Serving {
        id: slot.id,
        raft,
        view,
        hlc: Hlc::new(Arc::new(SimClock)),
        reads,
        leader_heard,
    });
    let listener = TcpListener::bind(("0.0.0.0", PORT)).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::task::spawn_local(node.clone().serve(stream));
    }
}

struct Serving {
    id: NodeId,
    raft: Raft,
    view: KvView,
    hlc: Hlc,
    reads: Arc<ReadBatcher>,
    /// Told about every AppendEntries answered (quiet rejoin).
    leader_heard: Arc<LeaderHeard>,
}

impl Serving {
    async fn serve(self: Rc<Self>, mut stream: TcpStream) {
        let Ok(req) = wire::read_frame::<Request>(&mut stream).await else {
            return;
        };
        let resp = self.answer(req).await;
        // The caller may be gone (crashed, timed out): nothing to do about it.
        let _ = wire::write_frame(&mut stream, &resp).await;
    }

    fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    async fn answer(&self, req: Request) -> Response {
        match req {
            Request::Append(rpc) => {
                let result = self.raft.append_entries(rpc).await;
                self.leader_heard.answered(&result);
                Response::Append(result)
            }
            Request::Vote(rpc) => match self.reads.admit_vote() {
                // Held until Raft answered, as on a real node.
                Some(_admitted) => Response::Vote(self.raft.vote(rpc).await),
                None => {
                    let vote = self.raft.metrics().borrow().vote;
                    Response::Vote(Ok(VoteResponse::new(vote, None, false)))
                }
            },
            Request::Put { key, value } => {
                if self.leader() != Some(self.id) {
                    return Response::NotLeader {
                        leader: self.leader(),
                    };
                }
                let command = Command {
                    hlc: self.hlc.stamp(0),
                    op: Operation::Put {
                        key: key.into_bytes(),
                        value: value.into(),
                    },
                };
                // Once handed to openraft the write may commit even if this call fails
                // (leadership lost meanwhile): any error is an unknown outcome.
                match self.raft.client_write(command).await {
                    Ok(_) => Response::Written,
                    Err(e) => Response::Error(e.to_string()),
                }
            }
            Request::Get { key } => {
                self.linearizable(|view| {
                    let v = view.get(key.as_bytes())?;
                    Ok(Response::Value(v.map(|v| v.value.to_vec())))
                })
                .await
            }
            Request::Scan { prefix } => {
                self.linearizable(|view| {
                    let kvs = view.prefix(prefix.as_bytes(), b"", SCAN_KEYS_MAX)?;
                    Ok(Response::Keys(
                        kvs.into_iter()
                            .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
                            .collect(),
                    ))
                })
                .await
            }
        }
    }

    /// Serves `read` through the node's linearizable read path, or the answer to give
    /// instead.
    async fn linearizable(
        &self,
        read: impl Fn(&KvView) -> Result<Response, reprise_storage::StateMachineError>,
    ) -> Response {
        if self.leader() != Some(self.id) {
            return Response::NotLeader {
                leader: self.leader(),
            };
        }
        self.reads
            .read(&self.raft, || {
                Ok(read(&self.view).unwrap_or_else(|e| Response::Error(e.to_string())))
            })
            .await
            .unwrap_or_else(|s| Response::Error(s.message().to_string()))
    }
}
