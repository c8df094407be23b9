//! The Job controller (non-indexed completion): runs pods until `completions` of them succeed (or, without
//! `completions`, until one does), `parallelism` at a time, and gives up after `backoffLimit` failures or
//! `activeDeadlineSeconds`. Conditions as upstream since 1.31: `SuccessCriteriaMet` / `FailureTarget` first, then
//! `Complete` / `Failed` (what `kubectl wait --for=condition=complete` waits for) once no pod is left running.
//! `suspend` stops the pods; `ttlSecondsAfterFinished` deletes a finished Job.
//!
//! Pods carry the `batch.kubernetes.io/job-tracking` finalizer, so a finished pod cannot vanish before it is
//! counted: its uid first goes into `status.uncountedTerminatedPods`, then the finalizer comes off, then it moves
//! into `succeeded` or `failed` (upstream's order, which counts each pod exactly once across restarts).

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use serde_json::json;

use super::events::{Kind, Recorder};
use super::expectations::Expectations;
use super::informer::{Change, Informer};
use super::queue::{self, WorkQueue};
use super::replicaset::{controller_of, controller_reference, object_key, ready_since};
use super::ReconcileError;

pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
const DEFAULT_BACKOFF_LIMIT: i32 = 6;
/// Delay before recreating pods after failures: 10 s doubling, at most 6 minutes (upstream's pod failure back-off).
const FAILURE_BACKOFF: Duration = Duration::from_secs(10);
const MAX_FAILURE_BACKOFF: Duration = Duration::from_secs(360);
const WORKERS: usize = 5;

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
            Change::Deleted(old) => expectations.forget(&object_key(*old)),
        });
        let (queue, expectations, released) =
            (controller.queue.clone(), controller.expectations.clone(), controller.released.clone());
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
        if self.jobs.get(namespace, name).is_none() {
            return Ok(());
        }
        let pods_api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let jobs_api: Api<Job> = Api::namespaced(self.client.clone(), namespace);
        // The counters are read fresh, not from the cache: a status this controller wrote a moment ago and the
        // cache does not show yet would make it count the same pods again.
        let Some(job) = jobs_api.get_opt(name).await? else { return Ok(()) };
        let job = Arc::new(job);
        let uid = job.uid().unwrap_or_default();
        let owned: Vec<Arc<Pod>> = self
            .pods
            .list_namespace(namespace)
            .into_iter()
            .filter(|pod| controller_of(pod).is_some_and(|owner| owner.uid == uid))
            .collect();
        let spec = job.spec.clone().unwrap_or_default();
        let old_status = job.status.clone().unwrap_or_default();
        let mut status = old_status.clone();
        let now = jiff::Timestamp::now();

        // 1. Count finished pods exactly once (uncounted → finalizer off → counters).
        let mut uncounted = status.uncounted_terminated_pods.clone().unwrap_or_default();
        let mut uncounted_succeeded: BTreeSet<String> =
            uncounted.succeeded.clone().unwrap_or_default().into_iter().collect();
        let mut uncounted_failed: BTreeSet<String> = uncounted.failed.clone().unwrap_or_default().into_iter().collect();
        let mut to_release = Vec::new();
        let released = self.released.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        let owned: Vec<Arc<Pod>> =
            owned.into_iter().filter(|pod| !pod.uid().is_some_and(|uid| released.contains(&uid))).collect();
        for pod in &owned {
            if !pod.finalizers().iter().any(|finalizer| finalizer == TRACKING_FINALIZER) {
                continue;
            }
            let phase = phase(pod);
            let pod_uid = pod.uid().unwrap_or_default();
            match phase {
                "Succeeded" => {
                    uncounted_succeeded.insert(pod_uid);
                }
                "Failed" => {
                    uncounted_failed.insert(pod_uid);
                }
                // A pod deleted before it finished counts as failed (upstream does the same).
                _ if pod.metadata.deletion_timestamp.is_some() => {
                    uncounted_failed.insert(pod_uid);
                }
                _ => continue,
            }
            to_release.push(pod.clone());
        }
        let recorded: BTreeSet<String> =
            uncounted.succeeded.iter().flatten().chain(uncounted.failed.iter().flatten()).cloned().collect();
        if uncounted_succeeded.iter().chain(uncounted_failed.iter()).any(|uid| !recorded.contains(uid)) {
            uncounted.succeeded = Some(uncounted_succeeded.iter().cloned().collect());
            uncounted.failed = Some(uncounted_failed.iter().cloned().collect());
            status.uncounted_terminated_pods = Some(uncounted.clone());
            self.write_status(&jobs_api, &job, &status).await?;
        }
        for pod in &to_release {
            let finalizers: Vec<&String> = pod.finalizers().iter().filter(|f| *f != TRACKING_FINALIZER).collect();
            let patch =
                json!({"metadata": {"finalizers": finalizers, "resourceVersion": pod.metadata.resource_version}});
            match pods_api.patch(&pod.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(updated) => {
                    if updated.finalizers().iter().all(|finalizer| finalizer != TRACKING_FINALIZER) {
                        if let Some(uid) = pod.uid() {
                            self.released.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(uid);
                        }
                    }
                }
                Err(kube::Error::Api(response)) if response.code == 404 => {
                    if let Some(uid) = pod.uid() {
                        self.released.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(uid);
                    }
                }
                Err(error) => return Err(error.into()),
            }
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
        status.succeeded = Some(status.succeeded.unwrap_or(0) + counted_succeeded).filter(|count| *count > 0);
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
        let terminating = owned.iter().filter(|pod| pod.metadata.deletion_timestamp.is_some()).count() as i32;
        let succeeded = status.succeeded.unwrap_or(0) + uncounted_succeeded.len() as i32;
        let failed = status.failed.unwrap_or(0) + uncounted_failed.len() as i32;
        let finished = has_condition(&status, "Complete") || has_condition(&status, "Failed");

        // 2. Decide: done, failing, suspended, or run more pods.
        let mut conditions = status.conditions.clone().unwrap_or_default();
        let mut requeue_after = None;
        if !finished {
            let completions = spec.completions;
            let success = match completions {
                Some(completions) => succeeded >= completions,
                None => succeeded > 0 && active.is_empty(),
            };
            let backoff_limit = spec.backoff_limit.unwrap_or(DEFAULT_BACKOFF_LIMIT);
            let deadline_exceeded = match (spec.active_deadline_seconds, status.start_time.as_ref()) {
                (Some(seconds), Some(start)) => start.0 + jiff::SignedDuration::from_secs(seconds) <= now,
                _ => false,
            };
            if success && !has_condition(&status, "SuccessCriteriaMet") {
                set_condition(
                    &mut conditions,
                    "SuccessCriteriaMet",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                    now,
                );
            } else if !success && !has_condition(&status, "FailureTarget") && failed > backoff_limit {
                set_condition(
                    &mut conditions,
                    "FailureTarget",
                    "BackoffLimitExceeded",
                    "Job has reached the specified backoff limit",
                    now,
                );
            } else if !success && !has_condition(&status, "FailureTarget") && deadline_exceeded {
                set_condition(
                    &mut conditions,
                    "FailureTarget",
                    "DeadlineExceeded",
                    "Job was active longer than specified deadline",
                    now,
                );
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
                let parallelism = spec.parallelism.unwrap_or(1).max(0);
                let wanted = match completions {
                    Some(completions) => (completions - succeeded).clamp(0, parallelism),
                    None if succeeded > 0 => 0,
                    None => parallelism,
                };
                let missing = wanted - active.len() as i32;
                if missing > 0 && self.expectations.satisfied(key) {
                    let delay = failure_backoff(failed);
                    let last_failure =
                        owned.iter().filter(|pod| phase(pod) == "Failed").filter_map(|pod| finished_at(pod)).max();
                    let wait = last_failure
                        .map(|at| (at + jiff::SignedDuration::try_from(delay).unwrap_or_default()).duration_since(now));
                    match wait.filter(|wait| wait.is_positive()) {
                        Some(wait) => requeue_after = Some(Duration::from_millis(wait.as_millis().max(100) as u64)),
                        None => self.create_pods(key, &job, missing as usize).await?,
                    }
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

    async fn create_pods(&self, key: &str, job: &Job, count: usize) -> Result<(), ReconcileError> {
        let namespace = job.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let template = job.spec.as_ref().map(|spec| spec.template.clone()).unwrap_or_default();
        let meta = template.metadata.unwrap_or_default();
        let mut finalizers = meta.finalizers.unwrap_or_default();
        finalizers.push(TRACKING_FINALIZER.into());
        let pod = Pod {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}-", job.name_any())),
                namespace: Some(namespace),
                labels: meta.labels,
                annotations: meta.annotations,
                finalizers: Some(finalizers),
                owner_references: Some(vec![controller_reference(job)]),
                ..Default::default()
            },
            spec: template.spec,
            status: None,
        };
        self.expectations.expect(key, count as i64, 0);
        let create = PostParams::default();
        let results = futures::future::join_all((0..count).map(|_| api.create(&create, &pod))).await;
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
}
