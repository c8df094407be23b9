//! The protobuf form of the OpenAPI v2 document: the messages of gnostic's `openapi.v2` package (OpenAPIv2.proto),
//! which client-go decodes `/openapi/v2` into. Only the messages and fields kaasd's document uses are declared; the
//! tags are gnostic's, so what is left out simply never appears on the wire. Written by hand with prost's derive
//! so the build needs no `protoc`.
//!
//! Values that are free-form JSON in the document (`default`, `enum`, `example`, `x-` extensions) travel as gnostic's
//! `Any` with their YAML text; JSON text is YAML, and client-go parses it back with a YAML decoder.

use prost::Message;
use serde_json::{Map, Value};

/// Encodes a Swagger 2.0 document (as [`crate::apiserver::openapi_v2::swagger_document`] builds it) as a gnostic `Document`.
pub fn encode_document(document: &Value) -> Vec<u8> {
    to_document(document).encode_to_vec()
}

#[derive(Clone, PartialEq, Message)]
pub struct Document {
    #[prost(string, tag = "1")]
    pub swagger: String,
    #[prost(message, optional, tag = "2")]
    pub info: Option<Info>,
    #[prost(message, optional, tag = "8")]
    pub paths: Option<Paths>,
    #[prost(message, optional, tag = "9")]
    pub definitions: Option<Definitions>,
    #[prost(message, repeated, tag = "12")]
    pub security: Vec<SecurityRequirement>,
    #[prost(message, optional, tag = "13")]
    pub security_definitions: Option<SecurityDefinitions>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Info {
    #[prost(string, tag = "1")]
    pub title: String,
    #[prost(string, tag = "2")]
    pub version: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct Paths {
    #[prost(message, repeated, tag = "2")]
    pub path: Vec<NamedPathItem>,
}

#[derive(Clone, PartialEq, Message)]
pub struct NamedPathItem {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<PathItem>,
}

#[derive(Clone, PartialEq, Message)]
pub struct PathItem {
    #[prost(message, optional, tag = "2")]
    pub get: Option<Operation>,
    #[prost(message, optional, tag = "3")]
    pub put: Option<Operation>,
    #[prost(message, optional, tag = "4")]
    pub post: Option<Operation>,
    #[prost(message, optional, tag = "5")]
    pub delete: Option<Operation>,
    #[prost(message, optional, tag = "6")]
    pub options: Option<Operation>,
    #[prost(message, optional, tag = "7")]
    pub head: Option<Operation>,
    #[prost(message, optional, tag = "8")]
    pub patch: Option<Operation>,
    #[prost(message, repeated, tag = "9")]
    pub parameters: Vec<ParametersItem>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Operation {
    #[prost(string, repeated, tag = "1")]
    pub tags: Vec<String>,
    #[prost(string, tag = "3")]
    pub description: String,
    #[prost(string, tag = "5")]
    pub operation_id: String,
    #[prost(string, repeated, tag = "6")]
    pub produces: Vec<String>,
    #[prost(string, repeated, tag = "7")]
    pub consumes: Vec<String>,
    #[prost(message, repeated, tag = "8")]
    pub parameters: Vec<ParametersItem>,
    #[prost(message, optional, tag = "9")]
    pub responses: Option<Responses>,
    #[prost(string, repeated, tag = "10")]
    pub schemes: Vec<String>,
    #[prost(message, repeated, tag = "13")]
    pub vendor_extension: Vec<NamedAny>,
}

/// `ParametersItem` has a second case, a JSON reference, which kaasd's documents never use.
#[derive(Clone, PartialEq, Message)]
pub struct ParametersItem {
    #[prost(message, optional, tag = "1")]
    pub parameter: Option<Parameter>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Parameter {
    #[prost(oneof = "ParameterKind", tags = "1, 2")]
    pub oneof: Option<ParameterKind>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum ParameterKind {
    #[prost(message, tag = "1")]
    BodyParameter(Box<BodyParameter>),
    #[prost(message, tag = "2")]
    NonBodyParameter(NonBodyParameter),
}

#[derive(Clone, PartialEq, Message)]
pub struct BodyParameter {
    #[prost(string, tag = "1")]
    pub description: String,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(string, tag = "3")]
    pub r#in: String,
    #[prost(bool, tag = "4")]
    pub required: bool,
    #[prost(message, optional, tag = "5")]
    pub schema: Option<Schema>,
}

#[derive(Clone, PartialEq, Message)]
pub struct NonBodyParameter {
    #[prost(oneof = "NonBodyParameterKind", tags = "1, 3, 4")]
    pub oneof: Option<NonBodyParameterKind>,
}

/// Header, query and path parameters share their first fields' tags; form data parameters are not used.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum NonBodyParameterKind {
    #[prost(message, tag = "1")]
    HeaderParameterSubSchema(PathOrHeaderParameter),
    #[prost(message, tag = "3")]
    QueryParameterSubSchema(QueryParameter),
    #[prost(message, tag = "4")]
    PathParameterSubSchema(PathOrHeaderParameter),
}

/// gnostic's `QueryParameterSubSchema`.
#[derive(Clone, PartialEq, Message)]
pub struct QueryParameter {
    #[prost(bool, tag = "1")]
    pub required: bool,
    #[prost(string, tag = "2")]
    pub r#in: String,
    #[prost(string, tag = "3")]
    pub description: String,
    #[prost(string, tag = "4")]
    pub name: String,
    #[prost(string, tag = "6")]
    pub r#type: String,
    #[prost(string, tag = "7")]
    pub format: String,
    #[prost(bool, tag = "20")]
    pub unique_items: bool,
}

/// gnostic's `PathParameterSubSchema` and `HeaderParameterSubSchema`, which number these fields alike.
#[derive(Clone, PartialEq, Message)]
pub struct PathOrHeaderParameter {
    #[prost(bool, tag = "1")]
    pub required: bool,
    #[prost(string, tag = "2")]
    pub r#in: String,
    #[prost(string, tag = "3")]
    pub description: String,
    #[prost(string, tag = "4")]
    pub name: String,
    #[prost(string, tag = "5")]
    pub r#type: String,
    #[prost(string, tag = "6")]
    pub format: String,
    #[prost(bool, tag = "19")]
    pub unique_items: bool,
}

#[derive(Clone, PartialEq, Message)]
pub struct Responses {
    #[prost(message, repeated, tag = "1")]
    pub response_code: Vec<NamedResponseValue>,
}

#[derive(Clone, PartialEq, Message)]
pub struct NamedResponseValue {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<ResponseValue>,
}

/// `ResponseValue` is a oneof of a response (tag 1) and a JSON reference (unused).
#[derive(Clone, PartialEq, Message)]
pub struct ResponseValue {
    #[prost(message, optional, tag = "1")]
    pub response: Option<Response>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Response {
    #[prost(string, tag = "1")]
    pub description: String,
    #[prost(message, optional, tag = "2")]
    pub schema: Option<SchemaItem>,
}

/// `SchemaItem` is a oneof of a schema (tag 1) and a file schema (unused).
#[derive(Clone, PartialEq, Message)]
pub struct SchemaItem {
    #[prost(message, optional, tag = "1")]
    pub schema: Option<Schema>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Definitions {
    #[prost(message, repeated, tag = "1")]
    pub additional_properties: Vec<NamedSchema>,
}

#[derive(Clone, PartialEq, Message)]
pub struct NamedSchema {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<Schema>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Schema {
    #[prost(string, tag = "1")]
    pub r#ref: String,
    #[prost(string, tag = "2")]
    pub format: String,
    #[prost(string, tag = "3")]
    pub title: String,
    #[prost(string, tag = "4")]
    pub description: String,
    #[prost(message, optional, tag = "5")]
    pub default: Option<Any>,
    #[prost(double, tag = "6")]
    pub multiple_of: f64,
    #[prost(double, tag = "7")]
    pub maximum: f64,
    #[prost(bool, tag = "8")]
    pub exclusive_maximum: bool,
    #[prost(double, tag = "9")]
    pub minimum: f64,
    #[prost(bool, tag = "10")]
    pub exclusive_minimum: bool,
    #[prost(int64, tag = "11")]
    pub max_length: i64,
    #[prost(int64, tag = "12")]
    pub min_length: i64,
    #[prost(string, tag = "13")]
    pub pattern: String,
    #[prost(int64, tag = "14")]
    pub max_items: i64,
    #[prost(int64, tag = "15")]
    pub min_items: i64,
    #[prost(bool, tag = "16")]
    pub unique_items: bool,
    #[prost(int64, tag = "17")]
    pub max_properties: i64,
    #[prost(int64, tag = "18")]
    pub min_properties: i64,
    #[prost(string, repeated, tag = "19")]
    pub required: Vec<String>,
    #[prost(message, repeated, tag = "20")]
    pub r#enum: Vec<Any>,
    #[prost(message, optional, boxed, tag = "21")]
    pub additional_properties: Option<Box<AdditionalPropertiesItem>>,
    #[prost(message, optional, tag = "22")]
    pub r#type: Option<TypeItem>,
    #[prost(message, optional, tag = "23")]
    pub items: Option<ItemsItem>,
    #[prost(message, repeated, tag = "24")]
    pub all_of: Vec<Schema>,
    #[prost(message, optional, tag = "25")]
    pub properties: Option<Properties>,
    #[prost(bool, tag = "27")]
    pub read_only: bool,
    #[prost(message, optional, tag = "30")]
    pub example: Option<Any>,
    #[prost(message, repeated, tag = "31")]
    pub vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, Message)]
pub struct AdditionalPropertiesItem {
    #[prost(oneof = "AdditionalProperties", tags = "1, 2")]
    pub oneof: Option<AdditionalProperties>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum AdditionalProperties {
    #[prost(message, tag = "1")]
    Schema(Box<Schema>),
    #[prost(bool, tag = "2")]
    Boolean(bool),
}

#[derive(Clone, PartialEq, Message)]
pub struct TypeItem {
    #[prost(string, repeated, tag = "1")]
    pub value: Vec<String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ItemsItem {
    #[prost(message, repeated, tag = "1")]
    pub schema: Vec<Schema>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Properties {
    #[prost(message, repeated, tag = "1")]
    pub additional_properties: Vec<NamedSchema>,
}

/// gnostic's `Any`: tag 1 (a `google.protobuf.Any`) is unused, the value is its YAML text.
#[derive(Clone, PartialEq, Message)]
pub struct Any {
    #[prost(string, tag = "2")]
    pub yaml: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct NamedAny {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<Any>,
}

#[derive(Clone, PartialEq, Message)]
pub struct SecurityRequirement {
    #[prost(message, repeated, tag = "1")]
    pub additional_properties: Vec<NamedStringArray>,
}

#[derive(Clone, PartialEq, Message)]
pub struct NamedStringArray {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<StringArray>,
}

#[derive(Clone, PartialEq, Message)]
pub struct StringArray {
    #[prost(string, repeated, tag = "1")]
    pub value: Vec<String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct SecurityDefinitions {
    #[prost(message, repeated, tag = "1")]
    pub additional_properties: Vec<NamedSecurityDefinitionsItem>,
}

#[derive(Clone, PartialEq, Message)]
pub struct NamedSecurityDefinitionsItem {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<SecurityDefinitionsItem>,
}

/// `SecurityDefinitionsItem` is a oneof; kaasd uses only its API key case (tag 2).
#[derive(Clone, PartialEq, Message)]
pub struct SecurityDefinitionsItem {
    #[prost(message, optional, tag = "2")]
    pub api_key_security: Option<ApiKeySecurity>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ApiKeySecurity {
    #[prost(string, tag = "1")]
    pub r#type: String,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(string, tag = "3")]
    pub r#in: String,
    #[prost(string, tag = "4")]
    pub description: String,
}

fn text(value: &Value, key: &str) -> String {
    value.get(key).and_then(Value::as_str).unwrap_or_default().to_string()
}

fn texts(value: &Value, key: &str) -> Vec<String> {
    value
        .get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

fn entries(value: &Value) -> impl Iterator<Item = (&String, &Value)> {
    value.as_object().into_iter().flatten()
}

fn any(value: &Value) -> Any {
    Any { yaml: serde_json::to_string(value).expect("a JSON value serializes") }
}

/// The `x-` members of an object, in order.
fn vendor_extensions(object: &Map<String, Value>) -> Vec<NamedAny> {
    object
        .iter()
        .filter(|(key, _)| key.starts_with("x-"))
        .map(|(key, value)| NamedAny { name: key.clone(), value: Some(any(value)) })
        .collect()
}

fn to_document(document: &Value) -> Document {
    let paths = entries(&document["paths"])
        .map(|(name, item)| NamedPathItem { name: name.clone(), value: Some(path_item(item)) });
    let definitions = entries(&document["definitions"])
        .map(|(name, schema)| NamedSchema { name: name.clone(), value: Some(schema_of(schema)) });
    let security = document["security"].as_array().into_iter().flatten().map(|requirement| SecurityRequirement {
        additional_properties: entries(requirement)
            .map(|(name, scopes)| NamedStringArray {
                name: name.clone(),
                value: Some(StringArray {
                    value: scopes
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect(),
                }),
            })
            .collect(),
    });
    let security_definitions =
        entries(&document["securityDefinitions"]).map(|(name, definition)| NamedSecurityDefinitionsItem {
            name: name.clone(),
            value: Some(SecurityDefinitionsItem {
                api_key_security: Some(ApiKeySecurity {
                    r#type: text(definition, "type"),
                    name: text(definition, "name"),
                    r#in: text(definition, "in"),
                    description: text(definition, "description"),
                }),
            }),
        });
    Document {
        swagger: text(document, "swagger"),
        info: Some(Info { title: text(&document["info"], "title"), version: text(&document["info"], "version") }),
        paths: Some(Paths { path: paths.collect() }),
        definitions: Some(Definitions { additional_properties: definitions.collect() }),
        security: security.collect(),
        security_definitions: Some(SecurityDefinitions { additional_properties: security_definitions.collect() }),
    }
}

fn path_item(item: &Value) -> PathItem {
    let operation = |method: &str| item.get(method).map(operation);
    PathItem {
        get: operation("get"),
        put: operation("put"),
        post: operation("post"),
        delete: operation("delete"),
        options: operation("options"),
        head: operation("head"),
        patch: operation("patch"),
        parameters: parameters(item),
    }
}

fn operation(operation: &Value) -> Operation {
    let responses = entries(&operation["responses"]).map(|(code, response)| NamedResponseValue {
        name: code.clone(),
        value: Some(ResponseValue {
            response: Some(Response {
                description: text(response, "description"),
                schema: response.get("schema").map(|schema| SchemaItem { schema: Some(schema_of(schema)) }),
            }),
        }),
    });
    Operation {
        tags: texts(operation, "tags"),
        description: text(operation, "description"),
        operation_id: text(operation, "operationId"),
        produces: texts(operation, "produces"),
        consumes: texts(operation, "consumes"),
        parameters: parameters(operation),
        responses: Some(Responses { response_code: responses.collect() }),
        schemes: texts(operation, "schemes"),
        vendor_extension: operation.as_object().map(vendor_extensions).unwrap_or_default(),
    }
}

fn parameters(owner: &Value) -> Vec<ParametersItem> {
    let parameter = |parameter: &Value| {
        let kind = match parameter["in"].as_str().unwrap_or_default() {
            "body" => ParameterKind::BodyParameter(Box::new(BodyParameter {
                description: text(parameter, "description"),
                name: text(parameter, "name"),
                r#in: text(parameter, "in"),
                required: parameter["required"] == true,
                schema: parameter.get("schema").map(schema_of),
            })),
            "query" => ParameterKind::NonBodyParameter(NonBodyParameter {
                oneof: Some(NonBodyParameterKind::QueryParameterSubSchema(QueryParameter {
                    required: parameter["required"] == true,
                    r#in: text(parameter, "in"),
                    description: text(parameter, "description"),
                    name: text(parameter, "name"),
                    r#type: text(parameter, "type"),
                    format: text(parameter, "format"),
                    unique_items: parameter["uniqueItems"] == true,
                })),
            }),
            location => {
                let fields = PathOrHeaderParameter {
                    required: parameter["required"] == true,
                    r#in: text(parameter, "in"),
                    description: text(parameter, "description"),
                    name: text(parameter, "name"),
                    r#type: text(parameter, "type"),
                    format: text(parameter, "format"),
                    unique_items: parameter["uniqueItems"] == true,
                };
                ParameterKind::NonBodyParameter(NonBodyParameter {
                    oneof: Some(if location == "header" {
                        NonBodyParameterKind::HeaderParameterSubSchema(fields)
                    } else {
                        NonBodyParameterKind::PathParameterSubSchema(fields)
                    }),
                })
            }
        };
        ParametersItem { parameter: Some(Parameter { oneof: Some(kind) }) }
    };
    owner["parameters"].as_array().into_iter().flatten().map(parameter).collect()
}

fn schema_of(schema: &Value) -> Schema {
    let number = |key: &str| schema.get(key).and_then(Value::as_f64).unwrap_or_default();
    let integer = |key: &str| schema.get(key).and_then(Value::as_i64).unwrap_or_default();
    let flag = |key: &str| schema.get(key) == Some(&Value::Bool(true));
    let types = match schema.get("type") {
        Some(Value::String(single)) => Some(TypeItem { value: vec![single.clone()] }),
        Some(Value::Array(several)) => {
            Some(TypeItem { value: several.iter().filter_map(Value::as_str).map(str::to_string).collect() })
        }
        _ => None,
    };
    let additional_properties = schema.get("additionalProperties").map(|additional| {
        Box::new(AdditionalPropertiesItem {
            oneof: Some(match additional {
                Value::Bool(allowed) => AdditionalProperties::Boolean(*allowed),
                other => AdditionalProperties::Schema(Box::new(schema_of(other))),
            }),
        })
    });
    let items = schema.get("items").map(|items| ItemsItem {
        schema: match items {
            Value::Array(several) => several.iter().map(schema_of).collect(),
            single => vec![schema_of(single)],
        },
    });
    let properties = schema.get("properties").map(|properties| Properties {
        additional_properties: entries(properties)
            .map(|(name, property)| NamedSchema { name: name.clone(), value: Some(schema_of(property)) })
            .collect(),
    });
    Schema {
        r#ref: text(schema, "$ref"),
        format: text(schema, "format"),
        title: text(schema, "title"),
        description: text(schema, "description"),
        default: schema.get("default").map(any),
        multiple_of: number("multipleOf"),
        maximum: number("maximum"),
        exclusive_maximum: flag("exclusiveMaximum"),
        minimum: number("minimum"),
        exclusive_minimum: flag("exclusiveMinimum"),
        max_length: integer("maxLength"),
        min_length: integer("minLength"),
        pattern: text(schema, "pattern"),
        max_items: integer("maxItems"),
        min_items: integer("minItems"),
        unique_items: flag("uniqueItems"),
        max_properties: integer("maxProperties"),
        min_properties: integer("minProperties"),
        required: texts(schema, "required"),
        r#enum: schema.get("enum").and_then(Value::as_array).into_iter().flatten().map(any).collect(),
        additional_properties,
        r#type: types,
        items,
        all_of: schema.get("allOf").and_then(Value::as_array).into_iter().flatten().map(schema_of).collect(),
        properties,
        read_only: flag("readOnly"),
        example: schema.get("example").map(any),
        vendor_extension: schema.as_object().map(vendor_extensions).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_document_round_trips_through_the_wire_format() {
        let document = json!({
            "swagger": "2.0",
            "info": {"title": "Kubernetes", "version": "v1.33.0"},
            "paths": {
                "/apis/apps/v1/namespaces/{namespace}/deployments/{name}": {
                    "parameters": [{"in": "path", "name": "name", "required": true, "type": "string", "uniqueItems": true}],
                    "patch": {
                        "consumes": ["application/merge-patch+json"],
                        "operationId": "patchAppsV1NamespacedDeployment",
                        "parameters": [
                            {"in": "body", "name": "body", "required": true, "schema": {"$ref": "#/definitions/Patch"}},
                            {"in": "query", "name": "fieldValidation", "type": "string", "uniqueItems": true},
                        ],
                        "responses": {"200": {"description": "OK", "schema": {"$ref": "#/definitions/Deployment"}}},
                        "x-kubernetes-group-version-kind": {"group": "apps", "kind": "Deployment", "version": "v1"},
                    },
                },
            },
            "definitions": {
                "Deployment": {
                    "type": "object",
                    "required": ["spec"],
                    "properties": {
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "replicas": {"type": "integer", "format": "int32", "default": 1},
                        "ports": {"type": "array", "items": {"$ref": "#/definitions/Port"}},
                    },
                    "x-kubernetes-group-version-kind": [{"group": "apps", "kind": "Deployment", "version": "v1"}],
                },
            },
        });
        let bytes = encode_document(&document);
        let decoded = Document::decode(bytes.as_slice()).expect("decodes");
        assert_eq!(decoded.swagger, "2.0");
        let path = &decoded.paths.as_ref().unwrap().path[0];
        let patch = path.value.as_ref().unwrap().patch.as_ref().unwrap();
        assert_eq!(patch.operation_id, "patchAppsV1NamespacedDeployment");
        assert_eq!(patch.vendor_extension[0].name, "x-kubernetes-group-version-kind");
        let yaml = &patch.vendor_extension[0].value.as_ref().unwrap().yaml;
        assert_eq!(serde_yaml_ng::from_str::<Value>(yaml).unwrap()["kind"], "Deployment");
        match &patch.parameters[1].parameter.as_ref().unwrap().oneof {
            Some(ParameterKind::NonBodyParameter(NonBodyParameter {
                oneof: Some(NonBodyParameterKind::QueryParameterSubSchema(query)),
            })) => assert_eq!(query.name, "fieldValidation"),
            other => panic!("a query parameter, not {other:?}"),
        }
        let deployment = decoded.definitions.as_ref().unwrap().additional_properties[0].value.clone().unwrap();
        assert_eq!(deployment.r#type.unwrap().value, ["object"]);
        assert_eq!(deployment.required, ["spec"]);
        let properties = deployment.properties.unwrap().additional_properties;
        let labels = properties.iter().find(|p| p.name == "labels").unwrap().value.clone().unwrap();
        match labels.additional_properties.unwrap().oneof {
            Some(AdditionalProperties::Schema(schema)) => assert_eq!(schema.r#type.unwrap().value, ["string"]),
            other => panic!("a map of strings, not {other:?}"),
        }
        let ports = properties.iter().find(|p| p.name == "ports").unwrap().value.clone().unwrap();
        assert_eq!(ports.items.unwrap().schema[0].r#ref, "#/definitions/Port");
        let replicas = properties.iter().find(|p| p.name == "replicas").unwrap().value.clone().unwrap();
        assert_eq!(replicas.default.unwrap().yaml, "1");
    }
}
