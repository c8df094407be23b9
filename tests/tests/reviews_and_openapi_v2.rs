//! `kubectl auth can-i --list` (SelfSubjectRulesReview), TokenReview, and `/openapi/v2` as kubectl uses it, with
//! the real kubectl against a real `kaasd controller`.

use std::process::Output;
use std::time::Duration;

use kaasd_e2e::controller::{Controller, KUBECTL};
use serde_json::{json, Value};

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|error| panic!("kubectl printed invalid JSON ({error}):\n{text}"))
}

fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// kubectl with a bearer token and nothing else from the admin's kubeconfig.
fn kubectl_with_token(controller: &Controller, token: &str, arguments: &[&str]) -> Output {
    let ca = format!("--certificate-authority={}", controller.data_dir().join("pki/ca.crt").display());
    std::process::Command::new(KUBECTL)
        .args(["--token", token, "--kubeconfig", "/dev/null", "--server", &controller.url(), &ca])
        .args(arguments)
        .env_remove("KUBECONFIG")
        .output()
        .expect("kubectl runs")
}

/// The rows `kubectl auth can-i --list` prints, cut at the header's column offsets: (resources, non-resource URLs,
/// resource names, verbs).
fn can_i_rows(output: &str) -> Vec<(String, String, String, String)> {
    let mut lines = output.lines();
    let header = lines.next().expect("a header line");
    let offset = |title: &str| header.find(title).unwrap_or_else(|| panic!("no column {title} in {header:?}"));
    let (urls, names, verbs) = (offset("Non-Resource URLs"), offset("Resource Names"), offset("Verbs"));
    let cell = |line: &str, from: usize, to: usize| line.get(from..to.min(line.len())).unwrap_or("").trim().to_string();
    lines
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            (cell(line, 0, urls), cell(line, urls, names), cell(line, names, verbs), cell(line, verbs, usize::MAX))
        })
        .collect()
}

/// `GET /openapi/v2` with curl (anonymously, as the document is public), returning the response head only.
fn curl_openapi_v2(controller: &Controller, arguments: &[&str]) -> String {
    let output = std::process::Command::new("curl")
        .args(["--silent", "--show-error", "--http2", "--output", "/dev/null", "--dump-header", "-", "--cacert"])
        .arg(controller.data_dir().join("pki/ca.crt"))
        .args(arguments)
        .arg(format!("{}/openapi/v2", controller.url()))
        .output()
        .expect("curl runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A response header's value, by lowercase name.
fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim().eq_ignore_ascii_case(name)).then(|| value.trim().to_string())
    })
}

fn row(resources: &str, urls: &str, names: &str, verbs: &str) -> (String, String, String, String) {
    (resources.into(), urls.into(), names.into(), verbs.into())
}

const TEAM: &str = r#"
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Namespace
  metadata: {name: team}
- apiVersion: v1
  kind: ServiceAccount
  metadata: {name: robot, namespace: team}
- apiVersion: rbac.authorization.k8s.io/v1
  kind: Role
  metadata: {name: reader, namespace: team}
  rules:
  - {apiGroups: [""], resources: [configmaps], verbs: [get, list]}
  - {apiGroups: [""], resources: [secrets], resourceNames: [app-secret], verbs: [get]}
  - {apiGroups: [apps], resources: [deployments, deployments/scale], verbs: [get, patch]}
- apiVersion: rbac.authorization.k8s.io/v1
  kind: RoleBinding
  metadata: {name: robot-reads, namespace: team}
  roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: reader}
  subjects: [{kind: ServiceAccount, name: robot, namespace: team}]
"#;

