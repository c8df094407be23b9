//! API errors and the `metav1.Status` bodies clients read them from. kubectl prints
//! `Error from server (<reason>): <message>`; client libraries branch on `reason` and `code`.

use serde::Serialize;

/// One cause inside a Status (`details.causes`), e.g. a field that failed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// `FieldValueRequired`, `FieldValueInvalid`, `FieldManagerConflict`, ...
    pub reason: String,
    pub message: String,
    pub field: String,
}

/// An error answered with a Status body. `details` names the object when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: u16,
    /// metav1.StatusReason: NotFound, AlreadyExists, Conflict, Invalid, BadRequest, ...
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Box<Details>>,
    /// The Status's `metadata.continue`: where an expired paged list can go on, inconsistently, from.
    pub list_continue: Option<String>,
}

/// `metav1.StatusDetails`; empty fields are left out of the body, as upstream's `omitempty` does.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Details {
    pub name: String,
    pub group: String,
    /// The resource (plural) for most reasons; the kind for `Invalid`, as upstream puts it in `details.kind`.
    pub kind: String,
    /// Set on the Status a delete answers with.
    pub uid: String,
    pub causes: Vec<Cause>,
    pub retry_after_seconds: Option<u32>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { code, reason, message: message.into(), details: None, list_continue: None }
    }

    pub fn with_continue(mut self, token: String) -> ApiError {
        self.list_continue = Some(token);
        self
    }

    pub fn with_details(mut self, details: Details) -> ApiError {
        self.details = Some(Box::new(details));
        self
    }

    /// `pods "web" not found`.
    pub fn not_found(group_resource: &str, group: &str, plural: &str, name: &str) -> ApiError {
        ApiError::new(404, "NotFound", format!("{group_resource} \"{name}\" not found")).with_details(Details {
            name: name.into(),
            group: group.into(),
            kind: plural.into(),
            ..Details::default()
        })
    }

    pub fn already_exists(group_resource: &str, group: &str, plural: &str, name: &str) -> ApiError {
        ApiError::new(409, "AlreadyExists", format!("{group_resource} \"{name}\" already exists"))
            .with_details(Details { name: name.into(), group: group.into(), kind: plural.into(), ..Details::default() })
    }

    /// A stale resourceVersion: the client should read again and retry.
    pub fn conflict(group_resource: &str, group: &str, plural: &str, name: &str) -> ApiError {
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {group_resource} \"{name}\": the object has been modified; please \
                 apply your changes to the latest version and try again"
            ),
        )
        .with_details(Details {
            name: name.into(),
            group: group.into(),
            kind: plural.into(),
            ..Details::default()
        })
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    /// 422 with one cause per invalid field.
    pub fn invalid(kind: &str, group: &str, name: &str, message: String, causes: Vec<Cause>) -> ApiError {
        ApiError::new(422, "Invalid", message).with_details(Details {
            name: name.into(),
            group: group.into(),
            kind: kind.into(),
            causes,
            ..Details::default()
        })
    }

    /// Upstream always sends details with a 403, empty ones (`"details":{}`) when nothing is named.
    pub fn forbidden(message: impl Into<String>, details: Details) -> ApiError {
        ApiError::new(403, "Forbidden", message).with_details(details)
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn method_not_allowed(message: impl Into<String>) -> ApiError {
        ApiError::new(405, "MethodNotAllowed", message)
    }

    pub fn not_acceptable(message: impl Into<String>) -> ApiError {
        ApiError::new(406, "NotAcceptable", message)
    }

    pub fn unsupported_media_type(content_type: &str) -> ApiError {
        ApiError::new(415, "UnsupportedMediaType", format!("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf; got {content_type:?}"))
    }

    /// 410: the requested resourceVersion is older than what the server keeps.
    pub fn expired(message: impl Into<String>) -> ApiError {
        ApiError::new(410, "Expired", message)
    }

    pub fn too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(413, "RequestEntityTooLarge", message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(500, "InternalError", format!("Internal error occurred: {}", message.into()))
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(503, "ServiceUnavailable", message)
    }

    /// The `metav1.Status` body, byte for byte as kube-apiserver encodes it (without the newline that ends every
    /// JSON response): clients compare these strings, so field order and omitted empty fields matter.
    pub fn status_json(&self) -> Vec<u8> {
        let metadata = ListMeta { continue_token: self.list_continue.as_deref() };
        encode_status("Failure", metadata, &self.message, self.reason, self.details.as_deref(), self.code)
    }
}

/// The `metav1.Status` a successful delete (`code` 0: none) or binding answers with, in upstream's encoding.
pub fn success_status_json(code: u16, details: Option<&Details>) -> Vec<u8> {
    encode_status("Success", ListMeta::default(), "", "", details, code)
}

fn encode_status(
    status: &str,
    metadata: ListMeta<'_>,
    message: &str,
    reason: &str,
    details: Option<&Details>,
    code: u16,
) -> Vec<u8> {
    let body = StatusBody {
        kind: "Status",
        api_version: "v1",
        metadata,
        status,
        message,
        reason,
        details: details.map(DetailsBody::of),
        code,
    };
    let mut out = Vec::new();
    crate::apiserver::field_order::write_like_go(&mut out, &body);
    out
}

/// `metav1.Status` with its fields in the Go struct's order (TypeMeta inlined first), which is the order
/// kube-apiserver writes them in.
#[derive(Serialize)]
struct StatusBody<'a> {
    kind: &'static str,
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    metadata: ListMeta<'a>,
    status: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    message: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<DetailsBody<'a>>,
    #[serde(skip_serializing_if = "is_zero")]
    code: u16,
}

