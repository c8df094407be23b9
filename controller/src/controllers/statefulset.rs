//! The StatefulSet controller: pods with stable names `<set>-<ordinal>`, hostnames and claims, created in order
//! and each waited for until Running and Ready (OrderedReady), or all at once (Parallel); removed highest ordinal
//! first; updated by RollingUpdate (highest ordinal first, down to the partition) or OnDelete; template history as
//! ControllerRevisions; PersistentVolumeClaims `<template>-<set>-<ordinal>` from `volumeClaimTemplates`, kept or
//! removed with the set or on scale-down as `persistentVolumeClaimRetentionPolicy` says (research: upstream's
//! `pkg/controller/statefulset`, whose order of steps this follows).
//!
//! Pod names are fixed, so a stale cache can at worst ask to create a pod that exists (the API answers
//! AlreadyExists, which is taken as done); deletions carry the pod's uid as a precondition, so a stale cache never
//! deletes the pod that already replaced the one it meant.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::ResourceExt;
use serde_json::json;

use super::events::{Kind, Recorder};
use super::informer::{Change, Informer};
use super::queue::{self, WorkQueue};
use super::replicaset::{adopt, controller_of, controller_reference, is_available, object_key, ready_since, release};
use super::revisions::{self, REVISION_HASH_LABEL};
use super::{label_selector, labels_match, ReconcileError};

pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
const WORKERS: usize = 2;

pub struct StatefulSetController {
    client: kube::Client,
    stateful_sets: Arc<Informer<StatefulSet>>,
    pods: Arc<Informer<Pod>>,
    revisions: Arc<Informer<ControllerRevision>>,
    queue: WorkQueue,
    events: Recorder,
}

impl StatefulSetController {
    pub fn new(
        client: kube::Client,
        stateful_sets: Arc<Informer<StatefulSet>>,
        pods: Arc<Informer<Pod>>,
        revisions: Arc<Informer<ControllerRevision>>,
    ) -> Arc<StatefulSetController> {
        let controller = Arc::new(StatefulSetController {
            events: Recorder::new(client.clone(), "statefulset-controller"),
            client,
            stateful_sets: stateful_sets.clone(),
            pods: pods.clone(),
            revisions: revisions.clone(),
            queue: WorkQueue::new(),
        });
        let queue = controller.queue.clone();
        stateful_sets.on_change(move |change| {
            if let Change::Applied { new, .. } = change {
                queue.add(object_key(*new));
            }
        });
        let this = Arc::downgrade(&controller);
        pods.on_change(move |change| {
            let Some(controller) = this.upgrade() else { return };
            let (pod, old) = match change {
                Change::Applied { old, new } => (*new, *old),
                Change::Deleted(old) => (*old, None),
            };
            let owners = [Some(pod), old].into_iter().flatten().filter_map(owning_stateful_set);
            let mut keys: HashSet<queue::Key> = owners.collect();
            if keys.is_empty() {
                keys.extend(controller.matching_stateful_sets(pod));
            }
            for key in keys {
                controller.queue.add(key);
            }
        });
        let queue = controller.queue.clone();
        revisions.on_change(move |change| {
            let revision = match change {
                Change::Applied { new, .. } => *new,
                Change::Deleted(old) => *old,
            };
            let owner = revision.owner_references().iter().find(|owner| owner.controller == Some(true));
            if let Some(owner) = owner.filter(|owner| owner.kind == "StatefulSet") {
                queue.add(queue::key(revision.metadata.namespace.as_deref(), &owner.name));
            }
        });
        controller
    }

    fn matching_stateful_sets(&self, pod: &Pod) -> Vec<queue::Key> {
        let namespace = pod.namespace().unwrap_or_default();
        self.stateful_sets
            .list_namespace(&namespace)
            .into_iter()
            .filter(|set| {
                set.spec
                    .as_ref()
                    .and_then(|spec| label_selector(&spec.selector))
                    .is_some_and(|selector| labels_match(&selector, pod.metadata.labels.as_ref()))
            })
            .map(|set| object_key(set.as_ref()))
            .collect()
    }

    pub async fn run(self: Arc<Self>) {
        self.stateful_sets.synced().await;
        self.pods.synced().await;
        self.revisions.synced().await;
        let controller = self.clone();
        queue::run_workers("statefulset", self.queue.clone(), WORKERS, move |key| {
            let controller = controller.clone();
            async move { controller.reconcile(&key).await }
        })
        .await;
    }

