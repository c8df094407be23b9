//! Objects every cluster starts with: the four system namespaces, the `kubernetes` Service and its endpoints, the
//! `kube-dns` Service, the default StorageClass `local-path`, the PriorityClasses `system-cluster-critical` and
//! `system-node-critical`, the bootstrap RBAC policy and the API Priority and Fairness objects (`flow_control`).
//! Created only when missing, so a restart (or a second controller on the same database) changes nothing and user
//! edits to them survive.

mod flow_control;

use serde_json::{json, Value};

use crate::apiserver::error::ApiResult;
use crate::apiserver::storage::{ObjectStore, Written};
use crate::apiserver::ApiServer;
use crate::ControllerConfig;

pub async fn ensure(api: &ApiServer, config: &ControllerConfig, api_port: u16) -> ApiResult<()> {
    for namespace in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let object = json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": namespace, "labels": {"kubernetes.io/metadata.name": namespace}},
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        });
        create_missing(api, "", "namespaces", None, object).await?;
    }

    let cluster_ip = config.service_cidr.first();
    api.claim_address(cluster_ip, "default", "kubernetes").await?;
    let labels = json!({"component": "apiserver", "provider": "kubernetes"});
    create_missing(
        api,
        "",
        "services",
        Some("default"),
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default", "labels": labels},
            "spec": {
                "type": "ClusterIP",
                "clusterIP": cluster_ip.to_string(),
                "clusterIPs": [cluster_ip.to_string()],
                "ipFamilies": ["IPv4"],
                "ipFamilyPolicy": "SingleStack",
                "internalTrafficPolicy": "Cluster",
                "sessionAffinity": "None",
                "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": api_port}],
            },
            "status": {"loadBalancer": {}},
        }),
    )
    .await?;
    let address = config.advertise_address.to_string();
    create_missing(api, "", "endpoints", Some("default"), json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": address}], "ports": [{"name": "https", "port": api_port, "protocol": "TCP"}]}],
    }))
    .await?;
    create_missing(api, "discovery.k8s.io", "endpointslices", Some("default"), json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"kubernetes.io/service-name": "kubernetes", "endpointslice.kubernetes.io/managed-by": "kaasd"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [address], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": api_port, "protocol": "TCP"}],
    }))
    .await?;

    // Cluster DNS: every worker answers on this address itself (no DNS pods), so the Service has no selector; it
    // reserves the address and tells workers which one it is. The tenth address, as kubeadm and k3s choose.
    let dns_ip = config.service_cidr.nth(10);
    // Only the claim's winner creates it: a cluster made before kaasd had cluster DNS may have given the address to
    // a Service of its own, which keeps it (its pods then resolve as their nodes do).
    let dns_ip_claimed = api.claim_address(dns_ip, "kube-system", "kube-dns").await?;
    if dns_ip_claimed {
        create_missing(
        api,
        "",
        "services",
        Some("kube-system"),
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "kube-dns",
                "namespace": "kube-system",
                "labels": {"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "CoreDNS"},
            },
            "spec": {
                "type": "ClusterIP",
                "clusterIP": dns_ip.to_string(),
                "clusterIPs": [dns_ip.to_string()],
                "ipFamilies": ["IPv4"],
                "ipFamilyPolicy": "SingleStack",
                "internalTrafficPolicy": "Cluster",
                "sessionAffinity": "None",
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                ],
            },
            "status": {"loadBalancer": {}},
        }),
    )
    .await?;
    }

    // Storage that works with no cloud: the default class, served by the local-path provisioner. Like every
    // bootstrap object it is created only when missing, so an administrator may take away its default mark.
    create_missing(api, "storage.k8s.io", "storageclasses", None, crate::controllers::local_path::storage_class())
        .await?;

    drop_events_of_the_old_events_store(api).await?;

    for class in crate::apiserver::priority_classes() {
        create_missing(api, "scheduling.k8s.io", "priorityclasses", None, class).await?;
    }

    for level in flow_control::priority_level_configurations() {
        create_missing(api, "flowcontrol.apiserver.k8s.io", "prioritylevelconfigurations", None, level).await?;
    }
    for schema in flow_control::flow_schemas() {
        create_missing(api, "flowcontrol.apiserver.k8s.io", "flowschemas", None, schema).await?;
    }

    for role in cluster_roles() {
        create_missing(api, "rbac.authorization.k8s.io", "clusterroles", None, role).await?;
    }
    for (name, role, subjects) in [
        ("cluster-admin", "cluster-admin", vec![group("system:masters")]),
        ("system:discovery", "system:discovery", vec![group("system:authenticated")]),
        ("system:basic-user", "system:basic-user", vec![group("system:authenticated")]),
        (
            "system:public-info-viewer",
            "system:public-info-viewer",
            vec![group("system:authenticated"), group("system:unauthenticated")],
        ),
        ("system:node", "system:node", vec![group("system:nodes")]),
        // Pods may read the issuer discovery documents to verify each other's tokens (upstream's default binding).
        (
            "system:service-account-issuer-discovery",
            "system:service-account-issuer-discovery",
            vec![group("system:serviceaccounts")],
        ),
        // Join tokens may ask for a node certificate (and follow their request); kaasd decides what to sign.
        ("system:node-bootstrapper", "system:node-bootstrapper", vec![group("system:bootstrappers")]),
    ] {
        create_missing(api, "rbac.authorization.k8s.io", "clusterrolebindings", None, json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}, "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": subjects,
        }))
        .await?;
    }
    Ok(())
}

