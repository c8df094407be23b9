//! Shutdown signals, shared by every role: the first SIGTERM or SIGINT asks for a graceful drain, a second one
//! exits at once (for an operator who does not want to wait).

use anyhow::Context;
use tokio::signal::unix::{signal, Signal, SignalKind};

/// The signals that stop kaasd. Install them during start-up, so a signal that arrives while the role is still
/// building is not lost and does not kill the process half-way.
pub struct ShutdownSignals {
    terminate: Signal,
    interrupt: Signal,
}

impl ShutdownSignals {
    pub fn install() -> anyhow::Result<Self> {
        let terminate = signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
        let interrupt = signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
        Ok(Self { terminate, interrupt })
    }

    /// Waits for the next signal and returns its name.
    pub async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }

    /// Completes at the first signal, after which a second one exits the process at once with status 1.
    pub async fn shutdown_requested(mut self) {
        let first = self.next().await;
        tracing::info!(signal = first, "shutting down; send the signal again to exit at once");
        tokio::spawn(async move {
            let second = self.next().await;
            tracing::warn!(signal = second, "second shutdown signal: exiting without draining");
            std::process::exit(1);
        });
    }
}
