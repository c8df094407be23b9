//! The CronJob controller: creates a Job from `jobTemplate` at each scheduled time (`cron.rs`), named
//! `<cronjob>-<scheduled time in minutes since the epoch>`, honours concurrencyPolicy (Allow, Forbid, Replace),
//! startingDeadlineSeconds and suspend, keeps successfulJobsHistoryLimit / failedJobsHistoryLimit finished Jobs,
//! and reports status.active, lastScheduleTime and lastSuccessfulTime (research: upstream's
//! `cronjob_controllerv2.go`, whose decisions this follows).
//!
//! Only the most recent missed time is started, as upstream: a controller that was down for an hour starts one
//! Job, not sixty. The CronJob is read fresh before acting: a cached status a moment old could miss the Job just
//! started and start it again (the deterministic name makes that an AlreadyExists, but Replace and Forbid decide
//! on `status.active`, which must be current).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::ResourceExt;
use serde_json::json;

use super::cron::Schedule;
use super::events::{Kind, Recorder};
use super::informer::{Change, Informer};
use super::queue::{self, WorkQueue};
use super::replicaset::{controller_reference, object_key};
use super::ReconcileError;

pub const SCHEDULED_TIMESTAMP_ANNOTATION: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// More missed start times than this are reported as a warning (upstream's limit).
const TOO_MANY_MISSED: usize = 100;
const WORKERS: usize = 2;

pub struct CronJobController {
    client: kube::Client,
    cron_jobs: Arc<Informer<CronJob>>,
    jobs: Arc<Informer<Job>>,
    queue: WorkQueue,
    events: Recorder,
}

impl CronJobController {
    pub fn new(
        client: kube::Client,
        cron_jobs: Arc<Informer<CronJob>>,
        jobs: Arc<Informer<Job>>,
    ) -> Arc<CronJobController> {
        let controller = Arc::new(CronJobController {
            events: Recorder::new(client.clone(), "cronjob-controller"),
            client,
            cron_jobs: cron_jobs.clone(),
            jobs: jobs.clone(),
            queue: WorkQueue::new(),
        });
        let queue = controller.queue.clone();
        cron_jobs.on_change(move |change| {
            if let Change::Applied { new, .. } = change {
                queue.add(object_key(*new));
            }
        });
        let queue = controller.queue.clone();
        jobs.on_change(move |change| {
            let job = match change {
                Change::Applied { new, .. } => *new,
                Change::Deleted(old) => *old,
            };
            if let Some(owner) = controller_of_job(job).filter(|owner| owner.kind == "CronJob") {
                queue.add(queue::key(job.metadata.namespace.as_deref(), &owner.name));
            }
        });
        controller
    }

    pub async fn run(self: Arc<Self>) {
        self.cron_jobs.synced().await;
        self.jobs.synced().await;
        let controller = self.clone();
        queue::run_workers("cronjob", self.queue.clone(), WORKERS, move |key| {
            let controller = controller.clone();
            async move { controller.reconcile(&key).await }
        })
        .await;
    }

    async fn reconcile(&self, key: &str) -> Result<(), ReconcileError> {
        let (namespace, name) = queue::split(key);
        if self.cron_jobs.get(namespace, name).is_none() {
            return Ok(());
        }
        let api: Api<CronJob> = Api::namespaced(self.client.clone(), namespace);
        let Some(cron_job) = api.get_opt(name).await? else { return Ok(()) };
        if cron_job.metadata.deletion_timestamp.is_some() {
            return Ok(());
        }
        let jobs_api: Api<Job> = Api::namespaced(self.client.clone(), namespace);
        let uid = cron_job.uid().unwrap_or_default();
        let children: Vec<Arc<Job>> = self
            .jobs
            .list_namespace(namespace)
            .into_iter()
            .filter(|job| controller_of_job(job).is_some_and(|owner| owner.uid == uid))
            .collect();
        let old_status = cron_job.status.clone().unwrap_or_default();
        let mut status = old_status.clone();
        let now = jiff::Timestamp::now();

        // Active Jobs that finished or vanished leave status.active; the newest success is remembered.
        let mut active = status.active.clone().unwrap_or_default();
        let mut kept = Vec::new();
        for reference in active.drain(..) {
            let child = children.iter().find(|job| job.uid() == reference.uid);
            match child {
                Some(job) if finished(job).is_some() => {
                    self.events.publish(
                        &cron_job,
                        Kind::Normal,
                        "SawCompletedJob",
                        format!(
                            "Saw completed job: {}, condition: {}",
                            job.name_any(),
                            finished(job).unwrap_or_default()
                        ),
                    );
                }
                Some(_) => kept.push(reference),
                // Not in the cache: the Job may be too new for it; ask the API before forgetting it.
                None => match jobs_api.get_opt(reference.name.as_deref().unwrap_or_default()).await? {
                    Some(job) if job.uid() == reference.uid && finished(&job).is_none() => kept.push(reference),
                    _ => {}
                },
            }
        }
        active = kept;
        for job in &children {
            if finished(job) == Some("Complete") {
                if let Some(completed) = job.status.as_ref().and_then(|status| status.completion_time.clone()) {
                    if status.last_successful_time.as_ref().is_none_or(|last| last.0 < completed.0) {
                        status.last_successful_time = Some(completed);
                    }
                }
            }
        }
        status.active = Some(active.clone()).filter(|active| !active.is_empty());

        let result = self.start_due_job(&cron_job, &mut status, &children, now).await;
        if status != old_status {
            let patch = json!({"metadata": {"resourceVersion": cron_job.metadata.resource_version},
                "status": {"active": status.active,
                "lastScheduleTime": status.last_schedule_time, "lastSuccessfulTime": status.last_successful_time}});
            api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        }
        self.clean_up_finished(&cron_job, &children).await;
        // Come back just after the next scheduled time (upstream adds 100 ms, so the time has surely passed).
        if let Some(next) = result? {
            let wait = next.duration_since(jiff::Timestamp::now()).unsigned_abs() + Duration::from_millis(100);
            self.queue.add_after(key.to_string(), wait);
        }
        Ok(())
    }

