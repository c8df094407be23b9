"""Kubernetes v1.33 conformance entries that need no running pod, reproduced with the official Python client.

Each test repeats the API calls and the checks of one upstream e2e test (the file under kubernetes/kubernetes
`test/e2e/` is named in its docstring) and leaves out only what needs a node: waiting for pods to run, become ready
or finish. Where upstream waits minutes for a controller (ResourceQuota status, a Job's completion), these tests wait
seconds, bounded by deadlines; where upstream waits 10 s to be sure an event does not come, they wait half a second,
which is enough on a server that delivers events in order.

Cluster-scoped objects (CustomResourceDefinitions, CertificateSigningRequests, namespaces, webhook configurations)
get random names and are deleted at the end of their test.
"""

import base64
import datetime
import http.server
import json
import queue
import random
import socket
import ssl
import subprocess
import threading
import time
import uuid

import pytest
from kubernetes import client
from kubernetes.client import ApiException
from kubernetes.utils import parse_quantity
from kubernetes.watch.watch import iter_resp_lines

# How long these tests wait for something a controller does. Upstream waits up to minutes; kaasd's controllers
# react within a second (its ResourceQuota controller recounts shortly after each write it counts).
CONTROLLER_TIMEOUT = 15.0
# How long an expected watch event may take to arrive.
EVENT_TIMEOUT = 10.0
# How long a test waits to be sure that an event does not come (upstream: 10 s).
NO_EVENT_WINDOW = 0.5

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"

PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
AGNHOST_IMAGE = "registry.k8s.io/e2e-test-images/agnhost:2.53"
HTTPD_IMAGE = "registry.k8s.io/e2e-test-images/httpd:2.4.38-4"
BUSYBOX_IMAGE = "registry.k8s.io/e2e-test-images/busybox:1.37.0-1"


# ---------------------------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------------------------


def random_suffix(length=5):
    """Random lowercase characters, as apimachinery's utilrand.String (which avoids vowels and look-alikes)."""
    return "".join(random.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(length))


def call(api_client, method, path, body=None, content_type="application/json", query=None):
    """One request with a JSON body (or none); the answer as plain JSON (dicts and lists).

    Used where the typed models would get in the way: subresources the typed API lacks, custom resources, and
    objects the upstream test builds with fields the Python models insist on (a CRD condition with only a message).
    """
    return api_client.call_api(
        path,
        method,
        query_params=query or [],
        header_params={"Content-Type": content_type, "Accept": "application/json"},
        body=body,
        response_type="object",
        auth_settings=["BearerToken"],
        _return_http_data_only=True,
    )


def status_of(error):
    """The `Status` object the server sent with an error response."""
    return json.loads(error.body)


def retry_on_conflict(attempt, tries=10):
    """client-go's retry.RetryOnConflict: run `attempt` again as long as it fails with 409 Conflict."""
    for index in range(tries):
        try:
            return attempt()
        except ApiException as error:
            if error.status != 409 or index == tries - 1:
                raise
            time.sleep(0.05)


def wait_until(check, what, timeout=CONTROLLER_TIMEOUT, interval=0.2):
    """Poll `check` (returning (done, what was seen)) until it is done; fail with the last observation otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        done, seen = check()
        if done:
            return seen
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {seen!r}")
        time.sleep(interval)


def same_quantity(left, right):
    return left is not None and right is not None and parse_quantity(left) == parse_quantity(right)


def same_quantities(left, right):
    """apiequality.Semantic.DeepEqual on two ResourceLists: the same names with equal quantities."""
    left, right = left or {}, right or {}
    return set(left) == set(right) and all(same_quantity(left[name], right[name]) for name in left)


def now_rfc3339():
    """metav1.Now().Rfc3339Copy(): the current time to the second, as the wire format keeps it."""
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def wait_for_default_service_account(core, namespace):
    """framework.WaitForDefaultServiceAccountInNamespace: pods are refused until the namespace's default SA exists."""

    def check():
        try:
            core.read_namespaced_service_account("default", namespace)
            return True, "default"
        except ApiException as error:
            if error.status != 404:
                raise
            return False, "no default service account yet"

    wait_until(check, f"the default service account in {namespace}", interval=0.1)


# A P-256 key made on the fly (-nodes: unencrypted), for the openssl commands below.
NEW_KEY = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"


def openssl(command, **paths):
    """Run the openssl command line tool with `command`'s words, `{name}` in them replaced by the path given as
    `name`; return what it prints. Upstream's tests make their keys and certificates in Go; the Python client has no
    such helpers, and openssl comes with every Debian that has pip (through ca-certificates)."""
    args = [word.format(**{name: str(path) for name, path in paths.items()}) for word in command.split()]
    try:
        return subprocess.run(["openssl", *args], capture_output=True, check=True).stdout
    except FileNotFoundError:
        pytest.fail("these tests make keys and certificates with the openssl command, which is not installed")
    except subprocess.CalledProcessError as error:
        pytest.fail(f"openssl {command} failed: {error.stderr.decode(errors='replace')}")


class WatchStream:
    """A watch request read on a background thread, so that a test can wait for an event with a deadline.

    Events are the decoded JSON lines ({"type": ..., "object": {...}}). `stop` closes the connection.
    """

    def __init__(self, api_client, path, timeout_seconds=60, **params):
        query = [("watch", "true"), ("timeoutSeconds", str(timeout_seconds))]
        query += [(key, value) for key, value in params.items() if value is not None]
        self.path = path
        self.events = queue.Queue()
        self.response = api_client.call_api(
            path,
            "GET",
            query_params=query,
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
            _return_http_data_only=True,
            _preload_content=False,
        )
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        try:
            for line in iter_resp_lines(self.response):
                if line:
                    self.events.put(json.loads(line))
        except Exception as error:  # the connection was closed by stop(), or broke
            self.events.put({"type": "CLOSED", "error": repr(error)})
            return
        self.events.put({"type": "CLOSED"})

    def next(self, timeout):
        """The next event, or None if none arrives within `timeout` seconds."""
        try:
            return self.events.get(timeout=max(timeout, 0))
        except queue.Empty:
            return None

    def stop(self):
        # Closing the response alone would wait for the reading thread, blocked in a read until the server sends
        # something; shutting the socket down ends that read at once.
        connection = getattr(self.response, "connection", None)
        sock = getattr(connection, "sock", None)
        try:
            if sock is not None:
                sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.thread.join(5)
        try:
            self.response.close()
        except Exception:
            pass


def wait_for_event(stream, event_type, expected_object=None, timeout=EVENT_TIMEOUT):
    """Upstream's waitForEvent: read events until one of `event_type` (whose object equals `expected_object`, if
    given) arrives; other events are skipped. Returns the event, or None when the time is up."""
    deadline = time.monotonic() + timeout
    while True:
        event = stream.next(deadline - time.monotonic())
        if event is None:
            return None
        assert event["type"] != "CLOSED", f"the watch on {stream.path} closed unexpectedly: {event}"
        if event["type"] == event_type and (expected_object is None or event["object"] == expected_object):
            return event


def expect_event(stream, event_type, expected_object=None):
    event = wait_for_event(stream, event_type, expected_object)
    assert event is not None, f"no {event_type} event (object {expected_object}) on the watch of {stream.path}"
    return event


def expect_no_event(stream, event_type, unexpected_object=None):
    event = wait_for_event(stream, event_type, unexpected_object, timeout=NO_EVENT_WINDOW)
    assert event is None, f"unexpected {event_type} event on the watch of {stream.path}: {event}"


def watch_until(api_client, path, resource_version, label_selector, condition, what, timeout=EVENT_TIMEOUT):
    """client-go's watchtools.Until: watch `path` from `resource_version` until `condition(event)` holds."""
    stream = WatchStream(
        api_client,
        path,
        timeout_seconds=int(timeout) + 5,
        resourceVersion=resource_version,
        labelSelector=label_selector,
    )
    seen = []
    try:
        deadline = time.monotonic() + timeout
        while True:
            event = stream.next(deadline - time.monotonic())
            if event is None:
                pytest.fail(f"no watch event on {path} showed {what}; saw {summarize(seen)}")
            assert event["type"] not in ("CLOSED", "ERROR"), f"the watch on {path} ended: {event}"
            seen.append(event)
            if condition(event):
                return event
    finally:
        stream.stop()


def summarize(events):
    return [
        (event["type"], event["object"].get("metadata", {}).get("name"), event["object"].get("status"))
        for event in events
    ]


def conditions_of(obj):
    return (obj.get("status") or {}).get("conditions") or []


def watch_status_update_then_patch(api_client, path, resource_version, selector, ours, merge_patch_status):
    """The end the apps "... status" entries share: a watch from `resource_version` sees the condition the test's PUT
    of /status added (StatusUpdate), then `merge_patch_status` merge-patches /status with a StatusPatched condition,
    which the watch sees too. `ours` picks the test's object out of the events."""
    watch_until(
        api_client,
        path,
        resource_version,
        selector,
        lambda event: ours(event["object"])
        and any(
            c.get("type") == "StatusUpdate" and c.get("reason") == "E2E" and c.get("message") == "Set from e2e test"
            for c in conditions_of(event["object"])
        ),
        "the StatusUpdate condition",
    )
    merge_patch_status({"status": {"conditions": [{"type": "StatusPatched", "status": "True"}]}})
    watch_until(
        api_client,
        path,
        resource_version,
        selector,
        lambda event: ours(event["object"])
        and any(c.get("type") == "StatusPatched" for c in conditions_of(event["object"])),
        "the StatusPatched condition",
    )


# ---------------------------------------------------------------------------------------------------------------------
# CustomResourceDefinitions
# ---------------------------------------------------------------------------------------------------------------------

CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
ALLOW_ALL_SCHEMA = {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}


def random_name_crd(labels=None):
    """apiextensions' fixtures.NewRandomNameV1CustomResourceDefinition(ClusterScoped)."""
    name = "foo" + random_suffix()
    metadata = {"name": f"{name}s.mygroup.example.com"}
    if labels:
        metadata["labels"] = labels
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": metadata,
        "spec": {
            "group": "mygroup.example.com",
            "versions": [{"name": "v1beta1", "served": True, "storage": True, "schema": ALLOW_ALL_SCHEMA}],
            "names": {"plural": name + "s", "singular": name, "kind": name, "listKind": name + "List"},
            "scope": "Cluster",
        },
    }


def create_crd(api_client, crd):
    """fixtures.CreateNewV1CustomResourceDefinitionWatchUnsafe: create, then wait until discovery serves it."""
    created = call(api_client, "POST", CRDS, crd)
    group, version = created["spec"]["group"], created["spec"]["versions"][0]["name"]
    wait_for_served(api_client, group, version, created["spec"]["names"]["plural"])
    return created


def wait_for_served(api_client, group, version, plural):
    """Waits until discovery of GROUP/VERSION lists the resource (the server takes up a new CRD asynchronously)."""

    def served():
        try:
            resources = call(api_client, "GET", f"/apis/{group}/{version}")["resources"]
        except ApiException as error:
            if error.status != 404:
                raise
            return False, "group version not served yet"
        names = [resource["name"] for resource in resources]
        return plural in names, names

    wait_until(served, f"{plural}.{group}/{version} in discovery", interval=0.1)


def delete_crd(api_client, name):
    """fixtures.DeleteV1CustomResourceDefinition: delete, then wait until it is gone."""
    try:
        call(api_client, "DELETE", f"{CRDS}/{name}")
    except ApiException as error:
        if error.status != 404:
            raise
    wait_for_crd_gone(api_client, name)


def wait_for_crd_gone(api_client, name):
    def gone():
        try:
            call(api_client, "GET", f"{CRDS}/{name}")
            return False, "still there"
        except ApiException as error:
            if error.status != 404:
                raise
            return True, "gone"

    wait_until(gone, f"CustomResourceDefinition {name} to be deleted", interval=0.1)


