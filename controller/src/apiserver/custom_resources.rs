//! Serving CustomResourceDefinitions: the registry follows the stored CRDs. A task watches the CRD keys; on every
//! change it rebuilds the registry (built-in kinds plus every established CRD's served versions) and marks new CRDs
//! NamesAccepted and Established, which is when their resources appear in discovery and OpenAPI.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::ApiServer;
use crate::apiserver::registry::Registry;
use crate::apiserver::storage::{ObjectStore, Written};

impl ApiServer {
    /// Rebuilds the registry from the stored CRDs, establishing those that are not yet.
    pub async fn reload_custom_resources(&self) -> crate::apiserver::error::ApiResult<()> {
        let registry = self.registry();
        let crds = registry
            .get("apiextensions.k8s.io", "v1", "customresourcedefinitions")
            .cloned()
            .expect("CRDs are built in");
        let page = self.store.list(&ObjectStore::prefix(&crds, None), None, 0, 0).await?;
        let mut definitions = Vec::new();
        for stored in page.items {
            let mut crd = stored.object;
            if crd.pointer("/metadata/deletionTimestamp").is_some() {
                continue;
            }
            if !is_established(&crd) {
                crd["status"] = crate::apiserver::crd::established_status(&crd, &super::now());
                // Another controller on the same database may have done it first; either way it is established.
                match self.store.update(&stored.key, stored.revision, &crd).await? {
                    Written::Ok(_) | Written::Stale => {}
                }
            }
            match crate::apiserver::crd::resource_defs(&crd) {
                Ok(defs) => definitions.push((crd, defs)),
                Err(error) => tracing::warn!(error = %error, "a CustomResourceDefinition cannot be served"),
            }
        }
        self.set_registry(Registry::with_custom_resources(definitions));
        Ok(())
    }
}

fn is_established(crd: &Value) -> bool {
    crd.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|conditions| conditions.iter().any(|c| c["type"] == "Established" && c["status"] == "True"))
}

/// Keeps the registry in step with the stored CRDs, for as long as the server runs.
pub async fn follow_custom_resources(api: Arc<ApiServer>) {
    loop {
        let registry = api.registry();
        let crds = registry
            .get("apiextensions.k8s.io", "v1", "customresourcedefinitions")
            .cloned()
            .expect("CRDs are built in");
        let prefix = ObjectStore::prefix(&crds, None);
        let from = api.store.revision();
        if let Err(error) = api.reload_custom_resources().await {
            tracing::warn!(error = %error, "cannot load CustomResourceDefinitions");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        let Ok(mut watcher) = api.store.watch(&prefix, from + 1).await else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        while watcher.recv().await.is_ok() {
            if let Err(error) = api.reload_custom_resources().await {
                tracing::warn!(error = %error, "cannot reload CustomResourceDefinitions");
            }
        }
    }
}
