//! Images without a registry: OCI archives built in code (kaasd's own pause image, and test images), and
//! importing archives into containerd's `k8s.io` namespace, where its CRI plugin finds them.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// The sandbox image kaasd makes itself, so that starting a pod never pulls anything.
pub const PAUSE_IMAGE: &str = "kaasd.local/pause:1";

/// The namespace containerd's CRI plugin keeps Kubernetes' images in.
pub const CRI_NAMESPACE: &str = "k8s.io";

/// A reference in the fully qualified form the CRI plugin matches on: `busybox:1.36` is
/// `docker.io/library/busybox:1.36`, `ghcr.io/x/y` is `ghcr.io/x/y:latest`.
pub fn normalize_reference(reference: &str) -> String {
    let (name, suffix) = match reference.split_once('@') {
        Some((name, digest)) => (name.to_string(), format!("@{digest}")),
        None => {
            // A ':' after the last '/' starts the tag (one before it is a registry port).
            let slash = reference.rfind('/').map_or(0, |index| index + 1);
            match reference[slash..].rfind(':') {
                Some(colon) => (reference[..slash + colon].to_string(), reference[slash + colon..].to_string()),
                None => (reference.to_string(), ":latest".to_string()),
            }
        }
    };
    let name = match name.split_once('/') {
        None => format!("docker.io/library/{name}"),
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => name,
        Some(_) => format!("docker.io/{name}"),
    };
    format!("{name}{suffix}")
}

/// One file in an image layer.
#[derive(Debug, Clone)]
pub enum Entry {
    Directory { path: String },
    File { path: String, mode: u32, contents: Vec<u8> },
    Symlink { path: String, target: String },
}

/// A single-layer image for this machine's platform, written as an OCI image layout in a tar archive (what
/// `kaasd images import` and `ctr images import` read).
#[derive(Debug, Clone)]
pub struct ImageArchive {
    pub reference: String,
    pub entries: Vec<Entry>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
}

impl ImageArchive {
    pub fn new(reference: &str) -> ImageArchive {
        ImageArchive {
            reference: normalize_reference(reference),
            entries: Vec::new(),
            entrypoint: Vec::new(),
            cmd: Vec::new(),
            env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
        }
    }

    /// The archive's bytes.
    pub fn build(&self) -> Vec<u8> {
        let mut layer = Tar::default();
        for entry in &self.entries {
            layer.add(entry);
        }
        let layer = layer.finish();
        let layer_digest = sha256(&layer);
        let config = json!({
            "architecture": oci_arch(),
            "os": "linux",
            "config": {
                "Env": self.env,
                "Entrypoint": if self.entrypoint.is_empty() { None } else { Some(&self.entrypoint) },
                "Cmd": if self.cmd.is_empty() { None } else { Some(&self.cmd) },
            },
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        });
        let config = serde_json::to_vec(&config).expect("JSON");
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&config),
                       "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest,
                        "size": layer.len()}],
        });
        let manifest = serde_json::to_vec(&manifest).expect("JSON");
        let tag = self.reference.rsplit_once(':').map(|(_, tag)| tag).unwrap_or("latest");
        let index = json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": sha256(&manifest),
                "size": manifest.len(),
                "platform": {"architecture": oci_arch(), "os": "linux"},
                // containerd names the image after this annotation; the OCI one alone would be just the tag.
                "annotations": {"io.containerd.image.name": self.reference, "org.opencontainers.image.ref.name": tag},
            }],
        });
        let mut archive = Tar::default();
        archive.add(&Entry::File {
            path: "oci-layout".into(),
            mode: 0o644,
            contents: br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        });
        archive.add(&Entry::File {
            path: "index.json".into(),
            mode: 0o644,
            contents: serde_json::to_vec(&index).expect("JSON"),
        });
        archive.add(&Entry::Directory { path: "blobs/sha256".into() });
        for blob in [layer, config, manifest] {
            let name = format!("blobs/sha256/{}", &sha256(&blob)["sha256:".len()..]);
            archive.add(&Entry::File { path: name, mode: 0o644, contents: blob });
        }
        archive.finish()
    }
}

