"""Kubernetes v1.33 conformance entries of sig-api-machinery and sig-auth about garbage collection, namespace deletion,
ResourceQuota usage, watches and the kube-root-ca.crt ConfigMap, reproduced with the official Python client.

The controller these tests run against has no nodes, so pods stay Pending; every step here works on pods that exist
without running (they are created, owned, counted by quotas and deleted). Where upstream sleeps to be sure something
does not happen (the garbage collector deleting orphans), these tests check the positive sign that the work is done
(the owner references removed) and then watch a short window for the unwanted event, as test_conformance.py does.
"""

import itertools

import pytest
from kubernetes import client
from kubernetes.client import ApiException

from test_conformance import (
    CONTROLLER_TIMEOUT,
    PAUSE_IMAGE,
    WatchStream,
    call,
    count_resource_quotas,
    expect_event,
    expect_no_event,
    new_test_resource_quota,
    quota_test_pod,
    random_suffix,
    retry_on_conflict,
    wait_for_default_service_account,
    wait_for_event,
    wait_for_quota_used,
    wait_until,
)

NGINX_IMAGE = "registry.k8s.io/e2e-test-images/nginx:1.14-4"


def is_not_found(error):
    return isinstance(error, ApiException) and error.status == 404


# ---------------------------------------------------------------------------------------------------------------------
# Garbage collector
# ---------------------------------------------------------------------------------------------------------------------

_label_counter = itertools.count(1)


def unique_labels(key, value):
    """getUniqLabel: a label whose key and value carry a process-wide counter."""
    count = next(_label_counter)
    return {f"{key}-{count:05d}": f"{value}-{count:05d}"}


def gc_pod_template(labels):
    """getPodTemplateSpec: one nginx container, no termination grace."""
    return client.V1PodTemplateSpec(
        metadata=client.V1ObjectMeta(labels=labels),
        spec=client.V1PodSpec(
            termination_grace_period_seconds=0,
            containers=[client.V1Container(name="nginx", image=NGINX_IMAGE)],
        ),
    )


def owner_rc(name, replicas, labels):
    """newOwnerRC."""
    return client.V1ReplicationController(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1ReplicationControllerSpec(replicas=replicas, selector=labels, template=gc_pod_template(labels)),
    )


# estimateMaximumPods(c, 10, 100): the cluster's allocatable pods, bounded below by 10. With no nodes that is 10.
MANY_REPLICAS = 10


def wait_for_rc_replicas(core, namespace, name, replicas):
    """waitForReplicas: status.replicas reaches spec.replicas (Pending pods count: they exist)."""

    def check():
        rc = core.read_namespaced_replication_controller(name, namespace)
        return rc.status.replicas == replicas, rc.status

    wait_until(check, f"ReplicationController {name} to have {replicas} replicas")


def remaining(core, apps, namespace):
    """verifyRemainingObjects: how many of each kind are left in the namespace."""
    return {
        "ReplicationControllers": len(core.list_namespaced_replication_controller(namespace).items),
        "Deployments": len(apps.list_namespaced_deployment(namespace).items),
        "ReplicaSets": len(apps.list_namespaced_replica_set(namespace).items),
        "Pods": len(core.list_namespaced_pod(namespace).items),
    }


def wait_for_remaining(core, apps, namespace, expected, timeout=CONTROLLER_TIMEOUT):
    def check():
        left = remaining(core, apps, namespace)
        return all(left[kind] == count for kind, count in expected.items()), left

    wait_until(check, f"the namespace to hold {expected}", timeout=timeout, interval=0.25)


def delete_with(api_client, path, policy, uid):
    """DELETE with a propagation policy and a UID precondition, as upstream's deletes; the raw answer (the object
    while finalizers hold it, or a Status)."""
    return call(api_client, "DELETE", path, {"propagationPolicy": policy, "preconditions": {"uid": uid}})


