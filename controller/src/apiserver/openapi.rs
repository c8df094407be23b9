//! OpenAPI v3 documents: `/openapi/v3` (an index of group-versions) and one document per group-version
//! (`/openapi/v3/apis/apps/v1`).
//!
//! kubectl needs them for its defaults: `create` and `apply` validate on the server only if the group-version's
//! document has a PATCH operation for the object's kind with a `fieldValidation` parameter, client-side `apply`
//! builds strategic merge patches from the patch facts in `components.schemas` (only where that PATCH operation
//! accepts `application/strategic-merge-patch+json`), and `explain` walks the schemas. The documents have the shape
//! upstream's v3 documents have: a conversion of the swagger paths of each served resource, with the transitive
//! closure of the schemas they refer to. Watch paths (`/watch/…`, deprecated upstream) are left out.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::apiserver::registry::{Registry, ResourceDef, SchemaSource};
use crate::apiserver::schema::{
    gvk, list_schema, Schemas, API_VERSION_DESCRIPTION, COMPONENTS_PREFIX, GVK_EXTENSION, KIND_DESCRIPTION,
};

/// Finds the `openAPIV3Schema` of the CRD version a custom resource ([`SchemaSource::CustomResource`]) is served
/// from; `None` serves the resource as an object with any fields.
pub type CustomResourceSchemas<'a> = &'a dyn Fn(&ResourceDef) -> Option<Value>;

/// The index path of a group-version: `api/v1` for the core group, `apis/<group>/<version>` otherwise.
pub fn document_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// The group and version of an index path (`api/v1`, `apis/apps/v1`), the inverse of [`document_path`].
pub fn parse_document_path(path: &str) -> Option<(String, String)> {
    let path = path.trim_matches('/');
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        ["api", version] if !version.is_empty() => Some((String::new(), version.to_string())),
        ["apis", group, version] if !group.is_empty() && !version.is_empty() => {
            Some((group.to_string(), version.to_string()))
        }
        _ => None,
    }
}

/// Every served group/version, ordered.
pub fn group_versions(registry: &Registry) -> Vec<(String, String)> {
    let set: BTreeSet<(String, String)> = registry.iter().map(|def| (def.group.clone(), def.version.clone())).collect();
    set.into_iter().collect()
}

/// The OpenAPI 3.0 document of one group-version, or `None` if it serves nothing. Pure and uncached; servers go
/// through [`OpenApiDocuments`].
pub fn group_version_document(
    registry: &Registry,
    schemas: &Schemas,
    group: &str,
    version: &str,
    crd_schema: CustomResourceSchemas<'_>,
) -> Option<Value> {
    let defs: Vec<&ResourceDef> =
        registry.iter().filter(|def| def.group == group && def.version == version).map(|def| def.as_ref()).collect();
    if defs.is_empty() {
        return None;
    }
    let mut paths = Map::new();
    let mut local_definitions = Map::new();
    paths.insert(format!("/{}/", document_path(group, version)), resource_list_path(group, version));
    for def in defs {
        let resource = ResourcePaths::new(def, crd_schema, &mut local_definitions);
        resource.add_to(&mut paths);
    }
    let components = referenced_definitions(&paths, &local_definitions, schemas);
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": components},
    }))
}

/// A hash of a document's bytes as the index advertises it (`?hash=`): the same content gives the same hash in every
/// process, so clients may cache a document by its URL for good.
pub fn content_hash(bytes: &[u8]) -> String {
    format!("{:016X}", fnv1a(bytes))
}

/// One served document, serialized once.
#[derive(Debug)]
pub struct Document {
    /// [`content_hash`] of `json`.
    pub hash: String,
    /// The document as `application/json`.
    pub json: Bytes,
}

/// Built documents, kept while the resources of their group-version (and the CRD schemas) stay the same. A
/// document is rebuilt when its group-version's [`ResourceDef`]s or schemas change, so one cache serves every
/// registry the server swaps in.
#[derive(Debug, Default)]
pub struct OpenApiDocuments {
    /// Document path → (fingerprint of its inputs, document).
    cache: Mutex<HashMap<String, (u64, Arc<Document>)>>,
}

impl OpenApiDocuments {
    pub fn new() -> OpenApiDocuments {
        OpenApiDocuments::default()
    }

    /// The `/openapi/v3` index:
    /// `{"paths": {"apis/apps/v1": {"serverRelativeURL": "/openapi/v3/apis/apps/v1?hash=…"}}}`.
    /// Builds every document not yet cached, since the hashes are of their content.
    pub fn index(&self, registry: &Registry, schemas: &Schemas, crd_schema: CustomResourceSchemas<'_>) -> Value {
        let mut paths = Map::new();
        for (group, version) in group_versions(registry) {
            if let Some(document) = self.document(registry, schemas, &group, &version, crd_schema) {
                let path = document_path(&group, &version);
                let url = format!("/openapi/v3/{path}?hash={}", document.hash);
                paths.insert(path, json!({"serverRelativeURL": url}));
            }
        }
        json!({"paths": paths})
    }

