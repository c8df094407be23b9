//! The node lifecycle controller: tells live nodes from lost ones and acts on it, as upstream's
//! `pkg/controller/nodelifecycle` (research: worker.md §7 "Node lifecycle").
//!
//! - Health: a node is heard from when its Lease in `kube-node-lease` is renewed or its Ready condition's heartbeat
//!   moves, timed by this controller's own clock (so skew between machines does not matter). Silent for longer
//!   than the grace period (50 s, upstream's default since v1.32; 60 s for a node that never posted a Ready
//!   condition), its Ready, MemoryPressure, DiskPressure and PIDPressure conditions become Unknown ("Kubelet
//!   stopped posting node status."), and the pods on it are marked not Ready, so Services stop sending them
//!   traffic.
//! - Taints from conditions: `not-ready` (Ready False) and `unreachable` (Ready Unknown), each NoSchedule and
//!   NoExecute; NoSchedule `memory-pressure`, `disk-pressure`, `pid-pressure`, `network-unavailable` and
//!   `unschedulable` (a cordoned node). They are removed when the condition clears.
//! - Eviction by taints: a pod on a node with a NoExecute taint it does not tolerate is deleted at once; one that
//!   tolerates it for `tolerationSeconds` (300 s for the not-ready and unreachable taints unless the pod says
//!   otherwise: DefaultTolerationSeconds admission) is deleted that long after the taint was added.
//!
//! In a zone (`topology.kubernetes.io/zone`) where no node is Ready, no NoExecute taint is added and those present
//! are removed, as upstream's full-disruption mode: the pods stay until some node of the zone is heard from again.
//!
//! It works by periodic passes over the cached Nodes rather than a work queue, as upstream's monitor does: the
//! event that matters is the absence of events. Writes to a Node read it fresh and carry its resourceVersion, so a
//! kubelet that posts Ready at the same moment wins.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::ResourceExt;
use serde_json::json;

use super::events::{Kind, Recorder};
use super::informer::Informer;
use crate::scheduler::plugins::tolerates;

pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// node-monitor-grace-period: how long a node may be silent before it counts as lost.
const GRACE_PERIOD: Duration = Duration::from_secs(50);
/// node-startup-grace-period: the same, for a node that never posted its Ready condition.
const STARTUP_GRACE_PERIOD: Duration = Duration::from_secs(60);
/// node-monitor-period.
const MONITOR_PERIOD: Duration = Duration::from_secs(5);
/// How often NoExecute taints are checked against pods' tolerations.
const EVICTION_PERIOD: Duration = Duration::from_secs(1);

pub const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";
/// The taints this controller owns: it adds and removes them from the node's conditions and schedulability.
const MANAGED_TAINTS: [&str; 7] = [
    NOT_READY_TAINT,
    UNREACHABLE_TAINT,
    "node.kubernetes.io/memory-pressure",
    "node.kubernetes.io/disk-pressure",
    "node.kubernetes.io/pid-pressure",
    "node.kubernetes.io/network-unavailable",
    "node.kubernetes.io/unschedulable",
];

pub struct NodeLifecycleController {
    client: kube::Client,
    nodes: Arc<Informer<Node>>,
    pods: Arc<Informer<Pod>>,
    leases: Arc<Informer<Lease>>,
    health: Mutex<HashMap<String, Health>>,
    events: Recorder,
}

/// What this controller last heard from one node, and when by its own clock.
struct Health {
    heard_at: Instant,
    lease_renewed: Option<String>,
    heartbeat: Option<String>,
    /// The Ready status last seen, to notice the moment a node stops being Ready.
    ready: Option<String>,
}

impl NodeLifecycleController {
    pub fn new(
        client: kube::Client,
        nodes: Arc<Informer<Node>>,
        pods: Arc<Informer<Pod>>,
        leases: Arc<Informer<Lease>>,
    ) -> Arc<NodeLifecycleController> {
        Arc::new(NodeLifecycleController {
            events: Recorder::new(client.clone(), "node-controller"),
            client,
            nodes,
            pods,
            leases,
            health: Mutex::default(),
        })
    }

