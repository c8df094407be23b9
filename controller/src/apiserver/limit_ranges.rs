//! LimitRange admission for pods, as upstream's LimitRanger plugin: on create, containers without requests or
//! limits get the namespace's defaults (recorded in the `kubernetes.io/limit-ranger` annotation), then per-container
//! and per-pod minimums, maximums and limit/request ratios are enforced with upstream's messages. Also the
//! defaults of a LimitRange object itself (`SetDefaults_LimitRangeItem`).

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::apiserver::defaults::parse_quantity;
use crate::apiserver::error::{ApiError, ApiResult, Details};
use crate::apiserver::registry::ResourceDef;
use crate::apiserver::storage::ObjectStore;
use crate::apiserver::ApiServer;

/// The annotation that says which defaults were applied.
pub const ANNOTATION: &str = "kubernetes.io/limit-ranger";

/// Upstream's defaults of a LimitRange's Container items: the default limit from the max, the default request from
/// the default limit, else from the min.
pub fn default_limit_range(object: &mut Value) {
    let Some(limits) = object.pointer_mut("/spec/limits").and_then(Value::as_array_mut) else { return };
    for item in limits.iter_mut().filter_map(Value::as_object_mut) {
        if item.get("type").and_then(Value::as_str) != Some("Container") {
            continue;
        }
        let max = item.get("max").and_then(Value::as_object).cloned().unwrap_or_default();
        let min = item.get("min").and_then(Value::as_object).cloned().unwrap_or_default();
        let default = fill(item, "default", &max);
        fill(item, "defaultRequest", &default);
        fill(item, "defaultRequest", &min);
    }
}

/// Sets every key of `from` that `item[field]` lacks; returns the result.
fn fill(item: &mut Map<String, Value>, field: &str, from: &Map<String, Value>) -> Map<String, Value> {
    let target = item.entry(field).or_insert_with(|| json!({}));
    if !target.is_object() {
        *target = json!({});
    }
    let map = target.as_object_mut().expect("made an object above");
    for (key, value) in from {
        map.entry(key.clone()).or_insert_with(|| value.clone());
    }
    if map.is_empty() {
        item.remove(field);
        return Map::new();
    }
    map.clone()
}

/// Applies the Container defaults of `ranges` (LimitRange objects, in order) to a pod's containers and init
/// containers, recording what was set in the annotation.
pub fn apply_pod_defaults(pod: &mut Value, ranges: &[Value]) {
    let mut notes = Vec::new();
    for range in ranges {
        let mut range = range.clone();
        default_limit_range(&mut range);
        for item in items_of(&range, "Container") {
            let default_limits = item.get("default").and_then(Value::as_object).cloned().unwrap_or_default();
            let default_requests = item.get("defaultRequest").and_then(Value::as_object).cloned().unwrap_or_default();
            for (list, kind) in [("containers", "container"), ("initContainers", "init container")] {
                let Some(containers) = pod.pointer_mut(&format!("/spec/{list}")).and_then(Value::as_array_mut) else {
                    continue;
                };
                for container in containers.iter_mut() {
                    let name = container["name"].as_str().unwrap_or("").to_string();
                    let set_requests = merge(container, "requests", &default_requests);
                    let set_limits = merge(container, "limits", &default_limits);
                    if !set_requests.is_empty() {
                        notes.push(format!("{} request for {kind} {name}", set_requests.join(", ")));
                    }
                    if !set_limits.is_empty() {
                        notes.push(format!("{} limit for {kind} {name}", set_limits.join(", ")));
                    }
                }
            }
        }
    }
    if notes.is_empty() {
        return;
    }
    let Some(metadata) = pod.get_mut("metadata").and_then(Value::as_object_mut) else { return };
    let annotations = metadata.entry("annotations").or_insert_with(|| json!({}));
    if let Some(annotations) = annotations.as_object_mut() {
        annotations.insert(ANNOTATION.into(), json!(format!("LimitRanger plugin set: {}", notes.join("; "))));
    }
}

