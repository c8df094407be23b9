//! The SQL side: which database a URL names, its dialect, the schema, and the statements the store runs.
//!
//! Every backend goes through sqlx's `Any` driver with the same logical schema, so the store has one code path;
//! what differs per dialect (column types, placeholders, locking, upserts) is decided here and nowhere else.

use std::path::PathBuf;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyConnection, AnyPool, ConnectOptions, Connection, Executor, Row};

use crate::error::{Error, Result};

/// The schema version this build writes and understands. A database with a higher one is refused.
pub(crate) const SCHEMA_VERSION: i64 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
    MySql,
}

/// How hard SQLite syncs a commit. PostgreSQL and MySQL follow their own server settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// fsync on every commit: an acknowledged write survives power loss.
    #[default]
    Full,
    /// Survives a crash of kaasd, not necessarily a power loss; faster.
    Normal,
}

/// A parsed `--datastore` URL.
#[derive(Debug, Clone)]
pub(crate) struct Location {
    pub dialect: Dialect,
    /// What sqlx connects to.
    connect_url: String,
    /// The SQLite database file, for locking and sizes.
    pub sqlite_path: Option<PathBuf>,
    /// The URL without its password, for messages.
    pub display: String,
}

impl Location {
    pub fn parse(url: &str) -> Result<Self> {
        let unsupported = || Error::UnsupportedUrl(url.to_string());
        let (scheme, rest) = url.split_once("://").ok_or_else(unsupported)?;
        match scheme {
            "sqlite" => {
                let path = rest.split('?').next().unwrap_or_default();
                if path.is_empty() {
                    return Err(unsupported());
                }
                Ok(Self {
                    dialect: Dialect::Sqlite,
                    connect_url: format!("sqlite://{path}?mode=rwc"),
                    sqlite_path: Some(PathBuf::from(path)),
                    display: format!("sqlite://{path}"),
                })
            }
            "postgres" | "postgresql" | "mysql" | "mariadb" => {
                let mut parsed = url::Url::parse(url).map_err(|_| unsupported())?;
                let dialect = if scheme.starts_with("postgres") { Dialect::Postgres } else { Dialect::MySql };
                if scheme == "mariadb" {
                    parsed.set_scheme("mysql").map_err(|_| unsupported())?;
                }
                let connect_url = parsed.to_string();
                if parsed.password().is_some() {
                    let _ = parsed.set_password(Some("***"));
                }
                Ok(Self { dialect, connect_url, sqlite_path: None, display: parsed.to_string() })
            }
            _ => Err(unsupported()),
        }
    }

    fn open_error(&self, source: sqlx::Error) -> Error {
        Error::Open { location: self.display.clone(), source: source.into() }
    }

