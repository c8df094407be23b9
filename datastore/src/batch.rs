//! Evaluation of one group commit: transactions, lease changes and compaction requests run in arrival order
//! against the index plus the changes of the requests before them, and turn into log rows for one SQL
//! transaction. Nothing here does IO; the writer persists what a batch decided and then applies it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::index::{Index, LogRow};
use crate::types::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, DeleteRangeResponse, KeyRange, KeyValue, PutRequest,
    PutResponse, RangeRequest, RangeResponse, TxnOp, TxnOpResponse, TxnRequest, TxnResponse,
};

/// A lease change to persist with the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LeaseChange {
    Insert { id: i64, ttl: i64, expires_at_ms: i64 },
    Renew { id: i64, expires_at_ms: i64 },
    Delete { id: i64 },
}

pub(crate) struct Batch<'a> {
    index: &'a Index,
    /// Keys this batch changed so far: `None` for deleted.
    overlay: BTreeMap<Bytes, Option<Arc<KeyValue>>>,
    pub rows: Vec<LogRow>,
    /// Highest revision so far: the index's, then each writing transaction's.
    pub last_rev: i64,
    /// Leases known to exist, with their TTL, for the lease ids this batch mentions.
    leases: HashMap<i64, i64>,
    pub lease_changes: Vec<LeaseChange>,
    /// A compaction point this batch sets.
    pub compact_rev: Option<i64>,
}

/// A transaction after its compares were evaluated: the ops of the branch taken, nested ones decided too.
struct Decision<'r> {
    succeeded: bool,
    ops: Vec<Decided<'r>>,
}

