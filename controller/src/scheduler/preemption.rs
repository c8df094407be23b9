//! DefaultPreemption, upstream's PostFilter plugin: when a pod fits no node, find the nodes where removing pods
//! of lower priority would let it fit, choose the victims on each (all lower-priority pods out, then as many as
//! possible back in, most important first), pick the node whose victims matter least, and nominate it for the
//! pod (`status.nominatedNodeName`), so that pods of lower priority do not take the room while the victims
//! terminate.
//!
//! PodDisruptionBudgets are weighed as upstream weighs them, best effort: victims whose removal would take a
//! budget below zero are reprieved first, and the node with the fewest such violations wins; the victims are then
//! deleted all the same (preemption does not go through the eviction API).
//!
//! One simplification, erring towards preempting less: the dry run re-runs only the node-by-node filters
//! (`plugins::filter`: resources, pod count, host ports, the failures removing pods can cure), so a node must
//! already pass the volume, PodTopologySpread and InterPodAffinity filters to be a candidate.

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;

use super::facts::{NodeFacts, NodeUsage, PodFacts};
use super::plugins::{self, Unfit};
use crate::controllers::queue::Key;

/// Upstream's message for a failure that removing pods cannot cure.
pub const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
/// Upstream's message for a node where removing every lower-priority pod is still not enough.
pub const NO_VICTIMS: &str = "No preemption victims found for incoming pod";

/// A pod to remove so that the preemptor fits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Victim {
    pub uid: String,
    pub key: Key,
    pub priority: i32,
}

/// A node and the victims that make room on it, highest priority first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub node: String,
    pub victims: Vec<Victim>,
    /// How many of the victims a PodDisruptionBudget would rather keep.
    pub violations: usize,
}

/// The PodDisruptionBudgets as preemption reads them (upstream's filterPodsWithPDBViolation).
pub struct Budgets {
    budgets: Vec<Budget>,
}

struct Budget {
    namespace: String,
    selector: crate::apiserver::selector::LabelSelector,
    allowed: i32,
    disrupted: HashSet<String>,
}

/// What a budget needs to know of a possible victim.
pub struct Covered<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub labels: Option<&'a BTreeMap<String, String>>,
}

impl Budgets {
    pub fn new<'a>(budgets: impl IntoIterator<Item = &'a PodDisruptionBudget>) -> Budgets {
        let budgets = budgets
            .into_iter()
            .filter_map(|budget| {
                let selector = serde_json::to_value(budget.spec.as_ref()?.selector.as_ref()?).ok()?;
                let selector = crate::apiserver::selector::LabelSelector::from_label_selector(&selector).ok()?;
                // Unlike the eviction API, upstream's preemption takes an empty selector to select nothing.
                if selector.is_empty() {
                    return None;
                }
                let status = budget.status.as_ref();
                Some(Budget {
                    namespace: budget.metadata.namespace.clone().unwrap_or_default(),
                    selector,
                    allowed: status.map_or(0, |status| status.disruptions_allowed),
                    disrupted: status
                        .and_then(|status| status.disrupted_pods.as_ref())
                        .map(|pods| pods.keys().cloned().collect())
                        .unwrap_or_default(),
                })
            })
            .collect();
        Budgets { budgets }
    }

    /// For each pod, in the order they would be removed, whether removing it (after those before it) would take
    /// a budget that covers it below zero. A pod a budget already counts as disrupted costs it nothing.
    pub fn violations(&self, pods: &[Covered<'_>]) -> Vec<bool> {
        let mut allowed: Vec<i32> = self.budgets.iter().map(|budget| budget.allowed).collect();
        pods.iter()
            .map(|pod| {
                let mut violated = false;
                if pod.labels.is_some_and(|labels| !labels.is_empty()) {
                    for (budget, left) in self.budgets.iter().zip(allowed.iter_mut()) {
                        if budget.namespace != pod.namespace
                            || !budget.selector.matches_labels(pod.labels)
                            || budget.disrupted.contains(pod.name)
                        {
                            continue;
                        }
                        *left -= 1;
                        violated |= *left < 0;
                    }
                }
                violated
            })
            .collect()
    }
}

/// Whether a pod may preempt others now (upstream's PodEligibleToPreemptOthers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eligibility {
    Eligible,
    /// `preemptionPolicy: Never`.
    Never,
    /// The pod preempted already and a victim on its nominated node is still terminating: wait for it instead of
    /// preempting more.
    VictimsTerminating,
}

impl Eligibility {
    /// Upstream's words in the FailedScheduling message of a pod that may not preempt.
    pub fn why_not(self) -> Option<&'static str> {
        match self {
            Eligibility::Eligible => None,
            Eligibility::Never => Some("preemption: not eligible due to preemptionPolicy=Never."),
            Eligibility::VictimsTerminating => {
                Some("preemption: not eligible due to a terminating pod on the nominated node.")
            }
        }
    }
}

/// Whether removing pods from a node can cure this failure (upstream's Unschedulable, as opposed to
/// UnschedulableAndUnresolvable).
pub fn removing_pods_helps(why: &Unfit) -> bool {
    matches!(why, Unfit::Ports | Unfit::Insufficient(_) | Unfit::TooManyPods)
}