/// Where Debian's and Alpine's static busybox (`busybox-static`, `busybox`) is installed.
pub const BUSYBOX_BINARY: &str = "/bin/busybox";

/// An image of a statically linked busybox from this machine: the binary and a link per applet, `sh` as its
/// command. With no registry, this is how to get a first image for `kubectl run` (`kaasd images busybox`); the
/// tests use it too.
pub fn busybox_image(binary: &Path, reference: &str) -> Result<ImageArchive, String> {
    let contents = std::fs::read(binary).map_err(|error| {
        format!("cannot read {}: {error} (on Debian, `apt install busybox-static` installs it)", binary.display())
    })?;
    // A dynamically linked busybox would need its libraries in the image, which this one does not carry.
    if names_a_loader(&contents) {
        return Err(format!(
            "{} is dynamically linked; the image needs a static busybox (Debian: `apt install busybox-static`)",
            binary.display()
        ));
    }
    let applets = std::process::Command::new(binary)
        .arg("--list")
        .output()
        .map_err(|error| format!("cannot run {} --list: {error}", binary.display()))?;
    if !applets.status.success() {
        return Err(format!("{} --list failed: is it busybox?", binary.display()));
    }
    let mut image = ImageArchive::new(reference);
    for dir in ["bin", "tmp", "etc", "root"] {
        image.entries.push(Entry::Directory { path: dir.into() });
    }
    image.entries.push(Entry::File { path: "bin/busybox".into(), mode: 0o755, contents });
    for applet in String::from_utf8_lossy(&applets.stdout).lines().filter(|name| *name != "busybox") {
        image.entries.push(Entry::Symlink { path: format!("bin/{applet}"), target: "busybox".into() });
    }
    image.cmd = vec!["sh".into()];
    Ok(image)
}

/// Whether a 64-bit little-endian ELF program has a `PT_INTERP` program header: it names the dynamic loader, which
/// only dynamically linked programs need.
fn names_a_loader(elf: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let read = |at: usize, len: usize| elf.get(at..at.checked_add(len)?);
    let (Some(b"\x7fELF"), Some([2]), Some([1])) = (read(0, 4), read(4, 1), read(5, 1)) else {
        return false;
    };
    let u16_at = |at| read(at, 2).map(|b| u16::from_le_bytes([b[0], b[1]]) as usize).unwrap_or(0);
    let table = read(0x20, 8).map(|b| u64::from_le_bytes(b.try_into().unwrap()) as usize).unwrap_or(0);
    let (entry_size, entries) = (u16_at(0x36), u16_at(0x38));
    (0..entries).any(|index| {
        let at = table.checked_add(index * entry_size);
        at.and_then(|at| read(at, 4)).map(|b| u32::from_le_bytes(b.try_into().unwrap())) == Some(PT_INTERP)
    })
}

/// The pause image: one static executable, `/pause`, that keeps the pod's namespaces alive and reaps children.
pub fn pause_image() -> Result<ImageArchive, String> {
    let program = pause_program()?;
    let mut image = ImageArchive::new(PAUSE_IMAGE);
    image.entries.push(Entry::File { path: "pause".into(), mode: 0o755, contents: program });
    image.entrypoint = vec!["/pause".into()];
    Ok(image)
}

