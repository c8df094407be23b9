//! The processes `kaasd-bench tunnel` starts in the NAT lab's namespaces: the tunnel server (controller side), the
//! agents (edge side), and the HTTP target the load goes to. Each prints `ready pid=<pid>` once it serves; the
//! tunnel server then prints `agents <n>` whenever the number of connected nodes changes.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use kaasd_tunnel::agent::{self, DialPolicy};
use kaasd_tunnel::session::{self, Session};
use tokio::io::AsyncBufReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_util::sync::CancellationToken;

/// The body of `GET /small`, the size of a small API answer's payload.
pub const SMALL_BODY_BYTES: usize = 64;
/// What a node's name looks like in its certificate: `CN=system:node:<name>`, as the Node authorizer expects.
const NODE_CN_PREFIX: &str = "system:node:";

#[derive(clap::Args, Debug)]
pub struct ServerArgs {
    /// Where agents connect (TLS 1.3 with client certificates).
    #[arg(long)]
    listen: SocketAddr,
    /// Directory with the PKI `kaasd-bench tunnel` wrote (see [`PkiFiles`]).
    #[arg(long)]
    pki: PathBuf,
    /// `LISTEN=NODE/TARGET`: every TCP connection to LISTEN is carried through NODE's tunnel to TARGET (repeatable).
    #[arg(long)]
    forward: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct AgentsArgs {
    /// The tunnel server.
    #[arg(long)]
    server: SocketAddr,
    #[arg(long)]
    pki: PathBuf,
    /// Index of the first node identity (`n<index>`).
    #[arg(long)]
    first: usize,
    #[arg(long)]
    count: usize,
    /// This edge's own address, which the agents may dial besides loopback.
    #[arg(long)]
    own_address: IpAddr,
}

#[derive(clap::Args, Debug)]
pub struct TargetArgs {
    #[arg(long)]
    listen: SocketAddr,
}

/// Where the PKI files live in the directory shared by all the processes of one run.
pub struct PkiFiles {
    pub dir: PathBuf,
}

impl PkiFiles {
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("server.pem")
    }
    pub fn server_key(&self) -> PathBuf {
        self.dir.join("server-key.pem")
    }
    pub fn node_cert(&self, index: usize) -> PathBuf {
        self.dir.join(format!("n{index}.pem"))
    }
    pub fn node_key(&self, index: usize) -> PathBuf {
        self.dir.join(format!("n{index}-key.pem"))
    }
    pub fn node_name(index: usize) -> String {
        format!("n{index}")
    }
}

