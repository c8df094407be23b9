//! `kaasd datastore serve`: the datastore alone, serving etcd's v3 API.

use std::io::Write;

use anyhow::Context;
use kaasd_datastore::etcd::{EtcdServer, ServeOptions, TlsFiles};
use kaasd_datastore::{Store, StoreConfig, SyncMode};
use tokio::net::TcpListener;

use crate::cli::{DatastoreServeArgs, Sync};
use crate::signal::ShutdownSignals;

pub async fn serve(arguments: DatastoreServeArgs) -> anyhow::Result<()> {
    let signals = ShutdownSignals::install()?;
    let listener =
        TcpListener::bind(&arguments.listen).await.with_context(|| format!("cannot listen on {}", arguments.listen))?;
    let mut config = StoreConfig::new(arguments.datastore.clone());
    config.sync = match arguments.sync {
        Sync::Full => SyncMode::Full,
        Sync::Normal => SyncMode::Normal,
    };
    // The store's errors name the datastore (without its password) and the cause.
    let store = Store::open(config).await?;
    let options = ServeOptions {
        tls: tls_files(&arguments),
        progress_notify_interval: arguments.progress_notify_interval,
        ..ServeOptions::default()
    };
    let server = match EtcdServer::new(store.clone(), listener, options) {
        Ok(server) => server,
        Err(error) => {
            store.close().await;
            return Err(error).context("cannot serve the etcd api");
        }
    };
    let address = server.local_address().context("cannot serve the etcd api")?;
    announce(&format!("kaasd datastore serving etcd v3 on {address} ({})", without_password(&arguments.datastore)))?;
    tracing::info!(%address, "serving etcd v3");
    let served = server.run(signals.shutdown_requested()).await;
    tracing::info!("draining: closing the datastore");
    store.close().await;
    served.context("the etcd api failed")?;
    tracing::info!("stopped");
    Ok(())
}

fn tls_files(arguments: &DatastoreServeArgs) -> Option<TlsFiles> {
    let (cert_file, key_file) = (arguments.cert_file.clone()?, arguments.key_file.clone()?);
    Some(TlsFiles { cert_file, key_file, trusted_ca_file: arguments.trusted_ca_file.clone() })
}

/// Prints the one stdout line scripts and tests wait for.
fn announce(line: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}").and_then(|()| stdout.flush()).context("cannot write to stdout")
}

/// The datastore URL as it may be shown: a password is replaced by `***`.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let Some((credentials, host)) = authority.rsplit_once('@') else {
        return url.to_string();
    };
    match credentials.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}{path}"),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(without_password("postgres://kaasd:secret@db:5432/kaasd"), "postgres://kaasd:***@db:5432/kaasd");
        assert_eq!(without_password("mysql://root@db/kaasd"), "mysql://root@db/kaasd");
        assert_eq!(without_password("sqlite:///var/lib/kaasd/db/state.db"), "sqlite:///var/lib/kaasd/db/state.db");
        assert_eq!(without_password("postgres://u:p@ss@db/x"), "postgres://u:***@db/x");
    }
}
