//! The Deployment controller: one ReplicaSet per pod template (named `<deployment>-<pod-template-hash>`), rolled
//! out by the RollingUpdate (maxSurge, maxUnavailable) or Recreate strategy, with the revision annotations,
//! history limit, pause, progress deadline and the status and conditions `kubectl rollout status|history|undo|
//! restart|pause|resume` read (research: upstream's `pkg/controller/deployment`, whose arithmetic this follows).
//!
//! `kubectl rollout undo` needs nothing here: kubectl itself copies an old ReplicaSet's template back into the
//! Deployment, and the old ReplicaSet becomes the new one again with the next revision number.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use serde_json::json;

use super::events::{Kind, Recorder};
use super::informer::{Change, Informer};
use super::queue::{self, WorkQueue};
use super::replicaset::{controller_of, controller_reference, object_key};
use super::{label_selector, labels_match, ReconcileError};

pub const TEMPLATE_HASH_LABEL: &str = "pod-template-hash";
const REVISION: &str = "deployment.kubernetes.io/revision";
const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
/// Deployment annotations that are the Deployment's own, not copied to its ReplicaSets.
const NOT_COPIED: [&str; 6] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];
const WORKERS: usize = 5;

pub struct DeploymentController {
    client: kube::Client,
    deployments: Arc<Informer<Deployment>>,
    replica_sets: Arc<Informer<ReplicaSet>>,
    pods: Arc<Informer<Pod>>,
    queue: WorkQueue,
    events: Recorder,
}

impl DeploymentController {
    pub fn new(
        client: kube::Client,
        deployments: Arc<Informer<Deployment>>,
        replica_sets: Arc<Informer<ReplicaSet>>,
        pods: Arc<Informer<Pod>>,
    ) -> Arc<DeploymentController> {
        let controller = Arc::new(DeploymentController {
            events: Recorder::new(client.clone(), "deployment-controller"),
            client,
            deployments: deployments.clone(),
            replica_sets: replica_sets.clone(),
            pods: pods.clone(),
            queue: WorkQueue::new(),
        });
        let queue = controller.queue.clone();
        deployments.on_change(move |change| {
            if let Change::Applied { new, .. } = change {
                queue.add(object_key(*new));
            }
        });
        let this = Arc::downgrade(&controller);
        replica_sets.on_change(move |change| {
            let Some(controller) = this.upgrade() else { return };
            let rs = match change {
                Change::Applied { new, .. } => *new,
                Change::Deleted(old) => *old,
            };
            for key in controller.deployments_of(rs) {
                controller.queue.add(key);
            }
        });
        let this = Arc::downgrade(&controller);
        pods.on_change(move |change| {
            // Recreate waits for the old pods to be gone.
            let (Some(controller), Change::Deleted(pod)) = (this.upgrade(), change) else { return };
            let Some(owner) = controller_of(pod).filter(|owner| owner.kind == "ReplicaSet") else { return };
            if let Some(rs) = controller.replica_sets.get(pod.metadata.namespace.as_deref().unwrap_or(""), &owner.name)
            {
                for key in controller.deployments_of(&rs) {
                    controller.queue.add(key);
                }
            }
        });
        controller
    }

    /// The Deployment that controls `rs`, or for an orphan, those whose selector matches it.
    fn deployments_of(&self, rs: &ReplicaSet) -> Vec<queue::Key> {
        let namespace = rs.namespace().unwrap_or_default();
        if let Some(owner) = rs.metadata.owner_references.iter().flatten().find(|owner| owner.controller == Some(true))
        {
            return if owner.kind == "Deployment" { vec![queue::key(Some(&namespace), &owner.name)] } else { vec![] };
        }
        self.deployments
            .list_namespace(&namespace)
            .into_iter()
            .filter(|deployment| {
                deployment
                    .spec
                    .as_ref()
                    .and_then(|spec| label_selector(&spec.selector))
                    .is_some_and(|selector| labels_match(&selector, rs.metadata.labels.as_ref()))
            })
            .map(|deployment| object_key(deployment.as_ref()))
            .collect()
    }

    pub async fn run(self: Arc<Self>) {
        self.deployments.synced().await;
        self.replica_sets.synced().await;
        self.pods.synced().await;
        let controller = self.clone();
        queue::run_workers("deployment", self.queue.clone(), WORKERS, move |key| {
            let controller = controller.clone();
            async move { controller.reconcile(&key).await }
        })
        .await;
    }

    async fn reconcile(&self, key: &str) -> Result<(), ReconcileError> {
        let (namespace, name) = queue::split(key);
        let Some(deployment) = self.deployments.get(namespace, name) else { return Ok(()) };
        if deployment.metadata.deletion_timestamp.is_some() {
            return Ok(());
        }
        let Some(spec) = deployment.spec.as_ref() else { return Ok(()) };
        let Some(selector) = label_selector(&spec.selector) else { return Ok(()) };
        let replica_sets = self.claim_replica_sets(&deployment, &selector).await;
        let mut rollout = Rollout::new(self, &deployment, replica_sets);
        if spec.paused.unwrap_or(false) {
            rollout.progressing = Some(("DeploymentPaused", "Deployment is paused".into()));
            rollout.scale().await?;
        } else if rollout.is_scaling_event() {
            // As upstream: a new spec.replicas is spread over the ReplicaSets first; the rollout goes on next pass.
            rollout.scale().await?;
        } else if spec.strategy.as_ref().and_then(|strategy| strategy.type_.as_deref()) == Some("Recreate") {
            rollout.recreate().await?;
        } else {
            rollout.rolling_update().await?;
        }
        rollout.finish().await
    }

