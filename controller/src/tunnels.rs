//! The controller's side of the reverse tunnels: which node each agent connection belongs to, dialling through it,
//! and closing it when the node is removed.
//!
//! A worker connects to the API port with ALPN `kaasd-tunnel/1` and its node certificate (`CN=system:node:<name>`,
//! `O=system:nodes`). The connection belongs to that node and nothing else; a newer connection of the same node
//! replaces the older one. Which address to dial on the node comes from the Node object (see
//! `api::node_proxy`), never from the agent. Removing a Node revokes the certificates issued to it before
//! (`/registry/kaasd/node-revocations/<name>`, written by the delete) and closes its tunnel on every replica, each
//! of which follows that key prefix.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kaasd_tunnel::session::{DialError, Session, TunnelStream};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::apiserver::error::{ApiError, ApiResult};
use crate::apiserver::ApiServer;

/// Where a removed node's revocation time is kept: certificates for the node issued before it no longer count.
pub const REVOCATIONS_PREFIX: &str = "/registry/kaasd/node-revocations/";
/// Which replica (its advertised `host:port`) holds each node's tunnel, so the others can forward to it.
pub const OWNERS_PREFIX: &str = "/registry/kaasd/node-tunnels/";

/// The live tunnel of each connected node, on this replica.
#[derive(Default)]
pub struct NodeTunnels {
    /// Each node's session and a number telling this connection from a later one of the same node.
    sessions: Mutex<HashMap<String, (u64, Session)>>,
    next_id: std::sync::atomic::AtomicU64,
}

