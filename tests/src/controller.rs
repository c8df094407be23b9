//! `kaasd controller` processes for end-to-end tests, and kubectl pointed at them.
//!
//! ```no_run
//! let controller = kaasd_e2e::controller::Controller::start().expect("kaasd controller starts");
//! let namespaces = controller.kubectl(&["get", "namespaces"]).expect("kubectl runs");
//! ```

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::{free_port, kaasd_binary};

const START_TIMEOUT: Duration = Duration::from_secs(60);
const SERVING_PREFIX: &str = "kaasd controller serving the Kubernetes API on https://";
/// The real kubectl, as a user has it.
pub const KUBECTL: &str = "/usr/bin/kubectl";

/// A running `kaasd controller` with its own data directory (kept across restarts) and API port.
pub struct Controller {
    child: Option<Child>,
    data_dir: tempfile::TempDir,
    port: u16,
    extra_arguments: Vec<String>,
    started_in: Duration,
    /// The network namespace it runs in (`ip netns exec`), with its address there; `None`: this one, on loopback.
    namespace: Option<(String, std::net::IpAddr)>,
    /// Set for a hosted replica (`kaasd controller --hosted`): it gets no data directory, and the test's directory
    /// holds only its log and the kubeconfig made for it.
    hosted: Option<Hosted>,
}

/// What a hosted replica is started with.
#[derive(Debug, Clone)]
pub struct Hosted {
    /// A PostgreSQL or MySQL URL.
    pub datastore: String,
    /// The secret key (base64) that seals the cluster PKI in the datastore.
    pub secret_key: String,
}

impl Hosted {
    /// A new random secret key, as an operator makes one (`head -c 32 /dev/urandom | base64`).
    pub fn new_secret_key() -> String {
        use base64::Engine;
        let bytes: [u8; 32] = rand::random();
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }
}

impl Controller {
    /// Starts a controller on embedded SQLite.
    pub fn start() -> anyhow::Result<Controller> {
        Controller::start_with(Vec::new())
    }

    /// Starts a controller with extra command-line arguments (e.g. `--datastore postgres://...`).
    pub fn start_with(extra_arguments: Vec<String>) -> anyhow::Result<Controller> {
        let data_dir = tempfile::tempdir().context("cannot create a data directory")?;
        let mut controller = Controller::unstarted(data_dir, free_port()?, extra_arguments);
        controller.spawn()?;
        Ok(controller)
    }

    /// A controller not yet spawned, on this machine's network, not hosted.
    fn unstarted(data_dir: tempfile::TempDir, port: u16, extra_arguments: Vec<String>) -> Controller {
        Controller {
            child: None,
            data_dir,
            port,
            extra_arguments,
            started_in: Duration::ZERO,
            namespace: None,
            hosted: None,
        }
    }

    /// Starts a hosted replica, `kaasd controller --hosted`, the way a pod runs it: as an unprivileged user (uid
    /// 65534), working directory `/`, no data directory, the secret key in `KAASD_SECRET_KEY`. Then makes its
    /// admin kubeconfig with `kaasd kubeconfig admin --datastore …`, so kubectl works as with any controller.
    pub fn start_hosted(hosted: Hosted, extra_arguments: Vec<String>) -> anyhow::Result<Controller> {
        let data_dir = tempfile::tempdir().context("cannot create a directory for the test's files")?;
        let mut controller = Controller::unstarted(data_dir, free_port()?, extra_arguments);
        controller.hosted = Some(hosted);
        controller.spawn()?;
        let kubeconfig = controller.hosted_admin_kubeconfig(&controller.url())?;
        let path = controller.kubeconfig();
        std::fs::create_dir_all(path.parent().context("the kubeconfig has a directory")?)?;
        std::fs::write(&path, kubeconfig)?;
        Ok(controller)
    }

    /// Another hosted replica of this hosted replica's cluster (same datastore and key).
    pub fn start_another_replica(&self) -> anyhow::Result<Controller> {
        let hosted = self.hosted.clone().context("not a hosted replica")?;
        Controller::start_hosted(hosted, self.extra_arguments.clone())
    }

