"""Kubernetes v1.33 AdmissionWebhook conformance entries that need no running pod, reproduced with the official
Python client.

Upstream: test/e2e/apimachinery/webhook.go. Upstream deploys its webhook image (agnhost `webhook`) in a pod behind
a Service; here an HTTPS server in the test process answers as that image does on every path these tests use
(`AgnhostWebhookServer`), and the configurations name it by URL, with its CA in caBundle. Everything else follows
upstream: the same configurations, the same objects, the same checks. As upstream, each configuration carries an
"is ready" webhook that denies marker ConfigMaps in a markers namespace, and a test waits until a marker is denied
(`wait_webhook_configuration_ready`) before it relies on the configuration: kaasd reloads its webhook
configurations shortly after each write to them, not within the write.

Cluster-scoped objects (webhook configurations, CustomResourceDefinitions, extra namespaces) get names made from
the test's namespace and are deleted at the end of their test.
"""

import base64
import json
import threading
import uuid

import pytest
from kubernetes import client
from kubernetes.client import ApiException

from test_conformance import (
    ALLOW_ALL_SCHEMA,
    CRDS,
    JSON_PATCH,
    PAUSE_IMAGE,
    WebhookServer,
    call,
    configmap_rule,
    is_ready_webhook,
    label_namespace,
    random_suffix,
    retry_on_conflict,
    status_of,
    wait_for_default_service_account,
    wait_for_served,
    wait_until,
)

STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
MUTATING = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
VALIDATING = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
REVIEW_VERSIONS = ["v1", "v1beta1"]
# Upstream's f.BaseName for these tests is "webhook": its CRDs are in this group.
CRD_GROUP = "webhook.example.com"


# ---------------------------------------------------------------------------------------------------------------------
# The webhook: agnhost's answers
# ---------------------------------------------------------------------------------------------------------------------


def json_patch_response(patch):
    return {"allowed": True, "patchType": "JSONPatch", "patch": base64.b64encode(json.dumps(patch).encode()).decode()}


def error_response(message):
    """agnhost's toV1AdmissionResponse(err): not allowed, the error as the status message."""
    return {"allowed": False, "status": {"message": message}}


def denied_with_reason(reason):
    """agnhost's denials that set only `Result.Reason` (configmaps, custom resources): the API server must turn the
    reason into the message, as upstream's ToStatusErr does."""
    return {"allowed": False, "status": {"reason": reason}}


def same_resource(request, group, version, resource):
    found = request.get("resource") or {}
    return (found.get("group", ""), found.get("version"), found.get("resource")) == (group, version, resource)


class AgnhostWebhookServer(WebhookServer):
    """The e2e webhook image's answers (test/images/agnhost/webhook), per URL path. It also records every review it
    gets, and can be disarmed (every answer allows) so that a test can always clean up."""

    def __init__(self, directory):
        self.calls = []
        self.calls_lock = threading.Lock()
        self.disarmed = False
        self.stopping = threading.Event()
        super().__init__(directory)

    def admit(self, path, request):
        with self.calls_lock:
            self.calls.append((path, request.get("operation"), dict(request.get("resource") or {})))
        if self.disarmed:
            return {"uid": request["uid"], "allowed": True}
        handler = {
            "/configmaps": self.admit_configmaps,
            "/mutating-configmaps": self.mutate_configmaps,
            "/pods": self.admit_pods,
            "/mutating-pods": self.mutate_pods,
            "/custom-resource": self.admit_custom_resource,
            "/mutating-custom-resource": self.mutate_custom_resource,
            "/crd": self.admit_crd,
            "/add-label": self.add_label,
            "/always-allow-delay-5s": self.always_allow_delay_five_seconds,
        }.get(path)
        if handler is None:
            return super().admit(path, request)
        response = handler(request)
        response["uid"] = request["uid"]
        return response

    def calls_for_group(self, group):
        with self.calls_lock:
            return [seen for seen in self.calls if seen[2].get("group") == group]

    @staticmethod
    def object_of(request):
        """The object a validating handler looks at: the old one for a DELETE."""
        if request.get("operation") == "DELETE":
            return request.get("oldObject") or {}
        return request.get("object") or {}

    # configmap.go
    def admit_configmaps(self, request):
        if not same_resource(request, "", "v1", "configmaps"):
            return error_response("expect resource to be { v1 configmaps}")
        operation = request.get("operation")
        data = self.object_of(request).get("data") or {}
        response = {"allowed": True}
        value = data.get("webhook-e2e-test")
        if value == "webhook-disallow" and operation in ("CREATE", "UPDATE"):
            response = denied_with_reason("the configmap contains unwanted key and value")
        if value == "webhook-nondeletable" and operation == "DELETE":
            response = denied_with_reason("the configmap cannot be deleted because it contains unwanted key and value")
        return response

    def mutate_configmaps(self, request):
        if not same_resource(request, "", "v1", "configmaps"):
            return error_response("expect resource to be { v1 configmaps}")
        return self.stage_patch((request.get("object") or {}).get("data") or {})

    @staticmethod
    def stage_patch(data):
        """configmap.go and customresource.go: add mutation-stage-1 to an object with mutation-start, or
        mutation-stage-2 to one that already has mutation-stage-1 (the later rule wins)."""
        patch = None
        if data.get("mutation-start") == "yes":
            patch = [{"op": "add", "path": "/data/mutation-stage-1", "value": "yes"}]
        if data.get("mutation-stage-1") == "yes":
            patch = [{"op": "add", "path": "/data/mutation-stage-2", "value": "yes"}]
        return json_patch_response(patch) if patch else {"allowed": True}

    # pods.go
    def admit_pods(self, request):
        if not same_resource(request, "", "v1", "pods"):
            return error_response("expect resource to be { v1 pods}")
        pod = request.get("object") or {}
        allowed, message = True, ""
        value = ((pod.get("metadata") or {}).get("labels") or {}).get("webhook-e2e-test")
        if value == "webhook-disallow":
            allowed, message = False, message + "the pod contains unwanted label; "
        if value == "wait-forever":
            # agnhost never answers; the API server's timeout must end the request. (Bounded here, and ended early
            # when the server stops, so the test process never keeps a thread forever.)
            self.stopping.wait(60)
            return error_response("the pod response should not be sent")
        for container in (pod.get("spec") or {}).get("containers") or []:
            if "webhook-disallow" in container.get("name", ""):
                allowed, message = False, message + "the pod contains unwanted container name; "
        if allowed:
            return {"allowed": True}
        return {"allowed": False, "status": {"message": message.strip()}}

    def mutate_pods(self, request):
        if not same_resource(request, "", "v1", "pods"):
            return error_response("expect resource to be { v1 pods}")
        pod = request.get("object") or {}
        init_containers = (pod.get("spec") or {}).get("initContainers") or []
        if (pod.get("metadata") or {}).get("name") != "webhook-to-be-mutated" or any(
            container.get("name") == "webhook-added-init-container" for container in init_containers
        ):
            return {"allowed": True}
        added = {"image": "webhook-added-image", "name": "webhook-added-init-container", "resources": {}}
        return json_patch_response([{"op": "add", "path": "/spec/initContainers", "value": [added]}])

    # customresource.go
    def admit_custom_resource(self, request):
        operation = request.get("operation")
        data = self.object_of(request).get("data") or {}
        response = {"allowed": True}
        value = data.get("webhook-e2e-test")
        if value == "webhook-disallow" and operation in ("CREATE", "UPDATE"):
            response = denied_with_reason("the custom resource contains unwanted data")
        if value == "webhook-nondeletable" and operation == "DELETE":
            response = denied_with_reason(
                "the custom resource cannot be deleted because it contains unwanted key and value"
            )
        return response

    def mutate_custom_resource(self, request):
        return self.stage_patch((request.get("object") or {}).get("data") or {})

    # crd.go
    def admit_crd(self, request):
        if not any(
            same_resource(request, "apiextensions.k8s.io", version, "customresourcedefinitions")
            for version in ("v1", "v1beta1")
        ):
            return error_response(f"expect resource to be customresourcedefinitions but got {request.get('resource')}")
        labels = ((request.get("object") or {}).get("metadata") or {}).get("labels") or {}
        if labels.get("webhook-e2e-test") == "webhook-disallow":
            return {"allowed": False, "status": {"message": "the crd contains unwanted label"}}
        return {"allowed": True}

    # addlabel.go
    def add_label(self, request):
        labels = ((request.get("object") or {}).get("metadata") or {}).get("labels") or {}
        if not labels:
            return json_patch_response([{"op": "add", "path": "/metadata/labels", "value": {"added-label": "yes"}}])
        if "added-label" not in labels:
            return json_patch_response([{"op": "add", "path": "/metadata/labels/added-label", "value": "yes"}])
        if labels["added-label"] != "yes":
            return json_patch_response([{"op": "replace", "path": "/metadata/labels/added-label", "value": "yes"}])
        return {"allowed": True}

    # alwaysallow.go
    def always_allow_delay_five_seconds(self, request):
        self.stopping.wait(5)
        return {"allowed": True, "status": {"message": "this webhook allows all requests"}}

    def url_without_ca(self, path):
        """A clientConfig the API server cannot verify: no caBundle, so the server's certificate (signed by this
        test's own CA) is checked against the system roots and refused. Upstream's equivalent is a Service
        reference without caBundle."""
        return {"url": f"https://127.0.0.1:{self.port}{path}"}

    def stop(self):
        self.stopping.set()
        super().stop()


