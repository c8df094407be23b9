//! Validation of built-in objects as a v1.33 API server does it, with its field paths, reasons and messages, so that
//! a 422 `Invalid` Status reads the same as one from a real cluster (`kubectl` prints the message verbatim, tools and
//! tests match on the causes).
//!
//! [`validate`] runs after defaults ([`crate::apiserver::defaults`]) on every main-resource create and update of a built-in kind;
//! writes to `/status` and bindings are not covered. Namespace presence and scope, and allocation ranges other than
//! node ports, are the caller's. Each [`FieldError`] becomes one Status cause (`reason`, `field`, `message`), and
//! [`invalid_message`] the Status message.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value};

use crate::apiserver::registry::{ResourceDef, SchemaSource};

/// Why a field is invalid: upstream's field error types, one to one with Status cause types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldErrorReason {
    Required,
    Invalid,
    NotSupported,
    Duplicate,
    Forbidden,
    TooLong,
    TooMany,
    NotFound,
}

impl FieldErrorReason {
    /// The Status cause `reason`, e.g. `FieldValueRequired`.
    pub fn as_status_reason(self) -> &'static str {
        match self {
            FieldErrorReason::Required => "FieldValueRequired",
            FieldErrorReason::Invalid => "FieldValueInvalid",
            FieldErrorReason::NotSupported => "FieldValueNotSupported",
            FieldErrorReason::Duplicate => "FieldValueDuplicate",
            FieldErrorReason::Forbidden => "FieldValueForbidden",
            FieldErrorReason::TooLong => "FieldValueTooLong",
            FieldErrorReason::TooMany => "FieldValueTooMany",
            FieldErrorReason::NotFound => "FieldValueNotFound",
        }
    }

    /// The words a message starts with, e.g. `Required value`.
    fn title(self) -> &'static str {
        match self {
            FieldErrorReason::Required => "Required value",
            FieldErrorReason::Invalid => "Invalid value",
            FieldErrorReason::NotSupported => "Unsupported value",
            FieldErrorReason::Duplicate => "Duplicate value",
            FieldErrorReason::Forbidden => "Forbidden",
            FieldErrorReason::TooLong => "Too long",
            FieldErrorReason::TooMany => "Too many",
            FieldErrorReason::NotFound => "Not found",
        }
    }
}

/// One invalid field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub reason: FieldErrorReason,
    /// The field's path, e.g. `spec.containers[0].image` or `data[my key]`.
    pub field: String,
    /// Upstream's text without the field, e.g. `Required value` or
    /// `Invalid value: "Foo": a lowercase RFC 1123 label must consist of ...`: the Status cause `message`.
    pub message: String,
}

impl FieldError {
    pub fn required(field: impl Into<String>, detail: &str) -> FieldError {
        FieldError::new(FieldErrorReason::Required, field, None, detail)
    }

    /// An invalid value, shown as Go shows a JSON value of that type (quoted strings, bare numbers).
    pub fn invalid(field: impl Into<String>, value: &Value, detail: &str) -> FieldError {
        FieldError::new(FieldErrorReason::Invalid, field, Some(render_value(value)), detail)
    }

    /// An invalid value already rendered the way upstream prints it (e.g. `v1.LabelSelector{...}`).
    pub fn invalid_rendered(field: impl Into<String>, rendered: String, detail: &str) -> FieldError {
        FieldError::new(FieldErrorReason::Invalid, field, Some(rendered), detail)
    }

    pub fn not_supported(field: impl Into<String>, value: &Value, supported: &[&str]) -> FieldError {
        let detail = if supported.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = supported.iter().map(|s| go_quote(s)).collect();
            format!("supported values: {}", quoted.join(", "))
        };
        FieldError::new(FieldErrorReason::NotSupported, field, Some(render_value(value)), &detail)
    }

    pub fn duplicate(field: impl Into<String>, value: &Value) -> FieldError {
        FieldError::new(FieldErrorReason::Duplicate, field, Some(render_value(value)), "")
    }

    pub fn forbidden(field: impl Into<String>, detail: &str) -> FieldError {
        FieldError::new(FieldErrorReason::Forbidden, field, None, detail)
    }

    /// Too long, without the value (which may be huge).
    pub fn too_long(field: impl Into<String>, max_bytes: usize) -> FieldError {
        let unit = if max_bytes == 1 { "byte" } else { "bytes" };
        FieldError::new(FieldErrorReason::TooLong, field, None, &format!("may not be more than {max_bytes} {unit}"))
    }

    pub fn too_many(field: impl Into<String>, actual: usize, max: usize) -> FieldError {
        let detail = format!("must have at most {max} items");
        FieldError::new(FieldErrorReason::TooMany, field, Some(actual.to_string()), &detail)
    }

    pub fn not_found(field: impl Into<String>, value: &Value) -> FieldError {
        FieldError::new(FieldErrorReason::NotFound, field, Some(render_value(value)), "")
    }

    fn new(reason: FieldErrorReason, field: impl Into<String>, value: Option<String>, detail: &str) -> FieldError {
        let mut message = reason.title().to_string();
        if let Some(value) = value {
            message.push_str(": ");
            message.push_str(&value);
        }
        if !detail.is_empty() {
            message.push_str(": ");
            message.push_str(detail);
        }
        FieldError { reason, field: field.into(), message }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// The Status message of a 422: `Pod "x" is invalid: spec.containers[0].image: Required value` for one error,
/// `Deployment.apps "x" is invalid: [a: ..., b: ...]` for several (repeated texts shown once). `kind` is the
/// group-qualified kind, [`qualified_kind`].
pub fn invalid_message(kind: &str, name: &str, errors: &[FieldError]) -> String {
    let mut seen = BTreeSet::new();
    let texts: Vec<String> = errors.iter().map(ToString::to_string).filter(|text| seen.insert(text.clone())).collect();
    let body = match texts.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    };
    format!("{kind} {} is invalid: {body}", go_quote(name))
}

/// The kind as upstream names it in messages: `Pod` for the core group, `Deployment.apps` otherwise.
pub fn qualified_kind(def: &ResourceDef) -> String {
    if def.group.is_empty() {
        def.kind.clone()
    } else {
        format!("{}.{}", def.kind, def.group)
    }
}

/// Validates an object about to be written: a create when `old` is `None`, an update of `old` otherwise. Both are
/// defaulted already. An empty list means valid.
pub fn validate(def: &ResourceDef, object: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let empty = Map::new();
    let root = object.as_object().unwrap_or(&empty);
    let old_root = old.and_then(Value::as_object);
    validate_object_meta(def, root, &mut errors);
    if !matches!(def.schema, SchemaSource::BuiltIn(_)) {
        return errors;
    }
    match (def.group.as_str(), def.kind.as_str()) {
        ("", "Pod") => {
            let spec = object_at(root, "spec");
            validate_pod_spec(spec, "spec", true, &mut errors);
            if let Some(old_spec) = old_root.map(|o| object_at(o, "spec")) {
                validate_pod_spec_update(spec, old_spec, &mut errors);
            }
        }
        ("", "PodTemplate") => validate_pod_template(object_at(root, "template"), "template", &mut errors),
        ("", "ReplicationController") => validate_replication_controller(root, &mut errors),
        ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet") => {
            validate_workload(&def.kind, root, old_root, &mut errors)
        }
        ("batch", "Job") => validate_job(root, old_root, &mut errors),
        ("batch", "CronJob") => validate_cron_job(root, &mut errors),
        ("", "Service") => validate_service(root, old_root, &mut errors),
        ("", "ConfigMap") => validate_config_map(root, old_root, &mut errors),
        ("", "Secret") => validate_secret(root, old_root, &mut errors),
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            validate_role_binding(def, root, old_root, &mut errors)
        }
        ("rbac.authorization.k8s.io", "Role" | "ClusterRole") => validate_role_rules(def, root, &mut errors),
        ("scheduling.k8s.io", "PriorityClass") => validate_priority_class(root, old_root, &mut errors),
        _ => {}
    }
    errors
}

/// The lowest and highest node port a Service may ask for (upstream's default `--service-node-port-range`).
pub const NODE_PORT_RANGE: std::ops::RangeInclusive<i64> = 30000..=32767;

/// Upstream's limit on the total size of an object's annotations (keys and values).
const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

/// Upstream's limit on the data of one ConfigMap or Secret.
const MAX_DATA_SIZE: usize = 1024 * 1024;

const DNS1123_LABEL_MESSAGE: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1123_SUBDOMAIN_MESSAGE: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1035_LABEL_MESSAGE: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
const QUALIFIED_NAME_MESSAGE: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE_MESSAGE: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const CONFIG_KEY_MESSAGE: &str = "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')";
const SELECTOR_MISMATCH: &str = "`selector` does not match template `labels`";
const IMMUTABLE: &str = "field is immutable";
const NON_NEGATIVE: &str = "must be greater than or equal to 0";
const POD_UPDATE_FORBIDDEN: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// Which name rule a kind's `metadata.name` follows upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NameRule {
    Dns1123Subdomain,
    Dns1123Label,
    Dns1035Label,
    /// Anything usable as one URL path segment: the rule for RBAC objects and the least any name must meet.
    PathSegment,
}

fn name_rule(def: &ResourceDef) -> NameRule {
    if matches!(def.schema, SchemaSource::CustomResource(_)) {
        return NameRule::Dns1123Subdomain;
    }
    match (def.group.as_str(), def.kind.as_str()) {
        ("", "Namespace") => NameRule::Dns1123Label,
        ("", "Service") => NameRule::Dns1035Label,
        ("", _)
        | ("apps", _)
        | ("batch", _)
        | ("autoscaling", _)
        | ("policy", "PodDisruptionBudget")
        | ("networking.k8s.io", "Ingress" | "IngressClass" | "NetworkPolicy")
        | ("storage.k8s.io", "StorageClass")
        | ("scheduling.k8s.io", "PriorityClass")
        | ("coordination.k8s.io", "Lease")
        | ("discovery.k8s.io", "EndpointSlice")
        | ("node.k8s.io", "RuntimeClass") => NameRule::Dns1123Subdomain,
        _ => NameRule::PathSegment,
    }
}

/// Messages for a name, or for a `generateName` prefix (`prefix`), under a rule.
fn name_messages(rule: NameRule, name: &str, prefix: bool) -> Vec<String> {
    let name = if prefix { mask_trailing_dash(name) } else { name.to_string() };
    match rule {
        NameRule::Dns1123Subdomain => dns1123_subdomain(&name),
        NameRule::Dns1123Label => dns1123_label(&name),
        NameRule::Dns1035Label => dns1035_label(&name),
        NameRule::PathSegment => path_segment_name(&name, prefix),
    }
}

/// Upstream checks a `generateName` as if its trailing dash were followed by a letter (it replaces the last two
/// characters with `a`), since the generated suffix completes it.
fn mask_trailing_dash(name: &str) -> String {
    if name.len() > 1 && name.ends_with('-') {
        let mut masked: String = name.chars().take(name.chars().count() - 2).collect();
        masked.push('a');
        masked
    } else {
        name.to_string()
    }
}

fn is_dns_label_shaped(value: &str) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

fn is_dns_subdomain_shaped(value: &str) -> bool {
    value.split('.').all(is_dns_label_shaped)
}

fn max_length_message(max: usize) -> String {
    format!("must be no more than {max} characters")
}

fn dns1123_label(value: &str) -> Vec<String> {
    let mut messages = Vec::new();
    if value.len() > 63 {
        messages.push(max_length_message(63));
    }
    if !is_dns_label_shaped(value) {
        if is_dns_subdomain_shaped(value) {
            messages.push("must not contain dots".to_string());
        } else {
            messages.push(DNS1123_LABEL_MESSAGE.to_string());
        }
    }
    messages
}

pub(crate) fn dns1123_subdomain(value: &str) -> Vec<String> {
    let mut messages = Vec::new();
    if value.len() > 253 {
        messages.push(max_length_message(253));
    }
    if !is_dns_subdomain_shaped(value) {
        messages.push(DNS1123_SUBDOMAIN_MESSAGE.to_string());
    }
    messages
}

fn dns1035_label(value: &str) -> Vec<String> {
    let mut messages = Vec::new();
    if value.len() > 63 {
        messages.push(max_length_message(63));
    }
    if !(is_dns_label_shaped(value) && value.as_bytes()[0].is_ascii_lowercase()) {
        messages.push(DNS1035_LABEL_MESSAGE.to_string());
    }
    messages
}

fn path_segment_name(value: &str, prefix: bool) -> Vec<String> {
    if !prefix {
        for illegal in [".", ".."] {
            if value == illegal {
                return vec![format!("may not be '{illegal}'")];
            }
        }
    }
    ["/", "%"]
        .iter()
        .filter(|illegal| value.contains(**illegal))
        .map(|illegal| format!("may not contain '{illegal}'"))
        .collect()
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
fn is_qualified_name_part(value: &str) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
}

/// A label key or annotation key: an optional DNS subdomain prefix and `/`, then a name of at most 63 characters.
fn qualified_name(value: &str) -> Vec<String> {
    let mut messages = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                messages.push("prefix part must be non-empty".to_string());
            } else {
                messages.extend(dns1123_subdomain(prefix).into_iter().map(|m| format!("prefix part {m}")));
            }
            *name
        }
        _ => {
            return vec![format!(
                "a qualified name {QUALIFIED_NAME_MESSAGE} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
            )];
        }
    };
    if name.is_empty() {
        messages.push("name part must be non-empty".to_string());
    } else if name.len() > 63 {
        messages.push(format!("name part {}", max_length_message(63)));
    }
    if !is_qualified_name_part(name) {
        messages.push(format!("name part {QUALIFIED_NAME_MESSAGE}"));
    }
    messages
}

