//! Namespace deletion: once a namespace has a deletionTimestamp, delete everything in it, wait until it is gone,
//! then remove the `kubernetes` finalizer through `/finalize`, which lets the API server delete the namespace.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, ResourceExt};

use crate::apiserver::ApiServer;

pub async fn run(client: kube::Client, api: Arc<ApiServer>) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let in_progress = Arc::new(Mutex::new(HashSet::new()));
    let mut events = watcher(namespaces.clone(), watcher::Config::default()).applied_objects().boxed();
    while let Some(event) = events.next().await {
        let namespace = match event {
            Ok(namespace) => namespace,
            Err(error) => {
                tracing::debug!(error = %error, "namespace watch restarts");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if namespace.metadata.deletion_timestamp.is_none() {
            continue;
        }
        let name = namespace.name_any();
        if !in_progress.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(name.clone()) {
            continue;
        }
        let (client, api, in_progress) = (client.clone(), api.clone(), in_progress.clone());
        tokio::spawn(async move {
            empty_and_finalize(&client, &api, &name).await;
            in_progress.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&name);
        });
    }
}

async fn empty_and_finalize(client: &kube::Client, api: &ApiServer, name: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    loop {
        let mut remaining = 0;
        for def in api.registry().iter().filter(|def| def.namespaced && super::listable(def)) {
            let objects = super::dynamic_api(client, def, Some(name));
            let Ok(list) = objects.list_metadata(&ListParams::default()).await else { continue };
            for object in list.items {
                remaining += 1;
                if object.metadata.deletion_timestamp.is_none() {
                    let _ = objects.delete(&object.name_any(), &DeleteParams::background()).await;
                }
            }
        }
        if remaining == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Remove our finalizer; the API server deletes the namespace once spec.finalizers is empty.
    for _attempt in 0..10 {
        let Ok(mut namespace) = namespaces.get(name).await else { return };
        if let Some(spec) = namespace.spec.as_mut() {
            spec.finalizers.get_or_insert_with(Vec::new).retain(|finalizer| finalizer != "kubernetes");
        }
        match namespaces.replace_subresource("finalize", name, &PostParams::default(), &namespace).await {
            Ok(_) => {
                tracing::info!(namespace = name, "namespace emptied and finalized");
                return;
            }
            Err(error) => {
                tracing::debug!(namespace = name, error = %error, "finalize failed; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}
