//! Messages between simulated hosts, over turmoil's simulated TCP: one request and one
//! response per connection, each a length-prefixed postcard frame. Raft messages are
//! openraft's own types; client requests are the register/set vocabulary of the workloads.

use std::time::Duration;

use openraft::error::RaftError;
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, VoteRequest, VoteResponse};
use reprise_storage::{NodeId, TypeConfig};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use turmoil::net::TcpStream;

/// Port every simulated node listens on.
pub const PORT: u16 = 7000;

/// Largest frame either side accepts.
const FRAME_BYTES_MAX: u32 = 16 * 1024 * 1024;

/// What a host can be asked.
#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    /// Client: set `key` to `value`.
    Put {
        key: String,
        value: Vec<u8>,
    },
    /// Client: linearizable read of `key`.
    Get {
        key: String,
    },
    /// Client: linearizable read of every key under `prefix`.
    Scan {
        prefix: String,
    },
}

/// A host's answer.
#[derive(Debug, Serialize, Deserialize)]
pub enum Response {
    Append(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    Written,
    Value(Option<Vec<u8>>),
    Keys(Vec<String>),
    /// Not the leader: the request was certainly not applied.
    NotLeader {
        leader: Option<NodeId>,
    },
    /// The request failed; for a write, it may or may not have been applied.
    Error(String),
}

/// How a call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No connection: the request was never sent.
    #[error("connect to {host}: {reason}")]
    NotSent { host: String, reason: String },
    /// Sent, but no answer arrived: it may or may not have taken effect.
    #[error("no answer from {host}: {reason}")]
    NoAnswer { host: String, reason: String },
}

/// Hostname of simulated node `id`.
pub fn host_name(id: NodeId) -> String {
    format!("node-{id}")
}

/// Sends `req` to `host` and waits at most `timeout` in all for the answer.
pub async fn call(host: &str, req: &Request, timeout: Duration) -> Result<Response, CallError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let not_sent = |reason: String| CallError::NotSent {
        host: host.to_string(),
        reason,
    };
    let mut stream = match tokio::time::timeout_at(deadline, TcpStream::connect((host, PORT))).await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(not_sent(e.to_string())),
        Err(_) => return Err(not_sent("connect timed out".into())),
    };
    let no_answer = |reason: String| CallError::NoAnswer {
        host: host.to_string(),
        reason,
    };
    let exchange = async {
        write_frame(&mut stream, req).await?;
        read_frame::<Response>(&mut stream).await
    };
    match tokio::time::timeout_at(deadline, exchange).await {
        Ok(Ok(resp)) => Ok(resp),
        Ok(Err(e)) => Err(no_answer(e.to_string())),
        Err(_) => Err(no_answer("timed out".into())),
    }
}

/// Writes one frame.
pub async fn write_frame<T: Serialize>(stream: &mut TcpStream, msg: &T) -> std::io::Result<()> {
    let bytes = postcard::to_allocvec(msg).map_err(std::io::Error::other)?;
    let len = u32::try_from(bytes.len())
        .ok()
        .filter(|l| *l <= FRAME_BYTES_MAX)
        .ok_or_else(|| std::io::Error::other(format!("frame of {} bytes", bytes.len())))?;
    stream.write_all(&len.to_be_bytes()).await?;
    stream.write_all(&bytes).await?;
    stream.flush().await
}

/// Reads one frame.
pub async fn read_frame<T: DeserializeOwned>(stream: &mut TcpStream) -> std::io::Result<T> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len);
    if len > FRAME_BYTES_MAX {
        return Err(std::io::Error::other(format!("frame of {len} bytes")));
    }
    let mut buf = vec![0u8; len as usize];
    stream.read_exact(&mut buf).await?;
    postcard::from_bytes(&buf).map_err(std::io::Error::other)
}