def test_customresourcedefinition_watch_on_custom_resource_definition_objects(api_client):
    """CustomResourceDefinition Watch: watch on custom resource definition objects.

    Upstream: test/e2e/apimachinery/crd_watch.go. Two watches, each with a field selector on one custom resource's
    name, must see ADDED, MODIFIED and DELETED for their own resource and nothing for the other. The CRD is upstream's
    "noxu" fixture, in a group with a random name so that runs do not share it. Upstream waits 10 s for each event
    that must not come; this test waits half a second.
    """
    group = f"{random_suffix()}.mygroup.example.com"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"noxus.{group}"},
        "spec": {
            "group": group,
            "versions": [{"name": "v1beta1", "served": True, "storage": True, "schema": ALLOW_ALL_SCHEMA}],
            "names": {
                "plural": "noxus",
                "singular": "nonenglishnoxu",
                "kind": "WishIHadChosenNoxu",
                "shortNames": ["foo", "bar", "abc", "def"],
                "listKind": "NoxuItemList",
                "categories": ["all"],
            },
            "scope": "Cluster",
        },
    }
    create_crd(api_client, crd)
    resources = f"/apis/{group}/v1beta1/noxus"
    streams = []
    try:
        watch_a = WatchStream(api_client, resources, timeout_seconds=60, fieldSelector="metadata.name=name1")
        watch_b = WatchStream(api_client, resources, timeout_seconds=60, fieldSelector="metadata.name=name2")
        streams = [watch_a, watch_b]

        def instance(name):
            # fixtures.NewNoxuInstance: a cluster-scoped object with a nested map and the largest int64.
            return {
                "apiVersion": f"{group}/v1beta1",
                "kind": "WishIHadChosenNoxu",
                "metadata": {"namespace": "", "name": name},
                "content": {"key": "value"},
                "num": {"num1": 9223372036854775807, "num2": 1000000},
            }

        def instantiate(name):
            created = call(api_client, "POST", resources, instance(name))
            assert created["metadata"].get("uid"), f"missing uid: {created}"
            assert created["apiVersion"] == f"{group}/v1beta1"
            assert created["kind"] == "WishIHadChosenNoxu"
            return created

        created_a = instantiate("name1")
        expect_event(watch_a, "ADDED", created_a)
        expect_no_event(watch_b, "ADDED", created_a)

        created_b = instantiate("name2")
        expect_event(watch_b, "ADDED", created_b)
        expect_no_event(watch_a, "ADDED", created_b)

        dummy = [{"op": "add", "path": "/dummy", "value": "test"}]
        call(api_client, "PATCH", f"{resources}/name1", dummy, JSON_PATCH)
        expect_event(watch_a, "MODIFIED")
        expect_no_event(watch_b, "MODIFIED")

        call(api_client, "PATCH", f"{resources}/name2", dummy, JSON_PATCH)
        expect_event(watch_b, "MODIFIED")
        expect_no_event(watch_a, "MODIFIED")

        call(api_client, "DELETE", f"{resources}/name1")
        expect_event(watch_a, "DELETED")
        expect_no_event(watch_b, "DELETED")

        call(api_client, "DELETE", f"{resources}/name2")
        expect_event(watch_b, "DELETED")
        expect_no_event(watch_a, "DELETED")
    finally:
        for stream in streams:
            stream.stop()
        delete_crd(api_client, crd["metadata"]["name"])


def test_customresourcedefinition_getting_updating_patching_custom_resource_definition_status_subresource_works(
    api_client,
):
    """CustomResourceDefinition resources: getting/updating/patching custom resource definition status sub-resource works.

    Upstream: test/e2e/apimachinery/custom_resource_definition.go. GET /status returns the whole CRD (the spec as
    created); PUT /status with an added condition {message: updated} returns it; a JSON patch of /status that sets
    the conditions to [{message: patched}] returns that condition.
    """
    crd = create_crd(api_client, random_name_crd())
    name = crd["metadata"]["name"]
    try:
        update_condition = {"message": "updated"}

        def update():
            status = call(api_client, "GET", f"{CRDS}/{name}/status")
            assert status["spec"] == crd["spec"], "the status subresource should carry the spec as created"
            status.setdefault("status", {}).setdefault("conditions", []).append(update_condition)
            return call(api_client, "PUT", f"{CRDS}/{name}/status", status)

        updated = retry_on_conflict(update)
        assert has_condition(updated, update_condition), f"condition {update_condition} not in {conditions_of(updated)}"

        patch = [{"op": "add", "path": "/status/conditions", "value": [{"message": "patched"}]}]
        patched = call(api_client, "PATCH", f"{CRDS}/{name}/status", patch, JSON_PATCH)
        assert has_condition(patched, {"message": "patched"}), f"patched condition not in {conditions_of(patched)}"
    finally:
        delete_crd(api_client, name)


def has_condition(crd, expected):
    """Upstream's expectCondition: some condition equals `expected` field by field (unset fields are zero values)."""
    return any(
        {key: value for key, value in condition.items() if value not in (None, "")} == expected
        for condition in conditions_of(crd)
    )


def test_customresourcedefinition_listing_custom_resource_definition_objects_works(api_client):
    """CustomResourceDefinition resources: listing custom resource definition objects works.

    Upstream: test/e2e/apimachinery/custom_resource_definition.go. Ten labelled CRDs and one without the label; a
    list by the label returns exactly the ten, each with the spec it was created with; deletecollection by the label
    deletes the ten and leaves the other.
    """
    test_uuid = str(uuid.uuid4())
    selector = f"e2e-list-test-uuid={test_uuid}"
    created = {}
    unlabelled = None
    try:
        for _ in range(10):
            crd = create_crd(api_client, random_name_crd({"e2e-list-test-uuid": test_uuid}))
            created[crd["metadata"]["name"]] = crd
        unlabelled = create_crd(api_client, random_name_crd())

        listed = call(api_client, "GET", CRDS, query=[("labelSelector", selector)])
        assert len(listed["items"]) == 10, [item["metadata"]["name"] for item in listed["items"]]
        for item in listed["items"]:
            expected = created.get(item["metadata"]["name"])
            assert expected is not None, f"listed a CRD that was not created with the label: {item['metadata']['name']}"
            assert item["spec"] == expected["spec"], f"{item['metadata']['name']}: listed spec differs from created"

        call(api_client, "DELETE", CRDS, query=[("labelSelector", selector)])
        for name in created:
            wait_for_crd_gone(api_client, name)
        remaining = call(api_client, "GET", f"{CRDS}/{unlabelled['metadata']['name']}")
        assert remaining["metadata"]["uid"] == unlabelled["metadata"]["uid"], "the unlabelled CRD must stay"
    finally:
        for name in created:
            delete_crd(api_client, name)
        if unlabelled:
            delete_crd(api_client, unlabelled["metadata"]["name"])


# ---------------------------------------------------------------------------------------------------------------------
# Namespaces
# ---------------------------------------------------------------------------------------------------------------------


def test_namespaces_should_apply_a_finalizer_to_a_namespace(core):
    """Namespaces should apply a finalizer to a Namespace.

    Upstream: test/e2e/apimachinery/namespace.go. PUT namespaces/NAME/finalize adds a fake finalizer to
    spec.finalizers, and a second one removes it again.
    """
    fake = "e2e.example.com/fakeFinalizer"
    name = "e2e-ns-" + random_suffix()
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:

        def add():
            namespace = core.read_namespace(name)
            namespace.spec.finalizers = (namespace.spec.finalizers or []) + [fake]
            return core.replace_namespace_finalize(name, namespace)

        updated = retry_on_conflict(add)
        assert fake in (updated.spec.finalizers or []), f"finalizer not found: {updated.spec.finalizers}"

        def remove():
            namespace = core.read_namespace(name)
            namespace.spec.finalizers = [item for item in namespace.spec.finalizers or [] if item != fake]
            return core.replace_namespace_finalize(name, namespace)

        updated = retry_on_conflict(remove)
        assert fake not in (updated.spec.finalizers or []), f"finalizer still there: {updated.spec.finalizers}"
    finally:
        core.delete_namespace(name)


def test_namespaces_should_apply_an_update_to_a_namespace(core, namespace):
    """Namespaces should apply an update to a Namespace.

    Upstream: test/e2e/apimachinery/namespace.go. A read-modify-PUT of the namespace adds a label.
    """

    def update():
        current = core.read_namespace(namespace)
        current.metadata.labels = current.metadata.labels or {}
        current.metadata.labels[namespace] = "updated"
        return core.replace_namespace(namespace, current)

    updated = retry_on_conflict(update)
    assert updated.metadata.labels.get(namespace) == "updated", updated.metadata.labels


def test_namespaces_should_apply_changes_to_a_namespace_status(core, namespace, client_with_content_type):
    """Namespaces should apply changes to a namespace status.

    Upstream: test/e2e/apimachinery/namespace.go. GET /status reports phase Active; a merge patch of /status adds an
    annotation and a condition; a PUT of /status adds a second condition.
    """
    status = core.read_namespace_status(namespace)
    assert status.status.phase == "Active"

    condition = {"type": "StatusPatch", "status": "True", "reason": "E2E", "message": "Patched by an e2e test"}
    merge = client.CoreV1Api(client_with_content_type(MERGE_PATCH))
    patched = merge.patch_namespace_status(
        namespace,
        {"metadata": {"annotations": {"e2e-patched-ns-status": namespace}}, "status": {"conditions": [condition]}},
    )
    assert (patched.metadata.annotations or {}).get("e2e-patched-ns-status") == namespace, patched.metadata.annotations
    last = patched.status.conditions[-1]
    assert last.reason == "E2E" and last.message == "Patched by an e2e test", patched.status.conditions

    def update():
        current = core.read_namespace_status(namespace)
        current.status.conditions = (current.status.conditions or []) + [
            client.V1NamespaceCondition(
                type="StatusUpdate", status="True", reason="E2E", message="Updated by an e2e test"
            )
        ]
        return core.replace_namespace_status(namespace, current)

    updated = retry_on_conflict(update)
    last = updated.status.conditions[-1]
    assert last.type == "StatusUpdate", updated.status.conditions
    assert last.message == "Updated by an e2e test", updated.status.conditions


# ---------------------------------------------------------------------------------------------------------------------
# ResourceQuota
# ---------------------------------------------------------------------------------------------------------------------


def new_test_resource_quota(name, extra=None):
    """newTestResourceQuota: hard limits on many resources, including a discovered and an extended resource."""
    hard = {
        "pods": "5",
        "services": "10",
        "services.nodeports": "1",
        "services.loadbalancers": "1",
        "replicationcontrollers": "10",
        "resourcequotas": "1",
        "cpu": "1",
        "memory": "500Mi",
        "configmaps": "10",
        "secrets": "10",
        "persistentvolumeclaims": "10",
        "requests.storage": "10Gi",
        "ephemeral-storage": "50Gi",
        "gold.storageclass.storage.k8s.io/persistentvolumeclaims": "10",
        "gold.storageclass.storage.k8s.io/requests.storage": "10Gi",
        "count/replicasets.apps": "5",
        "requests.example.com/dongle": "3",
    }
    hard.update(extra or {})
    return client.V1ResourceQuota(metadata=client.V1ObjectMeta(name=name), spec=client.V1ResourceQuotaSpec(hard=hard))


def wait_for_quota_used(core, namespace, name, used):
    """waitForResourceQuota: status.used shows these quantities (other names are not looked at)."""

    def check():
        quota = core.read_namespaced_resource_quota(name, namespace)
        actual = (quota.status.used if quota.status else None) or {}
        return all(same_quantity(actual.get(key), value) for key, value in used.items()), actual

    wait_until(check, f"ResourceQuota {name} to show used {used}", interval=0.25)


def count_resource_quotas(core, namespace):
    # Upstream waits for the count to be stable for 5 s (controllers on a busy cluster may still be adding quotas);
    # nothing adds quotas to a fresh namespace here, so one list is exact.
    return len(core.list_namespaced_resource_quota(namespace).items)


