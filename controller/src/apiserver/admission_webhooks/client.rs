//! Calling one webhook: where to connect (its URL, or a ready endpoint of its Service, through the node's reverse
//! tunnel when the endpoint lives on a connected worker), TLS against the webhook's caBundle only, one HTTP/1.1
//! POST, all within the webhook's timeout.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, Request};
use http_body_util::{BodyExt, Full, Limited};
use serde_json::Value;

use super::config::{Endpoint, Webhook};
use crate::apiserver::storage::ObjectStore;
use crate::apiserver::ApiServer;

/// Largest answer read from a webhook, as the largest request body the API server accepts.
const MAX_RESPONSE_BYTES: usize = crate::apiserver::MAX_BODY_BYTES;

/// A byte stream to the webhook server: TCP, or a stream through a node's tunnel.
trait Connection: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Connection for T {}

/// Where one call goes: the address to dial, and the names the request and TLS use.
struct Destination {
    /// `host:port` to connect to.
    address: String,
    /// The node whose tunnel reaches `address`, for a Service endpoint on a worker.
    node: Option<String>,
    /// The TLS server name (the URL's host, or `<service>.<namespace>.svc`).
    server_name: String,
    /// `https://...` as upstream prints it in errors.
    url: String,
    /// Path and query sent in the request line.
    path_and_query: String,
    host_header: String,
}

impl ApiServer {
    /// POSTs `body` to the webhook and returns the answer's body. An `Err` is upstream's "failed to call webhook"
    /// reason; the caller applies the failure policy.
    pub(super) async fn call_webhook(&self, webhook: &Webhook, body: Vec<u8>) -> Result<Vec<u8>, String> {
        let endpoint = webhook.endpoint.as_ref().map_err(Clone::clone)?;
        let tls = webhook.tls.as_ref().map_err(Clone::clone)?.clone();
        self.post_to_webhook(endpoint, tls, webhook.timeout, body).await
    }

