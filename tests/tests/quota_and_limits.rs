//! ResourceQuota and LimitRange against a real `kaasd controller`, driven by the real kubectl: creates over a
//! quota are refused with upstream's message, the quota's status counts what the namespace holds, and a
//! LimitRange fills in container defaults and refuses pods outside its bounds.

use std::time::{Duration, Instant};

use kaasd_e2e::controller::Controller;
use serde_json::{json, Value};

fn apply(controller: &Controller, object: &Value) {
    controller.kubectl_stdin(&["apply", "-f", "-"], &object.to_string()).expect("kubectl apply succeeds");
}

/// `kubectl create -f -` of `object`; the output whatever the exit status.
fn create(controller: &Controller, object: &Value) -> std::process::Output {
    use std::io::Write;
    let mut child = controller
        .kubectl_command(&["create", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    child.stdin.take().unwrap().write_all(object.to_string().as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn pod(name: &str, resources: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "limited"},
           "spec": {"containers": [{"name": "app", "image": "busybox", "resources": resources}]}})
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn get(controller: &Controller, arguments: &[&str]) -> Value {
    let mut arguments = arguments.to_vec();
    arguments.extend(["-o", "json"]);
    serde_json::from_str(&controller.kubectl(&arguments).unwrap()).unwrap()
}

#[test]
fn quotas_refuse_creates_beyond_them_and_count_usage() {
    let controller = Controller::start().expect("kaasd controller starts");
    controller.kubectl(&["create", "namespace", "limited"]).unwrap();
    apply(
        &controller,
        &json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "small", "namespace": "limited"},
                "spec": {"hard": {"pods": "2", "configmaps": "3", "requests.cpu": "1", "count/deployments.apps": "0"}}}),
    );
    for name in ["one", "two"] {
        let output = create(&controller, &pod(name, json!({"requests": {"cpu": "250m"}})));
        assert!(output.status.success(), "{}", stderr(&output));
    }
    let third = create(&controller, &pod("three", json!({"requests": {"cpu": "250m"}})));
    assert!(!third.status.success(), "a third pod exceeds the quota");
    assert!(
        stderr(&third).contains(
            "pods \"three\" is forbidden: exceeded quota: small, requested: pods=1, used: pods=2, limited: pods=2"
        ),
        "{}",
        stderr(&third)
    );
    let deployment =
        controller.kubectl_output(&["create", "deployment", "web", "--image=busybox", "-n", "limited"]).unwrap();
    assert!(
        stderr(&deployment).contains("exceeded quota: small, requested: count/deployments.apps=1, used: count/deployments.apps=0, limited: count/deployments.apps=0"),
        "{}",
        stderr(&deployment)
    );
    // A pod must name the CPU it requests when the quota limits requests.cpu.
    controller.kubectl(&["delete", "pod", "two", "-n", "limited", "--wait=false"]).unwrap();
    let unnamed = create(&controller, &pod("bare", json!({})));
    assert!(
        stderr(&unnamed).contains("pods \"bare\" is forbidden: failed quota: small: must specify requests.cpu"),
        "{}",
        stderr(&unnamed)
    );

    // The controller's count: status.hard from the spec, status.used from what the namespace holds.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let quota = get(&controller, &["get", "resourcequota", "small", "-n", "limited"]);
        let status = &quota["status"];
        // The namespace's kube-root-ca.crt ConfigMap counts too.
        if status["used"]["pods"] == "1" && status["used"]["requests.cpu"] == "250m" {
            assert_eq!(status["hard"]["pods"], "2");
            assert_eq!(status["used"]["count/deployments.apps"], "0");
            assert!(status["used"]["configmaps"].is_string(), "{status}");
            break;
        }
        assert!(Instant::now() < deadline, "the quota was never counted: {quota}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn limit_ranges_default_and_bound_containers() {
    let controller = Controller::start().expect("kaasd controller starts");
    controller.kubectl(&["create", "namespace", "limited"]).unwrap();
    apply(
        &controller,
        &json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "bounds", "namespace": "limited"},
                "spec": {"limits": [{"type": "Container", "max": {"cpu": "1"}, "min": {"memory": "32Mi"},
                                     "defaultRequest": {"cpu": "100m"}}]}}),
    );
    // Upstream's defaults of the LimitRange itself: default limit from max, default request from min.
    let range = get(&controller, &["get", "limitrange", "bounds", "-n", "limited"]);
    assert_eq!(range["spec"]["limits"][0]["default"], json!({"cpu": "1"}));
    assert_eq!(range["spec"]["limits"][0]["defaultRequest"], json!({"cpu": "100m", "memory": "32Mi"}));

    let output = create(&controller, &pod("defaulted", json!({})));
    assert!(output.status.success(), "{}", stderr(&output));
    let created = get(&controller, &["get", "pod", "defaulted", "-n", "limited"]);
    let resources = &created["spec"]["containers"][0]["resources"];
    assert_eq!(resources["requests"], json!({"cpu": "100m", "memory": "32Mi"}));
    assert_eq!(resources["limits"], json!({"cpu": "1"}));
    assert_eq!(
        created["metadata"]["annotations"]["kubernetes.io/limit-ranger"],
        "LimitRanger plugin set: cpu, memory request for container app; cpu limit for container app"
    );

    let too_big = create(&controller, &pod("too-big", json!({"limits": {"cpu": "2"}, "requests": {"memory": "16Mi"}})));
    assert!(!too_big.status.success(), "a pod over the maximum is refused");
    assert!(
        stderr(&too_big).contains(
            "pods \"too-big\" is forbidden: [minimum memory usage per Container is 32Mi, but request is 16Mi, \
             maximum cpu usage per Container is 1, but limit is 2]"
        ),
        "{}",
        stderr(&too_big)
    );
}
