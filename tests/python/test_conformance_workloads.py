"""sig-apps conformance entries about workload controllers, reproduced as far as they need no running pod.

The controller these tests talk to has no nodes: the pods that workload controllers create stay Pending. They are
created, owned, counted and deleted, but never run, become ready or finish. Each test repeats the API calls and checks
of one upstream e2e test (the file under kubernetes/kubernetes `test/e2e/apps/` is named in its docstring) and says
which of upstream's waits it leaves out or replaces.

The four CronJob entries share one module fixture that creates their CronJobs at once: each needs the clock to pass
one or two whole minutes (cron schedules are minute-granular), and sharing the wait keeps the four under about two
minutes together instead of up to two minutes each.
"""

import datetime
import time
import uuid

import pytest
from kubernetes import client
from kubernetes.client import ApiException

from test_conformance import (
    AGNHOST_IMAGE,
    BUSYBOX_IMAGE,
    CONTROLLER_TIMEOUT,
    HTTPD_IMAGE,
    PAUSE_IMAGE,
    WatchStream,
    call,
    random_suffix,
    retry_on_conflict,
    wait_for_default_service_account,
    wait_until,
    watch_until,
)

STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"

# How late after a schedule time kaasd's CronJob controller may start the Job (upstream's test waits 5 minutes in
# all). Also how long past a schedule time a test waits to be sure a Job did not start.
CRON_SLACK = 15.0


def controller_ref(obj):
    """metav1.GetControllerOf for a typed object."""
    return next((ref for ref in obj.metadata.owner_references or [] if ref.controller), None)


# ---------------------------------------------------------------------------------------------------------------------
# CronJob
# ---------------------------------------------------------------------------------------------------------------------


def new_test_cron_job(name, concurrency_policy, suspend=False):
    """newTestCronJob with the "*/1 * * * ?" schedule and the sleep command: its Job's pod never finishes (here,
    because no node runs it), so each Job stays active."""
    return client.V1CronJob(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1CronJobSpec(
            schedule="*/1 * * * ?",
            concurrency_policy=concurrency_policy,
            suspend=suspend,
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
                                    command=["sleep", "300"],
                                    volume_mounts=[client.V1VolumeMount(mount_path="/data", name="data")],
                                )
                            ],
                        )
                    ),
                )
            ),
        ),
    )


def job_finished(job):
    """jobutil.IsJobFinished: a Complete or Failed condition that is True."""
    return any(
        condition.type in ("Complete", "Failed") and condition.status == "True"
        for condition in (job.status.conditions if job.status else None) or []
    )


class CronJobRun:
    """One CronJob of the shared fixture: its namespace, name, and the schedule times after its creation."""

    def __init__(self, namespace, name, created):
        self.namespace = namespace
        self.name = name
        # The first minute boundary after creation is the first time the schedule fires.
        self.first = created.replace(second=0, microsecond=0) + datetime.timedelta(minutes=1)
        self.second = self.first + datetime.timedelta(minutes=1)

    def seconds_until(self, moment, slack=CRON_SLACK):
        return (moment - datetime.datetime.now(datetime.timezone.utc)).total_seconds() + slack


@pytest.fixture(scope="module")
def cron_jobs(core, api_client):
    """The CronJobs of the four CronJob entries, created together in their own namespaces."""
    batch = client.BatchV1Api(api_client)
    policies = {"suspended": "Allow", "forbid": "Forbid", "replace": "Replace", "concurrent": "Allow"}
    namespaces = {}
    try:
        for name in policies:
            namespaces[name] = "cronjob-" + uuid.uuid4().hex[:10]
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespaces[name])))
        for namespace in namespaces.values():
            # The Jobs' pods are refused until the namespace's default ServiceAccount exists.
            wait_for_default_service_account(core, namespace)
        runs = {}
        for name, policy in policies.items():
            created = batch.create_namespaced_cron_job(
                namespaces[name], new_test_cron_job(name, policy, suspend=name == "suspended")
            )
            runs[name] = CronJobRun(namespaces[name], name, created.metadata.creation_timestamp)
        yield runs
    finally:
        for namespace in namespaces.values():
            try:
                core.delete_namespace(namespace)
            except ApiException:
                pass


def active_of(batch, run):
    cron_job = batch.read_namespaced_cron_job(run.name, run.namespace)
    return (cron_job.status.active if cron_job.status else None) or []


def wait_for_active_jobs(batch, run, count, timeout):
    """waitForActiveJobs: the CronJob's status.active lists at least `count` Jobs."""

    def check():
        active = active_of(batch, run)
        return len(active) >= count, [ref.name for ref in active]

    wait_until(check, f"{count} active Jobs of CronJob {run.name}", timeout=timeout, interval=1.0)


def delete_cron_job(batch, run):
    """deleteCronJob: background propagation, which also removes its Jobs and their pods."""
    batch.delete_namespaced_cron_job(run.name, run.namespace, propagation_policy="Background")


