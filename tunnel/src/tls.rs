//! rustls configurations built from the cluster PKI.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
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

/// A server configuration for the API port: serves `serving` followed by the CA `client_ca_pem` (a worker holding
/// only a join token finds the CA in the chain and checks it against the token's pin), offers h2 and http/1.1
/// (streaming upgrades arrive over HTTP/1.1) and the tunnel protocol, and *asks* for a client certificate signed by that CA without
/// requiring one, so token and anonymous requests still connect.
pub fn api_server_config(serving: &CertAndKey, client_ca_pem: &str) -> Result<ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    let ca_certificates = certificates(client_ca_pem)?;
    for cert in &ca_certificates {
        roots.add(cert.clone())?;
    }
    let mut chain = certificates(&serving.cert_pem)?;
    chain.extend(ca_certificates);
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|error| TlsError::Pem(error.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, private_key(&serving.key_pem)?)?;
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
