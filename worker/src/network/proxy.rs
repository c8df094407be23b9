//! The Service proxy: kube-proxy's nftables mode, done by the worker in its own table (see `nft`).
//!
//! For every port of every Service with a cluster IP, traffic to `clusterIP:port` (and to `nodeIP:nodePort`) is
//! sent to a per-port chain that picks one endpoint at random (`numgen random`) and DNATs to it. Only ready
//! endpoints are used, or serving-and-terminating ones when none is ready; a Service with no usable endpoint is
//! rejected (ICMP port unreachable) rather than black-holed. Traffic that does not come from this node's pods is
//! marked for masquerading, so replies come back through this node; a pod reaching itself through its Service
//! (hairpin) is masqueraded too. Chain names follow kube-proxy's (`service-…`, `endpoint-…`, `external-…`), so
//! someone who knows `nft list table ip kube-proxy` can read ours.

use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::nft::{self, goto, jump, payload, Ruleset};
use super::services::{ServiceView, SERVICE_NAME_LABEL};

/// What the proxy needs to know about its own node.
#[derive(Debug, Clone, Default)]
pub struct ProxyConfig {
    pub node_name: String,
    /// This node's pod range: traffic from elsewhere is masqueraded. Unknown: everything is.
    pub pod_cidr: Option<String>,
    /// Cluster IPs the node answers itself (the cluster DNS address): never DNATed or rejected.
    pub node_local_ips: Vec<Ipv4Addr>,
}

/// One endpoint of one Service port, as the EndpointSlices say.
#[derive(Debug, Clone, PartialEq)]
struct Endpoint {
    address: Ipv4Addr,
    port: i32,
    node_name: Option<String>,
    ready: bool,
    serving: bool,
    terminating: bool,
}

/// The table the given Services call for.
pub fn desired_rules(services: &[Arc<Service>], slices: &[Arc<EndpointSlice>], config: &ProxyConfig) -> Ruleset {
    let slices_by_service = group_slices(slices);
    let mut rules = Ruleset::default();
    for service in services {
        let slices = slices_by_service.get(&service_key(service)).map(Vec::as_slice).unwrap_or_default();
        rules.merge(service_rules(service, slices, config));
    }
    rules
}

type ServiceKey<'a> = (&'a str, &'a str);

fn service_key(service: &Service) -> ServiceKey<'_> {
    (service.metadata.namespace.as_deref().unwrap_or_default(), service.metadata.name.as_deref().unwrap_or_default())
}

fn group_slices(slices: &[Arc<EndpointSlice>]) -> BTreeMap<ServiceKey<'_>, Vec<&EndpointSlice>> {
    let mut by_service: BTreeMap<ServiceKey<'_>, Vec<&EndpointSlice>> = BTreeMap::new();
    for slice in slices {
        let namespace = slice.metadata.namespace.as_deref().unwrap_or_default();
        if let Some(name) = slice.metadata.labels.as_ref().and_then(|labels| labels.get(SERVICE_NAME_LABEL)) {
            by_service.entry((namespace, name.as_str())).or_default().push(slice);
        }
    }
    by_service
}

/// The chains, map elements and sets of one Service. Services never share any of them, so each can be rendered
/// and diffed on its own.
fn service_rules(service: &Service, slices: &[&EndpointSlice], config: &ProxyConfig) -> Ruleset {
    let mut rules = Ruleset::default();
    let Some(spec) = &service.spec else { return rules };
    let Some(cluster_ip) = spec.cluster_ip.as_deref().and_then(|ip| ip.parse::<Ipv4Addr>().ok()) else {
        return rules; // headless, ExternalName, not yet allocated, or IPv6
    };
    if config.node_local_ips.contains(&cluster_ip) {
        return rules;
    }
    for port in spec.ports.iter().flatten() {
        add_service_port(&mut rules, service, cluster_ip, port, &endpoints_for(slices, port), config);
    }
    rules
}