def test_cronjob_should_not_schedule_jobs_when_suspended(api_client, cron_jobs):
    """CronJob should not schedule jobs when suspended.

    Upstream: test/e2e/apps/cronjob.go. A suspended CronJob with an every-minute schedule keeps status.active empty,
    and no Job exists. Upstream watches for 5 minutes; this test watches until 15 s past the first schedule time after
    the CronJob's creation (at most about 75 s, shared with the other CronJob tests).
    """
    batch = client.BatchV1Api(api_client)
    run = cron_jobs["suspended"]
    deadline = time.monotonic() + run.seconds_until(run.first)
    while time.monotonic() < deadline:
        active = active_of(batch, run)
        assert active == [], f"the suspended CronJob has active Jobs: {[ref.name for ref in active]}"
        time.sleep(1.0)

    jobs = batch.list_namespaced_job(run.namespace)
    assert jobs.items == [], [job.metadata.name for job in jobs.items]
    delete_cron_job(batch, run)


def test_cronjob_should_replace_jobs_when_replaceconcurrent(api_client, cron_jobs):
    """CronJob should replace jobs when ReplaceConcurrent.

    Upstream: test/e2e/apps/cronjob.go. The first Job starts and stays active (its pod is never run); the CronJob
    lists exactly one active Job and one unfinished Job exists; at the next schedule time that Job is replaced by a
    new one, and there is never more than one Job not being deleted.
    """
    batch = client.BatchV1Api(api_client)
    run = cron_jobs["replace"]
    wait_for_active_jobs(batch, run, 1, run.seconds_until(run.first))

    active = active_of(batch, run)
    assert len(active) == 1, [ref.name for ref in active]
    jobs = batch.list_namespaced_job(run.namespace)
    unfinished = [job.metadata.name for job in jobs.items if not job_finished(job)]
    # The Job of the first schedule time (a CronJob's Jobs are named after their scheduled time in minutes). This
    # test runs before the next schedule time: the tests before it in this file wait at most until 15 s past the
    # first one.
    previous = f"{run.name}-{int(run.first.timestamp()) // 60}"
    assert unfinished == [previous], unfinished

    def replaced():
        # waitForJobReplaced: Jobs pending deletion do not count, since Job deletion is asynchronous.
        jobs = batch.list_namespaced_job(run.namespace).items
        alive = [job.metadata.name for job in jobs if job.metadata.deletion_timestamp is None]
        assert len(alive) <= 1, f"more than one Job is running: {alive}"
        return len(alive) == 1 and alive[0] != previous, alive

    wait_until(replaced, f"Job {previous} to be replaced", timeout=run.seconds_until(run.second), interval=1.0)
    delete_cron_job(batch, run)


def test_cronjob_should_not_schedule_new_jobs_when_forbidconcurrent(api_client, cron_jobs):
    """CronJob should not schedule new jobs when ForbidConcurrent.

    Upstream: test/e2e/apps/cronjob.go. The first Job starts and stays active (its pod never finishes: here it is never
    run, upstream it sleeps); the CronJob lists exactly one active Job and one unfinished Job exists. Upstream's last
    check (fewer than two active Jobs) passes at its first poll; this test holds it until 15 s past the next schedule
    time, so that the schedule really fires while the first Job is active.
    """
    batch = client.BatchV1Api(api_client)
    run = cron_jobs["forbid"]
    wait_for_active_jobs(batch, run, 1, run.seconds_until(run.first))

    active = active_of(batch, run)
    assert len(active) == 1, [ref.name for ref in active]
    jobs = batch.list_namespaced_job(run.namespace)
    unfinished = [job.metadata.name for job in jobs.items if not job_finished(job)]
    assert len(unfinished) == 1, unfinished

    deadline = time.monotonic() + run.seconds_until(run.second)
    while time.monotonic() < deadline:
        active = active_of(batch, run)
        assert len(active) < 2, f"unexpected active Jobs: {[ref.name for ref in active]}"
        time.sleep(1.0)
    jobs = batch.list_namespaced_job(run.namespace)
    assert [job.metadata.name for job in jobs.items] == unfinished
    delete_cron_job(batch, run)


def test_cronjob_should_schedule_multiple_jobs_concurrently(api_client, cron_jobs):
    """CronJob should schedule multiple jobs concurrently.

    Upstream: test/e2e/apps/cronjob.go. With concurrencyPolicy Allow, the Job of the first schedule time is still
    active (its pod is never run) when the second starts: the CronJob lists two active Jobs, and a list finds at least
    two unfinished Jobs.
    """
    batch = client.BatchV1Api(api_client)
    run = cron_jobs["concurrent"]
    wait_for_active_jobs(batch, run, 2, run.seconds_until(run.second))

    jobs = batch.list_namespaced_job(run.namespace)
    unfinished = [job.metadata.name for job in jobs.items if not job_finished(job)]
    assert len(unfinished) >= 2, unfinished
    delete_cron_job(batch, run)


# ---------------------------------------------------------------------------------------------------------------------
# Deployment
# ---------------------------------------------------------------------------------------------------------------------


def new_deployment(name, replicas, pod_labels, container_name, image, strategy_type):
    """e2edeployment.NewDeployment: the pod labels also label the Deployment and select its pods."""
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name, labels=dict(pod_labels)),
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


