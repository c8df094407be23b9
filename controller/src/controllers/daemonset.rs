//! The DaemonSet controller: one pod on every node the template fits (nodeSelector, required node affinity,
//! taints against its tolerations), template history as ControllerRevisions, the RollingUpdate (maxUnavailable,
//! maxSurge) and OnDelete strategies, and the status `kubectl rollout status ds/X` reads (research: upstream's
//! `pkg/controller/daemon`, whose rules this follows).
//!
//! Pods are not bound here: each is pinned to its node by a required node affinity term on
//! `metadata.name` (as upstream since 1.12), so the scheduler still checks that it fits. Every daemon pod
//! tolerates what a node shows while it is unwell (not-ready, unreachable, pressure, unschedulable), as upstream
//! adds, so daemons keep running on the nodes that need them most.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodSpec, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use serde_json::json;

use super::events::{Kind, Recorder};
use super::expectations::Expectations;
use super::informer::{Change, Informer};
use super::queue::{self, WorkQueue};
use super::replicaset::{adopt, controller_of, controller_reference, is_available, object_key, ready_since, release};
use super::revisions::{self, REVISION_HASH_LABEL};
use super::{label_selector, labels_match, ReconcileError};
use crate::scheduler::plugins::{matches_node_selector_and_affinity, tolerates};

const WORKERS: usize = 2;
const MAX_FAILED_POD_BACKOFF: Duration = Duration::from_secs(15 * 60);

pub struct DaemonSetController {
    client: kube::Client,
    daemon_sets: Arc<Informer<DaemonSet>>,
    nodes: Arc<Informer<Node>>,
    pods: Arc<Informer<Pod>>,
    revisions: Arc<Informer<ControllerRevision>>,
    expectations: Arc<Expectations>,
    /// Per DaemonSet and node, when a failed pod there may next be replaced, and the delay that led to it.
    failed_pod_backoff: Mutex<HashMap<String, (Instant, Duration)>>,
    queue: WorkQueue,
    events: Recorder,
}

impl DaemonSetController {
    pub fn new(
        client: kube::Client,
        daemon_sets: Arc<Informer<DaemonSet>>,
        nodes: Arc<Informer<Node>>,
        pods: Arc<Informer<Pod>>,
        revisions: Arc<Informer<ControllerRevision>>,
    ) -> Arc<DaemonSetController> {
        let controller = Arc::new(DaemonSetController {
            events: Recorder::new(client.clone(), "daemonset-controller"),
            client,
            daemon_sets: daemon_sets.clone(),
            nodes: nodes.clone(),
            pods: pods.clone(),
            revisions: revisions.clone(),
            expectations: Default::default(),
            failed_pod_backoff: Mutex::default(),
            queue: WorkQueue::new(),
        });
        let (queue, expectations) = (controller.queue.clone(), controller.expectations.clone());
        daemon_sets.on_change(move |change| match change {
            Change::Applied { new, .. } => queue.add(object_key(*new)),
            Change::Deleted(old) => expectations.forget(&object_key(*old)),
        });
        let this = Arc::downgrade(&controller);
        nodes.on_change(move |change| {
            let Some(controller) = this.upgrade() else { return };
            // Which daemons belong on a node depends on its labels, taints and schedulability; its status only on
            // whether it is there at all.
            let relevant = match change {
                Change::Applied { old: None, .. } | Change::Deleted(_) => true,
                Change::Applied { old: Some(old), new } => {
                    old.metadata.labels != new.metadata.labels || old.spec != new.spec
                }
            };
            if relevant {
                for daemon_set in controller.daemon_sets.list() {
                    controller.queue.add(object_key(daemon_set.as_ref()));
                }
            }
        });
        let this = Arc::downgrade(&controller);
        pods.on_change(move |change| {
            if let Some(controller) = this.upgrade() {
                controller.pod_changed(change);
            }
        });
        let queue = controller.queue.clone();
        revisions.on_change(move |change| {
            let revision = match change {
                Change::Applied { new, .. } => *new,
                Change::Deleted(old) => *old,
            };
            let owner = revision.owner_references().iter().find(|owner| owner.controller == Some(true));
            if let Some(owner) = owner.filter(|owner| owner.kind == "DaemonSet") {
                queue.add(queue::key(revision.metadata.namespace.as_deref(), &owner.name));
            }
        });
        controller
    }