    /// The document of one group-version, from the cache when its inputs are unchanged.
    pub fn document(
        &self,
        registry: &Registry,
        schemas: &Schemas,
        group: &str,
        version: &str,
        crd_schema: CustomResourceSchemas<'_>,
    ) -> Option<Arc<Document>> {
        let fingerprint = fingerprint(registry, schemas, group, version, crd_schema)?;
        let path = document_path(group, version);
        if let Some((cached, document)) = self.lock().get(&path) {
            if *cached == fingerprint {
                return Some(document.clone());
            }
        }
        let value = group_version_document(registry, schemas, group, version, crd_schema)?;
        let json = Bytes::from(serde_json::to_vec(&value).expect("a JSON value serializes"));
        let document = Arc::new(Document { hash: content_hash(&json), json });
        self.lock().insert(path, (fingerprint, document.clone()));
        Some(document)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, Arc<Document>)>> {
        self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What a group-version's document is made of: its resource definitions, the CRD schemas they use and which
/// [`Schemas`] instance supplies the rest.
fn fingerprint(
    registry: &Registry,
    schemas: &Schemas,
    group: &str,
    version: &str,
    crd_schema: CustomResourceSchemas<'_>,
) -> Option<u64> {
    let mut text = format!("{:p}", schemas as *const Schemas);
    let mut any = false;
    for def in registry.iter().filter(|def| def.group == group && def.version == version) {
        any = true;
        let _ = write!(text, "\n{def:?}");
        if matches!(def.schema, SchemaSource::CustomResource(_)) {
            let _ = write!(text, "\n{}", crd_schema(def).unwrap_or(Value::Null));
        }
    }
    any.then(|| fnv1a(text.as_bytes()))
}

/// What every group-version's document is made of, in one number: the whole-API documents (OpenAPI v2) are rebuilt
/// when it changes.
pub(crate) fn registry_fingerprint(
    registry: &Registry,
    schemas: &Schemas,
    crd_schema: CustomResourceSchemas<'_>,
) -> u64 {
    let mut text = String::new();
    for (group, version) in group_versions(registry) {
        let _ = write!(text, "{:?},", fingerprint(registry, schemas, &group, &version, crd_schema));
    }
    fnv1a(text.as_bytes())
}

/// 64-bit FNV-1a: small, fixed across processes and platforms.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// Content types every response is offered in.
const RESPONSE_TYPES: &[&str] = &["application/json", "application/yaml"];
/// List responses add the watch stream (`?watch=true`).
const LIST_RESPONSE_TYPES: &[&str] = &["application/json", "application/yaml", "application/json;stream=watch"];
const STRATEGIC_MERGE_PATCH: &str = "application/strategic-merge-patch+json";
/// Patch bodies every resource accepts; built-in kinds add [`STRATEGIC_MERGE_PATCH`].
const PATCH_TYPES: &[&str] =
    &["application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml"];

const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
const SCALE: &str = "io.k8s.api.autoscaling.v1.Scale";
const API_RESOURCE_LIST: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList";

/// Built-in resources (group, plural) whose DELETE upstream answers with the deleted object rather than a Status.
const DELETE_RETURNS_OBJECT: &[(&str, &str)] = &[
    ("", "persistentvolumeclaims"),
    ("", "persistentvolumes"),
    ("", "pods"),
    ("", "podtemplates"),
    ("", "resourcequotas"),
    ("", "serviceaccounts"),
    ("", "services"),
    ("storage.k8s.io", "csidrivers"),
    ("storage.k8s.io", "csinodes"),
    ("storage.k8s.io", "storageclasses"),
    ("storage.k8s.io", "volumeattachments"),
];

/// Query parameters: name, schema type, description.
const QUERY_PARAMETERS: &[(&str, &str, &str)] = &[
    ("allowWatchBookmarks", "boolean", "Asks a watch for BOOKMARK events, which carry only a resourceVersion."),
    ("continue", "string", "The continue token of the previous page of a chunked list."),
    (
        "dryRun",
        "string",
        "When present, the change is checked but not persisted. The only value is All: every stage is run.",
    ),
    ("fieldManager", "string", "The name of the actor making the change, recorded in managedFields."),
    (
        "fieldSelector",
        "string",
        "Restricts the objects returned by their fields, e.g. metadata.name=web. Defaults to everything.",
    ),
    (
        "fieldValidation",
        "string",
        "How unknown or duplicate fields in the request body are treated: Ignore drops them, Warn drops them with a \
         Warning header for each, Strict fails the request with BadRequest.",
    ),
    ("force", "boolean", "Lets an apply request take over fields other managers own. Only for apply patches."),
    ("gracePeriodSeconds", "integer", "Seconds before the object is deleted; 0 deletes immediately."),
    (
        "ignoreStoreReadErrorWithClusterBreakingPotential",
        "boolean",
        "Deletes an object that cannot be read from storage. Dangerous: it may break the cluster.",
    ),
    (
        "labelSelector",
        "string",
        "Restricts the objects returned by their labels, e.g. app=web. Defaults to everything.",
    ),
    ("limit", "integer", "The largest number of objects one response of a list holds; the rest follow with continue."),
    (
        "orphanDependents",
        "boolean",
        "Deprecated, use propagationPolicy: whether dependent objects are orphaned rather than deleted.",
    ),
    ("pretty", "string", "If 'true', the output is indented."),
    (
        "propagationPolicy",
        "string",
        "Whether and how dependents are garbage-collected: Orphan, Background or Foreground.",
    ),
    ("resourceVersion", "string", "Which version of the data a read or watch starts from."),
    ("resourceVersionMatch", "string", "How resourceVersion applies to a list: Exact or NotOlderThan."),
    (
        "sendInitialEvents",
        "boolean",
        "With watch=true, starts the watch with synthetic ADDED events for the current objects, then a bookmark.",
    ),
    ("timeoutSeconds", "integer", "Time limit of a list or watch call, in seconds."),
    ("watch", "boolean", "Watch for changes to the described objects and return them as a stream of events."),
];

const LIST_PARAMETERS: &[&str] = &[
    "allowWatchBookmarks",
    "continue",
    "fieldSelector",
    "labelSelector",
    "limit",
    "resourceVersion",
    "resourceVersionMatch",
    "sendInitialEvents",
    "timeoutSeconds",
    "watch",
];
const WRITE_PARAMETERS: &[&str] = &["dryRun", "fieldManager", "fieldValidation"];
const PATCH_PARAMETERS: &[&str] = &["dryRun", "fieldManager", "fieldValidation", "force"];
const DELETE_PARAMETERS: &[&str] = &[
    "dryRun",
    "gracePeriodSeconds",
    "ignoreStoreReadErrorWithClusterBreakingPotential",
    "orphanDependents",
    "propagationPolicy",
];
const DELETE_COLLECTION_PARAMETERS: &[&str] = &[
    "continue",
    "dryRun",
    "fieldSelector",
    "gracePeriodSeconds",
    "ignoreStoreReadErrorWithClusterBreakingPotential",
    "labelSelector",
    "limit",
    "orphanDependents",
    "propagationPolicy",
    "resourceVersion",
    "resourceVersionMatch",
    "sendInitialEvents",
    "timeoutSeconds",
];

fn query_parameters(names: &[&str]) -> Vec<Value> {
    names
        .iter()
        .map(|name| {
            let (_, kind, description) = QUERY_PARAMETERS
                .iter()
                .find(|(known, _, _)| known == name)
                .expect("every parameter an operation lists is described");
            let schema = json!({"type": kind, "uniqueItems": true});
            json!({"name": name, "in": "query", "description": description, "schema": schema})
        })
        .collect()
}

fn path_parameter(name: &str, description: String) -> Value {
    let schema = json!({"type": "string", "uniqueItems": true});
    json!({"name": name, "in": "path", "description": description, "required": true, "schema": schema})
}

fn schema_ref(definition: &str) -> Value {
    json!({"$ref": format!("{COMPONENTS_PREFIX}{definition}")})
}

/// `content` of a request or response: the same schema under each media type.
fn content(types: &[&str], definition: &str) -> Value {
    types.iter().map(|media_type| (media_type.to_string(), json!({"schema": schema_ref(definition)}))).collect()
}

/// Responses with the given status codes, all of `definition`, plus 401.
fn responses(codes: &[(&str, &str)], definition: &str, types: &[&str]) -> Value {
    let mut responses: Map<String, Value> = codes
        .iter()
        .map(|(code, description)| {
            (code.to_string(), json!({"description": description, "content": content(types, definition)}))
        })
        .collect();
    responses.insert("401".into(), json!({"description": "Unauthorized"}));
    Value::Object(responses)
}

/// What an operation does; each maps to an HTTP method, an operation id verb and an `x-kubernetes-action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    List,
    Create,
    DeleteCollection,
    Read,
    Replace,
    Patch,
    Delete,
}

impl Action {
    /// (HTTP method, operation id verb, `x-kubernetes-action`), as upstream spells them.
    fn names(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Action::List => ("get", "list", "list"),
            Action::Create => ("post", "create", "post"),
            Action::DeleteCollection => ("delete", "delete", "deletecollection"),
            Action::Read => ("get", "read", "get"),
            Action::Replace => ("put", "replace", "put"),
            Action::Patch => ("patch", "patch", "patch"),
            Action::Delete => ("delete", "delete", "delete"),
        }
    }
}

