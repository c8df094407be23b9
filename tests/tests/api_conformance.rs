//! Conformance entries of the v1.33 list, one test each, named after its entry: the entry's API interaction
//! reproduced against a real `kaasd controller` with kubectl (and, for what kubectl cannot show, curl and an
//! independent signature check). docs/conformance.md maps every entry to its test.

use kaasd_e2e::controller::{Controller, KUBECTL};
use serde_json::{json, Value};

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|error| panic!("invalid JSON ({error}):\n{text}"))
}

fn names(list: &Value) -> Vec<String> {
    let items = list["items"].as_array().expect("a list");
    items.iter().map(|item| item["metadata"]["name"].as_str().unwrap().to_string()).collect()
}

const FLOW_CONTROL: &str = "/apis/flowcontrol.apiserver.k8s.io/v1";
const ADMISSION_REGISTRATION: &str = "/apis/admissionregistration.k8s.io/v1";

/// What the conformance tests of a cluster-scoped kind's "API operations" do, in their order: discovery, then
/// create, get, list, watch, patch, update, the status subresource when the kind has one (get, patch, update),
/// delete and deletecollection.
fn api_operations(controller: &Controller, group_version: &str, plural: &str, kind: &str, spec: Value, status: bool) {
    let (group_name, version) = group_version.trim_start_matches("/apis/").split_once('/').unwrap();
    // Discovery: the group, its version, and the resource (with its status subresource).
    let groups = json(&controller.kubectl(&["get", "--raw", "/apis"]).unwrap());
    let group = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|group| group["name"] == group_name)
        .expect("the group is discovered");
    assert!(group["versions"].as_array().unwrap().iter().any(|served| served["version"] == version), "{group}");
    let resources = json(&controller.kubectl(&["get", "--raw", group_version]).unwrap());
    let served: Vec<&str> =
        resources["resources"].as_array().unwrap().iter().map(|resource| resource["name"].as_str().unwrap()).collect();
    assert!(served.contains(&plural), "{served:?}");
    assert_eq!(served.contains(&format!("{plural}/status").as_str()), status, "{served:?}");

    // Create three, labelled for this test.
    for index in 1..=3 {
        let object = json!({
            "apiVersion": format!("{group_name}/{version}"),
            "kind": kind,
            "metadata": {"name": format!("e2e-{index}"), "labels": {"e2e": plural}},
            "spec": spec,
        });
        controller.kubectl_stdin(&["create", "-f", "-"], &object.to_string()).unwrap();
    }
    let first = json(&controller.kubectl(&["get", plural, "e2e-1", "-o", "json"]).unwrap());
    assert_eq!(first["metadata"]["labels"]["e2e"], plural);
    let selector = format!("e2e={plural}");
    // The list as the API answers it (kubectl's `-o json` rewraps items in a List without a resourceVersion).
    let collection = format!("{group_version}/{plural}?labelSelector=e2e%3D{plural}");
    let list = json(&controller.kubectl(&["get", "--raw", &collection]).unwrap());
    assert_eq!(names(&list), ["e2e-1", "e2e-2", "e2e-3"]);
    let listed_at = list["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    assert!(!listed_at.is_empty(), "{list}");

    // Patch, update, and the status subresource.
    controller
        .kubectl(&[
            "patch",
            plural,
            "e2e-1",
            "--type=merge",
            "-p",
            r#"{"metadata":{"annotations":{"patched":"true"}}}"#,
        ])
        .unwrap();
    let mut current = json(&controller.kubectl(&["get", plural, "e2e-1", "-o", "json"]).unwrap());
    assert_eq!(current["metadata"]["annotations"]["patched"], "true");
    current["metadata"]["annotations"]["updated"] = json!("true");
    controller.kubectl_stdin(&["replace", "-f", "-"], &current.to_string()).unwrap();
    let mut changes = 2;
    if status {
        let status_path = format!("{group_version}/{plural}/e2e-1/status");
        let read = json(&controller.kubectl(&["get", "--raw", &status_path]).unwrap());
        assert_eq!(read["metadata"]["annotations"]["updated"], "true", "the status subresource reads the object");
        let condition = json!({"type": "StatusPatched", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z", "reason": "E2E", "message": "patched"});
        let patch = json!({"status": {"conditions": [condition]}}).to_string();
        controller.kubectl(&["patch", plural, "e2e-1", "--subresource=status", "--type=merge", "-p", &patch]).unwrap();
        let mut patched = json(&controller.kubectl(&["get", plural, "e2e-1", "-o", "json"]).unwrap());
        assert_eq!(patched["status"]["conditions"][0]["type"], "StatusPatched", "{patched}");
        patched["status"]["conditions"][0]["type"] = json!("StatusUpdated");
        controller.kubectl_stdin(&["replace", "--subresource=status", "-f", "-"], &patched.to_string()).unwrap();
        let updated = json(&controller.kubectl(&["get", plural, "e2e-1", "-o", "json"]).unwrap());
        assert_eq!(updated["status"]["conditions"][0]["type"], "StatusUpdated", "{updated}");
        changes += 2;
    }

    // A watch from the list's revision sees every change since, ending when its timeout does.
    let watch = format!(
        "{group_version}/{plural}?watch=true&labelSelector=e2e%3D{plural}&resourceVersion={listed_at}&timeoutSeconds=2"
    );
    let events = controller.kubectl(&["get", "--raw", &watch]).unwrap();
    let modified = events.lines().map(json).filter(|event| event["type"] == "MODIFIED").count();
    assert_eq!(modified, changes, "patch, update and the status writes:\n{events}");

    // Delete one, then the rest as a collection.
    controller.kubectl(&["delete", plural, "e2e-1"]).unwrap();
    controller.kubectl(&["delete", "--raw", &collection]).unwrap();
    let left = json(&controller.kubectl(&["get", plural, "-l", &selector, "-o", "json"]).unwrap());
    assert!(names(&left).is_empty(), "{left}");
}

/// "[sig-api-machinery] API priority and fairness should support FlowSchema API operations [Conformance]"; and the
/// FlowSchemas every cluster starts with, as `kubectl get flowschemas` shows them.
#[test]
fn api_priority_and_fairness_should_support_flowschema_api_operations() {
    let controller = Controller::start().expect("kaasd controller starts");
    let built_in = json(&controller.kubectl(&["get", "flowschemas", "-o", "json"]).unwrap());
    let mut built_in_names = names(&built_in);
    built_in_names.sort();
    assert_eq!(
        built_in_names,
        [
            "catch-all",
            "endpoint-controller",
            "exempt",
            "global-default",
            "kube-controller-manager",
            "kube-scheduler",
            "kube-system-service-accounts",
            "probes",
            "service-accounts",
            "system-leader-election",
            "system-node-high",
            "system-nodes",
            "workload-leader-election",
        ]
    );
    let table = controller.kubectl(&["get", "flowschemas", "--sort-by=.spec.matchingPrecedence"]).unwrap();
    let rows: Vec<Vec<&str>> = table.lines().map(|line| line.split_whitespace().collect()).collect();
    assert_eq!(rows[0], ["NAME", "PRIORITYLEVEL", "MATCHINGPRECEDENCE", "DISTINGUISHERMETHOD", "AGE", "MISSINGPL"]);
    let row = |name: &str| rows.iter().find(|row| row[0] == name).unwrap_or_else(|| panic!("{name} in\n{table}"));
    assert_eq!(row("exempt")[..4], ["exempt", "exempt", "1", "<none>"]);
    assert_eq!(row("catch-all")[..4], ["catch-all", "catch-all", "10000", "ByUser"]);
    assert_eq!(row("kube-scheduler")[..4], ["kube-scheduler", "workload-high", "800", "ByNamespace"]);
    assert!(rows[1..].iter().all(|row| row[5] == "False"), "no built-in schema is dangling:\n{table}");

    let spec = json!({
        "priorityLevelConfiguration": {"name": "global-default"},
        "matchingPrecedence": 5000,
        "rules": [{
            "subjects": [{"kind": "User", "user": {"name": "e2e-user"}}],
            "nonResourceRules": [{"verbs": ["get"], "nonResourceURLs": ["/e2e"]}],
        }],
    });
    api_operations(&controller, FLOW_CONTROL, "flowschemas", "FlowSchema", spec, true);
}

/// "[sig-api-machinery] API priority and fairness should support PriorityLevelConfiguration API operations
/// [Conformance]"; and the built-in levels as `kubectl get prioritylevelconfigurations` shows them.
#[test]
fn api_priority_and_fairness_should_support_prioritylevelconfiguration_api_operations() {
    let controller = Controller::start().expect("kaasd controller starts");
    let table = controller.kubectl(&["get", "prioritylevelconfigurations"]).unwrap();
    let rows: Vec<Vec<&str>> = table.lines().map(|line| line.split_whitespace().collect()).collect();
    assert_eq!(rows[0], ["NAME", "TYPE", "NOMINALCONCURRENCYSHARES", "QUEUES", "HANDSIZE", "QUEUELENGTHLIMIT", "AGE"]);
    let mut levels: Vec<&str> = rows[1..].iter().map(|row| row[0]).collect();
    levels.sort();
    assert_eq!(
        levels,
        [
            "catch-all",
            "exempt",
            "global-default",
            "leader-election",
            "node-high",
            "system",
            "workload-high",
            "workload-low"
        ]
    );
    let row = |name: &str| rows.iter().find(|row| row[0] == name).unwrap();
    assert_eq!(row("exempt")[..6], ["exempt", "Exempt", "<none>", "<none>", "<none>", "<none>"]);
    assert_eq!(row("catch-all")[..6], ["catch-all", "Limited", "5", "<none>", "<none>", "<none>"]);
    assert_eq!(row("workload-low")[..6], ["workload-low", "Limited", "100", "128", "6", "50"]);

    let spec = json!({
        "type": "Limited",
        "limited": {"nominalConcurrencyShares": 2, "limitResponse": {"type": "Reject"}},
    });
    api_operations(&controller, FLOW_CONTROL, "prioritylevelconfigurations", "PriorityLevelConfiguration", spec, true);
}

/// `GET` with curl as nobody in particular: the response head and body.
fn curl_anonymously(controller: &Controller, path: &str) -> (String, String) {
    let output = std::process::Command::new("curl")
        .args(["--silent", "--show-error", "--dump-header", "/dev/stderr", "--cacert"])
        .arg(controller.data_dir().join("pki/ca.crt"))
        .arg(format!("{}{path}", controller.url()))
        .output()
        .expect("curl runs");
    (String::from_utf8_lossy(&output.stderr).into_owned(), String::from_utf8_lossy(&output.stdout).into_owned())
}

/// kubectl with a bearer token and nothing else from the admin's kubeconfig.
fn kubectl_with_token(controller: &Controller, token: &str, arguments: &[&str]) -> String {
    let ca = format!("--certificate-authority={}", controller.data_dir().join("pki/ca.crt").display());
    let output = std::process::Command::new(KUBECTL)
        .args(["--token", token, "--kubeconfig", "/dev/null", "--server", &controller.url(), &ca])
        .args(arguments)
        .env_remove("KUBECONFIG")
        .output()
        .expect("kubectl runs");
    assert!(output.status.success(), "kubectl {arguments:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// "[sig-auth] ServiceAccounts ServiceAccountIssuerDiscovery should support OIDC discovery of service account
/// issuer [Conformance]". Upstream's test runs a pod that verifies its own token through the discovery documents;
/// this does the same verification from outside: a ServiceAccount reads the discovery document and the key set
/// with its own token, and the token's signature is checked with the published key alone (by ring, not by kaasd's
/// code).
#[test]
fn service_accounts_service_account_issuer_discovery_should_support_oidc_discovery_of_service_account_issuer() {
    use base64::Engine;
    let controller = Controller::start().expect("kaasd controller starts");
    controller.kubectl(&["create", "serviceaccount", "verifier"]).unwrap();
    let token = controller.kubectl(&["create", "token", "verifier"]).unwrap().trim().to_string();

    let discovery =
        json(&kubectl_with_token(&controller, &token, &["get", "--raw", "/.well-known/openid-configuration"]));
    let issuer = "https://kubernetes.default.svc.cluster.local";
    assert_eq!(discovery["issuer"], issuer);
    assert_eq!(discovery["id_token_signing_alg_values_supported"], json!(["ES256"]));
    assert_eq!(discovery["response_types_supported"], json!(["id_token"]));
    assert_eq!(discovery["subject_types_supported"], json!(["public"]));
    let jwks_uri = discovery["jwks_uri"].as_str().unwrap();
    let jwks_path = jwks_uri.strip_prefix("https://").and_then(|rest| rest.find('/').map(|at| &rest[at..]));
    assert_eq!(jwks_path, Some("/openid/v1/jwks"), "{jwks_uri}");
    let keys = json(&kubectl_with_token(&controller, &token, &["get", "--raw", "/openid/v1/jwks"]));

    // The token names its key; that key verifies it.
    let decode = |part: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    let header = json(&String::from_utf8(decode(parts[0])).unwrap());
    let claims = json(&String::from_utf8(decode(parts[1])).unwrap());
    assert_eq!(header["alg"], "ES256");
    let key = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|key| key["kid"] == header["kid"])
        .unwrap_or_else(|| panic!("the token's key {} is published in {keys}", header["kid"]));
    assert_eq!(
        (&key["kty"], &key["crv"], &key["alg"], &key["use"]),
        (&json!("EC"), &json!("P-256"), &json!("ES256"), &json!("sig"))
    );
    let point = [vec![4u8], decode(key["x"].as_str().unwrap()), decode(key["y"].as_str().unwrap())].concat();
    let public = ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, point);
    let signed = format!("{}.{}", parts[0], parts[1]);
    public.verify(signed.as_bytes(), &decode(parts[2])).expect("the published key verifies the token");
    assert!(public.verify(b"something else", &decode(parts[2])).is_err(), "and only what was signed");
    assert_eq!(claims["iss"], issuer);
    assert_eq!(claims["sub"], "system:serviceaccount:default:verifier");

    // Answers may be cached; the key set has its own media type. Nobody unauthenticated may read them by default.
    let (head, _) = curl_anonymously(&controller, "/openid/v1/jwks");
    assert!(head.starts_with("HTTP/2 403") || head.starts_with("HTTP/1.1 403"), "{head}");
    let admin = controller.kubectl(&["get", "--raw", "/openid/v1/jwks/"]).unwrap();
    assert_eq!(json(&admin), keys, "with and without the trailing slash");
    let output = std::process::Command::new("curl")
        .args(["--silent", "--show-error", "--output", "/dev/null", "--dump-header", "-", "--cacert"])
        .arg(controller.data_dir().join("pki/ca.crt"))
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .arg(format!("{}/openid/v1/jwks", controller.url()))
        .output()
        .expect("curl runs");
    let head = String::from_utf8_lossy(&output.stdout).to_ascii_lowercase();
    assert!(head.contains("content-type: application/jwk-set+json"), "{head}");
    assert!(head.contains("cache-control: public, max-age=3600"), "{head}");
}

/// A bearer token of a ServiceAccount bound to cluster-admin, for requests kubectl cannot send as they are.
fn admin_token(controller: &Controller) -> String {
    controller.kubectl(&["create", "serviceaccount", "root", "-n", "kube-system"]).unwrap();
    controller
        .kubectl(&[
            "create",
            "clusterrolebinding",
            "e2e-root",
            "--clusterrole=cluster-admin",
            "--serviceaccount=kube-system:root",
        ])
        .unwrap();
    controller.kubectl(&["create", "token", "root", "-n", "kube-system"]).unwrap().trim().to_string()
}

/// One request with curl, its body sent byte for byte: the status code and the answer's body.
fn curl(
    controller: &Controller,
    token: &str,
    method: &str,
    path: &str,
    content_type: &str,
    body: &str,
) -> (u16, String) {
    let output = std::process::Command::new("curl")
        .args(["--silent", "--show-error", "--write-out", "\n%{http_code}", "--request", method, "--cacert"])
        .arg(controller.data_dir().join("pki/ca.crt"))
        .args(["-H", &format!("Authorization: Bearer {token}"), "-H", &format!("Content-Type: {content_type}")])
        .args(["--data-binary", body])
        .arg(format!("{}{path}", controller.url()))
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (answer, code) = text.rsplit_once('\n').expect("curl wrote the status code");
    (code.parse().expect("a status code"), answer.to_string())
}

/// "[sig-api-machinery] FieldValidation should detect unknown and duplicate fields of a typed object
/// [Conformance]": the entry's own Deployment, posted as it is written (a repeated `replicas`), is refused under
/// Strict with upstream's message, and accepted with warnings under Warn.
#[test]
fn field_validation_should_detect_unknown_and_duplicate_fields_of_a_typed_object() {
    let controller = Controller::start().expect("kaasd controller starts");
    let token = admin_token(&controller);
    let deployment = r#"{
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "my-dep", "labels": {"app": "nginx"}},
        "spec": {
            "unknownField": "foo",
            "replicas": 2,
            "replicas": 3,
            "selector": {"matchLabels": {"app": "nginx"}},
            "template": {
                "metadata": {"labels": {"app": "nginx"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx:latest"}]}
            }
        }
    }"#;
    let path = "/apis/apps/v1/namespaces/default/deployments?fieldManager=field_validation_mgr&fieldValidation=";
    let (code, answer) = curl(&controller, &token, "POST", &format!("{path}Strict"), "application/json", deployment);
    assert_eq!(code, 400, "{answer}");
    let expected = r#"strict decoding error: unknown field \"spec.unknownField\", duplicate field \"spec.replicas\""#;
    assert!(answer.contains(expected), "{answer}");

    // Warn: created (with the last value, as JSON decoders keep), and both problems come back as warnings.
    let output = std::process::Command::new("curl")
        .args(["--silent", "--show-error", "--dump-header", "-", "--output", "/dev/null", "--cacert"])
        .arg(controller.data_dir().join("pki/ca.crt"))
        .args(["-H", &format!("Authorization: Bearer {token}"), "-H", "Content-Type: application/json"])
        .args(["--data-binary", deployment])
        .arg(format!("{}{path}Warn", controller.url()))
        .output()
        .expect("curl runs");
    let head = String::from_utf8_lossy(&output.stdout);
    assert!(head.contains(r#"299 - "unknown field \"spec.unknownField\"""#), "{head}");
    assert!(head.contains(r#"299 - "duplicate field \"spec.replicas\"""#), "{head}");
    let replicas = controller.kubectl(&["get", "deployment", "my-dep", "-o", "jsonpath={.spec.replicas}"]).unwrap();
    assert_eq!(replicas, "3");
}

/// "[sig-api-machinery] FieldValidation should detect duplicates in a CR when preserving unknown fields
/// [Conformance]": a server-side apply of a custom resource whose spec preserves unknown fields, with `foo` twice.
#[test]
fn field_validation_should_detect_duplicates_in_a_cr_when_preserving_unknown_fields() {
    let controller = Controller::start().expect("kaasd controller starts");
    let token = admin_token(&controller);
    let spec = json!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
        "properties": {"foo": {"type": "string"}, "cronSpec": {"type": "string"}},
    });
    establish(&controller, &noxu_crd(spec));
    let body = "\napiVersion: mygroup.example.com/v1beta1\nkind: WishIHadChosenNoxu\nmetadata:\n  name: mytest\nspec:\n  unknown: uk1\n  foo: foo1\n  foo: foo2\n  cronSpec: \"* * * * */5\"\n";
    let (code, answer) = apply_noxu(&controller, &token, body);
    assert_eq!(code, 400, "{answer}");
    assert!(answer.contains(r#"line 9: key \"foo\" already set in map"#), "{answer}");
    let found = controller.kubectl_output(&["get", "noxus", "mytest"]).unwrap();
    assert!(!found.status.success(), "nothing was created");
}

/// "[sig-api-machinery] Servers with support for Table transformation should return a 406 for a backend which does
/// not implement metadata [Conformance]": a SelfSubjectAccessReview asked for as a Table alone.
#[test]
fn servers_with_support_for_table_transformation_should_return_a_406_for_a_backend_which_does_not_implement_metadata() {
    let controller = Controller::start().expect("kaasd controller starts");
    let token = admin_token(&controller);
    let review = r#"{"apiVersion":"authorization.k8s.io/v1","kind":"SelfSubjectAccessReview","spec":{"nonResourceAttributes":{"path":"/","verb":"get"}}}"#;
    let post = |accept: &str| {
        let output = std::process::Command::new("curl")
            .args(["--silent", "--show-error", "--write-out", "\n%{http_code}", "--cacert"])
            .arg(controller.data_dir().join("pki/ca.crt"))
            .args(["-H", &format!("Authorization: Bearer {token}"), "-H", "Content-Type: application/json"])
            .args(["-H", &format!("Accept: {accept}"), "--data-binary", review])
            .arg(format!("{}/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", controller.url()))
            .output()
            .expect("curl runs");
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap();
        (code.to_string(), body.to_string())
    };
    let (code, body) = post("application/json;as=Table;v=v1;g=meta.k8s.io");
    assert_eq!(code, "406", "{body}");
    assert_eq!(json(&body)["reason"], "NotAcceptable", "{body}");
    // With plain JSON offered too, the review is answered.
    let (code, body) = post("application/json;as=Table;v=v1;g=meta.k8s.io,application/json");
    assert_eq!(code, "201", "{body}");
    assert_eq!(json(&body)["status"]["allowed"], true, "{body}");
}

/// The CustomResourceDefinition of upstream's field validation tests, with `spec` as given.
fn noxu_crd(spec_schema: Value) -> String {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "noxus.mygroup.example.com"},
        "spec": {
            "group": "mygroup.example.com",
            "scope": "Cluster",
            "names": {"plural": "noxus", "singular": "nonenglishnoxu", "kind": "WishIHadChosenNoxu", "listKind": "NoxuItemList"},
            "versions": [{
                "name": "v1beta1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": spec_schema}}},
            }],
        },
    })
    .to_string()
}

