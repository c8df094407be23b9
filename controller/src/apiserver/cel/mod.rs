//! CEL as the API server evaluates it, with the `cel` crate: the validation rules of CustomResourceDefinitions
//! (`x-kubernetes-validations`), the matchConditions of admission webhooks ([`condition`]) and
//! ValidatingAdmissionPolicies (`admission_webhooks/policies.rs`). CRD rules run in
//! the standard library with its strings and lists extensions, `self` bound to the value at the rule's node and,
//! for transition rules, `oldSelf` to the stored value at the same place.
//!
//! As upstream:
//! - rules compile when the CRD is written, and a CRD with a rule (or `messageExpression`) that does not compile is
//!   refused, naming the rule;
//! - a rule runs only where its node has a value; a rule that uses `oldSelf` (a transition rule) runs only on an
//!   update whose stored object has a value at the same place (`optionalOldSelf`, which would run it on creates
//!   too, is not supported: such rules are skipped there as well);
//! - a failing rule reports `message`, else the result of `messageExpression`, else `failed rule: RULE`, at the
//!   node's path plus `fieldPath`, with `reason` choosing the cause (Invalid by default).
//!
//! The environment has the Kubernetes CEL libraries of v1.33 (`libraries/`: lists, regex, quantity, url, ip, cidr,
//! format, semver) beside the crate's standard library and its strings and lists extensions.
//!
//! Not done: upstream's type checking (an expression that upstream refuses when it is written, such as
//! `isQuantity(1)` or a call of an unknown function, is refused here only when it runs, as an evaluation error),
//! cost limits (a rule here runs to completion), and the `authz` library.

mod libraries;

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use cel::{Context, Env, Program};
use serde_json::Value;

use crate::apiserver::error::Cause;

/// The environment every rule compiles and runs in.
static ENVIRONMENT: LazyLock<Arc<Env>> = LazyLock::new(|| {
    let mut env = Env::stdlib();
    // Both are the crate's own and cannot clash with the standard library it was built with.
    env.add_extension(cel::extensions::strings).expect("the strings extension loads");
    env.add_extension(cel::extensions::lists).expect("the lists extension loads");
    env.add_extension(libraries::extension).expect("the Kubernetes libraries load beside the crate's extensions");
    Arc::new(env)
});

/// Compiled rules by source: a CRD's rules run on every write of its resources. Bounded by clearing, which only
/// costs recompiling.
static COMPILED: LazyLock<Mutex<HashMap<String, Arc<Program>>>> = LazyLock::new(Default::default);
const MAX_COMPILED: usize = 4096;

/// A compiled program for `source`, or the compiler's message.
pub fn compile(source: &str) -> Result<Arc<Program>, String> {
    if let Some(program) = COMPILED.lock().unwrap_or_else(|poison| poison.into_inner()).get(source) {
        return Ok(program.clone());
    }
    let program = Arc::new(ENVIRONMENT.compile(source).map_err(|error| error.to_string())?);
    let mut compiled = COMPILED.lock().unwrap_or_else(|poison| poison.into_inner());
    if compiled.len() >= MAX_COMPILED {
        compiled.clear();
    }
    compiled.insert(source.to_string(), program.clone());
    Ok(program)
}

/// Whether a rule refers to `oldSelf`, which makes it a transition rule.
fn uses_old_self(program: &Program) -> bool {
    program.references().has_variable("oldSelf")
}

/// A JSON value as CEL sees it: integers are `int`, other numbers `double`, objects are maps with string keys.
fn to_cel(value: &Value) -> cel::Value {
    match value {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => cel::Value::Int(i),
            None => cel::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => cel::Value::String(Arc::new(s.clone())),
        Value::Array(items) => cel::Value::List(Arc::new(items.iter().map(to_cel).collect())),
        Value::Object(map) => {
            let entries: HashMap<String, cel::Value> = map.iter().map(|(k, v)| (k.clone(), to_cel(v))).collect();
            cel::Value::from(entries)
        }
    }
}

/// Runs `program` with `self` (and `oldSelf` when given).
fn evaluate(program: &Program, value: &Value, old: Option<&Value>) -> Result<cel::Value, String> {
    match old {
        Some(old) => run(program, &[("self", value), ("oldSelf", old)]),
        None => run(program, &[("self", value)]),
    }
}