fn label_value(value: &str) -> Vec<String> {
    let mut messages = Vec::new();
    if value.len() > 63 {
        messages.push(max_length_message(63));
    }
    if !value.is_empty() && !is_qualified_name_part(value) {
        messages.push(LABEL_VALUE_MESSAGE.to_string());
    }
    messages
}

fn config_key(value: &str) -> Vec<String> {
    let mut messages = Vec::new();
    if value.len() > 253 {
        messages.push(max_length_message(253));
    }
    let shaped =
        !value.is_empty() && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !shaped {
        messages.push(CONFIG_KEY_MESSAGE.to_string());
    }
    if value == "." {
        messages.push("must not be '.'".to_string());
    } else if value == ".." {
        messages.push("must not be '..'".to_string());
    } else if value.starts_with("..") {
        messages.push("must not start with '..'".to_string());
    }
    messages
}

/// A port name: at most 15 characters of `[-a-z0-9]`, at least one letter, no leading, trailing or double hyphen.
fn port_name(value: &str) -> Vec<String> {
    let mut messages = Vec::new();
    if value.len() > 15 {
        messages.push(max_length_message(15));
    }
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        messages.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_string());
    }
    if !value.bytes().any(|b| b.is_ascii_lowercase()) {
        messages.push("must contain at least one letter (a-z)".to_string());
    }
    if value.contains("--") {
        messages.push("must not contain consecutive hyphens".to_string());
    }
    if value.starts_with('-') || value.ends_with('-') {
        messages.push("must not begin or end with a hyphen".to_string());
    }
    messages
}

fn port_number(value: i64) -> Vec<String> {
    if (1..=65535).contains(&value) {
        Vec::new()
    } else {
        vec!["must be between 1 and 65535, inclusive".to_string()]
    }
}

fn validate_object_meta(def: &ResourceDef, root: &Map<String, Value>, errors: &mut Vec<FieldError>) {
    let metadata = object_at(root, "metadata");
    let rule = name_rule(def);
    let generate_name = str_at(metadata, "generateName");
    if !generate_name.is_empty() {
        for message in name_messages(rule, generate_name, true) {
            errors.push(FieldError::invalid("metadata.generateName", &Value::from(generate_name), &message));
        }
    }
    let name = str_at(metadata, "name");
    if name.is_empty() {
        errors.push(FieldError::required("metadata.name", "name or generateName is required"));
    } else {
        for message in name_messages(rule, name, false) {
            errors.push(FieldError::invalid("metadata.name", &Value::from(name), &message));
        }
        if def.group == "batch" && def.kind == "CronJob" && name.len() > 52 {
            errors.push(FieldError::invalid("metadata.name", &Value::from(name), "must be no more than 52 characters"));
        }
    }
    validate_labels(metadata.get("labels"), "metadata.labels", errors);
    validate_annotations(metadata.get("annotations"), "metadata.annotations", errors);
    for finalizer in array_at(metadata, "finalizers") {
        let text = finalizer.as_str().unwrap_or_default();
        for message in qualified_name(text) {
            errors.push(FieldError::invalid("metadata.finalizers", &Value::from(text), &message));
        }
    }
    for (i, owner) in array_at(metadata, "ownerReferences").iter().enumerate() {
        let path = format!("metadata.ownerReferences[{i}]");
        for (key, what) in [("apiVersion", "version"), ("kind", "kind"), ("name", "name"), ("uid", "uid")] {
            if owner.get(key).and_then(Value::as_str).unwrap_or("").is_empty() {
                let detail = format!("{what} must not be empty");
                errors.push(FieldError::invalid(format!("{path}.{key}"), &Value::from(""), &detail));
            }
        }
    }
}

fn validate_labels(labels: Option<&Value>, path: &str, errors: &mut Vec<FieldError>) {
    let Some(labels) = labels.and_then(Value::as_object) else { return };
    for (key, value) in sorted(labels) {
        for message in qualified_name(key) {
            errors.push(FieldError::invalid(path, &Value::from(key.as_str()), &message));
        }
        let text = value.as_str().unwrap_or_default();
        for message in label_value(text) {
            errors.push(FieldError::invalid(path, &Value::from(text), &message));
        }
    }
}

fn validate_annotations(annotations: Option<&Value>, path: &str, errors: &mut Vec<FieldError>) {
    let Some(annotations) = annotations.and_then(Value::as_object) else { return };
    let mut total = 0;
    for (key, value) in sorted(annotations) {
        for message in qualified_name(&key.to_lowercase()) {
            errors.push(FieldError::invalid(path, &Value::from(key.as_str()), &message));
        }
        total += key.len() + value.as_str().map_or(0, str::len);
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errors.push(FieldError::too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT));
    }
}

fn validate_pod_template(template: &Map<String, Value>, path: &str, errors: &mut Vec<FieldError>) {
    let metadata = object_at(template, "metadata");
    // Upstream names the template's labels as if they were fields of the template itself.
    validate_labels(metadata.get("labels"), &format!("{path}.labels"), errors);
    validate_annotations(metadata.get("annotations"), &format!("{path}.annotations"), errors);
    validate_pod_spec(object_at(template, "spec"), &format!("{path}.spec"), false, errors);
}

/// The pod spec rules shared by pods and templates; `is_pod` adds what only a pod needs (an image).
fn validate_pod_spec(spec: &Map<String, Value>, path: &str, is_pod: bool, errors: &mut Vec<FieldError>) {
    let mut volume_names = BTreeSet::new();
    for (i, volume) in array_at(spec, "volumes").iter().enumerate() {
        let name_path = format!("{path}.volumes[{i}].name");
        let name = volume.get("name").and_then(Value::as_str).unwrap_or("");
        if name.is_empty() {
            errors.push(FieldError::required(name_path, ""));
        } else {
            for message in dns1123_label(name) {
                errors.push(FieldError::invalid(&name_path, &Value::from(name), &message));
            }
            if !volume_names.insert(name.to_string()) {
                errors.push(FieldError::duplicate(name_path, &Value::from(name)));
            }
        }
    }
    let containers = array_at(spec, "containers");
    if containers.is_empty() {
        errors.push(FieldError::required(format!("{path}.containers"), ""));
    }
    let mut container_names = BTreeSet::new();
    for (i, container) in containers.iter().enumerate() {
        let container_path = format!("{path}.containers[{i}]");
        validate_container(container, &container_path, is_pod, &volume_names, &mut container_names, errors);
    }
    // Init container names must also differ from the regular containers'; upstream reports it on the init one.
    for (i, container) in array_at(spec, "initContainers").iter().enumerate() {
        let container_path = format!("{path}.initContainers[{i}]");
        validate_container(container, &container_path, is_pod, &volume_names, &mut container_names, errors);
    }
    let restart_policy = spec.get("restartPolicy").cloned().unwrap_or(Value::from(""));
    match restart_policy.as_str().unwrap_or("") {
        "Always" | "OnFailure" | "Never" => {}
        "" => errors.push(FieldError::required(format!("{path}.restartPolicy"), "")),
        _ => errors.push(FieldError::not_supported(
            format!("{path}.restartPolicy"),
            &restart_policy,
            &["Always", "OnFailure", "Never"],
        )),
    }
    let dns_policy = spec.get("dnsPolicy").cloned().unwrap_or(Value::from(""));
    match dns_policy.as_str().unwrap_or("") {
        "ClusterFirstWithHostNet" | "ClusterFirst" | "Default" | "None" => {}
        "" => errors.push(FieldError::required(format!("{path}.dnsPolicy"), "")),
        _ => errors.push(FieldError::not_supported(
            format!("{path}.dnsPolicy"),
            &dns_policy,
            &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
        )),
    }
}

fn validate_container(
    container: &Value,
    path: &str,
    is_pod: bool,
    volume_names: &BTreeSet<String>,
    container_names: &mut BTreeSet<String>,
    errors: &mut Vec<FieldError>,
) {
    let empty = Map::new();
    let container = container.as_object().unwrap_or(&empty);
    let name = str_at(container, "name");
    if name.is_empty() {
        errors.push(FieldError::required(format!("{path}.name"), ""));
    } else {
        for message in dns1123_label(name) {
            errors.push(FieldError::invalid(format!("{path}.name"), &Value::from(name), &message));
        }
        if !container_names.insert(name.to_string()) {
            errors.push(FieldError::duplicate(format!("{path}.name"), &Value::from(name)));
        }
    }
    if is_pod && str_at(container, "image").is_empty() {
        errors.push(FieldError::required(format!("{path}.image"), ""));
    }
    let mut port_names = BTreeSet::new();
    for (i, port) in array_at(container, "ports").iter().enumerate() {
        let port_path = format!("{path}.ports[{i}]");
        let name = port.get("name").and_then(Value::as_str).unwrap_or("");
        if !name.is_empty() {
            let messages = port_name(name);
            if !messages.is_empty() {
                for message in messages {
                    errors.push(FieldError::invalid(format!("{port_path}.name"), &Value::from(name), &message));
                }
            } else if !port_names.insert(name.to_string()) {
                errors.push(FieldError::duplicate(format!("{port_path}.name"), &Value::from(name)));
            }
        }
        let container_port = port.get("containerPort").and_then(Value::as_i64).unwrap_or(0);
        if container_port == 0 {
            errors.push(FieldError::required(format!("{port_path}.containerPort"), ""));
        } else {
            for message in port_number(container_port) {
                let field = format!("{port_path}.containerPort");
                errors.push(FieldError::invalid(field, &Value::from(container_port), &message));
            }
        }
        let host_port = port.get("hostPort").and_then(Value::as_i64).unwrap_or(0);
        if host_port != 0 {
            for message in port_number(host_port) {
                errors.push(FieldError::invalid(format!("{port_path}.hostPort"), &Value::from(host_port), &message));
            }
        }
        validate_protocol(port.get("protocol"), &format!("{port_path}.protocol"), errors);
    }
    for (i, env) in array_at(container, "env").iter().enumerate() {
        let name_path = format!("{path}.env[{i}].name");
        let name = env.get("name").and_then(Value::as_str).unwrap_or("");
        if name.is_empty() {
            errors.push(FieldError::required(name_path, ""));
        } else if name.chars().any(|c| !(c.is_ascii_graphic() || c == ' ') || c == '=') {
            // v1.33 accepts any printable ASCII but `=` (RelaxedEnvironmentVariableValidation, on by default).
            let detail =
                "a valid environment variable name must consist only of printable ASCII characters other than '='";
            errors.push(FieldError::invalid(name_path, &Value::from(name), detail));
        }
    }
    for (i, mount) in array_at(container, "volumeMounts").iter().enumerate() {
        let name = mount.get("name").and_then(Value::as_str).unwrap_or("");
        let name_path = format!("{path}.volumeMounts[{i}].name");
        if name.is_empty() {
            errors.push(FieldError::required(name_path, ""));
        } else if !volume_names.contains(name) {
            errors.push(FieldError::not_found(name_path, &Value::from(name)));
        }
        if mount.get("mountPath").and_then(Value::as_str).unwrap_or("").is_empty() {
            errors.push(FieldError::required(format!("{path}.volumeMounts[{i}].mountPath"), ""));
        }
    }
    let pull_policy = container.get("imagePullPolicy").cloned().unwrap_or(Value::from(""));
    match pull_policy.as_str().unwrap_or("") {
        "Always" | "IfNotPresent" | "Never" => {}
        "" => errors.push(FieldError::required(format!("{path}.imagePullPolicy"), "")),
        _ => errors.push(FieldError::not_supported(
            format!("{path}.imagePullPolicy"),
            &pull_policy,
            &["Always", "IfNotPresent", "Never"],
        )),
    }
}

fn validate_protocol(protocol: Option<&Value>, path: &str, errors: &mut Vec<FieldError>) {
    let protocol = protocol.cloned().unwrap_or(Value::from(""));
    match protocol.as_str().unwrap_or("") {
        "TCP" | "UDP" | "SCTP" => {}
        "" => errors.push(FieldError::required(path, "")),
        _ => errors.push(FieldError::not_supported(path, &protocol, &["SCTP", "TCP", "UDP"])),
    }
}

