//! Authorization by RBAC: Roles, ClusterRoles and their bindings, read from the API's own objects.
//! `system:masters` is allowed everything without a lookup (the admin and kaasd's own controllers).

use serde_json::{json, Value};

use crate::apiserver::auth::User;
use crate::apiserver::error::{ApiError, ApiResult, Details};
use crate::apiserver::storage::ObjectStore;
use crate::apiserver::ApiServer;

/// What a request does, in RBAC's terms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes {
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    /// Set for non-resource requests (`/healthz`, `/metrics`, ...).
    pub path: Option<String>,
}

impl Attributes {
    fn describe(&self) -> String {
        if let Some(path) = &self.path {
            return format!("cannot {} path \"{path}\"", self.verb);
        }
        let resource = if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        };
        let scope = if self.namespace.is_empty() {
            "at the cluster scope".to_string()
        } else {
            format!("in the namespace \"{}\"", self.namespace)
        };
        format!("cannot {} resource \"{resource}\" in API group \"{}\" {scope}", self.verb, self.group)
    }
}

/// Allows the request or answers 403 with upstream's message.
pub async fn authorize(server: &ApiServer, user: &User, attributes: &Attributes) -> ApiResult<()> {
    if allowed(server, user, attributes).await? {
        return Ok(());
    }
    Err(forbidden(user, attributes))
}

/// Upstream's 403 for a request the authorizer denied: `pods "web" is forbidden: User "bob" cannot get resource
/// "pods" in API group "" in the namespace "default"`, with the resource (and subresource) and name as details.
pub fn forbidden(user: &User, attributes: &Attributes) -> ApiError {
    let denial = format!("User \"{}\" {}", user.name, attributes.describe());
    if attributes.path.is_some() {
        return ApiError::forbidden(format!("forbidden: {denial}"), Details::default());
    }
    let resource = if attributes.subresource.is_empty() {
        attributes.resource.clone()
    } else {
        format!("{}/{}", attributes.resource, attributes.subresource)
    };
    let group_resource =
        if attributes.group.is_empty() { resource.clone() } else { format!("{resource}.{}", attributes.group) };
    let message = if attributes.name.is_empty() {
        format!("{group_resource} is forbidden: {denial}")
    } else {
        format!("{group_resource} \"{}\" is forbidden: {denial}", attributes.name)
    };
    let details = Details {
        name: attributes.name.clone(),
        group: attributes.group.clone(),
        kind: resource,
        ..Details::default()
    };
    ApiError::forbidden(message, details)
}

pub async fn allowed(server: &ApiServer, user: &User, attributes: &Attributes) -> ApiResult<bool> {
    if user.in_group("system:masters") {
        return Ok(true);
    }
    let bound = bound_rules(server, user, &attributes.namespace).await?;
    Ok(bound.rules.iter().any(|rule| rule_allows(rule, attributes)))
}

/// A SelfSubjectRulesReview status (`kubectl auth can-i --list`): every rule of the roles bound to `user` by
/// ClusterRoleBindings and by the RoleBindings of `namespace`, split into resource and non-resource rules as
/// upstream does. A binding to a missing role makes the answer incomplete, with the reason. Like upstream's, a review
/// is always of one namespace.
pub async fn rules_review(server: &ApiServer, user: &User, namespace: &str) -> ApiResult<Value> {
    if namespace.is_empty() {
        return Err(ApiError::bad_request("no namespace on request"));
    }
    let mut bound = bound_rules(server, user, namespace).await?;
    if user.in_group("system:masters") {
        // What the privileged group may do does not depend on any binding, as upstream's.
        bound.rules.insert(0, json!({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}));
        bound.rules.insert(1, json!({"nonResourceURLs": ["*"], "verbs": ["*"]}));
    }
    let mut resource_rules: Vec<Value> = Vec::new();
    let mut non_resource_rules: Vec<Value> = Vec::new();
    for rule in &bound.rules {
        let field = |key: &str| rule.get(key).filter(|list| list.as_array().is_some_and(|list| !list.is_empty()));
        let verbs = field("verbs").cloned().unwrap_or_else(|| json!([]));
        if let Some(resources) = field("resources") {
            let mut entry = json!({"verbs": verbs, "apiGroups": field("apiGroups").cloned().unwrap_or_else(|| json!([])), "resources": resources});
            if let Some(names) = field("resourceNames") {
                entry["resourceNames"] = names.clone();
            }
            if !resource_rules.contains(&entry) {
                resource_rules.push(entry);
            }
        }
        if let Some(urls) = field("nonResourceURLs") {
            let entry = json!({"verbs": verbs, "nonResourceURLs": urls});
            if !non_resource_rules.contains(&entry) {
                non_resource_rules.push(entry);
            }
        }
    }
    let mut status =
        json!({"resourceRules": resource_rules, "nonResourceRules": non_resource_rules, "incomplete": false});
    if !bound.missing_roles.is_empty() {
        status["incomplete"] = json!(true);
        status["evaluationError"] = json!(bound.missing_roles.join(", "));
    }
    Ok(status)
}

