//! How a node that is not the leader says so: gRPC `Unavailable` with metadata naming the
//! leader, so the client can retry there knowing nothing was applied.

use tonic::metadata::MetadataValue;
use tonic::Status;

/// Present (value "1") on every "not the leader, nothing applied" answer.
pub const NOT_LEADER: &str = "reprise-not-leader";
/// Address of the current leader, when known.
pub const LEADER_ADDR: &str = "reprise-leader-addr";
/// Node id of the current leader, when known.
pub const LEADER_ID: &str = "reprise-leader-id";

/// Builds the not-leader status.
pub fn not_leader(leader: Option<(u64, &str)>) -> Status {
    let mut status = match leader {
        Some((id, addr)) => {
            Status::unavailable(format!("not the leader; leader is node {id} at {addr}"))
        }
        None => Status::unavailable("no leader elected yet"),
    };
    let md = status.metadata_mut();
    md.insert(NOT_LEADER, MetadataValue::from_static("1"));
    if let Some((id, addr)) = leader {
        if let Ok(v) = addr.parse() {
            md.insert(LEADER_ADDR, v);
        }
        md.insert(LEADER_ID, MetadataValue::from(id));
    }
    status
}

/// If `status` is a not-leader answer: `Some(leader address if known)`.
pub fn parse_not_leader(status: &Status) -> Option<Option<String>> {
    let md = status.metadata();
    md.get(NOT_LEADER)?;
    Some(
        md.get(LEADER_ADDR)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    )
}
