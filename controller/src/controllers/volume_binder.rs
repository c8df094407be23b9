//! The PersistentVolume binder, after upstream's PV controller (`pkg/controller/volume/persistentvolume`): binds
//! claims to volumes, provisions `local-path` volumes (`local_path.rs`), and releases and reclaims volumes whose
//! claim is gone.
//!
//! Two queues, one per kind, each level-triggered:
//! - A claim is bound to the volume pre-bound to it (its `claimRef` names the claim) or else to the smallest
//!   Available volume that satisfies it: the same class, the claim's access modes a subset of the volume's, enough
//!   capacity, the same volume mode, the claim's label selector, and, for a WaitForFirstConsumer class, a node
//!   affinity that admits the node the scheduler selected. Such a claim waits for that selection; a claim of a
//!   class whose provisioner is `kaasd.io/local-path` that no volume satisfies gets a volume provisioned. Binding is
//!   upstream's sequence of writes, each skipped when already done so a pass interrupted anywhere resumes: the
//!   volume's `claimRef` (with the volume's resourceVersion as precondition, so two claims never take one volume),
//!   the volume's phase, the claim's `volumeName` and annotations, the claim's phase, capacity and access modes.
//! - A volume follows its claim: Available without one, Bound while the claim names it, Released once the claim
//!   (same uid) is gone; then its reclaim policy applies: Retain keeps it, Delete deletes it when kaasd provisioned
//!   it (a pre-created volume has no deleter here, so it turns Failed, as upstream says of a volume without a
//!   deleter plugin), Recycle is not done (Failed).
//!
//! Not done (upstream has them): the `kubernetes.io/pvc-protection` and `pv-protection` finalizers that keep a claim
//! or volume in use from going away, a claim turning `Lost`, volume expansion, and retroactively giving claims
//! without a class the default class.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::ResourceExt;
use serde_json::json;

use super::events::{Kind, Recorder};
use super::informer::{Change, Informer};
use super::local_path::{self, SELECTED_NODE_ANNOTATION};
use super::queue::{self, WorkQueue};
use super::replicaset::object_key;
use super::{label_selector, labels_match, ReconcileError};
use crate::apiserver::defaults::parse_quantity;

const BIND_COMPLETED_ANNOTATION: &str = "pv.kubernetes.io/bind-completed";
const BOUND_BY_CONTROLLER_ANNOTATION: &str = "pv.kubernetes.io/bound-by-controller";
const BETA_CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";

pub struct VolumeBinder {
    client: kube::Client,
    claims: Arc<Informer<PersistentVolumeClaim>>,
    volumes: Arc<Informer<PersistentVolume>>,
    classes: Arc<Informer<StorageClass>>,
    nodes: Arc<Informer<Node>>,
    claim_queue: WorkQueue,
    volume_queue: WorkQueue,
    events: Recorder,
    /// Where local-path volumes live on their nodes.
    local_path_dir: PathBuf,
}

impl VolumeBinder {
    pub fn new(
        client: kube::Client,
        claims: Arc<Informer<PersistentVolumeClaim>>,
        volumes: Arc<Informer<PersistentVolume>>,
        classes: Arc<Informer<StorageClass>>,
        nodes: Arc<Informer<Node>>,
        local_path_dir: PathBuf,
    ) -> Arc<VolumeBinder> {
        let binder = Arc::new(VolumeBinder {
            events: Recorder::new(client.clone(), "persistentvolume-controller"),
            client,
            claims: claims.clone(),
            volumes: volumes.clone(),
            classes: classes.clone(),
            nodes,
            claim_queue: WorkQueue::new(),
            volume_queue: WorkQueue::new(),
            local_path_dir,
        });
        let this = Arc::downgrade(&binder);
        claims.on_change(move |change| {
            let Some(binder) = this.upgrade() else { return };
            match change {
                Change::Applied { new, .. } => {
                    binder.claim_queue.add(object_key(*new));
                    if let Some(volume) = volume_name(new) {
                        binder.volume_queue.add(volume.to_string());
                    }
                }
                Change::Deleted(old) => {
                    // The volumes that name it, bound or only pre-bound, are released.
                    let namespace = old.namespace().unwrap_or_default();
                    for volume in binder.volumes.list() {
                        if claim_ref_key(&volume).is_some_and(|(ns, name, _)| ns == namespace && name == old.name_any())
                        {
                            binder.volume_queue.add(volume.name_any());
                        }
                    }
                }
            }
        });
        let this = Arc::downgrade(&binder);
        volumes.on_change(move |change| {
            let Some(binder) = this.upgrade() else { return };
            let volume = match change {
                Change::Applied { new, .. } => *new,
                Change::Deleted(old) => *old,
            };
            binder.volume_queue.add(volume.name_any());
            if let Some((namespace, name, _)) = claim_ref_key(volume) {
                binder.claim_queue.add(queue::key(Some(&namespace), &name));
            }
            // A volume that appears or frees up may be what an unbound claim waits for.
            binder.requeue_unbound_claims();
        });
        let this = Arc::downgrade(&binder);
        classes.on_change(move |_| {
            if let Some(binder) = this.upgrade() {
                binder.requeue_unbound_claims();
            }
        });
        binder
    }

