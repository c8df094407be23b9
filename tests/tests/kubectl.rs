//! The real kubectl, with its default flags, against a real `kaasd controller` on embedded SQLite.

use std::time::Duration;

use kaasd_e2e::controller::Controller;
use serde_json::Value;

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|error| panic!("kubectl printed invalid JSON ({error}):\n{text}"))
}

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: c
        image: nginx:1
        env: [{name: A, value: "1"}, {name: B, value: "2"}]
"#;

#[test]
fn a_fresh_controller_serves_namespaces_version_and_discovery() {
    let controller = Controller::start().expect("kaasd controller starts");
    let namespaces = controller.kubectl(&["get", "namespaces"]).unwrap();
    for namespace in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(namespaces.contains(namespace), "{namespace} missing from:\n{namespaces}");
    }
    assert!(namespaces.starts_with("NAME"), "kubectl printed a table:\n{namespaces}");
    assert!(namespaces.contains("Active"), "the STATUS column comes from the server's Table:\n{namespaces}");

    let version = json(&controller.kubectl(&["version", "-o", "json"]).unwrap());
    assert_eq!(version["serverVersion"]["major"], "1");
    assert_eq!(version["serverVersion"]["minor"], "33");
    assert_eq!(controller.kubectl(&["get", "--raw", "/readyz"]).unwrap(), "ok");

    let resources = controller.kubectl(&["api-resources"]).unwrap();
    let deployments = resources.lines().find(|line| line.starts_with("deployments")).expect("deployments listed");
    assert!(deployments.contains("deploy") && deployments.contains("apps/v1"), "{deployments}");
    let explained = controller.kubectl(&["explain", "deployment.spec.replicas"]).unwrap();
    assert!(explained.contains("FIELD: replicas <integer>"), "{explained}");

    let service = json(&controller.kubectl(&["get", "service", "kubernetes", "-o", "json"]).unwrap());
    assert_eq!(service["spec"]["clusterIP"], "10.96.0.1");
}