/// A pod's spec may change only in container images, `activeDeadlineSeconds`, added tolerations and a negative grace
/// period set to 1. Everything else must compare equal to the stored spec.
fn validate_pod_spec_update(new: &Map<String, Value>, old: &Map<String, Value>, errors: &mut Vec<FieldError>) {
    for key in ["containers", "initContainers"] {
        if array_at(new, key).len() != array_at(old, key).len() {
            errors.push(FieldError::forbidden(format!("spec.{key}"), "pod updates may not add or remove containers"));
            return;
        }
    }
    let mut munged = new.clone();
    for key in ["containers", "initContainers"] {
        if let Some(containers) = munged.get_mut(key).and_then(Value::as_array_mut) {
            for (container, old_container) in containers.iter_mut().zip(array_at(old, key)) {
                if let (Some(container), Some(image)) = (container.as_object_mut(), old_container.get("image")) {
                    container.insert("image".into(), image.clone());
                } else if let Some(container) = container.as_object_mut() {
                    container.remove("image");
                }
            }
        }
    }
    match (
        new.get("activeDeadlineSeconds").and_then(Value::as_i64),
        old.get("activeDeadlineSeconds").and_then(Value::as_i64),
    ) {
        (Some(new_deadline), old_deadline) => {
            let field = "spec.activeDeadlineSeconds";
            if !(0..=i64::from(i32::MAX)).contains(&new_deadline) {
                let detail = format!("must be between 0 and {}, inclusive", i32::MAX);
                errors.push(FieldError::invalid(field, &Value::from(new_deadline), &detail));
            }
            if old_deadline.is_some_and(|old_deadline| new_deadline > old_deadline) {
                errors.push(FieldError::invalid(
                    field,
                    &Value::from(new_deadline),
                    "must be less than or equal to previous value",
                ));
            }
        }
        (None, Some(_)) => errors.push(FieldError::invalid(
            "spec.activeDeadlineSeconds",
            &Value::Null,
            "must not update from a positive integer to nil value",
        )),
        (None, None) => {}
    }
    copy_or_remove(&mut munged, old, "activeDeadlineSeconds");
    let old_tolerations = array_at(old, "tolerations");
    let new_tolerations = array_at(new, "tolerations");
    for (i, old_toleration) in old_tolerations.iter().enumerate() {
        let kept = new_tolerations.iter().any(|t| same_toleration_but_seconds(t, old_toleration));
        if !kept {
            let detail = "existing toleration can not be modified except its tolerationSeconds";
            errors.push(FieldError::forbidden(format!("spec.tolerations[{i}]"), detail));
        }
    }
    copy_or_remove(&mut munged, old, "tolerations");
    let old_grace = old.get("terminationGracePeriodSeconds").and_then(Value::as_i64);
    let new_grace = new.get("terminationGracePeriodSeconds").and_then(Value::as_i64);
    if old_grace.is_some_and(|g| g < 0) && new_grace == Some(1) {
        copy_or_remove(&mut munged, old, "terminationGracePeriodSeconds");
    }
    let munged = normalized(&Value::Object(munged));
    let old = normalized(&Value::Object(old.clone()));
    if munged != old {
        let mut changed = Vec::new();
        changed_paths(&old, &munged, "spec", &mut changed);
        let detail = format!("{POD_UPDATE_FORBIDDEN}\n  changed: {}", changed.join(", "));
        errors.push(FieldError::forbidden("spec", &detail));
    }
}

fn same_toleration_but_seconds(a: &Value, b: &Value) -> bool {
    let field = |t: &Value, key: &str| t.get(key).and_then(Value::as_str).unwrap_or("").to_string();
    ["key", "operator", "value", "effect"].iter().all(|key| {
        let (left, right) = (field(a, key), field(b, key));
        // An empty operator means Equal.
        left == right || (*key == "operator" && left.replace("Equal", "") == right.replace("Equal", ""))
    })
}

fn copy_or_remove(target: &mut Map<String, Value>, source: &Map<String, Value>, key: &str) {
    match source.get(key) {
        Some(value) => {
            target.insert(key.to_string(), value.clone());
        }
        None => {
            target.remove(key);
        }
    }
}

/// Upstream compares specs semantically: `null`, and empty lists, count as unset.
fn normalized(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null() && !v.as_array().is_some_and(Vec::is_empty))
                .map(|(k, v)| (k.clone(), normalized(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(normalized).collect()),
        other => other.clone(),
    }
}

fn changed_paths(old: &Value, new: &Value, path: &str, out: &mut Vec<String>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                let (left, right) = (a.get(key).unwrap_or(&Value::Null), b.get(key).unwrap_or(&Value::Null));
                if left != right {
                    changed_paths(left, right, &format!("{path}.{key}"), out);
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (left, right)) in a.iter().zip(b).enumerate() {
                if left != right {
                    changed_paths(left, right, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => out.push(path.to_string()),
    }
}

fn validate_replication_controller(root: &Map<String, Value>, errors: &mut Vec<FieldError>) {
    let spec = object_at(root, "spec");
    validate_non_negative(spec, "replicas", "spec", errors);
    let selector = object_at(spec, "selector");
    if selector.is_empty() {
        errors.push(FieldError::required("spec.selector", ""));
    }
    let Some(template) = spec.get("template").and_then(Value::as_object) else {
        errors.push(FieldError::required("spec.template", ""));
        return;
    };
    let labels = object_at(object_at(template, "metadata"), "labels");
    if !selector.is_empty() && !selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
        let rendered = go_string_map(Some(labels));
        errors.push(FieldError::invalid_rendered("spec.template.metadata.labels", rendered, SELECTOR_MISMATCH));
    }
    validate_pod_template(template, "spec.template", errors);
    validate_template_restarts_always(template, "spec.template", errors);
}

fn validate_template_restarts_always(template: &Map<String, Value>, path: &str, errors: &mut Vec<FieldError>) {
    let policy = object_at(template, "spec").get("restartPolicy").cloned().unwrap_or(Value::from(""));
    if policy.as_str() != Some("Always") {
        errors.push(FieldError::not_supported(format!("{path}.spec.restartPolicy"), &policy, &["Always"]));
    }
}

fn validate_workload(
    kind: &str,
    root: &Map<String, Value>,
    old: Option<&Map<String, Value>>,
    errors: &mut Vec<FieldError>,
) {
    let spec = object_at(root, "spec");
    if kind != "DaemonSet" {
        validate_non_negative(spec, "replicas", "spec", errors);
    }
    let selector = spec.get("selector").filter(|s| !s.is_null());
    match selector {
        None => errors.push(FieldError::required("spec.selector", "")),
        Some(selector) => {
            validate_label_selector(selector, "spec.selector", errors);
            if selector_is_empty(selector) {
                let word = match kind {
                    "StatefulSet" => "statefulset",
                    "DaemonSet" => "daemonset",
                    _ => "deployment",
                };
                let detail = format!("empty selector is invalid for {word}");
                errors.push(FieldError::invalid_rendered("spec.selector", go_label_selector(Some(selector)), &detail));
            }
        }
    }
    match spec.get("template").and_then(Value::as_object) {
        None => errors.push(FieldError::required("spec.template", "")),
        Some(template) => {
            let labels = object_at(object_at(template, "metadata"), "labels");
            if let Some(selector) = selector.filter(|s| !selector_is_empty(s)) {
                if !selector_matches(selector, labels) {
                    let rendered = go_string_map(Some(labels));
                    errors.push(FieldError::invalid_rendered(
                        "spec.template.metadata.labels",
                        rendered,
                        SELECTOR_MISMATCH,
                    ));
                }
            }
            if kind == "StatefulSet" {
                // The set's pods get a volume per claim template, which the template's containers mount by name.
                let mut with_claims = template.clone();
                let claims: Vec<Value> = array_at(spec, "volumeClaimTemplates")
                    .iter()
                    .filter_map(|claim| claim.pointer("/metadata/name").and_then(Value::as_str))
                    .map(|name| serde_json::json!({"name": name, "persistentVolumeClaim": {"claimName": name}}))
                    .collect();
                if let Some(pod_spec) = with_claims.get_mut("spec").and_then(Value::as_object_mut) {
                    let mut volumes = array_at(pod_spec, "volumes").to_vec();
                    volumes.extend(claims);
                    pod_spec.insert("volumes".into(), Value::Array(volumes));
                }
                validate_pod_template(&with_claims, "spec.template", errors);
            } else {
                validate_pod_template(template, "spec.template", errors);
            }
            validate_template_restarts_always(template, "spec.template", errors);
        }
    }
    if kind == "Deployment" {
        validate_deployment_strategy(spec, errors);
    }
    if kind == "StatefulSet" {
        let policy = str_at(spec, "podManagementPolicy");
        if policy != "OrderedReady" && policy != "Parallel" {
            let detail = "must be 'OrderedReady' or 'Parallel'";
            errors.push(FieldError::invalid("spec.podManagementPolicy", &Value::from(policy), detail));
        }
    }
    let Some(old) = old else { return };
    let old_spec = object_at(old, "spec");
    if normalized_at(spec, "selector") != normalized_at(old_spec, "selector") {
        errors.push(FieldError::invalid_rendered("spec.selector", go_label_selector(selector), IMMUTABLE));
    }
    if kind == "StatefulSet" {
        let mutable = [
            "replicas",
            "ordinals",
            "template",
            "updateStrategy",
            "persistentVolumeClaimRetentionPolicy",
            "minReadySeconds",
        ];
        let strip = |spec: &Map<String, Value>| {
            let mut rest = spec.clone();
            for key in mutable.iter().chain(&["selector"]) {
                rest.remove(*key);
            }
            normalized(&Value::Object(rest))
        };
        if strip(spec) != strip(old_spec) {
            let detail = "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden";
            errors.push(FieldError::forbidden("spec", detail));
        }
    }
}

fn validate_deployment_strategy(spec: &Map<String, Value>, errors: &mut Vec<FieldError>) {
    let strategy = object_at(spec, "strategy");
    let strategy_type = strategy.get("type").cloned().unwrap_or(Value::from(""));
    match strategy_type.as_str().unwrap_or("") {
        "RollingUpdate" => {
            let rolling = object_at(strategy, "rollingUpdate");
            let is_zero = |v: Option<&Value>| match v {
                Some(Value::Number(n)) => n.as_i64() == Some(0),
                Some(Value::String(s)) => s == "0%" || s == "0",
                _ => false,
            };
            if is_zero(rolling.get("maxUnavailable")) && is_zero(rolling.get("maxSurge")) {
                let value = rolling.get("maxUnavailable").cloned().unwrap_or(Value::Null);
                let field = "spec.strategy.rollingUpdate.maxUnavailable";
                errors.push(FieldError::invalid(field, &value, "may not be 0 when `maxSurge` is 0"));
            }
        }
        "Recreate" => {
            if strategy.get("rollingUpdate").is_some_and(|r| !r.is_null()) {
                let detail = "may not be specified when strategy `type` is 'Recreate'";
                errors.push(FieldError::forbidden("spec.strategy.rollingUpdate", detail));
            }
        }
        "" => errors.push(FieldError::required("spec.strategy.type", "")),
        _ => {
            errors.push(FieldError::not_supported("spec.strategy.type", &strategy_type, &["Recreate", "RollingUpdate"]))
        }
    }
}

fn validate_job_spec_common(spec: &Map<String, Value>, path: &str, errors: &mut Vec<FieldError>) {
    for field in [
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
        "backoffLimitPerIndex",
        "maxFailedIndexes",
    ] {
        validate_non_negative(spec, field, path, errors);
    }
    let set = |field: &str| spec.get(field).filter(|value| !value.is_null());
    if set("maxFailedIndexes").is_some() && set("backoffLimitPerIndex").is_none() {
        errors.push(FieldError::required(format!("{path}.backoffLimitPerIndex"), "when maxFailedIndexes is specified"));
    }
    let mode = set("completionMode").cloned().unwrap_or(Value::from("NonIndexed"));
    let indexed = mode == "Indexed";
    if mode != "NonIndexed" && !indexed {
        errors.push(FieldError::not_supported(format!("{path}.completionMode"), &mode, &["NonIndexed", "Indexed"]));
    }
    if indexed {
        if set("completions").is_none() {
            errors.push(FieldError::required(format!("{path}.completions"), "when completion mode is Indexed"));
        }
        let completions = spec.get("completions").and_then(Value::as_i64);
        if let (Some(completions), Some(max)) = (completions, spec.get("maxFailedIndexes").and_then(Value::as_i64)) {
            if max > completions {
                let detail = "must be less than or equal to completions";
                errors.push(FieldError::invalid(format!("{path}.maxFailedIndexes"), &Value::from(max), detail));
            }
        }
    } else {
        for field in ["backoffLimitPerIndex", "maxFailedIndexes"] {
            if let Some(value) = set(field) {
                errors.push(FieldError::invalid(format!("{path}.{field}"), value, "requires indexed completion mode"));
            }
        }
    }
    let failure_policy = set("podFailurePolicy");
    if let Some(policy) = failure_policy {
        validate_pod_failure_policy(spec, policy, &format!("{path}.podFailurePolicy"), errors);
    }
    if let Some(policy) = set("successPolicy") {
        if indexed {
            validate_success_policy(spec, policy, &format!("{path}.successPolicy"), errors);
        } else {
            errors.push(FieldError::invalid(
                format!("{path}.successPolicy"),
                policy,
                "requires indexed completion mode",
            ));
        }
    }
    if let Some(replacement) = set("podReplacementPolicy") {
        let supported: &[&str] =
            if failure_policy.is_some() { &["Failed"] } else { &["Failed", "TerminatingOrFailed"] };
        if !supported.iter().any(|value| replacement == value) {
            errors.push(FieldError::not_supported(format!("{path}.podReplacementPolicy"), replacement, supported));
        }
    }
    let template = object_at(spec, "template");
    validate_pod_template(template, &format!("{path}.template"), errors);
    let policy = str_at(object_at(template, "spec"), "restartPolicy");
    let field = format!("{path}.template.spec.restartPolicy");
    if policy.is_empty() || policy == "Always" {
        errors.push(FieldError::required(field, "valid values: \"OnFailure\", \"Never\""));
    } else if failure_policy.is_some() && policy != "Never" {
        let detail = "only \"Never\" is supported when podFailurePolicy is specified";
        errors.push(FieldError::invalid(field, &Value::from(policy), detail));
    }
}

fn validate_pod_failure_policy(spec: &Map<String, Value>, policy: &Value, path: &str, errors: &mut Vec<FieldError>) {
    let rules = policy.get("rules").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    if rules.len() > 20 {
        errors.push(FieldError::too_many(format!("{path}.rules"), rules.len(), 20));
    }
    let pod_spec = object_at(object_at(spec, "template"), "spec");
    let container_names: BTreeSet<&str> = array_at(pod_spec, "containers")
        .iter()
        .chain(array_at(pod_spec, "initContainers"))
        .filter_map(|container| container.get("name").and_then(Value::as_str))
        .collect();
    let per_index = spec.get("backoffLimitPerIndex").is_some_and(|value| !value.is_null());
    for (i, rule) in rules.iter().enumerate() {
        let rule_path = format!("{path}.rules[{i}]");
        let action = rule.get("action").cloned().unwrap_or(Value::from(""));
        const ACTIONS: [&str; 4] = ["Count", "FailIndex", "FailJob", "Ignore"];
        match action.as_str().unwrap_or("") {
            "" => errors.push(FieldError::required(
                format!("{rule_path}.action"),
                "valid values: [\"Count\" \"FailIndex\" \"FailJob\" \"Ignore\"]",
            )),
            "FailIndex" if !per_index => errors.push(FieldError::invalid(
                format!("{rule_path}.action"),
                &action,
                "requires the backoffLimitPerIndex to be set",
            )),
            known if ACTIONS.contains(&known) => {}
            _ => errors.push(FieldError::not_supported(format!("{rule_path}.action"), &action, &ACTIONS)),
        }
        let exit_codes = rule.get("onExitCodes").filter(|value| !value.is_null());
        let conditions = rule.get("onPodConditions").and_then(Value::as_array).filter(|list| !list.is_empty());
        if let Some(requirement) = exit_codes {
            validate_on_exit_codes(requirement, &container_names, &format!("{rule_path}.onExitCodes"), errors);
        }
        for (j, pattern) in conditions.into_iter().flatten().enumerate() {
            let pattern_path = format!("{rule_path}.onPodConditions[{j}]");
            let type_ = pattern.get("type").and_then(Value::as_str).unwrap_or("");
            for message in qualified_name(type_) {
                errors.push(FieldError::invalid(format!("{pattern_path}.type"), &Value::from(type_), &message));
            }
            let status = pattern.get("status").cloned().unwrap_or(Value::from(""));
            if !["True", "False", "Unknown"].iter().any(|known| status == *known) {
                let field = format!("{pattern_path}.status");
                errors.push(FieldError::not_supported(field, &status, &["False", "True", "Unknown"]));
            }
        }
        let detail = match (exit_codes.is_some(), conditions.is_some()) {
            (true, true) => "specifying both OnExitCodes and OnPodConditions is not supported",
            (false, false) => "specifying one of OnExitCodes and OnPodConditions is required",
            _ => continue,
        };
        errors.push(FieldError::new(FieldErrorReason::Invalid, rule_path, None, detail));
    }
}

fn validate_on_exit_codes(
    requirement: &Value,
    container_names: &BTreeSet<&str>,
    path: &str,
    errors: &mut Vec<FieldError>,
) {
    let operator = requirement.get("operator").cloned().unwrap_or(Value::from(""));
    match operator.as_str().unwrap_or("") {
        "In" | "NotIn" => {}
        "" => errors.push(FieldError::required(format!("{path}.operator"), "valid values: [\"In\" \"NotIn\"]")),
        _ => errors.push(FieldError::not_supported(format!("{path}.operator"), &operator, &["In", "NotIn"])),
    }
    if let Some(name) = requirement.get("containerName").and_then(Value::as_str) {
        if !container_names.contains(name) {
            let detail = "must be one of the container or initContainer names in the pod template";
            errors.push(FieldError::invalid(format!("{path}.containerName"), &Value::from(name), detail));
        }
    }
    let values: Vec<i64> =
        requirement.get("values").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_i64).collect();
    if values.is_empty() {
        errors.push(FieldError::invalid_rendered(
            format!("{path}.values"),
            "[]int32(nil)".into(),
            "at least one value is required",
        ));
    } else if values.len() > 255 {
        errors.push(FieldError::too_many(format!("{path}.values"), values.len(), 255));
    }
    let mut seen = BTreeSet::new();
    for (j, value) in values.iter().enumerate() {
        if operator == "In" && *value == 0 {
            let detail = "must not be 0 for the In operator";
            errors.push(FieldError::invalid(format!("{path}.values[{j}]"), &Value::from(*value), detail));
        }
        if !seen.insert(*value) {
            errors.push(FieldError::duplicate(format!("{path}.values[{j}]"), &Value::from(*value)));
        }
    }
    if values.windows(2).any(|pair| pair[0] > pair[1]) {
        let rendered = format!("[]int32{{{}}}", values.iter().map(i64::to_string).collect::<Vec<_>>().join(", "));
        errors.push(FieldError::invalid_rendered(format!("{path}.values"), rendered, "must be ordered"));
    }
}

