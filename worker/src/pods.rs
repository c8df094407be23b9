//! Pod sync, the kubelet's core: pods bound to this node (watched with a field selector) become CRI sandboxes
//! and containers, and what the runtime reports becomes the pods' status.
//!
//! Each pod has its own worker task that syncs it about once a second (containerd 1.6 has no event stream, so
//! the runtime is polled) and whenever the pod changes. Everything a sync needs is read again from the API cache
//! and the runtime, so a restarted worker picks up running pods where it left them: sandboxes and containers carry
//! the pod's uid and the container's name in their labels. What lives only in memory (crash back-off, image
//! errors) starts over after a restart.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, HostIP, HostPathVolumeSource, Pod, PodCondition, PodIP, PodSpec, PodStatus, Secret, Service,
    ServiceAccount, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::cri::proto;
use crate::cri::Cri;
use crate::images::normalize_reference;
use crate::logs::pod_log_dir;
use crate::network::pod_dns::{resolv_for, NodeDns, Resolv};
use crate::network::CLUSTER_DOMAIN;

/// Labels the worker puts on sandboxes and containers (the kubelet's names, which tools like crictl show).
pub const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";
pub const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";
pub const LABEL_CONTAINER_NAME: &str = "io.kubernetes.container.name";
/// Marks what this node's worker created, so a runtime shared with others (`--cri-socket`) keeps theirs.
pub const LABEL_NODE: &str = "kaasd.io/node";

const SYNC_EVERY: Duration = Duration::from_secs(1);
/// How often configMap, secret and downward API volume files are written again, so edits reach running pods.
const VOLUME_REFRESH_EVERY: Duration = Duration::from_secs(60);
const BACKOFF_START: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// A container that ran this long before exiting starts its back-off over.
const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(600);

/// What pods get from the node's network: how they resolve names, and the Services for their environment.
pub struct PodNetwork {
    pub dns: NodeDns,
    pub services: Store<Service>,
}

/// What pod workers share.
pub struct Context {
    pub client: kube::Client,
    pub cri: Cri,
    pub node_name: String,
    pub data_dir: PathBuf,
    pub host_ips: Vec<IpAddr>,
    pub store: Store<Pod>,
    pub dns: NodeDns,
    /// Every Service the node knows, for the containers' Service environment variables.
    pub services: Store<Service>,
}

impl Context {
    fn pod_dir(&self, uid: &str) -> PathBuf {
        self.data_dir.join("pods").join(uid)
    }
}

/// Watches this node's pods and keeps one worker per pod until `cancel`.
pub async fn run(
    client: kube::Client,
    cri: Cri,
    node_name: String,
    data_dir: PathBuf,
    host_ips: Vec<IpAddr>,
    network: PodNetwork,
    cancel: CancellationToken,
) -> Store<Pod> {
    let PodNetwork { dns, services } = network;
    let (reader, writer) = reflector::store();
    let pods: Api<Pod> = Api::all(client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={node_name}"));
    let changed = Arc::new(Notify::new());
    let stream = reflector::reflector(writer, watcher(pods, config)).default_backoff().touched_objects();
    let wake = changed.clone();
    let watch_cancel = cancel.clone();
    tokio::spawn(async move {
        futures::pin_mut!(stream);
        loop {
            tokio::select! {
                () = watch_cancel.cancelled() => return,
                event = stream.next() => match event {
                    Some(Ok(_)) => wake.notify_one(),
                    Some(Err(error)) => tracing::warn!(error = %error, "watching this node's pods failed; retrying"),
                    None => return,
                },
            }
        }
    });
    let context =
        Arc::new(Context { client, cri, node_name, data_dir, host_ips, store: reader.clone(), dns, services });
    tokio::spawn(supervise(context, changed, cancel));
    reader
}

/// Starts a worker for every pod that has none, and removes what belongs to pods that no longer exist.
async fn supervise(context: Arc<Context>, changed: Arc<Notify>, cancel: CancellationToken) {
    let mut workers: HashMap<String, (Arc<Notify>, tokio::task::JoinHandle<()>)> = HashMap::new();
    let cleaning = Arc::new(Mutex::new(HashSet::new()));
    if context.store.wait_until_ready().await.is_err() {
        return;
    }
    loop {
        workers.retain(|_, (_, handle)| !handle.is_finished());
        let pods = context.store.state();
        let mut live = HashSet::new();
        for pod in &pods {
            let Some(uid) = pod.metadata.uid.clone() else { continue };
            live.insert(uid.clone());
            match workers.get(&uid) {
                Some((wake, _)) => wake.notify_one(),
                None => {
                    let wake = Arc::new(Notify::new());
                    let handle = tokio::spawn(pod_worker(
                        context.clone(),
                        ObjectRef::from_obj(pod.as_ref()),
                        uid.clone(),
                        wake.clone(),
                        cancel.clone(),
                    ));
                    workers.insert(uid, (wake, handle));
                }
            }
        }
        if let Err(error) = collect_orphans(&context, &live, &workers, &cleaning).await {
            tracing::warn!(error = %error, "cannot list the runtime's pod sandboxes; retrying");
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = changed.notified() => {}
            () = tokio::time::sleep(SYNC_EVERY) => {}
        }
    }
}

/// Sandboxes of this node whose pod is gone (deleted while the worker was away, or deleted at once because it
/// had finished): stopped and removed with their containers, volumes and logs.
async fn collect_orphans(
    context: &Arc<Context>,
    live: &HashSet<String>,
    workers: &HashMap<String, (Arc<Notify>, tokio::task::JoinHandle<()>)>,
    cleaning: &Arc<Mutex<HashSet<String>>>,
) -> Result<(), tonic::Status> {
    let sandboxes = list_sandboxes(&context.cri, &context.node_name, None).await?;
    for sandbox in sandboxes {
        let Some(uid) = sandbox.labels.get(LABEL_POD_UID).cloned() else { continue };
        if live.contains(&uid) || workers.contains_key(&uid) {
            continue;
        }
        if !cleaning.lock().expect("lock").insert(sandbox.id.clone()) {
            continue;
        }
        let context = context.clone();
        let cleaning = cleaning.clone();
        tokio::spawn(async move {
            let metadata = sandbox.metadata.clone().unwrap_or_default();
            tracing::info!(pod.uid = %uid, pod.name = %metadata.name, "removing the sandbox of a pod that is gone");
            if let Err(error) = remove_sandbox(&context.cri, &sandbox.id, 0).await {
                tracing::warn!(error = %error, "cannot remove sandbox {}", sandbox.id);
            } else {
                let _ = std::fs::remove_dir_all(context.pod_dir(&uid));
                let _ = std::fs::remove_dir_all(pod_log_dir(&metadata.namespace, &metadata.name, &uid));
            }
            cleaning.lock().expect("lock").remove(&sandbox.id);
        });
    }
    Ok(())
}

/// Where one run of a container writes its termination message: a file of the node's, mounted at the container's
/// terminationMessagePath (`/dev/termination-log` by default).
fn termination_message_file(context: &Context, pod: &Pod, container: &str, attempt: u32) -> PathBuf {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    context.pod_dir(uid).join("termination").join(format!("{container}-{attempt}"))
}

fn prepare_termination_message_file(path: &Path) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, b"")?;
    // Writable whatever user the container runs as.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
}

/// The termination message of an exited container, as the kubelet reads it: the file's first 4 KiB; with
/// `terminationMessagePolicy: FallbackToLogsOnError`, a failure with an empty file gives the log's last 80 lines
/// (at most 2 KiB) instead.
fn termination_message(
    context: &Context,
    pod: &Pod,
    container: &Container,
    status: &proto::ContainerStatus,
) -> Option<String> {
    const FILE_LIMIT: usize = 4096;
    const LOG_LINES: usize = 80;
    const LOG_LIMIT: usize = 2048;
    let attempt = status.metadata.as_ref().map_or(0, |metadata| metadata.attempt);
    let file = termination_message_file(context, pod, &container.name, attempt);
    let mut text = std::fs::read(&file).unwrap_or_default();
    text.truncate(FILE_LIMIT);
    let fallback = container.termination_message_policy.as_deref() == Some("FallbackToLogsOnError");
    if text.is_empty() && fallback && status.exit_code != 0 {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        let log = pod_log_dir(namespace, name, uid).join(&container.name).join(format!("{attempt}.log"));
        let records = std::fs::read_to_string(log).unwrap_or_default();
        // CRI log lines: `<time> <stream> <P|F> <text>`; partial lines (P) continue on the next record.
        let mut lines = Vec::new();
        let mut current = String::new();
        for record in records.lines() {
            let mut fields = record.splitn(4, ' ');
            let (_, _, tag, body) = (fields.next(), fields.next(), fields.next(), fields.next().unwrap_or(""));
            current.push_str(body);
            if tag != Some("P") {
                lines.push(std::mem::take(&mut current));
            }
        }
        let start = lines.len().saturating_sub(LOG_LINES);
        let mut tail = lines[start..].join("\n");
        if !tail.is_empty() {
            tail.push('\n');
        }
        let cut = tail.len().saturating_sub(LOG_LIMIT);
        let cut = (cut..tail.len()).find(|index| tail.is_char_boundary(*index)).unwrap_or(tail.len());
        text = tail.as_bytes()[cut..].to_vec();
    }
    Some(String::from_utf8_lossy(&text).into_owned()).filter(|text| !text.is_empty())
}

/// Runs the preStop hooks of the pod's running containers, side by side, within `limit` (the grace period).
async fn run_pre_stop_hooks(context: &Context, pod: &Pod, uid: &str, limit: Duration) -> Result<(), SyncError> {
    let spec = pod.spec.clone().unwrap_or_default();
    let containers = list_containers(&context.cri, None, Some(uid)).await?;
    let pod_ip = pod.status.as_ref().and_then(|status| status.pod_ip.clone());
    let hooks = spec.init_containers.iter().flatten().chain(&spec.containers).filter_map(|container| {
        let handler = container.lifecycle.as_ref()?.pre_stop.as_ref()?;
        let running = containers.iter().find(|c| {
            c.labels.get(LABEL_CONTAINER_NAME) == Some(&container.name)
                && c.state == proto::ContainerState::ContainerRunning as i32
        })?;
        let (cri, pod_ip) = (context.cri.clone(), pod_ip.clone());
        Some(async move {
            let result = tokio::time::timeout(
                limit,
                crate::probes::run_hook(&cri, &running.id, container, handler, pod_ip.as_deref(), limit),
            )
            .await
            .unwrap_or_else(|_| Err(format!("still running after the grace period of {limit:?}")));
            if let Err(error) = result {
                tracing::info!(
                    pod.name = pod.metadata.name.as_deref().unwrap_or_default(),
                    container = %container.name,
                    error = %error,
                    "preStop hook failed"
                );
            }
        })
    });
    futures::future::join_all(hooks).await;
    Ok(())
}