def owned_replica_sets(apps, namespace, deployment):
    return [
        rs
        for rs in apps.list_namespaced_replica_set(namespace).items
        if (controller_ref(rs) and controller_ref(rs).uid == deployment.metadata.uid)
    ]


def wait_for_revision_and_image(apps, namespace, name, revision, image):
    """e2edeployment.WaitForDeploymentRevisionAndImage: the Deployment and its new ReplicaSet (the owned one with the
    Deployment's template) carry the revision annotation, and both use the image."""
    annotation = "deployment.kubernetes.io/revision"

    def check():
        deployment = apps.read_namespaced_deployment(name, namespace)
        template = deployment.spec.template.spec.containers[0].image
        new = [
            rs
            for rs in owned_replica_sets(apps, namespace, deployment)
            if rs.spec.template.spec.containers[0].image == image
        ]
        seen = {
            "deployment": ((deployment.metadata.annotations or {}).get(annotation), template),
            "replica sets": [((rs.metadata.annotations or {}).get(annotation), rs.metadata.name) for rs in new],
        }
        done = (
            seen["deployment"] == (revision, image)
            and len(new) == 1
            and (new[0].metadata.annotations or {}).get(annotation) == revision
        )
        return done, seen

    wait_until(check, f"Deployment {name} at revision {revision} with image {image}")


def test_deployment_recreatedeployment_should_delete_old_pods_and_create_new_ones(apps, core, namespace):
    """Deployment RecreateDeployment should delete old pods and create new ones.

    Upstream: test/e2e/apps/deployment.go (testRecreateDeployment). A Recreate Deployment reaches revision 1; its
    template is changed; a watch on the Deployment never sees new pods counted alongside old ones (updatedReplicas > 0
    while replicas differs) until replicas and updatedReplicas reach spec.replicas at the observed generation, at
    revision 2. Skipped: upstream's wait for the first rollout to be complete (available pods need a node); instead
    the test waits for the first pod to exist, so that the old pod really has to be deleted. Added: the old pod is
    gone and the one pod left belongs to the new ReplicaSet.
    """
    wait_for_default_service_account(core, namespace)
    name = "test-recreate-deployment"
    labels = {"name": "sample-pod-3"}
    apps.create_namespaced_deployment(namespace, new_deployment(name, 1, labels, "agnhost", AGNHOST_IMAGE, "Recreate"))
    wait_for_revision_and_image(apps, namespace, name, "1", AGNHOST_IMAGE)

    def one_pod():
        pods = core.list_namespaced_pod(namespace, label_selector="name=sample-pod-3").items
        return len(pods) == 1, [pod.metadata.name for pod in pods]

    [old_pod] = wait_until(one_pod, "the first ReplicaSet's pod")

    def update():
        current = apps.read_namespaced_deployment(name, namespace)
        current.spec.template.spec.containers[0].name = "httpd"
        current.spec.template.spec.containers[0].image = HTTPD_IMAGE
        return apps.replace_namespaced_deployment(name, namespace, current)

    updated = retry_on_conflict(update)

    # watchRecreateDeployment: fail as soon as new pods are counted alongside old ones; done when the rollout is
    # observed and every replica is updated.
    def recreated(event):
        deployment = event["object"]
        status = deployment.get("status") or {}
        updated_replicas, replicas = status.get("updatedReplicas", 0), status.get("replicas", 0)
        assert not (updated_replicas > 0 and replicas != updated_replicas), (
            f"Deployment {name} is running new pods alongside old pods: {status}"
        )
        return (
            deployment["spec"]["replicas"] == replicas == updated_replicas
            and deployment["metadata"]["generation"] <= status.get("observedGeneration", 0)
        )

    watch_until(
        apps.api_client,
        f"/apis/apps/v1/namespaces/{namespace}/deployments",
        updated.metadata.resource_version,
        None,
        recreated,
        "the Recreate rollout",
        timeout=CONTROLLER_TIMEOUT,
    )
    wait_for_revision_and_image(apps, namespace, name, "2", HTTPD_IMAGE)

    def replaced():
        pods = core.list_namespaced_pod(namespace, label_selector="name=sample-pod-3").items
        names = [pod.metadata.name for pod in pods]
        return old_pod not in names and len(pods) == 1 and pods[0].spec.containers[0].image == HTTPD_IMAGE, names

    wait_until(replaced, "the old pod to be replaced by one of the new template")


