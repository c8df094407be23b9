//! The cluster's public-key infrastructure, kept as PEM files in one directory (`<data-dir>/pki`):
//!
//! | file | what |
//! |---|---|
//! | `ca.crt`, `ca.key` | the cluster CA: signs every other certificate, and clients trust it |
//! | `apiserver.crt`, `apiserver.key` | the API server's serving certificate |
//! | `admin.crt`, `admin.key` | the admin client certificate (`O=system:masters`) |
//! | `service-account.key` | signs ServiceAccount tokens |
//! | `admin.conf` | a kubeconfig with the admin certificate, written by the caller |
//!
//! A restart reuses everything. The serving certificate is reissued when a name users reach the API by is missing
//! from it (a new IP address, a new `--advertise-address`) and any leaf certificate is reissued when it nears
//! expiry; the CA never changes, so clients' kubeconfigs stay valid.
//!
//! A hosted control plane keeps no files: only its [`ClusterSecrets`] (the CA and the ServiceAccount key) are
//! stored, sealed, in the datastore, and each replica issues its own leaf certificates in memory at start
//! ([`ClusterPki::from_secrets`]).

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a usable PEM certificate or key ({reason}); move the pki directory away to start a new cluster", path.display())]
    Unreadable { path: PathBuf, reason: String },
    #[error("cannot issue a certificate: {0}")]
    Issue(#[from] rcgen::Error),
}

/// A PEM certificate and its PEM private key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CertAndKey {
    pub cert_pem: String,
    pub key_pem: String,
}

/// The names and addresses the API server is reached by: they go into the serving certificate.
#[derive(Debug, Clone, Default)]
pub struct ServingNames {
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
}

/// What every controller replica of one cluster must share, and everything else is derived from: the CA and the
/// ServiceAccount signing key. Leaf certificates are issued from these.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClusterSecrets {
    pub ca: CertAndKey,
    /// PEM private key that signs ServiceAccount tokens.
    pub service_account_key_pem: String,
}

impl ClusterSecrets {
    /// A new cluster identity: a fresh CA and ServiceAccount key.
    pub fn generate() -> Result<ClusterSecrets, PkiError> {
        Ok(ClusterSecrets { ca: new_ca()?, service_account_key_pem: KeyPair::generate()?.serialize_pem() })
    }
}

/// The loaded (or freshly created) PKI of one cluster.
#[derive(Debug, Clone)]
pub struct ClusterPki {
    /// Where the PKI came from: its directory, or a description of the datastore entry for a hosted control
    /// plane; errors name it.
    pub dir: PathBuf,
    pub ca: CertAndKey,
    pub serving: CertAndKey,
    pub admin: CertAndKey,
    /// PEM private key that signs ServiceAccount tokens.
    pub service_account_key_pem: String,
}

const CA_VALIDITY: Duration = Duration::days(3650);
const LEAF_VALIDITY: Duration = Duration::days(365);
/// Leaf certificates closer than this to expiry are reissued at start.
const RENEW_BEFORE: Duration = Duration::days(30);

impl ClusterPki {
    /// Loads the PKI from `dir`, creating what is missing and reissuing leaf certificates that are near expiry or
    /// (for the serving certificate) lack one of `names`.
    pub fn load_or_create(dir: &Path, names: &ServingNames) -> Result<ClusterPki, PkiError> {
        fs::create_dir_all(dir).map_err(|source| PkiError::Io { action: "create", path: dir.into(), source })?;
        let ca = match read_pair(dir, "ca")? {
            Some(ca) => ca,
            None => {
                let ca = new_ca()?;
                write_pair(dir, "ca", &ca)?;
                ca
            }
        };
        let ca_key = KeyPair::from_pem(&ca.key_pem)
            .map_err(|error| PkiError::Unreadable { path: dir.join("ca.key"), reason: error.to_string() })?;
        let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, &ca_key)
            .map_err(|error| PkiError::Unreadable { path: dir.join("ca.crt"), reason: error.to_string() })?;