    fn requeue_unbound_claims(&self) {
        for claim in self.claims.list().iter().filter(|claim| volume_name(claim).is_none()) {
            self.claim_queue.add(object_key(claim.as_ref()));
        }
    }

    pub async fn run(self: Arc<Self>) {
        self.claims.synced().await;
        self.volumes.synced().await;
        self.classes.synced().await;
        self.nodes.synced().await;
        let claims = self.clone();
        let volumes = self.clone();
        // One worker per queue: binding decisions see the previous binding's writes once the watch shows them,
        // and the resourceVersion preconditions turn a decision made on a stale cache into a retry.
        tokio::join!(
            queue::run_workers("volume-binder-claims", self.claim_queue.clone(), 1, move |key| {
                let binder = claims.clone();
                async move { binder.sync_claim(&key).await }
            }),
            queue::run_workers("volume-binder-volumes", self.volume_queue.clone(), 1, move |key| {
                let binder = volumes.clone();
                async move { binder.sync_volume(&key).await }
            }),
        );
    }

    async fn sync_claim(&self, key: &str) -> Result<(), ReconcileError> {
        let (namespace, name) = queue::split(key);
        let Some(claim) = self.claims.get(namespace, name) else { return Ok(()) };
        if claim.metadata.deletion_timestamp.is_some() {
            return Ok(());
        }
        if let Some(wanted) = volume_name(&claim) {
            // Bound, or pre-bound by its author to a volume by name.
            let Some(volume) = self.volumes.get("", wanted) else {
                return self.set_claim_phase(&claim, "Pending").await;
            };
            return match claim_ref_key(&volume) {
                None => {
                    if let Err(mismatch) = satisfies(&claim, &volume) {
                        let message = format!("Cannot bind to requested volume {wanted:?}: {mismatch}");
                        self.events.publish(claim.as_ref(), Kind::Warning, "VolumeMismatch", message);
                        return self.set_claim_phase(&claim, "Pending").await;
                    }
                    self.bind(&claim, &volume).await
                }
                Some(_) if is_bound_to(&volume, &claim) => self.bind(&claim, &volume).await,
                // The volume is someone else's: the claim waits (as upstream, it is not bound elsewhere).
                Some(_) => self.set_claim_phase(&claim, "Pending").await,
            };
        }
        let class_name = claim_class(&claim);
        let class = self.classes.get("", &class_name);
        let delayed =
            class.as_ref().is_some_and(|class| class.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer"));
        let selected = claim.annotations().get(SELECTED_NODE_ANNOTATION).cloned();
        let node = match (&selected, delayed) {
            (None, true) => {
                let message = "waiting for first consumer to be created before binding".to_string();
                self.events.publish(claim.as_ref(), Kind::Normal, "WaitForFirstConsumer", message);
                return Ok(());
            }
            (Some(node), true) => match self.nodes.get("", node) {
                Some(node) => Some(node),
                None => return Err(ReconcileError::Other(format!("the selected node {node:?} does not exist"))),
            },
            (_, false) => None,
        };
        let volumes = self.volumes.list();
        if let Some(volume) = find_volume(&claim, &volumes, node.as_deref()) {
            let volume = volume.clone();
            return self.bind(&claim, &volume).await;
        }
        match (&class, &node) {
            (Some(class), Some(node)) if class.provisioner == local_path::PROVISIONER => {
                self.provision(&claim, class, &node.name_any()).await
            }
            _ => {
                let message = match &class {
                    Some(class) if class.provisioner == local_path::PROVISIONER => {
                        "a local-path volume is made on the node of the claim's first pod: its class needs \
                         volumeBindingMode WaitForFirstConsumer"
                            .to_string()
                    }
                    Some(class) => format!(
                        "waiting for a volume to be created by the external provisioner {:?}, which kaasd does not run",
                        class.provisioner
                    ),
                    None if class_name.is_empty() => {
                        "no persistent volumes available for this claim and no storage class is set".to_string()
                    }
                    None => format!("storageclass.storage.k8s.io {class_name:?} not found"),
                };
                self.events.publish(claim.as_ref(), Kind::Normal, "FailedBinding", message);
                self.set_claim_phase(&claim, "Pending").await
            }
        }
    }

    /// Creates the local-path volume for `claim` on `node`. It comes back through the watch, pre-bound to the
    /// claim, and the next pass binds them.
    async fn provision(
        &self,
        claim: &PersistentVolumeClaim,
        class: &StorageClass,
        node: &str,
    ) -> Result<(), ReconcileError> {
        let volume = match local_path::provisioned_volume(claim, class, node, &self.local_path_dir) {
            Ok(volume) => volume,
            Err(refusal) => {
                let message = format!("failed to provision volume with StorageClass {:?}: {refusal}", class.name_any());
                self.events.publish(claim, Kind::Warning, "ProvisioningFailed", message);
                return Ok(());
            }
        };
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        match api.create(&PostParams::default(), &volume).await {
            Ok(created) => {
                let message = format!("Successfully provisioned volume {} on node {node}", created.name_any());
                self.events.publish(claim, Kind::Normal, "ProvisioningSucceeded", message);
                Ok(())
            }
            // Made by an earlier pass whose watch event has not arrived yet.
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Upstream's binding sequence; every step is skipped when already done.
    async fn bind(&self, claim: &PersistentVolumeClaim, volume: &PersistentVolume) -> Result<(), ReconcileError> {
        let volumes: Api<PersistentVolume> = Api::all(self.client.clone());
        let volume_name = volume.name_any();
        let claim_uid = claim.metadata.uid.clone().unwrap_or_default();
        let reference_complete = volume
            .spec
            .as_ref()
            .and_then(|spec| spec.claim_ref.as_ref())
            .is_some_and(|reference| reference.uid.as_deref() == Some(claim_uid.as_str()));
        if !reference_complete {
            let mut annotations = serde_json::Map::new();
            if claim_ref_key(volume).is_none() {
                annotations.insert(BOUND_BY_CONTROLLER_ANNOTATION.into(), json!("yes"));
            }
            let patch = json!({
                "metadata": {"resourceVersion": volume.metadata.resource_version, "annotations": annotations},
                "spec": {"claimRef": {
                    "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                    "namespace": claim.namespace(), "name": claim.name_any(), "uid": claim_uid,
                    "resourceVersion": claim.metadata.resource_version,
                }},
            });
            volumes.patch(&volume_name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        }
        if phase_of_volume(volume) != "Bound" {
            volumes
                .patch_status(&volume_name, &PatchParams::default(), &Patch::Merge(&volume_phase_patch("Bound")))
                .await?;
        }
        let claims: Api<PersistentVolumeClaim> =
            Api::namespaced(self.client.clone(), &claim.namespace().unwrap_or_default());
        let annotations = claim.annotations();
        let named = claim.spec.as_ref().and_then(|spec| spec.volume_name.as_deref()) == Some(volume_name.as_str());
        if !named || !annotations.contains_key(BIND_COMPLETED_ANNOTATION) {
            let mut added = serde_json::Map::new();
            added.insert(BIND_COMPLETED_ANNOTATION.into(), json!("yes"));
            if !named {
                added.insert(BOUND_BY_CONTROLLER_ANNOTATION.into(), json!("yes"));
            }
            let patch = json!({
                "metadata": {"resourceVersion": claim.metadata.resource_version, "annotations": added},
                "spec": {"volumeName": volume_name},
            });
            claims.patch(&claim.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
        }
        let spec = volume.spec.clone().unwrap_or_default();
        let status = claim.status.clone().unwrap_or_default();
        if status.phase.as_deref() != Some("Bound")
            || status.capacity != spec.capacity
            || status.access_modes != spec.access_modes
        {
            let patch = json!({"status": {
                "phase": "Bound", "capacity": spec.capacity, "accessModes": spec.access_modes,
            }});
            claims.patch_status(&claim.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
            tracing::info!(claim = %object_key(claim), volume = %volume_name, "claim bound");
        }
        Ok(())
    }

    async fn set_claim_phase(&self, claim: &PersistentVolumeClaim, phase: &str) -> Result<(), ReconcileError> {
        if claim.status.as_ref().and_then(|status| status.phase.as_deref()) == Some(phase) {
            return Ok(());
        }
        let claims: Api<PersistentVolumeClaim> =
            Api::namespaced(self.client.clone(), &claim.namespace().unwrap_or_default());
        let patch = json!({"status": {"phase": phase}});
        claims.patch_status(&claim.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
        Ok(())
    }

    async fn sync_volume(&self, name: &str) -> Result<(), ReconcileError> {
        let Some(volume) = self.volumes.get("", name) else { return Ok(()) };
        let Some((namespace, claim_name, uid)) = claim_ref_key(&volume) else {
            return self.set_volume_phase(&volume, "Available", None).await;
        };
        let claim = self.claims.get(&namespace, &claim_name);
        let claim = claim.filter(|claim| uid.is_empty() || claim.metadata.uid.as_deref() == Some(uid.as_str()));
        match claim {
            Some(claim) if volume_name(&claim) == Some(name) => self.set_volume_phase(&volume, "Bound", None).await,
            // Pre-bound and waiting for the claim's pass, or the claim binds elsewhere while the volume waits for
            // it (a pre-binding by the author is theirs to undo).
            Some(_) => Ok(()),
            // Pre-bound to a claim that does not exist yet: available to it alone.
            None if uid.is_empty() => self.set_volume_phase(&volume, "Available", None).await,
            None => self.reclaim(&volume).await,
        }
    }

    /// The claim is gone: Released, then what the reclaim policy says.
    async fn reclaim(&self, volume: &PersistentVolume) -> Result<(), ReconcileError> {
        let name = volume.name_any();
        if phase_of_volume(volume) == "Failed" {
            return Ok(());
        }
        self.set_volume_phase(volume, "Released", None).await?;
        let policy = volume.spec.as_ref().and_then(|spec| spec.persistent_volume_reclaim_policy.as_deref());
        match policy.unwrap_or("Retain") {
            "Delete" if provisioned_here(volume) => {
                if volume.metadata.deletion_timestamp.is_some() {
                    return Ok(());
                }
                let api: Api<PersistentVolume> = Api::all(self.client.clone());
                let preconditions = Preconditions { uid: volume.metadata.uid.clone(), resource_version: None };
                let options = DeleteParams { preconditions: Some(preconditions), ..Default::default() };
                match api.delete(&name, &options).await {
                    Ok(_) => {
                        tracing::info!(volume = %name, "released volume deleted; its node removes the data");
                        Ok(())
                    }
                    Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(()),
                    Err(error) => Err(error.into()),
                }
            }
            "Delete" => {
                let message = format!(
                    "error getting deleter volume plugin for volume {name:?}: no deletable volume plugin matched"
                );
                self.events.publish(volume, Kind::Warning, "VolumeFailedDelete", message.clone());
                self.set_volume_phase(volume, "Failed", Some(message)).await
            }
            "Recycle" => {
                let message = "recycling volumes is not supported; delete the volume instead".to_string();
                self.events.publish(volume, Kind::Warning, "VolumeFailedRecycle", message.clone());
                self.set_volume_phase(volume, "Failed", Some(message)).await
            }
            _ => Ok(()),
        }
    }

    async fn set_volume_phase(
        &self,
        volume: &PersistentVolume,
        phase: &str,
        message: Option<String>,
    ) -> Result<(), ReconcileError> {
        if phase_of_volume(volume) == phase {
            return Ok(());
        }
        let mut patch = volume_phase_patch(phase);
        if let Some(message) = message {
            patch["status"]["message"] = json!(message);
        }
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        match api.patch_status(&volume.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(error) => Err(error.into()),
        }
    }
}

fn volume_phase_patch(phase: &str) -> serde_json::Value {
    json!({"status": {"phase": phase, "lastPhaseTransitionTime": crate::apiserver::now()}})
}

fn volume_name(claim: &PersistentVolumeClaim) -> Option<&str> {
    claim.spec.as_ref().and_then(|spec| spec.volume_name.as_deref()).filter(|name| !name.is_empty())
}

fn phase_of_volume(volume: &PersistentVolume) -> &str {
    volume.status.as_ref().and_then(|status| status.phase.as_deref()).unwrap_or("Pending")
}

fn provisioned_here(volume: &PersistentVolume) -> bool {
    volume.annotations().get(local_path::PROVISIONED_BY_ANNOTATION).map(String::as_str) == Some(local_path::PROVISIONER)
}

/// The claim a volume's `claimRef` names: namespace, name, uid (empty when pre-bound by name only).
fn claim_ref_key(volume: &PersistentVolume) -> Option<(String, String, String)> {
    let reference = volume.spec.as_ref()?.claim_ref.as_ref()?;
    let name = reference.name.clone().filter(|name| !name.is_empty())?;
    Some((reference.namespace.clone().unwrap_or_default(), name, reference.uid.clone().unwrap_or_default()))
}

/// Whether `volume`'s `claimRef` names `claim` (by uid too, when it has one).
fn is_bound_to(volume: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    claim_ref_key(volume).is_some_and(|(namespace, name, uid)| {
        claim.metadata.namespace.as_deref() == Some(namespace.as_str())
            && claim.metadata.name.as_deref() == Some(name.as_str())
            && (uid.is_empty() || claim.metadata.uid.as_deref() == Some(uid.as_str()))
    })
}

/// A claim's class: the beta annotation wins over `spec.storageClassName`, as upstream reads it; empty for none.
pub(crate) fn claim_class(claim: &PersistentVolumeClaim) -> String {
    claim
        .annotations()
        .get(BETA_CLASS_ANNOTATION)
        .cloned()
        .or_else(|| claim.spec.as_ref().and_then(|spec| spec.storage_class_name.clone()))
        .unwrap_or_default()
}

fn volume_class(volume: &PersistentVolume) -> String {
    volume
        .annotations()
        .get(BETA_CLASS_ANNOTATION)
        .cloned()
        .or_else(|| volume.spec.as_ref().and_then(|spec| spec.storage_class_name.clone()))
        .unwrap_or_default()
}

fn storage(list: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>) -> f64 {
    list.and_then(|list| list.get("storage")).and_then(|quantity| parse_quantity(&quantity.0)).unwrap_or(0.0)
}

fn claim_request(claim: &PersistentVolumeClaim) -> f64 {
    storage(claim.spec.as_ref().and_then(|spec| spec.resources.as_ref()).and_then(|r| r.requests.as_ref()))
}

fn volume_capacity(volume: &PersistentVolume) -> f64 {
    storage(volume.spec.as_ref().and_then(|spec| spec.capacity.as_ref()))
}

/// Whether `volume` can serve `claim` (class, volume mode, access modes, size); not the selector or node, which
/// a claim that names its volume does not use. The error says what differs.
fn satisfies(claim: &PersistentVolumeClaim, volume: &PersistentVolume) -> Result<(), String> {
    let claim_spec = claim.spec.clone().unwrap_or_default();
    let volume_spec = volume.spec.clone().unwrap_or_default();
    if claim_class(claim) != volume_class(volume) {
        return Err("storageClassName does not match".into());
    }
    let mode = |mode: Option<String>| mode.unwrap_or_else(|| "Filesystem".into());
    if mode(claim_spec.volume_mode) != mode(volume_spec.volume_mode) {
        return Err("incompatible volumeMode".into());
    }
    let offered = volume_spec.access_modes.unwrap_or_default();
    if !claim_spec.access_modes.unwrap_or_default().iter().all(|wanted| offered.contains(wanted)) {
        return Err("incompatible accessMode".into());
    }
    if volume_capacity(volume) < claim_request(claim) {
        return Err("requested PV is too small".into());
    }
    Ok(())
}

/// Whether `volume`'s node affinity admits `node` (a volume without one is reachable from every node).
pub(crate) fn admits_node(volume: &PersistentVolume, node: &Node) -> bool {
    let required = volume
        .spec
        .as_ref()
        .and_then(|spec| spec.node_affinity.as_ref())
        .and_then(|affinity| affinity.required.as_ref());
    match required {
        Some(selector) => {
            selector.node_selector_terms.iter().any(|term| crate::scheduler::plugins::term_matches(term, node))
        }
        None => true,
    }
}

/// The volume to bind `claim` to: the one pre-bound to it if it still fits, else the smallest Available volume
/// that satisfies it and its selector (and, with a `node`, admits that node). Volumes being deleted are skipped.
pub(crate) fn find_volume<'a>(
    claim: &PersistentVolumeClaim,
    volumes: &'a [Arc<PersistentVolume>],
    node: Option<&Node>,
) -> Option<&'a Arc<PersistentVolume>> {
    let usable = |volume: &&Arc<PersistentVolume>| {
        volume.metadata.deletion_timestamp.is_none()
            && satisfies(claim, volume).is_ok()
            && node.is_none_or(|node| admits_node(volume, node))
    };
    if let Some(pre_bound) = volumes.iter().filter(usable).find(|volume| is_bound_to(volume, claim)) {
        return Some(pre_bound);
    }
    let selector = claim.spec.as_ref().and_then(|spec| spec.selector.as_ref());
    let selected = |volume: &&Arc<PersistentVolume>| match selector {
        Some(selector) => {
            label_selector(selector).is_some_and(|selector| labels_match(&selector, volume.metadata.labels.as_ref()))
        }
        None => true,
    };
    volumes
        .iter()
        .filter(|volume| claim_ref_key(volume).is_none())
        .filter(usable)
        .filter(selected)
        .min_by(|a, b| volume_capacity(a).total_cmp(&volume_capacity(b)).then_with(|| a.name_any().cmp(&b.name_any())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn claim(spec: Value) -> PersistentVolumeClaim {
        serde_json::from_value(json!({"metadata": {"name": "data", "namespace": "ns", "uid": "c1"}, "spec": spec}))
            .unwrap()
    }

    fn volume(name: &str, labels: Value, spec: Value) -> Arc<PersistentVolume> {
        Arc::new(serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}, "spec": spec})).unwrap())
    }

    fn node(name: &str) -> Node {
        serde_json::from_value(json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}})).unwrap()
    }

