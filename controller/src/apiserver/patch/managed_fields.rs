//! Field ownership: which field manager set which fields, as kept in `metadata.managedFields`.
//!
//! A field set is a tree in upstream's `FieldsV1` shape. Path elements are `f:<field>` for a field or map key,
//! `k:<json object>` for an element of a list-type=map list (its key fields, sorted), `v:<json>` for an element
//! of a set. A node is a member of the set when it is owned itself: leaves always, list elements as `"."`.
//! Maps with content are never members themselves, only their leaves are (upstream also marks maps that a
//! write created; we leave that out, it only changes how the set prints).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{apply_list_kind, facts_at, is_atomic_map, same_value, ListKind};
use crate::apiserver::schema::{FieldFacts, FieldFactsSource};

/// Metadata fields upstream never records ownership of: the server sets them, or they identify the object.
const UNTRACKED_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "managedFields",
    "selfLink",
];

pub(crate) const OPERATION_APPLY: &str = "Apply";
pub(crate) const OPERATION_UPDATE: &str = "Update";

/// Records a non-apply write (create, update, patch, a subresource write) in `new`'s `metadata.managedFields`:
/// `manager` gets an `Update` entry owning every field this write added or changed, every other manager loses
/// those fields (an Update always wins), and everybody loses fields the write removed. Entries left empty are
/// dropped.
///
/// The managed fields come from `new` when the request carried a non-empty list (that is how clients reset
/// them), otherwise from `old`. On the main resource `status` is not tracked and on the `status` subresource
/// `spec` is not, as for kinds whose status has its own subresource. Call it after defaulting, so that
/// defaulted fields belong to the writer as they do upstream.
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    operation_subresource: Option<&str>,
    api_version: &str,
    now: &str,
    facts: &dyn FieldFactsSource,
) {
    let from_request = new.pointer("/metadata/managedFields").and_then(Value::as_array).is_some_and(|l| !l.is_empty());
    let mut entries = if from_request { read_entries(new) } else { old.map(read_entries).unwrap_or_default() };

    let nothing = Value::Object(Map::new());
    let old_view = tracked_view(old.unwrap_or(&nothing), operation_subresource);
    let new_view = tracked_view(new, operation_subresource);
    let comparison = compare(&old_view, &new_view, facts);
    let mut changed = comparison.added;
    changed.union_with(&comparison.modified);

    let is_writer = |entry: &ManagerEntry| entry.is(manager, OPERATION_UPDATE, api_version, operation_subresource);
    for entry in &mut entries {
        if !is_writer(entry) {
            entry.fields = entry.fields.difference(&changed);
        }
        entry.fields.remove_subtrees(&comparison.removed);
    }
    if !changed.is_empty() {
        match entries.iter_mut().find(|entry| is_writer(entry)) {
            Some(entry) => {
                entry.fields.union_with(&changed);
                entry.time = Some(now.to_string());
            }
            None => entries.push(ManagerEntry {
                manager: manager.to_string(),
                operation: OPERATION_UPDATE.to_string(),
                api_version: api_version.to_string(),
                time: Some(now.to_string()),
                subresource: operation_subresource.map(str::to_string),
                fields: changed,
            }),
        }
    }
    write_entries(new, entries);
}

/// A set of field paths; see the module documentation for the shape.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FieldSet {
    member: bool,
    children: BTreeMap<String, FieldSet>,
}

impl FieldSet {
    /// Reads a `fieldsV1` value. Anything that is not an object reads as the empty set.
    pub(crate) fn from_fields_v1(value: &Value) -> FieldSet {
        let mut set = FieldSet::default();
        if let Value::Object(map) = value {
            for (key, child) in map {
                if key == "." {
                    set.member = true;
                } else {
                    let mut node = FieldSet::from_fields_v1(child);
                    if node.children.is_empty() {
                        node.member = true;
                    }
                    set.children.insert(key.clone(), node);
                }
            }
        }
        set
    }

    /// Writes the set as a `fieldsV1` value: `{}` for a leaf, `"."` for an owned node that has children.
    pub(crate) fn to_fields_v1(&self) -> Value {
        let mut map = Map::new();
        for (key, child) in &self.children {
            if !child.is_empty() {
                map.insert(key.clone(), child.node_to_fields_v1());
            }
        }
        Value::Object(map)
    }

