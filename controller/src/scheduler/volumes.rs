//! Volume topology for the scheduler, the part of upstream's VolumeBinding plugin a local disk needs:
//! - before any node is looked at (PreFilter), every claim the pod's volumes name must exist and not be being
//!   deleted, and a claim of a class that binds at once (not WaitForFirstConsumer) must be bound already;
//!   otherwise the pod waits with upstream's text (`persistentvolumeclaim "data" not found`, `pod has unbound
//!   immediate PersistentVolumeClaims`);
//! - a node fits (Filter) only if the volumes of the pod's bound claims admit it by their node affinity, and,
//!   for an unbound WaitForFirstConsumer claim that already has a selected node, only that node;
//! - once a node is chosen (PreBind), an unbound WaitForFirstConsumer claim gets the node as
//!   `volume.kubernetes.io/selected-node`, which is what the volume binder waits for to provision or bind.
//!
//! Unlike upstream, the pod is bound right after that instead of waiting for its claims to be bound: the worker
//! keeps the pod ContainerCreating until they are, which keeps the scheduler's loop free of waits. Pre-created
//! volumes of a WaitForFirstConsumer class are not weighed when choosing the node (the binder takes one that
//! admits the chosen node, or provisions).

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher;
use kube::ResourceExt;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::plugins::Unfit;
use crate::controllers::informer::{Change, Informer};
use crate::controllers::local_path::SELECTED_NODE_ANNOTATION;

/// The scheduler's caches of claims, volumes and classes.
pub struct Volumes {
    claims: Arc<Informer<PersistentVolumeClaim>>,
    volumes: Arc<Informer<PersistentVolume>>,
    classes: Arc<Informer<StorageClass>>,
}

/// One claim of a pod, as far as placing the pod goes.
#[derive(Debug, Clone)]
pub enum PodClaim {
    /// Bound to this volume.
    Bound(Arc<PersistentVolume>),
    /// Unbound, of a WaitForFirstConsumer class: the scheduler chooses its node, unless it was chosen already.
    Delayed { claim: Arc<PersistentVolumeClaim>, selected_node: Option<String> },
}

impl Volumes {
    pub fn new(client: &kube::Client) -> Volumes {
        Volumes {
            claims: Informer::new(Api::all(client.clone()), watcher::Config::default()),
            volumes: Informer::new(Api::all(client.clone()), watcher::Config::default()),
            classes: Informer::new(Api::all(client.clone()), watcher::Config::default()),
        }
    }

    /// Calls `changed` whenever a claim or volume appears or changes: a pod waiting for one may fit now.
    pub fn on_change(&self, changed: impl Fn() + Clone + Send + Sync + 'static) {
        let claims_changed = changed.clone();
        self.claims.on_change(move |change| {
            if matches!(change, Change::Applied { .. }) {
                claims_changed();
            }
        });
        self.volumes.on_change(move |change| {
            if matches!(change, Change::Applied { .. }) {
                changed();
            }
        });
    }

    pub fn start(&self, cancel: CancellationToken, tasks: &TaskTracker) {
        self.claims.start(cancel.clone(), tasks);
        self.volumes.start(cancel.clone(), tasks);
        self.classes.start(cancel, tasks);
    }

    pub async fn synced(&self) {
        self.claims.synced().await;
        self.volumes.synced().await;
        self.classes.synced().await;
    }