def test_resourcequota_should_create_a_resourcequota_and_capture_the_life_of_a_service(core, namespace):
    """ResourceQuota should create a ResourceQuota and capture the life of a service.

    Upstream: test/e2e/apimachinery/resource_quota.go. A ClusterIP and a NodePort service are counted (services 2,
    services.nodeports 1); a LoadBalancer that would need a second node port is refused; deleting both releases the
    usage.
    """
    count = count_resource_quotas(core, namespace)
    core.create_namespaced_resource_quota(namespace, new_test_resource_quota("test-quota"))
    wait_for_quota_used(core, namespace, "test-quota", {"resourcequotas": str(count + 1)})

    def service(name, service_type, allocate_node_ports=None):
        return client.V1Service(
            metadata=client.V1ObjectMeta(name=name),
            spec=client.V1ServiceSpec(
                type=service_type,
                ports=[client.V1ServicePort(port=80, target_port=80)],
                allocate_load_balancer_node_ports=allocate_node_ports,
            ),
        )

    core.create_namespaced_service(namespace, service("test-service", "ClusterIP"))
    core.create_namespaced_service(namespace, service("test-service-np", "NodePort"))
    with pytest.raises(ApiException):
        core.create_namespaced_service(namespace, service("test-service-lb", "LoadBalancer", True))

    used = {"resourcequotas": str(count + 1), "services": "2", "services.nodeports": "1"}
    wait_for_quota_used(core, namespace, "test-quota", used)

    core.delete_namespaced_service("test-service", namespace)
    core.delete_namespaced_service("test-service-np", namespace)
    used.update({"services": "0", "services.nodeports": "0"})
    wait_for_quota_used(core, namespace, "test-quota", used)


def test_resourcequota_should_create_a_resourcequota_and_capture_the_life_of_a_secret(core, namespace):
    """ResourceQuota should create a ResourceQuota and capture the life of a secret.

    Upstream: test/e2e/apimachinery/resource_quota.go. A quota allowing one secret more than the namespace has counts
    the new secret and releases it when the secret is deleted. (Upstream waits 5 s for the secret count to settle;
    one list is exact in a fresh namespace here.)
    """
    found = len(core.list_namespaced_secret(namespace).items)
    count = count_resource_quotas(core, namespace)
    core.create_namespaced_resource_quota(namespace, new_test_resource_quota("test-quota", {"secrets": str(found + 1)}))
    wait_for_quota_used(core, namespace, "test-quota", {"resourcequotas": str(count + 1), "secrets": str(found)})

    secret = client.V1Secret(
        metadata=client.V1ObjectMeta(name="test-secret"),
        data={
            key: base64.b64encode(f"value-{index}\n".encode()).decode()
            for index, key in enumerate(["data-1", "data-2", "data-3"], 1)
        },
    )
    core.create_namespaced_secret(namespace, secret)
    wait_for_quota_used(core, namespace, "test-quota", {"secrets": str(found + 1)})

    core.delete_namespaced_secret("test-secret", namespace)
    wait_for_quota_used(core, namespace, "test-quota", {"secrets": str(found)})


def test_resourcequota_should_create_a_resourcequota_and_capture_the_life_of_a_replication_controller(core, namespace):
    """ResourceQuota should create a ResourceQuota and capture the life of a replication controller.

    Upstream: test/e2e/apimachinery/resource_quota.go. A ReplicationController with replicas 0 (as upstream) is
    counted in replicationcontrollers and released when it is deleted with background propagation.
    """
    count = count_resource_quotas(core, namespace)
    core.create_namespaced_resource_quota(namespace, new_test_resource_quota("test-quota"))
    wait_for_quota_used(
        core, namespace, "test-quota", {"resourcequotas": str(count + 1), "replicationcontrollers": "0"}
    )

    labels = {"name": "test-rc"}
    controller = client.V1ReplicationController(
        metadata=client.V1ObjectMeta(name="test-rc"),
        spec=client.V1ReplicationControllerSpec(
            replicas=0,
            selector=labels,
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[client.V1Container(name="test-rc", image="nginx")]),
            ),
        ),
    )
    core.create_namespaced_replication_controller(namespace, controller)
    wait_for_quota_used(core, namespace, "test-quota", {"replicationcontrollers": "1"})

    core.delete_namespaced_replication_controller("test-rc", namespace, propagation_policy="Background")
    wait_for_quota_used(core, namespace, "test-quota", {"replicationcontrollers": "0"})


def test_resourcequota_should_create_a_resourcequota_and_capture_the_life_of_a_replica_set(core, apps, namespace):
    """ResourceQuota should create a ResourceQuota and capture the life of a replica set.

    Upstream: test/e2e/apimachinery/resource_quota.go. A ReplicaSet with replicas 0 (as upstream) is counted in
    count/replicasets.apps and released when it is deleted.
    """
    count = count_resource_quotas(core, namespace)
    core.create_namespaced_resource_quota(namespace, new_test_resource_quota("test-quota"))
    wait_for_quota_used(
        core, namespace, "test-quota", {"resourcequotas": str(count + 1), "count/replicasets.apps": "0"}
    )

    labels = {"name": "test-rs"}
    replica_set = client.V1ReplicaSet(
        metadata=client.V1ObjectMeta(name="test-rs"),
        spec=client.V1ReplicaSetSpec(
            replicas=0,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(
                    termination_grace_period_seconds=0,
                    containers=[client.V1Container(name="test-rs", image="nginx")],
                ),
            ),
        ),
    )
    apps.create_namespaced_replica_set(namespace, replica_set)
    wait_for_quota_used(core, namespace, "test-quota", {"count/replicasets.apps": "1"})

    apps.delete_namespaced_replica_set("test-rs", namespace)
    wait_for_quota_used(core, namespace, "test-quota", {"count/replicasets.apps": "0"})


def test_resourcequota_should_be_able_to_update_and_delete_resourcequota(core, namespace):
    """ResourceQuota should be able to update and delete ResourceQuota.

    Upstream: test/e2e/apimachinery/resource_quota.go. Note that upstream's update sends the object it built for the
    create, without a resourceVersion: an unconditional update, which ResourceQuota allows.
    """
    quota = client.V1ResourceQuota(
        metadata=client.V1ObjectMeta(name="test-quota"),
        spec=client.V1ResourceQuotaSpec(hard={"cpu": "1", "memory": "500Mi"}),
    )
    core.create_namespaced_resource_quota(namespace, quota)

    read = core.read_namespaced_resource_quota("test-quota", namespace)
    assert same_quantity(read.spec.hard.get("cpu"), "1") and same_quantity(read.spec.hard.get("memory"), "500Mi")

    quota.spec.hard = {"cpu": "2", "memory": "1Gi"}
    updated = core.replace_namespaced_resource_quota("test-quota", namespace, quota)
    assert same_quantity(updated.spec.hard.get("cpu"), "2"), updated.spec.hard
    assert same_quantity(updated.spec.hard.get("memory"), "1Gi"), updated.spec.hard

    read = core.read_namespaced_resource_quota("test-quota", namespace)
    assert same_quantity(read.spec.hard.get("cpu"), "2") and same_quantity(read.spec.hard.get("memory"), "1Gi")

    core.delete_namespaced_resource_quota("test-quota", namespace)
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_resource_quota("test-quota", namespace)
    assert missing.value.status == 404


def test_resourcequota_should_manage_the_lifecycle_of_a_resourcequota(core, namespace):
    """ResourceQuota should manage the lifecycle of a ResourceQuota.

    Upstream: test/e2e/apimachinery/resource_quota.go. A labelled quota is found by a list across all namespaces,
    a strategic merge patch changes a label and the memory limit (and the resourceVersion grows), and a
    deletecollection by the label removes it.
    """
    name = "e2e-quota-" + random_suffix()
    selector = f"e2e-rq-label={name}"
    quota = client.V1ResourceQuota(
        metadata=client.V1ObjectMeta(name=name, labels={"e2e-rq-label": name}),
        spec=client.V1ResourceQuotaSpec(hard={"cpu": "1", "memory": "500Mi"}),
    )
    core.create_namespaced_resource_quota(namespace, quota)

    read = core.read_namespaced_resource_quota(name, namespace)
    assert same_quantity(read.spec.hard.get("cpu"), "1") and same_quantity(read.spec.hard.get("memory"), "500Mi")
    assert read.metadata.resource_version, "a resourceVersion"

    listed = core.list_resource_quota_for_all_namespaces(label_selector=selector)
    assert len(listed.items) == 1, [item.metadata.name for item in listed.items]

    patched = core.patch_namespaced_resource_quota(
        name, namespace, {"metadata": {"labels": {name: "patched"}}, "spec": {"hard": {"memory": "750Mi"}}}
    )
    assert patched.metadata.labels.get(name) == "patched", patched.metadata.labels
    assert same_quantity(patched.spec.hard.get("memory"), "750Mi"), patched.spec.hard
    assert int(patched.metadata.resource_version) > int(listed.items[0].metadata.resource_version)

    core.delete_collection_namespaced_resource_quota(namespace, label_selector=selector)
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_resource_quota(name, namespace)
    assert missing.value.status == 404


def test_resourcequota_should_apply_changes_to_a_resourcequota_status(api_client, core, namespace):
    """ResourceQuota should apply changes to a resourcequota status.

    Upstream: test/e2e/apimachinery/resource_quota.go. PUT /status sets status.hard; a strategic merge patch of the
    spec and then of /status change the limits, each seen through a watch from the list's resourceVersion; GET
    /status reads them back; a second /status patch does not touch the spec, and the quota controller then puts
    status.hard back to the spec's. Upstream waits up to 6 minutes for that reset (its controller only resyncs every
    5 minutes); kaasd's recounts every 5 s, so this test waits 15 s.
    """
    name = "e2e-rq-status-" + random_suffix()
    selector = f"e2e-rq-label={name}"
    path = f"/api/v1/namespaces/{namespace}/resourcequotas"
    listed = core.list_resource_quota_for_all_namespaces(label_selector=selector)

    quota = client.V1ResourceQuota(
        metadata=client.V1ObjectMeta(name=name, labels={"e2e-rq-label": name}),
        spec=client.V1ResourceQuotaSpec(hard={"cpu": "500m", "memory": "500Mi"}),
    )
    core.create_namespaced_resource_quota(namespace, quota)
    initial = core.read_namespaced_resource_quota(name, namespace)
    assert same_quantity(initial.spec.hard.get("cpu"), "500m"), initial.spec.hard
    assert same_quantity(initial.spec.hard.get("memory"), "500Mi"), initial.spec.hard

    hard = dict(initial.spec.hard)

    def update_status():
        current = core.read_namespaced_resource_quota(name, namespace)
        current.status = client.V1ResourceQuotaStatus(hard=hard)
        return core.replace_namespaced_resource_quota_status(name, namespace, current)

    updated = retry_on_conflict(update_status)

    def hard_status_is(expected):
        def condition(event):
            obj = event["object"]
            return (
                obj["metadata"]["name"] == name
                and obj["metadata"]["namespace"] == namespace
                and same_quantities((obj.get("status") or {}).get("hard"), expected)
            )

        return condition

    watch_until(
        api_client,
        path,
        listed.metadata.resource_version,
        selector,
        hard_status_is(updated.spec.hard),
        "status.hard = spec.hard",
    )

    listed = core.list_resource_quota_for_all_namespaces(label_selector=selector)
    spec_patched = core.patch_namespaced_resource_quota(
        name, namespace, {"spec": {"hard": {"cpu": "1", "memory": "1Gi"}}}
    )
    patched = core.patch_namespaced_resource_quota_status(
        name, namespace, {"status": {"hard": dict(spec_patched.spec.hard)}}
    )
    watch_until(
        api_client,
        path,
        listed.metadata.resource_version,
        selector,
        hard_status_is(patched.spec.hard),
        "the patched status.hard",
    )

    status = call(api_client, "GET", f"{path}/{name}/status")
    assert same_quantity(status["status"]["hard"].get("cpu"), "1"), status["status"]
    assert same_quantity(status["status"]["hard"].get("memory"), "1Gi"), status["status"]

    listed = core.list_resource_quota_for_all_namespaces(label_selector=selector)
    repatched = core.patch_namespaced_resource_quota_status(
        name, namespace, {"status": {"hard": {"cpu": "2", "memory": "2Gi"}}}
    )
    assert same_quantity(repatched.status.hard.get("cpu"), "2"), repatched.status.hard
    assert same_quantity(repatched.status.hard.get("memory"), "2Gi"), repatched.status.hard
    watch_until(
        api_client,
        path,
        listed.metadata.resource_version,
        selector,
        hard_status_is({"cpu": "2", "memory": "2Gi"}),
        "the repatched status.hard",
    )

    def reset():
        current = core.read_namespaced_resource_quota(name, namespace)
        status_hard = (current.status.hard if current.status else None) or {}
        done = (
            same_quantity(current.spec.hard.get("cpu"), status_hard.get("cpu"))
            and same_quantity(status_hard.get("cpu"), "1")
            and same_quantity(status_hard.get("memory"), "1Gi")
        )
        return done, {"spec": current.spec.hard, "status": status_hard}

    wait_until(reset, "the spec to be unchanged and status.hard reset to it")


