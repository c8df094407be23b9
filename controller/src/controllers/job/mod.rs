//! The Job controller: runs pods until `completions` of them succeed (or, without `completions`, until one does),
//! `parallelism` at a time, and gives up after `backoffLimit` failures or `activeDeadlineSeconds`. Conditions as
//! upstream since 1.31: `SuccessCriteriaMet` / `FailureTarget` first, then `Complete` / `Failed` (what
//! `kubectl wait --for=condition=complete` waits for) once no pod is left running. `suspend` stops the pods;
//! `ttlSecondsAfterFinished` deletes a finished Job.
//!
//! Indexed Jobs (`completionMode: Indexed`) run one pod per index not yet done, lowest first; a pod learns its index
//! from the `batch.kubernetes.io/job-completion-index` annotation and label, `JOB_COMPLETION_INDEX` and its hostname
//! `<job>-<index>`. Succeeded indexes are kept in `status.completedIndexes` ([`indexes`]). With
//! `backoffLimitPerIndex` each index has its own retries, counted on the pods themselves; an index out of them goes
//! into `status.failedIndexes` and is not retried. `podFailurePolicy` ([`failure_policy`]) decides per failed pod
//! whether it counts, is ignored, fails its index or fails the Job; `successPolicy` ([`success_policy`]) ends an
//! Indexed Job early.
//!
//! Pods carry the `batch.kubernetes.io/job-tracking` finalizer, so a finished pod cannot vanish before it is
//! counted: its uid (for a succeeded pod of an Indexed Job, its index) first goes into the status, then the
//! finalizer comes off, then it moves into `succeeded` or `failed` (upstream's order, which counts each pod exactly
//! once across restarts).

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobSpec, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use serde_json::json;

use super::events::{Kind, Recorder};
use super::expectations::Expectations;
use super::informer::{Change, Informer};
use super::queue::{self, WorkQueue};
use super::replicaset::{adopt, controller_of, controller_reference, object_key, ready_since};
use super::{label_selector, labels_match, ReconcileError};
use failure_policy::Outcome;

mod failure_policy;
mod indexes;
mod success_policy;

pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
const DEFAULT_BACKOFF_LIMIT: i32 = 6;
/// Delay before recreating pods after failures: 10 s doubling, at most 6 minutes (upstream's pod failure back-off).
const FAILURE_BACKOFF: Duration = Duration::from_secs(10);
const MAX_FAILURE_BACKOFF: Duration = Duration::from_secs(360);
const WORKERS: usize = 5;
/// Set in every container of an Indexed Job's pods, unless the template sets it.
const COMPLETION_INDEX_ENV: &str = "JOB_COMPLETION_INDEX";
/// The API server appends 5 random characters to a generated name; names stay within 63.
const MAX_GENERATE_NAME_PREFIX: usize = 58;

pub struct JobController {
    client: kube::Client,
    jobs: Arc<Informer<Job>>,
    pods: Arc<Informer<Pod>>,
    expectations: Arc<Expectations>,
    /// Pods whose tracking finalizer this controller removed, until the cache shows it removed: a stale cache
    /// must not count a pod twice.
    released: Arc<Mutex<HashSet<String>>>,
    queue: WorkQueue,
    events: Recorder,
}

impl JobController {
    pub fn new(client: kube::Client, jobs: Arc<Informer<Job>>, pods: Arc<Informer<Pod>>) -> Arc<JobController> {
        let controller = Arc::new(JobController {
            events: Recorder::new(client.clone(), "job-controller"),
            client,
            jobs: jobs.clone(),
            pods: pods.clone(),
            expectations: Default::default(),
            released: Default::default(),
            queue: WorkQueue::new(),
        });
        let (queue, expectations) = (controller.queue.clone(), controller.expectations.clone());
        jobs.on_change(move |change| match change {
            Change::Applied { new, .. } => queue.add(object_key(*new)),
            Change::Deleted(old) => {
                let key = object_key(*old);
                expectations.forget(&key);
                // Its pods may still hold the tracking finalizer.
                queue.add(key);
            }
        });
        let (queue, expectations, released) =
            (controller.queue.clone(), controller.expectations.clone(), controller.released.clone());
        let jobs_of_orphans = jobs.clone();
        pods.on_change(move |change| {
            let (pod, created) = match change {
                Change::Applied { old, new } => (*new, old.is_none()),
                Change::Deleted(old) => (*old, false),
            };
            let tracked = pod.finalizers().iter().any(|finalizer| finalizer == TRACKING_FINALIZER);
            if !tracked || matches!(change, Change::Deleted(_)) {
                if let Some(uid) = &pod.metadata.uid {
                    released.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(uid);
                }
            }
            if controller_of(pod).is_none() && pod.metadata.deletion_timestamp.is_none() {
                // An orphan: every Job whose selector it matches may adopt it.
                for job in jobs_of_orphans.list_namespace(pod.metadata.namespace.as_deref().unwrap_or_default()) {
                    let selector = job.spec.as_ref().and_then(|spec| spec.selector.as_ref()).and_then(label_selector);
                    if selector.is_some_and(|selector| labels_match(&selector, pod.metadata.labels.as_ref())) {
                        queue.add(object_key(job.as_ref()));
                    }
                }
                return;
            }
            let Some(owner) = controller_of(pod).filter(|owner| owner.kind == "Job") else { return };
            let key = queue::key(pod.metadata.namespace.as_deref(), &owner.name);
            if created {
                expectations.creation_observed(&key);
            }
            queue.add(key);
        });
        controller
    }

    pub async fn run(self: Arc<Self>) {
        self.jobs.synced().await;
        self.pods.synced().await;
        let controller = self.clone();
        queue::run_workers("job", self.queue.clone(), WORKERS, move |key| {
            let controller = controller.clone();
            async move { controller.reconcile(&key).await }
        })
        .await;
    }

