//! rustls configurations built from the cluster PKI.

use std::sync::{Arc, RwLock};

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};

use crate::pki::{CertAndKey, PkiError};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("invalid PEM: {0}")]
    Pem(String),
    #[error("cannot build the TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error(transparent)]
    Pki(#[from] PkiError),
}

/// The API port's serving certificate, replaceable while the server runs: a renewed certificate is used from the
/// next handshake on, and open connections are not touched (rotation without downtime).
#[derive(Debug)]
pub struct ServingCertificate {
    current: RwLock<Arc<CertifiedKey>>,
    /// The CA sent after the certificate (a worker holding only a join token checks it against the token's pin).
    ca_pem: String,
}

impl ServingCertificate {
    pub fn new(serving: &CertAndKey, ca_pem: &str) -> Result<ServingCertificate, TlsError> {
        let current = RwLock::new(Arc::new(certified_key(serving, ca_pem)?));
        Ok(ServingCertificate { current, ca_pem: ca_pem.to_string() })
    }

    /// Serves `serving` from now on.
    pub fn replace(&self, serving: &CertAndKey) -> Result<(), TlsError> {
        let key = Arc::new(certified_key(serving, &self.ca_pem)?);
        *self.current.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = key;
        Ok(())
    }
}

impl ResolvesServerCert for ServingCertificate {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone())
    }
}

fn certified_key(serving: &CertAndKey, ca_pem: &str) -> Result<CertifiedKey, TlsError> {
    let mut chain = certificates(&serving.cert_pem)?;
    chain.extend(certificates(ca_pem)?);
    let provider = rustls::crypto::ring::default_provider();
    Ok(CertifiedKey::from_der(chain, private_key(&serving.key_pem)?, &provider)?)
}

/// A server configuration for the API port: serves `serving` (followed by the CA), offers h2 and http/1.1
/// (streaming upgrades arrive over HTTP/1.1) and the tunnel protocol, and *asks* for a client certificate signed
/// by the CA `client_ca_pem` without requiring one, so token and anonymous requests still connect.
pub fn api_server_config(serving: Arc<ServingCertificate>, client_ca_pem: &str) -> Result<ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for cert in certificates(client_ca_pem)? {
        roots.add(cert)?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|error| TlsError::Pem(error.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(serving);
    // Workers' reverse tunnels share the API port, told apart by ALPN (one load-balancer port for hosted mode).
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec(), crate::session::ALPN.to_vec()];
    Ok(config)
}

/// A client configuration that trusts `ca_pem` and presents `cert_pem`: how one controller replica talks HTTP/1.1
/// to another.
pub fn client_config(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<rustls::ClientConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for cert in certificates(ca_pem)? {
        roots.add(cert)?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(certificates(cert_pem)?, private_key(key_pem)?)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

pub fn certificates(pem: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|error| TlsError::Pem(error.to_string()))
}

pub fn private_key(pem: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    rustls_pemfile::private_key(&mut pem.as_bytes())
        .map_err(|error| TlsError::Pem(error.to_string()))?
        .ok_or_else(|| TlsError::Pem("no private key found".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{ClusterPki, ClusterSecrets, ServingNames};

    /// The certificate a new connection to `address` is served.
    async fn served_certificate(address: std::net::SocketAddr, ca_pem: &str) -> Vec<u8> {
        let mut roots = RootCertStore::empty();
        for cert in certificates(ca_pem).unwrap() {
            roots.add(cert).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, stream).await.unwrap();
        tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
    }

    #[tokio::test]
    async fn a_replaced_serving_certificate_is_served_from_the_next_handshake() {
        let names = ServingNames { dns_names: vec!["localhost".into()], ip_addresses: vec![] };
        let pki = ClusterPki::from_secrets(ClusterSecrets::generate().unwrap(), &names, "test").unwrap();
        let serving = Arc::new(ServingCertificate::new(&pki.serving, &pki.ca.cert_pem).unwrap());
        let config = api_server_config(serving.clone(), &pki.ca.cert_pem).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let _ = acceptor.accept(stream).await;
                });
            }
        });
        let first = served_certificate(address, &pki.ca.cert_pem).await;
        assert_eq!(first, certificates(&pki.serving.cert_pem).unwrap()[0].to_vec());
        let renewed = pki.issue_serving(&names).unwrap();
        serving.replace(&renewed).unwrap();
        let second = served_certificate(address, &pki.ca.cert_pem).await;
        assert_eq!(second, certificates(&renewed.cert_pem).unwrap()[0].to_vec());
        assert_ne!(first, second);
    }
}
