//! The scheduler: assigns each pending pod (no `spec.nodeName`, `schedulerName` empty or `default-scheduler`) to
//! a node through the `pods/binding` subresource, as kube-scheduler does, and runs only in the replica holding the
//! `kube-scheduler` Lease.
//!
//! Decisions are made one pod at a time against an in-memory picture (`facts::Usage`: what every node has in
//! use, counting pods this scheduler bound whose binding the watch has not shown yet), so two pods never take the
//! same room; the bindings themselves are written concurrently, so throughput is not one API round trip per pod.
//! A pod that fits nowhere gets `PodScheduled=False` (reason Unschedulable), a FailedScheduling event saying why
//! for each node, and waits until a node or an assigned pod changes (or a minute passes), with a back-off of 1 s
//! doubling to 10 s between attempts.
//!
//! As upstream, a decision does not filter every node of a large cluster: filtering stops once enough feasible
//! nodes are found (`feasible_nodes_to_find`, upstream's adaptive percentageOfNodesToScore), and the next pod starts
//! where this one stopped, so every node gets its turn.
//!
//! The plugins: `plugins.rs` (node by node: NodeUnschedulable, NodeName, TaintToleration, NodeAffinity,
//! NodePorts, NodeResourcesFit, and their scores), `volumes.rs` (VolumeBinding), `topology.rs`
//! (PodTopologySpread) and `affinity.rs` (InterPodAffinity), the last two computing, once per decision and only
//! for a pod they concern, which pods are in which topology domain (`domains.rs`).
//!
//! Priorities: the queue hands out pods of higher `spec.priority` first (PrioritySort), and a pod that fits
//! nowhere may preempt pods of lower priority (`preemption.rs`, DefaultPreemption): the victims get a
//! DisruptionTarget condition and are deleted, and the pod is nominated to the node. The room a nominated pod
//! waits for is held for it: pods of lower priority are filtered as if it were already there.

mod affinity;
mod domains;
mod facts;
pub(crate) mod plugins;
mod preemption;
mod topology;
mod volumes;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Binding, Namespace, Node, ObjectReference, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::watcher;
use serde_json::json;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::controllers::events::{Kind, Recorder};
use crate::controllers::informer::{Change, Informer};
use crate::controllers::queue::{self, WorkQueue};
use crate::controllers::SharedCaches;
use facts::{NodeFacts, NodeUsage, PodFacts, Usage};
use preemption::{Candidate, Eligibility};

pub const SCHEDULER_NAME: &str = "default-scheduler";
/// Bindings written at once.
const BINDINGS_IN_FLIGHT: usize = 64;
const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A pod that fits nowhere is tried again at least this often, even if nothing it waits for changed.
const UNSCHEDULABLE_RETRY: Duration = Duration::from_secs(60);

struct Scheduler {
    client: kube::Client,
    pods: Arc<Informer<Pod>>,
    nodes: Arc<Informer<Node>>,
    /// For the namespace selectors of inter-pod affinity terms.
    namespaces: Arc<Informer<Namespace>>,
    /// For preemption, which spares pods these protect where it can.
    budgets: Arc<Informer<PodDisruptionBudget>>,
    /// Each node's parsed allocatable room, by node name, kept in step with the node cache.
    node_facts: Arc<Mutex<HashMap<String, NodeFacts>>>,
    /// Where in the node list the next decision starts filtering.
    next_start_node: AtomicUsize,
    usage: Arc<Mutex<Usage>>,
    queue: WorkQueue,
    /// Pods that fit nowhere, with how many attempts they have had.
    waiting: Arc<Mutex<HashMap<queue::Key, u32>>>,
    /// The waiting pods with inter-pod affinity terms: a pod placed anywhere may be what they wait for.
    waiting_for_pods: Arc<Mutex<std::collections::HashSet<queue::Key>>>,
    /// Pending pods nominated to a node by preemption (`status.nominatedNodeName`), by uid: (node, facts).
    nominated: Arc<Mutex<HashMap<String, (String, PodFacts)>>>,
    bindings: Arc<Semaphore>,
    events: Recorder,
    volumes: volumes::Volumes,
}

