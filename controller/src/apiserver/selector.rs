//! Label and field selectors: the `labelSelector` and `fieldSelector` query parameters of list, watch and
//! deletecollection, and the metav1.LabelSelector objects controllers use to find their pods.
//!
//! Both follow upstream's grammar and matching rules closely, because clients rely on the edges: a `!=` requirement
//! matches objects without the label, a field the object lacks compares as the empty string, and an unsupported field
//! is a 400 with the message kubectl users search for.

use std::fmt;

use serde_json::{Map, Value};

/// Why a selector was refused. Every message is what the API server returns in a 400 Status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// Label selector text that does not parse, or a key or value that is not a valid label.
    #[error("{0}")]
    InvalidLabelSelector(String),
    /// Field selector text that does not parse (a term without an operator, a bad escape).
    #[error("{0}")]
    InvalidFieldSelector(String),
    /// A field selector names a field this kind cannot be selected by.
    #[error("{0}")]
    UnsupportedField(String),
}

/// How a label requirement compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    /// `key=value`
    Equals,
    /// `key==value`
    DoubleEquals,
    /// `key!=value`: also true when the label is absent
    NotEquals,
    /// `key in (a,b)`
    In,
    /// `key notin (a,b)`: also true when the label is absent
    NotIn,
    /// `key`
    Exists,
    /// `!key`
    DoesNotExist,
    /// `key>3`: the label's value read as an integer
    GreaterThan,
    /// `key<3`
    LessThan,
}

/// One requirement of a label selector. `values` is sorted and free of duplicates, as upstream keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    pub values: Vec<String>,
}

/// A parsed label selector: the conjunction of its requirements, sorted by key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
    /// A null metav1.LabelSelector selects nothing (upstream `labels.Nothing()`), unlike an empty one.
    matches_nothing: bool,
}

impl LabelSelector {
    /// The selector that matches every object (an absent or empty `labelSelector` parameter).
    pub fn everything() -> LabelSelector {
        LabelSelector::default()
    }

    /// The selector that matches no object (a null metav1.LabelSelector).
    pub fn nothing() -> LabelSelector {
        LabelSelector { requirements: Vec::new(), matches_nothing: true }
    }

    /// Parses the `labelSelector` query parameter syntax: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`,
    /// `a`, `!a`, `a>1`, `a<1`, joined by commas, whitespace between tokens ignored.
    pub fn parse(text: &str) -> Result<LabelSelector, SelectorError> {
        let tokens = lex(text);
        let mut parser = Parser { tokens, position: 0 };
        let mut requirements = parser.parse()?;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector { requirements, matches_nothing: false })
    }

    /// Converts a metav1.LabelSelector object (`matchLabels` and `matchExpressions` with the operators In, NotIn,
    /// Exists and DoesNotExist), as found in a Deployment's or Service's spec. Null selects nothing; `{}` selects
    /// everything.
    pub fn from_label_selector(selector: &Value) -> Result<LabelSelector, SelectorError> {
        let object = match selector {
            Value::Null => return Ok(LabelSelector::nothing()),
            Value::Object(object) => object,
            other => return Err(invalid_label(format!("a label selector must be an object, not {other}"))),
        };
        let mut requirements = Vec::new();
        if let Some(match_labels) = object.get("matchLabels").filter(|v| !v.is_null()) {
            let Value::Object(match_labels) = match_labels else {
                return Err(invalid_label("matchLabels must be an object of strings".to_string()));
            };
            for (key, value) in match_labels {
                let Some(value) = value.as_str() else {
                    return Err(invalid_label(format!("matchLabels[{key}] must be a string")));
                };
                requirements.push(Requirement::new(key, Operator::Equals, vec![value.to_string()])?);
            }
        }
        if let Some(expressions) = object.get("matchExpressions").filter(|v| !v.is_null()) {
            let Value::Array(expressions) = expressions else {
                return Err(invalid_label("matchExpressions must be a list".to_string()));
            };
            for expression in expressions {
                let key = expression.get("key").and_then(Value::as_str).unwrap_or_default();
                let operator_name = expression.get("operator").and_then(Value::as_str).unwrap_or_default();
                let values: Vec<String> = match expression.get("values") {
                    Some(Value::Array(values)) => {
                        values.iter().map(|v| v.as_str().map(str::to_string)).collect::<Option<_>>().ok_or_else(
                            || invalid_label(format!("values of the requirement on {key:?} must be strings")),
                        )?
                    }
                    None | Some(Value::Null) => Vec::new(),
                    Some(_) => {
                        return Err(invalid_label(format!("values of the requirement on {key:?} must be a list")))
                    }
                };
                let operator = match operator_name {
                    "In" => Operator::In,
                    "NotIn" => Operator::NotIn,
                    "Exists" => Operator::Exists,
                    "DoesNotExist" => Operator::DoesNotExist,
                    other => return Err(invalid_label(format!("{other:?} is not a valid label selector operator"))),
                };
                match operator {
                    Operator::In | Operator::NotIn if values.is_empty() => {
                        return Err(invalid_label(
                            "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be \
                             empty"
                                .to_string(),
                        ));
                    }
                    Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                        return Err(invalid_label(
                            "values: Invalid value: values set must be empty for exists and does not exist".to_string(),
                        ));
                    }
                    _ => {}
                }
                requirements.push(Requirement::new(key, operator, values)?);
            }
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector { requirements, matches_nothing: false })
    }

    /// Whether an object with these labels (`metadata.labels`, absent meaning none) is selected.
    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        let value = |key: &str| labels.and_then(|labels| labels.get(key)).and_then(Value::as_str);
        !self.matches_nothing && self.requirements.iter().all(|r| r.matches_value(value(&r.key)))
    }

    /// [`LabelSelector::matches`] for typed labels (`metadata.labels` of a typed object), without building a
    /// JSON map per object: controllers match every cached pod against a selector.
    pub fn matches_labels(&self, labels: Option<&std::collections::BTreeMap<String, String>>) -> bool {
        !self.matches_nothing
            && self
                .requirements
                .iter()
                .all(|r| r.matches_value(labels.and_then(|labels| labels.get(&r.key)).map(String::as_str)))
    }

    /// True for the selector that selects everything: no requirements (and not the null selector).
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty() && !self.matches_nothing
    }

    /// True for the selector built from a null metav1.LabelSelector.
    pub fn matches_nothing(&self) -> bool {
        self.matches_nothing
    }

    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }
}