/// Stops a sandbox's containers (giving them `grace` seconds), the sandbox, and removes it.
async fn remove_sandbox(cri: &Cri, sandbox_id: &str, grace: i64) -> Result<(), tonic::Status> {
    let containers = list_containers(cri, Some(sandbox_id), None).await?;
    let stops = containers.iter().filter(|c| c.state == proto::ContainerState::ContainerRunning as i32).map(|c| {
        let mut runtime = cri.runtime.clone();
        let request = proto::StopContainerRequest { container_id: c.id.clone(), timeout: grace };
        async move { runtime.stop_container(request).await }
    });
    for result in futures::future::join_all(stops).await {
        result?;
    }
    let mut runtime = cri.runtime.clone();
    runtime.stop_pod_sandbox(proto::StopPodSandboxRequest { pod_sandbox_id: sandbox_id.into() }).await?;
    runtime.remove_pod_sandbox(proto::RemovePodSandboxRequest { pod_sandbox_id: sandbox_id.into() }).await?;
    Ok(())
}

async fn list_sandboxes(cri: &Cri, node: &str, uid: Option<&str>) -> Result<Vec<proto::PodSandbox>, tonic::Status> {
    let mut labels = HashMap::from([(LABEL_NODE.to_string(), node.to_string())]);
    if let Some(uid) = uid {
        labels.insert(LABEL_POD_UID.into(), uid.into());
    }
    let filter = proto::PodSandboxFilter { label_selector: labels, ..Default::default() };
    let answer = cri.runtime.clone().list_pod_sandbox(proto::ListPodSandboxRequest { filter: Some(filter) }).await?;
    Ok(answer.into_inner().items)
}

async fn list_containers(
    cri: &Cri,
    sandbox: Option<&str>,
    uid: Option<&str>,
) -> Result<Vec<proto::Container>, tonic::Status> {
    let mut filter = proto::ContainerFilter::default();
    if let Some(sandbox) = sandbox {
        filter.pod_sandbox_id = sandbox.into();
    }
    if let Some(uid) = uid {
        filter.label_selector.insert(LABEL_POD_UID.into(), uid.into());
    }
    let answer = cri.runtime.clone().list_containers(proto::ListContainersRequest { filter: Some(filter) }).await?;
    Ok(answer.into_inner().containers)
}

/// What one pod's worker remembers between syncs.
#[derive(Default)]
struct PodMemory {
    /// Why a container is waiting, when the runtime cannot tell: image errors, back-off, create errors.
    waiting: HashMap<String, (String, String)>,
    /// Per container: the finish time of the exit the current back-off is for, and its length.
    backoff: HashMap<String, (i64, Duration)>,
    /// Per container: when an image error may be retried, and the next delay.
    image_backoff: HashMap<String, (tokio::time::Instant, Duration)>,
    /// When a failed sandbox may be tried again, and the next delay.
    sandbox_backoff: Option<(tokio::time::Instant, Duration, String)>,
    /// Readiness and liveness probe progress per container name.
    readiness: HashMap<String, crate::probes::ProbeState>,
    liveness: HashMap<String, crate::probes::ProbeState>,
    startup: HashMap<String, crate::probes::ProbeState>,
    /// Running containers whose startup probe has not passed yet (`started: false` in their status).
    not_started: HashSet<String>,
    /// The volumes prepared for a sandbox, and when (configMap and secret contents are refreshed each minute).
    volumes: Option<(String, HashMap<String, PathBuf>, tokio::time::Instant)>,
    /// ServiceAccount tokens per volume path, and when to renew each (at 80 % of its lifetime, as the kubelet).
    tokens: HashMap<String, (String, tokio::time::Instant)>,
    /// The status last written, to write only changes.
    posted: Option<serde_json::Value>,
    /// Once the pod is being deleted: its preStop hooks have run, and this many seconds of grace are left.
    pre_stop_done: Option<i64>,
}

async fn pod_worker(
    context: Arc<Context>,
    key: ObjectRef<Pod>,
    uid: String,
    wake: Arc<Notify>,
    cancel: CancellationToken,
) {
    let mut memory = PodMemory::default();
    loop {
        let Some(pod) = context.store.get(&key).filter(|pod| pod.metadata.uid.as_deref() == Some(uid.as_str())) else {
            return;
        };
        match sync_pod(&context, &pod, &uid, &mut memory).await {
            Ok(true) => return,
            Ok(false) => {}
            Err(error) => tracing::warn!(
                pod.namespace = key.namespace.as_deref().unwrap_or_default(),
                pod.name = %key.name,
                error = %error,
                "cannot sync the pod; retrying"
            ),
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = wake.notified() => {}
            () = tokio::time::sleep(SYNC_EVERY) => {}
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum SyncError {
    #[error("runtime: {0}")]
    Runtime(#[from] tonic::Status),
    #[error("API: {0}")]
    Api(#[from] kube::Error),
    #[error("{0}")]
    Other(String),
}

/// One sync; true when the pod is finished with (deleted).
async fn sync_pod(context: &Context, pod: &Pod, uid: &str, memory: &mut PodMemory) -> Result<bool, SyncError> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let sandboxes = list_sandboxes(&context.cri, &context.node_name, Some(uid)).await?;

    if pod.metadata.deletion_timestamp.is_some() {
        let mut grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(30).max(0);
        if grace > 0 && memory.pre_stop_done.is_none() {
            let started = tokio::time::Instant::now();
            run_pre_stop_hooks(context, pod, uid, Duration::from_secs(grace as u64)).await?;
            // As the kubelet: what is left of the grace period, and at least 2 s, for the containers to stop.
            let used = started.elapsed().as_secs() as i64;
            grace = (grace - used).max(2);
            memory.pre_stop_done = Some(grace);
        }
        let grace = memory.pre_stop_done.unwrap_or(grace);
        for sandbox in &sandboxes {
            remove_sandbox(&context.cri, &sandbox.id, grace).await?;
        }
        let _ = std::fs::remove_dir_all(context.pod_dir(uid));
        let _ = std::fs::remove_dir_all(pod_log_dir(&namespace, &name, uid));
        let pods: Api<Pod> = Api::namespaced(context.client.clone(), &namespace);
        let options = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions { uid: Some(uid.to_string()), resource_version: None }),
            ..Default::default()
        };
        match pods.delete(&name, &options).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {}
            Err(error) => return Err(error.into()),
        }
        tracing::info!(pod.namespace = %namespace, pod.name = %name, "pod stopped and deleted");
        return Ok(true);
    }

    let phase = pod.status.as_ref().and_then(|status| status.phase.clone()).unwrap_or_default();
    if phase == "Succeeded" || phase == "Failed" {
        // A finished pod keeps its containers (for logs) but not its sandbox: the network address goes back.
        for sandbox in sandboxes.iter().filter(|s| s.state == proto::PodSandboxState::SandboxReady as i32) {
            context
                .cri
                .runtime
                .clone()
                .stop_pod_sandbox(proto::StopPodSandboxRequest { pod_sandbox_id: sandbox.id.clone() })
                .await?;
        }
        return Ok(false);
    }

    let log_dir = pod_log_dir(&namespace, &name, uid);
    let restart_policy = spec.restart_policy.clone().unwrap_or_else(|| "Always".into());
    let ready_sandbox = sandboxes
        .iter()
        .filter(|s| s.state == proto::PodSandboxState::SandboxReady as i32)
        .max_by_key(|s| s.created_at)
        .cloned();
    let sandbox_config = sandbox_config(context, pod, uid, &log_dir, sandboxes.len() as u32);
    let mut sandbox_error = None;
    let sandbox_id = match ready_sandbox {
        Some(sandbox) => Some(sandbox.id),
        // A Never pod whose sandbox died does not start again; its containers' exits decide its phase.
        None if restart_policy == "Never" && !list_containers(&context.cri, None, Some(uid)).await?.is_empty() => None,
        None if memory.sandbox_backoff.as_ref().is_some_and(|(until, _, _)| tokio::time::Instant::now() < *until) => {
            sandbox_error = memory.sandbox_backoff.as_ref().map(|(_, _, error)| error.clone());
            None
        }
        None => {
            // Sandboxes that failed to start hold nothing; a new one replaces them. (Dead ones with containers stay,
            // for the restart count and the previous logs.)
            for dead in &sandboxes {
                if list_containers(&context.cri, Some(&dead.id), None).await?.is_empty() {
                    let _ = remove_sandbox(&context.cri, &dead.id, 0).await;
                }
            }
            std::fs::create_dir_all(&log_dir)
                .map_err(|error| SyncError::Other(format!("cannot create {}: {error}", log_dir.display())))?;
            let request =
                proto::RunPodSandboxRequest { config: Some(sandbox_config.clone()), runtime_handler: String::new() };
            match context.cri.runtime.clone().run_pod_sandbox(request).await {
                Ok(answer) => {
                    tracing::info!(pod.namespace = %namespace, pod.name = %name, "started the pod sandbox");
                    memory.sandbox_backoff = None;
                    Some(answer.into_inner().pod_sandbox_id)
                }
                Err(error) => {
                    let message = format!("cannot start the pod sandbox: {}", error.message());
                    tracing::warn!(pod.namespace = %namespace, pod.name = %name, error = %message, "retrying later");
                    let delay = memory
                        .sandbox_backoff
                        .as_ref()
                        .map_or(Duration::from_secs(1), |(_, delay, _)| (*delay * 2).min(BACKOFF_START * 3));
                    memory.sandbox_backoff = Some((tokio::time::Instant::now() + delay, delay, message.clone()));
                    sandbox_error = Some(message);
                    None
                }
            }
        }
    };
    let mut network = None;
    if let Some(sandbox_id) = &sandbox_id {
        let answer = context
            .cri
            .runtime
            .clone()
            .pod_sandbox_status(proto::PodSandboxStatusRequest { pod_sandbox_id: sandbox_id.clone(), verbose: false })
            .await?
            .into_inner();
        network = answer.status.and_then(|status| status.network);
    }
    let pod_ips: Vec<String> = network
        .iter()
        .flat_map(|network| {
            std::iter::once(network.ip.clone()).chain(network.additional_ips.iter().map(|ip| ip.ip.clone()))
        })
        .filter(|ip| !ip.is_empty())
        .collect();

    let mut volumes = None;
    if let (Some(sandbox_id), None) = (&sandbox_id, &sandbox_error) {
        let fresh = memory
            .volumes
            .as_ref()
            .filter(|(prepared_for, _, at)| prepared_for == sandbox_id && at.elapsed() < VOLUME_REFRESH_EVERY);
        match fresh {
            Some((_, paths, _)) => volumes = Some(paths.clone()),
            None => match prepare_volumes(context, pod, uid, &mut memory.tokens).await {
                Ok(paths) => {
                    memory.volumes = Some((sandbox_id.clone(), paths.clone(), tokio::time::Instant::now()));
                    volumes = Some(paths);
                }
                Err(error) => sandbox_error = Some(format!("cannot prepare volumes: {error}")),
            },
        }
        if let Some(volumes) = &volumes {
            let containers = list_containers(&context.cri, None, Some(uid)).await?;
            let sandbox = InSandbox {
                containers: &containers,
                sandbox_id,
                config: &sandbox_config,
                volumes,
                pod_ip: pod_ips.first().map(String::as_str),
            };
            let initialized = sync_init_containers(context, pod, &sandbox, &restart_policy, memory).await?;
            for container in spec.containers.iter().filter(|_| initialized) {
                sync_container(context, pod, container, &sandbox, &restart_policy, memory).await?;
            }
        }
    }

    let containers = list_containers(&context.cri, None, Some(uid)).await?;
    let mut observed = Observed {
        sandbox_ready: sandbox_id.is_some(),
        pod_ips,
        containers: HashMap::new(),
        waiting: memory.waiting.clone(),
        sandbox_error,
        unready: HashSet::new(),
        not_started: HashSet::new(),
        messages: HashMap::new(),
    };
    for container in spec.init_containers.iter().flatten().chain(&spec.containers) {
        let mut mine: Vec<&proto::Container> =
            containers.iter().filter(|c| c.labels.get(LABEL_CONTAINER_NAME) == Some(&container.name)).collect();
        mine.sort_by_key(|c| (c.metadata.as_ref().map_or(0, |m| m.attempt), c.created_at));
        let mut statuses = Vec::new();
        for c in mine.iter().rev().take(2) {
            let answer = context
                .cri
                .runtime
                .clone()
                .container_status(proto::ContainerStatusRequest { container_id: c.id.clone(), verbose: false })
                .await?;
            if let Some(status) = answer.into_inner().status {
                statuses.push(status);
            }
        }
        if let Some(latest) = statuses.first().filter(|s| s.state == proto::ContainerState::ContainerRunning as i32) {
            let pod_ip = observed.pod_ips.first().map(String::as_str);
            if !probe(context, pod, container, latest, pod_ip, memory).await {
                observed.unready.insert(container.name.clone());
            }
            if memory.not_started.contains(&container.name) {
                observed.not_started.insert(container.name.clone());
            }
        }
        for status in statuses.iter().filter(|s| s.state == proto::ContainerState::ContainerExited as i32) {
            if let Some(message) = termination_message(context, pod, container, status) {
                observed.messages.insert(status.id.clone(), message);
            }
        }
        let mut statuses = statuses.into_iter();
        observed.containers.insert(container.name.clone(), (statuses.next(), statuses.next()));
    }
    let host_ip = context.host_ips.first().map(ToString::to_string);
    let status = compute_status(pod, &observed, host_ip.as_deref(), jiff::Timestamp::now());
    let value = serde_json::to_value(&status).map_err(|error| SyncError::Other(error.to_string()))?;
    let current = pod.status.as_ref().map(|status| serde_json::to_value(status).unwrap_or_default());
    if memory.posted.as_ref() != Some(&value) || !status_matches(current.as_ref(), &value) {
        let pods: Api<Pod> = Api::namespaced(context.client.clone(), &namespace);
        pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(serde_json::json!({"status": value}))).await?;
        memory.posted = Some(value);
    }
    Ok(false)
}

