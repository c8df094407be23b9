//! `/api/v1/nodes/NAME[:PORT]/proxy/PATH`: an HTTP request passed to a node through its reverse tunnel; the same
//! for `pods/NAME[:PORT]/proxy/PATH` and `services/NAME[:PORT]/proxy/PATH`, dialled from the pod's node; and
//! `pods/NAME/log`, `exec`, `attach` and `portforward`, which the pod's node agent serves the same way.
//!
//! Exec, attach and port-forward are HTTP/1.1 upgrades (SPDY/3.1 or WebSocket). The upgrade request is passed on
//! to the agent as it came; when the agent (and the runtime behind it) switch protocols, the caller gets the 101 and
//! the two connections are spliced byte for byte. kaasd never reads the streaming protocol: a protocol the runtime
//! refuses (kubectl's first attempt, WebSocket `v5.channel.k8s.io`) comes back as a non-101 answer, and kubectl
//! falls back to SPDY.
//!
//! Without a port the request goes to the node agent's own endpoint, which listens on the node's loopback at the
//! port its Node reports in `status.daemonEndpoints.kubeletEndpoint.Port` (so it is reachable only through the
//! tunnel). With a port it goes to that port on the node's first InternalIP (else ExternalIP) from the Node
//! object. The controller never dials a node directly: a NAT'd node could not be reached that way.
//!
//! With several replicas a node's tunnel ends at one of them. A replica without it forwards the request, as it
//! came, to the replica that holds it (recorded in the datastore, see `tunnels`), with its own `system:masters`
//! identity (the caller was authorized here) and a header that stops the other from forwarding again.

use std::convert::Infallible;

