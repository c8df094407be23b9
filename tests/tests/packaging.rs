//! Packaging, end to end: the static release binaries (packaging/build-static.sh), the aarch64 one under
//! qemu-user, `kaasd install` (systemd units checked by `systemd-analyze verify` and their exact command line and
//! environment started and serving; the OpenRC service run by OpenRC itself, in a private mount namespace, from
//! install through `kaasd stop|start` to uninstall), install's refusals, `kaasd status`,
//! and `kaasd reset` leaving no container, mount, network device, nftables table or data behind after a pod ran;
//! kaasd's own OCI image (packaging/build-image.sh) imported into a private containerd and run.
//!
//! Needs root, containerd, runc, the CNI plugins, busybox-static, kubectl, systemd-analyze, openrc, readelf, file,
//! qemu-user-static and the dist/ artifacts (tests/run.sh provides them all). In CI (CI=true) anything missing
//! fails the test; elsewhere a test whose tools or artifacts are missing says so and does nothing.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use kaasd_e2e::controller::KUBECTL;
use kaasd_e2e::images::busybox_image;

const TIMEOUT: Duration = Duration::from_secs(120);
/// The controller under qemu emulation starts a lot slower than natively.
const EMULATED_TIMEOUT: Duration = Duration::from_secs(300);
const MAX_BINARY_BYTES: u64 = 40 * 1024 * 1024;

fn kaasd() -> &'static Path {
    kaasd_e2e::kaasd_binary().expect("the kaasd binary is there")
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value == "true")
}

/// Whether something a test needs is here. In CI its absence fails the test; elsewhere the test says what it
/// does not check and returns.
fn present(what: &str, here: bool) -> bool {
    if !here {
        assert!(!in_ci(), "{what} is missing (tests/run.sh provides it)");
        eprintln!("NOT CHECKED: {what} is missing (tests/run.sh provides it)");
    }
    here
}

fn output(command: &mut Command) -> Output {
    command.output().unwrap_or_else(|error| panic!("cannot run {command:?}: {error}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn kaasd_ok(arguments: &[&str]) -> String {
    let result = output(Command::new(kaasd()).args(arguments).env_remove("KAASD_DATA_DIR"));
    assert!(result.status.success(), "kaasd {arguments:?} failed: {}{}", text(&result.stdout), text(&result.stderr));
    text(&result.stdout)
}

/// Runs kaasd expecting it to fail; returns its stderr.
fn kaasd_fails(command: &mut Command) -> String {
    let result = output(command);
    assert!(!result.status.success(), "{command:?} should have failed: {}", text(&result.stdout));
    text(&result.stderr)
}

fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool, log: impl Fn() -> String) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "{what} did not happen within {timeout:?}\n{}", log());
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn free_port() -> u16 {
    kaasd_e2e::free_port().expect("a free port")
}

/// The release artifacts: `$KAASD_DIST_DIR`, else the workspace's dist/.
fn dist_dir() -> PathBuf {
    std::env::var_os("KAASD_DIST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("dist"))
}

/// `dist/kaasd-<version>-linux-<arch>`.
fn dist_binary(arch: &str) -> Option<PathBuf> {
    let suffix = format!("-linux-{arch}");
    std::fs::read_dir(dist_dir()).ok()?.flatten().map(|entry| entry.path()).find(|path| {
        path.file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| name.starts_with("kaasd-") && name.ends_with(&suffix))
    })
}

fn readyz(kubeconfig: &Path) -> bool {
    Command::new(KUBECTL)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["get", "--raw", "/readyz"])
        .output()
        .is_ok_and(|result| result.status.success() && text(&result.stdout).trim() == "ok")
}

/// A process the test started, killed if the test ends before it stops it.
struct Running {
    child: Child,
    log: PathBuf,
}

impl Running {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, as the init system stops it, and the exit.
    fn stop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.child.try_wait().ok().flatten().is_none() {
            assert!(Instant::now() < deadline, "kaasd did not stop on SIGTERM\n{}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `KEY='value'` lines of a service's environment file.
fn environment_file(path: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (key, value) = line.split_once('=').unwrap_or_else(|| panic!("not KEY=VALUE: {line}"));
            let value = value.strip_prefix('\'').and_then(|value| value.strip_suffix('\'')).expect("single-quoted");
            (key.to_string(), value.to_string())
        })
        .collect()
}

/// The value of `key=` in a unit file (its first occurrence).
fn unit_value(unit: &str, key: &str) -> String {
    let prefix = format!("{key}=");
    unit.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("the unit has no {key}=\n{unit}"))
        .to_string()
}

/// Runs what a unit runs: its ExecStart= command line with its EnvironmentFile= (read from under `root`), and
/// nothing else from this test's environment but PATH, as systemd would; `$NOTIFY_SOCKET` is the test's, to
/// receive READY=1. `rewrite` adjusts a variable that names a file written under `root`.
fn start_unit(root: &Path, unit: &Path, notify: &Path, rewrite: impl Fn(&str, String) -> String) -> Running {
    let unit = std::fs::read_to_string(unit).expect("the unit is readable");
    let command_line = unit_value(&unit, "ExecStart");
    let words: Vec<&str> = command_line.split_whitespace().collect();
    let environment_path = unit_value(&unit, "EnvironmentFile");
    let environment = environment_file(&root.join(environment_path.trim_start_matches('/')));
    let log = root.join(format!("{}.log", words[1]));
    let log_file = std::fs::File::create(&log).expect("log file");
    let child = Command::new(words[0])
        .args(&words[1..])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(environment.into_iter().map(|(key, value)| {
            let value = rewrite(&key, value);
            (key, value)
        }))
        .env("NOTIFY_SOCKET", notify)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("log file"))
        .stderr(log_file)
        .spawn()
        .expect("the unit's command starts");
    Running { child, log }
}

