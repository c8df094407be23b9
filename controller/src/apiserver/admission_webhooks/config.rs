//! ValidatingWebhookConfiguration and MutatingWebhookConfiguration (admissionregistration.k8s.io/v1): upstream's
//! defaults and write-time validation, and the parsed form the dispatcher keeps in its cache.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::apiserver::selector::LabelSelector;
use crate::apiserver::validation::FieldError;

/// Upstream's default and largest `timeoutSeconds`.
pub const DEFAULT_TIMEOUT_SECONDS: i64 = 10;
const MAX_TIMEOUT_SECONDS: i64 = 30;
/// The AdmissionReview versions kaasd can send, in the order it prefers them.
const REVIEW_VERSIONS: [&str; 2] = ["v1", "v1beta1"];
const OPERATIONS: [&str; 5] = ["*", "CREATE", "UPDATE", "DELETE", "CONNECT"];

/// Whether `kind` is one of the two webhook configuration kinds.
pub fn is_webhook_configuration(group: &str, kind: &str) -> bool {
    group == "admissionregistration.k8s.io"
        && (kind == "ValidatingWebhookConfiguration" || kind == "MutatingWebhookConfiguration")
}

/// Fills in upstream's v1 defaults of every webhook of a configuration.
pub fn apply_defaults(kind: &str, object: &mut Value) {
    let mutating = kind == "MutatingWebhookConfiguration";
    let Some(webhooks) = object.get_mut("webhooks").and_then(Value::as_array_mut) else { return };
    for webhook in webhooks.iter_mut().filter_map(Value::as_object_mut) {
        default(webhook, "failurePolicy", json!("Fail"));
        default(webhook, "matchPolicy", json!("Equivalent"));
        default(webhook, "namespaceSelector", json!({}));
        default(webhook, "objectSelector", json!({}));
        default(webhook, "timeoutSeconds", json!(DEFAULT_TIMEOUT_SECONDS));
        if mutating {
            default(webhook, "reinvocationPolicy", json!("Never"));
        }
        if let Some(service) = webhook.get_mut("clientConfig").and_then(|c| c.get_mut("service")) {
            if let Some(service) = service.as_object_mut() {
                default(service, "port", json!(443));
            }
        }
        for rule in webhook.get_mut("rules").and_then(Value::as_array_mut).into_iter().flatten() {
            if let Some(rule) = rule.as_object_mut() {
                default(rule, "scope", json!("*"));
            }
        }
    }
}

fn default(map: &mut Map<String, Value>, key: &str, value: Value) {
    if map.get(key).is_none_or(Value::is_null) {
        map.insert(key.to_string(), value);
    }
}

