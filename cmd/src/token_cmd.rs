//! `kaasd token create|list|revoke`: join tokens are bootstrap-token Secrets in kube-system, managed through the
//! API with the controller's admin credentials (`<data-dir>/pki/admin.conf`, or `--kubeconfig`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use std::time::Duration;

use anyhow::{bail, Context};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kaasd_tunnel::token::JoinToken;
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::Api;

use crate::cli::TokenCommand;

const TOKEN_TYPE: &str = "bootstrap.kubernetes.io/token";

pub async fn run(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create { data_dir, kubeconfig, expiry, servers, description } => {
            let admin = Admin::from(&data_dir, kubeconfig.as_deref())?;
            let token = create(&admin, expiry, servers, description).await?;
            println!("{}", token.encode());
            Ok(())
        }
        TokenCommand::List { data_dir, kubeconfig } => list(&Admin::from(&data_dir, kubeconfig.as_deref())?).await,
        TokenCommand::Revoke { id, data_dir, kubeconfig } => {
            revoke(&Admin::from(&data_dir, kubeconfig.as_deref())?, &id).await
        }
    }
}

/// The admin kubeconfig the token commands act with.
pub struct Admin {
    path: PathBuf,
    kubeconfig: kube::config::Kubeconfig,
}

impl Admin {
    /// `kubeconfig` if given, else the admin kubeconfig the controller wrote into `data_dir`.
    pub fn from(data_dir: &Path, kubeconfig: Option<&Path>) -> anyhow::Result<Admin> {
        let path = match kubeconfig {
            Some(path) => path.to_path_buf(),
            None => data_dir.join("pki").join("admin.conf"),
        };
        let text = std::fs::read_to_string(&path).with_context(|| match kubeconfig {
            Some(_) => format!("cannot read the kubeconfig {}", path.display()),
            None => format!(
                "cannot read {}: run this where `kaasd controller` runs, with its --data-dir, or give --kubeconfig",
                path.display()
            ),
        })?;
        let kubeconfig = kube::config::Kubeconfig::from_yaml(&text)
            .with_context(|| format!("the kubeconfig {} is unreadable", path.display()))?;
        Ok(Admin { path, kubeconfig })
    }

    async fn client(&self) -> anyhow::Result<kube::Client> {
        let config =
            kube::Config::from_custom_kubeconfig(self.kubeconfig.clone(), &kube::config::KubeConfigOptions::default())
                .await
                .with_context(|| format!("the kubeconfig {} is unusable", self.path.display()))?;
        Ok(kube::Client::try_from(config)?)
    }

    /// The cluster CA (PEM) of the kubeconfig's current context: the CA a join token pins.
    fn ca_pem(&self) -> anyhow::Result<String> {
        let context = self
            .kubeconfig
            .contexts
            .iter()
            .find(|context| Some(&context.name) == self.kubeconfig.current_context.as_ref())
            .and_then(|context| context.context.as_ref());
        let cluster = self
            .kubeconfig
            .clusters
            .iter()
            .find(|cluster| context.is_some_and(|context| context.cluster == cluster.name))
            .or(self.kubeconfig.clusters.first())
            .and_then(|cluster| cluster.cluster.as_ref());
        let data = cluster.and_then(|cluster| cluster.certificate_authority_data.as_deref()).ok_or_else(|| {
            anyhow::anyhow!(
                "the kubeconfig {} names no certificate-authority-data, which a join token pins",
                self.path.display()
            )
        })?;
        let pem = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| {
                anyhow::anyhow!("the certificate-authority-data of {} is not base64 PEM", self.path.display())
            })?;
        Ok(pem)
    }
}

