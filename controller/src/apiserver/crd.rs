//! CustomResourceDefinitions (apiextensions.k8s.io/v1) as pure functions over JSON: what resources a CRD serves,
//! whether a CRD is acceptable, the status to store once it is, and how its custom resources are pruned, defaulted
//! and validated on write. The API server watches CRDs and calls these; nothing here touches storage.
//!
//! Messages, reasons and field paths follow a v1.33 API server, because clients and tests match on them:
//! - [`validate_definition`] reports like upstream's CRD validation, which runs on the internal form of a CRD. In that
//!   form a schema, subresources or printer columns shared by every version move to the top of the spec, so their
//!   errors read `spec.validation.openAPIV3Schema…`, `spec.subresources…` and `spec.additionalPrinterColumns[0]…`
//!   (always so for a CRD with one version); only versions that differ report under `spec.versions[i]`.
//! - [`validate`] reproduces the OpenAPI validator upstream runs on custom resources, including its quirks: the
//!   numeric formats (`int32`, `int64`, `float`, `double`) are stripped from CRD schemas before validation, so no
//!   range beyond int64 is checked; a failed integer range check and failed `anyOf`/`oneOf`/`allOf`/`not` report
//!   the field `<nil>`, as upstream does.
//!
//! CEL rules (`x-kubernetes-validations`) are compiled and run by `cel.rs`. Not covered: list-type uniqueness
//! (`x-kubernetes-list-type` set/map) is not enforced, and defaults in a CRD are not checked against their schema.
//! Every served version shares one storage key; reads in another version are converted by `crd_conversion.rs`
//! (strategy None or Webhook).

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use crate::apiserver::error::Cause;
use crate::apiserver::registry::{ResourceDef, ScalePaths, SchemaSource};
use crate::apiserver::table::JsonPath;
use crate::apiserver::validation::go_quote;

/// Why a CRD cannot be turned into resources. Such a CRD should have been refused by [`validate_definition`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CrdError {
    #[error("customresourcedefinition has no {0}")]
    MissingField(&'static str),
    #[error("customresourcedefinition has unknown scope {0:?}")]
    UnknownScope(String),
}

/// One [`ResourceDef`] per served version, in `spec.versions` order. All of them share one storage key; a reader of
/// another version than an object was written in gets it converted (`crd_conversion.rs`).
pub fn resource_defs(crd: &Value) -> Result<Vec<ResourceDef>, CrdError> {
    let spec = crd.get("spec").ok_or(CrdError::MissingField("spec"))?;
    let group = str_at(spec, "group").filter(|g| !g.is_empty()).ok_or(CrdError::MissingField("spec.group"))?;
    let names = spec.get("names").ok_or(CrdError::MissingField("spec.names"))?;
    let plural =
        str_at(names, "plural").filter(|p| !p.is_empty()).ok_or(CrdError::MissingField("spec.names.plural"))?;
    let kind = str_at(names, "kind").filter(|k| !k.is_empty()).ok_or(CrdError::MissingField("spec.names.kind"))?;
    let singular =
        str_at(names, "singular").filter(|s| !s.is_empty()).map_or_else(|| kind.to_lowercase(), String::from);
    let namespaced = match str_at(spec, "scope").unwrap_or_default() {
        "Namespaced" => true,
        "Cluster" => false,
        other => return Err(CrdError::UnknownScope(other.to_string())),
    };
    let versions = spec.get("versions").and_then(Value::as_array).ok_or(CrdError::MissingField("spec.versions"))?;
    let mut defs = Vec::new();
    for version in versions.iter().filter(|v| v.get("served").and_then(Value::as_bool).unwrap_or(false)) {
        let name = str_at(version, "name").ok_or(CrdError::MissingField("spec.versions[].name"))?;
        let subresources = version.get("subresources");
        let scale = subresources.and_then(|s| s.get("scale")).filter(|s| s.is_object()).map(|scale| ScalePaths {
            spec_replicas: strip_dot(str_at(scale, "specReplicasPath").unwrap_or_default()),
            status_replicas: strip_dot(str_at(scale, "statusReplicasPath").unwrap_or_default()),
            label_selector: str_at(scale, "labelSelectorPath").filter(|p| !p.is_empty()).map(strip_dot),
        });
        defs.push(ResourceDef {
            group: group.to_string(),
            version: name.to_string(),
            kind: kind.to_string(),
            plural: plural.to_string(),
            singular: singular.clone(),
            namespaced,
            short_names: strings_at(names, "shortNames"),
            categories: strings_at(names, "categories"),
            verbs: ALL_VERBS.iter().map(|v| v.to_string()).collect(),
            status: subresources.and_then(|s| s.get("status")).is_some_and(Value::is_object),
            scale,
            schema: SchemaSource::CustomResource(format!("{plural}.{group}")),
            conversion: None,
        });
    }
    Ok(defs)
}

/// The version custom resources are stored as: the one with `storage: true`.
pub fn storage_version(crd: &Value) -> Option<String> {
    versions(crd)
        .iter()
        .find(|v| v.get("storage").and_then(Value::as_bool).unwrap_or(false))
        .and_then(|v| str_at(v, "name"))
        .map(String::from)
}

/// Fills in what upstream defaults on a CRD before validating and storing it: `names.singular` (lowercase kind),
/// `names.listKind` (`<Kind>List`) and `conversion.strategy` `None`.
pub fn default_definition(crd: &mut Value) {
    let Some(spec) = crd.get_mut("spec").and_then(Value::as_object_mut) else { return };
    if let Some(names) = spec.get_mut("names").and_then(Value::as_object_mut) {
        let kind = names.get("kind").and_then(Value::as_str).unwrap_or_default().to_string();
        if !kind.is_empty() {
            if names.get("singular").and_then(Value::as_str).unwrap_or_default().is_empty() {
                names.insert("singular".into(), Value::String(kind.to_lowercase()));
            }
            if names.get("listKind").and_then(Value::as_str).unwrap_or_default().is_empty() {
                names.insert("listKind".into(), Value::String(format!("{kind}List")));
            }
        }
    }
    let conversion = spec.entry("conversion").or_insert_with(|| json!({}));
    if let Some(conversion) = conversion.as_object_mut() {
        conversion.entry("strategy").or_insert_with(|| json!("None"));
    }
}

/// Validates a CRD about to be created, as upstream does (see the module docs for where errors are reported). Run
/// [`default_definition`] first, as upstream defaults before it validates. An empty list means acceptable.
pub fn validate_definition(crd: &Value) -> Vec<Cause> {
    let mut errors = Vec::new();
    let spec = crd.get("spec").unwrap_or(&Value::Null);
    let names = spec.get("names").unwrap_or(&Value::Null);
    let group = str_at(spec, "group").unwrap_or_default();
    let plural = str_at(names, "plural").unwrap_or_default();

    // metadata.name
    let name = crd.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    if name.is_empty() {
        errors.push(required("metadata.name", "name or generateName is required"));
    } else {
        let mut messages = dns1123_subdomain(name);
        if name != format!("{plural}.{group}") {
            messages.push(r#"must be spec.names.plural+"."+spec.group"#.to_string());
        }
        for message in messages {
            errors.push(invalid("metadata.name", &go_quote(name), &message));
        }
    }

    // spec.group and spec.scope
    if group.is_empty() {
        errors.push(required("spec.group", ""));
    } else if let messages @ [_, ..] = dns1123_subdomain(group).as_slice() {
        errors.push(invalid("spec.group", &go_quote(group), &messages.join(",")));
    } else if !group.contains('.') {
        errors.push(invalid("spec.group", &go_quote(group), "should be a domain with at least one dot"));
    }
    match str_at(spec, "scope").unwrap_or_default() {
        "" => errors.push(required("spec.scope", "")),
        "Cluster" | "Namespaced" => {}
        other => errors.push(not_supported("spec.scope", &go_quote(other), &["Cluster", "Namespaced"])),
    }

    // Upstream's internal form: per-version fields identical in every version move to the spec.
    let versions = versions(crd);
    let shared = |key: &str| -> bool {
        let first = versions.first().and_then(|v| v.get(key));
        !versions.is_empty() && versions.iter().all(|v| v.get(key) == first)
    };
    let (shared_schema, shared_subresources, shared_columns) =
        (shared("schema"), shared("subresources"), shared("additionalPrinterColumns"));
    let schema_of = |v: &Value| v.pointer("/schema/openAPIV3Schema").filter(|s| !s.is_null()).cloned();
    let top_schema = if shared_schema { versions.first().and_then(schema_of) } else { None };
    if top_schema.is_none() {
        for (i, version) in versions.iter().enumerate() {
            if schema_of(version).is_none() {
                errors.push(required(&format!("spec.versions[{i}].schema.openAPIV3Schema"), "schemas are required"));
            }
        }
    }
    let status_enabled = |v: &Value| v.pointer("/subresources/status").is_some_and(Value::is_object);

    let mut storage_count = 0;
    let mut seen_names = BTreeSet::new();
    let mut unique_names = true;
    for (i, version) in versions.iter().enumerate() {
        let path = format!("spec.versions[{i}]");
        let version_name = str_at(version, "name").unwrap_or_default();
        if version.get("storage").and_then(Value::as_bool).unwrap_or(false) {
            storage_count += 1;
        }
        unique_names &= seen_names.insert(version_name);
        if let messages @ [_, ..] = dns1035_label(version_name).as_slice() {
            errors.push(invalid(&format!("{path}.name"), &go_quote(version_name), &messages.join(",")));
        }
        if !shared_schema {
            if let Some(schema) = schema_of(version) {
                validate_schema_definition(&schema, status_enabled(version), &format!("{path}.schema"), &mut errors);
            }
        }
        if !shared_subresources {
            validate_subresources(version.get("subresources"), &format!("{path}.subresources"), &mut errors);
        }
        if !shared_columns {
            validate_printer_columns(version.get("additionalPrinterColumns"), &path, &mut errors);
        }
    }
    let versions_value = || render_json(spec.get("versions").unwrap_or(&Value::Null));
    if !unique_names {
        errors.push(invalid("spec.versions", &versions_value(), "must contain unique version names"));
    }
    if storage_count != 1 {
        errors.push(invalid(
            "spec.versions",
            &versions_value(),
            "must have exactly one version marked as storage version",
        ));
    }
    if let Some(first) = versions.first().and_then(|v| str_at(v, "name")) {
        if let messages @ [_, ..] = dns1035_label(first).as_slice() {
            errors.push(invalid("spec.version", &go_quote(first), &messages.join(",")));
        }
    }

    // spec.names
    for key in ["plural", "singular", "kind", "listKind"] {
        if str_at(names, key).unwrap_or_default().is_empty() {
            errors.push(required(&format!("spec.names.{key}"), ""));
        }
    }
    validate_names(names, "spec.names", &mut errors);

    // What moved to the top of the spec.
    if let Some(schema) = &top_schema {
        let status = versions.first().is_some_and(status_enabled);
        validate_schema_definition(schema, status, "spec.validation", &mut errors);
    }
    if shared_subresources {
        validate_subresources(versions.first().and_then(|v| v.get("subresources")), "spec.subresources", &mut errors);
    }
    if shared_columns {
        validate_printer_columns(versions.first().and_then(|v| v.get("additionalPrinterColumns")), "spec", &mut errors);
    }

    validate_conversion(spec.get("conversion"), &mut errors);

    // status.storedVersions as a create sets it: the first storage version.
    let stored: Vec<&str> = versions
        .iter()
        .find(|v| v.get("storage").and_then(Value::as_bool).unwrap_or(false))
        .and_then(|v| str_at(v, "name"))
        .into_iter()
        .collect();
    if stored.is_empty() {
        errors.push(invalid("status.storedVersions", "null", "must have at least one stored version"));
    } else {
        for version in versions.iter().filter(|v| v.get("storage").and_then(Value::as_bool).unwrap_or(false)) {
            let version_name = str_at(version, "name").unwrap_or_default();
            if !stored.contains(&version_name) {
                let detail = format!("must have the storage version {version_name}");
                errors.push(invalid("status.storedVersions", &render_json(&json!(stored)), &detail));
            }
        }
    }
    errors
}

/// The `status` to store once a CRD is accepted: names accepted, established, and the storage version recorded
/// (kept with any versions stored before). `now` is an RFC 3339 timestamp.
pub fn established_status(crd: &Value, now: &str) -> Value {
    let names = crd.pointer("/spec/names").cloned().unwrap_or_else(|| json!({}));
    let kind = str_at(&names, "kind").unwrap_or_default();
    let mut accepted = Map::new();
    accepted.insert("plural".into(), json!(str_at(&names, "plural").unwrap_or_default()));
    let singular =
        str_at(&names, "singular").filter(|s| !s.is_empty()).map_or_else(|| kind.to_lowercase(), String::from);
    accepted.insert("singular".into(), json!(singular));
    if let Some(short) = names.get("shortNames").filter(|s| s.as_array().is_some_and(|a| !a.is_empty())) {
        accepted.insert("shortNames".into(), short.clone());
    }
    accepted.insert("kind".into(), json!(kind));
    let list_kind =
        str_at(&names, "listKind").filter(|s| !s.is_empty()).map_or_else(|| format!("{kind}List"), String::from);
    accepted.insert("listKind".into(), json!(list_kind));
    if let Some(categories) = names.get("categories").filter(|c| c.as_array().is_some_and(|a| !a.is_empty())) {
        accepted.insert("categories".into(), categories.clone());
    }
    let mut stored = strings_at(crd.get("status").unwrap_or(&Value::Null), "storedVersions");
    if let Some(storage) = storage_version(crd) {
        if !stored.contains(&storage) {
            stored.push(storage);
        }
    }
    json!({
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "lastTransitionTime": now, "reason": "NoConflicts",
             "message": "no conflicts found"},
            {"type": "Established", "status": "True", "lastTransitionTime": now, "reason": "InitialNamesAccepted",
             "message": "the initial names have been accepted"},
        ],
        "acceptedNames": accepted,
        "storedVersions": stored,
    })
}

