//! The Kubernetes API server: everything that answers a request on the API port.
//!
//! This file routes a request to discovery, OpenAPI, health endpoints or the generic object handlers, and answers
//! errors as Status bodies. Beside it:
//! - the HTTP side: `request` (path → target), `objects` (the generic handlers and subresources), `eviction`
//!   (pods/eviction against PodDisruptionBudgets), `watch`, `discovery`, `node_proxy`, `custom_resources`
//!   (serving CRDs as they change);
//! - who may do what: `auth` (authentication, TokenReview), `tokens` (ServiceAccount tokens and their issuer
//!   discovery documents), `rbac`, `admission`, `admission_webhooks` (calling MutatingWebhookConfigurations and
//!   ValidatingWebhookConfigurations);
//! - what the kinds are: `registry` (every served resource), `crd` (with `cel` for its validation rules),
//!   `schema`, `schema_facts`, `defaults`, `validation`, `duplicate_fields`, `selector`, `patch`;
//! - what goes on the wire and to the datastore: `storage`, `error`, `field_order`, `table`, `protobuf`,
//!   `openapi`, `openapi_v2`, `gnostic`.

pub mod admission;
pub mod admission_webhooks;
pub mod auth;
mod cel;
pub mod conversion;
pub mod crd;
mod crd_conversion;
mod custom_resources;
mod default_storage_class;
pub mod defaults;
pub mod discovery;
mod duplicate_fields;
pub mod error;
mod eviction;
pub mod field_order;
pub mod gnostic;
pub mod limit_ranges;
pub mod metrics;
mod node_authorizer;
mod node_proxy;
mod objects;
pub mod openapi;
pub mod openapi_v2;
pub mod patch;
mod priority;
pub mod protobuf;
pub mod rbac;
pub mod registry;
pub mod request;
pub mod resource_quota;
pub mod schema;
mod schema_facts;
pub mod selector;
mod service_accounts;
pub mod storage;
pub mod table;
pub mod tokens;
pub mod validation;
mod watch;

pub use custom_resources::follow_custom_resources;
pub use objects::now;
pub use priority::system_classes as priority_classes;

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, Limited};
use serde_json::{json, Value};

use crate::apiserver::auth::User;
use crate::apiserver::error::{ApiError, ApiResult};
use crate::apiserver::registry::Registry;
use crate::apiserver::storage::ObjectStore;
use request::{parse_path, Query, Target};

/// Response bodies: whole documents, or a stream for watches.
pub type Body = BoxBody<Bytes, Infallible>;

/// Largest request body accepted, as kube-apiserver: 3 MiB.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// The version kaasd reports: the Kubernetes API it serves (v1.33), with kaasd's own version as build metadata.
pub const KUBERNETES_VERSION: &str = "v1.33.0";

/// Shared state of the API server.
pub struct ApiServer {
    pub store: ObjectStore,
    registry: RwLock<Arc<Registry>>,
    /// `host:port` clients reach this server at (discovery's serverAddressByClientCIDRs).
    pub server_address: String,
    pub started: Instant,
    ready: AtomicBool,
    requests: AtomicU64,
    /// Time creates spend in admission (built-in plugins, webhooks, policies, quota) with defaulting and validation.
    pub(crate) create_admission: metrics::DurationHistogram,
    pub(crate) services: objects::ServiceAllocator,
    openapi: crate::apiserver::openapi::OpenApiDocuments,
    openapi_v2: crate::apiserver::openapi_v2::OpenApiV2Documents,
    /// Signs and verifies ServiceAccount tokens.
    pub tokens: crate::apiserver::tokens::TokenIssuer,
    /// Reverse tunnels of the nodes connected to this replica.
    pub tunnels: crate::tunnels::NodeTunnels,
    /// How this replica connects to another to reach a node whose tunnel is there (set at start).
    replica_tls: std::sync::OnceLock<Arc<rustls::ClientConfig>>,
    /// Cancelled when the server starts to drain: open watches end their stream cleanly, so clients re-watch
    /// (elsewhere, or after the restart) and the connections they held can close at once.
    draining: tokio_util::sync::CancellationToken,
    /// Watch events encoded once for every watcher that sends them unchanged.
    watch_lines: Arc<watch::SharedLines>,
    /// The admission webhook configurations, parsed, following the datastore.
    webhooks: admission_webhooks::WebhookCache,
}

