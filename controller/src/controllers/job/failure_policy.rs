//! `spec.podFailurePolicy`: what a failed pod means for its Job. Rules are tried in order and the first that
//! matches decides; a failure no rule matches counts toward the backoff limits.

use k8s_openapi::api::batch::v1::{PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Counts toward `backoffLimit` (and `backoffLimitPerIndex`): no rule matched, or a `Count` rule did.
    Count,
    /// Does not count; the pod is replaced.
    Ignore,
    /// The pod's index fails without further retries.
    FailIndex,
    /// The whole Job fails, for this reason (upstream's wording).
    FailJob(String),
}

pub fn outcome(policy: Option<&PodFailurePolicy>, pod: &Pod) -> Outcome {
    let Some(policy) = policy else { return Outcome::Count };
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    for (index, rule) in policy.rules.iter().enumerate() {
        let fail_job_message = if let Some(requirement) = &rule.on_exit_codes {
            let Some(container) = matching_container(pod, requirement) else { continue };
            let code = container.state.as_ref().and_then(|state| state.terminated.as_ref()).map_or(0, |t| t.exit_code);
            format!(
                "Container {} for pod {namespace}/{name} failed with exit code {code} matching {} rule at index {index}",
                container.name, rule.action
            )
        } else if let Some(patterns) = &rule.on_pod_conditions {
            let conditions = pod.status.as_ref().and_then(|status| status.conditions.as_ref());
            let matched = conditions.into_iter().flatten().find(|condition| {
                patterns.iter().any(|pattern| pattern.type_ == condition.type_ && pattern.status == condition.status)
            });
            let Some(condition) = matched else { continue };
            format!(
                "Pod {namespace}/{name} has condition {} matching {} rule at index {index}",
                condition.type_, rule.action
            )
        } else {
            continue;
        };
        match rule.action.as_str() {
            "FailJob" => return Outcome::FailJob(fail_job_message),
            "FailIndex" => return Outcome::FailIndex,
            "Ignore" => return Outcome::Ignore,
            "Count" => return Outcome::Count,
            // Upstream's contract for actions added later: a client that does not know one skips the rule.
            _ => continue,
        }
    }
    Outcome::Count
}