/// Runs the container's probes when due; returns whether it counts as ready. A liveness verdict of failure stops
/// the container, which the next sync restarts by the restart policy.
async fn probe(
    context: &Context,
    pod: &Pod,
    container: &Container,
    latest: &proto::ContainerStatus,
    pod_ip: Option<&str>,
    memory: &mut PodMemory,
) -> bool {
    use crate::probes::{past_initial_delay, run, ProbeState};
    let now = tokio::time::Instant::now();
    let grace = pod.spec.as_ref().and_then(|spec| spec.termination_grace_period_seconds).unwrap_or(30);
    if let Some(startup) = &container.startup_probe {
        // Until the startup probe has passed once, the container has not started: liveness and readiness wait,
        // and failureThreshold failures in a row restart it.
        let state = memory.startup.entry(container.name.clone()).or_insert_with(|| ProbeState::new(&latest.id));
        if state.container_id != latest.id {
            *state = ProbeState::new(&latest.id);
        }
        if !state.passing {
            if now >= state.next && past_initial_delay(startup, latest.started_at) {
                let result = run(&context.cri, &latest.id, container, startup, pod_ip).await;
                match state.record(startup, result.is_ok()) {
                    Some(true) => state.passing = true,
                    Some(false) => {
                        tracing::info!(
                            pod.name = pod.metadata.name.as_deref().unwrap_or_default(),
                            container = %container.name,
                            reason = %result.err().unwrap_or_default(),
                            "startup probe failed; restarting the container"
                        );
                        let request = proto::StopContainerRequest { container_id: latest.id.clone(), timeout: grace };
                        let _ = context.cri.runtime.clone().stop_container(request).await;
                        memory.startup.remove(&container.name);
                    }
                    None => {}
                }
            }
            if !memory.startup.get(&container.name).is_some_and(|state| state.passing) {
                memory.not_started.insert(container.name.clone());
                return false;
            }
        }
    }
    memory.not_started.remove(&container.name);
    if let Some(liveness) = &container.liveness_probe {
        let state = memory.liveness.entry(container.name.clone()).or_insert_with(|| ProbeState::new(&latest.id));
        if state.container_id != latest.id {
            *state = ProbeState::new(&latest.id);
        }
        if now >= state.next && past_initial_delay(liveness, latest.started_at) {
            let result = run(&context.cri, &latest.id, container, liveness, pod_ip).await;
            if let Some(false) = state.record(liveness, result.is_ok()) {
                tracing::info!(
                    pod.name = pod.metadata.name.as_deref().unwrap_or_default(),
                    container = %container.name,
                    reason = %result.err().unwrap_or_default(),
                    "liveness probe failed; restarting the container"
                );
                let request = proto::StopContainerRequest { container_id: latest.id.clone(), timeout: grace };
                let _ = context.cri.runtime.clone().stop_container(request).await;
                memory.liveness.remove(&container.name);
                return false;
            }
        }
    }
    let Some(readiness) = &container.readiness_probe else { return true };
    let state = memory.readiness.entry(container.name.clone()).or_insert_with(|| ProbeState::new(&latest.id));
    if state.container_id != latest.id {
        *state = ProbeState::new(&latest.id);
    }
    if now >= state.next && past_initial_delay(readiness, latest.started_at) {
        let result = run(&context.cri, &latest.id, container, readiness, pod_ip).await;
        if let Some(verdict) = state.record(readiness, result.is_ok()) {
            state.passing = verdict;
        }
    }
    state.passing
}

/// Whether the pod's stored status already has every field of `wanted` (it may have more, e.g. qosClass).
fn status_matches(current: Option<&serde_json::Value>, wanted: &serde_json::Value) -> bool {
    let Some(current) = current else { return false };
    wanted.as_object().is_some_and(|fields| fields.iter().all(|(key, value)| current.get(key) == Some(value)))
}

/// Runs the init containers in order, as the kubelet does: each must have exited 0 in the current sandbox before
/// the next starts (a failure is retried with back-off unless the pod's restartPolicy is Never, which fails the
/// pod); a sidecar (an init container with `restartPolicy: Always`) only has to have started, and is kept running
/// next to the app containers. Returns whether all are through, so the app containers may start.
async fn sync_init_containers(
    context: &Context,
    pod: &Pod,
    sandbox: &InSandbox<'_>,
    restart_policy: &str,
    memory: &mut PodMemory,
) -> Result<bool, SyncError> {
    let InSandbox { containers, sandbox_id, .. } = *sandbox;
    let init_containers = pod.spec.as_ref().and_then(|spec| spec.init_containers.as_ref());
    for container in init_containers.into_iter().flatten() {
        let latest = containers
            .iter()
            .filter(|c| c.labels.get(LABEL_CONTAINER_NAME) == Some(&container.name))
            .max_by_key(|c| (c.metadata.as_ref().map_or(0, |m| m.attempt), c.created_at));
        let in_this_sandbox = latest.filter(|c| c.pod_sandbox_id == sandbox_id);
        if container.restart_policy.as_deref() == Some("Always") {
            sync_container(context, pod, container, sandbox, "Always", memory).await?;
            // Started means running with its startup probe (if any) passed once.
            if in_this_sandbox.is_none() || memory.not_started.contains(&container.name) {
                return Ok(false);
            }
            continue;
        }
        let exited = |c: &&proto::Container| c.state == proto::ContainerState::ContainerExited as i32;
        if let Some(done) = in_this_sandbox.filter(exited) {
            let exit_code = context
                .cri
                .runtime
                .clone()
                .container_status(proto::ContainerStatusRequest { container_id: done.id.clone(), verbose: false })
                .await?
                .into_inner()
                .status
                .map_or(-1, |status| status.exit_code);
            if exit_code == 0 {
                continue;
            }
        }
        // Not run yet in this sandbox, running, or failed: a failure is retried unless the pod never restarts, and
        // one that succeeded in an earlier sandbox runs again in the new one.
        let policy = match (restart_policy, latest.is_some() && in_this_sandbox.is_none()) {
            (_, true) => "Always",
            ("Never", false) => "Never",
            (_, false) => "OnFailure",
        };
        sync_container(context, pod, container, sandbox, policy, memory).await?;
        return Ok(false);
    }
    Ok(true)
}

