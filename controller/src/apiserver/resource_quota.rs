//! ResourceQuota: what an object counts against a quota (object counts and the compute resources of pods), which
//! pods a scoped quota selects (Terminating, BestEffort, PriorityClass, … and their `scopeSelector`), the usage of a
//! namespace, and the admission check on create with upstream's 403 messages. The quota controller
//! (`controllers/resource_quota.rs`) writes `status.hard` and `status.used` from the same arithmetic.
//!
//! Admission counts the namespace's usage from the stored objects at the time of the request, and from the
//! quota's `status.used` (whichever is larger), so a quota is enforced even before the controller has counted.
//! It then reserves the create's usage in `status.used` with a write conditional on the quota's revision, which
//! serializes creates racing for the last unit, as upstream's admission does.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::apiserver::defaults::parse_quantity;
use crate::apiserver::error::{ApiError, ApiResult, Details};
use crate::apiserver::registry::ResourceDef;
use crate::apiserver::storage::{ObjectStore, Written};
use crate::apiserver::ApiServer;

/// Quota names that count objects of a core resource without the `count/` prefix (upstream's legacy names).
const LEGACY_COUNTS: [&str; 7] =
    ["pods", "services", "replicationcontrollers", "resourcequotas", "secrets", "configmaps", "persistentvolumeclaims"];

/// The `count/<resource>[.<group>]` name of a resource.
pub fn count_name(group: &str, plural: &str) -> String {
    if group.is_empty() {
        format!("count/{plural}")
    } else {
        format!("count/{plural}.{group}")
    }
}

/// The (group, plural) whose objects a quota resource name counts, e.g. `requests.cpu` → pods.
pub fn counted_resource(name: &str) -> Option<(String, String)> {
    if let Some(rest) = name.strip_prefix("count/") {
        return Some(match rest.split_once('.') {
            Some((plural, group)) => (group.to_string(), plural.to_string()),
            None => (String::new(), rest.to_string()),
        });
    }
    if LEGACY_COUNTS.contains(&name) {
        return Some((String::new(), name.to_string()));
    }
    match name {
        "cpu" | "memory" | "ephemeral-storage" => Some((String::new(), "pods".into())),
        _ if name.starts_with("requests.") && name != "requests.storage" => Some((String::new(), "pods".into())),
        _ if name.starts_with("limits.") => Some((String::new(), "pods".into())),
        "requests.storage" => Some((String::new(), "persistentvolumeclaims".into())),
        "services.loadbalancers" | "services.nodeports" => Some((String::new(), "services".into())),
        _ => None,
    }
}

/// What one object of `group`/`plural` counts, by quota resource name (every name it may count under).
pub fn usage_of(group: &str, plural: &str, object: &Value) -> BTreeMap<String, f64> {
    let mut usage = BTreeMap::new();
    if group.is_empty() && plural == "pods" && is_terminal_pod(object) {
        return usage;
    }
    usage.insert(count_name(group, plural), 1.0);
    if group.is_empty() && LEGACY_COUNTS.contains(&plural) {
        usage.insert(plural.to_string(), 1.0);
    }
    match (group, plural) {
        ("", "pods") => {
            for (field, prefix) in [("requests", "requests."), ("limits", "limits.")] {
                for (resource, value) in pod_resources(object, field) {
                    if field == "requests" && matches!(resource.as_str(), "cpu" | "memory" | "ephemeral-storage") {
                        usage.insert(resource.clone(), value);
                    }
                    usage.insert(format!("{prefix}{resource}"), value);
                }
            }
        }
        ("", "services") => {
            let spec = object.get("spec");
            let kind = spec.and_then(|spec| spec.get("type")).and_then(Value::as_str).unwrap_or("ClusterIP");
            if kind == "LoadBalancer" {
                usage.insert("services.loadbalancers".into(), 1.0);
            }
            let node_ports = spec
                .and_then(|spec| spec.get("ports"))
                .and_then(Value::as_array)
                .map(|ports| ports.iter().filter(|port| port.get("nodePort").is_some_and(|p| !p.is_null())).count())
                .unwrap_or(0);
            if kind == "NodePort" || kind == "LoadBalancer" {
                let ports = spec.and_then(|spec| spec.get("ports")).and_then(Value::as_array).map_or(0, Vec::len);
                usage.insert("services.nodeports".into(), node_ports.max(ports) as f64);
            }
        }
        ("", "persistentvolumeclaims") => {
            let storage = object
                .pointer("/spec/resources/requests/storage")
                .and_then(quantity_text)
                .and_then(|text| parse_quantity(&text));
            if let Some(storage) = storage {
                usage.insert("requests.storage".into(), storage);
            }
        }
        _ => {}
    }
    usage
}

