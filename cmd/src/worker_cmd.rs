//! `kaasd worker`: the node agent (join, Node and Lease, reverse tunnel).

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::cli::WorkerArgs;
use crate::signal::ShutdownSignals;

pub async fn run(arguments: WorkerArgs) -> anyhow::Result<()> {
    let signals = ShutdownSignals::install()?;
    let token = match (&arguments.token, &arguments.token_file) {
        (Some(token), _) => Some(token.trim().to_string()),
        (None, Some(path)) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the token file {}", path.display()))?
                .trim()
                .to_string(),
        ),
        (None, None) => None,
    };
    let config = kaasd_worker::WorkerConfig {
        data_dir: arguments.data_dir,
        node_name: arguments.node_name,
        token,
        agent_port: arguments.agent_port,
        node_ip: arguments.node_ip,
        certificate_validity: arguments.certificate_lifetime,
    };
    let cancel = CancellationToken::new();
    let worker = tokio::spawn(kaasd_worker::run(config, cancel.clone()));
    tokio::pin!(worker);
    tokio::select! {
        finished = &mut worker => return finished.context("the worker task failed")?.map_err(Into::into),
        () = signals.shutdown_requested() => cancel.cancel(),
    }
    worker.await.context("the worker task failed")?.map_err(Into::into)
}