fn run(program: &Program, bindings: &[(&str, &Value)]) -> Result<cel::Value, String> {
    run_with(program, bindings, &[])
}

/// Runs `program` over JSON `bindings` and `kept`, values already in CEL form (a policy's variables, which may hold
/// a quantity or an IP that JSON cannot carry).
fn run_with(
    program: &Program,
    bindings: &[(&str, &Value)],
    kept: &[(&str, &cel::Value)],
) -> Result<cel::Value, String> {
    let mut context = Context::with_env(ENVIRONMENT.clone());
    for (name, value) in bindings {
        context.add_variable_from_value(*name, to_cel(value));
    }
    for (name, value) in kept {
        context.add_variable_from_value(*name, (*value).clone());
    }
    program.execute(&context).map_err(|error| error.to_string())
}

/// What an expression evaluates to, kept in CEL form, over JSON `bindings` and CEL values `kept`.
pub fn evaluate_kept(
    source: &str,
    bindings: &[(&str, &Value)],
    kept: &[(&str, &cel::Value)],
) -> Result<cel::Value, String> {
    run_with(&*compile(source)?, bindings, kept)
}

/// A CEL map of named values, as a policy's `variables` are bound.
pub fn map_of(entries: &HashMap<String, cel::Value>) -> cel::Value {
    cel::Value::from(entries.clone())
}

/// A CEL value as JSON: what a policy's variable or messageExpression evaluated to.
fn to_json(value: &cel::Value) -> Value {
    match value {
        cel::Value::Null => Value::Null,
        cel::Value::Bool(b) => Value::Bool(*b),
        cel::Value::Int(i) => Value::from(*i),
        cel::Value::UInt(u) => Value::from(*u),
        cel::Value::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        cel::Value::String(s) => Value::String(s.to_string()),
        cel::Value::List(items) => Value::Array(items.iter().map(to_json).collect()),
        cel::Value::Map(map) => Value::Object(
            map.map
                .iter()
                .map(|(key, value)| {
                    let key = match key {
                        cel::objects::Key::String(s) => s.to_string(),
                        cel::objects::Key::Int(i) => i.to_string(),
                        cel::objects::Key::Uint(u) => u.to_string(),
                        cel::objects::Key::Bool(b) => b.to_string(),
                    };
                    (key, to_json(value))
                })
                .collect(),
        ),
        other => Value::String(format!("{other:?}")),
    }
}

/// What an expression evaluates to over named JSON values and CEL values `kept`, as JSON.
pub fn value_with(source: &str, bindings: &[(&str, &Value)], kept: &[(&str, &cel::Value)]) -> Result<Value, String> {
    Ok(to_json(&run_with(&*compile(source)?, bindings, kept)?))
}

/// A condition (a webhook's matchCondition) over named JSON values: true or false, or why it has neither value.
pub fn condition(source: &str, bindings: &[(&str, &Value)]) -> Result<bool, String> {
    condition_with(source, bindings, &[])
}

/// [`condition`] with CEL values `kept` bound beside the JSON ones.
pub fn condition_with(source: &str, bindings: &[(&str, &Value)], kept: &[(&str, &cel::Value)]) -> Result<bool, String> {
    match run_with(&*compile(source)?, bindings, kept)? {
        cel::Value::Bool(verdict) => Ok(verdict),
        other => Err(format!("expression {source:?} did not evaluate to a bool: {other:?}")),
    }
}

/// Upstream's schema type name for the "Invalid value" of a failed rule: `"object"`, `"string"`, …
fn type_name(schema: &Value, value: &Value) -> String {
    match schema.get("type").and_then(Value::as_str) {
        Some(name) => name.to_string(),
        None => match value {
            Value::Object(_) => "object",
            Value::Array(_) => "array",
            Value::String(_) => "string",
            Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
            Value::Number(_) => "number",
            Value::Bool(_) => "boolean",
            Value::Null => "null",
        }
        .to_string(),
    }
}

fn join(path: &str, step: &str) -> String {
    if path.is_empty() {
        step.to_string()
    } else {
        format!("{path}.{step}")
    }
}

