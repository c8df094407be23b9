//! The fields a v1.33 API server fills in when a built-in object is written, so that what clients read back has the
//! shape they know from real clusters (`kubectl get -o yaml`, controllers that compare specs, replays of recorded
//! responses).
//!
//! Upstream spreads this over three places, and so do the entry points here:
//! - [`apply_defaults`]: the `SetDefaults_*` functions, which upstream runs every time an object is decoded. They are
//!   idempotent and safe on every create, update and patch.
//! - [`prepare_for_create`]: what only happens once, when an object is created: the registry strategies'
//!   `PrepareForCreate` (pod and namespace status, the namespace finalizer), the Job selector generated from the uid,
//!   and the built-in mutating admission plugins that need no lookups (ServiceAccount's `default` name,
//!   DefaultTolerationSeconds, Priority for pods without a PriorityClass). It applies the defaults too, so a create
//!   calls only it. Running it on an update would be wrong: it would re-add the namespace finalizer the namespace
//!   controller removed and reset a pod's status.
//! - [`carry_over_service_allocations`] and [`mount_service_account_token`]: steps that upstream does with state
//!   (the old object, the ServiceAccount), kept pure here so the caller decides when they apply.
//!
//! Everything works on `serde_json::Value` in the v1 wire shape; fields that are present but `null` count as unset,
//! as they do when Go decodes them into pointers.

use base64::Engine;
use serde_json::{json, Map, Value};

use crate::apiserver::registry::{ResourceDef, SchemaSource};

/// Fills in the defaults of a built-in kind, in place. Custom resources and kinds without defaults are left alone.
/// Objects that are not JSON objects are left alone too: validation reports them.
pub fn apply_defaults(def: &ResourceDef, object: &mut Value) {
    if !matches!(def.schema, SchemaSource::BuiltIn(_)) {
        return;
    }
    let Some(root) = object.as_object_mut() else { return };
    match (def.group.as_str(), def.kind.as_str()) {
        ("", "Pod") => default_pod(root),
        ("", "PodTemplate") => {
            if let Some(template) = child(root, "template") {
                default_pod_template(template);
            }
        }
        ("", "ReplicationController") => default_replication_controller(root),
        ("", "Service") => default_service(root),
        ("", "Namespace") => default_namespace(root),
        ("", "Secret") => default_secret(root),
        ("", "PersistentVolumeClaim") => {
            if let Some(spec) = child(root, "spec") {
                default_claim_spec(spec);
            }
            if let Some(status) = child(root, "status") {
                set_default(status, "phase", json!("Pending"));
            }
        }
        ("", "PersistentVolume") => default_persistent_volume(root),
        ("scheduling.k8s.io", "PriorityClass") => set_default(root, "preemptionPolicy", json!("PreemptLowerPriority")),
        ("", "Node") => {
            if let Some(status) = existing_child(root, "status") {
                if !is_set(status.get("allocatable")) {
                    if let Some(capacity) = status.get("capacity").cloned() {
                        status.insert("allocatable".into(), capacity);
                    }
                }
            }
        }
        ("", "Endpoints") => {
            for subset in objects_in(root, "subsets") {
                for port in objects_in(subset, "ports") {
                    set_default(port, "protocol", json!("TCP"));
                }
            }
        }
        ("discovery.k8s.io", "EndpointSlice") => {
            for port in objects_in(root, "ports") {
                set_default(port, "name", json!(""));
                set_default(port, "protocol", json!("TCP"));
            }
        }
        ("apps", "Deployment") => default_deployment(root),
        ("apps", "ReplicaSet") => default_replica_set(root),
        ("apps", "StatefulSet") => default_stateful_set(root),
        ("apps", "DaemonSet") => default_daemon_set(root),
        ("batch", "Job") => default_job(root),
        ("batch", "CronJob") => default_cron_job(root),
        // Required (non-omitempty) counters: clients decoding the typed status (the Python client) refuse them
        // missing, so a budget the disruption controller has not reached yet shows zeros, as upstream's does.
        ("policy", "PodDisruptionBudget") => {
            default_status_counters(root, &["disruptionsAllowed", "currentHealthy", "desiredHealthy", "expectedPods"])
        }
        ("networking.k8s.io", "NetworkPolicy") => default_network_policy(root),
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => default_role_binding(root),
        _ => {}
    }
}

/// Create-only preparation of a built-in object, then [`apply_defaults`]. The caller sets `metadata.uid` (and name,
/// namespace, creation time) before calling: a Job's generated selector is made from the uid.
///
/// What it does beyond the defaults:
/// - Pod: `status` becomes `{phase: Pending, qosClass}` (upstream's pod strategy); ServiceAccount admission's
///   `serviceAccountName`/`serviceAccount: default`; DefaultTolerationSeconds' `not-ready`/`unreachable` NoExecute
///   tolerations for 300 s; `priority` 0 for a pod without a PriorityClass (a class, or the default class, is
///   resolved before, by Priority admission in `priority.rs`) and `preemptionPolicy: PreemptLowerPriority`. The service account token volume is [`mount_service_account_token`].
/// - Namespace: `status` becomes `{phase: Active}`, and `spec.finalizers` gains `kubernetes`.
/// - Job without `manualSelector: true`: the generated selector and pod template labels from the uid, then the
///   Job's own labels from the template when it has none.
pub fn prepare_for_create(def: &ResourceDef, object: &mut Value) {
    apply_defaults(def, object);
    if !matches!(def.schema, SchemaSource::BuiltIn(_)) {
        return;
    }
    let Some(root) = object.as_object_mut() else { return };
    match (def.group.as_str(), def.kind.as_str()) {
        ("", "Pod") => prepare_pod(root),
        ("", "Namespace") => {
            root.insert("status".into(), json!({"phase": "Active"}));
            if let Some(spec) = child(root, "spec") {
                let finalizers = spec.entry("finalizers").or_insert(Value::Null);
                if !finalizers.is_array() {
                    *finalizers = json!([]);
                }
                if let Some(list) = finalizers.as_array_mut().filter(|list| !list.iter().any(|f| f == "kubernetes")) {
                    list.push(json!("kubernetes"));
                }
            }
        }
        ("batch", "Job") => generate_job_selector(root),
        _ => {}
    }
    apply_defaults(def, object);
}

