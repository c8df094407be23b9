//! Services on a real node: the worker programs its nftables table from Services and EndpointSlices, and traffic
//! from pods and from the host reaches ready endpoints by cluster IP, node port and name.
//!
//! Needs root, nftables, containerd, runc, containernetworking-plugins and busybox-static (tests/run.sh installs
//! them). Without them the tests fail: they never pass by testing nothing.

#[path = "common/one_node.rs"]
#[allow(dead_code)] // shared with pods_run.rs, which uses the rest of it
mod one_node;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use one_node::Node;

const NODE: &str = "services-a";

/// Two web pods that answer with their own name, ready while /tmp/ready exists; a Service over them with a node
/// port; a Service that selects nothing; a client pod.
fn manifests() -> String {
    let web_script = "mkdir -p /www && hostname > /www/index.html && touch /tmp/ready && exec httpd -f -p 8080 -h /www";
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: httpd
        image: busybox:1.36
        command: ["sh", "-c", "{web_script}"]
        ports: [{{name: http, containerPort: 8080}}]
        readinessProbe:
          exec: {{command: ["cat", "/tmp/ready"]}}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  type: NodePort
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: http}}]
---
apiVersion: v1
kind: Service
metadata: {{name: nobody}}
spec:
  selector: {{app: nobody-has-this-label}}
  ports: [{{port: 80}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web-direct}}
spec:
  clusterIP: None
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: http}}]
---
apiVersion: v1
kind: Service
metadata: {{name: db}}
spec:
  clusterIP: None
  selector: {{app: db}}
  ports: [{{port: 5432}}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: db}}
spec:
  serviceName: db
  replicas: 1
  selector: {{matchLabels: {{app: db}}}}
  template:
    metadata: {{labels: {{app: db}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: db
        image: busybox:1.36
        command: ["sleep", "100000"]
---
apiVersion: v1
kind: Pod
metadata: {{name: client}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: shell
    image: busybox:1.36
    command: ["sleep", "100000"]
"#
    )
}

/// What `GET /` on `address` answers (the serving pod's name), from this host.
fn http_get(address: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&address.parse().expect("an address"), Duration::from_secs(3))?;
    stream.set_read_timeout(Some(Duration::from_secs(3)))?;
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response.split("\r\n\r\n").nth(1).unwrap_or_default().trim().to_string())
}

/// `wget` from inside pod `pod`; the body, or wget's error. (busybox wget -T crashes on some connections: `timeout`
/// bounds it instead.)
fn wget_in(node: &Node, pod: &str, url: &str) -> Result<String, String> {
    let output = node
        .controller
        .kubectl_output(&["exec", pod, "--", "timeout", "5", "wget", "-q", "-O", "-", url])
        .map_err(|error| error.to_string())?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
    }
}

