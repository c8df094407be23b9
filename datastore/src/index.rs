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
        LogRow { key: self.key.clone(), value: self.value.clone(), ..*self }.into_key_value()
    }

    /// Like [`LogRow::key_value`], moving the key and value instead of sharing them: a shared `Bytes` costs an
    /// extra allocation per key, which adds up over every live key in memory.
    pub fn into_key_value(self) -> KeyValue {
        if self.deleted {
            KeyValue {
                key: self.key,
                value: Bytes::new(),
                create_revision: 0,
                mod_revision: self.rev,
                version: 0,
                lease: 0,
            }
        } else {
            KeyValue {
                key: self.key,
                value: self.value,
                create_revision: self.create_rev,
                mod_revision: self.rev,
                version: self.version,
                lease: self.lease,
            }
        }
    }
}

/// Where one retained revision of a key sits in the log. 16 bytes: one of these is kept per live key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Retained {
    pub rev: i64,
    /// Position inside its transaction; a transaction never holds more than `u32::MAX` changes.
    pub sub: u32,
    pub deleted: bool,
}

impl Retained {
    fn of(row: &LogRow) -> Self {
        Self { rev: row.rev, sub: u32::try_from(row.sub).unwrap_or(u32::MAX), deleted: row.deleted }
    }
}

/// One key in memory. Most keys have a single retained revision, so only older ones get an allocation of their
/// own; this struct is 32 bytes.
#[derive(Debug)]
struct KeyEntry {
    current: Option<Arc<KeyValue>>,
    /// The newest retained revision: the current state, or the tombstone that ended the key.
    latest: Retained,
    /// Older retained revisions (for reads at old revisions), oldest first. Boxed on purpose: the box is one
    /// pointer where a `Vec` is three, and most keys have none, so every entry stays at 32 bytes.
    #[allow(clippy::box_collection)]
    older: Option<Box<Vec<Retained>>>,
}

impl KeyEntry {
    fn new(latest: Retained) -> Self {
        Self { current: None, latest, older: None }
    }

    /// Records a newer revision of the key; the previous newest becomes history.
    fn push(&mut self, position: Retained) {
        self.older.get_or_insert_with(Default::default).push(self.latest);
        self.latest = position;
    }

    /// The newest retained revision at or below `at`.
    fn at(&self, at: i64) -> Option<Retained> {
        if self.latest.rev <= at {
            return Some(self.latest);
        }
        let older = self.older.as_deref()?;
        older.partition_point(|r| r.rev <= at).checked_sub(1).map(|i| older[i])
    }

    /// Drops the revisions a read at `compact_rev` or later cannot need into `obsolete`: everything below the
    /// newest revision at or below the point, and that one too if it is a tombstone. Returns whether anything
    /// of the key is left.
    fn compact(&mut self, compact_rev: i64, obsolete: &mut Vec<Retained>) -> bool {
        if self.older.is_none() {
            if self.latest.deleted && self.latest.rev <= compact_rev {
                obsolete.push(self.latest);
                return false;
            }
            return true;
        }
        let mut history: Vec<Retained> = self.older.take().map(|older| *older).unwrap_or_default();
        history.push(self.latest);
        let newer = history.partition_point(|r| r.rev <= compact_rev);
        let keep_from = match newer.checked_sub(1) {
            Some(i) if !history[i].deleted => i,
            _ => newer,
        };
        obsolete.extend(history.drain(..keep_from));
        let Some(latest) = history.pop() else { return false };
        self.latest = latest;
        if !history.is_empty() {
            self.older = Some(Box::new(history));
        }
        true
    }
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

/// The index under construction at start-up, fed the log's rows in (rev, sub) order with their values. Rows are
/// collected and sorted by key once at the end (stable, so each key's rows stay in revision order): cheaper than
/// hashing every row into a map, and the sorted keys build the tree in one pass with full nodes; inserting keys one
/// by one in revision order would leave its nodes about two thirds full.
#[derive(Default)]
pub(crate) struct Loading {
    rows: Vec<(Retained, KeyValue)>,
    rev: i64,
}

impl Loading {
    pub fn with_capacity(rows: usize) -> Self {
        Self { rows: Vec::with_capacity(rows), rev: 0 }
    }

