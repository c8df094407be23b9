//! The Lease service: grant, revoke, keep-alive streams, time-to-live and listing.

use super::proto::etcdserverpb as pb;
use std::pin::Pin;

use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use super::convert::status_from_error;
use super::ServerIdentity;
use crate::{Error, Store};

/// etcd's longest lease: `MaxLeaseTTL`.
const MAX_LEASE_TTL: i64 = 9_000_000_000;
/// Keep-alive answers buffered per stream before the stream stops reading requests.
const KEEP_ALIVE_BUFFER: usize = 16;

pub(crate) struct LeaseService {
    store: Store,
    identity: ServerIdentity,
    stop_streams: CancellationToken,
}

impl LeaseService {
    pub fn new(store: Store, identity: ServerIdentity, stop_streams: CancellationToken) -> Self {
        Self { store, identity, stop_streams }
    }
}

type KeepAliveStream = Pin<Box<dyn Stream<Item = Result<pb::LeaseKeepAliveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::lease_server::Lease for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<pb::LeaseGrantRequest>,
    ) -> Result<Response<pb::LeaseGrantResponse>, Status> {
        let request = request.into_inner();
        if request.ttl > MAX_LEASE_TTL {
            return Err(Status::out_of_range("etcdserver: too large lease TTL"));
        }
        let grant = self.store.lease_grant(request.id, request.ttl).await.map_err(status_from_error)?;
        Ok(Response::new(pb::LeaseGrantResponse {
            header: self.identity.header(self.store.revision()),
            id: grant.id,
            ttl: grant.ttl,
            error: String::new(),
        }))
    }

    async fn lease_revoke(
        &self,
        request: Request<pb::LeaseRevokeRequest>,
    ) -> Result<Response<pb::LeaseRevokeResponse>, Status> {
        let revision = self.store.lease_revoke(request.into_inner().id).await.map_err(status_from_error)?;
        Ok(Response::new(pb::LeaseRevokeResponse { header: self.identity.header(revision) }))
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<Response<KeepAliveStream>, Status> {
        let mut requests = request.into_inner();
        let (responses, receiver) = mpsc::channel(KEEP_ALIVE_BUFFER);
        let store = self.store.clone();
        let identity = self.identity.clone();
        let stop = self.stop_streams.clone();
        tokio::spawn(async move {
            loop {
                let request = tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = responses.closed() => return,
                    request = requests.message() => request,
                };
                let id = match request {
                    Ok(Some(request)) => request.id,
                    // The client closed its side or the connection broke: nothing left to answer.
                    Ok(None) | Err(_) => return,
                };
                let answer = match store.lease_keep_alive(id).await {
                    Ok(ttl) => Ok(keep_alive_response(&identity, store.revision(), id, ttl)),
                    // As etcd: renewing an unknown lease answers TTL 0 instead of failing the stream.
                    Err(Error::LeaseNotFound(_)) => Ok(keep_alive_response(&identity, store.revision(), id, 0)),
                    Err(error) => Err(status_from_error(error)),
                };
                let failed = answer.is_err();
                if responses.send(answer).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<pb::LeaseTimeToLiveRequest>,
    ) -> Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
        let request = request.into_inner();
        let header = self.identity.header(self.store.revision());
        let response = match self.store.lease_time_to_live(request.id, request.keys).await {
            Ok(lease) => pb::LeaseTimeToLiveResponse {
                header,
                id: lease.id,
                ttl: lease.ttl,
                granted_ttl: lease.granted_ttl,
                keys: lease.keys.iter().map(|key| key.to_vec()).collect(),
            },
            // As etcd: an unknown lease is reported with TTL -1, which etcdctl prints as "already expired".
            Err(Error::LeaseNotFound(id)) => {
                pb::LeaseTimeToLiveResponse { header, id, ttl: -1, granted_ttl: 0, keys: Vec::new() }
            }
            Err(error) => return Err(status_from_error(error)),
        };
        Ok(Response::new(response))
    }

    async fn lease_leases(
        &self,
        _request: Request<pb::LeaseLeasesRequest>,
    ) -> Result<Response<pb::LeaseLeasesResponse>, Status> {
        let leases = self.store.leases().await.map_err(status_from_error)?;
        Ok(Response::new(pb::LeaseLeasesResponse {
            header: self.identity.header(self.store.revision()),
            leases: leases.into_iter().map(|id| pb::LeaseStatus { id }).collect(),
        }))
    }
}

fn keep_alive_response(identity: &ServerIdentity, revision: i64, id: i64, ttl: i64) -> pb::LeaseKeepAliveResponse {
    pb::LeaseKeepAliveResponse { header: identity.header(revision), id, ttl }
}
