//! The controller side of the reverse tunnel, and what both sides share.
//!
//! A worker's agent dials out to the controller (TCP + TLS 1.3 with its node certificate) and then plays the HTTP/2
//! *server* on that connection; the controller is the HTTP/2 *client*. For every TCP connection it wants on the
//! agent's side (kubelet, a pod port, a webhook), the controller opens one `CONNECT host:port` stream. Each proxied
//! connection so gets its own HTTP/2 flow-control window: a reader that stops reading stalls its own stream only,
//! never the others on the same agent connection (Konnectivity's single shared channel does exactly that).
//!
//! ```text
//! controller: Session::dial("127.0.0.1:10250") ──CONNECT──► agent: policy check → TCP connect → 200
//!             TunnelStream (AsyncRead + AsyncWrite)  ◄═ DATA frames, per-stream window ═►  TcpStream
//! ```

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use h2::{Ping, PingPong, Reason, RecvStream, SendStream};
use http::{Method, Request, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, Instrument};

use crate::tls::TlsError;

/// The ALPN protocol of a tunnel connection, negotiated on the API port next to `h2` and `http/1.1`.
pub const ALPN: &[u8] = b"kaasd-tunnel/1";

/// The response header in which the agent says why it refused or failed a dial (an OS error text, for instance).
pub const ERROR_HEADER: &str = "kaasd-tunnel-error";

/// The controller's end of one agent connection. Cheap to clone; clones share the connection, and any number of
/// dials may run in parallel.
#[derive(Clone)]
pub struct Session {
    sender: h2::client::SendRequest<Bytes>,
    shared: Arc<Shared>,
}

/// How the controller's end of a tunnel behaves; [`Default`] is what production uses.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub keepalive: Keepalive,
    pub windows: Windows,
    /// How long a dial may wait for the agent's answer. Longer than the agent's own connect timeout, so that an
    /// unreachable target comes back as [`DialError::Unreachable`] rather than [`DialError::Timeout`].
    pub dial_timeout: Duration,
}

/// HTTP/2 PINGs on an otherwise silent connection, so that a dead link (a NAT that forgot the flow, a cable cut
/// without a reset) is noticed by both ends and the agent reconnects.
#[derive(Debug, Clone, Copy)]
pub struct Keepalive {
    /// Time between PINGs.
    pub interval: Duration,
    /// How long a PING may go unanswered before the connection counts as dead.
    pub timeout: Duration,
}

/// HTTP/2 flow-control and framing sizes, the same on both ends (each end sets what it is willing to *receive*).
#[derive(Debug, Clone, Copy)]
pub struct Windows {
    /// Receive window of each stream: how much one proxied connection may have in flight, and so the most a reader
    /// that stops reading can leave buffered on this end.
    pub stream: u32,
    /// Receive window of the whole connection. Unread data of every stream counts against it, so it is many
    /// stream windows: only `connection / stream` stalled streams can ever block the healthy ones.
    pub connection: u32,
    /// Largest DATA frame this end accepts.
    pub max_frame_size: u32,
    /// Most data one stream may queue for sending before its writer waits.
    pub max_send_buffer: usize,
}

/// A proxied TCP connection: bytes written are delivered to the target, the target's bytes are read. Shutting down
/// the write side half-closes the target connection; dropping the stream resets it.
pub struct TunnelStream {
    send: SendStream<Bytes>,
    recv: RecvStream,
    /// Received but not yet handed to the reader (its flow-control window is released as it is handed out).
    unread: Bytes,
    write_closed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// The agent's dial policy refused the target (it is not the agent's node, or not an address at all).
    #[error("the agent refused to dial: {0}")]
    Refused(String),
    /// The agent could not connect to the target; the text is the agent's (an OS error, usually).
    #[error("the agent cannot reach the target: {0}")]
    Unreachable(String),
    /// The agent did not answer within the dial timeout.
    #[error("the agent did not answer the dial in time")]
    Timeout,
    /// The tunnel session is gone (closed, failed, or the agent is draining it).
    #[error("the tunnel session is closed")]
    Closed,
}

