//! Strategic merge patch: JSON merge patch where the schema decides that some lists merge element by element on a
//! key, plus the `$`-directives kubectl uses to delete, replace and order. kubectl's client-side apply, `edit`,
//! `label`, `annotate` and `rollout restart` all send it.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::{facts_at, has_strategy, same_value, PatchError};
use crate::apiserver::schema::FieldFactsSource;

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";

/// Applies a strategic merge patch to `original`.
///
/// Maps merge recursively and `null` deletes a key. A list whose field has patch strategy `merge` merges element
/// by element on its merge key (new elements go after the existing ones, in patch order) or, for primitives, is
/// unioned; any other list is replaced. Directives: `$patch: replace|delete|merge` in a map or a list element,
/// `$retainKeys`, `$setElementOrder/<list>` and `$deleteFromPrimitiveList/<list>`. Anything else starting with
/// `$` is rejected.
pub fn strategic_merge_patch(
    original: &Value,
    patch: &Value,
    facts: &dyn FieldFactsSource,
) -> Result<Value, PatchError> {
    let Value::Object(patch) = patch else {
        return Err(PatchError::Malformed(super::UNPARSABLE_PATCH.to_string()));
    };
    let original = match original {
        Value::Object(map) => map.clone(),
        Value::Null => Map::new(),
        _ => return Err(PatchError::Malformed("the object to patch is not a JSON object".to_string())),
    };
    let mut path = Vec::new();
    Ok(Value::Object(merge_map(original, patch, &mut path, facts)?))
}

/// Merges one patch map into one original map; `path` is the facts path of both.
fn merge_map(
    mut original: Map<String, Value>,
    patch: &Map<String, Value>,
    path: &mut Vec<String>,
    facts: &dyn FieldFactsSource,
) -> Result<Map<String, Value>, PatchError> {
    if let Some(directive) = patch.get(DIRECTIVE) {
        match directive.as_str() {
            // The patch is the new map, minus the directive (and with any nested directives resolved).
            Some("replace") => {
                let mut replacement = patch.clone();
                replacement.remove(DIRECTIVE);
                return merge_map(Map::new(), &replacement, path, facts);
            }
            Some("delete") => return Ok(Map::new()),
            // Upstream has no use for an explicit merge on a map; it is what happens anyway.
            Some("merge") => {}
            _ => return Err(unknown_directive(directive, patch)),
        }
    }

    if let Some(retain) = patch.get(RETAIN_KEYS) {
        apply_retain_keys(&mut original, patch, retain)?;
    }

    // Lists with an explicit order are merged first, as one unit with their order.
    let mut ordered_lists = HashSet::new();
    for (key, order) in patch {
        if let Some(field) = key.strip_prefix(SET_ELEMENT_ORDER) {
            merge_ordered_list(&mut original, patch, field, order, path, facts)?;
            ordered_lists.insert(field.to_string());
        }
    }

    let mut deletions = Vec::new();
    for (key, patch_value) in patch {
        if key.starts_with('$') {
            if let Some(field) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
                deletions.push((field, patch_value));
            } else if key != DIRECTIVE && key != RETAIN_KEYS && !key.starts_with(SET_ELEMENT_ORDER) {
                return Err(PatchError::Malformed(format!("unknown patch directive {key:?}")));
            }
            continue;
        }
        if ordered_lists.contains(key) {
            continue;
        }
        if patch_value.is_null() {
            original.remove(key);
            continue;
        }
        path.push(key.clone());
        let merged = match original.remove(key) {
            Some(existing) => merge_value(existing, patch_value, path, facts),
            None => new_value(patch_value, path, facts),
        };
        path.pop();
        original.insert(key.clone(), merged?);
    }

    // Deletions run after the merges so that an element added and removed by the same patch ends up removed.
    for (field, to_delete) in deletions {
        let Value::Array(to_delete) = to_delete else {
            return Err(PatchError::Malformed(format!(
                "invalid patch: the {DELETE_FROM_PRIMITIVE_LIST}{field} directive must be a list"
            )));
        };
        if let Some(Value::Array(list)) = original.get_mut(field) {
            list.retain(|item| !to_delete.iter().any(|gone| same_value(gone, item)));
        }
    }
    Ok(original)
}