#[test]
fn deployments_go_through_create_apply_patch_scale_label_and_delete() {
    let controller = Controller::start().expect("kaasd controller starts");
    controller.kubectl_stdin(&["create", "--save-config", "-f", "-"], DEPLOYMENT).unwrap();
    let created = json(&controller.kubectl(&["get", "deployment", "web", "-o", "json"]).unwrap());
    assert_eq!(created["metadata"]["generation"], 1);
    assert_eq!(created["spec"]["replicas"], 2);
    let uid = created["metadata"]["uid"].as_str().expect("a uid").to_string();

    let table = controller.kubectl(&["get", "deployments"]).unwrap();
    assert!(table.contains("READY") && table.contains("UP-TO-DATE") && table.contains("web"), "{table}");

    // Client-side apply: a strategic merge patch built from the OpenAPI merge keys (env merges by name).
    let changed = DEPLOYMENT.replace("nginx:1", "nginx:2").replace(", {name: B, value: \"2\"}", "");
    controller.kubectl_stdin(&["apply", "-f", "-"], &changed).unwrap();
    let applied = json(&controller.kubectl(&["get", "deployment", "web", "-o", "json"]).unwrap());
    assert_eq!(applied["metadata"]["uid"], uid.as_str());
    assert_eq!(applied["metadata"]["generation"], 2, "a spec change bumps the generation");
    let container = &applied["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "nginx:2");
    assert_eq!(container["env"].as_array().map(Vec::len), Some(1), "B was removed by apply: {container}");

    controller.kubectl(&["scale", "deployment", "web", "--replicas=5"]).unwrap();
    controller.kubectl(&["label", "deployment", "web", "tier=front"]).unwrap();
    controller.kubectl(&["annotate", "deployment", "web", "note=hello"]).unwrap();
    controller.kubectl(&["patch", "deployment", "web", "--type=merge", "-p", r#"{"spec":{"paused":true}}"#]).unwrap();
    controller
        .kubectl(&[
            "patch",
            "deployment",
            "web",
            "--type=json",
            "-p",
            r#"[{"op":"add","path":"/spec/minReadySeconds","value":3}]"#,
        ])
        .unwrap();
    let patched = json(&controller.kubectl(&["get", "deployment", "web", "-o", "json"]).unwrap());
    assert_eq!(patched["spec"]["replicas"], 5);
    assert_eq!(patched["metadata"]["labels"]["tier"], "front");
    assert_eq!(patched["metadata"]["annotations"]["note"], "hello");
    assert_eq!(patched["spec"]["paused"], true);
    assert_eq!(patched["spec"]["minReadySeconds"], 3);

    let selected = controller.kubectl(&["get", "deployments", "-l", "tier=front", "-o", "name"]).unwrap();
    assert_eq!(selected.trim(), "deployment.apps/web");
    let none = controller.kubectl(&["get", "deployments", "-l", "tier notin (front)", "-o", "name"]).unwrap();
    assert_eq!(none.trim(), "");
    let by_name =
        controller.kubectl(&["get", "deployments", "--field-selector", "metadata.name=web", "-o", "name"]).unwrap();
    assert_eq!(by_name.trim(), "deployment.apps/web");

    controller.kubectl(&["delete", "deployment", "web", "--wait"]).unwrap();
    let missing = controller.kubectl_output(&["get", "deployment", "web"]).unwrap();
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr)
            .contains("Error from server (NotFound): deployments.apps \"web\" not found"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
}

#[test]
fn server_side_apply_creates_and_removes_what_a_manager_stops_applying() {
    let controller = Controller::start().expect("kaasd controller starts");
    let config = r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  labels: {keep: "yes", drop: "soon"}
data: {a: "1"}
"#;
    controller.kubectl_stdin(&["apply", "--server-side", "-f", "-"], config).unwrap();
    let created =
        json(&controller.kubectl(&["get", "configmap", "settings", "-o", "json", "--show-managed-fields"]).unwrap());
    assert_eq!(created["metadata"]["labels"]["drop"], "soon");
    let managers: Vec<&str> = created["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|entry| entry["manager"].as_str())
        .collect();
    assert_eq!(managers, vec!["kubectl"], "{created}");

    controller.kubectl_stdin(&["apply", "--server-side", "-f", "-"], &config.replace(", drop: \"soon\"", "")).unwrap();
    let updated = json(&controller.kubectl(&["get", "configmap", "settings", "-o", "json"]).unwrap());
    assert_eq!(updated["metadata"]["labels"].get("drop"), None, "{updated}");
    assert_eq!(updated["metadata"]["labels"]["keep"], "yes");

    // diff exits 0 when the live object matches, 1 when it differs.
    let applied = config.replace(", drop: \"soon\"", "");
    assert_eq!(diff_status(&controller, &applied), Some(0));
    assert_eq!(diff_status(&controller, &applied.replace("a: \"1\"", "a: \"2\"")), Some(1));
}

fn diff_status(controller: &Controller, manifest: &str) -> Option<i32> {
    use std::io::Write;
    let mut child = controller
        .kubectl_command(&["diff", "--server-side", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(manifest.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    output.status.code()
}

#[test]
fn lists_come_in_chunks_and_watches_see_changes() {
    let controller = Controller::start().expect("kaasd controller starts");
    let mut items = String::new();
    for index in 0..23 {
        items.push_str(&format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm-{index:02}, labels: {{batch: one}}}}\n"
        ));
    }
    controller.kubectl_stdin(&["apply", "-f", "-"], &items).unwrap();
    let chunked =
        controller.kubectl(&["get", "configmaps", "-l", "batch=one", "--chunk-size=5", "-o", "name"]).unwrap();
    assert_eq!(chunked.lines().count(), 23, "{chunked}");
    let raw = json(&controller.kubectl(&["get", "--raw", "/api/v1/namespaces/default/configmaps?limit=10"]).unwrap());
    assert_eq!(raw["items"].as_array().unwrap().len(), 10);
    assert!(raw["metadata"]["continue"].as_str().is_some_and(|token| !token.is_empty()));
    // 23 of ours plus kube-root-ca.crt if a controller made one; at least 13 remain.
    assert!(raw["metadata"]["remainingItemCount"].as_i64().unwrap() >= 13, "{}", raw["metadata"]);

    let mut watch = controller
        .kubectl_command(&["get", "configmaps", "-w", "-o", "name", "--request-timeout=20s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    controller
        .kubectl_stdin(&["apply", "-f", "-"], "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: late}\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let _ = watch.kill();
    let output = watch.wait_with_output().unwrap();
    let seen = String::from_utf8_lossy(&output.stdout);
    assert!(seen.contains("configmap/cm-00"), "the watch starts with the list:\n{seen}");
    assert!(seen.contains("configmap/late"), "the watch saw the new object:\n{seen}");
}

#[test]
fn bad_requests_get_clear_errors() {
    let controller = Controller::start().expect("kaasd controller starts");
    let stderr = |arguments: &[&str], stdin: Option<&str>| -> String {
        let output = match stdin {
            Some(input) => {
                use std::io::Write;
                let mut child = controller
                    .kubectl_command(arguments)
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap();
                child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
                child.wait_with_output().unwrap()
            }
            None => controller.kubectl_output(arguments).unwrap(),
        };
        assert!(!output.status.success(), "kubectl {arguments:?} should fail");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let config = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: dup}\n";
    controller.kubectl_stdin(&["create", "-f", "-"], config).unwrap();
    let duplicate = stderr(&["create", "-f", "-"], Some(config));
    assert!(
        duplicate.contains("AlreadyExists") && duplicate.contains("configmaps \"dup\" already exists"),
        "{duplicate}"
    );

    let unknown_field =
        stderr(&["create", "-f", "-"], Some("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\nbogus: 1\n"));
    assert!(unknown_field.contains("unknown field \"bogus\""), "{unknown_field}");

    let unknown_kind = stderr(&["get", "flurbles"], None);
    assert!(unknown_kind.contains("flurbles"), "{unknown_kind}");

    let bad_selector = stderr(&["get", "pods", "--field-selector", "spec.bogus=1"], None);
    assert!(bad_selector.contains("spec.bogus"), "{bad_selector}");
}

#[test]
fn a_restart_keeps_the_pki_and_every_object() {
    let mut controller = Controller::start().expect("kaasd controller starts");
    controller
        .kubectl_stdin(&["apply", "-f", "-"], "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: kept}\ndata: {k: v}\n")
        .unwrap();
    let kubeconfig_before = std::fs::read_to_string(controller.kubeconfig()).unwrap();
    let ca_before = std::fs::read_to_string(controller.data_dir().join("pki/ca.crt")).unwrap();
    controller.restart().expect("the controller restarts");
    assert_eq!(std::fs::read_to_string(controller.data_dir().join("pki/ca.crt")).unwrap(), ca_before);
    assert_eq!(std::fs::read_to_string(controller.kubeconfig()).unwrap(), kubeconfig_before);
    let kept = json(&controller.kubectl(&["get", "configmap", "kept", "-o", "json"]).unwrap());
    assert_eq!(kept["data"]["k"], "v");
}

/// Polls `check` for up to 10 s.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what} did not happen within 10 s");
}

#[test]
fn namespaces_get_their_service_account_and_ca_and_are_emptied_on_delete() {
    let controller = Controller::start().expect("kaasd controller starts");
    controller
        .kubectl_stdin(&["apply", "-f", "-"], "apiVersion: v1\nkind: Namespace\nmetadata: {name: team}\n")
        .unwrap();
    eventually("the default ServiceAccount and kube-root-ca.crt", || {
        controller.kubectl(&["-n", "team", "get", "serviceaccount", "default", "-o", "name"]).is_ok()
            && controller.kubectl(&["-n", "team", "get", "configmap", "kube-root-ca.crt", "-o", "name"]).is_ok()
    });
    let ca = json(&controller.kubectl(&["-n", "team", "get", "configmap", "kube-root-ca.crt", "-o", "json"]).unwrap());
    let ca_file = std::fs::read_to_string(controller.data_dir().join("pki/ca.crt")).unwrap();
    assert_eq!(ca["data"]["ca.crt"], ca_file.as_str());

    controller
        .kubectl_stdin(
            &["apply", "-f", "-"],
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: inside, namespace: team}\n",
        )
        .unwrap();
    controller.kubectl(&["delete", "namespace", "team", "--wait", "--timeout=20s"]).unwrap();
    let gone = controller.kubectl_output(&["get", "namespace", "team"]).unwrap();
    assert!(!gone.status.success(), "the namespace is gone after kubectl delete --wait");
    // A namespace of the same name starts empty.
    controller
        .kubectl_stdin(&["apply", "-f", "-"], "apiVersion: v1\nkind: Namespace\nmetadata: {name: team}\n")
        .unwrap();
    let leftover = controller.kubectl_output(&["-n", "team", "get", "configmap", "inside"]).unwrap();
    assert!(!leftover.status.success(), "objects of a deleted namespace are deleted with it");
}

#[test]
fn deletion_cascades_background_foreground_and_orphan() {
    let controller = Controller::start().expect("kaasd controller starts");
    for (cascade, dependent_survives) in [("background", false), ("foreground", false), ("orphan", true)] {
        controller
            .kubectl_stdin(&["apply", "-f", "-"], "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: owner}\n")
            .unwrap();
        let uid = controller.kubectl(&["get", "configmap", "owner", "-o", "jsonpath={.metadata.uid}"]).unwrap();
        let dependent = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dependent\n  ownerReferences:\n  - {{apiVersion: v1, kind: ConfigMap, name: owner, uid: {uid}, blockOwnerDeletion: true}}\n"
        );
        controller.kubectl_stdin(&["apply", "-f", "-"], &dependent).unwrap();
        controller
            .kubectl(&["delete", "configmap", "owner", &format!("--cascade={cascade}"), "--timeout=20s"])
            .unwrap();
        if dependent_survives {
            let kept = json(&controller.kubectl(&["get", "configmap", "dependent", "-o", "json"]).unwrap());
            eventually("the orphaned dependent loses its owner reference", || {
                let current = json(&controller.kubectl(&["get", "configmap", "dependent", "-o", "json"]).unwrap());
                current["metadata"]
                    .get("ownerReferences")
                    .is_none_or(|owners| owners.as_array().is_some_and(Vec::is_empty))
            });
            assert_eq!(kept["metadata"]["name"], "dependent");
            controller.kubectl(&["delete", "configmap", "dependent"]).unwrap();
        } else {
            eventually(&format!("{cascade} deletion removes the dependent"), || {
                !controller.kubectl_output(&["get", "configmap", "dependent"]).unwrap().status.success()
            });
        }
        eventually("the owner is gone", || {
            !controller.kubectl_output(&["get", "configmap", "owner"]).unwrap().status.success()
        });
    }
}

#[test]
fn service_account_tokens_authenticate_and_rbac_decides() {
    let controller = Controller::start().expect("kaasd controller starts");
    let request = controller.data_dir().join("token-request.json");
    std::fs::write(&request, r#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{}}"#).unwrap();
    eventually("the default ServiceAccount", || controller.kubectl(&["get", "serviceaccount", "default"]).is_ok());
    let response = json(
        &controller
            .kubectl(&[
                "create",
                "--raw",
                "/api/v1/namespaces/default/serviceaccounts/default/token",
                "-f",
                request.to_str().unwrap(),
            ])
            .unwrap(),
    );
    let token = response["status"]["token"].as_str().expect("a token").to_string();
    let as_account = |arguments: &[&str]| {
        let mut all = vec!["--token", token.as_str(), "--kubeconfig", "/dev/null", "--server"];
        let url = controller.url();
        all.push(&url);
        let ca = controller.data_dir().join("pki/ca.crt");
        let ca = format!("--certificate-authority={}", ca.display());
        all.push(&ca);
        all.extend_from_slice(arguments);
        std::process::Command::new(kaasd_e2e::controller::KUBECTL).args(&all).env_remove("KUBECONFIG").output().unwrap()
    };
    let denied = as_account(&["get", "configmaps"]);
    assert!(!denied.status.success());
    let message = String::from_utf8_lossy(&denied.stderr);
    assert!(
        message.contains("User \"system:serviceaccount:default:default\" cannot list resource \"configmaps\""),
        "{message}"
    );
    controller
        .kubectl_stdin(
            &["apply", "-f", "-"],
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: view}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}\nsubjects: [{kind: ServiceAccount, name: default, namespace: default}]\n",
        )
        .unwrap();
    let allowed = as_account(&["get", "configmaps", "-o", "name"]);
    assert!(allowed.status.success(), "{}", String::from_utf8_lossy(&allowed.stderr));
    assert!(!as_account(&["delete", "configmap", "kube-root-ca.crt"]).status.success(), "view does not delete");
    let bad = std::process::Command::new(kaasd_e2e::controller::KUBECTL)
        .args([
            "--token",
            "not-a-token",
            "--kubeconfig",
            "/dev/null",
            "--insecure-skip-tls-verify",
            "--server",
            &controller.url(),
            "get",
            "pods",
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&bad.stderr).contains("Unauthorized"), "{}", String::from_utf8_lossy(&bad.stderr));

    // The admin may impersonate; what the impersonated user may do is what RBAC says.
    let impersonated =
        controller.kubectl(&["get", "configmaps", "-o", "name", "--as=system:serviceaccount:default:default"]).unwrap();
    assert!(impersonated.contains("configmap/kube-root-ca.crt"), "{impersonated}");
    let nobody = controller.kubectl_output(&["get", "configmaps", "--as=nobody"]).unwrap();
    assert!(
        String::from_utf8_lossy(&nobody.stderr).contains("User \"nobody\" cannot list"),
        "{}",
        String::from_utf8_lossy(&nobody.stderr)
    );
}

#[test]
fn malformed_oversized_and_invalid_bodies_are_rejected_whole() {
    let controller = Controller::start().expect("kaasd controller starts");
    let post = |name: &str, body: &[u8]| -> String {
        let file = controller.data_dir().join(name);
        std::fs::write(&file, body).unwrap();
        let output = controller
            .kubectl_output(&["create", "--raw", "/api/v1/namespaces/default/configmaps", "-f", file.to_str().unwrap()])
            .unwrap();
        assert!(!output.status.success(), "{name} was accepted");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let malformed = post("malformed.json", br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x""#);
    assert!(malformed.contains("BadRequest") || malformed.contains("not valid JSON"), "{malformed}");
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep = post("deep.json", deep.as_bytes());
    assert!(deep.contains("BadRequest") || deep.contains("not valid JSON"), "{deep}");
    let huge = format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"huge"}},"data":{{"a":"{}"}}}}"#,
        "x".repeat(4 * 1024 * 1024)
    );
    let huge = post("huge.json", huge.as_bytes());
    assert!(huge.contains("413") || huge.contains("larger than") || huge.contains("too large"), "{huge}");
    let invalid = post("invalid.json", br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"Not_Valid"}}"#);
    assert!(invalid.contains("Invalid") && invalid.contains("metadata.name"), "{invalid}");
    let wrong_kind = post("kind.json", br#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"x"}}"#);
    assert!(wrong_kind.contains("kind"), "{wrong_kind}");
    // Nothing of the above was stored.
    let names = controller.kubectl(&["get", "configmaps", "-o", "name"]).unwrap();
    assert!(!names.contains("huge") && !names.contains("configmap/x"), "{names}");
}