/// Compile errors of every rule in a CRD schema; `path` is the schema's own path in the CRD
/// (`spec.versions[0].schema.openAPIV3Schema`).
pub fn check_schema(schema: &Value, path: &str, errors: &mut Vec<Cause>) {
    if let Some(rules) = schema.get("x-kubernetes-validations").and_then(Value::as_array) {
        for (index, rule) in rules.iter().enumerate() {
            let at = format!("{path}.x-kubernetes-validations[{index}]");
            let source = rule.get("rule").and_then(Value::as_str).unwrap_or_default();
            if source.trim().is_empty() {
                errors.push(cause("FieldValueRequired", &format!("{at}.rule"), "Required value".into()));
                continue;
            }
            if let Err(error) = compile(source) {
                let message = format!("Invalid value: {source:?}: compilation failed: {error}");
                errors.push(cause("FieldValueInvalid", &format!("{at}.rule"), message));
            }
            if let Some(expression) = rule.get("messageExpression").and_then(Value::as_str) {
                if let Err(error) = compile(expression) {
                    let message =
                        format!("Invalid value: {expression:?}: messageExpression compilation failed: {error}");
                    errors.push(cause("FieldValueInvalid", &format!("{at}.messageExpression"), message));
                }
            }
            if let Some(reason) = rule.get("reason").and_then(Value::as_str) {
                if !REASONS.iter().any(|(name, _)| *name == reason) {
                    let supported = REASONS.iter().map(|(name, _)| format!("{name:?}")).collect::<Vec<_>>().join(", ");
                    let message = format!("Unsupported value: {reason:?}: supported values: {supported}");
                    errors.push(cause("FieldValueNotSupported", &format!("{at}.reason"), message));
                }
            }
        }
    }
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (key, property) in properties {
            check_schema(property, &format!("{path}.properties[{key}]"), errors);
        }
    }
    if let Some(items) = schema.get("items").filter(|items| items.is_object()) {
        check_schema(items, &format!("{path}.items"), errors);
    }
    if let Some(additional) = schema.get("additionalProperties").filter(|additional| additional.is_object()) {
        check_schema(additional, &format!("{path}.additionalProperties"), errors);
    }
}

/// The reasons a rule may give, and the cause each becomes.
const REASONS: [(&str, &str); 4] = [
    ("FieldValueInvalid", "Invalid value"),
    ("FieldValueForbidden", "Forbidden"),
    ("FieldValueRequired", "Required value"),
    ("FieldValueDuplicate", "Duplicate value"),
];

fn cause(reason: &str, field: &str, message: String) -> Cause {
    Cause { reason: reason.into(), message, field: field.into() }
}

/// Runs every rule of `schema` over `object` (and `old`, the stored object, on an update), depth first.
pub fn validate(schema: &Value, object: &Value, old: Option<&Value>, errors: &mut Vec<Cause>) {
    validate_node(schema, object, old, "", errors);
}

fn validate_node(schema: &Value, value: &Value, old: Option<&Value>, path: &str, errors: &mut Vec<Cause>) {
    if value.is_null() {
        return;
    }
    if let Some(rules) = schema.get("x-kubernetes-validations").and_then(Value::as_array) {
        for rule in rules {
            run_rule(schema, rule, value, old, path, errors);
        }
    }
    match value {
        Value::Object(map) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|additional| additional.is_object());
            for (key, child) in map {
                let Some(child_schema) = properties.and_then(|properties| properties.get(key)).or(additional) else {
                    continue;
                };
                let old_child = old.and_then(|old| old.get(key));
                validate_node(child_schema, child, old_child, &join(path, key), errors);
            }
        }
        Value::Array(items) => {
            let Some(item_schema) = schema.get("items").filter(|items| items.is_object()) else { return };
            // Items have no identity across versions unless the list is a map keyed by its keys; a transition rule
            // inside a plain list sees no oldSelf, as upstream.
            let keys: Vec<&str> = item_schema
                .get("x-kubernetes-list-map-keys")
                .or_else(|| schema.get("x-kubernetes-list-map-keys"))
                .and_then(Value::as_array)
                .map(|keys| keys.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let is_map_list = schema.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("map");
            for (index, item) in items.iter().enumerate() {
                let old_item = if is_map_list && !keys.is_empty() {
                    old.and_then(Value::as_array).and_then(|olds| {
                        olds.iter().find(|candidate| keys.iter().all(|key| candidate.get(key) == item.get(key)))
                    })
                } else {
                    None
                };
                validate_node(item_schema, item, old_item, &format!("{path}[{index}]"), errors);
            }
        }
        _ => {}
    }
}

