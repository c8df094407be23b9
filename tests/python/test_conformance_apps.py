"""sig-apps conformance entries (with one of sig-scheduling and the ConfigMap lifecycle) reproduced without a node.

The controller these tests run against has no nodes, so every pod stays Pending. Each test makes the API calls and
checks of one upstream e2e test (its file under kubernetes/kubernetes `test/e2e/` is named in the docstring) and says
what it leaves out. Where upstream waits for pods to run or be ready, these tests wait only for what a controller does
without a node: it creates the pods, and counts them in status.replicas (or a Job's status.active).

Helpers and constants are shared with test_conformance.py.
"""

import copy
import time
import uuid

from kubernetes import client
from kubernetes.client import ApiException

from test_conformance import (
    BUSYBOX_IMAGE,
    CONTROLLER_TIMEOUT,
    EVENT_TIMEOUT,
    HTTPD_IMAGE,
    MERGE_PATCH,
    PAUSE_IMAGE,
    WatchStream,
    call,
    check_daemon_status,
    create_pdb,
    new_daemon_set,
    new_rs,
    new_test_job,
    now_rfc3339,
    random_suffix,
    retry_on_conflict,
    wait_for_default_service_account,
    wait_for_pdb_processed,
    wait_until,
    watch_status_update_then_patch,
    watch_until,
)

NGINX_IMAGE = "registry.k8s.io/e2e-test-images/nginx:1.14-4"

# The e2e image names that upstream uses as container names.
WEBSERVER_NAME = "httpd"
AGNHOST_NAME = "agnhost"


# ---------------------------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------------------------


def scale_patch(replicas):
    """The body upstream sends to PATCH /scale: an autoscaling/v1 Scale with only spec.replicas set, marshalled by Go,
    so with the zero values Go writes (a null creationTimestamp and status.replicas 0)."""
    return {"metadata": {"creationTimestamp": None}, "spec": {"replicas": replicas}, "status": {"replicas": 0}}


def selector_string(match_labels):
    return ",".join(f"{key}={value}" for key, value in sorted(match_labels.items()))


def controller_of(obj):
    """metav1.GetControllerOf: the owner reference with controller: true, if any."""
    return next((owner for owner in obj.metadata.owner_references or [] if owner.controller), None)


def next_event(stream, what, condition, timeout=EVENT_TIMEOUT):
    """Read `stream` until an event for which `condition(event)` holds; events before it are skipped."""
    seen = []
    deadline = time.monotonic() + timeout
    while True:
        event = stream.next(deadline - time.monotonic())
        assert event is not None, f"no watch event on {stream.path} showed {what}; saw {[e['type'] for e in seen]}"
        assert event["type"] not in ("CLOSED", "ERROR"), f"the watch on {stream.path} ended: {event}"
        seen.append(event)
        if condition(event):
            return event


def wait_for_replicas_status(read, name, replicas):
    """Wait until the controller counts `replicas` pods in status.replicas (pending pods count: no node needed)."""

    def check():
        current = read()
        counted = (current.status.replicas or 0) if current.status else 0
        return counted == replicas, current.status

    return wait_until(check, f"{name} to count {replicas} pods in status.replicas")


def new_deployment(name, replicas, pod_labels, container_name, image, strategy_type):
    """e2edeployment.NewDeployment: the pod labels also label the Deployment and select its pods."""
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name, labels=pod_labels),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels=pod_labels),
            strategy=client.V1DeploymentStrategy(type=strategy_type),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=pod_labels),
                spec=client.V1PodSpec(
                    termination_grace_period_seconds=0,
                    containers=[
                        client.V1Container(
                            name=container_name, image=image, security_context=client.V1SecurityContext()
                        )
                    ],
                ),
            ),
        ),
    )


def wait_for_deployment_revision_and_image(apps, namespace, name, revision, image):
    """e2edeployment.WaitForDeploymentRevisionAndImage: the Deployment and its new ReplicaSet carry the revision
    annotation, and both use the image."""
    annotation = "deployment.kubernetes.io/revision"

    def check():
        deployment = apps.read_namespaced_deployment(name, namespace)
        if (deployment.metadata.annotations or {}).get(annotation) != revision:
            return False, f"deployment annotations {deployment.metadata.annotations}"
        if deployment.spec.template.spec.containers[0].image != image:
            return False, f"deployment image {deployment.spec.template.spec.containers[0].image}"
        owned = [
            rs
            for rs in apps.list_namespaced_replica_set(namespace).items
            if controller_of(rs) is not None and controller_of(rs).uid == deployment.metadata.uid
        ]
        new = [
            rs
            for rs in owned
            if (rs.metadata.annotations or {}).get(annotation) == revision
            and rs.spec.template.spec.containers[0].image == image
        ]
        return len(new) == 1, [(rs.metadata.name, rs.metadata.annotations) for rs in owned]

    wait_until(check, f"Deployment {name} to reach revision {revision} with image {image}")


def new_rc(name, replicas, pod_labels, container_name, image):
    """The apps e2e tests' newRC (the selector is defaulted from the template's labels)."""
    return client.V1ReplicationController(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1ReplicationControllerSpec(
            replicas=replicas,
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=pod_labels),
                spec=client.V1PodSpec(
                    termination_grace_period_seconds=0,
                    containers=[client.V1Container(name=container_name, image=image)],
                ),
            ),
        ),
    )


def find_rc_condition(rc, condition_type):
    return next((c for c in (rc.status.conditions if rc.status else None) or [] if c.type == condition_type), None)


STATEFUL_SET_LABELS = {"foo": "bar", "baz": "blah"}


def create_headless_service(core, namespace, name, selector):
    """The StatefulSet tests' BeforeEach: the governing Service, headless, port 80 named http."""
    core.create_namespaced_service(
        namespace,
        client.V1Service(
            metadata=client.V1ObjectMeta(name=name),
            spec=client.V1ServiceSpec(
                cluster_ip="None",
                selector=selector,
                ports=[client.V1ServicePort(name="http", port=80, protocol="TCP")],
            ),
        ),
    )


