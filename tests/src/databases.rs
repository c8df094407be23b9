//! Fresh databases on the local PostgreSQL and MariaDB servers, for tests that share one between processes.

use std::process::Command;

/// A fresh database on a local server, dropped at the end; `None` (said loudly) if the server is not running.
pub struct ServerDatabase {
    pub url: String,
    drop_command: Vec<String>,
}

impl ServerDatabase {
    /// `kind` is "postgres" or "mariadb".
    pub fn create(kind: &str) -> Option<Self> {
        // Unique per call: one test binary may hold several tests that each want a database.
        static CREATED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let number = CREATED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("kaasd_e2e_{}_{number}_{kind}", std::process::id());
        let (create, url, drop_command): (Vec<String>, String, Vec<String>) = match kind {
            "postgres" => (
                psql(&format!("CREATE DATABASE {name}")),
                format!("postgres://postgres@127.0.0.1:5432/{name}"),
                psql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")),
            ),
            _ => (
                mysql(&format!("CREATE DATABASE {name}")),
                format!("mysql://root@127.0.0.1:3306/{name}"),
                mysql(&format!("DROP DATABASE IF EXISTS {name}")),
            ),
        };
        let created = Command::new(&create[0]).args(&create[1..]).output();
        match created {
            Ok(output) if output.status.success() => Some(Self { url, drop_command }),
            other => {
                let message = format!("{kind} server is not usable ({other:?}): its multi-process test did NOT run");
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!("{message}");
                }
                eprintln!("\n!!!!!!!! {message} !!!!!!!!\n");
                None
            }
        }
    }
}

impl ServerDatabase {
    /// The URL of a database named `kaasd_e2e_<pid>_<tag>` that does not exist yet, on a server that runs: for
    /// tests of kaasd creating its own database. Dropped at the end if it was made. `None` as for
    /// [`ServerDatabase::create`].
    pub fn not_yet_created(kind: &str, tag: &str) -> Option<Self> {
        let created = ServerDatabase::create(kind)?;
        let name = format!("kaasd_e2e_{}_{tag}", std::process::id());
        let (url, drop_command) = match kind {
            "postgres" => (
                format!("postgres://postgres@127.0.0.1:5432/{name}"),
                psql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")),
            ),
            _ => (format!("mysql://root@127.0.0.1:3306/{name}"), mysql(&format!("DROP DATABASE IF EXISTS {name}"))),
        };
        // The server answered; this name is not in use yet.
        let _ = Command::new(&drop_command[0]).args(&drop_command[1..]).output();
        drop(created);
        Some(Self { url, drop_command })
    }

    /// Whether the server has this database.
    pub fn exists(&self) -> bool {
        let name = self.url.rsplit('/').next().unwrap_or_default();
        let command = if self.url.starts_with("postgres") {
            psql(&format!("SELECT 1 FROM pg_database WHERE datname = '{name}'"))
        } else {
            mysql(&format!("SELECT 1 FROM information_schema.schemata WHERE schema_name = '{name}'"))
        };
        Command::new(&command[0])
            .args(&command[1..])
            .arg(if self.url.starts_with("postgres") { "-tA" } else { "-N" })
            .output()
            .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "1")
    }
}

impl Drop for ServerDatabase {
    fn drop(&mut self) {
        let _ = Command::new(&self.drop_command[0]).args(&self.drop_command[1..]).output();
    }
}

fn psql(statement: &str) -> Vec<String> {
    ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-qc", statement]
        .map(String::from)
        .to_vec()
}

fn mysql(statement: &str) -> Vec<String> {
    ["mysql", "-h", "127.0.0.1", "-u", "root", "-e", statement].map(String::from).to_vec()
}