/// Merges a patch value into the existing value of the same field.
fn merge_value(
    existing: Value,
    patch: &Value,
    path: &mut Vec<String>,
    facts: &dyn FieldFactsSource,
) -> Result<Value, PatchError> {
    let field_facts = facts_at(facts, path);
    match (existing, patch) {
        (Value::Object(existing), Value::Object(patch)) => {
            if has_strategy(&field_facts, "replace") {
                new_value(&Value::Object(patch.clone()), path, facts)
            } else {
                Ok(Value::Object(merge_map(existing, patch, path, facts)?))
            }
        }
        (Value::Array(existing), Value::Array(patch)) => {
            if has_strategy(&field_facts, "merge") {
                let merge_key = field_facts.patch_merge_key.as_deref();
                Ok(Value::Array(merge_list(existing, patch, merge_key, path, facts)?))
            } else {
                Ok(Value::Array(patch.clone()))
            }
        }
        // Scalars, and values whose type changed, are replaced.
        (_, patch) => new_value(patch, path, facts),
    }
}

/// The value a patch sets on a field the original lacks: the patch value with its directives resolved.
fn new_value(patch: &Value, path: &mut Vec<String>, facts: &dyn FieldFactsSource) -> Result<Value, PatchError> {
    match patch {
        Value::Object(map) => Ok(Value::Object(merge_map(Map::new(), map, path, facts)?)),
        Value::Array(list) if has_strategy(&facts_at(facts, path), "merge") => {
            let merge_key = facts_at(facts, path).patch_merge_key;
            Ok(Value::Array(merge_list(Vec::new(), list, merge_key.as_deref(), path, facts)?))
        }
        other => Ok(other.clone()),
    }
}

/// Merges a list with patch strategy `merge`: maps element by element on `merge_key`, primitives as a union.
/// Elements the patch names come in patch order; the original's other elements keep their places around them,
/// which puts new elements first when there is no `$setElementOrder` (upstream does the same).
fn merge_list(
    original: Vec<Value>,
    patch: &[Value],
    merge_key: Option<&str>,
    path: &mut Vec<String>,
    facts: &dyn FieldFactsSource,
) -> Result<Vec<Value>, PatchError> {
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    let of_maps = original.iter().chain(patch).any(Value::is_object);
    if of_maps && original.iter().chain(patch).any(|item| !item.is_object()) {
        return Err(PatchError::Malformed(format!("list element types are not identical in {}", path.join("."))));
    }
    if !of_maps {
        let mut merged = original.clone();
        for item in patch {
            if !merged.iter().any(|existing| same_value(existing, item)) {
                merged.push(item.clone());
            }
        }
        return Ok(order_like_patch(merged, patch, &original, &|item: &Value| Some(item.clone())));
    }

    let Some(merge_key) = merge_key else {
        return Err(PatchError::Malformed(format!("cannot merge lists without merge key for {}", path.join("."))));
    };
    let identity = |item: &Value| item.get(merge_key).cloned();

    // Special elements first: deletions by key, and a replace marker that discards the original.
    let mut remaining = original;
    let mut regular = Vec::new();
    let mut replace = false;
    for item in patch {
        match item.get(DIRECTIVE) {
            None => regular.push(item.clone()),
            Some(directive) => match directive.as_str() {
                Some("delete") => {
                    let Some(key_value) = item.get(merge_key) else {
                        return Err(missing_merge_key(item, merge_key));
                    };
                    remaining.retain(|existing| !existing.get(merge_key).is_some_and(|v| same_value(v, key_value)));
                }
                Some("replace") => replace = true,
                Some("merge") => {
                    let mut item = item.clone();
                    if let Some(map) = item.as_object_mut() {
                        map.remove(DIRECTIVE);
                    }
                    regular.push(item);
                }
                _ => return Err(unknown_directive(directive, item.as_object().unwrap_or(&Map::new()))),
            },
        }
    }
    if replace {
        return regular.iter().map(|item| new_value(item, path, facts)).collect::<Result<Vec<_>, _>>();
    }

    let original_order = remaining.clone();
    let mut merged = remaining;
    for item in &regular {
        let Some(key_value) = item.get(merge_key) else {
            return Err(missing_merge_key(item, merge_key));
        };
        let Value::Object(item_map) = item else { unreachable!("checked above that every element is a map") };
        let position =
            merged.iter().position(|existing| existing.get(merge_key).is_some_and(|v| same_value(v, key_value)));
        match position {
            Some(index) => {
                let Value::Object(existing) = std::mem::take(&mut merged[index]) else {
                    unreachable!("checked above that every element is a map")
                };
                merged[index] = Value::Object(merge_map(existing, item_map, path, facts)?);
            }
            None => merged.push(Value::Object(merge_map(Map::new(), item_map, path, facts)?)),
        }
    }
    Ok(order_like_patch(merged, &regular, &original_order, &identity))
}

