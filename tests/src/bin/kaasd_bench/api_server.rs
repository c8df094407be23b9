//! Starting, restarting and stopping `kaasd controller` for the API benchmark, timing each start from spawn to the
//! first `/readyz` that answers `ok`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use http::{Method, StatusCode};
use tokio::process::{Child, Command};

use crate::api_client::{ApiConnection, Endpoint, Protocol};
use crate::targets::{self, MemoryUsage, PostgresAdmin, TargetKind};

/// How long a controller may take from spawn to ready before the start counts as failed.
const READY_LIMIT: Duration = Duration::from_secs(60);
/// Pause between two `/readyz` attempts: short against the second-scale figures being measured.
const READY_POLL_INTERVAL: Duration = Duration::from_millis(2);
/// The admin kubeconfig, relative to the data directory.
const KUBECONFIG: &str = "pki/admin.conf";
/// How long a SIGTERM'd controller may take to drain before it is killed.
const STOP_LIMIT: Duration = Duration::from_secs(30);

/// The command-line options that say which kaasd runs and where its data goes, shared by the benchmarks that
/// start `kaasd controller`.
#[derive(clap::Args, Debug)]
pub struct LaunchArgs {
    /// kaasd binary [default: kaasd next to this binary, i.e. target/release/kaasd].
    #[arg(long)]
    kaasd: Option<PathBuf>,
    /// Where the controllers' temporary data directories go [default: the system temp dir].
    #[arg(long)]
    work_dir: Option<PathBuf>,
    #[arg(long, default_value = "127.0.0.1")]
    postgres_host: String,
    #[arg(long, default_value_t = 5432)]
    postgres_port: u16,
    #[arg(long, default_value = "postgres")]
    postgres_user: String,
}

impl LaunchArgs {
    pub fn launch(&self, server_cpu: Option<usize>) -> Result<ControllerLaunch> {
        Ok(ControllerLaunch {
            binary: kaasd_binary(self.kaasd.as_ref())?,
            work_dir: self.work_dir.clone().unwrap_or_else(std::env::temp_dir),
            postgres: PostgresAdmin {
                host: self.postgres_host.clone(),
                port: self.postgres_port,
                user: self.postgres_user.clone(),
            },
            server_cpu,
        })
    }
}

/// The kaasd binary given, or else the one next to this binary (i.e. target/release/kaasd).
pub fn kaasd_binary(given: Option<&PathBuf>) -> Result<PathBuf> {
    match given {
        Some(path) => Ok(path.clone()),
        None => Ok(std::env::current_exe()
            .context("locating this binary")?
            .parent()
            .ok_or_else(|| anyhow!("this binary has no parent directory"))?
            .join("kaasd")),
    }
}

/// What every controller of one benchmark run is started with.
#[derive(Clone, Debug)]
pub struct ControllerLaunch {
    pub binary: PathBuf,
    pub work_dir: PathBuf,
    pub postgres: PostgresAdmin,
    /// CPU to pin the controller to with taskset; None leaves it free.
    pub server_cpu: Option<usize>,
}

/// A running controller with its own data directory (and database), kept across restarts.
pub struct RunningController {
    pub kind: TargetKind,
    pub pid: u32,
    pub address: SocketAddr,
    /// The command line of the last start, for the report.
    pub command_line: String,
    /// Spawn to the first `/readyz` answering `ok`, of the last start.
    pub ready_in: Duration,
    /// Spawn to the admin kubeconfig on disk, of the first start: the controller writes it after `/readyz` turns
    /// ok, so a client that waits for `/readyz` can still find no kubeconfig.
    pub kubeconfig_in: Duration,
    child: Child,
    arguments: Vec<String>,
    launch: ControllerLaunch,
    data_dir: PathBuf,
    log_path: PathBuf,
    postgres_database: Option<String>,
    _scratch: tempfile::TempDir,
}