/// A version's `additionalPrinterColumns`, for the Table printer; `None` when the version has none or is unknown.
pub fn printer_columns(crd: &Value, version: &str) -> Option<Value> {
    find_version(crd, version)?
        .get("additionalPrinterColumns")
        .filter(|c| c.as_array().is_some_and(|a| !a.is_empty()))
        .cloned()
}

/// A version's `schema.openAPIV3Schema`.
pub fn version_schema(crd: &Value, version: &str) -> Option<Value> {
    find_version(crd, version)?.pointer("/schema/openAPIV3Schema").filter(|s| !s.is_null()).cloned()
}

/// Drops every field the schema does not know, as upstream does when it decodes a custom resource: fields are kept
/// under `x-kubernetes-preserve-unknown-fields` and `additionalProperties`; `apiVersion`, `kind` and `metadata` of the
/// object (and of embedded resources) are kept, `metadata` reduced to ObjectMeta's fields. Afterwards, `null`s in
/// fields that are neither nullable nor defaulted are dropped too. Run before [`apply_defaults`].
pub fn prune(schema: &Value, object: &mut Value) {
    let mut unknown = Vec::new();
    prune_root(schema, object, &mut unknown);
    prune_nulls(Some(schema), object);
}

/// The paths [`prune`] would drop (`metadata.foo` first, then the rest sorted: `spec.foo`, `spec.items[0].bar`), for
/// `fieldValidation=Strict` (upstream: `unknown field "spec.foo"`) and `Warn`.
pub fn unknown_fields(schema: &Value, object: &Value) -> Vec<String> {
    let mut copy = object.clone();
    let mut unknown = Vec::new();
    prune_root(schema, &mut copy, &mut unknown);
    unknown
}

/// Sets `default`s of missing properties (and of `null`s where null is not allowed), depth first, so an object
/// created by a default gets its own properties' defaults. Run after [`prune`], as upstream does.
pub fn apply_defaults(schema: &Value, object: &mut Value) {
    default_node(Some(schema), object);
}

/// Validates a custom resource (already pruned and defaulted) against its version's schema. Each cause reads as
/// upstream's, e.g. `FieldValueRequired` `spec.prop2` `Required value`, or `FieldValueTypeInvalid` `spec.prop2`
/// `Invalid value: "boolean": spec.prop2 in body must be of type array: "boolean"`.
pub fn validate(schema: &Value, object: &Value) -> Vec<Cause> {
    validate_against(schema, object, None)
}

/// The schema's checks, then its CEL rules (`x-kubernetes-validations`; transition rules only when `old` is given).
fn validate_against(schema: &Value, object: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut errors = Vec::new();
    validate_node(schema, object, "", &mut errors);
    crate::apiserver::cel::validate(schema, object, old, &mut errors);
    errors
}

/// Validates an update of a custom resource like [`validate`], except that a top-level field the update left as it
/// was (`status` on a main-resource write, `spec` on a `/status` write) cannot fail it: upstream ratchets
/// unchanged values, so a stored value that a newer schema (or a required field not yet written) rejects does not
/// block writes to the rest of the object.
pub fn validate_update(schema: &Value, object: &Value, old: &Value) -> Vec<Cause> {
    let unchanged = |field: &str| {
        let top = field.split(['.', '[']).next().unwrap_or_default();
        !META_FIELDS.contains(&top) && object.get(top).is_some_and(|value| old.get(top) == Some(value))
    };
    validate_against(schema, object, Some(old)).into_iter().filter(|cause| !unchanged(&cause.field)).collect()
}

const ALL_VERBS: &[&str] = &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

const META_FIELDS: &[&str] = &["apiVersion", "kind", "metadata"];

const DNS1123_SUBDOMAIN_MESSAGE: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1035_LABEL_MESSAGE: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";

const OPENAPI_TYPES: &[&str] = &["array", "boolean", "integer", "number", "object", "string"];
const PRINTER_COLUMN_TYPES: &str = "boolean,date,integer,number,string";
const PRINTER_COLUMN_FORMATS: &[&str] = &["byte", "date", "date-time", "double", "float", "int32", "int64", "password"];

/// The schema keywords upstream allows at the root when the status subresource is on (JSON names of its list).
const ALLOWED_AT_ROOT_WITH_STATUS: &[&str] = &[
    "description",
    "type",
    "format",
    "title",
    "maximum",
    "exclusiveMaximum",
    "minimum",
    "exclusiveMinimum",
    "maxLength",
    "minLength",
    "pattern",
    "maxItems",
    "minItems",
    "uniqueItems",
    "multipleOf",
    "required",
    "items",
    "properties",
    "externalDocs",
    "example",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-validations",
];
const ALLOWED_AT_ROOT_GO_NAMES: &str = "[Description Type Format Title Maximum ExclusiveMaximum Minimum ExclusiveMinimum \
     MaxLength MinLength Pattern MaxItems MinItems UniqueItems MultipleOf Required Items Properties ExternalDocs Example \
     XPreserveUnknownFields XValidations]";

/// The string formats upstream validates on custom resources; any other format is ignored.
const SUPPORTED_FORMATS: &[&str] = &[
    "bsonobjectid",
    "uri",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "cidr",
    "mac",
    "uuid",
    "uuid3",
    "uuid4",
    "uuid5",
    "isbn",
    "isbn10",
    "isbn13",
    "creditcard",
    "ssn",
    "hexcolor",
    "rgbcolor",
    "byte",
    "password",
    "date",
    "duration",
    "datetime",
];

fn str_at<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

fn strings_at(value: &Value, key: &str) -> Vec<String> {
    value
        .get(key)
        .and_then(Value::as_array)
        .map(|items| items.iter().filter_map(Value::as_str).map(String::from).collect())
        .unwrap_or_default()
}

fn strip_dot(path: &str) -> String {
    path.strip_prefix('.').unwrap_or(path).to_string()
}

fn versions(crd: &Value) -> &[Value] {
    crd.pointer("/spec/versions").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
}

fn find_version<'a>(crd: &'a Value, version: &str) -> Option<&'a Value> {
    versions(crd).iter().find(|v| str_at(v, "name") == Some(version))
}

// ---------------------------------------------------------------------------------------------------------------
// Causes, rendered as upstream's field errors.

fn cause(reason: &str, field: &str, message: String) -> Cause {
    Cause { reason: reason.to_string(), message, field: field.to_string() }
}

fn with_detail(mut message: String, detail: &str) -> String {
    if !detail.is_empty() {
        message.push_str(": ");
        message.push_str(detail);
    }
    message
}

/// `spec.conversion`: strategy None, or Webhook with a webhook to call (a URL or a Service) that speaks a
/// ConversionReview version kaasd sends, as upstream validates it.
fn validate_conversion(conversion: Option<&Value>, errors: &mut Vec<Cause>) {
    let Some(conversion) = conversion.filter(|conversion| !conversion.is_null()) else { return };
    match str_at(conversion, "strategy").unwrap_or_default() {
        "None" => {
            if conversion.get("webhook").is_some_and(|webhook| !webhook.is_null()) {
                errors.push(forbidden(
                    "spec.conversion.webhook",
                    "should not be set when strategy is not set to Webhook",
                ));
            }
        }
        "Webhook" => {
            let Some(webhook) = conversion.get("webhook").filter(|webhook| !webhook.is_null()) else {
                errors.push(required("spec.conversion.webhook", "required when strategy is set to Webhook"));
                return;
            };
            let client_config = webhook.get("clientConfig").unwrap_or(&Value::Null);
            let has_url = client_config.get("url").is_some_and(|url| !url.is_null());
            let has_service = client_config.get("service").is_some_and(|service| !service.is_null());
            match (has_url, has_service) {
                (false, false) => errors.push(required(
                    "spec.conversion.webhook.clientConfig",
                    "exactly one of url or service is required",
                )),
                (true, true) => errors.push(required(
                    "spec.conversion.webhook.clientConfig",
                    "exactly one of url or service is required",
                )),
                _ => {}
            }
            let versions = crate::apiserver::objects::string_list(webhook.get("conversionReviewVersions"));
            if versions.is_empty() {
                errors.push(required("spec.conversion.webhook.conversionReviewVersions", ""));
            } else if !versions.iter().any(|version| version == "v1" || version == "v1beta1") {
                errors.push(invalid(
                    "spec.conversion.webhook.conversionReviewVersions",
                    &render_json(&json!(versions)),
                    "must include at least one of v1, v1beta1",
                ));
            }
        }
        other => errors.push(not_supported("spec.conversion.strategy", &go_quote(other), &["None", "Webhook"])),
    }
}