    async fn reconcile(&self, key: &str) -> Result<(), ReconcileError> {
        let (namespace, name) = queue::split(key);
        let pods_api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let jobs_api: Api<Job> = Api::namespaced(self.client.clone(), namespace);
        // The counters are read fresh, not from the cache: a status this controller wrote a moment ago and the
        // cache does not show yet would make it count the same pods again.
        let job = match self.jobs.get(namespace, name) {
            Some(_) => jobs_api.get_opt(name).await?,
            None => None,
        };
        self.release_orphans(&pods_api, namespace, name, job.as_ref().and_then(|job| job.uid())).await?;
        let Some(job) = job else { return Ok(()) };
        let job = Arc::new(job);
        let all_owned = self.claim_pods(&pods_api, &job).await;
        let spec = job.spec.clone().unwrap_or_default();
        let old_status = job.status.clone().unwrap_or_default();
        let mut status = old_status.clone();
        let now = jiff::Timestamp::now();
        let indexed = spec.completion_mode.as_deref() == Some("Indexed");
        let per_index_limit = spec.backoff_limit_per_index.filter(|_| indexed);
        // The API server requires completions of Indexed Jobs; the other uses of this value are Indexed only.
        let completions = spec.completions.unwrap_or(0);
        let mut completed = indexes::parse(status.completed_indexes.as_deref().unwrap_or_default(), completions);
        let mut failed_indexes = indexes::parse(status.failed_indexes.as_deref().unwrap_or_default(), completions);
        let mut conditions = status.conditions.clone().unwrap_or_default();
        let success_met = condition_of(&conditions, "SuccessCriteriaMet").is_some();

        // 1. Count finished pods exactly once (uncounted → finalizer off → counters). Indexed Jobs record a
        // succeeded pod as its index in `completedIndexes` instead: an index counts once however often it is seen.
        let mut uncounted = status.uncounted_terminated_pods.clone().unwrap_or_default();
        let mut uncounted_succeeded: BTreeSet<String> =
            uncounted.succeeded.clone().unwrap_or_default().into_iter().collect();
        let mut uncounted_failed: BTreeSet<String> = uncounted.failed.clone().unwrap_or_default().into_iter().collect();
        let mut to_release = Vec::new();
        let released = self.released.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        let owned: Vec<Arc<Pod>> =
            all_owned.iter().filter(|pod| !pod.uid().is_some_and(|uid| released.contains(&uid))).cloned().collect();
        for pod in &owned {
            if !pod.finalizers().iter().any(|finalizer| finalizer == TRACKING_FINALIZER) {
                continue;
            }
            let pod_uid = pod.uid().unwrap_or_default();
            let index = indexed.then(|| indexes::of_pod(pod, completions)).flatten();
            match phase(pod) {
                "Succeeded" if indexed => completed.extend(index),
                "Succeeded" => {
                    uncounted_succeeded.insert(pod_uid);
                }
                // Pods this controller stopped because the Job met its success criteria did not fail.
                "Pending" | "Running" if success_met && pod.metadata.deletion_timestamp.is_some() => {}
                // A pod deleted before it finished counts as failed (upstream does the same).
                phase if phase == "Failed" || pod.metadata.deletion_timestamp.is_some() => {
                    let outcome = failure_policy::outcome(spec.pod_failure_policy.as_ref(), pod);
                    if outcome != Outcome::Ignore {
                        uncounted_failed.insert(pod_uid);
                    }
                    if let Outcome::FailJob(message) = &outcome {
                        if !success_met && condition_of(&conditions, "FailureTarget").is_none() {
                            set_condition(&mut conditions, "FailureTarget", "PodFailurePolicy", message, now);
                        }
                    }
                    if let (Some(limit), Some(index)) = (per_index_limit, index) {
                        if index_fails(&outcome, pod, limit) {
                            failed_indexes.insert(index);
                        }
                    }
                }
                _ => continue,
            }
            to_release.push(pod.clone());
        }
        // An index one pod completed is not failed because a duplicate of it failed.
        failed_indexes.retain(|index| !completed.contains(index));
        if indexed {
            status.completed_indexes = Some(indexes::format(&completed)).filter(|text| !text.is_empty());
            status.succeeded = Some(completed.len() as i32).filter(|count| *count > 0);
        }
        if per_index_limit.is_some() {
            status.failed_indexes = Some(indexes::format(&failed_indexes));
        }
        status.conditions = Some(conditions.clone()).filter(|conditions| !conditions.is_empty());
        let recorded: BTreeSet<String> =
            uncounted.succeeded.iter().flatten().chain(uncounted.failed.iter().flatten()).cloned().collect();
        let newly_finished =
            uncounted_succeeded.iter().chain(uncounted_failed.iter()).any(|uid| !recorded.contains(uid));
        if newly_finished
            || status.completed_indexes != old_status.completed_indexes
            || status.failed_indexes != old_status.failed_indexes
            || status.conditions != old_status.conditions
        {
            uncounted.succeeded = Some(uncounted_succeeded.iter().cloned().collect());
            uncounted.failed = Some(uncounted_failed.iter().cloned().collect());
            status.uncounted_terminated_pods = Some(uncounted.clone());
            self.write_status(&jobs_api, &job, &status).await?;
        }
        for pod in &to_release {
            self.release(&pods_api, pod).await?;
        }
        // Pods whose finalizer is gone (or that are gone) move from uncounted into the counters.
        let still_tracked: BTreeSet<String> = owned
            .iter()
            .filter(|pod| pod.finalizers().iter().any(|finalizer| finalizer == TRACKING_FINALIZER))
            .filter(|pod| !to_release.iter().any(|released| released.uid() == pod.uid()))
            .filter_map(|pod| pod.uid())
            .collect();
        let counted_succeeded = uncounted_succeeded.iter().filter(|uid| !still_tracked.contains(*uid)).count() as i32;
        let counted_failed = uncounted_failed.iter().filter(|uid| !still_tracked.contains(*uid)).count() as i32;
        if !indexed {
            status.succeeded = Some(status.succeeded.unwrap_or(0) + counted_succeeded).filter(|count| *count > 0);
        }
        status.failed = Some(status.failed.unwrap_or(0) + counted_failed).filter(|count| *count > 0);
        uncounted_succeeded.retain(|uid| still_tracked.contains(uid));
        uncounted_failed.retain(|uid| still_tracked.contains(uid));
        status.uncounted_terminated_pods = Some(UncountedTerminatedPods {
            succeeded: Some(uncounted_succeeded.iter().cloned().collect())
                .filter(|list: &Vec<String>| !list.is_empty()),
            failed: Some(uncounted_failed.iter().cloned().collect()).filter(|list: &Vec<String>| !list.is_empty()),
        });
        if status
            .uncounted_terminated_pods
            .as_ref()
            .is_some_and(|pods| pods.succeeded.is_none() && pods.failed.is_none())
        {
            status.uncounted_terminated_pods = Some(UncountedTerminatedPods::default());
        }

        let active: Vec<&Arc<Pod>> = owned
            .iter()
            .filter(|pod| pod.metadata.deletion_timestamp.is_none() && !matches!(phase(pod), "Succeeded" | "Failed"))
            .collect();
        let terminating_pods: Vec<&Arc<Pod>> =
            all_owned.iter().filter(|pod| pod.metadata.deletion_timestamp.is_some()).collect();
        let terminating = terminating_pods.len() as i32;
        let succeeded = status.succeeded.unwrap_or(0) + uncounted_succeeded.len() as i32;
        let failed = status.failed.unwrap_or(0) + uncounted_failed.len() as i32;
        let finished = has_condition(&status, "Complete") || has_condition(&status, "Failed");
        // Indexed: one running pod per index still to do; the others (duplicates, finished or invalid indexes) go.
        let mut running_indexes = BTreeSet::new();
        let surplus: Vec<&Arc<Pod>> = active
            .iter()
            .filter(|pod| {
                indexed
                    && !indexes::of_pod(pod, completions).is_some_and(|index| {
                        !completed.contains(&index) && !failed_indexes.contains(&index) && running_indexes.insert(index)
                    })
            })
            .copied()
            .collect();

        // 2. Decide: done, failing, suspended, or run more pods.
        let mut requeue_after = None;
        if !finished {
            let deadline_exceeded = match (spec.active_deadline_seconds, status.start_time.as_ref()) {
                (Some(seconds), Some(start)) => start.0 + jiff::SignedDuration::from_secs(seconds) <= now,
                _ => false,
            };
            let ending_decided = condition_of(&conditions, "SuccessCriteriaMet").is_some()
                || condition_of(&conditions, "FailureTarget").is_some();
            if !ending_decided {
                let counts = Counts { succeeded, failed, completed: &completed, failed_indexes: &failed_indexes };
                if let Some((reason, message)) = failure_reason(&spec, &counts, deadline_exceeded) {
                    set_condition(&mut conditions, "FailureTarget", reason, message, now);
                } else if let Some((reason, message)) = success_reason(&spec, &counts, active.is_empty()) {
                    set_condition(&mut conditions, "SuccessCriteriaMet", reason, &message, now);
                }
            }
            let ending = condition_of(&conditions, "SuccessCriteriaMet")
                .or_else(|| condition_of(&conditions, "FailureTarget"))
                .cloned();
            if let Some(ending) = ending {
                // Finishing: stop what still runs; the terminal condition comes once nothing does.
                for pod in &active {
                    let _ = pods_api.delete(&pod.name_any(), &DeleteParams::default()).await;
                }
                if active.is_empty() && terminating == 0 {
                    let (terminal, event_kind) = if ending.type_ == "SuccessCriteriaMet" {
                        ("Complete", Kind::Normal)
                    } else {
                        ("Failed", Kind::Warning)
                    };
                    let reason = ending.reason.clone().unwrap_or_default();
                    let message = ending.message.clone().unwrap_or_default();
                    set_condition(&mut conditions, terminal, &reason, &message, now);
                    status.completion_time = (terminal == "Complete").then_some(Time(now));
                    let event_reason = if terminal == "Complete" { "Completed".to_string() } else { reason.clone() };
                    let event_message =
                        if terminal == "Complete" { "Job completed".to_string() } else { message.clone() };
                    self.events.publish(job.as_ref(), event_kind, &event_reason, event_message);
                }
            } else if spec.suspend.unwrap_or(false) {
                for pod in &active {
                    let _ = pods_api.delete(&pod.name_any(), &DeleteParams::default()).await;
                }
                set_condition(&mut conditions, "Suspended", "JobSuspended", "Job suspended", now);
            } else {
                if condition_of(&conditions, "Suspended").is_some_and(|condition| condition.status == "True") {
                    set_condition_status(&mut conditions, "Suspended", "False", "JobResumed", "Job resumed", now);
                }
                if status.start_time.is_none() {
                    status.start_time = Some(Time(now));
                }
                // Beyond the surplus, more pods may run than parallelism allows now (it was lowered): the
                // excess goes, least advanced first.
                let kept: Vec<&Arc<Pod>> =
                    active.iter().filter(|pod| !surplus.iter().any(|other| Arc::ptr_eq(pod, other))).copied().collect();
                let limit = if indexed {
                    let parallelism = spec.parallelism.unwrap_or(1).max(0) as usize;
                    let left = (completions.max(0) as usize).saturating_sub(completed.union(&failed_indexes).count());
                    parallelism.min(left)
                } else {
                    missing_pods(&spec, succeeded, 0)
                };
                for pod in surplus.iter().chain(&excess_pods(&kept, limit)) {
                    let _ = pods_api.delete(&pod.name_any(), &DeleteParams::default()).await;
                }
                let parallelism = spec.parallelism.unwrap_or(1).max(0);
                // The Job-wide failure back-off: every pod waits for it, except per-index ones, which wait for
                // their own index's.
                let last_failure =
                    all_owned.iter().filter(|pod| phase(pod) == "Failed").filter_map(|pod| finished_at(pod)).max();
                let job_wait = backoff_wait(failed, last_failure, now);
                let mut new_pods = Vec::new();
                let terminating_hold_places = spec.pod_replacement_policy.as_deref() == Some("Failed");
                if indexed {
                    let mut occupied = running_indexes.clone();
                    if terminating_hold_places {
                        occupied.extend(terminating_pods.iter().filter_map(|pod| indexes::of_pod(pod, completions)));
                    }
                    let free = (parallelism as usize).saturating_sub(occupied.len());
                    let done: BTreeSet<i32> = completed.union(&failed_indexes).copied().collect();
                    for index in indexes::to_start(completions, &done, &occupied, free) {
                        let previous: Vec<&Arc<Pod>> = all_owned
                            .iter()
                            .filter(|pod| phase(pod) == "Failed" || pod.metadata.deletion_timestamp.is_some())
                            .filter(|pod| indexes::of_pod(pod, completions) == Some(index))
                            .collect();
                        let failures = previous
                            .iter()
                            .map(|pod| {
                                let counted =
                                    failure_policy::outcome(spec.pod_failure_policy.as_ref(), pod) != Outcome::Ignore;
                                indexes::failure_count(pod) + i32::from(counted)
                            })
                            .max()
                            .unwrap_or(0);
                        let wait = match per_index_limit {
                            Some(_) => {
                                backoff_wait(failures, previous.iter().filter_map(|pod| finished_at(pod)).max(), now)
                            }
                            None => job_wait,
                        };
                        match wait {
                            Some(wait) => {
                                requeue_after = Some(requeue_after.map_or(wait, |other: Duration| other.min(wait)))
                            }
                            None => new_pods.push(indexed_pod(&job, index, per_index_limit.map(|_| failures))),
                        }
                    }
                } else {
                    let held = active.len() + if terminating_hold_places { terminating_pods.len() } else { 0 };
                    let missing = missing_pods(&spec, succeeded, held);
                    match job_wait.filter(|_| missing > 0) {
                        Some(wait) => requeue_after = Some(wait),
                        None => new_pods = vec![template_pod(&job); missing],
                    }
                }
                if !new_pods.is_empty() && self.expectations.satisfied(key) {
                    self.create_pods(key, &job, new_pods).await?;
                }
                if let Some(seconds) = spec.active_deadline_seconds {
                    let start = status.start_time.as_ref().map_or(now, |start| start.0);
                    let left = (start + jiff::SignedDuration::from_secs(seconds)).duration_since(now);
                    let left = Duration::from_millis(left.as_millis().max(0) as u64 + 100);
                    requeue_after = Some(requeue_after.map_or(left, |other: Duration| other.min(left)));
                }
            }
        } else if let Some(ttl) = spec.ttl_seconds_after_finished {
            let finished_at = condition_of(&conditions, "Complete")
                .or_else(|| condition_of(&conditions, "Failed"))
                .and_then(|condition| condition.last_transition_time.as_ref())
                .map_or(now, |time| time.0);
            let expires = finished_at + jiff::SignedDuration::from_secs(i64::from(ttl));
            if expires <= now {
                jobs_api.delete(name, &DeleteParams::background()).await?;
                return Ok(());
            }
            let left = expires.duration_since(now);
            requeue_after = Some(Duration::from_millis(left.as_millis().max(0) as u64 + 100));
        }

        status.conditions = Some(conditions).filter(|conditions| !conditions.is_empty());
        status.active = Some(active.len() as i32).filter(|count| *count > 0);
        status.ready = Some(active.iter().filter(|pod| ready_since(pod).is_some()).count() as i32);
        status.terminating = Some(terminating);
        if status != old_status {
            self.write_status(&jobs_api, &job, &status).await?;
        }
        if let Some(delay) = requeue_after {
            self.queue.add_after(key.to_string(), delay);
        }
        Ok(())
    }

