//! `pods/NAME/eviction` (a policy/v1 Eviction, what `kubectl drain` posts): deletes a pod only when the
//! PodDisruptionBudget that selects it allows one more disruption, as upstream's eviction REST does. The
//! budget's status (written by `controllers::disruption`) is the ledger: an eviction takes one from
//! `disruptionsAllowed` and records the pod in `disruptedPods`, in one compare-and-swap write of the budget, so two
//! evictions racing for the last disruption cannot both win (the loser retries against the new status).
//!
//! Pods that are not running yet, have finished or are already terminating are deleted without asking a budget;
//! a pod that is not Ready may go without spending a disruption when its budget is healthy enough (or says
//! `unhealthyPodEvictionPolicy: AlwaysAllow`). An evicted pod gets upstream's `DisruptionTarget` condition before
//! it is deleted with the Eviction's `deleteOptions`.

use http::Response;
use serde_json::{json, Value};

use super::objects::{decode_object, not_found, DeleteOptions, ObjectRequest};
use super::{json_bytes_response, ApiServer, Body};
use crate::apiserver::error::{success_status_json, ApiError, ApiResult, Cause, Details};
use crate::apiserver::registry::ResourceDef;
use crate::apiserver::selector::LabelSelector;
use crate::apiserver::storage::{ObjectStore, Stored, Written};

/// Upstream's bound on `disruptedPods`: evictions the disruption controller has not caught up with.
const MAX_DISRUPTED_PODS: usize = 2000;
const VIOLATION: &str = "Cannot evict pod as it would violate the pod's disruption budget.";

/// What the budget says of one eviction.
#[derive(Debug, PartialEq)]
enum Verdict {
    /// Evict, and write this budget status first (one disruption fewer, the pod recorded).
    Spend(Value),
    /// Evict without spending a disruption (an unready pod the budget can do without).
    Free,
}

impl ApiServer {
    pub(super) async fn evict_pod(
        &self,
        def: &ResourceDef,
        namespace: Option<&str>,
        name: &str,
        request: &ObjectRequest,
    ) -> ApiResult<Response<Body>> {
        let eviction = decode_object(request)?;
        if eviction.pointer("/metadata/name").and_then(Value::as_str).is_some_and(|named| named != name) {
            return Err(ApiError::bad_request("name in URL does not match name in Eviction object"));
        }
        let mut options = DeleteOptions::from_body(eviction.get("deleteOptions").unwrap_or(&json!({})), request)?;
        let namespace_name = namespace.unwrap_or_default();
        let pod_key = ObjectStore::key(def, namespace, name);
        for _attempt in 0..16 {
            let pod = self.store.get(&pod_key, true).await?.ok_or_else(|| not_found(def, name))?;
            if !needs_budget(&pod.object) {
                return self.evict(def, namespace, name, &options).await;
            }
            let mut budgets = self.budgets_selecting(namespace_name, &pod.object).await?;
            let (budget_key, budget) = match budgets.len() {
                0 => return self.evict(def, namespace, name, &options).await,
                1 => budgets.remove(0),
                _ => {
                    return Err(ApiError::internal(
                        "This pod has more than one PodDisruptionBudget, which the eviction subresource does not \
                         support.",
                    ))
                }
            };
            match verdict(&budget.object, &pod.object, name, jiff::Timestamp::now())? {
                Verdict::Free => {
                    // The pod must still be the unready one judged here.
                    options.precondition_resource_version = Some(pod.revision.to_string());
                    return self.evict(def, namespace, name, &options).await;
                }
                Verdict::Spend(status) => {
                    if options.dry_run {
                        return Ok(success());
                    }
                    let mut updated = budget.object.clone();
                    updated["status"] = status;
                    match self.store.update(&budget_key, budget.revision, &updated).await? {
                        Written::Ok(_) => return self.evict(def, namespace, name, &options).await,
                        Written::Stale => continue,
                    }
                }
            }
        }
        Err(ApiError::conflict("pods/eviction", "", "pods", name))
    }

