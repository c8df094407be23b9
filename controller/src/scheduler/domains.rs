//! What PodTopologySpread and InterPodAffinity share: which pods are on which node, gathered once per decision
//! and only for a pod that needs it. A pod without spread constraints and inter-pod affinity terms, in a cluster
//! where no assigned pod has such terms, gets no pre-state and pays nothing per node.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod};

use super::affinity::{InterPodAffinity, PodTerms};
use super::facts::{PodFacts, Usage};
use super::plugins::Unfit;
use super::topology::{PlacedPod, TopologySpread};
use crate::controllers::informer::Informer;

/// The two plugins' pre-state for one decision.
pub struct PreFilter<'a> {
    spread: Option<TopologySpread<'a>>,
    inter_pod_affinity: Option<InterPodAffinity<'a>>,
}

/// The scores of the two plugins for the feasible nodes, 0–100 each; `None` where a plugin has nothing to say
/// (for spreading: the pod has no constraints, so the stand-in for the system defaults applies).
pub struct Scores {
    pub spread: Option<Vec<i64>>,
    pub inter_pod_affinity: Option<Vec<i64>>,
}

impl<'a> PreFilter<'a> {
    /// Computes the pre-state from the caches: `usage` says which node each cached pod counts against, so pods
    /// bound by this scheduler but not yet seen bound count in their domains.
    pub fn new(
        pod: &'a Pod,
        facts: &'a PodFacts,
        nodes: &[Arc<Node>],
        usage: &Usage,
        pods: &Informer<Pod>,
        namespaces: &Informer<Namespace>,
    ) -> PreFilter<'a> {
        let spreads =
            pod.spec.as_ref().and_then(|spec| spec.topology_spread_constraints.as_ref()).is_some_and(|c| !c.is_empty());
        let own_terms = facts.pod_affinity.as_deref();
        let affinity_applies = own_terms.is_some() || usage.has_pods_with_pod_affinity();
        if !spreads && !affinity_applies {
            return PreFilter { spread: None, inter_pod_affinity: None };
        }
        let nodes_by_name: HashMap<&str, &Node> =
            nodes.iter().map(|node| (node.metadata.name.as_deref().unwrap_or_default(), node.as_ref())).collect();
        // Spreading counts the pod's own namespace only; its own affinity terms may select pods of any.
        let cached = if own_terms.is_some() {
            pods.list()
        } else if spreads {
            pods.list_namespace(pod.metadata.namespace.as_deref().unwrap_or_default())
        } else {
            Vec::new()
        };
        let placed = placed_pods(&cached, &nodes_by_name, |uid| usage.node_of(uid));
        let spread = TopologySpread::prefilter(pod, nodes, &placed);
        let inter_pod_affinity = affinity_applies.then(|| {
            let with_terms: Vec<(&PodTerms, &Node)> = usage
                .pods_with_pod_affinity()
                .filter_map(|(node, terms)| Some((terms, *nodes_by_name.get(node)?)))
                .collect();
            let namespace_of = |name: &str| namespaces.get("", name);
            InterPodAffinity::prefilter(pod, own_terms, &placed, &with_terms, &namespace_of)
        });
        PreFilter { spread, inter_pod_affinity }
    }

    /// Filter, PodTopologySpread before InterPodAffinity as upstream orders them.
    pub fn filter(&self, node: &Node) -> Result<(), Unfit> {
        if let Some(spread) = &self.spread {
            spread.filter(node)?;
        }
        if let Some(inter_pod_affinity) = &self.inter_pod_affinity {
            inter_pod_affinity.filter(node)?;
        }
        Ok(())
    }

    /// Scores of the feasible nodes (in the order given).
    pub fn scores<'n>(&self, feasible: impl IntoIterator<Item = &'n Node>) -> Scores {
        if self.spread.is_none() && self.inter_pod_affinity.is_none() {
            return Scores { spread: None, inter_pod_affinity: None };
        }
        let feasible: Vec<&Node> = feasible.into_iter().collect();
        Scores {
            spread: self.spread.as_ref().map(|spread| spread.scores(&feasible)),
            inter_pod_affinity: self.inter_pod_affinity.as_ref().and_then(|affinity| affinity.scores(&feasible)),
        }
    }
}

/// The cached pods `node_of` places on a known node, with that node.
fn placed_pods<'a, 'usage>(
    pods: &'a [Arc<Pod>],
    nodes_by_name: &HashMap<&str, &'a Node>,
    node_of: impl Fn(&str) -> Option<&'usage str>,
) -> Vec<PlacedPod<'a>> {
    pods.iter()
        .filter_map(|pod| {
            let node_name = node_of(pod.metadata.uid.as_deref()?)?;
            Some(PlacedPod { pod, node: *nodes_by_name.get(node_name)? })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pods_bound_by_this_scheduler_count_before_the_watch_shows_them_bound() {
        let node: Node = serde_json::from_value(json!({"metadata": {"name": "n1"}})).unwrap();
        let pod = |uid: &str| -> Arc<Pod> {
            Arc::new(serde_json::from_value(json!({"metadata": {"name": uid, "uid": uid}})).unwrap())
        };
        // "assumed" is still unassigned in the cache, "gone" counts against a node no longer known, "pending"
        // is not counted at all.
        let cached = vec![pod("assumed"), pod("gone"), pod("pending")];
        let mut usage = Usage::default();
        usage.assign("assumed", "n1", PodFacts::default());
        usage.assign("gone", "n2", PodFacts::default());
        let nodes_by_name = HashMap::from([("n1", &node)]);
        let placed = placed_pods(&cached, &nodes_by_name, |uid| usage.node_of(uid));
        let names: Vec<&str> = placed.iter().map(|placed| placed.pod.metadata.name.as_deref().unwrap()).collect();
        assert_eq!(names, ["assumed"]);
    }
}