fn ports_schema() -> Value {
    json!({
        "type": "array",
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["containerPort", "protocol"],
        "items": {"type": "object", "required": ["containerPort", "protocol"], "properties": {
            "containerPort": {"type": "integer", "format": "int32"},
            "hostIP": {"type": "string"},
            "hostPort": {"type": "integer", "format": "int32"},
            "name": {"type": "string"},
            "protocol": {"type": "string"},
        }},
    })
}

/// Server-side apply of `yaml` to noxus/mytest with fieldValidation=Strict: status code and answer.
fn apply_noxu(controller: &Controller, token: &str, yaml: &str) -> (u16, String) {
    let path =
        "/apis/mygroup.example.com/v1beta1/noxus/mytest?fieldManager=field_validation_mgr&fieldValidation=Strict";
    curl(controller, token, "PATCH", path, "application/apply-patch+yaml", yaml)
}

fn establish(controller: &Controller, crd: &str) {
    controller.kubectl_stdin(&["create", "-f", "-"], crd).unwrap();
    controller.kubectl(&["wait", "--for=condition=Established", "crd/noxus.mygroup.example.com"]).unwrap();
}

/// "[sig-api-machinery] FieldValidation should create/apply an invalid CR with extra properties for CRD with
/// validation schema [Conformance]"; and, with a schema that keeps unknown fields, "should create/apply a CR with
/// unknown fields for CRD with no validation schema [Conformance]".
#[test]
fn field_validation_should_create_apply_an_invalid_cr_with_extra_properties_for_crd_with_validation_schema() {
    let controller = Controller::start().expect("kaasd controller starts");
    let token = admin_token(&controller);
    let spec = json!({"type": "object", "properties": {
        "foo": {"type": "string"},
        "cronSpec": {"type": "string", "pattern": "^(\\d+|\\*)(/\\d+)?(\\s+(\\d+|\\*)(/\\d+)?){4}$"},
        "ports": ports_schema(),
    }});
    establish(&controller, &noxu_crd(spec));
    let yaml = "\napiVersion: mygroup.example.com/v1beta1\nkind: WishIHadChosenNoxu\nmetadata:\n  name: mytest\nunknownField: unknown\nspec:\n  foo: foo1\n  cronSpec: \"* * * * */5\"\n  ports:\n  - name: x\n    containerPort: 80\n    protocol: TCP";
    let (code, answer) = apply_noxu(&controller, &token, yaml);
    assert_eq!(code, 400, "{answer}");
    assert!(answer.contains(".unknownField: field not declared in schema"), "{answer}");
    // Without the unknown field the same configuration is applied.
    let valid = yaml.replace("unknownField: unknown\n", "");
    let (code, answer) = apply_noxu(&controller, &token, &valid);
    assert_eq!(code, 201, "{answer}");

    // A CRD whose schema keeps unknown fields takes them.
    controller.kubectl(&["delete", "crd", "noxus.mygroup.example.com"]).unwrap();
    let deleted = std::time::Instant::now();
    while controller.kubectl_output(&["get", "crd", "noxus.mygroup.example.com"]).unwrap().status.success() {
        assert!(deleted.elapsed() < std::time::Duration::from_secs(30), "the CRD goes away");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    establish(&controller, &noxu_crd(json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})));
    let unknown = valid.replace("  foo: foo1", "  unknown: uk1");
    let (code, answer) = apply_noxu(&controller, &token, &unknown);
    assert_eq!(code, 201, "{answer}");
    assert_eq!(controller.kubectl(&["get", "noxus", "mytest", "-o", "jsonpath={.spec.unknown}"]).unwrap(), "uk1");
}

