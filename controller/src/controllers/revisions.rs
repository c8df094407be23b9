//! ControllerRevisions: the template history of DaemonSets and StatefulSets, as upstream's
//! `pkg/controller/history`. One revision per distinct pod template, named `<owner>-<hash>` and labelled
//! `controller-revision-hash: <hash>` like the pods made from it; `revision` numbers grow, and a template that
//! comes back (`kubectl rollout undo`) gets its old revision renumbered to the newest instead of a copy.
//!
//! A revision's `data` is what kubectl's undo applies to the owner as a strategic merge patch:
//! `{"spec": {"template": <template>, "$patch": "replace"}}`, so the whole template is put back, not merged.

use std::collections::HashSet;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use serde_json::{json, Value};

use super::deployment::template_hash;
use super::informer::Informer;
use super::replicaset::controller_reference;
use super::ReconcileError;

/// The label that ties pods (and revisions) to the revision of the template they were made from.
pub const REVISION_HASH_LABEL: &str = "controller-revision-hash";

/// The owner's revisions after `sync`: the one of its current template, and the rest, oldest first.
pub struct History {
    pub current: ControllerRevision,
    pub older: Vec<Arc<ControllerRevision>>,
}

impl History {
    /// The hash that names the current revision and labels the pods made from it.
    pub fn current_hash(&self) -> String {
        hash_of(&self.current)
    }
}

/// What the revision of `template` holds: a strategic merge patch that puts the template back whole.
pub fn revision_data(template: &PodTemplateSpec) -> Value {
    let mut template = serde_json::to_value(template).unwrap_or_default();
    if let Some(fields) = template.as_object_mut() {
        fields.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": template}})
}

/// The pod template a revision holds (its data without the replace directive).
pub fn template_of(revision: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut template = revision.data.as_ref()?.0.pointer("/spec/template")?.clone();
    template.as_object_mut()?.remove("$patch");
    serde_json::from_value(template).ok()
}

pub fn hash_of(revision: &ControllerRevision) -> String {
    revision.labels().get(REVISION_HASH_LABEL).cloned().unwrap_or_else(|| {
        // A revision made by someone else without the label: the name's suffix is the hash by convention.
        let name = revision.name_any();
        name.rsplit_once('-').map(|(_, hash)| hash.to_string()).unwrap_or(name)
    })
}

/// The revisions `owner` controls, oldest first.
pub fn owned_revisions<K: Resource>(
    revisions: &Informer<ControllerRevision>,
    owner: &K,
) -> Vec<Arc<ControllerRevision>> {
    let namespace = owner.meta().namespace.clone().unwrap_or_default();
    let uid = owner.meta().uid.clone().unwrap_or_default();
    let mut owned: Vec<Arc<ControllerRevision>> = revisions
        .list_namespace(&namespace)
        .into_iter()
        .filter(|revision| {
            revision.owner_references().iter().any(|owner| owner.controller == Some(true) && owner.uid == uid)
        })
        .collect();
    owned.sort_by_key(|revision| (revision.revision, revision.name_any()));
    owned
}

/// Makes sure the current template has the newest revision: creates it, or renumbers the revision that already
/// holds this template. `Err(Collision)` when another template's revision has the name this one wants; the
/// caller then bumps its `status.collisionCount`, which changes the hash.
pub async fn sync<K: Resource<DynamicType = ()>>(
    client: &kube::Client,
    revisions: &Informer<ControllerRevision>,
    owner: &K,
    template: &PodTemplateSpec,
    collision_count: Option<i32>,
) -> Result<History, SyncError> {
    let namespace = owner.meta().namespace.clone().unwrap_or_default();
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), &namespace);
    let data = revision_data(template);
    let owned = owned_revisions(revisions, owner);
    let (matching, older): (Vec<_>, Vec<_>) =
        owned.into_iter().partition(|revision| revision.data.as_ref().map(|raw| &raw.0) == Some(&data));
    let next_number = older.iter().map(|revision| revision.revision).max().unwrap_or(0) + 1;
    // Two revisions of one template only when caches raced; the newest stands for it.
    if let Some(existing) = matching.last() {
        let mut current = existing.as_ref().clone();
        if current.revision < next_number {
            // The template came back: its old revision becomes the newest rather than a duplicate.
            let patch =
                json!({"metadata": {"resourceVersion": current.metadata.resource_version}, "revision": next_number});
            current = api.patch(&current.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
        }
        let older = older.into_iter().chain(matching.iter().rev().skip(1).cloned()).collect();
        return Ok(History { current, older });
    }
    let hash = template_hash(template, collision_count);
    let mut labels = template.metadata.as_ref().and_then(|meta| meta.labels.clone()).unwrap_or_default();
    labels.insert(REVISION_HASH_LABEL.into(), hash.clone());
    let revision = ControllerRevision {
        metadata: ObjectMeta {
            name: Some(format!("{}-{hash}", owner.meta().name.as_deref().unwrap_or_default())),
            namespace: Some(namespace),
            labels: Some(labels),
            owner_references: Some(vec![controller_reference(owner)]),
            ..Default::default()
        },
        data: Some(RawExtension(data.clone())),
        revision: next_number,
    };
    let current = match api.create(&PostParams::default(), &revision).await {
        Ok(created) => created,
        Err(kube::Error::Api(response)) if response.code == 409 => {
            // Made by an earlier pass the cache has not shown yet, or a true collision of hashes.
            let existing = api.get(&revision.name_any()).await?;
            let ours = existing
                .owner_references()
                .iter()
                .any(|reference| reference.uid == owner.meta().uid.clone().unwrap_or_default());
            if !ours || existing.data.as_ref().map(|raw| &raw.0) != Some(&data) {
                return Err(SyncError::Collision);
            }
            existing
        }
        Err(error) => return Err(error.into()),
    };
    Ok(History { current, older })
}

