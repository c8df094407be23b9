//! The in-memory side of the store: every live key with its value, the retained revisions of every key, which
//! keys hang on which lease, and a ring of recent events for watches.
//!
//! Invariant: the index holds exactly what the log in SQL holds up to `rev`, nothing uncommitted. Writes reach
//! it only through [`Index::apply`], whether they were made by this process or read back from another one.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;

use crate::types::{Event, EventKind, KeyRange, KeyValue};

/// One change as it is stored in the log table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogRow {
    pub rev: i64,
    /// Position of the change inside its transaction.
    pub sub: i64,
    pub key: Bytes,
    pub deleted: bool,
    pub create_rev: i64,
    /// Mod revision of the key before this change, 0 if it did not exist.
    pub prev_rev: i64,
    pub version: i64,
    pub lease: i64,
    pub value: Bytes,
}

impl LogRow {
    /// The key-value this row describes; for a tombstone, the key and the delete's revision.
    pub fn key_value(&self) -> KeyValue {
        if self.deleted {
            KeyValue {
                key: self.key.clone(),
                value: Bytes::new(),
                create_revision: 0,
                mod_revision: self.rev,
                version: 0,
                lease: 0,
            }
        } else {
            KeyValue {
                key: self.key.clone(),
                value: self.value.clone(),
                create_revision: self.create_rev,
                mod_revision: self.rev,
                version: self.version,
                lease: self.lease,
            }
        }
    }
}

/// Where one retained revision of a key sits in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Retained {
    pub rev: i64,
    pub sub: i64,
    pub deleted: bool,
}

#[derive(Debug, Default)]
struct KeyEntry {
    current: Option<Arc<KeyValue>>,
    /// Retained revisions, oldest first; the last one is the current state.
    history: Vec<Retained>,
}

/// Events applied together, in revision order.
#[derive(Debug)]
pub(crate) struct EventBatch {
    pub last_rev: i64,
    pub events: Vec<Event>,
    value_bytes: usize,
}

/// How a historical range read gets each of its values.
#[derive(Debug)]
pub(crate) enum Slot {
    Ready(Arc<KeyValue>),
    /// The value is only in the log at this position.
    InLog(Retained),
}

/// The outcome of planning a read in memory.
#[derive(Debug)]
pub(crate) struct RangePlan {
    pub slots: Vec<Slot>,
    pub count: i64,
    pub more: bool,
}

/// Limits of the recent-events ring that watches catch up from without SQL.
const RING_MAX_EVENTS: usize = 100_000;
const RING_MAX_VALUE_BYTES: usize = 16 << 20;

#[derive(Debug, Default)]
pub(crate) struct Index {
    /// Highest committed revision applied.
    pub rev: i64,
    pub compact_rev: i64,
    keys: BTreeMap<Bytes, KeyEntry>,
    lease_keys: HashMap<i64, BTreeSet<Bytes>>,
    ring: VecDeque<Arc<EventBatch>>,
    ring_value_bytes: usize,
    ring_events: usize,
    /// Every event from this revision on is in the ring.
    pub ring_start: i64,
}

impl Index {
    pub fn new() -> Self {
        Self { ring_start: 1, ..Self::default() }
    }

    /// Loads one retained row at start-up (values of live keys come later through [`Index::set_value`]).
    pub fn load(&mut self, row: Retained, key: Bytes, create_rev: i64, version: i64, lease: i64) {
        let entry = self.keys.entry(key.clone()).or_default();
        if let Some(old) = entry.current.take() {
            detach_lease(&mut self.lease_keys, old.lease, &key);
        }
        if !row.deleted {
            let kv = KeyValue {
                key: key.clone(),
                value: Bytes::new(),
                create_revision: create_rev,
                mod_revision: row.rev,
                version,
                lease,
            };
            entry.current = Some(Arc::new(kv));
            if lease != 0 {
                self.lease_keys.entry(lease).or_default().insert(key);
            }
        }
        entry.history.push(row);
        self.rev = self.rev.max(row.rev);
        self.ring_start = self.rev + 1;
    }

    /// Live keys whose value still has to be read at start-up, with where it is in the log.
    pub fn live_positions(&self) -> Vec<Retained> {
        self.keys.values().filter(|e| e.current.is_some()).filter_map(|e| e.history.last().copied()).collect()
    }

    pub fn set_value(&mut self, key: &[u8], value: Bytes) {
        if let Some(current) = self.keys.get_mut(key).and_then(|e| e.current.as_mut()) {
            Arc::make_mut(current).value = value;
        }
    }