/// The pod's quality-of-service class from its containers' cpu and memory requests and limits, as the kubelet and
/// `status.qosClass` see it: `Guaranteed` when every container limits both and requests equal limits,
/// `BestEffort` when nothing is requested or limited, `Burstable` otherwise. Takes the pod spec, after defaults
/// (which copy limits into missing requests).
pub fn pod_qos_class(pod_spec: &Value) -> &'static str {
    let mut requests: Vec<(&str, f64)> = Vec::new();
    let mut limits: Vec<(&str, f64)> = Vec::new();
    let mut every_container_limits_both = true;
    let containers = ["containers", "initContainers"]
        .iter()
        .filter_map(|key| pod_spec.get(*key).and_then(Value::as_array))
        .flatten();
    for container in containers {
        let resources = container.get("resources");
        for (name, quantity) in positive_quantities(resources.and_then(|r| r.get("requests"))) {
            add_quantity(&mut requests, name, quantity);
        }
        let container_limits = positive_quantities(resources.and_then(|r| r.get("limits")));
        if !(container_limits.iter().any(|(n, _)| *n == "cpu") && container_limits.iter().any(|(n, _)| *n == "memory"))
        {
            every_container_limits_both = false;
        }
        for (name, quantity) in container_limits {
            add_quantity(&mut limits, name, quantity);
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    let requests_equal_limits = requests.iter().all(|(name, request)| {
        limits.iter().any(|(limit_name, limit)| limit_name == name && (limit - request).abs() <= 1e-9 * limit.abs())
    });
    if every_container_limits_both && requests_equal_limits && requests.len() == limits.len() {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// Parses a resource quantity (`100m`, `1.5Gi`, `2e3`, `128974848`) into its value in base units. `None` for text
/// that is not a quantity. (The `kube_quantity` crate reads them; it does not read the exa suffixes `E` and `Ei`,
/// which no resource in practice uses.)
pub fn parse_quantity(text: &str) -> Option<f64> {
    let quantity = k8s_openapi::apimachinery::pkg::api::resource::Quantity(text.trim().to_string());
    kube_quantity::ParsedQuantity::try_from(&quantity).ok()?.to_bytes_f64()
}

/// Service update: carries the cluster IPs, node ports and health-check node port of the stored Service into an
/// update that leaves them unset, as upstream does before validating (so `kubectl replace` of the original
/// manifest does not read as "clusterIP may not change"). Only where both old and new need the allocation.
pub fn carry_over_service_allocations(new: &mut Value, old: &Value) {
    let (Some(new_spec), Some(old_spec)) = (new.get_mut("spec").and_then(Value::as_object_mut), old.get("spec")) else {
        return;
    };
    let old_type = old_spec.get("type").and_then(Value::as_str).unwrap_or("ClusterIP");
    let new_type = new_spec.get("type").and_then(Value::as_str).unwrap_or("ClusterIP").to_string();
    if old_type != "ExternalName" && new_type != "ExternalName" {
        if new_spec.get("clusterIP").and_then(Value::as_str).unwrap_or("").is_empty() {
            if let Some(ip) = old_spec.get("clusterIP").filter(|v| is_set(Some(v))) {
                new_spec.insert("clusterIP".into(), ip.clone());
            }
        }
        let new_ips_empty = new_spec.get("clusterIPs").and_then(Value::as_array).is_none_or(Vec::is_empty);
        let old_ips = old_spec.get("clusterIPs").filter(|v| v.as_array().is_some_and(|a| !a.is_empty()));
        if let (true, Some(ips)) = (new_ips_empty, old_ips) {
            new_spec.insert("clusterIPs".into(), ips.clone());
        }
    }
    let needs_node_ports = |t: &str| t == "NodePort" || t == "LoadBalancer";
    if needs_node_ports(old_type) && needs_node_ports(&new_type) {
        let node_port = |port: &Value| port.get("nodePort").and_then(Value::as_i64).unwrap_or(0);
        let old_ports = old_spec.get("ports").and_then(Value::as_array).cloned().unwrap_or_default();
        let new_used: Vec<i64> = new_spec
            .get("ports")
            .and_then(Value::as_array)
            .map(|ports| ports.iter().map(node_port).filter(|p| *p != 0).collect())
            .unwrap_or_default();
        for port in objects_in(new_spec, "ports") {
            if port.get("nodePort").and_then(Value::as_i64).unwrap_or(0) != 0 {
                continue;
            }
            let name = port.get("name").and_then(Value::as_str).unwrap_or("");
            let previous = old_ports
                .iter()
                .find(|p| p.get("name").and_then(Value::as_str).unwrap_or("") == name)
                .map(node_port)
                .filter(|p| *p != 0 && !new_used.contains(p));
            if let Some(previous) = previous {
                port.insert("nodePort".into(), json!(previous));
            }
        }
    }
    let needs_health_check = |spec: &Value| {
        spec.get("type").and_then(Value::as_str) == Some("LoadBalancer")
            && spec.get("externalTrafficPolicy").and_then(Value::as_str) == Some("Local")
    };
    let keep_health_check_port = needs_health_check(old_spec)
        && needs_health_check(&Value::Object(new_spec.clone()))
        && new_spec.get("healthCheckNodePort").and_then(Value::as_i64).unwrap_or(0) == 0;
    if let Some(port) = old_spec.get("healthCheckNodePort").filter(|v| keep_health_check_port && is_set(Some(v))) {
        new_spec.insert("healthCheckNodePort".into(), port.clone());
    }
}

/// ServiceAccount admission's token volume: a projected `kube-api-access-<suffix>` volume (token, the cluster CA
/// from the `kube-root-ca.crt` ConfigMap, the namespace) mounted read-only at
/// `/var/run/secrets/kubernetes.io/serviceaccount` in every container and init container. The suffix comes from
/// the pod's uid, so set it first. Does nothing when the pod opts out (`automountServiceAccountToken: false`) or
/// already mounts something there. ServiceAccount admission (`service_accounts.rs`) calls it once it has checked the
/// account and the account's own opt-out.
pub fn mount_service_account_token(pod: &mut Value) {
    let suffix: String = pod
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .take(5)
        .collect();
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else { return };
    if spec.get("automountServiceAccountToken") == Some(&Value::Bool(false)) {
        return;
    }
    let all_containers = || ["containers", "initContainers"].into_iter();
    let already_mounted = all_containers().any(|key| {
        spec.get(key).and_then(Value::as_array).is_some_and(|containers| {
            containers.iter().any(|c| {
                c.get("volumeMounts").and_then(Value::as_array).is_some_and(|mounts| {
                    mounts
                        .iter()
                        .any(|m| m.get("mountPath").and_then(Value::as_str) == Some(SERVICE_ACCOUNT_MOUNT_PATH))
                })
            })
        })
    });
    if already_mounted {
        return;
    }
    let volume_name = format!("kube-api-access-{}", if suffix.is_empty() { "token".to_string() } else { suffix });
    let volume = json!({
        "name": volume_name,
        "projected": {
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [
                    {"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}
                ]}}
            ],
            "defaultMode": 420
        }
    });
    push_to_list(spec, "volumes", volume);
    for key in all_containers() {
        for container in objects_in(spec, key) {
            let mount = json!({"name": volume_name, "readOnly": true, "mountPath": SERVICE_ACCOUNT_MOUNT_PATH});
            push_to_list(container, "volumeMounts", mount);
        }
    }
}

const SERVICE_ACCOUNT_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Upstream's 0644, the mode of files in secret, configMap, downwardAPI and projected volumes.
const DEFAULT_VOLUME_MODE: i64 = 420;

/// Every volume source a `Volume` may name; a volume with none of them is an `emptyDir`.
const VOLUME_SOURCES: &[&str] = &[
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "cephfs",
    "cinder",
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "fc",
    "flexVolume",
    "flocker",
    "gcePersistentDisk",
    "gitRepo",
    "glusterfs",
    "hostPath",
    "image",
    "iscsi",
    "nfs",
    "persistentVolumeClaim",
    "photonPersistentDisk",
    "portworxVolume",
    "projected",
    "quobyte",
    "rbd",
    "scaleIO",
    "secret",
    "storageos",
    "vsphereVolume",
];

fn default_pod(root: &mut Map<String, Value>) {
    let Some(spec) = child(root, "spec") else { return };
    default_pod_spec(spec);
    for key in ["containers", "initContainers"] {
        for container in objects_in(spec, key) {
            requests_from_limits(container);
        }
    }
    for container in objects_in(spec, "ephemeralContainers") {
        default_container(container);
    }
    set_default(spec, "enableServiceLinks", json!(true));
    if spec.get("hostNetwork") == Some(&Value::Bool(true)) {
        for key in ["containers", "initContainers"] {
            for container in objects_in(spec, key) {
                for port in objects_in(container, "ports") {
                    let host_port_unset = port.get("hostPort").and_then(Value::as_i64).unwrap_or(0) == 0;
                    if let Some(container_port) = port.get("containerPort").cloned().filter(|_| host_port_unset) {
                        port.insert("hostPort".into(), container_port);
                    }
                }
            }
        }
    }
}

/// Upstream copies a container's limits into its unset requests on pods only, not on templates, so a template
/// keeps what its author wrote and each pod shows what the scheduler uses.
fn requests_from_limits(container: &mut Map<String, Value>) {
    let Some(resources) = child(container, "resources") else { return };
    let Some(limits) = resources.get("limits").and_then(Value::as_object).cloned() else { return };
    let Some(requests) = child(resources, "requests") else { return };
    for (name, quantity) in limits {
        requests.entry(name).or_insert(quantity);
    }
}

fn prepare_pod(root: &mut Map<String, Value>) {
    let qos_class = root.get("spec").map_or("BestEffort", pod_qos_class);
    root.insert("status".into(), json!({"phase": "Pending", "qosClass": qos_class}));
    let Some(spec) = child(root, "spec") else { return };
    if !is_non_empty_string(spec.get("serviceAccountName")) {
        spec.insert("serviceAccountName".into(), json!("default"));
        spec.insert("serviceAccount".into(), json!("default"));
    }
    let tolerates = |tolerations: &[Value], key: &str| {
        tolerations.iter().any(|t| {
            let t_key = t.get("key").and_then(Value::as_str).unwrap_or("");
            let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
            (t_key == key || t_key.is_empty()) && (effect == "NoExecute" || effect.is_empty())
        })
    };
    for key in ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"] {
        let present = spec.get("tolerations").and_then(Value::as_array).is_some_and(|list| tolerates(list, key));
        if !present {
            let toleration = json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300});
            push_to_list(spec, "tolerations", toleration);
        }
    }
    // A named class is Priority admission's to resolve (`priority.rs`, which runs first); without one, 0.
    if spec.get("priorityClassName").and_then(Value::as_str).unwrap_or("").is_empty() {
        set_default(spec, "priority", json!(0));
    }
    set_default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
}