/// What a path's operations act on: the kind, one of its subresources, or the kind in every namespace.
struct Target {
    /// Ends operation ids: "" for the kind, `Status`, `Scale`, `ForAllNamespaces`.
    id_suffix: &'static str,
    /// `Namespaced` in operation ids of namespaced paths.
    namespaced: bool,
    /// Names the target in descriptions: `the specified Deployment`, `status of the specified Deployment`.
    noun: String,
    gvk: Value,
    /// The schema read and written.
    definition: String,
}

/// The paths of one resource, and how its operations are named.
struct ResourcePaths<'a> {
    def: &'a ResourceDef,
    /// Definition names in `components.schemas`.
    kind_definition: String,
    list_definition: String,
    /// `AppsV1`, `CoreV1`, `RbacAuthorizationV1`: the middle of upstream operation ids.
    operation_group: String,
    tag: String,
    strategic_merge_patch: bool,
}

impl<'a> ResourcePaths<'a> {
    /// Also puts a custom resource's schema and list schema into `local_definitions`.
    fn new(
        def: &'a ResourceDef,
        crd_schema: CustomResourceSchemas<'_>,
        local_definitions: &mut Map<String, Value>,
    ) -> ResourcePaths<'a> {
        let (kind_definition, strategic_merge_patch) = match &def.schema {
            SchemaSource::BuiltIn(name) => (name.clone(), true),
            SchemaSource::CustomResource(_) => {
                let name = custom_resource_definition_name(def);
                let schema = custom_resource_schema(def, crd_schema(def));
                local_definitions.insert(name.clone(), schema);
                let list_gvk = gvk(&def.group, &def.version, &def.list_kind());
                local_definitions.insert(format!("{name}List"), list_schema(&name, &def.kind, list_gvk));
                (name, false)
            }
        };
        ResourcePaths {
            def,
            list_definition: format!("{kind_definition}List"),
            kind_definition,
            operation_group: format!("{}{}", group_camel_case(&def.group), capitalize(&def.version)),
            tag: tag(&def.group, &def.version),
            strategic_merge_patch,
        }
    }

    fn add_to(&self, paths: &mut Map<String, Value>) {
        let def = self.def;
        let base = format!("/{}", document_path(&def.group, &def.version));
        let namespace_segment = if def.namespaced { "/namespaces/{namespace}" } else { "" };
        let lists = def.has_verb("list") || def.has_verb("watch");
        let kind = Target {
            id_suffix: "",
            namespaced: def.namespaced,
            noun: format!("the specified {}", def.kind),
            gvk: gvk(&def.group, &def.version, &def.kind),
            definition: self.kind_definition.clone(),
        };

        let collection_actions = [
            (lists, Action::List),
            (def.has_verb("create"), Action::Create),
            (def.has_verb("deletecollection"), Action::DeleteCollection),
        ];
        let collection_path = format!("{base}{namespace_segment}/{}", def.plural);
        self.insert_path(paths, collection_path, &kind, &collection_actions, false);

        let item_actions = [
            (def.has_verb("get"), Action::Read),
            (def.has_verb("update"), Action::Replace),
            (def.has_verb("patch"), Action::Patch),
            (def.has_verb("delete"), Action::Delete),
        ];
        let item_path = format!("{base}{namespace_segment}/{}/{{name}}", def.plural);
        self.insert_path(paths, item_path.clone(), &kind, &item_actions, true);

        if def.namespaced {
            let every_namespace = Target { id_suffix: "ForAllNamespaces", namespaced: false, ..kind };
            let path = format!("{base}/{}", def.plural);
            self.insert_path(paths, path, &every_namespace, &[(lists, Action::List)], false);
        }

        let subresource_actions = [(true, Action::Read), (true, Action::Replace), (true, Action::Patch)];
        if def.status {
            let status = Target {
                id_suffix: "Status",
                namespaced: def.namespaced,
                noun: format!("status of the specified {}", def.kind),
                gvk: gvk(&def.group, &def.version, &def.kind),
                definition: self.kind_definition.clone(),
            };
            self.insert_path(paths, format!("{item_path}/status"), &status, &subresource_actions, true);
        }
        if def.scale.is_some() {
            let scale = Target {
                id_suffix: "Scale",
                namespaced: def.namespaced,
                noun: format!("scale of the specified {}", def.kind),
                gvk: gvk("autoscaling", "v1", "Scale"),
                definition: SCALE.into(),
            };
            self.insert_path(paths, format!("{item_path}/scale"), &scale, &subresource_actions, true);
        }
    }

    /// Adds a path with the operations whose condition holds and the parameters they share (`name`, `namespace`,
    /// `pretty`); nothing if no operation is left (a resource without the verbs).
    fn insert_path(
        &self,
        paths: &mut Map<String, Value>,
        path: String,
        target: &Target,
        actions: &[(bool, Action)],
        item: bool,
    ) {
        let mut path_item: Map<String, Value> = actions
            .iter()
            .filter(|(served, _)| *served)
            .map(|(_, action)| (action.names().0.to_string(), self.operation(*action, target)))
            .collect();
        if path_item.is_empty() {
            return;
        }
        let mut parameters = Vec::new();
        if item {
            parameters.push(path_parameter("name", format!("name of the {}", self.def.kind)));
        }
        if target.namespaced {
            let description = "object name and auth scope, such as for teams and projects";
            parameters.push(path_parameter("namespace", description.into()));
        }
        parameters.extend(query_parameters(&["pretty"]));
        path_item.insert("parameters".into(), Value::Array(parameters));
        paths.insert(path, Value::Object(path_item));
    }

    fn operation(&self, action: Action, target: &Target) -> Value {
        let (_, verb, kubernetes_action) = action.names();
        let kind = &self.def.kind;
        let noun = &target.noun;
        let definition = target.definition.as_str();
        let write_body = || json!({"content": content(&["*/*"], definition), "required": true});
        let delete_body = || json!({"content": content(&["*/*"], DELETE_OPTIONS)});
        let (description, parameters, request_body, responses) = match action {
            Action::List => (
                format!("list or watch objects of kind {kind}"),
                LIST_PARAMETERS,
                None,
                responses(&[("200", "OK")], &self.list_definition, LIST_RESPONSE_TYPES),
            ),
            Action::Create => (
                format!("create a {kind}"),
                WRITE_PARAMETERS,
                Some(write_body()),
                responses(&[("200", "OK"), ("201", "Created"), ("202", "Accepted")], definition, RESPONSE_TYPES),
            ),
            Action::DeleteCollection => (
                format!("delete collection of {kind}"),
                DELETE_COLLECTION_PARAMETERS,
                Some(delete_body()),
                responses(&[("200", "OK")], STATUS, RESPONSE_TYPES),
            ),
            Action::Read => {
                (format!("read {noun}"), &[][..], None, responses(&[("200", "OK")], definition, RESPONSE_TYPES))
            }
            Action::Replace => (
                format!("replace {noun}"),
                WRITE_PARAMETERS,
                Some(write_body()),
                responses(&[("200", "OK"), ("201", "Created")], definition, RESPONSE_TYPES),
            ),
            Action::Patch => {
                let mut types: Vec<&str> = PATCH_TYPES.to_vec();
                if self.strategic_merge_patch {
                    types.push(STRATEGIC_MERGE_PATCH);
                }
                (
                    format!("partially update {noun}"),
                    PATCH_PARAMETERS,
                    Some(json!({"content": content(&types, PATCH), "required": true})),
                    responses(&[("200", "OK"), ("201", "Created")], definition, RESPONSE_TYPES),
                )
            }
            Action::Delete => (
                format!("delete a {kind}"),
                DELETE_PARAMETERS,
                Some(delete_body()),
                responses(&[("200", "OK"), ("202", "Accepted")], self.deleted_definition(), RESPONSE_TYPES),
            ),
        };
        let collection = if action == Action::DeleteCollection { "Collection" } else { "" };
        let scope = if target.namespaced { "Namespaced" } else { "" };
        let id = format!("{verb}{}{collection}{scope}{kind}{}", self.operation_group, target.id_suffix);

        let mut operation = Map::new();
        operation.insert("description".into(), Value::String(description));
        operation.insert("operationId".into(), Value::String(id));
        if !parameters.is_empty() {
            operation.insert("parameters".into(), Value::Array(query_parameters(parameters)));
        }
        if let Some(body) = request_body {
            operation.insert("requestBody".into(), body);
        }
        operation.insert("responses".into(), responses);
        operation.insert("tags".into(), json!([self.tag]));
        operation.insert("x-kubernetes-action".into(), json!(kubernetes_action));
        operation.insert(GVK_EXTENSION.into(), target.gvk.clone());
        Value::Object(operation)
    }

    /// What a DELETE of one object answers with.
    fn deleted_definition(&self) -> &str {
        let def = self.def;
        let built_in = matches!(def.schema, SchemaSource::BuiltIn(_));
        if built_in && DELETE_RETURNS_OBJECT.contains(&(def.group.as_str(), def.plural.as_str())) {
            &self.kind_definition
        } else {
            STATUS
        }
    }
}