    pub fn get(&self, key: &[u8]) -> Option<&Arc<KeyValue>> {
        self.keys.get(key).and_then(|e| e.current.as_ref())
    }

    /// Live keys in a range, in key order.
    pub fn live_in<'a>(&'a self, range: &'a KeyRange) -> impl Iterator<Item = &'a Arc<KeyValue>> + 'a {
        self.entries_in(range).filter_map(|(_, e)| e.current.as_ref())
    }

    fn entries_in<'a>(&'a self, range: &'a KeyRange) -> impl Iterator<Item = (&'a Bytes, &'a KeyEntry)> + 'a {
        let upper = match (range.is_single_key(), range.end_bound()) {
            (true, _) => Bound::Included(&range.start[..]),
            (false, Some(end)) => Bound::Excluded(end),
            (false, None) => Bound::Unbounded,
        };
        // An empty or inverted range yields nothing instead of panicking in BTreeMap::range.
        let empty = matches!(upper, Bound::Excluded(end) if end <= &range.start[..]);
        let bounds: (Bound<&[u8]>, Bound<&[u8]>) = if empty {
            (Bound::Excluded(&[][..]), Bound::Excluded(&[][..]))
        } else {
            (Bound::Included(&range.start[..]), upper)
        };
        let iter = if empty { None } else { Some(self.keys.range::<[u8], _>(bounds)) };
        iter.into_iter().flatten()
    }

    /// Keys attached to a lease.
    pub fn lease_keys(&self, lease: i64) -> Vec<Bytes> {
        self.lease_keys.get(&lease).map(|keys| keys.iter().cloned().collect()).unwrap_or_default()
    }

    /// Plans a read of `range` at revision `at` (which must be within [compact_rev, rev]).
    pub fn plan_range(&self, range: &KeyRange, at: i64, limit: i64) -> RangePlan {
        let limit = if limit <= 0 { usize::MAX } else { limit as usize };
        let mut slots = Vec::new();
        let mut count = 0i64;
        for (_, entry) in self.entries_in(range) {
            let slot = if at >= self.rev {
                entry.current.clone().map(Slot::Ready)
            } else {
                let newer = entry.history.partition_point(|r| r.rev <= at);
                match newer.checked_sub(1).map(|i| entry.history[i]) {
                    Some(r) if !r.deleted => match &entry.current {
                        Some(kv) if kv.mod_revision == r.rev => Some(Slot::Ready(kv.clone())),
                        _ => Some(Slot::InLog(r)),
                    },
                    _ => None,
                }
            };
            if let Some(slot) = slot {
                count += 1;
                if slots.len() < limit {
                    slots.push(slot);
                }
            }
        }
        let more = count as usize > slots.len();
        RangePlan { slots, count, more }
    }

    /// Applies committed changes in revision order and records them for watchers. Returns the batch to publish.
    pub fn apply(&mut self, rows: Vec<LogRow>) -> Option<Arc<EventBatch>> {
        let last_rev = rows.last()?.rev;
        let mut events = Vec::with_capacity(rows.len());
        let mut value_bytes = 0;
        for row in rows {
            let kv = Arc::new(row.key_value());
            value_bytes += kv.value.len() + kv.key.len();
            let entry = self.keys.entry(row.key.clone()).or_default();
            let prev_kv = entry.current.take();
            entry.history.push(Retained { rev: row.rev, sub: row.sub, deleted: row.deleted });
            if !row.deleted {
                entry.current = Some(kv.clone());
            }
            if let Some(prev) = &prev_kv {
                detach_lease(&mut self.lease_keys, prev.lease, &row.key);
            }
            if !row.deleted && row.lease != 0 {
                self.lease_keys.entry(row.lease).or_default().insert(row.key.clone());
            }
            let kind = if row.deleted { EventKind::Delete } else { EventKind::Put };
            events.push(Event { kind, kv, prev_kv });
        }
        self.rev = last_rev;
        let batch = Arc::new(EventBatch { last_rev, events, value_bytes });
        self.remember(batch.clone());
        Some(batch)
    }

    fn remember(&mut self, batch: Arc<EventBatch>) {
        self.ring_value_bytes += batch.value_bytes;
        self.ring_events += batch.events.len();
        self.ring.push_back(batch);
        while self.ring_events > RING_MAX_EVENTS || self.ring_value_bytes > RING_MAX_VALUE_BYTES {
            let Some(old) = self.ring.pop_front() else { break };
            self.ring_events -= old.events.len();
            self.ring_value_bytes -= old.value_bytes;
            self.ring_start = old.last_rev + 1;
        }
    }

    /// Events of the ring at or after `from`, if the ring still reaches back that far.
    pub fn ring_since(&self, from: i64) -> Option<Vec<Arc<EventBatch>>> {
        if from < self.ring_start {
            return None;
        }
        Some(self.ring.iter().filter(|b| b.last_rev >= from).cloned().collect())
    }

    /// Forgets every revision a read at `compact_rev` or later cannot need, and returns their log positions so
    /// the rows can be deleted.
    pub fn compact(&mut self, compact_rev: i64) -> Vec<Retained> {
        if compact_rev <= self.compact_rev {
            return Vec::new();
        }
        self.compact_rev = compact_rev;
        let mut obsolete = Vec::new();
        self.keys.retain(|_, entry| {
            let newer = entry.history.partition_point(|r| r.rev <= compact_rev);
            // Keep the newest revision at or below the compaction point, unless it is a tombstone.
            let keep_from = match newer.checked_sub(1) {
                Some(i) if !entry.history[i].deleted => i,
                _ => newer,
            };
            obsolete.extend(entry.history.drain(..keep_from));
            entry.current.is_some() || !entry.history.is_empty()
        });
        obsolete
    }

    /// Number of live keys (for status and tests).
    pub fn live_count(&self) -> usize {
        self.keys.values().filter(|e| e.current.is_some()).count()
    }
}

