//! Server-side apply: a field manager declares the fields it wants, the server merges them into the live object,
//! removes the fields that manager declared last time but no longer does, and refuses (unless forced) to change
//! fields that someone else set.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::managed_fields::{
    compare, display_path, element_key, field_set_of, read_entries, remove_fields, tracked_view, write_entries,
    FieldSet, ManagerEntry, OPERATION_APPLY,
};
use super::{apply_list_kind, facts_at, is_atomic_map, ApplyError, ConflictCause, ListKind};
use crate::apiserver::schema::FieldFactsSource;

/// Metadata an applied configuration may carry but that the server owns; apply ignores it.
const IGNORED_METADATA: &[&str] =
    &["managedFields", "resourceVersion", "uid", "creationTimestamp", "generation", "selfLink", "deletionTimestamp"];

/// The parameters of one apply request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyRequest {
    /// The `fieldManager` query parameter (required for apply).
    pub manager: String,
    /// The `force` query parameter: take over conflicting fields instead of failing.
    pub force: bool,
    /// The API version the request was made in, e.g. `apps/v1`, recorded in the managed fields entry.
    pub api_version: String,
    /// The subresource applied to (`status`), if any; recorded in the entry and deciding which half is tracked.
    pub subresource: Option<String>,
    /// The time of the request, RFC 3339 (`2026-01-02T03:04:05Z`).
    pub now: String,
}

/// Applies `applied` on behalf of `request.manager` and returns the new object with its managed fields.
///
/// Creates the object when `live` is None. Maps merge by key, list-type=map lists by their keys, sets as sets;
/// atomic lists and maps are replaced. Fields the manager applied before and leaves out now are removed unless
/// another manager owns them. Changing a field another manager owns fails with [`ApplyError::Conflict`] unless
/// `force` is set, in which case the field changes owner. The caller still validates, defaults and resets the
/// status (or spec) half the endpoint does not write.
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    request: &ApplyRequest,
    facts: &dyn FieldFactsSource,
) -> Result<Value, ApplyError> {
    if !applied.is_object() {
        return Err(ApplyError::Malformed("the applied configuration must be a JSON object".to_string()));
    }
    let mut applied = applied.clone();
    if let Some(Value::Object(metadata)) = applied.get_mut("metadata") {
        for field in IGNORED_METADATA {
            metadata.remove(*field);
        }
    }

    let nothing = Value::Object(Map::new());
    let live = live.unwrap_or(&nothing);
    let mut entries = read_entries(live);
    let mut base = live.clone();
    if let Some(Value::Object(metadata)) = base.get_mut("metadata") {
        metadata.remove("managedFields");
    }

    let subresource = request.subresource.as_deref();
    let applied_set = field_set_of(&tracked_view(&applied, subresource), facts).map_err(ApplyError::Malformed)?;
    let merged = merge_value(Some(&base), &applied, &mut Vec::new(), facts)?;

    // Which fields did the merge add or change, and who owned them?
    let comparison = compare(&tracked_view(&base, subresource), &tracked_view(&merged, subresource), facts);
    let mut changed = comparison.added.clone();
    changed.union_with(&comparison.modified);
    let applier = entries.iter().position(|entry| entry.is(&request.manager, OPERATION_APPLY, "", subresource));
    let conflicts: Vec<(usize, FieldSet)> = entries
        .iter()
        .enumerate()
        .filter(|(index, _)| Some(*index) != applier)
        .map(|(index, entry)| (index, entry.fields.intersection(&changed)))
        .filter(|(_, taken)| !taken.is_empty())
        .collect();
    if !conflicts.is_empty() && !request.force {
        return Err(conflict_error(&entries, &conflicts));
    }
    for (index, taken) in &conflicts {
        entries[*index].fields = entries[*index].fields.difference(taken);
    }
    for entry in &mut entries {
        entry.fields.remove_subtrees(&comparison.removed);
    }

    // Fields this manager applied last time and no longer does go, unless somebody else owns them.
    let previous = applier.map(|index| entries[index].fields.clone()).unwrap_or_default();
    let mut kept = applied_set.clone();
    for (index, entry) in entries.iter().enumerate() {
        if Some(index) != applier {
            kept.union_with(&entry.fields);
        }
    }
    let mut result = merged;
    let dropped = previous.difference(&kept);
    if !dropped.is_empty() {
        remove_fields(&mut result, &dropped, &kept, facts);
    }

    let object_changed = result != base;
    match applier {
        Some(index) => {
            let entry = &mut entries[index];
            if object_changed || entry.fields != applied_set || entry.api_version != request.api_version {
                entry.time = Some(request.now.clone());
            }
            entry.fields = applied_set;
            entry.api_version = request.api_version.clone();
        }
        None => entries.push(ManagerEntry {
            manager: request.manager.clone(),
            operation: OPERATION_APPLY.to_string(),
            api_version: request.api_version.clone(),
            time: Some(request.now.clone()),
            subresource: request.subresource.clone(),
            fields: applied_set,
        }),
    }
    write_entries(&mut result, entries);
    Ok(result)
}

