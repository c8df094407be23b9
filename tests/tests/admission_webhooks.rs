//! Admission webhooks against a real `kaasd controller`: the test process serves real HTTPS webhooks (hyper and
//! rustls, a certificate from its own CA passed as caBundle), registers them with kubectl and checks what kubectl
//! sees: denials with the webhook's message, patches, failure policies with the webhook down or too slow,
//! namespace and object selectors, DELETE reviews, dry runs, webhooks reached through a Service, and the
//! validation of webhook configurations.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use kaasd_e2e::controller::Controller;
use serde_json::{json, Value};

/// How long `/slow` takes to answer: longer than its webhook's timeout.
const SLOW_ANSWER: Duration = Duration::from_secs(4);
/// The label the mutating webhook adds.
const MUTATED_LABEL: &str = "admission.kaasd.test/mutated";

/// An HTTPS webhook server in this process. Every path answers differently (see [`answer`]); every review it
/// receives is kept, by path.
struct WebhookServer {
    address: SocketAddr,
    ca_bundle: String,
    reviews: Arc<Mutex<HashMap<String, Vec<Value>>>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl WebhookServer {
    fn start() -> WebhookServer {
        let ca_key = rcgen::KeyPair::generate().expect("a CA key");
        let mut ca_params = rcgen::CertificateParams::default();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "webhook test CA");
        let ca = ca_params.self_signed(&ca_key).expect("a CA certificate");
        let issuer = rcgen::Issuer::from_ca_cert_pem(&ca.pem(), &ca_key).expect("the CA as issuer");
        let key = rcgen::KeyPair::generate().expect("a server key");
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string(), "hooks.webhooks.svc".to_string()])
            .expect("server names");
        params.subject_alt_names.push(rcgen::SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
        let certificate = params.signed_by(&key, &issuer).expect("a server certificate");
        let chain = vec![certificate.der().clone()];
        let private_key = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("a private key");
        let mut config =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("TLS versions")
                .with_no_client_auth()
                .with_single_cert(chain, private_key)
                .expect("a TLS server configuration");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("a webhook port");
        let address = listener.local_addr().unwrap();
        let reviews: Arc<Mutex<HashMap<String, Vec<Value>>>> = Arc::default();
        let kept = reviews.clone();
        runtime.spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else { continue };
                let (acceptor, kept) = (acceptor.clone(), kept.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(socket).await else { return };
                    let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                        let kept = kept.clone();
                        async move {
                            let path = request.uri().path().to_string();
                            let body = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            let review: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                            kept.lock().unwrap().entry(path.clone()).or_default().push(review.clone());
                            if path == "/slow" {
                                tokio::time::sleep(SLOW_ANSWER).await;
                            }
                            let answer = json!({
                                "apiVersion": "admission.k8s.io/v1",
                                "kind": "AdmissionReview",
                                "response": answer(&path, &review["request"]),
                            });
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from(
                                serde_json::to_vec(&answer).unwrap(),
                            ))))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        WebhookServer {
            address,
            ca_bundle: base64::engine::general_purpose::STANDARD.encode(ca.pem()),
            reviews,
            runtime: Some(runtime),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.address.port())
    }

    fn reviews(&self, path: &str) -> Vec<Value> {
        self.reviews.lock().unwrap().get(path).cloned().unwrap_or_default()
    }

    /// Stops serving: the listener and every connection are gone when this returns, so later calls fail to
    /// connect.
    fn stop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

