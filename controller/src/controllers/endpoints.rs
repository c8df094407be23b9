//! Service endpoints: for every Service with a selector, the EndpointSlices (`discovery.k8s.io/v1`, what
//! kube-proxy-style dataplanes and DNS read) and the legacy v1 Endpoints object (what older clients read), from
//! the pods the selector matches that have an address. Ready pods are ready endpoints; terminating pods stay
//! listed as not ready, `serving` saying whether they still pass readiness, `terminating` true (upstream's
//! conditions). Services without a selector are left to whoever manages their endpoints (the `kubernetes`
//! Service's are kaasd's own bootstrap).
//!
//! Pods are grouped by the ports the Service's target ports resolve to in them (a named targetPort may differ
//! from pod to pod), each group in slices of at most 100 endpoints, as upstream.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort as SlicePort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, PostParams};
use kube::ResourceExt;

use super::informer::{Change, Informer};
use super::queue::{self, WorkQueue};
use super::replicaset::{controller_reference, object_key, ready_since};
use super::ReconcileError;

pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
const MAX_ENDPOINTS_PER_SLICE: usize = 100;
const WORKERS: usize = 3;

pub struct EndpointsController {
    client: kube::Client,
    services: Arc<Informer<Service>>,
    pods: Arc<Informer<Pod>>,
    slices: Arc<Informer<EndpointSlice>>,
    queue: WorkQueue,
}