/// What the kernel holds, per Service, with the object versions it was rendered from: a change renders and diffs
/// only the Services whose object or slices changed, so its cost follows the change, not the cluster's size.
#[derive(Default)]
pub struct Programmed {
    by_service: BTreeMap<(String, String), (String, Ruleset)>,
}

impl Programmed {
    /// The batch that brings the table from what `self` holds to what the Services call for, and records the
    /// result as applied (on failure, start again from `Programmed::default()`: that rebuilds the whole table).
    pub fn update(
        &mut self,
        services: &[Arc<Service>],
        slices: &[Arc<EndpointSlice>],
        config: &ProxyConfig,
    ) -> Vec<Value> {
        let full = self.by_service.is_empty();
        let slices_by_service = group_slices(slices);
        let mut previous = std::mem::take(&mut self.by_service);
        let mut changed = Vec::new();
        for service in services {
            let key = service_key(service);
            let slices = slices_by_service.get(&key).map(Vec::as_slice).unwrap_or_default();
            let mut fingerprint = service.metadata.resource_version.clone().unwrap_or_default();
            for slice in slices {
                fingerprint.push('/');
                fingerprint.push_str(slice.metadata.resource_version.as_deref().unwrap_or_default());
            }
            let owned_key = (key.0.to_string(), key.1.to_string());
            match previous.remove(&owned_key) {
                Some((old_fingerprint, rules)) if old_fingerprint == fingerprint && !fingerprint.is_empty() => {
                    self.by_service.insert(owned_key, (fingerprint, rules));
                }
                old => {
                    let rules = service_rules(service, slices, config);
                    changed.push((old.map(|(_, rules)| rules).unwrap_or_default(), owned_key.clone()));
                    self.by_service.insert(owned_key, (fingerprint, rules));
                }
            }
        }
        if full {
            let mut all = Ruleset::default();
            for (_, rules) in self.by_service.values() {
                all.merge(rules.clone());
            }
            return nft::full_sync(&all);
        }
        // Services that are gone first, so an address or node port they free can be taken in the same batch.
        let mut batch = Vec::new();
        for (_, (_, rules)) in previous {
            batch.extend(nft::diff(&rules, &Ruleset::default()));
        }
        for (old, key) in changed {
            batch.extend(nft::diff(&old, &self.by_service[&key].1));
        }
        batch
    }
}