/// Upstream's canonical text form (`a=b,c in (x,y),!d`), used in Table SELECTOR columns. Requirements come sorted by
/// key; the null selector prints as the empty string like upstream's `labels.Nothing()`.
impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, requirement) in self.requirements.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            write!(f, "{requirement}")?;
        }
        Ok(())
    }
}

impl Requirement {
    /// Validates the key and values as upstream's `labels.NewRequirement` does.
    pub fn new(key: &str, operator: Operator, values: Vec<String>) -> Result<Requirement, SelectorError> {
        if let Err(message) = validate_label_key(key) {
            return Err(invalid_label(format!("key: Invalid value: {key:?}: {message}")));
        }
        match operator {
            Operator::In | Operator::NotIn => {
                if values.is_empty() {
                    return Err(invalid_label(
                        "values: Invalid value: for 'in', 'notin' operators, values set can't be empty".to_string(),
                    ));
                }
            }
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals => {
                if values.len() != 1 {
                    return Err(invalid_label(
                        "values: Invalid value: exact-match compatibility requires one single value".to_string(),
                    ));
                }
            }
            Operator::Exists | Operator::DoesNotExist => {
                if !values.is_empty() {
                    return Err(invalid_label(
                        "values: Invalid value: values set must be empty for exists and does not exist".to_string(),
                    ));
                }
            }
            Operator::GreaterThan | Operator::LessThan => {
                if values.len() != 1 {
                    return Err(invalid_label(
                        "values: Invalid value: for 'Gt', 'Lt' operators, exactly one value is required".to_string(),
                    ));
                }
                if values[0].parse::<i64>().is_err() {
                    return Err(invalid_label(format!(
                        "values[0]: Invalid value: {:?}: for 'Gt', 'Lt' operators, the value must be an integer",
                        values[0]
                    )));
                }
            }
        }
        if !matches!(operator, Operator::GreaterThan | Operator::LessThan) {
            for (index, value) in values.iter().enumerate() {
                if let Err(message) = validate_label_value(value) {
                    return Err(invalid_label(format!("values[{index}][{key}]: Invalid value: {value:?}: {message}")));
                }
            }
        }
        let mut values = values;
        values.sort();
        values.dedup();
        Ok(Requirement { key: key.to_string(), operator, values })
    }

    /// Whether an object whose label `self.key` has `value` (None: no such label) meets this requirement.
    pub fn matches_value(&self, value: Option<&str>) -> bool {
        let contains = |v: &str| self.values.iter().any(|candidate| candidate == v);
        match self.operator {
            Operator::Equals | Operator::DoubleEquals | Operator::In => value.is_some_and(contains),
            Operator::NotEquals | Operator::NotIn => !value.is_some_and(contains),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let (Some(actual), Some(bound)) = (
                    value.and_then(|v| v.parse::<i64>().ok()),
                    self.values.first().and_then(|v| v.parse::<i64>().ok()),
                ) else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    actual > bound
                } else {
                    actual < bound
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let single = || self.values.first().map(String::as_str).unwrap_or_default();
        match self.operator {
            Operator::Equals => write!(f, "{}={}", self.key, single()),
            Operator::DoubleEquals => write!(f, "{}=={}", self.key, single()),
            Operator::NotEquals => write!(f, "{}!={}", self.key, single()),
            Operator::In => write!(f, "{} in ({})", self.key, self.values.join(",")),
            Operator::NotIn => write!(f, "{} notin ({})", self.key, self.values.join(",")),
            Operator::Exists => write!(f, "{}", self.key),
            Operator::DoesNotExist => write!(f, "!{}", self.key),
            Operator::GreaterThan => write!(f, "{}>{}", self.key, single()),
            Operator::LessThan => write!(f, "{}<{}", self.key, single()),
        }
    }
}

/// One term of a field selector. `value` is unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    pub field: String,
    /// True for `!=`, false for `=` and `==`.
    pub negated: bool,
    pub value: String,
}

