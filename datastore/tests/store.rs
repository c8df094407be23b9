//! The store against real SQLite, PostgreSQL and MariaDB: etcd semantics, durability, watches, leases,
//! compaction, and several stores sharing one database.

mod common;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{Backend, TestDatabase};
use kaasd_datastore::*;
use rand::{Rng, SeedableRng};

async fn run<F, Fut>(backend: Backend, body: F)
where
    F: FnOnce(Arc<TestDatabase>) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(db) = TestDatabase::create(backend).await else { return };
    let db = Arc::new(db);
    body(db.clone()).await;
    if let Ok(db) = Arc::try_unwrap(db) {
        db.drop_database().await;
    }
}

macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod sqlite { $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::run(super::Backend::Sqlite, super::$name).await })* }
        mod postgres { $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::run(super::Backend::Postgres, super::$name).await })* }
        mod mysql { $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::run(super::Backend::MySql, super::$name).await })* }
    };
}

macro_rules! on_shared_backends {
    ($($name:ident),* $(,)?) => {
        mod shared_postgres { $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::run(super::Backend::Postgres, super::$name).await })* }
        mod shared_mysql { $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::run(super::Backend::MySql, super::$name).await })* }
    };
}

on_every_backend!(
    basic_reads_and_writes,
    transactions_follow_etcd,
    racing_compare_and_swap_loses_no_update,
    random_operations_match_a_model,
    watch_replays_history_and_follows_live_writes,
    a_slow_watcher_loses_nothing,
    compaction_hides_old_revisions,
    leases_expire_and_delete_their_keys,
    everything_survives_a_reopen,
    a_newer_schema_is_refused,
);
on_shared_backends!(two_stores_on_one_database_see_each_other);

