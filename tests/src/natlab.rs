//! A NAT lab in network namespaces: a controller side, a router that masquerades, and edge nodes behind it that can
//! dial out but cannot be dialled, as behind a home or cloud NAT. Several labs can run at once (in parallel tests):
//! every lab's namespaces carry a unique prefix, and addresses and interface names live inside the namespaces.
//!
//! ```text
//!  cp  10.0.1.1 [cp0] ── [natcp] 10.0.1.254  router  192.168.50.1 [br0] ─┬─ [eth0] 192.168.50.11  edge 0
//!                                  masquerade edge→cp, drop new cp→edge   └─ [eth0] 192.168.50.12  edge 1 …
//!                                                     192.168.60.1 [br1] ─── [eth0] 192.168.60.11  routed edge 0 …
//! ```
//!
//! Routed edges (optional) sit on a second LAN behind the same NAT: the router forwards between the two LANs
//! without NAT, so an edge and a routed edge reach each other, but only through a router.
//!
//! Needs root, iproute2 and nftables. Processes started in a lab's namespaces are the caller's to stop: dropping the
//! lab removes the namespaces and kills nothing.
//!
//! ```no_run
//! let lab = kaasd_e2e::natlab::NatLab::up(2).expect("natlab");
//! let mut server = lab.command(lab.cp(), "kaasd"); // runs `ip netns exec <cp> kaasd`
//! let mut agent = lab.command(lab.edge(0), "kaasd");
//! ```

use std::ffi::OsStr;
use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use anyhow::{bail, Context};

/// The controller side's address, which edges dial.
pub const CP_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 1);
/// The router's address on the controller side: what the controller sees as the peer of every edge connection.
pub const ROUTER_CP_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 254);
/// Edges get 192.168.50.11 and up.
const FIRST_EDGE_HOST: u8 = 11;
const MAX_EDGES: usize = 200;

/// One lab; dropping it removes its namespaces.
pub struct NatLab {
    prefix: String,
    cp: String,
    router: String,
    edges: Vec<String>,
    routed: Vec<String>,
    /// Namespaces created so far, removed on drop (also after a failed `up`).
    created: Vec<String>,
    cut: AtomicBool,
}

impl NatLab {
    /// Creates the controller side, the router and `edges` edge namespaces (192.168.50.11 and up).
    pub fn up(edges: usize) -> anyhow::Result<NatLab> {
        NatLab::up_with_routed(edges, 0)
    }

    /// [`NatLab::up`] with `routed` more edges on the second LAN (192.168.60.11 and up).
    pub fn up_with_routed(edges: usize, routed: usize) -> anyhow::Result<NatLab> {
        check_prerequisites()?;
        if edges > MAX_EDGES || routed > MAX_EDGES {
            bail!("natlab supports at most {MAX_EDGES} edges per LAN, not {}", edges.max(routed));
        }
        static LABS: AtomicUsize = AtomicUsize::new(0);
        let prefix = format!("kd{}x{}", std::process::id(), LABS.fetch_add(1, Ordering::SeqCst));
        let mut lab = NatLab {
            cp: format!("{prefix}cp"),
            router: format!("{prefix}nat"),
            edges: (0..edges).map(|index| format!("{prefix}e{index}")).collect(),
            routed: (0..routed).map(|index| format!("{prefix}r{index}")).collect(),
            prefix,
            created: Vec::new(),
            cut: AtomicBool::new(false),
        };
        lab.build().with_context(|| format!("setting up natlab {}", lab.prefix))?;
        Ok(lab)
    }

    /// The controller side's namespace (10.0.1.1).
    pub fn cp(&self) -> &str {
        &self.cp
    }

    /// The router's namespace.
    pub fn router(&self) -> &str {
        &self.router
    }

    /// Edge `index`'s namespace, for `index` in `0..edges`.
    pub fn edge(&self, index: usize) -> &str {
        &self.edges[index]
    }

    /// Edge `index`'s address: 192.168.50.11 for edge 0, and up.
    pub fn edge_address(&self, index: usize) -> Ipv4Addr {
        assert!(index < self.edges.len(), "natlab has {} edges, not {}", self.edges.len(), index + 1);
        Ipv4Addr::new(192, 168, 50, FIRST_EDGE_HOST + index as u8)
    }

