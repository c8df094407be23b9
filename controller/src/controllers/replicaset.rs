//! The ReplicaSet controller: keeps `spec.replicas` pods from the template running, adopting orphan pods its
//! selector matches and releasing owned pods it no longer matches, and reports status (replicas,
//! fullyLabeledReplicas, readyReplicas, availableReplicas after minReadySeconds, observedGeneration, and a
//! ReplicaFailure condition while pods cannot be created or deleted).
//!
//! The same code runs the older ReplicationControllers, as upstream does: it sees each one as a ReplicaSet whose
//! selector is the equality map as `matchLabels` ([`Replicated`]); pods, events and status go to the object itself.
//!
//! Pods are created in batches that double (1, 2, 4, …) and stop at the first error, as upstream's slow start,
//! so a quota or admission error costs one failed request instead of hundreds. Surplus pods are deleted in
//! upstream's order: unscheduled before scheduled, pending before running, not ready before ready, the most
//! recently ready, most restarted and newest first.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetSpec, ReplicaSetStatus};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference, Time};
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::events::{Kind, Recorder};
use super::expectations::Expectations;
use super::informer::{Change, Informer};
use super::queue::{self, WorkQueue};
use super::{label_selector, labels_match, ReconcileError};

/// Most pods created or deleted in one reconcile (upstream's burstReplicas).
const BURST: usize = 500;
const WORKERS: usize = 5;

/// A kind whose objects keep a number of pods from a template: ReplicaSet, and ReplicationController seen as one.
pub trait Replicated:
    Resource<DynamicType = (), Scope = NamespaceResourceScope> + Clone + Debug + DeserializeOwned + Send + Sync + 'static
{
    /// The controller's name in the events it records (upstream's).
    const COMPONENT: &'static str;
    /// The work queue's name in logs.
    const QUEUE: &'static str;
    fn as_replica_set(&self) -> Cow<'_, ReplicaSet>;
}

impl Replicated for ReplicaSet {
    const COMPONENT: &'static str = "replicaset-controller";
    const QUEUE: &'static str = "replicaset";
    fn as_replica_set(&self) -> Cow<'_, ReplicaSet> {
        Cow::Borrowed(self)
    }
}

impl Replicated for ReplicationController {
    const COMPONENT: &'static str = "replication-controller";
    const QUEUE: &'static str = "replicationcontroller";
    fn as_replica_set(&self) -> Cow<'_, ReplicaSet> {
        let spec = self.spec.as_ref().map(|spec| ReplicaSetSpec {
            replicas: spec.replicas,
            min_ready_seconds: spec.min_ready_seconds,
            // Defaulting fills an empty selector from the template's labels, and validation refuses one still empty.
            selector: LabelSelector { match_labels: spec.selector.clone(), match_expressions: None },
            template: spec.template.clone(),
        });
        // The two statuses have the same fields (a ReplicaSet's has one more, left empty).
        let status = self
            .status
            .as_ref()
            .and_then(|status| serde_json::to_value(status).ok().and_then(|value| serde_json::from_value(value).ok()));
        Cow::Owned(ReplicaSet { metadata: self.metadata.clone(), spec, status })
    }
}

pub struct ReplicaSetController<K: Replicated> {
    client: kube::Client,
    replica_sets: Arc<Informer<K>>,
    pods: Arc<Informer<Pod>>,
    expectations: Arc<Expectations>,
    queue: WorkQueue,
    events: Recorder,
}

impl<K: Replicated> ReplicaSetController<K> {
    pub fn new(client: kube::Client, replica_sets: Arc<Informer<K>>, pods: Arc<Informer<Pod>>) -> Arc<Self> {
        let controller = Arc::new(ReplicaSetController {
            events: Recorder::new(client.clone(), K::COMPONENT),
            client,
            replica_sets: replica_sets.clone(),
            pods: pods.clone(),
            expectations: Default::default(),
            queue: WorkQueue::new(),
        });
        let (queue, expectations) = (controller.queue.clone(), controller.expectations.clone());
        replica_sets.on_change(move |change| match change {
            Change::Applied { new, .. } => queue.add(object_key(*new)),
            Change::Deleted(old) => expectations.forget(&object_key(*old)),
        });
        let this = Arc::downgrade(&controller);
        pods.on_change(move |change| {
            if let Some(controller) = this.upgrade() {
                controller.pod_changed(change);
            }
        });
        controller
    }

