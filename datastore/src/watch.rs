//! Watchers: each one reads the live event stream of its process and keeps what matches its range. One that
//! starts in the past, or falls so far behind that the live stream moved on, first re-reads what it missed from
//! the ring of recent events or from the SQL log, so no event is ever dropped or reordered.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::broadcast::{self, error::RecvError};

use crate::error::{Error, Result};
use crate::index::{EventBatch, LogRow};
use crate::store::Shared;
use crate::types::{Event, EventKind, KeyRange, KeyValue, WatchBatch, WatchRequest};

/// Revisions read from SQL per catch-up step.
const CATCH_UP_WINDOW: i64 = 1000;

pub struct Watcher {
    shared: Arc<Shared>,
    range: KeyRange,
    prev_kv: bool,
    /// The next revision to deliver.
    next_rev: i64,
    live: broadcast::Receiver<Arc<EventBatch>>,
    /// Revisions up to this one must come from the ring or SQL; the live stream starts after it.
    catch_up_to: i64,
}

impl Watcher {
    pub(crate) fn new(shared: Arc<Shared>, request: WatchRequest) -> Result<Self> {
        let index = shared.read();
        if request.start_revision != 0 && request.start_revision < index.compact_rev {
            return Err(Error::Compacted { requested: request.start_revision, compact_revision: index.compact_rev });
        }
        let next_rev = if request.start_revision == 0 { index.rev + 1 } else { request.start_revision };
        // Subscribing under the index lock: every batch applied after `catch_up_to` reaches `live`.
        let live = shared.events.subscribe();
        let catch_up_to = index.rev;
        drop(index);
        Ok(Self { shared, range: request.range, prev_kv: request.prev_kv, next_rev, live, catch_up_to })
    }

    /// Every event in the watched range at or below this revision has been delivered.
    pub fn revision(&self) -> i64 {
        self.next_rev - 1
    }

    /// The next events, waiting for them if needed. Cancel-safe: dropping the future loses nothing.
    pub async fn recv(&mut self) -> Result<WatchBatch> {
        loop {
            let events = self.step().await?;
            if !events.is_empty() {
                return Ok(WatchBatch { revision: self.revision(), events });
            }
        }
    }

    /// Every event up to and including `revision`, possibly none, waiting until this process has applied that
    /// revision; afterwards [`Watcher::revision`] is at least `revision`. This is how a caller knows the watcher
    /// is in sync (etcd's progress notifications). Not cancel-safe: dropping it drops the events gathered.
    pub async fn recv_through(&mut self, revision: i64) -> Result<Vec<Event>> {
        let mut events = Vec::new();
        while self.revision() < revision {
            events.extend(self.step().await?);
        }
        Ok(events)
    }

    /// One unit of progress: a window of catch-up, or one live batch. Cancel-safe, like `recv`.
    async fn step(&mut self) -> Result<Vec<Event>> {
        if self.next_rev <= self.catch_up_to {
            return self.catch_up_step().await;
        }
        match self.live.recv().await {
            Ok(batch) => {
                if batch.last_rev < self.next_rev {
                    return Ok(Vec::new());
                }
                let events = self.matching(std::slice::from_ref(&batch));
                self.next_rev = batch.last_rev + 1;
                Ok(events)
            }
            Err(RecvError::Lagged(_)) => {
                // Too slow for the live stream: resubscribe and re-read the gap.
                let index = self.shared.read();
                if self.next_rev < index.compact_rev {
                    return Err(Error::Compacted { requested: self.next_rev, compact_revision: index.compact_rev });
                }
                self.live = self.shared.events.subscribe();
                self.catch_up_to = index.rev;
                Ok(Vec::new())
            }
            Err(RecvError::Closed) => Err(Error::Closed),
        }
    }

    fn matching(&self, batches: &[Arc<EventBatch>]) -> Vec<Event> {
        batches
            .iter()
            .flat_map(|b| b.events.iter())
            .filter(|e| e.kv.mod_revision >= self.next_rev && e.kv.mod_revision <= self.catch_up_limit_or_max())
            .filter(|e| self.range.contains(&e.kv.key))
            .map(|e| if self.prev_kv { e.clone() } else { Event { prev_kv: None, ..e.clone() } })
            .collect()
    }

    fn catch_up_limit_or_max(&self) -> i64 {
        if self.next_rev <= self.catch_up_to {
            self.catch_up_to
        } else {
            i64::MAX
        }
    }

    /// Delivers part of the gap [next_rev, catch_up_to]: all of it from the ring if the ring reaches back that
    /// far, else one window from SQL.
    async fn catch_up_step(&mut self) -> Result<Vec<Event>> {
        let ring = {
            let index = self.shared.read();
            if self.next_rev < index.compact_rev {
                return Err(Error::Compacted { requested: self.next_rev, compact_revision: index.compact_rev });
            }
            index.ring_since(self.next_rev)
        };
        if let Some(batches) = ring {
            let events = self.matching(&batches);
            self.next_rev = self.catch_up_to + 1;
            return Ok(events);
        }
        let upto = self.catch_up_to.min(self.next_rev + CATCH_UP_WINDOW - 1);
        let rows = {
            let mut conn = self.shared.pool.acquire().await.map_err(self.shared.location.db_error("connecting"))?;
            self.shared.log_rows(&mut conn, self.next_rev - 1, upto).await?
        };
        let rows: Vec<LogRow> = rows.into_iter().filter(|r| self.range.contains(&r.key)).collect();
        let previous = if self.prev_kv { self.previous_values(&rows).await? } else { HashMap::new() };
        // A compaction while reading could have removed rows of the window: then the watch cannot be complete.
        if self.next_rev < self.shared.read().compact_rev {
            return Err(Error::Compacted {
                requested: self.next_rev,
                compact_revision: self.shared.read().compact_rev,
            });
        }
        let events = rows
            .into_iter()
            .map(|row| Event {
                kind: if row.deleted { EventKind::Delete } else { EventKind::Put },
                prev_kv: previous.get(&(row.prev_rev, row.key.clone())).cloned(),
                kv: Arc::new(row.key_value()),
            })
            .collect();
        self.next_rev = upto + 1;
        Ok(events)
    }

    async fn previous_values(&self, rows: &[LogRow]) -> Result<HashMap<(i64, bytes::Bytes), Arc<KeyValue>>> {
        let revisions: Vec<i64> = rows.iter().filter(|r| r.prev_rev != 0).map(|r| r.prev_rev).collect();
        if revisions.is_empty() {
            return Ok(HashMap::new());
        }
        let old = self.shared.log_rows_at(&revisions).await?;
        Ok(old.into_iter().filter(|r| !r.deleted).map(|r| ((r.rev, r.key.clone()), Arc::new(r.key_value()))).collect())
    }
}
