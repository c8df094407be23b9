//! The node's cluster DNS resolver: answers the Kubernetes DNS specification for the cluster zone from the shared
//! Service and EndpointSlice watch, and relays every other name to the node's own nameservers.
//!
//! Every node answers for itself (no CoreDNS pods), so a node cut off from the API keeps resolving from the last
//! index it built: the stores keep their contents while the watch retries.
//!
//! The wire format is hickory-proto's; the UDP and TCP loops are kaasd's own. hickory-server's `Server` spawns a
//! task and passes a channel per UDP query and logs every answer at info level, which a node resolver, asked for
//! every name a pod looks up, cannot afford; a cluster name here is answered inside the receive loop with one hash
//! lookup, and only queries that wait on an upstream get a task.
//!
//! Startup follows the house order: [`bind`] opens every socket (and fails naming the address it could not take),
//! [`DnsServer::run`] serves until cancelled.

mod index;
mod resolver;
mod upstream;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::rr::Name;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::network::services::ServiceView;
use index::ClusterIndex;
use resolver::{Plan, Resolver, Transport};
pub use resolver::{MAX_UDP_PAYLOAD, SPECIFICATION_VERSION};
use upstream::Upstreams;

pub use index::CLUSTER_RECORD_TTL;

/// The cluster domain kubeadm and kaasd default to.
pub const DEFAULT_CLUSTER_ZONE: &str = "cluster.local";

/// How long one upstream nameserver gets to answer before the next is tried (or the client gets SERVFAIL).
/// glibc's stub resolver waits 5 s per attempt, so 2 s leaves it time to see kaasd's SERVFAIL instead of timing out.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// A TCP client that sends nothing for this long is disconnected, so idle connections cannot pile up.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Receive buffer for UDP queries: a query carries one question, far below this; a longer datagram is not a query.
const UDP_RECEIVE_BUFFER: usize = 4096;

/// What the resolver serves and where.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// Addresses to answer on, each over UDP and TCP (port 0 picks a free port; see [`DnsServer::local_addrs`]).
    pub listen: Vec<SocketAddr>,
    /// The cluster domain, `cluster.local` unless the cluster says otherwise.
    pub zone: String,
    /// Nameservers for names outside the cluster, tried in order; see [`host_upstreams`].
    pub upstreams: Vec<SocketAddr>,
    /// How long one upstream gets per query.
    pub upstream_timeout: Duration,
}

impl DnsConfig {
    /// Serves the default zone on `listen`, forwarding to `upstreams` with the default timeout.
    pub fn new(listen: Vec<SocketAddr>, upstreams: Vec<SocketAddr>) -> Self {
        DnsConfig {
            listen,
            zone: DEFAULT_CLUSTER_ZONE.to_owned(),
            upstreams,
            upstream_timeout: DEFAULT_UPSTREAM_TIMEOUT,
        }
    }
}

/// A resolver whose sockets are bound; [`DnsServer::run`] serves them.
pub struct DnsServer {
    resolver: Arc<Resolver>,
    view: ServiceView,
    udp_sockets: Vec<Arc<UdpSocket>>,
    tcp_listeners: Vec<TcpListener>,
}

/// Binds UDP and TCP on every address of `config.listen` and builds the first index from what `view` holds.
pub async fn bind(config: DnsConfig, view: ServiceView) -> std::io::Result<DnsServer> {
    let zone = Name::from_ascii(format!("{}.", config.zone.trim_end_matches('.')))
        .map(|zone| zone.to_lowercase())
        .map_err(|error| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("cluster dns zone {:?} is not a dns name: {error}", config.zone),
            )
        })?;
    let mut udp_sockets = Vec::new();
    let mut tcp_listeners = Vec::new();
    for &address in &config.listen {
        let (udp, tcp) = bind_udp_and_tcp(address).await?;
        udp_sockets.push(Arc::new(udp));
        tcp_listeners.push(tcp);
    }
    let index = build_index(&zone, &view);
    let upstreams = Upstreams { servers: config.upstreams, timeout: config.upstream_timeout };
    let resolver = Arc::new(Resolver::new(zone, index, upstreams));
    Ok(DnsServer { resolver, view, udp_sockets, tcp_listeners })
}

impl DnsServer {
    /// The addresses actually bound, one per listen address, each serving UDP and TCP.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.udp_sockets.iter().filter_map(|socket| socket.local_addr().ok()).collect()
    }

    /// Serves until `cancel`, rebuilding the index after every change the view reports.
    pub async fn run(self, cancel: CancellationToken) {
        let DnsServer { resolver, view, udp_sockets, tcp_listeners } = self;
        let mut tasks = JoinSet::new();
        tasks.spawn(keep_index_current(resolver.clone(), view).instrument(tracing::info_span!("dns.index")));
        // Several receive loops share each socket so answers use every core; each loop answers cluster names
        // inline and hands only upstream work to tasks.
        let loops_per_socket = std::thread::available_parallelism().map_or(1, usize::from).min(4);
        for socket in udp_sockets {
            let span = tracing::info_span!("dns.udp", listen = %socket.local_addr().map_or_else(|_| "?".into(), |address| address.to_string()));
            for _ in 0..loops_per_socket {
                tasks.spawn(serve_udp(socket.clone(), resolver.clone()).instrument(span.clone()));
            }
        }
        for listener in tcp_listeners {
            let span = tracing::info_span!("dns.tcp", listen = %listener.local_addr().map_or_else(|_| "?".into(), |address| address.to_string()));
            tasks.spawn(serve_tcp(listener, resolver.clone()).instrument(span));
        }
        cancel.cancelled().await;
        tasks.shutdown().await;
    }
}

