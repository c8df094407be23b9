//! Jobs on a real node: Indexed completion, backoffLimitPerIndex, podFailurePolicy and successPolicy, with pods
//! that run busybox under containerd and decide how they end from what the Job controller gave them (their
//! `JOB_COMPLETION_INDEX`, their index's failure count) or from a file left on the node by an earlier try.
//!
//! Needs root, containerd, runc, containernetworking-plugins and busybox-static (tests/run.sh installs them).

#[path = "common/one_node.rs"]
#[allow(dead_code)] // shared with pods_run.rs, which uses the rest of it
mod one_node;

use one_node::Node;
use serde_json::Value;

const NODE: &str = "jobs-a";

fn json(node: &Node, arguments: &[&str]) -> Value {
    let mut arguments = arguments.to_vec();
    arguments.extend(["-o", "json"]);
    let output = node.controller.kubectl(&arguments).expect("kubectl get");
    serde_json::from_str(&output).expect("JSON from kubectl")
}

/// A Job manifest whose one container `main` runs `script` with `sh -c`; `spec` is more of the Job's spec.
fn job(name: &str, spec: &str, script: &str) -> String {
    format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {name}\nspec:\n{spec}  template:\n    spec:\n      \
         restartPolicy: Never\n      terminationGracePeriodSeconds: 2\n      nodeName: {NODE}\n      containers:\n      \
         - name: main\n        image: busybox:1.36\n        command: [\"sh\", \"-c\", {script:?}]\n        env:\n        \
         - name: FAILURES\n          valueFrom: {{fieldRef: {{fieldPath: \"metadata.annotations['batch.kubernetes.io/job-index-failure-count']\"}}}}\n"
    )
}

fn wait_for(node: &Node, condition: &str, job: &str) {
    let result = node.controller.kubectl(&[
        "wait",
        &format!("--for=condition={condition}"),
        &format!("job/{job}"),
        "--timeout=150s",
    ]);
    if let Err(error) = result {
        panic!(
            "job/{job} not {condition}: {error}\n{}\n{}",
            node.controller.kubectl(&["get", "job", job, "-o", "yaml"]).unwrap_or_default(),
            node.controller.kubectl(&["get", "pods", "-o", "wide"]).unwrap_or_default()
        );
    }
}

fn condition<'a>(job: &'a Value, type_: &str) -> &'a Value {
    job["status"]["conditions"]
        .as_array()
        .and_then(|conditions| conditions.iter().find(|condition| condition["type"] == type_))
        .unwrap_or_else(|| panic!("no {type_} condition: {job}"))
}

fn pods_of(node: &Node, job: &str) -> Vec<Value> {
    let pods = json(node, &["get", "pods", "-l", &format!("batch.kubernetes.io/job-name={job}")]);
    pods["items"].as_array().cloned().unwrap_or_default()
}

fn annotation<'a>(pod: &'a Value, key: &str) -> &'a str {
    pod["metadata"]["annotations"][key].as_str().unwrap_or_default()
}

