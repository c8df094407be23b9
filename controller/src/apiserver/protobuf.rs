//! Reads request bodies in Kubernetes' protobuf encoding as the JSON form of the same object.
//!
//! kubectl's typed commands (`create configmap`, `create deployment`, `auth can-i`, `auth whoami`, `create token`, …)
//! send `application/vnd.kubernetes.protobuf`, while the rest of the API server works on JSON values. The body is the
//! magic `k8s\0` and a `runtime.Unknown` envelope (apiVersion, kind, the object's own protobuf). The wire format only
//! carries field numbers and types; what the JSON form also needs comes from `protobuf/schema.txt`, a table generated
//! from the upstream API types (`protobuf/generate_schema.py`) that covers every built-in kind:
//! - each field's JSON name, and which embedded structs JSON inlines (`Volume` carries its `VolumeSource` inline);
//! - whether the Go field is a pointer: Go clients always write value fields, so a value field that is zero is the
//!   same as an absent one and JSON's `omitempty` drops it, while a pointer that is present is kept even when zero
//!   (`replicas: 0`, `automountServiceAccountToken: false`);
//! - the few types that have a JSON form of their own (times, durations, quantities, int-or-string, raw JSON), which
//!   are handled here by name.
//!
//! The result is what Go's `json.Marshal` would write for the object Go's protobuf decoder reads from the body.

use std::collections::HashMap;
use std::sync::OnceLock;

use base64::Engine;
use serde_json::{Map, Number, Value};

/// The media type of Kubernetes' protobuf encoding.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// Why a protobuf body cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtobufError {
    #[error("the body does not start with the kubernetes protobuf prefix \"k8s\\0\"")]
    MissingMagic,
    #[error("the protobuf envelope names no kind")]
    MissingKind,
    #[error("no protobuf schema is known for kind {kind:?} in {api_version:?}")]
    UnknownKind { api_version: String, kind: String },
    #[error("the protobuf envelope's content encoding {0:?} is not supported")]
    ContentEncoding(String),
    #[error("the protobuf envelope's content type {0:?} is not supported")]
    ContentType(String),
    #[error("malformed protobuf at {path}: {problem}")]
    Malformed { path: String, problem: String },
}

/// Turns a protobuf request body into the JSON object the JSON encoding of the same object would be.
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    decode_nested(body, 0).map_err(|fault| fault.into_error())
}

/// The 4 bytes every Kubernetes protobuf body starts with.
const MAGIC: &[u8] = b"k8s\0";

/// How deep messages may nest; a limit keeps hostile input from exhausting the stack (JSON schemas nest themselves).
const MAX_DEPTH: usize = 100;

const META: &str = "k8s.io.apimachinery.pkg.apis.meta.v1";
const TIME: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.Time";
const MICRO_TIME: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime";
const DURATION: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.Duration";
const FIELDS_V1: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1";
const QUANTITY: &str = "k8s.io.apimachinery.pkg.api.resource.Quantity";
const QUANTITY_VALUE: &str = "k8s.io.apimachinery.pkg.api.resource.QuantityValue";
const INT_OR_STRING: &str = "k8s.io.apimachinery.pkg.util.intstr.IntOrString";
const RAW_EXTENSION: &str = "k8s.io.apimachinery.pkg.runtime.RawExtension";
const APIEXTENSIONS: &str = "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.";

/// Seconds since the Unix epoch of Go's zero time (January 1, year 1), which JSON writes as `null`.
const GO_ZERO_TIME_SECONDS: i64 = -62_135_596_800;

/// A decoding failure on its way out: the problem, and the JSON path collected while unwinding.
#[derive(Debug)]
struct Fault {
    error: ProtobufError,
    path: Vec<String>,
}

impl Fault {
    fn malformed(problem: impl Into<String>) -> Fault {
        Fault { error: ProtobufError::Malformed { path: String::new(), problem: problem.into() }, path: Vec::new() }
    }

    fn within(mut self, segment: &str) -> Fault {
        self.path.push(segment.to_string());
        self
    }

    fn into_error(self) -> ProtobufError {
        match self.error {
            ProtobufError::Malformed { problem, .. } => {
                let path = if self.path.is_empty() {
                    "the top level".to_string()
                } else {
                    self.path.iter().rev().map(String::as_str).collect::<Vec<_>>().join(".")
                };
                ProtobufError::Malformed { path, problem }
            }
            error => error,
        }
    }
}

impl From<ProtobufError> for Fault {
    fn from(error: ProtobufError) -> Fault {
        Fault { error, path: Vec::new() }
    }
}