/// The nameservers of a resolv.conf text, on port 53, without `exclude` (the cluster DNS address itself, which
/// would forward a query back to kaasd forever). Loopback stubs such as systemd-resolved's 127.0.0.53 are kept:
/// the worker runs in the host's network namespace and reaches them.
pub fn host_upstreams(resolv_conf_text: &str, exclude: &[IpAddr]) -> Vec<SocketAddr> {
    let mut upstreams = Vec::new();
    for line in resolv_conf_text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        // An IPv6 nameserver may carry a zone (`fe80::1%eth0`); the zone is not part of the address.
        let Some(address) = words.next().and_then(|word| word.split('%').next()?.parse::<IpAddr>().ok()) else {
            continue;
        };
        let upstream = SocketAddr::new(address, 53);
        if !exclude.contains(&address) && !upstreams.contains(&upstream) {
            upstreams.push(upstream);
        }
    }
    upstreams
}

/// A UDP socket and a TCP listener on the same address and port. With port 0, TCP takes the port UDP got, so one
/// address serves both as DNS clients expect; that port may already be taken for TCP (by some connection's
/// ephemeral port), so a few fresh UDP ports are tried before giving up.
async fn bind_udp_and_tcp(address: SocketAddr) -> std::io::Result<(UdpSocket, TcpListener)> {
    const ATTEMPTS_WITH_ANY_PORT: usize = 16;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let udp = UdpSocket::bind(address).await.map_err(|error| bind_error("udp", address, error))?;
        let bound = udp.local_addr()?;
        match TcpListener::bind(bound).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(error)
                if address.port() == 0
                    && error.kind() == std::io::ErrorKind::AddrInUse
                    && attempt < ATTEMPTS_WITH_ANY_PORT => {}
            Err(error) => return Err(bind_error("tcp", bound, error)),
        }
    }
}

fn bind_error(protocol: &str, address: SocketAddr, error: std::io::Error) -> std::io::Error {
    std::io::Error::new(error.kind(), format!("cluster dns cannot listen on {protocol} {address}: {error}"))
}

fn build_index(zone: &Name, view: &ServiceView) -> ClusterIndex {
    let serial = u32::try_from(*view.generation.borrow() & u64::from(u32::MAX)).unwrap_or_default();
    ClusterIndex::build(zone, &view.services.state(), &view.slices.state(), serial)
}

/// Rebuilds the index whenever the view's generation moves. Changes that land during a rebuild are coalesced by
/// the watch channel into one more rebuild, so a burst of updates costs a few rebuilds, not one per update.
async fn keep_index_current(resolver: Arc<Resolver>, mut view: ServiceView) {
    loop {
        if view.generation.changed().await.is_err() {
            // The watch has ended; the last index keeps answering.
            return;
        }
        view.generation.borrow_and_update();
        let started = std::time::Instant::now();
        let index = build_index(&resolver.zone, &view);
        let names = index.names.len();
        resolver.replace_index(index);
        tracing::debug!(dns.names = names, elapsed = ?started.elapsed(), "cluster dns index rebuilt");
    }
}

async fn serve_udp(socket: Arc<UdpSocket>, resolver: Arc<Resolver>) {
    let mut buffer = vec![0u8; UDP_RECEIVE_BUFFER];
    loop {
        let (length, client) = match socket.recv_from(&mut buffer).await {
            Ok(received) => received,
            Err(error) => {
                // Errors here are per datagram (an ICMP report of an earlier send); the socket stays usable.
                tracing::debug!(error = %error, "receiving a dns query failed");
                continue;
            }
        };
        let request = &buffer[..length];
        match resolver.plan(request, Transport::Udp) {
            Plan::Reply(answer) => send_udp(&socket, &answer, client).await,
            Plan::Ignore => {}
            plan => {
                let (socket, resolver, request) = (socket.clone(), resolver.clone(), request.to_vec());
                tokio::spawn(async move {
                    let answer = resolver.complete(plan, &request, Transport::Udp).await;
                    send_udp(&socket, &answer, client).await;
                });
            }
        }
    }
}

async fn send_udp(socket: &UdpSocket, answer: &[u8], client: SocketAddr) {
    if let Err(error) = socket.send_to(answer, client).await {
        tracing::debug!(error = %error, client = %client, "sending a dns answer failed");
    }
}

async fn serve_tcp(listener: TcpListener, resolver: Arc<Resolver>) {
    let mut connections = JoinSet::new();
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                connections.spawn(serve_tcp_connection(stream, resolver.clone()));
            }
            Err(error) => {
                // Accept fails for one connection (or for lack of file descriptors); back off a little either way.
                tracing::debug!(error = %error, "accepting a dns connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        // Reap finished connections so the set only holds live ones.
        while connections.try_join_next().is_some() {}
    }
}

/// Answers length-prefixed queries on one connection in order until the client closes it or goes idle.
async fn serve_tcp_connection(mut stream: TcpStream, resolver: Arc<Resolver>) {
    let _ = stream.set_nodelay(true);
    loop {
        let length = match tokio::time::timeout(TCP_IDLE_TIMEOUT, stream.read_u16()).await {
            Ok(Ok(length)) => usize::from(length),
            _ => return,
        };
        let mut request = vec![0u8; length];
        if !matches!(tokio::time::timeout(TCP_IDLE_TIMEOUT, stream.read_exact(&mut request)).await, Ok(Ok(_))) {
            return;
        }
        let Some(answer) = resolver.respond(&request, Transport::Tcp).await else { continue };
        let Ok(answer_length) = u16::try_from(answer.len()) else { return };
        let mut framed = Vec::with_capacity(answer.len() + 2);
        framed.extend_from_slice(&answer_length.to_be_bytes());
        framed.extend_from_slice(&answer);
        if stream.write_all(&framed).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests;