    /// The Job's pods, claimed as upstream's ControllerRefManager claims them: owned pods whose labels stopped
    /// matching the selector are released (their owner reference and tracking finalizer go: no Job counts them any
    /// more), and matching pods without a controller are adopted, unless the Job is being deleted. Pods being
    /// deleted are neither adopted nor released.
    async fn claim_pods(&self, api: &Api<Pod>, job: &Job) -> Vec<Arc<Pod>> {
        let uid = job.uid().unwrap_or_default();
        let selector = job.spec.as_ref().and_then(|spec| spec.selector.as_ref()).and_then(label_selector);
        let job_deleting = job.metadata.deletion_timestamp.is_some();
        let mut owned = Vec::new();
        for pod in self.pods.list_namespace(&job.namespace().unwrap_or_default()) {
            let matches =
                selector.as_ref().is_some_and(|selector| labels_match(selector, pod.metadata.labels.as_ref()));
            let pod_deleting = pod.metadata.deletion_timestamp.is_some();
            match controller_of(&pod) {
                Some(owner) if owner.uid == uid => {
                    if matches || pod_deleting || job_deleting || selector.is_none() {
                        owned.push(pod);
                    } else {
                        self.release_from_job(api, &pod, &uid).await;
                    }
                }
                None if matches
                    && !pod_deleting
                    && !job_deleting
                    && adopt(api, &pod, &controller_reference(job)).await =>
                {
                    owned.push(pod);
                }
                _ => {}
            }
        }
        owned
    }