#[test]
fn can_i_list_prints_the_rules_of_admins_and_service_accounts() {
    let controller = Controller::start().expect("kaasd controller starts");
    let admin = can_i_rows(&controller.kubectl(&["auth", "can-i", "--list"]).unwrap());
    assert!(admin.contains(&row("*.*", "[]", "[]", "[*]")), "{admin:?}");
    assert!(admin.contains(&row("", "[*]", "[]", "[*]")), "{admin:?}");
    assert!(admin.contains(&row("selfsubjectrulesreviews.authorization.k8s.io", "[]", "[]", "[create]")), "{admin:?}");

    controller.kubectl_stdin(&["apply", "-f", "-"], TEAM).unwrap();
    let token = controller.kubectl(&["create", "token", "robot", "-n", "team"]).unwrap().trim().to_string();
    let robot = kubectl_with_token(&controller, &token, &["auth", "can-i", "--list", "-n", "team"]);
    assert!(robot.status.success(), "{}", String::from_utf8_lossy(&robot.stderr));
    let rows = can_i_rows(&String::from_utf8_lossy(&robot.stdout));
    for expected in [
        row("configmaps", "[]", "[]", "[get list]"),
        row("secrets", "[]", "[app-secret]", "[get]"),
        row("deployments.apps/scale", "[]", "[]", "[get patch]"),
        row("deployments.apps", "[]", "[]", "[get patch]"),
        // From the bootstrap bindings of every authenticated user.
        row("selfsubjectaccessreviews.authorization.k8s.io", "[]", "[]", "[create]"),
        row("", "[/api/*]", "[]", "[get]"),
        row("", "[/version]", "[]", "[get]"),
    ] {
        assert!(rows.contains(&expected), "missing {expected:?} in {rows:?}");
    }
    assert!(!rows.iter().any(|row| row.0 == "*.*"), "the robot is no admin: {rows:?}");
    // The Role binds only in its namespace.
    let elsewhere = kubectl_with_token(&controller, &token, &["auth", "can-i", "--list", "-n", "default"]);
    let rows = can_i_rows(&String::from_utf8_lossy(&elsewhere.stdout));
    assert!(!rows.iter().any(|row| row.0 == "configmaps"), "{rows:?}");
    assert!(rows.contains(&row("selfsubjectreviews.authentication.k8s.io", "[]", "[]", "[create]")), "{rows:?}");

    // The review itself, as a client sees it: the rules split into resource and non-resource rules.
    let review = json(
        &controller
            .kubectl_stdin(
                &["create", "-f", "-", "-o", "json", "--validate=false", "--as=system:serviceaccount:team:robot"],
                "apiVersion: authorization.k8s.io/v1\nkind: SelfSubjectRulesReview\nspec: {namespace: team}\n",
            )
            .unwrap(),
    );
    let status = &review["status"];
    assert_eq!(status["incomplete"], false);
    let resource_rules = status["resourceRules"].as_array().unwrap();
    assert!(resource_rules.contains(
        &json!({"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"], "resourceNames": ["app-secret"]})
    ));
    assert!(status["nonResourceRules"].as_array().unwrap().iter().all(|rule| rule["nonResourceURLs"].is_array()));
}

fn token_review(controller: &Controller, token: &str, audiences: &[&str]) -> Value {
    let review = json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": token, "audiences": audiences},
    });
    let answer = json(&controller.kubectl_stdin(&["create", "-f", "-", "-o", "json"], &review.to_string()).unwrap());
    assert_eq!(answer["kind"], "TokenReview");
    answer["status"].clone()
}

fn uid(controller: &Controller, arguments: &[&str]) -> String {
    let mut all = vec!["get"];
    all.extend_from_slice(arguments);
    all.extend_from_slice(&["-o", "jsonpath={.metadata.uid}"]);
    let uid = controller.kubectl(&all).unwrap();
    assert!(!uid.is_empty(), "{arguments:?} has a uid");
    uid
}