/// Merges an applied value into the live value of the same field (`path` is the facts path).
fn merge_value(
    live: Option<&Value>,
    applied: &Value,
    path: &mut Vec<String>,
    facts: &dyn FieldFactsSource,
) -> Result<Value, ApplyError> {
    let field_facts = facts_at(facts, path);
    match applied {
        Value::Object(applied_map) if !is_atomic_map(&field_facts) => {
            let mut merged = match live {
                Some(Value::Object(live_map)) => live_map.clone(),
                _ => Map::new(),
            };
            for (key, applied_value) in applied_map {
                // Applying null means "this field is not set"; the manager still owns that statement.
                if applied_value.is_null() {
                    merged.remove(key);
                    continue;
                }
                path.push(key.clone());
                let value = merge_value(merged.get(key), applied_value, path, facts);
                path.pop();
                merged.insert(key.clone(), value?);
            }
            Ok(Value::Object(merged))
        }
        Value::Array(applied_items) => match apply_list_kind(&field_facts) {
            ListKind::Atomic => Ok(applied.clone()),
            kind => {
                let live_items = match live {
                    Some(Value::Array(items)) => items.as_slice(),
                    _ => &[],
                };
                Ok(Value::Array(merge_list(&kind, live_items, applied_items, path, facts)?))
            }
        },
        _ => Ok(applied.clone()),
    }
}

/// Merges an associative list or a set. Elements present in both keep the applied order; live-only elements keep
/// their place relative to them; applied-only elements are placed where the applied list has them.
fn merge_list(
    kind: &ListKind,
    live: &[Value],
    applied: &[Value],
    path: &mut Vec<String>,
    facts: &dyn FieldFactsSource,
) -> Result<Vec<Value>, ApplyError> {
    let applied_keys = applied
        .iter()
        .map(|item| element_key(item, kind))
        .collect::<Result<Vec<_>, _>>()
        .map_err(ApplyError::Malformed)?;
    for (index, key) in applied_keys.iter().enumerate() {
        if applied_keys[..index].contains(key) {
            return Err(ApplyError::Malformed(format!(
                "duplicate entries for key {}",
                display_path(std::slice::from_ref(key))
            )));
        }
    }
    // Live elements that cannot be identified are kept as they are; a duplicate live key matches its first copy.
    let live_keys: Vec<Option<String>> = live.iter().map(|item| element_key(item, kind).ok()).collect();
    let live_index: BTreeMap<&str, usize> =
        live_keys.iter().enumerate().rev().filter_map(|(index, key)| key.as_deref().map(|key| (key, index))).collect();
    let applied_index: BTreeMap<&str, usize> =
        applied_keys.iter().enumerate().map(|(index, key)| (key.as_str(), index)).collect();

    let mut shared = applied_keys.iter().filter(|key| live_index.contains_key(key.as_str())).peekable();
    let mut merged = Vec::with_capacity(live.len() + applied.len());
    let merge_element = |applied_position: usize, path: &mut Vec<String>| -> Result<Value, ApplyError> {
        let live_element = live_index.get(applied_keys[applied_position].as_str()).map(|index| &live[*index]);
        merge_value(live_element, &applied[applied_position], path, facts)
    };
    let (mut live_cursor, mut applied_cursor) = (0, 0);
    while live_cursor < live.len() || applied_cursor < applied.len() {
        if live_cursor < live.len() {
            let live_key = live_keys[live_cursor].as_deref();
            let in_applied = live_key.and_then(|key| applied_index.get(key)).is_some();
            let is_first_copy = live_key.is_some_and(|key| live_index.get(key) == Some(&live_cursor));
            if !in_applied || !is_first_copy {
                merged.push(live[live_cursor].clone());
                live_cursor += 1;
                continue;
            }
            // A shared element: emit it only when it is the next shared one in applied order; otherwise it is
            // emitted later, from the applied side.
            if shared.peek().map(|key| key.as_str()) != live_key {
                live_cursor += 1;
                continue;
            }
        }
        if applied_cursor < applied.len() {
            let key = &applied_keys[applied_cursor];
            merged.push(merge_element(applied_cursor, path)?);
            if shared.peek() == Some(&key) {
                shared.next();
            }
            applied_cursor += 1;
            // Skip the live copy of an element just emitted if the live cursor is on it.
            if live_cursor < live.len() && live_keys[live_cursor].as_ref() == Some(key) {
                live_cursor += 1;
            }
        } else {
            live_cursor += 1;
        }
    }
    Ok(merged)
}

