//! What a node's own identity (`system:node:<name>` in `system:nodes`) may touch, as upstream's Node authorizer
//! decides it: a node reads only the Secrets, ConfigMaps and PersistentVolumeClaims that pods bound to it use and
//! the PersistentVolumes bound to those claims, asks tokens only for their ServiceAccounts, and writes only the
//! pods bound to it. Beyond upstream, for the local-path provisioner: a node may list and watch the volumes
//! labelled as being on its disk (`kaasd.io/local-path-node=<node>`, the selector must say exactly that), read
//! them, and update them (to remove the cleanup finalizer once it has removed their directory). A stolen edge device's certificate
//! so cannot read the cluster's Secrets or change other nodes' pods. (That it changes only its own Node and Lease
//! is checked where the object's name is known, also on create: `objects.rs`, `node_restriction`.)
//!
//! It runs before RBAC and only narrows: a request it lets through still needs the `system:node` ClusterRole's
//! rules. Which pods run on the node is read from the store per decision (the pods of one namespace), which is what
//! a node's requests for Secrets and ConfigMaps cost; an index by node would make it cheaper.

use serde_json::Value;

use super::error::ApiResult;
use super::rbac::Attributes;
use super::request::Query;
use super::storage::ObjectStore;
use super::ApiServer;
use crate::controllers::local_path::NODE_LABEL;

/// Whether node `node` may make the request `attributes` describes (RBAC decides the rest).
pub async fn allows(server: &ApiServer, node: &str, attributes: &Attributes, query: &Query) -> ApiResult<bool> {
    let namespace = attributes.namespace.as_str();
    let name = attributes.name.as_str();
    let verb = attributes.verb.as_str();
    let read = matches!(verb, "get" | "list" | "watch");
    match (attributes.group.as_str(), attributes.resource.as_str(), attributes.subresource.as_str()) {
        ("", "secrets" | "configmaps" | "persistentvolumeclaims", "") => {
            // One named object, used by a pod of this node; never a list of them.
            if verb != "get" || name.is_empty() {
                return Ok(false);
            }
            let kind = attributes.resource.as_str();
            Ok(node_pods(server, node, namespace).await?.iter().any(|pod| pod_uses(pod, kind, name)))
        }
        ("", "persistentvolumes", "") => {
            let local_path = |volume: &Value| local_path_node(volume) == Some(node);
            match verb {
                "list" | "watch" => Ok(name.is_empty() && own_volumes_only(query.get("labelSelector"), node)),
                "get" => match volume(server, name).await? {
                    Some(volume) if local_path(&volume) => Ok(true),
                    Some(volume) => {
                        let Some((claim_namespace, claim)) = claim_of(&volume) else { return Ok(false) };
                        let pods = node_pods(server, node, &claim_namespace).await?;
                        Ok(pods.iter().any(|pod| pod_uses(pod, "persistentvolumeclaims", &claim)))
                    }
                    None => Ok(false),
                },
                "patch" | "update" => Ok(volume(server, name).await?.is_some_and(|volume| local_path(&volume))),
                _ => Ok(false),
            }
        }
        ("", "serviceaccounts", "token") => {
            let pods = node_pods(server, node, namespace).await?;
            Ok(verb == "create" && pods.iter().any(|pod| service_account(pod) == name))
        }
        ("", "pods", "status" | "") if !read => {
            // The node's own pods only: their status, and deleting them once they stopped.
            if name.is_empty() || verb == "create" || verb == "deletecollection" {
                return Ok(false);
            }
            Ok(pod_node(server, namespace, name).await?.as_deref() == Some(node))
        }
        ("", "nodes", _) if !read => Ok(verb == "create" || name == node),
        ("coordination.k8s.io", "leases", _) if namespace == "kube-node-lease" => Ok(verb == "create" || name == node),
        _ => Ok(true),
    }
}

/// The pods of `namespace` bound to `node`.
async fn node_pods(server: &ApiServer, node: &str, namespace: &str) -> ApiResult<Vec<Value>> {
    let registry = server.registry();
    let pods = registry.get("", "v1", "pods").cloned().expect("pods are built in");
    let page = server.store.list(&ObjectStore::prefix(&pods, Some(namespace)), None, 0, 0).await?;
    Ok(page
        .items
        .into_iter()
        .map(|stored| stored.object)
        .filter(|pod| pod.pointer("/spec/nodeName").and_then(Value::as_str) == Some(node))
        .collect())
}

/// The node pod `namespace/name` is bound to, if it exists and is bound.
async fn pod_node(server: &ApiServer, namespace: &str, name: &str) -> ApiResult<Option<String>> {
    let registry = server.registry();
    let pods = registry.get("", "v1", "pods").cloned().expect("pods are built in");
    let stored = server.store.get(&ObjectStore::key(&pods, Some(namespace), name), false).await?;
    Ok(stored.and_then(|stored| stored.object.pointer("/spec/nodeName").and_then(Value::as_str).map(str::to_string)))
}

/// The stored PersistentVolume `name`.
async fn volume(server: &ApiServer, name: &str) -> ApiResult<Option<Value>> {
    if name.is_empty() {
        return Ok(None);
    }
    let registry = server.registry();
    let volumes = registry.get("", "v1", "persistentvolumes").cloned().expect("persistentvolumes are built in");
    Ok(server.store.get(&ObjectStore::key(&volumes, None, name), false).await?.map(|stored| stored.object))
}

/// The node whose disk holds a local-path volume.
fn local_path_node(volume: &Value) -> Option<&str> {
    volume.pointer("/metadata/labels").and_then(|labels| labels.get(NODE_LABEL)).and_then(Value::as_str)
}

