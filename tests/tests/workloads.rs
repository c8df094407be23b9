//! The control-plane half of workloads, driven with kubectl against a real `kaasd controller`: the scheduler
//! places pods on Nodes the test registers (honouring topology spread constraints and inter-pod affinity), the
//! ReplicaSet, ReplicationController and Deployment controllers create, scale, roll out and roll back, and two
//! controllers on one database act once.
//!
//! No worker runs pods here. Where a rollout needs pods to become Ready, the test answers for the nodes through
//! the API, as their node agent would (`NodeAgentStandIn`: pod status Running and Ready, and the final delete of a
//! terminating pod); the pods issue's end-to-end tests run the same flows with real workers and containers.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use kaasd_e2e::controller::Controller;
use kaasd_e2e::databases::ServerDatabase;
use serde_json::Value;

#[path = "common/registered_nodes.rs"]
mod registered_nodes;
use registered_nodes::{is_ready, json, register_nodes, wait_for};

/// Answers for the registered nodes through the API while `running`: scheduled pods become Running and Ready,
/// terminating pods are deleted for good. Also records the most pods of `app=web` that existed at once and the
/// fewest Ready among them after the first rollout completed (to check maxSurge and maxUnavailable).
struct NodeAgentStandIn {
    running: AtomicBool,
    most_pods: AtomicI64,
    fewest_ready: AtomicI64,
    watching_rollout: AtomicBool,
}

impl NodeAgentStandIn {
    fn new() -> NodeAgentStandIn {
        NodeAgentStandIn {
            running: AtomicBool::new(true),
            most_pods: AtomicI64::new(0),
            fewest_ready: AtomicI64::new(i64::MAX),
            watching_rollout: AtomicBool::new(false),
        }
    }

    fn run(&self, controller: &Controller) {
        while self.running.load(Ordering::Relaxed) {
            let pods = json(controller, &["get", "pods", "-l", "app=web"]);
            let items = pods["items"].as_array().cloned().unwrap_or_default();
            self.finish_job_pods(controller);
            let live: Vec<&Value> = items.iter().filter(|pod| pod["metadata"]["deletionTimestamp"].is_null()).collect();
            self.most_pods.fetch_max(live.len() as i64, Ordering::Relaxed);
            if self.watching_rollout.load(Ordering::Relaxed) {
                let ready = live.iter().filter(|pod| is_ready(pod)).count() as i64;
                self.fewest_ready.fetch_min(ready, Ordering::Relaxed);
            }
            for pod in &items {
                let name = pod["metadata"]["name"].as_str().unwrap_or_default();
                if !pod["metadata"]["deletionTimestamp"].is_null() {
                    let _ = controller.kubectl_output(&[
                        "delete",
                        "pod",
                        name,
                        "--grace-period=0",
                        "--force",
                        "--wait=false",
                    ]);
                } else if pod["spec"]["nodeName"].is_string() && !is_ready(pod) {
                    let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
                    let status = serde_json::json!({"status": {"phase": "Running", "conditions": [
                        {"type": "Ready", "status": "True", "lastTransitionTime": now}]}});
                    let _ = controller.kubectl_output(&[
                        "patch",
                        "pod",
                        name,
                        "--subresource=status",
                        "--type=merge",
                        "-p",
                        &status.to_string(),
                    ]);
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl NodeAgentStandIn {
    /// Pods of Jobs run to completion: those named `*-fails` exit 1, the others 0.
    fn finish_job_pods(&self, controller: &Controller) {
        let pods = json(controller, &["get", "pods", "-l", "batch.kubernetes.io/job-name"]);
        for pod in pods["items"].as_array().cloned().unwrap_or_default() {
            let name = pod["metadata"]["name"].as_str().unwrap_or_default();
            let job = pod["metadata"]["labels"]["batch.kubernetes.io/job-name"].as_str().unwrap_or_default();
            if pod["spec"]["nodeName"].is_null()
                || pod["status"]["phase"].as_str().is_some_and(|phase| phase != "Pending")
            {
                continue;
            }
            let (phase, code) = if job.ends_with("-fails") { ("Failed", 1) } else { ("Succeeded", 0) };
            let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
            let status = serde_json::json!({"status": {"phase": phase, "containerStatuses": [{"name": "job", "image": "busybox:1.36",
                "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": code, "startedAt": now, "finishedAt": now}}}]}});
            let _ = controller.kubectl_output(&[
                "patch",
                "pod",
                name,
                "--subresource=status",
                "--type=merge",
                "-p",
                &status.to_string(),
            ]);
        }
    }
}

const DEPLOYMENT: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 4
  selector: {matchLabels: {app: web}}
  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 1}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: 'busybox:1.36', resources: {requests: {cpu: 100m}}}]}