    fn pod_changed(&self, change: &Change<'_, Pod>) {
        match change {
            Change::Applied { old, new } => {
                match owning_daemon_set(new) {
                    Some(key) => {
                        if old.is_none() {
                            self.expectations.creation_observed(&key);
                        }
                        let deleting = new.metadata.deletion_timestamp.is_some();
                        if deleting && old.is_none_or(|old| old.metadata.deletion_timestamp.is_none()) {
                            self.expectations.deletion_observed(&key);
                        }
                        self.queue.add(key);
                    }
                    None => {
                        for key in self.matching_daemon_sets(new) {
                            self.queue.add(key);
                        }
                    }
                }
                if let Some(old_owner) = old.and_then(owning_daemon_set) {
                    if Some(&old_owner) != owning_daemon_set(new).as_ref() {
                        self.queue.add(old_owner);
                    }
                }
            }
            Change::Deleted(old) => {
                if let Some(key) = owning_daemon_set(old) {
                    if old.metadata.deletion_timestamp.is_none() {
                        self.expectations.deletion_observed(&key);
                    }
                    self.queue.add(key);
                }
            }
        }
    }

    fn matching_daemon_sets(&self, pod: &Pod) -> Vec<queue::Key> {
        let namespace = pod.namespace().unwrap_or_default();
        self.daemon_sets
            .list_namespace(&namespace)
            .into_iter()
            .filter(|ds| {
                ds.spec
                    .as_ref()
                    .and_then(|spec| label_selector(&spec.selector))
                    .is_some_and(|selector| labels_match(&selector, pod.metadata.labels.as_ref()))
            })
            .map(|ds| object_key(ds.as_ref()))
            .collect()
    }

    pub async fn run(self: Arc<Self>) {
        self.daemon_sets.synced().await;
        self.nodes.synced().await;
        self.pods.synced().await;
        self.revisions.synced().await;
        let controller = self.clone();
        queue::run_workers("daemonset", self.queue.clone(), WORKERS, move |key| {
            let controller = controller.clone();
            async move { controller.reconcile(&key).await }
        })
        .await;
    }

    async fn reconcile(&self, key: &str) -> Result<(), ReconcileError> {
        let (namespace, name) = queue::split(key);
        let Some(ds) = self.daemon_sets.get(namespace, name) else {
            self.expectations.forget(key);
            return Ok(());
        };
        // The garbage collector removes the pods and revisions of a deleted DaemonSet.
        if ds.metadata.deletion_timestamp.is_some() {
            return Ok(());
        }
        let Some(spec) = ds.spec.as_ref() else { return Ok(()) };
        let Some(selector) = label_selector(&spec.selector) else { return Ok(()) };
        let template = spec.template.clone();
        let collision_count = ds.status.as_ref().and_then(|status| status.collision_count);
        let history =
            match revisions::sync(&self.client, &self.revisions, ds.as_ref(), &template, collision_count).await {
                Ok(history) => history,
                Err(revisions::SyncError::Collision) => {
                    let api: Api<DaemonSet> = Api::namespaced(self.client.clone(), namespace);
                    let patch = json!({"status": {"collisionCount": collision_count.unwrap_or(0) + 1}});
                    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
                    return Err(ReconcileError::Other("revision name collision; retrying with a new hash".into()));
                }
                Err(error) => return Err(error.into()),
            };
        let hash = history.current_hash();
        let pods = self.claim_pods(&ds, &selector).await;
        let plan = Plan::new(&ds, &self.nodes.list(), &pods, &hash);

        if self.expectations.satisfied(key) {
            let (mut create_on, mut delete) = plan.manage();
            delete = self.back_off_failed_pods(key, &ds, delete);
            if create_on.is_empty() && delete.is_empty() && rolling_update(&ds) {
                (create_on, delete) = plan.rolling_update();
            }
            self.sync_nodes(key, &ds, &hash, &create_on, &delete).await?;
        }

        let status = plan.status();
        if ds.status.as_ref().map(without_collision_count) != Some(status.clone()) {
            let api: Api<DaemonSet> = Api::namespaced(self.client.clone(), namespace);
            let patch = json!({"status": status_patch(&status)});
            api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        }
        let live_hashes: HashSet<String> =
            pods.iter().filter_map(|pod| pod.labels().get(REVISION_HASH_LABEL).cloned()).collect();
        revisions::clean_up(&self.client, &history, &live_hashes, spec.revision_history_limit.unwrap_or(10)).await;
        if spec.min_ready_seconds.unwrap_or(0) > 0 && status.number_available < Some(status.number_ready) {
            // Look again once ready pods have been ready long enough to count as available.
            self.queue.add_after(key.to_string(), Duration::from_secs(1));
        }
        Ok(())
    }

