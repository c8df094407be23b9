//! Conversions between etcd's protobuf messages and the store's types, etcd's request validation, the parts of
//! a range etcd does in memory (sorting, revision filters), and the mapping of store errors to etcd's gRPC errors.

use super::proto::{etcdserverpb as pb, mvccpb};
use std::cmp::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use tonic::{Code, Status};

use super::ServerIdentity;
use crate::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, DeleteRangeResponse, Error, Event, EventKind, KeyRange,
    KeyValue, PutRequest, PutResponse, RangeRequest, RangeResponse, TxnOp, TxnOpResponse, TxnRequest, TxnResponse,
};

/// etcd's default `--max-txn-ops`.
const MAX_TXN_OPS: usize = 128;

// Values of enums that etcd-client does not re-export.
const SORT_ORDER_NONE: i32 = 0;
const SORT_ORDER_ASCEND: i32 = 1;
const SORT_ORDER_DESCEND: i32 = 2;
const SORT_TARGET_KEY: i32 = 0;
const SORT_TARGET_VERSION: i32 = 1;
const SORT_TARGET_CREATE: i32 = 2;
const SORT_TARGET_MOD: i32 = 3;
const SORT_TARGET_VALUE: i32 = 4;
const COMPARE_EQUAL: i32 = 0;
const COMPARE_GREATER: i32 = 1;
const COMPARE_LESS: i32 = 2;
const COMPARE_NOT_EQUAL: i32 = 3;
pub(crate) const EVENT_TYPE_PUT: i32 = 0;
pub(crate) const EVENT_TYPE_DELETE: i32 = 1;

pub(crate) const COMPACTED_MESSAGE: &str = "etcdserver: mvcc: required revision has been compacted";
const FUTURE_REVISION_MESSAGE: &str = "etcdserver: mvcc: required revision is a future revision";

/// The gRPC status etcd answers with for the same condition; clients such as etcdctl and clientv3 recognise
/// errors by code and message.
pub(crate) fn status_from_error(error: Error) -> Status {
    match error {
        Error::Compacted { .. } => Status::out_of_range(COMPACTED_MESSAGE),
        Error::FutureRevision { .. } => Status::out_of_range(FUTURE_REVISION_MESSAGE),
        Error::LeaseNotFound(_) => Status::not_found("etcdserver: requested lease not found"),
        Error::LeaseExists(_) => Status::failed_precondition("etcdserver: lease already exists"),
        Error::DuplicateKey(_) => Status::invalid_argument("etcdserver: duplicate key given in txn request"),
        Error::KeyNotFound(_) => Status::invalid_argument("etcdserver: key not found"),
        Error::InvalidArgument(message) => Status::invalid_argument(format!("etcdserver: {message}")),
        Error::Closed => Status::unavailable("etcdserver: server stopped"),
        fault => Status::new(Code::Unavailable, crate::error::one_line(&fault)),
    }
}

fn empty_key() -> Status {
    Status::invalid_argument("etcdserver: key is not provided")
}

pub(crate) fn key_value_to_pb(kv: &KeyValue) -> mvccpb::KeyValue {
    mvccpb::KeyValue {
        key: kv.key.to_vec(),
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value.to_vec(),
        lease: kv.lease,
    }
}

pub(crate) fn event_to_pb(event: &Event) -> mvccpb::Event {
    mvccpb::Event {
        r#type: match event.kind {
            EventKind::Put => EVENT_TYPE_PUT,
            EventKind::Delete => EVENT_TYPE_DELETE,
        },
        kv: Some(key_value_to_pb(&event.kv)),
        prev_kv: event.prev_kv.as_deref().map(key_value_to_pb),
    }
}

