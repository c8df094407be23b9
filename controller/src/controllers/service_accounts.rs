//! Every active namespace gets a `default` ServiceAccount and the `kube-root-ca.crt` ConfigMap (the cluster CA, which
//! pods use to trust the API server). Recreated when deleted (the ConfigMap at once, through a watch on it; the
//! account at the next pass, every 30 s); the ConfigMap is corrected at once when edited.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use kube::api::{ObjectMeta, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, ResourceExt};

const ROOT_CA: &str = "kube-root-ca.crt";

pub async fn run(client: kube::Client, ca_pem: String) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    // Namespace events drive the work; a periodic pass restores objects someone deleted.
    let mut events = watcher(namespaces.clone(), watcher::Config::default()).applied_objects().boxed();
    // An edited or deleted kube-root-ca.crt is put right at once, as upstream's root CA publisher does.
    let root_cas: Api<ConfigMap> = Api::all(client.clone());
    let by_name = watcher::Config::default().fields(&format!("metadata.name={ROOT_CA}"));
    let mut root_ca_changes = watcher(root_cas, by_name).touched_objects().boxed();
    let mut resync = tokio::time::interval(Duration::from_secs(30));
    loop {
        tokio::select! {
            change = root_ca_changes.next() => match change {
                Some(Ok(config_map)) => {
                    let namespace = config_map.namespace().unwrap_or_default();
                    if let Ok(Some(namespace)) = namespaces.get_opt(&namespace).await {
                        ensure(&client, &namespace, &ca_pem).await;
                    }
                }
                Some(Err(error)) => {
                    tracing::debug!(error = %error, "kube-root-ca.crt watch restarts");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                None => return,
            },
            event = events.next() => match event {
                Some(Ok(namespace)) => ensure(&client, &namespace, &ca_pem).await,
                Some(Err(error)) => {
                    tracing::debug!(error = %error, "namespace watch restarts");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                None => return,
            },
            _ = resync.tick() => {
                if let Ok(list) = namespaces.list(&Default::default()).await {
                    for namespace in list.items {
                        ensure(&client, &namespace, &ca_pem).await;
                    }
                }
            }
        }
    }
}

async fn ensure(client: &kube::Client, namespace: &Namespace, ca_pem: &str) {
    if namespace.metadata.deletion_timestamp.is_some() {
        return;
    }
    let name = namespace.name_any();
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &name);
    if matches!(accounts.get_opt("default").await, Ok(None)) {
        let account = ServiceAccount {
            metadata: ObjectMeta { name: Some("default".into()), ..ObjectMeta::default() },
            ..ServiceAccount::default()
        };
        let _ = accounts.create(&PostParams::default(), &account).await;
    }
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &name);
    let wanted = BTreeMap::from([("ca.crt".to_string(), ca_pem.to_string())]);
    match config_maps.get_opt(ROOT_CA).await {
        Ok(None) => {
            let config_map = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(ROOT_CA.into()),
                    annotations: Some(BTreeMap::from([(
                        "kubernetes.io/description".to_string(),
                        "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.".to_string(),
                    )])),
                    ..ObjectMeta::default()
                },
                data: Some(wanted),
                ..ConfigMap::default()
            };
            let _ = config_maps.create(&PostParams::default(), &config_map).await;
        }
        Ok(Some(mut existing)) if existing.data.as_ref() != Some(&wanted) => {
            existing.data = Some(wanted);
            let _ = config_maps.replace(ROOT_CA, &PostParams::default(), &existing).await;
        }
        _ => {}
    }
}
