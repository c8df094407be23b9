//! Harness for end-to-end tests: starts real kaasd processes and stops them.
//!
//! [`KaasdProcess`] runs `kaasd datastore serve` (built once per test binary with `cargo build -p kaasd`), waits
//! for the line it prints once it serves, and kills it when dropped. [`Datastore`] adds a private SQLite
//! database in a temporary directory, which survives restarts of the process, for kill -9 and restart tests.
//!
//! ```no_run
//! let datastore = kaasd_e2e::Datastore::start().expect("kaasd starts");
//! let endpoint = datastore.endpoint(); // "127.0.0.1:PORT", for etcdctl --endpoints or etcd-client
//! ```

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

pub mod controller;
pub mod databases;
pub mod images;
pub mod natlab;
pub mod pod_lab;
pub mod worker;

/// How long a kaasd process may take to print its serving line.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a graceful stop may take before the process counts as hung.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// What the serving line starts with; the listening address follows.
const SERVING_PREFIX: &str = "kaasd datastore serving etcd v3 on ";

/// The kaasd binary under test: `$KAASD_BINARY` when set (`tests/run.sh` sets it to the one its workspace build
/// made), else this workspace's, built on first use (once per test binary; later calls reuse it).
pub fn kaasd_binary() -> anyhow::Result<&'static Path> {
    static BINARY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = BINARY.get_or_init(|| match std::env::var_os("KAASD_BINARY") {
        Some(path) if Path::new(&path).is_file() => Ok(PathBuf::from(path)),
        Some(path) => Err(format!("KAASD_BINARY={} is not a file", Path::new(&path).display())),
        None => build_kaasd().map_err(|error| format!("{error:#}")),
    });
    match built {
        Ok(path) => Ok(path),
        Err(message) => Err(anyhow!("{message}")),
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
}

fn build_kaasd() -> anyhow::Result<PathBuf> {
    let root = workspace_root();
    // Cargo tells the tests it runs which cargo it is; plain `cargo` otherwise.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    // The same profile as the tests themselves, so a release test run does not build kaasd twice.
    let profile = if cfg!(debug_assertions) { "debug" } else { "release" };
    let mut arguments = vec!["build", "-p", "kaasd", "--quiet"];
    if profile == "release" {
        arguments.push("--release");
    }
    let status =
        Command::new(cargo).args(&arguments).current_dir(&root).status().context("cannot run cargo build -p kaasd")?;
    if !status.success() {
        bail!("cargo build -p kaasd failed with {status}");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    let binary = target.join(profile).join("kaasd");
    if !binary.is_file() {
        bail!("cargo build -p kaasd did not produce {}", binary.display());
    }
    Ok(binary)
}

/// A port on 127.0.0.1 that was free a moment ago (the OS picks it; another process could still take it).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind 127.0.0.1:0")?;
    Ok(listener.local_addr().context("cannot read the bound address")?.port())
}

/// How to start a kaasd process.
#[derive(Debug, Clone)]
pub struct KaasdOptions {
    /// `--datastore` URL.
    pub datastore: String,
    /// `--listen`; `None` picks a free port on 127.0.0.1.
    pub listen: Option<SocketAddr>,
    /// More `kaasd datastore serve` flags, e.g. `["--sync", "normal"]`.
    pub extra_arguments: Vec<String>,
    /// Extra environment variables, e.g. `KAASD_LOG=debug`.
    pub environment: Vec<(String, String)>,
    /// Where the process's stderr (its log) goes; `None` keeps it in a temporary file.
    pub log_file: Option<PathBuf>,
}

impl KaasdOptions {
    pub fn new(datastore: impl Into<String>) -> Self {
        Self {
            datastore: datastore.into(),
            listen: None,
            extra_arguments: Vec::new(),
            environment: Vec::new(),
            log_file: None,
        }
    }
}

/// A running `kaasd datastore serve`. Dropping it kills the process (SIGKILL) and waits for it.
pub struct KaasdProcess {
    child: Child,
    address: SocketAddr,
    log_file: PathBuf,
    /// Holds the log file when the caller did not choose one.
    _log_directory: Option<tempfile::TempDir>,
}

