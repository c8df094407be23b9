//! InterPodAffinity, as kube-scheduler v1.33 applies `podAffinity` and `podAntiAffinity`:
//! - PreFilter (once per decision, only when the pod has terms or some assigned pod has): counts per topology
//!   domain (a term's topology key and the value a node has for it) of
//!   - assigned pods that match all the pod's required affinity terms,
//!   - assigned pods that match one of its required anti-affinity terms,
//!   - assigned pods whose own required anti-affinity terms match the pod (the symmetric rule);
//! - Filter, in upstream's order: every required affinity term's domain on the node must hold a matching pod (a
//!   node without a term's key is unfit), except for the first pod of a group that wants to be together: when no
//!   assigned pod matches and the pod matches its own terms, any node with the keys fits; no required
//!   anti-affinity term's domain may hold a matching pod; no assigned pod's anti-affinity may forbid the node's
//!   domains;
//! - Score: per domain, the weights of the pod's preferred affinity terms matched by pods there, less those of
//!   its preferred anti-affinity terms, plus what assigned pods' terms say of the pod (their required affinity
//!   with upstream's hardPodAffinityWeight 1, their preferred affinity and anti-affinity), normalized between the
//!   lowest and highest node.
//!
//! A term selects pods of its `namespaces`, or of the namespaces its `namespaceSelector` selects (`{}`: all), or
//! else of the pod's own namespace. `matchLabelKeys` and `mismatchLabelKeys` become `key in (value)` and
//! `key notin (value)` with the owning pod's value, which is what upstream's API server writes into the selector
//! at pod creation.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod, PodAffinityTerm};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector as LabelSelectorObject, LabelSelectorRequirement};

use super::plugins::Unfit;
use super::topology::PlacedPod;
use crate::apiserver::selector::LabelSelector;

/// Upstream's default hardPodAffinityWeight: what an assigned pod's required affinity term matching the incoming
/// pod adds to the score of the nodes in its domain.
const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

/// Looks up a namespace, for the labels a `namespaceSelector` matches.
pub type NamespaceLookup<'a> = &'a dyn Fn(&str) -> Option<Arc<Namespace>>;

/// `selector` with `key in (value)` for each of `match_keys` and `key notin (value)` for each of `mismatch_keys`
/// that `owner` has a label for; a null selector stays null (it selects nothing either way).
pub(crate) fn selector_with_label_keys(
    selector: Option<&LabelSelectorObject>,
    owner: &Pod,
    match_keys: &[String],
    mismatch_keys: &[String],
) -> LabelSelector {
    let Some(selector) = selector else { return LabelSelector::nothing() };
    let mut selector = selector.clone();
    let labels = owner.metadata.labels.as_ref();
    for (keys, operator) in [(match_keys, "In"), (mismatch_keys, "NotIn")] {
        for key in keys {
            let Some(value) = labels.and_then(|labels| labels.get(key)) else { continue };
            selector.match_expressions.get_or_insert_with(Vec::new).push(LabelSelectorRequirement {
                key: key.clone(),
                operator: operator.to_string(),
                values: Some(vec![value.clone()]),
            });
        }
    }
    // The API server validated the selector; one that still does not parse selects nothing, as upstream's
    // scheduler skips terms it cannot parse.
    serde_json::to_value(&selector)
        .ok()
        .and_then(|value| LabelSelector::from_label_selector(&value).ok())
        .unwrap_or_else(LabelSelector::nothing)
}

/// One podAffinity or podAntiAffinity term, parsed for the pod that has it.
#[derive(Debug, Clone)]
pub struct AffinityTerm {
    selector: LabelSelector,
    namespaces: BTreeSet<String>,
    namespace_selector: Option<LabelSelector>,
    topology_key: String,
}