    fn node_to_fields_v1(&self) -> Value {
        let Value::Object(mut map) = self.to_fields_v1() else { unreachable!("to_fields_v1 writes an object") };
        if self.member && !map.is_empty() {
            map.insert(".".to_string(), Value::Object(Map::new()));
        }
        Value::Object(map)
    }

    /// True when no path is a member.
    pub(crate) fn is_empty(&self) -> bool {
        !self.member && self.children.values().all(FieldSet::is_empty)
    }

    /// The node at `path`, created (not a member) where missing.
    fn node_mut(&mut self, path: &[String]) -> &mut FieldSet {
        path.iter().fold(self, |node, element| node.children.entry(element.clone()).or_default())
    }

    /// Makes `path` a member.
    pub(crate) fn insert(&mut self, path: &[String]) {
        self.node_mut(path).member = true;
    }

    /// Adds every member of `other`.
    pub(crate) fn union_with(&mut self, other: &FieldSet) {
        self.member |= other.member;
        for (key, child) in &other.children {
            self.children.entry(key.clone()).or_default().union_with(child);
        }
    }

    /// The members of `self` that are not members of `other`.
    pub(crate) fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut result = FieldSet { member: self.member && !other.member, children: BTreeMap::new() };
        for (key, child) in &self.children {
            let remaining = match other.children.get(key) {
                Some(other_child) => child.difference(other_child),
                None => child.clone(),
            };
            if !remaining.is_empty() {
                result.children.insert(key.clone(), remaining);
            }
        }
        result
    }

    /// The members of both sets.
    pub(crate) fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut result = FieldSet { member: self.member && other.member, children: BTreeMap::new() };
        for (key, child) in &self.children {
            if let Some(other_child) = other.children.get(key) {
                let both = child.intersection(other_child);
                if !both.is_empty() {
                    result.children.insert(key.clone(), both);
                }
            }
        }
        result
    }

    /// Removes, for every member of `removed`, that path and everything below it.
    pub(crate) fn remove_subtrees(&mut self, removed: &FieldSet) {
        for (key, gone) in &removed.children {
            if gone.member {
                self.children.remove(key);
            } else if let Some(child) = self.children.get_mut(key) {
                child.remove_subtrees(gone);
                if child.is_empty() {
                    self.children.remove(key);
                }
            }
        }
    }

    /// True when this node or anything below it is a member.
    fn has_any_member(&self) -> bool {
        !self.is_empty()
    }

    /// Every member path, in order.
    pub(crate) fn members(&self) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        self.collect_members(&mut Vec::new(), &mut out);
        out
    }

    fn collect_members(&self, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        if self.member && !prefix.is_empty() {
            out.push(prefix.clone());
        }
        for (key, child) in &self.children {
            prefix.push(key.clone());
            child.collect_members(prefix, out);
            prefix.pop();
        }
    }
}

/// Upstream's notation for a field path in messages: `.spec.containers[name="c"].image`, `.metadata.finalizers[="x"]`.
pub(crate) fn display_path(path: &[String]) -> String {
    let mut out = String::new();
    for element in path {
        if let Some(field) = element.strip_prefix("f:") {
            out.push('.');
            out.push_str(field);
        } else if let Some(key) = element.strip_prefix("k:") {
            let fields: Vec<String> = match serde_json::from_str::<Map<String, Value>>(key) {
                Ok(map) => map.iter().map(|(name, value)| format!("{name}={value}")).collect(),
                Err(_) => vec![key.to_string()],
            };
            out.push_str(&format!("[{}]", fields.join(",")));
        } else if let Some(value) = element.strip_prefix("v:") {
            out.push_str(&format!("[={value}]"));
        } else if let Some(index) = element.strip_prefix("i:") {
            out.push_str(&format!("[{index}]"));
        } else {
            out.push_str(element);
        }
    }
    out
}

/// One `metadata.managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ManagerEntry {
    pub(crate) manager: String,
    pub(crate) operation: String,
    pub(crate) api_version: String,
    pub(crate) time: Option<String>,
    pub(crate) subresource: Option<String>,
    pub(crate) fields: FieldSet,
}