def test_garbage_collector_should_delete_pods_created_by_rc_when_not_orphaning(api_client, core, apps, namespace):
    """Garbage collector should delete pods created by rc when not orphaning.

    Upstream: test/e2e/apimachinery/garbage_collector.go. A ReplicationController of 2 is deleted with propagation
    Background (and a UID precondition) as soon as it has made a pod; the RC and all its pods must go. The pods stay
    Pending (no nodes), which does not matter to the garbage collector.
    """
    wait_for_default_service_account(core, namespace)
    name = "simpletest.rc"
    rc = core.create_namespaced_replication_controller(
        namespace, owner_rc(name, 2, unique_labels("gctest", "delete_pods"))
    )

    # Upstream deliberately does not wait for both pods: the RC may be deleted before it reaches its size.
    wait_until(
        lambda: (len(core.list_namespaced_pod(namespace).items) > 0, "no pods yet"),
        "the ReplicationController to create some pods",
    )

    delete_with(
        api_client, f"/api/v1/namespaces/{namespace}/replicationcontrollers/{name}", "Background", rc.metadata.uid
    )
    wait_for_remaining(core, apps, namespace, {"ReplicationControllers": 0, "Pods": 0})


def test_garbage_collector_should_orphan_pods_created_by_rc_if_delete_options_say_so(api_client, core, apps, namespace):
    """Garbage collector should orphan pods created by rc if delete options say so.

    Upstream: test/e2e/apimachinery/garbage_collector.go. A ReplicationController of 10 (upstream's lower bound;
    with no nodes its estimate is 10) is deleted with propagation Orphan once all its pods exist; the RC goes and all
    10 pods stay. Upstream sleeps 30 s before counting the pods; here the garbage collector's orphaning is seen to be
    finished (no pod still names the RC as owner, none is being deleted) and a watch then sees no pod deleted for
    half a second.
    """
    wait_for_default_service_account(core, namespace)
    name = "simpletest.rc"
    rc = core.create_namespaced_replication_controller(
        namespace, owner_rc(name, MANY_REPLICAS, unique_labels("gctest", "orphan_pods"))
    )
    wait_for_rc_replicas(core, namespace, name, MANY_REPLICAS)

    delete_with(api_client, f"/api/v1/namespaces/{namespace}/replicationcontrollers/{name}", "Orphan", rc.metadata.uid)
    wait_until(
        lambda: (not core.list_namespaced_replication_controller(namespace).items, "the rc is still there"),
        "the ReplicationController to be deleted",
    )

    pods = core.list_namespaced_pod(namespace)
    assert len(pods.items) == MANY_REPLICAS, [pod.metadata.name for pod in pods.items]
    for pod in pods.items:
        owners = [owner.uid for owner in pod.metadata.owner_references or []]
        assert rc.metadata.uid not in owners, f"pod {pod.metadata.name} still names the deleted RC: {owners}"
        assert pod.metadata.deletion_timestamp is None, f"pod {pod.metadata.name} is being deleted"

    stream = WatchStream(
        api_client, f"/api/v1/namespaces/{namespace}/pods", resourceVersion=pods.metadata.resource_version
    )
    try:
        expect_no_event(stream, "DELETED")
    finally:
        stream.stop()
    assert len(core.list_namespaced_pod(namespace).items) == MANY_REPLICAS


