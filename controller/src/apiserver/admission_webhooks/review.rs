//! AdmissionReview (admission.k8s.io/v1, or v1beta1 for webhooks that accept only that): the request kaasd sends
//! and what the webhook's answer means, as upstream's `VerifyAdmissionResponse` and `ToStatusErr` read it.

use base64::Engine;
use serde_json::{json, Map, Value};

use super::matching::GroupVersionResource;
use crate::apiserver::error::{ApiError, Cause, Details};

/// Everything an AdmissionReview request carries.
pub struct ReviewRequest<'a> {
    pub uid: &'a str,
    /// The version the webhook is called with (its matched rule's).
    pub resource: &'a GroupVersionResource,
    /// The version the client asked for.
    pub requested: &'a GroupVersionResource,
    pub subresource: &'a str,
    pub name: &'a str,
    pub namespace: &'a str,
    pub operation: &'a str,
    pub user_info: &'a Value,
    pub object: Option<&'a Value>,
    pub old_object: Option<&'a Value>,
    pub dry_run: bool,
    pub options: &'a Value,
}

/// The AdmissionReview document sent to a webhook.
pub fn review(version: &str, request: &ReviewRequest<'_>) -> Value {
    let kind = |gvr: &GroupVersionResource| json!({"group": gvr.group, "version": gvr.version, "kind": gvr.kind});
    let resource =
        |gvr: &GroupVersionResource| json!({"group": gvr.group, "version": gvr.version, "resource": gvr.resource});
    let mut body = Map::new();
    body.insert("uid".into(), json!(request.uid));
    body.insert("kind".into(), kind(request.resource));
    body.insert("resource".into(), resource(request.resource));
    if !request.subresource.is_empty() {
        body.insert("subResource".into(), json!(request.subresource));
    }
    body.insert("requestKind".into(), kind(request.requested));
    body.insert("requestResource".into(), resource(request.requested));
    if !request.subresource.is_empty() {
        body.insert("requestSubResource".into(), json!(request.subresource));
    }
    if !request.name.is_empty() {
        body.insert("name".into(), json!(request.name));
    }
    if !request.namespace.is_empty() {
        body.insert("namespace".into(), json!(request.namespace));
    }
    body.insert("operation".into(), json!(request.operation));
    body.insert("userInfo".into(), request.user_info.clone());
    body.insert("object".into(), request.object.cloned().unwrap_or(Value::Null));
    body.insert("oldObject".into(), request.old_object.cloned().unwrap_or(Value::Null));
    body.insert("dryRun".into(), json!(request.dry_run));
    body.insert("options".into(), request.options.clone());
    json!({"kind": "AdmissionReview", "apiVersion": format!("admission.k8s.io/{version}"), "request": body})
}

/// What a webhook answered.
#[derive(Debug)]
pub enum Verdict {
    /// Allowed; a mutating webhook may have sent a JSON patch.
    Allowed { patch: Option<Value>, warnings: Vec<String> },
    /// Denied: the error the client gets.
    Denied { error: ApiError, warnings: Vec<String> },
}