/// A range as the store runs it, plus what etcd does to the result in memory afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RangeQuery {
    pub store_request: RangeRequest,
    finish: RangeFinish,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct RangeFinish {
    /// The client's limit; the store may have been asked for everything when sorting or filtering.
    limit: i64,
    keys_only: bool,
    count_only: bool,
    /// Ascending or descending by `sort_target`, or `None` for the store's key order.
    sort: Option<(i32, bool)>,
    min_mod_revision: i64,
    max_mod_revision: i64,
    min_create_revision: i64,
    max_create_revision: i64,
}

impl RangeQuery {
    pub fn from_pb(request: pb::RangeRequest) -> Result<Self, Status> {
        if request.key.is_empty() {
            return Err(empty_key());
        }
        let valid_order = matches!(request.sort_order, SORT_ORDER_NONE | SORT_ORDER_ASCEND | SORT_ORDER_DESCEND);
        if !valid_order || !(SORT_TARGET_KEY..=SORT_TARGET_VALUE).contains(&request.sort_target) {
            return Err(Status::invalid_argument("etcdserver: invalid sort option"));
        }
        let filtered = request.min_mod_revision != 0
            || request.max_mod_revision != 0
            || request.min_create_revision != 0
            || request.max_create_revision != 0;
        // As etcd: a sort order, or any revision filter, means reading everything and cutting to the limit after.
        let read_everything = request.sort_order != SORT_ORDER_NONE || filtered;
        // As etcd: a target other than the key sorts ascending by default; ascending by key is the store's order.
        let sort = match (request.sort_target, request.sort_order) {
            (SORT_TARGET_KEY, SORT_ORDER_NONE | SORT_ORDER_ASCEND) => None,
            (target, SORT_ORDER_DESCEND) => Some((target, false)),
            (target, _) => Some((target, true)),
        };
        let sorting_by_value = sort.is_some_and(|(target, _)| target == SORT_TARGET_VALUE);
        let store_request = RangeRequest {
            range: KeyRange::between(request.key, request.range_end),
            revision: request.revision,
            limit: if read_everything { 0 } else { request.limit },
            keys_only: request.keys_only && !sorting_by_value,
            count_only: request.count_only,
            serializable: request.serializable,
        };
        let finish = RangeFinish {
            limit: request.limit,
            keys_only: request.keys_only,
            count_only: request.count_only,
            sort,
            min_mod_revision: request.min_mod_revision,
            max_mod_revision: request.max_mod_revision,
            min_create_revision: request.min_create_revision,
            max_create_revision: request.max_create_revision,
        };
        Ok(Self { store_request, finish })
    }

    /// Filters, sorts and cuts the store's answer as etcd does. `count` stays the store's count, as in etcd.
    pub fn finish(&self, response: RangeResponse, identity: &ServerIdentity) -> pb::RangeResponse {
        let finish = &self.finish;
        let header = identity.header(response.revision);
        if finish.count_only {
            return pb::RangeResponse { header, kvs: Vec::new(), more: false, count: response.count };
        }
        let mut kvs = response.kvs;
        let mut more = response.more;
        kvs.retain(|kv| {
            (finish.max_mod_revision == 0 || kv.mod_revision <= finish.max_mod_revision)
                && (finish.min_mod_revision == 0 || kv.mod_revision >= finish.min_mod_revision)
                && (finish.max_create_revision == 0 || kv.create_revision <= finish.max_create_revision)
                && (finish.min_create_revision == 0 || kv.create_revision >= finish.min_create_revision)
        });
        if let Some((target, ascending)) = finish.sort {
            kvs.sort_by(|a, b| {
                let order = compare_by_target(a, b, target);
                if ascending {
                    order
                } else {
                    order.reverse()
                }
            });
        }
        if finish.limit > 0 && kvs.len() > finish.limit as usize {
            kvs.truncate(finish.limit as usize);
            more = true;
        }
        let kvs = kvs
            .iter()
            .map(|kv| {
                let mut pb = key_value_to_pb(kv);
                if finish.keys_only {
                    pb.value.clear();
                }
                pb
            })
            .collect();
        pb::RangeResponse { header, kvs, more, count: response.count }
    }
}

