//! Test images, made on this machine: no registry is reached.

use std::process::Command;

use anyhow::Context;
use std::path::Path;

use kaasd_worker::images::{Entry, ImageArchive};

/// `docker.io/library/busybox:1.36` from this machine's static busybox (Debian's `busybox-static`), as
/// `kaasd images busybox` makes it.
pub fn busybox_image() -> ImageArchive {
    kaasd_worker::images::busybox_image(Path::new(kaasd_worker::images::BUSYBOX_BINARY), "busybox:1.36")
        .expect("busybox-static is installed (tests/run.sh installs it)")
}

/// An image whose entrypoint is `binary` from this machine (as `/bin/<its name>`), with the shared libraries
/// `ldd` says it loads at their paths here: how the tests put a client built here (a kube-rs program) into a pod.
pub fn binary_image(reference: &str, binary: &std::path::Path) -> anyhow::Result<ImageArchive> {
    let ldd = Command::new("ldd").arg(binary).output().context("cannot run ldd")?;
    let mut files = vec![binary.to_path_buf()];
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" or "/lib64/ld-linux-x86-64.so.2 (0x…)"
        let path = line.split("=>").last().unwrap_or(line).split_whitespace().next().unwrap_or("");
        if path.starts_with('/') {
            files.push(path.into());
        }
    }
    let mut image = ImageArchive::new(reference);
    let mut directories = std::collections::BTreeSet::new();
    let name = binary.file_name().context("the binary has no file name")?.to_string_lossy().to_string();
    for (index, file) in files.iter().enumerate() {
        let path =
            if index == 0 { format!("bin/{name}") } else { file.to_string_lossy().trim_start_matches('/').to_string() };
        let mut parent = std::path::Path::new(&path).parent();
        while let Some(directory) = parent.filter(|directory| !directory.as_os_str().is_empty()) {
            directories.insert(directory.to_string_lossy().to_string());
            parent = directory.parent();
        }
        let contents = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        image.entries.push(Entry::File { path, mode: 0o755, contents });
    }
    // Parents before children; the token and CA mounts need /var/run/secrets to be creatable.
    for directory in directories.into_iter().rev().chain(["tmp".to_string()]) {
        image.entries.insert(0, Entry::Directory { path: directory });
    }
    image.entrypoint = vec![format!("/bin/{name}")];
    Ok(image)
}
