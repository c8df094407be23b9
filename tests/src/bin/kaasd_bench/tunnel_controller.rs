//! The `controller-idle` case: the memory per idle agent and the reconnection after `kill -9` measured against the
//! real `kaasd controller` instead of the bench's tunnel server. The controller runs in `cp` with its own data
//! directory (SQLite, `--sync normal`), gets one Node object per agent through kubectl, and the agents connect to its
//! API port with ALPN `kaasd-tunnel/1` and node certificates signed by its cluster CA. A tunnel counts as connected
//! when the controller logs `node tunnel connected` for its node.

use std::collections::HashSet;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use kaasd_e2e::natlab::CP_ADDRESS;
use kaasd_tunnel::pki::{ClusterPki, ServingNames};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;

use super::{Bench, Goal, ProcessMemory, Results, Route, KIB, MIB};
use crate::progress;
use crate::tunnel_roles::PkiFiles;

const API_PORT: u16 = 6443;
const CONNECTED_LINE: &str = "node tunnel connected";

pub(super) fn memory_label(agents: usize) -> String {
    format!("kaasd controller: memory per idle agent ({agents}), Pss slope")
}

/// The real controller, started in `cp`; killed (SIGKILL) when dropped.
struct ControllerProcess {
    child: Child,
    pid: u32,
    log: PathBuf,
}

