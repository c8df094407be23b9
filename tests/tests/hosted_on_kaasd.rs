//! The mothership proof: a kaasd cluster (controller and worker on this machine) runs a hosted kaasd control plane
//! from kaasd's own image (packaging/build-image.sh) as a Deployment of two replicas against PostgreSQL, behind a
//! NodePort Service; a `kaasd worker` in a network namespace that accepts no incoming connection (as behind a NAT)
//! joins the hosted cluster through that Service and runs a pod, whose logs come back through its tunnel.
//!
//! Needs what tests/run.sh provides: root, containerd, runc, the CNI plugins, busybox-static, PostgreSQL, and the
//! image in dist/. Under CI=true a missing piece fails the test; elsewhere the test says what it did not check.

#[path = "common/one_node.rs"]
#[allow(dead_code)] // shared with the pod tests, which use all of it
mod one_node;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use kaasd_e2e::controller::{Hosted, KUBECTL};
use kaasd_e2e::databases::ServerDatabase;
use kaasd_e2e::images::busybox_image;
use kaasd_e2e::worker::Worker;

const TIMEOUT: Duration = Duration::from_secs(180);

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value == "true")
}

/// `dist/kaasd-<version>-image.tar` (`$KAASD_DIST_DIR`, else the workspace's dist/).
fn dist_image() -> Option<PathBuf> {
    let dir = std::env::var_os("KAASD_DIST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("dist"));
    let path = dir.join(format!("kaasd-{}-image.tar", env!("CARGO_PKG_VERSION")));
    path.is_file().then_some(path)
}

/// Forwards TCP connections from every address of this machine, on a port the OS picks, to 127.0.0.1:`to`: how
/// pods reach the PostgreSQL server, which listens on loopback only.
fn forward_to_loopback(to: u16) -> u16 {
    let listener = TcpListener::bind("0.0.0.0:0").expect("a listening port");
    let port = listener.local_addr().expect("address").port();
    std::thread::spawn(move || {
        for incoming in listener.incoming() {
            let Ok(incoming) = incoming else { continue };
            let Ok(outgoing) = TcpStream::connect(("127.0.0.1", to)) else { continue };
            for (mut from, mut into) in
                [(incoming.try_clone().expect("clone"), outgoing.try_clone().expect("clone")), (outgoing, incoming)]
            {
                std::thread::spawn(move || {
                    let mut buffer = [0u8; 16 * 1024];
                    while let Ok(read) = from.read(&mut buffer) {
                        if read == 0 || into.write_all(&buffer[..read]).is_err() {
                            break;
                        }
                    }
                    let _ = into.shutdown(Shutdown::Write);
                });
            }
        }
    });
    port
}

/// A network namespace linked to this machine's by a veth pair, that drops every connection started from outside:
/// what runs in it can dial out, as behind a NAT, and cannot be dialled.
struct DialOutOnly {
    name: String,
    /// This machine's end of the link: an address of this machine that pods on it reach too.
    outside: String,
}

fn run(program: &str, arguments: &[&str]) {
    let output = Command::new(program).args(arguments).output().unwrap_or_else(|error| panic!("{program}: {error}"));
    assert!(output.status.success(), "{program} {arguments:?}: {}", String::from_utf8_lossy(&output.stderr));
}

impl DialOutOnly {
    fn create() -> DialOutOnly {
        let id = std::process::id() % 200 + 20;
        let name = format!("kaasd-dialout-{id}");
        let (outside, inside) = (format!("kdo{id}a"), format!("kdo{id}b"));
        let _ = Command::new("ip").args(["netns", "delete", &name]).output();
        let _ = Command::new("ip").args(["link", "delete", &outside]).output();
        run("ip", &["netns", "add", &name]);
        let namespace = DialOutOnly { name, outside: format!("10.213.{id}.1") };
        let name = namespace.name.as_str();
        run("ip", &["link", "add", &outside, "type", "veth", "peer", "name", &inside]);
        run("ip", &["link", "set", &inside, "netns", name]);
        run("ip", &["address", "add", &format!("10.213.{id}.1/24"), "dev", &outside]);
        run("ip", &["link", "set", &outside, "up"]);
        let inside_commands = [
            format!("address add 10.213.{id}.2/24 dev {inside}"),
            format!("link set {inside} up"),
            "link set lo up".to_string(),
            format!("route add default via 10.213.{id}.1"),
        ];
        for command in inside_commands {
            let arguments: Vec<&str> = ["netns", "exec", name, "ip"].into_iter().chain(command.split(' ')).collect();
            run("ip", &arguments);
        }
        let rules = [
            "add table ip dial-out-only".to_string(),
            "add chain ip dial-out-only input { type filter hook input priority -10; policy accept; }".to_string(),
            format!("add rule ip dial-out-only input iifname {inside} ct state new drop"),
        ];
        for rule in rules {
            run("ip", &["netns", "exec", name, "nft", &rule]);
        }
        namespace
    }
}

impl Drop for DialOutOnly {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "delete", &self.name]).output();
    }
}