    /// Drops from `delete` the failed pods whose node is in back-off (1 s doubling to 15 minutes per DaemonSet and
    /// node, as upstream), so a daemon that fails at once does not make a create-delete loop.
    fn back_off_failed_pods(&self, key: &str, ds: &DaemonSet, delete: Vec<Arc<Pod>>) -> Vec<Arc<Pod>> {
        let now = Instant::now();
        let mut backoff = self.failed_pod_backoff.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        delete
            .into_iter()
            .filter(|pod| {
                if pod.status.as_ref().and_then(|status| status.phase.as_deref()) != Some("Failed") {
                    return true;
                }
                let node = target_node(pod).unwrap_or_default();
                let backoff_key = format!("{key}/{node}");
                match backoff.get(&backoff_key).copied() {
                    Some((until, _)) if now < until => {
                        self.queue.add_after(key.to_string(), until - now);
                        false
                    }
                    previous => {
                        // A node quiet for longer than the longest delay starts again from the shortest.
                        let delay = match previous {
                            Some((until, delay)) if now.duration_since(until) < MAX_FAILED_POD_BACKOFF => {
                                (delay * 2).min(MAX_FAILED_POD_BACKOFF)
                            }
                            _ => Duration::from_secs(1),
                        };
                        backoff.insert(backoff_key, (now + delay, delay));
                        let message = format!(
                            "Found failed daemon pod {}/{} on node {node}, will try to kill it",
                            pod.namespace().unwrap_or_default(),
                            pod.name_any()
                        );
                        self.events.publish(ds, Kind::Warning, "FailedDaemonPod", message);
                        true
                    }
                }
            })
            .collect()
    }

    /// The pods this DaemonSet controls: owned ones that still match, plus matching orphans it adopts.
    async fn claim_pods(&self, ds: &DaemonSet, selector: &crate::apiserver::selector::LabelSelector) -> Vec<Arc<Pod>> {
        let namespace = ds.namespace().unwrap_or_default();
        let uid = ds.uid().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let mut owned = Vec::new();
        for pod in self.pods.list_namespace(&namespace) {
            let matches = labels_match(selector, pod.metadata.labels.as_ref());
            match controller_of(&pod) {
                Some(owner) if owner.uid == uid => {
                    if matches {
                        owned.push(pod);
                    } else if pod.metadata.deletion_timestamp.is_none() {
                        release(&api, &pod, &uid).await;
                    }
                }
                None if matches
                    && pod.metadata.deletion_timestamp.is_none()
                    && adopt(&api, &pod, &controller_reference(ds)).await =>
                {
                    owned.push(pod);
                }
                _ => {}
            }
        }
        owned
    }

    async fn sync_nodes(
        &self,
        key: &str,
        ds: &DaemonSet,
        hash: &str,
        create_on: &[String],
        delete: &[Arc<Pod>],
    ) -> Result<(), ReconcileError> {
        let namespace = ds.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        self.expectations.expect(key, create_on.len() as i64, delete.len() as i64);
        let mut failure = None;
        // Slow start, as upstream: batches of 1, 2, 4, … that stop at the first error.
        let mut batch = 1;
        let mut remaining = create_on;
        while !remaining.is_empty() {
            let (now, later) = remaining.split_at(batch.min(remaining.len()));
            remaining = later;
            let pods: Vec<Pod> = now.iter().map(|node| daemon_pod(ds, node, hash)).collect();
            let create = PostParams::default();
            let results = futures::future::join_all(pods.iter().map(|pod| api.create(&create, pod))).await;
            for result in results {
                match result {
                    Ok(pod) => self.events.publish(
                        ds,
                        Kind::Normal,
                        "SuccessfulCreate",
                        format!("Created pod: {}", pod.name_any()),
                    ),
                    Err(error) => {
                        self.expectations.creation_observed(key);
                        failure.get_or_insert(error.to_string());
                    }
                }
            }
            if let Some(message) = &failure {
                for _ in remaining {
                    self.expectations.creation_observed(key);
                }
                self.events.publish(ds, Kind::Warning, "FailedCreate", format!("Error creating: {message}"));
                break;
            }
            batch *= 2;
        }
        let names: Vec<String> = delete.iter().map(|pod| pod.name_any()).collect();
        let delete_params = DeleteParams::default();
        let results = futures::future::join_all(names.iter().map(|name| api.delete(name, &delete_params))).await;
        for (pod, result) in delete.iter().zip(results) {
            match result {
                Ok(_) => self.events.publish(
                    ds,
                    Kind::Normal,
                    "SuccessfulDelete",
                    format!("Deleted pod: {}", pod.name_any()),
                ),
                Err(error) => {
                    self.expectations.deletion_observed(key);
                    if !matches!(&error, kube::Error::Api(response) if response.code == 404) {
                        self.events.publish(ds, Kind::Warning, "FailedDelete", format!("Error deleting: {error}"));
                        failure.get_or_insert(error.to_string());
                    }
                }
            }
        }
        match failure {
            Some(message) => Err(ReconcileError::Other(message)),
            None => Ok(()),
        }
    }
}

