//! The `Multiplex` stream against a real 3-node cluster, spoken directly (not through
//! `Client`): a frame's calls are served as their unary RPCs would be, each answered once
//! by id; a follower answers every call with the leader's address; a frame larger than
//! the protocol allows ends the stream with an error and none of its calls is served.

mod common;

use std::time::Duration;

use common::TestCluster;
use reprise_api::limits::MULTIPLEX_FRAME_CALLS_MAX;
use reprise_api::pb::kv::kv_client::KvClient;
use reprise_api::pb::kv::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::Code;

fn put(id: u64, key: &str) -> Call {
    Call {
        id,
        op: Some(call::Op::Put(PutRequest {
            key: key.as_bytes().to_vec(),
            value: b"v".to_vec(),
        })),
    }
}

async fn kv(addr: &str) -> KvClient<Channel> {
    KvClient::connect(format!("http://{addr}"))
        .await
        .expect("connect")
}

/// Sends `calls` as one frame; returns every reply by id, or the stream's error.
async fn one_frame(
    addr: &str,
    calls: Vec<Call>,
) -> Result<std::collections::BTreeMap<u64, reply::Result>, tonic::Status> {
    let expected = calls.len();
    let (tx, rx) = mpsc::channel(1);
    tx.send(CallFrame { calls }).await.expect("queue frame");
    let mut replies = kv(addr)
        .await
        .multiplex(ReceiverStream::new(rx))
        .await?
        .into_inner();
    let mut got = std::collections::BTreeMap::new();
    while got.len() < expected {
        let frame = tokio::time::timeout(Duration::from_secs(10), replies.message())
            .await
            .expect("replies within 10 s")?
            .expect("the stream ended before every call was answered");
        for r in frame.replies {
            let result = r.result.expect("a reply carries a result");
            assert!(
                got.insert(r.id, result).is_none(),
                "call {} answered twice",
                r.id
            );
        }
    }
    drop(tx);
    Ok(got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_is_served_call_by_call_redirected_by_followers_and_bounded() {
    let tc = TestCluster::start(3, 1).await;
    let leader = tc.leader().await;
    let follower = tc.follower_of(leader);
    let addr = |id: u64| tc.addr_of(id);

    // On the leader: two puts and a call naming no operation.
    let got = one_frame(
        &addr(leader),
        vec![put(7, "mux-a"), put(9, "mux-b"), Call { id: 11, op: None }],
    )
    .await
    .expect("stream");
    let index = |id: u64| match &got[&id] {
        reply::Result::Put(p) => p.header.as_ref().expect("write header").index,
        other => panic!("call {id}: {other:?}"),
    };
    assert!(index(7) > 0 && index(9) > 0);
    match &got[&11] {
        reply::Result::Error(e) => assert_eq!(e.code, Code::InvalidArgument as i32, "{e:?}"),
        other => panic!("a call without an operation was answered {other:?}"),
    }
    let client = tc.client();
    for key in ["mux-a", "mux-b"] {
        let r = client.get(key.as_bytes(), false).await.expect("get");
        assert_eq!(r.kv.expect("written").value, b"v");
    }

    // On a follower: every call is a redirect naming the leader, and nothing is applied.
    let got = one_frame(&addr(follower), vec![put(1, "mux-c"), put(2, "mux-d")])
        .await
        .expect("stream");
    for id in [1, 2] {
        match &got[&id] {
            reply::Result::Error(e) => {
                assert!(e.not_leader, "{e:?}");
                assert_eq!(e.leader_addr, addr(leader));
            }
            other => panic!("a follower answered {other:?}"),
        }
    }

    // Too many calls in one frame: the stream fails and none of them is served.
    let calls = (0..=MULTIPLEX_FRAME_CALLS_MAX as u64)
        .map(|i| put(i, &format!("mux-big-{i}")))
        .collect();
    let status = one_frame(&addr(leader), calls)
        .await
        .expect_err("an oversized frame must fail the stream");
    assert_eq!(status.code(), Code::InvalidArgument, "{status}");
    for key in ["mux-c", "mux-big-0", "mux-big-1024"] {
        let r = client.get(key.as_bytes(), false).await.expect("get");
        assert!(r.kv.is_none(), "{key} must not have been written");
    }
}