/// A parsed field selector: the conjunction of its terms, sorted as upstream sorts them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// Parses the `fieldSelector` query parameter: `a=b`, `a==b` or `a!=b` terms joined by commas. In values, `\,`,
    /// `\=` and `\\` escape those characters; an unescaped `,` or `=` in a value is an error.
    pub fn parse(text: &str) -> Result<FieldSelector, SelectorError> {
        let mut terms = split_field_terms(text);
        terms.sort();
        let mut requirements = Vec::new();
        for term in terms {
            if term.is_empty() {
                continue;
            }
            let Some((field, operator, raw_value)) = split_field_term(term) else {
                return Err(SelectorError::InvalidFieldSelector(format!(
                    "invalid selector: '{text}'; can't understand '{term}'"
                )));
            };
            let value = unescape_field_value(raw_value)?;
            requirements.push(FieldRequirement { field: field.to_string(), negated: operator == "!=", value });
        }
        Ok(FieldSelector { requirements })
    }

    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Checks every field against what the kind supports, so a bad selector is a 400 before any object is read.
    pub fn validate(&self, group: &str, kind: &str) -> Result<(), SelectorError> {
        let probe = Value::Object(Map::new());
        for requirement in &self.requirements {
            selectable_field(group, kind, &probe, &requirement.field)?;
        }
        Ok(())
    }

    /// Whether `object` is selected, with `fields` reading a field's value (None for absent, which compares as "").
    pub fn matches(&self, object: &Value, fields: &dyn Fn(&Value, &str) -> Option<String>) -> bool {
        self.requirements.iter().all(|requirement| {
            let actual = fields(object, &requirement.field).unwrap_or_default();
            (actual == requirement.value) != requirement.negated
        })
    }

    /// [`FieldSelector::matches`] with the built-in selectable fields of a kind; unsupported fields select nothing
    /// (call [`FieldSelector::validate`] first to turn them into an error).
    pub fn matches_kind(&self, group: &str, kind: &str, object: &Value) -> bool {
        self.requirements.iter().all(|requirement| match selectable_field(group, kind, object, &requirement.field) {
            Ok(actual) => (actual.unwrap_or_default() == requirement.value) != requirement.negated,
            Err(_) => false,
        })
    }
}

/// The value of a field selector field on a built-in object, as the upstream registry's selectable field sets give
/// it: `Ok(None)` when the object lacks it (compare as ""), an error for a field the kind does not support.
/// `metadata.name` and `metadata.namespace` work for every kind; see the match below for the rest.
pub fn selectable_field(group: &str, kind: &str, object: &Value, field: &str) -> Result<Option<String>, SelectorError> {
    let text = |path: &[&str]| lookup(object, path).and_then(value_text);
    let not_supported = || SelectorError::UnsupportedField(format!("field label not supported: {field}"));
    match (group, kind, field) {
        // Nodes, Namespaces and CertificateSigningRequests are cluster-scoped and have no namespace field.
        ("", "Node" | "Namespace", "metadata.namespace") | ("certificates.k8s.io", _, "metadata.namespace") => {
            Err(not_supported())
        }
        (_, _, "metadata.name") => Ok(text(&["metadata", "name"])),
        ("", "Pod", field) => match field {
            "metadata.namespace" => Ok(text(&["metadata", "namespace"])),
            // Old clients send spec.host; upstream converts it to spec.nodeName.
            "spec.nodeName" | "spec.host" => Ok(text(&["spec", "nodeName"])),
            "spec.restartPolicy" => Ok(text(&["spec", "restartPolicy"])),
            "spec.schedulerName" => Ok(text(&["spec", "schedulerName"])),
            "spec.serviceAccountName" => Ok(text(&["spec", "serviceAccountName"])),
            "spec.hostNetwork" => {
                let host_network = lookup(object, &["spec", "hostNetwork"]).and_then(Value::as_bool).unwrap_or(false);
                Ok(Some(host_network.to_string()))
            }
            "status.phase" => Ok(text(&["status", "phase"])),
            "status.podIP" => {
                let first = lookup(object, &["status", "podIPs"])
                    .and_then(|ips| ips.get(0))
                    .and_then(|ip| ip.get("ip"))
                    .and_then(value_text);
                Ok(first.or_else(|| text(&["status", "podIP"])))
            }
            // Accepted by upstream's conversion but absent from the selectable set, so it only ever equals "".
            "status.podIPs" => Ok(None),
            "status.nominatedNodeName" => Ok(text(&["status", "nominatedNodeName"])),
            _ => Err(not_supported()),
        },
        ("", "Event", field) => match field {
            "metadata.namespace" => Ok(text(&["metadata", "namespace"])),
            "involvedObject.kind"
            | "involvedObject.namespace"
            | "involvedObject.name"
            | "involvedObject.uid"
            | "involvedObject.apiVersion"
            | "involvedObject.resourceVersion"
            | "involvedObject.fieldPath" => {
                let member = &field["involvedObject.".len()..];
                Ok(text(&["involvedObject", member]))
            }
            "reason" => Ok(text(&["reason"])),
            "type" => Ok(text(&["type"])),
            // Named after the core/v1 field even though it reads reportingController.
            "reportingComponent" => Ok(text(&["reportingController"])),
            "source" => {
                let component = text(&["source", "component"]).filter(|s| !s.is_empty());
                Ok(component.or_else(|| text(&["reportingController"])))
            }
            _ => Err(not_supported()),
        },
        ("", "Secret", field) => match field {
            "metadata.namespace" => Ok(text(&["metadata", "namespace"])),
            "type" => Ok(text(&["type"])),
            _ => Err(not_supported()),
        },
        ("", "Namespace", field) => match field {
            "status.phase" => Ok(text(&["status", "phase"])),
            _ => Err(not_supported()),
        },
        ("", "Node", field) => match field {
            "spec.unschedulable" => {
                let unschedulable =
                    lookup(object, &["spec", "unschedulable"]).and_then(Value::as_bool).unwrap_or(false);
                Ok(Some(unschedulable.to_string()))
            }
            _ => Err(not_supported()),
        },
        ("", "ReplicationController", field) | ("apps", "ReplicaSet", field) => match field {
            "metadata.namespace" => Ok(text(&["metadata", "namespace"])),
            "status.replicas" => Ok(Some(integer_text(lookup(object, &["status", "replicas"])))),
            _ => Err(not_supported()),
        },
        ("batch", "Job", field) => match field {
            "metadata.namespace" => Ok(text(&["metadata", "namespace"])),
            "status.successful" => Ok(Some(integer_text(lookup(object, &["status", "succeeded"])))),
            _ => Err(SelectorError::UnsupportedField(format!("field label {field:?} not supported for batchv1.Job"))),
        },
        ("certificates.k8s.io", "CertificateSigningRequest", field) => match field {
            "spec.signerName" => Ok(text(&["spec", "signerName"])),
            _ => Err(not_supported()),
        },
        (_, _, "metadata.namespace") => Ok(text(&["metadata", "namespace"])),
        // Kinds without their own field conversion use upstream's default one, which words the error differently.
        _ => Err(SelectorError::UnsupportedField(format!(
            "{field:?} is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
        ))),
    }
}

