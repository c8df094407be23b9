//! The KV service: range, put, delete, transactions and compaction.

use super::proto::etcdserverpb as pb;
use std::pin::Pin;

use futures::Stream;
use tonic::{Request, Response, Status};

use super::convert::{
    delete_request_from_pb, delete_response_to_pb, put_request_from_pb, put_response_to_pb, status_from_error,
    RangeQuery, TxnQuery,
};
use super::ServerIdentity;
use crate::Store;

/// Keys per message of a streamed range, so one message stays well below gRPC's usual 4 MiB client limit for
/// typical Kubernetes objects.
const RANGE_STREAM_CHUNK: usize = 500;

pub(crate) struct KvService {
    store: Store,
    identity: ServerIdentity,
}

impl KvService {
    pub fn new(store: Store, identity: ServerIdentity) -> Self {
        Self { store, identity }
    }

    async fn run_range(&self, request: pb::RangeRequest) -> Result<pb::RangeResponse, Status> {
        let query = RangeQuery::from_pb(request)?;
        let response = self.store.range(query.store_request.clone()).await.map_err(status_from_error)?;
        Ok(query.finish(response, &self.identity))
    }
}

type RangeStream = Pin<Box<dyn Stream<Item = Result<pb::RangeStreamResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::kv_server::Kv for KvService {
    async fn range(&self, request: Request<pb::RangeRequest>) -> Result<Response<pb::RangeResponse>, Status> {
        self.run_range(request.into_inner()).await.map(Response::new)
    }

    type RangeStreamStream = RangeStream;

    /// The whole range is read at one revision, then sent in chunks; as etcd does, only the last chunk carries
    /// the header, `more` and `count`.
    async fn range_stream(&self, request: Request<pb::RangeRequest>) -> Result<Response<RangeStream>, Status> {
        let mut response = self.run_range(request.into_inner()).await?;
        let mut kvs = std::mem::take(&mut response.kvs);
        let mut chunks = Vec::new();
        while kvs.len() > RANGE_STREAM_CHUNK {
            let rest = kvs.split_off(RANGE_STREAM_CHUNK);
            chunks.push(pb::RangeResponse { kvs, ..Default::default() });
            kvs = rest;
        }
        response.kvs = kvs;
        chunks.push(response);
        let messages = chunks.into_iter().map(|chunk| Ok(pb::RangeStreamResponse { range_response: Some(chunk) }));
        Ok(Response::new(Box::pin(futures::stream::iter(messages))))
    }

    async fn put(&self, request: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        let request = put_request_from_pb(request.into_inner())?;
        let response = self.store.put(request).await.map_err(status_from_error)?;
        Ok(Response::new(put_response_to_pb(&response, &self.identity)))
    }

    async fn delete_range(
        &self,
        request: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        let request = delete_request_from_pb(request.into_inner())?;
        let response = self.store.delete_range(request).await.map_err(status_from_error)?;
        Ok(Response::new(delete_response_to_pb(&response, &self.identity)))
    }

    async fn txn(&self, request: Request<pb::TxnRequest>) -> Result<Response<pb::TxnResponse>, Status> {
        let query = TxnQuery::from_pb(request.into_inner())?;
        let response = self.store.txn(query.store_request.clone()).await.map_err(status_from_error)?;
        Ok(Response::new(query.finish(response, &self.identity)))
    }

    /// `physical` needs no waiting here: once the store answers, reads and watches below the revision fail.
    async fn compact(
        &self,
        request: Request<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        self.store.compact(request.into_inner().revision).await.map_err(status_from_error)?;
        Ok(Response::new(pb::CompactionResponse { header: self.identity.header(self.store.revision()) }))
    }
}