/// `kaasd-bench tunnel-server`: accepts agents, keeps the newest session per node, and forwards local ports.
pub async fn serve_tunnels(args: ServerArgs) -> Result<()> {
    let files = PkiFiles { dir: args.pki.clone() };
    let config = session::server_config(&read(&files.ca())?, &read(&files.server_cert())?, &read(&files.server_key())?)
        .context("building the tunnel server's TLS configuration")?;
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let registry = Arc::new(Registry::default());
    for forward in &args.forward {
        let (listen, rest) = forward.split_once('=').ok_or_else(|| anyhow!("--forward {forward:?}: no '='"))?;
        let (node, target) = rest.split_once('/').ok_or_else(|| anyhow!("--forward {forward:?}: no '/'"))?;
        let listener = TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
        tokio::spawn(forward_port(listener, node.to_string(), target.to_string(), registry.clone()));
    }
    let listener = TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    tokio::spawn(answer_commands(registry.clone()));
    println!("ready pid={}", std::process::id());
    loop {
        match listener.accept().await {
            Ok((socket, _)) => {
                tokio::spawn(serve_agent(socket, acceptor.clone(), registry.clone()));
            }
            Err(error) => {
                // Out of descriptors, typically: wait for some to be freed rather than spin.
                eprintln!("tunnel-server: accept: {error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// `kaasd-bench tunnel-agents`: one `agent::run` task per node identity, all in this process.
pub async fn run_agents(args: AgentsArgs) -> Result<()> {
    let files = PkiFiles { dir: args.pki.clone() };
    let ca = read(&files.ca())?;
    let policy = Arc::new(DialPolicy::new(vec![args.own_address]));
    let cancel = CancellationToken::new();
    let server = args.server;
    let server_name = rustls::pki_types::ServerName::IpAddress(server.ip().into());
    for index in args.first..args.first + args.count {
        let config = agent::client_config(&ca, &read(&files.node_cert(index))?, &read(&files.node_key(index))?)
            .with_context(|| format!("TLS configuration of node {index}"))?;
        let connector = TlsConnector::from(Arc::new(config));
        let server_name = server_name.clone();
        let connect = move || {
            let connector = connector.clone();
            let server_name = server_name.clone();
            async move {
                let socket = TcpStream::connect(server).await?;
                socket.set_nodelay(true)?;
                connector.connect(server_name, socket).await
            }
        };
        tokio::spawn(agent::run(connect, policy.clone(), cancel.clone()));
    }
    println!("ready pid={}", std::process::id());
    std::future::pending::<()>().await;
    Ok(())
}

/// `kaasd-bench tunnel-target`: the HTTP server in the edge that every path leads to. `GET /small` answers 64
/// bytes, `GET /large?bytes=N` streams N bytes, `POST /upload` reads and discards the body and answers its size.
pub async fn serve_target(args: TargetArgs) -> Result<()> {
    let listener = TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    println!("ready pid={}", std::process::id());
    loop {
        let (socket, _) = listener.accept().await.context("accepting")?;
        let _ = socket.set_nodelay(true);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(answer);
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(socket), service).await;
        });
    }
}

#[derive(Default)]
struct Registry {
    sessions: Mutex<RegistryState>,
}

#[derive(Default)]
struct RegistryState {
    /// Node name → (generation, session); a node that connects again replaces its older session.
    by_node: HashMap<String, (u64, Session)>,
    next_generation: u64,
}

impl Registry {
    fn insert(&self, node: &str, session: Session) -> u64 {
        let mut state = self.sessions.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let generation = state.next_generation;
        state.next_generation += 1;
        if let Some((_, older)) = state.by_node.insert(node.to_string(), (generation, session)) {
            older.close();
        }
        println!("agents {}", state.by_node.len());
        generation
    }

    fn remove(&self, node: &str, generation: u64) {
        let mut state = self.sessions.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if state.by_node.get(node).is_some_and(|(current, _)| *current == generation) {
            state.by_node.remove(node);
            println!("agents {}", state.by_node.len());
        }
    }

    fn get(&self, node: &str) -> Option<Session> {
        let state = self.sessions.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        state.by_node.get(node).map(|(_, session)| session.clone())
    }
}

/// Bulk transfers the tunnel server runs itself, through a node's tunnel, the way the controller consumes a stream
/// in its own process (no forwarded port in between). Commands on stdin: `download|upload NODE TARGET BYTES`;
/// answers on stdout: `result <json>` or `result-error <why>`.
async fn answer_commands(registry: Arc<Registry>) {
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let outcome = async {
            let words: Vec<&str> = line.split_whitespace().collect();
            let [verb, node, target, bytes] = words[..] else { bail!("cannot parse command {line:?}") };
            let bytes: u64 = bytes.parse().context("byte count")?;
            let session = registry.get(node).ok_or_else(|| anyhow!("no session for node {node}"))?;
            let stream = session.dial(target).await?;
            match verb {
                "download" => crate::tunnel_load::download_over(stream, bytes).await,
                "upload" => crate::tunnel_load::upload_over(stream, bytes).await,
                other => bail!("unknown command {other:?}"),
            }
        }
        .await;
        match outcome.and_then(|result| Ok(serde_json::to_string(&result)?)) {
            Ok(json) => println!("result {json}"),
            Err(error) => println!("result-error {error:#}"),
        }
    }
}

async fn serve_agent(socket: TcpStream, acceptor: TlsAcceptor, registry: Arc<Registry>) {
    let _ = socket.set_nodelay(true);
    let tls = match acceptor.accept(socket).await {
        Ok(tls) => tls,
        Err(error) => return eprintln!("tunnel-server: TLS handshake: {error}"),
    };
    let node = match tls.get_ref().1.peer_certificates().and_then(|chain| chain.first()).map(node_name) {
        Some(Ok(node)) => node,
        Some(Err(error)) => return eprintln!("tunnel-server: {error:#}"),
        None => return eprintln!("tunnel-server: an agent presented no certificate"),
    };
    let (session, driver) = match Session::open(tls).await {
        Ok(opened) => opened,
        Err(error) => return eprintln!("tunnel-server: {node}: {error}"),
    };
    let generation = registry.insert(&node, session);
    // Driving the connection in this task keeps one task per agent.
    driver.await;
    registry.remove(&node, generation);
}

fn node_name(certificate: &rustls::pki_types::CertificateDer<'_>) -> Result<String> {
    let (_, parsed) =
        x509_parser::parse_x509_certificate(certificate.as_ref()).context("parsing a client certificate")?;
    let common_name = parsed
        .subject()
        .iter_common_name()
        .next()
        .and_then(|name| name.as_str().ok())
        .ok_or_else(|| anyhow!("a client certificate has no common name"))?;
    match common_name.strip_prefix(NODE_CN_PREFIX) {
        Some(node) => Ok(node.to_string()),
        None => bail!("client certificate CN {common_name:?} is not a node's"),
    }
}

async fn forward_port(listener: TcpListener, node: String, target: String, registry: Arc<Registry>) {
    loop {
        let Ok((mut socket, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let _ = socket.set_nodelay(true);
        let Some(session) = registry.get(&node) else {
            eprintln!("tunnel-server: no session for node {node}");
            continue;
        };
        let target = target.clone();
        tokio::spawn(async move {
            match session.dial(&target).await {
                Ok(stream) => {
                    let _ = stream.copy_bidirectional(&mut socket).await;
                }
                Err(error) => eprintln!("tunnel-server: dial {target}: {error}"),
            }
        });
    }
}

type TargetBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn answer(request: Request<Incoming>) -> Result<Response<TargetBody>, Infallible> {
    const CHUNK: usize = 256 * 1024;
    static LARGE_CHUNK: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
    let response = match (request.method().as_str(), request.uri().path()) {
        ("GET", "/small") => Response::new(Full::new(Bytes::from_static(&[b'x'; SMALL_BODY_BYTES])).boxed()),
        ("GET", "/large") => {
            let bytes: u64 = request
                .uri()
                .query()
                .and_then(|query| query.strip_prefix("bytes="))
                .and_then(|value| value.parse().ok())
                .unwrap_or(0);
            let chunk = LARGE_CHUNK.get_or_init(|| Bytes::from(vec![b'y'; CHUNK])).clone();
            let chunks = futures::stream::unfold(bytes, move |left| {
                let chunk = chunk.clone();
                async move {
                    if left == 0 {
                        return None;
                    }
                    let length = left.min(CHUNK as u64) as usize;
                    Some((Ok::<_, Infallible>(Frame::data(chunk.slice(..length))), left - length as u64))
                }
            });
            let mut response = Response::new(StreamBody::new(chunks).boxed());
            response.headers_mut().insert(hyper::header::CONTENT_LENGTH, bytes.into());
            response
        }
        ("POST", "/upload") => {
            let mut body = request.into_body();
            let mut received: u64 = 0;
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(frame) => received += frame.data_ref().map_or(0, |data| data.len() as u64),
                    Err(_) => break,
                }
            }
            Response::new(Full::new(Bytes::from(received.to_string())).boxed())
        }
        _ => {
            let mut response = Response::new(Full::new(Bytes::from_static(b"not found")).boxed());
            *response.status_mut() = StatusCode::NOT_FOUND;
            response
        }
    };
    Ok(response)
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}
