//! Discovery documents, generated from the registry: the aggregated form (apidiscovery.k8s.io/v2, one request for
//! every group) that kubectl 1.32 asks for first, and the legacy per-group-version form it falls back to and that
//! conformance still fetches.

use serde_json::{json, Value};

use crate::apiserver::registry::{Registry, ResourceDef};

/// The media type of an aggregated discovery response; clients pick their parser by it.
pub const AGGREGATED_CONTENT_TYPE: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether an Accept header asks for aggregated discovery (v2, or the v2beta1 older clients send).
pub fn wants_aggregated(accept: &str) -> bool {
    accept.split(',').any(|part| part.contains("g=apidiscovery.k8s.io") && part.contains("as=APIGroupDiscoveryList"))
}

/// `/api` (`core == true`) or `/apis` as an APIGroupDiscoveryList.
pub fn aggregated(registry: &Registry, core: bool) -> Value {
    let items: Vec<Value> = groups(registry)
        .into_iter()
        .filter(|(group, _)| group.is_empty() == core)
        .map(|(group, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|version| {
                    let resources: Vec<Value> = registry
                        .iter()
                        .filter(|def| def.group == group && &def.version == version)
                        .map(|def| aggregated_resource(def))
                        .collect();
                    json!({"version": version, "resources": resources, "freshness": "Current"})
                })
                .collect();
            json!({"metadata": {"name": group, "creationTimestamp": null}, "versions": versions})
        })
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}

fn aggregated_resource(def: &ResourceDef) -> Value {
    let mut resource = json!({
        "resource": def.plural,
        "responseKind": {"group": def.group, "version": def.version, "kind": def.kind},
        "scope": if def.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": def.singular,
        "verbs": def.verbs,
    });
    if !def.short_names.is_empty() {
        resource["shortNames"] = json!(def.short_names);
    }
    if !def.categories.is_empty() {
        resource["categories"] = json!(def.categories);
    }
    let mut subresources = Vec::new();
    if def.status {
        subresources.push(json!({
            "subresource": "status",
            "responseKind": {"group": def.group, "version": def.version, "kind": def.kind},
            "verbs": ["get", "patch", "update"],
        }));
    }
    if def.scale.is_some() {
        subresources.push(json!({
            "subresource": "scale",
            "responseKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
            "verbs": ["get", "patch", "update"],
        }));
    }
    for (subresource, kind, verbs) in extra_subresources(def) {
        subresources.push(json!({
            "subresource": subresource,
            "responseKind": {"group": kind.0, "version": kind.1, "kind": kind.2},
            "verbs": verbs,
        }));
    }
    if !subresources.is_empty() {
        resource["subresources"] = Value::Array(subresources);
    }
    resource
}

/// A subresource's name, its response kind (group, version, kind) and its verbs.
type Subresource = (&'static str, (&'static str, &'static str, &'static str), Vec<&'static str>);

/// Subresources beyond status and scale that kaasd serves, with their response kinds.
fn extra_subresources(def: &ResourceDef) -> Vec<Subresource> {
    match (def.group.as_str(), def.plural.as_str()) {
        ("", "namespaces") => vec![("finalize", ("", "v1", "Namespace"), vec!["update"])],
        ("", "pods") => vec![
            ("attach", ("", "v1", "PodAttachOptions"), vec!["create", "get"]),
            ("binding", ("", "v1", "Binding"), vec!["create"]),
            ("eviction", ("policy", "v1", "Eviction"), vec!["create"]),
            ("exec", ("", "v1", "PodExecOptions"), vec!["create", "get"]),
            ("log", ("", "v1", "Pod"), vec!["get"]),
            ("portforward", ("", "v1", "PodPortForwardOptions"), vec!["create", "get"]),
            ("proxy", ("", "v1", "PodProxyOptions"), vec!["create", "delete", "get", "patch", "update"]),
        ],
        ("", "services") => {
            vec![("proxy", ("", "v1", "ServiceProxyOptions"), vec!["create", "delete", "get", "patch", "update"])]
        }
        ("", "nodes") => {
            vec![("proxy", ("", "v1", "NodeProxyOptions"), vec!["create", "delete", "get", "patch", "update"])]
        }
        ("", "serviceaccounts") => {
            vec![("token", ("authentication.k8s.io", "v1", "TokenRequest"), vec!["create"])]
        }
        ("certificates.k8s.io", "certificatesigningrequests") => {
            vec![(
                "approval",
                ("certificates.k8s.io", "v1", "CertificateSigningRequest"),
                vec!["get", "patch", "update"],
            )]
        }
        _ => vec![],
    }
}

/// Groups in the order clients should prefer them, each with its versions (preferred first).
fn groups(registry: &Registry) -> Vec<(String, Vec<String>)> {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for def in registry.iter() {
        match groups.iter_mut().find(|(group, _)| group == &def.group) {
            Some((_, versions)) => {
                if !versions.contains(&def.version) {
                    versions.push(def.version.clone());
                }
            }
            None => groups.push((def.group.clone(), vec![def.version.clone()])),
        }
    }
    for (_, versions) in &mut groups {
        versions.sort_by_key(|version| std::cmp::Reverse(version_priority(version)));
    }
    groups
}

