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
        let name = format!("kaasd_e2e_{}_{kind}", std::process::id());
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