    /// The PodDisruptionBudgets of `namespace` that select the pod, with their keys.
    async fn budgets_selecting(&self, namespace: &str, pod: &Value) -> ApiResult<Vec<(String, Stored)>> {
        let registry = self.registry();
        let Some(budget_def) = registry.get("policy", "v1", "poddisruptionbudgets") else { return Ok(Vec::new()) };
        let prefix = ObjectStore::prefix(budget_def, Some(namespace));
        let page = self.store.list(&prefix, None, 0, 0).await?;
        let labels = pod.pointer("/metadata/labels").and_then(Value::as_object);
        Ok(page
            .items
            .into_iter()
            .filter(|budget| {
                // policy/v1: an empty selector selects every pod of the namespace, a missing one none.
                budget
                    .object
                    .pointer("/spec/selector")
                    .filter(|selector| !selector.is_null())
                    .and_then(|selector| LabelSelector::from_label_selector(selector).ok())
                    .is_some_and(|selector| selector.matches(labels))
            })
            .map(|budget| {
                let name = budget.object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
                (ObjectStore::key(budget_def, Some(namespace), name), budget)
            })
            .collect())
    }

    /// Marks the pod as a disruption target and deletes it.
    async fn evict(
        &self,
        def: &ResourceDef,
        namespace: Option<&str>,
        name: &str,
        options: &DeleteOptions,
    ) -> ApiResult<Response<Body>> {
        let mut options = options.clone();
        if !options.dry_run && self.mark_disruption_target(def, namespace, name, &options).await? {
            // The precondition held for the write that marked the pod; that write moved its revision on.
            options.precondition_resource_version = None;
        }
        self.delete_one(def, namespace, name, &options).await?;
        Ok(success())
    }

    /// Adds `DisruptionTarget=True` to a pod still running; whether it wrote.
    async fn mark_disruption_target(
        &self,
        def: &ResourceDef,
        namespace: Option<&str>,
        name: &str,
        options: &DeleteOptions,
    ) -> ApiResult<bool> {
        let key = ObjectStore::key(def, namespace, name);
        for _attempt in 0..16 {
            let current = self.store.get(&key, true).await?.ok_or_else(|| not_found(def, name))?;
            options.check_resource_version(current.revision)?;
            if is_terminal(&current.object) || current.object.pointer("/metadata/deletionTimestamp").is_some() {
                return Ok(false);
            }
            let mut updated = current.object.clone();
            let condition = json!({
                "type": "DisruptionTarget",
                "status": "True",
                "lastProbeTime": null,
                "lastTransitionTime": super::objects::now(),
                "reason": "EvictionByEvictionAPI",
                "message": "Eviction API: evicting",
            });
            let status = updated.as_object_mut().map(|pod| pod.entry("status").or_insert_with(|| json!({})));
            if let Some(Value::Object(status)) = status {
                let conditions = status.entry("conditions").or_insert_with(|| json!([]));
                if let Value::Array(conditions) = conditions {
                    conditions.retain(|condition| condition["type"] != "DisruptionTarget");
                    conditions.push(condition);
                }
            }
            match self.store.update(&key, current.revision, &updated).await? {
                Written::Ok(_) => return Ok(true),
                Written::Stale => continue,
            }
        }
        Err(ApiError::conflict("pods", "", "pods", name))
    }
}

/// The Status an accepted eviction answers with (201, as upstream's create handler sets it).
fn success() -> Response<Body> {
    json_bytes_response(201, success_status_json(201, None), "application/json")
}

fn phase(pod: &Value) -> &str {
    pod.pointer("/status/phase").and_then(Value::as_str).unwrap_or("")
}

fn is_terminal(pod: &Value) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

