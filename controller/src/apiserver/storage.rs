//! Kubernetes objects on the datastore: one key per object, JSON values, the key's mod revision as the object's
//! `metadata.resourceVersion`. Every write is a compare-and-swap on that revision, so two writers (two requests,
//! or two controllers on one shared database) can never lose each other's changes.
//!
//! Keys are `/registry/<group>/<plural>/<namespace>/<name>` (`core` for the core group; no namespace segment for
//! cluster-scoped kinds), so one prefix lists a namespace and a shorter one the whole cluster.

use std::sync::Arc;

use bytes::Bytes;
use kaasd_datastore::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, KeyRange, KeyValue, PutRequest, RangeRequest, Store,
    TxnOp, TxnOpResponse, TxnRequest, WatchRequest, Watcher,
};
use serde_json::Value;

use crate::apiserver::error::{ApiError, ApiResult};
use crate::apiserver::registry::ResourceDef;

/// An object as stored, with the revision that last wrote it.
#[derive(Debug, Clone)]
pub struct Stored {
    pub key: String,
    pub object: Value,
    pub revision: i64,
}

/// A page of a list.
#[derive(Debug, Clone)]
pub struct Page {
    pub items: Vec<Stored>,
    /// The revision the whole list (every page of it) is read at.
    pub revision: i64,
    /// More keys follow the last one returned.
    pub more: bool,
    /// Keys in the range at or after the page's start, regardless of the limit.
    pub count: i64,
}

/// A page of a list as the datastore holds it: each value is decoded ([`decode`]) only when it is used, so a
/// caller going through thousands of objects holds one decoded object at a time, not all of them.
#[derive(Debug, Clone)]
pub struct RawPage {
    pub kvs: Vec<Arc<KeyValue>>,
    /// The revision the whole list (every page of it) is read at.
    pub revision: i64,
    /// More keys follow the last one returned.
    pub more: bool,
    /// Keys in the range at or after the page's start, regardless of the limit.
    pub count: i64,
}

impl RawPage {
    /// Where the page after this one starts (just after its last key); `None` when no more follow.
    pub fn next_start(&self) -> Option<String> {
        let last = self.kvs.last().filter(|_| self.more)?;
        Some(format!("{}\u{0}", String::from_utf8_lossy(&last.key)))
    }
}

/// Outcome of a compare-and-swap write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// Written at this revision.
    Ok(i64),
    /// The key was not at the expected revision (or, on create, already existed).
    Stale,
}

#[derive(Clone)]
pub struct ObjectStore {
    store: Store,
}

impl ObjectStore {
    pub fn new(store: Store) -> ObjectStore {
        ObjectStore { store }
    }

    pub fn datastore(&self) -> &Store {
        &self.store
    }

    /// The key prefix of every object of `def` in `namespace` (every namespace when `None`), ending in `/`.
    pub fn prefix(def: &ResourceDef, namespace: Option<&str>) -> String {
        // A converted version shares its storage version's keys.
        let group = def.conversion.map_or(def.group.as_str(), |conversion| conversion.storage_version().0);
        let group = if group.is_empty() { "core" } else { group };
        match namespace {
            Some(namespace) if def.namespaced => format!("/registry/{group}/{}/{namespace}/", def.plural),
            _ => format!("/registry/{group}/{}/", def.plural),
        }
    }

    pub fn key(def: &ResourceDef, namespace: Option<&str>, name: &str) -> String {
        format!("{}{name}", ObjectStore::prefix(def, namespace))
    }

    /// The current object at `key`. `fresh` makes a read on a shared database first catch up with other
    /// processes' writes; informational reads skip that round trip.
    pub async fn get(&self, key: &str, fresh: bool) -> ApiResult<Option<Stored>> {
        let response = self
            .store
            .range(RangeRequest {
                range: KeyRange::key(Bytes::copy_from_slice(key.as_bytes())),
                serializable: !fresh,
                ..RangeRequest::default()
            })
            .await?;
        response.kvs.first().map(decode).transpose()
    }

    /// Up to `limit` objects (0 for all) under `prefix`, from `start` (a full key; `None` for the beginning), at
    /// `revision` (0 for the current one).
    pub async fn list(&self, prefix: &str, start: Option<&str>, revision: i64, limit: i64) -> ApiResult<Page> {
        let page = self.list_raw(prefix, start, revision, limit).await?;
        let items = page.kvs.iter().map(decode).collect::<ApiResult<Vec<_>>>()?;
        Ok(Page { items, revision: page.revision, more: page.more, count: page.count })
    }