const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// A ServiceAccount token (an ES256 JWT) signed with the cluster's own key, for claims the TokenRequest API never
/// hands out (one that expired a minute ago).
fn signed_token(controller: &Controller, claims: &Value) -> String {
    use base64::Engine;
    let pem = std::fs::read(controller.data_dir().join("pki/service-account.key")).unwrap();
    let key = rustls_pemfile::pkcs8_private_keys(&mut pem.as_slice()).next().expect("a PKCS #8 key").unwrap();
    let algorithm = &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    let random = ring::rand::SystemRandom::new();
    let pair = ring::signature::EcdsaKeyPair::from_pkcs8(algorithm, key.secret_pkcs8_der(), &random).unwrap();
    let encode = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let signed = format!("{}.{}", encode(br#"{"alg":"ES256","typ":"JWT"}"#), encode(claims.to_string().as_bytes()));
    let signature = pair.sign(&random, signed.as_bytes()).unwrap();
    format!("{signed}.{}", encode(signature.as_ref()))
}

#[test]
fn token_reviews_authenticate_like_requests_do() {
    let controller = Controller::start().expect("kaasd controller starts");
    controller.kubectl_stdin(&["apply", "-f", "-"], TEAM).unwrap();
    controller
        .kubectl_stdin(
            &["create", "-f", "-"],
            "apiVersion: v1\nkind: Node\nmetadata: {name: node-a}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: app, namespace: team}\nspec:\n  nodeName: node-a\n  serviceAccountName: robot\n  containers: [{name: c, image: busybox}]\n",
        )
        .unwrap();
    let account_uid = uid(&controller, &["serviceaccount", "robot", "-n", "team"]);
    let pod_uid = uid(&controller, &["pod", "app", "-n", "team"]);
    let node_uid = uid(&controller, &["node", "node-a"]);

    // A token bound to a scheduled pod: the user, with the pod and its node as extras, for the API's audience.
    let token = controller
        .kubectl(&[
            "create",
            "token",
            "robot",
            "-n",
            "team",
            "--bound-object-kind",
            "Pod",
            "--bound-object-name",
            "app",
        ])
        .unwrap()
        .trim()
        .to_string();
    let status = token_review(&controller, &token, &[]);
    assert_eq!(status["authenticated"], true, "{status}");
    assert_eq!(status["audiences"], json!([ISSUER]));
    let user = &status["user"];
    assert_eq!(user["username"], "system:serviceaccount:team:robot");
    assert_eq!(user["uid"], account_uid.as_str());
    assert_eq!(
        user["groups"],
        json!(["system:serviceaccounts", "system:serviceaccounts:team", "system:authenticated"])
    );
    let extra = &user["extra"];
    assert_eq!(extra["authentication.kubernetes.io/pod-name"], json!(["app"]));
    assert_eq!(extra["authentication.kubernetes.io/pod-uid"], json!([pod_uid]));
    assert_eq!(extra["authentication.kubernetes.io/node-name"], json!(["node-a"]));
    assert_eq!(extra["authentication.kubernetes.io/node-uid"], json!([node_uid]));
    assert!(extra["authentication.kubernetes.io/credential-id"][0].as_str().unwrap().starts_with("JTI="), "{extra}");

    // Audiences: a token for another audience is valid only for it.
    let for_vault = controller.kubectl(&["create", "token", "robot", "-n", "team", "--audience", "vault"]).unwrap();
    let for_vault = for_vault.trim();
    let status = token_review(&controller, for_vault, &["vault", "other"]);
    assert_eq!((&status["authenticated"], &status["audiences"]), (&json!(true), &json!(["vault"])), "{status}");
    let status = token_review(&controller, for_vault, &[]);
    assert_eq!(status["authenticated"], Value::Null, "{status}");
    assert_eq!(
        status["error"],
        format!("token audiences [\"vault\"] is invalid for the target audiences [\"{ISSUER}\"]")
    );
    let denied = kubectl_with_token(&controller, for_vault, &["auth", "whoami"]);
    assert!(String::from_utf8_lossy(&denied.stderr).contains("Unauthorized"), "the API is not the token's audience");

    // An expired token, signed with the cluster's key.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let expired = signed_token(
        &controller,
        &json!({
            "iss": ISSUER, "sub": "system:serviceaccount:team:robot", "aud": [ISSUER],
            "exp": now - 60, "iat": now - 3600, "nbf": now - 3600, "jti": "expired",
            "kubernetes.io": {"namespace": "team", "serviceaccount": {"name": "robot", "uid": account_uid}},
        }),
    );
    let status = token_review(&controller, &expired, &[]);
    assert_eq!(status, json!({"user": {}, "error": "service account token has expired"}));
    let status = token_review(&controller, "not-a-token", &[]);
    assert_eq!(status, json!({"user": {}}), "unknown tokens get no reason, as upstream");

    // Deleting the bound pod invalidates its token; deleting the account invalidates all of them.
    controller.kubectl(&["delete", "pod", "app", "-n", "team", "--force", "--grace-period=0"]).unwrap();
    eventually("the pod is gone", || controller.kubectl(&["get", "pod", "app", "-n", "team"]).is_err());
    let status = token_review(&controller, &token, &[]);
    assert_eq!(status, json!({"user": {}, "error": "pod \"app\" not found"}));
    let unbound = controller.kubectl(&["create", "token", "robot", "-n", "team"]).unwrap();
    assert_eq!(token_review(&controller, unbound.trim(), &[])["authenticated"], true);
    controller.kubectl(&["delete", "serviceaccount", "robot", "-n", "team"]).unwrap();
    let status = token_review(&controller, unbound.trim(), &[]);
    assert_eq!(status, json!({"user": {}, "error": "serviceaccount \"robot\" not found"}));
    controller.kubectl(&["create", "serviceaccount", "robot", "-n", "team"]).unwrap();
    let status = token_review(&controller, unbound.trim(), &[]);
    assert!(
        status["error"].as_str().unwrap().starts_with("service account UID ("),
        "a new account of the same name: {status}"
    );
    let denied = kubectl_with_token(&controller, unbound.trim(), &["auth", "whoami"]);
    assert!(String::from_utf8_lossy(&denied.stderr).contains("Unauthorized"), "requests use the same authenticator");
}

#[test]
fn token_reviews_of_bootstrap_tokens_and_who_may_ask() {
    let controller = Controller::start().expect("kaasd controller starts");
    let bootstrap_secret = |id: &str, expiration: &str| {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: bootstrap-token-{id}, namespace: kube-system}}\ntype: bootstrap.kubernetes.io/token\nstringData:\n  token-id: {id}\n  token-secret: 0123456789abcdef\n  usage-bootstrap-authentication: \"true\"\n  auth-extra-groups: system:bootstrappers:kaasd:workers\n  expiration: \"{expiration}\"\n"
        )
    };
    controller.kubectl_stdin(&["create", "-f", "-"], &bootstrap_secret("abcdef", "2999-01-01T00:00:00Z")).unwrap();
    controller.kubectl_stdin(&["create", "-f", "-"], &bootstrap_secret("oldold", "2000-01-01T00:00:00Z")).unwrap();
    let status = token_review(&controller, "abcdef.0123456789abcdef", &[]);
    assert_eq!(
        status,
        json!({
            "authenticated": true,
            "user": {
                "username": "system:bootstrap:abcdef",
                "groups": ["system:bootstrappers", "system:bootstrappers:kaasd:workers", "system:authenticated"],
            },
            "audiences": [ISSUER],
        })
    );
    assert_eq!(token_review(&controller, "oldold.0123456789abcdef", &[]), json!({"user": {}}), "expired");
    assert_eq!(token_review(&controller, "abcdef.0123456789abcdee", &[]), json!({"user": {}}), "wrong secret");
    assert_eq!(token_review(&controller, "abcdef.0123456789abcdef", &["vault"]), json!({"user": {}}), "audience");

    // Webhook authenticators ask with their own account, bound to system:auth-delegator.
    controller.kubectl(&["create", "serviceaccount", "webhook"]).unwrap();
    let review = "apiVersion: authentication.k8s.io/v1\nkind: TokenReview\nspec: {token: abcdef.0123456789abcdef}\n";
    // Client-side validation of a kind without PATCH would list CRDs, which the account may not: the server decides.
    let as_webhook =
        ["create", "-f", "-", "-o", "json", "--validate=false", "--as=system:serviceaccount:default:webhook"];
    let denied = controller.kubectl_stdin(&as_webhook, review).unwrap_err().to_string();
    assert!(denied.contains("cannot create resource \"tokenreviews\""), "{denied}");
    controller
        .kubectl(&[
            "create",
            "clusterrolebinding",
            "webhook-delegates",
            "--clusterrole=system:auth-delegator",
            "--serviceaccount=default:webhook",
        ])
        .unwrap();
    let answer = json(&controller.kubectl_stdin(&as_webhook, review).unwrap());
    assert_eq!(answer["status"]["user"]["username"], "system:bootstrap:abcdef");
    let empty = controller
        .kubectl_stdin(&["create", "-f", "-"], "apiVersion: authentication.k8s.io/v1\nkind: TokenReview\nspec: {}\n")
        .unwrap_err()
        .to_string();
    assert!(empty.contains("token is required for TokenReview"), "{empty}");
}