/// The value of a field selector field on a custom resource whose CRD version lists `selectableFields`
/// (`jsonPath`s like `.spec.color`, selected as `spec.color`). Strings, integers and booleans are selectable.
pub fn custom_selectable_field(
    object: &Value,
    field: &str,
    selectable_json_paths: &[&str],
) -> Result<Option<String>, SelectorError> {
    match field {
        "metadata.name" => Ok(lookup(object, &["metadata", "name"]).and_then(value_text)),
        "metadata.namespace" => Ok(lookup(object, &["metadata", "namespace"]).and_then(value_text)),
        _ if selectable_json_paths.iter().any(|path| path.trim_start_matches('.') == field) => {
            let path: Vec<&str> = field.split('.').collect();
            Ok(lookup(object, &path).and_then(value_text))
        }
        _ => Err(SelectorError::UnsupportedField(format!("field label not supported: {field}"))),
    }
}

fn invalid_label(message: String) -> SelectorError {
    SelectorError::InvalidLabelSelector(message)
}

fn lookup<'a>(object: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(object, |value, key| value.get(key))
}

fn value_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Integer status fields default to 0 upstream, so an absent one selects as "0", not "".
fn integer_text(value: Option<&Value>) -> String {
    value.and_then(Value::as_i64).unwrap_or(0).to_string()
}

/// Splits on commas not preceded by a backslash escape.
fn split_field_terms(text: &str) -> Vec<&str> {
    if text.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (index, c) in text.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            terms.push(&text[start..index]);
            start = index + 1;
        }
    }
    terms.push(&text[start..]);
    terms
}

/// Splits at the first operator; `!=` and `==` win over `=` at the same position. Fields cannot be escaped.
fn split_field_term(term: &str) -> Option<(&str, &str, &str)> {
    for (index, _) in term.char_indices() {
        let rest = &term[index..];
        for operator in ["!=", "==", "="] {
            if let Some(value) = rest.strip_prefix(operator) {
                return Some((&term[..index], operator, value));
            }
        }
    }
    None
}

fn unescape_field_value(raw: &str) -> Result<String, SelectorError> {
    let mut value = String::with_capacity(raw.len());
    let mut escaped = false;
    for c in raw.chars() {
        if escaped {
            match c {
                '\\' | ',' | '=' => value.push(c),
                other => {
                    return Err(SelectorError::InvalidFieldSelector(format!(
                        "invalid field selector: invalid escape sequence: \\{other}"
                    )));
                }
            }
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            // Upstream prints the rune with %v, which is its number.
            ',' | '=' => {
                return Err(SelectorError::InvalidFieldSelector(format!(
                    "invalid field selector: unescaped character in value: {}",
                    c as u32
                )));
            }
            other => value.push(other),
        }
    }
    if escaped {
        return Err(SelectorError::InvalidFieldSelector(
            "invalid field selector: invalid escape sequence: \\".to_string(),
        ));
    }
    Ok(value)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Identifier(String),
    In,
    NotIn,
    Bang,
    Equals,
    DoubleEquals,
    NotEquals,
    GreaterThan,
    LessThan,
    Comma,
    OpenParen,
    CloseParen,
    End,
}

impl Token {
    /// The text the error messages quote, like upstream's literal.
    fn literal(&self) -> &str {
        match self {
            Token::Identifier(text) => text,
            Token::In => "in",
            Token::NotIn => "notin",
            Token::Bang => "!",
            Token::Equals => "=",
            Token::DoubleEquals => "==",
            Token::NotEquals => "!=",
            Token::GreaterThan => ">",
            Token::LessThan => "<",
            Token::Comma => ",",
            Token::OpenParen => "(",
            Token::CloseParen => ")",
            Token::End => "",
        }
    }
}