#[test]
fn a_kaasd_cluster_hosts_a_control_plane_that_a_worker_behind_nat_joins() {
    let Some(image) = dist_image() else {
        assert!(!in_ci(), "dist/ image archive is missing (tests/run.sh runs packaging/build-image.sh)");
        eprintln!("NOT CHECKED: dist/ image archive is missing (packaging/build-static.sh, packaging/build-image.sh)");
        return;
    };
    let Some(database) = ServerDatabase::create("postgres") else { return };
    let mothership = one_node::Node::start("mothership");
    let imported = Command::new(kaasd_e2e::kaasd_binary().unwrap())
        .args(["images", "import", "--data-dir"])
        .arg(mothership.worker.data_dir())
        .arg(&image)
        .output()
        .unwrap();
    assert!(imported.status.success(), "{}", String::from_utf8_lossy(&imported.stderr));
    // The mothership's address for the hosted control plane's users, its worker and its database: this machine's
    // end of the dial-out-only namespace's link (the node's own address here is loopback, which pods cannot use).
    let namespace = DialOutOnly::create();
    let node_ip = namespace.outside.clone();
    let port = forward_to_loopback(5432);
    let datastore_for_pods = database.url.replace("127.0.0.1:5432", &format!("{node_ip}:{port}"));
    let secret_key = Hosted::new_secret_key();
    let node_port = 30000 + std::process::id() % 2000;
    let version = env!("CARGO_PKG_VERSION");
    mothership.apply(&format!(
        r#"
apiVersion: v1
kind: Secret
metadata: {{name: tenant}}
stringData: {{datastore: "{datastore_for_pods}", secret-key: "{secret_key}"}}
---
apiVersion: v1
kind: Service
metadata: {{name: tenant}}
spec:
  type: NodePort
  selector: {{app: tenant}}
  ports: [{{name: https, port: 6443, targetPort: 6443, nodePort: {node_port}}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: tenant}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: tenant}}}}
  template:
    metadata: {{labels: {{app: tenant}}}}
    spec:
      containers:
      - name: kaasd
        image: docker.io/kaasd/kaasd:{version}
        imagePullPolicy: Never
        args: [controller, --hosted]
        env:
        - {{name: KAASD_DATASTORE, valueFrom: {{secretKeyRef: {{name: tenant, key: datastore}}}}}}
        - {{name: KAASD_SECRET_KEY, valueFrom: {{secretKeyRef: {{name: tenant, key: secret-key}}}}}}
        - {{name: KAASD_ADVERTISE_ADDRESS, value: "{node_ip}"}}
        - {{name: KAASD_ADVERTISE_PORT, value: "{node_port}"}}
        ports: [{{containerPort: 6443, name: https}}]
        securityContext: {{runAsNonRoot: true, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false}}
        readinessProbe: {{httpGet: {{path: /readyz, port: 6443, scheme: HTTPS}}, periodSeconds: 2}}
