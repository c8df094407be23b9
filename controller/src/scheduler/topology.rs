//! PodTopologySpread, as kube-scheduler v1.33 applies a pod's `spec.topologySpreadConstraints`:
//! - PreFilter (once per decision, only for a pod with constraints): for each `DoNotSchedule` constraint, the
//!   pods of the pod's namespace its selector matches, counted per domain (value of the topology key) over the
//!   nodes that count: nodes with every hard constraint's key, matching the pod's node selector and required node
//!   affinity (`nodeAffinityPolicy` Honor, the default) and, with `nodeTaintsPolicy: Honor`, whose NoSchedule and
//!   NoExecute taints the pod tolerates. Terminating pods do not count.
//! - Filter: a node without a hard constraint's key is unfit; otherwise placing the pod there must keep
//!   `pods in the node's domain + 1 (if the pod matches its own selector) - fewest pods in any domain` within
//!   `maxSkew`, the fewest being 0 while there are fewer domains than `minDomains`.
//! - Score, for `ScheduleAnyway` constraints: fewer matching pods in a node's domain is better, each constraint
//!   weighted by the log of how many domains the feasible nodes span; nodes missing a key score 0.
//!
//! `matchLabelKeys` adds `key in (the pod's value)` to the selector, as upstream's scheduler does in 1.33.
//!
//! A pod without constraints of its own gets upstream's system default constraints in upstream (hostname and
//! zone, ScheduleAnyway, selecting the pods of the Services and ReplicaSets that select the pod). Here the
//! `same_owner` score of `plugins.rs` stands in for them: it spreads one workload's pods over nodes without
//! watching Services and controllers for their selectors, which is the case that matters in practice, and costs
//! a pod without constraints nothing beyond a counter per node.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod, TopologySpreadConstraint};

use super::affinity::selector_with_label_keys;
use super::plugins::{self, Unfit};
use crate::apiserver::selector::LabelSelector;

/// An assigned pod and the node it counts against (bound, or bound by this scheduler and not yet seen bound).
#[derive(Clone, Copy)]
pub struct PlacedPod<'a> {
    pub pod: &'a Pod,
    pub node: &'a Node,
}

const HOSTNAME_KEY: &str = "kubernetes.io/hostname";

/// One constraint, its selector parsed.
#[derive(Debug, Clone)]
struct Constraint {
    max_skew: i64,
    topology_key: String,
    selector: LabelSelector,
    min_domains: usize,
    honor_node_affinity: bool,
    honor_node_taints: bool,
}

impl Constraint {
    fn of(constraint: &TopologySpreadConstraint, pod: &Pod) -> Constraint {
        let keys = constraint.match_label_keys.as_deref().unwrap_or_default();
        // A null selector selects nothing, but the keys' requirements still select the pod's own kind.
        let any_key_applies =
            pod.metadata.labels.as_ref().is_some_and(|labels| keys.iter().any(|key| labels.contains_key(key)));
        let selector = match (&constraint.label_selector, any_key_applies) {
            (None, true) => selector_with_label_keys(Some(&Default::default()), pod, keys, &[]),
            (selector, _) => selector_with_label_keys(selector.as_ref(), pod, keys, &[]),
        };
        Constraint {
            max_skew: i64::from(constraint.max_skew),
            topology_key: constraint.topology_key.clone(),
            selector,
            min_domains: constraint.min_domains.map_or(1, |min| min.max(1) as usize),
            honor_node_affinity: constraint.node_affinity_policy.as_deref() != Some("Ignore"),
            honor_node_taints: constraint.node_taints_policy.as_deref() == Some("Honor"),
        }
    }

    /// Whether `node` is one whose pods count for this constraint, by its inclusion policies.
    fn includes(&self, pod: &Pod, node: &Node) -> bool {
        (!self.honor_node_affinity || plugins::matches_node_selector_and_affinity(pod, node))
            && (!self.honor_node_taints || tolerates_scheduling_taints(pod, node))
    }
}

