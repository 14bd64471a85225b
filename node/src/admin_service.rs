//! The admin gRPC service: node status (from Raft metrics), cluster bootstrap, adding and
//! removing members with their sites, a barrier write, and the local state checksum.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{ChangeMembers, ServerState};
use reprise_api::pb::admin::admin_server::Admin;
use reprise_api::pb::admin::*;
use reprise_storage::command::Operation;
use reprise_storage::types::StoredMembership;
use reprise_storage::{Member, NodeId};
use tonic::{Request, Response, Status};

use crate::state::{internal, redirect, NodeState};

/// The `Admin` service of one node.
pub struct AdminService {
    pub state: Arc<NodeState>,
}

fn member_from(info: &MemberInfo) -> Result<(NodeId, Member), Status> {
    if info.addr.trim().is_empty() || info.site.trim().is_empty() {
        return Err(Status::invalid_argument(format!(
            "member {}: addr and site are required",
            info.id
        )));
    }
    let zone = (!info.zone.is_empty()).then(|| info.zone.clone());
    Ok((
        info.id,
        Member {
            addr: info.addr.clone(),
            site: info.site.clone(),
            zone,
        },
    ))
}

/// Members of a stored membership, voters flagged.
pub fn members_of(m: &StoredMembership) -> Vec<MemberInfo> {
    let voters: BTreeSet<NodeId> = m.membership().voter_ids().collect();
    m.membership()
        .nodes()
        .map(|(id, node)| MemberInfo {
            id: *id,
            addr: node.addr.clone(),
            site: node.site.clone(),
            zone: node.zone.clone().unwrap_or_default(),
            voter: voters.contains(id),
        })
        .collect()
}

fn write_error(e: RaftError<NodeId, ClientWriteError<NodeId, Member>>) -> Status {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => redirect(&f),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
            Status::failed_precondition(c.to_string())
        }
        RaftError::Fatal(f) => Status::unavailable(format!("raft stopped: {f}")),
    }
}

