//! Who is asking: the user behind a request, from its TLS client certificate (CN is the user, each O a group), a
//! bearer token, or nobody (`system:anonymous`). TokenReviews ask the same bearer token authenticator.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::apiserver::error::{ApiError, ApiResult};
use crate::apiserver::tokens::{Reference, Rejection, ISSUER};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    /// What else the authenticator knows, e.g. the pod a ServiceAccount token is bound to
    /// (`authentication.kubernetes.io/pod-name`).
    pub extra: BTreeMap<String, Vec<String>>,
}

/// What the bearer token authenticator says of a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenVerdict {
    /// The token's user, and the audiences (of those asked for) it is valid for.
    Authenticated { user: User, audiences: Vec<String> },
    /// Upstream's reason when it gives one (an expired ServiceAccount token, a deleted account or bound object);
    /// empty for tokens no authenticator recognizes.
    Rejected(String),
}

pub const ANONYMOUS: &str = "system:anonymous";

impl User {
    pub fn anonymous() -> User {
        User {
            name: ANONYMOUS.into(),
            uid: String::new(),
            groups: vec!["system:unauthenticated".into()],
            extra: BTreeMap::new(),
        }
    }

    /// An authenticated user; every one is also in `system:authenticated`.
    pub fn authenticated(name: String, uid: String, mut groups: Vec<String>) -> User {
        if !groups.iter().any(|group| group == "system:authenticated") {
            groups.push("system:authenticated".into());
        }
        User { name, uid, groups, extra: BTreeMap::new() }
    }

    pub fn is_anonymous(&self) -> bool {
        self.name == ANONYMOUS
    }

    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|candidate| candidate == group)
    }

    /// `status.userInfo` of a SelfSubjectReview, `status.user` of a TokenReview.
    pub fn to_user_info(&self) -> Value {
        let mut info = json!({"username": self.name, "groups": self.groups});
        if !self.uid.is_empty() {
            info["uid"] = json!(self.uid);
        }
        if !self.extra.is_empty() {
            info["extra"] = json!(self.extra);
        }
        info
    }
}

/// The user named by a client certificate (DER), if it parses.
pub fn user_from_certificate(der: &[u8]) -> Option<User> {
    let (_, certificate) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = certificate.subject();
    let name = subject.iter_common_name().next()?.as_str().ok()?.to_string();
    let groups =
        subject.iter_organization().filter_map(|organization| organization.as_str().ok().map(str::to_string)).collect();
    Some(User::authenticated(name, String::new(), groups))
}

/// When a client certificate (DER) became valid, as Unix seconds: a removed node's certificates from before its
/// removal no longer authenticate.
pub fn certificate_not_before(der: &[u8]) -> Option<i64> {
    let (_, certificate) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(certificate.validity().not_before.timestamp())
}

/// Authenticates a request: its client certificate, else its bearer token (a bootstrap token or a ServiceAccount
/// token), else anonymous. A bearer token that does not check out is 401, not anonymous, as upstream.
pub async fn authenticate(
    api: &crate::apiserver::ApiServer,
    certificate_user: Option<User>,
    headers: &http::HeaderMap,
) -> ApiResult<User> {
    if let Some(user) = certificate_user {
        return Ok(user);
    }
    let Some(token) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")))
        .map(str::trim)
    else {
        return Ok(User::anonymous());
    };
    match authenticate_token(api, token, &[]).await? {
        TokenVerdict::Authenticated { user, .. } => Ok(user),
        TokenVerdict::Rejected(_) => Err(ApiError::unauthorized()),
    }
}

/// The bearer token authenticator: a bootstrap token or a ServiceAccount token, valid for one of `audiences`
/// (none: the API server's own, its issuer). Requests and TokenReviews both go through it.
pub async fn authenticate_token(
    api: &crate::apiserver::ApiServer,
    token: &str,
    audiences: &[String],
) -> ApiResult<TokenVerdict> {
    let wanted: Vec<&str> =
        if audiences.is_empty() { vec![ISSUER] } else { audiences.iter().map(String::as_str).collect() };
    if let Some((id, secret)) = bootstrap_token_parts(token) {
        // Bootstrap tokens know no audiences: they are valid for the API server's own, as upstream's
        // audience-agnostic authenticators.
        if !wanted.contains(&ISSUER) {
            return Ok(TokenVerdict::Rejected(String::new()));
        }
        return Ok(match bootstrap_token_user(api, id, secret).await? {
            Some(user) => TokenVerdict::Authenticated { user, audiences: vec![ISSUER.to_string()] },
            None => TokenVerdict::Rejected(String::new()),
        });
    }
    service_account_user(api, token, &wanted).await
}