def test_deployment_deployment_should_delete_old_replica_sets(apps, core, namespace):
    """Deployment deployment should delete old replica sets.

    Upstream: test/e2e/apps/deployment.go (testDeploymentCleanUpPolicy). A ReplicaSet's pod exists; a RollingUpdate
    Deployment with revisionHistoryLimit 0 and the ReplicaSet's "name" label as its selector adopts that ReplicaSet
    as an old one and creates its own; a watch on pods from before the Deployment sees exactly one pod created, of the
    Deployment's template. Skipped: waiting for the ReplicaSet's pod to run, and the end of the entry, the old
    ReplicaSet's deletion. That needs the Deployment to complete: a rolling update scales the old ReplicaSet down only
    once the new pod is available, and upstream's controller (like kaasd's) prunes history only on a complete
    Deployment. The test checks instead that the old ReplicaSet is still there, adopted, with its pod.
    """
    wait_for_default_service_account(core, namespace)
    rs_labels = {"name": "cleanup-pod", "pod": "httpd"}
    rs = client.V1ReplicaSet(
        metadata=client.V1ObjectMeta(name="test-cleanup-controller", labels=rs_labels),
        spec=client.V1ReplicaSetSpec(
            replicas=1,
            selector=client.V1LabelSelector(match_labels=rs_labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=rs_labels),
                spec=client.V1PodSpec(
                    containers=[
                        client.V1Container(name="httpd", image=HTTPD_IMAGE, security_context=client.V1SecurityContext())
                    ]
                ),
            ),
        ),
    )
    rs = apps.create_namespaced_replica_set(namespace, rs)
    [old_pod] = wait_for_owned_pods(core, namespace, rs, 1)

    pods = core.list_namespaced_pod(namespace)
    stream = WatchStream(
        apps.api_client, f"/api/v1/namespaces/{namespace}/pods", resourceVersion=pods.metadata.resource_version
    )
    try:
        deployment = new_deployment(
            "test-cleanup-deployment", 1, {"name": "cleanup-pod"}, "agnhost", AGNHOST_IMAGE, "RollingUpdate"
        )
        deployment.spec.revision_history_limit = 0
        deployment = apps.create_namespaced_deployment(namespace, deployment)

        def adopted():
            ref = controller_ref(apps.read_namespaced_replica_set("test-cleanup-controller", namespace))
            return ref is not None and ref.uid == deployment.metadata.uid, ref

        wait_until(adopted, "the Deployment to adopt test-cleanup-controller")
        wait_for_revision_and_image(apps, namespace, "test-cleanup-deployment", "1", AGNHOST_IMAGE)

        def new_pod():
            names = sorted(pod.metadata.name for pod in core.list_namespaced_pod(namespace).items)
            return len(names) == 2, names

        wait_until(new_pod, "the Deployment's pod")
        added = []
        while (event := stream.next(0.5)) is not None:
            assert event["type"] != "CLOSED", event
            if event["type"] == "ADDED":
                added.append(event["object"])
        assert len(added) == 1, f"expected one pod creation, saw {[pod['metadata']['name'] for pod in added]}"
        assert added[0]["spec"]["containers"][0]["name"] == "agnhost", added[0]["spec"]["containers"]

        # The old ReplicaSet keeps its pod until the new one is available.
        old = apps.read_namespaced_replica_set("test-cleanup-controller", namespace)
        assert old.spec.replicas == 1, old.spec
        assert old_pod.metadata.name in [pod.metadata.name for pod in core.list_namespaced_pod(namespace).items]
    finally:
        stream.stop()