fn is_special(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '>' | '<')
}

fn lex(text: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if matches!(c, ' ' | '\t' | '\r' | '\n') {
            chars.next();
        } else if is_special(c) {
            chars.next();
            let next = chars.peek().map(|&(_, n)| n);
            let token = match (c, next) {
                ('!', Some('=')) => Some(Token::NotEquals),
                ('=', Some('=')) => Some(Token::DoubleEquals),
                _ => None,
            };
            if let Some(token) = token {
                chars.next();
                tokens.push(token);
                continue;
            }
            tokens.push(match c {
                '!' => Token::Bang,
                '=' => Token::Equals,
                '(' => Token::OpenParen,
                ')' => Token::CloseParen,
                ',' => Token::Comma,
                '>' => Token::GreaterThan,
                _ => Token::LessThan,
            });
        } else {
            let mut end = text.len();
            while let Some(&(index, c)) = chars.peek() {
                if matches!(c, ' ' | '\t' | '\r' | '\n') || is_special(c) {
                    end = index;
                    break;
                }
                chars.next();
            }
            tokens.push(match &text[start..end] {
                "in" => Token::In,
                "notin" => Token::NotIn,
                word => Token::Identifier(word.to_string()),
            });
        }
    }
    tokens.push(Token::End);
    tokens
}

/// Where the parser is: `in` and `notin` are operators only right after a key; everywhere else they are words.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

struct Parser {
    tokens: Vec<Token>,
    position: usize,
}

impl Parser {
    fn lookahead(&self, context: Context) -> Token {
        let token = self.tokens.get(self.position).cloned().unwrap_or(Token::End);
        adjust(token, context)
    }

