//! `kaasd install controller|worker`, `kaasd start|stop|status|uninstall`: kaasd as a system service.
//!
//! The service files are the ones in packaging/ (systemd units and OpenRC scripts), with the path of this binary
//! put in. A role's flags go into /etc/kaasd/<role>.env as the `KAASD_*` variables every flag also reads, so the
//! service runs exactly `kaasd <role>` and cannot drift from the command line; the environment file is mode 0600,
//! as it may hold a datastore password, and a worker's join token is copied to /etc/kaasd/worker-token (0600).

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory};

use crate::cli::{Cli, InitSystem, InstallCommand, Role, ServiceArgs, StatusArgs, DEFAULT_DATA_DIR};

const SYSTEMD_CONTROLLER: &str = include_str!("../../packaging/systemd/kaasd-controller.service");
const SYSTEMD_WORKER: &str = include_str!("../../packaging/systemd/kaasd-worker.service");
const OPENRC_CONTROLLER: &str = include_str!("../../packaging/openrc/kaasd-controller");
const OPENRC_WORKER: &str = include_str!("../../packaging/openrc/kaasd-worker");
/// The binary's path in the packaged service files, replaced by this binary's path when installing.
const PACKAGED_BINARY: &str = "/usr/local/bin/kaasd";
/// Where a worker's join token is kept for the service.
const TOKEN_FILE: &str = "/etc/kaasd/worker-token";
/// Flags that are paths: written absolute, since the service does not run in the installer's directory.
const PATH_FLAGS: &[&str] = &["data_dir", "containerd_bin", "cri_socket", "resolv_conf", "secret_key_file"];

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Controller => "controller",
            Role::Worker => "worker",
        }
    }

    fn service(self) -> String {
        format!("kaasd-{}", self.name())
    }

    fn all() -> [Role; 2] {
        [Role::Controller, Role::Worker]
    }
}

impl InitSystem {
    fn name(self) -> &'static str {
        match self {
            InitSystem::Systemd => "systemd",
            InitSystem::Openrc => "OpenRC",
        }
    }
}

/// Where a role's service files live (under `root`, which is `/` but for `install --root`).
struct Files {
    root: PathBuf,
    role: Role,
    init: InitSystem,
}

impl Files {
    fn under_root(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }
    fn unit(&self) -> PathBuf {
        match self.init {
            InitSystem::Systemd => self.under_root(&format!("/etc/systemd/system/{}.service", self.role.service())),
            InitSystem::Openrc => self.under_root(&format!("/etc/init.d/{}", self.role.service())),
        }
    }
    fn environment(&self) -> PathBuf {
        self.under_root(&environment_file(self.role))
    }
    fn token(&self) -> PathBuf {
        self.under_root(TOKEN_FILE)
    }
}

fn environment_file(role: Role) -> String {
    format!("/etc/kaasd/{}.env", role.name())
}

/// The init system running this machine, if it is one kaasd installs for (the checks systemd's sd_booted and
/// OpenRC's rc-status make).
fn running_init() -> Option<InitSystem> {
    if Path::new("/run/systemd/system").is_dir() {
        Some(InitSystem::Systemd)
    } else if Path::new("/run/openrc/softlevel").exists() {
        Some(InitSystem::Openrc)
    } else {
        None
    }
}

/// The init system to install for when none was chosen: the running one; on a machine not booted yet (an image
/// being built) the one installed, systemd when both or neither are.
fn default_init() -> InitSystem {
    running_init().unwrap_or_else(|| {
        let has = |path: &str| Path::new(path).exists();
        if has("/sbin/openrc-run") && !has("/bin/systemctl") && !has("/usr/bin/systemctl") {
            InitSystem::Openrc
        } else {
            InitSystem::Systemd
        }
    })
}

fn require_root(what: &str) -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("{what} must run as root: run it with sudo");
    }
    Ok(())
}

