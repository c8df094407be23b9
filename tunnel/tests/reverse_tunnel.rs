//! The reverse tunnel end to end over real loopback TCP + TLS 1.3 with certificates from the cluster PKI: the agent
//! dials out and serves, the controller's [`Session`] dials targets through it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kaasd_tunnel::agent::{self, AgentConfig, Backoff, DialPolicy};
use kaasd_tunnel::pki::{ClusterPki, ServingNames};
use kaasd_tunnel::session::{self, DialError, Keepalive, Session, SessionConfig, TunnelError, Windows};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_util::sync::CancellationToken;

/// Upper bound for anything that should happen at once: only a hang ever reaches it.
const HANG: Duration = Duration::from_secs(30);

#[tokio::test]
async fn dial_and_echo() {
    let lab = Lab::new();
    let echo = echo_server().await;
    let tunnel = lab.connect(SessionConfig::default(), AgentConfig::default()).await;

    let mut stream = tunnel.session.dial(&echo.to_string()).await.expect("dial echo");
    stream.write_all(b"hello through the tunnel").await.unwrap();
    stream.shutdown().await.unwrap();
    let mut answer = Vec::new();
    within(stream.read_to_end(&mut answer)).await.unwrap();
    assert_eq!(answer, b"hello through the tunnel");

    // Several megabytes in parallel on one session: flow control refills every window many times over.
    let payload: Vec<u8> = (0..6 * 1024 * 1024).map(|index: u32| (index % 251) as u8).collect();
    let payload = Arc::new(payload);
    let mut echoes = Vec::new();
    for _ in 0..4 {
        let session = tunnel.session.clone();
        let payload = payload.clone();
        echoes.push(tokio::spawn(async move {
            let stream = session.dial(&format!("localhost:{}", echo.port())).await.expect("dial localhost");
            let (mut reader, mut writer) = tokio::io::split(stream);
            let writing = {
                let payload = payload.clone();
                tokio::spawn(async move {
                    writer.write_all(&payload).await.unwrap();
                    writer.shutdown().await.unwrap();
                })
            };
            let mut received = Vec::new();
            reader.read_to_end(&mut received).await.unwrap();
            writing.await.unwrap();
            received == *payload
        }));
    }
    for echo in echoes {
        assert!(within(echo).await.unwrap(), "echoed bytes differ from the sent ones");
    }
}

#[tokio::test]
async fn copy_bidirectional_relays_a_socket() {
    let lab = Lab::new();
    let echo = echo_server().await;
    let tunnel = lab.connect(SessionConfig::default(), AgentConfig::default()).await;

    // A local port that forwards each connection through the tunnel, the way a node proxy would.
    let forwarder = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let forwarder_address = forwarder.local_addr().unwrap();
    let session = tunnel.session.clone();
    tokio::spawn(async move {
        let (mut socket, _) = forwarder.accept().await.unwrap();
        let stream = session.dial(&echo.to_string()).await.unwrap();
        stream.copy_bidirectional(&mut socket).await.unwrap();
    });

    let mut client = TcpStream::connect(forwarder_address).await.unwrap();
    let payload: Vec<u8> = (0..3 * 1024 * 1024).map(|index: u32| (index % 253) as u8).collect();
    let (mut reader, mut writer) = client.split();
    let (written, received) = within(async {
        tokio::join!(
            async {
                writer.write_all(&payload).await.unwrap();
                writer.shutdown().await.unwrap();
            },
            async {
                let mut received = Vec::new();
                reader.read_to_end(&mut received).await.unwrap();
                received
            }
        )
    })
    .await;
    let () = written;
    assert!(received == payload, "relayed bytes differ from the sent ones");
}

#[tokio::test]
async fn refused_target_is_never_dialled() {
    let lab = Lab::new();
    let tunnel = lab.connect(SessionConfig::default(), AgentConfig::default()).await;
    // On Linux, connecting to 0.0.0.0 reaches this host, so a listener on all addresses would see a connection if
    // the agent dialled the refused address.
    let listener = TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();

    for target in [format!("0.0.0.0:{port}"), format!("192.0.2.1:{port}"), format!("10.255.0.1:{port}")] {
        match tunnel.session.dial(&target).await {
            Err(DialError::Refused(why)) => assert!(why.contains("neither loopback"), "{why}"),
            other => panic!("dialling {target}: expected Refused, got {other:?}"),
        }
    }
    for target in [format!("example.com:{port}"), "127.0.0.1".to_string()] {
        assert!(matches!(tunnel.session.dial(&target).await, Err(DialError::Refused(_))), "{target}");
    }
    // The agent answers only after it would have connected, so a connection attempt would be queued by now.
    let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
    assert!(accepted.is_err(), "the agent connected to a refused target");
}

