//! The Priority admission plugin, as upstream's: a new pod's `priorityClassName` becomes its `spec.priority` and
//! `spec.preemptionPolicy`, from that PriorityClass. A pod that names no class gets the class marked
//! `globalDefault` (the lowest, if several are), or priority 0 when there is none. A class that does not exist, or
//! a priority or policy in the pod that is not its class's, is upstream's 403. Of PriorityClasses it refuses a
//! second `globalDefault` one, on create and on update. The two `system-` classes are created at bootstrap ([`system_classes`]).

use serde_json::{json, Value};

use crate::apiserver::error::{ApiError, ApiResult, Details};
use crate::apiserver::registry::ResourceDef;
use crate::apiserver::storage::ObjectStore;
use crate::apiserver::ApiServer;

/// Upstream's built-in classes: name, value, description.
pub(crate) const SYSTEM_CLASSES: [(&str, i64, &str); 2] = [
    (
        "system-cluster-critical",
        2_000_000_000,
        "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
    ),
    (
        "system-node-critical",
        2_000_001_000,
        "Used for system critical pods that must not be moved from their current node.",
    ),
];

/// The PriorityClass objects every cluster has.
pub fn system_classes() -> Vec<Value> {
    SYSTEM_CLASSES
        .iter()
        .map(|(name, value, description)| {
            json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name},
                "value": value, "description": description, "preemptionPolicy": "PreemptLowerPriority"})
        })
        .collect()
}

impl ApiServer {
    /// Resolves a new pod's priority, or refuses a second default PriorityClass. Runs before the defaults, which
    /// would otherwise give a pod without a class priority 0 before the default class could be looked up.
    pub(crate) async fn admit_priority(&self, def: &ResourceDef, name: &str, object: &mut Value) -> ApiResult<()> {
        if !(def.group.is_empty() && def.kind == "Pod") {
            return self.admit_default_priority_class(def, name, object).await;
        }
        let classes = self.priority_classes().await?;
        resolve_pod_priority(object, &classes).map_err(|message| {
            ApiError::forbidden(
                format!("pods {name:?} is forbidden: {message}"),
                Details { name: name.to_string(), kind: "pods".into(), ..Details::default() },
            )
        })
    }

    /// Refuses a PriorityClass created or updated to be `globalDefault` while another one is.
    pub(crate) async fn admit_default_priority_class(
        &self,
        def: &ResourceDef,
        name: &str,
        object: &Value,
    ) -> ApiResult<()> {
        let is_class = def.group == "scheduling.k8s.io" && def.kind == "PriorityClass";
        if !(is_class && object["globalDefault"] == json!(true)) {
            return Ok(());
        }
        let classes = self.priority_classes().await?;
        let other_default =
            classes.iter().find(|class| class["globalDefault"] == json!(true) && class["metadata"]["name"] != name);
        match other_default {
            Some(other) => Err(ApiError::forbidden(
                format!(
                    "priorityclasses.scheduling.k8s.io {name:?} is forbidden: PriorityClass {} is already marked as \
                     default. Only one default can exist",
                    other["metadata"]["name"].as_str().unwrap_or_default()
                ),
                Details {
                    name: name.to_string(),
                    group: "scheduling.k8s.io".into(),
                    kind: "priorityclasses".into(),
                    ..Details::default()
                },
            )),
            None => Ok(()),
        }
    }

    async fn priority_classes(&self) -> ApiResult<Vec<Value>> {
        let registry = self.registry();
        let classes =
            registry.get("scheduling.k8s.io", "v1", "priorityclasses").cloned().expect("PriorityClasses are built in");
        let page = self.store.list(&ObjectStore::prefix(&classes, None), None, 0, 0).await?;
        Ok(page.items.into_iter().map(|stored| stored.object).collect())
    }
}

