//! Events for what controllers and the scheduler do, as core/v1 Events (what `kubectl describe` and
//! `kubectl get events` list). Repeats of one reason and message for one object within ten minutes update the
//! first Event's count and lastTimestamp instead of writing a new one, as client-go's event correlator does, so
//! a pod that cannot be scheduled does not fill the datastore.
//!
//! Events are written behind the work they describe, as client-go's broadcaster does: each recorder queues them
//! (up to `QUEUED_EVENTS`, dropping what comes beyond, with a warning) and writes a few at a time. A burst of
//! thousands of pods scheduled or created then costs the API server its bindings and creates first, and the Events
//! trail them, instead of every Event competing with them for the same writes.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Resource;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const SERIES_WINDOW: Duration = Duration::from_secs(600);
const PRUNE_EVERY: Duration = Duration::from_secs(10);
/// Events a recorder holds before it drops new ones (client-go's broadcaster queues 1,000 too).
const QUEUED_EVENTS: usize = 1000;
/// Event writes a recorder has in flight at once.
const WRITES_IN_FLIGHT: usize = 4;

/// Different messages for one object and reason within the window before further ones are combined into one
/// Event, as client-go's EventAggregator (`maxEvents` 10, `maxIntervalInSeconds` 600).
const SIMILAR_MESSAGES: usize = 10;
/// What a combined Event's message starts with (upstream's text).
const COMBINED: &str = "(combined from similar events): ";

/// (object uid, reason, message).
type SeriesKey = (String, String, String);
/// (object uid, reason) → (the hashes of the different messages seen, when the last one was seen).
type Similar = HashMap<(String, String), (HashSet<u64>, Instant)>;
/// (event namespace, event name, count, first seen).
type Series = (String, String, i32, Instant);

#[derive(Clone)]
pub struct Recorder {
    queue: mpsc::Sender<Pending>,
    dropped: Arc<AtomicU64>,
    component: &'static str,
}

/// An Event waiting in a recorder's queue.
struct Pending {
    reference: ObjectReference,
    kind: Kind,
    reason: String,
    message: String,
}

/// What writes a recorder's Events: the task behind the queue.
struct Writer {
    client: kube::Client,
    component: &'static str,
    series: Mutex<SeriesBook>,
}

/// The series seen within the window, and when entries older than it were last dropped.
struct SeriesBook {
    entries: HashMap<SeriesKey, Series>,
    similar: Similar,
    pruned_at: Instant,
}

impl Default for SeriesBook {
    fn default() -> Self {
        SeriesBook { entries: HashMap::new(), similar: HashMap::new(), pruned_at: Instant::now() }
    }
}

impl SeriesBook {
    /// Whether an Event goes into its object's combined Event for `reason` rather than one of its own: once
    /// [`SIMILAR_MESSAGES`] different messages came within the window (each seen resets it), as client-go's
    /// EventAggregator does. A ReplicaSet creating 5,000 pods says "Created pod: NAME" 5,000 times: that is ten
    /// Events and one combined one counting the rest, not 5,000 Events in the datastore.
    fn combines(&mut self, uid: &str, reason: &str, message: &str) -> bool {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        message.hash(&mut hasher);
        let record = self
            .similar
            .entry((uid.to_string(), reason.to_string()))
            .or_insert_with(|| (HashSet::new(), Instant::now()));
        if record.1.elapsed() >= SERIES_WINDOW {
            record.0.clear();
        }
        record.1 = Instant::now();
        record.0.insert(hasher.finish());
        record.0.len() >= SIMILAR_MESSAGES
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Normal,
    Warning,
}

impl Recorder {
    /// A recorder and its writer task, which ends when the last clone of the recorder is dropped.
    pub fn new(client: kube::Client, component: &'static str) -> Recorder {
        let (queue, pending) = mpsc::channel(QUEUED_EVENTS);
        let writer = Arc::new(Writer { client, component, series: Default::default() });
        tokio::spawn(ReceiverStream::new(pending).for_each_concurrent(WRITES_IN_FLIGHT, move |pending: Pending| {
            let writer = writer.clone();
            async move {
                if let Err(error) = writer.write(pending.reference, pending.kind, pending.reason, pending.message).await
                {
                    tracing::debug!(error = %error, "cannot record an event");
                }
            }
        }));
        Recorder { queue, dropped: Default::default(), component }
    }