    /// Removes the Job's controller reference and the tracking finalizer from a pod it no longer selects.
    async fn release_from_job(&self, api: &Api<Pod>, pod: &Pod, job_uid: &str) {
        let references: Vec<_> =
            pod.metadata.owner_references.iter().flatten().filter(|owner| owner.uid != job_uid).collect();
        let finalizers: Vec<&String> = pod.finalizers().iter().filter(|f| *f != TRACKING_FINALIZER).collect();
        let patch = json!({"metadata": {"ownerReferences": references, "finalizers": finalizers,
            "resourceVersion": pod.metadata.resource_version, "uid": pod.metadata.uid}});
        if let Err(error) = api.patch(&pod.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await {
            tracing::debug!(pod = %pod.name_any(), error = %error, "cannot release the pod from its Job");
        }
    }

    /// Takes the tracking finalizer off a pod whose outcome is recorded (or that no Job counts any more).
    async fn release(&self, api: &Api<Pod>, pod: &Pod) -> Result<(), ReconcileError> {
        let finalizers: Vec<&String> = pod.finalizers().iter().filter(|f| *f != TRACKING_FINALIZER).collect();
        let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": pod.metadata.resource_version}});
        let released = match api.patch(&pod.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(updated) => updated.finalizers().iter().all(|finalizer| finalizer != TRACKING_FINALIZER),
            Err(kube::Error::Api(response)) if response.code == 404 => true,
            Err(error) => return Err(error.into()),
        };
        if let Some(uid) = pod.uid().filter(|_| released) {
            self.released.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(uid);
        }
        Ok(())
    }

    /// Pods of a Job that is gone (or replaced by a new one of the same name) have nobody left to count them:
    /// their tracking finalizer comes off, or they could never be deleted.
    async fn release_orphans(
        &self,
        api: &Api<Pod>,
        namespace: &str,
        job_name: &str,
        live_uid: Option<String>,
    ) -> Result<(), ReconcileError> {
        let orphans = self.pods.list_namespace(namespace).into_iter().filter(|pod| {
            controller_of(pod).is_some_and(|owner| {
                owner.kind == "Job" && owner.name == job_name && live_uid.as_deref() != Some(owner.uid.as_str())
            }) && pod.finalizers().iter().any(|finalizer| finalizer == TRACKING_FINALIZER)
        });
        for pod in orphans {
            self.release(api, &pod).await?;
        }
        Ok(())
    }

    async fn write_status(&self, api: &Api<Job>, job: &Job, status: &JobStatus) -> Result<(), ReconcileError> {
        let mut value = serde_json::to_value(status).unwrap_or_default();
        if let Some(fields) = value.as_object_mut() {
            for field in ["active", "succeeded", "failed", "completionTime"] {
                fields.entry(field).or_insert(serde_json::Value::Null);
            }
            // A merge patch keeps lists it does not mention: emptied lists must be written as null.
            let uncounted = fields.entry("uncountedTerminatedPods").or_insert_with(|| json!({}));
            if let Some(uncounted) = uncounted.as_object_mut() {
                for list in ["succeeded", "failed"] {
                    uncounted.entry(list).or_insert(serde_json::Value::Null);
                }
            }
        }
        api.patch_status(&job.name_any(), &PatchParams::default(), &Patch::Merge(&json!({"status": value}))).await?;
        Ok(())
    }

    async fn create_pods(&self, key: &str, job: &Job, pods: Vec<Pod>) -> Result<(), ReconcileError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &job.namespace().unwrap_or_default());
        self.expectations.expect(key, pods.len() as i64, 0);
        let create = PostParams::default();
        let results = futures::future::join_all(pods.iter().map(|pod| api.create(&create, pod))).await;
        let mut first_error = None;
        for result in results {
            match result {
                Ok(pod) => self.events.publish(
                    job,
                    Kind::Normal,
                    "SuccessfulCreate",
                    format!("Created pod: {}", pod.name_any()),
                ),
                Err(error) => {
                    self.expectations.creation_observed(key);
                    self.events.publish(job, Kind::Warning, "FailedCreate", format!("Error creating: {error}"));
                    first_error.get_or_insert(error);
                }
            }
        }
        match first_error {
            Some(error) => Err(error.into()),
            None => Ok(()),
        }
    }
}