    /// `kaasd kubeconfig admin --datastore … --server SERVER` for a hosted replica: a new admin kubeconfig from the
    /// PKI stored in its datastore.
    pub fn hosted_admin_kubeconfig(&self, server: &str) -> anyhow::Result<String> {
        let hosted = self.hosted.as_ref().context("not a hosted replica")?;
        let output = Command::new(kaasd_binary()?)
            .args(["kubeconfig", "admin", "--datastore", &hosted.datastore, "--server", server])
            .env("KAASD_SECRET_KEY", &hosted.secret_key)
            .env_remove("KAASD_DATA_DIR")
            .output()
            .context("cannot run kaasd kubeconfig admin")?;
        if !output.status.success() {
            bail!("kaasd kubeconfig admin failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(String::from_utf8(output.stdout)?)
    }

    /// Starts a controller inside network namespace `namespace`, listening on port 6443 of every address there
    /// and advertising `address` (what workers dial). kubectl runs in that namespace too.
    pub fn start_in_namespace(namespace: &str, address: std::net::IpAddr) -> anyhow::Result<Controller> {
        let data_dir = tempfile::tempdir().context("cannot create a data directory")?;
        let mut controller = Controller::unstarted(data_dir, 6443, Vec::new());
        controller.namespace = Some((namespace.to_string(), address));
        controller.spawn()?;
        Ok(controller)
    }

    /// A command that runs `program` where this controller runs (its network namespace, if any).
    pub fn command_here(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        match &self.namespace {
            Some((namespace, _)) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", namespace]).arg(program);
                command
            }
            None => Command::new(program),
        }
    }

    /// Starts a second controller of the same cluster: a copy of `first`'s PKI (CA, service-account key), its
    /// own data directory and port, and the given arguments (which name the shared `--datastore`).
    pub fn start_replica_of(first: &Controller, extra_arguments: Vec<String>) -> anyhow::Result<Controller> {
        let data_dir = tempfile::tempdir().context("cannot create a data directory")?;
        let pki = data_dir.path().join("pki");
        std::fs::create_dir_all(&pki)?;
        for file in ["ca.crt", "ca.key", "service-account.key"] {
            std::fs::copy(first.data_dir().join("pki").join(file), pki.join(file))
                .with_context(|| format!("cannot copy {file}"))?;
        }
        let mut controller = Controller::unstarted(data_dir, free_port()?, extra_arguments);
        controller.spawn()?;
        Ok(controller)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let binary = kaasd_binary()?;
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .context("cannot open the controller log")?;
        let started = Instant::now();
        let (bind, advertise) = match &self.namespace {
            Some((_, address)) => ("0.0.0.0".to_string(), address.to_string()),
            None => ("127.0.0.1".to_string(), "127.0.0.1".to_string()),
        };
        let mut command = match &self.hosted {
            None => {
                let mut command = self.command_here(binary);
                command.args(["controller", "--data-dir"]).arg(self.data_dir.path()).args(["--sync", "normal"]);
                command
            }
            Some(hosted) => {
                let mut command = Command::new("setpriv");
                command
                    .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
                    .arg(unprivileged_binary()?)
                    .args(["controller", "--hosted", "--datastore", &hosted.datastore])
                    .env("KAASD_SECRET_KEY", &hosted.secret_key)
                    .env_remove("HOME")
                    .current_dir("/");
                command
            }
        };
        let mut child = command
            .args(["--api-port", &self.port.to_string(), "--bind-address", &bind])
            .args(["--advertise-address", &advertise])
            .args(&self.extra_arguments)
            .env_remove("KAASD_DATASTORE")
            .env_remove("KAASD_DATA_DIR")
            .env("KAASD_LOG", std::env::var("KAASD_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let stdout = child.stdout.take().context("stdout is not captured")?;
        self.child = Some(child);
        let (lines, received) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match received.recv_timeout(Duration::from_millis(50)) {
                Ok(line) if line.starts_with(SERVING_PREFIX) => {
                    self.started_in = started.elapsed();
                    return Ok(());
                }
                Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => std::thread::sleep(Duration::from_millis(20)),
            }
            if let Some(status) = self.child.as_mut().expect("just spawned").try_wait()? {
                bail!("kaasd controller exited with {status} before serving; its log:\n{}", self.log());
            }
            if Instant::now() > deadline {
                bail!("kaasd controller did not serve within {START_TIMEOUT:?}; its log:\n{}", self.log());
            }
        }
    }

    /// How long the last start took until the controller printed that it serves.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.data_dir.path().join("pki").join("admin.conf")
    }

    pub fn address(&self) -> SocketAddr {
        match &self.namespace {
            Some((_, address)) => SocketAddr::new(*address, self.port),
            None => SocketAddr::from(([127, 0, 0, 1], self.port)),
        }
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.address())
    }

