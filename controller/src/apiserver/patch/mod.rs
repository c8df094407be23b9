//! The four ways a client can change an object with PATCH, plus the field ownership bookkeeping
//! (`metadata.managedFields`) that server-side apply needs and every other write keeps up to date.
//!
//! Everything here is a pure function over `serde_json::Value`: the caller decodes the request, loads the live
//! object, and afterwards validates, defaults and stores the result. How lists and maps merge comes from the
//! kind's [`FieldFactsSource`], so the same code serves built-in kinds and custom resources.

mod apply;
mod managed_fields;
mod strategic;

pub use apply::{apply, ApplyRequest};
pub use managed_fields::record_update;
pub use strategic::strategic_merge_patch;

use serde_json::Value;

use crate::apiserver::schema::{FieldFacts, FieldFactsSource};

/// What upstream answers when a patch body does not even have the shape of its patch type; kubectl prints it as is.
const UNPARSABLE_PATCH: &str = "the server rejected our request due to an error in our request";

/// The patch flavour a PATCH request asked for, read from its Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// RFC 6902 JSON patch: a list of operations.
    Json,
    /// RFC 7386 JSON merge patch: a partial object, null deletes.
    Merge,
    /// Kubernetes strategic merge patch: a partial object whose lists merge by key where the schema says so.
    StrategicMerge,
    /// Server-side apply: a partial object whose fields the named field manager then owns.
    Apply,
}

impl PatchType {
    /// The patch type of a Content-Type header value, ignoring parameters such as `charset`; None for anything
    /// else, which the server answers with 415 Unsupported Media Type.
    pub fn from_content_type(content_type: &str) -> Option<PatchType> {
        let media_type = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        match media_type.as_str() {
            "application/json-patch+json" => Some(PatchType::Json),
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::StrategicMerge),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Some(PatchType::Apply),
            _ => None,
        }
    }

    /// The Content-Type a client sends for this patch type (the one upstream lists first).
    pub fn content_type(self) -> &'static str {
        match self {
            PatchType::Json => "application/json-patch+json",
            PatchType::Merge => "application/merge-patch+json",
            PatchType::StrategicMerge => "application/strategic-merge-patch+json",
            PatchType::Apply => "application/apply-patch+yaml",
        }
    }
}

/// Why a JSON, merge or strategic merge patch could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The patch document is not what its patch type requires (not a list of operations, an unknown directive, a
    /// list element without its merge key, ...). The server answers 400 Bad Request.
    #[error("{0}")]
    Malformed(String),
    /// The patch is well formed but does not fit this object (a failing `test`, a path that does not exist).
    /// The server answers 422 Unprocessable Entity.
    #[error("{0}")]
    Unprocessable(String),
}

impl PatchError {
    /// The HTTP status code of the Status the server answers with.
    pub fn status_code(&self) -> u16 {
        match self {
            PatchError::Malformed(_) => 400,
            PatchError::Unprocessable(_) => 422,
        }
    }
}

/// One field that an apply would have taken from another field manager; becomes one `details.causes` entry of
/// the 409 Status, with type `FieldManagerConflict`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConflictCause {
    /// The field in upstream's path notation, e.g. `.spec.replicas` or `.spec.containers[name="c"].image`.
    pub field: String,
    /// Who owns it, e.g. `conflict with "kubectl-client-side-apply" using apps/v1`.
    pub message: String,
}

/// Why a server-side apply failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// The apply changes fields that other managers own and `force` was not set. The server answers
    /// 409 Conflict with reason `Conflict`, this message and one cause per field.
    #[error("{message}")]
    Conflict { message: String, causes: Vec<ConflictCause> },
    /// The applied configuration cannot be merged: not an object, a list element without its key fields,
    /// duplicate keys in a list. The server answers 400 Bad Request.
    #[error("{0}")]
    Malformed(String),
}

impl ApplyError {
    /// The HTTP status code of the Status the server answers with.
    pub fn status_code(&self) -> u16 {
        match self {
            ApplyError::Conflict { .. } => 409,
            ApplyError::Malformed(_) => 400,
        }
    }
}

