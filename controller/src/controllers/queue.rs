//! A work queue of object keys, as client-go's: a key waits at most once however often it is added, a key being
//! worked on is never handed to a second worker, and a key added while it is worked on is handed out again after
//! `done`. Controllers are level-triggered: a key says "look at this object again", never what changed.
//!
//! Keys are handed out first in, first out; a queue made `with_priority` hands out the key of highest priority
//! first, and first in, first out among equals (the scheduler's active queue, ordered as upstream's PrioritySort).

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

/// `namespace/name`, or `name` for cluster-scoped objects.
pub type Key = String;

pub fn key(namespace: Option<&str>, name: &str) -> Key {
    match namespace {
        Some(namespace) if !namespace.is_empty() => format!("{namespace}/{name}"),
        _ => name.to_string(),
    }
}

/// Splits a key into namespace (empty for cluster-scoped objects) and name.
pub fn split(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("", key))
}

/// A key in line: higher `priority` first, then lower `arrival`.
#[derive(PartialEq, Eq)]
struct InLine {
    priority: i32,
    arrival: u64,
    key: Key,
}

impl Ord for InLine {
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority.cmp(&other.priority).then_with(|| other.arrival.cmp(&self.arrival))
    }
}

impl PartialOrd for InLine {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[derive(Default)]
struct State {
    waiting: BinaryHeap<InLine>,
    /// Counts keys put in line, for first in, first out among equal priorities.
    arrivals: u64,
    /// Keys in `waiting`.
    queued: HashSet<Key>,
    /// Keys a worker holds.
    processing: HashSet<Key>,
    /// Keys added while a worker held them: queued again at `done`.
    again: HashSet<Key>,
    /// Consecutive failures per key, for back-off.
    failures: HashMap<Key, u32>,
}

/// A key's priority in the queue, looked up whenever the key is put in line.
type PriorityOf = Arc<dyn Fn(&str) -> i32 + Send + Sync>;

#[derive(Clone, Default)]
pub struct WorkQueue {
    state: Arc<Mutex<State>>,
    ready: Arc<Notify>,
    priority_of: Option<PriorityOf>,
}

impl WorkQueue {
    pub fn new() -> WorkQueue {
        WorkQueue::default()
    }

    /// A queue that hands out keys by `priority_of` (highest first), first in, first out among equals.
    /// `priority_of` must not add to this queue.
    pub fn with_priority(priority_of: impl Fn(&str) -> i32 + Send + Sync + 'static) -> WorkQueue {
        WorkQueue { priority_of: Some(Arc::new(priority_of)), ..WorkQueue::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn add(&self, key: Key) {
        // Looked up before taking the lock: the lookup may take locks of its own.
        let priority = self.priority_of.as_ref().map_or(0, |priority_of| priority_of(&key));
        let mut state = self.lock();
        if state.processing.contains(&key) {
            state.again.insert(key);
            return;
        }
        if state.queued.insert(key.clone()) {
            state.arrivals += 1;
            let arrival = state.arrivals;
            state.waiting.push(InLine { priority, arrival, key });
            drop(state);
            self.ready.notify_one();
        }
    }

    /// Adds `key` once `delay` has passed (a timer, e.g. for minReadySeconds or a progress deadline).
    pub fn add_after(&self, key: Key, delay: Duration) {
        let queue = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            queue.add(key);
        });
    }

    /// Adds `key` again after a back-off that doubles with each consecutive failure (5 ms … 60 s), as
    /// client-go's default controller rate limiter does, so a failing object never makes a hot loop.
    pub fn retry(&self, key: Key) {
        let failures = {
            let mut state = self.lock();
            let failures = state.failures.entry(key.clone()).or_insert(0);
            *failures = failures.saturating_add(1);
            *failures
        };
        let delay = Duration::from_millis(5u64.saturating_mul(1 << failures.min(14))).min(Duration::from_secs(60));
        self.add_after(key, delay);
    }

    /// Forgets `key`'s failures after it was handled successfully.
    pub fn forget(&self, key: &str) {
        self.lock().failures.remove(key);
    }

    /// The next key to work on; the caller must call `done` with it.
    pub async fn next(&self) -> Key {
        loop {
            let notified = self.ready.notified();
            {
                let mut state = self.lock();
                if let Some(InLine { key, .. }) = state.waiting.pop() {
                    state.queued.remove(&key);
                    state.processing.insert(key.clone());
                    // Another worker may be waiting too and another key be ready.
                    if !state.waiting.is_empty() {
                        self.ready.notify_one();
                    }
                    return key;
                }
            }
            notified.await;
        }
    }

    pub fn done(&self, key: &str) {
        let again = {
            let mut state = self.lock();
            state.processing.remove(key);
            state.again.remove(key)
        };
        if again {
            self.add(key.to_string());
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().waiting.len()
    }
}

/// Runs `workers` loops that take keys from `queue` and hand them to `reconcile`; a key whose reconcile fails is
/// retried with back-off.
pub async fn run_workers<F, Fut>(name: &'static str, queue: WorkQueue, workers: usize, reconcile: F)
where
    F: Fn(Key) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), super::ReconcileError>> + Send,
{
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let (queue, reconcile) = (queue.clone(), reconcile.clone());
        tasks.spawn(async move {
            loop {
                let key = queue.next().await;
                tracing::trace!(controller = name, key = %key, "reconcile");
                match reconcile(key.clone()).await {
                    Ok(()) => queue.forget(&key),
                    Err(error) => {
                        tracing::debug!(controller = name, key = %key, error = %error, "reconcile failed; retrying");
                        queue.retry(key.clone());
                    }
                }
                queue.done(&key);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_key_waits_once_and_is_never_held_twice() {
        let queue = WorkQueue::new();
        queue.add("a".into());
        queue.add("a".into());
        queue.add("b".into());
        assert_eq!(queue.len(), 2);
        let first = queue.next().await;
        assert_eq!(first, "a");
        // Added while held: not handed out until done.
        queue.add("a".into());
        assert_eq!(queue.next().await, "b");
        assert_eq!(queue.len(), 0);
        queue.done("a");
        assert_eq!(queue.next().await, "a");
    }

    #[tokio::test]
    async fn a_queue_with_priorities_hands_out_the_highest_first_and_equals_in_order() {
        let priorities: HashMap<&str, i32> = [("low", -5), ("high", 1000), ("high-later", 1000)].into();
        let queue = WorkQueue::with_priority(move |key| priorities.get(key).copied().unwrap_or(0));
        for key in ["plain", "low", "high", "plain-later", "high-later"] {
            queue.add(key.into());
        }
        let mut order = Vec::new();
        for _ in 0..5 {
            let key = queue.next().await;
            queue.done(&key);
            order.push(key);
        }
        assert_eq!(order, ["high", "high-later", "plain", "plain-later", "low"]);
    }

    #[test]
    fn keys_split_into_namespace_and_name() {
        assert_eq!(key(Some("default"), "web"), "default/web");
        assert_eq!(key(None, "node-1"), "node-1");
        assert_eq!(split("default/web"), ("default", "web"));
        assert_eq!(split("node-1"), ("", "node-1"));
    }
}