";

#[test]
fn deployments_roll_out_scale_and_roll_back_on_scheduled_pods() {
    let controller = Controller::start().expect("controller starts");
    register_nodes(&controller, &["node-a", "node-b"]);
    // Node IPAM: each node gets its own /24 of the cluster CIDR.
    wait_for("pod CIDRs", Duration::from_secs(20), || {
        let nodes = json(&controller, &["get", "nodes"]);
        let cidrs: BTreeSet<String> = nodes["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|node| node["spec"]["podCIDR"].as_str().map(String::from))
            .collect();
        cidrs.len() == 2 && cidrs.iter().all(|cidr| cidr.starts_with("10.244.") && cidr.ends_with(".0/24"))
    });

    let stand_in = NodeAgentStandIn::new();
    std::thread::scope(|scope| {
        scope.spawn(|| stand_in.run(&controller));
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            controller.kubectl_stdin(&["apply", "-f", "-"], DEPLOYMENT).unwrap();
            controller.kubectl(&["rollout", "status", "deployment/web", "--timeout=90s"]).unwrap();

            // Every pod was placed on a registered node, spread over both.
            let pods = json(&controller, &["get", "pods", "-l", "app=web"]);
            let nodes: HashSet<&str> =
                pods["items"].as_array().unwrap().iter().filter_map(|pod| pod["spec"]["nodeName"].as_str()).collect();
            assert_eq!(nodes, HashSet::from(["node-a", "node-b"]), "{pods}");
            let events = controller.kubectl(&["get", "events", "--field-selector", "reason=Scheduled"]).unwrap();
            assert!(events.contains("Successfully assigned default/web-"), "{events}");

            // A new template rolls out within maxSurge and maxUnavailable.
            stand_in.most_pods.store(0, Ordering::Relaxed);
            stand_in.watching_rollout.store(true, Ordering::Relaxed);
            controller.kubectl(&["set", "image", "deployment/web", "web=busybox:1.37"]).unwrap();
            controller.kubectl(&["rollout", "status", "deployment/web", "--timeout=90s"]).unwrap();
            stand_in.watching_rollout.store(false, Ordering::Relaxed);
            let most = stand_in.most_pods.load(Ordering::Relaxed);
            let fewest_ready = stand_in.fewest_ready.load(Ordering::Relaxed);
            assert!(most <= 5, "at most replicas + maxSurge = 5 pods at once, saw {most}");
            assert!(fewest_ready >= 3, "at least replicas - maxUnavailable = 3 Ready, saw {fewest_ready}");

            let deployment = json(&controller, &["get", "deployment", "web"]);
            assert_eq!(deployment["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "2");
            let conditions = deployment["status"]["conditions"].as_array().unwrap();
            let progressing = conditions.iter().find(|c| c["type"] == "Progressing").unwrap();
            assert_eq!(progressing["reason"], "NewReplicaSetAvailable", "{deployment}");
            assert_eq!(deployment["status"]["updatedReplicas"], 4);
            let history = controller.kubectl(&["rollout", "history", "deployment/web"]).unwrap();
            assert!(history.contains("1 ") && history.contains("2 "), "{history}");

            // Undo brings the first template back as revision 3.
            controller.kubectl(&["rollout", "undo", "deployment/web"]).unwrap();
            controller.kubectl(&["rollout", "status", "deployment/web", "--timeout=90s"]).unwrap();
            let deployment = json(&controller, &["get", "deployment", "web"]);
            assert_eq!(deployment["spec"]["template"]["spec"]["containers"][0]["image"], "busybox:1.36");
            assert_eq!(deployment["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "3");
            let replica_sets = json(&controller, &["get", "replicasets", "-l", "app=web"]);
            assert_eq!(replica_sets["items"].as_array().unwrap().len(), 2, "one ReplicaSet per template");

            // Scale up and down.
            controller.kubectl(&["scale", "deployment/web", "--replicas=6"]).unwrap();
            controller.kubectl(&["rollout", "status", "deployment/web", "--timeout=60s"]).unwrap();
            wait_for("6 live pods", Duration::from_secs(30), || live_pods(&controller) == 6);
            controller.kubectl(&["scale", "deployment/web", "--replicas=2"]).unwrap();
            wait_for("2 live pods", Duration::from_secs(30), || live_pods(&controller) == 2);

            // A Job of three completions, two at a time, completes; `kubectl wait` sees it.
            controller.kubectl(&["create", "job", "batch", "--image=busybox:1.36", "--", "true"]).unwrap();
            controller
                .kubectl(&["patch", "job", "batch", "--type=merge", "-p", r#"{"spec":{"suspend":false}}"#])
                .unwrap();
            let three = "apiVersion: batch/v1\nkind: Job\nmetadata: {name: three}\nspec:\n  completions: 3\n  \
                parallelism: 2\n  template:\n    spec:\n      restartPolicy: Never\n      \
                containers: [{name: job, image: 'busybox:1.36', command: ['true']}]\n";
            controller.kubectl_stdin(&["apply", "-f", "-"], three).unwrap();
            controller
                .kubectl(&["wait", "--for=condition=complete", "job/batch", "job/three", "--timeout=60s"])
                .unwrap();
            let job = json(&controller, &["get", "job", "three"]);
            assert_eq!(job["status"]["succeeded"], 3, "{job}");
            let types: Vec<&str> =
                job["status"]["conditions"].as_array().unwrap().iter().filter_map(|c| c["type"].as_str()).collect();
            assert!(types.contains(&"SuccessCriteriaMet") && types.contains(&"Complete"), "{job}");
            // Counted pods lose the tracking finalizer.
            let pods = json(&controller, &["get", "pods", "-l", "batch.kubernetes.io/job-name=three"]);
            for pod in pods["items"].as_array().unwrap() {
                assert!(pod["metadata"]["finalizers"].as_array().is_none_or(|f| f.is_empty()), "{pod}");
            }

            // A Job whose pods keep failing stops at its backoffLimit and is Failed.
            let fails = "apiVersion: batch/v1\nkind: Job\nmetadata: {name: always-fails}\nspec:\n  backoffLimit: 1\n  \
                template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: job, image: 'busybox:1.36'}]\n";
            controller.kubectl_stdin(&["apply", "-f", "-"], fails).unwrap();
            controller.kubectl(&["wait", "--for=condition=failed", "job/always-fails", "--timeout=60s"]).unwrap();
            let job = json(&controller, &["get", "job", "always-fails"]);
            assert_eq!(job["status"]["failed"], 2, "{job}");
            let failed =
                job["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Failed").cloned();
            assert_eq!(failed.map(|c| c["reason"].clone()), Some("BackoffLimitExceeded".into()));
        }));
        stand_in.running.store(false, Ordering::Relaxed);
        if let Err(panic) = result {
            let state = controller.kubectl(&["get", "deployments,replicasets,pods", "-o", "wide"]).unwrap_or_default();
            eprintln!("cluster:\n{state}\ncontroller log:\n{}", controller.log());
            std::panic::resume_unwind(panic);
        }
    });
}

fn live_pods(controller: &Controller) -> usize {
    let pods = json(controller, &["get", "pods", "-l", "app=web"]);
    pods["items"].as_array().unwrap().iter().filter(|pod| pod["metadata"]["deletionTimestamp"].is_null()).count()
}

const REPLICATION_CONTROLLER: &str = "\
apiVersion: v1
kind: ReplicationController
metadata: {name: web}
spec:
  replicas: 3
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: 'busybox:1.36'}]}
";

/// The live `app=web` pods, by name, with the kind of their controller ("" for none).
fn web_pod_owners(controller: &Controller) -> BTreeMap<String, String> {
    let pods = json(controller, &["get", "pods", "-l", "app=web"]);
    pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|pod| pod["metadata"]["deletionTimestamp"].is_null())
        .map(|pod| {
            let owner = pod["metadata"]["ownerReferences"]
                .as_array()
                .and_then(|owners| owners.iter().find(|owner| owner["controller"] == true))
                .map_or("", |owner| owner["kind"].as_str().unwrap_or_default());
            (pod["metadata"]["name"].as_str().unwrap().to_string(), owner.to_string())
        })
        .collect()
}