    /// Records an event about `object` without waiting for the write; failures are only logged (an Event is never
    /// worth failing a reconcile for), and so is an Event dropped because the queue is full.
    pub fn publish<K: Resource<DynamicType = ()>>(&self, object: &K, kind: Kind, reason: &str, message: String) {
        let meta = object.meta();
        let reference = ObjectReference {
            api_version: Some(K::api_version(&()).to_string()),
            kind: Some(K::kind(&()).to_string()),
            name: meta.name.clone(),
            namespace: meta.namespace.clone(),
            uid: meta.uid.clone(),
            resource_version: meta.resource_version.clone(),
            ..Default::default()
        };
        let pending = Pending { reference, kind, reason: reason.to_string(), message };
        if let Err(mpsc::error::TrySendError::Full(pending)) = self.queue.try_send(pending) {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            // One line per thousand, not one per Event, when a burst overflows the queue.
            if dropped % 1000 == 1 {
                tracing::warn!(
                    component = self.component,
                    reason = %pending.reason,
                    dropped,
                    "events are written slower than they come; dropping some (the objects themselves are unaffected)"
                );
            }
        }
    }
}

impl Writer {
    async fn write(
        &self,
        reference: ObjectReference,
        kind: Kind,
        reason: String,
        message: String,
    ) -> Result<(), kube::Error> {
        let namespace = reference.namespace.clone().filter(|namespace| !namespace.is_empty());
        let namespace = namespace.unwrap_or_else(|| "default".to_string());
        let events: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let now = jiff::Timestamp::now();
        let uid = reference.uid.clone().unwrap_or_default();
        let (series_key, message, repeat) = {
            let mut series = self.series.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            // Pruned at most every PRUNE_EVERY: a pass over every series on each write would cost O(n²) when a
            // controller creates thousands of pods.
            if series.pruned_at.elapsed() >= PRUNE_EVERY {
                series.entries.retain(|_, (_, _, _, first)| first.elapsed() < SERIES_WINDOW);
                series.similar.retain(|_, (_, last)| last.elapsed() < SERIES_WINDOW);
                series.pruned_at = Instant::now();
            }
            // A combined Event is one series whatever its latest message.
            let (series_key, message) = if series.combines(&uid, &reason, &message) {
                ((uid, reason.clone(), COMBINED.to_string()), format!("{COMBINED}{message}"))
            } else {
                ((uid, reason.clone(), message.clone()), message)
            };
            let repeat = series.entries.get_mut(&series_key).filter(|series| series.3.elapsed() < SERIES_WINDOW).map(
                |(namespace, name, count, _)| {
                    *count += 1;
                    (namespace.clone(), name.clone(), *count)
                },
            );
            (series_key, message, repeat)
        };
        if let Some((event_namespace, name, count)) = repeat {
            // The message too: a combined Event shows the latest one, as upstream's does.
            let patch = json!({"count": count, "lastTimestamp": Time(now), "message": message});
            let events: Api<Event> = Api::namespaced(self.client.clone(), &event_namespace);
            if events.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await.is_ok() {
                return Ok(());
            }
        }
        let object_name = reference.name.clone().unwrap_or_default();
        let name = format!("{object_name}.{:016x}", rand::random::<u64>());
        let event = Event {
            metadata: ObjectMeta { name: Some(name.clone()), namespace: Some(namespace.clone()), ..Default::default() },
            involved_object: reference,
            reason: Some(reason),
            message: Some(message),
            type_: Some(if kind == Kind::Normal { "Normal" } else { "Warning" }.to_string()),
            source: Some(EventSource { component: Some(self.component.to_string()), host: None }),
            reporting_component: Some(self.component.to_string()),
            reporting_instance: Some(self.component.to_string()),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            count: Some(1),
            ..Default::default()
        };
        events.create(&PostParams::default(), &event).await?;
        self.series
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entries
            .insert(series_key, (namespace, name, 1, Instant::now()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tenth_different_message_for_one_object_and_reason_is_combined() {
        let mut book = SeriesBook::default();
        for pod in 1..SIMILAR_MESSAGES {
            assert!(!book.combines("rs", "SuccessfulCreate", &format!("Created pod: web-{pod}")));
            assert!(!book.combines("rs", "SuccessfulCreate", "Created pod: web-1"), "a repeat is not a new message");
        }
        assert!(book.combines("rs", "SuccessfulCreate", "Created pod: web-10"));
        assert!(book.combines("rs", "SuccessfulCreate", "Created pod: web-11"));
        assert!(!book.combines("rs", "SuccessfulDelete", "Deleted pod: web-1"), "another reason");
        assert!(!book.combines("other", "SuccessfulCreate", "Created pod: web-12"), "another object");
    }
}