    pub fn db_error(&self, context: &'static str) -> impl FnOnce(sqlx::Error) -> Error + '_ {
        move |source| Error::Database { location: self.display.clone(), context, source: source.into() }
    }

    /// Settings every connection needs, run once per new connection.
    fn session_setup(&self, sync: SyncMode) -> Vec<String> {
        match self.dialect {
            Dialect::Sqlite => vec![
                "PRAGMA journal_mode = WAL".into(),
                format!("PRAGMA synchronous = {}", if sync == SyncMode::Full { "FULL" } else { "NORMAL" }),
                "PRAGMA busy_timeout = 10000".into(),
                "PRAGMA temp_store = MEMORY".into(),
            ],
            Dialect::Postgres => vec![],
            // MariaDB 11.8+ otherwise fails row-lock reads under snapshot isolation (kine#721).
            Dialect::MySql => vec!["SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED".into()],
        }
    }

    fn connect_options(&self) -> Result<AnyConnectOptions> {
        let options: AnyConnectOptions = self.connect_url.parse().map_err(|e| self.open_error(e))?;
        Ok(options.disable_statement_logging())
    }

    /// One connection of its own, for the writer and for listeners. A PostgreSQL or MySQL database that does not
    /// exist yet is created first (one server can hold many clusters, each in its own database, e.g.
    /// `postgres://host/kaasd_<cluster>`), when the user may create databases.
    pub async fn connect(&self, sync: SyncMode) -> Result<AnyConnection> {
        sqlx::any::install_default_drivers();
        let mut conn = match AnyConnection::connect_with(&self.connect_options()?).await {
            Err(error) if self.is_missing_database(&error) => {
                self.create_database().await?;
                AnyConnection::connect_with(&self.connect_options()?).await.map_err(|e| self.open_error(e))?
            }
            connected => connected.map_err(|e| self.open_error(e))?,
        };
        for statement in self.session_setup(sync) {
            conn.execute(statement.as_str()).await.map_err(|e| self.open_error(e))?;
        }
        Ok(conn)
    }

    fn is_missing_database(&self, error: &sqlx::Error) -> bool {
        let Some(error) = error.as_database_error() else { return false };
        let code = error.code().unwrap_or_default();
        match self.dialect {
            Dialect::Postgres => code == "3D000",
            // ER_BAD_DB_ERROR; MariaDB reports it as SQLSTATE 42000, so match the server's own error number.
            Dialect::MySql => code == "1049" || error.message().starts_with("Unknown database"),
            Dialect::Sqlite => false,
        }
    }

    /// Creates the database the URL names, connected to the same server without it. Several processes may race
    /// here: a database that appears meanwhile is fine.
    async fn create_database(&self) -> Result<()> {
        let mut server = url::Url::parse(&self.connect_url).map_err(|_| Error::UnsupportedUrl(self.display.clone()))?;
        let name = server.path().trim_start_matches('/').to_string();
        let cannot =
            |reason: String| Error::CreateDatabase { location: self.display.clone(), name: name.clone(), reason };
        if name.is_empty() || name.len() > 63 || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(cannot("only names of letters, digits and _ (at most 63) are created automatically".into()));
        }
        let statement = match self.dialect {
            Dialect::Postgres => {
                // Every PostgreSQL server has this database; connecting to it needs no privilege beyond login.
                server.set_path("/postgres");
                format!("CREATE DATABASE \"{name}\"")
            }
            _ => {
                server.set_path("/");
                format!("CREATE DATABASE IF NOT EXISTS `{name}`")
            }
        };
        let options: AnyConnectOptions = server.as_str().parse().map_err(|e| self.open_error(e))?;
        let mut conn = AnyConnection::connect_with(&options.disable_statement_logging())
            .await
            .map_err(|error| cannot(error.to_string()))?;
        let created = conn.execute(statement.as_str()).await;
        let _ = conn.close().await;
        match created {
            Ok(_) => {
                tracing::info!(store.location = %self.display, "created the database");
                Ok(())
            }
            // duplicate_database, or the unique index of pg_database when two creates race.
            Err(sqlx::Error::Database(error)) if matches!(error.code().as_deref(), Some("42P04") | Some("23505")) => {
                Ok(())
            }
            Err(error) => Err(cannot(error.to_string())),
        }
    }

    /// A small pool for reads that memory cannot answer (old revisions, catch-up of watches and peers).
    pub async fn pool(&self, sync: SyncMode, size: u32) -> Result<AnyPool> {
        sqlx::any::install_default_drivers();
        let setup = self.session_setup(sync);
        AnyPoolOptions::new()
            .max_connections(size)
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _| {
                let setup = setup.clone();
                Box::pin(async move {
                    for statement in setup {
                        conn.execute(statement.as_str()).await?;
                    }
                    Ok(())
                })
            })
            .connect_with(self.connect_options()?)
            .await
            .map_err(|e| self.open_error(e))
    }
}

/// Creates the tables if missing and checks the schema version. Safe to run from several processes at once.
pub(crate) async fn migrate(conn: &mut AnyConnection, location: &Location) -> Result<()> {
    let sql = Sql::new(location.dialect);
    if location.dialect == Dialect::Sqlite {
        // Must precede the first table: lets compaction give pages back without a full VACUUM.
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL").await.map_err(location.db_error("setting auto_vacuum"))?;
    }
    for statement in sql.create_tables() {
        // Two processes creating the same PostgreSQL table at once can collide on the catalog; the loser retries.
        if let Err(first) = conn.execute(statement.as_str()).await {
            tokio::time::sleep(Duration::from_millis(200)).await;
            conn.execute(statement.as_str()).await.map_err(|_| location.db_error("creating the schema")(first))?;
        }
    }
    let found: i64 = sqlx::query(&sql.text("SELECT number FROM kaasd_meta WHERE name = 'schema'"))
        .fetch_one(&mut *conn)
        .await
        .map_err(location.db_error("reading the schema version"))?
        .try_get(0)
        .map_err(location.db_error("reading the schema version"))?;
    if found > SCHEMA_VERSION {
        return Err(Error::SchemaTooNew { location: location.display.clone(), found, supported: SCHEMA_VERSION });
    }
    Ok(())
}

/// Statement texts for one dialect. Statements are written with `?` placeholders and rewritten for PostgreSQL.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sql {
    pub dialect: Dialect,
}

impl Sql {
    pub fn new(dialect: Dialect) -> Self {
        Self { dialect }
    }

    /// Rewrites `?` placeholders to `$1, $2, …` for PostgreSQL. Statements here never contain a literal `?`.
    pub fn text(&self, statement: &str) -> String {
        if self.dialect != Dialect::Postgres {
            return statement.to_string();
        }
        let mut out = String::with_capacity(statement.len() + 16);
        let mut n = 0;
        for c in statement.chars() {
            if c == '?' {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            } else {
                out.push(c);
            }
        }
        out
    }

