//! Real databases for the store's integration tests: a fresh SQLite file, and a fresh database on the local
//! PostgreSQL (127.0.0.1:5432, user postgres) and MariaDB/MySQL (127.0.0.1:3306, root) servers.
//!
//! A server that is not running is reported loudly; under CI (`CI=true`) it fails the test instead.

#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};

use kaasd_datastore::{Store, StoreConfig};
use sqlx::{AnyConnection, Connection, Executor};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    MySql,
}

pub const ALL: [Backend; 3] = [Backend::Sqlite, Backend::Postgres, Backend::MySql];
pub const SHARED: [Backend; 2] = [Backend::Postgres, Backend::MySql];

const POSTGRES_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const MYSQL_ADMIN: &str = "mysql://root@127.0.0.1:3306/mysql";

/// A database that exists for one test. SQLite files go with the temp dir; server databases are dropped.
pub struct TestDatabase {
    pub backend: Backend,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    server_db: Option<String>,
}

impl TestDatabase {
    /// A new empty database, or `None` (after saying so loudly) if its server is not running outside CI.
    pub async fn create(backend: Backend) -> Option<Self> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!("kaasd_test_{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}/db/state.db", dir.path().display());
                Some(Self { backend, url, _dir: Some(dir), server_db: None })
            }
            Backend::Postgres | Backend::MySql => {
                let (admin, base) = if backend == Backend::Postgres {
                    (POSTGRES_ADMIN, "postgres://postgres@127.0.0.1:5432")
                } else {
                    (MYSQL_ADMIN, "mysql://root@127.0.0.1:3306")
                };
                sqlx::any::install_default_drivers();
                let mut conn = match AnyConnection::connect(admin).await {
                    Ok(conn) => conn,
                    Err(error) => {
                        missing_server(backend, &error.to_string());
                        return None;
                    }
                };
                conn.execute(format!("CREATE DATABASE {name}").as_str()).await.expect("create test database");
                Some(Self { backend, url: format!("{base}/{name}"), _dir: None, server_db: Some(name) })
            }
        }
    }

    pub async fn open(&self) -> Store {
        Store::open(self.config()).await.unwrap_or_else(|e| panic!("open {}: {e}", self.url))
    }

    pub fn config(&self) -> StoreConfig {
        StoreConfig::new(&self.url)
    }

    /// Runs one SQL statement on the test database directly (to tamper with it in fault tests).
    pub async fn execute(&self, statement: &str) {
        let url = match self.backend {
            Backend::Sqlite => format!("{}?mode=rwc", self.url),
            _ => self.url.clone(),
        };
        let mut conn = AnyConnection::connect(&url).await.expect("connect to test database");
        conn.execute(statement).await.expect("run statement");
    }

    pub async fn drop_database(self) {
        if let Some(name) = &self.server_db {
            let admin = if self.backend == Backend::Postgres { POSTGRES_ADMIN } else { MYSQL_ADMIN };
            if let Ok(mut conn) = AnyConnection::connect(admin).await {
                let force = if self.backend == Backend::Postgres { " WITH (FORCE)" } else { "" };
                let _ = conn.execute(format!("DROP DATABASE IF EXISTS {name}{force}").as_str()).await;
            }
        }
    }
}

fn missing_server(backend: Backend, error: &str) {
    let message = format!("{backend:?} server is not reachable ({error}): its datastore tests did NOT run");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{message}");
    }
    eprintln!("\n!!!!!!!! {message} !!!!!!!!\n");
}