impl RunningController {
    /// Starts a controller on a fresh data directory (and, for PostgreSQL, a fresh database named after this
    /// process and `instance`) and waits until it is ready.
    pub async fn start_fresh(kind: TargetKind, launch: &ControllerLaunch, instance: usize) -> Result<Self> {
        if !launch.binary.is_file() {
            bail!(
                "kaasd binary not found at {} (build it: cargo build --release -p kaasd, or pass --kaasd)",
                launch.binary.display()
            );
        }
        let scratch = tempfile::Builder::new()
            .prefix(&format!("kaasd-bench-api-{}-", kind.short_name()))
            .tempdir_in(&launch.work_dir)
            .with_context(|| format!("creating a temporary directory in {}", launch.work_dir.display()))?;
        let data_dir = scratch.path().join("data");
        let log_path = scratch.path().join("controller.log");
        let port = free_loopback_port()?;
        let mut arguments: Vec<String> = vec![
            "controller".into(),
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--api-port".into(),
            port.to_string(),
            "--bind-address".into(),
            "127.0.0.1".into(),
            "--advertise-address".into(),
            "127.0.0.1".into(),
        ];
        let mut postgres_database = None;
        if kind == TargetKind::Postgres {
            let database = format!("kaasd_bench_api_{}_{instance}", std::process::id());
            let admin = &launch.postgres;
            admin.psql("SELECT 1").await.context("PostgreSQL server is not reachable")?;
            admin.psql(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)")).await?;
            admin.psql(&format!("CREATE DATABASE {database}")).await?;
            arguments.push("--datastore".into());
            arguments.push(admin.url(&database));
            postgres_database = Some(database);
        }
        let spawned = Instant::now();
        let started = match spawn_until_ready(launch, &arguments, &log_path, port).await {
            Ok((child, ready_in)) => wait_for_file(&data_dir.join(KUBECONFIG)).await.map(|()| (child, ready_in)),
            Err(error) => Err(error),
        };
        let (child, ready_in) = match started {
            Ok(started) => started,
            Err(error) => {
                if let Some(database) = &postgres_database {
                    drop_database(&launch.postgres, database).await.ok();
                }
                return Err(error);
            }
        };
        let kubeconfig_in = spawned.elapsed();
        Ok(RunningController {
            kind,
            pid: child.id().ok_or_else(|| anyhow!("the controller exited right after start"))?,
            address: SocketAddr::from(([127, 0, 0, 1], port)),
            command_line: command_line(launch, &arguments, &data_dir),
            ready_in,
            kubeconfig_in,
            child,
            arguments,
            launch: launch.clone(),
            data_dir,
            log_path,
            postgres_database,
            _scratch: scratch,
        })
    }

    /// The cluster admin, authenticated by the client certificate of the kubeconfig the controller wrote.
    pub fn admin_endpoint(&self) -> Result<Endpoint> {
        Endpoint::admin(self.address, &self.data_dir.join(KUBECONFIG))
    }

    /// Stops the controller gracefully (SIGTERM) and starts it again on the same data; returns the new start's
    /// time to ready.
    pub async fn restart(&mut self) -> Result<Duration> {
        self.terminate().await?;
        self.start_again().await
    }

    /// Stops the controller gracefully (SIGTERM), keeping its data for [`RunningController::start_again`].
    pub async fn pause(&mut self) -> Result<()> {
        self.terminate().await
    }

    /// Starts a paused controller again on its data; returns the time from spawn to ready.
    pub async fn start_again(&mut self) -> Result<Duration> {
        let (child, ready_in) =
            spawn_until_ready(&self.launch, &self.arguments, &self.log_path, self.address.port()).await?;
        self.pid = child.id().ok_or_else(|| anyhow!("the controller exited right after start"))?;
        self.child = child;
        self.ready_in = ready_in;
        Ok(ready_in)
    }

    async fn terminate(&mut self) -> Result<()> {
        let status =
            Command::new("kill").args(["-TERM", &self.pid.to_string()]).status().await.context("running kill -TERM")?;
        if !status.success() {
            bail!("kill -TERM {} failed with {status}", self.pid);
        }
        match tokio::time::timeout(STOP_LIMIT, self.child.wait()).await {
            Ok(exited) => {
                exited.context("waiting for the controller to stop")?;
                Ok(())
            }
            Err(_) => {
                self.child.start_kill().ok();
                bail!("the controller did not stop within {STOP_LIMIT:?} of SIGTERM")
            }
        }
    }

    /// Stops the controller (SIGKILL: the data is thrown away) and drops its database.
    pub async fn stop(mut self) -> Result<()> {
        self.child.start_kill().ok();
        tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .context("the controller did not exit within 10 s of SIGKILL")?
            .context("waiting for the controller to exit")?;
        if let Some(database) = self.postgres_database.take() {
            drop_database(&self.launch.postgres, &database).await?;
        }
        Ok(())
    }

    /// None while the controller runs; why it stopped otherwise.
    pub fn exit_reason(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!("controller exited with {status}; log tail:\n{}", self.log_tail())),
            Ok(None) => None,
            Err(error) => Some(format!("cannot check the controller process: {error}")),
        }
    }

    pub fn memory(&self) -> Result<MemoryUsage> {
        targets::process_memory(self.pid)
    }

    /// The `--datastore` URL of this controller: its PostgreSQL database, or the SQLite file in its data dir.
    pub fn datastore_url(&self) -> String {
        match self.arguments.iter().position(|argument| argument == "--datastore") {
            Some(flag) => self.arguments[flag + 1].clone(),
            None => format!("sqlite://{}", self.data_dir.join("db").join("state.db").display()),
        }
    }

    /// CPU time (user + system) of the controller's current process.
    pub fn cpu_seconds(&self) -> Result<f64> {
        targets::process_cpu_seconds(&format!("/proc/{}/stat", self.pid))
    }

    pub fn log_tail(&self) -> String {
        log_tail(&self.log_path)
    }
}

