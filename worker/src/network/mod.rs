//! The node's share of cluster networking, all run by the worker itself:
//! - `cni`: the pod bridge containerd's CRI plugin wires each sandbox into;
//! - `services`: one watch of Services and EndpointSlices that the proxy and DNS both read;
//! - `proxy`: Services programmed into the worker's own nftables table (kube-proxy's nftables mode);
//! - `dns`: the node's cluster DNS resolver, answered from the same watch.

pub mod cni;
pub mod dns;
pub mod services;