#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    #[error("tunnel handshake failed: {0}")]
    Handshake(#[source] h2::Error),
    #[error("the peer did not start the tunnel handshake within {0:?}")]
    HandshakeTimeout(Duration),
    #[error("tunnel connection failed: {0}")]
    Connection(#[source] h2::Error),
    #[error("the peer did not answer a keepalive ping within {0:?}")]
    KeepaliveTimeout(Duration),
    #[error("invalid tunnel TLS material: {0}")]
    Tls(#[from] TlsError),
    #[error("cannot build the tunnel TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

impl Session {
    /// Runs the HTTP/2 client handshake over an accepted (TLS) stream. The returned future drives the connection
    /// and resolves when it ends (the caller spawns it). The caller sets TCP_NODELAY on the socket underneath:
    /// small requests must not wait for Nagle.
    pub async fn open<IO>(io: IO) -> Result<(Session, impl Future<Output = ()> + Send + 'static), TunnelError>
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        Self::open_with(io, SessionConfig::default()).await
    }

    /// [`Session::open`] with explicit timeouts and window sizes.
    pub async fn open_with<IO>(
        io: IO,
        config: SessionConfig,
    ) -> Result<(Session, impl Future<Output = ()> + Send + 'static), TunnelError>
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let windows = config.windows;
        let (sender, mut connection) = h2::client::Builder::new()
            .enable_push(false)
            .initial_window_size(windows.stream)
            .initial_connection_window_size(windows.connection)
            .max_frame_size(windows.max_frame_size)
            .max_send_buffer_size(windows.max_send_buffer)
            .handshake::<_, Bytes>(io)
            .await
            .map_err(TunnelError::Handshake)?;
        let shared = Arc::new(Shared {
            dial_timeout: config.dial_timeout,
            close: CancellationToken::new(),
            ended: CancellationToken::new(),
        });
        let ping_pong = connection.ping_pong();
        let driver_shared = shared.clone();
        let driver = async move {
            let outcome = tokio::select! {
                result = &mut connection => result.map_err(TunnelError::Connection),
                error = keep_alive(ping_pong, config.keepalive) => Err(error),
                () = driver_shared.close.cancelled() => Ok(()),
            };
            // Dropping the connection fails every stream still open on it, so their readers and writers end now.
            drop(connection);
            driver_shared.ended.cancel();
            match outcome {
                Ok(()) => debug!("tunnel session ended"),
                Err(error) => info!(error = %error, "tunnel session failed"),
            }
        };
        Ok((Session { sender, shared }, driver))
    }

    /// Opens a stream to `target` ("host:port", the host an IP address or `localhost`) on the agent's side.
    pub async fn dial(&self, target: &str) -> Result<TunnelStream, DialError> {
        if self.is_closed() {
            return Err(DialError::Closed);
        }
        let request = Request::builder()
            .method(Method::CONNECT)
            .uri(target)
            .body(())
            .map_err(|error| DialError::Refused(format!("invalid target {target:?}: {error}")))?;
        if request.uri().authority().is_none() || request.uri().scheme().is_some() {
            return Err(DialError::Refused(format!("invalid target {target:?}: expected host:port")));
        }
        let dialled = async {
            tokio::select! {
                answered = tokio::time::timeout(self.shared.dial_timeout, self.send_connect(request)) => {
                    answered.unwrap_or(Err(DialError::Timeout))
                }
                () = self.shared.ended.cancelled() => Err(DialError::Closed),
            }
        };
        let outcome = dialled.instrument(tracing::debug_span!("tunnel.dial", tunnel.target = target)).await;
        if let Err(error) = &outcome {
            debug!(tunnel.target = target, error = %error, "tunnel dial failed");
        }
        outcome
    }

    /// Closes the connection now (revocation): in-flight streams end with an error, later dials fail.
    pub fn close(&self) {
        self.shared.close.cancel();
    }

    pub fn is_closed(&self) -> bool {
        self.shared.close.is_cancelled() || self.shared.ended.is_cancelled()
    }

    /// Resolves when the connection has ended, for whatever reason.
    pub async fn closed(&self) {
        self.shared.ended.cancelled().await
    }

    async fn send_connect(&self, request: Request<()>) -> Result<TunnelStream, DialError> {
        // `ready` waits while the agent's limit of concurrent streams is reached.
        let mut sender = self.sender.clone().ready().await.map_err(|error| self.stream_error(error))?;
        let (response, send) = sender.send_request(request, false).map_err(|error| self.stream_error(error))?;
        let response = response.await.map_err(|error| self.stream_error(error))?;
        let status = response.status();
        if status.is_success() {
            return Ok(TunnelStream::new(send, response.into_body()));
        }
        let why = response
            .headers()
            .get(ERROR_HEADER)
            .and_then(|value| value.to_str().ok())
            .map(str::to_string)
            .unwrap_or_else(|| format!("agent answered {status}"));
        Err(match status {
            StatusCode::FORBIDDEN | StatusCode::BAD_REQUEST | StatusCode::METHOD_NOT_ALLOWED => DialError::Refused(why),
            _ => DialError::Unreachable(why),
        })
    }

    fn stream_error(&self, error: h2::Error) -> DialError {
        if self.is_closed() || error.is_go_away() || error.is_io() {
            DialError::Closed
        } else {
            DialError::Unreachable(format!("tunnel stream failed: {error}"))
        }
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig { keepalive: Keepalive::default(), windows: Windows::default(), dial_timeout: DIAL_TIMEOUT }
    }
}

impl Default for Keepalive {
    fn default() -> Self {
        Keepalive { interval: Duration::from_secs(15), timeout: Duration::from_secs(10) }
    }
}

impl Default for Windows {
    fn default() -> Self {
        Windows { stream: 2 * MIB, connection: 64 * MIB, max_frame_size: 16 * 1024, max_send_buffer: 1024 * 1024 }
    }
}

/// A rustls server configuration for a listener that serves only tunnels (tests, benchmarks, a dedicated port):
/// TLS 1.3, ALPN [`ALPN`], and a client certificate signed by `client_ca_pem` is required. On the shared API port the
/// API's own configuration offers [`ALPN`] instead.
pub fn server_config(client_ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<rustls::ServerConfig, TunnelError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in crate::tls::certificates(client_ca_pem)? {
        roots.add(cert)?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|error| TlsError::Pem(error.to_string()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(crate::tls::certificates(cert_pem)?, crate::tls::private_key(key_pem)?)?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(config)
}

impl TunnelStream {
    pub(crate) fn new(send: SendStream<Bytes>, recv: RecvStream) -> Self {
        TunnelStream { send, recv, unread: Bytes::new(), write_closed: false }
    }

    /// Copies between this stream and `io` in both directions until both are done, and returns the bytes moved
    /// (`io` → tunnel, tunnel → `io`). Faster than [`tokio::io::copy_bidirectional`]: data read from `io` becomes
    /// DATA frames without another copy, and received frames are written to `io` as they are. An error on either
    /// side resets the stream (CONNECT_ERROR, as RFC 9113 §8.5 asks), so the peer's reader sees it as a reset.
    pub async fn copy_bidirectional<IO>(mut self, io: &mut IO) -> io::Result<(u64, u64)>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let mut to_tunnel = ToTunnel { buffer: BytesMut::new(), pending: None, done: false, bytes: 0 };
        let mut from_tunnel =
            FromTunnel { pending: std::mem::take(&mut self.unread), state: FromTunnelState::Copying, bytes: 0 };
        let result = std::future::poll_fn(|cx| {
            let sent = self.poll_to_tunnel(cx, io, &mut to_tunnel);
            let received = self.poll_from_tunnel(cx, io, &mut from_tunnel);
            match (sent, received) {
                (Poll::Ready(Err(error)), _) | (_, Poll::Ready(Err(error))) => Poll::Ready(Err(error)),
                (Poll::Ready(Ok(())), Poll::Ready(Ok(()))) => Poll::Ready(Ok((to_tunnel.bytes, from_tunnel.bytes))),
                _ => Poll::Pending,
            }
        })
        .await;
        if result.is_err() {
            self.send.send_reset(Reason::CONNECT_ERROR);
        }
        result
    }

    fn poll_to_tunnel<IO>(&mut self, cx: &mut Context<'_>, io: &mut IO, state: &mut ToTunnel) -> Poll<io::Result<()>>
    where
        IO: AsyncRead + Unpin,
    {
        loop {
            if state.done {
                return Poll::Ready(Ok(()));
            }
            let Some(data) = state.pending.take() else {
                state.buffer.reserve(COPY_CHUNK);
                let read = ready!(tokio_util::io::poll_read_buf(Pin::new(&mut *io), cx, &mut state.buffer))?;
                if read == 0 {
                    self.send.send_data(Bytes::new(), true).map_err(write_error)?;
                    self.write_closed = true;
                    state.done = true;
                } else {
                    state.bytes += read as u64;
                    state.pending = Some(state.buffer.split().freeze());
                }
                continue;
            };
            // Hand the chunk over once the stream has any window: h2 queues the rest, and the next read waits
            // until the queue drains, so at most one chunk per stream is buffered beyond the window.
            if self.send.capacity() > 0 {
                self.send.send_data(data, false).map_err(write_error)?;
                continue;
            }
            let length = data.len();
            state.pending = Some(data);
            self.send.reserve_capacity(length);
            match ready!(self.send.poll_capacity(cx)) {
                Some(Ok(_)) => {}
                Some(Err(error)) => return Poll::Ready(Err(write_error(error))),
                None => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
            }
        }
    }

    fn poll_from_tunnel<IO>(
        &mut self,
        cx: &mut Context<'_>,
        io: &mut IO,
        state: &mut FromTunnel,
    ) -> Poll<io::Result<()>>
    where
        IO: AsyncWrite + Unpin,
    {
        loop {
            while !state.pending.is_empty() {
                let written = ready!(Pin::new(&mut *io).poll_write(cx, &state.pending))?;
                if written == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                state.pending.advance(written);
                state.bytes += written as u64;
                let _ = self.recv.flow_control().release_capacity(written);
                state.state = FromTunnelState::Unflushed;
            }
            match state.state {
                FromTunnelState::Done => return Poll::Ready(Ok(())),
                FromTunnelState::ShuttingDown => {
                    ready!(Pin::new(&mut *io).poll_shutdown(cx))?;
                    state.state = FromTunnelState::Done;
                    continue;
                }
                FromTunnelState::Copying | FromTunnelState::Unflushed => {}
            }
            match self.recv.poll_data(cx) {
                Poll::Ready(Some(Ok(data))) => state.pending = data,
                Poll::Ready(Some(Err(error))) => {
                    read_error(error)?;
                    state.state = FromTunnelState::ShuttingDown;
                }
                Poll::Ready(None) => state.state = FromTunnelState::ShuttingDown,
                Poll::Pending => {
                    // Nothing more right now: push out what was written before waiting.
                    if state.state == FromTunnelState::Unflushed {
                        ready!(Pin::new(&mut *io).poll_flush(cx))?;
                        state.state = FromTunnelState::Copying;
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

impl AsyncRead for TunnelStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        while this.unread.is_empty() {
            match ready!(this.recv.poll_data(cx)) {
                Some(Ok(data)) => this.unread = data,
                Some(Err(error)) => return Poll::Ready(read_error(error)),
                None => return Poll::Ready(Ok(())),
            }
        }
        let count = this.unread.len().min(buf.remaining());
        buf.put_slice(&this.unread[..count]);
        this.unread.advance(count);
        // Errors only when the stream is already gone, which the next read reports.
        let _ = this.recv.flow_control().release_capacity(count);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for TunnelStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        loop {
            let capacity = this.send.capacity();
            if capacity > 0 {
                let count = capacity.min(buf.len());
                this.send.send_data(Bytes::copy_from_slice(&buf[..count]), false).map_err(write_error)?;
                return Poll::Ready(Ok(count));
            }
            this.send.reserve_capacity(buf.len().min(COPY_CHUNK));
            match ready!(this.send.poll_capacity(cx)) {
                Some(Ok(_)) => {}
                Some(Err(error)) => return Poll::Ready(Err(write_error(error))),
                None => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Written data is already queued on the connection, whose task sends it without being asked.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.write_closed {
            this.send.send_data(Bytes::new(), true).map_err(write_error)?;
            this.write_closed = true;
        }
        Poll::Ready(Ok(()))
    }
}

impl std::fmt::Debug for TunnelStream {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("TunnelStream").field("stream_id", &self.send.stream_id().as_u32()).finish()
    }
}

/// Sends a PING every interval and returns once one goes unanswered (or the connection fails). Never returns if
/// the connection's ping handle is already taken.
pub(crate) async fn keep_alive(ping_pong: Option<PingPong>, keepalive: Keepalive) -> TunnelError {
    let Some(mut ping_pong) = ping_pong else {
        return std::future::pending().await;
    };
    loop {
        tokio::time::sleep(keepalive.interval).await;
        match tokio::time::timeout(keepalive.timeout, ping_pong.ping(Ping::opaque())).await {
            Ok(Ok(_pong)) => {}
            Ok(Err(error)) => return TunnelError::Connection(error),
            Err(_elapsed) => return TunnelError::KeepaliveTimeout(keepalive.timeout),
        }
    }
}

const MIB: u32 = 1024 * 1024;
/// The controller's dial timeout: the agent's connect timeout (5 s) plus room for a slow link.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest read from a proxied socket, and largest write reservation on a stream.
const COPY_CHUNK: usize = 64 * 1024;

struct Shared {
    dial_timeout: Duration,
    /// Cancelled by [`Session::close`]; the driver then drops the connection.
    close: CancellationToken,
    /// Cancelled by the driver once the connection is gone.
    ended: CancellationToken,
}

struct ToTunnel {
    buffer: BytesMut,
    pending: Option<Bytes>,
    done: bool,
    bytes: u64,
}

struct FromTunnel {
    pending: Bytes,
    state: FromTunnelState,
    bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FromTunnelState {
    Copying,
    /// Something was written to the socket since its last flush.
    Unflushed,
    /// The tunnel side ended; the socket's write side is being shut down.
    ShuttingDown,
    Done,
}

/// A clean end of the peer's side reads as end of file; a reset (the target failed, the stream was cancelled) or a
/// lost connection as an error, so a cut connection never looks like a complete one.
fn read_error(error: h2::Error) -> io::Result<()> {
    if error.reason() == Some(Reason::NO_ERROR) {
        return Ok(());
    }
    Err(stream_io_error(error))
}

fn write_error(error: h2::Error) -> io::Error {
    stream_io_error(error)
}

fn stream_io_error(error: h2::Error) -> io::Error {
    if error.is_io() {
        match error.into_io() {
            Some(io_error) => io_error,
            None => io::ErrorKind::BrokenPipe.into(),
        }
    } else {
        io::Error::new(io::ErrorKind::ConnectionReset, error)
    }
}