@pytest.fixture
def agnhost(tmp_path):
    server = AgnhostWebhookServer(tmp_path)
    yield server
    server.stop()


@pytest.fixture
def unique(core, namespace):
    """Upstream's f.UniqueName (the test namespace's name), with the namespace labelled by it (labelNamespace)."""
    label_namespace(core, namespace, namespace)
    return namespace


@pytest.fixture
def markers_namespace(core, unique):
    """createWebhookConfigurationReadyNamespace: the namespace marker requests are made in."""
    name = unique + "-markers"
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={unique + "-markers": "true"}))
    )
    yield name
    try:
        core.delete_namespace(name)
    except ApiException:
        pass


@pytest.fixture
def cleanup(api_client, agnhost):
    """Paths of cluster-scoped objects to delete at the end of the test (newest first), with the webhook disarmed
    first so that no webhook can stand in the way."""
    paths = []
    yield paths
    agnhost.disarmed = True
    failures = []
    for path in reversed(paths):
        try:
            call(api_client, "DELETE", path)
        except ApiException as error:
            if error.status != 404:
                failures.append(f"DELETE {path}: {error.status} {error.body}")
    assert not failures, f"cleanup failed: {failures}"


# ---------------------------------------------------------------------------------------------------------------------
# Helpers: configurations, markers, CRDs
# ---------------------------------------------------------------------------------------------------------------------


def webhook(name, rules, client_config, unique, **fields):
    """A webhook scoped to the test namespace (namespaceSelector {unique: "true"}), sideEffects None, as upstream's
    fixtures make them. `fields` are added or override."""
    hook = {
        "name": name,
        "rules": rules,
        "clientConfig": client_config,
        "sideEffects": "None",
        "admissionReviewVersions": REVIEW_VERSIONS,
        "namespaceSelector": {"matchLabels": {unique: "true"}},
    }
    hook.update(fields)
    return hook


def rule(operations, groups, versions, resources):
    return {"operations": operations, "apiGroups": groups, "apiVersions": versions, "resources": resources}


def configuration(kind, name, webhooks, labels=None):
    metadata = {"name": name}
    if labels:
        metadata["labels"] = labels
    return {"apiVersion": "admissionregistration.k8s.io/v1", "kind": kind, "metadata": metadata, "webhooks": webhooks}


def create_configuration(api_client, cleanup, mutating, name, webhooks, labels=None):
    """create{Validating,Mutating}WebhookConfiguration, with the configuration deleted at the end of the test."""
    path = MUTATING if mutating else VALIDATING
    kind = "MutatingWebhookConfiguration" if mutating else "ValidatingWebhookConfiguration"
    created = call(api_client, "POST", path, configuration(kind, name, webhooks, labels))
    cleanup.append(f"{path}/{name}")
    return created


def ready_webhook(agnhost, unique, mutating):
    name = "mutating" if mutating else "validating"
    return is_ready_webhook(agnhost, unique, f"{name}-is-webhook-configuration-ready.k8s.io")


