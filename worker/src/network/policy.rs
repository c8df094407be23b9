//! NetworkPolicy, enforced by each worker for the pods on its node, in its own nftables table [`TABLE`].
//!
//! Semantics as the API defines them: a pod selected by a policy whose `policyTypes` include Ingress (or Egress)
//! is isolated in that direction, and then only what some selecting policy's rules allow gets through: peers by
//! pod selector (in the policy's namespace), namespace selector, both, or ipBlock with exceptions; ports by number,
//! range (`endPort`) or name (the destination pod's container port). Replies to allowed connections pass
//! (conntrack), and so does the node's own traffic to its pods (probes), as in other implementations.
//!
//! The table is a pure function of the policies, the cluster's pods and namespaces ([`render`]), replaced as a
//! whole in one `nft -f` transaction when it changes: a `forward` chain (pod traffic, bridged or routed, after
//! Service DNAT) and an `input` chain (pods to this node) dispatch by address through verdict maps to one chain per
//! isolated pod and direction, which `return`s for what is allowed and drops the rest.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::core::{Selector, SelectorExt};
use kube::runtime::reflector;
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;
use tokio_util::sync::CancellationToken;

/// kaasd's NetworkPolicy table.
pub const TABLE: &str = "kaasd-policy";

/// Which way a rule looks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Ingress,
    Egress,
}

/// A pod as policies see it.
struct PodFacts<'a> {
    namespace: &'a str,
    labels: BTreeMap<String, String>,
    ip: Option<&'a str>,
    pod: &'a Pod,
}

fn facts(pod: &Pod) -> Option<PodFacts<'_>> {
    let status = pod.status.as_ref();
    let running = !matches!(status.and_then(|status| status.phase.as_deref()), Some("Succeeded" | "Failed"));
    if !running || pod.spec.as_ref().and_then(|spec| spec.host_network) == Some(true) {
        return None;
    }
    Some(PodFacts {
        namespace: pod.metadata.namespace.as_deref()?,
        labels: pod.metadata.labels.clone().unwrap_or_default(),
        ip: status.and_then(|status| status.pod_ip.as_deref()).filter(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok()),
        pod,
    })
}

fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    Selector::try_from(selector.clone()).is_ok_and(|selector| selector.matches(labels))
}

/// The nftables script for the pods of `node_name`; empty when no policy isolates any of them (the table is then
/// removed).
pub fn render(
    node_name: &str,
    policies: &[Arc<NetworkPolicy>],
    pods: &[Arc<Pod>],
    namespaces: &[Arc<Namespace>],
) -> String {
    let all: Vec<PodFacts<'_>> = pods.iter().filter_map(|pod| facts(pod)).collect();
    let namespace_labels: BTreeMap<&str, BTreeMap<String, String>> = namespaces
        .iter()
        .filter_map(|namespace| {
            Some((namespace.metadata.name.as_deref()?, namespace.metadata.labels.clone().unwrap_or_default()))
        })
        .collect();
    let mut chains = String::new();
    let mut ingress_map = Vec::new();
    let mut egress_map = Vec::new();
    let local = all.iter().filter(|pod| {
        pod.ip.is_some() && pod.pod.spec.as_ref().and_then(|spec| spec.node_name.as_deref()) == Some(node_name)
    });
    for pod in local {
        let ip = pod.ip.expect("filtered");
        for direction in [Direction::Ingress, Direction::Egress] {
            let selecting: Vec<&NetworkPolicy> = policies
                .iter()
                .map(AsRef::as_ref)
                .filter(|policy| policy.metadata.namespace.as_deref() == Some(pod.namespace))
                .filter(|policy| {
                    let spec = policy.spec.clone().unwrap_or_default();
                    selects(&spec.pod_selector.unwrap_or_default(), &pod.labels) && has_type(policy, direction)
                })
                .collect();
            if selecting.is_empty() {
                continue;
            }
            let chain = format!(
                "{}-{}",
                if direction == Direction::Ingress { "ingress" } else { "egress" },
                ip.replace('.', "-")
            );
            let _ = writeln!(chains, "  chain {chain} {{");
            for policy in selecting {
                for line in allow_rules(policy, direction, pod, &all, &namespace_labels) {
                    let _ = writeln!(chains, "    {line} return");
                }
            }
            let _ = writeln!(chains, "    drop\n  }}");
            let entry = format!("{ip} : jump {chain}");
            if direction == Direction::Ingress {
                ingress_map.push(entry)
            } else {
                egress_map.push(entry)
            }
        }
    }
    if ingress_map.is_empty() && egress_map.is_empty() {
        return String::new();
    }
    let mut dispatch = String::new();
    if !ingress_map.is_empty() {
        let _ = writeln!(dispatch, "    ip daddr vmap {{ {} }}", ingress_map.join(", "));
    }
    let mut egress = String::new();
    if !egress_map.is_empty() {
        let _ = writeln!(egress, "    ip saddr vmap {{ {} }}", egress_map.join(", "));
    }
    format!(
        "table ip {TABLE} {{\n{chains}  chain forward {{\n    type filter hook forward priority filter; policy accept;\n\
         \x20   ct state established,related accept\n{dispatch}{egress}  }}\n  chain input {{\n    \
         type filter hook input priority filter; policy accept;\n    ct state established,related accept\n{egress}  }}\n}}\n"
    )
}

