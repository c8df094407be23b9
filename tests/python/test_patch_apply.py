"""The three classic patch types and server-side apply, as the Python client sends them."""

import json

import pytest
from kubernetes import client
from kubernetes.client import ApiException
from kubernetes.dynamic import DynamicClient

APPLY = "application/apply-patch+yaml"


# Drops the tier label and names only the web container, with a new image.
NEW_WEB_IMAGE_WITHOUT_TIER = {
    "metadata": {"labels": {"tier": None}},
    "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.28"}]}}},
}


def two_container_deployment(name):
    labels = {"app": name}
    containers = [
        client.V1Container(name="web", image="nginx:1.27"),
        client.V1Container(name="sidecar", image="busybox:1.36", command=["sleep", "infinity"]),
    ]
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name, labels={"app": name, "tier": "front"}),
        spec=client.V1DeploymentSpec(
            replicas=1,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels), spec=client.V1PodSpec(containers=containers)
            ),
        ),
    )


def container_images(deployment):
    return {container.name: container.image for container in deployment.spec.template.spec.containers}


def apply(api_client, path, body, field_manager="alice", force=None, dry_run=None):
    """A server-side apply request; the body is JSON, which is YAML too."""
    query = []
    if field_manager is not None:
        query.append(("fieldManager", field_manager))
    if force is not None:
        query.append(("force", "true" if force else "false"))
    if dry_run:
        query.append(("dryRun", dry_run))
    return api_client.call_api(
        path,
        "PATCH",
        query_params=query,
        header_params={"Content-Type": APPLY, "Accept": "application/json"},
        body=body,
        response_type="object",
        auth_settings=["BearerToken"],
        _return_http_data_only=True,
    )


def managers(obj):
    return {(entry["manager"], entry["operation"]): entry for entry in obj["metadata"].get("managedFields", [])}


def test_json_patch_replaces_adds_and_fails_atomically(apps, namespace):
    apps.create_namespaced_deployment(namespace, two_container_deployment("web"))
    # A list body makes the client send application/json-patch+json.
    patched = apps.patch_namespaced_deployment(
        "web",
        namespace,
        [
            {"op": "replace", "path": "/spec/replicas", "value": 3},
            {"op": "add", "path": "/metadata/labels/release", "value": "blue"},
            {"op": "remove", "path": "/spec/template/spec/containers/1"},
        ],
    )
    assert patched.spec.replicas == 3
    assert patched.metadata.labels["release"] == "blue"
    assert list(container_images(patched)) == ["web"]

    with pytest.raises(ApiException) as error:
        apps.patch_namespaced_deployment(
            "web",
            namespace,
            [
                {"op": "replace", "path": "/spec/replicas", "value": 9},
                {"op": "test", "path": "/metadata/labels/release", "value": "green"},
            ],
        )
    assert error.value.status == 422, "a failed test operation is unprocessable"
    assert apps.read_namespaced_deployment("web", namespace).spec.replicas == 3, "nothing of a failed patch applies"


def test_strategic_merge_patch_merges_containers_by_name(apps, namespace):
    apps.create_namespaced_deployment(namespace, two_container_deployment("web"))
    # A dict body makes the client send application/strategic-merge-patch+json.
    patched = apps.patch_namespaced_deployment(
        "web",
        namespace,
        NEW_WEB_IMAGE_WITHOUT_TIER,
    )
    assert container_images(patched) == {"web": "nginx:1.28", "sidecar": "busybox:1.36"}
    assert "tier" not in patched.metadata.labels
    assert patched.metadata.generation == 2

    patched = apps.patch_namespaced_deployment(
        "web",
        namespace,
        {"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}}},
    )
    assert container_images(patched) == {"web": "nginx:1.28"}


def test_merge_patch_replaces_lists_whole(client_with_content_type, apps, namespace):
    apps.create_namespaced_deployment(namespace, two_container_deployment("web"))
    merging = client.AppsV1Api(client_with_content_type("application/merge-patch+json"))
    patched = merging.patch_namespaced_deployment(
        "web",
        namespace,
        NEW_WEB_IMAGE_WITHOUT_TIER,
    )
    assert container_images(patched) == {"web": "nginx:1.28"}, "a merge patch replaces the whole list"
    assert "tier" not in patched.metadata.labels
    # The container the patch rewrote still gets its defaults.
    assert patched.spec.template.spec.containers[0].image_pull_policy == "IfNotPresent"


def test_patch_with_an_unknown_content_type_is_unsupported(client_with_content_type, core, namespace):
    core.create_namespaced_config_map(namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="plain")))
    odd = client.CoreV1Api(client_with_content_type("application/json"))
    with pytest.raises(ApiException) as error:
        odd.patch_namespaced_config_map("plain", namespace, {"data": {"a": "b"}})
    assert error.value.status == 415