    /// The ReplicaSets this Deployment controls: owned ones that still match, plus matching orphans it adopts.
    async fn claim_replica_sets(
        &self,
        deployment: &Deployment,
        selector: &crate::apiserver::selector::LabelSelector,
    ) -> Vec<Arc<ReplicaSet>> {
        let namespace = deployment.namespace().unwrap_or_default();
        let uid = deployment.uid().unwrap_or_default();
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &namespace);
        let mut owned = Vec::new();
        for rs in self.replica_sets.list_namespace(&namespace).into_iter() {
            let controller = rs.metadata.owner_references.iter().flatten().find(|owner| owner.controller == Some(true));
            let matches = labels_match(selector, rs.metadata.labels.as_ref());
            match controller {
                Some(owner) if owner.uid == uid && matches => owned.push(rs),
                None if matches && rs.metadata.deletion_timestamp.is_none() => {
                    let mut references = rs.metadata.owner_references.clone().unwrap_or_default();
                    references.push(controller_reference(deployment));
                    let patch = json!({"metadata": {"ownerReferences": references,
                        "resourceVersion": rs.metadata.resource_version, "uid": rs.metadata.uid}});
                    if api.patch(&rs.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await.is_ok() {
                        owned.push(rs);
                    }
                }
                _ => {}
            }
        }
        owned
    }
}

/// One reconcile of one Deployment: the ReplicaSets as this reconcile has left them, and the status to write.
struct Rollout<'a> {
    controller: &'a DeploymentController,
    deployment: &'a Deployment,
    replicas: i32,
    new_rs: Option<ReplicaSet>,
    old: Vec<ReplicaSet>,
    /// Progressing condition decided by this reconcile (reason, message), if any.
    progressing: Option<(&'static str, String)>,
    collision_count: Option<i32>,
}