    fn found(claim: &PersistentVolumeClaim, volumes: &[Arc<PersistentVolume>], node: Option<&Node>) -> Option<String> {
        find_volume(claim, volumes, node).map(|volume| volume.name_any())
    }

    fn manual(capacity: &str, modes: Value) -> Value {
        json!({"storageClassName": "manual", "capacity": {"storage": capacity}, "accessModes": modes})
    }

    #[test]
    fn the_smallest_volume_that_is_big_enough_and_offers_the_modes_wins() {
        let wanted = claim(json!({"storageClassName": "manual", "accessModes": ["ReadWriteOnce"],
                                  "resources": {"requests": {"storage": "1Gi"}}}));
        let volumes = [
            volume("tiny", json!({}), manual("500Mi", json!(["ReadWriteOnce"]))),
            volume("huge", json!({}), manual("10Gi", json!(["ReadWriteOnce", "ReadOnlyMany"]))),
            volume("right", json!({}), manual("2Gi", json!(["ReadWriteOnce"]))),
            volume("read-only", json!({}), manual("1Gi", json!(["ReadOnlyMany"]))),
            volume(
                "other-class",
                json!({}),
                json!({"storageClassName": "fast", "capacity": {"storage": "1Gi"},
                                                     "accessModes": ["ReadWriteOnce"]}),
            ),
        ];
        assert_eq!(found(&wanted, &volumes, None).as_deref(), Some("right"));
    }