def test_deployment_should_run_the_lifecycle_of_a_deployment(
    api_client, apps, core, namespace, client_with_content_type
):
    """Deployment should run the lifecycle of a Deployment.

    Upstream: test/e2e/apps/deployment.go. Every step is seen through a watch from a list's resourceVersion: the
    Deployment is created (ADDED), strategic-merge-patched to a label, 1 replica, a new image and grace period
    (MODIFIED), found by a label list across namespaces, replaced without a resourceVersion (an unconditional update)
    with another label, image and 2 replicas (MODIFIED, and GET /status shows the new image and label), its status is
    strategic-merge-patched to readyReplicas and availableReplicas 0 (MODIFIED), and it is deleted with a
    deletecollection by label (DELETED). Skipped: upstream's waits for ready replicas (no node runs the pods). The test
    waits instead for the controller to act on each spec change: 2 replicas counted after creation, and the patched and
    the updated template each counted in updatedReplicas (at least 1: a rolling update with pods that never become
    available goes no further). Without ready pods, the status patch writes the values the status already has.
    """
    wait_for_default_service_account(core, namespace)
    name = "test-deployment"
    selector = "test-deployment-static=true"
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    listed = apps.list_deployment_for_all_namespaces(label_selector=selector)

    deployment = new_deployment(name, 2, {"test-deployment-static": "true"}, name, AGNHOST_IMAGE, "RollingUpdate")
    deployment.spec.template.spec.termination_grace_period_seconds = 1
    apps.create_namespaced_deployment(namespace, deployment)

    def ours(event, event_type=None):
        obj = event["object"]
        return (
            (event_type is None or event["type"] == event_type)
            and obj["metadata"]["name"] == name
            and (obj["metadata"].get("labels") or {}).get("test-deployment-static") == "true"
        )

    def since(resource_version, condition, what):
        return watch_until(api_client, path, resource_version, selector, condition, what)

    rv = listed.metadata.resource_version
    since(rv, lambda event: ours(event, "ADDED"), "the Deployment's creation")
    since(rv, lambda event: ours(event) and (event["object"].get("status") or {}).get("replicas") == 2,
          "2 replicas counted")

    patch = {
        "metadata": {"labels": {"test-deployment": "patched"}},
        "spec": {
            "replicas": 1,
            "template": {
                "spec": {"terminationGracePeriodSeconds": 2, "containers": [{"name": name, "image": PAUSE_IMAGE}]}
            },
        },
    }
    strategic = client.AppsV1Api(client_with_content_type(STRATEGIC_MERGE_PATCH))
    strategic.patch_namespaced_deployment(name, namespace, patch)
    since(rv, lambda event: ours(event, "MODIFIED"), "a MODIFIED event")

    def patched_rollout(event):
        obj = event["object"]
        template = obj["spec"]["template"]["spec"]
        return (
            ours(event)
            and (obj.get("status") or {}).get("updatedReplicas", 0) >= 1
            and template["containers"][0]["image"] == PAUSE_IMAGE
            and template["terminationGracePeriodSeconds"] == 2
        )

    since(rv, patched_rollout, "the patched template's replica")

    listed = apps.list_deployment_for_all_namespaces(label_selector=selector)
    found = [
        item
        for item in listed.items
        if item.metadata.name == name
        and item.metadata.namespace == namespace
        and item.metadata.labels.get("test-deployment-static") == "true"
    ]
    assert found, [(item.metadata.namespace, item.metadata.name) for item in listed.items]

    # The object as first built, without a resourceVersion: Deployments allow an unconditional update.
    deployment.metadata.labels["test-deployment"] = "updated"
    deployment.spec.template.spec.containers[0].image = HTTPD_IMAGE
    deployment.spec.replicas = 2
    assert deployment.metadata.resource_version is None
    updated = apps.replace_namespaced_deployment(name, namespace, deployment)
    rv = listed.metadata.resource_version
    since(rv, lambda event: ours(event, "MODIFIED"), "a MODIFIED event")

    status = call(api_client, "GET", f"{path}/{name}/status")
    assert status["spec"]["template"]["spec"]["containers"][0]["image"] == HTTPD_IMAGE
    assert status["metadata"]["labels"].get("test-deployment") == "updated", status["metadata"]["labels"]

    def updated_rollout(event):
        obj = event["object"]
        obj_status = obj.get("status") or {}
        return (
            ours(event)
            and obj_status.get("observedGeneration", 0) >= updated.metadata.generation
            and obj_status.get("updatedReplicas", 0) >= 1
            and obj["spec"]["template"]["spec"]["containers"][0]["image"] == HTTPD_IMAGE
        )

    since(rv, updated_rollout, "the updated template's replica")

    strategic.patch_namespaced_deployment_status(
        name, namespace, {"status": {"readyReplicas": 0, "availableReplicas": 0}}
    )
    since(
        rv,
        lambda event: event["type"] == "MODIFIED"
        and event["object"]["metadata"]["name"] == name
        and (event["object"].get("status") or {}).get("readyReplicas", 0) == 0
        and (event["object"].get("status") or {}).get("availableReplicas", 0) == 0,
        "the patched status",
    )
    status = call(api_client, "GET", f"{path}/{name}/status")
    assert status["spec"]["template"]["spec"]["containers"][0]["image"] == HTTPD_IMAGE
    assert status["metadata"]["labels"].get("test-deployment") == "updated", status["metadata"]["labels"]

    apps.delete_collection_namespaced_deployment(namespace, label_selector=selector, grace_period_seconds=1)
    since(rv, lambda event: ours(event, "DELETED"), "the Deployment's deletion")


# ---------------------------------------------------------------------------------------------------------------------
# ReplicaSet
# ---------------------------------------------------------------------------------------------------------------------


def wait_for_scheduling_attempt(core, namespace, name):
    """The step of e2epod's CreateSync (wait for the pod to run) that a pod reaches without nodes: the scheduler has
    looked at it and said it cannot be placed (condition PodScheduled False)."""

    def check():
        conditions = core.read_namespaced_pod(name, namespace).status.conditions or []
        return any(c.type == "PodScheduled" for c in conditions), conditions

    wait_until(check, f"the scheduler to try pod {name}")