    /// [`ObjectStore::list`] without decoding the values.
    pub async fn list_raw(&self, prefix: &str, start: Option<&str>, revision: i64, limit: i64) -> ApiResult<RawPage> {
        let prefix_range = KeyRange::prefix(Bytes::copy_from_slice(prefix.as_bytes()));
        let range = match start {
            Some(start) => KeyRange::between(Bytes::copy_from_slice(start.as_bytes()), prefix_range.end.clone()),
            None => prefix_range,
        };
        let response = self.store.range(RangeRequest { range, revision, limit, ..RangeRequest::default() }).await?;
        Ok(RawPage { kvs: response.kvs, revision: response.revision, more: response.more, count: response.count })
    }

    /// Creates `key` if it does not exist.
    pub async fn create(&self, key: &str, object: &Value) -> ApiResult<Written> {
        self.swap(key, 0, Some(object)).await
    }

    /// Replaces `key` if it is still at `expected` revision.
    pub async fn update(&self, key: &str, expected: i64, object: &Value) -> ApiResult<Written> {
        self.swap(key, expected, Some(object)).await
    }

    /// Deletes `key` if it is still at `expected` revision.
    pub async fn delete(&self, key: &str, expected: i64) -> ApiResult<Written> {
        self.swap(key, expected, None).await
    }

    /// Deletes every object under `prefix` (the objects of a deleted CustomResourceDefinition).
    pub async fn delete_prefix(&self, prefix: &str) -> ApiResult<i64> {
        let response = self
            .store
            .delete_range(DeleteRangeRequest {
                range: KeyRange::prefix(Bytes::copy_from_slice(prefix.as_bytes())),
                prev_kv: false,
            })
            .await?;
        Ok(response.deleted)
    }

    /// Events under `prefix` from revision `from` on (0: from the next write). Deletes carry the last value.
    pub async fn watch(&self, prefix: &str, from: i64) -> ApiResult<Watcher> {
        Ok(self
            .store
            .watch(WatchRequest {
                range: KeyRange::prefix(Bytes::copy_from_slice(prefix.as_bytes())),
                start_revision: from,
                prev_kv: true,
            })
            .await?)
    }

    pub fn revision(&self) -> i64 {
        self.store.revision()
    }

    async fn swap(&self, key: &str, expected: i64, object: Option<&Value>) -> ApiResult<Written> {
        let key = Bytes::copy_from_slice(key.as_bytes());
        let operation = match object {
            Some(object) => {
                TxnOp::Put(PutRequest { key: key.clone(), value: encode(object)?, ..PutRequest::default() })
            }
            None => TxnOp::DeleteRange(DeleteRangeRequest { range: KeyRange::key(key.clone()), prev_kv: false }),
        };
        let response = self
            .store
            .txn(TxnRequest {
                compare: vec![Compare {
                    range: KeyRange::key(key),
                    result: CompareResult::Equal,
                    target: CompareTarget::ModRevision(expected),
                }],
                success: vec![operation],
                failure: vec![],
            })
            .await?;
        if !response.succeeded {
            return Ok(Written::Stale);
        }
        Ok(match response.responses.first() {
            Some(TxnOpResponse::Put(put)) => Written::Ok(put.revision),
            Some(TxnOpResponse::DeleteRange(delete)) => Written::Ok(delete.revision),
            _ => Written::Ok(response.revision),
        })
    }
}

/// The stored form leaves out `metadata.resourceVersion`: the key's revision is the truth, set on every read.
fn encode(object: &Value) -> ApiResult<Bytes> {
    let mut object = object.clone();
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("resourceVersion");
    }
    // The datastore keeps the value in memory for as long as it is live: exactly sized, not with the up to
    // twofold room the encoder's doubling buffer ends with.
    let encoded = serde_json::to_vec(&object).map_err(|error| ApiError::internal(error.to_string()))?;
    Ok(Bytes::from(encoded.into_boxed_slice()))
}

/// Decodes a stored value and stamps its revision into it.
pub fn decode(kv: &Arc<KeyValue>) -> ApiResult<Stored> {
    let key = String::from_utf8_lossy(&kv.key).into_owned();
    let mut object: Value = serde_json::from_slice(&kv.value)
        .map_err(|error| ApiError::internal(format!("stored object {key} is not JSON: {error}")))?;
    set_resource_version(&mut object, kv.mod_revision);
    Ok(Stored { key, object, revision: kv.mod_revision })
}

pub fn set_resource_version(object: &mut Value, revision: i64) {
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.insert("resourceVersion".into(), Value::String(revision.to_string()));
    }
}