/// Sets the defaults a container's `resources.<field>` lacks; returns the resource names set, sorted.
fn merge(container: &mut Value, field: &str, defaults: &Map<String, Value>) -> Vec<String> {
    if defaults.is_empty() {
        return Vec::new();
    }
    let Some(container) = container.as_object_mut() else { return Vec::new() };
    let resources = container.entry("resources").or_insert_with(|| json!({}));
    let Some(resources) = resources.as_object_mut() else { return Vec::new() };
    let list = resources.entry(field).or_insert_with(|| json!({}));
    let Some(list) = list.as_object_mut() else { return Vec::new() };
    let mut set = Vec::new();
    for (key, value) in defaults {
        if !list.contains_key(key) {
            list.insert(key.clone(), value.clone());
            set.push(key.clone());
        }
    }
    set.sort();
    set
}

/// Upstream's messages for every constraint of `ranges` the pod breaks (empty: admitted).
pub fn pod_violations(pod: &Value, ranges: &[Value]) -> Vec<String> {
    let mut errors = Vec::new();
    for range in ranges {
        for item in items_of(range, "Container") {
            for list in ["containers", "initContainers"] {
                for container in pod.pointer(&format!("/spec/{list}")).and_then(Value::as_array).into_iter().flatten() {
                    let requests = quantities(container.pointer("/resources/requests"));
                    let limits = quantities(container.pointer("/resources/limits"));
                    check(item, "Container", &requests, &limits, &mut errors);
                }
            }
        }
        for item in items_of(range, "Pod") {
            let (requests, limits) = pod_totals(pod);
            check(item, "Pod", &requests, &limits, &mut errors);
        }
    }
    errors
}

/// Resource quantities by name: (text as written or printed, value).
type Quantities = BTreeMap<String, (String, f64)>;

/// Requests and limits of a pod as upstream sums them: its containers added up, then at least as large as any
/// one init container's.
fn pod_totals(pod: &Value) -> (Quantities, Quantities) {
    let containers: Vec<&Value> =
        pod.pointer("/spec/containers").and_then(Value::as_array).map(|list| list.iter().collect()).unwrap_or_default();
    let init: Vec<&Value> = pod
        .pointer("/spec/initContainers")
        .and_then(Value::as_array)
        .map(|list| list.iter().collect())
        .unwrap_or_default();
    let total = |field: &str| {
        let mut sums: BTreeMap<String, f64> = BTreeMap::new();
        for container in &containers {
            for (name, (_, value)) in quantities(container.pointer(&format!("/resources/{field}"))) {
                *sums.entry(name).or_default() += value;
            }
        }
        for container in &init {
            for (name, (_, value)) in quantities(container.pointer(&format!("/resources/{field}"))) {
                let sum = sums.entry(name).or_default();
                *sum = sum.max(value);
            }
        }
        sums.into_iter()
            .map(|(name, value)| (name, (crate::apiserver::resource_quota::format_quantity(value), value)))
            .collect::<BTreeMap<_, _>>()
    };
    (total("requests"), total("limits"))
}

fn items_of<'a>(range: &'a Value, kind: &'a str) -> impl Iterator<Item = &'a Map<String, Value>> + 'a {
    range
        .pointer("/spec/limits")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
        .filter(move |item| item.get("type").and_then(Value::as_str) == Some(kind))
}

/// A resource list as (written text, value), by resource name; entries that are not quantities are left out.
fn quantities(list: Option<&Value>) -> Quantities {
    list.and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(name, value)| {
            let text = match value {
                Value::String(text) => text.clone(),
                Value::Number(number) => number.to_string(),
                _ => return None,
            };
            parse_quantity(&text).map(|parsed| (name.clone(), (text, parsed)))
        })
        .collect()
}

