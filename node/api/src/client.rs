//! The leader-following client. It keeps one lazily connected channel per endpoint, sends
//! to the node it believes leads, follows "not the leader" answers to the named leader,
//! and moves on to the next endpoint when one cannot be reached. A write is retried only
//! when it certainly was not applied (not-leader answer, or the connection was never
//! made); otherwise the caller gets `ClientError::Indeterminate`. Puts, gets, deletes and
//! transactions go over one `Multiplex` stream per node (`multiplex.rs`), shared by every
//! task using the client, unless `ClientOptions::multiplex` is off; the rest are unary.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use thiserror::Error;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::limits::GRPC_MESSAGE_BYTES_MAX;
use crate::model::{self, ValidationError};
use crate::multiplex::{Failure, Multiplexer};
use crate::pb::admin as apb;
use crate::pb::admin::admin_client::AdminClient;
use crate::pb::kv as kpb;
use crate::pb::kv::kv_client::KvClient;
use crate::pb::kv::{call, reply};
use crate::redirect::parse_not_leader;

/// HTTP/2 pings on idle connections, so a paused or vanished node is noticed quickly.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
/// A ping unanswered this long closes the connection.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(1);

/// Timeouts and retry budget.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Per-RPC timeout.
    pub rpc_timeout: Duration,
    /// Connect timeout per endpoint.
    pub connect_timeout: Duration,
    /// Total time one call may spend following leaders and retrying.
    pub deadline: Duration,
    /// Pause between rounds when no endpoint could serve.
    pub retry_pause: Duration,
    /// Send puts, gets, deletes and transactions over one `Multiplex` stream per node,
    /// several per frame when tasks call concurrently, instead of one unary RPC each.
    pub multiplex: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            rpc_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_millis(500),
            deadline: Duration::from_secs(10),
            retry_pause: Duration::from_millis(20),
            multiplex: true,
        }
    }
}

/// Why a call failed.
#[derive(Debug, Error)]
pub enum ClientError {
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint { endpoint: String, reason: String },
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("no endpoint reachable ({endpoints}): {last_error}")]
    Unreachable {
        endpoints: String,
        last_error: String,
    },
    #[error("no leader found within {waited_ms} ms: {last_error}")]
    NoLeader { waited_ms: u128, last_error: String },
    #[error("outcome unknown: {endpoint} failed after the request was sent ({status}); the write may or may not have been applied")]
    Indeterminate { endpoint: String, status: String },
    #[error("{endpoint} refused the request: {}", .status.message())]
    Rejected { endpoint: String, status: Status },
}

/// Whether a call may be repeated after an ambiguous failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Reads and barriers: repeating changes nothing.
    Idempotent,
    /// Writes: repeat only when certainly not applied.
    OnlyIfNotApplied,
}

/// A client of a Reprise cluster.
pub struct Client {
    endpoints: Mutex<Vec<String>>,
    channels: Mutex<HashMap<String, Channel>>,
    multiplexers: Mutex<HashMap<String, Multiplexer>>,
    preferred: Mutex<usize>,
    opts: ClientOptions,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoints", &self.endpoint_list())
            .finish()
    }
}

fn normalize(endpoint: &str) -> String {
    if endpoint.starts_with("http://") || endpoint.starts_with("https://") {
        endpoint.to_string()
    } else {
        format!("http://{endpoint}")
    }
}

impl Client {
    /// A client for `endpoints` (`host:port`, comma lists accepted). Connects lazily.
    pub fn new(endpoints: &[String], opts: ClientOptions) -> Result<Client, ClientError> {
        let list: Vec<String> = endpoints
            .iter()
            .flat_map(|e| e.split(','))
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(str::to_string)
            .collect();
        if list.is_empty() {
            return Err(ClientError::InvalidEndpoint {
                endpoint: String::new(),
                reason: "no endpoints given (use --endpoints or REPRISE_ENDPOINTS)".into(),
            });
        }
        let client = Client {
            endpoints: Mutex::new(Vec::new()),
            channels: Mutex::new(HashMap::new()),
            multiplexers: Mutex::new(HashMap::new()),
            preferred: Mutex::new(0),
            opts,
        };
        for e in &list {
            client.channel(e)?;
            client.lock_endpoints().push(e.clone());
        }
        Ok(client)
    }