/// A TokenReview's status for its `spec` (token, audiences), in upstream's shape: `authenticated`, `user` and
/// `audiences`, or an empty `user` and the `error`, if any.
pub async fn token_review(api: &crate::apiserver::ApiServer, spec: &Value) -> ApiResult<Value> {
    let token = spec["token"].as_str().unwrap_or("");
    if token.is_empty() {
        return Err(ApiError::bad_request("token is required for TokenReview in authentication"));
    }
    let audiences: Vec<String> = spec["audiences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|audience| audience.as_str().map(str::to_string))
        .collect();
    Ok(match authenticate_token(api, token, &audiences).await? {
        TokenVerdict::Authenticated { user, audiences } => {
            json!({"authenticated": true, "user": user.to_user_info(), "audiences": audiences})
        }
        TokenVerdict::Rejected(reason) if reason.is_empty() => json!({"user": {}}),
        TokenVerdict::Rejected(reason) => json!({"user": {}, "error": reason}),
    })
}

/// The claims binding a new token to `bound` (a TokenRequest's `spec.boundObjectRef`: a Pod or Secret in
/// `namespace`, or a Node), as upstream fills them: the object must exist (and have the uid given, if one is), and
/// a pod's token also names the pod's node.
pub async fn bound_object_claims(
    api: &crate::apiserver::ApiServer,
    namespace: &str,
    bound: Option<&Value>,
) -> ApiResult<BoundClaims> {
    let mut claims = BoundClaims::default();
    // `kubectl create token` without a bound object sends `boundObjectRef: null`.
    let Some(bound) = bound.filter(|bound| bound.get("kind").is_some()) else { return Ok(claims) };
    let kind = bound["kind"].as_str().unwrap_or("");
    let name = bound["name"].as_str().unwrap_or("");
    let (plural, object_namespace) = match kind {
        "Pod" => ("pods", Some(namespace)),
        "Secret" => ("secrets", Some(namespace)),
        "Node" => ("nodes", None),
        _ => {
            return Err(ApiError::bad_request(format!(
                "cannot bind token to object of type {kind}: only Pod, Secret and Node are supported"
            )));
        }
    };
    let object = live_object(api, plural, object_namespace, name)
        .await?
        .ok_or_else(|| ApiError::not_found(plural, "", plural, name))?;
    let uid = object.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("").to_string();
    if let Some(wanted) = bound["uid"].as_str().filter(|wanted| !wanted.is_empty() && *wanted != uid) {
        return Err(ApiError::new(
            409,
            "Conflict",
            format!("the UID in the bound object reference ({wanted}) does not match the UID in record. The object might have been deleted and then recreated"),
        ));
    }
    let reference = Reference { name: name.to_string(), uid };
    match kind {
        "Pod" => {
            claims.pod = Some(reference);
            if let Some(node) = object.pointer("/spec/nodeName").and_then(Value::as_str).filter(|node| !node.is_empty())
            {
                if let Some(node_object) = live_object(api, "nodes", None, node).await? {
                    let uid = node_object.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("");
                    claims.node = Some(Reference { name: node.to_string(), uid: uid.to_string() });
                }
            }
        }
        "Secret" => claims.secret = Some(reference),
        _ => claims.node = Some(reference),
    }
    Ok(claims)
}

/// The objects a ServiceAccount token is bound to besides its account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BoundClaims {
    pub pod: Option<Reference>,
    pub secret: Option<Reference>,
    pub node: Option<Reference>,
}

/// `abcdef.0123456789abcdef`: a bootstrap token's id and secret.
pub fn bootstrap_token_parts(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.split_once('.')?;
    let valid = |part: &str, length: usize| {
        part.len() == length && part.bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit())
    };
    (valid(id, 6) && valid(secret, 16)).then_some((id, secret))
}

/// The user of a bootstrap token: `system:bootstrap:<id>` in `system:bootstrappers` and the token's extra groups,
/// if the kube-system Secret `bootstrap-token-<id>` exists, matches, allows authentication and has not expired.
async fn bootstrap_token_user(api: &crate::apiserver::ApiServer, id: &str, secret: &str) -> ApiResult<Option<User>> {
    use base64::Engine;
    let Some(object) = live_object(api, "secrets", Some("kube-system"), &format!("bootstrap-token-{id}")).await? else {
        return Ok(None);
    };
    if object["type"] != "bootstrap.kubernetes.io/token" {
        return Ok(None);
    }
    let field = |name: &str| -> Option<String> {
        let encoded = object.pointer(&format!("/data/{name}"))?.as_str()?;
        let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).ok()?;
        String::from_utf8(bytes).ok()
    };
    let secret_matches =
        field("token-secret").is_some_and(|stored| constant_time_equal(stored.as_bytes(), secret.as_bytes()));
    if field("token-id").as_deref() != Some(id) || !secret_matches {
        return Ok(None);
    }
    if field("usage-bootstrap-authentication").as_deref() != Some("true") {
        return Ok(None);
    }
    if let Some(expiration) = field("expiration") {
        match expiration.parse::<jiff::Timestamp>() {
            Ok(expires) if expires > jiff::Timestamp::now() => {}
            _ => return Ok(None),
        }
    }
    let mut groups = vec!["system:bootstrappers".to_string()];
    if let Some(extra) = field("auth-extra-groups") {
        groups.extend(
            extra
                .split(',')
                .map(str::trim)
                .filter(|group| group.starts_with("system:bootstrappers:"))
                .map(str::to_string),
        );
    }
    Ok(Some(User::authenticated(format!("system:bootstrap:{id}"), String::new(), groups)))
}

