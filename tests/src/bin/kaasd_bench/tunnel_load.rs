//! `kaasd-bench tunnel-load`: the load generator, run in the controller-side namespace against one path's address
//! (the edge's target directly, sshd's forwarded port, or the tunnel server's forwarded port). It speaks just
//! enough HTTP/1.1 (requests with Content-Length answers) to keep its own cost small and equal on every path, and
//! prints one JSON line with the result.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Body size the stalled reader asks for: far more than every buffer on the way can hold.
const STALLED_BODY_BYTES: u64 = 1 << 30;
/// Time the stalled reader's data gets to fill every window and socket buffer before the measurement starts.
const STALL_FILL_TIME: Duration = Duration::from_secs(1);
const READ_BUFFER_BYTES: usize = 256 * 1024;

#[derive(clap::Args, Debug)]
pub struct LoadArgs {
    #[arg(long, value_enum)]
    case: LoadCase,
    /// The path's address of the target HTTP server.
    #[arg(long)]
    target: SocketAddr,
    /// Body size of the bulk cases.
    #[arg(long, default_value_t = 1 << 30)]
    bytes: u64,
    /// Concurrent connections of the request cases.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Duration of the request cases.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// During the run, keep one more connection open whose large response is never read.
    #[arg(long)]
    stall: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadCase {
    /// One connection reads a large body (edge → controller side).
    Download,
    /// One connection sends a large body (controller side → edge).
    Upload,
    /// Keep-alive connections, one 64-byte GET in flight on each.
    Small,
    /// A new connection for every request (`Connection: close`).
    Connect,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct LoadResult {
    pub seconds: f64,
    /// Body bytes moved (bulk cases).
    pub bytes: u64,
    pub requests: u64,
    pub errors: u64,
    pub p50_micros: f64,
    pub p99_micros: f64,
    pub max_micros: f64,
}

impl LoadResult {
    pub fn gigabits_per_second(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.seconds / 1e9
    }

    pub fn requests_per_second(&self) -> f64 {
        self.requests as f64 / self.seconds
    }
}

pub async fn run(args: LoadArgs) -> Result<()> {
    let result = match args.case {
        LoadCase::Download => download(args.target, args.bytes).await?,
        LoadCase::Upload => upload(args.target, args.bytes).await?,
        LoadCase::Small | LoadCase::Connect => {
            let stalled = if args.stall { Some(stall(args.target).await?) } else { None };
            let result = requests(&args).await?;
            drop(stalled);
            result
        }
    };
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}

async fn download(target: SocketAddr, bytes: u64) -> Result<LoadResult> {
    download_over(Connection::open(target).await?.socket, bytes).await
}

async fn upload(target: SocketAddr, bytes: u64) -> Result<LoadResult> {
    upload_over(Connection::open(target).await?.socket, bytes).await
}

/// Reads a `bytes` long body from the target over an open connection (a socket, or a tunnel stream in the tunnel
/// server's own process).
pub async fn download_over<S: AsyncRead + AsyncWrite + Unpin>(stream: S, bytes: u64) -> Result<LoadResult> {
    let mut connection = Connection::over(stream);
    let started = Instant::now();
    let request = format!("GET /large?bytes={bytes} HTTP/1.1\r\nHost: target\r\n\r\n");
    let received = connection.exchange(request.as_bytes()).await?;
    if received != bytes {
        bail!("received {received} of {bytes} bytes");
    }
    Ok(LoadResult { seconds: started.elapsed().as_secs_f64(), bytes, requests: 1, ..LoadResult::default() })
}

/// Sends a `bytes` long body to the target over an open connection.
pub async fn upload_over<S: AsyncRead + AsyncWrite + Unpin>(stream: S, bytes: u64) -> Result<LoadResult> {
    let mut connection = Connection::over(stream);
    let started = Instant::now();
    let head = format!("POST /upload HTTP/1.1\r\nHost: target\r\nContent-Length: {bytes}\r\n\r\n");
    connection.socket.write_all(head.as_bytes()).await?;
    let zeros = vec![0u8; READ_BUFFER_BYTES];
    let mut left = bytes;
    while left > 0 {
        let length = left.min(zeros.len() as u64) as usize;
        connection.socket.write_all(&zeros[..length]).await.context("sending the upload")?;
        left -= length as u64;
    }
    let answer = connection.read_response().await?;
    let counted: u64 = String::from_utf8_lossy(&answer).trim().parse().context("the upload answer")?;
    if counted != bytes {
        bail!("the target counted {counted} of {bytes} uploaded bytes");
    }
    Ok(LoadResult { seconds: started.elapsed().as_secs_f64(), bytes, requests: 1, ..LoadResult::default() })
}

/// A connection whose large response is requested and then left unread.
async fn stall(target: SocketAddr) -> Result<Connection<TcpStream>> {
    let mut connection = Connection::open(target).await?;
    let request = format!("GET /large?bytes={STALLED_BODY_BYTES} HTTP/1.1\r\nHost: target\r\n\r\n");
    connection.socket.write_all(request.as_bytes()).await?;
    let mut first = [0u8; 1024];
    connection.socket.read_exact(&mut first).await.context("the stalled response never started")?;
    tokio::time::sleep(STALL_FILL_TIME).await;
    Ok(connection)
}

async fn requests(args: &LoadArgs) -> Result<LoadResult> {
    let deadline = Instant::now() + Duration::from_secs_f64(args.seconds);
    let new_connection_each_time = args.case == LoadCase::Connect;
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..args.connections {
        let target = args.target;
        workers.push(tokio::spawn(async move { request_loop(target, deadline, new_connection_each_time).await }));
    }
    let mut histogram = new_histogram();
    let mut errors = 0;
    for worker in workers {
        let (worker_histogram, worker_errors) = worker.await.context("a load worker panicked")?;
        histogram.add(worker_histogram).context("merging histograms")?;
        errors += worker_errors;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(LoadResult {
        seconds,
        bytes: 0,
        requests: histogram.len(),
        errors,
        p50_micros: histogram.value_at_quantile(0.5) as f64,
        p99_micros: histogram.value_at_quantile(0.99) as f64,
        max_micros: histogram.max() as f64,
    })
}

async fn request_loop(target: SocketAddr, deadline: Instant, new_connection_each_time: bool) -> (Histogram<u64>, u64) {
    let mut histogram = new_histogram();
    let mut errors = 0;
    let mut kept: Option<Connection<TcpStream>> = None;
    let request: &[u8] = if new_connection_each_time {
        b"GET /small HTTP/1.1\r\nHost: target\r\nConnection: close\r\n\r\n"
    } else {
        b"GET /small HTTP/1.1\r\nHost: target\r\n\r\n"
    };
    while Instant::now() < deadline {
        let started = Instant::now();
        let outcome = async {
            let mut connection = match kept.take() {
                Some(connection) => connection,
                None => Connection::open(target).await?,
            };
            let received = connection.exchange(request).await?;
            if received != crate::tunnel_roles::SMALL_BODY_BYTES as u64 {
                bail!("received {received} bytes instead of {}", crate::tunnel_roles::SMALL_BODY_BYTES);
            }
            if !new_connection_each_time {
                kept = Some(connection);
            }
            Ok(())
        }
        .await;
        match outcome {
            Ok(()) => {
                let _ = histogram.record(started.elapsed().as_micros().max(1) as u64);
            }
            Err(_) => {
                errors += 1;
                // Do not spin on a path that is down.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    (histogram, errors)
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid histogram bounds")
}

/// One HTTP/1.1 connection: requests go out as given, answers must carry Content-Length.
struct Connection<S> {
    socket: S,
    buffer: Vec<u8>,
    /// Bytes of `buffer` that hold data not consumed yet.
    filled: usize,
}

impl Connection<TcpStream> {
    async fn open(target: SocketAddr) -> Result<Self> {
        let socket = TcpStream::connect(target).await.with_context(|| format!("connecting to {target}"))?;
        socket.set_nodelay(true)?;
        Ok(Connection::over(socket))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    fn over(socket: S) -> Self {
        Connection { socket, buffer: vec![0; READ_BUFFER_BYTES], filled: 0 }
    }

    /// Sends `request` and reads the answer, discarding the body; returns the body's size.
    async fn exchange(&mut self, request: &[u8]) -> Result<u64> {
        self.socket.write_all(request).await.context("sending a request")?;
        let (status_ok, length) = self.read_head().await?;
        let received = self.skip_body(length).await?;
        if !status_ok {
            bail!("the target answered an error");
        }
        Ok(received)
    }

    /// Reads an answer and returns its (small) body.
    async fn read_response(&mut self) -> Result<Vec<u8>> {
        let (status_ok, length) = self.read_head().await?;
        let length = usize::try_from(length).context("body too large")?;
        while self.filled < length {
            self.fill().await?;
        }
        let body = self.buffer[..length].to_vec();
        self.consume(length);
        if !status_ok {
            bail!("the target answered an error: {}", String::from_utf8_lossy(&body));
        }
        Ok(body)
    }

    /// Reads the status line and headers; returns whether the status is 2xx and the Content-Length.
    async fn read_head(&mut self) -> Result<(bool, u64)> {
        let head_end = loop {
            if let Some(position) = self.buffer[..self.filled].windows(4).position(|window| window == b"\r\n\r\n") {
                break position + 4;
            }
            if self.filled == self.buffer.len() {
                bail!("response head larger than {} bytes", self.buffer.len());
            }
            self.fill().await?;
        };
        let head = String::from_utf8_lossy(&self.buffer[..head_end]).into_owned();
        self.consume(head_end);
        let status_ok = head.split_whitespace().nth(1).is_some_and(|status| status.starts_with('2'));
        let length = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.trim().eq_ignore_ascii_case("content-length").then(|| value.trim().parse::<u64>().ok())?
            })
            .context("response without Content-Length")?;
        Ok((status_ok, length))
    }

    async fn skip_body(&mut self, length: u64) -> Result<u64> {
        let mut left = length;
        let buffered = (self.filled as u64).min(left);
        self.consume(buffered as usize);
        left -= buffered;
        while left > 0 {
            let read = self.socket.read(&mut self.buffer).await.context("reading a body")?;
            if read == 0 {
                bail!("connection closed with {left} body bytes missing");
            }
            let used = (read as u64).min(left);
            left -= used;
            if (read as u64) > used {
                // Bytes of a following answer (never sent, as requests wait for their answer); keep them anyway.
                self.buffer.copy_within(used as usize..read, 0);
                self.filled = read - used as usize;
            }
        }
        Ok(length)
    }

    async fn fill(&mut self) -> Result<()> {
        let read = self.socket.read(&mut self.buffer[self.filled..]).await.context("reading an answer")?;
        if read == 0 {
            bail!("connection closed before the answer was complete");
        }
        self.filled += read;
        Ok(())
    }

    fn consume(&mut self, count: usize) {
        self.buffer.copy_within(count..self.filled, 0);
        self.filled -= count;
    }
}