    fn consume(&mut self, context: Context) -> Token {
        let token = self.lookahead(context);
        if self.position < self.tokens.len() {
            self.position += 1;
        }
        token
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut requirements = Vec::new();
        loop {
            match self.lookahead(Context::Values) {
                Token::Identifier(_) | Token::Bang => {
                    requirements.push(self.parse_requirement()?);
                    match self.consume(Context::Values) {
                        Token::End => return Ok(requirements),
                        Token::Comma => {
                            let next = self.lookahead(Context::Values);
                            if !matches!(next, Token::Identifier(_) | Token::Bang) {
                                return Err(syntax(format!(
                                    "found '{}', expected: identifier after ','",
                                    next.literal()
                                )));
                            }
                        }
                        other => {
                            return Err(syntax(format!(
                                "found '{}', expected: ',' or 'end of string'",
                                other.literal()
                            )));
                        }
                    }
                }
                Token::End => return Ok(requirements),
                other => {
                    return Err(syntax(format!(
                        "found '{}', expected: !, identifier, or 'end of string'",
                        other.literal()
                    )));
                }
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<Requirement, SelectorError> {
        let mut token = self.consume(Context::Values);
        let negated = token == Token::Bang;
        if negated {
            token = self.consume(Context::Values);
        }
        let Token::Identifier(key) = token else {
            return Err(syntax(format!("found '{}', expected: identifier", token.literal())));
        };
        if let Err(message) = validate_label_key(&key) {
            return Err(invalid_label(format!("unable to parse requirement: key: Invalid value: {key:?}: {message}")));
        }
        let next = self.lookahead(Context::Values);
        if negated || matches!(next, Token::End | Token::Comma) {
            let operator = if negated { Operator::DoesNotExist } else { Operator::Exists };
            return requirement(&key, operator, Vec::new());
        }
        let operator = match self.consume(Context::KeyAndOperator) {
            Token::In => Operator::In,
            Token::NotIn => Operator::NotIn,
            Token::Equals => Operator::Equals,
            Token::DoubleEquals => Operator::DoubleEquals,
            Token::NotEquals => Operator::NotEquals,
            Token::GreaterThan => Operator::GreaterThan,
            Token::LessThan => Operator::LessThan,
            other => {
                return Err(syntax(format!("found '{}', expected: in, notin, =, ==, !=, gt, lt", other.literal())));
            }
        };
        let values = match operator {
            Operator::In | Operator::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        requirement(&key, operator, values)
    }

    fn parse_values(&mut self) -> Result<Vec<String>, SelectorError> {
        let open = self.consume(Context::Values);
        if open != Token::OpenParen {
            return Err(syntax(format!("found '{}' expected: '('", open.literal())));
        }
        match self.lookahead(Context::Values) {
            Token::Identifier(_) | Token::Comma => {
                let values = self.parse_identifier_list()?;
                let close = self.consume(Context::Values);
                if close != Token::CloseParen {
                    return Err(syntax(format!("found '{}', expected: ')'", close.literal())));
                }
                Ok(values)
            }
            Token::CloseParen => {
                self.consume(Context::Values);
                Ok(vec![String::new()])
            }
            other => Err(syntax(format!("found '{}', expected: ',', ')' or identifier", other.literal()))),
        }
    }

    /// Empty members are allowed and mean the empty value: `(a,)`, `(,a)` and `(a,,b)` all contain "".
    fn parse_identifier_list(&mut self) -> Result<Vec<String>, SelectorError> {
        let mut values: Vec<String> = Vec::new();
        loop {
            match self.consume(Context::Values) {
                Token::Identifier(value) => {
                    values.push(value);
                    match self.lookahead(Context::Values) {
                        Token::Comma => continue,
                        Token::CloseParen => return Ok(values),
                        other => {
                            return Err(syntax(format!("found '{}', expected: ',' or ')'", other.literal())));
                        }
                    }
                }
                Token::Comma => {
                    if values.is_empty() {
                        values.push(String::new());
                    }
                    match self.lookahead(Context::Values) {
                        Token::CloseParen => {
                            values.push(String::new());
                            return Ok(values);
                        }
                        Token::Comma => {
                            self.consume(Context::Values);
                            values.push(String::new());
                        }
                        _ => {}
                    }
                }
                other => return Err(syntax(format!("found '{}', expected: ',', or identifier", other.literal()))),
            }
        }
    }

    fn parse_exact_value(&mut self) -> Result<Vec<String>, SelectorError> {
        if matches!(self.lookahead(Context::Values), Token::End | Token::Comma) {
            return Ok(vec![String::new()]);
        }
        match self.consume(Context::Values) {
            Token::Identifier(value) => Ok(vec![value]),
            other => Err(syntax(format!("found '{}', expected: identifier", other.literal()))),
        }
    }
}

fn adjust(token: Token, context: Context) -> Token {
    match (context, token) {
        (Context::Values, Token::In) => Token::Identifier("in".to_string()),
        (Context::Values, Token::NotIn) => Token::Identifier("notin".to_string()),
        (_, token) => token,
    }
}

fn syntax(message: String) -> SelectorError {
    SelectorError::InvalidLabelSelector(format!("unable to parse requirement: {message}"))
}

fn requirement(key: &str, operator: Operator, values: Vec<String>) -> Result<Requirement, SelectorError> {
    Requirement::new(key, operator, values).map_err(|error| match error {
        SelectorError::InvalidLabelSelector(message) => {
            invalid_label(format!("unable to parse requirement: {message}"))
        }
        other => other,
    })
}

const NAME_FORMAT_MESSAGE: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end \
                                   with an alphanumeric character";

/// A label key: an optional DNS subdomain prefix and `/`, then a name of at most 63 characters.
fn validate_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if name.contains('/') {
        return Err("a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and \
                    end with an alphanumeric character with an optional DNS subdomain prefix and '/'"
            .to_string());
    }
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            return Err("prefix part must be non-empty".to_string());
        }
        if prefix.len() > 253 {
            return Err("prefix part must be no more than 253 characters".to_string());
        }
        if !is_dns_subdomain(prefix) {
            return Err("prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric \
                        characters, '-' or '.', and must start and end with an alphanumeric character"
                .to_string());
        }
    }
    if name.is_empty() {
        return Err("name part must be non-empty".to_string());
    }
    if name.len() > 63 {
        return Err("name part must be no more than 63 characters".to_string());
    }
    if !is_label_name(name) {
        return Err(format!("name part {NAME_FORMAT_MESSAGE}"));
    }
    Ok(())
}

/// A label value: empty, or at most 63 characters in the name format.
fn validate_label_value(value: &str) -> Result<(), String> {
    if value.len() > 63 {
        return Err("must be no more than 63 characters".to_string());
    }
    if !value.is_empty() && !is_label_name(value) {
        return Err(format!("a valid label {NAME_FORMAT_MESSAGE}"));
    }
    Ok(())
}

fn is_label_name(text: &str) -> bool {
    let bytes = text.as_bytes();
    let edge_ok = |b: &u8| b.is_ascii_alphanumeric();
    !bytes.is_empty()
        && bytes.first().is_some_and(edge_ok)
        && bytes.last().is_some_and(edge_ok)
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn is_dns_subdomain(text: &str) -> bool {
    text.split('.').all(|part| {
        let bytes = part.as_bytes();
        let edge_ok = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        !bytes.is_empty()
            && bytes.first().is_some_and(edge_ok)
            && bytes.last().is_some_and(edge_ok)
            && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn parses_every_operator_and_sorts_by_key() {
        let selector = LabelSelector::parse("z=1, y==2,x!=3,w in (b,a,b),v notin (c), u, !t, s>4, r<5").unwrap();
        assert_eq!(selector.to_string(), "r<5,s>4,!t,u,v notin (c),w in (a,b),x!=3,y==2,z=1");
        assert_eq!(selector.requirements()[5].values, vec!["a", "b"]);
    }

    #[test]
    fn empty_selector_selects_everything_and_null_selects_nothing() {
        for text in ["", "   "] {
            let selector = LabelSelector::parse(text).unwrap();
            assert!(selector.is_empty());
            assert!(selector.matches(None));
        }
        let nothing = LabelSelector::from_label_selector(&Value::Null).unwrap();
        assert!(!nothing.is_empty());
        assert!(!nothing.matches(Some(&labels(json!({"a": "b"})))));
        let everything = LabelSelector::from_label_selector(&json!({})).unwrap();
        assert!(everything.matches(None));
    }

    #[test]
    fn in_and_notin_are_words_outside_the_operator_position() {
        let selector = LabelSelector::parse("in in (in, notin)").unwrap();
        assert!(selector.matches(Some(&labels(json!({"in": "notin"})))));
        assert!(!selector.matches(Some(&labels(json!({"in": "x"})))));
        let selector = LabelSelector::parse("notin=in").unwrap();
        assert!(selector.matches(Some(&labels(json!({"notin": "in"})))));
    }

    #[test]
    fn empty_values_are_allowed_where_upstream_allows_them() {
        let selector = LabelSelector::parse("a=,b in (x,),c in ()").unwrap();
        assert_eq!(selector.requirements()[0].values, vec![""]);
        assert_eq!(selector.requirements()[1].values, vec!["", "x"]);
        assert_eq!(selector.requirements()[2].values, vec![""]);
        assert!(selector.matches(Some(&labels(json!({"a": "", "b": "", "c": ""})))));
        assert!(!selector.matches(Some(&labels(json!({"b": "", "c": ""})))));
    }

    #[test]
    fn rejects_malformed_selectors_with_upstream_wording() {
        let cases = [
            ("a b", "found 'b', expected: in, notin, =, ==, !=, gt, lt"),
            ("a=b,", "found '', expected: identifier after ','"),
            ("a in b", "found 'b' expected: '('"),
            ("a in (b c)", "found 'c', expected: ',' or ')'"),
            ("a=b=c", "found '=', expected: ',' or 'end of string'"),
            ("=a", "found '=', expected: !, identifier, or 'end of string'"),
            ("!a=b", "found '=', expected: ',' or 'end of string'"),
            ("a>b", "the value must be an integer"),
            ("-a=b", "name part must consist of alphanumeric characters"),
            ("a=-b", "a valid label must consist of alphanumeric characters"),
            ("Example.com/a=b", "prefix part a lowercase RFC 1123 subdomain"),
            ("a/b/c", "a qualified name must consist"),
        ];
        for (text, expected) in cases {
            let error = LabelSelector::parse(text).unwrap_err().to_string();
            assert!(error.contains(expected), "{text:?}: {error}");
        }
        let long = format!("a={}", "v".repeat(64));
        assert!(LabelSelector::parse(&long).unwrap_err().to_string().contains("no more than 63 characters"));
        assert!(LabelSelector::parse("example.com/app.name_x-y=v.1_2-3").is_ok());
    }

    #[test]
    fn negative_requirements_match_objects_without_the_label() {
        let selector = LabelSelector::parse("env!=prod,tier notin (db)").unwrap();
        assert!(selector.matches(None));
        assert!(selector.matches(Some(&labels(json!({"env": "dev"})))));
        assert!(!selector.matches(Some(&labels(json!({"env": "prod"})))));
        assert!(!selector.matches(Some(&labels(json!({"tier": "db"})))));
    }

    #[test]
    fn existence_and_numeric_comparisons() {
        let selector = LabelSelector::parse("a,!b,n>3,m<10").unwrap();
        assert!(selector.matches(Some(&labels(json!({"a": "", "n": "4", "m": "9"})))));
        assert!(!selector.matches(Some(&labels(json!({"a": "", "b": "", "n": "4", "m": "9"})))));
        assert!(!selector.matches(Some(&labels(json!({"a": "", "n": "3", "m": "9"})))));
        assert!(!selector.matches(Some(&labels(json!({"a": "", "n": "x", "m": "9"})))));
    }

    #[test]
    fn converts_metav1_label_selectors() {
        let selector = LabelSelector::from_label_selector(&json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["front", "edge"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "zone", "operator": "Exists"},
            ]
        }))
        .unwrap();
        assert_eq!(selector.to_string(), "app=web,!canary,tier in (edge,front),zone");
        assert!(selector.matches(Some(&labels(json!({"app": "web", "tier": "edge", "zone": "a"})))));
        assert!(!selector.matches(Some(&labels(json!({"app": "web", "tier": "edge"})))));

        let bad_operator = json!({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]});
        assert_eq!(
            LabelSelector::from_label_selector(&bad_operator).unwrap_err().to_string(),
            "\"Gt\" is not a valid label selector operator"
        );
        let no_values = json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]});
        assert!(LabelSelector::from_label_selector(&no_values).is_err());
        let bad_value = json!({"matchLabels": {"a": "not valid"}});
        assert!(LabelSelector::from_label_selector(&bad_value).is_err());
    }

    #[test]
    fn field_selector_parses_operators_and_escapes() {
        let selector =
            FieldSelector::parse(r"metadata.name=a\,b\=c\\d,status.phase!=Running,spec.nodeName==n1").unwrap();
        let terms: Vec<_> =
            selector.requirements().iter().map(|r| (r.field.as_str(), r.negated, r.value.as_str())).collect();
        assert_eq!(
            terms,
            vec![
                ("metadata.name", false, r"a,b=c\d"),
                ("spec.nodeName", false, "n1"),
                ("status.phase", true, "Running")
            ]
        );
        assert!(FieldSelector::parse("").unwrap().is_empty());
        assert!(FieldSelector::parse("a=b,,c=d").unwrap().requirements().len() == 2);
    }

    #[test]
    fn field_selector_rejects_bad_terms() {
        assert_eq!(
            FieldSelector::parse("metadata.name").unwrap_err().to_string(),
            "invalid selector: 'metadata.name'; can't understand 'metadata.name'"
        );
        assert_eq!(
            FieldSelector::parse(r"a=b\x").unwrap_err().to_string(),
            r"invalid field selector: invalid escape sequence: \x"
        );
        assert_eq!(
            FieldSelector::parse("a=b=c").unwrap_err().to_string(),
            "invalid field selector: unescaped character in value: 61"
        );
        assert!(FieldSelector::parse(r"a=b\").is_err());
    }

    #[test]
    fn pod_fields_and_missing_values() {
        let pod = json!({
            "metadata": {"name": "p1", "namespace": "default"},
            "spec": {"nodeName": "n1", "restartPolicy": "Always"},
            "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.5"}]}
        });
        let field = |f: &str| selectable_field("", "Pod", &pod, f).unwrap();
        assert_eq!(field("spec.nodeName").as_deref(), Some("n1"));
        assert_eq!(field("spec.host").as_deref(), Some("n1"));
        assert_eq!(field("spec.hostNetwork").as_deref(), Some("false"));
        assert_eq!(field("status.podIP").as_deref(), Some("10.0.0.5"));
        assert_eq!(field("status.nominatedNodeName"), None);
        assert_eq!(field("metadata.namespace").as_deref(), Some("default"));

        assert!(FieldSelector::parse("spec.nodeName=n1,status.phase!=Pending").unwrap().matches_kind("", "Pod", &pod));
        assert!(FieldSelector::parse("status.nominatedNodeName=").unwrap().matches_kind("", "Pod", &pod));
        assert!(!FieldSelector::parse("spec.nodeName=").unwrap().matches_kind("", "Pod", &pod));

        let selector = FieldSelector::parse("spec.nodeName=n1").unwrap();
        let reader = |object: &Value, f: &str| selectable_field("", "Pod", object, f).ok().flatten();
        assert!(selector.matches(&pod, &reader));
    }

    #[test]
    fn unsupported_fields_use_the_upstream_messages() {
        let pod = json!({});
        assert_eq!(
            selectable_field("", "Pod", &pod, "spec.containers").unwrap_err().to_string(),
            "field label not supported: spec.containers"
        );
        assert_eq!(
            selectable_field("batch", "Job", &pod, "status.failed").unwrap_err().to_string(),
            "field label \"status.failed\" not supported for batchv1.Job"
        );
        assert_eq!(
            selectable_field("apps", "Deployment", &pod, "spec.replicas").unwrap_err().to_string(),
            "\"spec.replicas\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
        );
        assert!(selectable_field("", "Node", &pod, "metadata.namespace").is_err());
        assert!(FieldSelector::parse("spec.foo=1").unwrap().validate("", "Pod").is_err());
        assert!(FieldSelector::parse("spec.nodeName=1,metadata.name=x").unwrap().validate("", "Pod").is_ok());
        assert_eq!(selectable_field("apps", "Deployment", &json!({}), "metadata.namespace").unwrap(), None);
    }

    #[test]
    fn other_kinds_fields() {
        let event = json!({
            "involvedObject": {"kind": "Pod", "name": "p1", "namespace": "default", "uid": "u1"},
            "reason": "Started", "type": "Normal", "reportingController": "kubelet", "source": {}
        });
        let field = |f: &str| selectable_field("", "Event", &event, f).unwrap();
        assert_eq!(field("involvedObject.kind").as_deref(), Some("Pod"));
        assert_eq!(field("involvedObject.uid").as_deref(), Some("u1"));
        assert_eq!(field("source").as_deref(), Some("kubelet"));
        assert_eq!(field("reportingComponent").as_deref(), Some("kubelet"));
        assert_eq!(field("involvedObject.fieldPath"), None);

        let node = json!({"metadata": {"name": "n1"}, "spec": {"unschedulable": true}});
        assert_eq!(selectable_field("", "Node", &node, "spec.unschedulable").unwrap().as_deref(), Some("true"));
        let secret = json!({"type": "Opaque"});
        assert_eq!(selectable_field("", "Secret", &secret, "type").unwrap().as_deref(), Some("Opaque"));
        let job = json!({"status": {}});
        assert_eq!(selectable_field("batch", "Job", &job, "status.successful").unwrap().as_deref(), Some("0"));
        let rs = json!({"status": {"replicas": 3}});
        assert_eq!(selectable_field("apps", "ReplicaSet", &rs, "status.replicas").unwrap().as_deref(), Some("3"));
        let csr = json!({"spec": {"signerName": "kubernetes.io/kubelet-serving"}});
        assert_eq!(
            selectable_field("certificates.k8s.io", "CertificateSigningRequest", &csr, "spec.signerName")
                .unwrap()
                .as_deref(),
            Some("kubernetes.io/kubelet-serving")
        );
        let ns = json!({"status": {"phase": "Active"}});
        assert_eq!(selectable_field("", "Namespace", &ns, "status.phase").unwrap().as_deref(), Some("Active"));
    }

    #[test]
    fn custom_resource_selectable_fields() {
        let object = json!({"metadata": {"name": "x"}, "spec": {"color": "blue", "size": 3}});
        let paths = [".spec.color", ".spec.size"];
        assert_eq!(custom_selectable_field(&object, "spec.color", &paths).unwrap().as_deref(), Some("blue"));
        assert_eq!(custom_selectable_field(&object, "spec.size", &paths).unwrap().as_deref(), Some("3"));
        assert!(custom_selectable_field(&object, "spec.other", &paths).is_err());
    }
}
