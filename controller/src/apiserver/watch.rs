//! Watches: a chunked stream of newline-terminated `{"type": ..., "object": ...}` events, fed by the datastore's
//! watch on the resource's key prefix. Selectors are applied per event, so an object that stops matching is sent
//! as DELETED and one that starts matching as ADDED, as upstream does.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{header, HeaderValue, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use kaasd_datastore::EventKind;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::objects::{wants_table, ObjectRequest, Selection};
use super::{ApiServer, Body};
use crate::apiserver::error::{ApiError, ApiResult};
use crate::apiserver::field_order::FieldOrder;
use crate::apiserver::registry::ResourceDef;
use crate::apiserver::storage::{decode, ObjectStore};

/// How often a watch that asked for bookmarks gets one.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(60);
/// Events whose encoded lines are kept for other watchers. Every watcher of a resource receives an event within
/// moments of the others, so a short memory is enough; a watcher that lags further encodes the event itself.
const SHARED_LINES: usize = 4096;

impl ApiServer {
    pub(super) async fn watch(
        self: &Arc<Self>,
        def: &ResourceDef,
        namespace: Option<&str>,
        request: &ObjectRequest,
    ) -> ApiResult<Response<Body>> {
        let selection = Selection::from_query(&request.query, def)?;
        let bookmarks = request.query.flag("allowWatchBookmarks")?;
        let send_initial = match request.query.get("sendInitialEvents") {
            Some(_) => Some(request.query.flag("sendInitialEvents")?),
            None => None,
        };
        if send_initial == Some(true) && !bookmarks {
            return Err(ApiError::bad_request("sendInitialEvents=true needs allowWatchBookmarks=true"));
        }
        let timeout = match request.query.integer("timeoutSeconds")? {
            Some(seconds) if seconds > 0 => Duration::from_secs(seconds as u64),
            // Upstream picks 30–60 minutes so clients re-watch now and then; one hour here.
            _ => Duration::from_secs(3600),
        };
        let table = wants_table(&request.accept);
        let prefix = ObjectStore::prefix(def, namespace);
        let requested = request.query.get("resourceVersion").unwrap_or("");
        let (sender, receiver) = mpsc::channel::<Bytes>(64);
        let mut encoder = EventEncoder {
            def: def.clone(),
            table,
            first: true,
            query: request.query.clone(),
            printer_columns: self.printer_columns(def),
        };

        let replay = requested.is_empty() || requested == "0" || send_initial == Some(true);
        let (initial, start_revision) = if replay && send_initial != Some(false) {
            let page = self.store.list(&prefix, None, 0, 0).await?;
            let mut objects: Vec<Value> = page.items.into_iter().map(|stored| stored.object).collect();
            self.in_served_version(def, objects.iter_mut().collect()).await?;
            objects.retain(|object| selection.matches(def, object).unwrap_or(false));
            (objects, page.revision)
        } else {
            let revision: i64 = match requested.parse() {
                Ok(revision) => revision,
                Err(_) if requested.is_empty() => self.store.revision(),
                Err(_) => return Err(ApiError::bad_request(format!("invalid resourceVersion {requested:?}"))),
            };
            (Vec::new(), revision)
        };

        let mut first_lines = Vec::new();
        for object in &initial {
            first_lines.push(encoder.event("ADDED", object)?);
        }
        if send_initial == Some(true) {
            first_lines.push(bookmark(def, start_revision, true));
        }
        let watcher = match self.store.watch(&prefix, start_revision + 1).await {
            Ok(watcher) => Some(watcher),
            Err(error) if error.code == 410 => {
                let status = ApiError::expired(format!(
                    "too old resource version: {requested} ({})",
                    self.store.datastore().status().await.map(|status| status.compact_revision).unwrap_or(0)
                ));
                first_lines.push(error_event(&status));
                None
            }
            Err(error) => return Err(error),
        };

        let def = def.clone();
        let draining = self.draining.clone();
        // Shared lines are keyed by event alone, so only kinds with one stored version share them (a custom
        // resource's watchers may each ask for another version).
        let one_version = matches!(def.schema, crate::apiserver::registry::SchemaSource::BuiltIn(_));
        let shared_lines = (!table && selection.is_empty() && one_version).then(|| self.watch_lines.clone());
        let server = self.clone();
        tokio::spawn(async move {
            for line in first_lines {
                if sender.send(line).await.is_err() {
                    return;
                }
            }
            let Some(mut watcher) = watcher else { return };
            let deadline = tokio::time::sleep(timeout);
            tokio::pin!(deadline);
            let mut bookmark_timer = tokio::time::interval(BOOKMARK_INTERVAL);
            bookmark_timer.tick().await;
            loop {
                tokio::select! {
                    () = &mut deadline => return,
                    () = sender.closed() => return,
                    () = draining.cancelled() => return,
                    _ = bookmark_timer.tick(), if bookmarks => {
                        if sender.send(bookmark(&def, watcher.revision(), false)).await.is_err() {
                            return;
                        }
                    }
                    batch = watcher.recv() => {
                        let batch = match batch {
                            Ok(batch) => batch,
                            Err(error) => {
                                let _ = sender.send(error_event(&ApiError::from(error))).await;
                                return;
                            }
                        };
                        for event in batch.events {
                            let translated = match &shared_lines {
                                Some(shared) => shared.lines(&event, || {
                                    encoder.translate(&selection, &event, EventObjects::decode(&event)?)
                                }),
                                None => match EventObjects::decode(&event) {
                                    Ok(mut objects) => {
                                        match server.in_served_version(&def, objects.iter_mut().collect()).await {
                                            Ok(()) => encoder.translate(&selection, &event, objects),
                                            Err(error) => Err(error),
                                        }
                                    }
                                    Err(error) => Err(error),
                                },
                            };
                            let lines = match translated {
                                Ok(lines) => lines,
                                Err(error) => {
                                    tracing::warn!(error = %error, "cannot encode a watch event");
                                    continue;
                                }
                            };
                            for line in lines {
                                if sender.send(line).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                }
            }
        });

        let stream = tokio_stream::wrappers::ReceiverStream::new(receiver).map(|bytes| Ok(Frame::data(bytes)));
        let mut response = Response::new(BodyExt::boxed(StreamBody::new(stream)));
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Ok(response)
    }
}

/// Watch lines shared by every watcher that sends events as they are stored (no selector, no Table): each event
/// is decoded and encoded once, however many watchers receive it. Kept per API server; its events are identified
/// by key and revision, which no two events share.
#[derive(Default)]
pub(super) struct SharedLines {
    recent: Mutex<RecentLines>,
}

#[derive(Default)]
struct RecentLines {
    lines: HashMap<(Bytes, i64), LinesSlot>,
    /// Insertion order, for forgetting the oldest.
    order: VecDeque<(Bytes, i64)>,
}

/// The lines of one event once encoded; None when encoding failed.
type Lines = Option<Vec<Bytes>>;
type LinesSlot = Arc<OnceLock<Lines>>;

impl SharedLines {
    /// The lines of `event`, encoded by `encode` if no other watcher has encoded them yet. Watchers asking at the
    /// same moment wait for the first one's encoding instead of repeating it. A failed encoding is not shared:
    /// each later watcher encodes for itself.
    fn lines(
        &self,
        event: &kaasd_datastore::Event,
        encode: impl FnOnce() -> ApiResult<Vec<Bytes>>,
    ) -> ApiResult<Vec<Bytes>> {
        let id = (event.kv.key.clone(), event.kv.mod_revision);
        let slot = {
            let mut recent = self.recent.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            match recent.lines.get(&id) {
                Some(slot) => slot.clone(),
                None => {
                    let slot: LinesSlot = Arc::default();
                    recent.lines.insert(id.clone(), slot.clone());
                    recent.order.push_back(id);
                    while recent.order.len() > SHARED_LINES {
                        if let Some(oldest) = recent.order.pop_front() {
                            recent.lines.remove(&oldest);
                        }
                    }
                    slot
                }
            }
        };
        let mut encode = Some(encode);
        let mut failure = None;
        let lines = slot.get_or_init(|| match encode.take().map(|encode| encode()) {
            Some(Ok(lines)) => Some(lines),
            Some(Err(error)) => {
                failure = Some(error);
                None
            }
            None => None,
        });
        match (lines, failure, encode) {
            (Some(lines), _, _) => Ok(lines.clone()),
            (None, Some(error), _) => Err(error),
            // Another watcher's encoding failed: this one tries its own, and reports its own error.
            (None, None, Some(encode)) => encode(),
            (None, None, None) => Err(ApiError::internal("a stored object cannot be encoded as a watch event")),
        }
    }
}

struct EventEncoder {
    def: ResourceDef,
    table: bool,
    /// Tables carry their column definitions on the first event only.
    first: bool,
    query: super::request::Query,
    /// A custom resource's additionalPrinterColumns.
    printer_columns: Option<Value>,
}

impl EventEncoder {
    fn event(&mut self, kind: &str, object: &Value) -> ApiResult<Bytes> {
        // Written straight from the object: no copy of it is built just to be encoded.
        let mut bytes = format!("{{\"type\":\"{kind}\",\"object\":").into_bytes();
        if self.table {
            let mut table = table_for(&self.def, self.printer_columns.as_ref(), &[object], &self.query)?;
            if !self.first {
                if let Some(map) = table.as_object_mut() {
                    map.remove("columnDefinitions");
                }
            }
            self.first = false;
            crate::apiserver::field_order::write_json(&mut bytes, &table, FieldOrder::BuiltIn);
        } else {
            crate::apiserver::field_order::write_json(&mut bytes, object, FieldOrder::of(&self.def));
        }
        Ok(end_event(bytes))
    }

    /// One store event as zero or one watch events, after the selectors. `objects` are the event's objects in
    /// the served version.
    fn translate(
        &mut self,
        selection: &Selection,
        event: &kaasd_datastore::Event,
        objects: EventObjects,
    ) -> ApiResult<Vec<Bytes>> {
        let EventObjects { previous, current } = objects;
        let matched_before = match &previous {
            Some(object) => selection.matches(&self.def, object)?,
            None => false,
        };
        match (event.kind, current) {
            (EventKind::Put, Some(current)) => {
                let matches_now = selection.matches(&self.def, &current)?;
                Ok(match (matched_before, matches_now) {
                    (false, true) => vec![self.event("ADDED", &current)?],
                    (true, true) => vec![self.event("MODIFIED", &current)?],
                    (true, false) => vec![self.event("DELETED", &current)?],
                    (false, false) => vec![],
                })
            }
            (EventKind::Put, None) => Ok(vec![]),
            (EventKind::Delete, _) => match previous {
                Some(mut object) if matched_before => {
                    crate::apiserver::storage::set_resource_version(&mut object, event.kv.mod_revision);
                    Ok(vec![self.event("DELETED", &object)?])
                }
                _ => Ok(vec![]),
            },
        }
    }
}

/// The objects of one store event, decoded: the one before (if any) and, for a put, the one after.
struct EventObjects {
    previous: Option<Value>,
    current: Option<Value>,
}

impl EventObjects {
    fn decode(event: &kaasd_datastore::Event) -> ApiResult<EventObjects> {
        let previous = event.prev_kv.as_ref().map(decode).transpose()?.map(|stored| stored.object);
        let current = match event.kind {
            EventKind::Put => Some(decode(&event.kv)?.object),
            EventKind::Delete => None,
        };
        Ok(EventObjects { previous, current })
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = &mut Value> {
        self.previous.iter_mut().chain(self.current.iter_mut())
    }
}

fn bookmark(def: &ResourceDef, revision: i64, initial_events_end: bool) -> Bytes {
    let mut metadata = json!({"resourceVersion": revision.to_string()});
    if initial_events_end {
        metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    let object = json!({"kind": def.kind, "apiVersion": def.api_version(), "metadata": metadata});
    let mut bytes = b"{\"type\":\"BOOKMARK\",\"object\":".to_vec();
    crate::apiserver::field_order::write_json(&mut bytes, &object, FieldOrder::of(def));
    end_event(bytes)
}

/// A watch `ERROR` event carrying the Status as upstream encodes it.
fn error_event(error: &ApiError) -> Bytes {
    let mut bytes = b"{\"type\":\"ERROR\",\"object\":".to_vec();
    bytes.extend_from_slice(&error.status_json());
    end_event(bytes)
}

/// Closes the event object and ends the line, as upstream's stream framing does.
fn end_event(mut bytes: Vec<u8>) -> Bytes {
    bytes.extend_from_slice(b"}\n");
    Bytes::from(bytes)
}

/// A meta.k8s.io/v1 Table of `objects` (without list metadata).
pub(super) fn table_for(
    def: &ResourceDef,
    printer_columns: Option<&Value>,
    objects: &[&Value],
    query: &super::request::Query,
) -> ApiResult<Value> {
    let include = crate::apiserver::table::IncludeObject::from_query(query.get("includeObject"))
        .map_err(|error| ApiError::bad_request(error.to_string()))?;
    Ok(crate::apiserver::table::table(def, objects.iter().copied(), include, jiff::Timestamp::now(), printer_columns))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kaasd_datastore::{Event, KeyValue};

    fn event(key: &str, revision: i64) -> Event {
        let kv = KeyValue {
            key: Bytes::copy_from_slice(key.as_bytes()),
            value: Bytes::from_static(b"{}"),
            create_revision: revision,
            mod_revision: revision,
            version: 1,
            lease: 0,
        };
        Event { kind: EventKind::Put, kv: Arc::new(kv), prev_kv: None }
    }

    #[test]
    fn each_event_is_encoded_once_and_failures_are_not_shared() {
        let shared = SharedLines::default();
        let mut encodings = 0;
        for _ in 0..3 {
            let lines = shared.lines(&event("/a", 5), || {
                encodings += 1;
                Ok(vec![Bytes::from_static(b"line\n")])
            });
            assert_eq!(lines.unwrap(), vec![Bytes::from_static(b"line\n")]);
        }
        assert_eq!(encodings, 1);
        // Another revision of the same key is another event.
        shared.lines(&event("/a", 6), || Ok(vec![])).unwrap();
        let failed = shared.lines(&event("/b", 7), || Err(ApiError::internal("broken")));
        assert!(failed.is_err());
        let retried = shared.lines(&event("/b", 7), || Ok(vec![Bytes::from_static(b"again\n")]));
        assert_eq!(retried.unwrap(), vec![Bytes::from_static(b"again\n")], "a later watcher encodes for itself");
    }

    #[test]
    fn only_recent_events_are_kept() {
        let shared = SharedLines::default();
        for revision in 0..(SHARED_LINES as i64 + 10) {
            shared.lines(&event("/a", revision), || Ok(vec![])).unwrap();
        }
        let recent = shared.recent.lock().unwrap();
        assert_eq!((recent.lines.len(), recent.order.len()), (SHARED_LINES, SHARED_LINES));
    }
}
