//! Which webhooks a request goes to: rules (operations, groups, versions, resources with subresources, scope),
//! matchPolicy, and the object selector, as upstream's `rules.Matcher` and `object.Matcher` decide. The namespace
//! selector needs the namespace's labels and is checked by the dispatcher (see `mod.rs`).

use serde_json::{Map, Value};

use super::config::{Rule, Webhook};
use crate::apiserver::selector::LabelSelector;

/// The resource a request is about, in one API version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupVersionResource {
    pub group: String,
    pub version: String,
    /// The plural resource name.
    pub resource: String,
    pub kind: String,
}

/// What the rules look at.
pub struct RequestFacts<'a> {
    pub operation: &'a str,
    pub subresource: &'a str,
    /// Empty for cluster-scoped objects (Namespaces included).
    pub namespace: &'a str,
}

/// Whether one rule matches a request for `resource`.
pub fn rule_matches(rule: &Rule, resource: &GroupVersionResource, request: &RequestFacts<'_>) -> bool {
    let any_or = |list: &[String], value: &str| list.iter().any(|item| item == "*" || item == value);
    any_or(&rule.operations, request.operation)
        && any_or(&rule.api_groups, &resource.group)
        && any_or(&rule.api_versions, &resource.version)
        && resource_matches(&rule.resources, &resource.resource, request.subresource)
        && scope_matches(&rule.scope, resource, request.namespace)
}

/// `pods` matches the main resource only, `pods/status` that subresource, `*` every main resource, `*/status`
/// every status subresource, `*/*` everything.
fn resource_matches(resources: &[String], resource: &str, subresource: &str) -> bool {
    resources.iter().any(|entry| {
        let (wanted_resource, wanted_subresource) = entry.split_once('/').unwrap_or((entry.as_str(), ""));
        (wanted_resource == "*" || wanted_resource == resource)
            && (wanted_subresource == "*" || wanted_subresource == subresource)
    })
}

/// Namespaces are cluster-scoped even though a request for one names a namespace upstream.
fn scope_matches(scope: &str, resource: &GroupVersionResource, namespace: &str) -> bool {
    let is_namespace = resource.group.is_empty() && resource.resource == "namespaces";
    match scope {
        "Cluster" => is_namespace || namespace.is_empty(),
        "Namespaced" => !is_namespace && !namespace.is_empty(),
        _ => true,
    }
}

/// The version a webhook is called with: the request's own when a rule matches it (`Exact`), else, with
/// `Equivalent`, the first other served version of the same group and resource a rule matches (kaasd stores every
/// version alike, so the object only changes its `apiVersion`). `None`: the webhook is not called.
pub fn matched_resource(
    webhook: &Webhook,
    requested: &GroupVersionResource,
    equivalents: &[GroupVersionResource],
    request: &RequestFacts<'_>,
) -> Option<GroupVersionResource> {
    matched_by_rules(&webhook.rules, &[], webhook.match_equivalent, requested, equivalents, request)
}

/// [`matched_resource`] for any list of rules, less those `exclude` matches (a policy's `excludeResourceRules`).
pub fn matched_by_rules(
    rules: &[Rule],
    exclude: &[Rule],
    match_equivalent: bool,
    requested: &GroupVersionResource,
    equivalents: &[GroupVersionResource],
    request: &RequestFacts<'_>,
) -> Option<GroupVersionResource> {
    let matches = |resource: &GroupVersionResource| {
        rules.iter().any(|rule| rule_matches(rule, resource, request))
            && !exclude.iter().any(|rule| rule_matches(rule, resource, request))
    };
    if matches(requested) {
        return Some(requested.clone());
    }
    if !match_equivalent {
        return None;
    }
    equivalents.iter().filter(|other| *other != requested).find(|other| matches(other)).cloned()
}