impl<'a> Rollout<'a> {
    fn new(
        controller: &'a DeploymentController,
        deployment: &'a Deployment,
        owned: Vec<Arc<ReplicaSet>>,
    ) -> Rollout<'a> {
        let spec = deployment.spec.as_ref();
        let template = spec.map(|spec| spec.template.clone()).unwrap_or_default();
        let mut new_rs = None;
        let mut old = Vec::new();
        let mut owned: Vec<ReplicaSet> = owned.iter().map(|rs| rs.as_ref().clone()).collect();
        // Oldest first: upstream picks the oldest of equal templates as the new one.
        owned.sort_by_key(|rs| (rs.metadata.creation_timestamp.as_ref().map(|time| time.0), rs.name_any()));
        for rs in owned {
            if new_rs.is_none() && same_template(&rs, &template) {
                new_rs = Some(rs);
            } else {
                old.push(rs);
            }
        }
        Rollout {
            controller,
            deployment,
            replicas: spec.and_then(|spec| spec.replicas).unwrap_or(1),
            new_rs,
            old,
            progressing: None,
            collision_count: deployment.status.as_ref().and_then(|status| status.collision_count),
        }
    }

    fn namespace(&self) -> String {
        self.deployment.namespace().unwrap_or_default()
    }

    fn max_surge(&self) -> i32 {
        surge_and_unavailable(self.deployment).0
    }

    fn max_unavailable(&self) -> i32 {
        surge_and_unavailable(self.deployment).1
    }

    fn all(&self) -> impl Iterator<Item = &ReplicaSet> {
        self.new_rs.iter().chain(self.old.iter())
    }

    async fn rolling_update(&mut self) -> Result<(), ReconcileError> {
        self.ensure_new_rs().await?;
        // Scale the new ReplicaSet up, as far as maxSurge allows.
        if let Some(new_rs) = &self.new_rs {
            let current = spec_replicas(new_rs);
            let target = if current > self.replicas {
                self.replicas
            } else {
                let all_pods: i32 = self.all().map(spec_replicas).sum();
                let max_total = self.replicas + self.max_surge();
                if all_pods >= max_total {
                    current
                } else {
                    current + (max_total - all_pods).min(self.replicas - current)
                }
            };
            if target != current {
                self.scale_one(None, target).await?;
                return Ok(());
            }
        }
        if self.scale_down_old_rolling().await? {
            return Ok(());
        }
        Ok(())
    }

    /// Scales old ReplicaSets down as far as maxUnavailable allows: first their unavailable pods, then available
    /// ones while at least `replicas - maxUnavailable` stay available. True if anything was scaled.
    async fn scale_down_old_rolling(&mut self) -> Result<bool, ReconcileError> {
        let old_pods: i32 = self.old.iter().map(spec_replicas).sum();
        if old_pods == 0 {
            return Ok(false);
        }
        let all_pods: i32 = self.all().map(spec_replicas).sum();
        let min_available = self.replicas - self.max_unavailable();
        let new_unavailable = self.new_rs.as_ref().map_or(0, |rs| spec_replicas(rs) - available_replicas(rs)).max(0);
        let max_scaled_down = all_pods - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok(false);
        }
        let mut scaled = 0;
        // Unavailable pods of old ReplicaSets go first: they serve nothing.
        for index in 0..self.old.len() {
            if scaled >= max_scaled_down {
                break;
            }
            let rs = &self.old[index];
            let unhealthy = spec_replicas(rs) - available_replicas(rs);
            if spec_replicas(rs) == 0 || unhealthy <= 0 {
                continue;
            }
            let down = (max_scaled_down - scaled).min(unhealthy);
            let target = spec_replicas(rs) - down;
            self.scale_one(Some(index), target).await?;
            scaled += down;
        }
        // Then available ones, keeping minAvailable.
        let available: i32 = self.all().map(available_replicas).sum();
        let mut budget = available - min_available;
        for index in 0..self.old.len() {
            if budget <= 0 {
                break;
            }
            let current = spec_replicas(&self.old[index]);
            if current == 0 {
                continue;
            }
            let down = current.min(budget);
            self.scale_one(Some(index), current - down).await?;
            budget -= down;
            scaled += down;
        }
        Ok(scaled > 0)
    }

    async fn recreate(&mut self) -> Result<(), ReconcileError> {
        // All old ReplicaSets to zero first.
        let mut scaled = false;
        for index in 0..self.old.len() {
            if spec_replicas(&self.old[index]) > 0 {
                self.scale_one(Some(index), 0).await?;
                scaled = true;
            }
        }
        if scaled {
            return Ok(());
        }
        // Then wait until their pods are gone (Recreate promises no overlap).
        let old_uids: Vec<String> = self.old.iter().filter_map(|rs| rs.uid()).collect();
        let namespace = self.namespace();
        let old_pods_remain = self.controller.pods.list_namespace(&namespace).iter().any(|pod| {
            controller_of(pod).is_some_and(|owner| old_uids.contains(&owner.uid))
                && !matches!(
                    pod.status.as_ref().and_then(|status| status.phase.as_deref()),
                    Some("Succeeded" | "Failed")
                )
        });
        if old_pods_remain {
            return Ok(());
        }
        self.ensure_new_rs().await?;
        if self.new_rs.as_ref().is_some_and(|rs| spec_replicas(rs) != self.replicas) {
            self.scale_one(None, self.replicas).await?;
        }
        Ok(())
    }

    /// The ReplicaSet at `index`: the new one (`None`) or `old[index]`.
    fn at(&self, index: Option<usize>) -> Option<&ReplicaSet> {
        match index {
            None => self.new_rs.as_ref(),
            Some(index) => self.old.get(index),
        }
    }

    /// Indices of every ReplicaSet with replicas (see [`Rollout::at`]).
    fn active(&self) -> Vec<Option<usize>> {
        let all = self.new_rs.iter().map(|_| None).chain((0..self.old.len()).map(Some));
        all.filter(|index| self.at(*index).is_some_and(|rs| spec_replicas(rs) > 0)).collect()
    }

    /// Upstream's isScalingEvent: an active ReplicaSet was last sized for another spec.replicas.
    fn is_scaling_event(&self) -> bool {
        self.active().into_iter().filter_map(|index| self.at(index)).any(|rs| {
            let desired = rs.annotations().get(DESIRED_REPLICAS).and_then(|text| text.parse::<i32>().ok());
            desired.is_some_and(|desired| desired != self.replicas)
        })
    }

    /// Upstream's `scale`, for a scaling event or a paused Deployment: one active ReplicaSet (or, with none, the
    /// newest) takes the whole count; a saturated new one makes the old ones go to zero; otherwise, in a rolling
    /// update, the replicas to add or remove are spread over the active ReplicaSets in proportion to their size
    /// ("proportional scaling"), so a scale in the middle of a rollout keeps its old-to-new ratio.
    async fn scale(&mut self) -> Result<(), ReconcileError> {
        let active = self.active();
        let active_or_latest = match active.as_slice() {
            [] if self.new_rs.is_some() => Some(None),
            [] => self.newest_old().map(Some),
            [only] => Some(*only),
            _ => None,
        };
        if let Some(index) = active_or_latest {
            if self.at(index).is_some_and(|rs| spec_replicas(rs) != self.replicas) {
                self.scale_one(index, self.replicas).await?;
            }
            return Ok(());
        }
        if self.new_rs.as_ref().is_some_and(|rs| self.is_saturated(rs)) {
            for index in active.into_iter().flatten() {
                self.scale_one(Some(index), 0).await?;
            }
            return Ok(());
        }
        let rolling =
            self.deployment.spec.as_ref().and_then(|spec| spec.strategy.as_ref()).and_then(|s| s.type_.as_deref())
                != Some("Recreate");
        if !rolling {
            return Ok(());
        }
        let sizes: Vec<(Option<usize>, i32, i32)> = active
            .iter()
            .filter_map(|index| self.at(*index).map(|rs| (*index, spec_replicas(rs), max_replicas_annotation(rs))))
            .collect();
        let before = self.deployment.status.as_ref().and_then(|status| status.replicas).unwrap_or(0);
        for (index, size) in
            proportional_sizes(&sizes, self.replicas, self.max_surge(), before, |index| self.created(index))
        {
            let needs_annotations = self
                .at(index)
                .is_some_and(|rs| rs.annotations().get(DESIRED_REPLICAS) != Some(&self.replicas.to_string()));
            if self.at(index).is_some_and(|rs| spec_replicas(rs) != size) || needs_annotations {
                self.scale_one(index, size).await?;
            }
        }
        Ok(())
    }

    /// The most recently created old ReplicaSet.
    fn newest_old(&self) -> Option<usize> {
        (0..self.old.len()).max_by_key(|index| self.created(Some(*index)))
    }

    fn created(&self, index: Option<usize>) -> (Option<jiff::Timestamp>, String) {
        let rs = self.at(index);
        (
            rs.and_then(|rs| rs.metadata.creation_timestamp.as_ref()).map(|time| time.0),
            rs.map(|rs| rs.name_any()).unwrap_or_default(),
        )
    }

    /// Upstream's IsSaturated: the ReplicaSet has, wants and runs available exactly the Deployment's replicas.
    fn is_saturated(&self, rs: &ReplicaSet) -> bool {
        let desired = rs.annotations().get(DESIRED_REPLICAS).and_then(|text| text.parse::<i32>().ok());
        spec_replicas(rs) == self.replicas && desired == Some(self.replicas) && available_replicas(rs) == self.replicas
    }

    /// Makes sure the new ReplicaSet exists (creating it with the replicas maxSurge allows) and carries the
    /// Deployment's current revision and annotations.
    async fn ensure_new_rs(&mut self) -> Result<(), ReconcileError> {
        let max_old_revision = self.old.iter().map(revision_of).max().unwrap_or(0);
        let new_revision = max_old_revision + 1;
        if let Some(new_rs) = self.new_rs.clone() {
            let wanted = self.annotations_for(new_rs.annotations(), new_revision);
            if &wanted != new_rs.annotations() {
                let api: Api<ReplicaSet> = Api::namespaced(self.controller.client.clone(), &self.namespace());
                let patch = json!({"metadata": {"annotations": wanted}});
                let updated = api.patch(&new_rs.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
                self.new_rs = Some(updated);
            }
            if progressing_condition(self.deployment).is_none() {
                self.progressing =
                    Some(("FoundNewReplicaSet", format!("Found new replica set \"{}\"", new_rs.name_any())));
            }
            return Ok(());
        }
        let spec = self.deployment.spec.clone().unwrap_or_default();
        let hash = template_hash(&spec.template, self.collision_count);
        let name = format!("{}-{hash}", self.deployment.name_any());
        let mut template = spec.template.clone();
        template
            .metadata
            .get_or_insert_with(Default::default)
            .labels
            .get_or_insert_with(Default::default)
            .insert(TEMPLATE_HASH_LABEL.into(), hash.clone());
        let mut selector = spec.selector.clone();
        selector.match_labels.get_or_insert_with(Default::default).insert(TEMPLATE_HASH_LABEL.into(), hash.clone());
        let all_pods: i32 = self.all().map(spec_replicas).sum();
        let initial = if spec.strategy.as_ref().and_then(|strategy| strategy.type_.as_deref()) == Some("Recreate") {
            self.replicas
        } else {
            (self.replicas + self.max_surge() - all_pods).clamp(0, self.replicas)
        };
        let rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(self.namespace()),
                labels: template.metadata.as_ref().and_then(|meta| meta.labels.clone()),
                annotations: Some(self.annotations_for(&BTreeMap::new(), new_revision)),
                owner_references: Some(vec![controller_reference(self.deployment)]),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(initial),
                min_ready_seconds: spec.min_ready_seconds,
                selector: LabelSelector { ..selector },
                template: Some(template),
            }),
            status: None,
        };
        let api: Api<ReplicaSet> = Api::namespaced(self.controller.client.clone(), &self.namespace());
        match api.create(&PostParams::default(), &rs).await {
            Ok(created) => {
                tracing::debug!(replica_set = %name, replicas = initial, "created the new replica set");
                self.controller.events.publish(
                    self.deployment,
                    Kind::Normal,
                    "ScalingReplicaSet",
                    format!("Scaled up replica set {name} from 0 to {initial}"),
                );
                self.progressing = Some(("NewReplicaSetCreated", format!("Created new replica set \"{name}\"")));
                self.new_rs = Some(created);
                Ok(())
            }
            Err(kube::Error::Api(response)) if response.code == 409 => {
                // A ReplicaSet of that name exists. If it has our template, the cache has not shown it yet;
                // otherwise the hash collided: count the collision so the next attempt hashes differently.
                let existing = api.get(&name).await?;
                if !same_template(&existing, &spec.template) || controller_of_rs(&existing) != self.deployment.uid() {
                    self.collision_count = Some(self.collision_count.unwrap_or(0) + 1);
                    self.write_status().await?;
                }
                Err(ReconcileError::Other(format!("replica set {name} already exists")))
            }
            Err(error) => {
                self.controller.events.publish(
                    self.deployment,
                    Kind::Warning,
                    "FailedCreate",
                    format!("Failed to create new replica set \"{name}\": {error}"),
                );
                Err(error.into())
            }
        }
    }

    /// The annotations the new ReplicaSet should carry: the Deployment's own (but for its bookkeeping ones), the
    /// revision (a reused ReplicaSet gets the next number and remembers its old ones), desired and max replicas.
    fn annotations_for(&self, current: &BTreeMap<String, String>, new_revision: i64) -> BTreeMap<String, String> {
        let mut annotations = current.clone();
        for (key, value) in self.deployment.annotations() {
            if !NOT_COPIED.contains(&key.as_str()) {
                annotations.insert(key.clone(), value.clone());
            }
        }
        let old_revision = current.get(REVISION).and_then(|revision| revision.parse::<i64>().ok());
        if old_revision.is_none_or(|old| old < new_revision) {
            annotations.insert(REVISION.into(), new_revision.to_string());
            if let Some(old) = old_revision {
                let history = match current.get(REVISION_HISTORY) {
                    Some(history) if !history.is_empty() => format!("{history},{old}"),
                    _ => old.to_string(),
                };
                annotations.insert(REVISION_HISTORY.into(), history);
            }
        }
        annotations.insert(DESIRED_REPLICAS.into(), self.replicas.to_string());
        annotations.insert(MAX_REPLICAS.into(), (self.replicas + self.max_surge()).to_string());
        annotations
    }

    /// Sets the replicas of the new ReplicaSet (`None`) or of `old[index]`.
    async fn scale_one(&mut self, index: Option<usize>, replicas: i32) -> Result<(), ReconcileError> {
        let desired = self.replicas.to_string();
        let max = (self.replicas + self.max_surge()).to_string();
        let rs = match index {
            None => self.new_rs.as_mut(),
            Some(index) => self.old.get_mut(index),
        };
        let Some(rs) = rs else { return Ok(()) };
        let from = spec_replicas(rs);
        let api: Api<ReplicaSet> = Api::namespaced(self.controller.client.clone(), &rs.namespace().unwrap_or_default());
        let patch = json!({"metadata": {"annotations": {DESIRED_REPLICAS: desired, MAX_REPLICAS: max}},
            "spec": {"replicas": replicas}});
        *rs = api.patch(&rs.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
        let direction = if replicas > from { "up" } else { "down" };
        let name = rs.name_any();
        self.controller.events.publish(
            self.deployment,
            Kind::Normal,
            "ScalingReplicaSet",
            format!("Scaled {direction} replica set {name} from {from} to {replicas}"),
        );
        Ok(())
    }

    /// Deletes old ReplicaSets with no pods beyond revisionHistoryLimit (oldest revisions first), then writes the
    /// status.
    async fn finish(mut self) -> Result<(), ReconcileError> {
        let status = self.status();
        if complete(self.deployment, &status) {
            self.clean_up_history().await;
        }
        self.write_status().await?;
        // Come back at the progress deadline, to say it was exceeded if nothing moved by then.
        if let Some(deadline) = self.deployment.spec.as_ref().and_then(|spec| spec.progress_deadline_seconds) {
            if !complete(self.deployment, &status) && deadline < i32::MAX {
                self.controller.queue.add_after(object_key(self.deployment), Duration::from_secs(deadline as u64 + 1));
            }
        }
        Ok(())
    }

    async fn clean_up_history(&mut self) {
        let limit =
            self.deployment.spec.as_ref().and_then(|spec| spec.revision_history_limit).unwrap_or(10).max(0) as usize;
        let mut removable: Vec<&ReplicaSet> = self
            .old
            .iter()
            .filter(|rs| spec_replicas(rs) == 0 && rs.status.as_ref().is_none_or(|status| status.replicas == 0))
            .filter(|rs| rs.metadata.deletion_timestamp.is_none())
            .collect();
        if removable.len() <= limit {
            return;
        }
        removable.sort_by_key(|rs| revision_of(rs));
        let api: Api<ReplicaSet> = Api::namespaced(self.controller.client.clone(), &self.namespace());
        for rs in &removable[..removable.len() - limit] {
            let _ = api.delete(&rs.name_any(), &DeleteParams::background()).await;
        }
    }

    fn status(&self) -> DeploymentStatus {
        let sum = |value: fn(&ReplicaSet) -> i32| self.all().map(value).sum::<i32>();
        let replicas = sum(|rs| rs.status.as_ref().map_or(0, |status| status.replicas));
        let updated = self.new_rs.as_ref().and_then(|rs| rs.status.as_ref()).map_or(0, |status| status.replicas);
        let ready = sum(|rs| rs.status.as_ref().and_then(|status| status.ready_replicas).unwrap_or(0));
        let available = sum(available_replicas);
        let unavailable = (sum(spec_replicas) - available).max(0);
        let count = |value: i32| Some(value).filter(|value| *value != 0);
        DeploymentStatus {
            observed_generation: self.deployment.metadata.generation,
            replicas: count(replicas),
            updated_replicas: count(updated),
            ready_replicas: count(ready),
            available_replicas: count(available),
            unavailable_replicas: count(unavailable),
            collision_count: self.collision_count,
            conditions: None,
            terminating_replicas: None,
        }
    }

    async fn write_status(&self) -> Result<(), ReconcileError> {
        let mut status = self.status();
        let old_status = self.deployment.status.clone().unwrap_or_default();
        let mut conditions = old_status.conditions.clone().unwrap_or_default();
        let now = Time(jiff::Timestamp::now());
        let min_available = self.replicas - self.max_unavailable();
        if status.available_replicas.unwrap_or(0) >= min_available {
            set_condition(
                &mut conditions,
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
                &now,
            );
        } else {
            set_condition(
                &mut conditions,
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
                &now,
            );
        }
        let new_name = self.new_rs.as_ref().map(|rs| rs.name_any()).unwrap_or_default();
        let paused = self.deployment.spec.as_ref().and_then(|spec| spec.paused).unwrap_or(false);
        let current = progressing_condition(self.deployment);
        if paused {
            set_condition(&mut conditions, "Progressing", "Unknown", "DeploymentPaused", "Deployment is paused", &now);
        } else if current.is_some_and(|condition| condition.reason.as_deref() == Some("DeploymentPaused")) {
            set_condition(
                &mut conditions,
                "Progressing",
                "Unknown",
                "DeploymentResumed",
                "Deployment is resumed",
                &now,
            );
        } else if complete(self.deployment, &status) {
            let message = format!("ReplicaSet \"{new_name}\" has successfully progressed.");
            set_condition(&mut conditions, "Progressing", "True", "NewReplicaSetAvailable", &message, &now);
        } else if let Some((reason, message)) = &self.progressing {
            set_condition(&mut conditions, "Progressing", "True", reason, message, &now);
        } else if moved(&old_status, &status) {
            // Progress renews the deadline: lastUpdateTime moves, lastTransitionTime stays.
            conditions.retain(|condition| condition.type_ != "Progressing");
            let transition = current
                .filter(|condition| condition.status == "True")
                .and_then(|condition| condition.last_transition_time.clone());
            conditions.push(DeploymentCondition {
                type_: "Progressing".into(),
                status: "True".into(),
                reason: Some("ReplicaSetUpdated".into()),
                message: Some(format!("ReplicaSet \"{new_name}\" is progressing.")),
                last_update_time: Some(now.clone()),
                last_transition_time: transition.or(Some(now.clone())),
            });
        } else if let (Some(condition), Some(deadline)) =
            (current, self.deployment.spec.as_ref().and_then(|spec| spec.progress_deadline_seconds))
        {
            let since = condition.last_update_time.as_ref().map(|time| time.0);
            let reason = condition.reason.as_deref().unwrap_or("");
            let timed_out =
                since.is_some_and(|since| since + jiff::SignedDuration::from_secs(i64::from(deadline)) < now.0);
            if timed_out && reason != "NewReplicaSetAvailable" && reason != "ProgressDeadlineExceeded" {
                let message = format!("ReplicaSet \"{new_name}\" has timed out progressing.");
                set_condition(&mut conditions, "Progressing", "False", "ProgressDeadlineExceeded", &message, &now);
                self.controller.events.publish(self.deployment, Kind::Warning, "ProgressDeadlineExceeded", message);
            }
        }
        status.conditions = Some(conditions).filter(|conditions| !conditions.is_empty());
        let revision = self.new_rs.as_ref().and_then(|rs| rs.annotations().get(REVISION).cloned());
        let api: Api<Deployment> = Api::namespaced(self.controller.client.clone(), &self.namespace());
        let name = self.deployment.name_any();
        if revision.is_some() && self.deployment.annotations().get(REVISION) != revision.as_ref() {
            let patch = json!({"metadata": {"annotations": {REVISION: revision}}});
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        }
        if self.deployment.status.as_ref() != Some(&status) {
            let mut value = serde_json::to_value(&status).unwrap_or_default();
            if let Some(fields) = value.as_object_mut() {
                for field in
                    ["replicas", "updatedReplicas", "readyReplicas", "availableReplicas", "unavailableReplicas"]
                {
                    fields.entry(field).or_insert(serde_json::Value::Null);
                }
            }
            api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&json!({"status": value}))).await?;
        }
        Ok(())
    }
}

