//! The OpenAPI v2 document (`/openapi/v2`), in JSON and in gnostic's protobuf form.
//!
//! kubectl validates a `kind: List` manifest on the client against it (the server cannot check the query parameter
//! for a List), `kubectl explain --output plaintext-openapiv2` reads it, and so do helm and other client-go tools.
//! It is made from the v3 group-version documents ([`crate::apiserver::openapi`]), so both describe the same schemas and paths:
//! refs move from `#/components/schemas/` to `#/definitions/`, a request body becomes a `body` parameter, media
//! types become `consumes` and `produces`, and what v2 cannot say (`nullable`, `oneOf`, ...) is left out.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::apiserver::openapi::{content_hash, group_version_document, group_versions, CustomResourceSchemas};
use crate::apiserver::registry::Registry;
use crate::apiserver::schema::{Schemas, COMPONENTS_PREFIX};

/// Where OpenAPI v2 documents keep their named schemas.
pub const DEFINITIONS_PREFIX: &str = "#/definitions/";

/// The media type kubectl and client-go ask for.
pub const PROTOBUF_MEDIA_TYPE: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";
/// The same protobuf document under the spelling that is a valid media type: `@` is not allowed in one, so
/// protobuf answers always carry this `Content-Type` (client-go refuses the other), as upstream's.
pub const PROTOBUF_MEDIA_TYPE_DOTTED: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// One encoding of the document, serialized once.
#[derive(Debug)]
pub struct Encoded {
    pub bytes: Bytes,
    /// A strong validator of `bytes` for `ETag` / `If-None-Match`, quoted as HTTP wants it.
    pub etag: String,
}

impl Encoded {
    fn new(bytes: Vec<u8>) -> Encoded {
        let etag = format!("\"{}\"", content_hash(&bytes));
        Encoded { bytes: Bytes::from(bytes), etag }
    }
}

/// The document in both encodings.
#[derive(Debug)]
pub struct DocumentV2 {
    pub json: Encoded,
    pub protobuf: Encoded,
}

/// Which encoding an `Accept` header asks for, as upstream negotiates it: the first acceptable media range by
/// preference (`q`, then the more specific), JSON for `*/*` or no header; `None` answers 406. The answer is the
/// `Content-Type` to send: `application/json` or [`PROTOBUF_MEDIA_TYPE_DOTTED`].
pub fn negotiate(accept: &str) -> Option<&'static str> {
    let accept = if accept.trim().is_empty() { "*/*" } else { accept };
    let mut ranges: Vec<(f32, usize, usize, &str)> = accept
        .split(',')
        .enumerate()
        .filter_map(|(position, range)| {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().filter(|media| !media.is_empty())?;
            let quality = parts
                .filter_map(|parameter| parameter.strip_prefix("q="))
                .find_map(|value| value.parse::<f32>().ok())
                .unwrap_or(1.0);
            Some((quality, media.matches('*').count(), position, media))
        })
        .filter(|(quality, ..)| *quality > 0.0)
        .collect();
    ranges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let offered = ["application/json", PROTOBUF_MEDIA_TYPE, PROTOBUF_MEDIA_TYPE_DOTTED];
    let chosen = ranges.iter().find_map(|(_, _, _, media)| {
        let (kind, subtype) = media.split_once('/')?;
        offered.into_iter().find(|offer| {
            let (offer_kind, offer_subtype) = offer.split_once('/').expect("offers are media types");
            (kind == "*" || kind == offer_kind) && (subtype == "*" || subtype == offer_subtype)
        })
    })?;
    Some(if chosen == PROTOBUF_MEDIA_TYPE { PROTOBUF_MEDIA_TYPE_DOTTED } else { chosen })
}

/// The built document, kept while no group-version's inputs change (CRDs coming and going rebuild it).
#[derive(Debug, Default)]
pub struct OpenApiV2Documents {
    cache: Mutex<Option<(u64, Arc<DocumentV2>)>>,
}

impl OpenApiV2Documents {
    pub fn new() -> OpenApiV2Documents {
        OpenApiV2Documents::default()
    }

    pub fn document(
        &self,
        registry: &Registry,
        schemas: &Schemas,
        crd_schema: CustomResourceSchemas<'_>,
    ) -> Arc<DocumentV2> {
        let fingerprint = crate::apiserver::openapi::registry_fingerprint(registry, schemas, crd_schema);
        let mut cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((cached, document)) = cache.as_ref() {
            if *cached == fingerprint {
                return document.clone();
            }
        }
        let value = swagger_document(registry, schemas, crd_schema);
        let json = serde_json::to_vec(&value).expect("a JSON value serializes");
        let protobuf = crate::apiserver::gnostic::encode_document(&value);
        let document = Arc::new(DocumentV2 { json: Encoded::new(json), protobuf: Encoded::new(protobuf) });
        *cache = Some((fingerprint, document.clone()));
        document
    }
}

