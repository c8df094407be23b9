//! Turning a request line into what it asks for: which resource, which object, which verb, and the query options.
//! Mirrors kube-apiserver's RequestInfo so RBAC and the handlers see the same attributes upstream would.

use std::collections::HashMap;

use crate::apiserver::error::{ApiError, ApiResult};

/// What a path addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `/api`, `/apis`, `/api/v1`, `/apis/<group>`, `/apis/<group>/<version>`.
    Discovery { group: Option<String>, version: Option<String>, legacy_root: bool },
    /// A resource path under `/api/v1` or `/apis/<group>/<version>`.
    Resource(ResourcePath),
    /// Anything else (`/version`, `/healthz`, `/openapi/v3`, ...).
    NonResource(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePath {
    pub group: String,
    pub version: String,
    pub namespace: Option<String>,
    pub plural: String,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// Parses the path (without the query) of a request.
pub fn parse_path(path: &str) -> Target {
    let segments: Vec<&str> = path.trim_matches('/').split('/').filter(|segment| !segment.is_empty()).collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api"] => return Target::Discovery { group: None, version: None, legacy_root: true },
        ["apis"] => return Target::Discovery { group: None, version: None, legacy_root: false },
        ["api", version] => {
            return Target::Discovery { group: None, version: Some(version.to_string()), legacy_root: true };
        }
        ["apis", group] => {
            return Target::Discovery { group: Some(group.to_string()), version: None, legacy_root: false };
        }
        ["apis", group, version] => {
            return Target::Discovery {
                group: Some(group.to_string()),
                version: Some(version.to_string()),
                legacy_root: false,
            };
        }
        ["api", version, rest @ ..] => (String::new(), version.to_string(), rest),
        ["apis", group, version, rest @ ..] => (group.to_string(), version.to_string(), rest),
        _ => return Target::NonResource(path.to_string()),
    };
    let owned = |segment: &&str| segment.to_string();
    let (namespace, plural, name, subresource) = match rest {
        // The namespaces resource itself, and its subresources (status, finalize).
        ["namespaces"] => (None, "namespaces".to_string(), None, None),
        ["namespaces", name] => (None, "namespaces".to_string(), Some(name.to_string()), None),
        ["namespaces", name, sub @ ("status" | "finalize")] => {
            (None, "namespaces".to_string(), Some(name.to_string()), Some(sub.to_string()))
        }
        ["namespaces", namespace, plural, tail @ ..] => {
            (Some(namespace.to_string()), plural.to_string(), tail.first().map(owned), join_tail(tail))
        }
        [plural, tail @ ..] => (None, plural.to_string(), tail.first().map(owned), join_tail(tail)),
        [] => return Target::NonResource(path.to_string()),
    };
    Target::Resource(ResourcePath { group, version, namespace, plural, name, subresource })
}

/// The subresource and anything after it (`proxy/some/path` keeps its path).
fn join_tail(tail: &[&str]) -> Option<String> {
    if tail.len() < 2 {
        None
    } else {
        Some(tail[1..].join("/"))
    }
}

/// Decoded query parameters. Repeated keys keep every value (exec's `command=`).
#[derive(Debug, Clone, Default)]
pub struct Query {
    values: HashMap<String, Vec<String>>,
    /// The query string as sent, for requests passed on as they are (node proxy).
    raw: String,
}

impl Query {
    pub fn parse(query: Option<&str>) -> Query {
        let mut values: HashMap<String, Vec<String>> = HashMap::new();
        for (key, value) in url_pairs(query.unwrap_or("")) {
            values.entry(key).or_default().push(value);
        }
        Query { values, raw: query.unwrap_or("").to_string() }
    }

    pub fn raw(&self) -> &str {
        &self.raw
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).and_then(|values| values.first()).map(String::as_str)
    }

    pub fn all(&self, key: &str) -> &[String] {
        self.values.get(key).map(Vec::as_slice).unwrap_or(&[])
    }

    /// A boolean parameter, parsed like Go's strconv.ParseBool (the Python client sends `watch=True`).
    pub fn flag(&self, key: &str) -> ApiResult<bool> {
        match self.get(key) {
            None => Ok(false),
            Some("1" | "t" | "T" | "true" | "TRUE" | "True" | "") => Ok(true),
            Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
            Some(other) => Err(ApiError::bad_request(format!("invalid boolean value {other:?} for parameter {key}"))),
        }
    }

    /// The same query with `key` set to `value` alone (the raw string is left as sent).
    pub fn with(&self, key: &str, value: &str) -> Query {
        let mut query = self.clone();
        query.values.insert(key.to_string(), vec![value.to_string()]);
        query
    }

    pub fn integer(&self, key: &str) -> ApiResult<Option<i64>> {
        self.get(key)
            .filter(|value| !value.is_empty())
            .map(|value| {
                value.parse().map_err(|_| ApiError::bad_request(format!("invalid value {value:?} for parameter {key}")))
            })
            .transpose()
    }
}

fn url_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

/// Decodes `%XX` escapes and `+` (a space in query strings).
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'+' => out.push(b' '),
            b'%' if index + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[index + 1..index + 3])
                    .ok()
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                {
                    Some(byte) => {
                        out.push(byte);
                        index += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(path: &str) -> ResourcePath {
        match parse_path(path) {
            Target::Resource(resource) => resource,
            other => panic!("{path} parsed as {other:?}"),
        }
    }

    #[test]
    fn paths_name_resources_like_upstream() {
        let pods = resource("/api/v1/namespaces/default/pods/web/log");
        assert_eq!(pods.namespace.as_deref(), Some("default"));
        assert_eq!((pods.plural.as_str(), pods.name.as_deref()), ("pods", Some("web")));
        assert_eq!(pods.subresource.as_deref(), Some("log"));

        let namespace = resource("/api/v1/namespaces/kube-system/finalize");
        assert_eq!((namespace.plural.as_str(), namespace.name.as_deref()), ("namespaces", Some("kube-system")));
        assert_eq!(namespace.subresource.as_deref(), Some("finalize"));
        assert_eq!(namespace.namespace, None);

        let all_deployments = resource("/apis/apps/v1/deployments");
        assert_eq!((all_deployments.group.as_str(), all_deployments.namespace.clone()), ("apps", None));

        let proxy = resource("/api/v1/nodes/n1/proxy/healthz/x");
        assert_eq!(proxy.subresource.as_deref(), Some("proxy/healthz/x"));

        assert_eq!(
            parse_path("/apis/apps"),
            Target::Discovery { group: Some("apps".into()), version: None, legacy_root: false }
        );
        assert_eq!(parse_path("/version"), Target::NonResource("/version".into()));
    }

    #[test]
    fn queries_decode_and_keep_repeats() {
        let query = Query::parse(Some("labelSelector=app%3Dweb%2Ctier+in+(a)&command=sh&command=-c&watch=True"));
        assert_eq!(query.get("labelSelector"), Some("app=web,tier in (a)"));
        assert_eq!(query.all("command"), &["sh".to_string(), "-c".to_string()]);
        assert!(query.flag("watch").unwrap());
        assert!(!query.flag("missing").unwrap());
        assert!(query.flag("x").is_ok());
        assert!(Query::parse(Some("watch=maybe")).flag("watch").is_err());
    }
}
