//! The store: opening, reads, and the requests that go to the writer.

use std::collections::HashMap;
use std::fs::File;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::TryStreamExt;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backend::{self, Dialect, Location, Sql, SyncMode};
use crate::batch::without_value;
use crate::error::{Error, Result};
use crate::index::{EventBatch, Index, Loading, LogRow, Retained, Slot};
use crate::types::{
    DeleteRangeRequest, DeleteRangeResponse, KeyValue, LeaseGrant, LeaseTimeToLive, PutRequest, PutResponse,
    RangeRequest, RangeResponse, Status, TxnOp, TxnOpResponse, TxnRequest, TxnResponse, WatchRequest,
};
use crate::watch::Watcher;
use crate::writer::{Reply, Work, WriteRequest, Writer};
use crate::{background, writer};

/// How to open a store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `sqlite://PATH`, `postgres://…` or `mysql://…`.
    pub url: String,
    pub sync: SyncMode,
    /// How often a process on a shared database looks for other processes' writes when no notification came.
    /// PostgreSQL notifies at once; MySQL has only this.
    pub poll_interval: Duration,
    /// How long to wait for another process to release an SQLite file before giving up: long enough for a
    /// restart under systemd or a shell loop, where the new process starts while the old one still drains.
    pub sqlite_lock_wait: Duration,
}

impl StoreConfig {
    pub fn new(url: impl Into<String>) -> Self {
        let url = url.into();
        let poll_interval = if url.starts_with("mysql") || url.starts_with("mariadb") {
            Duration::from_millis(50)
        } else {
            Duration::from_secs(1)
        };
        Self { url, sync: SyncMode::Full, poll_interval, sqlite_lock_wait: DEFAULT_SQLITE_LOCK_WAIT }
    }
}

/// See [`StoreConfig::sqlite_lock_wait`].
pub const DEFAULT_SQLITE_LOCK_WAIT: Duration = Duration::from_secs(30);

/// Shortest lease etcd grants; shorter requests get this.
const MIN_LEASE_TTL: i64 = 2;
/// Capacity of the live event channel, in batches; a watcher further behind re-reads from the ring or SQL.
/// Kept small because the channel pins its last batches (and their values) in memory whether or not anyone
/// still needs them; the ring, which is bounded in bytes, is what slow watchers fall back on.
const EVENT_CHANNEL_BATCHES: usize = 256;

/// State shared by the store handle, the writer, watchers and background tasks.
pub(crate) struct Shared {
    pub location: Location,
    pub sql: Sql,
    index: RwLock<Index>,
    pub events: broadcast::Sender<Arc<EventBatch>>,
    pub pool: AnyPool,
    /// Held while revisions are applied to the index, so the writer and the follower never apply twice.
    pub apply_lock: tokio::sync::Mutex<()>,
    pub leader: AtomicBool,
    /// PostgreSQL or MySQL: other processes may write.
    pub shared_database: bool,
}

impl Shared {
    pub fn read(&self) -> RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Applies committed rows to the index and hands them to watchers, atomically with respect to new watchers.
    pub fn apply(&self, rows: Vec<LogRow>) {
        let mut index = self.write();
        if let Some(batch) = index.apply(rows) {
            // No receiver is fine: nobody watches.
            let _ = self.events.send(batch);
        }
    }

    /// Reads and applies every revision in (index.rev, target] from SQL. The caller holds `apply_lock`.
    pub async fn catch_up(&self, conn: &mut AnyConnection, target: i64) -> Result<()> {
        loop {
            let from = self.read().rev;
            if from >= target {
                return Ok(());
            }
            let rows = self.log_rows(conn, from, target.min(from + 1000)).await?;
            if rows.is_empty() {
                return Ok(());
            }
            self.apply(rows);
        }
    }

    /// Log rows with revisions in (after, upto], in order.
    pub async fn log_rows(&self, conn: &mut AnyConnection, after: i64, upto: i64) -> Result<Vec<LogRow>> {
        let rows = sqlx::query(&self.sql.log_after())
            .bind(after)
            .bind(upto)
            .bind(i64::MAX)
            .fetch_all(conn)
            .await
            .map_err(self.location.db_error("reading the log"))?;
        rows.iter().map(|row| decode_log_row(row).map_err(self.location.db_error("decoding the log"))).collect()
    }