fn validate_success_policy(spec: &Map<String, Value>, policy: &Value, path: &str, errors: &mut Vec<FieldError>) {
    let rules = policy.get("rules").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    if rules.is_empty() {
        let detail = "at least one rules must be specified when the successPolicy is specified";
        errors.push(FieldError::required(format!("{path}.rules"), detail));
    } else if rules.len() > 20 {
        errors.push(FieldError::too_many(format!("{path}.rules"), rules.len(), 20));
    }
    let completions = spec.get("completions").and_then(Value::as_i64).unwrap_or(0);
    for (i, rule) in rules.iter().enumerate() {
        let rule_path = format!("{path}.rules[{i}]");
        let indexes = rule.get("succeededIndexes").and_then(Value::as_str);
        let count = rule.get("succeededCount").and_then(Value::as_i64);
        if indexes.is_none() && count.is_none() {
            let detail = "at least one of succeededCount or succeededIndexes must be specified";
            errors.push(FieldError::required(rule_path.clone(), detail));
        }
        let mut total = 0;
        if let Some(indexes) = indexes {
            let field = format!("{rule_path}.succeededIndexes");
            if indexes.len() > 65536 {
                errors.push(FieldError::too_long(field.clone(), 65536));
            }
            match count_indexes(indexes, completions) {
                Ok(count) => total = count,
                Err(error) => errors.push(FieldError::invalid(
                    field,
                    &Value::from(indexes),
                    &format!("error parsing succeededIndexes: {error}"),
                )),
            }
        }
        if let Some(count) = count {
            let field = format!("{rule_path}.succeededCount");
            if count < 0 {
                errors.push(FieldError::invalid(field, &Value::from(count), NON_NEGATIVE));
            } else if count > completions {
                let detail =
                    format!("must be less than or equal to {completions} (the number of specified completions)");
                errors.push(FieldError::invalid(field, &Value::from(count), &detail));
            } else if indexes.is_some() && count > total {
                let detail = format!(
                    "must be less than or equal to {total} (the number of indexes in the specified succeededIndexes field)"
                );
                errors.push(FieldError::invalid(field, &Value::from(count), &detail));
            }
        }
    }
}

/// How many indexes an interval string such as "0-2,4" names, or why it is not one: ascending, below `completions`.
fn count_indexes(intervals: &str, completions: i64) -> Result<i64, String> {
    let mut total = 0;
    let mut last: Option<i64> = None;
    for interval in intervals.split(',').filter(|_| !intervals.is_empty()) {
        let limits: Vec<&str> = interval.split('-').collect();
        if limits.len() > 2 {
            return Err(format!(
                "the fragment {} violates the requirement that an index interval can have at most two parts separated by '-'",
                go_quote(interval)
            ));
        }
        let mut parsed = Vec::new();
        for limit in &limits {
            let value: i64 = limit
                .parse()
                .map_err(|_| format!("cannot convert string to integer for index: {}", go_quote(limit)))?;
            if value >= completions {
                return Err(format!("too large index: {}", go_quote(limit)));
            }
            parsed.push(value);
        }
        let (first, end) = (parsed[0], *parsed.last().unwrap_or(&parsed[0]));
        if parsed.len() == 2 && first >= end {
            return Err(format!("non-increasing order, previous: {first}, current: {end}"));
        }
        if let Some(previous) = last.filter(|previous| *previous >= first) {
            return Err(format!("non-increasing order, previous: {previous}, current: {first}"));
        }
        total += end - first + 1;
        last = Some(end);
    }
    Ok(total)
}

fn validate_job(root: &Map<String, Value>, old: Option<&Map<String, Value>>, errors: &mut Vec<FieldError>) {
    let spec = object_at(root, "spec");
    validate_job_spec_common(spec, "spec", errors);
    let selector = spec.get("selector").filter(|s| !s.is_null());
    match selector {
        None => errors.push(FieldError::required("spec.selector", "")),
        Some(selector) => validate_label_selector(selector, "spec.selector", errors),
    }
    let labels = object_at(object_at(object_at(spec, "template"), "metadata"), "labels");
    if !selector.is_some_and(|s| selector_matches(s, labels)) {
        let rendered = go_string_map(Some(labels));
        errors.push(FieldError::invalid_rendered("spec.template.metadata.labels", rendered, SELECTOR_MISMATCH));
    }
    let Some(old) = old else { return };
    let old_spec = object_at(old, "spec");
    if normalized_at(spec, "selector") != normalized_at(old_spec, "selector") {
        errors.push(FieldError::invalid_rendered("spec.selector", go_label_selector(selector), IMMUTABLE));
    }
    for field in ["completions", "completionMode"] {
        if normalized_at(spec, field) != normalized_at(old_spec, field) {
            let value = spec.get(field).cloned().unwrap_or(Value::Null);
            errors.push(FieldError::invalid(format!("spec.{field}"), &value, IMMUTABLE));
        }
    }
    if normalized_at(spec, "template") != normalized_at(old_spec, "template") {
        let rendered =
            format!("core.PodTemplateSpec{}", spec.get("template").map(Value::to_string).unwrap_or_default());
        errors.push(FieldError::invalid_rendered("spec.template", rendered, IMMUTABLE));
    }
}

/// Upstream's PriorityClass rules: `system-` names are the built-in classes' only, and only with their values;
/// other classes stay at or below 1,000,000,000; value and preemptionPolicy never change.
fn validate_priority_class(root: &Map<String, Value>, old: Option<&Map<String, Value>>, errors: &mut Vec<FieldError>) {
    const HIGHEST_USER_DEFINABLE: i64 = 1_000_000_000;
    let name = root.get("metadata").and_then(|meta| meta.get("name")).and_then(Value::as_str).unwrap_or_default();
    let value = root.get("value").and_then(Value::as_i64).unwrap_or(0);
    let global_default = root.get("globalDefault").and_then(Value::as_bool).unwrap_or(false);
    if name.starts_with("system-") {
        let known = crate::apiserver::priority::SYSTEM_CLASSES.iter().find(|(known, ..)| *known == name);
        let why = match known {
            None => Some(format!("{name} is not a known system priority class")),
            Some((_, known_value, _)) if *known_value != value => {
                Some(format!("value of {name} PriorityClass must be {known_value}"))
            }
            Some(_) if global_default => Some(format!("globalDefault of {name} PriorityClass must be false")),
            Some(_) => None,
        };
        if let Some(why) = why {
            errors.push(FieldError::forbidden(
                "metadata.name",
                &format!("priority class names with 'system-' prefix are reserved for system use only. error: {why}"),
            ));
        }
    } else if value > HIGHEST_USER_DEFINABLE {
        errors.push(FieldError::forbidden(
            "value",
            &format!("maximum allowed value of a user defined priority is {HIGHEST_USER_DEFINABLE}"),
        ));
    }
    match root.get("preemptionPolicy") {
        None | Some(Value::Null) => {}
        Some(Value::String(policy)) if policy.is_empty() => errors.push(FieldError::required("preemptionPolicy", "")),
        Some(policy) if policy == "PreemptLowerPriority" || policy == "Never" => {}
        Some(policy) => {
            errors.push(FieldError::not_supported("preemptionPolicy", policy, &["PreemptLowerPriority", "Never"]))
        }
    }
    if let Some(old) = old {
        if old.get("value").and_then(Value::as_i64).unwrap_or(0) != value {
            errors.push(FieldError::forbidden("value", "may not be changed in an update."));
        }
        if old.get("preemptionPolicy") != root.get("preemptionPolicy") {
            let policy = root.get("preemptionPolicy").cloned().unwrap_or(Value::Null);
            errors.push(FieldError::invalid("preemptionPolicy", &policy, IMMUTABLE));
        }
    }
}

fn validate_cron_job(root: &Map<String, Value>, errors: &mut Vec<FieldError>) {
    let spec = object_at(root, "spec");
    if str_at(spec, "schedule").is_empty() {
        errors.push(FieldError::required("spec.schedule", ""));
    }
    let policy = spec.get("concurrencyPolicy").cloned().unwrap_or(Value::from(""));
    match policy.as_str().unwrap_or("") {
        "Allow" | "Forbid" | "Replace" => {}
        "" => errors.push(FieldError::required("spec.concurrencyPolicy", "")),
        _ => errors.push(FieldError::not_supported("spec.concurrencyPolicy", &policy, &["Allow", "Forbid", "Replace"])),
    }
    for field in ["startingDeadlineSeconds", "successfulJobsHistoryLimit", "failedJobsHistoryLimit"] {
        validate_non_negative(spec, field, "spec", errors);
    }
    let job_template = object_at(spec, "jobTemplate");
    validate_labels(object_at(job_template, "metadata").get("labels"), "spec.jobTemplate.metadata.labels", errors);
    validate_job_spec_common(object_at(job_template, "spec"), "spec.jobTemplate.spec", errors);
}

