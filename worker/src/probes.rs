//! Readiness and liveness probes: exec (CRI ExecSync in the container), httpGet and tcpSocket (to the pod's
//! address, which the node reaches on its pod bridge); and postStart/preStop hooks, which use the same handlers
//! (plus `sleep`).

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cri::{proto, Cri};

/// One probe's progress for one container (it starts over when the container is restarted).
#[derive(Debug, Clone)]
pub struct ProbeState {
    pub container_id: String,
    pub successes: i32,
    pub failures: i32,
    pub next: tokio::time::Instant,
    /// Readiness: the last verdict (false until the first success). Liveness: unused.
    pub passing: bool,
}

impl ProbeState {
    pub fn new(container_id: &str) -> ProbeState {
        ProbeState {
            container_id: container_id.into(),
            successes: 0,
            failures: 0,
            next: tokio::time::Instant::now(),
            passing: false,
        }
    }

    /// Records a result; returns whether the probe now passes (successThreshold in a row) or fails
    /// (failureThreshold in a row), or None when neither threshold was reached yet.
    pub fn record(&mut self, probe: &Probe, success: bool) -> Option<bool> {
        self.next = tokio::time::Instant::now() + Duration::from_secs(probe.period_seconds.unwrap_or(10).max(1) as u64);
        if success {
            self.successes += 1;
            self.failures = 0;
            (self.successes >= probe.success_threshold.unwrap_or(1).max(1)).then_some(true)
        } else {
            self.failures += 1;
            self.successes = 0;
            (self.failures >= probe.failure_threshold.unwrap_or(3).max(1)).then_some(false)
        }
    }
}

/// Whether the container has been running long enough for its probe to start.
pub fn past_initial_delay(probe: &Probe, started_at_nanos: i64) -> bool {
    let now = jiff::Timestamp::now().as_nanosecond() as i64;
    now - started_at_nanos >= i64::from(probe.initial_delay_seconds.unwrap_or(0)) * 1_000_000_000
}

/// Runs the probe once; Err carries why it failed.
pub async fn run(
    cri: &Cri,
    container_id: &str,
    container: &Container,
    probe: &Probe,
    pod_ip: Option<&str>,
) -> Result<(), String> {
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
    if let Some(exec) = &probe.exec {
        let request = proto::ExecSyncRequest {
            container_id: container_id.into(),
            cmd: exec.command.clone().unwrap_or_default(),
            timeout: timeout.as_secs() as i64,
        };
        let answer = cri.runtime.clone().exec_sync(request).await.map_err(|error| error.message().to_string())?;
        let answer = answer.into_inner();
        return if answer.exit_code == 0 {
            Ok(())
        } else {
            Err(format!("command exited with {}: {}", answer.exit_code, String::from_utf8_lossy(&answer.stdout)))
        };
    }
    let port_of = |port: &IntOrString| -> Result<u16, String> {
        match port {
            IntOrString::Int(port) => u16::try_from(*port).map_err(|_| format!("port {port} is out of range")),
            IntOrString::String(name) => container
                .ports
                .iter()
                .flatten()
                .find(|port| port.name.as_deref() == Some(name.as_str()))
                .and_then(|port| u16::try_from(port.container_port).ok())
                .ok_or_else(|| format!("the container has no port named {name:?}")),
        }
    };
    if let Some(http) = &probe.http_get {
        let host = http.host.clone().or(pod_ip.map(str::to_string)).ok_or("the pod has no address yet")?;
        let port = port_of(&http.port)?;
        let path = http.path.clone().unwrap_or_else(|| "/".into());
        let https = http.scheme.as_deref() == Some("HTTPS");
        let exchange = async {
            let stream = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
            let mut request = format!("GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.33\r\n");
            for header in http.http_headers.iter().flatten() {
                request.push_str(&format!("{}: {}\r\n", header.name, header.value));
            }
            request.push_str("Connection: close\r\n\r\n");
            let mut head = vec![0u8; 64];
            let read = if https {
                let mut stream = https_probe_connect(&host, stream).await?;
                stream.write_all(request.as_bytes()).await?;
                stream.read(&mut head).await?
            } else {
                let mut stream = stream;
                stream.write_all(request.as_bytes()).await?;
                stream.read(&mut head).await?
            };
            Ok::<_, std::io::Error>(String::from_utf8_lossy(&head[..read]).into_owned())
        };
        let head = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| format!("no answer from {host}:{port} within {timeout:?}"))?
            .map_err(|error| format!("GET {host}:{port}{path}: {error}"))?;
        let code: u16 = head.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
        return if (200..400).contains(&code) { Ok(()) } else { Err(format!("HTTP probe failed with status {code}")) };
    }
    if let Some(tcp) = &probe.tcp_socket {
        let host = tcp.host.clone().or(pod_ip.map(str::to_string)).ok_or("the pod has no address yet")?;
        let port = port_of(&tcp.port)?;
        return match tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host.as_str(), port))).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(format!("dial {host}:{port}: {error}")),
            Err(_) => Err(format!("dial {host}:{port}: no answer within {timeout:?}")),
        };
    }
    Err("the probe has no handler kaasd supports (exec, httpGet, tcpSocket)".into())
}