fn compare_by_target(a: &Arc<KeyValue>, b: &Arc<KeyValue>, target: i32) -> Ordering {
    match target {
        SORT_TARGET_VERSION => a.version.cmp(&b.version),
        SORT_TARGET_CREATE => a.create_revision.cmp(&b.create_revision),
        SORT_TARGET_MOD => a.mod_revision.cmp(&b.mod_revision),
        SORT_TARGET_VALUE => a.value.cmp(&b.value),
        _ => a.key.cmp(&b.key),
    }
}

pub(crate) fn put_request_from_pb(request: pb::PutRequest) -> Result<PutRequest, Status> {
    if request.key.is_empty() {
        return Err(empty_key());
    }
    if request.ignore_value && !request.value.is_empty() {
        return Err(Status::invalid_argument("etcdserver: value is provided"));
    }
    if request.ignore_lease && request.lease != 0 {
        return Err(Status::invalid_argument("etcdserver: lease is provided"));
    }
    Ok(PutRequest {
        key: Bytes::from(request.key),
        value: Bytes::from(request.value),
        lease: request.lease,
        prev_kv: request.prev_kv,
        ignore_value: request.ignore_value,
        ignore_lease: request.ignore_lease,
    })
}

pub(crate) fn put_response_to_pb(response: &PutResponse, identity: &ServerIdentity) -> pb::PutResponse {
    pb::PutResponse {
        header: identity.header(response.revision),
        prev_kv: response.prev_kv.as_deref().map(key_value_to_pb),
    }
}

pub(crate) fn delete_request_from_pb(request: pb::DeleteRangeRequest) -> Result<DeleteRangeRequest, Status> {
    if request.key.is_empty() {
        return Err(empty_key());
    }
    Ok(DeleteRangeRequest { range: KeyRange::between(request.key, request.range_end), prev_kv: request.prev_kv })
}

pub(crate) fn delete_response_to_pb(
    response: &DeleteRangeResponse,
    identity: &ServerIdentity,
) -> pb::DeleteRangeResponse {
    pb::DeleteRangeResponse {
        header: identity.header(response.revision),
        deleted: response.deleted,
        prev_kvs: response.prev_kvs.iter().map(|kv| key_value_to_pb(kv)).collect(),
    }
}

fn compare_from_pb(compare: pb::Compare) -> Result<Compare, Status> {
    if compare.key.is_empty() {
        return Err(empty_key());
    }
    let result = match compare.result {
        COMPARE_EQUAL => CompareResult::Equal,
        COMPARE_GREATER => CompareResult::Greater,
        COMPARE_LESS => CompareResult::Less,
        COMPARE_NOT_EQUAL => CompareResult::NotEqual,
        other => return Err(Status::invalid_argument(format!("etcdserver: unknown compare result {other}"))),
    };
    let target = pb::compare::CompareTarget::try_from(compare.target)
        .map_err(|_| Status::invalid_argument(format!("etcdserver: unknown compare target {}", compare.target)))?;
    // As in etcd, the target field decides which value is compared; a value of another kind counts as zero.
    let union = compare.target_union;
    let number = |wanted: fn(&pb::compare::TargetUnion) -> Option<i64>| union.as_ref().and_then(wanted).unwrap_or(0);
    let target = match target {
        pb::compare::CompareTarget::Version => {
            CompareTarget::Version(number(
                |u| if let pb::compare::TargetUnion::Version(v) = u { Some(*v) } else { None },
            ))
        }
        pb::compare::CompareTarget::Create => CompareTarget::CreateRevision(number(|u| {
            if let pb::compare::TargetUnion::CreateRevision(v) = u {
                Some(*v)
            } else {
                None
            }
        })),
        pb::compare::CompareTarget::Mod => CompareTarget::ModRevision(number(|u| {
            if let pb::compare::TargetUnion::ModRevision(v) = u {
                Some(*v)
            } else {
                None
            }
        })),
        pb::compare::CompareTarget::Lease => {
            CompareTarget::Lease(number(|u| if let pb::compare::TargetUnion::Lease(v) = u { Some(*v) } else { None }))
        }
        pb::compare::CompareTarget::Value => CompareTarget::Value(match union {
            Some(pb::compare::TargetUnion::Value(value)) => Bytes::from(value),
            _ => Bytes::new(),
        }),
    };
    Ok(Compare { range: KeyRange::between(compare.key, compare.range_end), result, target })
}