/// Min, max and maxLimitRequestRatio of one item against one set of requests and limits.
fn check(item: &Map<String, Value>, kind: &str, requests: &Quantities, limits: &Quantities, errors: &mut Vec<String>) {
    for (resource, (enforced, minimum)) in quantities(item.get("min")) {
        match (requests.get(&resource), limits.get(&resource)) {
            (None, _) => {
                errors.push(format!("minimum {resource} usage per {kind} is {enforced}.  No request is specified"))
            }
            (Some((request, value)), _) if *value < minimum => {
                errors.push(format!("minimum {resource} usage per {kind} is {enforced}, but request is {request}"))
            }
            (_, Some((limit, value))) if *value < minimum => {
                errors.push(format!("minimum {resource} usage per {kind} is {enforced}, but limit is {limit}"))
            }
            _ => {}
        }
    }
    for (resource, (enforced, maximum)) in quantities(item.get("max")) {
        match (requests.get(&resource), limits.get(&resource)) {
            (_, None) => {
                errors.push(format!("maximum {resource} usage per {kind} is {enforced}.  No limit is specified"))
            }
            (_, Some((limit, value))) if *value > maximum => {
                errors.push(format!("maximum {resource} usage per {kind} is {enforced}, but limit is {limit}"))
            }
            (Some((request, value)), _) if *value > maximum => {
                errors.push(format!("maximum {resource} usage per {kind} is {enforced}, but request is {request}"))
            }
            _ => {}
        }
    }
    for (resource, (enforced, ratio)) in quantities(item.get("maxLimitRequestRatio")) {
        let request = requests.get(&resource).map(|(_, value)| *value).filter(|value| *value != 0.0);
        let limit = limits.get(&resource).map(|(_, value)| *value).filter(|value| *value != 0.0);
        match (request, limit) {
            (None, _) => errors.push(format!(
                "{resource} max limit to request ratio per {kind} is {enforced}, but no request is specified or request is 0"
            )),
            (_, None) => errors.push(format!(
                "{resource} max limit to request ratio per {kind} is {enforced}, but no limit is specified or limit is 0"
            )),
            (Some(request), Some(limit)) if limit / request > ratio => errors.push(format!(
                "{resource} max limit to request ratio per {kind} is {enforced}, but provided ratio is {:.6}",
                limit / request
            )),
            _ => {}
        }
    }
}

fn is_pod(def: &ResourceDef) -> bool {
    def.group.is_empty() && def.plural == "pods"
}

impl ApiServer {
    /// The LimitRanges of `namespace` when `def` is pods (nothing else is limited yet), in name order.
    pub(crate) async fn pod_limit_ranges(&self, def: &ResourceDef, namespace: Option<&str>) -> ApiResult<Vec<Value>> {
        let (true, Some(namespace)) = (is_pod(def), namespace) else { return Ok(Vec::new()) };
        let registry = self.registry();
        let ranges = registry.get("", "v1", "limitranges").cloned().expect("LimitRanges are built in");
        let page = self.store.list(&ObjectStore::prefix(&ranges, Some(namespace)), None, 0, 0).await?;
        Ok(page.items.into_iter().map(|stored| stored.object).collect())
    }
}

/// Refuses a pod that breaks its namespace's LimitRanges: upstream's 403 `pods "NAME" is forbidden: ...`.
pub fn admit_pod(def: &ResourceDef, name: &str, pod: &Value, ranges: &[Value]) -> ApiResult<()> {
    if ranges.is_empty() || !is_pod(def) {
        return Ok(());
    }
    let errors = pod_violations(pod, ranges);
    if errors.is_empty() {
        return Ok(());
    }
    Err(ApiError::forbidden(
        format!("pods {name:?} is forbidden: {}", aggregate(&errors)),
        Details { name: name.to_string(), kind: "pods".into(), ..Details::default() },
    ))
}

