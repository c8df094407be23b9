//! Expired bootstrap tokens are deleted, as upstream's token cleaner does: a `bootstrap.kubernetes.io/token` Secret
//! in kube-system whose `expiration` has passed.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, ListParams};
use kube::{Api, ResourceExt};

const CHECK_EVERY: Duration = Duration::from_secs(30);

pub async fn run(client: kube::Client) {
    let secrets: Api<Secret> = Api::namespaced(client, "kube-system");
    let mut tick = tokio::time::interval(CHECK_EVERY);
    loop {
        tick.tick().await;
        let Ok(list) = secrets.list(&ListParams::default().fields("type=bootstrap.kubernetes.io/token")).await else {
            continue;
        };
        for secret in list.items {
            if expired(&secret, jiff::Timestamp::now()) {
                tracing::info!(secret = %secret.name_any(), "deleting an expired bootstrap token");
                let _ = secrets.delete(&secret.name_any(), &DeleteParams::default()).await;
            }
        }
    }
}

fn expired(secret: &Secret, now: jiff::Timestamp) -> bool {
    let expiration = secret
        .data
        .as_ref()
        .and_then(|data| data.get("expiration"))
        .map(|bytes| String::from_utf8_lossy(&bytes.0).into_owned())
        .or_else(|| secret.string_data.as_ref().and_then(|data| data.get("expiration").cloned()));
    match expiration.map(|text| text.parse::<jiff::Timestamp>()) {
        Some(Ok(expires)) => expires <= now,
        // An unreadable expiration counts as expired: such a token never authenticates anyway.
        Some(Err(_)) => true,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use std::collections::BTreeMap;

    fn token(expiration: Option<&str>) -> Secret {
        let mut data = BTreeMap::new();
        if let Some(expiration) = expiration {
            data.insert("expiration".to_string(), ByteString(expiration.as_bytes().to_vec()));
        }
        Secret { data: Some(data), ..Secret::default() }
    }

    #[test]
    fn expiry_is_read_from_the_secret() {
        let now: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        assert!(expired(&token(Some("2025-12-31T23:59:59Z")), now));
        assert!(!expired(&token(Some("2026-01-02T00:00:00Z")), now));
        assert!(!expired(&token(None), now), "tokens without an expiration live until revoked");
        assert!(expired(&token(Some("soon")), now));
    }
}
