//! ValidatingAdmissionPolicies and their bindings: parsed from the stored objects (alongside the webhook
//! configurations, and reloaded with them), checked when they are written, and evaluated with CEL (`cel.rs`) by
//! the dispatcher in `mod.rs` before the validating webhooks, as upstream orders its admission plugins.
//!
//! A binding puts its policy in force: the policy's `matchConstraints` and the binding's `matchResources` must both
//! match the request, then the policy's `matchConditions` must all hold; then its `variables` are evaluated in
//! order (`variables.NAME`), then each of its `validations`. A failed validation is reported per the binding's
//! `validationActions`: `Deny` refuses the request (`reason` chooses the status, Invalid/422 by default), `Warn`
//! returns a warning. An expression that cannot be evaluated follows the policy's `failurePolicy`.
//!
//! Expressions see `object`, `oldObject`, `request` (the AdmissionRequest without the objects), `namespaceObject`
//! and `params` (the object the binding's `paramRef` names). Not supported: `paramRef.selector` (a policy with
//! `paramKind` whose binding selects its params by label is treated as if they could not be found), `Audit`
//! (kaasd keeps no audit log), `auditAnnotations`, the `authorizer` variable, cost limits, and the type checking
//! that upstream reports in `status.typeChecking`.

use serde_json::{json, Value};

use super::config::{parse_rules, Rule};
use crate::apiserver::selector::LabelSelector;
use crate::apiserver::validation::FieldError;

/// Where both kinds are stored.
pub const POLICIES_PREFIX: &str = "/registry/admissionregistration.k8s.io/validatingadmissionpolicies/";
pub const BINDINGS_PREFIX: &str = "/registry/admissionregistration.k8s.io/validatingadmissionpolicybindings/";

/// Which requests a policy (its `matchConstraints`) or a binding (its `matchResources`) covers.
#[derive(Debug, Clone)]
pub struct Scope {
    pub rules: Vec<Rule>,
    pub exclude: Vec<Rule>,
    pub match_equivalent: bool,
    pub namespace_selector: Result<LabelSelector, String>,
    pub object_selector: Result<LabelSelector, String>,
}

#[derive(Debug, Clone)]
pub struct Validation {
    pub expression: String,
    pub message: Option<String>,
    pub message_expression: Option<String>,
    /// Unauthorized, Forbidden, Invalid (the default) or RequestEntityTooLarge.
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    pub fail_closed: bool,
    pub scope: Scope,
    pub match_conditions: Vec<(String, String)>,
    pub variables: Vec<(String, String)>,
    pub validations: Vec<Validation>,
    /// `(apiVersion, kind)` of the params object, when the policy takes one.
    pub param_kind: Option<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct Binding {
    pub name: String,
    pub policy: String,
    /// None: everything the policy matches.
    pub scope: Option<Scope>,
    pub deny: bool,
    pub warn: bool,
    pub param_ref: Option<ParamRef>,
}

#[derive(Debug, Clone)]
pub struct ParamRef {
    pub name: Option<String>,
    pub namespace: Option<String>,
    /// `parameterNotFoundAction: Allow` lets requests through when the params are missing; Deny refuses them.
    pub allow_when_missing: bool,
}

fn text(value: &Value, key: &str) -> Option<String> {
    value.get(key).and_then(Value::as_str).filter(|text| !text.is_empty()).map(str::to_string)
}

fn scope(value: &Value) -> Scope {
    let selector = |key: &str| match value.get(key).filter(|selector| !selector.is_null()) {
        None => Ok(LabelSelector::everything()),
        Some(selector) => LabelSelector::from_label_selector(selector).map_err(|error| format!("{key}: {error}")),
    };
    Scope {
        rules: parse_rules(value.get("resourceRules")),
        exclude: parse_rules(value.get("excludeResourceRules")),
        match_equivalent: value["matchPolicy"].as_str() != Some("Exact"),
        namespace_selector: selector("namespaceSelector"),
        object_selector: selector("objectSelector"),
    }
}

fn named_expressions(list: Option<&Value>, name_key: &str) -> Vec<(String, String)> {
    list.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|entry| (text(entry, name_key).unwrap_or_default(), text(entry, "expression").unwrap_or_default()))
        .collect()
}