    /// The process id of the running controller.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn log_path(&self) -> PathBuf {
        self.data_dir.path().join("controller.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Runs kubectl as the cluster admin; returns its output whatever the exit status.
    pub fn kubectl_output(&self, arguments: &[&str]) -> anyhow::Result<Output> {
        self.kubectl_command(arguments).output().context("cannot run kubectl")
    }

    /// A kubectl command as the cluster admin, for callers that need stdin or a timeout.
    pub fn kubectl_command(&self, arguments: &[&str]) -> Command {
        let mut command = self.command_here(KUBECTL);
        command
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            // A private discovery cache per cluster: the default one is keyed by host:port, which tests reuse.
            .arg("--cache-dir")
            .arg(self.data_dir.path().join("kube-cache"))
            .args(arguments)
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null());
        command
    }

    /// Runs kubectl and returns its stdout; fails with kubectl's stderr if it exits non-zero.
    pub fn kubectl(&self, arguments: &[&str]) -> anyhow::Result<String> {
        let output = self.kubectl_output(arguments)?;
        if !output.status.success() {
            bail!(
                "kubectl {} failed ({}):\n{}{}",
                arguments.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr),
                String::from_utf8_lossy(&output.stdout)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Runs kubectl with `stdin` as its input (`kubectl apply -f -`).
    pub fn kubectl_stdin(&self, arguments: &[&str], stdin: &str) -> anyhow::Result<String> {
        use std::io::Write;
        let mut child = self
            .kubectl_command(arguments)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot run kubectl")?;
        child.stdin.take().context("stdin is not captured")?.write_all(stdin.as_bytes())?;
        let output = child.wait_with_output()?;
        if !output.status.success() {
            bail!(
                "kubectl {} failed ({}):\n{}",
                arguments.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Stops the controller with SIGTERM and waits for it.
    pub fn stop(&mut self) -> anyhow::Result<ExitStatus> {
        self.signal_and_wait("TERM")
    }

    /// Kills the controller with SIGKILL.
    pub fn kill(&mut self) -> anyhow::Result<ExitStatus> {
        self.signal_and_wait("KILL")
    }

    /// Starts the controller again on the same data directory and port.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            self.stop()?;
        }
        self.spawn()
    }

    /// Sends SIGTERM and returns at once with the stopping process, so a test can time its exit or start the next
    /// process (`start_again`) before it has gone.
    pub fn terminate(&mut self) -> anyhow::Result<Child> {
        let child = self.child.take().context("the controller is not running")?;
        Command::new("kill").arg("-TERM").arg(child.id().to_string()).status()?;
        Ok(child)
    }

    /// Starts a new process on the same data directory and port (after `terminate`, or after it exited).
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(self.child.is_none(), "the controller is still running");
        self.spawn()
    }

    fn signal_and_wait(&mut self, signal: &str) -> anyhow::Result<ExitStatus> {
        let mut child = self.child.take().context("the controller is not running")?;
        Command::new("kill").arg(format!("-{signal}")).arg(child.id().to_string()).status()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("the controller did not stop within 30 s; its log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A copy of the kaasd binary that any user may run: the one under test may sit below directories only root can
/// enter.
fn unprivileged_binary() -> anyhow::Result<&'static Path> {
    use std::os::unix::fs::PermissionsExt;
    static COPY: std::sync::OnceLock<Result<(tempfile::TempDir, PathBuf), String>> = std::sync::OnceLock::new();
    let copied = COPY.get_or_init(|| {
        let copy = || -> anyhow::Result<(tempfile::TempDir, PathBuf)> {
            let dir = tempfile::tempdir()?;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
            let path = dir.path().join("kaasd");
            std::fs::copy(kaasd_binary()?, &path)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
            Ok((dir, path))
        };
        copy().map_err(|error| format!("cannot copy the kaasd binary for an unprivileged user: {error:#}"))
    });
    match copied {
        Ok((_, path)) => Ok(path),
        Err(message) => Err(anyhow::anyhow!("{message}")),
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