pub fn install(command: InstallCommand, matches: &ArgMatches) -> anyhow::Result<()> {
    let (role, install) = match &command {
        InstallCommand::Controller { install, .. } => (Role::Controller, install.clone()),
        InstallCommand::Worker { install, .. } => (Role::Worker, install.clone()),
    };
    if install.root.is_none() {
        require_root(&format!("kaasd install {}", role.name()))?;
    }
    // The role's flags, checked as `kaasd <role>` checks them, so a service that cannot start is not installed.
    let token = match &command {
        InstallCommand::Controller { arguments, .. } => {
            crate::controller_cmd::config(arguments)?;
            None
        }
        InstallCommand::Worker { arguments, .. } => worker_token(arguments)?,
    };
    let cli = Cli::command();
    let role_command = cli
        .find_subcommand("install")
        .and_then(|install| install.find_subcommand(role.name()))
        .context("the command line has no `install` subcommand for this role")?;
    let role_matches = matches
        .subcommand_matches("install")
        .and_then(|install| install.subcommand_matches(role.name()))
        .context("`kaasd install` was not given a role")?;
    let mut environment = flags_as_environment(role_command, role_matches)?;

    let root = install.root.clone().unwrap_or_else(|| PathBuf::from("/"));
    let init = install.init.unwrap_or_else(default_init);
    let files = Files { root, role, init };
    let unit = files.unit();
    if !install.force {
        for existing in [&unit, &files.environment()] {
            if existing.exists() {
                bail!(
                    "{} exists: kaasd {} is already installed; pass --force to replace it, or run `kaasd uninstall` \
                     first",
                    existing.display(),
                    role.name()
                );
            }
        }
    }
    let binary = std::env::current_exe().context("cannot find the path of this kaasd binary")?;
    let binary = binary.to_str().context("the path of this kaasd binary is not UTF-8")?;
    if binary.chars().any(char::is_whitespace) {
        bail!("the path of this kaasd binary ({binary}) contains a space: move kaasd to, e.g., /usr/local/bin/kaasd");
    }
    if let Some(token) = token {
        write_file(&files.token(), format!("{token}\n").as_bytes(), 0o600)?;
        environment.push(("KAASD_TOKEN_FILE".to_string(), TOKEN_FILE.to_string()));
    }
    write_file(&files.environment(), render_environment(role, &environment).as_bytes(), 0o600)?;
    let template = match (init, role) {
        (InitSystem::Systemd, Role::Controller) => SYSTEMD_CONTROLLER,
        (InitSystem::Systemd, Role::Worker) => SYSTEMD_WORKER,
        (InitSystem::Openrc, Role::Controller) => OPENRC_CONTROLLER,
        (InitSystem::Openrc, Role::Worker) => OPENRC_WORKER,
    };
    let mode = if init == InitSystem::Openrc { 0o755 } else { 0o644 };
    write_file(&unit, template.replace(PACKAGED_BINARY, binary).as_bytes(), mode)?;
    println!("installed {} ({})", unit.display(), files.environment().display());

    let service = role.service();
    let starts = install.root.is_none() && !install.no_start;
    match running_init() {
        Some(running) if starts && running == init => {
            // Restart rather than start: with --force, a running service picks up the new files.
            match init {
                InitSystem::Systemd => {
                    run_tool("systemctl", &["daemon-reload"])?;
                    run_tool("systemctl", &["enable", &service])?;
                    run_tool("systemctl", &["restart", &service])?;
                }
                InitSystem::Openrc => {
                    run_tool("rc-update", &["add", &service, "default"])?;
                    run_tool("rc-service", &[&service, "restart"])?;
                }
            }
            println!("started {service}; `kaasd status` tells how it is doing");
        }
        _ => {
            let how = match init {
                InitSystem::Systemd => format!("systemctl daemon-reload && systemctl enable --now {service}"),
                InitSystem::Openrc => format!("rc-update add {service} default && rc-service {service} start"),
            };
            let why =
                if starts { format!("{} is not running on this machine", init.name()) } else { "as asked".into() };
            println!("not started ({why}); to start it: {how}");
        }
    }
    Ok(())
}

