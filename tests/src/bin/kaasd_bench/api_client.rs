//! HTTPS connections to `kaasd controller` for the API benchmark: one TCP + TLS connection per client, HTTP/1.1 or
//! HTTP/2 (chosen per connection by ALPN), authenticated with the admin client certificate of the kubeconfig.
//!
//! The clients are plain hyper connections instead of a pooled client library so that "32 clients" means exactly
//! 32 connections with one request in flight each, and nothing on the client side batches or retries.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// No single request may hang a run: a server that stops answering fails the case instead.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Protocol {
    Http1,
    Http2,
}

impl Protocol {
    pub fn label(self) -> &'static str {
        match self {
            Protocol::Http1 => "HTTP/1.1",
            Protocol::Http2 => "HTTP/2",
        }
    }

    fn alpn(self) -> Vec<u8> {
        match self {
            Protocol::Http1 => b"http/1.1".to_vec(),
            Protocol::Http2 => b"h2".to_vec(),
        }
    }
}

/// Where a controller listens and the TLS settings to reach it: verified against the cluster CA with the admin
/// certificate, or (for `/readyz` polling before the CA exists on disk) unverified and anonymous.
#[derive(Clone)]
pub struct Endpoint {
    pub address: SocketAddr,
    http1_tls: Arc<ClientConfig>,
    http2_tls: Arc<ClientConfig>,
}

impl Endpoint {
    /// The admin identity of `kubeconfig` (the file kaasd writes: embedded base64 PEM data) talking to `address`.
    pub fn admin(address: SocketAddr, kubeconfig: &Path) -> Result<Endpoint> {
        let text = std::fs::read_to_string(kubeconfig).with_context(|| format!("reading {}", kubeconfig.display()))?;
        let ca_pem = kubeconfig_field(&text, "certificate-authority-data")?;
        let certificate_pem = kubeconfig_field(&text, "client-certificate-data")?;
        let key_pem = kubeconfig_field(&text, "client-key-data")?;
        let mut roots = RootCertStore::empty();
        for certificate in parse_certificates(&ca_pem)? {
            roots.add(certificate).context("adding the cluster CA")?;
        }
        let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
            .context("parsing client-key-data")?
            .ok_or_else(|| anyhow!("client-key-data holds no private key"))?;
        let config = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .context("choosing TLS versions")?
            .with_root_certificates(roots)
            .with_client_auth_cert(parse_certificates(&certificate_pem)?, key)
            .context("loading the admin client certificate")?;
        Ok(Endpoint::with_config(address, config))
    }

    /// Anonymous and without checking the server's certificate: only for `/readyz`, which anonymous users may
    /// read, while a fresh controller is still writing its CA.
    pub fn unverified(address: SocketAddr) -> Result<Endpoint> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .context("choosing TLS versions")?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth();
        Ok(Endpoint::with_config(address, config))
    }

    fn with_config(address: SocketAddr, config: ClientConfig) -> Endpoint {
        let with_alpn = |protocol: Protocol| {
            let mut config = config.clone();
            config.alpn_protocols = vec![protocol.alpn()];
            Arc::new(config)
        };
        Endpoint { address, http1_tls: with_alpn(Protocol::Http1), http2_tls: with_alpn(Protocol::Http2) }
    }

    pub async fn connect(&self, protocol: Protocol) -> Result<ApiConnection> {
        tokio::time::timeout(REQUEST_TIMEOUT, self.connect_unbounded(protocol))
            .await
            .map_err(|_| anyhow!("connecting to {} took longer than {REQUEST_TIMEOUT:?}", self.address))?
    }

    async fn connect_unbounded(&self, protocol: Protocol) -> Result<ApiConnection> {
        let tcp = TcpStream::connect(self.address).await.with_context(|| format!("connecting to {}", self.address))?;
        tcp.set_nodelay(true).context("setting TCP_NODELAY")?;
        let tls_config = match protocol {
            Protocol::Http1 => self.http1_tls.clone(),
            Protocol::Http2 => self.http2_tls.clone(),
        };
        let server_name = ServerName::IpAddress(self.address.ip().into());
        let tls = TlsConnector::from(tls_config).connect(server_name, tcp).await.context("TLS handshake")?;
        let negotiated = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        if negotiated.as_deref() != Some(protocol.alpn().as_slice()) {
            bail!("the server did not agree to {} (ALPN answer {negotiated:?})", protocol.label());
        }
        let io = TokioIo::new(tls);
        let sender = match protocol {
            Protocol::Http1 => {
                let (sender, connection) = http1::handshake(io).await.context("HTTP/1.1 handshake")?;
                tokio::spawn(connection);
                Sender::Http1(sender)
            }
            Protocol::Http2 => {
                let (sender, connection) =
                    http2::handshake(TokioExecutor::new(), io).await.context("HTTP/2 handshake")?;
                tokio::spawn(connection);
                Sender::Http2(sender)
            }
        };
        Ok(ApiConnection { sender, authority: self.address.to_string() })
    }
}