/// The rules bound to a user, and the roles its bindings name that do not exist.
struct BoundRules {
    rules: Vec<Value>,
    /// Upstream's message for each: `clusterroles.rbac.authorization.k8s.io "name" not found`.
    missing_roles: Vec<String>,
}

/// Every rule of the roles bound to `user` by a ClusterRoleBinding or, when `namespace` is given, by a RoleBinding
/// there. The one place that decides which bindings apply: authorization and rules reviews both read it.
async fn bound_rules(server: &ApiServer, user: &User, namespace: &str) -> ApiResult<BoundRules> {
    let registry = server.registry();
    let group = "rbac.authorization.k8s.io";
    let def = |plural: &str| registry.get(group, "v1", plural).cloned().expect("RBAC kinds are built in");
    let cluster_bindings =
        server.store.list(&ObjectStore::prefix(&def("clusterrolebindings"), None), None, 0, 0).await?;
    let mut bindings: Vec<Value> = cluster_bindings.items.into_iter().map(|stored| stored.object).collect();
    if !namespace.is_empty() {
        let namespaced =
            server.store.list(&ObjectStore::prefix(&def("rolebindings"), Some(namespace)), None, 0, 0).await?;
        bindings.extend(namespaced.items.into_iter().map(|stored| stored.object));
    }
    let mut bound = BoundRules { rules: Vec::new(), missing_roles: Vec::new() };
    for binding in bindings.iter().filter(|binding| binds(binding, user)) {
        let role_ref = &binding["roleRef"];
        let role_name = role_ref["name"].as_str().unwrap_or("");
        let (key, plural) = match role_ref["kind"].as_str() {
            Some("ClusterRole") => (ObjectStore::key(&def("clusterroles"), None, role_name), "clusterroles"),
            Some("Role") => {
                let namespace = binding.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("");
                (ObjectStore::key(&def("roles"), Some(namespace), role_name), "roles")
            }
            _ => continue,
        };
        match server.store.get(&key, false).await? {
            Some(role) => bound.rules.extend(role.object["rules"].as_array().cloned().unwrap_or_default()),
            None => bound.missing_roles.push(format!("{plural}.{group} \"{role_name}\" not found")),
        }
    }
    Ok(bound)
}

/// A SubjectAccessReview status for `kubectl auth can-i`.
pub async fn review(
    server: &ApiServer,
    user: &User,
    resource_attributes: Option<&Value>,
    non_resource_attributes: Option<&Value>,
) -> ApiResult<Value> {
    let text = |value: Option<&Value>, key: &str| {
        value.and_then(|value| value.get(key)).and_then(Value::as_str).unwrap_or("").to_string()
    };
    let attributes = match (resource_attributes, non_resource_attributes) {
        (Some(resource), _) => Attributes {
            verb: text(Some(resource), "verb"),
            group: text(Some(resource), "group"),
            resource: text(Some(resource), "resource"),
            subresource: text(Some(resource), "subresource"),
            namespace: text(Some(resource), "namespace"),
            name: text(Some(resource), "name"),
            path: None,
        },
        (None, Some(non_resource)) => Attributes {
            verb: text(Some(non_resource), "verb"),
            path: Some(text(Some(non_resource), "path")),
            ..Attributes::default()
        },
        (None, None) => {
            return Err(ApiError::bad_request("spec.resourceAttributes or spec.nonResourceAttributes is required"));
        }
    };
    let allowed = allowed(server, user, &attributes).await?;
    Ok(if allowed { json!({"allowed": true, "reason": "allowed by RBAC"}) } else { json!({"allowed": false}) })
}

