//! The `kubernetes` Service's endpoints follow the live controller replicas, as kube-apiserver's lease endpoint
//! reconciler does. Each replica keeps its advertised address and port under `/kaasd/apiserver-endpoints/` in the
//! datastore, on a datastore lease it renews, so a replica that dies drops out when its lease expires; after each
//! renewal it rewrites the Endpoints and EndpointSlices `default/kubernetes` if they differ from the live set. A
//! replica that stops takes its own address out first.
//!
//! The set is never written empty (upstream refuses too): with no replica alive nobody could serve it, and the
//! next replica to start puts itself back. Replicas behind one load balancer advertise one address, which is then
//! listed once.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::Endpoints;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kaasd_datastore::{KeyRange, PutRequest, RangeRequest, Store};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const PREFIX: &str = "/kaasd/apiserver-endpoints/";
/// How long a replica that stopped renewing stays listed.
const LEASE_TTL_SECONDS: i64 = 30;
const RENEW_EVERY: Duration = Duration::from_secs(10);
const NAMESPACE: &str = "default";
const SERVICE: &str = "kubernetes";
const SLICE_LABELS: &str = "kubernetes.io/service-name=kubernetes,endpointslice.kubernetes.io/managed-by=kaasd";

/// What a replica advertises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Advertised {
    pub address: IpAddr,
    pub port: u16,
}

/// Keeps this replica listed until `cancel`, then takes it out.
pub async fn run(store: Store, client: kube::Client, identity: String, own: Advertised, cancel: CancellationToken) {
    let key = format!("{PREFIX}{identity}");
    let mut lease = 0;
    loop {
        match keep_listed(&store, &key, own, &mut lease).await {
            Ok(()) => {
                if let Err(error) = reconcile(&store, &client).await {
                    tracing::warn!(error = %error, "cannot update the kubernetes Service's endpoints");
                }
            }
            Err(error) => tracing::warn!(error = %error, "cannot renew this replica's entry among the API endpoints"),
        }
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(RENEW_EVERY) => {}
        }
    }
    if lease != 0 {
        if let Err(error) = store.lease_revoke(lease).await {
            tracing::debug!(error = %error, "cannot take this replica out of the API endpoints");
            return;
        }
        if let Err(error) = reconcile(&store, &client).await {
            tracing::debug!(error = %error, "cannot update the kubernetes Service's endpoints on the way out");
        }
    }
}

/// Renews this replica's lease, or grants a new one and writes the entry when the lease is gone (the datastore
/// was unreachable longer than the TTL, or this is the first round).
async fn keep_listed(store: &Store, key: &str, own: Advertised, lease: &mut i64) -> anyhow::Result<()> {
    if *lease != 0 && store.lease_keep_alive(*lease).await.is_ok() {
        return Ok(());
    }
    let granted = store.lease_grant(0, LEASE_TTL_SECONDS).await?;
    *lease = granted.id;
    let value = serde_json::to_vec(&own)?;
    store
        .put(PutRequest {
            key: key.as_bytes().to_vec().into(),
            value: value.into(),
            lease: granted.id,
            ..Default::default()
        })
        .await?;
    Ok(())
}

/// The advertised addresses of the live replicas, without repeats, sorted.
async fn live_replicas(store: &Store) -> anyhow::Result<Vec<Advertised>> {
    let response = store.range(RangeRequest { range: KeyRange::prefix(PREFIX), ..Default::default() }).await?;
    let mut live: Vec<Advertised> =
        response.kvs.iter().filter_map(|entry| serde_json::from_slice(&entry.value).ok()).collect();
    live.sort();
    live.dedup();
    Ok(live)
}

