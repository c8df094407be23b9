//! One node on this machine for end-to-end tests that run real pods: a `kaasd controller`, a `kaasd worker` joined
//! with a token running Debian's containerd and runc, and the busybox image made here and imported with
//! `kaasd images import`. Included by the test files that need it.

use std::process::Command;
use std::time::{Duration, Instant};

use kaasd_e2e::controller::Controller;
use kaasd_e2e::images::busybox_image;
use kaasd_e2e::worker::Worker;

pub const TIMEOUT: Duration = Duration::from_secs(90);
/// Every worker here runs in this machine's network namespace, where the pod bridge `kaasd0` holds its node's
/// gateway address: the tests take turns, and their nodes have the same pod CIDR (each cluster's node IPAM gives
/// its first node the first /24 of the default cluster CIDR).
pub static ONE_NODE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
pub const POD_CIDR: &str = "10.244.0.0/24";

/// A controller and one worker whose node has a pod CIDR and the busybox image.
pub struct Node {
    pub controller: Controller,
    pub worker: Worker,
    _turn: std::sync::MutexGuard<'static, ()>,
}

impl Node {
    pub fn start(node_name: &str) -> Node {
        Node::start_with(node_name, Vec::new())
    }

    /// [`Node::start`] with more flags for the worker.
    pub fn start_with(node_name: &str, worker_arguments: Vec<String>) -> Node {
        Node::start_configured(node_name, Vec::new(), worker_arguments)
    }