def test_server_side_apply_creates_tracks_owners_conflicts_and_forces(api_client, core, namespace):
    path = f"/api/v1/namespaces/{namespace}/configmaps/owned"
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owned"}, "data": {"a": "1", "b": "2"}}
    created = apply(api_client, path, body)
    assert created["data"] == {"a": "1", "b": "2"}
    entry = managers(created)[("alice", "Apply")]
    assert entry["fieldsType"] == "FieldsV1"
    assert entry["fieldsV1"]["f:data"] == {"f:a": {}, "f:b": {}}

    claim = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owned"}, "data": {"a": "changed"}}
    with pytest.raises(ApiException) as error:
        apply(api_client, path, claim, field_manager="bob")
    assert error.value.status == 409
    status = json.loads(error.value.body)
    assert status["reason"] == "Conflict"
    assert status["message"] == 'Apply failed with 1 conflict: conflict with "alice": .data.a'
    assert status["details"]["causes"] == [
        {"reason": "FieldManagerConflict", "message": 'conflict with "alice"', "field": ".data.a"}
    ]
    assert core.read_namespaced_config_map("owned", namespace).data == {"a": "1", "b": "2"}

    forced = apply(api_client, path, claim, field_manager="bob", force=True)
    assert forced["data"] == {"a": "changed", "b": "2"}
    owners = managers(forced)
    assert owners[("bob", "Apply")]["fieldsV1"]["f:data"] == {"f:a": {}}
    assert owners[("alice", "Apply")]["fieldsV1"]["f:data"] == {"f:b": {}}, "alice lost .data.a to bob"

    # Applying without a field one owns alone removes it; fields another manager owns stay.
    dropped = apply(api_client, path, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owned"}})
    assert dropped["data"] == {"a": "changed"}


def test_server_side_apply_without_a_field_manager_is_invalid(api_client, namespace):
    path = f"/api/v1/namespaces/{namespace}/configmaps/applied"
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"a": "1"}}
    with pytest.raises(ApiException) as error:
        apply(api_client, path, body, field_manager=None)
    # Upstream validates the PatchOptions and answers 422 Invalid naming the field.
    assert error.value.status == 422
    status = json.loads(error.value.body)
    assert status["reason"] == "Invalid"
    assert "fieldManager: Required value" in status["message"]


def test_server_side_apply_honours_dry_run(api_client, core, namespace):
    path = f"/api/v1/namespaces/{namespace}/configmaps/applied"
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"a": "1"}}
    preview = apply(api_client, path, body, dry_run="All")
    assert preview["data"] == {"a": "1"}
    with pytest.raises(ApiException) as error:
        core.read_namespaced_config_map("applied", namespace)
    assert error.value.status == 404


def test_server_side_apply_of_a_deployment_through_the_dynamic_client(api_client, apps, namespace, tmp_path):
    dynamic = DynamicClient(api_client, cache_file=str(tmp_path / "discovery.json"))
    deployments = dynamic.resources.get(api_version="apps/v1", kind="Deployment")
    manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "applied", "namespace": namespace},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "applied"}},
            "template": {
                "metadata": {"labels": {"app": "applied"}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}]},
            },
        },
    }
    created = deployments.server_side_apply(body=manifest, namespace=namespace, field_manager="deployer")
    assert created.metadata.generation == 1
    assert created.spec.strategy.type == "RollingUpdate", "applied objects are defaulted like created ones"

    # Another manager takes replicas through an ordinary update, as an autoscaler would.
    apps.patch_namespaced_deployment_scale("applied", namespace, {"spec": {"replicas": 5}}, field_manager="scaler")

    manifest["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:1.28"
    with pytest.raises(ApiException) as error:
        deployments.server_side_apply(body=manifest, namespace=namespace, field_manager="deployer")
    assert error.value.status == 409
    assert 'conflict with "scaler"' in json.loads(error.value.body)["message"]

    del manifest["spec"]["replicas"]
    updated = deployments.server_side_apply(body=manifest, namespace=namespace, field_manager="deployer")
    assert updated.spec.replicas == 5, "the scaler keeps replicas once the deployer stops claiming them"
    assert updated.spec.template.spec.containers[0].image == "nginx:1.28"
    assert updated.metadata.generation == 3

    forced = deployments.server_side_apply(
        body={**manifest, "spec": {**manifest["spec"], "replicas": 1}},
        namespace=namespace,
        field_manager="deployer",
        force_conflicts=True,
    )
    assert forced.spec.replicas == 1
