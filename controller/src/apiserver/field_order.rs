//! The order kube-apiserver writes an object's fields in, for response bodies. Built-in kinds are Go structs:
//! TypeMeta (`kind`, `apiVersion`) comes first, then `metadata` in ObjectMeta's field order, then the kind's own
//! fields. Custom resources are Go maps, which upstream writes with sorted keys: serde_json's own order, so they
//! are written as they are.
//!
//! Below `metadata` the fields of a built-in kind stay sorted: the Go struct order of every kind is not known here
//! (the OpenAPI document sorts properties; protobuf numbers them in the order fields were added). Reordering is done
//! while encoding, with no copy of the object, so it costs nothing measurable. Strings are escaped as Go escapes
//! them (`<`, `>`, `&` as `\u003c`, `\u003e`, `\u0026`).

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

/// Encodes an object, or a list of them, as upstream writes objects of its kind.
pub fn to_json(value: &Value, order: FieldOrder) -> Vec<u8> {
    let mut out = Vec::new();
    write_json(&mut out, value, order);
    out
}

/// Appends the encoding of [`to_json`] to `out`.
pub fn write_json(out: &mut Vec<u8>, value: &Value, order: FieldOrder) {
    match order {
        FieldOrder::Sorted => write_like_go(out, value),
        FieldOrder::BuiltIn => write_like_go(out, &Ordered { value, fields: TOP_LEVEL }),
    }
}

/// Appends one item of a list of the kind as [`to_json`] writes it inside the list's `items` (a built-in kind's
/// items without TypeMeta, which the caller removes).
pub fn write_list_item(out: &mut Vec<u8>, item: &Value, order: FieldOrder) {
    match order {
        FieldOrder::Sorted => write_like_go(out, item),
        FieldOrder::BuiltIn => write_like_go(out, &Ordered { value: item, fields: ITEM }),
    }
}

/// Encodes as Go's encoding/json does, which kube-apiserver's JSON serializer uses: like serde_json, except that
/// `<`, `>`, `&`, U+2028 and U+2029 inside strings are written as `\u003c`, `\u003e`, `\u0026`, `\u2028`, `\u2029`.
pub fn write_like_go(out: &mut Vec<u8>, value: &impl Serialize) {
    let mut serializer = serde_json::Serializer::with_formatter(out, GoFormatter);
    value.serialize(&mut serializer).expect("JSON encodes into memory")
}

/// How a kind's objects are ordered: built-in kinds as Go structs, custom resources with sorted keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldOrder {
    BuiltIn,
    Sorted,
}

impl FieldOrder {
    pub fn of(def: &crate::apiserver::registry::ResourceDef) -> FieldOrder {
        match def.schema {
            crate::apiserver::registry::SchemaSource::BuiltIn(_) => FieldOrder::BuiltIn,
            crate::apiserver::registry::SchemaSource::CustomResource(_) => FieldOrder::Sorted,
        }
    }
}

/// The fields of ObjectMeta in the order of its Go struct (and of its protobuf numbers). A list's metadata
/// (ListMeta: selfLink, resourceVersion, continue, remainingItemCount) comes out in its own order with it too.
pub(crate) const OBJECT_META_FIELDS: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

/// One level of a known struct: its leading fields in order, after which the remaining ones follow sorted, and
/// the fields whose values are known structs themselves.
struct Level {
    leading: &'static [&'static str],
    nested: &'static [(&'static str, &'static Level)],
}

const TOP_LEVEL: &Level = &Level {
    leading: &["kind", "apiVersion", "metadata", "items"],
    nested: &[("metadata", METADATA), ("items", ITEM)],
};
/// An item of a list: the kind's fields without TypeMeta.
const ITEM: &Level = &Level { leading: &["metadata"], nested: &[("metadata", METADATA)] };
const METADATA: &Level = &Level {
    leading: OBJECT_META_FIELDS,
    nested: &[("ownerReferences", OWNER_REFERENCE), ("managedFields", MANAGED_FIELDS_ENTRY)],
};
const OWNER_REFERENCE: &Level =
    &Level { leading: &["apiVersion", "kind", "name", "uid", "controller", "blockOwnerDeletion"], nested: &[] };
const MANAGED_FIELDS_ENTRY: &Level = &Level {
    leading: &["manager", "operation", "apiVersion", "time", "fieldsType", "fieldsV1", "subresource"],
    nested: &[],
};