#[test]
fn indexed_jobs_failure_policies_and_success_policies_run_real_pods() {
    let node = Node::start(NODE);

    // Refused before any pod runs: an Indexed Job needs completions, a pod failure policy needs restartPolicy Never.
    // (Without parallelism either, defaulting makes both 1, as upstream does.)
    let no_completions = job("no-completions", "  completionMode: Indexed\n  parallelism: 2\n", "true");
    let refused = node.controller.kubectl_stdin(&["apply", "-f", "-"], &no_completions).unwrap_err().to_string();
    assert!(refused.contains("spec.completions: Required value: when completion mode is Indexed"), "{refused}");
    let on_failure = job(
        "on-failure",
        "  podFailurePolicy: {rules: [{action: Ignore, onExitCodes: {operator: In, values: [1]}}]}\n",
        "true",
    )
    .replace("restartPolicy: Never", "restartPolicy: OnFailure");
    let refused = node.controller.kubectl_stdin(&["apply", "-f", "-"], &on_failure).unwrap_err().to_string();
    assert!(refused.contains("only \"Never\" is supported when podFailurePolicy is specified"), "{refused}");

    // Index 1 fails on its first try only; every pod says which index and host it is.
    let indexed = job(
        "indexed",
        "  completionMode: Indexed\n  completions: 3\n  parallelism: 2\n  backoffLimitPerIndex: 1\n",
        "echo index $JOB_COMPLETION_INDEX on $(hostname); if [ $JOB_COMPLETION_INDEX = 1 ] && [ $FAILURES = 0 ]; then exit 3; fi",
    );
    // Fails with 42 at once; a backoffLimit of 100 would otherwise retry it for a long time.
    let fail_fast = job(
        "fail-fast",
        "  backoffLimit: 100\n  podFailurePolicy:\n    rules:\n    - action: FailJob\n      onExitCodes: {containerName: main, \
         operator: In, values: [42]}\n",
        "exit 42",
    );
    // Exits 7 on its first try (leaving a mark on the node), then succeeds: the ignored failure is not counted, so a
    // backoffLimit of 0 still lets the Job complete.
    let marks = node.worker.data_dir().join("job-marks");
    let ignored = job(
        "ignored",
        "  backoffLimit: 0\n  podFailurePolicy:\n    rules:\n    - action: Ignore\n      onExitCodes: {operator: In, values: [7]}\n",
        "if [ -e /marks/tried ]; then exit 0; fi; touch /marks/tried; exit 7",
    )
    .replace(
        "        env:\n",
        "        volumeMounts: [{name: marks, mountPath: /marks}]\n        env:\n",
    )
    .replace(
        "      containers:\n",
        &format!("      volumes: [{{name: marks, hostPath: {{path: {:?}, type: DirectoryOrCreate}}}}]\n      containers:\n", marks.display().to_string()),
    );
    // Index 0 succeeds, the others would run for long: the success policy ends the Job after index 0.
    let early = job(
        "early",
        "  completionMode: Indexed\n  completions: 3\n  parallelism: 3\n  successPolicy: {rules: [{succeededIndexes: \"0\"}]}\n",
        "if [ $JOB_COMPLETION_INDEX = 0 ]; then exit 0; fi; sleep 100000",
    );
    // Index 2 fails with no retries allowed: the Job ends Failed with the other indexes completed.
    let failed_index = job(
        "failed-index",
        "  completionMode: Indexed\n  completions: 3\n  parallelism: 3\n  backoffLimitPerIndex: 0\n",
        "if [ $JOB_COMPLETION_INDEX = 2 ]; then exit 1; fi",
    );
    for manifest in [&indexed, &fail_fast, &ignored, &early, &failed_index] {
        node.apply(manifest);
    }

    wait_for(&node, "complete", "indexed");
    let status = json(&node, &["get", "job", "indexed"])["status"].clone();
    assert_eq!(status["completedIndexes"], "0-2", "{status}");
    assert_eq!((status["succeeded"].as_i64(), status["failed"].as_i64()), (Some(3), Some(1)), "{status}");
    assert_eq!(status["failedIndexes"], "", "{status}");
    let pods = pods_of(&node, "indexed");
    assert_eq!(pods.len(), 4, "one pod per index and one retry");
    for pod in &pods {
        let index = annotation(pod, "batch.kubernetes.io/job-completion-index");
        let name = pod["metadata"]["name"].as_str().unwrap_or_default();
        assert!(["0", "1", "2"].contains(&index), "{pod}");
        assert_eq!(pod["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"], index, "{pod}");
        assert!(name.starts_with(&format!("indexed-{index}-")), "{name}");
        assert_eq!(pod["spec"]["hostname"], format!("indexed-{index}"), "{pod}");
        let logs = node.controller.kubectl(&["logs", name]).unwrap_or_default();
        assert_eq!(logs, format!("index {index} on indexed-{index}\n"), "{name}");
        let failures = annotation(pod, "batch.kubernetes.io/job-index-failure-count");
        let (phase, expected_failures) = match (index, pod["status"]["phase"].as_str()) {
            ("1", Some("Failed")) => ("Failed", "0"),
            ("1", _) => ("Succeeded", "1"),
            _ => ("Succeeded", "0"),
        };
        assert_eq!((pod["status"]["phase"].as_str(), failures), (Some(phase), expected_failures), "{name}");
    }

    wait_for(&node, "failed", "fail-fast");
    let fail_fast = json(&node, &["get", "job", "fail-fast"]);
    let failed = condition(&fail_fast, "Failed");
    assert_eq!(failed["reason"], "PodFailurePolicy", "{fail_fast}");
    let message = failed["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("Container main for pod default/fail-fast-"), "{message}");
    assert!(message.ends_with(" failed with exit code 42 matching FailJob rule at index 0"), "{message}");
    assert_eq!(fail_fast["status"]["failed"], 1, "{fail_fast}");
    assert_eq!(pods_of(&node, "fail-fast").len(), 1, "no retry after FailJob");

    wait_for(&node, "complete", "ignored");
    let ignored = json(&node, &["get", "job", "ignored"]);
    assert_eq!(ignored["status"]["succeeded"], 1, "{ignored}");
    assert!(ignored["status"]["failed"].is_null(), "the ignored failure is not counted: {ignored}");
    assert_eq!(pods_of(&node, "ignored").len(), 2, "the failed pod was replaced");

    wait_for(&node, "complete", "early");
    let early = json(&node, &["get", "job", "early"]);
    let met = condition(&early, "SuccessCriteriaMet");
    assert_eq!(
        (met["reason"].as_str(), met["message"].as_str()),
        (Some("SuccessPolicy"), Some("Matched rules at index 0"))
    );
    assert_eq!(condition(&early, "Complete")["reason"], "SuccessPolicy", "{early}");
    assert_eq!(early["status"]["completedIndexes"], "0", "{early}");
    assert!(early["status"]["failed"].is_null(), "pods stopped after success are not failures: {early}");
    node.wait("the other indexes' pods being gone", || {
        Ok(pods_of(&node, "early").iter().all(|pod| pod["status"]["phase"] == "Succeeded"))
    });

    wait_for(&node, "failed", "failed-index");
    let failed_index = json(&node, &["get", "job", "failed-index"]);
    assert_eq!(condition(&failed_index, "Failed")["reason"], "FailedIndexes", "{failed_index}");
    assert_eq!(condition(&failed_index, "Failed")["message"], "Job has failed indexes", "{failed_index}");
    assert_eq!(failed_index["status"]["failedIndexes"], "2", "{failed_index}");
    assert_eq!(failed_index["status"]["completedIndexes"], "0,1", "{failed_index}");
    assert_eq!(pods_of(&node, "failed-index").len(), 3, "a failed index is not retried");
}

#[test]
fn terminating_pods_are_replaced_at_once_or_once_gone_as_the_replacement_policy_says() {
    let node = Node::start(NODE);
    // `sh` as the container's first process ignores SIGTERM: a deleted pod stays Terminating for its whole grace
    // period, long enough to see whether its replacement starts before it is gone.
    let slow_to_stop = |name: &str, policy: &str| {
        job(name, &format!("  podReplacementPolicy: {policy}\n"), "sleep 100000")
            .replace("terminationGracePeriodSeconds: 2", "terminationGracePeriodSeconds: 30")
    };
    node.apply(&slow_to_stop("at-once", "TerminatingOrFailed"));
    node.apply(&slow_to_stop("once-gone", "Failed"));
    let running = |job: &str| -> Vec<String> {
        pods_of(&node, job)
            .iter()
            .filter(|pod| pod["status"]["phase"] == "Running" && pod["metadata"]["deletionTimestamp"].is_null())
            .filter_map(|pod| pod["metadata"]["name"].as_str().map(str::to_string))
            .collect()
    };
    for job in ["at-once", "once-gone"] {
        node.wait(&format!("{job} running its pod"), || Ok(running(job).len() == 1));
        let first = running(job).remove(0);
        node.controller.kubectl(&["delete", "pod", &first, "--wait=false"]).expect("kubectl delete");
    }

    // TerminatingOrFailed: the replacement runs while the first pod is still terminating.
    node.wait("a replacement beside the terminating pod of at-once", || {
        let pods = pods_of(&node, "at-once");
        let terminating = pods.iter().filter(|pod| !pod["metadata"]["deletionTimestamp"].is_null()).count();
        Ok(terminating == 1 && pods.len() == 2)
    });

    // Failed: nothing new while the first pod terminates (the Job says it is terminating), then the replacement.
    let mut saw_terminating = false;
    node.wait("the terminating pod of once-gone being gone", || {
        let pods = pods_of(&node, "once-gone");
        let terminating = pods.iter().filter(|pod| !pod["metadata"]["deletionTimestamp"].is_null()).count();
        assert!(terminating == 0 || pods.len() == terminating, "replaced before the pod was gone: {pods:?}");
        if terminating > 0 {
            let status = json(&node, &["get", "job", "once-gone"])["status"].clone();
            saw_terminating |= status["terminating"] == 1;
            return Ok(false);
        }
        Ok(true)
    });
    assert!(saw_terminating, "status.terminating counted the terminating pod");
    node.wait("the replacement of once-gone running", || Ok(running("once-gone").len() == 1));

    // Lowering parallelism stops the pods beyond it; raising it starts more.
    node.apply(&job(
        "wide",
        "  parallelism: 3
  completions: 10
",
        "sleep 100000",
    ));
    node.wait("wide running 3 pods", || Ok(running("wide").len() == 3));
    let patch = r#"{"spec":{"parallelism":1}}"#;
    node.controller.kubectl(&["patch", "job", "wide", "--type=merge", "-p", patch]).expect("kubectl patch");
    node.wait("wide down to 1 running pod", || {
        let status = json(&node, &["get", "job", "wide"])["status"].clone();
        Ok(running("wide").len() == 1 && status["active"] == 1)
    });
    let patch = r#"{"spec":{"parallelism":2}}"#;
    node.controller.kubectl(&["patch", "job", "wide", "--type=merge", "-p", patch]).expect("kubectl patch");
    node.wait("wide back up to 2 running pods", || Ok(running("wide").len() == 2));
}
