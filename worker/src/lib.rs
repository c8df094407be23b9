//! The node agent (`kaasd worker`): joins a cluster with a token, registers its Node, renews its Lease, keeps a
//! reverse tunnel to the controller, runs the pods bound to its node in its own containerd (over CRI) and serves
//! the agent's own HTTP endpoint (reachable only through the tunnel), which serves container logs.
//!
//! The worker talks to the control plane only through the Kubernetes API and the tunnel; it never imports the
//! controller crate.

pub mod agent;
pub mod containerd;
pub mod cri;
pub mod images;
pub mod join;
pub mod local_volumes;
pub mod logs;
pub mod network;
pub mod node;
pub mod pods;
pub mod probes;
pub mod resources;
pub mod streaming;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kaasd_tunnel::agent::DialPolicy;
use kaasd_tunnel::token::JoinToken;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::join::Identity;
use crate::node::HostFacts;

/// The agent endpoint's default port (the kubelet's).
pub const DEFAULT_AGENT_PORT: u16 = 10250;

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub data_dir: PathBuf,
    /// The Node's name when joining; default: the hostname. A joined machine keeps the name it joined with.
    pub node_name: Option<String>,
    /// Needed only until this machine has joined.
    pub token: Option<String>,
    /// Port of the agent's HTTP endpoint on the node's loopback.
    pub agent_port: u16,
    /// The address the node reports; default: the one it reaches the controller from.
    pub node_ip: Option<IpAddr>,
    /// Lifetime to ask for the node certificate (default: the controller's).
    pub certificate_validity: Option<Duration>,
    /// The containerd binary to start; default: `containerd` from PATH.
    pub containerd_bin: Option<PathBuf>,
    /// Use the CRI runtime at this socket instead of starting containerd.
    pub cri_socket: Option<PathBuf>,
    /// The node's resolvers: cluster DNS forwards to them, dnsPolicy Default pods get them.
    pub resolv_conf: PathBuf,
    /// Notified once the worker runs (joined, Node registered, pods served, tunnel started): what `kaasd worker`
    /// tells the init system.
    pub ready: Option<Arc<tokio::sync::Notify>>,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("{0}")]
    Config(String),
    #[error("cannot join: {0}")]
    Join(String),
    #[error("cannot reach any controller named in the token: {0}")]
    Unreachable(String),
    #[error(
        "the controller no longer accepts node {0:?}'s certificate: the node was removed from the cluster (kubectl \
         delete node); to join again, remove <data-dir>/worker and run kaasd worker with a new token"
    )]
    Removed(String),
    #[error("API request failed: {0}")]
    Api(#[from] kube::Error),
}