    /// POSTs `body` (JSON) to a webhook server, admission or CRD conversion alike: see [`ApiServer::call_webhook`].
    pub(crate) async fn post_to_webhook(
        &self,
        endpoint: &Endpoint,
        tls: Arc<rustls::ClientConfig>,
        timeout: std::time::Duration,
        body: Vec<u8>,
    ) -> Result<Vec<u8>, String> {
        let destination = self.destination(endpoint, timeout.as_secs()).await?;
        let url = destination.url.clone();
        let exchange = async move {
            let stream: Box<dyn Connection> = match &destination.node {
                Some(node) => Box::new(self.tunnels.dial(node, &destination.address).await.map_err(|e| e.message)?),
                None => {
                    let tcp = tokio::net::TcpStream::connect(&destination.address)
                        .await
                        .map_err(|error| format!("dial tcp {}: {error}", destination.address))?;
                    let _ = tcp.set_nodelay(true);
                    Box::new(tcp)
                }
            };
            let server_name = rustls::pki_types::ServerName::try_from(destination.server_name.clone())
                .map_err(|error| format!("{:?} is not a TLS server name: {error}", destination.server_name))?;
            let tls_stream = tokio_rustls::TlsConnector::from(tls)
                .connect(server_name, stream)
                .await
                .map_err(|error| format!("tls: {error}"))?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls_stream))
                    .await
                    .map_err(|error| error.to_string())?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            let request = Request::post(&destination.path_and_query)
                .header(header::HOST, &destination.host_header)
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::ACCEPT, "application/json")
                .body(Full::new(Bytes::from(body)))
                .map_err(|error| error.to_string())?;
            let response = sender.send_request(request).await.map_err(|error| error.to_string())?;
            let status = response.status();
            let answer = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|error| format!("cannot read the answer: {error}"))?
                .to_bytes();
            if !status.is_success() {
                let text = String::from_utf8_lossy(&answer);
                let text = text.trim();
                return Err(if text.is_empty() {
                    format!(
                        "the server responded with the status code {} but did not return more information",
                        status.as_u16()
                    )
                } else {
                    format!("the server responded with the status code {}: {}", status.as_u16(), truncate(text, 512))
                });
            }
            Ok(answer.to_vec())
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(reason)) => Err(format!("failed to call webhook: Post {url:?}: {reason}")),
            Err(_elapsed) => Err(format!("failed to call webhook: Post {url:?}: context deadline exceeded")),
        }
    }

    async fn destination(&self, endpoint: &Endpoint, timeout_seconds: u64) -> Result<Destination, String> {
        match endpoint {
            Endpoint::Url(url) => {
                let host = url.host_str().unwrap_or("").trim_start_matches('[').trim_end_matches(']').to_string();
                let port = url.port_or_known_default().unwrap_or(443);
                let address = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
                let path_and_query = format!("{}?timeout={timeout_seconds}s", url.path());
                let shown = format!("{}://{}{path_and_query}", url.scheme(), authority(url));
                Ok(Destination {
                    address,
                    node: None,
                    server_name: host,
                    url: shown,
                    path_and_query,
                    host_header: authority(url),
                })
            }
            Endpoint::Service { namespace, name, path, port } => {
                let (address, node) = self.service_endpoint(namespace, name, &port.to_string()).await?;
                // A node whose tunnel ends elsewhere is dialled directly, as an endpoint outside the cluster is.
                let node = node.filter(|node| self.tunnels.is_connected(node));
                let host = format!("{name}.{namespace}.svc");
                let path = if path.is_empty() { "/" } else { path.as_str() };
                let path_and_query = format!("{path}?timeout={timeout_seconds}s");
                Ok(Destination {
                    address,
                    node,
                    server_name: host.clone(),
                    url: format!("https://{host}:{port}{path_and_query}"),
                    path_and_query,
                    host_header: format!("{host}:{port}"),
                })
            }
        }
    }

    /// One ready endpoint of a Service's port, from its EndpointSlices: `ip:targetPort`, and the node it runs on.
    /// `port` is the Service port's number or name (empty for an unnamed one), as `services/NAME:PORT/proxy` names
    /// it. A webhook call goes through that node's tunnel when it ends here (a pod on a worker behind NAT is
    /// reachable only that way); the services proxy always goes through the node.
    pub(crate) async fn service_endpoint(
        &self,
        namespace: &str,
        name: &str,
        port: &str,
    ) -> Result<(String, Option<String>), String> {
        let registry = self.registry();
        let services = registry.get("", "v1", "services").cloned().ok_or("services are not served")?;
        let slices =
            registry.get("discovery.k8s.io", "v1", "endpointslices").cloned().ok_or("EndpointSlices are not served")?;
        let service = self
            .store
            .get(&ObjectStore::key(&services, Some(namespace), name), false)
            .await
            .map_err(|error| error.message)?
            .ok_or_else(|| format!("service \"{name}\" not found"))?
            .object;
        let ports = service.pointer("/spec/ports").and_then(Value::as_array).cloned().unwrap_or_default();
        let service_port = match port.parse::<u64>() {
            Ok(number) => ports
                .iter()
                .find(|entry| entry["port"].as_u64() == Some(number))
                .ok_or_else(|| format!("no service port {number} found for service \"{name}\""))?,
            Err(_) => ports
                .iter()
                .find(|entry| entry["name"].as_str().unwrap_or("") == port)
                .ok_or_else(|| format!("no service port {port:?} found for service \"{name}\""))?,
        };
        let port_name = service_port["name"].as_str().unwrap_or("");
        let page = self
            .store
            .list(&ObjectStore::prefix(&slices, Some(namespace)), None, 0, 0)
            .await
            .map_err(|error| error.message)?;
        let candidates = page.items.iter().map(|stored| &stored.object).filter(|slice| {
            slice.pointer("/metadata/labels/kubernetes.io~1service-name").and_then(Value::as_str) == Some(name)
        });
        for slice in candidates {
            let Some(target_port) = slice
                .get("ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|entry| entry["name"].as_str().unwrap_or("") == port_name)
                .and_then(|entry| entry["port"].as_u64())
            else {
                continue;
            };
            for endpoint in slice.get("endpoints").and_then(Value::as_array).into_iter().flatten() {
                if endpoint.pointer("/conditions/ready").and_then(Value::as_bool) == Some(false) {
                    continue;
                }
                let Some(ip) = endpoint.pointer("/addresses/0").and_then(Value::as_str) else { continue };
                let address =
                    if ip.contains(':') { format!("[{ip}]:{target_port}") } else { format!("{ip}:{target_port}") };
                return Ok((address, endpoint["nodeName"].as_str().map(str::to_string)));
            }
        }
        Err(format!("no endpoints available for service \"{name}\""))
    }
}

/// `host[:port]` of a URL, as written.
fn authority(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((index, _)) => &text[..index],
        None => text,
    }
}