impl ManagerEntry {
    /// Whether this entry is the one a write by this manager updates. Upstream identifies appliers without
    /// their API version (an applier keeps one entry whatever version it applies in) and updaters with it.
    pub(crate) fn is(&self, manager: &str, operation: &str, api_version: &str, subresource: Option<&str>) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource.as_deref() == subresource
            && (operation == OPERATION_APPLY || self.api_version == api_version)
    }

    fn from_json(value: &Value) -> ManagerEntry {
        let text = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_string);
        let fields = match (text("fieldsType").as_deref(), value.get("fieldsV1")) {
            (Some("FieldsV1") | None, Some(fields)) => FieldSet::from_fields_v1(fields),
            _ => FieldSet::default(),
        };
        ManagerEntry {
            manager: text("manager").unwrap_or_default(),
            operation: text("operation").unwrap_or_default(),
            api_version: text("apiVersion").unwrap_or_default(),
            time: text("time"),
            subresource: text("subresource").filter(|s| !s.is_empty()),
            fields,
        }
    }

    fn to_json(&self) -> Value {
        let mut entry = Map::new();
        entry.insert("manager".to_string(), Value::String(self.manager.clone()));
        entry.insert("operation".to_string(), Value::String(self.operation.clone()));
        entry.insert("apiVersion".to_string(), Value::String(self.api_version.clone()));
        if let Some(time) = &self.time {
            entry.insert("time".to_string(), Value::String(time.clone()));
        }
        entry.insert("fieldsType".to_string(), Value::String("FieldsV1".to_string()));
        entry.insert("fieldsV1".to_string(), self.fields.to_fields_v1());
        if let Some(subresource) = &self.subresource {
            entry.insert("subresource".to_string(), Value::String(subresource.clone()));
        }
        Value::Object(entry)
    }

    /// Upstream's order: Apply before Update, then oldest first, then by manager, API version and subresource.
    fn sort_key(&self) -> (bool, Option<jiff::Timestamp>, &str, &str, &str) {
        (
            self.operation != OPERATION_APPLY,
            self.time.as_deref().and_then(|time| time.parse().ok()),
            &self.manager,
            &self.api_version,
            self.subresource.as_deref().unwrap_or_default(),
        )
    }
}

/// The managed fields entries of an object.
pub(crate) fn read_entries(object: &Value) -> Vec<ManagerEntry> {
    object
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|entries| entries.iter().map(ManagerEntry::from_json).collect())
        .unwrap_or_default()
}

/// Writes the entries that still own something, sorted, into `metadata.managedFields` (removing the field when
/// none is left).
pub(crate) fn write_entries(object: &mut Value, mut entries: Vec<ManagerEntry>) {
    entries.retain(|entry| !entry.fields.is_empty());
    entries.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    let Value::Object(root) = object else { return };
    if entries.is_empty() {
        if let Some(Value::Object(metadata)) = root.get_mut("metadata") {
            metadata.remove("managedFields");
        }
        return;
    }
    let metadata = root.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(metadata) = metadata {
        metadata.insert("managedFields".to_string(), Value::Array(entries.iter().map(ManagerEntry::to_json).collect()));
    }
}

/// The part of an object whose fields have owners: without apiVersion, kind, the server-owned metadata, and the
/// half (status or the rest) that the written endpoint resets.
pub(crate) fn tracked_view(object: &Value, subresource: Option<&str>) -> Value {
    let mut view = object.clone();
    if let Value::Object(root) = &mut view {
        root.remove("apiVersion");
        root.remove("kind");
        if subresource == Some("status") {
            root.remove("spec");
        } else {
            root.remove("status");
        }
        if let Some(Value::Object(metadata)) = root.get_mut("metadata") {
            for field in UNTRACKED_METADATA {
                metadata.remove(*field);
            }
            if metadata.is_empty() {
                root.remove("metadata");
            }
        }
    }
    view
}

/// How a value is walked: as one leaf, as a map of fields, or as a list of identified elements.
enum Shape<'a> {
    Leaf,
    Map(&'a Map<String, Value>),
    List(ListKind, &'a Vec<Value>),
}

fn shape<'a>(value: &'a Value, facts: &FieldFacts) -> Shape<'a> {
    match value {
        Value::Object(map) if !is_atomic_map(facts) => Shape::Map(map),
        Value::Array(items) => match apply_list_kind(facts) {
            ListKind::Atomic => Shape::Leaf,
            kind => Shape::List(kind, items),
        },
        _ => Shape::Leaf,
    }
}