impl ApiServer {
    pub fn new(
        store: ObjectStore,
        registry: Registry,
        server_address: String,
        service_cidr: crate::Ipv4Cidr,
        tokens: crate::apiserver::tokens::TokenIssuer,
    ) -> ApiServer {
        ApiServer {
            store,
            registry: RwLock::new(Arc::new(registry)),
            server_address,
            started: Instant::now(),
            ready: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            create_admission: metrics::DurationHistogram::default(),
            services: objects::ServiceAllocator::new(service_cidr),
            openapi: crate::apiserver::openapi::OpenApiDocuments::new(),
            openapi_v2: crate::apiserver::openapi_v2::OpenApiV2Documents::new(),
            tokens,
            tunnels: crate::tunnels::NodeTunnels::default(),
            replica_tls: std::sync::OnceLock::new(),
            draining: tokio_util::sync::CancellationToken::new(),
            watch_lines: Arc::default(),
            webhooks: admission_webhooks::WebhookCache::default(),
        }
    }

    pub fn registry(&self) -> Arc<Registry> {
        self.registry.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    pub fn set_registry(&self, registry: Registry) {
        *self.registry.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(registry);
    }

    /// The TLS client identity (a `system:masters` certificate of the cluster CA) for forwarding node proxy
    /// requests to the replica that holds the node's tunnel.
    pub fn set_replica_identity(&self, config: rustls::ClientConfig) {
        let _ = self.replica_tls.set(Arc::new(config));
    }

    /// Ends every open watch and makes /readyz fail: the first step of a drain.
    pub fn start_draining(&self) {
        self.ready.store(false, Ordering::Release);
        self.draining.cancel();
    }

    /// /readyz answers ok once bootstrap objects exist.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// Answers one request from a connection whose client certificate named `certificate_user` (if any). Never
    /// fails: every error becomes a Status response.
    pub async fn handle<B>(self: &Arc<Self>, certificate_user: Option<User>, request: Request<B>) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let (mut parts, body) = request.into_parts();
        // Present when the connection can switch protocols (HTTP/1.1): exec, attach and port-forward need it.
        let upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
        let path = parts.uri.path().to_string();
        let query = Query::parse(parts.uri.query());
        let result = async {
            let user = crate::apiserver::auth::authenticate(self, certificate_user, &parts.headers).await?;
            let user = self.impersonate(user, &parts.headers).await?;
            self.route(&user, &parts.method, &path, &query, &parts.headers, body, upgrade).await
        }
        .await;
        let response = result.unwrap_or_else(|error| error_response(&error));
        tracing::debug!(
            http.method = %parts.method,
            http.path = %path,
            http.status = response.status().as_u16(),
            "request"
        );
        response
    }