fn is_terminal_pod(pod: &Value) -> bool {
    matches!(pod.pointer("/status/phase").and_then(Value::as_str), Some("Succeeded" | "Failed"))
}

/// A pod's requests or limits as upstream sums them for quota: containers added up, at least any one init
/// container's.
fn pod_resources(pod: &Value, field: &str) -> BTreeMap<String, f64> {
    let mut sums: BTreeMap<String, f64> = BTreeMap::new();
    let list = |key: &str| pod.pointer(&format!("/spec/{key}")).and_then(Value::as_array).cloned().unwrap_or_default();
    for container in list("containers") {
        for (resource, value) in resource_list(container.pointer(&format!("/resources/{field}"))) {
            *sums.entry(resource).or_default() += value;
        }
    }
    for container in list("initContainers") {
        for (resource, value) in resource_list(container.pointer(&format!("/resources/{field}"))) {
            let sum = sums.entry(resource).or_default();
            *sum = sum.max(value);
        }
    }
    sums
}

fn resource_list(list: Option<&Value>) -> Vec<(String, f64)> {
    list.and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(name, value)| Some((name.clone(), parse_quantity(&quantity_text(value)?)?)))
        .collect()
}

fn quantity_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// A pod must name the compute resources a quota limits (upstream: "must specify").
fn missing_compute_resources(group: &str, plural: &str, object: &Value, hard: &BTreeMap<String, f64>) -> Vec<String> {
    if !(group.is_empty() && plural == "pods") {
        return Vec::new();
    }
    let mut missing = Vec::new();
    for name in hard.keys() {
        let (field, resource) = match name.split_once('.') {
            Some(("requests", resource)) => ("requests", resource),
            Some(("limits", resource)) => ("limits", resource),
            _ if matches!(name.as_str(), "cpu" | "memory") => ("requests", name.as_str()),
            _ => continue,
        };
        if !matches!(resource, "cpu" | "memory") {
            continue;
        }
        let every_container_names_it = ["containers"].iter().all(|key| {
            object.pointer(&format!("/spec/{key}")).and_then(Value::as_array).into_iter().flatten().all(|container| {
                container.pointer(&format!("/resources/{field}/{resource}")).is_some_and(|value| !value.is_null())
            })
        });
        if !every_container_names_it {
            missing.push(name.clone());
        }
    }
    missing
}

/// Whether a quota's scopes select `object`: every scope in `spec.scopes` and every expression of
/// `spec.scopeSelector` must match, as upstream's quota evaluators decide. Scopes describe pods, so a scoped quota
/// counts no other kind; an unscoped one selects everything.
pub fn in_scope(quota: &Value, group: &str, plural: &str, object: &Value) -> bool {
    let scopes = quota.pointer("/spec/scopes").and_then(Value::as_array).into_iter().flatten();
    let expressions = quota.pointer("/spec/scopeSelector/matchExpressions").and_then(Value::as_array);
    let mut requirements: Vec<ScopeRequirement> =
        scopes.filter_map(Value::as_str).map(ScopeRequirement::exists).collect();
    requirements.extend(expressions.into_iter().flatten().map(ScopeRequirement::of_expression));
    if requirements.is_empty() {
        return true;
    }
    group.is_empty() && plural == "pods" && requirements.iter().all(|requirement| requirement.matches(object))
}

/// One scope a quota selects by: a `spec.scopes` entry (operator `Exists`) or a `scopeSelector` expression.
struct ScopeRequirement {
    scope: String,
    operator: String,
    values: Vec<String>,
}

impl ScopeRequirement {
    fn exists(scope: &str) -> ScopeRequirement {
        ScopeRequirement { scope: scope.to_string(), operator: "Exists".into(), values: Vec::new() }
    }

    fn of_expression(expression: &Value) -> ScopeRequirement {
        let text = |key: &str| expression.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
        let values = expression.get("values").and_then(Value::as_array).into_iter().flatten();
        ScopeRequirement {
            scope: text("scopeName"),
            operator: text("operator"),
            values: values.filter_map(Value::as_str).map(str::to_string).collect(),
        }
    }

