//! A failed call on the `Multiplex` stream: the server turns the `Status` its unary RPC
//! would have returned into a `CallError`, and the client turns it back into that same
//! `Status`, so leader redirects and error codes mean one thing on both paths.

use tonic::{Code, Status};

use crate::pb::kv::CallError;
use crate::redirect::{not_leader, LEADER_ADDR, LEADER_ID, NOT_LEADER};

/// What `status` says, as a call's error.
pub fn from_status(status: &Status) -> CallError {
    let md = status.metadata();
    let text = |key: &str| {
        md.get(key)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    CallError {
        code: status.code() as i32,
        message: status.message().to_string(),
        not_leader: md.get(NOT_LEADER).is_some(),
        leader_addr: text(LEADER_ADDR).unwrap_or_default(),
        leader_id: text(LEADER_ID).and_then(|v| v.parse().ok()).unwrap_or(0),
    }
}

/// The `Status` the unary RPC would have returned.
pub fn to_status(e: CallError) -> Status {
    if e.not_leader {
        let leader = (!e.leader_addr.is_empty()).then_some((e.leader_id, e.leader_addr.as_str()));
        return not_leader(leader);
    }
    Status::new(Code::from_i32(e.code), e.message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redirect::parse_not_leader;

    #[test]
    fn a_redirect_survives_the_round_trip() {
        let status = to_status(from_status(&not_leader(Some((3, "127.0.0.1:7003")))));
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(
            parse_not_leader(&status),
            Some(Some("127.0.0.1:7003".to_string()))
        );
        assert!(status.message().contains("node 3"));
    }

    #[test]
    fn no_leader_yet_is_still_a_redirect_without_an_address() {
        let status = to_status(from_status(&not_leader(None)));
        assert_eq!(parse_not_leader(&status), Some(None));
    }

    #[test]
    fn other_errors_keep_their_code_and_message_and_are_no_redirect() {
        let status = to_status(from_status(&Status::invalid_argument("key is empty")));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "key is empty");
        assert_eq!(parse_not_leader(&status), None);
    }
}