/// What starting a container in the pod's current sandbox needs: the pod's runtime containers (every sandbox's), the
/// sandbox and its config, the prepared volumes, and the pod's address.
#[derive(Clone, Copy)]
struct InSandbox<'a> {
    containers: &'a [proto::Container],
    sandbox_id: &'a str,
    config: &'a proto::PodSandboxConfig,
    volumes: &'a HashMap<String, PathBuf>,
    pod_ip: Option<&'a str>,
}

/// Starts, restarts or leaves alone one container, by its runtime state and the restart policy.
async fn sync_container(
    context: &Context,
    pod: &Pod,
    container: &Container,
    sandbox: &InSandbox<'_>,
    restart_policy: &str,
    memory: &mut PodMemory,
) -> Result<(), SyncError> {
    let InSandbox { containers, sandbox_id, config: sandbox_config, volumes, pod_ip } = *sandbox;
    let name = &container.name;
    let latest = containers
        .iter()
        .filter(|c| c.labels.get(LABEL_CONTAINER_NAME) == Some(name))
        .max_by_key(|c| (c.metadata.as_ref().map_or(0, |m| m.attempt), c.created_at));
    let attempt = match latest {
        None => 0,
        Some(c) if c.state == proto::ContainerState::ContainerRunning as i32 && c.pod_sandbox_id == sandbox_id => {
            memory.waiting.remove(name);
            return Ok(());
        }
        Some(c) if c.state == proto::ContainerState::ContainerCreated as i32 && c.pod_sandbox_id == sandbox_id => {
            let mut runtime = context.cri.runtime.clone();
            runtime.start_container(proto::StartContainerRequest { container_id: c.id.clone() }).await?;
            return Ok(());
        }
        Some(c) => {
            let status = context
                .cri
                .runtime
                .clone()
                .container_status(proto::ContainerStatusRequest { container_id: c.id.clone(), verbose: false })
                .await?
                .into_inner()
                .status
                .unwrap_or_default();
            let sandbox_changed = c.pod_sandbox_id != sandbox_id;
            let wanted = match restart_policy {
                "Never" => false,
                "OnFailure" => status.exit_code != 0,
                _ => true,
            };
            if !wanted && !sandbox_changed {
                memory.waiting.remove(name);
                return Ok(());
            }
            if !wanted && sandbox_changed && status.exit_code == 0 {
                return Ok(());
            }
            // Crash back-off: the first restart is immediate, then 10 s doubling up to 5 min.
            let now = jiff::Timestamp::now().as_nanosecond() as i64;
            let ran = Duration::from_nanos((status.finished_at - status.started_at).max(0) as u64);
            let delay = match memory.backoff.get(name).copied() {
                None => Duration::ZERO,
                Some((exit, delay)) if exit == status.finished_at => delay,
                Some(_) if ran >= BACKOFF_RESET_AFTER => BACKOFF_START,
                Some((_, delay)) if delay.is_zero() => BACKOFF_START,
                Some((_, delay)) => (delay * 2).min(BACKOFF_MAX),
            };
            memory.backoff.insert(name.clone(), (status.finished_at, delay));
            if now < status.finished_at + delay.as_nanos() as i64 {
                let message = format!(
                    "back-off {}s restarting failed container={name} pod={}_{}",
                    delay.as_secs(),
                    pod.metadata.name.as_deref().unwrap_or_default(),
                    pod.metadata.namespace.as_deref().unwrap_or_default(),
                );
                memory.waiting.insert(name.clone(), ("CrashLoopBackOff".into(), message));
                return Ok(());
            }
            c.metadata.as_ref().map_or(0, |m| m.attempt) + 1
        }
    };
    let image = match ensure_image(context, pod, container, memory).await? {
        Some(image) => image,
        None => return Ok(()),
    };
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let env = environment(pod, container, pod_ip, context, &namespace).await;
    let mut config = container_config(pod, container, attempt, &image, volumes, env)?;
    let message_file = termination_message_file(context, pod, name, attempt);
    prepare_termination_message_file(&message_file)
        .map_err(|error| SyncError::Other(format!("cannot create {}: {error}", message_file.display())))?;
    config.mounts.push(proto::Mount {
        container_path: container.termination_message_path.clone().unwrap_or_else(|| "/dev/termination-log".into()),
        host_path: message_file.display().to_string(),
        ..Default::default()
    });
    if let Some(hosts_file) = write_hosts_file(context, pod, container, pod_ip)? {
        config.mounts.push(proto::Mount {
            container_path: "/etc/hosts".into(),
            host_path: hosts_file.display().to_string(),
            ..Default::default()
        });
    }
    std::fs::create_dir_all(Path::new(&sandbox_config.log_directory).join(name))
        .map_err(|error| SyncError::Other(format!("cannot create the container's log directory: {error}")))?;
    let request = proto::CreateContainerRequest {
        pod_sandbox_id: sandbox_id.into(),
        config: Some(config),
        sandbox_config: Some(sandbox_config.clone()),
    };
    let mut runtime = context.cri.runtime.clone();
    let id = match runtime.create_container(request).await {
        Ok(answer) => answer.into_inner().container_id,
        Err(error) => {
            memory.waiting.insert(name.clone(), ("CreateContainerError".into(), error.message().to_string()));
            return Ok(());
        }
    };
    if let Err(error) = runtime.start_container(proto::StartContainerRequest { container_id: id.clone() }).await {
        memory.waiting.insert(name.clone(), ("RunContainerError".into(), error.message().to_string()));
        return Ok(());
    }
    memory.waiting.remove(name);
    if let Some(handler) = container.lifecycle.as_ref().and_then(|lifecycle| lifecycle.post_start.as_ref()) {
        // As the kubelet: the hook runs to its end before the container counts as started; if it fails, the
        // container is killed and the restart policy decides what follows.
        let grace = pod.spec.as_ref().and_then(|spec| spec.termination_grace_period_seconds).unwrap_or(30);
        let limit = Duration::from_secs(grace.max(1) as u64);
        if let Err(error) = crate::probes::run_hook(&context.cri, &id, container, handler, pod_ip, limit).await {
            tracing::info!(
                pod.name = pod.metadata.name.as_deref().unwrap_or_default(),
                container = %name,
                error = %error,
                "postStart hook failed; killing the container"
            );
            let _ = runtime.stop_container(proto::StopContainerRequest { container_id: id.clone(), timeout: 0 }).await;
        }
    }
    tracing::info!(
        pod.namespace = pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.name = pod.metadata.name.as_deref().unwrap_or_default(),
        container = %name,
        attempt,
        "started the container"
    );
    Ok(())
}

/// The image's id in the runtime, or None (with the reason recorded) when it is not there.
async fn ensure_image(
    context: &Context,
    pod: &Pod,
    container: &Container,
    memory: &mut PodMemory,
) -> Result<Option<String>, SyncError> {
    let name = &container.name;
    let reference = normalize_reference(container.image.as_deref().unwrap_or_default());
    let policy = container.image_pull_policy.clone().unwrap_or_else(|| "IfNotPresent".into());
    let spec = proto::ImageSpec { image: reference.clone(), ..Default::default() };
    let mut images = context.cri.images.clone();
    let present = images
        .image_status(proto::ImageStatusRequest { image: Some(spec.clone()), verbose: false })
        .await?
        .into_inner()
        .image
        .map(|image| image.id);
    if let Some(id) = present.filter(|id| !id.is_empty()) {
        memory.image_backoff.remove(name);
        return Ok(Some(id));
    }
    let hint = format!(
        "image {reference:?} is not on node {node:?}; import it there with `kaasd images import FILE` (an OCI or \
         docker-save archive), or put the archive in the worker's <data-dir>/images/",
        node = context.node_name
    );
    if policy == "Never" {
        memory.waiting.insert(name.clone(), ("ErrImageNeverPull".into(), hint));
        return Ok(None);
    }
    let now = tokio::time::Instant::now();
    if let Some((until, _)) = memory.image_backoff.get(name) {
        if now < *until {
            let message = format!("Back-off pulling image {reference:?}: {hint}");
            memory.waiting.insert(name.clone(), ("ImagePullBackOff".into(), message));
            return Ok(None);
        }
    }
    // Pulling from a registry is tried in case this machine can reach one; the usual way is an import.
    let pull = proto::PullImageRequest { image: Some(spec), auth: None, sandbox_config: None };
    let mut request = tonic::Request::new(pull);
    request.set_timeout(Duration::from_secs(30));
    match images.pull_image(request).await {
        Ok(answer) => {
            tracing::info!(pod.name = pod.metadata.name.as_deref().unwrap_or_default(), image = %reference, "pulled");
            memory.image_backoff.remove(name);
            Ok(Some(answer.into_inner().image_ref))
        }
        Err(error) => {
            let delay =
                memory.image_backoff.get(name).map_or(BACKOFF_START, |(_, delay)| (*delay * 2).min(BACKOFF_MAX));
            memory.image_backoff.insert(name.clone(), (now + delay, delay));
            let message = format!("{hint} (pulling it failed: {})", error.message());
            memory.waiting.insert(name.clone(), ("ErrImagePull".into(), message));
            Ok(None)
        }
    }
}

fn base_labels(pod: &Pod, uid: &str, node: &str) -> HashMap<String, String> {
    HashMap::from([
        (LABEL_POD_NAME.into(), pod.metadata.name.clone().unwrap_or_default()),
        (LABEL_POD_NAMESPACE.into(), pod.metadata.namespace.clone().unwrap_or_default()),
        (LABEL_POD_UID.into(), uid.to_string()),
        (LABEL_NODE.into(), node.to_string()),
    ])
}

fn namespace_options(pod: &Pod) -> proto::NamespaceOption {
    let spec = pod.spec.clone().unwrap_or_default();
    let node_or_pod =
        |host: Option<bool>| if host == Some(true) { proto::NamespaceMode::Node } else { proto::NamespaceMode::Pod };
    proto::NamespaceOption {
        network: node_or_pod(spec.host_network) as i32,
        pid: if spec.host_pid == Some(true) {
            proto::NamespaceMode::Node as i32
        } else if spec.share_process_namespace == Some(true) {
            proto::NamespaceMode::Pod as i32
        } else {
            proto::NamespaceMode::Container as i32
        },
        ipc: node_or_pod(spec.host_ipc) as i32,
        target_id: String::new(),
    }
}

