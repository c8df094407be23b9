//! Test images, made on this machine: no registry is reached.

use std::process::Command;

use anyhow::Context;
use kaasd_worker::images::{Entry, ImageArchive};

/// `docker.io/library/busybox:1.36` from this machine's static busybox (Debian's `busybox-static`): the binary and
/// a link per applet.
pub fn busybox_image() -> ImageArchive {
    try_busybox_image().expect("busybox-static is installed (tests/run.sh installs it)")
}

fn try_busybox_image() -> anyhow::Result<ImageArchive> {
    let binary = std::fs::read("/bin/busybox").context("cannot read /bin/busybox")?;
    let applets = Command::new("/bin/busybox").arg("--list").output().context("cannot run /bin/busybox")?;
    let mut image = ImageArchive::new("busybox:1.36");
    for dir in ["bin", "tmp", "etc", "root"] {
        image.entries.push(Entry::Directory { path: dir.into() });
    }
    image.entries.push(Entry::File { path: "bin/busybox".into(), mode: 0o755, contents: binary });
    for applet in String::from_utf8_lossy(&applets.stdout).lines().filter(|name| *name != "busybox") {
        image.entries.push(Entry::Symlink { path: format!("bin/{applet}"), target: "busybox".into() });
    }
    image.cmd = vec!["sh".into()];
    Ok(image)
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
