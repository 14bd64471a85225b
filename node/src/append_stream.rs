//! The sending end of AppendEntries over one long-lived stream to a peer (the
//! `AppendStream` RPC) instead of a unary RPC each: no HTTP/2 stream to set up, no headers
//! and trailers per request, and the receiver serves a request as soon as its frame
//! arrives. openraft 0.9 has one AppendEntries out per peer link at a time, so requests
//! and replies pair up in order; every reply echoes its request's `seq`. The caller owns
//! the stream while a call is out and drops it on any error or mismatch, and a call
//! abandoned while its reply is due drops it with the future (the next call opens a new
//! one), so a reply is never taken for another request's.

use std::time::Duration;

use openraft::raft::AppendEntriesRequest;
use reprise_api::limits::GRPC_MESSAGE_BYTES_MAX;
use reprise_api::pb::raft::AppendReply;
use reprise_storage::TypeConfig;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::Channel;
use tonic::{Status, Streaming};

use crate::append_frame::OutgoingAppend;

/// The `AppendStream` method of `raft.proto`'s `Raft` service.
const APPEND_STREAM_PATH: &str = "/reprise.raft.v1.Raft/AppendStream";

/// One open stream to a peer.
pub struct AppendStream {
    requests: mpsc::UnboundedSender<OutgoingAppend>,
    replies: Streaming<AppendReply>,
    next_seq: u64,
}

impl AppendStream {
    /// Opens a stream on `channel`, waiting at most `timeout` for the peer to accept it.
    pub async fn open(channel: Channel, timeout: Duration) -> Result<AppendStream, Status> {
        let (requests, outgoing) = mpsc::unbounded_channel();
        // The generated client would take `AppendFrame`s, each request already serialized
        // into a vector of its own; this one sends `OutgoingAppend`s, serialized straight
        // into the send buffer (`append_frame`). The bytes on the wire are the same.
        let mut grpc = tonic::client::Grpc::new(channel)
            .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX);
        let opened = tokio::time::timeout(timeout, async {
            grpc.ready()
                .await
                .map_err(|e| Status::unavailable(format!("append stream: {e}")))?;
            grpc.streaming(
                tonic::Request::new(UnboundedReceiverStream::new(outgoing)),
                tonic::codegen::http::uri::PathAndQuery::from_static(APPEND_STREAM_PATH),
                tonic_prost::ProstCodec::<OutgoingAppend, AppendReply>::default(),
            )
            .await
        })
        .await
        .map_err(|_| {
            Status::deadline_exceeded(format!(
                "append stream not accepted within {} ms",
                timeout.as_millis()
            ))
        })??;
        Ok(AppendStream {
            requests,
            replies: opened.into_inner(),
            next_seq: 0,
        })
    }

    /// Whether the stream can still carry a request.
    pub fn usable(&self) -> bool {
        !self.requests.is_closed()
    }

    /// Sends one AppendEntries request and waits up to `timeout` for its reply.
    /// After an error the stream must be dropped.
    pub async fn call(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        timeout: Duration,
    ) -> Result<AppendReply, Status> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let frame = OutgoingAppend::new(seq, rpc)
            .map_err(|e| Status::internal(format!("encode append request: {e}")))?;
        self.requests
            .send(frame)
            .map_err(|_| Status::unavailable("the append stream is closed"))?;
        let reply = tokio::time::timeout(timeout, self.replies.message())
            .await
            .map_err(|_| {
                Status::deadline_exceeded(format!(
                    "no append reply within {} ms",
                    timeout.as_millis()
                ))
            })??
            .ok_or_else(|| Status::unavailable("the peer ended the append stream"))?;
        if reply.seq != seq {
            return Err(Status::internal(format!(
                "append stream out of step: reply {} to request {seq}",
                reply.seq
            )));
        }
        Ok(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reprise_api::pb::raft::raft_server::{Raft, RaftServer};
    use reprise_api::pb::raft::{AppendFrame, RaftPayload};
    use tokio_stream::wrappers::ReceiverStream;
    use tonic::{Request, Response};

    /// Echoes each request's data; from request `skew_from` on, replies with a wrong seq.
    struct Scripted {
        skew_from: u64,
    }

    #[tonic::async_trait]
    impl Raft for Scripted {
        type AppendStreamStream = ReceiverStream<Result<AppendReply, Status>>;

        async fn append_entries(
            &self,
            _: Request<RaftPayload>,
        ) -> Result<Response<RaftPayload>, Status> {
            Err(Status::unimplemented("scripted"))
        }
        async fn vote(&self, _: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
            Err(Status::unimplemented("scripted"))
        }
        async fn install_snapshot(
            &self,
            _: Request<RaftPayload>,
        ) -> Result<Response<RaftPayload>, Status> {
            Err(Status::unimplemented("scripted"))
        }
        async fn append_stream(
            &self,
            req: Request<Streaming<AppendFrame>>,
        ) -> Result<Response<Self::AppendStreamStream>, Status> {
            let mut frames = req.into_inner();
            let skew_from = self.skew_from;
            let (tx, rx) = mpsc::channel(1);
            tokio::spawn(async move {
                while let Ok(Some(f)) = frames.message().await {
                    let seq = if f.seq >= skew_from { f.seq + 1 } else { f.seq };
                    let reply = AppendReply {
                        seq,
                        data: f.data.to_vec(),
                        refused: String::new(),
                    };
                    if tx.send(Ok(reply)).await.is_err() {
                        return;
                    }
                }
            });
            Ok(Response::new(ReceiverStream::new(rx)))
        }
    }

    async fn serve(skew_from: u64) -> Channel {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(RaftServer::new(Scripted { skew_from }))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .expect("endpoint")
            .connect_lazy()
    }

    const WAIT: Duration = Duration::from_secs(5);

    /// A small request told apart by its term.
    fn rpc(term: u64) -> AppendEntriesRequest<TypeConfig> {
        AppendEntriesRequest {
            vote: openraft::Vote::new_committed(term, 1),
            prev_log_id: None,
            leader_commit: None,
            entries: Vec::new(),
        }
    }

    #[tokio::test]
    async fn replies_pair_with_their_requests_in_order() {
        let mut stream = AppendStream::open(serve(u64::MAX).await, WAIT)
            .await
            .expect("open");
        for term in 1..6 {
            let reply = stream.call(rpc(term), WAIT).await.expect("reply");
            // The scripted peer echoes what arrived: the request's postcard encoding.
            assert_eq!(reply.data, postcard::to_allocvec(&rpc(term)).unwrap());
        }
    }

    #[tokio::test]
    async fn a_reply_out_of_step_is_an_error_not_an_answer() {
        let mut stream = AppendStream::open(serve(1).await, WAIT)
            .await
            .expect("open");
        stream.call(rpc(1), WAIT).await.expect("in step");
        let err = stream
            .call(rpc(2), WAIT)
            .await
            .expect_err("the reply names another request");
        assert_eq!(err.code(), tonic::Code::Internal, "{err}");
        assert!(err.message().contains("out of step"), "{err}");
    }
}
