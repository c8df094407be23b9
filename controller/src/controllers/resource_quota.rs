//! ResourceQuota status, as upstream's resource quota controller: `status.hard` is the spec's, `status.used` what
//! the namespace's objects count (object counts, `count/<resource>.<group>`, and the compute resources of pods),
//! with the arithmetic of `apiserver::resource_quota`, which admission uses too.
//!
//! Every quota is recounted every few seconds (not event by event as upstream): a quota's usage depends on many
//! kinds, and a periodic pass over lists the API serves from memory is simple and cheap at the scale kaasd targets.
//! Admission never reads `status.used`, so a late count never lets a create through.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ResourceQuota;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::{json, Map, Value};

use crate::apiserver::resource_quota::{counted_resource, format_quantity, total_usage};
use crate::apiserver::ApiServer;

const PERIOD: Duration = Duration::from_secs(5);

pub async fn run(client: kube::Client, api: Arc<ApiServer>) {
    let mut tick = tokio::time::interval(PERIOD);
    loop {
        tick.tick().await;
        if let Err(error) = sync_all(&client, &api).await {
            tracing::debug!(error = %error, "cannot recount resource quotas");
        }
    }
}

async fn sync_all(client: &kube::Client, api: &ApiServer) -> Result<(), kube::Error> {
    let quotas: Api<ResourceQuota> = Api::all(client.clone());
    for quota in quotas.list(&ListParams::default()).await? {
        let namespace = quota.namespace().unwrap_or_default();
        let name = quota.name_any();
        if let Err(error) = sync_one(client, api, &namespace, &quota).await {
            tracing::debug!(quota = %name, namespace = %namespace, error = %error, "cannot recount a resource quota");
        }
    }
    Ok(())
}

async fn sync_one(
    client: &kube::Client,
    api: &ApiServer,
    namespace: &str,
    quota: &ResourceQuota,
) -> Result<(), kube::Error> {
    let value = serde_json::to_value(quota).unwrap_or_default();
    let hard = value.pointer("/spec/hard").cloned().unwrap_or_else(|| json!({}));
    let names: Vec<String> = hard.as_object().map(|hard| hard.keys().cloned().collect()).unwrap_or_default();
    // The names each counted resource answers, so each is listed once.
    let mut by_resource: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for name in &names {
        if let Some(resource) = counted_resource(name) {
            by_resource.entry(resource).or_default().push(name.clone());
        }
    }
    let mut used = Map::new();
    for ((group, plural), names) in by_resource {
        let Some(resource) = api_resource(api, &group, &plural) else { continue };
        let objects: Vec<Value> = Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &resource)
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter_map(|object| serde_json::to_value(object).ok())
            .collect();
        for (name, total) in total_usage(&group, &plural, objects.iter(), &names) {
            used.insert(name, json!(format_quantity(total)));
        }
    }
    // Names no longer in the spec are removed (null in a merge patch).
    for stale in value.pointer("/status/used").and_then(Value::as_object).into_iter().flatten().map(|(k, _)| k) {
        if !used.contains_key(stale) {
            used.insert(stale.clone(), Value::Null);
        }
    }
    let status = json!({"hard": hard, "used": used});
    let current = value.get("status").cloned().unwrap_or_default();
    if current.get("hard") == Some(&status["hard"]) && same_used(current.get("used"), &used) {
        return Ok(());
    }
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), namespace);
    quotas.patch_status(&quota.name_any(), &PatchParams::default(), &Patch::Merge(json!({"status": status}))).await?;
    Ok(())
}

/// Whether the stored `status.used` already says what `used` would write.
fn same_used(current: Option<&Value>, used: &Map<String, Value>) -> bool {
    let current = current.and_then(Value::as_object).cloned().unwrap_or_default();
    let wanted: Map<String, Value> =
        used.iter().filter(|(_, value)| !value.is_null()).map(|(k, v)| (k.clone(), v.clone())).collect();
    current == wanted
}

/// The served version of `group`/`plural` as a dynamic API resource.
fn api_resource(api: &ApiServer, group: &str, plural: &str) -> Option<ApiResource> {
    let registry = api.registry();
    let def = registry.iter().find(|def| def.group == group && def.plural == plural && def.conversion.is_none())?;
    Some(ApiResource {
        group: def.group.clone(),
        version: def.version.clone(),
        api_version: def.api_version(),
        kind: def.kind.clone(),
        plural: def.plural.clone(),
    })
}