/// Handles `$setElementOrder/<field>`: merges the field's list as usual, then puts the elements the order names
/// in that order, with the server-only elements kept in their old places around them.
fn merge_ordered_list(
    original: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    field: &str,
    order: &Value,
    path: &mut Vec<String>,
    facts: &dyn FieldFactsSource,
) -> Result<(), PatchError> {
    let Value::Array(order) = order else {
        return Err(PatchError::Malformed(format!(
            "invalid patch: the {SET_ELEMENT_ORDER}{field} directive must be a list"
        )));
    };
    path.push(field.to_string());
    let field_facts = facts_at(facts, path);
    let merge_key = field_facts.patch_merge_key.clone();
    let original_list = match original.get(field) {
        None => None,
        Some(Value::Array(list)) => Some(list.clone()),
        Some(_) => {
            path.pop();
            return Err(PatchError::Malformed(format!("invalid patch: {field} is not a list in the object")));
        }
    };
    let result = match (original_list, patch.get(field)) {
        (None, None) => None,
        (Some(list), None) => Some((list.clone(), list)),
        (original_list, Some(Value::Array(patch_list))) => {
            let original_list = original_list.unwrap_or_default();
            let merged = if has_strategy(&field_facts, "merge") {
                merge_list(original_list.clone(), patch_list, merge_key.as_deref(), path, facts)?
            } else {
                patch_list.clone()
            };
            Some((merged, original_list))
        }
        (_, Some(Value::Null)) => {
            original.remove(field);
            None
        }
        (_, Some(_)) => {
            path.pop();
            return Err(PatchError::Malformed(format!("invalid patch: {field} must be a list")));
        }
    };
    path.pop();
    let Some((merged, original_list)) = result else {
        return Ok(());
    };
    let of_maps = merged.iter().any(Value::is_object);
    let ordered = match (&merge_key, of_maps) {
        (Some(key), true) => {
            if let Some(item) = order.iter().find(|item| item.get(key).is_none()) {
                return Err(missing_merge_key(item, key));
            }
            let identity = |item: &Value| item.get(key.as_str()).cloned();
            order_like_patch(merged, order, &original_list, &identity)
        }
        _ => order_like_patch(merged, order, &original_list, &|item: &Value| Some(item.clone())),
    };
    original.insert(field.to_string(), Value::Array(ordered));
    Ok(())
}