/// A pod template: its metadata shows `creationTimestamp: null` on a real server (the zero time of the embedded
/// metadata), and its spec gets the pod spec defaults.
fn default_pod_template(template: &mut Map<String, Value>) {
    if let Some(metadata) = child(template, "metadata") {
        metadata.entry("creationTimestamp").or_insert(Value::Null);
    }
    if let Some(spec) = child(template, "spec") {
        default_pod_spec(spec);
    }
}

fn default_pod_spec(spec: &mut Map<String, Value>) {
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    // The v1 `serviceAccount` field is a deprecated alias that the wire form mirrors from `serviceAccountName`.
    if !is_non_empty_string(spec.get("serviceAccountName")) {
        if let Some(alias) = spec.get("serviceAccount").filter(|v| is_non_empty_string(Some(v))).cloned() {
            spec.insert("serviceAccountName".into(), alias);
        }
    }
    if let Some(name) = spec.get("serviceAccountName").filter(|v| is_non_empty_string(Some(v))).cloned() {
        spec.insert("serviceAccount".into(), name);
    }
    for key in ["containers", "initContainers"] {
        for container in objects_in(spec, key) {
            default_container(container);
        }
    }
    for volume in objects_in(spec, "volumes") {
        default_volume(volume);
    }
}

fn default_container(container: &mut Map<String, Value>) {
    if !is_set(container.get("imagePullPolicy")) {
        let image = container.get("image").and_then(Value::as_str).unwrap_or("");
        let policy = if image_tag(image) == Some("latest") { "Always" } else { "IfNotPresent" };
        container.insert("imagePullPolicy".into(), json!(policy));
    }
    set_default(container, "terminationMessagePath", json!("/dev/termination-log"));
    set_default(container, "terminationMessagePolicy", json!("File"));
    set_default(container, "resources", json!({}));
    for port in objects_in(container, "ports") {
        set_default(port, "protocol", json!("TCP"));
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(probe) = existing_child(container, probe) {
            set_default(probe, "timeoutSeconds", json!(1));
            set_default(probe, "periodSeconds", json!(10));
            set_default(probe, "successThreshold", json!(1));
            set_default(probe, "failureThreshold", json!(3));
            default_handler(probe);
        }
    }
    if let Some(lifecycle) = existing_child(container, "lifecycle") {
        for hook in ["postStart", "preStop"] {
            if let Some(handler) = existing_child(lifecycle, hook) {
                default_handler(handler);
            }
        }
    }
    for env in objects_in(container, "env") {
        if let Some(value_from) = existing_child(env, "valueFrom") {
            if let Some(field_ref) = existing_child(value_from, "fieldRef") {
                set_default(field_ref, "apiVersion", json!("v1"));
            }
            if let Some(resource_ref) = existing_child(value_from, "resourceFieldRef") {
                set_default(resource_ref, "divisor", json!("0"));
            }
        }
    }
}

fn default_handler(handler: &mut Map<String, Value>) {
    if let Some(http_get) = existing_child(handler, "httpGet") {
        set_default(http_get, "path", json!("/"));
        set_default(http_get, "scheme", json!("HTTP"));
    }
}

/// The tag of an image reference, with `latest` for a reference with neither tag nor digest (the rule that makes
/// `nginx` and `nginx:latest` pull `Always`). `None` when there is a digest but no tag, or no image.
fn image_tag(image: &str) -> Option<&str> {
    if image.is_empty() {
        return None;
    }
    let (name, digest) = match image.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (image, None),
    };
    let last_segment_start = name.rfind('/').map_or(0, |i| i + 1);
    match name[last_segment_start..].rsplit_once(':') {
        Some((_, tag)) => Some(tag),
        None if digest.is_none() => Some("latest"),
        None => None,
    }
}

fn default_volume(volume: &mut Map<String, Value>) {
    if !VOLUME_SOURCES.iter().any(|source| is_set(volume.get(*source))) {
        volume.insert("emptyDir".into(), json!({}));
    }
    for source in ["configMap", "secret"] {
        if let Some(source) = existing_child(volume, source) {
            set_default(source, "defaultMode", json!(DEFAULT_VOLUME_MODE));
        }
    }
    if let Some(downward) = existing_child(volume, "downwardAPI") {
        set_default(downward, "defaultMode", json!(DEFAULT_VOLUME_MODE));
        default_downward_items(downward);
    }
    if let Some(projected) = existing_child(volume, "projected") {
        set_default(projected, "defaultMode", json!(DEFAULT_VOLUME_MODE));
        for source in objects_in(projected, "sources") {
            if let Some(token) = existing_child(source, "serviceAccountToken") {
                set_default(token, "expirationSeconds", json!(3600));
            }
            if let Some(downward) = existing_child(source, "downwardAPI") {
                default_downward_items(downward);
            }
        }
    }
    if let Some(host_path) = existing_child(volume, "hostPath") {
        set_default(host_path, "type", json!(""));
    }
    if let Some(spec) = existing_child(volume, "ephemeral")
        .and_then(|ephemeral| existing_child(ephemeral, "volumeClaimTemplate"))
        .and_then(|template| existing_child(template, "spec"))
    {
        default_claim_spec(spec);
    }
}

fn default_downward_items(downward: &mut Map<String, Value>) {
    for item in objects_in(downward, "items") {
        if let Some(field_ref) = existing_child(item, "fieldRef") {
            set_default(field_ref, "apiVersion", json!("v1"));
        }
        if let Some(resource_ref) = existing_child(item, "resourceFieldRef") {
            set_default(resource_ref, "divisor", json!("0"));
        }
    }
}

fn default_claim_spec(spec: &mut Map<String, Value>) {
    set_default(spec, "volumeMode", json!("Filesystem"));
}

