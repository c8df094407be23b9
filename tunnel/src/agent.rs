//! The worker side of the reverse tunnel: dial out to the controller, answer its `CONNECT` streams by connecting to
//! targets on this node, and keep the connection up.
//!
//! The agent is the TCP/TLS client and the HTTP/2 server (see [`crate::session`] for why the roles are reversed).
//! It dials only what [`DialPolicy`] allows, so a compromised or confused controller cannot use it as a pivot into
//! the node's network; a refused target is never connected to.

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::server::SendResponse;
use h2::RecvStream;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use rand::Rng;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, Instrument};

use crate::session::{keep_alive, Keepalive, TunnelError, TunnelStream, Windows, ALPN, ERROR_HEADER};

/// What the agent may dial: loopback, the given addresses (its own node's) and, once the node has one, its own pod
/// range (so the controller reaches pods on this node, e.g. an admission webhook), any port. Everything else is
/// refused with 403 before any connection attempt.
#[derive(Debug)]
pub struct DialPolicy {
    own_addresses: Vec<IpAddr>,
    /// The node's pod range (network address, prefix length), learned after the node registered.
    pod_range: std::sync::RwLock<Option<(Ipv4Addr, u8)>>,
}

/// How the agent behaves; [`Default`] is what production uses.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub keepalive: Keepalive,
    pub windows: Windows,
    /// How long connecting to a target may take before the dial is answered as unreachable.
    pub connect_timeout: Duration,
    /// Most streams (proxied connections) the controller may have open at once on one tunnel connection.
    pub max_concurrent_streams: u32,
    /// After cancellation, how long open streams may run on before the connection is dropped.
    pub drain_timeout: Duration,
    pub backoff: Backoff,
}

/// Reconnect delays: full jitter (a random delay up to a ceiling) with the ceiling doubling from `initial` to `max`,
/// so a thousand agents whose controller restarts do not all knock at once.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    /// A connection that lived this long counts as healthy: the next outage starts again from `initial`.
    pub reset_after: Duration,
}

impl DialPolicy {
    pub fn new(own_addresses: Vec<IpAddr>) -> Self {
        DialPolicy {
            own_addresses: own_addresses.into_iter().map(|address| address.to_canonical()).collect(),
            pod_range: std::sync::RwLock::new(None),
        }
    }

    /// Allows the node's pod range (`spec.podCIDR`) from now on, replacing a previous one.
    pub fn allow_pod_range(&self, network: Ipv4Addr, prefix_length: u8) {
        *self.pod_range.write().unwrap_or_else(|poisoned| poisoned.into_inner()) =
            Some((network, prefix_length.min(32)));
    }

    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        // 0.0.0.0 and :: connect to the local host on Linux, but name no address: refuse them like any stranger.
        if ip.is_unspecified() || ip.is_multicast() {
            return false;
        }
        ip.is_loopback() || self.own_addresses.contains(&ip) || self.in_pod_range(ip)
    }

    fn in_pod_range(&self, ip: IpAddr) -> bool {
        let IpAddr::V4(ip) = ip else { return false };
        let Some((network, prefix_length)) = *self.pod_range.read().unwrap_or_else(|poisoned| poisoned.into_inner())
        else {
            return false;
        };
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix_length)).unwrap_or(0);
        u32::from(ip) & mask == u32::from(network) & mask
    }
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            keepalive: Keepalive::default(),
            windows: Windows::default(),
            connect_timeout: Duration::from_secs(5),
            max_concurrent_streams: 1000,
            drain_timeout: Duration::from_secs(5),
            backoff: Backoff::default(),
        }
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(10),
            reset_after: Duration::from_secs(10),
        }
    }
}

/// Serves one tunnel connection (the HTTP/2 server answering CONNECT) until it ends, or until `cancel`: then the
/// agent sends GOAWAY and lets open streams finish for a few seconds.
pub async fn serve<IO>(io: IO, policy: Arc<DialPolicy>, cancel: CancellationToken) -> Result<(), TunnelError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    serve_with(io, policy, &AgentConfig::default(), cancel).await
}