def test_replicaset_should_adopt_matching_pods_on_creation_and_release_no_longer_matching_pods(apps, core, namespace):
    """ReplicaSet should adopt matching pods on creation and release no longer matching pods.

    Upstream: test/e2e/apps/replica_set.go (testRSAdoptMatchingAndReleaseNotMatching). An orphan pod with the label
    name=pod-adoption-release is adopted by a ReplicaSet of 1 replica created with that selector (its controller
    reference names the ReplicaSet); when the label of the ReplicaSet's pod is changed to no longer match, the
    ReplicaSet releases it (no controller reference). Upstream waits for the orphan pod to run before it creates the
    ReplicaSet; this test waits for the scheduler to have tried it (PodScheduled False), as far as a pod gets without
    nodes. Either wait lets the controllers see the pod before the ReplicaSet: without one, the ReplicaSet controller
    may create a pod of its own first and then delete one of the two.
    """
    wait_for_default_service_account(core, namespace)
    name = "pod-adoption-release"
    labels = {"name": name}
    core.create_namespaced_pod(
        namespace,
        client.V1Pod(
            metadata=client.V1ObjectMeta(name=name, labels=labels),
            spec=client.V1PodSpec(containers=[client.V1Container(name=name, image=AGNHOST_IMAGE)]),
        ),
    )
    wait_for_scheduling_attempt(core, namespace, name)

    rs = client.V1ReplicaSet(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1ReplicaSetSpec(
            replicas=1,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(
                    termination_grace_period_seconds=0,
                    containers=[
                        client.V1Container(name=name, image=AGNHOST_IMAGE, security_context=client.V1SecurityContext())
                    ],
                ),
            ),
        ),
    )
    rs = apps.create_namespaced_replica_set(namespace, rs)

    def adopted():
        ref = controller_ref(core.read_namespaced_pod(name, namespace))
        return ref is not None and ref.uid == rs.metadata.uid, ref

    wait_until(adopted, "the orphan pod to be adopted")
    # The ReplicaSet needs no pod besides the adopted one.
    pods = core.list_namespaced_pod(namespace, label_selector=f"name={name}").items
    assert [pod.metadata.name for pod in pods] == [name]

    def relabel():
        pod = core.read_namespaced_pod(name, namespace)
        pod.metadata.labels = {"name": "not-matching-name"}
        return core.replace_namespaced_pod(name, namespace, pod)

    retry_on_conflict(relabel)

    def released():
        ref = controller_ref(core.read_namespaced_pod(name, namespace))
        return ref is None or ref.uid != rs.metadata.uid, ref

    wait_until(released, "the pod to be released")


def owned_pods(core, namespace, owner_uid, selector=None):
    return [
        pod
        for pod in core.list_namespaced_pod(namespace, label_selector=selector).items
        if controller_ref(pod) and controller_ref(pod).uid == owner_uid
    ]


def wait_for_owned_pods(core, namespace, owner, count):
    """What e2epod.VerifyPodsRunning can still check without nodes: `count` pods exist and `owner` controls them."""

    def check():
        pods = owned_pods(core, namespace, owner.metadata.uid)
        return len(pods) == count, [pod.metadata.name for pod in pods]

    wait_until(check, f"{count} pods of {owner.metadata.name}")
    return owned_pods(core, namespace, owner.metadata.uid)


def wait_for_no_pods(core, namespace, selector):
    def check():
        pods = core.list_namespaced_pod(namespace, label_selector=selector).items
        return pods == [], [pod.metadata.name for pod in pods]

    wait_until(check, f"the pods with {selector} to be deleted")


def test_replicaset_should_list_and_delete_a_collection_of_replicasets_creates_and_deletes_its_pods(
    apps, core, namespace
):
    """ReplicaSet should list and delete a collection of ReplicaSets: what the pods' part of the entry can show without
    nodes.

    Upstream: test/e2e/apps/replica_set.go. Adds to
    `test_conformance.py::test_replicaset_should_list_and_delete_a_collection_of_replicasets` (which does the list and
    deletecollection) the wait for the three pods, here for them to be created and controlled by the ReplicaSet
    (upstream: running), and checks that the deletecollection also removes them (garbage collection).
    """
    wait_for_default_service_account(core, namespace)
    value = random_suffix()
    labels = {"name": "sample-pod", "pod": "agnhost", "e2e": value}
    rs = client.V1ReplicaSet(
        metadata=client.V1ObjectMeta(name="test-rs", labels=labels),
        spec=client.V1ReplicaSetSpec(
            replicas=3,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(
                    termination_grace_period_seconds=0,
                    containers=[client.V1Container(name="agnhost", image=AGNHOST_IMAGE)],
                ),
            ),
        ),
    )
    rs = apps.create_namespaced_replica_set(namespace, rs)
    wait_for_owned_pods(core, namespace, rs, 3)

    def counted():
        status = apps.read_namespaced_replica_set("test-rs", namespace).status
        return status.replicas == 3, status

    wait_until(counted, "status.replicas 3")
    apps.delete_collection_namespaced_replica_set(namespace, label_selector=f"e2e={value}", grace_period_seconds=1)
    wait_for_no_pods(core, namespace, f"e2e={value}")


def test_replicaset_should_validate_replicaset_status_endpoints_creates_its_pod(apps, core, namespace):
    """ReplicaSet should validate Replicaset Status endpoints: what the pod's part of the entry can show without nodes.

    Upstream: test/e2e/apps/replica_set.go. Adds to
    `test_conformance.py::test_replicaset_should_validate_replicaset_status_endpoints` (which does the /status reads,
    PUT and patch) the wait for the ReplicaSet's pod (e2epod.VerifyPodsRunning), here for it to be created and
    controlled by the ReplicaSet and counted in status.replicas (upstream: running).
    """
    wait_for_default_service_account(core, namespace)
    labels = {"name": "sample-pod", "pod": "agnhost"}
    rs = client.V1ReplicaSet(
        metadata=client.V1ObjectMeta(name="test-rs", labels=labels),
        spec=client.V1ReplicaSetSpec(
            replicas=1,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[client.V1Container(name="agnhost", image=AGNHOST_IMAGE)]),
            ),
        ),
    )
    rs = apps.create_namespaced_replica_set(namespace, rs)
    [pod] = wait_for_owned_pods(core, namespace, rs, 1)
    assert pod.metadata.labels == labels, pod.metadata.labels

    def counted():
        status = apps.read_namespaced_replica_set("test-rs", namespace).status
        return status.replicas == 1 and status.observed_generation == rs.metadata.generation, status

    wait_until(counted, "status.replicas 1")


