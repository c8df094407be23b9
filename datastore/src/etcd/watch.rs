//! The Watch service: one bidirectional stream carries many watchers.
//!
//! Each watcher runs as a task of its own that turns the store's [`crate::Watcher`] batches into responses on
//! the stream's shared response channel. The stream task reads requests: it creates and cancels watchers and
//! hands progress requests to a progress task, which asks every watcher to catch up with the store revision of
//! the moment and answers (with watch id -1) only after all of them did. Because a watcher sends its events
//! before it confirms, and the progress task answers only after every confirmation, the progress answer follows
//! every event at or below its revision on the stream, which is what clients rely on.

use super::proto::{etcdserverpb as pb, mvccpb};
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::Stream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use super::convert::{event_to_pb, status_from_error, watch_range, COMPACTED_MESSAGE};
use super::ServerIdentity;
use crate::{Error, Event, EventKind, KeyRange, Store, WatchBatch, WatchRequest, Watcher};

/// The watch id of answers that are not about one watcher, and of refused creations (etcd's InvalidWatchID).
const NO_WATCH_ID: i64 = -1;
/// etcd's `WatchCreateRequest_NOPUT` and `WatchCreateRequest_NODELETE`.
const FILTER_NO_PUT: i32 = 0;
const FILTER_NO_DELETE: i32 = 1;
/// Responses buffered per stream before watchers wait for the client to read.
const RESPONSE_BUFFER: usize = 64;
/// A large batch (a watcher catching up on history) is split so one response stays a reasonable size.
const MAX_EVENTS_PER_RESPONSE: usize = 1000;
const MAX_BYTES_PER_RESPONSE: usize = 2 << 20;

pub(crate) struct WatchService {
    store: Store,
    identity: ServerIdentity,
    progress_notify_interval: Duration,
    stop_streams: CancellationToken,
}

impl WatchService {
    pub fn new(
        store: Store,
        identity: ServerIdentity,
        progress_notify_interval: Duration,
        stop_streams: CancellationToken,
    ) -> Self {
        Self { store, identity, progress_notify_interval, stop_streams }
    }
}