    /// Log rows at the given revisions (all rows of each revision).
    pub async fn log_rows_at(&self, revisions: &[i64]) -> Result<Vec<LogRow>> {
        let mut out = Vec::new();
        let mut revisions = revisions.to_vec();
        revisions.sort_unstable();
        revisions.dedup();
        for chunk in revisions.chunks(500) {
            let statement = self.sql.log_at_revisions(chunk.len());
            let mut query = sqlx::query(&statement);
            for rev in chunk {
                query = query.bind(*rev);
            }
            let rows = query.fetch_all(&self.pool).await.map_err(self.location.db_error("reading old values"))?;
            for row in &rows {
                out.push(decode_log_row(row).map_err(self.location.db_error("decoding the log"))?);
            }
        }
        Ok(out)
    }

    /// The committed revision and compaction point in the database.
    pub async fn database_revisions(&self, conn: &mut AnyConnection, lock: bool) -> Result<(i64, i64)> {
        let statement = if lock { self.sql.lock_revisions() } else { self.sql.read_revisions().to_string() };
        let rows =
            sqlx::query(&statement).fetch_all(conn).await.map_err(self.location.db_error("reading revisions"))?;
        let (mut rev, mut compact) = (0, 0);
        for row in rows {
            let name: String = row.try_get(0).map_err(self.location.db_error("reading revisions"))?;
            let number: i64 = row.try_get(1).map_err(self.location.db_error("reading revisions"))?;
            match name.as_str() {
                "rev" => rev = number,
                "compact_rev" => compact = number,
                _ => {}
            }
        }
        Ok((rev, compact))
    }

    /// Brings this process up to the database's committed revision (other processes' writes included).
    pub async fn sync_with_database(&self) -> Result<()> {
        let mut conn = self.pool.acquire().await.map_err(self.location.db_error("connecting"))?;
        let (rev, compact) = self.database_revisions(&mut conn, false).await?;
        if rev > self.read().rev || compact > self.read().compact_rev {
            let _applying = self.apply_lock.lock().await;
            self.catch_up(&mut conn, rev).await?;
            self.write().compact(compact);
        }
        Ok(())
    }
}

pub(crate) fn decode_log_row(row: &AnyRow) -> std::result::Result<LogRow, sqlx::Error> {
    Ok(LogRow {
        rev: row.try_get(0)?,
        sub: row.try_get(1)?,
        key: Bytes::from(row.try_get::<Vec<u8>, _>(2)?),
        deleted: row.try_get::<i64, _>(3)? != 0,
        create_rev: row.try_get(4)?,
        prev_rev: row.try_get(5)?,
        version: row.try_get(6)?,
        lease: row.try_get(7)?,
        value: Bytes::from(row.try_get::<Vec<u8>, _>(8)?),
    })
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// A revisioned key-value store on SQL with etcd's semantics. Cheap to clone; every clone is the same store.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
    writer: mpsc::Sender<WriteRequest>,
    handle: Arc<Handle>,
}

struct Handle {
    cancel: CancellationToken,
    tasks: TaskTracker,
    /// Keeps other processes off an SQLite file while this store is open; released by `close`.
    sqlite_lock: std::sync::Mutex<Option<File>>,
}