use bytes::Bytes;
use futures::StreamExt;
use http::{header, HeaderMap, HeaderName, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::upgrade::OnUpgrade;
use serde_json::Value;

use super::request::{Query, ResourcePath};
use super::{read_body, ApiServer, Body};
use crate::apiserver::error::{ApiError, ApiResult};
use crate::apiserver::storage::ObjectStore;

/// The agent's port when a Node does not report one (the kubelet's).
const DEFAULT_AGENT_PORT: u16 = 10250;
/// Marks a request one replica passed to another; such a request is never forwarded again.
const FORWARDED_HEADER: &str = "kaasd-forwarded-from";

/// A byte stream to send the HTTP request over: a tunnel stream, or TLS to another replica.
trait Connection: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Connection for T {}

/// Whether `resource` is a node proxy request.
pub(super) fn is_node_proxy(resource: &ResourcePath) -> bool {
    resource.group.is_empty()
        && resource.plural == "nodes"
        && resource.name.is_some()
        && resource.subresource.as_deref().is_some_and(|sub| sub == "proxy" || sub.starts_with("proxy/"))
}

impl ApiServer {
    pub(super) async fn node_proxy<B>(
        &self,
        resource: &ResourcePath,
        method: &Method,
        query: &Query,
        headers: &HeaderMap,
        body: B,
        upgrade: Option<OnUpgrade>,
    ) -> ApiResult<Response<Body>>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let name_and_port = resource.name.as_deref().unwrap_or_default();
        let (name, port) = match name_and_port.rsplit_once(':') {
            Some((name, port)) => {
                let port: u16 = port
                    .parse()
                    .ok()
                    .filter(|port| *port > 0)
                    .ok_or_else(|| ApiError::bad_request(format!("{port:?} is not a port number")))?;
                (name, Some(port))
            }
            None => (name_and_port, None),
        };
        let node = self.stored_object("nodes", None, name).await?;
        let target = match port {
            None => format!("127.0.0.1:{}", agent_port(&node)),
            Some(port) => {
                let address = node_address(&node).ok_or_else(|| {
                    ApiError::new(
                        503,
                        "ServiceUnavailable",
                        format!("node {name:?} reports no InternalIP or ExternalIP"),
                    )
                })?;
                if address.contains(':') {
                    format!("[{address}]:{port}")
                } else {
                    format!("{address}:{port}")
                }
            }
        };
        let path = resource.subresource.as_deref().unwrap_or("proxy").strip_prefix("proxy").unwrap_or("");
        let path = if path.is_empty() { "/" } else { path };
        let uri = match query.raw() {
            "" => path.to_string(),
            raw => format!("{path}?{raw}"),
        };
        let original = format!("/api/v1/nodes/{name_and_port}/{}", resource.subresource.as_deref().unwrap_or("proxy"));
        let original = match query.raw() {
            "" => original,
            raw => format!("{original}?{raw}"),
        };
        let request = ProxiedRequest { method: method.clone(), uri, original, headers, upgrade };
        self.proxy_to_node(name, &target, request, body).await
    }

    /// `pods/[http:]NAME[:PORT]/proxy/PATH` and `services/[http:]NAME[:PORT]/proxy/PATH`: an HTTP request passed to
    /// the pod (its IP and the port, by default its first container port, else 80), or to a ready endpoint of the
    /// Service's port (by number or name; none names the unnamed port). Either way it goes through the tunnel of
    /// the node the pod runs on, which reaches the pod's address; the controller never dials a pod itself.
    pub(super) async fn pod_or_service_proxy<B>(
        &self,
        resource: &ResourcePath,
        method: &Method,
        query: &Query,
        headers: &HeaderMap,
        body: B,
        upgrade: Option<OnUpgrade>,
    ) -> ApiResult<Response<Body>>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let namespace = resource.namespace.as_deref().unwrap_or_default();
        let segment = resource.name.as_deref().unwrap_or_default();
        let (name, port) = proxy_name_and_port(segment)?;
        let unavailable = |message: String| ApiError::new(503, "ServiceUnavailable", message);
        let (node, target) = if resource.plural == "pods" {
            let pod = self.stored_object("pods", Some(namespace), name).await?;
            let node = pod.pointer("/spec/nodeName").and_then(Value::as_str).filter(|node| !node.is_empty());
            let ip = pod.pointer("/status/podIP").and_then(Value::as_str).filter(|ip| !ip.is_empty());
            let (Some(node), Some(ip)) = (node, ip) else {
                return Err(unavailable(format!("pod {name:?} has no IP address yet")));
            };
            let port = pod_port(&pod, port).ok_or_else(|| {
                ApiError::bad_request(format!("pod {name:?} has no container port named {:?}", port.unwrap_or("")))
            })?;
            let address = if ip.contains(':') { format!("[{ip}]:{port}") } else { format!("{ip}:{port}") };
            (node.to_string(), address)
        } else {
            let (address, node) =
                self.service_endpoint(namespace, name, port.unwrap_or("")).await.map_err(unavailable)?;
            let node = node.ok_or_else(|| {
                unavailable(format!(
                    "the endpoint {address} of service {name:?} runs on no node, so no tunnel reaches it"
                ))
            })?;
            (node, address)
        };
        let subresource = resource.subresource.as_deref().unwrap_or("proxy");
        let path = subresource.strip_prefix("proxy").unwrap_or("");
        let path = if path.is_empty() { "/" } else { path };
        let with_query = |path: String| match query.raw() {
            "" => path,
            raw => format!("{path}?{raw}"),
        };
        let original = format!("/api/v1/namespaces/{namespace}/{}/{segment}/{subresource}", resource.plural);
        let request = ProxiedRequest {
            method: method.clone(),
            uri: with_query(path.to_string()),
            original: with_query(original),
            headers,
            upgrade,
        };
        self.proxy_to_node(&node, &target, request, body).await
    }

    /// `pods/NAME/log`: the pod's node serves the log from its runtime's files (`/containerLogs/...` on the node
    /// agent), reached through the node's tunnel like `nodes/NAME/proxy`.
    pub(super) async fn pod_log<B>(
        &self,
        resource: &ResourcePath,
        query: &Query,
        headers: &HeaderMap,
        body: B,
    ) -> ApiResult<Response<Body>>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let namespace = resource.namespace.as_deref().unwrap_or_default();
        let pod_name = resource.name.as_deref().unwrap_or_default();
        let pod = self.stored_object("pods", Some(namespace), pod_name).await?;
        let container = chosen_container(&pod, query.get("container"))?;
        let node = pod.pointer("/spec/nodeName").and_then(Value::as_str).filter(|node| !node.is_empty());
        let Some(node) = node else {
            return Err(ApiError::bad_request(format!("pod {pod_name} does not have a host assigned")));
        };
        let node_object = self.stored_object("nodes", None, node).await?;
        let target = format!("127.0.0.1:{}", agent_port(&node_object));
        let path = format!("/containerLogs/{namespace}/{pod_name}/{container}");
        let uri = match query.raw() {
            "" => path,
            raw => format!("{path}?{raw}"),
        };
        let original = format!("/api/v1/namespaces/{namespace}/pods/{pod_name}/log");
        let original = match query.raw() {
            "" => original,
            raw => format!("{original}?{raw}"),
        };
        let request = ProxiedRequest { method: Method::GET, uri, original, headers, upgrade: None };
        self.proxy_to_node(node, &target, request, body).await
    }

    /// `pods/NAME/exec`, `attach` and `portforward`: the upgrade request goes to the pod's node agent
    /// (`/exec/NS/POD/CONTAINER`, `/attach/NS/POD/CONTAINER`, `/portForward/NS/POD`) through the node's tunnel.
    pub(super) async fn pod_stream(
        &self,
        resource: &ResourcePath,
        method: &Method,
        query: &Query,
        headers: &HeaderMap,
        upgrade: Option<OnUpgrade>,
    ) -> ApiResult<Response<Body>> {
        if !headers.contains_key(header::UPGRADE) || upgrade.is_none() {
            return Err(ApiError::bad_request("Upgrade request required"));
        }
        let namespace = resource.namespace.as_deref().unwrap_or_default();
        let pod_name = resource.name.as_deref().unwrap_or_default();
        let pod = self.stored_object("pods", Some(namespace), pod_name).await?;
        let phase = pod.pointer("/status/phase").and_then(Value::as_str).unwrap_or_default();
        let subresource = resource.subresource.as_deref().unwrap_or_default();
        if phase == "Succeeded" || phase == "Failed" {
            let action = if subresource == "portforward" { "port-forward to" } else { "exec into" };
            return Err(ApiError::bad_request(format!(
                "cannot {action} a container in a completed pod; current phase is {phase}"
            )));
        }
        let Some(node) = pod.pointer("/spec/nodeName").and_then(Value::as_str).filter(|node| !node.is_empty()) else {
            return Err(ApiError::bad_request(format!("pod {pod_name} does not have a host assigned")));
        };
        let path = match subresource {
            "exec" | "attach" => {
                let container = chosen_container(&pod, query.get("container"))?;
                format!("/{subresource}/{namespace}/{pod_name}/{container}")
            }
            _ => format!("/portForward/{namespace}/{pod_name}"),
        };
        let node_object = self.stored_object("nodes", None, node).await?;
        let target = format!("127.0.0.1:{}", agent_port(&node_object));
        let with_query = |path: String| match query.raw() {
            "" => path,
            raw => format!("{path}?{raw}"),
        };
        let request = ProxiedRequest {
            method: method.clone(),
            uri: with_query(path),
            original: with_query(format!("/api/v1/namespaces/{namespace}/pods/{pod_name}/{subresource}")),
            headers,
            upgrade,
        };
        self.proxy_to_node(node, &target, request, Full::new(Bytes::new())).await
    }

    /// Sends one HTTP request to `target` on node `name` through its tunnel (or to the replica holding the
    /// tunnel, as `request.original`) and streams the answer back; an upgrade the node accepts is spliced through.
    async fn proxy_to_node<B>(
        &self,
        name: &str,
        target: &str,
        request: ProxiedRequest<'_>,
        body: B,
    ) -> ApiResult<Response<Body>>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let ProxiedRequest { method, uri, original, headers, upgrade } = request;
        let body = read_body(body).await?;
        let forwarded = headers.contains_key(FORWARDED_HEADER);
        let (stream, uri, host): (Box<dyn Connection>, String, String) = match self.tunnels.dial(name, target).await {
            Ok(stream) => (Box::new(stream), uri, target.to_string()),
            Err(error) if error.code == 503 && !forwarded => match self.tunnel_owner(name).await? {
                Some(replica) => (self.connect_replica(&replica).await?, original, replica),
                None => return Err(error),
            },
            Err(error) => return Err(error),
        };
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.map_err(|error| {
                ApiError::new(502, "BadGateway", format!("cannot speak HTTP to {host} for node {name:?}: {error}"))
            })?;
        tokio::spawn(async move {
            let _ = connection.with_upgrades().await;
        });
        // An upgrade is passed on only when this connection can switch protocols with the caller too.
        let upgrading = upgrade.is_some() && headers.contains_key(header::UPGRADE);
        let mut onward = Request::builder().method(method).uri(&uri);
        for (key, value) in headers {
            if passes_through(key) || (upgrading && (key == header::CONNECTION || key == header::UPGRADE)) {
                onward = onward.header(key, value);
            }
        }
        let onward = onward
            .header(header::HOST, host.as_str())
            .header(FORWARDED_HEADER, self.server_address.as_str())
            .body(Full::new(body))
            .map_err(|error| ApiError::bad_request(format!("cannot build the proxied request: {error}")))?;
        let mut response = sender.send_request(onward).await.map_err(|error| {
            ApiError::new(502, "BadGateway", format!("error proxying to {host} for node {name:?}: {error}"))
        })?;
        if let (true, Some(caller)) = (response.status() == StatusCode::SWITCHING_PROTOCOLS, upgrade) {
            return Ok(splice(caller, &mut response, format!("{name}: {uri}")));
        }
        let (parts, incoming) = response.into_parts();
        // The node's answer is streamed back as it comes; an error mid-way ends the body early.
        let frames = incoming
            .into_data_stream()
            .take_while(|chunk| std::future::ready(chunk.is_ok()))
            .map(|chunk| Ok::<_, Infallible>(Frame::data(chunk.unwrap_or_default())));
        let mut answer = Response::new(BodyExt::boxed(StreamBody::new(frames)));
        *answer.status_mut() = parts.status;
        for (key, value) in &parts.headers {
            if passes_through(key) {
                answer.headers_mut().append(key, value.clone());
            }
        }
        Ok(answer)
    }
}