def test_garbage_collector_should_keep_the_rc_around_until_all_its_pods_are_deleted_if_the_deleteoptions_says_so(
    api_client, core, apps, namespace
):
    """Garbage collector should keep the rc around until all its pods are deleted if the deleteOptions says so.

    Upstream: test/e2e/apimachinery/garbage_collector.go. A ReplicationController of 10 is deleted with propagation
    Foreground once all its pods exist; it is gone only after its pods are, so once it is gone no pod is left. The
    answer to the DELETE is also checked: the RC, kept by the foregroundDeletion finalizer with a deletionTimestamp,
    as the API server answers a delete that finalizers hold up.
    """
    wait_for_default_service_account(core, namespace)
    name = "simpletest.rc"
    rc = core.create_namespaced_replication_controller(
        namespace, owner_rc(name, MANY_REPLICAS, unique_labels("gctest", "delete_pods_foreground"))
    )
    wait_for_rc_replicas(core, namespace, name, MANY_REPLICAS)

    answer = delete_with(
        api_client, f"/api/v1/namespaces/{namespace}/replicationcontrollers/{name}", "Foreground", rc.metadata.uid
    )
    assert answer.get("kind") == "ReplicationController", answer
    assert "foregroundDeletion" in (answer["metadata"].get("finalizers") or []), answer["metadata"]
    assert answer["metadata"].get("deletionTimestamp"), answer["metadata"]

    def rc_gone():
        try:
            current = core.read_namespaced_replication_controller(name, namespace)
        except ApiException as error:
            if not is_not_found(error):
                raise
            return True, "gone"
        # While it is still there, it is held by the finalizer and marked for deletion.
        assert current.metadata.deletion_timestamp is not None, current.metadata
        assert "foregroundDeletion" in (current.metadata.finalizers or []), current.metadata
        return False, f"{len(core.list_namespaced_pod(namespace).items)} pods remaining"

    wait_until(rc_gone, "the ReplicationController to be deleted", interval=0.1)
    pods = core.list_namespaced_pod(namespace)
    assert not pods.items, f"expected no pods, got {[pod.metadata.name for pod in pods.items]}"


def test_garbage_collector_should_orphan_rs_created_by_deployment_when_deleteoptions_propagationpolicy_is_orphan(
    api_client, core, apps, namespace
):
    """Garbage collector should orphan RS created by deployment when deleteOptions.PropagationPolicy is Orphan.

    Upstream: test/e2e/apimachinery/garbage_collector.go. A Deployment of 2 makes its ReplicaSet, which makes 2 pods
    (Pending here); the Deployment is deleted with propagation Orphan. Once it is gone there are 0 Deployments, 1
    ReplicaSet and 2 pods, and the ReplicaSet has no controller.
    """
    wait_for_default_service_account(core, namespace)
    name = "simpletest.deployment"
    labels = unique_labels("gctest", "orphan_rs")
    deployment = client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1DeploymentSpec(
            replicas=2,
            selector=client.V1LabelSelector(match_labels=labels),
            strategy=client.V1DeploymentStrategy(type="RollingUpdate"),
            template=gc_pod_template(labels),
        ),
    )
    created = apps.create_namespaced_deployment(namespace, deployment)

    def replica_set():
        items = apps.list_namespaced_replica_set(namespace).items
        return bool(items), items[0] if items else None

    replicaset = wait_until(replica_set, "the Deployment to create a ReplicaSet", interval=0.1)

    def replicas_reached():
        current = apps.read_namespaced_replica_set(replicaset.metadata.name, namespace)
        status = current.status
        done = (status.observed_generation or 0) >= replicaset.metadata.generation and (
            status.replicas == replicaset.spec.replicas
        )
        return done, status

    wait_until(replicas_reached, "the ReplicaSet's status.replicas to reach its spec", interval=0.1)

    delete_with(api_client, f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}", "Orphan", created.metadata.uid)
    wait_until(
        lambda: (not apps.list_namespaced_deployment(namespace).items, "the deployment is still there"),
        "the Deployment to be deleted",
    )

    # Once the Deployment is gone, the garbage collector has done all it will do.
    left = remaining(core, apps, namespace)
    assert (left["Deployments"], left["ReplicaSets"], left["Pods"]) == (0, 1, 2), left
    for item in apps.list_namespaced_replica_set(namespace).items:
        controllers = [owner for owner in item.metadata.owner_references or [] if owner.controller]
        assert not controllers, f"ReplicaSet {item.metadata.name} still has a controller: {controllers}"


