//! Storage with no cloud, end to end on a real node: the default StorageClass `local-path`, a StatefulSet whose
//! claim gets a volume provisioned on the node its pod was scheduled to, data that outlives the pod, and a volume
//! and directory that go with the claim; a pre-created hostPath volume bound to a matching claim; claims that match
//! nothing wait quietly; pods wait for missing claims and avoid nodes their volume cannot be reached from; and the
//! node reads only the volumes its pods use.
//!
//! Needs root, containerd, runc, containernetworking-plugins and busybox-static (tests/run.sh installs them).
//! Without them the test fails: it never passes by testing nothing.

#[path = "common/one_node.rs"]
#[allow(dead_code)] // shared with pods_run.rs, which uses the rest of it
mod one_node;

use std::path::Path;
use std::time::Duration;

use one_node::Node;

const NODE: &str = "storage-a";

const STATEFUL_SET: &str = "
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 1
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: db
        image: 'busybox:1.36'
        # The first pod leaves its uid in the volume; later pods find it there.
        command: [sh, -c, '[ -f /data/first-pod ] || echo $POD_UID > /data/first-pod; exec sleep 100000']
        env: [{name: POD_UID, valueFrom: {fieldRef: {fieldPath: metadata.uid}}}]
        volumeMounts: [{name: data, mountPath: /data}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 64Mi}}}
";

fn json(node: &Node, arguments: &[&str]) -> serde_json::Value {
    let mut arguments = arguments.to_vec();
    arguments.extend(["-o", "json"]);
    let text = node.controller.kubectl(&arguments).unwrap_or_else(|error| panic!("kubectl {arguments:?}: {error}"));
    serde_json::from_str(&text).expect("kubectl prints JSON")
}

fn text<'a>(value: &'a serde_json::Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(serde_json::Value::as_str).unwrap_or_default()
}

fn gone(node: &Node, kind_and_name: &[&str]) -> bool {
    let mut arguments = vec!["get"];
    arguments.extend(kind_and_name);
    node.controller
        .kubectl_output(&arguments)
        .is_ok_and(|output| !output.status.success() && String::from_utf8_lossy(&output.stderr).contains("NotFound"))
}

