//! What the scheduler reads off a pod and a node, computed once: resource requests in whole units, host ports,
//! inter-pod affinity terms, and what a node has in use (the pods assigned to it, including those this scheduler
//! has bound but the watch has not shown yet).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::affinity::PodTerms;
use crate::apiserver::defaults::parse_quantity;

/// Requests in millicores and bytes (and a pod count), as the scheduler adds them up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
}

impl Resources {
    pub fn add(&mut self, other: &Resources) {
        self.milli_cpu += other.milli_cpu;
        self.memory += other.memory;
        self.ephemeral_storage += other.ephemeral_storage;
    }

    pub fn subtract(&mut self, other: &Resources) {
        self.milli_cpu -= other.milli_cpu;
        self.memory -= other.memory;
        self.ephemeral_storage -= other.ephemeral_storage;
    }

    fn max(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
    }

    pub fn from_list(list: Option<&std::collections::BTreeMap<String, Quantity>>) -> Resources {
        let value = |name: &str| list.and_then(|list| list.get(name)).and_then(|quantity| parse_quantity(&quantity.0));
        Resources {
            milli_cpu: value("cpu").map_or(0, |cores| (cores * 1000.0).ceil() as i64),
            memory: value("memory").map_or(0, |bytes| bytes.ceil() as i64),
            ephemeral_storage: value("ephemeral-storage").map_or(0, |bytes| bytes.ceil() as i64),
        }
    }
}

/// Upstream's defaults for a container that requests nothing, used only for scoring so that such pods still
/// spread (`pkg/scheduler/util` non-zero requests: 100m CPU, 200 MiB).
const DEFAULT_MILLI_CPU: i64 = 100;
const DEFAULT_MEMORY: i64 = 200 * 1024 * 1024;

/// A host port a pod wants: protocol, host IP ("0.0.0.0" for all), port.
pub type HostPort = (String, String, i32);

#[derive(Debug, Clone, Default)]
pub struct PodFacts {
    /// What the pod needs (the larger of its containers' sum and any one init container, plus overhead).
    pub requests: Resources,
    /// `requests` with upstream's non-zero defaults per container, for scoring.
    pub requests_for_scoring: Resources,
    pub host_ports: Vec<HostPort>,
    /// The uid of the pod's controlling owner, to spread replicas of one workload.
    pub owner: Option<String>,
    /// The pod's podAffinity and podAntiAffinity terms, parsed; `None` for the (usual) pod without any, so that
    /// such pods cost the inter-pod affinity plugin nothing.
    pub pod_affinity: Option<Arc<PodTerms>>,
    /// `spec.priority` (0 if unset), for preemption.
    pub priority: i32,
    /// `namespace/name`, to find the pod again when preemption picks it as a victim.
    pub key: crate::controllers::queue::Key,
}

impl PodFacts {
    pub fn of(pod: &Pod) -> PodFacts {
        let Some(spec) = pod.spec.as_ref() else { return PodFacts::default() };
        let container_requests = |container: &Container| {
            Resources::from_list(container.resources.as_ref().and_then(|resources| resources.requests.as_ref()))
        };
        let mut requests = Resources::default();
        let mut for_scoring = Resources::default();
        for container in &spec.containers {
            let container = container_requests(container);
            requests.add(&container);
            for_scoring.add(&Resources {
                milli_cpu: if container.milli_cpu == 0 { DEFAULT_MILLI_CPU } else { container.milli_cpu },
                memory: if container.memory == 0 { DEFAULT_MEMORY } else { container.memory },
                ephemeral_storage: container.ephemeral_storage,
            });
        }
        for init in spec.init_containers.iter().flatten() {
            let init = container_requests(init);
            requests.max(&init);
            for_scoring.max(&init);
        }
        let overhead = Resources::from_list(spec.overhead.as_ref());
        requests.add(&overhead);
        for_scoring.add(&overhead);
        let host_ports = spec
            .containers
            .iter()
            .flat_map(|container| container.ports.iter().flatten())
            .filter_map(|port| {
                let host_port = port.host_port.filter(|port| *port > 0)?;
                let host_ip = port.host_ip.clone().filter(|ip| !ip.is_empty()).unwrap_or_else(|| "0.0.0.0".into());
                Some((port.protocol.clone().unwrap_or_else(|| "TCP".into()), host_ip, host_port))
            })
            .collect();
        let owner = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|owner| owner.controller == Some(true))
            .map(|owner| owner.uid.clone());
        PodFacts {
            requests,
            requests_for_scoring: for_scoring,
            host_ports,
            owner,
            pod_affinity: PodTerms::of(pod),
            priority: spec.priority.unwrap_or(0),
            key: super::pod_key(pod),
        }
    }
}

/// What the scheduler reads off a Node's status, parsed once per change of the Node rather than once per pod and
/// node (quantity parsing was the largest cost of a scheduling decision on hundreds of nodes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeFacts {
    pub allocatable: Resources,
    pub max_pods: i64,
}

impl NodeFacts {
    pub fn of(node: &k8s_openapi::api::core::v1::Node) -> NodeFacts {
        let allocatable = node.status.as_ref().and_then(|status| status.allocatable.as_ref());
        let max_pods = allocatable
            .and_then(|list| list.get("pods"))
            .and_then(|quantity| quantity.0.parse::<i64>().ok())
            .unwrap_or(0);
        NodeFacts { allocatable: Resources::from_list(allocatable), max_pods }
    }
}