# ---------------------------------------------------------------------------------------------------------------------
# Namespaces
# ---------------------------------------------------------------------------------------------------------------------


def delete_namespace_and_wait(core, name):
    core.delete_namespace(name)

    def gone():
        try:
            core.read_namespace(name)
        except ApiException as error:
            if not is_not_found(error):
                raise
            return True, "gone"
        return False, "still there"

    # Upstream allows 60 s (plus the pod's grace period).
    wait_until(gone, f"namespace {name} to be removed", timeout=60, interval=0.25)


def cleanup_namespace(core, name):
    try:
        core.delete_namespace(name)
    except ApiException as error:
        if not is_not_found(error):
            raise


def test_namespaces_should_ensure_that_all_pods_are_removed_when_a_namespace_is_deleted(core):
    """Namespaces should ensure that all pods are removed when a namespace is deleted.

    Upstream: test/e2e/apimachinery/namespace.go. A pod is created in a new namespace, the namespace is deleted and
    waited for, and the pod must not be found in the recreated namespace. Upstream first waits for the pod to run,
    which needs a node; here it stays Pending. Upstream's recreated namespace gets a fresh generated name; this test
    recreates the same name, so a pod that outlived its namespace would be found.
    """
    name = "nsdeletetest-" + random_suffix()
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        wait_for_default_service_account(core, name)
        pod = client.V1Pod(
            metadata=client.V1ObjectMeta(name="test-pod"),
            spec=client.V1PodSpec(containers=[client.V1Container(name="nginx", image=PAUSE_IMAGE)]),
        )
        core.create_namespaced_pod(name, pod)

        delete_namespace_and_wait(core, name)

        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        with pytest.raises(ApiException) as missing:
            core.read_namespaced_pod("test-pod", name)
        assert missing.value.status == 404
        assert not core.list_namespaced_pod(name).items
    finally:
        cleanup_namespace(core, name)


def test_namespaces_should_ensure_that_all_services_are_removed_when_a_namespace_is_deleted(core):
    """Namespaces should ensure that all services are removed when a namespace is deleted.

    Upstream: test/e2e/apimachinery/namespace.go. A Service is created in a new namespace, the namespace is deleted
    and waited for, and the Service must not be found in the recreated namespace (recreated under the same name here;
    upstream's gets a fresh generated name).
    """
    name = "nsdeletetest-" + random_suffix()
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        wait_for_default_service_account(core, name)
        service = client.V1Service(
            metadata=client.V1ObjectMeta(name="test-service"),
            spec=client.V1ServiceSpec(
                selector={"foo": "bar", "baz": "blah"},
                ports=[client.V1ServicePort(port=80, target_port=80)],
            ),
        )
        core.create_namespaced_service(name, service)

        delete_namespace_and_wait(core, name)

        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        with pytest.raises(ApiException) as missing:
            core.read_namespaced_service("test-service", name)
        assert missing.value.status == 404
        assert not core.list_namespaced_service(name).items
    finally:
        cleanup_namespace(core, name)


# ---------------------------------------------------------------------------------------------------------------------
# ResourceQuota
# ---------------------------------------------------------------------------------------------------------------------


def wait_for_root_ca_config_map(core, namespace):
    def check():
        try:
            return True, core.read_namespaced_config_map("kube-root-ca.crt", namespace)
        except ApiException as error:
            if not is_not_found(error):
                raise
            return False, "not found"

    return wait_until(check, f"kube-root-ca.crt in {namespace}", interval=0.1)