fn required(field: &str, detail: &str) -> Cause {
    cause("FieldValueRequired", field, with_detail("Required value".into(), detail))
}

/// `rendered` is the bad value as upstream prints it (see [`render_value`]).
fn invalid(field: &str, rendered: &str, detail: &str) -> Cause {
    cause("FieldValueInvalid", field, with_detail(format!("Invalid value: {rendered}"), detail))
}

fn type_invalid(field: &str, rendered: &str, detail: &str) -> Cause {
    cause("FieldValueTypeInvalid", field, with_detail(format!("Invalid value: {rendered}"), detail))
}

fn not_supported(field: &str, rendered: &str, supported: &[&str]) -> Cause {
    let quoted: Vec<String> = supported.iter().map(|s| go_quote(s)).collect();
    let detail = if quoted.is_empty() { String::new() } else { format!("supported values: {}", quoted.join(", ")) };
    cause("FieldValueNotSupported", field, with_detail(format!("Unsupported value: {rendered}"), &detail))
}

fn forbidden(field: &str, detail: &str) -> Cause {
    cause("FieldValueForbidden", field, with_detail("Forbidden".into(), detail))
}

fn too_long(field: &str, max: i64) -> Cause {
    let unit = if max == 1 { "byte" } else { "bytes" };
    cause("FieldValueTooLong", field, format!("Too long: may not be more than {max} {unit}"))
}

fn too_many(field: &str, actual: i64, max: i64) -> Cause {
    let unit = if max == 1 { "item" } else { "items" };
    cause("FieldValueTooMany", field, format!("Too many: {actual}: must have at most {max} {unit}"))
}

/// A JSON value as upstream prints a bad value: numbers and booleans bare, strings quoted, anything else as JSON.
fn render_value(value: &Value) -> String {
    match value {
        Value::String(s) => go_quote(s),
        Value::Number(n) => match number(n) {
            Number::Int(i) => i.to_string(),
            Number::Float(f) => go_float(f),
        },
        Value::Bool(b) => b.to_string(),
        other => render_json(other),
    }
}

fn render_json(value: &Value) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// Go's `%v` of a float64: the shortest representation, in exponent form below 1e-4 and from 1e21 up.
fn go_float(value: f64) -> String {
    if value.is_finite() && value == value.trunc() && value.abs() < 1e21 {
        return format!("{value:.0}");
    }
    let abs = value.abs();
    if abs != 0.0 && !(1e-4..1e21).contains(&abs) {
        let text = format!("{value:e}");
        let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
        let exponent: i32 = exponent.parse().unwrap_or(0);
        let sign = if exponent < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exponent.abs());
    }
    value.to_string()
}

// ---------------------------------------------------------------------------------------------------------------
// The CRD's own validation.

fn is_dns_label_shaped(value: &str) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

fn dns1123_subdomain(value: &str) -> Vec<String> {
    let mut messages = Vec::new();
    if value.len() > 253 {
        messages.push("must be no more than 253 characters".to_string());
    }
    if !value.split('.').all(is_dns_label_shaped) {
        messages.push(DNS1123_SUBDOMAIN_MESSAGE.to_string());
    }
    messages
}

fn dns1035_label(value: &str) -> Vec<String> {
    let mut messages = Vec::new();
    if value.len() > 63 {
        messages.push("must be no more than 63 characters".to_string());
    }
    if !(is_dns_label_shaped(value) && value.as_bytes()[0].is_ascii_lowercase()) {
        messages.push(DNS1035_LABEL_MESSAGE.to_string());
    }
    messages
}

fn validate_names(names: &Value, path: &str, errors: &mut Vec<Cause>) {
    for key in ["plural", "singular"] {
        let value = str_at(names, key).unwrap_or_default();
        if let messages @ [_, ..] = dns1035_label(value).as_slice() {
            if !value.is_empty() {
                errors.push(invalid(&format!("{path}.{key}"), &go_quote(value), &messages.join(",")));
            }
        }
    }
    for key in ["kind", "listKind"] {
        let value = str_at(names, key).unwrap_or_default();
        if let messages @ [_, ..] = dns1035_label(&value.to_lowercase()).as_slice() {
            if !value.is_empty() {
                let detail = format!("may have mixed case, but should otherwise match: {}", messages.join(","));
                errors.push(invalid(&format!("{path}.{key}"), &go_quote(value), &detail));
            }
        }
    }
    for (i, short) in strings_at(names, "shortNames").iter().enumerate() {
        if let messages @ [_, ..] = dns1035_label(short).as_slice() {
            errors.push(invalid(&format!("{path}.shortNames[{i}]"), &go_quote(short), &messages.join(",")));
        }
    }
    let kind = str_at(names, "kind").unwrap_or_default();
    if !kind.is_empty() && Some(kind) == str_at(names, "listKind") {
        errors.push(invalid(&format!("{path}.listKind"), &go_quote(kind), "kind and listKind may not be the same"));
    }
    for (i, category) in strings_at(names, "categories").iter().enumerate() {
        if let messages @ [_, ..] = dns1035_label(category).as_slice() {
            errors.push(invalid(&format!("{path}.categories[{i}]"), &go_quote(category), &messages.join(",")));
        }
    }
}

fn validate_subresources(subresources: Option<&Value>, path: &str, errors: &mut Vec<Cause>) {
    let Some(scale) = subresources.and_then(|s| s.get("scale")).filter(|s| s.is_object()) else { return };
    for (key, prefixes, expectation) in [
        ("specReplicasPath", &[".spec."][..], "should be a json path under .spec"),
        ("statusReplicasPath", &[".status."][..], "should be a json path under .status"),
    ] {
        let field = format!("{path}.scale.{key}");
        match str_at(scale, key).unwrap_or_default() {
            "" => errors.push(required(&field, "")),
            value => {
                if let Some(error) = simple_json_path_error(value, &field) {
                    errors.push(error);
                } else if !prefixes.iter().any(|p| value.starts_with(p)) {
                    errors.push(invalid(&field, &go_quote(value), expectation));
                }
            }
        }
    }
    if let Some(selector) = str_at(scale, "labelSelectorPath").filter(|p| !p.is_empty()) {
        let field = format!("{path}.scale.labelSelectorPath");
        if let Some(error) = simple_json_path_error(selector, &field) {
            errors.push(error);
        } else if !selector.starts_with(".spec.") && !selector.starts_with(".status.") {
            errors.push(invalid(&field, &go_quote(selector), "should be a json path under either .spec or .status"));
        }
    }
}

fn simple_json_path_error(path: &str, field: &str) -> Option<Cause> {
    if path.is_empty() {
        Some(invalid(field, &go_quote(path), "must not be empty"))
    } else if !path.starts_with('.') {
        Some(invalid(field, &go_quote(path), "must be a simple json path starting with ."))
    } else {
        None
    }
}

