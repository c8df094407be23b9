//! Join tokens: the one string `kaasd worker --token` needs.
//!
//! A token is `kaasd1.` followed by base64url (no padding) of a small JSON document:
//! `{"servers":["10.0.1.1:6443"],"caSha256":"<hex>","id":"abcdef","secret":"0123456789abcdef"}`.
//! `servers` are the controller addresses to try, `caSha256` pins the cluster CA (SHA-256 of its DER encoding), and
//! `id.secret` is a Kubernetes bootstrap token (a `bootstrap-token-<id>` Secret in kube-system) that lets the worker
//! ask for its node certificate once. The worker trusts nothing it has not checked against the pin.

use std::sync::{Arc, Mutex};

use base64::Engine;
use rand::Rng;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;

const PREFIX: &str = "kaasd1.";

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed: {0}; copy the whole line `kaasd token create` printed")]
    Malformed(String),
    #[error("cannot reach the controller at {server}: {reason}")]
    Unreachable { server: String, reason: String },
    #[error(
        "the controller at {server} does not present the cluster CA this token pins (sha256:{pin}); the token is \
         for another cluster, or something is in the way"
    )]
    PinMismatch { server: String, pin: String },
    #[error("invalid CA certificate: {0}")]
    Certificate(String),
}

/// The decoded contents of a join token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinToken {
    /// `host:port` of each controller, tried in order.
    pub servers: Vec<String>,
    /// Lowercase hex SHA-256 of the cluster CA certificate's DER encoding.
    pub ca_sha256: String,
    /// The bootstrap token's public id (6 characters of `[a-z0-9]`).
    pub id: String,
    /// The bootstrap token's secret (16 characters of `[a-z0-9]`).
    pub secret: String,
}

impl JoinToken {
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).expect("a join token serializes");
        format!("{PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json))
    }

    pub fn parse(text: &str) -> Result<JoinToken, TokenError> {
        let text = text.trim();
        let encoded = text
            .strip_prefix(PREFIX)
            .ok_or_else(|| TokenError::Malformed(format!("it does not start with {PREFIX:?}")))?;
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|_| TokenError::Malformed("it is not base64url after the prefix".into()))?;
        let token: JoinToken = serde_json::from_slice(&json)
            .map_err(|error| TokenError::Malformed(format!("its contents do not decode ({error})")))?;
        if token.servers.is_empty() {
            return Err(TokenError::Malformed("it names no controller address".into()));
        }
        let hex = |text: &str| text.len() == 64 && text.bytes().all(|byte| byte.is_ascii_hexdigit());
        if !hex(&token.ca_sha256) {
            return Err(TokenError::Malformed("its CA pin is not a SHA-256 in hex".into()));
        }
        if !is_token_part(&token.id, 6) || !is_token_part(&token.secret, 16) {
            return Err(TokenError::Malformed(
                "its bootstrap credential is not of the form [a-z0-9]{6}.[a-z0-9]{16}".into(),
            ));
        }
        Ok(token)
    }

    /// The bootstrap token a client sends as `Authorization: Bearer id.secret`.
    pub fn bootstrap_token(&self) -> String {
        format!("{}.{}", self.id, self.secret)
    }
}

fn is_token_part(part: &str, length: usize) -> bool {
    part.len() == length && part.bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit())
}

/// A fresh bootstrap token id and secret, from the operating system's random source.
pub fn new_bootstrap_credentials() -> (String, String) {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let mut pick =
        |length: usize| (0..length).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect::<String>();
    (pick(6), pick(16))
}

/// The pin of a CA certificate (PEM): lowercase hex SHA-256 of its DER encoding.
pub fn ca_pin(ca_pem: &str) -> Result<String, TokenError> {
    let certificate = crate::tls::certificates(ca_pem)
        .map_err(|error| TokenError::Certificate(error.to_string()))?
        .into_iter()
        .next()
        .ok_or_else(|| TokenError::Certificate("no certificate in the CA file".into()))?;
    Ok(sha256_hex(&certificate))
}

fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes).as_ref().iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Connects to `server` (`host:port`) and returns the cluster CA (PEM) if the controller presents a chain that
/// contains a certificate matching `pin` and its serving certificate verifies against it for `server`'s host.
/// This is how a worker that holds only a token learns whom to trust.
pub async fn fetch_pinned_ca(server: &str, pin: &str) -> Result<String, TokenError> {
    let unreachable = |reason: String| TokenError::Unreachable { server: server.to_string(), reason };
    let host = host_of(server);
    let server_name = ServerName::try_from(host.to_string())
        .map_err(|_| TokenError::Malformed(format!("{server:?} is not a host:port")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        Arc::new(PinnedCaVerifier { pin: pin.to_lowercase(), found: Mutex::new(None), provider: provider.clone() });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| TokenError::Certificate(error.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    let tcp = tokio::time::timeout(std::time::Duration::from_secs(10), TcpStream::connect(server))
        .await
        .map_err(|_| unreachable("no answer within 10 s".into()))?
        .map_err(|error| unreachable(error.to_string()))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let handshake = connector.connect(server_name, tcp).await;
    let found = verifier.found.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
    match (handshake, found) {
        (Ok(_), Some(ca)) => Ok(pem_encode(&ca)),
        (Err(error), _) if error.to_string().contains(PIN_MISMATCH) => {
            Err(TokenError::PinMismatch { server: server.to_string(), pin: pin.to_string() })
        }
        (Err(error), _) => Err(unreachable(format!("TLS handshake failed: {error}"))),
        (Ok(_), None) => Err(TokenError::PinMismatch { server: server.to_string(), pin: pin.to_string() }),
    }
}

/// `host` of `host:port` or `[v6]:port`.
fn host_of(server: &str) -> &str {
    if let Some(rest) = server.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    server.rsplit_once(':').map(|(host, _)| host).unwrap_or(server)
}

fn pem_encode(der: &[u8]) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in encoded.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

const PIN_MISMATCH: &str = "no certificate in the chain matches the CA pin";

/// Accepts a server whose chain carries the pinned CA and whose leaf that CA signed for the server name;
/// remembers the CA.
#[derive(Debug)]
struct PinnedCaVerifier {
    pin: String,
    found: Mutex<Option<CertificateDer<'static>>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .find(|certificate| sha256_hex(certificate) == self.pin)
            .ok_or_else(|| rustls::Error::General(PIN_MISMATCH.into()))?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|error| rustls::Error::General(error.to_string()))?;
        let verified = verifier.verify_server_cert(end_entity, &[], server_name, ocsp_response, now)?;
        *self.found.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(ca.clone().into_owned());
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> JoinToken {
        JoinToken {
            servers: vec!["10.0.1.1:6443".into()],
            ca_sha256: "ab".repeat(32),
            id: "abcdef".into(),
            secret: "0123456789abcdef".into(),
        }
    }

    #[test]
    fn tokens_round_trip() {
        let token = sample();
        let text = token.encode();
        assert!(text.starts_with("kaasd1."));
        assert!(!text.contains(char::is_whitespace));
        assert_eq!(JoinToken::parse(&format!(" {text}\n")).unwrap(), token);
        assert_eq!(token.bootstrap_token(), "abcdef.0123456789abcdef");
    }

    #[test]
    fn malformed_tokens_say_what_is_wrong() {
        let error = |text: &str| JoinToken::parse(text).unwrap_err().to_string();
        assert!(error("abcdef.0123456789abcdef").contains("does not start with"));
        assert!(error("kaasd1.***").contains("not base64url"));
        let mut token = sample();
        token.servers.clear();
        assert!(error(&token.encode()).contains("no controller address"));
        let mut token = sample();
        token.ca_sha256 = "xyz".into();
        assert!(error(&token.encode()).contains("CA pin"));
        let mut token = sample();
        token.secret = "SHORT".into();
        assert!(error(&token.encode()).contains("bootstrap credential"));
    }

    #[test]
    fn fresh_credentials_are_valid_bootstrap_tokens() {
        let (id, secret) = new_bootstrap_credentials();
        assert!(is_token_part(&id, 6) && is_token_part(&secret, 16));
        assert_ne!(new_bootstrap_credentials(), (id, secret));
    }

    #[test]
    fn hosts_are_split_from_ports() {
        assert_eq!(host_of("10.0.1.1:6443"), "10.0.1.1");
        assert_eq!(host_of("[::1]:6443"), "::1");
        assert_eq!(host_of("api.example.com:443"), "api.example.com");
    }

    #[tokio::test]
    async fn the_ca_is_fetched_only_when_it_matches_the_pin() {
        let dir = tempfile::tempdir().unwrap();
        let names = crate::pki::ServingNames {
            dns_names: vec!["localhost".into()],
            ip_addresses: vec!["127.0.0.1".parse().unwrap()],
        };
        let pki = crate::pki::ClusterPki::load_or_create(dir.path(), &names).unwrap();
        let serving = Arc::new(crate::tls::ServingCertificate::new(&pki.serving, &pki.ca.cert_pem).unwrap());
        let config = crate::tls::api_server_config(serving, &pki.ca.cert_pem).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let _ = acceptor.accept(stream).await;
                });
            }
        });
        let pin = ca_pin(&pki.ca.cert_pem).unwrap();
        let fetched = fetch_pinned_ca(&address, &pin).await.unwrap();
        assert_eq!(ca_pin(&fetched).unwrap(), pin);
        let wrong = "0".repeat(64);
        let error = fetch_pinned_ca(&address, &wrong).await.unwrap_err();
        assert!(matches!(error, TokenError::PinMismatch { .. }), "{error}");
    }
}