fn sandbox_config(context: &Context, pod: &Pod, uid: &str, log_dir: &Path, attempt: u32) -> proto::PodSandboxConfig {
    let spec = pod.spec.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let host_network = spec.host_network == Some(true);
    let mut labels = base_labels(pod, uid, &context.node_name);
    for (key, value) in pod.metadata.labels.clone().unwrap_or_default() {
        labels.entry(key).or_insert(value);
    }
    let port_mappings = spec
        .containers
        .iter()
        .flat_map(|container| container.ports.clone().unwrap_or_default())
        .filter(|port| port.host_port.is_some_and(|port| port > 0))
        .map(|port| proto::PortMapping {
            protocol: match port.protocol.as_deref() {
                Some("UDP") => proto::Protocol::Udp as i32,
                Some("SCTP") => proto::Protocol::Sctp as i32,
                _ => proto::Protocol::Tcp as i32,
            },
            container_port: port.container_port,
            host_port: port.host_port.unwrap_or_default(),
            host_ip: port.host_ip.unwrap_or_default(),
        })
        .collect();
    let hostname = spec.hostname.clone().unwrap_or_else(|| name.chars().take(63).collect());
    proto::PodSandboxConfig {
        metadata: Some(proto::PodSandboxMetadata {
            name,
            uid: uid.into(),
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            attempt,
        }),
        hostname: if host_network { String::new() } else { hostname },
        log_directory: log_dir.display().to_string(),
        dns_config: pod_dns_config(&spec, pod, context),
        port_mappings,
        labels,
        annotations: pod.metadata.annotations.clone().unwrap_or_default().into_iter().collect(),
        linux: Some(proto::LinuxPodSandboxConfig {
            cgroup_parent: String::new(),
            security_context: Some(proto::LinuxSandboxSecurityContext {
                namespace_options: Some(namespace_options(pod)),
                privileged: spec
                    .containers
                    .iter()
                    .any(|c| c.security_context.as_ref().and_then(|s| s.privileged) == Some(true)),
                ..Default::default()
            }),
            sysctls: HashMap::new(),
        }),
    }
}

/// The pod's resolver settings (`dnsPolicy`, `dnsConfig`); `None` leaves the runtime's default.
fn pod_dns_config(spec: &PodSpec, pod: &Pod, context: &Context) -> Option<proto::DnsConfig> {
    let host = Resolv::parse(&std::fs::read_to_string(&context.dns.resolv_conf).unwrap_or_default());
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let resolv = resolv_for(spec, namespace, context.dns.cluster.as_ref(), &host)?;
    Some(proto::DnsConfig { servers: resolv.servers, searches: resolv.searches, options: resolv.options })
}

fn container_config(
    pod: &Pod,
    container: &Container,
    attempt: u32,
    image: &str,
    volumes: &HashMap<String, PathBuf>,
    env: Vec<(String, String)>,
) -> Result<proto::ContainerConfig, SyncError> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let memory_capacity = crate::node::memory_kib().unwrap_or(0) * 1024;
    let variables: HashMap<&str, &str> = env.iter().map(|(key, value)| (key.as_str(), value.as_str())).collect();
    let expand_all =
        |list: &Option<Vec<String>>| list.iter().flatten().map(|text| expand(text, &variables)).collect::<Vec<_>>();
    let mut mounts = Vec::new();
    for mount in container.volume_mounts.iter().flatten() {
        let Some(source) = volumes.get(&mount.name) else {
            return Err(SyncError::Other(format!(
                "container {:?} mounts volume {:?}, which the pod does not declare or kaasd does not support yet",
                container.name, mount.name
            )));
        };
        let mut host_path = source.clone();
        if let Some(sub_path) = mount.sub_path.as_deref().filter(|path| !path.is_empty()) {
            if sub_path.split('/').any(|part| part == "..") || sub_path.starts_with('/') {
                return Err(SyncError::Other(format!("subPath {sub_path:?} must be relative and stay inside")));
            }
            host_path = host_path.join(sub_path);
            if !host_path.exists() {
                let _ = std::fs::create_dir_all(&host_path);
            }
        }
        mounts.push(proto::Mount {
            container_path: mount.mount_path.clone(),
            host_path: host_path.display().to_string(),
            readonly: mount.read_only == Some(true),
            selinux_relabel: false,
            propagation: match mount.mount_propagation.as_deref() {
                Some("HostToContainer") => proto::MountPropagation::PropagationHostToContainer as i32,
                Some("Bidirectional") => proto::MountPropagation::PropagationBidirectional as i32,
                _ => proto::MountPropagation::PropagationPrivate as i32,
            },
        });
    }
    let mut labels = base_labels(pod, &uid, "");
    labels.remove(LABEL_NODE);
    labels.insert(LABEL_CONTAINER_NAME.into(), container.name.clone());
    let security = container.security_context.clone().unwrap_or_default();
    let pod_security = pod.spec.as_ref().and_then(|spec| spec.security_context.clone()).unwrap_or_default();
    Ok(proto::ContainerConfig {
        metadata: Some(proto::ContainerMetadata { name: container.name.clone(), attempt }),
        image: Some(proto::ImageSpec {
            image: image.into(),
            user_specified_image: container.image.clone().unwrap_or_default(),
            ..Default::default()
        }),
        command: expand_all(&container.command),
        args: expand_all(&container.args),
        working_dir: container.working_dir.clone().unwrap_or_default(),
        envs: env.into_iter().map(|(key, value)| proto::KeyValue { key, value: value.into_bytes() }).collect(),
        mounts,
        labels,
        annotations: HashMap::from([("io.kubernetes.container.restartCount".into(), attempt.to_string())]),
        log_path: format!("{}/{attempt}.log", container.name),
        stdin: container.stdin == Some(true),
        stdin_once: container.stdin_once == Some(true),
        tty: container.tty == Some(true),
        linux: Some(proto::LinuxContainerConfig {
            resources: Some(crate::resources::linux_resources(pod, container, memory_capacity)),
            security_context: Some(proto::LinuxContainerSecurityContext {
                capabilities: security.capabilities.as_ref().map(|capabilities| proto::Capability {
                    add_capabilities: capabilities.add.clone().unwrap_or_default(),
                    drop_capabilities: capabilities.drop.clone().unwrap_or_default(),
                }),
                privileged: security.privileged == Some(true),
                namespace_options: Some(namespace_options(pod)),
                run_as_user: security.run_as_user.or(pod_security.run_as_user).map(|value| proto::Int64Value { value }),
                readonly_rootfs: security.read_only_root_filesystem == Some(true),
                supplemental_groups: pod_security.supplemental_groups.clone().unwrap_or_default(),
                no_new_privs: security.allow_privilege_escalation == Some(false),
                run_as_group: security
                    .run_as_group
                    .or(pod_security.run_as_group)
                    .map(|value| proto::Int64Value { value }),
            }),
        }),
    })
}