impl Store {
    /// Opens (and if needed creates) the store at `config.url`, loads its index and starts the writer and, on
    /// shared databases, the follower and leader tasks.
    pub async fn open(config: StoreConfig) -> Result<Self> {
        let location = Location::parse(&config.url)?;
        let lock = match &location.sqlite_path {
            Some(path) => Some(lock_sqlite_file(&location, path, config.sqlite_lock_wait).await?),
            None => None,
        };
        let mut conn = location.connect(config.sync).await?;
        backend::migrate(&mut conn, &location).await?;
        let pool_size = if location.dialect == Dialect::Sqlite { 2 } else { 4 };
        let pool = location.pool(config.sync, pool_size).await?;
        let sql = Sql::new(location.dialect);
        let (events, _) = broadcast::channel(EVENT_CHANNEL_BATCHES);
        let shared_database = location.dialect != Dialect::Sqlite;
        let shared = Arc::new(Shared {
            sql,
            index: RwLock::new(Index::new()),
            events,
            pool,
            apply_lock: tokio::sync::Mutex::new(()),
            leader: AtomicBool::new(!shared_database),
            shared_database,
            location,
        });
        let obsolete = load_index(&shared, &mut conn).await?;
        tracing::info!(
            store.location = %shared.location.display,
            store.rev = shared.read().rev,
            store.keys = shared.read().live_count(),
            "datastore open"
        );

        let cancel = CancellationToken::new();
        let tasks = TaskTracker::new();
        let (writer, requests) = mpsc::channel(writer::QUEUE_CAPACITY);
        let writer_task = Writer::new(shared.clone(), conn, config.sync, requests, obsolete);
        tasks.spawn(writer_task.run(cancel.clone()));
        tasks.spawn(background::expire_leases(shared.clone(), writer.clone(), cancel.clone()));
        if shared_database {
            tasks.spawn(background::follow(shared.clone(), config.url.clone(), config.poll_interval, cancel.clone()));
        }
        tasks.close();
        Ok(Self {
            shared,
            writer,
            handle: Arc::new(Handle { cancel, tasks, sqlite_lock: std::sync::Mutex::new(lock) }),
        })
    }

    /// Stops the background tasks and waits for them; requests still queued fail with [`Error::Closed`].
    pub async fn close(&self) {
        self.handle.cancel.cancel();
        self.handle.tasks.wait().await;
        self.shared.pool.close().await;
        self.handle.sqlite_lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
    }

    /// The newest revision this process has applied.
    pub fn revision(&self) -> i64 {
        self.shared.read().rev
    }

    pub fn is_leader(&self) -> bool {
        self.shared.leader.load(Ordering::Relaxed)
    }

    /// Reads a key or a range, at the current or an older revision. On a shared database the read first
    /// catches up with the database, so it sees every write acknowledged anywhere before it began, unless the
    /// request is `serializable`.
    pub async fn range(&self, request: RangeRequest) -> Result<RangeResponse> {
        if self.shared.shared_database && !request.serializable {
            self.shared.sync_with_database().await?;
        }
        let (plan, current) = {
            let index = self.shared.read();
            if request.revision > index.rev {
                return Err(Error::FutureRevision { requested: request.revision, current: index.rev });
            }
            if request.revision > 0 && request.revision < index.compact_rev {
                return Err(Error::Compacted { requested: request.revision, compact_revision: index.compact_rev });
            }
            let at = if request.revision > 0 { request.revision } else { index.rev };
            (index.plan_range(&request.range, at, request.limit), index.rev)
        };
        let mut response = RangeResponse {
            revision: current,
            kvs: Vec::new(),
            more: plan.more && !request.count_only,
            count: plan.count,
        };
        if request.count_only {
            return Ok(response);
        }
        let wanted: Vec<Retained> =
            plan.slots.iter().filter_map(|s| if let Slot::InLog(r) = s { Some(*r) } else { None }).collect();
        let mut found: HashMap<(i64, i64), Arc<KeyValue>> = HashMap::new();
        if !wanted.is_empty() {
            let revisions: Vec<i64> = wanted.iter().map(|r| r.rev).collect();
            for row in self.shared.log_rows_at(&revisions).await? {
                found.insert((row.rev, row.sub), Arc::new(row.key_value()));
            }
        }
        response.kvs.reserve(plan.slots.len());
        for slot in plan.slots {
            let kv = match slot {
                Slot::Ready(kv) => kv,
                Slot::InLog(position) => found
                    .remove(&(position.rev, i64::from(position.sub)))
                    .ok_or_else(|| self.compacted(request.revision))?,
            };
            response.kvs.push(if request.keys_only { without_value(&kv) } else { kv });
        }
        Ok(response)
    }