#[test]
fn replication_controllers_adopt_create_scale_and_release_pods() {
    let controller = Controller::start().expect("controller starts");
    register_nodes(&controller, &["node-a"]);
    let stand_in = NodeAgentStandIn::new();
    std::thread::scope(|scope| {
        scope.spawn(|| stand_in.run(&controller));
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            // A bare pod with the template's labels is adopted: two more make three.
            controller.kubectl(&["run", "orphan", "--image=busybox:1.36", "--labels=app=web"]).unwrap();
            controller.kubectl_stdin(&["apply", "-f", "-"], REPLICATION_CONTROLLER).unwrap();
            wait_for("three ready replicas", Duration::from_secs(60), || {
                json(&controller, &["get", "rc", "web"])["status"]["readyReplicas"] == 3
            });
            let owners = web_pod_owners(&controller);
            assert_eq!(owners.len(), 3, "{owners:?}");
            assert_eq!(owners.get("orphan").map(String::as_str), Some("ReplicationController"), "{owners:?}");
            assert!(owners.values().all(|kind| kind == "ReplicationController"), "{owners:?}");
            let rc = json(&controller, &["get", "rc", "web"]);
            assert_eq!(rc["status"]["availableReplicas"], 3, "{rc}");
            assert_eq!(rc["status"]["fullyLabeledReplicas"], 3, "{rc}");
            assert_eq!(rc["status"]["observedGeneration"], rc["metadata"]["generation"], "{rc}");
            let table = controller.kubectl(&["get", "rc", "web", "--no-headers"]).unwrap();
            assert!(table.split_whitespace().take(4).eq(["web", "3", "3", "3"]), "{table}");

            // Scale through the scale subresource, as kubectl does.
            controller.kubectl(&["scale", "rc", "web", "--replicas=1"]).unwrap();
            wait_for("one replica", Duration::from_secs(30), || web_pod_owners(&controller).len() == 1);

            // A pod relabelled out of the selector is released, and a new one takes its place.
            let kept = web_pod_owners(&controller).into_keys().next().unwrap();
            controller.kubectl(&["label", "pod", &kept, "app=elsewhere", "--overwrite"]).unwrap();
            wait_for("the released pod without a controller", Duration::from_secs(30), || {
                json(&controller, &["get", "pod", &kept])["metadata"]["ownerReferences"]
                    .as_array()
                    .is_none_or(|owners| owners.is_empty())
            });
            wait_for("a replacement", Duration::from_secs(30), || {
                let owners = web_pod_owners(&controller);
                owners.len() == 1 && !owners.contains_key(&kept)
            });
            let described = controller.kubectl(&["describe", "rc", "web"]).unwrap();
            assert!(described.contains("SuccessfulCreate") && described.contains("SuccessfulDelete"), "{described}");
        }));
        stand_in.running.store(false, Ordering::Relaxed);
        if let Err(panic) = result {
            let state = controller.kubectl(&["get", "rc,pods", "-o", "wide"]).unwrap_or_default();
            eprintln!("cluster:\n{state}\ncontroller log:\n{}", controller.log());
            std::panic::resume_unwind(panic);
        }
    });
}