    async fn reconcile(&self, key: &str) -> Result<(), ReconcileError> {
        let (namespace, name) = queue::split(key);
        let Some(set) = self.stateful_sets.get(namespace, name) else { return Ok(()) };
        // The garbage collector removes the pods, revisions and (whenDeleted: Delete) claims of a deleted set.
        if set.metadata.deletion_timestamp.is_some() {
            return Ok(());
        }
        let Some(spec) = set.spec.as_ref() else { return Ok(()) };
        let Some(selector) = label_selector(&spec.selector) else { return Ok(()) };
        let collision_count = set.status.as_ref().and_then(|status| status.collision_count);
        let history =
            match revisions::sync(&self.client, &self.revisions, set.as_ref(), &spec.template, collision_count).await {
                Ok(history) => history,
                Err(revisions::SyncError::Collision) => {
                    let api: Api<StatefulSet> = Api::namespaced(self.client.clone(), namespace);
                    let patch = json!({"status": {"collisionCount": collision_count.unwrap_or(0) + 1}});
                    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
                    return Err(ReconcileError::Other("revision name collision; retrying with a new hash".into()));
                }
                Err(error) => return Err(error.into()),
            };
        let update_revision = history.current.name_any();
        // The revision the set is rolling from: the one status names, while it still exists.
        let recorded_current = set.status.as_ref().and_then(|status| status.current_revision.clone());
        let current = recorded_current
            .and_then(|wanted| history.older.iter().find(|revision| revision.name_any() == wanted).cloned());
        let (current_revision, current_template) = match current {
            Some(revision) => (revision.name_any(), revisions::template_of(&revision).unwrap_or(spec.template.clone())),
            None => (update_revision.clone(), spec.template.clone()),
        };
        let pods = self.claim_pods(&set, &selector).await;
        let step = Step {
            controller: self,
            set: &set,
            pods: &pods,
            current_revision: &current_revision,
            current_template: &current_template,
            update_revision: &update_revision,
        };
        let acted = step.act().await;

        let status = step.status();
        if set.status.as_ref().map(|status| StatefulSetStatus {
            collision_count: None,
            conditions: None,
            ..status.clone()
        }) != Some(status.clone())
        {
            let api: Api<StatefulSet> = Api::namespaced(self.client.clone(), namespace);
            let patch = json!({"status": status_patch(&status)});
            api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        }
        let live: HashSet<String> = [current_revision.clone(), update_revision.clone()].into_iter().collect();
        let live_hashes: HashSet<String> = history
            .older
            .iter()
            .chain(std::iter::once(&Arc::new(history.current.clone())))
            .filter(|revision| live.contains(&revision.name_any()))
            .map(|revision| revisions::hash_of(revision))
            .collect();
        revisions::clean_up(&self.client, &history, &live_hashes, spec.revision_history_limit.unwrap_or(10)).await;
        if spec.min_ready_seconds.unwrap_or(0) > 0 && status.available_replicas < status.ready_replicas {
            // Look again once ready pods have been ready long enough to count as available.
            self.queue.add_after(key.to_string(), Duration::from_secs(1));
        }
        acted
    }

    /// The pods this set controls: owned ones that still match, plus matching orphans named as its members.
    async fn claim_pods(
        &self,
        set: &StatefulSet,
        selector: &crate::apiserver::selector::LabelSelector,
    ) -> Vec<Arc<Pod>> {
        let namespace = set.namespace().unwrap_or_default();
        let uid = set.uid().unwrap_or_default();
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
                    && ordinal_of(&set.name_any(), &pod.name_any()).is_some()
                    && pod.metadata.deletion_timestamp.is_none()
                    && adopt(&api, &pod, &controller_reference(set)).await =>
                {
                    owned.push(pod);
                }
                _ => {}
            }
        }
        owned
    }
}

fn owning_stateful_set(pod: &Pod) -> Option<queue::Key> {
    let owner = controller_of(pod)?;
    (owner.kind == "StatefulSet" && owner.api_version == "apps/v1")
        .then(|| queue::key(pod.metadata.namespace.as_deref(), &owner.name))
}