/// The whole Swagger 2.0 document: every group-version's paths and the definitions they refer to. Pure and
/// uncached; servers go through [`OpenApiV2Documents`].
pub fn swagger_document(registry: &Registry, schemas: &Schemas, crd_schema: CustomResourceSchemas<'_>) -> Value {
    let mut paths = Map::new();
    let mut definitions = Map::new();
    for (group, version) in group_versions(registry) {
        let Some(document) = group_version_document(registry, schemas, &group, &version, crd_schema) else {
            continue;
        };
        for (path, item) in document["paths"].as_object().into_iter().flatten() {
            paths.insert(path.clone(), path_item(item));
        }
        for (name, schema) in document["components"]["schemas"].as_object().into_iter().flatten() {
            definitions.entry(name.clone()).or_insert_with(|| kind_schema_v2(schema));
        }
    }
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": crate::apiserver::KUBERNETES_VERSION},
        "paths": paths,
        "definitions": definitions,
        "security": [{"BearerToken": []}],
        "securityDefinitions": {
            "BearerToken": {
                "description": "Bearer Token authentication",
                "in": "header",
                "name": "authorization",
                "type": "apiKey",
            },
        },
    })
}

/// A kind's schema in v2. A custom resource whose schema keeps unknown fields at its root is published as a bare
/// object, as upstream does: kubectl's client-side validation takes listed properties for the only ones allowed,
/// so even apiVersion, kind and metadata are left out.
fn kind_schema_v2(schema: &Value) -> Value {
    let gvk = schema.get("x-kubernetes-group-version-kind");
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true)) && gvk.is_some() {
        return json!({"type": "object", "x-kubernetes-group-version-kind": gvk});
    }
    schema_v2(schema)
}

/// Schema keywords OpenAPI v2 has; the rest of a v3 schema (`nullable`, `oneOf`, `anyOf`, `not`, `writeOnly`,
/// `deprecated`) is dropped. `x-` extensions are kept.
const V2_SCHEMA_KEYWORDS: &[&str] = &[
    "$ref",
    "additionalProperties",
    "allOf",
    "default",
    "description",
    "enum",
    "example",
    "exclusiveMaximum",
    "exclusiveMinimum",
    "format",
    "items",
    "maxItems",
    "maxLength",
    "maxProperties",
    "maximum",
    "minItems",
    "minLength",
    "minProperties",
    "minimum",
    "multipleOf",
    "pattern",
    "properties",
    "readOnly",
    "required",
    "title",
    "type",
    "uniqueItems",
];

/// A v3 schema in v2 terms. `allOf` around a single ref (how v3 puts a description beside a ref) becomes the ref
/// with the description beside it, as upstream's v2 spells it.
pub fn schema_v2(schema: &Value) -> Value {
    let Value::Object(object) = schema else { return schema.clone() };
    let mut converted = Map::new();
    for (key, value) in object {
        let value = match key.as_str() {
            "$ref" => match value.as_str().and_then(|reference| reference.strip_prefix(COMPONENTS_PREFIX)) {
                Some(name) => json!(format!("{DEFINITIONS_PREFIX}{name}")),
                None => value.clone(),
            },
            "properties" => Value::Object(
                value.as_object().into_iter().flatten().map(|(name, child)| (name.clone(), schema_v2(child))).collect(),
            ),
            "items" | "additionalProperties" if value.is_object() => schema_v2(value),
            "allOf" => match value.as_array().map(Vec::as_slice) {
                Some([single]) if single.get("$ref").is_some() && !object.contains_key("$ref") => {
                    if let Value::Object(reference) = schema_v2(single) {
                        converted.extend(reference);
                    }
                    continue;
                }
                _ => Value::Array(value.as_array().into_iter().flatten().map(schema_v2).collect()),
            },
            key if key.starts_with("x-") || V2_SCHEMA_KEYWORDS.contains(&key) => value.clone(),
            _ => continue,
        };
        converted.insert(key.clone(), value);
    }
    Value::Object(converted)
}

/// A v3 path item in v2 terms: its shared parameters and each operation.
fn path_item(item: &Value) -> Value {
    let mut converted = Map::new();
    for (key, value) in item.as_object().into_iter().flatten() {
        let value = match key.as_str() {
            "parameters" => Value::Array(value.as_array().into_iter().flatten().map(parameter).collect()),
            "get" | "put" | "post" | "delete" | "options" | "head" | "patch" => operation(value),
            _ => value.clone(),
        };
        converted.insert(key.clone(), value);
    }
    Value::Object(converted)
}