pub fn parse_policy(object: &Value) -> Policy {
    let spec = &object["spec"];
    Policy {
        name: object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string(),
        fail_closed: spec["failurePolicy"].as_str() != Some("Ignore"),
        scope: scope(&spec["matchConstraints"]),
        match_conditions: named_expressions(spec.get("matchConditions"), "name"),
        variables: named_expressions(spec.get("variables"), "name"),
        validations: spec
            .get("validations")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|validation| Validation {
                expression: text(validation, "expression").unwrap_or_default(),
                message: text(validation, "message"),
                message_expression: text(validation, "messageExpression"),
                reason: text(validation, "reason").unwrap_or_else(|| "Invalid".into()),
            })
            .collect(),
        param_kind: spec
            .get("paramKind")
            .filter(|kind| kind.is_object())
            .map(|kind| (text(kind, "apiVersion").unwrap_or_default(), text(kind, "kind").unwrap_or_default())),
    }
}

pub fn parse_binding(object: &Value) -> Binding {
    let spec = &object["spec"];
    let actions = crate::apiserver::objects::string_list(spec.get("validationActions"));
    Binding {
        name: object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string(),
        policy: text(spec, "policyName").unwrap_or_default(),
        scope: spec.get("matchResources").filter(|resources| resources.is_object()).map(scope),
        deny: actions.iter().any(|action| action == "Deny"),
        warn: actions.iter().any(|action| action == "Warn"),
        param_ref: spec.get("paramRef").filter(|reference| reference.is_object()).map(|reference| ParamRef {
            name: text(reference, "name"),
            namespace: text(reference, "namespace"),
            allow_when_missing: reference["parameterNotFoundAction"].as_str() == Some("Allow"),
        }),
    }
}

/// Write-time checks beyond the schema: every expression must compile (upstream's "compilation failed"), and a
/// binding must name a policy and at least one action.
pub fn validate(kind: &str, object: &Value) -> Vec<FieldError> {
    let spec = &object["spec"];
    let mut errors = Vec::new();
    let mut compiles = |path: String, expression: Option<&Value>| {
        if let Some(expression) = expression.and_then(Value::as_str).filter(|expression| !expression.is_empty()) {
            if let Err(error) = crate::apiserver::cel::compile(expression) {
                errors.push(FieldError::invalid(path, &json!(expression), &format!("compilation failed: {error}")));
            }
        }
    };
    match kind {
        "ValidatingAdmissionPolicy" => {
            for (list, keys) in [
                ("validations", &["expression", "messageExpression"][..]),
                ("matchConditions", &["expression"][..]),
                ("variables", &["expression"][..]),
                ("auditAnnotations", &["valueExpression"][..]),
            ] {
                for (index, entry) in spec.get(list).and_then(Value::as_array).into_iter().flatten().enumerate() {
                    for key in keys {
                        compiles(format!("spec.{list}[{index}].{key}"), entry.get(*key));
                    }
                }
            }
            let has_checks = ["validations", "auditAnnotations"]
                .iter()
                .any(|list| spec.get(*list).and_then(Value::as_array).is_some_and(|entries| !entries.is_empty()));
            if !has_checks {
                errors.push(FieldError::required(
                    "spec.validations",
                    "validations or auditAnnotations must contain at least one item",
                ));
            }
        }
        "ValidatingAdmissionPolicyBinding" => {
            if text(spec, "policyName").is_none() {
                errors.push(FieldError::required("spec.policyName", ""));
            }
            let actions = crate::apiserver::objects::string_list(spec.get("validationActions"));
            if actions.is_empty() {
                errors.push(FieldError::required("spec.validationActions", ""));
            }
            for (index, action) in actions.iter().enumerate() {
                if !["Deny", "Warn", "Audit"].contains(&action.as_str()) {
                    errors.push(FieldError::not_supported(
                        format!("spec.validationActions[{index}]"),
                        &json!(action),
                        &["Audit", "Deny", "Warn"],
                    ));
                }
            }
        }
        _ => {}
    }
    errors
}

pub fn is_policy_kind(group: &str, kind: &str) -> bool {
    group == "admissionregistration.k8s.io"
        && matches!(kind, "ValidatingAdmissionPolicy" | "ValidatingAdmissionPolicyBinding")
}

/// What one policy decided about one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Admit,
    /// A validation failed (or could not be evaluated under failurePolicy Fail): its message and reason.
    Fail {
        message: String,
        reason: String,
    },
}