/// Upstream's aggregate of several errors: one as it is, several in brackets.
pub fn aggregate(errors: &[String]) -> String {
    match errors {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(limits: Value) -> Value {
        json!({"kind": "LimitRange", "spec": {"limits": limits}})
    }

    #[test]
    fn limit_range_items_are_defaulted_as_upstream() {
        let mut object = range(json!([{"type": "Container", "max": {"cpu": "1"}, "min": {"memory": "64Mi"}}]));
        default_limit_range(&mut object);
        let item = &object["spec"]["limits"][0];
        assert_eq!(item["default"], json!({"cpu": "1"}));
        assert_eq!(item["defaultRequest"], json!({"cpu": "1", "memory": "64Mi"}));
    }

    #[test]
    fn containers_get_defaults_and_the_annotation_says_so() {
        let ranges = [range(
            json!([{"type": "Container", "default": {"cpu": "500m", "memory": "256Mi"}, "defaultRequest": {"cpu": "100m"}}]),
        )];
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "app", "resources": {"limits": {"memory": "1Gi"}}},
            {"name": "side"},
        ]}});
        apply_pod_defaults(&mut pod, &ranges);
        assert_eq!(
            pod["spec"]["containers"][0]["resources"],
            json!({"limits": {"memory": "1Gi", "cpu": "500m"}, "requests": {"cpu": "100m", "memory": "256Mi"}})
        );
        assert_eq!(pod["spec"]["containers"][1]["resources"]["limits"], json!({"cpu": "500m", "memory": "256Mi"}));
        assert_eq!(
            pod["metadata"]["annotations"][ANNOTATION],
            "LimitRanger plugin set: cpu, memory request for container app; cpu limit for container app; \
             cpu, memory request for container side; cpu, memory limit for container side"
        );
        let mut untouched = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]}});
        apply_pod_defaults(&mut untouched, &[range(json!([{"type": "Pod", "max": {"cpu": "2"}}]))]);
        assert!(untouched["metadata"].get("annotations").is_none());
    }

    #[test]
    fn minimums_maximums_and_ratios_use_upstreams_words() {
        let ranges = [range(json!([
            {"type": "Container", "min": {"memory": "64Mi"}, "max": {"cpu": "1"}, "maxLimitRequestRatio": {"cpu": "2"}},
        ]))];
        let pod = json!({"spec": {"containers": [{"name": "a", "resources": {
            "requests": {"cpu": "500m", "memory": "32Mi"}, "limits": {"cpu": "1500m"}}}]}});
        assert_eq!(
            pod_violations(&pod, &ranges),
            vec![
                "minimum memory usage per Container is 64Mi, but request is 32Mi",
                "maximum cpu usage per Container is 1, but limit is 1500m",
                "cpu max limit to request ratio per Container is 2, but provided ratio is 3.000000",
            ]
        );
        let bare = json!({"spec": {"containers": [{"name": "a"}]}});
        assert_eq!(
            pod_violations(&bare, &ranges),
            vec![
                "minimum memory usage per Container is 64Mi.  No request is specified",
                "maximum cpu usage per Container is 1.  No limit is specified",
                "cpu max limit to request ratio per Container is 2, but no request is specified or request is 0",
            ]
        );
        let fits = json!({"spec": {"containers": [{"name": "a", "resources": {
            "requests": {"cpu": "500m", "memory": "64Mi"}, "limits": {"cpu": "1"}}}]}});
        assert!(pod_violations(&fits, &ranges).is_empty());
    }

    #[test]
    fn pod_items_count_the_sum_of_containers() {
        let ranges = [range(json!([{"type": "Pod", "max": {"memory": "1Gi"}}]))];
        let pod = json!({"spec": {"containers": [
            {"name": "a", "resources": {"limits": {"memory": "768Mi"}}},
            {"name": "b", "resources": {"limits": {"memory": "512Mi"}}},
        ]}});
        assert_eq!(pod_violations(&pod, &ranges), vec!["maximum memory usage per Pod is 1Gi, but limit is 1280Mi"]);
        assert_eq!(aggregate(&["a".to_string()]), "a");
        assert_eq!(aggregate(&["a".to_string(), "b".to_string()]), "[a, b]");
    }
}