/// What is in use on one node.
#[derive(Debug, Clone, Default)]
pub struct NodeUsage {
    pub requested: Resources,
    pub requested_for_scoring: Resources,
    pub pods: i64,
    pub host_ports: HashSet<HostPort>,
    /// Pods per controlling owner uid.
    pub owners: HashMap<String, u32>,
}

impl NodeUsage {
    pub fn add(&mut self, facts: &PodFacts) {
        self.requested.add(&facts.requests);
        self.requested_for_scoring.add(&facts.requests_for_scoring);
        self.pods += 1;
        self.host_ports.extend(facts.host_ports.iter().cloned());
        if let Some(owner) = &facts.owner {
            *self.owners.entry(owner.clone()).or_insert(0) += 1;
        }
    }

    pub fn remove(&mut self, facts: &PodFacts) {
        self.requested.subtract(&facts.requests);
        self.requested_for_scoring.subtract(&facts.requests_for_scoring);
        self.pods -= 1;
        for port in &facts.host_ports {
            self.host_ports.remove(port);
        }
        if let Some(owner) = &facts.owner {
            if let Some(count) = self.owners.get_mut(owner) {
                *count -= 1;
                if *count == 0 {
                    self.owners.remove(owner);
                }
            }
        }
    }
}

/// Which pod counts against which node: every assigned pod that has not finished.
#[derive(Default)]
pub struct Usage {
    /// pod uid → (node, what it requests).
    pods: HashMap<String, (String, PodFacts)>,
    nodes: HashMap<String, NodeUsage>,
    /// The uids of the counted pods that have inter-pod affinity terms: an incoming pod must respect their
    /// required anti-affinity even if it has no terms itself, and only these need looking at for that.
    with_pod_affinity: HashSet<String>,
}

impl Usage {
    /// Counts `uid` against `node` (replacing what it counted before).
    pub fn assign(&mut self, uid: &str, node: &str, facts: PodFacts) {
        self.release(uid);
        self.nodes.entry(node.to_string()).or_default().add(&facts);
        if facts.pod_affinity.is_some() {
            self.with_pod_affinity.insert(uid.to_string());
        }
        self.pods.insert(uid.to_string(), (node.to_string(), facts));
    }

    pub fn release(&mut self, uid: &str) {
        if let Some((node, facts)) = self.pods.remove(uid) {
            if facts.pod_affinity.is_some() {
                self.with_pod_affinity.remove(uid);
            }
            if let Some(usage) = self.nodes.get_mut(&node) {
                usage.remove(&facts);
            }
        }
    }

    pub fn counts(&self, uid: &str) -> bool {
        self.pods.contains_key(uid)
    }

    pub fn node(&self, node: &str) -> Option<&NodeUsage> {
        self.nodes.get(node)
    }

    /// The node `uid` counts against: the one it is bound to, or was just bound to by this scheduler.
    pub fn node_of(&self, uid: &str) -> Option<&str> {
        self.pods.get(uid).map(|(node, _)| node.as_str())
    }

    /// The counted pods with inter-pod affinity terms, as (node, terms).
    pub fn pods_with_pod_affinity(&self) -> impl Iterator<Item = (&str, &PodTerms)> {
        self.with_pod_affinity.iter().filter_map(|uid| {
            let (node, facts) = self.pods.get(uid)?;
            Some((node.as_str(), facts.pod_affinity.as_deref()?))
        })
    }

    /// Every counted pod, as (uid, node, facts).
    pub fn pods(&self) -> impl Iterator<Item = (&str, &str, &PodFacts)> {
        self.pods.iter().map(|(uid, (node, facts))| (uid.as_str(), node.as_str(), facts))
    }

    pub fn has_pods_with_pod_affinity(&self) -> bool {
        !self.with_pod_affinity.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "uid": "u1"}, "spec": spec})).unwrap()
    }

    #[test]
    fn requests_add_containers_and_take_the_largest_init_container() {
        let facts = PodFacts::of(&pod(json!({
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}},
                {"name": "b", "resources": {"requests": {"cpu": "0.5"}}},
            ],
            "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "1", "memory": "1Mi"}}}],
            "overhead": {"cpu": "10m"},
        })));
        assert_eq!(facts.requests.milli_cpu, 1010);
        assert_eq!(facts.requests.memory, 64 * 1024 * 1024);
        // Scoring counts b's missing memory request as upstream's default.
        assert_eq!(facts.requests_for_scoring.memory, 64 * 1024 * 1024 + DEFAULT_MEMORY);
    }

    #[test]
    fn usage_follows_assignments() {
        let facts = PodFacts::of(&pod(json!({"containers": [
            {"name": "a", "resources": {"requests": {"cpu": "1"}}, "ports": [{"containerPort": 80, "hostPort": 8080}]}
        ]})));
        let mut usage = Usage::default();
        usage.assign("u1", "n1", facts.clone());
        assert_eq!(usage.node("n1").unwrap().requested.milli_cpu, 1000);
        assert!(usage.node("n1").unwrap().host_ports.contains(&("TCP".into(), "0.0.0.0".into(), 8080)));
        usage.assign("u1", "n2", facts);
        assert_eq!(usage.node("n1").unwrap().pods, 0);
        assert_eq!(usage.node("n2").unwrap().pods, 1);
        usage.release("u1");
        assert_eq!(usage.node("n2").unwrap().requested.milli_cpu, 0);
    }
}