/// What [`ApiServer::proxy_to_node`] sends: `uri` to the node, or `original` to the replica that holds the node's
/// tunnel; the caller's `upgrade` when the request may switch protocols.
struct ProxiedRequest<'a> {
    method: Method,
    uri: String,
    original: String,
    headers: &'a HeaderMap,
    upgrade: Option<OnUpgrade>,
}

/// The 101 the node answered, passed to the caller; once both sides have switched, their bytes are copied both
/// ways until either closes.
fn splice(caller: OnUpgrade, node_answer: &mut Response<hyper::body::Incoming>, description: String) -> Response<Body> {
    let node_upgrade = hyper::upgrade::on(&mut *node_answer);
    let mut answer = Response::new(BodyExt::boxed(Full::new(Bytes::new())));
    *answer.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    for (key, value) in node_answer.headers() {
        if key != header::CONTENT_LENGTH && key != header::TRANSFER_ENCODING {
            answer.headers_mut().append(key, value.clone());
        }
    }
    tokio::spawn(async move {
        let (caller, node) = match tokio::try_join!(caller, node_upgrade) {
            Ok(both) => both,
            Err(error) => {
                tracing::debug!(stream = %description, error = %error, "upgrade failed");
                return;
            }
        };
        let mut caller = hyper_util::rt::TokioIo::new(caller);
        let mut node = hyper_util::rt::TokioIo::new(node);
        let result = tokio::io::copy_bidirectional(&mut caller, &mut node).await;
        tracing::debug!(stream = %description, result = ?result, "stream ended");
    });
    answer
}

