"""Create, read, replace and delete through the typed APIs, and the errors a client must be able to tell apart."""

import json

import pytest
from kubernetes import client
from kubernetes.client import ApiException


def config_map(name, data=None, labels=None):
    return client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name, labels=labels), data=data)


def deployment(name, image="nginx:1.27", replicas=2):
    labels = {"app": name}
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[client.V1Container(name="web", image=image)]),
            ),
        ),
    )


def status_of(error):
    """The `Status` object the server sent with an error response."""
    return json.loads(error.body)


def test_config_map_create_read_replace_list_delete(core, namespace):
    created = core.create_namespaced_config_map(namespace, config_map("settings", {"mode": "fast"}))
    assert created.metadata.uid
    assert created.metadata.resource_version
    assert created.metadata.creation_timestamp is not None
    assert created.metadata.namespace == namespace
    assert created.data == {"mode": "fast"}

    read = core.read_namespaced_config_map("settings", namespace)
    assert read.metadata.uid == created.metadata.uid
    assert read.metadata.resource_version == created.metadata.resource_version

    read.data["mode"] = "safe"
    read.data["extra"] = "yes"
    replaced = core.replace_namespaced_config_map("settings", namespace, read)
    assert replaced.data == {"mode": "safe", "extra": "yes"}
    assert replaced.metadata.uid == created.metadata.uid
    assert int(replaced.metadata.resource_version) > int(created.metadata.resource_version)

    listed = core.list_namespaced_config_map(namespace, field_selector="metadata.name=settings")
    assert [item.metadata.name for item in listed.items] == ["settings"]
    assert listed.items[0].data == {"mode": "safe", "extra": "yes"}
    assert int(listed.metadata.resource_version) >= int(replaced.metadata.resource_version)

    deleted = core.delete_namespaced_config_map("settings", namespace)
    assert deleted.status == "Success"
    assert deleted.details.name == "settings"
    assert deleted.details.kind == "configmaps"
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_config_map("settings", namespace)
    assert missing.value.status == 404


def test_delete_reports_the_uid_of_what_it_deleted(core, namespace):
    # Upstream puts the uid into the Status so a client can tell which incarnation of a name went away.
    created = core.create_namespaced_config_map(namespace, config_map("short-lived"))
    deleted = core.delete_namespaced_config_map("short-lived", namespace)
    assert deleted.details.uid == created.metadata.uid


def test_deployment_create_defaults_replace_scale_delete(apps, namespace):
    created = apps.create_namespaced_deployment(namespace, deployment("web"))
    assert created.metadata.generation == 1
    spec = created.spec
    # Defaults the server fills in, as upstream's apps/v1 defaulting does.
    assert spec.strategy.type == "RollingUpdate"
    assert spec.strategy.rolling_update.max_surge == "25%"
    assert spec.strategy.rolling_update.max_unavailable == "25%"
    assert spec.revision_history_limit == 10
    assert spec.progress_deadline_seconds == 600
    pod = spec.template.spec
    assert pod.restart_policy == "Always"
    assert pod.dns_policy == "ClusterFirst"
    assert pod.termination_grace_period_seconds == 30
    assert pod.containers[0].image_pull_policy == "IfNotPresent"
    assert pod.containers[0].termination_message_path == "/dev/termination-log"

    # The deployment controller writes the object too (status, the revision annotation), so a read-modify-replace
    # can meet a newer resourceVersion: read again and retry, as client-go's RetryOnConflict does.
    for attempt in range(10):
        current = apps.read_namespaced_deployment("web", namespace)
        current.spec.template.spec.containers[0].image = "nginx:1.28"
        try:
            replaced = apps.replace_namespaced_deployment("web", namespace, current)
            break
        except ApiException as error:
            if error.status != 409 or attempt == 9:
                raise
    assert replaced.metadata.generation == 2, "a spec change bumps the generation"
    assert replaced.spec.template.spec.containers[0].image == "nginx:1.28"

    scale = apps.read_namespaced_deployment_scale("web", namespace)
    assert scale.spec.replicas == 2
    apps.patch_namespaced_deployment_scale("web", namespace, {"spec": {"replicas": 4}})
    assert apps.read_namespaced_deployment("web", namespace).spec.replicas == 4

    status = apps.read_namespaced_deployment_status("web", namespace)
    assert status.metadata.name == "web"

    deleted = apps.delete_namespaced_deployment("web", namespace)
    assert deleted.status == "Success"
    with pytest.raises(ApiException) as missing:
        apps.read_namespaced_deployment("web", namespace)
    assert missing.value.status == 404