impl EndpointsController {
    pub fn new(
        client: kube::Client,
        services: Arc<Informer<Service>>,
        pods: Arc<Informer<Pod>>,
        slices: Arc<Informer<EndpointSlice>>,
    ) -> Arc<EndpointsController> {
        let controller = Arc::new(EndpointsController {
            client,
            services: services.clone(),
            pods: pods.clone(),
            slices: slices.clone(),
            queue: WorkQueue::new(),
        });
        let queue = controller.queue.clone();
        services.on_change(move |change| {
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
                for key in controller.services_selecting(pod) {
                    controller.queue.add(key);
                }
            }
        });
        // Someone else changed or deleted a slice of ours: put it back.
        let queue = controller.queue.clone();
        slices.on_change(move |change| {
            let slice = match change {
                Change::Applied { new, .. } => *new,
                Change::Deleted(old) => *old,
            };
            let labels = slice.labels();
            if labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY) {
                if let Some(service) = labels.get(SERVICE_NAME_LABEL) {
                    queue.add(queue::key(slice.metadata.namespace.as_deref(), service));
                }
            }
        });
        controller
    }

    fn services_selecting(&self, pod: &Pod) -> Vec<queue::Key> {
        let namespace = pod.namespace().unwrap_or_default();
        let labels = pod.labels();
        self.services
            .list_namespace(&namespace)
            .into_iter()
            .filter(|service| {
                selector_of(service)
                    .is_some_and(|selector| selector.iter().all(|(key, value)| labels.get(key) == Some(value)))
            })
            .map(|service| object_key(service.as_ref()))
            .collect()
    }

    pub async fn run(self: Arc<Self>) {
        self.services.synced().await;
        self.pods.synced().await;
        self.slices.synced().await;
        let controller = self.clone();
        queue::run_workers("endpoints", self.queue.clone(), WORKERS, move |key| {
            let controller = controller.clone();
            async move { controller.reconcile(&key).await }
        })
        .await;
    }

    async fn reconcile(&self, key: &str) -> Result<(), ReconcileError> {
        let (namespace, name) = queue::split(key);
        let Some(service) = self.services.get(namespace, name) else { return Ok(()) };
        let Some(selector) = selector_of(&service) else { return Ok(()) };
        if service.metadata.deletion_timestamp.is_some() {
            return Ok(());
        }
        let pods: Vec<Arc<Pod>> = self
            .pods
            .list_namespace(namespace)
            .into_iter()
            .filter(|pod| {
                let labels = pod.labels();
                selector.iter().all(|(key, value)| labels.get(key) == Some(value))
            })
            .collect();
        let publish_not_ready =
            service.spec.as_ref().and_then(|spec| spec.publish_not_ready_addresses).unwrap_or(false);
        let groups = endpoint_groups(&service, &pods, publish_not_ready);
        self.sync_slices(&service, &groups).await?;
        self.sync_endpoints(&service, &groups).await
    }

    async fn sync_slices(
        &self,
        service: &Service,
        groups: &[(Vec<SlicePort>, Vec<Endpoint>)],
    ) -> Result<(), ReconcileError> {
        let namespace = service.namespace().unwrap_or_default();
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), &namespace);
        let mut desired = Vec::new();
        for (ports, endpoints) in groups {
            for chunk in endpoints.chunks(MAX_ENDPOINTS_PER_SLICE) {
                desired.push((ports.clone(), chunk.to_vec()));
            }
        }
        if desired.is_empty() {
            // A Service with no endpoints still has one (empty) slice, so clients can tell "none" from "unknown".
            desired.push((service_ports_without_target(service), Vec::new()));
        }
        let service_uid = service.uid().unwrap_or_default();
        let mut existing: Vec<Arc<EndpointSlice>> = self
            .slices
            .list_namespace(&namespace)
            .into_iter()
            .filter(|slice| {
                let labels = slice.labels();
                labels.get(SERVICE_NAME_LABEL) == Some(&service.name_any())
                    && labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY)
            })
            .collect();
        existing.sort_by_key(|slice| slice.name_any());
        let mut labels = BTreeMap::new();
        labels.insert(SERVICE_NAME_LABEL.to_string(), service.name_any());
        labels.insert(MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string());
        for (index, (ports, endpoints)) in desired.into_iter().enumerate() {
            let mut slice = EndpointSlice {
                metadata: ObjectMeta {
                    namespace: Some(namespace.clone()),
                    labels: Some(labels.clone()),
                    owner_references: Some(vec![controller_reference(service)]),
                    ..Default::default()
                },
                address_type: "IPv4".into(),
                endpoints,
                ports: Some(ports),
            };
            match existing.get(index) {
                Some(current) => {
                    let owned = current.owner_references().iter().any(|owner| owner.uid == service_uid);
                    if owned && current.endpoints == slice.endpoints && current.ports == slice.ports {
                        continue;
                    }
                    slice.metadata.name = current.metadata.name.clone();
                    slice.metadata.resource_version = current.metadata.resource_version.clone();
                    api.replace(&current.name_any(), &PostParams::default(), &slice).await?;
                }
                None => {
                    slice.metadata.generate_name = Some(format!("{}-", service.name_any()));
                    api.create(&PostParams::default(), &slice).await?;
                }
            }
        }
        let wanted =
            groups.iter().map(|(_, endpoints)| endpoints.len().div_ceil(MAX_ENDPOINTS_PER_SLICE)).sum::<usize>().max(1);
        for extra in existing.iter().skip(wanted) {
            match api.delete(&extra.name_any(), &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(response)) if response.code == 404 => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(())
    }

    async fn sync_endpoints(
        &self,
        service: &Service,
        groups: &[(Vec<SlicePort>, Vec<Endpoint>)],
    ) -> Result<(), ReconcileError> {
        let namespace = service.namespace().unwrap_or_default();
        let api: Api<Endpoints> = Api::namespaced(self.client.clone(), &namespace);
        let subsets: Vec<EndpointSubset> = groups
            .iter()
            .filter(|(_, endpoints)| !endpoints.is_empty())
            .map(|(ports, endpoints)| {
                let address = |endpoint: &Endpoint| EndpointAddress {
                    ip: endpoint.addresses.first().cloned().unwrap_or_default(),
                    hostname: endpoint.hostname.clone(),
                    node_name: endpoint.node_name.clone(),
                    target_ref: endpoint.target_ref.clone(),
                };
                let ready = |endpoint: &&Endpoint| endpoint.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false);
                // Terminating pods are not in the legacy object at all (upstream's Endpoints controller).
                let terminating =
                    |endpoint: &&Endpoint| endpoint.conditions.as_ref().and_then(|c| c.terminating).unwrap_or(false);
                let addresses: Vec<EndpointAddress> = endpoints.iter().filter(ready).map(address).collect();
                let not_ready: Vec<EndpointAddress> =
                    endpoints.iter().filter(|e| !ready(e) && !terminating(e)).map(address).collect();
                EndpointSubset {
                    addresses: Some(addresses).filter(|list| !list.is_empty()),
                    not_ready_addresses: Some(not_ready).filter(|list| !list.is_empty()),
                    ports: Some(
                        ports
                            .iter()
                            .map(|port| EndpointPort {
                                name: port.name.clone(),
                                port: port.port.unwrap_or(0),
                                protocol: port.protocol.clone(),
                                app_protocol: port.app_protocol.clone(),
                            })
                            .collect(),
                    ),
                }
            })
            .filter(|subset| subset.addresses.is_some() || subset.not_ready_addresses.is_some())
            .collect();
        let subsets = Some(subsets).filter(|subsets| !subsets.is_empty());
        let mut endpoints = Endpoints {
            metadata: ObjectMeta {
                name: Some(service.name_any()),
                namespace: Some(namespace.clone()),
                labels: Some(service.labels().clone()).filter(|labels| !labels.is_empty()),
                ..Default::default()
            },
            subsets,
        };
        match api.get_opt(&service.name_any()).await? {
            Some(current)
                if current.subsets == endpoints.subsets && current.metadata.labels == endpoints.metadata.labels => {}
            Some(current) => {
                endpoints.metadata.resource_version = current.metadata.resource_version.clone();
                endpoints.metadata.annotations = current.metadata.annotations.clone();
                api.replace(&service.name_any(), &PostParams::default(), &endpoints).await?;
            }
            None => {
                api.create(&PostParams::default(), &endpoints).await?;
            }
        }
        Ok(())
    }
}

/// The Service's selector; `None` for Services without one (their endpoints are someone else's) and for
/// ExternalName Services.
fn selector_of(service: &Service) -> Option<BTreeMap<String, String>> {
    let spec = service.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    spec.selector.clone().filter(|selector| !selector.is_empty())
}