#[tokio::test]
async fn closed_port_is_unreachable() {
    let lab = Lab::new();
    let tunnel = lab.connect(SessionConfig::default(), AgentConfig::default()).await;
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    match tunnel.session.dial(&closed.to_string()).await {
        Err(DialError::Unreachable(why)) => assert!(why.contains("refused"), "{why}"),
        other => panic!("expected Unreachable, got {other:?}"),
    }
    // The session survives a failed dial.
    let echo = echo_server().await;
    assert!(tunnel.session.dial(&echo.to_string()).await.is_ok());
}

#[tokio::test]
async fn close_ends_in_flight_streams() {
    let lab = Lab::new();
    let echo = echo_server().await;
    let tunnel = lab.connect(SessionConfig::default(), AgentConfig::default()).await;
    let mut stream = tunnel.session.dial(&echo.to_string()).await.unwrap();
    stream.write_all(b"ping").await.unwrap();
    let mut answer = [0u8; 4];
    within(stream.read_exact(&mut answer)).await.unwrap();

    tunnel.session.close();
    assert!(tunnel.session.is_closed());
    within(tunnel.session.closed()).await;
    let mut rest = Vec::new();
    let read = within(stream.read_to_end(&mut rest)).await;
    assert!(read.is_err(), "a stream of a closed session must end with an error, not a clean end: {read:?}");
    assert!(matches!(tunnel.session.dial(&echo.to_string()).await, Err(DialError::Closed)));
    // The agent sees its connection end too.
    assert!(within(tunnel.agent).await.is_ok());
}

/// The property Konnectivity lacks: a reader that stops reading fills its own stream's window, and another stream
/// of the same agent connection still gets through.
#[tokio::test]
async fn stalled_stream_does_not_block_another() {
    let lab = Lab::new();
    let tunnel = lab.connect(SessionConfig::default(), AgentConfig::default()).await;
    let outcome = echo_beside_a_stalled_stream(&tunnel.session).await;
    assert!(outcome.echoed, "the second stream's echo did not get through beside a stalled stream");
    assert!(outcome.stalled_bytes >= u64::from(Windows::default().stream), "the stalled stream never filled up");
    assert!(outcome.stayed_stalled, "the stalled stream moved while the echo ran, so the test proved nothing");
}

/// The control for the test above: with a connection window no larger than one stream's window, one stalled stream
/// exhausts the connection and the echo must *not* get through, so that test can fail.
#[tokio::test]
async fn stalled_stream_blocks_when_the_connection_window_is_one_stream() {
    let lab = Lab::new();
    let windows = Windows { stream: 256 * 1024, connection: 256 * 1024, ..Windows::default() };
    let config = SessionConfig { windows, ..SessionConfig::default() };
    let tunnel = lab.connect(config, AgentConfig::default()).await;
    let outcome = echo_beside_a_stalled_stream(&tunnel.session).await;
    assert!(!outcome.echoed, "the echo got through although the stalled stream holds the whole connection window");
}

#[tokio::test]
async fn run_reconnects_after_the_server_side_drops() {
    let lab = Lab::new();
    let echo = echo_server().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let connects = Arc::new(AtomicU64::new(0));
    let cancel = CancellationToken::new();
    let config = AgentConfig { backoff: fast_backoff(), ..AgentConfig::default() };
    let connector = lab.connector.clone();
    let counted = connects.clone();
    let agent = tokio::spawn(agent::run_with(
        move || {
            let connector = connector.clone();
            counted.fetch_add(1, Ordering::SeqCst);
            async move { dial_tls(&connector, address).await }
        },
        Arc::new(DialPolicy::new(Vec::new())),
        config,
        cancel.clone(),
    ));

    let first = lab.accept(&listener, SessionConfig::default()).await;
    assert!(first.dial(&echo.to_string()).await.is_ok());
    first.close();

    // A connection refused while nobody accepts is retried too: keep the listener closed for a moment.
    drop(listener);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let listener = TcpListener::bind(address).await.unwrap();
    let second = lab.accept(&listener, SessionConfig::default()).await;
    let mut stream = second.dial(&echo.to_string()).await.expect("dial over the new connection");
    stream.write_all(b"again").await.unwrap();
    let mut answer = [0u8; 5];
    within(stream.read_exact(&mut answer)).await.unwrap();
    assert_eq!(&answer, b"again");
    assert!(connects.load(Ordering::SeqCst) >= 2);

    cancel.cancel();
    within(agent).await.unwrap();
}