fn owning_daemon_set(pod: &Pod) -> Option<queue::Key> {
    let owner = controller_of(pod)?;
    (owner.kind == "DaemonSet" && owner.api_version == "apps/v1")
        .then(|| queue::key(pod.metadata.namespace.as_deref(), &owner.name))
}

fn rolling_update(ds: &DaemonSet) -> bool {
    let strategy = ds.spec.as_ref().and_then(|spec| spec.update_strategy.as_ref());
    strategy.and_then(|strategy| strategy.type_.as_deref()).unwrap_or("RollingUpdate") == "RollingUpdate"
}

/// What one node means for one DaemonSet (upstream's `NodeShouldRunDaemonPod`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Placement {
    /// A daemon pod belongs here.
    should_run: bool,
    /// A daemon pod already here may stay (it tolerates the node's NoExecute taints, though not its NoSchedule ones).
    may_stay: bool,
}

fn placement(ds: &DaemonSet, node: &Node) -> Placement {
    let nowhere = Placement { should_run: false, may_stay: false };
    let pod = Pod {
        metadata: Default::default(),
        spec: Some(daemon_pod_spec(ds, node.metadata.name.as_deref().unwrap_or_default())),
        status: None,
    };
    let spec = pod.spec.as_ref().expect("set above");
    if spec.node_name.as_deref().is_some_and(|name| !name.is_empty() && Some(name) != node.metadata.name.as_deref()) {
        return nowhere;
    }
    if !matches_node_selector_and_affinity(&pod, node) {
        return nowhere;
    }
    let tolerations = spec.tolerations.as_deref().unwrap_or_default();
    let taints = node.spec.as_ref().and_then(|spec| spec.taints.as_deref()).unwrap_or_default();
    let untolerated = |effects: &[&str]| {
        taints.iter().any(|taint| {
            effects.contains(&taint.effect.as_str())
                && !tolerations.iter().any(|toleration| tolerates(toleration, taint))
        })
    };
    if untolerated(&["NoSchedule", "NoExecute"]) {
        return Placement { should_run: false, may_stay: !untolerated(&["NoExecute"]) };
    }
    Placement { should_run: true, may_stay: true }
}

/// The node a daemon pod is for: where it runs, or the node its affinity pins it to before it is scheduled.
fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(node) = spec.node_name.as_ref().filter(|name| !name.is_empty()) {
        return Some(node.clone());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms.iter().flat_map(|term| term.match_fields.iter().flatten()).find_map(|field| {
        let values = field.values.as_deref().unwrap_or_default();
        (field.key == "metadata.name" && field.operator == "In" && values.len() == 1).then(|| values[0].clone())
    })
}

/// One reconcile's picture: every node's placement and the DaemonSet's live pods on it.
struct Plan<'a> {
    ds: &'a DaemonSet,
    hash: &'a str,
    /// Node name → placement, for the nodes that exist.
    nodes: BTreeMap<String, Placement>,
    /// Node name → live daemon pods there (not being deleted), oldest first.
    pods_on: BTreeMap<String, Vec<Arc<Pod>>>,
    now: jiff::Timestamp,
}