/// The ordinal in a member's name `<set>-<ordinal>`.
fn ordinal_of(set: &str, pod: &str) -> Option<i32> {
    let ordinal = pod.strip_prefix(set)?.strip_prefix('-')?;
    if ordinal.starts_with('+') || (ordinal.len() > 1 && ordinal.starts_with('0')) {
        return None;
    }
    ordinal.parse().ok().filter(|ordinal| *ordinal >= 0)
}

fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref().and_then(|status| status.phase.as_deref())
}

fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

fn is_running_and_ready(pod: &Pod) -> bool {
    phase(pod) == Some("Running") && ready_since(pod).is_some()
}

fn is_healthy(pod: &Pod) -> bool {
    is_running_and_ready(pod) && !is_terminating(pod)
}

fn revision_of(pod: &Pod) -> Option<&str> {
    pod.labels().get(REVISION_HASH_LABEL).map(String::as_str)
}

/// One pass over one set: at most one step in OrderedReady mode (create, replace, delete or update a pod),
/// every creation and removal at once in Parallel mode.
struct Step<'a> {
    controller: &'a StatefulSetController,
    set: &'a StatefulSet,
    pods: &'a [Arc<Pod>],
    current_revision: &'a str,
    current_template: &'a PodTemplateSpec,
    update_revision: &'a str,
}

