//! The Kubernetes API server and its controllers.
//!
//! See docs/ARCHITECTURE.md for the data flow. In short: an HTTPS request is authenticated, authorized, decoded and
//! routed by its path to a [`apiserver::registry::ResourceDef`]; objects are JSON values stored in the datastore under
//! `/registry/<group>/<resource>/<namespace>/<name>`, with the key's revision as `metadata.resourceVersion`.

pub mod apiserver;
mod bootstrap;
mod controllers;
mod kubernetes_endpoints;
mod scheduler;
mod server;
pub mod stored_pki;
pub mod tunnels;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use kaasd_datastore::{Store, StoreConfig, SyncMode};
use kaasd_tunnel::pki::{ClusterPki, ServingNames};
use kaasd_tunnel::sealed::SecretKey;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::apiserver::storage::ObjectStore;
use crate::apiserver::ApiServer;

/// Where local-path volumes live on the nodes unless the controller is told otherwise.
pub const LOCAL_PATH_DIR: &str = controllers::local_path::DEFAULT_DIR;

/// How a controller is set up; the command line fills it in.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// Where the PKI lives.
    pub state: StateLocation,
    /// `sqlite://…`, `postgres://…` or `mysql://…`; `None` means SQLite in the data dir.
    pub datastore: Option<String>,
    pub bind_address: IpAddr,
    pub api_port: u16,
    /// The address other machines reach this controller at; in the serving certificate and the `kubernetes`
    /// Service's endpoints.
    pub advertise_address: IpAddr,
    /// The port other machines reach it at, when that is not `api_port` (a load balancer or NodePort in front of
    /// a hosted control plane).
    pub advertise_port: Option<u16>,
    /// The cluster's name in the admin kubeconfig.
    pub cluster_name: String,
    /// Extra names for the serving certificate (the hostname, every local IP).
    pub extra_names: ServingNames,
    pub service_cidr: Ipv4Cidr,
    /// The range pod addresses come from; each Node gets a /24 of it (`spec.podCIDR`).
    pub cluster_cidr: Ipv4Cidr,
    pub sqlite_sync: SyncMode,
    /// Where the local-path provisioner puts volumes on the nodes (a path on each node, not on this machine).
    pub local_path_dir: PathBuf,
    /// How much datastore history is kept: the datastore is compacted this often, to the revision it had this long
    /// ago (upstream's `--etcd-compaction-interval`, 5 minutes by default).
    pub compaction_interval: std::time::Duration,
}

/// Where a controller keeps its PKI (the API objects are in the datastore either way).
#[derive(Debug, Clone)]
pub enum StateLocation {
    /// Files in a data directory: the PKI and admin kubeconfig in `<dir>/pki`, and (without a `datastore` URL)
    /// the SQLite database in `<dir>/db`.
    DataDir(PathBuf),
    /// Nothing on disk (a hosted control plane): the cluster secrets sealed with this key in the datastore
    /// ([`stored_pki`]), leaf certificates in memory.
    Hosted(Arc<SecretKey>),
}

/// An IPv4 range: where Service ClusterIPs come from (e.g. 10.96.0.0/12), or pod addresses (10.244.0.0/16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Cidr {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