    /// Applies `Impersonate-User` / `-Group` / `-Uid` headers when the caller may impersonate (RBAC verb
    /// `impersonate` on users, groups, serviceaccounts or uids), as `kubectl --as` sends them.
    async fn impersonate(&self, user: User, headers: &HeaderMap) -> ApiResult<User> {
        let name = headers.get("impersonate-user").and_then(|value| value.to_str().ok()).map(str::to_string);
        let groups: Vec<String> = headers
            .get_all("impersonate-group")
            .iter()
            .filter_map(|value| value.to_str().ok().map(str::to_string))
            .collect();
        let uid = headers.get("impersonate-uid").and_then(|value| value.to_str().ok()).map(str::to_string);
        let Some(name) = name else {
            if !groups.is_empty() || uid.is_some() {
                return Err(ApiError::bad_request("impersonating groups or a uid requires impersonating a user too"));
            }
            return Ok(user);
        };
        let mut checks = Vec::new();
        match name.strip_prefix("system:serviceaccount:").and_then(|rest| rest.split_once(':')) {
            Some((namespace, account)) => checks.push(crate::apiserver::rbac::Attributes {
                verb: "impersonate".into(),
                resource: "serviceaccounts".into(),
                namespace: namespace.into(),
                name: account.into(),
                ..Default::default()
            }),
            None => checks.push(crate::apiserver::rbac::Attributes {
                verb: "impersonate".into(),
                resource: "users".into(),
                name: name.clone(),
                ..Default::default()
            }),
        }
        for group in &groups {
            checks.push(crate::apiserver::rbac::Attributes {
                verb: "impersonate".into(),
                resource: "groups".into(),
                name: group.clone(),
                ..Default::default()
            });
        }
        if let Some(uid) = &uid {
            checks.push(crate::apiserver::rbac::Attributes {
                verb: "impersonate".into(),
                group: "authentication.k8s.io".into(),
                resource: "uids".into(),
                name: uid.clone(),
                ..Default::default()
            });
        }
        for attributes in &checks {
            crate::apiserver::rbac::authorize(self, &user, attributes).await?;
        }
        let mut groups = groups;
        if let Some((namespace, _)) = name.strip_prefix("system:serviceaccount:").and_then(|rest| rest.split_once(':'))
        {
            groups.push("system:serviceaccounts".into());
            groups.push(format!("system:serviceaccounts:{namespace}"));
        }
        Ok(if name == crate::apiserver::auth::ANONYMOUS {
            User { name, uid: uid.unwrap_or_default(), groups, extra: Default::default() }
        } else {
            User::authenticated(name, uid.unwrap_or_default(), groups)
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn route<B>(
        self: &Arc<Self>,
        user: &User,
        method: &Method,
        path: &str,
        query: &Query,
        headers: &HeaderMap,
        body: B,
        upgrade: Option<hyper::upgrade::OnUpgrade>,
    ) -> ApiResult<Response<Body>>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let target = parse_path(path);
        if user.is_anonymous() {
            authorize_anonymous(user, method, &target, query)?;
        } else if !user.in_group("system:masters") {
            let attributes = request_attributes(method, &target, query)?;
            if let Some(node) = crate::tunnels::node_of(user) {
                if !node_authorizer::allows(self, node, &attributes, query).await? {
                    let mut error = crate::apiserver::rbac::forbidden(user, &attributes);
                    error.message.push_str(&format!(": no relationship found between node '{node}' and this object"));
                    return Err(error);
                }
            }
            crate::apiserver::rbac::authorize(self, user, &attributes).await?;
        }
        let accept = header_text(headers, header::ACCEPT);
        match target {
            Target::NonResource(path) if path == "/openapi/v2" => self.openapi_v2(method, headers),
            Target::NonResource(path) => self.non_resource(method, &path, query),
            Target::Discovery { group, version, legacy_root } => {
                if method != Method::GET {
                    return Err(ApiError::method_not_allowed(format!("{method} is not allowed on {path}")));
                }
                let registry = self.registry();
                match (group, version, legacy_root) {
                    (None, None, root) if discovery::wants_aggregated(accept) => Ok(json_response_typed(
                        200,
                        &discovery::aggregated(&registry, root),
                        discovery::AGGREGATED_CONTENT_TYPE,
                    )),
                    (None, None, true) => Ok(json_response(200, &discovery::api_versions(&self.server_address))),
                    (None, None, false) => Ok(json_response(200, &discovery::api_group_list(&registry))),
                    (None, Some(version), true) => discovery::api_resource_list(&registry, "", &version)
                        .map(|list| json_response(200, &list))
                        .ok_or_else(not_found_path),
                    (Some(group), None, _) => discovery::api_group_document(&registry, &group)
                        .map(|document| json_response(200, &document))
                        .ok_or_else(not_found_path),
                    (Some(group), Some(version), _) => discovery::api_resource_list(&registry, &group, &version)
                        .map(|list| json_response(200, &list))
                        .ok_or_else(not_found_path),
                    (None, Some(_), false) => Err(not_found_path()),
                }
            }
            Target::Resource(resource) if node_proxy::is_node_proxy(&resource) => {
                self.node_proxy(&resource, method, query, headers, body, upgrade).await
            }
            Target::Resource(resource) if node_proxy::is_pod_or_service_proxy(&resource) => {
                self.pod_or_service_proxy(&resource, method, query, headers, body, upgrade).await
            }
            Target::Resource(resource) if node_proxy::is_pod_log(&resource) && method == Method::GET => {
                self.pod_log(&resource, query, headers, body).await
            }
            Target::Resource(resource)
                if node_proxy::is_pod_stream(&resource) && (method == Method::GET || method == Method::POST) =>
            {
                self.pod_stream(&resource, method, query, headers, upgrade).await
            }
            Target::Resource(resource) => {
                if !acceptable(accept) {
                    return Err(ApiError::not_acceptable(
                        "only the following media types are accepted: application/json, application/yaml, \
                         application/vnd.kubernetes.protobuf, application/json;as=Table;v=v1;g=meta.k8s.io",
                    ));
                }
                let body = read_body(body).await?;
                let request = objects::ObjectRequest {
                    user: user.clone(),
                    method: method.clone(),
                    resource,
                    query: query.clone(),
                    accept: accept.to_string(),
                    content_type: header_text(headers, header::CONTENT_TYPE).to_string(),
                    user_agent: header_text(headers, header::USER_AGENT).to_string(),
                    body,
                };
                self.serve_object(request).await
            }
        }
    }

    fn non_resource(&self, method: &Method, path: &str, query: &Query) -> ApiResult<Response<Body>> {
        if method != Method::GET && method != Method::HEAD {
            return Err(ApiError::method_not_allowed(format!("{method} is not allowed on {path}")));
        }
        match path {
            "/version" | "/version/" => Ok(json_response(200, &version_info())),
            "/healthz" | "/livez" => Ok(text_response(200, "ok")),
            "/readyz" => {
                if self.ready.load(Ordering::Acquire) {
                    let verbose = query.get("verbose").is_some();
                    Ok(text_response(
                        200,
                        if verbose { "[+]ping ok\n[+]bootstrap ok\nreadyz check passed\n" } else { "ok" },
                    ))
                } else {
                    Ok(text_response(500, "[-]bootstrap failed: not finished\nreadyz check failed\n"))
                }
            }
            "/metrics" => Ok(text_response(200, &self.metrics())),
            // ServiceAccount issuer discovery. Upstream answers both with and without a trailing slash, and lets
            // caches keep the answers an hour.
            tokens::OPENID_CONFIGURATION_PATH | "/.well-known/openid-configuration/" => {
                let document = self.tokens.openid_configuration(&self.server_address);
                Ok(cacheable(json_response(200, &document)))
            }
            tokens::JWKS_PATH | "/openid/v1/jwks/" => {
                Ok(cacheable(json_response_typed(200, self.tokens.jwks(), "application/jwk-set+json")))
            }
            "/openapi/v3" | "/openapi/v3/" => {
                let registry = self.registry();
                let custom = |def: &crate::apiserver::registry::ResourceDef| {
                    crate::apiserver::admission::custom_schema(&registry, def)
                };
                let index = self.openapi.index(&registry, crate::apiserver::schema::Schemas::shared(), &custom);
                Ok(json_response(200, &index))
            }
            _ => {
                let registry = self.registry();
                let custom = |def: &crate::apiserver::registry::ResourceDef| {
                    crate::apiserver::admission::custom_schema(&registry, def)
                };
                let document = path
                    .strip_prefix("/openapi/v3/")
                    .and_then(crate::apiserver::openapi::parse_document_path)
                    .and_then(|(group, version)| {
                        self.openapi.document(
                            &registry,
                            crate::apiserver::schema::Schemas::shared(),
                            &group,
                            &version,
                            &custom,
                        )
                    })
                    .ok_or_else(not_found_path)?;
                let mut response = Response::new(full_body(document.json.clone()));
                response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                if query.get("hash") == Some(document.hash.as_str()) {
                    response
                        .headers_mut()
                        .insert(header::CACHE_CONTROL, HeaderValue::from_static("public, immutable, max-age=31536000"));
                }
                Ok(response)
            }
        }
    }

    /// `/openapi/v2` in the encoding the Accept header prefers (kubectl asks for protobuf), with an `ETag` so a
    /// client that has the document gets 304, as upstream's handler.
    fn openapi_v2(&self, method: &Method, headers: &HeaderMap) -> ApiResult<Response<Body>> {
        if method != Method::GET && method != Method::HEAD {
            return Err(ApiError::method_not_allowed(format!("{method} is not allowed on /openapi/v2")));
        }
        let Some(media_type) = crate::apiserver::openapi_v2::negotiate(header_text(headers, header::ACCEPT)) else {
            return Err(ApiError::not_acceptable(
                "only the following media types are accepted: application/json, \
                 application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
            ));
        };
        let registry = self.registry();
        let custom =
            |def: &crate::apiserver::registry::ResourceDef| crate::apiserver::admission::custom_schema(&registry, def);
        let document = self.openapi_v2.document(&registry, crate::apiserver::schema::Schemas::shared(), &custom);
        let encoded = if media_type == "application/json" { &document.json } else { &document.protobuf };
        let unchanged = headers
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .any(|tag| tag.trim() == encoded.etag || tag.trim() == "*");
        let mut response = if unchanged {
            let mut response = Response::new(full_body(Bytes::new()));
            *response.status_mut() = StatusCode::NOT_MODIFIED;
            response
        } else if method == Method::HEAD {
            Response::new(full_body(Bytes::new()))
        } else {
            Response::new(full_body(encoded.bytes.clone()))
        };
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(media_type));
        headers.insert(header::VARY, HeaderValue::from_static("Accept"));
        if let Ok(etag) = HeaderValue::from_str(&encoded.etag) {
            headers.insert(header::ETAG, etag);
        }
        Ok(response)
    }

    fn metrics(&self) -> String {
        format!(
            "# HELP apiserver_requests_total Requests served since start.\n\
             # TYPE apiserver_requests_total counter\n\
             apiserver_requests_total {}\n\
             # HELP kaasd_store_revision Current revision of the datastore.\n\
             # TYPE kaasd_store_revision gauge\n\
             kaasd_store_revision {}\n\
             # HELP kaasd_uptime_seconds Seconds since the server started.\n\
             # TYPE kaasd_uptime_seconds gauge\n\
             kaasd_uptime_seconds {}\n",
            self.requests.load(Ordering::Relaxed),
            self.store.revision(),
            self.started.elapsed().as_secs_f64(),
        ) + &self.create_admission.render(
            "kaasd_create_admission_duration_seconds",
            "Time a create spends from admission's first step to its last (built-in plugins, defaulting, \
             mutating webhooks, validation, policies, validating webhooks, quota), for creates that pass.",
        )
    }
}

/// /version: kubectl requires a valid semver gitVersion.
pub fn version_info() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": format!("{KUBERNETES_VERSION}+kaasd-{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "rust",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, normalized_arch()),
    })
}