/// Applies an RFC 6902 JSON patch. Errors carry upstream's wording so clients print familiar messages.
pub fn json_patch(original: &Value, patch: &Value) -> Result<Value, PatchError> {
    if !patch.is_array() {
        return Err(PatchError::Malformed(UNPARSABLE_PATCH.to_string()));
    }
    let operations: json_patch::Patch =
        serde_json::from_value(patch.clone()).map_err(|_| PatchError::Malformed(UNPARSABLE_PATCH.to_string()))?;
    let mut document = original.clone();
    json_patch::patch(&mut document, &operations.0).map_err(|error| describe_json_patch_error(&operations, &error))?;
    Ok(document)
}

/// Applies an RFC 7386 JSON merge patch: objects merge key by key, null removes a key, anything else replaces.
pub fn merge_patch(original: &Value, patch: &Value) -> Value {
    let mut document = original.clone();
    json_patch::merge(&mut document, patch);
    document
}

/// Says which operation failed and why, in the words upstream's JSON patch library uses.
fn describe_json_patch_error(operations: &json_patch::Patch, error: &json_patch::PatchError) -> PatchError {
    use json_patch::{PatchErrorKind, PatchOperation};
    let operation = operations.0.get(error.operation);
    let (name, from) = match operation {
        Some(PatchOperation::Add(_)) => ("add", None),
        Some(PatchOperation::Remove(_)) => ("remove", None),
        Some(PatchOperation::Replace(_)) => ("replace", None),
        Some(PatchOperation::Move(op)) => ("move", Some(op.from.to_string())),
        Some(PatchOperation::Copy(op)) => ("copy", Some(op.from.to_string())),
        Some(PatchOperation::Test(_)) => ("test", None),
        None => ("unknown", None),
    };
    let path = operation.map(|op| op.path().to_string()).unwrap_or_else(|| error.path.to_string());
    let message = match error.kind {
        PatchErrorKind::TestFailed => format!("testing value {path} failed: test failed"),
        PatchErrorKind::InvalidPointer => format!("{name} operation does not apply: doc is missing path: {path}"),
        PatchErrorKind::InvalidFromPointer => {
            format!("{name} operation does not apply: doc is missing from path: {}", from.unwrap_or_default())
        }
        PatchErrorKind::CannotMoveInsideItself => {
            format!("move operation does not apply: cannot move {} into its own child {path}", from.unwrap_or_default())
        }
        ref other => format!("{name} operation does not apply: {other}"),
    };
    PatchError::Unprocessable(message)
}

/// How the elements of one list field are identified when merging, decided from its schema facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ListKind {
    /// Replaced whole; no element has an identity.
    Atomic,
    /// Primitive elements identified by their value.
    Set,
    /// Object elements identified by the values of these fields.
    Map(Vec<String>),
}

/// Server-side apply's view of a list: `x-kubernetes-list-type` first; built-in fields that only carry the older
/// patch metadata count as a map keyed on the merge key (or a set, for primitive lists with strategy merge),
/// which is how upstream derives its apply schema from the same facts.
pub(crate) fn apply_list_kind(facts: &FieldFacts) -> ListKind {
    match facts.list_type.as_deref() {
        Some("atomic") => ListKind::Atomic,
        Some("set") => ListKind::Set,
        Some("map") => {
            if !facts.list_map_keys.is_empty() {
                ListKind::Map(facts.list_map_keys.clone())
            } else if let Some(key) = &facts.patch_merge_key {
                ListKind::Map(vec![key.clone()])
            } else {
                ListKind::Atomic
            }
        }
        _ if has_strategy(facts, "merge") => match &facts.patch_merge_key {
            Some(key) => ListKind::Map(vec![key.clone()]),
            None => ListKind::Set,
        },
        _ => ListKind::Atomic,
    }
}

/// Whether a field's `x-kubernetes-patch-strategy` (a comma separated list) contains `strategy`.
pub(crate) fn has_strategy(facts: &FieldFacts, strategy: &str) -> bool {
    facts.patch_strategy.as_deref().is_some_and(|all| all.split(',').any(|one| one.trim() == strategy))
}