fn default_persistent_volume(root: &mut Map<String, Value>) {
    if let Some(spec) = child(root, "spec") {
        set_default(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
        set_default(spec, "volumeMode", json!("Filesystem"));
        if let Some(host_path) = existing_child(spec, "hostPath") {
            set_default(host_path, "type", json!(""));
        }
    }
    if let Some(status) = child(root, "status") {
        set_default(status, "phase", json!("Pending"));
    }
}

/// The status a workload shows before its controller first writes one: Go serialises the integer fields that are
/// not `omitempty` as zeros.
fn default_status_counters(root: &mut Map<String, Value>, counters: &[&str]) {
    if let Some(status) = child(root, "status") {
        for counter in counters {
            set_default(status, counter, json!(0));
        }
    }
}

fn default_replication_controller(root: &mut Map<String, Value>) {
    let template_labels = root.pointer_labels(&["spec", "template", "metadata", "labels"]);
    if let Some(labels) = template_labels {
        if let Some(spec) = child(root, "spec") {
            if spec.get("selector").and_then(Value::as_object).is_none_or(Map::is_empty) {
                spec.insert("selector".into(), Value::Object(labels.clone()));
            }
        }
        copy_labels_when_unlabelled(root, labels);
    }
    if let Some(spec) = child(root, "spec") {
        set_default(spec, "replicas", json!(1));
        if let Some(template) = existing_child(spec, "template") {
            default_pod_template(template);
        }
    }
    default_status_counters(root, &["replicas"]);
}

fn default_deployment(root: &mut Map<String, Value>) {
    if let Some(spec) = child(root, "spec") {
        set_default(spec, "replicas", json!(1));
        if let Some(strategy) = child(spec, "strategy") {
            set_default(strategy, "type", json!("RollingUpdate"));
            let rolling = if strategy.get("type") == Some(&json!("RollingUpdate")) {
                child(strategy, "rollingUpdate")
            } else {
                None
            };
            if let Some(rolling) = rolling {
                set_default(rolling, "maxUnavailable", json!("25%"));
                set_default(rolling, "maxSurge", json!("25%"));
            }
        }
        set_default(spec, "revisionHistoryLimit", json!(10));
        set_default(spec, "progressDeadlineSeconds", json!(600));
        if let Some(template) = child(spec, "template") {
            default_pod_template(template);
        }
    }
    default_status_counters(root, &[]);
}

fn default_replica_set(root: &mut Map<String, Value>) {
    if let Some(spec) = child(root, "spec") {
        set_default(spec, "replicas", json!(1));
        if let Some(template) = child(spec, "template") {
            default_pod_template(template);
        }
    }
    default_status_counters(root, &["replicas"]);
}

fn default_stateful_set(root: &mut Map<String, Value>) {
    if let Some(spec) = child(root, "spec") {
        set_default(spec, "podManagementPolicy", json!("OrderedReady"));
        if let Some(strategy) = child(spec, "updateStrategy") {
            set_default(strategy, "type", json!("RollingUpdate"));
            let rolling = if strategy.get("type") == Some(&json!("RollingUpdate")) {
                child(strategy, "rollingUpdate")
            } else {
                None
            };
            if let Some(rolling) = rolling {
                set_default(rolling, "partition", json!(0));
            }
        }
        if let Some(retention) = child(spec, "persistentVolumeClaimRetentionPolicy") {
            set_default(retention, "whenDeleted", json!("Retain"));
            set_default(retention, "whenScaled", json!("Retain"));
        }
        set_default(spec, "replicas", json!(1));
        set_default(spec, "revisionHistoryLimit", json!(10));
        if let Some(template) = child(spec, "template") {
            default_pod_template(template);
        }
        for claim in objects_in(spec, "volumeClaimTemplates") {
            claim.insert("apiVersion".into(), json!("v1"));
            claim.insert("kind".into(), json!("PersistentVolumeClaim"));
            if let Some(metadata) = child(claim, "metadata") {
                metadata.entry("creationTimestamp").or_insert(Value::Null);
            }
            if let Some(claim_spec) = child(claim, "spec") {
                default_claim_spec(claim_spec);
            }
            if let Some(status) = child(claim, "status") {
                set_default(status, "phase", json!("Pending"));
            }
        }
    }
    default_status_counters(root, &["replicas", "availableReplicas"]);
}

fn default_daemon_set(root: &mut Map<String, Value>) {
    if let Some(spec) = child(root, "spec") {
        if let Some(strategy) = child(spec, "updateStrategy") {
            set_default(strategy, "type", json!("RollingUpdate"));
            let rolling = if strategy.get("type") == Some(&json!("RollingUpdate")) {
                child(strategy, "rollingUpdate")
            } else {
                None
            };
            if let Some(rolling) = rolling {
                set_default(rolling, "maxUnavailable", json!(1));
                set_default(rolling, "maxSurge", json!(0));
            }
        }
        set_default(spec, "revisionHistoryLimit", json!(10));
        if let Some(template) = child(spec, "template") {
            default_pod_template(template);
        }
    }
    default_status_counters(
        root,
        &["currentNumberScheduled", "numberMisscheduled", "desiredNumberScheduled", "numberReady"],
    );
}

fn default_job(root: &mut Map<String, Value>) {
    let template_labels = root.pointer_labels(&["spec", "template", "metadata", "labels"]);
    if let Some(spec) = child(root, "spec") {
        if !is_set(spec.get("completions")) && !is_set(spec.get("parallelism")) {
            spec.insert("completions".into(), json!(1));
            spec.insert("parallelism".into(), json!(1));
        }
        set_default(spec, "parallelism", json!(1));
        let backoff = if is_set(spec.get("backoffLimitPerIndex")) { i64::from(i32::MAX) } else { 6 };
        set_default(spec, "backoffLimit", json!(backoff));
        set_default(spec, "completionMode", json!("NonIndexed"));
        set_default(spec, "suspend", json!(false));
        set_default(spec, "manualSelector", json!(false));
        let replacement = if is_set(spec.get("podFailurePolicy")) { "Failed" } else { "TerminatingOrFailed" };
        set_default(spec, "podReplacementPolicy", json!(replacement));
        if let Some(policy) = existing_child(spec, "podFailurePolicy") {
            for rule in objects_in(policy, "rules") {
                for condition in objects_in(rule, "onPodConditions") {
                    set_default(condition, "status", json!("True"));
                }
            }
        }
        if let Some(template) = child(spec, "template") {
            default_pod_template(template);
        }
    }
    if let Some(labels) = template_labels {
        copy_labels_when_unlabelled(root, labels);
    }
    default_status_counters(root, &[]);
}

/// Upstream copies a controller's template labels to the controller itself when the author labelled only the
/// template (ReplicationController, Job).
fn copy_labels_when_unlabelled(root: &mut Map<String, Value>, labels: Map<String, Value>) {
    if let Some(metadata) = child(root, "metadata") {
        if metadata.get("labels").and_then(Value::as_object).is_none_or(Map::is_empty) {
            metadata.insert("labels".into(), Value::Object(labels));
        }
    }
}

/// The selector upstream generates for a Job that does not choose its own: the uid label, plus the job-name and
/// controller-uid labels (old and new spellings) on the pod template, where the author has not set them.
fn generate_job_selector(root: &mut Map<String, Value>) {
    let uid = root.pointer_str(&["metadata", "uid"]).unwrap_or_default();
    let name = root.pointer_str(&["metadata", "name"]).unwrap_or_default();
    let Some(spec) = child(root, "spec") else { return };
    if spec.get("manualSelector") == Some(&Value::Bool(true)) {
        return;
    }
    if let Some(labels) = child(spec, "template").and_then(|t| child(t, "metadata")).and_then(|m| child(m, "labels")) {
        for key in ["job-name", "batch.kubernetes.io/job-name"] {
            labels.entry(key).or_insert_with(|| json!(name));
        }
        for key in ["controller-uid", "batch.kubernetes.io/controller-uid"] {
            labels.entry(key).or_insert_with(|| json!(uid));
        }
    }
    if let Some(match_labels) = child(spec, "selector").and_then(|s| child(s, "matchLabels")) {
        match_labels.entry("batch.kubernetes.io/controller-uid").or_insert_with(|| json!(uid));
    }
}

fn default_cron_job(root: &mut Map<String, Value>) {
    if let Some(spec) = child(root, "spec") {
        set_default(spec, "concurrencyPolicy", json!("Allow"));
        set_default(spec, "suspend", json!(false));
        set_default(spec, "successfulJobsHistoryLimit", json!(3));
        set_default(spec, "failedJobsHistoryLimit", json!(1));
        if let Some(job_template) = child(spec, "jobTemplate") {
            if let Some(metadata) = child(job_template, "metadata") {
                metadata.entry("creationTimestamp").or_insert(Value::Null);
            }
            if let Some(template) = child(job_template, "spec").and_then(|s| child(s, "template")) {
                default_pod_template(template);
            }
        }
    }
    default_status_counters(root, &[]);
}

fn default_service(root: &mut Map<String, Value>) {
    let Some(spec) = child(root, "spec") else { return };
    set_default(spec, "type", json!("ClusterIP"));
    set_default(spec, "sessionAffinity", json!("None"));
    match spec.get("sessionAffinity").and_then(Value::as_str) {
        Some("None") => {
            spec.remove("sessionAffinityConfig");
        }
        Some("ClientIP") => {
            let timeout = spec.get("sessionAffinityConfig").and_then(|c| c.pointer("/clientIP/timeoutSeconds"));
            if !is_set(timeout) {
                spec.insert("sessionAffinityConfig".into(), json!({"clientIP": {"timeoutSeconds": 10800}}));
            }
        }
        _ => {}
    }
    for port in objects_in(spec, "ports") {
        set_default(port, "protocol", json!("TCP"));
        let target_unset = match port.get("targetPort") {
            None | Some(Value::Null) => true,
            Some(Value::Number(n)) => n.as_i64() == Some(0),
            Some(Value::String(s)) => s.is_empty(),
            Some(_) => false,
        };
        if let Some(number) = port.get("port").cloned().filter(|_| target_unset) {
            port.insert("targetPort".into(), number);
        }
    }
    let service_type = spec.get("type").and_then(Value::as_str).unwrap_or("ClusterIP").to_string();
    let has_external_ips = spec.get("externalIPs").and_then(Value::as_array).is_some_and(|ips| !ips.is_empty());
    let externally_accessible = service_type == "NodePort"
        || service_type == "LoadBalancer"
        || (service_type == "ClusterIP" && has_external_ips);
    if externally_accessible {
        set_default(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if matches!(service_type.as_str(), "ClusterIP" | "NodePort" | "LoadBalancer") {
        set_default(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if service_type == "LoadBalancer" {
        set_default(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    if service_type != "ExternalName" {
        // `clusterIPs` mirrors `clusterIP` (upstream normalises both ways before allocating).
        let cluster_ip = spec.get("clusterIP").and_then(Value::as_str).unwrap_or("").to_string();
        let cluster_ips = spec.get("clusterIPs").and_then(Value::as_array).cloned().unwrap_or_default();
        if !cluster_ip.is_empty() && cluster_ips.is_empty() {
            spec.insert("clusterIPs".into(), json!([cluster_ip]));
        } else if let Some(first) = cluster_ips.first().filter(|_| cluster_ip.is_empty()) {
            spec.insert("clusterIP".into(), first.clone());
        }
        let headless = spec.get("clusterIP").and_then(Value::as_str) == Some("None");
        let has_selector = spec.get("selector").and_then(Value::as_object).is_some_and(|s| !s.is_empty());
        // A single-stack IPv4 cluster: headless services without a selector ask for both families (their endpoints
        // are managed by hand and may be either) and get the one the cluster has.
        let policy = if headless && !has_selector { "RequireDualStack" } else { "SingleStack" };
        set_default(spec, "ipFamilyPolicy", json!(policy));
        if !is_set(spec.get("ipFamilies")) {
            let first_ip = spec.get("clusterIPs").and_then(|ips| ips.get(0)).and_then(Value::as_str).unwrap_or("");
            let family = if first_ip.contains(':') { "IPv6" } else { "IPv4" };
            spec.insert("ipFamilies".into(), json!([family]));
        }
    }
    if let Some(status) = child(root, "status") {
        set_default(status, "loadBalancer", json!({}));
    }
}

fn default_namespace(root: &mut Map<String, Value>) {
    if let Some(name) = root.pointer_str(&["metadata", "name"]).filter(|n| !n.is_empty()) {
        if let Some(labels) = child(root, "metadata").and_then(|m| child(m, "labels")) {
            labels.insert("kubernetes.io/metadata.name".into(), json!(name));
        }
    }
    if let Some(status) = child(root, "status") {
        set_default(status, "phase", json!("Active"));
    }
}

/// `type: Opaque`, and `stringData` folded into `data` (base64) as the v1 conversion does: `stringData` is
/// write-only and wins over `data` for the same key.
fn default_secret(root: &mut Map<String, Value>) {
    set_default(root, "type", json!("Opaque"));
    let Some(Value::Object(string_data)) = root.remove("stringData") else { return };
    if string_data.is_empty() {
        return;
    }
    if let Some(data) = child(root, "data") {
        for (key, value) in string_data {
            let text = value.as_str().unwrap_or_default();
            data.insert(key, json!(base64::engine::general_purpose::STANDARD.encode(text)));
        }
    }
}

fn default_network_policy(root: &mut Map<String, Value>) {
    let Some(spec) = child(root, "spec") else { return };
    if spec.get("policyTypes").and_then(Value::as_array).is_none_or(Vec::is_empty) {
        let has_egress = spec.get("egress").and_then(Value::as_array).is_some_and(|e| !e.is_empty());
        let types = if has_egress { json!(["Ingress", "Egress"]) } else { json!(["Ingress"]) };
        spec.insert("policyTypes".into(), types);
    }
    for direction in ["ingress", "egress"] {
        for rule in objects_in(spec, direction) {
            for port in objects_in(rule, "ports") {
                set_default(port, "protocol", json!("TCP"));
            }
        }
    }
}

fn default_role_binding(root: &mut Map<String, Value>) {
    if let Some(role_ref) = existing_child(root, "roleRef") {
        if role_ref.get("apiGroup").and_then(Value::as_str).unwrap_or("").is_empty() {
            role_ref.insert("apiGroup".into(), json!("rbac.authorization.k8s.io"));
        }
    }
    for subject in objects_in(root, "subjects") {
        let kind = subject.get("kind").and_then(Value::as_str).unwrap_or("");
        if (kind == "User" || kind == "Group")
            && subject.get("apiGroup").and_then(Value::as_str).unwrap_or("").is_empty()
        {
            subject.insert("apiGroup".into(), json!("rbac.authorization.k8s.io"));
        }
    }
}

fn positive_quantities(list: Option<&Value>) -> Vec<(&str, f64)> {
    let Some(list) = list.and_then(Value::as_object) else { return Vec::new() };
    list.iter()
        .filter(|(name, _)| *name == "cpu" || *name == "memory")
        .filter_map(|(name, q)| Some((name.as_str(), quantity_value(q)?)))
        .filter(|(_, q)| *q > 0.0)
        .collect()
}

fn quantity_value(quantity: &Value) -> Option<f64> {
    match quantity {
        Value::String(text) => parse_quantity(text),
        Value::Number(n) => n.as_f64(),
        _ => None,
    }
}

fn add_quantity<'a>(totals: &mut Vec<(&'a str, f64)>, name: &'a str, quantity: f64) {
    match totals.iter_mut().find(|(n, _)| *n == name) {
        Some((_, total)) => *total += quantity,
        None => totals.push((name, quantity)),
    }
}

/// Set and meaningful: present and not `null`.
fn is_set(value: Option<&Value>) -> bool {
    !matches!(value, None | Some(Value::Null))
}

fn is_non_empty_string(value: Option<&Value>) -> bool {
    value.and_then(Value::as_str).is_some_and(|s| !s.is_empty())
}

fn set_default(map: &mut Map<String, Value>, key: &str, value: Value) {
    if !is_set(map.get(key)) {
        map.insert(key.to_string(), value);
    }
}

/// The object under `key`, created empty when absent or `null`. `None` when something else is there: a malformed
/// object is validation's to report, not ours to overwrite.
fn child<'a>(map: &'a mut Map<String, Value>, key: &str) -> Option<&'a mut Map<String, Value>> {
    let slot = map.entry(key).or_insert(Value::Null);
    if slot.is_null() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut()
}

/// The object under `key` only when one is there: for optional structures whose presence means something.
fn existing_child<'a>(map: &'a mut Map<String, Value>, key: &str) -> Option<&'a mut Map<String, Value>> {
    map.get_mut(key).and_then(Value::as_object_mut)
}

/// The object elements of the list under `key` (none when the list is missing).
fn objects_in<'a>(map: &'a mut Map<String, Value>, key: &str) -> impl Iterator<Item = &'a mut Map<String, Value>> {
    map.get_mut(key).and_then(Value::as_array_mut).into_iter().flatten().filter_map(Value::as_object_mut)
}