impl<'a> Plan<'a> {
    fn new(ds: &'a DaemonSet, nodes: &[Arc<Node>], pods: &[Arc<Pod>], hash: &'a str) -> Plan<'a> {
        let nodes = nodes.iter().map(|node| (node.name_any(), placement(ds, node))).collect();
        let mut pods_on: BTreeMap<String, Vec<Arc<Pod>>> = BTreeMap::new();
        for pod in pods.iter().filter(|pod| pod.metadata.deletion_timestamp.is_none()) {
            if let Some(node) = target_node(pod) {
                pods_on.entry(node).or_default().push(pod.clone());
            }
        }
        for pods in pods_on.values_mut() {
            pods.sort_by_key(|pod| creation_order(pod));
        }
        Plan { ds, hash, nodes, pods_on, now: jiff::Timestamp::now() }
    }

    fn min_ready_seconds(&self) -> i32 {
        self.ds.spec.as_ref().and_then(|spec| spec.min_ready_seconds).unwrap_or(0)
    }

    fn is_updated(&self, pod: &Pod) -> bool {
        pod.labels().get(REVISION_HASH_LABEL).map(String::as_str) == Some(self.hash)
    }

    fn surge(&self) -> bool {
        rolling_update(self.ds) && self.max_surge_and_unavailable().0 > 0
    }

    /// Nodes that need a pod, and pods that must go, whatever the strategy (upstream's `manage`): a pod on every
    /// node that should run one, none where none may stay, failed pods replaced, one pod per node (two while a
    /// surge replaces an old one).
    fn manage(&self) -> (Vec<String>, Vec<Arc<Pod>>) {
        let mut create_on = Vec::new();
        let mut delete = Vec::new();
        for (node, placement) in &self.nodes {
            let pods = self.pods_on.get(node).map(Vec::as_slice).unwrap_or_default();
            if placement.should_run && pods.is_empty() {
                create_on.push(node.clone());
            } else if placement.may_stay {
                let (failed, running): (Vec<&Arc<Pod>>, Vec<&Arc<Pod>>) = pods
                    .iter()
                    .partition(|pod| pod.status.as_ref().and_then(|status| status.phase.as_deref()) == Some("Failed"));
                delete.extend(failed.iter().map(|pod| (*pod).clone()));
                if running.is_empty() && !failed.is_empty() && placement.should_run {
                    // Its replacement comes once the failed one is gone (the next pass sees the node empty).
                    continue;
                }
                // Keep the oldest; during a surge, the oldest updated one and the oldest old one.
                let (mut kept_new, mut kept_old) = (false, false);
                for pod in running {
                    let keep = if !self.surge() {
                        !std::mem::replace(&mut kept_old, true)
                    } else if self.is_updated(pod) {
                        !std::mem::replace(&mut kept_new, true)
                    } else {
                        !std::mem::replace(&mut kept_old, true)
                    };
                    if !keep {
                        delete.push(pod.clone());
                    }
                }
            } else {
                delete.extend(pods.iter().cloned());
            }
        }
        // Pods on nodes that no longer exist go too.
        for (node, pods) in &self.pods_on {
            if !self.nodes.contains_key(node) {
                delete.extend(pods.iter().cloned());
            }
        }
        (create_on, delete)
    }

    /// maxSurge and maxUnavailable as pod counts of desiredNumberScheduled, both rounded up; never both zero.
    fn max_surge_and_unavailable(&self) -> (i32, i32) {
        let desired = self.nodes.values().filter(|placement| placement.should_run).count() as i32;
        let rolling = self
            .ds
            .spec
            .as_ref()
            .and_then(|spec| spec.update_strategy.as_ref())
            .and_then(|strategy| strategy.rolling_update.clone())
            .unwrap_or_default();
        let resolve = |value: Option<IntOrString>, default: i32| match value {
            None => default,
            Some(IntOrString::Int(count)) => count,
            Some(IntOrString::String(text)) => {
                let percent: f64 = text.trim_end_matches('%').parse().unwrap_or(0.0);
                (percent * f64::from(desired) / 100.0).ceil() as i32
            }
        };
        let surge = resolve(rolling.max_surge, 0);
        let unavailable = resolve(rolling.max_unavailable, 1);
        if surge == 0 && unavailable == 0 {
            (0, 1)
        } else {
            (surge, unavailable)
        }
    }

    /// The old pods to replace now, within the budget (upstream's `rollingUpdate`): without surge, delete old
    /// pods while at most maxUnavailable nodes lack an available pod (unavailable old pods go at once); with surge,
    /// start new pods beside old ones on at most maxSurge nodes, and delete each old pod once its replacement is
    /// available.
    fn rolling_update(&self) -> (Vec<String>, Vec<Arc<Pod>>) {
        let (max_surge, max_unavailable) = self.max_surge_and_unavailable();
        let min_ready = self.min_ready_seconds();
        let available = |pod: &Pod| is_available(pod, min_ready, self.now);
        let split = |pods: &[Arc<Pod>]| -> (Option<Arc<Pod>>, Option<Arc<Pod>>) {
            let new = pods.iter().find(|pod| self.is_updated(pod)).cloned();
            let old = pods.iter().find(|pod| !self.is_updated(pod)).cloned();
            (new, old)
        };
        if max_surge == 0 {
            let mut unavailable = 0;
            let mut delete_now = Vec::new();
            let mut candidates = Vec::new();
            for (node, pods) in &self.pods_on {
                if !self.nodes.get(node).is_some_and(|placement| placement.should_run) {
                    continue;
                }
                match split(pods) {
                    (Some(new), None) => {
                        if !available(&new) {
                            unavailable += 1;
                        }
                    }
                    (None, Some(old)) => {
                        if !available(&old) {
                            delete_now.push(old);
                        } else if unavailable < max_unavailable {
                            candidates.push(old);
                        }
                    }
                    // Empty, or old and new together: the manage pass sorts that out; count it as unavailable.
                    _ => unavailable += 1,
                }
            }
            // Nodes that should run a pod and have none are unavailable too.
            unavailable += self
                .nodes
                .iter()
                .filter(|(node, placement)| placement.should_run && !self.pods_on.contains_key(*node))
                .count() as i32;
            let budget = (max_unavailable - unavailable).clamp(0, candidates.len() as i32) as usize;
            delete_now.extend(candidates.into_iter().take(budget));
            return (Vec::new(), delete_now);
        }
        let mut surging = 0;
        let mut delete_old = Vec::new();
        let mut create_now = Vec::new();
        let mut candidates = Vec::new();
        for (node, pods) in &self.pods_on {
            let should_run = self.nodes.get(node).is_some_and(|placement| placement.should_run);
            match split(pods) {
                (_, None) => {}
                (None, Some(old)) => {
                    if !should_run {
                        delete_old.push(old);
                    } else if !available(&old) {
                        create_now.push(node.clone());
                    } else if surging < max_surge {
                        candidates.push(node.clone());
                    }
                }
                (Some(new), Some(old)) => {
                    if available(&new) {
                        delete_old.push(old);
                    } else {
                        surging += 1;
                    }
                }
            }
        }
        let budget = (max_surge - surging).clamp(0, candidates.len() as i32) as usize;
        create_now.extend(candidates.into_iter().take(budget));
        (create_now, delete_old)
    }

    fn status(&self) -> DaemonSetStatus {
        let (mut desired, mut current, mut ready, mut available, mut updated, mut misscheduled) = (0, 0, 0, 0, 0, 0);
        for (node, placement) in &self.nodes {
            let pods: Vec<&Arc<Pod>> = self
                .pods_on
                .get(node)
                .into_iter()
                .flatten()
                .filter(|pod| {
                    !matches!(
                        pod.status.as_ref().and_then(|status| status.phase.as_deref()),
                        Some("Failed" | "Succeeded")
                    )
                })
                .collect();
            if !placement.should_run {
                if !pods.is_empty() {
                    misscheduled += 1;
                }
                continue;
            }
            desired += 1;
            // The oldest pod stands for the node, as upstream.
            let Some(pod) = pods.first() else { continue };
            current += 1;
            if ready_since(pod).is_some() {
                ready += 1;
                if is_available(pod, self.min_ready_seconds(), self.now) {
                    available += 1;
                }
            }
            if self.is_updated(pod) {
                updated += 1;
            }
        }
        DaemonSetStatus {
            desired_number_scheduled: desired,
            current_number_scheduled: current,
            number_ready: ready,
            number_available: Some(available).filter(|count| *count > 0),
            number_unavailable: Some(desired - available).filter(|count| *count > 0),
            updated_number_scheduled: Some(updated).filter(|count| *count > 0),
            number_misscheduled: misscheduled,
            observed_generation: self.ds.metadata.generation,
            collision_count: None,
            conditions: None,
        }
    }
}