    /// Starts the Job of the most recent scheduled time that has not been started, if its deadline and the
    /// concurrency policy allow; the next scheduled time to look again at.
    async fn start_due_job(
        &self,
        cron_job: &CronJob,
        status: &mut CronJobStatus,
        children: &[Arc<Job>],
        now: jiff::Timestamp,
    ) -> Result<Option<jiff::Timestamp>, ReconcileError> {
        let Some(spec) = cron_job.spec.as_ref() else { return Ok(None) };
        if spec.suspend == Some(true) {
            return Ok(None);
        }
        let zone = match spec.time_zone.as_deref() {
            Some(name) => match jiff::tz::TimeZone::get(name) {
                Ok(zone) => zone,
                Err(_) => {
                    let message = format!("invalid timeZone: {name:?}: unknown time zone {name}");
                    self.events.publish(cron_job, Kind::Warning, "UnknownTimeZone", message);
                    return Ok(None);
                }
            },
            None => jiff::tz::TimeZone::system(),
        };
        let schedule = match Schedule::parse(&spec.schedule, zone) {
            Ok(schedule) => schedule,
            Err(error) => {
                let message = format!("invalid schedule: {}: {error}", spec.schedule);
                self.events.publish(cron_job, Kind::Warning, "InvalidSchedule", message);
                return Ok(None);
            }
        };
        let next = schedule.next_after(now);
        // The earliest time that can still be due: after the last one started (or the CronJob's creation), and
        // within startingDeadlineSeconds.
        let created = cron_job.metadata.creation_timestamp.as_ref().map_or(now, |time| time.0);
        let last = status.last_schedule_time.as_ref().map(|time| time.0);
        let earliest = earliest_due(created, last, spec.starting_deadline_seconds, now);
        let Some(scheduled) = schedule.latest_between(earliest, now) else { return Ok(next) };
        if missed_between(&schedule, earliest, scheduled) > TOO_MANY_MISSED {
            let message =
                "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew";
            self.events.publish(cron_job, Kind::Warning, "TooManyMissedTimes", message.to_string());
        }
        let job_name = job_name(&cron_job.name_any(), scheduled);
        let active = status.active.clone().unwrap_or_default();
        if active.iter().any(|reference| reference.name.as_deref() == Some(job_name.as_str()))
            || children.iter().any(|job| job.name_any() == job_name)
        {
            return Ok(next);
        }
        let namespace = cron_job.namespace().unwrap_or_default();
        let jobs_api: Api<Job> = Api::namespaced(self.client.clone(), &namespace);
        match spec.concurrency_policy.as_deref().unwrap_or("Allow") {
            "Forbid" if !active.is_empty() => {
                let message = "Not starting job because prior execution is running and concurrency policy is Forbid";
                self.events.publish(cron_job, Kind::Normal, "JobAlreadyActive", message.to_string());
                return Ok(next);
            }
            "Replace" => {
                for reference in &active {
                    let job_name = reference.name.clone().unwrap_or_default();
                    let params =
                        DeleteParams { propagation_policy: Some(PropagationPolicy::Background), ..Default::default() };
                    match jobs_api.delete(&job_name, &params).await {
                        Ok(_) => self.events.publish(
                            cron_job,
                            Kind::Normal,
                            "SuccessfulDelete",
                            format!("Deleted job {job_name}"),
                        ),
                        Err(kube::Error::Api(response)) if response.code == 404 => {}
                        Err(error) => return Err(error.into()),
                    }
                }
                status.active = None;
            }
            _ => {}
        }
        let job = job_from_template(cron_job, &job_name, scheduled);
        let created = match jobs_api.create(&PostParams::default(), &job).await {
            Ok(created) => {
                self.events.publish(cron_job, Kind::Normal, "SuccessfulCreate", format!("Created job {job_name}"));
                created
            }
            // Started by an earlier pass whose status write was lost; it is ours if it says so.
            Err(kube::Error::Api(response)) if response.code == 409 => {
                let existing = jobs_api.get(&job_name).await?;
                if controller_of_job(&existing).is_none_or(|owner| Some(&owner.uid) != cron_job.uid().as_ref()) {
                    return Err(ReconcileError::Other(format!(
                        "a job named {job_name} exists and is not this CronJob's"
                    )));
                }
                existing
            }
            Err(error) => {
                self.events.publish(cron_job, Kind::Warning, "FailedCreate", format!("Error creating job: {error}"));
                return Err(error.into());
            }
        };
        if finished(&created).is_none() {
            let mut active = status.active.clone().unwrap_or_default();
            active.push(ObjectReference {
                api_version: Some("batch/v1".into()),
                kind: Some("Job".into()),
                name: created.metadata.name.clone(),
                namespace: created.metadata.namespace.clone(),
                uid: created.metadata.uid.clone(),
                resource_version: created.metadata.resource_version.clone(),
                ..Default::default()
            });
            status.active = Some(active);
        }
        status.last_schedule_time = Some(Time(scheduled));
        Ok(next)
    }