fn add_service_port(
    rules: &mut Ruleset,
    service: &Service,
    cluster_ip: Ipv4Addr,
    port: &ServicePort,
    endpoints: &[Endpoint],
    config: &ProxyConfig,
) {
    let spec = service.spec.as_ref().expect("checked by the caller");
    let protocol = port.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase();
    let id = format!(
        "{}/{}/{}/{}",
        service.metadata.namespace.as_deref().unwrap_or_default(),
        service.metadata.name.as_deref().unwrap_or_default(),
        protocol,
        port.port
    );
    let service_key = json!({"concat": [cluster_ip.to_string(), protocol, port.port]});
    let node_port = match spec.type_.as_deref() {
        Some("NodePort" | "LoadBalancer") => port.node_port.filter(|port| *port > 0),
        _ => None,
    };
    let node_port_key = node_port.map(|node_port| json!({"concat": [protocol, node_port]}));

    let usable = usable_endpoints(endpoints);
    let is_local = |endpoint: &&Endpoint| endpoint.node_name.as_deref() == Some(config.node_name.as_str());
    let cluster_endpoints: Vec<&Endpoint> = if spec.internal_traffic_policy.as_deref() == Some("Local") {
        usable.iter().filter(is_local).collect()
    } else {
        usable.iter().collect()
    };
    let external_local = spec.external_traffic_policy.as_deref() == Some("Local");
    let local_endpoints: Vec<&Endpoint> = usable.iter().filter(is_local).collect();

    let affinity_timeout = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|config| config.client_ip.as_ref())
            .and_then(|client_ip| client_ip.timeout_seconds)
            .map_or(10_800, |seconds| seconds.max(1) as u64)
    });
    let endpoint_chain = |endpoint: &Endpoint| format!("endpoint-{id}__{}/{}", endpoint.address, endpoint.port);
    let affinity_set = |endpoint: &Endpoint| format!("affinity-{id}__{}/{}", endpoint.address, endpoint.port);

    // Every usable endpoint gets its chain, whichever policy picks it.
    for endpoint in &usable {
        let mut chain =
            vec![vec![match_saddr(json!(endpoint.address.to_string()), "=="), jump(nft::MARK_FOR_MASQUERADE)]];
        if let Some(timeout) = affinity_timeout {
            rules.affinity_sets.insert(affinity_set(endpoint), timeout);
            chain.push(vec![json!({"set": {"op": "update", "elem": payload("ip", "saddr"), "set": format!("@{}", affinity_set(endpoint))}})]);
        }
        chain.push(vec![
            json!({"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": protocol}}),
            json!({"dnat": {"addr": endpoint.address.to_string(), "port": endpoint.port}}),
        ]);
        rules.chains.insert(endpoint_chain(endpoint), chain);
    }
    // Pick among `endpoints`: an existing affinity first, else at random.
    let pick = |endpoints: &[&Endpoint]| -> Vec<Vec<Value>> {
        let mut picked = Vec::new();
        if affinity_timeout.is_some() {
            for endpoint in endpoints {
                picked.push(vec![
                    match_saddr(json!(format!("@{}", affinity_set(endpoint))), "=="),
                    goto(&endpoint_chain(endpoint)),
                ]);
            }
        }
        let choices: Vec<Value> = endpoints
            .iter()
            .enumerate()
            .map(|(index, endpoint)| json!([index, goto(&endpoint_chain(endpoint))]))
            .collect();
        picked.push(vec![json!({"vmap": {"key": {"numgen": {"mode": "random", "mod": endpoints.len(), "offset": 0}}, "data": {"set": choices}}})]);
        picked
    };

    let service_chain = format!("service-{id}");
    if cluster_endpoints.is_empty() {
        rules.add_element(nft::NO_ENDPOINT_SERVICES, service_key, goto(nft::REJECT_CHAIN));
    } else {
        let mut chain = Vec::new();
        let from_other_than_pods =
            config.pod_cidr.as_deref().and_then(|cidr| cidr.split_once('/')).map(|(address, length)| {
                match_saddr(json!({"prefix": {"addr": address, "len": length.parse::<u8>().unwrap_or(32)}}), "!=")
            });
        chain.push(from_other_than_pods.into_iter().chain([jump(nft::MARK_FOR_MASQUERADE)]).collect());
        chain.extend(pick(&cluster_endpoints));
        rules.chains.insert(service_chain.clone(), chain);
        rules.add_element(nft::SERVICE_IPS, service_key, goto(&service_chain));
    }

    let Some(node_port_key) = node_port_key else { return };
    if external_local {
        // Client addresses are kept (no masquerade), so only endpoints on this node can answer them.
        if local_endpoints.is_empty() {
            rules.add_element(nft::NO_ENDPOINT_NODEPORTS, node_port_key, json!({"drop": null}));
            return;
        }
        let external_chain = format!("external-{id}");
        rules.chains.insert(external_chain.clone(), pick(&local_endpoints));
        rules.add_element(nft::SERVICE_NODEPORTS, node_port_key, goto(&external_chain));
    } else if cluster_endpoints.is_empty() || usable.is_empty() {
        rules.add_element(nft::NO_ENDPOINT_NODEPORTS, node_port_key, goto(nft::REJECT_CHAIN));
    } else {
        let external_chain = format!("external-{id}");
        rules
            .chains
            .insert(external_chain.clone(), vec![vec![jump(nft::MARK_FOR_MASQUERADE)], vec![goto(&service_chain)]]);
        rules.add_element(nft::SERVICE_NODEPORTS, node_port_key, goto(&external_chain));
    }
}

