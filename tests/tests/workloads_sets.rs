//! DaemonSets, StatefulSets and CronJobs driven with kubectl against a real `kaasd controller`: the controllers
//! create, place, roll out and roll back their pods on Nodes the test registers, and kubectl's `rollout status`,
//! `rollout history`, `rollout undo`, `scale` and `wait` see them as on upstream.
//!
//! No worker runs pods here: `NodeAgentStandIn` answers for the nodes through the API, as their node agent would
//! (scheduled pods become Running and Ready, terminating pods are deleted for good).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kaasd_e2e::controller::Controller;
use serde_json::Value;

#[path = "common/registered_nodes.rs"]
mod registered_nodes;
use registered_nodes::{is_ready, json, register_nodes, wait_for};

fn items(controller: &Controller, arguments: &[&str]) -> Vec<Value> {
    json(controller, arguments)["items"].as_array().cloned().unwrap_or_default()
}

fn live(pods: &[Value]) -> Vec<&Value> {
    pods.iter().filter(|pod| pod["metadata"]["deletionTimestamp"].is_null()).collect()
}

/// Answers for the registered nodes through the API while `running`: scheduled pods become Running and Ready
/// (unless their name is in `held`), terminating pods are deleted for good. Records the order in which pods were
/// first made Ready.
struct NodeAgentStandIn {
    running: AtomicBool,
    held: Mutex<Vec<String>>,
    ready_order: Mutex<Vec<String>>,
    /// Nodes whose agent is gone: their Leases are not renewed and their pods not touched.
    lost: Mutex<Vec<String>>,
}

impl NodeAgentStandIn {
    fn new() -> NodeAgentStandIn {
        NodeAgentStandIn {
            running: AtomicBool::new(true),
            held: Mutex::default(),
            ready_order: Mutex::default(),
            lost: Mutex::default(),
        }
    }