const CRONTAB_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: crontabs.stable.example.com
spec:
  group: stable.example.com
  scope: Namespaced
  names: {plural: crontabs, singular: crontab, kind: CronTab, shortNames: [ct]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale: {specReplicasPath: .spec.replicas, statusReplicasPath: .status.replicas}
    additionalPrinterColumns:
    - {name: Spec, type: string, jsonPath: .spec.cronSpec}
    - {name: Replicas, type: integer, jsonPath: .spec.replicas}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [cronSpec]
            properties:
              cronSpec: {type: string, pattern: '^(\d+|\*)(/\d+)?(\s+(\d+|\*)(/\d+)?){4}$'}
              image: {type: string}
              replicas: {type: integer, minimum: 1, maximum: 10, default: 1}
          status:
            type: object
            properties:
              replicas: {type: integer}
"#;

#[test]
fn custom_resource_definitions_are_served_validated_and_printed() {
    let controller = Controller::start().expect("kaasd controller starts");
    controller.kubectl_stdin(&["apply", "-f", "-"], CRONTAB_CRD).unwrap();
    controller
        .kubectl(&["wait", "--for", "condition=established", "--timeout=20s", "crd/crontabs.stable.example.com"])
        .unwrap();
    controller
        .kubectl_stdin(
            &["apply", "-f", "-"],
            "apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata: {name: nightly}\nspec: {cronSpec: '* * * * */5', image: my-cron}\n",
        )
        .unwrap();
    let table = controller.kubectl(&["get", "crontabs"]).unwrap();
    assert!(table.contains("SPEC") && table.contains("REPLICAS") && table.contains("* * * * */5"), "{table}");
    let object = json(&controller.kubectl(&["get", "ct", "nightly", "-o", "json"]).unwrap());
    assert_eq!(object["spec"]["replicas"], 1, "the schema default is applied: {object}");

    let invalid = controller
        .kubectl_command(&["apply", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(
                b"apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata: {name: bad}\nspec: {replicas: 50}\n",
            )?;
            child.wait_with_output()
        })
        .unwrap();
    let message = String::from_utf8_lossy(&invalid.stderr);
    assert!(!invalid.status.success());
    assert!(message.contains("spec.cronSpec") && message.contains("Required value"), "{message}");
    assert!(message.contains("spec.replicas"), "{message}");

    controller.kubectl(&["scale", "crontab", "nightly", "--replicas=3"]).unwrap();
    assert_eq!(controller.kubectl(&["get", "ct", "nightly", "-o", "jsonpath={.spec.replicas}"]).unwrap(), "3");
    let explained = controller.kubectl(&["explain", "crontabs.spec"]).unwrap();
    assert!(explained.contains("cronSpec"), "{explained}");
    let resources = controller.kubectl(&["api-resources", "--api-group=stable.example.com"]).unwrap();
    assert!(resources.contains("crontabs") && resources.contains("ct"), "{resources}");

    controller.kubectl(&["delete", "crd", "crontabs.stable.example.com", "--wait", "--timeout=20s"]).unwrap();
    let gone = controller
        .kubectl_output(&["get", "--raw", "/apis/stable.example.com/v1/namespaces/default/crontabs"])
        .unwrap();
    assert!(!gone.status.success(), "the resources of a deleted CRD are no longer served");
}

#[test]
fn typed_kubectl_commands_send_protobuf_and_work() {
    let controller = Controller::start().expect("kaasd controller starts");
    controller.kubectl(&["create", "configmap", "settings", "--from-literal=a=b"]).unwrap();
    controller.kubectl(&["create", "secret", "generic", "password", "--from-literal=p=q"]).unwrap();
    controller.kubectl(&["create", "deployment", "web", "--image=nginx:1", "--replicas=2"]).unwrap();
    controller.kubectl(&["create", "namespace", "team"]).unwrap();
    controller.kubectl(&["create", "service", "nodeport", "web", "--tcp=80:80"]).unwrap();
    assert_eq!(controller.kubectl(&["get", "configmap", "settings", "-o", "jsonpath={.data.a}"]).unwrap(), "b");
    assert_eq!(controller.kubectl(&["get", "deployment", "web", "-o", "jsonpath={.spec.replicas}"]).unwrap(), "2");
    let service = json(&controller.kubectl(&["get", "service", "web", "-o", "json"]).unwrap());
    let node_port = service["spec"]["ports"][0]["nodePort"].as_i64().expect("a node port");
    assert!((30000..=32767).contains(&node_port), "{service}");
    assert!(service["spec"]["clusterIP"].as_str().is_some_and(|ip| ip.starts_with("10.")), "{service}");

    assert_eq!(controller.kubectl(&["auth", "can-i", "delete", "nodes"]).unwrap().trim(), "yes");
    let nobody = controller.kubectl_output(&["auth", "can-i", "get", "pods", "--as=nobody"]).unwrap();
    assert_eq!(String::from_utf8_lossy(&nobody.stdout).trim(), "no");
    let whoami = controller.kubectl(&["auth", "whoami"]).unwrap();
    assert!(whoami.contains("kubernetes-admin") && whoami.contains("system:masters"), "{whoami}");
    eventually("the default ServiceAccount", || controller.kubectl(&["get", "serviceaccount", "default"]).is_ok());
    let token = controller.kubectl(&["create", "token", "default"]).unwrap();
    assert_eq!(token.trim().split('.').count(), 3, "a JWT: {token}");
}

#[test]
fn describe_replace_wait_and_cluster_wide_gets() {
    let controller = Controller::start().expect("kaasd controller starts");
    controller.kubectl_stdin(&["apply", "-f", "-"], DEPLOYMENT).unwrap();
    let described = controller.kubectl(&["describe", "deployment", "web"]).unwrap();
    assert!(described.contains("Name:") && described.contains("web") && described.contains("nginx:1"), "{described}");
    assert!(described.contains("Replicas:"), "{described}");

    let yaml = controller.kubectl(&["get", "deployment", "web", "-o", "yaml"]).unwrap();
    assert!(yaml.contains("kind: Deployment") && yaml.contains("resourceVersion:"), "{yaml}");
    controller.kubectl_stdin(&["replace", "-f", "-"], &yaml.replace("replicas: 2", "replicas: 4")).unwrap();
    controller.kubectl(&["wait", "--for=jsonpath={.spec.replicas}=4", "deployment/web", "--timeout=10s"]).unwrap();

    let everywhere = controller.kubectl(&["get", "configmaps", "-A"]).unwrap();
    assert!(everywhere.starts_with("NAMESPACE"), "{everywhere}");
    for namespace in ["default", "kube-system"] {
        eventually(&format!("kube-root-ca.crt in {namespace}"), || {
            controller
                .kubectl(&["get", "configmaps", "-A"])
                .unwrap()
                .lines()
                .any(|line| line.starts_with(namespace) && line.contains("kube-root-ca.crt"))
        });
    }
    let all = controller.kubectl(&["get", "all"]).unwrap();
    assert!(all.contains("deployment.apps/web") && all.contains("service/kubernetes"), "{all}");
}

/// A CustomResourceDefinition with CEL rules (`x-kubernetes-validations`), as operators' CRDs carry them: a rule
/// that does not compile refuses the CRD; objects that break a rule are refused with the rule's message at its
/// field; a transition rule (`oldSelf`) guards updates only.
#[test]
fn custom_resource_validation_rules_are_enforced() {
    const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: scalers.rules.example.com}
spec:
  group: rules.example.com
  scope: Namespaced
  names: {kind: Scaler, plural: scalers, singular: scaler}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            x-kubernetes-validations:
            - rule: "self.minReplicas <= self.maxReplicas"
              message: "minReplicas must not exceed maxReplicas"
            - rule: "self.storageClass == oldSelf.storageClass"
              message: "storageClass is immutable"
              fieldPath: ".storageClass"
            properties:
              minReplicas: {type: integer}
              maxReplicas: {type: integer}
              storageClass: {type: string}
              owner:
                type: string
                x-kubernetes-validations:
                - rule: "self.matches('^[a-z]+@example[.]com$')"
                  messageExpression: "'owner ' + self + ' is not an example.com address'"
"#;
    let controller = Controller::start().expect("kaasd controller starts");
    let broken = CRD
        .replace("self.minReplicas <= self.maxReplicas", "self.minReplicas <=")
        .replace("scalers.rules", "brokens.rules")
        .replace("plural: scalers", "plural: brokens")
        .replace("kind: Scaler", "kind: Broken")
        .replace("singular: scaler", "singular: broken");
    let refused = controller.kubectl_stdin(&["apply", "-f", "-"], &broken).unwrap_err().to_string();
    assert!(
        refused.contains("spec.validation.openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule: Invalid value: \"self.minReplicas <=\": compilation failed")
            || refused.contains("spec.versions[0].schema.openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule: Invalid value: \"self.minReplicas <=\": compilation failed"),
        "{refused}"
    );

    controller.kubectl_stdin(&["apply", "-f", "-"], CRD).unwrap();
    controller
        .kubectl(&["wait", "--for", "condition=established", "--timeout=20s", "crd/scalers.rules.example.com"])
        .unwrap();
    let scaler = |min: i64, max: i64, class: &str, owner: &str| {
        format!("apiVersion: rules.example.com/v1\nkind: Scaler\nmetadata: {{name: web}}\nspec: {{minReplicas: {min}, maxReplicas: {max}, storageClass: {class}, owner: {owner}}}\n")
    };
    let refused = controller
        .kubectl_stdin(&["apply", "-f", "-"], &scaler(5, 3, "fast", "Ops@elsewhere.org"))
        .unwrap_err()
        .to_string();
    assert!(refused.contains("spec: Invalid value: \"object\": minReplicas must not exceed maxReplicas"), "{refused}");
    assert!(
        refused
            .contains("spec.owner: Invalid value: \"string\": owner Ops@elsewhere.org is not an example.com address"),
        "{refused}"
    );
    controller.kubectl_stdin(&["apply", "-f", "-"], &scaler(1, 3, "fast", "ops@example.com")).unwrap();

    // Updates: the transition rule now has an oldSelf to compare with.
    controller.kubectl_stdin(&["apply", "-f", "-"], &scaler(2, 4, "fast", "ops@example.com")).unwrap();
    let refused = controller
        .kubectl_stdin(&["apply", "-f", "-"], &scaler(2, 4, "slow", "ops@example.com"))
        .unwrap_err()
        .to_string();
    assert!(refused.contains("spec.storageClass: Invalid value: \"object\": storageClass is immutable"), "{refused}");
    let stored = controller
        .kubectl(&["get", "scaler", "web", "-o", "jsonpath={.spec.storageClass}/{.spec.maxReplicas}"])
        .unwrap();
    assert_eq!(stored, "fast/4");
}