/// A hand-assembled static ELF executable for x86-64 (no libc, 166 bytes):
///
/// ```text
/// loop: wait4(-1, NULL, 0, NULL)        ; reap a child, blocking while there are any
///       if it returned >= 0: goto loop
///       nanosleep({1, 0}, NULL)         ; no children (yet): look again in a second
///       goto loop
/// ```
///
/// It installs no signal handlers, so as PID 1 of the pod it ignores SIGTERM and ends with the SIGKILL the
/// runtime sends when the sandbox stops. Polling once a second instead of waiting for SIGCHLD keeps it free of
/// a signal handler (which would need a restorer trampoline).
fn pause_program() -> Result<Vec<u8>, String> {
    if std::env::consts::ARCH != "x86_64" {
        return Err(format!(
            "kaasd has no pause program for {} yet (only x86_64); use --cri-socket with a runtime whose sandbox \
             image is already present",
            std::env::consts::ARCH
        ));
    }
    #[rustfmt::skip]
    let code: &[u8] = &[
        0xbf, 0xff, 0xff, 0xff, 0xff,   // 0:  mov edi, -1        pid: any child
        0x31, 0xf6,                     // 5:  xor esi, esi       status: NULL
        0x31, 0xd2,                     // 7:  xor edx, edx       options: 0 (block)
        0x45, 0x31, 0xd2,               // 9:  xor r10d, r10d     rusage: NULL
        0xb8, 0x3d, 0x00, 0x00, 0x00,   // 12: mov eax, 61        wait4
        0x0f, 0x05,                     // 17: syscall
        0x48, 0x85, 0xc0,               // 19: test rax, rax
        0x79, 0xe8,                     // 22: jns 0              reaped one: wait for the next
        0x6a, 0x00,                     // 24: push 0             tv_nsec
        0x6a, 0x01,                     // 26: push 1             tv_sec
        0x48, 0x89, 0xe7,               // 28: mov rdi, rsp       req: the timespec on the stack
        0x31, 0xf6,                     // 31: xor esi, esi       rem: NULL
        0xb8, 0x23, 0x00, 0x00, 0x00,   // 33: mov eax, 35        nanosleep
        0x0f, 0x05,                     // 38: syscall
        0x48, 0x83, 0xc4, 0x10,         // 40: add rsp, 16
        0xeb, 0xd2,                     // 44: jmp 0
    ];
    const BASE: u64 = 0x40_0000;
    const HEADERS: u64 = 64 + 56;
    let size = HEADERS + code.len() as u64;
    let mut elf = Vec::with_capacity(size as usize);
    // ELF header: 64-bit, little-endian, version 1, System V ABI; an executable for x86-64.
    elf.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    elf.extend_from_slice(&2u16.to_le_bytes()); // e_type: EXEC
    elf.extend_from_slice(&0x3eu16.to_le_bytes()); // e_machine: x86-64
    elf.extend_from_slice(&1u32.to_le_bytes()); // e_version
    elf.extend_from_slice(&(BASE + HEADERS).to_le_bytes()); // e_entry: the code right after the headers
    elf.extend_from_slice(&64u64.to_le_bytes()); // e_phoff
    elf.extend_from_slice(&0u64.to_le_bytes()); // e_shoff: no sections
    elf.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    elf.extend_from_slice(&64u16.to_le_bytes()); // e_ehsize
    elf.extend_from_slice(&56u16.to_le_bytes()); // e_phentsize
    elf.extend_from_slice(&1u16.to_le_bytes()); // e_phnum
    elf.extend_from_slice(&64u16.to_le_bytes()); // e_shentsize
    elf.extend_from_slice(&0u16.to_le_bytes()); // e_shnum
    elf.extend_from_slice(&0u16.to_le_bytes()); // e_shstrndx
                                                // One loadable, readable and executable segment: the whole file at BASE.
    elf.extend_from_slice(&1u32.to_le_bytes()); // p_type: LOAD
    elf.extend_from_slice(&5u32.to_le_bytes()); // p_flags: R + X
    elf.extend_from_slice(&0u64.to_le_bytes()); // p_offset
    elf.extend_from_slice(&BASE.to_le_bytes()); // p_vaddr
    elf.extend_from_slice(&BASE.to_le_bytes()); // p_paddr
    elf.extend_from_slice(&size.to_le_bytes()); // p_filesz
    elf.extend_from_slice(&size.to_le_bytes()); // p_memsz
    elf.extend_from_slice(&0x1000u64.to_le_bytes()); // p_align
    elf.extend_from_slice(code);
    Ok(elf)
}