/// A pod naming `class` (none when empty): the error kubectl printed, or the pod's priority fields.
fn create_pod_of_class(controller: &Controller, name: &str, class: &str) -> Result<Value, String> {
    let class_line = if class.is_empty() { String::new() } else { format!("  priorityClassName: {class}\n") };
    let pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n{class_line}  \
         containers: [{{name: c, image: 'busybox:1.36'}}]\n"
    );
    controller.kubectl_stdin(&["create", "-f", "-"], &pod).map_err(|error| error.to_string())?;
    let spec = json(controller, &["get", "pod", name])["spec"].clone();
    Ok(serde_json::json!({"priority": spec["priority"], "preemptionPolicy": spec["preemptionPolicy"],
        "priorityClassName": spec["priorityClassName"]}))
}

#[test]
fn pods_take_their_priority_from_priority_classes() {
    let controller = Controller::start().expect("controller starts");
    let classes = controller.kubectl(&["get", "priorityclasses", "--no-headers"]).unwrap();
    assert!(classes.contains("system-cluster-critical") && classes.contains("2000000000"), "{classes}");
    assert!(classes.contains("system-node-critical") && classes.contains("2000001000"), "{classes}");

    controller.kubectl(&["create", "priorityclass", "high", "--value=1000", "--preemption-policy=Never"]).unwrap();
    assert_eq!(
        create_pod_of_class(&controller, "important", "high").unwrap(),
        serde_json::json!({"priority": 1000, "preemptionPolicy": "Never", "priorityClassName": "high"})
    );
    assert_eq!(
        create_pod_of_class(&controller, "critical", "system-node-critical").unwrap()["priority"],
        2_000_001_000
    );
    assert_eq!(create_pod_of_class(&controller, "plain", "").unwrap()["priority"], 0);
    let refused = create_pod_of_class(&controller, "lost", "nope").unwrap_err();
    assert!(refused.contains(r#"pods "lost" is forbidden: no PriorityClass with name nope was found"#), "{refused}");

    // A default class is given to pods that name none; there can be only one.
    controller.kubectl(&["create", "priorityclass", "low", "--value=10", "--global-default"]).unwrap();
    assert_eq!(
        create_pod_of_class(&controller, "defaulted", "").unwrap(),
        serde_json::json!({"priority": 10, "preemptionPolicy": "PreemptLowerPriority", "priorityClassName": "low"})
    );
    let second = controller.kubectl(&["create", "priorityclass", "lower", "--value=5", "--global-default"]);
    let second = second.unwrap_err().to_string();
    assert!(second.contains("PriorityClass low is already marked as default. Only one default can exist"), "{second}");
    controller.kubectl(&["create", "priorityclass", "lower", "--value=5"]).unwrap();
    let second = controller.kubectl(&["patch", "priorityclass", "lower", "-p", r#"{"globalDefault":true}"#]);
    let second = second.unwrap_err().to_string();
    assert!(second.contains("PriorityClass low is already marked as default. Only one default can exist"), "{second}");

    // The `system-` names are the built-in classes'; values above 10^9 are theirs too; a value never changes.
    let reserved = controller.kubectl(&["create", "priorityclass", "system-mine", "--value=10"]).unwrap_err();
    assert!(
        reserved.to_string().contains(
            "metadata.name: Forbidden: priority class names with 'system-' prefix are reserved for system use only. \
             error: system-mine is not a known system priority class"
        ),
        "{reserved}"
    );
    let too_high = controller.kubectl(&["create", "priorityclass", "huge", "--value=1000000001"]).unwrap_err();
    assert!(
        too_high
            .to_string()
            .contains("value: Forbidden: maximum allowed value of a user defined priority is 1000000000"),
        "{too_high}"
    );
    let changed = controller.kubectl(&["patch", "priorityclass", "high", "-p", r#"{"value":5}"#]).unwrap_err();
    assert!(changed.to_string().contains("value: Forbidden: may not be changed in an update."), "{changed}");
    let policy =
        controller.kubectl(&["patch", "priorityclass", "high", "-p", r#"{"preemptionPolicy":"PreemptLowerPriority"}"#]);
    assert!(policy
        .unwrap_err()
        .to_string()
        .contains("preemptionPolicy: Invalid value: \"PreemptLowerPriority\": field is immutable"));
    let description = controller.kubectl(&["patch", "priorityclass", "high", "-p", r#"{"description":"for the few"}"#]);
    assert!(description.is_ok(), "other fields may change: {description:?}");
}

#[test]
fn a_pod_that_fits_no_node_stays_pending_with_a_reason() {
    let controller = Controller::start().expect("controller starts");
    register_nodes(&controller, &["small"]);
    controller.kubectl(&["taint", "node", "small", "dedicated=gpu:NoSchedule"]).unwrap();
    controller
        .kubectl(&["run", "big", "--image=busybox:1.36", "--overrides",
            r#"{"spec":{"tolerations":[{"key":"dedicated","operator":"Exists"}],"containers":[{"name":"big","image":"busybox:1.36","resources":{"requests":{"cpu":"64"}}}]}}"#])
        .unwrap();
    controller.kubectl(&["run", "plain", "--image=busybox:1.36"]).unwrap();
    wait_for("FailedScheduling events", Duration::from_secs(20), || {
        let events = controller.kubectl(&["get", "events", "--field-selector", "reason=FailedScheduling"]).unwrap();
        events.contains("0/1 nodes are available: 1 Insufficient cpu.")
            && events.contains("0/1 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}.")
    });
    let pod = json(&controller, &["get", "pod", "big"]);
    assert!(pod["spec"]["nodeName"].is_null());
    let scheduled =
        pod["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "PodScheduled").cloned();
    assert_eq!(scheduled.as_ref().map(|c| c["reason"].clone()), Some("Unschedulable".into()), "{pod}");

    // Room appears: the waiting pod is placed without being created again.
    register_nodes(&controller, &["roomy"]);
    controller.kubectl(&["label", "node", "roomy", "size=big"]).unwrap();
    let capacity = r#"{"status":{"capacity":{"cpu":"128","memory":"8Gi","pods":"110"},"allocatable":{"cpu":"128","memory":"8Gi","pods":"110"}}}"#;
    controller.kubectl(&["patch", "node", "roomy", "--subresource=status", "--type=merge", "-p", capacity]).unwrap();
    wait_for("both pods on roomy", Duration::from_secs(30), || {
        let nodes: Vec<String> = ["big", "plain"]
            .iter()
            .map(|name| json(&controller, &["get", "pod", name])["spec"]["nodeName"].as_str().unwrap_or("").to_string())
            .collect();
        nodes == ["roomy", "roomy"]
    });
}

/// Three nodes in zone-a, one in zone-b: spreading over nodes alone would put three of four pods in zone-a, and
/// a pod placed without regard to its affinity would rarely land on the one node of zone-b.
const ZONES: [(&str, &str); 4] = [("a1", "zone-a"), ("a2", "zone-a"), ("a3", "zone-a"), ("b1", "zone-b")];

const ZONE_SPREAD: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata: {name: spread}
spec:
  replicas: 4
  selector: {matchLabels: {app: spread}}
  template:
    metadata: {labels: {app: spread}}
    spec:
      topologySpreadConstraints:
      - {maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: DoNotSchedule,
         labelSelector: {matchLabels: {app: spread}}}
      containers: [{name: c, image: 'busybox:1.36'}]
";

const ONE_PER_NODE: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata: {name: solo}
spec:
  replicas: 5
  selector: {matchLabels: {app: solo}}
  template:
    metadata: {labels: {app: solo}}
    spec:
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - {labelSelector: {matchLabels: {app: solo}}, topologyKey: kubernetes.io/hostname}
      containers: [{name: c, image: 'busybox:1.36'}]
";

const FOLLOWERS: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata: {name: follower}
spec:
  replicas: 3
  selector: {matchLabels: {app: follower}}
  template:
    metadata: {labels: {app: follower}}
    spec:
      affinity:
        podAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - {labelSelector: {matchLabels: {app: leader}}, topologyKey: topology.kubernetes.io/zone}
      containers: [{name: c, image: 'busybox:1.36'}]
";

/// The nodes the pods labelled `app=APP` are bound to, and how many of those pods are not bound.
fn placement(controller: &Controller, app: &str) -> (Vec<String>, usize) {
    let pods = json(controller, &["get", "pods", "-l", &format!("app={app}")]);
    let items = pods["items"].as_array().cloned().unwrap_or_default();
    let nodes: Vec<String> =
        items.iter().filter_map(|pod| pod["spec"]["nodeName"].as_str().map(str::to_string)).collect();
    let pending = items.len() - nodes.len();
    (nodes, pending)
}

#[test]
fn pods_spread_over_zones_and_keep_or_seek_each_others_company() {
    let controller = Controller::start().expect("controller starts");
    let names: Vec<&str> = ZONES.iter().map(|(node, _)| *node).collect();
    register_nodes(&controller, &names);
    for (node, zone) in ZONES {
        controller.kubectl(&["label", "node", node, &format!("topology.kubernetes.io/zone={zone}")]).unwrap();
    }
    let zone_of: BTreeMap<&str, &str> = ZONES.into_iter().collect();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // A zone spread constraint with maxSkew 1 puts two pods in each zone.
        controller.kubectl_stdin(&["apply", "-f", "-"], ZONE_SPREAD).unwrap();
        wait_for("4 spread pods bound", Duration::from_secs(30), || {
            let (nodes, pending) = placement(&controller, "spread");
            nodes.len() == 4 && pending == 0
        });
        let mut per_zone: BTreeMap<&str, usize> = BTreeMap::new();
        for node in placement(&controller, "spread").0 {
            *per_zone.entry(zone_of[node.as_str()]).or_insert(0) += 1;
        }
        assert_eq!(per_zone, BTreeMap::from([("zone-a", 2), ("zone-b", 2)]));

        // Required anti-affinity against its own pods on hostnames: one pod per node, the fifth waits, saying why.
        controller.kubectl_stdin(&["apply", "-f", "-"], ONE_PER_NODE).unwrap();
        wait_for("4 solo pods bound and 1 pending", Duration::from_secs(30), || {
            let (nodes, pending) = placement(&controller, "solo");
            nodes.len() == 4 && pending == 1
        });
        wait_for("the FailedScheduling event", Duration::from_secs(20), || {
            let events = controller.kubectl(&["get", "events", "--field-selector", "reason=FailedScheduling"]).unwrap();
            events.contains("0/4 nodes are available: 4 node(s) didn't match pod anti-affinity rules.")
        });
        let nodes: HashSet<String> = placement(&controller, "solo").0.into_iter().collect();
        assert_eq!(nodes.len(), 4, "one solo pod per node: {nodes:?}");
        let pods = json(&controller, &["get", "pods", "-l", "app=solo"]);
        let waiting = pods["items"].as_array().unwrap().iter().find(|pod| pod["spec"]["nodeName"].is_null()).unwrap();
        let scheduled =
            waiting["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "PodScheduled");
        assert_eq!(scheduled.map(|c| c["reason"].clone()), Some("Unschedulable".into()), "{waiting}");

        // Required affinity to a pod in zone-b brings every follower to zone-b's one node.
        controller
            .kubectl(&[
                "run",
                "leader",
                "--image=busybox:1.36",
                "--labels=app=leader",
                "--overrides",
                r#"{"spec":{"nodeSelector":{"topology.kubernetes.io/zone":"zone-b"}}}"#,
            ])
            .unwrap();
        wait_for("the leader bound", Duration::from_secs(30), || placement(&controller, "leader").0 == ["b1"]);
        controller.kubectl_stdin(&["apply", "-f", "-"], FOLLOWERS).unwrap();
        wait_for("3 followers bound", Duration::from_secs(30), || {
            let (nodes, pending) = placement(&controller, "follower");
            nodes.len() == 3 && pending == 0
        });
        assert_eq!(placement(&controller, "follower").0, ["b1", "b1", "b1"]);
    }));
    if let Err(panic) = result {
        let state = controller.kubectl(&["get", "pods,events", "-o", "wide"]).unwrap_or_default();
        eprintln!("cluster:\n{state}\ncontroller log:\n{}", controller.log());
        std::panic::resume_unwind(panic);
    }
}

fn two_controllers_act_once(kind: &str) {
    let Some(database) = ServerDatabase::create(kind) else { return };
    let arguments = vec!["--datastore".to_string(), database.url.clone()];
    let mut first = Controller::start_with(arguments.clone()).expect("the first controller starts");
    let second = Controller::start_replica_of(&first, arguments).expect("the second controller starts");
    register_nodes(&first, &["shared-node"]);
    let replica_set = "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {name: once}\nspec:\n  replicas: 3\n  \
        selector: {matchLabels: {app: once}}\n  template:\n    metadata: {labels: {app: once}}\n    \
        spec: {containers: [{name: c, image: 'busybox:1.36'}]}\n";
    second.kubectl_stdin(&["apply", "-f", "-"], replica_set).unwrap();
    let count = |controller: &Controller| {
        json(controller, &["get", "pods", "-l", "app=once"])["items"].as_array().map_or(0, Vec::len)
    };
    wait_for("3 pods", Duration::from_secs(30), || count(&second) == 3);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(count(&second), 3, "two replicas must not both create pods");
    let holder = |controller: &Controller, lease: &str| {
        json(controller, &["get", "lease", "-n", "kube-system", lease])["spec"]["holderIdentity"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let leader = holder(&second, "kube-controller-manager");
    assert!(!leader.is_empty());
    assert!(!holder(&second, "kube-scheduler").is_empty());

    // The leader goes away without releasing its Lease: the other replica takes over after it expires.
    let first_port = first.address().port().to_string();
    if leader.ends_with(&format!(":{first_port}")) {
        first.kill().unwrap();
        second.kubectl(&["scale", "replicaset/once", "--replicas=5"]).unwrap();
        wait_for("the other replica to take over", Duration::from_secs(60), || count(&second) == 5);
        assert_ne!(holder(&second, "kube-controller-manager"), leader);
    } else {
        // The second is the leader: kill it (Drop sends SIGKILL) and let the first take over.
        drop(second);
        first.kubectl(&["scale", "replicaset/once", "--replicas=5"]).unwrap();
        wait_for("the other replica to take over", Duration::from_secs(60), || count(&first) == 5);
    }
}

#[test]
fn two_controllers_on_postgres_act_once() {
    two_controllers_act_once("postgres");
}