    fn pod_changed(&self, change: &Change<'_, Pod>) {
        match change {
            Change::Applied { old, new } => {
                let owner = owner_key::<K>(new);
                if let Some(key) = &owner {
                    if old.is_none() {
                        self.expectations.creation_observed(key);
                    }
                    let deleting = new.metadata.deletion_timestamp.is_some();
                    if deleting && old.is_none_or(|old| old.metadata.deletion_timestamp.is_none()) {
                        self.expectations.deletion_observed(key);
                    }
                    self.queue.add(key.clone());
                } else {
                    // An orphan: a ReplicaSet whose selector matches may adopt it.
                    for key in self.matching_replica_sets(new) {
                        self.queue.add(key);
                    }
                }
                if let Some(old_owner) = old.and_then(owner_key::<K>) {
                    if Some(&old_owner) != owner.as_ref() {
                        self.queue.add(old_owner);
                    }
                }
            }
            Change::Deleted(old) => {
                if let Some(key) = owner_key::<K>(old) {
                    if old.metadata.deletion_timestamp.is_none() {
                        self.expectations.deletion_observed(&key);
                    }
                    self.queue.add(key);
                }
            }
        }
    }

    fn matching_replica_sets(&self, pod: &Pod) -> Vec<queue::Key> {
        let namespace = pod.namespace().unwrap_or_default();
        self.replica_sets
            .list_namespace(&namespace)
            .into_iter()
            .filter(|object| {
                object
                    .as_replica_set()
                    .spec
                    .as_ref()
                    .and_then(|spec| label_selector(&spec.selector))
                    .is_some_and(|selector| labels_match(&selector, pod.metadata.labels.as_ref()))
            })
            .map(|object| object_key(object.as_ref()))
            .collect()
    }

    pub async fn run(self: Arc<Self>) {
        self.replica_sets.synced().await;
        self.pods.synced().await;
        let controller = self.clone();
        queue::run_workers(K::QUEUE, self.queue.clone(), WORKERS, move |key| {
            let controller = controller.clone();
            async move { controller.reconcile(&key).await }
        })
        .await;
    }

    async fn reconcile(&self, key: &str) -> Result<(), ReconcileError> {
        let (namespace, name) = queue::split(key);
        let Some(object) = self.replica_sets.get(namespace, name) else {
            self.expectations.forget(key);
            return Ok(());
        };
        let rs = object.as_replica_set();
        let Some(selector) = rs.spec.as_ref().and_then(|spec| label_selector(&spec.selector)) else {
            // Validation rejects such selectors; an object stored before that cannot be acted on.
            return Ok(());
        };
        let uid = rs.uid().unwrap_or_default();
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);

        // Claim: keep owned pods that still match, release those that do not, adopt matching orphans.
        let mut owned = Vec::new();
        for pod in self.pods.list_namespace(namespace) {
            let controller_ref = controller_of(&pod);
            let matches = labels_match(&selector, pod.metadata.labels.as_ref());
            match controller_ref {
                Some(owner) if owner.uid == uid => {
                    if matches {
                        owned.push(pod);
                    } else if pod.metadata.deletion_timestamp.is_none() {
                        release(&pods, &pod, &uid).await;
                    }
                }
                None if matches
                    && pod.metadata.deletion_timestamp.is_none()
                    && rs.metadata.deletion_timestamp.is_none()
                    && adopt(&pods, &pod, &controller_reference(object.as_ref())).await =>
                {
                    owned.push(pod);
                }
                _ => {}
            }
        }
        let active: Vec<Arc<Pod>> = owned.iter().filter(|pod| is_active(pod)).cloned().collect();