    fn create_tables(&self) -> Vec<String> {
        let (blob, big_blob) = match self.dialect {
            Dialect::Sqlite => ("BLOB", "BLOB"),
            Dialect::Postgres => ("BYTEA", "BYTEA"),
            Dialect::MySql => ("BLOB", "LONGBLOB"),
        };
        let insert_ignore = match self.dialect {
            Dialect::Sqlite => "INSERT OR IGNORE INTO",
            Dialect::Postgres => "INSERT INTO",
            Dialect::MySql => "INSERT IGNORE INTO",
        };
        let on_conflict = if self.dialect == Dialect::Postgres { " ON CONFLICT DO NOTHING" } else { "" };
        vec![
            // The history: one row per change, keyed by (revision, position in its transaction). Live values are
            // the newest row of each key; nothing else is stored twice.
            format!(
                "CREATE TABLE IF NOT EXISTS kaasd_log (\
                 rev BIGINT NOT NULL, sub BIGINT NOT NULL, kv_key {blob} NOT NULL, deleted BIGINT NOT NULL, \
                 create_rev BIGINT NOT NULL, prev_rev BIGINT NOT NULL, version BIGINT NOT NULL, \
                 lease BIGINT NOT NULL, kv_value {big_blob} NOT NULL, PRIMARY KEY (rev, sub))"
            ),
            "CREATE TABLE IF NOT EXISTS kaasd_meta (name VARCHAR(64) NOT NULL PRIMARY KEY, number BIGINT NOT NULL)"
                .to_string(),
            "CREATE TABLE IF NOT EXISTS kaasd_lease (id BIGINT NOT NULL PRIMARY KEY, ttl BIGINT NOT NULL, \
             expires_at_ms BIGINT NOT NULL)"
                .to_string(),
            "CREATE TABLE IF NOT EXISTS kaasd_leader (id BIGINT NOT NULL PRIMARY KEY, holder VARCHAR(64) NOT NULL, \
             expires_at_ms BIGINT NOT NULL)"
                .to_string(),
            format!(
                "{insert_ignore} kaasd_meta (name, number) VALUES ('rev', 0), ('compact_rev', 0), \
                 ('schema', {SCHEMA_VERSION}){on_conflict}"
            ),
            format!("{insert_ignore} kaasd_leader (id, holder, expires_at_ms) VALUES (1, '', 0){on_conflict}"),
        ]
    }