fn normalized_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// What a request does, as RBAC sees it (upstream's RequestInfo).
fn request_attributes(
    method: &Method,
    target: &Target,
    query: &Query,
) -> ApiResult<crate::apiserver::rbac::Attributes> {
    let verb = |collection: bool| -> ApiResult<&'static str> {
        Ok(match *method {
            Method::GET | Method::HEAD if collection && query.flag("watch")? => "watch",
            Method::GET | Method::HEAD if collection => "list",
            Method::GET | Method::HEAD => "get",
            Method::POST => "create",
            Method::PUT => "update",
            Method::PATCH => "patch",
            Method::DELETE if collection => "deletecollection",
            Method::DELETE => "delete",
            _ => "unknown",
        })
    };
    Ok(match target {
        Target::Resource(resource) => crate::apiserver::rbac::Attributes {
            verb: verb(resource.name.is_none())?.to_string(),
            group: resource.group.clone(),
            resource: resource.plural.clone(),
            subresource: resource
                .subresource
                .as_deref()
                .map(|sub| sub.split('/').next().unwrap_or(sub).to_string())
                .unwrap_or_default(),
            namespace: resource.namespace.clone().unwrap_or_default(),
            name: resource.name.clone().unwrap_or_default(),
            path: None,
        },
        Target::Discovery { .. } | Target::NonResource(_) => {
            let path = match target {
                Target::NonResource(path) => path.clone(),
                _ => String::new(),
            };
            let path = if path.is_empty() { discovery_path(target) } else { path };
            crate::apiserver::rbac::Attributes {
                verb: method.as_str().to_lowercase(),
                path: Some(path),
                ..Default::default()
            }
        }
    })
}