    /// [`Node::start`] with more flags for the controller and for the worker.
    pub fn start_configured(node_name: &str, controller_arguments: Vec<String>, worker_arguments: Vec<String>) -> Node {
        let turn = ONE_NODE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let pod_cidr = POD_CIDR;
        check_dependencies();
        let controller = Controller::start_with(controller_arguments).expect("controller starts");
        let token = kaasd(&controller, &["token", "create", "--data-dir"], Some(controller.data_dir()));
        let port = kaasd_e2e::free_port().expect("a free port");
        let worker = Worker::start_here_with(token.trim(), node_name, port, worker_arguments).expect("worker starts");
        let node = Node { controller, worker, _turn: turn };
        node.wait("the node becoming Ready", || {
            let status = node.controller.kubectl(&[
                "get",
                "node",
                node_name,
                "-o",
                r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}"#,
            ])?;
            Ok(status.trim() == "True")
        });
        // The controller's node IPAM gives the node POD_CIDR; if it has not yet, the test sets that same range
        // (spec.podCIDR can be set once, and a set one is kept).
        let patch = format!(r#"{{"spec":{{"podCIDR":"{pod_cidr}","podCIDRs":["{pod_cidr}"]}}}}"#);
        let current = node.controller.kubectl(&["get", "node", node_name, "-o", "jsonpath={.spec.podCIDR}"]);
        if current.as_deref().map(str::trim).unwrap_or("").is_empty() {
            node.controller.kubectl(&["patch", "node", node_name, "-p", &patch]).expect("podCIDR is set");
        }
        let archive = node.worker.data_dir().join("busybox.tar");
        std::fs::write(&archive, busybox_image().build()).expect("the image archive is written");
        let output = Command::new(kaasd_e2e::kaasd_binary().expect("kaasd builds"))
            .args(["images", "import", "--data-dir"])
            .arg(node.worker.data_dir())
            .arg(&archive)
            .output()
            .expect("kaasd images import runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "images import failed: {}", String::from_utf8_lossy(&output.stderr));
        assert_eq!(
            stdout.trim(),
            format!("imported docker.io/library/busybox:1.36 from {}", archive.display()),
            "one progress line per image"
        );
        node
    }

    pub fn wait(&self, what: &str, mut check: impl FnMut() -> anyhow::Result<bool>) {
        let deadline = Instant::now() + TIMEOUT;
        let mut last = None;
        loop {
            match check() {
                Ok(true) => return,
                Ok(false) => {}
                Err(error) => last = Some(error),
            }
            if Instant::now() > deadline {
                panic!(
                    "{what} did not happen within {TIMEOUT:?} (last error: {last:?})\npods:\n{}\nworker log:\n{}",
                    self.controller.kubectl(&["get", "pods", "-o", "yaml"]).unwrap_or_default(),
                    self.worker.log()
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    pub fn apply(&self, manifest: &str) {
        self.controller.kubectl_stdin(&["apply", "-f", "-"], manifest).expect("kubectl apply");
    }

    #[allow(dead_code)] // not every test file that includes this module uses it
    pub fn field(&self, pod: &str, path: &str) -> String {
        self.controller.kubectl(&["get", "pod", pod, "-o", &format!("jsonpath={{{path}}}")]).unwrap_or_default()
    }

    #[allow(dead_code)] // not every test file that includes this module uses it
    pub fn wait_phase(&self, pod: &str, phase: &str) {
        self.wait(&format!("pod {pod} reaching {phase}"), || Ok(self.field(pod, ".status.phase") == phase));
    }

    /// kubectl with the worker's own node certificate (`system:node:<name>`), as the node authorizer sees it:
    /// whether it succeeded, and its stderr.
    #[allow(dead_code)] // not every test file that includes this module uses it
    pub fn kubectl_as_node(&self, arguments: &[&str]) -> (bool, String) {
        let identity = self.worker.data_dir().join("worker");
        let output = Command::new(kaasd_e2e::controller::KUBECTL)
            .arg(format!("--server={}", self.controller.url()))
            .arg(format!("--certificate-authority={}", identity.join("ca.crt").display()))
            .arg(format!("--client-certificate={}", identity.join("node.crt").display()))
            .arg(format!("--client-key={}", identity.join("node.key").display()))
            .args(arguments)
            .env_remove("KUBECONFIG")
            .output()
            .expect("kubectl runs");
        (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
    }

    pub fn containerd_socket(&self) -> std::path::PathBuf {
        self.worker.data_dir().join("containerd/containerd.sock")
    }

    /// Container ids in the worker's containerd.
    pub fn runtime_containers(&self) -> Vec<String> {
        let output = Command::new("ctr")
            .arg("--address")
            .arg(self.containerd_socket())
            .args(["--namespace", "k8s.io", "containers", "list", "--quiet"])
            .output()
            .expect("ctr runs");
        String::from_utf8_lossy(&output.stdout).lines().map(str::to_string).collect()
    }
}

impl Drop for Node {
    /// Leaves nothing running: the pods are removed through the API (the worker stops their containers), then
    /// the worker stops its containerd.
    fn drop(&mut self) {
        // Workloads first, or their controllers would replace the pods deleted next.
        let _ = self.controller.kubectl(&["delete", "deployments,replicasets,statefulsets,daemonsets,jobs", "--all"]);
        let _ = self.controller.kubectl(&["delete", "pods", "--all", "--grace-period=0", "--force"]);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.runtime_containers().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(250));
        }
        let _ = self.worker.terminate();
    }
}

/// Fails (rather than skips) when the machine cannot run containers.
pub fn check_dependencies() {
    let missing: Vec<&str> = [
        ("containerd", "/usr/bin/containerd"),
        ("ctr", "/usr/bin/ctr"),
        ("runc", "/usr/sbin/runc"),
        ("containernetworking-plugins", "/usr/lib/cni/bridge"),
        ("busybox-static", "/bin/busybox"),
    ]
    .iter()
    .filter(|(_, path)| !std::path::Path::new(path).exists())
    .map(|(package, _)| *package)
    .collect();
    assert!(missing.is_empty(), "install {} (tests/run.sh does)", missing.join(" "));
}

pub fn kaasd(controller: &Controller, arguments: &[&str], data_dir: Option<&std::path::Path>) -> String {
    let mut command = Command::new(kaasd_e2e::kaasd_binary().expect("kaasd builds"));
    command.args(arguments);
    if let Some(dir) = data_dir {
        command.arg(dir);
    }
    let output = command.env_remove("KAASD_DATA_DIR").output().expect("kaasd runs");
    assert!(output.status.success(), "kaasd {arguments:?}: {}\n{}", String::from_utf8_lossy(&output.stderr), {
        controller.log()
    });
    String::from_utf8(output.stdout).expect("utf-8")
}