/// The `max-replicas` annotation: the Deployment's replicas plus maxSurge when the ReplicaSet was last sized (0 when
/// missing).
fn max_replicas_annotation(rs: &ReplicaSet) -> i32 {
    rs.annotations().get(MAX_REPLICAS).and_then(|text| text.parse().ok()).unwrap_or(0)
}

/// Upstream's proportional scaling. `active` holds each active ReplicaSet's index, size and `max-replicas`
/// annotation; `replicas` and `max_surge` are the Deployment's now, `status_replicas` its last status count (the
/// fallback for a missing annotation); `created` orders ReplicaSets of equal size. Returns the new size of each.
/// The room left under replicas + maxSurge is shared from the largest ReplicaSet down, each getting its share of
/// the old total (rounded), never more than what is left; what rounding leaves over goes to the largest.
fn proportional_sizes<I: Copy, T: Ord>(
    active: &[(I, i32, i32)],
    replicas: i32,
    max_surge: i32,
    status_replicas: i32,
    created: impl Fn(I) -> T,
) -> Vec<(I, i32)> {
    let total: i32 = active.iter().map(|(_, size, _)| size).sum();
    let allowed = if replicas > 0 { replicas + max_surge } else { 0 };
    let to_add = allowed - total;
    let mut ordered: Vec<&(I, i32, i32)> = active.iter().collect();
    // Scaling up: larger first, newer first among equals; scaling down: larger first, older first among equals.
    ordered.sort_by(|a, b| {
        let by_size = b.1.cmp(&a.1);
        let by_age = if to_add > 0 { created(b.0).cmp(&created(a.0)) } else { created(a.0).cmp(&created(b.0)) };
        by_size.then(by_age)
    });
    let mut added = 0;
    let mut sizes: Vec<(I, i32)> = ordered
        .iter()
        .map(|(index, size, annotated)| {
            if to_add == 0 || *size == 0 || to_add == added {
                return (*index, *size);
            }
            let fraction = if replicas == 0 {
                -size
            } else {
                let before = if *annotated > 0 { *annotated } else { status_replicas };
                if before == 0 {
                    0
                } else {
                    ((f64::from(*size) * f64::from(allowed)) / f64::from(before)).round() as i32 - size
                }
            };
            let room = to_add - added;
            let proportion = if to_add > 0 { fraction.min(room) } else { fraction.max(room) };
            added += proportion;
            (*index, size + proportion)
        })
        .collect();
    if let Some(largest) = sizes.first_mut() {
        largest.1 = (largest.1 + to_add - added).max(0);
    }
    sizes
}

