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
