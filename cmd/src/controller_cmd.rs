//! `kaasd controller` and `kaasd kubeconfig admin`.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use anyhow::Context;
use std::sync::Arc;

use kaasd_controller::{Controller, ControllerConfig, Ipv4Cidr, StateLocation};
use kaasd_datastore::SyncMode;
use kaasd_tunnel::pki::{ClusterPki, ServingNames};
use kaasd_tunnel::sealed::SecretKey;

use crate::cli::{ControllerArgs, SecretKeyArgs, Sync};
use crate::signal::ShutdownSignals;

pub async fn run(arguments: ControllerArgs) -> anyhow::Result<()> {
    let signals = ShutdownSignals::install()?;
    let config = config(&arguments)?;
    let controller = Controller::start(config).await?;
    let port = controller.listen_address.port();
    let mut lines =
        vec![format!("kaasd controller serving the Kubernetes API on https://{}", controller.listen_address)];
    match &controller.admin_kubeconfig {
        Some(path) => {
            let kubeconfig = path.display();
            lines.push(format!("admin kubeconfig: {kubeconfig}"));
            lines.push(format!("try: kubectl --kubeconfig {kubeconfig} get namespaces"));
        }
        None => lines.push(
            "admin kubeconfig: kaasd kubeconfig admin --datastore URL --secret-key-file FILE --server \
             https://ADDRESS:PORT (the same datastore and key)"
                .to_string(),
        ),
    }
    if arguments.enable_worker {
        // No registry is needed (or reached): the worker runs images imported from archives.
        let data_dir = arguments.data_dir.display();
        lines.push(format!(
            "images: kaasd images import --data-dir {data_dir} FILE.tar (docker save or OCI archives), or put them \
             in {data_dir}/images/ before starting; `kaasd images busybox` makes busybox.tar from busybox-static"
        ));
    }
    announce(&lines)?;
    tracing::info!(port, "controller ready");
    // Ready means the API answers; the worker of --enable-worker joins after (its containerd may take a while), and
    // `kaasd status` tells whether it did.
    crate::readiness::ready("controller");
    let worker_cancel = tokio_util::sync::CancellationToken::new();
    let mut worker = None;
    if arguments.enable_worker {
        let config = local_worker_config(&arguments, controller.listen_address.port()).await?;
        worker = Some(tokio::spawn(kaasd_worker::run(config, worker_cancel.clone())));
    }
    let shutdown = signals.shutdown_requested();
    tokio::pin!(shutdown);
    let worker_stopped = match worker.as_mut() {
        Some(running) => tokio::select! {
            () = &mut shutdown => false,
            finished = running => {
                let error = match finished {
                    Ok(Ok(())) => anyhow::anyhow!("it stopped"),
                    Ok(Err(error)) => anyhow::Error::from(error),
                    Err(error) => anyhow::anyhow!("its task failed: {error}"),
                };
                tracing::error!(error = %error, "the worker of --enable-worker stopped; the controller goes on without it");
                true
            }
        },
        None => {
            (&mut shutdown).await;
            false
        }
    };
    if worker_stopped {
        worker = None;
        shutdown.await;
    }
    // The worker goes first: it stops its containerd (pods keep running) while the API is still there.
    worker_cancel.cancel();
    if let Some(worker) = worker {
        let _ = worker.await;
    }
    tracing::info!("draining: stopping the API server and closing the datastore");
    controller.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// The worker of `--enable-worker`: this machine joins its own cluster through loopback, with a token made here on
/// the first start (later starts use the node certificate kept in the data directory).
async fn local_worker_config(arguments: &ControllerArgs, port: u16) -> anyhow::Result<kaasd_worker::WorkerConfig> {
    let joined = kaasd_worker::join::Identity::load(&arguments.data_dir).ok().flatten().is_some();
    let token = if joined {
        None
    } else {
        let servers = vec![format!("127.0.0.1:{port}")];
        let description = Some("the controller's own worker (--enable-worker)".to_string());
        let admin = crate::token_cmd::Admin::from(&arguments.data_dir, None)?;
        let token = crate::token_cmd::create(&admin, std::time::Duration::from_secs(600), servers, description)
            .await
            .context("cannot make a join token for the controller's own worker")?;
        Some(token.encode())
    };
    let advertise = config(arguments)?.advertise_address;
    Ok(kaasd_worker::WorkerConfig {
        // Absolute: containerd's shims and the CNI plugins run in other directories than this process.
        data_dir: std::path::absolute(&arguments.data_dir)
            .with_context(|| format!("cannot make {} an absolute path", arguments.data_dir.display()))?,
        node_name: None,
        token,
        agent_port: arguments.agent_port,
        node_ip: Some(advertise),
        certificate_validity: None,
        containerd_bin: arguments.containerd_bin.clone(),
        cri_socket: arguments.cri_socket.clone(),
        resolv_conf: arguments.resolv_conf.clone(),
        ready: None,
    })
}

/// Turns the flags into a configuration; pure but for reading the machine's addresses.
pub(crate) fn config(arguments: &ControllerArgs) -> anyhow::Result<ControllerConfig> {
    let service_cidr =
        Ipv4Cidr::parse(&arguments.service_cidr).map_err(|error| anyhow::anyhow!("invalid --service-cidr: {error}"))?;
    let cluster_cidr =
        Ipv4Cidr::parse(&arguments.cluster_cidr).ok().filter(|cidr| cidr.prefix <= 24).ok_or_else(|| {
            anyhow::anyhow!(
                "invalid --cluster-cidr {:?}: give an IPv4 range of /24 or larger, e.g. 10.244.0.0/16 (each node \
                 gets a /24 of it)",
                arguments.cluster_cidr
            )
        })?;
    if service_cidr.contains(cluster_cidr.network) || cluster_cidr.contains(service_cidr.network) {
        anyhow::bail!(
            "--cluster-cidr {cluster_cidr} overlaps --service-cidr {service_cidr}: pod and Service addresses must \
             come from different ranges"
        );
    }
    let local_addresses: Vec<IpAddr> = if_addrs::get_if_addrs()
        .map(|interfaces| interfaces.into_iter().map(|interface| interface.ip()).collect())
        .unwrap_or_default();
    let advertise_address = arguments.advertise_address.unwrap_or_else(|| {
        local_addresses
            .iter()
            .copied()
            .find(|address| address.is_ipv4() && !address.is_loopback())
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
    });
    let mut dns_names = Vec::new();
    if let Ok(hostname) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let hostname = hostname.trim();
        if !hostname.is_empty() {
            dns_names.push(hostname.to_string());
        }
    }
    let mut ip_addresses = local_addresses;
    for name in &arguments.tls_sans {
        match name.parse::<IpAddr>() {
            Ok(address) => ip_addresses.push(address),
            Err(_) if is_dns_name(name) => dns_names.push(name.to_ascii_lowercase()),
            Err(_) => anyhow::bail!("invalid --tls-san {name:?}: give a host name (api.example.com) or an IP address"),
        }
    }
    let state = if arguments.hosted {
        match arguments.datastore.as_deref() {
            Some(url) if !url.starts_with("sqlite:") => {}
            _ => anyhow::bail!(
                "--hosted keeps no state on this machine: give --datastore postgres://USER@HOST/DB or \
                 mysql://USER@HOST/DB (KAASD_DATASTORE), shared by every replica of the cluster"
            ),
        }
        StateLocation::Hosted(Arc::new(secret_key(&arguments.secret_key)?))
    } else {
        if arguments.secret_key.secret_key_file.is_some() || arguments.secret_key.secret_key.is_some() {
            anyhow::bail!(
                "a secret key seals the PKI of a hosted control plane: add --hosted, or drop the key to keep the \
                 PKI in --data-dir"
            );
        }
        StateLocation::DataDir(arguments.data_dir.clone())
    };
    Ok(ControllerConfig {
        state,
        datastore: arguments.datastore.clone(),
        bind_address: arguments.bind_address,
        api_port: arguments.api_port,
        advertise_address,
        advertise_port: arguments.advertise_port,
        cluster_name: arguments.cluster_name.clone(),
        extra_names: ServingNames { dns_names, ip_addresses },
        service_cidr,
        cluster_cidr,
        sqlite_sync: match arguments.sync {
            Sync::Full => SyncMode::Full,
            Sync::Normal => SyncMode::Normal,
        },
        local_path_dir: arguments.local_path_dir.clone(),
        compaction_interval: arguments.etcd_compaction_interval,
    })
}