impl NodeTunnels {
    /// Serves one agent connection of `node` until it ends; replaces (closes) an older connection of that node.
    pub async fn serve<IO>(&self, node: &str, io: IO)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (session, connection) = match Session::open(io).await {
            Ok(opened) => opened,
            Err(error) => {
                tracing::info!(node.name = node, error = %error, "tunnel handshake failed");
                return;
            }
        };
        let id = self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some((_, older)) = self.lock().insert(node.to_string(), (id, session.clone())) {
            older.close();
        }
        tracing::info!(node.name = node, "node tunnel connected");
        connection.await;
        let mut sessions = self.lock();
        // Only forget the session if a newer one has not taken its place.
        if sessions.get(node).is_some_and(|(current, _)| *current == id) {
            sessions.remove(node);
        }
        drop(sessions);
        tracing::info!(node.name = node, "node tunnel closed");
    }

    /// Opens a stream to `target` (`host:port`) on `node` through its tunnel.
    pub async fn dial(&self, node: &str, target: &str) -> ApiResult<TunnelStream> {
        let session = self.lock().get(node).map(|(_, session)| session.clone());
        let Some(session) = session.filter(|session| !session.is_closed()) else {
            return Err(ApiError::new(
                503,
                "ServiceUnavailable",
                format!("node {node:?} has no tunnel connected to this controller: is its kaasd worker running?"),
            ));
        };
        session.dial(target).await.map_err(|error| match error {
            DialError::Refused(reason) => {
                ApiError::new(403, "Forbidden", format!("node {node:?} refused to dial {target}: {reason}"))
            }
            DialError::Unreachable(reason) => {
                ApiError::new(502, "BadGateway", format!("node {node:?} cannot reach {target}: {reason}"))
            }
            DialError::Timeout => {
                ApiError::new(504, "Timeout", format!("node {node:?} did not answer a dial to {target} in time"))
            }
            DialError::Closed => {
                ApiError::new(503, "ServiceUnavailable", format!("the tunnel of node {node:?} closed"))
            }
        })
    }

    /// Closes `node`'s tunnel now, if it has one here.
    pub fn close(&self, node: &str) {
        if let Some((_, session)) = self.lock().remove(node) {
            tracing::info!(node.name = node, "closing the tunnel of a removed node");
            session.close();
        }
    }

    pub fn is_connected(&self, node: &str) -> bool {
        self.lock().get(node).is_some_and(|(_, session)| !session.is_closed())
    }

    pub fn connected(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, Session)>> {
        self.sessions.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The node a certificate user is, if it is one: `system:node:<name>` in `system:nodes`.
pub fn node_of(user: &crate::apiserver::auth::User) -> Option<&str> {
    user.name.strip_prefix("system:node:").filter(|name| !name.is_empty() && user.in_group("system:nodes"))
}

impl ApiServer {
    /// Records that certificates of `node` issued up to now no longer authenticate (the node was removed), and
    /// closes its tunnel here; other replicas close theirs when they see the record.
    pub(crate) async fn revoke_node(&self, node: &str) -> ApiResult<()> {
        let record = json!({"revokedAt": jiff::Timestamp::now().to_string()});
        self.put_record(&format!("{REVOCATIONS_PREFIX}{node}"), &record).await?;
        self.tunnels.close(node);
        Ok(())
    }

    /// Records that this replica holds `node`'s tunnel.
    pub(crate) async fn claim_tunnel(&self, node: &str) -> ApiResult<()> {
        self.put_record(&format!("{OWNERS_PREFIX}{node}"), &json!({"replica": self.server_address})).await
    }

    /// Writes `record` at `key` (one of kaasd's own keys, not an API object), whatever was there.
    async fn put_record(&self, key: &str, record: &Value) -> ApiResult<()> {
        for _attempt in 0..16 {
            let written = match self.store.get(key, true).await? {
                Some(current) if current.object == *record => return Ok(()),
                Some(current) => self.store.update(key, current.revision, record).await?,
                None => self.store.create(key, record).await?,
            };
            if matches!(written, crate::apiserver::storage::Written::Ok(_)) {
                return Ok(());
            }
        }
        Err(ApiError::new(409, "Conflict", format!("{key} kept changing; try again")))
    }

    /// Forgets the record of `node`'s tunnel if it still names this replica (a newer connection to another replica
    /// may have taken it over).
    pub(crate) async fn release_tunnel(&self, node: &str) -> ApiResult<()> {
        let key = format!("{OWNERS_PREFIX}{node}");
        if let Some(current) = self.store.get(&key, true).await? {
            if current.object["replica"] == self.server_address.as_str() {
                self.store.delete(&key, current.revision).await?;
            }
        }
        Ok(())
    }

    /// The replica holding `node`'s tunnel, if another one does.
    pub(crate) async fn tunnel_owner(&self, node: &str) -> ApiResult<Option<String>> {
        let key = format!("{OWNERS_PREFIX}{node}");
        Ok(self
            .store
            .get(&key, true)
            .await?
            .and_then(|stored| stored.object["replica"].as_str().map(str::to_string))
            .filter(|replica| *replica != self.server_address))
    }

    pub(crate) async fn node_exists(&self, node: &str) -> bool {
        let registry = self.registry();
        let nodes = registry.get("", "v1", "nodes").cloned().expect("nodes are built in");
        matches!(
            self.store.get(&crate::apiserver::storage::ObjectStore::key(&nodes, None, node), true).await,
            Ok(Some(_))
        )
    }

    /// Whether a certificate of `node` issued at `not_before` (Unix seconds) was revoked by the node's removal.
    pub(crate) async fn node_certificate_revoked(&self, node: &str, not_before: i64) -> ApiResult<bool> {
        let key = format!("{REVOCATIONS_PREFIX}{node}");
        let Some(stored) = self.store.get(&key, false).await? else { return Ok(false) };
        Ok(revoked(&stored.object, not_before))
    }
}

fn revoked(record: &Value, not_before: i64) -> bool {
    match record.get("revokedAt").and_then(Value::as_str).and_then(|text| text.parse::<jiff::Timestamp>().ok()) {
        // notBefore has whole seconds; a certificate from the second of the removal counts as revoked.
        Some(revoked_at) => (not_before as f64) < revoked_at.as_millisecond() as f64 / 1000.0 + 1e-9,
        None => true,
    }
}

/// Closes tunnels of nodes removed through any replica: follows the revocation records.
pub async fn follow_revocations(api: Arc<ApiServer>) {
    loop {
        let mut watcher = match api.store.watch(REVOCATIONS_PREFIX, 0).await {
            Ok(watcher) => watcher,
            Err(error) => {
                tracing::warn!(error = %error.message, "cannot follow node revocations; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        while let Ok(batch) = watcher.recv().await {
            for event in batch.events {
                let key = String::from_utf8_lossy(&event.kv.key).into_owned();
                if let Some(node) = key.strip_prefix(REVOCATIONS_PREFIX) {
                    api.tunnels.close(node);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_issued_before_the_removal_are_revoked() {
        let record = json!({"revokedAt": "2026-01-01T00:00:10.500Z"});
        let at = |text: &str| text.parse::<jiff::Timestamp>().unwrap().as_second();
        assert!(revoked(&record, at("2026-01-01T00:00:09Z")));
        assert!(revoked(&record, at("2026-01-01T00:00:10Z")));
        assert!(!revoked(&record, at("2026-01-01T00:00:11Z")));
        assert!(revoked(&json!({}), at("2030-01-01T00:00:00Z")), "an unreadable record revokes");
    }

    #[test]
    fn only_node_identities_are_nodes() {
        let user = |name: &str, group: &str| {
            crate::apiserver::auth::User::authenticated(name.into(), String::new(), vec![group.into()])
        };
        assert_eq!(node_of(&user("system:node:edge1", "system:nodes")), Some("edge1"));
        assert_eq!(node_of(&user("system:node:edge1", "system:masters")), None);
        assert_eq!(node_of(&user("system:node:", "system:nodes")), None);
        assert_eq!(node_of(&user("alice", "system:nodes")), None);
    }
}