def scoped_quota(name, scope, hard):
    """newTestResourceQuotaWithScope: a quota selecting pods by one scope."""
    return client.V1ResourceQuota(
        metadata=client.V1ObjectMeta(name=name), spec=client.V1ResourceQuotaSpec(hard=hard, scopes=[scope])
    )


def quota_test_pod(name, requests=None, limits=None, active_deadline_seconds=None):
    """newTestPodForQuota: one container with these requests and limits (none: a BestEffort pod)."""
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1PodSpec(
            active_deadline_seconds=active_deadline_seconds,
            containers=[
                client.V1Container(
                    name="pause",
                    image="registry.k8s.io/pause:3.10",
                    resources=client.V1ResourceRequirements(requests=requests, limits=limits),
                )
            ],
        ),
    )


def test_resourcequota_should_verify_resourcequota_with_terminating_scopes(core, namespace):
    """ResourceQuota should verify ResourceQuota with terminating scopes.

    Upstream: test/e2e/apimachinery/resource_quota.go. A Terminating and a NotTerminating quota each count only the
    pods of their scope: a long-running pod counts against NotTerminating, one with activeDeadlineSeconds against
    Terminating, and deleting each releases its usage. The pods need no node: a quota counts them while Pending.
    """
    wait_for_default_service_account(core, namespace)
    hard = {"pods": "5", "requests.cpu": "1", "requests.memory": "500Mi", "limits.cpu": "2", "limits.memory": "1Gi"}
    zero = {name: "0" for name in hard}
    core.create_namespaced_resource_quota(namespace, scoped_quota("quota-terminating", "Terminating", hard))
    core.create_namespaced_resource_quota(namespace, scoped_quota("quota-not-terminating", "NotTerminating", hard))
    wait_for_quota_used(core, namespace, "quota-terminating", zero)
    wait_for_quota_used(core, namespace, "quota-not-terminating", zero)

    requests = {"cpu": "500m", "memory": "200Mi"}
    limits = {"cpu": "1", "memory": "400Mi"}
    one_pod = {"pods": "1", "requests.cpu": "500m", "requests.memory": "200Mi", "limits.cpu": "1", "limits.memory": "400Mi"}

    core.create_namespaced_pod(namespace, quota_test_pod("test-pod", requests, limits))
    wait_for_quota_used(core, namespace, "quota-not-terminating", one_pod)
    wait_for_quota_used(core, namespace, "quota-terminating", zero)
    core.delete_namespaced_pod("test-pod", namespace, grace_period_seconds=0)
    wait_for_quota_used(core, namespace, "quota-not-terminating", zero)

    core.create_namespaced_pod(namespace, quota_test_pod("terminating-pod", requests, limits, active_deadline_seconds=3600))
    wait_for_quota_used(core, namespace, "quota-terminating", one_pod)
    wait_for_quota_used(core, namespace, "quota-not-terminating", zero)
    core.delete_namespaced_pod("terminating-pod", namespace, grace_period_seconds=0)
    wait_for_quota_used(core, namespace, "quota-terminating", zero)


def test_resourcequota_should_verify_resourcequota_with_best_effort_scope(core, namespace):
    """ResourceQuota should verify ResourceQuota with best effort scope.

    Upstream: test/e2e/apimachinery/resource_quota.go. A BestEffort and a NotBestEffort quota each count only the
    pods of their QoS class; deleting a pod releases it. The pods need no node.
    """
    wait_for_default_service_account(core, namespace)
    core.create_namespaced_resource_quota(namespace, scoped_quota("quota-besteffort", "BestEffort", {"pods": "5"}))
    core.create_namespaced_resource_quota(namespace, scoped_quota("quota-not-besteffort", "NotBestEffort", {"pods": "5"}))
    wait_for_quota_used(core, namespace, "quota-besteffort", {"pods": "0"})
    wait_for_quota_used(core, namespace, "quota-not-besteffort", {"pods": "0"})

    core.create_namespaced_pod(namespace, quota_test_pod("best-effort"))
    wait_for_quota_used(core, namespace, "quota-besteffort", {"pods": "1"})
    wait_for_quota_used(core, namespace, "quota-not-besteffort", {"pods": "0"})
    core.delete_namespaced_pod("best-effort", namespace, grace_period_seconds=0)
    wait_for_quota_used(core, namespace, "quota-besteffort", {"pods": "0"})

    requests = {"cpu": "500m", "memory": "200Mi"}
    limits = {"cpu": "1", "memory": "400Mi"}
    core.create_namespaced_pod(namespace, quota_test_pod("not-best-effort", requests, limits))
    wait_for_quota_used(core, namespace, "quota-not-besteffort", {"pods": "1"})
    wait_for_quota_used(core, namespace, "quota-besteffort", {"pods": "0"})
    core.delete_namespaced_pod("not-best-effort", namespace, grace_period_seconds=0)
    wait_for_quota_used(core, namespace, "quota-not-besteffort", {"pods": "0"})


# ---------------------------------------------------------------------------------------------------------------------
# Watchers
# ---------------------------------------------------------------------------------------------------------------------


def test_watchers_should_receive_events_on_concurrent_watches_in_same_order(api_client, core, namespace):
    """Watchers should receive events on concurrent watches in same order.

    Upstream: test/e2e/apimachinery/watch.go. While a background thread creates, updates (unconditionally, by name
    alone) and deletes ConfigMaps every 5 ms, watches are started one by one, each at the resourceVersion of the
    last event the first watch delivered; every watch must then deliver the same next event. 100 watches, as upstream.
    """
    iterations = 100
    resource_version = core.list_namespaced_config_map(namespace).metadata.resource_version
    path = f"/api/v1/namespaces/{namespace}/configmaps"

    stop = threading.Event()
    failures = []

    def produce():
        existing, index = [], 0
        try:
            while not stop.is_set():
                operation = random.randrange(3) if existing else 0
                if operation == 0:
                    core.create_namespaced_config_map(
                        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name=f"cm-{index}"))
                    )
                    existing.append(index)
                    index += 1
                elif operation == 1:
                    name = f"cm-{random.choice(existing)}"
                    core.replace_namespaced_config_map(
                        name, namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name))
                    )
                else:
                    victim = existing.pop(random.randrange(len(existing)))
                    core.delete_namespaced_config_map(f"cm-{victim}", namespace)
                time.sleep(0.005)
        except Exception as error:  # reported by the test thread
            failures.append(error)

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()

    def next_config_map(stream):
        event = stream.next(10)
        assert event is not None, "timed out waiting for a watch event"
        assert event["type"] in ("ADDED", "MODIFIED", "DELETED"), f"unexpected event {event}"
        assert event["object"]["kind"] == "ConfigMap", f"expected a ConfigMap, got {event}"
        return event["object"]

    streams = []
    try:
        for _ in range(iterations):
            streams.append(WatchStream(api_client, path, timeout_seconds=60, resourceVersion=resource_version))
            resource_version = next_config_map(streams[0])["metadata"]["resourceVersion"]
            for stream in streams[1:]:
                got = next_config_map(stream)["metadata"]["resourceVersion"]
                assert got == resource_version, f"resource version mismatch, expected {resource_version} but got {got}"
        assert not failures, f"the event producer failed: {failures}"
    finally:
        stop.set()
        for stream in streams:
            stream.stop()
        producer.join(5)


# ---------------------------------------------------------------------------------------------------------------------
# AdmissionWebhook (configuration objects, with a webhook served from this test process)
# ---------------------------------------------------------------------------------------------------------------------


def serve_json_over_https(directory, answer):
    """A started HTTPS server on 127.0.0.1 with the certificate in `directory` (tls.crt, tls.key): each POST's JSON
    body goes to `answer(path, body)`, whose result is sent back as JSON. Stop it with shutdown() and
    server_close()."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            review = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            body = json.dumps(answer(self.path, review)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(directory / "tls.crt"), str(directory / "tls.key"))
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return httpd


class WebhookServer:
    """An HTTPS admission webhook on 127.0.0.1, answering as upstream's e2e webhook image (agnhost webhook) does on
    the paths these tests use. Upstream runs that image in a pod behind a Service; here the configurations name it
    by URL, with its own CA in caBundle."""

    def __init__(self, directory):
        self.ca_bundle = self._certificates(directory)
        self.httpd = serve_json_over_https(directory, self.answer)
        self.port = self.httpd.server_address[1]

    def answer(self, path, review):
        return {
            "apiVersion": review.get("apiVersion", "admission.k8s.io/v1"),
            "kind": "AdmissionReview",
            # The API server adds ?timeout=10s to the URL, as upstream's does.
            "response": self.admit(path.split("?")[0], review["request"]),
        }

    @staticmethod
    def _certificates(directory):
        """A CA, and a serving certificate for IP 127.0.0.1 signed by it. Returns the CA in PEM."""
        openssl(
            f"req -x509 {NEW_KEY} -keyout {{key}} -out {{crt}} -days 2 -subj /CN=e2e-webhook-ca",
            key=directory / "ca.key",
            crt=directory / "ca.crt",
        )
        openssl(
            f"req -new {NEW_KEY} -keyout {{key}} -out {{csr}} -subj /CN=127.0.0.1",
            key=directory / "tls.key",
            csr=directory / "tls.csr",
        )
        (directory / "ext.cnf").write_text(
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
            "keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n"
        )
        openssl(
            "x509 -req -in {csr} -CA {ca} -CAkey {ca_key} -CAcreateserial -out {crt} -days 2 -extfile {ext}",
            csr=directory / "tls.csr",
            ca=directory / "ca.crt",
            ca_key=directory / "ca.key",
            crt=directory / "tls.crt",
            ext=directory / "ext.cnf",
        )
        return (directory / "ca.crt").read_bytes()

    def admit(self, path, request):
        response = {"uid": request["uid"], "allowed": True}
        data = (request.get("object") or {}).get("data") or {}
        if path == "/configmaps" and data.get("webhook-e2e-test") == "webhook-disallow":
            response.update(
                allowed=False, status={"message": "the configmap contains unwanted key and value", "code": 403}
            )
        elif path == "/mutating-configmaps" and data.get("mutation-start") == "yes":
            patch = [{"op": "add", "path": "/data/mutation-stage-1", "value": "yes"}]
            response.update(patchType="JSONPatch", patch=base64.b64encode(json.dumps(patch).encode()).decode())
        elif path == "/always-deny":
            response.update(allowed=False, status={"message": "this webhook denies all requests", "code": 403})
        return response

    def client_config(self, path):
        return {"url": f"https://127.0.0.1:{self.port}{path}", "caBundle": base64.b64encode(self.ca_bundle).decode()}

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def webhook_server(tmp_path):
    server = WebhookServer(tmp_path)
    yield server
    server.stop()


def label_namespace(core, namespace, unique_name):
    """Upstream's labelNamespace: the webhooks select namespaces by a label named after the test."""
    core.patch_namespace(namespace, {"metadata": {"labels": {unique_name: "true"}}})


def configmap_rule(operations):
    return {"operations": operations, "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}


def is_ready_webhook(server, unique_name, name):
    """new{Validating,Mutating}IsReadyWebhookFixture: only answers marker requests in the markers namespace, which
    these tests do not use (the webhook server here is ready before the configuration is created)."""
    return {
        "name": name,
        "rules": [configmap_rule(["CREATE"])],
        "clientConfig": server.client_config("/always-deny"),
        "failurePolicy": "Ignore",
        "sideEffects": "None",
        "admissionReviewVersions": ["v1", "v1beta1"],
        "namespaceSelector": {"matchLabels": {unique_name + "-markers": "true"}},
        "objectSelector": {"matchLabels": {unique_name: "true"}},
    }


def poll_configmap_creates(core, namespace, data, done, what, timeout=CONTROLLER_TIMEOUT):
    """Upstream's 100 ms poll: create ConfigMaps with `data` (deleting those that get created) until `done(created
    ConfigMap or None, error or None)` holds."""

    def attempt():
        name = str(uuid.uuid4())
        try:
            created = core.create_namespaced_config_map(
                namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name), data=dict(data))
            )
        except ApiException as error:
            if "denied" not in (error.body or ""):
                raise
            return done(None, error), status_of(error).get("message")
        core.delete_namespaced_config_map(name, namespace)
        return done(created, None), created.data

    wait_until(attempt, what, timeout=timeout, interval=0.1)


