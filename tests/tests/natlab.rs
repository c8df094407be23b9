//! The NAT lab behaves like a NAT: edges dial the controller side (which sees the router's address), the controller
//! side cannot dial an edge until `allow_direct`, `cut_link` stops and restores traffic, and dropping a lab removes
//! its namespaces. Each test builds its own lab, so they also prove that labs run side by side.
//! Needs root, iproute2, nftables and python3 (the probes).

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};

use kaasd_e2e::natlab::{NatLab, CP_ADDRESS, ROUTER_CP_ADDRESS};

/// Answers every connection with the peer address it sees, then closes it.
const LISTENER: &str = r#"
import socket, sys
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("0.0.0.0", int(sys.argv[1])))
server.listen(16)
print("ready", flush=True)
while True:
    connection, peer = server.accept()
    connection.sendall(peer[0].encode())
    connection.close()
"#;

/// Connects, prints what the listener sent, and fails when the connection cannot be made in time.
const CONNECT: &str = r#"
import socket, sys
connection = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
print(connection.recv(64).decode())
"#;

const PORT: u16 = 7070;

#[test]
fn edges_dial_out_but_are_not_reachable_from_cp() {
    let lab = NatLab::up(2).expect("natlab");
    let _cp_listener = Listener::start(&lab, lab.cp());
    for edge in 0..lab.edges() {
        let seen_as = connect(&lab, lab.edge(edge), CP_ADDRESS, 5.0).expect("an edge connects to cp");
        assert_eq!(seen_as, ROUTER_CP_ADDRESS.to_string(), "cp should see the router's address (masquerade)");
    }

    let _edge_listener = Listener::start(&lab, lab.edge(0));
    // From another edge, on the same LAN, the listener is reachable: the listener works.
    assert!(connect(&lab, lab.edge(1), lab.edge_address(0), 5.0).is_ok());
    let from_cp = connect(&lab, lab.cp(), lab.edge_address(0), 1.5);
    assert!(from_cp.is_err(), "cp reached an edge through the NAT: {from_cp:?}");

    lab.allow_direct().expect("allow_direct");
    let direct = connect(&lab, lab.cp(), lab.edge_address(0), 5.0).expect("cp connects once direct is allowed");
    assert_eq!(direct, CP_ADDRESS.to_string(), "a direct connection is not masqueraded");
}

#[test]
fn cut_link_blocks_and_restores_traffic() {
    let lab = NatLab::up(1).expect("natlab");
    let _listener = Listener::start(&lab, lab.cp());
    assert!(connect(&lab, lab.edge(0), CP_ADDRESS, 5.0).is_ok());

    lab.cut_link(true).expect("cut the link");
    lab.cut_link(true).expect("cutting twice is fine");
    assert!(connect(&lab, lab.edge(0), CP_ADDRESS, 1.5).is_err(), "traffic passed a cut link");

    lab.cut_link(false).expect("restore the link");
    assert!(connect(&lab, lab.edge(0), CP_ADDRESS, 5.0).is_ok(), "the restored link carries no traffic");
}

#[test]
fn dropping_a_lab_removes_its_namespaces() {
    let lab = NatLab::up(1).expect("natlab");
    let namespaces = [lab.cp().to_string(), lab.router().to_string(), lab.edge(0).to_string()];
    assert!(namespaces.iter().all(|namespace| listed_namespaces().contains(namespace)));
    drop(lab);
    let remaining = listed_namespaces();
    for namespace in &namespaces {
        assert!(!remaining.contains(namespace), "{namespace} is still there after the lab was dropped");
    }
}

struct Listener(Child);

impl Listener {
    fn start(lab: &NatLab, namespace: &str) -> Listener {
        let mut child = lab
            .command(namespace, "python3")
            .args(["-c", LISTENER, &PORT.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("stdout")).read_line(&mut line).expect("listener output");
        assert_eq!(line.trim(), "ready", "the listener did not start");
        Listener(child)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What the listener at `address` says about the connection from `namespace`, or why there was none.
fn connect(lab: &NatLab, namespace: &str, address: Ipv4Addr, timeout_seconds: f64) -> Result<String, String> {
    let output = lab
        .command(namespace, "python3")
        .args(["-c", CONNECT, &address.to_string(), &PORT.to_string(), &timeout_seconds.to_string()])
        .output()
        .expect("python3 runs");
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).lines().last().unwrap_or_default().to_string())
    }
}

fn listed_namespaces() -> Vec<String> {
    let output = Command::new("ip").args(["netns", "list"]).output().expect("ip netns list");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_string)
        .collect()
}