/// Runs the worker until `cancel`.
pub async fn run(config: WorkerConfig, cancel: CancellationToken) -> Result<(), WorkerError> {
    let mut identity = match Identity::load(&config.data_dir)? {
        Some(identity) => {
            if config.node_name.as_ref().is_some_and(|name| *name != identity.node_name) {
                tracing::warn!(
                    node.name = %identity.node_name,
                    "this machine joined as {:?}; keeping that name (remove <data-dir>/worker to join anew)",
                    identity.node_name
                );
            }
            identity
        }
        None => {
            let Some(token) = &config.token else {
                return Err(WorkerError::Config(format!(
                    "this machine has not joined a cluster ({} holds no node certificate): pass --token (or \
                     --token-file, or KAASD_TOKEN) with a token from `kaasd token create`",
                    config.data_dir.join("worker").display()
                )));
            };
            let token = JoinToken::parse(token).map_err(|error| WorkerError::Join(error.to_string()))?;
            let node_name = config.node_name.clone().unwrap_or_else(hostname);
            let identity = join::join(&token, &node_name, config.certificate_validity).await?;
            identity.save(&config.data_dir)?;
            tracing::info!(node.name = %identity.node_name, "joined the cluster");
            identity
        }
    };
    let name = identity.node_name.clone();
    if let Ok((_, not_after)) = identity.certificate_validity() {
        if jiff::Timestamp::now().as_second() >= not_after {
            return Err(WorkerError::Config(format!(
                "node {name:?}'s certificate expired while the worker was not running; remove {} and join again \
                 with a new token",
                config.data_dir.join("worker").display()
            )));
        }
    }
    let removed = |error: WorkerError| match error {
        WorkerError::Api(kube::Error::Api(status)) if status.code == 401 => WorkerError::Removed(name.clone()),
        other => other,
    };
    let mut client = identity.client().await?;
    let addresses = match config.node_ip {
        Some(address) => vec![address],
        None => egress_address(&identity.servers).await.into_iter().collect(),
    };
    let mut containerd = start_runtime(&config).await?;
    let cri = containerd.cri.clone();
    let host = HostFacts {
        hostname: hostname(),
        addresses: addresses.clone(),
        agent_port: config.agent_port,
        runtime_version: containerd.version.clone(),
    };
    let readiness = cri.status().await.unwrap_or_default();
    let images = cri.images().await.unwrap_or_default();
    node::register(&client, &name, &host, &readiness, &images).await.map_err(removed)?;
    let node_uid = node::node_uid(&client, &name).await.map_err(removed)?;
    node::renew_lease(&client, &name, node_uid.as_deref()).await.map_err(removed)?;

    let endpoint = TcpListener::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), config.agent_port))
        .await
        .map_err(|error| {
            WorkerError::Config(format!(
                "cannot listen on 127.0.0.1:{}: {error}; is a kubelet or another worker running? choose another \
                 --agent-port",
                config.agent_port
            ))
        })?;
    let cni_dir = containerd::ContainerdPaths::new(&config.data_dir).cni_conf_dir();
    let policy = Arc::new(DialPolicy::new(addresses.clone()));
    tokio::spawn(keep_pod_network(
        client.clone(),
        name.clone(),
        cni_dir,
        config.data_dir.clone(),
        policy.clone(),
        cancel.clone(),
    ));
    let network = network::start(client.clone(), &name, &config.resolv_conf, &cancel).await;
    let pods = pods::run(
        client.clone(),
        cri.clone(),
        name.clone(),
        config.data_dir.clone(),
        addresses.clone(),
        pods::PodNetwork {
            dns: network::pod_dns::NodeDns { cluster: network.cluster_dns, resolv_conf: config.resolv_conf.clone() },
            services: network.services,
        },
        cancel.clone(),
    )
    .await;
    tokio::spawn(local_volumes::remove_deleted_volumes(client.clone(), name.clone(), pods.clone(), cancel.clone()));
    let state = Arc::new(agent::AgentState { pods: Some(pods), cri: Some(cri.clone()) });
    tokio::spawn(agent::serve(endpoint, state, cancel.clone()));
    let mut tunnel = start_tunnel(&identity, policy.clone(), &cancel)?;
    tracing::info!(node.name = %name, runtime = %containerd.version, "worker running");
    if let Some(ready) = &config.ready {
        ready.notify_one();
    }

    let mut lease_tick = tokio::time::interval(node::LEASE_RENEW_EVERY);
    let mut status_tick = tokio::time::interval(node::STATUS_EVERY);
    // Images change under the worker (`kaasd images import` talks to containerd directly): looked at often, and a
    // change is reported at once rather than with the next status.
    let mut images_tick = tokio::time::interval(node::IMAGES_EVERY);
    let mut reported_images = images.clone();
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            _ = images_tick.tick() => {
                let images = cri.images().await.unwrap_or_default();
                if images != reported_images {
                    status_tick.reset_immediately();
                }
            }
            _ = lease_tick.tick() => {
                if let Some(exit) = containerd.exited() {
                    tunnel.cancel();
                    return Err(WorkerError::Config(format!(
                        "containerd exited ({exit}); see {}",
                        containerd::ContainerdPaths::new(&config.data_dir).log().display()
                    )));
                }
                match node::renew_lease(&client, &name, node_uid.as_deref()).await.map_err(removed) {
                    Ok(()) => {}
                    Err(error @ WorkerError::Removed(_)) => {
                        tunnel.cancel();
                        return Err(error);
                    }
                    Err(error) => tracing::warn!(error = %error, "cannot renew the node lease; retrying"),
                }
                if needs_rotation(&identity) {
                    match rotate(&identity, &client, &config).await {
                        Ok(rotated) => {
                            identity = rotated;
                            client = identity.client().await?;
                            tunnel.cancel();
                            tunnel = start_tunnel(&identity, policy.clone(), &cancel)?;
                            tracing::info!(node.name = %name, "rotated the node certificate");
                        }
                        Err(error) => tracing::warn!(error = %error, "cannot rotate the node certificate; retrying"),
                    }
                }
            }
            _ = status_tick.tick() => {
                let readiness = cri.status().await.unwrap_or_else(|error| cri::RuntimeReadiness {
                    runtime: Some(format!("the runtime does not answer: {}", error.message())),
                    network: None,
                });
                let images = cri.images().await.unwrap_or_default();
                let reported = node::report_status(&client, &name, &host, &readiness, &images).await;
                reported_images = images;
                if let Err(error) = reported.map_err(removed) {
                    if let WorkerError::Removed(_) = error {
                        tunnel.cancel();
                        return Err(error);
                    }
                    tracing::warn!(error = %error, "cannot report the node status; retrying");
                }
            }
        }
    }
    tunnel.cancel();
    // Containers keep running in their shims; the next start finds them.
    containerd.stop().await;
    Ok(())
}