def test_resourcequota_should_create_a_resourcequota_and_capture_the_life_of_a_configmap(core, namespace):
    """ResourceQuota should create a ResourceQuota and capture the life of a configMap.

    Upstream: test/e2e/apimachinery/resource_quota.go. A quota allowing one ConfigMap more than the namespace has
    counts the new ConfigMap and releases it when the ConfigMap is deleted. Upstream waits 15 s for the ConfigMap
    count to settle; the only ConfigMap a fresh namespace gets is kube-root-ca.crt, so this test waits for that one.
    """
    wait_for_root_ca_config_map(core, namespace)
    found = len(core.list_namespaced_config_map(namespace).items)
    count = count_resource_quotas(core, namespace)
    core.create_namespaced_resource_quota(
        namespace, new_test_resource_quota("test-quota", {"configmaps": str(found + 1)})
    )
    wait_for_quota_used(core, namespace, "test-quota", {"resourcequotas": str(count + 1), "configmaps": str(found)})

    config_map = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="test-configmap"), data={"a": "b"})
    core.create_namespaced_config_map(namespace, config_map)
    wait_for_quota_used(core, namespace, "test-quota", {"resourcequotas": str(count + 1), "configmaps": str(found + 1)})

    core.delete_namespaced_config_map("test-configmap", namespace)
    wait_for_quota_used(core, namespace, "test-quota", {"resourcequotas": str(count + 1), "configmaps": str(found)})


EXTENDED_RESOURCE = "example.com/dongle"


def test_resourcequota_should_create_a_resourcequota_and_capture_the_life_of_a_pod(core, namespace):
    """ResourceQuota should create a ResourceQuota and capture the life of a pod.

    Upstream: test/e2e/apimachinery/resource_quota.go. A pod requesting cpu, memory, ephemeral storage and an
    extended resource is counted in each; a pod over the remaining cpu and one over the remaining ephemeral storage
    and extended resource are refused; an update of the counted pod's requests is refused and leaves the usage as it
    was; deleting the pod releases everything. The pods need no node: a quota counts them while Pending.
    """
    wait_for_default_service_account(core, namespace)
    count = count_resource_quotas(core, namespace)
    core.create_namespaced_resource_quota(namespace, new_test_resource_quota("test-quota"))
    used = {"resourcequotas": str(count + 1)}
    wait_for_quota_used(core, namespace, "test-quota", used)

    requests = {"cpu": "500m", "memory": "252Mi", "ephemeral-storage": "30Gi", EXTENDED_RESOURCE: "2"}
    pod = core.create_namespaced_pod(
        namespace, quota_test_pod("test-pod", requests, {EXTENDED_RESOURCE: "2"})
    )
    used.update(
        {
            "pods": "1",
            "cpu": "500m",
            "memory": "252Mi",
            "ephemeral-storage": "30Gi",
            f"requests.{EXTENDED_RESOURCE}": "2",
        }
    )
    wait_for_quota_used(core, namespace, "test-quota", used)

    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod(namespace, quota_test_pod("fail-pod", {"cpu": "600m", "memory": "100Mi"}, {}))
    assert refused.value.status == 403, refused.value.body

    over_extended = {"cpu": "500m", "memory": "100Mi", "ephemeral-storage": "30Gi", EXTENDED_RESOURCE: "2"}
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod(
            namespace, quota_test_pod("fail-pod-for-extended-resource", over_extended, {EXTENDED_RESOURCE: "2"})
        )
    assert refused.value.status == 403, refused.value.body

    # A pod's resource requirements cannot be changed in place (upstream sends the pod it created, so a conflict
    # would also be an error). Sent without a resourceVersion, so that the refusal is the validation's and not a
    # conflict with the scheduler's status write for the pending pod.
    current = core.read_namespaced_pod("test-pod", namespace)
    current.metadata.resource_version = None
    current.spec.containers[0].resources.requests = {"cpu": "100m", "memory": "100Mi", "ephemeral-storage": "10Gi"}
    with pytest.raises(ApiException) as refused:
        core.replace_namespaced_pod("test-pod", namespace, current)
    assert refused.value.status == 422, refused.value.body
    wait_for_quota_used(core, namespace, "test-quota", used)
    assert pod.metadata.uid == core.read_namespaced_pod("test-pod", namespace).metadata.uid

    core.delete_namespaced_pod("test-pod", namespace, grace_period_seconds=0)
    used.update({name: "0" for name in ["pods", "cpu", "memory", "ephemeral-storage", f"requests.{EXTENDED_RESOURCE}"]})
    wait_for_quota_used(core, namespace, "test-quota", used)


