//! Routes to the other nodes' pods, chosen per peer by the worker, and masquerading of what pods send outside the
//! cluster:
//! - **host-gw** when the peer's address is on one of this node's links (same LAN): a plain route to the peer's
//!   pod range via its address, so pod traffic crosses the LAN unencapsulated, at the LAN's full speed;
//! - **VXLAN** when the peer is reachable but behind a router: the pod range is routed through the `kaasd-vxlan`
//!   device, which wraps each packet in UDP to the peer's address (port 8472, as flannel and Linux default to).
//!
//! Both carry pod addresses end to end (no NAT between pods), which is what Services, NetworkPolicy and the
//! Kubernetes network model need. The choice per peer is written on this node's Node as the annotation
//! `kaasd.io/pod-routes` (for example `edge-2=host-gw,edge-3=vxlan`).
//!
//! VXLAN needs no exchange of addresses: a node's tunnel endpoint address is the first (network) address of its
//! pod range, never handed to a pod, and its MAC is derived from that address, so every node computes every peer's
//! endpoint from the Node objects alone.
//!
//! Routes this module owns carry the route protocol [`ROUTE_PROTOCOL`], so it can find and remove them without
//! touching anyone else's. Masquerading lives in its own nftables table [`TABLE`]; the Service proxy's table is
//! rebuilt as a whole and does not carry it.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Node;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// The VXLAN device that carries pod traffic to peers behind a router.
pub const VXLAN_DEVICE: &str = "kaasd-vxlan";
/// The VXLAN network identifier of the pod network.
const VXLAN_ID: u32 = 1;
/// The UDP port of the VXLAN underlay (Linux's and flannel's default, not IANA's 4789).
pub const VXLAN_PORT: u16 = 8472;
/// Bytes VXLAN adds to every packet over IPv4 (outer IP 20, UDP 8, VXLAN 8, inner Ethernet 14).
const VXLAN_OVERHEAD: u32 = 50;
/// The route protocol number on every route this module installs (`ip route show proto 107`).
pub const ROUTE_PROTOCOL: u8 = 107;
/// The nftables table that masquerades pod traffic leaving the cluster.
pub const TABLE: &str = "kaasd-podnet";
/// The Node annotation that shows how this node reaches each peer's pods.
pub const ROUTES_ANNOTATION: &str = "kaasd.io/pod-routes";
/// How often routes are checked against the kernel even when no Node changed (someone may have flushed them).
const RESYNC_EVERY: Duration = Duration::from_secs(30);

/// How this node reaches a peer's pod range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodRoute {
    /// A route via the peer's address on a link of this node.
    HostGw { gateway: Ipv4Addr, device: String },
    /// Through the VXLAN device to the peer's tunnel endpoint, carried to the peer's address.
    Vxlan { endpoint: Ipv4Addr, mac: String, underlay: Ipv4Addr },
}

impl PodRoute {
    fn mode(&self) -> &'static str {
        match self {
            PodRoute::HostGw { .. } => "host-gw",
            PodRoute::Vxlan { .. } => "vxlan",
        }
    }
}

/// A node as the pod network sees it: its name, pod range and the address other nodes reach it at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRoute {
    pub name: String,
    pub pod_cidr: Ipv4Net,
    pub address: Ipv4Addr,
}

impl NodeRoute {
    /// The Node's pod range and first IPv4 InternalIP, if it has both.
    pub fn of(node: &Node) -> Option<NodeRoute> {
        let name = node.metadata.name.clone()?;
        let pod_cidr: Ipv4Net = node.spec.as_ref()?.pod_cidr.as_deref()?.parse().ok()?;
        let address = node
            .status
            .as_ref()?
            .addresses
            .as_ref()?
            .iter()
            .filter(|address| address.type_ == "InternalIP")
            .find_map(|address| address.address.parse::<Ipv4Addr>().ok())?;
        Some(NodeRoute { name, pod_cidr: pod_cidr.trunc(), address })
    }

    /// The node's VXLAN endpoint address: its pod range's network address, which host-local IPAM never hands out.
    pub fn vxlan_endpoint(&self) -> Ipv4Addr {
        self.pod_cidr.network()
    }

