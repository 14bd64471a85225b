//! The client's `Multiplex` path against scripted servers on 127.0.0.1: replies reach
//! their callers whatever their order, concurrent calls share frames, a redirect inside
//! the stream is followed, and a stream that breaks with writes in flight reports them
//! as indeterminate, never as safe to retry.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reprise_api::call_error;
use reprise_api::pb::kv::kv_server::{Kv, KvServer};
use reprise_api::pb::kv::*;
use reprise_api::redirect::not_leader;
use reprise_api::{Client, ClientError, ClientOptions};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// What a scripted server does with the frames it reads.
#[derive(Clone, Copy)]
enum Script {
    /// Answers each frame's puts in reverse order; the version is the key's length.
    Reverse,
    /// Answers every call "not the leader; it is at `1`".
    Redirect,
    /// Reads one frame, answers nothing, and fails the stream.
    Break,
}

#[derive(Clone)]
struct Scripted {
    script: Script,
    leader: String,
    frames: Arc<AtomicUsize>,
    calls: Arc<AtomicUsize>,
}

fn put_reply(id: u64, key: &[u8]) -> Reply {
    Reply {
        id,
        result: Some(reply::Result::Put(PutResponse {
            header: None,
            version: key.len() as u64,
        })),
    }
}

#[tonic::async_trait]
impl Kv for Scripted {
    type MultiplexStream = ReceiverStream<Result<ReplyFrame, Status>>;

    async fn put(&self, _: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        Err(Status::unimplemented("scripted server: unary put"))
    }
    async fn get(&self, _: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        Err(Status::unimplemented("scripted server: unary get"))
    }
    async fn delete(&self, _: Request<DeleteRequest>) -> Result<Response<DeleteResponse>, Status> {
        Err(Status::unimplemented("scripted server: unary delete"))
    }
    async fn scan(&self, _: Request<ScanRequest>) -> Result<Response<ScanResponse>, Status> {
        Err(Status::unimplemented("scripted server: unary scan"))
    }
    async fn txn(&self, _: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        Err(Status::unimplemented("scripted server: unary txn"))
    }

    async fn multiplex(
        &self,
        req: Request<Streaming<CallFrame>>,
    ) -> Result<Response<Self::MultiplexStream>, Status> {
        let mut calls = req.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let me = self.clone();
        tokio::spawn(async move {
            while let Ok(Some(frame)) = calls.message().await {
                me.frames.fetch_add(1, Ordering::SeqCst);
                me.calls.fetch_add(frame.calls.len(), Ordering::SeqCst);
                let replies = match me.script {
                    Script::Reverse => frame
                        .calls
                        .iter()
                        .rev()
                        .map(|c| match &c.op {
                            Some(call::Op::Put(p)) => put_reply(c.id, &p.key),
                            _ => Reply {
                                id: c.id,
                                result: Some(reply::Result::Error(call_error::from_status(
                                    &Status::invalid_argument("scripted server: puts only"),
                                ))),
                            },
                        })
                        .collect(),
                    Script::Redirect => frame
                        .calls
                        .iter()
                        .map(|c| Reply {
                            id: c.id,
                            result: Some(reply::Result::Error(call_error::from_status(
                                &not_leader(Some((1, &me.leader))),
                            ))),
                        })
                        .collect(),
                    Script::Break => {
                        let _ = tx
                            .send(Err(Status::unavailable("scripted server: stream broken")))
                            .await;
                        return;
                    }
                };
                if tx.send(Ok(ReplyFrame { replies })).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Starts a scripted server; returns its address and counters. It stops with the runtime.
async fn start(script: Script, leader: &str) -> (String, Scripted) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr").to_string();
    let svc = Scripted {
        script,
        leader: leader.to_string(),
        frames: Arc::new(AtomicUsize::new(0)),
        calls: Arc::new(AtomicUsize::new(0)),
    };
    let server = KvServer::new(svc.clone());
    tokio::spawn(async move {
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let _ = tonic::transport::Server::builder()
            .add_service(server)
            .serve_with_incoming(incoming)
            .await;
    });
    (addr, svc)
}

fn client(endpoints: &[String]) -> Client {
    Client::new(
        endpoints,
        ClientOptions {
            deadline: Duration::from_secs(5),
            rpc_timeout: Duration::from_secs(2),
            ..Default::default()
        },
    )
    .expect("client")
}

#[tokio::test]
async fn replies_reach_their_callers_in_any_order_and_calls_share_frames() {
    let (addr, svc) = start(Script::Reverse, "").await;
    let client = Arc::new(client(&[addr]));
    let tasks: Vec<_> = (1..=200usize)
        .map(|n| {
            let client = client.clone();
            tokio::spawn(async move {
                let key = vec![b'k'; n];
                let r = client.put(&key, b"v").await;
                (n, r.map(|r| r.version))
            })
        })
        .collect();
    for t in tasks {
        let (n, version) = t.await.expect("task");
        assert_eq!(version.expect("put"), n as u64, "reply of call {n}");
    }
    let (frames, calls) = (
        svc.frames.load(Ordering::SeqCst),
        svc.calls.load(Ordering::SeqCst),
    );
    assert_eq!(calls, 200);
    assert!(
        frames < calls,
        "200 concurrent puts went in {frames} frames: none were shared"
    );
}

#[tokio::test]
async fn a_redirect_inside_the_stream_is_followed() {
    let (leader, leader_svc) = start(Script::Reverse, "").await;
    let (follower, follower_svc) = start(Script::Redirect, &leader).await;
    let r = client(&[follower]).put(b"key", b"v").await.expect("put");
    assert_eq!(r.version, 3);
    assert_eq!(follower_svc.calls.load(Ordering::SeqCst), 1);
    assert_eq!(leader_svc.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_stream_broken_with_a_write_in_flight_leaves_it_indeterminate() {
    let (addr, svc) = start(Script::Break, "").await;
    let err = client(&[addr])
        .put(b"key", b"v")
        .await
        .expect_err("no reply");
    assert!(
        matches!(err, ClientError::Indeterminate { .. }),
        "a write that reached the server must not be called unsent: {err}"
    );
    assert_eq!(svc.calls.load(Ordering::SeqCst), 1, "sent exactly once");
}

#[tokio::test]
async fn a_node_that_cannot_be_reached_never_got_the_write() {
    // A port bound then released: nothing listens there.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    drop(listener);
    let c = Client::new(
        &[addr],
        ClientOptions {
            deadline: Duration::from_millis(300),
            ..Default::default()
        },
    )
    .expect("client");
    let err = c.put(b"key", b"v").await.expect_err("nothing listens");
    assert!(
        matches!(err, ClientError::Unreachable { .. }),
        "a write that never left must be reported unreachable, not indeterminate: {err}"
    );
}