/// Kubernetes' `$(VAR)` expansion in command and args: defined variables are replaced, `$$` is a literal `$`,
/// anything else stays as written.
pub fn expand(text: &str, variables: &HashMap<&str, &str>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        rest = &rest[dollar..];
        if rest.starts_with("$$") {
            out.push('$');
            rest = &rest[2..];
        } else if let Some(name) = rest.strip_prefix("$(").and_then(|after| after.split_once(')')).map(|(n, _)| n) {
            match variables.get(name) {
                Some(value) => out.push_str(value),
                None => out.push_str(&rest[..name.len() + 3]),
            }
            rest = &rest[name.len() + 3..];
        } else {
            out.push('$');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    out
}

/// Writes the pod's `/etc/hosts` (kept in the pod's directory) for a container that does not mount its own.
fn write_hosts_file(
    context: &Context,
    pod: &Pod,
    container: &Container,
    pod_ip: Option<&str>,
) -> Result<Option<PathBuf>, SyncError> {
    if container.volume_mounts.iter().flatten().any(|mount| mount.mount_path.trim_end_matches('/') == "/etc/hosts") {
        return Ok(None);
    }
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let path = context.pod_dir(&uid).join("etc-hosts");
    let node_hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    let text =
        crate::network::pod_hosts::render(pod, &pod_ip.into_iter().collect::<Vec<_>>(), &node_hosts, CLUSTER_DOMAIN);
    if std::fs::read_to_string(&path).is_ok_and(|current| current == text) {
        return Ok(Some(path));
    }
    std::fs::create_dir_all(context.pod_dir(&uid))
        .and_then(|()| std::fs::write(&path, text))
        .map_err(|error| SyncError::Other(format!("cannot write {}: {error}", path.display())))?;
    Ok(Some(path))
}

/// The container's environment: plain values (with `$(VAR)` references to earlier ones and to Service
/// variables), the pod's own fields, keys of ConfigMaps and Secrets, then the Service variables it does not set
/// itself. Missing optional sources are skipped; missing required ones leave the value empty (and are logged).
async fn environment(
    pod: &Pod,
    container: &Container,
    pod_ip: Option<&str>,
    context: &Context,
    namespace: &str,
) -> Vec<(String, String)> {
    let services = context.services.state();
    let service_links = pod.spec.as_ref().and_then(|spec| spec.enable_service_links) != Some(false);
    let service_env =
        crate::network::service_env::service_environment(services.iter().map(AsRef::as_ref), namespace, service_links);
    let mut env: Vec<(String, String)> = Vec::new();
    for variable in container.env.iter().flatten() {
        let value = if let Some(value) = &variable.value {
            let known: HashMap<&str, &str> =
                service_env.iter().chain(env.iter()).map(|(k, v)| (k.as_str(), v.as_str())).collect();
            expand(value, &known)
        } else if let Some(source) = &variable.value_from {
            if let Some(field) = &source.field_ref {
                field_value(pod, &field.field_path, pod_ip, context).unwrap_or_default()
            } else if let Some(key) = &source.config_map_key_ref {
                let maps: Api<ConfigMap> = Api::namespaced(context.client.clone(), namespace);
                match maps.get_opt(&key.name).await {
                    Ok(Some(map)) => map.data.and_then(|data| data.get(&key.key).cloned()).unwrap_or_default(),
                    _ => String::new(),
                }
            } else if let Some(key) = &source.secret_key_ref {
                let secrets: Api<Secret> = Api::namespaced(context.client.clone(), namespace);
                match secrets.get_opt(&key.name).await {
                    Ok(Some(secret)) => secret
                        .data
                        .and_then(|data| data.get(&key.key).map(|bytes| String::from_utf8_lossy(&bytes.0).into_owned()))
                        .unwrap_or_default(),
                    _ => String::new(),
                }
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        env.retain(|(key, _)| *key != variable.name);
        env.push((variable.name.clone(), value));
    }
    for (key, value) in service_env {
        if !env.iter().any(|(defined, _)| *defined == key) {
            env.push((key, value));
        }
    }
    env
}

/// The downward API fields kaasd fills in.
fn field_value(pod: &Pod, path: &str, pod_ip: Option<&str>, context: &Context) -> Option<String> {
    Some(match path {
        "metadata.name" => pod.metadata.name.clone()?,
        "metadata.namespace" => pod.metadata.namespace.clone()?,
        "metadata.uid" => pod.metadata.uid.clone()?,
        "spec.nodeName" => context.node_name.clone(),
        "spec.serviceAccountName" => pod.spec.as_ref()?.service_account_name.clone()?,
        "status.podIP" => pod_ip?.to_string(),
        "status.hostIP" => context.host_ips.first()?.to_string(),
        other => {
            let (map, key) = other.strip_suffix("']")?.split_once("['")?;
            match map {
                "metadata.labels" => pod.metadata.labels.as_ref()?.get(key)?.clone(),
                "metadata.annotations" => pod.metadata.annotations.as_ref()?.get(key)?.clone(),
                _ => return None,
            }
        }
    })
}

/// Makes every volume the pod declares available on the node; returns its host path per volume name.
async fn prepare_volumes(
    context: &Context,
    pod: &Pod,
    uid: &str,
    tokens: &mut HashMap<String, (String, tokio::time::Instant)>,
) -> Result<HashMap<String, PathBuf>, String> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let base = context.pod_dir(uid).join("volumes");
    let mut paths = HashMap::new();
    for volume in pod.spec.as_ref().and_then(|spec| spec.volumes.clone()).unwrap_or_default() {
        let path = prepare_volume(context, pod, &namespace, &base, &volume, tokens).await?;
        if let Some(path) = path {
            paths.insert(volume.name.clone(), path);
        }
    }
    Ok(paths)
}

/// A hostPath volume's path, after the check or creation its type asks for.
fn prepare_host_path(host: &HostPathVolumeSource) -> Result<PathBuf, String> {
    let create = |path: &Path| {
        std::fs::create_dir_all(path).map_err(|error| format!("cannot create {}: {error}", path.display()))
    };
    let path = PathBuf::from(&host.path);
    match host.type_.as_deref() {
        Some("DirectoryOrCreate") => create(&path)?,
        Some("FileOrCreate") if !path.exists() => {
            if let Some(parent) = path.parent() {
                create(parent)?;
            }
            std::fs::write(&path, b"").map_err(|error| format!("cannot create {}: {error}", path.display()))?;
        }
        Some("Directory") if !path.is_dir() => return Err(format!("hostPath {} is not a directory", host.path)),
        Some("File") if !path.is_file() => return Err(format!("hostPath {} is not a file", host.path)),
        _ => {}
    }
    Ok(path)
}

async fn prepare_volume(
    context: &Context,
    pod: &Pod,
    namespace: &str,
    base: &Path,
    volume: &Volume,
    tokens: &mut HashMap<String, (String, tokio::time::Instant)>,
) -> Result<Option<PathBuf>, String> {
    let create = |path: &Path| {
        std::fs::create_dir_all(path).map_err(|error| format!("cannot create {}: {error}", path.display()))
    };
    if volume.empty_dir.is_some() {
        // Medium Memory is kept on disk too for now.
        let path = base.join("empty-dir").join(&volume.name);
        create(&path)?;
        return Ok(Some(path));
    }
    if let Some(host) = &volume.host_path {
        return prepare_host_path(host).map(Some);
    }
    if let Some(claim) = &volume.persistent_volume_claim {
        // A claim's volume is a path on this node too (`local_volumes.rs`); until it is bound the pod waits.
        let host = crate::local_volumes::claim_source(&context.client, namespace, &claim.claim_name).await?;
        return prepare_host_path(&host).map(Some);
    }
    let mut files: Vec<(String, Vec<u8>, Option<i32>)> = Vec::new();
    let default_mode;
    let kind;
    if let Some(source) = &volume.config_map {
        kind = "configmap";
        default_mode = source.default_mode;
        let maps: Api<ConfigMap> = Api::namespaced(context.client.clone(), namespace);
        match maps.get_opt(&source.name).await.map_err(|error| error.to_string())? {
            Some(map) => files.extend(config_map_files(&map, source.items.as_deref())),
            None if source.optional == Some(true) => {}
            None => return Err(format!("configmap {:?} not found", source.name)),
        }
    } else if let Some(source) = &volume.secret {
        kind = "secret";
        default_mode = source.default_mode;
        let name = source.secret_name.clone().unwrap_or_default();
        let secrets: Api<Secret> = Api::namespaced(context.client.clone(), namespace);
        match secrets.get_opt(&name).await.map_err(|error| error.to_string())? {
            Some(secret) => files.extend(secret_files(&secret, source.items.as_deref())),
            None if source.optional == Some(true) => {}
            None => return Err(format!("secret {name:?} not found")),
        }
    } else if let Some(projected) = &volume.projected {
        kind = "projected";
        default_mode = projected.default_mode;
        for source in projected.sources.iter().flatten() {
            if let Some(token) = &source.service_account_token {
                let key = format!("{}/{}", volume.name, token.path);
                let now = tokio::time::Instant::now();
                let token_text = match tokens.get(&key).filter(|(_, renew_at)| now < *renew_at) {
                    Some((text, _)) => text.clone(),
                    None => {
                        let lifetime = token.expiration_seconds.unwrap_or(3607).max(600);
                        let text =
                            service_account_token(context, pod, namespace, Some(lifetime), &token.audience).await?;
                        let renew_at = now + Duration::from_secs(lifetime as u64 * 4 / 5);
                        tokens.insert(key, (text.clone(), renew_at));
                        text
                    }
                };
                files.push((token.path.clone(), token_text.into_bytes(), None));
            }
            if let Some(map_source) = &source.config_map {
                let maps: Api<ConfigMap> = Api::namespaced(context.client.clone(), namespace);
                match maps.get_opt(&map_source.name).await.map_err(|error| error.to_string())? {
                    Some(map) => files.extend(config_map_files(&map, map_source.items.as_deref())),
                    None if map_source.optional == Some(true) => {}
                    None => return Err(format!("configmap {:?} not found", map_source.name)),
                }
            }
            if let Some(secret_source) = &source.secret {
                let secrets: Api<Secret> = Api::namespaced(context.client.clone(), namespace);
                match secrets.get_opt(&secret_source.name).await.map_err(|error| error.to_string())? {
                    Some(secret) => files.extend(secret_files(&secret, secret_source.items.as_deref())),
                    None if secret_source.optional == Some(true) => {}
                    None => return Err(format!("secret {:?} not found", secret_source.name)),
                }
            }
            if let Some(downward) = &source.downward_api {
                for item in downward.items.iter().flatten() {
                    if let Some(field) = &item.field_ref {
                        let value = field_value(pod, &field.field_path, None, context).unwrap_or_default();
                        files.push((item.path.clone(), value.into_bytes(), item.mode));
                    }
                }
            }
        }
    } else if let Some(downward) = &volume.downward_api {
        kind = "downward-api";
        default_mode = downward.default_mode;
        for item in downward.items.iter().flatten() {
            if let Some(field) = &item.field_ref {
                let value = field_value(pod, &field.field_path, None, context).unwrap_or_default();
                files.push((item.path.clone(), value.into_bytes(), item.mode));
            }
        }
    } else {
        return Err(format!("volume {:?} is of a type kaasd does not support yet", volume.name));
    }
    let dir = base.join(kind).join(&volume.name);
    create(&dir)?;
    for (path, contents, mode) in files {
        if path.split('/').any(|part| part == "..") || path.starts_with('/') {
            return Err(format!("volume {:?}: path {path:?} must be relative and stay inside", volume.name));
        }
        let file = dir.join(&path);
        if let Some(parent) = file.parent() {
            create(parent)?;
        }
        std::fs::write(&file, contents).map_err(|error| format!("cannot write {}: {error}", file.display()))?;
        let mode = mode.or(default_mode).unwrap_or(0o644) as u32;
        let _ = std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode & 0o777));
    }
    Ok(Some(dir))
}

fn config_map_files(
    map: &ConfigMap,
    items: Option<&[k8s_openapi::api::core::v1::KeyToPath]>,
) -> Vec<(String, Vec<u8>, Option<i32>)> {
    let mut all: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (key, value) in map.data.clone().unwrap_or_default() {
        all.insert(key, value.into_bytes());
    }
    for (key, value) in map.binary_data.clone().unwrap_or_default() {
        all.insert(key, value.0);
    }
    select_items(all, items)
}

fn secret_files(
    secret: &Secret,
    items: Option<&[k8s_openapi::api::core::v1::KeyToPath]>,
) -> Vec<(String, Vec<u8>, Option<i32>)> {
    let mut all: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (key, value) in secret.data.clone().unwrap_or_default() {
        all.insert(key, value.0);
    }
    for (key, value) in secret.string_data.clone().unwrap_or_default() {
        all.insert(key, value.into_bytes());
    }
    select_items(all, items)
}

fn select_items(
    all: BTreeMap<String, Vec<u8>>,
    items: Option<&[k8s_openapi::api::core::v1::KeyToPath]>,
) -> Vec<(String, Vec<u8>, Option<i32>)> {
    match items {
        Some(items) if !items.is_empty() => items
            .iter()
            .filter_map(|item| all.get(&item.key).map(|value| (item.path.clone(), value.clone(), item.mode)))
            .collect(),
        _ => all.into_iter().map(|(key, value)| (key, value, None)).collect(),
    }
}