    /// The MAC of the node's VXLAN device, derived from its endpoint address (locally administered, unicast).
    pub fn vxlan_mac(&self) -> String {
        let [a, b, c, d] = self.vxlan_endpoint().octets();
        format!("02:6b:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
    }
}

/// What the kernel says about reaching an address (`ip -j route get`): a gateway means a router in between.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lookup {
    pub gateway: Option<Ipv4Addr>,
    pub device: String,
}

/// Everything this node should have for the pod network, computed from the Nodes alone (plus route lookups).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Peer pod range → how to reach it.
    pub routes: BTreeMap<Ipv4Net, PodRoute>,
    /// Peer name → mode, for the annotation.
    pub modes: BTreeMap<String, &'static str>,
    /// Every node's pod range, this node's included: traffic between them is never masqueraded.
    pub pod_ranges: BTreeSet<Ipv4Net>,
}

impl Plan {
    /// Plans routes from this node (`own`) to every peer; `lookup` asks the kernel how an address is reached.
    pub fn new(own: &NodeRoute, peers: &[NodeRoute], mut lookup: impl FnMut(Ipv4Addr) -> Option<Lookup>) -> Plan {
        let mut plan = Plan::default();
        plan.pod_ranges.insert(own.pod_cidr);
        for peer in peers {
            if peer.name == own.name || peer.pod_cidr == own.pod_cidr {
                continue;
            }
            plan.pod_ranges.insert(peer.pod_cidr);
            let Some(found) = lookup(peer.address) else {
                tracing::debug!(node = %peer.name, address = %peer.address, "no route to the node; its pods are unreachable");
                continue;
            };
            let route = match found.gateway {
                None => PodRoute::HostGw { gateway: peer.address, device: found.device },
                Some(_) => {
                    PodRoute::Vxlan { endpoint: peer.vxlan_endpoint(), mac: peer.vxlan_mac(), underlay: peer.address }
                }
            };
            plan.modes.insert(peer.name.clone(), route.mode());
            plan.routes.insert(peer.pod_cidr, route);
        }
        plan
    }

    fn needs_vxlan(&self) -> bool {
        self.routes.values().any(|route| matches!(route, PodRoute::Vxlan { .. }))
    }

    /// The annotation value: `name=mode` per peer, by name.
    pub fn annotation(&self) -> String {
        self.modes.iter().map(|(name, mode)| format!("{name}={mode}")).collect::<Vec<_>>().join(",")
    }

    /// The masquerade table: pods' traffic to anything but another pod range leaves with the node's address.
    pub fn masquerade_script(&self, own_pod_cidr: Ipv4Net) -> String {
        let ranges = self.pod_ranges.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        format!(
            "table ip {TABLE} {{}}\ndelete table ip {TABLE}\ntable ip {TABLE} {{\n\
             \x20 set pod-ranges {{\n    type ipv4_addr; flags interval;\n    elements = {{ {ranges} }}\n  }}\n\
             \x20 chain postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;\n\
             \x20   ip saddr {own_pod_cidr} ip daddr != @pod-ranges masquerade\n  }}\n}}\n"
        )
    }
}

/// `ip` commands (for `ip -batch`) that take the kernel's routes from `current` to the plan's.
pub fn route_commands(plan: &Plan, current: &BTreeMap<Ipv4Net, (Ipv4Addr, String)>) -> Vec<String> {
    let mut commands = Vec::new();
    for (cidr, route) in &plan.routes {
        let (gateway, device, onlink) = match route {
            PodRoute::HostGw { gateway, device } => (*gateway, device.as_str(), ""),
            PodRoute::Vxlan { endpoint, .. } => (*endpoint, VXLAN_DEVICE, " onlink"),
        };
        if current
            .get(cidr)
            .is_some_and(|(have_gateway, have_device)| *have_gateway == gateway && have_device == device)
        {
            continue;
        }
        commands.push(format!("route replace {cidr} via {gateway} dev {device}{onlink} proto {ROUTE_PROTOCOL}"));
    }
    for cidr in current.keys().filter(|cidr| !plan.routes.contains_key(cidr)) {
        commands.push(format!("route del {cidr} proto {ROUTE_PROTOCOL}"));
    }
    commands
}