    pub async fn run(self: Arc<Self>) {
        self.nodes.synced().await;
        self.pods.synced().await;
        self.leases.synced().await;
        let mut monitor = tokio::time::interval(MONITOR_PERIOD);
        let mut eviction = tokio::time::interval(EVICTION_PERIOD);
        loop {
            tokio::select! {
                _ = monitor.tick() => self.monitor_health().await,
                _ = eviction.tick() => self.evict_by_taints().await,
            }
        }
    }

    fn lock_health(&self) -> std::sync::MutexGuard<'_, HashMap<String, Health>> {
        self.health.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn monitor_health(&self) {
        let nodes = self.nodes.list();
        let now = Instant::now();
        let names: BTreeSet<String> = nodes.iter().map(|node| node.name_any()).collect();
        self.lock_health().retain(|name, _| names.contains(name));
        let disrupted = fully_disrupted_zones(&nodes);
        for node in nodes {
            let name = node.name_any();
            let lease_renewed = self
                .leases
                .get(LEASE_NAMESPACE, &name)
                .and_then(|lease| lease.spec.as_ref()?.renew_time.as_ref().map(|time| time.0.to_string()));
            let ready = condition(&node, "Ready");
            let heartbeat = ready.and_then(|ready| ready.last_heartbeat_time.as_ref()).map(|time| time.0.to_string());
            let ready_status = ready.map(|ready| ready.status.clone());
            let (silent_for, was_ready) = {
                let mut health = self.lock_health();
                // A node first seen (this controller just started leading) gets a whole grace period.
                let entry = health.entry(name.clone()).or_insert_with(|| Health {
                    heard_at: now,
                    lease_renewed: lease_renewed.clone(),
                    heartbeat: heartbeat.clone(),
                    ready: ready_status.clone(),
                });
                if entry.lease_renewed != lease_renewed || entry.heartbeat != heartbeat {
                    entry.heard_at = now;
                    entry.lease_renewed = lease_renewed.clone();
                    entry.heartbeat = heartbeat.clone();
                }
                let was_ready = std::mem::replace(&mut entry.ready, ready_status.clone());
                (now.duration_since(entry.heard_at), was_ready)
            };
            let grace = if ready.is_some() { GRACE_PERIOD } else { STARTUP_GRACE_PERIOD };
            if silent_for > grace && ready_status.as_deref() != Some("Unknown") {
                if let Err(error) = self.mark_unknown(&name, heartbeat.as_deref()).await {
                    tracing::debug!(node.name = %name, error = %error, "cannot mark the node unknown");
                }
                // The next pass sees the Unknown condition and taints the node.
                continue;
            }
            if was_ready.as_deref() == Some("True") && ready_status.as_deref() != Some("True") {
                self.events.publish(
                    node.as_ref(),
                    Kind::Normal,
                    "NodeNotReady",
                    format!("Node {name} status is now: NodeNotReady"),
                );
                self.mark_pods_not_ready(&name).await;
            }
            let evicting = !disrupted.contains(zone_of(&node));
            if let Err(error) = self.sync_taints(&node, evicting).await {
                tracing::debug!(node.name = %name, error = %error, "cannot update the node's taints");
            }
        }
    }