    fn compacted(&self, requested: i64) -> Error {
        Error::Compacted { requested, compact_revision: self.shared.read().compact_rev }
    }

    /// Runs a transaction: compares, then the success or failure ops, atomically at one new revision.
    pub async fn txn(&self, request: TxnRequest) -> Result<TxnResponse> {
        self.submit(Work::Txn(request), Reply::Txn).await
    }

    pub async fn put(&self, request: PutRequest) -> Result<PutResponse> {
        let response = self.txn(TxnRequest { success: vec![TxnOp::Put(request)], ..Default::default() }).await?;
        match response.responses.into_iter().next() {
            Some(TxnOpResponse::Put(put)) => Ok(put),
            _ => unreachable!("a one-put transaction answers with one put"),
        }
    }

    pub async fn delete_range(&self, request: DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        let response =
            self.txn(TxnRequest { success: vec![TxnOp::DeleteRange(request)], ..Default::default() }).await?;
        match response.responses.into_iter().next() {
            Some(TxnOpResponse::DeleteRange(delete)) => Ok(delete),
            _ => unreachable!("a one-delete transaction answers with one delete"),
        }
    }

    /// Grants a lease; `id` 0 picks one.
    pub async fn lease_grant(&self, id: i64, ttl: i64) -> Result<LeaseGrant> {
        if id < 0 {
            return Err(Error::InvalidArgument(format!("lease id {id} is negative")));
        }
        let id = if id == 0 { rand::random::<i64>() & i64::MAX } else { id };
        let ttl = ttl.max(MIN_LEASE_TTL);
        let ttl = self.submit(Work::Grant { id, ttl }, Reply::Number).await?;
        Ok(LeaseGrant { id, ttl })
    }

    /// Renews a lease for its full TTL; returns the TTL.
    pub async fn lease_keep_alive(&self, id: i64) -> Result<i64> {
        self.submit(Work::KeepAlive { id }, Reply::Number).await
    }

    /// Revokes a lease and deletes its keys; returns the revision after.
    pub async fn lease_revoke(&self, id: i64) -> Result<i64> {
        self.submit(Work::Revoke { id }, Reply::Number).await
    }

    pub async fn lease_time_to_live(&self, id: i64, with_keys: bool) -> Result<LeaseTimeToLive> {
        let row = sqlx::query(&self.shared.sql.get_lease())
            .bind(id)
            .fetch_optional(&self.shared.pool)
            .await
            .map_err(self.shared.location.db_error("reading a lease"))?
            .ok_or(Error::LeaseNotFound(id))?;
        let read = |i| row.try_get::<i64, _>(i).map_err(self.shared.location.db_error("reading a lease"));
        let (granted_ttl, expires_at_ms) = (read(1)?, read(2)?);
        let remaining_ms = (expires_at_ms - now_ms()).max(0);
        let keys = if with_keys {
            if self.shared.shared_database {
                self.shared.sync_with_database().await?;
            }
            self.shared.read().lease_keys(id)
        } else {
            Vec::new()
        };
        Ok(LeaseTimeToLive { id, ttl: (remaining_ms + 999) / 1000, granted_ttl, keys })
    }

    pub async fn leases(&self) -> Result<Vec<i64>> {
        let rows = sqlx::query(self.shared.sql.list_leases())
            .fetch_all(&self.shared.pool)
            .await
            .map_err(self.shared.location.db_error("listing leases"))?;
        rows.iter().map(|r| r.try_get(0).map_err(self.shared.location.db_error("listing leases"))).collect()
    }

    /// Discards history before `revision`: reads and watches below it fail with [`Error::Compacted`].
    pub async fn compact(&self, revision: i64) -> Result<()> {
        self.submit(Work::Compact { revision }, Reply::Unit).await
    }

    pub async fn status(&self) -> Result<Status> {
        let db_size: i64 = sqlx::query(self.shared.sql.db_size())
            .fetch_one(&self.shared.pool)
            .await
            .and_then(|row| row.try_get(0))
            .map_err(self.shared.location.db_error("measuring the database"))?;
        let index = self.shared.read();
        Ok(Status {
            revision: index.rev,
            compact_revision: index.compact_rev,
            db_size,
            leader: self.is_leader(),
            backend: match self.shared.location.dialect {
                Dialect::Sqlite => "sqlite",
                Dialect::Postgres => "postgres",
                Dialect::MySql => "mysql",
            },
        })
    }

