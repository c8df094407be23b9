//! The command line. Every flag can also come from a `KAASD_*` environment variable, so the same binary is
//! configured the same way by hand, by systemd units and by containers.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub const DEFAULT_DATASTORE: &str = "sqlite:///var/lib/kaasd/db/state.db";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:2379";
pub const DEFAULT_DATA_DIR: &str = "/var/lib/kaasd";

#[derive(Debug, Parser)]
#[command(name = "kaasd", version = crate::VERSION, about = "A single-binary Kubernetes distribution whose state lives in SQL")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The control plane: the Kubernetes API server (and, as they land, scheduler and controllers), state in SQL.
    Controller(ControllerArgs),
    /// The node agent: joins with a token and keeps a reverse tunnel to the controller, so it works behind NAT.
    /// It registers its Node, renews its Lease and runs the node's pods in its own containerd.
    Worker(WorkerArgs),
    /// Container images for the worker's containerd, from archives (no registry needed).
    Images {
        #[command(subcommand)]
        command: ImagesCommand,
    },
    /// Join tokens for workers: create, list, revoke (run where the controller runs).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Kubeconfigs for this cluster.
    Kubeconfig {
        #[command(subcommand)]
        command: KubeconfigCommand,
    },
    /// The datastore on its own: etcd's API on SQLite, PostgreSQL or MySQL.
    Datastore {
        #[command(subcommand)]
        command: DatastoreCommand,
    },
    /// Install kaasd as a system service (systemd or OpenRC), with the given flags, and start it.
    Install {
        #[command(subcommand)]
        command: InstallCommand,
    },
    /// Start the installed kaasd service.
    Start(ServiceArgs),
    /// Stop the installed kaasd service (pods keep running).
    Stop(ServiceArgs),
    /// What runs here: role, version, process, API, node and containerd.
    Status(StatusArgs),
    /// Remove the installed service (stopping it first); the data directory is kept.
    Uninstall(ServiceArgs),
    /// Remove everything kaasd made on this machine: containers and pod sandboxes, pod volume mounts, the pod
    /// network (bridge, nftables table, cluster DNS address) and the data directory. kaasd must not be running.
    Reset(ResetArgs),
}

/// The init systems `kaasd install` writes services for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InitSystem {
    Systemd,
    Openrc,
}

#[derive(Debug, Subcommand)]
pub enum InstallCommand {
    /// Install `kaasd controller` as the service kaasd-controller; the flags are those of `kaasd controller`.
    Controller {
        #[command(flatten)]
        install: InstallArgs,
        #[command(flatten)]
        arguments: ControllerArgs,
    },
    /// Install `kaasd worker` as the service kaasd-worker; the flags are those of `kaasd worker`. The join token
    /// is copied to /etc/kaasd/worker-token (mode 0600).
    Worker {
        #[command(flatten)]
        install: InstallArgs,
        #[command(flatten)]
        arguments: WorkerArgs,
    },
}