fn match_saddr(right: Value, op: &str) -> Value {
    json!({"match": {"op": op, "left": payload("ip", "saddr"), "right": right}})
}

/// The endpoints of `port` in a Service's slices: the slice port of the same name (and protocol).
fn endpoints_for(slices: &[&EndpointSlice], port: &ServicePort) -> Vec<Endpoint> {
    let protocol = port.protocol.as_deref().unwrap_or("TCP");
    let mut found = Vec::new();
    let mut seen = HashSet::new();
    for slice in slices {
        if slice.address_type != "IPv4" {
            continue;
        }
        let Some(target_port) = slice.ports.iter().flatten().find_map(|slice_port| {
            let same_name = slice_port.name.as_deref().unwrap_or_default() == port.name.as_deref().unwrap_or_default();
            let same_protocol = slice_port.protocol.as_deref().unwrap_or("TCP") == protocol;
            (same_name && same_protocol).then_some(slice_port.port).flatten()
        }) else {
            continue;
        };
        for endpoint in &slice.endpoints {
            let Some(address) = endpoint.addresses.first().and_then(|address| address.parse::<Ipv4Addr>().ok()) else {
                continue;
            };
            if !seen.insert((address, target_port)) {
                continue;
            }
            let conditions = endpoint.conditions.clone().unwrap_or_default();
            // Unset means ready/serving and not terminating (discovery/v1 semantics).
            let ready = conditions.ready.unwrap_or(true);
            found.push(Endpoint {
                address,
                port: target_port,
                node_name: endpoint.node_name.clone(),
                ready,
                serving: conditions.serving.unwrap_or(ready),
                terminating: conditions.terminating.unwrap_or(false),
            });
        }
    }
    found
}

/// Ready endpoints; when none is ready, serving-and-terminating ones, so connections drain during a rollout of
/// the last pods rather than being refused.
fn usable_endpoints(endpoints: &[Endpoint]) -> Vec<Endpoint> {
    let ready: Vec<Endpoint> = endpoints.iter().filter(|endpoint| endpoint.ready).cloned().collect();
    if !ready.is_empty() {
        return ready;
    }
    endpoints.iter().filter(|endpoint| endpoint.serving && endpoint.terminating).cloned().collect()
}