#[test]
fn local_path_volumes_follow_their_claims_and_pre_created_volumes_bind() {
    let storage = tempfile::tempdir().expect("a directory for the node's volumes");
    let root = storage.path().join("volumes");
    let node = Node::start_configured(NODE, vec!["--local-path-dir".into(), root.display().to_string()], Vec::new());

    // The default class, as kubectl shows it.
    let classes = node.controller.kubectl(&["get", "storageclass"]).unwrap();
    let row = classes.lines().find(|line| line.starts_with("local-path")).unwrap_or_else(|| panic!("{classes}"));
    let columns: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        columns[..6],
        ["local-path", "(default)", "kaasd.io/local-path", "Delete", "WaitForFirstConsumer", "false"]
    );

    // A StatefulSet's claim gets the default class, a volume on the node its pod went to, and the pod writes there.
    node.apply(STATEFUL_SET);
    node.wait_phase("db-0", "Running");
    let first_uid = node.field("db-0", ".metadata.uid");
    let claim = json(&node, &["get", "pvc", "data-db-0"]);
    assert_eq!(text(&claim, "/spec/storageClassName"), "local-path", "DefaultStorageClass admission: {claim}");
    assert_eq!(text(&claim, "/status/phase"), "Bound", "{claim}");
    assert_eq!(text(&claim, "/metadata/annotations/volume.kubernetes.io~1selected-node"), NODE, "{claim}");
    assert_eq!(text(&claim, "/metadata/annotations/pv.kubernetes.io~1bind-completed"), "yes", "{claim}");
    assert_eq!(text(&claim, "/status/capacity/storage"), "64Mi", "{claim}");
    let claim_uid = text(&claim, "/metadata/uid");
    let volume_name = format!("pvc-{claim_uid}");
    assert_eq!(text(&claim, "/spec/volumeName"), volume_name, "{claim}");
    let volume = json(&node, &["get", "pv", &volume_name]);
    assert_eq!(text(&volume, "/status/phase"), "Bound", "{volume}");
    assert_eq!(text(&volume, "/spec/claimRef/uid"), claim_uid, "{volume}");
    assert_eq!(text(&volume, "/spec/persistentVolumeReclaimPolicy"), "Delete", "{volume}");
    assert_eq!(text(&volume, "/metadata/annotations/pv.kubernetes.io~1provisioned-by"), "kaasd.io/local-path");
    let pinned = &volume["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0];
    assert_eq!((text(pinned, "/key"), &pinned["values"]), ("kubernetes.io/hostname", &serde_json::json!([NODE])));
    let dir = root.join(format!("{volume_name}_default_data-db-0"));
    assert_eq!(text(&volume, "/spec/hostPath/path"), dir.display().to_string(), "{volume}");
    node.wait("the pod's write reaching the node's disk", || {
        Ok(std::fs::read_to_string(dir.join("first-pod")).unwrap_or_default().trim() == first_uid)
    });

    // The pod that replaces it has the same data.
    node.controller.kubectl(&["delete", "pod", "db-0"]).expect("kubectl delete pod");
    node.wait("db-0 coming back as a new pod", || {
        Ok(node.field("db-0", ".status.phase") == "Running" && node.field("db-0", ".metadata.uid") != first_uid)
    });
    let seen = node.controller.kubectl(&["exec", "db-0", "--", "cat", "/data/first-pod"]).unwrap();
    assert_eq!(seen.trim(), first_uid, "the new pod reads what the first one wrote");

    // The node sees the volumes of its own pods and of its own disk, nothing else.
    let as_node = |arguments: &[&str]| node.kubectl_as_node(arguments);
    let (allowed, stderr) = as_node(&["get", "pv", &volume_name]);
    assert!(allowed, "the volume of its pod's claim: {stderr}");
    let (allowed, stderr) = as_node(&["get", "pvc", "data-db-0"]);
    assert!(allowed, "its pod's claim: {stderr}");
    let (allowed, stderr) = as_node(&["get", "pv"]);
    assert!(!allowed && stderr.contains("no relationship found"), "no listing of every volume: {stderr}");
    let (allowed, stderr) = as_node(&["get", "pv", "-l", &format!("kaasd.io/local-path-node={NODE}")]);
    assert!(allowed, "the volumes on its own disk: {stderr}");
    assert!(!as_node(&["get", "pv", "-l", "kaasd.io/local-path-node=another-node"]).0, "another node's");

    // A pre-created hostPath volume binds to the claim it satisfies (the smallest that fits), and a pod uses it.
    let manual_dir = storage.path().join("manual");
    let pre_created = format!(
        "apiVersion: v1\nkind: PersistentVolume\nmetadata: {{name: manual-small}}\nspec:\n  storageClassName: manual\n  \
         capacity: {{storage: 1Gi}}\n  accessModes: [ReadWriteOnce]\n  hostPath: {{path: {}, type: DirectoryOrCreate}}\n\
         ---\napiVersion: v1\nkind: PersistentVolume\nmetadata: {{name: manual-large}}\nspec:\n  storageClassName: manual\n  \
         capacity: {{storage: 4Gi}}\n  accessModes: [ReadWriteOnce]\n  hostPath: {{path: {}/large}}\n\
         ---\napiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: manual}}\nspec:\n  storageClassName: manual\n  \
         accessModes: [ReadWriteOnce]\n  resources: {{requests: {{storage: 500Mi}}}}\n\
         ---\napiVersion: v1\nkind: Pod\nmetadata: {{name: writer}}\nspec:\n  terminationGracePeriodSeconds: 1\n  \
         containers:\n  - {{name: main, image: 'busybox:1.36', command: [sh, -c, 'echo hello > /data/hello; exec sleep 100000'], \
         volumeMounts: [{{name: d, mountPath: /data}}]}}\n  volumes: [{{name: d, persistentVolumeClaim: {{claimName: manual}}}}]\n",
        manual_dir.display(),
        storage.path().display(),
    );
    node.apply(&pre_created);
    node.wait("the manual claim being bound", || {
        Ok(node.controller.kubectl(&["get", "pvc", "manual", "-o", "jsonpath={.status.phase}"])? == "Bound")
    });
    let claim = json(&node, &["get", "pvc", "manual"]);
    assert_eq!(text(&claim, "/spec/volumeName"), "manual-small", "{claim}");
    assert_eq!(text(&claim, "/status/capacity/storage"), "1Gi", "{claim}");
    assert_eq!(text(&claim, "/metadata/annotations/pv.kubernetes.io~1bound-by-controller"), "yes", "{claim}");
    node.wait("the manual volume being Bound", || {
        Ok(node.controller.kubectl(&["get", "pv", "manual-small", "-o", "jsonpath={.status.phase}"])? == "Bound")
    });
    node.wait_phase("writer", "Running");
    node.wait("the writer's file on the node", || {
        Ok(std::fs::read_to_string(manual_dir.join("hello")).unwrap_or_default() == "hello\n")
    });

    // A claim no volume satisfies stays Pending, and the binder leaves it alone (no write loop).
    node.apply(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: too-big}\nspec:\n  storageClassName: manual\n  \
         accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 100Gi}}\n",
    );
    std::thread::sleep(Duration::from_secs(2));
    let before = json(&node, &["get", "pvc", "too-big"]);
    std::thread::sleep(Duration::from_secs(3));
    let after = json(&node, &["get", "pvc", "too-big"]);
    assert_eq!(text(&after, "/status/phase"), "Pending", "{after}");
    assert_eq!(text(&after, "/spec/volumeName"), "", "{after}");
    assert_eq!(text(&before, "/metadata/resourceVersion"), text(&after, "/metadata/resourceVersion"), "untouched");
    let events =
        node.controller.kubectl(&["get", "events", "--field-selector", "involvedObject.name=too-big"]).unwrap();
    assert!(events.contains(r#"storageclass.storage.k8s.io "manual" not found"#), "{events}");
    assert_eq!(
        node.controller.kubectl(&["get", "pv", "manual-large", "-o", "jsonpath={.status.phase}"]).unwrap(),
        "Available"
    );

    // Pods wait for a claim that does not exist, and fit no node their volume cannot be reached from.
    let elsewhere = "apiVersion: v1\nkind: PersistentVolume\nmetadata: {name: elsewhere}\nspec:\n  storageClassName: manual\n  \
         capacity: {storage: 1Gi}\n  accessModes: [ReadWriteOnce]\n  hostPath: {path: /nonexistent}\n  nodeAffinity:\n    \
         required:\n      nodeSelectorTerms:\n      - matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [another-node]}]\n\
         ---\napiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: elsewhere}\nspec:\n  storageClassName: manual\n  \
         volumeName: elsewhere\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 1Gi}}\n";
    node.apply(elsewhere);
    node.wait("the pre-bound claim being bound", || {
        Ok(node.controller.kubectl(&["get", "pvc", "elsewhere", "-o", "jsonpath={.status.phase}"])? == "Bound")
    });
    let user = |name: &str, claim: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  terminationGracePeriodSeconds: 1\n  \
             containers: [{{name: main, image: 'busybox:1.36', command: [sleep, '100000']}}]\n  \
             volumes: [{{name: d, persistentVolumeClaim: {{claimName: {claim}}}}}]\n"
        )
    };
    node.apply(&user("no-claim", "nope"));
    node.apply(&user("far-away", "elsewhere"));
    let scheduling = |pod: &str| node.field(pod, r#".status.conditions[?(@.type=="PodScheduled")].message"#);
    node.wait("no-claim waiting for its claim", || {
        Ok(scheduling("no-claim") == r#"0/1 nodes are available: persistentvolumeclaim "nope" not found."#)
    });
    node.wait("far-away fitting no node", || {
        Ok(scheduling("far-away")
            == "0/1 nodes are available: 1 node(s) had volume node affinity conflict. preemption: 0/1 nodes are \
                available: 1 Preemption is not helpful for scheduling..")
    });
    let (allowed, stderr) = as_node(&["get", "pv", "elsewhere"]);
    assert!(!allowed, "a volume none of its pods use: {stderr}");
    // The claim appears: the pod is scheduled.
    node.apply(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: nope}\nspec:\n  accessModes: [ReadWriteOnce]\n  \
         resources: {requests: {storage: 8Mi}}\n",
    );
    node.wait_phase("no-claim", "Running");

    // Deleting the set and its claim deletes the provisioned volume and its directory; a retained volume stays.
    node.controller.kubectl(&["delete", "statefulset", "db"]).unwrap();
    node.controller.kubectl(&["delete", "pod", "writer", "no-claim", "far-away", "--wait=false"]).unwrap();
    node.wait("the set's pod being gone", || Ok(gone(&node, &["pod", "db-0"])));
    node.controller.kubectl(&["delete", "pvc", "data-db-0", "manual", "--wait=false"]).unwrap();
    node.wait("the provisioned volume being deleted", || Ok(gone(&node, &["pv", &volume_name])));
    assert!(!dir.exists(), "the volume's directory is removed with it");
    node.wait("the manual volume being Released", || {
        Ok(node.controller.kubectl(&["get", "pv", "manual-small", "-o", "jsonpath={.status.phase}"])? == "Released")
    });
    assert!(manual_dir.join("hello").exists(), "a Retain volume keeps its data");
    node.controller.kubectl(&["delete", "pvc", "--all", "--wait=false"]).unwrap();
    node.wait("every local-path volume being gone", || {
        Ok(node
            .controller
            .kubectl(&["get", "pv", "-l", &format!("kaasd.io/local-path-node={NODE}"), "-o", "name"])?
            .is_empty())
    });
    let left: Vec<_> =
        std::fs::read_dir(&root).map(|entries| entries.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "every provisioned directory is removed: {left:?}");
    assert!(Path::new(&root).exists(), "the root itself stays");
}