    /// Sets the node's kubelet-owned conditions to Unknown, unless it was heard from after `heartbeat`.
    async fn mark_unknown(&self, name: &str, heartbeat: Option<&str>) -> Result<(), kube::Error> {
        let api: Api<Node> = Api::all(self.client.clone());
        let Some(node) = api.get_opt(name).await? else { return Ok(()) };
        let ready = condition(&node, "Ready");
        if ready.and_then(|ready| ready.last_heartbeat_time.as_ref()).map(|time| time.0.to_string()).as_deref()
            != heartbeat
        {
            return Ok(());
        }
        let now = Time(jiff::Timestamp::now());
        let created = node.metadata.creation_timestamp.clone();
        let mut conditions = node.status.as_ref().and_then(|status| status.conditions.clone()).unwrap_or_default();
        for type_ in ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"] {
            match conditions.iter_mut().find(|condition| condition.type_ == type_) {
                Some(existing) => {
                    if existing.status != "Unknown" {
                        existing.last_transition_time = Some(now.clone());
                    }
                    existing.status = "Unknown".into();
                    existing.reason = Some("NodeStatusUnknown".into());
                    existing.message = Some("Kubelet stopped posting node status.".into());
                }
                None => conditions.push(NodeCondition {
                    type_: type_.into(),
                    status: "Unknown".into(),
                    reason: Some("NodeStatusNeverUpdated".into()),
                    message: Some("Kubelet never posted node status.".into()),
                    last_heartbeat_time: created.clone(),
                    last_transition_time: Some(now.clone()),
                }),
            }
        }
        let patch = json!({"metadata": {"resourceVersion": node.metadata.resource_version},
            "status": {"conditions": conditions}});
        api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        tracing::info!(node.name = %name, "node stopped posting status; marked unknown");
        Ok(())
    }

    /// Marks the Ready pods on a node that stopped being Ready as not Ready.
    async fn mark_pods_not_ready(&self, node: &str) {
        let now = Time(jiff::Timestamp::now());
        for pod in self.pods_on(node) {
            let ready = pod
                .status
                .as_ref()
                .and_then(|status| status.conditions.as_ref())
                .and_then(|conditions| conditions.iter().find(|condition| condition.type_ == "Ready"));
            if ready.is_none_or(|ready| ready.status != "True") {
                continue;
            }
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
            let patch =
                json!({"status": {"conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": now}]}});
            if let Err(error) =
                api.patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Strategic(patch)).await
            {
                tracing::debug!(pod = %pod.name_any(), error = %error, "cannot mark the pod not ready");
            }
        }
    }

    fn pods_on(&self, node: &str) -> Vec<Arc<Pod>> {
        self.pods
            .list()
            .into_iter()
            .filter(|pod| pod.spec.as_ref().and_then(|spec| spec.node_name.as_deref()) == Some(node))
            .collect()
    }

    /// Brings the node's managed taints in line with its conditions and schedulability.
    async fn sync_taints(&self, cached: &Node, evicting: bool) -> Result<(), kube::Error> {
        if same_taints(&managed_taints(cached), &desired_taints(cached, evicting)) {
            return Ok(());
        }
        // Read fresh: the taint list is written whole, and must not drop a taint someone added meanwhile.
        let api: Api<Node> = Api::all(self.client.clone());
        let Some(node) = api.get_opt(&cached.name_any()).await? else { return Ok(()) };
        let current = managed_taints(&node);
        let desired = desired_taints(&node, evicting);
        if same_taints(&current, &desired) {
            return Ok(());
        }
        let now = Time(jiff::Timestamp::now());
        let mut taints: Vec<Taint> = node
            .spec
            .as_ref()
            .and_then(|spec| spec.taints.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|taint| !MANAGED_TAINTS.contains(&taint.key.as_str()))
            .collect();
        for mut taint in desired {
            // A taint that stays keeps the time it was added: NoExecute eviction counts from it.
            let kept = current.iter().find(|existing| existing.key == taint.key && existing.effect == taint.effect);
            taint.time_added = match kept {
                Some(existing) => existing.time_added.clone(),
                None if taint.effect == "NoExecute" => Some(now.clone()),
                None => None,
            };
            taints.push(taint);
        }
        let patch = json!({"metadata": {"resourceVersion": node.metadata.resource_version},
            "spec": {"taints": if taints.is_empty() { serde_json::Value::Null } else { json!(taints) }}});
        api.patch(&node.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
        Ok(())
    }

    /// Deletes the pods whose tolerations of their node's NoExecute taints have run out.
    async fn evict_by_taints(&self) {
        let now = jiff::Timestamp::now();
        let tainted: HashMap<String, Vec<Taint>> = self
            .nodes
            .list()
            .iter()
            .map(|node| {
                let taints = node.spec.as_ref().and_then(|spec| spec.taints.clone()).unwrap_or_default();
                (node.name_any(), taints.into_iter().filter(|taint| taint.effect == "NoExecute").collect::<Vec<_>>())
            })
            .filter(|(_, taints)| !taints.is_empty())
            .collect();
        if tainted.is_empty() {
            return;
        }
        for pod in self.pods.list() {
            let Some(taints) =
                pod.spec.as_ref().and_then(|spec| spec.node_name.as_ref()).and_then(|node| tainted.get(node))
            else {
                continue;
            };
            if pod.metadata.deletion_timestamp.is_none() && eviction_time(&pod, taints, now).is_some_and(|at| at <= now)
            {
                self.evict(&pod).await;
            }
        }
    }

    async fn evict(&self, pod: &Pod) {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
        // The uid pins the pod judged, not a successor of the same name.
        let params = DeleteParams {
            preconditions: Some(Preconditions { uid: pod.metadata.uid.clone(), resource_version: None }),
            ..Default::default()
        };
        match api.delete(&pod.name_any(), &params).await {
            Ok(_) => self.events.publish(
                pod,
                Kind::Normal,
                "TaintManagerEviction",
                format!("Marking for deletion Pod {}/{}", pod.namespace().unwrap_or_default(), pod.name_any()),
            ),
            Err(kube::Error::Api(response)) if response.code == 404 || response.code == 409 => {}
            Err(error) => tracing::debug!(pod = %pod.name_any(), error = %error, "cannot evict the pod"),
        }
    }
}