    /// PreFilter: the pod's claims, or why the pod cannot be placed anywhere yet.
    pub fn claims_of(&self, pod: &Pod) -> Result<Vec<PodClaim>, String> {
        let namespace = pod.namespace().unwrap_or_default();
        let volumes = pod.spec.as_ref().and_then(|spec| spec.volumes.as_deref()).unwrap_or_default();
        let mut claims = Vec::new();
        for source in volumes.iter().filter_map(|volume| volume.persistent_volume_claim.as_ref()) {
            let name = &source.claim_name;
            let Some(claim) = self.claims.get(&namespace, name) else {
                return Err(format!("persistentvolumeclaim {name:?} not found"));
            };
            if claim.metadata.deletion_timestamp.is_some() {
                return Err(format!("persistentvolumeclaim {name:?} is being deleted"));
            }
            let volume_name = claim.spec.as_ref().and_then(|spec| spec.volume_name.as_deref()).unwrap_or("");
            let bound = claim.status.as_ref().and_then(|status| status.phase.as_deref()) == Some("Bound");
            if bound && !volume_name.is_empty() {
                match self.volumes.get("", volume_name) {
                    Some(volume) => claims.push(PodClaim::Bound(volume)),
                    None => return Err(format!("persistentvolume {volume_name:?} not found")),
                }
                continue;
            }
            let class = crate::controllers::volume_binder::claim_class(&claim);
            let delayed = self
                .classes
                .get("", &class)
                .is_some_and(|class| class.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer"));
            if !delayed || !volume_name.is_empty() {
                // Upstream treats a claim pre-bound by name like one of an immediate class.
                return Err("pod has unbound immediate PersistentVolumeClaims".to_string());
            }
            let selected_node = claim.annotations().get(SELECTED_NODE_ANNOTATION).cloned();
            claims.push(PodClaim::Delayed { claim, selected_node });
        }
        Ok(claims)
    }

    /// PreBind: writes the chosen node on the pod's unbound WaitForFirstConsumer claims that have none yet.
    pub async fn select_node(&self, client: &kube::Client, pod: &Pod, node: &str) -> Result<(), kube::Error> {
        let Ok(claims) = self.claims_of(pod) else { return Ok(()) };
        for claim in claims {
            let PodClaim::Delayed { claim, selected_node: None } = claim else { continue };
            let api: Api<PersistentVolumeClaim> =
                Api::namespaced(client.clone(), &claim.namespace().unwrap_or_default());
            let patch = json!({"metadata": {"annotations": {SELECTED_NODE_ANNOTATION: node}}});
            api.patch(&claim.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
        }
        Ok(())
    }
}

/// Filter: whether the pod's volumes can be reached from `node`. A pod whose claims failed PreFilter fits
/// nowhere; [`prefilter`] then gives the reason.
pub fn filter(claims: &Result<Vec<PodClaim>, String>, node: &Node) -> Result<(), Unfit> {
    let Ok(claims) = claims else { return Err(Unfit::VolumeNodeAffinity) };
    let node_name = node.metadata.name.as_deref().unwrap_or_default();
    for claim in claims {
        let fits = match claim {
            PodClaim::Bound(volume) => crate::controllers::volume_binder::admits_node(volume, node),
            PodClaim::Delayed { selected_node: Some(selected), .. } => selected == node_name,
            PodClaim::Delayed { selected_node: None, .. } => true,
        };
        if !fits {
            return Err(Unfit::VolumeNodeAffinity);
        }
    }
    Ok(())
}

/// The scheduling decision after PreFilter: a PreFilter failure is the reason for every node, in upstream's
/// words (`0/3 nodes are available: persistentvolumeclaim "data" not found.`).
pub fn prefilter(
    decision: Result<String, String>,
    claims: &Result<Vec<PodClaim>, String>,
    nodes: usize,
) -> Result<String, String> {
    match claims {
        Err(why) => Err(format!("0/{nodes} nodes are available: {why}.")),
        Ok(_) => decision,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str) -> Node {
        serde_json::from_value(json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}})).unwrap()
    }

    fn pinned_volume(node: &str) -> Arc<PersistentVolume> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": "v"}, "spec": {"nodeAffinity": {"required": {
                "nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}}}))
            .unwrap(),
        )
    }

    fn delayed(selected: Option<&str>) -> PodClaim {
        PodClaim::Delayed { claim: Arc::new(Default::default()), selected_node: selected.map(str::to_string) }
    }

    #[test]
    fn bound_volumes_pin_their_pods_to_the_nodes_they_admit() {
        let claims = Ok(vec![PodClaim::Bound(pinned_volume("a")), delayed(None)]);
        assert_eq!(filter(&claims, &node("a")), Ok(()));
        assert_eq!(filter(&claims, &node("b")), Err(Unfit::VolumeNodeAffinity));
        assert_eq!(Unfit::VolumeNodeAffinity.reason(), "node(s) had volume node affinity conflict");
    }

    #[test]
    fn a_claim_whose_node_was_chosen_keeps_its_pods_there() {
        let claims = Ok(vec![delayed(Some("b"))]);
        assert_eq!(filter(&claims, &node("b")), Ok(()));
        assert_eq!(filter(&claims, &node("a")), Err(Unfit::VolumeNodeAffinity));
    }

    #[test]
    fn a_prefilter_failure_is_the_reason_for_every_node() {
        let missing: Result<Vec<PodClaim>, String> = Err("persistentvolumeclaim \"data\" not found".into());
        assert_eq!(
            prefilter(Err("0/2 nodes are available: 2 node(s) had volume node affinity conflict.".into()), &missing, 2),
            Err("0/2 nodes are available: persistentvolumeclaim \"data\" not found.".into())
        );
        assert_eq!(prefilter(Ok("a".into()), &Ok(Vec::new()), 2), Ok("a".into()));
    }
}
