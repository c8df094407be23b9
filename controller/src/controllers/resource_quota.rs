//! ResourceQuota status, as upstream's resource quota controller: `status.hard` is the spec's, `status.used` what
//! the namespace's objects count (object counts, `count/<resource>.<group>`, and the compute resources of pods),
//! with the arithmetic of `apiserver::resource_quota`, which admission uses too.
//!
//! Every quota is recounted shortly after a write to a kind some quota counts (or to a quota), and every few
//! seconds regardless: the writes are seen through a datastore watch on every key, and a burst of them costs one
//! recount. A pass recounts every quota from lists the API serves from memory, which is simple and cheap at the
//! scale kaasd targets. Admission never reads `status.used`, so a late count never lets a create through.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ResourceQuota;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::{json, Map, Value};

use crate::apiserver::resource_quota::{counted_resource, format_quantity, in_scope, total_usage};
use crate::apiserver::ApiServer;

const PERIOD: Duration = Duration::from_secs(5);
/// How long a recount waits after the write that woke it, so that a burst of writes is counted once.
const SETTLE: Duration = Duration::from_millis(100);

/// Storage key prefixes (`/registry/<group or core>/<plural>/`) of the kinds some quota counts, and of quotas.
type Watched = HashSet<String>;

pub async fn run(client: kube::Client, api: Arc<ApiServer>) {
    let mut tick = tokio::time::interval(PERIOD);
    let mut watched = Watched::new();
    let mut writes = None;
    loop {
        // (Re)subscribed here: a watch that ended (a compaction, a lost database connection) is replaced at the next
        // pass, and the recount that follows catches the writes made in between.
        if writes.is_none() {
            writes = api.store.watch("/registry/", 0).await.ok();
        }
        tokio::select! {
            _ = tick.tick() => {}
            () = next_counted_write(&mut writes, &watched) => tokio::time::sleep(SETTLE).await,
        }
        match sync_all(&client, &api).await {
            Ok(counted) => watched = counted,
            Err(error) => tracing::debug!(error = %error, "cannot recount resource quotas"),
        }
    }
}

/// Waits for a write under one of the `watched` prefixes; forever when there is no watch (the periodic pass
/// still runs). Returns when the watch ends, leaving `writes` empty so that the caller subscribes again.
async fn next_counted_write(writes: &mut Option<kaasd_datastore::Watcher>, watched: &Watched) {
    let Some(watcher) = writes.as_mut() else { return std::future::pending().await };
    loop {
        match watcher.recv().await {
            Ok(batch) => {
                let counted = batch.events.iter().any(|event| {
                    let key = String::from_utf8_lossy(&event.kv.key);
                    watched.iter().any(|prefix| key.starts_with(prefix.as_str()))
                });
                if counted {
                    return;
                }
            }
            Err(error) => {
                tracing::debug!(error = %error, "the resource quota controller's watch ended; subscribing again");
                *writes = None;
                return;
            }
        }
    }
}

/// Recounts every quota; returns the key prefixes whose writes change a count.
async fn sync_all(client: &kube::Client, api: &ApiServer) -> Result<Watched, kube::Error> {
    let quotas: Api<ResourceQuota> = Api::all(client.clone());
    let mut watched = Watched::new();
    watched.insert("/registry/core/resourcequotas/".to_string());
    for quota in quotas.list(&ListParams::default()).await? {
        let hard = quota.spec.as_ref().and_then(|spec| spec.hard.as_ref());
        for name in hard.into_iter().flat_map(|hard| hard.keys()) {
            if let Some((group, plural)) = counted_resource(name) {
                let group = if group.is_empty() { "core".to_string() } else { group };
                watched.insert(format!("/registry/{group}/{plural}/"));
            }
        }
        let namespace = quota.namespace().unwrap_or_default();
        let name = quota.name_any();
        if let Err(error) = sync_one(client, api, &namespace, &quota).await {
            tracing::debug!(quota = %name, namespace = %namespace, error = %error, "cannot recount a resource quota");
        }
    }
    Ok(watched)
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
            .filter(|object| in_scope(&value, &group, &plural, object))
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