    #[test]
    fn taken_volumes_and_volumes_being_deleted_are_not_offered() {
        let wanted = claim(json!({"storageClassName": "manual", "resources": {"requests": {"storage": "1Gi"}}}));
        let mut taken = manual("1Gi", json!(["ReadWriteOnce"]));
        taken["claimRef"] = json!({"namespace": "ns", "name": "other", "uid": "c2"});
        let mut going: PersistentVolume =
            serde_json::from_value(json!({"metadata": {"name": "going", "deletionTimestamp": "2025-01-01T00:00:00Z"},
                                          "spec": manual("1Gi", json!(["ReadWriteOnce"]))}))
            .unwrap();
        going.metadata.labels = None;
        let volumes = [volume("taken", json!({}), taken), Arc::new(going)];
        assert_eq!(found(&wanted, &volumes, None), None);
    }

    #[test]
    fn a_volume_pre_bound_to_the_claim_wins_over_a_better_fit() {
        let wanted = claim(json!({"storageClassName": "manual", "resources": {"requests": {"storage": "1Gi"}}}));
        let mut pre_bound = manual("5Gi", json!(["ReadWriteOnce"]));
        pre_bound["claimRef"] = json!({"namespace": "ns", "name": "data"});
        let mut for_an_older_claim = manual("5Gi", json!(["ReadWriteOnce"]));
        for_an_older_claim["claimRef"] = json!({"namespace": "ns", "name": "data", "uid": "old"});
        let volumes = [
            volume("exact", json!({}), manual("1Gi", json!(["ReadWriteOnce"]))),
            volume("pre-bound", json!({}), pre_bound),
            volume("older", json!({}), for_an_older_claim),
        ];
        assert_eq!(found(&wanted, &volumes, None).as_deref(), Some("pre-bound"));
        assert_eq!(found(&wanted, &volumes[..1], None).as_deref(), Some("exact"));
    }

