//! The data model and the request/response shapes of the store, following etcd's v3 API.

use std::sync::Arc;

use bytes::Bytes;

/// One revision of one key, as etcd's `mvccpb.KeyValue`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Bytes,
    pub value: Bytes,
    /// Revision of the put that created this generation of the key.
    pub create_revision: i64,
    /// Revision of the last change to the key (for a delete event: the revision of the delete).
    pub mod_revision: i64,
    /// Number of puts since the key was (re)created; 0 for a deleted key.
    pub version: i64,
    /// Lease the key is attached to, 0 for none.
    pub lease: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// A change to one key. Delete events carry the key and the delete's revision in `kv`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub kv: Arc<KeyValue>,
    /// The key's value before this change, if it existed.
    pub prev_kv: Option<Arc<KeyValue>>,
}

/// A key range in etcd's form: `end` empty means the single key `start`; `end == [0]` means every key from `start`
/// on; otherwise the half-open interval `[start, end)`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyRange {
    pub start: Bytes,
    pub end: Bytes,
}

impl KeyRange {
    /// Exactly one key.
    pub fn key(key: impl Into<Bytes>) -> Self {
        Self { start: key.into(), end: Bytes::new() }
    }

    /// Every key that starts with `prefix` (every key at all for an empty prefix).
    pub fn prefix(prefix: impl Into<Bytes>) -> Self {
        let start: Bytes = prefix.into();
        let end = prefix_end(&start);
        Self { start, end }
    }

    /// The half-open interval `[start, end)`.
    pub fn between(start: impl Into<Bytes>, end: impl Into<Bytes>) -> Self {
        Self { start: start.into(), end: end.into() }
    }

    pub fn is_single_key(&self) -> bool {
        self.end.is_empty()
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        if self.end.is_empty() {
            return key == &self.start[..];
        }
        if key < &self.start[..] {
            return false;
        }
        self.end[..] == [0] || key < &self.end[..]
    }

    /// The upper bound as an inclusive-exclusive pair for `BTreeMap::range`; `None` means unbounded.
    pub(crate) fn end_bound(&self) -> Option<&[u8]> {
        if self.end.is_empty() || self.end[..] == [0] {
            None
        } else {
            Some(&self.end[..])
        }
    }
}

/// The smallest key greater than every key with this prefix, or `[0]` (no upper bound) if none exists.
pub fn prefix_end(prefix: &[u8]) -> Bytes {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Bytes::from(end);
        }
    }
    Bytes::from_static(&[0])
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeRequest {
    pub range: KeyRange,
    /// Read at this revision; 0 reads the current one.
    pub revision: i64,
    /// At most this many keys; 0 means no limit.
    pub limit: i64,
    pub keys_only: bool,
    pub count_only: bool,
    /// Answer from this process's state without first catching up with other processes on a shared database:
    /// faster, but it may miss writes acknowledged elsewhere a moment ago (etcd's serializable read).
    pub serializable: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeResponse {
    /// The store revision the read was served at.
    pub revision: i64,
    pub kvs: Vec<Arc<KeyValue>>,
    /// More keys in the range than `limit` allowed.
    pub more: bool,
    /// Number of keys in the range, regardless of `limit`.
    pub count: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutRequest {
    pub key: Bytes,
    pub value: Bytes,
    pub lease: i64,
    pub prev_kv: bool,
    /// Keep the current value; fails if the key does not exist.
    pub ignore_value: bool,
    /// Keep the current lease; fails if the key does not exist.
    pub ignore_lease: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutResponse {
    pub revision: i64,
    pub prev_kv: Option<Arc<KeyValue>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteRangeRequest {
    pub range: KeyRange,
    pub prev_kv: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteRangeResponse {
    pub revision: i64,
    pub deleted: i64,
    pub prev_kvs: Vec<Arc<KeyValue>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareResult {
    Equal,
    NotEqual,
    Greater,
    Less,
}

/// What a compare looks at, with the value it is compared to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompareTarget {
    Version(i64),
    CreateRevision(i64),
    ModRevision(i64),
    Value(Bytes),
    Lease(i64),
}

/// One condition of a transaction. A compare over a range holds when it holds for every key in the range.
/// A missing key counts as version, revisions and lease 0, except that a value compare on it fails (as in etcd).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compare {
    pub range: KeyRange,
    pub result: CompareResult,
    pub target: CompareTarget,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOp {
    Range(RangeRequest),
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    Txn(TxnRequest),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TxnRequest {
    pub compare: Vec<Compare>,
    pub success: Vec<TxnOp>,
    pub failure: Vec<TxnOp>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOpResponse {
    Range(RangeResponse),
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TxnResponse {
    /// The store revision after the transaction (its own revision if it wrote).
    pub revision: i64,
    pub succeeded: bool,
    pub responses: Vec<TxnOpResponse>,
}

/// What to watch and from where.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchRequest {
    pub range: KeyRange,
    /// First revision to deliver; 0 means "from the next write on".
    pub start_revision: i64,
    pub prev_kv: bool,
}

/// Events delivered together, all at revisions up to and including `revision`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchBatch {
    /// Every event of the watched range at or below this revision has been delivered.
    pub revision: i64,
    pub events: Vec<Event>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseGrant {
    pub id: i64,
    pub ttl: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseTimeToLive {
    pub id: i64,
    /// Seconds left before expiry.
    pub ttl: i64,
    pub granted_ttl: i64,
    pub keys: Vec<Bytes>,
}

/// A summary for health checks and `etcdctl endpoint status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub revision: i64,
    pub compact_revision: i64,
    /// Bytes the backend uses on disk for the store's tables.
    pub db_size: i64,
    /// This process runs lease expiry and physical compaction.
    pub leader: bool,
    pub backend: &'static str,
}
