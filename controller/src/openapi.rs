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

use crate::registry::{Registry, ResourceDef, SchemaSource};
use crate::schema::{
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
        let resource = ResourcePaths::new(def, schemas, crd_schema, &mut local_definitions);
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
        schemas: &Schemas,
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
        let list_definition = format!("{kind_definition}List");
        // A built-in kind without a list schema cannot be listed; nothing refers to a missing schema.
        let list_definition =
            if local_definitions.contains_key(&list_definition) || schemas.definition(&list_definition).is_some() {
                list_definition
            } else {
                STATUS.to_string()
            };
        let group_words = group_words(&def.group);
        let operation_group = format!(
            "{}{}",
            group_words.iter().map(|word| capitalize(word)).collect::<String>(),
            capitalize(&def.version)
        );
        let tag = format!(
            "{}_{}",
            lower_first(&group_words.iter().map(|word| capitalize(word)).collect::<String>()),
            def.version
        );
        ResourcePaths { def, kind_definition, list_definition, operation_group, tag, strategic_merge_patch }
    }

    fn add_to(&self, paths: &mut Map<String, Value>) {
        let def = self.def;
        let base = if def.group.is_empty() {
            format!("/api/{}", def.version)
        } else {
            format!("/apis/{}/{}", def.group, def.version)
        };
        let (scope, namespace_segment) =
            if def.namespaced { ("Namespaced", "/namespaces/{namespace}") } else { ("", "") };
        let kind = &def.kind;
        let kind_gvk = gvk(&def.group, &def.version, kind);

        let mut collection = Map::new();
        if def.has_verb("list") || def.has_verb("watch") {
            collection.insert(
                "get".into(),
                self.operation(
                    "list",
                    &format!("list{}{scope}{kind}", self.operation_group),
                    format!("list or watch objects of kind {kind}"),
                    &kind_gvk,
                    query_parameters(LIST_PARAMETERS),
                    None,
                    responses(&[("200", "OK")], &self.list_definition, LIST_RESPONSE_TYPES),
                ),
            );
        }
        if def.has_verb("create") {
            collection.insert(
                "post".into(),
                self.operation(
                    "post",
                    &format!("create{}{scope}{kind}", self.operation_group),
                    format!("create a {kind}"),
                    &kind_gvk,
                    query_parameters(WRITE_PARAMETERS),
                    Some(json!({"content": content(&["*/*"], &self.kind_definition), "required": true})),
                    responses(
                        &[("200", "OK"), ("201", "Created"), ("202", "Accepted")],
                        &self.kind_definition,
                        RESPONSE_TYPES,
                    ),
                ),
            );
        }
        if def.has_verb("deletecollection") {
            collection.insert(
                "delete".into(),
                self.operation(
                    "deletecollection",
                    &format!("delete{}Collection{scope}{kind}", self.operation_group),
                    format!("delete collection of {kind}"),
                    &kind_gvk,
                    query_parameters(DELETE_COLLECTION_PARAMETERS),
                    Some(json!({"content": content(&["*/*"], DELETE_OPTIONS)})),
                    responses(&[("200", "OK")], STATUS, RESPONSE_TYPES),
                ),
            );
        }
        self.insert_path(paths, format!("{base}{namespace_segment}/{}", def.plural), collection, false);

        let mut item = Map::new();
        if def.has_verb("get") {
            item.insert(
                "get".into(),
                self.operation(
                    "get",
                    &format!("read{}{scope}{kind}", self.operation_group),
                    format!("read the specified {kind}"),
                    &kind_gvk,
                    Vec::new(),
                    None,
                    responses(&[("200", "OK")], &self.kind_definition, RESPONSE_TYPES),
                ),
            );
        }
        if def.has_verb("update") {
            item.insert(
                "put".into(),
                self.replace(
                    &format!("replace{}{scope}{kind}", self.operation_group),
                    format!("replace the specified {kind}"),
                    &kind_gvk,
                    &self.kind_definition,
                ),
            );
        }
        if def.has_verb("patch") {
            item.insert(
                "patch".into(),
                self.patch(
                    &format!("patch{}{scope}{kind}", self.operation_group),
                    format!("partially update the specified {kind}"),
                    &kind_gvk,
                    &self.kind_definition,
                ),
            );
        }
        if def.has_verb("delete") {
            item.insert(
                "delete".into(),
                self.operation(
                    "delete",
                    &format!("delete{}{scope}{kind}", self.operation_group),
                    format!("delete a {kind}"),
                    &kind_gvk,
                    query_parameters(DELETE_PARAMETERS),
                    Some(json!({"content": content(&["*/*"], DELETE_OPTIONS)})),
                    responses(&[("200", "OK"), ("202", "Accepted")], self.deleted_definition(), RESPONSE_TYPES),
                ),
            );
        }
        let item_path = format!("{base}{namespace_segment}/{}/{{name}}", def.plural);
        self.insert_path(paths, item_path.clone(), item, true);

        if def.namespaced && (def.has_verb("list") || def.has_verb("watch")) {
            let mut all_namespaces = Map::new();
            all_namespaces.insert(
                "get".into(),
                self.operation(
                    "list",
                    &format!("list{}{kind}ForAllNamespaces", self.operation_group),
                    format!("list or watch objects of kind {kind} in every namespace"),
                    &kind_gvk,
                    query_parameters(LIST_PARAMETERS),
                    None,
                    responses(&[("200", "OK")], &self.list_definition, LIST_RESPONSE_TYPES),
                ),
            );
            let mut path_item = Map::new();
            path_item.insert("parameters".into(), Value::Array(query_parameters(&["pretty"])));
            path_item.extend(all_namespaces);
            paths.insert(format!("{base}/{}", def.plural), Value::Object(path_item));
        }

        if def.status {
            self.add_subresource(paths, &item_path, "status", "Status", &kind_gvk, &self.kind_definition);
        }
        if def.scale.is_some() {
            self.add_subresource(paths, &item_path, "scale", "Scale", &gvk("autoscaling", "v1", "Scale"), SCALE);
        }
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

    /// `/status` or `/scale`: read, replace and patch.
    fn add_subresource(
        &self,
        paths: &mut Map<String, Value>,
        item_path: &str,
        subresource: &str,
        suffix: &str,
        gvk: &Value,
        definition: &str,
    ) {
        let kind = &self.def.kind;
        let scope = if self.def.namespaced { "Namespaced" } else { "" };
        let stem = format!("{}{scope}{kind}{suffix}", self.operation_group);
        let mut operations = Map::new();
        operations.insert(
            "get".into(),
            self.operation(
                "get",
                &format!("read{stem}"),
                format!("read {subresource} of the specified {kind}"),
                gvk,
                Vec::new(),
                None,
                responses(&[("200", "OK")], definition, RESPONSE_TYPES),
            ),
        );
        operations.insert(
            "put".into(),
            self.replace(
                &format!("replace{stem}"),
                format!("replace {subresource} of the specified {kind}"),
                gvk,
                definition,
            ),
        );
        operations.insert(
            "patch".into(),
            self.patch(
                &format!("patch{stem}"),
                format!("partially update {subresource} of the specified {kind}"),
                gvk,
                definition,
            ),
        );
        self.insert_path(paths, format!("{item_path}/{subresource}"), operations, true);
    }

    fn replace(&self, id: &str, description: String, gvk: &Value, definition: &str) -> Value {
        self.operation(
            "put",
            id,
            description,
            gvk,
            query_parameters(WRITE_PARAMETERS),
            Some(json!({"content": content(&["*/*"], definition), "required": true})),
            responses(&[("200", "OK"), ("201", "Created")], definition, RESPONSE_TYPES),
        )
    }

    fn patch(&self, id: &str, description: String, gvk: &Value, definition: &str) -> Value {
        let mut types: Vec<&str> = PATCH_TYPES.to_vec();
        if self.strategic_merge_patch {
            types.push(STRATEGIC_MERGE_PATCH);
        }
        self.operation(
            "patch",
            id,
            description,
            gvk,
            query_parameters(PATCH_PARAMETERS),
            Some(json!({"content": content(&types, PATCH), "required": true})),
            responses(&[("200", "OK"), ("201", "Created")], definition, RESPONSE_TYPES),
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn operation(
        &self,
        action: &str,
        id: &str,
        description: String,
        gvk: &Value,
        parameters: Vec<Value>,
        request_body: Option<Value>,
        responses: Value,
    ) -> Value {
        let mut operation = Map::new();
        operation.insert("description".into(), Value::String(description));
        operation.insert("operationId".into(), Value::String(id.to_string()));
        if !parameters.is_empty() {
            operation.insert("parameters".into(), Value::Array(parameters));
        }
        if let Some(body) = request_body {
            operation.insert("requestBody".into(), body);
        }
        operation.insert("responses".into(), responses);
        operation.insert("tags".into(), json!([self.tag]));
        operation.insert("x-kubernetes-action".into(), Value::String(action.to_string()));
        operation.insert(GVK_EXTENSION.into(), gvk.clone());
        Value::Object(operation)
    }

    /// Adds a path with its operations and the parameters they share (`name`, `namespace`, `pretty`), unless it
    /// has no operations (a resource without the verbs).
    fn insert_path(&self, paths: &mut Map<String, Value>, path: String, operations: Map<String, Value>, item: bool) {
        if operations.is_empty() {
            return;
        }
        let mut parameters = Vec::new();
        if item {
            parameters.push(path_parameter("name", format!("name of the {}", self.def.kind)));
        }
        if self.def.namespaced {
            parameters
                .push(path_parameter("namespace", "object name and auth scope, such as for teams and projects".into()));
        }
        parameters.extend(query_parameters(&["pretty"]));
        let mut path_item = operations;
        path_item.insert("parameters".into(), Value::Array(parameters));
        paths.insert(path, Value::Object(path_item));
    }
}

/// `GET /apis/<group>/<version>/`: the group-version's APIResourceList (legacy discovery).
fn resource_list_path(group: &str, version: &str) -> Value {
    let words = group_words(group);
    let group_camel: String = words.iter().map(|word| capitalize(word)).collect();
    let types = ["application/json", "application/yaml"];
    json!({
        "get": {
            "description": "get available resources",
            "operationId": format!("get{group_camel}{}APIResources", capitalize(version)),
            "responses": responses(&[("200", "OK")], API_RESOURCE_LIST, &types),
            "tags": [format!("{}_{version}", lower_first(&group_camel))],
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
    collect_refs(&Value::Object(paths.clone()), &mut pending);
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

/// The words of a group in operation ids: `rbac.authorization.k8s.io` → `rbac`, `authorization`; the core group is
/// `core`.
fn group_words(group: &str) -> Vec<String> {
    if group.is_empty() {
        return vec!["core".into()];
    }
    let group = group.strip_suffix(".k8s.io").unwrap_or(group);
    group.split(['.', '-']).filter(|word| !word.is_empty()).map(str::to_string).collect()
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
    use crate::registry::{built_in_resources, ScalePaths};
    use crate::schema::FieldFactsSource;

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
