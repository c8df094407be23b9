//! `kaasd reset`: removes what kaasd made on this machine, so it is as before kaasd first ran (but for the service
//! files, which `kaasd uninstall` removes, and the binary).
//!
//! Order matters: the pods' containers and sandboxes go first, through the worker's own containerd (started for
//! the purpose when the service is stopped), so their mounts, network namespaces and shims go with them; then the
//! host's pod network (nftables tables, pod routes, VXLAN device, bridge, cluster DNS address); then whatever is
//! still mounted under the data directory; and only when all of that worked, the data directory itself. A step that fails is reported and the
//! data directory kept, so running `kaasd reset` again after fixing the cause finishes the job.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use kaasd_worker::containerd::{Containerd, ContainerdPaths};
use kaasd_worker::cri::proto;

use crate::cli::ResetArgs;
use crate::service_cmd;

pub async fn run(arguments: &ResetArgs) -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("kaasd reset must run as root (it removes containers, mounts and network devices): run it with sudo");
    }
    let data_dir = service_cmd::data_dir(arguments.data_dir.as_deref(), None)?;
    if data_dir.parent().is_none()
        || ["/etc", "/usr", "/var", "/home", "/root"].iter().any(|dir| data_dir == Path::new(dir))
    {
        bail!("refusing to remove {}: give kaasd's own data directory with --data-dir", data_dir.display());
    }
    if let Some(process) = service_cmd::running(&data_dir).first() {
        bail!(
            "kaasd {} (pid {}) is running with data directory {}: stop it first (`kaasd stop`, or end that \
             process); nothing was changed",
            process.role.name(),
            process.pid,
            process.data_dir.display()
        );
    }
    if !arguments.yes && !confirmed(&data_dir)? {
        bail!("reset cancelled; nothing was changed");
    }

    let mut failures = Vec::new();
    let containerd_dir = ContainerdPaths::new(&data_dir).dir;
    if containerd_dir.exists() {
        match remove_pods(&data_dir, arguments.containerd_bin.as_deref()).await {
            Ok((sandboxes, containers)) => {
                println!("removed {sandboxes} pod sandboxes and {containers} containers");
            }
            Err(error) => {
                failures.push(format!("cannot remove the pods: {}", kaasd_datastore::one_line(error.as_ref())))
            }
        }
    }
    // The pod network belongs to the machine, not to one data directory: a worker running here with another data
    // directory still uses it.
    match service_cmd::running_anywhere().into_iter().find(|process| process.runs_worker) {
        Some(other) => println!(
            "kept the pod network: kaasd {} (pid {}) with data directory {} runs a worker on this machine",
            other.role.name(),
            other.pid,
            other.data_dir.display()
        ),
        None => match kaasd_worker::network::teardown() {
            Ok(()) => println!(
                "removed the pod network (nftables tables, pod routes and VXLAN device, bridge, cluster DNS address)"
            ),
            Err(errors) => failures.extend(errors.into_iter().map(|error| format!("pod network: {error}"))),
        },
    }
    let pods_removed = failures.is_empty();
    match unmount_below(&data_dir) {
        Ok(0) => {}
        Ok(count) => println!("unmounted {count} file systems under {}", data_dir.display()),
        Err(errors) => failures.extend(errors),
    }
    if pods_removed && failures.is_empty() {
        match remove_data_dir(&data_dir) {
            Ok(true) => println!("removed {}", data_dir.display()),
            Ok(false) => println!("{} did not exist", data_dir.display()),
            Err(error) => failures.push(kaasd_datastore::one_line(error.as_ref())),
        }
    } else {
        println!("kept {}: the steps above did not all succeed", data_dir.display());
    }
    if !failures.is_empty() {
        bail!("reset did not finish: {}; fix that and run `kaasd reset` again", failures.join("; "));
    }
    println!("reset done; the service files stay until `kaasd uninstall`");
    Ok(())
}

fn confirmed(data_dir: &Path) -> anyhow::Result<bool> {
    let mut stderr = std::io::stderr().lock();
    write!(
        stderr,
        "This removes every kaasd pod and container on this machine, the pod network and {} with all cluster \
         state in it.\nType yes to go on: ",
        data_dir.display()
    )
    .and_then(|()| stderr.flush())
    .context("cannot write to stderr")?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).context("cannot read the answer")?;
    Ok(answer.trim() == "yes")
}

/// Stops and removes every pod sandbox and container of the worker's containerd, started here for the purpose
/// (or the one still running, which is then stopped too). Returns how many sandboxes and containers went.
async fn remove_pods(data_dir: &Path, containerd_bin: Option<&Path>) -> anyhow::Result<(usize, usize)> {
    let paths = ContainerdPaths::new(data_dir);
    let mut containerd = Containerd::start(&paths, containerd_bin, kaasd_worker::images::PAUSE_IMAGE)
        .await
        .context("cannot start the worker's containerd")?;
    let result = remove_through(&containerd).await;
    containerd.stop().await;
    result
}

