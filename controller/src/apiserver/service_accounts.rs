//! The ServiceAccount admission plugin, as upstream's: a new pod runs as a ServiceAccount that exists (its
//! `serviceAccountName`, which the defaults set to `default`), and gets the account's API token volume unless the
//! pod, or else the account, says `automountServiceAccountToken: false`. A pod naming a missing account is
//! upstream's 403. Mirror pods (a node's static pods) are left alone: upstream gives them no account token.

use std::time::Duration;

use serde_json::Value;

use crate::apiserver::error::{ApiError, ApiResult, Details};
use crate::apiserver::registry::ResourceDef;
use crate::apiserver::storage::ObjectStore;
use crate::apiserver::ApiServer;

/// The annotation a node puts on the API copy of a static pod.
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// How often, and how far apart, the `default` account is looked up before a pod naming it is refused: the
/// ServiceAccount controller creates it just after its namespace, and a pod created at once should not lose that
/// race (upstream retries the same way).
const DEFAULT_ACCOUNT_LOOKUPS: usize = 10;
const DEFAULT_ACCOUNT_RETRY: Duration = Duration::from_millis(150);

impl ApiServer {
    /// Checks a new pod's ServiceAccount and mounts its token volume. Runs after the defaults.
    pub(crate) async fn admit_service_account(
        &self,
        def: &ResourceDef,
        namespace: Option<&str>,
        name: &str,
        pod: &mut Value,
    ) -> ApiResult<()> {
        let (true, Some(namespace)) = (def.group.is_empty() && def.kind == "Pod", namespace) else { return Ok(()) };
        if pod.pointer("/metadata/annotations").and_then(|annotations| annotations.get(MIRROR_ANNOTATION)).is_some() {
            return Ok(());
        }
        let account_name =
            pod.pointer("/spec/serviceAccountName").and_then(Value::as_str).unwrap_or("default").to_string();
        let Some(account) = self.service_account(namespace, &account_name).await? else {
            return Err(ApiError::forbidden(
                format!(
                    "pods {name:?} is forbidden: error looking up service account {namespace}/{account_name}: \
                     serviceaccount {account_name:?} not found"
                ),
                Details { name: name.to_string(), kind: "pods".into(), ..Details::default() },
            ));
        };
        if should_mount_token(pod, &account) {
            crate::apiserver::defaults::mount_service_account_token(pod);
        }
        Ok(())
    }

    async fn service_account(&self, namespace: &str, name: &str) -> ApiResult<Option<Value>> {
        let registry = self.registry();
        let def = registry.get("", "v1", "serviceaccounts").expect("ServiceAccounts are built in");
        let key = ObjectStore::key(def, Some(namespace), name);
        let lookups = if name == "default" { DEFAULT_ACCOUNT_LOOKUPS } else { 1 };
        for lookup in 0..lookups {
            if lookup > 0 {
                tokio::time::sleep(DEFAULT_ACCOUNT_RETRY).await;
            }
            if let Some(stored) = self.store.get(&key, true).await? {
                return Ok(Some(stored.object));
            }
        }
        Ok(None)
    }
}

/// The pod's own `automountServiceAccountToken` decides; else the account's; else the token is mounted.
fn should_mount_token(pod: &Value, account: &Value) -> bool {
    pod.pointer("/spec/automountServiceAccountToken")
        .and_then(Value::as_bool)
        .or_else(|| account.get("automountServiceAccountToken").and_then(Value::as_bool))
        .unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::should_mount_token;

    #[test]
    fn the_pod_decides_before_its_account() {
        let opted_out = json!({"automountServiceAccountToken": false});
        let silent = json!({});
        assert!(!should_mount_token(&json!({"spec": {}}), &opted_out));
        assert!(should_mount_token(&json!({"spec": {"automountServiceAccountToken": true}}), &opted_out));
        assert!(!should_mount_token(&json!({"spec": {"automountServiceAccountToken": false}}), &silent));
        assert!(should_mount_token(&json!({"spec": {}}), &silent));
    }
}