impl Ipv4Cidr {
    pub fn parse(text: &str) -> Result<Ipv4Cidr, String> {
        let (address, prefix) =
            text.split_once('/').ok_or_else(|| format!("{text:?} is not a CIDR like 10.96.0.0/12"))?;
        let address: Ipv4Addr = address.parse().map_err(|_| format!("{address:?} is not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|prefix| (8..=28).contains(prefix))
            .ok_or_else(|| format!("the prefix length of {text:?} must be between 8 and 28"))?;
        let mask = u32::MAX << (32 - prefix);
        Ok(Ipv4Cidr { network: Ipv4Addr::from(u32::from(address) & mask), prefix })
    }

    pub fn size(&self) -> u32 {
        1 << (32 - self.prefix)
    }

    pub fn nth(&self, offset: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + offset)
    }

    pub fn contains(&self, address: Ipv4Addr) -> bool {
        let mask = u32::MAX << (32 - self.prefix);
        u32::from(address) & mask == u32::from(self.network)
    }

    /// The `kubernetes` Service's address: the first in the range.
    pub fn first(&self) -> Ipv4Addr {
        self.nth(1)
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}/{}", self.network, self.prefix)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("cannot set up the cluster PKI")]
    Pki(#[from] kaasd_tunnel::pki::PkiError),
    #[error("cannot build the TLS configuration")]
    Tls(#[from] kaasd_tunnel::tls::TlsError),
    #[error("cannot open the datastore")]
    Datastore(#[from] kaasd_datastore::Error),
    #[error("cannot listen on {address}: {source}; is another API server running? choose another --api-port")]
    Listen {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the controllers' API client: {0}")]
    Client(String),
    #[error("cannot create the bootstrap objects: {0}")]
    Bootstrap(String),
    #[error(transparent)]
    StoredPki(#[from] stored_pki::StoredPkiError),
    #[error("a hosted control plane keeps its state in a shared database: give --datastore postgres://… or mysql://…")]
    HostedWithoutDatastore,
    #[error("cannot create the data directory {}", path.display())]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A running controller: the API server and its background tasks.
pub struct Controller {
    pub api: Arc<ApiServer>,
    pub pki: ClusterPki,
    pub listen_address: SocketAddr,
    /// Path of the admin kubeconfig written at start; `None` for a hosted control plane, which writes no files
    /// (`kaasd kubeconfig admin --datastore …` makes one).
    pub admin_kubeconfig: Option<PathBuf>,
    store: Store,
    /// Stops the in-process controllers and background jobs (`background`).
    stop_background: CancellationToken,
    background: TaskTracker,
    /// Stops accepting connections and drains the open ones (`serving`).
    stop_serving: CancellationToken,
    serving: TaskTracker,
}

impl Controller {
    /// Builds everything that can fail (PKI, datastore, listener) and starts serving.
    pub async fn start(config: ControllerConfig) -> Result<Controller, ControllerError> {
        let mut names = serving_names(&config);
        names.dns_names.extend(config.extra_names.dns_names.iter().cloned());
        names.ip_addresses.extend(config.extra_names.ip_addresses.iter().copied());
        names.dns_names.sort();
        names.dns_names.dedup();
        names.ip_addresses.sort();
        names.ip_addresses.dedup();
        let url = match (&config.datastore, &config.state) {
            (Some(url), _) => url.clone(),
            (None, StateLocation::DataDir(dir)) => format!("sqlite://{}", dir.join("db").join("state.db").display()),
            (None, StateLocation::Hosted(_)) => return Err(ControllerError::HostedWithoutDatastore),
        };
        if let StateLocation::DataDir(dir) = &config.state {
            std::fs::create_dir_all(dir).map_err(|source| ControllerError::DataDir { path: dir.clone(), source })?;
        }
        let mut store_config = StoreConfig::new(url);
        store_config.sync = config.sqlite_sync;
        let store = Store::open(store_config).await?;
        let pki = match &config.state {
            StateLocation::DataDir(dir) => ClusterPki::load_or_create(&dir.join("pki"), &names)?,
            StateLocation::Hosted(key) => {
                let (secrets, created) = stored_pki::load_or_create(&store, key).await?;
                if created {
                    tracing::info!("created the cluster PKI and stored it, sealed, in the datastore");
                }
                ClusterPki::from_secrets(secrets, &names, "the datastore's cluster PKI")?
            }
        };
        let serving_certificate = Arc::new(kaasd_tunnel::tls::ServingCertificate::new(&pki.serving, &pki.ca.cert_pem)?);
        let tls = kaasd_tunnel::tls::api_server_config(serving_certificate.clone(), &pki.ca.cert_pem)?;

        let address = SocketAddr::new(config.bind_address, config.api_port);
        let listener =
            TcpListener::bind(address).await.map_err(|source| ControllerError::Listen { address, source })?;
        let listen_address = listener.local_addr().map_err(|source| ControllerError::Listen { address, source })?;

        let advertise_port = config.advertise_port.unwrap_or(listen_address.port());
        let server_address = format!("{}:{advertise_port}", config.advertise_address);
        let tokens =
            apiserver::tokens::TokenIssuer::new(&pki.service_account_key_pem, &pki.service_account_public_key_pem()?)
                .map_err(|error| ControllerError::Client(error.to_string()))?;
        let api = Arc::new(ApiServer::new(
            ObjectStore::new(store.clone()),
            apiserver::registry::Registry::new(apiserver::registry::built_in_resources()),
            server_address,
            config.service_cidr,
            tokens,
        ));
        let stop_serving = CancellationToken::new();
        let serving = TaskTracker::new();
        serving.spawn(server::serve(listener, Arc::new(tls), api.clone(), stop_serving.clone()));
        let stop_background = CancellationToken::new();
        let background = TaskTracker::new();
        bootstrap::ensure(&api, &config, advertise_port)
            .await
            .map_err(|error| ControllerError::Bootstrap(error.to_string()))?;
        api.reload_custom_resources().await.map_err(|error| ControllerError::Bootstrap(error.to_string()))?;
        let following = apiserver::follow_custom_resources(api.clone());
        let stop = stop_background.clone();
        background.spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = following => {}
            }
        });

        let server_url = format!("https://{}", url_host(config.bind_address, listen_address.port()));
        let client = loopback_client(&pki, &server_url).await?;
        let replica = pki.issue_client("system:kaasd-replica", &["system:masters"])?;
        api.set_replica_identity(kaasd_tunnel::tls::client_config(
            &pki.ca.cert_pem,
            &replica.cert_pem,
            &replica.key_pem,
        )?);
        let identity = replica_identity(&config, advertise_port);
        background.spawn(kubernetes_endpoints::run(
            store.clone(),
            client.clone(),
            identity.clone(),
            kubernetes_endpoints::Advertised { address: config.advertise_address, port: advertise_port },
            stop_background.clone(),
        ));
        let settings = controllers::Settings {
            cluster_cidr: config.cluster_cidr,
            identity,
            local_path_dir: config.local_path_dir.clone(),
        };
        controllers::spawn_all(client, api.clone(), pki.clone(), settings, stop_background.clone(), &background);
        background.spawn(compact_history(store.clone(), config.compaction_interval, stop_background.clone()));
        background.spawn(renew_serving_certificate(pki.clone(), names, serving_certificate, stop_background.clone()));
        let admin_kubeconfig = match &config.state {
            StateLocation::DataDir(dir) => {
                let path = dir.join("pki").join("admin.conf");
                let text = pki.admin_kubeconfig(&server_url, &config.cluster_name);
                kaasd_tunnel::pki::write_file(&path, &text, true)?;
                Some(path)
            }
            StateLocation::Hosted(_) => None,
        };
        // Ready only once everything a client needs exists, the admin kubeconfig included.
        api.set_ready();
        Ok(Controller {
            api,
            pki,
            listen_address,
            admin_kubeconfig,
            store,
            stop_background,
            background,
            stop_serving,
            serving,
        })
    }

    /// Drains in the order that lets nothing hold the next step open: the in-process controllers stop first (their
    /// watches are requests to this server), then every open watch ends its stream cleanly, then the listener
    /// closes and lets the remaining requests finish, and last the datastore closes (which frees the SQLite file
    /// for the next process).
    pub async fn shutdown(self) {
        self.stop_background.cancel();
        self.background.close();
        self.background.wait().await;
        self.api.start_draining();
        self.stop_serving.cancel();
        self.serving.close();
        self.serving.wait().await;
        self.store.close().await;
    }
}

/// Compacts the datastore every `interval` to the revision it had `interval` ago, on the process that leads (one
/// per database). Upstream compacts etcd the same way, every 5 minutes by default, which is how long a client can
/// resume a watch or a paged list.
async fn compact_history(store: Store, interval: std::time::Duration, cancel: CancellationToken) {
    let mut previous = store.revision();
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        if store.is_leader() && previous > 0 {
            if let Err(error) = store.compact(previous).await {
                tracing::debug!(error = %error, "compaction skipped");
            }
        }
        previous = store.revision();
    }
}

/// How often the serving certificate's expiry is looked at.
const RENEWAL_CHECK: std::time::Duration = std::time::Duration::from_secs(3600);

/// Replaces the serving certificate in memory when it nears expiry: new connections get the new one, open ones
/// keep theirs, so a long-running replica never serves an expired certificate and never restarts for it. (A
/// data directory's file is renewed at the next start, by `ClusterPki::load_or_create`.)
async fn renew_serving_certificate(
    pki: ClusterPki,
    names: ServingNames,
    serving: Arc<kaasd_tunnel::tls::ServingCertificate>,
    cancel: CancellationToken,
) {
    let mut current = pki.serving.cert_pem.clone();
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(RENEWAL_CHECK) => {}
        }
        if !kaasd_tunnel::pki::due_for_renewal(&current) {
            continue;
        }
        let renewed = pki.issue_serving(&names).map_err(kaasd_tunnel::tls::TlsError::from);
        match renewed.and_then(|renewed| serving.replace(&renewed).map(|()| renewed)) {
            Ok(renewed) => {
                tracing::info!("renewed the API serving certificate");
                current = renewed.cert_pem;
            }
            Err(error) => {
                tracing::warn!(error = %error, "cannot renew the API serving certificate; retrying in an hour")
            }
        }
    }
}

/// A kube-rs client for kaasd's own controllers: a fresh client certificate in `system:masters`, over loopback.
async fn loopback_client(pki: &ClusterPki, server_url: &str) -> Result<kube::Client, ControllerError> {
    let identity = pki.issue_client("system:kube-controller-manager", &["system:masters"])?;
    let text =
        kaasd_tunnel::pki::kubeconfig(server_url, "kaasd", "kube-controller-manager", &pki.ca.cert_pem, &identity);
    let kubeconfig =
        kube::config::Kubeconfig::from_yaml(&text).map_err(|error| ControllerError::Client(error.to_string()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
        .await
        .map_err(|error| ControllerError::Client(error.to_string()))?;
    kube::Client::try_from(config).map_err(|error| ControllerError::Client(error.to_string()))
}

/// This replica's name among the replicas of one cluster: its host name and the address and port it serves on
/// (several replicas on one machine differ by port, replicas in pods by host name).
fn replica_identity(config: &ControllerConfig, port: u16) -> String {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let hostname = hostname.trim();
    let hostname = if hostname.is_empty() { "kaasd" } else { hostname };
    format!("{hostname}_{}", url_host(config.advertise_address, port))
}

/// Where a local client reaches the API: loopback when the server listens everywhere.
fn url_host(bind: IpAddr, port: u16) -> String {
    match bind {
        IpAddr::V4(address) if address.is_unspecified() => format!("127.0.0.1:{port}"),
        IpAddr::V6(address) if address.is_unspecified() => format!("127.0.0.1:{port}"),
        IpAddr::V4(address) => format!("{address}:{port}"),
        IpAddr::V6(address) => format!("[{address}]:{port}"),
    }
}

/// The names every serving certificate carries.
fn serving_names(config: &ControllerConfig) -> ServingNames {
    let dns_names = [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    .iter()
    .map(|name| name.to_string())
    .collect();
    let mut ip_addresses =
        vec![IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V4(config.service_cidr.first()), config.advertise_address];
    if !config.bind_address.is_unspecified() {
        ip_addresses.push(config.bind_address);
    }
    ServingNames { dns_names, ip_addresses }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_cidrs_parse_and_count() {
        let cidr = Ipv4Cidr::parse("10.96.0.7/12").unwrap();
        assert_eq!(cidr.to_string(), "10.96.0.0/12");
        assert_eq!(cidr.first(), Ipv4Addr::new(10, 96, 0, 1));
        assert!(cidr.contains(Ipv4Addr::new(10, 111, 255, 254)));
        assert!(!cidr.contains(Ipv4Addr::new(10, 112, 0, 1)));
        assert!(Ipv4Cidr::parse("10.96.0.0").is_err());
        assert!(Ipv4Cidr::parse("10.96.0.0/31").is_err());
    }
}