/// "[sig-api-machinery] FieldValidation should detect unknown metadata fields in both the root and embedded object
/// of a CR [Conformance]"
#[test]
fn field_validation_should_detect_unknown_metadata_fields_in_both_the_root_and_embedded_object_of_a_cr() {
    let controller = Controller::start().expect("kaasd controller starts");
    let token = admin_token(&controller);
    let spec = json!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
        "properties": {
            "template": {
                "type": "object",
                "x-kubernetes-embedded-resource": true,
                "properties": {"metadata": {"type": "object", "properties": {"name": {"type": "string"}}}, "spec": {"type": "object"}},
            },
            "foo": {"type": "string"},
            "cronSpec": {"type": "string"},
            "ports": ports_schema(),
        },
    });
    establish(&controller, &noxu_crd(spec));
    let yaml = "\napiVersion: mygroup.example.com/v1beta1\nkind: WishIHadChosenNoxu\nmetadata:\n  name: mytest\n  unknownMeta: unknown\nspec:\n  template:\n    apiversion: foo/v1\n    kind: Sub\n    metadata:\n        unknownSubMeta: unknown\n        name: subobject\n        namespace: default\n  foo: foo1\n  cronSpec: \"* * * * */5\"\n  ports:\n  - name: x\n    containerPort: 80\n    protocol: TCP";
    let (code, answer) = apply_noxu(&controller, &token, yaml);
    assert_eq!(code, 400, "{answer}");
    assert!(
        answer.contains(".spec.template.metadata.unknownSubMeta: field not declared in schema")
            || answer.contains(".metadata.unknownMeta: field not declared in schema"),
        "{answer}"
    );
}