/// [`serve`] with explicit timeouts and sizes.
pub async fn serve_with<IO>(
    io: IO,
    policy: Arc<DialPolicy>,
    config: &AgentConfig,
    cancel: CancellationToken,
) -> Result<(), TunnelError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let windows = config.windows;
    let handshake = h2::server::Builder::new()
        .initial_window_size(windows.stream)
        .initial_connection_window_size(windows.connection)
        .max_frame_size(windows.max_frame_size)
        .max_send_buffer_size(windows.max_send_buffer)
        .max_concurrent_streams(config.max_concurrent_streams)
        .handshake::<_, Bytes>(io);
    // The keepalive does not run yet, so a controller that never speaks must not hold the agent here forever.
    let handshake_timeout = config.keepalive.timeout;
    let mut connection = tokio::time::timeout(handshake_timeout, handshake)
        .await
        .map_err(|_elapsed| TunnelError::HandshakeTimeout(handshake_timeout))?
        .map_err(TunnelError::Handshake)?;
    let keepalive = keep_alive(connection.ping_pong(), config.keepalive);
    tokio::pin!(keepalive);
    let drain_deadline = tokio::time::sleep(Duration::MAX);
    tokio::pin!(drain_deadline);
    let mut draining = false;
    loop {
        tokio::select! {
            accepted = connection.accept() => match accepted {
                Some(Ok((request, respond))) => {
                    tokio::spawn(answer_connect(request, respond, policy.clone(), config.connect_timeout));
                }
                Some(Err(error)) => return Err(TunnelError::Connection(error)),
                None => return Ok(()),
            },
            error = &mut keepalive => return Err(error),
            () = cancel.cancelled(), if !draining => {
                debug!("tunnel draining");
                draining = true;
                connection.graceful_shutdown();
                drain_deadline.as_mut().reset(tokio::time::Instant::now() + config.drain_timeout);
            }
            () = &mut drain_deadline, if draining => return Ok(()),
        }
    }
}

/// Keeps a tunnel up until `cancel`: calls `connect` (which dials TCP + TLS and returns the stream), serves the
/// connection, and after any failure reconnects with jittered exponential backoff. Logs changes of state at info
/// level once, each retry only at debug.
pub async fn run<C, F, IO>(connect: C, policy: Arc<DialPolicy>, cancel: CancellationToken)
where
    C: FnMut() -> F,
    F: Future<Output = io::Result<IO>>,
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    run_with(connect, policy, AgentConfig::default(), cancel).await
}

/// [`run`] with explicit timeouts, sizes and backoff.
pub async fn run_with<C, F, IO>(mut connect: C, policy: Arc<DialPolicy>, config: AgentConfig, cancel: CancellationToken)
where
    C: FnMut() -> F,
    F: Future<Output = io::Result<IO>>,
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut retry = RetryDelay::new(config.backoff);
    let mut link = LinkLog::default();
    loop {
        let attempt = tokio::select! {
            attempt = connect() => attempt,
            () = cancel.cancelled() => break,
        };
        match attempt {
            Ok(io) => {
                link.connected();
                let started = Instant::now();
                let serving = serve_with(io, policy.clone(), &config, cancel.clone());
                tokio::pin!(serving);
                let healthy_after = tokio::time::sleep(config.backoff.reset_after);
                tokio::pin!(healthy_after);
                let outcome = loop {
                    tokio::select! {
                        outcome = &mut serving => break outcome,
                        () = &mut healthy_after, if !link.is_up() => link.stayed_up(),
                    }
                };
                if cancel.is_cancelled() {
                    break;
                }
                let lived_long = started.elapsed() >= config.backoff.reset_after;
                if lived_long {
                    retry.reset();
                }
                link.disconnected(outcome.err(), lived_long);
            }
            Err(error) => link.connect_failed(&error),
        }
        let delay = retry.next_delay();
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = cancel.cancelled() => break,
        }
    }
    info!("tunnel stopped");
}