async fn reconcile(store: &Store, client: &kube::Client) -> anyhow::Result<()> {
    let live = live_replicas(store).await?;
    if live.is_empty() {
        return Ok(());
    }
    let by_port = by_port(&live);

    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), NAMESPACE);
    let subsets = endpoints_subsets(&by_port);
    match endpoints.get_opt(SERVICE).await? {
        Some(current) if serde_json::to_value(&current.subsets)? == subsets => {}
        Some(_) => {
            endpoints.patch(SERVICE, &PatchParams::default(), &Patch::Merge(json!({"subsets": subsets}))).await?;
        }
        None => {
            let object = serde_json::from_value(json!({
                "metadata": {"name": SERVICE, "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
                "subsets": subsets,
            }))?;
            endpoints.create(&PostParams::default(), &object).await?;
        }
    }

    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), NAMESPACE);
    let wanted = endpoint_slices(&by_port);
    let existing = slices.list(&ListParams::default().labels(SLICE_LABELS)).await?;
    for slice in &existing.items {
        let name = slice.metadata.name.as_deref().unwrap_or_default();
        if !wanted.contains_key(name) {
            slices.delete(name, &DeleteParams::default()).await?;
        }
    }
    for (name, (endpoints, ports)) in wanted {
        let current = existing.items.iter().find(|slice| slice.metadata.name.as_deref() == Some(name.as_str()));
        match current {
            Some(slice)
                if serde_json::to_value(&slice.endpoints)? == endpoints
                    && serde_json::to_value(&slice.ports)? == ports => {}
            Some(_) => {
                let patch = json!({"endpoints": endpoints, "ports": ports});
                slices.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await?;
            }
            None => {
                let object = serde_json::from_value(json!({
                    "metadata": {"name": name, "labels": {
                        "kubernetes.io/service-name": SERVICE,
                        "endpointslice.kubernetes.io/managed-by": "kaasd",
                    }},
                    "addressType": "IPv4",
                    "endpoints": endpoints,
                    "ports": ports,
                }))?;
                slices.create(&PostParams::default(), &object).await?;
            }
        }
    }
    Ok(())
}

/// Addresses by the port they serve on. Replicas normally share one port; several replicas on one machine do not.
fn by_port(live: &[Advertised]) -> BTreeMap<u16, Vec<IpAddr>> {
    let mut by_port: BTreeMap<u16, Vec<IpAddr>> = BTreeMap::new();
    for replica in live {
        by_port.entry(replica.port).or_default().push(replica.address);
    }
    by_port
}

fn port(port: u16) -> serde_json::Value {
    json!([{"name": "https", "port": port, "protocol": "TCP"}])
}

/// One Endpoints subset per port.
fn endpoints_subsets(by_port: &BTreeMap<u16, Vec<IpAddr>>) -> serde_json::Value {
    let subsets: Vec<_> = by_port
        .iter()
        .map(|(number, addresses)| {
            let addresses: Vec<_> = addresses.iter().map(|address| json!({"ip": address.to_string()})).collect();
            json!({"addresses": addresses, "ports": port(*number)})
        })
        .collect();
    json!(subsets)
}

/// The EndpointSlices by name, with their endpoints and ports. A slice has one set of ports, so each port gets
/// its own: the lowest keeps the name `kubernetes`, others are `kubernetes-<port>`. Every replica computes the same.
fn endpoint_slices(by_port: &BTreeMap<u16, Vec<IpAddr>>) -> BTreeMap<String, (serde_json::Value, serde_json::Value)> {
    by_port
        .iter()
        .enumerate()
        .map(|(index, (number, addresses))| {
            let name = if index == 0 { SERVICE.to_string() } else { format!("{SERVICE}-{number}") };
            let endpoints: Vec<_> = addresses
                .iter()
                .map(|address| json!({"addresses": [address.to_string()], "conditions": {"ready": true}}))
                .collect();
            (name, (json!(endpoints), port(*number)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(address: &str, port: u16) -> Advertised {
        Advertised { address: address.parse().unwrap(), port }
    }

    #[test]
    fn replicas_on_one_port_share_one_subset_and_one_slice() {
        let by_port = by_port(&[replica("10.0.0.1", 6443), replica("10.0.0.2", 6443)]);
        assert_eq!(
            endpoints_subsets(&by_port),
            json!([{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}],
                    "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]}])
        );
        let slices = endpoint_slices(&by_port);
        assert_eq!(slices.keys().collect::<Vec<_>>(), ["kubernetes"]);
        assert_eq!(slices["kubernetes"].0.as_array().unwrap().len(), 2);
    }

    #[test]
    fn replicas_on_other_ports_get_a_slice_each() {
        let by_port = by_port(&[replica("127.0.0.1", 7000), replica("127.0.0.1", 6443)]);
        assert_eq!(endpoints_subsets(&by_port).as_array().unwrap().len(), 2);
        let slices = endpoint_slices(&by_port);
        assert_eq!(slices.keys().collect::<Vec<_>>(), ["kubernetes", "kubernetes-7000"]);
        assert_eq!(slices["kubernetes"].1[0]["port"], 6443);
    }
}