/// Go's architecture names, which OCI uses.
fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

fn sha256(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let hex: String = digest.as_ref().iter().map(|byte| format!("{byte:02x}")).collect();
    format!("sha256:{hex}")
}

/// A minimal ustar writer: regular files, directories and symlinks with root ownership and a fixed time, so the
/// same entries always give the same bytes (and the same image digest).
#[derive(Default)]
struct Tar {
    bytes: Vec<u8>,
}

impl Tar {
    fn add(&mut self, entry: &Entry) {
        let (path, mode, kind, size, link) = match entry {
            Entry::Directory { path } => (format!("{}/", path.trim_end_matches('/')), 0o755, b'5', 0, ""),
            Entry::File { path, mode, contents } => (path.clone(), *mode, b'0', contents.len(), ""),
            Entry::Symlink { path, target } => (path.clone(), 0o777, b'2', 0, target.as_str()),
        };
        let mut header = [0u8; 512];
        let (prefix, name) = split_path(&path);
        header[..name.len()].copy_from_slice(name.as_bytes());
        octal(&mut header[100..108], u64::from(mode));
        octal(&mut header[108..116], 0);
        octal(&mut header[116..124], 0);
        octal(&mut header[124..136], size as u64);
        octal(&mut header[136..148], 0);
        header[156] = kind;
        header[157..157 + link.len()].copy_from_slice(link.as_bytes());
        header[257..263].copy_from_slice(b"ustar\0");
        header[263..265].copy_from_slice(b"00");
        header[345..345 + prefix.len()].copy_from_slice(prefix.as_bytes());
        // The checksum is computed with its own field as spaces.
        header[148..156].copy_from_slice(b"        ");
        let sum: u32 = header.iter().map(|byte| u32::from(*byte)).sum();
        header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        self.bytes.extend_from_slice(&header);
        if let Entry::File { contents, .. } = entry {
            self.bytes.extend_from_slice(contents);
            self.bytes.resize(self.bytes.len().div_ceil(512) * 512, 0);
        }
    }

    fn finish(mut self) -> Vec<u8> {
        self.bytes.extend_from_slice(&[0u8; 1024]);
        self.bytes
    }
}

/// ustar keeps names up to 100 bytes, longer ones split at a '/' into a prefix (up to 155) and a name.
fn split_path(path: &str) -> (&str, &str) {
    if path.len() <= 100 {
        return ("", path);
    }
    match path[..path.len().min(156)].rfind('/') {
        Some(slash) if path.len() - slash - 1 <= 100 => (&path[..slash], &path[slash + 1..]),
        _ => panic!("path {path:?} is too long for a ustar archive"),
    }
}

fn octal(field: &mut [u8], value: u64) {
    let text = format!("{value:0width$o}\0", width = field.len() - 1);
    field.copy_from_slice(text.as_bytes());
}