/// Reads a webhook's answer. An `Err` is a failure to call the webhook (the failure policy decides), with
/// upstream's wording.
pub fn interpret(webhook: &str, uid: &str, version: &str, mutating: bool, body: &[u8]) -> Result<Verdict, String> {
    let review: Value =
        serde_json::from_slice(body).map_err(|error| format!("received invalid webhook response: {error}"))?;
    let Some(response) = review.get("response").filter(|response| response.is_object()) else {
        return Err("webhook response was absent".into());
    };
    let got_uid = response["uid"].as_str().unwrap_or("");
    if got_uid != uid {
        return Err(format!("expected response.uid={uid:?}, got {got_uid:?}"));
    }
    let expected = format!("admission.k8s.io/{version}");
    let api_version = review["apiVersion"].as_str().unwrap_or("");
    let kind = review["kind"].as_str().unwrap_or("");
    if version == "v1" && (api_version != expected || kind != "AdmissionReview") {
        let (group, got_version) = api_version.split_once('/').unwrap_or(("", api_version));
        return Err(format!(
            "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got {group}/{got_version}, Kind={kind}"
        ));
    }
    let patch = response["patch"].as_str().filter(|patch| !patch.is_empty());
    let patch_type = response["patchType"].as_str().filter(|patch_type| !patch_type.is_empty());
    match (mutating, patch, patch_type) {
        (true, Some(_), None) => return Err("webhook returned response.patch but not response.patchType".into()),
        (true, None, Some(_)) => return Err("webhook returned response.patchType but not response.patch".into()),
        (false, Some(_), _) => return Err("validating webhook may not return response.patch".into()),
        (false, None, Some(_)) => return Err("validating webhook may not return response.patchType".into()),
        _ => {}
    }
    let warnings: Vec<String> = response["warnings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(sanitize_warning)
        .filter(|warning| !warning.is_empty())
        .collect();
    if response["allowed"].as_bool() != Some(true) {
        return Ok(Verdict::Denied { error: denial(webhook, response.get("status")), warnings });
    }
    let patch = match (patch, patch_type) {
        (Some(encoded), Some("JSONPatch")) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|error| format!("the patch is not base64: {error}"))?;
            let patch: Value =
                serde_json::from_slice(&bytes).map_err(|error| format!("the patch is not JSON: {error}"))?;
            if !patch.is_array() {
                return Err("the patch is not a JSON Patch (an array of operations)".into());
            }
            Some(patch)
        }
        (Some(_), Some(other)) => return Err(format!("unsupported patch type {other:?}")),
        _ => None,
    };
    Ok(Verdict::Allowed { patch, warnings })
}

/// Upstream's `ToStatusErr`: the webhook's status, at least 400, with the message saying which webhook denied.
fn denial(webhook: &str, status: Option<&Value>) -> ApiError {
    let empty = json!({});
    let status = status.unwrap_or(&empty);
    let denied_by = format!("admission webhook {webhook:?} denied the request");
    let message = status["message"].as_str().filter(|message| !message.is_empty());
    let reason = status["reason"].as_str().filter(|reason| !reason.is_empty());
    let message = match (message, reason) {
        (Some(message), _) => format!("{denied_by}: {message}"),
        (None, Some(reason)) => format!("{denied_by}: {reason}"),
        (None, None) => format!("{denied_by} without explanation"),
    };
    let code =
        status["code"].as_u64().and_then(|code| u16::try_from(code).ok()).filter(|code| (400..600).contains(code));
    let mut error = ApiError::new(code.unwrap_or(400), known_reason(reason.unwrap_or("")), message);
    if let Some(details) = status.get("details").filter(|details| details.is_object()) {
        error = error.with_details(Details {
            name: details["name"].as_str().unwrap_or("").to_string(),
            group: details["group"].as_str().unwrap_or("").to_string(),
            kind: details["kind"].as_str().unwrap_or("").to_string(),
            uid: details["uid"].as_str().unwrap_or("").to_string(),
            causes: details["causes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|cause| Cause {
                    reason: cause["reason"].as_str().unwrap_or("").to_string(),
                    message: cause["message"].as_str().unwrap_or("").to_string(),
                    field: cause["field"].as_str().unwrap_or("").to_string(),
                })
                .collect(),
            retry_after_seconds: details["retryAfterSeconds"].as_u64().and_then(|s| u32::try_from(s).ok()),
        });
    }
    error
}

/// A webhook's `status.reason` when it is one of metav1's StatusReasons (the Status body carries only those).
fn known_reason(reason: &str) -> &'static str {
    const REASONS: [&str; 17] = [
        "Unauthorized",
        "Forbidden",
        "NotFound",
        "AlreadyExists",
        "Conflict",
        "Gone",
        "Invalid",
        "ServerTimeout",
        "Timeout",
        "TooManyRequests",
        "BadRequest",
        "MethodNotAllowed",
        "NotAcceptable",
        "RequestEntityTooLarge",
        "UnsupportedMediaType",
        "InternalError",
        "ServiceUnavailable",
    ];
    REASONS.iter().find(|known| **known == reason).copied().unwrap_or("")
}

