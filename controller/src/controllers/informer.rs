//! Shared caches of API objects, as client-go's shared informers: one list+watch per kind for all controllers and
//! the scheduler, a read-only store they query, and handlers they register to hear of changes (typically: map
//! the object to the keys of a work queue).
//!
//! Handlers must be registered before `start`, and must be quick (they run on the watch task).
//!
//! A cache can have several readers ([`Informer::reader`]): groups that start and stop on their own (the scheduler
//! and the controller manager each follow their own Lease) read one copy of the pods and nodes instead of one each.
//! A reader started after the cache has listed hears every cached object as created, as a client-go handler added
//! late does, and stops hearing at its own cancel.

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
type Handlers<K> = Arc<Mutex<Vec<Handler<K>>>>;
/// Namespace → name → object.
type NamespaceIndex<K> = HashMap<String, HashMap<String, Arc<K>>>;

/// The handlers of one started reader, until its cancel.
struct Audience<K> {
    handlers: Handlers<K>,
    until: CancellationToken,
}

pub struct Informer<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    api: Api<K>,
    config: watcher::Config,
    store: Store<K>,
    /// Only the cache's first reader has it: that one's `start` lists and watches; the others' join.
    writer: Mutex<Option<reflector::store::Writer<K>>>,
    /// This reader's handlers.
    handlers: Handlers<K>,
    /// The handlers of every started reader of the cache (shared between its readers).
    audience: Arc<Mutex<Vec<Audience<K>>>>,
    /// The store's objects by namespace and name, so that a controller reading one namespace (a ReplicaSet's pods)
    /// does not walk every object of the kind on each reconcile.
    by_namespace: Arc<Mutex<NamespaceIndex<K>>>,
    /// True once the first list is in the store. (Not the store's own `wait_until_ready`: it wakes only the last
    /// of several concurrent waiters, and several controllers wait on one cache.)
    synced: tokio::sync::watch::Sender<bool>,
    /// Drops what no reader of this cache uses from each object before it is cached (see [`Informer::slimmed`]).
    slim: Option<fn(&mut K)>,
}

impl<K> Informer<K>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
{
    pub fn new(api: Api<K>, config: watcher::Config) -> Arc<Informer<K>> {
        Self::build(api, config, None)
    }

    /// A cache whose objects go through `slim` before they are cached and handlers hear them: for a kind whose
    /// objects hold much that no reader of the cache uses. Only for caches whose readers never write an object
    /// back whole (a replace would lose what was dropped); they patch what they change.
    pub fn slimmed(api: Api<K>, config: watcher::Config, slim: fn(&mut K)) -> Arc<Informer<K>> {
        Self::build(api, config, Some(slim))
    }

    fn build(api: Api<K>, config: watcher::Config, slim: Option<fn(&mut K)>) -> Arc<Informer<K>> {
        let (store, writer) = reflector::store();
        Arc::new(Informer {
            api,
            config,
            store,
            writer: Mutex::new(Some(writer)),
            handlers: Default::default(),
            audience: Default::default(),
            by_namespace: Default::default(),
            synced: tokio::sync::watch::Sender::new(false),
            slim,
        })
    }

    /// Another reader of the same cache, with handlers of its own: register them, then `start` it.
    pub fn reader(&self) -> Arc<Informer<K>> {
        Arc::new(Informer {
            api: self.api.clone(),
            config: self.config.clone(),
            store: self.store.clone(),
            writer: Mutex::new(None),
            handlers: Default::default(),
            audience: self.audience.clone(),
            by_namespace: self.by_namespace.clone(),
            synced: self.synced.clone(),
            slim: self.slim,
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
        let mut index: NamespaceIndex<K> = HashMap::new();
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

    /// Starts the list+watch, or for a later reader joins it; either ends at `cancel` (the list+watch also for
    /// the other readers).
    pub fn start(self: &Arc<Self>, cancel: CancellationToken, tasks: &TaskTracker) {
        {
            let mut audience = self.audience.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if *self.synced.borrow() {
                // What the cache already holds, as created. Under the audience lock, so no change is heard in
                // between; one applied to the store but not yet announced may be heard twice, which handlers
                // (that map objects to work-queue keys) take in their stride.
                let handlers = self.handlers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                for object in self.store.state() {
                    let change = Change::Applied { old: None, new: object.as_ref() };
                    for handler in handlers.iter() {
                        handler(&change);
                    }
                }
            }
            audience.push(Audience { handlers: self.handlers.clone(), until: cancel.clone() });
        }
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
                if let Some(slim) = self.slim {
                    slim(object);
                }
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
        let mut audience = self.audience.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        audience.retain(|reader| !reader.until.is_cancelled());
        for reader in audience.iter() {
            for handler in reader.handlers.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).iter() {
                handler(change);
            }
        }
    }
}