/// Keeps this node's pod routes and masquerading in line with the Nodes until `cancel`.
pub async fn run(client: kube::Client, node_name: String, cancel: CancellationToken) {
    let (nodes, writer) = reflector::store();
    let changes = reflector::reflector(writer, watcher(Api::<Node>::all(client.clone()), watcher::Config::default()))
        .default_backoff()
        .touched_objects();
    futures::pin_mut!(changes);
    let mut applied = Applied::default();
    let mut resync = tokio::time::interval(RESYNC_EVERY);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            change = changes.next() => match change {
                Some(Ok(_)) => {
                    // A burst of changes (a list at start, many nodes joining) is one reconcile.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Some(Err(error)) => {
                    tracing::warn!(error = %error, "watching Nodes failed; retrying");
                    continue;
                }
                None => return,
            },
            _ = resync.tick() => applied.kernel_checked = false,
        }
        if let Err(error) = applied.reconcile(&client, &node_name, &nodes).await {
            tracing::warn!(error = %error, "cannot program the routes to other nodes' pods; retrying");
            applied = Applied::default();
        }
    }
}

/// What was last put in place, so an unchanged plan costs nothing.
#[derive(Default)]
struct Applied {
    /// This node and its peers as last planned: Node heartbeats change nothing here, and then cost no lookups.
    inputs: Option<(NodeRoute, Vec<NodeRoute>)>,
    plan: Option<Plan>,
    masquerade: String,
    annotation: Option<String>,
    /// False until the kernel's state was read back since the last resync tick.
    kernel_checked: bool,
}

impl Applied {
    async fn reconcile(&mut self, client: &kube::Client, node_name: &str, nodes: &Store<Node>) -> Result<(), String> {
        let all: Vec<Arc<Node>> = nodes.state();
        let Some(own) = all.iter().find(|node| node.metadata.name.as_deref() == Some(node_name)) else {
            return Ok(());
        };
        let Some(own) = NodeRoute::of(own) else { return Ok(()) };
        let mut peers: Vec<NodeRoute> = all.iter().filter_map(|node| NodeRoute::of(node)).collect();
        peers.sort_by(|a, b| a.name.cmp(&b.name));
        let inputs = Some((own.clone(), peers.clone()));
        if self.kernel_checked && self.inputs == inputs {
            return Ok(());
        }
        let plan = tokio::task::spawn_blocking({
            let own = own.clone();
            move || Plan::new(&own, &peers, lookup)
        })
        .await
        .map_err(|error| error.to_string())?;
        if self.plan.as_ref() != Some(&plan) || !self.kernel_checked {
            let to_apply = plan.clone();
            let own_for_kernel = own.clone();
            tokio::task::spawn_blocking(move || program(&own_for_kernel, &to_apply))
                .await
                .map_err(|error| error.to_string())??;
            if self.plan.as_ref() != Some(&plan) {
                tracing::info!(routes = %plan.annotation(), "pod routes to other nodes programmed");
            }
            self.kernel_checked = true;
        }
        let masquerade = plan.masquerade_script(own.pod_cidr);
        if masquerade != self.masquerade {
            apply_nft(&masquerade)?;
            self.masquerade = masquerade;
        }
        let annotation = plan.annotation();
        if self.annotation.as_ref() != Some(&annotation) {
            let patch = serde_json::json!({"metadata": {"annotations": {ROUTES_ANNOTATION: annotation}}});
            Api::<Node>::all(client.clone())
                .patch(node_name, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch))
                .await
                .map_err(|error| format!("cannot annotate the Node: {error}"))?;
            self.annotation = Some(annotation);
        }
        self.plan = Some(plan);
        self.inputs = inputs;
        Ok(())
    }
}