def test_statefulset_basic_functionality_should_validate_statefulset_status_endpoints_creates_its_pod(
    apps, core, namespace
):
    """StatefulSet Basic functionality: should validate Statefulset Status endpoints: what the pod's part of the entry
    can show without nodes.

    Upstream: test/e2e/apps/statefulset.go. Adds to
    `test_conformance.py::test_statefulset_basic_functionality_should_validate_statefulset_status_endpoints` (which does
    the /status reads, PUT and patch) the wait for the StatefulSet's pod (e2estatefulset.WaitForRunningAndReady), here
    for pod ss2-0 to be created with the template's labels and controlled by the StatefulSet, and counted in
    status.replicas (upstream: running and ready).
    """
    wait_for_default_service_account(core, namespace)
    labels = {"foo": "bar", "baz": "blah"}
    core.create_namespaced_service(
        namespace,
        client.V1Service(
            metadata=client.V1ObjectMeta(name="test"),
            spec=client.V1ServiceSpec(
                cluster_ip="None", selector=labels, ports=[client.V1ServicePort(name="http", port=80, target_port=80)]
            ),
        ),
    )
    stateful_set = client.V1StatefulSet(
        metadata=client.V1ObjectMeta(name="ss2"),
        spec=client.V1StatefulSetSpec(
            selector=client.V1LabelSelector(match_labels=labels),
            replicas=1,
            service_name="test",
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[client.V1Container(name="webserver", image=HTTPD_IMAGE)]),
            ),
        ),
    )
    stateful_set = apps.create_namespaced_stateful_set(namespace, stateful_set)
    [pod] = wait_for_owned_pods(core, namespace, stateful_set, 1)
    assert pod.metadata.name == "ss2-0"
    assert all(pod.metadata.labels.get(key) == value for key, value in labels.items()), pod.metadata.labels

    def counted():
        status = apps.read_namespaced_stateful_set("ss2", namespace).status
        return status is not None and status.replicas == 1, status

    wait_until(counted, "status.replicas 1")


def test_job_should_apply_changes_to_a_job_status_creates_its_pods(api_client, core, namespace):
    """Job should apply changes to a job status: what the pods' part of the entry can show without nodes.

    Upstream: test/e2e/apps/job.go. Adds to `test_conformance.py::test_job_should_apply_changes_to_a_job_status` (which
    does the /status patch, PUT and read) upstream's wait for the Job's pods (e2ejob.WaitForJobPodsRunning with
    parallelism 2), here for two pods to be created and controlled by the Job and counted in status.active (upstream:
    running).
    """
    wait_for_default_service_account(core, namespace)
    batch = client.BatchV1Api(api_client)
    job = client.V1Job(
        metadata=client.V1ObjectMeta(name="suspend-false-to-true"),
        spec=client.V1JobSpec(
            parallelism=2,
            completions=4,
            backoff_limit=6,
            template=client.V1PodTemplateSpec(
                spec=client.V1PodSpec(
                    restart_policy="Never",
                    containers=[client.V1Container(name="c", image=BUSYBOX_IMAGE, command=["sleep", "1000000"])],
                )
            ),
        ),
    )
    job = batch.create_namespaced_job(namespace, job)
    wait_for_owned_pods(core, namespace, job, 2)

    def active():
        status = batch.read_namespaced_job(job.metadata.name, namespace).status
        return status is not None and status.active == 2, status

    wait_until(active, "status.active 2")


# ---------------------------------------------------------------------------------------------------------------------
# DaemonSet, on a Node object made by hand
# ---------------------------------------------------------------------------------------------------------------------

# The taint key of the test's Node. The Node has no agent behind it, so nothing should land on it but the test's own
# daemon pods: its NoSchedule taint keeps the scheduler from placing other pods there and other tests' DaemonSets
# (which do not tolerate it) from wanting pods there.
NODE_TAINT_KEY = "e2e.kaasd.test/workloads"


@pytest.fixture
def lone_node(core):
    """A Node object with no kubelet behind it, tainted so that only pods tolerating the taint belong there; deleted
    at the end of the test."""
    name = "workloads-node-" + random_suffix()
    core.create_node(
        client.V1Node(
            metadata=client.V1ObjectMeta(name=name, labels={"kubernetes.io/hostname": name}),
            spec=client.V1NodeSpec(taints=[client.V1Taint(key=NODE_TAINT_KEY, value=name, effect="NoSchedule")]),
        )
    )
    try:
        yield name
    finally:
        core.delete_node(name)