/// Whether a map field is replaced whole rather than merged key by key (`x-kubernetes-map-type: atomic`).
pub(crate) fn is_atomic_map(facts: &FieldFacts) -> bool {
    facts.map_type.as_deref() == Some("atomic")
}

/// Looks up the facts of a path kept as owned strings.
pub(crate) fn facts_at(facts: &dyn FieldFactsSource, path: &[String]) -> FieldFacts {
    let borrowed: Vec<&str> = path.iter().map(String::as_str).collect();
    facts.field_facts(&borrowed)
}

/// JSON equality where 80 and 80.0 are the same number, as they are for Go's decoder that upstream compares with.
pub(crate) fn same_value(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::Number(l), Value::Number(r)) => l == r || (l.as_f64().is_some() && l.as_f64() == r.as_f64()),
        (Value::Array(l), Value::Array(r)) => l.len() == r.len() && l.iter().zip(r).all(|(a, b)| same_value(a, b)),
        (Value::Object(l), Value::Object(r)) => {
            l.len() == r.len() && l.iter().all(|(key, a)| r.get(key).is_some_and(|b| same_value(a, b)))
        }
        _ => left == right,
    }
}

#[cfg(test)]
pub(crate) mod test_facts {
    //! A facts source for tests that mirrors the upstream v1.33 facts of the fields the tests touch.

    use std::collections::HashMap;

    use crate::apiserver::schema::{FieldFacts, FieldFactsSource};

    /// Facts keyed by the dotted path (`spec.template.spec.containers`).
    pub(crate) struct FakeFacts(pub HashMap<String, FieldFacts>);

    impl FieldFactsSource for FakeFacts {
        fn field_facts(&self, path: &[&str]) -> FieldFacts {
            self.0.get(&path.join(".")).cloned().unwrap_or_default()
        }
    }

    fn merge_list(strategy: &str, key: &str, map_keys: &[&str]) -> FieldFacts {
        FieldFacts {
            patch_strategy: Some(strategy.to_string()),
            patch_merge_key: Some(key.to_string()),
            list_type: Some("map".to_string()),
            list_map_keys: map_keys.iter().map(|k| k.to_string()).collect(),
            map_type: None,
        }
    }

