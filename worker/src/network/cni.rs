//! The minimal pod network, enough for sandboxes to start: a CNI bridge `kaasd0` with addresses from the Node's
//! `spec.podCIDR` (host-local IPAM) and portmap for hostPort. containerd's CRI plugin adds the loopback interface
//! itself. Routes to other nodes and masquerading are in `routes`, Services in `proxy`.

use std::path::{Path, PathBuf};

use serde_json::json;

/// The bridge every pod on the node is plugged into; it holds the gateway address of the node's pod range.
pub const BRIDGE: &str = "kaasd0";

/// The file containerd's CRI plugin loads (the first `.conflist` in its conf dir, by name).
pub const CONFLIST_NAME: &str = "10-kaasd.conflist";

/// The network configuration list for `pod_cidr`; host-local keeps its leases in `ipam_dir`.
pub fn render_conflist(pod_cidr: &str, ipam_dir: &Path) -> String {
    let conflist = json!({
        // 0.4.0 is the newest CNI spec version the plugins of Debian 12 (1.1.1) and containerd 1.6 both speak
        // with CHECK support.
        "cniVersion": "0.4.0",
        "name": "kaasd",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": true,
                // Masquerading is the worker's (routes.rs): the plugin's would also rewrite traffic to other
                // nodes' pods, which must keep its pod address.
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": pod_cidr}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": ipam_dir,
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": true}},
        ],
    });
    serde_json::to_string_pretty(&conflist).expect("JSON")
}

/// Writes the conflist for `pod_cidr` into `conf_dir` if it differs from what is there; true if it changed.
pub fn write_conflist(conf_dir: &Path, ipam_dir: &Path, pod_cidr: &str) -> std::io::Result<bool> {
    let path: PathBuf = conf_dir.join(CONFLIST_NAME);
    let wanted = render_conflist(pod_cidr, ipam_dir);
    if std::fs::read_to_string(&path).is_ok_and(|current| current == wanted) {
        return Ok(false);
    }
    std::fs::create_dir_all(conf_dir)?;
    // Written aside and renamed, so containerd's watcher never loads half a file.
    let partial = conf_dir.join(format!(".{CONFLIST_NAME}.partial"));
    std::fs::write(&partial, wanted)?;
    std::fs::rename(partial, path)?;
    Ok(true)
}

/// The bridge keeps the gateway address of the range it was created for, and the bridge plugin refuses to add a
/// second one: when the Node's range is another (a node that joined a new cluster, or whose range was
/// reassigned), the old bridge is removed so the next sandbox creates it afresh. Uses iproute2's `ip`.
pub fn remove_stale_bridge(pod_cidr: &str) {
    let Ok(output) = std::process::Command::new("ip").args(["-4", "-o", "addr", "show", "dev", BRIDGE]).output() else {
        return;
    };
    let text = String::from_utf8_lossy(&output.stdout);
    let Some(address) = text.split_whitespace().skip_while(|word| *word != "inet").nth(1) else { return };
    if gateway_in(address, pod_cidr) {
        return;
    }
    tracing::info!(bridge.address = address, pod.cidr = pod_cidr, "removing the pod bridge of an earlier pod range");
    let _ = std::process::Command::new("ip").args(["link", "delete", BRIDGE]).status();
}

/// Deletes the pod bridge, if it is there (the pods' veth ends go with their sandboxes).
pub fn delete_bridge() -> Result<(), String> {
    let exists = std::process::Command::new("ip")
        .args(["link", "show", "dev", BRIDGE])
        .output()
        .map_err(|error| format!("cannot run ip ({error}); install iproute2"))?;
    if !exists.status.success() {
        return Ok(());
    }
    let output = std::process::Command::new("ip")
        .args(["link", "delete", BRIDGE])
        .output()
        .map_err(|error| format!("cannot run ip ({error}); install iproute2"))?;
    if !output.status.success() {
        return Err(format!("cannot delete {BRIDGE}: {}", String::from_utf8_lossy(&output.stderr).trim()));
    }
    Ok(())
}

/// Whether the bridge address `a.b.c.d/len` lies in `cidr`.
fn gateway_in(address: &str, cidr: &str) -> bool {
    let parse = |text: &str| -> Option<(u32, u32)> {
        let (ip, length) = text.split_once('/')?;
        let ip: std::net::Ipv4Addr = ip.parse().ok()?;
        let length: u32 = length.parse().ok()?;
        Some((u32::from(ip), if length == 0 { 0 } else { u32::MAX << (32 - length.min(32)) }))
    };
    match (parse(address), parse(cidr)) {
        (Some((ip, _)), Some((network, mask))) => ip & mask == network & mask,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_bridge_address_belongs_to_its_range() {
        assert!(super::gateway_in("10.244.0.1/24", "10.244.0.0/24"));
        assert!(!super::gateway_in("10.244.201.1/24", "10.244.0.0/24"));
    }

    use super::*;

    #[test]
    fn conflist_uses_the_node_pod_cidr() {
        let text = render_conflist("10.244.3.0/24", Path::new("/var/lib/kaasd/cni/networks"));
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        let bridge = &value["plugins"][0];
        assert_eq!(bridge["type"], "bridge");
        assert_eq!(bridge["bridge"], "kaasd0");
        assert_eq!(bridge["ipam"]["ranges"][0][0]["subnet"], "10.244.3.0/24");
        assert_eq!(bridge["ipam"]["dataDir"], "/var/lib/kaasd/cni/networks");
        assert_eq!(value["plugins"][1]["type"], "portmap");
    }

    #[test]
    fn rewrites_only_on_change() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = dir.path().join("ipam");
        assert!(write_conflist(dir.path(), &ipam, "10.244.0.0/24").unwrap());
        assert!(!write_conflist(dir.path(), &ipam, "10.244.0.0/24").unwrap());
        assert!(write_conflist(dir.path(), &ipam, "10.244.1.0/24").unwrap());
    }
}