/// Deletes the oldest revisions beyond `limit` that no live pod uses (`live_hashes`), as upstream's
/// revisionHistoryLimit.
pub async fn clean_up(client: &kube::Client, history: &History, live_hashes: &HashSet<String>, limit: i32) {
    let unused: Vec<&Arc<ControllerRevision>> =
        history.older.iter().filter(|revision| !live_hashes.contains(&hash_of(revision))).collect();
    let surplus = unused.len().saturating_sub(limit.max(0) as usize);
    for revision in unused.into_iter().take(surplus) {
        let api: Api<ControllerRevision> = Api::namespaced(client.clone(), &revision.namespace().unwrap_or_default());
        if let Err(error) = api.delete(&revision.name_any(), &DeleteParams::default()).await {
            tracing::debug!(revision = %revision.name_any(), error = %error, "cannot delete an old revision");
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("the revision name is taken by another template")]
    Collision,
    #[error(transparent)]
    Api(#[from] kube::Error),
}

impl From<SyncError> for ReconcileError {
    fn from(error: SyncError) -> ReconcileError {
        match error {
            SyncError::Api(error) => ReconcileError::Api(error),
            SyncError::Collision => ReconcileError::Other(error.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_data_replaces_the_whole_template() {
        let template: PodTemplateSpec = serde_json::from_value(json!({"metadata": {"labels": {"app": "agent"}},
            "spec": {"containers": [{"name": "agent", "image": "busybox:1.36"}]}}))
        .unwrap();
        let data = revision_data(&template);
        assert_eq!(data["spec"]["template"]["$patch"], "replace");
        assert_eq!(data["spec"]["template"]["spec"]["containers"][0]["image"], "busybox:1.36");
        let revision = ControllerRevision { data: Some(RawExtension(data)), ..Default::default() };
        assert_eq!(template_of(&revision), Some(template));
    }
}