/// Whether evicting the pod is a budget's business: not for pods pending, finished or already terminating
/// (upstream's canIgnorePDB).
fn needs_budget(pod: &Value) -> bool {
    !matches!(phase(pod), "Succeeded" | "Failed" | "Pending") && pod.pointer("/metadata/deletionTimestamp").is_none()
}

fn is_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|conditions| conditions.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

/// Whether the budget lets this pod go (upstream's checkAndDecrement, with the unhealthy-pod policy first).
fn verdict(budget: &Value, pod: &Value, pod_name: &str, now: jiff::Timestamp) -> ApiResult<Verdict> {
    let name = budget.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    let status = budget.get("status").cloned().unwrap_or_else(|| json!({}));
    let number = |field: &str| status.get(field).and_then(Value::as_i64).unwrap_or(0);
    if !is_ready(pod) {
        let policy = budget.pointer("/spec/unhealthyPodEvictionPolicy").and_then(Value::as_str);
        let healthy_enough = number("currentHealthy") >= number("desiredHealthy") && number("desiredHealthy") > 0;
        if policy == Some("AlwaysAllow") || healthy_enough {
            return Ok(Verdict::Free);
        }
    }
    let generation = budget.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
    if number("observedGeneration") < generation {
        return Err(too_many_requests(
            format!("The disruption budget {name} is still being processed by the server."),
            Some(10),
        ));
    }
    let forbidden = |message: &str| {
        ApiError::forbidden(
            format!("poddisruptionbudget.policy \"{name}\" is forbidden: {message}"),
            Details {
                name: name.into(),
                group: "policy".into(),
                kind: "poddisruptionbudget".into(),
                ..Details::default()
            },
        )
    };
    let allowed = number("disruptionsAllowed");
    if allowed < 0 {
        return Err(forbidden("pdb disruptions allowed is negative"));
    }
    let disrupted = status.get("disruptedPods").and_then(Value::as_object).map_or(0, |pods| pods.len());
    if disrupted > MAX_DISRUPTED_PODS {
        return Err(forbidden("DisruptedPods map too big - too many evictions not confirmed by PDB controller"));
    }
    if allowed == 0 {
        return Err(too_many_requests(
            format!(
                "The disruption budget {name} needs {} healthy pods and has {} currently",
                number("desiredHealthy"),
                number("currentHealthy")
            ),
            None,
        ));
    }
    let mut status = status;
    status["disruptionsAllowed"] = json!(allowed - 1);
    if allowed - 1 == 0 {
        set_insufficient(&mut status, now);
    }
    if !status.get("disruptedPods").is_some_and(Value::is_object) {
        status["disruptedPods"] = json!({});
    }
    status["disruptedPods"][pod_name] = json!(crate::apiserver::objects::format_time(now));
    Ok(Verdict::Spend(status))
}

/// The `DisruptionAllowed` condition turned False, as the last disruption is spent.
fn set_insufficient(status: &mut Value, now: jiff::Timestamp) {
    let observed = status.get("observedGeneration").cloned().unwrap_or(json!(0));
    let mut conditions: Vec<Value> = status.get("conditions").and_then(Value::as_array).cloned().unwrap_or_default();
    let was = conditions.iter().find(|condition| condition["type"] == "DisruptionAllowed").cloned();
    let transition = match &was {
        Some(was) if was["status"] == "False" => was["lastTransitionTime"].clone(),
        _ => json!(crate::apiserver::objects::format_time(now)),
    };
    conditions.retain(|condition| condition["type"] != "DisruptionAllowed");
    conditions.push(json!({
        "type": "DisruptionAllowed",
        "status": "False",
        "reason": "InsufficientPods",
        "message": "",
        "observedGeneration": observed,
        "lastTransitionTime": transition,
    }));
    status["conditions"] = Value::Array(conditions);
}