/// Puts the plan's routes, VXLAN device and VXLAN neighbours in the kernel (blocking: runs `ip` and `bridge`).
fn program(own: &NodeRoute, plan: &Plan) -> Result<(), String> {
    if plan.needs_vxlan() {
        ensure_vxlan_device(own)?;
    } else if device_exists(VXLAN_DEVICE) {
        delete_vxlan_device()?;
    }
    let current = current_routes()?;
    let mut commands = route_commands(plan, &current);
    if plan.needs_vxlan() {
        let wanted: BTreeMap<Ipv4Addr, (&str, Ipv4Addr)> = plan
            .routes
            .values()
            .filter_map(|route| match route {
                PodRoute::Vxlan { endpoint, mac, underlay } => Some((*endpoint, (mac.as_str(), *underlay))),
                PodRoute::HostGw { .. } => None,
            })
            .collect();
        // The neighbour entry gives the peer's endpoint its MAC; the forwarding entry sends that MAC to the peer.
        for (endpoint, (mac, _)) in &wanted {
            commands.push(format!("neigh replace {endpoint} lladdr {mac} dev {VXLAN_DEVICE} nud permanent"));
        }
        for stale in vxlan_neighbours()?.into_iter().filter(|endpoint| !wanted.contains_key(endpoint)) {
            commands.push(format!("neigh del {stale} dev {VXLAN_DEVICE}"));
        }
        let mut fdb: Vec<String> = wanted
            .values()
            .map(|(mac, underlay)| format!("fdb replace {mac} dev {VXLAN_DEVICE} dst {underlay} self permanent"))
            .collect();
        let wanted_macs: BTreeSet<&str> = wanted.values().map(|(mac, _)| *mac).collect();
        for stale in vxlan_forwarding_macs()?.into_iter().filter(|mac| !wanted_macs.contains(mac.as_str())) {
            fdb.push(format!("fdb del {stale} dev {VXLAN_DEVICE} self"));
        }
        // Forwarding entries first: a route is only used once the peer's MAC leads somewhere.
        batch("bridge", &fdb)?;
    }
    batch("ip", &commands)
}

/// How the kernel reaches `address`; `None` when it does not, or when the address is this node's own.
fn lookup(address: Ipv4Addr) -> Option<Lookup> {
    let output = Command::new("ip").args(["-j", "-4", "route", "get", &address.to_string()]).output().ok()?;
    let routes: Value = serde_json::from_slice(&output.stdout).ok()?;
    let route = routes.get(0)?;
    let device = route.get("dev")?.as_str()?.to_string();
    let local = route.get("type").and_then(Value::as_str) == Some("local") || device == "lo";
    if local {
        return None;
    }
    let gateway = route.get("gateway").and_then(Value::as_str).and_then(|gateway| gateway.parse().ok());
    Some(Lookup { gateway, device })
}

/// This module's routes now in the kernel: pod range → (gateway, device).
fn current_routes() -> Result<BTreeMap<Ipv4Net, (Ipv4Addr, String)>, String> {
    let routes = ip_json(&["-4", "route", "show", "proto", &ROUTE_PROTOCOL.to_string()])?;
    Ok(routes
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|route| {
            let cidr: Ipv4Net = route.get("dst")?.as_str()?.parse().ok()?;
            let gateway: Ipv4Addr = route.get("gateway")?.as_str()?.parse().ok()?;
            Some((cidr, (gateway, route.get("dev")?.as_str()?.to_string())))
        })
        .collect())
}

fn vxlan_neighbours() -> Result<Vec<Ipv4Addr>, String> {
    let neighbours = ip_json(&["-4", "neigh", "show", "dev", VXLAN_DEVICE])?;
    Ok(neighbours
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.get("dst")?.as_str()?.parse().ok())
        .collect())
}

/// The MACs of the VXLAN device's forwarding entries that name a remote (not the device's own).
fn vxlan_forwarding_macs() -> Result<Vec<String>, String> {
    let output = Command::new("bridge")
        .args(["-j", "fdb", "show", "dev", VXLAN_DEVICE])
        .output()
        .map_err(|error| format!("cannot run bridge ({error}); install iproute2"))?;
    let entries: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    Ok(entries
        .as_array()
        .into_iter()
        .flatten()
        .filter(|entry| entry.get("dst").is_some())
        .filter_map(|entry| Some(entry.get("mac")?.as_str()?.to_string()))
        .collect())
}

