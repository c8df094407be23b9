//! The scheduler's filters and scores, as pure functions of a pod, a node and what the node has in use, in
//! upstream's default plugin order: NodeUnschedulable, NodeName, TaintToleration, NodeAffinity (with
//! nodeSelector), NodePorts, NodeResourcesFit; scores TaintToleration (weight 3), NodeAffinity (2),
//! PodTopologySpread (2: the pod's ScheduleAnyway constraints, `topology.rs`, or for a pod without constraints
//! spreading of one workload's pods over nodes, standing in for upstream's system default constraints),
//! InterPodAffinity (2, `affinity.rs`), NodeResourcesFit's least-allocated (1) and
//! NodeResourcesBalancedAllocation (1). The filters of VolumeBinding (`volumes.rs`), PodTopologySpread and
//! InterPodAffinity (`domains.rs`) follow these, as upstream orders them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, NodeSelectorRequirement, NodeSelectorTerm, Pod, Taint, Toleration};

use super::domains::Scores;
use super::facts::{NodeFacts, NodeUsage, PodFacts};

/// Why a node does not fit; the texts are upstream's, as `kubectl describe pod` shows them in FailedScheduling.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Unfit {
    Unschedulable,
    OtherNodeName,
    Taint(String),
    Affinity,
    Ports,
    Insufficient(&'static str),
    TooManyPods,
    /// A volume of the pod can only be reached from other nodes (`volumes.rs`).
    VolumeNodeAffinity,
    /// Placing the pod on the node would break a DoNotSchedule spread constraint (`topology.rs`).
    TopologySpread,
    /// The node lacks the topology key of a DoNotSchedule spread constraint.
    TopologySpreadMissingLabel,
    /// The pod's required podAffinity finds no matching pod in the node's domain (`affinity.rs`).
    PodAffinity,
    /// The pod's required podAntiAffinity finds a matching pod in the node's domain.
    PodAntiAffinity,
    /// A pod in the node's domain has a required podAntiAffinity that matches the pod.
    ExistingPodsAntiAffinity,
}

impl Unfit {
    pub fn reason(&self) -> String {
        match self {
            Unfit::Unschedulable => "node(s) were unschedulable".into(),
            Unfit::OtherNodeName => "node(s) didn't match the requested node name".into(),
            Unfit::Taint(taint) => format!("node(s) had untolerated taint {{{taint}}}"),
            Unfit::Affinity => "node(s) didn't match Pod's node affinity/selector".into(),
            Unfit::Ports => "node(s) didn't have free ports for the requested pod ports".into(),
            Unfit::Insufficient(resource) => format!("Insufficient {resource}"),
            Unfit::TooManyPods => "Too many pods".into(),
            Unfit::VolumeNodeAffinity => "node(s) had volume node affinity conflict".into(),
            Unfit::TopologySpread => "node(s) didn't match pod topology spread constraints".into(),
            Unfit::TopologySpreadMissingLabel => {
                "node(s) didn't match pod topology spread constraints (missing required label)".into()
            }
            Unfit::PodAffinity => "node(s) didn't match pod affinity rules".into(),
            Unfit::PodAntiAffinity => "node(s) didn't match pod anti-affinity rules".into(),
            Unfit::ExistingPodsAntiAffinity => "node(s) didn't satisfy existing pods anti-affinity rules".into(),
        }
    }
}