/// Keeps the table in line with `view` until `cancel`: one full rebuild at start (and after any failure), then
/// one difference per change. Leaves the table in place on exit, so Services keep working across a restart.
pub async fn run(view: ServiceView, config: ProxyConfig, cancel: CancellationToken) {
    let mut generation = view.generation.clone();
    if !view.wait_until_ready(Duration::from_secs(60)).await {
        tracing::warn!("Services and EndpointSlices are not listed yet; programming Services once they are");
        let _ = view.services.wait_until_ready().await;
        let _ = view.slices.wait_until_ready().await;
    }
    let mut programmed = Programmed::default();
    loop {
        generation.mark_unchanged();
        let started = Instant::now();
        let full = programmed.by_service.is_empty();
        let batch = programmed.update(&view.services.state(), &view.slices.state(), &config);
        let commands = batch.len();
        let result = tokio::task::spawn_blocking(move || nft::apply(&batch))
            .await
            .unwrap_or_else(|error| Err(error.to_string()));
        match result {
            Ok(()) => {
                if commands > 0 {
                    tracing::debug!(commands, full, took = ?started.elapsed(), "Service rules updated");
                }
            }
            Err(error) => {
                tracing::warn!(error = %error, "cannot program Service rules; rebuilding the table shortly");
                programmed = Programmed::default();
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
                continue;
            }
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            changed = generation.changed() => if changed.is_err() { return },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::from_value;

    fn service(name: &str, spec: Value) -> Arc<Service> {
        Arc::new(from_value(json!({"metadata": {"name": name, "namespace": "default"}, "spec": spec})).unwrap())
    }

    fn slice(service: &str, endpoints: Value) -> Arc<EndpointSlice> {
        Arc::new(
            from_value(json!({
                "metadata": {"name": format!("{service}-abc"), "namespace": "default", "labels": {"kubernetes.io/service-name": service}},
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                "endpoints": endpoints,
            }))
            .unwrap(),
        )
    }

    fn config() -> ProxyConfig {
        ProxyConfig { node_name: "n1".into(), pod_cidr: Some("10.244.1.0/24".into()), node_local_ips: vec![] }
    }

    fn web() -> Arc<Service> {
        service(
            "web",
            json!({"clusterIP": "10.96.0.20", "type": "NodePort", "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}]}),
        )
    }

    #[test]
    fn a_service_dispatches_to_its_ready_endpoints_at_random() {
        let slices = [slice(
            "web",
            json!([
                {"addresses": ["10.244.1.5"], "conditions": {"ready": true}, "nodeName": "n1"},
                {"addresses": ["10.244.2.5"], "conditions": {"ready": true}, "nodeName": "n2"},
                {"addresses": ["10.244.2.6"], "conditions": {"ready": false}, "nodeName": "n2"},
            ]),
        )];
        let rules = desired_rules(&[web()], &slices, &config());
        let service_chain = &rules.chains["service-default/web/tcp/80"];
        let choices = &service_chain.last().unwrap()[0]["vmap"];
        assert_eq!(choices["key"]["numgen"]["mod"], 2);
        assert_eq!(choices["data"]["set"][1][1], goto("endpoint-default/web/tcp/80__10.244.2.5/8080"));
        assert_eq!(
            rules.chains["endpoint-default/web/tcp/80__10.244.2.5/8080"].last().unwrap()[1],
            json!({"dnat": {"addr": "10.244.2.5", "port": 8080}})
        );
        assert!(!rules.chains.contains_key("endpoint-default/web/tcp/80__10.244.2.6/8080"));
        let (_, verdict) = &rules.elements[nft::SERVICE_IPS][&json!({"concat": ["10.96.0.20", "tcp", 80]}).to_string()];
        assert_eq!(verdict, &goto("service-default/web/tcp/80"));
        assert!(rules.elements[nft::SERVICE_NODEPORTS].contains_key(&json!({"concat": ["tcp", 30080]}).to_string()));
    }

    #[test]
    fn no_usable_endpoint_rejects_and_terminating_ones_are_a_fallback() {
        let none = desired_rules(
            &[web()],
            &[slice("web", json!([{"addresses": ["10.244.1.5"], "conditions": {"ready": false}}]))],
            &config(),
        );
        assert!(none.chains.is_empty());
        assert!(none.elements[nft::NO_ENDPOINT_SERVICES]
            .contains_key(&json!({"concat": ["10.96.0.20", "tcp", 80]}).to_string()));
        assert!(none.elements[nft::NO_ENDPOINT_NODEPORTS].contains_key(&json!({"concat": ["tcp", 30080]}).to_string()));

        let draining = desired_rules(
            &[web()],
            &[slice(
                "web",
                json!([{"addresses": ["10.244.1.5"], "conditions": {"ready": false, "serving": true, "terminating": true}}]),
            )],
            &config(),
        );
        assert!(draining.chains.contains_key("endpoint-default/web/tcp/80__10.244.1.5/8080"));
    }

    #[test]
    fn local_traffic_policies_use_only_this_nodes_endpoints() {
        let local = service(
            "web",
            json!({
                "clusterIP": "10.96.0.20", "type": "NodePort", "internalTrafficPolicy": "Local", "externalTrafficPolicy": "Local",
                "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}],
            }),
        );
        let elsewhere = [slice("web", json!([{"addresses": ["10.244.2.5"], "nodeName": "n2"}]))];
        let rules = desired_rules(std::slice::from_ref(&local), &elsewhere, &config());
        assert!(rules.elements[nft::NO_ENDPOINT_SERVICES].len() == 1);
        assert_eq!(rules.elements[nft::NO_ENDPOINT_NODEPORTS].values().next().unwrap().1, json!({"drop": null}));

        let here = [slice(
            "web",
            json!([{"addresses": ["10.244.1.5"], "nodeName": "n1"}, {"addresses": ["10.244.2.5"], "nodeName": "n2"}]),
        )];
        let rules = desired_rules(&[local], &here, &config());
        let external = &rules.chains["external-default/web/tcp/80"];
        assert_eq!(
            external.last().unwrap()[0]["vmap"]["key"]["numgen"]["mod"],
            1,
            "only the local endpoint, no masquerade"
        );
    }

    #[test]
    fn client_ip_affinity_remembers_clients_per_endpoint() {
        let sticky = service(
            "web",
            json!({
                "clusterIP": "10.96.0.20", "sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}},
                "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
            }),
        );
        let rules = desired_rules(&[sticky], &[slice("web", json!([{"addresses": ["10.244.1.5"]}]))], &config());
        assert_eq!(rules.affinity_sets.values().collect::<Vec<_>>(), [&60]);
        assert_eq!(
            rules.chains["service-default/web/tcp/80"][1][1],
            goto("endpoint-default/web/tcp/80__10.244.1.5/8080")
        );
    }

    #[test]
    fn a_change_renders_and_sends_only_the_services_it_touched() {
        let versioned = |slice: Arc<EndpointSlice>, version: &str| {
            let mut slice = (*slice).clone();
            slice.metadata.resource_version = Some(version.into());
            Arc::new(slice)
        };
        let mut api = (*service(
            "api",
            json!({"clusterIP": "10.96.0.30", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}),
        ))
        .clone();
        api.metadata.resource_version = Some("7".into());
        let mut web = (*web()).clone();
        web.metadata.resource_version = Some("8".into());
        let services = [Arc::new(web), Arc::new(api)];
        let endpoints = |address: &str| json!([{"addresses": [address], "nodeName": "n1"}]);
        let mut programmed = Programmed::default();
        let first = programmed.update(
            &services,
            &[
                versioned(slice("web", endpoints("10.244.1.5")), "1"),
                versioned(slice("api", endpoints("10.244.1.9")), "2"),
            ],
            &config(),
        );
        assert_eq!(first[..3], nft::full_sync(&Ruleset::default())[..3], "the first update rebuilds the table");

        let unchanged = programmed.update(
            &services,
            &[
                versioned(slice("web", endpoints("10.244.1.5")), "1"),
                versioned(slice("api", endpoints("10.244.1.9")), "2"),
            ],
            &config(),
        );
        assert!(unchanged.is_empty());
        let moved = programmed.update(
            &services,
            &[
                versioned(slice("web", endpoints("10.244.1.6")), "3"),
                versioned(slice("api", endpoints("10.244.1.9")), "2"),
            ],
            &config(),
        );
        let text = serde_json::to_string(&moved).unwrap();
        assert!(text.contains("10.244.1.6") && !text.contains("/api/"), "only web's rules move: {text}");
        let removed =
            programmed.update(&services[..1], &[versioned(slice("web", endpoints("10.244.1.6")), "3")], &config());
        let text = serde_json::to_string(&removed).unwrap();
        assert!(
            text.contains("\"delete\"") && text.contains("/api/") && !text.contains("/web/"),
            "api's rules go: {text}"
        );
    }

    #[test]
    fn headless_external_name_and_node_local_addresses_get_no_rules() {
        let services = [
            service("headless", json!({"clusterIP": "None", "ports": [{"port": 80}]})),
            service("alias", json!({"type": "ExternalName", "externalName": "example.com"})),
            service(
                "kube-dns",
                json!({"clusterIP": "10.96.0.10", "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]}),
            ),
        ];
        let config = ProxyConfig { node_local_ips: vec![Ipv4Addr::new(10, 96, 0, 10)], ..config() };
        assert_eq!(desired_rules(&services, &[], &config), Ruleset::default());
    }
}
