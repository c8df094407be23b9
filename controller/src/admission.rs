//! The seam between the generic handlers and per-kind knowledge: defaults, validation, unknown-field detection,
//! field ownership and merge facts. Each function dispatches on the resource; the handlers call only these.

use serde_json::Value;

use crate::error::Cause;
use crate::registry::ResourceDef;
use crate::schema::{FieldFactsSource, NoFacts};

/// Fills in what the API server defaults on create and update.
pub fn default_object(def: &ResourceDef, object: &mut Value) {
    let _ = (def, object);
}

/// Field errors of an object (and, on update, of the change from `old`), as Status causes.
pub fn validate(def: &ResourceDef, object: &Value, old: Option<&Value>) -> Vec<Cause> {
    let _ = (def, object, old);
    Vec::new()
}

/// Upstream's 422 message: `Pod "x" is invalid: <field>: <detail>` (bracketed when several).
pub fn invalid_message(def: &ResourceDef, name: &str, causes: &[Cause]) -> String {
    let kind = if def.group.is_empty() { def.kind.clone() } else { format!("{}.{}", def.kind, def.group) };
    let details: Vec<String> = causes.iter().map(|cause| format!("{}: {}", cause.field, cause.message)).collect();
    match details.as_slice() {
        [one] => format!("{kind} \"{name}\" is invalid: {one}"),
        many => format!("{kind} \"{name}\" is invalid: [{}]", many.join(", ")),
    }
}

/// Dotted paths of fields the kind's schema does not know.
pub fn unknown_fields(def: &ResourceDef, object: &Value) -> Vec<String> {
    let _ = (def, object);
    Vec::new()
}

/// The list and map merge facts of a kind, for strategic merge patch and server-side apply.
pub fn facts(def: &ResourceDef) -> impl FieldFactsSource {
    let _ = def;
    NoFacts
}

/// A metav1.LabelSelector as the selector string Scale.status.selector carries.
pub fn selector_string(selector: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(labels) = selector.get("matchLabels").and_then(Value::as_object) {
        for (key, value) in labels {
            parts.push(format!("{key}={}", value.as_str().unwrap_or("")));
        }
    }
    for expression in selector.get("matchExpressions").and_then(Value::as_array).into_iter().flatten() {
        let key = expression["key"].as_str().unwrap_or("");
        let values: Vec<&str> =
            expression["values"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        match expression["operator"].as_str().unwrap_or("") {
            "In" => parts.push(format!("{key} in ({})", values.join(","))),
            "NotIn" => parts.push(format!("{key} notin ({})", values.join(","))),
            "Exists" => parts.push(key.to_string()),
            "DoesNotExist" => parts.push(format!("!{key}")),
            _ => {}
        }
    }
    parts.join(",")
}
