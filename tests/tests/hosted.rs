//! Hosted control planes: `kaasd controller --hosted` replicas with nothing on disk and nothing copied between
//! them, on one PostgreSQL or MariaDB database, run as an unprivileged user. The cluster PKI lives sealed in the
//! datastore; every replica serves the same cluster.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use kaasd_e2e::controller::{Controller, Hosted};
use kaasd_e2e::databases::ServerDatabase;
use kaasd_e2e::worker::Worker;

/// `kaasd ARGUMENTS` with a timeout, from a clean environment: for commands expected to exit.
fn kaasd(arguments: &[&str], secret_key: Option<&str>) -> Output {
    let mut command = Command::new("timeout");
    command.arg("60").arg(kaasd_e2e::kaasd_binary().expect("kaasd builds")).args(arguments);
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("KAASD_") && name != "KAASD_BINARY") {
        command.env_remove(name);
    }
    if let Some(key) = secret_key {
        command.env("KAASD_SECRET_KEY", key);
    }
    command.output().expect("kaasd runs")
}

/// Workers here run in this machine's network namespace (pod bridge, nftables tables, agent port): one at a time.
static ONE_WORKER_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn worker_turn() -> std::sync::MutexGuard<'static, ()> {
    ONE_WORKER_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn wait_until(timeout: Duration, what: &str, mut check: impl FnMut() -> anyhow::Result<bool>) {
    let deadline = Instant::now() + timeout;
    let mut last = None;
    while Instant::now() < deadline {
        match check() {
            Ok(true) => return,
            Ok(false) => last = None,
            Err(error) => last = Some(error),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out waiting for {what}; last error: {last:?}");
}

/// The CA a kubeconfig trusts (its base64 certificate-authority-data).
fn kubeconfig_ca(kubeconfig: &str) -> String {
    kubeconfig
        .lines()
        .find_map(|line| line.trim().strip_prefix("certificate-authority-data: "))
        .expect("the kubeconfig has a CA")
        .to_string()
}

fn two_hosted_replicas_serve_one_cluster(kind: &str) {
    let Some(database) = ServerDatabase::create(kind) else { return };
    let hosted = Hosted { datastore: database.url.clone(), secret_key: Hosted::new_secret_key() };
    let first = Controller::start_hosted(hosted.clone(), Vec::new()).expect("the first hosted replica starts");
    let second = Controller::start_hosted(hosted, Vec::new()).expect("the second hosted replica starts");

    // One CA: the kubeconfig made from the stored PKI verifies both replicas' serving certificates (kubectl
    // checks them), and both replicas' kubeconfigs name the same CA.
    let first_config = std::fs::read_to_string(first.kubeconfig()).unwrap();
    let second_config = std::fs::read_to_string(second.kubeconfig()).unwrap();
    assert_eq!(kubeconfig_ca(&first_config), kubeconfig_ca(&second_config));

    // One cluster: a write through either is read through the other.
    first.kubectl(&["create", "configmap", "through-first", "--from-literal=replica=first"]).unwrap();
    second.kubectl(&["create", "configmap", "through-second", "--from-literal=replica=second"]).unwrap();
    let names = |controller: &Controller| {
        controller.kubectl(&["get", "configmaps", "-o", "jsonpath={.items[*].metadata.name}"]).unwrap()
    };
    wait_until(Duration::from_secs(10), "both ConfigMaps through both replicas", || {
        Ok([&first, &second].iter().all(|controller| {
            let seen = names(controller);
            seen.contains("through-first") && seen.contains("through-second")
        }))
    });

    // One ServiceAccount key: a token issued by one replica is accepted by the other.
    let token = first.kubectl(&["create", "token", "default", "-n", "default"]).unwrap();
    let output = Command::new(kaasd_e2e::controller::KUBECTL)
        .args(["--server", &second.url(), "--certificate-authority"])
        .arg(ca_file(&second))
        .args(["--token", token.trim(), "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"])
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "system:serviceaccount:default:default");

    // Logs are JSON lines by default, for a log collector.
    let log = first.log();
    let line = log.lines().find(|line| !line.trim().is_empty()).expect("the replica logged");
    let parsed: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
    assert!(parsed.get("level").is_some(), "{line}");
}

/// The CA of a controller's kubeconfig, written to a file beside it.
fn ca_file(controller: &Controller) -> std::path::PathBuf {
    use base64::Engine;
    let config = std::fs::read_to_string(controller.kubeconfig()).unwrap();
    let pem = base64::engine::general_purpose::STANDARD.decode(kubeconfig_ca(&config)).unwrap();
    let path = controller.data_dir().join("ca.crt");
    std::fs::write(&path, pem).unwrap();
    path
}

#[test]
fn two_hosted_replicas_on_postgres_serve_one_cluster() {
    two_hosted_replicas_serve_one_cluster("postgres");
}

#[test]
fn two_hosted_replicas_on_mariadb_serve_one_cluster() {
    two_hosted_replicas_serve_one_cluster("mariadb");
}

/// A token made through one replica (with a kubeconfig from `kaasd kubeconfig admin`) joins a worker whose tunnel
/// lands on that replica; node proxy through the other replica reaches the node too.
#[test]
fn a_worker_joins_a_hosted_cluster_and_every_replica_reaches_it() {
    let _turn = worker_turn();
    let Some(database) = ServerDatabase::create("postgres") else { return };
    let hosted = Hosted { datastore: database.url.clone(), secret_key: Hosted::new_secret_key() };
    let first = Controller::start_hosted(hosted.clone(), Vec::new()).expect("the first hosted replica starts");
    let second = Controller::start_hosted(hosted, Vec::new()).expect("the second hosted replica starts");
    let kubeconfig = first.kubeconfig();
    let output = kaasd(
        &["token", "create", "--kubeconfig", kubeconfig.to_str().unwrap(), "--server", &first.address().to_string()],
        None,
    );
    assert!(output.status.success(), "token create: {}", String::from_utf8_lossy(&output.stderr));
    let token = String::from_utf8(output.stdout).unwrap().trim().to_string();
    let worker = Worker::start(None, &token, "hosted-node").expect("the worker starts");
    let health = |controller: &Controller| {
        controller.kubectl(&["get", "--raw", "/api/v1/nodes/hosted-node/proxy/healthz"]).map(|body| body == "ok")
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !health(&first).unwrap_or(false) {
        assert!(
            Instant::now() < deadline,
            "the worker did not join the hosted cluster\nworker log:\n{}\nreplica log:\n{}",
            worker.log(),
            first.log()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(health(&second).unwrap(), "the second replica forwards to the node's tunnel on the first");
    let listed = kaasd(&["token", "list", "--kubeconfig", kubeconfig.to_str().unwrap()], None);
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
}

/// A replica started with another secret key stops with one clear error, and the stored PKI is untouched: the
/// right key still opens it and the cluster still serves.
#[test]
fn a_wrong_secret_key_is_refused_and_changes_nothing() {
    let Some(database) = ServerDatabase::create("postgres") else { return };
    let hosted = Hosted { datastore: database.url.clone(), secret_key: Hosted::new_secret_key() };
    let mut first = Controller::start_hosted(hosted.clone(), Vec::new()).expect("the hosted replica starts");
    let before = first.hosted_admin_kubeconfig("https://example.invalid:6443").unwrap();
    first.stop().unwrap();

    let port = kaasd_e2e::free_port().unwrap().to_string();
    let wrong = Hosted::new_secret_key();
    let output = kaasd(
        &["controller", "--hosted", "--datastore", &database.url, "--api-port", &port, "--bind-address", "127.0.0.1"],
        Some(&wrong),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let error = stderr.lines().filter(|line| line.starts_with("error: ")).collect::<Vec<_>>();
    assert_eq!(error.len(), 1, "one error line: {stderr}");
    assert!(error[0].contains("cannot be opened") && error[0].contains("--secret-key-file"), "{}", error[0]);
    let printed = kaasd(
        &["kubeconfig", "admin", "--datastore", &database.url, "--server", "https://example.invalid:6443"],
        Some(&wrong),
    );
    assert_eq!(printed.status.code(), Some(1), "kubeconfig admin with the wrong key fails too");

    let after = first.hosted_admin_kubeconfig("https://example.invalid:6443").unwrap();
    assert_eq!(kubeconfig_ca(&before), kubeconfig_ca(&after), "the stored CA is unchanged");
    first.restart().expect("the replica starts again with the right key");
    first.kubectl(&["get", "namespace", "kube-system"]).unwrap();

    // Nothing to start from: no datastore, no key.
    let no_datastore = kaasd(&["controller", "--hosted"], Some(&wrong));
    assert_eq!(no_datastore.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&no_datastore.stderr).contains("--datastore postgres://"));
    let no_key = kaasd(&["controller", "--hosted", "--datastore", &database.url], None);
    assert_eq!(no_key.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&no_key.stderr).contains("head -c 32 /dev/urandom | base64"));
}

/// Two clusters on one PostgreSQL server, each in a database kaasd creates itself: separate PKIs, separate objects.
#[test]
fn two_clusters_on_one_server_are_isolated_in_databases_they_create() {
    let (Some(one), Some(two)) =
        (ServerDatabase::not_yet_created("postgres", "one"), ServerDatabase::not_yet_created("postgres", "two"))
    else {
        return;
    };
    assert!(!one.exists() && !two.exists());
    let first = Controller::start_hosted(
        Hosted { datastore: one.url.clone(), secret_key: Hosted::new_secret_key() },
        Vec::new(),
    )
    .expect("cluster one starts");
    let second = Controller::start_hosted(
        Hosted { datastore: two.url.clone(), secret_key: Hosted::new_secret_key() },
        Vec::new(),
    )
    .expect("cluster two starts");
    assert!(one.exists() && two.exists(), "kaasd created both databases");
    first.kubectl(&["create", "namespace", "only-in-one"]).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let missing = second.kubectl_output(&["get", "namespace", "only-in-one"]).unwrap();
    assert!(!missing.status.success(), "cluster two does not see cluster one's namespace");
    let first_config = std::fs::read_to_string(first.kubeconfig()).unwrap();
    let second_config = std::fs::read_to_string(second.kubeconfig()).unwrap();
    assert_ne!(kubeconfig_ca(&first_config), kubeconfig_ca(&second_config), "each cluster has its own CA");
    // Cluster one's credentials are not accepted by cluster two.
    let crossed = Command::new(kaasd_e2e::controller::KUBECTL)
        .arg("--kubeconfig")
        .arg(first.kubeconfig())
        .args(["--server", &second.url(), "--certificate-authority"])
        .arg(ca_file(&second))
        .args(["get", "namespaces"])
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    assert!(!crossed.status.success(), "cluster one's admin certificate is foreign to cluster two");
}

/// kill -9 of the replica holding a worker's tunnel while it takes writes: every write it acknowledged is there
/// through the survivor, and the worker's tunnel moves to the survivor (its token names both).
#[test]
fn killing_a_replica_under_writes_loses_no_acknowledged_write_and_the_tunnel_moves() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let _turn = worker_turn();

    let Some(database) = ServerDatabase::create("postgres") else { return };
    let hosted = Hosted { datastore: database.url.clone(), secret_key: Hosted::new_secret_key() };
    let mut first = Controller::start_hosted(hosted.clone(), Vec::new()).expect("the first hosted replica starts");
    let second = Controller::start_hosted(hosted, Vec::new()).expect("the second hosted replica starts");
    let kubeconfig = first.kubeconfig();
    let output = kaasd(
        &[
            "token",
            "create",
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "--server",
            &first.address().to_string(),
            "--server",
            &second.address().to_string(),
        ],
        None,
    );
    assert!(output.status.success(), "token create: {}", String::from_utf8_lossy(&output.stderr));
    let token = String::from_utf8(output.stdout).unwrap().trim().to_string();
    let worker = Worker::start(None, &token, "survivor-node").expect("the worker starts");
    let health = |controller: &Controller| {
        controller
            .kubectl(&["get", "--raw", "/api/v1/nodes/survivor-node/proxy/healthz"])
            .is_ok_and(|body| body == "ok")
    };
    wait_until(Duration::from_secs(60), "the worker's tunnel", || Ok(health(&first)));

    // Writes through the first replica until it dies; only those kubectl saw succeed count as acknowledged.
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let acknowledged = acknowledged.clone();
        let stop = stop.clone();
        let kubeconfig = first.kubeconfig();
        let cache = first.data_dir().join("writer-cache");
        std::thread::spawn(move || {
            let mut number = 0;
            while !stop.load(Ordering::Relaxed) {
                let name = format!("load-{number}");
                number += 1;
                let status = Command::new(kaasd_e2e::controller::KUBECTL)
                    .arg("--kubeconfig")
                    .arg(&kubeconfig)
                    .arg("--cache-dir")
                    .arg(&cache)
                    .args(["create", "configmap", &name, "--request-timeout=5s"])
                    .env_remove("KUBECONFIG")
                    .output()
                    .expect("kubectl runs");
                if status.status.success() {
                    acknowledged.lock().unwrap().push(name);
                }
            }
        })
    };
    wait_until(Duration::from_secs(30), "some acknowledged writes", || Ok(acknowledged.lock().unwrap().len() >= 10));
    first.kill().unwrap();
    let killed = Instant::now();
    wait_until(Duration::from_secs(30), "the tunnel on the surviving replica", || Ok(health(&second)));
    let moved_in = killed.elapsed();
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    eprintln!("the tunnel moved to the surviving replica {moved_in:?} after kill -9");

    let acknowledged = acknowledged.lock().unwrap().clone();
    let stored = second.kubectl(&["get", "configmaps", "-o", "jsonpath={.items[*].metadata.name}"]).unwrap();
    let stored: std::collections::HashSet<&str> = stored.split_whitespace().collect();
    let lost: Vec<&String> = acknowledged.iter().filter(|name| !stored.contains(name.as_str())).collect();
    assert!(lost.is_empty(), "{} of {} acknowledged writes are lost: {lost:?}", lost.len(), acknowledged.len());
    drop(worker);
}