/// A transaction as the store runs it, with what each of its ranges needs done afterwards.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TxnQuery {
    pub store_request: TxnRequest,
    success: Vec<OpFinish>,
    failure: Vec<OpFinish>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum OpFinish {
    Range(RangeQuery),
    Put,
    DeleteRange,
    Txn(TxnQuery),
}

impl TxnQuery {
    pub fn from_pb(request: pb::TxnRequest) -> Result<Self, Status> {
        let operations = request.compare.len().max(request.success.len()).max(request.failure.len());
        if operations > MAX_TXN_OPS {
            return Err(Status::invalid_argument("etcdserver: too many operations in txn request"));
        }
        let compare = request.compare.into_iter().map(compare_from_pb).collect::<Result<Vec<_>, _>>()?;
        let (success_ops, success) = ops_from_pb(request.success)?;
        let (failure_ops, failure) = ops_from_pb(request.failure)?;
        Ok(Self { store_request: TxnRequest { compare, success: success_ops, failure: failure_ops }, success, failure })
    }

    pub fn finish(&self, response: TxnResponse, identity: &ServerIdentity) -> pb::TxnResponse {
        let finishes = if response.succeeded { &self.success } else { &self.failure };
        let responses = finishes
            .iter()
            .zip(response.responses)
            .map(|(finish, op)| {
                let response = match (finish, op) {
                    (OpFinish::Range(query), TxnOpResponse::Range(range)) => {
                        pb::response_op::Response::ResponseRange(query.finish(range, identity))
                    }
                    (OpFinish::Txn(query), TxnOpResponse::Txn(txn)) => {
                        pb::response_op::Response::ResponseTxn(query.finish(txn, identity))
                    }
                    (_, TxnOpResponse::Put(put)) => {
                        pb::response_op::Response::ResponsePut(put_response_to_pb(&put, identity))
                    }
                    (_, TxnOpResponse::DeleteRange(delete)) => {
                        pb::response_op::Response::ResponseDeleteRange(delete_response_to_pb(&delete, identity))
                    }
                    // The store answers each op with a response of its own kind; these cannot pair otherwise.
                    (_, TxnOpResponse::Range(range)) => {
                        pb::response_op::Response::ResponseRange(RangeQuery::unprocessed().finish(range, identity))
                    }
                    (_, TxnOpResponse::Txn(txn)) => {
                        pb::response_op::Response::ResponseTxn(TxnQuery::default().finish(txn, identity))
                    }
                };
                pb::ResponseOp { response: Some(response) }
            })
            .collect();
        pb::TxnResponse { header: identity.header(response.revision), succeeded: response.succeeded, responses }
    }
}

impl RangeQuery {
    /// A query that passes the store's answer through unchanged.
    fn unprocessed() -> Self {
        Self {
            store_request: RangeRequest::default(),
            finish: RangeFinish {
                limit: 0,
                keys_only: false,
                count_only: false,
                sort: None,
                min_mod_revision: 0,
                max_mod_revision: 0,
                min_create_revision: 0,
                max_create_revision: 0,
            },
        }
    }
}