    fn lock_endpoints(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.endpoints.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The endpoints known so far (given ones plus leaders learned from redirects).
    pub fn endpoint_list(&self) -> Vec<String> {
        self.lock_endpoints().clone()
    }

    fn channel(&self, endpoint: &str) -> Result<Channel, ClientError> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = channels.get(endpoint) {
            return Ok(c.clone());
        }
        let ep = Endpoint::from_shared(normalize(endpoint)).map_err(|e| {
            ClientError::InvalidEndpoint {
                endpoint: endpoint.to_string(),
                reason: e.to_string(),
            }
        })?;
        let channel = ep
            .connect_timeout(self.opts.connect_timeout)
            .timeout(self.opts.rpc_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true)
            .connect_lazy();
        channels.insert(endpoint.to_string(), channel.clone());
        Ok(channel)
    }

    fn prefer(&self, endpoint: &str) {
        let mut eps = self.lock_endpoints();
        let idx = match eps.iter().position(|e| e == endpoint) {
            Some(i) => i,
            None => {
                eps.push(endpoint.to_string());
                eps.len() - 1
            }
        };
        *self.preferred.lock().unwrap_or_else(|p| p.into_inner()) = idx;
    }

    fn prefer_next_after(&self, endpoint: &str) {
        let eps = self.lock_endpoints();
        if let Some(i) = eps.iter().position(|e| e == endpoint) {
            *self.preferred.lock().unwrap_or_else(|p| p.into_inner()) = (i + 1) % eps.len();
        }
    }

    fn current(&self, offset: usize) -> String {
        let eps = self.lock_endpoints();
        let p = *self.preferred.lock().unwrap_or_else(|p| p.into_inner());
        eps[(p + offset) % eps.len()].clone()
    }