def daemon_set_on(node, labels):
    """The daemon_set.go test DaemonSet (httpd on port 9376), tolerating the test Node's taint."""
    return client.V1DaemonSet(
        metadata=client.V1ObjectMeta(name="daemon-set", labels=labels),
        spec=client.V1DaemonSetSpec(
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(
                    tolerations=[
                        client.V1Toleration(key=NODE_TAINT_KEY, operator="Equal", value=node, effect="NoSchedule")
                    ],
                    containers=[
                        client.V1Container(
                            name="app", image=HTTPD_IMAGE, ports=[client.V1ContainerPort(container_port=9376)]
                        )
                    ],
                ),
            ),
        ),
    )


def pod_node(pod):
    """The node a daemon pod is for: where it was bound, or the node its affinity names (upstream's daemon pods carry
    a required node affinity on metadata.name and are placed by the scheduler)."""
    if pod.spec.node_name:
        return pod.spec.node_name
    terms = pod.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution.node_selector_terms
    return [value for term in terms for field in term.match_fields or [] for value in field.values]


def wait_for_daemon_pod_on(apps, core, namespace, daemon_set, node):
    """checkRunningOnAllNodes and CheckDaemonStatus as far as a node without an agent allows: one daemon pod,
    controlled by the DaemonSet, for the one node that tolerates it, and desired = current = 1 in the status (ready
    stays 0: nothing runs the pod)."""

    def pods_for_node():
        pods = owned_pods(core, namespace, daemon_set.metadata.uid)
        placed = [(pod.metadata.name, pod_node(pod)) for pod in pods]
        return len(pods) == 1 and pod_node(pods[0]) in (node, [node]), placed

    wait_until(pods_for_node, f"a daemon pod for node {node}")

    def counted():
        status = apps.read_namespaced_daemon_set(daemon_set.metadata.name, namespace).status
        counts = (status.desired_number_scheduled, status.current_number_scheduled, status.number_misscheduled)
        return counts == (1, 1, 0), counts

    wait_until(counted, "desired and current 1 in the DaemonSet's status")


def test_daemon_set_should_list_and_delete_a_collection_of_daemonsets_with_a_pod_on_each_node(
    apps, core, namespace, lone_node
):
    """Daemon set should list and delete a collection of DaemonSets: the daemon pods of the entry, on a Node object.

    Upstream: test/e2e/apps/daemon_set.go. Adds to
    `test_conformance.py::test_daemon_set_should_list_and_delete_a_collection_of_daemonsets` (which runs without
    nodes) the daemon pods: with a Node object made by hand (no kubelet behind it; a taint the DaemonSet tolerates
    keeps everything else off it), the DaemonSet controller creates one pod for it and counts it as desired and
    current. Upstream waits for those pods to run and be ready on every node; here they stay pending. Then the list
    across namespaces finds the DaemonSet, and the deletecollection by label removes it and, through garbage
    collection, its pod.
    """
    wait_for_default_service_account(core, namespace)
    labels = {"daemonset-name": "daemon-set-" + random_suffix()}
    selector = f"daemonset-name={labels['daemonset-name']}"
    daemon_set = apps.create_namespaced_daemon_set(namespace, daemon_set_on(lone_node, labels))
    wait_for_daemon_pod_on(apps, core, namespace, daemon_set, lone_node)

    listed = apps.list_daemon_set_for_all_namespaces(label_selector=selector)
    assert [item.metadata.name for item in listed.items] == ["daemon-set"]

    apps.delete_collection_namespaced_daemon_set(namespace, label_selector=selector, grace_period_seconds=1)
    listed = apps.list_daemon_set_for_all_namespaces(label_selector=selector)
    assert listed.items == [], [item.metadata.name for item in listed.items]
    wait_for_no_pods(core, namespace, selector)


def test_daemon_set_should_verify_changes_to_a_daemon_set_status_with_a_pod_on_each_node(
    apps, core, namespace, lone_node
):
    """Daemon set should verify changes to a daemon set status: the daemon pods of the entry, on a Node object.

    Upstream: test/e2e/apps/daemon_set.go. Adds to
    `test_conformance.py::test_daemon_set_should_verify_changes_to_a_daemon_set_status` (the /status reads, PUT and
    patch, without nodes) the step before them: with a Node object made by hand (no kubelet; a taint the DaemonSet
    tolerates keeps everything else off it), the DaemonSet controller creates one pod for the node and counts it as
    desired and current in the status that the entry then reads. Upstream waits for the pods to run and be ready;
    here they stay pending.
    """
    wait_for_default_service_account(core, namespace)
    labels = {"daemonset-name": "daemon-set"}
    daemon_set = apps.create_namespaced_daemon_set(namespace, daemon_set_on(lone_node, labels))
    wait_for_daemon_pod_on(apps, core, namespace, daemon_set, lone_node)
    status = apps.read_namespaced_daemon_set_status("daemon-set", namespace).status
    assert status.desired_number_scheduled == 1 and status.number_ready == 0, status