#[tokio::test]
async fn keepalive_notices_a_silent_link_on_both_ends() {
    let lab = Lab::new();
    let keepalive = Keepalive { interval: Duration::from_millis(100), timeout: Duration::from_millis(300) };
    let session_config = SessionConfig { keepalive, ..SessionConfig::default() };
    let agent_config = AgentConfig { keepalive, ..AgentConfig::default() };

    // The agent reaches the controller through a relay that can go silent, like a NAT that forgot the flow.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay = SilentRelay::start(listener.local_addr().unwrap()).await;
    let connector = lab.connector.clone();
    let relay_address = relay.address;
    let agent = tokio::spawn(async move {
        let io = dial_tls(&connector, relay_address).await.unwrap();
        agent::serve_with(io, Arc::new(DialPolicy::new(Vec::new())), &agent_config, CancellationToken::new()).await
    });
    let session = lab.accept(&listener, session_config).await;
    // Pings flow while the link is healthy: several intervals pass without either end giving up.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(!session.is_closed());

    relay.silence.cancel();
    within(session.closed()).await;
    match within(agent).await.unwrap() {
        Err(TunnelError::KeepaliveTimeout(_)) => {}
        other => panic!("expected the agent to time out its keepalive, got {other:?}"),
    }
}

#[tokio::test]
async fn cancelled_agent_drains_open_streams() {
    let lab = Lab::new();
    let echo = echo_server().await;
    let tunnel = lab.connect(SessionConfig::default(), AgentConfig::default()).await;
    let mut open = tunnel.session.dial(&echo.to_string()).await.unwrap();

    tunnel.cancel.cancel();
    // New dials are turned away once the agent's GOAWAY has arrived; the open stream keeps working.
    let turned_away = within(async {
        loop {
            match tunnel.session.dial(&echo.to_string()).await {
                Err(DialError::Closed) => break true,
                Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                Err(other) => panic!("unexpected dial error while draining: {other}"),
            }
        }
    })
    .await;
    assert!(turned_away);
    open.write_all(b"still here").await.unwrap();
    open.shutdown().await.unwrap();
    let mut answer = Vec::new();
    within(open.read_to_end(&mut answer)).await.unwrap();
    assert_eq!(answer, b"still here");
    drop(open);
    assert!(within(tunnel.agent).await.unwrap().is_ok());
}

// ===== fixtures =====

/// A cluster PKI with a serving certificate for 127.0.0.1 and one node's client certificate.
struct Lab {
    _dir: tempfile::TempDir,
    acceptor: TlsAcceptor,
    connector: TlsConnector,
}

struct Tunnel {
    session: Session,
    agent: JoinHandle<Result<(), TunnelError>>,
    cancel: CancellationToken,
}

impl Lab {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let names = ServingNames { dns_names: Vec::new(), ip_addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)] };
        let pki = ClusterPki::load_or_create(dir.path(), &names).unwrap();
        let node = pki.issue_client("system:node:edge-1", &["system:nodes"]).unwrap();
        let server = session::server_config(&pki.ca.cert_pem, &pki.serving.cert_pem, &pki.serving.key_pem).unwrap();
        let client = agent::client_config(&pki.ca.cert_pem, &node.cert_pem, &node.key_pem).unwrap();
        Lab {
            _dir: dir,
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
        }
    }

    /// One agent connected to one session over loopback; the agent may dial loopback only.
    async fn connect(&self, session_config: SessionConfig, agent_config: AgentConfig) -> Tunnel {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let connector = self.connector.clone();
        let cancel = CancellationToken::new();
        let agent_cancel = cancel.clone();
        let agent = tokio::spawn(async move {
            let io = dial_tls(&connector, address).await.unwrap();
            agent::serve_with(io, Arc::new(DialPolicy::new(Vec::new())), &agent_config, agent_cancel).await
        });
        let session = self.accept(&listener, session_config).await;
        Tunnel { session, agent, cancel }
    }

    async fn accept(&self, listener: &TcpListener, config: SessionConfig) -> Session {
        let (socket, _) = within(listener.accept()).await.unwrap();
        socket.set_nodelay(true).unwrap();
        let tls = self.acceptor.accept(socket).await.unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(session::ALPN));
        let (session, driver) = Session::open_with(tls, config).await.unwrap();
        tokio::spawn(driver);
        session
    }
}