impl ApiServer {
    /// The stored core/v1 object (`pods`, `nodes`) of that name, or upstream's 404.
    async fn stored_object(&self, plural: &str, namespace: Option<&str>, name: &str) -> ApiResult<Value> {
        let registry = self.registry();
        let def = registry.get("", "v1", plural).cloned().expect("core/v1 kinds are built in");
        let stored = self.store.get(&ObjectStore::key(&def, namespace, name), false).await?;
        stored
            .map(|stored| stored.object)
            .ok_or_else(|| ApiError::new(404, "NotFound", format!("{plural} \"{name}\" not found")))
    }

    /// A TLS connection to another replica's API port, as this replica.
    async fn connect_replica(&self, replica: &str) -> ApiResult<Box<dyn Connection>> {
        let unavailable = |reason: String| {
            ApiError::new(
                503,
                "ServiceUnavailable",
                format!("cannot reach replica {replica} that holds the tunnel: {reason}"),
            )
        };
        let config = self.replica_tls.get().cloned().ok_or_else(|| unavailable("no replica identity yet".into()))?;
        let host = replica.rsplit_once(':').map(|(host, _)| host).unwrap_or(replica);
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        let server_name =
            rustls::pki_types::ServerName::try_from(host).map_err(|error| unavailable(error.to_string()))?;
        let tcp = tokio::time::timeout(std::time::Duration::from_secs(5), tokio::net::TcpStream::connect(replica))
            .await
            .map_err(|_| unavailable("no answer within 5 s".into()))?
            .map_err(|error| unavailable(error.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(server_name, tcp)
            .await
            .map_err(|error| unavailable(error.to_string()))?;
        Ok(Box::new(tls))
    }
}

/// Whether `resource` is `pods/NAME/exec`, `attach` or `portforward`.
pub(super) fn is_pod_stream(resource: &ResourcePath) -> bool {
    resource.group.is_empty()
        && resource.plural == "pods"
        && resource.namespace.is_some()
        && resource.name.is_some()
        && matches!(resource.subresource.as_deref(), Some("exec" | "attach" | "portforward"))
}

/// Whether `resource` is `pods/NAME/proxy[/PATH]` or `services/NAME/proxy[/PATH]`.
pub(super) fn is_pod_or_service_proxy(resource: &ResourcePath) -> bool {
    resource.group.is_empty()
        && matches!(resource.plural.as_str(), "pods" | "services")
        && resource.namespace.is_some()
        && resource.name.is_some()
        && resource.subresource.as_deref().is_some_and(|sub| sub == "proxy" || sub.starts_with("proxy/"))
}

/// `[SCHEME:]NAME[:PORT]` of a pod or service proxy path. Only plain HTTP is proxied.
fn proxy_name_and_port(segment: &str) -> ApiResult<(&str, Option<&str>)> {
    let parts: Vec<&str> = segment.split(':').collect();
    let (scheme, name, port) = match parts.as_slice() {
        [name] => ("", *name, None),
        [name, port] => ("", *name, Some(*port)),
        [scheme, name, port] => (*scheme, *name, Some(*port)),
        _ => return Err(ApiError::bad_request(format!("invalid proxy target {segment:?}: use NAME[:PORT]"))),
    };
    match scheme {
        "" | "http" => Ok((name, port.filter(|port| !port.is_empty()))),
        "https" => Err(ApiError::bad_request(format!(
            "proxying over https is not supported ({segment:?}); use http or name the port without a scheme"
        ))),
        other => Err(ApiError::bad_request(format!("unknown proxy scheme {other:?} in {segment:?}"))),
    }
}

/// The port a pod proxy goes to: a number as given, a container port's name, or without one the first container
/// port (80 when no container declares one), as upstream picks it.
fn pod_port(pod: &Value, port: Option<&str>) -> Option<u64> {
    let ports = || {
        let containers = pod.pointer("/spec/containers").and_then(Value::as_array).into_iter().flatten();
        containers.flat_map(|container| container.get("ports").and_then(Value::as_array).into_iter().flatten())
    };
    match port {
        Some(text) => text.parse().ok().or_else(|| {
            ports().find(|entry| entry["name"].as_str() == Some(text)).and_then(|entry| entry["containerPort"].as_u64())
        }),
        None => Some(ports().find_map(|entry| entry["containerPort"].as_u64()).unwrap_or(80)),
    }
}

/// Whether `resource` is `pods/NAME/log`.
pub(super) fn is_pod_log(resource: &ResourcePath) -> bool {
    resource.group.is_empty()
        && resource.plural == "pods"
        && resource.namespace.is_some()
        && resource.name.is_some()
        && resource.subresource.as_deref() == Some("log")
}

/// The container a log, exec or attach asks for: the named one, else the pod's default (its
/// `kubectl.kubernetes.io/default-container` annotation, or its only container).
fn chosen_container(pod: &Value, asked: Option<&str>) -> ApiResult<String> {
    let name = pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    let names: Vec<&str> = ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .filter_map(|key| pod.pointer(&format!("/spec/{key}")).and_then(Value::as_array))
        .flatten()
        .filter_map(|container| container["name"].as_str())
        .collect();
    let apps: Vec<&str> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|container| container["name"].as_str())
        .collect();
    let default = pod.pointer("/metadata/annotations/kubectl.kubernetes.io~1default-container").and_then(Value::as_str);
    let chosen = match (asked.filter(|asked| !asked.is_empty()), default, apps.as_slice()) {
        (Some(asked), _, _) => asked,
        (None, Some(default), _) => default,
        (None, None, [only]) => only,
        (None, None, _) => {
            return Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                apps.join(" ")
            )))
        }
    };
    if !names.contains(&chosen) {
        return Err(ApiError::bad_request(format!("container {chosen} is not valid for pod {name}")));
    }
    Ok(chosen.to_string())
}