/// One connection; requests on it go one at a time.
pub struct ApiConnection {
    sender: Sender,
    authority: String,
}

enum Sender {
    Http1(http1::SendRequest<Full<Bytes>>),
    Http2(http2::SendRequest<Full<Bytes>>),
}

impl ApiConnection {
    /// Sends a request and returns the response head; the body is left to the caller (watches stream it).
    pub async fn send(&mut self, method: Method, path: &str, body: Option<Bytes>) -> Result<Response<Incoming>> {
        let mut builder = Request::builder()
            .method(method.clone())
            .header(header::ACCEPT, "application/json")
            .header(header::USER_AGENT, "kaasd-bench");
        builder = match &self.sender {
            // HTTP/1.1 takes the origin form and a Host header; HTTP/2 takes :scheme and :authority from the URI.
            Sender::Http1(_) => builder.uri(path).header(header::HOST, &self.authority),
            Sender::Http2(_) => builder.uri(format!("https://{}{path}", self.authority)),
        };
        if body.is_some() {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
        }
        let request = builder.body(Full::new(body.unwrap_or_default())).context("building a request")?;
        let sending = async {
            match &mut self.sender {
                Sender::Http1(sender) => {
                    sender.ready().await.context("connection closed")?;
                    sender.send_request(request).await.context("HTTP/1.1 request")
                }
                Sender::Http2(sender) => {
                    sender.ready().await.context("connection closed")?;
                    sender.send_request(request).await.context("HTTP/2 request")
                }
            }
        };
        tokio::time::timeout(REQUEST_TIMEOUT, sending)
            .await
            .map_err(|_| anyhow!("{method} {path} got no response within {REQUEST_TIMEOUT:?}"))?
    }

    /// Sends a request and reads the whole body.
    pub async fn request(&mut self, method: Method, path: &str, body: Option<Bytes>) -> Result<(StatusCode, Bytes)> {
        let response = self.send(method.clone(), path, body).await?;
        let status = response.status();
        let body = tokio::time::timeout(REQUEST_TIMEOUT, response.into_body().collect())
            .await
            .map_err(|_| anyhow!("{method} {path}: body not read within {REQUEST_TIMEOUT:?}"))?
            .with_context(|| format!("{method} {path}: reading the body"))?
            .to_bytes();
        Ok((status, body))
    }

    /// Like [`ApiConnection::request`], but anything but `expected` is an error carrying the server's answer.
    pub async fn expect(
        &mut self,
        expected: StatusCode,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<Bytes> {
        let (status, body) = self.request(method.clone(), path, body).await?;
        if status != expected {
            bail!("{method} {path} answered {status}: {}", String::from_utf8_lossy(&body[..body.len().min(500)]));
        }
        Ok(body)
    }
}

/// The decoded PEM of a base64 `*-data` field of a kubeconfig with one cluster and one user.
fn kubeconfig_field(text: &str, name: &str) -> Result<Vec<u8>> {
    let prefix = format!("{name}:");
    let value = text
        .lines()
        .find_map(|line| line.trim_start().strip_prefix(prefix.as_str()))
        .ok_or_else(|| anyhow!("the kubeconfig has no {name}"))?;
    base64::engine::general_purpose::STANDARD.decode(value.trim()).with_context(|| format!("decoding {name}"))
}

fn parse_certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>> {
    let certificates = rustls_pemfile::certs(&mut &pem[..]).collect::<std::result::Result<Vec<_>, _>>()?;
    if certificates.is_empty() {
        bail!("no certificate in the PEM data");
    }
    Ok(certificates)
}

/// Accepts any server certificate; the signature checks still run, so the handshake itself is a real one.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            certificate,
            signature,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            certificate,
            signature,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeconfig_fields_are_decoded() {
        let text =
            "users:\n- name: admin\n  user:\n    client-certificate-data: aGVsbG8=\n    client-key-data: d29ybGQ=\n";
        assert_eq!(kubeconfig_field(text, "client-certificate-data").unwrap(), b"hello");
        assert_eq!(kubeconfig_field(text, "client-key-data").unwrap(), b"world");
        assert!(kubeconfig_field(text, "certificate-authority-data").is_err());
    }
}
