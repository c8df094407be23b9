//! Who is asking: the user behind a request, from its TLS client certificate (CN is the user, each O a group), a
//! bearer token, or nobody (`system:anonymous`).

use serde_json::{json, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
}

pub const ANONYMOUS: &str = "system:anonymous";

impl User {
    pub fn anonymous() -> User {
        User { name: ANONYMOUS.into(), uid: String::new(), groups: vec!["system:unauthenticated".into()] }
    }

    /// An authenticated user; every one is also in `system:authenticated`.
    pub fn authenticated(name: String, uid: String, mut groups: Vec<String>) -> User {
        if !groups.iter().any(|group| group == "system:authenticated") {
            groups.push("system:authenticated".into());
        }
        User { name, uid, groups }
    }

    pub fn is_anonymous(&self) -> bool {
        self.name == ANONYMOUS
    }

    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|candidate| candidate == group)
    }

    /// `status.userInfo` of a SelfSubjectReview.
    pub fn to_user_info(&self) -> Value {
        let mut info = json!({"username": self.name, "groups": self.groups});
        if !self.uid.is_empty() {
            info["uid"] = json!(self.uid);
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
    api: &crate::api::ApiServer,
    certificate_user: Option<User>,
    headers: &http::HeaderMap,
) -> crate::error::ApiResult<User> {
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
    if let Some((id, secret)) = bootstrap_token_parts(token) {
        return bootstrap_token_user(api, id, secret).await?.ok_or_else(crate::error::ApiError::unauthorized);
    }
    service_account_user(api, token).await?.ok_or_else(crate::error::ApiError::unauthorized)
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
async fn bootstrap_token_user(
    api: &crate::api::ApiServer,
    id: &str,
    secret: &str,
) -> crate::error::ApiResult<Option<User>> {
    use base64::Engine;
    let registry = api.registry();
    let secrets = registry.get("", "v1", "secrets").cloned().expect("secrets are built in");
    let key = crate::storage::ObjectStore::key(&secrets, Some("kube-system"), &format!("bootstrap-token-{id}"));
    let Some(stored) = api.store.get(&key, false).await? else { return Ok(None) };
    let object = stored.object;
    if object["type"] != "bootstrap.kubernetes.io/token" || object.pointer("/metadata/deletionTimestamp").is_some() {
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

/// The user of a ServiceAccount token this cluster signed, while its ServiceAccount (same uid) still exists.
async fn service_account_user(api: &crate::api::ApiServer, token: &str) -> crate::error::ApiResult<Option<User>> {
    let Some(claims) = api.tokens.verify(token, &[crate::tokens::ISSUER]) else { return Ok(None) };
    let registry = api.registry();
    let accounts = registry.get("", "v1", "serviceaccounts").cloned().expect("serviceaccounts are built in");
    let namespace = &claims.kubernetes.namespace;
    let account = &claims.kubernetes.serviceaccount;
    let key = crate::storage::ObjectStore::key(&accounts, Some(namespace), &account.name);
    let Some(stored) = api.store.get(&key, false).await? else { return Ok(None) };
    if stored.object.pointer("/metadata/uid").and_then(serde_json::Value::as_str) != Some(account.uid.as_str()) {
        return Ok(None);
    }
    Ok(Some(User::authenticated(
        format!("system:serviceaccount:{namespace}:{}", account.name),
        account.uid.clone(),
        vec!["system:serviceaccounts".into(), format!("system:serviceaccounts:{namespace}")],
    )))
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
