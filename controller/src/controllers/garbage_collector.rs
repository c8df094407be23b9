//! Garbage collection by ownerReferences, as upstream's collector: an object whose owners are all gone is deleted
//! (background), an owner deleted with `propagationPolicy: Orphan` first releases its dependents (finalizer
//! `orphan`), and one deleted with `Foreground` first waits for its dependents to go (finalizer
//! `foregroundDeletion`). A dependent with another owner that stays is never deleted with one of its owners: it
//! only loses the reference to the owner that went.
//!
//! One watcher per listable resource keeps a graph of every object's uid and owners; all decisions are taken on
//! one task, from that graph, and carried out as ordinary API calls.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams, PropagationPolicy};
use kube::runtime::watcher;
use serde_json::json;
use tokio::sync::mpsc;

use crate::apiserver::registry::ResourceDef;
use crate::apiserver::ApiServer;

/// One object in the graph.
#[derive(Debug, Clone)]
struct Node {
    def: Arc<ResourceDef>,
    namespace: Option<String>,
    name: String,
    /// Owner uids, with blockOwnerDeletion.
    owners: Vec<(String, bool)>,
    deleting: bool,
    finalizers: Vec<String>,
}

enum Change {
    Upsert(String, Node),
    Remove(String),
    /// Every watcher finished its first list: objects whose owners were never seen can be judged.
    Synced,
}

pub async fn run(client: kube::Client, api: Arc<ApiServer>) {
    let (changes, mut received) = mpsc::channel::<Change>(1024);
    let defs: Vec<Arc<ResourceDef>> = api.registry().iter().filter(|def| super::listable(def)).cloned().collect();
    let pending_initial = Arc::new(std::sync::atomic::AtomicUsize::new(defs.len()));
    for def in defs {
        tokio::spawn(watch_resource(client.clone(), def, changes.clone(), pending_initial.clone()));
    }
    drop(changes);

    let mut nodes: HashMap<String, Node> = HashMap::new();
    // Owner uid → uids of the objects that name it, so no decision scans the whole graph.
    let mut dependents: HashMap<String, HashSet<String>> = HashMap::new();
    let mut synced = false;
    let mut dirty: HashSet<String> = HashSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            change = received.recv() => match change {
                Some(Change::Upsert(uid, node)) => {
                    if let Some(previous) = nodes.get(&uid) {
                        for (owner, _) in &previous.owners {
                            dirty.insert(owner.clone());
                            unlink(&mut dependents, owner, &uid);
                        }
                    }
                    dirty.insert(uid.clone());
                    for (owner, _) in &node.owners {
                        dirty.insert(owner.clone());
                        dependents.entry(owner.clone()).or_default().insert(uid.clone());
                    }
                    nodes.insert(uid, node);
                }
                Some(Change::Remove(uid)) => {
                    if let Some(node) = nodes.remove(&uid) {
                        for (owner, _) in &node.owners {
                            dirty.insert(owner.clone());
                            unlink(&mut dependents, owner, &uid);
                        }
                    }
                    // Dependents of a removed owner need a decision.
                    if let Some(orphans) = dependents.get(&uid) {
                        dirty.extend(orphans.iter().cloned());
                    }
                }
                Some(Change::Synced) => {
                    synced = true;
                    dirty.extend(nodes.keys().cloned());
                }
                None => return,
            },
            _ = tick.tick(), if !dirty.is_empty() => {
                let work: Vec<String> = dirty.drain().collect();
                for uid in work {
                    decide(&client, &nodes, &dependents, &uid, synced).await;
                }
            }
        }
    }
}

fn unlink(dependents: &mut HashMap<String, HashSet<String>>, owner: &str, uid: &str) {
    if let Some(set) = dependents.get_mut(owner) {
        set.remove(uid);
        if set.is_empty() {
            dependents.remove(owner);
        }
    }
}