struct GoFormatter;

impl serde_json::ser::Formatter for GoFormatter {
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        let bytes = fragment.as_bytes();
        let mut start = 0;
        for (index, byte) in bytes.iter().enumerate() {
            // (escape, bytes it replaces): the line and paragraph separators are three bytes in UTF-8.
            let (escape, width) = match (byte, bytes.get(index + 1..index + 3)) {
                (b'<', _) => ("\\u003c", 1),
                (b'>', _) => ("\\u003e", 1),
                (b'&', _) => ("\\u0026", 1),
                (0xE2, Some([0x80, 0xA8])) => ("\\u2028", 3),
                (0xE2, Some([0x80, 0xA9])) => ("\\u2029", 3),
                _ => continue,
            };
            writer.write_all(&bytes[start..index])?;
            writer.write_all(escape.as_bytes())?;
            start = index + width;
        }
        writer.write_all(&bytes[start..])
    }
}

struct Ordered<'a> {
    value: &'a Value,
    fields: &'static Level,
}

impl Serialize for Ordered<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.value {
            Value::Object(map) => serialize_map(map, self.fields, serializer),
            // A list of structs (items, owner references, managed fields): each element at the same level.
            Value::Array(elements) => serializer.collect_seq(elements.iter().map(|value| Ordered { value, ..*self })),
            other => other.serialize(serializer),
        }
    }
}

fn serialize_map<S: Serializer>(map: &Map<String, Value>, level: &Level, serializer: S) -> Result<S::Ok, S::Error> {
    let mut out = serializer.serialize_map(Some(map.len()))?;
    let mut entry = |key: &str, value: &Value| match level.nested.iter().find(|(nested, _)| *nested == key) {
        Some((_, fields)) => out.serialize_entry(key, &Ordered { value, fields }),
        None => out.serialize_entry(key, value),
    };
    for key in level.leading {
        if let Some(value) = map.get(*key) {
            entry(key, value)?;
        }
    }
    for (key, value) in map {
        if !level.leading.contains(&key.as_str()) {
            entry(key, value)?;
        }
    }
    out.end()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text(value: &Value, order: FieldOrder) -> String {
        String::from_utf8(to_json(value, order)).unwrap()
    }

    #[test]
    fn built_in_objects_start_with_type_meta_and_object_meta_in_struct_order() {
        let object = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"uid": "u", "name": "web", "namespace": "default", "generation": 1,
                         "managedFields": [{"time": "t", "manager": "m", "operation": "Update", "apiVersion": "apps/v1",
                                            "fieldsV1": {}, "fieldsType": "FieldsV1"}]},
            "status": {}, "spec": {"replicas": 1},
        });
        assert_eq!(
            text(&object, FieldOrder::BuiltIn),
            r#"{"kind":"Deployment","apiVersion":"apps/v1","metadata":{"name":"web","namespace":"default","uid":"u","generation":1,"managedFields":[{"manager":"m","operation":"Update","apiVersion":"apps/v1","time":"t","fieldsType":"FieldsV1","fieldsV1":{}}]},"spec":{"replicas":1},"status":{}}"#
        );
        assert_eq!(
            text(&object, FieldOrder::Sorted),
            serde_json::to_string(&object).unwrap(),
            "custom resources keep sorted keys"
        );
    }

    #[test]
    fn strings_are_escaped_as_go_escapes_them() {
        let object = json!({"a<b": "x > y && z\u{2028}é"});
        assert_eq!(text(&object, FieldOrder::Sorted), r#"{"a\u003cb":"x \u003e y \u0026\u0026 z\u2028é"}"#);
    }

    #[test]
    fn lists_order_their_metadata_and_items() {
        let list = json!({"apiVersion": "v1", "items": [{"data": {"a": "1"}, "metadata": {"resourceVersion": "5", "name": "x"}}],
                          "kind": "ConfigMapList", "metadata": {"resourceVersion": "9", "continue": "c"}});
        assert_eq!(
            text(&list, FieldOrder::BuiltIn),
            r#"{"kind":"ConfigMapList","apiVersion":"v1","metadata":{"resourceVersion":"9","continue":"c"},"items":[{"metadata":{"name":"x","resourceVersion":"5"},"data":{"a":"1"}}]}"#
        );
    }
}
