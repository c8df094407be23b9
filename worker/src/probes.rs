//! Readiness and liveness probes: exec (CRI ExecSync in the container), httpGet and tcpSocket (to the pod's
//! address, which the node reaches on its pod bridge); and postStart/preStop hooks, which use the same handlers
//! (plus `sleep`).

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cri::{proto, Cri};

/// One probe's progress for one container (it starts over when the container is restarted).
#[derive(Debug, Clone)]
pub struct ProbeState {
    pub container_id: String,
    pub successes: i32,
    pub failures: i32,
    pub next: tokio::time::Instant,
    /// Readiness: the last verdict (false until the first success). Liveness: unused.
    pub passing: bool,
}

impl ProbeState {
    pub fn new(container_id: &str) -> ProbeState {
        ProbeState {
            container_id: container_id.into(),
            successes: 0,
            failures: 0,
            next: tokio::time::Instant::now(),
            passing: false,
        }
    }

    /// Records a result; returns whether the probe now passes (successThreshold in a row) or fails
    /// (failureThreshold in a row), or None when neither threshold was reached yet.
    pub fn record(&mut self, probe: &Probe, success: bool) -> Option<bool> {
        self.next = tokio::time::Instant::now() + Duration::from_secs(probe.period_seconds.unwrap_or(10).max(1) as u64);
        if success {
            self.successes += 1;
            self.failures = 0;
            (self.successes >= probe.success_threshold.unwrap_or(1).max(1)).then_some(true)
        } else {
            self.failures += 1;
            self.successes = 0;
            (self.failures >= probe.failure_threshold.unwrap_or(3).max(1)).then_some(false)
        }
    }
}

/// Whether the container has been running long enough for its probe to start.
pub fn past_initial_delay(probe: &Probe, started_at_nanos: i64) -> bool {
    let now = jiff::Timestamp::now().as_nanosecond() as i64;
    now - started_at_nanos >= i64::from(probe.initial_delay_seconds.unwrap_or(0)) * 1_000_000_000
}

/// Runs the probe once; Err carries why it failed.
pub async fn run(
    cri: &Cri,
    container_id: &str,
    container: &Container,
    probe: &Probe,
    pod_ip: Option<&str>,
) -> Result<(), String> {
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
    if let Some(exec) = &probe.exec {
        let request = proto::ExecSyncRequest {
            container_id: container_id.into(),
            cmd: exec.command.clone().unwrap_or_default(),
            timeout: timeout.as_secs() as i64,
        };
        let answer = cri.runtime.clone().exec_sync(request).await.map_err(|error| error.message().to_string())?;
        let answer = answer.into_inner();
        return if answer.exit_code == 0 {
            Ok(())
        } else {
            Err(format!("command exited with {}: {}", answer.exit_code, String::from_utf8_lossy(&answer.stdout)))
        };
    }
    let port_of = |port: &IntOrString| -> Result<u16, String> {
        match port {
            IntOrString::Int(port) => u16::try_from(*port).map_err(|_| format!("port {port} is out of range")),
            IntOrString::String(name) => container
                .ports
                .iter()
                .flatten()
                .find(|port| port.name.as_deref() == Some(name.as_str()))
                .and_then(|port| u16::try_from(port.container_port).ok())
                .ok_or_else(|| format!("the container has no port named {name:?}")),
        }
    };
    if let Some(http) = &probe.http_get {
        let host = http.host.clone().or(pod_ip.map(str::to_string)).ok_or("the pod has no address yet")?;
        let port = port_of(&http.port)?;
        let path = http.path.clone().unwrap_or_else(|| "/".into());
        let exchange = async {
            let mut stream = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
            let mut request = format!("GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.33\r\n");
            for header in http.http_headers.iter().flatten() {
                request.push_str(&format!("{}: {}\r\n", header.name, header.value));
            }
            request.push_str("Connection: close\r\n\r\n");
            stream.write_all(request.as_bytes()).await?;
            let mut head = vec![0u8; 64];
            let read = stream.read(&mut head).await?;
            Ok::<_, std::io::Error>(String::from_utf8_lossy(&head[..read]).into_owned())
        };
        let head = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| format!("no answer from {host}:{port} within {timeout:?}"))?
            .map_err(|error| format!("GET {host}:{port}{path}: {error}"))?;
        let code: u16 = head.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
        return if (200..400).contains(&code) { Ok(()) } else { Err(format!("HTTP probe failed with status {code}")) };
    }
    if let Some(tcp) = &probe.tcp_socket {
        let host = tcp.host.clone().or(pod_ip.map(str::to_string)).ok_or("the pod has no address yet")?;
        let port = port_of(&tcp.port)?;
        return match tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host.as_str(), port))).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(format!("dial {host}:{port}: {error}")),
            Err(_) => Err(format!("dial {host}:{port}: no answer within {timeout:?}")),
        };
    }
    Err("the probe has no handler kaasd supports (exec, httpGet, tcpSocket)".into())
}

/// Runs a lifecycle hook (postStart or preStop) to its end, at most `limit`; Err carries why it failed.
pub async fn run_hook(
    cri: &Cri,
    container_id: &str,
    container: &Container,
    handler: &LifecycleHandler,
    pod_ip: Option<&str>,
    limit: Duration,
) -> Result<(), String> {
    if let Some(sleep) = &handler.sleep {
        tokio::time::sleep(Duration::from_secs(sleep.seconds.max(0) as u64).min(limit)).await;
        return Ok(());
    }
    let as_probe = Probe {
        exec: handler.exec.clone(),
        http_get: handler.http_get.clone(),
        tcp_socket: handler.tcp_socket.clone(),
        timeout_seconds: Some(i32::try_from(limit.as_secs()).unwrap_or(i32::MAX).max(1)),
        ..Default::default()
    };
    run(cri, container_id, container, &as_probe, pod_ip).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_decide() {
        let probe = Probe { failure_threshold: Some(2), success_threshold: Some(1), ..Default::default() };
        let mut state = ProbeState::new("c");
        assert_eq!(state.record(&probe, false), None);
        assert_eq!(state.record(&probe, false), Some(false));
        assert_eq!(state.record(&probe, true), Some(true));
        assert_eq!(state.record(&probe, false), None, "one failure after a success is not yet a verdict");
    }
}
