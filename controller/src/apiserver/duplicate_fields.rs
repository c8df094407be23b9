//! Keys that occur twice in one JSON object of a request body. A JSON parser keeps the last one silently; upstream's
//! strict decoder reports each as `duplicate field "spec.replicas"` (refused under `fieldValidation=Strict`, a
//! warning under `Warn`), so a manifest with a copy-paste slip does not lose a value unnoticed.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// The dotted paths (`spec.template.spec.containers[0].name`) of every repeated key in a JSON document, in the order
/// they occur; empty for a document that does not parse (the real decode reports that).
pub fn in_json(body: &[u8]) -> Vec<String> {
    let found = RefCell::new(Vec::new());
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let _ = Walk { path: String::new(), found: &found }.deserialize(&mut deserializer);
    found.into_inner()
}

/// The first repeated key of a YAML document, as upstream's YAML decoder words it (`line 9: key "foo" already set
/// in map`); YAML parsing stops at the first.
pub fn in_yaml(body: &[u8]) -> Vec<String> {
    let Err(error) = serde_yaml_ng::from_slice::<serde_yaml_ng::Value>(body) else {
        return Vec::new();
    };
    // serde_yaml_ng says `spec: duplicate entry with key "foo" at line 7 column 3`, locating the mapping's first
    // key; upstream names the line of the repeated key.
    let message = error.to_string();
    let Some((_, key)) = message.split_once("duplicate entry with key ") else {
        return Vec::new();
    };
    let key = key.split(" at line ").next().unwrap_or(key);
    let line = error.location().map(|location| {
        let name: String = serde_json::from_str(key).unwrap_or_default();
        repeated_key_line(body, location.line(), location.column(), &name).unwrap_or(location.line())
    });
    match line {
        Some(line) => vec![format!("line {line}: key {key} already set in map")],
        None => vec![format!("key {key} already set in map")],
    }
}

/// The line (1-based) of the second `key:` of the block mapping that starts at `line`, `column` (1-based), or
/// None for a mapping written otherwise (flow style).
fn repeated_key_line(body: &[u8], line: usize, column: usize, key: &str) -> Option<usize> {
    let text = std::str::from_utf8(body).ok()?;
    let indent = column.checked_sub(1)?;
    let mut seen = 0;
    for (number, text_line) in text.lines().enumerate().skip(line.checked_sub(1)?) {
        let content = text_line.trim_start_matches(' ');
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let this_indent = text_line.len() - content.len();
        if this_indent < indent {
            break;
        }
        let names_key = [format!("{key}:"), format!("\"{key}\":"), format!("'{key}':")]
            .iter()
            .any(|prefix| content.starts_with(prefix.as_str()));
        if this_indent == indent && names_key {
            seen += 1;
            if seen == 2 {
                return Some(number + 1);
            }
        }
    }
    None
}

/// Visits one value at `path`, remembering repeated keys of the objects within it.
struct Walk<'a> {
    path: String,
    found: &'a RefCell<Vec<String>>,
}

impl Walk<'_> {
    fn child(&self, step: &str) -> String {
        if self.path.is_empty() {
            step.to_string()
        } else if step.starts_with('[') {
            format!("{}{step}", self.path)
        } else {
            format!("{}.{step}", self.path)
        }
    }
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = self.child(&key);
            if !seen.insert(key) {
                self.found.borrow_mut().push(path.clone());
            }
            map.next_value_seed(Walk { path, found: self.found })?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        while seq.next_element_seed(Walk { path: self.child(&format!("[{index}]")), found: self.found })?.is_some() {
            index += 1;
        }
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(IgnoredAny).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_keys_are_named_by_their_path() {
        let body = br#"{"spec": {"unknownField": "foo", "replicas": 2, "replicas": 3,
            "template": {"spec": {"containers": [{"name": "a"}, {"name": "b", "name": "c"}]}}}}"#;
        assert_eq!(in_json(body), ["spec.replicas", "spec.template.spec.containers[1].name"]);
        assert_eq!(in_json(br#"{"a": 1, "a": 2, "a": 3}"#), ["a", "a"]);
        assert!(in_json(br#"{"a": {"b": 1}, "c": {"b": 1}}"#).is_empty(), "the same key in two objects is fine");
        assert!(in_json(b"{not json").is_empty());
    }

    #[test]
    fn a_repeated_yaml_key_is_named_with_its_line() {
        let body =
            b"\napiVersion: v1\nkind: Thing\nmetadata:\n  name: t\nspec:\n  unknown: uk1\n  foo: foo1\n  foo: foo2\n";
        assert_eq!(in_yaml(body), [r#"line 9: key "foo" already set in map"#]);
        assert!(in_yaml(b"a: 1\nb:\n  a: 1\n").is_empty());
    }
}