enum Decided<'r> {
    Range(&'r RangeRequest),
    Put(&'r PutRequest),
    Delete(&'r DeleteRangeRequest),
    Txn(Decision<'r>),
}

impl<'a> Batch<'a> {
    pub fn new(index: &'a Index, leases: HashMap<i64, i64>) -> Self {
        Self {
            index,
            overlay: BTreeMap::new(),
            rows: Vec::new(),
            last_rev: index.rev,
            leases,
            lease_changes: Vec::new(),
            compact_rev: None,
        }
    }

    fn get(&self, key: &[u8]) -> Option<Arc<KeyValue>> {
        match self.overlay.get(key) {
            Some(changed) => changed.clone(),
            None => self.index.get(key).cloned(),
        }
    }

    /// Live keys in a range as this batch sees them.
    fn live_in(&self, range: &KeyRange) -> Vec<Arc<KeyValue>> {
        let changed: Vec<_> = self.overlay.iter().filter(|(k, _)| range.contains(k)).collect();
        if changed.is_empty() {
            return self.index.live_in(range).cloned().collect();
        }
        let mut merged: BTreeMap<Bytes, Arc<KeyValue>> =
            self.index.live_in(range).map(|kv| (kv.key.clone(), kv.clone())).collect();
        for (key, state) in changed {
            match state {
                Some(kv) => merged.insert(key.clone(), kv.clone()),
                None => merged.remove(key),
            };
        }
        merged.into_values().collect()
    }

    pub fn txn(&mut self, request: &TxnRequest) -> Result<TxnResponse> {
        let decision = self.decide(request);
        self.validate(&decision)?;
        let rev = self.last_rev + 1;
        let mut sub = 0;
        let response = self.execute(decision, rev, &mut sub);
        if sub > 0 {
            self.last_rev = rev;
        }
        Ok(self.finish(response))
    }

    /// Sets the header revision of every response now that it is known whether the transaction wrote.
    fn finish(&self, mut response: TxnResponse) -> TxnResponse {
        fn stamp(response: &mut TxnResponse, rev: i64) {
            response.revision = rev;
            for op in &mut response.responses {
                match op {
                    TxnOpResponse::Range(r) => r.revision = rev,
                    TxnOpResponse::Put(r) => r.revision = rev,
                    TxnOpResponse::DeleteRange(r) => r.revision = rev,
                    TxnOpResponse::Txn(t) => stamp(t, rev),
                }
            }
        }
        stamp(&mut response, self.last_rev);
        response
    }

    fn decide<'r>(&self, request: &'r TxnRequest) -> Decision<'r> {
        let succeeded = request.compare.iter().all(|c| self.holds(c));
        let branch = if succeeded { &request.success } else { &request.failure };
        let ops = branch
            .iter()
            .map(|op| match op {
                TxnOp::Range(r) => Decided::Range(r),
                TxnOp::Put(p) => Decided::Put(p),
                TxnOp::DeleteRange(d) => Decided::Delete(d),
                TxnOp::Txn(t) => Decided::Txn(self.decide(t)),
            })
            .collect();
        Decision { succeeded, ops }
    }

    fn holds(&self, compare: &Compare) -> bool {
        let kvs = if compare.range.is_single_key() {
            self.get(&compare.range.start).into_iter().collect()
        } else {
            self.live_in(&compare.range)
        };
        if kvs.is_empty() {
            if matches!(compare.target, CompareTarget::Value(_)) {
                return false;
            }
            let missing = KeyValue {
                key: compare.range.start.clone(),
                value: Bytes::new(),
                create_revision: 0,
                mod_revision: 0,
                version: 0,
                lease: 0,
            };
            return compare_one(compare, &missing);
        }
        kvs.iter().all(|kv| compare_one(compare, kv))
    }

    /// Rejects what etcd rejects before applying: a key written twice, a put into a range the same transaction
    /// deletes, ignore_value/ignore_lease on a missing key, an unknown lease, a range at an old revision.
    fn validate(&self, decision: &Decision<'_>) -> Result<()> {
        let mut puts = HashSet::new();
        let mut deletes = Vec::new();
        self.collect_writes(decision, &mut puts, &mut deletes)?;
        for key in &puts {
            if deletes.iter().any(|range| range.contains(key)) {
                return Err(Error::DuplicateKey(key.clone()));
            }
        }
        Ok(())
    }

    fn collect_writes<'r>(
        &self,
        decision: &Decision<'r>,
        puts: &mut HashSet<Bytes>,
        deletes: &mut Vec<&'r KeyRange>,
    ) -> Result<()> {
        for op in &decision.ops {
            match op {
                Decided::Put(put) => {
                    if !puts.insert(put.key.clone()) {
                        return Err(Error::DuplicateKey(put.key.clone()));
                    }
                    if (put.ignore_value || put.ignore_lease) && self.get(&put.key).is_none() {
                        return Err(Error::KeyNotFound(put.key.clone()));
                    }
                    if !put.ignore_lease && put.lease != 0 && !self.leases.contains_key(&put.lease) {
                        return Err(Error::LeaseNotFound(put.lease));
                    }
                }
                Decided::Delete(delete) => deletes.push(&delete.range),
                Decided::Range(range) if range.revision != 0 => {
                    return Err(Error::InvalidArgument(
                        "a range inside a transaction reads the current revision; leave its revision at 0".into(),
                    ));
                }
                Decided::Range(_) => {}
                Decided::Txn(nested) => self.collect_writes(nested, puts, deletes)?,
            }
        }
        Ok(())
    }

    fn execute(&mut self, decision: Decision<'_>, rev: i64, sub: &mut i64) -> TxnResponse {
        let mut responses = Vec::with_capacity(decision.ops.len());
        for op in decision.ops {
            let response = match op {
                Decided::Range(request) => TxnOpResponse::Range(self.range(request)),
                Decided::Put(request) => TxnOpResponse::Put(self.put(request, rev, sub)),
                Decided::Delete(request) => {
                    TxnOpResponse::DeleteRange(self.delete(&request.range, request.prev_kv, rev, sub))
                }
                Decided::Txn(nested) => TxnOpResponse::Txn(self.execute(nested, rev, sub)),
            };
            responses.push(response);
        }
        TxnResponse { revision: 0, succeeded: decision.succeeded, responses }
    }

    fn range(&self, request: &RangeRequest) -> RangeResponse {
        let live = self.live_in(&request.range);
        let count = live.len() as i64;
        let limit = if request.limit > 0 { request.limit as usize } else { usize::MAX };
        let more = live.len() > limit;
        let kvs = if request.count_only {
            Vec::new()
        } else {
            live.into_iter().take(limit).map(|kv| if request.keys_only { without_value(&kv) } else { kv }).collect()
        };
        RangeResponse { revision: 0, kvs, more, count }
    }

    fn put(&mut self, request: &PutRequest, rev: i64, sub: &mut i64) -> PutResponse {
        let prev = self.get(&request.key);
        let value = match (&prev, request.ignore_value) {
            (Some(prev), true) => prev.value.clone(),
            _ => request.value.clone(),
        };
        let lease = match (&prev, request.ignore_lease) {
            (Some(prev), true) => prev.lease,
            _ => request.lease,
        };
        let row = LogRow {
            rev,
            sub: *sub,
            key: request.key.clone(),
            deleted: false,
            create_rev: prev.as_ref().map_or(rev, |p| p.create_revision),
            prev_rev: prev.as_ref().map_or(0, |p| p.mod_revision),
            version: prev.as_ref().map_or(1, |p| p.version + 1),
            lease,
            value,
        };
        *sub += 1;
        self.overlay.insert(row.key.clone(), Some(Arc::new(row.key_value())));
        self.rows.push(row);
        PutResponse { revision: 0, prev_kv: if request.prev_kv { prev } else { None } }
    }

    fn delete(&mut self, range: &KeyRange, want_prev: bool, rev: i64, sub: &mut i64) -> DeleteRangeResponse {
        let doomed =
            if range.is_single_key() { self.get(&range.start).into_iter().collect() } else { self.live_in(range) };
        for kv in &doomed {
            self.rows.push(LogRow {
                rev,
                sub: *sub,
                key: kv.key.clone(),
                deleted: true,
                create_rev: kv.create_revision,
                prev_rev: kv.mod_revision,
                version: 0,
                lease: 0,
                value: Bytes::new(),
            });
            *sub += 1;
            self.overlay.insert(kv.key.clone(), None);
        }
        DeleteRangeResponse {
            revision: 0,
            deleted: doomed.len() as i64,
            prev_kvs: if want_prev { doomed } else { Vec::new() },
        }
    }

    pub fn grant_lease(&mut self, id: i64, ttl: i64, now_ms: i64) -> Result<i64> {
        if self.leases.contains_key(&id) {
            return Err(Error::LeaseExists(id));
        }
        self.leases.insert(id, ttl);
        self.lease_changes.push(LeaseChange::Insert { id, ttl, expires_at_ms: now_ms + ttl * 1000 });
        Ok(ttl)
    }

    pub fn keep_alive(&mut self, id: i64, now_ms: i64) -> Result<i64> {
        let ttl = *self.leases.get(&id).ok_or(Error::LeaseNotFound(id))?;
        self.lease_changes.push(LeaseChange::Renew { id, expires_at_ms: now_ms + ttl * 1000 });
        Ok(ttl)
    }

    /// Revokes a lease and deletes its keys in one revision. Returns the revision after it.
    pub fn revoke_lease(&mut self, id: i64) -> Result<i64> {
        if self.leases.remove(&id).is_none() {
            return Err(Error::LeaseNotFound(id));
        }
        self.lease_changes.push(LeaseChange::Delete { id });
        let mut keys: Vec<Bytes> = self.index.lease_keys(id);
        keys.extend(
            self.overlay.iter().filter(|(_, v)| v.as_ref().is_some_and(|kv| kv.lease == id)).map(|(k, _)| k.clone()),
        );
        keys.sort();
        keys.dedup();
        let rev = self.last_rev + 1;
        let mut sub = 0;
        for key in keys {
            if self.get(&key).is_some_and(|kv| kv.lease == id) {
                self.delete(&KeyRange::key(key), false, rev, &mut sub);
            }
        }
        if sub > 0 {
            self.last_rev = rev;
        }
        Ok(self.last_rev)
    }

    pub fn compact(&mut self, rev: i64) -> Result<()> {
        let compacted = self.compact_rev.unwrap_or(self.index.compact_rev);
        if rev <= compacted {
            return Err(Error::Compacted { requested: rev, compact_revision: compacted });
        }
        if rev > self.last_rev {
            return Err(Error::FutureRevision { requested: rev, current: self.last_rev });
        }
        self.compact_rev = Some(rev);
        Ok(())
    }
}

