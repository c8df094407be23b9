//! kaasd's datastore: etcd's data model (one global, gapless revision; per-key create/mod revision, version and
//! lease; tombstones; binary keys) on SQL — embedded SQLite, or PostgreSQL/MySQL shared by several processes.
//!
//! SQL holds the durable log; memory holds the key index, live values and recent events. One writer task per
//! process group-commits every queued request. Watches are fed from memory and never poll SQL per watcher.
//! This crate knows nothing of HTTP or Kubernetes.

mod backend;
mod background;
mod batch;
mod error;
pub mod etcd;
mod index;
mod store;
mod types;
mod watch;
mod writer;

pub use backend::SyncMode;
pub use error::{one_line, Error, Result};
pub use store::{Store, StoreConfig};
pub use types::*;
pub use watch::Watcher;