type WatchResponseStream = Pin<Box<dyn Stream<Item = Result<pb::WatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::watch_server::Watch for WatchService {
    type WatchStream = WatchResponseStream;

    async fn watch(
        &self,
        request: Request<Streaming<pb::WatchRequest>>,
    ) -> Result<Response<WatchResponseStream>, Status> {
        let (responses, receiver) = mpsc::channel(RESPONSE_BUFFER);
        let stream = Arc::new(StreamContext {
            store: self.store.clone(),
            identity: self.identity.clone(),
            responses,
            progress_notify_interval: self.progress_notify_interval,
            watchers: Mutex::new(HashMap::new()),
            stop: self.stop_streams.child_token(),
        });
        tokio::spawn(run_stream(stream, request.into_inner()));
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}

/// What the tasks of one watch stream share.
struct StreamContext {
    store: Store,
    identity: ServerIdentity,
    responses: mpsc::Sender<Result<pb::WatchResponse, Status>>,
    progress_notify_interval: Duration,
    /// The running watchers by id. A watcher that ends on its own removes itself.
    watchers: Mutex<HashMap<i64, WatcherHandle>>,
    /// Ends the stream and all its watchers.
    stop: CancellationToken,
}

struct WatcherHandle {
    commands: mpsc::Sender<WatcherCommand>,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

enum WatcherCommand {
    /// Deliver every event up to `revision`, then reply.
    CatchUp { revision: i64, done: oneshot::Sender<()> },
}

impl StreamContext {
    fn watchers(&self) -> std::sync::MutexGuard<'_, HashMap<i64, WatcherHandle>> {
        self.watchers.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn response(&self, revision: i64, watch_id: i64) -> pb::WatchResponse {
        pb::WatchResponse { header: self.identity.header(revision), watch_id, ..Default::default() }
    }

    /// Sends unless the stream is stopping; false when the response cannot be delivered any more.
    async fn send(&self, response: pb::WatchResponse, stop: &CancellationToken) -> bool {
        tokio::select! {
            _ = stop.cancelled() => false,
            sent = self.responses.send(Ok(response)) => sent.is_ok(),
        }
    }
}

/// What a client asked for when creating a watcher.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CreateOptions {
    /// 0 lets the server choose.
    watch_id: i64,
    range: KeyRange,
    start_revision: i64,
    progress_notify: bool,
    prev_kv: bool,
    filters: EventFilters,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct EventFilters {
    no_put: bool,
    no_delete: bool,
}

impl EventFilters {
    fn from_pb(filters: &[i32]) -> Self {
        Self { no_put: filters.contains(&FILTER_NO_PUT), no_delete: filters.contains(&FILTER_NO_DELETE) }
    }

    fn keeps(&self, event: &Event) -> bool {
        match event.kind {
            EventKind::Put => !self.no_put,
            EventKind::Delete => !self.no_delete,
        }
    }
}

async fn run_stream(stream: Arc<StreamContext>, mut requests: Streaming<pb::WatchRequest>) {
    let _stop_watchers_on_exit = stream.stop.clone().drop_guard();
    let (progress_requested, progress_requests) = mpsc::channel(1);
    tokio::spawn(answer_progress_requests(stream.clone(), progress_requests));
    let mut next_watch_id = 0;
    let mut reading = true;
    loop {
        let request = tokio::select! {
            _ = stream.stop.cancelled() => {
                // Unavailable makes clients reconnect and resume their watches elsewhere or later.
                let _ = stream.responses.try_send(Err(Status::unavailable("etcdserver: server stopped")));
                return;
            }
            _ = stream.responses.closed() => return,
            request = requests.message(), if reading => request,
        };
        let request = match request {
            Ok(Some(request)) => request,
            // As etcd, a client that closes its sending side keeps receiving events.
            Ok(None) => {
                reading = false;
                continue;
            }
            Err(status) => {
                tracing::debug!(error = %status, "watch stream ended");
                return;
            }
        };
        let stream_alive = match request.request_union {
            Some(pb::watch_request::RequestUnion::CreateRequest(create)) => {
                let options = CreateOptions {
                    watch_id: create.watch_id,
                    range: watch_range(create.key, create.range_end),
                    start_revision: create.start_revision,
                    progress_notify: create.progress_notify,
                    prev_kv: create.prev_kv,
                    filters: EventFilters::from_pb(&create.filters),
                };
                create_watcher(&stream, options, &mut next_watch_id).await
            }
            Some(pb::watch_request::RequestUnion::CancelRequest(cancel)) => {
                cancel_watcher(&stream, cancel.watch_id).await
            }
            Some(pb::watch_request::RequestUnion::ProgressRequest(_)) => {
                // One request already waiting covers this one too: it reads the revision when it runs.
                let _ = progress_requested.try_send(());
                true
            }
            None => true,
        };
        if !stream_alive {
            return;
        }
    }
}

/// Starts a watcher and announces it; false when the stream is gone.
async fn create_watcher(stream: &Arc<StreamContext>, options: CreateOptions, next_watch_id: &mut i64) -> bool {
    let refuse = |reason: String| pb::WatchResponse {
        created: true,
        canceled: true,
        cancel_reason: reason,
        ..stream.response(stream.store.revision(), NO_WATCH_ID)
    };
    if options.start_revision < 0 {
        return stream.send(refuse(COMPACTED_MESSAGE.into()), &stream.stop).await;
    }
    let range = &options.range;
    if !range.end.is_empty() && range.end[..] != [0] && range.start >= range.end {
        return stream.send(refuse("mvcc: watcher range is empty".into()), &stream.stop).await;
    }
    let watch_id = if options.watch_id != 0 {
        if stream.watchers().contains_key(&options.watch_id) {
            let reason = "mvcc: duplicate watch ID provided on the WatchStream".into();
            return stream.send(refuse(reason), &stream.stop).await;
        }
        options.watch_id
    } else {
        let watchers = stream.watchers();
        while watchers.contains_key(next_watch_id) {
            *next_watch_id += 1;
        }
        *next_watch_id += 1;
        *next_watch_id - 1
    };
    let request =
        WatchRequest { range: options.range.clone(), start_revision: options.start_revision, prev_kv: options.prev_kv };
    let watcher = match stream.store.watch(request).await {
        Ok(watcher) => watcher,
        Err(Error::Compacted { compact_revision, .. }) => {
            // As etcd: the watcher is created, then cancelled with the compaction point so the client can
            // tell the history is gone.
            let created = pb::WatchResponse { created: true, ..stream.response(stream.store.revision(), watch_id) };
            let cancelled = pb::WatchResponse {
                canceled: true,
                compact_revision,
                ..stream.response(stream.store.revision(), watch_id)
            };
            return stream.send(created, &stream.stop).await && stream.send(cancelled, &stream.stop).await;
        }
        Err(error) => return stream.send(refuse(status_from_error(error).message().into()), &stream.stop).await,
    };
    let created = pb::WatchResponse { created: true, ..stream.response(stream.store.revision(), watch_id) };
    if !stream.send(created, &stream.stop).await {
        return false;
    }
    let (commands, command_receiver) = mpsc::channel(2);
    let stop = stream.stop.child_token();
    let task = WatcherTask {
        watch_id,
        watcher,
        filters: options.filters,
        progress_notify: options.progress_notify,
        stream: stream.clone(),
        commands: command_receiver,
        stop: stop.clone(),
        sent_since_progress: false,
    };
    // Registered before it runs, so a watcher that ends at once can deregister itself.
    stream.watchers().insert(watch_id, WatcherHandle { commands, stop, task: None });
    let running = tokio::spawn(task.run());
    if let Some(handle) = stream.watchers().get_mut(&watch_id) {
        handle.task = Some(running);
    }
    true
}

/// Stops a watcher and confirms; an unknown id gets no answer, as in etcd. False when the stream is gone.
async fn cancel_watcher(stream: &Arc<StreamContext>, watch_id: i64) -> bool {
    let Some(handle) = stream.watchers().remove(&watch_id) else {
        return true;
    };
    handle.stop.cancel();
    // Waiting for the task guarantees no event of this watcher follows the confirmation.
    if let Some(task) = handle.task {
        let _ = task.await;
    }
    let cancelled = pb::WatchResponse { canceled: true, ..stream.response(stream.store.revision(), watch_id) };
    stream.send(cancelled, &stream.stop).await
}

/// Answers progress requests one at a time: each asks every watcher of the stream to catch up with the store
/// revision of that moment, then reports that revision with watch id -1.
async fn answer_progress_requests(stream: Arc<StreamContext>, mut requests: mpsc::Receiver<()>) {
    loop {
        tokio::select! {
            _ = stream.stop.cancelled() => return,
            request = requests.recv() => if request.is_none() { return },
        }
        let revision = stream.store.revision();
        let watchers: Vec<mpsc::Sender<WatcherCommand>> =
            stream.watchers().values().map(|handle| handle.commands.clone()).collect();
        // As etcd: a stream without watchers has nobody to report progress to.
        if watchers.is_empty() {
            continue;
        }
        let mut confirmations = Vec::with_capacity(watchers.len());
        for commands in watchers {
            let (done, confirmation) = oneshot::channel();
            if commands.send(WatcherCommand::CatchUp { revision, done }).await.is_ok() {
                confirmations.push(confirmation);
            }
        }
        let all_caught_up = async {
            for confirmation in confirmations {
                // A watcher that ended meanwhile drops its confirmation: it has nothing more to send.
                let _ = confirmation.await;
            }
        };
        tokio::select! {
            _ = stream.stop.cancelled() => return,
            _ = all_caught_up => {}
        }
        if !stream.send(stream.response(revision, NO_WATCH_ID), &stream.stop).await {
            return;
        }
    }
}

struct WatcherTask {
    watch_id: i64,
    watcher: Watcher,
    filters: EventFilters,
    progress_notify: bool,
    stream: Arc<StreamContext>,
    commands: mpsc::Receiver<WatcherCommand>,
    stop: CancellationToken,
    /// Events went out since the last periodic progress notification, which makes the next one unnecessary.
    sent_since_progress: bool,
}

/// Why a watcher stops.
struct Ended;

enum Wake {
    Stop,
    Command(Option<WatcherCommand>),
    ProgressTick,
    Batch(crate::Result<WatchBatch>),
}

impl WatcherTask {
    async fn run(mut self) {
        let interval = self.stream.progress_notify_interval;
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let wake = tokio::select! {
                biased;
                _ = self.stop.cancelled() => Wake::Stop,
                command = self.commands.recv() => Wake::Command(command),
                _ = ticker.tick(), if self.progress_notify => Wake::ProgressTick,
                batch = self.watcher.recv() => Wake::Batch(batch),
            };
            let outcome = match wake {
                Wake::Stop | Wake::Command(None) => Err(Ended),
                Wake::Command(Some(WatcherCommand::CatchUp { revision, done })) => {
                    self.catch_up(revision).await.map(|()| {
                        let _ = done.send(());
                    })
                }
                Wake::ProgressTick => self.periodic_progress().await,
                Wake::Batch(batch) => self.deliver(batch).await,
            };
            if outcome.is_err() {
                return;
            }
        }
    }

    /// Sends a batch's events that pass the filters, or the cancellation a failed watch ends with.
    async fn deliver(&mut self, batch: crate::Result<WatchBatch>) -> Result<(), Ended> {
        let batch = match batch {
            Ok(batch) => batch,
            Err(error) => {
                self.stream.watchers().remove(&self.watch_id);
                let mut cancelled = pb::WatchResponse {
                    canceled: true,
                    ..self.stream.response(self.stream.store.revision(), self.watch_id)
                };
                match error {
                    Error::Compacted { compact_revision, .. } => cancelled.compact_revision = compact_revision,
                    other => cancelled.cancel_reason = status_from_error(other).message().into(),
                }
                self.stream.send(cancelled, &self.stop).await;
                return Err(Ended);
            }
        };
        let filters = self.filters;
        let events: Vec<_> = batch.events.iter().filter(|event| filters.keeps(event)).map(event_to_pb).collect();
        if events.is_empty() {
            return Ok(());
        }
        self.sent_since_progress = true;
        for events in split_events(events, event_size) {
            let response = pb::WatchResponse { events, ..self.stream.response(batch.revision, self.watch_id) };
            if !self.stream.send(response, &self.stop).await {
                return Err(Ended);
            }
        }
        Ok(())
    }

    /// Delivers every event up to `revision`, waiting for the watcher if it is behind (reading history).
    async fn catch_up(&mut self, revision: i64) -> Result<(), Ended> {
        let events = tokio::select! {
            _ = self.stop.cancelled() => return Err(Ended),
            events = self.watcher.recv_through(revision) => events,
        };
        self.deliver(events.map(|events| WatchBatch { revision, events })).await
    }

    /// As etcd: a watcher that asked for progress notifications gets the current revision when it received no
    /// events since the last one and is not behind.
    async fn periodic_progress(&mut self) -> Result<(), Ended> {
        if std::mem::take(&mut self.sent_since_progress) {
            return Ok(());
        }
        let revision = self.stream.store.revision();
        self.catch_up(revision).await?;
        if std::mem::take(&mut self.sent_since_progress) {
            return Ok(());
        }
        if self.stream.send(self.stream.response(revision, self.watch_id), &self.stop).await {
            Ok(())
        } else {
            Err(Ended)
        }
    }
}

/// Splits events into responses of bounded count and size; a single huge event still goes alone.
fn split_events<T>(events: Vec<T>, size_of: impl Fn(&T) -> usize) -> Vec<Vec<T>> {
    let mut chunks = Vec::new();
    let mut current = Vec::new();
    let mut current_bytes = 0;
    for event in events {
        let size = size_of(&event);
        let full = current.len() >= MAX_EVENTS_PER_RESPONSE || current_bytes + size > MAX_BYTES_PER_RESPONSE;
        if full && !current.is_empty() {
            chunks.push(std::mem::take(&mut current));
            current_bytes = 0;
        }
        current_bytes += size;
        current.push(event);
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

/// Roughly the bytes an event takes on the wire.
fn event_size(event: &mvccpb::Event) -> usize {
    let kv_size = |kv: &Option<mvccpb::KeyValue>| kv.as_ref().map_or(0, |kv| kv.key.len() + kv.value.len() + 32);
    kv_size(&event.kv) + kv_size(&event.prev_kv)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::KeyValue;

    fn event(kind: EventKind) -> Event {
        Event {
            kind,
            kv: Arc::new(KeyValue {
                key: Bytes::from_static(b"k"),
                value: Bytes::new(),
                create_revision: 1,
                mod_revision: 1,
                version: 1,
                lease: 0,
            }),
            prev_kv: None,
        }
    }

    #[test]
    fn filters_drop_puts_or_deletes() {
        let no_put = EventFilters::from_pb(&[FILTER_NO_PUT]);
        assert!(!no_put.keeps(&event(EventKind::Put)));
        assert!(no_put.keeps(&event(EventKind::Delete)));
        let no_delete = EventFilters::from_pb(&[FILTER_NO_DELETE]);
        assert!(no_delete.keeps(&event(EventKind::Put)));
        assert!(!no_delete.keeps(&event(EventKind::Delete)));
        assert_eq!(EventFilters::from_pb(&[]), EventFilters::default());
    }

    #[test]
    fn large_batches_are_split_by_count_and_size() {
        let size = |bytes: &usize| *bytes;
        let many = vec![1usize; MAX_EVENTS_PER_RESPONSE * 2 + 1];
        let sizes: Vec<usize> = split_events(many, size).iter().map(Vec::len).collect();
        assert_eq!(sizes, [MAX_EVENTS_PER_RESPONSE, MAX_EVENTS_PER_RESPONSE, 1]);
        let big = vec![MAX_BYTES_PER_RESPONSE / 2 + 1; 3];
        assert_eq!(split_events(big, size).len(), 3);
        let huge = vec![MAX_BYTES_PER_RESPONSE * 4];
        assert_eq!(split_events(huge, size).len(), 1);
        assert!(split_events(Vec::<usize>::new(), size).is_empty());
    }
}