/// Runs the scheduler until `cancel`.
pub(crate) async fn run(client: kube::Client, caches: Arc<SharedCaches>, cancel: CancellationToken) {
    let tasks = TaskTracker::new();
    let pods = caches.pods.reader();
    let nodes = caches.nodes.reader();
    let namespaces: Arc<Informer<Namespace>> = Informer::new(Api::all(client.clone()), watcher::Config::default());
    let budgets: Arc<Informer<PodDisruptionBudget>> =
        Informer::new(Api::all(client.clone()), watcher::Config::default());
    let priority_pods = pods.clone();
    let scheduler = Arc::new(Scheduler {
        client: client.clone(),
        pods: pods.clone(),
        nodes: nodes.clone(),
        namespaces: namespaces.clone(),
        budgets: budgets.clone(),
        node_facts: Default::default(),
        next_start_node: AtomicUsize::new(0),
        usage: Default::default(),
        queue: WorkQueue::with_priority(move |key| {
            let (namespace, name) = queue::split(key);
            priority_pods.get(namespace, name).and_then(|pod| pod.spec.as_ref()?.priority).unwrap_or(0)
        }),
        waiting: Default::default(),
        waiting_for_pods: Default::default(),
        nominated: Default::default(),
        bindings: Arc::new(Semaphore::new(BINDINGS_IN_FLIGHT)),
        events: Recorder::new(client.clone(), SCHEDULER_NAME),
        volumes: volumes::Volumes::new(&client),
    });
    scheduler.follow_changes();
    pods.start(cancel.clone(), &tasks);
    nodes.start(cancel.clone(), &tasks);
    namespaces.start(cancel.clone(), &tasks);
    budgets.start(cancel.clone(), &tasks);
    scheduler.volumes.start(cancel.clone(), &tasks);
    let retry_waiting = scheduler.clone();
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(UNSCHEDULABLE_RETRY);
        loop {
            tick.tick().await;
            retry_waiting.wake_waiting();
        }
    });
    tokio::select! {
        () = cancel.cancelled() => {}
        () = scheduler.clone().schedule_loop() => {}
    }
    tasks.close();
    tasks.wait().await;
}

/// Whether this scheduler is the one to place `pod`.
fn pending(pod: &Pod) -> bool {
    let Some(spec) = pod.spec.as_ref() else { return false };
    let ours = matches!(spec.scheduler_name.as_deref(), None | Some("") | Some(SCHEDULER_NAME));
    let unassigned = spec.node_name.as_deref().unwrap_or("").is_empty();
    ours && unassigned && pod.metadata.deletion_timestamp.is_none() && !finished(pod)
}

fn finished(pod: &Pod) -> bool {
    matches!(pod.status.as_ref().and_then(|status| status.phase.as_deref()), Some("Succeeded" | "Failed"))
}

fn pod_key(pod: &Pod) -> queue::Key {
    queue::key(pod.metadata.namespace.as_deref(), pod.metadata.name.as_deref().unwrap_or_default())
}