/// A host name as a certificate may carry it: dot-separated labels of letters, digits and hyphens (a leading `*.`
/// for a wildcard).
fn is_dns_name(name: &str) -> bool {
    let name = name.strip_prefix("*.").unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// The key that seals a hosted control plane's PKI: from KAASD_SECRET_KEY or --secret-key-file.
pub(crate) fn secret_key(arguments: &SecretKeyArgs) -> anyhow::Result<SecretKey> {
    let (text, source) = match (&arguments.secret_key, &arguments.secret_key_file) {
        (Some(text), _) => (text.clone(), "KAASD_SECRET_KEY".to_string()),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the secret key file {}", path.display()))?;
            (text, path.display().to_string())
        }
        (None, None) => anyhow::bail!(
            "a hosted control plane needs the secret key that seals its PKI in the datastore: give \
             --secret-key-file FILE or KAASD_SECRET_KEY (make one with `head -c 32 /dev/urandom | base64`; every \
             replica needs the same key)"
        ),
    };
    SecretKey::from_base64(&text).with_context(|| format!("invalid secret key in {source}"))
}

/// `kaasd kubeconfig admin --datastore URL`: a new admin certificate from a hosted control plane's stored PKI,
/// printed as a kubeconfig for `server`.
pub async fn print_stored_admin_kubeconfig(
    datastore: &str,
    secret_key_arguments: &SecretKeyArgs,
    server: &str,
    cluster_name: &str,
) -> anyhow::Result<()> {
    let key = secret_key(secret_key_arguments)?;
    let store = kaasd_datastore::Store::open(kaasd_datastore::StoreConfig::new(datastore)).await?;
    let stored = kaasd_controller::stored_pki::load(&store, &key).await;
    store.close().await;
    let secrets = stored?.ok_or_else(|| {
        anyhow::anyhow!("the datastore holds no cluster PKI: start `kaasd controller --hosted` on it once first")
    })?;
    let pki = ClusterPki::from_secrets(secrets, &ServingNames::default(), "the datastore's cluster PKI")?;
    let text = pki.admin_kubeconfig(server, cluster_name);
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()).context("cannot write to stdout")
}

pub fn print_admin_kubeconfig(data_dir: &Path, server: Option<&str>) -> anyhow::Result<()> {
    let path = data_dir.join("pki").join("admin.conf");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!("cannot read {}: start `kaasd controller --data-dir {}` once first", path.display(), data_dir.display())
    })?;
    let text = match server {
        Some(server) => {
            text.lines()
                .map(|line| match line.trim_start().strip_prefix("server: ") {
                    Some(_) => format!("    server: {server}"),
                    None => line.to_string(),
                })
                .collect::<Vec<_>>()
                .join("\n")
                + "\n"
        }
        None => text,
    };
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()).context("cannot write to stdout")
}

fn announce(lines: &[String]) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    for line in lines {
        writeln!(stdout, "{line}").context("cannot write to stdout")?;
    }
    stdout.flush().context("cannot write to stdout")
}