/// A rustls client configuration for the agent: TLS 1.3 only, ALPN [`ALPN`], verifies the controller against
/// `ca_pem` and presents the node certificate.
pub fn client_config(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<rustls::ClientConfig, TunnelError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in crate::tls::certificates(ca_pem)? {
        roots.add(cert)?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_client_auth_cert(crate::tls::certificates(cert_pem)?, crate::tls::private_key(key_pem)?)?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(config)
}

/// Answers one CONNECT: checks the policy, connects (bounded by `connect_timeout`), and copies until both sides
/// are done. Refusals and failures are answered with a status and the reason in [`ERROR_HEADER`].
async fn answer_connect(
    request: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    policy: Arc<DialPolicy>,
    connect_timeout: Duration,
) {
    let target = request.uri().authority().map(|authority| authority.as_str().to_string()).unwrap_or_default();
    let span = tracing::debug_span!("tunnel.stream", tunnel.target = %target);
    async move {
        if request.method() != Method::CONNECT {
            return refuse(&mut respond, StatusCode::METHOD_NOT_ALLOWED, "the tunnel only answers CONNECT");
        }
        let addresses = match target_addresses(&target) {
            Ok(addresses) => addresses,
            Err(why) => return refuse(&mut respond, StatusCode::BAD_REQUEST, &why),
        };
        if let Some(denied) = addresses.iter().find(|address| !policy.allows(address.ip())) {
            info!(tunnel.target = %target, "tunnel refused a dial outside this node's addresses");
            let why = format!("{} is neither loopback nor an address of this node", denied.ip());
            return refuse(&mut respond, StatusCode::FORBIDDEN, &why);
        }
        let mut socket = match tokio::time::timeout(connect_timeout, connect_any(&addresses)).await {
            Ok(Ok(socket)) => socket,
            Ok(Err(error)) => return refuse(&mut respond, StatusCode::BAD_GATEWAY, &error.to_string()),
            Err(_elapsed) => {
                let why = format!("connecting to {target} timed out after {connect_timeout:?}");
                return refuse(&mut respond, StatusCode::GATEWAY_TIMEOUT, &why);
            }
        };
        // Latency matters more than packet count for proxied API and exec traffic.
        let _ = socket.set_nodelay(true);
        let send = match respond.send_response(Response::new(()), false) {
            Ok(send) => send,
            Err(error) => return debug!(error = %error, "tunnel stream ended before the dial was answered"),
        };
        match TunnelStream::new(send, request.into_body()).copy_bidirectional(&mut socket).await {
            Ok((sent, received)) => debug!(tunnel.sent = sent, tunnel.received = received, "tunnel stream done"),
            Err(error) => debug!(error = %error, "tunnel stream failed"),
        }
    }
    .instrument(span)
    .await
}

fn refuse(respond: &mut SendResponse<Bytes>, status: StatusCode, why: &str) {
    debug!(tunnel.status = status.as_u16(), tunnel.error = why, "tunnel dial not served");
    let mut response = Response::new(());
    *response.status_mut() = status;
    // Header values must be visible ASCII; an OS error text is, but do not let a stray byte lose the answer.
    let printable: String = why.chars().map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' }).collect();
    if let Ok(value) = HeaderValue::from_str(&printable) {
        response.headers_mut().insert(ERROR_HEADER, value);
    }
    if let Err(error) = respond.send_response(response, true) {
        debug!(error = %error, "cannot answer the tunnel dial");
    }
}

/// The socket addresses a CONNECT target names: an IP address, or `localhost`, which the agent resolves itself to
/// its loopback addresses (never through DNS). Other host names are refused: routes come from the API as addresses.
fn target_addresses(target: &str) -> Result<Vec<SocketAddr>, String> {
    let authority: http::uri::Authority =
        target.parse().map_err(|error| format!("invalid target {target:?}: {error}"))?;
    let port = authority.port_u16().ok_or_else(|| format!("target {target:?} has no port"))?;
    let host = authority.host();
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(vec![
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port),
        ]);
    }
    let literal = host.strip_prefix('[').and_then(|rest| rest.strip_suffix(']')).unwrap_or(host);
    let ip: IpAddr =
        literal.parse().map_err(|_| format!("target host {host:?} is neither an IP address nor localhost"))?;
    Ok(vec![SocketAddr::new(ip, port)])
}

/// Connects to the first address that accepts; the error of the last one otherwise.
async fn connect_any(addresses: &[SocketAddr]) -> io::Result<TcpStream> {
    let mut last_error = io::Error::new(io::ErrorKind::InvalidInput, "no address to connect to");
    for address in addresses {
        match TcpStream::connect(address).await {
            Ok(socket) => return Ok(socket),
            Err(error) => last_error = io::Error::new(error.kind(), format!("connect {address}: {error}")),
        }
    }
    Err(last_error)
}

struct RetryDelay {
    backoff: Backoff,
    ceiling: Duration,
}

impl RetryDelay {
    fn new(backoff: Backoff) -> Self {
        RetryDelay { backoff, ceiling: backoff.initial }
    }

    fn reset(&mut self) {
        self.ceiling = self.backoff.initial;
    }

    fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling;
        self.ceiling = (ceiling * 2).min(self.backoff.max);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::rng().random_range(0..=nanos))
    }
}

/// What the operator has been told about the link, so each change is logged once at info level and every retry of
/// the same state only at debug.
#[derive(Default)]
struct LinkLog {
    up: bool,
    /// Connections keep ending right after they are made (the controller rejects this node, say).
    flapping: bool,
    connect_failure_reported: bool,
}

impl LinkLog {
    fn is_up(&self) -> bool {
        self.up
    }

    fn connected(&mut self) {
        self.connect_failure_reported = false;
        if self.flapping {
            debug!("tunnel connected again");
        } else {
            self.up = true;
            info!("tunnel connected");
        }
    }

    /// A connection made while flapping has now lived long enough to count as up.
    fn stayed_up(&mut self) {
        self.up = true;
        self.flapping = false;
        info!("tunnel connected");
    }

    fn disconnected(&mut self, error: Option<TunnelError>, lived_long: bool) {
        let why = error.map(|error| error.to_string()).unwrap_or_else(|| "the controller closed it".to_string());
        if lived_long {
            info!(error = %why, "tunnel disconnected; reconnecting");
        } else if !self.flapping {
            info!(error = %why, "tunnel connection ended right after it was made; retrying with backoff");
            self.flapping = true;
        } else {
            debug!(error = %why, "tunnel connection ended right after it was made");
        }
        self.up = false;
    }

    fn connect_failed(&mut self, error: &io::Error) {
        if self.connect_failure_reported {
            debug!(error = %error, "tunnel cannot connect");
        } else {
            info!(error = %error, "tunnel cannot connect; retrying with backoff");
            self.connect_failure_reported = true;
        }
        self.up = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_allows_loopback_and_own_addresses_only() {
        let own: IpAddr = "192.168.50.11".parse().unwrap();
        let policy = DialPolicy::new(vec![own, "fd00::11".parse().unwrap()]);
        for allowed in ["127.0.0.1", "127.1.2.3", "::1", "192.168.50.11", "::ffff:192.168.50.11", "fd00::11"] {
            assert!(policy.allows(allowed.parse().unwrap()), "{allowed} should be allowed");
        }
        for refused in ["192.168.50.12", "10.0.1.1", "0.0.0.0", "::", "224.0.0.1", "fd00::12"] {
            assert!(!policy.allows(refused.parse().unwrap()), "{refused} should be refused");
        }
    }

    #[test]
    fn policy_allows_the_pod_range_once_known() {
        let policy = DialPolicy::new(Vec::new());
        assert!(!policy.allows("10.42.3.7".parse().unwrap()));
        policy.allow_pod_range(Ipv4Addr::new(10, 42, 3, 0), 24);
        assert!(policy.allows("10.42.3.7".parse().unwrap()));
        assert!(policy.allows("::ffff:10.42.3.200".parse().unwrap()));
        assert!(!policy.allows("10.42.4.7".parse().unwrap()), "another node's pods stay out of reach");
    }

    #[test]
    fn targets_are_addresses_or_localhost() {
        assert_eq!(target_addresses("10.0.0.1:10250").unwrap(), vec!["10.0.0.1:10250".parse().unwrap()]);
        assert_eq!(target_addresses("[fd00::1]:80").unwrap(), vec!["[fd00::1]:80".parse().unwrap()]);
        assert_eq!(
            target_addresses("localhost:8080").unwrap(),
            vec!["127.0.0.1:8080".parse().unwrap(), "[::1]:8080".parse().unwrap()]
        );
        assert!(target_addresses("kubelet.example:10250").is_err());
        assert!(target_addresses("10.0.0.1").is_err());
    }

    #[test]
    fn retry_delays_grow_to_the_cap_and_reset() {
        let backoff = Backoff {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(1),
            reset_after: Duration::from_secs(10),
        };
        let mut retry = RetryDelay::new(backoff);
        let ceilings: Vec<Duration> = (0..5)
            .map(|_| {
                let ceiling = retry.ceiling;
                assert!(retry.next_delay() <= ceiling);
                ceiling
            })
            .collect();
        let millis = |value: u64| Duration::from_millis(value);
        assert_eq!(ceilings, vec![millis(200), millis(400), millis(800), millis(1000), millis(1000)]);
        retry.reset();
        assert_eq!(retry.ceiling, millis(200));
    }
}