fn put(key: &str, value: &str) -> PutRequest {
    PutRequest { key: b(key), value: b(value), ..Default::default() }
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

async fn get(store: &Store, key: &str) -> Option<Arc<KeyValue>> {
    let response = store.range(RangeRequest { range: KeyRange::key(b(key)), ..Default::default() }).await.unwrap();
    response.kvs.into_iter().next()
}

/// Adds one to a decimal counter with compare-and-swap, retrying on conflict; returns how many conflicts it met.
async fn increment(store: &Store, key: &str) -> u32 {
    let mut conflicts = 0;
    loop {
        let kv = get(store, key).await.unwrap();
        let n: u64 = std::str::from_utf8(&kv.value).unwrap().parse().unwrap();
        let swap = TxnRequest {
            compare: vec![mod_revision_is(key, kv.mod_revision)],
            success: vec![TxnOp::Put(put(key, &(n + 1).to_string()))],
            failure: vec![],
        };
        if store.txn(swap).await.unwrap().succeeded {
            return conflicts;
        }
        conflicts += 1;
    }
}

fn mod_revision_is(key: &str, rev: i64) -> Compare {
    Compare { range: KeyRange::key(b(key)), result: CompareResult::Equal, target: CompareTarget::ModRevision(rev) }
}

async fn basic_reads_and_writes(db: Arc<TestDatabase>) {
    let store = db.open().await;
    assert_eq!(store.revision(), 0);
    let first = store.put(put("/a/1", "one")).await.unwrap();
    assert_eq!(first.revision, 1);
    store.put(put("/a/2", "two")).await.unwrap();
    store.put(put("/b/1", "other")).await.unwrap();
    let again = store.put(PutRequest { prev_kv: true, ..put("/a/1", "uno") }).await.unwrap();
    assert_eq!(again.revision, 4);
    assert_eq!(again.prev_kv.unwrap().value, b("one"));

    let kv = get(&store, "/a/1").await.unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (1, 4, 2));
    // Binary keys and values, including NUL and 0xff, round-trip.
    let binary = PutRequest {
        key: Bytes::from_static(b"\x00\xff/k"),
        value: Bytes::from_static(b"\x00\x01\xfe"),
        ..Default::default()
    };
    store.put(binary.clone()).await.unwrap();
    let read =
        store.range(RangeRequest { range: KeyRange::key(binary.key.clone()), ..Default::default() }).await.unwrap();
    assert_eq!(read.kvs[0].value, binary.value);

    let prefix =
        store.range(RangeRequest { range: KeyRange::prefix(b("/a/")), limit: 1, ..Default::default() }).await.unwrap();
    assert_eq!((prefix.count, prefix.more, prefix.kvs.len(), prefix.revision), (2, true, 1, 5));
    let counted = store
        .range(RangeRequest { range: KeyRange::prefix(b("/")), count_only: true, ..Default::default() })
        .await
        .unwrap();
    assert_eq!((counted.count, counted.kvs.len()), (3, 0));
    let keys = store
        .range(RangeRequest { range: KeyRange::prefix(b("/a/")), keys_only: true, ..Default::default() })
        .await
        .unwrap();
    assert!(keys.kvs.iter().all(|kv| kv.value.is_empty()));

    // Reads at an old revision see the old value, served from the log.
    let old =
        store.range(RangeRequest { range: KeyRange::key(b("/a/1")), revision: 3, ..Default::default() }).await.unwrap();
    assert_eq!(old.kvs[0].value, b("one"));
    assert_eq!(old.revision, 5);
    let future =
        store.range(RangeRequest { range: KeyRange::key(b("/a/1")), revision: 99, ..Default::default() }).await;
    assert!(matches!(future, Err(Error::FutureRevision { requested: 99, current: 5 })));

    let deleted =
        store.delete_range(DeleteRangeRequest { range: KeyRange::prefix(b("/a/")), prev_kv: true }).await.unwrap();
    assert_eq!((deleted.deleted, deleted.prev_kvs.len(), deleted.revision), (2, 2, 6));
    assert!(get(&store, "/a/2").await.is_none());
    let nothing =
        store.delete_range(DeleteRangeRequest { range: KeyRange::key(b("/nope")), prev_kv: false }).await.unwrap();
    assert_eq!((nothing.deleted, nothing.revision), (0, 6), "deleting nothing takes no revision");
    // Re-creating a deleted key starts a new generation.
    store.put(put("/a/1", "again")).await.unwrap();
    let kv = get(&store, "/a/1").await.unwrap();
    assert_eq!((kv.create_revision, kv.version), (7, 1));
    store.close().await;
}

async fn transactions_follow_etcd(db: Arc<TestDatabase>) {
    let store = db.open().await;
    let create = |key: &str, value: &str| TxnRequest {
        compare: vec![mod_revision_is(key, 0)],
        success: vec![TxnOp::Put(put(key, value))],
        failure: vec![TxnOp::Range(RangeRequest { range: KeyRange::key(b(key)), ..Default::default() })],
    };
    let created = store.txn(create("k", "1")).await.unwrap();
    assert!(created.succeeded);
    assert_eq!(created.revision, 1);
    let conflict = store.txn(create("k", "2")).await.unwrap();
    assert!(!conflict.succeeded);
    match &conflict.responses[0] {
        TxnOpResponse::Range(range) => assert_eq!(range.kvs[0].value, b("1")),
        other => panic!("expected the failure branch's range, got {other:?}"),
    }
    // Several writes in one transaction share one revision.
    let multi = TxnRequest {
        success: vec![
            TxnOp::Put(put("x", "1")),
            TxnOp::Put(put("y", "1")),
            TxnOp::Txn(TxnRequest { success: vec![TxnOp::Put(put("z", "1"))], ..Default::default() }),
        ],
        ..Default::default()
    };
    assert_eq!(store.txn(multi).await.unwrap().revision, 2);
    for key in ["x", "y", "z"] {
        assert_eq!(get(&store, key).await.unwrap().mod_revision, 2);
    }
    let value_compare = TxnRequest {
        compare: vec![Compare {
            range: KeyRange::key(b("x")),
            result: CompareResult::Greater,
            target: CompareTarget::Value(b("0")),
        }],
        success: vec![TxnOp::DeleteRange(DeleteRangeRequest { range: KeyRange::key(b("x")), prev_kv: false })],
        ..Default::default()
    };
    assert!(store.txn(value_compare.clone()).await.unwrap().succeeded);
    // A value compare on a missing key fails, as in etcd.
    assert!(!store.txn(value_compare).await.unwrap().succeeded);
    let duplicate =
        TxnRequest { success: vec![TxnOp::Put(put("d", "1")), TxnOp::Put(put("d", "2"))], ..Default::default() };
    assert!(matches!(store.txn(duplicate).await, Err(Error::DuplicateKey(_))));
    let ignore_missing = PutRequest { ignore_value: true, ..put("missing", "") };
    assert!(matches!(store.put(ignore_missing).await, Err(Error::KeyNotFound(_))));
    let unknown_lease = PutRequest { lease: 12345, ..put("leased", "v") };
    assert!(matches!(store.put(unknown_lease).await, Err(Error::LeaseNotFound(12345))));
    assert_eq!(store.revision(), 3, "failed requests take no revision");
    store.close().await;
}