/// Waits for READY=1 on a notify socket, as systemd does for Type=notify units.
fn wait_ready(socket: &UnixDatagram, timeout: Duration, running: &Running) {
    socket.set_read_timeout(Some(Duration::from_secs(1))).expect("timeout");
    let deadline = Instant::now() + timeout;
    let mut buffer = [0u8; 4096];
    loop {
        if let Ok(length) = socket.recv(&mut buffer) {
            if text(&buffer[..length]).lines().any(|line| line == "READY=1") {
                return;
            }
        }
        assert!(Instant::now() < deadline, "no READY=1 within {timeout:?}\n{}", running.log());
    }
}

fn file_mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|error| panic!("{}: {error}", path.display())).permissions().mode() & 0o777
}

fn systemd_analyze_verify(unit: &Path) {
    let result = output(Command::new("systemd-analyze").arg("verify").arg(unit));
    let messages = format!("{}{}", text(&result.stdout), text(&result.stderr));
    // The environment file is checked only where it is installed; the unit names /etc/kaasd, not the test's root.
    let complaints: Vec<&str> =
        messages.lines().filter(|line| !line.trim().is_empty() && !line.contains("/etc/kaasd/")).collect();
    assert!(result.status.success() && complaints.is_empty(), "systemd-analyze verify {}:\n{messages}", unit.display());
}

fn mounts_under(dir: &Path) -> Vec<String> {
    let table = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let dir = dir.display().to_string();
    table
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|mount| mount.starts_with(&dir))
        .map(String::from)
        .collect()
}

/// Processes whose command line mentions `needle` (a data directory: containerd, its shims, kaasd).
fn processes_mentioning(needle: &str) -> Vec<String> {
    let own = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter(|entry| entry.file_name().to_str().is_some_and(|name| name.bytes().all(|b| b.is_ascii_digit())))
        .filter(|entry| entry.file_name().to_str() != Some(own.as_str()))
        .filter_map(|entry| std::fs::read(entry.path().join("cmdline")).ok())
        .map(|command_line| text(&command_line).replace('\0', " "))
        .filter(|command_line| command_line.contains(needle))
        .collect()
}

#[test]
fn static_binaries_are_static_small_and_checksummed() {
    let tools = Path::new("/usr/bin/readelf").exists() && Path::new("/usr/bin/file").exists();
    if !present("readelf and file (binutils, file)", tools) {
        return;
    }
    let binaries: Vec<_> = ["x86_64", "aarch64"].iter().map(|arch| (*arch, dist_binary(arch))).collect();
    if !present("dist/ static binaries (packaging/build-static.sh)", binaries.iter().all(|(_, path)| path.is_some())) {
        return;
    }
    for (arch, path) in binaries {
        let path = path.expect("checked");
        let dynamic = output(Command::new("readelf").arg("-d").arg(&path).env("LC_ALL", "C"));
        assert!(
            text(&dynamic.stdout).contains("There is no dynamic section"),
            "{} has a dynamic section:\n{}",
            path.display(),
            text(&dynamic.stdout)
        );
        let described = text(&output(Command::new("file").arg("-b").arg(&path)).stdout);
        assert!(described.contains("statically linked"), "{}: {described}", path.display());
        let machine = if arch == "x86_64" { "x86-64" } else { "ARM aarch64" };
        assert!(described.contains(machine), "{} is not {machine}: {described}", path.display());
        let size = std::fs::metadata(&path).expect("size").len();
        assert!(size < MAX_BINARY_BYTES, "{} is {size} bytes, over 40 MiB", path.display());
        eprintln!("{}: {size} bytes; {described}", path.display());

        let tarball = PathBuf::from(format!("{}.tar.gz", path.display()));
        let listing = text(&output(Command::new("tar").arg("-tzf").arg(&tarball)).stdout);
        let name = path.file_name().and_then(|name| name.to_str()).expect("name");
        for member in [
            "kaasd",
            "systemd/kaasd-controller.service",
            "systemd/kaasd-worker.service",
            "openrc/kaasd-controller",
            "openrc/kaasd-worker",
            "README-controller.md",
            "README-worker.md",
            "LICENSE",
        ] {
            assert!(listing.lines().any(|line| line == format!("{name}/{member}")), "{member} not in {listing}");
        }
    }
    let sums = output(Command::new("sha256sum").args(["--check", "--strict", "SHA256SUMS"]).current_dir(dist_dir()));
    assert!(sums.status.success(), "SHA256SUMS does not match:\n{}{}", text(&sums.stdout), text(&sums.stderr));
    let host = dist_binary("x86_64").expect("checked");
    let version = text(&output(Command::new(&host).arg("--version")).stdout);
    assert!(version.starts_with(&format!("kaasd {} (commit ", env!("CARGO_PKG_VERSION"))), "{version}");
    assert!(version.trim_end().ends_with(", x86_64-unknown-linux-musl)"), "{version}");
}