fn has_type(policy: &NetworkPolicy, direction: Direction) -> bool {
    let spec = policy.spec.clone().unwrap_or_default();
    match spec.policy_types {
        Some(types) => {
            types.iter().any(|kind| kind == if direction == Direction::Ingress { "Ingress" } else { "Egress" })
        }
        // Without policyTypes: Ingress always, Egress when the policy has egress rules.
        None => direction == Direction::Ingress || spec.egress.is_some(),
    }
}

/// A rule's peers and ports, of either direction.
type PolicyRule = (Option<Vec<NetworkPolicyPeer>>, Option<Vec<NetworkPolicyPort>>);

/// One nftables match per allowed (peers, port) pair of the policy's rules in `direction`; each line is completed
/// with `return`.
fn allow_rules(
    policy: &NetworkPolicy,
    direction: Direction,
    pod: &PodFacts<'_>,
    all: &[PodFacts<'_>],
    namespace_labels: &BTreeMap<&str, BTreeMap<String, String>>,
) -> Vec<String> {
    let spec = policy.spec.clone().unwrap_or_default();
    let policy_namespace = policy.metadata.namespace.as_deref().unwrap_or_default();
    let field = if direction == Direction::Ingress { "saddr" } else { "daddr" };
    let rules: Vec<PolicyRule> = match direction {
        Direction::Ingress => {
            spec.ingress.unwrap_or_default().into_iter().map(|rule| (rule.from, rule.ports)).collect()
        }
        Direction::Egress => spec.egress.unwrap_or_default().into_iter().map(|rule| (rule.to, rule.ports)).collect(),
    };
    let mut lines = Vec::new();
    for (peers, ports) in rules {
        // Peers: None or empty means everyone.
        let peer_matches: Vec<String> = match peers.filter(|peers| !peers.is_empty()) {
            None => vec![String::new()],
            Some(peers) => peers
                .iter()
                .filter_map(|peer| peer_match(peer, field, policy_namespace, all, namespace_labels))
                .collect(),
        };
        let port_matches = port_matches(ports.as_deref(), direction, pod, all);
        for peer in &peer_matches {
            for port in &port_matches {
                lines.push(format!("{peer}{port}").trim().to_string());
            }
        }
    }
    lines
}

/// `ip saddr { … }` for a peer, or `None` when it matches no address (it then allows nothing).
fn peer_match(
    peer: &NetworkPolicyPeer,
    field: &str,
    policy_namespace: &str,
    all: &[PodFacts<'_>],
    namespace_labels: &BTreeMap<&str, BTreeMap<String, String>>,
) -> Option<String> {
    if let Some(block) = &peer.ip_block {
        let except = block.except.clone().unwrap_or_default();
        let mut text = format!("ip {field} {} ", block.cidr);
        if !except.is_empty() {
            let _ = write!(text, "ip {field} != {{ {} }} ", except.join(", "));
        }
        return Some(text);
    }
    let addresses: BTreeSet<&str> = all
        .iter()
        .filter(|candidate| match &peer.namespace_selector {
            None => candidate.namespace == policy_namespace,
            Some(selector) => namespace_labels.get(candidate.namespace).is_some_and(|labels| selects(selector, labels)),
        })
        .filter(|candidate| peer.pod_selector.as_ref().is_none_or(|selector| selects(selector, &candidate.labels)))
        .filter_map(|candidate| candidate.ip)
        .collect();
    if addresses.is_empty() {
        return None;
    }
    Some(format!("ip {field} {{ {} }} ", addresses.into_iter().collect::<Vec<_>>().join(", ")))
}

/// `tcp dport 80` and the like per port; one empty match when the rule names no ports (every port).
fn port_matches(
    ports: Option<&[NetworkPolicyPort]>,
    direction: Direction,
    pod: &PodFacts<'_>,
    all: &[PodFacts<'_>],
) -> Vec<String> {
    let Some(ports) = ports.filter(|ports| !ports.is_empty()) else { return vec![String::new()] };
    let mut matches = BTreeSet::new();
    for port in ports {
        let protocol = port.protocol.as_deref().unwrap_or("TCP").to_lowercase();
        match &port.port {
            None => {
                matches.insert(format!("meta l4proto {protocol}"));
            }
            Some(IntOrString::Int(number)) => {
                let range = port.end_port.map_or(number.to_string(), |end| format!("{number}-{end}"));
                matches.insert(format!("{protocol} dport {range}"));
            }
            Some(IntOrString::String(name)) => {
                // A named port is the destination pod's: this pod for ingress, any peer pod for egress.
                let owners: Vec<&Pod> = if direction == Direction::Ingress {
                    vec![pod.pod]
                } else {
                    all.iter().map(|peer| peer.pod).collect()
                };
                for number in named_port(&owners, name, &protocol) {
                    matches.insert(format!("{protocol} dport {number}"));
                }
            }
        }
    }
    matches.into_iter().collect()
}

fn named_port(pods: &[&Pod], name: &str, protocol: &str) -> BTreeSet<i32> {
    pods.iter()
        .flat_map(|pod| pod.spec.iter().flat_map(|spec| spec.containers.iter()))
        .flat_map(|container| container.ports.iter().flatten())
        .filter(|port| port.name.as_deref() == Some(name))
        .filter(|port| port.protocol.as_deref().unwrap_or("TCP").eq_ignore_ascii_case(protocol))
        .map(|port| port.container_port)
        .collect()
}

/// Keeps the table in line with the cluster's policies, pods and namespaces until `cancel`.
pub async fn run(client: kube::Client, node_name: String, cancel: CancellationToken) {
    let (policies, policy_writer) = reflector::store::<NetworkPolicy>();
    let (pods, pod_writer) = reflector::store::<Pod>();
    let (namespaces, namespace_writer) = reflector::store::<Namespace>();
    let policy_events =
        reflector::reflector(policy_writer, watcher(Api::all(client.clone()), watcher::Config::default()))
            .default_backoff()
            .touched_objects()
            .map(|event| event.map(|_| ()));
    let pod_events = reflector::reflector(pod_writer, watcher(Api::all(client.clone()), watcher::Config::default()))
        .default_backoff()
        .touched_objects()
        .map(|event| event.map(|_| ()));
    let namespace_events =
        reflector::reflector(namespace_writer, watcher(Api::all(client), watcher::Config::default()))
            .default_backoff()
            .touched_objects()
            .map(|event| event.map(|_| ()));
    let events = futures::stream::select(policy_events, futures::stream::select(pod_events, namespace_events));
    futures::pin_mut!(events);
    let mut applied: Option<String> = None;
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            event = events.next() => match event {
                Some(Ok(())) => tokio::time::sleep(Duration::from_millis(50)).await,
                Some(Err(error)) => {
                    tracing::warn!(error = %error, "watching NetworkPolicies, pods or namespaces failed; retrying");
                    continue;
                }
                None => return,
            },
        }
        let script = render(&node_name, &policies.state(), &pods.state(), &namespaces.state());
        if applied.as_ref() == Some(&script) {
            continue;
        }
        let full = format!("table ip {TABLE} {{}}\ndelete table ip {TABLE}\n{script}");
        match tokio::task::spawn_blocking(move || super::routes::apply_nft(&full)).await {
            Ok(Ok(())) => {
                tracing::debug!("network policies programmed");
                applied = Some(script);
            }
            Ok(Err(error)) => {
                tracing::warn!(error = %error, "cannot program the network policies; retrying with the next change");
                applied = None;
            }
            Err(error) => tracing::warn!(error = %error, "programming the network policies panicked"),
        }
    }
}

/// Deletes the table (for `kaasd reset`).
pub fn teardown() -> Result<(), String> {
    super::routes::apply_nft(&format!("table ip {TABLE} {{}}\ndelete table ip {TABLE}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(namespace: &str, name: &str, node: &str, ip: &str, labels: serde_json::Value) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"namespace": namespace, "name": name, "labels": labels},
                "spec": {"nodeName": node, "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]},
                "status": {"phase": "Running", "podIP": ip},
            }))
            .unwrap(),
        )
    }

    fn policy(value: serde_json::Value) -> Arc<NetworkPolicy> {
        Arc::new(serde_json::from_value(value).unwrap())
    }

    fn namespace(name: &str, labels: serde_json::Value) -> Arc<Namespace> {
        Arc::new(serde_json::from_value(serde_json::json!({"metadata": {"name": name, "labels": labels}})).unwrap())
    }

    #[test]
    fn no_policy_no_table() {
        let pods = [pod("shop", "web", "n1", "10.244.0.5", serde_json::json!({"app": "web"}))];
        assert_eq!(render("n1", &[], &pods, &[]), "");
    }

    #[test]
    fn ingress_from_selected_pods_and_namespaces_on_named_ports() {
        let pods = [
            pod("shop", "web", "n1", "10.244.0.5", serde_json::json!({"app": "web"})),
            pod("shop", "client", "n2", "10.244.1.6", serde_json::json!({"role": "client"})),
            pod("shop", "other", "n2", "10.244.1.7", serde_json::json!({"role": "other"})),
            pod("monitoring", "prom", "n2", "10.244.1.8", serde_json::json!({})),
        ];
        let namespaces =
            [namespace("shop", serde_json::json!({})), namespace("monitoring", serde_json::json!({"team": "ops"}))];
        let policies = [policy(serde_json::json!({
            "metadata": {"namespace": "shop", "name": "web"},
            "spec": {
                "podSelector": {"matchLabels": {"app": "web"}},
                "ingress": [
                    {"from": [{"podSelector": {"matchLabels": {"role": "client"}}}], "ports": [{"port": "http"}]},
                    {"from": [{"namespaceSelector": {"matchLabels": {"team": "ops"}}}, {"ipBlock": {"cidr": "192.168.0.0/16", "except": ["192.168.9.0/24"]}}]},
                ],
            },
        }))];
        let script = render("n1", &policies, &pods, &namespaces);
        assert!(script.contains("ip daddr vmap { 10.244.0.5 : jump ingress-10-244-0-5 }"), "{script}");
        assert!(script.contains("ip saddr { 10.244.1.6 } tcp dport 8080 return"), "{script}");
        assert!(script.contains("ip saddr { 10.244.1.8 } return"), "{script}");
        assert!(script.contains("ip saddr 192.168.0.0/16 ip saddr != { 192.168.9.0/24 } return"), "{script}");
        assert!(!script.contains("10.244.1.7"), "{script}");
        assert!(!script.contains("saddr vmap"), "no egress isolation: {script}");
        // Pods on other nodes are their nodes' business.
        assert_eq!(render("n2", &policies, &pods, &namespaces), "");
    }

    #[test]
    fn deny_all_egress_isolates_with_nothing_allowed() {
        let pods = [pod("shop", "web", "n1", "10.244.0.5", serde_json::json!({}))];
        let policies = [policy(serde_json::json!({
            "metadata": {"namespace": "shop", "name": "deny"},
            "spec": {"podSelector": {}, "policyTypes": ["Egress"]},
        }))];
        let script = render("n1", &policies, &pods, &[]);
        assert!(script.contains("chain egress-10-244-0-5 {\n    drop\n  }"), "{script}");
        assert!(script.contains("ip saddr vmap { 10.244.0.5 : jump egress-10-244-0-5 }"), "{script}");
        assert!(!script.contains("ingress-"), "{script}");
    }
}