const LIST: &str = r#"
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: settings}
  data: {mode: fast}
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: web}
  spec:
    replicas: 1
    selector: {matchLabels: {app: web}}
    template:
      metadata: {labels: {app: web}}
      spec: {containers: [{name: c, image: nginx:1}]}
"#;

#[test]
fn apply_of_a_list_validates_against_openapi_v2_and_explain_reads_both_versions() {
    let controller = Controller::start().expect("kaasd controller starts");
    let list = controller.data_dir().join("list.yaml");
    std::fs::write(&list, LIST).unwrap();
    let list = list.to_str().unwrap();

    // Default validation: kubectl cannot ask the server to validate a List, so it fetches /openapi/v2 itself.
    let applied = controller.kubectl_output(&["apply", "-f", list, "-v=8"]).unwrap();
    let log = String::from_utf8_lossy(&applied.stderr);
    assert!(applied.status.success(), "{log}");
    let stdout = String::from_utf8_lossy(&applied.stdout);
    assert!(
        stdout.contains("configmap/settings created") && stdout.contains("deployment.apps/web created"),
        "{stdout}"
    );
    let request = log.lines().position(|line| line.contains("\"GET\"") && line.contains("/openapi/v2"));
    let request = request.unwrap_or_else(|| panic!("kubectl fetched /openapi/v2:\n{log}"));
    let exchange: Vec<&str> = log.lines().skip(request).take(12).collect();
    let exchange = exchange.join("\n");
    assert!(exchange.contains("application/com.github.proto-openapi.spec.v2@v1.0+protobuf"), "{exchange}");
    assert!(exchange.contains("200 OK"), "{exchange}");

    // The document is really used: a wrongly typed field in a List item is caught by kubectl, before any request.
    let bad = LIST.replace("data: {mode: fast}", "data: [fast]").replace("name: settings", "name: other");
    let message = controller.kubectl_stdin(&["apply", "-f", "-"], &bad).unwrap_err().to_string();
    assert!(message.contains("ValidationError(ConfigMap.data)"), "{message}");
    assert!(controller.kubectl(&["get", "configmap", "other"]).is_err(), "nothing was created");

    // Caching as upstream's handler does it: an ETag per encoding, 304 for a client that has that copy.
    let protobuf =
        curl_openapi_v2(&controller, &["-H", "Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf"]);
    assert!(protobuf.starts_with("HTTP/2 200"), "{protobuf}");
    let content_type = header(&protobuf, "content-type").unwrap();
    // `@` is not allowed in a media type, so the answer names the dotted spelling, as upstream's does.
    assert_eq!(content_type, "application/com.github.proto-openapi.spec.v2.v1.0+protobuf");
    let etag = header(&protobuf, "etag").expect("an ETag");
    let unchanged = curl_openapi_v2(
        &controller,
        &[
            "-H",
            "Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
            "-H",
            &format!("If-None-Match: {etag}"),
        ],
    );
    assert!(unchanged.starts_with("HTTP/2 304"), "{unchanged}");
    let json_copy =
        curl_openapi_v2(&controller, &["-H", "Accept: application/json", "-H", &format!("If-None-Match: {etag}")]);
    assert!(json_copy.starts_with("HTTP/2 200"), "another encoding has another ETag: {json_copy}");
    assert_eq!(header(&json_copy, "content-type").as_deref(), Some("application/json"));
    let refused = curl_openapi_v2(&controller, &["-H", "Accept: text/html"]);
    assert!(refused.starts_with("HTTP/2 406"), "{refused}");

    // explain from v3 (the default) and from v2.
    let from_v3 = controller.kubectl(&["explain", "deployment.spec.replicas"]).unwrap();
    let from_v2 =
        controller.kubectl(&["explain", "deployment.spec.replicas", "--output", "plaintext-openapiv2"]).unwrap();
    for explained in [&from_v3, &from_v2] {
        assert!(explained.contains("KIND:") && explained.contains("Deployment"), "{explained}");
        assert!(explained.contains("replicas") && explained.contains("integer"), "{explained}");
    }
    let fields = controller.kubectl(&["explain", "pods.spec.containers", "--output", "plaintext-openapiv2"]).unwrap();
    assert!(fields.contains("image") && fields.contains("<string>"), "{fields}");

    // JSON for everyone else, with the same definitions.
    let document = json(&controller.kubectl(&["get", "--raw", "/openapi/v2"]).unwrap());
    assert_eq!(document["swagger"], "2.0");
    let deployment = &document["definitions"]["io.k8s.api.apps.v1.Deployment"];
    assert_eq!(
        deployment["x-kubernetes-group-version-kind"],
        json!([{"group": "apps", "kind": "Deployment", "version": "v1"}])
    );
    let patch = &document["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
    assert!(patch["parameters"].as_array().unwrap().iter().any(|parameter| parameter["name"] == "fieldValidation"));
}

#[test]
fn openapi_v2_includes_custom_resources() {
    let controller = Controller::start().expect("kaasd controller starts");
    controller
        .kubectl_stdin(
            &["apply", "-f", "-"],
            r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: crontabs.stable.example.com}
spec:
  group: stable.example.com
  scope: Namespaced
  names: {plural: crontabs, singular: crontab, kind: CronTab}
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
            properties:
              cronSpec: {type: string, description: "when it runs"}
              replicas: {type: integer}
"#,
        )
        .unwrap();
    eventually("the CRD in /openapi/v2", || {
        controller.kubectl(&["get", "--raw", "/openapi/v2"]).is_ok_and(|text| {
            json(&text)["definitions"]["com.example.stable.v1.CronTab"]["properties"]["spec"]["properties"]["cronSpec"]
                ["type"]
                == "string"
        })
    });
    let explained =
        controller.kubectl(&["explain", "crontabs.spec.cronSpec", "--output", "plaintext-openapiv2"]).unwrap();
    assert!(explained.contains("when it runs"), "{explained}");
    let list = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: stable.example.com/v1\n  kind: CronTab\n  metadata: {name: nightly}\n  spec: {cronSpec: '0 0 * * *', replicas: 1}\n";
    controller.kubectl_stdin(&["apply", "-f", "-"], list).unwrap();
    let wrong = list.replace("replicas: 1", "replicas: many").replace("nightly", "broken");
    let message = controller.kubectl_stdin(&["apply", "-f", "-"], &wrong).unwrap_err().to_string();
    assert!(message.contains("ValidationError(CronTab.spec.replicas)"), "{message}");
}