/// Sets the pod's priority, preemption policy and (from the default class) class name; the 403 message if the
/// pod cannot have them.
fn resolve_pod_priority(pod: &mut Value, classes: &[Value]) -> Result<(), String> {
    let named = pod.pointer("/spec/priorityClassName").and_then(Value::as_str).unwrap_or_default().to_string();
    let class = if named.is_empty() {
        classes
            .iter()
            .filter(|class| class["globalDefault"] == json!(true))
            .min_by_key(|class| class["value"].as_i64().unwrap_or_default())
    } else {
        let found = classes.iter().find(|class| class["metadata"]["name"] == json!(named));
        Some(found.ok_or_else(|| format!("no PriorityClass with name {named} was found"))?)
    };
    let priority = class.and_then(|class| class["value"].as_i64()).unwrap_or(0);
    let policy = class.map(|class| class["preemptionPolicy"].as_str().unwrap_or("PreemptLowerPriority"));
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else { return Ok(()) };
    if let Some(given) = spec.get("priority").and_then(Value::as_i64).filter(|given| *given != priority) {
        return Err(format!(
            "the integer value of priority ({given}) must not be provided in pod spec; priority admission controller \
             computed {priority} from the given PriorityClass name"
        ));
    }
    if let (Some(given), Some(policy)) = (spec.get("preemptionPolicy").and_then(Value::as_str), policy) {
        if given != policy {
            return Err(format!(
                "the string value of PreemptionPolicy ({given}) must not be provided in pod spec; priority admission \
                 controller computed {policy} from the given PriorityClass name"
            ));
        }
    }
    spec.insert("priority".into(), json!(priority));
    if let Some(policy) = policy {
        spec.insert("preemptionPolicy".into(), json!(policy));
    }
    if let (true, Some(class)) = (named.is_empty(), class) {
        spec.insert("priorityClassName".into(), class["metadata"]["name"].clone());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(name: &str, value: i64, global_default: bool, policy: Option<&str>) -> Value {
        let mut class = json!({"metadata": {"name": name}, "value": value, "globalDefault": global_default});
        if let Some(policy) = policy {
            class["preemptionPolicy"] = json!(policy);
        }
        class
    }

    #[test]
    fn a_named_class_gives_its_value_and_policy() {
        let classes = [class("high", 1000, false, Some("Never"))];
        let mut pod = json!({"spec": {"priorityClassName": "high"}});
        resolve_pod_priority(&mut pod, &classes).unwrap();
        assert_eq!(pod["spec"], json!({"priorityClassName": "high", "priority": 1000, "preemptionPolicy": "Never"}));
    }

    #[test]
    fn without_a_class_the_lowest_default_class_or_zero() {
        let mut pod = json!({"spec": {}});
        resolve_pod_priority(&mut pod, &[class("high", 1000, false, None)]).unwrap();
        assert_eq!(pod["spec"], json!({"priority": 0}));
        let classes = [class("a", 500, true, None), class("b", 100, true, None)];
        let mut pod = json!({"spec": {}});
        resolve_pod_priority(&mut pod, &classes).unwrap();
        assert_eq!(
            pod["spec"],
            json!({"priority": 100, "priorityClassName": "b", "preemptionPolicy": "PreemptLowerPriority"})
        );
    }

    #[test]
    fn unknown_classes_and_conflicting_values_are_refused_in_upstreams_words() {
        let classes = system_classes();
        let mut pod = json!({"spec": {"priorityClassName": "nope"}});
        assert_eq!(resolve_pod_priority(&mut pod, &classes).unwrap_err(), "no PriorityClass with name nope was found");
        let mut pod = json!({"spec": {"priorityClassName": "system-node-critical", "priority": 5}});
        assert_eq!(
            resolve_pod_priority(&mut pod, &classes).unwrap_err(),
            "the integer value of priority (5) must not be provided in pod spec; priority admission controller \
             computed 2000001000 from the given PriorityClass name"
        );
        let mut pod = json!({"spec": {"priorityClassName": "system-node-critical", "priority": 2_000_001_000}});
        resolve_pod_priority(&mut pod, &classes).unwrap();
        let mut pod = json!({"spec": {"priorityClassName": "system-cluster-critical", "preemptionPolicy": "Never"}});
        assert!(resolve_pod_priority(&mut pod, &classes).unwrap_err().contains("PreemptionPolicy (Never)"));
    }
}