fn condition<'a>(node: &'a Node, type_: &str) -> Option<&'a NodeCondition> {
    node.status.as_ref()?.conditions.as_ref()?.iter().find(|condition| condition.type_ == type_)
}

fn managed_taints(node: &Node) -> Vec<Taint> {
    let taints = node.spec.as_ref().and_then(|spec| spec.taints.clone()).unwrap_or_default();
    taints.into_iter().filter(|taint| MANAGED_TAINTS.contains(&taint.key.as_str())).collect()
}

fn zone_of(node: &Node) -> &str {
    node.labels().get("topology.kubernetes.io/zone").map_or("", String::as_str)
}

/// Zones where no node is Ready. Upstream stops NoExecute tainting there ("full disruption"): when every node
/// looks lost at once, the likelier fault is the control plane's view of them (a network split, a restart), and
/// evicting everything would turn a blip into an outage — on a single-node cluster, every time its agent restarts.
fn fully_disrupted_zones(nodes: &[Arc<Node>]) -> BTreeSet<String> {
    let mut ready_by_zone: HashMap<&str, bool> = HashMap::new();
    for node in nodes {
        let ready = condition(node, "Ready").is_some_and(|ready| ready.status == "True");
        *ready_by_zone.entry(zone_of(node)).or_insert(false) |= ready;
    }
    ready_by_zone.into_iter().filter(|(_, any_ready)| !any_ready).map(|(zone, _)| zone.to_string()).collect()
}

/// The managed taints a node should carry given its conditions (upstream's TaintNodesByCondition and the
/// NoExecute taints of NodeLifecycle, the latter only while `evicting`).
fn desired_taints(node: &Node, evicting: bool) -> Vec<Taint> {
    let taint = |key: &str, effect: &str| Taint { key: key.into(), effect: effect.into(), ..Default::default() };
    let mut taints = Vec::new();
    match condition(node, "Ready").map(|ready| ready.status.as_str()) {
        Some("False") => {
            taints.push(taint(NOT_READY_TAINT, "NoSchedule"));
            if evicting {
                taints.push(taint(NOT_READY_TAINT, "NoExecute"));
            }
        }
        Some("Unknown") => {
            taints.push(taint(UNREACHABLE_TAINT, "NoSchedule"));
            if evicting {
                taints.push(taint(UNREACHABLE_TAINT, "NoExecute"));
            }
        }
        _ => {}
    }
    for (type_, key) in [
        ("MemoryPressure", "node.kubernetes.io/memory-pressure"),
        ("DiskPressure", "node.kubernetes.io/disk-pressure"),
        ("PIDPressure", "node.kubernetes.io/pid-pressure"),
        ("NetworkUnavailable", "node.kubernetes.io/network-unavailable"),
    ] {
        if condition(node, type_).is_some_and(|condition| condition.status == "True") {
            taints.push(taint(key, "NoSchedule"));
        }
    }
    if node.spec.as_ref().and_then(|spec| spec.unschedulable) == Some(true) {
        taints.push(taint("node.kubernetes.io/unschedulable", "NoSchedule"));
    }
    taints
}

fn same_taints(current: &[Taint], desired: &[Taint]) -> bool {
    let keys = |taints: &[Taint]| -> BTreeSet<(String, String)> {
        taints.iter().map(|taint| (taint.key.clone(), taint.effect.clone())).collect()
    };
    keys(current) == keys(desired)
}