/// Upstream's validation of a webhook configuration (`ValidateValidatingWebhookConfiguration` and its mutating
/// twin, v1 rules). `old` is the stored configuration on update: side effects it already had stay allowed.
pub fn validate(kind: &str, object: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mutating = kind == "MutatingWebhookConfiguration";
    let mut errors = Vec::new();
    let old_side_effects_allowed = old
        .and_then(|old| old.get("webhooks"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|hook| matches!(hook["sideEffects"].as_str(), Some("Some" | "Unknown")));
    let mut names = std::collections::HashSet::new();
    for (index, hook) in object.get("webhooks").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let path = format!("webhooks[{index}]");
        let name = hook["name"].as_str().unwrap_or("");
        errors.extend(fully_qualified_name(&format!("{path}.name"), name));
        if !name.is_empty() && !names.insert(name.to_string()) {
            errors.push(FieldError::duplicate(format!("{path}.name"), &json!(name)));
        }
        for (rule_index, rule) in hook.get("rules").and_then(Value::as_array).into_iter().flatten().enumerate() {
            validate_rule(&format!("{path}.rules[{rule_index}]"), rule, &mut errors);
        }
        one_of(&hook["failurePolicy"], &format!("{path}.failurePolicy"), &["Fail", "Ignore"], &mut errors);
        one_of(&hook["matchPolicy"], &format!("{path}.matchPolicy"), &["Equivalent", "Exact"], &mut errors);
        let side_effects_field = format!("{path}.sideEffects");
        match &hook["sideEffects"] {
            Value::Null => {
                errors.push(FieldError::required(&side_effects_field, "must specify one of None, NoneOnDryRun"))
            }
            value => {
                let allowed: &[&str] = if old_side_effects_allowed {
                    &["None", "NoneOnDryRun", "Some", "Unknown"]
                } else {
                    &["None", "NoneOnDryRun"]
                };
                if !value.as_str().is_some_and(|text| allowed.contains(&text)) {
                    errors.push(FieldError::not_supported(&side_effects_field, value, allowed));
                }
            }
        }
        if let Some(timeout) = hook.get("timeoutSeconds").and_then(Value::as_i64) {
            if !(1..=MAX_TIMEOUT_SECONDS).contains(&timeout) {
                errors.push(FieldError::invalid(
                    format!("{path}.timeoutSeconds"),
                    &json!(timeout),
                    "the timeout value must be between 1 and 30 seconds",
                ));
            }
        }
        validate_review_versions(&format!("{path}.admissionReviewVersions"), hook, &mut errors);
        for selector in ["namespaceSelector", "objectSelector"] {
            if let Some(value) = hook.get(selector).filter(|value| !value.is_null()) {
                if let Err(error) = LabelSelector::from_label_selector(value) {
                    errors.push(FieldError::invalid(format!("{path}.{selector}"), value, &error.to_string()));
                }
            }
        }
        if mutating {
            one_of(
                &hook["reinvocationPolicy"],
                &format!("{path}.reinvocationPolicy"),
                &["Never", "IfNeeded"],
                &mut errors,
            );
        }
        validate_client_config(&format!("{path}.clientConfig"), &hook["clientConfig"], &mut errors);
        validate_match_conditions(&format!("{path}.matchConditions"), hook, &mut errors);
    }
    errors
}

/// A string list as Go's `%#v` prints it in field errors: `[]string{"a", "b"}`.
fn go_strings(list: &[String]) -> String {
    let quoted: Vec<String> = list.iter().map(|item| crate::apiserver::validation::go_quote(item)).collect();
    format!("[]string{{{}}}", quoted.join(", "))
}

/// A value that, when set, must be one of `supported`.
fn one_of(value: &Value, field: &str, supported: &[&str], errors: &mut Vec<FieldError>) {
    if value.is_null() {
        return;
    }
    if !value.as_str().is_some_and(|text| supported.contains(&text)) {
        errors.push(FieldError::not_supported(field, value, supported));
    }
}