    /// Routed edge `index`'s namespace, on the second LAN.
    pub fn routed_edge(&self, index: usize) -> &str {
        &self.routed[index]
    }

    /// Routed edge `index`'s address: 192.168.60.11 for routed edge 0, and up.
    pub fn routed_edge_address(&self, index: usize) -> Ipv4Addr {
        assert!(index < self.routed.len(), "natlab has {} routed edges, not {}", self.routed.len(), index + 1);
        Ipv4Addr::new(192, 168, 60, FIRST_EDGE_HOST + index as u8)
    }

    pub fn edges(&self) -> usize {
        self.edges.len()
    }

    /// `program` run in namespace `namespace` (`ip netns exec`); add arguments and spawn it as usual.
    pub fn command(&self, namespace: &str, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", namespace]).arg(program);
        command
    }

    /// Lets the controller side open connections to the edges too (a flat route), for "direct" baselines.
    pub fn allow_direct(&self) -> anyhow::Result<()> {
        nft(&self.router, "add rule ip natlab forward iifname \"natcp\" oifname \"br0\" accept\n")
            .context("allowing cp → edge connections")
    }

    /// Drops (`true`) or forwards again (`false`) every packet between the controller side and the edges, in both
    /// directions and for established connections too: a cut cable, not a reset. Connections that outlive the cut
    /// carry on, as over a real link that comes back.
    pub fn cut_link(&self, on: bool) -> anyhow::Result<()> {
        if self.cut.swap(on, Ordering::SeqCst) == on {
            return Ok(());
        }
        let script = if on {
            // Its own table, ahead of the NAT lab's filter, so restoring is deleting it.
            "table ip natlab_cut {\n  chain forward {\n    type filter hook forward priority -10;\n    \
             iifname \"natcp\" drop\n    oifname \"natcp\" drop\n  }\n}\n"
        } else {
            "delete table ip natlab_cut\n"
        };
        let result = nft(&self.router, script);
        if result.is_err() {
            self.cut.store(!on, Ordering::SeqCst);
        }
        result.with_context(|| format!("turning the link cut {}", if on { "on" } else { "off" }))
    }

    fn build(&mut self) -> anyhow::Result<()> {
        let (cp, router) = (self.cp.clone(), self.router.clone());
        for namespace in [&cp, &router] {
            self.add_namespace(namespace)?;
        }
        ip(&["link", "add", "cp0", "netns", &cp, "type", "veth", "peer", "name", "natcp", "netns", &router])?;
        ip(&["-n", &cp, "addr", "add", "10.0.1.1/24", "dev", "cp0"])?;
        ip(&["-n", &router, "addr", "add", "10.0.1.254/24", "dev", "natcp"])?;
        ip(&["-n", &cp, "link", "set", "cp0", "up"])?;
        ip(&["-n", &router, "link", "set", "natcp", "up"])?;
        // The route exists from the start, so what stops cp → edge connections is the NAT, as in real life.
        ip(&["-n", &cp, "route", "add", "192.168.50.0/24", "via", "10.0.1.254"])?;
        ip(&["-n", &router, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &router, "addr", "add", "192.168.50.1/24", "dev", "br0"])?;
        ip(&["-n", &router, "link", "set", "br0", "up"])?;
        for index in 0..self.edges.len() {
            let (edge, address) = (self.edges[index].clone(), self.edge_address(index));
            self.add_edge(&edge, &format!("ne{index}"), "br0", address, "192.168.50.1")?;
        }
        if !self.routed.is_empty() {
            ip(&["-n", &cp, "route", "add", "192.168.60.0/24", "via", "10.0.1.254"])?;
            ip(&["-n", &router, "link", "add", "br1", "type", "bridge"])?;
            ip(&["-n", &router, "addr", "add", "192.168.60.1/24", "dev", "br1"])?;
            ip(&["-n", &router, "link", "set", "br1", "up"])?;
        }
        for index in 0..self.routed.len() {
            let (edge, address) = (self.routed[index].clone(), self.routed_edge_address(index));
            self.add_edge(&edge, &format!("nr{index}"), "br1", address, "192.168.60.1")?;
        }
        // Edges reach each other over the bridge (and across the two LANs through the router); where br_netfilter is
        // on (bridge-nf-call-iptables=1), bridged frames pass the forward hook too, hence the br0 → br0 rule.
        run(self.command(&router, "sysctl").args(["-qw", "net.ipv4.ip_forward=1"]), "sysctl net.ipv4.ip_forward=1")?;
        nft(
            &router,
            "table ip natlab {\n\
             \x20 chain postrouting {\n\
             \x20   type nat hook postrouting priority srcnat;\n\
             \x20   oifname \"natcp\" masquerade\n\
             \x20 }\n\
             \x20 chain forward {\n\
             \x20   type filter hook forward priority filter; policy drop;\n\
             \x20   ct state established,related accept\n\
             \x20   iifname { \"br0\", \"br1\" } oifname \"natcp\" accept\n\
             \x20   iifname { \"br0\", \"br1\" } oifname { \"br0\", \"br1\" } accept\n\
             \x20 }\n\
             }\n",
        )
    }