fn push_to_list(map: &mut Map<String, Value>, key: &str, item: Value) {
    let slot = map.entry(key).or_insert(Value::Null);
    if !slot.is_array() {
        *slot = json!([]);
    }
    if let Some(list) = slot.as_array_mut() {
        list.push(item);
    }
}

/// Reading nested fields of an object's root map.
trait PointerExt {
    fn pointer_value(&self, path: &[&str]) -> Option<&Value>;
    fn pointer_str(&self, path: &[&str]) -> Option<String> {
        self.pointer_value(path).and_then(Value::as_str).map(str::to_string)
    }
    /// A non-empty label map at `path`, copied.
    fn pointer_labels(&self, path: &[&str]) -> Option<Map<String, Value>> {
        self.pointer_value(path).and_then(Value::as_object).filter(|m| !m.is_empty()).cloned()
    }
}

impl PointerExt for Map<String, Value> {
    fn pointer_value(&self, path: &[&str]) -> Option<&Value> {
        let (first, rest) = path.split_first()?;
        rest.iter().try_fold(self.get(*first)?, |value, key| value.get(*key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::registry::built_in_resources;

    fn def(group: &str, kind: &str) -> ResourceDef {
        built_in_resources().into_iter().find(|d| d.group == group && d.kind == kind).expect("a built-in kind")
    }

    /// A Deployment as a client sent it and the spec and status a v1.33 API server answered with (a recorded
    /// create; names shortened).
    const DEPLOYMENT_REQUEST: &str = r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"},
        "spec":{"replicas":1,"selector":{"matchLabels":{"k":"v"}},"template":{"metadata":{"labels":{"k":"v"}},
        "spec":{"containers":[{"image":"alpine:3.6","name":"c"}]}}}}"#;
    const DEPLOYMENT_RESPONSE: &str = r#"{"spec":{"replicas":1,"selector":{"matchLabels":{"k":"v"}},
        "template":{"metadata":{"creationTimestamp":null,"labels":{"k":"v"}},"spec":{"containers":[{"name":"c",
        "image":"alpine:3.6","resources":{},"terminationMessagePath":"/dev/termination-log",
        "terminationMessagePolicy":"File","imagePullPolicy":"IfNotPresent"}],"restartPolicy":"Always",
        "terminationGracePeriodSeconds":30,"dnsPolicy":"ClusterFirst","securityContext":{},
        "schedulerName":"default-scheduler"}},"strategy":{"type":"RollingUpdate","rollingUpdate":
        {"maxUnavailable":"25%","maxSurge":"25%"}},"revisionHistoryLimit":10,"progressDeadlineSeconds":600},
        "status":{}}"#;

