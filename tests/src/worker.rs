//! `kaasd worker` processes for end-to-end tests, usually inside a [`crate::natlab::NatLab`] edge namespace.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::kaasd_binary;

/// A running `kaasd worker` with its own data directory (kept across restarts).
pub struct Worker {
    child: Option<Child>,
    data_dir: tempfile::TempDir,
    namespace: Option<String>,
    node_name: String,
    agent_port: u16,
    extra_arguments: Vec<String>,
}

impl Worker {
    /// Starts `kaasd worker --token TOKEN --node-name NODE_NAME` in network namespace `namespace` (`None`: here).
    /// Returns at once: joining happens in the background (see [`Worker::log`]).
    pub fn start(namespace: Option<&str>, token: &str, node_name: &str) -> anyhow::Result<Worker> {
        let data_dir = tempfile::tempdir().context("cannot create a data directory")?;
        let mut worker = Worker {
            child: None,
            data_dir,
            namespace: namespace.map(str::to_string),
            node_name: node_name.to_string(),
            agent_port: 10250,
            extra_arguments: Vec::new(),
        };
        worker.spawn(Some(token))?;
        Ok(worker)
    }

    /// Starts `kaasd worker` on this machine (no network namespace) with its agent endpoint on `agent_port`, so
    /// several workers (and a system kubelet) can share the machine.
    pub fn start_here(token: &str, node_name: &str, agent_port: u16) -> anyhow::Result<Worker> {
        Worker::start_here_with(token, node_name, agent_port, Vec::new())
    }

    /// [`Worker::start_here`] with more flags, kept for restarts.
    pub fn start_here_with(
        token: &str,
        node_name: &str,
        agent_port: u16,
        extra_arguments: Vec<String>,
    ) -> anyhow::Result<Worker> {
        let data_dir = tempfile::tempdir().context("cannot create a data directory")?;
        let mut worker = Worker {
            child: None,
            data_dir,
            namespace: None,
            node_name: node_name.to_string(),
            agent_port,
            extra_arguments,
        };
        worker.spawn(Some(token))?;
        Ok(worker)
    }

    /// Stops the worker as an operator would (SIGTERM) and waits for it: it stops its containerd, while the
    /// containers keep running.
    pub fn terminate(&mut self) -> anyhow::Result<ExitStatus> {
        let Some(mut child) = self.child.take() else { bail!("the worker is not running") };
        let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status()?;
        if !status.success() {
            bail!("kill -TERM {} failed", child.id());
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("the worker did not stop within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts it again without a token: a joined worker needs only its data directory.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            self.kill()?;
        }
        self.spawn(None)
    }

    fn spawn(&mut self, token: Option<&str>) -> anyhow::Result<()> {
        let binary = kaasd_binary()?;
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .context("cannot open the worker log")?;
        let mut command = match &self.namespace {
            // Only the network namespace: `ip netns exec` would also remount /sys, which hides the cgroup
            // mounts that runc needs to start the worker's pods.
            Some(namespace) => {
                let mut command = Command::new("nsenter");
                command.arg(format!("--net=/run/netns/{namespace}")).arg("--").arg(binary);
                command
            }
            None => Command::new(binary),
        };
        command
            .arg("worker")
            .arg("--data-dir")
            .arg(self.data_dir.path())
            .args(["--node-name", &self.node_name, "--agent-port", &self.agent_port.to_string()])
            .args(&self.extra_arguments)
            .env_remove("KAASD_TOKEN")
            .env_remove("KAASD_DATA_DIR")
            .env("KAASD_LOG", std::env::var("KAASD_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(token) = token {
            command.env("KAASD_TOKEN", token);
        }
        self.child = Some(command.spawn().with_context(|| format!("cannot start {}", binary.display()))?);
        Ok(())
    }

    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    fn log_path(&self) -> PathBuf {
        self.data_dir.path().join("worker.log")
    }

    /// The worker process's id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything the worker logged, across restarts.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Waits up to `timeout` for the worker to exit by itself; `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<Option<ExitStatus>> {
        let child = self.child.as_mut().context("the worker is not running")?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(Some(status));
            }
            if Instant::now() > deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the worker (SIGKILL) and waits for it.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else { bail!("the worker is not running") };
        let _ = child.kill();
        child.wait()?;
        Ok(())
    }
}

impl Drop for Worker {
    /// Stops the worker as an operator would, so it stops its containerd; a containerd left by a killed worker is
    /// stopped too (its pid is in the data directory), so no runtime outlives the test.
    fn drop(&mut self) {
        if self.child.is_some() && self.terminate().is_err() {
            if let Some(mut child) = self.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if let Ok(pid) = std::fs::read_to_string(self.data_dir.path().join("containerd/containerd.pid")) {
            let pid = pid.trim();
            let config = self.data_dir.path().join("containerd/config.toml");
            let ours = std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|line| String::from_utf8_lossy(&line).contains(&*config.to_string_lossy()));
            if ours {
                let _ = Command::new("kill").args(["-TERM", pid]).status();
                let deadline = Instant::now() + Duration::from_secs(10);
                while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }
}

/// Runs `kaasd worker` with `arguments` in `namespace` until it exits (it must, within `timeout`): for refused
/// joins. Returns the exit status and what it wrote to stderr.
pub fn run_worker_to_exit(
    namespace: Option<&str>,
    arguments: &[&str],
    timeout: Duration,
) -> anyhow::Result<(ExitStatus, String)> {
    let binary = kaasd_binary()?;
    let data_dir = tempfile::tempdir()?;
    let mut command = match namespace {
        Some(namespace) => {
            let mut command = Command::new("ip");
            command.args(["netns", "exec", namespace]).arg(binary);
            command
        }
        None => Command::new(binary),
    };
    let stderr = data_dir.path().join("stderr");
    let mut child = command
        .arg("worker")
        .arg("--data-dir")
        .arg(data_dir.path())
        .args(arguments)
        .env_remove("KAASD_TOKEN")
        .env("KAASD_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr)?)
        .spawn()?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok((status, std::fs::read_to_string(&stderr).unwrap_or_default()));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!(
                "kaasd worker {} did not exit within {timeout:?}; stderr:\n{}",
                arguments.join(" "),
                std::fs::read_to_string(&stderr).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
