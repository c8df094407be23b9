//! The local-path provisioner: storage that needs no cloud. A claim of the default StorageClass `local-path`
//! (provisioner `kaasd.io/local-path`, `volumeBindingMode: WaitForFirstConsumer`) gets a PersistentVolume that is a
//! directory on the node its first pod was scheduled to, as k3s's local-path provisioner does.
//!
//! How the pieces fit, and why:
//! - The scheduler picks the node and writes it on the claim (`volume.kubernetes.io/selected-node`); only then is
//!   it known where the data will live, hence WaitForFirstConsumer.
//! - The binder (`volume_binder.rs`) then calls [`provisioned_volume`] and creates the PV `pvc-<claim uid>`,
//!   pre-bound to the claim (`claimRef` with the claim's uid), a `hostPath` of
//!   `<local-path dir>/pvc-<uid>_<namespace>_<name>` pinned to the node by a required node affinity on
//!   `kubernetes.io/hostname`. The directory is made by the node's worker when a pod first mounts it; the
//!   controller never touches a node's disk (it may be a hosted control plane with no disk at all), which is also
//!   why the directory's root is a controller setting (`--local-path-dir`) rather than something a worker reports.
//! - Removing the data is the worker's job too. The PV carries the finalizer [`CLEANUP_FINALIZER`] and the label
//!   [`NODE_LABEL`] naming its node; when the claim is gone and the reclaim policy is Delete the binder deletes the
//!   PV, which then waits for that node's worker (it watches the PVs labelled with its name) to remove the directory
//!   and then the finalizer. So data is never dropped silently: a PV whose node is gone stays Terminating until an
//!   administrator removes the finalizer. With reclaim policy Retain the worker removes only the finalizer.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, ObjectReference, PersistentVolume,
    PersistentVolumeClaim, PersistentVolumeSpec, VolumeNodeAffinity,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{json, Value};

/// The default StorageClass every cluster starts with.
pub const CLASS_NAME: &str = "local-path";
/// The `provisioner` of that class; the binder provisions claims of any class naming it.
pub const PROVISIONER: &str = "kaasd.io/local-path";
/// Where volumes live on the nodes unless `--local-path-dir` says otherwise.
pub const DEFAULT_DIR: &str = "/var/lib/kaasd/storage";
/// Held on a provisioned PV until its node's worker has dealt with the directory (the worker names it too).
pub const CLEANUP_FINALIZER: &str = "kaasd.io/local-path-cleanup";
/// On a provisioned PV: the node whose disk holds it, so that node's worker can watch exactly its own volumes.
pub const NODE_LABEL: &str = "kaasd.io/local-path-node";
/// Set by the scheduler on a WaitForFirstConsumer claim: the node its first pod goes to.
pub const SELECTED_NODE_ANNOTATION: &str = "volume.kubernetes.io/selected-node";
pub const PROVISIONED_BY_ANNOTATION: &str = "pv.kubernetes.io/provisioned-by";
const DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";

/// The `local-path` StorageClass, marked as the cluster's default.
pub fn storage_class() -> Value {
    json!({
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": CLASS_NAME, "annotations": {DEFAULT_CLASS_ANNOTATION: "true"}},
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
    })
}

/// The directory of claim `namespace/name` (uid `uid`) under `root`: k3s's naming, so an administrator looking at
/// the disk sees whose data each directory holds.
pub fn volume_dir(root: &Path, uid: &str, namespace: &str, name: &str) -> String {
    root.join(format!("pvc-{uid}_{namespace}_{name}")).to_string_lossy().into_owned()
}

/// Why a claim cannot be provisioned.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    NoStorageRequest,
    NotFilesystem,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NoStorageRequest => formatter.write_str("the claim requests no storage size"),
            Refusal::NotFilesystem => {
                formatter.write_str("local-path volumes are directories: only volumeMode Filesystem")
            }
        }
    }
}