fn group(name: &str) -> Value {
    json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": name})
}

/// The bootstrap ClusterRoles, with upstream's names and intent. admin/edit/view are written out rather than
/// aggregated, so they work without the aggregation controller.
fn cluster_roles() -> Vec<Value> {
    let rule = |groups: &[&str], resources: &[&str], verbs: &[&str]| json!({"apiGroups": groups, "resources": resources, "verbs": verbs});
    let read = ["get", "list", "watch"];
    let write = ["create", "delete", "deletecollection", "patch", "update"];
    let all_write: Vec<&str> = read.iter().chain(write.iter()).copied().collect();
    let workloads = [
        "pods",
        "pods/attach",
        "pods/exec",
        "pods/portforward",
        "pods/proxy",
        "pods/log",
        "pods/status",
        "replicationcontrollers",
        "replicationcontrollers/scale",
        "services",
        "services/proxy",
        "endpoints",
        "persistentvolumeclaims",
        "configmaps",
        "serviceaccounts",
        "events",
        "limitranges",
        "resourcequotas",
        "podtemplates",
    ];
    let apps = [
        "deployments",
        "deployments/scale",
        "deployments/status",
        "replicasets",
        "replicasets/scale",
        "statefulsets",
        "statefulsets/scale",
        "daemonsets",
        "controllerrevisions",
    ];
    let view_rules = vec![
        rule(
            &[""],
            &[
                "pods",
                "pods/log",
                "pods/status",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "services",
                "endpoints",
                "persistentvolumeclaims",
                "configmaps",
                "serviceaccounts",
                "events",
                "limitranges",
                "resourcequotas",
                "namespaces",
                "namespaces/status",
                "bindings",
            ],
            &read,
        ),
        rule(&["apps"], &apps, &read),
        rule(&["batch"], &["jobs", "cronjobs"], &read),
        rule(&["autoscaling"], &["horizontalpodautoscalers"], &read),
        rule(&["policy"], &["poddisruptionbudgets"], &read),
        rule(&["networking.k8s.io"], &["ingresses", "networkpolicies"], &read),
        rule(&["discovery.k8s.io"], &["endpointslices"], &read),
    ];
    let mut edit_rules = vec![
        rule(&[""], &workloads, &all_write),
        rule(&[""], &["secrets"], &all_write),
        rule(&[""], &["serviceaccounts/token"], &["create"]),
        rule(&["apps"], &apps, &all_write),
        rule(&["batch"], &["jobs", "cronjobs"], &all_write),
        rule(&["autoscaling"], &["horizontalpodautoscalers"], &all_write),
        rule(&["policy"], &["poddisruptionbudgets"], &all_write),
        rule(&["networking.k8s.io"], &["ingresses", "networkpolicies"], &all_write),
        rule(&["discovery.k8s.io"], &["endpointslices"], &read),
        rule(&[""], &["namespaces", "namespaces/status"], &read),
    ];
    let mut admin_rules = edit_rules.clone();
    admin_rules.push(rule(&["rbac.authorization.k8s.io"], &["roles", "rolebindings"], &all_write));
    admin_rules.push(rule(&["authorization.k8s.io"], &["localsubjectaccessreviews"], &["create"]));
    edit_rules.truncate(edit_rules.len());
    let role = |name: &str, rules: Vec<Value>| {
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}, "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
            "rules": rules,
        })
    };
    vec![
        role("cluster-admin", vec![rule(&["*"], &["*"], &["*"]), json!({"nonResourceURLs": ["*"], "verbs": ["*"]})]),
        role("admin", admin_rules),
        role("edit", edit_rules),
        role("view", view_rules),
        role(
            "system:discovery",
            vec![
                json!({"nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*", "/readyz", "/version", "/version/"], "verbs": ["get"]}),
            ],
        ),
        role(
            "system:public-info-viewer",
            vec![
                json!({"nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"], "verbs": ["get"]}),
            ],
        ),
        role(
            "system:service-account-issuer-discovery",
            vec![json!({
                "nonResourceURLs": [
                    "/.well-known/openid-configuration",
                    "/.well-known/openid-configuration/",
                    "/openid/v1/jwks",
                    "/openid/v1/jwks/",
                ],
                "verbs": ["get"],
            })],
        ),
        role(
            "system:basic-user",
            vec![
                rule(&["authorization.k8s.io"], &["selfsubjectaccessreviews", "selfsubjectrulesreviews"], &["create"]),
                rule(&["authentication.k8s.io"], &["selfsubjectreviews"], &["create"]),
            ],
        ),
        // What webhook authenticators and authorizers (metrics-server, operators) bind their accounts to.
        role(
            "system:auth-delegator",
            vec![
                rule(&["authentication.k8s.io"], &["tokenreviews"], &["create"]),
                rule(&["authorization.k8s.io"], &["subjectaccessreviews"], &["create"]),
            ],
        ),
        role(
            "system:node-bootstrapper",
            vec![rule(&["certificates.k8s.io"], &["certificatesigningrequests"], &["create", "get", "list", "watch"])],
        ),
        role(
            "system:node",
            vec![
                rule(
                    &[""],
                    &["nodes", "nodes/status"],
                    &["create", "get", "list", "watch", "patch", "update", "delete"],
                ),
                rule(&[""], &["pods", "pods/status"], &["get", "list", "watch", "patch", "update", "delete", "create"]),
                rule(
                    &[""],
                    &["configmaps", "secrets", "services", "endpoints", "persistentvolumeclaims", "persistentvolumes"],
                    &read,
                ),
                // Removing the local-path cleanup finalizer from its own volumes (the node authorizer narrows it).
                rule(&[""], &["persistentvolumes"], &["patch", "update"]),
                rule(&[""], &["events"], &["create", "patch", "update"]),
                rule(&[""], &["serviceaccounts/token"], &["create"]),
                rule(&["coordination.k8s.io"], &["leases"], &["create", "delete", "get", "patch", "update"]),
                rule(&["certificates.k8s.io"], &["certificatesigningrequests"], &["create", "get", "list", "watch"]),
                rule(&["discovery.k8s.io"], &["endpointslices"], &read),
                // The worker is also the node's network agent: NetworkPolicy needs the policies and the namespaces'
                // labels.
                rule(&[""], &["namespaces"], &read),
                rule(&["networking.k8s.io"], &["networkpolicies"], &read),
            ],
        ),
    ]
}