    /// The facts of a Deployment (and, under `spec`, of a Pod) as far as the tests need them.
    pub(crate) fn workload_facts() -> FakeFacts {
        let mut facts = HashMap::new();
        for pod_spec in ["spec", "spec.template.spec"] {
            facts.insert(format!("{pod_spec}.containers"), merge_list("merge", "name", &["name"]));
            facts.insert(format!("{pod_spec}.initContainers"), merge_list("merge", "name", &["name"]));
            facts.insert(format!("{pod_spec}.volumes"), merge_list("merge,retainKeys", "name", &["name"]));
            facts.insert(
                format!("{pod_spec}.containers.ports"),
                merge_list("merge", "containerPort", &["containerPort", "protocol"]),
            );
            facts.insert(format!("{pod_spec}.containers.env"), merge_list("merge", "name", &["name"]));
            facts.insert(
                format!("{pod_spec}.containers.args"),
                FieldFacts { list_type: Some("atomic".to_string()), ..FieldFacts::default() },
            );
            facts.insert(
                format!("{pod_spec}.tolerations"),
                FieldFacts { list_type: Some("atomic".to_string()), ..FieldFacts::default() },
            );
            facts.insert(
                format!("{pod_spec}.nodeSelector"),
                FieldFacts { map_type: Some("atomic".to_string()), ..FieldFacts::default() },
            );
        }
        facts.insert(
            "metadata.finalizers".to_string(),
            FieldFacts {
                patch_strategy: Some("merge".to_string()),
                list_type: Some("set".to_string()),
                ..FieldFacts::default()
            },
        );
        facts.insert("metadata.ownerReferences".to_string(), merge_list("merge", "uid", &["uid"]));
        facts.insert("status.conditions".to_string(), merge_list("merge", "type", &["type"]));
        facts.insert(
            "spec.strategy".to_string(),
            FieldFacts { patch_strategy: Some("retainKeys".to_string()), ..FieldFacts::default() },
        );
        facts.insert(
            "spec.selector".to_string(),
            FieldFacts { map_type: Some("atomic".to_string()), ..FieldFacts::default() },
        );
        FakeFacts(facts)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn content_types_map_to_patch_types() {
        assert_eq!(PatchType::from_content_type("application/json-patch+json"), Some(PatchType::Json));
        assert_eq!(PatchType::from_content_type("application/merge-patch+json; charset=utf-8"), Some(PatchType::Merge));
        assert_eq!(
            PatchType::from_content_type("application/strategic-merge-patch+json"),
            Some(PatchType::StrategicMerge)
        );
        assert_eq!(PatchType::from_content_type("application/apply-patch+yaml"), Some(PatchType::Apply));
        assert_eq!(PatchType::from_content_type("Application/Apply-Patch+JSON"), Some(PatchType::Apply));
        assert_eq!(PatchType::from_content_type("application/json"), None);
        assert_eq!(
            PatchType::from_content_type(PatchType::StrategicMerge.content_type()),
            Some(PatchType::StrategicMerge)
        );
    }

    #[test]
    fn json_patch_tests_then_replaces() {
        let deployment =
            json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "alpine:3.6"}]}}}});
        let patch = json!([
            {"op": "test", "path": "/spec/template/spec/containers/0/image", "value": "alpine:3.6"},
            {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "alpine:3.7"}
        ]);
        let patched = json_patch(&deployment, &patch).unwrap();
        assert_eq!(patched["spec"]["template"]["spec"]["containers"][0]["image"], "alpine:3.7");
    }

    #[test]
    fn json_patch_failing_test_says_which_value() {
        let error = json_patch(&json!({"a": 1}), &json!([{"op": "test", "path": "/a", "value": 2}])).unwrap_err();
        assert_eq!(error, PatchError::Unprocessable("testing value /a failed: test failed".to_string()));
        assert_eq!(error.status_code(), 422);
        let error = json_patch(&json!({"a": 1}), &json!([{"op": "replace", "path": "/b", "value": 2}])).unwrap_err();
        assert_eq!(error.to_string(), "replace operation does not apply: doc is missing path: /b");
    }

    #[test]
    fn json_patch_rejects_a_body_that_is_not_a_list_of_operations() {
        for body in [json!({"op": "add"}), json!([{"op": "frobnicate", "path": "/a"}])] {
            let error = json_patch(&json!({}), &body).unwrap_err();
            assert_eq!(error, PatchError::Malformed(UNPARSABLE_PATCH.to_string()));
            assert_eq!(error.status_code(), 400);
        }
    }

    #[test]
    fn merge_patch_merges_maps_and_deletes_nulls() {
        let original = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"replicas": 1, "list": [1, 2]}});
        let patch = json!({"metadata": {"labels": {"a": null, "c": "3"}}, "spec": {"replicas": 3, "list": [3]}});
        assert_eq!(
            merge_patch(&original, &patch),
            json!({"metadata": {"labels": {"b": "2", "c": "3"}}, "spec": {"replicas": 3, "list": [3]}})
        );
    }

    #[test]
    fn list_kinds_follow_list_type_then_patch_metadata() {
        let facts = test_facts::workload_facts();
        let containers = facts_at(&facts, &["spec".into(), "containers".into()]);
        assert_eq!(apply_list_kind(&containers), ListKind::Map(vec!["name".to_string()]));
        let ports = facts_at(&facts, &["spec".into(), "containers".into(), "ports".into()]);
        assert_eq!(apply_list_kind(&ports), ListKind::Map(vec!["containerPort".to_string(), "protocol".to_string()]));
        let merge_only = FieldFacts { patch_strategy: Some("merge".into()), ..FieldFacts::default() };
        assert_eq!(apply_list_kind(&merge_only), ListKind::Set);
        assert_eq!(apply_list_kind(&FieldFacts::default()), ListKind::Atomic);
        assert!(same_value(&json!(80), &json!(80.0)));
        assert!(!same_value(&json!(80), &json!("80")));
    }
}