"#
    ));
    let rollout = mothership.controller.kubectl_output(&[
        "rollout",
        "status",
        "deployment/tenant",
        &format!("--timeout={}s", TIMEOUT.as_secs()),
    ]);
    let rollout = rollout.unwrap();
    assert!(
        rollout.status.success(),
        "the hosted control plane's Deployment did not become available: {}\npods:\n{}\nlogs:\n{}\nworker log:\n{}",
        String::from_utf8_lossy(&rollout.stderr),
        mothership.controller.kubectl(&["get", "pods", "-o", "wide"]).unwrap_or_default(),
        mothership.controller.kubectl(&["logs", "deployment/tenant", "--tail=20"]).unwrap_or_default(),
        mothership.worker.log()
    );

    // The hosted cluster, through the mothership's Service.
    let work = tempfile::tempdir().unwrap();
    let kubeconfig = work.path().join("tenant.conf");
    let printed = Command::new(kaasd_e2e::kaasd_binary().unwrap())
        .args(["kubeconfig", "admin", "--datastore", &database.url])
        .args(["--server", &format!("https://{node_ip}:{node_port}")])
        .env("KAASD_SECRET_KEY", &secret_key)
        .output()
        .unwrap();
    assert!(printed.status.success(), "{}", String::from_utf8_lossy(&printed.stderr));
    std::fs::write(&kubeconfig, &printed.stdout).unwrap();
    let tenant = |arguments: &[&str]| {
        Command::new(KUBECTL)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("--cache-dir")
            .arg(work.path().join("cache"))
            .args(arguments)
            .env_remove("KUBECONFIG")
            .output()
            .unwrap()
    };
    let wait = |what: &str, check: &dyn Fn() -> bool, log: &dyn Fn() -> String| {
        let deadline = Instant::now() + TIMEOUT;
        while !check() {
            assert!(Instant::now() < deadline, "{what} did not happen within {TIMEOUT:?}\n{}", log());
            std::thread::sleep(Duration::from_millis(500));
        }
    };
    wait(
        "the hosted API answering through the Service",
        &|| tenant(&["get", "namespace", "default"]).status.success(),
        &|| String::from_utf8_lossy(&tenant(&["get", "namespace", "default"]).stderr).into_owned(),
    );

    // A worker that can only dial out joins with a token made through the hosted API (its default server is the
    // address the replicas advertise: the mothership's NodePort).
    let token = Command::new(kaasd_e2e::kaasd_binary().unwrap())
        .args(["token", "create", "--kubeconfig"])
        .arg(&kubeconfig)
        .output()
        .unwrap();
    assert!(token.status.success(), "{}", String::from_utf8_lossy(&token.stderr));
    let token = String::from_utf8(token.stdout).unwrap().trim().to_string();
    let worker = Worker::start(Some(&namespace.name), &token, "tenant-node").expect("the worker starts");
    let ready = || {
        let output = tenant(&[
            "get",
            "node",
            "tenant-node",
            "-o",
            r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}"#,
        ]);
        String::from_utf8_lossy(&output.stdout).trim() == "True"
    };
    wait("the worker joining the hosted cluster", &ready, &|| worker.log());
    let archive = worker.data_dir().join("busybox.tar");
    std::fs::write(&archive, busybox_image().build()).unwrap();
    let imported = Command::new(kaasd_e2e::kaasd_binary().unwrap())
        .args(["images", "import", "--data-dir"])
        .arg(worker.data_dir())
        .arg(&archive)
        .output()
        .unwrap();
    assert!(imported.status.success(), "{}", String::from_utf8_lossy(&imported.stderr));

    let created = tenant(&[
        "run",
        "hello",
        "--image=busybox:1.36",
        "--restart=Never",
        "--",
        "sh",
        "-c",
        "echo hello from a hosted cluster; sleep 3600",
    ]);
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let logs = || String::from_utf8_lossy(&tenant(&["logs", "hello"]).stdout).into_owned();
    wait(
        "the pod's logs through the hosted control plane and the tunnel",
        &|| logs().contains("hello from a hosted cluster"),
        &|| {
            format!(
                "{}\nworker log:\n{}",
                String::from_utf8_lossy(&tenant(&["get", "pod", "hello", "-o", "yaml"]).stdout),
                worker.log()
            )
        },
    );
    // Leave no container behind: the worker stops the pod's once it is deleted.
    let _ = tenant(&["delete", "pod", "hello", "--grace-period=0", "--force"]);
    let socket = worker.data_dir().join("containerd/containerd.sock");
    let containers = || {
        let output = Command::new("ctr")
            .arg("--address")
            .arg(&socket)
            .args(["--namespace", "k8s.io", "containers", "list", "--quiet"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).lines().count()
    };
    wait("the worker removing the pod's containers", &|| containers() == 0, &|| worker.log());
    drop(worker);
}