/// Upstream's `IsFullyQualifiedName`: a DNS subdomain of at least three segments.
fn fully_qualified_name(field: &str, name: &str) -> Vec<FieldError> {
    if name.is_empty() {
        return vec![FieldError::required(field, "")];
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    let messages = crate::apiserver::validation::dns1123_subdomain(name);
    if !messages.is_empty() {
        return vec![FieldError::invalid(field, &json!(name), &messages.join(","))];
    }
    if name.split('.').count() < 3 {
        return vec![FieldError::invalid(
            field,
            &json!(name),
            "should be a domain with at least three segments separated by dots",
        )];
    }
    Vec::new()
}

fn validate_rule(path: &str, rule: &Value, errors: &mut Vec<FieldError>) {
    let list = |key: &str| -> Vec<String> { crate::apiserver::objects::string_list(rule.get(key)) };
    let operations = list("operations");
    if operations.is_empty() {
        errors.push(FieldError::required(format!("{path}.operations"), ""));
    }
    if operations.len() > 1 && operations.iter().any(|op| op == "*") {
        errors.push(FieldError::invalid_rendered(
            format!("{path}.operations"),
            go_strings(&operations),
            "if '*' is present, must not specify other operations",
        ));
    }
    for (index, operation) in operations.iter().enumerate() {
        if !OPERATIONS.contains(&operation.as_str()) {
            errors.push(FieldError::not_supported(
                format!("{path}.operations[{index}]"),
                &json!(operation),
                &OPERATIONS,
            ));
        }
    }
    let groups = list("apiGroups");
    if groups.is_empty() {
        errors.push(FieldError::required(format!("{path}.apiGroups"), ""));
    }
    if groups.len() > 1 && groups.iter().any(|group| group == "*") {
        errors.push(FieldError::invalid_rendered(
            format!("{path}.apiGroups"),
            go_strings(&groups),
            "if '*' is present, must not specify other API groups",
        ));
    }
    let versions = list("apiVersions");
    if versions.is_empty() {
        errors.push(FieldError::required(format!("{path}.apiVersions"), ""));
    }
    if versions.len() > 1 && versions.iter().any(|version| version == "*") {
        errors.push(FieldError::invalid_rendered(
            format!("{path}.apiVersions"),
            go_strings(&versions),
            "if '*' is present, must not specify other API versions",
        ));
    }
    for (index, version) in versions.iter().enumerate() {
        if version.is_empty() {
            errors.push(FieldError::required(format!("{path}.apiVersions[{index}]"), "version must not be empty"));
        }
    }
    let resources = list("resources");
    if resources.is_empty() {
        errors.push(FieldError::required(format!("{path}.resources"), ""));
    }
    let has_all = resources.iter().any(|resource| resource == "*");
    let has_all_with_subresources = resources.iter().any(|resource| resource == "*/*");
    for (index, resource) in resources.iter().enumerate() {
        let field = format!("{path}.resources[{index}]");
        if resource.is_empty() {
            errors.push(FieldError::required(field, ""));
            continue;
        }
        if has_all_with_subresources && resource != "*/*" {
            errors.push(FieldError::invalid(
                field,
                &json!(resource),
                "if '*/*' is present, must not specify other resources",
            ));
            continue;
        }
        if has_all && resource != "*" && !resource.contains('/') {
            errors.push(FieldError::invalid(
                field,
                &json!(resource),
                "if '*' is present, must not specify other resources without subresources",
            ));
        }
    }
    one_of(&rule["scope"], &format!("{path}.scope"), &["*", "Cluster", "Namespaced"], errors);
}

fn validate_review_versions(field: &str, hook: &Value, errors: &mut Vec<FieldError>) {
    let versions = crate::apiserver::objects::string_list(hook.get("admissionReviewVersions"));
    if versions.is_empty() {
        errors.push(FieldError::required(field, &format!("must specify one of {}", REVIEW_VERSIONS.join(", "))));
        return;
    }
    if !versions.iter().any(|version| REVIEW_VERSIONS.contains(&version.as_str())) {
        errors.push(FieldError::invalid_rendered(
            field,
            go_strings(&versions),
            &format!("must include at least one of {}", REVIEW_VERSIONS.join(", ")),
        ));
    }
}

fn validate_client_config(path: &str, config: &Value, errors: &mut Vec<FieldError>) {
    let url = config.get("url").filter(|url| !url.is_null());
    let service = config.get("service").filter(|service| !service.is_null());
    match (url, service) {
        (Some(_), Some(_)) | (None, None) => {
            errors.push(FieldError::required(path, "exactly one of url or service is required"));
        }
        (Some(url), None) => validate_url(&format!("{path}.url"), url.as_str().unwrap_or(""), errors),
        (None, Some(service)) => validate_service(&format!("{path}.service"), service, errors),
    }
}

/// Upstream's `ValidateWebhookURL` with https forced.
fn validate_url(field: &str, text: &str, errors: &mut Vec<FieldError>) {
    const FORM: &str = "; desired format: https://host[/path]";
    let url = match url::Url::parse(text) {
        Ok(url) => url,
        Err(error) => {
            errors.push(FieldError::required(field, &format!("url must be a valid URL: {error}{FORM}")));
            return;
        }
    };
    if url.scheme() != "https" {
        errors.push(FieldError::invalid(
            field,
            &json!(url.scheme()),
            &format!("'https' is the only allowed URL scheme{FORM}"),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        errors.push(FieldError::invalid(field, &json!(""), &format!("host must be specified{FORM}")));
    }
    if !url.username().is_empty() || url.password().is_some() {
        errors.push(FieldError::invalid(field, &json!(url.username()), "user information is not permitted in the URL"));
    }
    if let Some(fragment) = url.fragment() {
        errors.push(FieldError::invalid(field, &json!(fragment), "fragments are not permitted in the URL"));
    }
    if let Some(query) = url.query() {
        errors.push(FieldError::invalid(field, &json!(query), "query parameters are not permitted in the URL"));
    }
}

/// Upstream's `ValidateWebhookService`.
fn validate_service(path: &str, service: &Value, errors: &mut Vec<FieldError>) {
    if service["name"].as_str().is_none_or(str::is_empty) {
        errors.push(FieldError::required(format!("{path}.name"), "service name is required"));
    }
    if service["namespace"].as_str().is_none_or(str::is_empty) {
        errors.push(FieldError::required(format!("{path}.namespace"), "service namespace is required"));
    }
    if let Some(port) = service.get("port").filter(|port| !port.is_null()) {
        if !port.as_i64().is_some_and(|port| (1..=65535).contains(&port)) {
            errors.push(FieldError::invalid(
                format!("{path}.port"),
                port,
                "port is not valid: must be between 1 and 65535, inclusive",
            ));
        }
    }
    let Some(url_path) = service["path"].as_str() else { return };
    if url_path.is_empty() || url_path == "/" {
        return;
    }
    let field = format!("{path}.path");
    if url_path == "//" {
        errors.push(FieldError::invalid(&field, &json!(url_path), "segment[0] may not be empty"));
        return;
    }
    if !url_path.starts_with('/') {
        errors.push(FieldError::invalid(&field, &json!(url_path), "must start with a '/'"));
    }
    let trimmed = url_path.strip_prefix('/').unwrap_or(url_path);
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    for (index, step) in trimmed.split('/').enumerate() {
        if step.is_empty() {
            errors.push(FieldError::invalid(&field, &json!(url_path), &format!("segment[{index}] may not be empty")));
            continue;
        }
        for failure in crate::apiserver::validation::dns1123_subdomain(step) {
            errors.push(FieldError::invalid(&field, &json!(url_path), &format!("segment[{index}]: {failure}")));
        }
    }
}

/// matchConditions: names unique, an expression each that compiles as CEL (upstream's "compilation failed").
fn validate_match_conditions(path: &str, hook: &Value, errors: &mut Vec<FieldError>) {
    let conditions = hook.get("matchConditions").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    if conditions.len() > 64 {
        errors.push(FieldError::too_many(path, conditions.len(), 64));
    }
    let mut names = std::collections::HashSet::new();
    for (index, condition) in conditions.iter().enumerate() {
        let name = condition["name"].as_str().unwrap_or("");
        if name.is_empty() {
            errors.push(FieldError::required(format!("{path}[{index}].name"), ""));
        } else if !names.insert(name) {
            errors.push(FieldError::duplicate(format!("{path}[{index}].name"), &json!(name)));
        }
        match condition["expression"].as_str().filter(|expression| !expression.is_empty()) {
            None => errors.push(FieldError::required(format!("{path}[{index}].expression"), "")),
            Some(expression) => {
                if let Err(error) = crate::apiserver::cel::compile(expression) {
                    let field = format!("{path}[{index}].expression");
                    errors.push(FieldError::invalid(
                        field,
                        &json!(expression),
                        &format!("compilation failed: {error}"),
                    ));
                }
            }
        }
    }
}

/// One rule of a webhook (`RuleWithOperations`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub operations: Vec<String>,
    pub api_groups: Vec<String>,
    pub api_versions: Vec<String>,
    pub resources: Vec<String>,
    pub scope: String,
}

/// Where a webhook is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `clientConfig.url`, as written.
    Url(url::Url),
    /// `clientConfig.service`: a port of a Service, served by one of its ready endpoints.
    Service { namespace: String, name: String, path: String, port: u16 },
}

/// What a webhook declares about side effects; with a dry run only `None` and `NoneOnDryRun` may be called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SideEffects {
    None,
    NoneOnDryRun,
    Some,
    Unknown,
}