fn validate_service(root: &Map<String, Value>, old: Option<&Map<String, Value>>, errors: &mut Vec<FieldError>) {
    let spec = object_at(root, "spec");
    let service_type = spec.get("type").cloned().unwrap_or(Value::from(""));
    let type_name = service_type.as_str().unwrap_or("");
    match type_name {
        "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName" => {}
        "" => errors.push(FieldError::required("spec.type", "")),
        _ => errors.push(FieldError::not_supported(
            "spec.type",
            &service_type,
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        )),
    }
    let headless = str_at(spec, "clusterIP") == "None";
    let ports = array_at(spec, "ports");
    if ports.is_empty() && !headless && type_name != "ExternalName" {
        errors.push(FieldError::required("spec.ports", ""));
    }
    if type_name == "ExternalName" {
        let external_name = str_at(spec, "externalName");
        if external_name.is_empty() {
            errors.push(FieldError::required("spec.externalName", ""));
        } else {
            for message in dns1123_subdomain(external_name.trim_end_matches('.')) {
                errors.push(FieldError::invalid("spec.externalName", &Value::from(external_name), &message));
            }
        }
    }
    let mut port_names = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let path = format!("spec.ports[{i}]");
        let name = port.get("name").and_then(Value::as_str).unwrap_or("");
        if ports.len() > 1 && name.is_empty() {
            errors.push(FieldError::required(format!("{path}.name"), ""));
        } else if !name.is_empty() {
            for message in dns1123_label(name) {
                errors.push(FieldError::invalid(format!("{path}.name"), &Value::from(name), &message));
            }
            if !port_names.insert(name.to_string()) {
                errors.push(FieldError::duplicate(format!("{path}.name"), &Value::from(name)));
            }
        }
        let number = port.get("port").and_then(Value::as_i64).unwrap_or(0);
        for message in port_number(number) {
            errors.push(FieldError::invalid(format!("{path}.port"), &Value::from(number), &message));
        }
        validate_protocol(port.get("protocol"), &format!("{path}.protocol"), errors);
        match port.get("targetPort") {
            Some(Value::Number(n)) => {
                let target = n.as_i64().unwrap_or(0);
                for message in port_number(target) {
                    errors.push(FieldError::invalid(format!("{path}.targetPort"), &Value::from(target), &message));
                }
            }
            Some(Value::String(target)) => {
                for message in port_name(target) {
                    errors.push(FieldError::invalid(
                        format!("{path}.targetPort"),
                        &Value::from(target.as_str()),
                        &message,
                    ));
                }
            }
            _ => {}
        }
        let node_port = port.get("nodePort").and_then(Value::as_i64).unwrap_or(0);
        if node_port != 0 {
            let field = format!("{path}.nodePort");
            if type_name == "ClusterIP" {
                errors.push(FieldError::forbidden(field, "may not be used when `type` is 'ClusterIP'"));
            } else if !NODE_PORT_RANGE.contains(&node_port) {
                let detail = format!(
                    "provided port is not in the valid range. The range of valid ports is {}-{}",
                    NODE_PORT_RANGE.start(),
                    NODE_PORT_RANGE.end()
                );
                errors.push(FieldError::invalid(field, &Value::from(node_port), &detail));
            }
        }
    }
    let affinity = spec.get("sessionAffinity").cloned().unwrap_or(Value::from(""));
    match affinity.as_str().unwrap_or("") {
        "None" | "ClientIP" => {}
        "" => errors.push(FieldError::required("spec.sessionAffinity", "")),
        _ => errors.push(FieldError::not_supported("spec.sessionAffinity", &affinity, &["ClientIP", "None"])),
    }
    let Some(old) = old else { return };
    let old_spec = object_at(old, "spec");
    let old_type = str_at(old_spec, "type");
    if type_name == "ExternalName" || old_type == "ExternalName" {
        return;
    }
    if headless && str_at(old_spec, "clusterIP") == "None" {
        return;
    }
    let ips = |spec: &Map<String, Value>| -> Vec<String> {
        let list: Vec<String> =
            array_at(spec, "clusterIPs").iter().filter_map(Value::as_str).map(str::to_string).collect();
        if list.is_empty() && !str_at(spec, "clusterIP").is_empty() {
            vec![str_at(spec, "clusterIP").to_string()]
        } else {
            list
        }
    };
    let (new_ips, old_ips) = (ips(spec), ips(old_spec));
    let rendered = go_string_slice(&new_ips);
    if new_ips.len() == old_ips.len() {
        for (i, (new_ip, old_ip)) in new_ips.iter().zip(&old_ips).enumerate() {
            if new_ip != old_ip {
                errors.push(FieldError::invalid_rendered(
                    format!("spec.clusterIPs[{i}]"),
                    rendered.clone(),
                    "may not change once set",
                ));
            }
        }
    } else if new_ips.is_empty() {
        errors.push(FieldError::invalid_rendered("spec.clusterIPs[0]", rendered, "primary clusterIP can not be unset"));
    } else if !old_ips.is_empty() && new_ips[0] != old_ips[0] {
        errors.push(FieldError::invalid_rendered("spec.clusterIPs[0]", rendered, "may not change once set"));
    }
}

fn validate_config_map(root: &Map<String, Value>, old: Option<&Map<String, Value>>, errors: &mut Vec<FieldError>) {
    let data = object_at(root, "data");
    let binary = object_at(root, "binaryData");
    let mut total = 0;
    for (key, value) in sorted(data) {
        for message in config_key(key) {
            errors.push(FieldError::invalid(format!("data[{key}]"), &Value::from(key.as_str()), &message));
        }
        total += value.as_str().map_or(0, str::len);
    }
    for (key, value) in sorted(binary) {
        for message in config_key(key) {
            errors.push(FieldError::invalid(format!("binaryData[{key}]"), &Value::from(key.as_str()), &message));
        }
        if data.contains_key(key) {
            let detail = "duplicate of key present in data";
            errors.push(FieldError::invalid(format!("binaryData[{key}]"), &Value::from(key.as_str()), detail));
        }
        total += decoded_len(value);
    }
    if total > MAX_DATA_SIZE {
        // Upstream reports the size on the root, whose path prints as `[]`.
        errors.push(FieldError::too_long("[]", MAX_DATA_SIZE));
    }
    if let Some(old) = old {
        validate_immutable_data(root, old, &["data", "binaryData"], errors);
    }
}

fn validate_secret(root: &Map<String, Value>, old: Option<&Map<String, Value>>, errors: &mut Vec<FieldError>) {
    let data = object_at(root, "data");
    let mut total = 0;
    for (key, value) in sorted(data) {
        for message in config_key(key) {
            errors.push(FieldError::invalid(format!("data[{key}]"), &Value::from(key.as_str()), &message));
        }
        total += decoded_len(value);
    }
    if total > MAX_DATA_SIZE {
        errors.push(FieldError::too_long("data", MAX_DATA_SIZE));
    }
    let required_keys: &[&str] = match str_at(root, "type") {
        "kubernetes.io/dockercfg" => &[".dockercfg"],
        "kubernetes.io/dockerconfigjson" => &[".dockerconfigjson"],
        "kubernetes.io/ssh-auth" => &["ssh-privatekey"],
        "kubernetes.io/tls" => &["tls.key", "tls.crt"],
        _ => &[],
    };
    for key in required_keys {
        if !data.contains_key(*key) {
            errors.push(FieldError::required(format!("data[{key}]"), ""));
        }
    }
    match str_at(root, "type") {
        "kubernetes.io/basic-auth" if !data.contains_key("username") && !data.contains_key("password") => {
            errors.push(FieldError::required("data[username]", ""));
            errors.push(FieldError::required("data[password]", ""));
        }
        "kubernetes.io/service-account-token"
            if str_at(object_at(object_at(root, "metadata"), "annotations"), "kubernetes.io/service-account.name")
                .is_empty() =>
        {
            errors.push(FieldError::required("metadata.annotations[kubernetes.io/service-account.name]", ""));
        }
        _ => {}
    }
    let Some(old) = old else { return };
    if str_at(root, "type") != str_at(old, "type") {
        errors.push(FieldError::invalid("type", &Value::from(str_at(root, "type")), IMMUTABLE));
    }
    validate_immutable_data(root, old, &["data"], errors);
}

/// `immutable: true` freezes the data and itself.
fn validate_immutable_data(
    new: &Map<String, Value>,
    old: &Map<String, Value>,
    fields: &[&str],
    errors: &mut Vec<FieldError>,
) {
    if old.get("immutable") != Some(&Value::Bool(true)) {
        return;
    }
    let detail = "field is immutable when `immutable` is set";
    if new.get("immutable") != Some(&Value::Bool(true)) {
        errors.push(FieldError::forbidden("immutable", detail));
    }
    for field in fields {
        if normalized_at(new, field) != normalized_at(old, field) {
            errors.push(FieldError::forbidden(*field, detail));
        }
    }
}

fn validate_role_binding(
    def: &ResourceDef,
    root: &Map<String, Value>,
    old: Option<&Map<String, Value>>,
    errors: &mut Vec<FieldError>,
) {
    let namespaced = def.kind == "RoleBinding";
    let role_ref = object_at(root, "roleRef");
    let api_group = role_ref.get("apiGroup").cloned().unwrap_or(Value::from(""));
    if api_group.as_str() != Some("rbac.authorization.k8s.io") {
        errors.push(FieldError::not_supported("roleRef.apiGroup", &api_group, &["rbac.authorization.k8s.io"]));
    }
    let kind = role_ref.get("kind").cloned().unwrap_or(Value::from(""));
    let allowed: &[&str] = if namespaced { &["Role", "ClusterRole"] } else { &["ClusterRole"] };
    if !allowed.contains(&kind.as_str().unwrap_or("")) {
        errors.push(FieldError::not_supported("roleRef.kind", &kind, allowed));
    }
    let name = str_at(role_ref, "name");
    if name.is_empty() {
        errors.push(FieldError::required("roleRef.name", ""));
    } else {
        for message in path_segment_name(name, false) {
            errors.push(FieldError::invalid("roleRef.name", &Value::from(name), &message));
        }
    }
    for (i, subject) in array_at(root, "subjects").iter().enumerate() {
        let path = format!("subjects[{i}]");
        let name = subject.get("name").and_then(Value::as_str).unwrap_or("");
        if name.is_empty() {
            errors.push(FieldError::required(format!("{path}.name"), ""));
        }
        let group = subject.get("apiGroup").cloned().unwrap_or(Value::from(""));
        let kind = subject.get("kind").cloned().unwrap_or(Value::from(""));
        match kind.as_str().unwrap_or("") {
            "ServiceAccount" => {
                if !name.is_empty() {
                    for message in dns1123_subdomain(name) {
                        errors.push(FieldError::invalid(format!("{path}.name"), &Value::from(name), &message));
                    }
                }
                if group.as_str().is_some_and(|g| !g.is_empty()) {
                    errors.push(FieldError::not_supported(format!("{path}.apiGroup"), &group, &[""]));
                }
                if !namespaced && subject.get("namespace").and_then(Value::as_str).unwrap_or("").is_empty() {
                    errors.push(FieldError::required(format!("{path}.namespace"), ""));
                }
            }
            "User" | "Group" => {
                if group.as_str() != Some("rbac.authorization.k8s.io") {
                    errors.push(FieldError::not_supported(
                        format!("{path}.apiGroup"),
                        &group,
                        &["rbac.authorization.k8s.io"],
                    ));
                }
            }
            _ => errors.push(FieldError::not_supported(
                format!("{path}.kind"),
                &kind,
                &["ServiceAccount", "User", "Group"],
            )),
        }
    }
    if let Some(old) = old {
        let old_ref = object_at(old, "roleRef");
        let same = ["apiGroup", "kind", "name"].iter().all(|k| str_at(role_ref, k) == str_at(old_ref, k));
        if !same {
            let rendered = format!(
                "rbac.RoleRef{{APIGroup:{}, Kind:{}, Name:{}}}",
                go_quote(str_at(role_ref, "apiGroup")),
                go_quote(str_at(role_ref, "kind")),
                go_quote(name)
            );
            errors.push(FieldError::invalid_rendered("roleRef", rendered, "cannot change roleRef"));
        }
    }
}

fn validate_role_rules(def: &ResourceDef, root: &Map<String, Value>, errors: &mut Vec<FieldError>) {
    let namespaced = def.kind == "Role";
    for (i, rule) in array_at(root, "rules").iter().enumerate() {
        let path = format!("rules[{i}]");
        let list = |key: &str| rule.get(key).and_then(Value::as_array).cloned().unwrap_or_default();
        if list("verbs").is_empty() {
            errors.push(FieldError::required(format!("{path}.verbs"), "verbs must contain at least one value"));
        }
        let urls = list("nonResourceURLs");
        if !urls.is_empty() {
            let rendered =
                go_string_slice(&urls.iter().filter_map(Value::as_str).map(str::to_string).collect::<Vec<_>>());
            if namespaced {
                let detail = "namespaced rules cannot apply to non-resource URLs";
                errors.push(FieldError::invalid_rendered(format!("{path}.nonResourceURLs"), rendered, detail));
            } else if !list("apiGroups").is_empty() || !list("resources").is_empty() {
                let detail = "rules cannot apply to both regular resources and non-resource URLs";
                errors.push(FieldError::invalid_rendered(format!("{path}.nonResourceURLs"), rendered, detail));
            }
            continue;
        }
        if list("apiGroups").is_empty() {
            errors.push(FieldError::required(
                format!("{path}.apiGroups"),
                "resource rules must supply at least one api group",
            ));
        }
        if list("resources").is_empty() {
            errors.push(FieldError::required(
                format!("{path}.resources"),
                "resource rules must supply at least one resource",
            ));
        }
    }
}

fn validate_non_negative(spec: &Map<String, Value>, field: &str, path: &str, errors: &mut Vec<FieldError>) {
    if let Some(value) = spec.get(field).and_then(Value::as_i64) {
        if value < 0 {
            errors.push(FieldError::invalid(format!("{path}.{field}"), &Value::from(value), NON_NEGATIVE));
        }
    }
}