fn constant_time_equal(left: &[u8], right: &[u8]) -> bool {
    left.len() == right.len() && left.iter().zip(right).fold(0u8, |difference, (a, b)| difference | (a ^ b)) == 0
}

/// The user of a ServiceAccount token this cluster signed, while its ServiceAccount and the objects it is bound to
/// (pod, secret, or node for a token bound to a node itself) still exist with the uids the token names: deleting one
/// invalidates the token. The extras are upstream's: the credential id and the bound pod and node.
async fn service_account_user(
    api: &crate::apiserver::ApiServer,
    token: &str,
    audiences: &[&str],
) -> ApiResult<TokenVerdict> {
    let claims = match api.tokens.verify(token, audiences) {
        Ok(claims) => claims,
        Err(Rejection::NotOurs) => return Ok(TokenVerdict::Rejected(String::new())),
        Err(rejection) => return Ok(TokenVerdict::Rejected(rejection.to_string())),
    };
    let kubernetes = &claims.kubernetes;
    let namespace = kubernetes.namespace.as_str();
    let account = &kubernetes.serviceaccount;
    let mut checks = vec![("serviceaccounts", "serviceaccount", "service account", Some(namespace), account)];
    if let Some(pod) = &kubernetes.pod {
        checks.push(("pods", "pod", "pod", Some(namespace), pod));
    }
    if let Some(secret) = &kubernetes.secret {
        checks.push(("secrets", "secret", "secret", Some(namespace), secret));
    }
    // A pod's token names its node for information only; a token bound to the node itself dies with it.
    if let (None, Some(node)) = (&kubernetes.pod, &kubernetes.node) {
        checks.push(("nodes", "node", "node", None, node));
    }
    for (plural, singular, noun, object_namespace, reference) in checks {
        let Some(object) = live_object(api, plural, object_namespace, &reference.name).await? else {
            return Ok(TokenVerdict::Rejected(format!("{singular} \"{}\" not found", reference.name)));
        };
        let uid = object.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("");
        if uid != reference.uid {
            return Ok(TokenVerdict::Rejected(format!("{noun} UID ({uid}) does not match claim ({})", reference.uid)));
        }
    }
    let mut user = User::authenticated(
        format!("system:serviceaccount:{namespace}:{}", account.name),
        account.uid.clone(),
        vec!["system:serviceaccounts".into(), format!("system:serviceaccounts:{namespace}")],
    );
    let mut extra = |key: &str, value: &str| {
        user.extra.insert(format!("authentication.kubernetes.io/{key}"), vec![value.to_string()]);
    };
    extra("credential-id", &format!("JTI={}", claims.jti));
    if let Some(node) = &kubernetes.node {
        extra("node-name", &node.name);
        extra("node-uid", &node.uid);
    }
    if let Some(pod) = &kubernetes.pod {
        extra("pod-name", &pod.name);
        extra("pod-uid", &pod.uid);
    }
    let audiences =
        audiences.iter().filter(|audience| claims.aud.iter().any(|own| own == *audience)).map(|a| a.to_string());
    Ok(TokenVerdict::Authenticated { user, audiences: audiences.collect() })
}

/// A stored object that is not being deleted, by resource (core group) and name.
async fn live_object(
    api: &crate::apiserver::ApiServer,
    plural: &str,
    namespace: Option<&str>,
    name: &str,
) -> ApiResult<Option<Value>> {
    let registry = api.registry();
    let def = registry.get("", "v1", plural).cloned().expect("the core kinds tokens bind to are built in");
    let key = crate::apiserver::storage::ObjectStore::key(&def, namespace, name);
    let Some(stored) = api.store.get(&key, false).await? else { return Ok(None) };
    Ok(stored.object.pointer("/metadata/deletionTimestamp").is_none().then_some(stored.object))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_tokens_have_a_strict_shape() {
        assert_eq!(bootstrap_token_parts("abcdef.0123456789abcdef"), Some(("abcdef", "0123456789abcdef")));
        assert_eq!(bootstrap_token_parts("ABCDEF.0123456789abcdef"), None);
        assert_eq!(bootstrap_token_parts("abcdef.0123456789abcde"), None);
        assert_eq!(bootstrap_token_parts("eyJhbGciOi.x.y"), None);
        assert!(constant_time_equal(b"same", b"same"));
        assert!(!constant_time_equal(b"same", b"samf"));
    }
}
