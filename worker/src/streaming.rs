//! `kubectl exec`, `attach` and `port-forward` on this node, as the kubelet serves them: the agent asks the runtime
//! for a stream URL (CRI `Exec`, `Attach`, `PortForward`; containerd answers with a one-minute token on its
//! loopback stream server), passes the caller's HTTP/1.1 upgrade request on to that URL, and once the runtime
//! switches protocols splices the two connections byte for byte.
//!
//! The agent never reads the streaming protocol itself. Whatever the client and the runtime agree on (SPDY/3.1
//! remotecommand v1–v4, WebSocket `channel.k8s.io` up to `v4`, SPDY port-forward) passes through unchanged; a
//! protocol the runtime does not speak (kubectl's WebSocket `v5.channel.k8s.io` first attempt) is refused by the
//! runtime with a non-101 answer, which is passed back so the client falls back to SPDY.
//!
//! ```text
//! API server ──tunnel──► agent /exec/NS/POD/CONTAINER?command=…  ── CRI Exec ──► url
//!                         agent ── same upgrade request ──► containerd 127.0.0.1:PORT/exec/TOKEN
//!                         101 back to the API server, then bytes both ways
//! ```

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::header;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use crate::agent::{AgentState, Body};
use crate::cri::{proto, Cri};
use crate::logs::is_true;
use crate::pods::{LABEL_CONTAINER_NAME, LABEL_POD_UID};

/// Which stream a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Exec,
    Attach,
    PortForward,
}

/// Why a stream could not be set up: the status and message the caller sees.
type Refusal = (StatusCode, String);

/// What the query of an exec or attach request asks for (the API's `PodExecOptions`/`PodAttachOptions` names, and
/// the kubelet's `input`/`output`/`error` spelling of the same flags).
#[derive(Debug, Default, PartialEq, Eq)]
struct StreamOptions {
    command: Vec<String>,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
    ports: Vec<i32>,
}

impl StreamOptions {
    fn from_query(query: &str) -> Result<StreamOptions, String> {
        let mut options = StreamOptions::default();
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            match key.as_ref() {
                "command" => options.command.push(value.into_owned()),
                "stdin" | "input" => options.stdin = is_true(&value),
                "stdout" | "output" => options.stdout = is_true(&value),
                "stderr" | "error" => options.stderr = is_true(&value),
                "tty" => options.tty = is_true(&value),
                // Repeated, or one comma-separated list (both forms reach the API).
                "ports" | "port" => {
                    for port in value.split(',').filter(|port| !port.is_empty()) {
                        let number = port
                            .trim()
                            .parse::<u16>()
                            .ok()
                            .filter(|port| *port > 0)
                            .ok_or_else(|| format!("{port:?} is not a valid port number"))?;
                        options.ports.push(i32::from(number));
                    }
                }
                _ => {}
            }
        }
        Ok(options)
    }
}