/// Spawns the controller and polls `/readyz` until it answers `ok`; returns the process and the time it took.
async fn spawn_until_ready(
    launch: &ControllerLaunch,
    arguments: &[String],
    log_path: &Path,
    port: u16,
) -> Result<(Child, Duration)> {
    let mut command = match launch.server_cpu {
        Some(cpu) => {
            // taskset execs the controller, so the child's pid is the controller's own.
            let mut command = Command::new("taskset");
            command.arg("-c").arg(cpu.to_string()).arg(&launch.binary);
            command
        }
        None => Command::new(&launch.binary),
    };
    let log = std::fs::File::options()
        .create(true)
        .append(true)
        .open(log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let stdout_log = log.try_clone().context("duplicating the log file handle")?;
    command
        .args(arguments)
        .env_remove("KAASD_DATASTORE")
        .env_remove("KAASD_DATA_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::from(stdout_log))
        .stderr(Stdio::from(log))
        .kill_on_drop(true);
    let endpoint = Endpoint::unverified(SocketAddr::from(([127, 0, 0, 1], port)))?;
    let started = Instant::now();
    let mut child = command.spawn().with_context(|| format!("starting {}", launch.binary.display()))?;
    match wait_until_ready(&mut child, &endpoint, started).await {
        Ok(ready_in) => Ok((child, ready_in)),
        Err(error) => {
            child.start_kill().ok();
            child.wait().await.ok();
            Err(error.context(format!("controller log tail:\n{}", log_tail(log_path))))
        }
    }
}

/// Polls `/readyz` every few milliseconds, keeping a connection once one is open (a new TLS handshake per poll
/// would add its own milliseconds to every sample).
async fn wait_until_ready(child: &mut Child, endpoint: &Endpoint, started: Instant) -> Result<Duration> {
    let deadline = started + READY_LIMIT;
    let mut connection: Option<ApiConnection> = None;
    let mut last_answer = String::from("no connection yet");
    loop {
        if let Some(status) = child.try_wait().context("checking the controller process")? {
            bail!("the controller exited with {status} before it was ready");
        }
        if Instant::now() > deadline {
            bail!("/readyz did not answer ok within {READY_LIMIT:?}; last answer: {last_answer}");
        }
        if connection.is_none() {
            match endpoint.connect(Protocol::Http1).await {
                Ok(opened) => connection = Some(opened),
                Err(error) => last_answer = format!("{error:#}"),
            }
        }
        if let Some(open) = &mut connection {
            match open.request(Method::GET, "/readyz", None).await {
                Ok((StatusCode::OK, body)) if body.as_ref() == b"ok" => return Ok(started.elapsed()),
                Ok((status, body)) => last_answer = format!("{status}: {}", String::from_utf8_lossy(&body).trim()),
                Err(error) => {
                    last_answer = format!("{error:#}");
                    connection = None;
                }
            }
        }
        tokio::time::sleep(READY_POLL_INTERVAL).await;
    }
}

/// Waits (polling every millisecond, up to [`READY_LIMIT`]) until `path` exists.
async fn wait_for_file(path: &Path) -> Result<()> {
    let deadline = Instant::now() + READY_LIMIT;
    while !path.exists() {
        if Instant::now() > deadline {
            bail!("{} did not appear within {READY_LIMIT:?} of /readyz turning ok", path.display());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

async fn drop_database(admin: &PostgresAdmin, database: &str) -> Result<()> {
    admin
        .psql(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        .await
        .with_context(|| format!("dropping benchmark database {database}"))
        .map(|_| ())
}

/// The command line for the report, with the binary's file name and `D` for the temporary data directory, so the
/// report does not depend on where this machine keeps them.
fn command_line(launch: &ControllerLaunch, arguments: &[String], data_dir: &Path) -> String {
    let program = launch.binary.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    let data_dir = data_dir.display().to_string();
    std::iter::once(program)
        .chain(arguments.iter().map(|argument| if *argument == data_dir { "D".to_string() } else { argument.clone() }))
        .collect::<Vec<_>>()
        .join(" ")
}

fn free_loopback_port() -> Result<u16> {
    // Free when we look; the short race until the controller binds it is acceptable for a benchmark.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free loopback port")?;
    Ok(listener.local_addr().context("reading the bound address")?.port())
}

fn log_tail(path: &Path) -> String {
    match std::fs::read_to_string(path) {
        Ok(log) => {
            let lines: Vec<&str> = log.lines().collect();
            lines[lines.len().saturating_sub(15)..].join("\n")
        }
        Err(error) => format!("(cannot read {}: {error})", path.display()),
    }
}