impl KaasdProcess {
    /// Starts kaasd and waits until it serves.
    pub fn start(options: KaasdOptions) -> anyhow::Result<Self> {
        let binary = kaasd_binary()?;
        let listen = match options.listen {
            Some(address) => address,
            None => SocketAddr::from(([127, 0, 0, 1], free_port()?)),
        };
        let (log_file, log_directory) = match options.log_file {
            Some(path) => (path, None),
            None => {
                let directory = tempfile::tempdir().context("cannot create a directory for the log")?;
                (directory.path().join("kaasd.log"), Some(directory))
            }
        };
        // Appending keeps the log of earlier runs on the same file, across restarts.
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&log_file)
            .with_context(|| format!("cannot open {}", log_file.display()))?;
        let mut command = Command::new(binary);
        command
            .args(["datastore", "serve", "--datastore", &options.datastore, "--listen", &listen.to_string()])
            .args(&options.extra_arguments)
            .env_remove("KAASD_DATASTORE")
            .env_remove("KAASD_LISTEN")
            .env("KAASD_LOG", std::env::var("KAASD_LOG").unwrap_or_else(|_| "info".into()))
            .envs(options.environment.iter().map(|(name, value)| (name, value)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        let mut child = command.spawn().with_context(|| format!("cannot start {}", binary.display()))?;
        let stdout = child.stdout.take().context("kaasd's stdout is not captured")?;
        let mut process = Self { child, address: listen, log_file, _log_directory: log_directory };
        process.address = process.wait_until_serving(stdout)?;
        Ok(process)
    }

    /// Reads stdout until the serving line, then keeps draining it in the background so kaasd never blocks.
    fn wait_until_serving(&mut self, stdout: std::process::ChildStdout) -> anyhow::Result<SocketAddr> {
        let (lines, received) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // The receiver is gone once the serving line was seen: the rest is only drained.
                let _ = lines.send(line);
            }
        });
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match received.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(SERVING_PREFIX) {
                        let address = rest.split_whitespace().next().unwrap_or_default();
                        return address.parse().with_context(|| format!("unexpected serving line {line:?}"));
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                // stdout closed: the process is exiting; the check below reports it.
                Err(mpsc::RecvTimeoutError::Disconnected) => std::thread::sleep(Duration::from_millis(20)),
            }
            if let Some(status) = self.child.try_wait().context("cannot check on kaasd")? {
                bail!("kaasd exited with {status} before serving; its log:\n{}", self.log());
            }
            if Instant::now() > deadline {
                bail!("kaasd did not serve within {START_TIMEOUT:?}; its log:\n{}", self.log());
            }
        }
    }

    /// The address it serves the etcd API on, `127.0.0.1:PORT`: what etcdctl's `--endpoints` takes.
    pub fn endpoint(&self) -> String {
        self.address.to_string()
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_file).unwrap_or_default()
    }

    /// Sends a signal by name (`"TERM"`, `"INT"`, `"STOP"`, ...) without waiting.
    pub fn signal(&self, name: &str) -> anyhow::Result<()> {
        // kill(1) rather than kill(2): the workspace forbids unsafe code, and tests need no speed here.
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .context("cannot run kill")?;
        if !status.success() {
            bail!("kill -{name} {} failed with {status}", self.child.id());
        }
        Ok(())
    }

    /// SIGTERM, then waits for the graceful drain to finish.
    pub fn stop(&mut self) -> anyhow::Result<ExitStatus> {
        self.signal("TERM")?;
        self.wait(STOP_TIMEOUT)
    }

    /// SIGKILL, as a crash or power cut would stop it, and waits for it to be gone.
    pub fn kill(&mut self) -> anyhow::Result<ExitStatus> {
        self.child.kill().context("cannot kill kaasd")?;
        self.child.wait().context("cannot wait for kaasd")
    }

    /// Waits for the process to exit by itself.
    pub fn wait(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().context("cannot check on kaasd")? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("kaasd did not exit within {timeout:?}; its log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for KaasdProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A kaasd process on its own SQLite database in a temporary directory; the database outlives restarts.
pub struct Datastore {
    process: Option<KaasdProcess>,
    options: KaasdOptions,
    directory: tempfile::TempDir,
}

impl Datastore {
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with(|_| {})
    }

    /// Starts with adjusted options (extra flags, environment); the datastore URL is the temporary database.
    pub fn start_with(adjust: impl FnOnce(&mut KaasdOptions)) -> anyhow::Result<Self> {
        let directory = tempfile::tempdir().context("cannot create a directory for the database")?;
        let mut options = KaasdOptions::new(format!("sqlite://{}", directory.path().join("state.db").display()));
        options.log_file = Some(directory.path().join("kaasd.log"));
        adjust(&mut options);
        let process = KaasdProcess::start(options.clone())?;
        // Restarts keep the address, so clients can reconnect.
        options.listen = Some(process.address());
        Ok(Self { process: Some(process), options, directory })
    }

    /// The running process.
    pub fn process(&mut self) -> anyhow::Result<&mut KaasdProcess> {
        self.process.as_mut().context("kaasd is not running")
    }

    pub fn endpoint(&self) -> String {
        self.options.listen.map(|address| address.to_string()).unwrap_or_default()
    }

    /// The temporary directory with the database and the log.
    pub fn directory(&self) -> &Path {
        self.directory.path()
    }

    /// Everything logged, across restarts.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.directory.path().join("kaasd.log")).unwrap_or_default()
    }

    /// Stops the process gracefully (SIGTERM) and returns how it exited.
    pub fn stop(&mut self) -> anyhow::Result<ExitStatus> {
        let mut process = self.process.take().context("kaasd is not running")?;
        process.stop()
    }

    /// Kills the process (SIGKILL).
    pub fn kill(&mut self) -> anyhow::Result<ExitStatus> {
        let mut process = self.process.take().context("kaasd is not running")?;
        process.kill()
    }

    /// Starts the process again on the same database and address, after [`Datastore::stop`] or
    /// [`Datastore::kill`]. The new process appends to the same log.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        if self.process.is_some() {
            bail!("kaasd is still running: stop or kill it first");
        }
        self.process = Some(KaasdProcess::start(self.options.clone())?);
        Ok(())
    }
}