/// Starts the worker's containerd (or connects to `--cri-socket`) and makes sure the pause image and the archives
/// in `<data-dir>/images/` are in it.
async fn start_runtime(config: &WorkerConfig) -> Result<containerd::Containerd, WorkerError> {
    let paths = containerd::ContainerdPaths::new(&config.data_dir);
    let runtime = match &config.cri_socket {
        Some(socket) => containerd::Containerd::existing(socket).await?,
        None => containerd::Containerd::start(&paths, config.containerd_bin.as_deref(), images::PAUSE_IMAGE).await?,
    };
    let socket = runtime.cri.socket.clone();
    let ctr = images::ctr_binary(config.containerd_bin.as_deref());
    let pause = cri::proto::ImageSpec { image: images::PAUSE_IMAGE.into(), ..Default::default() };
    let present = runtime
        .cri
        .images
        .clone()
        .image_status(cri::proto::ImageStatusRequest { image: Some(pause), verbose: false })
        .await
        .map(|answer| answer.into_inner().image.is_some_and(|image| !image.id.is_empty()))
        .unwrap_or(false);
    if !present {
        let archive = images::pause_image().map_err(WorkerError::Config)?.build();
        let file = paths.dir.join("pause.tar");
        std::fs::write(&file, archive)
            .map_err(|error| WorkerError::Config(format!("cannot write {}: {error}", file.display())))?;
        images::import(&ctr, &socket, &[file]).await.map_err(WorkerError::Config)?;
        tracing::info!(image = images::PAUSE_IMAGE, "imported the pause image");
    }
    let dir = config.data_dir.join("images");
    let mut archives: Vec<PathBuf> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            let name = path.file_name().and_then(|name| name.to_str()).unwrap_or("");
            name.ends_with(".tar") || name.ends_with(".tar.gz") || name.ends_with(".tgz")
        })
        .collect();
    archives.sort();
    for archive in archives {
        match images::import(&ctr, &socket, std::slice::from_ref(&archive)).await {
            Ok(imported) => {
                for (_, names) in imported {
                    tracing::info!(archive = %archive.display(), images = ?names, "imported images");
                }
            }
            Err(error) => tracing::warn!(error = %error, "cannot import an image archive; skipping it"),
        }
    }
    Ok(runtime)
}

