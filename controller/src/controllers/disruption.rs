//! PodDisruptionBudget status, as upstream's disruption controller writes it: how many of the pods a budget
//! selects are healthy (Ready and not terminating), how many must stay so (`desiredHealthy`), how many are
//! expected, and so how many may be disrupted now (`disruptionsAllowed`, with the `DisruptionAllowed`
//! condition). The eviction API (`apiserver::eviction`) reads that status, takes one disruption from it and
//! records the evicted pod in `disruptedPods`; until the pod is seen terminating (or two minutes pass) it is not
//! counted healthy, so a second eviction cannot spend the same disruption.
//!
//! `minAvailable` as a number counts the selected pods; `maxUnavailable` and percentages need the scale of the
//! pods' controllers (ReplicaSets, Deployments through their ReplicaSets, StatefulSets, ReplicationControllers).
//! A pod without one of those makes the budget allow no disruption (`SyncFailed`), as upstream.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, PostParams};
use kube::ResourceExt;

use super::informer::{Change, Informer};
use super::queue::{self, WorkQueue};
use super::replicaset::{controller_of, object_key, ready_since};
use super::ReconcileError;

/// How long an evicted pod is kept out of the healthy count while it is not yet seen terminating (upstream's
/// DeletionTimeout).
const DISRUPTION_TIMEOUT: jiff::SignedDuration = jiff::SignedDuration::from_secs(120);
const WORKERS: usize = 2;
pub const DISRUPTION_ALLOWED: &str = "DisruptionAllowed";

pub struct DisruptionController {
    client: kube::Client,
    budgets: Arc<Informer<PodDisruptionBudget>>,
    pods: Arc<Informer<Pod>>,
    owners: Owners,
    queue: WorkQueue,
}

/// The caches the scale of a pod's controller is read from.
pub struct Owners {
    pub replica_sets: Arc<Informer<ReplicaSet>>,
    pub deployments: Arc<Informer<Deployment>>,
    pub stateful_sets: Arc<Informer<StatefulSet>>,
    pub replication_controllers: Arc<Informer<ReplicationController>>,
}

impl DisruptionController {
    pub fn new(
        client: kube::Client,
        budgets: Arc<Informer<PodDisruptionBudget>>,
        pods: Arc<Informer<Pod>>,
        owners: Owners,
    ) -> Arc<DisruptionController> {
        let controller = Arc::new(DisruptionController {
            client,
            budgets: budgets.clone(),
            pods: pods.clone(),
            owners,
            queue: WorkQueue::new(),
        });
        let queue = controller.queue.clone();
        budgets.on_change(move |change| {
            if let Change::Applied { new, .. } = change {
                queue.add(object_key(*new));
            }
        });
        let this = Arc::downgrade(&controller);
        pods.on_change(move |change| {
            let Some(controller) = this.upgrade() else { return };
            let (old, new) = match change {
                Change::Applied { old, new } => (*old, Some(*new)),
                Change::Deleted(old) => (Some(*old), None),
            };
            for pod in old.into_iter().chain(new) {
                for budget in controller.budgets_selecting(pod) {
                    controller.queue.add(object_key(budget.as_ref()));
                }
            }
        });
        controller
    }

    fn budgets_selecting(&self, pod: &Pod) -> Vec<Arc<PodDisruptionBudget>> {
        let namespace = pod.namespace().unwrap_or_default();
        self.budgets.list_namespace(&namespace).into_iter().filter(|budget| selects(budget, pod)).collect()
    }

    pub async fn run(self: Arc<Self>) {
        self.budgets.synced().await;
        self.pods.synced().await;
        self.owners.replica_sets.synced().await;
        self.owners.deployments.synced().await;
        self.owners.stateful_sets.synced().await;
        self.owners.replication_controllers.synced().await;
        let controller = self.clone();
        queue::run_workers("disruption", self.queue.clone(), WORKERS, move |key| {
            let controller = controller.clone();
            async move { controller.reconcile(&key).await }
        })
        .await;
    }

