//! kube-rs, the Rust client most Rust controllers are built on, against a real `kaasd controller`: typed CRUD,
//! server-side apply and strategic merge patches, the runtime watcher, aggregated discovery and missing objects.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::entry::Entry;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client, Discovery};
use kube_client::start;
use serde_json::json;

#[path = "common/kube_client.rs"]
mod kube_client;

/// Every step of a test waits at most this long, so a server that never answers fails the test instead of hanging.
const STEP_TIMEOUT: Duration = Duration::from_secs(20);

async fn create_namespace(client: &Client, name: &str) {
    let namespace = Namespace { metadata: named(name), ..Namespace::default() };
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &namespace).await.expect("namespace created");
}

fn named(name: &str) -> kube::api::ObjectMeta {
    kube::api::ObjectMeta { name: Some(name.into()), ..Default::default() }
}

fn config_map(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: named(name),
        data: Some(data.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect()),
        ..ConfigMap::default()
    }
}

fn api_status(error: kube::Error) -> Box<kube::core::Status> {
    match error {
        kube::Error::Api(status) => status,
        other => panic!("expected an API error Status, got {other:?}"),
    }
}

fn container_images(deployment: &Deployment) -> BTreeMap<String, String> {
    let pod = deployment.spec.as_ref().and_then(|spec| spec.template.spec.as_ref()).expect("a pod template");
    pod.containers.iter().map(|c| (c.name.clone(), c.image.clone().unwrap_or_default())).collect()
}

#[tokio::test]
async fn config_maps_go_through_create_get_list_replace_patch_and_delete() {
    let (_controller, client) = start().await;
    create_namespace(&client, "crud").await;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "crud");

    let created =
        config_maps.create(&PostParams::default(), &config_map("settings", &[("mode", "fast")])).await.unwrap();
    let uid = created.metadata.uid.clone().expect("a uid");
    assert!(created.metadata.resource_version.is_some());
    assert_eq!(created.metadata.namespace.as_deref(), Some("crud"));

    let error = config_maps.create(&PostParams::default(), &config_map("settings", &[])).await.unwrap_err();
    let status = api_status(error);
    assert!(status.is_already_exists(), "{status:?}");
    assert_eq!(status.code, 409);

    let mut fetched = config_maps.get("settings").await.unwrap();
    assert_eq!(fetched.metadata.uid.as_deref(), Some(uid.as_str()));
    fetched.data.get_or_insert_with(BTreeMap::new).insert("mode".into(), "safe".into());
    let replaced = config_maps.replace("settings", &PostParams::default(), &fetched).await.unwrap();
    assert_eq!(replaced.data.as_ref().and_then(|data| data.get("mode")).map(String::as_str), Some("safe"));

    // The object `fetched` still carries the old resourceVersion: replacing with it again is a conflict.
    let status = api_status(config_maps.replace("settings", &PostParams::default(), &fetched).await.unwrap_err());
    assert!(status.is_conflict(), "{status:?}");

    let merged = config_maps
        .patch("settings", &PatchParams::default(), &Patch::Merge(json!({"data": {"extra": "yes"}})))
        .await
        .unwrap();
    let data = merged.data.expect("data");
    assert_eq!(data.get("mode").map(String::as_str), Some("safe"));
    assert_eq!(data.get("extra").map(String::as_str), Some("yes"));

    config_maps.create(&PostParams::default(), &config_map("other", &[])).await.unwrap();
    let listed = config_maps.list(&ListParams::default().fields("metadata.name=settings")).await.unwrap();
    let names: Vec<_> = listed.items.iter().filter_map(|item| item.metadata.name.as_deref()).collect();
    assert_eq!(names, ["settings"]);
    let page = config_maps.list(&ListParams::default().limit(1)).await.unwrap();
    assert_eq!(page.items.len(), 1);
    assert!(page.metadata.continue_.is_some(), "a limited list that has more hands out a continue token");

    config_maps.delete("settings", &DeleteParams::default()).await.unwrap();
    assert!(config_maps.get_opt("settings").await.unwrap().is_none());
    let status = api_status(config_maps.get("settings").await.unwrap_err());
    assert!(status.is_not_found(), "{status:?}");
    assert_eq!(status.code, 404);
}

#[tokio::test]
async fn entry_creates_a_missing_object_and_modifies_an_existing_one() {
    let (_controller, client) = start().await;
    create_namespace(&client, "entries").await;
    let config_maps: Api<ConfigMap> = Api::namespaced(client, "entries");

    let entry = config_maps.entry("lazy").await.unwrap();
    assert!(entry.get().is_none(), "a missing object is a vacant entry, not an error");
    let mut occupied = entry.or_insert(|| config_map("lazy", &[("count", "1")]));
    occupied.commit(&PostParams::default()).await.unwrap();
    let created_version = occupied.get().metadata.resource_version.clone();
    assert!(created_version.is_some(), "commit stores the object the server returned");

    let mut entry = config_maps.entry("lazy").await.unwrap().and_modify(|cm| {
        cm.data.get_or_insert_with(BTreeMap::new).insert("count".into(), "2".into());
    });
    let Entry::Occupied(occupied) = &mut entry else { panic!("the object exists now") };
    occupied.commit(&PostParams::default()).await.unwrap();
    assert_ne!(occupied.get().metadata.resource_version, created_version);
    let stored = config_maps.get("lazy").await.unwrap();
    assert_eq!(stored.data.and_then(|data| data.get("count").cloned()).as_deref(), Some("2"));
}