# ---------------------------------------------------------------------------------------------------------------------
# Watchers
# ---------------------------------------------------------------------------------------------------------------------

WATCH_LABEL = "watch-this-configmap"


def watch_config_maps(api_client, namespace, resource_version, *values):
    """watchConfigMaps: a watch on the namespace's ConfigMaps whose label is one of `values`."""
    if len(values) == 1:
        selector = f"{WATCH_LABEL}={values[0]}"
    else:
        selector = f"{WATCH_LABEL} in ({', '.join(values)})"
    return WatchStream(
        api_client,
        f"/api/v1/namespaces/{namespace}/configmaps",
        resourceVersion=resource_version,
        labelSelector=selector,
    )


def create_config_map(api_client, namespace, name, label_value):
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": {WATCH_LABEL: label_value}}}
    return call(api_client, "POST", f"/api/v1/namespaces/{namespace}/configmaps", body)


def set_config_map_data(api_client, namespace, name, key, value):
    """updateConfigMap with setConfigMapData: read, set one data key, write back, retrying on conflicts. Returns the
    object as the server answered the update (plain JSON, to compare with watch events)."""
    path = f"/api/v1/namespaces/{namespace}/configmaps/{name}"

    def attempt():
        current = call(api_client, "GET", path)
        current.setdefault("data", {})[key] = value
        return call(api_client, "PUT", path, current)

    return retry_on_conflict(attempt)


def delete_config_map(api_client, namespace, name):
    call(api_client, "DELETE", f"/api/v1/namespaces/{namespace}/configmaps/{name}")


def test_watchers_should_observe_add_update_and_delete_watch_notifications_on_configmaps(api_client, namespace):
    """Watchers should observe add, update, and delete watch notifications on configmaps.

    Upstream: test/e2e/apimachinery/watch.go. Three watches select ConfigMaps by label A, by label B, and by A or B.
    ConfigMap A's add, two updates and delete are seen by the A and A-or-B watches; ConfigMap B's add and delete by
    the B and A-or-B watches and not by the A watch. Each event carries the object as the write returned it.
    """
    watch_a = watch_config_maps(api_client, namespace, None, "multiple-watchers-A")
    watch_b = watch_config_maps(api_client, namespace, None, "multiple-watchers-B")
    watch_ab = watch_config_maps(api_client, namespace, None, "multiple-watchers-A", "multiple-watchers-B")
    try:
        config_map_a = create_config_map(api_client, namespace, "e2e-watch-test-configmap-a", "multiple-watchers-A")
        expect_event(watch_a, "ADDED", config_map_a)
        expect_event(watch_ab, "ADDED", config_map_a)

        config_map_a = set_config_map_data(api_client, namespace, "e2e-watch-test-configmap-a", "mutation", "1")
        expect_event(watch_a, "MODIFIED", config_map_a)
        expect_event(watch_ab, "MODIFIED", config_map_a)

        config_map_a = set_config_map_data(api_client, namespace, "e2e-watch-test-configmap-a", "mutation", "2")
        expect_event(watch_a, "MODIFIED", config_map_a)
        expect_event(watch_ab, "MODIFIED", config_map_a)

        delete_config_map(api_client, namespace, "e2e-watch-test-configmap-a")
        expect_event(watch_a, "DELETED")
        expect_event(watch_ab, "DELETED")

        config_map_b = create_config_map(api_client, namespace, "e2e-watch-test-configmap-b", "multiple-watchers-B")
        expect_event(watch_b, "ADDED", config_map_b)
        expect_event(watch_ab, "ADDED", config_map_b)
        expect_no_event(watch_a, "ADDED", config_map_b)

        delete_config_map(api_client, namespace, "e2e-watch-test-configmap-b")
        expect_event(watch_b, "DELETED")
        expect_event(watch_ab, "DELETED")
        expect_no_event(watch_a, "DELETED")
    finally:
        for stream in (watch_a, watch_b, watch_ab):
            stream.stop()