    fn matches(&self, pod: &Value) -> bool {
        let spec = pod.get("spec");
        if self.scope == "PriorityClass" {
            // Upstream matches the expression as a label selector against {PriorityClass: <the pod's class>}, a
            // label that is always present (empty for a pod without a class).
            let class = spec.and_then(|spec| spec.get("priorityClassName")).and_then(Value::as_str).unwrap_or("");
            return match self.operator.as_str() {
                "In" => self.values.iter().any(|value| value == class),
                "NotIn" => !self.values.iter().any(|value| value == class),
                "Exists" => true,
                _ => false,
            };
        }
        let selected = match self.scope.as_str() {
            "Terminating" => is_terminating(pod),
            "NotTerminating" => !is_terminating(pod),
            "BestEffort" => is_best_effort(pod),
            "NotBestEffort" => !is_best_effort(pod),
            "CrossNamespacePodAffinity" => uses_cross_namespace_affinity(pod),
            _ => false,
        };
        match self.operator.as_str() {
            "DoesNotExist" => !selected,
            _ => selected,
        }
    }
}

/// A pod with a deadline (`activeDeadlineSeconds`) ends by itself: upstream's Terminating scope.
fn is_terminating(pod: &Value) -> bool {
    pod.pointer("/spec/activeDeadlineSeconds").and_then(Value::as_i64).is_some_and(|seconds| seconds >= 0)
}

/// QoS class BestEffort: no container or init container requests or limits cpu or memory.
fn is_best_effort(pod: &Value) -> bool {
    ["containers", "initContainers"].iter().all(|key| {
        pod.pointer(&format!("/spec/{key}")).and_then(Value::as_array).into_iter().flatten().all(|container| {
            ["requests", "limits"].iter().all(|field| {
                let list = container.pointer(&format!("/resources/{field}"));
                !["cpu", "memory"].iter().any(|resource| list.and_then(|list| list.get(*resource)).is_some())
            })
        })
    })
}

/// A pod (anti-)affinity term that looks beyond the pod's namespace (`namespaces` or a `namespaceSelector`).
fn uses_cross_namespace_affinity(pod: &Value) -> bool {
    let mut terms = Vec::new();
    for kind in ["podAffinity", "podAntiAffinity"] {
        let Some(affinity) = pod.pointer(&format!("/spec/affinity/{kind}")) else { continue };
        let required = affinity.get("requiredDuringSchedulingIgnoredDuringExecution").and_then(Value::as_array);
        terms.extend(required.into_iter().flatten());
        let preferred = affinity.get("preferredDuringSchedulingIgnoredDuringExecution").and_then(Value::as_array);
        terms.extend(preferred.into_iter().flatten().filter_map(|weighted| weighted.get("podAffinityTerm")));
    }
    terms.iter().any(|term| {
        term.get("namespaces").and_then(Value::as_array).is_some_and(|names| !names.is_empty())
            || term.get("namespaceSelector").is_some_and(|selector| !selector.is_null())
    })
}

/// The quota's `spec.hard` as numbers.
pub fn hard_of(quota: &Value) -> BTreeMap<String, f64> {
    resource_list(quota.pointer("/spec/hard")).into_iter().collect()
}

/// Sums the usage of `objects` (all of one group and resource) for the names in `names`.
pub fn total_usage<'a>(
    group: &str,
    plural: &str,
    objects: impl IntoIterator<Item = &'a Value>,
    names: &[String],
) -> BTreeMap<String, f64> {
    let mut total: BTreeMap<String, f64> = names.iter().map(|name| (name.clone(), 0.0)).collect();
    for object in objects {
        for (name, value) in usage_of(group, plural, object) {
            if let Some(sum) = total.get_mut(&name) {
                *sum += value;
            }
        }
    }
    total
}