async fn watch_resource(
    client: kube::Client,
    def: Arc<ResourceDef>,
    changes: mpsc::Sender<Change>,
    pending_initial: Arc<std::sync::atomic::AtomicUsize>,
) {
    let objects = super::dynamic_api(&client, &def, None);
    let mut stream = watcher(objects, watcher::Config::default()).boxed();
    let mut counted = false;
    while let Some(event) = stream.next().await {
        let event = match event {
            Ok(event) => event,
            Err(_) => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let message = match event {
            watcher::Event::Apply(object) | watcher::Event::InitApply(object) => upsert(&def, object),
            watcher::Event::Delete(object) => object.metadata.uid.map(Change::Remove),
            watcher::Event::Init => None,
            watcher::Event::InitDone => {
                if !counted {
                    counted = true;
                    if pending_initial.fetch_sub(1, std::sync::atomic::Ordering::AcqRel) == 1 {
                        let _ = changes.send(Change::Synced).await;
                    }
                }
                None
            }
        };
        if let Some(message) = message {
            if changes.send(message).await.is_err() {
                return;
            }
        }
    }
}

fn upsert(def: &Arc<ResourceDef>, object: DynamicObject) -> Option<Change> {
    let metadata = object.metadata;
    let uid = metadata.uid?;
    let owners = metadata
        .owner_references
        .unwrap_or_default()
        .into_iter()
        .map(|owner| (owner.uid, owner.block_owner_deletion.unwrap_or(false)))
        .collect();
    Some(Change::Upsert(
        uid,
        Node {
            def: def.clone(),
            namespace: metadata.namespace,
            name: metadata.name.unwrap_or_default(),
            owners,
            deleting: metadata.deletion_timestamp.is_some(),
            finalizers: metadata.finalizers.unwrap_or_default(),
        },
    ))
}

/// Looks at one object, as owner and as dependent, and acts.
async fn decide(
    client: &kube::Client,
    nodes: &HashMap<String, Node>,
    index: &HashMap<String, HashSet<String>>,
    uid: &str,
    synced: bool,
) {
    let Some(node) = nodes.get(uid) else { return };
    let dependents: Vec<(&String, &Node)> =
        index.get(uid).into_iter().flatten().filter_map(|dependent| nodes.get_key_value(dependent)).collect();

    if node.deleting && node.finalizers.iter().any(|finalizer| finalizer == "orphan") {
        for (_, dependent) in &dependents {
            release(client, dependent, &[uid.to_string()]).await;
        }
        if dependents.is_empty() {
            remove_finalizer(client, node, "orphan").await;
        }
        return;
    }
    if waits_for_dependents(node) {
        // Each dependent decides for itself: one that another owner still keeps only loses this reference.
        for (dependent_uid, _) in &dependents {
            decide_as_dependent(client, nodes, index, dependent_uid, synced).await;
        }
        let blocking = dependents
            .iter()
            .any(|(_, dependent)| dependent.owners.iter().any(|(owner, block)| owner == uid && *block));
        if !blocking {
            remove_finalizer(client, node, "foregroundDeletion").await;
        }
        return;
    }
    decide_as_dependent(client, nodes, index, uid, synced).await;
}

/// Whether an owner is being deleted in the foreground: it waits for its dependents to go first.
fn waits_for_dependents(node: &Node) -> bool {
    node.deleting && node.finalizers.iter().any(|finalizer| finalizer == "foregroundDeletion")
}

/// An object's fate by its owners, as upstream's collector decides it. Owners are solid (present and not waiting
/// for their dependents), waiting (deleted in the foreground) or dangling (gone; known only after the first full
/// sync, before which an owner may just not have been listed yet):
/// - with a solid owner, the object stays, and only drops its references to waiting and dangling owners;
/// - otherwise, with a waiting owner, it is deleted (in the foreground itself when it has dependents of its own,
///   after unblocking its own references when a dependent waits too, which breaks cycles of owners);
/// - otherwise, once every owner is dangling, it is deleted in the background.
async fn decide_as_dependent(
    client: &kube::Client,
    nodes: &HashMap<String, Node>,
    index: &HashMap<String, HashSet<String>>,
    uid: &str,
    synced: bool,
) {
    let Some(node) = nodes.get(uid) else { return };
    if node.owners.is_empty() || node.deleting {
        return;
    }
    let mut solid = false;
    let mut waiting = Vec::new();
    let mut dangling = Vec::new();
    for (owner, _) in &node.owners {
        match nodes.get(owner) {
            Some(owner_node) if waits_for_dependents(owner_node) => waiting.push(owner.clone()),
            Some(_) => solid = true,
            None if synced => dangling.push(owner.clone()),
            None => {}
        }
    }
    if solid {
        let gone: Vec<String> = waiting.into_iter().chain(dangling).collect();
        if !gone.is_empty() {
            release(client, node, &gone).await;
        }
    } else if !waiting.is_empty() {
        let dependents: Vec<&Node> = index.get(uid).into_iter().flatten().filter_map(|d| nodes.get(d)).collect();
        // A dependent that itself waits for its dependents may close a cycle of owners back to this object (which
        // would then wait for it, for ever): as upstream, the object's own references stop blocking first.
        if dependents.iter().any(|dependent| waits_for_dependents(dependent)) {
            unblock_owner_references(client, node).await;
        }
        let policy = if dependents.is_empty() { PropagationPolicy::Background } else { PropagationPolicy::Foreground };
        delete(client, node, policy).await;
    } else if !dangling.is_empty() && dangling.len() == node.owners.len() {
        delete(client, node, PropagationPolicy::Background).await;
    }
}

async fn delete(client: &kube::Client, node: &Node, policy: PropagationPolicy) {
    let objects = super::dynamic_api(client, &node.def, node.namespace.as_deref());
    let params = DeleteParams { propagation_policy: Some(policy), ..DeleteParams::default() };
    if let Err(error) = objects.delete(&node.name, &params).await {
        tracing::debug!(object = %node.name, error = %error, "garbage collection delete failed");
    }
}

/// Drops `owners` from a dependent's ownerReferences (orphaning it from them).
async fn release(client: &kube::Client, dependent: &Node, owners: &[String]) {
    let objects = super::dynamic_api(client, &dependent.def, dependent.namespace.as_deref());
    let Ok(current) = objects.get(&dependent.name).await else { return };
    let references: Vec<_> = current
        .metadata
        .owner_references
        .unwrap_or_default()
        .into_iter()
        .filter(|reference| !owners.contains(&reference.uid))
        .collect();
    let patch =
        json!({"metadata": {"ownerReferences": references, "resourceVersion": current.metadata.resource_version}});
    let _ = objects.patch(&dependent.name, &PatchParams::default(), &Patch::Merge(&patch)).await;
}

/// Sets `blockOwnerDeletion: false` on every owner reference of the object.
async fn unblock_owner_references(client: &kube::Client, node: &Node) {
    let objects = super::dynamic_api(client, &node.def, node.namespace.as_deref());
    let Ok(current) = objects.get(&node.name).await else { return };
    let references: Vec<_> = current
        .metadata
        .owner_references
        .unwrap_or_default()
        .into_iter()
        .map(|mut reference| {
            reference.block_owner_deletion = reference.block_owner_deletion.map(|_| false);
            reference
        })
        .collect();
    let patch =
        json!({"metadata": {"ownerReferences": references, "resourceVersion": current.metadata.resource_version}});
    if let Err(error) = objects.patch(&node.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
        tracing::debug!(object = %node.name, error = %error, "cannot unblock the owner references");
    }
}

async fn remove_finalizer(client: &kube::Client, node: &Node, finalizer: &str) {
    let objects = super::dynamic_api(client, &node.def, node.namespace.as_deref());
    let Ok(current) = objects.get(&node.name).await else { return };
    let finalizers: Vec<String> =
        current.metadata.finalizers.unwrap_or_default().into_iter().filter(|name| name != finalizer).collect();
    let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": current.metadata.resource_version}});
    if let Err(error) = objects.patch(&node.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
        tracing::debug!(object = %node.name, error = %error, "cannot remove finalizer {finalizer}");
    }
}
