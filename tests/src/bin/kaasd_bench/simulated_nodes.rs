//! Simulated nodes for scale work, like kwok: Node objects that report Ready, renew their Leases every 10 s as a
//! kubelet does, mark the pods bound to them Running and Ready without any container, and finish their deletion
//! (the kubelet's final delete with grace 0). They exercise the API server, the scheduler and the controllers at
//! a size no machine here could run for real; they never stand in for a worker in the end-to-end tests.
//!
//! `kaasd-bench scheduler` uses them in-process; `kaasd-bench simulated-nodes --kubeconfig F --nodes N` runs them
//! against any cluster until Ctrl-C.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::Api;
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// Marks a Node as simulated; the pod runner only acts for nodes carrying it.
pub const SIMULATED_LABEL: &str = "kaasd.io/simulated-node";
/// Pods with this label are left Pending-but-bound by the runner: the scheduling case measures the scheduler
/// alone, as upstream's scheduler_perf does (no kubelets there).
pub const NO_KUBELET_LABEL: &str = "kaasd-bench/no-kubelet";
const LEASE_NAMESPACE: &str = "kube-node-lease";
/// A kubelet renews its Lease every 10 s (a quarter of the 40 s lease duration).
const LEASE_RENEW_INTERVAL: Duration = Duration::from_secs(10);
/// Writes in flight for registration, renewals and pod status.
const WRITES_IN_FLIGHT: usize = 32;

#[derive(clap::Args, Debug)]
pub struct SimulatedNodesArgs {
    /// The cluster's kubeconfig (a user allowed to write Nodes, Leases and pod status, e.g. admin.conf).
    #[arg(long)]
    kubeconfig: PathBuf,
    /// Nodes to register.
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// Node names are PREFIX-0, PREFIX-1, …
    #[arg(long, default_value = "simulated")]
    prefix: String,
}

/// Runs simulated nodes against a cluster until Ctrl-C; the Node objects stay (delete them with
/// `kubectl delete node -l kaasd.io/simulated-node`).
pub async fn run(args: SimulatedNodesArgs) -> Result<()> {
    let kubeconfig = kube::config::Kubeconfig::read_from(&args.kubeconfig)
        .with_context(|| format!("cannot read the kubeconfig {}", args.kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    let client = kube::Client::try_from(config)?;
    let nodes = SimulatedNodes::start(client, &args.prefix, args.nodes).await?;
    crate::progress(&format!("{} simulated nodes are Ready; Ctrl-C stops them", args.nodes));
    tokio::signal::ctrl_c().await?;
    drop(nodes);
    Ok(())
}

/// Running simulated nodes; dropping this stops their Leases and pod runner (the Nodes then go Unknown).
pub struct SimulatedNodes {
    cancel: CancellationToken,
}

impl Drop for SimulatedNodes {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl SimulatedNodes {
    /// Registers `count` Ready nodes named `prefix-N` (32 CPUs, 128 GiB, 110 pods each) with their Leases, and
    /// starts renewing the Leases and running the pods bound to them.
    pub async fn start(client: kube::Client, prefix: &str, count: usize) -> Result<SimulatedNodes> {
        let names: Vec<String> = (0..count).map(|index| format!("{prefix}-{index}")).collect();
        futures::stream::iter(names.iter().enumerate())
            .map(|(index, name)| register(&client, name, index))
            .buffer_unordered(WRITES_IN_FLIGHT)
            .try_collect::<Vec<()>>()
            .await?;
        let cancel = CancellationToken::new();
        tokio::spawn(renew_leases(client.clone(), names.clone(), cancel.clone()));
        tokio::spawn(run_pods(client, names.into_iter().collect(), cancel.clone()));
        Ok(SimulatedNodes { cancel })
    }
}

async fn register(client: &kube::Client, name: &str, index: usize) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
            SIMULATED_LABEL: "true",
        }},
    }))?;
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(response)) if response.code == 409 => {}
        Err(error) => return Err(error).with_context(|| format!("registering node {name}")),
    }
    let room = json!({"cpu": "32", "memory": "128Gi", "pods": "110", "ephemeral-storage": "100Gi"});
    let address = format!("10.255.{}.{}", index / 250, index % 250 + 1);
    let status = json!({"status": {
        "capacity": room, "allocatable": room,
        "addresses": [{"type": "InternalIP", "address": address}, {"type": "Hostname", "address": name}],
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                        "message": "simulated node is posting ready status",
                        "lastHeartbeatTime": now(), "lastTransitionTime": now()}],
        "nodeInfo": {"kubeletVersion": "v1.33.0-simulated", "containerRuntimeVersion": "simulated://0",
                     "operatingSystem": "linux", "architecture": "amd64", "kernelVersion": "", "osImage": "",
                     "kubeProxyVersion": "", "machineID": "", "systemUUID": "", "bootID": ""},
    }});
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .with_context(|| format!("reporting node {name} Ready"))?;
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": now()},
    }))?;
    match leases.create(&PostParams::default(), &lease).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(response)) if response.code == 409 => renew(&leases, name).await,
        Err(error) => Err(error).with_context(|| format!("creating the Lease of node {name}")),
    }
}

fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string()
}

async fn renew(leases: &Api<Lease>, name: &str) -> Result<()> {
    let patch = json!({"spec": {"renewTime": now()}});
    leases.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(())
}

async fn renew_leases(client: kube::Client, names: Vec<String>, cancel: CancellationToken) {
    let leases: Api<Lease> = Api::namespaced(client, LEASE_NAMESPACE);
    let mut tick = tokio::time::interval(LEASE_RENEW_INTERVAL);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let renewals = futures::stream::iter(names.clone())
            .map(|name| {
                let leases = leases.clone();
                async move {
                    if let Err(error) = renew(&leases, &name).await {
                        eprintln!("cannot renew the Lease of simulated node {name}: {error:#}");
                    }
                }
            })
            .buffer_unordered(WRITES_IN_FLIGHT)
            .collect::<Vec<()>>();
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = renewals => {}
        }
    }
}

/// What the runner has to do for one pod it saw.
enum Step {
    /// Report it Running and Ready.
    Start(Pod),
    /// It is being deleted: confirm with grace 0, as the kubelet does once its containers stopped.
    Finish(Pod),
}

/// Watches all pods and acts for those bound to one of `nodes`.
async fn run_pods(client: kube::Client, nodes: HashSet<String>, cancel: CancellationToken) {
    let pods: Api<Pod> = Api::all(client.clone());
    let (steps, queued) = tokio::sync::mpsc::unbounded_channel::<Step>();
    let queued = Arc::new(tokio::sync::Mutex::new(queued));
    // Pods already reported Running (by uid), so a later event about them does not write again.
    let started: Arc<Mutex<HashSet<String>>> = Default::default();
    for _ in 0..WRITES_IN_FLIGHT {
        let (client, queued, cancel) = (client.clone(), queued.clone(), cancel.clone());
        tokio::spawn(async move {
            loop {
                let step = tokio::select! {
                    () = cancel.cancelled() => return,
                    step = async { queued.lock().await.recv().await } => step,
                };
                let Some(step) = step else { return };
                if let Err(error) = carry_out(&client, step).await {
                    eprintln!("a simulated node's pod update failed: {error:#}");
                }
            }
        });
    }
    let mut events = std::pin::pin!(watcher::watcher(pods, watcher::Config::default()));
    loop {
        let event = tokio::select! {
            () = cancel.cancelled() => return,
            event = events.next() => event,
        };
        let Some(event) = event else { return };
        let pod = match event {
            Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => pod,
            Ok(watcher::Event::Delete(pod)) => {
                let uid = pod.metadata.uid.unwrap_or_default();
                started.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&uid);
                continue;
            }
            _ => continue,
        };
        let node = pod.spec.as_ref().and_then(|spec| spec.node_name.as_deref()).unwrap_or_default();
        if !nodes.contains(node) {
            continue;
        }
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if pod.metadata.deletion_timestamp.is_some() {
            let _ = steps.send(Step::Finish(pod));
            continue;
        }
        let phase = pod.status.as_ref().and_then(|status| status.phase.as_deref()).unwrap_or("Pending");
        let runs_here = !pod.metadata.labels.as_ref().is_some_and(|labels| labels.contains_key(NO_KUBELET_LABEL));
        if runs_here
            && phase == "Pending"
            && started.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(uid)
        {
            let _ = steps.send(Step::Start(pod));
        }
    }
}

async fn carry_out(client: &kube::Client, step: Step) -> Result<()> {
    let (pod, start) = match step {
        Step::Start(pod) => (pod, true),
        Step::Finish(pod) => (pod, false),
    };
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    if !start {
        let confirm = DeleteParams { grace_period_seconds: Some(0), ..Default::default() };
        match pods.delete(name, &confirm).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => return Ok(()),
            Err(error) => return Err(error.into()),
        }
    }
    let spec = pod.spec.as_ref();
    let at = now();
    let containers: Vec<serde_json::Value> = spec
        .map(|spec| spec.containers.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|container| {
            json!({"name": container.name, "image": container.image, "imageID": "", "ready": true,
                   "started": true, "restartCount": 0, "state": {"running": {"startedAt": at}}})
        })
        .collect();
    let condition = |kind: &str| json!({"type": kind, "status": "True", "lastTransitionTime": at});
    let status = json!({"status": {
        "phase": "Running",
        "startTime": at,
        "conditions": [condition("PodReadyToStartContainers"), condition("Initialized"),
                       condition("ContainersReady"), condition("Ready"), condition("PodScheduled")],
        "containerStatuses": containers,
    }});
    match pods.patch_status(name, &PatchParams::default(), &Patch::Strategic(&status)).await {
        // Deleted meanwhile: nothing left to run.
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(error) => Err(error.into()),
    }
}