/// `dist/kaasd-<version>-image.tar`.
fn dist_image() -> Option<PathBuf> {
    let path = dist_dir().join(format!("kaasd-{}-image.tar", env!("CARGO_PKG_VERSION")));
    path.is_file().then_some(path)
}

/// A JSON member of a tar archive (`blobs/sha256/…`, `index.json`).
fn archive_json(archive: &Path, member: &str) -> serde_json::Value {
    let listed = output(Command::new("tar").arg("-xOf").arg(archive).arg(member));
    assert!(listed.status.success(), "{member} is not in {}: {}", archive.display(), text(&listed.stderr));
    serde_json::from_slice(&listed.stdout).unwrap_or_else(|error| panic!("{member} is not JSON: {error}"))
}

fn blob_path(digest: &serde_json::Value) -> String {
    format!("blobs/sha256/{}", digest.as_str().expect("a digest").trim_start_matches("sha256:"))
}

/// A containerd of the test's own (no CRI plugin), on a socket in `dir`.
fn private_containerd(dir: &Path) -> (Running, PathBuf) {
    let socket = dir.join("containerd.sock");
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{socket}\"\n",
            root = dir.join("root").display(),
            state = dir.join("state").display(),
            socket = socket.display()
        ),
    )
    .expect("containerd config");
    let log = dir.join("containerd.log");
    let child = Command::new("containerd")
        .arg("--config")
        .arg(&config)
        .stdout(std::fs::File::create(&log).expect("log"))
        .stderr(std::fs::File::options().append(true).open(&log).expect("log"))
        .spawn()
        .expect("containerd starts");
    let running = Running { child, log };
    let ctr_ready = || {
        Command::new("ctr").arg("--address").arg(&socket).arg("version").output().is_ok_and(|out| out.status.success())
    };
    wait_for("containerd answering", TIMEOUT, ctr_ready, || running.log());
    (running, socket)
}

/// kaasd's image: a multi-arch index naming both platforms, each a non-root image whose entrypoint is kaasd; it
/// imports into Debian's containerd with `ctr images import` and with `kaasd images import`, and runs.
#[test]
fn the_image_imports_into_containerd_and_runs_kaasd() {
    let runtime = ["/usr/bin/containerd", "/usr/bin/ctr", "/usr/sbin/runc"].iter().all(|path| Path::new(path).exists());
    if !present("containerd, ctr and runc", runtime) {
        return;
    }
    let Some(image) = dist_image() else {
        present("dist/ image archive (packaging/build-image.sh)", false);
        return;
    };
    let name = format!("docker.io/kaasd/kaasd:{}", env!("CARGO_PKG_VERSION"));

    // The layout: index.json names the image and points at an index of both platforms.
    let top = archive_json(&image, "index.json");
    let entry = &top["manifests"][0];
    assert_eq!(entry["annotations"]["io.containerd.image.name"], name.as_str());
    let index = archive_json(&image, &blob_path(&entry["digest"]));
    let platforms: Vec<String> = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|manifest| manifest["platform"]["architecture"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(platforms, ["amd64", "arm64"]);
    for manifest in index["manifests"].as_array().expect("manifests") {
        let manifest = archive_json(&image, &blob_path(&manifest["digest"]));
        let config = archive_json(&image, &blob_path(&manifest["config"]["digest"]));
        assert_eq!(config["config"]["User"], "65532:65532", "the image does not run as root");
        assert_eq!(config["config"]["Entrypoint"], serde_json::json!(["/usr/local/bin/kaasd"]));
    }
    let docker = archive_json(&image, "manifest.json");
    assert_eq!(docker[0]["RepoTags"][0], name.as_str(), "docker load's manifest.json names the image");

    let dir = tempfile::tempdir().expect("temp dir");
    let (_containerd, socket) = private_containerd(dir.path());
    let ctr = |arguments: &[&str]| {
        let result = output(Command::new("ctr").arg("--address").arg(&socket).args(arguments));
        assert!(result.status.success(), "ctr {arguments:?}: {}{}", text(&result.stdout), text(&result.stderr));
        text(&result.stdout)
    };
    ctr(&["images", "import", "--all-platforms", image.to_str().expect("utf-8 path")]);
    assert!(ctr(&["images", "list", "--quiet"]).lines().any(|line| line == name), "ctr imported {name}");
    let version = ctr(&["run", "--rm", &name, "kaasd-version", "/usr/local/bin/kaasd", "--version"]);
    assert!(version.starts_with(&format!("kaasd {} (commit ", env!("CARGO_PKG_VERSION"))), "{version}");
    assert!(version.trim_end().ends_with(", x86_64-unknown-linux-musl)"), "{version}");
    // The default command is a hosted control plane, which says what it lacks and stops.
    let hosted =
        output(Command::new("ctr").arg("--address").arg(&socket).args(["run", "--rm", &name, "kaasd-default"]));
    assert!(!hosted.status.success());
    let said = format!("{}{}", text(&hosted.stdout), text(&hosted.stderr));
    assert!(said.contains("--hosted keeps no state on this machine"), "{said}");

    let imported =
        output(Command::new(kaasd()).args(["images", "import", "--containerd-socket"]).arg(&socket).arg(&image));
    assert!(imported.status.success(), "kaasd images import: {}{}", text(&imported.stdout), text(&imported.stderr));
    let listed = ctr(&["--namespace", "k8s.io", "images", "list", "--quiet"]);
    assert!(listed.lines().any(|line| line == name), "kaasd images import put {name} in k8s.io: {listed}");
}

#[test]
fn aarch64_binary_runs_a_controller_under_qemu() {
    let qemu = Path::new("/usr/bin/qemu-aarch64-static");
    if !present("qemu-aarch64-static (qemu-user-static)", qemu.exists())
        || !present("kubectl", Path::new(KUBECTL).exists())
    {
        return;
    }
    let Some(binary) = dist_binary("aarch64") else {
        present("dist/ aarch64 binary (packaging/build-static.sh)", false);
        return;
    };
    let version = output(Command::new(qemu).arg(&binary).arg("--version"));
    assert!(version.status.success(), "{}", text(&version.stderr));
    assert!(text(&version.stdout).contains(", aarch64-unknown-linux-musl)"), "{}", text(&version.stdout));
    let help = output(Command::new(qemu).arg(&binary).args(["worker", "--help"]));
    assert!(help.status.success() && text(&help.stdout).contains("--token-file"), "{}", text(&help.stderr));

    let data_dir = tempfile::tempdir().expect("data dir");
    let port = free_port();
    let log = data_dir.path().join("controller.log");
    let log_file = std::fs::File::create(&log).expect("log");
    let child = Command::new(qemu)
        .arg(&binary)
        .args(["controller", "--bind-address", "127.0.0.1", "--api-port", &port.to_string(), "--data-dir"])
        .arg(data_dir.path().join("kaasd"))
        .env_remove("KAASD_DATA_DIR")
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("log"))
        .stderr(log_file)
        .spawn()
        .expect("qemu starts");
    let mut controller = Running { child, log };
    let kubeconfig = data_dir.path().join("kaasd/pki/admin.conf");
    wait_for(
        "the emulated controller answering /readyz",
        EMULATED_TIMEOUT,
        || readyz(&kubeconfig),
        || controller.log(),
    );
    controller.stop();
}

