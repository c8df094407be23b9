//! The environment variables the kubelet gives every container for Services (`KUBERNETES_SERVICE_HOST` and the
//! docker-links style `NAME_PORT_80_TCP_ADDR` family): in-cluster clients (client-go, kube-rs, the Python client)
//! find the API server through `KUBERNETES_SERVICE_HOST` and `KUBERNETES_SERVICE_PORT`.
//!
//! As the kubelet: the `kubernetes` Service of the `default` namespace is always there; the Services of the pod's
//! own namespace are added when `enableServiceLinks` is not false (and win over `kubernetes` by name). Services
//! without a cluster IP (headless, ExternalName) give nothing.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Service;

/// The namespace and name of the API server's Service, whose variables every pod gets.
const API_SERVICE: (&str, &str) = ("default", "kubernetes");

/// The Service variables for a pod in `namespace`, from every Service the node knows, sorted by name.
pub fn service_environment<'a>(
    services: impl IntoIterator<Item = &'a Service>,
    namespace: &str,
    enable_service_links: bool,
) -> Vec<(String, String)> {
    let mut chosen: BTreeMap<&str, &Service> = BTreeMap::new();
    for service in services {
        let (Some(service_namespace), Some(name)) =
            (service.metadata.namespace.as_deref(), service.metadata.name.as_deref())
        else {
            continue;
        };
        if cluster_ip(service).is_none() {
            continue;
        }
        if (service_namespace, name) == API_SERVICE {
            chosen.entry(name).or_insert(service);
        } else if service_namespace == namespace && enable_service_links {
            chosen.insert(name, service);
        }
    }
    let mut variables = Vec::new();
    for (name, service) in chosen {
        variables.extend(variables_of(name, service));
    }
    variables.sort();
    variables
}

fn cluster_ip(service: &Service) -> Option<&str> {
    let ip = service.spec.as_ref()?.cluster_ip.as_deref()?;
    (!ip.is_empty() && ip != "None").then_some(ip)
}

/// `NAME_SERVICE_HOST`, `NAME_SERVICE_PORT[_PORTNAME]`, and the docker-links `NAME_PORT*` variables.
fn variables_of(name: &str, service: &Service) -> Vec<(String, String)> {
    let Some(ip) = cluster_ip(service) else { return Vec::new() };
    let prefix = env_name(name);
    let ports = service.spec.as_ref().and_then(|spec| spec.ports.clone()).unwrap_or_default();
    let mut variables = vec![(format!("{prefix}_SERVICE_HOST"), ip.to_string())];
    let Some(first) = ports.first() else { return variables };
    variables.push((format!("{prefix}_SERVICE_PORT"), first.port.to_string()));
    for port in &ports {
        if let Some(port_name) = port.name.as_deref().filter(|port_name| !port_name.is_empty()) {
            variables.push((format!("{prefix}_SERVICE_PORT_{}", env_name(port_name)), port.port.to_string()));
        }
    }
    let protocol =
        |port: &k8s_openapi::api::core::v1::ServicePort| port.protocol.as_deref().unwrap_or("TCP").to_lowercase();
    variables.push((format!("{prefix}_PORT"), format!("{}://{ip}:{}", protocol(first), first.port)));
    for port in &ports {
        let protocol = protocol(port);
        let base = format!("{prefix}_PORT_{}_{}", port.port, protocol.to_uppercase());
        variables.push((base.clone(), format!("{protocol}://{ip}:{}", port.port)));
        variables.push((format!("{base}_PROTO"), protocol));
        variables.push((format!("{base}_PORT"), port.port.to_string()));
        variables.push((format!("{base}_ADDR"), ip.to_string()));
    }
    variables
}

/// A Service or port name as a variable name: upper case, `-` as `_`.
fn env_name(name: &str) -> String {
    name.to_uppercase().replace('-', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(namespace: &str, name: &str, ip: &str, ports: &[(Option<&str>, i32)]) -> Service {
        serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": namespace, "name": name},
            "spec": {
                "clusterIP": ip,
                "ports": ports.iter().map(|(name, port)| serde_json::json!({"name": name, "port": port, "protocol": "TCP"})).collect::<Vec<_>>(),
            },
        }))
        .unwrap()
    }

    #[test]
    fn the_api_service_is_always_there_and_the_namespace_services_with_service_links() {
        let services = [
            service("default", "kubernetes", "10.96.0.1", &[(Some("https"), 443)]),
            service("shop", "web-front", "10.96.0.20", &[(Some("http"), 80), (None, 8443)]),
            service("shop", "db", "None", &[(None, 5432)]),
            service("other", "web-front", "10.96.0.30", &[(None, 80)]),
        ];
        let variables: BTreeMap<String, String> = service_environment(&services, "shop", true).into_iter().collect();
        assert_eq!(variables["KUBERNETES_SERVICE_HOST"], "10.96.0.1");
        assert_eq!(variables["KUBERNETES_SERVICE_PORT"], "443");
        assert_eq!(variables["KUBERNETES_SERVICE_PORT_HTTPS"], "443");
        assert_eq!(variables["KUBERNETES_PORT"], "tcp://10.96.0.1:443");
        assert_eq!(variables["KUBERNETES_PORT_443_TCP_ADDR"], "10.96.0.1");
        assert_eq!(variables["WEB_FRONT_SERVICE_HOST"], "10.96.0.20");
        assert_eq!(variables["WEB_FRONT_SERVICE_PORT"], "80");
        assert_eq!(variables["WEB_FRONT_PORT_8443_TCP"], "tcp://10.96.0.20:8443");
        assert!(!variables.keys().any(|key| key.starts_with("DB_")), "headless Services give nothing");

        let without_links: Vec<String> =
            service_environment(&services, "shop", false).into_iter().map(|(key, _)| key).collect();
        assert!(without_links.iter().all(|key| key.starts_with("KUBERNETES_")), "{without_links:?}");
    }
}
