//! Resources served in a version other than the one they are stored in: autoscaling/v1 HorizontalPodAutoscalers
//! (stored as autoscaling/v2) and events.k8s.io/v1 Events (stored as core/v1 Events, so both APIs show the same
//! events, as upstream's one `events` store does).
//!
//! Such a resource's [`ResourceDef`] names a [`Conversion`]. A request for it is served by the storage version's
//! code path, with the body converted to the storage form on the way in and every object in the answer (one
//! object, a list's items, each watch event) converted back on the way out. Patches other than apply are computed
//! on the served form: the current object is read and converted, patched, converted back and written as an update
//! conditional on the revision it was read at (retried when another write came between). An apply patch is
//! converted and applied as it is, so field ownership is tracked in the storage form.
//!
//! The conversions follow upstream's (`pkg/apis/autoscaling/v1/conversion.go`, `pkg/apis/events/v1/conversion.go`):
//! what autoscaling/v1 has no field for (metrics other than CPU utilisation, behavior, conditions) travels in the
//! `autoscaling.alpha.kubernetes.io/*` annotations. Not converted: managedFields entries keep the storage
//! apiVersion, and admission webhooks see the storage form.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Response};
use http_body_util::BodyExt;
use serde_json::{json, Map, Value};

use crate::apiserver::error::{ApiError, ApiResult};
use crate::apiserver::objects::ObjectRequest;
use crate::apiserver::patch::PatchType;
use crate::apiserver::registry::ResourceDef;
use crate::apiserver::{ApiServer, Body};

/// How a served version maps to its storage form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conversion {
    /// autoscaling/v1 HorizontalPodAutoscaler, stored as autoscaling/v2.
    HorizontalPodAutoscalerV1,
    /// events.k8s.io/v1 Event, stored as core/v1 Event.
    EventsV1,
}

const METRICS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/metrics";
const CURRENT_METRICS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
const CONDITIONS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/conditions";
const BEHAVIOR_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/behavior";

/// How often a patch computed on the served form is retried when another write changed the object meanwhile.
const PATCH_ATTEMPTS: usize = 5;

impl Conversion {
    /// Group and version of the storage form.
    pub fn storage_version(self) -> (&'static str, &'static str) {
        match self {
            Conversion::HorizontalPodAutoscalerV1 => ("autoscaling", "v2"),
            Conversion::EventsV1 => ("", "v1"),
        }
    }

    fn storage_api_version(self) -> String {
        match self.storage_version() {
            ("", version) => version.to_string(),
            (group, version) => format!("{group}/{version}"),
        }
    }

    /// A served-version object (or part of one, as an apply patch is) in the storage form.
    pub fn to_storage(self, served: &Value) -> Value {
        let mut stored = match self {
            Conversion::HorizontalPodAutoscalerV1 => hpa_v1_to_v2(served),
            Conversion::EventsV1 => rename_fields(served, EVENT_FIELDS, Direction::ToCore),
        };
        stored["apiVersion"] = json!(self.storage_api_version());
        stored
    }

    /// A stored object as the served version shows it.
    pub fn to_served(self, def: &ResourceDef, stored: &Value) -> Value {
        let mut served = match self {
            Conversion::HorizontalPodAutoscalerV1 => hpa_v2_to_v1(stored),
            Conversion::EventsV1 => rename_fields(stored, EVENT_FIELDS, Direction::FromCore),
        };
        served["apiVersion"] = json!(def.api_version());
        served["kind"] = json!(def.kind);
        served
    }

    /// A field selector of the served version in the storage form's field names.
    fn storage_field_selector(self, selector: &str) -> String {
        match self {
            Conversion::HorizontalPodAutoscalerV1 => selector.to_string(),
            Conversion::EventsV1 => selector
                .split(',')
                .map(|requirement| {
                    let requirement = requirement.trim();
                    EVENT_FIELDS
                        .iter()
                        .find_map(|(core, served)| {
                            requirement
                                .strip_prefix(served)
                                .filter(|rest| rest.starts_with(['.', '=', '!']))
                                .map(|rest| format!("{core}{rest}"))
                        })
                        .unwrap_or_else(|| requirement.to_string())
                })
                .collect::<Vec<_>>()
                .join(","),
        }
    }
}