    /// Namespace `edge` with `eth0` at `address`/24, plugged into the router's `bridge` through its port `port`,
    /// routing everything via `gateway`.
    fn add_edge(
        &mut self,
        edge: &str,
        port: &str,
        bridge: &str,
        address: Ipv4Addr,
        gateway: &str,
    ) -> anyhow::Result<()> {
        let router = self.router.clone();
        self.add_namespace(edge)?;
        ip(&["link", "add", "eth0", "netns", edge, "type", "veth", "peer", "name", port, "netns", &router])?;
        ip(&["-n", &router, "link", "set", port, "master", bridge])?;
        ip(&["-n", &router, "link", "set", port, "up"])?;
        ip(&["-n", edge, "addr", "add", &format!("{address}/24"), "dev", "eth0"])?;
        ip(&["-n", edge, "link", "set", "eth0", "up"])?;
        ip(&["-n", edge, "route", "add", "default", "via", gateway])
    }

    fn add_namespace(&mut self, namespace: &str) -> anyhow::Result<()> {
        ip(&["netns", "add", namespace])?;
        self.created.push(namespace.to_string());
        ip(&["-n", namespace, "link", "set", "lo", "up"])
    }
}

impl Drop for NatLab {
    fn drop(&mut self) {
        // Deleting a namespace deletes its interfaces, and with them their veth peers.
        for namespace in self.created.iter().rev() {
            if let Err(error) = ip(&["netns", "del", namespace]) {
                eprintln!("natlab: cannot remove namespace {namespace}: {error:#}");
            }
        }
    }
}

fn check_prerequisites() -> anyhow::Result<()> {
    const HINT: &str = "natlab needs root and the nft command: apt-get install nftables";
    let status = std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let effective_uid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|uids| uids.split_whitespace().nth(1))
        .unwrap_or("unknown");
    if effective_uid != "0" {
        bail!("{HINT} (running as uid {effective_uid})");
    }
    for (program, argument, package) in [("nft", "--version", "nftables"), ("ip", "-V", "iproute2")] {
        let found = Command::new(program).arg(argument).stdout(Stdio::null()).stderr(Stdio::null()).status();
        if !found.map(|status| status.success()).unwrap_or(false) {
            bail!("{HINT} ({program} not found; it comes with the {package} package)");
        }
    }
    Ok(())
}

fn ip(arguments: &[&str]) -> anyhow::Result<()> {
    run(Command::new("ip").args(arguments), &format!("ip {}", arguments.join(" ")))
}

fn run(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let output = command.stdin(Stdio::null()).output().with_context(|| format!("cannot run {what}"))?;
    if !output.status.success() {
        bail!("{what} failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(())
}

/// Loads an nft script in `namespace`.
fn nft(namespace: &str, script: &str) -> anyhow::Result<()> {
    let mut child = Command::new("ip")
        .args(["netns", "exec", namespace, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run nft")?;
    child.stdin.take().context("nft's stdin")?.write_all(script.as_bytes()).context("writing to nft")?;
    let output = child.wait_with_output().context("waiting for nft")?;
    if !output.status.success() {
        bail!("nft failed ({}): {}\nscript:\n{script}", output.status, String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(())
}