        let serving = match read_pair(dir, "apiserver")? {
            Some(pair) if is_fresh(&pair, dir, "apiserver")? && covers(&pair, names, dir)? => pair,
            _ => {
                let pair = issue(&issuer, "kube-apiserver", &[], Usage::Server(names))?;
                write_pair(dir, "apiserver", &pair)?;
                pair
            }
        };
        let admin = match read_pair(dir, "admin")? {
            Some(pair) if is_fresh(&pair, dir, "admin")? => pair,
            _ => {
                let pair = issue(&issuer, "kubernetes-admin", &["system:masters"], Usage::Client)?;
                write_pair(dir, "admin", &pair)?;
                pair
            }
        };
        let service_account_key_pem = match read_file(&dir.join("service-account.key"))? {
            Some(pem) => pem,
            None => {
                let pem = KeyPair::generate()?.serialize_pem();
                write_file(&dir.join("service-account.key"), &pem, true)?;
                pem
            }
        };
        Ok(ClusterPki { dir: dir.to_path_buf(), ca, serving, admin, service_account_key_pem })
    }

    /// A PKI held only in memory: `secrets` from elsewhere (the datastore, for a hosted control plane), with a
    /// serving certificate for `names` and an admin certificate issued now. `origin` says where the secrets came
    /// from, for errors.
    pub fn from_secrets(secrets: ClusterSecrets, names: &ServingNames, origin: &str) -> Result<ClusterPki, PkiError> {
        let dir = PathBuf::from(origin);
        let ClusterSecrets { ca, service_account_key_pem } = secrets;
        let pki = ClusterPki {
            dir,
            serving: CertAndKey { cert_pem: String::new(), key_pem: String::new() },
            admin: CertAndKey { cert_pem: String::new(), key_pem: String::new() },
            ca,
            service_account_key_pem,
        };
        let serving = pki.issue_serving(names)?;
        let admin = pki.issue_client("kubernetes-admin", &["system:masters"])?;
        Ok(ClusterPki { serving, admin, ..pki })
    }

    /// The shared part of this PKI.
    pub fn secrets(&self) -> ClusterSecrets {
        ClusterSecrets { ca: self.ca.clone(), service_account_key_pem: self.service_account_key_pem.clone() }
    }

    /// A new serving certificate for `names`, signed by the cluster CA (kept in memory by the caller: rotation).
    pub fn issue_serving(&self, names: &ServingNames) -> Result<CertAndKey, PkiError> {
        self.with_issuer(|issuer| issue(issuer, "kube-apiserver", &[], Usage::Server(names)))
    }

    /// Runs `sign` with the cluster CA as issuer.
    fn with_issuer<T>(&self, sign: impl FnOnce(&Issuer<'_, &KeyPair>) -> Result<T, PkiError>) -> Result<T, PkiError> {
        let ca_key = KeyPair::from_pem(&self.ca.key_pem)
            .map_err(|error| PkiError::Unreadable { path: self.dir.join("ca.key"), reason: error.to_string() })?;
        let issuer = Issuer::from_ca_cert_pem(&self.ca.cert_pem, &ca_key)
            .map_err(|error| PkiError::Unreadable { path: self.dir.join("ca.crt"), reason: error.to_string() })?;
        sign(&issuer)
    }

    /// Issues a client certificate signed by the cluster CA: `CN=user`, one `O=` per group. Used for the
    /// controller's own loopback clients and, later, node certificates.
    pub fn issue_client(&self, user: &str, groups: &[&str]) -> Result<CertAndKey, PkiError> {
        self.with_issuer(|issuer| issue(issuer, user, groups, Usage::Client))
    }

    /// Signs a PEM certificate request as a client certificate `CN=user`, one `O=` per group, valid from now for
    /// `validity`. Only the request's public key is used: the subject and usages are the caller's, which has
    /// checked that the request asks for exactly this identity. No backdating: node certificates issued before a
    /// node's removal are told apart from later ones by `notBefore`.
    pub fn sign_client_request(
        &self,
        request_pem: &str,
        user: &str,
        groups: &[&str],
        validity: std::time::Duration,
    ) -> Result<String, PkiError> {
        let mut request = rcgen::CertificateSigningRequestParams::from_pem(request_pem)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(user, groups);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let now = OffsetDateTime::now_utc();
        params.not_before = now;
        params.not_after = now + Duration::seconds(validity.as_secs() as i64);
        request.params = params;
        self.with_issuer(|issuer| Ok(request.signed_by(issuer)?.pem()))
    }

    /// The public half of the ServiceAccount signing key (PEM), which verifies tokens.
    pub fn service_account_public_key_pem(&self) -> Result<String, PkiError> {
        let key = KeyPair::from_pem(&self.service_account_key_pem).map_err(|error| PkiError::Unreadable {
            path: self.dir.join("service-account.key"),
            reason: error.to_string(),
        })?;
        Ok(key.public_key_pem())
    }

    /// A kubeconfig that reaches `server` (an https URL) as the cluster admin.
    pub fn admin_kubeconfig(&self, server: &str, cluster_name: &str) -> String {
        kubeconfig(server, cluster_name, "admin", &self.ca.cert_pem, &self.admin)
    }
}