    async fn reconcile(&self, key: &str) -> Result<(), ReconcileError> {
        let (namespace, name) = queue::split(key);
        let Some(budget) = self.budgets.get(namespace, name) else { return Ok(()) };
        if budget.metadata.deletion_timestamp.is_some() {
            return Ok(());
        }
        let pods: Vec<Arc<Pod>> =
            self.pods.list_namespace(namespace).into_iter().filter(|pod| selects(&budget, pod)).collect();
        let now = jiff::Timestamp::now();
        let current = budget.status.clone().unwrap_or_default();
        let generation = budget.metadata.generation.unwrap_or(0);
        let mut status = current.clone();
        status.observed_generation = Some(generation);
        match self.expected_and_desired(&budget, &pods) {
            Ok((expected, desired)) => {
                let (disrupted, next_expiry) = still_disrupted(current.disrupted_pods.as_ref(), &pods, now);
                let healthy = pods
                    .iter()
                    .filter(|pod| pod.metadata.deletion_timestamp.is_none() && ready_since(pod).is_some())
                    .filter(|pod| !disrupted.contains_key(&pod.name_any()))
                    .count() as i32;
                status.expected_pods = expected;
                status.desired_healthy = desired;
                status.current_healthy = healthy;
                status.disruptions_allowed = (healthy - desired).max(0);
                status.disrupted_pods = (!disrupted.is_empty()).then_some(disrupted);
                let (allowed, reason) = if status.disruptions_allowed > 0 {
                    ("True", "SufficientPods")
                } else {
                    ("False", "InsufficientPods")
                };
                set_condition(&mut status, allowed, reason, "", generation, now);
                if let Some(expiry) = next_expiry {
                    let wait = expiry.duration_since(now).max(jiff::SignedDuration::from_secs(1));
                    self.queue.add_after(key.to_string(), Duration::from_secs(wait.as_secs() as u64 + 1));
                }
            }
            // As upstream's failSafe: nothing may be disrupted while the budget cannot be computed.
            Err(message) => {
                status.disruptions_allowed = 0;
                set_condition(&mut status, "False", "SyncFailed", &message, generation, now);
            }
        }
        if status == current {
            return Ok(());
        }
        let mut updated = (*budget).clone();
        updated.status = Some(status);
        let api: Api<PodDisruptionBudget> = Api::namespaced(self.client.clone(), namespace);
        api.replace_status(name, &PostParams::default(), &updated).await?;
        Ok(())
    }

    /// (expectedPods, desiredHealthy), or why they cannot be known.
    fn expected_and_desired(&self, budget: &PodDisruptionBudget, pods: &[Arc<Pod>]) -> Result<(i32, i32), String> {
        let spec = budget.spec.clone().unwrap_or_default();
        if let Some(max_unavailable) = &spec.max_unavailable {
            let expected = self.expected_scale(pods)?;
            let unavailable = scaled(max_unavailable, expected)?;
            Ok((expected, (expected - unavailable).max(0)))
        } else if let Some(min_available) = &spec.min_available {
            match min_available {
                IntOrString::Int(count) => Ok((pods.len() as i32, *count)),
                IntOrString::String(_) => {
                    let expected = self.expected_scale(pods)?;
                    Ok((expected, scaled(min_available, expected)?))
                }
            }
        } else {
            Ok((0, 0))
        }
    }

    /// The sum of the replicas of the pods' controllers, each counted once.
    fn expected_scale(&self, pods: &[Arc<Pod>]) -> Result<i32, String> {
        let mut scales: HashMap<String, i32> = HashMap::new();
        for pod in pods {
            let name = pod.name_any();
            let Some(owner) = controller_of(pod) else {
                return Err(format!("found no controller ref for pod {name:?}"));
            };
            let namespace = pod.namespace().unwrap_or_default();
            let same = |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
                meta.uid.as_deref() == Some(owner.uid.as_str())
            };
            let scale = match (owner.api_version.as_str(), owner.kind.as_str()) {
                ("apps/v1", "ReplicaSet") => self
                    .owners
                    .replica_sets
                    .get(&namespace, &owner.name)
                    .filter(|set| same(&set.metadata))
                    .and_then(|set| {
                        // A Deployment's ReplicaSet: the Deployment's scale counts, as upstream's finders do.
                        let deployment = set.metadata.owner_references.iter().flatten().find(|owner| {
                            owner.controller == Some(true)
                                && owner.kind == "Deployment"
                                && owner.api_version == "apps/v1"
                        });
                        match deployment {
                            Some(reference) => self
                                .owners
                                .deployments
                                .get(&namespace, &reference.name)
                                .filter(|deployment| deployment.metadata.uid.as_deref() == Some(reference.uid.as_str()))
                                .map(|deployment| {
                                    let replicas = deployment.spec.as_ref().and_then(|spec| spec.replicas).unwrap_or(1);
                                    (reference.uid.clone(), replicas)
                                }),
                            None => {
                                let replicas = set.spec.as_ref().and_then(|spec| spec.replicas).unwrap_or(1);
                                Some((owner.uid.clone(), replicas))
                            }
                        }
                    }),
                ("apps/v1", "StatefulSet") => self
                    .owners
                    .stateful_sets
                    .get(&namespace, &owner.name)
                    .filter(|set| same(&set.metadata))
                    .map(|set| (owner.uid.clone(), set.spec.as_ref().and_then(|spec| spec.replicas).unwrap_or(1))),
                ("v1", "ReplicationController") => self
                    .owners
                    .replication_controllers
                    .get(&namespace, &owner.name)
                    .filter(|set| same(&set.metadata))
                    .map(|set| (owner.uid.clone(), set.spec.as_ref().and_then(|spec| spec.replicas).unwrap_or(1))),
                _ => None,
            };
            let Some((uid, replicas)) = scale else {
                return Err(format!("found no controllers for pod {name:?}"));
            };
            scales.insert(uid, replicas);
        }
        Ok(scales.values().sum())
    }
}