/// The PV for `claim` of `class` on `node`, directory under `root`.
pub fn provisioned_volume(
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
    node: &str,
    root: &Path,
) -> Result<PersistentVolume, Refusal> {
    let namespace = claim.metadata.namespace.clone().unwrap_or_default();
    let name = claim.metadata.name.clone().unwrap_or_default();
    let uid = claim.metadata.uid.clone().unwrap_or_default();
    let spec = claim.spec.clone().unwrap_or_default();
    if spec.volume_mode.as_deref().is_some_and(|mode| mode != "Filesystem") {
        return Err(Refusal::NotFilesystem);
    }
    let request = spec
        .resources
        .as_ref()
        .and_then(|resources| resources.requests.as_ref())
        .and_then(|requests| requests.get("storage"))
        .cloned()
        .ok_or(Refusal::NoStorageRequest)?;
    let pinned = NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_expressions: Some(vec![NodeSelectorRequirement {
                key: "kubernetes.io/hostname".into(),
                operator: "In".into(),
                values: Some(vec![node.to_string()]),
            }]),
            match_fields: None,
        }],
    };
    Ok(PersistentVolume {
        metadata: ObjectMeta {
            name: Some(format!("pvc-{uid}")),
            labels: Some(BTreeMap::from([(NODE_LABEL.to_string(), node.to_string())])),
            // Bound by the controller, as upstream marks the volumes it provisions.
            annotations: Some(BTreeMap::from([
                (PROVISIONED_BY_ANNOTATION.to_string(), class.provisioner.clone()),
                ("pv.kubernetes.io/bound-by-controller".to_string(), "yes".to_string()),
            ])),
            finalizers: Some(vec![CLEANUP_FINALIZER.to_string()]),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            capacity: Some(BTreeMap::from([("storage".to_string(), request)])),
            access_modes: spec.access_modes.clone(),
            persistent_volume_reclaim_policy: Some(class.reclaim_policy.clone().unwrap_or_else(|| "Delete".into())),
            storage_class_name: class.metadata.name.clone(),
            mount_options: class.mount_options.clone(),
            volume_mode: Some("Filesystem".into()),
            host_path: Some(HostPathVolumeSource {
                path: volume_dir(root, &uid, &namespace, &name),
                type_: Some("DirectoryOrCreate".into()),
            }),
            node_affinity: Some(VolumeNodeAffinity { required: Some(pinned) }),
            // Pre-bound, uid included: the binder binds it to this claim and no other, and a claim of the same
            // name made later never gets it.
            claim_ref: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                namespace: Some(namespace),
                name: Some(name),
                uid: Some(uid),
                resource_version: claim.metadata.resource_version.clone(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(spec: Value) -> PersistentVolumeClaim {
        serde_json::from_value(json!({
            "metadata": {"name": "data-db-0", "namespace": "shop", "uid": "1234", "resourceVersion": "7"},
            "spec": spec,
        }))
        .unwrap()
    }

    fn class() -> StorageClass {
        serde_json::from_value(storage_class()).unwrap()
    }

    #[test]
    fn the_default_class_waits_for_the_first_consumer_and_deletes() {
        let class = class();
        assert_eq!(class.provisioner, PROVISIONER);
        assert_eq!(class.volume_binding_mode.as_deref(), Some("WaitForFirstConsumer"));
        assert_eq!(class.reclaim_policy.as_deref(), Some("Delete"));
        assert_eq!(class.metadata.annotations.unwrap()[DEFAULT_CLASS_ANNOTATION], "true");
    }

    #[test]
    fn a_provisioned_volume_is_a_directory_pinned_to_its_node_and_bound_to_its_claim() {
        let claim = claim(json!({"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}));
        let volume = provisioned_volume(&claim, &class(), "edge-1", Path::new("/var/lib/kaasd/storage")).unwrap();
        let volume = serde_json::to_value(volume).unwrap();
        assert_eq!(volume["metadata"]["name"], "pvc-1234");
        assert_eq!(volume["metadata"]["labels"][NODE_LABEL], "edge-1");
        assert_eq!(volume["metadata"]["annotations"][PROVISIONED_BY_ANNOTATION], PROVISIONER);
        assert_eq!(volume["metadata"]["finalizers"], json!([CLEANUP_FINALIZER]));
        let spec = &volume["spec"];
        assert_eq!(spec["hostPath"]["path"], "/var/lib/kaasd/storage/pvc-1234_shop_data-db-0");
        assert_eq!(spec["capacity"]["storage"], "1Gi");
        assert_eq!(spec["accessModes"], json!(["ReadWriteOnce"]));
        assert_eq!(spec["persistentVolumeReclaimPolicy"], "Delete");
        assert_eq!(spec["storageClassName"], CLASS_NAME);
        assert_eq!(
            spec["nodeAffinity"]["required"]["nodeSelectorTerms"],
            json!([{"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["edge-1"]}]}])
        );
        assert_eq!(
            spec["claimRef"],
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": "shop", "name": "data-db-0",
                   "uid": "1234", "resourceVersion": "7"})
        );
    }

    #[test]
    fn the_class_decides_the_reclaim_policy() {
        let mut retaining = class();
        retaining.reclaim_policy = Some("Retain".into());
        let claim = claim(json!({"resources": {"requests": {"storage": "5Mi"}}}));
        let volume = provisioned_volume(&claim, &retaining, "n", Path::new("/d")).unwrap();
        assert_eq!(volume.spec.unwrap().persistent_volume_reclaim_policy.as_deref(), Some("Retain"));
    }

    #[test]
    fn claims_it_cannot_serve_are_refused() {
        let no_size = claim(json!({"accessModes": ["ReadWriteOnce"]}));
        assert_eq!(
            provisioned_volume(&no_size, &class(), "n", Path::new("/d")).unwrap_err(),
            Refusal::NoStorageRequest
        );
        let block = claim(json!({"volumeMode": "Block", "resources": {"requests": {"storage": "1Gi"}}}));
        assert_eq!(provisioned_volume(&block, &class(), "n", Path::new("/d")).unwrap_err(), Refusal::NotFilesystem);
    }
}
