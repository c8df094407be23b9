//! The DefaultStorageClass admission plugin: a PersistentVolumeClaim created without `spec.storageClassName` gets
//! the default StorageClass's name (the one annotated `storageclass.kubernetes.io/is-default-class: "true"`; with
//! several, the newest, then the first by name, as upstream since v1.26). An empty `storageClassName` is a choice
//! (a volume without class) and stays, as does a claim with the beta class annotation. Runs on create only, before
//! the mutating webhooks, as upstream's built-in mutating plugins do.

use serde_json::{json, Value};

use crate::apiserver::error::ApiResult;
use crate::apiserver::registry::ResourceDef;
use crate::apiserver::storage::ObjectStore;
use crate::apiserver::ApiServer;

const DEFAULT_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";
const BETA_DEFAULT_ANNOTATION: &str = "storageclass.beta.kubernetes.io/is-default-class";
const BETA_CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";

impl ApiServer {
    /// Gives a new claim without a class the default class, if the cluster has one.
    pub(crate) async fn admit_default_storage_class(&self, def: &ResourceDef, claim: &mut Value) -> ApiResult<()> {
        let is_claim = def.group.is_empty() && def.kind == "PersistentVolumeClaim";
        if !(is_claim && wants_default(claim)) {
            return Ok(());
        }
        let registry = self.registry();
        let Some(classes) = registry.get("storage.k8s.io", "v1", "storageclasses").cloned() else { return Ok(()) };
        let page = self.store.list(&ObjectStore::prefix(&classes, None), None, 0, 0).await?;
        let classes: Vec<Value> = page.items.into_iter().map(|stored| stored.object).collect();
        if let (Some(name), Some(spec)) =
            (default_class(&classes), claim.get_mut("spec").and_then(Value::as_object_mut))
        {
            spec.insert("storageClassName".into(), json!(name));
        }
        Ok(())
    }
}

/// Whether the claim leaves its class to the cluster: no `storageClassName` (absent or null) and no beta
/// annotation.
fn wants_default(claim: &Value) -> bool {
    let unset = claim.pointer("/spec/storageClassName").is_none_or(Value::is_null);
    unset && claim.pointer("/metadata/annotations").and_then(|a| a.get(BETA_CLASS_ANNOTATION)).is_none()
}

/// The default class's name: among the classes marked default, the newest, ties broken by name.
fn default_class(classes: &[Value]) -> Option<String> {
    let is_default = |class: &&Value| {
        let annotation =
            |key: &str| class.pointer("/metadata/annotations").and_then(|a| a.get(key)) == Some(&json!("true"));
        annotation(DEFAULT_ANNOTATION) || annotation(BETA_DEFAULT_ANNOTATION)
    };
    let text = |class: &Value, field: &str| class["metadata"][field].as_str().unwrap_or_default().to_string();
    classes
        .iter()
        .filter(is_default)
        // RFC 3339 timestamps in UTC with the same precision order as text.
        .max_by(|a, b| {
            text(a, "creationTimestamp")
                .cmp(&text(b, "creationTimestamp"))
                .then_with(|| text(b, "name").cmp(&text(a, "name")))
        })
        .map(|class| text(class, "name"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(name: &str, created: &str, default: bool) -> Value {
        let annotations = if default { json!({DEFAULT_ANNOTATION: "true"}) } else { json!({}) };
        json!({"metadata": {"name": name, "creationTimestamp": created, "annotations": annotations}})
    }

    #[test]
    fn the_newest_default_class_wins_then_the_first_name() {
        let classes = [
            class("old-default", "2024-01-01T00:00:00Z", true),
            class("not-default", "2025-06-01T00:00:00Z", false),
            class("b-new", "2025-01-01T00:00:00Z", true),
            class("a-new", "2025-01-01T00:00:00Z", true),
        ];
        assert_eq!(default_class(&classes).as_deref(), Some("a-new"));
        assert_eq!(default_class(&classes[..2]).as_deref(), Some("old-default"));
        assert_eq!(default_class(&classes[1..2]), None, "no default class, no default");
        let beta = json!({"metadata": {"name": "beta", "annotations": {BETA_DEFAULT_ANNOTATION: "true"}}});
        assert_eq!(default_class(&[beta]).as_deref(), Some("beta"));
    }

    #[test]
    fn only_claims_that_name_no_class_get_the_default() {
        assert!(wants_default(&json!({"spec": {}})));
        assert!(wants_default(&json!({"spec": {"storageClassName": null}})));
        assert!(!wants_default(&json!({"spec": {"storageClassName": ""}})), "empty means no class");
        assert!(!wants_default(&json!({"spec": {"storageClassName": "fast"}})));
        let beta = json!({"metadata": {"annotations": {BETA_CLASS_ANNOTATION: "fast"}}, "spec": {}});
        assert!(!wants_default(&beta));
    }
}
