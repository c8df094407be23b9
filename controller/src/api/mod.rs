//! The HTTP API: routing a request to discovery, OpenAPI, health endpoints or the generic object handlers, and
//! answering errors as Status bodies.

pub mod discovery;
mod objects;
pub use objects::now;
pub mod request;
mod watch;

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, Limited};
use serde_json::{json, Value};

use crate::auth::User;
use crate::error::{ApiError, ApiResult};
use crate::registry::Registry;
use crate::storage::ObjectStore;
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
    pub(crate) services: objects::ServiceAllocator,
    openapi: crate::openapi::OpenApiDocuments,
}

impl ApiServer {
    pub fn new(
        store: ObjectStore,
        registry: Registry,
        server_address: String,
        service_cidr: crate::ServiceCidr,
    ) -> ApiServer {
        ApiServer {
            store,
            registry: RwLock::new(Arc::new(registry)),
            server_address,
            started: Instant::now(),
            ready: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            services: objects::ServiceAllocator::new(service_cidr),
            openapi: crate::openapi::OpenApiDocuments::new(),
        }
    }

    pub fn registry(&self) -> Arc<Registry> {
        self.registry.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    pub fn set_registry(&self, registry: Registry) {
        *self.registry.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(registry);
    }

    /// /readyz answers ok once bootstrap objects exist.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// Answers one request. Never fails: every error becomes a Status response.
    pub async fn handle<B>(self: &Arc<Self>, user: User, request: Request<B>) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let (parts, body) = request.into_parts();
        let path = parts.uri.path().to_string();
        let query = Query::parse(parts.uri.query());
        let result = self.route(&user, &parts.method, &path, &query, &parts.headers, body).await;
        let response = result.unwrap_or_else(|error| error_response(&error));
        tracing::debug!(
            http.method = %parts.method,
            http.path = %path,
            http.status = response.status().as_u16(),
            user.name = %user.name,
            "request"
        );
        response
    }

    async fn route<B>(
        self: &Arc<Self>,
        user: &User,
        method: &Method,
        path: &str,
        query: &Query,
        headers: &HeaderMap,
        body: B,
    ) -> ApiResult<Response<Body>>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let target = parse_path(path);
        authorize_anonymous(user, method, &target)?;
        let accept = header_text(headers, header::ACCEPT);
        match target {
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
            Target::Resource(resource) => {
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
            "/openapi/v3" | "/openapi/v3/" => {
                let index = self.openapi.index(&self.registry(), crate::schema::Schemas::shared(), &|_| None);
                Ok(json_response(200, &index))
            }
            _ => {
                let document = path
                    .strip_prefix("/openapi/v3/")
                    .and_then(crate::openapi::parse_document_path)
                    .and_then(|(group, version)| {
                        self.openapi.document(
                            &self.registry(),
                            crate::schema::Schemas::shared(),
                            &group,
                            &version,
                            &|_| None,
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

    fn metrics(&self) -> String {
        format!(
            "# HELP apiserver_requests_total Requests served since start.\n\
             # TYPE apiserver_requests_total counter\n\
             apiserver_requests_total {}\n\
             # HELP kaasd_store_revision Current revision of the datastore.\n\
             # TYPE kaasd_store_revision gauge\n\
             kaasd_store_revision {}\n\
             # HELP process_start_time_seconds Seconds since the server started.\n\
             # TYPE kaasd_uptime_seconds gauge\n\
             kaasd_uptime_seconds {}\n",
            self.requests.load(Ordering::Relaxed),
            self.store.revision(),
            self.started.elapsed().as_secs_f64(),
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

/// Anonymous users reach health, version, discovery and OpenAPI and nothing else (upstream's
/// system:public-info-viewer and system:discovery roles).
fn authorize_anonymous(user: &User, method: &Method, target: &Target) -> ApiResult<()> {
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
    let what = match target {
        Target::Resource(resource) => {
            let verb = method.as_str().to_lowercase();
            let namespace =
                resource.namespace.as_deref().map(|ns| format!(" in the namespace \"{ns}\"")).unwrap_or_default();
            format!("cannot {verb} resource \"{}\" in API group \"{}\"{namespace}", resource.plural, resource.group)
        }
        Target::NonResource(path) => format!("cannot {} path \"{path}\"", method.as_str().to_lowercase()),
        Target::Discovery { .. } => "cannot change discovery".to_string(),
    };
    Err(ApiError::forbidden(format!("forbidden: User \"system:anonymous\" {what}")))
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
    let bytes = serde_json::to_vec(value).unwrap_or_default();
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

pub fn error_response(error: &ApiError) -> Response<Body> {
    json_response(error.code, &error.to_status())
}