impl ControllerProcess {
    async fn start(bench: &Bench<'_>, data_dir: &Path, name: &str) -> Result<ControllerProcess> {
        let program = kaasd_binary()?;
        let mut command = match bench.plan.server_cpu {
            Some(cpu) => {
                let mut command = bench.lab.command(bench.lab.cp(), "taskset");
                command.args(["-c", &cpu.to_string()]).arg(&program);
                command
            }
            None => bench.lab.command(bench.lab.cp(), &program),
        };
        command.arg("controller").arg("--data-dir").arg(data_dir);
        command.args(["--bind-address", "0.0.0.0", "--advertise-address", &CP_ADDRESS.to_string()]);
        command.args(["--api-port", &API_PORT.to_string(), "--sync", "normal"]);
        command.env("KAASD_LOG", "info").env("KAASD_LOG_FORMAT", "plain");
        let log = bench.logs.join(format!("{name}.log"));
        let log_file = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut child = tokio::process::Command::from(command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .context("starting kaasd controller")?;
        // `ip netns exec` execs the program, so the child is kaasd itself (checked below).
        let pid = child.id().ok_or_else(|| anyhow!("kaasd controller exited at once"))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let (ready_sender, ready) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let mut ready_sender = Some(ready_sender);
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("serving the Kubernetes API") {
                    if let Some(sender) = ready_sender.take() {
                        let _ = sender.send(());
                    }
                }
            }
        });
        if !matches!(tokio::time::timeout(Duration::from_secs(60), ready).await, Ok(Ok(()))) {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            bail!("kaasd controller did not start: {}", text.trim());
        }
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() != "kaasd" {
            bail!("process {pid} is {:?}, not kaasd", comm.trim());
        }
        Ok(ControllerProcess { child, pid, log })
    }

    /// Distinct nodes the controller logged `node tunnel connected` for.
    fn connected(&self) -> usize {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let nodes: HashSet<&str> = text
            .lines()
            .filter(|line| line.contains(CONNECTED_LINE))
            .filter_map(|line| line.split("node.name=").nth(1)?.split_whitespace().next())
            .collect();
        nodes.len()
    }

    /// Waits until `count` nodes are connected; returns when the count was first seen.
    async fn wait_for(&self, count: usize, limit: Duration) -> Result<Instant> {
        let deadline = Instant::now() + limit;
        loop {
            let connected = self.connected();
            if connected >= count {
                return Ok(Instant::now());
            }
            if Instant::now() > deadline {
                bail!("only {connected} of {count} node tunnels connected to the controller within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn kill(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// The `kaasd` binary next to this one (both live in target/release).
fn kaasd_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating this binary")?;
    let path = exe.with_file_name("kaasd");
    if !path.exists() {
        bail!("{} not found: cargo build --release -p kaasd", path.display());
    }
    Ok(path)
}

/// Node certificates for `n0..n<agents>` signed by the controller's CA, written where `tunnel-agents` reads them.
/// The CA is copied out first so that nothing in the controller's data directory changes.
fn write_node_pki(data_dir: &Path, scratch: &Path, agents: usize) -> Result<PkiFiles> {
    let copy = scratch.join("controller-ca");
    std::fs::create_dir_all(&copy).context("creating the CA copy")?;
    for file in ["ca.crt", "ca.key"] {
        std::fs::copy(data_dir.join("pki").join(file), copy.join(file)).with_context(|| format!("copying {file}"))?;
    }
    let names = ServingNames { dns_names: Vec::new(), ip_addresses: vec![IpAddr::V4(CP_ADDRESS)] };
    let pki = ClusterPki::load_or_create(&copy, &names).context("loading the controller's CA")?;
    let files = PkiFiles { dir: scratch.join("controller-nodes") };
    std::fs::create_dir_all(&files.dir).context("creating the node PKI directory")?;
    crate::tunnel::write_node_certificates(&pki, &files, agents)?;
    Ok(files)
}

/// One `kubectl create` of a v1 List with a Node per agent, run in `cp`.
async fn create_nodes(bench: &Bench<'_>, data_dir: &Path, agents: usize) -> Result<()> {
    let items: Vec<serde_json::Value> = (0..agents)
        .map(|index| {
            serde_json::json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": PkiFiles::node_name(index)}})
        })
        .collect();
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
    let manifest = bench.logs.join("controller-nodes.json");
    std::fs::File::create(&manifest)
        .and_then(|mut file| file.write_all(list.to_string().as_bytes()))
        .context("writing the Node list")?;
    let mut command = bench.lab.command(bench.lab.cp(), "kubectl");
    command.arg("--kubeconfig").arg(data_dir.join("pki").join("admin.conf"));
    command.args([
        "--server",
        &format!("https://{CP_ADDRESS}:{API_PORT}"),
        "create",
        "--validate=false",
        "-o",
        "name",
        "-f",
    ]);
    command.arg(&manifest);
    let output = tokio::process::Command::from(command)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .context("running kubectl (apt-get install kubectl, or put it on PATH)")?;
    if !output.status.success() {
        bail!("kubectl create failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(())
}

/// 0 → N idle agents on a fresh controller (memory slope), then kill -9 and restart it on the same data directory
/// (time until every node's tunnel is back).
pub(super) async fn controller_case(bench: &Bench<'_>, results: &mut Results) -> Result<()> {
    let plan = bench.plan;
    let data_dir = bench.logs.join("controller-data");
    progress("tunnel: kaasd controller in cp");
    let controller = ControllerProcess::start(bench, &data_dir, "controller").await?;
    tokio::time::sleep(plan.settle).await;
    let fresh = ProcessMemory::read(&[controller.pid])?;
    progress(&format!("tunnel: creating {} Node objects", plan.agents));
    let started = Instant::now();
    create_nodes(bench, &data_dir, plan.agents).await?;
    let create_seconds = started.elapsed().as_secs_f64();
    let pki = write_node_pki(&data_dir, &bench.logs, plan.agents)?;
    tokio::time::sleep(plan.settle).await;
    let empty = ProcessMemory::read(&[controller.pid])?;

    progress(&format!("tunnel: {} idle agents to the controller", plan.agents));
    let server = SocketAddr::new(IpAddr::V4(CP_ADDRESS), API_PORT);
    let per_edge = plan.agents.div_ceil(plan.edges);
    let mut agent_processes = Vec::new();
    let mut first = 0;
    for edge in 0..plan.edges {
        let count = per_edge.min(plan.agents - first);
        if count == 0 {
            break;
        }
        agent_processes.push(bench.agents_to(edge, first, count, server, &pki, "controller-agents").await?);
        first += count;
    }
    controller.wait_for(plan.agents, Duration::from_secs(180)).await?;
    tokio::time::sleep(plan.settle).await;
    let full = ProcessMemory::read(&[controller.pid])?;
    let agents = plan.agents as f64;
    let goal = Some(Goal::AtMost(64.0));
    results.record(&memory_label(plan.agents), "KiB", false, goal, Route::Kaasd, (full.pss - empty.pss) / agents / KIB);
    let rss_label = format!("kaasd controller: memory per idle agent ({}), RSS slope", plan.agents);
    results.record(&rss_label, "KiB", false, None, Route::Kaasd, (full.rss - empty.rss) / agents / KIB);
    let total_label = format!("kaasd controller: Pss with {} Nodes and idle agents", plan.agents);
    results.record(&total_label, "MiB", false, None, Route::Kaasd, full.pss / MIB);

    let back_label = format!("kaasd controller: all {} agents back after kill -9 and restart", plan.agents);
    let first_label = "kaasd controller: first agent back after kill -9 and restart";
    let mut controller = controller;
    for cycle in 0..plan.reconnects {
        progress(&format!("tunnel: kill -9 and restart of the controller, {} of {}", cycle + 1, plan.reconnects));
        controller.kill().await;
        let restarted = Instant::now();
        controller = ControllerProcess::start(bench, &data_dir, &format!("controller-restart-{cycle}")).await?;
        let first_back = controller.wait_for(1, Duration::from_secs(60)).await?;
        let all_back = controller.wait_for(plan.agents, Duration::from_secs(180)).await?;
        let seconds = |at: Instant| at.saturating_duration_since(restarted).as_secs_f64();
        results.record(&back_label, "s", false, Some(Goal::AtMost(30.0)), Route::Kaasd, seconds(all_back));
        results.record(first_label, "s", false, None, Route::Kaasd, seconds(first_back));
    }
    tokio::time::sleep(plan.settle).await;
    let after = ProcessMemory::read(&[controller.pid])?;
    results.notes.push(format!(
        "kaasd controller (`kaasd controller --sync normal`, SQLite in a temporary data directory, in cp): Pss \
         {:.1} MiB fresh, {:.1} MiB after `kubectl create` of {} Node objects ({create_seconds:.1} s; the memory \
         slope starts here), {:.1} MiB with every agent connected; after the last restart with all agents back \
         {:.1} MiB (RSS {:.1} MiB). Time to all back counts from the new process's spawn (SQLite recovery and \
         startup included) until its log has `node tunnel connected` for every node.",
        fresh.pss / MIB,
        empty.pss / MIB,
        plan.agents,
        full.pss / MIB,
        after.pss / MIB,
        after.rss / MIB
    ));
    drop(agent_processes);
    controller.kill().await;
    Ok(())
}
