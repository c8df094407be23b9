//! Joining: from a join token to a node certificate kept in the data directory.
//!
//! With a token: fetch the cluster CA from a controller and check it against the token's pin, authenticate with the
//! bootstrap token, submit a CertificateSigningRequest for `CN=system:node:<name>, O=system:nodes` (the private key
//! is made here and never leaves the machine), wait until kaasd approves and signs it, and keep the result:
//!
//! | file (under `<data-dir>/worker`) | what |
//! |---|---|
//! | `ca.crt` | the cluster CA, checked against the token's pin |
//! | `node.crt`, `node.key` | this node's client certificate and key |
//! | `worker.json` | the node name and the controller addresses |
//!
//! A restart finds these and needs no token. The same CSR path renews the certificate before it expires (the
//! requester is then the node itself).

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::certificates::v1::{CertificateSigningRequest, CertificateSigningRequestSpec};
use kaasd_tunnel::pki::{self, CertAndKey};
use kaasd_tunnel::token::JoinToken;
use kube::api::{ObjectMeta, PostParams};
use kube::runtime::watcher;
use kube::Api;
use serde::{Deserialize, Serialize};

use crate::WorkerError;

const NODE_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// How long to wait for the controller to sign a request.
const SIGNING_TIMEOUT: Duration = Duration::from_secs(60);

/// What a joined node keeps.
#[derive(Debug, Clone)]
pub struct Identity {
    pub node_name: String,
    pub servers: Vec<String>,
    pub ca_pem: String,
    pub certificate: CertAndKey,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Saved {
    node_name: String,
    servers: Vec<String>,
}

impl Identity {
    /// The identity kept in `data_dir`, if this machine has joined before.
    pub fn load(data_dir: &Path) -> Result<Option<Identity>, WorkerError> {
        let dir = data_dir.join("worker");
        let saved_path = dir.join("worker.json");
        let Some(saved) = read(&saved_path)? else { return Ok(None) };
        let saved: Saved = serde_json::from_str(&saved)
            .map_err(|error| WorkerError::Config(format!("{} is not readable: {error}", saved_path.display())))?;
        let file = |name: &str| -> Result<String, WorkerError> {
            let path = dir.join(name);
            read(&path)?.ok_or_else(|| {
                WorkerError::Config(format!("{} is missing; remove {} and join again", path.display(), dir.display()))
            })
        };
        Ok(Some(Identity {
            node_name: saved.node_name,
            servers: saved.servers,
            ca_pem: file("ca.crt")?,
            certificate: CertAndKey { cert_pem: file("node.crt")?, key_pem: file("node.key")? },
        }))
    }

    pub fn save(&self, data_dir: &Path) -> Result<(), WorkerError> {
        let dir = data_dir.join("worker");
        std::fs::create_dir_all(&dir)
            .map_err(|error| WorkerError::Config(format!("cannot create {}: {error}", dir.display())))?;
        let write = |name: &str, contents: &str, private: bool| {
            pki::write_file(&dir.join(name), contents, private).map_err(|error| WorkerError::Config(error.to_string()))
        };
        write("ca.crt", &self.ca_pem, false)?;
        write("node.key", &self.certificate.key_pem, true)?;
        write("node.crt", &self.certificate.cert_pem, false)?;
        let saved = Saved { node_name: self.node_name.clone(), servers: self.servers.clone() };
        write("worker.json", &serde_json::to_string_pretty(&saved).expect("serializes"), false)
    }

    /// A kube-rs client of the first controller, as this node.
    pub async fn client(&self) -> Result<kube::Client, WorkerError> {
        let kubeconfig = pki::kubeconfig(
            &format!("https://{}", self.servers[0]),
            "kaasd",
            &format!("system:node:{}", self.node_name),
            &self.ca_pem,
            &self.certificate,
        );
        client_from_kubeconfig(&kubeconfig).await
    }