/// A pod from the Job's template, owned by the Job and held by the tracking finalizer.
fn template_pod(job: &Job) -> Pod {
    let template = job.spec.as_ref().map(|spec| spec.template.clone()).unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let mut finalizers = meta.finalizers.unwrap_or_default();
    finalizers.push(TRACKING_FINALIZER.into());
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", job.name_any())),
            namespace: job.namespace(),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: Some(finalizers),
            owner_references: Some(vec![controller_reference(job)]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// The template pod for one completion index: the index as annotation, label and `JOB_COMPLETION_INDEX`, the
/// hostname `<job>-<index>` (DNS names within the template's subdomain), and with `backoffLimitPerIndex` how many
/// pods of the index failed before.
fn indexed_pod(job: &Job, index: i32, failure_count: Option<i32>) -> Pod {
    let mut pod = template_pod(job);
    let job_name = job.name_any();
    pod.metadata.generate_name = Some(indexed_generate_name(&job_name, index));
    let annotations = pod.metadata.annotations.get_or_insert_with(Default::default);
    annotations.insert(indexes::COMPLETION_INDEX.into(), index.to_string());
    if let Some(count) = failure_count {
        annotations.insert(indexes::INDEX_FAILURE_COUNT.into(), count.to_string());
    }
    pod.metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert(indexes::COMPLETION_INDEX.into(), index.to_string());
    if let Some(spec) = pod.spec.as_mut() {
        if spec.hostname.as_deref().unwrap_or_default().is_empty() {
            spec.hostname = Some(format!("{job_name}-{index}"));
        }
        let init_containers = spec.init_containers.iter_mut().flatten();
        for container in spec.containers.iter_mut().chain(init_containers) {
            let env = container.env.get_or_insert_with(Vec::new);
            if env.iter().all(|variable| variable.name != COMPLETION_INDEX_ENV) {
                // From the annotation, as upstream does, so the pod itself says where the value comes from.
                env.push(EnvVar {
                    name: COMPLETION_INDEX_ENV.into(),
                    value: None,
                    value_from: Some(EnvVarSource {
                        field_ref: Some(ObjectFieldSelector {
                            api_version: Some("v1".into()),
                            field_path: format!("metadata.annotations['{}']", indexes::COMPLETION_INDEX),
                        }),
                        ..Default::default()
                    }),
                });
            }
        }
    }
    pod
}

/// `<job>-<index>-`, the job name shortened if needed so the generated name stays within 63 characters.
fn indexed_generate_name(job_name: &str, index: i32) -> String {
    let suffix = format!("-{index}-");
    let keep = job_name.len().min(MAX_GENERATE_NAME_PREFIX.saturating_sub(suffix.len()));
    format!("{}{suffix}", &job_name[..keep])
}

/// How many more pods a NonIndexed Job runs beside the `held` places: up to `parallelism`, and no more than the
/// completions still missing. With `podReplacementPolicy: Failed` a terminating pod still holds its place, so its
/// replacement waits until it is gone; with `TerminatingOrFailed` (the default) it starts at once.
fn missing_pods(spec: &JobSpec, succeeded: i32, held: usize) -> usize {
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let wanted = match spec.completions {
        Some(completions) => (completions - succeeded).clamp(0, parallelism),
        None if succeeded > 0 => 0,
        None => parallelism,
    };
    (wanted as usize).saturating_sub(held)
}

/// The pods to delete so that at most `limit` of `active` run, in upstream's order of least advanced first: not
/// yet on a node, then Pending before Running, not Ready before Ready, then the newest.
fn excess_pods<'a>(active: &[&'a Arc<Pod>], limit: usize) -> Vec<&'a Arc<Pod>> {
    if active.len() <= limit {
        return Vec::new();
    }
    let mut ordered = active.to_vec();
    ordered.sort_by_key(|pod| {
        let assigned =
            pod.spec.as_ref().and_then(|spec| spec.node_name.as_deref()).is_some_and(|node| !node.is_empty());
        let phase_rank = match phase(pod) {
            "Pending" => 0,
            "Running" => 2,
            _ => 1,
        };
        let created = pod.metadata.creation_timestamp.as_ref().map(|time| time.0);
        (assigned, phase_rank, ready_since(pod).is_some(), std::cmp::Reverse(created))
    });
    ordered.truncate(active.len() - limit);
    ordered
}