/// How `kaasd install` installs (the role's own flags go into the service's environment file).
#[derive(Debug, Clone, Args)]
pub struct InstallArgs {
    /// The init system to write a service for. Default: the one running this machine (systemd when none runs).
    #[arg(long, value_enum)]
    pub init: Option<InitSystem>,
    /// Replace an installed service of this role (and its environment file).
    #[arg(long)]
    pub force: bool,
    /// Write the files but do not enable or start the service.
    #[arg(long)]
    pub no_start: bool,
    /// Write every file under this directory instead of / (to build an image or a package); implies --no-start.
    #[arg(long, hide = true)]
    pub root: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct ServiceArgs {
    /// Which installed service: controller or worker. Default: the one installed (if only one is).
    #[arg(long, value_enum)]
    pub role: Option<Role>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    Controller,
    Worker,
}

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub service: ServiceArgs,
    /// The data directory. Default: the installed service's (KAASD_DATA_DIR in its environment file), else
    /// /var/lib/kaasd.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct ResetArgs {
    /// The data directory to remove. Default: the installed service's (KAASD_DATA_DIR in its environment file),
    /// else /var/lib/kaasd.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The containerd binary to start (briefly) to remove the pods' containers. Default: `containerd` from PATH.
    #[arg(long, env = "KAASD_CONTAINERD_BIN")]
    pub containerd_bin: Option<PathBuf>,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ControllerArgs {
    /// Where the controller keeps its PKI and, with the default datastore, its SQLite database.
    #[arg(long, env = "KAASD_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,

    /// Where cluster state lives: sqlite://PATH, postgres://USER@HOST:PORT/DB or mysql://USER@HOST:PORT/DB.
    /// Default: SQLite at <data-dir>/db/state.db. Controllers sharing one PostgreSQL or MySQL database serve one cluster.
    #[arg(long, env = "KAASD_DATASTORE")]
    pub datastore: Option<String>,

    /// Port of the Kubernetes API (HTTPS).
    #[arg(long, env = "KAASD_API_PORT", default_value_t = 6443)]
    pub api_port: u16,

    /// Address to listen on.
    #[arg(long, env = "KAASD_BIND_ADDRESS", default_value = "0.0.0.0")]
    pub bind_address: IpAddr,

    /// Address other machines reach this controller at. Default: the first non-loopback IPv4 address.
    #[arg(long, env = "KAASD_ADVERTISE_ADDRESS")]
    pub advertise_address: Option<IpAddr>,

    /// The range Service ClusterIPs come from.
    #[arg(long, env = "KAASD_SERVICE_CIDR", default_value = "10.96.0.0/12")]
    pub service_cidr: String,

    /// The range pod addresses come from; each node gets a /24 of it.
    #[arg(long, env = "KAASD_CLUSTER_CIDR", default_value = "10.244.0.0/16")]
    pub cluster_cidr: String,

    /// How hard SQLite syncs each commit: full survives power loss, normal only a crash of kaasd.
    #[arg(long, env = "KAASD_SYNC", value_enum, default_value_t = Sync::Full)]
    pub sync: Sync,

    /// Also run a worker in this process, so this machine runs pods too: same data directory, the Node named after
    /// the host, joined without a token.
    #[arg(long, env = "KAASD_ENABLE_WORKER")]
    pub enable_worker: bool,

    /// With --enable-worker: the port of the worker's own endpoint, on loopback.
    #[arg(long, env = "KAASD_AGENT_PORT", default_value_t = 10250)]
    pub agent_port: u16,

    /// With --enable-worker: the containerd binary the worker starts. Default: `containerd` from PATH.
    #[arg(long, env = "KAASD_CONTAINERD_BIN")]
    pub containerd_bin: Option<PathBuf>,

    /// With --enable-worker: use the CRI runtime listening on this unix socket instead of starting containerd.
    #[arg(long, env = "KAASD_CRI_SOCKET")]
    pub cri_socket: Option<PathBuf>,

    /// With --enable-worker: the resolver configuration cluster DNS forwards other names to, and pods with
    /// dnsPolicy Default use (the kubelet's --resolv-conf).
    #[arg(long, env = "KAASD_RESOLV_CONF", default_value = "/etc/resolv.conf")]
    pub resolv_conf: PathBuf,

    /// The port other machines reach the API at, when it differs from --api-port (a load balancer or NodePort in
    /// front). Goes into the `kubernetes` Service's endpoints and join tokens.
    #[arg(long, env = "KAASD_ADVERTISE_PORT")]
    pub advertise_port: Option<u16>,

    /// Extra host names or IP addresses for the API's serving certificate (repeat, or comma-separated), e.g. the
    /// DNS name of a load balancer in front.
    #[arg(long = "tls-san", env = "KAASD_TLS_SAN", value_delimiter = ',')]
    pub tls_sans: Vec<String>,

    /// The cluster's name in kubeconfigs.
    #[arg(long, env = "KAASD_CLUSTER_NAME", default_value = "kaasd")]
    pub cluster_name: String,

    /// Where volumes of the default StorageClass `local-path` live on the nodes: each is a directory
    /// `pvc-<uid>_<namespace>_<claim>` below this path on the node its first pod ran on.
    #[arg(long, env = "KAASD_LOCAL_PATH_DIR", default_value = kaasd_controller::LOCAL_PATH_DIR)]
    pub local_path_dir: PathBuf,

    /// How much datastore history is kept, and how often older revisions are compacted away: a watch or a paged
    /// list can resume from any revision younger than this. As kube-apiserver's flag of the same name, e.g. 5m, 90s.
    #[arg(long, env = "KAASD_ETCD_COMPACTION_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    pub etcd_compaction_interval: Duration,

    /// Run as a hosted control plane (e.g. a pod of another cluster): no data directory and nothing written to
    /// disk. The cluster PKI is kept in the --datastore (PostgreSQL or MySQL), sealed with the secret key; every
    /// replica started with the same datastore and key serves the same cluster. Logs are JSON unless
    /// KAASD_LOG_FORMAT says otherwise.
    #[arg(long, env = "KAASD_HOSTED", conflicts_with = "enable_worker")]
    pub hosted: bool,

    #[command(flatten)]
    pub secret_key: SecretKeyArgs,
}

/// The key that seals the cluster PKI in the datastore (hosted control planes).
#[derive(Debug, Clone, Args)]
pub struct SecretKeyArgs {
    /// With --hosted: a file holding the secret key (32 random bytes, base64) that seals the cluster PKI in the
    /// datastore; make one with `head -c 32 /dev/urandom | base64`. Or give the key itself in KAASD_SECRET_KEY.
    #[arg(long, env = "KAASD_SECRET_KEY_FILE")]
    pub secret_key_file: Option<PathBuf>,