impl Drop for WebhookServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What the test's webhooks answer, by path.
fn answer(path: &str, request: &Value) -> Value {
    let uid = request["uid"].clone();
    let name = request["name"].as_str().unwrap_or("");
    match path {
        // Denies objects whose name starts with `deny-`, with a message and a warning.
        "/deny" if name.starts_with("deny-") => json!({
            "uid": uid, "allowed": false,
            "status": {"code": 403, "reason": "Forbidden", "message": format!("the name {name} is not allowed here")},
            "warnings": ["the deny webhook looked at this"],
        }),
        // Denies every DELETE.
        "/no-delete" if request["operation"] == "DELETE" => json!({
            "uid": uid, "allowed": false, "status": {"message": "deleting is switched off"},
        }),
        // Adds a label with a JSON patch.
        "/mutate" => {
            let patch = if request.pointer("/object/metadata/labels").is_some_and(Value::is_object) {
                json!([{"op": "add", "path": format!("/metadata/labels/{}", MUTATED_LABEL.replace('/', "~1")), "value": "yes"}])
            } else {
                json!([{"op": "add", "path": "/metadata/labels", "value": {MUTATED_LABEL: "yes"}}])
            };
            let encoded = base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&patch).unwrap());
            json!({"uid": uid, "allowed": true, "patchType": "JSONPatch", "patch": encoded})
        }
        _ => json!({"uid": uid, "allowed": true, "warnings": [format!("seen by {path}")]}),
    }
}