/// Writes the pod network's CNI configuration once the Node has a pod CIDR, and again if it changes; the tunnel
/// may then dial this node's pods (the controller reaches admission webhooks served by pods that way).
async fn keep_pod_network(
    client: kube::Client,
    name: String,
    conf_dir: PathBuf,
    data_dir: PathBuf,
    policy: Arc<DialPolicy>,
    cancel: CancellationToken,
) {
    let nodes: kube::Api<Node> = kube::Api::all(client);
    let ipam_dir = data_dir.join("cni").join("networks");
    let mut warned = false;
    loop {
        let mut every = Duration::from_secs(2);
        match nodes.get_opt(&name).await {
            Ok(Some(node)) => match node.spec.and_then(|spec| spec.pod_cidr) {
                Some(cidr) => {
                    every = Duration::from_secs(30);
                    match cidr.parse::<ipnet::Ipv4Net>() {
                        Ok(range) => policy.allow_pod_range(range.network(), range.prefix_len()),
                        Err(error) => {
                            tracing::warn!(pod.cidr = %cidr, error = %error, "the Node's pod CIDR is not IPv4")
                        }
                    }
                    match network::cni::write_conflist(&conf_dir, &ipam_dir, &cidr) {
                        Ok(true) => {
                            network::cni::remove_stale_bridge(&cidr);
                            tracing::info!(pod.cidr = %cidr, "pod network configured");
                        }
                        Ok(false) => {}
                        Err(error) => tracing::warn!(error = %error, "cannot write the CNI configuration"),
                    }
                }
                None if !warned => {
                    warned = true;
                    tracing::info!("waiting for the Node's spec.podCIDR before pods can get a network");
                }
                None => {}
            },
            Ok(None) => {}
            Err(error) => tracing::debug!(error = %error, "cannot read the Node"),
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// Keeps the tunnel up on its own task until the returned token (a child of `cancel`) is cancelled.
fn start_tunnel(
    identity: &Identity,
    policy: Arc<DialPolicy>,
    cancel: &CancellationToken,
) -> Result<CancellationToken, WorkerError> {
    let config = kaasd_tunnel::agent::client_config(
        &identity.ca_pem,
        &identity.certificate.cert_pem,
        &identity.certificate.key_pem,
    )
    .map_err(|error| WorkerError::Config(format!("cannot build the tunnel's TLS configuration: {error}")))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let servers = identity.servers.clone();
    let stop = cancel.child_token();
    let mut attempt = 0usize;
    let connect = move || {
        let server = servers[attempt % servers.len()].clone();
        attempt += 1;
        let connector = connector.clone();
        async move {
            let host = server.rsplit_once(':').map(|(host, _)| host).unwrap_or(&server);
            let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
            let name = rustls::pki_types::ServerName::try_from(host)
                .map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidInput, error))?;
            let tcp = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(&server))
                .await
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, format!("connecting to {server}")))??;
            let _ = tcp.set_nodelay(true);
            connector.connect(name, tcp).await
        }
    };
    tokio::spawn(kaasd_tunnel::agent::run(connect, policy, stop.clone()));
    Ok(stop)
}

fn needs_rotation(identity: &Identity) -> bool {
    match identity.certificate_validity() {
        Ok((not_before, not_after)) => rotation_due(not_before, not_after, jiff::Timestamp::now().as_second()),
        Err(_) => false,
    }
}

/// A certificate past two thirds of its lifetime is renewed, leaving a third of it for retries.
fn rotation_due(not_before: i64, not_after: i64, now: i64) -> bool {
    now >= not_before + (not_after - not_before) * 2 / 3
}

async fn rotate(identity: &Identity, client: &kube::Client, config: &WorkerConfig) -> Result<Identity, WorkerError> {
    let certificate = join::request_certificate(client, &identity.node_name, config.certificate_validity).await?;
    let rotated = Identity { certificate, ..identity.clone() };
    rotated.save(&config.data_dir)?;
    Ok(rotated)
}

/// The local address this machine uses to reach the first controller: what other machines see it as, when there is
/// no NAT in between. (No packet is sent: connecting a UDP socket only picks the route.)
async fn egress_address(servers: &[String]) -> Option<IpAddr> {
    let server = servers.first()?;
    let target: SocketAddr = tokio::net::lookup_host(server).await.ok()?.next()?;
    let bind = if target.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
    let socket = tokio::net::UdpSocket::bind(bind).await.ok()?;
    socket.connect(target).await.ok()?;
    Some(socket.local_addr().ok()?.ip())
}

/// This machine's hostname, lowercased (Node names are DNS names).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_lowercase())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_are_renewed_after_two_thirds_of_their_lifetime() {
        let day = 86_400;
        assert!(!rotation_due(0, 30 * day, 19 * day));
        assert!(rotation_due(0, 30 * day, 20 * day));
        assert!(rotation_due(0, 30 * day, 31 * day), "an expired certificate is renewed too");
    }
}
