//! The one writer of a process: it drains every queued request into one SQL transaction (group commit: one
//! fsync for many writes), then applies the result to the index and answers.
//!
//! On a shared database the transaction starts by locking the revision row; whatever other processes committed
//! before is read and applied first, so compares always run against the latest state, and revisions stay
//! gapless and in commit order across processes.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::{AnyConnection, Executor, Row};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::backend::{chunk_sizes, Dialect, SyncMode};
use crate::batch::{Batch, LeaseChange};
use crate::error::{Error, Result};
use crate::index::{LogRow, Retained};
use crate::store::{now_ms, Shared};
use crate::types::{TxnOp, TxnRequest, TxnResponse};

pub(crate) const QUEUE_CAPACITY: usize = 4096;
/// Most requests in one group commit.
const MAX_BATCH_REQUESTS: usize = 1024;
/// Most log rows per INSERT statement.
const MAX_ROWS_PER_INSERT: usize = 128;
/// Obsolete rows deleted per transaction while compacting, between write batches.
const DELETE_CHUNK: usize = 512;
/// After a commit at least this slow (a disk that takes a millisecond or more to sync), a batch of several
/// requests waits for more before it starts. Without that, clients answered together come back a moment after
/// the next commit began, wait for all of it, and split into groups that take turns: every commit then carries
/// only part of the clients, and throughput halves. Fast commits need no waiting: the clients come back within
/// the commit.
const GATHER_AFTER_COMMIT: Duration = Duration::from_micros(800);
/// The wait ends when no request arrived for this long (a little more than a client on loopback needs to send
/// its next request after its answer)…
const GATHER_QUIET: Duration = Duration::from_micros(250);
/// …or after this fraction of the last commit's time, whichever comes first.
const GATHER_MAX_FRACTION: u32 = 2;

/// One request to the writer: what to do and where to send the answer.
pub(crate) struct WriteRequest {
    pub work: Work,
    pub reply: Reply,
}

pub(crate) enum Work {
    Txn(TxnRequest),
    Grant { id: i64, ttl: i64 },
    KeepAlive { id: i64 },
    Revoke { id: i64 },
    Compact { revision: i64 },
}

pub(crate) enum Reply {
    Txn(oneshot::Sender<Result<TxnResponse>>),
    Number(oneshot::Sender<Result<i64>>),
    Unit(oneshot::Sender<Result<()>>),
}

enum Outcome {
    Txn(Result<TxnResponse>),
    Number(Result<i64>),
    Unit(Result<()>),
}

impl Reply {
    fn send(self, outcome: Outcome) {
        // A caller that gave up waiting is no error.
        let _ = match (self, outcome) {
            (Reply::Txn(reply), Outcome::Txn(result)) => reply.send(result).map_err(drop),
            (Reply::Number(reply), Outcome::Number(result)) => reply.send(result).map_err(drop),
            (Reply::Unit(reply), Outcome::Unit(result)) => reply.send(result).map_err(drop),
            _ => unreachable!("every work kind has its own outcome kind"),
        };
    }

    fn fail(self, error: Error) {
        let _ = match self {
            Reply::Txn(reply) => reply.send(Err(error)).map_err(drop),
            Reply::Number(reply) => reply.send(Err(error)).map_err(drop),
            Reply::Unit(reply) => reply.send(Err(error)).map_err(drop),
        };
    }
}

/// What one batch decided, ready to persist.
struct Decided {
    outcomes: Vec<Outcome>,
    rows: Vec<LogRow>,
    lease_changes: Vec<LeaseChange>,
    last_rev: i64,
    compact_rev: Option<i64>,
}

pub(crate) struct Writer {
    shared: Arc<Shared>,
    conn: Option<AnyConnection>,
    sync: SyncMode,
    requests: mpsc::Receiver<WriteRequest>,
    /// Rows compaction made obsolete, deleted a chunk at a time between batches.
    obsolete: VecDeque<Retained>,
    /// How long the last batch took to commit, and how many requests it carried.
    last_commit: Duration,
    last_batch: usize,
}

impl Writer {
    pub fn new(
        shared: Arc<Shared>,
        conn: AnyConnection,
        sync: SyncMode,
        requests: mpsc::Receiver<WriteRequest>,
        obsolete: Vec<Retained>,
    ) -> Self {
        Self {
            shared,
            conn: Some(conn),
            sync,
            requests,
            obsolete: obsolete.into(),
            last_commit: Duration::ZERO,
            last_batch: 0,
        }
    }