    /// Deletes the oldest finished Jobs beyond the history limits (3 successful, 1 failed by default).
    async fn clean_up_finished(&self, cron_job: &CronJob, children: &[Arc<Job>]) {
        let spec = cron_job.spec.as_ref();
        let limits = [
            ("Complete", spec.and_then(|spec| spec.successful_jobs_history_limit).unwrap_or(3)),
            ("Failed", spec.and_then(|spec| spec.failed_jobs_history_limit).unwrap_or(1)),
        ];
        let jobs_api: Api<Job> = Api::namespaced(self.client.clone(), &cron_job.namespace().unwrap_or_default());
        for (condition, limit) in limits {
            let mut finished_jobs: Vec<&Arc<Job>> = children
                .iter()
                .filter(|job| finished(job) == Some(condition) && job.metadata.deletion_timestamp.is_none())
                .collect();
            finished_jobs.sort_by_key(|job| {
                let status = job.status.as_ref();
                let started = status.and_then(|status| status.start_time.as_ref()).map(|time| time.0);
                (started.or(job.metadata.creation_timestamp.as_ref().map(|time| time.0)), job.name_any())
            });
            let surplus = finished_jobs.len().saturating_sub(limit.max(0) as usize);
            for job in finished_jobs.into_iter().take(surplus) {
                let params =
                    DeleteParams { propagation_policy: Some(PropagationPolicy::Background), ..Default::default() };
                match jobs_api.delete(&job.name_any(), &params).await {
                    Ok(_) => self.events.publish(
                        cron_job,
                        Kind::Normal,
                        "SuccessfulDelete",
                        format!("Deleted job {}", job.name_any()),
                    ),
                    Err(error) => tracing::debug!(job = %job.name_any(), error = %error, "cannot delete an old job"),
                }
            }
        }
    }
}

fn controller_of_job(job: &Job) -> Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference> {
    job.metadata.owner_references.iter().flatten().find(|owner| owner.controller == Some(true))
}

/// `Complete` or `Failed` once the Job has that condition True.
fn finished(job: &Job) -> Option<&'static str> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    ["Complete", "Failed"]
        .into_iter()
        .find(|wanted| conditions.iter().any(|condition| condition.type_ == *wanted && condition.status == "True"))
}

/// `<cronjob>-<minutes since the epoch>`: one name per scheduled time, so creating it twice is an AlreadyExists.
pub fn job_name(cron_job: &str, scheduled: jiff::Timestamp) -> String {
    format!("{cron_job}-{}", scheduled.as_second().div_euclid(60))
}