        let mut failure = None;
        if self.expectations.satisfied(key) && rs.metadata.deletion_timestamp.is_none() {
            let wanted = rs.spec.as_ref().and_then(|spec| spec.replicas).unwrap_or(1).max(0) as usize;
            if active.len() < wanted {
                let missing = (wanted - active.len()).min(BURST);
                failure = self.create_pods(key, &object, &rs, missing).await;
            } else if active.len() > wanted {
                let surplus = (active.len() - wanted).min(BURST);
                failure = self.delete_pods(key, &object, &active, surplus).await;
            }
        }
        let min_ready_seconds = rs.spec.as_ref().and_then(|spec| spec.min_ready_seconds).unwrap_or(0);
        let status = compute_status(&rs, &active, failure.as_ref(), min_ready_seconds);
        if rs.status.as_ref() != Some(&status) {
            let api: Api<K> = Api::namespaced(self.client.clone(), namespace);
            let patch = json!({"status": with_nulls(&status)});
            api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        }
        if min_ready_seconds > 0 && status.available_replicas.unwrap_or(0) < status.ready_replicas.unwrap_or(0) {
            // Look again once the ready pods have been ready long enough to count as available.
            self.queue.add_after(key.to_string(), Duration::from_secs(1));
        }
        match failure {
            Some(message) => Err(ReconcileError::Other(message)),
            None => Ok(()),
        }
    }

    /// Creates `count` pods in doubling batches; the error message of the first failure, if any.
    async fn create_pods(&self, key: &str, owner: &K, rs: &ReplicaSet, count: usize) -> Option<String> {
        let namespace = rs.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let pod = pod_from_template(rs, controller_reference(owner));
        let create = PostParams::default();
        self.expectations.expect(key, count as i64, 0);
        let mut created = 0;
        let mut batch = 1;
        while created < count {
            let size = batch.min(count - created);
            let results = futures::future::join_all((0..size).map(|_| api.create(&create, &pod))).await;
            let mut error = None;
            for result in results {
                match result {
                    Ok(pod) => self.events.publish(
                        owner,
                        Kind::Normal,
                        "SuccessfulCreate",
                        format!("Created pod: {}", pod.name_any()),
                    ),
                    Err(failed) => {
                        // This pod will never be seen: stop waiting for it.
                        self.expectations.creation_observed(key);
                        error.get_or_insert(error_text(&failed));
                    }
                }
            }
            created += size;
            if let Some(message) = error {
                // The pods of batches not sent will not be seen either.
                for _ in created..count {
                    self.expectations.creation_observed(key);
                }
                self.events.publish(owner, Kind::Warning, "FailedCreate", format!("Error creating: {message}"));
                return Some(message);
            }
            batch *= 2;
        }
        None
    }

    async fn delete_pods(&self, key: &str, owner: &K, active: &[Arc<Pod>], count: usize) -> Option<String> {
        let mut ranked: Vec<&Arc<Pod>> = active.iter().collect();
        ranked.sort_by_key(|pod| deletion_rank(pod));
        let victims = &ranked[..count];
        let namespace = owner.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        self.expectations.expect(key, 0, count as i64);
        let delete = DeleteParams::default();
        let results = futures::future::join_all(
            victims.iter().map(|pod| api.delete(pod.metadata.name.as_deref().unwrap_or_default(), &delete)),
        )
        .await;
        let mut error = None;
        for (pod, result) in victims.iter().zip(results) {
            match result {
                Ok(_) => self.events.publish(
                    owner,
                    Kind::Normal,
                    "SuccessfulDelete",
                    format!("Deleted pod: {}", pod.name_any()),
                ),
                Err(kube::Error::Api(response)) if response.code == 404 => self.expectations.deletion_observed(key),
                Err(failed) => {
                    self.expectations.deletion_observed(key);
                    error.get_or_insert(error_text(&failed));
                }
            }
        }
        if let Some(message) = &error {
            self.events.publish(owner, Kind::Warning, "FailedDelete", format!("Error deleting: {message}"));
        }
        error
    }
}

