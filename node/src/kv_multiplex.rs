//! The node's end of the `Multiplex` stream: every call in a frame is served as its unary
//! RPC would be (`KvService::serve_*`), all of them concurrently, and the answers that
//! are ready together go back in one frame. A failed call carries the status the unary
//! RPC would have returned (`reprise_api::call_error`), redirects included.
//!
//! Backpressure: a stream has at most `MULTIPLEX_CALLS_IN_FLIGHT_MAX` calls being served;
//! beyond that, the node stops reading its frames. A frame of more than
//! `MULTIPLEX_FRAME_CALLS_MAX` calls breaks the protocol: the stream ends with an error,
//! its calls unserved. Replies wait in a short queue; when the client
//! does not read them, the node stops taking its calls.

use std::future::Future;

use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use prost::Message;
use reprise_api::call_error;
use reprise_api::limits::{
    MULTIPLEX_CALLS_IN_FLIGHT_MAX, MULTIPLEX_FRAME_BYTES_MAX, MULTIPLEX_FRAME_CALLS_MAX,
};
use reprise_api::pb::kv::{call, reply, Call, CallFrame, Reply, ReplyFrame};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use crate::kv_service::KvService;

/// Reply frames waiting for the client to read them.
const FRAMES_QUEUED: usize = 4;

/// The reply side of one `Multiplex` stream.
pub type ReplyFrames = ReceiverStream<Result<ReplyFrame, Status>>;

/// Serves the calls arriving on `calls` on a task of its own; replies come out of the
/// returned stream.
pub fn serve(svc: KvService, calls: Streaming<CallFrame>) -> ReplyFrames {
    let (replies, out) = mpsc::channel(FRAMES_QUEUED);
    tokio::spawn(run(svc, calls, replies));
    ReceiverStream::new(out)
}

async fn run(
    svc: KvService,
    mut calls: Streaming<CallFrame>,
    replies: mpsc::Sender<Result<ReplyFrame, Status>>,
) {
    let mut running = FuturesUnordered::new();
    let mut reading = true;
    loop {
        tokio::select! {
            frame = calls.message(), if reading && running.len() < MULTIPLEX_CALLS_IN_FLIGHT_MAX => {
                match frame {
                    Ok(Some(frame)) if frame.calls.len() > MULTIPLEX_FRAME_CALLS_MAX => {
                        let _ = replies
                            .send(Err(Status::invalid_argument(format!(
                                "a frame of {} calls; at most {MULTIPLEX_FRAME_CALLS_MAX} per frame",
                                frame.calls.len()
                            ))))
                            .await;
                        return;
                    }
                    Ok(Some(frame)) => running.extend(frame.calls.into_iter().map(|c| answer(&svc, c))),
                    // The client has sent its last call; answer those still running.
                    Ok(None) => reading = false,
                    Err(status) => {
                        tracing::debug!(%status, "multiplex stream: reading calls failed");
                        reading = false;
                    }
                }
            }
            Some(first) = running.next() => {
                if replies.send(Ok(ready_frame(first, &mut running))).await.is_err() {
                    // The client is gone; nobody is left to tell.
                    return;
                }
            }
            else => return,
        }
    }
}

/// `first` and every other reply already finished, as one frame.
fn ready_frame<F>(first: Reply, running: &mut FuturesUnordered<F>) -> ReplyFrame
where
    F: Future<Output = Reply>,
{
    let mut bytes = first.encoded_len();
    let mut replies = vec![first];
    while replies.len() < MULTIPLEX_FRAME_CALLS_MAX && bytes < MULTIPLEX_FRAME_BYTES_MAX {
        match running.next().now_or_never() {
            Some(Some(r)) => {
                bytes += r.encoded_len();
                replies.push(r);
            }
            _ => break,
        }
    }
    ReplyFrame { replies }
}

/// Serves one call as its unary RPC would.
async fn answer(svc: &KvService, c: Call) -> Reply {
    let result = match c.op {
        Some(call::Op::Put(r)) => svc.serve_put(r).await.map(reply::Result::Put),
        Some(call::Op::Get(r)) => svc.serve_get(r).await.map(reply::Result::Get),
        Some(call::Op::Delete(r)) => svc.serve_delete(r).await.map(reply::Result::Delete),
        Some(call::Op::Txn(r)) => svc.serve_txn(r).await.map(reply::Result::Txn),
        None => Err(Status::invalid_argument(format!(
            "call {} names no operation",
            c.id
        ))),
    };
    Reply {
        id: c.id,
        result: Some(result.unwrap_or_else(|s| reply::Result::Error(call_error::from_status(&s)))),
    }
}