def test_admissionwebhook_patching_updating_a_validating_webhook_should_work(
    api_client, core, namespace, webhook_server
):
    """AdmissionWebhook patching/updating a validating webhook should work.

    Upstream: test/e2e/apimachinery/webhook.go. A validating webhook denies ConfigMaps with unwanted data; after an
    update (PUT) of the configuration drops CREATE from its rule such a ConfigMap is admitted, and after a JSON patch
    puts CREATE back it is denied again. The webhook is served from this test process instead of a pod behind a
    Service.
    """
    unique = namespace
    label_namespace(core, namespace, unique)
    path = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
    name = "e2e-" + random_suffix() + "-" + unique
    deny = {
        "name": "deny-unwanted-configmap-data.k8s.io",
        "rules": [configmap_rule(["CREATE", "UPDATE", "DELETE"])],
        "namespaceSelector": {
            "matchLabels": {unique: "true"},
            "matchExpressions": [{"key": "skip-webhook-admission", "operator": "NotIn", "values": ["yes"]}],
        },
        "clientConfig": webhook_server.client_config("/configmaps"),
        "sideEffects": "None",
        "admissionReviewVersions": ["v1", "v1beta1"],
    }
    configuration = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            deny,
            is_ready_webhook(webhook_server, unique, "validating-is-webhook-configuration-ready.k8s.io"),
        ],
    }
    call(api_client, "POST", path, configuration)
    try:
        non_compliant = {"webhook-e2e-test": "webhook-disallow"}
        poll_configmap_creates(
            core,
            namespace,
            non_compliant,
            lambda created, error: error is not None,
            "a non-compliant ConfigMap to be denied",
        )

        def update():
            current = call(api_client, "GET", f"{path}/{name}")
            current["webhooks"][0]["rules"][0]["operations"] = ["UPDATE"]
            return call(api_client, "PUT", f"{path}/{name}", current)

        retry_on_conflict(update)
        poll_configmap_creates(
            core,
            namespace,
            non_compliant,
            lambda created, error: created is not None,
            "a non-compliant ConfigMap to be admitted once the webhook no longer sees CREATE",
        )

        patch = [{"op": "replace", "path": "/webhooks/0/rules/0/operations", "value": ["CREATE"]}]
        patched = call(api_client, "PATCH", f"{path}/{name}", patch, JSON_PATCH)
        assert patched["webhooks"][0]["rules"][0]["operations"] == ["CREATE"], patched["webhooks"][0]["rules"]
        poll_configmap_creates(
            core,
            namespace,
            non_compliant,
            lambda created, error: error is not None,
            "a non-compliant ConfigMap to be denied again once CREATE is patched back",
        )
    finally:
        call(api_client, "DELETE", f"{path}/{name}")


def test_admissionwebhook_patching_updating_a_mutating_webhook_should_work(api_client, core, namespace, webhook_server):
    """AdmissionWebhook patching/updating a mutating webhook should work.

    Upstream: test/e2e/apimachinery/webhook.go. A mutating webhook adds data to ConfigMaps on CREATE; after an update
    (PUT) of the configuration makes its rule UPDATE only, a new ConfigMap is not mutated, and after a JSON patch puts
    CREATE back it is mutated again. The webhook is served from this test process instead of a pod behind a Service.
    """
    unique = namespace
    label_namespace(core, namespace, unique)
    path = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
    name = "e2e-" + random_suffix() + "-" + unique
    mutate = {
        "name": "adding-configmap-data-stage-1.k8s.io",
        "rules": [configmap_rule(["CREATE"])],
        "clientConfig": webhook_server.client_config("/mutating-configmaps"),
        "sideEffects": "None",
        "admissionReviewVersions": ["v1", "v1beta1"],
        "namespaceSelector": {"matchLabels": {unique: "true"}},
    }
    configuration = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            mutate,
            is_ready_webhook(webhook_server, unique, "mutating-is-webhook-configuration-ready.k8s.io"),
        ],
    }
    call(api_client, "POST", path, configuration)
    try:
        to_be_mutated = {"mutation-start": "yes"}
        current = call(api_client, "GET", f"{path}/{name}")
        current["webhooks"][0]["rules"][0]["operations"] = ["UPDATE"]
        call(api_client, "PUT", f"{path}/{name}", current)
        poll_configmap_creates(
            core,
            namespace,
            to_be_mutated,
            lambda created, error: error is None and "mutation-stage-1" not in (created.data or {}),
            "a ConfigMap that is not mutated once the webhook no longer sees CREATE",
        )

        patch = [{"op": "replace", "path": "/webhooks/0/rules/0/operations", "value": ["CREATE"]}]
        call(api_client, "PATCH", f"{path}/{name}", patch, JSON_PATCH)
        poll_configmap_creates(
            core,
            namespace,
            to_be_mutated,
            lambda created, error: error is None and "mutation-stage-1" in (created.data or {}),
            "a ConfigMap that is mutated once CREATE is patched back",
        )
    finally:
        call(api_client, "DELETE", f"{path}/{name}")


# ---------------------------------------------------------------------------------------------------------------------
# sig-apps: DaemonSet, PodDisruptionBudget, Job, ReplicaSet, StatefulSet
# ---------------------------------------------------------------------------------------------------------------------


def new_daemon_set(name, labels):
    """e2edaemonset.NewDaemonSet with a label on the DaemonSet itself (newDaemonSetWithLabel)."""
    return client.V1DaemonSet(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1DaemonSetSpec(
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(
                    containers=[
                        client.V1Container(
                            name="app",
                            image=HTTPD_IMAGE,
                            ports=[client.V1ContainerPort(container_port=9376)],
                            security_context=client.V1SecurityContext(),
                        )
                    ],
                    security_context=client.V1PodSecurityContext(),
                ),
            ),
        ),
    )


def check_daemon_status(apps, namespace, name):
    """e2edaemonset.CheckDaemonStatus: the desired, current and ready counts agree (all 0 without nodes)."""
    status = apps.read_namespaced_daemon_set(name, namespace).status or client.V1DaemonSetStatus(
        current_number_scheduled=0, desired_number_scheduled=0, number_misscheduled=0, number_ready=0
    )
    counts = [status.desired_number_scheduled or 0, status.current_number_scheduled or 0, status.number_ready or 0]
    assert counts[0] == counts[1] == counts[2], f"desired, current and ready differ: {counts}"


def test_daemon_set_should_list_and_delete_a_collection_of_daemonsets(apps, namespace):
    """Daemon set should list and delete a collection of DaemonSets.

    Upstream: test/e2e/apps/daemon_set.go. A labelled DaemonSet is the only one a list across all namespaces finds;
    deletecollection by the label removes it. The label's value has a random suffix (upstream: the DaemonSet's name)
    so that DaemonSets left in terminating namespaces by other tests or earlier runs are not counted. Skipped: waiting
    for the daemon pods to run on every node (there are no nodes; the status check on the counts is kept).
    """
    labels = {"daemonset-name": "daemon-set-" + random_suffix()}
    selector = f"daemonset-name={labels['daemonset-name']}"
    apps.create_namespaced_daemon_set(namespace, new_daemon_set("daemon-set", labels))
    check_daemon_status(apps, namespace, "daemon-set")

    listed = apps.list_daemon_set_for_all_namespaces(label_selector=selector)
    assert len(listed.items) == 1, [(item.metadata.namespace, item.metadata.name) for item in listed.items]

    apps.delete_collection_namespaced_daemon_set(namespace, label_selector=selector, grace_period_seconds=1)
    listed = apps.list_daemon_set_for_all_namespaces(label_selector=selector)
    assert listed.items == [], [(item.metadata.namespace, item.metadata.name) for item in listed.items]


def test_daemon_set_should_verify_changes_to_a_daemon_set_status(api_client, apps, namespace, client_with_content_type):
    """Daemon set should verify changes to a daemon set status.

    Upstream: test/e2e/apps/daemon_set.go. GET /status; PUT /status with an added condition and a merge patch of
    /status with another, each seen through a watch from the list's resourceVersion. Skipped: waiting for the daemon
    pods to run on every node (there are no nodes).
    """
    labels = {"daemonset-name": "daemon-set"}
    selector = "daemonset-name=daemon-set"
    path = f"/apis/apps/v1/namespaces/{namespace}/daemonsets"
    listed = apps.list_daemon_set_for_all_namespaces(label_selector=selector)
    created = apps.create_namespaced_daemon_set(namespace, new_daemon_set("daemon-set", labels))
    check_daemon_status(apps, namespace, "daemon-set")

    status = call(api_client, "GET", f"{path}/daemon-set/status")
    assert status["metadata"]["name"] == "daemon-set"

    def update():
        current = apps.read_namespaced_daemon_set("daemon-set", namespace)
        current.status.conditions = (current.status.conditions or []) + [
            client.V1DaemonSetCondition(type="StatusUpdate", status="True", reason="E2E", message="Set from e2e test")
        ]
        return apps.replace_namespaced_daemon_set_status("daemon-set", namespace, current)

    retry_on_conflict(update)

    def ours(obj):
        return (
            obj["metadata"]["name"] == created.metadata.name
            and obj["metadata"]["namespace"] == namespace
            and obj["metadata"].get("labels", {}).get("daemonset-name") == "daemon-set"
        )

    merge = client.AppsV1Api(client_with_content_type(MERGE_PATCH))
    watch_status_update_then_patch(
        api_client,
        path,
        listed.metadata.resource_version,
        selector,
        ours,
        lambda body: merge.patch_namespaced_daemon_set_status("daemon-set", namespace, body),
    )


def create_pdb(policy, namespace, name, min_available, labels):
    """createPDBMinAvailableOrDie, which waits for the disruption controller to process the budget."""
    budget = client.V1PodDisruptionBudget(
        metadata=client.V1ObjectMeta(name=name, namespace=namespace, labels=labels),
        spec=client.V1PodDisruptionBudgetSpec(
            selector=client.V1LabelSelector(match_labels={"foo": "bar"}), min_available=min_available
        ),
    )
    policy.create_namespaced_pod_disruption_budget(namespace, budget)
    wait_for_pdb_processed(policy, namespace, name)


def wait_for_pdb_processed(policy, namespace, name):
    def check():
        budget = policy.read_namespaced_pod_disruption_budget(name, namespace)
        observed = budget.status.observed_generation if budget.status else None
        return observed is not None and observed >= budget.metadata.generation, budget.status

    wait_until(check, f"PodDisruptionBudget {name} to be processed (status.observedGeneration)")


def test_disruptioncontroller_list_and_delete_a_collection_of_poddisruptionbudgets_in_all_namespaces(
    api_client, core, namespace
):
    """DisruptionController: list and delete a collection of PodDisruptionBudgets in all namespaces.

    Upstream: test/e2e/apps/disruption.go ("Listing PodDisruptionBudgets for all namespaces should list and delete a
    collection of PodDisruptionBudgets"). Two budgets here and one in a second namespace carry a label; a list across
    all namespaces finds the three, a list in this namespace the two, and a deletecollection here removes them. The
    label's value has a random suffix (upstream: bar_pdb) so that budgets of earlier runs in terminating namespaces
    cannot be counted.
    """
    policy = client.PolicyV1Api(api_client)
    labels = {"foo_pdb": "bar_pdb-" + random_suffix()}
    selector = f"foo_pdb={labels['foo_pdb']}"
    other = "disruption-2-" + random_suffix()
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=other)))
    try:
        create_pdb(policy, namespace, "foo", 2, labels)
        create_pdb(policy, namespace, "foo2", "1%", labels)
        create_pdb(policy, other, "foo3", 2, labels)

        everywhere = policy.list_pod_disruption_budget_for_all_namespaces(label_selector=selector)
        assert sorted(item.metadata.name for item in everywhere.items) == ["foo", "foo2", "foo3"]
        here = policy.list_namespaced_pod_disruption_budget(namespace, label_selector=selector)
        assert sorted(item.metadata.name for item in here.items) == ["foo", "foo2"]

        policy.delete_collection_namespaced_pod_disruption_budget(namespace)

        def deleted():
            names = [item.metadata.name for item in policy.list_namespaced_pod_disruption_budget(namespace).items]
            return names == [], names

        wait_until(deleted, "the PodDisruptionBudget collection to be deleted")
    finally:
        core.delete_namespace(other)


