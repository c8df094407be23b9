//! The controllers the API itself needs: namespace deletion, garbage collection by ownerReferences, the
//! per-namespace `default` ServiceAccount and `kube-root-ca.crt` ConfigMap, expired bootstrap tokens, node client
//! certificates (approve and sign), and closing the tunnels of removed nodes.
//!
//! They are ordinary API clients (kube-rs over loopback, as `system:kube-controller-manager` in
//! `system:masters`), never readers of the datastore, so they exercise the API the way any controller does and
//! could run in any replica.

mod bootstrap_tokens;
pub mod certificates;
mod garbage_collector;
mod namespaces;
mod service_accounts;

use std::sync::Arc;

use kube::api::{ApiResource, DynamicObject};
use kube::Api;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::apiserver::registry::ResourceDef;
use crate::apiserver::ApiServer;

/// Starts every controller on `tasks`; they stop at `cancel`.
pub fn spawn_all(
    client: kube::Client,
    api: Arc<ApiServer>,
    pki: kaasd_tunnel::pki::ClusterPki,
    cancel: CancellationToken,
    tasks: &TaskTracker,
) {
    let ca_pem = pki.ca.cert_pem.clone();
    tasks.spawn(supervise("namespace", cancel.clone(), namespaces::run(client.clone(), api.clone())));
    tasks.spawn(supervise("garbage-collector", cancel.clone(), garbage_collector::run(client.clone(), api.clone())));
    tasks.spawn(supervise("service-account", cancel.clone(), service_accounts::run(client.clone(), ca_pem)));
    tasks.spawn(supervise("bootstrap-token-cleaner", cancel.clone(), bootstrap_tokens::run(client.clone())));
    tasks.spawn(supervise("node-certificates", cancel.clone(), certificates::run(client, pki)));
    tasks.spawn(supervise("node-revocations", cancel, crate::tunnels::follow_revocations(api)));
}

async fn supervise(name: &'static str, cancel: CancellationToken, task: impl std::future::Future<Output = ()>) {
    tokio::select! {
        () = cancel.cancelled() => {}
        () = task => tracing::warn!(controller = name, "controller ended"),
    }
}

/// kube-rs's view of a served resource.
fn api_resource(def: &ResourceDef) -> ApiResource {
    ApiResource {
        group: def.group.clone(),
        version: def.version.clone(),
        api_version: def.api_version(),
        kind: def.kind.clone(),
        plural: def.plural.clone(),
    }
}

/// A dynamic API for `def`, in `namespace` when it is namespaced.
fn dynamic_api(client: &kube::Client, def: &ResourceDef, namespace: Option<&str>) -> Api<DynamicObject> {
    let resource = api_resource(def);
    match namespace {
        Some(namespace) if def.namespaced => Api::namespaced_with(client.clone(), namespace, &resource),
        _ => Api::all_with(client.clone(), &resource),
    }
}

/// Resources whose objects can be listed, watched and deleted (the create-only reviews cannot).
fn listable(def: &ResourceDef) -> bool {
    def.has_verb("list") && def.has_verb("watch") && def.has_verb("delete")
}