fn discovery_path(target: &Target) -> String {
    match target {
        Target::Discovery { group: None, version: None, legacy_root: true } => "/api".into(),
        Target::Discovery { group: None, version: None, legacy_root: false } => "/apis".into(),
        Target::Discovery { group: None, version: Some(version), .. } => format!("/api/{version}"),
        Target::Discovery { group: Some(group), version: None, .. } => format!("/apis/{group}"),
        Target::Discovery { group: Some(group), version: Some(version), .. } => format!("/apis/{group}/{version}"),
        _ => "/".into(),
    }
}

/// Anonymous users reach health, version, discovery and OpenAPI and nothing else (upstream's
/// system:public-info-viewer and system:discovery roles).
fn authorize_anonymous(user: &User, method: &Method, target: &Target, query: &Query) -> ApiResult<()> {
    if !user.is_anonymous() {
        return Ok(());
    }
    let public = match target {
        Target::Discovery { .. } => true,
        Target::NonResource(path) => {
            ["/version", "/healthz", "/livez", "/readyz"].iter().any(|public| path.trim_end_matches('/') == *public)
                || path.starts_with("/openapi/")
        }
        Target::Resource(_) => false,
    };
    if public && (method == Method::GET || method == Method::HEAD) {
        return Ok(());
    }
    Err(crate::apiserver::rbac::forbidden(user, &request_attributes(method, target, query)?))
}

