//! Schemas of the served kinds and facts about their fields: how lists and maps merge. Strategic merge patch,
//! server-side apply and the OpenAPI documents read them; the built-in kinds take them from a table of upstream API
//! facts, CRDs from the `x-kubernetes-*` extensions in their schemas.

use std::sync::OnceLock;

use k8s_openapi::{ListableResource, Resource};
use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::JsonSchema;
use serde_json::{json, Map, Value};

use crate::apiserver::schema_facts::{METADATA_REQUIRED, UPSTREAM_FIELD_FACTS, UPSTREAM_REQUIRED};

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

/// Where OpenAPI 3.0 documents keep their named schemas.
pub const COMPONENTS_PREFIX: &str = "#/components/schemas/";

/// `x-kubernetes-group-version-kind`: on a definition, the kinds it is the schema of; on an operation, the kind it
/// acts on.
pub const GVK_EXTENSION: &str = "x-kubernetes-group-version-kind";

/// `{"group": …, "kind": …, "version": …}` as OpenAPI extensions spell a group/version/kind.
pub fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "kind": kind, "version": version})
}

/// Every OpenAPI definition reachable from the built-in kinds kaasd serves, as OpenAPI 3.0 schemas named like
/// `io.k8s.api.apps.v1.Deployment` with refs `#/components/schemas/<name>`, plus the meta types an API document
/// refers to (Status, DeleteOptions, Patch, WatchEvent, APIResourceList, autoscaling/v1 Scale) and a `<Kind>List`
/// per listable kind.
///
/// The schemas come from k8s-openapi, so they cannot drift from the types the server decodes; the patch and list
/// facts k8s-openapi leaves out are overlaid from [`crate::apiserver::schema_facts`], and every kind carries
/// `x-kubernetes-group-version-kind` the way upstream definitions do, because kubectl finds a kind's schema by it.
#[derive(Debug, Clone)]
pub struct Schemas {
    definitions: Map<String, Value>,
}

impl Schemas {
    /// The schemas of this process, built on first use: building takes tens of milliseconds, which the API server
    /// must not spend before it answers `/readyz`.
    pub fn shared() -> &'static Schemas {
        static SHARED: OnceLock<Schemas> = OnceLock::new();
        SHARED.get_or_init(Schemas::build)
    }

    /// Builds the schemas now; [`Schemas::shared`] is the cached copy.
    pub fn build() -> Schemas {
        let mut builder = Builder::new();
        builder.add_served_kinds();
        builder.finish()
    }

    /// One definition by name, e.g. `io.k8s.api.core.v1.Pod`.
    pub fn definition(&self, name: &str) -> Option<&Value> {
        self.definitions.get(name)
    }

    /// Every definition by name.
    pub fn definitions(&self) -> &Map<String, Value> {
        &self.definitions
    }

    /// The field facts of a built-in kind, walking from its definition (e.g. `io.k8s.api.apps.v1.Deployment`). An
    /// unknown definition has no facts.
    pub fn facts_for(&self, definition: &str) -> SchemaFacts<'_> {
        SchemaFacts {
            root: self.definitions.get(definition).unwrap_or(&NULL),
            definitions: Some(&self.definitions),
            metadata_from_definitions: false,
        }
    }

    /// The field facts of a custom resource: its CRD's `openAPIV3Schema` (inline, without refs), except that
    /// `metadata` is always ObjectMeta with the upstream facts (a CRD's schema says nothing about it).
    pub fn facts_for_custom_resource<'a>(&'a self, schema: &'a Value) -> SchemaFacts<'a> {
        SchemaFacts { root: schema, definitions: Some(&self.definitions), metadata_from_definitions: true }
    }
}

/// Answers [`FieldFactsSource`] by walking a schema: properties by name, `$ref` into the definitions, `allOf`
/// members, array `items` (transparent) and `additionalProperties` (any map key). The facts of a field are its own
/// `x-kubernetes-*` extensions, completed by those of the definition it refers to (`LabelSelector` is atomic
/// wherever it is used); for a list, `map_type` is its elements' map type.
#[derive(Debug, Clone, Copy)]
pub struct SchemaFacts<'a> {
    root: &'a Value,
    definitions: Option<&'a Map<String, Value>>,
    /// Paths under `metadata` walk ObjectMeta in `definitions` instead of `root` (custom resources).
    metadata_from_definitions: bool,
}