def test_service_create_allocates_a_cluster_ip_and_keeps_it_on_replace(core, namespace):
    service = client.V1Service(
        metadata=client.V1ObjectMeta(name="web"),
        spec=client.V1ServiceSpec(selector={"app": "web"}, ports=[client.V1ServicePort(name="http", port=80)]),
    )
    created = core.create_namespaced_service(namespace, service)
    spec = created.spec
    assert spec.type == "ClusterIP"
    assert spec.cluster_ip and spec.cluster_ip != "None"
    assert spec.cluster_i_ps == [spec.cluster_ip]
    assert spec.ports[0].protocol == "TCP"
    assert spec.ports[0].target_port == 80, "targetPort defaults to port"
    assert spec.session_affinity == "None"
    assert spec.ip_families == ["IPv4"]
    assert spec.ip_family_policy == "SingleStack"

    current = core.read_namespaced_service("web", namespace)
    current.spec.ports[0].port = 8080
    current.spec.ports[0].target_port = 8080
    replaced = core.replace_namespaced_service("web", namespace, current)
    assert replaced.spec.ports[0].port == 8080
    assert replaced.spec.cluster_ip == spec.cluster_ip

    listed = core.list_namespaced_service(namespace)
    assert [item.metadata.name for item in listed.items] == ["web"]

    core.delete_namespaced_service("web", namespace)
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_service("web", namespace)
    assert missing.value.status == 404


def test_creating_an_existing_name_is_already_exists(core, namespace):
    core.create_namespaced_config_map(namespace, config_map("twice"))
    with pytest.raises(ApiException) as error:
        core.create_namespaced_config_map(namespace, config_map("twice"))
    assert error.value.status == 409
    status = status_of(error.value)
    assert status["kind"] == "Status"
    assert status["reason"] == "AlreadyExists"
    assert status["details"] == {"name": "twice", "kind": "configmaps"}
    assert status["message"] == 'configmaps "twice" already exists'


def test_missing_objects_are_not_found_for_read_replace_patch_and_delete(core, namespace):
    calls = {
        "read": lambda: core.read_namespaced_config_map("ghost", namespace),
        "replace": lambda: core.replace_namespaced_config_map("ghost", namespace, config_map("ghost")),
        "patch": lambda: core.patch_namespaced_config_map("ghost", namespace, {"data": {"a": "b"}}),
        "delete": lambda: core.delete_namespaced_config_map("ghost", namespace),
    }
    for verb, call in calls.items():
        with pytest.raises(ApiException) as error:
            call()
        assert error.value.status == 404, verb
        status = status_of(error.value)
        assert status["reason"] == "NotFound", verb
        assert status["message"] == 'configmaps "ghost" not found', verb
        assert status["details"] == {"name": "ghost", "kind": "configmaps"}, verb


def test_creating_in_a_missing_namespace_is_not_found(core):
    with pytest.raises(ApiException) as error:
        core.create_namespaced_config_map("no-such-namespace", config_map("orphan"))
    assert error.value.status == 404
    assert status_of(error.value)["message"] == 'namespaces "no-such-namespace" not found'