fn run_rule(schema: &Value, rule: &Value, value: &Value, old: Option<&Value>, path: &str, errors: &mut Vec<Cause>) {
    let source = rule.get("rule").and_then(Value::as_str).unwrap_or_default();
    let Ok(program) = compile(source) else {
        // Refused when the CRD was written; a CRD stored before that check keeps working without the rule.
        return;
    };
    let transition = uses_old_self(&program);
    if transition && old.is_none() {
        return;
    }
    let field = match rule.get("fieldPath").and_then(Value::as_str).filter(|field_path| !field_path.is_empty()) {
        Some(field_path) => {
            format!("{path}{}", if path.is_empty() { field_path.trim_start_matches('.') } else { field_path })
        }
        None => path.to_string(),
    };
    let field = if field.is_empty() { "<nil>".to_string() } else { field };
    let reason = rule.get("reason").and_then(Value::as_str).unwrap_or("FieldValueInvalid");
    let (reason, label) = REASONS.iter().find(|(name, _)| *name == reason).copied().unwrap_or(REASONS[0]);
    let rendered_type = type_name(schema, value);
    let detail = match evaluate(&program, value, if transition { old } else { None }) {
        Ok(cel::Value::Bool(true)) => return,
        Ok(cel::Value::Bool(false)) => failure_message(rule, source, value, old),
        Ok(other) => format!("rule did not evaluate to a bool: {other:?} evaluating rule: {source}"),
        Err(error) => format!("{error} evaluating rule: {source}"),
    };
    let message = if reason == "FieldValueInvalid" {
        format!("{label}: {rendered_type:?}: {detail}")
    } else {
        format!("{label}: {detail}")
    };
    errors.push(cause(reason, &field, message));
}