/// The worker's join token for the service: from --token or --token-file, checked. A machine that already joined
/// (its node certificate is in the data directory) needs none.
fn worker_token(arguments: &crate::cli::WorkerArgs) -> anyhow::Result<Option<String>> {
    let token = match (&arguments.token, &arguments.token_file) {
        (Some(token), _) => token.trim().to_string(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the token file {}", path.display()))?
            .trim()
            .to_string(),
        (None, None) => {
            if matches!(kaasd_worker::join::Identity::load(&arguments.data_dir), Ok(Some(_))) {
                return Ok(None);
            }
            bail!(
                "kaasd install worker needs a join token: pass --token-file FILE with a token from `kaasd token \
                 create` on the controller"
            );
        }
    };
    kaasd_tunnel::token::JoinToken::parse(&token)
        .map_err(|error| anyhow::anyhow!("the join token is not valid: {error}; make one with `kaasd token create`"))?;
    Ok(Some(token))
}

/// The flags given to `kaasd install <role>` (on the command line or as KAASD_* variables), as the KAASD_*
/// variables `kaasd <role>` reads. Defaults are left out, so a later kaasd with better defaults uses them.
fn flags_as_environment(command: &clap::Command, matches: &ArgMatches) -> anyhow::Result<Vec<(String, String)>> {
    // How to install (not flags of the role), and the token, which goes into its own file.
    const NOT_ROLE_FLAGS: &[&str] = &["init", "force", "no_start", "root", "token", "token_file", "help"];
    let mut environment = Vec::new();
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        if NOT_ROLE_FLAGS.contains(&id) {
            continue;
        }
        if !matches!(matches.value_source(id), Some(ValueSource::CommandLine | ValueSource::EnvVariable)) {
            continue;
        }
        let flag = arg.get_long().unwrap_or(id);
        let variable = arg
            .get_env()
            .and_then(OsStr::to_str)
            .with_context(|| format!("--{flag} has no KAASD_* variable, so the service cannot be given it"))?;
        let raw: Vec<&OsStr> = matches.get_raw(id).into_iter().flatten().collect();
        let [value] = raw.as_slice() else {
            bail!("--{flag} was given {} times; give it once", raw.len());
        };
        let mut value = value.to_str().with_context(|| format!("the value of --{flag} is not UTF-8"))?.to_string();
        if PATH_FLAGS.contains(&id) {
            value = std::path::absolute(&value)
                .with_context(|| format!("cannot make --{flag} {value} an absolute path"))?
                .display()
                .to_string();
        }
        // Single quotes mean the same to systemd's EnvironmentFile= and to the shell that OpenRC reads it with.
        if value.contains(['\'', '\n', '\r', '\\']) {
            bail!(
                "the value of --{flag} contains a quote, backslash or line break, which the service's environment \
                 file cannot hold"
            );
        }
        environment.push((variable.to_string(), value));
    }
    Ok(environment)
}

fn render_environment(role: Role, environment: &[(String, String)]) -> String {
    let mut text = format!(
        "# The flags of the kaasd-{name} service, as the KAASD_* variables `kaasd {name}` reads (see `kaasd {name} \
         --help`).\n# Written by `kaasd install {name}`; after editing, restart the service (kaasd stop; kaasd start).\n",
        name = role.name()
    );
    for (variable, value) in environment {
        text.push_str(&format!("{variable}='{value}'\n"));
    }
    text
}

/// Writes `path` whole with `mode` (made before any content is written, so a secret is never readable by others).
fn write_file(path: &Path, content: &[u8], mode: u32) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let temporary = path.with_extension("kaasd-new");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&temporary)
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .and_then(|()| file.write_all(content))
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    std::fs::rename(&temporary, path).with_context(|| format!("cannot write {}", path.display()))
}