/// The path element of one list element: `k:{"name":"c"}` or `v:"value"`.
pub(crate) fn element_key(item: &Value, kind: &ListKind) -> Result<String, String> {
    match kind {
        ListKind::Set => Ok(format!("v:{item}")),
        ListKind::Map(keys) => {
            let Value::Object(fields) = item else {
                return Err(format!("element {item} of an associative list is not an object"));
            };
            let mut key = Map::new();
            for name in keys {
                match fields.get(name).filter(|value| !value.is_null()) {
                    Some(value) => {
                        key.insert(name.clone(), value.clone());
                    }
                    // Every `protocol` key of the built-in kinds defaults to TCP; upstream's apply schema carries
                    // that default, the OpenAPI facts we have do not.
                    None if name == "protocol" => {
                        key.insert(name.clone(), Value::String("TCP".to_string()));
                    }
                    None => {
                        return Err(format!(
                            "associative list with keys has an element that omits key field {name:?} (and doesn't \
                             have default value)"
                        ));
                    }
                }
            }
            Ok(format!("k:{}", Value::Object(key)))
        }
        ListKind::Atomic => Err("an atomic list has no element keys".to_string()),
    }
}

/// The fields set in `object`: every leaf, every list element, every empty map. This is the set an applier owns.
pub(crate) fn field_set_of(object: &Value, facts: &dyn FieldFactsSource) -> Result<FieldSet, String> {
    let mut set = FieldSet::default();
    if let Value::Object(map) = object {
        collect_map(map, &mut Vec::new(), facts, &mut set)?;
    }
    Ok(set)
}

fn collect_map(
    map: &Map<String, Value>,
    path: &mut Vec<String>,
    facts: &dyn FieldFactsSource,
    into: &mut FieldSet,
) -> Result<(), String> {
    for (key, value) in map {
        path.push(key.clone());
        let result = collect_value(value, path, facts, into.children.entry(format!("f:{key}")).or_default());
        path.pop();
        result?;
    }
    Ok(())
}

fn collect_value(
    value: &Value,
    path: &mut Vec<String>,
    facts: &dyn FieldFactsSource,
    node: &mut FieldSet,
) -> Result<(), String> {
    match shape(value, &facts_at(facts, path)) {
        Shape::Leaf => node.member = true,
        Shape::Map(map) if map.is_empty() => node.member = true,
        Shape::Map(map) => collect_map(map, path, facts, node)?,
        Shape::List(_, items) if items.is_empty() => node.member = true,
        Shape::List(kind, items) => {
            for item in items {
                let key = element_key(item, &kind)?;
                if node.children.contains_key(&key) {
                    return Err(format!("duplicate entries for key {}", display_path(&[key])));
                }
                let element = node.children.entry(key).or_default();
                element.member = true;
                if let Value::Object(fields) = item {
                    collect_map(fields, path, facts, element)?;
                }
            }
        }
    }
    Ok(())
}

/// What changed between two versions of an object, as field sets. `removed` members stand for whole subtrees.
#[derive(Debug, Default)]
pub(crate) struct Comparison {
    pub(crate) added: FieldSet,
    pub(crate) modified: FieldSet,
    pub(crate) removed: FieldSet,
}

/// Compares two objects field by field, matching list elements by their keys.
pub(crate) fn compare(old: &Value, new: &Value, facts: &dyn FieldFactsSource) -> Comparison {
    let mut comparison = Comparison::default();
    let empty = Map::new();
    let old_map = old.as_object().unwrap_or(&empty);
    let new_map = new.as_object().unwrap_or(&empty);
    compare_maps(old_map, new_map, &mut Vec::new(), &mut Vec::new(), facts, &mut comparison);
    comparison
}

fn compare_maps(
    old: &Map<String, Value>,
    new: &Map<String, Value>,
    path: &mut Vec<String>,
    set_path: &mut Vec<String>,
    facts: &dyn FieldFactsSource,
    out: &mut Comparison,
) {
    for (key, new_value) in new {
        path.push(key.clone());
        set_path.push(format!("f:{key}"));
        match old.get(key) {
            Some(old_value) => compare_values(old_value, new_value, path, set_path, facts, out),
            None => record_added(new_value, path, set_path, facts, out),
        }
        path.pop();
        set_path.pop();
    }
    for key in old.keys().filter(|key| !new.contains_key(*key)) {
        set_path.push(format!("f:{key}"));
        out.removed.insert(set_path);
        set_path.pop();
    }
}