/// A kubeconfig with one cluster, one user (a client certificate) and one current context.
pub fn kubeconfig(server: &str, cluster_name: &str, user_name: &str, ca_pem: &str, client: &CertAndKey) -> String {
    let encode = |pem: &str| base64::engine::general_purpose::STANDARD.encode(pem.as_bytes());
    format!(
        "apiVersion: v1\n\
         kind: Config\n\
         clusters:\n\
         - name: {cluster_name}\n  \
           cluster:\n    \
             server: {server}\n    \
             certificate-authority-data: {ca}\n\
         users:\n\
         - name: {user_name}\n  \
           user:\n    \
             client-certificate-data: {cert}\n    \
             client-key-data: {key}\n\
         contexts:\n\
         - name: {user_name}@{cluster_name}\n  \
           context:\n    \
             cluster: {cluster_name}\n    \
             user: {user_name}\n\
         current-context: {user_name}@{cluster_name}\n",
        ca = encode(ca_pem),
        cert = encode(&client.cert_pem),
        key = encode(&client.key_pem),
    )
}

enum Usage<'a> {
    Server(&'a ServingNames),
    Client,
}

fn new_ca() -> Result<CertAndKey, PkiError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name("kaasd-ca", &[]);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + CA_VALIDITY;
    let cert = params.self_signed(&key)?;
    Ok(CertAndKey { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

fn issue(
    issuer: &Issuer<'_, &KeyPair>,
    common_name: &str,
    groups: &[&str],
    usage: Usage<'_>,
) -> Result<CertAndKey, PkiError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(common_name, groups);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    match usage {
        Usage::Server(names) => {
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            for name in &names.dns_names {
                params.subject_alt_names.push(SanType::DnsName(name.clone().try_into()?));
            }
            for address in &names.ip_addresses {
                params.subject_alt_names.push(SanType::IpAddress(*address));
            }
        }
        Usage::Client => params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth],
    }
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + LEAF_VALIDITY;
    let cert = params.signed_by(&key, issuer)?;
    Ok(CertAndKey { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

fn distinguished_name(common_name: &str, organizations: &[&str]) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    for organization in organizations {
        name.push(DnType::OrganizationName, *organization);
    }
    name.push(DnType::CommonName, common_name);
    name
}

fn parse_cert<'a>(
    pem: &'a x509_parser::pem::Pem,
    path: &Path,
) -> Result<x509_parser::certificate::X509Certificate<'a>, PkiError> {
    pem.parse_x509().map_err(|error| PkiError::Unreadable { path: path.into(), reason: error.to_string() })
}

fn decode_pem(pair: &CertAndKey, path: &Path) -> Result<x509_parser::pem::Pem, PkiError> {
    x509_parser::pem::parse_x509_pem(pair.cert_pem.as_bytes())
        .map(|(_, pem)| pem)
        .map_err(|error| PkiError::Unreadable { path: path.into(), reason: error.to_string() })
}

fn is_fresh(pair: &CertAndKey, dir: &Path, name: &str) -> Result<bool, PkiError> {
    let path = dir.join(format!("{name}.crt"));
    let pem = decode_pem(pair, &path)?;
    let cert = parse_cert(&pem, &path)?;
    let not_after = cert.validity().not_after.timestamp();
    Ok(not_after > (OffsetDateTime::now_utc() + RENEW_BEFORE).unix_timestamp())
}