/// One webhook of a configuration on configmaps (CREATE, UPDATE and DELETE), with the given extra fields.
fn configmap_webhook(name: &str, client_config: Value, extra: Value) -> Value {
    let mut hook = json!({
        "name": name,
        "clientConfig": client_config,
        "rules": [{"operations": ["CREATE", "UPDATE", "DELETE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}],
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
        "timeoutSeconds": 2,
    });
    for (key, value) in extra.as_object().into_iter().flatten() {
        hook[key] = value.clone();
    }
    hook
}

fn url_config(server: &WebhookServer, path: &str) -> Value {
    json!({"url": server.url(path), "caBundle": server.ca_bundle})
}

fn apply(controller: &Controller, object: &Value) {
    controller.kubectl_stdin(&["apply", "-f", "-"], &object.to_string()).expect("kubectl apply succeeds");
}

fn configuration(kind: &str, name: &str, webhooks: Vec<Value>) -> Value {
    json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": kind, "metadata": {"name": name}, "webhooks": webhooks})
}

/// `kubectl create configmap NAME` in `namespace` with `labels`; the output whatever the exit status.
fn create_configmap(
    controller: &Controller,
    namespace: &str,
    name: &str,
    labels: &[(&str, &str)],
) -> std::process::Output {
    let mut metadata = json!({"name": name, "namespace": namespace});
    if !labels.is_empty() {
        metadata["labels"] =
            labels.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>().into();
    }
    let object = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": {"a": "b"}});
    let mut child = controller
        .kubectl_command(&["create", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(object.to_string().as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Retries `attempt` (given the attempt number) until it returns true: webhook configurations take effect once
/// the API server's cache has followed the write, a moment after kubectl returns.
fn eventually(what: &str, mut attempt: impl FnMut(usize) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut number = 0;
    while !attempt(number) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        number += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn configmap_exists(controller: &Controller, namespace: &str, name: &str) -> bool {
    controller.kubectl_output(&["get", "configmap", name, "-n", namespace]).unwrap().status.success()
}

#[test]
fn validating_webhooks_deny_allow_and_see_deletes() {
    let controller = Controller::start().expect("kaasd controller starts");
    let server = WebhookServer::start();
    controller.kubectl(&["create", "namespace", "checked"]).unwrap();
    controller.kubectl(&["create", "namespace", "skipped"]).unwrap();
    controller.kubectl(&["label", "namespace", "skipped", "webhooks=off"]).unwrap();
    apply(
        &controller,
        &configuration(
            "ValidatingWebhookConfiguration",
            "checks",
            vec![
                configmap_webhook(
                    "deny.webhooks.kaasd.test",
                    url_config(&server, "/deny"),
                    json!({
                        "namespaceSelector": {"matchExpressions": [{"key": "webhooks", "operator": "NotIn", "values": ["off"]}]},
                        "objectSelector": {"matchExpressions": [{"key": "skip-webhooks", "operator": "DoesNotExist"}]},
                    }),
                ),
                configmap_webhook("allow.webhooks.kaasd.test", url_config(&server, "/allow"), json!({})),
                configmap_webhook(
                    "no-delete.webhooks.kaasd.test",
                    url_config(&server, "/no-delete"),
                    json!({
                        "objectSelector": {"matchLabels": {"protected": "yes"}},
                    }),
                ),
            ],
        ),
    );

    // Denied, with the webhook's message and code, once the configuration is in effect.
    let mut denied = None;
    eventually("the deny webhook to deny", |attempt| {
        let name = format!("deny-{attempt}");
        let output = create_configmap(&controller, "checked", &name, &[]);
        let failed = !output.status.success();
        if failed {
            denied = Some((name, stderr(&output)));
        }
        failed
    });
    let (denied_name, denied) = denied.unwrap();
    assert!(
        denied.contains("admission webhook \"deny.webhooks.kaasd.test\" denied the request: the name deny-"),
        "{denied}"
    );
    assert!(
        denied.contains("is forbidden") || denied.contains("(Forbidden)"),
        "upstream's 403 as kubectl prints it: {denied}"
    );
    assert!(!configmap_exists(&controller, "checked", &denied_name));

    // Allowed: both webhooks saw a CREATE review of the object as stored, and the warning reaches kubectl.
    let allowed = create_configmap(&controller, "checked", "fine", &[]);
    assert!(allowed.status.success(), "{}", stderr(&allowed));
    assert!(stderr(&allowed).contains("Warning: seen by /allow"), "{}", stderr(&allowed));
    let review =
        server.reviews("/allow").into_iter().find(|r| r["request"]["name"] == "fine").expect("a review of fine");
    let request = &review["request"];
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(request["operation"], "CREATE");
    assert_eq!(request["namespace"], "checked");
    assert_eq!(request["kind"], json!({"group": "", "version": "v1", "kind": "ConfigMap"}));
    assert_eq!(request["resource"], json!({"group": "", "version": "v1", "resource": "configmaps"}));
    assert_eq!(request["object"]["data"], json!({"a": "b"}));
    assert!(request["object"]["metadata"]["uid"].is_string(), "{request}");
    assert_eq!(request["oldObject"], Value::Null);
    assert_eq!(request["userInfo"]["username"], "kubernetes-admin", "{request}");
    assert_eq!(request["options"]["kind"], "CreateOptions");
    assert_eq!(request["dryRun"], false);

    // Selectors exclude: a namespace labelled off, an object labelled to skip.
    let other_namespace = create_configmap(&controller, "skipped", "deny-elsewhere", &[]);
    assert!(other_namespace.status.success(), "namespaceSelector should exclude: {}", stderr(&other_namespace));
    let labelled = create_configmap(&controller, "checked", "deny-labelled", &[("skip-webhooks", "yes")]);
    assert!(labelled.status.success(), "objectSelector should exclude: {}", stderr(&labelled));

    // UPDATE carries the old object.
    controller.kubectl(&["label", "configmap", "fine", "-n", "checked", "step=two"]).unwrap();
    let update = server
        .reviews("/allow")
        .into_iter()
        .find(|r| r["request"]["operation"] == "UPDATE" && r["request"]["name"] == "fine")
        .expect("an UPDATE review");
    assert_eq!(update["request"]["object"]["metadata"]["labels"]["step"], "two");
    assert!(update["request"]["oldObject"]["metadata"].get("labels").is_none(), "{update}");

    // DELETE: reviewed with the old object; the no-delete webhook refuses for protected objects only.
    controller.kubectl(&["delete", "configmap", "fine", "-n", "checked"]).unwrap();
    let delete = server
        .reviews("/allow")
        .into_iter()
        .find(|r| r["request"]["operation"] == "DELETE" && r["request"]["name"] == "fine")
        .expect("a DELETE review");
    assert_eq!(delete["request"]["object"], Value::Null);
    assert_eq!(delete["request"]["oldObject"]["metadata"]["name"], "fine");
    assert_eq!(delete["request"]["options"]["kind"], "DeleteOptions");
    let protected = create_configmap(&controller, "checked", "keep", &[("protected", "yes")]);
    assert!(protected.status.success(), "{}", stderr(&protected));
    let refused = controller.kubectl_output(&["delete", "configmap", "keep", "-n", "checked"]).unwrap();
    assert!(!refused.status.success(), "the delete should be denied");
    assert!(
        stderr(&refused).contains(
            "admission webhook \"no-delete.webhooks.kaasd.test\" denied the request: deleting is switched off"
        ),
        "{}",
        stderr(&refused)
    );
    assert!(configmap_exists(&controller, "checked", "keep"));

    // Webhook configurations themselves are never sent to webhooks, so removing them always works.
    controller.kubectl(&["delete", "validatingwebhookconfiguration", "checks"]).unwrap();
    eventually("the webhooks to be gone", |attempt| {
        create_configmap(&controller, "checked", &format!("deny-after-{attempt}"), &[]).status.success()
    });
}

#[test]
fn mutating_webhooks_patch_before_validation() {
    let controller = Controller::start().expect("kaasd controller starts");
    let server = WebhookServer::start();
    controller.kubectl(&["create", "namespace", "mutated"]).unwrap();
    apply(
        &controller,
        &configuration(
            "MutatingWebhookConfiguration",
            "labeller",
            vec![configmap_webhook(
                "label.webhooks.kaasd.test",
                url_config(&server, "/mutate"),
                json!({
                    "reinvocationPolicy": "IfNeeded",
                }),
            )],
        ),
    );
    // Validating webhooks see the object as mutated.
    apply(
        &controller,
        &configuration(
            "ValidatingWebhookConfiguration",
            "observer",
            vec![configmap_webhook("observe.webhooks.kaasd.test", url_config(&server, "/observe"), json!({}))],
        ),
    );
    eventually("the mutating webhook to label", |attempt| {
        let name = format!("probe-{attempt}");
        let output = create_configmap(&controller, "mutated", &name, &[("team", "a")]);
        assert!(output.status.success(), "{}", stderr(&output));
        let label = controller
            .kubectl(&[
                "get",
                "configmap",
                &name,
                "-n",
                "mutated",
                "-o",
                &format!("jsonpath={{.metadata.labels.{}}}", MUTATED_LABEL.replace('.', "\\.")),
            ])
            .unwrap();
        label == "yes" && server.reviews("/observe").iter().any(|r| r["request"]["name"] == name.as_str())
    });
    // A configmap without labels gets the whole labels map.
    let output = create_configmap(&controller, "mutated", "bare", &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let labels: Value = serde_json::from_str(
        &controller
            .kubectl(&["get", "configmap", "bare", "-n", "mutated", "-o", "jsonpath={.metadata.labels}"])
            .unwrap(),
    )
    .unwrap();
    assert_eq!(labels, json!({MUTATED_LABEL: "yes"}));
    let observed = server.reviews("/observe").into_iter().find(|r| r["request"]["name"] == "bare").expect("observed");
    assert_eq!(observed["request"]["object"]["metadata"]["labels"][MUTATED_LABEL], "yes", "validation sees the patch");
    // Alone, the webhook is not reinvoked: nothing changed the object after it.
    let calls = server.reviews("/mutate").iter().filter(|r| r["request"]["name"] == "bare").count();
    assert_eq!(calls, 1);
}

#[test]
fn failure_policies_and_timeouts() {
    let controller = Controller::start().expect("kaasd controller starts");
    let mut server = WebhookServer::start();
    controller.kubectl(&["create", "namespace", "fail"]).unwrap();
    controller.kubectl(&["create", "namespace", "ignore"]).unwrap();
    controller.kubectl(&["create", "namespace", "slow"]).unwrap();
    let in_namespace =
        |namespace: &str| json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}});
    let mut slow = configmap_webhook("slow.webhooks.kaasd.test", url_config(&server, "/slow"), in_namespace("slow"));
    slow["timeoutSeconds"] = json!(1);
    apply(
        &controller,
        &configuration(
            "ValidatingWebhookConfiguration",
            "policies",
            vec![
                configmap_webhook(
                    "closed.webhooks.kaasd.test",
                    url_config(&server, "/allow-closed"),
                    in_namespace("fail"),
                ),
                {
                    let mut open = configmap_webhook(
                        "open.webhooks.kaasd.test",
                        url_config(&server, "/allow-open"),
                        in_namespace("ignore"),
                    );
                    open["failurePolicy"] = json!("Ignore");
                    open
                },
                slow,
            ],
        ),
    );
    eventually("the webhooks to be called", |attempt| {
        let _ = create_configmap(&controller, "fail", &format!("probe-{attempt}"), &[]);
        !server.reviews("/allow-closed").is_empty()
    });

    // Too slow: the webhook's 1 s timeout fails the request (failurePolicy Fail), and in about that time.
    let started = Instant::now();
    let slow = create_configmap(&controller, "slow", "late", &[]);
    assert!(!slow.status.success(), "a webhook slower than its timeout fails the request");
    assert!(started.elapsed() < Duration::from_secs(4), "took {:?}", started.elapsed());
    assert!(
        stderr(&slow).contains("Internal error occurred: failed calling webhook \"slow.webhooks.kaasd.test\": failed to call webhook: Post \"https://127.0.0.1:")
            && stderr(&slow).contains("/slow?timeout=1s\": context deadline exceeded"),
        "{}",
        stderr(&slow)
    );

    // The webhook server goes away.
    server.stop();
    let closed = create_configmap(&controller, "fail", "refused", &[]);
    assert!(!closed.status.success(), "failurePolicy Fail rejects when the webhook is down");
    assert!(
        stderr(&closed).contains("Internal error occurred: failed calling webhook \"closed.webhooks.kaasd.test\": failed to call webhook: Post"),
        "{}",
        stderr(&closed)
    );
    assert!(!configmap_exists(&controller, "fail", "refused"));
    let open = create_configmap(&controller, "ignore", "passes", &[]);
    assert!(open.status.success(), "failurePolicy Ignore lets the request through: {}", stderr(&open));
    // Namespaces no webhook selects are untouched.
    let untouched = create_configmap(&controller, "default", "untouched", &[]);
    assert!(untouched.status.success(), "{}", stderr(&untouched));
}

#[test]
fn service_webhooks_dry_runs_and_configuration_validation() {
    let controller = Controller::start().expect("kaasd controller starts");
    let server = WebhookServer::start();
    // A selector-less Service whose EndpointSlice points at the test's server: the API server dials the endpoint
    // and checks the certificate against hooks.webhooks.svc.
    controller.kubectl(&["create", "namespace", "webhooks"]).unwrap();
    apply(
        &controller,
        &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "hooks", "namespace": "webhooks"},
                "spec": {"ports": [{"name": "https", "port": 443, "targetPort": server.address.port()}]}}),
    );
    apply(
        &controller,
        &json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": "hooks-1", "namespace": "webhooks", "labels": {"kubernetes.io/service-name": "hooks"}},
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": true}}],
                "ports": [{"name": "https", "port": server.address.port(), "protocol": "TCP"}]}),
    );
    let service =
        json!({"service": {"namespace": "webhooks", "name": "hooks", "path": "/deny"}, "caBundle": server.ca_bundle});
    let mut dry = configmap_webhook(
        "dry.webhooks.kaasd.test",
        json!({"service": {"namespace": "webhooks", "name": "hooks", "path": "/dry"}, "caBundle": server.ca_bundle}),
        json!({}),
    );
    dry["sideEffects"] = json!("NoneOnDryRun");
    apply(
        &controller,
        &configuration(
            "ValidatingWebhookConfiguration",
            "by-service",
            vec![configmap_webhook("service.webhooks.kaasd.test", service, json!({})), dry],
        ),
    );
    let mut denied = String::new();
    eventually("the service webhook to deny", |attempt| {
        let output = create_configmap(&controller, "default", &format!("deny-{attempt}"), &[]);
        denied = stderr(&output);
        !output.status.success()
    });
    assert!(denied.contains("admission webhook \"service.webhooks.kaasd.test\" denied the request"), "{denied}");
    let review = server.reviews("/deny").pop().expect("the service webhook was called");
    assert_eq!(review["request"]["operation"], "CREATE");

    // A dry run reaches webhooks that declare NoneOnDryRun, with dryRun set, and stores nothing.
    let dry_run =
        controller.kubectl_output(&["create", "configmap", "dry", "--dry-run=server", "--from-literal=a=b"]).unwrap();
    assert!(dry_run.status.success(), "{}", stderr(&dry_run));
    let seen = server.reviews("/dry").into_iter().find(|r| r["request"]["name"] == "dry").expect("the dry-run review");
    assert_eq!(seen["request"]["dryRun"], true);
    assert_eq!(seen["request"]["options"]["dryRun"], json!(["All"]));
    assert!(!configmap_exists(&controller, "default", "dry"));

    // Upstream's write-time validation: v1 allows only side-effect-free webhooks, names need three segments,
    // URLs must be https.
    let mut some = configmap_webhook("some.webhooks.kaasd.test", url_config(&server, "/allow"), json!({}));
    some["sideEffects"] = json!("Some");
    let mut short = configmap_webhook("short.name", url_config(&server, "/allow"), json!({}));
    short["clientConfig"]["url"] = json!("http://127.0.0.1/allow");
    let invalid = controller
        .kubectl_command(&["create", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            let body = configuration("ValidatingWebhookConfiguration", "invalid", vec![some, short]).to_string();
            child.stdin.take().unwrap().write_all(body.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(!invalid.status.success());
    let message = stderr(&invalid);
    for expected in [
        "The ValidatingWebhookConfiguration \"invalid\" is invalid",
        "webhooks[0].sideEffects: Unsupported value: \"Some\": supported values: \"None\", \"NoneOnDryRun\"",
        "webhooks[1].name: Invalid value: \"short.name\": should be a domain with at least three segments separated by dots",
        "webhooks[1].clientConfig.url: Invalid value: \"http\": 'https' is the only allowed URL scheme; desired format: https://host[/path]",
    ] {
        assert!(message.contains(expected), "missing {expected:?} in {message}");
    }
    // Defaults as upstream sets them.
    let stored: Value = serde_json::from_str(
        &controller.kubectl(&["get", "validatingwebhookconfiguration", "by-service", "-o", "json"]).unwrap(),
    )
    .unwrap();
    let hook = &stored["webhooks"][0];
    assert_eq!(hook["failurePolicy"], "Fail");
    assert_eq!(hook["matchPolicy"], "Equivalent");
    assert_eq!(hook["clientConfig"]["service"]["port"], 443);
    assert_eq!(hook["rules"][0]["scope"], "*");
}

/// matchConditions, as the conformance entries "should reject mutating/validating webhook configurations with
/// invalid match conditions" use them, and what they decide: a condition that does not compile refuses the configuration; a webhook is called only
/// for requests every condition holds for; a condition that fails to evaluate follows the failure policy.
#[test]
fn match_conditions_choose_which_requests_reach_a_webhook() {
    let controller = Controller::start().expect("kaasd controller starts");
    let server = WebhookServer::start();
    controller.kubectl(&["create", "namespace", "conditions"]).unwrap();
    let in_namespace = json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "conditions"}}});

    let mut broken =
        configmap_webhook("broken.webhooks.kaasd.test", url_config(&server, "/deny"), in_namespace.clone());
    broken["matchConditions"] = json!([{"name": "broken", "expression": "object.metadata.name =="}]);
    for kind in ["ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"] {
        let refused = controller
            .kubectl_stdin(&["create", "-f", "-"], &configuration(kind, "broken", vec![broken.clone()]).to_string())
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("webhooks[0].matchConditions[0].expression: Invalid value: \"object.metadata.name ==\": compilation failed"),
            "{kind}: {refused}"
        );
    }

    // Only CREATEs of objects labelled `checked: "yes"` go to the deny webhook; its own rule denies `deny-` names.
    let mut deny = configmap_webhook("deny.webhooks.kaasd.test", url_config(&server, "/deny"), in_namespace.clone());
    deny["matchConditions"] = json!([
        {"name": "creates-only", "expression": "request.operation == 'CREATE'"},
        {"name": "labelled", "expression": "has(object.metadata.labels) && object.metadata.labels['checked'] == 'yes'"},
    ]);
    // For `strict-` names, a condition that cannot be evaluated (no such key) with failurePolicy Fail refuses the
    // request; for other names the first condition is false, which skips the webhook whatever the second does.
    let mut strict =
        configmap_webhook("strict.webhooks.kaasd.test", url_config(&server, "/allow-strict"), in_namespace);
    strict["matchConditions"] = json!([
        {"name": "strict-names", "expression": "object.metadata.name.startsWith('strict-')"},
        {"name": "needs-data", "expression": "object.data['required'] == 'x'"},
    ]);
    apply(&controller, &configuration("ValidatingWebhookConfiguration", "conditions", vec![deny, strict]));
    eventually("the conditions to apply", |attempt| {
        let output =
            create_configmap(&controller, "conditions", &format!("deny-probe-{attempt}"), &[("checked", "yes")]);
        stderr(&output).contains("the name deny-probe")
    });
    let unlabelled = create_configmap(&controller, "conditions", "deny-unlabelled", &[]);
    assert!(unlabelled.status.success(), "no webhook was asked: {}", stderr(&unlabelled));
    let strict = create_configmap(&controller, "conditions", "strict-one", &[]);
    assert!(
        stderr(&strict).contains(
            "failed calling webhook \"strict.webhooks.kaasd.test\": matchCondition \"needs-data\" cannot be evaluated"
        ),
        "{}",
        stderr(&strict)
    );
    assert!(!configmap_exists(&controller, "conditions", "strict-one"));
    assert!(server.reviews("/allow-strict").is_empty(), "a condition that cannot be evaluated calls nothing");
    let reviews_before = server.reviews("/deny").len();
    let labelled = create_configmap(&controller, "conditions", "deny-labelled", &[("checked", "yes")]);
    assert!(stderr(&labelled).contains("the name deny-labelled is not allowed here"), "{}", stderr(&labelled));
    assert_eq!(server.reviews("/deny").len(), reviews_before + 1);
}

