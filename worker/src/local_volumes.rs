//! PersistentVolumeClaim volumes on this node, and the end of local-path volumes' data.
//!
//! Mounting: a pod's claim must be bound; its volume must be a `hostPath` or `local` volume, which is a path on
//! this node (kaasd has no network or block storage). A volume kaasd's local-path provisioner made (annotation
//! `pv.kubernetes.io/provisioned-by: kaasd.io/local-path`) is a directory made here on first use, open to every
//! user (mode 0777, as k3s's provisioner makes them) since the pod's user is not known when the volume is made.
//! Until the claim is bound the pod stays ContainerCreating and its status says why.
//!
//! Removing data: the controller pins a provisioned volume to its node with the label [`NODE_LABEL`] and holds it
//! with the finalizer [`CLEANUP_FINALIZER`]. This node watches the volumes labelled with its name; when one is
//! being deleted and no longer bound, no pod here uses its claim any more, and its reclaim policy is Delete, the
//! directory is removed; then (for Retain too: deleting a retained volume keeps its data, as upstream) the
//! finalizer, which lets the deletion finish. A removal that fails is tried again, and the volume stays until it
//! succeeds, so data never disappears without the volume saying so.
//!
//! The names here are the controller's (`controller/src/controllers/local_path.rs`); the worker does not depend on
//! the controller crate.

use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{HostPathVolumeSource, PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;
use serde_json::json;
use tokio_util::sync::CancellationToken;

pub const CLEANUP_FINALIZER: &str = "kaasd.io/local-path-cleanup";
pub const NODE_LABEL: &str = "kaasd.io/local-path-node";
const PROVISIONED_BY_ANNOTATION: &str = "pv.kubernetes.io/provisioned-by";
const PROVISIONER: &str = "kaasd.io/local-path";
/// Volumes whose removal failed, or waited for a pod, are looked at again this often.
const RETRY_EVERY: Duration = Duration::from_secs(5);

/// Where claim `name` of `namespace` lives on this node, as a hostPath source (path and the check its type asks
/// for); an error says why the pod has to wait.
pub async fn claim_source(client: &kube::Client, namespace: &str, name: &str) -> Result<HostPathVolumeSource, String> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let Some(claim) = claims.get_opt(name).await.map_err(|error| error.to_string())? else {
        return Err(format!("persistentvolumeclaim {name:?} not found"));
    };
    let volume_name = claim.spec.as_ref().and_then(|spec| spec.volume_name.clone()).unwrap_or_default();
    let bound = claim.status.as_ref().and_then(|status| status.phase.as_deref()) == Some("Bound");
    if volume_name.is_empty() || !bound {
        return Err(format!("persistentvolumeclaim {name:?} is not bound to a volume yet"));
    }
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let volume = volumes.get(&volume_name).await.map_err(|error| error.to_string())?;
    let source = volume_source(&volume)?;
    if provisioned_here(&volume) {
        let path = Path::new(&source.path);
        if !path.exists() {
            std::fs::create_dir_all(path).map_err(|error| format!("cannot create {}: {error}", path.display()))?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777))
                .map_err(|error| format!("cannot open {} to the pod's user: {error}", path.display()))?;
        }
    }
    Ok(source)
}

/// A volume as the hostPath it is on this node.
fn volume_source(volume: &PersistentVolume) -> Result<HostPathVolumeSource, String> {
    let spec = volume.spec.clone().unwrap_or_default();
    if let Some(host_path) = spec.host_path {
        return Ok(host_path);
    }
    if let Some(local) = spec.local {
        // A local volume is a disk or directory its administrator prepared: it must be there already.
        if !Path::new(&local.path).exists() {
            return Err(format!("local volume {:?}: {} does not exist on this node", volume.name_any(), local.path));
        }
        return Ok(HostPathVolumeSource { path: local.path, type_: None });
    }
    Err(format!(
        "persistentvolume {:?} is neither hostPath nor local, the kinds of volume kaasd mounts",
        volume.name_any()
    ))
}

fn provisioned_here(volume: &PersistentVolume) -> bool {
    volume.annotations().get(PROVISIONED_BY_ANNOTATION).map(String::as_str) == Some(PROVISIONER)
}

/// Finishes the deletion of this node's local-path volumes until `cancel`: see the module comment.
pub async fn remove_deleted_volumes(client: kube::Client, node: String, pods: Store<Pod>, cancel: CancellationToken) {
    let api: Api<PersistentVolume> = Api::all(client.clone());
    let config = watcher::Config::default().labels(&format!("{NODE_LABEL}={node}"));
    let (store, writer) = reflector::store();
    let events = reflector::reflector(writer, watcher(api.clone(), config)).default_backoff().touched_objects();
    futures::pin_mut!(events);
    let mut retry = tokio::time::interval(RETRY_EVERY);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            event = events.next() => match event {
                Some(Ok(_)) => {}
                Some(Err(error)) => {
                    tracing::debug!(error = %error, "watching this node's local volumes failed; retrying");
                    continue;
                }
                None => return,
            },
            _ = retry.tick() => {}
        }
        for volume in store.state() {
            if volume.metadata.deletion_timestamp.is_none()
                || !volume.finalizers().iter().any(|f| f == CLEANUP_FINALIZER)
            {
                continue;
            }
            if let Err(error) = finish_deletion(&api, &volume, &pods).await {
                tracing::warn!(volume = %volume.name_any(), error = %error, "cannot remove a deleted volume's data yet");
            }
        }
    }
}