fn decode_nested(body: &[u8], depth: usize) -> Result<Value, Fault> {
    let envelope = body.strip_prefix(MAGIC).ok_or(ProtobufError::MissingMagic)?;
    let mut api_version = String::new();
    let mut kind = String::new();
    let mut raw: &[u8] = &[];
    let mut content_encoding = String::new();
    let mut content_type = String::new();
    for field in fields(envelope) {
        let (number, value) = field?;
        match number {
            1 => {
                for inner in fields(value.bytes().map_err(|fault| fault.within("typeMeta"))?) {
                    let (number, value) = inner.map_err(|fault| fault.within("typeMeta"))?;
                    match number {
                        1 => api_version = value.string().map_err(|fault| fault.within("apiVersion"))?,
                        2 => kind = value.string().map_err(|fault| fault.within("kind"))?,
                        _ => {}
                    }
                }
            }
            2 => raw = value.bytes().map_err(|fault| fault.within("raw"))?,
            3 => content_encoding = value.string().map_err(|fault| fault.within("contentEncoding"))?,
            4 => content_type = value.string().map_err(|fault| fault.within("contentType"))?,
            _ => {}
        }
    }
    if !content_encoding.is_empty() {
        return Err(ProtobufError::ContentEncoding(content_encoding).into());
    }
    let mut object = match content_type.as_str() {
        "" | CONTENT_TYPE => {
            if kind.is_empty() {
                return Err(ProtobufError::MissingKind.into());
            }
            let message = schema().message_for(&api_version, &kind)?;
            render_message(message, raw, depth + 1)?
        }
        "application/json" => serde_json::from_slice(raw)
            .map_err(|error| Fault::malformed(format!("the embedded JSON object is invalid: {error}")))?,
        other => return Err(ProtobufError::ContentType(other.to_string()).into()),
    };
    if let Value::Object(map) = &mut object {
        // `apiVersion` and `kind` come from the envelope; objects embed them inline with `omitempty`.
        if !kind.is_empty() {
            map.insert("kind".to_string(), Value::String(kind));
        }
        if !api_version.is_empty() {
            map.insert("apiVersion".to_string(), Value::String(api_version));
        }
    }
    Ok(object)
}

/// One field as the wire carries it.
#[derive(Debug, Clone, Copy)]
enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    /// Skipped: no built-in type has 32-bit fields.
    Fixed32,
}

impl<'a> Wire<'a> {
    fn bytes(self) -> Result<&'a [u8], Fault> {
        match self {
            Wire::Bytes(bytes) => Ok(bytes),
            other => Err(Fault::malformed(format!("expected a length-delimited field, found {}", other.describe()))),
        }
    }

    fn string(self) -> Result<String, Fault> {
        // Go keeps invalid UTF-8 in strings and its JSON encoder writes U+FFFD for it.
        Ok(String::from_utf8_lossy(self.bytes()?).into_owned())
    }

    fn varint(self) -> Result<u64, Fault> {
        match self {
            Wire::Varint(value) => Ok(value),
            other => Err(Fault::malformed(format!("expected a varint field, found {}", other.describe()))),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Wire::Varint(_) => "a varint",
            Wire::Fixed64(_) => "a 64-bit field",
            Wire::Bytes(_) => "a length-delimited field",
            Wire::Fixed32 => "a 32-bit field",
        }
    }
}

/// The fields of one message, in wire order.
fn fields(bytes: &[u8]) -> Fields<'_> {
    Fields { bytes, failed: false }
}

struct Fields<'a> {
    bytes: &'a [u8],
    failed: bool,
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Wire<'a>), Fault>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.bytes.is_empty() || self.failed {
            return None;
        }
        let item = self.read_field();
        self.failed = item.is_err();
        Some(item)
    }
}

impl<'a> Fields<'a> {
    fn read_field(&mut self) -> Result<(u32, Wire<'a>), Fault> {
        let tag = read_varint(&mut self.bytes)?;
        let number = tag >> 3;
        if number == 0 || number > u64::from(u32::MAX >> 3) {
            return Err(Fault::malformed(format!("field number {number} is out of range")));
        }
        let number = number as u32;
        let value = match tag & 7 {
            0 => Wire::Varint(read_varint(&mut self.bytes)?),
            1 => Wire::Fixed64(u64::from_le_bytes(self.take(8)?.try_into().expect("took 8 bytes"))),
            2 => {
                let length = read_varint(&mut self.bytes)?;
                let length =
                    usize::try_from(length).ok().filter(|length| *length <= self.bytes.len()).ok_or_else(|| {
                        Fault::malformed(format!(
                            "field {number} claims {length} bytes but only {} remain",
                            self.bytes.len()
                        ))
                    })?;
                Wire::Bytes(self.take(length)?)
            }
            5 => {
                self.take(4)?;
                Wire::Fixed32
            }
            other => return Err(Fault::malformed(format!("field {number} has unsupported wire type {other}"))),
        };
        Ok((number, value))
    }

    fn take(&mut self, count: usize) -> Result<&'a [u8], Fault> {
        if self.bytes.len() < count {
            return Err(Fault::malformed("the message is truncated"));
        }
        let (taken, rest) = self.bytes.split_at(count);
        self.bytes = rest;
        Ok(taken)
    }
}

fn read_varint(bytes: &mut &[u8]) -> Result<u64, Fault> {
    let mut value: u64 = 0;
    for index in 0..10 {
        let Some((&byte, rest)) = bytes.split_first() else {
            return Err(Fault::malformed("the message is truncated inside a varint"));
        };
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(Fault::malformed("a varint is longer than 10 bytes"))
}

/// The protobuf messages of the built-in API, parsed once from the generated table.
struct Schema {
    /// apiVersion (`apps/v1`, `v1`) to protobuf package (`k8s.io.api.apps.v1`).
    packages: HashMap<String, String>,
    messages: HashMap<String, MessageDef>,
}

struct MessageDef {
    name: String,
    /// A Go slice type that protobuf wraps in a message with one repeated `items` field; JSON writes the slice.
    list: bool,
    /// Sorted by number.
    fields: Vec<FieldDef>,
}

struct FieldDef {
    number: u32,
    /// `None` for an embedded struct whose fields JSON writes into the enclosing object.
    json_name: Option<String>,
    shape: Shape,
    kind: Kind,
    pointer: bool,
    omitempty: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Single,
    Repeated,
    /// Map keys are strings in every built-in type.
    Map,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    String,
    Bytes,
    Bool,
    Int32,
    Int64,
    Double,
    Message(String),
}

static SCHEMA_TABLE: &str = include_str!("../../protobuf/schema.txt");

fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    // The table is compiled in and a unit test parses it, so a failure here is a build defect.
    SCHEMA.get_or_init(|| Schema::parse(SCHEMA_TABLE).expect("the compiled-in protobuf schema table parses"))
}

