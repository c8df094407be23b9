//! PodDisruptionBudgets and the eviction API on a real node (a `kaasd controller` and a `kaasd worker` running
//! busybox pods in containerd): the disruption controller's status, and `kubectl drain` evicting pods only as the
//! budget allows: the conformance entries "PodDisruptionBudget: Status updates" and "PodDisruptionBudget: block
//! an eviction until the PDB is updated to allow it", through kubectl as a user drains a node.

use serde_json::Value;

#[path = "common/one_node.rs"]
mod one_node;
use one_node::Node;

const DEPLOYMENT: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers: [{name: web, image: 'busybox:1.36', command: [sleep, '3600']}]
";

const BUDGET: &str = "\
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web}
spec:
  minAvailable: 2
  selector: {matchLabels: {app: web}}
";

fn json(node: &Node, arguments: &[&str]) -> Value {
    let mut arguments = arguments.to_vec();
    arguments.extend(["-o", "json"]);
    serde_json::from_str(&node.controller.kubectl(&arguments).expect("kubectl get")).expect("JSON")
}

/// The budget's status fields, and its DisruptionAllowed condition's status and reason.
fn budget_status(node: &Node) -> (Value, String, String) {
    let budget = json(node, &["get", "pdb", "web"]);
    let status = &budget["status"];
    let condition = status["conditions"]
        .as_array()
        .and_then(|conditions| conditions.iter().find(|condition| condition["type"] == "DisruptionAllowed"))
        .cloned()
        .unwrap_or_default();
    let observed = status["observedGeneration"] == budget["metadata"]["generation"];
    let fields = serde_json::json!({
        "currentHealthy": status["currentHealthy"], "desiredHealthy": status["desiredHealthy"],
        "expectedPods": status["expectedPods"], "disruptionsAllowed": status["disruptionsAllowed"],
        "observed": observed,
    });
    (fields, condition["status"].as_str().unwrap_or("").into(), condition["reason"].as_str().unwrap_or("").into())
}

fn wait_budget(node: &Node, healthy: i64, desired: i64, allowed: i64) {
    let (status, reason) = if allowed > 0 { ("True", "SufficientPods") } else { ("False", "InsufficientPods") };
    let expected = serde_json::json!({"currentHealthy": healthy, "desiredHealthy": desired, "expectedPods": 2,
        "disruptionsAllowed": allowed, "observed": true});
    node.wait(&format!("the budget's status {expected} {status} {reason}"), || {
        Ok(budget_status(node) == (expected.clone(), status.to_string(), reason.to_string()))
    });
}

/// The web pods not terminating.
fn live_web_pods(node: &Node) -> Vec<String> {
    json(node, &["get", "pods", "-l", "app=web"])["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|pod| pod["metadata"]["deletionTimestamp"].is_null())
        .filter_map(|pod| pod["metadata"]["name"].as_str().map(str::to_string))
        .collect()
}

fn drain(node: &Node, timeout: &str) -> (bool, String) {
    let output = node
        .controller
        .kubectl_output(&["drain", "disrupted", "--ignore-daemonsets", &format!("--timeout={timeout}")])
        .expect("kubectl drain runs");
    let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), said)
}

#[test]
fn a_disruption_budget_blocks_evictions_until_it_is_updated_to_allow_them() {
    let node = Node::start("disrupted");
    node.apply(DEPLOYMENT);
    node.controller.kubectl(&["rollout", "status", "deployment/web", "--timeout=90s"]).expect("web rolls out");
    node.apply(BUDGET);
    // Status updates: two healthy pods, two wanted, no disruption allowed.
    wait_budget(&node, 2, 2, 0);

    // Blocked: drain cordons the node and retries the eviction the budget refuses, until its timeout.
    let (drained, said) = drain(&node, "8s");
    assert!(!drained, "drain went through a budget that allows no disruption:\n{said}");
    assert!(said.contains("Cannot evict pod as it would violate the pod's disruption budget."), "{said}");
    assert_eq!(live_web_pods(&node).len(), 2, "a pod was evicted against its budget");
    let cordoned = json(&node, &["get", "node", "disrupted"]);
    assert_eq!(cordoned["spec"]["unschedulable"], true, "drain cordons the node first");

    // A second budget over the same pods: the eviction API refuses to choose.
    node.apply(&BUDGET.replace("name: web", "name: web-too"));
    let pod = live_web_pods(&node).remove(0);
    let eviction = format!(
        r#"{{"apiVersion":"policy/v1","kind":"Eviction","metadata":{{"name":"{pod}","namespace":"default"}}}}"#
    );
    let path = format!("/api/v1/namespaces/default/pods/{pod}/eviction");
    let refused = node.controller.kubectl_stdin(&["create", "--raw", &path, "-f", "-"], &eviction).unwrap_err();
    assert!(refused.to_string().contains("This pod has more than one PodDisruptionBudget"), "{refused:#}");
    node.controller.kubectl(&["delete", "pdb", "web-too"]).expect("delete the second budget");

    // Updated to allow one disruption: one pod goes; its replacement cannot run on the cordoned node, so the
    // second eviction is refused again.
    node.controller.kubectl(&["patch", "pdb", "web", "--type=merge", "-p", r#"{"spec":{"minAvailable":1}}"#]).unwrap();
    wait_budget(&node, 2, 1, 1);
    let (drained, said) = drain(&node, "8s");
    assert!(!drained, "the second pod went too:\n{said}");
    assert!(said.contains("evicting pod default/"), "{said}");
    assert_eq!(live_web_pods(&node).len(), 2, "the Deployment replaced the evicted pod:\n{said}");
    let pending = json(&node, &["get", "pods", "-l", "app=web", "--field-selector=status.phase=Pending"]);
    assert_eq!(pending["items"].as_array().map(Vec::len), Some(1), "the replacement waits for a node");
    wait_budget(&node, 1, 1, 0);

    // Updated to allow every disruption: the drain completes.
    node.controller.kubectl(&["patch", "pdb", "web", "--type=merge", "-p", r#"{"spec":{"minAvailable":0}}"#]).unwrap();
    let (drained, said) = drain(&node, "60s");
    assert!(drained, "{said}");
    assert!(said.contains("node/disrupted drained"), "{said}");
    let running = json(&node, &["get", "pods", "-l", "app=web", "--field-selector=status.phase=Running"]);
    assert_eq!(running["items"].as_array().map(Vec::len), Some(0), "a web pod still runs on the drained node");
}
