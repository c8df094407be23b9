//! Shared caches of API objects, as client-go's shared informers: one list+watch per kind for all controllers and
//! the scheduler, a read-only store they query, and handlers they register to hear of changes (typically: map
//! the object to the keys of a work queue).
//!
//! Handlers must be registered before `start`, and must be quick (they run on the watch task).

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use kube::Resource;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What a handler hears.
pub enum Change<'a, K> {
    /// Created (`old` is `None`) or changed.
    Applied {
        old: Option<&'a K>,
        new: &'a K,
    },
    Deleted(&'a K),
}

type Handler<K> = Box<dyn Fn(&Change<'_, K>) + Send + Sync>;

pub struct Informer<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    api: Api<K>,
    config: watcher::Config,
    store: Store<K>,
    writer: Mutex<Option<reflector::store::Writer<K>>>,
    handlers: Arc<Mutex<Vec<Handler<K>>>>,
    /// The store's objects by namespace and name, so that a controller reading one namespace (a ReplicaSet's pods)
    /// does not walk every object of the kind on each reconcile.
    by_namespace: Mutex<HashMap<String, HashMap<String, Arc<K>>>>,
    /// True once the first list is in the store. (Not the store's own `wait_until_ready`: it wakes only the last
    /// of several concurrent waiters, and several controllers wait on one cache.)
    synced: tokio::sync::watch::Sender<bool>,
}

impl<K> Informer<K>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
{
    pub fn new(api: Api<K>, config: watcher::Config) -> Arc<Informer<K>> {
        let (store, writer) = reflector::store();
        Arc::new(Informer {
            api,
            config,
            store,
            writer: Mutex::new(Some(writer)),
            handlers: Default::default(),
            by_namespace: Default::default(),
            synced: tokio::sync::watch::Sender::new(false),
        })
    }

    pub fn on_change(&self, handler: impl Fn(&Change<'_, K>) + Send + Sync + 'static) {
        self.handlers.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(Box::new(handler));
    }

    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        let mut reference = ObjectRef::new(name);
        if !namespace.is_empty() {
            reference = reference.within(namespace);
        }
        self.store.get(&reference)
    }

    pub fn list(&self) -> Vec<Arc<K>> {
        self.store.state()
    }

    /// The cached objects of one namespace.
    pub fn list_namespace(&self, namespace: &str) -> Vec<Arc<K>> {
        let index = self.by_namespace.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        index.get(namespace).map(|objects| objects.values().cloned().collect()).unwrap_or_default()
    }

    /// Keeps `by_namespace` in step with the store after it applied a change to `object`.
    fn index(&self, object: &K) {
        let namespace = object.meta().namespace.clone().unwrap_or_default();
        let name = object.meta().name.clone().unwrap_or_default();
        let stored = self.store.get(&ObjectRef::from_obj(object));
        let mut index = self.by_namespace.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match stored {
            Some(stored) => {
                index.entry(namespace).or_default().insert(name, stored);
            }
            None => {
                if let Some(objects) = index.get_mut(&namespace) {
                    objects.remove(&name);
                    if objects.is_empty() {
                        index.remove(&namespace);
                    }
                }
            }
        }
    }

    fn reindex(&self) {
        let mut index: HashMap<String, HashMap<String, Arc<K>>> = HashMap::new();
        for object in self.store.state() {
            let namespace = object.meta().namespace.clone().unwrap_or_default();
            index.entry(namespace).or_default().insert(object.meta().name.clone().unwrap_or_default(), object);
        }
        *self.by_namespace.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = index;
    }

    /// Waits until the first list has been loaded.
    pub async fn synced(&self) {
        let mut synced = self.synced.subscribe();
        let _ = synced.wait_for(|synced| *synced).await;
    }

    /// Starts the list+watch; it ends at `cancel`.
    pub fn start(self: &Arc<Self>, cancel: CancellationToken, tasks: &TaskTracker) {
        let Some(writer) = self.writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take() else { return };
        let informer = self.clone();
        tasks.spawn(async move {
            tokio::select! {
                () = cancel.cancelled() => {}
                () = informer.follow(writer) => {}
            }
        });
    }

    async fn follow(&self, mut writer: reflector::store::Writer<K>) {
        let mut events = watcher(self.api.clone(), self.config.clone()).boxed();
        // What a relist brought, with the cached object it replaces: the store swaps in a relist only at InitDone,
        // so handlers hear of it then, when the store they query already holds it.
        let mut relisted: Vec<(Option<Arc<K>>, K)> = Vec::new();
        while let Some(event) = events.next().await {
            let mut event = match event {
                Ok(event) => event,
                Err(error) => {
                    tracing::debug!(error = %error, kind = %K::kind(&()), "watch restarts");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            if let watcher::Event::Apply(object) | watcher::Event::InitApply(object) | watcher::Event::Delete(object) =
                &mut event
            {
                // No controller reads managedFields, and they are often the larger part of an object: not keeping
                // them roughly halves the cache (kube-controller-manager and kube-scheduler drop them from their
                // informers too).
                object.meta_mut().managed_fields = None;
            }
            match &event {
                watcher::Event::Apply(object) | watcher::Event::InitApply(object) | watcher::Event::Delete(object) => {
                    tracing::trace!(kind = %K::kind(&()), name = ?object.meta().name, event = ?std::mem::discriminant(&event), "informer event");
                }
                _ => tracing::trace!(kind = %K::kind(&()), "informer list event"),
            }
            match event {
                watcher::Event::Apply(object) => {
                    let old = self.store.get(&ObjectRef::from_obj(&object));
                    writer.apply_watcher_event(&watcher::Event::Apply(object.clone()));
                    self.index(&object);
                    self.notify(&Change::Applied { old: old.as_deref(), new: &object });
                }
                watcher::Event::Delete(object) => {
                    writer.apply_watcher_event(&watcher::Event::Delete(object.clone()));
                    self.index(&object);
                    self.notify(&Change::Deleted(&object));
                }
                watcher::Event::Init => {
                    relisted.clear();
                    writer.apply_watcher_event(&watcher::Event::Init);
                }
                watcher::Event::InitApply(object) => {
                    let old = self.store.get(&ObjectRef::from_obj(&object));
                    writer.apply_watcher_event(&watcher::Event::InitApply(object.clone()));
                    relisted.push((old, object));
                }
                watcher::Event::InitDone => {
                    let kept: HashSet<ObjectRef<K>> =
                        relisted.iter().map(|(_, object)| ObjectRef::from_obj(object)).collect();
                    let gone: Vec<Arc<K>> = self
                        .store
                        .state()
                        .into_iter()
                        .filter(|object| !kept.contains(&ObjectRef::from_obj(object.as_ref())))
                        .collect();
                    writer.apply_watcher_event(&watcher::Event::InitDone);
                    self.reindex();
                    self.synced.send_replace(true);
                    for (old, object) in relisted.drain(..) {
                        self.notify(&Change::Applied { old: old.as_deref(), new: &object });
                    }
                    for object in gone {
                        self.notify(&Change::Deleted(object.as_ref()));
                    }
                }
            }
        }
    }

    fn notify(&self, change: &Change<'_, K>) {
        for handler in self.handlers.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).iter() {
            handler(change);
        }
    }
}