    /// The secret key itself (base64), instead of --secret-key-file; meant for the environment (KAASD_SECRET_KEY,
    /// e.g. from a Kubernetes Secret), since a command line is visible to every user of the machine.
    #[arg(long, env = "KAASD_SECRET_KEY", hide = true, hide_env_values = true, conflicts_with = "secret_key_file")]
    pub secret_key: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// A join token from `kaasd token create`. Needed only for the first start: the node certificate is kept in
    /// the data directory and later starts use it.
    #[arg(long, env = "KAASD_TOKEN", hide_env_values = true, conflicts_with = "token_file")]
    pub token: Option<String>,

    /// A file holding the join token.
    #[arg(long, env = "KAASD_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,

    /// Where the worker keeps its node certificate (<data-dir>/worker), its containerd (<data-dir>/containerd),
    /// pod volumes (<data-dir>/pods) and image archives to import at start (<data-dir>/images).
    #[arg(long, env = "KAASD_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,

    /// The Node's name. Default: this machine's hostname.
    #[arg(long, env = "KAASD_NODE_NAME")]
    pub node_name: Option<String>,

    /// The address the Node reports (InternalIP). Default: the one this machine reaches the controller from.
    #[arg(long, env = "KAASD_NODE_IP")]
    pub node_ip: Option<IpAddr>,

    /// Port of the worker's own HTTP endpoint, on loopback; the controller reaches it through the tunnel.
    #[arg(long, env = "KAASD_AGENT_PORT", default_value_t = 10250)]
    pub agent_port: u16,

    /// Lifetime to ask for the node certificate, e.g. 24h (at least 10m). Default: the controller's (30 days).
    /// It is renewed after two thirds of it.
    #[arg(long, env = "KAASD_CERTIFICATE_LIFETIME", value_parser = parse_duration)]
    pub certificate_lifetime: Option<Duration>,

    /// The containerd binary the worker starts. Default: `containerd` from PATH.
    #[arg(long, env = "KAASD_CONTAINERD_BIN")]
    pub containerd_bin: Option<PathBuf>,

    /// Use the CRI runtime listening on this unix socket instead of starting containerd.
    #[arg(long, env = "KAASD_CRI_SOCKET")]
    pub cri_socket: Option<PathBuf>,