def wait_webhook_configuration_ready(core, markers_namespace, unique):
    """waitWebhookConfigurationReady: create marker ConfigMaps (labelled for the is-ready webhook) every 100 ms
    until one is denied, which shows that the API server calls the configuration just written."""

    def attempt():
        name = str(uuid.uuid4())
        marker = client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name, labels={unique: "true"}))
        try:
            core.create_namespaced_config_map(markers_namespace, marker)
        except ApiException as error:
            if "denied" in (error.body or ""):
                return True, "denied"
            raise
        core.delete_namespaced_config_map(name, markers_namespace)
        return False, "a marker ConfigMap was admitted"

    wait_until(attempt, "the webhook configuration to be ready", interval=0.1)


def message_of(error):
    return status_of(error).get("message", "")


def expect_denied(action, expected_message, what):
    """Run `action`, which must fail with an error whose message contains `expected_message`; return the error."""
    with pytest.raises(ApiException) as caught:
        action()
    message = message_of(caught.value)
    assert expected_message in message, f"{what}: expected an error containing {expected_message!r}, got {message!r}"
    return caught.value


def configmap(name, data=None, labels=None):
    return client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name, labels=labels), data=data)


def poll_configmap_creates(core, namespace, data, done, what):
    """Upstream's 100 ms polls: create ConfigMaps with `data` (deleting those that get created) until `done(created
    ConfigMap or None)` holds. A failure other than a denial ends the poll."""

    def attempt():
        name = str(uuid.uuid4())
        try:
            created = core.create_namespaced_config_map(namespace, configmap(name, dict(data)))
        except ApiException as error:
            if "denied" not in (error.body or ""):
                raise
            return done(None), message_of(error)
        core.delete_namespaced_config_map(name, namespace)
        return done(created), created.data

    wait_until(attempt, what, interval=0.1)


def new_test_crd(unique, versions=None, **spec):
    """crd.CreateTestCRD / CreateMultiVersionTestCRD's object: a namespaced CRD in webhook.example.com named after
    the test, with one allow-all version v1 unless `versions` are given."""
    name = f"e2e-test-{unique}-{random_suffix()}-crd"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{name}s.{CRD_GROUP}"},
        "spec": {
            "group": CRD_GROUP,
            "names": {"plural": name + "s", "singular": name, "kind": name, "listKind": name + "List"},
            "scope": "Namespaced",
            "versions": versions
            or [{"name": "v1", "served": True, "storage": True, "schema": ALLOW_ALL_SCHEMA}],
        },
    }
    crd["spec"].update(spec)
    return crd


def multi_version_versions(schema=None):
    """createAdmissionWebhookMultiVersionTestCRDWithV1Storage: v1 served and stored, v2 served."""
    schema = schema or ALLOW_ALL_SCHEMA
    return [
        {"name": "v1", "served": True, "storage": True, "schema": schema},
        {"name": "v2", "served": True, "storage": False, "schema": schema},
    ]


def create_test_crd(api_client, cleanup, crd):
    """fixtures.CreateNewV1CustomResourceDefinitionWatchUnsafe: create, then wait until every served version is in
    discovery. The CRD is deleted at the end of the test."""
    created = call(api_client, "POST", CRDS, crd)
    cleanup.append(f"{CRDS}/{created['metadata']['name']}")
    plural = created["spec"]["names"]["plural"]
    for version in served_versions(created):
        wait_for_served(api_client, CRD_GROUP, version, plural)
    return created


def served_versions(crd):
    """servedAPIVersions."""
    return [version["name"] for version in crd["spec"]["versions"] if version["served"]]


def custom_resources(crd, version, namespace):
    return f"/apis/{crd['spec']['group']}/{version}/namespaces/{namespace}/{crd['spec']['names']['plural']}"


def custom_resource(crd, namespace, name, data):
    return {
        "kind": crd["spec"]["names"]["kind"],
        "apiVersion": f"{crd['spec']['group']}/{crd['spec']['versions'][0]['name']}",
        "metadata": {"name": name, "namespace": namespace},
        "data": data,
    }


def update_custom_resource(api_client, path, update):
    """updateCustomResource: GET, change, PUT; retried only on a conflict."""

    def attempt():
        current = call(api_client, "GET", path)
        update(current)
        return call(api_client, "PUT", path, current)

    return retry_on_conflict(attempt)


def register_mutating_webhook_for_custom_resource(api_client, core, cleanup, agnhost, unique, markers, crd):
    """registerMutatingWebhookForCustomResource: stage 1 on CREATE and UPDATE, stage 2 on CREATE."""
    resource_rule = [crd["spec"]["group"]], served_versions(crd), [crd["spec"]["names"]["plural"]]
    mutate = agnhost.client_config("/mutating-custom-resource")
    create_configuration(
        api_client,
        cleanup,
        True,
        unique,
        [
            webhook(
                "mutate-custom-resource-data-stage-1.k8s.io",
                [rule(["CREATE", "UPDATE"], *resource_rule)],
                mutate,
                unique,
            ),
            webhook("mutate-custom-resource-data-stage-2.k8s.io", [rule(["CREATE"], *resource_rule)], mutate, unique),
            ready_webhook(agnhost, unique, True),
        ],
    )
    wait_webhook_configuration_ready(core, markers, unique)


def deny_configmap_webhook(agnhost, unique):
    """newDenyConfigMapWebhookFixture."""
    return webhook(
        "deny-unwanted-configmap-data.k8s.io",
        [configmap_rule(["CREATE", "UPDATE", "DELETE"])],
        agnhost.client_config("/configmaps"),
        unique,
        namespaceSelector={
            "matchLabels": {unique: "true"},
            "matchExpressions": [{"key": "skip-webhook-admission", "operator": "NotIn", "values": ["yes"]}],
        },
    )


def check_mutating_custom_resource_webhook(api_client, crd, namespace, prune):
    """testMutatingCustomResourceWebhook: a new custom resource gets the webhooks' keys, but for those pruned."""
    mutated = call(
        api_client,
        "POST",
        custom_resources(crd, "v1", namespace),
        custom_resource(crd, namespace, "cr-instance-1", {"mutation-start": "yes"}),
    )
    expected = {"mutation-start": "yes", "mutation-stage-1": "yes"}
    if not prune:
        expected["mutation-stage-2"] = "yes"
    assert mutated.get("data") == expected


# ---------------------------------------------------------------------------------------------------------------------
# The conformance entries
# ---------------------------------------------------------------------------------------------------------------------


