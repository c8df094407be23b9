//! Two `kaasd controller` processes on one PostgreSQL or MariaDB database serve one cluster: what one writes the
//! other reads, and the other's watches see it.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use kaasd_e2e::controller::Controller;
use kaasd_e2e::databases::ServerDatabase;

fn two_controllers_share_one_cluster(kind: &str) {
    let Some(database) = ServerDatabase::create(kind) else { return };
    let arguments = vec!["--datastore".to_string(), database.url.clone()];
    let first = Controller::start_with(arguments.clone()).expect("the first controller starts");
    let mut second = Controller::start_replica_of(&first, arguments).expect("the second controller starts");

    // A watch through the second controller, then a write through the first.
    let mut watch = second
        .kubectl_command(&["get", "configmaps", "--watch-only", "-o", "name", "--request-timeout=30s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = watch.stdout.take().unwrap();
    let (lines, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    std::thread::sleep(Duration::from_millis(1500));
    first
        .kubectl_stdin(
            &["apply", "-f", "-"],
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: shared}\ndata: {from: first}\n",
        )
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut seen = Vec::new();
    while Instant::now() < deadline && !seen.iter().any(|line: &String| line == "configmap/shared") {
        if let Ok(line) = received.recv_timeout(Duration::from_millis(100)) {
            seen.push(line);
        }
    }
    let _ = watch.kill();
    let _ = watch.wait();
    assert!(seen.iter().any(|line| line == "configmap/shared"), "the second controller's watch saw {seen:?}");

    // Read-after-write across processes, and writes through the second seen by the first.
    let read = second.kubectl(&["get", "configmap", "shared", "-o", "jsonpath={.data.from}"]).unwrap();
    assert_eq!(read, "first");
    second.kubectl(&["patch", "configmap", "shared", "--type=merge", "-p", r#"{"data":{"from":"second"}}"#]).unwrap();
    let read = first.kubectl(&["get", "configmap", "shared", "-o", "jsonpath={.data.from}"]).unwrap();
    assert_eq!(read, "second");
    // One set of bootstrap objects, one kubernetes Service address.
    let services = first.kubectl(&["get", "services", "-A", "-o", "name"]).unwrap();
    assert_eq!(services.lines().filter(|line| *line == "service/kubernetes").count(), 1, "{services}");

    // The kubernetes Service's endpoints list both replicas, then only the first once the second has stopped.
    let both = {
        let mut ports = vec![first.address().port(), second.address().port()];
        ports.sort();
        ports
    };
    wait_for_api_ports(&first, &both);
    second.stop().expect("the second controller stops");
    wait_for_api_ports(&first, &[first.address().port()]);
}

/// Waits until the `kubernetes` Endpoints and EndpointSlices list exactly these ports, all on 127.0.0.1.
fn wait_for_api_ports(controller: &Controller, ports: &[u16]) {
    let listed = |what: &[&str], path: &str| -> Vec<String> {
        let jsonpath = format!("jsonpath={path}");
        let arguments: Vec<&str> = ["get"].iter().chain(what).chain(&["-o", jsonpath.as_str()]).copied().collect();
        let text = controller.kubectl(&arguments).unwrap_or_default();
        let mut words: Vec<String> = text.split_whitespace().map(String::from).collect();
        words.sort();
        words
    };
    let wanted: Vec<String> = {
        let mut wanted: Vec<String> = ports.iter().map(|port| port.to_string()).collect();
        wanted.sort();
        wanted
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let endpoint_ports = listed(&["endpoints/kubernetes"], "{.subsets[*].ports[*].port}");
        let slice_ports =
            listed(&["endpointslices", "-l", "kubernetes.io/service-name=kubernetes"], "{.items[*].ports[*].port}");
        let addresses = listed(&["endpoints/kubernetes"], "{.subsets[*].addresses[*].ip}");
        if endpoint_ports == wanted && slice_ports == wanted && addresses.iter().all(|ip| ip == "127.0.0.1") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the kubernetes endpoints list ports {endpoint_ports:?} (slices {slice_ports:?}, addresses {addresses:?}), \
             not {wanted:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn two_controllers_on_postgres_serve_one_cluster() {
    two_controllers_share_one_cluster("postgres");
}

#[test]
fn two_controllers_on_mariadb_serve_one_cluster() {
    two_controllers_share_one_cluster("mariadb");
}