impl ApiServer {
    /// Serves a request for a converted resource through its storage version (see the module comment).
    pub(super) async fn serve_converted(
        self: &Arc<Self>,
        served: &ResourceDef,
        conversion: Conversion,
        request: ObjectRequest,
    ) -> ApiResult<Response<Body>> {
        let (group, version) = conversion.storage_version();
        let mut forwarded = request.clone();
        forwarded.resource.group = group.to_string();
        forwarded.resource.version = version.to_string();
        if let Some(selector) = request.query.get("fieldSelector") {
            let selector = conversion.storage_field_selector(selector);
            forwarded.query = forwarded.query.with("fieldSelector", &selector);
        }
        let watch = request.method == Method::GET && request.query.flag("watch")?;
        let mut warnings = Vec::new();
        if request.method == Method::POST || request.method == Method::PUT {
            let body = served_body(served, &request, false, &mut warnings)?;
            forwarded.content_type = "application/json".into();
            forwarded.body = Bytes::from(serde_json::to_vec(&conversion.to_storage(&body)).unwrap_or_default());
        }
        if request.method == Method::PATCH {
            let patch_type = PatchType::from_content_type(&request.content_type)
                .ok_or_else(|| ApiError::unsupported_media_type(&request.content_type))?;
            if patch_type == PatchType::Apply {
                let body = served_body(served, &request, true, &mut warnings)?;
                forwarded.body = Bytes::from(serde_json::to_vec(&conversion.to_storage(&body)).unwrap_or_default());
            } else {
                return self.patch_converted(served, conversion, patch_type, forwarded, &request).await;
            }
        }
        let answer =
            Box::pin(self.serve_object(forwarded)).await.map_err(|error| in_served_terms(error, served, conversion))?;
        let mut response = convert_response(answer, served, conversion, watch).await;
        crate::apiserver::objects::append_warnings(&mut response, &warnings);
        Ok(response)
    }

    /// A non-apply patch, computed on the served form and written as a conditional update of the storage form.
    async fn patch_converted(
        self: &Arc<Self>,
        served: &ResourceDef,
        conversion: Conversion,
        patch_type: PatchType,
        forwarded: ObjectRequest,
        request: &ObjectRequest,
    ) -> ApiResult<Response<Body>> {
        let registry = self.registry();
        let storage = registry
            .get(&forwarded.resource.group, &forwarded.resource.version, &forwarded.resource.plural)
            .cloned()
            .ok_or_else(|| ApiError::internal("the storage version of a converted resource is not served"))?;
        let name = request.resource.name.clone().ok_or_else(|| {
            ApiError::method_not_allowed("the server does not allow this method on the requested resource (PATCH)")
        })?;
        let patch = crate::apiserver::objects::decode_patch(request, patch_type)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let current = self
                .get_existing(&storage, request.resource.namespace.as_deref(), &name)
                .await
                .map_err(|error| in_served_terms(error, served, conversion))?;
            let current_served = conversion.to_served(served, &current.object);
            let mut patched = crate::apiserver::objects::patch_object(served, &current_served, patch_type, &patch)?;
            crate::apiserver::objects::check_type(served, &mut patched)?;
            let warnings = crate::apiserver::objects::check_served_fields(served, &patched, request, false, false)?;
            let mut stored = conversion.to_storage(&patched);
            let precondition = patched.pointer("/metadata/resourceVersion").cloned();
            let read_at = json!(current.revision.to_string());
            // The patch itself may carry a resourceVersion precondition; otherwise the update must find the object
            // as it was read.
            let retry_on_conflict = precondition.is_none() || precondition.as_ref() == Some(&read_at);
            stored["metadata"]["resourceVersion"] = precondition.unwrap_or(read_at);
            let mut update = forwarded.clone();
            update.method = Method::PUT;
            update.content_type = "application/json".into();
            update.body = Bytes::from(serde_json::to_vec(&stored).unwrap_or_default());
            match Box::pin(self.serve_object(update)).await.map_err(|error| in_served_terms(error, served, conversion))
            {
                Err(error) if error.code == 409 && retry_on_conflict && attempt < PATCH_ATTEMPTS => continue,
                Err(error) => return Err(error),
                Ok(response) => {
                    let mut response = convert_response(response, served, conversion, false).await;
                    crate::apiserver::objects::append_warnings(&mut response, &warnings);
                    return Ok(response);
                }
            }
        }
    }
}

