//! The pod network across nodes, end to end in network namespaces: a controller, two workers on one LAN and a
//! third on another LAN behind a router, all behind one NAT (see `natlab`), each worker with its own containerd
//! running real busybox pods. Pods reach each other by their own addresses (host-gw on the LAN, VXLAN through the
//! router), Services spread over all three nodes, traffic leaving the pod network is masqueraded, and a pod on a
//! NAT'd node reaches the API server through the `kubernetes` Service.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use kaasd_e2e::controller::Controller;
use kaasd_e2e::images::{binary_image, busybox_image};
use kaasd_e2e::natlab::{NatLab, CP_ADDRESS};
use kaasd_e2e::worker::Worker;

const TIMEOUT: Duration = Duration::from_secs(120);

/// An HTTP server on port 8080 that answers `/` with the pod's name and `/cgi-bin/peer` with the address the
/// request came from, so a test sees whether anything rewrote it.
const WEB_SCRIPT: &str = "mkdir -p /www/cgi-bin && hostname > /www/index.html && \
     printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho $REMOTE_ADDR\\n' > /www/cgi-bin/peer && \
     chmod +x /www/cgi-bin/peer && exec httpd -f -p 8080 -h /www";

struct Cluster {
    controller: Controller,
    workers: Vec<Worker>,
    lab: NatLab,
}