async fn racing_compare_and_swap_loses_no_update(db: Arc<TestDatabase>) {
    let store = db.open().await;
    store.put(put("counter", "0")).await.unwrap();
    let (workers, increments) = (16, 25);
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0;
            for _ in 0..increments {
                conflicts += increment(&store, "counter").await;
            }
            conflicts
        }));
    }
    let mut conflicts = 0;
    for task in tasks {
        conflicts += task.await.unwrap();
    }
    let kv = get(&store, "counter").await.unwrap();
    assert_eq!(kv.value, b(&(workers * increments).to_string()), "{conflicts} conflicts along the way");
    assert_eq!(kv.version, (workers * increments) as i64 + 1);
    store.close().await;
}

/// The reference: every revision's full state, so any read at any revision can be checked.
#[derive(Default)]
struct Model {
    states: Vec<BTreeMap<Bytes, KeyValue>>,
}

impl Model {
    fn current(&self) -> BTreeMap<Bytes, KeyValue> {
        self.states.last().cloned().unwrap_or_default()
    }
}

async fn random_operations_match_a_model(db: Arc<TestDatabase>) {
    let store = db.open().await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x6b616173);
    let mut model = Model { states: vec![BTreeMap::new()] };
    let keys: Vec<Bytes> = (0..24).map(|i| Bytes::from(format!("/k/{i:02}"))).collect();
    let operations = if db.backend == Backend::Sqlite { 600 } else { 300 };
    for step in 0..operations {
        let mut state = model.current();
        let rev = model.states.len() as i64;
        let key = keys[rng.random_range(0..keys.len())].clone();
        match rng.random_range(0..10) {
            0..=5 => {
                let value = Bytes::from(format!("v{step}"));
                let response = store
                    .put(PutRequest { key: key.clone(), value: value.clone(), ..Default::default() })
                    .await
                    .unwrap();
                assert_eq!(response.revision, rev, "revisions are gapless");
                let previous = state.get(&key).cloned();
                state.insert(
                    key.clone(),
                    KeyValue {
                        key,
                        value,
                        create_revision: previous.as_ref().map_or(rev, |p| p.create_revision),
                        mod_revision: rev,
                        version: previous.map_or(1, |p| p.version + 1),
                        lease: 0,
                    },
                );
                model.states.push(state);
            }
            6..=7 => {
                let start = rng.random_range(0..keys.len());
                let end = (start + rng.random_range(1..4)).min(keys.len() - 1);
                let range = KeyRange::between(keys[start].clone(), keys[end].clone());
                let response =
                    store.delete_range(DeleteRangeRequest { range: range.clone(), prev_kv: false }).await.unwrap();
                let doomed: Vec<Bytes> = state.keys().filter(|k| range.contains(k)).cloned().collect();
                assert_eq!(response.deleted, doomed.len() as i64);
                if !doomed.is_empty() {
                    assert_eq!(response.revision, rev);
                    doomed.iter().for_each(|k| drop(state.remove(k)));
                    model.states.push(state);
                }
            }
            _ => {
                // A consistent paged read at a pinned old revision.
                let at = rng.random_range(1..=rev.max(1)).min(rev - 1).max(0);
                if at == 0 {
                    continue;
                }
                let expected: Vec<KeyValue> = model.states[at as usize].values().cloned().collect();
                let mut seen = Vec::new();
                let mut start = Bytes::from_static(b"/k/");
                loop {
                    let page = store
                        .range(RangeRequest {
                            range: KeyRange::between(start.clone(), Bytes::from_static(b"/k0")),
                            revision: at,
                            limit: 5,
                            ..Default::default()
                        })
                        .await
                        .unwrap();
                    assert_eq!(
                        page.count as usize,
                        expected.len() - seen.len(),
                        "count is the rest of the range at rev {at}"
                    );
                    seen.extend(page.kvs.iter().map(|kv| (**kv).clone()));
                    if !page.more {
                        break;
                    }
                    let mut next = page.kvs.last().unwrap().key.to_vec();
                    next.push(0);
                    start = Bytes::from(next);
                }
                assert_eq!(seen, expected, "paged read at revision {at}");
            }
        }
    }
    let all = store.range(RangeRequest { range: KeyRange::prefix(b("/k/")), ..Default::default() }).await.unwrap();
    let expected: Vec<KeyValue> = model.current().into_values().collect();
    assert_eq!(all.kvs.iter().map(|kv| (**kv).clone()).collect::<Vec<_>>(), expected);
    assert_eq!(store.revision() as usize, model.states.len() - 1);
    // The same history must come back in order from a watch starting at revision 1.
    let mut watcher = store
        .watch(WatchRequest { range: KeyRange::prefix(b("/k/")), start_revision: 1, prev_kv: true })
        .await
        .unwrap();
    let mut last = 0;
    let mut events = 0;
    while last < store.revision() {
        let batch = watcher.recv().await.unwrap();
        for event in batch.events {
            assert!(event.kv.mod_revision >= last, "events in revision order");
            last = event.kv.mod_revision;
            events += 1;
        }
    }
    assert!(events >= model.states.len() - 1);
    store.close().await;
}