/// A token for the pod's ServiceAccount, bound to the pod (TokenRequest, as the kubelet asks for it).
async fn service_account_token(
    context: &Context,
    pod: &Pod,
    namespace: &str,
    expiration: Option<i64>,
    audience: &Option<String>,
) -> Result<String, String> {
    let account = pod
        .spec
        .as_ref()
        .and_then(|spec| spec.service_account_name.clone())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "default".into());
    let accounts: Api<ServiceAccount> = Api::namespaced(context.client.clone(), namespace);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: audience.iter().cloned().collect(),
            expiration_seconds: expiration.or(Some(3607)),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        },
        ..Default::default()
    };
    let answer = accounts
        .create_token_request(&account, &PostParams::default(), &request)
        .await
        .map_err(|error| format!("cannot get a token for serviceaccount {account:?}: {error}"))?;
    answer.status.map(|status| status.token).ok_or_else(|| "the token request returned no token".to_string())
}

/// What a sync saw, the input of [`compute_status`].
#[derive(Debug, Default)]
pub struct Observed {
    pub sandbox_ready: bool,
    pub pod_ips: Vec<String>,
    /// Per container name: its newest runtime container and the one before.
    pub containers: HashMap<String, (Option<proto::ContainerStatus>, Option<proto::ContainerStatus>)>,
    /// Why a container waits, when the runtime cannot say (image errors, back-off).
    pub waiting: HashMap<String, (String, String)>,
    /// Why the sandbox could not start, if it could not.
    pub sandbox_error: Option<String>,
    /// Running containers whose readiness probe does not pass.
    pub unready: HashSet<String>,
    /// Running containers whose startup probe has not passed yet.
    pub not_started: HashSet<String>,
    /// Per exited runtime container: its termination message (terminationMessagePath, or the log's end).
    pub messages: HashMap<String, String>,
}

fn nanos_to_time(nanos: i64) -> Option<Time> {
    (nanos > 0).then(|| jiff::Timestamp::from_nanosecond(i128::from(nanos)).ok().map(Time)).flatten()
}

fn terminated(status: &proto::ContainerStatus, observed: &Observed) -> ContainerStateTerminated {
    let reason = if !status.reason.is_empty() {
        status.reason.clone()
    } else if status.exit_code == 0 {
        "Completed".into()
    } else {
        "Error".into()
    };
    ContainerStateTerminated {
        exit_code: status.exit_code,
        reason: Some(reason),
        message: observed
            .messages
            .get(&status.id)
            .cloned()
            .or_else(|| Some(status.message.clone()))
            .filter(|message| !message.is_empty()),
        started_at: nanos_to_time(status.started_at),
        finished_at: nanos_to_time(status.finished_at),
        container_id: Some(format!("containerd://{}", status.id)),
        signal: None,
    }
}

/// The pod status from what the runtime reports, as the kubelet writes it.
pub fn compute_status(pod: &Pod, observed: &Observed, host_ip: Option<&str>, now: jiff::Timestamp) -> PodStatus {
    let spec = pod.spec.clone().unwrap_or_default();
    let previous = pod.status.clone().unwrap_or_default();
    let restart_policy = spec.restart_policy.clone().unwrap_or_else(|| "Always".into());

    // Init containers, in order: the pod is initialized once each has exited 0 (a sidecar: has started).
    let mut init_statuses = Vec::new();
    let mut incomplete = Vec::new();
    let mut init_failed = false;
    let mut unready = Vec::new();
    for container in spec.init_containers.iter().flatten() {
        let sidecar = container.restart_policy.as_deref() == Some("Always");
        let (mut status, outcome) = container_status(container, observed, !incomplete.is_empty());
        let through = if sidecar {
            if !status.ready {
                unready.push(container.name.clone());
            }
            observed.containers.get(&container.name).is_some_and(|(latest, _)| latest.is_some())
                && !observed.not_started.contains(&container.name)
        } else {
            // A completed init container counts as ready, as upstream reports it.
            status.ready = outcome == Outcome::Exited(0);
            if matches!(outcome, Outcome::Exited(code) if code != 0) && restart_policy == "Never" {
                init_failed = true;
            }
            status.ready
        };
        if !through {
            incomplete.push(container.name.clone());
        }
        init_statuses.push(status);
    }
    let initialized = incomplete.is_empty();

    let mut statuses = Vec::new();
    let (mut waiting_fresh, mut running, mut stopped, mut failed) = (0, 0, 0, 0);
    for container in &spec.containers {
        let (status, outcome) = container_status(container, observed, !initialized);
        match outcome {
            Outcome::Waiting => waiting_fresh += 1,
            Outcome::Running => running += 1,
            Outcome::Exited(code) => {
                stopped += 1;
                if code != 0 {
                    failed += 1;
                }
            }
        }
        if !status.ready {
            unready.push(container.name.clone());
        }
        statuses.push(status);
    }
    let total = spec.containers.len();
    let phase = if init_failed {
        "Failed"
    } else if !initialized || waiting_fresh > 0 {
        "Pending"
    } else if running > 0 {
        "Running"
    } else if stopped == total && total > 0 {
        match restart_policy.as_str() {
            "Always" => "Running",
            "OnFailure" if failed > 0 => "Running",
            "Never" if failed > 0 => "Failed",
            _ => "Succeeded",
        }
    } else {
        "Pending"
    };
    let terminal = phase == "Succeeded" || phase == "Failed";
    let all_ready = total > 0 && unready.is_empty();
    let existing = previous.conditions.clone().unwrap_or_default();
    let condition = |kind: &str, ok: bool, reason: Option<&str>, message: Option<String>| {
        let status = if ok { "True" } else { "False" };
        let since = existing
            .iter()
            .find(|c| c.type_ == kind && c.status == status)
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or(Time(now));
        PodCondition {
            type_: kind.into(),
            status: status.into(),
            reason: reason.filter(|_| !ok).map(str::to_string),
            message: message.filter(|_| !ok),
            last_transition_time: Some(since),
            ..Default::default()
        }
    };
    let (unready_reason, unready_message) = if terminal {
        (Some("PodCompleted"), None)
    } else {
        (Some("ContainersNotReady"), Some(format!("containers with unready status: [{}]", unready.join(" "))))
    };
    let mut conditions: Vec<PodCondition> = existing.iter().filter(|c| c.type_ == "PodScheduled").cloned().collect();
    conditions.push(condition("PodReadyToStartContainers", observed.sandbox_ready && !terminal, None, None));
    conditions.push(condition(
        "Initialized",
        initialized,
        Some("ContainersNotInitialized"),
        Some(format!("containers with incomplete status: [{}]", incomplete.join(" "))),
    ));
    conditions.push(condition("ContainersReady", all_ready && !terminal, unready_reason, unready_message.clone()));
    conditions.push(condition("Ready", all_ready && !terminal, unready_reason, unready_message));
    let pod_ip = observed.pod_ips.first().cloned().or_else(|| if terminal { previous.pod_ip.clone() } else { None });
    let pod_ips = if observed.pod_ips.is_empty() {
        if terminal {
            previous.pod_ips.clone()
        } else {
            None
        }
    } else {
        Some(observed.pod_ips.iter().map(|ip| PodIP { ip: ip.clone() }).collect())
    };
    PodStatus {
        phase: Some(phase.into()),
        conditions: Some(conditions),
        init_container_statuses: Some(init_statuses).filter(|statuses| !statuses.is_empty()),
        container_statuses: Some(statuses),
        host_ip: host_ip.map(str::to_string),
        host_ips: host_ip.map(|ip| vec![HostIP { ip: ip.into() }]),
        pod_ip,
        pod_ips,
        start_time: previous.start_time.clone().or(Some(Time(now))),
        qos_class: previous.qos_class.clone(),
        ..Default::default()
    }
}

/// Where one container stands, for the pod's phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Waiting,
    Running,
    Exited(i32),
}