    fn run(&self, controller: &Controller) {
        let mut lease_renewed = Instant::now() - Duration::from_secs(60);
        while self.running.load(Ordering::Relaxed) {
            if lease_renewed.elapsed() > Duration::from_secs(2) {
                self.renew_leases(controller);
                lease_renewed = Instant::now();
            }
            for pod in items(controller, &["get", "pods"]) {
                let name = pod["metadata"]["name"].as_str().unwrap_or_default();
                let node = pod["spec"]["nodeName"].as_str().unwrap_or_default();
                if self.lost.lock().unwrap().iter().any(|lost| lost == node) {
                    continue;
                }
                if !pod["metadata"]["deletionTimestamp"].is_null() {
                    let _ = controller.kubectl_output(&[
                        "delete",
                        "pod",
                        name,
                        "--grace-period=0",
                        "--force",
                        "--wait=false",
                    ]);
                } else if pod["metadata"]["labels"]["batch.kubernetes.io/job-name"].is_string() {
                    finish_job_pod(controller, &pod);
                } else if pod["spec"]["nodeName"].is_string()
                    && !is_ready(&pod)
                    && !self.held.lock().unwrap().iter().any(|held| held == name)
                    && pod["status"]["phase"].as_str().is_none_or(|phase| phase == "Pending" || phase == "Running")
                {
                    let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
                    let status = serde_json::json!({"status": {"phase": "Running", "conditions": [
                        {"type": "Ready", "status": "True", "lastTransitionTime": now}]}});
                    // Recorded before the patch is sent: once the API has it, `kubectl rollout status` may return
                    // (and the test read the order) before this kubectl process has even exited.
                    self.ready_order.lock().unwrap().push(name.to_string());
                    let patched = controller.kubectl_output(&[
                        "patch",
                        "pod",
                        name,
                        "--subresource=status",
                        "--type=merge",
                        "-p",
                        &status.to_string(),
                    ]);
                    if !patched.is_ok_and(|output| output.status.success()) {
                        let mut order = self.ready_order.lock().unwrap();
                        if order.last().is_some_and(|last| last == name) {
                            order.pop();
                        }
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl NodeAgentStandIn {
    /// Renews the Lease in kube-node-lease of every node not lost, as the node agent does every 10 s.
    fn renew_leases(&self, controller: &Controller) {
        let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string();
        let lost = self.lost.lock().unwrap().clone();
        let leases: Vec<String> = items(controller, &["get", "nodes"])
            .iter()
            .filter_map(|node| node["metadata"]["name"].as_str())
            .filter(|name| !lost.iter().any(|lost| lost == name))
            .map(|name| {
                format!(
                    "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata: {{name: {name}, namespace: kube-node-lease}}\n\
                     spec: {{holderIdentity: {name}, leaseDurationSeconds: 40, renewTime: '{now}'}}\n"
                )
            })
            .collect();
        if !leases.is_empty() {
            let _ = controller.kubectl_stdin(&["apply", "-f", "-"], &leases.join("---\n"));
        }
    }
}

/// A scheduled pod of a Job runs to completion, exit code 0.
fn finish_job_pod(controller: &Controller, pod: &Value) {
    if pod["spec"]["nodeName"].is_null() || pod["status"]["phase"].as_str().is_some_and(|phase| phase != "Pending") {
        return;
    }
    let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let status = serde_json::json!({"status": {"phase": "Succeeded", "containerStatuses": [{"name": "job",
        "image": "busybox:1.36", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": 0, "startedAt": now, "finishedAt": now}}}]}});
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
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

/// Runs `body` with a stand-in node agent; on failure prints the cluster and the controller's log.
fn with_stand_in(controller: &Controller, body: impl FnOnce(&NodeAgentStandIn)) {
    let stand_in = NodeAgentStandIn::new();
    std::thread::scope(|scope| {
        scope.spawn(|| stand_in.run(controller));
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&stand_in)));
        stand_in.running.store(false, Ordering::Relaxed);
        if let Err(panic) = result {
            let state = controller
                .kubectl(&["get", "daemonsets,statefulsets,cronjobs,jobs,controllerrevisions,pods,pvc", "-o", "wide"])
                .unwrap_or_default();
            eprintln!("cluster:\n{state}\ncontroller log:\n{}", controller.log());
            std::panic::resume_unwind(panic);
        }
    });
}

const DAEMON_SET: &str = "\
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  updateStrategy: {type: RollingUpdate, rollingUpdate: {maxUnavailable: 1}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      nodeSelector: {role: edge}
      containers: [{name: agent, image: 'busybox:1.36'}]
";

/// Node name → image of the live daemon pods.
fn daemon_pods(controller: &Controller) -> BTreeMap<String, String> {
    let pods = items(controller, &["get", "pods", "-l", "app=agent"]);
    live(&pods)
        .iter()
        .map(|pod| {
            let node = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
                ["nodeSelectorTerms"][0]["matchFields"][0]["values"][0]
                .as_str()
                .unwrap_or_default();
            (node.to_string(), pod["spec"]["containers"][0]["image"].as_str().unwrap_or_default().to_string())
        })
        .collect()
}

#[test]
fn daemon_sets_follow_nodes_roll_out_and_roll_back() {
    let controller = Controller::start().expect("controller starts");
    register_nodes(&controller, &["edge-a", "edge-b", "core"]);
    controller.kubectl(&["label", "node", "edge-a", "edge-b", "role=edge"]).unwrap();
    with_stand_in(&controller, |_| {
        controller.kubectl_stdin(&["apply", "-f", "-"], DAEMON_SET).unwrap();
        controller.kubectl(&["rollout", "status", "ds/agent", "--timeout=60s"]).unwrap();
        let pods = items(&controller, &["get", "pods", "-l", "app=agent"]);
        assert_eq!(pods.len(), 2, "one pod per edge node");
        for pod in &pods {
            assert!(pod["metadata"]["labels"]["controller-revision-hash"].is_string(), "{pod}");
            let node = pod["spec"]["nodeName"].as_str().unwrap();
            assert!(node.starts_with("edge-"), "placed by the scheduler on its node: {pod}");
            let tolerations = pod["spec"]["tolerations"].as_array().unwrap();
            assert!(
                tolerations.iter().any(|t| t["key"] == "node.kubernetes.io/unreachable"
                    && t["effect"] == "NoExecute"
                    && t["tolerationSeconds"].is_null()),
                "{pod}"
            );
        }
        let ds = json(&controller, &["get", "ds", "agent"]);
        assert_eq!(ds["status"]["desiredNumberScheduled"], 2, "{ds}");
        assert_eq!(ds["status"]["numberReady"], 2, "{ds}");
        assert_eq!(ds["status"]["observedGeneration"], ds["metadata"]["generation"], "{ds}");

        // A node that starts to match gets a pod; one that gets a NoExecute taint loses it.
        controller.kubectl(&["label", "node", "core", "role=edge"]).unwrap();
        wait_for("a pod on core", Duration::from_secs(30), || daemon_pods(&controller).contains_key("core"));
        controller.kubectl(&["taint", "node", "core", "dedicated=infra:NoExecute"]).unwrap();
        wait_for("the pod on core to go", Duration::from_secs(30), || !daemon_pods(&controller).contains_key("core"));
        controller.kubectl(&["rollout", "status", "ds/agent", "--timeout=60s"]).unwrap();

        // A new template rolls out node by node; history and undo work through ControllerRevisions.
        controller.kubectl(&["set", "image", "ds/agent", "agent=busybox:1.37"]).unwrap();
        controller.kubectl(&["rollout", "status", "ds/agent", "--timeout=60s"]).unwrap();
        wait_for("every pod updated", Duration::from_secs(30), || {
            daemon_pods(&controller).values().filter(|image| *image == "busybox:1.37").count() == 2
        });
        let history = controller.kubectl(&["rollout", "history", "ds/agent"]).unwrap();
        assert!(history.contains("1 ") && history.contains("2 "), "{history}");
        let revisions = items(&controller, &["get", "controllerrevisions", "-l", "app=agent"]);
        assert_eq!(revisions.len(), 2, "{revisions:?}");
        controller.kubectl(&["rollout", "undo", "ds/agent"]).unwrap();
        controller.kubectl(&["rollout", "status", "ds/agent", "--timeout=60s"]).unwrap();
        wait_for("every pod rolled back", Duration::from_secs(30), || {
            daemon_pods(&controller).values().filter(|image| *image == "busybox:1.36").count() == 2
        });
        let revisions = items(&controller, &["get", "controllerrevisions", "-l", "app=agent"]);
        let numbers: Vec<i64> = revisions.iter().filter_map(|revision| revision["revision"].as_i64()).collect();
        assert_eq!(revisions.len(), 2, "the first template's revision is reused: {revisions:?}");
        assert!(numbers.contains(&3) && numbers.contains(&2), "{numbers:?}");

        // A daemon pod that fails is replaced.
        let on_edge_b =
            items(&controller, &["get", "pods", "-l", "app=agent", "--field-selector=spec.nodeName=edge-b"]);
        let failed = on_edge_b[0]["metadata"]["name"].as_str().unwrap().to_string();
        let status = r#"{"status":{"phase":"Failed","conditions":[{"type":"Ready","status":"False"}]}}"#;
        controller.kubectl(&["patch", "pod", &failed, "--subresource=status", "--type=merge", "-p", status]).unwrap();
        wait_for("a replacement on edge-b", Duration::from_secs(30), || {
            let pods = items(&controller, &["get", "pods", "-l", "app=agent", "--field-selector=spec.nodeName=edge-b"]);
            pods.iter().any(|pod| pod["metadata"]["name"] != failed.as_str() && is_ready(pod))
        });
        let events = controller.kubectl(&["get", "events", "--field-selector", "reason=FailedDaemonPod"]).unwrap();
        assert!(events.contains(&format!("Found failed daemon pod default/{failed} on node edge-b")), "{events}");
        controller.kubectl(&["rollout", "status", "ds/agent", "--timeout=60s"]).unwrap();

        // OnDelete: a new template waits until a pod is deleted by hand.
        let on_delete = r#"{"spec":{"updateStrategy":{"type":"OnDelete","rollingUpdate":null}}}"#;
        controller.kubectl(&["patch", "ds", "agent", "--type=merge", "-p", on_delete]).unwrap();
        controller.kubectl(&["set", "image", "ds/agent", "agent=busybox:1.38"]).unwrap();
        wait_for("the new generation observed", Duration::from_secs(30), || {
            let ds = json(&controller, &["get", "ds", "agent"]);
            ds["status"]["observedGeneration"] == ds["metadata"]["generation"]
        });
        std::thread::sleep(Duration::from_secs(2));
        assert!(daemon_pods(&controller).values().all(|image| image == "busybox:1.36"));
        let on_edge_a =
            items(&controller, &["get", "pods", "-l", "app=agent", "--field-selector=spec.nodeName=edge-a"]);
        let name = on_edge_a[0]["metadata"]["name"].as_str().unwrap();
        controller.kubectl(&["delete", "pod", name, "--wait=false"]).unwrap();
        wait_for("edge-a's replacement", Duration::from_secs(30), || {
            daemon_pods(&controller).get("edge-a").is_some_and(|image| image == "busybox:1.38")
        });
        assert_eq!(daemon_pods(&controller).get("edge-b").map(String::as_str), Some("busybox:1.36"));
    });
}

const STATEFUL_SET: &str = "\
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{port: 5432}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 3
  selector: {matchLabels: {app: db}}
  persistentVolumeClaimRetentionPolicy: {whenDeleted: Retain, whenScaled: Delete}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: db, image: 'busybox:1.36'}]}
  volumeClaimTemplates:
  - metadata: {name: data}
    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
";

/// Pod name → image of the live pods of `app=<app>`.
fn images_of(controller: &Controller, app: &str) -> BTreeMap<String, String> {
    let pods = items(controller, &["get", "pods", "-l", &format!("app={app}")]);
    live(&pods)
        .iter()
        .map(|pod| {
            let name = pod["metadata"]["name"].as_str().unwrap_or_default().to_string();
            (name, pod["spec"]["containers"][0]["image"].as_str().unwrap_or_default().to_string())
        })
        .collect()
}

fn claim_names(controller: &Controller) -> Vec<String> {
    let claims = items(controller, &["get", "pvc", "-l", "app=db"]);
    live(&claims).iter().filter_map(|claim| claim["metadata"]["name"].as_str().map(String::from)).collect()
}

#[test]
fn stateful_sets_create_in_order_update_by_partition_and_scale_down() {
    let controller = Controller::start().expect("controller starts");
    register_nodes(&controller, &["node-a", "node-b"]);
    with_stand_in(&controller, |stand_in| {
        // db-1 is held not ready: OrderedReady creates nothing after it meanwhile.
        stand_in.held.lock().unwrap().push("db-1".into());
        controller.kubectl_stdin(&["apply", "-f", "-"], STATEFUL_SET).unwrap();
        wait_for("db-1", Duration::from_secs(30), || images_of(&controller, "db").contains_key("db-1"));
        std::thread::sleep(Duration::from_secs(2));
        assert!(!images_of(&controller, "db").contains_key("db-2"), "db-2 waits for db-1 to be ready");
        stand_in.held.lock().unwrap().clear();
        controller.kubectl(&["rollout", "status", "sts/db", "--timeout=60s"]).unwrap();
        assert_eq!(*stand_in.ready_order.lock().unwrap(), ["db-0", "db-1", "db-2"]);

        let pod = json(&controller, &["get", "pod", "db-2"]);
        assert_eq!(pod["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"], "db-2", "{pod}");
        assert_eq!(pod["metadata"]["labels"]["apps.kubernetes.io/pod-index"], "2", "{pod}");
        assert_eq!((pod["spec"]["hostname"].as_str(), pod["spec"]["subdomain"].as_str()), (Some("db-2"), Some("db")));
        assert_eq!(pod["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"], "data-db-2", "{pod}");
        let set = json(&controller, &["get", "sts", "db"]);
        assert_eq!(pod["metadata"]["labels"]["controller-revision-hash"], set["status"]["updateRevision"]);
        assert_eq!(set["status"]["currentRevision"], set["status"]["updateRevision"], "{set}");
        assert_eq!(set["status"]["readyReplicas"], 3, "{set}");
        assert_eq!(claim_names(&controller), ["data-db-0", "data-db-1", "data-db-2"]);

        // A new template replaces pods from the highest ordinal down.
        stand_in.ready_order.lock().unwrap().clear();
        controller.kubectl(&["set", "image", "sts/db", "db=busybox:1.37"]).unwrap();
        controller.kubectl(&["rollout", "status", "sts/db", "--timeout=60s"]).unwrap();
        assert!(images_of(&controller, "db").values().all(|image| image == "busybox:1.37"));
        assert_eq!(*stand_in.ready_order.lock().unwrap(), ["db-2", "db-1", "db-0"]);
        let history = controller.kubectl(&["rollout", "history", "sts/db"]).unwrap();
        assert!(history.contains("1 ") && history.contains("2 "), "{history}");

        // With a partition, only ordinals at or above it are updated.
        let partition = r#"{"spec":{"updateStrategy":{"rollingUpdate":{"partition":2}}}}"#;
        controller.kubectl(&["patch", "sts", "db", "--type=merge", "-p", partition]).unwrap();
        controller.kubectl(&["set", "image", "sts/db", "db=busybox:1.38"]).unwrap();
        controller.kubectl(&["rollout", "status", "sts/db", "--timeout=60s"]).unwrap();
        wait_for("db-2 updated", Duration::from_secs(30), || {
            images_of(&controller, "db").get("db-2").is_some_and(|image| image == "busybox:1.38")
        });
        let images = images_of(&controller, "db");
        assert_eq!((images["db-0"].as_str(), images["db-1"].as_str()), ("busybox:1.37", "busybox:1.37"));
        let set = json(&controller, &["get", "sts", "db"]);
        assert_ne!(set["status"]["currentRevision"], set["status"]["updateRevision"], "{set}");
        assert_eq!(set["status"]["updatedReplicas"], 1, "{set}");

        // Undo puts the previous template back through its ControllerRevision; without a partition every pod
        // follows.
        controller
            .kubectl(&[
                "patch",
                "sts",
                "db",
                "--type=merge",
                "-p",
                r#"{"spec":{"updateStrategy":{"rollingUpdate":{"partition":0}}}}"#,
            ])
            .unwrap();
        controller.kubectl(&["rollout", "undo", "sts/db"]).unwrap();
        controller.kubectl(&["rollout", "status", "sts/db", "--timeout=60s"]).unwrap();
        wait_for("every pod back on the previous template", Duration::from_secs(30), || {
            images_of(&controller, "db").values().filter(|image| *image == "busybox:1.37").count() == 3
        });
        let set = json(&controller, &["get", "sts", "db"]);
        assert_eq!(set["spec"]["template"]["spec"]["containers"][0]["image"], "busybox:1.37", "{set}");

        // Scaling down removes the highest ordinals and, with whenScaled: Delete, their claims.
        controller.kubectl(&["scale", "sts", "db", "--replicas=1"]).unwrap();
        wait_for("one pod", Duration::from_secs(30), || images_of(&controller, "db").len() == 1);
        assert!(images_of(&controller, "db").contains_key("db-0"));
        wait_for("the scaled-down claims to go", Duration::from_secs(30), || claim_names(&controller) == ["data-db-0"]);

        // Parallel creates every pod at once, ready or not.
        stand_in.held.lock().unwrap().extend(["web-0".to_string(), "web-1".to_string(), "web-2".to_string()]);
        let parallel = "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: web}\nspec:\n  replicas: 3\n  \
            podManagementPolicy: Parallel\n  selector: {matchLabels: {app: web}}\n  template:\n    \
            metadata: {labels: {app: web}}\n    spec: {containers: [{name: web, image: 'busybox:1.36'}]}\n";
        controller.kubectl_stdin(&["apply", "-f", "-"], parallel).unwrap();
        wait_for("three unready web pods", Duration::from_secs(30), || images_of(&controller, "web").len() == 3);
    });
}

const CRON_JOB: &str = "\
apiVersion: batch/v1
kind: CronJob
metadata: {name: tick}
spec:
  schedule: '*/1 * * * *'
  successfulJobsHistoryLimit: 1
  jobTemplate:
    metadata: {labels: {app: tick}}
    spec:
      template:
        spec:
          restartPolicy: Never
          containers: [{name: job, image: 'busybox:1.36', command: ['true']}]
";

#[test]
fn cron_jobs_start_jobs_on_schedule_and_by_hand() {
    let controller = Controller::start().expect("controller starts");
    register_nodes(&controller, &["node-a"]);
    with_stand_in(&controller, |_| {
        controller.kubectl_stdin(&["apply", "-f", "-"], CRON_JOB).unwrap();
        let every = CRON_JOB.replace("name: tick", "name: every").replace("'*/1 * * * *'", "'@every 5s'");
        controller.kubectl_stdin(&["apply", "-f", "-"], &every.replace("app: tick", "app: every")).unwrap();

        // kubectl makes a Job from the CronJob's template itself; the Job controller runs it.
        controller.kubectl(&["create", "job", "by-hand", "--from=cronjob/tick"]).unwrap();
        controller.kubectl(&["wait", "--for=condition=complete", "job/by-hand", "--timeout=60s"]).unwrap();
        let job = json(&controller, &["get", "job", "by-hand"]);
        assert_eq!(job["metadata"]["ownerReferences"][0]["kind"], "CronJob", "{job}");

        // Within a minute (and a margin) the schedule starts `tick-<minutes since the epoch>`.
        let mut scheduled = String::new();
        wait_for("a scheduled job", Duration::from_secs(90), || {
            let jobs = items(&controller, &["get", "jobs", "-l", "app=tick"]);
            let mut names = jobs.iter().filter_map(|job| job["metadata"]["name"].as_str());
            match names.find(|name| *name != "by-hand") {
                Some(name) => {
                    scheduled = name.to_string();
                    true
                }
                None => false,
            }
        });
        let minutes: i64 = scheduled.strip_prefix("tick-").unwrap().parse().unwrap();
        let job = json(&controller, &["get", "job", &scheduled]);
        let stamp = job["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"].as_str().unwrap();
        let stamp: jiff::Timestamp = stamp.parse().unwrap();
        assert_eq!(stamp.as_second(), minutes * 60, "{job}");
        controller
            .kubectl(&["wait", "--for=condition=complete", &format!("job/{scheduled}"), "--timeout=60s"])
            .unwrap();
        wait_for("the CronJob's status", Duration::from_secs(30), || {
            let cron_job = json(&controller, &["get", "cronjob", "tick"]);
            let status = &cron_job["status"];
            status["lastScheduleTime"].as_str().is_some_and(|time| time.parse::<jiff::Timestamp>().ok() == Some(stamp))
                && status["lastSuccessfulTime"].is_string()
                && status["active"].as_array().is_none_or(|active| active.is_empty())
        });
        // Suspended, it starts nothing more.
        controller
            .kubectl(&["patch", "cronjob", "tick", "--type=merge", "-p", r#"{"spec":{"suspend":true}}"#])
            .unwrap();
        let cron_job = json(&controller, &["get", "cronjob", "tick"]);
        assert_eq!(cron_job["spec"]["suspend"], true);

        // `@every 5s` counts from the CronJob's creation, then from its last scheduled time.
        let created: jiff::Timestamp = json(&controller, &["get", "cronjob", "every"])["metadata"]["creationTimestamp"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let mut stamps = Vec::new();
        wait_for("jobs of the @every CronJob", Duration::from_secs(30), || {
            let jobs = items(&controller, &["get", "jobs", "-l", "app=every"]);
            stamps = jobs
                .iter()
                .filter_map(|job| {
                    job["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"].as_str()
                })
                .map(|stamp| stamp.parse::<jiff::Timestamp>().unwrap().as_second())
                .collect();
            !stamps.is_empty()
        });
        for stamp in stamps {
            let since = stamp - created.as_second();
            assert!(since > 0 && since % 5 == 0, "scheduled at {stamp}, {since} s after its creation at {created}");
        }
    });
}

fn node_taints(controller: &Controller, node: &str) -> Vec<String> {
    let node = json(controller, &["get", "node", node]);
    let taints = node["spec"]["taints"].as_array().cloned().unwrap_or_default();
    taints
        .iter()
        .map(|taint| format!("{}:{}", taint["key"].as_str().unwrap(), taint["effect"].as_str().unwrap()))
        .collect()
}

fn ready_condition(controller: &Controller, kind: &str, name: &str) -> Value {
    let object = json(controller, &["get", kind, name]);
    let conditions = object["status"]["conditions"].as_array().cloned().unwrap_or_default();
    conditions.into_iter().find(|condition| condition["type"] == "Ready").unwrap_or_default()
}

fn pod_on(controller: &Controller, name: &str, node: &str, tolerations: &str) {
    let overrides = format!(
        r#"{{"spec":{{"nodeName":"{node}","tolerations":{tolerations},"containers":[{{"name":"c","image":"busybox:1.36"}}]}}}}"#
    );
    controller.kubectl(&["run", name, "--image=busybox:1.36", "--overrides", &overrides]).unwrap();
}

#[test]
fn lost_nodes_are_marked_unknown_tainted_and_their_pods_evicted() {
    let controller = Controller::start().expect("controller starts");
    register_nodes(&controller, &["alive", "lost"]);
    with_stand_in(&controller, |stand_in| {
        stand_in.lost.lock().unwrap().push("lost".into());
        // Every pod gets the 300 s not-ready and unreachable tolerations unless it names its own.
        pod_on(&controller, "patient", "lost", "[]");
        let impatient = r#"[{"key":"node.kubernetes.io/unreachable","operator":"Exists","effect":"NoExecute","tolerationSeconds":5}]"#;
        pod_on(&controller, "impatient", "lost", impatient);
        pod_on(&controller, "bystander", "alive", "[]");
        let patient = json(&controller, &["get", "pod", "patient"]);
        let tolerations = patient["spec"]["tolerations"].as_array().unwrap();
        assert!(tolerations
            .iter()
            .any(|t| t["key"] == "node.kubernetes.io/unreachable" && t["tolerationSeconds"] == 300));
        // The lost node's agent marked its pods ready before it went away.
        let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        let ready = serde_json::json!({"status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": now}]}});
        for name in ["patient", "impatient"] {
            controller
                .kubectl(&["patch", "pod", name, "--subresource=status", "--type=merge", "-p", &ready.to_string()])
                .unwrap();
        }

        // After the grace period (50 s) without a Lease renewal, the node is Unknown and tainted.
        wait_for("the lost node to be unknown", Duration::from_secs(90), || {
            ready_condition(&controller, "node", "lost")["status"] == "Unknown"
        });
        let ready = ready_condition(&controller, "node", "lost");
        assert_eq!(ready["reason"], "NodeStatusUnknown");
        assert_eq!(ready["message"], "Kubelet stopped posting node status.");
        wait_for("unreachable taints", Duration::from_secs(20), || {
            let taints = node_taints(&controller, "lost");
            taints.contains(&"node.kubernetes.io/unreachable:NoSchedule".to_string())
                && taints.contains(&"node.kubernetes.io/unreachable:NoExecute".to_string())
        });
        assert_eq!(ready_condition(&controller, "node", "alive")["status"], "True");
        assert!(node_taints(&controller, "alive").is_empty());
        wait_for("its pods not ready", Duration::from_secs(20), || {
            ready_condition(&controller, "pod", "patient")["status"] == "False"
        });
        // The pod tolerating 5 s is evicted; the one tolerating 300 s stays for now.
        wait_for("the impatient pod evicted", Duration::from_secs(30), || {
            let pods = items(&controller, &["get", "pods", "--field-selector=metadata.name=impatient"]);
            live(&pods).is_empty()
        });
        assert!(json(&controller, &["get", "pod", "patient"])["metadata"]["deletionTimestamp"].is_null());

        // A NoExecute taint the pod does not tolerate evicts it at once.
        controller.kubectl(&["taint", "node", "alive", "maintenance=now:NoExecute"]).unwrap();
        wait_for("the bystander evicted", Duration::from_secs(30), || {
            items(&controller, &["get", "pods", "--field-selector=metadata.name=bystander"]).is_empty()
        });

        // The node comes back: its agent posts Ready again and renews its Lease; the taints go.
        stand_in.lost.lock().unwrap().clear();
        let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        let ready = serde_json::json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
            "message": "ready", "lastHeartbeatTime": now, "lastTransitionTime": now}]}});
        controller
            .kubectl(&["patch", "node", "lost", "--subresource=status", "--type=merge", "-p", &ready.to_string()])
            .unwrap();
        wait_for("the taints removed", Duration::from_secs(30), || node_taints(&controller, "lost").is_empty());
    });
}

#[test]
fn pods_of_removed_nodes_are_collected() {
    let controller = Controller::start().expect("controller starts");
    register_nodes(&controller, &["doomed"]);
    with_stand_in(&controller, |_| {
        pod_on(&controller, "stranded", "doomed", "[]");
        wait_for("the pod running", Duration::from_secs(30), || {
            is_ready(&json(&controller, &["get", "pod", "stranded"]))
        });
        controller.kubectl(&["delete", "node", "doomed"]).unwrap();
        // The collector runs every 20 s.
        wait_for("the stranded pod collected", Duration::from_secs(60), || {
            items(&controller, &["get", "pods", "--field-selector=metadata.name=stranded"]).is_empty()
        });
    });
}
