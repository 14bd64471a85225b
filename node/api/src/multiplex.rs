//! The client's end of the `Multiplex` stream to one node. Calls made concurrently by the
//! tasks sharing a `Client` wait in one queue; whatever is waiting when the task gets to
//! it goes out as one frame (at most `MULTIPLEX_FRAME_CALLS_MAX` calls, about
//! `MULTIPLEX_FRAME_BYTES_MAX` bytes), and replies come back several per frame, routed to their callers by id. Per
//! request this spares both ends an HTTP/2 stream: its set-up, headers and trailers,
//! which were half of a leader's CPU under 64 concurrent writers.
//!
//! What a caller learns when the stream fails decides whether it may retry: a call still
//! in the queue was never sent (`Failure::NotSent`); a call framed and handed to the
//! transport may have been applied, and gets the stream's status, which the client treats
//! as it treats a unary RPC's.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tonic::transport::Channel;
use tonic::Status;

use crate::limits::{MULTIPLEX_FRAME_BYTES_MAX, MULTIPLEX_FRAME_CALLS_MAX};
use crate::pb::kv::kv_client::KvClient;
use crate::pb::kv::{call, reply, Call, CallFrame, ReplyFrame};

/// Why a multiplexed call has no answer.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The call never left this process: the stream was gone before it was framed.
    NotSent,
    /// The call was sent, or may have been; the status says what became of it.
    Status(Status),
}

struct Waiting {
    op: call::Op,
    reply: oneshot::Sender<Result<reply::Result, Status>>,
}

/// A handle on one node's stream; clones share it. The stream is opened by the first
/// call and closed when the last handle is dropped and every call sent is answered.
#[derive(Clone)]
pub(crate) struct Multiplexer {
    queue: mpsc::UnboundedSender<Waiting>,
}

impl Multiplexer {
    /// Starts the stream's task; it connects when the first call arrives.
    pub(crate) fn start(kv: KvClient<Channel>) -> Multiplexer {
        let (queue, waiting) = mpsc::unbounded_channel();
        tokio::spawn(run(kv, waiting));
        Multiplexer { queue }
    }

    /// Whether the stream has ended (a new one must be started for further calls).
    pub(crate) fn is_closed(&self) -> bool {
        self.queue.is_closed()
    }

    /// Sends `op` and waits up to `timeout` for its reply.
    pub(crate) async fn call(
        &self,
        op: call::Op,
        timeout: Duration,
    ) -> Result<reply::Result, Failure> {
        let (reply, answer) = oneshot::channel();
        if self.queue.send(Waiting { op, reply }).is_err() {
            return Err(Failure::NotSent);
        }
        match tokio::time::timeout(timeout, answer).await {
            Err(_) => Err(Failure::Status(Status::deadline_exceeded(format!(
                "no reply within {} ms",
                timeout.as_millis()
            )))),
            // Dropped unanswered: only a call that was never framed is (see `InFlight`).
            Ok(Err(_)) => Err(Failure::NotSent),
            Ok(Ok(result)) => result.map_err(Failure::Status),
        }
    }
}

/// The calls sent and not yet answered, by id. Dropping it answers every one with an
/// error, so a framed call is never mistaken for one that was not sent.
#[derive(Default)]
struct InFlight {
    next_id: u64,
    calls: HashMap<u64, oneshot::Sender<Result<reply::Result, Status>>>,
}

impl InFlight {
    /// A frame of `first` and whatever else is already waiting in `queue`. Calls whose
    /// caller has given up are left out.
    fn frame(&mut self, first: Waiting, queue: &mut mpsc::UnboundedReceiver<Waiting>) -> CallFrame {
        let mut calls = Vec::new();
        let mut bytes = 0;
        let mut next = Some(first);
        while let Some(w) = next.take() {
            if !w.reply.is_closed() {
                let id = self.next_id;
                self.next_id += 1;
                bytes += w.op.encoded_len();
                calls.push(Call { id, op: Some(w.op) });
                self.calls.insert(id, w.reply);
            }
            if calls.len() < MULTIPLEX_FRAME_CALLS_MAX && bytes < MULTIPLEX_FRAME_BYTES_MAX {
                next = queue.try_recv().ok();
            }
        }
        CallFrame { calls }
    }

    fn answer(&mut self, frame: ReplyFrame) {
        for r in frame.replies {
            let Some(caller) = self.calls.remove(&r.id) else {
                tracing::warn!(id = r.id, "reply to a call not in flight on this stream");
                continue;
            };
            let result = match r.result {
                Some(reply::Result::Error(e)) => Err(crate::call_error::to_status(e)),
                Some(result) => Ok(result),
                None => Err(Status::internal(format!(
                    "reply {} carries no result",
                    r.id
                ))),
            };
            // The caller may have timed out; nothing to tell it then.
            let _ = caller.send(result);
        }
    }

    fn fail_all(&mut self, status: &Status) {
        for (_, caller) in self.calls.drain() {
            let _ = caller.send(Err(status.clone()));
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.fail_all(&Status::unavailable(
            "the multiplex stream stopped with the call in flight",
        ));
    }
}

/// The stream's task: frames waiting calls, routes replies, and fails every call in
/// flight with the stream's status when it breaks.
async fn run(mut kv: KvClient<Channel>, mut queue: mpsc::UnboundedReceiver<Waiting>) {
    let Some(first) = queue.recv().await else {
        return;
    };
    let mut in_flight = InFlight::default();
    // Unbounded: what it holds is bounded by the callers waiting, and a send that never
    // blocks keeps this task reading replies, which the node may be waiting to send.
    let (frames, outgoing) = mpsc::unbounded_channel();
    let _ = frames.send(in_flight.frame(first, &mut queue));
    let mut replies = match kv
        .multiplex(tokio_stream::wrappers::UnboundedReceiverStream::new(
            outgoing,
        ))
        .await
    {
        Ok(response) => response.into_inner(),
        Err(status) => {
            in_flight.fail_all(&status);
            return;
        }
    };
    let mut frames = Some(frames);
    loop {
        tokio::select! {
            waiting = queue.recv(), if frames.is_some() => match (waiting, &frames) {
                (Some(w), Some(tx)) => {
                    let frame = in_flight.frame(w, &mut queue);
                    if tx.send(frame).is_err() {
                        in_flight.fail_all(&Status::unavailable("the multiplex stream's request side closed"));
                        return;
                    }
                }
                // Every handle is gone: end the request side, wait for the last replies.
                _ => frames = None,
            },
            reply = replies.message() => match reply {
                Ok(Some(frame)) => in_flight.answer(frame),
                Ok(None) => {
                    in_flight.fail_all(&Status::unavailable("the node ended the multiplex stream"));
                    return;
                }
                Err(status) => {
                    in_flight.fail_all(&broken(&status));
                    return;
                }
            },
        }
        if frames.is_none() && in_flight.calls.is_empty() {
            return;
        }
    }
}

/// The status of a call in flight when the stream broke with `status`: whatever the
/// transport or the node said, the call may have been applied, so the code is one the
/// client never takes for "not sent" (nor for a refusal).
fn broken(status: &Status) -> Status {
    Status::unknown(format!(
        "the multiplex stream broke with the call in flight ({:?}: {})",
        status.code(),
        status.message()
    ))
}