    /// Runs `call` against the leader, following redirects and skipping dead endpoints.
    pub async fn call<T, F, Fut>(&self, retry: Retry, mut call: F) -> Result<T, ClientError>
    where
        F: FnMut(Channel) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        self.call_on(retry, |_, channel| {
            let response = call(channel);
            async move {
                response
                    .await
                    .map(tonic::Response::into_inner)
                    .map_err(Failure::Status)
            }
        })
        .await
    }

    /// Runs `attempt` (given an endpoint and its channel) against the leader, following
    /// redirects and skipping dead endpoints.
    async fn call_on<T, F, Fut>(&self, retry: Retry, mut attempt: F) -> Result<T, ClientError>
    where
        F: FnMut(String, Channel) -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let started = Instant::now();
        let mut offset = 0;
        let mut last_error = String::from("no attempt made");
        let mut saw_redirect = false;
        // Endpoints that refused a connection during this call: a redirect to one of them
        // names a leader that has just died, which followers report until they elect
        // another, so it is not followed (the other endpoints are tried instead).
        let mut refused: Vec<String> = Vec::new();
        while started.elapsed() < self.opts.deadline {
            let endpoint = self.current(offset);
            let channel = self.channel(&endpoint)?;
            let status = match attempt(endpoint.clone(), channel).await {
                Ok(resp) => {
                    self.prefer(&endpoint);
                    return Ok(resp);
                }
                // The stream to this endpoint ended before the call was framed: nothing
                // was sent, and the next attempt opens a new stream.
                Err(Failure::NotSent) => {
                    last_error = format!("{endpoint}: stream closed before the call was sent");
                    continue;
                }
                Err(Failure::Status(status)) => status,
            };
            last_error = format!("{endpoint}: {}", status.message());
            if let Some(leader) = parse_not_leader(&status) {
                saw_redirect = true;
                match leader {
                    Some(addr) if addr != endpoint && !refused.contains(&addr) => {
                        self.prefer(&addr);
                        offset = 0;
                        continue;
                    }
                    _ => offset += 1,
                }
            } else if never_sent(&status) {
                refused.push(endpoint);
                offset += 1;
            } else if retry == Retry::Idempotent && retriable(&status) {
                offset += 1;
            } else if retriable(&status) {
                // This node may be dead or paused: start the next call elsewhere.
                self.prefer_next_after(&endpoint);
                return Err(ClientError::Indeterminate {
                    endpoint,
                    status: status.to_string(),
                });
            } else {
                return Err(ClientError::Rejected { endpoint, status });
            }
            if offset % self.lock_endpoints().len() == 0 {
                tokio::time::sleep(self.opts.retry_pause).await;
            }
        }
        if saw_redirect {
            Err(ClientError::NoLeader {
                waited_ms: started.elapsed().as_millis(),
                last_error,
            })
        } else {
            Err(ClientError::Unreachable {
                endpoints: self.endpoint_list().join(","),
                last_error,
            })
        }
    }

    /// The `Multiplex` stream to `endpoint`, started anew when the last one has ended.
    fn multiplexer(&self, endpoint: &str, channel: Channel) -> Multiplexer {
        let mut muxes = self.multiplexers.lock().unwrap_or_else(|p| p.into_inner());
        match muxes.get(endpoint) {
            Some(m) if !m.is_closed() => m.clone(),
            _ => {
                let m = Multiplexer::start(Self::kv(channel));
                muxes.insert(endpoint.to_string(), m.clone());
                m
            }
        }
    }

    /// Runs `op` on the leader over the `Multiplex` stream; `pick` takes the expected
    /// answer out of the reply.
    async fn multiplexed<T>(
        &self,
        retry: Retry,
        op: call::Op,
        pick: fn(reply::Result) -> Result<T, reply::Result>,
    ) -> Result<T, ClientError> {
        let timeout = self.opts.rpc_timeout;
        self.call_on(retry, |endpoint, channel| {
            let mux = self.multiplexer(&endpoint, channel);
            let op = op.clone();
            async move {
                pick(mux.call(op, timeout).await?).map_err(|other| {
                    Failure::Status(Status::internal(format!(
                        "the node answered with a {} reply",
                        reply_kind(&other)
                    )))
                })
            }
        })
        .await
    }

    fn kv(channel: Channel) -> KvClient<Channel> {
        KvClient::new(channel)
            .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX)
    }

    /// Admin client on one channel.
    pub fn admin(channel: Channel) -> AdminClient<Channel> {
        AdminClient::new(channel)
            .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX)
    }

    /// Sets `key` to `value`.
    pub async fn put(&self, key: &[u8], value: &[u8]) -> Result<kpb::PutResponse, ClientError> {
        let req = kpb::PutRequest {
            key: key.to_vec(),
            value: value.to_vec(),
        };
        model::Put::check(&req)?;
        if self.opts.multiplex {
            return self
                .multiplexed(Retry::OnlyIfNotApplied, call::Op::Put(req), |r| match r {
                    reply::Result::Put(r) => Ok(r),
                    other => Err(other),
                })
                .await;
        }
        self.call(Retry::OnlyIfNotApplied, |c| {
            let req = req.clone();
            async move { Self::kv(c).put(req).await }
        })
        .await
    }

    /// Reads `key`.
    pub async fn get(&self, key: &[u8], stale: bool) -> Result<kpb::GetResponse, ClientError> {
        let req = kpb::GetRequest {
            key: key.to_vec(),
            consistency: consistency(stale),
        };
        model::Get::try_from(req.clone())?;
        if self.opts.multiplex {
            return self
                .multiplexed(Retry::Idempotent, call::Op::Get(req), |r| match r {
                    reply::Result::Get(r) => Ok(r),
                    other => Err(other),
                })
                .await;
        }
        self.call(Retry::Idempotent, |c| {
            let req = req.clone();
            async move { Self::kv(c).get(req).await }
        })
        .await
    }

    /// Deletes `key`.
    pub async fn delete(&self, key: &[u8]) -> Result<kpb::DeleteResponse, ClientError> {
        let req = kpb::DeleteRequest { key: key.to_vec() };
        model::Delete::try_from(req.clone())?;
        if self.opts.multiplex {
            return self
                .multiplexed(
                    Retry::OnlyIfNotApplied,
                    call::Op::Delete(req),
                    |r| match r {
                        reply::Result::Delete(r) => Ok(r),
                        other => Err(other),
                    },
                )
                .await;
        }
        self.call(Retry::OnlyIfNotApplied, |c| {
            let req = req.clone();
            async move { Self::kv(c).delete(req).await }
        })
        .await
    }

    /// One page of a scan.
    pub async fn scan(&self, req: kpb::ScanRequest) -> Result<kpb::ScanResponse, ClientError> {
        model::Scan::try_from(req.clone())?;
        self.call(Retry::Idempotent, |c| {
            let req = req.clone();
            async move { Self::kv(c).scan(req).await }
        })
        .await
    }

    /// A compare-and-swap transaction.
    pub async fn txn(&self, req: kpb::TxnRequest) -> Result<kpb::TxnResponse, ClientError> {
        model::Txn::try_from(req.clone())?;
        if self.opts.multiplex {
            return self
                .multiplexed(Retry::OnlyIfNotApplied, call::Op::Txn(req), |r| match r {
                    reply::Result::Txn(r) => Ok(r),
                    other => Err(other),
                })
                .await;
        }
        self.call(Retry::OnlyIfNotApplied, |c| {
            let req = req.clone();
            async move { Self::kv(c).txn(req).await }
        })
        .await
    }

    /// Bootstraps a new cluster with `members` (all voters) through the first endpoint
    /// that answers.
    pub async fn initialize(&self, members: Vec<apb::MemberInfo>) -> Result<(), ClientError> {
        self.call(Retry::Idempotent, |c| {
            let req = apb::InitializeRequest {
                members: members.clone(),
            };
            async move { Self::admin(c).initialize(req).await }
        })
        .await
        .map(|_| ())
    }

    /// Commits a no-op through the leader; returns the leader's id.
    pub async fn barrier(&self) -> Result<u64, ClientError> {
        self.call(Retry::Idempotent, |c| async move {
            Self::admin(c).barrier(apb::BarrierRequest {}).await
        })
        .await
        .map(|r| r.leader_id)
    }

    /// Status of the node at `endpoint` only (no leader following).
    pub async fn status_of(&self, endpoint: &str) -> Result<apb::NodeStatus, ClientError> {
        let channel = self.channel(endpoint)?;
        Self::admin(channel)
            .status(apb::StatusRequest {})
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| ClientError::Unreachable {
                endpoints: endpoint.to_string(),
                last_error: status.message().to_string(),
            })
    }

    /// State checksum of the node at `endpoint`.
    pub async fn checksum_of(&self, endpoint: &str) -> Result<apb::ChecksumResponse, ClientError> {
        let channel = self.channel(endpoint)?;
        Self::admin(channel)
            .checksum(apb::ChecksumRequest {})
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| ClientError::Rejected {
                endpoint: endpoint.to_string(),
                status,
            })
    }
}