#[test]
fn install_refuses_without_root_over_an_existing_unit_and_with_bad_flags() {
    // Not root: nothing is written (no --root, so it would be the real /etc).
    let nobody =
        output(Command::new("setpriv").args(["--reuid=65534", "--regid=65534", "--clear-groups"]).arg(kaasd()).args([
            "install",
            "controller",
            "--init",
            "systemd",
        ]));
    assert!(!nobody.status.success());
    assert!(
        text(&nobody.stderr).starts_with("error: kaasd install controller must run as root"),
        "{}",
        text(&nobody.stderr)
    );

    let root = tempfile::tempdir().expect("root");
    let install = |extra: &[&str]| {
        let mut command = Command::new(kaasd());
        command.args(["install", "controller", "--init", "systemd", "--root"]).arg(root.path()).args(extra);
        command.env_remove("KAASD_DATA_DIR");
        command
    };
    let unit = root.path().join("etc/systemd/system/kaasd-controller.service");
    let error = kaasd_fails(&mut install(&["--cluster-cidr", "10.0.0.0/30"]));
    assert!(error.contains("invalid --cluster-cidr"), "{error}");
    let error = kaasd_fails(&mut install(&["--api-port", "https"]));
    assert!(error.contains("--api-port"), "{error}");
    assert!(!unit.exists() && !root.path().join("etc/kaasd").exists(), "a refused install wrote files");

    let first = output(&mut install(&["--api-port", "7443"]));
    assert!(first.status.success(), "{}", text(&first.stderr));
    let error = kaasd_fails(&mut install(&["--api-port", "8443"]));
    assert!(error.contains("already installed") && error.contains("--force"), "{error}");
    let environment = root.path().join("etc/kaasd/controller.env");
    assert!(std::fs::read_to_string(&environment).expect("env").contains("KAASD_API_PORT='7443'"), "kept as it was");
    let forced = output(&mut install(&["--api-port", "8443", "--force"]));
    assert!(forced.status.success(), "{}", text(&forced.stderr));
    assert!(std::fs::read_to_string(&environment).expect("env").contains("KAASD_API_PORT='8443'"), "replaced");

    // A worker needs a valid join token.
    let worker = |extra: &[&str]| {
        let mut command = Command::new(kaasd());
        command.args(["install", "worker", "--init", "systemd", "--root"]).arg(root.path()).args(extra);
        command.env_remove("KAASD_DATA_DIR").env_remove("KAASD_TOKEN").env_remove("KAASD_TOKEN_FILE");
        command
    };
    let error = kaasd_fails(&mut worker(&["--data-dir", "/nonexistent/kaasd"]));
    assert!(error.contains("needs a join token"), "{error}");
    let bad_token = root.path().join("bad-token");
    std::fs::write(&bad_token, "not-a-token\n").expect("write");
    let error = kaasd_fails(worker(&["--token-file"]).arg(&bad_token));
    assert!(error.contains("join token is not valid"), "{error}");
    assert!(!root.path().join("etc/systemd/system/kaasd-worker.service").exists());
}