fn spec_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|spec| spec.replicas).unwrap_or(1)
}

fn available_replicas(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().and_then(|status| status.available_replicas).unwrap_or(0)
}

fn revision_of(rs: &ReplicaSet) -> i64 {
    rs.annotations().get(REVISION).and_then(|revision| revision.parse().ok()).unwrap_or(0)
}

fn controller_of_rs(rs: &ReplicaSet) -> Option<String> {
    rs.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|owner| owner.controller == Some(true))
        .map(|owner| owner.uid.clone())
}

fn progressing_condition(deployment: &Deployment) -> Option<&DeploymentCondition> {
    deployment.status.as_ref()?.conditions.as_ref()?.iter().find(|condition| condition.type_ == "Progressing")
}

/// Whether the ReplicaSet's template is the Deployment's (ignoring the pod-template-hash label).
fn same_template(rs: &ReplicaSet, template: &PodTemplateSpec) -> bool {
    let Some(mut theirs) = rs.spec.as_ref().and_then(|spec| spec.template.clone()) else { return false };
    let strip = |template: &mut PodTemplateSpec| {
        if let Some(labels) = template.metadata.as_mut().and_then(|meta| meta.labels.as_mut()) {
            labels.remove(TEMPLATE_HASH_LABEL);
        }
    };
    let mut ours = template.clone();
    strip(&mut theirs);
    strip(&mut ours);
    theirs == ours
}