impl AffinityTerm {
    fn of(term: &PodAffinityTerm, owner: &Pod) -> AffinityTerm {
        let selector = selector_with_label_keys(
            term.label_selector.as_ref(),
            owner,
            term.match_label_keys.as_deref().unwrap_or_default(),
            term.mismatch_label_keys.as_deref().unwrap_or_default(),
        );
        let mut namespaces: BTreeSet<String> = term.namespaces.iter().flatten().cloned().collect();
        let namespace_selector = term.namespace_selector.as_ref().map(|selector| {
            serde_json::to_value(selector)
                .ok()
                .and_then(|value| LabelSelector::from_label_selector(&value).ok())
                .unwrap_or_else(LabelSelector::nothing)
        });
        if namespaces.is_empty() && namespace_selector.is_none() {
            namespaces.insert(owner.metadata.namespace.clone().unwrap_or_default());
        }
        AffinityTerm { selector, namespaces, namespace_selector, topology_key: term.topology_key.clone() }
    }

    /// Whether `pod` is one of the pods this term selects.
    fn matches(&self, pod: &Pod, namespace_of: NamespaceLookup<'_>) -> bool {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let in_scope = self.namespaces.contains(namespace)
            || self.namespace_selector.as_ref().is_some_and(|selector| {
                selector.is_empty()
                    || namespace_of(namespace)
                        .is_some_and(|namespace| selector.matches_labels(namespace.metadata.labels.as_ref()))
            });
        in_scope && self.selector.matches_labels(pod.metadata.labels.as_ref())
    }

    /// The domain of `node` for this term, if the node has the key.
    fn domain(&self, node: &Node) -> Option<(String, String)> {
        let value = node.metadata.labels.as_ref()?.get(&self.topology_key)?;
        Some((self.topology_key.clone(), value.clone()))
    }
}

/// A pod's inter-pod affinity terms.
#[derive(Debug, Default)]
pub struct PodTerms {
    required_affinity: Vec<AffinityTerm>,
    required_anti_affinity: Vec<AffinityTerm>,
    preferred_affinity: Vec<(i64, AffinityTerm)>,
    preferred_anti_affinity: Vec<(i64, AffinityTerm)>,
}

impl PodTerms {
    /// The pod's terms; `None` for a pod without podAffinity and podAntiAffinity.
    pub fn of(pod: &Pod) -> Option<Arc<PodTerms>> {
        let affinity = pod.spec.as_ref()?.affinity.as_ref()?;
        if affinity.pod_affinity.is_none() && affinity.pod_anti_affinity.is_none() {
            return None;
        }
        let required = |terms: Option<&Vec<PodAffinityTerm>>| -> Vec<AffinityTerm> {
            terms.into_iter().flatten().map(|term| AffinityTerm::of(term, pod)).collect()
        };
        let preferred = |terms: Option<&Vec<k8s_openapi::api::core::v1::WeightedPodAffinityTerm>>| {
            terms
                .into_iter()
                .flatten()
                .map(|term| (i64::from(term.weight), AffinityTerm::of(&term.pod_affinity_term, pod)))
                .collect::<Vec<_>>()
        };
        let together = affinity.pod_affinity.as_ref();
        let apart = affinity.pod_anti_affinity.as_ref();
        let terms = PodTerms {
            required_affinity: required(
                together.and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref()),
            ),
            required_anti_affinity: required(
                apart.and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref()),
            ),
            preferred_affinity: preferred(
                together.and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_ref()),
            ),
            preferred_anti_affinity: preferred(
                apart.and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_ref()),
            ),
        };
        let empty = terms.required_affinity.is_empty()
            && terms.required_anti_affinity.is_empty()
            && terms.preferred_affinity.is_empty()
            && terms.preferred_anti_affinity.is_empty();
        (!empty).then(|| Arc::new(terms))
    }

    fn matches_all_required_affinity(&self, pod: &Pod, namespace_of: NamespaceLookup<'_>) -> bool {
        !self.required_affinity.is_empty() && self.required_affinity.iter().all(|term| term.matches(pod, namespace_of))
    }
}

/// A topology domain: a key and a node's value for it.
type Domain = (String, String);