const AUTOSCALER_V1: &str = r#"
apiVersion: autoscaling/v1
kind: HorizontalPodAutoscaler
metadata:
  name: web
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 1
  maxReplicas: 4
  targetCPUUtilizationPercentage: 60
"#;

/// Charts and older manifests still write autoscaling/v1 HorizontalPodAutoscalers: they are stored as v2 and each
/// version reads, patches and watches the same object in its own form.
#[test]
fn horizontal_pod_autoscalers_are_served_as_autoscaling_v1_and_v2() {
    let controller = Controller::start().expect("kaasd controller starts");
    controller.kubectl_stdin(&["apply", "-f", "-"], AUTOSCALER_V1).unwrap();

    let v1 =
        json(&controller.kubectl(&["get", "horizontalpodautoscalers.v1.autoscaling", "web", "-o", "json"]).unwrap());
    assert_eq!(v1["apiVersion"], "autoscaling/v1");
    assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 60);
    assert!(v1["spec"].get("metrics").is_none(), "{v1}");
    let v2 =
        json(&controller.kubectl(&["get", "horizontalpodautoscalers.v2.autoscaling", "web", "-o", "json"]).unwrap());
    assert_eq!(v2["apiVersion"], "autoscaling/v2");
    assert_eq!(v2["spec"]["metrics"][0]["resource"]["name"], "cpu");
    assert_eq!(v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"], 60);
    assert_eq!(v1["metadata"]["resourceVersion"], v2["metadata"]["resourceVersion"], "one stored object");

    // A merge patch through v1 is computed on the v1 form; apply through v1 again keeps working.
    controller
        .kubectl(&[
            "patch",
            "horizontalpodautoscalers.v1.autoscaling",
            "web",
            "--type=merge",
            "-p",
            r#"{"spec":{"targetCPUUtilizationPercentage":75}}"#,
        ])
        .unwrap();
    let v2 =
        json(&controller.kubectl(&["get", "horizontalpodautoscalers.v2.autoscaling", "web", "-o", "json"]).unwrap());
    assert_eq!(v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"], 75);
    controller
        .kubectl_stdin(&["apply", "-f", "-"], &AUTOSCALER_V1.replace("maxReplicas: 4", "maxReplicas: 6"))
        .unwrap();
    let v1 =
        json(&controller.kubectl(&["get", "horizontalpodautoscalers.v1.autoscaling", "web", "-o", "json"]).unwrap());
    assert_eq!(v1["spec"]["maxReplicas"], 6);

    // A metric v1 has no field for travels in upstream's annotation and is kept when v1 writes the object back.
    let mut with_pods_metric = v2.clone();
    with_pods_metric["spec"]["metrics"].as_array_mut().unwrap().push(serde_json::json!({
        "type": "Pods",
        "pods": {"metric": {"name": "requests-per-second"}, "target": {"type": "AverageValue", "averageValue": "10"}},
    }));
    with_pods_metric["metadata"].as_object_mut().unwrap().remove("resourceVersion");
    controller.kubectl_stdin(&["replace", "-f", "-"], &with_pods_metric.to_string()).unwrap();
    let v1 =
        json(&controller.kubectl(&["get", "horizontalpodautoscalers.v1.autoscaling", "web", "-o", "json"]).unwrap());
    let annotation =
        v1["metadata"]["annotations"]["autoscaling.alpha.kubernetes.io/metrics"].as_str().unwrap_or_default();
    assert!(annotation.contains("requests-per-second"), "{v1}");
    controller.kubectl_stdin(&["replace", "-f", "-"], &v1.to_string()).unwrap();
    let v2 =
        json(&controller.kubectl(&["get", "horizontalpodautoscalers.v2.autoscaling", "web", "-o", "json"]).unwrap());
    assert_eq!(v2["spec"]["metrics"].as_array().map(Vec::len), Some(2), "{v2}");
    assert!(v2["metadata"]["annotations"].get("autoscaling.alpha.kubernetes.io/metrics").is_none(), "{v2}");

    // Lists and watches in v1.
    let list = json(
        &controller
            .kubectl(&["get", "--raw", "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers"])
            .unwrap(),
    );
    assert_eq!(list["kind"], "HorizontalPodAutoscalerList");
    assert_eq!(list["apiVersion"], "autoscaling/v1");
    assert_eq!(list["items"][0]["spec"]["targetCPUUtilizationPercentage"], 75);
    let watched = controller
        .kubectl(&[
            "get",
            "--raw",
            "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers?watch=true&timeoutSeconds=1",
        ])
        .unwrap();
    let event = json(watched.lines().next().expect("the watch sends the existing object"));
    assert_eq!(event["type"], "ADDED");
    assert_eq!(event["object"]["apiVersion"], "autoscaling/v1");
    assert_eq!(event["object"]["spec"]["targetCPUUtilizationPercentage"], 75);

    controller.kubectl(&["delete", "horizontalpodautoscalers.v1.autoscaling", "web"]).unwrap();
    let left = controller.kubectl(&["get", "hpa", "-o", "name"]).unwrap();
    assert!(left.trim().is_empty(), "{left}");
}

/// A CustomResourceDefinition serving two versions stores each object once; every version reads it with its own
/// apiVersion (conversion strategy None), in gets, lists, watches and write answers.
#[test]
fn custom_resources_are_read_in_the_version_asked_for() {
    let controller = Controller::start().expect("kaasd controller starts");
    let crd = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - {name: v1, served: true, storage: true, schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}}
  - {name: v2, served: true, storage: false, schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}}