fn ready_web_pods(node: &Node) -> BTreeSet<String> {
    let listed = node.controller.kubectl(&["get", "pods", "-l", "app=web", "-o", "json"]).unwrap_or_default();
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap_or_default();
    let is_ready = |pod: &serde_json::Value| {
        pod["status"]["conditions"]
            .as_array()
            .is_some_and(|conditions| conditions.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
            && pod["metadata"]["deletionTimestamp"].is_null()
    };
    let pods = listed["items"].as_array().cloned().unwrap_or_default();
    pods.iter()
        .filter(|pod| is_ready(pod))
        .filter_map(|pod| pod["metadata"]["name"].as_str().map(str::to_string))
        .collect()
}

/// The names answering `fetch` over `tries` requests.
fn answers(tries: usize, mut fetch: impl FnMut() -> Result<String, String>) -> Result<BTreeSet<String>, String> {
    (0..tries).map(|_| fetch()).collect()
}

/// A resolver outside the cluster, as the node's upstream: Debian's dnsmasq answering one name.
struct Upstream {
    child: std::process::Child,
    resolv_conf: tempfile::NamedTempFile,
}

const UPSTREAM_ADDRESS: &str = "127.0.0.153";

impl Upstream {
    fn start() -> Upstream {
        let child = std::process::Command::new("dnsmasq")
            .args([
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--port=53",
                "--user=root",
            ])
            .arg(format!("--listen-address={UPSTREAM_ADDRESS}"))
            .args(["--conf-file=/dev/null", "--pid-file="])
            .arg("--address=/outside.example/192.0.2.123")
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("dnsmasq runs (Debian's dnsmasq-base; tests/run.sh installs it)");
        let resolv_conf = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(resolv_conf.path(), format!("nameserver {UPSTREAM_ADDRESS}\n")).unwrap();
        Upstream { child, resolv_conf }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// busybox `nslookup NAME` in the client pod: the addresses it answers.
fn lookup(node: &Node, name: &str) -> BTreeSet<String> {
    let output = node.controller.kubectl_output(&["exec", "client", "--", "nslookup", name]).unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    // The server's own "Address:\t10.96.0.10:53" line carries a port; answers do not.
    text.lines()
        .filter_map(|line| line.strip_prefix("Address:"))
        .map(str::trim)
        .filter(|address| !address.contains(':'))
        .map(str::to_string)
        .collect()
}

fn pod_ip(node: &Node, pod: &str) -> String {
    node.field(pod, ".status.podIP")
}

#[test]
fn services_reach_ready_endpoints_from_pods_and_the_host() {
    let upstream = Upstream::start();
    let resolv_conf = upstream.resolv_conf.path().display().to_string();
    let mut node = Node::start_with(NODE, vec!["--resolv-conf".into(), resolv_conf]);
    node.apply(&manifests());
    node.wait_phase("client", "Running");
    node.wait("two web pods Ready", || Ok(ready_web_pods(&node).len() == 2));
    let pods = ready_web_pods(&node);
    let cluster_ip = node.controller.kubectl(&["get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"]).unwrap();
    let node_port =
        node.controller.kubectl(&["get", "service", "web", "-o", "jsonpath={.spec.ports[0].nodePort}"]).unwrap();
    // The node reports the address it reaches the controller from, loopback here; node ports answer on the host's
    // other addresses (as kube-proxy's nftables mode, not on 127.0.0.1).
    let host_ip = std::process::Command::new("hostname").arg("-I").output().expect("hostname runs");
    let host_ip = String::from_utf8_lossy(&host_ip.stdout).split_whitespace().next().expect("an address").to_string();
    node.wait("the web Service's endpoints in place", || {
        Ok(wget_in(&node, "client", &format!("http://{cluster_ip}/")).is_ok())
    });

    // The API's proxy (`kubectl get --raw`, `kubectl proxy`) reaches a pod, by its port or its first container
    // port, and a Service by its port's name, each through the pod's node.
    for pod in &pods {
        for target in [format!("{pod}:8080"), pod.clone()] {
            let path = format!("/api/v1/namespaces/default/pods/{target}/proxy/");
            assert_eq!(node.controller.kubectl(&["get", "--raw", &path]).unwrap().trim(), pod, "{path}");
        }
    }
    let through_service =
        node.controller.kubectl(&["get", "--raw", "/api/v1/namespaces/default/services/web:http/proxy/"]).unwrap();
    assert!(pods.contains(through_service.trim()), "{through_service:?} is one of {pods:?}");

    // Pod → cluster IP reaches both endpoints (chosen at random), and so does the host, by cluster IP and node port.
    let from_pod = answers(30, || wget_in(&node, "client", &format!("http://{cluster_ip}/"))).unwrap();
    assert_eq!(from_pod, pods, "both ready endpoints answer a pod");
    let from_host = answers(30, || http_get(&format!("{cluster_ip}:80")).map_err(|error| error.to_string()))
        .unwrap_or_else(|error| panic!("{error}\n{}", nft_table()));
    assert_eq!(from_host, pods, "both answer the host by cluster IP");
    let by_node_port = answers(30, || http_get(&format!("{host_ip}:{node_port}")).map_err(|error| error.to_string()))
        .unwrap_or_else(|error| panic!("{error}\n{}", nft_table()));
    assert_eq!(by_node_port, pods, "both answer on the node port");

    // Cluster DNS, answered by the worker: a Service's cluster IP, a headless Service's ready pods, a StatefulSet
    // pod by name, and an outside name through the node's upstream.
    assert_eq!(lookup(&node, "web.default.svc.cluster.local"), BTreeSet::from([cluster_ip.clone()]));
    let web_ips: BTreeSet<String> = pods.iter().map(|pod| pod_ip(&node, pod)).collect();
    assert_eq!(lookup(&node, "web-direct.default.svc.cluster.local"), web_ips);
    node.wait_phase("db-0", "Running");
    node.wait("db-0 in DNS", || {
        Ok(lookup(&node, "db-0.db.default.svc.cluster.local") == BTreeSet::from([pod_ip(&node, "db-0")]))
    });
    assert_eq!(lookup(&node, "outside.example"), BTreeSet::from(["192.0.2.123".to_string()]));
    let resolv = node.controller.kubectl(&["exec", "client", "--", "cat", "/etc/resolv.conf"]).unwrap();
    assert!(resolv.contains("search default.svc.cluster.local svc.cluster.local cluster.local"), "{resolv}");

    // Hairpin: a pod reaches itself through its own Service.
    let first = pods.iter().next().unwrap().clone();
    let through_itself = answers(20, || wget_in(&node, &first, &format!("http://{cluster_ip}/"))).unwrap();
    assert!(through_itself.contains(&first), "the pod was reached through its own Service: {through_itself:?}");

    // A Service without endpoints is refused at once, not left to time out.
    let nobody = node.controller.kubectl(&["get", "service", "nobody", "-o", "jsonpath={.spec.clusterIP}"]).unwrap();
    // (A dropped packet would end in `timeout` killing wget, with no "refused".)
    let refused = wget_in(&node, "client", &format!("http://{nobody}/")).expect_err("nothing serves it");
    assert!(refused.contains("refused"), "{refused}");

    // A pod that stops being ready stops getting traffic.
    node.controller.kubectl(&["exec", &first, "--", "rm", "/tmp/ready"]).unwrap();
    node.wait("the unready pod leaving the endpoints", || {
        Ok(answers(10, || wget_in(&node, "client", &format!("http://{cluster_ip}/")))
            .is_ok_and(|names| !names.contains(&first)))
    });

    // With the worker stopped, the rules stay and keep serving; a restarted worker rebuilds them and follows
    // changes made while it was away.
    node.worker.terminate().expect("the worker stops");
    let while_away = answers(10, || http_get(&format!("{cluster_ip}:80")).map_err(|error| error.to_string()));
    assert!(while_away.is_ok(), "Services keep working while the worker is down: {while_away:?}");
    node.controller.kubectl(&["scale", "deployment", "web", "--replicas=1"]).unwrap();
    node.worker.restart().expect("the worker starts again");
    node.controller.kubectl(&["exec", &first, "--", "touch", "/tmp/ready"]).ok();
    node.wait("the rules following the API again after the restart", || {
        let names = answers(10, || http_get(&format!("{cluster_ip}:80")).map_err(|error| error.to_string()));
        Ok(names.is_ok_and(|names| names.len() == 1 && ready_web_pods(&node).contains(names.iter().next().unwrap())))
    });
    let table = nft_table();
    assert_eq!(table.matches("dnat to ").count(), 2, "one endpoint of web and the kubernetes Service:\n{table}");
}

/// The worker's table as `nft` lists it.
fn nft_table() -> String {
    let output = std::process::Command::new("nft").args(["list", "table", "ip", "kaasd"]).output().expect("nft runs");
    String::from_utf8_lossy(&output.stdout).into_owned()
}