fn compare_one(compare: &Compare, kv: &KeyValue) -> bool {
    use std::cmp::Ordering;
    let ordering: Ordering = match &compare.target {
        CompareTarget::Version(v) => kv.version.cmp(v),
        CompareTarget::CreateRevision(v) => kv.create_revision.cmp(v),
        CompareTarget::ModRevision(v) => kv.mod_revision.cmp(v),
        CompareTarget::Lease(v) => kv.lease.cmp(v),
        CompareTarget::Value(v) => kv.value[..].cmp(&v[..]),
    };
    match compare.result {
        CompareResult::Equal => ordering == Ordering::Equal,
        CompareResult::NotEqual => ordering != Ordering::Equal,
        CompareResult::Greater => ordering == Ordering::Greater,
        CompareResult::Less => ordering == Ordering::Less,
    }
}

pub(crate) fn without_value(kv: &Arc<KeyValue>) -> Arc<KeyValue> {
    Arc::new(KeyValue { value: Bytes::new(), ..(**kv).clone() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, value: &str) -> TxnOp {
        TxnOp::Put(PutRequest {
            key: Bytes::copy_from_slice(key.as_bytes()),
            value: Bytes::copy_from_slice(value.as_bytes()),
            ..Default::default()
        })
    }

    fn mod_rev_is(key: &str, rev: i64) -> Compare {
        Compare {
            range: KeyRange::key(key.as_bytes().to_vec()),
            result: CompareResult::Equal,
            target: CompareTarget::ModRevision(rev),
        }
    }

    #[test]
    fn compare_and_swap_sees_earlier_requests_of_the_batch() {
        let index = Index::new();
        let mut batch = Batch::new(&index, HashMap::new());
        let create = TxnRequest { compare: vec![mod_rev_is("a", 0)], success: vec![put("a", "1")], failure: vec![] };
        assert!(batch.txn(&create).unwrap().succeeded);
        // The same create again must now fail: "a" exists in the batch's view.
        let again = batch.txn(&create).unwrap();
        assert!(!again.succeeded);
        assert_eq!(again.revision, 1);
        let update = TxnRequest { compare: vec![mod_rev_is("a", 1)], success: vec![put("a", "2")], failure: vec![] };
        let updated = batch.txn(&update).unwrap();
        assert!(updated.succeeded);
        assert_eq!(updated.revision, 2);
        assert_eq!(batch.rows.len(), 2);
        assert_eq!(batch.rows[1].version, 2);
        assert_eq!(batch.rows[1].create_rev, 1);
    }

    #[test]
    fn a_key_written_twice_fails_the_transaction_only() {
        let index = Index::new();
        let mut batch = Batch::new(&index, HashMap::new());
        let twice = TxnRequest { success: vec![put("a", "1"), put("a", "2")], ..Default::default() };
        assert!(matches!(batch.txn(&twice), Err(Error::DuplicateKey(_))));
        assert!(batch.rows.is_empty());
        assert_eq!(batch.last_rev, 0);
    }

    #[test]
    fn deleting_nothing_does_not_take_a_revision() {
        let index = Index::new();
        let mut batch = Batch::new(&index, HashMap::new());
        let delete = TxnRequest {
            success: vec![TxnOp::DeleteRange(DeleteRangeRequest { range: KeyRange::prefix("x"), prev_kv: true })],
            ..Default::default()
        };
        let response = batch.txn(&delete).unwrap();
        assert_eq!(response.revision, 0);
        assert!(batch.rows.is_empty());
    }

    #[test]
    fn unknown_leases_are_refused() {
        let index = Index::new();
        let mut batch = Batch::new(&index, HashMap::new());
        let leased = TxnRequest {
            success: vec![TxnOp::Put(PutRequest { key: Bytes::from_static(b"a"), lease: 9, ..Default::default() })],
            ..Default::default()
        };
        assert!(matches!(batch.txn(&leased), Err(Error::LeaseNotFound(9))));
        batch.grant_lease(9, 10, 0).unwrap();
        assert!(batch.txn(&leased).unwrap().succeeded);
        assert_eq!(batch.revoke_lease(9).unwrap(), 2);
        assert!(batch.rows[1].deleted);
    }
}