/// Creates (or re-creates, when its settings differ) the VXLAN device with this node's endpoint on it.
fn ensure_vxlan_device(own: &NodeRoute) -> Result<(), String> {
    let underlay_device = device_with_address(own.address)?;
    let wanted_mac = own.vxlan_mac();
    let links = ip_json(&["-d", "link", "show", "dev", VXLAN_DEVICE]).unwrap_or(Value::Null);
    let matches = links.get(0).is_some_and(|link| {
        let data = &link["linkinfo"]["info_data"];
        data["id"].as_u64() == Some(u64::from(VXLAN_ID))
            && data["local"].as_str() == Some(own.address.to_string().as_str())
            && data["port"].as_u64() == Some(u64::from(VXLAN_PORT))
            && link["address"].as_str() == Some(wanted_mac.as_str())
    });
    if !matches {
        if device_exists(VXLAN_DEVICE) {
            delete_vxlan_device()?;
        }
        let mtu = device_mtu(&underlay_device).saturating_sub(VXLAN_OVERHEAD).max(576);
        batch(
            "ip",
            &[
                format!(
                    "link add {VXLAN_DEVICE} address {wanted_mac} mtu {mtu} type vxlan id {VXLAN_ID} local {} dev \
                     {underlay_device} dstport {VXLAN_PORT} nolearning",
                    own.address
                ),
                format!("link set {VXLAN_DEVICE} up"),
            ],
        )?;
        tracing::info!(device = VXLAN_DEVICE, underlay = %underlay_device, mtu, "created the VXLAN device");
    }
    batch("ip", &[format!("addr replace {}/32 dev {VXLAN_DEVICE}", own.vxlan_endpoint())])
}

fn delete_vxlan_device() -> Result<(), String> {
    batch("ip", &[format!("link delete {VXLAN_DEVICE}")])
}

/// Deletes the VXLAN device and the masquerade table, if there (for `kaasd reset`). Host-gw routes go with them
/// only when their devices go; they are removed here by protocol.
pub fn teardown() -> Result<(), String> {
    if device_exists(VXLAN_DEVICE) {
        delete_vxlan_device()?;
    }
    let routes: Vec<String> =
        current_routes()?.keys().map(|cidr| format!("route del {cidr} proto {ROUTE_PROTOCOL}")).collect();
    batch("ip", &routes)?;
    apply_nft(&format!("table ip {TABLE} {{}}\ndelete table ip {TABLE}\n"))
}

/// Whether the network device exists. Asks the kernel over netlink (`ip`) rather than reading /sys, whose
/// view of devices belongs to the network namespace it was mounted in, not necessarily this process's.
fn device_exists(name: &str) -> bool {
    ip_json(&["link", "show", "dev", name]).is_ok()
}

fn device_mtu(name: &str) -> u32 {
    ip_json(&["link", "show", "dev", name])
        .ok()
        .and_then(|links| links.get(0)?.get("mtu")?.as_u64())
        .and_then(|mtu| u32::try_from(mtu).ok())
        .unwrap_or(1500)
}

/// The interface that holds `address`: the VXLAN device sends from it.
fn device_with_address(address: Ipv4Addr) -> Result<String, String> {
    let links = ip_json(&["-4", "addr", "show"])?;
    links
        .as_array()
        .into_iter()
        .flatten()
        .find(|link| {
            link["addr_info"]
                .as_array()
                .is_some_and(|infos| infos.iter().any(|info| info["local"].as_str() == Some(&address.to_string())))
        })
        .and_then(|link| Some(link.get("ifname")?.as_str()?.to_string()))
        .ok_or_else(|| format!("no interface of this node has its address {address}"))
}

fn ip_json(arguments: &[&str]) -> Result<Value, String> {
    let output = Command::new("ip")
        .arg("-j")
        .args(arguments)
        .output()
        .map_err(|error| format!("cannot run ip ({error}); install iproute2"))?;
    if !output.status.success() {
        return Err(format!("ip {}: {}", arguments.join(" "), String::from_utf8_lossy(&output.stderr).trim()));
    }
    if output.stdout.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Array(Vec::new()));
    }
    serde_json::from_slice(&output.stdout).map_err(|error| format!("ip {}: unreadable output: {error}", arguments[0]))
}

/// Runs `program -batch -` with `commands`, one process for all of them; stops at the first failing command.
fn batch(program: &str, commands: &[String]) -> Result<(), String> {
    if commands.is_empty() {
        return Ok(());
    }
    run_with_input(program, &["-batch", "-"], &(commands.join("\n") + "\n"), "iproute2")
        .map_err(|error| format!("{program} refused: {error}"))
}