fn binds(binding: &Value, user: &User) -> bool {
    binding["subjects"].as_array().into_iter().flatten().any(|subject| {
        let name = subject["name"].as_str().unwrap_or("");
        match subject["kind"].as_str() {
            Some("User") => name == user.name,
            Some("Group") => user.in_group(name),
            Some("ServiceAccount") => {
                let namespace = subject["namespace"].as_str().unwrap_or("");
                user.name == format!("system:serviceaccount:{namespace}:{name}")
            }
            _ => false,
        }
    })
}

fn rule_allows(rule: &Value, attributes: &Attributes) -> bool {
    let list =
        |key: &str| -> Vec<&str> { rule[key].as_array().into_iter().flatten().filter_map(Value::as_str).collect() };
    let covers = |values: &[&str], wanted: &str| values.iter().any(|value| *value == "*" || *value == wanted);
    if !covers(&list("verbs"), &attributes.verb) {
        return false;
    }
    if let Some(path) = &attributes.path {
        return list("nonResourceURLs").iter().any(|pattern| match pattern.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix),
            None => pattern == path,
        });
    }
    let resource = if attributes.subresource.is_empty() {
        attributes.resource.clone()
    } else {
        format!("{}/{}", attributes.resource, attributes.subresource)
    };
    let resources = list("resources");
    let resource_matches = resources.iter().any(|candidate| {
        *candidate == "*"
            || *candidate == resource
            || (!attributes.subresource.is_empty() && *candidate == format!("*/{}", attributes.subresource))
    });
    let names = list("resourceNames");
    covers(&list("apiGroups"), &attributes.group)
        && resource_matches
        && (names.is_empty() || names.contains(&attributes.name.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attributes(verb: &str, group: &str, resource: &str, subresource: &str) -> Attributes {
        Attributes {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            subresource: subresource.into(),
            namespace: "default".into(),
            ..Attributes::default()
        }
    }

    #[test]
    fn rules_match_verbs_groups_resources_and_subresources() {
        let rule =
            json!({"apiGroups": ["", "apps"], "resources": ["pods", "deployments/scale"], "verbs": ["get", "list"]});
        assert!(rule_allows(&rule, &attributes("get", "", "pods", "")));
        assert!(rule_allows(&rule, &attributes("list", "apps", "deployments", "scale")));
        assert!(!rule_allows(&rule, &attributes("get", "apps", "deployments", "")));
        assert!(!rule_allows(&rule, &attributes("delete", "", "pods", "")));
        let star = json!({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]});
        assert!(rule_allows(&star, &attributes("deletecollection", "batch", "jobs", "status")));
        let named = json!({"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["a"], "verbs": ["get"]});
        let mut get_a = attributes("get", "", "configmaps", "");
        get_a.name = "a".into();
        assert!(rule_allows(&named, &get_a));
        get_a.name = "b".into();
        assert!(!rule_allows(&named, &get_a));
        let health = json!({"nonResourceURLs": ["/healthz", "/api/*"], "verbs": ["get"]});
        let path = |p: &str| Attributes { verb: "get".into(), path: Some(p.into()), ..Attributes::default() };
        assert!(rule_allows(&health, &path("/healthz")));
        assert!(rule_allows(&health, &path("/api/v1")));
        assert!(!rule_allows(&health, &path("/metrics")));
    }

    #[test]
    fn bindings_name_users_groups_and_service_accounts() {
        let user = User::authenticated("system:serviceaccount:ns:robot".into(), String::new(), vec!["team".into()]);
        assert!(binds(&json!({"subjects": [{"kind": "ServiceAccount", "name": "robot", "namespace": "ns"}]}), &user));
        assert!(binds(&json!({"subjects": [{"kind": "Group", "name": "system:authenticated"}]}), &user));
        assert!(!binds(&json!({"subjects": [{"kind": "User", "name": "alice"}]}), &user));
    }
}