def test_admissionwebhook_listing_mutating_webhooks_should_work(api_client, core, unique, markers_namespace, agnhost):
    """AdmissionWebhook listing mutating webhooks should work.

    Upstream: test/e2e/apimachinery/webhook.go. Ten mutating configurations with one label are listed by that label;
    a ConfigMap is mutated; deletecollection by the label removes them all, after which a ConfigMap is not mutated.

    Differs from upstream: the webhook is served by this test process and named by URL, not a pod behind a Service.
    """
    label = {"e2e-list-test-uuid": str(uuid.uuid4())}
    selector = "e2e-list-test-uuid=" + label["e2e-list-test-uuid"]
    try:
        for index in range(10):
            call(
                api_client,
                "POST",
                MUTATING,
                configuration(
                    "MutatingWebhookConfiguration",
                    f"{unique}-{index}",
                    [
                        webhook(
                            "adding-configmap-data-stage-1.k8s.io",
                            [configmap_rule(["CREATE"])],
                            agnhost.client_config("/mutating-configmaps"),
                            unique,
                        ),
                        ready_webhook(agnhost, unique, True),
                    ],
                    label,
                ),
            )
        listed = call(api_client, "GET", MUTATING, query=[("labelSelector", selector)])
        assert len(listed["items"]) == 10, [item["metadata"]["name"] for item in listed["items"]]

        wait_webhook_configuration_ready(core, markers_namespace, unique)
        to_be_mutated = {"mutation-start": "yes"}
        poll_configmap_creates(
            core,
            unique,
            to_be_mutated,
            lambda created: created is not None and "mutation-stage-1" in (created.data or {}),
            "a ConfigMap to be mutated",
        )

        call(api_client, "DELETE", MUTATING, query=[("labelSelector", selector)])
        poll_configmap_creates(
            core,
            unique,
            to_be_mutated,
            lambda created: created is not None and "mutation-stage-1" not in (created.data or {}),
            "a ConfigMap that is not mutated once the configurations are deleted",
        )
        assert call(api_client, "GET", MUTATING, query=[("labelSelector", selector)])["items"] == []
    finally:
        call(api_client, "DELETE", MUTATING, query=[("labelSelector", selector)])


def test_admissionwebhook_listing_validating_webhooks_should_work(api_client, core, unique, markers_namespace, agnhost):
    """AdmissionWebhook listing validating webhooks should work.

    Upstream: test/e2e/apimachinery/webhook.go. Ten validating configurations with one label are listed by that
    label; a non-compliant ConfigMap is denied; deletecollection by the label removes them all, after which such a
    ConfigMap is admitted.

    Differs from upstream: the webhook is served by this test process and named by URL, not a pod behind a Service.
    """
    label = {"e2e-list-test-uuid": str(uuid.uuid4())}
    selector = "e2e-list-test-uuid=" + label["e2e-list-test-uuid"]
    try:
        for index in range(10):
            call(
                api_client,
                "POST",
                VALIDATING,
                configuration(
                    "ValidatingWebhookConfiguration",
                    f"{unique}-{index}",
                    [deny_configmap_webhook(agnhost, unique), ready_webhook(agnhost, unique, False)],
                    label,
                ),
            )
        listed = call(api_client, "GET", VALIDATING, query=[("labelSelector", selector)])
        assert len(listed["items"]) == 10, [item["metadata"]["name"] for item in listed["items"]]

        wait_webhook_configuration_ready(core, markers_namespace, unique)
        non_compliant = {"webhook-e2e-test": "webhook-disallow"}
        poll_configmap_creates(
            core, unique, non_compliant, lambda created: created is None, "a non-compliant ConfigMap to be denied"
        )

        call(api_client, "DELETE", VALIDATING, query=[("labelSelector", selector)])
        poll_configmap_creates(
            core,
            unique,
            non_compliant,
            lambda created: created is not None,
            "a non-compliant ConfigMap to be admitted once the configurations are deleted",
        )
        assert call(api_client, "GET", VALIDATING, query=[("labelSelector", selector)])["items"] == []
    finally:
        call(api_client, "DELETE", VALIDATING, query=[("labelSelector", selector)])


MATCH_CONDITIONS = [{"name": "expression-1", "expression": "object.metadata.namespace == 'production'"}]
UPDATED_MATCH_CONDITIONS = MATCH_CONDITIONS + [
    {"name": "expression-2", "expression": "object.metadata.namespace == 'staging'"}
]


def create_and_update_match_conditions(api_client, cleanup, mutating, name, first_webhook, ready):
    """The shared steps of the two matchConditions entries: create, read back the conditions, update them with a
    PUT of the object read, read back the new ones."""
    path = MUTATING if mutating else VALIDATING
    create_configuration(api_client, cleanup, mutating, name, [first_webhook, ready])
    stored = call(api_client, "GET", f"{path}/{name}")
    assert stored["webhooks"][0].get("matchConditions") == MATCH_CONDITIONS, "match conditions are created"

    stored["webhooks"][0]["matchConditions"] = UPDATED_MATCH_CONDITIONS
    call(api_client, "PUT", f"{path}/{name}", stored)
    stored = call(api_client, "GET", f"{path}/{name}")
    assert stored["webhooks"][0].get("matchConditions") == UPDATED_MATCH_CONDITIONS, "match conditions are updated"


def test_admissionwebhook_should_be_able_to_create_and_update_mutating_webhook_configurations_with_match_conditions(
    api_client, unique, agnhost, cleanup
):
    """AdmissionWebhook should be able to create and update mutating webhook configurations with match conditions.

    Upstream: test/e2e/apimachinery/webhook.go (newMutatingWebhookWithMatchConditions): the conditions are stored as
    sent, and an update replaces them.

    Differs from upstream: the configuration names the webhook by URL, not by Service.
    """
    first = webhook(
        "adding-configmap-data.k8s.io",
        [configmap_rule(["CREATE"])],
        agnhost.client_config("/mutating-configmaps"),
        unique,
        matchConditions=MATCH_CONDITIONS,
    )
    create_and_update_match_conditions(api_client, cleanup, True, unique, first, ready_webhook(agnhost, unique, True))