async fn finish_deletion(
    api: &Api<PersistentVolume>,
    volume: &PersistentVolume,
    pods: &Store<Pod>,
) -> Result<(), String> {
    let name = volume.name_any();
    if volume.status.as_ref().and_then(|status| status.phase.as_deref()) == Some("Bound") {
        // Deleted while its claim still exists: it goes when the claim does (the controller releases it first).
        return Ok(());
    }
    if let Some((namespace, claim)) = claim_of(volume) {
        if pods.state().iter().any(|pod| uses_claim(pod, &namespace, &claim)) {
            return Ok(());
        }
    }
    let spec = volume.spec.clone().unwrap_or_default();
    if spec.persistent_volume_reclaim_policy.as_deref() == Some("Delete") {
        let path = spec.host_path.map(|source| source.path).unwrap_or_default();
        let path = Path::new(&path);
        if !is_volume_dir(&name, path) {
            return Err(format!(
                "{} is not a directory the local-path provisioner makes for {name}; remove the data and the \
                 finalizer {CLEANUP_FINALIZER} by hand",
                path.display()
            ));
        }
        match std::fs::remove_dir_all(path) {
            Ok(()) => tracing::info!(volume = %name, path = %path.display(), "deleted volume's data removed"),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(format!("cannot remove {}: {error}", path.display())),
        }
    }
    let finalizers: Vec<&String> = volume.finalizers().iter().filter(|f| *f != CLEANUP_FINALIZER).collect();
    let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": volume.metadata.resource_version}});
    match api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(error) => Err(error.to_string()),
    }
}

/// Whether `path` is what the provisioner makes for volume `name`: an absolute path without `..` whose last part
/// is `<name>_<namespace>_<claim>`. A volume whose path was changed to something else is never removed.
fn is_volume_dir(name: &str, path: &Path) -> bool {
    let plain = path.is_absolute() && path.components().all(|part| !matches!(part, Component::ParentDir));
    let last = path.file_name().and_then(|last| last.to_str()).unwrap_or_default();
    plain && name.starts_with("pvc-") && last.starts_with(&format!("{name}_"))
}

fn claim_of(volume: &PersistentVolume) -> Option<(String, String)> {
    let reference = volume.spec.as_ref()?.claim_ref.as_ref()?;
    Some((reference.namespace.clone()?, reference.name.clone()?))
}

fn uses_claim(pod: &Pod, namespace: &str, claim: &str) -> bool {
    pod.metadata.namespace.as_deref() == Some(namespace)
        && pod
            .spec
            .iter()
            .flat_map(|spec| spec.volumes.iter().flatten())
            .any(|volume| volume.persistent_volume_claim.as_ref().is_some_and(|source| source.claim_name == claim))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_provisioners_own_directories_are_removed() {
        let name = "pvc-1234";
        assert!(is_volume_dir(name, Path::new("/var/lib/kaasd/storage/pvc-1234_shop_data-db-0")));
        assert!(!is_volume_dir(name, Path::new("/var/lib/kaasd/storage/pvc-5678_shop_data-db-0")), "another volume's");
        assert!(!is_volume_dir(name, Path::new("/etc")));
        assert!(!is_volume_dir(name, Path::new("")));
        assert!(!is_volume_dir(name, Path::new("relative/pvc-1234_a_b")));
        assert!(!is_volume_dir(name, Path::new("/data/../etc/pvc-1234_a_b")));
        assert!(!is_volume_dir("data", Path::new("/srv/data_a_b")), "not a provisioned volume's name");
    }

    #[test]
    fn volumes_are_mounted_from_host_path_or_local() {
        let volume = |spec: serde_json::Value| -> PersistentVolume {
            serde_json::from_value(json!({"metadata": {"name": "v"}, "spec": spec})).unwrap()
        };
        let host = volume(json!({"hostPath": {"path": "/srv/v", "type": "DirectoryOrCreate"}}));
        let source = volume_source(&host).unwrap();
        assert_eq!((source.path.as_str(), source.type_.as_deref()), ("/srv/v", Some("DirectoryOrCreate")));
        assert_eq!(volume_source(&volume(json!({"local": {"path": "/"}}))).unwrap().path, "/");
        let missing = volume_source(&volume(json!({"local": {"path": "/no/such/disk"}}))).unwrap_err();
        assert!(missing.contains("does not exist on this node"), "{missing}");
        let nfs = volume_source(&volume(json!({"nfs": {"server": "s", "path": "/x"}}))).unwrap_err();
        assert!(nfs.contains("neither hostPath nor local"), "{nfs}");
    }

    #[test]
    fn a_pod_uses_a_claim_of_its_own_namespace() {
        let pod: Pod = serde_json::from_value(json!({"metadata": {"namespace": "shop"}, "spec": {"containers": [],
            "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]}}))
        .unwrap();
        assert!(uses_claim(&pod, "shop", "data"));
        assert!(!uses_claim(&pod, "other", "data"));
        assert!(!uses_claim(&pod, "shop", "logs"));
    }
}
