//! `kaasd worker`: the node agent (join, Node and Lease, reverse tunnel, pods in containerd), and `kaasd images`.

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::cli::{ImagesCommand, WorkerArgs};
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
    let ready = std::sync::Arc::new(tokio::sync::Notify::new());
    // Absolute: containerd's shims and the CNI plugins run in other directories than this process.
    let data_dir = std::path::absolute(&arguments.data_dir)
        .with_context(|| format!("cannot make {} an absolute path", arguments.data_dir.display()))?;
    let config = kaasd_worker::WorkerConfig {
        data_dir,
        node_name: arguments.node_name,
        token,
        agent_port: arguments.agent_port,
        node_ip: arguments.node_ip,
        certificate_validity: arguments.certificate_lifetime,
        containerd_bin: arguments.containerd_bin,
        cri_socket: arguments.cri_socket,
        resolv_conf: arguments.resolv_conf,
        ready: Some(ready.clone()),
    };
    let cancel = CancellationToken::new();
    let worker = tokio::spawn(kaasd_worker::run(config, cancel.clone()));
    tokio::pin!(worker);
    let shutdown = signals.shutdown_requested();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            finished = &mut worker => return finished.context("the worker task failed")?.map_err(Into::into),
            () = ready.notified() => crate::readiness::ready("worker"),
            () = &mut shutdown => {
                cancel.cancel();
                break;
            }
        }
    }
    worker.await.context("the worker task failed")?.map_err(Into::into)
}

/// `kaasd images import FILE...`: one line per imported image. `kaasd images busybox`: one line naming the archive.
pub async fn images(command: ImagesCommand) -> anyhow::Result<()> {
    match command {
        ImagesCommand::Busybox { output, tag, busybox } => {
            let image = kaasd_worker::images::busybox_image(&busybox, &tag).map_err(anyhow::Error::msg)?;
            // Written beside its destination and renamed, so an interrupted run leaves no half archive to import.
            let partial = output.with_extension("partial");
            std::fs::write(&partial, image.build())
                .and_then(|()| std::fs::rename(&partial, &output))
                .with_context(|| format!("cannot write {}", output.display()))?;
            println!("wrote {} ({}) from {}", output.display(), image.reference, busybox.display());
            Ok(())
        }
        ImagesCommand::Import { files, data_dir, containerd_socket, containerd_bin } => {
            let socket =
                containerd_socket.unwrap_or_else(|| kaasd_worker::containerd::ContainerdPaths::new(&data_dir).socket());
            if !socket.exists() {
                anyhow::bail!(
                    "no containerd socket at {}: start `kaasd worker` with --data-dir {} first, or pass \
                     --containerd-socket",
                    socket.display(),
                    data_dir.display()
                );
            }
            let ctr = kaasd_worker::images::ctr_binary(containerd_bin.as_deref());
            for file in files {
                let imported = kaasd_worker::images::import(&ctr, &socket, std::slice::from_ref(&file))
                    .await
                    .map_err(anyhow::Error::msg)?;
                for (_, names) in imported {
                    if names.is_empty() {
                        println!("{}: no images imported (is it an image archive for this platform?)", file.display());
                    }
                    for name in names {
                        println!("imported {name} from {}", file.display());
                    }
                }
            }
            Ok(())
        }
    }
}