/// A v3 operation in v2 terms: the request body as the first parameter (`body`), its media types as `consumes`
/// (`*/*` without a body, as upstream), the responses' as `produces`.
fn operation(operation: &Value) -> Value {
    let mut converted = Map::new();
    let mut parameters = Vec::new();
    let mut consumes = vec![json!("*/*")];
    if let Some(body) = operation.get("requestBody") {
        let content = body["content"].as_object();
        consumes = content.into_iter().flatten().map(|(media, _)| json!(media)).collect();
        let schema = content.into_iter().flatten().find_map(|(_, media)| media.get("schema")).cloned();
        let mut parameter = json!({"in": "body", "name": "body", "schema": schema_v2(&schema.unwrap_or(json!({})))});
        if body["required"] == true {
            parameter["required"] = json!(true);
        }
        parameters.push(parameter);
    }
    parameters.extend(operation["parameters"].as_array().into_iter().flatten().map(self::parameter));
    let mut produces: Vec<Value> = Vec::new();
    let mut responses = Map::new();
    for (code, response) in operation["responses"].as_object().into_iter().flatten() {
        let mut converted_response = json!({"description": response["description"]});
        if let Some(content) = response["content"].as_object() {
            for media in content.keys() {
                if !produces.contains(&json!(media)) {
                    produces.push(json!(media));
                }
            }
            if let Some(schema) = content.values().find_map(|media| media.get("schema")) {
                converted_response["schema"] = schema_v2(schema);
            }
        }
        responses.insert(code.clone(), converted_response);
    }
    for (key, value) in operation.as_object().into_iter().flatten() {
        match key.as_str() {
            "requestBody" | "parameters" | "responses" => {}
            _ => {
                converted.insert(key.clone(), value.clone());
            }
        }
    }
    converted.insert("consumes".into(), Value::Array(consumes));
    if !parameters.is_empty() {
        converted.insert("parameters".into(), Value::Array(parameters));
    }
    converted.insert("produces".into(), Value::Array(produces));
    converted.insert("responses".into(), Value::Object(responses));
    converted.insert("schemes".into(), json!(["https"]));
    Value::Object(converted)
}