/// One webhook of a configuration, parsed once when the configuration changes.
pub struct Webhook {
    pub name: String,
    pub configuration: String,
    pub mutating: bool,
    pub endpoint: Result<Endpoint, String>,
    /// Trusts only the webhook's caBundle; an error when it has none or it does not parse.
    pub tls: Result<Arc<rustls::ClientConfig>, String>,
    pub rules: Vec<Rule>,
    pub fail_closed: bool,
    pub match_equivalent: bool,
    pub namespace_selector: Result<LabelSelector, String>,
    pub object_selector: Result<LabelSelector, String>,
    pub side_effects: SideEffects,
    pub timeout: Duration,
    /// The AdmissionReview version to send (`v1` preferred).
    pub review_version: &'static str,
    pub reinvoke_if_needed: bool,
    /// matchConditions as (name, CEL expression): the webhook is called only when every one is true.
    pub match_conditions: Vec<(String, String)>,
}

/// A list of `RuleWithOperations` (a webhook's `rules`, a policy's `resourceRules`).
pub fn parse_rules(rules: Option<&Value>) -> Vec<Rule> {
    let list = crate::apiserver::objects::string_list;
    rules
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|rule| Rule {
            operations: list(rule.get("operations")),
            api_groups: list(rule.get("apiGroups")),
            api_versions: list(rule.get("apiVersions")),
            resources: list(rule.get("resources")),
            scope: rule["scope"].as_str().unwrap_or("*").to_string(),
        })
        .collect()
}