impl Schema {
    fn parse(text: &str) -> Result<Schema, String> {
        let mut packages = HashMap::new();
        let mut messages: HashMap<String, MessageDef> = HashMap::new();
        let mut package = String::new();
        let mut current: Option<MessageDef> = None;
        for (index, line) in text.lines().enumerate() {
            let fail = |problem: &str| format!("line {}: {problem}: {line:?}", index + 1);
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            if line.starts_with("  ") {
                let message = current.as_mut().ok_or_else(|| fail("a field outside a message"))?;
                message.fields.push(FieldDef::parse(&words, &package).ok_or_else(|| fail("an unreadable field"))?);
                continue;
            }
            match words.as_slice() {
                ["group", api_version, name] => {
                    packages.insert(api_version.to_string(), name.to_string());
                }
                ["package", name] => package = name.to_string(),
                ["message", name, rest @ ..] => {
                    if let Some(done) = current.take() {
                        messages.insert(done.name.clone(), done);
                    }
                    let list = match rest {
                        [] => false,
                        ["list"] => true,
                        _ => return Err(fail("an unknown message flag")),
                    };
                    current = Some(MessageDef { name: format!("{package}.{name}"), list, fields: Vec::new() });
                }
                _ => return Err(fail("an unknown line")),
            }
        }
        if let Some(done) = current.take() {
            messages.insert(done.name.clone(), done);
        }
        for message in messages.values_mut() {
            message.fields.sort_by_key(|field| field.number);
        }
        for message in messages.values() {
            for field in &message.fields {
                if let Kind::Message(name) = &field.kind {
                    if !messages.contains_key(name) {
                        return Err(format!("{}.{} refers to the unknown message {name}", message.name, field.number));
                    }
                }
            }
        }
        Ok(Schema { packages, messages })
    }

    /// The message of a top-level object; the meta types (`DeleteOptions`, `Status`, …) belong to every group.
    fn message_for(&self, api_version: &str, kind: &str) -> Result<&MessageDef, ProtobufError> {
        self.packages
            .get(api_version)
            .and_then(|package| self.messages.get(&format!("{package}.{kind}")))
            .or_else(|| self.messages.get(&format!("{META}.{kind}")))
            .ok_or_else(|| ProtobufError::UnknownKind { api_version: api_version.to_string(), kind: kind.to_string() })
    }

    fn message(&self, name: &str) -> Result<&MessageDef, Fault> {
        self.messages.get(name).ok_or_else(|| Fault::malformed(format!("no schema for message {name}")))
    }
}

impl FieldDef {
    fn parse(words: &[&str], package: &str) -> Option<FieldDef> {
        let (number, json_name, rest) = match words {
            [number, json_name, rest @ ..] => (number.parse().ok()?, *json_name, rest),
            _ => return None,
        };
        let (shape, rest) = match rest {
            ["repeated", rest @ ..] => (Shape::Repeated, rest),
            ["map", "string", rest @ ..] => (Shape::Map, rest),
            rest => (Shape::Single, rest),
        };
        let (type_name, flags) = rest.split_first()?;
        let kind = match *type_name {
            "string" => Kind::String,
            "bytes" => Kind::Bytes,
            "bool" => Kind::Bool,
            "int32" => Kind::Int32,
            "int64" => Kind::Int64,
            "double" => Kind::Double,
            name if name.contains('.') => Kind::Message(name.to_string()),
            name if name.starts_with(|first: char| first.is_ascii_uppercase()) => {
                Kind::Message(format!("{package}.{name}"))
            }
            _ => return None,
        };
        let mut field = FieldDef {
            number,
            json_name: (json_name != "-").then(|| json_name.to_string()),
            shape,
            kind,
            pointer: false,
            omitempty: false,
        };
        for flag in flags {
            match *flag {
                "inline" => field.json_name = None,
                "pointer" => field.pointer = true,
                "omitempty" => field.omitempty = true,
                _ => return None,
            }
        }
        Some(field)
    }

    fn label(&self) -> String {
        self.json_name.clone().unwrap_or_else(|| format!("<inline {}>", self.number))
    }
}

fn render_message(message: &MessageDef, bytes: &[u8], depth: usize) -> Result<Value, Fault> {
    if depth > MAX_DEPTH {
        return Err(Fault::malformed(format!("objects nest more than {MAX_DEPTH} levels deep")));
    }
    if let Some(special) = render_special(message, bytes, depth)? {
        return Ok(special);
    }
    let mut by_field: Vec<Vec<Wire<'_>>> = vec![Vec::new(); message.fields.len()];
    for field in fields(bytes) {
        let (number, value) = field?;
        // Go's decoder skips fields it does not know, e.g. ones a newer client sends.
        if let Ok(index) = message.fields.binary_search_by_key(&number, |field| field.number) {
            by_field[index].push(value);
        }
    }
    if message.list {
        return match message.fields.first() {
            Some(items) => render_field(items, &by_field[0], depth).map(|value| value.unwrap_or(Value::Null)),
            None => Ok(Value::Null),
        };
    }
    let mut object = Map::new();
    for (field, values) in message.fields.iter().zip(&by_field) {
        let label = field.label();
        let Some(value) = render_field(field, values, depth).map_err(|fault| fault.within(&label))? else {
            continue;
        };
        match &field.json_name {
            Some(name) => {
                object.insert(name.clone(), value);
            }
            None => {
                if let Value::Object(inlined) = value {
                    object.extend(inlined);
                }
            }
        }
    }
    Ok(Value::Object(object))
}