def test_admissionwebhook_should_be_able_to_create_and_update_validating_webhook_configurations_with_match_conditions(
    api_client, unique, agnhost, cleanup
):
    """AdmissionWebhook should be able to create and update validating webhook configurations with match conditions.

    Upstream: test/e2e/apimachinery/webhook.go (newValidatingWebhookWithMatchConditions): the conditions are stored
    as sent, and an update replaces them.

    Differs from upstream: the configuration names the webhook by URL, not by Service.
    """
    first = webhook(
        "validation-webhook-with-match-conditions.k8s.io",
        [configmap_rule(["CREATE"])],
        agnhost.client_config("/always-deny"),
        unique,
        matchPolicy="Equivalent",
        admissionReviewVersions=["v1"],
        matchConditions=MATCH_CONDITIONS,
    )
    create_and_update_match_conditions(
        api_client, cleanup, False, unique, first, ready_webhook(agnhost, unique, False)
    )


def test_admissionwebhook_should_be_able_to_deny_custom_resource_creation_update_and_deletion(
    api_client, core, unique, markers_namespace, agnhost, cleanup
):
    """AdmissionWebhook should be able to deny custom resource creation, update and deletion.

    Upstream: test/e2e/apimachinery/webhook.go (registerWebhookForCustomResource, testCustomResourceWebhook,
    testBlockingCustomResourceUpdateDeletion): a validating webhook on the CRD's resource (CREATE, UPDATE, DELETE,
    every served version) denies a custom resource with unwanted data, an update to such data, and the deletion of
    one marked non-deletable; once the data is changed the deletion goes through. The denials carry only a reason,
    which the error message shows.

    Differs from upstream: the webhook is served by this test process and named by URL, not a pod behind a Service.
    """
    crd = create_test_crd(api_client, cleanup, new_test_crd(unique))
    create_configuration(
        api_client,
        cleanup,
        False,
        unique,
        [
            webhook(
                "deny-unwanted-custom-resource-data.k8s.io",
                [
                    rule(
                        ["CREATE", "UPDATE", "DELETE"],
                        [crd["spec"]["group"]],
                        served_versions(crd),
                        [crd["spec"]["names"]["plural"]],
                    )
                ],
                agnhost.client_config("/custom-resource"),
                unique,
            ),
            ready_webhook(agnhost, unique, False),
        ],
    )
    wait_webhook_configuration_ready(core, markers_namespace, unique)
    collection = custom_resources(crd, "v1", unique)

    # testCustomResourceWebhook
    expect_denied(
        lambda: call(
            api_client,
            "POST",
            collection,
            custom_resource(crd, unique, "cr-instance-1", {"webhook-e2e-test": "webhook-disallow"}),
        ),
        "the custom resource contains unwanted data",
        "creating a custom resource with unwanted data",
    )

    # testBlockingCustomResourceUpdateDeletion
    call(
        api_client,
        "POST",
        collection,
        custom_resource(crd, unique, "cr-instance-2", {"webhook-e2e-test": "webhook-nondeletable"}),
    )
    path = f"{collection}/cr-instance-2"

    def set_data(value):
        def update(current):
            current.setdefault("data", {})["webhook-e2e-test"] = value

        return update

    expect_denied(
        lambda: update_custom_resource(api_client, path, set_data("webhook-disallow")),
        "the custom resource contains unwanted data",
        "updating the custom resource with disallowed data",
    )
    expect_denied(
        lambda: call(api_client, "DELETE", path),
        "the custom resource cannot be deleted because it contains unwanted key and value",
        "deleting the custom resource",
    )
    update_custom_resource(api_client, path, set_data("webhook-allow"))
    call(api_client, "DELETE", path)


def test_admissionwebhook_should_deny_crd_creation(api_client, core, unique, markers_namespace, agnhost, cleanup):
    """AdmissionWebhook should deny crd creation.

    Upstream: test/e2e/apimachinery/webhook.go (registerValidatingWebhookForCRD, testCRDDenyWebhook): a validating
    webhook on CustomResourceDefinitions (selected by an object label) denies a CRD with the unwanted label.

    Differs from upstream: the webhook is served by this test process and named by URL, not a pod behind a Service.
    Beyond upstream: the webhook saw exactly one CustomResourceDefinition review.
    """
    create_configuration(
        api_client,
        cleanup,
        False,
        unique,
        [
            webhook(
                "deny-crd-with-unwanted-label.k8s.io",
                [rule(["CREATE"], ["apiextensions.k8s.io"], ["*"], ["customresourcedefinitions"])],
                agnhost.client_config("/crd"),
                unique,
                namespaceSelector={},
                objectSelector={"matchLabels": {unique: "true"}},
            ),
            ready_webhook(agnhost, unique, False),
        ],
    )
    wait_webhook_configuration_ready(core, markers_namespace, unique)

    name = "e2e-test-webhook-deny-crd"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{name}s.{CRD_GROUP}",
            # The first label routes the CRD to this test's webhook; the second is the one it refuses.
            "labels": {unique: "true", "webhook-e2e-test": "webhook-disallow"},
        },
        "spec": {
            "group": CRD_GROUP,
            "versions": [{"name": "v1", "served": True, "storage": True, "schema": ALLOW_ALL_SCHEMA}],
            "names": {
                "singular": name,
                "kind": "E2e-test-webhook-deny-crd",
                "listKind": "E2e-test-webhook-deny-crdList",
                "plural": name + "s",
            },
            "scope": "Namespaced",
        },
    }
    # Should it be created after all, it is deleted at the end.
    cleanup.insert(0, f"{CRDS}/{name}s.{CRD_GROUP}")
    expect_denied(
        lambda: call(api_client, "POST", CRDS, crd), "the crd contains unwanted label", "creating the CRD"
    )
    assert [request[0] for request in agnhost.calls_for_group("apiextensions.k8s.io")] == ["/crd"]


def test_admissionwebhook_should_mutate_configmap(api_client, core, unique, markers_namespace, agnhost, cleanup):
    """AdmissionWebhook should mutate configmap.

    Upstream: test/e2e/apimachinery/webhook.go (registerMutatingWebhookForConfigMap, testMutatingConfigMapWebhook):
    two mutating webhooks in one configuration, the second adding a key only when the first one's key is there; a
    new ConfigMap gets both.

    Differs from upstream: the webhook is served by this test process and named by URL, not a pod behind a Service.
    """
    mutate = agnhost.client_config("/mutating-configmaps")
    create_configuration(
        api_client,
        cleanup,
        True,
        unique,
        [
            webhook(f"adding-configmap-data-stage-{stage}.k8s.io", [configmap_rule(["CREATE"])], mutate, unique)
            for stage in (1, 2)
        ]
        + [ready_webhook(agnhost, unique, True)],
    )
    wait_webhook_configuration_ready(core, markers_namespace, unique)

    mutated = core.create_namespaced_config_map(unique, configmap("to-be-mutated", {"mutation-start": "yes"}))
    assert mutated.data == {"mutation-start": "yes", "mutation-stage-1": "yes", "mutation-stage-2": "yes"}