def new_stateful_set(name, namespace, service_name, replicas, labels):
    """e2estatefulset.NewStatefulSet without volumes, with the HTTP readiness probe of setHTTPProbe."""
    return client.V1StatefulSet(
        metadata=client.V1ObjectMeta(name=name, namespace=namespace),
        spec=client.V1StatefulSetSpec(
            selector=client.V1LabelSelector(match_labels=labels),
            replicas=replicas,
            service_name=service_name,
            update_strategy=client.V1StatefulSetUpdateStrategy(type="RollingUpdate"),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels, annotations={}),
                spec=client.V1PodSpec(
                    containers=[
                        client.V1Container(
                            name="webserver",
                            image=HTTPD_IMAGE,
                            security_context=client.V1SecurityContext(),
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


def wait_for_stateful_set_observed(apps, namespace, name, generation):
    """The StatefulSet tests' waitForStatus: status.observedGeneration reaches the generation given."""

    def check():
        current = apps.read_namespaced_stateful_set(name, namespace)
        observed = current.status.observed_generation if current.status else None
        return observed is not None and observed >= generation, current.status

    wait_until(check, f"StatefulSet {name} to observe generation {generation}")


def pods_matching(core, namespace, selector):
    """The pods a controller made that are not being deleted."""
    pods = core.list_namespaced_pod(namespace, label_selector=selector).items
    return [pod for pod in pods if pod.metadata.deletion_timestamp is None]


def wait_for_pod_count(core, namespace, selector, count):
    """Wait for `count` live pods with the labels: what upstream's 'pods are running' checks need without a node."""

    def check():
        pods = pods_matching(core, namespace, selector)
        return len(pods) == count, [pod.metadata.name for pod in pods]

    return wait_until(check, f"{count} pods with {selector}")


# ---------------------------------------------------------------------------------------------------------------------
# ControllerRevision, CronJob
# ---------------------------------------------------------------------------------------------------------------------


def test_controllerrevision_should_manage_the_lifecycle_of_a_controllerrevision(apps, namespace):
    """ControllerRevision should manage the lifecycle of a ControllerRevision.

    Upstream: test/e2e/apps/controller_revision.go. The DaemonSet's first revision is found by a label list across
    namespaces and patched; a second revision of the same template is created by hand, the first deleted, the second
    updated; a change of the DaemonSet's template makes the controller add revision 3, and a deletecollection by the
    updated label leaves only that one. Differences: the hand-made revision is named with a random suffix instead of
    the hash upstream computes with controller.ComputeHash (which Python cannot reproduce), so no name collision is
    provoked; the node preparation and the wait for daemon pods on every node are left out (there are no nodes).
    """
    ds_name = f"e2e-{random_suffix()}-daemon-set"
    ds_labels = {"daemonset-name": ds_name}
    selector = selector_string(ds_labels)
    apps.create_namespaced_daemon_set(namespace, new_daemon_set(ds_name, ds_labels))
    check_daemon_status(apps, namespace, ds_name)

    listed = apps.list_daemon_set_for_all_namespaces(label_selector=selector)
    assert len(listed.items) == 1, [item.metadata.name for item in listed.items]
    ds = apps.read_namespaced_daemon_set(ds_name, namespace)

    def revision_count(count):
        def check():
            revisions = apps.list_namespaced_controller_revision(namespace, label_selector=selector).items
            return len(revisions) == count, [(r.metadata.name, r.revision) for r in revisions]

        wait_until(check, f"{count} ControllerRevisions with {selector}")

    # Upstream finds the revision after its daemon pods run; here the controller's first sync is awaited instead.
    revision_count(1)
    revisions = apps.list_controller_revision_for_all_namespaces(label_selector=selector).items
    assert len(revisions) == 1, [r.metadata.name for r in revisions]
    owner = revisions[0].metadata.owner_references[0]
    assert owner.kind == "DaemonSet" and owner.uid == ds.metadata.uid, owner
    initial = apps.read_namespaced_controller_revision(revisions[0].metadata.name, namespace)

    patched = apps.patch_namespaced_controller_revision(
        initial.metadata.name, namespace, {"metadata": {"labels": {initial.metadata.name: "patched"}}}
    )
    assert (patched.metadata.labels or {}).get(initial.metadata.name) == "patched", patched.metadata.labels

    new_hash = random_suffix(10)
    new_revision = client.V1ControllerRevision(
        metadata=client.V1ObjectMeta(
            name=f"{ds_name}-{new_hash}",
            namespace=namespace,
            labels={**ds.spec.template.metadata.labels, "controller-revision-hash": new_hash},
            annotations=ds.metadata.annotations,
            owner_references=[
                client.V1OwnerReference(
                    api_version="apps/v1",
                    kind="DaemonSet",
                    name=ds.metadata.name,
                    uid=ds.metadata.uid,
                    controller=True,
                    block_owner_deletion=True,
                )
            ],
        ),
        data=initial.data,
        revision=initial.revision + 1,
    )
    created = apps.create_namespaced_controller_revision(namespace, new_revision)
    assert created.revision == initial.revision + 1
    revision_count(2)

    apps.delete_namespaced_controller_revision(initial.metadata.name, namespace)
    revision_count(1)

    current = apps.list_namespaced_controller_revision(namespace).items[0]

    def update():
        revision = apps.read_namespaced_controller_revision(current.metadata.name, namespace)
        revision.metadata.labels[current.metadata.name] = "updated"
        return apps.replace_namespaced_controller_revision(current.metadata.name, namespace, revision)

    updated = retry_on_conflict(update)
    assert updated.metadata.labels.get(current.metadata.name) == "updated", updated.metadata.labels

    # Upstream's patch also carries a misplaced top-level updateStrategy, which is not a DaemonSet field.
    apps.patch_namespaced_daemon_set(
        ds_name,
        namespace,
        {
            "spec": {"template": {"spec": {"terminationGracePeriodSeconds": 1}}},
            "updateStrategy": {"type": "RollingUpdate"},
        },
    )
    revision_count(2)

    apps.delete_collection_namespaced_controller_revision(
        namespace, label_selector=f"{updated.metadata.name}=updated"
    )
    revision_count(1)
    remaining = apps.list_namespaced_controller_revision(namespace).items
    assert [r.revision for r in remaining] == [3], [(r.metadata.name, r.revision) for r in remaining]


def new_test_cron_job(name, schedule, concurrency_policy, command, success_limit, failed_limit):
    """The cronjob e2e tests' newTestCronJob."""
    return client.V1CronJob(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1CronJobSpec(
            schedule=schedule,
            concurrency_policy=concurrency_policy,
            successful_jobs_history_limit=success_limit,
            failed_jobs_history_limit=failed_limit,
            job_template=client.V1JobTemplateSpec(
                spec=client.V1JobSpec(
                    parallelism=1,
                    completions=1,
                    backoff_limit=1,
                    template=client.V1PodTemplateSpec(
                        spec=client.V1PodSpec(
                            restart_policy="OnFailure",
                            volumes=[client.V1Volume(name="data", empty_dir=client.V1EmptyDirVolumeSource())],
                            containers=[
                                client.V1Container(
                                    name="c",
                                    image=BUSYBOX_IMAGE,
                                    command=command,
                                    volume_mounts=[client.V1VolumeMount(mount_path="/data", name="data")],
                                )
                            ],
                        )
                    ),
                )
            ),
        ),
    )


def test_cronjob_should_support_cronjob_api_operations(api_client, namespace, client_with_content_type):
    """CronJob should support CronJob API operations.

    Upstream: test/e2e/apps/cronjob.go. Create, get, list (here and across namespaces), watch from the list's
    resourceVersion (which must see only MODIFIED events until the patched annotation), merge patch, update, merge
    patch and update of /status (lastScheduleTime), GET /status, delete (the CronJob is gone or carries a finalizer and
    a deletionTimestamp), deletecollection by label. The label's value is the namespace (upstream: the framework's
    unique name). Nothing here needs a pod to run.
    """
    batch = client.BatchV1Api(api_client)
    merge = client.BatchV1Api(client_with_content_type(MERGE_PATCH))
    selector = f"special-label={namespace}"
    template = new_test_cron_job("test-api", "* */1 * * ?", "Allow", ["/bin/true"], 1, 0)
    template.metadata.labels = {"special-label": namespace}

    created = batch.create_namespaced_cron_job(namespace, template)
    gotten = batch.read_namespaced_cron_job(created.metadata.name, namespace)
    assert gotten.metadata.uid == created.metadata.uid

    listed = batch.list_namespaced_cron_job(namespace, label_selector=selector)
    assert len(listed.items) == 1, [item.metadata.name for item in listed.items]
    stream = WatchStream(
        api_client,
        f"/apis/batch/v1/namespaces/{namespace}/cronjobs",
        resourceVersion=listed.metadata.resource_version,
        labelSelector=selector,
    )
    try:
        everywhere = batch.list_cron_job_for_all_namespaces(label_selector=selector)
        assert len(everywhere.items) == 1, [(i.metadata.namespace, i.metadata.name) for i in everywhere.items]
        # Upstream only opens the cluster-wide watch; it must be accepted.
        WatchStream(
            api_client,
            "/apis/batch/v1/cronjobs",
            resourceVersion=listed.metadata.resource_version,
            labelSelector=selector,
        ).stop()

        patched = merge.patch_namespaced_cron_job(
            created.metadata.name, namespace, {"metadata": {"annotations": {"patched": "true"}}}
        )
        assert (patched.metadata.annotations or {}).get("patched") == "true", patched.metadata.annotations

        def update():
            current = batch.read_namespaced_cron_job(created.metadata.name, namespace)
            current.metadata.annotations["updated"] = "true"
            return batch.replace_namespaced_cron_job(created.metadata.name, namespace, current)

        updated = retry_on_conflict(update)
        assert updated.metadata.annotations.get("updated") == "true", updated.metadata.annotations

        def modified_with_patched_annotation(event):
            assert event["type"] == "MODIFIED", f"expected only MODIFIED events, got {event['type']}"
            return (event["object"]["metadata"].get("annotations") or {}).get("patched") == "true"

        next_event(stream, "the patched annotation", modified_with_patched_annotation)
    finally:
        stream.stop()

    now1 = now_rfc3339()
    patched_status = merge.patch_namespaced_cron_job_status(
        created.metadata.name,
        namespace,
        {
            "metadata": {"annotations": {"patchedstatus": "true"}},
            "status": {"lastScheduleTime": now1.strftime("%Y-%m-%dT%H:%M:%SZ")},
        },
    )
    assert patched_status.status.last_schedule_time == now1, patched_status.status
    assert (patched_status.metadata.annotations or {}).get("patchedstatus") == "true"

    now2 = now_rfc3339()

    def update_status():
        current = batch.read_namespaced_cron_job(created.metadata.name, namespace)
        current.status.last_schedule_time = now2
        return batch.replace_namespaced_cron_job_status(created.metadata.name, namespace, current)

    updated_status = retry_on_conflict(update_status)
    assert updated_status.status.last_schedule_time == now2, updated_status.status

    status = call(api_client, "GET", f"/apis/batch/v1/namespaces/{namespace}/cronjobs/{created.metadata.name}/status")
    assert status["metadata"]["uid"] == created.metadata.uid

    def expect_finalizer(cron_job, step):
        assert cron_job.metadata.deletion_timestamp is not None, f"{step}: no deletionTimestamp on {cron_job.metadata}"
        assert cron_job.metadata.finalizers, f"{step}: no finalizers on {cron_job.metadata}"

    template.metadata.name = "for-removal"
    for_removal = batch.create_namespaced_cron_job(namespace, template)
    batch.delete_namespaced_cron_job(for_removal.metadata.name, namespace)
    try:
        expect_finalizer(batch.read_namespaced_cron_job(for_removal.metadata.name, namespace), "deleting cronjob")
    except ApiException as error:
        assert error.status == 404, f"expected 404 after the delete, got {error.status}: {error.body}"

    batch.delete_collection_namespaced_cron_job(namespace, label_selector=selector)
    remaining = batch.list_namespaced_cron_job(namespace, label_selector=selector).items
    assert len(remaining) <= 2, [item.metadata.name for item in remaining]
    for cron_job in remaining:
        expect_finalizer(cron_job, "deleting cronjob collection")


# ---------------------------------------------------------------------------------------------------------------------
# Deployment
# ---------------------------------------------------------------------------------------------------------------------


def test_deployment_deployment_should_have_a_working_scale_subresource(core, apps, namespace):
    """Deployment Deployment should have a working scale subresource.

    Upstream: test/e2e/apps/deployment.go (testDeploymentSubresources). GET /scale (spec and status 1 replica), PUT
    /scale to 2 (seen in the Deployment's spec), strategic merge patch of /scale to 4 with the body Go marshals from a
    Scale (a null creationTimestamp, status.replicas 0). Left out: waiting for the Deployment to complete (its pod
    cannot run); status.replicas counts the pending pod.
    """
    name = "test-new-deployment"
    wait_for_default_service_account(core, namespace)
    apps.create_namespaced_deployment(
        namespace, new_deployment(name, 1, {"name": WEBSERVER_NAME}, WEBSERVER_NAME, HTTPD_IMAGE, "RollingUpdate")
    )
    wait_for_deployment_revision_and_image(apps, namespace, name, "1", HTTPD_IMAGE)
    wait_for_replicas_status(lambda: apps.read_namespaced_deployment(name, namespace), name, 1)

    scale = apps.read_namespaced_deployment_scale(name, namespace)
    assert scale.spec.replicas == 1 and scale.status.replicas == 1, scale

    # No resourceVersion: the update is unconditional.
    scale.metadata.resource_version = None
    scale.spec.replicas = 2
    result = apps.replace_namespaced_deployment_scale(name, namespace, scale)
    assert result.spec.replicas == 2, result
    assert apps.read_namespaced_deployment(name, namespace).spec.replicas == 2

    apps.patch_namespaced_deployment_scale(name, namespace, scale_patch(4))
    assert apps.read_namespaced_deployment(name, namespace).spec.replicas == 4


def test_deployment_should_validate_deployment_status_endpoints(
    api_client, core, apps, namespace, client_with_content_type
):
    """Deployment should validate Deployment Status endpoints.

    Upstream: test/e2e/apps/deployment.go. GET /status; PUT /status with an added condition and a merge patch of
    /status with another, each seen through a watch (label e2e=testing) from the list's resourceVersion. Left out:
    waiting for the Deployment to complete (its pod cannot run); the wait for revision 1 is kept.
    """
    name = "test-deployment-" + random_suffix()
    selector = "e2e=testing"
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    listed = apps.list_deployment_for_all_namespaces(label_selector=selector)
    pod_labels = {"name": WEBSERVER_NAME, "e2e": "testing"}
    apps.create_namespaced_deployment(
        namespace, new_deployment(name, 1, pod_labels, WEBSERVER_NAME, HTTPD_IMAGE, "RollingUpdate")
    )
    wait_for_deployment_revision_and_image(apps, namespace, name, "1", HTTPD_IMAGE)

    status = call(api_client, "GET", f"{path}/{name}/status")
    assert status["metadata"]["name"] == name

    def update():
        current = apps.read_namespaced_deployment(name, namespace)
        current.status.conditions = (current.status.conditions or []) + [
            client.V1DeploymentCondition(type="StatusUpdate", status="True", reason="E2E", message="Set from e2e test")
        ]
        return apps.replace_namespaced_deployment_status(name, namespace, current)

    retry_on_conflict(update)

    def ours(obj):
        meta = obj["metadata"]
        labels = meta.get("labels") or {}
        return meta["name"] == name and meta["namespace"] == namespace and labels.get("e2e") == "testing"

    merge = client.AppsV1Api(client_with_content_type(MERGE_PATCH))
    watch_status_update_then_patch(
        api_client,
        path,
        listed.metadata.resource_version,
        selector,
        ours,
        lambda body: merge.patch_namespaced_deployment_status(name, namespace, body),
    )


# ---------------------------------------------------------------------------------------------------------------------
# DisruptionController, Job
# ---------------------------------------------------------------------------------------------------------------------


def test_disruptioncontroller_should_create_a_poddisruptionbudget(api_client, namespace, client_with_content_type):
    """DisruptionController should create a PodDisruptionBudget.

    Upstream: test/e2e/apps/disruption.go. Create with minAvailable 1%, PUT to 2%, merge patch to 3% (after a GET of
    /status, as upstream's patch helper does), delete; after each write the disruption controller must have observed
    the generation, and after the delete the budget must be gone. Nothing here needs a pod.
    """
    policy = client.PolicyV1Api(api_client)
    merge = client.PolicyV1Api(client_with_content_type(MERGE_PATCH))
    create_pdb(policy, namespace, "foo", "1%", {"foo": "bar"})

    def update():
        current = policy.read_namespaced_pod_disruption_budget("foo", namespace)
        current.spec.min_available = "2%"
        return policy.replace_namespaced_pod_disruption_budget("foo", namespace, current)

    updated = retry_on_conflict(update)
    wait_for_pdb_processed(policy, namespace, "foo")
    assert updated.spec.min_available == "2%", updated.spec

    def patch():
        call(api_client, "GET", f"/apis/policy/v1/namespaces/{namespace}/poddisruptionbudgets/foo/status")
        return merge.patch_namespaced_pod_disruption_budget("foo", namespace, {"spec": {"minAvailable": "3%"}})

    patched = retry_on_conflict(patch)
    wait_for_pdb_processed(policy, namespace, "foo")
    assert patched.spec.min_available == "3%", patched.spec

    policy.delete_namespaced_pod_disruption_budget("foo", namespace)

    def gone():
        try:
            policy.read_namespaced_pod_disruption_budget("foo", namespace)
            return False, "still there"
        except ApiException as error:
            if error.status != 404:
                raise
            return True, "gone"

    wait_until(gone, "the PodDisruptionBudget to be deleted")


def wait_for_job_active(batch, namespace, name, active):
    """What upstream's WaitForJobPodsRunning needs without a node: the Job counts `active` pods (pending ones count)."""

    def check():
        job = batch.read_namespaced_job(name, namespace)
        return (job.status.active or 0) == active, job.status

    wait_until(check, f"Job {name} to have {active} active pods")


def test_job_should_delete_a_job(api_client, core, namespace):
    """Job should delete a job.

    Upstream: test/e2e/apps/job.go. A Job whose pods never end is deleted with background propagation; the garbage
    collector must remove its pods, and a GET of the Job then answers 404 (e2eresource.DeleteResourceAndWaitForGC).
    Left out: waiting for the pods to run; the Job's status.active must reach the parallelism instead, and the pods
    are pending when the Job is deleted.
    """
    batch = client.BatchV1Api(api_client)
    wait_for_default_service_account(core, namespace)
    job = batch.create_namespaced_job(namespace, new_test_job("notTerminate", "foo", 2, 4, 6))
    wait_for_job_active(batch, namespace, "foo", 2)
    selector = selector_string(job.spec.selector.match_labels)
    assert len(pods_matching(core, namespace, selector)) == 2

    batch.delete_namespaced_job("foo", namespace, propagation_policy="Background")

    def pods_inactive():
        live = pods_matching(core, namespace, selector)
        return live == [], [pod.metadata.name for pod in live]

    wait_until(pods_inactive, "the Job's pods to be deleted or terminating")

    def pods_gone():
        pods = core.list_namespaced_pod(namespace, label_selector=selector).items
        return pods == [], [(pod.metadata.name, pod.metadata.deletion_timestamp) for pod in pods]

    wait_until(pods_gone, "the garbage collector to remove the Job's pods")

    try:
        batch.read_namespaced_job("foo", namespace)
        raise AssertionError("the Job is still there after its deletion")
    except ApiException as error:
        assert error.status == 404, f"expected 404, got {error.status}: {error.body}"


def test_job_should_adopt_matching_orphans_and_release_non_matching_pods(api_client, core, namespace):
    """Job should adopt matching orphans and release non-matching pods.

    Upstream: test/e2e/apps/job.go. A pod whose owner reference is taken away is adopted again, since it still
    matches the Job's selector; a pod whose labels no longer match is released (its owner reference goes). Left out:
    waiting for the pods to run; the Job's status.active must reach the parallelism instead.
    """
    batch = client.BatchV1Api(api_client)
    wait_for_default_service_account(core, namespace)
    job = batch.create_namespaced_job(namespace, new_test_job("notTerminate", "adopt-release", 2, 2, 6))
    wait_for_job_active(batch, namespace, "adopt-release", 2)
    selector = selector_string(job.spec.selector.match_labels)
    pods = pods_matching(core, namespace, selector)
    assert len(pods) == 2

    orphan = pods[0].metadata.name
    core.patch_namespaced_pod(orphan, namespace, {"metadata": {"ownerReferences": None}})

    def adopted():
        owner = controller_of(core.read_namespaced_pod(orphan, namespace))
        return owner is not None and owner.uid == job.metadata.uid, owner

    wait_until(adopted, f"the Job to adopt the orphaned pod {orphan}")

    released = pods[1].metadata.name
    labels = {key: None for key in job.spec.selector.match_labels}
    core.patch_namespaced_pod(released, namespace, {"metadata": {"labels": labels}})

    def let_go():
        owner = controller_of(core.read_namespaced_pod(released, namespace))
        return owner is None, owner

    wait_until(let_go, f"the Job to release the pod {released}, which no longer matches")


# ---------------------------------------------------------------------------------------------------------------------
# ReplicaSet, ReplicationController
# ---------------------------------------------------------------------------------------------------------------------


def test_replicaset_replace_and_patch_tests(api_client, core, apps, namespace):
    """ReplicaSet Replace and Patch tests.

    Upstream: test/e2e/apps/replica_set.go (testRSLifeCycle). The ReplicaSet is scaled to 2 by an update, then a
    strategic merge patch adds a label, sets 3 replicas and adds a container (pause, termination grace 0), which
    the merge puts first; a watch (label test-rs=patched) from the earlier list must show all of it. Left out: pods
    running and ready; the watch waits for status.replicas 3 instead of readyReplicas and availableReplicas 3.
    """
    rs_name = "test-rs"
    pod_labels = {"name": "sample-pod", "pod": AGNHOST_NAME}
    wait_for_default_service_account(core, namespace)
    listed = apps.list_replica_set_for_all_namespaces(label_selector="test-rs=patched")
    created = apps.create_namespaced_replica_set(namespace, new_rs(rs_name, 1, pod_labels))
    assert int(created.metadata.resource_version) > 0, created.metadata.resource_version
    wait_for_pod_count(core, namespace, "name=sample-pod", 1)

    def scale_up():
        current = apps.read_namespaced_replica_set(rs_name, namespace)
        current.spec.replicas = 2
        return apps.replace_namespaced_replica_set(rs_name, namespace, current)

    retry_on_conflict(scale_up)

    patch = {
        "metadata": {"labels": {"test-rs": "patched"}},
        "spec": {
            "replicas": 3,
            "template": {
                "spec": {"terminationGracePeriodSeconds": 0, "containers": [{"name": rs_name, "image": PAUSE_IMAGE}]}
            },
        },
    }
    patched = apps.patch_namespaced_replica_set(rs_name, namespace, patch)
    assert int(patched.metadata.resource_version) > int(created.metadata.resource_version)

    def patched_and_counted(event):
        obj = event["object"]
        spec = obj["spec"]["template"]["spec"]
        return (
            obj["metadata"]["name"] == rs_name
            and obj["metadata"].get("labels", {}).get("test-rs") == "patched"
            and (obj.get("status") or {}).get("replicas") == 3
            and spec["containers"][0]["image"] == PAUSE_IMAGE
            and spec.get("terminationGracePeriodSeconds") == 0
        )

    watch_until(
        api_client,
        f"/apis/apps/v1/namespaces/{namespace}/replicasets",
        listed.metadata.resource_version,
        "test-rs=patched",
        patched_and_counted,
        "the patched ReplicaSet with 3 pods",
    )


def test_replicaset_replicaset_should_have_a_working_scale_subresource(core, apps, namespace):
    """ReplicaSet Replicaset should have a working scale subresource.

    Upstream: test/e2e/apps/replica_set.go (testRSScaleSubresources). GET /scale (spec and status 1), PUT /scale to 2
    (seen in the spec), strategic merge patch of /scale to 4 with the body Go marshals from a Scale. Left out: waiting
    for the pod to run; status.replicas counts the pending pod.
    """
    rs_name = "test-rs"
    wait_for_default_service_account(core, namespace)
    apps.create_namespaced_replica_set(namespace, new_rs(rs_name, 1, {"name": "sample-pod", "pod": AGNHOST_NAME}))
    wait_for_replicas_status(lambda: apps.read_namespaced_replica_set(rs_name, namespace), rs_name, 1)

    scale = apps.read_namespaced_replica_set_scale(rs_name, namespace)
    assert scale.spec.replicas == 1 and scale.status.replicas == 1, scale

    scale.metadata.resource_version = None
    scale.spec.replicas = 2
    result = apps.replace_namespaced_replica_set_scale(rs_name, namespace, scale)
    assert result.spec.replicas == 2, result
    assert apps.read_namespaced_replica_set(rs_name, namespace).spec.replicas == 2

    apps.patch_namespaced_replica_set_scale(rs_name, namespace, scale_patch(4))
    assert apps.read_namespaced_replica_set(rs_name, namespace).spec.replicas == 4


def test_replicationcontroller_should_get_and_update_a_replicationcontroller_scale(core, namespace):
    """ReplicationController should get and update a ReplicationController scale.

    Upstream: test/e2e/apps/rc.go. GET /scale shows the 1 pod counted in status; PUT /scale (unconditional) to 2, after
    which status.replicas must reach 2. The pods stay pending, which the counts do not mind.
    """
    name = "e2e-rc-" + random_suffix()
    wait_for_default_service_account(core, namespace)
    core.create_namespaced_replication_controller(
        namespace, new_rc(name, 1, {"name": name}, WEBSERVER_NAME, HTTPD_IMAGE)
    )
    read = lambda: core.read_namespaced_replication_controller(name, namespace)  # noqa: E731
    wait_for_replicas_status(read, name, 1)

    scale = core.read_namespaced_replication_controller_scale(name, namespace)
    assert scale.status.replicas == 1, scale

    scale.metadata.resource_version = None
    scale.spec.replicas = 2
    core.replace_namespaced_replication_controller_scale(name, namespace, scale)
    wait_for_replicas_status(read, name, 2)


def test_replicationcontroller_should_surface_a_failure_condition_on_a_common_issue_like_exceeded_quota(
    core, namespace
):
    """ReplicationController should surface a failure condition on a common issue like exceeded quota.

    Upstream: test/e2e/apps/rc.go (testReplicationControllerConditionCheck). A ResourceQuota allows 2 pods; an RC that
    wants 3 gets exactly 2 (quota admission serializes the controller's parallel creates) and the ReplicaFailure
    condition (once its status has observed its generation), and loses it when scaled down to 2. The pods need not
    run. The test waits for the namespace's default ServiceAccount first, so that the failure is the quota's, and
    checks that the condition's message is the quota's refusal as the API server words it.
    """
    name = "condition-test"
    core.create_namespaced_resource_quota(
        namespace,
        client.V1ResourceQuota(
            metadata=client.V1ObjectMeta(name=name), spec=client.V1ResourceQuotaSpec(hard={"pods": "2"})
        ),
    )

    def quota_synced():
        quota = core.read_namespaced_resource_quota(name, namespace)
        hard = (quota.status.hard or {}) if quota.status else {}
        return hard.get("pods") == "2", quota.status

    wait_until(quota_synced, f"ResourceQuota {name} to be synced")
    wait_for_default_service_account(core, namespace)

    created = core.create_namespaced_replication_controller(
        namespace, new_rc(name, 3, {"name": name}, WEBSERVER_NAME, HTTPD_IMAGE)
    )

    def scale_to(replicas):
        """updateReplicationControllerWithRetries: get, change, update, again every 10 ms on a conflict while the
        controller keeps writing the status (for up to a minute upstream)."""
        deadline = time.monotonic() + CONTROLLER_TIMEOUT
        while True:
            current = core.read_namespaced_replication_controller(name, namespace)
            current.spec.replicas = replicas
            try:
                return core.replace_namespaced_replication_controller(name, namespace, current)
            except ApiException as error:
                if error.status != 409 or time.monotonic() > deadline:
                    raise
            time.sleep(0.01)

    def condition_after(generation, present):
        def check():
            current = core.read_namespaced_replication_controller(name, namespace)
            observed = (current.status.observed_generation or 0) if current.status else 0
            if observed < generation:
                return False, f"observedGeneration {observed} < {generation}"
            condition = find_rc_condition(current, "ReplicaFailure")
            return (condition is not None) == present, current.status.conditions

        return check

    wait_until(condition_after(created.metadata.generation, True), f"the ReplicaFailure condition on rc {name}")
    condition = find_rc_condition(core.read_namespaced_replication_controller(name, namespace), "ReplicaFailure")
    assert condition.message.startswith('pods "') and "is forbidden: exceeded quota: condition-test" in condition.message, (
        condition
    )
    assert len(core.list_namespaced_pod(namespace).items) == 2, "the quota admits two of the three pods"

    within = scale_to(2)
    wait_until(condition_after(within.metadata.generation, False), f"rc {name} to lose the ReplicaFailure condition")


def test_replicationcontroller_should_test_the_lifecycle_of_a_replicationcontroller(api_client, core, namespace):
    """ReplicationController should test the lifecycle of a ReplicationController.

    Upstream: test/e2e/apps/rc.go. Through one watch (label test-rc-static=true, from a list's resourceVersion): ADDED;
    a strategic merge patch of a label; a strategic merge patch of /status; a strategic merge patch of /scale to 2; a
    PUT of /status; a list across namespaces by label; deletecollection by label, and DELETED. The patch bodies are
    the ones Go marshals from typed objects (with a null creationTimestamp and status.replicas 0). Each write must come
    back through the watch as a MODIFIED event with the resourceVersion the write returned. Left out: pods ready;
    status.replicas (pending pods) is checked instead of readyReplicas, by GET /status after the status patch
    (upstream waits for an event that, without ready pods to restore readyReplicas, need not come).
    """
    name = "rc-test"
    selector = "test-rc-static=true"
    path = f"/api/v1/namespaces/{namespace}/replicationcontrollers"
    wait_for_default_service_account(core, namespace)
    listed = core.list_namespaced_replication_controller(namespace, label_selector=selector)
    stream = WatchStream(api_client, path, resourceVersion=listed.metadata.resource_version, labelSelector=selector)

    def expect(event_type, what, resource_version=None, condition=lambda obj: True):
        """The event of one write, found by the resourceVersion the write returned (or, without one, by its type);
        events of the controller's status writes in between are skipped."""

        def ours(event):
            meta = event["object"]["metadata"]
            if resource_version is None:
                return meta["name"] == name and event["type"] == event_type
            return meta["name"] == name and meta["resourceVersion"] == resource_version

        event = next_event(stream, what, ours)
        assert event["type"] == event_type, f"{what}: expected a {event_type} event, got {event['type']}"
        assert condition(event["object"]), f"{what}: the event's object does not show it: {event['object']}"
        return event["object"]

    try:
        static = {"test-rc-static": "true"}
        created = core.create_namespaced_replication_controller(
            namespace,
            client.V1ReplicationController(
                metadata=client.V1ObjectMeta(name=name, labels=static),
                spec=client.V1ReplicationControllerSpec(
                    replicas=1,
                    selector=static,
                    template=client.V1PodTemplateSpec(
                        metadata=client.V1ObjectMeta(name=name, labels=static),
                        spec=client.V1PodSpec(containers=[client.V1Container(name=name, image=NGINX_IMAGE)]),
                    ),
                ),
            ),
        )
        expect("ADDED", "the RC's creation", created.metadata.resource_version)
        next_event(
            stream,
            "1 pod counted in status.replicas",
            lambda event: (event["object"].get("status") or {}).get("replicas") == 1,
        )

        label_patch = {
            "metadata": {"labels": {"test-rc": "patched"}, "creationTimestamp": None},
            "spec": {},
            "status": {"replicas": 0},
        }
        patched = core.patch_namespaced_replication_controller(name, namespace, label_patch)
        assert (patched.metadata.labels or {}).get("test-rc") == "patched", patched.metadata.labels
        expect(
            "MODIFIED",
            "the patched label",
            patched.metadata.resource_version,
            lambda obj: (obj["metadata"].get("labels") or {}).get("test-rc") == "patched",
        )

        status_patch = {"status": {"readyReplicas": 0, "availableReplicas": 0}}
        patched_status = core.patch_namespaced_replication_controller_status(name, namespace, status_patch)
        assert (patched_status.status.ready_replicas or 0) == 0, patched_status.status
        expect(
            "MODIFIED",
            "the status patch",
            patched_status.metadata.resource_version,
            lambda obj: not (obj.get("status") or {}).get("readyReplicas"),
        )

        status = call(api_client, "GET", f"{path}/{name}/status")
        assert status["status"].get("replicas") == 1, status["status"]

        scale = core.patch_namespaced_replication_controller_scale(name, namespace, scale_patch(2))
        assert scale.spec.replicas == 2, scale
        expect(
            "MODIFIED", "the scale patch", scale.metadata.resource_version, lambda obj: obj["spec"].get("replicas") == 2
        )
        next_event(
            stream,
            "2 pods counted in status.replicas",
            lambda event: (event["object"].get("status") or {}).get("replicas") == 2,
        )

        rc = core.read_namespaced_replication_controller(name, namespace)
        assert (rc.metadata.labels or {}).get("test-rc") == "patched", rc.metadata.labels

        def update_status():
            current = core.read_namespaced_replication_controller(name, namespace)
            current.status.available_replicas = 1
            current.status.ready_replicas = 1
            return core.replace_namespaced_replication_controller_status(name, namespace, current)

        updated_status = retry_on_conflict(update_status)
        expect(
            "MODIFIED",
            "the status update",
            updated_status.metadata.resource_version,
            lambda obj: (obj.get("status") or {}).get("readyReplicas") == 1,
        )

        everywhere = core.list_replication_controller_for_all_namespaces(label_selector=selector).items
        assert any(
            item.metadata.name == name
            and item.metadata.namespace == namespace
            and (item.metadata.labels or {}).get("test-rc-static") == "true"
            and (item.metadata.labels or {}).get("test-rc") == "patched"
            for item in everywhere
        ), [(item.metadata.namespace, item.metadata.name, item.metadata.labels) for item in everywhere]

        core.delete_collection_namespaced_replication_controller(namespace, label_selector=selector)
        expect("DELETED", "the RC's deletion", condition=lambda obj: obj["metadata"]["namespace"] == namespace)
    finally:
        stream.stop()


# ---------------------------------------------------------------------------------------------------------------------
# StatefulSet
# ---------------------------------------------------------------------------------------------------------------------


def test_statefulset_basic_functionality_should_have_a_working_scale_subresource(core, apps, namespace):
    """StatefulSet Basic functionality: should have a working scale subresource.

    Upstream: test/e2e/apps/statefulset.go (with the headless Service of its BeforeEach). GET /scale (spec and status
    1), PUT /scale to 2 (seen in the spec), strategic merge patch of /scale to 4 with the body Go marshals from a Scale.
    Left out: waiting for the pod to run and be ready; the wait for status.observedGeneration is kept, and
    status.replicas counts the pending pod.
    """
    create_headless_service(core, namespace, "test", STATEFUL_SET_LABELS)
    wait_for_default_service_account(core, namespace)
    created = apps.create_namespaced_stateful_set(
        namespace, new_stateful_set("ss", namespace, "test", 1, STATEFUL_SET_LABELS)
    )
    wait_for_stateful_set_observed(apps, namespace, "ss", created.metadata.generation)
    wait_for_replicas_status(lambda: apps.read_namespaced_stateful_set("ss", namespace), "ss", 1)

    scale = apps.read_namespaced_stateful_set_scale("ss", namespace)
    assert scale.spec.replicas == 1 and scale.status.replicas == 1, scale

    scale.metadata.resource_version = None
    scale.spec.replicas = 2
    result = apps.replace_namespaced_stateful_set_scale("ss", namespace, scale)
    assert result.spec.replicas == 2, result
    assert apps.read_namespaced_stateful_set("ss", namespace).spec.replicas == 2

    apps.patch_namespaced_stateful_set_scale("ss", namespace, scale_patch(4))
    assert apps.read_namespaced_stateful_set("ss", namespace).spec.replicas == 4


def test_statefulset_basic_functionality_should_list_patch_and_delete_a_collection_of_statefulsets(
    core, apps, namespace
):
    """StatefulSet Basic functionality: should list, patch and delete a collection of StatefulSets.

    Upstream: test/e2e/apps/statefulset.go. A strategic merge patch adds the label test-ss=patched, sets 2 replicas
    and adds a pause container, which the merge puts first (upstream's patch also carries a misspelt
    TerminationGracePeriodSeconds key, kept here); a label list across namespaces finds the StatefulSet and a
    deletecollection by the label removes it. The label has a random suffix so that StatefulSets of other runs are not
    counted. Left out: waiting for the pods to run and be ready; the waits for status.observedGeneration are kept.
    """
    name = "test-ss"
    value = "patched-" + random_suffix()
    selector = f"test-ss={value}"
    create_headless_service(core, namespace, "test", STATEFUL_SET_LABELS)
    created = apps.create_namespaced_stateful_set(
        namespace, new_stateful_set(name, namespace, "test", 1, {"name": "sample-pod", "pod": WEBSERVER_NAME})
    )
    wait_for_stateful_set_observed(apps, namespace, name, created.metadata.generation)

    patch = {
        "metadata": {"labels": {"test-ss": value}},
        "spec": {
            "replicas": 2,
            "template": {
                "spec": {"TerminationGracePeriodSeconds": 1, "containers": [{"name": name, "image": PAUSE_IMAGE}]}
            },
        },
    }
    apps.patch_namespaced_stateful_set(name, namespace, patch)
    ss = apps.read_namespaced_stateful_set(name, namespace)
    assert ss.spec.replicas == 2, ss.spec.replicas
    assert ss.spec.template.spec.containers[0].image == PAUSE_IMAGE, ss.spec.template.spec.containers
    wait_for_stateful_set_observed(apps, namespace, name, ss.metadata.generation)

    listed = apps.list_stateful_set_for_all_namespaces(label_selector=selector)
    assert len(listed.items) == 1, [(item.metadata.namespace, item.metadata.name) for item in listed.items]

    apps.delete_collection_namespaced_stateful_set(namespace, label_selector=selector, grace_period_seconds=1)
    listed = apps.list_stateful_set_for_all_namespaces(label_selector=selector)
    assert listed.items == [], [(item.metadata.namespace, item.metadata.name) for item in listed.items]


# ---------------------------------------------------------------------------------------------------------------------
# sig-scheduling: PriorityClass; sig-node: ConfigMap
# ---------------------------------------------------------------------------------------------------------------------


def test_schedulerpreemption_priorityclass_endpoints_can_be_operated_with_different_http_methods(api_client):
    """SchedulerPreemption: PriorityClass endpoints can be operated with different HTTP methods.

    Upstream: test/e2e/scheduling/preemption.go ("PriorityClass endpoints"). Two PriorityClasses (values 1 and 2); a
    strategic merge patch and an update of `value` must fail (immutable); a patch and an update of `description`
    succeed; list; each class keeps its value, has the new description and a larger resourceVersion. The classes
    get a random suffix on upstream's names p1 and p2 (they are cluster-scoped), and are deleted with a
    deletecollection by label at the end, as upstream's AfterEach does.
    """
    scheduling = client.SchedulingV1Api(api_client)
    test_uuid = str(uuid.uuid4())
    suffix = random_suffix()
    try:
        pcs = [
            scheduling.create_priority_class(
                client.V1PriorityClass(
                    metadata=client.V1ObjectMeta(name=f"p{value}-{suffix}", labels={"e2e": test_uuid}), value=value
                )
            )
            for value in (1, 2)
        ]

        # The two-way strategic merge patch from the object to its copy holds only the changed field.
        try:
            scheduling.patch_priority_class(pcs[0].metadata.name, {"value": pcs[0].value * 10})
            raise AssertionError("a patch of the immutable value was accepted")
        except ApiException as error:
            assert error.status == 422, f"expected 422 Invalid, got {error.status}: {error.body}"

        changed_value = copy.deepcopy(pcs[1])
        changed_value.value = pcs[1].value * 10
        try:
            scheduling.replace_priority_class(pcs[1].metadata.name, changed_value)
            raise AssertionError("an update of the immutable value was accepted")
        except ApiException as error:
            assert error.status == 422, f"expected 422 Invalid, got {error.status}: {error.body}"

        new_description = "updated description"
        scheduling.patch_priority_class(pcs[0].metadata.name, {"description": new_description})

        # The object as created: its resourceVersion is still current, as the update above failed.
        changed_description = copy.deepcopy(pcs[1])
        changed_description.description = new_description
        scheduling.replace_priority_class(pcs[1].metadata.name, changed_description)

        scheduling.list_priority_class()

        for pc in pcs:
            live = scheduling.read_priority_class(pc.metadata.name)
            assert live.value == pc.value, (live.value, pc.value)
            assert live.description == new_description, live.description
            assert int(live.metadata.resource_version) > int(pc.metadata.resource_version), (
                live.metadata.resource_version,
                pc.metadata.resource_version,
            )
    finally:
        scheduling.delete_collection_priority_class(label_selector=f"e2e={test_uuid}")


def test_configmap_should_run_through_a_configmap_lifecycle(core, namespace):
    """ConfigMap should run through a ConfigMap lifecycle.

    Upstream: test/e2e/common/node/configmap.go. Create, get, a strategic merge patch (the body Go marshals from a
    ConfigMap, with a null creationTimestamp) that adds a label and changes a value, a label list across all
    namespaces that finds the patched ConfigMap, a deletecollection by the static label, and a list that finds none.
    """
    name = "test-configmap" + str(uuid.uuid4())
    static = {"test-configmap-static": "true"}
    core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name, labels=static), data={"valueName": "value"}),
    )
    fetched = core.read_namespaced_config_map(name, namespace)
    assert fetched.data["valueName"] == "value"
    assert fetched.metadata.labels["test-configmap-static"] == "true"

    patch = {
        "metadata": {"labels": {"test-configmap": "patched"}, "creationTimestamp": None},
        "data": {"valueName": "value1"},
    }
    core.patch_namespaced_config_map(name, namespace, patch)

    everywhere = core.list_config_map_for_all_namespaces(label_selector="test-configmap=patched").items
    assert any(
        item.metadata.name == name
        and item.metadata.namespace == namespace
        and item.metadata.labels.get("test-configmap-static") == "true"
        and item.metadata.labels.get("test-configmap") == "patched"
        and (item.data or {}).get("valueName") == "value1"
        for item in everywhere
    ), [(item.metadata.namespace, item.metadata.name, item.metadata.labels, item.data) for item in everywhere]

    core.delete_collection_namespaced_config_map(namespace, label_selector="test-configmap-static=true")
    remaining = core.list_namespaced_config_map(namespace, label_selector="test-configmap-static=true").items
    assert remaining == [], [item.metadata.name for item in remaining]