"#;
    controller.kubectl_stdin(&["apply", "-f", "-"], crd).unwrap();
    controller.kubectl(&["wait", "--for=condition=Established", "crd/widgets.example.com", "--timeout=30s"]).unwrap();
    controller
        .kubectl_stdin(
            &["create", "-f", "-"],
            r#"{"apiVersion":"example.com/v2","kind":"Widget","metadata":{"name":"w"},"spec":{"size":1}}"#,
        )
        .unwrap();
    for version in ["v1", "v2"] {
        let path = format!("/apis/example.com/{version}/namespaces/default/widgets");
        let object = json(&controller.kubectl(&["get", "--raw", &format!("{path}/w")]).unwrap());
        assert_eq!(object["apiVersion"], format!("example.com/{version}"), "{object}");
        let list = json(&controller.kubectl(&["get", "--raw", &path]).unwrap());
        assert_eq!(list["items"][0]["apiVersion"], format!("example.com/{version}"), "{list}");
        let watched = controller.kubectl(&["get", "--raw", &format!("{path}?watch=true&timeoutSeconds=1")]).unwrap();
        let event = json(watched.lines().next().expect("the watch sends the object"));
        assert_eq!(event["object"]["apiVersion"], format!("example.com/{version}"), "{event}");
    }
    let patched = json(
        &controller
            .kubectl(&[
                "patch",
                "widgets.v1.example.com",
                "w",
                "--type=merge",
                "-p",
                r#"{"spec":{"size":2}}"#,
                "-o",
                "json",
            ])
            .unwrap(),
    );
    assert_eq!(patched["apiVersion"], "example.com/v1");
    assert_eq!(patched["spec"]["size"], 2);
}
