//! The Node object and its Lease: registration with what the host is (addresses, capacity, OS, architecture), the
//! Lease in kube-node-lease renewed every 10 s (how the control plane tells a live node), and the Ready condition
//! refreshed once a minute.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    ContainerImage, DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeStatus, NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, OwnerReference, Time};
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::Api;

use crate::cri::{proto, RuntimeReadiness};
use crate::WorkerError;

pub const LEASE_RENEW_EVERY: Duration = Duration::from_secs(10);
pub const LEASE_DURATION_SECONDS: i32 = 40;
pub const STATUS_EVERY: Duration = Duration::from_secs(60);
/// How often the images the runtime holds are compared with those last reported.
pub const IMAGES_EVERY: Duration = Duration::from_secs(5);
const FIELD_MANAGER: &str = "kaasd-worker";

/// What the node reports about itself.
#[derive(Debug, Clone)]
pub struct HostFacts {
    pub hostname: String,
    pub addresses: Vec<IpAddr>,
    pub agent_port: u16,
    /// The container runtime, e.g. `containerd://1.6.20~ds1`.
    pub runtime_version: String,
}

/// Creates the Node if it is missing and reports its status.
pub async fn register(
    client: &kube::Client,
    name: &str,
    host: &HostFacts,
    runtime: &RuntimeReadiness,
    images: &[proto::Image],
) -> Result<(), WorkerError> {
    let nodes: Api<Node> = Api::all(client.clone());
    if nodes.get_opt(name).await?.is_none() {
        let node = Node {
            metadata: ObjectMeta { name: Some(name.into()), labels: Some(labels(name)), ..Default::default() },
            ..Default::default()
        };
        match nodes.create(&PostParams::default(), &node).await {
            Ok(_) => tracing::info!(node.name = name, "registered the node"),
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(error) => return Err(error.into()),
        }
    }
    report_status(client, name, host, runtime, images).await
}

/// Writes the node's status: addresses, capacity, system info, the agent's port, Ready and the images it holds.
pub async fn report_status(
    client: &kube::Client,
    name: &str,
    host: &HostFacts,
    runtime: &RuntimeReadiness,
    images: &[proto::Image],
) -> Result<(), WorkerError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut status = node_status(host, runtime);
    status.images = Some(node_images(images));
    let status = serde_json::json!({"status": status});
    nodes.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await?;
    Ok(())
}

/// Renews (or creates) the node's Lease.
pub async fn renew_lease(client: &kube::Client, name: &str, node_uid: Option<&str>) -> Result<(), WorkerError> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let now = MicroTime(jiff::Timestamp::now());
    let spec = LeaseSpec {
        holder_identity: Some(name.into()),
        lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
        renew_time: Some(now),
        ..Default::default()
    };
    match leases.get_opt(name).await? {
        Some(_) => {
            let patch = serde_json::json!({"spec": spec});
            leases.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        }
        None => {
            let owner = node_uid.map(|uid| OwnerReference {
                api_version: "v1".into(),
                kind: "Node".into(),
                name: name.into(),
                uid: uid.into(),
                ..Default::default()
            });
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    owner_references: owner.map(|owner| vec![owner]),
                    ..Default::default()
                },
                spec: Some(spec),
            };
            leases
                .create(&PostParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() }, &lease)
                .await?;
        }
    }
    Ok(())
}

pub async fn node_uid(client: &kube::Client, name: &str) -> Result<Option<String>, WorkerError> {
    let nodes: Api<Node> = Api::all(client.clone());
    Ok(nodes.get_opt(name).await?.and_then(|node| node.metadata.uid))
}

fn labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), name.to_string()),
        ("kubernetes.io/os".to_string(), std::env::consts::OS.to_string()),
        ("kubernetes.io/arch".to_string(), kubernetes_arch().to_string()),
    ])
}

/// Go's architecture names, which Kubernetes uses.
fn kubernetes_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "riscv64" => "riscv64",
        "s390x" => "s390x",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// The images a Node reports (largest first, at most 50, as the kubelet does), each under its tags and digests.
fn node_images(images: &[proto::Image]) -> Vec<ContainerImage> {
    const MOST: usize = 50;
    let mut images: Vec<&proto::Image> = images.iter().collect();
    images.sort_by_key(|image| std::cmp::Reverse(image.size));
    images
        .into_iter()
        .take(MOST)
        .map(|image| ContainerImage {
            names: Some(image.repo_digests.iter().chain(&image.repo_tags).cloned().collect())
                .filter(|names: &Vec<String>| !names.is_empty())
                .or_else(|| Some(vec![image.id.clone()])),
            size_bytes: i64::try_from(image.size).ok(),
        })
        .collect()
}