/// What kind of answer a reply carries, for an error message.
fn reply_kind(r: &reply::Result) -> &'static str {
    match r {
        reply::Result::Put(_) => "put",
        reply::Result::Get(_) => "get",
        reply::Result::Delete(_) => "delete",
        reply::Result::Txn(_) => "txn",
        reply::Result::Error(_) => "error",
    }
}

fn consistency(stale: bool) -> i32 {
    if stale {
        kpb::Consistency::Stale as i32
    } else {
        kpb::Consistency::Linearizable as i32
    }
}

/// A transport failure before any byte of the request left: safe to retry anything.
/// tonic reports connection failures as `Unavailable` whose message names the connect
/// step; that text is the only signal it exposes.
/// The connection was never made (refused, unreachable, or the name did not resolve, as
/// for a stopped container in Docker's DNS): the request never left.
fn never_sent(status: &Status) -> bool {
    status.code() == Code::Unavailable
        && (status.message().contains("connect") || status.message().contains("dns error"))
}

fn retriable(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown
    )
}

#[cfg(test)]
mod never_sent_tests {
    use super::*;

    #[test]
    fn a_name_that_does_not_resolve_was_never_sent() {
        assert!(never_sent(&Status::unavailable("dns error")));
        assert!(never_sent(&Status::unavailable("tcp connect error")));
        assert!(!never_sent(&Status::unavailable("transport error")));
        assert!(!never_sent(&Status::deadline_exceeded("dns error")));
    }
}