/// Orders a merged list: the elements whose identity appears in `order` follow that order; the others (only on
/// the server) keep their relative order, and each goes before a patch element that came after it in `original`.
fn order_like_patch(
    merged: Vec<Value>,
    order: &[Value],
    original: &[Value],
    identity: &dyn Fn(&Value) -> Option<Value>,
) -> Vec<Value> {
    let position_in = |list: &[Value], item: &Value| -> Option<usize> {
        let id = identity(item)?;
        list.iter().position(|other| identity(other).is_some_and(|other_id| same_value(&other_id, &id)))
    };
    let (mut named, server_only): (Vec<Value>, Vec<Value>) =
        merged.into_iter().partition(|item| position_in(order, item).is_some());
    named.sort_by_key(|item| position_in(order, item));

    let mut result = Vec::with_capacity(named.len() + server_only.len());
    let mut named = named.into_iter().peekable();
    let mut server_only = server_only.into_iter().peekable();
    loop {
        match (server_only.peek(), named.peek()) {
            (Some(left), Some(right)) => {
                let left_first = match (position_in(original, left), position_in(original, right)) {
                    (Some(l), Some(r)) => l < r,
                    _ => false,
                };
                let next = if left_first { server_only.next() } else { named.next() };
                result.extend(next);
            }
            (Some(_), None) => result.extend(server_only.next()),
            (None, Some(_)) => result.extend(named.next()),
            (None, None) => break,
        }
    }
    result
}

/// Handles `$retainKeys`: the original keeps only the listed keys, and the patch may only set listed keys.
fn apply_retain_keys(
    original: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    retain: &Value,
) -> Result<(), PatchError> {
    let Some(retain) = retain.as_array() else {
        return Err(PatchError::Malformed("invalid patch: the $retainKeys directive must be a list".to_string()));
    };
    let retained: HashSet<&str> = retain.iter().filter_map(Value::as_str).collect();
    for (key, value) in patch {
        if value.is_null() || key.starts_with('$') {
            continue;
        }
        if !retained.contains(key.as_str()) {
            return Err(PatchError::Malformed(format!(
                "invalid patch: field {key:?} is set but missing from the $retainKeys list"
            )));
        }
    }
    original.retain(|key, _| retained.contains(key.as_str()));
    Ok(())
}

fn unknown_directive(directive: &Value, within: &Map<String, Value>) -> PatchError {
    PatchError::Malformed(format!("unknown patch type: {directive} in map: {}", Value::Object(within.clone())))
}