fn run_tool(program: &str, arguments: &[&str]) -> anyhow::Result<()> {
    let output = Command::new(program)
        .args(arguments)
        .output()
        .with_context(|| format!("cannot run {program} {}", arguments.join(" ")))?;
    if !output.status.success() {
        bail!(
            "{program} {} failed ({}): {}",
            arguments.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// The roles installed here, with the init system each was installed for.
fn installed() -> Vec<(Role, InitSystem)> {
    let mut found = Vec::new();
    for role in Role::all() {
        for init in [InitSystem::Systemd, InitSystem::Openrc] {
            if (Files { root: PathBuf::from("/"), role, init }).unit().exists() {
                found.push((role, init));
            }
        }
    }
    found
}

/// The one installed service `arguments` mean.
fn chosen(arguments: &ServiceArgs) -> anyhow::Result<(Role, InitSystem)> {
    let installed = installed();
    let matching: Vec<_> =
        installed.iter().copied().filter(|(role, _)| arguments.role.is_none_or(|wanted| wanted == *role)).collect();
    match matching.as_slice() {
        [one] => Ok(*one),
        [] => match arguments.role {
            Some(role) => {
                bail!("kaasd {} is not installed here: run `kaasd install {}` first", role.name(), role.name())
            }
            None => {
                bail!("kaasd is not installed here: run `kaasd install controller` or `kaasd install worker` first")
            }
        },
        _ => bail!("both kaasd services are installed here: say which with --role controller or --role worker"),
    }
}

/// Runs `action` (start, stop) on the installed service through the running init system.
fn control(arguments: &ServiceArgs, action: &str) -> anyhow::Result<()> {
    require_root(&format!("kaasd {action}"))?;
    let (role, init) = chosen(arguments)?;
    let service = role.service();
    match running_init() {
        Some(running) if running == init => {
            match init {
                InitSystem::Systemd => run_tool("systemctl", &[action, &service])?,
                InitSystem::Openrc => run_tool("rc-service", &[&service, action])?,
            }
            println!("{action}: {service}");
            Ok(())
        }
        _ => bail!(
            "{service} is installed for {}, which is not running on this machine; run kaasd yourself: \
             set -a; . {}; set +a; kaasd {}",
            init.name(),
            environment_file(role),
            role.name()
        ),
    }
}

pub fn start(arguments: &ServiceArgs) -> anyhow::Result<()> {
    control(arguments, "start")
}

pub fn stop(arguments: &ServiceArgs) -> anyhow::Result<()> {
    control(arguments, "stop")
}

pub fn uninstall(arguments: &ServiceArgs) -> anyhow::Result<()> {
    require_root("kaasd uninstall")?;
    let (role, init) = chosen(arguments)?;
    let service = role.service();
    if running_init() == Some(init) {
        let result = match init {
            InitSystem::Systemd => run_tool("systemctl", &["disable", "--now", &service]),
            InitSystem::Openrc => {
                run_tool("rc-service", &[&service, "stop"]).and_then(|()| run_tool("rc-update", &["del", &service]))
            }
        };
        // A service that will not stop is reported; its files are removed all the same, as asked.
        if let Err(error) = result {
            eprintln!("warning: {error}");
        }
    }
    let files = Files { root: PathBuf::from("/"), role, init };
    let mut removed = vec![files.unit(), files.environment()];
    if role == Role::Worker {
        removed.push(files.token());
    }
    for path in &removed {
        match std::fs::remove_file(path) {
            Ok(()) => println!("removed {}", path.display()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => bail!("cannot remove {}: {error}", path.display()),
        }
    }
    // /etc/kaasd goes when nothing else is in it.
    let _ = std::fs::remove_dir("/etc/kaasd");
    if init == InitSystem::Systemd && running_init() == Some(init) {
        run_tool("systemctl", &["daemon-reload"])?;
    }
    println!("the data directory is kept; `kaasd reset` removes it and everything kaasd made on this machine");
    Ok(())
}

/// The data directory the installed service of `role` uses (KAASD_DATA_DIR in its environment file), if any.
fn installed_data_dir(role: Role) -> Option<PathBuf> {
    let text = std::fs::read_to_string(environment_file(role)).ok()?;
    text.lines().find_map(|line| {
        let value = line.strip_prefix("KAASD_DATA_DIR=")?;
        Some(PathBuf::from(value.trim().trim_matches('\'').trim_matches('"')))
    })
}

/// The data directory `--data-dir` names, else the installed service's, else the default; absolute.
pub fn data_dir(given: Option<&Path>, role: Option<Role>) -> anyhow::Result<PathBuf> {
    let roles: Vec<Role> = match role {
        Some(role) => vec![role],
        None => installed().into_iter().map(|(role, _)| role).collect(),
    };
    let path = given
        .map(Path::to_path_buf)
        .or_else(|| roles.into_iter().find_map(installed_data_dir))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    std::path::absolute(&path).with_context(|| format!("cannot make {} an absolute path", path.display()))
}

/// A `kaasd controller` or `kaasd worker` process running on this machine.
pub struct Running {
    pub pid: i32,
    pub role: Role,
    pub data_dir: PathBuf,
    /// Whether it runs a worker (`kaasd worker`, or a controller with --enable-worker), which owns this machine's
    /// pod network.
    pub runs_worker: bool,
}

/// The kaasd processes running here with data directory `data_dir` (read from /proc: their command line and
/// environment, as KAASD_DATA_DIR counts as much as --data-dir).
pub fn running(data_dir: &Path) -> Vec<Running> {
    running_anywhere().into_iter().filter(|process| same_path(&process.data_dir, data_dir)).collect()
}

/// Every `kaasd controller` and `kaasd worker` process running here, whatever its data directory.
pub fn running_anywhere() -> Vec<Running> {
    let own = std::process::id();
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return found };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<i32>().ok()) else { continue };
        if pid as u32 == own {
            continue;
        }
        let Ok(exe) = std::fs::read_link(entry.path().join("exe")) else { continue };
        if !exe.file_name().and_then(OsStr::to_str).is_some_and(|name| name.starts_with("kaasd")) {
            continue;
        }
        let Ok(command_line) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let words: Vec<String> =
            command_line.split(|byte| *byte == 0).map(|word| String::from_utf8_lossy(word).into_owned()).collect();
        let role = match words.get(1).map(String::as_str) {
            Some("controller") => Role::Controller,
            Some("worker") => Role::Worker,
            _ => continue,
        };
        let from_flag = words.iter().enumerate().find_map(|(index, word)| match word.strip_prefix("--data-dir") {
            Some("") => words.get(index + 1).cloned(),
            Some(rest) => rest.strip_prefix('=').map(str::to_string),
            None => None,
        });
        let environment = std::fs::read(entry.path().join("environ")).unwrap_or_default();
        let variable = |name: &str| {
            environment.split(|byte| *byte == 0).find_map(|pair| {
                let pair = String::from_utf8_lossy(pair);
                pair.strip_prefix(name).and_then(|rest| rest.strip_prefix('=')).map(str::to_string)
            })
        };
        let runs_worker = role == Role::Worker
            || words.iter().any(|word| word == "--enable-worker")
            || variable("KAASD_ENABLE_WORKER")
                .is_some_and(|value| !matches!(value.as_str(), "" | "0" | "false" | "no" | "off"));
        let theirs = from_flag.or_else(|| variable("KAASD_DATA_DIR")).unwrap_or_else(|| DEFAULT_DATA_DIR.to_string());
        // A relative data directory is relative to that process's working directory.
        let theirs = match std::fs::read_link(entry.path().join("cwd")) {
            Ok(cwd) => cwd.join(theirs),
            Err(_) => PathBuf::from(theirs),
        };
        found.push(Running { pid, role, data_dir: theirs, runs_worker });
    }
    found
}

fn same_path(left: &Path, right: &Path) -> bool {
    let canonical = |path: &Path| std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    canonical(left) == canonical(right)
}

pub async fn status(arguments: &StatusArgs) -> anyhow::Result<()> {
    let installed = installed();
    let data_dir = data_dir(arguments.data_dir.as_deref(), arguments.service.role)?;
    let processes = running(&data_dir);
    let role = arguments
        .service
        .role
        .or_else(|| processes.first().map(|process| process.role))
        .or_else(|| installed.first().map(|(role, _)| *role));
    let service = match role.and_then(|role| installed.iter().find(|(installed, _)| *installed == role)) {
        Some((role, init)) => {
            let files = Files { root: PathBuf::from("/"), role: *role, init: *init };
            format!("installed as {} service {} ({})", init.name(), role.service(), files.unit().display())
        }
        None => "not installed as a service".to_string(),
    };
    println!("role: {} ({service})", role.map_or("none", Role::name));
    println!("version: {}", crate::VERSION);
    println!("data directory: {}", data_dir.display());
    match processes.as_slice() {
        [] => println!("process: not running"),
        list => {
            for process in list {
                println!("process: pid {} (kaasd {})", process.pid, process.role.name());
            }
        }
    }
    let identity = kaasd_worker::join::Identity::load(&data_dir).ok().flatten();
    let admin = data_dir.join("pki").join("admin.conf");
    let client = if admin.exists() {
        admin_client(&admin).await.map(|client| (client, admin.display().to_string()))
    } else if let Some(identity) = &identity {
        identity
            .client()
            .await
            .map(|client| (client, format!("node certificate, {}", identity.servers.join(", "))))
            .map_err(anyhow::Error::from)
    } else {
        Err(anyhow::anyhow!("no credentials in the data directory (no controller ran here and no node joined)"))
    };
    let client = match client {
        Ok((client, through)) => match tokio::time::timeout(Duration::from_secs(5), client.apiserver_version()).await {
            Ok(Ok(version)) => {
                println!("api: reachable (Kubernetes {}, through {through})", version.git_version);
                Some(client)
            }
            Ok(Err(error)) => {
                println!("api: unreachable through {through}: {error}");
                None
            }
            Err(_) => {
                println!("api: unreachable through {through}: no answer within 5 s");
                None
            }
        },
        Err(error) => {
            println!("api: unknown: {}", kaasd_datastore::one_line(error.as_ref()));
            None
        }
    };
    match (&identity, &client) {
        (None, _) => println!("node: not joined"),
        (Some(identity), None) => println!("node: joined as {} (its state is unknown)", identity.node_name),
        (Some(identity), Some(client)) => {
            let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client.clone());
            match nodes.get_opt(&identity.node_name).await {
                Ok(Some(node)) => {
                    let ready = node
                        .status
                        .and_then(|status| status.conditions)
                        .and_then(|conditions| conditions.into_iter().find(|condition| condition.type_ == "Ready"))
                        .map_or("Unknown".to_string(), |condition| condition.status);
                    println!("node: joined as {} (Ready: {ready})", identity.node_name);
                }
                Ok(None) => println!("node: joined as {}, but the cluster has no such Node", identity.node_name),
                Err(error) => println!("node: joined as {} (cannot read its Node: {error})", identity.node_name),
            }
        }
    }
    let socket = kaasd_worker::containerd::ContainerdPaths::new(&data_dir).socket();
    let containerd = match kaasd_worker::cri::Cri::connect(&socket) {
        Ok(cri) if socket.exists() => tokio::time::timeout(Duration::from_secs(3), cri.version()).await.ok(),
        _ => None,
    };
    match containerd {
        Some(Ok(version)) => println!("containerd: running ({version}) at {}", socket.display()),
        Some(Err(error)) => println!("containerd: not answering at {}: {}", socket.display(), error.message()),
        None => println!("containerd: not running ({} does not answer)", socket.display()),
    }
    if processes.is_empty() {
        bail!("kaasd is not running with data directory {}", data_dir.display());
    }
    Ok(())
}

