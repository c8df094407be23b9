//! The etcd v3 gRPC API on top of [`crate::Store`], so that etcdctl, clientv3 and the Kubernetes API server can
//! use kaasd's datastore as if it were etcd.
//!
//! Every service answers with etcd's response header (cluster and member id, the store revision, raft term 1)
//! and maps store errors to the exact gRPC codes and messages etcd uses, because clients match on them.

mod convert;
mod kv;
mod lease;
mod maintenance;
mod watch;

/// etcd's v3 messages and gRPC server traits, generated at build time from the `.proto` files in `datastore/proto`.
mod proto {
    #![allow(clippy::all, clippy::pedantic, rust_2018_idioms)]

    pub mod mvccpb {
        tonic::include_proto!("mvccpb");
    }

    pub mod etcdserverpb {
        tonic::include_proto!("etcdserverpb");
    }
}

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use crate::Store;
use proto::etcdserverpb as pb;

/// The etcd version reported by `Status`. Clients gate features on it: the Kubernetes API server only sends
/// watch progress requests to etcd 3.5.13 or newer.
pub const ETCD_VERSION: &str = "3.5.13";

/// How often a watcher that asked for progress notifications gets one when nothing else was sent to it.
pub const DEFAULT_PROGRESS_NOTIFY_INTERVAL: Duration = Duration::from_secs(5);

/// Certificate files for serving over TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server certificate chain, PEM.
    pub cert_file: PathBuf,
    /// The server's private key, PEM.
    pub key_file: PathBuf,
    /// When set, clients must present a certificate signed by this CA (PEM).
    pub trusted_ca_file: Option<PathBuf>,
}

/// How to serve.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub tls: Option<TlsFiles>,
    pub progress_notify_interval: Duration,
    /// The member name `etcdctl member list` shows.
    pub member_name: String,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self { tls: None, progress_notify_interval: DEFAULT_PROGRESS_NOTIFY_INTERVAL, member_name: "kaasd".into() }
    }
}

