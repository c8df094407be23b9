//! The Maintenance and Cluster services: status, alarms and the member list of a one-member "cluster". The
//! maintenance calls that only make sense for etcd's own storage or raft answer Unimplemented.

use super::proto::etcdserverpb as pb;
use std::pin::Pin;

use futures::Stream;
use tonic::{Request, Response, Status};

use super::convert::status_from_error;
use super::{ServerIdentity, ETCD_VERSION};
use crate::Store;

/// etcd's `AlarmRequest_GET`; the other actions (activate, deactivate) are refused.
const ALARM_ACTION_GET: i32 = 0;
/// The storage version etcd 3.5 reports.
const STORAGE_VERSION: &str = "3.5.0";

pub(crate) struct MaintenanceService {
    store: Store,
    identity: ServerIdentity,
}

impl MaintenanceService {
    pub fn new(store: Store, identity: ServerIdentity) -> Self {
        Self { store, identity }
    }
}

fn unsupported(what: &str, why: &str) -> Status {
    Status::unimplemented(format!("kaasd does not support {what}: {why}"))
}

const SQL_STORAGE: &str = "the data lives in SQL; use the database's own tools";
const NO_RAFT: &str = "kaasd has no raft cluster; every kaasd process sharing a database serves it";

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<pb::SnapshotResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::maintenance_server::Maintenance for MaintenanceService {
    /// There are no alarms (etcd raises them for a full disk or corruption): listing answers an empty list,
    /// which `etcdctl endpoint health` requires.
    async fn alarm(&self, request: Request<pb::AlarmRequest>) -> Result<Response<pb::AlarmResponse>, Status> {
        if request.into_inner().action != ALARM_ACTION_GET {
            return Err(unsupported("raising or clearing alarms", "kaasd raises none"));
        }
        Ok(Response::new(pb::AlarmResponse { header: self.identity.header(self.store.revision()), alarms: Vec::new() }))
    }

    async fn status(&self, _request: Request<pb::StatusRequest>) -> Result<Response<pb::StatusResponse>, Status> {
        let status = self.store.status().await.map_err(status_from_error)?;
        let revision = u64::try_from(status.revision).unwrap_or_default();
        Ok(Response::new(pb::StatusResponse {
            header: self.identity.header(status.revision),
            version: ETCD_VERSION.into(),
            db_size: status.db_size,
            // Every process accepts writes, so to a client each one is the leader it talks to.
            leader: self.identity.member_id,
            raft_index: revision,
            raft_term: 1,
            raft_applied_index: revision,
            errors: Vec::new(),
            db_size_in_use: status.db_size,
            is_learner: false,
            storage_version: STORAGE_VERSION.into(),
            db_size_quota: 0,
            downgrade_info: None,
        }))
    }

    async fn defragment(
        &self,
        _request: Request<pb::DefragmentRequest>,
    ) -> Result<Response<pb::DefragmentResponse>, Status> {
        Err(unsupported("defragment", SQL_STORAGE))
    }

    async fn hash(&self, _request: Request<pb::HashRequest>) -> Result<Response<pb::HashResponse>, Status> {
        Err(unsupported("hash", SQL_STORAGE))
    }

    async fn hash_kv(&self, _request: Request<pb::HashKvRequest>) -> Result<Response<pb::HashKvResponse>, Status> {
        Err(unsupported("hashkv", SQL_STORAGE))
    }

    type SnapshotStream = SnapshotStream;

    async fn snapshot(&self, _request: Request<pb::SnapshotRequest>) -> Result<Response<SnapshotStream>, Status> {
        Err(unsupported("snapshot", SQL_STORAGE))
    }

    async fn move_leader(
        &self,
        _request: Request<pb::MoveLeaderRequest>,
    ) -> Result<Response<pb::MoveLeaderResponse>, Status> {
        Err(unsupported("move-leader", NO_RAFT))
    }

    async fn downgrade(
        &self,
        _request: Request<pb::DowngradeRequest>,
    ) -> Result<Response<pb::DowngradeResponse>, Status> {
        Err(unsupported("downgrade", "there is no etcd cluster version to downgrade"))
    }
}

pub(crate) struct ClusterService {
    store: Store,
    identity: ServerIdentity,
}

impl ClusterService {
    pub fn new(store: Store, identity: ServerIdentity) -> Self {
        Self { store, identity }
    }

    fn this_member(&self) -> pb::Member {
        pb::Member {
            id: self.identity.member_id,
            name: self.identity.member_name.clone(),
            peer_ur_ls: Vec::new(),
            client_ur_ls: vec![self.identity.client_url.clone()],
            is_learner: false,
        }
    }
}

#[tonic::async_trait]
impl pb::cluster_server::Cluster for ClusterService {
    async fn member_add(
        &self,
        _request: Request<pb::MemberAddRequest>,
    ) -> Result<Response<pb::MemberAddResponse>, Status> {
        Err(unsupported("member add", NO_RAFT))
    }

    async fn member_remove(
        &self,
        _request: Request<pb::MemberRemoveRequest>,
    ) -> Result<Response<pb::MemberRemoveResponse>, Status> {
        Err(unsupported("member remove", NO_RAFT))
    }

    async fn member_update(
        &self,
        _request: Request<pb::MemberUpdateRequest>,
    ) -> Result<Response<pb::MemberUpdateResponse>, Status> {
        Err(unsupported("member update", NO_RAFT))
    }

    async fn member_list(
        &self,
        _request: Request<pb::MemberListRequest>,
    ) -> Result<Response<pb::MemberListResponse>, Status> {
        Ok(Response::new(pb::MemberListResponse {
            header: self.identity.header(self.store.revision()),
            members: vec![self.this_member()],
        }))
    }

    async fn member_promote(
        &self,
        _request: Request<pb::MemberPromoteRequest>,
    ) -> Result<Response<pb::MemberPromoteResponse>, Status> {
        Err(unsupported("member promote", NO_RAFT))
    }
}