/// A v3 parameter in v2 terms: its schema's `type` and `uniqueItems` move up beside `name` and `in`.
fn parameter(parameter: &Value) -> Value {
    let mut converted: Map<String, Value> = parameter
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(key, _)| key.as_str() != "schema")
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    for (key, value) in parameter["schema"].as_object().into_iter().flatten() {
        converted.insert(key.clone(), value.clone());
    }
    Value::Object(converted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::registry::{built_in_resources, ResourceDef};
    use crate::apiserver::schema::GVK_EXTENSION;

    fn no_custom_resources(_: &ResourceDef) -> Option<Value> {
        None
    }

    fn built_in_swagger() -> Value {
        swagger_document(&Registry::new(built_in_resources()), Schemas::shared(), &no_custom_resources)
    }

    #[test]
    fn definitions_use_v2_refs_and_keywords_only() {
        let document = built_in_swagger();
        let definitions = document["definitions"].as_object().unwrap();
        let mut references = Vec::new();
        // Property names are not keywords: JSONSchemaProps has a property called `$ref`.
        fn walk(value: &Value, references: &mut Vec<String>) {
            match value {
                Value::Object(object) => {
                    for (key, child) in object {
                        match (key.as_str(), child) {
                            ("$ref", Value::String(reference)) => references.push(reference.clone()),
                            ("properties", Value::Object(properties)) => {
                                properties.values().for_each(|property| walk(property, references));
                            }
                            _ => walk(child, references),
                        }
                    }
                }
                Value::Array(items) => items.iter().for_each(|item| walk(item, references)),
                _ => {}
            }
        }
        walk(&document, &mut references);
        assert!(!references.is_empty());
        for reference in references {
            let name = reference.strip_prefix(DEFINITIONS_PREFIX).unwrap_or_else(|| panic!("v3 ref {reference}"));
            assert!(definitions.contains_key(name), "dangling ref to {name}");
        }
        for schema in definitions.values() {
            for key in schema.as_object().unwrap().keys() {
                assert!(V2_SCHEMA_KEYWORDS.contains(&key.as_str()) || key.starts_with("x-"), "{key} is not v2");
            }
        }
    }

    /// What client-go's parser of the protobuf document (kube-openapi's `proto.NewOpenAPIData`) refuses: a ref
    /// outside `#/definitions/` or to nothing, an array without exactly one item schema, several types, or a type
    /// it does not know. One refusal and kubectl can neither validate nor explain anything.
    fn parser_objection(schema: &Value, definitions: &Map<String, Value>) -> Option<String> {
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            let known = reference.strip_prefix(DEFINITIONS_PREFIX).is_some_and(|name| definitions.contains_key(name));
            return (!known).then(|| format!("unknown model in reference: {reference}"));
        }
        let children =
            schema.get("properties").and_then(Value::as_object).into_iter().flatten().map(|(_, child)| child);
        let children = children.chain(schema.get("additionalProperties").filter(|value| value.is_object()));
        let children: Vec<&Value> = children.chain(schema.get("items")).collect();
        match schema.get("type") {
            None => {}
            Some(Value::String(kind)) if kind == "array" && !schema.get("items").is_some_and(Value::is_object) => {
                return Some("array should have exactly one sub-item".into());
            }
            Some(Value::String(kind))
                if ["object", "array", "string", "integer", "number", "boolean"].contains(&kind.as_str()) => {}
            Some(other) => return Some(format!("type {other} is not supported")),
        }
        children.into_iter().find_map(|child| parser_objection(child, definitions))
    }

    #[test]
    fn client_go_can_parse_every_definition() {
        let document = built_in_swagger();
        let definitions = document["definitions"].as_object().unwrap();
        for (name, schema) in definitions {
            if let Some(objection) = parser_objection(schema, definitions) {
                panic!("{name}: {objection}\n{schema:#}");
            }
        }
    }

    #[test]
    fn a_deployment_looks_like_upstreams() {
        let document = built_in_swagger();
        let spec = &document["definitions"]["io.k8s.api.apps.v1.DeploymentSpec"];
        assert_eq!(
            spec["properties"]["selector"]["$ref"],
            "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"
        );
        assert!(spec["properties"]["selector"]["description"].is_string(), "the description stays beside the ref");
        assert_eq!(spec["properties"]["strategy"]["x-kubernetes-patch-strategy"], "retainKeys");
        assert_eq!(spec["required"], json!(["selector", "template"]));
        let deployment = &document["definitions"]["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(deployment[GVK_EXTENSION], json!([{"group": "apps", "kind": "Deployment", "version": "v1"}]));

        let item = &document["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"];
        let patch = &item["patch"];
        assert_eq!(patch["operationId"], "patchAppsV1NamespacedDeployment");
        let body = &patch["parameters"][0];
        assert_eq!(
            body,
            &json!({"in": "body", "name": "body", "required": true, "schema": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"}})
        );
        let validation = patch["parameters"].as_array().unwrap().iter().find(|p| p["name"] == "fieldValidation");
        assert_eq!(validation.unwrap()["type"], "string");
        assert!(patch["consumes"].as_array().unwrap().contains(&json!("application/strategic-merge-patch+json")));
        assert_eq!(patch["responses"]["200"]["schema"]["$ref"], "#/definitions/io.k8s.api.apps.v1.Deployment");
        assert_eq!(patch["responses"]["401"], json!({"description": "Unauthorized"}));
        assert_eq!(item["get"]["consumes"], json!(["*/*"]));
        assert_eq!(
            item["parameters"][0],
            json!({"description": "name of the Deployment", "in": "path", "name": "name", "required": true, "type": "string", "uniqueItems": true})
        );
        assert_eq!(document["swagger"], "2.0");
        assert!(document["paths"]["/api/v1/namespaces/{namespace}/pods"]["get"].is_object());
    }

    #[test]
    fn accept_negotiation_follows_upstream() {
        assert_eq!(negotiate(PROTOBUF_MEDIA_TYPE), Some(PROTOBUF_MEDIA_TYPE_DOTTED));
        assert_eq!(negotiate(PROTOBUF_MEDIA_TYPE_DOTTED), Some(PROTOBUF_MEDIA_TYPE_DOTTED));
        assert_eq!(negotiate(""), Some("application/json"));
        assert_eq!(negotiate("*/*"), Some("application/json"));
        assert_eq!(negotiate("application/json, */*"), Some("application/json"));
        assert_eq!(
            negotiate(&format!("application/json;q=0.5, {PROTOBUF_MEDIA_TYPE}")),
            Some(PROTOBUF_MEDIA_TYPE_DOTTED),
            "the higher quality wins"
        );
        assert_eq!(negotiate("text/html"), None);
        assert_eq!(negotiate("application/json;q=0"), None);
    }

    #[test]
    fn the_cache_follows_the_registry() {
        let documents = OpenApiV2Documents::new();
        let registry = Registry::new(built_in_resources());
        let first = documents.document(&registry, Schemas::shared(), &no_custom_resources);
        let again = documents.document(&registry, Schemas::shared(), &no_custom_resources);
        assert!(Arc::ptr_eq(&first, &again));
        assert_ne!(first.json.etag, first.protobuf.etag);
        let fewer = Registry::new(built_in_resources().into_iter().filter(|def| def.group != "batch"));
        let rebuilt = documents.document(&fewer, Schemas::shared(), &no_custom_resources);
        assert!(!Arc::ptr_eq(&first, &rebuilt));
        let value: Value = serde_json::from_slice(&rebuilt.json.bytes).unwrap();
        assert!(value["paths"].get("/apis/batch/v1/jobs").is_none());
    }
}