/// Events written through events.k8s.io/v1 used to be stored under that group's own prefix. Both APIs now share
/// the core store, so nothing reads or expires those keys any more: a cluster made before drops them once.
async fn drop_events_of_the_old_events_store(api: &ApiServer) -> ApiResult<()> {
    const OLD_PREFIX: &str = "/registry/events.k8s.io/events/";
    // Looked up first, so that a start with nothing to drop writes nothing.
    if api.store.list_raw(OLD_PREFIX, None, 0, 1).await?.kvs.is_empty() {
        return Ok(());
    }
    let dropped = api.store.delete_prefix(OLD_PREFIX).await?;
    tracing::info!(dropped, "dropped events of the old events.k8s.io store (both event APIs share the core store)");
    Ok(())
}

/// Stores `object` with fresh identity if no object of that name exists.
async fn create_missing(
    api: &ApiServer,
    group: &str,
    plural: &str,
    namespace: Option<&str>,
    mut object: Value,
) -> ApiResult<()> {
    let registry = api.registry();
    let def = registry
        .iter()
        .find(|def| def.group == group && def.plural == plural)
        .cloned()
        .expect("bootstrap objects are of built-in kinds");
    let name = object["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let key = ObjectStore::key(&def, namespace, &name);
    if api.store.get(&key, true).await?.is_some() {
        return Ok(());
    }
    object["metadata"]["uid"] = json!(uuid::Uuid::new_v4().to_string());
    object["metadata"]["creationTimestamp"] = json!(crate::apiserver::now());
    if object.get("spec").is_some() {
        object["metadata"]["generation"] = json!(1);
    }
    match api.store.create(&key, &object).await? {
        Written::Ok(_) | Written::Stale => Ok(()),
    }
}