/// The request's body in the served version: an object of the served apiVersion and kind (the storage path would
/// check them against its own), without fields the served schema does not know (the conversion would drop them
/// silently). Warnings for unknown fields under `fieldValidation=Warn` are added to `warnings`.
fn served_body(
    served: &ResourceDef,
    request: &ObjectRequest,
    applied: bool,
    warnings: &mut Vec<String>,
) -> ApiResult<Value> {
    let mut body = crate::apiserver::objects::decode_object(request)?;
    crate::apiserver::objects::check_type(served, &mut body)?;
    warnings.extend(crate::apiserver::objects::check_served_fields(served, &body, request, true, applied)?);
    Ok(body)
}

/// An error of the storage path as the served resource would have said it: `events.events.k8s.io "x" not found`,
/// not `events "x" not found` (the message's leading resource or kind, and the group of its details).
fn in_served_terms(mut error: ApiError, served: &ResourceDef, conversion: Conversion) -> ApiError {
    let (storage_group, _) = conversion.storage_version();
    if storage_group == served.group {
        return error;
    }
    let qualified =
        |group: &str, name: &str| if group.is_empty() { name.to_string() } else { format!("{name}.{group}") };
    for (stored_name, served_name) in [
        (qualified(storage_group, &served.plural), served.group_resource()),
        (qualified(storage_group, &served.kind), qualified(&served.group, &served.kind)),
    ] {
        if let Some(rest) = error.message.strip_prefix(&format!("{stored_name} \"")) {
            error.message = format!("{served_name} \"{rest}");
            break;
        }
    }
    if let Some(details) = error.details.as_mut().filter(|details| details.group == storage_group) {
        details.group = served.group.clone();
    }
    error
}

/// The storage path's answer with its objects in the served version. Tables, Status objects and anything else
/// pass through unchanged; a watch is converted event by event as it streams.
async fn convert_response(
    response: Response<Body>,
    served: &ResourceDef,
    conversion: Conversion,
    watch: bool,
) -> Response<Body> {
    let (parts, body) = response.into_parts();
    let served = served.clone();
    if watch {
        let body = body.map_frame(move |frame| frame.map_data(|data| convert_watch_lines(&data, &served, conversion)));
        return Response::from_parts(parts, BodyExt::boxed(body));
    }
    let Ok(collected) = body.collect().await;
    let bytes = collected.to_bytes();
    let converted = match serde_json::from_slice::<Value>(&bytes) {
        Ok(mut answer) if is_convertible(&answer, &served) => {
            convert_answer(&mut answer, &served, conversion);
            Bytes::from(encode(&answer, &served, true))
        }
        _ => bytes,
    };
    let mut parts = parts;
    parts.headers.remove(http::header::CONTENT_LENGTH);
    Response::from_parts(parts, BodyExt::boxed(http_body_util::Full::new(converted)))
}

/// Whether an answer is an object or a list of the resource (the storage form's kind is the served kind's), or a
/// Table whose rows carry objects (`includeObject=Object`).
fn is_convertible(answer: &Value, served: &ResourceDef) -> bool {
    let kind = answer.get("kind").and_then(Value::as_str);
    kind == Some(served.kind.as_str()) || kind == Some(served.list_kind().as_str()) || kind == Some("Table")
}

/// Converts an object, each item of a list, or each row's object of a Table, in place.
fn convert_answer(answer: &mut Value, served: &ResourceDef, conversion: Conversion) {
    if answer.get("kind").and_then(Value::as_str) == Some(served.kind.as_str()) {
        *answer = conversion.to_served(served, answer);
        return;
    }
    if answer.get("kind").and_then(Value::as_str) == Some("Table") {
        for row in answer.get_mut("rows").and_then(Value::as_array_mut).into_iter().flatten() {
            if let Some(object) = row.get_mut("object").filter(|object| object["kind"] == json!(served.kind)) {
                *object = conversion.to_served(served, object);
            }
        }
        return;
    }
    if let Some(items) = answer.get_mut("items").and_then(Value::as_array_mut) {
        for item in items {
            *item = conversion.to_served(served, item);
        }
    }
    answer["apiVersion"] = json!(served.api_version());
}

/// JSON as the storage path writes it: built-in kinds in their Go field order, a newline after a whole body.
fn encode(value: &Value, served: &ResourceDef, newline: bool) -> Vec<u8> {
    let mut bytes = Vec::new();
    if value.get("kind") == Some(&json!("Table")) {
        // A Table's own fields have no Go order to follow; its row objects are in the served form already.
        bytes = serde_json::to_vec(value).unwrap_or_default();
    } else {
        let order = crate::apiserver::field_order::FieldOrder::of(served);
        crate::apiserver::field_order::write_json(&mut bytes, value, order);
    }
    if newline {
        bytes.push(b'\n');
    }
    bytes
}