/// Imports image archives (OCI layout or `docker save`, plain or gzip) into the `k8s.io` namespace of the
/// containerd at `socket`; returns the references imported per archive.
///
/// This runs Debian's `ctr` (from the same package as containerd) rather than speaking containerd's content and
/// images services: ctr already knows both archive formats, names images from Docker's RepoTags and unpacks them
/// into the snapshotter the CRI plugin uses, which would otherwise be a second gRPC client and an archive parser.
pub async fn import(ctr: &Path, socket: &Path, files: &[PathBuf]) -> Result<Vec<(PathBuf, Vec<String>)>, String> {
    let mut imported = Vec::new();
    for file in files {
        let bytes = read_archive(file)?;
        let mut child = Command::new(ctr)
            .arg("--address")
            .arg(socket)
            .args(["--namespace", CRI_NAMESPACE, "images", "import", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| {
                format!("cannot run {}: {error}; it comes with containerd (apt-get install containerd)", ctr.display())
            })?;
        let mut stdin = child.stdin.take().expect("piped");
        let writer = tokio::spawn(async move {
            let _ = stdin.write_all(&bytes).await;
        });
        let output = child.wait_with_output().await.map_err(|error| error.to_string())?;
        let _ = writer.await;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            return Err(format!(
                "cannot import {}: {}",
                file.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        imported.push((file.clone(), imported_names(&stdout)));
    }
    Ok(imported)
}

/// The names in ctr's `unpacking NAME (sha256:…)...done` lines.
fn imported_names(output: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|line| line.strip_prefix("unpacking ")?.split_once(" (").map(|(name, _)| name.to_string()))
        .collect()
}

/// An archive's tar bytes, gunzipped if it is compressed.
fn read_archive(file: &Path) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(file).map_err(|error| format!("cannot read {}: {error}", file.display()))?;
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut plain = Vec::new();
        flate2::read::MultiGzDecoder::new(bytes.as_slice())
            .read_to_end(&mut plain)
            .map_err(|error| format!("cannot gunzip {}: {error}", file.display()))?;
        return Ok(plain);
    }
    Ok(bytes)
}

/// `ctr` next to the containerd binary, else from PATH.
pub fn ctr_binary(containerd: Option<&Path>) -> PathBuf {
    containerd
        .and_then(Path::parent)
        .map(|dir| dir.join("ctr"))
        .filter(|path| path.exists())
        .unwrap_or_else(|| PathBuf::from("ctr"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_dynamically_linked_programs_name_a_loader() {
        // This test's own executable is dynamically linked (the gnu target); the pause program is static.
        let own = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(names_a_loader(&own));
        if std::env::consts::ARCH == "x86_64" {
            assert!(!names_a_loader(&pause_program().unwrap()));
        }
        assert!(!names_a_loader(b"#!/bin/sh\n"));
    }

    #[test]
    fn references_are_fully_qualified() {
        assert_eq!(normalize_reference("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(normalize_reference("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(normalize_reference("me/app:v1"), "docker.io/me/app:v1");
        assert_eq!(normalize_reference("localhost:5000/app"), "localhost:5000/app:latest");
        assert_eq!(normalize_reference("ghcr.io/x/y:2"), "ghcr.io/x/y:2");
        assert_eq!(normalize_reference("busybox@sha256:abc"), "docker.io/library/busybox@sha256:abc");
        assert_eq!(normalize_reference("docker.io/library/busybox:1.36"), "docker.io/library/busybox:1.36");
    }

    #[test]
    fn ctr_output_names_the_images() {
        let output = "unpacking docker.io/library/busybox:1.36 (sha256:0123)...done\n";
        assert_eq!(imported_names(output), ["docker.io/library/busybox:1.36"]);
    }

    #[test]
    fn archives_are_tar_with_an_oci_layout() {
        let mut image = ImageArchive::new("busybox:1.36");
        image.entries.push(Entry::Directory { path: "bin".into() });
        image.entries.push(Entry::File { path: "bin/hello".into(), mode: 0o755, contents: b"hi".to_vec() });
        image.entries.push(Entry::Symlink { path: "bin/sh".into(), target: "hello".into() });
        let bytes = image.build();
        assert_eq!(bytes.len() % 512, 0);
        assert_eq!(&bytes[257..262], b"ustar");
        assert_eq!(&bytes[..10], b"oci-layout");
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains(r#""io.containerd.image.name":"docker.io/library/busybox:1.36""#));
        assert_eq!(bytes, image.build(), "the same image gives the same bytes");
    }

    #[test]
    fn the_pause_program_runs_and_waits() {
        if std::env::consts::ARCH != "x86_64" {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pause");
        std::fs::write(&path, pause_program().unwrap()).unwrap();
        std::process::Command::new("chmod").arg("755").arg(&path).status().unwrap();
        let mut child = std::process::Command::new(&path).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1500));
        assert!(child.try_wait().unwrap().is_none(), "pause keeps running");
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