/// A Status's list metadata: empty, except for the continue token of an expired paged list.
#[derive(Serialize, Default)]
struct ListMeta<'a> {
    #[serde(rename = "continue", skip_serializing_if = "Option::is_none")]
    continue_token: Option<&'a str>,
}

#[derive(Serialize)]
struct DetailsBody<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    group: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    kind: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    uid: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    causes: Vec<CauseBody<'a>>,
    #[serde(rename = "retryAfterSeconds", skip_serializing_if = "Option::is_none")]
    retry_after_seconds: Option<u32>,
}

impl<'a> DetailsBody<'a> {
    fn of(details: &'a Details) -> DetailsBody<'a> {
        DetailsBody {
            name: &details.name,
            group: &details.group,
            kind: &details.kind,
            uid: &details.uid,
            causes: details
                .causes
                .iter()
                .map(|cause| CauseBody { reason: &cause.reason, message: &cause.message, field: &cause.field })
                .collect(),
            retry_after_seconds: details.retry_after_seconds,
        }
    }
}

#[derive(Serialize)]
struct CauseBody<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    reason: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    message: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    field: &'a str,
}

fn is_zero(code: &u16) -> bool {
    *code == 0
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{} ({}): {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

/// Store failures as the API reports them: compaction is 410 Gone, the rest are the server's fault.
impl From<kaasd_datastore::Error> for ApiError {
    fn from(error: kaasd_datastore::Error) -> ApiError {
        match error {
            kaasd_datastore::Error::Compacted { requested, compact_revision } => ApiError::expired(format!(
                "The resourceVersion for the provided watch is too old (requested {requested}, oldest kept \
                 {compact_revision})"
            )),
            kaasd_datastore::Error::FutureRevision { requested, current } => ApiError::new(
                504,
                "Timeout",
                format!("Timeout: Too large resource version: {requested}, current: {current}"),
            )
            .with_details(Details {
                causes: vec![Cause {
                    reason: "ResourceVersionTooLarge".into(),
                    message: "Too large resource version".into(),
                    field: String::new(),
                }],
                retry_after_seconds: Some(1),
                ..Details::default()
            }),
            other => ApiError::internal(kaasd_datastore::one_line(&other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn error_bodies_are_upstreams_bytes() {
        let cases = [
            (
                ApiError::not_found("pods", "", "pods", "web"),
                r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"pods \"web\" not found","reason":"NotFound","details":{"name":"web","kind":"pods"},"code":404}"#,
            ),
            (
                ApiError::already_exists("deployments.apps", "apps", "deployments", "web"),
                r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"deployments.apps \"web\" already exists","reason":"AlreadyExists","details":{"name":"web","group":"apps","kind":"deployments"},"code":409}"#,
            ),
            (
                ApiError::conflict("configmaps", "", "configmaps", "settings"),
                r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Operation cannot be fulfilled on configmaps \"settings\": the object has been modified; please apply your changes to the latest version and try again","reason":"Conflict","details":{"name":"settings","kind":"configmaps"},"code":409}"#,
            ),
            (
                ApiError::invalid(
                    "ConfigMap",
                    "",
                    "Bad",
                    "ConfigMap \"Bad\" is invalid: metadata.name: Invalid value: \"Bad\": a lowercase name".into(),
                    vec![Cause {
                        reason: "FieldValueInvalid".into(),
                        message: "Invalid value: \"Bad\": a lowercase name".into(),
                        field: "metadata.name".into(),
                    }],
                ),
                r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"ConfigMap \"Bad\" is invalid: metadata.name: Invalid value: \"Bad\": a lowercase name","reason":"Invalid","details":{"name":"Bad","kind":"ConfigMap","causes":[{"reason":"FieldValueInvalid","message":"Invalid value: \"Bad\": a lowercase name","field":"metadata.name"}]},"code":422}"#,
            ),
            (
                ApiError::forbidden("forbidden: User \"system:anonymous\" cannot get path \"/\"", Details::default()),
                r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"forbidden: User \"system:anonymous\" cannot get path \"/\"","reason":"Forbidden","details":{},"code":403}"#,
            ),
            (
                ApiError::expired("too old resource version: 3 (10)"),
                r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version: 3 (10)","reason":"Expired","code":410}"#,
            ),
        ];
        for (error, expected) in cases {
            assert_eq!(text(error.status_json()), expected);
        }
    }

    #[test]
    fn success_bodies_are_upstreams_bytes() {
        // As kube-apiserver v1.33 answered a delete of a custom resource.
        let details = Details {
            name: "fb1".into(),
            group: "k8s-openapi-tests-custom-resource-definition.com".into(),
            kind: "foobars".into(),
            uid: "3e977177-00c5-4bab-aaf8-27ba1988e581".into(),
            ..Details::default()
        };
        assert_eq!(
            text(success_status_json(0, Some(&details))),
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success","details":{"name":"fb1","group":"k8s-openapi-tests-custom-resource-definition.com","kind":"foobars","uid":"3e977177-00c5-4bab-aaf8-27ba1988e581"}}"#
        );
        assert_eq!(
            text(success_status_json(201, None)),
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success","code":201}"#
        );
    }

    #[test]
    fn compaction_is_gone() {
        let error: ApiError = kaasd_datastore::Error::Compacted { requested: 3, compact_revision: 10 }.into();
        assert_eq!((error.code, error.reason), (410, "Expired"));
    }

    #[test]
    fn a_future_resource_version_is_upstreams_timeout() {
        let error: ApiError = kaasd_datastore::Error::FutureRevision { requested: 9, current: 5 }.into();
        assert_eq!(
            text(error.status_json()),
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Timeout: Too large resource version: 9, current: 5","reason":"Timeout","details":{"causes":[{"reason":"ResourceVersionTooLarge","message":"Too large resource version"}],"retryAfterSeconds":1},"code":504}"#
        );
    }
}
