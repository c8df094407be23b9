//! The pod network across nodes, end to end in network namespaces: a controller, two workers on one LAN and a
//! third on another LAN behind a router, all behind one NAT (see `natlab`), each worker with its own containerd
//! running real busybox pods. Pods reach each other by their own addresses (host-gw on the LAN, VXLAN through the
//! router), Services spread over all three nodes, traffic leaving the pod network is masqueraded, and a pod on a
//! NAT'd node reaches the API server through the `kubernetes` Service.

use std::collections::BTreeSet;

use kaasd_e2e::images::binary_image;
use kaasd_e2e::pod_lab::{PodLab, NODES};

/// An HTTP server on port 8080 that answers `/` with the pod's name and `/cgi-bin/peer` with the address the
/// request came from, so a test sees whether anything rewrote it.
const WEB_SCRIPT: &str = "mkdir -p /www/cgi-bin && hostname > /www/index.html && \
     printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho $REMOTE_ADDR\\n' > /www/cgi-bin/peer && \
     chmod +x /www/cgi-bin/peer && exec httpd -f -p 8080 -h /www";

fn check<T>(result: anyhow::Result<T>) -> T {
    result.unwrap_or_else(|error| panic!("{error:#}"))
}

fn kubectl(cluster: &PodLab, arguments: &[&str]) -> String {
    cluster.controller.kubectl(arguments).unwrap_or_else(|error| panic!("kubectl {arguments:?}: {error:#}"))
}

/// `wget -qO- URL` in `pod`; `None` if it failed.
fn fetch(cluster: &PodLab, pod: &str, url: &str) -> Option<String> {
    let output = cluster
        .controller
        .kubectl_output(&["exec", pod, "--", "timeout", "5", "wget", "-qO-", url])
        .expect("kubectl exec runs");
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// `fetch` until it answers (routes take a moment to appear after a node gets its pod range).
fn fetch_eventually(cluster: &PodLab, pod: &str, url: &str) -> String {
    let mut answer = None;
    check(cluster.wait(&format!("{pod} fetching {url}"), || {
        answer = fetch(cluster, pod, url);
        Ok(answer.is_some())
    }));
    answer.expect("answered")
}

/// A web pod and a client pod on every node.
fn cluster() -> PodLab {
    let cluster = check(PodLab::start());
    for node in NODES {
        for (role, command) in [("web", WEB_SCRIPT), ("client", "exec sleep 3600")] {
            let manifest = format!(
                r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{role}-{node}","labels":{{"app":"{role}"}}}},
                 "spec":{{"nodeName":"{node}","terminationGracePeriodSeconds":1,
                 "containers":[{{"name":"main","image":"busybox:1.36","command":["sh","-c",{command:?}],
                 "readinessProbe":{{"exec":{{"command":["true"]}},"periodSeconds":1}}}}]}}}}"#
            );
            check(cluster.run_pod(&manifest));
        }
    }
    cluster
}