/// Watch events (one JSON object a line) with their objects converted.
fn convert_watch_lines(data: &Bytes, served: &ResourceDef, conversion: Conversion) -> Bytes {
    let mut out = Vec::with_capacity(data.len());
    for line in data.split_inclusive(|byte| *byte == b'\n') {
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        match serde_json::from_slice::<Value>(text) {
            Ok(event) if event.get("object").is_some_and(|object| object.get("kind") == Some(&json!(served.kind))) => {
                let object = conversion.to_served(served, &event["object"]);
                out.extend(format!("{{\"type\":{},\"object\":", event["type"]).into_bytes());
                out.extend(encode(&object, served, false));
                out.extend(b"}\n");
            }
            _ => out.extend_from_slice(line),
        }
    }
    Bytes::from(out)
}

// ---- Events ----

/// core/v1 Event field and its events.k8s.io/v1 name.
const EVENT_FIELDS: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
    ("reportingComponent", "reportingController"),
];

#[derive(Clone, Copy)]
enum Direction {
    ToCore,
    FromCore,
}

fn rename_fields(object: &Value, fields: &[(&str, &str)], direction: Direction) -> Value {
    let Some(map) = object.as_object() else { return object.clone() };
    let renamed: Map<String, Value> = map
        .iter()
        .map(|(key, value)| {
            let new_key = fields
                .iter()
                .find_map(|(core, other)| match direction {
                    Direction::ToCore => (key == other).then_some(*core),
                    Direction::FromCore => (key == core).then_some(*other),
                })
                .unwrap_or(key);
            (new_key.to_string(), value.clone())
        })
        .collect();
    Value::Object(renamed)
}

// ---- HorizontalPodAutoscaler ----

/// autoscaling/v2 → autoscaling/v1: the CPU utilisation target becomes `targetCPUUtilizationPercentage`, the rest
/// goes to annotations.
fn hpa_v2_to_v1(v2: &Value) -> Value {
    let mut v1 = Map::new();
    let mut metadata = v2.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let mut annotations = Map::new();
    if let Some(spec) = v2.get("spec") {
        let mut spec_v1 = copy_fields(spec, &["scaleTargetRef", "minReplicas", "maxReplicas"]);
        let mut others = Vec::new();
        for metric in spec.get("metrics").and_then(Value::as_array).into_iter().flatten() {
            let utilization = cpu_utilization(metric, "target");
            match utilization {
                Some(percent) if !spec_v1.contains_key("targetCPUUtilizationPercentage") => {
                    spec_v1.insert("targetCPUUtilizationPercentage".into(), percent);
                }
                _ => others.push(metric_to_v1(metric, SPEC_FIELDS)),
            }
        }
        if !others.is_empty() {
            annotations.insert(METRICS_ANNOTATION.into(), json!(Value::Array(others).to_string()));
        }
        if let Some(behavior) = spec.get("behavior").filter(|behavior| !behavior.is_null()) {
            annotations.insert(BEHAVIOR_ANNOTATION.into(), json!(behavior.to_string()));
        }
        v1.insert("spec".into(), Value::Object(spec_v1));
    }
    if let Some(status) = v2.get("status") {
        let mut status_v1 =
            copy_fields(status, &["observedGeneration", "lastScaleTime", "currentReplicas", "desiredReplicas"]);
        let mut others = Vec::new();
        for metric in status.get("currentMetrics").and_then(Value::as_array).into_iter().flatten() {
            match cpu_utilization(metric, "current") {
                Some(percent) if !status_v1.contains_key("currentCPUUtilizationPercentage") => {
                    status_v1.insert("currentCPUUtilizationPercentage".into(), percent);
                }
                _ => others.push(metric_to_v1(metric, STATUS_FIELDS)),
            }
        }
        if !others.is_empty() {
            annotations.insert(CURRENT_METRICS_ANNOTATION.into(), json!(Value::Array(others).to_string()));
        }
        if let Some(conditions) = status.get("conditions").filter(|c| c.as_array().is_some_and(|c| !c.is_empty())) {
            annotations.insert(CONDITIONS_ANNOTATION.into(), json!(conditions.to_string()));
        }
        v1.insert("status".into(), Value::Object(status_v1));
    }
    if !annotations.is_empty() {
        let existing = metadata.get_mut("annotations").and_then(Value::as_object_mut);
        match existing {
            Some(existing) => existing.extend(annotations),
            None => metadata["annotations"] = Value::Object(annotations),
        }
    }
    let mut object = Map::new();
    object.insert("kind".into(), json!("HorizontalPodAutoscaler"));
    object.insert("apiVersion".into(), json!("autoscaling/v1"));
    object.insert("metadata".into(), metadata);
    object.extend(v1);
    Value::Object(object)
}