/// "[sig-api-machinery] FieldValidation should detect unknown metadata fields of a typed object [Conformance]"
#[test]
fn field_validation_should_detect_unknown_metadata_fields_of_a_typed_object() {
    let controller = Controller::start().expect("kaasd controller starts");
    let token = admin_token(&controller);
    let deployment = r#"{
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "my-dep", "unknownMeta": "foo", "labels": {"app": "nginx"}},
        "spec": {
            "selector": {"matchLabels": {"app": "nginx"}},
            "template": {"metadata": {"labels": {"app": "nginx"}}, "spec": {"containers": [{"name": "nginx", "image": "nginx:latest"}]}}
        }
    }"#;
    let path = "/apis/apps/v1/namespaces/default/deployments?fieldManager=field_validation_mgr&fieldValidation=Strict";
    let (code, answer) = curl(&controller, &token, "POST", path, "application/json", deployment);
    assert_eq!(code, 400, "{answer}");
    assert!(answer.contains(r#"strict decoding error: unknown field \"metadata.unknownMeta\""#), "{answer}");
}

/// "[sig-api-machinery] ValidatingAdmissionPolicy [Privileged:ClusterAdmin] should support
/// ValidatingAdmissionPolicy API operations [Conformance]"
#[test]
fn validating_admission_policy_should_support_validating_admission_policy_api_operations() {
    let controller = Controller::start().expect("kaasd controller starts");
    let spec = json!({
        "matchConstraints": {"resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["deployments"]}]},
        "validations": [{"expression": "object.spec.replicas > 1"}],
    });
    api_operations(
        &controller,
        ADMISSION_REGISTRATION,
        "validatingadmissionpolicies",
        "ValidatingAdmissionPolicy",
        spec,
        true,
    );
}

/// "[sig-api-machinery] ValidatingAdmissionPolicy [Privileged:ClusterAdmin] should support
/// ValidatingAdmissionPolicyBinding API operations [Conformance]"
#[test]
fn validating_admission_policy_should_support_validating_admission_policy_binding_api_operations() {
    let controller = Controller::start().expect("kaasd controller starts");
    let spec = json!({"policyName": "some-policy", "validationActions": ["Deny"]});
    api_operations(
        &controller,
        ADMISSION_REGISTRATION,
        "validatingadmissionpolicybindings",
        "ValidatingAdmissionPolicyBinding",
        spec,
        false,
    );
}

/// A policy on Deployments in namespace `namespace` (selected by its label `namespace: "true"`), bound with Deny
/// by a binding that selects the namespace too, as upstream's tests build them.
fn bind_deployment_policy(controller: &Controller, namespace: &str, spec_extra: Value) {
    controller.kubectl(&["create", "namespace", namespace]).unwrap();
    controller.kubectl(&["label", "namespace", namespace, &format!("{namespace}=true")]).unwrap();
    let selector = json!({"matchLabels": {namespace: "true"}});
    let mut spec = json!({
        "matchConstraints": {
            "namespaceSelector": selector,
            "resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"], "resources": ["deployments"]}],
        },
    });
    for (key, value) in spec_extra.as_object().unwrap() {
        spec[key] = value.clone();
    }
    let policy = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": format!("{namespace}.policy.example.com")},
        "spec": spec,
    });
    controller.kubectl_stdin(&["create", "-f", "-"], &policy.to_string()).unwrap();
    let binding = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": format!("{namespace}.binding.example.com")},
        "spec": {
            "policyName": format!("{namespace}.policy.example.com"),
            "matchResources": {"namespaceSelector": selector},
            "validationActions": ["Deny"],
        },
    });
    controller.kubectl_stdin(&["create", "-f", "-"], &binding.to_string()).unwrap();
}