    pub async fn run(mut self, cancel: CancellationToken) {
        loop {
            let first = if self.obsolete.is_empty() {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    request = self.requests.recv() => request,
                }
            } else {
                match self.requests.try_recv() {
                    Ok(request) => Some(request),
                    Err(mpsc::error::TryRecvError::Empty) => {
                        self.delete_obsolete().await;
                        continue;
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) => None,
                }
            };
            let Some(first) = first else { break };
            let mut requests = vec![first];
            while requests.len() < MAX_BATCH_REQUESTS {
                match self.requests.try_recv() {
                    Ok(request) => requests.push(request),
                    Err(_) => break,
                }
            }
            self.gather(&mut requests).await;
            let started = Instant::now();
            self.last_batch = requests.len();
            self.commit(requests).await;
            self.last_commit = started.elapsed();
        }
        self.requests.close();
        while let Ok(request) = self.requests.try_recv() {
            request.reply.fail(Error::Closed);
        }
    }

    /// Waits for more requests when commits are slow and several clients are writing (see
    /// [`GATHER_AFTER_COMMIT`]). A lone client never waits: its batches hold one request. The wait polls the queue
    /// and yields to other tasks in between, because timers are too coarse for the sub-millisecond gaps involved.
    async fn gather(&mut self, requests: &mut Vec<WriteRequest>) {
        if self.last_commit < GATHER_AFTER_COMMIT || (self.last_batch <= 1 && requests.len() <= 1) {
            return;
        }
        let started = Instant::now();
        let limit = self.last_commit / GATHER_MAX_FRACTION;
        let mut last_arrival = started;
        while requests.len() < MAX_BATCH_REQUESTS {
            match self.requests.try_recv() {
                Ok(request) => {
                    requests.push(request);
                    last_arrival = Instant::now();
                }
                Err(mpsc::error::TryRecvError::Empty) => {
                    let now = Instant::now();
                    if now - last_arrival >= GATHER_QUIET || now - started >= limit {
                        return;
                    }
                    tokio::task::yield_now().await;
                }
                Err(mpsc::error::TryRecvError::Disconnected) => return,
            }
        }
    }

    async fn connection(&mut self) -> Result<&mut AnyConnection> {
        if self.conn.is_none() {
            self.conn = Some(self.shared.location.connect(self.sync).await?);
        }
        Ok(self.conn.as_mut().expect("connected above"))
    }

    async fn commit(&mut self, requests: Vec<WriteRequest>) {
        let shared = self.shared.clone();
        let _applying = shared.apply_lock.lock().await;
        let (work, replies): (Vec<Work>, Vec<Reply>) = requests.into_iter().map(|r| (r.work, r.reply)).unzip();
        match self.persist(&work).await {
            Ok(decided) => {
                shared.apply(decided.rows);
                if let Some(compact_rev) = decided.compact_rev {
                    let obsolete = shared.write().compact(compact_rev);
                    self.obsolete.extend(obsolete);
                }
                debug_assert_eq!(shared.read().rev, decided.last_rev);
                for (reply, outcome) in replies.into_iter().zip(decided.outcomes) {
                    reply.send(outcome);
                }
            }
            Err(error) => {
                tracing::warn!(error = %error, "write batch failed");
                if let Some(conn) = self.conn.as_mut() {
                    if conn.execute("ROLLBACK").await.is_err() {
                        // The connection is gone; the next batch opens a new one.
                        self.conn = None;
                    }
                }
                for reply in replies {
                    reply.fail(error.clone());
                }
            }
        }
    }

    /// Runs one SQL transaction for the batch and returns what it decided, durable.
    async fn persist(&mut self, work: &[Work]) -> Result<Decided> {
        let shared = self.shared.clone();
        let sql = shared.sql;
        let db_error = |context| shared.location.db_error(context);
        let conn = self.connection().await?;
        conn.execute(sql.begin()).await.map_err(db_error("beginning a write"))?;
        let (rev, compact_rev) = shared.database_revisions(conn, true).await?;
        if rev > shared.read().rev {
            shared.catch_up(conn, rev).await?;
        }
        if compact_rev > shared.read().compact_rev {
            shared.write().compact(compact_rev);
        }
        let leases = known_leases(&shared, conn, work).await?;
        let decided = decide(&shared, leases, work);
        for (start, size) in chunk_offsets(decided.rows.len(), MAX_ROWS_PER_INSERT) {
            let statement = sql.insert_log(size);
            let mut query = sqlx::query(&statement);
            for row in &decided.rows[start..start + size] {
                query = query
                    .bind(row.rev)
                    .bind(row.sub)
                    .bind(row.key.to_vec())
                    .bind(i64::from(row.deleted))
                    .bind(row.create_rev)
                    .bind(row.prev_rev)
                    .bind(row.version)
                    .bind(row.lease)
                    .bind(row.value.to_vec());
            }
            query.execute(&mut *conn).await.map_err(db_error("writing the log"))?;
        }
        for change in &decided.lease_changes {
            let query = match *change {
                LeaseChange::Insert { id, ttl, expires_at_ms } => {
                    sqlx::query(&sql.insert_lease()).bind(id).bind(ttl).bind(expires_at_ms).execute(&mut *conn).await
                }
                LeaseChange::Renew { id, expires_at_ms } => {
                    sqlx::query(&sql.renew_lease()).bind(expires_at_ms).bind(id).execute(&mut *conn).await
                }
                LeaseChange::Delete { id } => sqlx::query(&sql.delete_lease()).bind(id).execute(&mut *conn).await,
            };
            query.map_err(db_error("writing leases"))?;
        }
        if decided.last_rev > rev {
            sqlx::query(&sql.set_meta())
                .bind(decided.last_rev)
                .bind("rev")
                .execute(&mut *conn)
                .await
                .map_err(db_error("writing the revision"))?;
            if let Some(notify) = sql.notify() {
                sqlx::query(notify)
                    .bind(decided.last_rev.to_string())
                    .execute(&mut *conn)
                    .await
                    .map_err(db_error("notifying"))?;
            }
        }
        if let Some(compact_rev) = decided.compact_rev {
            sqlx::query(&sql.set_meta())
                .bind(compact_rev)
                .bind("compact_rev")
                .execute(&mut *conn)
                .await
                .map_err(db_error("writing the compaction point"))?;
        }
        conn.execute("COMMIT").await.map_err(db_error("committing"))?;
        Ok(decided)
    }

    /// Deletes one chunk of rows that compaction made obsolete, in a transaction of its own.
    async fn delete_obsolete(&mut self) {
        let chunk: Vec<Retained> = {
            let n = self.obsolete.len().min(DELETE_CHUNK);
            self.obsolete.drain(..n).collect()
        };
        let shared = self.shared.clone();
        let result: Result<()> = async {
            let conn = self.connection().await?;
            for (start, size) in chunk_offsets(chunk.len(), DELETE_CHUNK) {
                let statement = shared.sql.delete_log_rows(size);
                let mut query = sqlx::query(&statement);
                for row in &chunk[start..start + size] {
                    query = query.bind(row.rev).bind(i64::from(row.sub));
                }
                query.execute(&mut *conn).await.map_err(shared.location.db_error("deleting compacted rows"))?;
            }
            Ok(())
        }
        .await;
        if let Err(error) = result {
            tracing::warn!(error = %error, "deleting compacted rows failed; they stay until the next start");
            self.obsolete.clear();
            self.conn = None;
            return;
        }
        if self.obsolete.is_empty() && shared.location.dialect == Dialect::Sqlite {
            if let Ok(conn) = self.connection().await {
                // Give freed pages back and keep the WAL short; neither is needed for correctness.
                let _ = conn.execute("PRAGMA incremental_vacuum").await;
                let _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").await;
            }
        }
    }
}