impl Cluster {
    fn wait(&self, what: &str, mut check: impl FnMut() -> anyhow::Result<bool>) {
        let deadline = Instant::now() + TIMEOUT;
        let mut last = None;
        loop {
            match check() {
                Ok(true) => return,
                Ok(false) => {}
                Err(error) => last = Some(error),
            }
            if Instant::now() > deadline {
                let logs: Vec<String> = self
                    .workers
                    .iter()
                    .map(|worker| format!("--- worker {} log:\n{}", worker.node_name(), worker.log()))
                    .collect();
                panic!(
                    "{what} did not happen within {TIMEOUT:?} (last error: {last:?})\npods:\n{}\n{}",
                    self.controller.kubectl(&["get", "pods", "-o", "wide"]).unwrap_or_default(),
                    logs.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn kubectl(&self, arguments: &[&str]) -> String {
        self.controller.kubectl(arguments).unwrap_or_else(|error| panic!("kubectl {arguments:?}: {error:#}"))
    }

    fn pod_field(&self, pod: &str, path: &str) -> String {
        self.controller.kubectl(&["get", "pod", pod, "-o", &format!("jsonpath={{{path}}}")]).unwrap_or_default()
    }

    /// `wget -qO- URL` in `pod`; `None` if it failed.
    fn fetch(&self, pod: &str, url: &str) -> Option<String> {
        let output = self
            .controller
            .kubectl_output(&["exec", pod, "--", "timeout", "5", "wget", "-qO-", url])
            .expect("kubectl exec runs");
        output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
    }

    /// `fetch` until it answers (routes take a moment to appear after a node's pod range).
    fn fetch_eventually(&self, pod: &str, url: &str) -> String {
        let mut answer = None;
        self.wait(&format!("{pod} fetching {url}"), || {
            answer = self.fetch(pod, url);
            Ok(answer.is_some())
        });
        answer.expect("answered")
    }

    fn node_annotation(&self, node: &str) -> String {
        self.controller
            .kubectl(&["get", "node", node, "-o", r#"jsonpath={.metadata.annotations.kaasd\.io/pod-routes}"#])
            .unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.controller.kubectl(&["delete", "pods", "--all", "--grace-period=0", "--force"]);
        for worker in &self.workers {
            let socket = worker.data_dir().join("containerd/containerd.sock");
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline && !runtime_containers(&socket).is_empty() {
                std::thread::sleep(Duration::from_millis(250));
            }
        }
        for worker in &mut self.workers {
            let _ = worker.terminate();
        }
        let _ = &self.lab;
    }
}

fn runtime_containers(socket: &std::path::Path) -> Vec<String> {
    let output = Command::new("ctr")
        .arg("--address")
        .arg(socket)
        .args(["--namespace", "k8s.io", "containers", "list", "--quiet"])
        .output()
        .expect("ctr runs");
    String::from_utf8_lossy(&output.stdout).lines().map(str::to_string).collect()
}

fn kaasd(command: &mut Command) -> String {
    let output = command.output().expect("kaasd runs");
    assert!(output.status.success(), "kaasd failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// Nodes `lan-a` and `lan-b` on the first LAN, `far-c` on the second, each running a web pod and a client pod.
fn cluster() -> Cluster {
    for (package, path) in [
        ("containerd", "/usr/bin/containerd"),
        ("runc", "/usr/sbin/runc"),
        ("containernetworking-plugins", "/usr/lib/cni/bridge"),
        ("busybox-static", "/bin/busybox"),
    ] {
        assert!(std::path::Path::new(path).exists(), "install {package} (tests/run.sh does)");
    }
    let lab = NatLab::up_with_routed(2, 1).expect("the NAT lab comes up (needs root, iproute2 and nftables)");
    let controller = Controller::start_in_namespace(lab.cp(), IpAddr::V4(CP_ADDRESS)).expect("controller starts");
    let binary = kaasd_e2e::kaasd_binary().expect("kaasd builds");
    let token =
        kaasd(controller.command_here(binary).args(["token", "create", "--data-dir"]).arg(controller.data_dir()));
    let places = [
        (lab.edge(0).to_string(), "lan-a"),
        (lab.edge(1).to_string(), "lan-b"),
        (lab.routed_edge(0).to_string(), "far-c"),
    ];
    let workers = places
        .iter()
        .map(|(namespace, node)| Worker::start(Some(namespace), &token, node).expect("worker starts"))
        .collect();
    let cluster = Cluster { controller, workers, lab };
    let archive = tempfile::NamedTempFile::new().expect("a temporary file");
    std::fs::write(archive.path(), busybox_image().build()).expect("the image archive is written");
    for worker in &cluster.workers {
        let node = worker.node_name();
        cluster.wait(&format!("node {node} Ready with a pod range"), || {
            let ready = cluster.controller.kubectl(&[
                "get",
                "node",
                node,
                "-o",
                r#"jsonpath={.status.conditions[?(@.type=="Ready")].status} {.spec.podCIDR}"#,
            ])?;
            Ok(ready.starts_with("True 10.244."))
        });
        kaasd(Command::new(binary).args(["images", "import", "--data-dir"]).arg(worker.data_dir()).arg(archive.path()));
        for (role, command) in [("web", WEB_SCRIPT), ("client", "exec sleep 3600")] {
            let manifest = format!(
                r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{role}-{node}","labels":{{"app":"{role}"}}}},
                 "spec":{{"nodeName":"{node}","terminationGracePeriodSeconds":1,
                 "containers":[{{"name":"main","image":"busybox:1.36","command":["sh","-c",{command:?}],
                 "readinessProbe":{{"exec":{{"command":["true"]}},"periodSeconds":1}}}}]}}}}"#
            );
            cluster.controller.kubectl_stdin(&["apply", "-f", "-"], &manifest).expect("kubectl apply");
        }
    }
    for worker in &cluster.workers {
        for role in ["web", "client"] {
            let pod = format!("{role}-{}", worker.node_name());
            cluster.wait(&format!("pod {pod} running"), || Ok(cluster.pod_field(&pod, ".status.phase") == "Running"));
        }
    }
    cluster
}

#[test]
fn pods_on_three_nodes_reach_each_other_by_their_own_addresses() {
    let cluster = cluster();
    let nodes = ["lan-a", "lan-b", "far-c"];

    // Each node says how it reaches the others: directly on the LAN, through VXLAN across the router.
    for (node, expected) in [
        ("lan-a", "far-c=vxlan,lan-b=host-gw"),
        ("lan-b", "far-c=vxlan,lan-a=host-gw"),
        ("far-c", "lan-a=vxlan,lan-b=vxlan"),
    ] {
        cluster.wait(&format!("node {node} showing its pod routes"), || Ok(cluster.node_annotation(node) == expected));
    }

    // Every client reaches every web pod, and the web pod sees the client's own pod address: no NAT between pods.
    for client in nodes {
        let client_pod = format!("client-{client}");
        let client_ip = cluster.pod_field(&client_pod, ".status.podIP");
        assert!(client_ip.starts_with("10.244."), "client {client_pod} has a pod address: {client_ip:?}");
        for web in nodes {
            let web_ip = cluster.pod_field(&format!("web-{web}"), ".status.podIP");
            let name = cluster.fetch_eventually(&client_pod, &format!("http://{web_ip}:8080/"));
            assert_eq!(name, format!("web-{web}"), "{client} → {web}");
            let peer = cluster.fetch_eventually(&client_pod, &format!("http://{web_ip}:8080/cgi-bin/peer"));
            assert!(
                peer.trim_start_matches("[::ffff:").trim_end_matches(']') == client_ip,
                "{client} → {web}: the web pod saw {peer}, not the client's address {client_ip}"
            );
        }
    }

    // A Service over the three web pods: every endpoint, each on its own node, answers through it.
    cluster.kubectl(&[
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
    ]);
    let mut seen = BTreeSet::new();
    cluster.wait("the Service reaching its endpoints on all three nodes", || {
        if let Some(name) = cluster.fetch("client-lan-a", "http://web.default.svc.cluster.local/") {
            seen.insert(name);
        }
        Ok(seen.len() == 3)
    });

    // Traffic from a pod to a machine outside the pod network leaves with its node's address.
    let lan_b_address = cluster.lab.edge_address(1).to_string();
    let lan_a_address = cluster.lab.edge_address(0).to_string();
    let mut outside = cluster
        .lab
        .command(cluster.lab.edge(1), "busybox")
        .args(["httpd", "-f", "-p", "18080", "-h"])
        .arg(www_with_peer_script())
        .spawn()
        .expect("busybox httpd runs on lan-b's host");
    let peer = cluster.fetch_eventually("client-lan-a", &format!("http://{lan_b_address}:18080/cgi-bin/peer"));
    let _ = outside.kill();
    let _ = outside.wait();
    assert_eq!(peer.trim_start_matches("[::ffff:").trim_end_matches(']'), lan_a_address, "masqueraded as lan-a");

    // A kube-rs client in a pod on a NAT'd node lists pods with its ServiceAccount token, through the kubernetes
    // Service (found by its environment variables) and its node's outbound route to the controller.
    cluster.kubectl(&[
        "create",
        "rolebinding",
        "default-view",
        "--clusterrole=view",
        "--serviceaccount=default:default",
    ]);
    let client = std::path::Path::new(env!("CARGO_BIN_EXE_kaasd-in-cluster"));
    let image = binary_image("kaasd.local/in-cluster:test", client).expect("the client image is built");
    let archive = tempfile::NamedTempFile::new().expect("a temporary file");
    std::fs::write(archive.path(), image.build()).expect("the image archive is written");
    let far_c = cluster.workers.iter().find(|worker| worker.node_name() == "far-c").expect("far-c");
    let binary = kaasd_e2e::kaasd_binary().expect("kaasd builds");
    kaasd(Command::new(binary).args(["images", "import", "--data-dir"]).arg(far_c.data_dir()).arg(archive.path()));
    let manifest = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"in-cluster"},"spec":{"nodeName":"far-c",
        "restartPolicy":"Never","containers":[{"name":"main","image":"kaasd.local/in-cluster:test",
        "imagePullPolicy":"Never"}]}}"#;
    cluster.controller.kubectl_stdin(&["apply", "-f", "-"], manifest).expect("kubectl apply");
    cluster.wait("the in-cluster client finishing", || {
        let phase = cluster.pod_field("in-cluster", ".status.phase");
        assert_ne!(
            phase,
            "Failed",
            "the in-cluster client failed: {}",
            cluster.controller.kubectl(&["logs", "in-cluster"]).unwrap_or_default()
        );
        Ok(phase == "Succeeded")
    });
    let listed = cluster.kubectl(&["logs", "in-cluster"]);
    assert!(
        listed.lines().any(|line| line == "client-far-c") && listed.lines().any(|line| line == "in-cluster"),
        "{listed}"
    );
}

/// A directory for busybox httpd with the `peer` CGI script, made once per test run.
fn www_with_peer_script() -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let root = std::env::temp_dir().join(format!("kaasd-pod-network-www-{}", std::process::id()));
    let script = root.join("cgi-bin/peer");
    std::fs::create_dir_all(script.parent().expect("parent")).expect("www directory");
    std::fs::write(&script, "#!/bin/sh\necho Content-Type: text/plain\necho\necho $REMOTE_ADDR\n").expect("script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    root
}