/// autoscaling/v1 → autoscaling/v2, taking back what the annotations carry.
fn hpa_v1_to_v2(v1: &Value) -> Value {
    let mut metadata = v1.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let mut taken = |name: &str| -> Option<Value> {
        let annotations = metadata.get_mut("annotations")?.as_object_mut()?;
        let text = annotations.remove(name)?;
        serde_json::from_str(text.as_str()?).ok()
    };
    let metric_annotation = taken(METRICS_ANNOTATION);
    let current_annotation = taken(CURRENT_METRICS_ANNOTATION);
    let conditions = taken(CONDITIONS_ANNOTATION);
    let behavior = taken(BEHAVIOR_ANNOTATION);
    if metadata.get("annotations").and_then(Value::as_object).is_some_and(Map::is_empty) {
        metadata.as_object_mut().map(|metadata| metadata.remove("annotations"));
    }
    let mut object = Map::new();
    object.insert("kind".into(), json!("HorizontalPodAutoscaler"));
    object.insert("apiVersion".into(), json!("autoscaling/v2"));
    object.insert("metadata".into(), metadata);
    if let Some(spec) = v1.get("spec") {
        let mut spec_v2 = copy_fields(spec, &["scaleTargetRef", "minReplicas", "maxReplicas"]);
        // Upstream's order: the annotation's metrics, then the cpu target.
        let mut metrics: Vec<Value> = metric_annotation
            .as_ref()
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|metric| metric_to_v2(metric, SPEC_FIELDS))
            .collect();
        if let Some(percent) = spec.get("targetCPUUtilizationPercentage").filter(|p| !p.is_null()) {
            metrics.push(json!({"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": percent}}}));
        }
        if !metrics.is_empty() {
            spec_v2.insert("metrics".into(), Value::Array(metrics));
        }
        if let Some(behavior) = behavior {
            spec_v2.insert("behavior".into(), behavior);
        }
        object.insert("spec".into(), Value::Object(spec_v2));
    }
    if let Some(status) = v1.get("status") {
        let mut status_v2 =
            copy_fields(status, &["observedGeneration", "lastScaleTime", "currentReplicas", "desiredReplicas"]);
        let mut current: Vec<Value> = current_annotation
            .as_ref()
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|metric| metric_to_v2(metric, STATUS_FIELDS))
            .collect();
        if let Some(percent) = status.get("currentCPUUtilizationPercentage").filter(|p| !p.is_null()) {
            current.push(json!({"type": "Resource", "resource": {"name": "cpu",
                "current": {"averageUtilization": percent}}}));
        }
        if !current.is_empty() {
            status_v2.insert("currentMetrics".into(), Value::Array(current));
        }
        if let Some(conditions) = conditions {
            status_v2.insert("conditions".into(), conditions);
        }
        object.insert("status".into(), Value::Object(status_v2));
    }
    Value::Object(object)
}

fn copy_fields(from: &Value, names: &[&str]) -> Map<String, Value> {
    names.iter().filter_map(|name| from.get(*name).map(|value| (name.to_string(), value.clone()))).collect()
}

/// The averageUtilization of a v2 Resource metric on cpu, under `side` (`target` or `current`).
fn cpu_utilization(metric: &Value, side: &str) -> Option<Value> {
    let resource = metric.get("resource").filter(|_| metric.get("type") == Some(&json!("Resource")))?;
    if resource.get("name") != Some(&json!("cpu")) {
        return None;
    }
    let values = resource.get(side)?;
    if side == "target" && values.get("type") != Some(&json!("Utilization")) {
        return None;
    }
    values.get("averageUtilization").filter(|percent| !percent.is_null()).cloned()
}

