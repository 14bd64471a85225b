//! The public key-value gRPC service. Writes go through Raft on the leader (others answer
//! with a redirect); reads are linearizable (under the leader's lease or through a shared
//! read-index round, `read_index`) unless the request asks for a stale read. The same
//! calls also arrive many to a frame over the `Multiplex` stream (`kv_multiplex`).

use std::sync::Arc;

use reprise_api::model::{self, Consistency, ScanRange};
use reprise_api::pb::kv::kv_server::Kv;
use reprise_api::pb::kv::*;
use reprise_storage::command::{Operation, Outcome};
use tonic::{Request, Response, Status, Streaming};

use crate::convert;
use crate::state::{internal, NodeState, Written};

/// The `Kv` service of one node.
#[derive(Clone)]
pub struct KvService {
    pub state: Arc<NodeState>,
}

impl KvService {
    fn header(w: &Written, leader: u64) -> Option<WriteHeader> {
        Some(WriteHeader {
            index: w.log_id.index,
            hlc: w.response.hlc,
            leader_id: leader,
        })
    }

    /// Serves `read` at the requested consistency, with the header saying how it was
    /// served: linearizable reads go through `read_index` (under the leader lease, or after
    /// a read-index round).
    async fn consistent_read<T>(
        &self,
        consistency: Consistency,
        read: impl Fn() -> Result<T, Status>,
    ) -> Result<(ReadHeader, T), Status> {
        let planted = self.state.planted_bug == Some(crate::planted::PlantedBug::StaleReads);
        let linearizable = consistency == Consistency::Linearizable;
        let with_header = || {
            let applied = self.state.view.applied().map_err(internal)?;
            let header = ReadHeader {
                applied_index: applied.map(|l| l.index).unwrap_or(0),
                served_by: self.state.id,
                linearizable,
            };
            Ok((header, read()?))
        };
        if linearizable && !planted {
            self.state.reads.read(&self.state.raft, with_header).await
        } else {
            with_header()
        }
    }
}

/// Each call, as the unary RPC and a `Multiplex` call both serve it.
impl KvService {
    pub(crate) async fn serve_put(&self, req: PutRequest) -> Result<PutResponse, Status> {
        let put = model::Put::try_from(req)?;
        let w = self
            .state
            .write(Operation::Put {
                key: put.key,
                value: put.value.into(),
            })
            .await?;
        let version = match w.response.outcome {
            Outcome::Put { version } => version,
            other => return Err(internal(format!("put produced {other:?}"))),
        };
        Ok(PutResponse {
            header: Self::header(&w, self.state.id),
            version,
        })
    }

    pub(crate) async fn serve_get(&self, req: GetRequest) -> Result<GetResponse, Status> {
        let get = model::Get::try_from(req)?;
        let (header, value) = self
            .consistent_read(get.consistency, || {
                self.state.view.get(&get.key).map_err(internal)
            })
            .await?;
        let kv = value.map(|value| {
            convert::key_value(reprise_storage::KeyValue {
                key: get.key,
                value,
            })
        });
        Ok(GetResponse {
            header: Some(header),
            kv,
        })
    }

    pub(crate) async fn serve_delete(&self, req: DeleteRequest) -> Result<DeleteResponse, Status> {
        let del = model::Delete::try_from(req)?;
        let w = self.state.write(Operation::Delete { key: del.key }).await?;
        let existed = match w.response.outcome {
            Outcome::Delete { existed } => existed,
            other => return Err(internal(format!("delete produced {other:?}"))),
        };
        Ok(DeleteResponse {
            header: Self::header(&w, self.state.id),
            existed,
        })
    }

    pub(crate) async fn serve_txn(&self, req: TxnRequest) -> Result<TxnResponse, Status> {
        let txn = model::Txn::try_from(req)?;
        let w = self.state.write(convert::txn(txn)).await?;
        let succeeded = match w.response.outcome {
            Outcome::Txn { succeeded } => succeeded,
            other => return Err(internal(format!("txn produced {other:?}"))),
        };
        Ok(TxnResponse {
            header: Self::header(&w, self.state.id),
            succeeded,
        })
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    type MultiplexStream = crate::kv_multiplex::ReplyFrames;

    async fn put(&self, req: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        self.serve_put(req.into_inner()).await.map(Response::new)
    }

    async fn get(&self, req: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        self.serve_get(req.into_inner()).await.map(Response::new)
    }

    async fn delete(
        &self,
        req: Request<DeleteRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        self.serve_delete(req.into_inner()).await.map(Response::new)
    }

    async fn txn(&self, req: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        self.serve_txn(req.into_inner()).await.map(Response::new)
    }

    async fn multiplex(
        &self,
        req: Request<Streaming<CallFrame>>,
    ) -> Result<Response<Self::MultiplexStream>, Status> {
        Ok(Response::new(crate::kv_multiplex::serve(
            self.clone(),
            req.into_inner(),
        )))
    }

    async fn scan(&self, req: Request<ScanRequest>) -> Result<Response<ScanResponse>, Status> {
        let scan = model::Scan::try_from(req.into_inner())?;
        let want = scan.limit as usize;
        let view = &self.state.view;
        let (header, mut found) = self
            .consistent_read(scan.consistency, || {
                match &scan.range {
                    ScanRange::Prefix { prefix, from } => view.prefix(prefix, from, want + 1),
                    ScanRange::Range { from, end } => view.range(from, end.as_deref(), want + 1),
                }
                .map_err(internal)
            })
            .await?;
        let next_page_token = if found.len() > want {
            found.truncate(want);
            let mut token = found.last().map(|kv| kv.key.clone()).unwrap_or_default();
            token.push(0);
            token
        } else {
            Vec::new()
        };
        let kvs = found.into_iter().map(convert::key_value).collect();
        Ok(Response::new(ScanResponse {
            header: Some(header),
            kvs,
            next_page_token,
        }))
    }
}