    #[test]
    fn the_selector_and_the_class_must_match() {
        let wanted = claim(json!({"storageClassName": "", "selector": {"matchLabels": {"tier": "db"}},
                                  "resources": {"requests": {"storage": "1Gi"}}}));
        let unclassed = |capacity: &str| json!({"capacity": {"storage": capacity}, "accessModes": ["ReadWriteOnce"]});
        let volumes = [
            volume("web", json!({"tier": "web"}), unclassed("1Gi")),
            volume("db", json!({"tier": "db"}), unclassed("3Gi")),
            volume("manual-db", json!({"tier": "db"}), manual("1Gi", json!(["ReadWriteOnce"]))),
        ];
        assert_eq!(found(&wanted, &volumes, None).as_deref(), Some("db"));
    }

    #[test]
    fn a_selected_node_rules_out_volumes_pinned_elsewhere() {
        let wanted = claim(json!({"storageClassName": "manual", "resources": {"requests": {"storage": "1Gi"}}}));
        let pinned = |node: &str| {
            let mut spec = manual("1Gi", json!(["ReadWriteOnce"]));
            spec["nodeAffinity"] = json!({"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}});
            spec
        };
        let volumes = [volume("on-a", json!({}), pinned("a")), volume("on-b", json!({}), pinned("b"))];
        assert_eq!(found(&wanted, &volumes, Some(&node("b"))).as_deref(), Some("on-b"));
        assert_eq!(found(&wanted, &volumes, Some(&node("c"))), None);
    }

    #[test]
    fn satisfies_names_what_differs() {
        let wanted = claim(json!({"storageClassName": "manual", "volumeMode": "Block",
                                  "resources": {"requests": {"storage": "1Gi"}}}));
        let filesystem = volume("v", json!({}), manual("1Gi", json!([])));
        assert_eq!(satisfies(&wanted, &filesystem).unwrap_err(), "incompatible volumeMode");
        let small = claim(json!({"storageClassName": "manual", "resources": {"requests": {"storage": "2Gi"}}}));
        assert_eq!(satisfies(&small, &filesystem).unwrap_err(), "requested PV is too small");
        let beta: PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {"name": "b", "annotations": {BETA_CLASS_ANNOTATION: "manual"}},
            "spec": {"storageClassName": "other"}}))
        .unwrap();
        assert_eq!(claim_class(&beta), "manual", "the beta annotation wins");
    }
}