async fn remove_through(containerd: &Containerd) -> anyhow::Result<(usize, usize)> {
    let mut runtime = containerd.cri.runtime.clone();
    // Containers first (a sandbox's removal would take them too, but not those whose sandbox is already gone).
    let containers =
        runtime.list_containers(proto::ListContainersRequest::default()).await.context("cannot list containers")?;
    let containers = containers.into_inner().containers;
    for container in &containers {
        let id = container.id.clone();
        runtime
            .stop_container(proto::StopContainerRequest { container_id: id.clone(), timeout: 0 })
            .await
            .with_context(|| format!("cannot stop container {id}"))?;
        runtime
            .remove_container(proto::RemoveContainerRequest { container_id: id.clone() })
            .await
            .with_context(|| format!("cannot remove container {id}"))?;
    }
    let sandboxes =
        runtime.list_pod_sandbox(proto::ListPodSandboxRequest::default()).await.context("cannot list pod sandboxes")?;
    let sandboxes = sandboxes.into_inner().items;
    for sandbox in &sandboxes {
        let id = sandbox.id.clone();
        runtime
            .stop_pod_sandbox(proto::StopPodSandboxRequest { pod_sandbox_id: id.clone() })
            .await
            .with_context(|| format!("cannot stop pod sandbox {id}"))?;
        runtime
            .remove_pod_sandbox(proto::RemovePodSandboxRequest { pod_sandbox_id: id.clone() })
            .await
            .with_context(|| format!("cannot remove pod sandbox {id}"))?;
    }
    Ok((sandboxes.len(), containers.len()))
}

/// The mount points strictly below `dir` (the data directory itself may be a mount the user made: it stays), the
/// deepest first.
pub fn mounts_below(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let table = std::fs::read_to_string("/proc/self/mountinfo").context("cannot read /proc/self/mountinfo")?;
    let mut mounts: Vec<PathBuf> = table
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape(field)))
        .filter(|mount| mount.starts_with(&dir) && *mount != dir)
        .collect();
    mounts.sort_by_key(|mount| std::cmp::Reverse(mount.components().count()));
    mounts.dedup();
    Ok(mounts)
}

/// mountinfo writes space, tab, newline and backslash in paths as octal escapes (`\040`).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let octal = bytes.get(index + 1..index + 4).and_then(|digits| {
            let text = std::str::from_utf8(digits).ok()?;
            u8::from_str_radix(text, 8).ok()
        });
        match (bytes[index], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                index += 4;
            }
            (byte, _) => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Unmounts everything below `dir`: a plain unmount, else a lazy one (a mount still busy is detached now and
/// goes when its last user does). Stacked mounts take several rounds.
fn unmount_below(dir: &Path) -> Result<usize, Vec<String>> {
    use nix::mount::{umount2, MntFlags};
    let mut count = 0;
    for _ in 0..5 {
        let mounts = mounts_below(dir).map_err(|error| vec![error.to_string()])?;
        if mounts.is_empty() {
            return Ok(count);
        }
        for mount in mounts {
            if umount2(&mount, MntFlags::empty()).is_ok() || umount2(&mount, MntFlags::MNT_DETACH).is_ok() {
                count += 1;
            }
        }
    }
    let left = mounts_below(dir).map_err(|error| vec![error.to_string()])?;
    if left.is_empty() {
        Ok(count)
    } else {
        Err(left.iter().map(|mount| format!("cannot unmount {}", mount.display())).collect())
    }
}

/// Removes `dir` and everything in it (without following symbolic links out of it). Returns whether it existed.
fn remove_data_dir(dir: &Path) -> anyhow::Result<bool> {
    match std::fs::symlink_metadata(dir) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(error) => bail!("cannot read {}: {error}", dir.display()),
        Ok(_) => {}
    }
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry.with_context(|| format!("cannot read {}", dir.display()))?.path();
        let removed = match std::fs::symlink_metadata(&path) {
            Ok(metadata) if metadata.is_dir() => std::fs::remove_dir_all(&path),
            _ => std::fs::remove_file(&path),
        };
        removed.with_context(|| format!("cannot remove {}", path.display()))?;
    }
    // A data directory that is itself a mount point stays, empty.
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(true),
        Err(error) if error.raw_os_error() == Some(nix::libc::EBUSY) => Ok(true),
        Err(error) => Err(error).with_context(|| format!("cannot remove {}", dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape(r"/var/lib/kaasd/pods/a\040b"), "/var/lib/kaasd/pods/a b");
        assert_eq!(unescape(r"/plain"), "/plain");
        assert_eq!(unescape(r"/back\134slash"), r"/back\slash");
    }
}