pub async fn create(
    admin: &Admin,
    expiry: Duration,
    servers: Vec<String>,
    description: Option<String>,
) -> anyhow::Result<JoinToken> {
    let client = admin.client().await?;
    let ca_pem = admin.ca_pem()?;
    let servers = if servers.is_empty() { advertised_servers(&client).await? } else { servers };
    if servers.is_empty() {
        bail!("the cluster advertises no controller address; name one with --server HOST:PORT");
    }
    let (id, secret) = kaasd_tunnel::token::new_bootstrap_credentials();
    let mut data = BTreeMap::from([
        ("token-id".to_string(), id.clone()),
        ("token-secret".to_string(), secret.clone()),
        ("usage-bootstrap-authentication".to_string(), "true".to_string()),
        ("usage-bootstrap-signing".to_string(), "true".to_string()),
        ("description".to_string(), description.unwrap_or_else(|| "kaasd worker join token".into())),
    ]);
    if !expiry.is_zero() {
        let expires = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(expiry.as_secs() as i64);
        data.insert("expiration".to_string(), expires.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
    }
    let secrets: Api<Secret> = Api::namespaced(client, "kube-system");
    let object = Secret {
        metadata: ObjectMeta { name: Some(format!("bootstrap-token-{id}")), ..Default::default() },
        type_: Some(TOKEN_TYPE.into()),
        string_data: Some(data),
        ..Default::default()
    };
    secrets.create(&PostParams::default(), &object).await.context("cannot store the token")?;
    let ca_sha256 = kaasd_tunnel::token::ca_pin(&ca_pem)?;
    Ok(JoinToken { servers, ca_sha256, id, secret })
}

/// Every controller's advertised `address:port`, from the `kubernetes` Service's EndpointSlice.
async fn advertised_servers(client: &kube::Client) -> anyhow::Result<Vec<String>> {
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let slice = slices.get("kubernetes").await.context("cannot read the kubernetes EndpointSlice")?;
    let port = slice.ports.iter().flatten().find_map(|port| port.port).unwrap_or(6443);
    Ok(slice
        .endpoints
        .iter()
        .flat_map(|endpoint| endpoint.addresses.iter())
        .map(|address| if address.contains(':') { format!("[{address}]:{port}") } else { format!("{address}:{port}") })
        .collect())
}

async fn list(admin: &Admin) -> anyhow::Result<()> {
    let client = admin.client().await?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "kube-system");
    let tokens = secrets.list(&ListParams::default().fields(&format!("type={TOKEN_TYPE}"))).await?;
    let requests: Api<CertificateSigningRequest> = Api::all(client);
    let mut joined: BTreeMap<String, usize> = BTreeMap::new();
    for request in requests.list(&ListParams::default()).await?.items {
        let approved = request
            .status
            .iter()
            .flat_map(|status| status.conditions.iter().flatten())
            .any(|condition| condition.type_ == "Approved" && condition.status == "True");
        if let (true, Some(id)) =
            (approved, request.spec.username.as_deref().and_then(|name| name.strip_prefix("system:bootstrap:")))
        {
            *joined.entry(id.to_string()).or_default() += 1;
        }
    }
    println!("{:<8} {:<22} {:<26} {:<7} DESCRIPTION", "ID", "EXPIRES", "USAGES", "JOINED");
    for secret in tokens.items {
        let field = |name: &str| {
            secret
                .data
                .as_ref()
                .and_then(|data| data.get(name))
                .map(|value| String::from_utf8_lossy(&value.0).into_owned())
                .unwrap_or_default()
        };
        let id = field("token-id");
        let usages: Vec<&str> = ["authentication", "signing"]
            .into_iter()
            .filter(|usage| field(&format!("usage-bootstrap-{usage}")) == "true")
            .collect();
        let expires = match field("expiration") {
            text if text.is_empty() => "never".to_string(),
            text => text,
        };
        println!(
            "{:<8} {:<22} {:<26} {:<7} {}",
            id,
            expires,
            usages.join(","),
            joined.get(&id).copied().unwrap_or(0),
            field("description")
        );
    }
    Ok(())
}

async fn revoke(admin: &Admin, id: &str) -> anyhow::Result<()> {
    if kaasd_tunnel::token::JoinToken::parse(id).is_ok() {
        bail!("pass the token's id (the first column of `kaasd token list`), not the whole token");
    }
    let client = admin.client().await?;
    let secrets: Api<Secret> = Api::namespaced(client, "kube-system");
    match secrets.delete(&format!("bootstrap-token-{id}"), &DeleteParams::default()).await {
        Ok(_) => {
            eprintln!("token {id} revoked");
            Ok(())
        }
        Err(kube::Error::Api(status)) if status.code == 404 => {
            bail!("there is no token with id {id:?}; `kaasd token list` shows the tokens")
        }
        Err(error) => Err(error).context("cannot revoke the token"),
    }
}