def test_watchers_should_be_able_to_restart_watching_from_the_last_resource_version_observed_by_the_previous_watch(
    api_client, namespace
):
    """Watchers should be able to restart watching from the last resource version observed by the previous watch.

    Upstream: test/e2e/apimachinery/watch.go. A watch sees a ConfigMap's add and first update and is closed; the
    ConfigMap is updated again while no watch is open; a new watch from the resourceVersion of the last event the
    first one delivered then sees that second update and the delete that follows.
    """
    name = "e2e-watch-test-watch-closed"
    label = "watch-closed-and-restarted"
    broken = watch_config_maps(api_client, namespace, None, label)
    try:
        created = create_config_map(api_client, namespace, name, label)
        set_config_map_data(api_client, namespace, name, "mutation", "1")
        expect_event(broken, "ADDED", created)
        last_event = wait_for_event(broken, "MODIFIED", timeout=60)
        assert last_event is not None, "timed out waiting for the second watch notification"
    finally:
        broken.stop()

    second_update = set_config_map_data(api_client, namespace, name, "mutation", "2")

    last_object = last_event["object"]
    assert last_object.get("kind") == "ConfigMap", f"expected the last notification to be a ConfigMap: {last_event}"
    restarted = watch_config_maps(api_client, namespace, last_object["metadata"]["resourceVersion"], label)
    try:
        delete_config_map(api_client, namespace, name)
        expect_event(restarted, "MODIFIED", second_update)
        expect_event(restarted, "DELETED")
    finally:
        restarted.stop()


# ---------------------------------------------------------------------------------------------------------------------
# ServiceAccounts
# ---------------------------------------------------------------------------------------------------------------------


def test_serviceaccounts_should_guarantee_kube_root_ca_crt_exist_in_any_namespace(api_client, core, namespace):
    """ServiceAccounts should guarantee kube-root-ca.crt exist in any namespace.

    Upstream: test/e2e/auth/service_accounts.go. The kube-root-ca.crt ConfigMap appears in a new namespace, holding
    the cluster CA (the one the client's kubeconfig trusts); deleted, it comes back, and with its ca.crt blanked, it
    is corrected, each within upstream's 30 s.
    """
    created = wait_for_root_ca_config_map(core, namespace)
    with open(api_client.configuration.ssl_ca_cert) as ca_file:
        cluster_ca = ca_file.read()
    assert created.data.get("ca.crt", "").strip() == cluster_ca.strip(), "kube-root-ca.crt does not hold the cluster CA"

    core.delete_namespaced_config_map("kube-root-ca.crt", namespace, grace_period_seconds=0)

    def recreated():
        try:
            config_map = core.read_namespaced_config_map("kube-root-ca.crt", namespace)
        except ApiException as error:
            if not is_not_found(error):
                raise
            return False, "not found"
        return config_map.metadata.uid != created.metadata.uid, config_map.metadata.uid

    wait_until(recreated, "kube-root-ca.crt to be recreated", timeout=30, interval=0.1)

    blanked = core.read_namespaced_config_map("kube-root-ca.crt", namespace)
    blanked.data = {"ca.crt": ""}
    blanked.metadata.resource_version = None
    core.replace_namespaced_config_map("kube-root-ca.crt", namespace, blanked)

    def corrected():
        data = core.read_namespaced_config_map("kube-root-ca.crt", namespace).data or {}
        return data.get("ca.crt", "").strip() == cluster_ca.strip(), data

    wait_until(corrected, "kube-root-ca.crt to hold the cluster CA again", timeout=30, interval=0.1)
