//! DefaultPreemption, upstream's PostFilter plugin: when a pod fits no node, find the nodes where removing pods
//! of lower priority would let it fit, choose the victims on each (all lower-priority pods out, then as many as
//! possible back in, most important first), pick the node whose victims matter least, and nominate it for the
//! pod (`status.nominatedNodeName`), so that pods of lower priority do not take the room while the victims
//! terminate.
//!
//! Two simplifications, both erring towards preempting less: the dry run re-runs only the node-by-node filters
//! (`plugins::filter`: resources, pod count, host ports, the failures removing pods can cure), so a node must
//! already pass the volume, PodTopologySpread and InterPodAffinity filters to be a candidate; and
//! PodDisruptionBudgets are not weighed (nothing computes their status yet), so the first of upstream's
//! node-picking criteria, fewest budget violations, is left out.

use k8s_openapi::api::core::v1::{Node, Pod};

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

/// The victims on `node` that make room for the pod, or `None` if removing every pod of lower priority is not
/// enough. `usage` is what the node has in use (with the room held for nominated pods); `on_node` the pods
/// counted against it, as (uid, facts).
pub fn select_victims(
    pod: &Pod,
    facts: &PodFacts,
    node: &Node,
    room: &NodeFacts,
    usage: Option<&NodeUsage>,
    on_node: &[(&str, &PodFacts)],
) -> Option<Vec<Victim>> {
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
    // Reprieve the most important first (stable: among equals, in the order counted).
    lower.sort_by_key(|(_, other)| std::cmp::Reverse(other.priority));
    let mut victims = Vec::new();
    for (uid, other) in lower {
        remaining.add(other);
        if plugins::filter(pod, facts, node, room, Some(&remaining)).is_err() {
            remaining.remove(other);
            victims.push(Victim { uid: uid.to_string(), key: other.key.clone(), priority: other.priority });
        }
    }
    (!victims.is_empty()).then_some(victims)
}

/// Upstream's pickOneNodeForPreemption without the budget criterion: the lowest highest-priority victim, then
/// the smallest sum of victim priorities, then the fewest victims, then the first.
pub fn pick(candidates: Vec<Candidate>) -> Option<Candidate> {
    candidates.into_iter().min_by_key(|candidate| {
        let highest = candidate.victims.first().map_or(i32::MIN, |victim| victim.priority);
        // Shifted by 2^31 as upstream does, so that a few negative priorities do not outweigh fewer ones.
        let sum: i64 = candidate.victims.iter().map(|victim| i64::from(victim.priority) + (1 << 31)).sum();
        (highest, sum, candidate.victims.len())
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
        let victims = select_victims(&two, &PodFacts::of(&two), &node, &room, Some(&usage), &on_node).unwrap();
        let names: Vec<&str> = victims.iter().map(|victim| victim.uid.as_str()).collect();
        assert_eq!(names, ["low", "other-low"]);
        assert!(victims.iter().all(|victim| victim.priority == 10));

        // Needs all 4: even removing every lower-priority pod leaves the high one's CPU in use.
        let four = pod("preemptor", 100, "4");
        assert_eq!(select_victims(&four, &PodFacts::of(&four), &node, &room, Some(&usage), &on_node), None);

        // Nothing of lower priority: nothing to preempt.
        let humble = pod("humble", 5, "1");
        assert_eq!(select_victims(&humble, &PodFacts::of(&humble), &node, &room, Some(&usage), &on_node), None);
    }

    #[test]
    fn the_node_whose_victims_matter_least_is_picked() {
        let victim = |uid: &str, priority: i32| Victim { uid: uid.into(), key: format!("default/{uid}"), priority };
        let candidate = |node: &str, victims: Vec<Victim>| Candidate { node: node.into(), victims };
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