/// Ready follows the runtime: a node whose containerd does not answer cannot start pods. The pod network is only
/// described, because a node waits for its pod CIDR while already Ready (the controller assigns it).
fn node_status(host: &HostFacts, runtime: &RuntimeReadiness) -> NodeStatus {
    let now = Time(jiff::Timestamp::now());
    let mut addresses: Vec<NodeAddress> = host
        .addresses
        .iter()
        .map(|address| NodeAddress { type_: "InternalIP".into(), address: address.to_string() })
        .collect();
    addresses.push(NodeAddress { type_: "Hostname".into(), address: host.hostname.clone() });
    let cpus = std::thread::available_parallelism().map(|count| count.get()).unwrap_or(1);
    let memory_kib = memory_kib().unwrap_or(0);
    let resources = BTreeMap::from([
        ("cpu".to_string(), Quantity(cpus.to_string())),
        ("memory".to_string(), Quantity(format!("{memory_kib}Ki"))),
        ("pods".to_string(), Quantity("110".into())),
        ("ephemeral-storage".to_string(), Quantity("0".into())),
    ]);
    NodeStatus {
        addresses: Some(addresses),
        capacity: Some(resources.clone()),
        allocatable: Some(resources),
        conditions: Some(vec![NodeCondition {
            type_: "Ready".into(),
            status: if runtime.runtime.is_none() { "True" } else { "False" }.into(),
            reason: Some(
                if runtime.runtime.is_none() { "KaasdWorkerReady" } else { "ContainerRuntimeNotReady" }.into(),
            ),
            message: Some(match (&runtime.runtime, &runtime.network) {
                (Some(problem), _) => format!("container runtime is not ready: {problem}"),
                (None, Some(problem)) => {
                    format!("kaasd worker is posting ready status; the pod network is not ready yet: {problem}")
                }
                (None, None) => "kaasd worker is posting ready status".into(),
            }),
            last_heartbeat_time: Some(now.clone()),
            last_transition_time: Some(now),
        }]),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint { port: i32::from(host.agent_port) }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: kubernetes_arch().into(),
            operating_system: std::env::consts::OS.into(),
            kernel_version: first_line("/proc/sys/kernel/osrelease"),
            os_image: os_image(),
            machine_id: first_line("/etc/machine-id"),
            system_uuid: first_line("/sys/class/dmi/id/product_uuid"),
            boot_id: first_line("/proc/sys/kernel/random/boot_id"),
            kubelet_version: format!("v1.33.0-kaasd.{}", env!("CARGO_PKG_VERSION")),
            kube_proxy_version: String::new(),
            container_runtime_version: host.runtime_version.clone(),
            swap: None,
        }),
        ..Default::default()
    }
}

fn first_line(path: &str) -> String {
    std::fs::read_to_string(path).ok().and_then(|text| text.lines().next().map(str::to_string)).unwrap_or_default()
}

fn os_image() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("PRETTY_NAME="))
                .map(|value| value.trim_matches('"').to_string())
        })
        .unwrap_or_else(|| std::env::consts::OS.to_string())
}

pub(crate) fn memory_kib() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    text.lines().find_map(|line| line.strip_prefix("MemTotal:")?.trim().strip_suffix("kB")?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_describes_the_host() {
        let host = HostFacts {
            hostname: "edge1".into(),
            addresses: vec!["192.168.50.11".parse().unwrap()],
            agent_port: 10250,
            runtime_version: "containerd://1.6.20".into(),
        };
        let status = node_status(&host, &RuntimeReadiness::default());
        let addresses = status.addresses.unwrap();
        assert_eq!((addresses[0].type_.as_str(), addresses[0].address.as_str()), ("InternalIP", "192.168.50.11"));
        assert_eq!(addresses[1].type_, "Hostname");
        assert_eq!(status.daemon_endpoints.unwrap().kubelet_endpoint.unwrap().port, 10250);
        let capacity = status.capacity.unwrap();
        assert!(capacity["memory"].0.ends_with("Ki") && capacity["memory"].0 != "0Ki");
        assert_eq!(status.conditions.unwrap()[0].status, "True");
        let info = status.node_info.unwrap();
        assert_eq!(info.operating_system, "linux");
        assert_eq!(info.container_runtime_version, "containerd://1.6.20");
        let broken = RuntimeReadiness { runtime: Some("containerd is gone".into()), network: None };
        let condition = node_status(&host, &broken).conditions.unwrap().remove(0);
        assert_eq!(
            (condition.status.as_str(), condition.reason.as_deref()),
            ("False", Some("ContainerRuntimeNotReady"))
        );
        assert_eq!(labels("edge1")["kubernetes.io/hostname"], "edge1");
    }
}