/// How one metric source type maps between the two forms: its `type`, the key of its source in both, and each
/// autoscaling/v1 field with the JSON pointer of the same value in the v2 source.
struct MetricFields {
    kind: &'static str,
    key: &'static str,
    fields: &'static [(&'static str, &'static str)],
}

/// MetricSpec: v1 (the `autoscaling.alpha.kubernetes.io/metrics` annotation) and v2 (`spec.metrics`).
const SPEC_FIELDS: &[MetricFields] = &[
    MetricFields {
        kind: "Object",
        key: "object",
        fields: &[
            ("target", "/describedObject"),
            ("metricName", "/metric/name"),
            ("selector", "/metric/selector"),
            ("targetValue", "/target/value"),
            ("averageValue", "/target/averageValue"),
        ],
    },
    MetricFields {
        kind: "Pods",
        key: "pods",
        fields: &[
            ("metricName", "/metric/name"),
            ("selector", "/metric/selector"),
            ("targetAverageValue", "/target/averageValue"),
        ],
    },
    MetricFields {
        kind: "Resource",
        key: "resource",
        fields: &[
            ("name", "/name"),
            ("targetAverageUtilization", "/target/averageUtilization"),
            ("targetAverageValue", "/target/averageValue"),
        ],
    },
    MetricFields {
        kind: "ContainerResource",
        key: "containerResource",
        fields: &[
            ("name", "/name"),
            ("container", "/container"),
            ("targetAverageUtilization", "/target/averageUtilization"),
            ("targetAverageValue", "/target/averageValue"),
        ],
    },
    MetricFields {
        kind: "External",
        key: "external",
        fields: &[
            ("metricName", "/metric/name"),
            ("metricSelector", "/metric/selector"),
            ("targetValue", "/target/value"),
            ("targetAverageValue", "/target/averageValue"),
        ],
    },
];

/// MetricStatus: v1 (the `autoscaling.alpha.kubernetes.io/current-metrics` annotation) and v2
/// (`status.currentMetrics`).
const STATUS_FIELDS: &[MetricFields] = &[
    MetricFields {
        kind: "Object",
        key: "object",
        fields: &[
            ("target", "/describedObject"),
            ("metricName", "/metric/name"),
            ("selector", "/metric/selector"),
            ("currentValue", "/current/value"),
            ("averageValue", "/current/averageValue"),
        ],
    },
    MetricFields {
        kind: "Pods",
        key: "pods",
        fields: &[
            ("metricName", "/metric/name"),
            ("selector", "/metric/selector"),
            ("currentAverageValue", "/current/averageValue"),
        ],
    },
    MetricFields {
        kind: "Resource",
        key: "resource",
        fields: &[
            ("name", "/name"),
            ("currentAverageUtilization", "/current/averageUtilization"),
            ("currentAverageValue", "/current/averageValue"),
        ],
    },
    MetricFields {
        kind: "ContainerResource",
        key: "containerResource",
        fields: &[
            ("name", "/name"),
            ("container", "/container"),
            ("currentAverageUtilization", "/current/averageUtilization"),
            ("currentAverageValue", "/current/averageValue"),
        ],
    },
    MetricFields {
        kind: "External",
        key: "external",
        fields: &[
            ("metricName", "/metric/name"),
            ("metricSelector", "/metric/selector"),
            ("currentValue", "/current/value"),
            ("currentAverageValue", "/current/averageValue"),
        ],
    },
];

/// A v2 metric (spec or status, by `table`) in the v1 annotation's form; one of an unknown type as it is.
fn metric_to_v1(metric: &Value, table: &[MetricFields]) -> Value {
    let kind = metric.get("type").and_then(Value::as_str).unwrap_or_default();
    let Some(mapping) = table.iter().find(|mapping| mapping.kind == kind) else { return metric.clone() };
    let source = metric.get(mapping.key).cloned().unwrap_or_else(|| json!({}));
    let v1: Map<String, Value> = mapping
        .fields
        .iter()
        .filter_map(|(v1_name, pointer)| {
            source.pointer(pointer).filter(|value| !value.is_null()).map(|value| (v1_name.to_string(), value.clone()))
        })
        .collect();
    json!({"type": kind, mapping.key: v1})
}