/// The first container (then init container) that exited non-zero with a code the requirement names.
fn matching_container<'a>(
    pod: &'a Pod,
    requirement: &PodFailurePolicyOnExitCodesRequirement,
) -> Option<&'a ContainerStatus> {
    let status = pod.status.as_ref()?;
    let containers = status.container_statuses.iter().flatten();
    let init_containers = status.init_container_statuses.iter().flatten();
    containers.chain(init_containers).find(|container| {
        if requirement.container_name.as_ref().is_some_and(|name| *name != container.name) {
            return false;
        }
        let Some(terminated) = container.state.as_ref().and_then(|state| state.terminated.as_ref()) else {
            return false;
        };
        let listed = requirement.values.contains(&terminated.exit_code);
        terminated.exit_code != 0
            && match requirement.operator.as_str() {
                "In" => listed,
                "NotIn" => !listed,
                _ => false,
            }
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::batch::v1::{PodFailurePolicyOnPodConditionsPattern, PodFailurePolicyRule};
    use k8s_openapi::api::core::v1::{ContainerState, ContainerStateTerminated, PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn exited(name: &str, code: i32) -> ContainerStatus {
        ContainerStatus {
            name: name.into(),
            state: Some(ContainerState {
                terminated: Some(ContainerStateTerminated { exit_code: code, ..Default::default() }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn failed_pod(containers: Vec<ContainerStatus>, init: Vec<ContainerStatus>, conditions: &[&str]) -> Pod {
        Pod {
            metadata: ObjectMeta { name: Some("work-x1".into()), namespace: Some("ns".into()), ..Default::default() },
            status: Some(PodStatus {
                phase: Some("Failed".into()),
                container_statuses: Some(containers),
                init_container_statuses: Some(init),
                conditions: Some(
                    conditions
                        .iter()
                        .map(|type_| PodCondition {
                            type_: type_.to_string(),
                            status: "True".into(),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn on_exit_codes(action: &str, container: Option<&str>, operator: &str, values: &[i32]) -> PodFailurePolicyRule {
        PodFailurePolicyRule {
            action: action.into(),
            on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                container_name: container.map(str::to_string),
                operator: operator.into(),
                values: values.to_vec(),
            }),
            on_pod_conditions: None,
        }
    }

    fn on_condition(action: &str, type_: &str) -> PodFailurePolicyRule {
        PodFailurePolicyRule {
            action: action.into(),
            on_exit_codes: None,
            on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
                type_: type_.into(),
                status: "True".into(),
            }]),
        }
    }

    fn policy(rules: Vec<PodFailurePolicyRule>) -> PodFailurePolicy {
        PodFailurePolicy { rules }
    }

    #[test]
    fn without_a_policy_every_failure_counts() {
        assert_eq!(outcome(None, &failed_pod(vec![exited("main", 42)], vec![], &[])), Outcome::Count);
    }

    #[test]
    fn fail_job_names_the_container_the_code_and_the_rule() {
        let policy = policy(vec![
            on_exit_codes("Ignore", None, "In", &[7]),
            on_exit_codes("FailJob", Some("main"), "In", &[41, 42]),
        ]);
        let pod = failed_pod(vec![exited("sidecar", 0), exited("main", 42)], vec![], &[]);
        assert_eq!(
            outcome(Some(&policy), &pod),
            Outcome::FailJob(
                "Container main for pod ns/work-x1 failed with exit code 42 matching FailJob rule at index 1".into()
            )
        );
    }

    #[test]
    fn rules_apply_in_order_and_the_first_match_wins() {
        let policy =
            policy(vec![on_exit_codes("Ignore", None, "In", &[42]), on_exit_codes("FailJob", None, "In", &[42])]);
        assert_eq!(outcome(Some(&policy), &failed_pod(vec![exited("main", 42)], vec![], &[])), Outcome::Ignore);
    }

    #[test]
    fn exit_code_rules_skip_successful_containers_and_other_names() {
        let not_in = policy(vec![on_exit_codes("FailIndex", None, "NotIn", &[1])]);
        assert_eq!(outcome(Some(&not_in), &failed_pod(vec![exited("main", 0)], vec![], &[])), Outcome::Count);
        assert_eq!(outcome(Some(&not_in), &failed_pod(vec![exited("main", 1)], vec![], &[])), Outcome::Count);
        assert_eq!(outcome(Some(&not_in), &failed_pod(vec![exited("main", 2)], vec![], &[])), Outcome::FailIndex);
        let named = policy(vec![on_exit_codes("FailJob", Some("other"), "In", &[42])]);
        assert_eq!(outcome(Some(&named), &failed_pod(vec![exited("main", 42)], vec![], &[])), Outcome::Count);
    }

    #[test]
    fn init_containers_are_checked_after_containers() {
        let policy = policy(vec![on_exit_codes("FailJob", None, "In", &[3])]);
        let pod = failed_pod(vec![], vec![exited("setup", 3)], &[]);
        assert!(
            matches!(outcome(Some(&policy), &pod), Outcome::FailJob(message) if message.contains("Container setup"))
        );
    }

    #[test]
    fn pod_condition_rules_match_type_and_status() {
        let policy = policy(vec![on_condition("Ignore", "DisruptionTarget"), on_condition("FailJob", "ConfigIssue")]);
        let disrupted = failed_pod(vec![exited("main", 137)], vec![], &["Ready", "DisruptionTarget"]);
        assert_eq!(outcome(Some(&policy), &disrupted), Outcome::Ignore);
        let misconfigured = failed_pod(vec![], vec![], &["ConfigIssue"]);
        assert_eq!(
            outcome(Some(&policy), &misconfigured),
            Outcome::FailJob("Pod ns/work-x1 has condition ConfigIssue matching FailJob rule at index 1".into())
        );
        assert_eq!(outcome(Some(&policy), &failed_pod(vec![], vec![], &["Ready"])), Outcome::Count);
    }

    #[test]
    fn unknown_actions_are_skipped() {
        let policy = policy(vec![on_exit_codes("Retry", None, "In", &[5]), on_exit_codes("Ignore", None, "In", &[5])]);
        assert_eq!(outcome(Some(&policy), &failed_pod(vec![exited("main", 5)], vec![], &[])), Outcome::Ignore);
    }
}