/// `parent` is `spec.versions[i]` or `spec` (columns shared by every version).
fn validate_printer_columns(columns: Option<&Value>, parent: &str, errors: &mut Vec<Cause>) {
    let Some(columns) = columns.and_then(Value::as_array) else { return };
    for (i, column) in columns.iter().enumerate() {
        let path = format!("{parent}.additionalPrinterColumns[{i}]");
        if str_at(column, "name").unwrap_or_default().is_empty() {
            errors.push(required(&format!("{path}.name"), ""));
        }
        let must_be = format!("must be one of {PRINTER_COLUMN_TYPES}");
        match str_at(column, "type").unwrap_or_default() {
            "" => errors.push(required(&format!("{path}.type"), &must_be)),
            t if !PRINTER_COLUMN_TYPES.split(',').any(|known| known == t) => {
                errors.push(invalid(&format!("{path}.type"), &go_quote(t), &must_be))
            }
            _ => {}
        }
        let format = str_at(column, "format").unwrap_or_default();
        if !format.is_empty() && !PRINTER_COLUMN_FORMATS.contains(&format) {
            let detail = format!("must be one of {}", PRINTER_COLUMN_FORMATS.join(","));
            errors.push(invalid(&format!("{path}.format"), &go_quote(format), &detail));
        }
        // Upstream names this field by its internal Go name.
        let field = format!("{path}.JSONPath");
        match str_at(column, "jsonPath").unwrap_or_default() {
            "" => errors.push(required(&field, "")),
            json_path => {
                if let Some(error) = simple_json_path_error(json_path, &field) {
                    errors.push(error);
                } else if let Err(error) = JsonPath::parse(json_path) {
                    // Upstream accepts any path starting with a dot and prints empty cells for one it cannot parse;
                    // refusing it here tells the author at once.
                    errors.push(invalid(&field, &go_quote(json_path), &error.to_string()));
                }
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Root,
    Item,
    Field,
}

/// Validates one `openAPIV3Schema` of a CRD; `path` is `spec.validation` or `spec.versions[i].schema`.
fn validate_schema_definition(schema: &Value, status_enabled: bool, path: &str, errors: &mut Vec<Cause>) {
    let root_path = format!("{path}.openAPIV3Schema");
    if status_enabled {
        if let Some(object) = schema.as_object() {
            let type_name = str_at(schema, "type").unwrap_or_default();
            if !type_name.is_empty() && type_name != "object" {
                let detail = r#"only "object" is allowed as the type at the root of the schema if the status subresource is enabled"#;
                errors.push(invalid(&format!("{root_path}.type"), &go_quote(type_name), detail));
            } else if object.iter().any(|(k, v)| !ALLOWED_AT_ROOT_WITH_STATUS.contains(&k.as_str()) && !is_zero(v)) {
                let detail = format!(
                    "only {ALLOWED_AT_ROOT_GO_NAMES} fields are allowed at the root of the schema if the status \
                     subresource is enabled"
                );
                errors.push(invalid(&root_path, &render_json(schema), &detail));
            }
        }
    }
    if schema.get("nullable").and_then(Value::as_bool).unwrap_or(false) {
        errors.push(forbidden(&format!("{root_path}.nullable"), "nullable cannot be true at the root"));
    }
    let mut structural = Vec::new();
    structural_invariants(schema, Level::Root, &root_path, &mut structural);
    structural.sort_by_key(|c| format!("{}: {}", c.field, c.message));
    errors.extend(structural);
    openapi_schema_checks(schema, &root_path, true, false, errors);
    crate::apiserver::cel::check_schema(schema, &root_path, errors);
}

fn is_zero(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
    }
}

fn flag(schema: &Value, key: &str) -> bool {
    schema.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// Upstream's "structural schema" rules: every node says its type, arrays say their items, metadata stays plain.
fn structural_invariants(schema: &Value, level: Level, path: &str, errors: &mut Vec<Cause>) {
    let type_name = str_at(schema, "type").unwrap_or_default();
    let int_or_string = flag(schema, "x-kubernetes-int-or-string");
    let preserve = flag(schema, "x-kubernetes-preserve-unknown-fields");
    let embedded = flag(schema, "x-kubernetes-embedded-resource");
    if type_name == "array" && schema.get("items").is_none_or(Value::is_null) {
        errors.push(required(&format!("{path}.items"), "must be specified"));
    }
    if let Some(items) = schema.get("items").filter(|i| i.is_object()) {
        structural_invariants(items, Level::Item, &format!("{path}.items"), errors);
    }
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (key, property) in properties {
            structural_invariants(property, Level::Field, &format!("{path}.properties[{key}]"), errors);
        }
    }
    if let Some(additional) = schema.get("additionalProperties").filter(|a| !a.is_null()) {
        if level == Level::Root {
            errors.push(forbidden(&format!("{path}.additionalProperties"), "must not be used at the root"));
        }
        if additional.is_object() {
            structural_invariants(additional, Level::Field, &format!("{path}.additionalProperties"), errors);
        }
        if embedded {
            errors.push(forbidden(
                &format!("{path}.additionalProperties"),
                "must not be used if x-kubernetes-embedded-resource is set",
            ));
        }
    }
    if int_or_string && preserve {
        errors.push(invalid(
            &format!("{path}.x-kubernetes-preserve-unknown-fields"),
            "true",
            "must be false if x-kubernetes-int-or-string is true",
        ));
    }
    for junction in ["anyOf", "allOf", "oneOf"] {
        if let Some(alternatives) = schema.get(junction).and_then(Value::as_array) {
            let int_or_string_pattern = junction == "anyOf" && is_int_or_string_any_of(alternatives);
            if !int_or_string_pattern {
                for (i, alternative) in alternatives.iter().enumerate() {
                    nested_value_validation(alternative, &format!("{path}.{junction}[{i}]"), errors);
                }
            }
        }
    }
    if let Some(not) = schema.get("not").filter(|n| n.is_object()) {
        nested_value_validation(not, &format!("{path}.not"), errors);
    }
    if let Some(pattern) = str_at(schema, "pattern").filter(|p| !p.is_empty()) {
        if let Err(error) = regex::Regex::new(pattern) {
            let detail = format!("must be a valid regular expression, but isn't: {}", last_line(&error.to_string()));
            errors.push(invalid(&format!("{path}.pattern"), &go_quote(pattern), &detail));
        }
    }
    let check_metadata = level == Level::Root || embedded;
    if embedded && type_name != "object" {
        let detail = "must be object if x-kubernetes-embedded-resource is true";
        if type_name.is_empty() {
            errors.push(required(&format!("{path}.type"), detail));
        } else {
            errors.push(invalid(&format!("{path}.type"), &go_quote(type_name), detail));
        }
    } else if type_name.is_empty() && !int_or_string && !preserve {
        let detail = match level {
            Level::Root => "must not be empty at the root",
            Level::Item => "must not be empty for specified array items",
            Level::Field => "must not be empty for specified object fields",
        };
        errors.push(required(&format!("{path}.type"), detail));
    }
    if level == Level::Root && !type_name.is_empty() && type_name != "object" {
        errors.push(invalid(&format!("{path}.type"), &go_quote(type_name), "must be object at the root"));
    }
    let properties = schema.get("properties").and_then(Value::as_object);
    if check_metadata {
        for key in ["kind", "apiVersion"] {
            if let Some(property) = properties.and_then(|p| p.get(key)) {
                let property_type = str_at(property, "type").unwrap_or_default();
                if property_type != "string" {
                    errors.push(invalid(
                        &format!("{path}.properties[{key}].type"),
                        &go_quote(property_type),
                        "must be string",
                    ));
                }
            }
        }
    }
    if let Some(metadata) = properties.and_then(|p| p.get("metadata")) {
        let metadata_path = format!("{path}.properties[metadata]");
        let metadata_type = str_at(metadata, "type").unwrap_or_default();
        if check_metadata && metadata_type != "object" {
            errors.push(invalid(&format!("{metadata_path}.type"), &go_quote(metadata_type), "must be object"));
        }
        if level == Level::Root && !is_plain_metadata(metadata) {
            errors.push(forbidden(
                &metadata_path,
                "must not specify anything other than name and generateName, but metadata is implicitly specified",
            ));
        }
    }
    if embedded && !preserve && properties.is_none_or(Map::is_empty) {
        errors.push(required(
            &format!("{path}.properties"),
            "must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields",
        ));
    }
}

fn last_line(text: &str) -> &str {
    text.lines().last().unwrap_or(text).trim()
}

fn is_int_or_string_any_of(alternatives: &[Value]) -> bool {
    alternatives.len() == 2
        && alternatives[0] == json!({"type": "integer"})
        && alternatives[1] == json!({"type": "string"})
}

/// The root `metadata` schema may only say `type` and give `name`/`generateName` (upstream ignores those).
fn is_plain_metadata(metadata: &Value) -> bool {
    let Some(object) = metadata.as_object() else { return true };
    object.iter().all(|(key, value)| match key.as_str() {
        "type" | "default" => true,
        "properties" => value.as_object().is_none_or(|p| {
            let named = p.contains_key("name") as usize + p.contains_key("generateName") as usize;
            named == p.len()
        }),
        _ => is_zero(value),
    })
}

/// Inside `anyOf`/`allOf`/`oneOf`/`not` only value validations may appear.
fn nested_value_validation(schema: &Value, path: &str, errors: &mut Vec<Cause>) {
    let Some(object) = schema.as_object() else { return };
    for (key, rule) in [
        ("type", "must be empty to be structural"),
        ("additionalProperties", "must be undefined to be structural"),
        ("default", "must be undefined to be structural"),
        ("title", "must be empty to be structural"),
        ("description", "must be empty to be structural"),
        ("nullable", "must be false to be structural"),
        ("x-kubernetes-preserve-unknown-fields", "must be false to be structural"),
        ("x-kubernetes-embedded-resource", "must be false to be structural"),
        ("x-kubernetes-int-or-string", "must be false to be structural"),
        ("x-kubernetes-list-map-keys", "must be empty to be structural"),
        ("x-kubernetes-list-type", "must be undefined to be structural"),
        ("x-kubernetes-map-type", "must be undefined to be structural"),
        ("x-kubernetes-validations", "must be empty to be structural"),
    ] {
        if object
            .get(key)
            .is_some_and(|v| !is_zero(v) || key == "x-kubernetes-list-type" || key == "x-kubernetes-map-type")
        {
            errors.push(forbidden(&format!("{path}.{key}"), rule));
        }
    }
    if let Some(items) = object.get("items").filter(|i| i.is_object()) {
        nested_value_validation(items, &format!("{path}.items"), errors);
    }
    if let Some(properties) = object.get("properties").and_then(Value::as_object) {
        for (key, property) in properties {
            nested_value_validation(property, &format!("{path}.properties[{key}]"), errors);
        }
        if properties.contains_key("metadata") {
            errors
                .push(forbidden(&format!("{path}.properties[metadata]"), "must not be specified in a nested context"));
        }
    }
    for junction in ["anyOf", "allOf", "oneOf"] {
        if let Some(alternatives) = object.get(junction).and_then(Value::as_array) {
            for (i, alternative) in alternatives.iter().enumerate() {
                nested_value_validation(alternative, &format!("{path}.{junction}[{i}]"), errors);
            }
        }
    }
    if let Some(not) = object.get("not").filter(|n| n.is_object()) {
        nested_value_validation(not, &format!("{path}.not"), errors);
    }
}

/// Upstream's checks of the OpenAPI keywords themselves, in its order.
fn openapi_schema_checks(schema: &Value, path: &str, is_root: bool, defaults_forbidden: bool, errors: &mut Vec<Cause>) {
    let Some(object) = schema.as_object() else { return };
    let type_name = str_at(schema, "type").unwrap_or_default();
    if !type_name.is_empty() && !OPENAPI_TYPES.contains(&type_name) {
        errors.push(not_supported(&format!("{path}.type"), &go_quote(type_name), OPENAPI_TYPES));
    }
    if defaults_forbidden && object.contains_key("default") {
        errors.push(forbidden(&format!("{path}.default"), "must not be set in top-level metadata"));
    }
    for (key, message) in [
        ("id", "id is not supported"),
        ("additionalItems", "additionalItems is not supported"),
        ("patternProperties", "patternProperties is not supported"),
        ("definitions", "definitions is not supported"),
        ("dependencies", "dependencies is not supported"),
        ("$ref", "$ref is not supported"),
    ] {
        if object.get(key).is_some_and(|v| !is_zero(v)) {
            errors.push(forbidden(&format!("{path}.{key}"), message));
        }
    }
    if type_name == "null" {
        errors.push(forbidden(&format!("{path}.type"), "type cannot be set to null, use nullable as an alternative"));
    }
    if object.get("items").is_some_and(Value::is_array) {
        errors.push(forbidden(&format!("{path}.items"), "items must be a schema object and not an array"));
    }
    if flag(schema, "uniqueItems") {
        errors.push(forbidden(
            &format!("{path}.uniqueItems"),
            "uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
        ));
    }
    let properties = object.get("properties").and_then(Value::as_object).filter(|p| !p.is_empty());
    if let Some(additional) = object.get("additionalProperties").filter(|a| !a.is_null()) {
        if properties.is_some() && (additional == &Value::Bool(false) || additional.is_object()) {
            errors.push(forbidden(
                &format!("{path}.additionalProperties"),
                "additionalProperties and properties are mutual exclusive",
            ));
        }
        if additional.is_object() {
            openapi_schema_checks(additional, &format!("{path}.additionalProperties"), false, false, errors);
        }
    }
    if let Some(properties) = properties {
        for (key, property) in properties {
            let forbid = is_root && META_FIELDS.contains(&key.as_str());
            openapi_schema_checks(property, &format!("{path}.properties[{key}]"), false, forbid, errors);
        }
    }
    if let Some(not) = object.get("not") {
        openapi_schema_checks(not, &format!("{path}.not"), false, false, errors);
    }
    for junction in ["allOf", "oneOf", "anyOf"] {
        if let Some(alternatives) = object.get(junction).and_then(Value::as_array) {
            for (i, alternative) in alternatives.iter().enumerate() {
                openapi_schema_checks(alternative, &format!("{path}.{junction}[{i}]"), false, false, errors);
            }
        }
    }
    if let Some(items) = object.get("items").filter(|i| i.is_object()) {
        openapi_schema_checks(items, &format!("{path}.items"), false, false, errors);
    }
    if object.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(false)) {
        errors.push(invalid(
            &format!("{path}.x-kubernetes-preserve-unknown-fields"),
            "false",
            "must be true or undefined",
        ));
    }
    if let Some(map_type) = str_at(schema, "x-kubernetes-map-type") {
        if !["atomic", "granular"].contains(&map_type) {
            errors.push(not_supported(
                &format!("{path}.x-kubernetes-map-type"),
                &go_quote(map_type),
                &["atomic", "granular"],
            ));
        }
    }
    if let Some(list_type) = str_at(schema, "x-kubernetes-list-type") {
        if !["atomic", "set", "map"].contains(&list_type) {
            let supported = ["atomic", "set", "map"];
            errors.push(not_supported(&format!("{path}.x-kubernetes-list-type"), &go_quote(list_type), &supported));
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Pruning and defaulting of custom resources.

/// Upstream reports the unknown fields of `metadata` first, then the others sorted.
fn prune_root(schema: &Value, object: &mut Value, unknown: &mut Vec<String>) {
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        prune_object_meta(metadata, "metadata", unknown);
    }
    let mut pruned = Vec::new();
    prune_node(Some(schema), object, true, false, "", &mut pruned);
    pruned.sort();
    unknown.extend(pruned);
}

/// Drops what ObjectMeta has no field for.
fn prune_object_meta(metadata: &mut Map<String, Value>, path: &str, unknown: &mut Vec<String>) {
    metadata.retain(|key, _| {
        let known = crate::apiserver::field_order::OBJECT_META_FIELDS.contains(&key.as_str());
        if !known {
            unknown.push(format!("{path}.{key}"));
        }
        known
    });
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn additional_schema(schema: &Value) -> Option<Option<&Value>> {
    match schema.get("additionalProperties") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => None,
        Some(Value::Bool(true)) => Some(None),
        Some(other) => Some(Some(other)),
    }
}

/// `schema` `None` means "no schema here": every field of an object below is unknown. `skip` is upstream's mode
/// under `x-kubernetes-preserve-unknown-fields`: unknown fields stay, known ones are pruned by their own schema.
fn prune_node(
    schema: Option<&Value>,
    value: &mut Value,
    embedded_root: bool,
    skip: bool,
    path: &str,
    unknown: &mut Vec<String>,
) {
    let skip = skip || schema.is_some_and(|s| flag(s, "x-kubernetes-preserve-unknown-fields"));
    if skip && schema.is_none() {
        return;
    }
    let embedded = embedded_root || schema.is_some_and(|s| flag(s, "x-kubernetes-embedded-resource"));
    match value {
        Value::Object(map) => {
            let Some(schema) = schema else {
                unknown.extend(map.keys().map(|key| join(path, key)));
                map.clear();
                return;
            };
            if embedded && !embedded_root {
                if let Some(metadata) = map.get_mut("metadata").and_then(Value::as_object_mut) {
                    prune_object_meta(metadata, &join(path, "metadata"), unknown);
                }
            }
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = additional_schema(schema);
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                if embedded && META_FIELDS.contains(&key.as_str()) {
                    continue;
                }
                let child_path = join(path, &key);
                let child = map.get_mut(&key).expect("key listed");
                if let Some(property) = properties.and_then(|p| p.get(&key)) {
                    prune_node(Some(property), child, false, false, &child_path, unknown);
                } else if let Some(additional) = additional {
                    prune_node(additional, child, false, false, &child_path, unknown);
                } else if !skip {
                    unknown.push(child_path);
                    map.remove(&key);
                }
            }
        }
        Value::Array(items) => {
            let item_schema = schema.and_then(|s| s.get("items")).filter(|i| i.is_object());
            for (i, item) in items.iter_mut().enumerate() {
                prune_node(item_schema, item, false, skip, &format!("{path}[{i}]"), unknown);
            }
        }
        _ => {}
    }
}

fn nullable(schema: &Value) -> bool {
    flag(schema, "nullable")
}

fn field_schema<'a>(schema: Option<&'a Value>, key: &str) -> Option<&'a Value> {
    let schema = schema?;
    if let Some(property) = schema.get("properties").and_then(|p| p.get(key)) {
        return Some(property);
    }
    additional_schema(schema).flatten()
}