fn service_ports_without_target(service: &Service) -> Vec<SlicePort> {
    service
        .spec
        .as_ref()
        .and_then(|spec| spec.ports.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|port| SlicePort {
            name: Some(port.name.unwrap_or_default()),
            protocol: port.protocol,
            port: None,
            app_protocol: port.app_protocol,
        })
        .collect()
}

/// The endpoints of the selected pods, grouped by the ports the Service's target ports resolve to in each pod.
fn endpoint_groups(
    service: &Service,
    pods: &[Arc<Pod>],
    publish_not_ready: bool,
) -> Vec<(Vec<SlicePort>, Vec<Endpoint>)> {
    let service_ports = service.spec.as_ref().and_then(|spec| spec.ports.clone()).unwrap_or_default();
    let mut groups: Vec<(Vec<SlicePort>, Vec<Endpoint>)> = Vec::new();
    let mut sorted: Vec<&Arc<Pod>> = pods.iter().collect();
    sorted.sort_by_key(|pod| pod.name_any());
    for pod in sorted {
        let status = pod.status.as_ref();
        let Some(ip) = status.and_then(|status| status.pod_ip.clone()).filter(|ip| !ip.is_empty()) else { continue };
        let phase = status.and_then(|status| status.phase.as_deref()).unwrap_or("Pending");
        if matches!(phase, "Succeeded" | "Failed") {
            continue;
        }
        let ports: Vec<SlicePort> = service_ports
            .iter()
            .filter_map(|port| {
                let number = match port.target_port.clone().unwrap_or(IntOrString::Int(port.port)) {
                    IntOrString::Int(number) => number,
                    IntOrString::String(name) => named_port(pod, &name)?,
                };
                Some(SlicePort {
                    name: Some(port.name.clone().unwrap_or_default()),
                    port: Some(number),
                    protocol: Some(port.protocol.clone().unwrap_or_else(|| "TCP".into())),
                    app_protocol: port.app_protocol.clone(),
                })
            })
            .collect();
        let terminating = pod.metadata.deletion_timestamp.is_some();
        let serving = ready_since(pod).is_some();
        let spec = pod.spec.as_ref();
        let hostname = spec
            .filter(|spec| spec.subdomain.as_deref() == Some(service.name_any().as_str()))
            .and_then(|spec| spec.hostname.clone());
        let endpoint = Endpoint {
            addresses: vec![ip],
            conditions: Some(EndpointConditions {
                ready: Some((serving || publish_not_ready) && !terminating),
                serving: Some(serving || publish_not_ready),
                terminating: Some(terminating),
            }),
            hostname,
            node_name: spec.and_then(|spec| spec.node_name.clone()),
            target_ref: Some(ObjectReference {
                kind: Some("Pod".into()),
                namespace: pod.namespace(),
                name: Some(pod.name_any()),
                uid: pod.uid(),
                ..Default::default()
            }),
            ..Default::default()
        };
        match groups.iter_mut().find(|(group_ports, _)| *group_ports == ports) {
            Some((_, endpoints)) => endpoints.push(endpoint),
            None => groups.push((ports, vec![endpoint])),
        }
    }
    groups
}

fn named_port(pod: &Pod, name: &str) -> Option<i32> {
    pod.spec
        .as_ref()?
        .containers
        .iter()
        .flat_map(|container| container.ports.iter().flatten())
        .find(|port| port.name.as_deref() == Some(name))
        .map(|port| port.container_port)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn endpoints_follow_readiness_termination_and_named_ports() {
        let service: Service = serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}))
        .unwrap();
        let pod = |name: &str, ip: Option<&str>, ready: bool, deleting: bool, container_port: i32| {
            let mut value = json!({"metadata": {"name": name, "namespace": "default", "uid": name, "labels": {"app": "web"}},
                "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": container_port}]}]},
                "status": {"phase": "Running", "podIP": ip,
                    "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}});
            if deleting {
                value["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
            }
            Arc::new(serde_json::from_value::<Pod>(value).unwrap())
        };
        let pods = vec![
            pod("a", Some("10.244.0.2"), true, false, 8080),
            pod("b", Some("10.244.0.3"), false, false, 8080),
            pod("c", Some("10.244.0.4"), true, true, 8080),
            pod("d", None, true, false, 8080),
            pod("e", Some("10.244.0.5"), true, false, 9090),
        ];
        let groups = endpoint_groups(&service, &pods, false);
        assert_eq!(groups.len(), 2, "two port mappings");
        let (ports, endpoints) = &groups[0];
        assert_eq!(ports[0].port, Some(8080));
        let conditions: Vec<_> = endpoints
            .iter()
            .map(|e| {
                let c = e.conditions.clone().unwrap();
                (e.addresses[0].as_str(), c.ready.unwrap(), c.serving.unwrap(), c.terminating.unwrap())
            })
            .collect();
        assert_eq!(
            conditions,
            [("10.244.0.2", true, true, false), ("10.244.0.3", false, false, false), ("10.244.0.4", false, true, true)]
        );
        assert_eq!(groups[1].0[0].port, Some(9090));
    }
}