/// A v1 annotation metric back in the v2 form. A spec's target gets the `type` v2 requires: Utilization when it
/// has a utilization, Value when it has a value, AverageValue otherwise.
fn metric_to_v2(metric: &Value, table: &[MetricFields]) -> Value {
    let kind = metric.get("type").and_then(Value::as_str).unwrap_or_default();
    let Some(mapping) = table.iter().find(|mapping| mapping.kind == kind) else { return metric.clone() };
    let source = metric.get(mapping.key).cloned().unwrap_or_else(|| json!({}));
    let mut v2 = json!({});
    for (v1_name, pointer) in mapping.fields {
        if let Some(value) = source.get(*v1_name).filter(|value| !value.is_null()) {
            set_pointer(&mut v2, pointer, value.clone());
        }
    }
    if let Some(target) = v2.get_mut("target").and_then(Value::as_object_mut) {
        let target_type = if target.contains_key("averageUtilization") {
            "Utilization"
        } else if target.contains_key("value") {
            "Value"
        } else {
            "AverageValue"
        };
        target.insert("type".into(), json!(target_type));
    }
    json!({"type": kind, mapping.key: v2})
}

/// Sets `value` at a JSON pointer of object keys, making the objects on the way.
fn set_pointer(root: &mut Value, pointer: &str, value: Value) {
    let mut node = root;
    let mut steps = pointer.trim_start_matches('/').split('/').peekable();
    while let Some(step) = steps.next() {
        let Some(map) = node.as_object_mut() else { return };
        if steps.peek().is_none() {
            map.insert(step.to_string(), value);
            return;
        }
        node = map.entry(step.to_string()).or_insert_with(|| json!({}));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::registry::Registry;

    fn served(group: &str, version: &str, plural: &str) -> ResourceDef {
        let registry = Registry::new(crate::apiserver::registry::built_in_resources());
        registry.get(group, version, plural).map(|def| (**def).clone()).expect("the resource is served")
    }

    #[test]
    fn a_v1_autoscaler_round_trips_through_v2_with_its_annotations() {
        let v1 = json!({
            "apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "default", "annotations": {
                "team": "a",
                METRICS_ANNOTATION: r#"[{"type":"Pods","pods":{"metricName":"qps","targetAverageValue":"10"}}]"#,
            }},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                     "minReplicas": 1, "maxReplicas": 5, "targetCPUUtilizationPercentage": 60},
            "status": {"currentReplicas": 2, "desiredReplicas": 3, "currentCPUUtilizationPercentage": 71},
        });
        let v2 = Conversion::HorizontalPodAutoscalerV1.to_storage(&v1);
        assert_eq!(v2["apiVersion"], "autoscaling/v2");
        assert_eq!(
            v2["spec"]["metrics"],
            json!([
                {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "10"}}},
                {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}},
            ]),
            "the annotation's metrics come first, then the cpu target, as upstream converts them"
        );
        assert_eq!(v2["metadata"]["annotations"], json!({"team": "a"}), "the metrics annotation is taken back");
        assert_eq!(v2["status"]["currentMetrics"][0]["resource"]["current"]["averageUtilization"], 71);

        let def = served("autoscaling", "v1", "horizontalpodautoscalers");
        let back = Conversion::HorizontalPodAutoscalerV1.to_served(&def, &v2);
        assert_eq!(back["spec"], v1["spec"]);
        assert_eq!(back["status"], v1["status"]);
        let metrics: Value =
            serde_json::from_str(back["metadata"]["annotations"][METRICS_ANNOTATION].as_str().unwrap()).unwrap();
        assert_eq!(metrics, json!([{"type": "Pods", "pods": {"metricName": "qps", "targetAverageValue": "10"}}]));
    }

    #[test]
    fn v2_fields_without_a_v1_field_travel_in_annotations() {
        let v2 = json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 3,
                     "behavior": {"scaleDown": {"stabilizationWindowSeconds": 30}}},
            "status": {"currentReplicas": 1, "desiredReplicas": 1,
                       "conditions": [{"type": "AbleToScale", "status": "True"}]},
        });
        let def = served("autoscaling", "v1", "horizontalpodautoscalers");
        let v1 = Conversion::HorizontalPodAutoscalerV1.to_served(&def, &v2);
        assert!(v1["spec"].get("targetCPUUtilizationPercentage").is_none());
        let annotations = &v1["metadata"]["annotations"];
        assert!(annotations[BEHAVIOR_ANNOTATION].as_str().unwrap().contains("stabilizationWindowSeconds"));
        assert!(annotations[CONDITIONS_ANNOTATION].as_str().unwrap().contains("AbleToScale"));
        let again = Conversion::HorizontalPodAutoscalerV1.to_storage(&v1);
        assert_eq!(again["spec"]["behavior"], v2["spec"]["behavior"]);
        assert_eq!(again["status"]["conditions"], v2["status"]["conditions"]);
        assert!(again["metadata"].get("annotations").is_none(), "{again}");
    }

    #[test]
    fn every_metric_type_round_trips_between_the_forms() {
        let specs = json!([
            {"type": "Object", "object": {"describedObject": {"kind": "Service", "name": "s"}, "metric": {"name": "rps"}, "target": {"type": "Value", "value": "100"}}},
            {"type": "ContainerResource", "containerResource": {"name": "memory", "container": "app", "target": {"type": "AverageValue", "averageValue": "1Gi"}}},
            {"type": "External", "external": {"metric": {"name": "queue", "selector": {"matchLabels": {"q": "a"}}}, "target": {"type": "AverageValue", "averageValue": "30"}}},
            {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "AverageValue", "averageValue": "500m"}}},
        ]);
        for metric in specs.as_array().unwrap() {
            assert_eq!(metric_to_v2(&metric_to_v1(metric, SPEC_FIELDS), SPEC_FIELDS), *metric);
        }
        let status = json!({"type": "Pods", "pods": {"metric": {"name": "qps"}, "current": {"averageValue": "5"}}});
        assert_eq!(
            metric_to_v1(&status, STATUS_FIELDS),
            json!({"type": "Pods", "pods": {"metricName": "qps", "currentAverageValue": "5"}})
        );
        assert_eq!(metric_to_v2(&metric_to_v1(&status, STATUS_FIELDS), STATUS_FIELDS), status);
        // Only a cpu *utilization* target is v1's targetCPUUtilizationPercentage.
        assert_eq!(cpu_utilization(&specs[3], "target"), None);
    }

    #[test]
    fn events_rename_their_fields_between_the_two_apis() {
        let core = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e"},
            "involvedObject": {"kind": "Pod", "name": "p"}, "message": "pulled", "reason": "Pulled",
            "count": 2, "reportingComponent": "kubelet", "type": "Normal"});
        let def = served("events.k8s.io", "v1", "events");
        let new = Conversion::EventsV1.to_served(&def, &core);
        assert_eq!(new["apiVersion"], "events.k8s.io/v1");
        assert_eq!(new["regarding"]["name"], "p");
        assert_eq!(new["note"], "pulled");
        assert_eq!(new["deprecatedCount"], 2);
        assert_eq!(new["reportingController"], "kubelet");
        assert_eq!(Conversion::EventsV1.to_storage(&new), core);
    }

    #[test]
    fn event_field_selectors_name_the_core_fields() {
        assert_eq!(
            Conversion::EventsV1.storage_field_selector("regarding.name=p,type=Normal,reportingController!=x"),
            "involvedObject.name=p,type=Normal,reportingComponent!=x"
        );
    }

    #[test]
    fn errors_name_the_served_resource() {
        let def = served("events.k8s.io", "v1", "events");
        let missing = ApiError::not_found("events", "", "events", "x");
        let error = in_served_terms(missing, &def, Conversion::EventsV1);
        assert_eq!(error.message, r#"events.events.k8s.io "x" not found"#);
        assert_eq!(error.details.unwrap().group, "events.k8s.io");
        let invalid = ApiError::new(422, "Invalid", r#"Event "x" is invalid: reason: Required value"#);
        let error = in_served_terms(invalid, &def, Conversion::EventsV1);
        assert_eq!(error.message, r#"Event.events.k8s.io "x" is invalid: reason: Required value"#);
    }

    #[test]
    fn watch_lines_are_converted_one_by_one() {
        let def = served("events.k8s.io", "v1", "events");
        let data = Bytes::from(concat!(
            r#"{"type":"ADDED","object":{"apiVersion":"v1","kind":"Event","metadata":{"name":"a"},"message":"m"}}"#,
            "\n",
            r#"{"type":"ERROR","object":{"kind":"Status","code":410}}"#,
            "\n"
        ));
        let converted = convert_watch_lines(&data, &def, Conversion::EventsV1);
        let lines: Vec<Value> = converted
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(lines[0]["object"]["note"], "m");
        assert_eq!(lines[0]["object"]["apiVersion"], "events.k8s.io/v1");
        assert_eq!(lines[1]["object"]["code"], 410);
    }
}
