use std::sync::Arc;

use bytes::Bytes;

/// Everything the store can fail with. Callers branch on the variants: `Compacted` is the API server's
/// 410 Gone, `FutureRevision` a retry, the rest are faults or bad requests.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("required revision {requested} has been compacted (compacted up to {compact_revision})")]
    Compacted { requested: i64, compact_revision: i64 },
    #[error("required revision {requested} is a future revision (current is {current})")]
    FutureRevision { requested: i64, current: i64 },
    #[error("lease {0} not found")]
    LeaseNotFound(i64),
    #[error("lease {0} already exists")]
    LeaseExists(i64),
    #[error("key {} is given more than once in a transaction", String::from_utf8_lossy(.0))]
    DuplicateKey(Bytes),
    #[error("key {} not found: ignore_value and ignore_lease need an existing key", String::from_utf8_lossy(.0))]
    KeyNotFound(Bytes),
    #[error("invalid request: {0}")]
    InvalidArgument(String),
    #[error(
        "unsupported datastore url {0:?}: use sqlite://PATH, postgres://USER@HOST:PORT/DB or mysql://USER@HOST:PORT/DB"
    )]
    UnsupportedUrl(String),
    #[error(
        "datastore {location}: the database {name:?} does not exist and cannot be created ({reason}); create it \
         (CREATE DATABASE {name}) and grant this user all privileges on it, or let the user create databases"
    )]
    CreateDatabase { location: String, name: String, reason: String },
    #[error("cannot open datastore {location}")]
    Open {
        location: String,
        #[source]
        source: Arc<sqlx::Error>,
    },
    #[error(
        "datastore {location} is still in use by another process after waiting {} s; stop that process first or \
         point --datastore elsewhere",
        waited.as_secs()
    )]
    InUse { location: String, waited: std::time::Duration },
    #[error(
        "datastore {location} has schema version {found}, newer than the {supported} this kaasd understands; \
         upgrade kaasd or point it at another database"
    )]
    SchemaTooNew { location: String, found: i64, supported: i64 },
    #[error("datastore {location}: {context}")]
    Database {
        location: String,
        context: &'static str,
        #[source]
        source: Arc<sqlx::Error>,
    },
    #[error("cannot create or lock the datastore file {path}")]
    Io {
        path: String,
        #[source]
        source: Arc<std::io::Error>,
    },
    #[error("the store is shut down")]
    Closed,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error and its causes on one line, joined with ": ". A cause whose text the message before it already ends
/// with is left out, because some libraries (sqlx among them) repeat their source in their own message.
pub fn one_line(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !line.ends_with(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("error communicating with database: connection refused")]
    struct Repeats(#[source] std::io::Error);

    #[test]
    fn repeated_causes_are_printed_once() {
        let inner = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let error = Repeats(inner);
        assert_eq!(one_line(&error), "error communicating with database: connection refused");
    }
}