/// The counters the Job's fate depends on.
struct Counts<'a> {
    succeeded: i32,
    failed: i32,
    completed: &'a BTreeSet<i32>,
    failed_indexes: &'a BTreeSet<i32>,
}

/// Why the Job fails, if it does: upstream's reasons and messages, checked in upstream's order.
fn failure_reason(
    spec: &JobSpec,
    counts: &Counts<'_>,
    deadline_exceeded: bool,
) -> Option<(&'static str, &'static str)> {
    if counts.failed > spec.backoff_limit.unwrap_or(DEFAULT_BACKOFF_LIMIT) {
        return Some(("BackoffLimitExceeded", "Job has reached the specified backoff limit"));
    }
    if deadline_exceeded {
        return Some(("DeadlineExceeded", "Job was active longer than specified deadline"));
    }
    if spec.completion_mode.as_deref() == Some("Indexed") && spec.backoff_limit_per_index.is_some() {
        let failed_indexes = counts.failed_indexes.len();
        if spec.max_failed_indexes.is_some_and(|max| failed_indexes > max.max(0) as usize) {
            return Some((
                "MaxFailedIndexesExceeded",
                "Job has exceeded the specified maximal number of failed indexes",
            ));
        }
        let completions = spec.completions.unwrap_or(0).max(0) as usize;
        if failed_indexes > 0 && failed_indexes + counts.completed.len() >= completions {
            return Some(("FailedIndexes", "Job has failed indexes"));
        }
    }
    None
}

/// Why the Job succeeds, if it does: a matching success policy rule (Indexed), or enough completions.
fn success_reason(spec: &JobSpec, counts: &Counts<'_>, nothing_runs: bool) -> Option<(&'static str, String)> {
    if spec.completion_mode.as_deref() == Some("Indexed") {
        let completions = spec.completions.unwrap_or(0);
        if let Some(message) = success_policy::matched(spec.success_policy.as_ref(), completions, counts.completed) {
            return Some(("SuccessPolicy", message));
        }
    }
    let reached = match spec.completions {
        Some(completions) => counts.succeeded >= completions,
        None => counts.succeeded > 0 && nothing_runs,
    };
    reached.then(|| ("CompletionsReached", "Reached expected number of succeeded pods".to_string()))
}

/// Whether a failed pod's index fails for good (with `backoffLimitPerIndex`): a `FailIndex` rule says so, or the
/// counted failures of its index, this one included, exceed the limit.
fn index_fails(outcome: &Outcome, pod: &Pod, limit: i32) -> bool {
    match outcome {
        Outcome::FailIndex => true,
        Outcome::Ignore => false,
        Outcome::Count | Outcome::FailJob(_) => indexes::failure_count(pod) >= limit,
    }
}

/// How long new pods must still wait after `failures` failures, the last one at `last_failure`; None if not at all.
fn backoff_wait(failures: i32, last_failure: Option<jiff::Timestamp>, now: jiff::Timestamp) -> Option<Duration> {
    let delay = jiff::SignedDuration::try_from(failure_backoff(failures)).unwrap_or_default();
    let wait = (last_failure? + delay).duration_since(now);
    wait.is_positive().then(|| Duration::from_millis(wait.as_millis().max(100) as u64))
}

fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|status| status.phase.as_deref()).unwrap_or("Pending")
}

/// When the pod's last container finished, for the failure back-off.
fn finished_at(pod: &Pod) -> Option<jiff::Timestamp> {
    pod.status
        .as_ref()?
        .container_statuses
        .iter()
        .flatten()
        .filter_map(|status| status.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref().map(|time| time.0))
        .max()
        .or_else(|| pod.metadata.creation_timestamp.as_ref().map(|time| time.0))
}

fn failure_backoff(failures: i32) -> Duration {
    if failures <= 0 {
        return Duration::ZERO;
    }
    FAILURE_BACKOFF.saturating_mul(1 << (failures - 1).min(6)).min(MAX_FAILURE_BACKOFF)
}

fn condition_of<'a>(conditions: &'a [JobCondition], type_: &str) -> Option<&'a JobCondition> {
    conditions.iter().find(|condition| condition.type_ == type_ && condition.status == "True")
}

fn has_condition(status: &JobStatus, type_: &str) -> bool {
    status.conditions.as_deref().is_some_and(|conditions| condition_of(conditions, type_).is_some())
}