fn validate_label_selector(selector: &Value, path: &str, errors: &mut Vec<FieldError>) {
    validate_labels(selector.get("matchLabels"), &format!("{path}.matchLabels"), errors);
    let expressions = selector.get("matchExpressions").and_then(Value::as_array).cloned().unwrap_or_default();
    for (i, expression) in expressions.iter().enumerate() {
        let expression_path = format!("{path}.matchExpressions[{i}]");
        let values = expression.get("values").and_then(Value::as_array).map_or(0, Vec::len);
        let operator = expression.get("operator").cloned().unwrap_or(Value::from(""));
        match operator.as_str().unwrap_or("") {
            "In" | "NotIn" if values == 0 => {
                let detail = "must be specified when `operator` is 'In' or 'NotIn'";
                errors.push(FieldError::required(format!("{expression_path}.values"), detail));
            }
            "Exists" | "DoesNotExist" if values > 0 => {
                let detail = "may not be specified when `operator` is 'Exists' or 'DoesNotExist'";
                errors.push(FieldError::forbidden(format!("{expression_path}.values"), detail));
            }
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            _ => {
                let field = format!("{expression_path}.operator");
                errors.push(FieldError::invalid(field, &operator, "not a valid selector operator"));
            }
        }
        let key = expression.get("key").and_then(Value::as_str).unwrap_or("");
        for message in qualified_name(key) {
            errors.push(FieldError::invalid(format!("{expression_path}.key"), &Value::from(key), &message));
        }
    }
}

fn selector_is_empty(selector: &Value) -> bool {
    let count = |key: &str| {
        selector.get(key).map_or(0, |v| v.as_object().map(Map::len).or(v.as_array().map(Vec::len)).unwrap_or(0))
    };
    count("matchLabels") + count("matchExpressions") == 0
}

/// Whether a LabelSelector selects a label set.
pub fn selector_matches(selector: &Value, labels: &Map<String, Value>) -> bool {
    let match_labels = selector.get("matchLabels").and_then(Value::as_object);
    if !match_labels.is_none_or(|wanted| wanted.iter().all(|(k, v)| labels.get(k) == Some(v))) {
        return false;
    }
    let expressions = selector.get("matchExpressions").and_then(Value::as_array).cloned().unwrap_or_default();
    expressions.iter().all(|expression| {
        let key = expression.get("key").and_then(Value::as_str).unwrap_or("");
        let values: Vec<&Value> =
            expression.get("values").and_then(Value::as_array).map(|v| v.iter().collect()).unwrap_or_default();
        let actual = labels.get(key);
        match expression.get("operator").and_then(Value::as_str).unwrap_or("") {
            "In" => actual.is_some_and(|a| values.contains(&a)),
            "NotIn" => actual.is_none_or(|a| !values.contains(&a)),
            "Exists" => actual.is_some(),
            "DoesNotExist" => actual.is_none(),
            _ => false,
        }
    })
}

/// A value as Go's `%v`/`%q` shows it in a field error: quoted strings, bare numbers and booleans, `null`; other
/// values as compact JSON (upstream prints Go structs there, which have no equivalent here).
fn render_value(value: &Value) -> String {
    match value {
        Value::String(s) => go_quote(s),
        Value::Null => "\"null\"".to_string(),
        other => other.to_string(),
    }
}

/// Go's `strconv.Quote` (what `%q` prints), which upstream's messages use to show values: escapes quotes,
/// backslashes, control characters and invalid UTF-8 the way Go does.
pub(crate) fn go_quote(s: &str) -> String {
    go_quote_bytes(s.as_bytes())
}

pub(crate) fn go_quote_bytes(bytes: &[u8]) -> String {
    let mut quoted = String::from("\"");
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => quoted.push_str("\\\""),
                '\\' => quoted.push_str("\\\\"),
                '\u{7}' => quoted.push_str("\\a"),
                '\u{8}' => quoted.push_str("\\b"),
                '\u{c}' => quoted.push_str("\\f"),
                '\n' => quoted.push_str("\\n"),
                '\r' => quoted.push_str("\\r"),
                '\t' => quoted.push_str("\\t"),
                '\u{b}' => quoted.push_str("\\v"),
                c if (c as u32) < 0x20 || c == '\u{7f}' => quoted.push_str(&format!("\\x{:02x}", c as u32)),
                c if c.is_control() || (c.is_whitespace() && c != ' ') => {
                    if (c as u32) < 0x10000 {
                        quoted.push_str(&format!("\\u{:04x}", c as u32));
                    } else {
                        quoted.push_str(&format!("\\U{:08x}", c as u32));
                    }
                }
                c => quoted.push(c),
            }
        }
        for byte in chunk.invalid() {
            quoted.push_str(&format!("\\x{byte:02x}"));
        }
    }
    quoted.push('"');
    quoted
}

/// Go's `%#v` of a `map[string]string` (sorted keys, as Go prints maps).
fn go_string_map(map: Option<&Map<String, Value>>) -> String {
    let Some(map) = map.filter(|m| !m.is_empty()) else { return "map[string]string(nil)".to_string() };
    let entries: Vec<String> = sorted(map)
        .into_iter()
        .map(|(k, v)| format!("{}:{}", go_quote(k), go_quote(v.as_str().unwrap_or_default())))
        .collect();
    format!("map[string]string{{{}}}", entries.join(", "))
}

fn go_string_slice(items: &[String]) -> String {
    if items.is_empty() {
        return "[]string(nil)".to_string();
    }
    let quoted: Vec<String> = items.iter().map(|s| go_quote(s)).collect();
    format!("[]string{{{}}}", quoted.join(", "))
}

/// Go's `%#v` of a `metav1.LabelSelector`, the value upstream shows for selector errors; `"null"` when unset.
fn go_label_selector(selector: Option<&Value>) -> String {
    let Some(selector) = selector.filter(|s| !s.is_null()) else { return "\"null\"".to_string() };
    let labels = go_string_map(selector.get("matchLabels").and_then(Value::as_object));
    let expressions = selector.get("matchExpressions").and_then(Value::as_array).filter(|e| !e.is_empty());
    let expressions = match expressions {
        None => "[]v1.LabelSelectorRequirement(nil)".to_string(),
        Some(list) => {
            let items: Vec<String> = list
                .iter()
                .map(|e| {
                    let text = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                    let values: Vec<String> = e
                        .get("values")
                        .and_then(Value::as_array)
                        .map(|v| v.iter().filter_map(Value::as_str).map(str::to_string).collect())
                        .unwrap_or_default();
                    format!(
                        "v1.LabelSelectorRequirement{{Key:{}, Operator:{}, Values:{}}}",
                        go_quote(&text("key")),
                        go_quote(&text("operator")),
                        go_string_slice(&values)
                    )
                })
                .collect();
            format!("[]v1.LabelSelectorRequirement{{{}}}", items.join(", "))
        }
    };
    format!("v1.LabelSelector{{MatchLabels:{labels}, MatchExpressions:{expressions}}}")
}

/// Bytes of a base64 data value once decoded (what upstream's size limits count).
fn decoded_len(value: &Value) -> usize {
    let text = value.as_str().unwrap_or_default();
    let padding = text.bytes().rev().take_while(|b| *b == b'=').count();
    (text.len() / 4 * 3 + [0, 0, 1, 2][text.len() % 4]).saturating_sub(padding)
}

fn sorted(map: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let ordered: BTreeMap<&String, &Value> = map.iter().collect();
    ordered.into_iter().collect()
}

fn object_at<'a>(map: &'a Map<String, Value>, key: &str) -> &'a Map<String, Value> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    map.get(key).and_then(Value::as_object).unwrap_or_else(|| EMPTY.get_or_init(Map::new))
}

fn array_at<'a>(map: &'a Map<String, Value>, key: &str) -> &'a [Value] {
    map.get(key).and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

fn str_at<'a>(map: &'a Map<String, Value>, key: &str) -> &'a str {
    map.get(key).and_then(Value::as_str).unwrap_or("")
}

