//! Host settings the pod network and the Service proxy rely on, applied by the worker at start so nothing has to
//! be set by hand: forwarding, bridge netfilter, and the cluster DNS address.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

/// The interface that holds the cluster DNS address, so pods' queries to it reach this node's resolver with no
/// DNAT, whether or not the controller is reachable. Loopback, not a dummy interface as NodeLocal DNSCache uses:
/// it exists on every host, including kernels built without the dummy driver.
pub const DNS_INTERFACE: &str = "lo";

/// The label kaasd's addresses on the DNS interface carry, so `kaasd reset` removes those and nothing else.
pub const DNS_ADDRESS_LABEL: &str = "lo:kaasd";

/// Routing between pods and the outside needs forwarding; Service DNAT for pods on one bridge needs bridged
/// packets to pass netfilter (`br_netfilter`).
pub fn enable_forwarding() {
    set_sysctl("net/ipv4/ip_forward", "1");
    if !Path::new("/proc/sys/net/bridge").exists() {
        let loaded = Command::new("modprobe").arg("br_netfilter").status().is_ok_and(|status| status.success());
        if !loaded {
            tracing::warn!(
                "the br_netfilter kernel module is not loaded and cannot be loaded here; a pod reaching a Service \
                 whose endpoint shares its node may fail (run `modprobe br_netfilter` on the host)"
            );
            return;
        }
    }
    set_sysctl("net/bridge/bridge-nf-call-iptables", "1");
}

fn set_sysctl(name: &str, value: &str) {
    let path = Path::new("/proc/sys").join(name);
    if std::fs::read_to_string(&path).is_ok_and(|current| current.trim() == value) {
        return;
    }
    if let Err(error) = std::fs::write(&path, value) {
        tracing::warn!(sysctl = name.replace('/', "."), error = %error, "cannot set a sysctl the pod network needs");
    }
}

/// Puts `address` on the DNS interface.
pub fn ensure_dns_address(address: Ipv4Addr) -> Result<(), String> {
    let ip = |args: &[&str]| -> Result<std::process::Output, String> {
        Command::new("ip").args(args).output().map_err(|error| format!("cannot run ip ({error}); install iproute2"))
    };
    let current = ip(&["-4", "-o", "addr", "show", "dev", DNS_INTERFACE])?;
    let wanted = format!("{address}/32");
    if String::from_utf8_lossy(&current.stdout).split_whitespace().any(|word| word == wanted) {
        return Ok(());
    }
    let output = ip(&["addr", "add", &wanted, "dev", DNS_INTERFACE, "label", DNS_ADDRESS_LABEL])?;
    if !output.status.success() {
        return Err(format!(
            "cannot add {wanted} to {DNS_INTERFACE}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(())
}

/// Removes the cluster DNS addresses this worker put on the DNS interface (those with kaasd's label).
pub fn remove_dns_addresses() -> Result<(), String> {
    let output = Command::new("ip")
        .args(["-4", "addr", "flush", "dev", DNS_INTERFACE, "label", DNS_ADDRESS_LABEL])
        .output()
        .map_err(|error| format!("cannot run ip ({error}); install iproute2"))?;
    if !output.status.success() {
        return Err(format!(
            "cannot remove kaasd's addresses from {DNS_INTERFACE}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(())
}