/// A warning as an HTTP header can carry it: printable characters only, at most 4 KiB.
fn sanitize_warning(warning: &str) -> String {
    warning.chars().filter(|c| !c.is_control()).take(4096).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(response: Value) -> Vec<u8> {
        serde_json::to_vec(
            &json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}),
        )
        .unwrap()
    }

    #[test]
    fn the_request_names_both_versions() {
        let v1 =
            GroupVersionResource { group: "g".into(), version: "v1".into(), resource: "ws".into(), kind: "W".into() };
        let v2 = GroupVersionResource { version: "v2".into(), ..v1.clone() };
        let object = json!({"metadata": {"name": "x"}});
        let body = review(
            "v1",
            &ReviewRequest {
                uid: "u",
                resource: &v1,
                requested: &v2,
                subresource: "status",
                name: "x",
                namespace: "ns",
                operation: "UPDATE",
                user_info: &json!({"username": "admin"}),
                object: Some(&object),
                old_object: None,
                dry_run: true,
                options: &json!({"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1"}),
            },
        );
        assert_eq!(body["apiVersion"], "admission.k8s.io/v1");
        let request = &body["request"];
        assert_eq!(request["kind"], json!({"group": "g", "version": "v1", "kind": "W"}));
        assert_eq!(request["requestResource"], json!({"group": "g", "version": "v2", "resource": "ws"}));
        assert_eq!(
            (request["subResource"].as_str(), request["requestSubResource"].as_str()),
            (Some("status"), Some("status"))
        );
        assert_eq!(request["oldObject"], Value::Null);
        assert_eq!(request["dryRun"], true);
    }

    #[test]
    fn allowed_with_a_patch() {
        let patch = base64::engine::general_purpose::STANDARD
            .encode(br#"[{"op":"add","path":"/metadata/labels","value":{"a":"b"}}]"#);
        let body = answer(
            json!({"uid": "u", "allowed": true, "patchType": "JSONPatch", "patch": patch, "warnings": ["careful"]}),
        );
        match interpret("m.example.com", "u", "v1", true, &body).unwrap() {
            Verdict::Allowed { patch: Some(patch), warnings } => {
                assert_eq!(patch[0]["op"], "add");
                assert_eq!(warnings, vec!["careful"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn denials_say_which_webhook_and_keep_the_code() {
        let body = answer(
            json!({"uid": "u", "allowed": false, "status": {"code": 403, "reason": "Forbidden", "message": "no configmaps today"}}),
        );
        let Verdict::Denied { error, .. } = interpret("deny.example.com", "u", "v1", false, &body).unwrap() else {
            panic!("not denied")
        };
        assert_eq!((error.code, error.reason), (403, "Forbidden"));
        assert_eq!(error.message, "admission webhook \"deny.example.com\" denied the request: no configmaps today");
        let bare = answer(json!({"uid": "u", "allowed": false, "status": {"code": 200}}));
        let Verdict::Denied { error, .. } = interpret("deny.example.com", "u", "v1", false, &bare).unwrap() else {
            panic!("not denied")
        };
        assert_eq!(error.code, 400);
        assert_eq!(error.message, "admission webhook \"deny.example.com\" denied the request without explanation");
    }

    #[test]
    fn malformed_answers_are_call_failures() {
        assert_eq!(
            interpret("w", "u", "v1", false, &answer(json!({"uid": "other", "allowed": true}))).unwrap_err(),
            "expected response.uid=\"u\", got \"other\""
        );
        assert_eq!(
            interpret("w", "u", "v1", false, br#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}"#)
                .unwrap_err(),
            "webhook response was absent"
        );
        assert_eq!(
            interpret(
                "w",
                "u",
                "v1",
                false,
                &answer(json!({"uid": "u", "allowed": true, "patch": "W10=", "patchType": "JSONPatch"}))
            )
            .unwrap_err(),
            "validating webhook may not return response.patch"
        );
        assert_eq!(
            interpret("w", "u", "v1", true, &answer(json!({"uid": "u", "allowed": true, "patch": "W10="})))
                .unwrap_err(),
            "webhook returned response.patch but not response.patchType"
        );
        assert_eq!(
            interpret(
                "w",
                "u",
                "v1",
                true,
                &answer(json!({"uid": "u", "allowed": true, "patch": "W10=", "patchType": "Merge"}))
            )
            .unwrap_err(),
            "unsupported patch type \"Merge\""
        );
        let wrong_kind =
            serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "Status", "response": {"uid": "u"}})).unwrap();
        assert_eq!(
            interpret("w", "u", "v1", false, &wrong_kind).unwrap_err(),
            "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got /v1, Kind=Status"
        );
    }
}