fn covers(pair: &CertAndKey, names: &ServingNames, dir: &Path) -> Result<bool, PkiError> {
    use x509_parser::extensions::GeneralName;
    let path = dir.join("apiserver.crt");
    let pem = decode_pem(pair, &path)?;
    let cert = parse_cert(&pem, &path)?;
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(name) => dns.push(name.to_string()),
                GeneralName::IPAddress(bytes) => match bytes.len() {
                    4 => ips.push(IpAddr::from(<[u8; 4]>::try_from(*bytes).expect("length checked"))),
                    16 => ips.push(IpAddr::from(<[u8; 16]>::try_from(*bytes).expect("length checked"))),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    Ok(names.dns_names.iter().all(|name| dns.contains(name)) && names.ip_addresses.iter().all(|ip| ips.contains(ip)))
}

fn read_pair(dir: &Path, name: &str) -> Result<Option<CertAndKey>, PkiError> {
    let cert = read_file(&dir.join(format!("{name}.crt")))?;
    let key = read_file(&dir.join(format!("{name}.key")))?;
    Ok(match (cert, key) {
        (Some(cert_pem), Some(key_pem)) => Some(CertAndKey { cert_pem, key_pem }),
        _ => None,
    })
}

fn write_pair(dir: &Path, name: &str, pair: &CertAndKey) -> Result<(), PkiError> {
    write_file(&dir.join(format!("{name}.key")), &pair.key_pem, true)?;
    write_file(&dir.join(format!("{name}.crt")), &pair.cert_pem, false)
}

fn read_file(path: &Path) -> Result<Option<String>, PkiError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PkiError::Io { action: "read", path: path.into(), source }),
    }
}

/// Writes through a temporary file and a rename, so a crash never leaves half a key behind; private files are
/// created readable by the owner only.
pub fn write_file(path: &Path, contents: &str, private: bool) -> Result<(), PkiError> {
    use std::os::unix::fs::OpenOptionsExt;
    let temporary = path.with_extension("tmp");
    let io = |action, source| PkiError::Io { action, path: path.into(), source };
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(&temporary)
        .map_err(|error| io("write", error))?;
    file.write_all(contents.as_bytes()).and_then(|()| file.sync_all()).map_err(|error| io("write", error))?;
    fs::rename(&temporary, path).map_err(|error| io("write", error))
}

/// A new private key (ECDSA P-256, PEM) and a certificate request (PEM) for `CN=user`, one `O=` per group: what a
/// worker sends to be signed. The key never leaves the machine.
pub fn new_client_request(user: &str, groups: &[&str]) -> Result<(String, String), PkiError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(user, groups);
    let request = params.serialize_request(&key)?;
    Ok((request.pem()?, key.serialize_pem()))
}

/// Subject of a PEM certificate request: its common name and organizations.
pub fn request_subject(request_pem: &str) -> Result<(String, Vec<String>), String> {
    use x509_parser::prelude::FromDer;
    let (_, pem) = x509_parser::pem::parse_x509_pem(request_pem.as_bytes()).map_err(|error| error.to_string())?;
    let (_, request) = x509_parser::certification_request::X509CertificationRequest::from_der(&pem.contents)
        .map_err(|error| error.to_string())?;
    let subject = &request.certification_request_info.subject;
    let common_name = subject
        .iter_common_name()
        .next()
        .and_then(|name| name.as_str().ok())
        .ok_or("the request has no common name")?
        .to_string();
    let organizations =
        subject.iter_organization().filter_map(|organization| organization.as_str().ok().map(str::to_string)).collect();
    Ok((common_name, organizations))
}

/// Whether a leaf certificate is near enough to its expiry to be reissued now (an unreadable one is too).
pub fn due_for_renewal(cert_pem: &str) -> bool {
    match certificate_validity(cert_pem) {
        Ok((_, not_after)) => not_after <= (OffsetDateTime::now_utc() + RENEW_BEFORE).unix_timestamp(),
        Err(_) => true,
    }
}