/// The JSON value of one field, or `None` when JSON leaves it out.
fn render_field(field: &FieldDef, values: &[Wire<'_>], depth: usize) -> Result<Option<Value>, Fault> {
    match field.shape {
        Shape::Single => render_single(field, values, depth),
        Shape::Repeated => {
            let mut items = Vec::new();
            for (index, value) in values.iter().enumerate() {
                match (&field.kind, value) {
                    (Kind::Message(_) | Kind::String | Kind::Bytes, _) => items.push(
                        render_value(&field.kind, *value, depth).map_err(|fault| fault.within(&index.to_string()))?,
                    ),
                    // Numbers and booleans may come packed into one length-delimited field.
                    (_, Wire::Bytes(packed)) => {
                        let mut rest: &[u8] = packed;
                        while !rest.is_empty() {
                            let wire = match field.kind {
                                Kind::Double => Wire::Fixed64(u64::from_le_bytes(
                                    take_fixed::<8>(&mut rest).map_err(|fault| fault.within(&index.to_string()))?,
                                )),
                                _ => Wire::Varint(read_varint(&mut rest)?),
                            };
                            items.push(render_value(&field.kind, wire, depth)?);
                        }
                    }
                    (_, value) => items.push(render_value(&field.kind, *value, depth)?),
                }
            }
            Ok(absent_or(items.is_empty(), field, || Value::Array(items)))
        }
        Shape::Map => {
            let mut map = Map::new();
            for value in values {
                let mut key = String::new();
                let mut entry_value = None;
                for entry_field in fields(value.bytes()?) {
                    match entry_field? {
                        (1, key_wire) => key = key_wire.string()?,
                        (2, value_wire) => entry_value = Some(value_wire),
                        _ => {}
                    }
                }
                let rendered = match entry_value {
                    Some(wire) => render_value(&field.kind, wire, depth).map_err(|fault| fault.within(&key))?,
                    None => zero_value(&field.kind, depth)?,
                };
                map.insert(key, rendered);
            }
            Ok(absent_or(map.is_empty(), field, || Value::Object(map)))
        }
    }
}

/// What JSON writes for a repeated or map field: nothing or `null` when it is empty (Go reads it as a nil slice or
/// map), the value otherwise.
fn absent_or(empty: bool, field: &FieldDef, value: impl FnOnce() -> Value) -> Option<Value> {
    if !empty {
        Some(value())
    } else if field.omitempty {
        None
    } else {
        Some(Value::Null)
    }
}

fn render_single(field: &FieldDef, values: &[Wire<'_>], depth: usize) -> Result<Option<Value>, Fault> {
    if let Kind::Message(name) = &field.kind {
        let message = schema().message(name)?;
        return match values {
            [] if field.pointer => Ok((!field.omitempty).then_some(Value::Null)),
            // A value struct is always there in Go; JSON's omitempty does not apply to structs.
            [] => render_message(message, &[], depth + 1).map(Some),
            [Wire::Bytes(bytes)] => render_message(message, bytes, depth + 1).map(Some),
            // Protobuf merges repeated occurrences of a singular message, which is what decoding them in one
            // buffer does.
            several => {
                let mut joined = Vec::new();
                for value in several {
                    let bytes = value.bytes()?;
                    joined.extend_from_slice(&encode_varint(u64::from(field.number) << 3 | 2));
                    joined.extend_from_slice(&encode_varint(bytes.len() as u64));
                    joined.extend_from_slice(bytes);
                }
                let mut merged = Vec::new();
                for part in fields(&joined) {
                    if let (_, Wire::Bytes(bytes)) = part? {
                        merged.extend_from_slice(bytes);
                    }
                }
                render_message(message, &merged, depth + 1).map(Some)
            }
        };
    }
    let Some(last) = values.last() else {
        return Ok(match (field.pointer, field.omitempty) {
            (_, true) => None,
            (true, false) => Some(Value::Null),
            (false, false) => Some(zero_value(&field.kind, depth)?),
        });
    };
    let value = render_value(&field.kind, *last, depth)?;
    if !field.pointer && field.omitempty && is_zero(&value) {
        return Ok(None);
    }
    Ok(Some(value))
}

fn encode_varint(mut value: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

fn is_zero(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(flag) => !flag,
        Value::Number(number) => number.as_f64() == Some(0.0),
        Value::String(text) => text.is_empty(),
        Value::Array(items) => items.is_empty(),
        Value::Object(map) => map.is_empty(),
    }
}

/// What Go's JSON encoder writes for a value field that was never set.
fn zero_value(kind: &Kind, depth: usize) -> Result<Value, Fault> {
    Ok(match kind {
        Kind::String => Value::String(String::new()),
        Kind::Bytes => Value::Null,
        Kind::Bool => Value::Bool(false),
        Kind::Int32 | Kind::Int64 | Kind::Double => Value::from(0),
        Kind::Message(name) => render_message(schema().message(name)?, &[], depth + 1)?,
    })
}

fn render_value(kind: &Kind, wire: Wire<'_>, depth: usize) -> Result<Value, Fault> {
    Ok(match kind {
        Kind::String => Value::String(wire.string()?),
        Kind::Bytes => Value::String(base64::engine::general_purpose::STANDARD.encode(wire.bytes()?)),
        Kind::Bool => Value::Bool(wire.varint()? != 0),
        // Negative int32 values are sign-extended to 64 bits on the wire.
        Kind::Int32 => Value::from(wire.varint()? as i64 as i32),
        Kind::Int64 => Value::from(wire.varint()? as i64),
        Kind::Double => match wire {
            Wire::Fixed64(bits) => json_number(f64::from_bits(bits))?,
            other => return Err(Fault::malformed(format!("expected a 64-bit field, found {}", other.describe()))),
        },
        Kind::Message(name) => render_message(schema().message(name)?, wire.bytes()?, depth + 1)?,
    })
}

/// Go writes whole floats without a fraction (`1`, not `1.0`) and refuses NaN and infinities.
fn json_number(number: f64) -> Result<Value, Fault> {
    if number.fract() == 0.0 && number.abs() < 1e15 {
        return Ok(Value::from(number as i64));
    }
    Number::from_f64(number)
        .map(Value::Number)
        .ok_or_else(|| Fault::malformed(format!("{number} cannot be written as JSON")))
}

fn take_fixed<const N: usize>(bytes: &mut &[u8]) -> Result<[u8; N], Fault> {
    if bytes.len() < N {
        return Err(Fault::malformed("a packed field is truncated"));
    }
    let (taken, rest) = bytes.split_at(N);
    *bytes = rest;
    Ok(taken.try_into().expect("split at N"))
}

/// The types whose JSON form is not the JSON of their protobuf fields; `None` for every other type.
fn render_special(message: &MessageDef, bytes: &[u8], depth: usize) -> Result<Option<Value>, Fault> {
    let value = match message.name.as_str() {
        TIME => render_time(bytes, false)?,
        MICRO_TIME => render_time(bytes, true)?,
        DURATION => {
            let nanoseconds = scalar_fields(bytes)?.get(&1).map(|wire| wire.varint()).transpose()?.unwrap_or(0);
            Value::String(go_duration(nanoseconds as i64))
        }
        QUANTITY | QUANTITY_VALUE => {
            let text = scalar_fields(bytes)?.get(&1).map(|wire| wire.string()).transpose()?.unwrap_or_default();
            Value::String(if text.is_empty() { "0".to_string() } else { text })
        }
        INT_OR_STRING => {
            let parts = scalar_fields(bytes)?;
            let is_string = parts.get(&1).map(|wire| wire.varint()).transpose()?.unwrap_or(0) == 1;
            if is_string {
                Value::String(parts.get(&3).map(|wire| wire.string()).transpose()?.unwrap_or_default())
            } else {
                Value::from(parts.get(&2).map(|wire| wire.varint()).transpose()?.unwrap_or(0) as i64 as i32)
            }
        }
        RAW_EXTENSION | FIELDS_V1 => {
            render_raw(scalar_fields(bytes)?.get(&1).map(|wire| wire.bytes()).transpose()?, depth)?
        }
        name => match name.strip_prefix(APIEXTENSIONS).and_then(|rest| rest.split_once('.')).map(|(_, name)| name) {
            Some("JSON") => render_raw(scalar_fields(bytes)?.get(&1).map(|wire| wire.bytes()).transpose()?, depth)?,
            Some(either @ ("JSONSchemaPropsOrArray" | "JSONSchemaPropsOrBool" | "JSONSchemaPropsOrStringArray")) => {
                render_schema_alternative(message, either, bytes, depth)?
            }
            _ => return Ok(None),
        },
    };
    Ok(Some(value))
}

/// The last value of each field number, for the small special messages.
fn scalar_fields(bytes: &[u8]) -> Result<HashMap<u32, Wire<'_>>, Fault> {
    let mut found = HashMap::new();
    for field in fields(bytes) {
        let (number, value) = field?;
        found.insert(number, value);
    }
    Ok(found)
}

/// `metav1.Time` is written with second precision, `metav1.MicroTime` with microseconds; both in UTC and `null`
/// when zero (an empty message on the wire).
fn render_time(bytes: &[u8], micro: bool) -> Result<Value, Fault> {
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    let parts = scalar_fields(bytes)?;
    let seconds = parts.get(&1).map(|wire| wire.varint()).transpose()?.unwrap_or(0) as i64;
    let nanoseconds = parts.get(&2).map(|wire| wire.varint()).transpose()?.unwrap_or(0) as i64 as i32;
    if seconds == GO_ZERO_TIME_SECONDS && (nanoseconds == 0 || !micro) {
        return Ok(Value::Null);
    }
    if !(0..1_000_000_000).contains(&nanoseconds) {
        return Err(Fault::malformed(format!("{nanoseconds} nanoseconds is outside 0 to 999999999")));
    }
    // Go reads microseconds for MicroTime and whole seconds for Time.
    let nanoseconds = if micro { nanoseconds - nanoseconds % 1000 } else { 0 };
    let timestamp = jiff::Timestamp::new(seconds, nanoseconds)
        .map_err(|error| Fault::malformed(format!("the time {seconds}s {nanoseconds}ns is out of range: {error}")))?;
    let year = timestamp.to_zoned(jiff::tz::TimeZone::UTC).year();
    if !(0..=9999).contains(&year) {
        return Err(Fault::malformed(format!("the year {year} is outside 0 to 9999")));
    }
    let format = if micro { "%Y-%m-%dT%H:%M:%S%.6fZ" } else { "%Y-%m-%dT%H:%M:%SZ" };
    Ok(Value::String(timestamp.strftime(format).to_string()))
}

/// Embedded raw JSON (`RawExtension`, `FieldsV1`, apiextensions `JSON`), or an embedded protobuf object.
fn render_raw(raw: Option<&[u8]>, depth: usize) -> Result<Value, Fault> {
    match raw {
        None | Some([]) => Ok(Value::Null),
        Some(raw) if raw.starts_with(MAGIC) => decode_nested(raw, depth + 1),
        Some(raw) => serde_json::from_slice(raw)
            .map_err(|error| Fault::malformed(format!("the embedded raw value is not JSON: {error}"))),
    }
}

/// apiextensions' "schema or array/bool/string list" types, written the way their JSON marshalers write them.
fn render_schema_alternative(message: &MessageDef, which: &str, bytes: &[u8], depth: usize) -> Result<Value, Fault> {
    let mut by_number: HashMap<u32, Vec<Wire<'_>>> = HashMap::new();
    for field in fields(bytes) {
        let (number, value) = field?;
        by_number.entry(number).or_default().push(value);
    }
    let render = |number: u32| -> Result<Option<Value>, Fault> {
        let Some(field) = message.fields.iter().find(|field| field.number == number) else {
            return Ok(None);
        };
        let values = by_number.get(&number).map(Vec::as_slice).unwrap_or_default();
        if values.is_empty() {
            return Ok(None);
        }
        render_field(field, values, depth)
    };
    Ok(match which {
        // { schema = 1; repeated jSONSchemas = 2 }: the list when it has entries, else the schema or null.
        "JSONSchemaPropsOrArray" => render(2)?.or(render(1)?).unwrap_or(Value::Null),
        // { allows = 1; schema = 2 }: the schema when there is one, else the boolean.
        "JSONSchemaPropsOrBool" => match render(2)? {
            Some(schema) => schema,
            None => Value::Bool(render(1)?.and_then(|allows| allows.as_bool()).unwrap_or(false)),
        },
        // { schema = 1; repeated property = 2 }: the list when it has entries, else the schema or null.
        _ => render(2)?.or(render(1)?).unwrap_or(Value::Null),
    })
}

/// Go's `time.Duration.String()`: `1h2m3.5s`, `1.5s`, `250ms`, `0s`.
fn go_duration(nanoseconds: i64) -> String {
    if nanoseconds == 0 {
        return "0s".to_string();
    }
    let sign = if nanoseconds < 0 { "-" } else { "" };
    let total = nanoseconds.unsigned_abs();
    if total < 1_000_000_000 {
        let (unit, scale) = match total {
            0..1_000 => ("ns", 1),
            1_000..1_000_000 => ("µs", 1_000),
            _ => ("ms", 1_000_000),
        };
        return format!("{sign}{}{unit}", decimal(total, scale));
    }
    let hours = total / 3_600_000_000_000;
    let minutes = total / 60_000_000_000 % 60;
    let seconds = decimal(total % 60_000_000_000, 1_000_000_000);
    match (hours, minutes) {
        (0, 0) => format!("{sign}{seconds}s"),
        (0, _) => format!("{sign}{minutes}m{seconds}s"),
        _ => format!("{sign}{hours}h{minutes}m{seconds}s"),
    }
}

/// `value / scale` with the fraction's trailing zeros dropped.
fn decimal(value: u64, scale: u64) -> String {
    let whole = value / scale;
    let fraction = value % scale;
    if fraction == 0 {
        return whole.to_string();
    }
    let digits = scale.ilog10() as usize;
    let fraction = format!("{fraction:0digits$}");
    format!("{whole}.{}", fraction.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/protobuf/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|error| panic!("cannot read {path}: {error}"))
    }

    fn expected(name: &str) -> Value {
        serde_json::from_slice(&fixture(&format!("{name}.json"))).expect("fixture JSON parses")
    }

    #[test]
    fn the_schema_table_parses_and_refers_only_to_known_messages() {
        let schema = Schema::parse(SCHEMA_TABLE).unwrap();
        assert!(schema.messages.len() > 1000);
        assert_eq!(schema.packages["apps/v1"], "k8s.io.api.apps.v1");
        assert_eq!(schema.packages["v1"], "k8s.io.api.core.v1");
        let volume = &schema.messages["k8s.io.api.core.v1.Volume"];
        assert!(volume.fields.iter().any(|field| field.json_name.is_none()), "VolumeSource is inline");
        let spec = &schema.messages["k8s.io.api.apps.v1.DeploymentSpec"];
        assert!(spec.fields[0].pointer && spec.fields[0].json_name.as_deref() == Some("replicas"));
    }

    #[test]
    fn kubectl_bodies_decode_to_the_json_kubectl_would_send() {
        for name in [
            "configmap-literal",
            "configmap-binary",
            "secret-generic",
            "deployment",
            "service-nodeport",
            "job",
            "cronjob",
            "role",
            "rolebinding",
            "namespace",
            "serviceaccount",
            "pdb",
            "quota",
            "priorityclass",
            "ingress",
            "auth-can-i",
            "auth-whoami",
            "token",
            "token-plain",
        ] {
            let decoded = decode(&fixture(&format!("{name}.pb"))).unwrap_or_else(|error| panic!("{name}: {error}"));
            assert_eq!(decoded, expected(name), "{name}");
        }
    }

    fn varint_field(number: u32, value: u64) -> Vec<u8> {
        [encode_varint(u64::from(number) << 3), encode_varint(value)].concat()
    }

    fn bytes_field(number: u32, payload: &[u8]) -> Vec<u8> {
        [encode_varint(u64::from(number) << 3 | 2), encode_varint(payload.len() as u64), payload.to_vec()].concat()
    }

    fn string_field(number: u32, text: &str) -> Vec<u8> {
        bytes_field(number, text.as_bytes())
    }

    fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let type_meta = [string_field(1, api_version), string_field(2, kind)].concat();
        [MAGIC.to_vec(), bytes_field(1, &type_meta), bytes_field(2, raw)].concat()
    }

    #[test]
    fn a_pointer_keeps_its_zero_and_a_value_field_drops_it() {
        let metadata = [string_field(1, "web-1"), string_field(3, "default"), string_field(6, "")].concat();
        let delete_options = varint_field(1, 0);
        let raw = [bytes_field(1, &metadata), bytes_field(2, &delete_options)].concat();
        let decoded = decode(&envelope("policy/v1", "Eviction", &raw)).unwrap();
        let expected = serde_json::json!({
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": "web-1", "namespace": "default", "creationTimestamp": null},
            "deleteOptions": {"gracePeriodSeconds": 0},
        });
        assert_eq!(decoded, expected);

        let container = [string_field(1, "app"), string_field(2, ""), varint_field(16, 0)].concat();
        let spec = [
            bytes_field(2, &container),
            varint_field(4, 0),
            varint_field(11, 0),
            varint_field(21, 0),
            varint_field(25, (-5i64) as u64),
        ]
        .concat();
        let decoded = decode(&envelope("v1", "Pod", &bytes_field(2, &spec))).unwrap();
        let expected_spec = serde_json::json!({
            "containers": [{"name": "app", "resources": {}}],
            "terminationGracePeriodSeconds": 0,
            "automountServiceAccountToken": false,
            "priority": -5,
        });
        assert_eq!(decoded["spec"], expected_spec);
    }

    #[test]
    fn inline_structs_int_or_string_and_quantities_take_their_json_form() {
        let empty_dir = [string_field(1, ""), bytes_field(2, &string_field(1, "1Gi"))].concat();
        let volume = [string_field(1, "data"), bytes_field(2, &bytes_field(2, &empty_dir))].concat();
        let port = [varint_field(1, 1), string_field(3, "http")].concat();
        let http_get = [string_field(1, "/healthz"), bytes_field(2, &port)].concat();
        let probe = [bytes_field(1, &bytes_field(2, &http_get)), varint_field(2, 5)].concat();
        let container = [string_field(1, "app"), bytes_field(10, &probe)].concat();
        let spec = [bytes_field(1, &volume), bytes_field(2, &container)].concat();
        let decoded = decode(&envelope("v1", "Pod", &bytes_field(2, &spec))).unwrap();
        assert_eq!(decoded["spec"]["volumes"], serde_json::json!([{"name": "data", "emptyDir": {"sizeLimit": "1Gi"}}]));
        assert_eq!(
            decoded["spec"]["containers"][0]["livenessProbe"],
            serde_json::json!({"httpGet": {"path": "/healthz", "port": "http"}, "initialDelaySeconds": 5})
        );
    }

    #[test]
    fn times_are_rfc3339_in_utc_and_micro_times_keep_microseconds() {
        let instant = [varint_field(1, 1_700_000_000), varint_field(2, 123_456_789)].concat();
        let raw = [
            bytes_field(1, &string_field(1, "ev")),
            bytes_field(2, &instant),
            bytes_field(13, &instant),
            bytes_field(14, &[]),
            string_field(7, "Started"),
        ]
        .concat();
        let decoded = decode(&envelope("events.k8s.io/v1", "Event", &raw)).unwrap();
        assert_eq!(decoded["eventTime"], "2023-11-14T22:13:20.123456Z");
        assert_eq!(decoded["deprecatedFirstTimestamp"], "2023-11-14T22:13:20Z");
        assert_eq!(decoded["deprecatedLastTimestamp"], Value::Null);
        assert_eq!(decoded["reason"], "Started");
        assert_eq!(decoded["regarding"], serde_json::json!({}));

        let negative = [varint_field(1, 1_700_000_000), varint_field(2, (-1i64) as u64)].concat();
        let raw = [bytes_field(1, &string_field(1, "ev")), bytes_field(2, &negative)].concat();
        let error = decode(&envelope("events.k8s.io/v1", "Event", &raw)).unwrap_err();
        assert!(error.to_string().starts_with("malformed protobuf at eventTime: "), "{error}");
    }

    #[test]
    fn durations_read_like_go() {
        let cases = [
            (0, "0s"),
            (5, "5ns"),
            (1_500, "1.5µs"),
            (250_000_000, "250ms"),
            (1_500_000_000, "1.5s"),
            (90_000_000_000, "1m30s"),
            (3_600_000_000_000, "1h0m0s"),
            (-2_000_000_000, "-2s"),
        ];
        for (nanoseconds, text) in cases {
            assert_eq!(go_duration(nanoseconds), text);
        }
    }

    fn custom_resource_definition(schema: &[u8]) -> Vec<u8> {
        let version =
            [string_field(1, "v1"), varint_field(2, 1), varint_field(3, 1), bytes_field(4, &bytes_field(1, schema))]
                .concat();
        let spec = [string_field(1, "example.com"), string_field(4, "Namespaced"), bytes_field(7, &version)].concat();
        envelope("apiextensions.k8s.io/v1", "CustomResourceDefinition", &bytes_field(2, &spec))
    }

    #[test]
    fn json_schemas_carry_raw_json_and_their_either_or_types() {
        let size = [string_field(5, "integer"), bytes_field(8, &bytes_field(1, br#"{"min": 1}"#))].concat();
        let tags = [string_field(5, "array"), bytes_field(24, &bytes_field(1, &string_field(5, "string")))].concat();
        let schema = [
            string_field(5, "object"),
            bytes_field(29, &[string_field(1, "size"), bytes_field(2, &size)].concat()),
            bytes_field(29, &[string_field(1, "tags"), bytes_field(2, &tags)].concat()),
            bytes_field(30, &varint_field(1, 0)),
            varint_field(38, 0),
        ]
        .concat();
        let decoded = decode(&custom_resource_definition(&schema)).unwrap();
        let expected = serde_json::json!({
            "type": "object",
            "properties": {
                "size": {"type": "integer", "default": {"min": 1}},
                "tags": {"type": "array", "items": {"type": "string"}},
            },
            "additionalProperties": false,
            "x-kubernetes-preserve-unknown-fields": false,
        });
        assert_eq!(decoded["spec"]["versions"][0]["schema"]["openAPIV3Schema"], expected);
        assert_eq!(decoded["spec"]["names"], serde_json::json!({"plural": "", "kind": ""}));
    }

    #[test]
    fn deep_nesting_is_refused() {
        let mut schema = string_field(5, "object");
        for _ in 0..200 {
            schema = bytes_field(28, &schema);
        }
        let error = decode(&custom_resource_definition(&schema)).unwrap_err();
        assert!(error.to_string().contains("nest more than"), "{error}");
    }

    #[test]
    fn the_envelope_is_checked() {
        assert_eq!(decode(b"{\"kind\":\"Pod\"}"), Err(ProtobufError::MissingMagic));
        assert_eq!(decode(b""), Err(ProtobufError::MissingMagic));
        assert_eq!(decode(&envelope("v1", "", &[])), Err(ProtobufError::MissingKind));
        assert_eq!(
            decode(&envelope("v1", "Widget", &[])),
            Err(ProtobufError::UnknownKind { api_version: "v1".to_string(), kind: "Widget".to_string() })
        );
        let gzip = [envelope("v1", "ConfigMap", &[]), string_field(3, "gzip")].concat();
        assert_eq!(decode(&gzip), Err(ProtobufError::ContentEncoding("gzip".to_string())));
        let json =
            [envelope("v1", "ConfigMap", br#"{"data": {"a": "b"}}"#), string_field(4, "application/json")].concat();
        assert_eq!(
            decode(&json).unwrap(),
            serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "b"}})
        );
        // Options types are registered in every group version.
        let options = decode(&envelope("apps/v1", "DeleteOptions", &string_field(4, "Foreground"))).unwrap();
        assert_eq!(options["propagationPolicy"], "Foreground");
    }

    #[test]
    fn wrong_wire_types_and_broken_fields_are_errors_with_a_path() {
        // metadata.name sent as a varint.
        let raw = bytes_field(1, &varint_field(1, 7));
        let error = decode(&envelope("v1", "ConfigMap", &raw)).unwrap_err();
        assert_eq!(
            error,
            ProtobufError::Malformed {
                path: "metadata.name".to_string(),
                problem: "expected a length-delimited field, found a varint".to_string()
            }
        );
        // A length running past the end of data.
        let raw = [bytes_field(2, &[string_field(1, "a"), vec![0x12, 0x20, b'x']].concat())].concat();
        assert!(matches!(decode(&envelope("v1", "ConfigMap", &raw)), Err(ProtobufError::Malformed { .. })));
        // Wire type 3 (start group) is not used by Kubernetes.
        assert!(matches!(decode(&envelope("v1", "ConfigMap", &[0x0b])), Err(ProtobufError::Malformed { .. })));
    }

    #[test]
    fn truncated_bodies_are_errors_and_never_panic() {
        for name in ["configmap-binary", "deployment", "cronjob", "rolebinding", "auth-can-i", "token"] {
            let body = fixture(&format!("{name}.pb"));
            // The envelope: magic, typeMeta (1), raw (2) with a one- or two-byte length.
            let type_meta_end = 6 + usize::from(body[5]);
            assert_eq!(body[type_meta_end], 0x12, "{name}: raw follows typeMeta");
            let mut length_bytes = &body[type_meta_end + 1..];
            let raw_length = read_varint(&mut length_bytes).unwrap() as usize;
            let raw_start = body.len() - length_bytes.len();
            for cut in 0..body.len() {
                let result = decode(&body[..cut]);
                if cut < MAGIC.len() || (raw_start <= cut && cut < raw_start + raw_length) || cut < type_meta_end {
                    assert!(result.is_err(), "{name} cut at {cut} of {} decoded", body.len());
                }
            }
        }
    }

    #[test]
    fn garbage_never_panics() {
        // A small xorshift generator keeps the test deterministic without a dependency.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let bodies: Vec<Vec<u8>> = ["deployment", "service-nodeport", "secret-generic", "job"]
            .iter()
            .map(|name| fixture(&format!("{name}.pb")))
            .collect();
        for round in 0..20_000 {
            let mut body = bodies[round % bodies.len()].clone();
            for _ in 0..1 + next() % 4 {
                let position = MAGIC.len() + (next() as usize) % (body.len() - MAGIC.len());
                body[position] = next() as u8;
            }
            let _ = decode(&body);
            let random: Vec<u8> = (0..next() % 64).map(|_| next() as u8).collect();
            let _ = decode(&[MAGIC, &random].concat());
        }
    }
}
