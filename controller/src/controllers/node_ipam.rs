//! Node IPAM: gives every Node a /24 of the cluster CIDR as `spec.podCIDR` (and `podCIDRs`), the range its
//! pods' addresses come from, as kube-controller-manager's range allocator does. A range is free again once its
//! Node is deleted. Only the leader allocates, one node at a time, so two nodes never get one range.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use std::net::Ipv4Addr;

use super::informer::{Change, Informer};
use super::queue::{self, WorkQueue};
use super::ReconcileError;
use crate::Ipv4Cidr;

/// The prefix length of each node's range.
const NODE_PREFIX: u8 = 24;

pub struct NodeIpam {
    nodes: Arc<Informer<Node>>,
    api: Api<Node>,
    cluster_cidr: Ipv4Cidr,
    /// Ranges handed out by this process that the cache may not show yet (network address of each /24).
    handed_out: Mutex<HashSet<u32>>,
    queue: WorkQueue,
}

impl NodeIpam {
    pub fn new(client: kube::Client, nodes: Arc<Informer<Node>>, cluster_cidr: Ipv4Cidr) -> Arc<NodeIpam> {
        let queue = WorkQueue::new();
        let enqueue = queue.clone();
        nodes.on_change(move |change| {
            if let Change::Applied { new, .. } = change {
                if new.spec.as_ref().and_then(|spec| spec.pod_cidr.as_ref()).is_none() {
                    enqueue.add(queue::key(None, new.metadata.name.as_deref().unwrap_or_default()));
                }
            }
        });
        Arc::new(NodeIpam { nodes, api: Api::all(client), cluster_cidr, handed_out: Default::default(), queue })
    }

    pub async fn run(self: Arc<Self>) {
        self.nodes.synced().await;
        let ipam = self.clone();
        // One worker: allocations are decided one after another.
        queue::run_workers("node-ipam", self.queue.clone(), 1, move |key| {
            let ipam = ipam.clone();
            async move { ipam.reconcile(&key).await }
        })
        .await;
    }

    async fn reconcile(&self, name: &str) -> Result<(), ReconcileError> {
        if self.nodes.get("", name).is_none() {
            return Ok(());
        }
        // Read fresh: the cache may not show the range this controller gave the node a moment ago, and a second
        // range would replace the first.
        let Some(node) = self.api.get_opt(name).await? else { return Ok(()) };
        if node.spec.as_ref().and_then(|spec| spec.pod_cidr.as_ref()).is_some() {
            return Ok(());
        }
        let in_use: HashSet<u32> = self
            .nodes
            .list()
            .iter()
            .filter_map(|node| node.spec.as_ref()?.pod_cidr.as_deref().and_then(network_of))
            .collect();
        let range = {
            let mut handed_out = self.handed_out.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            handed_out.retain(|network| !in_use.contains(network));
            let range =
                free_range(self.cluster_cidr, |network| in_use.contains(&network) || handed_out.contains(&network));
            if let Some(range) = range {
                handed_out.insert(u32::from(range));
            }
            range
        };
        let Some(range) = range else {
            tracing::warn!(node = name, cluster_cidr = %self.cluster_cidr, "no free pod range left for the node; give kaasd controller a larger --cluster-cidr");
            return Ok(());
        };
        let cidr = format!("{range}/{NODE_PREFIX}");
        let patch = json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}});
        if let Err(error) = self.api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            self.handed_out.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&u32::from(range));
            return Err(error.into());
        }
        tracing::info!(node = name, pod_cidr = %cidr, "node given its pod range");
        Ok(())
    }
}

/// The network address of an IPv4 `a.b.c.d/len`.
fn network_of(cidr: &str) -> Option<u32> {
    let (address, _) = cidr.split_once('/')?;
    address.parse::<Ipv4Addr>().ok().map(u32::from)
}

/// The first /24 in `cluster` that `taken` does not claim.
fn free_range(cluster: Ipv4Cidr, taken: impl Fn(u32) -> bool) -> Option<Ipv4Addr> {
    let count = 1u32 << (NODE_PREFIX - cluster.prefix);
    (0..count)
        .map(|index| u32::from(cluster.network) + (index << (32 - NODE_PREFIX)))
        .find(|network| !taken(*network))
        .map(Ipv4Addr::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_handed_out_in_order_and_reused() {
        let cluster = Ipv4Cidr::parse("10.244.0.0/16").unwrap();
        assert_eq!(free_range(cluster, |_| false), Some(Ipv4Addr::new(10, 244, 0, 0)));
        let taken = [network_of("10.244.0.0/24").unwrap(), network_of("10.244.2.0/24").unwrap()];
        assert_eq!(free_range(cluster, |network| taken.contains(&network)), Some(Ipv4Addr::new(10, 244, 1, 0)));
        let tiny = Ipv4Cidr::parse("10.244.0.0/24").unwrap();
        assert_eq!(free_range(tiny, |network| network == u32::from(Ipv4Addr::new(10, 244, 0, 0))), None);
    }
}
