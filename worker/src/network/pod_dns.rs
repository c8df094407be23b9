//! A pod's resolver settings, as the kubelet derives them from `dnsPolicy` and `dnsConfig`.

use k8s_openapi::api::core::v1::PodSpec;

/// The cluster DNS service this node answers on.
#[derive(Debug, Clone)]
pub struct ClusterDns {
    pub address: std::net::Ipv4Addr,
    pub zone: String,
}

/// What a node gives its pods to resolve names with.
#[derive(Debug, Clone)]
pub struct NodeDns {
    /// `None` until the cluster has cluster DNS: pods then resolve as the node does.
    pub cluster: Option<ClusterDns>,
    /// The node's resolver configuration, for pods that resolve as the node does.
    pub resolv_conf: std::path::PathBuf,
}

/// What goes into the pod's /etc/resolv.conf.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resolv {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

impl Resolv {
    pub fn parse(text: &str) -> Self {
        let mut resolv = Resolv::default();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => resolv.servers.extend(words.next().map(str::to_string)),
                Some("search" | "domain") => resolv.searches = words.map(str::to_string).collect(),
                Some("options") => resolv.options.extend(words.map(str::to_string)),
                _ => {}
            }
        }
        resolv
    }
}

/// The glibc limits the kubelet also applies.
const MAX_SERVERS: usize = 3;
const MAX_SEARCHES: usize = 32;

/// The settings for a pod in `namespace`; `None` means "the runtime's default" (the host's file, used for
/// host-network pods that resolve as the node does).
pub fn resolv_for(spec: &PodSpec, namespace: &str, cluster: Option<&ClusterDns>, host: &Resolv) -> Option<Resolv> {
    let host_network = spec.host_network == Some(true);
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let mut resolv = match (policy, cluster) {
        ("None", _) => Resolv::default(),
        ("ClusterFirstWithHostNet", Some(cluster)) => cluster_resolv(namespace, cluster, host),
        ("ClusterFirst", Some(cluster)) if !host_network => cluster_resolv(namespace, cluster, host),
        _ if host_network && spec.dns_config.is_none() => return None,
        _ => host.clone(),
    };
    if let Some(config) = &spec.dns_config {
        for server in config.nameservers.iter().flatten() {
            if !resolv.servers.contains(server) {
                resolv.servers.push(server.clone());
            }
        }
        for search in config.searches.iter().flatten() {
            if !resolv.searches.contains(search) {
                resolv.searches.push(search.clone());
            }
        }
        for option in config.options.iter().flatten() {
            let rendered = match &option.value {
                Some(value) => format!("{}:{value}", option.name.as_deref().unwrap_or_default()),
                None => option.name.clone().unwrap_or_default(),
            };
            let name = rendered.split(':').next().unwrap_or_default().to_string();
            resolv.options.retain(|existing| existing.split(':').next() != Some(name.as_str()));
            resolv.options.push(rendered);
        }
    }
    resolv.servers.truncate(MAX_SERVERS);
    resolv.searches.truncate(MAX_SEARCHES);
    Some(resolv)
}

fn cluster_resolv(namespace: &str, cluster: &ClusterDns, host: &Resolv) -> Resolv {
    let zone = &cluster.zone;
    let mut searches = vec![format!("{namespace}.svc.{zone}"), format!("svc.{zone}"), zone.clone()];
    searches.extend(host.searches.iter().filter(|search| !searches.contains(search)).cloned().collect::<Vec<_>>());
    Resolv { servers: vec![cluster.address.to_string()], searches, options: vec!["ndots:5".into()] }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(mut value: serde_json::Value) -> PodSpec {
        value["containers"] = json!([{"name": "c"}]);
        serde_json::from_value(value).unwrap()
    }

    fn cluster() -> ClusterDns {
        ClusterDns { address: "10.96.0.10".parse().unwrap(), zone: "cluster.local".into() }
    }

    #[test]
    fn cluster_first_points_pods_at_the_cluster_resolver_with_the_kubelets_search_list() {
        let host = Resolv::parse("nameserver 192.168.1.1\nsearch lan\n");
        let resolv = resolv_for(&spec(json!({})), "shop", Some(&cluster()), &host).unwrap();
        assert_eq!(resolv.servers, ["10.96.0.10"]);
        assert_eq!(resolv.searches, ["shop.svc.cluster.local", "svc.cluster.local", "cluster.local", "lan"]);
        assert_eq!(resolv.options, ["ndots:5"]);
    }

    #[test]
    fn host_network_and_default_policy_resolve_as_the_node_does() {
        let host = Resolv::parse("nameserver 192.168.1.1\n");
        assert_eq!(resolv_for(&spec(json!({"hostNetwork": true})), "a", Some(&cluster()), &host), None);
        assert_eq!(
            resolv_for(&spec(json!({"dnsPolicy": "Default"})), "a", Some(&cluster()), &host),
            Some(host.clone())
        );
        assert_eq!(resolv_for(&spec(json!({})), "a", None, &host), Some(host.clone()), "no cluster DNS yet");
        let with_host_net = resolv_for(
            &spec(json!({"hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet"})),
            "a",
            Some(&cluster()),
            &host,
        );
        assert_eq!(with_host_net.unwrap().servers, ["10.96.0.10"]);
    }

    #[test]
    fn dns_config_adds_to_the_policy_and_none_uses_only_it() {
        let host = Resolv::parse("nameserver 192.168.1.1\n");
        let custom = json!({"dnsConfig": {"nameservers": ["1.1.1.1"], "searches": ["x.test"], "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}});
        let merged = resolv_for(&spec(custom.clone()), "a", Some(&cluster()), &host).unwrap();
        assert_eq!(merged.servers, ["10.96.0.10", "1.1.1.1"]);
        assert_eq!(merged.options, ["ndots:2", "edns0"]);
        let mut none = custom;
        none["dnsPolicy"] = json!("None");
        let only = resolv_for(&spec(none), "a", Some(&cluster()), &host).unwrap();
        assert_eq!(only.servers, ["1.1.1.1"]);
        assert_eq!(only.searches, ["x.test"]);
    }
}