/// The claim (namespace, name) a volume is bound to.
fn claim_of(volume: &Value) -> Option<(String, String)> {
    let reference = volume.pointer("/spec/claimRef")?;
    let text = |field: &str| reference.get(field).and_then(Value::as_str).map(str::to_string);
    Some((text("namespace")?, text("name").filter(|name| !name.is_empty())?))
}

/// Whether a label selector asks for this node's local-path volumes and nothing else.
fn own_volumes_only(selector: Option<&str>, node: &str) -> bool {
    let Some(selector) = selector else { return false };
    let selector = selector.replace(' ', "");
    selector == format!("{NODE_LABEL}={node}") || selector == format!("{NODE_LABEL}=={node}")
}

fn service_account(pod: &Value) -> &str {
    pod.pointer("/spec/serviceAccountName").and_then(Value::as_str).unwrap_or("default")
}

/// Whether `pod` refers to the `kind` (secrets, configmaps, persistentvolumeclaims) object `name`: in a volume
/// (also inside projected ones), in its containers' env and envFrom, or as an image pull secret.
fn pod_uses(pod: &Value, kind: &str, name: &str) -> bool {
    let spec = &pod["spec"];
    let named = |value: &Value, field: &str| value.get(field).and_then(Value::as_str) == Some(name);
    let volumes = spec["volumes"].as_array().into_iter().flatten();
    let projected_sources = || {
        spec["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|volume| volume.pointer("/projected/sources").and_then(Value::as_array))
            .flatten()
    };
    let containers = || {
        ["initContainers", "containers", "ephemeralContainers"]
            .into_iter()
            .filter_map(|field| spec[field].as_array())
            .flatten()
    };
    let env_refs = |reference: &str| {
        containers().any(|container| {
            let env = container["env"].as_array().into_iter().flatten();
            let from_env = env.filter_map(|variable| variable.pointer(&format!("/valueFrom/{reference}")));
            // envFrom names the whole object: `secretRef` for `secretKeyRef`, `configMapRef` for `configMapKeyRef`.
            let whole = reference.replace("KeyRef", "Ref");
            let env_from = container["envFrom"].as_array().into_iter().flatten();
            let from_env_from = env_from.filter_map(|source| source.get(whole.as_str()));
            from_env.chain(from_env_from).any(|source| named(source, "name"))
        })
    };
    match kind {
        "secrets" => {
            let mut volumes = volumes;
            volumes.any(|volume| volume.get("secret").is_some_and(|secret| named(secret, "secretName")))
                || projected_sources().any(|source| source.get("secret").is_some_and(|secret| named(secret, "name")))
                || env_refs("secretKeyRef")
                || spec["imagePullSecrets"].as_array().into_iter().flatten().any(|secret| named(secret, "name"))
        }
        "configmaps" => {
            let mut volumes = volumes;
            volumes.any(|volume| volume.get("configMap").is_some_and(|map| named(map, "name")))
                || projected_sources().any(|source| source.get("configMap").is_some_and(|map| named(map, "name")))
                || env_refs("configMapKeyRef")
        }
        "persistentvolumeclaims" => {
            let mut volumes = volumes;
            volumes.any(|volume| volume.get("persistentVolumeClaim").is_some_and(|claim| named(claim, "claimName")))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_pod_uses_what_its_volumes_env_and_pull_secrets_name() {
        let pod = json!({"spec": {
            "volumes": [
                {"name": "a", "secret": {"secretName": "tls"}},
                {"name": "b", "configMap": {"name": "settings"}},
                {"name": "c", "projected": {"sources": [{"secret": {"name": "projected-secret"}},
                                                        {"configMap": {"name": "kube-root-ca.crt"}}]}},
                {"name": "d", "persistentVolumeClaim": {"claimName": "data"}},
            ],
            "containers": [{"name": "main",
                "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "env-secret", "key": "k"}}},
                        {"name": "Y", "valueFrom": {"configMapKeyRef": {"name": "env-map", "key": "k"}}}],
                "envFrom": [{"secretRef": {"name": "all-secret"}}, {"configMapRef": {"name": "all-map"}}]}],
            "imagePullSecrets": [{"name": "registry"}],
        }});
        for secret in ["tls", "projected-secret", "env-secret", "all-secret", "registry"] {
            assert!(pod_uses(&pod, "secrets", secret), "{secret}");
        }
        for map in ["settings", "kube-root-ca.crt", "env-map", "all-map"] {
            assert!(pod_uses(&pod, "configmaps", map), "{map}");
        }
        assert!(pod_uses(&pod, "persistentvolumeclaims", "data"));
        assert!(!pod_uses(&pod, "secrets", "settings"), "a ConfigMap's name is not a Secret's");
        assert!(!pod_uses(&pod, "secrets", "other"));
    }

    #[test]
    fn a_node_lists_only_its_own_local_path_volumes() {
        assert!(own_volumes_only(Some("kaasd.io/local-path-node=edge-1"), "edge-1"));
        assert!(own_volumes_only(Some("kaasd.io/local-path-node == edge-1"), "edge-1"));
        assert!(!own_volumes_only(Some("kaasd.io/local-path-node=edge-2"), "edge-1"));
        assert!(!own_volumes_only(Some("kaasd.io/local-path-node=edge-1,tier=db"), "edge-1"), "only that label");
        assert!(!own_volumes_only(Some("kaasd.io/local-path-node"), "edge-1"), "existence is every node's");
        assert!(!own_volumes_only(None, "edge-1"));
        let volume = json!({"metadata": {"labels": {NODE_LABEL: "edge-1"}},
                            "spec": {"claimRef": {"namespace": "shop", "name": "data"}}});
        assert_eq!(local_path_node(&volume), Some("edge-1"));
        assert_eq!(claim_of(&volume), Some(("shop".to_string(), "data".to_string())));
    }
}