fn too_many_requests(cause: String, retry_after_seconds: Option<u32>) -> ApiError {
    ApiError::new(429, "TooManyRequests", VIOLATION).with_details(Details {
        causes: vec![Cause { reason: "DisruptionBudget".into(), message: cause, field: String::new() }],
        retry_after_seconds,
        ..Details::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready_pod(ready: bool) -> Value {
        json!({"metadata": {"name": "web-1"}, "status": {"phase": "Running",
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
    }

    fn budget(allowed: i64, current: i64, desired: i64) -> Value {
        json!({"metadata": {"name": "web", "generation": 1}, "spec": {"minAvailable": desired},
            "status": {"observedGeneration": 1, "disruptionsAllowed": allowed, "currentHealthy": current,
                "desiredHealthy": desired, "expectedPods": current,
                "conditions": [{"type": "DisruptionAllowed", "status": "True", "reason": "SufficientPods",
                    "lastTransitionTime": "2026-03-01T09:00:00Z"}]}})
    }

    #[test]
    fn an_allowed_eviction_spends_a_disruption_and_records_the_pod() {
        let now: jiff::Timestamp = "2026-03-01T10:00:00Z".parse().unwrap();
        let Verdict::Spend(status) = verdict(&budget(1, 3, 2), &ready_pod(true), "web-1", now).unwrap() else {
            panic!("allowed")
        };
        assert_eq!(status["disruptionsAllowed"], 0);
        assert_eq!(status["disruptedPods"]["web-1"], "2026-03-01T10:00:00Z");
        assert_eq!(status["conditions"][0]["status"], "False");
        assert_eq!(status["conditions"][0]["reason"], "InsufficientPods");
        assert_eq!(status["conditions"][0]["lastTransitionTime"], "2026-03-01T10:00:00Z");
    }

    #[test]
    fn no_disruption_left_is_429_with_the_budget_as_cause() {
        let now = jiff::Timestamp::now();
        let error = verdict(&budget(0, 2, 2), &ready_pod(true), "web-1", now).unwrap_err();
        assert_eq!((error.code, error.reason, error.message.as_str()), (429, "TooManyRequests", VIOLATION));
        let details = error.details.unwrap();
        assert_eq!(details.causes[0].reason, "DisruptionBudget");
        assert_eq!(details.causes[0].message, "The disruption budget web needs 2 healthy pods and has 2 currently");

        let mut unobserved = budget(1, 3, 2);
        unobserved["metadata"]["generation"] = json!(2);
        let error = verdict(&unobserved, &ready_pod(true), "web-1", now).unwrap_err();
        assert_eq!(error.code, 429);
        assert_eq!(
            error.details.unwrap().causes[0].message,
            "The disruption budget web is still being processed by the server."
        );

        let error = verdict(&budget(-1, 1, 2), &ready_pod(true), "web-1", now).unwrap_err();
        assert_eq!(error.code, 403);
    }

    #[test]
    fn unready_pods_go_free_when_the_budget_is_healthy_or_always_allows() {
        let now = jiff::Timestamp::now();
        assert_eq!(verdict(&budget(0, 2, 2), &ready_pod(false), "web-1", now).unwrap(), Verdict::Free);
        // Not healthy enough: an unready pod spends a disruption like any other, and there is none.
        assert_eq!(verdict(&budget(0, 1, 2), &ready_pod(false), "web-1", now).unwrap_err().code, 429);
        let mut always = budget(0, 1, 2);
        always["spec"]["unhealthyPodEvictionPolicy"] = json!("AlwaysAllow");
        assert_eq!(verdict(&always, &ready_pod(false), "web-1", now).unwrap(), Verdict::Free);
    }

    #[test]
    fn pods_pending_finished_or_terminating_need_no_budget() {
        assert!(needs_budget(&ready_pod(true)));
        for phase in ["Pending", "Succeeded", "Failed"] {
            assert!(!needs_budget(&json!({"status": {"phase": phase}})), "{phase}");
        }
        assert!(!needs_budget(&json!({"metadata": {"deletionTimestamp": "2026-03-01T10:00:00Z"},
            "status": {"phase": "Running"}})));
    }
}