async fn admin_client(kubeconfig: &Path) -> anyhow::Result<kube::Client> {
    let config = kube::config::Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("cannot read {}", kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(config, &kube::config::KubeConfigOptions::default())
        .await
        .with_context(|| format!("cannot use {}", kubeconfig.display()))?;
    kube::Client::try_from(config).context("cannot make an API client")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every flag of `kaasd controller` and `kaasd worker` must have a KAASD_* variable: it is how the service
    /// is given flags.
    #[test]
    fn every_role_flag_has_a_variable() {
        let cli = Cli::command();
        for role in ["controller", "worker"] {
            let command = cli.find_subcommand(role).expect("the role exists");
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" {
                    continue;
                }
                let variable = arg.get_env().and_then(OsStr::to_str);
                assert!(variable.is_some_and(|name| name.starts_with("KAASD_")), "kaasd {role} --{id} has no KAASD_*");
            }
        }
    }

    #[test]
    fn given_flags_become_variables_and_defaults_stay_out() {
        let line = ["kaasd", "install", "controller", "--api-port", "7443", "--enable-worker", "--data-dir", "rel"];
        let matches = Cli::command().try_get_matches_from(line).expect("valid");
        let cli = Cli::command();
        let command = cli.find_subcommand("install").and_then(|c| c.find_subcommand("controller")).unwrap();
        let role = matches.subcommand_matches("install").and_then(|m| m.subcommand_matches("controller")).unwrap();
        let environment = flags_as_environment(command, role).expect("serializable");
        let get = |name: &str| environment.iter().find(|(variable, _)| variable == name).map(|(_, v)| v.clone());
        assert_eq!(get("KAASD_API_PORT").as_deref(), Some("7443"));
        assert_eq!(get("KAASD_ENABLE_WORKER").as_deref(), Some("true"));
        let data_dir = get("KAASD_DATA_DIR").expect("given");
        assert!(data_dir.starts_with('/') && data_dir.ends_with("/rel"), "absolute: {data_dir}");
        if std::env::var_os("KAASD_BIND_ADDRESS").is_none() {
            assert_eq!(get("KAASD_BIND_ADDRESS"), None, "defaults are not written");
        }
    }

    #[test]
    fn quotes_are_refused() {
        let line = ["kaasd", "install", "controller", "--datastore", "postgres://u:it's@h/db"];
        let matches = Cli::command().try_get_matches_from(line).expect("valid");
        let cli = Cli::command();
        let command = cli.find_subcommand("install").and_then(|c| c.find_subcommand("controller")).unwrap();
        let role = matches.subcommand_matches("install").and_then(|m| m.subcommand_matches("controller")).unwrap();
        assert!(flags_as_environment(command, role).is_err());
    }
}
