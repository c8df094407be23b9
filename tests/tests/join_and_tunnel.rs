//! Joining and the reverse tunnel, end to end in network namespaces: the controller on one side of a NAT, workers
//! behind it (the controller cannot open a connection to them), real `kaasd token`, `kaasd worker` and kubectl.

use std::net::IpAddr;
use std::process::Output;
use std::time::{Duration, Instant};

use anyhow::bail;
use base64::Engine;
use kaasd_e2e::controller::Controller;
use kaasd_e2e::natlab::{NatLab, CP_ADDRESS};
use kaasd_e2e::worker::{run_worker_to_exit, Worker};

const JOIN_TIMEOUT: Duration = Duration::from_secs(60);

fn lab_and_controller(edges: usize) -> (NatLab, Controller) {
    let lab = NatLab::up(edges).expect("the NAT lab comes up (needs root, iproute2 and nftables)");
    let controller = Controller::start_in_namespace(lab.cp(), IpAddr::V4(CP_ADDRESS)).expect("controller starts");
    (lab, controller)
}

/// `kaasd token create` where the controller runs; returns the token line.
fn create_token(controller: &Controller, arguments: &[&str]) -> String {
    let output = kaasd(controller, &[&["token", "create"], arguments].concat());
    assert!(output.status.success(), "token create failed: {}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    assert_eq!(stdout.lines().count(), 1, "token create prints the token and nothing else: {stdout:?}");
    stdout.trim().to_string()
}

fn kaasd(controller: &Controller, arguments: &[&str]) -> Output {
    let binary = kaasd_e2e::kaasd_binary().expect("kaasd builds");
    controller
        .command_here(binary)
        .args(arguments)
        .arg("--data-dir")
        .arg(controller.data_dir())
        .env_remove("KAASD_DATA_DIR")
        .output()
        .expect("kaasd runs")
}

fn wait_until(timeout: Duration, what: &str, mut check: impl FnMut() -> anyhow::Result<bool>) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last = None;
    loop {
        match check() {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(error) => last = Some(error),
        }
        if Instant::now() > deadline {
            bail!("{what} did not happen within {timeout:?} (last error: {last:?})");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn node_ready(controller: &Controller, node: &str) -> anyhow::Result<bool> {
    let status = controller.kubectl(&[
        "get",
        "node",
        node,
        "-o",
        r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}"#,
    ])?;
    Ok(status.trim() == "True")
}

fn wait_ready(controller: &Controller, worker: &Worker) {
    wait_until(JOIN_TIMEOUT, "the node becoming Ready", || node_ready(controller, worker.node_name())).unwrap_or_else(
        |error| panic!("{error}\nworker log:\n{}\ncontroller log:\n{}", worker.log(), controller.log()),
    );
}

/// The agent's own endpoint on the node, through the API server's node proxy.
fn agent_health(controller: &Controller, node: &str) -> anyhow::Result<String> {
    controller.kubectl(&["get", "--raw", &format!("/api/v1/nodes/{node}/proxy/healthz")])
}

/// Whether a TCP connection from `namespace` to `address:port` succeeds within 3 s.
fn can_connect(lab: &NatLab, namespace: &str, address: &str, port: u16) -> bool {
    lab.command(namespace, "timeout")
        .args(["3", "bash", "-c", &format!("exec 3<>/dev/tcp/{address}/{port}")])
        .status()
        .map(|status| status.success())
        .unwrap_or(false)
}

/// A kubeconfig (in `dir`) that uses a worker's own node certificate.
fn node_kubeconfig(worker: &Worker, controller: &Controller) -> std::path::PathBuf {
    let dir = worker.data_dir().join("worker");
    let path = worker.data_dir().join("node.kubeconfig");
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    \
         certificate-authority: {dir}/ca.crt\nusers:\n- name: node\n  user:\n    client-certificate: {dir}/node.crt\n    \
         client-key: {dir}/node.key\ncontexts:\n- name: node\n  context:\n    cluster: c\n    user: node\ncurrent-context: node\n",
        server = controller.url(),
        dir = dir.display(),
    );
    std::fs::write(&path, text).expect("kubeconfig written");
    path
}

/// kubectl as a node (its certificate), in the controller's namespace.
fn kubectl_as_node(controller: &Controller, kubeconfig: &std::path::Path, arguments: &[&str]) -> Output {
    controller
        .command_here(kaasd_e2e::controller::KUBECTL)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(arguments)
        .env_remove("KUBECONFIG")
        .output()
        .expect("kubectl runs")
}

#[test]
fn a_worker_behind_nat_joins_and_is_reached_only_through_its_tunnel() {
    let (lab, controller) = lab_and_controller(1);
    let token = create_token(&controller, &["--expiry", "1h"]);
    let mut worker = Worker::start(Some(lab.edge(0)), &token, "edge-a").expect("worker starts");
    wait_ready(&controller, &worker);

    // The node certificate came from an approved CSR requested by the token's bootstrap user.
    let requests = controller
        .kubectl(&[
            "get",
            "csr",
            "-o",
            "jsonpath={range .items[*]}{.spec.username} {.status.conditions[0].type}{\"\\n\"}{end}",
        ])
        .unwrap();
    assert!(
        requests.lines().any(|line| line.starts_with("system:bootstrap:") && line.ends_with("Approved")),
        "{requests}"
    );
    let lease = controller.kubectl(&[
        "get",
        "lease",
        "-n",
        "kube-node-lease",
        "edge-a",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    assert_eq!(lease.unwrap(), "edge-a");
    let addresses = controller.kubectl(&["get", "node", "edge-a", "-o", "jsonpath={.status.addresses[0].address}"]);
    assert_eq!(addresses.unwrap(), lab.edge_address(0).to_string(), "the node reports its own address");
    let list = kaasd(&controller, &["token", "list"]);
    let listed = String::from_utf8_lossy(&list.stdout);
    let id = token_id(&token);
    assert!(
        listed.lines().any(|line| line.starts_with(&id) && line.split_whitespace().nth(3) == Some("1")),
        "{listed}"
    );

    // The agent's endpoint and a port on the node, both through the tunnel.
    assert_eq!(agent_health(&controller, "edge-a").unwrap(), "ok");
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("hello.txt"), "hello from the edge\n").unwrap();
    let edge_address = lab.edge_address(0).to_string();
    let mut server = lab
        .command(lab.edge(0), "python3")
        .args(["-m", "http.server", "8080", "--bind", &edge_address, "--directory"])
        .arg(site.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3 http.server starts");
    let proxied = wait_until(Duration::from_secs(10), "the edge web server answering through the tunnel", || {
        Ok(controller.kubectl(&["get", "--raw", "/api/v1/nodes/edge-a:8080/proxy/hello.txt"])?
            == "hello from the edge\n")
    });
    // ... and only through it: the controller's side cannot open a connection to the edge.
    let direct = can_connect(&lab, lab.cp(), &edge_address, 8080);
    let from_the_edge = can_connect(&lab, lab.edge(0), &edge_address, 8080);
    let _ = server.kill();
    let _ = server.wait();
    proxied.unwrap();
    assert!(from_the_edge, "the web server runs");
    assert!(!direct, "the NAT must keep the controller side from dialling the edge");

    // A restart needs no token: the node certificate is in the data directory.
    worker.restart().unwrap();
    wait_until(Duration::from_secs(30), "the restarted worker's tunnel", || {
        Ok(agent_health(&controller, "edge-a")? == "ok")
    })
    .unwrap_or_else(|error| panic!("{error}\nworker log:\n{}", worker.log()));
}

fn token_id(token: &str) -> String {
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token.trim_start_matches("kaasd1.")).unwrap();
    let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
    value["id"].as_str().unwrap().to_string()
}

#[test]
fn bad_expired_and_revoked_tokens_are_refused_with_one_clear_line() {
    let (lab, controller) = lab_and_controller(1);
    let edge = Some(lab.edge(0));
    let refused = |arguments: &[&str], expected: &str| {
        let (status, stderr) = run_worker_to_exit(edge, arguments, Duration::from_secs(60)).unwrap();
        assert!(!status.success(), "{arguments:?} must fail");
        let errors: Vec<&str> = stderr.lines().filter(|line| line.starts_with("error:")).collect();
        assert_eq!(errors.len(), 1, "one error line: {stderr}");
        assert!(errors[0].contains(expected), "{arguments:?}: expected {expected:?} in {stderr}");
    };
    refused(&["--token", "not-a-token", "--node-name", "n1"], "the token is malformed");
    refused(&["--node-name", "n1"], "pass --token");

    // A token pinning another CA: the worker will not talk to this controller.
    let token = create_token(&controller, &[]);
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token.trim_start_matches("kaasd1.")).unwrap();
    let mut value: serde_json::Value = serde_json::from_slice(&json).unwrap();
    value["caSha256"] = serde_json::json!("0".repeat(64));
    let pinned_elsewhere =
        format!("kaasd1.{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string()));
    refused(&["--token", &pinned_elsewhere, "--node-name", "n1"], "does not present the cluster CA this token pins");

    // Revoked: deleted at once.
    let revoked = create_token(&controller, &[]);
    let output = kaasd(&controller, &["token", "revoke", &token_id(&revoked)]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    refused(&["--token", &revoked, "--node-name", "n1"], "refused the token");
    let again = kaasd(&controller, &["token", "revoke", &token_id(&revoked)]);
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("no token with id"));

    // Expired: refused even before the cleaner deletes it.
    let expired = create_token(&controller, &["--expiry", "1s"]);
    std::thread::sleep(Duration::from_millis(2100));
    refused(&["--token", &expired, "--node-name", "n1"], "refused the token");

    // A valid token cannot take over a registered node.
    let worker = Worker::start(edge, &token, "taken").unwrap();
    wait_ready(&controller, &worker);
    let second = create_token(&controller, &[]);
    refused(&["--token", &second, "--node-name", "taken", "--agent-port", "10251"], "already registered");
}

#[test]
fn a_node_certificate_cannot_act_as_another_node() {
    let (lab, controller) = lab_and_controller(2);
    let token = create_token(&controller, &[]);
    let first = Worker::start(Some(lab.edge(0)), &token, "first").unwrap();
    let second = Worker::start(Some(lab.edge(1)), &token, "second").unwrap();
    wait_ready(&controller, &first);
    wait_ready(&controller, &second);
    let as_first = node_kubeconfig(&first, &controller);
    let forbidden = |arguments: &[&str]| {
        let output = kubectl_as_node(&controller, &as_first, arguments);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success() && stderr.contains("Forbidden"), "{arguments:?} must be forbidden: {stderr}");
    };
    forbidden(&["label", "node", "second", "hijacked=true"]);
    forbidden(&["annotate", "lease", "-n", "kube-node-lease", "second", "hijacked=true"]);
    forbidden(&["delete", "node", "second"]);
    forbidden(&["get", "--raw", "/api/v1/nodes/second/proxy/healthz"]);
    forbidden(&["get", "--raw", "/api/v1/nodes/first/proxy/healthz"]);
    let mut create = kubectl_as_node_stdin(
        &controller,
        &as_first,
        &["create", "-f", "-"],
        r#"{"apiVersion":"v1","kind":"Node","metadata":{"name":"third"}}"#,
    );
    assert!(!create.status.success() && String::from_utf8_lossy(&create.stderr).contains("Forbidden"), "{create:?}");
    // What it may do: change its own Node.
    create = kubectl_as_node(&controller, &as_first, &["label", "node", "first", "owned=true"]);
    assert!(create.status.success(), "{}", String::from_utf8_lossy(&create.stderr));
    assert_eq!(
        controller.kubectl(&["get", "node", "second", "-o", "jsonpath={.metadata.labels.hijacked}"]).unwrap(),
        ""
    );
}

fn kubectl_as_node_stdin(
    controller: &Controller,
    kubeconfig: &std::path::Path,
    arguments: &[&str],
    stdin: &str,
) -> Output {
    use std::io::Write;
    let mut child = controller
        .command_here(kaasd_e2e::controller::KUBECTL)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(arguments)
        .env_remove("KUBECONFIG")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn the_tunnel_comes_back_after_a_controller_kill_and_a_cut_link() {
    let (lab, mut controller) = lab_and_controller(1);
    let token = create_token(&controller, &[]);
    let worker = Worker::start(Some(lab.edge(0)), &token, "steady").unwrap();
    wait_ready(&controller, &worker);
    assert_eq!(agent_health(&controller, "steady").unwrap(), "ok");

    controller.kill().unwrap();
    controller.restart().unwrap();
    // The worker notices the closed connection at once and redials with a short backoff.
    wait_until(Duration::from_secs(5), "proxying again after the controller restarted", || {
        Ok(agent_health(&controller, "steady")? == "ok")
    })
    .unwrap_or_else(|error| panic!("{error}\nworker log:\n{}\ncontroller log:\n{}", worker.log(), controller.log()));

    // A silent 30 s outage: no FIN, no RST; keepalives notice it and the worker redials until the link is back.
    lab.cut_link(true).unwrap();
    std::thread::sleep(Duration::from_secs(30));
    assert!(agent_health(&controller, "steady").is_err(), "nothing gets through a cut link");
    lab.cut_link(false).unwrap();
    wait_until(Duration::from_secs(45), "proxying again after the link came back", || {
        Ok(agent_health(&controller, "steady")? == "ok")
    })
    .unwrap_or_else(|error| panic!("{error}\nworker log:\n{}\ncontroller log:\n{}", worker.log(), controller.log()));
}

#[test]
fn removing_a_node_closes_its_tunnel_and_revokes_its_certificate() {
    let (lab, controller) = lab_and_controller(1);
    let token = create_token(&controller, &[]);
    let mut worker = Worker::start(Some(lab.edge(0)), &token, "leaving").unwrap();
    wait_ready(&controller, &worker);
    assert_eq!(agent_health(&controller, "leaving").unwrap(), "ok");
    let as_node = node_kubeconfig(&worker, &controller);

    controller.kubectl(&["delete", "node", "leaving"]).unwrap();
    wait_until(Duration::from_secs(5), "the controller closing the tunnel", || {
        Ok(controller.log().contains("closing the tunnel of a removed node"))
    })
    .unwrap();
    // Its certificate no longer authenticates, so it can neither re-register nor reconnect its tunnel.
    let output = kubectl_as_node(&controller, &as_node, &["get", "--raw", "/api/v1/nodes/leaving"]);
    assert!(!output.status.success() && String::from_utf8_lossy(&output.stderr).contains("Unauthorized"), "{output:?}");
    let status = worker.wait_exit(Duration::from_secs(30)).unwrap().expect("the worker stops once it is removed");
    assert!(!status.success());
    assert!(worker.log().contains("no longer accepts node \"leaving\"'s certificate"), "{}", worker.log());
    assert!(controller.kubectl(&["get", "node", "leaving"]).is_err(), "it did not come back");

    // A new token joins the name again.
    let fresh = create_token(&controller, &[]);
    let again = Worker::start(Some(lab.edge(0)), &fresh, "leaving").unwrap();
    wait_ready(&controller, &again);
    wait_until(Duration::from_secs(10), "the rejoined node's tunnel", || {
        Ok(agent_health(&controller, "leaving")? == "ok")
    })
    .unwrap();
}

/// Two controllers of one cluster (one PostgreSQL database): the worker's tunnel ends at the first, and node proxy
/// through the second still reaches the node (the second forwards to the first).
#[test]
fn every_replica_reaches_a_node_whose_tunnel_is_on_another() {
    let Some(database) = kaasd_e2e::databases::ServerDatabase::create("postgres") else { return };
    let arguments = vec!["--datastore".to_string(), database.url.clone()];
    let first = Controller::start_with(arguments.clone()).expect("the first controller starts");
    let second = Controller::start_replica_of(&first, arguments).expect("the second controller starts");
    let token = create_token(&first, &["--server", &first.address().to_string()]);
    let worker = Worker::start(None, &token, "replicated").unwrap();
    wait_ready(&first, &worker);
    wait_until(Duration::from_secs(10), "the tunnel through the first controller", || {
        Ok(agent_health(&first, "replicated")? == "ok")
    })
    .unwrap();
    assert_eq!(agent_health(&second, "replicated").unwrap(), "ok", "the second replica forwards to the first");
}
