//! Node client certificates: approves and signs CertificateSigningRequests for the signer
//! `kubernetes.io/kube-apiserver-client-kubelet`, as upstream's csrapproving and csrsigning controllers do for
//! kubelets, with kaasd's rules:
//!
//! - the request must ask for exactly `CN=system:node:<name>`, `O=system:nodes`;
//! - a bootstrap-token user (group `system:bootstrappers`) may get it only while no Node of that name exists, so a
//!   leaked token cannot take over a node that is already registered;
//! - a node may renew its own certificate (the requester is the very `system:node:<name>`).
//!
//! Anything else is Denied with a message saying why. Signed certificates are valid for `expirationSeconds` if the
//! request asks (at least 10 minutes), else [`DEFAULT_VALIDITY`].

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition, CertificateSigningRequestStatus,
};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kaasd_tunnel::pki::ClusterPki;
use kube::api::{Patch, PatchParams};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};

pub const NODE_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
pub const DEFAULT_VALIDITY: Duration = Duration::from_secs(30 * 24 * 3600);
const MINIMUM_VALIDITY: Duration = Duration::from_secs(600);

pub async fn run(client: kube::Client, pki: ClusterPki) {
    let requests: Api<CertificateSigningRequest> = Api::all(client.clone());
    let nodes: Api<Node> = Api::all(client);
    let mut events = watcher(requests.clone(), watcher::Config::default()).boxed();
    while let Some(event) = events.next().await {
        let request = match event {
            Ok(watcher::Event::Apply(request) | watcher::Event::InitApply(request)) => request,
            Ok(_) => continue,
            Err(error) => {
                tracing::debug!(error = %error, "certificate request watch interrupted");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(error) = handle(&requests, &nodes, &pki, &request).await {
            tracing::warn!(csr = %request.name_any(), error = %error, "cannot handle a certificate request");
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Decision {
    Approve,
    Deny(String),
}

async fn handle(
    requests: &Api<CertificateSigningRequest>,
    nodes: &Api<Node>,
    pki: &ClusterPki,
    request: &CertificateSigningRequest,
) -> Result<(), kube::Error> {
    if request.spec.signer_name != NODE_CLIENT_SIGNER {
        return Ok(());
    }
    let conditions = request.status.as_ref().and_then(|status| status.conditions.as_ref());
    let has = |kind: &str| conditions.is_some_and(|list| list.iter().any(|c| c.type_ == kind && c.status == "True"));
    if has("Denied") || has("Failed") {
        return Ok(());
    }
    let name = request.name_any();
    if !has("Approved") {
        let requested = kaasd_tunnel::pki::request_subject(&String::from_utf8_lossy(&request.spec.request.0));
        let node_exists = match &requested {
            Ok((common_name, _)) => match common_name.strip_prefix("system:node:") {
                Some(node) => nodes.get_opt(node).await?.is_some(),
                None => false,
            },
            Err(_) => false,
        };
        let decision = decide(request, requested, node_exists);
        let (kind, reason, message) = match &decision {
            Decision::Approve => ("Approved", "AutoApproved", "approved by kaasd for a node client certificate".into()),
            Decision::Deny(message) => ("Denied", "NotAllowed", message.clone()),
        };
        tracing::info!(csr = %name, decision = kind, message = %message, "certificate request");
        let mut status = request.status.clone().unwrap_or_default();
        status.conditions.get_or_insert_with(Vec::new).push(CertificateSigningRequestCondition {
            type_: kind.into(),
            status: "True".into(),
            reason: Some(reason.into()),
            message: Some(message),
            last_update_time: Some(Time(jiff::Timestamp::now())),
            last_transition_time: Some(Time(jiff::Timestamp::now())),
        });
        let patch = serde_json::json!({"status": {"conditions": status.conditions}});
        requests.patch_approval(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        if decision != Decision::Approve {
            return Ok(());
        }
    }
    if request.status.as_ref().and_then(|status| status.certificate.as_ref()).is_some() {
        return Ok(());
    }
    let Ok((common_name, _)) = kaasd_tunnel::pki::request_subject(&String::from_utf8_lossy(&request.spec.request.0))
    else {
        return Ok(());
    };
    let validity = request
        .spec
        .expiration_seconds
        .map(|seconds| Duration::from_secs(seconds.max(0) as u64).max(MINIMUM_VALIDITY))
        .unwrap_or(DEFAULT_VALIDITY);
    let certificate = match pki.sign_client_request(
        &String::from_utf8_lossy(&request.spec.request.0),
        &common_name,
        &["system:nodes"],
        validity,
    ) {
        Ok(certificate) => certificate,
        Err(error) => {
            tracing::warn!(csr = %name, error = %error, "cannot sign a certificate request");
            return Ok(());
        }
    };
    let status = CertificateSigningRequestStatus {
        certificate: Some(k8s_openapi::ByteString(certificate.into_bytes())),
        ..Default::default()
    };
    let patch = serde_json::json!({"status": {"certificate": status.certificate}});
    requests.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    tracing::info!(csr = %name, node.user = %common_name, "signed a node client certificate");
    Ok(())
}

/// kaasd's approval rules (see the module documentation). `requested` is the request's subject, `node_exists`
/// whether a Node of the requested name exists.
fn decide(
    request: &CertificateSigningRequest,
    requested: Result<(String, Vec<String>), String>,
    node_exists: bool,
) -> Decision {
    let (common_name, organizations) = match requested {
        Ok(subject) => subject,
        Err(error) => return Decision::Deny(format!("spec.request is not a PEM certificate request: {error}")),
    };
    let Some(node) = common_name.strip_prefix("system:node:").filter(|node| is_node_name(node)) else {
        return Decision::Deny(format!(
            "the request asks for CN={common_name:?}; node client certificates are CN=system:node:<node name>"
        ));
    };
    if organizations != ["system:nodes"] {
        return Decision::Deny(format!(
            "the request asks for O={organizations:?}; node client certificates are O=system:nodes only"
        ));
    }
    let username = request.spec.username.as_deref().unwrap_or_default();
    let groups = request.spec.groups.as_deref().unwrap_or_default();
    if username == common_name {
        return Decision::Approve;
    }
    if groups.iter().any(|group| group == "system:bootstrappers") {
        if node_exists {
            return Decision::Deny(format!(
                "node {node:?} is already registered: a join token cannot take over an existing node; delete it \
                 first (kubectl delete node {node}) or join with another --node-name"
            ));
        }
        return Decision::Approve;
    }
    Decision::Deny(format!(
        "{username:?} may not request a certificate for node {node:?}: only a join (bootstrap) token or the node \
         itself may"
    ))
}

/// A DNS-1123 subdomain, as Node names are.
fn is_node_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::certificates::v1::CertificateSigningRequestSpec;

    fn request(username: &str, groups: &[&str]) -> CertificateSigningRequest {
        CertificateSigningRequest {
            spec: CertificateSigningRequestSpec {
                username: Some(username.into()),
                groups: Some(groups.iter().map(|group| group.to_string()).collect()),
                signer_name: NODE_CLIENT_SIGNER.into(),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn subject(common_name: &str, organizations: &[&str]) -> Result<(String, Vec<String>), String> {
        Ok((common_name.into(), organizations.iter().map(|o| o.to_string()).collect()))
    }

    #[test]
    fn bootstrap_tokens_get_certificates_for_new_nodes_only() {
        let bootstrap = request("system:bootstrap:abcdef", &["system:bootstrappers", "system:authenticated"]);
        let edge = subject("system:node:edge1", &["system:nodes"]);
        assert_eq!(decide(&bootstrap, edge.clone(), false), Decision::Approve);
        match decide(&bootstrap, edge, true) {
            Decision::Deny(message) => assert!(message.contains("already registered"), "{message}"),
            Decision::Approve => panic!("a token must not take over an existing node"),
        }
    }

    #[test]
    fn nodes_renew_only_their_own_certificate() {
        let node = request("system:node:edge1", &["system:nodes", "system:authenticated"]);
        assert_eq!(decide(&node, subject("system:node:edge1", &["system:nodes"]), true), Decision::Approve);
        assert!(matches!(decide(&node, subject("system:node:edge2", &["system:nodes"]), true), Decision::Deny(_)));
    }

    #[test]
    fn other_identities_are_denied_with_a_reason() {
        let bootstrap = request("system:bootstrap:abcdef", &["system:bootstrappers"]);
        let deny = |decision: Decision| match decision {
            Decision::Deny(message) => message,
            Decision::Approve => panic!("approved"),
        };
        assert!(deny(decide(&bootstrap, subject("admin", &["system:masters"]), false)).contains("CN="));
        assert!(deny(decide(&bootstrap, subject("system:node:edge1", &["system:masters"]), false)).contains("O="));
        assert!(deny(decide(&bootstrap, subject("system:node:Bad_Name", &["system:nodes"]), false)).contains("CN="));
        assert!(deny(decide(&bootstrap, Err("garbage".into()), false)).contains("PEM"));
        let alice = request("alice", &["system:authenticated"]);
        assert!(deny(decide(&alice, subject("system:node:edge1", &["system:nodes"]), false)).contains("alice"));
    }
}