#[test]
fn pods_on_three_nodes_reach_each_other_by_their_own_addresses() {
    let cluster = cluster();
    let nodes = NODES;

    // Each node says how it reaches the others: directly on the LAN, through VXLAN across the router.
    for (node, expected) in [
        ("lan-a", "far-c=vxlan,lan-b=host-gw"),
        ("lan-b", "far-c=vxlan,lan-a=host-gw"),
        ("far-c", "lan-a=vxlan,lan-b=vxlan"),
    ] {
        let annotation = || {
            cluster
                .controller
                .kubectl(&["get", "node", node, "-o", r#"jsonpath={.metadata.annotations.kaasd\.io/pod-routes}"#])
                .unwrap_or_default()
        };
        check(cluster.wait(&format!("node {node} showing its pod routes"), || Ok(annotation() == expected)));
    }

    // Every client reaches every web pod, and the web pod sees the client's own pod address: no NAT between pods.
    for client in nodes {
        let client_pod = format!("client-{client}");
        let client_ip = cluster.pod_field(&client_pod, ".status.podIP");
        assert!(client_ip.starts_with("10.244."), "client {client_pod} has a pod address: {client_ip:?}");
        for web in nodes {
            let web_ip = cluster.pod_field(&format!("web-{web}"), ".status.podIP");
            let name = fetch_eventually(&cluster, &client_pod, &format!("http://{web_ip}:8080/"));
            assert_eq!(name, format!("web-{web}"), "{client} → {web}");
            let peer = fetch_eventually(&cluster, &client_pod, &format!("http://{web_ip}:8080/cgi-bin/peer"));
            assert!(
                peer.trim_start_matches("[::ffff:").trim_end_matches(']') == client_ip,
                "{client} → {web}: the web pod saw {peer}, not the client's address {client_ip}"
            );
        }
    }

    // The kubelet's files and variables: the pod's own name in /etc/hosts, the API server's Service in the
    // environment.
    let client_ip = cluster.pod_field("client-lan-a", ".status.podIP");
    let hosts = kubectl(&cluster, &["exec", "client-lan-a", "--", "cat", "/etc/hosts"]);
    assert!(hosts.lines().any(|line| line == format!("{client_ip}\tclient-lan-a")), "{hosts}");
    let env = kubectl(&cluster, &["exec", "client-lan-a", "--", "env"]);
    assert!(env.lines().any(|line| line == "KUBERNETES_SERVICE_HOST=10.96.0.1"), "{env}");
    assert!(env.lines().any(|line| line == "KUBERNETES_SERVICE_PORT=443"), "{env}");

    // A Service over the three web pods: every endpoint, each on its own node, answers through it.
    kubectl(
        &cluster,
        &[
            "expose",
            "pod",
            "web-lan-a",
            "--name",
            "web",
            "--port",
            "80",
            "--target-port",
            "8080",
            "--selector",
            "app=web",
        ],
    );
    let mut seen = BTreeSet::new();
    check(cluster.wait("the Service reaching its endpoints on all three nodes", || {
        if let Some(name) = fetch(&cluster, "client-lan-a", "http://web.default.svc.cluster.local/") {
            seen.insert(name);
        }
        Ok(seen.len() == 3)
    }));

    // Traffic from a pod to a machine outside the pod network leaves with its node's address.
    let lan_b_address = cluster.lab.edge_address(1).to_string();
    let lan_a_address = cluster.lab.edge_address(0).to_string();
    let www = www_with_peer_script();
    let mut outside = cluster
        .lab
        .command(cluster.lab.edge(1), "busybox")
        .args(["httpd", "-f", "-p", "18080", "-h"])
        .arg(www.path())
        .spawn()
        .expect("busybox httpd runs on lan-b's host");
    let peer = fetch_eventually(&cluster, "client-lan-a", &format!("http://{lan_b_address}:18080/cgi-bin/peer"));
    let _ = outside.kill();
    let _ = outside.wait();
    assert_eq!(peer.trim_start_matches("[::ffff:").trim_end_matches(']'), lan_a_address, "masqueraded as lan-a");

    // A kube-rs client in a pod on a NAT'd node lists pods with its ServiceAccount token, through the kubernetes
    // Service (found by its environment variables) and its node's outbound route to the controller.
    kubectl(
        &cluster,
        &["create", "rolebinding", "default-view", "--clusterrole=view", "--serviceaccount=default:default"],
    );
    let client = std::path::Path::new(env!("CARGO_BIN_EXE_kaasd-in-cluster"));
    let image = binary_image("kaasd.local/in-cluster:test", client).expect("the client image is built");
    check(cluster.import("far-c", &image.build()));
    let manifest = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"in-cluster"},"spec":{"nodeName":"far-c",
        "restartPolicy":"Never","containers":[{"name":"main","image":"kaasd.local/in-cluster:test",
        "imagePullPolicy":"Never"}]}}"#;
    cluster.controller.kubectl_stdin(&["apply", "-f", "-"], manifest).expect("kubectl apply");
    check(cluster.wait("the in-cluster client finishing", || {
        let phase = cluster.pod_field("in-cluster", ".status.phase");
        assert_ne!(
            phase,
            "Failed",
            "the in-cluster client failed: {}",
            cluster.controller.kubectl(&["logs", "in-cluster"]).unwrap_or_default()
        );
        Ok(phase == "Succeeded")
    }));
    let listed = kubectl(&cluster, &["logs", "in-cluster"]);
    assert!(
        listed.lines().any(|line| line == "client-far-c") && listed.lines().any(|line| line == "in-cluster"),
        "{listed}"
    );

    // NetworkPolicy: a policy that selects the web pods and allows nothing blocks every client, on the web pod's
    // node and across nodes; allowing the clients' label on the web port lets them through, and no one else.
    let web_b = cluster.pod_field("web-lan-b", ".status.podIP");
    let url = format!("http://{web_b}:8080/");
    assert_eq!(fetch_eventually(&cluster, "web-lan-a", &url), "web-lan-b", "reachable before any policy");
    let deny = r#"{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"web"},
        "spec":{"podSelector":{"matchLabels":{"app":"web"}},"policyTypes":["Ingress"]}}"#;
    cluster.controller.kubectl_stdin(&["apply", "-f", "-"], deny).expect("kubectl apply");
    for client in ["client-lan-a", "client-lan-b"] {
        check(cluster.wait(&format!("the policy blocking {client}"), || Ok(fetch(&cluster, client, &url).is_none())));
    }
    let allow = r#"{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"web"},
        "spec":{"podSelector":{"matchLabels":{"app":"web"}},"policyTypes":["Ingress"],
        "ingress":[{"from":[{"podSelector":{"matchLabels":{"app":"client"}}}],"ports":[{"port":8080}]}]}}"#;
    cluster.controller.kubectl_stdin(&["apply", "-f", "-"], allow).expect("kubectl apply");
    for client in ["client-lan-a", "client-lan-b", "client-far-c"] {
        assert_eq!(fetch_eventually(&cluster, client, &url), "web-lan-b", "{client} is allowed");
    }
    assert_eq!(fetch(&cluster, "web-lan-a", &url), None, "a pod the policy does not name stays blocked");

    // Egress: clients may only talk to web pods on 8080. The web pod by address still answers; a name no longer
    // resolves, because the cluster DNS address (on the node, reached through the input hook) is not allowed.
    let service = "http://web.default.svc.cluster.local/";
    assert!(fetch_eventually(&cluster, "client-far-c", service).starts_with("web-"), "the name resolves before");
    let egress = r#"{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"clients"},
        "spec":{"podSelector":{"matchLabels":{"app":"client"}},"policyTypes":["Egress"],
        "egress":[{"to":[{"podSelector":{"matchLabels":{"app":"web"}}}],"ports":[{"port":8080}]}]}}"#;
    cluster.controller.kubectl_stdin(&["apply", "-f", "-"], egress).expect("kubectl apply");
    check(cluster.wait("the egress policy blocking DNS", || Ok(fetch(&cluster, "client-far-c", service).is_none())));
    assert_eq!(fetch(&cluster, "client-far-c", &url).as_deref(), Some("web-lan-b"), "allowed egress passes");
}

/// A directory for busybox httpd with the `peer` CGI script.
fn www_with_peer_script() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().expect("a temporary directory");
    let script = root.path().join("cgi-bin/peer");
    std::fs::create_dir_all(script.parent().expect("parent")).expect("www directory");
    std::fs::write(&script, "#!/bin/sh\necho Content-Type: text/plain\necho\necho $REMOTE_ADDR\n").expect("script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    root
}
