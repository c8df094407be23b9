//! The agent's own HTTP endpoint on the node's loopback, reached only through the tunnel (the API server's
//! `nodes/NAME/proxy`, `pods/NAME/log`, `exec`, `attach` and `portforward`): `/healthz`,
//! `/containerLogs/{namespace}/{pod}/{container}`, and the streams of [`crate::streaming`] at
//! `/exec/{namespace}/{pod}/{container}`, `/attach/{namespace}/{pod}/{container}` and
//! `/portForward/{namespace}/{pod}`.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::channel::mpsc;
use futures::SinkExt;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::{Request, Response, StatusCode};
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{ObjectRef, Store};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::cri::{proto, Cri};
use crate::logs::{log_files, pod_log_dir, tail, LogOptions, Renderer};
use crate::pods::{LABEL_CONTAINER_NAME, LABEL_POD_UID};
use crate::streaming::{self, Verb};

pub(crate) type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// What the endpoint reads: the pods this node runs and the runtime (once they exist).
#[derive(Clone, Default)]
pub struct AgentState {
    pub pods: Option<Store<Pod>>,
    pub cri: Option<Cri>,
}

impl AgentState {
    /// The pod `namespace/name` if this node runs it, and the runtime; or why a request about it cannot be served.
    pub(crate) fn pod_and_runtime(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<(Arc<Pod>, &Cri), (StatusCode, String)> {
        let (Some(pods), Some(cri)) = (&self.pods, &self.cri) else {
            return Err((StatusCode::SERVICE_UNAVAILABLE, "the worker's container runtime is not ready yet".into()));
        };
        let pod = pods
            .get(&ObjectRef::new(name).within(namespace))
            .ok_or_else(|| (StatusCode::NOT_FOUND, format!("pod {namespace}/{name} does not run on this node")))?;
        Ok((pod, cri))
    }
}

pub async fn serve(listener: TcpListener, state: Arc<AgentState>, cancel: CancellationToken) {
    loop {
        let stream = tokio::select! {
            () = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(&state, request).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body.into())).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/plain"));
    response
}

async fn route(state: &AgentState, request: Request<hyper::body::Incoming>) -> Response<Body> {
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or("").to_string();
    if path == "/healthz" {
        return text(StatusCode::OK, "ok");
    }
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let stream = |verb, namespace: &str, pod: &str, container: Option<&str>| {
        let (namespace, pod, container) = (namespace.to_string(), pod.to_string(), container.map(str::to_string));
        async move {
            streaming::serve(state, verb, &namespace, &pod, container.as_deref(), request)
                .await
                .unwrap_or_else(|(status, message)| text(status, message))
        }
    };
    match segments.as_slice() {
        ["exec", namespace, pod, container] => stream(Verb::Exec, namespace, pod, Some(container)).await,
        ["attach", namespace, pod, container] => stream(Verb::Attach, namespace, pod, Some(container)).await,
        ["portForward", namespace, pod] => stream(Verb::PortForward, namespace, pod, None).await,
        ["containerLogs", namespace, pod, container] => {
            match container_logs(state, namespace, pod, container, &query).await {
                Ok(response) => response,
                Err((status, message)) => text(status, message),
            }
        }
        _ => text(StatusCode::NOT_FOUND, "not found"),
    }
}

/// The log of a container of a pod on this node, as `kubectl logs` asks for it.
async fn container_logs(
    state: &AgentState,
    namespace: &str,
    pod_name: &str,
    container: &str,
    query: &str,
) -> Result<Response<Body>, (StatusCode, String)> {
    let options = LogOptions::from_query(query).map_err(|error| (StatusCode::BAD_REQUEST, error))?;
    let (pod, cri) = state.pod_and_runtime(namespace, pod_name)?;
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let dir = pod_log_dir(namespace, pod_name, &uid).join(container);
    let files = log_files(&dir);
    let chosen: Option<(u32, PathBuf)> =
        if options.previous { files.iter().rev().nth(1).cloned() } else { files.last().cloned() };
    let Some((restart, file)) = chosen else {
        let message = if options.previous {
            format!("previous terminated container {container:?} in pod {pod_name:?} not found")
        } else {
            format!("container {container:?} in pod {pod_name:?} is waiting to start")
        };
        return Err((StatusCode::BAD_REQUEST, message));
    };
    let mut handle = tokio::fs::File::open(&file)
        .await
        .map_err(|error| (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot open {}: {error}", file.display())))?;
    let mut existing = Vec::new();
    handle
        .read_to_end(&mut existing)
        .await
        .map_err(|error| (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot read {}: {error}", file.display())))?;
    let mut renderer = Renderer::new(&options);
    let records = tail(renderer.feed(&existing), options.tail_lines);
    let (mut sender, receiver) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(16);
    let mut budget = options.limit_bytes.unwrap_or(usize::MAX);
    let follow = options.follow && !options.previous;
    let cri = cri.clone();
    let container = container.to_string();
    tokio::spawn(async move {
        let send = |records: Vec<Vec<u8>>, budget: &mut usize| {
            let mut chunk = Vec::new();
            for record in records {
                if *budget == 0 {
                    break;
                }
                let take = record.len().min(*budget);
                chunk.extend_from_slice(&record[..take]);
                *budget -= take;
            }
            chunk
        };
        let first = send(records, &mut budget);
        if !first.is_empty() && sender.send(Ok(Frame::data(Bytes::from(first)))).await.is_err() {
            return;
        }
        if !follow {
            return;
        }
        let mut position = existing.len() as u64;
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            if budget == 0 {
                return;
            }
            let _ = handle.seek(std::io::SeekFrom::Start(position)).await;
            let read = handle.read(&mut buffer).await.unwrap_or(0);
            if read > 0 {
                position += read as u64;
                let chunk = send(renderer.feed(&buffer[..read]), &mut budget);
                if !chunk.is_empty() && sender.send(Ok(Frame::data(Bytes::from(chunk)))).await.is_err() {
                    return;
                }
                continue;
            }
            // At the end of the file: done once the container stopped (after one more read for its last words).
            if !running(&cri, &uid, &container, restart).await {
                let read = handle.read(&mut buffer).await.unwrap_or(0);
                let chunk = send(renderer.feed(&buffer[..read]), &mut budget);
                if !chunk.is_empty() {
                    let _ = sender.send(Ok(Frame::data(Bytes::from(chunk)))).await;
                }
                return;
            }
            if sender.is_closed() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    let mut response = Response::new(StreamBody::new(receiver).boxed());
    response.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/plain"));
    Ok(response)
}

/// Whether restart `attempt` of the container still runs.
async fn running(cri: &Cri, uid: &str, container: &str, attempt: u32) -> bool {
    let mut filter = proto::ContainerFilter::default();
    filter.label_selector.insert(LABEL_POD_UID.into(), uid.into());
    filter.label_selector.insert(LABEL_CONTAINER_NAME.into(), container.into());
    match cri.runtime.clone().list_containers(proto::ListContainersRequest { filter: Some(filter) }).await {
        Ok(answer) => answer.into_inner().containers.iter().any(|c| {
            c.metadata.as_ref().is_some_and(|m| m.attempt == attempt)
                && c.state == proto::ContainerState::ContainerRunning as i32
        }),
        // The runtime is away for a moment: keep following.
        Err(_) => true,
    }
}
