//! Tasks that run beside the writer: following other processes' writes on a shared database, and (on the one
//! elected process) expiring leases.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::backend::Dialect;
use crate::error::Error;
use crate::store::{now_ms, Shared};
use crate::writer::{Reply, Work, WriteRequest};
use sqlx::Row;

/// How long a leader's claim lasts without renewal, and how often it is renewed.
const LEADER_TERM: Duration = Duration::from_secs(10);
const LEASE_CHECK_INTERVAL: Duration = Duration::from_millis(250);

/// Applies other processes' writes as soon as PostgreSQL notifies, and at `poll_interval` in any case (MySQL has
/// no notifications; on PostgreSQL the poll covers a listener that lost its connection).
pub(crate) async fn follow(shared: Arc<Shared>, url: String, poll_interval: Duration, cancel: CancellationToken) {
    let mut listener = None;
    let mut ticker = tokio::time::interval(poll_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if shared.location.dialect == Dialect::Postgres && listener.is_none() {
            listener = listen(&url).await;
        }
        let notified = async {
            match listener.as_mut() {
                Some(l) => l.recv().await.is_ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ticker.tick() => {}
            ok = notified => if !ok { listener = None; },
        }
        if let Err(error) = shared.sync_with_database().await {
            tracing::warn!(error = %error, "following the shared database failed; retrying");
        }
    }
}

async fn listen(url: &str) -> Option<PgListener> {
    let mut listener = PgListener::connect(url).await.ok()?;
    listener.listen("kaasd_log").await.ok()?;
    Some(listener)
}

/// Keeps (or competes for) leadership on a shared database, and on the leader revokes expired leases.
pub(crate) async fn expire_leases(shared: Arc<Shared>, writer: mpsc::Sender<WriteRequest>, cancel: CancellationToken) {
    let holder = format!("{:016x}", rand::random::<u64>());
    let mut ticker = tokio::time::interval(LEASE_CHECK_INTERVAL);
    let mut last_claim = None::<tokio::time::Instant>;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        if shared.shared_database && last_claim.is_none_or(|t| t.elapsed() >= LEADER_TERM / 4) {
            let leader = claim_leadership(&shared, &holder).await;
            if leader != shared.leader.swap(leader, Ordering::Relaxed) {
                tracing::info!(store.leader = leader, "datastore leadership changed");
            }
            last_claim = Some(tokio::time::Instant::now());
        }
        if !shared.leader.load(Ordering::Relaxed) {
            continue;
        }
        let expired = match sqlx::query(&shared.sql.expired_leases()).bind(now_ms()).fetch_all(&shared.pool).await {
            Ok(rows) => rows.iter().filter_map(|r| r.try_get::<i64, _>(0).ok()).collect::<Vec<_>>(),
            Err(error) => {
                tracing::warn!(error = %error, "reading expired leases failed");
                continue;
            }
        };
        for id in expired {
            let (sender, answer) = oneshot::channel();
            if writer.send(WriteRequest { work: Work::Revoke { id }, reply: Reply::Number(sender) }).await.is_err() {
                return;
            }
            match answer.await {
                Ok(Ok(_)) => tracing::debug!(lease.id = id, "lease expired"),
                Ok(Err(Error::LeaseNotFound(_))) | Err(_) => {}
                Ok(Err(error)) => tracing::warn!(lease.id = id, error = %error, "revoking an expired lease failed"),
            }
        }
    }
}

async fn claim_leadership(shared: &Shared, holder: &str) -> bool {
    let now = now_ms();
    let result = sqlx::query(&shared.sql.claim_leader())
        .bind(holder)
        .bind(now + LEADER_TERM.as_millis() as i64)
        .bind(holder)
        .bind(now)
        .execute(&shared.pool)
        .await;
    match result {
        Ok(done) => done.rows_affected() == 1,
        Err(error) => {
            tracing::warn!(error = %error, "claiming datastore leadership failed");
            false
        }
    }
}
