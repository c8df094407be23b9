//! Forwarding of names outside the cluster to the node's own nameservers.
//!
//! The client's query is relayed byte for byte (its id, flags and EDNS options included), each over a fresh
//! connected UDP socket: the kernel then delivers only the upstream's datagrams to it, and its random source port
//! is what makes a forged answer hard to slip in.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// The largest DNS message over UDP or TCP.
const MAX_MESSAGE: usize = u16::MAX as usize;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("no upstream nameservers are configured")]
    NoneConfigured,
    #[error("upstream {server} did not answer within {timeout:?}")]
    TimedOut { server: SocketAddr, timeout: Duration },
    #[error("upstream {server} failed: {source}")]
    Io { server: SocketAddr, source: std::io::Error },
}

/// The nameservers the resolver forwards to, tried in order.
#[derive(Debug, Clone)]
pub struct Upstreams {
    pub servers: Vec<SocketAddr>,
    /// How long one attempt at one server may take; a dead upstream costs this much per server, then SERVFAIL.
    pub timeout: Duration,
}

impl Upstreams {
    /// Sends `query` to each server in turn until one answers. With `retry_over_tcp`, a truncated UDP answer is
    /// asked again over TCP; a UDP client is better served by the truncated answer itself, which sends it to
    /// kaasd over TCP.
    pub async fn exchange(&self, query: &[u8], retry_over_tcp: bool) -> Result<Vec<u8>, UpstreamError> {
        let mut last_error = UpstreamError::NoneConfigured;
        for &server in &self.servers {
            let attempt = async {
                let answer = exchange_udp(server, query).await?;
                if retry_over_tcp && is_truncated(&answer) {
                    return exchange_tcp(server, query).await;
                }
                Ok(answer)
            };
            match tokio::time::timeout(self.timeout, attempt).await {
                Ok(Ok(answer)) => return Ok(answer),
                Ok(Err(source)) => last_error = UpstreamError::Io { server, source },
                Err(_) => last_error = UpstreamError::TimedOut { server, timeout: self.timeout },
            }
        }
        Err(last_error)
    }
}

async fn exchange_udp(server: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let local: SocketAddr =
        if server.is_ipv4() { (Ipv4Addr::UNSPECIFIED, 0).into() } else { (Ipv6Addr::UNSPECIFIED, 0).into() };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(server).await?;
    socket.send(query).await?;
    let mut buffer = vec![0; MAX_MESSAGE];
    loop {
        let length = socket.recv(&mut buffer).await?;
        // A late answer to an earlier query cannot arrive on this fresh socket, but a stray datagram can: skip
        // anything that is not the answer to this id.
        if length >= 12 && buffer[..2] == query[..2] && buffer[2] & 0x80 != 0 {
            buffer.truncate(length);
            return Ok(buffer);
        }
    }
}

async fn exchange_tcp(server: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(server).await?;
    stream.set_nodelay(true)?;
    let length = u16::try_from(query.len()).map_err(|_| std::io::Error::other("query longer than a dns message"))?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&length.to_be_bytes());
    framed.extend_from_slice(query);
    stream.write_all(&framed).await?;
    let length = stream.read_u16().await?;
    let mut answer = vec![0; usize::from(length)];
    stream.read_exact(&mut answer).await?;
    Ok(answer)
}

/// The TC bit of a wire-format DNS header.
pub fn is_truncated(message: &[u8]) -> bool {
    message.len() >= 12 && message[2] & 0x02 != 0
}