/// The pre-state of one decision.
pub struct InterPodAffinity<'a> {
    terms: Option<&'a PodTerms>,
    /// Pods matching all the pod's required affinity terms, per domain of each term.
    affinity_counts: HashMap<Domain, i64>,
    /// Whether the pod may go anywhere its affinity terms' keys exist: it matches its own terms and no assigned
    /// pod does.
    first_of_its_group: bool,
    /// Pods matching one of the pod's required anti-affinity terms, per domain of that term.
    anti_affinity_counts: HashMap<Domain, i64>,
    /// Assigned pods whose required anti-affinity terms match the pod, per domain of the term.
    existing_anti_affinity_counts: HashMap<Domain, i64>,
    /// The score of each domain.
    domain_scores: HashMap<Domain, i64>,
}

impl<'a> InterPodAffinity<'a> {
    /// PreFilter and PreScore. `terms` are the pod's own; `placed` every assigned pod (needed only when the pod has
    /// terms); `with_terms` the assigned pods that have terms, with their nodes.
    pub fn prefilter(
        pod: &Pod,
        terms: Option<&'a PodTerms>,
        placed: &[PlacedPod<'_>],
        with_terms: &[(&PodTerms, &Node)],
        namespace_of: NamespaceLookup<'_>,
    ) -> InterPodAffinity<'a> {
        let mut state = InterPodAffinity {
            terms,
            affinity_counts: HashMap::new(),
            first_of_its_group: false,
            anti_affinity_counts: HashMap::new(),
            existing_anti_affinity_counts: HashMap::new(),
            domain_scores: HashMap::new(),
        };
        if let Some(terms) = terms {
            for placed in placed {
                if terms.matches_all_required_affinity(placed.pod, namespace_of) {
                    for term in &terms.required_affinity {
                        if let Some(domain) = term.domain(placed.node) {
                            *state.affinity_counts.entry(domain).or_insert(0) += 1;
                        }
                    }
                }
                for term in &terms.required_anti_affinity {
                    if term.matches(placed.pod, namespace_of) {
                        if let Some(domain) = term.domain(placed.node) {
                            *state.anti_affinity_counts.entry(domain).or_insert(0) += 1;
                        }
                    }
                }
                let preferred = terms
                    .preferred_affinity
                    .iter()
                    .map(|(weight, term)| (*weight, term))
                    .chain(terms.preferred_anti_affinity.iter().map(|(weight, term)| (-weight, term)));
                for (weight, term) in preferred {
                    if term.matches(placed.pod, namespace_of) {
                        if let Some(domain) = term.domain(placed.node) {
                            *state.domain_scores.entry(domain).or_insert(0) += weight;
                        }
                    }
                }
            }
            state.first_of_its_group =
                state.affinity_counts.is_empty() && terms.matches_all_required_affinity(pod, namespace_of);
        }
        for (existing, node) in with_terms {
            for term in &existing.required_anti_affinity {
                if term.matches(pod, namespace_of) {
                    if let Some(domain) = term.domain(node) {
                        *state.existing_anti_affinity_counts.entry(domain).or_insert(0) += 1;
                    }
                }
            }
            let said_of_the_pod = existing
                .required_affinity
                .iter()
                .map(|term| (HARD_POD_AFFINITY_WEIGHT, term))
                .chain(existing.preferred_affinity.iter().map(|(weight, term)| (*weight, term)))
                .chain(existing.preferred_anti_affinity.iter().map(|(weight, term)| (-weight, term)));
            for (weight, term) in said_of_the_pod {
                if term.matches(pod, namespace_of) {
                    if let Some(domain) = term.domain(node) {
                        *state.domain_scores.entry(domain).or_insert(0) += weight;
                    }
                }
            }
        }
        state
    }