fn compare_values(
    old: &Value,
    new: &Value,
    path: &mut Vec<String>,
    set_path: &mut Vec<String>,
    facts: &dyn FieldFactsSource,
    out: &mut Comparison,
) {
    let field_facts = facts_at(facts, path);
    match (shape(old, &field_facts), shape(new, &field_facts)) {
        (Shape::Map(old_map), Shape::Map(new_map)) => compare_maps(old_map, new_map, path, set_path, facts, out),
        (Shape::List(kind, old_items), Shape::List(_, new_items)) => {
            if compare_lists(&kind, old_items, new_items, path, set_path, facts, out).is_err() && !same_value(old, new)
            {
                out.modified.insert(set_path);
            }
        }
        _ => {
            if !same_value(old, new) {
                out.modified.insert(set_path);
            }
        }
    }
}

fn compare_lists(
    kind: &ListKind,
    old: &[Value],
    new: &[Value],
    path: &mut Vec<String>,
    set_path: &mut Vec<String>,
    facts: &dyn FieldFactsSource,
    out: &mut Comparison,
) -> Result<(), String> {
    let old_keys = old.iter().map(|item| element_key(item, kind)).collect::<Result<Vec<_>, _>>()?;
    let new_keys = new.iter().map(|item| element_key(item, kind)).collect::<Result<Vec<_>, _>>()?;
    for (new_item, key) in new.iter().zip(&new_keys) {
        set_path.push(key.clone());
        match old_keys.iter().position(|old_key| old_key == key) {
            Some(index) => {
                if let (Value::Object(old_map), Value::Object(new_map)) = (&old[index], new_item) {
                    compare_maps(old_map, new_map, path, set_path, facts, out);
                }
            }
            None => {
                let mut element = FieldSet { member: true, children: BTreeMap::new() };
                if let Value::Object(fields) = new_item {
                    // The key was computable, so the element's fields can be walked; a nested failure only
                    // costs the finer detail.
                    let _ = collect_map(fields, path, facts, &mut element);
                }
                out.added.node_mut(set_path).union_with(&element);
            }
        }
        set_path.pop();
    }
    for key in old_keys.iter().filter(|key| !new_keys.contains(key)) {
        set_path.push(key.clone());
        out.removed.insert(set_path);
        set_path.pop();
    }
    Ok(())
}

fn record_added(
    value: &Value,
    path: &mut Vec<String>,
    set_path: &[String],
    facts: &dyn FieldFactsSource,
    out: &mut Comparison,
) {
    let mut node = FieldSet::default();
    if collect_value(value, path, facts, &mut node).is_err() {
        // A list whose elements cannot be identified is owned as a whole.
        node = FieldSet { member: true, children: BTreeMap::new() };
    }
    out.added.node_mut(set_path).union_with(&node);
}

/// Removes the members of `remove` from `object`, except where `keep` owns something at or below a path (then
/// only the parts nobody keeps go). Maps and lists that become empty this way go too. The key fields of a list
/// element that stays are never removed.
pub(crate) fn remove_fields(object: &mut Value, remove: &FieldSet, keep: &FieldSet, facts: &dyn FieldFactsSource) {
    if let Value::Object(map) = object {
        prune_map(map, remove, Some(keep), &mut Vec::new(), facts);
    }
}

fn prune_map(
    map: &mut Map<String, Value>,
    remove: &FieldSet,
    keep: Option<&FieldSet>,
    path: &mut Vec<String>,
    facts: &dyn FieldFactsSource,
) {
    for (element, remove_child) in &remove.children {
        let Some(field) = element.strip_prefix("f:") else { continue };
        let keep_child = keep.and_then(|keep| keep.children.get(element));
        let kept = keep_child.is_some_and(FieldSet::has_any_member);
        if remove_child.member && !kept {
            map.remove(field);
            continue;
        }
        let Some(value) = map.get_mut(field) else { continue };
        path.push(field.to_string());
        let emptied = prune_value(value, remove_child, keep_child, path, facts);
        path.pop();
        if emptied {
            map.remove(field);
        }
    }
}