def test_admissionwebhook_should_mutate_custom_resource(
    api_client, core, unique, markers_namespace, agnhost, cleanup
):
    """AdmissionWebhook should mutate custom resource.

    Upstream: test/e2e/apimachinery/webhook.go (registerMutatingWebhookForCustomResource,
    testMutatingCustomResourceWebhook): two mutating webhooks on the CRD's resource; a new custom resource gets both
    keys.

    Differs from upstream: the webhook is served by this test process and named by URL, not a pod behind a Service.
    """
    crd = create_test_crd(api_client, cleanup, new_test_crd(unique))
    register_mutating_webhook_for_custom_resource(api_client, core, cleanup, agnhost, unique, markers_namespace, crd)
    check_mutating_custom_resource_webhook(api_client, crd, unique, prune=False)


def test_admissionwebhook_should_mutate_custom_resource_with_different_stored_version(
    api_client, core, unique, markers_namespace, agnhost, cleanup
):
    """AdmissionWebhook should mutate custom resource with different stored version.

    Upstream: test/e2e/apimachinery/webhook.go (createAdmissionWebhookMultiVersionTestCRDWithV1Storage,
    testMultiVersionCustomResourceWebhook): a custom resource created while v1 is the storage version; a strategic
    merge patch of the CRD makes v2 the storage version; a JSON patch through v2 adds a field, and the answer has it
    with the webhooks' keys.

    Differs from upstream: the webhook is served by this test process and named by URL, not a pod behind a Service.
    Beyond upstream: the patched CRD shows v2 as its storage version.
    """
    crd = create_test_crd(api_client, cleanup, new_test_crd(unique, versions=multi_version_versions()))
    register_mutating_webhook_for_custom_resource(api_client, core, cleanup, agnhost, unique, markers_namespace, crd)

    call(
        api_client,
        "POST",
        custom_resources(crd, "v1", unique),
        custom_resource(crd, unique, "cr-instance-1", {"mutation-start": "yes"}),
    )

    v2_storage = {
        "spec": {
            "versions": [
                {"name": "v1", "storage": False, "served": True, "schema": ALLOW_ALL_SCHEMA},
                {"name": "v2", "storage": True, "served": True, "schema": ALLOW_ALL_SCHEMA},
            ]
        }
    }
    patched = call(api_client, "PATCH", f"{CRDS}/{crd['metadata']['name']}", v2_storage, STRATEGIC_MERGE_PATCH)
    assert [(v["name"], v["storage"]) for v in patched["spec"]["versions"]] == [("v1", False), ("v2", True)]

    mutated = call(
        api_client,
        "PATCH",
        f"{custom_resources(crd, 'v2', unique)}/cr-instance-1",
        [{"op": "add", "path": "/dummy", "value": "test"}],
        JSON_PATCH,
    )
    assert mutated.get("data") == {"mutation-start": "yes", "mutation-stage-1": "yes", "mutation-stage-2": "yes"}
    assert mutated.get("dummy") == "test"


def test_admissionwebhook_should_mutate_custom_resource_with_pruning(
    api_client, core, unique, markers_namespace, agnhost, cleanup
):
    """AdmissionWebhook should mutate custom resource with pruning.

    Upstream: test/e2e/apimachinery/webhook.go. A CRD (v1 stored, v2 served) whose schema knows mutation-start and
    mutation-stage-1 but not mutation-stage-2: of the two keys the webhooks add, the unknown one is pruned.

    Differs from upstream: the webhook is served by this test process and named by URL, not a pod behind a Service.
    """
    schema = {
        "openAPIV3Schema": {
            "type": "object",
            "properties": {
                "data": {
                    "type": "object",
                    "properties": {
                        "mutation-start": {"type": "string"},
                        "mutation-stage-1": {"type": "string"},
                        # mutation-stage-2 is left out on purpose, so that it is pruned
                    },
                }
            },
        }
    }
    crd = create_test_crd(
        api_client, cleanup, new_test_crd(unique, versions=multi_version_versions(schema), preserveUnknownFields=False)
    )
    register_mutating_webhook_for_custom_resource(api_client, core, cleanup, agnhost, unique, markers_namespace, crd)
    check_mutating_custom_resource_webhook(api_client, crd, unique, prune=True)


def test_admissionwebhook_should_mutate_pod_and_apply_defaults_after_mutation(
    api_client, core, unique, markers_namespace, agnhost, cleanup
):
    """AdmissionWebhook should mutate pod and apply defaults after mutation.

    Upstream: test/e2e/apimachinery/webhook.go (registerMutatingWebhookForPod, testMutatingPodWebhook): a mutating
    webhook adds an init container to a new pod, and the API server defaults that container
    (terminationMessagePolicy File). Only the create is checked, as upstream; the pod need not run.

    Differs from upstream: the webhook is served by this test process and named by URL, not a pod behind a Service.
    """
    create_configuration(
        api_client,
        cleanup,
        True,
        unique,
        [
            webhook(
                "adding-init-container.k8s.io",
                [rule(["CREATE"], [""], ["v1"], ["pods"])],
                agnhost.client_config("/mutating-pods"),
                unique,
            ),
            ready_webhook(agnhost, unique, True),
        ],
    )
    wait_webhook_configuration_ready(core, markers_namespace, unique)
    wait_for_default_service_account(core, unique)

    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="webhook-to-be-mutated"),
        spec=client.V1PodSpec(containers=[client.V1Container(name="example", image=PAUSE_IMAGE)]),
    )
    mutated = core.create_namespaced_pod(unique, pod)
    init_containers = mutated.spec.init_containers or []
    assert len(init_containers) == 1, f"expect pod to have 1 init container, got {init_containers}"
    assert init_containers[0].name == "webhook-added-init-container"
    assert init_containers[0].termination_message_policy == "File"