/// The pod-template-hash: FNV-1a (32 bit) of the template and the collision count, written with upstream's
/// alphabet of letters and digits that cannot spell words (`rand.SafeEncodeString` of the decimal value).
pub fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut hash: u32 = 0x811c_9dc5;
    let mut feed = |bytes: &[u8]| {
        for byte in bytes {
            hash ^= u32::from(*byte);
            hash = hash.wrapping_mul(0x0100_0193);
        }
    };
    feed(&serde_json::to_vec(template).unwrap_or_default());
    if let Some(count) = collision_count {
        feed(&count.to_le_bytes());
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    hash.to_string().bytes().map(|byte| ALPHABET[usize::from(byte) % ALPHABET.len()] as char).collect()
}

/// maxSurge and maxUnavailable as pod counts: percentages of replicas, surge rounded up and unavailable down;
/// never both zero (unavailable becomes 1), as upstream's `ResolveFenceposts`.
fn surge_and_unavailable(deployment: &Deployment) -> (i32, i32) {
    let spec = deployment.spec.as_ref();
    let replicas = spec.and_then(|spec| spec.replicas).unwrap_or(1);
    let strategy = spec.and_then(|spec| spec.strategy.as_ref());
    if strategy.and_then(|strategy| strategy.type_.as_deref()) == Some("Recreate") {
        return (0, 0);
    }
    // RollingUpdate is the default strategy, 25% / 25% its default bounds.
    let rolling = strategy.and_then(|strategy| strategy.rolling_update.clone()).unwrap_or_default();
    let resolve = |value: Option<IntOrString>, round_up: bool| -> i32 {
        match value.unwrap_or(IntOrString::String("25%".into())) {
            IntOrString::Int(count) => count,
            IntOrString::String(text) => {
                let percent: f64 = text.trim_end_matches('%').parse().unwrap_or(0.0);
                let exact = percent * f64::from(replicas) / 100.0;
                (if round_up { exact.ceil() } else { exact.floor() }) as i32
            }
        }
    };
    let surge = resolve(rolling.max_surge, true);
    let unavailable = resolve(rolling.max_unavailable, false);
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

/// Done rolling out: every replica updated and available, nothing old left, this generation observed.
fn complete(deployment: &Deployment, status: &DeploymentStatus) -> bool {
    let replicas = deployment.spec.as_ref().and_then(|spec| spec.replicas).unwrap_or(1);
    status.updated_replicas.unwrap_or(0) == replicas
        && status.replicas.unwrap_or(0) == replicas
        && status.available_replicas.unwrap_or(0) == replicas
        && status.observed_generation >= deployment.metadata.generation
}

/// Whether the rollout moved since the last status (upstream's `DeploymentProgressing`).
fn moved(old: &DeploymentStatus, new: &DeploymentStatus) -> bool {
    let old_replicas = old.replicas.unwrap_or(0) - old.updated_replicas.unwrap_or(0);
    let new_replicas = new.replicas.unwrap_or(0) - new.updated_replicas.unwrap_or(0);
    new.updated_replicas.unwrap_or(0) > old.updated_replicas.unwrap_or(0)
        || new_replicas < old_replicas
        || new.ready_replicas.unwrap_or(0) > old.ready_replicas.unwrap_or(0)
        || new.available_replicas.unwrap_or(0) > old.available_replicas.unwrap_or(0)
}

/// Upstream's `SetDeploymentCondition`: same status and reason changes nothing; same status keeps the
/// transition time.
fn set_condition(
    conditions: &mut Vec<DeploymentCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: &Time,
) {
    let current = conditions.iter().find(|condition| condition.type_ == type_);
    if current.is_some_and(|condition| condition.status == status && condition.reason.as_deref() == Some(reason)) {
        return;
    }
    let transition = current
        .filter(|condition| condition.status == status)
        .and_then(|condition| condition.last_transition_time.clone());
    conditions.retain(|condition| condition.type_ != type_);
    conditions.push(DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_update_time: Some(now.clone()),
        last_transition_time: transition.or(Some(now.clone())),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(spec: serde_json::Value) -> Deployment {
        let mut value = json!({"metadata": {"name": "web", "generation": 1}, "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}});
        json_patch::merge(&mut value, &json!({ "spec": spec }));
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_scale_during_a_rollout_is_spread_in_proportion() {
        // Upstream's e2e case: 10 replicas, maxSurge 3, a rollout stuck at 8 old and 5 new; scaled to 30.
        let sizes = proportional_sizes(&[("old", 8, 13), ("new", 5, 13)], 30, 3, 13, |name| name == "new");
        assert_eq!(sizes, [("old", 20), ("new", 13)]);
        // Scaling down takes from the larger first, the older among equals, and never below zero.
        let sizes = proportional_sizes(&[("old", 5, 13), ("new", 5, 13)], 4, 1, 10, |name| name == "new");
        assert_eq!(sizes.iter().map(|(_, size)| size).sum::<i32>(), 5);
        assert!(sizes.iter().all(|(_, size)| *size >= 0), "{sizes:?}");
        // To zero: every ReplicaSet goes.
        let sizes = proportional_sizes(&[("old", 3, 6), ("new", 2, 6)], 0, 1, 5, |name| name == "new");
        assert_eq!(sizes, [("old", 0), ("new", 0)]);
    }

    #[test]
    fn surge_and_unavailable_resolve_as_upstream() {
        assert_eq!(surge_and_unavailable(&deployment(json!({"replicas": 10}))), (3, 2));
        assert_eq!(surge_and_unavailable(&deployment(json!({"replicas": 1}))), (1, 0));
        let zero = json!({"replicas": 4, "strategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}}});
        assert_eq!(surge_and_unavailable(&deployment(zero)), (0, 1));
        assert_eq!(surge_and_unavailable(&deployment(json!({"strategy": {"type": "Recreate"}}))), (0, 0));
    }

    #[test]
    fn the_hash_follows_the_template_and_collisions() {
        let template = deployment(json!({})).spec.unwrap().template;
        let hash = template_hash(&template, None);
        assert!(!hash.is_empty() && hash.bytes().all(|byte| b"bcdfghjklmnpqrstvwxz2456789".contains(&byte)));
        assert_eq!(hash, template_hash(&template, None));
        assert_ne!(hash, template_hash(&template, Some(1)));
        let mut changed = template.clone();
        changed.spec.as_mut().unwrap().containers[0].image = Some("busybox:2".into());
        assert_ne!(hash, template_hash(&changed, None));
    }

    #[test]
    fn templates_compare_without_the_hash_label() {
        let template = deployment(json!({})).spec.unwrap().template;
        let mut with_hash = template.clone();
        with_hash.metadata.as_mut().unwrap().labels.as_mut().unwrap().insert(TEMPLATE_HASH_LABEL.into(), "abc".into());
        let rs = ReplicaSet {
            spec: Some(ReplicaSetSpec { template: Some(with_hash), ..Default::default() }),
            ..Default::default()
        };
        assert!(same_template(&rs, &template));
    }

    #[test]
    fn complete_needs_every_replica_updated_and_available() {
        let d = deployment(json!({"replicas": 2}));
        let status = |replicas, updated, available| DeploymentStatus {
            replicas: Some(replicas),
            updated_replicas: Some(updated),
            available_replicas: Some(available),
            observed_generation: Some(1),
            ..Default::default()
        };
        assert!(complete(&d, &status(2, 2, 2)));
        assert!(!complete(&d, &status(3, 2, 2)), "an old pod remains");
        assert!(!complete(&d, &status(2, 2, 1)));
    }
}