#[test]
fn openrc_scripts_are_shell_and_read_the_environment_file() {
    let root = tempfile::tempdir().expect("root");
    let installed = output(
        Command::new(kaasd())
            .args([
                "install",
                "controller",
                "--init",
                "openrc",
                "--enable-worker",
                "--data-dir",
                "/srv/kaasd",
                "--root",
            ])
            .arg(root.path())
            .env_remove("KAASD_DATA_DIR"),
    );
    assert!(installed.status.success(), "{}", text(&installed.stderr));
    let script = root.path().join("etc/init.d/kaasd-controller");
    assert_eq!(file_mode(&script), 0o755);
    assert_eq!(file_mode(&root.path().join("etc/kaasd/controller.env")), 0o600);
    let content = std::fs::read_to_string(&script).expect("script");
    assert!(content.starts_with("#!/sbin/openrc-run\n"));
    assert!(content.contains(&format!("command=\"{}\"", kaasd().display())), "{content}");
    assert!(content.contains("command_args=\"controller\""), "{content}");
    // The shell checks its syntax, and reading the environment file as the script does gives kaasd its flags
    // (`openrc_runs_the_installed_service_until_uninstall` runs it under OpenRC).
    let syntax = output(Command::new("sh").arg("-n").arg(&script));
    assert!(syntax.status.success(), "{}", text(&syntax.stderr));
    let environment = root.path().join("etc/kaasd/controller.env");
    let read =
        output(Command::new("sh").arg("-c").arg(format!(
            "set -a; . '{}'; set +a; echo \"$KAASD_DATA_DIR $KAASD_ENABLE_WORKER\"",
            environment.display()
        )));
    assert_eq!(text(&read.stdout).trim(), "/srv/kaasd true");
}