/// The filters in upstream's order; the first that fails says why.
pub fn filter(
    pod: &Pod,
    facts: &PodFacts,
    node: &Node,
    node_facts: &NodeFacts,
    usage: Option<&NodeUsage>,
) -> Result<(), Unfit> {
    let spec = pod.spec.as_ref();
    let node_spec = node.spec.as_ref();
    let tolerations: &[Toleration] = spec.and_then(|spec| spec.tolerations.as_deref()).unwrap_or_default();
    if node_spec.and_then(|spec| spec.unschedulable).unwrap_or(false)
        && !tolerations.iter().any(|toleration| {
            tolerates(
                toleration,
                &Taint { key: UNSCHEDULABLE_TAINT.into(), effect: "NoSchedule".into(), ..Default::default() },
            )
        })
    {
        return Err(Unfit::Unschedulable);
    }
    if let Some(wanted) = spec.and_then(|spec| spec.node_name.as_deref()).filter(|name| !name.is_empty()) {
        if node.metadata.name.as_deref() != Some(wanted) {
            return Err(Unfit::OtherNodeName);
        }
    }
    for taint in node_spec.and_then(|spec| spec.taints.as_deref()).unwrap_or_default() {
        if (taint.effect == "NoSchedule" || taint.effect == "NoExecute")
            && !tolerations.iter().any(|toleration| tolerates(toleration, taint))
        {
            return Err(Unfit::Taint(format!("{}: {}", taint.key, taint.value.as_deref().unwrap_or(""))));
        }
    }
    if !matches_node_selector_and_affinity(pod, node) {
        return Err(Unfit::Affinity);
    }
    if let Some(usage) = usage {
        for (protocol, host_ip, port) in &facts.host_ports {
            let clashes = usage.host_ports.iter().any(|(used_protocol, used_ip, used_port)| {
                used_protocol == protocol
                    && used_port == port
                    && (used_ip == host_ip || used_ip == "0.0.0.0" || host_ip == "0.0.0.0")
            });
            if clashes {
                return Err(Unfit::Ports);
            }
        }
    }
    let capacity = node_facts.allocatable;
    let max_pods = node_facts.max_pods;
    let in_use = usage.map(|usage| usage.requested).unwrap_or_default();
    let pods = usage.map_or(0, |usage| usage.pods);
    if pods + 1 > max_pods {
        return Err(Unfit::TooManyPods);
    }
    let wanted = facts.requests;
    if wanted.milli_cpu > 0 && in_use.milli_cpu + wanted.milli_cpu > capacity.milli_cpu {
        return Err(Unfit::Insufficient("cpu"));
    }
    if wanted.memory > 0 && in_use.memory + wanted.memory > capacity.memory {
        return Err(Unfit::Insufficient("memory"));
    }
    if wanted.ephemeral_storage > 0 && in_use.ephemeral_storage + wanted.ephemeral_storage > capacity.ephemeral_storage
    {
        return Err(Unfit::Insufficient("ephemeral-storage"));
    }
    Ok(())
}

const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";

/// Whether `toleration` tolerates `taint` (upstream's `Toleration.ToleratesTaint`).
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        _ => !key.is_empty() && toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
    }
}

pub fn matches_node_selector_and_affinity(pod: &Pod, node: &Node) -> bool {
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    let Some(spec) = pod.spec.as_ref() else { return true };
    if let Some(selector) = &spec.node_selector {
        if selector.iter().any(|(key, value)| labels.get(key) != Some(value)) {
            return false;
        }
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|affinity| affinity.node_affinity.as_ref())
        .and_then(|affinity| affinity.required_during_scheduling_ignored_during_execution.as_ref());
    match required {
        // Terms are ORed; an empty list matches nothing, as upstream.
        Some(selector) => selector.node_selector_terms.iter().any(|term| term_matches(term, node)),
        None => true,
    }
}

/// A NodeSelectorTerm: its expressions (on labels) and fields (`metadata.name`) are ANDed; an empty term matches
/// nothing.
pub(crate) fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    let expressions = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if expressions.is_empty() && fields.is_empty() {
        return false;
    }
    let name = node.metadata.name.clone().unwrap_or_default();
    expressions.iter().all(|requirement| requirement_matches(requirement, labels.get(&requirement.key)))
        && fields
            .iter()
            .all(|requirement| requirement.key == "metadata.name" && requirement_matches(requirement, Some(&name)))
}