/// The victims on `node` that make room for the pod, and how many of them violate a budget, or `None` if removing
/// every pod of lower priority is not enough. `usage` is what the node has in use (with the room held for
/// nominated pods); `on_node` the pods counted against it, as (uid, facts); `violations` says, for pods in the
/// order they would be removed, which would violate a PodDisruptionBudget ([`Budgets::violations`]).
pub fn select_victims(
    pod: &Pod,
    facts: &PodFacts,
    node: &Node,
    room: &NodeFacts,
    usage: Option<&NodeUsage>,
    on_node: &[(&str, &PodFacts)],
    violations: &dyn Fn(&[&PodFacts]) -> Vec<bool>,
) -> Option<(Vec<Victim>, usize)> {
    let mut lower: Vec<&(&str, &PodFacts)> =
        on_node.iter().filter(|(_, other)| other.priority < facts.priority).collect();
    if lower.is_empty() {
        return None;
    }
    let mut remaining = usage.cloned().unwrap_or_default();
    for (_, other) in &lower {
        remaining.remove(other);
    }
    if plugins::filter(pod, facts, node, room, Some(&remaining)).is_err() {
        return None;
    }
    // Reprieve the most important first (stable: among equals, in the order counted), those a budget would
    // rather keep before the others.
    lower.sort_by_key(|(_, other)| std::cmp::Reverse(other.priority));
    let violating = violations(&lower.iter().map(|(_, other)| *other).collect::<Vec<_>>());
    let (keep_first, others): (Vec<_>, Vec<_>) = lower.into_iter().zip(violating).partition(|(_, violates)| *violates);
    let mut victims = Vec::new();
    let mut violations = 0;
    for ((uid, other), violates) in keep_first.into_iter().chain(others) {
        remaining.add(other);
        if plugins::filter(pod, facts, node, room, Some(&remaining)).is_err() {
            remaining.remove(other);
            victims.push(Victim { uid: uid.to_string(), key: other.key.clone(), priority: other.priority });
            violations += usize::from(violates);
        }
    }
    victims.sort_by_key(|victim| std::cmp::Reverse(victim.priority));
    (!victims.is_empty()).then_some((victims, violations))
}

/// Upstream's pickOneNodeForPreemption: the fewest budget violations, then the lowest highest-priority victim,
/// then the smallest sum of victim priorities, then the fewest victims, then the first.
pub fn pick(candidates: Vec<Candidate>) -> Option<Candidate> {
    candidates.into_iter().min_by_key(|candidate| {
        let highest = candidate.victims.iter().map(|victim| victim.priority).max().unwrap_or(i32::MIN);
        // Shifted by 2^31 as upstream does, so that a few negative priorities do not outweigh fewer ones.
        let sum: i64 = candidate.victims.iter().map(|victim| i64::from(victim.priority) + (1 << 31)).sum();
        (candidate.violations, highest, sum, candidate.victims.len())
    })
}