/// "[sig-api-machinery] AdmissionWebhook [Privileged:ClusterAdmin] should mutate everything except 'skip-me'
/// configmaps [Conformance]": a mutating webhook whose matchCondition leaves out ConfigMaps named skip-me.
#[test]
fn admission_webhook_should_mutate_everything_except_skip_me_configmaps() {
    let controller = Controller::start().expect("kaasd controller starts");
    let server = WebhookServer::start();
    controller.kubectl(&["create", "namespace", "skipping"]).unwrap();
    let in_namespace = json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "skipping"}}});
    let mut hook = configmap_webhook("skip.webhooks.kaasd.test", url_config(&server, "/mutate"), in_namespace);
    hook["rules"][0]["operations"] = json!(["CREATE"]);
    hook["matchConditions"] = json!([{"name": "exclude-skip-me", "expression": "object.metadata.name != 'skip-me'"}]);
    apply(&controller, &configuration("MutatingWebhookConfiguration", "skipper", vec![hook]));
    let label = format!("jsonpath={{.metadata.labels.{}}}", MUTATED_LABEL.replace('.', "\\."));
    let label_of =
        |name: &str| controller.kubectl(&["get", "configmap", name, "-n", "skipping", "-o", &label]).unwrap();
    eventually("the webhook to mutate", |attempt| {
        let name = format!("probe-{attempt}");
        let output = create_configmap(&controller, "skipping", &name, &[]);
        assert!(output.status.success(), "{}", stderr(&output));
        label_of(&name) == "yes"
    });
    let output = create_configmap(&controller, "skipping", "skip-me", &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(label_of("skip-me"), "", "skip-me is not mutated");
    assert!(server.reviews("/mutate").iter().all(|review| review["request"]["name"] != "skip-me"), "nor sent");
}