/// `GET /apis/<group>/<version>/`: the group-version's APIResourceList (legacy discovery).
fn resource_list_path(group: &str, version: &str) -> Value {
    json!({
        "get": {
            "description": "get available resources",
            "operationId": format!("get{}{}APIResources", group_camel_case(group), capitalize(version)),
            "responses": responses(&[("200", "OK")], API_RESOURCE_LIST, RESPONSE_TYPES),
            "tags": [tag(group, version)],
        },
    })
}

/// Upstream names a custom resource's schema by its group reversed: `com.example.stable.v1.CronTab`.
fn custom_resource_definition_name(def: &ResourceDef) -> String {
    let reversed: Vec<&str> = def.group.split('.').rev().collect();
    format!("{}.{}.{}", reversed.join("."), def.version, def.kind)
}

/// A CRD's `openAPIV3Schema` as a component: with `apiVersion`, `kind`, `metadata` as ObjectMeta and the kind's
/// group/version/kind.
fn custom_resource_schema(def: &ResourceDef, schema: Option<Value>) -> Value {
    let mut schema = match schema {
        Some(Value::Object(schema)) => schema,
        _ => {
            let mut open = Map::new();
            open.insert("type".into(), json!("object"));
            open.insert("x-kubernetes-preserve-unknown-fields".into(), json!(true));
            open
        }
    };
    schema.entry("type").or_insert_with(|| json!("object"));
    let properties = schema.entry("properties").or_insert_with(|| json!({}));
    if let Value::Object(properties) = properties {
        properties
            .entry("apiVersion")
            .or_insert_with(|| json!({"description": API_VERSION_DESCRIPTION, "type": "string"}));
        properties.entry("kind").or_insert_with(|| json!({"description": KIND_DESCRIPTION, "type": "string"}));
        properties.insert(
            "metadata".into(),
            json!({"allOf": [schema_ref(OBJECT_META)], "description": "Standard object's metadata."}),
        );
    }
    schema.insert(GVK_EXTENSION.into(), json!([gvk(&def.group, &def.version, &def.kind)]));
    Value::Object(schema)
}