pub(super) fn object_key<K: kube::Resource>(object: &K) -> queue::Key {
    queue::key(object.meta().namespace.as_deref(), object.meta().name.as_deref().unwrap_or_default())
}

/// The pod's controlling owner reference, if any.
pub(super) fn controller_of(pod: &Pod) -> Option<&OwnerReference> {
    pod.metadata.owner_references.iter().flatten().find(|owner| owner.controller == Some(true))
}

/// The key of the pod's controller when that is an object of kind `K`.
fn owner_key<K: Resource<DynamicType = ()>>(pod: &Pod) -> Option<queue::Key> {
    let owner = controller_of(pod)?;
    (owner.kind == K::kind(&()) && owner.api_version == K::api_version(&()))
        .then(|| queue::key(pod.metadata.namespace.as_deref(), &owner.name))
}

pub(super) fn controller_reference<K: kube::Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).to_string(),
        kind: K::kind(&()).to_string(),
        name: owner.meta().name.clone().unwrap_or_default(),
        uid: owner.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Adds `owner` as the controller of `pod`, unless the pod changed meanwhile (the patch carries its
/// resourceVersion and uid, so it fails rather than adopt a pod that another controller adopted first).
pub(super) async fn adopt(pods: &Api<Pod>, pod: &Pod, owner: &OwnerReference) -> bool {
    let mut references = pod.metadata.owner_references.clone().unwrap_or_default();
    references.push(owner.clone());
    let patch = json!({"metadata": {"ownerReferences": references, "resourceVersion": pod.metadata.resource_version,
        "uid": pod.metadata.uid}});
    pods.patch(&pod.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await.is_ok()
}

/// Removes the controller reference to `owner_uid` from `pod`.
pub(super) async fn release(pods: &Api<Pod>, pod: &Pod, owner_uid: &str) {
    let references: Vec<&OwnerReference> =
        pod.metadata.owner_references.iter().flatten().filter(|owner| owner.uid != owner_uid).collect();
    let patch = json!({"metadata": {"ownerReferences": references, "resourceVersion": pod.metadata.resource_version,
        "uid": pod.metadata.uid}});
    if let Err(error) = pods.patch(&pod.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await {
        tracing::debug!(pod = %pod.name_any(), error = %error, "cannot release the pod");
    }
}

/// A pod that counts toward replicas: not finished, not being deleted.
pub(super) fn is_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|status| status.phase.as_deref());
    pod.metadata.deletion_timestamp.is_none() && !matches!(phase, Some("Succeeded" | "Failed"))
}

/// When the pod became Ready, if it is.
pub(super) fn ready_since(pod: &Pod) -> Option<jiff::Timestamp> {
    let condition = pod.status.as_ref()?.conditions.as_ref()?.iter().find(|condition| condition.type_ == "Ready")?;
    if condition.status != "True" {
        return None;
    }
    Some(condition.last_transition_time.as_ref().map_or(jiff::Timestamp::UNIX_EPOCH, |time| time.0))
}

/// Ready for at least `min_ready_seconds`.
pub(super) fn is_available(pod: &Pod, min_ready_seconds: i32, now: jiff::Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(since) => since + jiff::SignedDuration::from_secs(i64::from(min_ready_seconds)) <= now,
    }
}