#[tokio::test]
async fn deployments_take_server_side_apply_and_strategic_merge_patches() {
    let (_controller, client) = start().await;
    create_namespace(&client, "apply").await;
    let deployments: Api<Deployment> = Api::namespaced(client, "apply");
    let manifest = |image: &str, replicas: i32| {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [
                        {"name": "web", "image": image},
                        {"name": "sidecar", "image": "busybox:1.36", "command": ["sleep", "infinity"]},
                    ]},
                },
            },
        })
    };
    let apply = PatchParams::apply("kaasd-e2e").force();

    let created = deployments.patch("web", &apply, &Patch::Apply(manifest("nginx:1.27", 2))).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    let managers: Vec<_> = created
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .map(|entry| (entry.manager.clone().unwrap_or_default(), entry.operation.clone().unwrap_or_default()))
        .collect();
    assert_eq!(managers, [("kaasd-e2e".to_string(), "Apply".to_string())]);
    let strategy = created.spec.as_ref().and_then(|spec| spec.strategy.as_ref()).and_then(|s| s.type_.clone());
    assert_eq!(strategy.as_deref(), Some("RollingUpdate"), "an applied object is defaulted");

    let reapplied = deployments.patch("web", &apply, &Patch::Apply(manifest("nginx:1.27", 2))).await.unwrap();
    assert_eq!(reapplied.metadata.resource_version, created.metadata.resource_version, "an unchanged apply is a no-op");

    let scaled = deployments.patch("web", &apply, &Patch::Apply(manifest("nginx:1.27", 4))).await.unwrap();
    assert_eq!(scaled.spec.as_ref().and_then(|spec| spec.replicas), Some(4));
    assert_eq!(scaled.metadata.generation, Some(2));

    // Strategic merge: containers merge by name, so the sidecar stays while web gets a new image.
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.28"}]}}}});
    let patched = deployments.patch("web", &PatchParams::default(), &Patch::Strategic(patch)).await.unwrap();
    let images = container_images(&patched);
    assert_eq!(images.get("web").map(String::as_str), Some("nginx:1.28"));
    assert_eq!(images.get("sidecar").map(String::as_str), Some("busybox:1.36"));
    assert_eq!(patched.metadata.generation, Some(3));

    // The strategic patch took the image from the applier; applying the old image without force conflicts.
    let without_force = PatchParams::apply("kaasd-e2e");
    let status = api_status(
        deployments.patch("web", &without_force, &Patch::Apply(manifest("nginx:1.27", 4))).await.unwrap_err(),
    );
    assert!(status.is_conflict(), "{status:?}");
    assert!(status.message.contains(".spec.template.spec.containers[name=\"web\"].image"), "{}", status.message);

    let dry = deployments
        .patch("web", &PatchParams::apply("kaasd-e2e").force().dry_run(), &Patch::Apply(manifest("nginx:1.29", 1)))
        .await
        .unwrap();
    assert_eq!(container_images(&dry).get("web").map(String::as_str), Some("nginx:1.29"));
    let stored = deployments.get("web").await.unwrap();
    assert_eq!(container_images(&stored).get("web").map(String::as_str), Some("nginx:1.28"), "dry run stores nothing");
}

#[tokio::test]
async fn the_runtime_watcher_sees_an_object_created_after_it_started() {
    let (_controller, client) = start().await;
    create_namespace(&client, "watched").await;
    let config_maps: Api<ConfigMap> = Api::namespaced(client, "watched");
    config_maps.create(&PostParams::default(), &config_map("before", &[])).await.unwrap();

    let mut events = watcher(config_maps.clone(), watcher::Config::default().labels("e2e=yes")).boxed();
    let mut initial = Vec::new();
    loop {
        let event = tokio::time::timeout(STEP_TIMEOUT, events.try_next()).await.expect("the watcher lists in time");
        match event.expect("the watcher runs").expect("the stream goes on") {
            watcher::Event::Init => {}
            watcher::Event::InitApply(object) => initial.push(object.metadata.name.unwrap_or_default()),
            watcher::Event::InitDone => break,
            other => panic!("unexpected event before the initial list finished: {other:?}"),
        }
    }
    assert!(initial.is_empty(), "the label selector matches nothing yet: {initial:?}");

    let mut labelled = config_map("after", &[("k", "v")]);
    labelled.metadata.labels = Some(BTreeMap::from([("e2e".into(), "yes".into())]));
    config_maps.create(&PostParams::default(), &labelled).await.unwrap();

    let event = tokio::time::timeout(STEP_TIMEOUT, events.try_next())
        .await
        .expect("the watcher reports the new object in time")
        .expect("the watcher runs")
        .expect("the stream goes on");
    match event {
        watcher::Event::Apply(object) => assert_eq!(object.metadata.name.as_deref(), Some("after")),
        other => panic!("expected the new object, got {other:?}"),
    }

    config_maps.delete("after", &DeleteParams::default()).await.unwrap();
    let event = tokio::time::timeout(STEP_TIMEOUT, events.try_next())
        .await
        .expect("the watcher reports the deletion in time")
        .expect("the watcher runs")
        .expect("the stream goes on");
    match event {
        watcher::Event::Delete(object) => assert_eq!(object.metadata.name.as_deref(), Some("after")),
        other => panic!("expected the deletion, got {other:?}"),
    }
}