def test_admissionwebhook_should_not_be_able_to_mutate_or_prevent_deletion_of_webhook_configuration_objects(
    api_client, core, unique, markers_namespace, agnhost, cleanup
):
    """AdmissionWebhook should not be able to mutate or prevent deletion of webhook configuration objects.

    Upstream: test/e2e/apimachinery/webhook.go. A validating webhook that denies every deletion of webhook
    configurations and a mutating webhook that labels every new one (both failing closed) are registered; a dummy
    validating configuration and a dummy mutating one are then created unlabelled and deleted. Beyond upstream's
    checks: the webhook server never got a review for a webhook configuration.

    Differs from upstream: the webhook is served by this test process and named by URL, not a pod behind a Service.
    The dummy webhooks name an unserved path by URL without caBundle, where upstream names a Service without
    caBundle; either way a call would fail.
    """
    blocking = unique + "blocking"
    configuration_resources = ["validatingwebhookconfigurations", "mutatingwebhookconfigurations"]
    # registerValidatingWebhookForWebhookConfigurations
    create_configuration(
        api_client,
        cleanup,
        False,
        blocking,
        [
            webhook(
                "deny-webhook-configuration-deletions.k8s.io",
                [rule(["DELETE"], ["admissionregistration.k8s.io"], ["*"], configuration_resources)],
                agnhost.client_config("/always-deny"),
                unique,
                failurePolicy="Fail",
            ),
            ready_webhook(agnhost, unique, False),
        ],
    )
    wait_webhook_configuration_ready(core, markers_namespace, unique)
    # registerMutatingWebhookForWebhookConfigurations
    create_configuration(
        api_client,
        cleanup,
        True,
        blocking,
        [
            webhook(
                "add-label-to-webhook-configurations.k8s.io",
                [rule(["CREATE"], ["admissionregistration.k8s.io"], ["*"], configuration_resources)],
                agnhost.client_config("/add-label"),
                unique,
                failurePolicy="Fail",
            ),
            ready_webhook(agnhost, unique, True),
        ],
    )
    wait_webhook_configuration_ready(core, markers_namespace, unique)

    # testWebhooksForWebhookConfigurations
    for mutating, path, kind in ((False, VALIDATING, "validating"), (True, MUTATING, "mutating")):
        dummy = webhook(
            f"dummy-{kind}-webhook.k8s.io",
            # This matches no real resource, so the webhook is never called.
            [rule(["CREATE"], [""], ["v1"], ["invalid"])],
            # A path the webhook does not serve and no caBundle: a call would fail, and be ignored.
            agnhost.url_without_ca(""),
            unique,
            failurePolicy="Ignore",
        )
        created = create_configuration(
            api_client, cleanup, mutating, unique, [dummy, ready_webhook(agnhost, unique, mutating)]
        )
        labels = created["metadata"].get("labels") or {}
        assert labels.get("added-label") != "yes", f"expected {unique} not to be mutated by mutating webhooks"
        wait_webhook_configuration_ready(core, markers_namespace, unique)
        call(api_client, "DELETE", f"{path}/{unique}")

    assert agnhost.calls_for_group("admissionregistration.k8s.io") == []


def test_admissionwebhook_should_include_webhook_resources_in_discovery_documents(api_client):
    """AdmissionWebhook should include webhook resources in discovery documents.

    Upstream: test/e2e/apimachinery/webhook.go. /apis lists admissionregistration.k8s.io with v1;
    /apis/admissionregistration.k8s.io names itself and lists v1; /apis/admissionregistration.k8s.io/v1 lists
    mutatingwebhookconfigurations and validatingwebhookconfigurations.
    """
    groups = call(api_client, "GET", "/apis")["groups"]
    group = next((group for group in groups if group["name"] == "admissionregistration.k8s.io"), None)
    assert group is not None, "admissionregistration.k8s.io API group not found in /apis discovery document"
    assert any(version["version"] == "v1" for version in group["versions"]), group["versions"]

    group = call(api_client, "GET", "/apis/admissionregistration.k8s.io")
    assert group["name"] == "admissionregistration.k8s.io"
    assert any(version["version"] == "v1" for version in group["versions"]), group["versions"]

    resources = call(api_client, "GET", "/apis/admissionregistration.k8s.io/v1")
    assert resources["groupVersion"] == "admissionregistration.k8s.io/v1"
    names = [resource["name"] for resource in resources["resources"]]
    assert "mutatingwebhookconfigurations" in names, names
    assert "validatingwebhookconfigurations" in names, names