def test_disruptioncontroller_should_update_patch_poddisruptionbudget_status(
    api_client, core, namespace, client_with_content_type
):
    """DisruptionController should update/patch PodDisruptionBudget status.

    Upstream: test/e2e/apps/disruption.go. A PUT of /status records a pod in status.disruptedPods (the pod must exist,
    or the controller drops the entry); GET /status shows it; a merge patch of /status that removes the map leaves it
    empty. Skipped: waiting for the pod to run and be ready (it exists, pending, which is what the controller needs).
    """
    policy = client.PolicyV1Api(api_client)
    path = f"/apis/policy/v1/namespaces/{namespace}/poddisruptionbudgets"
    create_pdb(policy, namespace, "foo", 1, {"foo": "bar"})

    wait_for_default_service_account(core, namespace)
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="pod-0", labels={"foo": "bar"}),
        spec=client.V1PodSpec(
            containers=[client.V1Container(name="donothing", image=PAUSE_IMAGE)], restart_policy="Always"
        ),
    )
    core.create_namespaced_pod(namespace, pod)

    def update():
        current = policy.read_namespaced_pod_disruption_budget("foo", namespace)
        current.status.disrupted_pods = {"pod-0": now_rfc3339()}
        return policy.replace_namespaced_pod_disruption_budget_status("foo", namespace, current)

    retry_on_conflict(update)
    wait_for_pdb_processed(policy, namespace, "foo")
    status = call(api_client, "GET", f"{path}/foo/status")
    assert "pod-0" in (status["status"].get("disruptedPods") or {}), status["status"]

    # patchPDBOrDie: a merge patch computed from the /status read to the same object with an empty disruptedPods map,
    # which JSON omits, so the patch removes the field.
    merge = client.PolicyV1Api(client_with_content_type(MERGE_PATCH))

    def patch():
        old = call(api_client, "GET", f"{path}/foo/status")
        body = {"status": {"disruptedPods": None}} if "disruptedPods" in old.get("status", {}) else {}
        return merge.patch_namespaced_pod_disruption_budget_status("foo", namespace, body)

    patched = retry_on_conflict(patch)
    wait_for_pdb_processed(policy, namespace, "foo")
    assert not patched.status.disrupted_pods, patched.status.disrupted_pods


def new_test_job(behavior, name, parallelism, completions, backoff_limit):
    """e2ejob.NewTestJob with restartPolicy Never."""
    commands = {"notTerminate": ["sleep", "1000000"], "succeed": ["sh", "-c", "exit 0"]}
    return client.V1Job(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1JobSpec(
            parallelism=parallelism,
            completions=completions,
            backoff_limit=backoff_limit,
            manual_selector=False,
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"job": name}),
                spec=client.V1PodSpec(
                    restart_policy="Never",
                    volumes=[client.V1Volume(name="data", empty_dir=client.V1EmptyDirVolumeSource())],
                    containers=[
                        client.V1Container(
                            name="c",
                            image=BUSYBOX_IMAGE,
                            command=commands[behavior],
                            volume_mounts=[client.V1VolumeMount(mount_path="/data", name="data")],
                            security_context=client.V1SecurityContext(),
                        )
                    ],
                ),
            ),
        ),
    )


def find_condition(conditions, condition_type):
    return next((condition for condition in conditions or [] if condition.type == condition_type), None)


def test_job_should_apply_changes_to_a_job_status(api_client, namespace, client_with_content_type):
    """Job should apply changes to a job status.

    Upstream: test/e2e/apps/job.go. A merge patch of /status adds an annotation and a custom condition with a
    lastTransitionTime; a PUT of /status changes that time; GET /status returns the Job (its uid). Skipped: waiting
    for the Job's pods to run (there are no nodes; the pods stay pending).
    """
    batch = client.BatchV1Api(api_client)
    job = batch.create_namespaced_job(namespace, new_test_job("notTerminate", "suspend-false-to-true", 2, 4, 6))

    now1 = now_rfc3339()
    condition = {
        "type": "CustomConditionType",
        "status": "True",
        "lastTransitionTime": now1.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    merge = client.BatchV1Api(client_with_content_type(MERGE_PATCH))
    patched = merge.patch_namespaced_job_status(
        job.metadata.name,
        namespace,
        {"metadata": {"annotations": {"patchedstatus": "true"}}, "status": {"conditions": [condition]}},
    )
    found = find_condition(patched.status.conditions, "CustomConditionType")
    assert found is not None, f"patched object does not have the condition: {patched.status.conditions}"
    assert found.last_transition_time == now1, found
    assert (patched.metadata.annotations or {}).get("patchedstatus") == "true", patched.metadata.annotations

    now2 = now_rfc3339()

    def update():
        current = batch.read_namespaced_job(job.metadata.name, namespace)
        found = find_condition(current.status.conditions, "CustomConditionType")
        assert found is not None, f"the condition is gone: {current.status.conditions}"
        found.last_transition_time = now2
        return batch.replace_namespaced_job_status(job.metadata.name, namespace, current)

    updated = retry_on_conflict(update)
    found = find_condition(updated.status.conditions, "CustomConditionType")
    assert found is not None and found.last_transition_time == now2, updated.status.conditions

    status = call(api_client, "GET", f"/apis/batch/v1/namespaces/{namespace}/jobs/{job.metadata.name}/status")
    assert status["metadata"]["uid"] == job.metadata.uid


def test_job_should_manage_the_lifecycle_of_a_job(api_client, namespace):
    """Job should manage the lifecycle of a job.

    Upstream: test/e2e/apps/job.go. A suspended Job is patched (a label, seen in a watch), updated to unsuspend it and
    add an annotation (seen in a watch), found by a label list across namespaces, and deleted with a deletecollection
    by label (the DELETED event seen in a watch). Skipped: waiting for the Job to complete (its pods cannot run without
    nodes).
    """
    batch = client.BatchV1Api(api_client)
    name = "e2e-" + random_suffix()
    selector = f"e2e-job-label={name}"
    path = f"/apis/batch/v1/namespaces/{namespace}/jobs"
    listed = batch.list_namespaced_job(namespace, label_selector=selector)

    job = new_test_job("succeed", name, 2, 4, 6)
    job.metadata.labels = {"e2e-job-label": name}
    job.spec.suspend = True
    job = batch.create_namespaced_job(namespace, job)
    assert job.metadata.resource_version

    patched = batch.patch_namespaced_job(name, namespace, {"metadata": {"labels": {name: "patched"}}})
    assert int(patched.metadata.resource_version) > int(job.metadata.resource_version)

    def job_event(event_type, kind, key, value):
        def condition(event):
            meta = event["object"]["metadata"]
            values = meta.get("labels" if kind == "label" else "annotations") or {}
            return (
                meta["name"] == name
                and meta["namespace"] == namespace
                and values.get(key) == value
                and event["type"] == event_type
            )

        return condition

    watch_until(
        api_client,
        path,
        listed.metadata.resource_version,
        selector,
        job_event("MODIFIED", "label", name, "patched"),
        "the patched label",
    )
    assert patched.metadata.labels.get(name) == "patched"

    def update():
        current = batch.read_namespaced_job(name, namespace)
        current.spec.suspend = False
        current.metadata.annotations = current.metadata.annotations or {}
        current.metadata.annotations["updated"] = "true"
        return current, batch.replace_namespaced_job(name, namespace, current)

    before_update, updated = retry_on_conflict(update)
    watch_until(
        api_client,
        path,
        before_update.metadata.resource_version,
        selector,
        job_event("MODIFIED", "annotation", "updated", "true"),
        "the updated annotation",
    )
    assert updated.metadata.annotations.get("updated") == "true"

    jobs = batch.list_job_for_all_namespaces(label_selector=selector)
    assert len(jobs.items) == 1, [item.metadata.name for item in jobs.items]

    batch.delete_collection_namespaced_job(namespace, label_selector=selector, propagation_policy="Background")
    watch_until(
        api_client,
        path,
        updated.metadata.resource_version,
        selector,
        job_event("DELETED", "label", "e2e-job-label", name),
        "the Job's deletion",
    )
    jobs = batch.list_job_for_all_namespaces(label_selector=selector)
    assert jobs.items == [], [item.metadata.name for item in jobs.items]


def new_rs(name, replicas, labels):
    """The apps e2e tests' newRS."""
    return client.V1ReplicaSet(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1ReplicaSetSpec(
            selector=client.V1LabelSelector(match_labels=labels),
            replicas=replicas,
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(
                    termination_grace_period_seconds=0,
                    containers=[
                        client.V1Container(
                            name="agnhost", image=AGNHOST_IMAGE, security_context=client.V1SecurityContext()
                        )
                    ],
                ),
            ),
        ),
    )


def test_replicaset_should_list_and_delete_a_collection_of_replicasets(apps, namespace):
    """ReplicaSet should list and delete a collection of ReplicaSets.

    Upstream: test/e2e/apps/replica_set.go. Skipped: waiting for the three pods to run (they are created, pending).
    """
    value = random_suffix()
    labels = {"name": "sample-pod", "pod": "agnhost", "e2e": value}
    apps.create_namespaced_replica_set(namespace, new_rs("test-rs", 3, labels))
    apps.read_namespaced_replica_set("test-rs", namespace)

    listed = apps.list_replica_set_for_all_namespaces(label_selector=f"e2e={value}")
    assert len(listed.items) == 1, [item.metadata.name for item in listed.items]

    apps.delete_collection_namespaced_replica_set(namespace, label_selector=f"e2e={value}", grace_period_seconds=1)
    listed = apps.list_replica_set_for_all_namespaces(label_selector=f"e2e={value}")
    assert listed.items == [], [item.metadata.name for item in listed.items]


def test_replicaset_should_validate_replicaset_status_endpoints(api_client, apps, namespace, client_with_content_type):
    """ReplicaSet should validate Replicaset Status endpoints.

    Upstream: test/e2e/apps/replica_set.go. GET /status; PUT /status with an added condition and a merge patch of
    /status with another, each seen through a watch from the list's resourceVersion. Skipped: waiting for the pod to
    run (it is created, pending).
    """
    labels = {"name": "sample-pod", "pod": "agnhost"}
    selector = "name=sample-pod,pod=agnhost"
    path = f"/apis/apps/v1/namespaces/{namespace}/replicasets"
    listed = apps.list_replica_set_for_all_namespaces(label_selector=selector)
    created = apps.create_namespaced_replica_set(namespace, new_rs("test-rs", 1, labels))

    status = call(api_client, "GET", f"{path}/test-rs/status")
    assert status["metadata"]["name"] == "test-rs"

    def update():
        current = apps.read_namespaced_replica_set("test-rs", namespace)
        current.status.conditions = (current.status.conditions or []) + [
            client.V1ReplicaSetCondition(type="StatusUpdate", status="True", reason="E2E", message="Set from e2e test")
        ]
        return apps.replace_namespaced_replica_set_status("test-rs", namespace, current)

    retry_on_conflict(update)

    def ours(obj):
        meta = obj["metadata"]
        return (
            meta["name"] == created.metadata.name
            and meta["namespace"] == namespace
            and (meta.get("labels") or {}).get("name") == "sample-pod"
            and (meta.get("labels") or {}).get("pod") == "agnhost"
        )

    merge = client.AppsV1Api(client_with_content_type(MERGE_PATCH))
    watch_status_update_then_patch(
        api_client,
        path,
        listed.metadata.resource_version,
        selector,
        ours,
        lambda body: merge.patch_namespaced_replica_set_status("test-rs", namespace, body),
    )