async fn collect_events(watcher: &mut Watcher, count: usize) -> Vec<Event> {
    let mut events = Vec::new();
    while events.len() < count {
        let batch = tokio::time::timeout(Duration::from_secs(20), watcher.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out after {} of {count} events", events.len()))
            .unwrap();
        events.extend(batch.events);
    }
    events
}

async fn watch_replays_history_and_follows_live_writes(db: Arc<TestDatabase>) {
    let store = db.open().await;
    for i in 0..50 {
        store.put(put(&format!("/w/{}", i % 5), &i.to_string())).await.unwrap();
        store.put(put("/other", &i.to_string())).await.unwrap();
    }
    let mut watcher = store
        .watch(WatchRequest { range: KeyRange::prefix(b("/w/")), start_revision: 11, prev_kv: true })
        .await
        .unwrap();
    let mut live =
        store.watch(WatchRequest { range: KeyRange::key(b("/w/0")), start_revision: 0, prev_kv: false }).await.unwrap();
    store.delete_range(DeleteRangeRequest { range: KeyRange::key(b("/w/0")), prev_kv: false }).await.unwrap();
    let events = collect_events(&mut watcher, 46).await;
    let revisions: Vec<i64> = events.iter().map(|e| e.kv.mod_revision).collect();
    let expected: Vec<i64> = (11..=99).step_by(2).chain([101]).collect();
    assert_eq!(revisions, expected);
    let first = &events[0];
    assert_eq!(first.kind, EventKind::Put);
    assert_eq!(first.prev_kv.as_ref().unwrap().value, b("0"), "prev_kv of a replayed event");
    let delete = events.last().unwrap();
    assert_eq!(delete.kind, EventKind::Delete);
    assert_eq!(delete.prev_kv.as_ref().unwrap().value, b("45"));
    let live_events = collect_events(&mut live, 1).await;
    assert_eq!((live_events[0].kind, live_events[0].kv.mod_revision), (EventKind::Delete, 101));
    assert!(live_events[0].prev_kv.is_none(), "prev_kv only when asked");
    assert_eq!(live.revision(), 101);
    // Writes elsewhere move a watcher's revision on without events: that is how it reports being in sync.
    let elsewhere = store.put(put("/other", "x")).await.unwrap();
    assert!(live.recv_through(elsewhere.revision).await.unwrap().is_empty());
    assert_eq!(live.revision(), elsewhere.revision);
    let mine = store.put(put("/w/0", "y")).await.unwrap();
    let through = live.recv_through(mine.revision).await.unwrap();
    assert_eq!(through.iter().map(|e| e.kv.mod_revision).collect::<Vec<_>>(), vec![mine.revision]);
    store.close().await;
}

async fn a_slow_watcher_loses_nothing(db: Arc<TestDatabase>) {
    let store = db.open().await;
    let mut watcher = store
        .watch(WatchRequest { range: KeyRange::prefix(b("/s/")), start_revision: 0, prev_kv: false })
        .await
        .unwrap();
    // More sequential batches than the live channel holds, while the watcher reads nothing.
    let writes = if db.backend == Backend::Sqlite { 5000 } else { 4500 };
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in (worker..writes).step_by(8) {
                store.put(put(&format!("/s/{}", i % 100), &i.to_string())).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let events = collect_events(&mut watcher, writes).await;
    let revisions: Vec<i64> = events.iter().map(|e| e.kv.mod_revision).collect();
    assert_eq!(revisions, (1..=writes as i64).collect::<Vec<_>>(), "every event once, in order");
    store.close().await;
}

async fn compaction_hides_old_revisions(db: Arc<TestDatabase>) {
    let store = db.open().await;
    for i in 0..20 {
        store.put(put("/c/a", &i.to_string())).await.unwrap();
    }
    store.put(put("/c/b", "x")).await.unwrap();
    store.delete_range(DeleteRangeRequest { range: KeyRange::key(b("/c/b")), prev_kv: false }).await.unwrap();
    store.compact(15).await.unwrap();
    let below = store.range(RangeRequest { range: KeyRange::key(b("/c/a")), revision: 10, ..Default::default() }).await;
    assert!(matches!(below, Err(Error::Compacted { requested: 10, compact_revision: 15 })));
    let at = store
        .range(RangeRequest { range: KeyRange::key(b("/c/a")), revision: 15, ..Default::default() })
        .await
        .unwrap();
    assert_eq!(at.kvs[0].value, b("14"));
    let watch =
        store.watch(WatchRequest { range: KeyRange::prefix(b("/c/")), start_revision: 3, prev_kv: false }).await;
    assert!(matches!(watch, Err(Error::Compacted { .. })));
    assert!(matches!(store.compact(15).await, Err(Error::Compacted { .. })));
    assert!(matches!(store.compact(99).await, Err(Error::FutureRevision { .. })));
    store.compact(22).await.unwrap();
    // Give the writer a moment to delete the obsolete rows, then check they are gone for good after a reopen.
    tokio::time::sleep(Duration::from_millis(300)).await;
    store.close().await;
    let store = db.open().await;
    assert_eq!(store.status().await.unwrap().compact_revision, 22);
    assert_eq!(get(&store, "/c/a").await.unwrap().value, b("19"));
    assert!(get(&store, "/c/b").await.is_none());
    let mut watcher = store
        .watch(WatchRequest { range: KeyRange::prefix(b("/c/")), start_revision: 22, prev_kv: false })
        .await
        .unwrap();
    store.put(put("/c/a", "after")).await.unwrap();
    let events = collect_events(&mut watcher, 1).await;
    assert_eq!(events[0].kv.mod_revision, 23);
    store.close().await;
}

async fn leases_expire_and_delete_their_keys(db: Arc<TestDatabase>) {
    let store = db.open().await;
    let short = store.lease_grant(0, 2).await.unwrap();
    let long = store.lease_grant(777, 60).await.unwrap();
    assert_eq!(long.id, 777);
    assert!(matches!(store.lease_grant(777, 60).await, Err(Error::LeaseExists(777))));
    store.put(PutRequest { lease: short.id, ..put("/l/short", "1") }).await.unwrap();
    store.put(PutRequest { lease: long.id, ..put("/l/long", "1") }).await.unwrap();
    let ttl = store.lease_time_to_live(short.id, true).await.unwrap();
    assert_eq!((ttl.granted_ttl, ttl.keys), (2, vec![b("/l/short")]));
    assert!(store.leases().await.unwrap().contains(&777));
    let mut watcher = store
        .watch(WatchRequest { range: KeyRange::prefix(b("/l/")), start_revision: 0, prev_kv: true })
        .await
        .unwrap();
    // Keep-alive pushes expiry out; then it lapses on its own.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(store.lease_keep_alive(short.id).await.unwrap(), 2);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(get(&store, "/l/short").await.is_some(), "the keep-alive extended the lease");
    let events = collect_events(&mut watcher, 1).await;
    assert_eq!(events[0].kind, EventKind::Delete);
    assert_eq!(events[0].kv.key, b("/l/short"));
    assert_eq!(events[0].prev_kv.as_ref().unwrap().lease, short.id);
    assert!(get(&store, "/l/short").await.is_none());
    assert!(matches!(store.lease_time_to_live(short.id, false).await, Err(Error::LeaseNotFound(_))));
    let revision = store.lease_revoke(long.id).await.unwrap();
    assert_eq!(revision, store.revision());
    assert!(get(&store, "/l/long").await.is_none());
    assert!(matches!(store.lease_keep_alive(long.id).await, Err(Error::LeaseNotFound(_))));
    store.close().await;
}

async fn everything_survives_a_reopen(db: Arc<TestDatabase>) {
    let store = db.open().await;
    for i in 0..100 {
        store.put(put(&format!("/r/{}", i % 10), &i.to_string())).await.unwrap();
    }
    store.delete_range(DeleteRangeRequest { range: KeyRange::key(b("/r/3")), prev_kv: false }).await.unwrap();
    let lease = store.lease_grant(0, 100).await.unwrap();
    store.put(PutRequest { lease: lease.id, ..put("/r/leased", "x") }).await.unwrap();
    let before = store.range(RangeRequest { range: KeyRange::prefix(b("/r/")), ..Default::default() }).await.unwrap();
    store.close().await;

    let store = db.open().await;
    assert_eq!(store.revision(), 102);
    let after = store.range(RangeRequest { range: KeyRange::prefix(b("/r/")), ..Default::default() }).await.unwrap();
    assert_eq!(after, before);
    let old = store
        .range(RangeRequest { range: KeyRange::key(b("/r/3")), revision: 50, ..Default::default() })
        .await
        .unwrap();
    assert_eq!(old.kvs[0].value, b("43"));
    assert_eq!(store.lease_time_to_live(lease.id, true).await.unwrap().keys, vec![b("/r/leased")]);
    assert_eq!(store.put(put("/r/new", "y")).await.unwrap().revision, 103);
    store.close().await;
}

async fn a_newer_schema_is_refused(db: Arc<TestDatabase>) {
    let store = db.open().await;
    store.close().await;
    drop(store);
    db.execute("UPDATE kaasd_meta SET number = 99 WHERE name = 'schema'").await;
    let error = Store::open(db.config()).await.err().expect("a newer schema must be refused");
    assert!(matches!(error, Error::SchemaTooNew { found: 99, .. }), "{error}");
    assert!(error.to_string().contains("upgrade kaasd"), "{error}");
}

async fn two_stores_on_one_database_see_each_other(db: Arc<TestDatabase>) {
    let first = db.open().await;
    let second = db.open().await;
    let mut watch_first = first
        .watch(WatchRequest { range: KeyRange::prefix(b("/m/")), start_revision: 0, prev_kv: true })
        .await
        .unwrap();
    let mut watch_second = second
        .watch(WatchRequest { range: KeyRange::prefix(b("/m/")), start_revision: 0, prev_kv: true })
        .await
        .unwrap();
    let per_store = 200;
    let writer = |store: Store, name: &'static str| {
        tokio::spawn(async move {
            for i in 0..per_store {
                store.put(put(&format!("/m/{name}/{}", i % 7), &i.to_string())).await.unwrap();
            }
        })
    };
    let (a, b_task) = (writer(first.clone(), "a"), writer(second.clone(), "b"));
    a.await.unwrap();
    b_task.await.unwrap();
    let total = 2 * per_store;
    for watcher in [&mut watch_first, &mut watch_second] {
        let events = collect_events(watcher, total).await;
        let revisions: Vec<i64> = events.iter().map(|e| e.kv.mod_revision).collect();
        assert_eq!(revisions, (1..=total as i64).collect::<Vec<_>>(), "gapless and in order on both stores");
    }
    // A write acknowledged by one store is visible to a read on the other at once.
    let written = first.put(put("/m/fresh", "1")).await.unwrap();
    let read = second.range(RangeRequest { range: KeyRange::key(b("/m/fresh")), ..Default::default() }).await.unwrap();
    assert_eq!(read.kvs[0].mod_revision, written.revision);
    // A serializable read answers from the store's own state, which the follower brings up to date soon after.
    second.put(put("/m/fresh2", "1")).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let local = RangeRequest { range: KeyRange::key(b("/m/fresh2")), serializable: true, ..Default::default() };
        if first.range(local).await.unwrap().count == 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "a serializable read never saw the other store's write");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Compare-and-swap across the two stores loses no update.
    first.put(put("/m/counter", "0")).await.unwrap();
    let mut tasks = Vec::new();
    for store in [first.clone(), second.clone(), first.clone(), second.clone()] {
        tasks.push(tokio::spawn(async move {
            for _ in 0..20 {
                increment(&store, "/m/counter").await;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(get(&second, "/m/counter").await.unwrap().value, b("80"));
    assert!(first.is_leader() as u8 + second.is_leader() as u8 <= 1, "at most one leader");
    first.close().await;
    second.close().await;
}

#[tokio::test]
async fn bad_urls_and_unreachable_servers_fail_with_one_clear_error() {
    let unknown = Store::open(StoreConfig::new("etcd://127.0.0.1:2379")).await.err().unwrap();
    assert!(unknown.to_string().contains("unsupported datastore url"), "{unknown}");
    let unreachable = Store::open(StoreConfig::new("postgres://postgres@127.0.0.1:1/kaasd")).await.err().unwrap();
    assert!(matches!(unreachable, Error::Open { .. }), "{unreachable}");
    assert!(unreachable.to_string().contains("127.0.0.1:1"), "{unreachable}");
}

#[tokio::test]
async fn an_sqlite_file_serves_one_process_at_a_time() {
    let db = TestDatabase::create(Backend::Sqlite).await.unwrap();
    let store = db.open().await;
    let mut config = db.config();
    config.sqlite_lock_wait = Duration::from_millis(300);
    let second = Store::open(config.clone()).await.err().unwrap();
    assert!(matches!(second, Error::InUse { .. }), "{second}");
    assert!(second.to_string().contains("after waiting 0 s"), "{second}");

    // A second opener waits for the first to close instead of failing at once.
    config.sqlite_lock_wait = Duration::from_secs(30);
    let waiting = tokio::spawn(Store::open(config));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "the second open must wait while the file is locked");
    store.close().await;
    let second = waiting.await.unwrap().expect("the second open succeeds once the first store is closed");
    second.close().await;
}