fn workload(kind: &str, name: &str, namespace: &str, replicas: u32) -> String {
    json!({
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": "nginx"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "nginx"}},
            "template": {"metadata": {"labels": {"app": "nginx"}}, "spec": {"containers": [{"name": "nginx", "image": "nginx:latest"}]}},
        },
    })
    .to_string()
}

/// Creates the marker Deployment (one replica) until the policy denies it, as upstream's test waits for the
/// binding to take effect; the denial's text.
fn wait_for_marker_denial(controller: &Controller, namespace: &str) -> String {
    let started = std::time::Instant::now();
    loop {
        match controller
            .kubectl_stdin(&["create", "-f", "-"], &workload("Deployment", "marker-deployment", namespace, 1))
        {
            Err(error) => return error.to_string(),
            Ok(_) => {
                controller.kubectl(&["delete", "deployment", "marker-deployment", "-n", namespace]).unwrap();
                assert!(started.elapsed() < std::time::Duration::from_secs(30), "the policy never denied the marker");
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
    }
}

/// "[sig-api-machinery] ValidatingAdmissionPolicy [Privileged:ClusterAdmin] should validate against a Deployment
/// [Conformance]"
#[test]
fn validating_admission_policy_should_validate_against_a_deployment() {
    let controller = Controller::start().expect("kaasd controller starts");
    let namespace = "vap-deployment";
    bind_deployment_policy(
        &controller,
        namespace,
        json!({"validations": [
            {"expression": "object.spec.replicas > 1", "messageExpression": "'wants replicas > 1, got ' + string(object.spec.replicas)"},
            {"expression": format!("namespaceObject.metadata.name == '{namespace}'"), "message": "Internal error! Other namespace should not be allowed."},
        ]}),
    );
    let denial = wait_for_marker_denial(&controller, namespace);
    assert!(
        denial.contains("is invalid: : ValidatingAdmissionPolicy 'vap-deployment.policy.example.com' with binding 'vap-deployment.binding.example.com' denied request: wants replicas > 1, got 1")
            || denial.contains("ValidatingAdmissionPolicy 'vap-deployment.policy.example.com' with binding 'vap-deployment.binding.example.com' denied request: wants replicas > 1, got 1"),
        "{denial}"
    );
    controller.kubectl_stdin(&["create", "-f", "-"], &workload("Deployment", "replicated", namespace, 2)).unwrap();
    controller.kubectl_stdin(&["create", "-f", "-"], &workload("ReplicaSet", "non-replicated", namespace, 1)).unwrap();
    // Other namespaces are outside the policy.
    controller.kubectl_stdin(&["create", "-f", "-"], &workload("Deployment", "single", "default", 1)).unwrap();
}

/// "[sig-api-machinery] ValidatingAdmissionPolicy [Privileged:ClusterAdmin] should allow expressions to refer
/// variables. [Conformance]"
#[test]
fn validating_admission_policy_should_allow_expressions_to_refer_variables() {
    let controller = Controller::start().expect("kaasd controller starts");
    let namespace = "vap-variables";
    bind_deployment_policy(
        &controller,
        namespace,
        json!({
            "variables": [
                {"name": "replicas", "expression": "object.spec.replicas"},
                {"name": "oddReplicas", "expression": "variables.replicas % 2 == 1"},
            ],
            "validations": [{"expression": "variables.replicas > 1"}, {"expression": "variables.oddReplicas"}],
        }),
    );
    let denial = wait_for_marker_denial(&controller, namespace);
    assert!(denial.contains("denied request: failed expression: variables.replicas > 1"), "{denial}");
    controller.kubectl_stdin(&["create", "-f", "-"], &workload("Deployment", "replicated", namespace, 3)).unwrap();
    let even =
        controller.kubectl_stdin(&["create", "-f", "-"], &workload("Deployment", "even", namespace, 2)).unwrap_err();
    assert!(even.to_string().contains("denied request: failed expression: variables.oddReplicas"), "{even}");
    controller.kubectl_stdin(&["create", "-f", "-"], &workload("ReplicaSet", "non-replicated", namespace, 1)).unwrap();

    // A policy whose expression does not compile is refused when written.
    let broken = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": "broken.policy.example.com"},
        "spec": {"validations": [{"expression": "object.spec.replicas >"}]},
    });
    let refused = controller.kubectl_stdin(&["create", "-f", "-"], &broken.to_string()).unwrap_err().to_string();
    assert!(
        refused
            .contains("spec.validations[0].expression: Invalid value: \"object.spec.replicas >\": compilation failed"),
        "{refused}"
    );
}

