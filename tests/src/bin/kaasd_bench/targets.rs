//! Starting, measuring and stopping the servers under test: etcd, and kaasd on SQLite or PostgreSQL.
//!
//! Every target starts fresh in its own temporary directory under one base directory, so that all of them
//! write to the same disk, and listens on a loopback port only.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use etcd_client::{Client, ConnectOptions};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

/// How long a server may take from spawn to answering requests; etcd needs a few seconds to elect itself.
const STARTUP_LIMIT: Duration = Duration::from_secs(30);
/// The line `kaasd datastore serve` prints once it accepts connections.
const KAASD_READY_PREFIX: &str = "kaasd datastore serving etcd v3 on";
/// Responses to a full range read of the list workload are ~10 MiB, well over tonic's 4 MiB default.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TargetKind {
    Etcd,
    Sqlite,
    Postgres,
}

impl TargetKind {
    pub fn parse_list(list: &str) -> Result<Vec<TargetKind>> {
        let mut kinds = Vec::new();
        for name in list.split(',').map(str::trim).filter(|name| !name.is_empty()) {
            let kind = match name {
                "etcd" => TargetKind::Etcd,
                "sqlite" => TargetKind::Sqlite,
                "postgres" | "postgresql" | "pg" => TargetKind::Postgres,
                other => bail!("unknown target {other:?}; expected etcd, sqlite or postgres"),
            };
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
        if kinds.is_empty() {
            bail!("--targets names no target");
        }
        kinds.sort();
        Ok(kinds)
    }

    pub fn short_name(self) -> &'static str {
        match self {
            TargetKind::Etcd => "etcd",
            TargetKind::Sqlite => "sqlite",
            TargetKind::Postgres => "postgres",
        }
    }

    pub fn is_kaasd(self) -> bool {
        self != TargetKind::Etcd
    }
}

/// Everything needed to start any target.
#[derive(Clone, Debug)]
pub struct LaunchConfig {
    pub etcd_binary: PathBuf,
    pub kaasd_binary: PathBuf,
    /// CPU the servers are pinned to with taskset, when pinning is possible.
    pub server_cpu: Option<usize>,
    pub work_dir: PathBuf,
    pub postgres: PostgresAdmin,
}

#[derive(Clone, Debug)]
pub struct PostgresAdmin {
    pub host: String,
    pub port: u16,
    pub user: String,
}