/// `message`, else what `messageExpression` evaluates to (when it is a non-empty string), else `failed rule: RULE`.
fn failure_message(rule: &Value, source: &str, value: &Value, old: Option<&Value>) -> String {
    if let Some(message) = rule.get("message").and_then(Value::as_str).filter(|message| !message.is_empty()) {
        return message.to_string();
    }
    if let Some(expression) = rule.get("messageExpression").and_then(Value::as_str) {
        if let Ok(program) = compile(expression) {
            let old = if uses_old_self(&program) { old } else { None };
            if let Ok(cel::Value::String(text)) = evaluate(&program, value, old) {
                if !text.trim().is_empty() {
                    return text.to_string();
                }
            }
        }
    }
    format!("failed rule: {source}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "properties": {"spec": {
            "type": "object",
            "x-kubernetes-validations": [
                {"rule": "self.minReplicas <= self.maxReplicas", "message": "minReplicas must not exceed maxReplicas"},
                {"rule": "self.name.startsWith('app-')", "messageExpression": "'name ' + self.name + ' lacks app-'"},
                {"rule": "self.mode == oldSelf.mode", "message": "mode is immutable", "fieldPath": ".mode"},
            ],
            "properties": {
                "minReplicas": {"type": "integer"},
                "maxReplicas": {"type": "integer"},
                "name": {"type": "string"},
                "mode": {"type": "string"},
                "tags": {"type": "array", "items": {"type": "string", "x-kubernetes-validations": [
                    {"rule": "self.lowerAscii() == self", "reason": "FieldValueForbidden"},
                ]}},
            },
        }}})
    }

    fn errors(object: Value, old: Option<Value>) -> Vec<String> {
        let mut errors = Vec::new();
        validate(&schema(), &object, old.as_ref(), &mut errors);
        errors.iter().map(|cause| format!("{} {}: {}", cause.reason, cause.field, cause.message)).collect()
    }

    #[test]
    fn rules_report_their_message_at_their_node() {
        let good = json!({"spec": {"minReplicas": 1, "maxReplicas": 3, "name": "app-web", "mode": "a", "tags": ["x"]}});
        assert!(errors(good.clone(), None).is_empty());
        let bad =
            json!({"spec": {"minReplicas": 5, "maxReplicas": 3, "name": "web", "mode": "a", "tags": ["ok", "BAD"]}});
        assert_eq!(
            errors(bad, None),
            [
                r#"FieldValueInvalid spec: Invalid value: "object": minReplicas must not exceed maxReplicas"#,
                r#"FieldValueInvalid spec: Invalid value: "object": name web lacks app-"#,
                r#"FieldValueForbidden spec.tags[1]: Forbidden: failed rule: self.lowerAscii() == self"#,
            ]
        );
    }

    #[test]
    fn rules_use_the_kubernetes_libraries() {
        let schema = json!({"type": "object", "x-kubernetes-validations": [
            {"rule": "quantity(self.memory).isLessThan(quantity('2Gi'))", "message": "memory must stay below 2Gi"},
            {"rule": "isURL(self.endpoint) && url(self.endpoint).getScheme() == 'https'", "message": "https only"},
            {"rule": "cidr('10.0.0.0/8').containsIP(self.address)", "message": "address outside 10/8"},
            {"rule": "self.ports.isSorted()", "message": "ports must be sorted"},
        ]});
        let check = |object: Value| {
            let mut errors = Vec::new();
            validate(&schema, &object, None, &mut errors);
            errors.into_iter().map(|cause| cause.message).collect::<Vec<_>>()
        };
        let good = json!({"memory": "1536Mi", "endpoint": "https://example.com/hook", "address": "10.1.2.3", "ports": [80, 443]});
        assert!(check(good).is_empty());
        let bad =
            json!({"memory": "3Gi", "endpoint": "http://example.com", "address": "192.168.0.1", "ports": [443, 80]});
        assert_eq!(
            check(bad),
            [
                r#"Invalid value: "object": memory must stay below 2Gi"#,
                r#"Invalid value: "object": https only"#,
                r#"Invalid value: "object": address outside 10/8"#,
                r#"Invalid value: "object": ports must be sorted"#,
            ]
        );
    }

    #[test]
    fn transition_rules_run_only_on_updates() {
        let changed = json!({"spec": {"minReplicas": 1, "maxReplicas": 3, "name": "app-web", "mode": "b"}});
        let stored = json!({"spec": {"minReplicas": 1, "maxReplicas": 3, "name": "app-web", "mode": "a"}});
        assert!(errors(changed.clone(), None).is_empty(), "a create has no oldSelf");
        assert_eq!(
            errors(changed, Some(stored.clone())),
            [r#"FieldValueInvalid spec.mode: Invalid value: "object": mode is immutable"#]
        );
        assert!(errors(stored.clone(), Some(stored)).is_empty());
    }

    #[test]
    fn evaluation_errors_name_the_rule() {
        let missing = json!({"spec": {"maxReplicas": 3, "name": "app-web", "mode": "a"}});
        let found = errors(missing, None);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with(r#"FieldValueInvalid spec: Invalid value: "object": "#), "{found:?}");
        assert!(found[0].ends_with("evaluating rule: self.minReplicas <= self.maxReplicas"), "{found:?}");
    }

    #[test]
    fn rules_that_do_not_compile_are_refused_with_their_path() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "x-kubernetes-validations": [
            {"rule": "self.a >"}, {"rule": "true", "messageExpression": "'unclosed"}, {"rule": "true", "reason": "Nope"},
        ]}}});
        let mut errors = Vec::new();
        check_schema(&schema, "spec.versions[0].schema.openAPIV3Schema", &mut errors);
        let fields: Vec<&str> = errors.iter().map(|cause| cause.field.as_str()).collect();
        let at = "spec.versions[0].schema.openAPIV3Schema.properties[spec].x-kubernetes-validations";
        assert_eq!(fields, [format!("{at}[0].rule"), format!("{at}[1].messageExpression"), format!("{at}[2].reason")]);
        assert!(errors[0].message.contains("compilation failed"), "{}", errors[0].message);
    }
}
