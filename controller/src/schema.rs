//! Schema facts about fields: how lists and maps merge. Strategic merge patch, server-side apply and the OpenAPI
//! documents read them; the built-in kinds take them from a table of upstream API facts, CRDs from the
//! `x-kubernetes-*` extensions in their schemas.

/// How one field merges. Every member is empty for a field without patch or list metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldFacts {
    /// `x-kubernetes-patch-strategy`: "merge", "retainKeys", "merge,retainKeys" or "replace".
    pub patch_strategy: Option<String>,
    /// `x-kubernetes-patch-merge-key`: the key list elements merge on (strategic merge patch).
    pub patch_merge_key: Option<String>,
    /// `x-kubernetes-list-type`: "atomic", "set" or "map" (server-side apply).
    pub list_type: Option<String>,
    /// `x-kubernetes-list-map-keys`: the keys of a list-type=map list.
    pub list_map_keys: Vec<String>,
    /// `x-kubernetes-map-type`: "atomic" or "granular".
    pub map_type: Option<String>,
}

/// Answers what is known about the field at `path` of one kind: property names from the object's root, where
/// list items are transparent (`["spec", "containers", "ports"]` is the ports of any container) and a map's keys
/// are path elements too (`["metadata", "labels", "app"]`).
pub trait FieldFactsSource {
    fn field_facts(&self, path: &[&str]) -> FieldFacts;
}

/// A kind with no facts at all: every list is atomic and replaced whole, every map merges by key.
pub struct NoFacts;

impl FieldFactsSource for NoFacts {
    fn field_facts(&self, _path: &[&str]) -> FieldFacts {
        FieldFacts::default()
    }
}