/// The controller and worker services as installed, started by their exact command lines, a pod run on the
/// node, and then `kaasd reset` of both data directories.
#[test]
fn installed_services_serve_and_reset_leaves_nothing_behind() {
    let needed = [
        ("systemd-analyze (systemd)", "/usr/bin/systemd-analyze"),
        ("kubectl", KUBECTL),
        ("containerd", "/usr/bin/containerd"),
        ("runc", "/usr/sbin/runc"),
        ("containernetworking-plugins", "/usr/lib/cni/bridge"),
        ("busybox-static", "/bin/busybox"),
        ("nft (nftables)", "/usr/sbin/nft"),
    ];
    for (what, path) in needed {
        if !present(what, Path::new(path).exists()) {
            return;
        }
    }
    let base = tempfile::tempdir().expect("base");
    let root = base.path().join("root");
    let controller_dir = base.path().join("controller");
    let worker_dir = base.path().join("worker");
    let notify_path = base.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).expect("notify socket");
    let port = free_port().to_string();

    // The controller's service.
    let installed = output(
        Command::new(kaasd())
            .args(["install", "controller", "--init", "systemd", "--bind-address", "127.0.0.1", "--api-port", &port])
            .arg("--data-dir")
            .arg(&controller_dir)
            .arg("--root")
            .arg(&root)
            .env_remove("KAASD_DATA_DIR"),
    );
    assert!(installed.status.success(), "{}", text(&installed.stderr));
    assert!(text(&installed.stdout).contains("not started"), "{}", text(&installed.stdout));
    let unit = root.join("etc/systemd/system/kaasd-controller.service");
    let unit_text = std::fs::read_to_string(&unit).expect("unit");
    for line in ["Type=notify", "Restart=always", "Delegate=yes", "KillMode=process", "LimitNOFILE=1048576"] {
        assert!(unit_text.lines().any(|l| l == line), "{line} missing:\n{unit_text}");
    }
    assert_eq!(unit_value(&unit_text, "ExecStart"), format!("{} controller", kaasd().display()));
    assert_eq!(file_mode(&root.join("etc/kaasd/controller.env")), 0o600);
    systemd_analyze_verify(&unit);
    let mut controller = start_unit(&root, &unit, &notify_path, |_, value| value);
    wait_ready(&notify, TIMEOUT, &controller);
    let kubeconfig = controller_dir.join("pki/admin.conf");
    assert!(readyz(&kubeconfig), "READY=1 came before /readyz answers\n{}", controller.log());

    // The worker's service, with a token from the controller.
    let token = kaasd_ok(&[
        "token",
        "create",
        "--server",
        &format!("127.0.0.1:{port}"),
        "--data-dir",
        controller_dir.to_str().expect("utf-8"),
    ]);
    let token_file = base.path().join("token");
    std::fs::write(&token_file, &token).expect("token written");
    let agent_port = free_port().to_string();
    let installed = output(
        Command::new(kaasd())
            .args(["install", "worker", "--init", "systemd", "--node-name", "packaged", "--agent-port", &agent_port])
            .arg("--token-file")
            .arg(&token_file)
            .arg("--data-dir")
            .arg(&worker_dir)
            .arg("--root")
            .arg(&root)
            .env_remove("KAASD_DATA_DIR")
            .env_remove("KAASD_TOKEN"),
    );
    assert!(installed.status.success(), "{}", text(&installed.stderr));
    let unit = root.join("etc/systemd/system/kaasd-worker.service");
    systemd_analyze_verify(&unit);
    let copied = root.join("etc/kaasd/worker-token");
    assert_eq!(file_mode(&copied), 0o600);
    assert_eq!(std::fs::read_to_string(&copied).expect("token").trim(), token.trim());
    assert_eq!(file_mode(&root.join("etc/kaasd/worker.env")), 0o600);
    let copied_path = copied.display().to_string();
    let mut worker = start_unit(&root, &unit, &notify_path, |key, value| {
        // The token file is where the service will find it, under the test's root.
        if key == "KAASD_TOKEN_FILE" {
            assert_eq!(value, "/etc/kaasd/worker-token");
            copied_path.clone()
        } else {
            value
        }
    });
    wait_ready(&notify, TIMEOUT, &worker);
    let kubectl = |arguments: &[&str]| {
        let result = output(Command::new(KUBECTL).arg("--kubeconfig").arg(&kubeconfig).args(arguments));
        (result.status.success(), text(&result.stdout), text(&result.stderr))
    };
    wait_for(
        "node packaged becoming Ready",
        TIMEOUT,
        || {
            kubectl(&["get", "node", "packaged", "-o", r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}"#]).1
                == "True"
        },
        || worker.log(),
    );
    let status = output(Command::new(kaasd()).args(["status", "--data-dir"]).arg(&worker_dir));
    let status_text = text(&status.stdout);
    assert!(status.status.success(), "{status_text}{}", text(&status.stderr));
    for expected in ["role: worker", "process: pid ", "api: reachable", "node: joined as packaged (Ready: True)"] {
        assert!(status_text.contains(expected), "{expected:?} not in:\n{status_text}");
    }
    assert!(status_text.contains("containerd: running"), "{status_text}");

    // A pod, so reset has containers, a sandbox, mounts and a network to remove.
    let archive = base.path().join("busybox.tar");
    std::fs::write(&archive, busybox_image().build()).expect("image archive");
    kaasd_ok(&[
        "images",
        "import",
        "--data-dir",
        worker_dir.to_str().expect("utf-8"),
        archive.to_str().expect("utf-8"),
    ]);
    let manifest = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: packaged\nspec:\n  nodeName: packaged\n  containers:\n  \
                    - name: main\n    image: busybox:1.36\n    command: [sleep, '3600']\n    volumeMounts:\n    - name: \
                    scratch\n      mountPath: /scratch\n  volumes:\n  - name: scratch\n    emptyDir: {}\n";
    let mut apply = Command::new(KUBECTL)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["apply", "-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("kubectl apply");
    apply.stdin.take().expect("stdin").write_all(manifest.as_bytes()).expect("manifest");
    assert!(apply.wait().expect("kubectl").success());
    wait_for(
        "pod packaged running",
        TIMEOUT,
        || kubectl(&["get", "pod", "packaged", "-o", "jsonpath={.status.phase}"]).1 == "Running",
        || worker.log(),
    );
    assert!(!mounts_under(&worker_dir).is_empty(), "a running pod has its root file system mounted");

    // Reset refuses while the worker runs, and changes nothing.
    let error = kaasd_fails(Command::new(kaasd()).args(["reset", "--yes", "--data-dir"]).arg(&worker_dir));
    assert!(error.contains("is running"), "{error}");
    assert!(worker_dir.join("worker").exists());

    // Stopped as systemd stops it: pods keep running in their shims, which reset must remove.
    worker.stop();
    assert!(!mounts_under(&worker_dir).is_empty(), "the pod outlives the stopped worker");
    let declined = output(
        Command::new(kaasd())
            .args(["reset", "--data-dir"])
            .arg(&worker_dir)
            .stdin(std::fs::File::open("/dev/null").expect("null")),
    );
    assert!(!declined.status.success() && text(&declined.stderr).contains("cancelled"), "{}", text(&declined.stderr));
    assert!(worker_dir.join("worker").exists(), "a declined reset changes nothing");
    let reset = output(Command::new(kaasd()).args(["reset", "--yes", "--data-dir"]).arg(&worker_dir));
    assert!(reset.status.success(), "reset failed: {}{}", text(&reset.stdout), text(&reset.stderr));
    assert!(text(&reset.stdout).contains("removed 1 pod sandboxes and 1 containers"), "{}", text(&reset.stdout));
    assert!(!worker_dir.exists(), "the data directory is gone");
    assert!(mounts_under(&worker_dir).is_empty(), "mounts left: {:?}", mounts_under(&worker_dir));
    let left = processes_mentioning(worker_dir.to_str().expect("utf-8"));
    assert!(left.is_empty(), "processes left: {left:?}");
    let bridge = output(Command::new("ip").args(["link", "show", "kaasd0"]));
    assert!(!bridge.status.success(), "the pod bridge is left: {}", text(&bridge.stdout));
    let table = output(Command::new("nft").args(["list", "table", "ip", "kaasd"]));
    assert!(!table.status.success(), "the nftables table is left");
    let dns = text(&output(Command::new("ip").args(["-4", "addr", "show", "dev", "lo", "label", "lo:kaasd"])).stdout);
    assert!(dns.trim().is_empty(), "the cluster DNS address is left: {dns}");

    // The controller: status while it runs, then reset of its data directory.
    let status = text(&output(Command::new(kaasd()).args(["status", "--data-dir"]).arg(&controller_dir)).stdout);
    assert!(status.contains("role: controller") && status.contains("api: reachable"), "{status}");
    controller.stop();
    let status = output(Command::new(kaasd()).args(["status", "--data-dir"]).arg(&controller_dir));
    assert!(!status.status.success() && text(&status.stdout).contains("process: not running"));
    let reset = output(Command::new(kaasd()).args(["reset", "--yes", "--data-dir"]).arg(&controller_dir));
    assert!(reset.status.success(), "{}", text(&reset.stderr));
    assert!(!controller_dir.exists(), "the controller's data directory is gone");
}

/// A machine booted by an init system, in namespaces of the test's own, where `kaasd install`, `start`, `stop`,
/// `status` and `uninstall` run as on a real one. /etc is an overlay (what install, the init system and uninstall
/// write lands in the test's directory), /run is empty, /var/log is the test's directory, and the init system
/// knows no service of this machine's, only the few it needs and kaasd's:
/// - OpenRC: a mount namespace, /etc/init.d and the runlevels emptied, OpenRC's state as after reaching the
///   default runlevel. Alpine's networking service provides the `net` the kaasd scripts need; the network here is
///   up already, so a service that only provides `net` stands in for it.
/// - systemd: also PID and UTS namespaces, where Debian's systemd runs as PID 1 (as in a container) with its unit
///   path set to /etc/systemd/system alone, holding empty stand-ins for the targets and the slice a service's
///   default dependencies name. (With the machine's own units, starting a service would start sysinit.target,
///   whose systemd-tmpfiles-setup empties the /tmp this machine shares.)
///
/// Every process in the machine is killed when it is dropped.
struct InitMachine {
    init: &'static str,
    holder: Child,
    /// A process in the machine's namespaces (for nsenter): OpenRC's holder itself, or systemd.
    target: u32,
    dir: tempfile::TempDir,
}

impl InitMachine {
    fn boot(init: &'static str) -> InitMachine {
        let dir = tempfile::tempdir().expect("machine directory");
        for sub in ["upper", "work", "log"] {
            std::fs::create_dir(dir.path().join(sub)).expect("machine directory");
        }
        let path = dir.path().display();
        let common = format!(
            "set -e
             mount --make-rprivate /
             mount -t overlay overlay -o lowerdir=/etc,upperdir={path}/upper,workdir={path}/work /etc
             mount -t tmpfs tmpfs /run
             mount --bind {path}/log /var/log"
        );
        let (arguments, setup) = if init == "openrc" {
            let setup = format!(
                "{common}
                 rm -rf /etc/init.d/* /etc/runlevels/*/*
                 for state in daemons exclusive failed hotplugged inactive options scheduled started starting \
                     stopping tmp wasinactive; do mkdir -p /run/openrc/$state; done
                 echo default >/run/openrc/softlevel
                 printf '#!/sbin/openrc-run\\ndepend() {{ provide net; }}\\nstart() {{ return 0; }}\\n' \
                     >/etc/init.d/net-up
                 chmod 755 /etc/init.d/net-up
                 echo booting
                 exec sleep infinity"
            );
            (vec!["--mount"], setup)
        } else {
            let setup = format!(
                "{common}
                 mount -t proc proc /proc
                 rm -rf /etc/systemd/system
                 mkdir -p /etc/systemd/system
                 for unit in kaasd-test.target sysinit.target basic.target multi-user.target \
                     network-online.target shutdown.target system.slice; do
                     printf '[Unit]\\nDescription=%s of the test machine\\nDefaultDependencies=no\\n' $unit \
                         >/etc/systemd/system/$unit
                 done
                 echo booting
                 exec env container=kaasd-test SYSTEMD_UNIT_PATH=/etc/systemd/system /lib/systemd/systemd \
                     --system --unit=kaasd-test.target"
            );
            (vec!["--mount", "--pid", "--uts", "--fork"], setup)
        };
        let mut holder = Command::new("unshare")
            .args(arguments)
            .args(["sh", "-c", &setup])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("unshare starts");
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(holder.stdout.take().expect("stdout")), &mut line)
            .expect("setup output");
        assert_eq!(line.trim(), "booting", "the {init} machine was not set up");
        let mut machine = InitMachine { init, target: holder.id(), holder, dir };
        if init == "systemd" {
            // unshare --fork: systemd is unshare's child.
            let children = format!("/proc/{0}/task/{0}/children", machine.holder.id());
            wait_for(
                "systemd starting",
                TIMEOUT,
                || {
                    let pid = std::fs::read_to_string(&children).ok().and_then(|text| text.trim().parse().ok());
                    pid.inspect(|pid| machine.target = *pid).is_some()
                },
                String::new,
            );
            wait_for(
                "systemd reaching its target",
                TIMEOUT,
                || {
                    matches!(
                        text(&machine.run(Path::new("systemctl"), &["is-system-running"]).stdout).trim(),
                        "running" | "degraded"
                    )
                },
                || text(&machine.run(Path::new("systemctl"), &["list-units", "--failed", "--no-pager"]).stdout),
            );
        }
        machine
    }

    /// Runs a command inside the machine.
    fn run(&self, program: &Path, arguments: &[&str]) -> Output {
        let namespaces: &[&str] = if self.init == "openrc" { &["--mount"] } else { &["--mount", "--pid", "--uts"] };
        output(
            Command::new("nsenter")
                .args(["--target", &self.target.to_string()])
                .args(namespaces)
                .arg("--")
                .arg(program)
                .args(arguments)
                .env_remove("KAASD_DATA_DIR"),
        )
    }

    fn exists(&self, path: &str) -> bool {
        self.run(Path::new("test"), &["-e", path]).status.success()
    }

    /// What the service printed, for a failure's message.
    fn log(&self) -> String {
        if self.init == "openrc" {
            std::fs::read_to_string(self.dir.path().join("log/kaasd-controller.log")).unwrap_or_default()
        } else {
            let status = self.run(Path::new("systemctl"), &["status", "--no-pager", "--lines=50", "kaasd-controller"]);
            text(&status.stdout)
        }
    }

    /// The kaasd processes running in the machine (pids as this test sees them).
    fn kaasd_pids(&self) -> Vec<u32> {
        let binary = std::fs::canonicalize(kaasd()).expect("the kaasd binary");
        let is_kaasd = |pid: &u32| std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe == binary);
        self.processes().into_iter().filter(is_kaasd).collect()
    }

    /// Every process in the machine's mount namespace but the holder.
    fn processes(&self) -> Vec<u32> {
        let namespace = |pid: u32| std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok();
        let ours = namespace(self.target);
        std::fs::read_dir("/proc")
            .expect("/proc")
            .flatten()
            .filter_map(|entry| entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()))
            .filter(|pid| *pid != self.holder.id() && ours.is_some() && namespace(*pid) == ours)
            .collect()
    }
}