/// Loads an nftables script in one transaction (`nft -f -`).
pub(crate) fn apply_nft(script: &str) -> Result<(), String> {
    run_with_input("nft", &["-f", "-"], script, "nftables").map_err(|error| format!("nft refused the rules: {error}"))
}

/// Runs `program` with `input` on its standard input; its standard error is the error when it fails.
fn run_with_input(program: &str, arguments: &[&str], input: &str, package: &str) -> Result<(), String> {
    let mut child = Command::new(program)
        .args(arguments)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| format!("cannot run {program} ({error}); install {package}"))?;
    child.stdin.take().expect("piped").write_all(input.as_bytes()).map_err(|error| error.to_string())?;
    let output = child.wait_with_output().map_err(|error| error.to_string())?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).trim().to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, cidr: &str, address: [u8; 4]) -> NodeRoute {
        NodeRoute { name: name.into(), pod_cidr: cidr.parse().unwrap(), address: Ipv4Addr::from(address) }
    }

    #[test]
    fn peers_on_a_link_get_host_gw_and_peers_behind_a_router_get_vxlan() {
        let own = node("a", "10.244.0.0/24", [192, 168, 50, 11]);
        let peers = [
            own.clone(),
            node("b", "10.244.1.0/24", [192, 168, 50, 12]),
            node("c", "10.244.2.0/24", [192, 168, 60, 11]),
        ];
        let plan = Plan::new(&own, &peers, |address| {
            Some(if address.octets()[2] == 50 {
                Lookup { gateway: None, device: "eth0".into() }
            } else {
                Lookup { gateway: Some(Ipv4Addr::new(192, 168, 50, 1)), device: "eth0".into() }
            })
        });
        assert_eq!(plan.annotation(), "b=host-gw,c=vxlan");
        assert_eq!(
            plan.routes[&"10.244.1.0/24".parse().unwrap()],
            PodRoute::HostGw { gateway: Ipv4Addr::new(192, 168, 50, 12), device: "eth0".into() }
        );
        assert_eq!(
            plan.routes[&"10.244.2.0/24".parse().unwrap()],
            PodRoute::Vxlan {
                endpoint: Ipv4Addr::new(10, 244, 2, 0),
                mac: "02:6b:0a:f4:02:00".into(),
                underlay: Ipv4Addr::new(192, 168, 60, 11)
            }
        );
        assert_eq!(plan.pod_ranges.len(), 3);
        let script = plan.masquerade_script(own.pod_cidr);
        assert!(script.contains("elements = { 10.244.0.0/24, 10.244.1.0/24, 10.244.2.0/24 }"), "{script}");
        assert!(script.contains("ip saddr 10.244.0.0/24 ip daddr != @pod-ranges masquerade"), "{script}");
    }

    #[test]
    fn unreachable_peers_get_no_route_but_their_range_is_still_not_masqueraded() {
        let own = node("a", "10.244.0.0/24", [192, 168, 50, 11]);
        let plan = Plan::new(&own, &[node("b", "10.244.1.0/24", [10, 9, 9, 9])], |_| None);
        assert!(plan.routes.is_empty());
        assert!(plan.pod_ranges.contains(&"10.244.1.0/24".parse().unwrap()));
    }

    #[test]
    fn only_changed_routes_are_replaced_and_stale_ones_deleted() {
        let own = node("a", "10.244.0.0/24", [192, 168, 50, 11]);
        let plan = Plan::new(&own, &[node("b", "10.244.1.0/24", [192, 168, 50, 12])], |_| {
            Some(Lookup { gateway: None, device: "eth0".into() })
        });
        let current = BTreeMap::from([
            ("10.244.1.0/24".parse().unwrap(), (Ipv4Addr::new(192, 168, 50, 12), "eth0".to_string())),
            ("10.244.9.0/24".parse().unwrap(), (Ipv4Addr::new(192, 168, 50, 19), "eth0".to_string())),
        ]);
        assert_eq!(route_commands(&plan, &current), vec![format!("route del 10.244.9.0/24 proto {ROUTE_PROTOCOL}")]);
        assert_eq!(
            route_commands(&plan, &BTreeMap::new()),
            vec![format!("route replace 10.244.1.0/24 via 192.168.50.12 dev eth0 proto {ROUTE_PROTOCOL}")]
        );
    }
}
