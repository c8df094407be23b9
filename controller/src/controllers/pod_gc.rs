//! Pod garbage collection, as upstream's `pkg/controller/podgc`: every 20 s it deletes
//! - pods bound to a node that no longer exists (no agent is left to finish them),
//! - pods being deleted that were never scheduled (no agent will ever confirm their end),
//! - the oldest finished (Succeeded or Failed) pods beyond 12,500 of them (terminated-pod-gc-threshold).
//!
//! Pods of missing nodes and unscheduled terminating pods are deleted with grace period 0, as upstream, because
//! nobody would act on a grace period. A node missing from the cache is confirmed missing by a fresh GET before its
//! pods go: the cache may simply not show a node created a moment ago (upstream waits 40 s instead).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Preconditions};
use kube::ResourceExt;

use super::informer::Informer;

const PERIOD: Duration = Duration::from_secs(20);
const TERMINATED_THRESHOLD: usize = 12_500;

pub struct PodGarbageCollector {
    client: kube::Client,
    nodes: Arc<Informer<Node>>,
    pods: Arc<Informer<Pod>>,
}

impl PodGarbageCollector {
    pub fn new(client: kube::Client, nodes: Arc<Informer<Node>>, pods: Arc<Informer<Pod>>) -> PodGarbageCollector {
        PodGarbageCollector { client, nodes, pods }
    }

    pub async fn run(self) {
        self.nodes.synced().await;
        self.pods.synced().await;
        let mut tick = tokio::time::interval(PERIOD);
        loop {
            tick.tick().await;
            self.collect().await;
        }
    }

    async fn collect(&self) {
        let pods = self.pods.list();
        for pod in surplus_terminated(&pods, TERMINATED_THRESHOLD) {
            self.delete(&pod, None).await;
        }
        let known: HashSet<String> = self.nodes.list().iter().map(|node| node.name_any()).collect();
        let mut missing: HashMap<String, bool> = HashMap::new();
        let nodes: Api<Node> = Api::all(self.client.clone());
        for pod in &pods {
            let node = pod.spec.as_ref().and_then(|spec| spec.node_name.clone()).filter(|name| !name.is_empty());
            match node {
                None if pod.metadata.deletion_timestamp.is_some() => self.delete(pod, Some(0)).await,
                None => {}
                Some(node) if known.contains(&node) => {}
                Some(node) => {
                    let gone = match missing.get(&node) {
                        Some(gone) => *gone,
                        None => {
                            let gone = matches!(nodes.get_opt(&node).await, Ok(None));
                            missing.insert(node.clone(), gone);
                            gone
                        }
                    };
                    if gone {
                        tracing::info!(pod = %pod.name_any(), node.name = %node, "deleting a pod of a node that no longer exists");
                        self.delete(pod, Some(0)).await;
                    }
                }
            }
        }
    }

    async fn delete(&self, pod: &Pod, grace_period_seconds: Option<u32>) {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
        // The uid pins the pod judged, not a successor of the same name.
        let params = DeleteParams {
            grace_period_seconds,
            preconditions: Some(Preconditions { uid: pod.metadata.uid.clone(), resource_version: None }),
            ..Default::default()
        };
        if let Err(error) = api.delete(&pod.name_any(), &params).await {
            tracing::debug!(pod = %pod.name_any(), error = %error, "cannot collect the pod");
        }
    }
}

/// The oldest finished pods beyond `threshold` of them.
fn surplus_terminated(pods: &[Arc<Pod>], threshold: usize) -> Vec<Arc<Pod>> {
    let mut finished: Vec<&Arc<Pod>> = pods
        .iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .filter(|pod| {
            matches!(pod.status.as_ref().and_then(|status| status.phase.as_deref()), Some("Succeeded" | "Failed"))
        })
        .collect();
    if finished.len() <= threshold {
        return Vec::new();
    }
    finished.sort_by_key(|pod| (pod.metadata.creation_timestamp.as_ref().map(|time| time.0), pod.name_any()));
    let surplus = finished.len() - threshold;
    finished.into_iter().take(surplus).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_the_oldest_finished_pods_beyond_the_threshold_go() {
        let pod = |name: &str, phase: &str, created: &str| -> Arc<Pod> {
            Arc::new(
                serde_json::from_value(json!({"metadata": {"name": name, "creationTimestamp": created},
                    "status": {"phase": phase}}))
                .unwrap(),
            )
        };
        let pods = vec![
            pod("new-done", "Succeeded", "2026-03-03T00:00:00Z"),
            pod("old-failed", "Failed", "2026-03-01T00:00:00Z"),
            pod("running", "Running", "2026-02-01T00:00:00Z"),
            pod("mid-done", "Succeeded", "2026-03-02T00:00:00Z"),
        ];
        let names: Vec<String> = surplus_terminated(&pods, 1).iter().map(|pod| pod.name_any()).collect();
        assert_eq!(names, ["old-failed", "mid-done"]);
        assert!(surplus_terminated(&pods, 3).is_empty());
    }
}