async fn dial_tls(
    connector: &TlsConnector,
    address: SocketAddr,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let socket = TcpStream::connect(address).await?;
    socket.set_nodelay(true)?;
    let name = rustls::pki_types::ServerName::IpAddress(address.ip().into());
    connector.connect(name, socket).await
}

fn fast_backoff() -> Backoff {
    Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(200),
        reset_after: Duration::from_secs(10),
    }
}

async fn within<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(HANG, future).await.expect("timed out: something hangs")
}

async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let (mut reader, mut writer) = socket.split();
                let _ = tokio::io::copy(&mut reader, &mut writer).await;
                let _ = writer.shutdown().await;
            });
        }
    });
    address
}

/// A target that writes as fast as it is allowed to and counts what it got rid of.
async fn firehose_server() -> (SocketAddr, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let written = Arc::new(AtomicU64::new(0));
    let counter = written.clone();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let chunk = vec![7u8; 16 * 1024];
        while socket.write_all(&chunk).await.is_ok() {
            counter.fetch_add(chunk.len() as u64, Ordering::SeqCst);
        }
    });
    (address, written)
}

struct StallOutcome {
    echoed: bool,
    stalled_bytes: u64,
    stayed_stalled: bool,
}

async fn echo_beside_a_stalled_stream(session: &Session) -> StallOutcome {
    let echo = echo_server().await;
    let (firehose, written) = firehose_server().await;
    let stalled = session.dial(&firehose.to_string()).await.unwrap();
    // Full means: the firehose has stopped making progress, because every buffer on the way is.
    let mut last = u64::MAX;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = written.load(Ordering::SeqCst);
        if now == last && now > 0 {
            break;
        }
        last = now;
    }
    let stalled_bytes = last;

    let echo_round_trip = async {
        let mut stream = session.dial(&echo.to_string()).await.ok()?;
        let payload = vec![42u8; 64 * 1024];
        let (mut reader, mut writer) = tokio::io::split(&mut stream);
        let (written, received) = tokio::join!(writer.write_all(&payload), async {
            let mut received = vec![0u8; payload.len()];
            reader.read_exact(&mut received).await.map(|_| received)
        });
        written.ok()?;
        Some(received.ok()? == payload)
    };
    // Blocked forever or done quickly: the wait only has to tell the two apart.
    let echoed = tokio::time::timeout(Duration::from_secs(5), echo_round_trip).await.ok().flatten().unwrap_or(false);
    let stayed_stalled = written.load(Ordering::SeqCst) == stalled_bytes;
    drop(stalled);
    StallOutcome { echoed, stalled_bytes, stayed_stalled }
}

/// Forwards TCP both ways until told to go silent; then it forwards nothing but keeps both sockets open, so neither
/// end sees a reset or an end of file.
struct SilentRelay {
    address: SocketAddr,
    silence: CancellationToken,
}

impl SilentRelay {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let silence = CancellationToken::new();
        let silenced = silence.clone();
        tokio::spawn(async move {
            let (mut downstream_socket, _) = listener.accept().await.unwrap();
            let mut upstream_socket = TcpStream::connect(upstream).await.unwrap();
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut downstream_socket, &mut upstream_socket) => {}
                () = silenced.cancelled() => {}
            }
            // Hold both sockets open, silently, for longer than any test waits.
            tokio::time::sleep(HANG * 2).await;
            drop((downstream_socket, upstream_socket));
        });
        SilentRelay { address, silence }
    }
}