/// When `pod` must leave a node with these NoExecute `taints`: now if one is not tolerated, else the earliest
/// taint's time plus the shortest tolerationSeconds among the tolerations used; `None` to stay for good.
fn eviction_time(pod: &Pod, taints: &[Taint], now: jiff::Timestamp) -> Option<jiff::Timestamp> {
    let tolerations = pod.spec.as_ref().and_then(|spec| spec.tolerations.clone()).unwrap_or_default();
    let mut shortest: Option<i64> = None;
    for taint in taints {
        let used: Vec<_> = tolerations.iter().filter(|toleration| tolerates(toleration, taint)).collect();
        if used.is_empty() {
            return Some(now);
        }
        for seconds in used.iter().filter_map(|toleration| toleration.toleration_seconds) {
            shortest = Some(shortest.map_or(seconds, |shortest| shortest.min(seconds)));
        }
    }
    let seconds = shortest?;
    let since = taints.iter().filter_map(|taint| taint.time_added.as_ref().map(|time| time.0)).min().unwrap_or(now);
    Some(since + jiff::SignedDuration::from_secs(seconds.max(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(value: serde_json::Value) -> Node {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn taints_follow_conditions_and_cordoning() {
        let lost = node(json!({"metadata": {"name": "n"}, "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "Unknown"}, {"type": "DiskPressure", "status": "True"}]}}));
        let keys: Vec<(String, String)> =
            desired_taints(&lost, true).into_iter().map(|taint| (taint.key, taint.effect)).collect();
        assert_eq!(
            keys,
            [
                (UNREACHABLE_TAINT.to_string(), "NoSchedule".to_string()),
                (UNREACHABLE_TAINT.to_string(), "NoExecute".to_string()),
                ("node.kubernetes.io/disk-pressure".to_string(), "NoSchedule".to_string()),
                ("node.kubernetes.io/unschedulable".to_string(), "NoSchedule".to_string()),
            ]
        );
        let not_ready =
            node(json!({"metadata": {"name": "n"}, "status": {"conditions": [{"type": "Ready", "status": "False"}]}}));
        assert!(desired_taints(&not_ready, true).iter().all(|taint| taint.key == NOT_READY_TAINT));
        assert!(desired_taints(&not_ready, false).iter().all(|taint| taint.effect == "NoSchedule"));
        let ready =
            node(json!({"metadata": {"name": "n"}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}));
        assert!(desired_taints(&ready, true).is_empty());
    }

    #[test]
    fn a_zone_without_a_ready_node_is_fully_disrupted() {
        let node = |name: &str, zone: &str, ready: &str| {
            Arc::new(node(json!({"metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": zone}},
                "status": {"conditions": [{"type": "Ready", "status": ready}]}})))
        };
        let nodes = vec![
            node("a1", "a", "Unknown"),
            node("a2", "a", "True"),
            node("b1", "b", "Unknown"),
            node("b2", "b", "False"),
        ];
        assert_eq!(fully_disrupted_zones(&nodes), BTreeSet::from(["b".to_string()]));
    }

    #[test]
    fn pods_leave_when_their_tolerations_run_out() {
        let added: jiff::Timestamp = "2026-03-01T10:00:00Z".parse().unwrap();
        let now: jiff::Timestamp = "2026-03-01T10:01:00Z".parse().unwrap();
        let taints = vec![Taint {
            key: UNREACHABLE_TAINT.into(),
            effect: "NoExecute".into(),
            time_added: Some(Time(added)),
            value: None,
        }];
        let pod = |tolerations: serde_json::Value| -> Pod {
            serde_json::from_value(
                json!({"metadata": {"name": "p"}, "spec": {"containers": [], "tolerations": tolerations}}),
            )
            .unwrap()
        };
        assert_eq!(eviction_time(&pod(json!([])), &taints, now), Some(now), "not tolerated: at once");
        let five_minutes = pod(
            json!([{"key": UNREACHABLE_TAINT, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]),
        );
        assert_eq!(eviction_time(&five_minutes, &taints, now), Some(added + jiff::SignedDuration::from_secs(300)));
        let forever = pod(json!([{"key": UNREACHABLE_TAINT, "operator": "Exists", "effect": "NoExecute"}]));
        assert_eq!(eviction_time(&forever, &taints, now), None);
        let everything = pod(json!([{"operator": "Exists"}]));
        assert_eq!(eviction_time(&everything, &taints, now), None);
    }
}