def test_replacing_with_a_stale_resource_version_is_a_conflict(core, apps, namespace):
    core.create_namespaced_config_map(namespace, config_map("contended", {"n": "0"}))
    stale = core.read_namespaced_config_map("contended", namespace)
    fresh = core.read_namespaced_config_map("contended", namespace)
    fresh.data["n"] = "1"
    core.replace_namespaced_config_map("contended", namespace, fresh)

    stale.data["n"] = "2"
    with pytest.raises(ApiException) as error:
        core.replace_namespaced_config_map("contended", namespace, stale)
    assert error.value.status == 409
    status = status_of(error.value)
    assert status["reason"] == "Conflict"
    assert status["message"] == (
        'Operation cannot be fulfilled on configmaps "contended": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )
    assert core.read_namespaced_config_map("contended", namespace).data == {"n": "1"}

    apps.create_namespaced_deployment(namespace, deployment("contended"))
    stale_deployment = apps.read_namespaced_deployment("contended", namespace)
    apps.patch_namespaced_deployment("contended", namespace, {"spec": {"replicas": 3}})
    stale_deployment.spec.replicas = 5
    with pytest.raises(ApiException) as error:
        apps.replace_namespaced_deployment("contended", namespace, stale_deployment)
    assert error.value.status == 409
    assert status_of(error.value)["reason"] == "Conflict"


def test_dry_run_create_replace_and_delete_store_nothing(core, namespace):
    preview = core.create_namespaced_config_map(namespace, config_map("dry", {"a": "1"}), dry_run="All")
    assert preview.metadata.name == "dry"
    assert preview.data == {"a": "1"}
    assert not preview.metadata.resource_version, "nothing was stored, so there is no resourceVersion"
    with pytest.raises(ApiException) as error:
        core.read_namespaced_config_map("dry", namespace)
    assert error.value.status == 404

    stored = core.create_namespaced_config_map(namespace, config_map("dry", {"a": "1"}))
    stored.data["a"] = "2"
    preview = core.replace_namespaced_config_map("dry", namespace, stored, dry_run="All")
    assert preview.data == {"a": "2"}
    unchanged = core.read_namespaced_config_map("dry", namespace)
    assert unchanged.data == {"a": "1"}
    assert unchanged.metadata.resource_version == stored.metadata.resource_version

    core.patch_namespaced_config_map("dry", namespace, {"data": {"a": "3"}}, dry_run="All")
    assert core.read_namespaced_config_map("dry", namespace).data == {"a": "1"}

    core.delete_namespaced_config_map("dry", namespace, dry_run="All")
    assert core.read_namespaced_config_map("dry", namespace).data == {"a": "1"}


def test_dry_run_create_of_an_existing_name_is_already_exists(core, namespace):
    core.create_namespaced_config_map(namespace, config_map("taken", {"a": "1"}))
    with pytest.raises(ApiException) as error:
        core.create_namespaced_config_map(namespace, config_map("taken"), dry_run="All")
    assert error.value.status == 409, "a dry run reports what the real request would"
    assert status_of(error.value)["reason"] == "AlreadyExists"
    assert core.read_namespaced_config_map("taken", namespace).data == {"a": "1"}


def raw(api_client, method, path, body=None, content_type="application/json", accept="application/json", query=None):
    """One request; the urllib3 response, so that its status and headers can be read. Errors are not raised."""
    try:
        return api_client.call_api(
            path,
            method,
            query_params=query or [],
            header_params={"Content-Type": content_type, "Accept": accept},
            body=body,
            auth_settings=["BearerToken"],
            _preload_content=False,
            _return_http_data_only=True,
        )
    except ApiException as error:
        return error


def test_autoscaling_v1_checks_its_own_fields_and_answers_tables_and_warnings_in_v1(api_client, namespace):
    """autoscaling/v1 is stored as autoscaling/v2. What v1 has no field for must be refused or warned about, not
    dropped by the conversion; Tables carrying objects and every write answer speak v1."""
    path = f"/apis/autoscaling/v1/namespaces/{namespace}/horizontalpodautoscalers"
    autoscaler = {
        "apiVersion": "autoscaling/v1",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "maxReplicas": 3,
            "targetCPUUtilizationPercentage": 50,
            "bogus": 1,
        },
    }
    refused = raw(api_client, "POST", path, autoscaler, query=[("fieldValidation", "Strict")])
    assert refused.status == 400, refused
    assert 'unknown field "spec.bogus"' in status_of(refused)["message"]

    warned = raw(api_client, "POST", path, autoscaler, query=[("fieldValidation", "Warn")])
    assert warned.status == 201, warned
    assert 'unknown field \\"spec.bogus\\"' in warned.headers.get("Warning", ""), warned.headers
    created = json.loads(warned.data)
    assert created["apiVersion"] == "autoscaling/v1"
    assert "bogus" not in created["spec"]

    # A body that is not an object, or whose metadata is not one, is a bad request (not a server error).
    for body in ([autoscaler], dict(autoscaler, metadata="web")):
        answer = raw(api_client, "POST", path, body)
        assert answer.status == 400, (body, answer)

    table = raw(
        api_client,
        "GET",
        path,
        accept="application/json;as=Table;v=v1;g=meta.k8s.io",
        query=[("includeObject", "Object")],
    )
    assert table.status == 200
    rows = json.loads(table.data)["rows"]
    assert [row["object"]["apiVersion"] for row in rows] == ["autoscaling/v1"]
    assert rows[0]["object"]["spec"]["targetCPUUtilizationPercentage"] == 50

    # v1's extra metrics travel in an annotation; in v2 they come before the cpu target, as upstream converts them.
    metric = [{"type": "Pods", "pods": {"metricName": "qps", "targetAverageValue": "10"}}]
    patched = raw(
        api_client,
        "PATCH",
        f"{path}/web",
        {"metadata": {"annotations": {"autoscaling.alpha.kubernetes.io/metrics": json.dumps(metric)}}},
        content_type="application/merge-patch+json",
    )
    assert patched.status == 200, patched
    v2 = json.loads(raw(api_client, "GET", f"/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers/web").data)
    assert [m["type"] for m in v2["spec"]["metrics"]] == ["Pods", "Resource"], v2["spec"]


def test_a_deployment_status_write_keeps_the_stored_labels(apps, api_client, namespace):
    """Upstream's deployment status strategy resets labels as well as the spec; annotations sent with the status
    are kept."""
    apps.create_namespaced_deployment(namespace, deployment("web"))
    patch = {"metadata": {"labels": {"added": "yes"}, "annotations": {"noted": "yes"}}, "status": {"replicas": 0}}
    answer = raw(
        api_client,
        "PATCH",
        f"/apis/apps/v1/namespaces/{namespace}/deployments/web/status",
        patch,
        content_type="application/merge-patch+json",
    )
    assert answer.status == 200, answer
    stored = apps.read_namespaced_deployment("web", namespace)
    assert stored.metadata.labels == {"app": "web"}
    assert stored.metadata.annotations.get("noted") == "yes"


def test_a_pod_naming_a_missing_service_account_is_refused(core, namespace):
    """ServiceAccount admission: the account must exist (upstream's 403 and its words)."""
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="lost"),
        spec=client.V1PodSpec(
            service_account_name="nobody", containers=[client.V1Container(name="c", image="busybox")]
        ),
    )
    with pytest.raises(ApiException) as error:
        core.create_namespaced_pod(namespace, pod)
    assert error.value.status == 403
    assert status_of(error.value)["message"] == (
        f'pods "lost" is forbidden: error looking up service account {namespace}/nobody: '
        'serviceaccount "nobody" not found'
    )
