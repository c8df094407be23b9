//! Each pod's `/etc/hosts`, as the kubelet writes it: localhost lines, the pod's own address under its hostname
//! (and its fully qualified name when it has a subdomain, as StatefulSet pods do), then `spec.hostAliases`. A
//! host-network pod gets the node's own hosts file with the aliases after it.

use k8s_openapi::api::core::v1::Pod;

const LOCALHOST_LINES: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
     fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n";

/// The hosts file of `pod`; `pod_ips` are its addresses, `node_hosts` the node's own `/etc/hosts`.
pub fn render(pod: &Pod, pod_ips: &[&str], node_hosts: &str, zone: &str) -> String {
    let spec = pod.spec.clone().unwrap_or_default();
    let mut text = String::new();
    if spec.host_network == Some(true) {
        text.push_str("# Kubernetes-managed hosts file (host network).\n");
        text.push_str(node_hosts);
        if !node_hosts.is_empty() && !node_hosts.ends_with('\n') {
            text.push('\n');
        }
    } else {
        text.push_str("# Kubernetes-managed hosts file.\n");
        text.push_str(LOCALHOST_LINES);
        let name = pod.metadata.name.clone().unwrap_or_default();
        let hostname = spec.hostname.clone().unwrap_or_else(|| name.chars().take(63).collect());
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        for ip in pod_ips {
            match spec.subdomain.as_deref().filter(|subdomain| !subdomain.is_empty()) {
                Some(subdomain) => {
                    text.push_str(&format!("{ip}\t{hostname}.{subdomain}.{namespace}.svc.{zone}\t{hostname}\n"))
                }
                None => text.push_str(&format!("{ip}\t{hostname}\n")),
            }
        }
    }
    let aliases = spec.host_aliases.unwrap_or_default();
    if !aliases.is_empty() {
        text.push_str("\n# Entries added by HostAliases.\n");
        for alias in aliases {
            let names = alias.hostnames.unwrap_or_default().join("\t");
            text.push_str(&format!("{}\t{names}\n", alias.ip));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({"metadata": {"name": "db-0", "namespace": "shop"}, "spec": spec}))
            .unwrap()
    }

    #[test]
    fn a_pod_has_its_own_name_and_its_aliases() {
        let pod = pod(serde_json::json!({
            "containers": [],
            "subdomain": "db",
            "hostAliases": [{"ip": "10.1.2.3", "hostnames": ["foo.local", "bar.local"]}],
        }));
        let text = render(&pod, &["10.244.0.7"], "ignored", "cluster.local");
        assert!(text.starts_with("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"), "{text}");
        assert!(text.contains("10.244.0.7\tdb-0.db.shop.svc.cluster.local\tdb-0\n"), "{text}");
        assert!(text.ends_with("# Entries added by HostAliases.\n10.1.2.3\tfoo.local\tbar.local\n"), "{text}");
        assert!(!text.contains("ignored"));
    }

    #[test]
    fn a_host_network_pod_has_the_nodes_file() {
        let pod = pod(serde_json::json!({"containers": [], "hostNetwork": true}));
        let text = render(&pod, &["192.168.1.5"], "127.0.0.1 localhost\n192.168.1.5 node-1", "cluster.local");
        assert_eq!(text, "# Kubernetes-managed hosts file (host network).\n127.0.0.1 localhost\n192.168.1.5 node-1\n");
    }
}