    /// The resolver configuration cluster DNS forwards other names to, and pods with dnsPolicy Default use (the
    /// kubelet's --resolv-conf).
    #[arg(long, env = "KAASD_RESOLV_CONF", default_value = "/etc/resolv.conf")]
    pub resolv_conf: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum ImagesCommand {
    /// Import image archives (OCI image layout or `docker save`, plain or gzip) into the worker's containerd,
    /// under full names (`busybox:1.36` is `docker.io/library/busybox:1.36`). The worker must be running.
    Import {
        /// The archives.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The worker's data directory (its containerd listens on <data-dir>/containerd/containerd.sock).
        #[arg(long, env = "KAASD_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
        /// containerd's socket, when it is not the worker's own.
        #[arg(long, env = "KAASD_CONTAINERD_SOCKET")]
        containerd_socket: Option<PathBuf>,
        /// The containerd binary; `ctr` is looked for next to it. Default: `ctr` from PATH.
        #[arg(long, env = "KAASD_CONTAINERD_BIN")]
        containerd_bin: Option<PathBuf>,
    },
    /// Write an image archive of this machine's static busybox (Debian: `apt install busybox-static`), to import
    /// with `kaasd images import`: a first image to run pods with when no registry is reachable.
    Busybox {
        /// Where to write the archive (OCI image layout in a tar file).
        #[arg(long, short, default_value = "busybox.tar")]
        output: PathBuf,
        /// The image's name; short names are Docker Hub's (`busybox:1.36` is `docker.io/library/busybox:1.36`).
        #[arg(long, default_value = "busybox:1.36")]
        tag: String,
        /// The busybox binary; it must be statically linked.
        #[arg(long, default_value = kaasd_worker::images::BUSYBOX_BINARY)]
        busybox: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a join token and print it (only it) on stdout.
    Create {
        /// The controller's data directory (for its admin credentials and CA).
        #[arg(long, env = "KAASD_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
        /// An admin kubeconfig to use instead of the data directory's, e.g. a hosted control plane's (from
        /// `kaasd kubeconfig admin --datastore …`).
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
        /// How long the token can be used to join, e.g. 30m, 24h; 0 never expires.
        #[arg(long, default_value = "24h", value_parser = parse_expiry)]
        expiry: Duration,
        /// Controller address(es) workers dial, HOST:PORT (repeat for several). Default: the controllers'
        /// advertised addresses (the `kubernetes` Service's endpoints).
        #[arg(long = "server")]
        servers: Vec<String>,
        /// A note shown by `kaasd token list`.
        #[arg(long)]
        description: Option<String>,
    },
    /// List join tokens: id, expiry, usages and how many nodes joined with each.
    List {
        #[arg(long, env = "KAASD_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
        /// An admin kubeconfig to use instead of the data directory's.
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
    },
    /// Revoke a join token now (nodes that already joined keep their certificates).
    Revoke {
        /// The token's id (the first column of `kaasd token list`).
        id: String,
        #[arg(long, env = "KAASD_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
        /// An admin kubeconfig to use instead of the data directory's.
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
    },
}

/// A duration with a unit (`d` for days too), or `0`: never expires (returned as zero).
fn parse_expiry(text: &str) -> Result<Duration, String> {
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    if &text[split..] == "d" {
        let days: u64 = text[..split].parse().map_err(|_| format!("{text:?} is not a duration like 24h or 7d"))?;
        return Ok(Duration::from_secs(days * 86_400));
    }
    parse_duration(text)
}

#[derive(Debug, Subcommand)]
pub enum KubeconfigCommand {
    /// Print the admin kubeconfig (cluster-admin, client certificate) of the controller on this machine, or,
    /// with --datastore and the secret key, a new one for a hosted control plane (from the PKI stored there).
    Admin {
        /// The controller's data directory.
        #[arg(long, env = "KAASD_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
        /// The API server URL to put in it, e.g. https://203.0.113.7:6443. Default: the one the controller wrote;
        /// required with --datastore.
        #[arg(long)]
        server: Option<String>,
        /// A hosted control plane's datastore (postgres://… or mysql://…): issue a new admin certificate from the
        /// PKI stored there instead of reading the data directory.
        #[arg(long, env = "KAASD_DATASTORE", requires = "server")]
        datastore: Option<String>,
        #[command(flatten)]
        secret_key: SecretKeyArgs,
        /// The cluster's name in the kubeconfig.
        #[arg(long, env = "KAASD_CLUSTER_NAME", default_value = "kaasd")]
        cluster_name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum DatastoreCommand {
    /// Serve the etcd v3 API, for the Kubernetes API server, etcdctl or any etcd client.
    Serve(DatastoreServeArgs),
}

#[derive(Debug, Clone, Args)]
pub struct DatastoreServeArgs {
    /// Where the data lives: sqlite://PATH, postgres://USER@HOST:PORT/DB or mysql://USER@HOST:PORT/DB.
    #[arg(long, env = "KAASD_DATASTORE", default_value = DEFAULT_DATASTORE)]
    pub datastore: String,

    /// Address for the etcd API, HOST:PORT.
    #[arg(long, env = "KAASD_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: String,

    /// How hard SQLite syncs each commit: full survives power loss, normal only a crash of kaasd.
    #[arg(long, value_enum, default_value_t = Sync::Full)]
    pub sync: Sync,

    /// Serve TLS with this certificate (PEM); needs --key-file.
    #[arg(long, requires = "key_file")]
    pub cert_file: Option<PathBuf>,

    /// The private key of --cert-file (PEM).
    #[arg(long, requires = "cert_file")]
    pub key_file: Option<PathBuf>,

    /// Require client certificates signed by this CA (PEM); needs --cert-file.
    #[arg(long, requires = "cert_file")]
    pub trusted_ca_file: Option<PathBuf>,

    /// How often watchers that ask for progress notifications get one, e.g. 5s, 500ms, 1m.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub progress_notify_interval: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Sync {
    Full,
    Normal,
}

/// Parses a duration written as a number and a unit: `ms`, `s`, `m` or `h`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| format!("{text:?} is not a duration like 5s or 500ms"))?;
    let duration = match unit {
        "ms" => Duration::from_millis(number),
        "s" => Duration::from_secs(number),
        "m" => Duration::from_secs(number * 60),
        "h" => Duration::from_secs(number * 3600),
        _ => return Err(format!("{text:?} has no unit: use ms, s, m or h")),
    };
    if duration.is_zero() {
        return Err("the duration must be longer than zero".into());
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve_args(arguments: &[&str]) -> Result<DatastoreServeArgs, clap::Error> {
        let command_line = ["kaasd", "datastore", "serve"].iter().chain(arguments);
        match Cli::try_parse_from(command_line)?.command {
            Command::Datastore { command: DatastoreCommand::Serve(arguments) } => Ok(arguments),
            other => panic!("`datastore serve` parsed as {other:?}"),
        }
    }

    #[test]
    fn controller_defaults_and_bad_cidrs() {
        if std::env::vars().any(|(name, _)| name.starts_with("KAASD_")) {
            return;
        }
        let Command::Controller(arguments) = Cli::try_parse_from(["kaasd", "controller"]).unwrap().command else {
            panic!("`controller` parsed as something else");
        };
        assert_eq!(arguments.api_port, 6443);
        assert_eq!(arguments.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(arguments.datastore, None);
        assert_eq!(arguments.etcd_compaction_interval, Duration::from_secs(300));
        assert!(Cli::try_parse_from(["kaasd", "controller", "--api-port", "http"]).is_err());
        assert!(Cli::try_parse_from(["kaasd", "controller", "--etcd-compaction-interval", "5"]).is_err());
    }

    #[test]
    fn defaults_serve_the_local_sqlite_database_on_the_etcd_port() {
        // The defaults must not depend on the test's environment.
        if std::env::var_os("KAASD_DATASTORE").is_some() || std::env::var_os("KAASD_LISTEN").is_some() {
            return;
        }
        let arguments = serve_args(&[]).expect("no arguments are needed");
        assert_eq!(arguments.datastore, DEFAULT_DATASTORE);
        assert_eq!(arguments.listen, DEFAULT_LISTEN);
        assert_eq!(arguments.sync, Sync::Full);
        assert_eq!(arguments.progress_notify_interval, Duration::from_secs(5));
    }

    #[test]
    fn tls_needs_a_certificate_and_its_key() {
        assert!(serve_args(&["--cert-file", "server.crt"]).is_err());
        assert!(serve_args(&["--trusted-ca-file", "ca.crt"]).is_err());
        let arguments = serve_args(&["--cert-file", "server.crt", "--key-file", "server.key"]).expect("valid");
        assert_eq!(arguments.key_file, Some(PathBuf::from("server.key")));
    }

    #[test]
    fn sync_normal_is_accepted() {
        assert_eq!(serve_args(&["--sync", "normal"]).expect("valid").sync, Sync::Normal);
        assert!(serve_args(&["--sync", "sometimes"]).is_err());
    }

    #[test]
    fn token_expiry_accepts_days_and_never() {
        assert_eq!(parse_expiry("0"), Ok(Duration::ZERO));
        assert_eq!(parse_expiry("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_expiry("30m"), Ok(Duration::from_secs(1800)));
        let Command::Token { command: TokenCommand::Create { expiry, .. } } =
            Cli::try_parse_from(["kaasd", "token", "create", "--expiry", "1h"]).unwrap().command
        else {
            panic!("`token create` parsed as something else");
        };
        assert_eq!(expiry, Duration::from_secs(3600));
        assert!(parse_expiry("soon").is_err());
    }

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("fast").is_err());
    }
}