/// Kubernetes' version ordering: GA before beta before alpha, higher numbers first.
fn version_priority(version: &str) -> (u8, u32, u32) {
    let rest = version.trim_start_matches('v');
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let major = digits.parse().unwrap_or(0);
    let tail = &rest[digits.len()..];
    let (level, minor) = if let Some(number) = tail.strip_prefix("beta") {
        (1, number.parse().unwrap_or(0))
    } else if let Some(number) = tail.strip_prefix("alpha") {
        (0, number.parse().unwrap_or(0))
    } else {
        (2, 0)
    };
    (level, major, minor)
}

/// `/api` in the legacy form.
pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

/// `/apis` in the legacy form.
pub fn api_group_list(registry: &Registry) -> Value {
    let groups: Vec<Value> =
        groups(registry).into_iter().filter(|(group, _)| !group.is_empty()).map(|(g, v)| api_group(&g, &v)).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/<group>`, or `None` for a group kaasd does not serve.
pub fn api_group_document(registry: &Registry, group: &str) -> Option<Value> {
    groups(registry).into_iter().find(|(name, _)| name == group).map(|(group, versions)| {
        let mut document = api_group(&group, &versions);
        document["kind"] = json!("APIGroup");
        document["apiVersion"] = json!("v1");
        document
    })
}

fn api_group(group: &str, versions: &[String]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|version| json!({"groupVersion": format!("{group}/{version}"), "version": version}))
        .collect();
    json!({"name": group, "versions": versions, "preferredVersion": versions[0]})
}

/// `/api/v1` or `/apis/<group>/<version>` as an APIResourceList, or `None` if nothing is served there.
pub fn api_resource_list(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let defs: Vec<_> = registry.iter().filter(|def| def.group == group && def.version == version).collect();
    if defs.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for def in defs {
        let mut resource = json!({
            "name": def.plural,
            "singularName": def.singular,
            "namespaced": def.namespaced,
            "kind": def.kind,
            "verbs": def.verbs,
        });
        if !def.short_names.is_empty() {
            resource["shortNames"] = json!(def.short_names);
        }
        if !def.categories.is_empty() {
            resource["categories"] = json!(def.categories);
        }
        resources.push(resource);
        if def.status {
            resources.push(json!({"name": format!("{}/status", def.plural), "singularName": "", "namespaced": def.namespaced, "kind": def.kind, "verbs": ["get", "patch", "update"]}));
        }
        if def.scale.is_some() {
            resources.push(json!({"name": format!("{}/scale", def.plural), "singularName": "", "namespaced": def.namespaced, "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]}));
        }
        for (subresource, (sub_group, sub_version, kind), verbs) in extra_subresources(def) {
            let mut entry = json!({"name": format!("{}/{subresource}", def.plural), "singularName": "", "namespaced": def.namespaced, "kind": kind, "verbs": verbs});
            if sub_group != def.group || sub_version != def.version {
                entry["group"] = json!(sub_group);
                entry["version"] = json!(sub_version);
            }
            resources.push(entry);
        }
    }
    let group_version = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::registry::built_in_resources;

    #[test]
    fn aggregated_discovery_lists_deployments_with_scale() {
        let registry = Registry::new(built_in_resources());
        let apis = aggregated(&registry, false);
        let apps = apis["items"].as_array().unwrap().iter().find(|item| item["metadata"]["name"] == "apps").unwrap();
        let deployments = apps["versions"][0]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|resource| resource["resource"] == "deployments")
            .unwrap();
        assert_eq!(deployments["shortNames"], json!(["deploy"]));
        assert_eq!(deployments["categories"], json!(["all"]));
        let scale = deployments["subresources"].as_array().unwrap().iter().find(|s| s["subresource"] == "scale");
        assert_eq!(scale.unwrap()["responseKind"]["kind"], "Scale");

        let core = aggregated(&registry, true);
        assert_eq!(core["items"].as_array().unwrap().len(), 1);
        assert_eq!(core["items"][0]["metadata"]["name"], "");
    }

    #[test]
    fn legacy_documents() {
        let registry = Registry::new(built_in_resources());
        let list = api_resource_list(&registry, "", "v1").unwrap();
        let names: Vec<&str> =
            list["resources"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
        assert!(names.contains(&"pods") && names.contains(&"pods/status") && names.contains(&"namespaces/finalize"));
        assert!(api_resource_list(&registry, "nope", "v1").is_none());
        assert!(api_group_document(&registry, "apps").unwrap()["preferredVersion"]["groupVersion"] == "apps/v1");
        assert!(wants_aggregated(
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
        ));
        assert!(!wants_aggregated("application/json"));
        assert!(version_priority("v1") > version_priority("v2beta1"));
        assert!(version_priority("v1beta2") > version_priority("v1alpha1"));
    }
}