fn missing_merge_key(item: &Value, merge_key: &str) -> PatchError {
    PatchError::Malformed(format!("map: {item} does not contain declared merge key: {merge_key}"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::apiserver::patch::test_facts::workload_facts;
    use crate::apiserver::schema::NoFacts;

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {
                "replicas": 1,
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                "template": {"spec": {"containers": [
                    {"name": "c", "image": "nginx:1", "ports": [{"containerPort": 80, "protocol": "TCP"}]},
                    {"name": "sidecar", "image": "busybox"}
                ]}}
            }
        })
    }

    #[test]
    fn kubectl_client_side_apply_body_updates_the_named_container() {
        let patch = json!({
            "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            "spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "c"}, {"name": "sidecar"}],
                "containers": [{"image": "nginx:2", "name": "c"}]
            }}}
        });
        let patched = strategic_merge_patch(&deployment(), &patch, &workload_facts()).unwrap();
        let containers = &patched["spec"]["template"]["spec"]["containers"];
        assert_eq!(containers.as_array().unwrap().len(), 2);
        assert_eq!(containers[0]["name"], "c");
        assert_eq!(containers[0]["image"], "nginx:2");
        // Fields the patch does not mention survive inside the merged element.
        assert_eq!(containers[0]["ports"], json!([{"containerPort": 80, "protocol": "TCP"}]));
        assert_eq!(containers[1]["name"], "sidecar");
        assert_eq!(patched["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"], "{}");
        assert_eq!(patched["metadata"]["labels"], json!({"app": "web"}));
    }

    #[test]
    fn set_element_order_reorders_and_places_new_elements() {
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "new"}, {"name": "sidecar"}, {"name": "c"}],
            "containers": [{"name": "new", "image": "redis"}]
        }}}});
        let patched = strategic_merge_patch(&deployment(), &patch, &workload_facts()).unwrap();
        let names: Vec<_> = patched["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(names, ["new", "sidecar", "c"]);
    }

    #[test]
    fn new_elements_without_an_order_go_first_in_patch_order_like_upstream() {
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "z", "image": "z"}, {"name": "a", "image": "a"}
        ]}}}});
        let patched = strategic_merge_patch(&deployment(), &patch, &workload_facts()).unwrap();
        let names: Vec<_> = patched["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(names, ["z", "a", "c", "sidecar"]);
    }

    #[test]
    fn patch_delete_removes_a_list_element_by_key() {
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}}});
        let patched = strategic_merge_patch(&deployment(), &patch, &workload_facts()).unwrap();
        let containers = patched["spec"]["template"]["spec"]["containers"].as_array().unwrap();
        assert_eq!(containers.len(), 1);
        assert_eq!(containers[0]["name"], "c");
    }

    #[test]
    fn patch_replace_in_a_list_discards_the_original_elements() {
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"$patch": "replace"}, {"name": "only", "image": "x"}
        ]}}}});
        let patched = strategic_merge_patch(&deployment(), &patch, &workload_facts()).unwrap();
        assert_eq!(patched["spec"]["template"]["spec"]["containers"], json!([{"name": "only", "image": "x"}]));
    }

    #[test]
    fn patch_replace_and_delete_in_a_map() {
        let replace = json!({"metadata": {"labels": {"$patch": "replace", "tier": "front"}}});
        let patched = strategic_merge_patch(&deployment(), &replace, &workload_facts()).unwrap();
        assert_eq!(patched["metadata"]["labels"], json!({"tier": "front"}));
        let delete = json!({"spec": {"strategy": {"$patch": "delete"}}});
        let patched = strategic_merge_patch(&deployment(), &delete, &workload_facts()).unwrap();
        assert_eq!(patched["spec"]["strategy"], json!({}));
    }

    #[test]
    fn retain_keys_switching_to_recreate_drops_rolling_update() {
        let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null}}});
        let patched = strategic_merge_patch(&deployment(), &patch, &workload_facts()).unwrap();
        assert_eq!(patched["spec"]["strategy"], json!({"type": "Recreate"}));
        // Even without the explicit null, $retainKeys alone clears the unlisted key.
        let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}});
        let patched = strategic_merge_patch(&deployment(), &patch, &workload_facts()).unwrap();
        assert_eq!(patched["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn retain_keys_in_a_volume_element_switches_its_source() {
        // What kubectl sends when a volume changes from emptyDir to configMap.
        let original = json!({"spec": {"template": {"spec": {"volumes": [
            {"name": "data", "emptyDir": {}},
            {"name": "other", "secret": {"secretName": "s"}}
        ]}}}});
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/volumes": [{"name": "data"}, {"name": "other"}],
            "volumes": [{"$retainKeys": ["configMap", "name"], "configMap": {"name": "cm"}, "name": "data"}]
        }}}});
        let patched = strategic_merge_patch(&original, &patch, &workload_facts()).unwrap();
        assert_eq!(
            patched["spec"]["template"]["spec"]["volumes"],
            json!([{"name": "data", "configMap": {"name": "cm"}}, {"name": "other", "secret": {"secretName": "s"}}])
        );
    }

    #[test]
    fn set_element_order_for_a_primitive_list_with_deletions() {
        let original = json!({"metadata": {"finalizers": ["a", "b", "c"]}});
        let patch = json!({"metadata": {
            "$setElementOrder/finalizers": ["c", "d", "a"],
            "$deleteFromPrimitiveList/finalizers": ["b"],
            "finalizers": ["d"]
        }});
        let patched = strategic_merge_patch(&original, &patch, &workload_facts()).unwrap();
        assert_eq!(patched["metadata"]["finalizers"], json!(["c", "d", "a"]));
    }

    #[test]
    fn retain_keys_rejects_a_patch_setting_an_unlisted_key() {
        let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {"maxSurge": 1}}}});
        let error = strategic_merge_patch(&deployment(), &patch, &workload_facts()).unwrap_err();
        assert!(matches!(error, PatchError::Malformed(_)), "{error:?}");
    }

    #[test]
    fn primitive_merge_lists_are_unioned_and_deleted_from() {
        let original = json!({"metadata": {"finalizers": ["a", "b"]}});
        let patch = json!({"metadata": {"finalizers": ["c", "a"]}});
        let patched = strategic_merge_patch(&original, &patch, &workload_facts()).unwrap();
        assert_eq!(patched["metadata"]["finalizers"], json!(["c", "a", "b"]));

        let patch = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"], "finalizers": ["d"]}});
        let patched = strategic_merge_patch(&original, &patch, &workload_facts()).unwrap();
        assert_eq!(patched["metadata"]["finalizers"], json!(["d", "b"]));
    }

    #[test]
    fn lists_without_merge_strategy_are_replaced() {
        let original = json!({"spec": {"template": {"spec": {"tolerations": [{"key": "a"}, {"key": "b"}]}}}});
        let patch = json!({"spec": {"template": {"spec": {"tolerations": [{"key": "c"}]}}}});
        let patched = strategic_merge_patch(&original, &patch, &workload_facts()).unwrap();
        assert_eq!(patched["spec"]["template"]["spec"]["tolerations"], json!([{"key": "c"}]));
        // And with no facts at all every list is replaced.
        let original = json!({"spec": {"containers": [{"name": "a"}]}});
        let patch = json!({"spec": {"containers": [{"name": "b"}]}});
        let patched = strategic_merge_patch(&original, &patch, &NoFacts).unwrap();
        assert_eq!(patched["spec"]["containers"], json!([{"name": "b"}]));
    }

    #[test]
    fn nested_merge_lists_merge_by_their_own_key() {
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "c", "ports": [{"containerPort": 443, "protocol": "TCP"}], "env": [{"name": "X", "value": "1"}]}
        ]}}}});
        let patched = strategic_merge_patch(&deployment(), &patch, &workload_facts()).unwrap();
        let container = &patched["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["ports"].as_array().unwrap().len(), 2);
        assert_eq!(container["env"], json!([{"name": "X", "value": "1"}]));
    }

    #[test]
    fn nulls_delete_and_new_maps_lose_their_directives() {
        let patch = json!({"metadata": {"labels": {"app": null}, "annotations": {"a": "1", "b": null}}});
        let patched = strategic_merge_patch(&deployment(), &patch, &workload_facts()).unwrap();
        assert_eq!(patched["metadata"]["labels"], json!({}));
        assert_eq!(patched["metadata"]["annotations"], json!({"a": "1"}));
    }

    #[test]
    fn malformed_patches_are_rejected() {
        let facts = workload_facts();
        let unknown = json!({"spec": {"$frobnicate": 1}});
        assert!(matches!(strategic_merge_patch(&deployment(), &unknown, &facts), Err(PatchError::Malformed(_))));
        let bad_directive = json!({"metadata": {"labels": {"$patch": "explode"}}});
        assert!(matches!(strategic_merge_patch(&deployment(), &bad_directive, &facts), Err(PatchError::Malformed(_))));
        let no_key = json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}});
        let error = strategic_merge_patch(&deployment(), &no_key, &facts).unwrap_err();
        assert!(error.to_string().contains("does not contain declared merge key: name"), "{error}");
        let not_an_object = json!([1, 2]);
        let error = strategic_merge_patch(&deployment(), &not_an_object, &facts).unwrap_err();
        assert_eq!(error.status_code(), 400);
    }
}