/// The definitions `paths` refer to, directly or through other definitions, from `local` first, then `schemas`.
fn referenced_definitions(
    paths: &Map<String, Value>,
    local: &Map<String, Value>,
    schemas: &Schemas,
) -> Map<String, Value> {
    let mut found = Map::new();
    let mut pending: Vec<String> = Vec::new();
    paths.values().for_each(|path_item| collect_refs(path_item, &mut pending));
    while let Some(name) = pending.pop() {
        if found.contains_key(&name) {
            continue;
        }
        let Some(schema) = local.get(&name).or_else(|| schemas.definition(&name)) else { continue };
        collect_refs(schema, &mut pending);
        found.insert(name, schema.clone());
    }
    found
}

/// Appends the definition names of every `$ref` inside `value`.
fn collect_refs(value: &Value, names: &mut Vec<String>) {
    match value {
        Value::Object(object) => {
            for (key, child) in object {
                match (key.as_str(), child) {
                    ("$ref", Value::String(reference)) => {
                        if let Some(name) = reference.strip_prefix(COMPONENTS_PREFIX) {
                            names.push(name.to_string());
                        }
                    }
                    _ => collect_refs(child, names),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_refs(item, names)),
        _ => {}
    }
}

/// A group as operation ids spell it: `rbac.authorization.k8s.io` → `RbacAuthorization`, the core group `Core`.
fn group_camel_case(group: &str) -> String {
    if group.is_empty() {
        return "Core".into();
    }
    let group = group.strip_suffix(".k8s.io").unwrap_or(group);
    group.split(['.', '-']).map(capitalize).collect()
}

/// The tag of a group-version's operations: `rbacAuthorization_v1`, `core_v1`.
fn tag(group: &str, version: &str) -> String {
    format!("{}_{version}", lower_first(&group_camel_case(group)))
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn lower_first(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::registry::{built_in_resources, ScalePaths};
    use crate::apiserver::schema::FieldFactsSource;

    fn no_custom_resources(_: &ResourceDef) -> Option<Value> {
        None
    }

    fn built_in_document(group: &str, version: &str) -> Value {
        let registry = Registry::new(built_in_resources());
        group_version_document(&registry, Schemas::shared(), group, version, &no_custom_resources)
            .unwrap_or_else(|| panic!("{group}/{version} is served"))
    }

    /// What kubectl's validation looks for: a PATCH operation for the kind with a `fieldValidation` parameter.
    fn patch_operation<'a>(document: &'a Value, group: &str, version: &str, kind: &str) -> Option<&'a Value> {
        let wanted = gvk(group, version, kind);
        document["paths"].as_object()?.values().filter_map(|path| path.get("patch")).find(|operation| {
            operation[GVK_EXTENSION] == wanted
                && operation["parameters"]
                    .as_array()
                    .is_some_and(|parameters| parameters.iter().any(|parameter| parameter["name"] == "fieldValidation"))
        })
    }

    /// What kubectl's client-side apply looks for: the component carrying the kind's group/version/kind.
    fn kind_schema<'a>(document: &'a Value, group: &str, version: &str, kind: &str) -> Option<(&'a String, &'a Value)> {
        let wanted = gvk(group, version, kind);
        document["components"]["schemas"]
            .as_object()?
            .iter()
            .find(|(_, schema)| schema[GVK_EXTENSION].as_array().is_some_and(|kinds| kinds.contains(&wanted)))
    }

    #[test]
    fn deployment_patch_offers_field_validation_and_strategic_merge() {
        let document = built_in_document("apps", "v1");
        let item = &document["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"];
        let patch = &item["patch"];
        assert_eq!(patch["operationId"], "patchAppsV1NamespacedDeployment");
        assert_eq!(patch["x-kubernetes-action"], "patch");
        assert_eq!(patch[GVK_EXTENSION], json!({"group": "apps", "kind": "Deployment", "version": "v1"}));
        let names: Vec<&Value> = patch["parameters"].as_array().unwrap().iter().map(|p| &p["name"]).collect();
        assert_eq!(names, ["dryRun", "fieldManager", "fieldValidation", "force"]);
        assert!(patch["requestBody"]["content"][STRATEGIC_MERGE_PATCH].is_object());
        assert!(patch["requestBody"]["content"]["application/apply-patch+yaml"].is_object());
        let shared: Vec<&Value> = item["parameters"].as_array().unwrap().iter().map(|p| &p["name"]).collect();
        assert_eq!(shared, ["name", "namespace", "pretty"]);
        assert!(patch_operation(&document, "apps", "v1", "Deployment").is_some());
        let scale = &document["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["patch"];
        assert_eq!(scale["operationId"], "patchAppsV1NamespacedDeploymentScale");
        assert_eq!(scale[GVK_EXTENSION]["kind"], "Scale");
        let all = &document["paths"]["/apis/apps/v1/deployments"]["get"];
        assert_eq!(all["operationId"], "listAppsV1DeploymentForAllNamespaces");
    }

    #[test]
    fn core_document_has_pods_and_cluster_scoped_namespaces() {
        let document = built_in_document("", "v1");
        assert!(patch_operation(&document, "", "v1", "Pod").is_some());
        let list = &document["paths"]["/api/v1/namespaces/{namespace}/pods"]["get"];
        assert_eq!(list["operationId"], "listCoreV1NamespacedPod");
        assert_eq!(list["x-kubernetes-action"], "list");
        let list_parameters: Vec<&Value> = list["parameters"].as_array().unwrap().iter().map(|p| &p["name"]).collect();
        assert!(list_parameters.contains(&&json!("watch")) && list_parameters.contains(&&json!("labelSelector")));
        let namespaces = &document["paths"]["/api/v1/namespaces/{name}"];
        assert_eq!(namespaces["get"]["operationId"], "readCoreV1Namespace");
        // Namespaces have no deletecollection.
        assert!(document["paths"]["/api/v1/namespaces"].get("delete").is_none());
        // Bindings can only be created.
        let bindings = document["paths"]["/api/v1/namespaces/{namespace}/bindings"].as_object().unwrap();
        assert_eq!(bindings.keys().collect::<Vec<_>>(), ["parameters", "post"]);
        assert!(document["paths"].get("/api/v1/namespaces/{namespace}/bindings/{name}").is_none());
    }

    #[test]
    fn components_carry_the_kind_and_its_patch_facts() {
        let document = built_in_document("apps", "v1");
        let (name, _) = kind_schema(&document, "apps", "v1", "Deployment").expect("a schema carries Deployment");
        assert_eq!(name, "io.k8s.api.apps.v1.Deployment");
        let pod_spec = &document["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"];
        assert_eq!(pod_spec["properties"]["containers"]["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(pod_spec["properties"]["containers"]["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(
            document["components"]["schemas"]["io.k8s.api.apps.v1.DeploymentStatus"]["properties"]["conditions"]
                ["x-kubernetes-patch-merge-key"],
            "type"
        );
        // Only what apps/v1 refers to: no Service schema.
        assert!(document["components"]["schemas"].get("io.k8s.api.core.v1.Service").is_none());
    }

    fn crontab_def() -> ResourceDef {
        ResourceDef {
            group: "stable.example.com".into(),
            version: "v1".into(),
            kind: "CronTab".into(),
            plural: "crontabs".into(),
            singular: "crontab".into(),
            namespaced: true,
            short_names: vec!["ct".into()],
            categories: Vec::new(),
            verbs: ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
                .map(String::from)
                .to_vec(),
            status: true,
            scale: Some(ScalePaths {
                spec_replicas: "spec.replicas".into(),
                status_replicas: "status.replicas".into(),
                label_selector: Some("status.selector".into()),
            }),
            schema: SchemaSource::CustomResource("crontabs.stable.example.com".into()),
            conversion: None,
        }
    }

    fn crontab_schema(_: &ResourceDef) -> Option<Value> {
        Some(json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "properties": {
                        "cronSpec": {"type": "string"},
                        "ports": {
                            "type": "array",
                            "x-kubernetes-list-type": "map",
                            "x-kubernetes-list-map-keys": ["port"],
                            "items": {"type": "object", "properties": {"port": {"type": "integer"}}},
                        },
                    },
                },
            },
        }))
    }

    #[test]
    fn custom_resources_get_documents_without_strategic_merge_patch() {
        let registry = Registry::new(built_in_resources().into_iter().chain([crontab_def()]));
        let document =
            group_version_document(&registry, Schemas::shared(), "stable.example.com", "v1", &crontab_schema).unwrap();
        let patch = patch_operation(&document, "stable.example.com", "v1", "CronTab").expect("a PATCH op for CronTab");
        assert_eq!(patch["operationId"], "patchStableExampleComV1NamespacedCronTab");
        assert!(patch["requestBody"]["content"].get(STRATEGIC_MERGE_PATCH).is_none());
        assert!(patch["requestBody"]["content"]["application/merge-patch+json"].is_object());
        let (name, schema) = kind_schema(&document, "stable.example.com", "v1", "CronTab").unwrap();
        assert_eq!(name, "com.example.stable.v1.CronTab");
        assert_eq!(schema["properties"]["spec"]["properties"]["ports"]["x-kubernetes-list-map-keys"], json!(["port"]));
        assert!(kind_schema(&document, "stable.example.com", "v1", "CronTabList").is_some());
        let facts = Schemas::shared().facts_for_custom_resource(schema);
        assert_eq!(facts.field_facts(&["spec", "ports"]).list_map_keys, vec!["port"]);
        let scale = &document["paths"]["/apis/stable.example.com/v1/namespaces/{namespace}/crontabs/{name}/scale"];
        assert!(scale["patch"]["requestBody"]["content"].get(STRATEGIC_MERGE_PATCH).is_none());
        assert_refs_resolve(&document);
    }

    /// Every `$ref` in the document names one of its components.
    fn assert_refs_resolve(document: &Value) {
        let components = document["components"]["schemas"].as_object().expect("components.schemas");
        let mut names = Vec::new();
        collect_refs(document, &mut names);
        assert!(!names.is_empty());
        for name in names {
            assert!(components.contains_key(&name), "dangling ref to {name}");
        }
    }

    #[test]
    fn every_document_is_json_with_resolvable_refs() {
        let registry = Registry::new(built_in_resources());
        let documents = OpenApiDocuments::new();
        for (group, version) in group_versions(&registry) {
            let document =
                documents.document(&registry, Schemas::shared(), &group, &version, &no_custom_resources).unwrap();
            let value: Value = serde_json::from_slice(&document.json).expect("valid JSON");
            assert_eq!(value["openapi"], "3.0.0");
            assert_refs_resolve(&value);
        }
    }

    #[test]
    fn index_lists_every_group_version_with_a_stable_hash() {
        let registry = Registry::new(built_in_resources());
        let index = OpenApiDocuments::new().index(&registry, Schemas::shared(), &no_custom_resources);
        let paths = index["paths"].as_object().unwrap();
        for def in registry.iter() {
            assert!(paths.contains_key(&document_path(&def.group, &def.version)), "{}", def.api_version());
        }
        assert_eq!(paths.len(), group_versions(&registry).len());
        let apps = paths["apis/apps/v1"]["serverRelativeURL"].as_str().unwrap();
        assert!(apps.starts_with("/openapi/v3/apis/apps/v1?hash="), "{apps}");
        assert!(paths.contains_key("api/v1"));
        // Another cache, as in another process, advertises the same hash for the same content.
        let again = OpenApiDocuments::new().index(&registry, Schemas::shared(), &no_custom_resources);
        assert_eq!(again, index);
    }

    #[test]
    fn cached_documents_follow_the_registry() {
        let documents = OpenApiDocuments::new();
        let schemas = Schemas::shared();
        let registry = Registry::new(built_in_resources().into_iter().chain([crontab_def()]));
        let first = documents.document(&registry, schemas, "stable.example.com", "v1", &crontab_schema).unwrap();
        let second = documents.document(&registry, schemas, "stable.example.com", "v1", &crontab_schema).unwrap();
        assert!(Arc::ptr_eq(&first, &second), "an unchanged group-version is served from the cache");
        let open = documents.document(&registry, schemas, "stable.example.com", "v1", &no_custom_resources).unwrap();
        assert_ne!(open.hash, first.hash, "a changed CRD schema changes the document");
        let without = Registry::new(built_in_resources());
        assert!(documents.document(&without, schemas, "stable.example.com", "v1", &crontab_schema).is_none());
    }

    #[test]
    fn document_paths_round_trip() {
        assert_eq!(document_path("", "v1"), "api/v1");
        assert_eq!(document_path("apps", "v1"), "apis/apps/v1");
        assert_eq!(parse_document_path("api/v1"), Some((String::new(), "v1".into())));
        assert_eq!(parse_document_path("/apis/apps/v1"), Some(("apps".into(), "v1".into())));
        assert_eq!(parse_document_path("apis/apps"), None);
        assert_eq!(parse_document_path("version"), None);
    }

    #[test]
    fn operation_ids_name_groups_like_upstream() {
        let document = built_in_document("rbac.authorization.k8s.io", "v1");
        let roles = &document["paths"]["/apis/rbac.authorization.k8s.io/v1/clusterroles"];
        assert_eq!(roles["get"]["operationId"], "listRbacAuthorizationV1ClusterRole");
        assert_eq!(roles["delete"]["operationId"], "deleteRbacAuthorizationV1CollectionClusterRole");
        assert_eq!(roles["get"]["tags"], json!(["rbacAuthorization_v1"]));
        let document = built_in_document("flowcontrol.apiserver.k8s.io", "v1");
        assert!(document["paths"]["/apis/flowcontrol.apiserver.k8s.io/v1/flowschemas/{name}/status"]["patch"]
            ["operationId"]
            .as_str()
            .is_some_and(|id| id == "patchFlowcontrolApiserverV1FlowSchemaStatus"));
    }
}