/// TLS for an HTTPS probe. As the kubelet does, the certificate is not verified: a probe asks whether the
/// container answers, and the container's certificate is usually its own, signed by nothing the node knows.
async fn https_probe_connect(
    host: &str,
    tcp: tokio::net::TcpStream,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidInput, error))?;
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)).connect(name, tcp).await
}

/// Accepts any server certificate (signatures are still checked, so the handshake itself is sound).
#[derive(Debug)]
struct AnyCertificate(std::sync::Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Runs a lifecycle hook (postStart or preStop) to its end, at most `limit`; Err carries why it failed.
pub async fn run_hook(
    cri: &Cri,
    container_id: &str,
    container: &Container,
    handler: &LifecycleHandler,
    pod_ip: Option<&str>,
    limit: Duration,
) -> Result<(), String> {
    if let Some(sleep) = &handler.sleep {
        tokio::time::sleep(Duration::from_secs(sleep.seconds.max(0) as u64).min(limit)).await;
        return Ok(());
    }
    let as_probe = Probe {
        exec: handler.exec.clone(),
        http_get: handler.http_get.clone(),
        tcp_socket: handler.tcp_socket.clone(),
        timeout_seconds: Some(i32::try_from(limit.as_secs()).unwrap_or(i32::MAX).max(1)),
        ..Default::default()
    };
    run(cri, container_id, container, &as_probe, pod_ip).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_decide() {
        let probe = Probe { failure_threshold: Some(2), success_threshold: Some(1), ..Default::default() };
        let mut state = ProbeState::new("c");
        assert_eq!(state.record(&probe, false), None);
        assert_eq!(state.record(&probe, false), Some(false));
        assert_eq!(state.record(&probe, true), Some(true));
        assert_eq!(state.record(&probe, false), None, "one failure after a success is not yet a verdict");
    }

    #[tokio::test]
    async fn https_probes_accept_a_certificate_no_one_vouches_for() {
        use kaasd_tunnel::pki::{ClusterPki, ClusterSecrets, ServingNames};
        let names = ServingNames { dns_names: vec![], ip_addresses: vec!["127.0.0.1".parse().unwrap()] };
        let pki = ClusterPki::from_secrets(ClusterSecrets::generate().unwrap(), &names, "test").unwrap();
        let serving =
            std::sync::Arc::new(kaasd_tunnel::tls::ServingCertificate::new(&pki.serving, &pki.ca.cert_pem).unwrap());
        let config = kaasd_tunnel::tls::api_server_config(serving, &pki.ca.cert_pem).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut tls = acceptor.accept(tcp).await.unwrap();
            let mut request = vec![0u8; 1024];
            let read = tls.read(&mut request).await.unwrap();
            assert!(request[..read].starts_with(b"GET /readyz HTTP/1.1"));
            tls.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await.unwrap();
            tls.shutdown().await.unwrap();
        });
        let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
        let mut tls = https_probe_connect("127.0.0.1", tcp).await.expect("the handshake succeeds unverified");
        tls.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut answer = vec![0u8; 64];
        let read = tls.read(&mut answer).await.unwrap();
        assert!(answer[..read].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer[..read]));
    }
}