impl Step<'_> {
    fn spec(&self) -> &k8s_openapi::api::apps::v1::StatefulSetSpec {
        self.set.spec.as_ref().expect("checked by reconcile")
    }

    fn replicas(&self) -> i32 {
        self.spec().replicas.unwrap_or(1).max(0)
    }

    fn first_ordinal(&self) -> i32 {
        self.spec().ordinals.as_ref().and_then(|ordinals| ordinals.start).unwrap_or(0)
    }

    fn monotonic(&self) -> bool {
        self.spec().pod_management_policy.as_deref() != Some("Parallel")
    }

    fn rolling_update(&self) -> bool {
        let strategy = self.spec().update_strategy.as_ref();
        strategy.and_then(|strategy| strategy.type_.as_deref()).unwrap_or("RollingUpdate") == "RollingUpdate"
    }

    fn partition(&self) -> i32 {
        let strategy = self.spec().update_strategy.as_ref();
        strategy
            .and_then(|strategy| strategy.rolling_update.as_ref())
            .and_then(|rolling| rolling.partition)
            .unwrap_or(0)
    }

    /// Pods by ordinal: those in `[start, start + replicas)`, and the condemned rest, highest ordinal first.
    fn split(&self) -> (BTreeMap<i32, Arc<Pod>>, Vec<Arc<Pod>>) {
        let set_name = self.set.name_any();
        let (start, end) = (self.first_ordinal(), self.first_ordinal() + self.replicas());
        let mut members = BTreeMap::new();
        let mut condemned = Vec::new();
        for pod in self.pods {
            let Some(ordinal) = ordinal_of(&set_name, &pod.name_any()) else { continue };
            if (start..end).contains(&ordinal) {
                members.insert(ordinal, pod.clone());
            } else {
                condemned.push((ordinal, pod.clone()));
            }
        }
        condemned.sort_by_key(|(ordinal, _)| std::cmp::Reverse(*ordinal));
        (members, condemned.into_iter().map(|(_, pod)| pod).collect())
    }

    async fn act(&self) -> Result<(), ReconcileError> {
        let (members, condemned) = self.split();
        let monotonic = self.monotonic();
        // Scale up and repair, lowest ordinal first.
        for ordinal in self.first_ordinal()..self.first_ordinal() + self.replicas() {
            match members.get(&ordinal) {
                None => {
                    self.create(ordinal).await?;
                    if monotonic {
                        return Ok(());
                    }
                }
                Some(pod) if phase(pod) == Some("Failed") && !is_terminating(pod) => {
                    // Recreated on a later pass, once the watch shows it gone.
                    self.delete(pod).await?;
                    if monotonic {
                        return Ok(());
                    }
                }
                Some(pod) if monotonic && !is_healthy(pod) => return Ok(()),
                Some(_) => {}
            }
        }
        // Scale down, highest ordinal first; in order mode only while everything else is healthy.
        for pod in &condemned {
            if is_terminating(pod) {
                if monotonic {
                    return Ok(());
                }
                continue;
            }
            let unhealthy_elsewhere = members
                .values()
                .chain(condemned.iter())
                .any(|other| other.name_any() != pod.name_any() && !is_healthy(other));
            if monotonic && unhealthy_elsewhere {
                return Ok(());
            }
            self.release_claims_with(pod).await;
            self.delete(pod).await?;
            if monotonic {
                return Ok(());
            }
        }
        if !self.rolling_update() {
            return Ok(());
        }
        // Update from the highest ordinal down to the partition, one pod at a time, each waited for.
        let lowest = self.first_ordinal() + self.partition().max(0);
        for ordinal in (lowest..self.first_ordinal() + self.replicas()).rev() {
            let Some(pod) = members.get(&ordinal) else { return Ok(()) };
            if revision_of(pod) != Some(self.update_revision) && !is_terminating(pod) {
                self.delete(pod).await?;
                return Ok(());
            }
            if !is_healthy(pod) {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Creates the member pod `ordinal` (and its claims first): from the current revision below the partition,
    /// from the update revision otherwise.
    async fn create(&self, ordinal: i32) -> Result<(), ReconcileError> {
        let index = ordinal - self.first_ordinal();
        let (template, revision) = if self.rolling_update() && index < self.partition() {
            (self.current_template, self.current_revision)
        } else {
            (&self.spec().template, self.update_revision)
        };
        let pod = member_pod(self.set, template, revision, ordinal);
        let namespace = self.set.namespace().unwrap_or_default();
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(self.controller.client.clone(), &namespace);
        for claim in member_claims(self.set, ordinal) {
            match claims.create(&PostParams::default(), &claim).await {
                Ok(_) => self.controller.events.publish(
                    self.set,
                    Kind::Normal,
                    "SuccessfulCreate",
                    format!(
                        "create Claim {} Pod {} in StatefulSet {} success",
                        claim.name_any(),
                        pod.name_any(),
                        self.set.name_any()
                    ),
                ),
                Err(kube::Error::Api(response)) if response.code == 409 => {}
                Err(error) => {
                    self.controller.events.publish(
                        self.set,
                        Kind::Warning,
                        "FailedCreate",
                        format!(
                            "create Claim {} for Pod {} in StatefulSet {} failed error: {error}",
                            claim.name_any(),
                            pod.name_any(),
                            self.set.name_any()
                        ),
                    );
                    return Err(error.into());
                }
            }
        }
        let pods: Api<Pod> = Api::namespaced(self.controller.client.clone(), &namespace);
        match pods.create(&PostParams::default(), &pod).await {
            Ok(_) => {
                self.controller.events.publish(
                    self.set,
                    Kind::Normal,
                    "SuccessfulCreate",
                    format!("create Pod {} in StatefulSet {} successful", pod.name_any(), self.set.name_any()),
                );
                Ok(())
            }
            // Created by an earlier pass that the cache does not show yet.
            Err(kube::Error::Api(response)) if response.code == 409 => Ok(()),
            Err(error) => {
                self.controller.events.publish(
                    self.set,
                    Kind::Warning,
                    "FailedCreate",
                    format!(
                        "create Pod {} in StatefulSet {} failed error: {error}",
                        pod.name_any(),
                        self.set.name_any()
                    ),
                );
                Err(error.into())
            }
        }
    }

    async fn delete(&self, pod: &Pod) -> Result<(), ReconcileError> {
        let pods: Api<Pod> = Api::namespaced(self.controller.client.clone(), &pod.namespace().unwrap_or_default());
        // The uid pins the pod the cache showed, not a successor of the same name.
        let params = DeleteParams {
            preconditions: Some(Preconditions { uid: pod.metadata.uid.clone(), resource_version: None }),
            ..Default::default()
        };
        match pods.delete(&pod.name_any(), &params).await {
            Ok(_) => {
                self.controller.events.publish(
                    self.set,
                    Kind::Normal,
                    "SuccessfulDelete",
                    format!("delete Pod {} in StatefulSet {} successful", pod.name_any(), self.set.name_any()),
                );
                Ok(())
            }
            Err(kube::Error::Api(response)) if response.code == 404 || response.code == 409 => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// With `whenScaled: Delete`, a condemned pod's claims become the pod's dependents, so they go with it.
    async fn release_claims_with(&self, pod: &Pod) {
        let policy = self.spec().persistent_volume_claim_retention_policy.as_ref();
        if policy.and_then(|policy| policy.when_scaled.as_deref()) != Some("Delete") {
            return;
        }
        let Some(ordinal) = ordinal_of(&self.set.name_any(), &pod.name_any()) else { return };
        let claims: Api<PersistentVolumeClaim> =
            Api::namespaced(self.controller.client.clone(), &self.set.namespace().unwrap_or_default());
        let owner = OwnerReference {
            api_version: "v1".into(),
            kind: "Pod".into(),
            name: pod.name_any(),
            uid: pod.uid().unwrap_or_default(),
            ..Default::default()
        };
        for wanted in member_claims(self.set, ordinal) {
            // Read fresh: the owner list is replaced whole, and must not drop a reference added meanwhile.
            let Ok(claim) = claims.get(&wanted.name_any()).await else { continue };
            let mut references = claim.metadata.owner_references.clone().unwrap_or_default();
            if references.iter().any(|reference| reference.uid == owner.uid) {
                continue;
            }
            references.push(owner.clone());
            let patch = json!({"metadata": {"ownerReferences": references,
                "resourceVersion": claim.metadata.resource_version}});
            if let Err(error) = claims.patch(&claim.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await {
                tracing::debug!(claim = %claim.name_any(), error = %error, "cannot hand the claim to its pod");
            }
        }
    }

    fn status(&self) -> StatefulSetStatus {
        let min_ready_seconds = self.spec().min_ready_seconds.unwrap_or(0);
        let now = jiff::Timestamp::now();
        let (mut replicas, mut ready, mut available, mut current, mut updated) = (0, 0, 0, 0, 0);
        for pod in self.pods.iter().filter(|pod| ordinal_of(&self.set.name_any(), &pod.name_any()).is_some()) {
            let created = phase(pod).is_some_and(|phase| !phase.is_empty());
            if created {
                replicas += 1;
            }
            if is_running_and_ready(pod) {
                ready += 1;
                if is_available(pod, min_ready_seconds, now) {
                    available += 1;
                }
            }
            if created && !is_terminating(pod) {
                if revision_of(pod) == Some(self.current_revision) {
                    current += 1;
                }
                if revision_of(pod) == Some(self.update_revision) {
                    updated += 1;
                }
            }
        }
        let mut status = StatefulSetStatus {
            replicas,
            ready_replicas: Some(ready).filter(|count| *count > 0),
            available_replicas: Some(available),
            current_replicas: Some(current).filter(|count| *count > 0),
            updated_replicas: Some(updated).filter(|count| *count > 0),
            current_revision: Some(self.current_revision.to_string()),
            update_revision: Some(self.update_revision.to_string()),
            observed_generation: self.set.metadata.generation,
            collision_count: None,
            conditions: None,
        };
        // The rolling update is complete once every pod is updated and ready: the update revision becomes current.
        if self.rolling_update() && updated == replicas && ready == replicas && replicas == self.replicas() {
            status.current_revision = status.update_revision.clone();
            status.current_replicas = status.updated_replicas;
        }
        status
    }
}

/// The status as a merge patch: counts that dropped to none are written as null, so the patch removes them.
fn status_patch(status: &StatefulSetStatus) -> serde_json::Value {
    let mut value = serde_json::to_value(status).unwrap_or_default();
    if let Some(fields) = value.as_object_mut() {
        fields.remove("collisionCount");
        for field in ["readyReplicas", "currentReplicas", "updatedReplicas"] {
            fields.entry(field).or_insert(serde_json::Value::Null);
        }
    }
    value
}

/// Member `ordinal` of `set`, from `template` at `revision`: its stable name, the labels that select it alone
/// (`statefulset.kubernetes.io/pod-name`, `apps.kubernetes.io/pod-index`), its hostname under the governing
/// Service, and its claims mounted in place of the template's volumes of the same names.
fn member_pod(set: &StatefulSet, template: &PodTemplateSpec, revision: &str, ordinal: i32) -> Pod {
    let name = format!("{}-{ordinal}", set.name_any());
    let template_meta = template.metadata.clone().unwrap_or_default();
    let mut labels = template_meta.labels.unwrap_or_default();
    labels.insert(REVISION_HASH_LABEL.into(), revision.to_string());
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    let mut spec = template.spec.clone().unwrap_or_default();
    spec.hostname = Some(name.clone());
    if let Some(service) = set.spec.as_ref().and_then(|spec| spec.service_name.clone()).filter(|name| !name.is_empty())
    {
        spec.subdomain = Some(service);
    }
    let templates = set.spec.as_ref().and_then(|spec| spec.volume_claim_templates.clone()).unwrap_or_default();
    let volumes = spec.volumes.get_or_insert_with(Vec::new);
    for claim in &templates {
        let volume_name = claim.name_any();
        volumes.retain(|volume| volume.name != volume_name);
        volumes.push(Volume {
            name: volume_name.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim_name(set, &volume_name, ordinal),
                read_only: None,
            }),
            ..Default::default()
        });
    }
    if volumes.is_empty() {
        spec.volumes = None;
    }
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: set.namespace(),
            labels: Some(labels),
            annotations: template_meta.annotations,
            finalizers: template_meta.finalizers,
            owner_references: Some(vec![controller_reference(set)]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

fn claim_name(set: &StatefulSet, template: &str, ordinal: i32) -> String {
    format!("{template}-{}-{ordinal}", set.name_any())
}

/// The claims member `ordinal` needs; with `whenDeleted: Delete` they are the set's dependents.
fn member_claims(set: &StatefulSet, ordinal: i32) -> Vec<PersistentVolumeClaim> {
    let Some(spec) = set.spec.as_ref() else { return Vec::new() };
    let owned_by_set =
        spec.persistent_volume_claim_retention_policy.as_ref().and_then(|policy| policy.when_deleted.as_deref())
            == Some("Delete");
    let selector_labels = spec.selector.match_labels.clone().unwrap_or_default();
    spec.volume_claim_templates
        .iter()
        .flatten()
        .map(|template| {
            let mut labels = template.metadata.labels.clone().unwrap_or_default();
            labels.extend(selector_labels.clone());
            let owner = OwnerReference { controller: None, ..controller_reference(set) };
            PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(claim_name(set, &template.name_any(), ordinal)),
                    namespace: set.namespace(),
                    labels: Some(labels),
                    annotations: template.metadata.annotations.clone(),
                    owner_references: owned_by_set.then(|| vec![owner]),
                    ..Default::default()
                },
                spec: template.spec.clone(),
                status: None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stateful_set(spec: serde_json::Value) -> StatefulSet {
        serde_json::from_value(json!({"metadata": {"name": "db", "namespace": "default", "uid": "u1", "generation": 1},
            "spec": spec}))
        .unwrap()
    }

    #[test]
    fn ordinals_come_only_from_member_names() {
        assert_eq!(ordinal_of("db", "db-0"), Some(0));
        assert_eq!(ordinal_of("db", "db-12"), Some(12));
        assert_eq!(ordinal_of("db", "db-01"), None);
        assert_eq!(ordinal_of("db", "db-x"), None);
        assert_eq!(ordinal_of("db", "dbx-1"), None);
        assert_eq!(ordinal_of("db", "db-web-1"), None);
    }

    #[test]
    fn members_get_stable_identity_and_claims() {
        let set = stateful_set(json!({"serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete", "whenScaled": "Retain"},
            "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "db", "image": "x"}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}}}}]}));
        let template = set.spec.as_ref().unwrap().template.clone();
        let pod = serde_json::to_value(member_pod(&set, &template, "db-abc", 2)).unwrap();
        assert_eq!(pod["metadata"]["name"], "db-2");
        assert_eq!(pod["metadata"]["labels"][POD_NAME_LABEL], "db-2");
        assert_eq!(pod["metadata"]["labels"][POD_INDEX_LABEL], "2");
        assert_eq!(pod["metadata"]["labels"][REVISION_HASH_LABEL], "db-abc");
        assert_eq!((pod["spec"]["hostname"].as_str(), pod["spec"]["subdomain"].as_str()), (Some("db-2"), Some("db")));
        assert_eq!(pod["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"], "data-db-2");
        let claims = member_claims(&set, 2);
        assert_eq!(claims[0].name_any(), "data-db-2");
        assert_eq!(claims[0].labels().get("app").map(String::as_str), Some("db"));
        let owner = &claims[0].owner_references()[0];
        assert_eq!((owner.kind.as_str(), owner.controller), ("StatefulSet", None));
    }
}