/// Why the etcd API could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot read {what} {path}")]
    ReadTlsFile {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid tls configuration")]
    Tls(#[source] tonic::transport::Error),
    #[error("cannot read the listening address")]
    LocalAddress(#[source] std::io::Error),
    #[error("serving the etcd api failed")]
    Transport(#[source] tonic::transport::Error),
}

/// The etcd API bound to a listener and ready to run. Building it reads the TLS files, so a bad configuration
/// fails before anything is served.
pub struct EtcdServer {
    store: Store,
    listener: TcpListener,
    server: Server,
    identity: ServerIdentity,
    progress_notify_interval: Duration,
}

impl EtcdServer {
    pub fn new(store: Store, listener: TcpListener, options: ServeOptions) -> Result<Self, ServeError> {
        let local_address = listener.local_addr().map_err(ServeError::LocalAddress)?;
        let mut server = Server::builder()
            // etcd clients ping every few seconds (etcdctl: every 2 s) to keep idle watch streams alive.
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .tcp_nodelay(true);
        let scheme = if let Some(tls) = &options.tls {
            server = server.tls_config(load_tls(tls)?).map_err(ServeError::Tls)?;
            "https"
        } else {
            "http"
        };
        let client_url = format!("{scheme}://{local_address}");
        let identity = ServerIdentity::new(&client_url, options.member_name);
        Ok(Self { store, listener, server, identity, progress_notify_interval: options.progress_notify_interval })
    }

    pub fn local_address(&self) -> Result<SocketAddr, ServeError> {
        self.listener.local_addr().map_err(ServeError::LocalAddress)
    }

    /// Serves until `shutdown` completes, then ends open watch and keep-alive streams (clients reconnect
    /// elsewhere or retry) and waits for the calls in flight. The store stays open: closing it is the caller's.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
        let Self { store, listener, mut server, identity, progress_notify_interval } = self;
        let stop_streams = CancellationToken::new();
        let kv = kv::KvService::new(store.clone(), identity.clone());
        let watch =
            watch::WatchService::new(store.clone(), identity.clone(), progress_notify_interval, stop_streams.clone());
        let lease = lease::LeaseService::new(store.clone(), identity.clone(), stop_streams.clone());
        let maintenance = maintenance::MaintenanceService::new(store.clone(), identity.clone());
        let cluster = maintenance::ClusterService::new(store, identity);
        let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        let stop_on_shutdown = stop_streams.clone();
        let shutdown = async move {
            shutdown.await;
            stop_on_shutdown.cancel();
        };
        server
            .add_service(pb::kv_server::KvServer::new(kv))
            .add_service(pb::watch_server::WatchServer::new(watch))
            .add_service(pb::lease_server::LeaseServer::new(lease))
            .add_service(pb::maintenance_server::MaintenanceServer::new(maintenance))
            .add_service(pb::cluster_server::ClusterServer::new(cluster))
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
            .map_err(ServeError::Transport)
    }
}

/// Serves the etcd v3 API for `store` on `listener` until `shutdown` completes.
pub async fn serve(
    store: Store,
    listener: TcpListener,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    EtcdServer::new(store, listener, options)?.run(shutdown).await
}

/// Who this server says it is in response headers and member lists.
#[derive(Debug, Clone)]
pub(crate) struct ServerIdentity {
    pub cluster_id: u64,
    pub member_id: u64,
    pub member_name: String,
    pub client_url: String,
}

impl ServerIdentity {
    fn new(client_url: &str, member_name: String) -> Self {
        // Stable across restarts, so clients that remember the member id are not confused; distinct per address,
        // so processes sharing one database are distinct members.
        Self {
            cluster_id: stable_id(b"kaasd cluster"),
            member_id: stable_id(client_url.as_bytes()),
            member_name,
            client_url: client_url.to_string(),
        }
    }

    pub fn header(&self, revision: i64) -> Option<pb::ResponseHeader> {
        Some(pb::ResponseHeader { cluster_id: self.cluster_id, member_id: self.member_id, revision, raft_term: 1 })
    }
}

/// A nonzero 64-bit FNV-1a hash: etcd treats member id 0 as "none".
fn stable_id(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash.max(1)
}

fn load_tls(files: &TlsFiles) -> Result<ServerTlsConfig, ServeError> {
    let certificate = read_tls_file("certificate file", &files.cert_file)?;
    let key = read_tls_file("key file", &files.key_file)?;
    let mut config = ServerTlsConfig::new().identity(Identity::from_pem(certificate, key));
    if let Some(ca_file) = &files.trusted_ca_file {
        config = config.client_ca_root(Certificate::from_pem(read_tls_file("trusted ca file", ca_file)?));
    }
    Ok(config)
}

fn read_tls_file(what: &'static str, path: &Path) -> Result<Vec<u8>, ServeError> {
    std::fs::read(path).map_err(|source| ServeError::ReadTlsFile { what, path: path.display().to_string(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_ids_are_stable_nonzero_and_differ_per_address() {
        let first = ServerIdentity::new("http://127.0.0.1:2379", "kaasd".into());
        let again = ServerIdentity::new("http://127.0.0.1:2379", "kaasd".into());
        let other = ServerIdentity::new("http://127.0.0.1:2380", "kaasd".into());
        assert_eq!(first.member_id, again.member_id);
        assert_ne!(first.member_id, other.member_id);
        assert_eq!(first.cluster_id, other.cluster_id);
        assert_ne!(first.member_id, 0);
    }

    #[test]
    fn headers_carry_the_revision_and_raft_term_one() {
        let identity = ServerIdentity::new("http://127.0.0.1:2379", "kaasd".into());
        let header = identity.header(42).expect("a header");
        assert_eq!((header.revision, header.raft_term), (42, 1));
    }

    #[test]
    fn a_missing_tls_file_names_the_file() {
        let files = TlsFiles {
            cert_file: "/nonexistent/server.crt".into(),
            key_file: "/nonexistent/server.key".into(),
            trusted_ca_file: None,
        };
        let error = load_tls(&files).expect_err("the file does not exist");
        assert_eq!(error.to_string(), "cannot read certificate file /nonexistent/server.crt");
    }
}