/// The `preemption: …` part of a FailedScheduling message when no node qualified: per node, whether preemption
/// could not help or found no victims, reasons sorted as upstream's.
pub fn failure_message(nodes: usize, not_helpful: usize, no_victims: usize) -> String {
    let mut reasons = Vec::new();
    if no_victims > 0 {
        reasons.push(format!("{no_victims} {NO_VICTIMS}"));
    }
    if not_helpful > 0 {
        reasons.push(format!("{not_helpful} {NOT_HELPFUL}"));
    }
    format!("preemption: 0/{nodes} nodes are available: {}.", reasons.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, priority: i32, cpu: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "uid": name},
            "spec": {"priority": priority, "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]},
        }))
        .unwrap()
    }

    fn node() -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": "n1"},
            "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}},
        }))
        .unwrap()
    }

    fn usage_of(pods: &[&PodFacts]) -> NodeUsage {
        let mut usage = NodeUsage::default();
        for facts in pods {
            usage.add(facts);
        }
        usage
    }

    #[test]
    fn victims_are_the_fewest_least_important_pods_that_make_room() {
        let node = node();
        let room = NodeFacts::of(&node);
        let low = PodFacts::of(&pod("low", 10, "1"));
        let middle = PodFacts::of(&pod("middle", 50, "1"));
        let high = PodFacts::of(&pod("high", 2000, "1"));
        let other_low = PodFacts::of(&pod("other-low", 10, "1"));
        let on_node = [("low", &low), ("middle", &middle), ("high", &high), ("other-low", &other_low)];
        let usage = usage_of(&[&low, &middle, &high, &other_low]);

        // Needs 2 of the 4 CPUs: middle is reprieved first, then one of the two lows; the other low goes.
        let two = pod("preemptor", 100, "2");
        let (victims, violations) =
            select_victims(&two, &PodFacts::of(&two), &node, &room, Some(&usage), &on_node, &no_budgets).unwrap();
        assert_eq!(violations, 0);
        let names: Vec<&str> = victims.iter().map(|victim| victim.uid.as_str()).collect();
        assert_eq!(names, ["low", "other-low"]);
        assert!(victims.iter().all(|victim| victim.priority == 10));

        // Needs all 4: even removing every lower-priority pod leaves the high one's CPU in use.
        let four = pod("preemptor", 100, "4");
        assert_eq!(
            select_victims(&four, &PodFacts::of(&four), &node, &room, Some(&usage), &on_node, &no_budgets),
            None
        );

        // Nothing of lower priority: nothing to preempt.
        let humble = pod("humble", 5, "1");
        assert_eq!(
            select_victims(&humble, &PodFacts::of(&humble), &node, &room, Some(&usage), &on_node, &no_budgets),
            None
        );
    }

    fn no_budgets(pods: &[&PodFacts]) -> Vec<bool> {
        vec![false; pods.len()]
    }

    #[test]
    fn pods_a_budget_protects_are_reprieved_first() {
        let node = node();
        let room = NodeFacts::of(&node);
        let protected = PodFacts::of(&pod("protected", 10, "1"));
        let free = PodFacts::of(&pod("free", 10, "1"));
        let on_node = [("protected", &protected), ("free", &free)];
        let usage = usage_of(&[&protected, &free]);
        // Needs 3 of the 4 CPUs: one of the two must go; without budgets the first counted goes.
        let three = pod("preemptor", 100, "3");
        let facts = PodFacts::of(&three);
        let (victims, _) = select_victims(&three, &facts, &node, &room, Some(&usage), &on_node, &no_budgets).unwrap();
        assert_eq!(victims[0].uid, "free", "the later of equals is reprieved last");
        let budget_on_protected =
            |pods: &[&PodFacts]| pods.iter().map(|pod| pod.key == "default/protected").collect::<Vec<_>>();
        let (victims, violations) =
            select_victims(&three, &facts, &node, &room, Some(&usage), &on_node, &budget_on_protected).unwrap();
        assert_eq!((victims[0].uid.as_str(), violations), ("free", 0));
        // Needs all 4: the protected pod goes too, as a violation.
        let four = pod("preemptor", 100, "4");
        let facts = PodFacts::of(&four);
        let (victims, violations) =
            select_victims(&four, &facts, &node, &room, Some(&usage), &on_node, &budget_on_protected).unwrap();
        assert_eq!((victims.len(), violations), (2, 1));
    }

    #[test]
    fn budgets_count_down_per_pod_and_skip_pods_already_disrupted() {
        let budget: PodDisruptionBudget = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}},
            "status": {"disruptionsAllowed": 1, "currentHealthy": 3, "desiredHealthy": 2, "expectedPods": 3,
                "disruptedPods": {"web-0": "2026-03-01T10:00:00Z"}},
        }))
        .unwrap();
        let everything: PodDisruptionBudget = serde_json::from_value(json!({
            "metadata": {"name": "all", "namespace": "default"}, "spec": {"selector": {}},
            "status": {"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0},
        }))
        .unwrap();
        let budgets = Budgets::new([&budget, &everything]);
        let web: BTreeMap<String, String> = [("app".to_string(), "web".to_string())].into();
        let covered = |namespace, name| Covered { namespace, name, labels: Some(&web) };
        let pods = [
            covered("default", "web-0"),
            covered("default", "web-1"),
            covered("default", "web-2"),
            covered("other", "web-3"),
        ];
        assert_eq!(budgets.violations(&pods), [false, false, true, false]);
    }

    #[test]
    fn the_node_whose_victims_matter_least_is_picked() {
        let victim = |uid: &str, priority: i32| Victim { uid: uid.into(), key: format!("default/{uid}"), priority };
        let candidate = |node: &str, victims: Vec<Victim>| Candidate { node: node.into(), victims, violations: 0 };
        let picked = pick(vec![
            candidate("a", vec![victim("a1", 100)]),
            candidate("b", vec![victim("b1", 50), victim("b2", 50)]),
            candidate("c", vec![victim("c1", 50), victim("c2", 10)]),
        ])
        .unwrap();
        // b and c tie on the highest victim (50); c's sum is smaller.
        assert_eq!(picked.node, "c");
        let picked = pick(vec![
            candidate("a", vec![victim("a1", -5), victim("a2", -5)]),
            candidate("b", vec![victim("b1", -5)]),
        ])
        .unwrap();
        assert_eq!(picked.node, "b", "fewer victims of equal negative priority weigh less");
        let mut violating = candidate("a", vec![victim("a1", 1)]);
        violating.violations = 1;
        let picked = pick(vec![violating, candidate("b", vec![victim("b1", 100), victim("b2", 100)])]).unwrap();
        assert_eq!(picked.node, "b", "fewer budget violations come first");
        assert_eq!(pick(Vec::new()), None);
    }

    #[test]
    fn failure_messages_read_as_upstream() {
        assert_eq!(
            failure_message(3, 1, 2),
            "preemption: 0/3 nodes are available: 2 No preemption victims found for incoming pod, \
             1 Preemption is not helpful for scheduling."
        );
        assert!(removing_pods_helps(&Unfit::Insufficient("cpu")));
        assert!(!removing_pods_helps(&Unfit::Taint("a: b".into())));
    }
}