/// Parses every webhook of a stored configuration, with upstream's defaults for fields an older object lacks.
pub fn parse_configuration(configuration: &Value, mutating: bool) -> Vec<Webhook> {
    let configuration_name = configuration.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
    let mut webhooks = Vec::new();
    for hook in configuration.get("webhooks").and_then(Value::as_array).into_iter().flatten() {
        let list = |key: &str| crate::apiserver::objects::string_list(hook.get(key));
        let rules = parse_rules(hook.get("rules"));
        let selector = |key: &str| match hook.get(key).filter(|value| !value.is_null()) {
            None => Ok(LabelSelector::everything()),
            Some(value) => LabelSelector::from_label_selector(value).map_err(|error| format!("{key}: {error}")),
        };
        let timeout_seconds =
            hook["timeoutSeconds"].as_i64().unwrap_or(DEFAULT_TIMEOUT_SECONDS).clamp(1, MAX_TIMEOUT_SECONDS);
        let versions = list("admissionReviewVersions");
        let review_version = versions
            .iter()
            .find_map(|version| REVIEW_VERSIONS.iter().find(|known| **known == version.as_str()))
            .copied();
        webhooks.push(Webhook {
            name: hook["name"].as_str().unwrap_or("").to_string(),
            configuration: configuration_name.clone(),
            mutating,
            endpoint: parse_endpoint(&hook["clientConfig"]),
            tls: tls_config(&hook["clientConfig"]),
            rules,
            fail_closed: hook["failurePolicy"].as_str() != Some("Ignore"),
            match_equivalent: hook["matchPolicy"].as_str() != Some("Exact"),
            namespace_selector: selector("namespaceSelector"),
            object_selector: selector("objectSelector"),
            side_effects: match hook["sideEffects"].as_str() {
                Some("None") => SideEffects::None,
                Some("NoneOnDryRun") => SideEffects::NoneOnDryRun,
                Some("Some") => SideEffects::Some,
                _ => SideEffects::Unknown,
            },
            timeout: Duration::from_secs(timeout_seconds as u64),
            review_version: review_version.unwrap_or("v1"),
            reinvoke_if_needed: mutating && hook["reinvocationPolicy"].as_str() == Some("IfNeeded"),
            match_conditions: hook
                .get("matchConditions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|condition| {
                    let text = |key: &str| condition[key].as_str().unwrap_or_default().to_string();
                    (text("name"), text("expression"))
                })
                .collect(),
        });
    }
    webhooks
}

pub(crate) fn parse_endpoint(config: &Value) -> Result<Endpoint, String> {
    if let Some(text) = config["url"].as_str() {
        return url::Url::parse(text)
            .map(Endpoint::Url)
            .map_err(|error| format!("clientConfig.url {text:?} is not a valid URL: {error}"));
    }
    let service = config
        .get("service")
        .filter(|service| service.is_object())
        .ok_or("clientConfig names neither a url nor a service")?;
    let port = service["port"].as_i64().unwrap_or(443);
    Ok(Endpoint::Service {
        namespace: service["namespace"].as_str().unwrap_or("").to_string(),
        name: service["name"].as_str().unwrap_or("").to_string(),
        path: service["path"].as_str().unwrap_or("/").to_string(),
        port: u16::try_from(port).map_err(|_| format!("clientConfig.service.port {port} is not a port"))?,
    })
}