def test_admissionwebhook_should_be_able_to_deny_pod_and_configmap_creation(
    api_client, core, unique, markers_namespace, agnhost, cleanup
):
    """AdmissionWebhook should be able to deny pod and configmap creation.

    Upstream: test/e2e/apimachinery/webhook.go (registerWebhook, testWebhook): a pod with an unwanted label and
    container name is denied with both reasons; a pod that makes the webhook hang is refused when the call times out
    (10 s, the default) and is not created; a non-compliant ConfigMap is denied, and so are a PUT and a strategic
    merge patch that would make a compliant one non-compliant; in a namespace the namespace selector exempts, a
    non-compliant ConfigMap is admitted. A webhook that cannot be called (no caBundle) and fails open is in the
    configuration too.

    Differs from upstream: the webhook is served by this test process and named by URL, not a pod behind a Service.
    The webhooks without caBundle name this server by URL (its certificate is not signed by a system root). The
    hanging webhook gives up after 60 s where agnhost's never answers; the API server's 10 s timeout comes first
    either way.
    """
    fail_open = webhook(
        "fail-open.k8s.io",
        [configmap_rule(["CREATE"])],
        agnhost.url_without_ca("/configmaps"),
        unique,
        failurePolicy="Ignore",
    )
    create_configuration(
        api_client,
        cleanup,
        False,
        unique,
        [
            webhook(
                "deny-unwanted-pod-container-name-and-label.k8s.io",
                [rule(["CREATE"], [""], ["v1"], ["pods"])],
                agnhost.client_config("/pods"),
                unique,
            ),
            deny_configmap_webhook(agnhost, unique),
            fail_open,
            ready_webhook(agnhost, unique, False),
        ],
    )
    wait_webhook_configuration_ready(core, markers_namespace, unique)
    wait_for_default_service_account(core, unique)

    def pod(name, label, container):
        return client.V1Pod(
            metadata=client.V1ObjectMeta(name=name, labels={"webhook-e2e-test": label}),
            spec=client.V1PodSpec(containers=[client.V1Container(name=container, image=PAUSE_IMAGE)]),
        )

    error = expect_denied(
        lambda: core.create_namespaced_pod(unique, pod("disallowed-pod", "webhook-disallow", "webhook-disallow")),
        "the pod contains unwanted container name",
        "creating a non-compliant pod",
    )
    assert "the pod contains unwanted label" in message_of(error), message_of(error)

    error = expect_denied(
        lambda: core.create_namespaced_pod(unique, pod("hanging-pod", "wait-forever", "wait-forever")),
        "webhook",
        "creating a pod that makes the webhook hang",
    )
    assert "deadline" in message_of(error), message_of(error)
    with pytest.raises(ApiException) as caught:
        core.read_namespaced_pod("hanging-pod", unique)
    assert caught.value.status == 404, "the pod refused after the timeout is not created"

    unwanted = "the configmap contains unwanted key and value"
    non_compliant = {"webhook-e2e-test": "webhook-disallow"}
    expect_denied(
        lambda: core.create_namespaced_config_map(unique, configmap("disallowed-configmap", non_compliant)),
        unwanted,
        "creating a non-compliant ConfigMap",
    )
    core.create_namespaced_config_map(unique, configmap("allowed-configmap", {"admit": "this"}))

    def to_non_compliant():
        current = core.read_namespaced_config_map("allowed-configmap", unique)
        current.data = dict(current.data or {}, **non_compliant)
        return core.replace_namespaced_config_map("allowed-configmap", unique, current)

    expect_denied(lambda: retry_on_conflict(to_non_compliant), unwanted, "a PUT to a non-compliant ConfigMap")
    expect_denied(
        lambda: call(
            api_client,
            "PATCH",
            f"/api/v1/namespaces/{unique}/configmaps/allowed-configmap",
            {"data": non_compliant},
            STRATEGIC_MERGE_PATCH,
        ),
        unwanted,
        "a strategic merge patch to a non-compliant ConfigMap",
    )

    skipped = f"{unique}-exempted"
    core.create_namespace(
        client.V1Namespace(
            metadata=client.V1ObjectMeta(name=skipped, labels={"skip-webhook-admission": "yes", unique: "true"})
        )
    )
    cleanup.insert(0, f"/api/v1/namespaces/{skipped}")
    core.create_namespaced_config_map(skipped, configmap("disallowed-configmap", non_compliant))


def test_admissionwebhook_should_unconditionally_reject_operations_on_fail_closed_webhook(
    api_client, core, unique, markers_namespace, agnhost, cleanup
):
    """AdmissionWebhook should unconditionally reject operations on fail closed webhook.

    Upstream: test/e2e/apimachinery/webhook.go (registerFailClosedWebhook, testFailClosedWebhook): a webhook without
    caBundle (its certificate cannot be verified) that fails closed, for namespaces labelled
    fail-closed-webhook=yes; a ConfigMap created in such a namespace is refused with an internal error.

    Differs from upstream: the webhook is this test process's server named by URL without caBundle (upstream: its
    Service without caBundle). Beyond upstream: the server never got the review.
    """
    create_configuration(
        api_client,
        cleanup,
        False,
        unique,
        [
            webhook(
                "fail-closed.k8s.io",
                [configmap_rule(["CREATE"])],
                agnhost.url_without_ca("/configmaps"),
                unique,
                failurePolicy="Fail",
                namespaceSelector={
                    "matchLabels": {unique: "true"},
                    "matchExpressions": [{"key": "fail-closed-webhook", "operator": "In", "values": ["yes"]}],
                },
            ),
            ready_webhook(agnhost, unique, False),
        ],
    )
    wait_webhook_configuration_ready(core, markers_namespace, unique)

    fail_namespace = f"{unique}-fail-closed"
    core.create_namespace(
        client.V1Namespace(
            metadata=client.V1ObjectMeta(name=fail_namespace, labels={"fail-closed-webhook": "yes", unique: "true"})
        )
    )
    cleanup.insert(0, f"/api/v1/namespaces/{fail_namespace}")
    with pytest.raises(ApiException) as caught:
        core.create_namespaced_config_map(fail_namespace, configmap("foo"))
    status = status_of(caught.value)
    assert (caught.value.status, status.get("reason")) == (500, "InternalError"), status
    assert not [request for request in agnhost.calls if request[0] == "/configmaps"], "the webhook was never reached"


def test_admissionwebhook_should_honor_timeout(api_client, core, unique, markers_namespace, agnhost, cleanup):
    """AdmissionWebhook should honor timeout.

    Upstream: test/e2e/apimachinery/webhook.go (registerSlowWebhook): with a webhook that answers after 5 s: with a
    1 s timeout and failurePolicy Fail the create fails with a timeout naming the webhook's URL; with 1 s and Ignore
    it succeeds; with 10 s, and with no timeout (10 s by default), it succeeds.

    Differs from upstream: the webhook is served by this test process and named by URL, not a pod behind a Service.
    """
    name = "e2e-test-slow-webhook-configmap"

    def register(policy, timeout):
        slow = webhook(
            "allow-configmap-with-delay-webhook.k8s.io",
            [configmap_rule(["CREATE"])],
            agnhost.client_config("/always-allow-delay-5s"),
            unique,
            failurePolicy=policy,
        )
        if timeout is not None:
            slow["timeoutSeconds"] = timeout
        create_configuration(api_client, cleanup, False, unique, [slow, ready_webhook(agnhost, unique, False)])
        wait_webhook_configuration_ready(core, markers_namespace, unique)

    def unregister():
        call(api_client, "DELETE", f"{VALIDATING}/{unique}")
        cleanup.pop()

    # Setting timeout (1s) shorter than webhook latency (5s)
    register("Fail", 1)
    with pytest.raises(ApiException) as caught:
        core.create_namespaced_config_map(unique, configmap(name))
    message = message_of(caught.value)
    assert "context deadline exceeded" in message or "timeout" in message, message
    assert "/always-allow-delay-5s?timeout=1s" in message, message
    unregister()

    for policy, timeout in (("Ignore", 1), ("Fail", 10), ("Fail", None)):
        register(policy, timeout)
        core.create_namespaced_config_map(unique, configmap(name))
        core.delete_namespaced_config_map(name, unique)
        unregister()