impl PostgresAdmin {
    /// Runs one statement through psql against the maintenance database and returns its unaligned output.
    pub async fn psql(&self, statement: &str) -> Result<String> {
        let output = Command::new("psql")
            .args(["-h", &self.host, "-p", &self.port.to_string(), "-U", &self.user])
            .args(["-d", "postgres", "-v", "ON_ERROR_STOP=1", "-tAc", statement])
            // A server that is not there must fail fast instead of hanging the whole run.
            .env("PGCONNECT_TIMEOUT", "5")
            .stdin(Stdio::null())
            .output()
            .await
            .context("running psql (is the postgresql-client package installed?)")?;
        if !output.status.success() {
            bail!("psql -c {statement:?} failed: {}", String::from_utf8_lossy(&output.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://{}@{}:{}/{database}", self.user, self.host, self.port)
    }
}

/// A server that answers on `endpoint`, with its own data and log.
pub struct RunningTarget {
    pub kind: TargetKind,
    pub endpoint: String,
    pub pid: u32,
    /// The command line that started it, for the report.
    pub command_line: String,
    child: Child,
    data_dir: PathBuf,
    log_path: PathBuf,
    postgres_database: Option<(PostgresAdmin, String)>,
    // Held for its Drop: removes the data directory at the end.
    _scratch: tempfile::TempDir,
}

#[derive(Clone, Copy, Debug)]
pub struct MemoryUsage {
    pub resident_bytes: u64,
    /// VmHWM: the most the process ever had resident, so a short peak between samples is not missed.
    pub peak_resident_bytes: u64,
}

pub async fn launch(kind: TargetKind, config: &LaunchConfig) -> Result<RunningTarget> {
    let scratch = tempfile::Builder::new()
        .prefix(&format!("kaasd-bench-{}-", kind.short_name()))
        .tempdir_in(&config.work_dir)
        .with_context(|| format!("creating a temporary directory in {}", config.work_dir.display()))?;
    let data_dir = scratch.path().join("data");
    std::fs::create_dir(&data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let log_path = scratch.path().join("server.log");
    let client_port = free_loopback_port()?;
    let endpoint = format!("http://127.0.0.1:{client_port}");

    let mut postgres_database = None;
    let (program, args): (PathBuf, Vec<String>) = match kind {
        TargetKind::Etcd => {
            let peer_port = free_loopback_port()?;
            let peer_url = format!("http://127.0.0.1:{peer_port}");
            let args = vec![
                "--data-dir".into(),
                data_dir.display().to_string(),
                "--listen-client-urls".into(),
                endpoint.clone(),
                "--advertise-client-urls".into(),
                endpoint.clone(),
                "--listen-peer-urls".into(),
                peer_url.clone(),
                // Without these etcd advertises localhost:2380, which another etcd on this machine may own.
                "--initial-advertise-peer-urls".into(),
                peer_url.clone(),
                "--initial-cluster".into(),
                format!("default={peer_url}"),
                "--quota-backend-bytes=8589934592".into(),
                "--auto-compaction-retention=0".into(),
            ];
            (config.etcd_binary.clone(), args)
        }
        TargetKind::Sqlite | TargetKind::Postgres => {
            if !config.kaasd_binary.is_file() {
                bail!(
                    "kaasd binary not found at {} (build it: cargo build --release -p kaasd, or pass --kaasd)",
                    config.kaasd_binary.display()
                );
            }
            let datastore_url = if kind == TargetKind::Sqlite {
                format!("sqlite://{}/state.db", data_dir.display())
            } else {
                let database = format!("kaasd_bench_{}", std::process::id());
                let admin = config.postgres.clone();
                admin.psql("SELECT 1").await.context("PostgreSQL server is not reachable")?;
                admin.psql(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)")).await?;
                admin.psql(&format!("CREATE DATABASE {database}")).await?;
                let url = admin.url(&database);
                postgres_database = Some((admin, database));
                url
            };
            let args = vec![
                "datastore".into(),
                "serve".into(),
                "--datastore".into(),
                datastore_url,
                "--listen".into(),
                format!("127.0.0.1:{client_port}"),
            ];
            (config.kaasd_binary.clone(), args)
        }
    };

    let mut command = match config.server_cpu {
        Some(cpu) => {
            // taskset execs the server, so the child's pid is the server's own and /proc/PID is its memory.
            let mut command = Command::new("taskset");
            command.arg("-c").arg(cpu.to_string()).arg(&program);
            command
        }
        None => Command::new(&program),
    };
    command.args(&args);
    let command_line =
        std::iter::once(program.display().to_string()).chain(args.iter().cloned()).collect::<Vec<_>>().join(" ");
    let log_file =
        std::fs::File::create(&log_path).with_context(|| format!("creating server log {}", log_path.display()))?;
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::from(log_file)).kill_on_drop(true);
    let mut child = command.spawn().with_context(|| format!("starting {}", program.display()))?;
    let pid = child.id().ok_or_else(|| anyhow!("server exited right after start"))?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow!("server stdout was not captured"))?;

    let mut target = RunningTarget {
        kind,
        endpoint,
        pid,
        command_line,
        child,
        data_dir,
        log_path: log_path.clone(),
        postgres_database,
        _scratch: scratch,
    };

    let ready = if kind.is_kaasd() {
        wait_for_ready_line(stdout, &log_path).await
    } else {
        tokio::spawn(copy_lines_to_log(BufReader::new(stdout), log_path.clone()));
        Ok(())
    };
    let ready = match ready {
        Ok(()) => target.wait_until_answering().await,
        Err(error) => Err(error),
    };
    if let Err(error) = ready {
        let log_tail = target.log_tail();
        target.stop().await.ok();
        return Err(error.context(format!("server log tail:\n{log_tail}")));
    }
    Ok(target)
}

/// Reads kaasd's stdout until it says it serves, then keeps draining it into the log so the server never
/// blocks on a full pipe.
pub async fn wait_for_ready_line(stdout: tokio::process::ChildStdout, log_path: &Path) -> Result<()> {
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + STARTUP_LIMIT;
    loop {
        let line = tokio::time::timeout_at(deadline.into(), lines.next_line())
            .await
            .map_err(|_| anyhow!("kaasd printed no {KAASD_READY_PREFIX:?} line within {STARTUP_LIMIT:?}"))?
            .context("reading kaasd stdout")?;
        match line {
            Some(line) if line.starts_with(KAASD_READY_PREFIX) => break,
            Some(_) => continue,
            None => bail!(
                "kaasd closed stdout before printing {KAASD_READY_PREFIX:?} (does this build have `kaasd datastore serve`?)"
            ),
        }
    }
    tokio::spawn(copy_lines_to_log(lines.into_inner(), log_path.to_path_buf()));
    Ok(())
}

async fn copy_lines_to_log<R: tokio::io::AsyncBufRead + Unpin>(reader: R, log_path: PathBuf) {
    let Ok(mut log) = tokio::fs::OpenOptions::new().append(true).open(&log_path).await else {
        return;
    };
    let mut lines = reader.lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if log.write_all(format!("[stdout] {line}\n").as_bytes()).await.is_err() {
            return;
        }
    }
}

pub fn free_loopback_port() -> Result<u16> {
    // The port is free when we look; the short race until the server binds it is acceptable for a benchmark.
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free loopback port")?;
    Ok(listener.local_addr().context("reading the bound address")?.port())
}

impl RunningTarget {
    pub async fn connect(&self) -> Result<Client> {
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_keep_alive(Duration::from_secs(30), Duration::from_secs(10));
        Client::connect([self.endpoint.as_str()], Some(options))
            .await
            .with_context(|| format!("connecting to {} at {}", self.kind.short_name(), self.endpoint))
    }