/// A rustls client configuration that trusts exactly the webhook's caBundle (PEM, base64 in the JSON).
pub(crate) fn tls_config(config: &Value) -> Result<Arc<rustls::ClientConfig>, String> {
    use base64::Engine;
    let encoded = config["caBundle"]
        .as_str()
        .filter(|bundle| !bundle.is_empty())
        .ok_or("the webhook has no clientConfig.caBundle; kaasd verifies webhook servers only against the caBundle")?;
    let pem = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|error| format!("clientConfig.caBundle is not base64: {error}"))?;
    let pem = String::from_utf8(pem).map_err(|_| "clientConfig.caBundle is not PEM text".to_string())?;
    let certificates =
        kaasd_tunnel::tls::certificates(&pem).map_err(|error| format!("clientConfig.caBundle: {error}"))?;
    if certificates.is_empty() {
        return Err("clientConfig.caBundle holds no PEM certificate".into());
    }
    let mut roots = rustls::RootCertStore::empty();
    for certificate in certificates {
        roots.add(certificate).map_err(|error| format!("clientConfig.caBundle: {error}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| error.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(client))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(kind: &str, object: &Value) -> Vec<String> {
        validate(kind, object, None).iter().map(ToString::to_string).collect()
    }

    fn valid_hook() -> Value {
        json!({
            "name": "deny.example.com",
            "clientConfig": {"url": "https://127.0.0.1:9443/validate", "caBundle": ""},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}],
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
        })
    }

    #[test]
    fn defaults_are_upstreams() {
        let mut object = json!({"webhooks": [valid_hook(), {"name": "b.example.com", "clientConfig": {"service": {"namespace": "a", "name": "b"}}}]});
        apply_defaults("MutatingWebhookConfiguration", &mut object);
        let hook = &object["webhooks"][0];
        assert_eq!(hook["failurePolicy"], "Fail");
        assert_eq!(hook["matchPolicy"], "Equivalent");
        assert_eq!(hook["timeoutSeconds"], 10);
        assert_eq!(hook["reinvocationPolicy"], "Never");
        assert_eq!(hook["namespaceSelector"], json!({}));
        assert_eq!(hook["rules"][0]["scope"], "*");
        assert_eq!(object["webhooks"][1]["clientConfig"]["service"]["port"], 443);
        let mut validating = json!({"webhooks": [valid_hook()]});
        apply_defaults("ValidatingWebhookConfiguration", &mut validating);
        assert!(validating["webhooks"][0].get("reinvocationPolicy").is_none());
    }

    #[test]
    fn a_valid_configuration_has_no_errors() {
        assert_eq!(
            messages("ValidatingWebhookConfiguration", &json!({"webhooks": [valid_hook()]})),
            Vec::<String>::new()
        );
    }

    #[test]
    fn names_must_be_fully_qualified_and_unique() {
        let mut short = valid_hook();
        short["name"] = json!("deny.example");
        assert_eq!(
            messages("ValidatingWebhookConfiguration", &json!({"webhooks": [short]})),
            vec!["webhooks[0].name: Invalid value: \"deny.example\": should be a domain with at least three segments separated by dots"]
        );
        assert_eq!(
            messages("ValidatingWebhookConfiguration", &json!({"webhooks": [valid_hook(), valid_hook()]})),
            vec!["webhooks[1].name: Duplicate value: \"deny.example.com\""]
        );
    }

    #[test]
    fn client_config_needs_exactly_one_https_target() {
        let mut plain = valid_hook();
        plain["clientConfig"] = json!({"url": "http://example.com/x"});
        assert_eq!(
            messages("ValidatingWebhookConfiguration", &json!({"webhooks": [plain]})),
            vec!["webhooks[0].clientConfig.url: Invalid value: \"http\": 'https' is the only allowed URL scheme; desired format: https://host[/path]"]
        );
        let mut both = valid_hook();
        both["clientConfig"] = json!({"url": "https://example.com/x", "service": {"namespace": "a", "name": "b"}});
        assert_eq!(
            messages("ValidatingWebhookConfiguration", &json!({"webhooks": [both]})),
            vec!["webhooks[0].clientConfig: Required value: exactly one of url or service is required"]
        );
        let mut query = valid_hook();
        query["clientConfig"] = json!({"url": "https://example.com/x?a=b"});
        assert_eq!(
            messages("ValidatingWebhookConfiguration", &json!({"webhooks": [query]})),
            vec!["webhooks[0].clientConfig.url: Invalid value: \"a=b\": query parameters are not permitted in the URL"]
        );
        let mut service = valid_hook();
        service["clientConfig"] = json!({"service": {"namespace": "", "name": "b", "path": "no-slash"}});
        assert_eq!(
            messages("ValidatingWebhookConfiguration", &json!({"webhooks": [service]})),
            vec![
                "webhooks[0].clientConfig.service.namespace: Required value: service namespace is required",
                "webhooks[0].clientConfig.service.path: Invalid value: \"no-slash\": must start with a '/'",
            ]
        );
    }

    #[test]
    fn side_effects_timeouts_and_review_versions() {
        let mut hook = valid_hook();
        hook.as_object_mut().unwrap().remove("sideEffects");
        hook["timeoutSeconds"] = json!(31);
        hook["admissionReviewVersions"] = json!(["v2"]);
        assert_eq!(
            messages("ValidatingWebhookConfiguration", &json!({"webhooks": [hook]})),
            vec![
                "webhooks[0].sideEffects: Required value: must specify one of None, NoneOnDryRun",
                "webhooks[0].timeoutSeconds: Invalid value: 31: the timeout value must be between 1 and 30 seconds",
                "webhooks[0].admissionReviewVersions: Invalid value: []string{\"v2\"}: must include at least one of v1, v1beta1",
            ]
        );
        let mut some = valid_hook();
        some["sideEffects"] = json!("Some");
        assert_eq!(
            messages("ValidatingWebhookConfiguration", &json!({"webhooks": [some.clone()]})),
            vec!["webhooks[0].sideEffects: Unsupported value: \"Some\": supported values: \"None\", \"NoneOnDryRun\""]
        );
        // A configuration that already had them keeps them (upstream's ratcheting).
        let old = json!({"webhooks": [some.clone()]});
        assert!(validate("ValidatingWebhookConfiguration", &json!({"webhooks": [some]}), Some(&old)).is_empty());
    }

    #[test]
    fn rules_are_checked() {
        let mut hook = valid_hook();
        hook["rules"] = json!([{"operations": ["*", "CREATE"], "apiGroups": [], "apiVersions": ["v1"], "resources": ["*", "pods"], "scope": "Everywhere"}]);
        assert_eq!(
            messages("ValidatingWebhookConfiguration", &json!({"webhooks": [hook]})),
            vec![
                "webhooks[0].rules[0].operations: Invalid value: []string{\"*\", \"CREATE\"}: if '*' is present, must not specify other operations",
                "webhooks[0].rules[0].apiGroups: Required value",
                "webhooks[0].rules[0].resources[1]: Invalid value: \"pods\": if '*' is present, must not specify other resources without subresources",
                "webhooks[0].rules[0].scope: Unsupported value: \"Everywhere\": supported values: \"*\", \"Cluster\", \"Namespaced\"",
            ]
        );
    }

    #[test]
    fn match_conditions_must_compile() {
        let mut hook = valid_hook();
        hook["matchConditions"] =
            json!([{"name": "ok", "expression": "object != null"}, {"name": "bad", "expression": "object.x =="}]);
        let found = messages("ValidatingWebhookConfiguration", &json!({"webhooks": [hook]}));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with(
                "webhooks[0].matchConditions[1].expression: Invalid value: \"object.x ==\": compilation failed: "
            ),
            "{found:?}"
        );
    }

    #[test]
    fn parsing_keeps_what_the_dispatcher_needs() {
        let mut hook = valid_hook();
        hook["failurePolicy"] = json!("Ignore");
        hook["matchConditions"] = json!([{"name": "a", "expression": "true"}]);
        let hooks = parse_configuration(&json!({"metadata": {"name": "c"}, "webhooks": [hook]}), false);
        let hook = &hooks[0];
        assert_eq!((hook.name.as_str(), hook.configuration.as_str()), ("deny.example.com", "c"));
        assert!(!hook.fail_closed && hook.match_equivalent);
        assert_eq!(hook.match_conditions, [("a".to_string(), "true".to_string())]);
        assert_eq!(hook.timeout, Duration::from_secs(10));
        assert!(matches!(&hook.endpoint, Ok(Endpoint::Url(url)) if url.port() == Some(9443)));
        assert!(hook.tls.as_ref().unwrap_err().contains("no clientConfig.caBundle"));
    }
}