/// Prunes inside one value; true when it was not empty before and is now.
fn prune_value(
    value: &mut Value,
    remove: &FieldSet,
    keep: Option<&FieldSet>,
    path: &mut Vec<String>,
    facts: &dyn FieldFactsSource,
) -> bool {
    if remove.children.is_empty() {
        return false;
    }
    let field_facts = facts_at(facts, path);
    match value {
        Value::Object(map) if !is_atomic_map(&field_facts) => {
            let before = map.len();
            prune_map(map, remove, keep, path, facts);
            before > 0 && map.is_empty()
        }
        Value::Array(items) => {
            let kind = apply_list_kind(&field_facts);
            if kind == ListKind::Atomic {
                return false;
            }
            let before = items.len();
            items.retain_mut(|item| {
                let Ok(key) = element_key(item, &kind) else { return true };
                let Some(remove_element) = remove.children.get(&key) else { return true };
                let keep_element = keep.and_then(|keep| keep.children.get(&key));
                if remove_element.member && !keep_element.is_some_and(FieldSet::has_any_member) {
                    return false;
                }
                if let (Value::Object(fields), ListKind::Map(key_fields)) = (item, &kind) {
                    let saved: Vec<(String, Value)> = key_fields
                        .iter()
                        .filter_map(|name| fields.get(name).map(|value| (name.clone(), value.clone())))
                        .collect();
                    prune_map(fields, remove_element, keep_element, path, facts);
                    for (name, value) in saved {
                        fields.insert(name, value);
                    }
                }
                true
            });
            before > 0 && items.is_empty()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::apiserver::patch::test_facts::workload_facts;

    const NOW: &str = "2026-01-02T03:04:05Z";

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "uid": "u-1", "labels": {"app": "web"}},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {"containers": [{"name": "c", "image": "nginx:1", "resources": {}}]}}
            },
            "status": {}
        })
    }

    #[test]
    fn fields_v1_round_trips() {
        let fields = json!({
            "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
            "f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {".": {}, "f:image": {}, "f:name": {}}}}
        });
        let set = FieldSet::from_fields_v1(&fields);
        assert_eq!(set.to_fields_v1(), fields);
        assert_eq!(set.members().len(), 5);
    }

    #[test]
    fn set_operations() {
        let a = FieldSet::from_fields_v1(&json!({"f:spec": {"f:replicas": {}, "f:paused": {}}}));
        let b = FieldSet::from_fields_v1(&json!({"f:spec": {"f:replicas": {}}}));
        assert_eq!(a.difference(&b).to_fields_v1(), json!({"f:spec": {"f:paused": {}}}));
        assert_eq!(a.intersection(&b), b);
        let mut c = a.clone();
        c.remove_subtrees(&FieldSet::from_fields_v1(&json!({"f:spec": {}})));
        assert!(c.is_empty());
    }

    #[test]
    fn display_paths_use_upstream_notation() {
        let path = ["f:spec", "f:containers", "k:{\"name\":\"c\"}", "f:image"].map(String::from);
        assert_eq!(display_path(&path), ".spec.containers[name=\"c\"].image");
        let path = ["f:metadata", "f:finalizers", "v:\"x\""].map(String::from);
        assert_eq!(display_path(&path), ".metadata.finalizers[=\"x\"]");
    }

    #[test]
    fn list_map_and_set_elements_get_their_keys() {
        let object = json!({
            "metadata": {"finalizers": ["example.com/x"]},
            "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80}], "args": ["a"]}]}
        });
        let set = field_set_of(&object, &workload_facts()).unwrap();
        assert_eq!(
            set.to_fields_v1(),
            json!({
                "f:metadata": {"f:finalizers": {"v:\"example.com/x\"": {}}},
                "f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {
                    ".": {}, "f:args": {}, "f:name": {},
                    "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}
                }}}
            })
        );
    }

    #[test]
    fn missing_key_fields_and_duplicates_are_errors() {
        let facts = workload_facts();
        let no_name = json!({"spec": {"containers": [{"image": "x"}]}});
        assert!(field_set_of(&no_name, &facts).unwrap_err().contains("omits key field \"name\""));
        let twice = json!({"spec": {"containers": [{"name": "a"}, {"name": "a"}]}});
        assert!(field_set_of(&twice, &facts).unwrap_err().contains("duplicate entries"));
    }

    #[test]
    fn create_records_an_update_entry_for_the_creator() {
        let mut created = deployment();
        record_update(None, &mut created, "kubectl-create", None, "apps/v1", NOW, &workload_facts());
        let entries = created["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0]["manager"], "kubectl-create");
        assert_eq!(entries[0]["operation"], "Update");
        assert_eq!(entries[0]["apiVersion"], "apps/v1");
        assert_eq!(entries[0]["time"], NOW);
        assert_eq!(entries[0]["fieldsType"], "FieldsV1");
        assert!(entries[0].get("subresource").is_none());
        assert_eq!(
            entries[0]["fieldsV1"],
            json!({
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {
                    "f:replicas": {},
                    "f:selector": {},
                    "f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {
                        ".": {}, "f:image": {}, "f:name": {}, "f:resources": {}
                    }}}}
                }
            })
        );
    }

    #[test]
    fn an_update_takes_changed_fields_from_other_managers() {
        let facts = workload_facts();
        let mut live = deployment();
        record_update(None, &mut live, "creator", None, "apps/v1", NOW, &facts);
        let mut updated = live.clone();
        updated["spec"]["replicas"] = json!(3);
        updated["metadata"]["labels"] = json!({});
        record_update(Some(&live), &mut updated, "scaler", None, "apps/v1", "2026-01-02T03:05:00Z", &facts);
        let entries = read_entries(&updated);
        assert_eq!(entries.len(), 2);
        let creator = entries.iter().find(|e| e.manager == "creator").unwrap();
        let scaler = entries.iter().find(|e| e.manager == "scaler").unwrap();
        assert_eq!(scaler.fields.to_fields_v1(), json!({"f:spec": {"f:replicas": {}}}));
        let creator_fields = creator.fields.to_fields_v1();
        assert!(creator_fields["f:spec"].get("f:replicas").is_none());
        // The removed label is nobody's any more.
        assert!(creator_fields.get("f:metadata").is_none());
        assert_eq!(creator.time.as_deref(), Some(NOW));
    }

    #[test]
    fn an_unchanged_write_adds_no_entry_and_status_writes_track_status_only() {
        let facts = workload_facts();
        let mut live = deployment();
        record_update(None, &mut live, "creator", None, "apps/v1", NOW, &facts);
        let mut same = live.clone();
        record_update(Some(&live), &mut same, "noop", None, "apps/v1", NOW, &facts);
        assert_eq!(read_entries(&same).len(), 1);

        let mut with_status = live.clone();
        with_status["status"] = json!({"replicas": 1});
        record_update(Some(&live), &mut with_status, "controller", Some("status"), "apps/v1", NOW, &facts);
        let entries = read_entries(&with_status);
        let controller = entries.iter().find(|e| e.manager == "controller").unwrap();
        assert_eq!(controller.subresource.as_deref(), Some("status"));
        assert_eq!(controller.fields.to_fields_v1(), json!({"f:status": {"f:replicas": {}}}));
    }

    #[test]
    fn removing_fields_keeps_what_others_own_and_element_keys() {
        let facts = workload_facts();
        let mut object = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"containers": [
            {"name": "c", "image": "x", "env": [{"name": "E", "value": "1"}]}
        ]}});
        let remove = FieldSet::from_fields_v1(&json!({
            "f:metadata": {"f:labels": {"f:a": {}}},
            "f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {".": {}, "f:name": {}, "f:image": {}}}}
        }));
        let keep = FieldSet::from_fields_v1(&json!({
            "f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {"f:env": {"k:{\"name\":\"E\"}": {".": {}}}}}}
        }));
        remove_fields(&mut object, &remove, &keep, &facts);
        assert_eq!(object, json!({"spec": {"containers": [{"name": "c", "env": [{"name": "E", "value": "1"}]}]}}));
    }

    #[test]
    fn entries_sort_apply_first_then_by_time() {
        let mut object = json!({"metadata": {}});
        let fields = FieldSet::from_fields_v1(&json!({"f:spec": {"f:x": {}}}));
        let entry = |manager: &str, operation: &str, time: &str| ManagerEntry {
            manager: manager.to_string(),
            operation: operation.to_string(),
            api_version: "v1".to_string(),
            time: Some(time.to_string()),
            subresource: None,
            fields: fields.clone(),
        };
        write_entries(
            &mut object,
            vec![
                entry("b", OPERATION_UPDATE, "2026-01-01T00:00:02Z"),
                entry("a", OPERATION_UPDATE, "2026-01-01T00:00:03Z"),
                entry("z", OPERATION_APPLY, "2026-01-01T00:00:09Z"),
                ManagerEntry { fields: FieldSet::default(), ..entry("empty", OPERATION_UPDATE, NOW) },
            ],
        );
        let managers: Vec<_> = read_entries(&object).into_iter().map(|e| e.manager).collect();
        assert_eq!(managers, ["z", "b", "a"]);
    }
}