    async fn wait_until_answering(&mut self) -> Result<()> {
        let deadline = Instant::now() + STARTUP_LIMIT;
        let mut last_error = anyhow!("never tried");
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().context("checking the server process")? {
                bail!("server exited during startup with {status}");
            }
            let attempt = async {
                let mut client = self.connect().await?;
                client.get("kaasd-bench/startup-probe", None).await.context("probe read")?;
                anyhow::Ok(())
            };
            match tokio::time::timeout(Duration::from_secs(5), attempt).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(error)) => last_error = error,
                Err(_) => last_error = anyhow!("probe read timed out"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(last_error.context(format!("server did not answer within {STARTUP_LIMIT:?}")))
    }

    /// None while the server runs; why it stopped otherwise.
    pub fn exit_reason(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!("server exited with {status}; log tail:\n{}", self.log_tail())),
            Ok(None) => None,
            Err(error) => Some(format!("cannot check the server process: {error}")),
        }
    }

    pub fn memory(&self) -> Result<MemoryUsage> {
        process_memory(self.pid)
    }

    /// CPU time (user + system) the server has used so far.
    pub fn cpu_seconds(&self) -> Result<f64> {
        process_cpu_seconds(&format!("/proc/{}/stat", self.pid))
    }

    /// Bytes the target's data occupies on disk: the data directory (etcd's bbolt file and WAL, or the SQLite
    /// file with its WAL), or the PostgreSQL database as `pg_database_size` counts it.
    pub async fn data_size_bytes(&self) -> Result<u64> {
        if let Some((admin, database)) = &self.postgres_database {
            let size = admin.psql(&format!("SELECT pg_database_size('{database}')")).await?;
            return size.parse().with_context(|| format!("parsing pg_database_size output {size:?}"));
        }
        allocated_bytes(&self.data_dir)
    }

    pub fn data_size_method(&self) -> &'static str {
        match self.kind {
            TargetKind::Etcd => "etcd data dir, allocated blocks",
            TargetKind::Sqlite => "SQLite file + WAL, allocated blocks",
            TargetKind::Postgres => "pg_database_size",
        }
    }

    fn log_tail(&self) -> String {
        match std::fs::read_to_string(&self.log_path) {
            Ok(log) => {
                let lines: Vec<&str> = log.lines().collect();
                lines[lines.len().saturating_sub(15)..].join("\n")
            }
            Err(error) => format!("(cannot read {}: {error})", self.log_path.display()),
        }
    }

    /// Stops the server and drops its PostgreSQL database; the data directory goes with `self`.
    pub async fn stop(mut self) -> Result<()> {
        // SIGKILL is enough: the data is thrown away, and waiting on a graceful shutdown only costs time.
        self.child.start_kill().ok();
        tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .context("server did not exit within 10 s of SIGKILL")?
            .context("waiting for the server to exit")?;
        if let Some((admin, database)) = self.postgres_database.take() {
            admin
                .psql(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
                .await
                .with_context(|| format!("dropping benchmark database {database}"))?;
        }
        Ok(())
    }
}