    pub fn add(&mut self, row: LogRow) {
        self.rev = row.rev;
        self.rows.push((Retained::of(&row), row.into_key_value()));
    }

    /// The index at the revision of the last row. The newest row of each key decides its state.
    pub fn finish(self) -> Index {
        let mut rows = self.rows;
        rows.sort_by(|a, b| a.1.key.cmp(&b.1.key));
        let mut entries: Vec<(Bytes, KeyEntry)> = Vec::new();
        let mut lease_keys: HashMap<i64, BTreeSet<Bytes>> = HashMap::new();
        let mut rows = rows.into_iter().peekable();
        while let Some((first, kv)) = rows.next() {
            let mut entry = KeyEntry::new(first);
            let mut newest = kv;
            while let Some((position, kv)) = rows.next_if(|(_, next)| next.key == newest.key) {
                entry.push(position);
                newest = kv;
            }
            let key = newest.key.clone();
            if !entry.latest.deleted {
                if newest.lease != 0 {
                    lease_keys.entry(newest.lease).or_default().insert(key.clone());
                }
                entry.current = Some(Arc::new(newest));
            }
            entries.push((key, entry));
        }
        Index {
            rev: self.rev,
            ring_start: self.rev + 1,
            keys: entries.into_iter().collect(),
            lease_keys,
            ..Index::default()
        }
    }
}

impl Index {
    pub fn new() -> Self {
        Self { ring_start: 1, ..Self::default() }
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
                match entry.at(at) {
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
            let position = Retained::of(&row);
            let kind = if row.deleted { EventKind::Delete } else { EventKind::Put };
            let kv = Arc::new(row.into_key_value());
            value_bytes += kv.value.len() + kv.key.len();
            let current = (kind == EventKind::Put).then(|| kv.clone());
            let prev_kv = match self.keys.get_mut(&kv.key) {
                Some(entry) => {
                    entry.push(position);
                    std::mem::replace(&mut entry.current, current)
                }
                None => {
                    self.keys.insert(kv.key.clone(), KeyEntry { current, ..KeyEntry::new(position) });
                    None
                }
            };
            if let Some(prev) = &prev_kv {
                detach_lease(&mut self.lease_keys, prev.lease, &kv.key);
                // The ring keeps the previous value alive too (for a key written again and again, one that would
                // otherwise be freed), so it counts against the ring's bound like the new one. A value both the
                // new value of one event and the previous of the next counts twice: the bound stays an upper one.
                value_bytes += prev.value.len() + prev.key.len();
            }
            if kind == EventKind::Put && kv.lease != 0 {
                self.lease_keys.entry(kv.lease).or_default().insert(kv.key.clone());
            }
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
        self.keys.retain(|_, entry| entry.compact(compact_rev, &mut obsolete));
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

    #[test]
    fn loading_the_log_gives_the_index_applying_it_gave() {
        let log = vec![
            vec![LogRow { lease: 7, ..put(1, "a", "1", 0) }],
            vec![put(2, "a", "2", 1), LogRow { sub: 1, ..put(2, "b", "x", 0) }],
            vec![delete(3, "b", 2)],
            vec![put(4, "c", "y", 0)],
        ];
        let mut applied = Index::new();
        let mut loading = Loading::default();
        for rows in &log {
            applied.apply(rows.clone());
            rows.iter().cloned().for_each(|row| loading.add(row));
        }
        let loaded = loading.finish();
        let all = KeyRange::prefix("");
        for at in 1..=4 {
            let (a, b) = (applied.plan_range(&all, at, 0), loaded.plan_range(&all, at, 0));
            assert_eq!((a.count, a.more), (b.count, b.more), "at {at}");
        }
        assert_eq!(loaded.get(b"a").map(|kv| kv.value.clone()), Some(Bytes::from_static(b"2")));
        assert!(loaded.get(b"b").is_none());
        assert!(loaded.lease_keys(7).is_empty());
        assert_eq!((loaded.rev, loaded.ring_start, loaded.live_count()), (4, 5, 2));
    }

    #[test]
    fn a_key_entry_stays_small() {
        // One of these per key: growing it costs memory on every live object.
        assert_eq!(std::mem::size_of::<KeyEntry>(), 32);
        assert_eq!(std::mem::size_of::<Retained>(), 16);
    }
}