impl Scheduler {
    /// Keeps `usage` and the queue in step with the caches.
    fn follow_changes(self: &Arc<Self>) {
        let scheduler = self.clone();
        self.pods.on_change(move |change| {
            let (pod, deleted) = match change {
                Change::Applied { new, .. } => (*new, false),
                Change::Deleted(old) => (*old, true),
            };
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            let node = pod.spec.as_ref().and_then(|spec| spec.node_name.clone()).unwrap_or_default();
            scheduler.follow_nomination(&uid, (!deleted && pending(pod)).then_some(pod));
            if !deleted && pending(pod) {
                let key = pod_key(pod);
                // A pod that fits nowhere waits for a change in the cluster, not for changes to itself (such as
                // the PodScheduled condition this scheduler just wrote).
                if !scheduler.waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).contains_key(&key) {
                    scheduler.queue.add(key);
                }
                return;
            }
            let mut usage = scheduler.usage.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if deleted || finished(pod) || node.is_empty() {
                let freed = usage.counts(&uid);
                usage.release(&uid);
                drop(usage);
                if freed {
                    // Room was made: pods that fit nowhere may fit now.
                    scheduler.wake_waiting();
                }
            } else {
                let placed = !usage.counts(&uid);
                usage.assign(&uid, &node, PodFacts::of(pod));
                drop(usage);
                if placed {
                    scheduler.wake_waiting_for_pods();
                }
            }
        });
        let scheduler = self.clone();
        self.volumes.on_change(move || scheduler.wake_waiting());
        let scheduler = self.clone();
        self.nodes.on_change(move |change| {
            {
                let mut node_facts = scheduler.node_facts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                match change {
                    Change::Applied { new, .. } => {
                        node_facts.insert(new.metadata.name.clone().unwrap_or_default(), NodeFacts::of(new));
                    }
                    Change::Deleted(old) => {
                        node_facts.remove(old.metadata.name.as_deref().unwrap_or_default());
                    }
                }
            }
            let changed = match change {
                Change::Applied { old: None, .. } => true,
                Change::Applied { old: Some(old), new } => {
                    old.spec != new.spec
                        || old.metadata.labels != new.metadata.labels
                        || allocatable(old) != allocatable(new)
                }
                Change::Deleted(_) => false,
            };
            if changed {
                scheduler.wake_waiting();
            }
        });
    }

    /// Keeps `nominated` in step with a pod's `status.nominatedNodeName` while it is pending (`None` once it is
    /// not: bound, deleted or finished).
    fn follow_nomination(&self, uid: &str, pending: Option<&Pod>) {
        let nominated_node =
            pending.and_then(|pod| pod.status.as_ref()?.nominated_node_name.as_deref()).filter(|node| !node.is_empty());
        let mut nominated = self.nominated.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match (nominated_node, pending) {
            (Some(node), Some(pod)) => {
                nominated.insert(uid.to_string(), (node.to_string(), PodFacts::of(pod)));
            }
            _ => {
                nominated.remove(uid);
            }
        }
    }

    /// Upstream's PodEligibleToPreemptOthers: not with `preemptionPolicy: Never`, and not again while a victim
    /// of lower priority on the pod's nominated node is still terminating.
    fn eligibility(&self, pod: &Pod, facts: &PodFacts) -> Eligibility {
        let spec = pod.spec.as_ref();
        if spec.and_then(|spec| spec.preemption_policy.as_deref()) == Some("Never") {
            return Eligibility::Never;
        }
        let nominated = pod.status.as_ref().and_then(|status| status.nominated_node_name.as_deref());
        let Some(nominated) = nominated.filter(|node| !node.is_empty()) else { return Eligibility::Eligible };
        let terminating_victim = self.pods.list().iter().any(|other| {
            other.metadata.deletion_timestamp.is_some()
                && other.spec.as_ref().and_then(|spec| spec.node_name.as_deref()) == Some(nominated)
                && other.spec.as_ref().and_then(|spec| spec.priority).unwrap_or(0) < facts.priority
        });
        if terminating_victim {
            Eligibility::VictimsTerminating
        } else {
            Eligibility::Eligible
        }
    }

    /// Moves every pod that fit nowhere back to the queue, each after its back-off.
    fn wake_waiting(&self) {
        let waiting = std::mem::take(&mut *self.waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
        self.waiting_for_pods.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clear();
        for (key, attempts) in waiting {
            self.queue.add_after(key, backoff(attempts));
        }
    }

    /// Moves the waiting pods with inter-pod affinity terms back to the queue, after a pod was placed: it may be
    /// the one their podAffinity waits for (upstream requeues on an assigned pod's add for InterPodAffinity).
    fn wake_waiting_for_pods(&self) {
        let keys = std::mem::take(&mut *self.waiting_for_pods.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
        if keys.is_empty() {
            return;
        }
        let mut waiting = self.waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for key in keys {
            if let Some(attempts) = waiting.remove(&key) {
                self.queue.add_after(key, backoff(attempts));
            }
        }
    }

    async fn schedule_loop(self: Arc<Self>) {
        self.pods.synced().await;
        self.nodes.synced().await;
        self.namespaces.synced().await;
        self.volumes.synced().await;
        loop {
            let key = self.queue.next().await;
            self.schedule_one(&key).await;
            self.queue.done(&key);
        }
    }

    async fn schedule_one(self: &Arc<Self>, key: &str) {
        let (namespace, name) = queue::split(key);
        let Some(pod) = self.pods.get(namespace, name) else { return };
        if !pending(&pod) {
            return;
        }
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if self.usage.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).counts(&uid) {
            // Bound already; the watch has not caught up.
            return;
        }
        let facts = PodFacts::of(&pod);
        let nodes = self.nodes.list();
        let claims = self.volumes.claims_of(&pod);
        let eligibility = self.eligibility(&pod, &facts);
        let decision = {
            let node_facts = self.node_facts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let usage = self.usage.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let reserved = self.reserved_for_nominated(&uid, &facts, &usage);
            let node_usage = |node_name: &str| reserved.get(node_name).or_else(|| usage.node(node_name));
            let topology = domains::PreFilter::new(&pod, &facts, &nodes, &usage, &self.pods, &self.namespaces);
            let wanted = feasible_nodes_to_find(nodes.len());
            let start = self.next_start_node.load(Ordering::Relaxed) % nodes.len().max(1);
            let mut feasible = Vec::new();
            let mut unfit: BTreeMap<String, usize> = BTreeMap::new();
            // Nodes where removing pods could make room, for preemption.
            let mut curable = Vec::new();
            let mut processed = 0;
            for offset in 0..nodes.len() {
                let node = &nodes[(start + offset) % nodes.len()];
                processed += 1;
                let node_name = node.metadata.name.as_deref().unwrap_or_default();
                let room = node_facts.get(node_name).copied().unwrap_or_else(|| NodeFacts::of(node));
                match plugins::filter(&pod, &facts, node, &room, node_usage(node_name))
                    .and_then(|()| volumes::filter(&claims, node))
                    .and_then(|()| topology.filter(node))
                {
                    Ok(()) => {
                        feasible.push((node, room));
                        if feasible.len() >= wanted {
                            break;
                        }
                    }
                    Err(why) => {
                        if preemption::removing_pods_helps(&why) {
                            curable.push((node, room));
                        }
                        *unfit.entry(why.reason()).or_insert(0) += 1;
                    }
                }
            }
            self.next_start_node.store((start + processed) % nodes.len().max(1), Ordering::Relaxed);
            if feasible.is_empty() {
                let mut message = unschedulable_message(nodes.len(), &unfit);
                let mut preempt = None;
                if claims.is_ok() {
                    if let Some(why_not) = eligibility.why_not() {
                        message = format!("{message} {why_not}.");
                    } else {
                        // Candidates must pass the filters preemption does not simulate.
                        let curable: Vec<_> = curable
                            .into_iter()
                            .filter(|(node, _)| {
                                volumes::filter(&claims, node).and_then(|()| topology.filter(node)).is_ok()
                            })
                            .collect();
                        let candidates = self.preemption_candidates(&pod, &facts, &curable, &usage, &node_usage);
                        if candidates.is_empty() {
                            let no_victims = curable.len();
                            let post = preemption::failure_message(nodes.len(), nodes.len() - no_victims, no_victims);
                            message = format!("{message} {post}.");
                        }
                        preempt = preemption::pick(candidates);
                    }
                }
                Err((message, preempt))
            } else {
                let raw: Vec<_> = feasible
                    .iter()
                    .map(|(node, room)| {
                        let node_name = node.metadata.name.as_deref().unwrap_or_default();
                        plugins::raw_scores(&pod, &facts, node, room, node_usage(node_name))
                    })
                    .collect();
                let topology_scores = topology.scores(feasible.iter().map(|(node, _)| node.as_ref()));
                let totals = plugins::total_scores(&raw, &topology_scores);
                let best = totals.iter().copied().max().unwrap_or(0);
                let candidates: Vec<usize> = (0..totals.len()).filter(|index| totals[*index] == best).collect();
                let chosen = candidates[rand::random_range(0..candidates.len())];
                Ok(feasible[chosen].0.metadata.name.clone().unwrap_or_default())
            }
        };
        let decision = match decision {
            Ok(node) => Ok(node),
            Err((message, preempt)) => {
                volumes::prefilter(Err(message), &claims, nodes.len()).map_err(|message| (message, preempt))
            }
        };
        match decision {
            Ok(node) => {
                self.usage.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).assign(&uid, &node, facts);
                self.waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(key);
                self.nominated.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&uid);
                self.wake_waiting_for_pods();
                let Ok(permit) = self.bindings.clone().acquire_owned().await else { return };
                let scheduler = self.clone();
                let key = key.to_string();
                tokio::spawn(async move {
                    let result = scheduler.bind(&pod, &node).await;
                    drop(permit);
                    if let Err(error) = result {
                        tracing::debug!(pod = %key, node = %node, error = %error, "binding failed; the pod goes back in the queue");
                        scheduler.usage.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).release(&uid);
                        scheduler.queue.retry(key);
                    }
                });
            }
            Err((message, preempt)) => {
                let attempts = {
                    let mut waiting = self.waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                    let attempts = waiting.get(key).map_or(0, |attempts| attempts + 1);
                    waiting.insert(key.to_string(), attempts);
                    attempts
                };
                if facts.pod_affinity.is_some() {
                    self.waiting_for_pods
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .insert(key.to_string());
                }
                if attempts == 0 || attempts % 8 == 0 {
                    tracing::info!(pod = key, reason = %message, "pod fits no node");
                }
                self.events.publish(pod.as_ref(), Kind::Warning, "FailedScheduling", message.clone());
                self.mark_unschedulable(&pod, &message).await;
                let nominated = pod.status.as_ref().and_then(|status| status.nominated_node_name.as_deref());
                match preempt {
                    Some(candidate) => self.preempt(&pod, facts, candidate).await,
                    // Preemption cannot help any more: the pod gives up the room held for it (as upstream).
                    None if eligibility == Eligibility::Eligible && nominated.is_some_and(|node| !node.is_empty()) => {
                        self.nominated.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&uid);
                        self.set_nominated_node(key, None).await;
                    }
                    None => {}
                }
            }
        }
    }

    /// What each node has in use plus the pods nominated to it that rank at least as high as the pod being
    /// scheduled (upstream's nominated pods in the filter), for the nodes that have such pods.
    fn reserved_for_nominated(&self, uid: &str, facts: &PodFacts, usage: &Usage) -> HashMap<String, NodeUsage> {
        let nominated = self.nominated.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut reserved: HashMap<String, NodeUsage> = HashMap::new();
        for (other_uid, (node, other)) in nominated.iter() {
            if other_uid != uid && other.priority >= facts.priority && !usage.counts(other_uid) {
                reserved
                    .entry(node.clone())
                    .or_insert_with(|| usage.node(node).cloned().unwrap_or_default())
                    .add(other);
            }
        }
        reserved
    }

    /// The dry run of preemption on each node where removing pods could make room.
    fn preemption_candidates<'u>(
        &self,
        pod: &Pod,
        facts: &PodFacts,
        curable: &[(&Arc<Node>, NodeFacts)],
        usage: &'u Usage,
        node_usage: &dyn Fn(&str) -> Option<&'u NodeUsage>,
    ) -> Vec<Candidate> {
        if curable.is_empty() {
            return Vec::new();
        }
        let mut on_node: HashMap<&str, Vec<(&str, &PodFacts)>> =
            curable.iter().map(|(node, _)| (node.metadata.name.as_deref().unwrap_or_default(), Vec::new())).collect();
        for (uid, node, other) in usage.pods() {
            if let Some(pods) = on_node.get_mut(node) {
                pods.push((uid, other));
            }
        }
        let budgets = preemption::Budgets::new(self.budgets.list().iter().map(|budget| budget.as_ref()));
        let violations = |victims: &[&PodFacts]| {
            let pods: Vec<Option<Arc<Pod>>> = victims
                .iter()
                .map(|victim| {
                    let (namespace, name) = queue::split(&victim.key);
                    self.pods.get(namespace, name)
                })
                .collect();
            let covered: Vec<preemption::Covered<'_>> = victims
                .iter()
                .zip(&pods)
                .map(|(victim, pod)| {
                    let (namespace, name) = queue::split(&victim.key);
                    preemption::Covered {
                        namespace,
                        name,
                        labels: pod.as_ref().and_then(|pod| pod.metadata.labels.as_ref()),
                    }
                })
                .collect();
            budgets.violations(&covered)
        };
        curable
            .iter()
            .filter_map(|(node, room)| {
                let node_name = node.metadata.name.as_deref().unwrap_or_default();
                let pods = on_node.get(node_name).map(Vec::as_slice).unwrap_or_default();
                let (victims, violations) =
                    preemption::select_victims(pod, facts, node, room, node_usage(node_name), pods, &violations)?;
                Some(Candidate { node: node_name.to_string(), victims, violations })
            })
            .collect()
    }

    /// Carries out a preemption as upstream's prepareCandidate: each victim gets `DisruptionTarget=True` (reason
    /// PreemptionByScheduler) and is deleted, with a Preempted event; pods of lower priority nominated to the node
    /// lose their nomination; the pod is nominated to the node and waits for the room.
    async fn preempt(&self, pod: &Pod, facts: PodFacts, candidate: Candidate) {
        let preemptor = pod_key(pod);
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let node = candidate.node;
        tracing::info!(pod = %preemptor, node = %node, victims = candidate.victims.len(), "preempting pods of lower priority");
        let evictions = candidate.victims.iter().map(|victim| self.evict(victim, &uid, &node));
        futures::future::join_all(evictions).await;
        let lower_nominated: Vec<(String, String)> = {
            let nominated = self.nominated.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            nominated
                .iter()
                .filter(|(other_uid, (other_node, other))| {
                    **other_uid != uid && *other_node == node && other.priority < facts.priority
                })
                .map(|(other_uid, (_, other))| (other_uid.clone(), other.key.clone()))
                .collect()
        };
        for (other_uid, other_key) in lower_nominated {
            self.nominated.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&other_uid);
            self.set_nominated_node(&other_key, None).await;
        }
        self.nominated.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(uid, (node.clone(), facts));
        self.set_nominated_node(&preemptor, Some(&node)).await;
    }

    /// One victim: the DisruptionTarget condition, then the delete (of this pod, not of a namesake made since).
    async fn evict(&self, victim: &preemption::Victim, preemptor_uid: &str, node: &str) {
        let (namespace, name) = queue::split(&victim.key);
        let Some(victim_pod) = self.pods.get(namespace, name) else { return };
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let condition = json!({"status": {"conditions": [{
            "type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler",
            "message": format!("{SCHEDULER_NAME}: preempting to accommodate a higher priority pod"),
            "lastTransitionTime": crate::apiserver::now(),
        }]}});
        if let Err(error) = pods.patch_status(name, &PatchParams::default(), &Patch::Strategic(&condition)).await {
            tracing::debug!(pod = %victim.key, error = %error, "cannot set DisruptionTarget on a preemption victim");
            return;
        }
        let delete = DeleteParams {
            preconditions: Some(Preconditions { uid: Some(victim.uid.clone()), resource_version: None }),
            ..DeleteParams::default()
        };
        if let Err(error) = pods.delete(name, &delete).await {
            tracing::debug!(pod = %victim.key, error = %error, "cannot delete a preemption victim");
            return;
        }
        self.events.publish(
            victim_pod.as_ref(),
            Kind::Normal,
            "Preempted",
            format!("Preempted by pod {preemptor_uid} on node {node}"),
        );
    }

    async fn set_nominated_node(&self, key: &str, node: Option<&str>) {
        let (namespace, name) = queue::split(key);
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let patch = json!({"status": {"nominatedNodeName": node}});
        if let Err(error) = pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            tracing::debug!(pod = key, error = %error, "cannot set status.nominatedNodeName");
        }
    }

    async fn bind(&self, pod: &Pod, node: &str) -> Result<(), kube::Error> {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let binding = Binding {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(namespace.to_string()),
                uid: pod.metadata.uid.clone(),
                ..Default::default()
            },
            target: ObjectReference { kind: Some("Node".into()), name: Some(node.to_string()), ..Default::default() },
        };
        self.volumes.select_node(&self.client, pod, node).await?;
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        pods.create_subresource::<Binding, serde_json::Value>("binding", name, &PostParams::default(), &binding)
            .await?;
        self.events.publish(
            pod,
            Kind::Normal,
            "Scheduled",
            format!("Successfully assigned {namespace}/{name} to {node}"),
        );
        Ok(())
    }

    /// Sets `PodScheduled=False` (reason Unschedulable) unless the pod already says so with this message.
    async fn mark_unschedulable(&self, pod: &Pod, message: &str) {
        let current = pod
            .status
            .as_ref()
            .and_then(|status| status.conditions.as_ref())
            .and_then(|conditions| conditions.iter().find(|condition| condition.type_ == "PodScheduled"));
        if current.is_some_and(|condition| condition.status == "False" && condition.message.as_deref() == Some(message))
        {
            return;
        }
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let patch = json!({"status": {"conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message,
            "lastProbeTime": null, "lastTransitionTime": crate::apiserver::now(),
        }]}});
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        if let Err(error) = pods.patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch)).await {
            tracing::debug!(pod = name, error = %error, "cannot set PodScheduled=False");
        }
    }
}