fn ops_from_pb(ops: Vec<pb::RequestOp>) -> Result<(Vec<TxnOp>, Vec<OpFinish>), Status> {
    let mut store_ops = Vec::with_capacity(ops.len());
    let mut finishes = Vec::with_capacity(ops.len());
    for op in ops {
        match op.request {
            Some(pb::request_op::Request::RequestRange(range)) => {
                let query = RangeQuery::from_pb(range)?;
                store_ops.push(TxnOp::Range(query.store_request.clone()));
                finishes.push(OpFinish::Range(query));
            }
            Some(pb::request_op::Request::RequestPut(put)) => {
                store_ops.push(TxnOp::Put(put_request_from_pb(put)?));
                finishes.push(OpFinish::Put);
            }
            Some(pb::request_op::Request::RequestDeleteRange(delete)) => {
                store_ops.push(TxnOp::DeleteRange(delete_request_from_pb(delete)?));
                finishes.push(OpFinish::DeleteRange);
            }
            Some(pb::request_op::Request::RequestTxn(txn)) => {
                let query = TxnQuery::from_pb(txn)?;
                store_ops.push(TxnOp::Txn(query.store_request.clone()));
                finishes.push(OpFinish::Txn(query));
            }
            // etcd's answer to an empty op.
            None => return Err(Status::invalid_argument("etcdserver: key not found")),
        }
    }
    Ok((store_ops, finishes))
}

