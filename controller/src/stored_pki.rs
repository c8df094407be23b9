//! A hosted control plane's PKI, kept in the datastore instead of files: the cluster secrets (CA and
//! ServiceAccount key), sealed with the operator's secret key, under one datastore key outside the API's
//! `/registry/` tree (no API request can read it).
//!
//! The first replica to start creates them; the others load them. Replicas that start together race through one
//! compare-and-swap (create only if the key does not exist), so exactly one set of secrets is ever stored, and the
//! losers load the winner's. A wrong secret key fails before anything is written, leaving the stored value as it
//! was.

use bytes::Bytes;
use kaasd_datastore::{
    Compare, CompareResult, CompareTarget, KeyRange, PutRequest, RangeRequest, Store, TxnOp, TxnOpResponse, TxnRequest,
};
use kaasd_tunnel::pki::{ClusterSecrets, PkiError};
use kaasd_tunnel::sealed::{SealError, SecretKey};

/// The datastore key of the sealed cluster secrets. The key itself is authenticated with the value, so a sealed
/// value copied elsewhere does not open.
pub const SECRETS_KEY: &str = "/kaasd/pki/cluster-secrets";

#[derive(Debug, thiserror::Error)]
pub enum StoredPkiError {
    #[error("cannot read or write the cluster PKI in the datastore")]
    Datastore(#[from] kaasd_datastore::Error),
    #[error(
        "the cluster PKI stored in the datastore cannot be opened: {0}; give the --secret-key-file (KAASD_SECRET_KEY) \
         this cluster was created with (nothing was changed)"
    )]
    Sealed(#[source] SealError),
    #[error("the cluster PKI stored in the datastore is unreadable after opening: {0}")]
    Corrupt(String),
    #[error("cannot create the cluster PKI")]
    Pki(#[from] PkiError),
    #[error("cannot seal the cluster PKI: {0}")]
    Seal(#[source] SealError),
}

/// The stored cluster secrets, if this datastore holds a cluster.
pub async fn load(store: &Store, key: &SecretKey) -> Result<Option<ClusterSecrets>, StoredPkiError> {
    let response = store.range(RangeRequest { range: KeyRange::key(SECRETS_KEY), ..Default::default() }).await?;
    response.kvs.first().map(|stored| open(key, &stored.value)).transpose()
}

/// The stored cluster secrets, created first if this datastore has none. Returns them and whether this call created
/// them.
pub async fn load_or_create(store: &Store, key: &SecretKey) -> Result<(ClusterSecrets, bool), StoredPkiError> {
    if let Some(secrets) = load(store, key).await? {
        return Ok((secrets, false));
    }
    let secrets = ClusterSecrets::generate()?;
    let plaintext = serde_json::to_vec(&secrets).map_err(|error| StoredPkiError::Corrupt(error.to_string()))?;
    let sealed = key.seal(SECRETS_KEY.as_bytes(), &plaintext).map_err(StoredPkiError::Seal)?;
    let response = store
        .txn(TxnRequest {
            compare: vec![Compare {
                range: KeyRange::key(SECRETS_KEY),
                result: CompareResult::Equal,
                target: CompareTarget::CreateRevision(0),
            }],
            success: vec![TxnOp::Put(PutRequest {
                key: Bytes::from_static(SECRETS_KEY.as_bytes()),
                value: Bytes::from(sealed),
                ..Default::default()
            })],
            failure: vec![TxnOp::Range(RangeRequest { range: KeyRange::key(SECRETS_KEY), ..Default::default() })],
        })
        .await?;
    if response.succeeded {
        return Ok((secrets, true));
    }
    // Another replica stored its secrets first: everyone uses those.
    let winner = response.responses.into_iter().find_map(|response| match response {
        TxnOpResponse::Range(range) => range.kvs.first().cloned(),
        _ => None,
    });
    match winner {
        Some(stored) => Ok((open(key, &stored.value)?, false)),
        None => Err(StoredPkiError::Corrupt("the key was taken and then deleted while starting".into())),
    }
}

fn open(key: &SecretKey, sealed: &[u8]) -> Result<ClusterSecrets, StoredPkiError> {
    let plaintext = key.open(SECRETS_KEY.as_bytes(), sealed).map_err(StoredPkiError::Sealed)?;
    serde_json::from_slice(&plaintext).map_err(|error| StoredPkiError::Corrupt(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn key(byte: u8) -> SecretKey {
        SecretKey::from_base64(&base64::engine::general_purpose::STANDARD.encode([byte; 32])).unwrap()
    }

    async fn store(dir: &tempfile::TempDir) -> Store {
        let url = format!("sqlite://{}", dir.path().join("state.db").display());
        Store::open(kaasd_datastore::StoreConfig::new(url)).await.unwrap()
    }

    #[tokio::test]
    async fn the_first_start_creates_and_later_ones_load_the_same_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        assert!(load(&store, &key(1)).await.unwrap().is_none());
        let (created, was_created) = load_or_create(&store, &key(1)).await.unwrap();
        assert!(was_created);
        let (loaded, was_created) = load_or_create(&store, &key(1)).await.unwrap();
        assert!(!was_created);
        assert_eq!(created, loaded);
        store.close().await;
    }

    #[tokio::test]
    async fn replicas_starting_together_end_up_with_one_set_of_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let starts: Vec<_> = (0..4)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { load_or_create(&store, &key(1)).await.unwrap() })
            })
            .collect();
        let mut results = Vec::new();
        for start in starts {
            results.push(start.await.unwrap());
        }
        assert_eq!(results.iter().filter(|(_, created)| *created).count(), 1, "exactly one replica created them");
        assert!(results.iter().all(|(secrets, _)| *secrets == results[0].0));
        store.close().await;
    }

    #[tokio::test]
    async fn a_wrong_key_is_refused_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        load_or_create(&store, &key(1)).await.unwrap();
        let before = store.range(RangeRequest { range: KeyRange::key(SECRETS_KEY), ..Default::default() }).await;
        let error = load_or_create(&store, &key(2)).await.unwrap_err().to_string();
        assert!(error.contains("--secret-key-file") && error.contains("nothing was changed"), "{error}");
        let after = store.range(RangeRequest { range: KeyRange::key(SECRETS_KEY), ..Default::default() }).await;
        assert_eq!(before.unwrap().kvs, after.unwrap().kvs);
        store.close().await;
    }
}