/// Offsets and sizes of the chunks `chunk_sizes` cuts `n` rows into.
fn chunk_offsets(n: usize, max: usize) -> Vec<(usize, usize)> {
    let mut start = 0;
    chunk_sizes(n, max)
        .into_iter()
        .map(|size| {
            let chunk = (start, size);
            start += size;
            chunk
        })
        .collect()
}

/// The lease ids the batch mentions that exist in the database, with their TTLs.
async fn known_leases(shared: &Shared, conn: &mut AnyConnection, work: &[Work]) -> Result<HashMap<i64, i64>> {
    let mut ids = Vec::new();
    for item in work {
        match item {
            Work::Txn(txn) => collect_leases(txn, &mut ids),
            Work::Grant { id, .. } | Work::KeepAlive { id } | Work::Revoke { id } => ids.push(*id),
            Work::Compact { .. } => {}
        }
    }
    ids.sort_unstable();
    ids.dedup();
    let mut leases = HashMap::new();
    for chunk in ids.chunks(500) {
        let statement = shared.sql.leases_in(chunk.len());
        let mut query = sqlx::query(&statement);
        for id in chunk {
            query = query.bind(*id);
        }
        for row in query.fetch_all(&mut *conn).await.map_err(shared.location.db_error("reading leases"))? {
            let id: i64 = row.try_get(0).map_err(shared.location.db_error("reading leases"))?;
            let ttl: i64 = row.try_get(1).map_err(shared.location.db_error("reading leases"))?;
            leases.insert(id, ttl);
        }
    }
    Ok(leases)
}

fn collect_leases(txn: &TxnRequest, ids: &mut Vec<i64>) {
    for op in txn.success.iter().chain(&txn.failure) {
        match op {
            TxnOp::Put(put) if put.lease != 0 => ids.push(put.lease),
            TxnOp::Txn(nested) => collect_leases(nested, ids),
            _ => {}
        }
    }
}

/// Evaluates the work in order against the index (read-locked) plus the batch's own changes.
fn decide(shared: &Shared, leases: HashMap<i64, i64>, work: &[Work]) -> Decided {
    let index = shared.read();
    let mut batch = Batch::new(&index, leases);
    let now = now_ms();
    let outcomes = work
        .iter()
        .map(|item| match item {
            Work::Txn(txn) => Outcome::Txn(batch.txn(txn)),
            Work::Grant { id, ttl } => Outcome::Number(batch.grant_lease(*id, *ttl, now)),
            Work::KeepAlive { id } => Outcome::Number(batch.keep_alive(*id, now)),
            Work::Revoke { id } => Outcome::Number(batch.revoke_lease(*id)),
            Work::Compact { revision } => Outcome::Unit(batch.compact(*revision)),
        })
        .collect();
    Decided {
        outcomes,
        rows: std::mem::take(&mut batch.rows),
        lease_changes: std::mem::take(&mut batch.lease_changes),
        last_rev: batch.last_rev,
        compact_rev: batch.compact_rev,
    }
}