/// A watch's key range in etcd's form: an empty key means the smallest key.
pub(crate) fn watch_range(key: Vec<u8>, range_end: Vec<u8>) -> KeyRange {
    let key = if key.is_empty() { vec![0] } else { key };
    KeyRange::between(key, range_end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> ServerIdentity {
        ServerIdentity {
            cluster_id: 1,
            member_id: 2,
            member_name: "test".into(),
            client_url: "http://127.0.0.1:2379".into(),
        }
    }

    fn kv(key: &str, value: &str, create_revision: i64, mod_revision: i64, version: i64) -> Arc<KeyValue> {
        Arc::new(KeyValue {
            key: Bytes::copy_from_slice(key.as_bytes()),
            value: Bytes::copy_from_slice(value.as_bytes()),
            create_revision,
            mod_revision,
            version,
            lease: 0,
        })
    }

    fn keys(response: &pb::RangeResponse) -> Vec<String> {
        response.kvs.iter().map(|kv| String::from_utf8_lossy(&kv.key).into_owned()).collect()
    }

    fn store_answer(kvs: Vec<Arc<KeyValue>>) -> RangeResponse {
        let count = kvs.len() as i64;
        RangeResponse { revision: 9, kvs, more: false, count }
    }

    #[test]
    fn store_errors_become_etcd_statuses() {
        let cases = [
            (Error::Compacted { requested: 1, compact_revision: 5 }, Code::OutOfRange, COMPACTED_MESSAGE),
            (Error::FutureRevision { requested: 9, current: 5 }, Code::OutOfRange, FUTURE_REVISION_MESSAGE),
            (Error::LeaseNotFound(7), Code::NotFound, "etcdserver: requested lease not found"),
            (Error::LeaseExists(7), Code::FailedPrecondition, "etcdserver: lease already exists"),
            (
                Error::DuplicateKey(Bytes::from_static(b"a")),
                Code::InvalidArgument,
                "etcdserver: duplicate key given in txn request",
            ),
            (Error::KeyNotFound(Bytes::from_static(b"a")), Code::InvalidArgument, "etcdserver: key not found"),
            (Error::Closed, Code::Unavailable, "etcdserver: server stopped"),
        ];
        for (error, code, message) in cases {
            let status = status_from_error(error);
            assert_eq!((status.code(), status.message()), (code, message));
        }
    }

    #[test]
    fn database_faults_are_unavailable_with_their_causes() {
        let error =
            Error::Io { path: "/var/lib/kaasd".into(), source: Arc::new(std::io::Error::other("disk on fire")) };
        let status = status_from_error(error);
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(status.message(), "cannot create or lock the datastore file /var/lib/kaasd: disk on fire");
    }

    #[test]
    fn an_empty_key_is_refused_like_etcd() {
        let status = RangeQuery::from_pb(pb::RangeRequest::default()).expect_err("empty key");
        assert_eq!((status.code(), status.message()), (Code::InvalidArgument, "etcdserver: key is not provided"));
        let status = put_request_from_pb(pb::PutRequest::default()).expect_err("empty key");
        assert_eq!(status.message(), "etcdserver: key is not provided");
    }

    #[test]
    fn put_flags_that_contradict_their_values_are_refused() {
        let request =
            pb::PutRequest { key: b"a".to_vec(), value: b"v".to_vec(), ignore_value: true, ..Default::default() };
        assert_eq!(put_request_from_pb(request).expect_err("value given").message(), "etcdserver: value is provided");
        let request = pb::PutRequest { key: b"a".to_vec(), lease: 5, ignore_lease: true, ..Default::default() };
        assert_eq!(put_request_from_pb(request).expect_err("lease given").message(), "etcdserver: lease is provided");
    }

    #[test]
    fn sorting_reads_everything_then_cuts_to_the_limit() {
        let request = pb::RangeRequest {
            key: b"a".to_vec(),
            range_end: b"z".to_vec(),
            limit: 2,
            sort_order: SORT_ORDER_DESCEND,
            sort_target: SORT_TARGET_MOD,
            ..Default::default()
        };
        let query = RangeQuery::from_pb(request).expect("valid");
        assert_eq!(query.store_request.limit, 0);
        let answer = store_answer(vec![kv("a", "1", 1, 3, 1), kv("b", "2", 2, 5, 1), kv("c", "3", 4, 4, 1)]);
        let response = query.finish(answer, &identity());
        assert_eq!(keys(&response), ["b", "c"]);
        assert!(response.more);
        assert_eq!(response.count, 3);
        assert_eq!(response.header.expect("header").revision, 9);
    }

    #[test]
    fn a_non_key_target_without_order_sorts_ascending() {
        let request = pb::RangeRequest {
            key: b"a".to_vec(),
            range_end: b"z".to_vec(),
            sort_target: SORT_TARGET_VALUE,
            keys_only: true,
            ..Default::default()
        };
        let query = RangeQuery::from_pb(request).expect("valid");
        // The values are needed to sort, and dropped after.
        assert!(!query.store_request.keys_only);
        let response = query.finish(store_answer(vec![kv("a", "z", 1, 1, 1), kv("b", "m", 2, 2, 1)]), &identity());
        assert_eq!(keys(&response), ["b", "a"]);
        assert!(response.kvs.iter().all(|kv| kv.value.is_empty()));
    }

    #[test]
    fn any_sort_order_reads_everything_but_a_plain_limit_reaches_the_store() {
        let request = pb::RangeRequest {
            key: b"a".to_vec(),
            range_end: b"z".to_vec(),
            limit: 1,
            sort_order: SORT_ORDER_ASCEND,
            ..Default::default()
        };
        let query = RangeQuery::from_pb(request).expect("valid");
        // etcd reads everything whenever an order is given, even the store's own.
        assert_eq!(query.store_request.limit, 0);
        let plain = pb::RangeRequest { key: b"a".to_vec(), limit: 1, ..Default::default() };
        assert_eq!(RangeQuery::from_pb(plain).expect("valid").store_request.limit, 1);
    }

    #[test]
    fn revision_filters_prune_but_keep_the_count() {
        let request = pb::RangeRequest {
            key: b"a".to_vec(),
            range_end: b"z".to_vec(),
            min_mod_revision: 2,
            max_create_revision: 3,
            ..Default::default()
        };
        let query = RangeQuery::from_pb(request).expect("valid");
        let answer = store_answer(vec![kv("a", "1", 1, 1, 1), kv("b", "2", 2, 2, 1), kv("c", "3", 4, 4, 1)]);
        let response = query.finish(answer, &identity());
        assert_eq!(keys(&response), ["b"]);
        assert_eq!(response.count, 3);
    }

    #[test]
    fn invalid_sort_options_are_refused() {
        let request = pb::RangeRequest { key: b"a".to_vec(), sort_order: 7, ..Default::default() };
        assert_eq!(RangeQuery::from_pb(request).expect_err("bad order").message(), "etcdserver: invalid sort option");
    }

    #[test]
    fn compares_take_their_value_from_the_target() {
        let compare = pb::Compare {
            result: COMPARE_GREATER,
            target: pb::compare::CompareTarget::Mod as i32,
            key: b"k".to_vec(),
            range_end: Vec::new(),
            target_union: Some(pb::compare::TargetUnion::ModRevision(4)),
        };
        let converted = compare_from_pb(compare).expect("valid");
        assert_eq!(converted.result, CompareResult::Greater);
        assert_eq!(converted.target, CompareTarget::ModRevision(4));
        assert_eq!(converted.range, KeyRange::key(Bytes::from_static(b"k")));
        let mismatched = pb::Compare {
            result: COMPARE_EQUAL,
            target: pb::compare::CompareTarget::Version as i32,
            key: b"k".to_vec(),
            range_end: Vec::new(),
            target_union: Some(pb::compare::TargetUnion::Lease(9)),
        };
        assert_eq!(compare_from_pb(mismatched).expect("valid").target, CompareTarget::Version(0));
    }

    #[test]
    fn too_many_txn_operations_are_refused() {
        let put = pb::RequestOp {
            request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
                key: b"k".to_vec(),
                ..Default::default()
            })),
        };
        let request = pb::TxnRequest { success: vec![put; MAX_TXN_OPS + 1], ..Default::default() };
        let status = TxnQuery::from_pb(request).expect_err("too many");
        assert_eq!(status.message(), "etcdserver: too many operations in txn request");
    }

    #[test]
    fn nested_txn_ranges_are_finished_in_their_branch() {
        let range = pb::RangeRequest {
            key: b"a".to_vec(),
            range_end: b"z".to_vec(),
            sort_order: SORT_ORDER_DESCEND,
            ..Default::default()
        };
        let inner = pb::TxnRequest {
            success: vec![pb::RequestOp { request: Some(pb::request_op::Request::RequestRange(range)) }],
            ..Default::default()
        };
        let outer = pb::TxnRequest {
            failure: vec![pb::RequestOp { request: Some(pb::request_op::Request::RequestTxn(inner)) }],
            ..Default::default()
        };
        let query = TxnQuery::from_pb(outer).expect("valid");
        let inner_answer = TxnResponse {
            revision: 9,
            succeeded: true,
            responses: vec![TxnOpResponse::Range(store_answer(vec![kv("a", "1", 1, 1, 1), kv("b", "2", 2, 2, 1)]))],
        };
        let answer = TxnResponse { revision: 9, succeeded: false, responses: vec![TxnOpResponse::Txn(inner_answer)] };
        let response = query.finish(answer, &identity());
        assert!(!response.succeeded);
        let Some(pb::response_op::Response::ResponseTxn(inner)) = &response.responses[0].response else {
            panic!("expected a nested txn response");
        };
        let Some(pb::response_op::Response::ResponseRange(range)) = &inner.responses[0].response else {
            panic!("expected a range response");
        };
        assert_eq!(keys(range), ["b", "a"]);
    }

    #[test]
    fn events_carry_type_and_previous_value() {
        let event = Event { kind: EventKind::Delete, kv: kv("a", "", 0, 5, 0), prev_kv: Some(kv("a", "1", 1, 1, 1)) };
        let pb = event_to_pb(&event);
        assert_eq!(pb.r#type, EVENT_TYPE_DELETE);
        assert_eq!(pb.kv.expect("kv").mod_revision, 5);
        assert_eq!(pb.prev_kv.expect("prev kv").value, b"1");
    }

    #[test]
    fn an_empty_watch_key_means_the_smallest_key() {
        assert_eq!(watch_range(Vec::new(), vec![0]), KeyRange::between(vec![0u8], vec![0u8]));
        assert_eq!(watch_range(b"a".to_vec(), Vec::new()), KeyRange::key(Bytes::from_static(b"a")));
    }
}
