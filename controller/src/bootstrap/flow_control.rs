//! The API Priority and Fairness objects every v1.33 cluster starts with: upstream's mandatory `exempt` and
//! `catch-all` pairs and its suggested set, with the same names, precedences, shares and rules, so tools and
//! manifests that name them (or list them, as `kubectl get flowschemas` users do) find what they expect.
//!
//! kaasd stores and serves them but does not queue requests by them: with no concurrency limits to share out, every
//! request is served as if exempt. Like every bootstrap object they are created only when missing.

use serde_json::{json, Value};

const AUTO_UPDATE: &str = "apf.kubernetes.io/autoupdate-spec";

/// `(name, nominal concurrency shares, lendable percent, queuing as (queues, hand size, queue length limit))`;
/// no queuing means requests beyond the limit are rejected.
type Level = (&'static str, u32, u32, Option<(u32, u32, u32)>);

const LIMITED_LEVELS: [Level; 7] = [
    ("catch-all", 5, 0, None),
    ("system", 30, 33, Some((64, 6, 50))),
    ("node-high", 40, 25, Some((64, 6, 50))),
    ("leader-election", 10, 0, Some((16, 4, 50))),
    ("workload-high", 40, 50, Some((128, 6, 50))),
    ("workload-low", 100, 90, Some((128, 6, 50))),
    ("global-default", 20, 50, Some((128, 6, 50))),
];

pub fn priority_level_configurations() -> Vec<Value> {
    let exempt = json!({"type": "Exempt", "exempt": {"nominalConcurrencyShares": 0, "lendablePercent": 0}});
    let limited = LIMITED_LEVELS.iter().map(|(name, shares, lendable, queuing)| {
        let limit_response = match queuing {
            Some((queues, hand_size, queue_length_limit)) => json!({
                "type": "Queue",
                "queuing": {"queues": queues, "handSize": hand_size, "queueLengthLimit": queue_length_limit},
            }),
            None => json!({"type": "Reject"}),
        };
        let spec = json!({
            "type": "Limited",
            "limited": {"nominalConcurrencyShares": shares, "lendablePercent": lendable, "limitResponse": limit_response},
        });
        (*name, spec)
    });
    std::iter::once(("exempt", exempt))
        .chain(limited)
        .map(|(name, spec)| {
            json!({
                "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
                "kind": "PriorityLevelConfiguration",
                "metadata": {"name": name, "annotations": {AUTO_UPDATE: "true"}},
                "spec": spec,
                "status": {},
            })
        })
        .collect()
}

fn groups(names: &[&str]) -> Vec<Value> {
    names.iter().map(|name| json!({"kind": "Group", "group": {"name": name}})).collect()
}

fn users(names: &[&str]) -> Vec<Value> {
    names.iter().map(|name| json!({"kind": "User", "user": {"name": name}})).collect()
}

fn kube_system_service_accounts(names: &[&str]) -> Vec<Value> {
    names
        .iter()
        .map(|name| json!({"kind": "ServiceAccount", "serviceAccount": {"name": name, "namespace": "kube-system"}}))
        .collect()
}

/// Every request: all resources in every namespace and cluster-wide, and every non-resource URL.
fn everything(subjects: Vec<Value>) -> Value {
    json!({
        "subjects": subjects,
        "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"], "namespaces": ["*"], "clusterScope": true}],
        "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
    })
}

fn resource_rule(verbs: &[&str], group: &str, resources: &[&str], namespaces: &[&str], cluster_scope: bool) -> Value {
    json!({"verbs": verbs, "apiGroups": [group], "resources": resources, "namespaces": namespaces, "clusterScope": cluster_scope})
}

/// Leader election's reads and writes: lock objects in kube-system's core group, and Leases anywhere.
fn leader_election(subjects: Vec<Value>, lock_namespaces: &[&str]) -> Value {
    let verbs = ["get", "create", "update"];
    json!({
        "subjects": subjects,
        "resourceRules": [
            resource_rule(&verbs, "", &["endpoints", "configmaps"], lock_namespaces, false),
            resource_rule(&verbs, "coordination.k8s.io", &["leases"], &["*"], false),
        ],
    })
}