    /// The same for a Job created with a uid of `0c4382fa-c985-4116-944f-527a810a4ba2`.
    const JOB_REQUEST: &str = r#"{"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"create-job"},
        "spec":{"backoffLimit":0,"template":{"spec":{"containers":[{"command":["sh","-c","exit $TEST_ARG"],
        "env":[{"name":"TEST_ARG","value":"5"}],"image":"alpine","name":"create-job"}],"restartPolicy":"Never"}}}}"#;
    const JOB_RESPONSE: &str = r#"{"metadata":{"labels":{
        "batch.kubernetes.io/controller-uid":"0c4382fa-c985-4116-944f-527a810a4ba2",
        "batch.kubernetes.io/job-name":"create-job","controller-uid":"0c4382fa-c985-4116-944f-527a810a4ba2",
        "job-name":"create-job"}},"spec":{"parallelism":1,"completions":1,"backoffLimit":0,"selector":
        {"matchLabels":{"batch.kubernetes.io/controller-uid":"0c4382fa-c985-4116-944f-527a810a4ba2"}},
        "manualSelector":false,"template":{"metadata":{"creationTimestamp":null,"labels":{
        "batch.kubernetes.io/controller-uid":"0c4382fa-c985-4116-944f-527a810a4ba2",
        "batch.kubernetes.io/job-name":"create-job","controller-uid":"0c4382fa-c985-4116-944f-527a810a4ba2",
        "job-name":"create-job"}},"spec":{"containers":[{"name":"create-job","image":"alpine",
        "command":["sh","-c","exit $TEST_ARG"],"env":[{"name":"TEST_ARG","value":"5"}],"resources":{},
        "terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File",
        "imagePullPolicy":"Always"}],"restartPolicy":"Never","terminationGracePeriodSeconds":30,
        "dnsPolicy":"ClusterFirst","securityContext":{},"schedulerName":"default-scheduler"}},
        "completionMode":"NonIndexed","suspend":false,"podReplacementPolicy":"TerminatingOrFailed"},"status":{}}"#;

    /// The spec of a pod a ReplicaSet created from that Deployment's template, without what the scheduler
    /// (`nodeName`) and the token volume added.
    const POD_SPEC_RESPONSE: &str = r#"{"containers":[{"name":"c","image":"alpine:3.6","resources":{},
        "terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File",
        "imagePullPolicy":"IfNotPresent"}],"restartPolicy":"Always","terminationGracePeriodSeconds":30,
        "dnsPolicy":"ClusterFirst","serviceAccountName":"default","serviceAccount":"default","securityContext":{},
        "schedulerName":"default-scheduler","tolerations":[{"key":"node.kubernetes.io/not-ready",
        "operator":"Exists","effect":"NoExecute","tolerationSeconds":300},{"key":"node.kubernetes.io/unreachable",
        "operator":"Exists","effect":"NoExecute","tolerationSeconds":300}],"priority":0,"enableServiceLinks":true,
        "preemptionPolicy":"PreemptLowerPriority"}"#;

    fn parse(text: &str) -> Value {
        serde_json::from_str(text).expect("a fixture is JSON")
    }

    #[test]
    fn minimal_deployment_defaults_match_the_recorded_create() {
        let mut deployment = parse(DEPLOYMENT_REQUEST);
        prepare_for_create(&def("apps", "Deployment"), &mut deployment);
        let recorded = parse(DEPLOYMENT_RESPONSE);
        assert_eq!(deployment["spec"], recorded["spec"]);
        assert_eq!(deployment["status"], recorded["status"]);
    }

    #[test]
    fn job_defaults_and_generated_selector_match_the_recorded_create() {
        let mut job = parse(JOB_REQUEST);
        job["metadata"]["uid"] = json!("0c4382fa-c985-4116-944f-527a810a4ba2");
        prepare_for_create(&def("batch", "Job"), &mut job);
        let recorded = parse(JOB_RESPONSE);
        assert_eq!(job["spec"], recorded["spec"]);
        assert_eq!(job["metadata"]["labels"], recorded["metadata"]["labels"]);
        assert_eq!(job["status"], recorded["status"]);
    }

    #[test]
    fn pod_defaults_match_a_recorded_pod_of_a_deployment() {
        let mut pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default", "uid": "0a50bac8-ac1b-419d-9a5e-d47859ecbbb8"},
            "spec": {"containers": [{"image": "alpine:3.6", "name": "c"}]}
        });
        prepare_for_create(&def("", "Pod"), &mut pod);
        assert_eq!(pod["spec"], parse(POD_SPEC_RESPONSE));
        assert_eq!(pod["status"], json!({"phase": "Pending", "qosClass": "BestEffort"}));
    }

    #[test]
    fn token_volume_matches_the_recorded_shape() {
        let mut pod = json!({"metadata": {"uid": "F7SNR-1234"}, "spec": {"containers": [{"name": "c", "image": "x"}]}});
        mount_service_account_token(&mut pod);
        assert_eq!(pod["spec"]["volumes"][0]["name"], "kube-api-access-f7snr");
        assert_eq!(pod["spec"]["volumes"][0]["projected"]["defaultMode"], 420);
        assert_eq!(
            pod["spec"]["containers"][0]["volumeMounts"][0],
            json!({"name": "kube-api-access-f7snr", "readOnly": true, "mountPath": SERVICE_ACCOUNT_MOUNT_PATH})
        );
        let before = pod.clone();
        mount_service_account_token(&mut pod);
        assert_eq!(pod, before, "a second call finds the mount and does nothing");
        let mut opted_out = json!({"spec": {"automountServiceAccountToken": false, "containers": [{"name": "c"}]}});
        mount_service_account_token(&mut opted_out);
        assert!(opted_out["spec"].get("volumes").is_none());
    }

    #[test]
    fn image_pull_policy_follows_the_tag() {
        for (image, policy) in [
            ("nginx", "Always"),
            ("nginx:latest", "Always"),
            ("registry:5000/team/nginx", "Always"),
            ("registry:5000/team/nginx:1.25", "IfNotPresent"),
            ("nginx@sha256:abcd", "IfNotPresent"),
            ("nginx:latest@sha256:abcd", "Always"),
            ("", "IfNotPresent"),
        ] {
            let mut container = Map::new();
            container.insert("image".into(), json!(image));
            default_container(&mut container);
            assert_eq!(container["imagePullPolicy"], policy, "image {image:?}");
        }
    }

    #[test]
    fn container_probe_env_and_volume_defaults() {
        let mut pod = json!({"spec": {
            "containers": [{
                "name": "c", "image": "i:1",
                "ports": [{"containerPort": 80}],
                "livenessProbe": {"httpGet": {"port": 80}},
                "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 5},
                "env": [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        {"name": "L", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}}],
                "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}
            }],
            "volumes": [{"name": "scratch"}, {"name": "cm", "configMap": {"name": "x"}},
                        {"name": "s", "secret": {"secretName": "x", "defaultMode": 256}},
                        {"name": "h", "hostPath": {"path": "/tmp"}}]
        }});
        apply_defaults(&def("", "Pod"), &mut pod);
        let container = &pod["spec"]["containers"][0];
        assert_eq!(container["ports"][0]["protocol"], "TCP");
        assert_eq!(
            container["livenessProbe"],
            json!({"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1, "periodSeconds": 10,
                   "successThreshold": 1, "failureThreshold": 3})
        );
        assert_eq!(container["readinessProbe"]["periodSeconds"], 5);
        assert_eq!(container["env"][0]["valueFrom"]["fieldRef"]["apiVersion"], "v1");
        assert_eq!(container["env"][1]["valueFrom"]["resourceFieldRef"]["divisor"], "0");
        assert_eq!(container["resources"]["requests"], json!({"cpu": "1", "memory": "1Gi"}));
        let volumes = &pod["spec"]["volumes"];
        assert_eq!(volumes[0]["emptyDir"], json!({}));
        assert_eq!(volumes[1]["configMap"]["defaultMode"], 420);
        assert_eq!(volumes[2]["secret"]["defaultMode"], 256);
        assert_eq!(volumes[3]["hostPath"]["type"], "");
        assert_eq!(pod["spec"]["enableServiceLinks"], true);
        assert_eq!(pod_qos_class(&pod["spec"]), "Guaranteed");
    }

    #[test]
    fn templates_get_spec_defaults_but_not_pod_only_ones() {
        let mut deployment = json!({"spec": {"template": {"spec": {"containers": [{
            "name": "c", "image": "i", "resources": {"limits": {"cpu": "1"}}
        }]}}}});
        apply_defaults(&def("apps", "Deployment"), &mut deployment);
        let spec = &deployment["spec"]["template"]["spec"];
        assert!(spec.get("enableServiceLinks").is_none());
        assert!(spec["containers"][0]["resources"].get("requests").is_none());
        assert_eq!(spec["restartPolicy"], "Always");
        assert_eq!(deployment["spec"]["template"]["metadata"], json!({"creationTimestamp": null}));
    }

    #[test]
    fn pod_admission_steps_run_on_create_only() {
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {
            "containers": [{"name": "c", "image": "i", "resources": {"requests": {"cpu": "100m"}}}],
            "tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists"}],
            "priorityClassName": "system-node-critical"
        }, "status": {"phase": "Running"}});
        let pod_def = def("", "Pod");
        let mut updated = pod.clone();
        apply_defaults(&pod_def, &mut updated);
        assert_eq!(updated["status"]["phase"], "Running");
        assert!(updated["spec"].get("serviceAccountName").is_none());
        prepare_for_create(&pod_def, &mut pod);
        assert_eq!(pod["status"], json!({"phase": "Pending", "qosClass": "Burstable"}));
        assert_eq!(pod["spec"]["serviceAccountName"], "default");
        assert_eq!(pod["spec"]["serviceAccount"], "default");
        assert!(pod["spec"].get("priority").is_none(), "a named class is Priority admission's to resolve");
        assert_eq!(pod["spec"]["preemptionPolicy"], "PreemptLowerPriority");
        let tolerations = pod["spec"]["tolerations"].as_array().unwrap();
        assert_eq!(tolerations.len(), 2, "the unreachable toleration exists already: {tolerations:?}");
        assert_eq!(tolerations[1]["key"], "node.kubernetes.io/not-ready");
        assert_eq!(tolerations[1]["tolerationSeconds"], 300);
    }

    #[test]
    fn qos_classes() {
        let spec = |resources: Value| json!({"containers": [{"name": "c", "resources": resources}]});
        assert_eq!(pod_qos_class(&spec(json!({}))), "BestEffort");
        assert_eq!(pod_qos_class(&spec(json!({"requests": {"cpu": "0"}}))), "BestEffort");
        assert_eq!(pod_qos_class(&spec(json!({"requests": {"memory": "1Gi"}}))), "Burstable");
        let equal = json!({"requests": {"cpu": "0.5", "memory": "1Gi"}, "limits": {"cpu": "500m", "memory": "1024Mi"}});
        assert_eq!(pod_qos_class(&spec(equal)), "Guaranteed");
        let unequal = json!({"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"cpu": "500m", "memory": "1Gi"}});
        assert_eq!(pod_qos_class(&spec(unequal)), "Burstable");
    }

    #[test]
    fn quantities_parse() {
        assert_eq!(parse_quantity("100m"), Some(0.1));
        assert_eq!(parse_quantity("1Ki"), Some(1024.0));
        assert_eq!(parse_quantity("2e3"), Some(2000.0));
        assert_eq!(parse_quantity("1.5G"), Some(1.5e9));
        assert_eq!(parse_quantity("1Ti"), Some(1024f64.powi(4)));
        assert_eq!(parse_quantity("12 parsecs"), None);
    }

    #[test]
    fn workload_defaults() {
        let mut stateful_set = json!({"spec": {"volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {}}]}});
        apply_defaults(&def("apps", "StatefulSet"), &mut stateful_set);
        let spec = &stateful_set["spec"];
        assert_eq!(spec["podManagementPolicy"], "OrderedReady");
        assert_eq!(spec["updateStrategy"], json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}));
        assert_eq!(
            spec["persistentVolumeClaimRetentionPolicy"],
            json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
        );
        assert_eq!(spec["replicas"], 1);
        assert_eq!(spec["revisionHistoryLimit"], 10);
        assert_eq!(spec["volumeClaimTemplates"][0]["kind"], "PersistentVolumeClaim");
        assert_eq!(spec["volumeClaimTemplates"][0]["spec"]["volumeMode"], "Filesystem");
        assert_eq!(spec["volumeClaimTemplates"][0]["status"], json!({"phase": "Pending"}));
        assert_eq!(stateful_set["status"], json!({"replicas": 0, "availableReplicas": 0}));

        let mut daemon_set = json!({"spec": {"template": {"spec": {"containers": []}}}});
        apply_defaults(&def("apps", "DaemonSet"), &mut daemon_set);
        assert_eq!(
            daemon_set["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
        );
        assert_eq!(daemon_set["spec"]["revisionHistoryLimit"], 10);

        let mut recreate = json!({"spec": {"strategy": {"type": "Recreate"}}});
        apply_defaults(&def("apps", "Deployment"), &mut recreate);
        assert_eq!(recreate["spec"]["strategy"], json!({"type": "Recreate"}));

        let mut cron_job =
            json!({"spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": {}}}}}});
        apply_defaults(&def("batch", "CronJob"), &mut cron_job);
        assert_eq!(cron_job["spec"]["concurrencyPolicy"], "Allow");
        assert_eq!(cron_job["spec"]["suspend"], false);
        assert_eq!(cron_job["spec"]["successfulJobsHistoryLimit"], 3);
        assert_eq!(cron_job["spec"]["failedJobsHistoryLimit"], 1);
        assert_eq!(cron_job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["dnsPolicy"], "ClusterFirst");
        assert!(cron_job["spec"]["jobTemplate"]["spec"].get("backoffLimit").is_none());

        let mut rc = json!({"spec": {"template": {"metadata": {"labels": {"app": "a"}}, "spec": {}}}});
        apply_defaults(&def("", "ReplicationController"), &mut rc);
        assert_eq!(rc["spec"]["selector"], json!({"app": "a"}));
        assert_eq!(rc["metadata"]["labels"], json!({"app": "a"}));
        assert_eq!(rc["spec"]["replicas"], 1);
    }

    #[test]
    fn job_parallelism_and_completions() {
        let mut job = json!({"spec": {"parallelism": 3, "template": {"spec": {}}}});
        apply_defaults(&def("batch", "Job"), &mut job);
        assert_eq!(job["spec"]["parallelism"], 3);
        assert!(job["spec"].get("completions").is_none(), "completions stay unset when parallelism is set");
        let mut manual = json!({"metadata": {"uid": "u"}, "spec": {"manualSelector": true, "template": {}}});
        prepare_for_create(&def("batch", "Job"), &mut manual);
        assert!(manual["spec"].get("selector").is_none());
    }

    #[test]
    fn service_defaults() {
        let mut service = json!({"spec": {"ports": [{"port": 80}, {"port": 443, "targetPort": "https"}],
                                          "selector": {"app": "a"}}});
        apply_defaults(&def("", "Service"), &mut service);
        let spec = &service["spec"];
        assert_eq!(spec["type"], "ClusterIP");
        assert_eq!(spec["sessionAffinity"], "None");
        assert_eq!(spec["ports"][0], json!({"port": 80, "protocol": "TCP", "targetPort": 80}));
        assert_eq!(spec["ports"][1]["targetPort"], "https");
        assert_eq!(spec["ipFamilyPolicy"], "SingleStack");
        assert_eq!(spec["ipFamilies"], json!(["IPv4"]));
        assert_eq!(spec["internalTrafficPolicy"], "Cluster");
        assert!(spec.get("externalTrafficPolicy").is_none());
        assert_eq!(service["status"], json!({"loadBalancer": {}}));

        let mut node_port = json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 80}], "clusterIP": "10.0.0.9"}});
        apply_defaults(&def("", "Service"), &mut node_port);
        assert_eq!(node_port["spec"]["externalTrafficPolicy"], "Cluster");
        assert_eq!(node_port["spec"]["allocateLoadBalancerNodePorts"], true);
        assert_eq!(node_port["spec"]["clusterIPs"], json!(["10.0.0.9"]));

        let mut external = json!({"spec": {"type": "ExternalName", "externalName": "example.com"}});
        apply_defaults(&def("", "Service"), &mut external);
        assert!(external["spec"].get("ipFamilies").is_none());
        assert!(external["spec"].get("internalTrafficPolicy").is_none());
    }

    #[test]
    fn service_update_keeps_allocations() {
        let old = json!({"spec": {"type": "NodePort", "clusterIP": "10.0.0.5", "clusterIPs": ["10.0.0.5"],
                                  "ports": [{"name": "web", "port": 80, "nodePort": 30080}]}});
        let mut new = json!({"spec": {"type": "NodePort", "ports": [{"name": "web", "port": 8080}]}});
        carry_over_service_allocations(&mut new, &old);
        assert_eq!(new["spec"]["clusterIP"], "10.0.0.5");
        assert_eq!(new["spec"]["clusterIPs"], json!(["10.0.0.5"]));
        assert_eq!(new["spec"]["ports"][0]["nodePort"], 30080);
    }

    #[test]
    fn namespace_secret_and_rbac_defaults() {
        let mut namespace = json!({"metadata": {"name": "team-a"}});
        prepare_for_create(&def("", "Namespace"), &mut namespace);
        assert_eq!(namespace["metadata"]["labels"]["kubernetes.io/metadata.name"], "team-a");
        assert_eq!(namespace["spec"]["finalizers"], json!(["kubernetes"]));
        assert_eq!(namespace["status"], json!({"phase": "Active"}));
        // An update must not bring back the finalizer the namespace controller removed.
        let mut finalized =
            json!({"metadata": {"name": "team-a"}, "spec": {"finalizers": []}, "status": {"phase": "Terminating"}});
        apply_defaults(&def("", "Namespace"), &mut finalized);
        assert_eq!(finalized["spec"]["finalizers"], json!([]));
        assert_eq!(finalized["status"]["phase"], "Terminating");

        let mut secret = json!({"data": {"a": "eA=="}, "stringData": {"b": "hello"}});
        apply_defaults(&def("", "Secret"), &mut secret);
        assert_eq!(secret, json!({"type": "Opaque", "data": {"a": "eA==", "b": "aGVsbG8="}}));

        let mut binding = json!({"roleRef": {"kind": "ClusterRole", "name": "view"},
                                 "subjects": [{"kind": "User", "name": "u"}, {"kind": "ServiceAccount", "name": "s"}]});
        apply_defaults(&def("rbac.authorization.k8s.io", "RoleBinding"), &mut binding);
        assert_eq!(binding["roleRef"]["apiGroup"], "rbac.authorization.k8s.io");
        assert_eq!(binding["subjects"][0]["apiGroup"], "rbac.authorization.k8s.io");
        assert!(binding["subjects"][1].get("apiGroup").is_none());

        let mut claim = json!({"spec": {}});
        apply_defaults(&def("", "PersistentVolumeClaim"), &mut claim);
        assert_eq!(claim, json!({"spec": {"volumeMode": "Filesystem"}, "status": {"phase": "Pending"}}));
    }

    #[test]
    fn custom_resources_and_other_kinds_are_untouched() {
        let mut custom = def("apps", "Deployment");
        custom.schema = SchemaSource::CustomResource("widgets.example.com".into());
        let mut object = json!({"spec": {}});
        apply_defaults(&custom, &mut object);
        prepare_for_create(&custom, &mut object);
        assert_eq!(object, json!({"spec": {}}));
        let mut config_map = json!({"data": {"a": "b"}});
        apply_defaults(&def("", "ConfigMap"), &mut config_map);
        assert_eq!(config_map, json!({"data": {"a": "b"}}));
    }
}