/// A quantity as upstream prints the common cases: whole numbers, milli-units, binary sizes.
pub fn format_quantity(value: f64) -> String {
    if value.fract() == 0.0 {
        let whole = value as i64;
        for (suffix, size) in [("Ti", 1i64 << 40), ("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)] {
            if whole >= size && whole % size == 0 {
                return format!("{}{suffix}", whole / size);
            }
        }
        return whole.to_string();
    }
    format!("{}m", (value * 1000.0).round() as i64)
}

/// `a=1,b=2`, sorted by name, as upstream's `prettyPrint`.
fn pretty(list: &BTreeMap<String, f64>) -> String {
    list.iter().map(|(name, value)| format!("{name}={}", format_quantity(*value))).collect::<Vec<_>>().join(",")
}

/// Checks one create against one quota, given the namespace's current objects of the same resource and what the
/// quota's `status.used` says (`reserved`: the larger of the two counts, so that a create another request has
/// reserved but not yet stored counts too). `Ok` is the usage after this create for each name it counts under
/// (empty when the quota does not count it); `Err` is the reason, without the `<resource> "<name>" is forbidden: `
/// prefix.
pub fn check_create(
    quota: &Value,
    group: &str,
    plural: &str,
    object: &Value,
    existing: &[&Value],
    reserved: &BTreeMap<String, f64>,
) -> Result<BTreeMap<String, f64>, String> {
    let quota_name = quota.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    if !in_scope(quota, group, plural, object) {
        return Ok(BTreeMap::new());
    }
    let hard = hard_of(quota);
    let requested: BTreeMap<String, f64> =
        usage_of(group, plural, object).into_iter().filter(|(name, _)| hard.contains_key(name)).collect();
    if requested.is_empty() {
        return Ok(BTreeMap::new());
    }
    let missing = missing_compute_resources(group, plural, object, &hard);
    if !missing.is_empty() {
        return Err(format!("failed quota: {quota_name}: must specify {}", missing.join(",")));
    }
    let names: Vec<String> = requested.keys().cloned().collect();
    let counted = existing.iter().copied().filter(|other| in_scope(quota, group, plural, other));
    let used = total_usage(group, plural, counted, &names);
    let mut failed_requested = BTreeMap::new();
    let mut failed_used = BTreeMap::new();
    let mut failed_hard = BTreeMap::new();
    let mut after = BTreeMap::new();
    for (name, amount) in &requested {
        let limit = hard[name];
        let counted = used.get(name).copied().unwrap_or(0.0);
        let current = counted.max(reserved.get(name).copied().unwrap_or(0.0));
        after.insert(name.clone(), current + amount);
        if current + amount > limit {
            failed_requested.insert(name.clone(), *amount);
            failed_used.insert(name.clone(), current);
            failed_hard.insert(name.clone(), limit);
        }
    }
    if failed_requested.is_empty() {
        return Ok(after);
    }
    Err(format!(
        "exceeded quota: {quota_name}, requested: {}, used: {}, limited: {}",
        pretty(&failed_requested),
        pretty(&failed_used),
        pretty(&failed_hard)
    ))
}

/// How often a create retries reserving its usage when another write to the quota came first.
const RESERVE_ATTEMPTS: usize = 10;

impl ApiServer {
    /// Refuses a create that would exceed a ResourceQuota of its namespace (upstream's 403), and otherwise reserves
    /// what it counts: the quota's `status.used` is written with this create added, conditional on the revision
    /// read. Two creates racing for the last unit read the same quota and only one write wins; the other reads
    /// again and sees the first one's reservation, as upstream's quota admission serializes them. (The quota
    /// controller recounts from the stored objects soon after, which also drops reservations of creates that
    /// failed later.) A dry run reserves nothing.
    pub(crate) async fn admit_quota(
        &self,
        def: &ResourceDef,
        namespace: Option<&str>,
        name: &str,
        object: &Value,
        dry_run: bool,
    ) -> ApiResult<()> {
        let Some(namespace) = namespace else { return Ok(()) };
        let registry = self.registry();
        let quotas_def = registry.get("", "v1", "resourcequotas").cloned().expect("ResourceQuotas are built in");
        let forbidden = |reason: String| {
            ApiError::forbidden(
                format!("{} {name:?} is forbidden: {reason}", def.group_resource()),
                Details {
                    name: name.to_string(),
                    group: def.group.clone(),
                    kind: def.plural.clone(),
                    ..Details::default()
                },
            )
        };
        for _attempt in 0..RESERVE_ATTEMPTS {
            let quotas = self.store.list(&ObjectStore::prefix(&quotas_def, Some(namespace)), None, 0, 0).await?.items;
            let mut existing = None;
            let mut reservations = Vec::new();
            for quota in &quotas {
                let hard = hard_of(&quota.object);
                if !usage_of(&def.group, &def.plural, object).keys().any(|name| hard.contains_key(name)) {
                    continue;
                }
                if existing.is_none() {
                    let prefix = ObjectStore::prefix(def, Some(namespace));
                    existing = Some(self.store.list(&prefix, None, 0, 0).await?.items);
                }
                let objects: Vec<&Value> = existing.iter().flatten().map(|stored| &stored.object).collect();
                let reserved: BTreeMap<String, f64> =
                    resource_list(quota.object.pointer("/status/used")).into_iter().collect();
                let after = check_create(&quota.object, &def.group, &def.plural, object, &objects, &reserved)
                    .map_err(forbidden)?;
                if !after.is_empty() {
                    let mut updated = quota.object.clone();
                    for (resource, amount) in after {
                        updated["status"]["used"][resource] = Value::String(format_quantity(amount));
                    }
                    reservations.push((quota.key.clone(), quota.revision, updated));
                }
            }
            if dry_run {
                return Ok(());
            }
            let mut stale = false;
            for (key, revision, updated) in reservations {
                if self.store.update(&key, revision, &updated).await? == Written::Stale {
                    stale = true;
                    break;
                }
            }
            if !stale {
                return Ok(());
            }
        }
        Err(ApiError::conflict("resourcequotas", "", "resourcequotas", namespace))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn quota(hard: Value) -> Value {
        json!({"metadata": {"name": "compute"}, "spec": {"hard": hard}})
    }

    fn pod(requests: Value, limits: Value) -> Value {
        json!({"spec": {"containers": [{"name": "a", "resources": {"requests": requests, "limits": limits}}]}})
    }

    #[test]
    fn names_map_to_the_resources_they_count() {
        assert_eq!(counted_resource("pods"), Some((String::new(), "pods".into())));
        assert_eq!(counted_resource("count/deployments.apps"), Some(("apps".into(), "deployments".into())));
        assert_eq!(counted_resource("count/configmaps"), Some((String::new(), "configmaps".into())));
        assert_eq!(counted_resource("requests.cpu"), Some((String::new(), "pods".into())));
        assert_eq!(counted_resource("requests.storage"), Some((String::new(), "persistentvolumeclaims".into())));
        assert_eq!(counted_resource("services.nodeports"), Some((String::new(), "services".into())));
        assert_eq!(counted_resource("something.else"), None);
    }

    #[test]
    fn pods_count_their_compute_resources() {
        let usage = usage_of("", "pods", &pod(json!({"cpu": "250m", "memory": "64Mi"}), json!({"cpu": "1"})));
        assert_eq!(usage["pods"], 1.0);
        assert_eq!(usage["count/pods"], 1.0);
        assert_eq!(usage["requests.cpu"], 0.25);
        assert_eq!(usage["cpu"], 0.25);
        assert_eq!(usage["requests.memory"], 64.0 * 1024.0 * 1024.0);
        assert_eq!(usage["limits.cpu"], 1.0);
        let mut finished = pod(json!({}), json!({}));
        finished["status"] = json!({"phase": "Succeeded"});
        assert!(usage_of("", "pods", &finished).is_empty(), "finished pods count for nothing");
        let deployment = usage_of("apps", "deployments", &json!({}));
        assert_eq!(deployment.into_iter().collect::<Vec<_>>(), vec![("count/deployments.apps".to_string(), 1.0)]);
    }

    #[test]
    fn exceeding_a_quota_says_what_by_upstreams_words() {
        let two_pods = quota(json!({"pods": "2"}));
        let existing = [pod(json!({}), json!({})), pod(json!({}), json!({}))];
        let refs: Vec<&Value> = existing.iter().collect();
        assert_eq!(
            check_create(&two_pods, "", "pods", &pod(json!({}), json!({})), &refs, &BTreeMap::new()).unwrap_err(),
            "exceeded quota: compute, requested: pods=1, used: pods=2, limited: pods=2"
        );
        assert!(check_create(&two_pods, "", "pods", &pod(json!({}), json!({})), &refs[..1], &BTreeMap::new()).is_ok());
        let cpu = quota(json!({"requests.cpu": "1", "requests.memory": "1Gi"}));
        let running = [pod(json!({"cpu": "750m", "memory": "512Mi"}), json!({}))];
        let refs: Vec<&Value> = running.iter().collect();
        assert_eq!(
            check_create(
                &cpu,
                "",
                "pods",
                &pod(json!({"cpu": "500m", "memory": "256Mi"}), json!({})),
                &refs,
                &BTreeMap::new()
            )
            .unwrap_err(),
            "exceeded quota: compute, requested: requests.cpu=500m, used: requests.cpu=750m, limited: requests.cpu=1"
        );
        assert_eq!(
            check_create(&cpu, "", "pods", &pod(json!({"cpu": "100m"}), json!({})), &refs, &BTreeMap::new())
                .unwrap_err(),
            "failed quota: compute: must specify requests.memory"
        );
        // Quotas on other resources do not concern the object.
        assert!(check_create(
            &quota(json!({"count/secrets": "0"})),
            "",
            "configmaps",
            &json!({}),
            &[],
            &BTreeMap::new()
        )
        .is_ok());
        assert_eq!(
            check_create(&quota(json!({"configmaps": "0"})), "", "configmaps", &json!({}), &[], &BTreeMap::new())
                .unwrap_err(),
            "exceeded quota: compute, requested: configmaps=1, used: configmaps=0, limited: configmaps=0"
        );
    }

    #[test]
    fn scopes_select_pods_by_deadline_qos_and_priority_class() {
        let scoped = |spec: Value| json!({"metadata": {"name": "q"}, "spec": spec});
        let best_effort = json!({"spec": {"containers": [{"name": "c"}]}});
        let burstable = pod(json!({"cpu": "100m"}), json!({}));
        let mut with_deadline = best_effort.clone();
        with_deadline["spec"]["activeDeadlineSeconds"] = json!(30);
        let mut critical = burstable.clone();
        critical["spec"]["priorityClassName"] = json!("critical");

        let terminating = scoped(json!({"scopes": ["Terminating"]}));
        assert!(in_scope(&terminating, "", "pods", &with_deadline));
        assert!(!in_scope(&terminating, "", "pods", &best_effort));
        let not_terminating = scoped(json!({"scopes": ["NotTerminating"]}));
        assert!(in_scope(&not_terminating, "", "pods", &best_effort));

        let best_effort_quota = scoped(json!({"scopes": ["BestEffort"]}));
        assert!(in_scope(&best_effort_quota, "", "pods", &best_effort));
        assert!(!in_scope(&best_effort_quota, "", "pods", &burstable));
        let both = scoped(json!({"scopes": ["NotBestEffort", "NotTerminating"]}));
        assert!(in_scope(&both, "", "pods", &burstable));
        assert!(!in_scope(&both, "", "pods", &with_deadline));

        let by_class = |operator: &str, values: Value| {
            scoped(json!({"scopeSelector": {"matchExpressions": [
                {"scopeName": "PriorityClass", "operator": operator, "values": values}]}}))
        };
        assert!(in_scope(&by_class("In", json!(["critical"])), "", "pods", &critical));
        assert!(!in_scope(&by_class("In", json!(["critical"])), "", "pods", &burstable));
        assert!(in_scope(&by_class("NotIn", json!(["critical"])), "", "pods", &burstable));
        assert!(in_scope(&by_class("Exists", json!([])), "", "pods", &burstable));

        assert!(!in_scope(&terminating, "", "services", &json!({})), "scopes describe pods only");
        assert!(in_scope(&quota(json!({"services": "1"})), "", "services", &json!({})));
    }

    #[test]
    fn a_scoped_quota_counts_only_the_pods_it_selects() {
        let mut best_effort_quota = quota(json!({"pods": "1"}));
        best_effort_quota["spec"]["scopes"] = json!(["BestEffort"]);
        let best_effort = json!({"metadata": {"name": "a"}, "spec": {"containers": [{"name": "c"}]}});
        let burstable = pod(json!({"cpu": "100m"}), json!({}));
        assert!(check_create(&best_effort_quota, "", "pods", &best_effort, &[&burstable], &BTreeMap::new()).is_ok());
        assert!(check_create(&best_effort_quota, "", "pods", &burstable, &[&best_effort], &BTreeMap::new()).is_ok());
        let refused =
            check_create(&best_effort_quota, "", "pods", &best_effort, &[&best_effort], &BTreeMap::new()).unwrap_err();
        assert!(refused.starts_with("exceeded quota: "), "{refused}");
    }

    #[test]
    fn quantities_print_like_upstream_for_common_values() {
        assert_eq!(format_quantity(2.0), "2");
        assert_eq!(format_quantity(0.5), "500m");
        assert_eq!(format_quantity(1024.0 * 1024.0 * 1024.0), "1Gi");
        assert_eq!(format_quantity(1.5 * 1024.0 * 1024.0 * 1024.0), "1536Mi");
        assert_eq!(format_quantity(0.0), "0");
    }
}
