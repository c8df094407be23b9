//! `/api/v1/nodes/NAME[:PORT]/proxy/PATH`: an HTTP request passed to a node through its reverse tunnel; and
//! `pods/NAME/log`, which the pod's node agent serves the same way.
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
use http::{header, HeaderMap, HeaderName, Method, Request, Response};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
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
        let registry = self.registry();
        let nodes = registry.get("", "v1", "nodes").cloned().expect("nodes are built in");
        let node = self
            .store
            .get(&ObjectStore::key(&nodes, None, name), false)
            .await?
            .ok_or_else(|| ApiError::new(404, "NotFound", format!("nodes \"{name}\" not found")))?
            .object;
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
        self.proxy_to_node(name, &target, uri, original, method, headers, body).await
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
        let registry = self.registry();
        let pods = registry.get("", "v1", "pods").cloned().expect("pods are built in");
        let pod = self
            .store
            .get(&ObjectStore::key(&pods, Some(namespace), pod_name), false)
            .await?
            .ok_or_else(|| ApiError::new(404, "NotFound", format!("pods \"{pod_name}\" not found")))?
            .object;
        let container = log_container(&pod, query.get("container"))?;
        let node = pod.pointer("/spec/nodeName").and_then(Value::as_str).filter(|node| !node.is_empty());
        let Some(node) = node else {
            return Err(ApiError::bad_request(format!("pod {pod_name} does not have a host assigned")));
        };
        let nodes = registry.get("", "v1", "nodes").cloned().expect("nodes are built in");
        let node_object = self
            .store
            .get(&ObjectStore::key(&nodes, None, node), false)
            .await?
            .ok_or_else(|| ApiError::new(404, "NotFound", format!("nodes \"{node}\" not found")))?
            .object;
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
        self.proxy_to_node(node, &target, uri, original, &Method::GET, headers, body).await
    }

    /// Sends one HTTP request to `target` on node `name` through its tunnel (or to the replica holding the
    /// tunnel, as `original`) and streams the answer back.
    #[allow(clippy::too_many_arguments)]
    async fn proxy_to_node<B>(
        &self,
        name: &str,
        target: &str,
        uri: String,
        original: String,
        method: &Method,
        headers: &HeaderMap,
        body: B,
    ) -> ApiResult<Response<Body>>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
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
            let _ = connection.await;
        });
        let mut request = Request::builder().method(method.clone()).uri(&uri);
        for (key, value) in headers {
            if passes_through(key) {
                request = request.header(key, value);
            }
        }
        let request = request
            .header(header::HOST, host.as_str())
            .header(FORWARDED_HEADER, self.server_address.as_str())
            .body(Full::new(body))
            .map_err(|error| ApiError::bad_request(format!("cannot build the proxied request: {error}")))?;
        let response = sender.send_request(request).await.map_err(|error| {
            ApiError::new(502, "BadGateway", format!("error proxying to {host} for node {name:?}: {error}"))
        })?;
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

impl ApiServer {
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

/// Whether `resource` is `pods/NAME/log`.
pub(super) fn is_pod_log(resource: &ResourcePath) -> bool {
    resource.group.is_empty()
        && resource.plural == "pods"
        && resource.namespace.is_some()
        && resource.name.is_some()
        && resource.subresource.as_deref() == Some("log")
}

/// The container whose log is asked for: the named one, else the pod's default (its
/// `kubectl.kubernetes.io/default-container` annotation, or its only container).
fn log_container(pod: &Value, asked: Option<&str>) -> ApiResult<String> {
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
        assert_eq!(log_container(&one, None).unwrap(), "main");
        assert_eq!(log_container(&one, Some("other")).unwrap_err().message, "container other is not valid for pod p");
        let two = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        let error = log_container(&two, None).unwrap_err();
        assert_eq!(error.message, "a container name must be specified for pod p, choose one of: [a b]");
        assert_eq!(log_container(&two, Some("b")).unwrap(), "b");
        let annotated = json!({"metadata": {"name": "p", "annotations": {"kubectl.kubernetes.io/default-container": "b"}},
                               "spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        assert_eq!(log_container(&annotated, None).unwrap(), "b");
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