/// Drops `null`s where the schema neither allows nor defaults them.
fn prune_nulls(schema: Option<&Value>, value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|key, child| {
                let child_schema = field_schema(schema, key);
                !(child.is_null() && child_schema.is_some_and(|s| !nullable(s) && s.get("default").is_none()))
            });
            for (key, child) in map.iter_mut() {
                prune_nulls(field_schema(schema, key), child);
            }
        }
        Value::Array(items) => {
            let item_schema = schema.and_then(|s| s.get("items"));
            for item in items {
                prune_nulls(item_schema, item);
            }
        }
        _ => {}
    }
}

fn default_node(schema: Option<&Value>, value: &mut Value) {
    let Some(schema) = schema else { return };
    match value {
        Value::Object(map) => {
            if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
                for (key, property) in properties {
                    let Some(default) = property.get("default") else { continue };
                    let missing = match map.get(key) {
                        None => true,
                        Some(Value::Null) => !nullable(property),
                        Some(_) => false,
                    };
                    if missing {
                        map.insert(key.clone(), default.clone());
                    }
                }
            }
            let additional = additional_schema(schema).flatten();
            for (key, child) in map.iter_mut() {
                if let Some(property) = schema.get("properties").and_then(|p| p.get(key)) {
                    default_node(Some(property), child);
                } else if let Some(additional) = additional {
                    if child.is_null() && !nullable(additional) {
                        if let Some(default) = additional.get("default") {
                            *child = default.clone();
                        }
                    }
                    default_node(Some(additional), child);
                }
            }
        }
        Value::Array(items) => {
            let Some(item_schema) = schema.get("items").filter(|i| i.is_object()) else { return };
            for item in items {
                if item.is_null() && !nullable(item_schema) {
                    if let Some(default) = item_schema.get("default") {
                        *item = default.clone();
                    }
                }
                default_node(Some(item_schema), item);
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Validation of custom resources: upstream's OpenAPI validator, error for error.

/// A JSON number as upstream decodes it: an integer when it fits int64, a float otherwise.
#[derive(Clone, Copy)]
enum Number {
    Int(i64),
    Float(f64),
}

fn number(n: &serde_json::Number) -> Number {
    match n.as_i64() {
        Some(i) => Number::Int(i),
        None => Number::Float(n.as_f64().unwrap_or(f64::NAN)),
    }
}

/// The JSON type name upstream gives a value.
fn type_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::String(_) => "string",
        Value::Number(n) => match number(n) {
            Number::Int(_) => "integer",
            Number::Float(_) => "number",
        },
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The schema's types: `type`, or integer and string for `x-kubernetes-int-or-string`.
fn schema_types(schema: &Value) -> Vec<&str> {
    if flag(schema, "x-kubernetes-int-or-string") {
        return vec!["integer", "string"];
    }
    str_at(schema, "type").filter(|t| !t.is_empty()).into_iter().collect()
}

/// The format the validator sees: CRD schemas keep only the string formats upstream supports.
fn effective_format(schema: &Value) -> Option<&str> {
    let format = str_at(schema, "format")?;
    SUPPORTED_FORMATS.contains(&format.replace('-', "").as_str()).then_some(format)
}

/// The field an error names: upstream turns a validator path into a field path, and an empty one into `<nil>`.
fn error_field(path: &str) -> String {
    if path.is_empty() {
        "<nil>".to_string()
    } else {
        path.to_string()
    }
}

fn invalid_type(path: &str, expected: &str, actual: &str) -> Cause {
    let detail = format!("{} in body must be of type {expected}: {}", path, go_quote(actual));
    type_invalid(&error_field(path), &go_quote(actual), &detail)
}

/// A validator failure that upstream reports without a field: field `<nil>`, value `""`.
fn unattributed(detail: &str) -> Cause {
    invalid("<nil>", "\"\"", detail)
}

fn validate_node(schema: &Value, value: &Value, path: &str, errors: &mut Vec<Cause>) {
    let types = schema_types(schema);
    let format = effective_format(schema);
    if value.is_null() {
        if !types.is_empty() && !nullable(schema) {
            errors.push(invalid_type(path, &types.join(","), "null"));
        }
        if let Some(options) = schema.get("enum").and_then(Value::as_array).filter(|e| !e.is_empty()) {
            errors.push(enum_error(path, value, options));
        }
        return;
    }
    if !types.is_empty() || format.is_some() {
        validate_type(&types, format, value, path, errors);
    }
    validate_junctions(schema, value, path, errors);
    if let Value::String(text) = value {
        validate_string(schema, text, path, errors);
        if let Some(format) = format {
            if !format_matches(&format.replace('-', ""), text) {
                let detail = format!("{} in body must be of type {format}: {}", path, go_quote(text));
                errors.push(type_invalid(&error_field(path), &go_quote(text), &detail));
            }
        }
    }
    if let Value::Number(n) = value {
        validate_number(schema, &types, number(n), path, errors);
    }
    if let Value::Array(items) = value {
        validate_array(schema, items, path, errors);
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array).filter(|e| !e.is_empty()) {
        if !options.iter().any(|option| enum_matches(value, option)) {
            errors.push(enum_error(path, value, options));
        }
    }
    if let Value::Object(map) = value {
        validate_object(schema, map, path, errors);
    }
}

fn validate_type(types: &[&str], format: Option<&str>, value: &Value, path: &str, errors: &mut Vec<Cause>) {
    let actual = type_of(value);
    let contains = |t: &str| types.contains(&t);
    let float_int = matches!(value, Value::Number(n) if matches!(number(n), Number::Float(f) if f.fract() == 0.0 && f.is_finite()))
        && contains("integer");
    let int_float = actual == "integer" && contains("number");
    let string_or_array = matches!(value, Value::String(_) | Value::Array(_));
    if let Some(format) = format {
        let value_format = match actual {
            "integer" => "int64",
            "number" => "float64",
            _ => "",
        };
        if !(string_or_array || contains(actual) || value_format == format || float_int || int_float) {
            errors.push(invalid_type(path, format, value_format));
            return;
        }
        if !(contains("number") || contains("integer")) && string_or_array {
            return;
        }
    }
    if !(contains(actual) || float_int || int_float) {
        errors.push(invalid_type(path, &types.join(","), actual));
    }
}

fn validate_junctions(schema: &Value, value: &Value, path: &str, errors: &mut Vec<Cause>) {
    let quoted_path = go_quote(path);
    if let Some(alternatives) = schema.get("anyOf").and_then(Value::as_array).filter(|a| !a.is_empty()) {
        let results: Vec<Vec<Cause>> = alternatives.iter().map(|alt| collect(alt, value, path)).collect();
        if !results.iter().any(Vec::is_empty) {
            errors.push(unattributed(&format!("{quoted_path} must validate at least one schema (anyOf)")));
            errors.extend(results.into_iter().next().unwrap_or_default());
        }
    }
    if let Some(alternatives) = schema.get("oneOf").and_then(Value::as_array).filter(|a| !a.is_empty()) {
        let results: Vec<Vec<Cause>> = alternatives.iter().map(|alt| collect(alt, value, path)).collect();
        let valid = results.iter().filter(|r| r.is_empty()).count();
        if valid != 1 {
            let detail =
                if valid == 0 { "Found none valid".to_string() } else { format!("Found {valid} valid alternatives") };
            errors
                .push(unattributed(&format!("{quoted_path} must validate one and only one schema (oneOf). {detail}")));
            if valid == 0 {
                errors.extend(results.into_iter().next().unwrap_or_default());
            }
        }
    }
    if let Some(alternatives) = schema.get("allOf").and_then(Value::as_array).filter(|a| !a.is_empty()) {
        let mut validated = 0;
        for alternative in alternatives {
            let result = collect(alternative, value, path);
            validated += result.is_empty() as usize;
            errors.extend(result);
        }
        if validated != alternatives.len() {
            let detail = if validated == 0 { ". None validated" } else { "" };
            errors.push(unattributed(&format!("{quoted_path} must validate all the schemas (allOf){detail}")));
        }
    }
    if let Some(not) = schema.get("not").filter(|n| n.is_object()) {
        if collect(not, value, path).is_empty() {
            errors.push(unattributed(&format!("{quoted_path} must not validate the schema (not)")));
        }
    }
}

fn collect(schema: &Value, value: &Value, path: &str) -> Vec<Cause> {
    let mut errors = Vec::new();
    validate_node(schema, value, path, &mut errors);
    errors
}

fn validate_string(schema: &Value, text: &str, path: &str, errors: &mut Vec<Cause>) {
    let length = text.chars().count() as i64;
    if let Some(max) = schema.get("maxLength").and_then(Value::as_i64) {
        if length > max {
            errors.push(too_long(&error_field(path), max));
            return;
        }
    }
    if let Some(min) = schema.get("minLength").and_then(Value::as_i64) {
        if length < min {
            let detail = format!("{} in body should be at least {min} chars long", path);
            errors.push(invalid(&error_field(path), &go_quote(text), &detail));
            return;
        }
    }
    if let Some(pattern) = str_at(schema, "pattern").filter(|p| !p.is_empty()) {
        let matched = match regex::Regex::new(pattern) {
            Ok(re) => re.is_match(text),
            Err(_) => false,
        };
        if !matched {
            let detail = format!("{} in body should match '{pattern}'", path);
            errors.push(invalid(&error_field(path), &go_quote(text), &detail));
        }
    }
}

fn validate_number(schema: &Value, types: &[&str], value: Number, path: &str, errors: &mut Vec<Cause>) {
    // Only a single-typed integer schema checks that the value is an int64.
    if types == ["integer"] {
        if let Number::Float(f) = value {
            if f.fract() != 0.0 || !f.is_finite() || f.abs() >= 9.223_372_036_854_776e18 {
                errors.push(unattributed(&format!("Checked value must be of type integer (default format) in {path}")));
            }
        }
    }
    let rendered = match value {
        Number::Int(i) => i.to_string(),
        Number::Float(f) => go_float(f),
    };
    let bound = |bound: f64| match value {
        Number::Int(_) => (bound as i64).to_string(),
        Number::Float(_) => go_float(bound),
    };
    let as_float = match value {
        Number::Int(i) => i as f64,
        Number::Float(f) => f,
    };
    if let Some(factor) = schema.get("multipleOf").and_then(Value::as_f64) {
        let not_multiple = match value {
            Number::Int(i) if factor >= 1.0 && factor.fract() == 0.0 => i % (factor as i64) != 0,
            _ if factor <= 0.0 => true,
            _ => {
                let quotient = if factor < 1.0 { 1.0 / factor * as_float } else { as_float / factor };
                quotient.fract() != 0.0
            }
        };
        if not_multiple {
            let detail = format!("{} in body should be a multiple of {}", path, bound(factor));
            errors.push(invalid(&error_field(path), &rendered, &detail));
        }
    }
    if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
        let exclusive = flag(schema, "exclusiveMinimum");
        let below = match value {
            Number::Int(i) => (!exclusive && i < min as i64) || (exclusive && i <= min as i64),
            Number::Float(f) => (!exclusive && f < min) || (exclusive && f <= min),
        };
        if below {
            let relation = if exclusive { "greater than" } else { "greater than or equal to" };
            let detail = format!("{} in body should be {relation} {}", path, bound(min));
            errors.push(invalid(&error_field(path), &rendered, &detail));
        }
    }
    if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
        let exclusive = flag(schema, "exclusiveMaximum");
        let above = match value {
            Number::Int(i) => (!exclusive && i > max as i64) || (exclusive && i >= max as i64),
            Number::Float(f) => (!exclusive && f > max) || (exclusive && f >= max),
        };
        if above {
            let relation = if exclusive { "less than" } else { "less than or equal to" };
            let detail = format!("{} in body should be {relation} {}", path, bound(max));
            errors.push(invalid(&error_field(path), &rendered, &detail));
        }
    }
}

fn validate_array(schema: &Value, items: &[Value], path: &str, errors: &mut Vec<Cause>) {
    if let Some(item_schema) = schema.get("items").filter(|i| i.is_object()) {
        for (i, item) in items.iter().enumerate() {
            validate_node(item_schema, item, &format!("{path}[{i}]"), errors);
        }
    }
    let size = items.len() as i64;
    if let Some(min) = schema.get("minItems").and_then(Value::as_i64) {
        if size < min {
            let detail = format!("{} in body should have at least {min} items", path);
            errors.push(invalid(&error_field(path), &size.to_string(), &detail));
        }
    }
    if let Some(max) = schema.get("maxItems").and_then(Value::as_i64) {
        if size > max {
            errors.push(too_many(&error_field(path), size, max));
        }
    }
    if flag(schema, "uniqueItems") && items.iter().enumerate().any(|(i, item)| items[..i].contains(item)) {
        let detail = format!("{} in body shouldn't contain duplicates", path);
        errors.push(invalid(&error_field(path), "\"\"", &detail));
    }
}

fn validate_object(schema: &Value, map: &Map<String, Value>, path: &str, errors: &mut Vec<Cause>) {
    let size = map.len() as i64;
    if let Some(min) = schema.get("minProperties").and_then(Value::as_i64) {
        if size < min {
            let detail = format!("{} in body should have at least {min} properties", path);
            errors.push(invalid(&error_field(path), &size.to_string(), &detail));
        }
    }
    if let Some(max) = schema.get("maxProperties").and_then(Value::as_i64) {
        if size > max {
            errors.push(too_many(&error_field(path), size, max));
        }
    }
    let properties = schema.get("properties").and_then(Value::as_object);
    match schema.get("additionalProperties") {
        Some(Value::Bool(false)) => {
            for key in map.keys().filter(|k| properties.is_none_or(|p| !p.contains_key(*k))) {
                let detail = format!("{path}.{key} in body is a forbidden property");
                errors.push(invalid(&error_field(path), &go_quote(key), &detail));
            }
        }
        Some(additional @ Value::Object(_)) => {
            for (key, child) in map.iter().filter(|(k, _)| properties.is_none_or(|p| !p.contains_key(*k))) {
                validate_node(additional, child, &format!("{path}.{key}"), errors);
            }
        }
        _ => {}
    }
    if let Some(properties) = properties {
        for (key, property) in properties {
            if let Some(child) = map.get(key) {
                validate_node(property, child, &join(path, key), errors);
            }
        }
    }
    if let Some(required_keys) = schema.get("required").and_then(Value::as_array) {
        for key in required_keys.iter().filter_map(Value::as_str) {
            if !map.contains_key(key) {
                errors.push(required(&join(path, key), ""));
            }
        }
    }
}

/// Upstream compares enum members after converting the value to the member's Go type, so 1 matches 1.0.
fn enum_matches(value: &Value, option: &Value) -> bool {
    match (value, option) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        _ => value == option,
    }
}