impl Drop for InitMachine {
    fn drop(&mut self) {
        for pid in self.processes() {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        }
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// `kaasd install controller` on a machine the init system runs: the service is enabled and started by the init
/// system (the unit or script, the environment file, readiness), serves, is started again when killed (systemd's
/// Restart=always, OpenRC's supervise-daemon), stops and starts with `kaasd stop|start`, and `kaasd uninstall`
/// stops it and removes its files but keeps the data directory.
fn installed_service_runs_until_uninstall(init: &'static str) {
    let tools: &[&str] = if init == "openrc" {
        &["/sbin/openrc-run", "/sbin/rc-service", "/sbin/supervise-daemon"]
    } else {
        &["/lib/systemd/systemd", "/bin/systemctl"]
    };
    let needed = tools.iter().chain(&["/usr/bin/nsenter", "/usr/bin/unshare", KUBECTL]);
    if !present(&format!("{init}, util-linux and kubectl"), needed.clone().all(|tool| Path::new(tool).exists())) {
        return;
    }
    let machine = InitMachine::boot(init);
    let data = tempfile::tempdir().expect("data directory");
    let data_dir = data.path().join("kaasd");
    let port = free_port().to_string();
    let kubeconfig = data_dir.join("pki/admin.conf");
    let kaasd_in = |arguments: &[&str]| {
        let result = machine.run(kaasd(), arguments);
        (result.status.success(), format!("{}{}", text(&result.stdout), text(&result.stderr)))
    };
    let (unit, enabled, init_name) = if init == "openrc" {
        ("/etc/init.d/kaasd-controller", "/etc/runlevels/default/kaasd-controller", "OpenRC")
    } else {
        (
            "/etc/systemd/system/kaasd-controller.service",
            "/etc/systemd/system/multi-user.target.wants/kaasd-controller.service",
            "systemd",
        )
    };

    let data_flag = data_dir.to_str().expect("utf-8");
    let (ok, said) = kaasd_in(&[
        "install",
        "controller",
        "--bind-address",
        "127.0.0.1",
        "--api-port",
        &port,
        "--data-dir",
        data_flag,
    ]);
    assert!(ok && said.contains("started kaasd-controller"), "{said}\n{}", machine.log());
    assert!(machine.exists(unit), "{unit} was not written");
    assert!(machine.exists(enabled), "{enabled}: the service was not enabled");
    wait_for("the service answering /readyz", TIMEOUT, || readyz(&kubeconfig), || machine.log());
    let (ok, status) = kaasd_in(&["status"]);
    assert!(ok, "{status}");
    let installed_as = format!("role: controller (installed as {init_name} service kaasd-controller ({unit}))");
    for expected in [installed_as.as_str(), "api: reachable", "process: pid"] {
        assert!(status.contains(expected), "{expected:?} not in:\n{status}");
    }
    assert!(status.contains(&format!("data directory: {}", data_dir.display())), "{status}");

    // The init system brings a killed kaasd back.
    let first = machine.kaasd_pids();
    assert_eq!(first.len(), 1, "one kaasd runs: {first:?}");
    let _ = Command::new("kill").args(["-KILL", &first[0].to_string()]).status();
    wait_for(
        "the init system starting kaasd again",
        TIMEOUT,
        || machine.kaasd_pids().iter().any(|pid| !first.contains(pid)) && readyz(&kubeconfig),
        || machine.log(),
    );

    let (ok, said) = kaasd_in(&["stop"]);
    assert!(ok && said.contains("stop: kaasd-controller"), "{said}");
    assert!(machine.kaasd_pids().is_empty(), "kaasd still runs after `kaasd stop`");
    let (ok, status) = kaasd_in(&["status"]);
    assert!(!ok && status.contains("process: not running"), "{status}");
    let (ok, said) = kaasd_in(&["start"]);
    assert!(ok, "{said}");
    wait_for("kaasd answering after `kaasd start`", TIMEOUT, || readyz(&kubeconfig), || machine.log());

    let (ok, said) = kaasd_in(&["uninstall"]);
    assert!(ok, "{said}");
    assert!(said.contains(&format!("removed {unit}")), "{said}");
    assert!(machine.kaasd_pids().is_empty(), "kaasd still runs after uninstall");
    for gone in [unit, enabled, "/etc/kaasd/controller.env"] {
        assert!(!machine.exists(gone), "{gone} is left after uninstall");
    }
    assert!(kubeconfig.exists(), "uninstall keeps the data directory");
    let (ok, said) = kaasd_in(&["start"]);
    assert!(!ok && said.contains("kaasd is not installed here"), "{said}");
}

#[test]
fn openrc_runs_the_installed_service_until_uninstall() {
    installed_service_runs_until_uninstall("openrc");
}

#[test]
fn systemd_runs_the_installed_service_until_uninstall() {
    installed_service_runs_until_uninstall("systemd");
}