/// The 409 answer, worded like upstream's.
fn conflict_error(entries: &[ManagerEntry], conflicts: &[(usize, FieldSet)]) -> ApplyError {
    let mut by_manager: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (index, taken) in conflicts {
        let owner = describe_manager(&entries[*index]);
        by_manager.entry(owner).or_default().extend(taken.members().iter().map(|path| display_path(path)));
    }
    let causes: Vec<ConflictCause> = by_manager
        .iter()
        .flat_map(|(owner, fields)| {
            fields
                .iter()
                .map(move |field| ConflictCause { field: field.clone(), message: format!("conflict with {owner}") })
        })
        .collect();
    let message = if let [only] = causes.as_slice() {
        format!("Apply failed with 1 conflict: {}: {}", only.message, only.field)
    } else {
        let lines: Vec<String> = by_manager
            .iter()
            .flat_map(|(owner, fields)| {
                std::iter::once(format!("conflicts with {owner}:"))
                    .chain(fields.iter().map(|field| format!("- {field}")))
            })
            .collect();
        format!("Apply failed with {} conflicts: {}", causes.len(), lines.join("\n"))
    };
    ApplyError::Conflict { message, causes }
}

/// A manager as upstream names it in conflicts: `"kubectl"`, `"kube-controller-manager" using apps/v1`,
/// `"x" with subresource "status"`.
fn describe_manager(entry: &ManagerEntry) -> String {
    let mut text = format!("{:?}", entry.manager);
    if let Some(subresource) = &entry.subresource {
        text.push_str(&format!(" with subresource {subresource:?}"));
    }
    if entry.operation != OPERATION_APPLY {
        text.push_str(&format!(" using {}", entry.api_version));
    }
    text
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::apiserver::patch::record_update;
    use crate::apiserver::patch::test_facts::workload_facts;

    fn request(manager: &str, force: bool, now: &str) -> ApplyRequest {
        ApplyRequest {
            manager: manager.to_string(),
            force,
            api_version: "apps/v1".to_string(),
            subresource: None,
            now: now.to_string(),
        }
    }

    fn config(labels: Value, replicas: Option<i64>, image: &str) -> Value {
        let mut spec = json!({
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"spec": {"containers": [{"name": "c", "image": image}]}}
        });
        if let Some(replicas) = replicas {
            spec["replicas"] = json!(replicas);
        }
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": labels},
            "spec": spec
        })
    }

    fn entry<'a>(object: &'a Value, manager: &str) -> &'a Value {
        object["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|entry| entry["manager"] == manager)
            .unwrap_or_else(|| panic!("no entry for {manager} in {object}"))
    }

    #[test]
    fn apply_creates_and_records_the_applier() {
        let applied = config(json!({"app": "web"}), Some(2), "nginx:1");
        let created =
            apply(None, &applied, &request("kubectl", false, "2026-01-01T00:00:00Z"), &workload_facts()).unwrap();
        assert_eq!(created["spec"]["replicas"], 2);
        assert_eq!(created["metadata"]["name"], "web");
        assert_eq!(created["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:1");
        let entries = created["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(
            entries[0],
            json!({
                "manager": "kubectl",
                "operation": "Apply",
                "apiVersion": "apps/v1",
                "time": "2026-01-01T00:00:00Z",
                "fieldsType": "FieldsV1",
                "fieldsV1": {
                    "f:metadata": {"f:labels": {"f:app": {}}},
                    "f:spec": {
                        "f:replicas": {},
                        "f:selector": {},
                        "f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {
                            ".": {}, "f:image": {}, "f:name": {}
                        }}}}
                    }
                }
            })
        );
    }

    #[test]
    fn a_second_apply_without_a_label_removes_it() {
        let facts = workload_facts();
        let first = config(json!({"app": "web", "tier": "front"}), Some(1), "nginx:1");
        let live = apply(None, &first, &request("kubectl", false, "2026-01-01T00:00:00Z"), &facts).unwrap();
        let second = config(json!({"app": "web"}), Some(1), "nginx:1");
        let updated = apply(Some(&live), &second, &request("kubectl", false, "2026-01-01T00:01:00Z"), &facts).unwrap();
        assert_eq!(updated["metadata"]["labels"], json!({"app": "web"}));
        assert_eq!(entry(&updated, "kubectl")["fieldsV1"]["f:metadata"], json!({"f:labels": {"f:app": {}}}));
        assert_eq!(entry(&updated, "kubectl")["time"], "2026-01-01T00:01:00Z");
        // A container the manager stops applying goes too.
        let mut third = second.clone();
        third["spec"]["template"]["spec"]["containers"] = json!([{"name": "d", "image": "redis"}]);
        let updated =
            apply(Some(&updated), &third, &request("kubectl", false, "2026-01-01T00:02:00Z"), &facts).unwrap();
        assert_eq!(updated["spec"]["template"]["spec"]["containers"], json!([{"name": "d", "image": "redis"}]));
    }

    #[test]
    fn two_managers_keep_each_others_labels() {
        let facts = workload_facts();
        let a = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "labels": {"a": "1"}}});
        let b = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "labels": {"b": "2"}}});
        let live = apply(None, &a, &request("alpha", false, "2026-01-01T00:00:00Z"), &facts).unwrap();
        let live = apply(Some(&live), &b, &request("beta", false, "2026-01-01T00:00:01Z"), &facts).unwrap();
        assert_eq!(live["metadata"]["labels"], json!({"a": "1", "b": "2"}));
        // Re-applying each manager's own configuration removes nothing of the other's.
        let live = apply(Some(&live), &a, &request("alpha", false, "2026-01-01T00:00:02Z"), &facts).unwrap();
        let live = apply(Some(&live), &b, &request("beta", false, "2026-01-01T00:00:03Z"), &facts).unwrap();
        assert_eq!(live["metadata"]["labels"], json!({"a": "1", "b": "2"}));
        assert_eq!(entry(&live, "alpha")["fieldsV1"], json!({"f:metadata": {"f:labels": {"f:a": {}}}}));
        assert_eq!(entry(&live, "beta")["fieldsV1"], json!({"f:metadata": {"f:labels": {"f:b": {}}}}));
        // Dropping a label both applied keeps it while the other still applies it.
        let shared = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "labels": {"b": "2"}}});
        let live = apply(Some(&live), &shared, &request("alpha", false, "2026-01-01T00:00:04Z"), &facts).unwrap();
        assert_eq!(live["metadata"]["labels"], json!({"b": "2"}));
        let live = apply(Some(&live), &a, &request("alpha", false, "2026-01-01T00:00:05Z"), &facts).unwrap();
        assert_eq!(live["metadata"]["labels"], json!({"a": "1", "b": "2"}));
    }

    /// A Deployment created by client-side apply: kubectl-client-side-apply owns every field with an Update entry.
    fn created_by_client_side_apply() -> Value {
        let mut live = config(json!({"app": "web"}), Some(1), "nginx:1");
        record_update(
            None,
            &mut live,
            "kubectl-client-side-apply",
            None,
            "apps/v1",
            "2026-01-01T00:00:00Z",
            &workload_facts(),
        );
        live
    }

    #[test]
    fn changing_someone_elses_field_conflicts_without_force() {
        let live = created_by_client_side_apply();
        let applied = config(json!({"app": "web"}), Some(3), "nginx:1");
        let error = apply(Some(&live), &applied, &request("kubectl", false, "2026-01-01T00:01:00Z"), &workload_facts())
            .unwrap_err();
        assert_eq!(error.status_code(), 409);
        let ApplyError::Conflict { message, causes } = error else { panic!("not a conflict") };
        assert_eq!(
            message,
            "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"
        );
        assert_eq!(
            causes,
            [ConflictCause {
                field: ".spec.replicas".to_string(),
                message: "conflict with \"kubectl-client-side-apply\" using apps/v1".to_string()
            }]
        );
    }

    #[test]
    fn several_conflicts_are_listed_per_manager() {
        let live = created_by_client_side_apply();
        let applied = config(json!({"app": "web"}), Some(3), "nginx:2");
        let error = apply(Some(&live), &applied, &request("kubectl", false, "2026-01-01T00:01:00Z"), &workload_facts())
            .unwrap_err();
        let ApplyError::Conflict { message, causes } = error else { panic!("not a conflict") };
        assert_eq!(causes.len(), 2);
        assert_eq!(
            message,
            "Apply failed with 2 conflicts: conflicts with \"kubectl-client-side-apply\" using apps/v1:\n\
             - .spec.replicas\n- .spec.template.spec.containers[name=\"c\"].image"
        );
    }

    #[test]
    fn applying_the_same_value_shares_ownership_without_conflict() {
        let facts = workload_facts();
        let live = created_by_client_side_apply();
        let applied = config(json!({"app": "web"}), Some(1), "nginx:1");
        let updated = apply(Some(&live), &applied, &request("kubectl", false, "2026-01-01T00:01:00Z"), &facts).unwrap();
        assert_eq!(entry(&updated, "kubectl")["fieldsV1"]["f:spec"]["f:replicas"], json!({}));
        assert_eq!(entry(&updated, "kubectl-client-side-apply")["fieldsV1"]["f:spec"]["f:replicas"], json!({}));
    }

    #[test]
    fn force_moves_ownership() {
        let facts = workload_facts();
        let live = created_by_client_side_apply();
        let applied = config(json!({"app": "web"}), Some(3), "nginx:1");
        let updated = apply(Some(&live), &applied, &request("kubectl", true, "2026-01-01T00:01:00Z"), &facts).unwrap();
        assert_eq!(updated["spec"]["replicas"], 3);
        assert_eq!(entry(&updated, "kubectl")["fieldsV1"]["f:spec"]["f:replicas"], json!({}));
        let previous = &entry(&updated, "kubectl-client-side-apply")["fieldsV1"]["f:spec"];
        assert!(previous.get("f:replicas").is_none(), "{previous}");
        assert!(previous.get("f:selector").is_some(), "{previous}");
        // Apply entries sort before Update entries.
        assert_eq!(updated["metadata"]["managedFields"][0]["operation"], "Apply");
        // Now the applier owns replicas alone, so leaving it out removes it.
        let without = config(json!({"app": "web"}), None, "nginx:1");
        let updated =
            apply(Some(&updated), &without, &request("kubectl", false, "2026-01-01T00:02:00Z"), &facts).unwrap();
        assert!(updated["spec"].get("replicas").is_none(), "{}", updated["spec"]);
    }

    #[test]
    fn list_map_entries_merge_by_key_and_keep_others_elements() {
        let facts = workload_facts();
        let mut live = config(json!({"app": "web"}), Some(1), "nginx:1");
        live["spec"]["template"]["spec"]["containers"] = json!([
            {"name": "injected", "image": "proxy"},
            {"name": "c", "image": "nginx:1", "ports": [{"containerPort": 80, "protocol": "TCP"}]}
        ]);
        record_update(None, &mut live, "injector", None, "apps/v1", "2026-01-01T00:00:00Z", &facts);
        let mut applied = config(json!({"app": "web"}), Some(1), "nginx:1");
        applied["spec"]["template"]["spec"]["containers"] = json!([
            {"name": "c", "image": "nginx:1", "ports": [{"containerPort": 80}]},
            {"name": "new", "image": "redis"}
        ]);
        let updated = apply(Some(&live), &applied, &request("kubectl", true, "2026-01-01T00:01:00Z"), &facts).unwrap();
        let containers = &updated["spec"]["template"]["spec"]["containers"];
        let names: Vec<_> = containers.as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["injected", "c", "new"]);
        // The port without a protocol matched the live TCP port instead of adding a second one.
        assert_eq!(containers[1]["ports"], json!([{"containerPort": 80, "protocol": "TCP"}]));
        let fields = &entry(&updated, "kubectl")["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"];
        assert_eq!(
            fields["k:{\"name\":\"c\"}"]["f:ports"],
            json!({"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}})
        );
        assert_eq!(fields["k:{\"name\":\"new\"}"], json!({".": {}, "f:image": {}, "f:name": {}}));
    }

    #[test]
    fn applied_order_wins_for_shared_elements() {
        let facts = workload_facts();
        let kind = ListKind::Map(vec!["name".to_string()]);
        let live = [json!({"name": "a"}), json!({"name": "x"}), json!({"name": "b"})];
        let applied = [json!({"name": "b"}), json!({"name": "new"}), json!({"name": "a"})];
        let merged = merge_list(&kind, &live, &applied, &mut Vec::new(), &facts).unwrap();
        let names: Vec<_> = merged.iter().map(|item| item["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["x", "b", "new", "a"]);
    }

    #[test]
    fn sets_merge_as_sets() {
        let facts = workload_facts();
        let live = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "finalizers": ["a"]}});
        let applied = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "finalizers": ["b"]}});
        let updated = apply(Some(&live), &applied, &request("m", false, "2026-01-01T00:00:00Z"), &facts).unwrap();
        assert_eq!(updated["metadata"]["finalizers"], json!(["a", "b"]));
        assert_eq!(entry(&updated, "m")["fieldsV1"], json!({"f:metadata": {"f:finalizers": {"v:\"b\"": {}}}}));
    }

    #[test]
    fn server_owned_metadata_in_the_configuration_is_ignored() {
        let facts = workload_facts();
        let mut live = config(json!({"app": "web"}), Some(1), "nginx:1");
        live["metadata"]["uid"] = json!("u-1");
        live["metadata"]["resourceVersion"] = json!("5");
        let mut applied = config(json!({"app": "web"}), Some(1), "nginx:1");
        applied["metadata"]["uid"] = json!("other");
        applied["metadata"]["resourceVersion"] = json!("1");
        applied["metadata"]["managedFields"] = json!([{"manager": "fake"}]);
        let updated = apply(Some(&live), &applied, &request("m", false, "2026-01-01T00:00:00Z"), &facts).unwrap();
        assert_eq!(updated["metadata"]["uid"], "u-1");
        assert_eq!(updated["metadata"]["resourceVersion"], "5");
        assert_eq!(updated["metadata"]["managedFields"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn malformed_configurations_are_rejected() {
        let facts = workload_facts();
        let error = apply(None, &json!([1]), &request("m", false, "t"), &facts).unwrap_err();
        assert_eq!(error.status_code(), 400);
        let mut no_key = config(json!({}), None, "x");
        no_key["spec"]["template"]["spec"]["containers"] = json!([{"image": "x"}]);
        assert!(matches!(apply(None, &no_key, &request("m", false, "t"), &facts), Err(ApplyError::Malformed(_))));
    }

    #[test]
    fn status_applies_record_the_subresource() {
        let facts = workload_facts();
        let live = created_by_client_side_apply();
        let applied = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "status": {"conditions": [{"type": "Available", "status": "True"}]}});
        let mut status_request = request("controller", false, "2026-01-01T00:01:00Z");
        status_request.subresource = Some("status".to_string());
        let updated = apply(Some(&live), &applied, &status_request, &facts).unwrap();
        let controller = entry(&updated, "controller");
        assert_eq!(controller["subresource"], "status");
        assert_eq!(
            controller["fieldsV1"],
            json!({"f:status": {"f:conditions": {"k:{\"type\":\"Available\"}": {".": {}, "f:status": {}, "f:type": {}}}}})
        );
        assert_eq!(updated["spec"]["replicas"], 1);
    }
}