fn creation_order(pod: &Pod) -> (i64, String) {
    let created = pod.metadata.creation_timestamp.as_ref().map_or(i64::MAX, |time| time.0.as_second());
    (created, pod.name_any())
}

/// The status compared without the collision count, which only the revision sync changes.
fn without_collision_count(status: &DaemonSetStatus) -> DaemonSetStatus {
    DaemonSetStatus { collision_count: None, conditions: None, ..status.clone() }
}

/// The status as a merge patch: counts that dropped to none are written as null, so the patch removes them.
fn status_patch(status: &DaemonSetStatus) -> serde_json::Value {
    let mut value = serde_json::to_value(status).unwrap_or_default();
    if let Some(fields) = value.as_object_mut() {
        fields.remove("collisionCount");
        for field in ["numberAvailable", "numberUnavailable", "updatedNumberScheduled"] {
            fields.entry(field).or_insert(serde_json::Value::Null);
        }
    }
    value
}

/// The tolerations every daemon pod gets (upstream's `AddOrUpdateDaemonPodTolerations`): it stays on nodes that
/// are not ready or unreachable for as long as they are, and is placed on nodes under pressure or cordoned.
fn daemon_tolerations(spec: &PodSpec) -> Vec<Toleration> {
    let exists = |key: &str, effect: &str| Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Default::default()
    };
    let mut added = vec![
        exists("node.kubernetes.io/not-ready", "NoExecute"),
        exists("node.kubernetes.io/unreachable", "NoExecute"),
        exists("node.kubernetes.io/disk-pressure", "NoSchedule"),
        exists("node.kubernetes.io/memory-pressure", "NoSchedule"),
        exists("node.kubernetes.io/pid-pressure", "NoSchedule"),
        exists("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if spec.host_network == Some(true) {
        added.push(exists("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    let mut tolerations = spec.tolerations.clone().unwrap_or_default();
    for toleration in added {
        // Replaces one the template has for the same key and effect, as upstream's AddOrUpdateTolerationInPodSpec.
        tolerations.retain(|existing| !(existing.key == toleration.key && existing.effect == toleration.effect));
        tolerations.push(toleration);
    }
    tolerations
}

/// The template's pod spec for `node`: pinned there by a required node affinity on `metadata.name` (replacing
/// any name terms of the template's own affinity, keeping its label terms), with the daemon tolerations.
fn daemon_pod_spec(ds: &DaemonSet, node: &str) -> PodSpec {
    let mut spec = ds.spec.as_ref().and_then(|spec| spec.template.spec.clone()).unwrap_or_default();
    let pinned = vec![NodeSelectorRequirement {
        key: "metadata.name".into(),
        operator: "In".into(),
        values: Some(vec![node.to_string()]),
    }];
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let node_affinity = affinity.node_affinity.get_or_insert_with(NodeAffinity::default);
    let required =
        node_affinity.required_during_scheduling_ignored_during_execution.get_or_insert_with(NodeSelector::default);
    if required.node_selector_terms.is_empty() {
        required.node_selector_terms.push(NodeSelectorTerm::default());
    }
    for term in &mut required.node_selector_terms {
        term.match_fields = Some(pinned.clone());
    }
    spec.tolerations = Some(daemon_tolerations(&spec));
    spec
}

fn daemon_pod(ds: &DaemonSet, node: &str, hash: &str) -> Pod {
    let template_meta = ds.spec.as_ref().and_then(|spec| spec.template.metadata.clone()).unwrap_or_default();
    let mut labels = template_meta.labels.unwrap_or_default();
    labels.insert(REVISION_HASH_LABEL.into(), hash.to_string());
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", ds.name_any())),
            namespace: ds.namespace(),
            labels: Some(labels),
            annotations: template_meta.annotations,
            finalizers: template_meta.finalizers,
            owner_references: Some(vec![controller_reference(ds)]),
            ..Default::default()
        },
        spec: Some(daemon_pod_spec(ds, node)),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn daemon_set(spec: serde_json::Value) -> DaemonSet {
        serde_json::from_value(
            json!({"metadata": {"name": "agent", "namespace": "default", "uid": "u1", "generation": 2},
            "spec": spec}),
        )
        .unwrap()
    }

    fn node(name: &str, labels: serde_json::Value, taints: serde_json::Value) -> Arc<Node> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}, "spec": {"taints": taints}}))
                .unwrap(),
        )
    }

    fn pod(name: &str, node: &str, hash: &str, ready: bool, created: &str) -> Arc<Pod> {
        let conditions = if ready {
            json!([{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}])
        } else {
            json!([])
        };
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name, "labels": {"app": "agent", REVISION_HASH_LABEL: hash},
                "creationTimestamp": created},
                "spec": {"nodeName": node, "containers": []}, "status": {"phase": "Running", "conditions": conditions}}))
            .unwrap(),
        )
    }

    fn basic_spec() -> serde_json::Value {
        json!({"selector": {"matchLabels": {"app": "agent"}},
            "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {"containers": [{"name": "a", "image": "x"}],
                "nodeSelector": {"role": "edge"}}}})
    }

    #[test]
    fn nodes_are_chosen_by_selector_and_taints() {
        let ds = daemon_set(basic_spec());
        let edge = node("edge", json!({"role": "edge"}), json!([]));
        let other = node("other", json!({"role": "core"}), json!([]));
        let tainted = node("tainted", json!({"role": "edge"}), json!([{"key": "gpu", "effect": "NoSchedule"}]));
        let evicting = node("evicting", json!({"role": "edge"}), json!([{"key": "gpu", "effect": "NoExecute"}]));
        let unreachable = node(
            "unreachable",
            json!({"role": "edge"}),
            json!([{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]),
        );
        assert_eq!(placement(&ds, &edge), Placement { should_run: true, may_stay: true });
        assert_eq!(placement(&ds, &other), Placement { should_run: false, may_stay: false });
        assert_eq!(placement(&ds, &tainted), Placement { should_run: false, may_stay: true });
        assert_eq!(placement(&ds, &evicting), Placement { should_run: false, may_stay: false });
        assert_eq!(
            placement(&ds, &unreachable),
            Placement { should_run: true, may_stay: true },
            "tolerated by default"
        );
    }

    #[test]
    fn pods_are_pinned_by_node_affinity_on_the_name() {
        let ds = daemon_set(basic_spec());
        let pod = daemon_pod(&ds, "edge", "abc");
        assert_eq!(target_node(&pod).as_deref(), Some("edge"));
        let value = serde_json::to_value(&pod).unwrap();
        let term = &value["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"][0];
        assert_eq!(term["matchFields"], json!([{"key": "metadata.name", "operator": "In", "values": ["edge"]}]));
        assert_eq!(value["metadata"]["labels"][REVISION_HASH_LABEL], "abc");
        let tolerations = value["spec"]["tolerations"].as_array().unwrap();
        assert_eq!(tolerations.len(), 6, "no network-unavailable toleration without hostNetwork");
        assert!(tolerations.iter().all(|toleration| toleration["tolerationSeconds"].is_null()));
    }

    #[test]
    fn rolling_update_stays_within_max_unavailable() {
        let ds = daemon_set(basic_spec());
        let nodes: Vec<Arc<Node>> =
            ["a", "b", "c"].iter().map(|name| node(name, json!({"role": "edge"}), json!([]))).collect();
        let pods = vec![
            pod("p-a", "a", "old", true, "2026-01-01T00:00:00Z"),
            pod("p-b", "b", "old", true, "2026-01-01T00:00:00Z"),
            pod("p-c", "c", "old", true, "2026-01-01T00:00:00Z"),
        ];
        let plan = Plan::new(&ds, &nodes, &pods, "new");
        assert_eq!(plan.manage(), (vec![], vec![]));
        let (create, delete) = plan.rolling_update();
        assert!(create.is_empty());
        assert_eq!(delete.len(), 1, "maxUnavailable defaults to 1");
        let status = plan.status();
        assert_eq!(
            (status.desired_number_scheduled, status.number_ready, status.updated_number_scheduled),
            (3, 3, None)
        );

        // One node updated but not ready yet: nothing more goes.
        let pods = vec![
            pod("p-a", "a", "new", false, "2026-01-01T00:00:00Z"),
            pod("p-b", "b", "old", true, "2026-01-01T00:00:00Z"),
            pod("p-c", "c", "old", true, "2026-01-01T00:00:00Z"),
        ];
        let plan = Plan::new(&ds, &nodes, &pods, "new");
        assert_eq!(plan.rolling_update().1.len(), 0);
    }

    #[test]
    fn surge_starts_new_pods_beside_old_ones() {
        let mut spec = basic_spec();
        spec["updateStrategy"] =
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}});
        let ds = daemon_set(spec);
        let nodes: Vec<Arc<Node>> =
            ["a", "b"].iter().map(|name| node(name, json!({"role": "edge"}), json!([]))).collect();
        let pods = vec![
            pod("p-a", "a", "old", true, "2026-01-01T00:00:00Z"),
            pod("p-b", "b", "old", true, "2026-01-01T00:00:00Z"),
        ];
        let plan = Plan::new(&ds, &nodes, &pods, "new");
        assert_eq!(plan.rolling_update(), (vec!["a".to_string()], vec![]));
        // The new pod is available: the old one on that node goes, and manage keeps both meanwhile.
        let pods = vec![
            pod("p-a", "a", "old", true, "2026-01-01T00:00:00Z"),
            pod("p-a2", "a", "new", true, "2026-01-01T00:01:00Z"),
            pod("p-b", "b", "old", true, "2026-01-01T00:00:00Z"),
        ];
        let plan = Plan::new(&ds, &nodes, &pods, "new");
        assert_eq!(plan.manage(), (vec![], vec![]));
        let (create, delete) = plan.rolling_update();
        assert_eq!(delete.iter().map(|pod| pod.name_any()).collect::<Vec<_>>(), ["p-a"]);
        assert_eq!(create, ["b"], "node a no longer counts against the surge budget");
    }
}