def test_statefulset_basic_functionality_should_validate_statefulset_status_endpoints(
    api_client, core, apps, namespace, client_with_content_type
):
    """StatefulSet Basic functionality: should validate Statefulset Status endpoints.

    Upstream: test/e2e/apps/statefulset.go (with the headless Service its BeforeEach creates). A label is patched on,
    GET /status; PUT /status with an added condition and a merge patch of /status with another, each seen through a
    watch from the list's resourceVersion. Skipped: waiting for the pod to run and be ready (it is created, pending);
    upstream's wait for status.observedGeneration is kept.
    """
    labels = {"foo": "bar", "baz": "blah"}
    selector = "e2e=testing"
    path = f"/apis/apps/v1/namespaces/{namespace}/statefulsets"
    core.create_namespaced_service(
        namespace,
        client.V1Service(
            metadata=client.V1ObjectMeta(name="test"),
            spec=client.V1ServiceSpec(
                cluster_ip="None", selector=labels, ports=[client.V1ServicePort(name="http", port=80, target_port=80)]
            ),
        ),
    )
    listed = apps.list_stateful_set_for_all_namespaces(label_selector=selector)

    stateful_set = client.V1StatefulSet(
        metadata=client.V1ObjectMeta(name="ss2", namespace=namespace),
        spec=client.V1StatefulSetSpec(
            selector=client.V1LabelSelector(match_labels=labels),
            replicas=1,
            service_name="test",
            update_strategy=client.V1StatefulSetUpdateStrategy(type="RollingUpdate"),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels, annotations={}),
                spec=client.V1PodSpec(
                    containers=[
                        client.V1Container(
                            name="webserver",
                            image=HTTPD_IMAGE,
                            readiness_probe=client.V1Probe(
                                http_get=client.V1HTTPGetAction(path="/index.html", port=80),
                                period_seconds=1,
                                success_threshold=1,
                                failure_threshold=1,
                            ),
                        )
                    ]
                ),
            ),
        ),
    )
    apps.create_namespaced_stateful_set(namespace, stateful_set)

    def observed():
        current = apps.read_namespaced_stateful_set("ss2", namespace)
        generation = current.status.observed_generation if current.status else None
        return generation is not None and generation >= current.metadata.generation, current.status

    wait_until(observed, "the StatefulSet's status.observedGeneration")

    patched = apps.patch_namespaced_stateful_set("ss2", namespace, {"metadata": {"labels": {"e2e": "testing"}}})
    assert patched.metadata.labels.get("e2e") == "testing"

    status = call(api_client, "GET", f"{path}/ss2/status")
    assert status["metadata"]["name"] == "ss2"

    def update():
        current = apps.read_namespaced_stateful_set("ss2", namespace)
        current.status.conditions = (current.status.conditions or []) + [
            client.V1StatefulSetCondition(type="StatusUpdate", status="True", reason="E2E", message="Set from e2e test")
        ]
        return apps.replace_namespaced_stateful_set_status("ss2", namespace, current)

    retry_on_conflict(update)

    def ours(obj):
        meta = obj["metadata"]
        return (
            meta["name"] == "ss2"
            and meta["namespace"] == namespace
            and (meta.get("labels") or {}).get("e2e") == "testing"
        )

    merge = client.AppsV1Api(client_with_content_type(MERGE_PATCH))
    watch_status_update_then_patch(
        api_client,
        path,
        listed.metadata.resource_version,
        selector,
        ours,
        lambda body: merge.patch_namespaced_stateful_set_status("ss2", namespace, body),
    )


# ---------------------------------------------------------------------------------------------------------------------
# sig-auth: CertificateSigningRequests, ServiceAccounts
# ---------------------------------------------------------------------------------------------------------------------


def test_certificates_api_should_support_csr_api_operations(api_client, client_with_content_type, tmp_path):
    """Certificates API should support CSR API operations.

    Upstream: test/e2e/auth/certificates.go. Discovery of certificates.k8s.io/v1 and its three resources; create
    (three times, by generateName), get, list by spec.signerName, watch, patch and update of the CSR; get, patch and
    update of /approval and of /status; delete and deletecollection. The CSR and the certificate put in its status are
    made with openssl.
    """
    certificates = client.CertificatesV1Api(api_client)
    merge = client.CertificatesV1Api(client_with_content_type(MERGE_PATCH))
    names = "-subj /CN=e2e.example.com -addext subjectAltName=DNS:e2e.example.com"
    csr_pem = openssl(f"req -new {NEW_KEY} -keyout {{key}} {names}", key=tmp_path / "csr.key")
    certificate_pem = openssl(f"req -x509 {NEW_KEY} -keyout {{key}} -days 1 {names}", key=tmp_path / "cert.key")
    signer = "example.com/e2e-" + random_suffix(8)
    by_signer = f"spec.signerName={signer}"
    template = client.V1CertificateSigningRequest(
        metadata=client.V1ObjectMeta(generate_name="e2e-example-csr-"),
        spec=client.V1CertificateSigningRequestSpec(
            request=base64.b64encode(csr_pem).decode(),
            signer_name=signer,
            expiration_seconds=3600,
            usages=["digital signature", "key encipherment", "server auth"],
        ),
    )

    groups = call(api_client, "GET", "/apis")["groups"]
    assert any(
        group["name"] == "certificates.k8s.io" and any(version["version"] == "v1" for version in group["versions"])
        for group in groups
    ), "certificates.k8s.io/v1 in /apis"
    group = call(api_client, "GET", "/apis/certificates.k8s.io")
    assert any(version["version"] == "v1" for version in group["versions"]), group
    resources = {resource["name"] for resource in call(api_client, "GET", "/apis/certificates.k8s.io/v1")["resources"]}
    for expected in [
        "certificatesigningrequests",
        "certificatesigningrequests/approval",
        "certificatesigningrequests/status",
    ]:
        assert expected in resources, f"{expected} not in {sorted(resources)}"

    try:
        certificates.create_certificate_signing_request(template)
        certificates.create_certificate_signing_request(template)
        created = certificates.create_certificate_signing_request(template)
        name = created.metadata.name

        gotten = certificates.read_certificate_signing_request(name)
        assert gotten.metadata.uid == created.metadata.uid
        assert gotten.spec.expiration_seconds == 3600

        csrs = certificates.list_certificate_signing_request(field_selector=by_signer)
        assert len(csrs.items) == 3, [item.metadata.name for item in csrs.items]

        stream = WatchStream(
            api_client,
            "/apis/certificates.k8s.io/v1/certificatesigningrequests",
            timeout_seconds=30,
            resourceVersion=csrs.metadata.resource_version,
            fieldSelector=f"metadata.name={name}",
        )
        try:
            patched = merge.patch_certificate_signing_request(name, {"metadata": {"annotations": {"patched": "true"}}})
            assert (patched.metadata.annotations or {}).get("patched") == "true", patched.metadata.annotations

            patched.metadata.annotations["updated"] = "true"
            updated = certificates.replace_certificate_signing_request(name, patched)
            assert updated.metadata.annotations.get("updated") == "true", updated.metadata.annotations

            while True:
                event = stream.next(EVENT_TIMEOUT)
                assert event is not None, "timed out waiting for the watch event with the patched annotation"
                assert event["type"] == "MODIFIED", f"expected MODIFIED, got {event}"
                assert event["object"]["kind"] == "CertificateSigningRequest", event
                if (event["object"]["metadata"].get("annotations") or {}).get("patched") == "true":
                    break
        finally:
            stream.stop()

        csrs_path = f"/apis/certificates.k8s.io/v1/certificatesigningrequests/{name}"
        approval = call(api_client, "GET", f"{csrs_path}/approval")
        assert (approval["apiVersion"], approval["kind"]) == ("certificates.k8s.io/v1", "CertificateSigningRequest")
        assert approval["metadata"]["uid"] == created.metadata.uid

        patched_approval = merge.patch_certificate_signing_request_approval(
            name,
            {
                "metadata": {"annotations": {"patchedapproval": "true"}},
                "status": {"conditions": [{"type": "ApprovalPatch", "status": "True", "reason": "e2e"}]},
            },
        )
        conditions = patched_approval.status.conditions or []
        assert [condition.type for condition in conditions] == ["ApprovalPatch"], conditions
        assert (
            patched_approval.metadata.annotations.get("patchedapproval") == "true"
        ), patched_approval.metadata.annotations

        patched_approval.status.conditions.append(
            client.V1CertificateSigningRequestCondition(
                type="Approved", status="True", reason="E2E", message="Set from an e2e test"
            )
        )
        updated_approval = certificates.replace_certificate_signing_request_approval(name, patched_approval)
        conditions = updated_approval.status.conditions or []
        assert len(conditions) == 2 and conditions[1].type == "Approved", conditions

        status = call(api_client, "GET", f"{csrs_path}/status")
        assert (status["apiVersion"], status["kind"]) == ("certificates.k8s.io/v1", "CertificateSigningRequest")
        assert status["metadata"]["uid"] == created.metadata.uid

        certificate = base64.b64encode(certificate_pem).decode()
        patched_status = merge.patch_certificate_signing_request_status(
            name, {"metadata": {"annotations": {"patchedstatus": "true"}}, "status": {"certificate": certificate}}
        )
        assert patched_status.status.certificate == certificate, "patched object should have the applied certificate"
        assert patched_status.metadata.annotations.get("patchedstatus") == "true", patched_status.metadata.annotations

        patched_status.status.conditions = (patched_status.status.conditions or []) + [
            client.V1CertificateSigningRequestCondition(
                type="StatusUpdate", status="True", reason="E2E", message="Set from an e2e test"
            )
        ]
        updated_status = certificates.replace_certificate_signing_request_status(name, patched_status)
        conditions = updated_status.status.conditions or []
        assert len(conditions) == len(patched_status.status.conditions), conditions
        assert conditions[-1].type == "StatusUpdate", conditions

        certificates.delete_certificate_signing_request(name)
        with pytest.raises(ApiException) as missing:
            certificates.read_certificate_signing_request(name)
        assert missing.value.status == 404
        csrs = certificates.list_certificate_signing_request(field_selector=by_signer)
        assert len(csrs.items) == 2, [item.metadata.name for item in csrs.items]

        certificates.delete_collection_certificate_signing_request(field_selector=by_signer)
        csrs = certificates.list_certificate_signing_request(field_selector=by_signer)
        assert csrs.items == [], [item.metadata.name for item in csrs.items]
    finally:
        for item in certificates.list_certificate_signing_request(field_selector=by_signer).items:
            certificates.delete_certificate_signing_request(item.metadata.name)


def test_serviceaccounts_should_run_through_the_lifecycle_of_a_serviceaccount(api_client, core, namespace):
    """ServiceAccounts should run through the lifecycle of a ServiceAccount.

    Upstream: test/e2e/auth/service_accounts.go. A labelled ServiceAccount is seen ADDED by a watch with the label
    selector (started after the create, so the event comes from the watch's initial state), MODIFIED after a strategic
    merge patch, found with its patched field by a list across namespaces, and DELETED after a deletecollection.
    """
    name = "testserviceaccount"
    selector = "test-serviceaccount-static=true"
    created = core.create_namespaced_service_account(
        namespace,
        client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name, labels={"test-serviceaccount-static": "true"})),
    )
    gotten = core.read_namespaced_service_account(name, namespace)
    assert gotten.metadata.uid == created.metadata.uid

    stream = WatchStream(
        api_client, f"/api/v1/namespaces/{namespace}/serviceaccounts", timeout_seconds=180, labelSelector=selector
    )
    try:
        expect_event(stream, "ADDED")
        core.patch_namespaced_service_account(name, namespace, {"automountServiceAccountToken": False})
        expect_event(stream, "MODIFIED")

        listed = core.list_service_account_for_all_namespaces(label_selector=selector)
        assert any(
            item.metadata.name == name
            and item.metadata.namespace == namespace
            and item.automount_service_account_token is False
            for item in listed.items
        ), [
            (item.metadata.namespace, item.metadata.name, item.automount_service_account_token) for item in listed.items
        ]

        core.delete_collection_namespaced_service_account(namespace)
        expect_event(stream, "DELETED")
    finally:
        stream.stop()