pub fn flow_schemas() -> Vec<Value> {
    let everyone = || groups(&["system:unauthenticated", "system:authenticated"]);
    let controller_manager = "system:kube-controller-manager";
    let scheduler = "system:kube-scheduler";
    let all_kube_system = || kube_system_service_accounts(&["*"]);
    let endpoint_writers = [
        users(&[controller_manager]),
        kube_system_service_accounts(&["endpoint-controller", "endpointslicemirroring-controller"]),
    ]
    .concat();
    let schemas: Vec<(&str, &str, u32, Option<&str>, Value)> = vec![
        ("exempt", "exempt", 1, None, everything(groups(&["system:masters"]))),
        (
            "probes",
            "exempt",
            2,
            None,
            json!({
                "subjects": everyone(),
                "nonResourceRules": [{"verbs": ["get"], "nonResourceURLs": ["/healthz", "/readyz", "/livez"]}],
            }),
        ),
        (
            "system-leader-election",
            "leader-election",
            100,
            Some("ByUser"),
            leader_election([users(&[controller_manager, scheduler]), all_kube_system()].concat(), &["kube-system"]),
        ),
        (
            "endpoint-controller",
            "workload-high",
            150,
            Some("ByUser"),
            json!({
                "subjects": endpoint_writers,
                "resourceRules": [resource_rule(&["get", "create", "update"], "", &["endpoints"], &["*"], false)],
            }),
        ),
        (
            "workload-leader-election",
            "leader-election",
            200,
            Some("ByUser"),
            leader_election(all_kube_system(), &["*"]),
        ),
        (
            "system-node-high",
            "node-high",
            400,
            Some("ByUser"),
            json!({
                "subjects": groups(&["system:nodes"]),
                "resourceRules": [
                    resource_rule(&["*"], "", &["nodes", "nodes/status"], &["*"], true),
                    resource_rule(&["*"], "coordination.k8s.io", &["leases"], &["*"], false),
                ],
            }),
        ),
        ("system-nodes", "system", 500, Some("ByUser"), everything(groups(&["system:nodes"]))),
        (
            "kube-controller-manager",
            "workload-high",
            800,
            Some("ByNamespace"),
            everything(users(&[controller_manager])),
        ),
        ("kube-scheduler", "workload-high", 800, Some("ByNamespace"), everything(users(&[scheduler]))),
        ("kube-system-service-accounts", "workload-high", 900, Some("ByNamespace"), everything(all_kube_system())),
        ("service-accounts", "workload-low", 9000, Some("ByUser"), everything(groups(&["system:serviceaccounts"]))),
        ("global-default", "global-default", 9900, Some("ByUser"), everything(everyone())),
        ("catch-all", "catch-all", 10000, Some("ByUser"), everything(everyone())),
    ];
    schemas
        .into_iter()
        .map(|(name, level, precedence, distinguisher, rules)| {
            let mut spec = json!({
                "priorityLevelConfiguration": {"name": level},
                "matchingPrecedence": precedence,
                "rules": [rules],
            });
            if let Some(method) = distinguisher {
                spec["distinguisherMethod"] = json!({"type": method});
            }
            json!({
                "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
                "kind": "FlowSchema",
                "metadata": {"name": name, "annotations": {AUTO_UPDATE: "true"}},
                "spec": spec,
                // What upstream's configuration controller reports once the level exists: not dangling.
                "status": {"conditions": [{
                    "type": "Dangling",
                    "status": "False",
                    "lastTransitionTime": crate::apiserver::now(),
                    "reason": "Found",
                    "message": format!("This FlowSchema references the PriorityLevelConfiguration object named \"{level}\" and it exists"),
                }]},
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_names_a_level_that_exists_and_precedences_run_from_exempt_to_catch_all() {
        let levels: Vec<String> = priority_level_configurations()
            .iter()
            .map(|level| level["metadata"]["name"].as_str().unwrap().into())
            .collect();
        assert_eq!(levels.len(), 8);
        let schemas = flow_schemas();
        assert_eq!(schemas.len(), 13);
        for schema in &schemas {
            let level = schema["spec"]["priorityLevelConfiguration"]["name"].as_str().unwrap();
            assert!(levels.iter().any(|name| name == level), "{level} exists");
        }
        let precedence = |name: &str| {
            schemas.iter().find(|schema| schema["metadata"]["name"] == name).unwrap()["spec"]["matchingPrecedence"]
                .as_u64()
                .unwrap()
        };
        assert_eq!((precedence("exempt"), precedence("catch-all")), (1, 10000));
        let lowest = schemas.iter().map(|schema| schema["spec"]["matchingPrecedence"].as_u64().unwrap()).min();
        assert_eq!(lowest, Some(1));
    }
}