fn enum_error(path: &str, value: &Value, options: &[Value]) -> Cause {
    let supported: Vec<String> = options
        .iter()
        .map(|option| match option {
            Value::String(s) => s.clone(),
            other => render_json(other),
        })
        .collect();
    let supported: Vec<&str> = supported.iter().map(String::as_str).collect();
    not_supported(&error_field(path), &render_value(value), &supported)
}

/// Whether a string has the given (normalized, dashless) format. Formats not checked here pass.
fn format_matches(format: &str, text: &str) -> bool {
    match format {
        "datetime" => is_date_time(text),
        "date" => is_date(text),
        "uuid" => is_uuid(text, None),
        "uuid3" => is_uuid(text, Some('3')),
        "uuid4" => is_uuid(text, Some('4')),
        "uuid5" => is_uuid(text, Some('5')),
        "ipv4" => text.parse::<std::net::Ipv4Addr>().is_ok(),
        "ipv6" => text.contains(':') && text.parse::<std::net::Ipv6Addr>().is_ok(),
        "cidr" => is_cidr(text),
        "mac" => is_mac(text),
        "hostname" => is_hostname(text),
        "byte" => {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.decode(text).is_ok()
        }
        "bsonobjectid" => text.len() == 24 && text.bytes().all(|b| b.is_ascii_hexdigit()),
        "hexcolor" => {
            let hex = text.strip_prefix('#').unwrap_or(text);
            (hex.len() == 3 || hex.len() == 6) && hex.bytes().all(|b| b.is_ascii_hexdigit())
        }
        _ => true,
    }
}

fn digits(text: &str, count: usize) -> bool {
    text.len() == count && text.bytes().all(|b| b.is_ascii_digit())
}

fn is_date(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    if parts.len() != 3 || !digits(parts[0], 4) || !digits(parts[1], 2) || !digits(parts[2], 2) {
        return false;
    }
    let month: u32 = parts[1].parse().unwrap_or(0);
    let day: u32 = parts[2].parse().unwrap_or(0);
    (1..=12).contains(&month) && (1..=31).contains(&day)
}

/// RFC 3339 date-time, with `T`, `t` or a space between date and time, optional fraction, and `Z` or an offset.
fn is_date_time(text: &str) -> bool {
    if text.len() < 20 || !text.is_char_boundary(10) || !is_date(&text[..10]) {
        return false;
    }
    if !matches!(text.as_bytes()[10], b'T' | b't' | b' ') {
        return false;
    }
    let time = &text[11..];
    let bytes = time.as_bytes();
    if bytes.len() < 9 || bytes[2] != b':' || bytes[5] != b':' {
        return false;
    }
    if !digits(&time[..2], 2) || !digits(&time[3..5], 2) || !digits(&time[6..8], 2) {
        return false;
    }
    let mut rest = &time[8..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let end = fraction.find(|c: char| !c.is_ascii_digit()).unwrap_or(fraction.len());
        if end == 0 {
            return false;
        }
        rest = &fraction[end..];
    }
    match rest {
        "Z" | "z" => true,
        offset => {
            let b = offset.as_bytes();
            b.len() == 6
                && matches!(b[0], b'+' | b'-')
                && b[3] == b':'
                && digits(&offset[1..3], 2)
                && digits(&offset[4..6], 2)
        }
    }
}

fn is_uuid(text: &str, version: Option<char>) -> bool {
    let compact: String = text.chars().filter(|c| *c != '-').collect();
    if compact.len() != 32 || !compact.chars().all(|c| c.is_ascii_hexdigit()) {
        return false;
    }
    let groups: Vec<&str> = text.split('-').collect();
    if groups.len() != 1 && groups.iter().map(|g| g.len()).collect::<Vec<_>>() != [8, 4, 4, 4, 12] {
        return false;
    }
    match version {
        None => true,
        Some(v) => {
            let variant_ok = version == Some('3')
                || matches!(compact.as_bytes()[16].to_ascii_lowercase(), b'8' | b'9' | b'a' | b'b');
            compact.as_bytes()[12] as char == v && variant_ok
        }
    }
}

fn is_cidr(text: &str) -> bool {
    let Some((ip, prefix)) = text.split_once('/') else { return false };
    let Ok(prefix) = prefix.parse::<u8>() else { return false };
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => prefix <= 32,
        Ok(std::net::IpAddr::V6(_)) => prefix <= 128,
        Err(_) => false,
    }
}