/// VmRSS and VmHWM of a process, from /proc/PID/status.
pub fn process_memory(pid: u32) -> Result<MemoryUsage> {
    let status_path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&status_path).with_context(|| format!("reading {status_path}"))?;
    let field_bytes = |name: &str| -> Result<u64> {
        let line = status
            .lines()
            .find(|line| line.starts_with(name))
            .ok_or_else(|| anyhow!("{status_path} has no {name} line"))?;
        let kib: u64 = line
            .split_whitespace()
            .nth(1)
            .ok_or_else(|| anyhow!("{status_path}: {name} line has no number"))?
            .parse()
            .with_context(|| format!("{status_path}: parsing {name}"))?;
        Ok(kib * 1024)
    };
    Ok(MemoryUsage { resident_bytes: field_bytes("VmRSS:")?, peak_resident_bytes: field_bytes("VmHWM:")? })
}

/// utime + stime of a process from its /proc stat file, e.g. "/proc/self/stat".
pub fn process_cpu_seconds(stat_path: &str) -> Result<f64> {
    // USER_HZ is 100 on every Linux ABI this runs on; reading it via sysconf would need unsafe code.
    const CLOCK_TICKS_PER_SECOND: f64 = 100.0;
    let stat = std::fs::read_to_string(stat_path).with_context(|| format!("reading {stat_path}"))?;
    // The command name in parentheses may contain spaces; the numeric fields follow the last ')'.
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).ok_or_else(|| anyhow!("{stat_path}: no ')'"))?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of stat(5) are utime and stime; after the name, field 3 (state) is index 0.
    let ticks = |index: usize| -> Result<f64> {
        fields
            .get(index)
            .ok_or_else(|| anyhow!("{stat_path}: too few fields"))?
            .parse::<f64>()
            .with_context(|| format!("{stat_path}: parsing field {}", index + 3))
    };
    Ok((ticks(11)? + ticks(12)?) / CLOCK_TICKS_PER_SECOND)
}

/// Sum of allocated blocks (not apparent sizes: bbolt and SQLite files can be sparse or preallocated).
fn allocated_bytes(path: &Path) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::symlink_metadata(path).with_context(|| format!("stat {}", path.display()))?;
    if !metadata.is_dir() {
        return Ok(metadata.blocks() * 512);
    }
    let mut total = 0;
    for entry in std::fs::read_dir(path).with_context(|| format!("listing {}", path.display()))? {
        let entry = entry.with_context(|| format!("listing {}", path.display()))?;
        total += allocated_bytes(&entry.path())?;
    }
    Ok(total)
}

/// The version line of the etcd binary, e.g. "3.4.23", for the column title.
pub async fn etcd_version(etcd_binary: &Path) -> Result<String> {
    let output = Command::new(etcd_binary)
        .arg("--version")
        .output()
        .await
        .with_context(|| format!("running {} --version", etcd_binary.display()))?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .find_map(|line| line.strip_prefix("etcd Version:"))
        .map(|version| version.trim().to_string())
        .ok_or_else(|| anyhow!("unexpected `etcd --version` output: {text:?}"))
}