impl AdminService {
    fn membership_response(&self, index: u64) -> MembershipResponse {
        let metrics = self.state.raft.metrics().borrow().clone();
        MembershipResponse {
            index,
            members: members_of(&metrics.membership_config),
        }
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn status(&self, _req: Request<StatusRequest>) -> Result<Response<NodeStatus>, Status> {
        let m = self.state.raft.metrics().borrow().clone();
        let role = match m.state {
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        };
        let replication = m
            .replication
            .iter()
            .flatten()
            .map(|(id, matched)| Replication {
                id: *id,
                matched_index: matched.map(|l| l.index),
            })
            .collect();
        let members = members_of(&m.membership_config);
        let (archive_behind_ms, archive_error) = if role == "leader" {
            let status = crate::archiver::lock(&self.state.archive_status);
            (
                Some(
                    status
                        .caught_up_at
                        .map(|t| t.elapsed().as_millis() as u64)
                        .unwrap_or(u64::MAX),
                ),
                status.last_error.clone(),
            )
        } else {
            (None, String::new())
        };
        Ok(Response::new(NodeStatus {
            id: self.state.id,
            addr: self.state.member.addr.clone(),
            site: self.state.member.site.clone(),
            role: role.to_string(),
            term: m.current_term,
            leader_id: m.current_leader,
            last_log_index: m.last_log_index.unwrap_or(0),
            applied_index: m.last_applied.map(|l| l.index).unwrap_or(0),
            snapshot_index: m.snapshot.map(|l| l.index).unwrap_or(0),
            purged_index: m.purged.map(|l| l.index).unwrap_or(0),
            initialized: !members.is_empty(),
            members,
            replication,
            cluster_name: self.state.raft.config().cluster_name.clone(),
            archived_index: self
                .state
                .archived
                .load(std::sync::atomic::Ordering::Acquire),
            archive_enabled: self.state.archive_enabled,
            archive_behind_ms,
            archive_error,
        }))
    }

    async fn initialize(
        &self,
        req: Request<InitializeRequest>,
    ) -> Result<Response<InitializeResponse>, Status> {
        let mut members = BTreeMap::new();
        for info in &req.into_inner().members {
            let (id, member) = member_from(info)?;
            if members.insert(id, member).is_some() {
                return Err(Status::invalid_argument(format!(
                    "duplicate member id {id}"
                )));
            }
        }
        match self.state.raft.initialize(members).await {
            Ok(()) => Ok(Response::new(InitializeResponse {})),
            Err(RaftError::APIError(InitializeError::NotAllowed(e))) => {
                Err(Status::already_exists(format!("already initialized: {e}")))
            }
            Err(RaftError::APIError(InitializeError::NotInMembers(e))) => {
                Err(Status::invalid_argument(e.to_string()))
            }
            Err(RaftError::Fatal(f)) => Err(Status::unavailable(format!("raft stopped: {f}"))),
        }
    }

    async fn add_node(
        &self,
        req: Request<AddNodeRequest>,
    ) -> Result<Response<MembershipResponse>, Status> {
        let req = req.into_inner();
        let info = req
            .member
            .ok_or_else(|| Status::invalid_argument("member is required"))?;
        let (id, member) = member_from(&info)?;
        let current = self.state.raft.metrics().borrow().membership_config.clone();
        if current.membership().get_node(&id).is_some() {
            return Err(Status::already_exists(format!(
                "node id {id} is already a member; a replacement node needs a new id"
            )));
        }
        let resp = self
            .state
            .raft
            .add_learner(id, member, true)
            .await
            .map_err(write_error)?;
        let mut index = resp.log_id.index;
        if req.as_voter {
            let resp = self
                .state
                .raft
                .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
                .await
                .map_err(write_error)?;
            index = resp.log_id.index;
        }
        Ok(Response::new(self.membership_response(index)))
    }

    async fn remove_node(
        &self,
        req: Request<RemoveNodeRequest>,
    ) -> Result<Response<MembershipResponse>, Status> {
        let id = req.into_inner().id;
        let current = self.state.raft.metrics().borrow().membership_config.clone();
        let is_voter = current.membership().voter_ids().any(|v| v == id);
        if current.membership().get_node(&id).is_none() {
            return Err(Status::not_found(format!("node {id} is not a member")));
        }
        let change = if is_voter {
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        let resp = self
            .state
            .raft
            .change_membership(change, false)
            .await
            .map_err(write_error)?;
        Ok(Response::new(self.membership_response(resp.log_id.index)))
    }

    async fn barrier(
        &self,
        _req: Request<BarrierRequest>,
    ) -> Result<Response<BarrierResponse>, Status> {
        let w = self.state.write(Operation::Noop).await?;
        Ok(Response::new(BarrierResponse {
            index: w.log_id.index,
            leader_id: self.state.id,
        }))
    }

    async fn transfer_leader(
        &self,
        req: Request<TransferLeaderRequest>,
    ) -> Result<Response<TransferLeaderResponse>, Status> {
        let started = std::time::Instant::now();
        let leader_id = crate::transfer::transfer_leader(&self.state, req.into_inner().to).await?;
        Ok(Response::new(TransferLeaderResponse {
            leader_id,
            took_ms: started.elapsed().as_millis() as u64,
        }))
    }

    async fn campaign(
        &self,
        req: Request<CampaignRequest>,
    ) -> Result<Response<CampaignResponse>, Status> {
        crate::transfer::campaign(&self.state, req.into_inner().after_ms).await?;
        Ok(Response::new(CampaignResponse {}))
    }

    async fn set_clock_skew(
        &self,
        req: Request<ClockSkewRequest>,
    ) -> Result<Response<ClockSkewResponse>, Status> {
        use crate::hlc::Clock;
        let skew_ms = req.into_inner().skew_ms;
        self.state.clock.set_skew_ms(skew_ms);
        tracing::warn!(skew_ms, "clock skew set by an admin request (chaos)");
        Ok(Response::new(ClockSkewResponse {
            now_ms: self.state.clock.now_ms(),
        }))
    }

    async fn set_partition(
        &self,
        req: Request<PartitionLinks>,
    ) -> Result<Response<PartitionLinks>, Status> {
        let req = req.into_inner();
        let links = crate::partition::Links {
            to: req.block_to.into_iter().collect(),
            from: req.block_from.into_iter().collect(),
        };
        tracing::warn!(to = ?links.to, from = ?links.from, "peer links cut by an admin request (chaos)");
        self.state.partition.set(links);
        let now = self.state.partition.links();
        Ok(Response::new(PartitionLinks {
            block_to: now.to.into_iter().collect(),
            block_from: now.from.into_iter().collect(),
        }))
    }

    async fn checksum(
        &self,
        _req: Request<ChecksumRequest>,
    ) -> Result<Response<ChecksumResponse>, Status> {
        let view = self.state.view.clone();
        let sum = tokio::task::spawn_blocking(move || view.checksum())
            .await
            .map_err(internal)?
            .map_err(internal)?;
        Ok(Response::new(ChecksumResponse {
            applied_index: sum.applied_index,
            keys: sum.keys,
            digest: sum.hex(),
        }))
    }
}
