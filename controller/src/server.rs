//! The HTTPS listener: TLS (rustls), HTTP/1.1 and HTTP/2 on one port (hyper-util's auto builder), the client
//! certificate turned into a user, then the API server.

use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::apiserver::auth::{certificate_not_before, user_from_certificate};
use crate::apiserver::error::ApiError;
use crate::apiserver::{error_response, ApiServer};
use crate::tunnels::node_of;

/// Accepts connections until `cancel`, then lets open requests finish (watches end when their stream is dropped).
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    api: Arc<ApiServer>,
    cancel: CancellationToken,
) {
    let acceptor = TlsAcceptor::from(tls);
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            () = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(error = %error, "accept failed");
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let api = api.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls_stream = match acceptor.accept(stream).await {
                Ok(tls_stream) => tls_stream,
                Err(error) => {
                    tracing::debug!(peer = %peer, error = %error, "TLS handshake failed");
                    return;
                }
            };
            let (_, session) = tls_stream.get_ref();
            let certificate = session.peer_certificates().and_then(|certificates| certificates.first());
            let certificate_user = certificate.and_then(|certificate| user_from_certificate(certificate));
            let not_before = certificate.and_then(|certificate| certificate_not_before(certificate)).unwrap_or(0);
            let node = certificate_user.as_ref().and_then(node_of).map(str::to_string);
            if session.alpn_protocol() == Some(kaasd_tunnel::session::ALPN) {
                serve_tunnel(&api, node, not_before, tls_stream).await;
                return;
            }
            let service = service_fn(move |request| {
                let api = api.clone();
                let user = certificate_user.clone();
                let node = node.clone();
                async move {
                    if let Some(node) = &node {
                        // Checked per request: a removed node's HTTP/2 connection may outlive the removal.
                        if api.node_certificate_revoked(node, not_before).await.unwrap_or(true) {
                            return Ok(error_response(&ApiError::unauthorized()));
                        }
                    }
                    Ok::<_, std::convert::Infallible>(api.handle(user, request).await)
                }
            });
            let builder = auto::Builder::new(TokioExecutor::new());
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(tls_stream), service);
            if let Err(error) = watcher.watch(connection.into_owned()).await {
                tracing::debug!(peer = %peer, error = %error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(std::time::Duration::from_secs(5)) => {
            tracing::info!("connections still open after 5 s; closing them");
        }
    }
}

/// A worker's tunnel connection (ALPN `kaasd-tunnel/1`): accepted only with a node certificate that is not revoked,
/// for a Node that exists; then it belongs to that node until it closes.
async fn serve_tunnel<IO>(api: &ApiServer, node: Option<String>, not_before: i64, io: IO)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let Some(node) = node else {
        tracing::info!("refusing a tunnel without a node certificate (CN=system:node:<name>, O=system:nodes)");
        return;
    };
    match api.node_certificate_revoked(&node, not_before).await {
        Ok(false) => {}
        _ => {
            tracing::info!(node.name = %node, "refusing a tunnel: the node was removed after its certificate was issued");
            return;
        }
    }
    if !api.node_exists(&node).await {
        tracing::info!(node.name = %node, "refusing a tunnel: no Node object of that name");
        return;
    }
    if let Err(error) = api.claim_tunnel(&node).await {
        tracing::warn!(node.name = %node, error = %error.message, "cannot record which replica holds the tunnel");
    }
    api.tunnels.serve(&node, io).await;
    if !api.tunnels.is_connected(&node) {
        let _ = api.release_tunnel(&node).await;
    }
}