/// How long a pod that fit nowhere waits before its next attempt: 1 s, doubling with each attempt, at most 10 s.
fn backoff(attempts: u32) -> Duration {
    INITIAL_BACKOFF.saturating_mul(1 << attempts.min(4)).min(MAX_BACKOFF)
}

fn allocatable(node: &Node) -> Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>> {
    node.status.as_ref().and_then(|status| status.allocatable.as_ref())
}

/// How many feasible nodes a decision looks for before it stops filtering: every node up to 100, then upstream's
/// adaptive percentageOfNodesToScore (50 % less 1 % per 125 nodes, at least 5 %), never fewer than 100.
fn feasible_nodes_to_find(nodes: usize) -> usize {
    const MIN_FEASIBLE: usize = 100;
    if nodes <= MIN_FEASIBLE {
        return nodes;
    }
    let percentage = 50usize.saturating_sub(nodes / 125).max(5);
    (nodes * percentage / 100).max(MIN_FEASIBLE)
}

/// Upstream's FailedScheduling message: `0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated
/// taint {…}.`, reasons sorted.
fn unschedulable_message(nodes: usize, unfit: &BTreeMap<String, usize>) -> String {
    if nodes == 0 {
        return "0/0 nodes are available: no nodes available to schedule pods.".to_string();
    }
    let reasons: Vec<String> = unfit.iter().map(|(reason, count)| format!("{count} {reason}")).collect();
    format!("0/{nodes} nodes are available: {}.", reasons.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_clusters_are_sampled_as_upstream() {
        assert_eq!(feasible_nodes_to_find(3), 3);
        assert_eq!(feasible_nodes_to_find(100), 100);
        assert_eq!(feasible_nodes_to_find(500), 230);
        assert_eq!(feasible_nodes_to_find(5000), 500);
        assert_eq!(feasible_nodes_to_find(100_000), 5000);
    }

    #[test]
    fn failure_messages_read_as_upstream() {
        let mut unfit = BTreeMap::new();
        unfit.insert("Insufficient cpu".to_string(), 2);
        unfit.insert("node(s) had untolerated taint {dedicated: gpu}".to_string(), 1);
        assert_eq!(
            unschedulable_message(3, &unfit),
            "0/3 nodes are available: 2 Insufficient cpu, 1 node(s) had untolerated taint {dedicated: gpu}."
        );
        assert_eq!(
            unschedulable_message(0, &BTreeMap::new()),
            "0/0 nodes are available: no nodes available to schedule pods."
        );
    }
}