/// Evaluates a policy's variables and validations over `bindings` (object, oldObject, request, namespaceObject,
/// params). Every failed validation, in order.
pub fn evaluate(policy: &Policy, bindings: &[(&str, &Value)]) -> Vec<Decision> {
    use crate::apiserver::cel;
    // Variables see the ones before them; a variable that cannot be evaluated is left out, so only the
    // expressions that use it fail. They stay CEL values: a quantity or an IP has no JSON form.
    let mut variables = std::collections::HashMap::new();
    for (name, expression) in &policy.variables {
        let so_far = cel::map_of(&variables);
        if let Ok(value) = cel::evaluate_kept(expression, bindings, &[("variables", &so_far)]) {
            variables.insert(name.clone(), value);
        }
    }
    let variables = cel::map_of(&variables);
    let kept = [("variables", &variables)];
    let mut decisions = Vec::new();
    for validation in &policy.validations {
        match cel::condition_with(&validation.expression, bindings, &kept) {
            Ok(true) => {}
            Ok(false) => {
                let message = validation
                    .message
                    .clone()
                    .or_else(|| {
                        let expression = validation.message_expression.as_deref()?;
                        let text = cel::value_with(expression, bindings, &kept).ok()?;
                        text.as_str().filter(|text| !text.trim().is_empty()).map(str::to_string)
                    })
                    .unwrap_or_else(|| format!("failed expression: {}", validation.expression));
                decisions.push(Decision::Fail { message, reason: validation.reason.clone() });
            }
            Err(error) if policy.fail_closed => decisions.push(Decision::Fail {
                message: format!("expression '{}' resulted in error: {error}", validation.expression),
                reason: "Invalid".into(),
            }),
            Err(_) => {}
        }
    }
    decisions
}

/// The HTTP status of a denial, by the validation's reason.
pub fn status_code(reason: &str) -> u16 {
    match reason {
        "Unauthorized" => 401,
        "Forbidden" => 403,
        "RequestEntityTooLarge" => 413,
        _ => 422,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        parse_policy(&json!({
            "metadata": {"name": "replicas"},
            "spec": {
                "matchConstraints": {"resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"], "resources": ["deployments"]}]},
                "variables": [
                    {"name": "replicas", "expression": "object.spec.replicas"},
                    {"name": "oddReplicas", "expression": "variables.replicas % 2 == 1"},
                    {"name": "broken", "expression": "object.spec.nothing"},
                ],
                "validations": [
                    {"expression": "variables.replicas > 1", "messageExpression": "'wants replicas > 1, got ' + string(variables.replicas)"},
                    {"expression": "variables.oddReplicas", "reason": "Forbidden"},
                    {"expression": "variables.broken == 1", "message": "never shown"},
                ],
            },
        }))
    }

    #[test]
    fn variables_keep_values_that_json_cannot_carry() {
        let policy = parse_policy(&json!({
            "metadata": {"name": "memory"},
            "spec": {
                "variables": [{"name": "limit", "expression": "quantity(object.spec.memory)"}],
                "validations": [{"expression": "variables.limit.isLessThan(quantity('1Gi'))", "message": "too much memory"}],
            },
        }));
        let decide = |memory: &str| evaluate(&policy, &[("object", &json!({"spec": {"memory": memory}}))]);
        assert_eq!(decide("512Mi"), []);
        assert_eq!(decide("2Gi"), [Decision::Fail { message: "too much memory".into(), reason: "Invalid".into() }]);
    }

    #[test]
    fn validations_see_variables_and_report_their_messages() {
        let object = |replicas: i64| json!({"spec": {"replicas": replicas}});
        let decisions = |replicas| evaluate(&policy(), &[("object", &object(replicas)), ("oldObject", &Value::Null)]);
        let broken = Decision::Fail {
            message: "expression 'variables.broken == 1' resulted in error: No such key: broken".into(),
            reason: "Invalid".into(),
        };
        assert_eq!(decisions(3), std::slice::from_ref(&broken), "only the expression using the broken variable fails");
        assert_eq!(
            decisions(2),
            [
                Decision::Fail {
                    message: "failed expression: variables.oddReplicas".into(),
                    reason: "Forbidden".into()
                },
                broken.clone(),
            ]
        );
        assert_eq!(
            decisions(1)[0],
            Decision::Fail { message: "wants replicas > 1, got 1".into(), reason: "Invalid".into() }
        );
    }

    #[test]
    fn policies_and_bindings_are_checked_when_written() {
        let bad = json!({"spec": {"validations": [{"expression": "object.spec.replicas >"}], "matchConditions": [{"name": "a", "expression": "true"}]}});
        let errors = validate("ValidatingAdmissionPolicy", &bad);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "spec.validations[0].expression");
        assert!(errors[0].message.contains("compilation failed"), "{}", errors[0].message);
        let binding = json!({"spec": {"policyName": "p", "validationActions": ["Deny", "Shout"]}});
        let errors = validate("ValidatingAdmissionPolicyBinding", &binding);
        assert_eq!(errors.iter().map(|error| error.field.as_str()).collect::<Vec<_>>(), ["spec.validationActions[1]"]);
    }
}