/// A ConfigMap owned by the ConfigMaps `owners` (uid, name), blocking their foreground deletion.
fn owned_configmap(name: &str, owners: &[(String, &str)]) -> String {
    let references: Vec<Value> = owners
        .iter()
        .map(|(uid, owner)| json!({"apiVersion": "v1", "kind": "ConfigMap", "name": owner, "uid": uid, "blockOwnerDeletion": true}))
        .collect();
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "ownerReferences": references}})
        .to_string()
}

fn owner_names(controller: &Controller, name: &str) -> Option<Vec<String>> {
    let output = controller.kubectl_output(&["get", "configmap", name, "-o", "json"]).unwrap();
    if !output.status.success() {
        return None;
    }
    let object = json(&String::from_utf8_lossy(&output.stdout));
    let references = object["metadata"]["ownerReferences"].as_array().cloned().unwrap_or_default();
    Some(references.iter().map(|reference| reference["name"].as_str().unwrap().to_string()).collect())
}

fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !check() {
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// "[sig-api-machinery] Garbage collector should not delete dependents that have both a valid owner and an owner
/// waiting for dependents to be deleted [Conformance]", with ConfigMaps as owners and dependents (upstream uses
/// ReplicationControllers and their pods; the collector treats every kind alike). Also the background case: a
/// dependent whose other owner stays loses only the reference to the owner that went.
#[test]
fn garbage_collector_should_not_delete_dependents_that_have_both_a_valid_owner_and_an_owner_waiting_for_dependents_to_be_deleted(
) {
    let controller = Controller::start().expect("kaasd controller starts");
    let mut uids = std::collections::HashMap::new();
    for owner in ["rc1", "rc2", "rc3"] {
        controller.kubectl(&["create", "configmap", owner]).unwrap();
        uids.insert(owner, controller.kubectl(&["get", "configmap", owner, "-o", "jsonpath={.metadata.uid}"]).unwrap());
    }
    let owner = |name: &'static str| (uids[name].clone(), name);
    for index in 0..4 {
        controller
            .kubectl_stdin(&["create", "-f", "-"], &owned_configmap(&format!("only-rc1-{index}"), &[owner("rc1")]))
            .unwrap();
        controller
            .kubectl_stdin(
                &["create", "-f", "-"],
                &owned_configmap(&format!("both-{index}"), &[owner("rc1"), owner("rc2")]),
            )
            .unwrap();
    }

    // Foreground: rc1 waits for its dependents; those rc2 also owns stay, without rc1.
    controller.kubectl(&["delete", "configmap", "rc1", "--cascade=foreground", "--wait=false"]).unwrap();
    eventually("rc1 and its own dependents to go", || {
        owner_names(&controller, "rc1").is_none()
            && (0..4).all(|index| owner_names(&controller, &format!("only-rc1-{index}")).is_none())
    });
    for index in 0..4 {
        assert_eq!(owner_names(&controller, &format!("both-{index}")), Some(vec!["rc2".to_string()]), "both-{index}");
    }

    // Background: the same for a dependent of rc2 and rc3 when rc2 goes.
    controller
        .kubectl_stdin(&["create", "-f", "-"], &owned_configmap("shared", &[owner("rc2"), owner("rc3")]))
        .unwrap();
    controller.kubectl(&["delete", "configmap", "rc2", "--cascade=background"]).unwrap();
    eventually("rc2's sole dependents to go", || {
        (0..4).all(|index| owner_names(&controller, &format!("both-{index}")).is_none())
    });
    eventually("the dangling reference to be dropped", || {
        owner_names(&controller, "shared") == Some(vec!["rc3".to_string()])
    });
}

/// "[sig-api-machinery] Watchers should observe an object deletion if it stops meeting the requirements of the
/// selector [Conformance]": a watch with a label selector, read back from the revision before the first change.
#[test]
fn watchers_should_observe_an_object_deletion_if_it_stops_meeting_the_requirements_of_the_selector() {
    let controller = Controller::start().expect("kaasd controller starts");
    let start = json(&controller.kubectl(&["get", "--raw", "/api/v1/namespaces/default/configmaps"]).unwrap());
    let from = start["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    let label = "watch-this-configmap";
    controller.kubectl(&["create", "configmap", "e2e-watch-closed"]).unwrap();
    controller
        .kubectl(&["label", "configmap", "e2e-watch-closed", &format!("{label}=label-changed-and-restored")])
        .unwrap();
    controller.kubectl(&["patch", "configmap", "e2e-watch-closed", "-p", r#"{"data":{"mutation":"1"}}"#]).unwrap();
    controller
        .kubectl(&["label", "--overwrite", "configmap", "e2e-watch-closed", &format!("{label}=wrong-value")])
        .unwrap();
    controller.kubectl(&["patch", "configmap", "e2e-watch-closed", "-p", r#"{"data":{"mutation":"2"}}"#]).unwrap();
    controller
        .kubectl(&[
            "label",
            "--overwrite",
            "configmap",
            "e2e-watch-closed",
            &format!("{label}=label-changed-and-restored"),
        ])
        .unwrap();
    controller.kubectl(&["patch", "configmap", "e2e-watch-closed", "-p", r#"{"data":{"mutation":"3"}}"#]).unwrap();
    controller.kubectl(&["delete", "configmap", "e2e-watch-closed"]).unwrap();

    let watch = format!(
        "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={from}&timeoutSeconds=2&labelSelector={label}%3Dlabel-changed-and-restored"
    );
    let events: Vec<(String, Value)> = controller
        .kubectl(&["get", "--raw", &watch])
        .unwrap()
        .lines()
        .map(json)
        .map(|event| (event["type"].as_str().unwrap().to_string(), event["object"]["data"]["mutation"].clone()))
        .collect();
    let expected = [
        ("ADDED", Value::Null),
        ("MODIFIED", json!("1")),
        ("DELETED", json!("1")),
        ("ADDED", json!("2")),
        ("MODIFIED", json!("3")),
        ("DELETED", json!("3")),
    ];
    let expected: Vec<(String, Value)> = expected.iter().map(|(kind, data)| (kind.to_string(), data.clone())).collect();
    assert_eq!(events, expected);
}

/// "[sig-auth] SubjectReview should support SubjectReview API operations [Conformance]": a SubjectAccessReview and
/// a LocalSubjectAccessReview for a ServiceAccount agree with what the ServiceAccount, impersonated, may do.
#[test]
fn subject_review_should_support_subject_review_api_operations() {
    let controller = Controller::start().expect("kaasd controller starts");
    controller.kubectl(&["create", "namespace", "reviews"]).unwrap();
    controller.kubectl(&["create", "serviceaccount", "e2e-sa", "-n", "reviews"]).unwrap();
    let user = "system:serviceaccount:reviews:e2e-sa";
    let impersonated = |verb: &str| {
        let output =
            controller.kubectl_output(&["auth", "can-i", verb, "configmaps", "-n", "reviews", "--as", user]).unwrap();
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    };
    let review = |kind: &str, verb: &str| {
        let mut object = json!({
            "apiVersion": "authorization.k8s.io/v1",
            "kind": kind,
            "spec": {
                "user": user,
                "groups": ["system:serviceaccounts", "system:serviceaccounts:reviews", "system:authenticated"],
                "resourceAttributes": {"verb": verb, "resource": "configmaps", "namespace": "reviews"},
            },
        });
        if kind == "LocalSubjectAccessReview" {
            object["metadata"] = json!({"namespace": "reviews"});
        }
        let answer =
            json(&controller.kubectl_stdin(&["create", "-f", "-", "-o", "json"], &object.to_string()).unwrap());
        answer["status"]["allowed"].as_bool().unwrap_or(false)
    };
    assert_eq!(impersonated("list"), "no");
    assert!(!review("SubjectAccessReview", "list"));
    assert!(!review("LocalSubjectAccessReview", "list"));

    controller.kubectl(&["create", "role", "reader", "--verb=list", "--resource=configmaps", "-n", "reviews"]).unwrap();
    controller
        .kubectl(&[
            "create",
            "rolebinding",
            "reader",
            "--role=reader",
            "--serviceaccount=reviews:e2e-sa",
            "-n",
            "reviews",
        ])
        .unwrap();
    assert_eq!(impersonated("list"), "yes");
    assert!(review("SubjectAccessReview", "list"));
    assert!(review("LocalSubjectAccessReview", "list"));
    assert_eq!(impersonated("delete"), "no");
    assert!(!review("SubjectAccessReview", "delete"));
}

/// An events.k8s.io/v1 Event as the Events API entries create it.
fn new_api_event(name: &str, label: &str) -> Value {
    json!({
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": name, "labels": {"e2e": label}},
        "eventTime": "2026-01-01T00:00:00.000000Z",
        "reportingController": "e2e.kaasd.io/test",
        "reportingInstance": "instance-1",
        "action": "Testing",
        "reason": "E2E",
        "type": "Normal",
        "note": "first note",
        "regarding": {"kind": "Namespace", "name": "default", "apiVersion": "v1"},
    })
}

#[test]
fn events_api_should_ensure_that_an_event_can_be_fetched_patched_deleted_and_listed() {
    let controller = Controller::start().expect("kaasd controller starts");
    controller.kubectl_stdin(&["create", "-f", "-"], &new_api_event("lifecycle", "single").to_string()).unwrap();
    let fetched = json(&controller.kubectl(&["get", "events.v1.events.k8s.io", "lifecycle", "-o", "json"]).unwrap());
    assert_eq!(fetched["apiVersion"], "events.k8s.io/v1");
    assert_eq!(fetched["note"], "first note");
    assert_eq!(fetched["regarding"]["name"], "default");

    // One store behind both APIs, as upstream: the core API shows the same event under its own field names.
    let core = json(&controller.kubectl(&["get", "--raw", "/api/v1/namespaces/default/events/lifecycle"]).unwrap());
    assert_eq!(core["apiVersion"], "v1");
    assert_eq!(core["message"], "first note");
    assert_eq!(core["involvedObject"]["name"], "default");
    assert_eq!(core["reportingComponent"], "e2e.kaasd.io/test");
    let table = controller.kubectl(&["get", "events"]).unwrap();
    assert!(table.contains("first note"), "kubectl get events shows the event:\n{table}");

    // Patched with a new note (a strategic merge patch, as the entry sends).
    controller.kubectl(&["patch", "events.v1.events.k8s.io", "lifecycle", "-p", r#"{"note":"patched note"}"#]).unwrap();
    let patched = json(&controller.kubectl(&["get", "events.v1.events.k8s.io", "lifecycle", "-o", "json"]).unwrap());
    assert_eq!(patched["note"], "patched note");

    // Updated with a series.
    let mut updated = patched.clone();
    updated["series"] = json!({"count": 100, "lastObservedTime": "2026-01-01T00:01:00.000000Z"});
    controller.kubectl_stdin(&["replace", "-f", "-"], &updated.to_string()).unwrap();
    let replaced = json(&controller.kubectl(&["get", "events.v1.events.k8s.io", "lifecycle", "-o", "json"]).unwrap());
    assert_eq!(replaced["series"]["count"], 100);
    assert_eq!(replaced["note"], "patched note");

    // Deleted: gone from the list of all events, in both APIs.
    controller.kubectl(&["delete", "events.v1.events.k8s.io", "lifecycle"]).unwrap();
    let all = json(
        &controller.kubectl(&["get", "--raw", "/apis/events.k8s.io/v1/events?labelSelector=e2e%3Dsingle"]).unwrap(),
    );
    assert_eq!(all["kind"], "EventList");
    assert_eq!(all["apiVersion"], "events.k8s.io/v1");
    assert!(names(&all).is_empty(), "{all}");
    let core_list = json(&controller.kubectl(&["get", "--raw", "/api/v1/events?labelSelector=e2e%3Dsingle"]).unwrap());
    assert!(names(&core_list).is_empty(), "{core_list}");
}

#[test]
fn events_api_should_delete_a_collection_of_events() {
    let controller = Controller::start().expect("kaasd controller starts");
    for name in ["collection-1", "collection-2", "collection-3"] {
        controller.kubectl_stdin(&["create", "-f", "-"], &new_api_event(name, "collection").to_string()).unwrap();
    }
    let listed =
        json(&controller.kubectl(&["get", "events.v1.events.k8s.io", "-l", "e2e=collection", "-o", "json"]).unwrap());
    assert_eq!(names(&listed), ["collection-1", "collection-2", "collection-3"]);
    assert!(listed["items"].as_array().unwrap().iter().all(|event| event["note"] == "first note"), "{listed}");
    // A field selector in the new API's names reaches the stored form's fields.
    let by_field = json(
        &controller
            .kubectl(&[
                "get",
                "--raw",
                "/apis/events.k8s.io/v1/namespaces/default/events?fieldSelector=regarding.name%3Ddefault",
            ])
            .unwrap(),
    );
    assert_eq!(names(&by_field), ["collection-1", "collection-2", "collection-3"]);

    // One DELETE on the collection, as the entry sends (kubectl delete -l would delete them one by one).
    controller
        .kubectl(&[
            "delete",
            "--raw",
            "/apis/events.k8s.io/v1/namespaces/default/events?labelSelector=e2e%3Dcollection",
        ])
        .unwrap();
    let after =
        json(&controller.kubectl(&["get", "events.v1.events.k8s.io", "-l", "e2e=collection", "-o", "json"]).unwrap());
    assert!(names(&after).is_empty(), "{after}");
}

/// A core/v1 Event as the Events entries create it.
fn core_event(name: &str, label: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "labels": {"e2e": label}},
        "involvedObject": {"kind": "Namespace", "name": "default", "apiVersion": "v1"},
        "reason": "E2E",
        "message": "This is a test event",
        "type": "Normal",
        "source": {"component": "e2e"},
        "count": 1,
    })
}

#[test]
fn events_should_manage_the_lifecycle_of_an_event() {
    let controller = Controller::start().expect("kaasd controller starts");
    controller.kubectl_stdin(&["create", "-f", "-"], &core_event("core-lifecycle", "core-single").to_string()).unwrap();
    let listed =
        json(&controller.kubectl(&["get", "--raw", "/api/v1/events?labelSelector=e2e%3Dcore-single"]).unwrap());
    assert_eq!(names(&listed), ["core-lifecycle"], "listed across all namespaces by label");

    controller
        .kubectl(&["patch", "events", "core-lifecycle", "-p", r#"{"message":"This is a patched event"}"#])
        .unwrap();
    let patched = json(&controller.kubectl(&["get", "event", "core-lifecycle", "-o", "json"]).unwrap());
    assert_eq!(patched["message"], "This is a patched event");

    let mut updated = patched.clone();
    updated["series"] = json!({"count": 100, "lastObservedTime": "2026-01-01T00:01:00.000000Z"});
    controller.kubectl_stdin(&["replace", "-f", "-"], &updated.to_string()).unwrap();
    let replaced = json(&controller.kubectl(&["get", "event", "core-lifecycle", "-o", "json"]).unwrap());
    assert_eq!(replaced["series"]["count"], 100);
    // The events.k8s.io API reads the same object.
    let new_api =
        json(&controller.kubectl(&["get", "events.v1.events.k8s.io", "core-lifecycle", "-o", "json"]).unwrap());
    assert_eq!(new_api["note"], "This is a patched event");
    assert_eq!(new_api["deprecatedSource"]["component"], "e2e");

    controller.kubectl(&["delete", "event", "core-lifecycle"]).unwrap();
    let after = json(&controller.kubectl(&["get", "--raw", "/api/v1/events?labelSelector=e2e%3Dcore-single"]).unwrap());
    assert!(names(&after).is_empty(), "{after}");
}

#[test]
fn events_should_delete_a_collection_of_events() {
    let controller = Controller::start().expect("kaasd controller starts");
    for name in ["core-collection-1", "core-collection-2", "core-collection-3"] {
        controller.kubectl_stdin(&["create", "-f", "-"], &core_event(name, "core-collection").to_string()).unwrap();
    }
    let path = "/api/v1/namespaces/default/events?labelSelector=e2e%3Dcore-collection";
    let listed = json(&controller.kubectl(&["get", "--raw", path]).unwrap());
    assert_eq!(names(&listed), ["core-collection-1", "core-collection-2", "core-collection-3"]);
    controller.kubectl(&["delete", "--raw", path]).unwrap();
    let after = json(&controller.kubectl(&["get", "--raw", path]).unwrap());
    assert!(names(&after).is_empty(), "{after}");
}

/// "[sig-api-machinery] API chunking should support continue listing from the last key if the original version has
/// been compacted away, though the list is inconsistent [Slow] [Conformance]": a paged list whose revision was
/// compacted away answers 410 with a continue token in its Status; that token goes on from the same key at the
/// latest revision, to the end of the list. The controller compacts every second here (upstream's e2e waits for the
/// cluster's own compaction, every 5 minutes by default).
#[test]
fn chunking_should_support_continue_listing_from_the_last_key_if_the_original_version_has_been_compacted_away() {
    let controller = Controller::start_with(vec!["--etcd-compaction-interval".into(), "1s".into()]).unwrap();
    let token = admin_token(&controller);
    let templates: Vec<Value> = (0..400)
        .map(|index| {
            json!({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": format!("template-{index:04}")},
                   "template": {"spec": {"containers": [{"name": "test", "image": "busybox"}]}}})
        })
        .collect();
    let list = json!({"apiVersion": "v1", "kind": "List", "items": templates});
    controller.kubectl_stdin(&["create", "-f", "-"], &list.to_string()).unwrap();

    let path = "/api/v1/namespaces/default/podtemplates";
    let first = json(&controller.kubectl(&["get", "--raw", &format!("{path}?limit=40")]).unwrap());
    assert_eq!(names(&first).len(), 40);
    let first_token = first["metadata"]["continue"].as_str().expect("a continue token").to_string();
    // A later write, so that the next compaction passes the first page's revision.
    controller.kubectl(&["create", "configmap", "after-the-first-page"]).unwrap();

    let mut expired = Value::Null;
    eventually("the first page's revision to be compacted away", || {
        let (code, body) = curl(
            &controller,
            &token,
            "GET",
            &format!("{path}?limit=40&continue={first_token}"),
            "application/json",
            "",
        );
        if code == 410 {
            expired = json(&body);
        }
        code == 410
    });
    assert_eq!(expired["reason"], "Expired", "{expired}");
    let mut next = expired["metadata"]["continue"].as_str().expect("the 410 carries a token to go on with").to_string();

    let mut rest = Vec::new();
    loop {
        let page = json(&controller.kubectl(&["get", "--raw", &format!("{path}?limit=40&continue={next}")]).unwrap());
        rest.extend(names(&page));
        match page["metadata"]["continue"].as_str() {
            Some(token) if !token.is_empty() => next = token.to_string(),
            _ => break,
        }
    }
    let expected: Vec<String> = (40..400).map(|index| format!("template-{index:04}")).collect();
    assert_eq!(rest, expected, "the inconsistent list goes on from the 41st template to the last");
}