fn tolerates_scheduling_taints(pod: &Pod, node: &Node) -> bool {
    let tolerations = pod.spec.as_ref().and_then(|spec| spec.tolerations.as_deref()).unwrap_or_default();
    node.spec.as_ref().and_then(|spec| spec.taints.as_deref()).unwrap_or_default().iter().all(|taint| {
        !(taint.effect == "NoSchedule" || taint.effect == "NoExecute")
            || tolerations.iter().any(|toleration| plugins::tolerates(toleration, taint))
    })
}

fn label<'a>(node: &'a Node, key: &str) -> Option<&'a str> {
    node.metadata.labels.as_ref().and_then(|labels| labels.get(key)).map(String::as_str)
}

fn has_every_key(node: &Node, constraints: &[Constraint]) -> bool {
    constraints.iter().all(|constraint| label(node, &constraint.topology_key).is_some())
}

/// Matching pods per domain for each of `constraints`, over the nodes that count. Every domain of such a node is
/// present, with 0 when it has no matching pod.
fn count_per_domain(
    pod: &Pod,
    constraints: &[Constraint],
    nodes: &[Arc<Node>],
    placed: &[PlacedPod<'_>],
) -> Vec<HashMap<String, i64>> {
    let mut counts = vec![HashMap::new(); constraints.len()];
    // For each counting node, which constraints it counts for.
    let mut counting: HashMap<&str, Vec<bool>> = HashMap::new();
    for node in nodes {
        if !has_every_key(node, constraints) {
            continue;
        }
        let included: Vec<bool> = constraints.iter().map(|constraint| constraint.includes(pod, node)).collect();
        for (index, constraint) in constraints.iter().enumerate() {
            if included[index] {
                let domain = label(node, &constraint.topology_key).unwrap_or_default();
                counts[index].entry(domain.to_string()).or_insert(0);
            }
        }
        counting.insert(node.metadata.name.as_deref().unwrap_or_default(), included);
    }
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    for placed in placed {
        if placed.pod.metadata.namespace.as_deref().unwrap_or_default() != namespace
            || placed.pod.metadata.deletion_timestamp.is_some()
        {
            continue;
        }
        let Some(included) = counting.get(placed.node.metadata.name.as_deref().unwrap_or_default()) else { continue };
        for (index, constraint) in constraints.iter().enumerate() {
            if included[index] && constraint.selector.matches_labels(placed.pod.metadata.labels.as_ref()) {
                let domain = label(placed.node, &constraint.topology_key).unwrap_or_default();
                *counts[index].entry(domain.to_string()).or_insert(0) += 1;
            }
        }
    }
    counts
}

/// The pre-state of one decision for a pod with spread constraints.
pub struct TopologySpread<'a> {
    pod: &'a Pod,
    hard: Vec<Constraint>,
    /// Per hard constraint: matching pods per domain.
    hard_counts: Vec<HashMap<String, i64>>,
    /// Per hard constraint: the fewest matching pods in a domain (the global minimum of the skew).
    hard_minimums: Vec<i64>,
    soft: Vec<Constraint>,
    soft_counts: Vec<HashMap<String, i64>>,
}