/// Serves one `/exec/NS/POD/CONTAINER`, `/attach/NS/POD/CONTAINER` or `/portForward/NS/POD` request.
pub async fn serve(
    state: &AgentState,
    verb: Verb,
    namespace: &str,
    pod_name: &str,
    container: Option<&str>,
    mut request: Request<hyper::body::Incoming>,
) -> Result<Response<Body>, Refusal> {
    if !request.headers().contains_key(header::UPGRADE) {
        return Err((StatusCode::BAD_REQUEST, "Upgrade request required".into()));
    }
    let options = StreamOptions::from_query(request.uri().query().unwrap_or(""))
        .map_err(|error| (StatusCode::BAD_REQUEST, error))?;
    let (pod, cri) = state.pod_and_runtime(namespace, pod_name)?;
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let url = stream_url(cri, verb, &uid, pod_name, container, &options).await?;
    let mut target: hyper::Uri = url
        .parse()
        .map_err(|_| internal(format!("the runtime answered with a stream URL that is not one: {url:?}")))?;
    if verb == Verb::PortForward && !options.ports.is_empty() {
        // The runtime's WebSocket port-forward reads the ports from `port`, the API's name is `ports`.
        let ports: Vec<String> = options.ports.iter().map(i32::to_string).collect();
        let with_ports = format!("{}?port={}", target.path(), ports.join(","));
        let mut parts = target.into_parts();
        parts.path_and_query = Some(with_ports.parse().map_err(|_| internal("bad port list".into()))?);
        target = hyper::Uri::from_parts(parts).map_err(|_| internal("bad stream URL".into()))?;
    }
    let authority = target.authority().map(|authority| authority.to_string()).unwrap_or_default();
    let connection = tokio::net::TcpStream::connect(&authority)
        .await
        .map_err(|error| internal(format!("cannot reach the runtime's stream server at {authority}: {error}")))?;
    let _ = connection.set_nodelay(true);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(connection))
        .await
        .map_err(|error| internal(format!("cannot speak HTTP to the runtime's stream server: {error}")))?;
    tokio::spawn(async move {
        let _ = connection.with_upgrades().await;
    });
    let path = target.path_and_query().map(|path| path.as_str()).unwrap_or("/").to_string();
    let mut onward = Request::builder().method(request.method().clone()).uri(path);
    for (name, value) in request.headers() {
        if name != header::HOST && name != header::CONTENT_LENGTH {
            onward = onward.header(name, value);
        }
    }
    let onward = onward
        .header(header::HOST, authority.as_str())
        .body(Empty::<Bytes>::new())
        .map_err(|error| internal(format!("cannot build the stream request: {error}")))?;
    let caller_upgrade = hyper::upgrade::on(&mut request);
    let mut answer = sender
        .send_request(onward)
        .await
        .map_err(|error| internal(format!("the runtime's stream server failed the request: {error}")))?;
    if answer.status() != StatusCode::SWITCHING_PROTOCOLS {
        // A refusal (an unsupported protocol, an expired token): passed back as it came, so the client can fall
        // back to another protocol or show the reason.
        let status = answer.status();
        let headers = answer.headers().clone();
        let body = answer.into_body().collect().await.map(|body| body.to_bytes()).unwrap_or_default();
        let mut response = Response::new(Full::new(body).boxed());
        *response.status_mut() = status;
        if let Some(kind) = headers.get(header::CONTENT_TYPE) {
            response.headers_mut().insert(header::CONTENT_TYPE, kind.clone());
        }
        return Ok(response);
    }
    let runtime_upgrade = hyper::upgrade::on(&mut answer);
    let mut response = Response::new(Empty::<Bytes>::new().boxed());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    for (name, value) in answer.headers() {
        if name != header::CONTENT_LENGTH {
            response.headers_mut().append(name, value.clone());
        }
    }
    let description = format!("{verb:?} {namespace}/{pod_name}");
    tokio::spawn(async move {
        let (caller, runtime) = match tokio::try_join!(caller_upgrade, runtime_upgrade) {
            Ok(both) => both,
            Err(error) => {
                tracing::debug!(stream = %description, error = %error, "stream upgrade failed");
                return;
            }
        };
        let result = tokio::io::copy_bidirectional(&mut TokioIo::new(caller), &mut TokioIo::new(runtime)).await;
        tracing::debug!(stream = %description, result = ?result, "stream ended");
    });
    Ok(response)
}

fn internal(message: String) -> Refusal {
    (StatusCode::INTERNAL_SERVER_ERROR, message)
}

