//! A three-node cluster in a [`NatLab`] for tests and benchmarks of the pod network: the controller on the far
//! side of the NAT, nodes `lan-a` and `lan-b` on the first LAN and `far-c` on the second LAN behind a router. Each
//! worker runs its own Debian containerd with the busybox image imported. Dropping the lab deletes every pod,
//! waits for the containers to go, and stops the workers.

use std::net::IpAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::controller::Controller;
use crate::images::busybox_image;
use crate::natlab::{NatLab, CP_ADDRESS};
use crate::worker::Worker;

/// How long the lab waits for anything (a node, a pod, a route) before giving up.
pub const TIMEOUT: Duration = Duration::from_secs(120);
/// The node names, in the order of [`PodLab::workers`].
pub const NODES: [&str; 3] = ["lan-a", "lan-b", "far-c"];

pub struct PodLab {
    pub controller: Controller,
    pub workers: Vec<Worker>,
    pub lab: NatLab,
}

impl PodLab {
    /// Starts the lab and waits for all three nodes to be Ready with a pod range.
    pub fn start() -> anyhow::Result<PodLab> {
        for (package, path) in [
            ("containerd", "/usr/bin/containerd"),
            ("runc", "/usr/sbin/runc"),
            ("containernetworking-plugins", "/usr/lib/cni/bridge"),
            ("busybox-static", "/bin/busybox"),
        ] {
            if !std::path::Path::new(path).exists() {
                bail!("install {package} (tests/run.sh does)");
            }
        }
        let lab = NatLab::up_with_routed(2, 1).context("the NAT lab (needs root, iproute2 and nftables)")?;
        let controller = Controller::start_in_namespace(lab.cp(), IpAddr::V4(CP_ADDRESS))?;
        let binary = crate::kaasd_binary()?;
        let token =
            kaasd(controller.command_here(binary).args(["token", "create", "--data-dir"]).arg(controller.data_dir()))?;
        let namespaces = [lab.edge(0).to_string(), lab.edge(1).to_string(), lab.routed_edge(0).to_string()];
        let mut workers = Vec::new();
        for (namespace, node) in namespaces.iter().zip(NODES) {
            workers.push(Worker::start(Some(namespace), &token, node)?);
        }
        let pod_lab = PodLab { controller, workers, lab };
        for node in NODES {
            pod_lab.wait(&format!("node {node} Ready with a pod range"), || {
                let ready = pod_lab.controller.kubectl(&[
                    "get",
                    "node",
                    node,
                    "-o",
                    r#"jsonpath={.status.conditions[?(@.type=="Ready")].status} {.spec.podCIDR}"#,
                ])?;
                Ok(ready.starts_with("True 10.244."))
            })?;
        }
        let busybox = busybox_image().build();
        for node in NODES {
            pod_lab.import(node, &busybox)?;
        }
        Ok(pod_lab)
    }

    pub fn worker(&self, node: &str) -> &Worker {
        self.workers.iter().find(|worker| worker.node_name() == node).expect("one of the lab's nodes")
    }

    /// The network namespace node `node` runs in.
    pub fn namespace(&self, node: &str) -> &str {
        match node {
            "lan-a" => self.lab.edge(0),
            "lan-b" => self.lab.edge(1),
            _ => self.lab.routed_edge(0),
        }
    }

    /// Imports an image archive into node `node`'s containerd with `kaasd images import`.
    pub fn import(&self, node: &str, archive: &[u8]) -> anyhow::Result<()> {
        let file = tempfile::NamedTempFile::new()?;
        std::fs::write(file.path(), archive)?;
        let worker = self.worker(node);
        kaasd(
            Command::new(crate::kaasd_binary()?)
                .args(["images", "import", "--data-dir"])
                .arg(worker.data_dir())
                .arg(file.path()),
        )?;
        Ok(())
    }

    /// Polls `check` until true or [`TIMEOUT`]; the error carries the pods and every worker's log.
    pub fn wait(&self, what: &str, mut check: impl FnMut() -> anyhow::Result<bool>) -> anyhow::Result<()> {
        let deadline = Instant::now() + TIMEOUT;
        let mut last = None;
        loop {
            match check() {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(error) => last = Some(error),
            }
            if Instant::now() > deadline {
                let logs: Vec<String> = self
                    .workers
                    .iter()
                    .map(|worker| format!("--- worker {} log:\n{}", worker.node_name(), worker.log()))
                    .collect();
                bail!(
                    "{what} did not happen within {TIMEOUT:?} (last error: {last:?})\npods:\n{}\n{}",
                    self.controller.kubectl(&["get", "pods", "-o", "wide"]).unwrap_or_default(),
                    logs.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    pub fn pod_field(&self, pod: &str, path: &str) -> String {
        self.controller.kubectl(&["get", "pod", pod, "-o", &format!("jsonpath={{{path}}}")]).unwrap_or_default()
    }

    /// Creates a pod from a JSON manifest and waits for it to run.
    pub fn run_pod(&self, manifest: &str) -> anyhow::Result<()> {
        let name = serde_json::from_str::<serde_json::Value>(manifest)?["metadata"]["name"]
            .as_str()
            .context("the manifest names its pod")?
            .to_string();
        self.controller.kubectl_stdin(&["apply", "-f", "-"], manifest)?;
        self.wait(&format!("pod {name} running"), || Ok(self.pod_field(&name, ".status.phase") == "Running"))
    }
}

impl Drop for PodLab {
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
    }
}

fn runtime_containers(socket: &std::path::Path) -> Vec<String> {
    let Ok(output) = Command::new("ctr")
        .arg("--address")
        .arg(socket)
        .args(["--namespace", "k8s.io", "containers", "list", "--quiet"])
        .output()
    else {
        return Vec::new();
    };
    String::from_utf8_lossy(&output.stdout).lines().map(str::to_string).collect()
}

fn kaasd(command: &mut Command) -> anyhow::Result<String> {
    let output = command.output().context("cannot run kaasd")?;
    if !output.status.success() {
        bail!("kaasd failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}