fn is_mac(text: &str) -> bool {
    let groups: Vec<&str> = text.split([':', '-']).collect();
    matches!(groups.len(), 6 | 8 | 20)
        && groups.iter().all(|g| g.len() == 2 && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn is_hostname(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 255
        && text.trim_end_matches('.').split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GROUP: &str = "k8s-openapi-tests-custom-resource-definition.com";

    /// The CRD a real v1.33 cluster was given in the recorded conformance run, as it was posted.
    fn foobar_crd() -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": format!("foobars.{GROUP}")},
            "spec": {
                "group": GROUP,
                "names": {"kind": "FooBar", "plural": "foobars", "shortNames": ["fb"], "singular": "foobar"},
                "scope": "Namespaced",
                "versions": [{
                    "name": "v1",
                    "schema": {"openAPIV3Schema": {
                        "properties": {"spec": {
                            "properties": {
                                "prop1": {"type": "string"},
                                "prop2": {"items": {"type": "boolean"}, "type": "array"},
                                "prop3": {"format": "int32", "type": "integer"},
                                "prop4": {"x-kubernetes-int-or-string": true},
                                "prop5": {"x-kubernetes-int-or-string": true}
                            },
                            "required": ["prop1", "prop2", "prop4", "prop5"],
                            "type": "object"
                        }},
                        "type": "object"
                    }},
                    "served": true,
                    "storage": true,
                    "subresources": {"status": {}}
                }]
            }
        })
    }

    fn foobar_schema() -> Value {
        version_schema(&foobar_crd(), "v1").expect("v1 has a schema")
    }

    fn foobar(name: &str, spec: Value) -> Value {
        json!({"apiVersion": format!("{GROUP}/v1"), "kind": "FooBar", "metadata": {"name": name}, "spec": spec})
    }

    fn texts(causes: &[Cause]) -> Vec<String> {
        causes.iter().map(|c| format!("{} {}: {}", c.reason, c.field, c.message)).collect()
    }

    /// A CronTab-style CRD with two served versions, one unserved, scale, columns and defaults.
    fn crontab_crd() -> Value {
        let schema = json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "properties": {
                        "cronSpec": {"type": "string", "pattern": "^(\\d+|\\*)(/\\d+)?(\\s+(\\d+|\\*)(/\\d+)?){4}$"},
                        "image": {"type": "string", "default": "busybox"},
                        "replicas": {"type": "integer", "minimum": 1, "maximum": 10, "default": 1},
                        "policy": {"type": "string", "enum": ["Allow", "Forbid"]},
                        "schedule": {
                            "type": "object",
                            "default": {},
                            "properties": {"timeZone": {"type": "string", "default": "UTC"}}
                        },
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        "tags": {"type": "array", "maxItems": 2, "items": {"type": "string", "maxLength": 5}}
                    }
                },
                "status": {"type": "object", "properties": {"replicas": {"type": "integer"}, "selector": {"type": "string"}}}
            }
        });
        json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "crontabs.stable.example.com"},
            "spec": {
                "group": "stable.example.com",
                "scope": "Namespaced",
                "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab", "shortNames": ["ct"],
                          "categories": ["all"]},
                "versions": [
                    {"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": schema},
                     "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas",
                        "statusReplicasPath": ".status.replicas", "labelSelectorPath": ".status.selector"}},
                     "additionalPrinterColumns": [
                        {"name": "Spec", "type": "string", "jsonPath": ".spec.cronSpec"},
                        {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"}]},
                    {"name": "v1beta1", "served": true, "storage": false, "schema": {"openAPIV3Schema": schema}},
                    {"name": "v1alpha1", "served": false, "storage": false, "schema": {"openAPIV3Schema": schema}}
                ]
            }
        })
    }

    #[test]
    fn an_update_is_not_refused_for_a_top_level_field_it_left_alone() {
        let schema = json!({"type": "object", "properties": {
            "spec": {"type": "object", "required": ["replicas"], "properties": {"replicas": {"type": "integer"}}},
            "status": {"type": "object", "required": ["phase"], "properties": {"phase": {"type": "string"}}},
        }});
        let stored = json!({"metadata": {"name": "w"}, "spec": {"replicas": 1}, "status": {"ready": true}});
        assert_eq!(texts(&validate(&schema, &stored)), ["FieldValueRequired status.phase: Required value"]);
        let respecced = json!({"metadata": {"name": "w"}, "spec": {"replicas": 2}, "status": {"ready": true}});
        assert_eq!(validate_update(&schema, &respecced, &stored), vec![], "the stored status stands");
        let broken = json!({"metadata": {"name": "w"}, "spec": {}, "status": {"ready": true}});
        assert_eq!(
            texts(&validate_update(&schema, &broken, &stored)),
            ["FieldValueRequired spec.replicas: Required value"],
            "what the update changed is validated"
        );
        let restatused = json!({"metadata": {"name": "w"}, "spec": {"replicas": 1}, "status": {"ready": false}});
        assert_eq!(
            texts(&validate_update(&schema, &restatused, &stored)),
            ["FieldValueRequired status.phase: Required value"]
        );
    }

    #[test]
    fn one_resource_per_served_version() {
        let defs = resource_defs(&foobar_crd()).unwrap();
        assert_eq!(defs.len(), 1);
        let def = &defs[0];
        assert_eq!((def.group.as_str(), def.version.as_str(), def.kind.as_str()), (GROUP, "v1", "FooBar"));
        assert_eq!((def.plural.as_str(), def.singular.as_str()), ("foobars", "foobar"));
        assert!(def.namespaced);
        assert_eq!(def.short_names, ["fb"]);
        assert!(def.status);
        assert_eq!(def.scale, None);
        assert_eq!(def.verbs.len(), 8);
        assert_eq!(def.schema, SchemaSource::CustomResource(format!("foobars.{GROUP}")));

        let defs = resource_defs(&crontab_crd()).unwrap();
        let versions: Vec<&str> = defs.iter().map(|d| d.version.as_str()).collect();
        assert_eq!(versions, ["v1", "v1beta1"]);
        assert_eq!(defs[0].categories, ["all"]);
        assert_eq!(
            defs[0].scale,
            Some(ScalePaths {
                spec_replicas: "spec.replicas".into(),
                status_replicas: "status.replicas".into(),
                label_selector: Some("status.selector".into()),
            })
        );
        assert!(!defs[1].status);
        assert_eq!(storage_version(&crontab_crd()).as_deref(), Some("v1"));
    }

    #[test]
    fn resource_defs_refuse_a_crd_without_names_or_scope() {
        let mut crd = foobar_crd();
        crd["spec"]["names"].as_object_mut().unwrap().remove("plural");
        assert_eq!(resource_defs(&crd), Err(CrdError::MissingField("spec.names.plural")));
        let mut crd = foobar_crd();
        crd["spec"]["scope"] = json!("Galaxy");
        assert_eq!(resource_defs(&crd), Err(CrdError::UnknownScope("Galaxy".into())));
    }

    #[test]
    fn defaults_match_what_the_cluster_stored() {
        let mut crd = foobar_crd();
        default_definition(&mut crd);
        assert_eq!(
            crd["spec"]["names"],
            json!({"plural": "foobars", "singular": "foobar", "shortNames": ["fb"], "kind": "FooBar",
                   "listKind": "FooBarList"})
        );
        assert_eq!(crd["spec"]["conversion"], json!({"strategy": "None"}));
    }

    #[test]
    fn accepted_crds_validate_clean() {
        for crd in [foobar_crd(), crontab_crd()] {
            let mut crd = crd;
            default_definition(&mut crd);
            assert_eq!(texts(&validate_definition(&crd)), Vec::<String>::new());
        }
    }

    fn definition_errors(edit: impl FnOnce(&mut Value)) -> Vec<String> {
        let mut crd = foobar_crd();
        default_definition(&mut crd);
        edit(&mut crd);
        texts(&validate_definition(&crd))
    }

    #[test]
    fn crd_names_and_group_are_checked() {
        assert_eq!(
            definition_errors(|crd| crd["metadata"]["name"] = json!(format!("foos.{GROUP}"))),
            [format!(
                r#"FieldValueInvalid metadata.name: Invalid value: "foos.{GROUP}": must be spec.names.plural+"."+spec.group"#
            )]
        );
        assert_eq!(
            definition_errors(|crd| {
                crd["metadata"]["name"] = json!("foobars.example");
                crd["spec"]["group"] = json!("example");
            }),
            [r#"FieldValueInvalid spec.group: Invalid value: "example": should be a domain with at least one dot"#]
        );
        let errors = definition_errors(|crd| crd["spec"]["names"]["shortNames"] = json!(["Fb"]));
        assert_eq!(
            errors,
            [format!(r#"FieldValueInvalid spec.names.shortNames[0]: Invalid value: "Fb": {DNS1035_LABEL_MESSAGE}"#)]
        );
        assert_eq!(
            definition_errors(|crd| crd["spec"]["scope"] = json!("Global")),
            [
                r#"FieldValueNotSupported spec.scope: Unsupported value: "Global": supported values: "Cluster", "Namespaced""#
            ]
        );
    }

    #[test]
    fn exactly_one_storage_version() {
        let errors = definition_errors(|crd| crd["spec"]["versions"][0]["storage"] = json!(false));
        assert_eq!(errors.len(), 2);
        assert!(errors[0].starts_with("FieldValueInvalid spec.versions: Invalid value: [{"), "{errors:?}");
        assert!(errors[0].ends_with(": must have exactly one version marked as storage version"));
        assert_eq!(
            errors[1],
            "FieldValueInvalid status.storedVersions: Invalid value: null: must have at least one stored version"
        );
    }

    #[test]
    fn schemas_must_be_structural() {
        // One version: upstream reports the schema as the spec-wide one.
        let errors = definition_errors(|crd| {
            crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].as_object_mut().unwrap().remove("type");
        });
        assert_eq!(
            errors,
            ["FieldValueRequired spec.validation.openAPIV3Schema.type: Required value: must not be empty at the root"]
        );
        let errors = definition_errors(|crd| {
            let spec = &mut crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
            spec["properties"]["prop1"] = json!({"description": "no type"});
            spec["additionalProperties"] = json!({"type": "string"});
        });
        assert_eq!(
            errors,
            [
                "FieldValueRequired spec.validation.openAPIV3Schema.properties[spec].properties[prop1].type: Required \
                 value: must not be empty for specified object fields",
                "FieldValueForbidden spec.validation.openAPIV3Schema.properties[spec].additionalProperties: Forbidden: \
                 additionalProperties and properties are mutual exclusive",
            ]
        );
        let errors = definition_errors(|crd| {
            crd["spec"]["versions"][0].as_object_mut().unwrap().remove("schema").map(|_| ()).unwrap()
        });
        assert_eq!(
            errors,
            ["FieldValueRequired spec.versions[0].schema.openAPIV3Schema: Required value: schemas are required"]
        );
    }

    #[test]
    fn differing_versions_report_under_their_index() {
        let mut crd = crontab_crd();
        default_definition(&mut crd);
        crd["spec"]["versions"][1]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["tags"] =
            json!({"type": "array"});
        crd["spec"]["versions"][1]["schema"]["openAPIV3Schema"]["type"] = json!("string");
        assert_eq!(
            texts(&validate_definition(&crd)),
            // Upstream sorts structural errors by their text.
            [
                "FieldValueRequired spec.versions[1].schema.openAPIV3Schema.properties[spec].properties[tags].items: \
                 Required value: must be specified",
                r#"FieldValueInvalid spec.versions[1].schema.openAPIV3Schema.type: Invalid value: "string": must be object at the root"#,
            ]
        );
    }

    #[test]
    fn printer_columns_and_scale_paths_are_checked() {
        let mut crd = crontab_crd();
        default_definition(&mut crd);
        crd["spec"]["versions"][0]["additionalPrinterColumns"] = json!([
            {"name": "Spec", "type": "text", "jsonPath": "spec.cronSpec"},
            {"name": "Bad", "type": "string", "jsonPath": ".spec[?(@.x=="}
        ]);
        crd["spec"]["versions"][0]["subresources"]["scale"]["specReplicasPath"] = json!(".status.replicas");
        let errors = texts(&validate_definition(&crd));
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert_eq!(
            errors[0],
            r#"FieldValueInvalid spec.versions[0].subresources.scale.specReplicasPath: Invalid value: ".status.replicas": should be a json path under .spec"#
        );
        assert_eq!(
            errors[1],
            r#"FieldValueInvalid spec.versions[0].additionalPrinterColumns[0].type: Invalid value: "text": must be one of boolean,date,integer,number,string"#
        );
        assert_eq!(
            errors[2],
            r#"FieldValueInvalid spec.versions[0].additionalPrinterColumns[0].JSONPath: Invalid value: "spec.cronSpec": must be a simple json path starting with ."#
        );
        assert!(errors[3].starts_with("FieldValueInvalid spec.versions[0].additionalPrinterColumns[1].JSONPath:"));
    }

    #[test]
    fn established_status_matches_the_cluster() {
        let mut crd = foobar_crd();
        default_definition(&mut crd);
        let now = "2026-06-15T04:15:57Z";
        assert_eq!(
            established_status(&crd, now),
            json!({
                "conditions": [
                    {"type": "NamesAccepted", "status": "True", "lastTransitionTime": now, "reason": "NoConflicts",
                     "message": "no conflicts found"},
                    {"type": "Established", "status": "True", "lastTransitionTime": now,
                     "reason": "InitialNamesAccepted", "message": "the initial names have been accepted"}
                ],
                "acceptedNames": {"plural": "foobars", "singular": "foobar", "shortNames": ["fb"], "kind": "FooBar",
                                  "listKind": "FooBarList"},
                "storedVersions": ["v1"]
            })
        );
        crd["status"] = json!({"storedVersions": ["v1beta1"]});
        assert_eq!(established_status(&crd, now)["storedVersions"], json!(["v1beta1", "v1"]));
    }

    #[test]
    fn recorded_custom_resources_are_valid() {
        let schema = foobar_schema();
        let fb1 = foobar("fb1", json!({"prop1": "value1", "prop2": [true, false, true], "prop4": 6, "prop5": "7"}));
        let fb2 = foobar(
            "fb2",
            json!({"prop1": "value1", "prop2": [true, false, true], "prop3": 5, "prop4": "value4", "prop5": "7G"}),
        );
        for object in [fb1, fb2] {
            let mut pruned = object.clone();
            prune(&schema, &mut pruned);
            apply_defaults(&schema, &mut pruned);
            assert_eq!(pruned, object);
            assert_eq!(validate(&schema, &object), []);
        }
    }

    /// The three 422 responses of the recorded run, cause for cause.
    #[test]
    fn recorded_rejections_are_reproduced() {
        let schema = foobar_schema();
        let cases = [
            (
                json!({"prop1": "value1", "prop4": "value4", "prop5": "7G"}),
                ("FieldValueRequired", "Required value", "spec.prop2"),
            ),
            (
                json!({"prop1": "value1", "prop2": true, "prop4": "value4", "prop5": "7G"}),
                (
                    "FieldValueTypeInvalid",
                    r#"Invalid value: "boolean": spec.prop2 in body must be of type array: "boolean""#,
                    "spec.prop2",
                ),
            ),
            (
                json!({"prop1": "value1", "prop2": [true], "prop4": true, "prop5": "7G"}),
                (
                    "FieldValueTypeInvalid",
                    r#"Invalid value: "boolean": spec.prop4 in body must be of type integer,string: "boolean""#,
                    "spec.prop4",
                ),
            ),
        ];
        for (spec, (reason, message, field)) in cases {
            let causes = validate(&schema, &foobar("fb3", spec));
            assert_eq!(causes, [Cause { reason: reason.into(), message: message.into(), field: field.into() }]);
        }
        // The Status message a client sees is built from the cause as for built-in kinds.
        let causes = validate(&schema, &foobar("fb3", json!({"prop1": "value1", "prop4": "value4", "prop5": "7G"})));
        let message = format!("FooBar.{GROUP} \"fb3\" is invalid: {}: {}", causes[0].field, causes[0].message);
        assert_eq!(message, format!("FooBar.{GROUP} \"fb3\" is invalid: spec.prop2: Required value"));
    }

    #[test]
    fn prune_drops_unknown_fields_and_keeps_meta() {
        let schema = version_schema(&crontab_crd(), "v1").unwrap();
        let mut object = json!({
            "apiVersion": "stable.example.com/v1",
            "kind": "CronTab",
            "metadata": {"name": "a", "labels": {"x": "y"}, "bogus": 1},
            "spec": {
                "cronSpec": "* * * * */5",
                "unknown": {"deep": true},
                "labels": {"free": "form"},
                "extra": {"anything": {"goes": [1, 2]}},
                "tags": ["a"]
            },
            "top": 1
        });
        assert_eq!(unknown_fields(&schema, &object), ["metadata.bogus", "spec.unknown", "top"]);
        prune(&schema, &mut object);
        assert_eq!(
            object,
            json!({
                "apiVersion": "stable.example.com/v1",
                "kind": "CronTab",
                "metadata": {"name": "a", "labels": {"x": "y"}},
                "spec": {
                    "cronSpec": "* * * * */5",
                    "labels": {"free": "form"},
                    "extra": {"anything": {"goes": [1, 2]}},
                    "tags": ["a"]
                }
            })
        );
    }

    #[test]
    fn prune_inside_arrays_and_nulls() {
        let schema = json!({"type": "object", "properties": {"list": {"type": "array", "items": {
            "type": "object", "properties": {"a": {"type": "string"}, "n": {"type": "string", "nullable": true}}}}}});
        let mut object = json!({"list": [{"a": "x", "b": "y"}, {"a": null, "n": null}]});
        assert_eq!(unknown_fields(&schema, &object), ["list[0].b"]);
        prune(&schema, &mut object);
        assert_eq!(object, json!({"list": [{"a": "x"}, {"n": null}]}));
    }

    #[test]
    fn defaults_fill_missing_fields_recursively() {
        let schema = version_schema(&crontab_crd(), "v1").unwrap();
        let mut object = json!({"apiVersion": "stable.example.com/v1", "kind": "CronTab", "metadata": {"name": "a"},
                                "spec": {"cronSpec": "* * * * *", "replicas": 3}});
        apply_defaults(&schema, &mut object);
        assert_eq!(
            object["spec"],
            json!({"cronSpec": "* * * * *", "replicas": 3, "image": "busybox", "schedule": {"timeZone": "UTC"}})
        );
        // No spec at all: nothing to default into (spec itself has no default).
        let mut bare = json!({"metadata": {"name": "b"}});
        apply_defaults(&schema, &mut bare);
        assert_eq!(bare, json!({"metadata": {"name": "b"}}));
    }

    fn crontab_errors(spec: Value) -> Vec<String> {
        let schema = version_schema(&crontab_crd(), "v1").unwrap();
        texts(&validate(
            &schema,
            &json!({"apiVersion": "stable.example.com/v1", "kind": "CronTab",
                                          "metadata": {"name": "a"}, "spec": spec}),
        ))
    }

    #[test]
    fn value_validations_read_as_upstream() {
        assert_eq!(
            crontab_errors(json!({"policy": "Maybe"})),
            [r#"FieldValueNotSupported spec.policy: Unsupported value: "Maybe": supported values: "Allow", "Forbid""#]
        );
        assert_eq!(
            crontab_errors(json!({"replicas": 0})),
            ["FieldValueInvalid spec.replicas: Invalid value: 0: spec.replicas in body should be greater than or equal to 1"]
        );
        assert_eq!(
            crontab_errors(json!({"replicas": 11})),
            ["FieldValueInvalid spec.replicas: Invalid value: 11: spec.replicas in body should be less than or equal to 10"]
        );
        assert_eq!(
            crontab_errors(json!({"cronSpec": "often"})),
            [
                r#"FieldValueInvalid spec.cronSpec: Invalid value: "often": spec.cronSpec in body should match '^(\d+|\*)(/\d+)?(\s+(\d+|\*)(/\d+)?){4}$'"#
            ]
        );
        assert_eq!(
            crontab_errors(json!({"tags": ["a", "b", "toolong"]})),
            [
                "FieldValueTooLong spec.tags[2]: Too long: may not be more than 5 bytes",
                "FieldValueTooMany spec.tags: Too many: 3: must have at most 2 items",
            ]
        );
        assert_eq!(
            crontab_errors(json!({"labels": {"a": 1}})),
            [
                r#"FieldValueTypeInvalid spec.labels.a: Invalid value: "integer": spec.labels.a in body must be of type string: "integer""#
            ]
        );
        assert_eq!(
            crontab_errors(json!({"replicas": 2.5})),
            [
                r#"FieldValueTypeInvalid spec.replicas: Invalid value: "number": spec.replicas in body must be of type integer: "number""#,
                r#"FieldValueInvalid <nil>: Invalid value: "": Checked value must be of type integer (default format) in spec.replicas"#,
            ]
        );
        assert_eq!(crontab_errors(json!({"replicas": 2.0})), Vec::<String>::new());
    }

    #[test]
    fn formats_nullable_and_int_or_string() {
        let schema = json!({"type": "object", "properties": {
            "at": {"type": "string", "format": "date-time"},
            "day": {"type": "string", "format": "date"},
            "small": {"type": "integer", "format": "int32"},
            "maybe": {"type": "string", "nullable": true},
            "never": {"type": "string"},
            "port": {"x-kubernetes-int-or-string": true},
            "name": {"type": "string", "minLength": 2}
        }});
        let ok = json!({"at": "2026-06-15T04:15:57Z", "day": "2026-06-15", "small": 4_294_967_296_i64,
                        "maybe": null, "port": "http", "name": "ab"});
        // Upstream strips int32 from CRD schemas: no range check.
        assert_eq!(validate(&schema, &ok), []);
        let bad = json!({"at": "yesterday", "day": "2026-13-01", "never": null, "port": 1.5, "name": "a"});
        assert_eq!(
            texts(&validate(&schema, &bad)),
            [
                r#"FieldValueTypeInvalid at: Invalid value: "yesterday": at in body must be of type date-time: "yesterday""#,
                r#"FieldValueTypeInvalid day: Invalid value: "2026-13-01": day in body must be of type date: "2026-13-01""#,
                r#"FieldValueInvalid name: Invalid value: "a": name in body should be at least 2 chars long"#,
                r#"FieldValueTypeInvalid never: Invalid value: "null": never in body must be of type string: "null""#,
                r#"FieldValueTypeInvalid port: Invalid value: "number": port in body must be of type integer,string: "number""#,
            ]
        );
    }

    #[test]
    fn printer_columns_and_schema_by_version() {
        let crd = crontab_crd();
        let columns = printer_columns(&crd, "v1").unwrap();
        assert_eq!(columns[0]["jsonPath"], ".spec.cronSpec");
        assert_eq!(printer_columns(&crd, "v1beta1"), None);
        assert_eq!(printer_columns(&crd, "v9"), None);
        assert!(version_schema(&crd, "v1alpha1").is_some());
        assert_eq!(version_schema(&crd, "v9"), None);
    }

    #[test]
    fn go_number_rendering() {
        assert_eq!(go_float(2.5), "2.5");
        assert_eq!(go_float(3.0), "3");
        assert_eq!(go_float(1e21), "1e+21");
        assert_eq!(go_float(0.00001), "1e-05");
    }
}
