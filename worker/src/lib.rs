//! The node agent (`kaasd worker`): joins a cluster with a token, registers its Node, renews its Lease, keeps a
//! reverse tunnel to the controller and serves the agent's own HTTP endpoint (reachable only through the tunnel).
//! It does not run pods yet.
//!
//! The worker talks to the control plane only through the Kubernetes API and the tunnel; it never imports the
//! controller crate.

pub mod join;
pub mod node;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
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
    let host = HostFacts { hostname: hostname(), addresses: addresses.clone(), agent_port: config.agent_port };
    node::register(&client, &name, &host).await.map_err(removed)?;
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
    tokio::spawn(serve_agent_endpoint(endpoint, cancel.clone()));
    let policy = Arc::new(DialPolicy::new(addresses));
    let mut tunnel = start_tunnel(&identity, policy.clone(), &cancel)?;
    tracing::info!(node.name = %name, "worker running (it does not run pods yet)");

    let mut lease_tick = tokio::time::interval(node::LEASE_RENEW_EVERY);
    let mut status_tick = tokio::time::interval(node::STATUS_EVERY);
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            _ = lease_tick.tick() => {
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
                if let Err(error) = node::report_status(&client, &name, &host).await.map_err(removed) {
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
    Ok(())
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

/// The agent's own HTTP endpoint on loopback: `/healthz`. The controller reaches it through the tunnel
/// (`kubectl get --raw /api/v1/nodes/NAME/proxy/healthz`).
async fn serve_agent_endpoint(listener: TcpListener, cancel: CancellationToken) {
    loop {
        let stream = tokio::select! {
            () = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        tokio::spawn(async move {
            let service = hyper::service::service_fn(|request: Request<hyper::body::Incoming>| async move {
                let (status, body) = match request.uri().path() {
                    "/healthz" => (StatusCode::OK, "ok"),
                    _ => (StatusCode::NOT_FOUND, "not found"),
                };
                let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
                *response.status_mut() = status;
                Ok::<_, std::convert::Infallible>(response)
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
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