/// Headers passed on in either direction: not the caller's credentials, nor hop-by-hop headers.
fn passes_through(name: &HeaderName) -> bool {
    !matches!(
        name.as_str(),
        "authorization"
            | "proxy-authorization"
            | "cookie"
            | "host"
            | "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "content-length"
    ) && !name.as_str().starts_with("impersonate-")
}

fn agent_port(node: &Value) -> u16 {
    node.pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .and_then(|port| u16::try_from(port).ok())
        .filter(|port| *port > 0)
        .unwrap_or(DEFAULT_AGENT_PORT)
}

/// The node's first InternalIP, else its first ExternalIP.
fn node_address(node: &Value) -> Option<String> {
    let addresses = node.pointer("/status/addresses")?.as_array()?;
    ["InternalIP", "ExternalIP"].iter().find_map(|wanted| {
        addresses
            .iter()
            .find(|address| address["type"] == *wanted)
            .and_then(|address| address["address"].as_str())
            .map(str::to_string)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn targets_come_from_the_node_object() {
        let node = json!({"status": {
            "addresses": [{"type": "Hostname", "address": "edge1"}, {"type": "ExternalIP", "address": "203.0.113.9"},
                          {"type": "InternalIP", "address": "192.168.50.11"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10251}},
        }});
        assert_eq!(node_address(&node).as_deref(), Some("192.168.50.11"));
        assert_eq!(agent_port(&node), 10251);
        assert_eq!(agent_port(&json!({})), DEFAULT_AGENT_PORT);
        assert_eq!(node_address(&json!({"status": {"addresses": [{"type": "Hostname", "address": "x"}]}})), None);
    }

    #[test]
    fn credentials_and_hop_by_hop_headers_stay_behind() {
        for name in ["authorization", "connection", "impersonate-user", "host"] {
            assert!(!passes_through(&HeaderName::from_static(name)), "{name}");
        }
        for name in ["accept", "content-type", "x-request-id"] {
            assert!(passes_through(&HeaderName::from_static(name)), "{name}");
        }
    }

    #[test]
    fn logs_default_to_the_only_or_annotated_container() {
        let one = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "main"}]}});
        assert_eq!(chosen_container(&one, None).unwrap(), "main");
        assert_eq!(
            chosen_container(&one, Some("other")).unwrap_err().message,
            "container other is not valid for pod p"
        );
        let two = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        let error = chosen_container(&two, None).unwrap_err();
        assert_eq!(error.message, "a container name must be specified for pod p, choose one of: [a b]");
        assert_eq!(chosen_container(&two, Some("b")).unwrap(), "b");
        let annotated = json!({"metadata": {"name": "p", "annotations": {"kubectl.kubernetes.io/default-container": "b"}},
                               "spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        assert_eq!(chosen_container(&annotated, None).unwrap(), "b");
    }

    #[test]
    fn only_node_proxy_paths_are_node_proxy() {
        let target = |path: &str| match super::super::request::parse_path(path) {
            super::super::request::Target::Resource(resource) => is_node_proxy(&resource),
            _ => false,
        };
        assert!(target("/api/v1/nodes/edge1/proxy/healthz"));
        assert!(target("/api/v1/nodes/edge1:8080/proxy"));
        assert!(!target("/api/v1/nodes/edge1/status"));
        assert!(!target("/api/v1/namespaces/default/pods/p/proxy/x"));
    }
}