#[tokio::test]
async fn aggregated_discovery_finds_deployments_with_their_scale_subresource() {
    let (_controller, client) = start().await;
    let discovery = tokio::time::timeout(STEP_TIMEOUT, Discovery::new(client.clone()).run_aggregated())
        .await
        .expect("discovery answers in time")
        .expect("the server serves aggregated discovery");

    assert!(discovery.has_group(""), "the core group is discovered");
    let core = discovery.get("").expect("the core group");
    let (config_maps, capabilities) = core.recommended_kind("ConfigMap").expect("ConfigMap is discovered");
    assert_eq!(config_maps.plural, "configmaps");
    assert!(capabilities.supports_operation("watch"));

    let apps = discovery.get("apps").expect("the apps group is discovered");
    assert_eq!(apps.preferred_version_or_latest(), "v1");
    let (resource, capabilities) = apps.recommended_kind("Deployment").expect("Deployment is discovered");
    assert_eq!((resource.group.as_str(), resource.version.as_str()), ("apps", "v1"));
    assert_eq!(resource.plural, "deployments");
    assert_eq!(capabilities.scope, kube::discovery::Scope::Namespaced);
    for verb in ["create", "get", "list", "watch", "patch", "update", "delete", "deletecollection"] {
        assert!(capabilities.supports_operation(verb), "deployments support {verb}: {:?}", capabilities.operations);
    }
    let subresources: Vec<_> = capabilities.subresources.iter().map(|(resource, _)| resource.plural.as_str()).collect();
    assert!(subresources.contains(&"scale"), "deployments have a scale subresource: {subresources:?}");
    assert!(subresources.contains(&"status"), "deployments have a status subresource: {subresources:?}");
    let (scale, scale_capabilities) =
        capabilities.subresources.iter().find(|(resource, _)| resource.plural == "scale").unwrap();
    assert_eq!(scale.kind, "Scale");
    for verb in ["get", "patch", "update"] {
        assert!(scale_capabilities.supports_operation(verb), "scale supports {verb}");
    }

    // kube-rs files subresources under their parent's group; the document itself names autoscaling/v1 Scale.
    let document = client.list_api_groups_aggregated().await.expect("the aggregated /apis document");
    let apps = document
        .items
        .iter()
        .find(|group| group.metadata.as_ref().and_then(|meta| meta.name.as_deref()) == Some("apps"))
        .expect("apps in /apis");
    let v1 = apps.versions.iter().find(|version| version.version.as_deref() == Some("v1")).expect("apps/v1");
    let deployments =
        v1.resources.iter().find(|r| r.resource.as_deref() == Some("deployments")).expect("deployments in apps/v1");
    let scale = deployments
        .subresources
        .iter()
        .find(|sub| sub.subresource.as_deref() == Some("scale"))
        .and_then(|sub| sub.response_kind.as_ref())
        .expect("the scale subresource names its kind");
    assert_eq!(
        (scale.group.as_deref(), scale.version.as_deref(), scale.kind.as_deref()),
        (Some("autoscaling"), Some("v1"), Some("Scale"))
    );
}

#[tokio::test]
async fn lists_stream_page_by_page() {
    let (_controller, client) = start().await;
    create_namespace(&client, "pages").await;
    let config_maps: Api<ConfigMap> = Api::namespaced(client, "pages");
    for index in 0..5 {
        let mut object = config_map(&format!("c-{index}"), &[]);
        object.metadata.labels = Some(BTreeMap::from([("page".into(), "yes".into())]));
        config_maps.create(&PostParams::default(), &object).await.unwrap();
    }
    let mut names = Vec::new();
    let mut params = ListParams::default().labels("page=yes").limit(2);
    loop {
        let page = config_maps.list(&params).await.unwrap();
        names.extend(page.items.into_iter().filter_map(|item| item.metadata.name));
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => break,
        }
    }
    assert_eq!(names, ["c-0", "c-1", "c-2", "c-3", "c-4"]);
}