/// Asks the runtime for the stream URL of `verb` on the pod with `uid`.
async fn stream_url(
    cri: &Cri,
    verb: Verb,
    uid: &str,
    pod_name: &str,
    container: Option<&str>,
    options: &StreamOptions,
) -> Result<String, Refusal> {
    let mut runtime = cri.runtime.clone();
    let refused = |error: tonic::Status| {
        let status = match error.code() {
            tonic::Code::InvalidArgument => StatusCode::BAD_REQUEST,
            tonic::Code::NotFound => StatusCode::NOT_FOUND,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, format!("the runtime refused the stream: {}", error.message()))
    };
    match verb {
        Verb::PortForward => {
            let sandbox = running_sandbox(cri, uid).await?.ok_or_else(|| {
                (StatusCode::BAD_REQUEST, format!("pod {pod_name:?} has no running sandbox on this node"))
            })?;
            let request = proto::PortForwardRequest { pod_sandbox_id: sandbox, port: options.ports.clone() };
            Ok(runtime.port_forward(request).await.map_err(refused)?.into_inner().url)
        }
        Verb::Exec | Verb::Attach => {
            let container = container.unwrap_or_default();
            let container_id = running_container(cri, uid, container).await?.ok_or_else(|| {
                (StatusCode::BAD_REQUEST, format!("container {container:?} in pod {pod_name:?} is not running"))
            })?;
            if verb == Verb::Exec {
                if options.command.is_empty() {
                    return Err((
                        StatusCode::BAD_REQUEST,
                        "you must specify at least one command for the container".into(),
                    ));
                }
                let request = proto::ExecRequest {
                    container_id,
                    cmd: options.command.clone(),
                    tty: options.tty,
                    stdin: options.stdin,
                    stdout: options.stdout,
                    // With a terminal, stderr is merged into stdout by the terminal itself.
                    stderr: options.stderr && !options.tty,
                };
                Ok(runtime.exec(request).await.map_err(refused)?.into_inner().url)
            } else {
                let request = proto::AttachRequest {
                    container_id,
                    stdin: options.stdin,
                    tty: options.tty,
                    stdout: options.stdout,
                    stderr: options.stderr && !options.tty,
                };
                Ok(runtime.attach(request).await.map_err(refused)?.into_inner().url)
            }
        }
    }
}

/// The id of the newest running instance of `container` in the pod with `uid`.
async fn running_container(cri: &Cri, uid: &str, container: &str) -> Result<Option<String>, Refusal> {
    let mut filter = proto::ContainerFilter::default();
    filter.label_selector.insert(LABEL_POD_UID.into(), uid.into());
    filter.label_selector.insert(LABEL_CONTAINER_NAME.into(), container.into());
    let containers = cri
        .runtime
        .clone()
        .list_containers(proto::ListContainersRequest { filter: Some(filter) })
        .await
        .map_err(|error| internal(format!("cannot list containers: {}", error.message())))?
        .into_inner()
        .containers;
    Ok(containers
        .into_iter()
        .filter(|found| found.state == proto::ContainerState::ContainerRunning as i32)
        .max_by_key(|found| found.metadata.as_ref().map(|metadata| metadata.attempt).unwrap_or(0))
        .map(|found| found.id))
}

/// The id of the pod's ready sandbox (its network namespace, where port-forward connects).
async fn running_sandbox(cri: &Cri, uid: &str) -> Result<Option<String>, Refusal> {
    let mut filter = proto::PodSandboxFilter::default();
    filter.label_selector.insert(LABEL_POD_UID.into(), uid.into());
    let sandboxes = cri
        .runtime
        .clone()
        .list_pod_sandbox(proto::ListPodSandboxRequest { filter: Some(filter) })
        .await
        .map_err(|error| internal(format!("cannot list pod sandboxes: {}", error.message())))?
        .into_inner()
        .items;
    Ok(sandboxes
        .into_iter()
        .filter(|sandbox| sandbox.state == proto::PodSandboxState::SandboxReady as i32)
        .max_by_key(|sandbox| sandbox.created_at)
        .map(|sandbox| sandbox.id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_queries_in_both_spellings() {
        let api = StreamOptions::from_query(
            "command=sh&command=-c&command=echo%20hi&container=c&stdin=true&stdout=true&tty=true",
        )
        .unwrap();
        assert_eq!(api.command, ["sh", "-c", "echo hi"]);
        assert!(api.stdin && api.stdout && api.tty && !api.stderr);
        let kubelet = StreamOptions::from_query("command=ls&input=1&output=1&error=1").unwrap();
        assert!(kubelet.stdin && kubelet.stdout && kubelet.stderr && !kubelet.tty);
        let python = StreamOptions::from_query("command=ls&stderr=True&stdin=False&stdout=True&tty=False").unwrap();
        assert!(python.stdout && python.stderr && !python.stdin && !python.tty);
    }

    #[test]
    fn port_lists_repeated_or_joined() {
        assert_eq!(StreamOptions::from_query("ports=80&ports=8080").unwrap().ports, [80, 8080]);
        assert_eq!(StreamOptions::from_query("ports=80,8080").unwrap().ports, [80, 8080]);
        assert_eq!(StreamOptions::from_query("ports=http").unwrap_err(), "\"http\" is not a valid port number");
        assert_eq!(StreamOptions::from_query("ports=0").unwrap_err(), "\"0\" is not a valid port number");
    }
}