/// One container's status as the API shows it. `blocked`: it cannot start yet (earlier init containers have not
/// finished), so a container with no instance waits with reason PodInitializing.
fn container_status(container: &Container, observed: &Observed, blocked: bool) -> (ContainerStatus, Outcome) {
    let (latest, before) = observed.containers.get(&container.name).cloned().unwrap_or_default();
    let waiting_reason = observed.waiting.get(&container.name).cloned();
    let mut state = ContainerState::default();
    let mut last_state = None;
    let mut ready = false;
    let mut started = false;
    let mut restart_count = 0;
    let (mut image_id, mut container_id) = (String::new(), None);
    let outcome;
    match &latest {
        Some(status) => {
            restart_count = status.metadata.as_ref().map_or(0, |m| m.attempt) as i32;
            image_id = status.image_ref.clone();
            container_id = Some(format!("containerd://{}", status.id));
            match proto::ContainerState::try_from(status.state) {
                Ok(proto::ContainerState::ContainerRunning) => {
                    state.running = Some(ContainerStateRunning { started_at: nanos_to_time(status.started_at) });
                    ready = !observed.unready.contains(&container.name);
                    started = !observed.not_started.contains(&container.name);
                    outcome = Outcome::Running;
                    last_state = before.as_ref().map(|before| ContainerState {
                        terminated: Some(terminated(before, observed)),
                        ..Default::default()
                    });
                }
                Ok(proto::ContainerState::ContainerExited) => {
                    outcome = Outcome::Exited(status.exit_code);
                    match waiting_reason {
                        // Waiting to be started again: the exit becomes the last state.
                        Some((reason, message)) => {
                            state.waiting =
                                Some(ContainerStateWaiting { reason: Some(reason), message: Some(message) });
                            last_state = Some(ContainerState {
                                terminated: Some(terminated(status, observed)),
                                ..Default::default()
                            });
                        }
                        None => {
                            state.terminated = Some(terminated(status, observed));
                            last_state = before.as_ref().map(|before| ContainerState {
                                terminated: Some(terminated(before, observed)),
                                ..Default::default()
                            });
                        }
                    }
                }
                _ => {
                    outcome = Outcome::Waiting;
                    state.waiting =
                        Some(ContainerStateWaiting { reason: Some("ContainerCreating".into()), message: None });
                }
            }
        }
        None => {
            outcome = Outcome::Waiting;
            let fallback = if blocked { "PodInitializing" } else { "ContainerCreating" };
            let (reason, message) = waiting_reason
                .or_else(|| observed.sandbox_error.clone().map(|error| (fallback.into(), error)))
                .unwrap_or_else(|| (fallback.into(), String::new()));
            state.waiting = Some(ContainerStateWaiting {
                reason: Some(reason),
                message: Some(message).filter(|message| !message.is_empty()),
            });
        }
    }
    let status = ContainerStatus {
        name: container.name.clone(),
        image: container.image.clone().unwrap_or_default(),
        image_id,
        container_id,
        state: Some(state),
        last_state: Some(last_state.unwrap_or_default()),
        ready,
        restart_count,
        started: Some(started),
        ..Default::default()
    };
    (status, outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;

    fn pod(restart_policy: &str) -> Pod {
        Pod {
            metadata: kube::api::ObjectMeta { name: Some("p".into()), ..Default::default() },
            spec: Some(PodSpec {
                restart_policy: Some(restart_policy.into()),
                containers: vec![Container {
                    name: "main".into(),
                    image: Some("busybox".into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                conditions: Some(vec![PodCondition {
                    type_: "PodScheduled".into(),
                    status: "True".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    fn container(state: proto::ContainerState, attempt: u32, exit_code: i32) -> proto::ContainerStatus {
        proto::ContainerStatus {
            id: format!("c{attempt}"),
            metadata: Some(proto::ContainerMetadata { name: "main".into(), attempt }),
            state: state as i32,
            started_at: 1_700_000_000_000_000_000,
            finished_at: if state == proto::ContainerState::ContainerExited { 1_700_000_001_000_000_000 } else { 0 },
            exit_code,
            image_ref: "sha256:abc".into(),
            ..Default::default()
        }
    }

    fn observed(latest: Option<proto::ContainerStatus>, before: Option<proto::ContainerStatus>) -> Observed {
        Observed {
            sandbox_ready: true,
            pod_ips: vec!["10.244.0.5".into()],
            containers: HashMap::from([("main".to_string(), (latest, before))]),
            ..Default::default()
        }
    }

    fn condition(status: &PodStatus, kind: &str) -> String {
        status.conditions.iter().flatten().find(|c| c.type_ == kind).map(|c| c.status.clone()).unwrap_or_default()
    }

    fn with_init(mut pod: Pod, names: &[(&str, Option<&str>)]) -> Pod {
        let spec = pod.spec.as_mut().unwrap();
        spec.init_containers = Some(
            names
                .iter()
                .map(|(name, policy)| Container {
                    name: (*name).into(),
                    image: Some("busybox".into()),
                    restart_policy: policy.map(str::to_string),
                    ..Default::default()
                })
                .collect(),
        );
        pod
    }

    fn named(mut status: proto::ContainerStatus, name: &str) -> proto::ContainerStatus {
        status.id = format!("{name}-{}", status.id);
        status
    }

    #[test]
    fn init_containers_run_before_the_app_and_a_failure_fails_a_never_pod() {
        let pod = with_init(pod("Always"), &[("first", None), ("second", None)]);
        // The first runs: the second and the app wait, PodInitializing.
        let mut seen = observed(None, None);
        let running = named(container(proto::ContainerState::ContainerRunning, 0, 0), "first");
        seen.containers.insert("first".into(), (Some(running), None));
        let status = compute_status(&pod, &seen, None, jiff::Timestamp::now());
        assert_eq!(status.phase.as_deref(), Some("Pending"));
        assert_eq!(condition(&status, "Initialized"), "False");
        let inits = status.init_container_statuses.clone().unwrap();
        assert!(inits[0].state.as_ref().unwrap().running.is_some());
        let second = inits[1].state.as_ref().unwrap().waiting.clone().unwrap();
        assert_eq!(second.reason.as_deref(), Some("PodInitializing"));
        let app = status.container_statuses.clone().unwrap()[0].state.clone().unwrap().waiting.unwrap();
        assert_eq!(app.reason.as_deref(), Some("PodInitializing"));
        let initialized = status.conditions.iter().flatten().find(|c| c.type_ == "Initialized").unwrap();
        assert_eq!(initialized.reason.as_deref(), Some("ContainersNotInitialized"));
        assert_eq!(initialized.message.as_deref(), Some("containers with incomplete status: [first second]"));

        // Both completed and the app runs: initialized, completed init containers count as ready.
        let mut seen = observed(Some(container(proto::ContainerState::ContainerRunning, 0, 0)), None);
        for name in ["first", "second"] {
            let done = named(container(proto::ContainerState::ContainerExited, 0, 0), name);
            seen.containers.insert(name.into(), (Some(done), None));
        }
        let status = compute_status(&pod, &seen, None, jiff::Timestamp::now());
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert_eq!(condition(&status, "Initialized"), "True");
        assert_eq!(condition(&status, "Ready"), "True");
        let inits = status.init_container_statuses.unwrap();
        assert!(inits.iter().all(|init| init.ready));
        assert_eq!(inits[0].state.as_ref().unwrap().terminated.as_ref().unwrap().reason.as_deref(), Some("Completed"));

        // A failed init container: a Never pod fails, an Always pod stays Pending (it is retried).
        let mut seen = observed(None, None);
        let failed = named(container(proto::ContainerState::ContainerExited, 0, 2), "first");
        seen.containers.insert("first".into(), (Some(failed), None));
        let never = with_init(self::pod("Never"), &[("first", None), ("second", None)]);
        assert_eq!(compute_status(&never, &seen, None, jiff::Timestamp::now()).phase.as_deref(), Some("Failed"));
        assert_eq!(compute_status(&pod, &seen, None, jiff::Timestamp::now()).phase.as_deref(), Some("Pending"));
    }

    #[test]
    fn a_sidecar_needs_only_to_have_started_and_counts_for_readiness() {
        let pod = with_init(pod("Always"), &[("proxy", Some("Always"))]);
        let mut seen = observed(Some(container(proto::ContainerState::ContainerRunning, 0, 0)), None);
        let sidecar = named(container(proto::ContainerState::ContainerRunning, 0, 0), "proxy");
        seen.containers.insert("proxy".into(), (Some(sidecar), None));
        let status = compute_status(&pod, &seen, None, jiff::Timestamp::now());
        assert_eq!(condition(&status, "Initialized"), "True");
        assert_eq!(condition(&status, "Ready"), "True");
        seen.unready.insert("proxy".into());
        let status = compute_status(&pod, &seen, None, jiff::Timestamp::now());
        assert_eq!(condition(&status, "Initialized"), "True");
        assert_eq!(condition(&status, "Ready"), "False");
    }

    #[test]
    fn a_running_container_makes_a_ready_running_pod() {
        let seen = observed(Some(container(proto::ContainerState::ContainerRunning, 0, 0)), None);
        let status = compute_status(&pod("Always"), &seen, Some("192.168.1.2"), jiff::Timestamp::now());
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert_eq!(status.pod_ip.as_deref(), Some("10.244.0.5"));
        assert_eq!(status.host_ip.as_deref(), Some("192.168.1.2"));
        for kind in ["PodScheduled", "PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready"] {
            assert_eq!(condition(&status, kind), "True", "{kind}");
        }
        let container = &status.container_statuses.unwrap()[0];
        assert!(container.ready && container.started == Some(true));
        assert_eq!(container.container_id.as_deref(), Some("containerd://c0"));
        assert_eq!(container.image_id, "sha256:abc");
        assert!(container.state.as_ref().unwrap().running.is_some());
    }

    #[test]
    fn exits_decide_the_phase_by_restart_policy() {
        let now = jiff::Timestamp::now();
        let exited = |code| observed(Some(container(proto::ContainerState::ContainerExited, 0, code)), None);
        let phase = |policy: &str, code| compute_status(&pod(policy), &exited(code), None, now).phase.unwrap();
        assert_eq!(phase("Never", 0), "Succeeded");
        assert_eq!(phase("Never", 2), "Failed");
        assert_eq!(phase("OnFailure", 0), "Succeeded");
        assert_eq!(phase("OnFailure", 2), "Running");
        assert_eq!(phase("Always", 0), "Running");
        let status = compute_status(&pod("Never"), &exited(0), None, now);
        let terminated = status.container_statuses.unwrap()[0].state.clone().unwrap().terminated.unwrap();
        assert_eq!((terminated.exit_code, terminated.reason.as_deref()), (0, Some("Completed")));
        assert_eq!(condition(&compute_status(&pod("Never"), &exited(2), None, now), "Ready"), "False");
    }

    #[test]
    fn back_off_and_image_errors_are_waiting_states() {
        let now = jiff::Timestamp::now();
        let mut seen = observed(Some(container(proto::ContainerState::ContainerExited, 3, 1)), None);
        seen.waiting.insert("main".into(), ("CrashLoopBackOff".into(), "back-off 40s".into()));
        let status = compute_status(&pod("Always"), &seen, None, now);
        let container = status.container_statuses.unwrap().remove(0);
        assert_eq!(container.restart_count, 3);
        assert_eq!(container.state.unwrap().waiting.unwrap().reason.as_deref(), Some("CrashLoopBackOff"));
        assert_eq!(container.last_state.unwrap().terminated.unwrap().exit_code, 1);
        assert_eq!(status.phase.as_deref(), Some("Running"));

        let mut seen = observed(None, None);
        seen.waiting.insert("main".into(), ("ErrImagePull".into(), "kaasd images import".into()));
        let status = compute_status(&pod("Always"), &seen, None, now);
        assert_eq!(status.phase.as_deref(), Some("Pending"));
        let waiting = status.container_statuses.unwrap()[0].state.clone().unwrap().waiting.unwrap();
        assert_eq!(waiting.reason.as_deref(), Some("ErrImagePull"));
        assert_eq!(condition(&compute_status(&pod("Always"), &seen, None, now), "ContainersReady"), "False");
    }

    #[test]
    fn a_running_restart_keeps_the_previous_exit() {
        let seen = observed(
            Some(container(proto::ContainerState::ContainerRunning, 1, 0)),
            Some(container(proto::ContainerState::ContainerExited, 0, 137)),
        );
        let status = compute_status(&pod("Always"), &seen, None, jiff::Timestamp::now());
        let container = status.container_statuses.unwrap().remove(0);
        assert_eq!(container.restart_count, 1);
        assert_eq!(container.last_state.unwrap().terminated.unwrap().exit_code, 137);
    }

    #[test]
    fn variables_expand_in_commands() {
        let variables = HashMap::from([("A", "1"), ("B", "two")]);
        assert_eq!(expand("$(A)-$(B)", &variables), "1-two");
        assert_eq!(expand("$(C) stays", &variables), "$(C) stays");
        assert_eq!(expand("$$(A) is escaped, $ alone too", &variables), "$(A) is escaped, $ alone too");
        assert_eq!(expand("unclosed $(A", &variables), "unclosed $(A");
    }
}
