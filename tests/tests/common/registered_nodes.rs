//! Helpers of the workload tests, which run controllers against Nodes the test registers by hand (no worker).

use std::time::{Duration, Instant};

use kaasd_e2e::controller::Controller;
use serde_json::Value;

/// Registers Ready Nodes with room for pods.
pub fn register_nodes(controller: &Controller, names: &[&str]) {
    for name in names {
        let node = format!(
            "apiVersion: v1\nkind: Node\nmetadata: {{name: {name}, labels: {{kubernetes.io/hostname: {name}}}}}\n"
        );
        controller.kubectl_stdin(&["apply", "-f", "-"], &node).unwrap();
        let status = r#"{"status":{"capacity":{"cpu":"4","memory":"8Gi","pods":"110"},"allocatable":{"cpu":"4","memory":"8Gi","pods":"110"},"conditions":[{"type":"Ready","status":"True","reason":"KubeletReady","message":"ready"}]}}"#;
        controller.kubectl(&["patch", "node", name, "--subresource=status", "--type=merge", "-p", status]).unwrap();
    }
}

/// `kubectl ARGUMENTS -o json`, parsed.
pub fn json(controller: &Controller, arguments: &[&str]) -> Value {
    let mut all = arguments.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&controller.kubectl(&all).unwrap()).unwrap()
}

pub fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .is_some_and(|conditions| conditions.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}