fn requirement_matches(requirement: &NodeSelectorRequirement, value: Option<&String>) -> bool {
    let values = requirement.values.as_deref().unwrap_or_default();
    match requirement.operator.as_str() {
        "In" => value.is_some_and(|value| values.contains(value)),
        "NotIn" => !value.is_some_and(|value| values.contains(value)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        operator @ ("Gt" | "Lt") => {
            let (Some(value), Some(bound)) =
                (value.and_then(|value| value.parse::<i64>().ok()), values.first().and_then(|v| v.parse::<i64>().ok()))
            else {
                return false;
            };
            if operator == "Gt" {
                value > bound
            } else {
                value < bound
            }
        }
        _ => false,
    }
}

/// Raw per-node inputs to the scores, before normalizing across the feasible nodes.
pub struct Raw {
    /// PreferNoSchedule taints the pod does not tolerate (fewer is better).
    pub intolerable_preferred_taints: i64,
    /// Sum of the weights of matching preferred node-affinity terms (more is better).
    pub affinity_weight: i64,
    /// Pods of the same workload already on the node (fewer is better).
    pub same_owner: i64,
    /// NodeResourcesFit least-allocated, 0–100.
    pub least_allocated: i64,
    /// NodeResourcesBalancedAllocation, 0–100.
    pub balanced: i64,
}

pub fn raw_scores(pod: &Pod, facts: &PodFacts, node: &Node, node_facts: &NodeFacts, usage: Option<&NodeUsage>) -> Raw {
    let spec = pod.spec.as_ref();
    let tolerations: &[Toleration] = spec.and_then(|spec| spec.tolerations.as_deref()).unwrap_or_default();
    let intolerable_preferred_taints = node
        .spec
        .as_ref()
        .and_then(|spec| spec.taints.as_deref())
        .unwrap_or_default()
        .iter()
        .filter(|taint| taint.effect == "PreferNoSchedule")
        .filter(|taint| !tolerations.iter().any(|toleration| tolerates(toleration, taint)))
        .count() as i64;
    let affinity_weight = spec
        .and_then(|spec| spec.affinity.as_ref())
        .and_then(|affinity| affinity.node_affinity.as_ref())
        .and_then(|affinity| affinity.preferred_during_scheduling_ignored_during_execution.as_deref())
        .unwrap_or_default()
        .iter()
        .filter(|term| term_matches(&term.preference, node))
        .map(|term| i64::from(term.weight))
        .sum();
    let same_owner = match (&facts.owner, usage) {
        (Some(owner), Some(usage)) => i64::from(usage.owners.get(owner).copied().unwrap_or(0)),
        _ => 0,
    };
    let capacity = node_facts.allocatable;
    let mut requested = usage.map(|usage| usage.requested_for_scoring).unwrap_or_default();
    requested.add(&facts.requests_for_scoring);
    let fraction = |used: i64, total: i64| if total <= 0 { 1.0 } else { (used as f64 / total as f64).min(1.0) };
    let cpu = fraction(requested.milli_cpu, capacity.milli_cpu);
    let memory = fraction(requested.memory, capacity.memory);
    let least_allocated = (((1.0 - cpu) + (1.0 - memory)) / 2.0 * 100.0) as i64;
    // The standard deviation of two fractions is half their difference.
    let balanced = ((1.0 - (cpu - memory).abs() / 2.0) * 100.0) as i64;
    Raw { intolerable_preferred_taints, affinity_weight, same_owner, least_allocated, balanced }
}

/// Normalizes the raw scores across the feasible nodes and weights them, with the PodTopologySpread and
/// InterPodAffinity scores (0–100 per feasible node, `None`: see `domains::Scores`); the index of the best node is
/// chosen by the caller (ties broken at random there).
pub fn total_scores(raw: &[Raw], topology: &Scores) -> Vec<i64> {
    let max_taints = raw.iter().map(|raw| raw.intolerable_preferred_taints).max().unwrap_or(0);
    let max_affinity = raw.iter().map(|raw| raw.affinity_weight).max().unwrap_or(0);
    let max_owner = raw.iter().map(|raw| raw.same_owner).max().unwrap_or(0);
    let fewer_is_better = |value: i64, max: i64| if max == 0 { 100 } else { 100 - value * 100 / max };
    raw.iter()
        .enumerate()
        .map(|(index, raw)| {
            let taints = fewer_is_better(raw.intolerable_preferred_taints, max_taints);
            let affinity = if max_affinity == 0 { 0 } else { raw.affinity_weight * 100 / max_affinity };
            let spread = match &topology.spread {
                Some(scores) => scores[index],
                None => fewer_is_better(raw.same_owner, max_owner),
            };
            let inter_pod_affinity = topology.inter_pod_affinity.as_ref().map_or(0, |scores| scores[index]);
            3 * taints + 2 * affinity + 2 * spread + 2 * inter_pod_affinity + raw.least_allocated + raw.balanced
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(value: serde_json::Value) -> Node {
        let mut node = json!({"metadata": {"name": "n1", "labels": {"zone": "a", "gen": "5"}},
            "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"}}});
        merge(&mut node, value);
        serde_json::from_value(node).unwrap()
    }

    fn pod(spec: serde_json::Value) -> Pod {
        let mut pod = json!({"metadata": {"name": "p", "uid": "u"}, "spec": {"containers": [{"name": "c"}]}});
        merge(&mut pod, json!({ "spec": spec }));
        serde_json::from_value(pod).unwrap()
    }

    fn merge(target: &mut serde_json::Value, patch: serde_json::Value) {
        json_patch::merge(target, &patch);
    }

    fn check(pod: &Pod, node: &Node) -> Result<(), Unfit> {
        filter(pod, &PodFacts::of(pod), node, &NodeFacts::of(node), None)
    }

    #[test]
    fn taints_need_tolerations() {
        let tainted = node(json!({"spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}}));
        assert_eq!(check(&pod(json!({})), &tainted), Err(Unfit::Taint("dedicated: gpu".into())));
        let equal = pod(json!({"tolerations": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}));
        assert_eq!(check(&equal, &tainted), Ok(()));
        let exists = pod(json!({"tolerations": [{"operator": "Exists"}]}));
        assert_eq!(check(&exists, &tainted), Ok(()));
        let wrong = pod(json!({"tolerations": [{"key": "dedicated", "value": "cpu"}]}));
        assert!(check(&wrong, &tainted).is_err());
        let cordoned = node(json!({"spec": {"unschedulable": true}}));
        assert_eq!(check(&pod(json!({})), &cordoned), Err(Unfit::Unschedulable));
    }

    #[test]
    fn node_selector_and_required_affinity() {
        let n = node(json!({}));
        assert_eq!(check(&pod(json!({"nodeSelector": {"zone": "a"}})), &n), Ok(()));
        assert_eq!(check(&pod(json!({"nodeSelector": {"zone": "b"}})), &n), Err(Unfit::Affinity));
        let affinity = |expressions: serde_json::Value| {
            pod(json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                {"nodeSelectorTerms": [{"matchExpressions": expressions}]}}}}))
        };
        assert_eq!(check(&affinity(json!([{"key": "gen", "operator": "Gt", "values": ["4"]}])), &n), Ok(()));
        assert!(check(&affinity(json!([{"key": "gen", "operator": "Lt", "values": ["4"]}])), &n).is_err());
        assert_eq!(check(&affinity(json!([{"key": "zone", "operator": "NotIn", "values": ["b"]}])), &n), Ok(()));
        assert!(check(&affinity(json!([{"key": "gpu", "operator": "Exists"}])), &n).is_err());
        let by_name = pod(json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
            {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]}}}}));
        assert_eq!(check(&by_name, &n), Ok(()));
    }

    #[test]
    fn resources_ports_and_pod_count() {
        let n = node(json!({}));
        let big = pod(json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "3"}}}]}));
        assert_eq!(check(&big, &n), Err(Unfit::Insufficient("cpu")));
        let port = pod(json!({"containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 80}]}]}));
        let mut usage = super::super::facts::Usage::default();
        usage.assign("other", "n1", PodFacts::of(&port));
        assert_eq!(filter(&port, &PodFacts::of(&port), &n, &NodeFacts::of(&n), usage.node("n1")), Err(Unfit::Ports));
        let full = node(json!({"status": {"allocatable": {"pods": "1"}}}));
        assert_eq!(
            filter(&pod(json!({})), &PodFacts::default(), &full, &NodeFacts::of(&full), usage.node("n1")),
            Err(Unfit::TooManyPods)
        );
        let no_allocatable: Node = serde_json::from_value(json!({"metadata": {"name": "bare"}})).unwrap();
        assert_eq!(check(&pod(json!({})), &no_allocatable), Err(Unfit::TooManyPods));
    }

    #[test]
    fn scores_prefer_emptier_nodes_and_spread_one_workload() {
        let n = node(json!({}));
        let p = pod(json!({}));
        let facts = PodFacts { owner: Some("rs".into()), ..PodFacts::of(&p) };
        let mut usage = super::super::facts::Usage::default();
        usage.assign("a", "busy", facts.clone());
        usage.assign("b", "busy", facts.clone());
        let busy = raw_scores(&p, &facts, &n, &NodeFacts::of(&n), usage.node("busy"));
        let empty = raw_scores(&p, &facts, &n, &NodeFacts::of(&n), None);
        let totals = total_scores(&[busy, empty], &Scores { spread: None, inter_pod_affinity: None });
        assert!(totals[1] > totals[0], "{totals:?}");
    }
}