fn detach_lease(lease_keys: &mut HashMap<i64, BTreeSet<Bytes>>, lease: i64, key: &Bytes) {
    if lease == 0 {
        return;
    }
    if let Some(keys) = lease_keys.get_mut(&lease) {
        keys.remove(key);
        if keys.is_empty() {
            lease_keys.remove(&lease);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(rev: i64, key: &str, value: &str, prev_rev: i64) -> LogRow {
        LogRow {
            rev,
            sub: 0,
            key: Bytes::copy_from_slice(key.as_bytes()),
            deleted: false,
            create_rev: rev,
            prev_rev,
            version: 1,
            lease: 0,
            value: Bytes::copy_from_slice(value.as_bytes()),
        }
    }

    fn delete(rev: i64, key: &str, prev_rev: i64) -> LogRow {
        LogRow { deleted: true, value: Bytes::new(), ..put(rev, key, "", prev_rev) }
    }

    #[test]
    fn old_revisions_point_into_the_log() {
        let mut index = Index::new();
        index.apply(vec![put(1, "a", "1", 0)]);
        index.apply(vec![put(2, "a", "2", 1), put(2, "b", "x", 0)]);
        index.apply(vec![delete(3, "b", 2)]);
        let all = KeyRange::prefix("");
        let now = index.plan_range(&all, 3, 0);
        assert_eq!(now.count, 1);
        let then = index.plan_range(&all, 1, 0);
        assert_eq!(then.count, 1);
        assert!(matches!(then.slots[0], Slot::InLog(Retained { rev: 1, .. })));
        let limited = index.plan_range(&all, 2, 1);
        assert_eq!((limited.count, limited.more, limited.slots.len()), (2, true, 1));
    }

    #[test]
    fn compaction_keeps_the_newest_revision_below_the_point() {
        let mut index = Index::new();
        index.apply(vec![put(1, "a", "1", 0)]);
        index.apply(vec![put(2, "a", "2", 1)]);
        index.apply(vec![put(3, "b", "x", 0)]);
        index.apply(vec![delete(4, "b", 3)]);
        let obsolete = index.compact(4);
        let revs: Vec<i64> = obsolete.iter().map(|r| r.rev).collect();
        assert_eq!(revs, vec![1, 3, 4]);
        assert_eq!(index.plan_range(&KeyRange::prefix(""), 4, 0).count, 1);
        assert_eq!(index.live_count(), 1);
    }

    #[test]
    fn leases_follow_their_keys() {
        let mut index = Index::new();
        index.apply(vec![LogRow { lease: 7, ..put(1, "a", "1", 0) }]);
        assert_eq!(index.lease_keys(7), vec![Bytes::from_static(b"a")]);
        index.apply(vec![put(2, "a", "2", 1)]);
        assert!(index.lease_keys(7).is_empty());
    }

    #[test]
    fn empty_and_inverted_ranges_are_empty() {
        let mut index = Index::new();
        index.apply(vec![put(1, "a", "1", 0)]);
        assert_eq!(index.plan_range(&KeyRange::between("b", "a"), 1, 0).count, 0);
        assert_eq!(index.plan_range(&KeyRange::between("a", "a"), 1, 0).count, 0);
        assert_eq!(index.plan_range(&KeyRange::key("a"), 1, 0).count, 1);
    }
}