    /// Opens the write transaction. SQLite takes its write lock at once, so the revision read next is final.
    pub fn begin(&self) -> &'static str {
        match self.dialect {
            Dialect::Sqlite => "BEGIN IMMEDIATE",
            Dialect::Postgres | Dialect::MySql => "BEGIN",
        }
    }

    /// Reads (and on shared databases locks) the revision counters. The row lock is what orders writers of
    /// several processes: commit order is revision order, and a rollback leaves no gap.
    pub fn lock_revisions(&self) -> String {
        match self.dialect {
            Dialect::Sqlite => "SELECT name, number FROM kaasd_meta WHERE name IN ('rev', 'compact_rev')".into(),
            _ => "SELECT name, number FROM kaasd_meta WHERE name IN ('rev', 'compact_rev') FOR UPDATE".into(),
        }
    }

    pub fn read_revisions(&self) -> &'static str {
        "SELECT name, number FROM kaasd_meta WHERE name IN ('rev', 'compact_rev')"
    }

    pub fn set_meta(&self) -> String {
        self.text("UPDATE kaasd_meta SET number = ? WHERE name = ?")
    }

    pub const LOG_COLUMNS: &'static str = "rev, sub, kv_key, deleted, create_rev, prev_rev, version, lease, kv_value";

    /// A multi-row insert of `rows` log rows.
    pub fn insert_log(&self, rows: usize) -> String {
        let one = "(?, ?, ?, ?, ?, ?, ?, ?, ?)";
        let values = vec![one; rows].join(", ");
        self.text(&format!("INSERT INTO kaasd_log ({}) VALUES {values}", Self::LOG_COLUMNS))
    }

    /// Log rows after a revision, in order, for catching up with other processes, for watches, and for building
    /// the index at start.
    pub fn log_after(&self) -> String {
        self.text(&format!(
            "SELECT {} FROM kaasd_log WHERE rev > ? AND rev <= ? ORDER BY rev, sub LIMIT ?",
            Self::LOG_COLUMNS
        ))
    }

    /// Log rows of some revisions (for old values of keys).
    pub fn log_at_revisions(&self, count: usize) -> String {
        let marks = vec!["?"; count].join(", ");
        self.text(&format!("SELECT {} FROM kaasd_log WHERE rev IN ({marks})", Self::LOG_COLUMNS))
    }

    /// Deletes the given (rev, sub) rows; compaction has decided nobody can read them any more.
    pub fn delete_log_rows(&self, rows: usize) -> String {
        let pairs = vec!["(?, ?)"; rows].join(", ");
        self.text(&format!("DELETE FROM kaasd_log WHERE (rev, sub) IN ({pairs})"))
    }

    pub fn insert_lease(&self) -> String {
        self.text("INSERT INTO kaasd_lease (id, ttl, expires_at_ms) VALUES (?, ?, ?)")
    }

    pub fn renew_lease(&self) -> String {
        self.text("UPDATE kaasd_lease SET expires_at_ms = ? WHERE id = ?")
    }

    pub fn delete_lease(&self) -> String {
        self.text("DELETE FROM kaasd_lease WHERE id = ?")
    }

    pub fn get_lease(&self) -> String {
        self.text("SELECT id, ttl, expires_at_ms FROM kaasd_lease WHERE id = ?")
    }

    pub fn leases_in(&self, count: usize) -> String {
        let marks = vec!["?"; count].join(", ");
        self.text(&format!("SELECT id, ttl FROM kaasd_lease WHERE id IN ({marks})"))
    }

    pub fn list_leases(&self) -> &'static str {
        "SELECT id FROM kaasd_lease ORDER BY id"
    }

    pub fn expired_leases(&self) -> String {
        self.text("SELECT id FROM kaasd_lease WHERE expires_at_ms <= ? ORDER BY expires_at_ms LIMIT 1000")
    }

    /// Takes or keeps leadership: succeeds when the row is ours or its holder let it lapse.
    pub fn claim_leader(&self) -> String {
        self.text(
            "UPDATE kaasd_leader SET holder = ?, expires_at_ms = ? WHERE id = 1 AND (holder = ? OR expires_at_ms < ?)",
        )
    }

    pub fn notify(&self) -> Option<&'static str> {
        (self.dialect == Dialect::Postgres).then_some("SELECT pg_notify('kaasd_log', $1)")
    }

    pub fn db_size(&self) -> &'static str {
        match self.dialect {
            Dialect::Sqlite => {
                "SELECT (page_count - freelist_count) * page_size FROM pragma_page_count(), \
                 pragma_freelist_count(), pragma_page_size()"
            }
            Dialect::Postgres => {
                "SELECT CAST(pg_total_relation_size('kaasd_log') + pg_total_relation_size('kaasd_meta') \
                 + pg_total_relation_size('kaasd_lease') AS BIGINT)"
            }
            Dialect::MySql => {
                "SELECT CAST(COALESCE(SUM(data_length + index_length), 0) AS SIGNED) FROM information_schema.tables \
                 WHERE table_schema = DATABASE() AND table_name LIKE 'kaasd\\_%'"
            }
        }
    }
}

/// Splits `n` rows into chunks whose sizes are powers of two up to `max`, so a handful of distinct statements
/// (each prepared once and cached) serve every batch size.
pub(crate) fn chunk_sizes(mut n: usize, max: usize) -> Vec<usize> {
    let mut sizes = Vec::new();
    while n > 0 {
        let size = if n >= max { max } else { 1 << (usize::BITS - 1 - n.leading_zeros()) };
        sizes.push(size);
        n -= size;
    }
    sizes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_placeholders_are_numbered() {
        let sql = Sql::new(Dialect::Postgres);
        assert_eq!(sql.text("a = ? AND b = ?"), "a = $1 AND b = $2");
        assert_eq!(Sql::new(Dialect::MySql).text("a = ?"), "a = ?");
    }

    #[test]
    fn chunks_are_powers_of_two() {
        assert_eq!(chunk_sizes(0, 256), Vec::<usize>::new());
        assert_eq!(chunk_sizes(13, 256), vec![8, 4, 1]);
        assert_eq!(chunk_sizes(600, 256), vec![256, 256, 64, 16, 8]);
        assert_eq!(chunk_sizes(600, 256).iter().sum::<usize>(), 600);
    }

    #[test]
    fn urls_pick_a_dialect_and_hide_passwords() {
        let sqlite = Location::parse("sqlite:///var/lib/kaasd/db/state.db").unwrap();
        assert_eq!(sqlite.dialect, Dialect::Sqlite);
        assert_eq!(sqlite.sqlite_path.unwrap(), PathBuf::from("/var/lib/kaasd/db/state.db"));
        let pg = Location::parse("postgres://kaasd:secret@db:5432/kaasd").unwrap();
        assert_eq!(pg.dialect, Dialect::Postgres);
        assert!(!pg.display.contains("secret"));
        assert_eq!(Location::parse("mariadb://root@127.0.0.1:3306/test").unwrap().dialect, Dialect::MySql);
        assert!(matches!(Location::parse("etcd://x"), Err(Error::UnsupportedUrl(_))));
        assert!(matches!(Location::parse("/tmp/db"), Err(Error::UnsupportedUrl(_))));
    }
}