fn set_condition(conditions: &mut Vec<JobCondition>, type_: &str, reason: &str, message: &str, now: jiff::Timestamp) {
    set_condition_status(conditions, type_, "True", reason, message, now);
}

fn set_condition_status(
    conditions: &mut Vec<JobCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: jiff::Timestamp,
) {
    conditions.retain(|condition| condition.type_ != type_);
    conditions.push(JobCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_back_off_from_ten_seconds_to_six_minutes() {
        assert_eq!(failure_backoff(0), Duration::ZERO);
        assert_eq!(failure_backoff(1), Duration::from_secs(10));
        assert_eq!(failure_backoff(3), Duration::from_secs(40));
        assert_eq!(failure_backoff(20), MAX_FAILURE_BACKOFF);
    }

    #[test]
    fn new_pods_wait_out_the_back_off_from_the_last_failure() {
        let now = jiff::Timestamp::now();
        assert_eq!(backoff_wait(0, Some(now), now), None);
        assert_eq!(backoff_wait(2, None, now), None);
        assert_eq!(backoff_wait(2, Some(now - jiff::SignedDuration::from_secs(5)), now), Some(Duration::from_secs(15)));
        assert_eq!(backoff_wait(1, Some(now - jiff::SignedDuration::from_secs(11)), now), None);
    }

    fn job(spec: serde_json::Value) -> Job {
        serde_json::from_value(json!({
            "metadata": {"name": "work", "namespace": "ns", "uid": "u1"},
            "spec": spec,
        }))
        .expect("a Job")
    }

    fn indexed_spec(extra: serde_json::Value) -> JobSpec {
        let mut spec = json!({"completionMode": "Indexed", "completions": 4, "template": {"spec": {"containers": []}}});
        spec.as_object_mut().unwrap().extend(extra.as_object().cloned().unwrap_or_default());
        job(spec).spec.unwrap()
    }

    fn index_set(indexes: &[i32]) -> BTreeSet<i32> {
        indexes.iter().copied().collect()
    }

    #[test]
    fn an_indexed_pod_carries_its_index_everywhere_it_is_read() {
        let job = job(json!({"completionMode": "Indexed", "completions": 3, "template": {
            "metadata": {"labels": {"app": "work"}, "annotations": {"note": "kept"}},
            "spec": {"subdomain": "workers",
                "initContainers": [{"name": "setup", "image": "busybox"}],
                "containers": [
                    {"name": "main", "image": "busybox"},
                    {"name": "own", "image": "busybox", "env": [{"name": "JOB_COMPLETION_INDEX", "value": "mine"}]}]}}}));
        let pod = indexed_pod(&job, 2, None);
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("work-2-"));
        let annotations = pod.metadata.annotations.clone().unwrap();
        assert_eq!(annotations.get(indexes::COMPLETION_INDEX).map(String::as_str), Some("2"));
        assert_eq!(annotations.get("note").map(String::as_str), Some("kept"));
        assert!(!annotations.contains_key(indexes::INDEX_FAILURE_COUNT), "only with backoffLimitPerIndex");
        let labels = pod.metadata.labels.clone().unwrap();
        assert_eq!(labels.get(indexes::COMPLETION_INDEX).map(String::as_str), Some("2"));
        assert_eq!(labels.get("app").map(String::as_str), Some("work"));
        assert_eq!(pod.metadata.finalizers, Some(vec![TRACKING_FINALIZER.to_string()]));
        let spec = pod.spec.unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("work-2"));
        assert_eq!(spec.subdomain.as_deref(), Some("workers"));
        let env_of = |container: &k8s_openapi::api::core::v1::Container| {
            let env = container.env.clone().unwrap_or_default();
            let matching: Vec<EnvVar> = env.into_iter().filter(|v| v.name == COMPLETION_INDEX_ENV).collect();
            assert_eq!(matching.len(), 1, "exactly one JOB_COMPLETION_INDEX in {}", container.name);
            matching.into_iter().next().unwrap()
        };
        for container in spec.init_containers.iter().flatten().chain(&spec.containers[..1]) {
            let path = env_of(container).value_from.and_then(|source| source.field_ref).map(|field| field.field_path);
            assert_eq!(path.as_deref(), Some("metadata.annotations['batch.kubernetes.io/job-completion-index']"));
        }
        assert_eq!(env_of(&spec.containers[1]).value.as_deref(), Some("mine"), "a value the template sets is kept");
    }

    #[test]
    fn indexed_pods_keep_a_hostname_the_template_sets_and_record_failures_per_index() {
        let job = job(json!({"completionMode": "Indexed", "completions": 3, "backoffLimitPerIndex": 2,
            "template": {"spec": {"hostname": "fixed", "containers": [{"name": "main", "image": "busybox"}]}}}));
        let pod = indexed_pod(&job, 0, Some(1));
        assert_eq!(pod.spec.unwrap().hostname.as_deref(), Some("fixed"));
        let annotations = pod.metadata.annotations.unwrap();
        assert_eq!(annotations.get(indexes::INDEX_FAILURE_COUNT).map(String::as_str), Some("1"));
    }

    #[test]
    fn lowered_parallelism_removes_the_least_advanced_pods() {
        let pod = |name: &str, node: Option<&str>, phase: &str, ready: bool, created: &str| {
            Arc::new(
                serde_json::from_value::<Pod>(json!({
                    "metadata": {"name": name, "creationTimestamp": created},
                    "spec": {"nodeName": node, "containers": []},
                    "status": {"phase": phase, "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" },
                        "lastTransitionTime": created}]},
                }))
                .unwrap(),
            )
        };
        let ready_old = pod("ready-old", Some("n1"), "Running", true, "2026-01-01T00:00:00Z");
        let ready_new = pod("ready-new", Some("n1"), "Running", true, "2026-01-02T00:00:00Z");
        let starting = pod("starting", Some("n1"), "Running", false, "2026-01-01T00:00:00Z");
        let pending = pod("pending", Some("n1"), "Pending", false, "2026-01-01T00:00:00Z");
        let unscheduled = pod("unscheduled", None, "Pending", false, "2026-01-01T00:00:00Z");
        let active = [&ready_old, &ready_new, &starting, &pending, &unscheduled];
        let names = |limit| excess_pods(&active, limit).iter().map(|pod| pod.name_any()).collect::<Vec<_>>();
        assert_eq!(names(5), Vec::<String>::new());
        assert_eq!(names(2), ["unscheduled", "pending", "starting"]);
        assert_eq!(names(1), ["unscheduled", "pending", "starting", "ready-new"]);
    }

    #[test]
    fn non_indexed_jobs_fill_up_to_parallelism_and_the_completions_left() {
        let spec = |completions: Option<i32>| {
            let mut spec = json!({"parallelism": 3, "template": {}});
            if let Some(completions) = completions {
                spec["completions"] = json!(completions);
            }
            job(spec).spec.unwrap()
        };
        assert_eq!(missing_pods(&spec(Some(10)), 0, 1), 2);
        assert_eq!(missing_pods(&spec(Some(10)), 8, 1), 1, "two completions left, one running");
        assert_eq!(missing_pods(&spec(Some(10)), 10, 0), 0);
        assert_eq!(missing_pods(&spec(Some(10)), 0, 4), 0, "more held than wanted");
        assert_eq!(missing_pods(&spec(None), 0, 0), 3);
        assert_eq!(missing_pods(&spec(None), 1, 0), 0, "without completions one success is enough");
    }

    #[test]
    fn generated_names_stay_short_enough() {
        assert_eq!(indexed_generate_name("work", 12), "work-12-");
        let long = "j".repeat(63);
        let name = indexed_generate_name(&long, 123);
        assert_eq!(name.len(), MAX_GENERATE_NAME_PREFIX);
        assert!(name.ends_with("j-123-"), "{name}");
    }

    #[test]
    fn indexed_jobs_complete_when_every_index_succeeded() {
        let spec = indexed_spec(json!({}));
        let partly =
            Counts { succeeded: 3, failed: 0, completed: &index_set(&[0, 1, 3]), failed_indexes: &index_set(&[]) };
        assert_eq!(success_reason(&spec, &partly, false), None);
        let all = index_set(&[0, 1, 2, 3]);
        let done = Counts { succeeded: 4, failed: 2, completed: &all, failed_indexes: &index_set(&[]) };
        assert_eq!(
            success_reason(&spec, &done, false),
            Some(("CompletionsReached", "Reached expected number of succeeded pods".to_string()))
        );
    }

    #[test]
    fn a_success_policy_ends_an_indexed_job_early() {
        let spec = indexed_spec(json!({"successPolicy": {"rules": [{"succeededIndexes": "0"}]}}));
        let counts = Counts { succeeded: 1, failed: 0, completed: &index_set(&[0]), failed_indexes: &index_set(&[]) };
        assert_eq!(
            success_reason(&spec, &counts, false),
            Some(("SuccessPolicy", "Matched rules at index 0".to_string()))
        );
    }

    #[test]
    fn non_indexed_jobs_without_completions_need_one_success_and_nothing_running() {
        let spec = job(json!({"template": {"spec": {"containers": []}}})).spec.unwrap();
        let counts = Counts { succeeded: 1, failed: 0, completed: &index_set(&[]), failed_indexes: &index_set(&[]) };
        assert_eq!(success_reason(&spec, &counts, false), None);
        assert_eq!(success_reason(&spec, &counts, true).map(|(reason, _)| reason), Some("CompletionsReached"));
    }

    #[test]
    fn failed_indexes_fail_the_job_past_the_maximum_or_once_every_index_ended() {
        let spec = indexed_spec(json!({"backoffLimitPerIndex": 1, "maxFailedIndexes": 1, "backoffLimit": i32::MAX}));
        let (none, one, two) = (index_set(&[]), index_set(&[1]), index_set(&[1, 2]));
        fn counts<'a>(completed: &'a BTreeSet<i32>, failed_indexes: &'a BTreeSet<i32>) -> Counts<'a> {
            Counts { succeeded: 0, failed: 9, completed, failed_indexes }
        }
        assert_eq!(failure_reason(&spec, &counts(&none, &one), false), None, "one failed index is allowed");
        assert_eq!(
            failure_reason(&spec, &counts(&none, &two), false),
            Some(("MaxFailedIndexesExceeded", "Job has exceeded the specified maximal number of failed indexes"))
        );
        let others = index_set(&[0, 2, 3]);
        assert_eq!(
            failure_reason(&spec, &counts(&others, &one), false),
            Some(("FailedIndexes", "Job has failed indexes"))
        );
    }

    #[test]
    fn the_backoff_limit_and_the_deadline_come_first() {
        let spec = indexed_spec(json!({"backoffLimit": 2}));
        let none = index_set(&[]);
        let counts = |failed| Counts { succeeded: 0, failed, completed: &none, failed_indexes: &none };
        assert_eq!(failure_reason(&spec, &counts(2), false), None);
        assert_eq!(failure_reason(&spec, &counts(3), true).map(|(reason, _)| reason), Some("BackoffLimitExceeded"));
        assert_eq!(failure_reason(&spec, &counts(0), true).map(|(reason, _)| reason), Some("DeadlineExceeded"));
    }

    #[test]
    fn an_index_fails_when_its_counted_failures_pass_the_limit_or_a_rule_says_so() {
        let indexed = job(json!({"completionMode": "Indexed", "completions": 2, "template": {}}));
        let pod_after = |failures: i32| indexed_pod(&indexed, 0, Some(failures));
        assert!(!index_fails(&Outcome::Count, &pod_after(0), 1), "the first failure is retried");
        assert!(index_fails(&Outcome::Count, &pod_after(1), 1), "the retry was the last try");
        assert!(!index_fails(&Outcome::Ignore, &pod_after(5), 1), "ignored failures never fail an index");
        assert!(index_fails(&Outcome::FailIndex, &pod_after(0), 3));
    }
}