/// Whether the budget selects the pod: policy/v1's selector, where `{}` selects every pod of the namespace and
/// no selector none.
pub fn selects(budget: &PodDisruptionBudget, pod: &Pod) -> bool {
    if budget.namespace() != pod.namespace() {
        return false;
    }
    let Some(selector) = budget.spec.as_ref().and_then(|spec| spec.selector.as_ref()) else { return false };
    super::label_selector(selector).is_some_and(|selector| super::labels_match(&selector, pod.metadata.labels.as_ref()))
}

/// An integer, or a percentage of `total` rounded up (upstream's GetScaledValueFromIntOrPercent).
fn scaled(value: &IntOrString, total: i32) -> Result<i32, String> {
    match value {
        IntOrString::Int(count) => Ok(*count),
        IntOrString::String(text) => {
            let percent: i64 = text
                .strip_suffix('%')
                .and_then(|number| number.parse().ok())
                .ok_or_else(|| format!("invalid value for IntOrString: invalid value {text:?}"))?;
            Ok(((percent * i64::from(total) + 99) / 100) as i32)
        }
    }
}

/// The entries of `disruptedPods` that still hold (the pod exists, is not yet terminating, and was evicted less
/// than two minutes ago), and when the first of them runs out.
fn still_disrupted(
    recorded: Option<&BTreeMap<String, Time>>,
    pods: &[Arc<Pod>],
    now: jiff::Timestamp,
) -> (BTreeMap<String, Time>, Option<jiff::Timestamp>) {
    let mut kept = BTreeMap::new();
    let mut next_expiry: Option<jiff::Timestamp> = None;
    for (name, when) in recorded.into_iter().flatten() {
        let Some(pod) = pods.iter().find(|pod| pod.name_any() == *name) else { continue };
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let expiry = when.0 + DISRUPTION_TIMEOUT;
        if expiry <= now {
            continue;
        }
        next_expiry = Some(next_expiry.map_or(expiry, |next| next.min(expiry)));
        kept.insert(name.clone(), when.clone());
    }
    (kept, next_expiry)
}

/// Sets the `DisruptionAllowed` condition; its transition time moves only when its status does.
pub fn set_condition(
    status: &mut PodDisruptionBudgetStatus,
    allowed: &str,
    reason: &str,
    message: &str,
    generation: i64,
    now: jiff::Timestamp,
) {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    let previous = conditions.iter().find(|condition| condition.type_ == DISRUPTION_ALLOWED);
    let last_transition_time = match previous {
        Some(previous) if previous.status == allowed => previous.last_transition_time.clone(),
        _ => Time(now.round(jiff::Unit::Second).unwrap_or(now)),
    };
    let condition = Condition {
        type_: DISRUPTION_ALLOWED.to_string(),
        status: allowed.to_string(),
        reason: reason.to_string(),
        message: message.to_string(),
        observed_generation: Some(generation),
        last_transition_time,
    };
    conditions.retain(|condition| condition.type_ != DISRUPTION_ALLOWED);
    conditions.push(condition);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_round_up() {
        assert_eq!(scaled(&IntOrString::String("50%".into()), 3), Ok(2));
        assert_eq!(scaled(&IntOrString::String("10%".into()), 10), Ok(1));
        assert_eq!(scaled(&IntOrString::String("0%".into()), 10), Ok(0));
        assert_eq!(scaled(&IntOrString::Int(2), 10), Ok(2));
        assert!(scaled(&IntOrString::String("half".into()), 10).is_err());
    }

    fn pod(name: &str, deleting: bool) -> Arc<Pod> {
        let mut pod = Pod::default();
        pod.metadata.name = Some(name.into());
        if deleting {
            pod.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::now()));
        }
        Arc::new(pod)
    }

    #[test]
    fn disrupted_pods_expire_or_go_once_terminating_or_gone() {
        let now: jiff::Timestamp = "2026-03-01T10:00:00Z".parse().unwrap();
        let recent = Time(now - jiff::SignedDuration::from_secs(30));
        let old = Time(now - jiff::SignedDuration::from_secs(121));
        let recorded: BTreeMap<String, Time> = [
            ("kept".to_string(), recent.clone()),
            ("expired".to_string(), old),
            ("terminating".to_string(), recent.clone()),
            ("gone".to_string(), recent.clone()),
        ]
        .into();
        let pods = vec![pod("kept", false), pod("expired", false), pod("terminating", true)];
        let (kept, next) = still_disrupted(Some(&recorded), &pods, now);
        assert_eq!(kept.keys().collect::<Vec<_>>(), vec!["kept"]);
        assert_eq!(next, Some(recent.0 + DISRUPTION_TIMEOUT));
    }
}
