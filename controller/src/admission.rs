//! The seam between the generic handlers and per-kind knowledge: defaults, validation, unknown-field detection,
//! field ownership and merge facts. Each function dispatches on the resource; the handlers call only these.

use serde_json::Value;

use crate::error::Cause;
use crate::registry::ResourceDef;
use crate::registry::SchemaSource;
use crate::schema::{SchemaFacts, Schemas, COMPONENTS_PREFIX};

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

/// Paths of fields the kind's schema does not know, as upstream's strict decoding names them
/// (`spec.containers[0].foo`). Fields under a schema that preserves unknown fields are never unknown.
pub fn unknown_fields(def: &ResourceDef, object: &Value) -> Vec<String> {
    let SchemaSource::BuiltIn(name) = &def.schema else {
        return Vec::new();
    };
    let schemas = Schemas::shared();
    let Some(schema) = schemas.definition(name) else {
        return Vec::new();
    };
    let mut unknown = Vec::new();
    walk_unknown(schemas, schema, object, String::new(), &mut unknown, 0);
    unknown
}

fn walk_unknown(
    schemas: &Schemas,
    schema: &Value,
    value: &Value,
    path: String,
    unknown: &mut Vec<String>,
    depth: usize,
) {
    if depth > 64 {
        return;
    }
    let schema = resolve(schemas, schema);
    if schema.get("x-kubernetes-preserve-unknown-fields").and_then(Value::as_bool) == Some(true) {
        return;
    }
    match value {
        Value::Object(map) => {
            if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
                for (key, child) in map {
                    let child_path = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                    match properties.get(key) {
                        Some(child_schema) => {
                            walk_unknown(schemas, child_schema, child, child_path, unknown, depth + 1)
                        }
                        None => unknown.push(child_path),
                    }
                }
            } else if let Some(values) = schema.get("additionalProperties").filter(|values| values.is_object()) {
                for (key, child) in map {
                    let child_path = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                    walk_unknown(schemas, values, child, child_path, unknown, depth + 1);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (index, item) in items.iter().enumerate() {
                    walk_unknown(schemas, item_schema, item, format!("{path}[{index}]"), unknown, depth + 1);
                }
            }
        }
        _ => {}
    }
}

/// Follows `$ref` and single-element `allOf` wrappers to the schema that has the properties.
fn resolve<'a>(schemas: &'a Schemas, mut schema: &'a Value) -> &'a Value {
    for _ in 0..16 {
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            match reference.strip_prefix(COMPONENTS_PREFIX).and_then(|name| schemas.definition(name)) {
                Some(target) => schema = target,
                None => return schema,
            }
        } else if let Some([only]) = schema.get("allOf").and_then(Value::as_array).map(Vec::as_slice) {
            schema = only;
        } else {
            return schema;
        }
    }
    schema
}

/// The list and map merge facts of a kind, for strategic merge patch and server-side apply.
pub fn facts(def: &ResourceDef) -> SchemaFacts<'static> {
    match &def.schema {
        SchemaSource::BuiltIn(name) => Schemas::shared().facts_for(name),
        SchemaSource::CustomResource(_) => Schemas::shared().facts_for(""),
    }
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