impl<'a> TopologySpread<'a> {
    /// PreFilter; `None` for a pod without constraints.
    pub fn prefilter(pod: &'a Pod, nodes: &[Arc<Node>], placed: &[PlacedPod<'_>]) -> Option<TopologySpread<'a>> {
        let constraints = pod.spec.as_ref()?.topology_spread_constraints.as_deref().filter(|c| !c.is_empty())?;
        let parse = |action: &str| -> Vec<Constraint> {
            constraints
                .iter()
                .filter(|constraint| constraint.when_unsatisfiable == action)
                .map(|constraint| Constraint::of(constraint, pod))
                .collect()
        };
        let hard = parse("DoNotSchedule");
        let soft = parse("ScheduleAnyway");
        let hard_counts = count_per_domain(pod, &hard, nodes, placed);
        let hard_minimums =
            hard.iter()
                .zip(&hard_counts)
                .map(|(constraint, counts)| {
                    if counts.len() < constraint.min_domains {
                        0
                    } else {
                        counts.values().copied().min().unwrap_or(0)
                    }
                })
                .collect();
        let soft_counts = count_per_domain(pod, &soft, nodes, placed);
        Some(TopologySpread { pod, hard, hard_counts, hard_minimums, soft, soft_counts })
    }

    /// Filter: whether placing the pod on `node` keeps every hard constraint's skew within its maxSkew.
    pub fn filter(&self, node: &Node) -> Result<(), Unfit> {
        for (index, constraint) in self.hard.iter().enumerate() {
            let Some(domain) = label(node, &constraint.topology_key) else {
                return Err(Unfit::TopologySpreadMissingLabel);
            };
            let matching = self.hard_counts[index].get(domain).copied().unwrap_or(0);
            let itself = i64::from(constraint.selector.matches_labels(self.pod.metadata.labels.as_ref()));
            if matching + itself - self.hard_minimums[index] > constraint.max_skew {
                return Err(Unfit::TopologySpread);
            }
        }
        Ok(())
    }

    /// Score of each feasible node, normalized to 0–100 (more is better); all 0 when the pod has only hard
    /// constraints, which then also turn off the stand-in for the system defaults.
    pub fn scores(&self, feasible: &[&Node]) -> Vec<i64> {
        if self.soft.is_empty() {
            return vec![0; feasible.len()];
        }
        let scored: Vec<bool> = feasible.iter().map(|node| has_every_key(node, &self.soft)).collect();
        let weights: Vec<f64> = self
            .soft
            .iter()
            .map(|constraint| {
                let domains = if constraint.topology_key == HOSTNAME_KEY {
                    scored.iter().filter(|scored| **scored).count()
                } else {
                    let values: HashSet<&str> = feasible
                        .iter()
                        .zip(&scored)
                        .filter(|(_, scored)| **scored)
                        .filter_map(|(node, _)| label(node, &constraint.topology_key))
                        .collect();
                    values.len()
                };
                // Counts in a topology of many small domains are not watered down by one of few large ones.
                ((domains + 2) as f64).ln()
            })
            .collect();
        let raw: Vec<Option<i64>> = feasible
            .iter()
            .zip(&scored)
            .map(|(node, scored)| {
                if !scored {
                    return None;
                }
                let mut score = 0.0;
                for (index, constraint) in self.soft.iter().enumerate() {
                    let domain = label(node, &constraint.topology_key).unwrap_or_default();
                    let matching = self.soft_counts[index].get(domain).copied().unwrap_or(0);
                    // maxSkew - 1 waters down differences between domains, making a larger maxSkew more tolerant.
                    score += matching as f64 * weights[index] + (constraint.max_skew - 1) as f64;
                }
                Some(score.round() as i64)
            })
            .collect();
        let minimum = raw.iter().flatten().copied().min().unwrap_or(0);
        let maximum = raw.iter().flatten().copied().max().unwrap_or(0).max(0);
        raw.iter()
            .map(|score| match score {
                None => 0,
                Some(_) if maximum == 0 => 100,
                Some(score) => 100 * (maximum + minimum - score) / maximum,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, zone: Option<&str>) -> Arc<Node> {
        let mut labels = json!({"kubernetes.io/hostname": name});
        if let Some(zone) = zone {
            labels["zone"] = json!(zone);
        }
        Arc::new(serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap())
    }

    fn pod(labels: serde_json::Value, spec: serde_json::Value) -> Pod {
        let mut pod = json!({"metadata": {"name": "p", "namespace": "default", "labels": labels},
            "spec": {"containers": [{"name": "c"}]}});
        json_patch::merge(&mut pod, &json!({ "spec": spec }));
        serde_json::from_value(pod).unwrap()
    }

    fn zone_constraint(max_skew: i32, action: &str) -> serde_json::Value {
        json!({"topologySpreadConstraints": [{"maxSkew": max_skew, "topologyKey": "zone",
            "whenUnsatisfiable": action, "labelSelector": {"matchLabels": {"app": "web"}}}]})
    }

    /// Two zones: a has nodes a1 and a2, b has b1; c1 has no zone label.
    fn cluster() -> Vec<Arc<Node>> {
        vec![node("a1", Some("a")), node("a2", Some("a")), node("b1", Some("b")), node("c1", None)]
    }

    fn placed<'a>(pods: &'a [(Pod, Arc<Node>)]) -> Vec<PlacedPod<'a>> {
        pods.iter().map(|(pod, node)| PlacedPod { pod, node }).collect()
    }

    #[test]
    fn a_pod_without_constraints_has_no_pre_state() {
        let plain = pod(json!({"app": "web"}), json!({}));
        assert!(TopologySpread::prefilter(&plain, &cluster(), &[]).is_none());
    }

    #[test]
    fn hard_constraints_keep_the_skew_within_max_skew() {
        let nodes = cluster();
        let incoming = pod(json!({"app": "web"}), zone_constraint(1, "DoNotSchedule"));
        let web = pod(json!({"app": "web"}), json!({}));
        let other = pod(json!({"app": "db"}), json!({}));
        // Zone a has one web pod, zone b none (the db pod does not match).
        let existing = vec![(web.clone(), nodes[0].clone()), (other.clone(), nodes[2].clone())];
        let spread = TopologySpread::prefilter(&incoming, &nodes, &placed(&existing)).unwrap();
        assert_eq!(spread.filter(&nodes[0]), Err(Unfit::TopologySpread));
        assert_eq!(spread.filter(&nodes[1]), Err(Unfit::TopologySpread));
        assert_eq!(spread.filter(&nodes[2]), Ok(()));
        assert_eq!(spread.filter(&nodes[3]), Err(Unfit::TopologySpreadMissingLabel));
        assert_eq!(Unfit::TopologySpread.reason(), "node(s) didn't match pod topology spread constraints");
        assert_eq!(
            Unfit::TopologySpreadMissingLabel.reason(),
            "node(s) didn't match pod topology spread constraints (missing required label)"
        );

        // With one pod in each zone, both fit again.
        let existing = vec![(web.clone(), nodes[0].clone()), (web.clone(), nodes[2].clone())];
        let spread = TopologySpread::prefilter(&incoming, &nodes, &placed(&existing)).unwrap();
        assert_eq!(spread.filter(&nodes[1]), Ok(()));

        // Terminating pods and pods of other namespaces do not count.
        let mut terminating = web.clone();
        terminating.metadata.deletion_timestamp = Some(serde_json::from_value(json!("2025-01-01T00:00:00Z")).unwrap());
        let mut elsewhere = web.clone();
        elsewhere.metadata.namespace = Some("other".into());
        let existing = vec![(terminating, nodes[0].clone()), (elsewhere, nodes[0].clone())];
        let spread = TopologySpread::prefilter(&incoming, &nodes, &placed(&existing)).unwrap();
        assert_eq!(spread.filter(&nodes[0]), Ok(()));
    }

    #[test]
    fn a_pod_outside_its_own_selector_adds_nothing_to_the_skew() {
        let nodes = cluster();
        let incoming = pod(json!({"app": "other"}), zone_constraint(1, "DoNotSchedule"));
        let web = pod(json!({"app": "web"}), json!({}));
        let existing = vec![(web, nodes[0].clone())];
        let spread = TopologySpread::prefilter(&incoming, &nodes, &placed(&existing)).unwrap();
        assert_eq!(spread.filter(&nodes[0]), Ok(()));
    }

    #[test]
    fn min_domains_counts_missing_domains_as_empty() {
        let nodes = cluster();
        let mut spec = zone_constraint(1, "DoNotSchedule");
        spec["topologySpreadConstraints"][0]["minDomains"] = json!(3);
        let incoming = pod(json!({"app": "web"}), spec);
        let web = pod(json!({"app": "web"}), json!({}));
        // One pod in each of the two zones: the minimum would be 1, but two domains are fewer than three.
        let existing = vec![(web.clone(), nodes[0].clone()), (web, nodes[2].clone())];
        let spread = TopologySpread::prefilter(&incoming, &nodes, &placed(&existing)).unwrap();
        assert_eq!(spread.filter(&nodes[1]), Err(Unfit::TopologySpread));
        assert_eq!(spread.filter(&nodes[2]), Err(Unfit::TopologySpread));
    }

    #[test]
    fn node_inclusion_policies_decide_which_domains_count() {
        let mut nodes = cluster();
        let mut tainted: Node = (*node("b2", Some("c"))).clone();
        tainted.spec =
            Some(serde_json::from_value(json!({"taints": [{"key": "gpu", "effect": "NoSchedule"}]})).unwrap());
        nodes.push(Arc::new(tainted));
        let web = pod(json!({"app": "web"}), json!({}));
        let existing = vec![(web.clone(), nodes[0].clone()), (web, nodes[2].clone())];
        // Zone c (empty) counts by default: its minimum 0 keeps zones a and b from taking another pod.
        let incoming = pod(json!({"app": "web"}), zone_constraint(1, "DoNotSchedule"));
        let spread = TopologySpread::prefilter(&incoming, &nodes, &placed(&existing)).unwrap();
        assert_eq!(spread.filter(&nodes[1]), Err(Unfit::TopologySpread));
        // With nodeTaintsPolicy Honor, the untolerated node's zone is left out.
        let mut spec = zone_constraint(1, "DoNotSchedule");
        spec["topologySpreadConstraints"][0]["nodeTaintsPolicy"] = json!("Honor");
        let incoming = pod(json!({"app": "web"}), spec);
        let spread = TopologySpread::prefilter(&incoming, &nodes, &placed(&existing)).unwrap();
        assert_eq!(spread.filter(&nodes[1]), Ok(()));
        // The node selector leaves zone b out by default (Honor), not with Ignore.
        let mut spec = zone_constraint(1, "DoNotSchedule");
        spec["nodeSelector"] = json!({"zone": "a"});
        let incoming = pod(json!({"app": "web"}), spec.clone());
        let existing_in_a = vec![(pod(json!({"app": "web"}), json!({})), nodes[0].clone())];
        let spread = TopologySpread::prefilter(&incoming, &nodes[..3], &placed(&existing_in_a)).unwrap();
        assert_eq!(spread.filter(&nodes[1]), Ok(()));
        spec["topologySpreadConstraints"][0]["nodeAffinityPolicy"] = json!("Ignore");
        let incoming = pod(json!({"app": "web"}), spec);
        let spread = TopologySpread::prefilter(&incoming, &nodes[..3], &placed(&existing_in_a)).unwrap();
        assert_eq!(spread.filter(&nodes[1]), Err(Unfit::TopologySpread));
    }

    #[test]
    fn match_label_keys_narrow_the_selector_to_the_pods_value() {
        let nodes = cluster();
        let mut spec = zone_constraint(1, "DoNotSchedule");
        spec["topologySpreadConstraints"][0]["matchLabelKeys"] = json!(["pod-template-hash"]);
        let incoming = pod(json!({"app": "web", "pod-template-hash": "new"}), spec);
        // Two pods of the old revision in zone a do not count against the new one.
        let old = pod(json!({"app": "web", "pod-template-hash": "old"}), json!({}));
        let existing = vec![(old.clone(), nodes[0].clone()), (old, nodes[1].clone())];
        let spread = TopologySpread::prefilter(&incoming, &nodes, &placed(&existing)).unwrap();
        assert_eq!(spread.filter(&nodes[0]), Ok(()));
    }

    #[test]
    fn soft_constraints_prefer_emptier_domains_and_ignore_nodes_without_the_key() {
        let nodes = cluster();
        let incoming = pod(json!({"app": "web"}), zone_constraint(1, "ScheduleAnyway"));
        let web = pod(json!({"app": "web"}), json!({}));
        let existing = vec![(web.clone(), nodes[0].clone()), (web, nodes[1].clone())];
        let spread = TopologySpread::prefilter(&incoming, &nodes, &placed(&existing)).unwrap();
        // Soft constraints never filter.
        assert_eq!(spread.filter(&nodes[3]), Ok(()));
        let feasible: Vec<&Node> = nodes.iter().map(|node| node.as_ref()).collect();
        let scores = spread.scores(&feasible);
        assert_eq!(scores[2], 100, "{scores:?}");
        assert!(scores[0] < scores[2] && scores[0] == scores[1], "{scores:?}");
        assert_eq!(scores[3], 0, "{scores:?}");
        // Only hard constraints: no score, for every node alike.
        let hard = pod(json!({"app": "web"}), zone_constraint(1, "DoNotSchedule"));
        let spread = TopologySpread::prefilter(&hard, &nodes, &[]).unwrap();
        assert_eq!(spread.scores(&feasible), vec![0, 0, 0, 0]);
    }
}