def test_serviceaccounts_should_update_a_serviceaccount(core, namespace):
    """ServiceAccounts should update a ServiceAccount.

    Upstream: test/e2e/auth/service_accounts.go. automountServiceAccountToken false at create, true after a PUT.
    """
    name = "e2e-sa-" + random_suffix()
    created = core.create_namespaced_service_account(
        namespace,
        client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name), automount_service_account_token=False),
    )
    assert created.automount_service_account_token is False

    def update():
        current = core.read_namespaced_service_account(name, namespace)
        current.automount_service_account_token = True
        return core.replace_namespaced_service_account(name, namespace, current)

    updated = retry_on_conflict(update)
    assert updated.automount_service_account_token is True


def test_serviceaccounts_should_allow_opting_out_of_api_token_automount(core, namespace):
    """ServiceAccounts should allow opting out of API token automount.

    Upstream: test/e2e/auth/service_accounts.go. Pods run as the default account (no opinion), an account that
    mounts and one that does not, each with automountServiceAccountToken unset, true and false on the pod: the pod's
    own setting wins, else the account's, else the token is mounted. Upstream only reads the created pods' volume
    mounts too; they need not run.
    """
    wait_for_default_service_account(core, namespace)
    for name, automount in (("mount", True), ("nomount", False)):
        core.create_namespaced_service_account(
            namespace,
            client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name), automount_service_account_token=automount),
        )
    token_path = "/var/run/secrets/kubernetes.io/serviceaccount"
    accounts = {"default": None, "mount": True, "nomount": False}
    for number, (account, account_automount) in enumerate(accounts.items()):
        for pod_automount in (None, True, False):
            pod = core.create_namespaced_pod(
                namespace,
                client.V1Pod(
                    metadata=client.V1ObjectMeta(name=f"pod-{number}-{pod_automount}".lower()),
                    spec=client.V1PodSpec(
                        service_account_name=account,
                        automount_service_account_token=pod_automount,
                        containers=[client.V1Container(name="token-test", image="registry.k8s.io/pause:3.10")],
                    ),
                ),
            )
            expected = next((value for value in (pod_automount, account_automount) if value is not None), True)
            mounts = [mount.mount_path for mount in pod.spec.containers[0].volume_mounts or []]
            assert (token_path in mounts) == expected, (account, pod_automount, mounts)


# ---------------------------------------------------------------------------------------------------------------------
# Deployment
# ---------------------------------------------------------------------------------------------------------------------


def test_deployment_deployment_should_support_proportional_scaling(apps, namespace):
    """Deployment deployment should support proportional scaling.

    Upstream: test/e2e/apps/deployment.go. 10 replicas with maxSurge 3 and maxUnavailable 2 roll out to an image
    that never starts, so the rollout stops at 8 old and 5 new replicas; scaled to 30, the 20 more replicas allowed
    (33 with the surge) are spread in proportion: the old ReplicaSet gets 20, the new one 13. No node runs the pods
    here, so the first ReplicaSet's pods are never available either (upstream's are); the rollout stops at the same
    sizes all the same, since unavailable old pods may be scaled down.
    """
    labels = {"name": "webserver"}
    deployment = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="webserver-deployment"),
        spec=client.V1DeploymentSpec(
            replicas=10,
            selector=client.V1LabelSelector(match_labels=labels),
            strategy=client.V1DeploymentStrategy(
                type="RollingUpdate",
                rolling_update=client.V1RollingUpdateDeployment(max_surge=3, max_unavailable=2),
            ),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[client.V1Container(name="httpd", image="httpd:2.4")]),
            ),
        ),
    )
    apps.create_namespaced_deployment(namespace, deployment)

    def replica_sets():
        items = apps.list_namespaced_replica_set(namespace).items
        return sorted(items, key=lambda rs: int(rs.metadata.annotations["deployment.kubernetes.io/revision"]))

    def sizes():
        return [rs.spec.replicas for rs in replica_sets()]

    wait_until(lambda: (sizes() == [10], sizes()), "the first ReplicaSet to have 10 replicas")

    apps.patch_namespaced_deployment(
        "webserver-deployment",
        namespace,
        {"spec": {"template": {"spec": {"containers": [{"name": "httpd", "image": "webserver:404"}]}}}},
    )
    wait_until(lambda: (sizes() == [8, 5], sizes()), "the rollout to stop at 8 old and 5 new replicas")

    apps.patch_namespaced_deployment("webserver-deployment", namespace, {"spec": {"replicas": 30}})
    wait_until(lambda: (sizes() == [20, 13], sizes()), "the old ReplicaSet to get 20 replicas and the new one 13")
    for rs in replica_sets():
        assert rs.metadata.annotations["deployment.kubernetes.io/desired-replicas"] == "30"
        assert rs.metadata.annotations["deployment.kubernetes.io/max-replicas"] == "33"


# ---------------------------------------------------------------------------------------------------------------------
# CustomResourceConversionWebhook (the converter served from this test process)
# ---------------------------------------------------------------------------------------------------------------------


class ConversionWebhookServer:
    """An HTTPS CRD conversion webhook on 127.0.0.1, converting as upstream's e2e converter (agnhost
    crd-conversion-webhook) does: v1's `hostPort: "HOST:PORT"` is v2's `host` and `port`. Every review it answers
    is kept in `reviews`."""

    def __init__(self, directory):
        self.ca_bundle = WebhookServer._certificates(directory)
        self.reviews = []
        self.httpd = serve_json_over_https(directory, self.answer)
        self.port = self.httpd.server_address[1]

    def answer(self, path, review):
        self.reviews.append(review)
        request = review["request"]
        return {
            "apiVersion": review["apiVersion"],
            "kind": "ConversionReview",
            "response": {
                "uid": request["uid"],
                "convertedObjects": [self.convert(o, request["desiredAPIVersion"]) for o in request["objects"]],
                "result": {"status": "Success"},
            },
        }

    @staticmethod
    def convert(obj, desired):
        converted = dict(obj)
        if obj["apiVersion"].endswith("/v1") and desired.endswith("/v2") and "hostPort" in converted:
            host, port = converted.pop("hostPort").split(":")
            converted.update(host=host, port=port)
        elif obj["apiVersion"].endswith("/v2") and desired.endswith("/v1") and "host" in converted:
            converted["hostPort"] = f"{converted.pop('host')}:{converted.pop('port')}"
        converted["apiVersion"] = desired
        return converted

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def conversion_webhook(tmp_path):
    server = ConversionWebhookServer(tmp_path)
    yield server
    server.stop()


def create_converted_crd(api_client, webhook):
    """The entry's CRD: versions v1 (stored) and v2 of one namespaced kind, converted by the webhook."""
    name = "e2e-test-crd-conversion-" + random_suffix()
    group = "stable.example.com"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{name}s.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": name + "s", "singular": name, "kind": "E2eTestCrd" + random_suffix().capitalize()},
            "versions": [
                {"name": "v1", "served": True, "storage": True, "schema": ALLOW_ALL_SCHEMA},
                {"name": "v2", "served": True, "storage": False, "schema": ALLOW_ALL_SCHEMA},
            ],
            "conversion": {
                "strategy": "Webhook",
                "webhook": {
                    "clientConfig": {
                        "url": f"https://127.0.0.1:{webhook.port}/crdconvert",
                        "caBundle": base64.b64encode(webhook.ca_bundle).decode(),
                    },
                    "conversionReviewVersions": ["v1", "v1beta1"],
                },
            },
        },
    }
    created = create_crd(api_client, crd)
    wait_for_served(api_client, group, "v2", name + "s")
    return created


def test_customresourceconversionwebhook_should_be_able_to_convert_from_cr_v1_to_cr_v2(
    api_client, namespace, conversion_webhook
):
    """CustomResourceConversionWebhook should be able to convert from CR v1 to CR v2.

    Upstream: test/e2e/apimachinery/crd_conversion_webhook.go. A custom resource created in v1 with `hostPort` reads
    in v2 as `host` and `port`, converted by the CRD's webhook. The webhook is an HTTPS server in the test process,
    named by URL, instead of a pod behind a Service.
    """
    crd = create_converted_crd(api_client, conversion_webhook)
    try:
        group, plural, kind = crd["spec"]["group"], crd["spec"]["names"]["plural"], crd["spec"]["names"]["kind"]
        v1 = f"/apis/{group}/v1/namespaces/{namespace}/{plural}"
        v2 = f"/apis/{group}/v2/namespaces/{namespace}/{plural}"
        call(api_client, "POST", v1, {"apiVersion": f"{group}/v1", "kind": kind, "metadata": {"name": "cr-instance-1"},
                                      "hostPort": "localhost:7070"})
        read = call(api_client, "GET", f"{v2}/cr-instance-1")
        assert read["apiVersion"] == f"{group}/v2"
        assert (read.get("host"), read.get("port"), "hostPort" in read) == ("localhost", "7070", False), read
        assert any(r["request"]["desiredAPIVersion"] == f"{group}/v2" for r in conversion_webhook.reviews)
        # The v1 read needs no conversion: the object is stored as v1.
        assert call(api_client, "GET", f"{v1}/cr-instance-1")["hostPort"] == "localhost:7070"
    finally:
        delete_crd(api_client, crd["metadata"]["name"])


def test_customresourceconversionwebhook_should_be_able_to_convert_a_non_homogeneous_list_of_crs(
    api_client, namespace, conversion_webhook
):
    """CustomResourceConversionWebhook should be able to convert a non homogeneous list of CRs.

    Upstream: test/e2e/apimachinery/crd_conversion_webhook.go. One custom resource written in v1, one in v2: a list
    in either version shows both in that version. The webhook is an HTTPS server in the test process, named by URL.
    """
    crd = create_converted_crd(api_client, conversion_webhook)
    try:
        group, plural, kind = crd["spec"]["group"], crd["spec"]["names"]["plural"], crd["spec"]["names"]["kind"]
        v1 = f"/apis/{group}/v1/namespaces/{namespace}/{plural}"
        v2 = f"/apis/{group}/v2/namespaces/{namespace}/{plural}"
        call(api_client, "POST", v1, {"apiVersion": f"{group}/v1", "kind": kind, "metadata": {"name": "cr-instance-1"},
                                      "hostPort": "localhost:7070"})
        call(api_client, "POST", v2, {"apiVersion": f"{group}/v2", "kind": kind, "metadata": {"name": "cr-instance-2"},
                                      "host": "localhost", "port": "8080"})
        listed_v1 = call(api_client, "GET", v1)["items"]
        assert [(o["metadata"]["name"], o["apiVersion"], o.get("hostPort")) for o in listed_v1] == [
            ("cr-instance-1", f"{group}/v1", "localhost:7070"),
            ("cr-instance-2", f"{group}/v1", "localhost:8080"),
        ]
        listed_v2 = call(api_client, "GET", v2)["items"]
        assert [(o["metadata"]["name"], o["apiVersion"], o.get("host"), o.get("port")) for o in listed_v2] == [
            ("cr-instance-1", f"{group}/v2", "localhost", "7070"),
            ("cr-instance-2", f"{group}/v2", "localhost", "8080"),
        ]
        assert all("hostPort" not in o for o in listed_v2)
    finally:
        delete_crd(api_client, crd["metadata"]["name"])


def test_a_conversion_webhook_that_is_down_fails_reads_in_the_other_version(api_client, namespace, tmp_path):
    """Reads that need a conversion fail with upstream's 500 when the webhook cannot be reached; reads in the
    version an object was written in do not need it."""
    webhook = ConversionWebhookServer(tmp_path)
    crd = create_converted_crd(api_client, webhook)
    webhook.stop()
    try:
        group, plural, kind = crd["spec"]["group"], crd["spec"]["names"]["plural"], crd["spec"]["names"]["kind"]
        v1 = f"/apis/{group}/v1/namespaces/{namespace}/{plural}"
        call(api_client, "POST", v1, {"apiVersion": f"{group}/v1", "kind": kind, "metadata": {"name": "x"}})
        assert call(api_client, "GET", f"{v1}/x")["metadata"]["name"] == "x"
        with pytest.raises(ApiException) as error:
            call(api_client, "GET", f"/apis/{group}/v2/namespaces/{namespace}/{plural}/x")
        assert error.value.status == 500
        assert f"conversion webhook for {group}/v1, Kind={kind} failed" in status_of(error.value)["message"]
    finally:
        delete_crd(api_client, crd["metadata"]["name"])
