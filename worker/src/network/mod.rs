//! The node's share of cluster networking, all run by the worker itself:
//! - `cni`: the pod bridge containerd's CRI plugin wires each sandbox into;
//! - `routes`: routes to the other nodes' pod ranges (host-gw or VXLAN) and masquerading of pod traffic leaving
//!   the cluster;
//! - `services`: one watch of Services and EndpointSlices that the proxy and DNS both read;
//! - `proxy`: Services programmed into the worker's own nftables table (kube-proxy's nftables mode);
//! - `dns`: the node's cluster DNS resolver, answered from the same watch;
//! - `policy`: NetworkPolicy for this node's pods, in its own nftables table;
//! - `host`: sysctls and the cluster DNS address on loopback; `pod_dns`: each pod's resolv.conf; `pod_hosts`: each
//!   pod's /etc/hosts;
//!   `service_env`: the Service environment variables of each container.

pub mod cni;
pub mod dns;
pub mod host;
pub mod nft;
pub mod pod_dns;
pub mod pod_hosts;
pub mod policy;
pub mod proxy;
pub mod routes;
pub mod service_env;
pub mod services;

use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use tokio_util::sync::CancellationToken;

use self::pod_dns::ClusterDns;
use self::proxy::ProxyConfig;
use self::services::ServiceView;

/// The cluster domain (kubelet `clusterDomain`); kaasd's certificates and tokens name it too.
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// How long start-up waits for the first list of Services and the Node's pod range before going on without them.
const START_WAIT: Duration = Duration::from_secs(10);

/// What pods need from the node's network: the cluster DNS they resolve with, if the cluster has one, and the
/// Services (for their environment variables).
pub struct NodeNetwork {
    pub cluster_dns: Option<ClusterDns>,
    pub services: kube::runtime::reflector::Store<k8s_openapi::api::core::v1::Service>,
}

/// Sets up the node's side of cluster networking and starts the Service proxy and the pod routes.
pub async fn start(
    client: kube::Client,
    node_name: &str,
    resolv_conf: &std::path::Path,
    cancel: &CancellationToken,
) -> NodeNetwork {
    host::enable_forwarding();
    let view = ServiceView::start(client.clone(), cancel);
    if !view.wait_until_ready(START_WAIT).await {
        tracing::warn!("Services are not listed yet; pods started now resolve names as the node does");
    }
    let pod_cidr = node_pod_cidr(&client, node_name).await;
    let cluster_dns = match view.cluster_dns_address() {
        Some(address) => match start_dns(address, &view, resolv_conf, cancel).await {
            Ok(()) => Some(ClusterDns { address, zone: CLUSTER_DOMAIN.to_string() }),
            Err(error) => {
                tracing::warn!(error = %error, "cannot answer cluster DNS on this node; pods resolve names as the node does");
                None
            }
        },
        None => None,
    };
    let config = ProxyConfig {
        node_name: node_name.to_string(),
        pod_cidr,
        node_local_ips: cluster_dns.iter().map(|dns| dns.address).collect(),
    };
    let services = view.services.clone();
    tokio::spawn(proxy::run(view, config, cancel.clone()));
    tokio::spawn(routes::run(client.clone(), node_name.to_string(), cancel.clone()));
    tokio::spawn(policy::run(client, node_name.to_string(), cancel.clone()));
    NodeNetwork { cluster_dns, services }
}

/// Removes what the worker set up on the host for networking: its nftables tables (Services, masquerading,
/// NetworkPolicy), the pod bridge, the routes to
/// other nodes' pods with the VXLAN device, and the cluster DNS address (`kaasd reset`; the worker itself leaves them in place when it stops, so pods and Services keep
/// working across restarts). What is already gone is skipped; every failure is reported, none stops the rest.
pub fn teardown() -> Result<(), Vec<String>> {
    let mut errors = Vec::new();
    if let Err(error) = nft::delete_table() {
        errors.push(error);
    }
    if let Err(error) = policy::teardown() {
        errors.push(error);
    }
    if let Err(error) = routes::teardown() {
        errors.push(error);
    }
    if let Err(error) = cni::delete_bridge() {
        errors.push(error);
    }
    if let Err(error) = host::remove_dns_addresses() {
        errors.push(error);
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Puts the cluster DNS address on this node and answers it there, forwarding other names to the node's own
/// resolvers.
async fn start_dns(
    address: std::net::Ipv4Addr,
    view: &ServiceView,
    resolv_conf: &std::path::Path,
    cancel: &CancellationToken,
) -> Result<(), String> {
    host::ensure_dns_address(address)?;
    let resolv_conf = std::fs::read_to_string(resolv_conf)
        .map_err(|error| format!("cannot read {}: {error}", resolv_conf.display()))?;
    let upstreams = dns::host_upstreams(&resolv_conf, &[address.into()]);
    if upstreams.is_empty() {
        tracing::warn!(
            "the resolver configuration names no resolver: names outside the cluster will not resolve in pods"
        );
    }
    let mut config = dns::DnsConfig::new(vec![std::net::SocketAddr::new(address.into(), 53)], upstreams);
    config.zone = CLUSTER_DOMAIN.to_string();
    let server = dns::bind(config, view.clone()).await.map_err(|error| error.to_string())?;
    tracing::info!(address = %address, "answering cluster DNS");
    tokio::spawn(server.run(cancel.clone()));
    Ok(())
}

/// The Node's `spec.podCIDR`, waiting a little for the controller to assign it.
async fn node_pod_cidr(client: &kube::Client, node_name: &str) -> Option<String> {
    let nodes: kube::Api<Node> = kube::Api::all(client.clone());
    let deadline = tokio::time::Instant::now() + START_WAIT;
    loop {
        if let Ok(Some(node)) = nodes.get_opt(node_name).await {
            if let Some(cidr) = node.spec.and_then(|spec| spec.pod_cidr) {
                return Some(cidr);
            }
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::info!("the Node has no pod range yet; Service traffic from pods is masqueraded too");
            return None;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