/// Validity window of a PEM certificate, as Unix seconds (notBefore, notAfter).
pub fn certificate_validity(cert_pem: &str) -> Result<(i64, i64), String> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).map_err(|error| error.to_string())?;
    let certificate = pem.parse_x509().map_err(|error| error.to_string())?;
    let validity = certificate.validity();
    Ok((validity.not_before.timestamp(), validity.not_after.timestamp()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(ips: &[&str]) -> ServingNames {
        ServingNames {
            dns_names: vec!["localhost".into(), "kubernetes".into()],
            ip_addresses: ips.iter().map(|ip| ip.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn restart_reuses_everything_and_new_names_reissue_only_the_serving_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let first = ClusterPki::load_or_create(dir.path(), &names(&["127.0.0.1"])).unwrap();
        let again = ClusterPki::load_or_create(dir.path(), &names(&["127.0.0.1"])).unwrap();
        assert_eq!(first.ca.cert_pem, again.ca.cert_pem);
        assert_eq!(first.serving.cert_pem, again.serving.cert_pem);
        assert_eq!(first.admin.cert_pem, again.admin.cert_pem);
        assert_eq!(first.service_account_key_pem, again.service_account_key_pem);

        let moved = ClusterPki::load_or_create(dir.path(), &names(&["127.0.0.1", "10.1.2.3"])).unwrap();
        assert_eq!(first.ca.cert_pem, moved.ca.cert_pem);
        assert_ne!(first.serving.cert_pem, moved.serving.cert_pem);
        assert_eq!(first.admin.cert_pem, moved.admin.cert_pem);
        assert!(covers(&moved.serving, &names(&["10.1.2.3"]), dir.path()).unwrap());
    }

    #[test]
    fn keys_are_private_and_kubeconfig_embeds_the_admin_identity() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let pki = ClusterPki::load_or_create(dir.path(), &names(&[])).unwrap();
        let mode = fs::metadata(dir.path().join("ca.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let config = pki.admin_kubeconfig("https://127.0.0.1:6443", "kaasd");
        assert!(config.contains("server: https://127.0.0.1:6443"));
        assert!(config.contains("current-context: admin@kaasd"));
        let admin = x509_parser::pem::parse_x509_pem(pki.admin.cert_pem.as_bytes()).unwrap().1;
        let admin = admin.parse_x509().unwrap();
        assert!(admin.subject().to_string().contains("O=system:masters"), "{}", admin.subject());
    }

    #[test]
    fn a_corrupt_ca_is_reported_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        ClusterPki::load_or_create(dir.path(), &names(&[])).unwrap();
        fs::write(dir.path().join("ca.key"), "garbage").unwrap();
        let error = ClusterPki::load_or_create(dir.path(), &names(&[])).unwrap_err().to_string();
        assert!(error.contains("ca.key"), "{error}");
    }

    #[test]
    fn client_requests_are_signed_with_the_callers_subject() {
        let dir = tempfile::tempdir().unwrap();
        let pki = ClusterPki::load_or_create(dir.path(), &ServingNames::default()).unwrap();
        let (request, _key) = new_client_request("system:node:edge1", &["system:nodes"]).unwrap();
        assert_eq!(request_subject(&request).unwrap(), ("system:node:edge1".into(), vec!["system:nodes".into()]));
        let cert = pki
            .sign_client_request(&request, "system:node:edge1", &["system:nodes"], std::time::Duration::from_secs(3600))
            .unwrap();
        let (not_before, not_after) = certificate_validity(&cert).unwrap();
        assert_eq!(not_after - not_before, 3600);
        let now = OffsetDateTime::now_utc().unix_timestamp();
        assert!((now - not_before).abs() <= 2, "not backdated");
        let pem = x509_parser::pem::parse_x509_pem(cert.as_bytes()).unwrap().1;
        let parsed = pem.parse_x509().unwrap();
        assert_eq!(parsed.subject().iter_common_name().next().unwrap().as_str().unwrap(), "system:node:edge1");
        assert!(request_subject("not a request").is_err());
    }
}