    /// Starts a watch. Events come in revision order, from `start_revision` (or the next write) on, with none
    /// missing: a watcher that falls behind the live stream re-reads from memory or SQL instead of being dropped.
    pub async fn watch(&self, request: WatchRequest) -> Result<Watcher> {
        if self.shared.shared_database {
            self.shared.sync_with_database().await?;
        }
        Watcher::new(self.shared.clone(), request)
    }

    async fn submit<T>(&self, work: Work, reply: fn(oneshot::Sender<Result<T>>) -> Reply) -> Result<T> {
        let (sender, answer) = oneshot::channel();
        self.writer.send(WriteRequest { work, reply: reply(sender) }).await.map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)?
    }
}

/// Takes the exclusive lock on the `.lock` file beside an SQLite database. While another process holds it, waits
/// for up to `wait` (saying so once), polling, since a lock wait with a timeout is not portable.
async fn lock_sqlite_file(location: &Location, path: &std::path::Path, wait: Duration) -> Result<File> {
    const POLL: Duration = Duration::from_millis(50);
    let io_error = |source: std::io::Error| Error::Io { path: path.display().to_string(), source: source.into() };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io_error)?;
    }
    let lock_path = path.with_extension("lock");
    let file = File::options().create(true).truncate(false).write(true).open(&lock_path).map_err(io_error)?;
    let deadline = tokio::time::Instant::now() + wait;
    let mut said = false;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::Error(e)) => return Err(io_error(e)),
            Err(std::fs::TryLockError::WouldBlock) if tokio::time::Instant::now() >= deadline => {
                return Err(Error::InUse { location: location.display.clone(), waited: wait });
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                if !said {
                    tracing::info!(
                        store.location = %location.display,
                        "datastore is in use by another process; waiting up to {} s for it to close",
                        wait.as_secs()
                    );
                    said = true;
                }
                tokio::time::sleep(POLL).await;
            }
        }
    }
}

/// Builds the index from the log up to the database's revision, reading each row once with its value: cheaper
/// than a scan of the keys followed by lookups of the live values, and the history it also reads is short (the
/// controller compacts to five minutes). Returns the positions a past compaction left behind, for the writer to
/// delete.
async fn load_index(shared: &Shared, conn: &mut AnyConnection) -> Result<Vec<Retained>> {
    let (rev, compact_rev) = shared.database_revisions(conn, false).await?;
    let loading = read_log_range(shared, conn, 0, rev, (rev - compact_rev).clamp(0, LOAD_CAPACITY_HINT_MAX)).await?;
    let mut index = loading.finish();
    index.rev = rev;
    index.ring_start = rev + 1;
    let obsolete = index.compact(compact_rev);
    *shared.write() = index;
    Ok(obsolete)
}

/// Most rows room is made for before the log is read: every revision since the compaction point has at least one
/// row, so that many rows are expected, and reserving them at once spares the copies of a growing buffer (and the
/// freed buffers the allocator would keep).
const LOAD_CAPACITY_HINT_MAX: i64 = 4 << 20;

/// The log rows with revisions in (after, upto], in order, streamed into a [`Loading`].
async fn read_log_range(
    shared: &Shared,
    conn: &mut AnyConnection,
    after: i64,
    upto: i64,
    expected_rows: i64,
) -> Result<Loading> {
    let mut loading = Loading::with_capacity(expected_rows as usize);
    let statement = shared.sql.log_after();
    let mut rows = sqlx::query(&statement).bind(after).bind(upto).bind(i64::MAX).fetch(&mut *conn);
    while let Some(row) = rows.try_next().await.map_err(shared.location.db_error("loading the index"))? {
        loading.add(decode_log_row(&row).map_err(shared.location.db_error("loading the index"))?);
    }
    Ok(loading)
}