/// Whether kaasd can answer an Accept header: anything JSON (kaasd answers protobuf and YAML requests in JSON too,
/// which every client accepts), a Table, or a wildcard.
fn acceptable(accept: &str) -> bool {
    accept.trim().is_empty()
        || accept.split(',').any(|part| {
            let media = part.split(';').next().unwrap_or("").trim();
            matches!(
                media,
                "*/*"
                    | "application/*"
                    | "application/json"
                    | "application/yaml"
                    | "application/vnd.kubernetes.protobuf"
                    | "application/json-seq"
                    | "application/vnd.kubernetes.protobuf;stream=watch"
            )
        })
}

fn not_found_path() -> ApiError {
    ApiError::new(404, "NotFound", "the server could not find the requested resource")
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> &str {
    headers.get(name).and_then(|value| value.to_str().ok()).unwrap_or("")
}

async fn read_body<B>(body: B) -> ApiResult<Bytes>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => Err(ApiError::too_large(format!(
            "the request body is larger than the {} MiB limit",
            MAX_BODY_BYTES / 1024 / 1024
        ))),
        Err(error) => Err(ApiError::bad_request(format!("cannot read the request body: {error}"))),
    }
}

pub fn full_body(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

pub fn json_response(code: u16, value: &Value) -> Response<Body> {
    json_response_typed(code, value, "application/json")
}

pub fn json_response_typed(code: u16, value: &Value, content_type: &'static str) -> Response<Body> {
    let mut bytes = Vec::new();
    crate::apiserver::field_order::write_like_go(&mut bytes, value);
    json_bytes_response(code, bytes, content_type)
}

/// Lets clients and proxies keep an answer for an hour, as upstream marks its issuer discovery answers.
fn cacheable(mut response: Response<Body>) -> Response<Body> {
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    response
}

/// Every JSON body ends with a newline, as kube-apiserver's encoder writes it.
pub fn json_bytes_response(code: u16, mut bytes: Vec<u8>, content_type: &'static str) -> Response<Body> {
    bytes.push(b'\n');
    let mut response = Response::new(full_body(bytes));
    *response.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

pub fn text_response(code: u16, text: &str) -> Response<Body> {
    let mut response = Response::new(full_body(text.to_string()));
    *response.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// A Status body; a retry delay in its details is also sent as `Retry-After`, the header client-go's retry loop
/// reads (upstream does the same).
pub fn error_response(error: &ApiError) -> Response<Body> {
    let mut response = json_bytes_response(error.code, error.status_json(), "application/json");
    if let Some(seconds) = error.details.as_ref().and_then(|details| details.retry_after_seconds).filter(|s| *s > 0) {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_go_in_a_header_too() {
        let busy = ApiError::new(429, "TooManyRequests", "slow down")
            .with_details(crate::apiserver::error::Details { retry_after_seconds: Some(10), ..Default::default() });
        assert_eq!(error_response(&busy).headers()[header::RETRY_AFTER], "10");
        assert!(error_response(&ApiError::bad_request("no")).headers().get(header::RETRY_AFTER).is_none());
    }

    #[test]
    fn accept_headers_kaasd_can_answer() {
        assert!(acceptable(""));
        assert!(acceptable("application/json;as=Table;v=v1;g=meta.k8s.io,application/json"));
        assert!(acceptable("application/vnd.kubernetes.protobuf,application/json"));
        assert!(acceptable("*/*"));
        assert!(!acceptable("application/xml"));
        assert!(!acceptable("text/html, image/png"));
    }

    #[test]
    fn request_attributes_follow_upstream_request_info() {
        let query = Query::parse(Some("watch=1"));
        let target = parse_path("/apis/apps/v1/namespaces/ns/deployments/web/scale");
        let attributes = request_attributes(&Method::PATCH, &target, &Query::default()).unwrap();
        assert_eq!((attributes.verb.as_str(), attributes.subresource.as_str()), ("patch", "scale"));
        assert_eq!((attributes.namespace.as_str(), attributes.name.as_str()), ("ns", "web"));
        let watch = request_attributes(&Method::GET, &parse_path("/api/v1/pods"), &query).unwrap();
        assert_eq!(watch.verb, "watch");
        let delete_all =
            request_attributes(&Method::DELETE, &parse_path("/api/v1/namespaces/a/pods"), &Query::default()).unwrap();
        assert_eq!(delete_all.verb, "deletecollection");
        let health = request_attributes(&Method::GET, &parse_path("/healthz"), &Query::default()).unwrap();
        assert_eq!(health.path.as_deref(), Some("/healthz"));
    }
}