/// Upstream's object selector: an empty selector matches everything, otherwise the labels of the object or of the
/// old object must match.
pub fn object_selector_matches(selector: &LabelSelector, object: Option<&Value>, old_object: Option<&Value>) -> bool {
    if selector.is_empty() {
        return true;
    }
    let labels_of = |object: &Value| object.pointer("/metadata/labels").and_then(Value::as_object).cloned();
    let empty = Map::new();
    [object, old_object]
        .into_iter()
        .flatten()
        .any(|object| selector.matches(Some(labels_of(object).as_ref().unwrap_or(&empty))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(operations: &[&str], groups: &[&str], versions: &[&str], resources: &[&str], scope: &str) -> Rule {
        let owned = |list: &[&str]| list.iter().map(|item| item.to_string()).collect();
        Rule {
            operations: owned(operations),
            api_groups: owned(groups),
            api_versions: owned(versions),
            resources: owned(resources),
            scope: scope.into(),
        }
    }

    fn gvr(group: &str, version: &str, resource: &str) -> GroupVersionResource {
        GroupVersionResource {
            group: group.into(),
            version: version.into(),
            resource: resource.into(),
            kind: "K".into(),
        }
    }

    fn facts<'a>(operation: &'a str, subresource: &'a str, namespace: &'a str) -> RequestFacts<'a> {
        RequestFacts { operation, subresource, namespace }
    }

    #[test]
    fn operations_groups_and_versions() {
        let pods = rule(&["CREATE"], &[""], &["v1"], &["pods"], "*");
        assert!(rule_matches(&pods, &gvr("", "v1", "pods"), &facts("CREATE", "", "a")));
        assert!(!rule_matches(&pods, &gvr("", "v1", "pods"), &facts("UPDATE", "", "a")));
        assert!(!rule_matches(&pods, &gvr("apps", "v1", "pods"), &facts("CREATE", "", "a")));
        assert!(!rule_matches(&pods, &gvr("", "v2", "pods"), &facts("CREATE", "", "a")));
        let everything = rule(&["*"], &["*"], &["*"], &["*"], "*");
        assert!(rule_matches(&everything, &gvr("apps", "v1", "deployments"), &facts("DELETE", "", "a")));
    }

    #[test]
    fn subresources_need_their_own_entry() {
        let main = rule(&["*"], &["*"], &["*"], &["pods"], "*");
        assert!(!rule_matches(&main, &gvr("", "v1", "pods"), &facts("UPDATE", "status", "a")));
        let status = rule(&["*"], &["*"], &["*"], &["pods/status"], "*");
        assert!(rule_matches(&status, &gvr("", "v1", "pods"), &facts("UPDATE", "status", "a")));
        assert!(!rule_matches(&status, &gvr("", "v1", "pods"), &facts("UPDATE", "", "a")));
        let star = rule(&["*"], &["*"], &["*"], &["*"], "*");
        assert!(!rule_matches(&star, &gvr("", "v1", "pods"), &facts("UPDATE", "status", "a")));
        let all = rule(&["*"], &["*"], &["*"], &["*/*"], "*");
        assert!(rule_matches(&all, &gvr("", "v1", "pods"), &facts("UPDATE", "status", "a")));
        assert!(rule_matches(&all, &gvr("", "v1", "pods"), &facts("UPDATE", "", "a")));
        let any_status = rule(&["*"], &["*"], &["*"], &["*/status"], "*");
        assert!(rule_matches(&any_status, &gvr("apps", "v1", "deployments"), &facts("UPDATE", "status", "a")));
    }

    #[test]
    fn scopes() {
        let cluster = rule(&["*"], &["*"], &["*"], &["*"], "Cluster");
        let namespaced = rule(&["*"], &["*"], &["*"], &["*"], "Namespaced");
        assert!(rule_matches(&cluster, &gvr("", "v1", "nodes"), &facts("CREATE", "", "")));
        assert!(!rule_matches(&cluster, &gvr("", "v1", "pods"), &facts("CREATE", "", "a")));
        assert!(rule_matches(&cluster, &gvr("", "v1", "namespaces"), &facts("CREATE", "", "")));
        assert!(rule_matches(&namespaced, &gvr("", "v1", "pods"), &facts("CREATE", "", "a")));
        assert!(!rule_matches(&namespaced, &gvr("", "v1", "namespaces"), &facts("CREATE", "", "x")));
    }

    #[test]
    fn equivalent_versions_match_only_the_same_group_and_resource() {
        let mut hooks = super::super::config::parse_configuration(
            &json!({"webhooks": [{"name": "a.b.c", "clientConfig": {"url": "https://x"}, "rules": [
                {"operations": ["CREATE"], "apiGroups": ["stable.example.com"], "apiVersions": ["v1"], "resources": ["widgets"]}]}]}),
            false,
        );
        let hook = hooks.remove(0);
        let v1 = gvr("stable.example.com", "v1", "widgets");
        let v2 = gvr("stable.example.com", "v2", "widgets");
        let request = facts("CREATE", "", "a");
        assert_eq!(matched_resource(&hook, &v2, &[v1.clone(), v2.clone()], &request), Some(v1.clone()));
        assert_eq!(matched_resource(&hook, &v1, &[v1.clone(), v2.clone()], &request), Some(v1.clone()));
        assert_eq!(matched_resource(&hook, &v2, std::slice::from_ref(&v2), &request), None);
        let exact = Webhook { match_equivalent: false, ..hook };
        assert_eq!(matched_resource(&exact, &v2, &[v1, v2.clone()], &request), None);
    }

    #[test]
    fn object_selectors_look_at_the_object_and_the_old_object() {
        let selector = LabelSelector::from_label_selector(&json!({"matchLabels": {"team": "a"}})).unwrap();
        let a = json!({"metadata": {"labels": {"team": "a"}}});
        let b = json!({"metadata": {"labels": {"team": "b"}}});
        let none = json!({"metadata": {}});
        assert!(object_selector_matches(&selector, Some(&a), None));
        assert!(!object_selector_matches(&selector, Some(&b), None));
        assert!(object_selector_matches(&selector, Some(&b), Some(&a)));
        assert!(object_selector_matches(&selector, None, Some(&a)));
        assert!(!object_selector_matches(&selector, Some(&none), None));
        assert!(object_selector_matches(&LabelSelector::everything(), Some(&none), None));
        let absent = LabelSelector::from_label_selector(
            &json!({"matchExpressions": [{"key": "skip", "operator": "DoesNotExist"}]}),
        )
        .unwrap();
        assert!(object_selector_matches(&absent, Some(&none), None));
    }
}
