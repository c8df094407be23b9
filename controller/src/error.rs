//! API errors and the `metav1.Status` bodies clients read them from. kubectl prints
//! `Error from server (<reason>): <message>`; client libraries branch on `reason` and `code`.

use serde_json::{json, Value};

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
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Details {
    pub name: String,
    pub group: String,
    /// The resource (plural), as upstream puts it in `details.kind`.
    pub kind: String,
    pub causes: Vec<Cause>,
    pub retry_after_seconds: Option<u32>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { code, reason, message: message.into(), details: None }
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

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(403, "Forbidden", message)
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

    /// The `metav1.Status` body.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            let mut body = serde_json::Map::new();
            if !details.name.is_empty() {
                body.insert("name".into(), details.name.clone().into());
            }
            if !details.group.is_empty() {
                body.insert("group".into(), details.group.clone().into());
            }
            if !details.kind.is_empty() {
                body.insert("kind".into(), details.kind.clone().into());
            }
            if !details.causes.is_empty() {
                let causes = details
                    .causes
                    .iter()
                    .map(|cause| json!({"reason": cause.reason, "message": cause.message, "field": cause.field}))
                    .collect::<Vec<_>>();
                body.insert("causes".into(), causes.into());
            }
            if let Some(seconds) = details.retry_after_seconds {
                body.insert("retryAfterSeconds".into(), seconds.into());
            }
            status["details"] = Value::Object(body);
        }
        status
    }
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
            kaasd_datastore::Error::FutureRevision { requested, current } => {
                ApiError::new(504, "Timeout", format!("Too large resource version: {requested}, current: {current}"))
                    .with_details(Details { retry_after_seconds: Some(1), ..Details::default() })
            }
            other => ApiError::internal(kaasd_datastore::one_line(&other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_has_upstreams_shape() {
        let status = ApiError::not_found("deployments.apps", "apps", "deployments", "web").to_status();
        assert_eq!(status["message"], "deployments.apps \"web\" not found");
        assert_eq!(status["reason"], "NotFound");
        assert_eq!(status["code"], 404);
        assert_eq!(status["details"], json!({"name": "web", "group": "apps", "kind": "deployments"}));
    }

    #[test]
    fn compaction_is_gone() {
        let error: ApiError = kaasd_datastore::Error::Compacted { requested: 3, compact_revision: 10 }.into();
        assert_eq!((error.code, error.reason), (410, "Expired"));
    }
}
