//! Label and field selectors. (Minimal first version: equality requirements only; the full grammar replaces it.)

use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SelectorError(pub String);

#[derive(Debug, Clone, Default)]
pub struct LabelSelector {
    requirements: Vec<(String, bool, String)>,
}

impl LabelSelector {
    pub fn parse(text: &str) -> Result<LabelSelector, SelectorError> {
        let requirements = parse_equalities(text)?;
        Ok(LabelSelector { requirements })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        self.requirements.iter().all(|(key, equal, value)| {
            let actual = labels.and_then(|labels| labels.get(key)).and_then(Value::as_str);
            if *equal {
                actual == Some(value.as_str())
            } else {
                actual != Some(value.as_str())
            }
        })
    }
}

#[derive(Debug, Clone, Default)]
pub struct FieldSelector {
    requirements: Vec<(String, bool, String)>,
}

impl FieldSelector {
    pub fn parse(text: &str) -> Result<FieldSelector, SelectorError> {
        Ok(FieldSelector { requirements: parse_equalities(text)? })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn matches(&self, group: &str, kind: &str, object: &Value) -> Result<bool, SelectorError> {
        for (field, equal, value) in &self.requirements {
            let actual = selectable_field(group, kind, object, field)?.unwrap_or_default();
            if (actual == *value) != *equal {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

pub fn selectable_field(
    _group: &str,
    _kind: &str,
    object: &Value,
    field: &str,
) -> Result<Option<String>, SelectorError> {
    match field {
        "metadata.name" => Ok(object.pointer("/metadata/name").and_then(Value::as_str).map(str::to_string)),
        "metadata.namespace" => Ok(object.pointer("/metadata/namespace").and_then(Value::as_str).map(str::to_string)),
        other => Err(SelectorError(format!("field label not supported: {other}"))),
    }
}

fn parse_equalities(text: &str) -> Result<Vec<(String, bool, String)>, SelectorError> {
    let mut requirements = Vec::new();
    for part in text.split(',').map(str::trim).filter(|part| !part.is_empty()) {
        let (key, equal, value) = if let Some((key, value)) = part.split_once("!=") {
            (key, false, value)
        } else if let Some((key, value)) = part.split_once("==") {
            (key, true, value)
        } else if let Some((key, value)) = part.split_once('=') {
            (key, true, value)
        } else {
            return Err(SelectorError(format!("unable to parse requirement: {part:?}")));
        };
        requirements.push((key.trim().to_string(), equal, value.trim().to_string()));
    }
    Ok(requirements)
}