/// Sorts first the pods to delete first (upstream's ActivePodsWithRanks, without the colocation rank).
fn deletion_rank(
    pod: &Pod,
) -> (bool, u8, bool, std::cmp::Reverse<i64>, std::cmp::Reverse<i32>, std::cmp::Reverse<i64>) {
    let assigned = pod.spec.as_ref().and_then(|spec| spec.node_name.as_deref()).is_some_and(|node| !node.is_empty());
    let phase = match pod.status.as_ref().and_then(|status| status.phase.as_deref()) {
        Some("Pending") | None => 0,
        Some("Running") => 2,
        _ => 1,
    };
    let ready = ready_since(pod);
    let restarts = pod
        .status
        .as_ref()
        .and_then(|status| status.container_statuses.as_ref())
        .map_or(0, |statuses| statuses.iter().map(|status| status.restart_count).sum());
    let created = pod.metadata.creation_timestamp.as_ref().map_or(i64::MAX, |time| time.0.as_second());
    (
        assigned,
        phase,
        ready.is_some(),
        std::cmp::Reverse(ready.map_or(0, |since| since.as_second())),
        std::cmp::Reverse(restarts),
        std::cmp::Reverse(created),
    )
}

fn pod_from_template(rs: &ReplicaSet, owner: OwnerReference) -> Pod {
    let template = rs.spec.as_ref().and_then(|spec| spec.template.clone()).unwrap_or_default();
    let template_meta = template.metadata.unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", rs.name_any())),
            namespace: rs.namespace(),
            labels: template_meta.labels,
            annotations: template_meta.annotations,
            finalizers: template_meta.finalizers,
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// The status as a merge patch: fields that became empty are written as null, so the patch removes them.
fn with_nulls(status: &ReplicaSetStatus) -> serde_json::Value {
    let mut value = serde_json::to_value(status).unwrap_or_default();
    if let Some(fields) = value.as_object_mut() {
        for field in ["fullyLabeledReplicas", "readyReplicas", "availableReplicas", "conditions"] {
            fields.entry(field).or_insert(serde_json::Value::Null);
        }
    }
    value
}

fn compute_status(
    rs: &ReplicaSet,
    active: &[Arc<Pod>],
    failure: Option<&String>,
    min_ready_seconds: i32,
) -> ReplicaSetStatus {
    let now = jiff::Timestamp::now();
    let template_labels: BTreeMap<String, String> = rs
        .spec
        .as_ref()
        .and_then(|spec| spec.template.as_ref())
        .and_then(|template| template.metadata.as_ref())
        .and_then(|meta| meta.labels.clone())
        .unwrap_or_default();
    let fully_labeled = active
        .iter()
        .filter(|pod| {
            let labels = pod.metadata.labels.clone().unwrap_or_default();
            template_labels.iter().all(|(key, value)| labels.get(key) == Some(value))
        })
        .count();
    let ready = active.iter().filter(|pod| ready_since(pod).is_some()).count();
    let available = active.iter().filter(|pod| is_available(pod, min_ready_seconds, now)).count();
    let previous = rs.status.as_ref().and_then(|status| status.conditions.clone()).unwrap_or_default();
    let mut conditions: Vec<ReplicaSetCondition> =
        previous.iter().filter(|condition| condition.type_ != "ReplicaFailure").cloned().collect();
    if let Some(message) = failure {
        let reason = if message.contains("delet") { "FailedDelete" } else { "FailedCreate" };
        let kept = previous
            .iter()
            .find(|condition| condition.type_ == "ReplicaFailure" && condition.reason.as_deref() == Some(reason));
        // As upstream's SetCondition: a condition of the same reason stays as it is, message included. (Each
        // failure's message names another pod; rewriting it would write the status on every retry.)
        conditions.push(kept.cloned().unwrap_or_else(|| ReplicaSetCondition {
            type_: "ReplicaFailure".into(),
            status: "True".into(),
            reason: Some(reason.into()),
            message: Some(message.clone()),
            last_transition_time: Some(Time(now)),
        }));
    }
    let count = |value: usize| Some(value as i32).filter(|value| *value > 0);
    ReplicaSetStatus {
        replicas: active.len() as i32,
        fully_labeled_replicas: count(fully_labeled),
        ready_replicas: count(ready),
        available_replicas: count(available),
        observed_generation: rs.metadata.generation,
        conditions: Some(conditions).filter(|conditions| !conditions.is_empty()),
        terminating_replicas: None,
    }
}

/// An API error as upstream's controllers report it: the server's message alone, without the client's wrapping.
fn error_text(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn surplus_pods_go_unscheduled_first_then_not_ready_then_newest() {
        let unscheduled = pod(
            json!({"metadata": {"name": "a", "creationTimestamp": "2026-01-01T00:00:00Z"}, "spec": {"containers": []}}),
        );
        let ready = pod(json!({"metadata": {"name": "b", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"nodeName": "n1", "containers": []},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:01:00Z"}]}}));
        let running_not_ready = pod(json!({"metadata": {"name": "c", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"nodeName": "n1", "containers": []}, "status": {"phase": "Running"}}));
        let newer_not_ready = pod(json!({"metadata": {"name": "d", "creationTimestamp": "2026-01-02T00:00:00Z"},
            "spec": {"nodeName": "n1", "containers": []}, "status": {"phase": "Running"}}));
        let mut pods = [&ready, &running_not_ready, &unscheduled, &newer_not_ready];
        pods.sort_by_key(|pod| deletion_rank(pod));
        let order: Vec<_> = pods.iter().map(|pod| pod.name_any()).collect();
        assert_eq!(order, ["a", "d", "c", "b"]);
    }

    #[test]
    fn a_replication_controller_is_seen_as_a_replica_set_with_match_labels() {
        let rc: ReplicationController = serde_json::from_value(json!({"metadata": {"name": "web", "generation": 2},
            "spec": {"replicas": 3, "minReadySeconds": 5, "selector": {"app": "web"},
                     "template": {"metadata": {"labels": {"app": "web"}}}},
            "status": {"replicas": 2, "readyReplicas": 1, "conditions": [{"type": "ReplicaFailure", "status": "True"}]}}))
        .unwrap();
        let rs = rc.as_replica_set();
        let spec = rs.spec.as_ref().unwrap();
        assert_eq!((spec.replicas, spec.min_ready_seconds), (Some(3), Some(5)));
        assert_eq!(spec.selector.match_labels, Some(BTreeMap::from([("app".into(), "web".into())])));
        assert_eq!(spec.selector.match_expressions, None);
        let status = rs.status.as_ref().unwrap();
        assert_eq!((status.replicas, status.ready_replicas), (2, Some(1)));
        assert_eq!(status.conditions.as_ref().unwrap()[0].type_, "ReplicaFailure");
        assert_eq!(
            owner_key::<ReplicationController>(&pod_from_template(&rs, controller_reference(&rc))),
            Some(queue::key(None, "web"))
        );
        assert_eq!(owner_key::<ReplicaSet>(&pod_from_template(&rs, controller_reference(&rc))), None);
    }

    #[test]
    fn status_counts_ready_and_available_pods() {
        let rs: ReplicaSet = serde_json::from_value(json!({"metadata": {"name": "web", "generation": 3},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web", "tier": "front"}}}}}))
        .unwrap();
        let now = jiff::Timestamp::now();
        let just_ready = Arc::new(pod(json!({"metadata": {"name": "a", "labels": {"app": "web", "tier": "front"}},
            "status": {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": Time(now)}]}})));
        let partly_labeled = Arc::new(pod(json!({"metadata": {"name": "b", "labels": {"app": "web"}}})));
        let status = compute_status(&rs, &[just_ready.clone(), partly_labeled], None, 30);
        assert_eq!(status.replicas, 2);
        assert_eq!(status.fully_labeled_replicas, Some(1));
        assert_eq!(status.ready_replicas, Some(1));
        assert_eq!(status.available_replicas, None, "ready for less than minReadySeconds");
        assert_eq!(status.observed_generation, Some(3));
        let status = compute_status(&rs, &[just_ready], Some(&"quota exceeded".to_string()), 0);
        assert_eq!(status.available_replicas, Some(1));
        let failure = &status.conditions.unwrap()[0];
        assert_eq!((failure.type_.as_str(), failure.reason.as_deref()), ("ReplicaFailure", Some("FailedCreate")));
    }
}