    /// Unix seconds (notBefore, notAfter) of the node certificate.
    pub fn certificate_validity(&self) -> Result<(i64, i64), WorkerError> {
        pki::certificate_validity(&self.certificate.cert_pem)
            .map_err(|error| WorkerError::Config(format!("the node certificate is unreadable: {error}")))
    }
}

/// Joins the cluster with `token` as `node_name`.
pub async fn join(token: &JoinToken, node_name: &str, validity: Option<Duration>) -> Result<Identity, WorkerError> {
    let mut last_error = None;
    let mut found = None;
    for server in &token.servers {
        match kaasd_tunnel::token::fetch_pinned_ca(server, &token.ca_sha256).await {
            Ok(ca_pem) => {
                found = Some((server.clone(), ca_pem));
                break;
            }
            Err(error @ kaasd_tunnel::token::TokenError::PinMismatch { .. }) => {
                return Err(WorkerError::Join(error.to_string()));
            }
            Err(error) => last_error = Some(error),
        }
    }
    let Some((server, ca_pem)) = found else {
        let reason = last_error.map(|error| error.to_string()).unwrap_or_default();
        return Err(WorkerError::Unreachable(reason));
    };
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: kaasd\n  cluster:\n    server: https://{server}\n    \
         certificate-authority-data: {ca}\nusers:\n- name: bootstrap\n  user:\n    token: {token}\ncontexts:\n- \
         name: bootstrap@kaasd\n  context:\n    cluster: kaasd\n    user: bootstrap\ncurrent-context: \
         bootstrap@kaasd\n",
        ca = base64_encode(&ca_pem),
        token = token.bootstrap_token(),
    );
    let client = client_from_kubeconfig(&kubeconfig).await?;
    let certificate = request_certificate(&client, node_name, validity).await.map_err(|error| match error {
        WorkerError::Api(kube::Error::Api(status)) if status.code == 401 => WorkerError::Join(
            "the controller refused the token's credential: it is expired, revoked or was never created; ask for a \
             new one with `kaasd token create`"
                .into(),
        ),
        other => other,
    })?;
    let mut servers = vec![server.clone()];
    servers.extend(token.servers.iter().filter(|other| **other != server).cloned());
    Ok(Identity { node_name: node_name.to_string(), servers, ca_pem, certificate })
}

/// Asks the controller (as whoever `client` is) for a node certificate for `node_name` and waits for it.
pub async fn request_certificate(
    client: &kube::Client,
    node_name: &str,
    validity: Option<Duration>,
) -> Result<CertAndKey, WorkerError> {
    let (request_pem, key_pem) = pki::new_client_request(&format!("system:node:{node_name}"), &["system:nodes"])
        .map_err(|error| WorkerError::Join(error.to_string()))?;
    let requests: Api<CertificateSigningRequest> = Api::all(client.clone());
    let request = CertificateSigningRequest {
        metadata: ObjectMeta { generate_name: Some(format!("node-csr-{node_name}-")), ..Default::default() },
        spec: CertificateSigningRequestSpec {
            request: k8s_openapi::ByteString(request_pem.into_bytes()),
            signer_name: NODE_CLIENT_SIGNER.into(),
            usages: Some(vec!["digital signature".into(), "client auth".into()]),
            expiration_seconds: validity.map(|validity| validity.as_secs() as i32),
            ..Default::default()
        },
        status: None,
    };
    let created = requests.create(&PostParams::default(), &request).await?;
    let name = created.metadata.name.clone().unwrap_or_default();
    let watch = watcher(requests, watcher::Config::default().fields(&format!("metadata.name={name}")));
    let wait = async {
        let mut events = watch.boxed();
        while let Some(event) = events.next().await {
            let request = match event {
                Ok(watcher::Event::Apply(request) | watcher::Event::InitApply(request)) => request,
                Ok(_) => continue,
                Err(error) => return Err(WorkerError::Join(format!("lost the watch on {name}: {error}"))),
            };
            let status = request.status.unwrap_or_default();
            if let Some(denied) = status.conditions.iter().flatten().find(|condition| {
                (condition.type_ == "Denied" || condition.type_ == "Failed") && condition.status == "True"
            }) {
                return Err(WorkerError::Join(format!(
                    "the controller denied the certificate request {name}: {}",
                    denied.message.clone().unwrap_or_default()
                )));
            }
            if let Some(certificate) = status.certificate {
                return Ok(String::from_utf8_lossy(&certificate.0).into_owned());
            }
        }
        Err(WorkerError::Join(format!("the watch on {name} ended")))
    };
    let cert_pem = tokio::time::timeout(SIGNING_TIMEOUT, wait).await.map_err(|_| {
        WorkerError::Join(format!(
            "the certificate request {name} was not signed within {} s; is the controller's certificate controller \
             running? (kubectl get csr)",
            SIGNING_TIMEOUT.as_secs()
        ))
    })??;
    Ok(CertAndKey { cert_pem, key_pem })
}

pub async fn client_from_kubeconfig(text: &str) -> Result<kube::Client, WorkerError> {
    let kubeconfig =
        kube::config::Kubeconfig::from_yaml(text).map_err(|error| WorkerError::Config(error.to_string()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
        .await
        .map_err(|error| WorkerError::Config(error.to_string()))?;
    kube::Client::try_from(config).map_err(|error| WorkerError::Config(error.to_string()))
}

fn base64_encode(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn read(path: &PathBuf) -> Result<Option<String>, WorkerError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(WorkerError::Config(format!("cannot read {}: {error}", path.display()))),
    }
}