fn normalized_at(map: &Map<String, Value>, key: &str) -> Value {
    map.get(key).map_or(Value::Null, normalized)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::apiserver::defaults::{apply_defaults, prepare_for_create};
    use crate::apiserver::registry::built_in_resources;

    fn def(group: &str, kind: &str) -> ResourceDef {
        built_in_resources().into_iter().find(|d| d.group == group && d.kind == kind).expect("a built-in kind")
    }

    /// Defaults (as on create) then validates, like the API server's create path.
    fn create_errors(group: &str, kind: &str, mut object: Value) -> Vec<FieldError> {
        let def = def(group, kind);
        object["metadata"]["uid"] = json!("6b1c3d9e-0000-4000-8000-000000000001");
        prepare_for_create(&def, &mut object);
        validate(&def, &object, None)
    }

    /// Creates `old` as the API server stores it, edits a copy as a client would after reading it, and validates the
    /// defaulted copy as an update.
    fn update_errors(group: &str, kind: &str, mut old: Value, edit: impl FnOnce(&mut Value)) -> Vec<FieldError> {
        let def = def(group, kind);
        old["metadata"]["uid"] = json!("6b1c3d9e-0000-4000-8000-000000000001");
        prepare_for_create(&def, &mut old);
        let mut new = old.clone();
        edit(&mut new);
        apply_defaults(&def, &mut new);
        validate(&def, &new, Some(&old))
    }

    /// The (field, reason, message) of each error, for compact assertions.
    fn summary(errors: &[FieldError]) -> Vec<(String, &'static str, String)> {
        errors.iter().map(|e| (e.field.clone(), e.reason.as_status_reason(), e.message.clone())).collect()
    }

    fn assert_single(errors: &[FieldError], field: &str, reason: FieldErrorReason, message: &str) {
        assert_eq!(errors.len(), 1, "{:#?}", summary(errors));
        assert_eq!(errors[0].field, field);
        assert_eq!(errors[0].reason, reason);
        assert_eq!(errors[0].message, message);
    }

    fn pod(spec: Value) -> Value {
        json!({"metadata": {"name": "p", "namespace": "default"}, "spec": spec})
    }

    fn deployment(selector: Value, template_labels: Value) -> Value {
        json!({"metadata": {"name": "web"}, "spec": {"selector": selector, "template": {
            "metadata": {"labels": template_labels}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}})
    }

    #[test]
    fn a_minimal_valid_object_of_each_kind_passes() {
        let cases = [
            ("", "Pod", pod(json!({"containers": [{"name": "c", "image": "nginx"}]}))),
            ("apps", "Deployment", deployment(json!({"matchLabels": {"app": "web"}}), json!({"app": "web"}))),
            (
                "batch",
                "Job",
                json!({"metadata": {"name": "j"}, "spec": {"template": {"spec": {
                "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}),
            ),
            (
                "",
                "Service",
                json!({"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}], "selector": {"a": "b"}}}),
            ),
            ("", "Namespace", json!({"metadata": {"name": "team-a"}})),
            ("", "ConfigMap", json!({"metadata": {"name": "cfg"}, "data": {"app.properties": "x=1"}})),
            ("", "Secret", json!({"metadata": {"name": "s"}, "stringData": {"password": "p"}})),
            ("", "ServiceAccount", json!({"metadata": {"name": "robot"}})),
            (
                "rbac.authorization.k8s.io",
                "ClusterRole",
                json!({"metadata": {"name": "system:reader"},
                "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}),
            ),
            (
                "rbac.authorization.k8s.io",
                "RoleBinding",
                json!({"metadata": {"name": "b"},
                "roleRef": {"kind": "ClusterRole", "name": "view"}, "subjects": [{"kind": "User", "name": "jane"}]}),
            ),
        ];
        for (group, kind, object) in cases {
            let errors = create_errors(group, kind, object);
            assert!(errors.is_empty(), "{kind}: {:#?}", summary(&errors));
        }
    }

    #[test]
    fn names_follow_the_rule_of_their_kind() {
        let errors = create_errors("", "ConfigMap", json!({"metadata": {"name": "Foo"}}));
        assert_single(
            &errors,
            "metadata.name",
            FieldErrorReason::Invalid,
            &format!("Invalid value: \"Foo\": {DNS1123_SUBDOMAIN_MESSAGE}"),
        );
        let errors = create_errors("", "Namespace", json!({"metadata": {"name": "a.b"}}));
        assert_single(
            &errors,
            "metadata.name",
            FieldErrorReason::Invalid,
            "Invalid value: \"a.b\": must not contain dots",
        );
        let errors =
            create_errors("", "Service", json!({"metadata": {"name": "1web"}, "spec": {"ports": [{"port": 80}]}}));
        assert_single(
            &errors,
            "metadata.name",
            FieldErrorReason::Invalid,
            &format!("Invalid value: \"1web\": {DNS1035_LABEL_MESSAGE}"),
        );
        let long = "a".repeat(64);
        let errors = create_errors("", "Namespace", json!({"metadata": {"name": long}}));
        assert_eq!(errors[0].message, format!("Invalid value: \"{long}\": must be no more than 63 characters"));
        let errors = create_errors("rbac.authorization.k8s.io", "ClusterRole", json!({"metadata": {"name": "a/b"}}));
        assert_single(
            &errors,
            "metadata.name",
            FieldErrorReason::Invalid,
            "Invalid value: \"a/b\": may not contain '/'",
        );
        let errors = create_errors("", "ConfigMap", json!({"metadata": {}}));
        assert_single(
            &errors,
            "metadata.name",
            FieldErrorReason::Required,
            "Required value: name or generateName is required",
        );
        let errors = create_errors("", "ConfigMap", json!({"metadata": {"name": "x-abcde", "generateName": "x-"}}));
        assert!(errors.is_empty(), "{:?}", summary(&errors));
        let errors = create_errors("", "ConfigMap", json!({"metadata": {"name": "ok", "generateName": "Bad_-"}}));
        assert_eq!(errors[0].field, "metadata.generateName");
        let errors = create_errors(
            "batch",
            "CronJob",
            json!({"metadata": {"name": "c".repeat(53)}, "spec": {
            "schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "c", "image": "i"}]}}}}}}),
        );
        assert_single(
            &errors,
            "metadata.name",
            FieldErrorReason::Invalid,
            &format!("Invalid value: \"{}\": must be no more than 52 characters", "c".repeat(53)),
        );
    }

    #[test]
    fn labels_and_annotations() {
        let errors = create_errors("", "ConfigMap", json!({"metadata": {"name": "c", "labels": {"app": "bad value"}}}));
        assert_single(
            &errors,
            "metadata.labels",
            FieldErrorReason::Invalid,
            &format!("Invalid value: \"bad value\": {LABEL_VALUE_MESSAGE}"),
        );
        let errors =
            create_errors("", "ConfigMap", json!({"metadata": {"name": "c", "labels": {"Example.com/app": "x"}}}));
        assert_eq!(
            errors[0].message,
            format!("Invalid value: \"Example.com/app\": prefix part {DNS1123_SUBDOMAIN_MESSAGE}")
        );
        let errors = create_errors("", "ConfigMap", json!({"metadata": {"name": "c", "labels": {"a/b/c": "x"}}}));
        assert!(errors[0].message.contains("a qualified name must consist of"), "{}", errors[0].message);
        let errors =
            create_errors("", "ConfigMap", json!({"metadata": {"name": "c", "labels": {"k": "v".repeat(64)}}}));
        assert!(errors[0].message.ends_with("must be no more than 63 characters"));
        let big = "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT);
        let errors = create_errors("", "ConfigMap", json!({"metadata": {"name": "c", "annotations": {"note": big}}}));
        assert_single(
            &errors,
            "metadata.annotations",
            FieldErrorReason::TooLong,
            "Too long: may not be more than 262144 bytes",
        );
    }

    #[test]
    fn pod_spec_rules() {
        let errors = create_errors("", "Pod", pod(json!({"containers": []})));
        assert_single(&errors, "spec.containers", FieldErrorReason::Required, "Required value");
        let errors = create_errors("", "Pod", pod(json!({"containers": [{"name": "c"}]})));
        assert_single(&errors, "spec.containers[0].image", FieldErrorReason::Required, "Required value");
        let errors = create_errors(
            "",
            "Pod",
            pod(json!({
            "containers": [{"name": "app", "image": "i"}, {"name": "App", "image": "i"}],
            "initContainers": [{"name": "app", "image": "i"}]})),
        );
        let fields: Vec<_> = summary(&errors).into_iter().map(|(f, r, _)| (f, r)).collect();
        assert_eq!(
            fields,
            vec![
                ("spec.containers[1].name".to_string(), "FieldValueInvalid"),
                ("spec.initContainers[0].name".to_string(), "FieldValueDuplicate"),
            ]
        );
        assert_eq!(errors[1].message, "Duplicate value: \"app\"");
        let errors = create_errors(
            "",
            "Pod",
            pod(json!({"containers": [{"name": "c", "image": "i", "ports": [
            {"containerPort": 70000}, {"containerPort": 80, "protocol": "HTTP", "name": "web"},
            {"containerPort": 81, "name": "web"}, {"containerPort": 82, "name": "a-very-long-port-name"}]}]})),
        );
        assert_eq!(
            summary(&errors),
            vec![
                (
                    "spec.containers[0].ports[0].containerPort".into(),
                    "FieldValueInvalid",
                    "Invalid value: 70000: must be between 1 and 65535, inclusive".into()
                ),
                (
                    "spec.containers[0].ports[1].protocol".into(),
                    "FieldValueNotSupported",
                    "Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"".into()
                ),
                ("spec.containers[0].ports[2].name".into(), "FieldValueDuplicate", "Duplicate value: \"web\"".into()),
                (
                    "spec.containers[0].ports[3].name".into(),
                    "FieldValueInvalid",
                    "Invalid value: \"a-very-long-port-name\": must be no more than 15 characters".into()
                ),
            ]
        );
        let errors = create_errors(
            "",
            "Pod",
            pod(json!({"restartPolicy": "Sometimes", "dnsPolicy": "Google",
            "containers": [{"name": "c", "image": "i", "env": [{"name": "A=B"}, {"name": ""}]}]})),
        );
        assert_eq!(summary(&errors), vec![
            ("spec.containers[0].env[0].name".into(), "FieldValueInvalid",
             "Invalid value: \"A=B\": a valid environment variable name must consist only of printable ASCII characters other than '='".into()),
            ("spec.containers[0].env[1].name".into(), "FieldValueRequired", "Required value".into()),
            ("spec.restartPolicy".into(), "FieldValueNotSupported",
             "Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"".into()),
            ("spec.dnsPolicy".into(), "FieldValueNotSupported",
             "Unsupported value: \"Google\": supported values: \"ClusterFirstWithHostNet\", \"ClusterFirst\", \"Default\", \"None\"".into()),
        ]);
        let errors = create_errors(
            "",
            "Pod",
            pod(json!({"containers": [{"name": "c", "image": "i",
            "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]})),
        );
        assert_single(
            &errors,
            "spec.containers[0].volumeMounts[0].name",
            FieldErrorReason::NotFound,
            "Not found: \"data\"",
        );
    }

    #[test]
    fn pod_updates() {
        let old = pod(json!({"containers": [{"name": "c", "image": "nginx:1"}],
            "tolerations": [{"key": "k", "operator": "Exists"}]}));
        let errors = update_errors("", "Pod", old.clone(), |new| {
            new["spec"]["containers"][0]["image"] = json!("nginx:2");
            new["spec"]["activeDeadlineSeconds"] = json!(60);
            new["spec"]["tolerations"].as_array_mut().unwrap().push(json!({"key": "other", "operator": "Exists"}));
            new["metadata"]["labels"] = json!({"changed": "yes"});
        });
        assert!(errors.is_empty(), "{:#?}", summary(&errors));

        let errors = update_errors("", "Pod", old.clone(), |new| {
            new["spec"]["containers"][0]["ports"] = json!([{"containerPort": 80}]);
        });
        assert_eq!(errors.len(), 1);
        assert_eq!((errors[0].field.as_str(), errors[0].reason), ("spec", FieldErrorReason::Forbidden));
        assert!(errors[0].message.starts_with(&format!("Forbidden: {POD_UPDATE_FORBIDDEN}\n")));
        assert!(errors[0].message.contains("spec.containers[0].ports"), "{}", errors[0].message);

        let errors = update_errors("", "Pod", old.clone(), |new| {
            new["spec"]["containers"].as_array_mut().unwrap().push(json!({"name": "d", "image": "i"}));
        });
        assert_single(
            &errors,
            "spec.containers",
            FieldErrorReason::Forbidden,
            "Forbidden: pod updates may not add or remove containers",
        );

        let errors = update_errors("", "Pod", old, |new| new["spec"]["tolerations"] = json!([]));
        assert_eq!(errors[0].field, "spec.tolerations[0]");
        assert_eq!(
            errors[0].message,
            "Forbidden: existing toleration can not be modified except its tolerationSeconds"
        );
    }

    #[test]
    fn workload_selector_rules() {
        let errors =
            create_errors("apps", "Deployment", deployment(json!({"matchLabels": {"app": "a"}}), json!({"app": "b"})));
        assert_single(
            &errors,
            "spec.template.metadata.labels",
            FieldErrorReason::Invalid,
            "Invalid value: map[string]string{\"app\":\"b\"}: `selector` does not match template `labels`",
        );
        let mut missing = deployment(json!(null), json!({"app": "a"}));
        missing["spec"].as_object_mut().unwrap().remove("selector");
        let errors = create_errors("apps", "Deployment", missing);
        assert_single(&errors, "spec.selector", FieldErrorReason::Required, "Required value");
        let errors = create_errors("apps", "ReplicaSet", deployment(json!({}), json!({"app": "a"})));
        assert_single(&errors, "spec.selector", FieldErrorReason::Invalid,
            "Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment");
        let expressions = json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["web", "api"]}]});
        assert!(create_errors("apps", "DaemonSet", deployment(expressions, json!({"tier": "api"}))).is_empty());
        let mut mounts_claim = deployment(json!({"matchLabels": {"a": "b"}}), json!({"a": "b"}));
        mounts_claim["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] =
            json!([{"name": "data", "mountPath": "/data"}]);
        mounts_claim["spec"]["volumeClaimTemplates"] = json!([{"metadata": {"name": "data"}}]);
        assert!(create_errors("apps", "StatefulSet", mounts_claim.clone()).is_empty(), "a claim template is a volume");
        let errors = create_errors("apps", "Deployment", mounts_claim);
        assert_single(
            &errors,
            "spec.template.spec.containers[0].volumeMounts[0].name",
            FieldErrorReason::NotFound,
            "Not found: \"data\"",
        );
        let mut negative = deployment(json!({"matchLabels": {"a": "b"}}), json!({"a": "b"}));
        negative["spec"]["replicas"] = json!(-1);
        negative["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
        let errors = create_errors("apps", "StatefulSet", negative);
        assert_eq!(
            summary(&errors),
            vec![
                (
                    "spec.replicas".into(),
                    "FieldValueInvalid",
                    "Invalid value: -1: must be greater than or equal to 0".into()
                ),
                (
                    "spec.template.spec.restartPolicy".into(),
                    "FieldValueNotSupported",
                    "Unsupported value: \"Never\": supported values: \"Always\"".into()
                ),
            ]
        );
        let old = deployment(json!({"matchLabels": {"app": "a"}}), json!({"app": "a", "v": "1"}));
        let errors = update_errors("apps", "Deployment", old, |new| {
            new["spec"]["selector"] = json!({"matchLabels": {"app": "a", "v": "1"}});
        });
        assert_single(&errors, "spec.selector", FieldErrorReason::Invalid,
            "Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"a\", \"v\":\"1\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable");
        let old = deployment(json!({"matchLabels": {"a": "b"}}), json!({"a": "b"}));
        let errors = update_errors("apps", "StatefulSet", old, |new| {
            new["spec"]["serviceName"] = json!("other");
            new["spec"]["replicas"] = json!(5);
        });
        assert_eq!(errors.len(), 1);
        assert!(errors[0]
            .message
            .starts_with("Forbidden: updates to statefulset spec for fields other than 'replicas'"));
    }

    #[test]
    fn job_rules() {
        let job = |spec: Value| json!({"metadata": {"name": "j"}, "spec": spec});
        let errors = create_errors(
            "batch",
            "Job",
            job(json!({"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}})),
        );
        assert_single(
            &errors,
            "spec.template.spec.restartPolicy",
            FieldErrorReason::Required,
            "Required value: valid values: \"OnFailure\", \"Never\"",
        );
        let errors = create_errors(
            "batch",
            "Job",
            job(json!({"parallelism": -1, "backoffLimit": -2, "template": {"spec": {
            "restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "i"}]}}})),
        );
        let fields: Vec<String> = errors.iter().map(|e| e.field.clone()).collect();
        assert_eq!(fields, vec!["spec.parallelism", "spec.backoffLimit"]);
        let manual =
            job(json!({"manualSelector": true, "selector": {"matchLabels": {"x": "y"}}, "template": {"spec": {
            "restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}}));
        let errors = create_errors("batch", "Job", manual);
        assert_single(
            &errors,
            "spec.template.metadata.labels",
            FieldErrorReason::Invalid,
            "Invalid value: map[string]string(nil): `selector` does not match template `labels`",
        );
        let old = job(
            json!({"completions": 2, "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}}),
        );
        let errors = update_errors("batch", "Job", old, |new| new["spec"]["completions"] = json!(3));
        assert_single(&errors, "spec.completions", FieldErrorReason::Invalid, "Invalid value: 3: field is immutable");
    }

    #[test]
    fn indexed_job_rules() {
        let job = |spec: Value| {
            let mut spec = spec;
            spec["template"] =
                json!({"spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "i"}]}});
            json!({"metadata": {"name": "j"}, "spec": spec})
        };
        let errors = create_errors("batch", "Job", job(json!({"completionMode": "Indexed", "parallelism": 2})));
        assert_single(
            &errors,
            "spec.completions",
            FieldErrorReason::Required,
            "Required value: when completion mode is Indexed",
        );
        let errors = create_errors("batch", "Job", job(json!({"completionMode": "Sometimes"})));
        assert_single(
            &errors,
            "spec.completionMode",
            FieldErrorReason::NotSupported,
            "Unsupported value: \"Sometimes\": supported values: \"NonIndexed\", \"Indexed\"",
        );
        let errors = create_errors("batch", "Job", job(json!({"backoffLimitPerIndex": 1})));
        assert_single(
            &errors,
            "spec.backoffLimitPerIndex",
            FieldErrorReason::Invalid,
            "Invalid value: 1: requires indexed completion mode",
        );
        let errors = create_errors(
            "batch",
            "Job",
            job(json!({"completionMode": "Indexed", "completions": 2, "maxFailedIndexes": 3})),
        );
        assert_eq!(
            summary(&errors),
            vec![
                (
                    "spec.backoffLimitPerIndex".to_string(),
                    "FieldValueRequired",
                    "Required value: when maxFailedIndexes is specified".to_string()
                ),
                (
                    "spec.maxFailedIndexes".to_string(),
                    "FieldValueInvalid",
                    "Invalid value: 3: must be less than or equal to completions".to_string()
                ),
            ]
        );
        let valid = json!({"completionMode": "Indexed", "completions": 3, "backoffLimitPerIndex": 1, "maxFailedIndexes": 1,
            "successPolicy": {"rules": [{"succeededIndexes": "0-1", "succeededCount": 1}]}});
        assert_eq!(summary(&create_errors("batch", "Job", job(valid))), vec![]);
    }

    #[test]
    fn pod_failure_policy_rules() {
        let job = |restart: &str, rules: Value| {
            json!({"metadata": {"name": "j"}, "spec": {"podFailurePolicy": {"rules": rules}, "template": {"spec": {
                "restartPolicy": restart, "containers": [{"name": "main", "image": "i"}]}}}})
        };
        let fail_on_42 = json!([{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]);
        assert_eq!(summary(&create_errors("batch", "Job", job("Never", fail_on_42.clone()))), vec![]);
        let errors = create_errors("batch", "Job", job("OnFailure", fail_on_42));
        assert_single(
            &errors,
            "spec.template.spec.restartPolicy",
            FieldErrorReason::Invalid,
            "Invalid value: \"OnFailure\": only \"Never\" is supported when podFailurePolicy is specified",
        );
        let errors = create_errors(
            "batch",
            "Job",
            job(
                "Never",
                json!([
                    {"action": "FailIndex", "onExitCodes": {"containerName": "other", "operator": "In", "values": [0, 3, 3, 1]}},
                    {"action": "Ignore"},
                    {"action": "Restart", "onPodConditions": [{"type": "DisruptionTarget"}]},
                ]),
            ),
        );
        let fields: Vec<(String, String)> = errors.iter().map(|e| (e.field.clone(), e.message.clone())).collect();
        let expected = [
            (
                "spec.podFailurePolicy.rules[0].action",
                "Invalid value: \"FailIndex\": requires the backoffLimitPerIndex to be set",
            ),
            (
                "spec.podFailurePolicy.rules[0].onExitCodes.containerName",
                "Invalid value: \"other\": must be one of the container or initContainer names in the pod template",
            ),
            (
                "spec.podFailurePolicy.rules[0].onExitCodes.values[0]",
                "Invalid value: 0: must not be 0 for the In operator",
            ),
            ("spec.podFailurePolicy.rules[0].onExitCodes.values[2]", "Duplicate value: 3"),
            (
                "spec.podFailurePolicy.rules[0].onExitCodes.values",
                "Invalid value: []int32{0, 3, 3, 1}: must be ordered",
            ),
            (
                "spec.podFailurePolicy.rules[1]",
                "Invalid value: specifying one of OnExitCodes and OnPodConditions is required",
            ),
            (
                "spec.podFailurePolicy.rules[2].action",
                "Unsupported value: \"Restart\": supported values: \"Count\", \"FailIndex\", \"FailJob\", \"Ignore\"",
            ),
        ];
        let expected: Vec<(String, String)> = expected.iter().map(|(f, m)| (f.to_string(), m.to_string())).collect();
        assert_eq!(fields, expected);
    }

    #[test]
    fn success_policy_rules() {
        let job = |mode: &str, rules: Value| {
            json!({"metadata": {"name": "j"}, "spec": {"completionMode": mode, "completions": 5,
                "successPolicy": {"rules": rules}, "template": {"spec": {
                "restartPolicy": "Never", "containers": [{"name": "main", "image": "i"}]}}}})
        };
        let errors = create_errors("batch", "Job", job("NonIndexed", json!([{"succeededCount": 1}])));
        assert_eq!(errors.len(), 1, "{:#?}", summary(&errors));
        assert_eq!(errors[0].field, "spec.successPolicy");
        assert!(errors[0].message.ends_with(": requires indexed completion mode"), "{}", errors[0].message);
        let errors = create_errors(
            "batch",
            "Job",
            job(
                "Indexed",
                json!([{}, {"succeededIndexes": "1-3,2"}, {"succeededIndexes": "0,7"}, {"succeededIndexes": "0-1", "succeededCount": 3}]),
            ),
        );
        let fields: Vec<(String, String)> = errors.iter().map(|e| (e.field.clone(), e.message.clone())).collect();
        let expected = [
            ("spec.successPolicy.rules[0]", "Required value: at least one of succeededCount or succeededIndexes must be specified"),
            ("spec.successPolicy.rules[1].succeededIndexes", "Invalid value: \"1-3,2\": error parsing succeededIndexes: non-increasing order, previous: 3, current: 2"),
            ("spec.successPolicy.rules[2].succeededIndexes", "Invalid value: \"0,7\": error parsing succeededIndexes: too large index: \"7\""),
            ("spec.successPolicy.rules[3].succeededCount", "Invalid value: 3: must be less than or equal to 2 (the number of indexes in the specified succeededIndexes field)"),
        ];
        let expected: Vec<(String, String)> = expected.iter().map(|(f, m)| (f.to_string(), m.to_string())).collect();
        assert_eq!(fields, expected);
    }

    #[test]
    fn service_rules() {
        let service = |spec: Value| json!({"metadata": {"name": "web"}, "spec": spec});
        let errors = create_errors("", "Service", service(json!({})));
        assert_single(&errors, "spec.ports", FieldErrorReason::Required, "Required value");
        assert!(create_errors("", "Service", service(json!({"clusterIP": "None"}))).is_empty());
        assert!(create_errors(
            "",
            "Service",
            service(json!({"type": "ExternalName", "externalName": "db.example.com"}))
        )
        .is_empty());
        let errors = create_errors(
            "",
            "Service",
            service(json!({"type": "Magic", "ports": [
            {"port": 80}, {"port": 0, "name": "b", "protocol": "ICMP"}, {"name": "b", "port": 81, "nodePort": 30001}]})),
        );
        assert_eq!(summary(&errors), vec![
            ("spec.type".into(), "FieldValueNotSupported",
             "Unsupported value: \"Magic\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"".into()),
            ("spec.ports[0].name".into(), "FieldValueRequired", "Required value".into()),
            ("spec.ports[1].port".into(), "FieldValueInvalid", "Invalid value: 0: must be between 1 and 65535, inclusive".into()),
            ("spec.ports[1].protocol".into(), "FieldValueNotSupported",
             "Unsupported value: \"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\"".into()),
            ("spec.ports[1].targetPort".into(), "FieldValueInvalid", "Invalid value: 0: must be between 1 and 65535, inclusive".into()),
            ("spec.ports[2].name".into(), "FieldValueDuplicate", "Duplicate value: \"b\"".into()),
        ]);
        let errors = create_errors("", "Service", service(json!({"ports": [{"port": 80, "nodePort": 30001}]})));
        assert_single(
            &errors,
            "spec.ports[0].nodePort",
            FieldErrorReason::Forbidden,
            "Forbidden: may not be used when `type` is 'ClusterIP'",
        );
        let errors =
            create_errors("", "Service", service(json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 80}]})));
        assert_single(
            &errors,
            "spec.ports[0].nodePort",
            FieldErrorReason::Invalid,
            "Invalid value: 80: provided port is not in the valid range. The range of valid ports is 30000-32767",
        );
        let old = service(json!({"clusterIP": "10.0.0.5", "ports": [{"port": 80}]}));
        let errors = update_errors("", "Service", old.clone(), |new| {
            new["spec"]["clusterIP"] = json!("10.0.0.6");
            new["spec"]["clusterIPs"] = json!(["10.0.0.6"]);
        });
        assert_single(
            &errors,
            "spec.clusterIPs[0]",
            FieldErrorReason::Invalid,
            "Invalid value: []string{\"10.0.0.6\"}: may not change once set",
        );
        assert!(update_errors("", "Service", old, |_| {}).is_empty());
    }

    #[test]
    fn config_map_and_secret_rules() {
        let errors = create_errors(
            "",
            "ConfigMap",
            json!({"metadata": {"name": "c"}, "data": {"bad key": "x", "..x": "y"},
            "binaryData": {"..x": "eA=="}}),
        );
        assert_eq!(
            summary(&errors),
            vec![
                ("data[..x]".into(), "FieldValueInvalid", "Invalid value: \"..x\": must not start with '..'".into()),
                (
                    "data[bad key]".into(),
                    "FieldValueInvalid",
                    format!("Invalid value: \"bad key\": {CONFIG_KEY_MESSAGE}")
                ),
                (
                    "binaryData[..x]".into(),
                    "FieldValueInvalid",
                    "Invalid value: \"..x\": must not start with '..'".into()
                ),
                (
                    "binaryData[..x]".into(),
                    "FieldValueInvalid",
                    "Invalid value: \"..x\": duplicate of key present in data".into()
                ),
            ]
        );
        let errors = create_errors(
            "",
            "ConfigMap",
            json!({"metadata": {"name": "c"}, "data": {"big": "x".repeat(MAX_DATA_SIZE + 1)}}),
        );
        assert_single(&errors, "[]", FieldErrorReason::TooLong, "Too long: may not be more than 1048576 bytes");
        let old = json!({"metadata": {"name": "c"}, "immutable": true, "data": {"a": "1"}});
        let errors = update_errors("", "ConfigMap", old, |new| new["data"]["a"] = json!("2"));
        assert_single(
            &errors,
            "data",
            FieldErrorReason::Forbidden,
            "Forbidden: field is immutable when `immutable` is set",
        );
        let errors = create_errors(
            "",
            "Secret",
            json!({"metadata": {"name": "tls"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "eA=="}}),
        );
        assert_single(&errors, "data[tls.key]", FieldErrorReason::Required, "Required value");
        let old = json!({"metadata": {"name": "s"}, "data": {"a": "eA=="}});
        let errors = update_errors("", "Secret", old, |new| {
            new["type"] = json!("kubernetes.io/basic-auth");
            new["data"] = json!({"username": "eA=="});
        });
        assert_single(
            &errors,
            "type",
            FieldErrorReason::Invalid,
            "Invalid value: \"kubernetes.io/basic-auth\": field is immutable",
        );
    }

    #[test]
    fn rbac_rules() {
        let binding = |role_ref: Value| {
            json!({"metadata": {"name": "b"}, "roleRef": role_ref,
            "subjects": [{"kind": "ServiceAccount", "name": "robot"}, {"kind": "Robot", "name": "r"}]})
        };
        let errors = create_errors(
            "rbac.authorization.k8s.io",
            "ClusterRoleBinding",
            binding(json!({"kind": "Role", "name": ""})),
        );
        assert_eq!(
            summary(&errors),
            vec![
                (
                    "roleRef.kind".into(),
                    "FieldValueNotSupported",
                    "Unsupported value: \"Role\": supported values: \"ClusterRole\"".into()
                ),
                ("roleRef.name".into(), "FieldValueRequired", "Required value".into()),
                ("subjects[0].namespace".into(), "FieldValueRequired", "Required value".into()),
                (
                    "subjects[1].kind".into(),
                    "FieldValueNotSupported",
                    "Unsupported value: \"Robot\": supported values: \"ServiceAccount\", \"User\", \"Group\"".into()
                ),
            ]
        );
        let old = json!({"metadata": {"name": "b"}, "roleRef": {"kind": "ClusterRole", "name": "view"}});
        let errors = update_errors("rbac.authorization.k8s.io", "RoleBinding", old, |new| {
            new["roleRef"]["name"] = json!("edit");
        });
        assert_single(&errors, "roleRef", FieldErrorReason::Invalid,
            "Invalid value: rbac.RoleRef{APIGroup:\"rbac.authorization.k8s.io\", Kind:\"ClusterRole\", Name:\"edit\"}: cannot change roleRef");
        let errors = create_errors(
            "rbac.authorization.k8s.io",
            "Role",
            json!({"metadata": {"name": "r"},
            "rules": [{"resources": ["pods"]}, {"nonResourceURLs": ["/healthz"], "verbs": ["get"]}]}),
        );
        assert_eq!(
            summary(&errors),
            vec![
                (
                    "rules[0].verbs".into(),
                    "FieldValueRequired",
                    "Required value: verbs must contain at least one value".into()
                ),
                (
                    "rules[0].apiGroups".into(),
                    "FieldValueRequired",
                    "Required value: resource rules must supply at least one api group".into()
                ),
                (
                    "rules[1].nonResourceURLs".into(),
                    "FieldValueInvalid",
                    "Invalid value: []string{\"/healthz\"}: namespaced rules cannot apply to non-resource URLs".into()
                ),
            ]
        );
    }

    #[test]
    fn aggregate_messages_read_like_upstream() {
        let one = [FieldError::required("spec.containers[0].image", "")];
        assert_eq!(invalid_message("Pod", "x", &one), "Pod \"x\" is invalid: spec.containers[0].image: Required value");
        let two = [FieldError::required("a", ""), FieldError::required("a", ""), FieldError::forbidden("b", "no")];
        assert_eq!(
            invalid_message("Deployment.apps", "x", &two),
            "Deployment.apps \"x\" is invalid: [a: Required value, b: Forbidden: no]"
        );
        assert_eq!(qualified_kind(&def("apps", "Deployment")), "Deployment.apps");
        assert_eq!(qualified_kind(&def("", "Pod")), "Pod");
        assert_eq!(FieldErrorReason::TooMany.as_status_reason(), "FieldValueTooMany");
        assert_eq!(FieldError::too_many("spec.x", 5, 4).message, "Too many: 5: must have at most 4 items");
        assert_eq!(go_quote("a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
    }

    #[test]
    fn custom_resources_get_only_metadata_checks() {
        let mut custom = def("apps", "Deployment");
        custom.schema = SchemaSource::CustomResource("widgets.example.com".into());
        let errors = validate(&custom, &json!({"metadata": {"name": "Bad"}, "spec": {}}), None);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "metadata.name");
    }
}
