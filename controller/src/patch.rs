//! Patches (first version: JSON patch and merge patch; strategic merge and apply replace this module).

use serde_json::Value;

use crate::schema::FieldFactsSource;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    StrategicMerge,
    Apply,
}

impl PatchType {
    pub fn from_content_type(content_type: &str) -> Option<PatchType> {
        match content_type.split(';').next().unwrap_or("").trim() {
            "application/json-patch+json" => Some(PatchType::Json),
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::StrategicMerge),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Some(PatchType::Apply),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum PatchError {
    #[error("{0}")]
    Invalid(String),
}

pub fn json_patch(original: &Value, patch: &Value) -> Result<Value, PatchError> {
    let patch: json_patch::Patch =
        serde_json::from_value(patch.clone()).map_err(|error| PatchError::Invalid(error.to_string()))?;
    let mut document = original.clone();
    json_patch::patch(&mut document, &patch).map_err(|error| PatchError::Invalid(error.to_string()))?;
    Ok(document)
}

pub fn merge_patch(original: &Value, patch: &Value) -> Value {
    let mut document = original.clone();
    json_patch::merge(&mut document, patch);
    document
}

pub fn strategic_merge_patch(
    original: &Value,
    patch: &Value,
    _facts: &dyn FieldFactsSource,
) -> Result<Value, PatchError> {
    Ok(merge_patch(original, patch))
}

/// Server-side apply (first version: a merge patch of the applied configuration, no field ownership).
pub fn apply_to(
    live: Option<&Value>,
    applied: &Value,
    _manager: &str,
    _force: bool,
    _api_version: &str,
) -> Result<Value, PatchError> {
    let mut applied = applied.clone();
    if let Some(metadata) = applied.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in ["managedFields", "resourceVersion", "uid", "creationTimestamp"] {
            metadata.remove(field);
        }
    }
    Ok(match live {
        Some(live) => merge_patch(live, &applied),
        None => applied,
    })
}