/// The time after which a scheduled time can still be due: the last one started (or the CronJob's creation),
/// and no earlier than startingDeadlineSeconds ago, since a start later than that is a miss.
fn earliest_due(
    created: jiff::Timestamp,
    last_scheduled: Option<jiff::Timestamp>,
    starting_deadline_seconds: Option<i64>,
    now: jiff::Timestamp,
) -> jiff::Timestamp {
    let earliest = last_scheduled.unwrap_or(created);
    match starting_deadline_seconds {
        Some(seconds) => earliest.max(now - jiff::SignedDuration::from_secs(seconds)),
        None => earliest,
    }
}

/// How many scheduled times fall after `earliest` up to `scheduled` (counted up to just past the warning limit).
fn missed_between(schedule: &Schedule, earliest: jiff::Timestamp, scheduled: jiff::Timestamp) -> usize {
    let mut count = 0;
    let mut time = earliest;
    while let Some(next) = schedule.next_after(time).filter(|next| *next <= scheduled) {
        count += 1;
        if count > TOO_MANY_MISSED {
            break;
        }
        time = next;
    }
    count
}

fn job_from_template(cron_job: &CronJob, name: &str, scheduled: jiff::Timestamp) -> Job {
    let template = cron_job.spec.as_ref().map(|spec| spec.job_template.clone()).unwrap_or_default();
    let template_meta = template.metadata.unwrap_or_default();
    let mut annotations = template_meta.annotations.unwrap_or_default();
    annotations.insert(SCHEDULED_TIMESTAMP_ANNOTATION.into(), scheduled.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
    Job {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: cron_job.namespace(),
            labels: template_meta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![controller_reference(cron_job)]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_count_minutes_since_the_epoch() {
        let scheduled: jiff::Timestamp = "2026-03-01T10:15:00Z".parse().unwrap();
        assert_eq!(job_name("tick", scheduled), format!("tick-{}", scheduled.as_second() / 60));
        assert_eq!(job_name("tick", scheduled), "tick-29539335");
    }

    #[test]
    fn jobs_carry_the_template_the_owner_and_the_scheduled_time() {
        let cron_job: CronJob = serde_json::from_value(json!({"metadata": {"name": "tick", "namespace": "default", "uid": "u1"},
            "spec": {"schedule": "*/1 * * * *", "jobTemplate": {"metadata": {"labels": {"app": "tick"}},
                "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}}}}}}))
        .unwrap();
        let job = job_from_template(&cron_job, "tick-1", "2026-03-01T10:15:00Z".parse().unwrap());
        let value = serde_json::to_value(&job).unwrap();
        assert_eq!(value["metadata"]["labels"]["app"], "tick");
        assert_eq!(value["metadata"]["annotations"][SCHEDULED_TIMESTAMP_ANNOTATION], "2026-03-01T10:15:00Z");
        assert_eq!(value["metadata"]["ownerReferences"][0]["kind"], "CronJob");
        assert_eq!(value["spec"]["template"]["spec"]["restartPolicy"], "Never");
    }

    #[test]
    fn only_the_latest_due_time_within_the_deadline_starts() {
        let at = |text: &str| -> jiff::Timestamp { text.parse().unwrap() };
        let every_five = Schedule::parse("*/5 * * * *", jiff::tz::TimeZone::UTC).unwrap();
        let created = at("2026-03-01T09:58:00Z");
        let now = at("2026-03-01T10:17:00Z");
        // Down since creation: of 10:00, 10:05, 10:10 and 10:15 only the latest starts.
        let earliest = earliest_due(created, None, None, now);
        assert_eq!(every_five.latest_between(earliest, now), Some(at("2026-03-01T10:15:00Z")));
        // Already started 10:15: nothing is due until 10:20.
        let earliest = earliest_due(created, Some(at("2026-03-01T10:15:00Z")), None, now);
        assert_eq!(every_five.latest_between(earliest, now), None);
        // With a 60 s deadline, 10:15 is missed at 10:17.
        let earliest = earliest_due(created, Some(at("2026-03-01T10:10:00Z")), Some(60), now);
        assert_eq!(every_five.latest_between(earliest, now), None);
        let earliest = earliest_due(created, Some(at("2026-03-01T10:10:00Z")), Some(180), now);
        assert_eq!(every_five.latest_between(earliest, now), Some(at("2026-03-01T10:15:00Z")));
    }

    #[test]
    fn missed_times_are_counted_up_to_the_limit() {
        let schedule = Schedule::parse("* * * * *", jiff::tz::TimeZone::UTC).unwrap();
        let earliest: jiff::Timestamp = "2026-03-01T10:00:00Z".parse().unwrap();
        assert_eq!(missed_between(&schedule, earliest, "2026-03-01T10:05:00Z".parse().unwrap()), 5);
        assert_eq!(missed_between(&schedule, earliest, "2026-03-02T10:00:00Z".parse().unwrap()), TOO_MANY_MISSED + 1);
    }
}
