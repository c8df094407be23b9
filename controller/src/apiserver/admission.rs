//! The seam between the generic handlers and per-kind knowledge: defaults, validation, unknown-field detection,
//! field ownership and merge facts. Each function dispatches on the resource; the handlers call only these.

use serde_json::Value;

use crate::apiserver::error::Cause;
use crate::apiserver::registry::ResourceDef;
use crate::apiserver::registry::SchemaSource;
use crate::apiserver::schema::{SchemaFacts, Schemas, COMPONENTS_PREFIX};

/// Fills in what the API server sets on create: defaults plus the create-only admission steps (pod status, the
/// namespace finalizer, a Job's generated selector). Needs `metadata.uid` set. (A pod's service-account token
/// volume needs its account, so ServiceAccount admission in `service_accounts.rs` adds it.)
///
/// `custom_schema` is the served version's schema when `def` is a custom resource: unknown fields are pruned and
/// schema defaults applied.
pub fn prepare_for_create(def: &ResourceDef, object: &mut Value, custom_schema: Option<&Value>) {
    if prepare_schema_defined(def, object, custom_schema) {
        return;
    }
    crate::apiserver::defaults::prepare_for_create(def, object);
    default_admission_kinds(def, object);
}

/// Fills in defaults on update and patch; `old` is the stored object (Services keep their allocations).
pub fn prepare_for_update(def: &ResourceDef, object: &mut Value, old: &Value, custom_schema: Option<&Value>) {
    if prepare_schema_defined(def, object, custom_schema) {
        return;
    }
    crate::apiserver::defaults::apply_defaults(def, object);
    default_admission_kinds(def, object);
    if def.group.is_empty() && def.plural == "services" {
        crate::apiserver::defaults::carry_over_service_allocations(object, old);
    }
}

/// Field errors of an object (and, on update, of the change from `old`), as Status causes.
pub fn validate(def: &ResourceDef, object: &Value, old: Option<&Value>, custom_schema: Option<&Value>) -> Vec<Cause> {
    if let Some(schema) = custom_schema {
        return match old {
            Some(old) => crate::apiserver::crd::validate_update(schema, object, old),
            None => crate::apiserver::crd::validate(schema, object),
        };
    }
    if is_crd(def) {
        let causes = crate::apiserver::crd::validate_definition(object);
        if !causes.is_empty() {
            return causes;
        }
    }
    let mut errors = crate::apiserver::validation::validate(def, object, old);
    if crate::apiserver::admission_webhooks::config::is_webhook_configuration(&def.group, &def.kind) {
        errors.extend(crate::apiserver::admission_webhooks::config::validate(&def.kind, object, old));
    }
    if crate::apiserver::admission_webhooks::policies::is_policy_kind(&def.group, &def.kind) {
        errors.extend(crate::apiserver::admission_webhooks::policies::validate(&def.kind, object));
    }
    errors
        .into_iter()
        .map(|error| Cause {
            reason: error.reason.as_status_reason().to_string(),
            message: error.message,
            field: error.field,
        })
        .collect()
}

/// Defaults again after mutating webhooks changed an object, as upstream decodes and defaults a patched object.
pub fn default_after_webhooks(def: &ResourceDef, object: &mut Value, custom_schema: Option<&Value>) {
    if prepare_schema_defined(def, object, custom_schema) {
        return;
    }
    crate::apiserver::defaults::apply_defaults(def, object);
}

/// Defaults of admission's own kinds: webhook configurations and LimitRanges.
fn default_admission_kinds(def: &ResourceDef, object: &mut Value) {
    if crate::apiserver::admission_webhooks::config::is_webhook_configuration(&def.group, &def.kind) {
        crate::apiserver::admission_webhooks::config::apply_defaults(&def.kind, object);
    }
    if def.group.is_empty() && def.kind == "LimitRange" {
        crate::apiserver::limit_ranges::default_limit_range(object);
    }
}

/// Upstream's 422 message: `Deployment.apps "x" is invalid: <field>: <detail>` (bracketed when several).
pub fn invalid_message(def: &ResourceDef, name: &str, causes: &[Cause]) -> String {
    let mut details: Vec<String> = Vec::new();
    for cause in causes {
        let detail = format!("{}: {}", cause.field, cause.message);
        if !details.contains(&detail) {
            details.push(detail);
        }
    }
    let kind = crate::apiserver::validation::qualified_kind(def);
    match details.as_slice() {
        [one] => format!("{kind} \"{name}\" is invalid: {one}"),
        many => format!("{kind} \"{name}\" is invalid: [{}]", many.join(", ")),
    }
}

/// Paths of fields the kind's schema does not know, as upstream's strict decoding names them
/// (`spec.containers[0].foo`). Fields under a schema that preserves unknown fields are never unknown.
pub fn unknown_fields(def: &ResourceDef, object: &Value, custom_schema: Option<&Value>) -> Vec<String> {
    if let Some(schema) = custom_schema {
        return crate::apiserver::crd::unknown_fields(schema, object);
    }
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

/// Prunes and defaults a custom resource by its schema (true: nothing else applies), or fills in a
/// CustomResourceDefinition's own defaults.
fn prepare_schema_defined(def: &ResourceDef, object: &mut Value, custom_schema: Option<&Value>) -> bool {
    if let Some(schema) = custom_schema {
        crate::apiserver::crd::prune(schema, object);
        crate::apiserver::crd::apply_defaults(schema, object);
        return true;
    }
    if is_crd(def) {
        crate::apiserver::crd::default_definition(object);
    }
    false
}

fn is_crd(def: &ResourceDef) -> bool {
    def.group == "apiextensions.k8s.io" && def.plural == "customresourcedefinitions"
}

/// The schema of a custom resource's served version, from its CustomResourceDefinition.
pub fn custom_schema(registry: &crate::apiserver::registry::Registry, def: &ResourceDef) -> Option<Value> {
    registry.definition_of(def).and_then(|crd| crate::apiserver::crd::version_schema(crd, &def.version))
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