impl<'a> SchemaFacts<'a> {
    /// Facts from an inline schema without refs, e.g. a CRD's `openAPIV3Schema` when no [`Schemas`] is at hand.
    pub fn inline(schema: &'a Value) -> SchemaFacts<'a> {
        SchemaFacts { root: schema, definitions: None, metadata_from_definitions: false }
    }

    /// Follows `$ref`s until a schema that is not a bare reference. Bounded, so a cycle of refs cannot hang.
    fn dereference(&self, mut node: &'a Value) -> &'a Value {
        for _ in 0..16 {
            let Some(reference) = node.get("$ref").and_then(Value::as_str) else { return node };
            let Some(target) = reference
                .strip_prefix(COMPONENTS_PREFIX)
                .and_then(|name| self.definitions.and_then(|definitions| definitions.get(name)))
            else {
                return &NULL;
            };
            node = target;
        }
        node
    }

    /// The schemas whose properties describe `node`'s fields: the node itself and its `allOf` members, refs
    /// followed.
    fn parts(&self, node: &'a Value, depth: usize, parts: &mut Vec<&'a Value>) {
        let node = self.dereference(node);
        parts.push(node);
        if depth < 8 {
            for member in node.get("allOf").and_then(Value::as_array).into_iter().flatten() {
                self.parts(member, depth + 1, parts);
            }
        }
    }

    /// A list's elements stand in for the list when walking deeper (list items are transparent in paths).
    fn elements(&self, mut node: &'a Value) -> &'a Value {
        for _ in 0..8 {
            let parts = self.parts_of(node);
            match parts.iter().find_map(|part| part.get("items").filter(|items| items.is_object())) {
                Some(items) => node = items,
                None => return node,
            }
        }
        node
    }

    fn parts_of(&self, node: &'a Value) -> Vec<&'a Value> {
        let mut parts = Vec::new();
        self.parts(node, 0, &mut parts);
        parts
    }

    /// The schema of field `name` inside `node`: a property, or else the value of a map.
    fn child(&self, node: &'a Value, name: &str) -> Option<&'a Value> {
        let parts = self.parts_of(self.elements(node));
        parts
            .iter()
            .find_map(|part| part.get("properties").and_then(|properties| properties.get(name)))
            .or_else(|| parts.iter().find_map(|part| part.get("additionalProperties").filter(|v| v.is_object())))
    }

    /// The facts written on `node`, then on what it refers to, the first of each member winning.
    fn facts_of(&self, node: &'a Value) -> FieldFacts {
        let mut facts = FieldFacts::default();
        for part in std::iter::once(node).chain(self.parts_of(node)) {
            fill_facts(&mut facts, part);
        }
        if facts.map_type.is_none() {
            if let Some(items) = self.parts_of(node).iter().find_map(|part| part.get("items")) {
                let mut element = FieldFacts::default();
                for part in std::iter::once(items).chain(self.parts_of(items)) {
                    fill_facts(&mut element, part);
                }
                facts.map_type = element.map_type;
            }
        }
        facts
    }
}

impl FieldFactsSource for SchemaFacts<'_> {
    fn field_facts(&self, path: &[&str]) -> FieldFacts {
        let object_meta = self.definitions.and_then(|definitions| definitions.get(OBJECT_META));
        let (mut node, rest) = match (path.split_first(), object_meta) {
            (Some((&"metadata", rest)), Some(object_meta)) if self.metadata_from_definitions => (object_meta, rest),
            _ => (self.root, path),
        };
        for name in rest {
            match self.child(node, name) {
                Some(child) => node = child,
                None => return FieldFacts::default(),
            }
        }
        self.facts_of(node)
    }
}

/// What an unknown definition or a dangling ref resolves to: a schema without facts.
static NULL: Value = Value::Null;

const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

/// Copies the `x-kubernetes-*` facts of one schema node into `facts` where `facts` has none yet.
fn fill_facts(facts: &mut FieldFacts, node: &Value) {
    let text = |key: &str| node.get(key).and_then(Value::as_str).map(str::to_string);
    if facts.patch_strategy.is_none() {
        facts.patch_strategy = text("x-kubernetes-patch-strategy");
    }
    if facts.patch_merge_key.is_none() {
        facts.patch_merge_key = text("x-kubernetes-patch-merge-key");
    }
    if facts.list_type.is_none() {
        facts.list_type = text("x-kubernetes-list-type");
    }
    if facts.list_map_keys.is_empty() {
        let keys = node.get("x-kubernetes-list-map-keys").and_then(Value::as_array);
        facts.list_map_keys = keys.into_iter().flatten().filter_map(Value::as_str).map(str::to_string).collect();
    }
    if facts.map_type.is_none() {
        facts.map_type = text("x-kubernetes-map-type");
    }
}

/// A kind among the generated definitions, with its group/version/kind.
struct GeneratedKind {
    definition: String,
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    listable: bool,
}

/// Collects definitions from k8s-openapi's schemars impls, then completes them.
struct Builder {
    generator: SchemaGenerator,
    kinds: Vec<GeneratedKind>,
}

impl Builder {
    fn new() -> Builder {
        Builder { generator: SchemaSettings::openapi3().into_generator(), kinds: Vec::new() }
    }

    /// A kind and everything its schema refers to.
    fn kind<T: Resource + JsonSchema>(&mut self, listable: bool) {
        self.generator.subschema_for::<T>();
        self.kinds.push(GeneratedKind {
            definition: T::schema_name().into_owned(),
            group: T::GROUP,
            version: T::VERSION,
            kind: T::KIND,
            listable,
        });
    }

    fn listable<T: Resource + ListableResource + JsonSchema>(&mut self) {
        self.kind::<T>(true);
    }

    fn single<T: Resource + JsonSchema>(&mut self) {
        self.kind::<T>(false);
    }

    /// The kinds of `registry::built_in_resources()` (a test checks the two agree), and the meta types.
    fn add_served_kinds(&mut self) {
        use k8s_openapi::api::{
            admissionregistration::v1 as admissionregistration, apps::v1 as apps, authentication::v1 as authentication,
            authorization::v1 as authorization, autoscaling::v1 as autoscaling_v1, autoscaling::v2 as autoscaling,
            batch::v1 as batch, certificates::v1 as certificates, coordination::v1 as coordination, core::v1 as core,
            discovery::v1 as discovery, events::v1 as events, flowcontrol::v1 as flowcontrol,
            networking::v1 as networking, node::v1 as node, policy::v1 as policy, rbac::v1 as rbac,
            scheduling::v1 as scheduling, storage::v1 as storage,
        };
        use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
        use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
        use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1 as apiregistration;

        self.single::<core::Binding>();
        self.listable::<core::ComponentStatus>();
        self.listable::<core::ConfigMap>();
        self.listable::<core::Endpoints>();
        self.listable::<core::Event>();
        self.listable::<core::LimitRange>();
        self.listable::<core::Namespace>();
        self.listable::<core::Node>();
        self.listable::<core::PersistentVolumeClaim>();
        self.listable::<core::PersistentVolume>();
        self.listable::<core::Pod>();
        self.listable::<core::PodTemplate>();
        self.listable::<core::ReplicationController>();
        self.listable::<core::ResourceQuota>();
        self.listable::<core::Secret>();
        self.listable::<core::ServiceAccount>();
        self.listable::<core::Service>();
        self.listable::<admissionregistration::MutatingWebhookConfiguration>();
        self.listable::<admissionregistration::ValidatingWebhookConfiguration>();
        self.listable::<admissionregistration::ValidatingAdmissionPolicy>();
        self.listable::<admissionregistration::ValidatingAdmissionPolicyBinding>();
        self.listable::<apiextensions::CustomResourceDefinition>();
        self.listable::<apiregistration::APIService>();
        self.listable::<apps::ControllerRevision>();
        self.listable::<apps::DaemonSet>();
        self.listable::<apps::Deployment>();
        self.listable::<apps::ReplicaSet>();
        self.listable::<apps::StatefulSet>();
        self.single::<authentication::SelfSubjectReview>();
        self.single::<authentication::TokenReview>();
        self.single::<authorization::LocalSubjectAccessReview>();
        self.single::<authorization::SelfSubjectAccessReview>();
        self.single::<authorization::SelfSubjectRulesReview>();
        self.single::<authorization::SubjectAccessReview>();
        self.listable::<autoscaling::HorizontalPodAutoscaler>();
        self.listable::<autoscaling_v1::HorizontalPodAutoscaler>();
        self.listable::<batch::CronJob>();
        self.listable::<batch::Job>();
        self.listable::<certificates::CertificateSigningRequest>();
        self.listable::<coordination::Lease>();
        self.listable::<discovery::EndpointSlice>();
        self.listable::<events::Event>();
        self.listable::<flowcontrol::FlowSchema>();
        self.listable::<flowcontrol::PriorityLevelConfiguration>();
        self.listable::<networking::IngressClass>();
        self.listable::<networking::Ingress>();
        self.listable::<networking::IPAddress>();
        self.listable::<networking::NetworkPolicy>();
        self.listable::<networking::ServiceCIDR>();
        self.listable::<node::RuntimeClass>();
        self.listable::<policy::PodDisruptionBudget>();
        self.listable::<rbac::ClusterRoleBinding>();
        self.listable::<rbac::ClusterRole>();
        self.listable::<rbac::RoleBinding>();
        self.listable::<rbac::Role>();
        self.listable::<scheduling::PriorityClass>();
        self.listable::<storage::CSIDriver>();
        self.listable::<storage::CSINode>();
        self.listable::<storage::CSIStorageCapacity>();
        self.listable::<storage::StorageClass>();
        self.listable::<storage::VolumeAttachment>();

        // What API documents refer to besides the kinds: the scale subresource, lists, errors, deletes, patches and
        // watch events.
        self.single::<autoscaling_v1::Scale>();
        self.generator.subschema_for::<meta::ListMeta>();
        self.generator.subschema_for::<meta::Status>();
        self.generator.subschema_for::<meta::DeleteOptions>();
        self.generator.subschema_for::<meta::Patch>();
        self.generator.subschema_for::<meta::WatchEvent<Value>>();
        self.generator.subschema_for::<meta::APIResourceList>();
    }

    fn finish(mut self) -> Schemas {
        let mut definitions = self.generator.take_definitions(true);
        for kind in &self.kinds {
            if let Some(Value::Object(schema)) = definitions.get_mut(&kind.definition) {
                schema.insert(GVK_EXTENSION.into(), json!([gvk(kind.group, kind.version, kind.kind)]));
            }
            if kind.listable {
                let list = list_schema(
                    &kind.definition,
                    kind.kind,
                    gvk(kind.group, kind.version, &format!("{}List", kind.kind)),
                );
                definitions.insert(format!("{}List", kind.definition), list);
            }
        }
        // Status is the core group's; DeleteOptions and WatchEvent belong to every group-version, as upstream.
        let mut group_versions: Vec<(&str, &str)> = self.kinds.iter().map(|kind| (kind.group, kind.version)).collect();
        group_versions.sort();
        group_versions.dedup();
        for (name, kind, all_group_versions) in [
            ("io.k8s.apimachinery.pkg.apis.meta.v1.Status", "Status", false),
            ("io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions", "DeleteOptions", true),
            ("io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent", "WatchEvent", true),
        ] {
            let gvks: Vec<Value> = if all_group_versions {
                group_versions.iter().map(|(group, version)| gvk(group, version, kind)).collect()
            } else {
                vec![gvk("", "v1", kind)]
            };
            if let Some(Value::Object(schema)) = definitions.get_mut(name) {
                schema.insert(GVK_EXTENSION.into(), Value::Array(gvks));
            }
        }
        // Upstream spells these as strings with a format; the int-or-string marker stays for validators.
        for (name, format) in [
            ("io.k8s.apimachinery.pkg.util.intstr.IntOrString", Some("int-or-string")),
            ("io.k8s.apimachinery.pkg.api.resource.Quantity", None),
        ] {
            if let Some(Value::Object(schema)) = definitions.get_mut(name) {
                schema.insert("type".into(), json!("string"));
                if let Some(format) = format {
                    schema.insert("format".into(), json!(format));
                }
            }
        }
        // JSON (CRD defaults and examples) is any value, not only an object.
        if let Some(Value::Object(schema)) =
            definitions.get_mut("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSON")
        {
            schema.remove("type");
        }
        if let Some(Value::Object(schema)) = definitions.get_mut("io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList")
        {
            schema.insert(GVK_EXTENSION.into(), json!([gvk("", "v1", "APIResourceList")]));
        }
        overlay_upstream_required(&mut definitions);
        overlay_upstream_facts(&mut definitions);
        Schemas { definitions }
    }
}

/// The schema of `<Kind>List` (k8s-openapi has one generic `List<T>` without a schema).
pub(crate) fn list_schema(item_definition: &str, kind: &str, list_gvk: Value) -> Value {
    json!({
        "description": format!("{kind}List is a list of {kind} objects."),
        "type": "object",
        "properties": {
            "apiVersion": {"description": API_VERSION_DESCRIPTION, "type": "string"},
            "items": {
                "description": format!("The {kind} objects of the list."),
                "type": "array",
                "items": {"$ref": format!("{COMPONENTS_PREFIX}{item_definition}")},
            },
            "kind": {"description": KIND_DESCRIPTION, "type": "string"},
            "metadata": {
                "allOf": [{"$ref": format!("{COMPONENTS_PREFIX}io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta")}],
                "description": "Standard list metadata.",
            },
        },
        "required": ["items"],
        GVK_EXTENSION: [list_gvk],
    })
}

pub(crate) const API_VERSION_DESCRIPTION: &str =
    "APIVersion defines the versioned schema of this representation of an \
     object: the group and version, like apps/v1.";
pub(crate) const KIND_DESCRIPTION: &str =
    "Kind is a string value representing the REST resource this object represents, in CamelCase.";

/// Makes `required` say what upstream's does, which `kubectl explain` shows and client-side validation (of `kind:
/// List` manifests) checks.
fn overlay_upstream_required(definitions: &mut Map<String, Value>) {
    for (name, schema) in definitions.iter_mut() {
        let Value::Object(schema) = schema else { continue };
        let mut required: Vec<Value> = match UPSTREAM_REQUIRED.iter().find(|(definition, _)| definition == name) {
            Some((_, fields)) => fields.iter().map(|field| json!(field)).collect(),
            None => match schema.get("required") {
                Some(Value::Array(fields)) => fields.clone(),
                _ => continue,
            },
        };
        if !METADATA_REQUIRED.contains(&name.as_str()) {
            required.retain(|field| field != "metadata");
        }
        if required.is_empty() {
            schema.remove("required");
        } else {
            schema.insert("required".into(), Value::Array(required));
        }
    }
}

/// Writes the table of upstream facts into the definitions it names (those that are served).
fn overlay_upstream_facts(definitions: &mut Map<String, Value>) {
    for (definition, property, facts) in UPSTREAM_FIELD_FACTS {
        let Some(Value::Object(schema)) = definitions.get_mut(*definition) else { continue };
        let target = if property.is_empty() {
            schema
        } else {
            match schema.get_mut("properties").and_then(|properties| properties.get_mut(*property)) {
                Some(Value::Object(node)) => node,
                _ => continue,
            }
        };
        // OpenAPI 3.0 ignores a `$ref`'s siblings, so a bare reference becomes `allOf: [ref]` first.
        if target.contains_key("$ref") {
            if let Some(reference) = target.remove("$ref") {
                target.insert("allOf".into(), json!([{"$ref": reference}]));
            }
        }
        let mut set = |key: &str, value: &str| {
            if !value.is_empty() {
                target.insert(key.into(), Value::String(value.into()));
            }
        };
        set("x-kubernetes-patch-strategy", facts.patch_strategy);
        set("x-kubernetes-patch-merge-key", facts.patch_merge_key);
        set("x-kubernetes-list-type", facts.list_type);
        set("x-kubernetes-map-type", facts.map_type);
        if !facts.list_map_keys.is_empty() {
            target.insert("x-kubernetes-list-map-keys".into(), json!(facts.list_map_keys));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::registry::{built_in_resources, SchemaSource};

    fn facts(strategy: Option<&str>, key: Option<&str>, list_type: Option<&str>, keys: &[&str]) -> FieldFacts {
        FieldFacts {
            patch_strategy: strategy.map(str::to_string),
            patch_merge_key: key.map(str::to_string),
            list_type: list_type.map(str::to_string),
            list_map_keys: keys.iter().map(|key| key.to_string()).collect(),
            map_type: None,
        }
    }

    #[test]
    fn containers_merge_by_name_from_deployment_and_pod() {
        let schemas = Schemas::shared();
        let by_name = facts(Some("merge"), Some("name"), Some("map"), &["name"]);
        let deployment = schemas.facts_for("io.k8s.api.apps.v1.Deployment");
        assert_eq!(deployment.field_facts(&["spec", "template", "spec", "containers"]), by_name);
        let pod = schemas.facts_for("io.k8s.api.core.v1.Pod");
        assert_eq!(pod.field_facts(&["spec", "containers"]), by_name);
        assert_eq!(pod.field_facts(&["spec", "containers", "env"]), by_name);
        assert_eq!(
            pod.field_facts(&["spec", "containers", "ports"]),
            facts(Some("merge"), Some("containerPort"), Some("map"), &["containerPort", "protocol"])
        );
        assert_eq!(pod.field_facts(&["spec", "volumes"]).patch_strategy.as_deref(), Some("merge,retainKeys"));
        assert_eq!(pod.field_facts(&["spec", "tolerations"]), facts(None, None, Some("atomic"), &[]));
        assert_eq!(pod.field_facts(&["spec", "containers", "image"]), FieldFacts::default());
        assert_eq!(pod.field_facts(&["spec", "noSuchField", "containers"]), FieldFacts::default());
    }

    #[test]
    fn conditions_merge_on_type() {
        let schemas = Schemas::shared();
        let conditions = facts(Some("merge"), Some("type"), Some("map"), &["type"]);
        let deployment = schemas.facts_for("io.k8s.api.apps.v1.Deployment");
        assert_eq!(deployment.field_facts(&["status", "conditions"]), conditions);
        let pod = schemas.facts_for("io.k8s.api.core.v1.Pod");
        assert_eq!(pod.field_facts(&["status", "conditions"]), conditions);
    }

    #[test]
    fn structs_and_maps_carry_their_definitions_facts() {
        let deployment = Schemas::shared().facts_for("io.k8s.api.apps.v1.Deployment");
        // LabelSelector is atomic as a definition, so every field of that type is.
        assert_eq!(deployment.field_facts(&["spec", "selector"]).map_type.as_deref(), Some("atomic"));
        assert_eq!(deployment.field_facts(&["spec", "strategy"]).patch_strategy.as_deref(), Some("retainKeys"));
        assert_eq!(deployment.field_facts(&["metadata", "labels", "app"]), FieldFacts::default());
        assert_eq!(
            deployment.field_facts(&["spec", "template", "spec", "nodeSelector"]).map_type.as_deref(),
            Some("atomic")
        );
        let owners = deployment.field_facts(&["metadata", "ownerReferences"]);
        assert_eq!(owners.patch_merge_key.as_deref(), Some("uid"));
        assert_eq!(owners.list_map_keys, vec!["uid"]);
        // The elements of the list are atomic OwnerReferences.
        assert_eq!(owners.map_type.as_deref(), Some("atomic"));
        assert_eq!(deployment.field_facts(&["metadata", "finalizers"]).list_type.as_deref(), Some("set"));
    }

    #[test]
    fn required_fields_are_upstreams() {
        let schemas = Schemas::shared();
        let required = |name: &str| schemas.definition(name).unwrap().get("required").cloned();
        assert_eq!(required("io.k8s.api.apps.v1.Deployment"), None);
        assert_eq!(required("io.k8s.api.rbac.v1.RoleBinding"), Some(json!(["roleRef"])));
        assert_eq!(required("io.k8s.api.core.v1.LocalObjectReference"), None);
        assert_eq!(required("io.k8s.api.events.v1.Event"), Some(json!(["eventTime"])));
        let core_event = required("io.k8s.api.core.v1.Event").unwrap();
        assert!(core_event.as_array().unwrap().contains(&json!("metadata")), "{core_event}");
    }

    #[test]
    fn unknown_definitions_have_no_facts() {
        let unknown = Schemas::shared().facts_for("io.k8s.api.apps.v1.NoSuchKind");
        assert_eq!(unknown.field_facts(&["spec", "containers"]), FieldFacts::default());
    }

    fn crontab_schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "properties": {
                        "ports": {
                            "type": "array",
                            "x-kubernetes-list-type": "map",
                            "x-kubernetes-list-map-keys": ["port", "protocol"],
                            "items": {
                                "type": "object",
                                "properties": {
                                    "port": {"type": "integer"},
                                    "protocol": {"type": "string"},
                                    "tags": {
                                        "type": "array",
                                        "x-kubernetes-list-type": "set",
                                        "items": {"type": "string"},
                                    },
                                },
                            },
                        },
                        "selector": {
                            "type": "object",
                            "x-kubernetes-map-type": "atomic",
                            "additionalProperties": {"type": "string"},
                        },
                        "routes": {
                            "type": "object",
                            "additionalProperties": {
                                "type": "array",
                                "x-kubernetes-list-type": "atomic",
                                "items": {"type": "string"},
                            },
                        },
                    },
                },
            },
        })
    }

    #[test]
    fn custom_resource_schemas_give_list_map_facts() {
        let schema = crontab_schema();
        let inline = SchemaFacts::inline(&schema);
        assert_eq!(inline.field_facts(&["spec", "ports"]), facts(None, None, Some("map"), &["port", "protocol"]));
        assert_eq!(inline.field_facts(&["spec", "ports", "tags"]).list_type.as_deref(), Some("set"));
        assert_eq!(inline.field_facts(&["spec", "selector"]).map_type.as_deref(), Some("atomic"));
        assert_eq!(inline.field_facts(&["spec", "routes", "any-key"]).list_type.as_deref(), Some("atomic"));
        // Without definitions, metadata is unknown; with them it is ObjectMeta.
        assert_eq!(inline.field_facts(&["metadata", "ownerReferences"]), FieldFacts::default());
        let custom = Schemas::shared().facts_for_custom_resource(&schema);
        assert_eq!(custom.field_facts(&["metadata", "ownerReferences"]).patch_merge_key.as_deref(), Some("uid"));
        assert_eq!(custom.field_facts(&["spec", "ports"]).list_map_keys, vec!["port", "protocol"]);
    }

    #[test]
    fn every_served_kind_has_a_schema_with_its_group_version_kind() {
        let schemas = Schemas::shared();
        for def in built_in_resources() {
            let SchemaSource::BuiltIn(name) = &def.schema else { panic!("{} is built in", def.kind) };
            let schema = schemas.definition(name).unwrap_or_else(|| panic!("no schema {name}"));
            assert_eq!(schema[GVK_EXTENSION], json!([gvk(&def.group, &def.version, &def.kind)]), "{name}");
            if def.has_verb("list") {
                let list = schemas.definition(&format!("{name}List")).unwrap_or_else(|| panic!("no list of {name}"));
                assert_eq!(list[GVK_EXTENSION][0]["kind"], json!(def.list_kind()));
            }
        }
        for name in ["Status", "DeleteOptions", "Patch", "WatchEvent", "ListMeta"] {
            assert!(schemas.definition(&format!("io.k8s.apimachinery.pkg.apis.meta.v1.{name}")).is_some(), "{name}");
        }
        assert_eq!(schemas.definition("io.k8s.api.autoscaling.v1.Scale").unwrap()[GVK_EXTENSION][0]["kind"], "Scale");
    }

    /// Every `$ref` names a definition, and no `$ref` has siblings (OpenAPI 3.0 would ignore them).
    fn check_refs(value: &Value, definitions: &Map<String, Value>, at: &str) {
        match value {
            Value::Object(object) => {
                if let Some(reference) = object.get("$ref").and_then(Value::as_str) {
                    let name = reference.strip_prefix(COMPONENTS_PREFIX).unwrap_or_else(|| panic!("{at}: {reference}"));
                    assert!(definitions.contains_key(name), "{at}: dangling {reference}");
                    assert_eq!(object.len(), 1, "{at}: $ref with siblings");
                }
                for (key, child) in object {
                    check_refs(child, definitions, &format!("{at}/{key}"));
                }
            }
            Value::Array(items) => items.iter().for_each(|item| check_refs(item, definitions, at)),
            _ => {}
        }
    }

    #[test]
    fn every_ref_resolves() {
        let definitions = Schemas::shared().definitions();
        assert!(definitions.len() > 300, "{} definitions", definitions.len());
        check_refs(&Value::Object(definitions.clone()), definitions, "");
    }

    #[test]
    fn every_fact_row_of_a_served_definition_names_a_property() {
        let schemas = Schemas::shared();
        let mut applied = 0;
        for (definition, property, _) in UPSTREAM_FIELD_FACTS {
            let Some(schema) = schemas.definition(definition) else { continue };
            if !property.is_empty() {
                assert!(schema["properties"].get(*property).is_some(), "{definition} has no property {property}");
            }
            applied += 1;
        }
        assert!(applied > 200, "{applied} rows apply");
    }

    #[test]
    fn building_is_cheap() {
        let started = std::time::Instant::now();
        let schemas = Schemas::build();
        let elapsed = started.elapsed();
        println!("built {} definitions in {elapsed:?}", schemas.definitions().len());
        assert!(elapsed < std::time::Duration::from_secs(5), "building took {elapsed:?}");
    }
}