    /// Filter.
    pub fn filter(&self, node: &Node) -> Result<(), Unfit> {
        let empty = BTreeMap::new();
        let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
        if let Some(terms) = self.terms {
            let mut together = true;
            for term in &terms.required_affinity {
                let Some(domain) = term.domain(node) else { return Err(Unfit::PodAffinity) };
                together &= self.affinity_counts.get(&domain).is_some_and(|count| *count > 0);
            }
            if !together && !self.first_of_its_group {
                return Err(Unfit::PodAffinity);
            }
            for term in &terms.required_anti_affinity {
                if term.domain(node).and_then(|domain| self.anti_affinity_counts.get(&domain)).is_some_and(|c| *c > 0) {
                    return Err(Unfit::PodAntiAffinity);
                }
            }
        }
        let forbidden = self
            .existing_anti_affinity_counts
            .iter()
            .any(|((key, value), count)| *count > 0 && labels.get(key) == Some(value));
        if forbidden {
            return Err(Unfit::ExistingPodsAntiAffinity);
        }
        Ok(())
    }

    /// Score of each feasible node, normalized to 0–100 between the lowest and the highest; `None` when no term
    /// applies (every node alike).
    pub fn scores(&self, feasible: &[&Node]) -> Option<Vec<i64>> {
        if self.domain_scores.is_empty() {
            return None;
        }
        let raw: Vec<i64> = feasible
            .iter()
            .map(|node| {
                let labels = node.metadata.labels.as_ref();
                self.domain_scores
                    .iter()
                    .filter(|((key, value), _)| labels.and_then(|labels| labels.get(key)) == Some(value))
                    .map(|(_, score)| score)
                    .sum()
            })
            .collect();
        let minimum = raw.iter().copied().min().unwrap_or(0);
        let maximum = raw.iter().copied().max().unwrap_or(0);
        Some(
            raw.iter()
                .map(|score| if maximum > minimum { 100 * (score - minimum) / (maximum - minimum) } else { 0 })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, zone: &str) -> Node {
        serde_json::from_value(
            json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "zone": zone}}}),
        )
        .unwrap()
    }

    fn pod(namespace: &str, labels: serde_json::Value, affinity: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": namespace, "labels": labels},
            "spec": {"containers": [{"name": "c"}], "affinity": affinity}}))
        .unwrap()
    }

    fn required(kind: &str, key: &str, selector: serde_json::Value) -> serde_json::Value {
        json!({ kind: {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": selector, "topologyKey": key}]}})
    }

    fn no_namespaces(_: &str) -> Option<Arc<Namespace>> {
        None
    }

    struct Cluster {
        nodes: Vec<Node>,
        pods: Vec<(Pod, usize)>,
    }

    impl Cluster {
        /// Zone a: a1, a2; zone b: b1.
        fn new() -> Cluster {
            Cluster { nodes: vec![node("a1", "a"), node("a2", "a"), node("b1", "b")], pods: Vec::new() }
        }

        fn with(mut self, pod: Pod, node: usize) -> Cluster {
            self.pods.push((pod, node));
            self
        }

        fn state<'a>(&self, incoming: &'a Pod, terms: Option<&'a PodTerms>) -> InterPodAffinity<'a> {
            self.state_with(incoming, terms, &no_namespaces)
        }

        fn state_with<'a>(
            &self,
            incoming: &'a Pod,
            terms: Option<&'a PodTerms>,
            namespace_of: NamespaceLookup<'_>,
        ) -> InterPodAffinity<'a> {
            let placed: Vec<PlacedPod<'_>> =
                self.pods.iter().map(|(pod, node)| PlacedPod { pod, node: &self.nodes[*node] }).collect();
            let existing: Vec<(Arc<PodTerms>, &Node)> =
                self.pods.iter().filter_map(|(pod, node)| Some((PodTerms::of(pod)?, &self.nodes[*node]))).collect();
            let with_terms: Vec<(&PodTerms, &Node)> =
                existing.iter().map(|(terms, node)| (terms.as_ref(), *node)).collect();
            InterPodAffinity::prefilter(incoming, terms, &placed, &with_terms, namespace_of)
        }

        fn fits(&self, state: &InterPodAffinity<'_>) -> Vec<Result<(), Unfit>> {
            self.nodes.iter().map(|node| state.filter(node)).collect()
        }
    }

    #[test]
    fn pods_without_terms_have_none() {
        assert!(PodTerms::of(&pod("default", json!({}), json!({}))).is_none());
        assert!(PodTerms::of(&pod("default", json!({}), json!({"nodeAffinity": {}}))).is_none());
    }

    #[test]
    fn required_affinity_follows_the_target_into_its_zone() {
        let cluster = Cluster::new().with(pod("default", json!({"app": "db"}), json!({})), 2);
        let incoming = pod(
            "default",
            json!({"app": "web"}),
            required("podAffinity", "zone", json!({"matchLabels": {"app": "db"}})),
        );
        let terms = PodTerms::of(&incoming).unwrap();
        let state = cluster.state(&incoming, Some(&terms));
        assert_eq!(cluster.fits(&state), vec![Err(Unfit::PodAffinity), Err(Unfit::PodAffinity), Ok(())]);
        assert_eq!(Unfit::PodAffinity.reason(), "node(s) didn't match pod affinity rules");

        // A node without the term's key never fits.
        let bare: Node = serde_json::from_value(json!({"metadata": {"name": "bare"}})).unwrap();
        assert_eq!(state.filter(&bare), Err(Unfit::PodAffinity));

        // The target in another namespace is not seen, unless the term names that namespace.
        let cluster = Cluster::new().with(pod("other", json!({"app": "db"}), json!({})), 2);
        let state = cluster.state(&incoming, Some(&terms));
        assert_eq!(cluster.fits(&state)[2], Err(Unfit::PodAffinity));
        let named = pod(
            "default",
            json!({"app": "web"}),
            json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "zone", "namespaces": ["other"]}]}}),
        );
        let named_terms = PodTerms::of(&named).unwrap();
        assert_eq!(cluster.fits(&cluster.state(&named, Some(&named_terms)))[2], Ok(()));
    }

    #[test]
    fn namespace_selectors_select_namespaces_by_their_labels() {
        let cluster = Cluster::new().with(pod("prod", json!({"app": "db"}), json!({})), 2);
        let selecting = |namespace_selector: serde_json::Value| {
            pod(
                "default",
                json!({"app": "web"}),
                json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "zone",
                 "namespaceSelector": namespace_selector}]}}),
            )
        };
        let namespaces = |name: &str| -> Option<Arc<Namespace>> {
            Some(Arc::new(
                serde_json::from_value(json!({"metadata": {"name": name, "labels": {"env": name}}})).unwrap(),
            ))
        };
        let prod = selecting(json!({"matchLabels": {"env": "prod"}}));
        let prod_terms = PodTerms::of(&prod).unwrap();
        assert_eq!(cluster.fits(&cluster.state_with(&prod, Some(&prod_terms), &namespaces))[2], Ok(()));
        let test = selecting(json!({"matchLabels": {"env": "test"}}));
        let test_terms = PodTerms::of(&test).unwrap();
        assert_eq!(
            cluster.fits(&cluster.state_with(&test, Some(&test_terms), &namespaces))[2],
            Err(Unfit::PodAffinity)
        );
        // `{}` selects every namespace.
        let all = selecting(json!({}));
        let all_terms = PodTerms::of(&all).unwrap();
        assert_eq!(cluster.fits(&cluster.state(&all, Some(&all_terms)))[2], Ok(()));
    }

    #[test]
    fn the_first_pod_of_a_group_that_wants_to_be_together_goes_anywhere() {
        let together = required("podAffinity", "zone", json!({"matchLabels": {"app": "web"}}));
        let incoming = pod("default", json!({"app": "web"}), together.clone());
        let terms = PodTerms::of(&incoming).unwrap();
        let cluster = Cluster::new();
        assert_eq!(cluster.fits(&cluster.state(&incoming, Some(&terms))), vec![Ok(()), Ok(()), Ok(())]);
        // Once one is placed, the rest follow it.
        let cluster = Cluster::new().with(pod("default", json!({"app": "web"}), together), 0);
        assert_eq!(
            cluster.fits(&cluster.state(&incoming, Some(&terms))),
            vec![Ok(()), Ok(()), Err(Unfit::PodAffinity)]
        );
        // A pod that does not match its own terms waits for a target.
        let stranger = pod(
            "default",
            json!({"app": "other"}),
            required("podAffinity", "zone", json!({"matchLabels": {"app": "web"}})),
        );
        let stranger_terms = PodTerms::of(&stranger).unwrap();
        let empty = Cluster::new();
        assert_eq!(empty.fits(&empty.state(&stranger, Some(&stranger_terms)))[0], Err(Unfit::PodAffinity));
    }

    #[test]
    fn required_anti_affinity_keeps_pods_apart_both_ways() {
        let apart = required("podAntiAffinity", "kubernetes.io/hostname", json!({"matchLabels": {"app": "solo"}}));
        let cluster = Cluster::new().with(pod("default", json!({"app": "solo"}), apart.clone()), 0);
        let incoming = pod("default", json!({"app": "solo"}), apart);
        let terms = PodTerms::of(&incoming).unwrap();
        assert_eq!(
            cluster.fits(&cluster.state(&incoming, Some(&terms))),
            vec![Err(Unfit::PodAntiAffinity), Ok(()), Ok(())]
        );
        assert_eq!(Unfit::PodAntiAffinity.reason(), "node(s) didn't match pod anti-affinity rules");

        // A pod without terms may not join a pod whose anti-affinity selects it.
        let plain = pod("default", json!({"app": "solo"}), json!({}));
        assert_eq!(
            cluster.fits(&cluster.state(&plain, None)),
            vec![Err(Unfit::ExistingPodsAntiAffinity), Ok(()), Ok(())]
        );
        assert_eq!(
            Unfit::ExistingPodsAntiAffinity.reason(),
            "node(s) didn't satisfy existing pods anti-affinity rules"
        );
        let unrelated = pod("default", json!({"app": "web"}), json!({}));
        assert_eq!(cluster.fits(&cluster.state(&unrelated, None)), vec![Ok(()), Ok(()), Ok(())]);
    }

    #[test]
    fn mismatch_label_keys_keep_revisions_apart() {
        let apart = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "zone", "mismatchLabelKeys": ["rev"]}]}});
        let incoming = pod("default", json!({"app": "web", "rev": "2"}), apart);
        let terms = PodTerms::of(&incoming).unwrap();
        let cluster = Cluster::new()
            .with(pod("default", json!({"app": "web", "rev": "1"}), json!({})), 0)
            .with(pod("default", json!({"app": "web", "rev": "2"}), json!({})), 2);
        // Zone a holds the other revision, zone b its own.
        assert_eq!(
            cluster.fits(&cluster.state(&incoming, Some(&terms))),
            vec![Err(Unfit::PodAntiAffinity), Err(Unfit::PodAntiAffinity), Ok(())]
        );
    }

    #[test]
    fn preferred_terms_and_assigned_pods_terms_score_domains() {
        let preferences = json!({
            "podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 10, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": "zone"}}]},
            "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 5, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}}]},
        });
        let incoming = pod("default", json!({"app": "web"}), preferences);
        let terms = PodTerms::of(&incoming).unwrap();
        let cluster = Cluster::new()
            .with(pod("default", json!({"app": "cache"}), json!({})), 0)
            .with(pod("default", json!({"app": "web"}), json!({})), 0);
        let state = cluster.state(&incoming, Some(&terms));
        let feasible: Vec<&Node> = cluster.nodes.iter().collect();
        // a1: +10 -5, a2: +10, b1: 0.
        assert_eq!(state.scores(&feasible), Some(vec![50, 100, 0]));

        // A pod without terms is drawn to the zone of an assigned pod whose required affinity selects it.
        let drawn = Cluster::new().with(
            pod(
                "default",
                json!({"app": "db"}),
                required("podAffinity", "zone", json!({"matchLabels": {"app": "web"}})),
            ),
            2,
        );
        let plain = pod("default", json!({"app": "web"}), json!({}));
        assert_eq!(drawn.state(&plain, None).scores(&feasible), Some(vec![0, 0, 100]));
        assert_eq!(Cluster::new().state(&plain, None).scores(&feasible), None);
    }
}
