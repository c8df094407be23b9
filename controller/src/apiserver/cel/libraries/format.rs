//! The format library: `format.named`, the thirteen `format.<name>()` constants and `validate`, on
//! `kubernetes.NamedFormat` ([`NamedFormat`]). `validate` yields `optional.none()` for a valid string, or the
//! messages of upstream's validation functions, reimplemented here; the `uri` format validates with Go's
//! `url.ParseRequestURI` of the url library (`url.rs`).

use std::sync::{Arc, LazyLock};

use cel::common::types::{CelOptional, STRING_TYPE};
use cel::common::value::{CowVal, Val};
use cel::objects::{Opaque, Value};
use cel::{DeclarationError, Env, ExecutionError};
use regex::bytes::Regex as BytesRegex;
use regex::Regex;

use super::url::Url;
use super::{opaque_arg, opaque_result, opaque_type, owned, string_arg, string_list, take, Returned};

const FORMAT_TYPE: &str = "kubernetes.NamedFormat";

/// One of upstream's named formats (`kubernetes.NamedFormat`); two are equal when they are the same format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NamedFormat(FormatKind);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FormatKind {
    Dns1123Label,
    Dns1123Subdomain,
    Dns1035Label,
    QualifiedName,
    Dns1123LabelPrefix,
    Dns1123SubdomainPrefix,
    Dns1035LabelPrefix,
    LabelValue,
    Uri,
    Uuid,
    Byte,
    Date,
    Datetime,
}

/// The formats by the name `format.named` takes, and `format.<name>()` calls, in the order of `FORMAT_CONSTANTS`.
const FORMATS: [(&str, FormatKind); 13] = [
    ("dns1123Label", FormatKind::Dns1123Label),
    ("dns1123Subdomain", FormatKind::Dns1123Subdomain),
    ("dns1035Label", FormatKind::Dns1035Label),
    ("qualifiedName", FormatKind::QualifiedName),
    ("dns1123LabelPrefix", FormatKind::Dns1123LabelPrefix),
    ("dns1123SubdomainPrefix", FormatKind::Dns1123SubdomainPrefix),
    ("dns1035LabelPrefix", FormatKind::Dns1035LabelPrefix),
    ("labelValue", FormatKind::LabelValue),
    ("uri", FormatKind::Uri),
    ("uuid", FormatKind::Uuid),
    ("byte", FormatKind::Byte),
    ("date", FormatKind::Date),
    ("datetime", FormatKind::Datetime),
];

/// The `format.<name>()` functions: overloads are plain function pointers, so one instance per format.
const FORMAT_CONSTANTS: [cel::common::functions::Function; 13] = [
    format_constant::<0>,
    format_constant::<1>,
    format_constant::<2>,
    format_constant::<3>,
    format_constant::<4>,
    format_constant::<5>,
    format_constant::<6>,
    format_constant::<7>,
    format_constant::<8>,
    format_constant::<9>,
    format_constant::<10>,
    format_constant::<11>,
    format_constant::<12>,
];

impl Opaque for NamedFormat {
    fn runtime_type_name(&self) -> &str {
        FORMAT_TYPE
    }
}

pub(super) fn register_format(env: &mut Env) -> Result<(), DeclarationError> {
    let format = || opaque_type(FORMAT_TYPE);
    env.add_type(format())?;
    env.add_overload("format.named", "format-named", vec![STRING_TYPE], format_named)?;
    for ((name, _), constant) in FORMATS.iter().zip(FORMAT_CONSTANTS) {
        let function = format!("format.{name}");
        env.add_overload(&function, &function, vec![], constant)?;
    }
    env.add_member_overload("validate", "format-validate", format(), vec![STRING_TYPE], format_validate)?;
    Ok(())
}

fn format_constant<'b, 'v, const INDEX: usize>(args: Vec<CowVal<'b, 'v>>) -> Returned<'b, 'v> {
    let [] = take(args)?;
    opaque_result(NamedFormat(FORMATS[INDEX].1))
}

fn format_named<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Returned<'b, 'v> {
    let [name] = take(args)?;
    let name = string_arg(&*name)?;
    match FORMATS.iter().find(|(known, _)| *known == name) {
        Some((_, kind)) => {
            let format: Box<dyn Val> = Value::Opaque(Arc::new(NamedFormat(*kind))).try_into()?;
            owned(CelOptional::of(format))
        }
        None => owned(CelOptional::none()),
    }
}

fn format_validate<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Returned<'b, 'v> {
    let [format, text] = take(args)?;
    let NamedFormat(kind) = opaque_arg(&*format, FORMAT_TYPE)?;
    let errors =
        validate_format(kind, string_arg(&*text)?).map_err(|m| ExecutionError::function_error("validate", m))?;
    if errors.is_empty() {
        owned(CelOptional::none())
    } else {
        owned(CelOptional::of(Box::new(string_list(errors))))
    }
}

/// Upstream's validation of `text` as `kind`: no messages when it is valid.
fn validate_format(kind: FormatKind, text: &str) -> Result<Vec<String>, String> {
    Ok(match kind {
        FormatKind::Dns1123Label => dns1123_label(text.as_bytes()),
        FormatKind::Dns1123Subdomain => dns1123_subdomain(text.as_bytes()),
        FormatKind::Dns1035Label => dns1035_label(text.as_bytes()),
        FormatKind::QualifiedName => qualified_name(text),
        FormatKind::Dns1123LabelPrefix => dns1123_label(&mask_trailing_dash(text)?),
        FormatKind::Dns1123SubdomainPrefix => dns1123_subdomain(&mask_trailing_dash(text)?),
        FormatKind::Dns1035LabelPrefix => dns1035_label(&mask_trailing_dash(text)?),
        FormatKind::LabelValue => label_value(text.as_bytes()),
        FormatKind::Uri => Url::parse_request_uri(text).err().into_iter().collect(),
        FormatKind::Uuid if !UUID.is_match(text) => vec!["does not match the UUID format".to_owned()],
        FormatKind::Byte if !BASE64.is_match(text) => vec!["invalid base64".to_owned()],
        FormatKind::Date if !is_date(text) => vec!["invalid date".to_owned()],
        FormatKind::Datetime if !is_datetime(text) => vec!["invalid datetime".to_owned()],
        FormatKind::Uuid | FormatKind::Byte | FormatKind::Date | FormatKind::Datetime => vec![],
    })
}

const DNS1123_LABEL_FORMAT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_MESSAGE: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or \
                                     '-', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FORMAT: &str = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_MESSAGE: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric \
                                         characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1035_LABEL_FORMAT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const DNS1035_LABEL_MESSAGE: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', \
                                     start with an alphabetic character, and end with an alphanumeric character";
const QUALIFIED_NAME_FORMAT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_MESSAGE: &str =
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end \
                                      with an alphanumeric character";
const LABEL_VALUE_FORMAT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_MESSAGE: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', \
                                   '_' or '.', and must start and end with an alphanumeric character";

/// A whole-input match of `format`, over bytes: upstream's inputs are Go strings, which may be cut mid-character.
fn anchored(format: &str) -> BytesRegex {
    BytesRegex::new(&format!("^(?:{format})$")).unwrap_or_else(|error| panic!("{format} is a valid pattern: {error}"))
}

static DNS1123_LABEL: LazyLock<BytesRegex> = LazyLock::new(|| anchored(DNS1123_LABEL_FORMAT));
static DNS1123_SUBDOMAIN: LazyLock<BytesRegex> = LazyLock::new(|| anchored(DNS1123_SUBDOMAIN_FORMAT));
static DNS1035_LABEL: LazyLock<BytesRegex> = LazyLock::new(|| anchored(DNS1035_LABEL_FORMAT));
static QUALIFIED_NAME: LazyLock<BytesRegex> = LazyLock::new(|| anchored(QUALIFIED_NAME_FORMAT));
static LABEL_VALUE: LazyLock<BytesRegex> = LazyLock::new(|| anchored(LABEL_VALUE_FORMAT));
static UUID: LazyLock<Regex> = LazyLock::new(|| {
    let pattern = "(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$";
    Regex::new(pattern).unwrap_or_else(|error| panic!("{pattern} is a valid pattern: {error}"))
});
/// govalidator's `IsBase64`, which `byte` uses: padded standard base64, not empty.
static BASE64: LazyLock<Regex> = LazyLock::new(|| {
    let pattern = "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{4})$";
    Regex::new(pattern).unwrap_or_else(|error| panic!("{pattern} is a valid pattern: {error}"))
});
/// The time of day of go-openapi's `IsDateTime`; its `.` is any character, as there.
static TIME_OF_DAY: LazyLock<Regex> = LazyLock::new(|| {
    let pattern = r"^([0-9]{2}):([0-9]{2}):([0-9]{2})(.[0-9]+)?(z|([+-][0-9]{2}:[0-9]{2}))$";
    Regex::new(pattern).unwrap_or_else(|error| panic!("{pattern} is a valid pattern: {error}"))
});

/// apimachinery's `RegexError`.
fn regex_error(message: &str, format: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{message} (regex used for validation is '{format}')");
    }
    let examples: Vec<String> = examples.iter().map(|example| format!("'{example}', ")).collect();
    format!("{message} (e.g. {}regex used for validation is '{format}')", examples.join(" or "))
}

fn max_length_error(length: usize) -> String {
    format!("must be no more than {length} characters")
}

/// apimachinery's `maskTrailingDash`, for the prefix formats: a trailing `-` is fine where a suffix will follow.
/// As upstream, it drops the last two bytes, not just the dash.
fn mask_trailing_dash(text: &str) -> Result<Vec<u8>, String> {
    let bytes = text.as_bytes();
    if !bytes.ends_with(b"-") {
        return Ok(bytes.to_vec());
    }
    // Go panics here, for `-` alone; its CEL runtime turns the panic into an evaluation error.
    let kept = bytes.len().checked_sub(2).ok_or_else(|| "runtime error: slice bounds out of range [:-1]".to_owned())?;
    let mut masked = bytes[..kept].to_vec();
    masked.push(b'a');
    Ok(masked)
}

fn dns1123_label(value: &[u8]) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > 63 {
        errors.push(max_length_error(63));
    }
    if !DNS1123_LABEL.is_match(value) {
        if DNS1123_SUBDOMAIN.is_match(value) {
            errors.push("must not contain dots".to_owned());
        } else {
            errors.push(regex_error(DNS1123_LABEL_MESSAGE, DNS1123_LABEL_FORMAT, &["my-name", "123-abc"]));
        }
    }
    errors
}

fn dns1123_subdomain(value: &[u8]) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > 253 {
        errors.push(max_length_error(253));
    }
    if !DNS1123_SUBDOMAIN.is_match(value) {
        errors.push(regex_error(DNS1123_SUBDOMAIN_MESSAGE, DNS1123_SUBDOMAIN_FORMAT, &["example.com"]));
    }
    errors
}

fn dns1035_label(value: &[u8]) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > 63 {
        errors.push(max_length_error(63));
    }
    if !DNS1035_LABEL.is_match(value) {
        errors.push(regex_error(DNS1035_LABEL_MESSAGE, DNS1035_LABEL_FORMAT, &["my-name", "abc-123"]));
    }
    errors
}

/// apimachinery's `IsQualifiedName`: a name, with an optional DNS subdomain and `/` before it.
fn qualified_name(value: &str) -> Vec<String> {
    const EXAMPLES: [&str; 3] = ["MyName", "my.name", "123-abc"];
    let mut errors = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts[..] {
        [name] => name,
        [prefix, name] => {
            if prefix.is_empty() {
                errors.push("prefix part must be non-empty".to_owned());
            } else {
                errors.extend(dns1123_subdomain(prefix.as_bytes()).into_iter().map(|e| format!("prefix part {e}")));
            }
            name
        }
        _ => {
            let rule = regex_error(QUALIFIED_NAME_MESSAGE, QUALIFIED_NAME_FORMAT, &EXAMPLES);
            return vec![format!(
                "a qualified name {rule} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
            )];
        }
    };
    if name.is_empty() {
        errors.push("name part must be non-empty".to_owned());
    } else if name.len() > 63 {
        errors.push(format!("name part {}", max_length_error(63)));
    }
    if !QUALIFIED_NAME.is_match(name.as_bytes()) {
        errors.push(format!("name part {}", regex_error(QUALIFIED_NAME_MESSAGE, QUALIFIED_NAME_FORMAT, &EXAMPLES)));
    }
    errors
}

fn label_value(value: &[u8]) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > 63 {
        errors.push(max_length_error(63));
    }
    if !LABEL_VALUE.is_match(value) {
        errors.push(regex_error(LABEL_VALUE_MESSAGE, LABEL_VALUE_FORMAT, &["MyValue", "my_value", "12345"]));
    }
    errors
}

/// Go's `time.Parse("2006-01-02", text)` succeeding: four digits of year, two of month and day, the day in the month.
fn is_date(text: &str) -> bool {
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = bytes.get(range)?;
        part.iter().all(u8::is_ascii_digit).then(|| part.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')))
    };
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return false;
    }
    let (Some(year), Some(month), Some(day)) = (digits(0..4), digits(5..7), digits(8..10)) else {
        return false;
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&day)
}

/// go-openapi's `IsDateTime`: a date, `t` (either case), and a time of day with a zone.
fn is_datetime(text: &str) -> bool {
    if text.len() < 4 {
        return false;
    }
    let lower = text.to_lowercase();
    let mut parts = lower.split('t');
    let (Some(date), Some(time)) = (parts.next(), parts.next()) else {
        return false;
    };
    if !is_date(date) {
        return false;
    }
    TIME_OF_DAY.captures(time).is_some_and(|time| {
        let field = |i| time.get(i).map_or("", |m| m.as_str());
        field(1) <= "23" && field(2) <= "59" && field(3) <= "59"
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{assert_false, assert_true, assert_value, eval};
    use super::*;

    #[test]
    fn format_validates_valid_strings() {
        for expression in [
            "format.dns1123Label().validate('my-label-name')",
            "format.dns1123Subdomain().validate('apiextensions.k8s.io')",
            "format.dns1035Label().validate('my-label-name')",
            "format.qualifiedName().validate('apiextensions.k8s.io/v1beta1')",
            "format.qualifiedName().validate('my.name')",
            "format.dns1123LabelPrefix().validate('my-label-prefix-')",
            "format.dns1123SubdomainPrefix().validate('mysubdomain.prefix.-')",
            "format.dns1035LabelPrefix().validate('my-label-prefix-')",
            "format.labelValue().validate('my-cool-label-Value')",
            "format.labelValue().validate('')",
            "format.uri().validate('http://example.com')",
            "format.uuid().validate('123e4567-e89b-12d3-a456-426614174000')",
            "format.uuid().validate('123E4567E89B12D3A456426614174000')",
            "format.byte().validate('aGVsbG8=')",
            "format.date().validate('2021-01-01')",
            "format.date().validate('2020-02-29')",
            "format.datetime().validate('2021-01-01T00:00:00Z')",
            "format.datetime().validate('2021-01-01t23:59:59.123+01:00')",
        ] {
            assert_false(&format!("{expression}.hasValue()"));
        }
    }

    fn validation_errors(expression: &str) -> Vec<String> {
        match eval(&format!("{expression}.value()")) {
            Ok(Value::List(errors)) => errors
                .iter()
                .map(|error| match error {
                    Value::String(error) => error.to_string(),
                    other => panic!("{expression}: {other:?}"),
                })
                .collect(),
            other => panic!("{expression}: {other:?}"),
        }
    }

    #[test]
    fn format_reports_upstreams_messages() {
        let label = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must \
                     start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for \
                     validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
        let subdomain = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or \
                         '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used \
                         for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
        let dns1035 = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an \
                       alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', \
                       regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
        let name_part = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end \
                         with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for \
                         validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
        let label_value = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or \
                           '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or \
                           'my_value',  or '12345', regex used for validation is \
                           '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
        for (expression, expected) in [
            ("format.dns1123Label().validate('contains a space')", vec![label.to_owned()]),
            ("format.dns1123Subdomain().validate('contains a space')", vec![subdomain.to_owned()]),
            ("format.dns1035Label().validate('contains a space')", vec![dns1035.to_owned()]),
            ("format.qualifiedName().validate('contains a space')", vec![name_part.to_owned()]),
            ("format.dns1123LabelPrefix().validate('contains a space-')", vec![label.to_owned()]),
            ("format.dns1123SubdomainPrefix().validate('contains a space-')", vec![subdomain.to_owned()]),
            ("format.dns1035LabelPrefix().validate('contains a space-')", vec![dns1035.to_owned()]),
            ("format.labelValue().validate('my-cool-label-Value!!\\n\\n!!!')", vec![label_value.to_owned()]),
            ("format.dns1123Label().validate('a.b')", vec!["must not contain dots".to_owned()]),
            ("format.qualifiedName().validate('/name')", vec!["prefix part must be non-empty".to_owned()]),
            (
                "format.qualifiedName().validate('example.com/')",
                vec!["name part must be non-empty".to_owned(), name_part.to_owned()],
            ),
            ("format.qualifiedName().validate('Example.com/name')", vec![format!("prefix part {subdomain}")]),
            ("format.uri().validate('../x')", vec!["parse \"../x\": invalid URI for request".to_owned()]),
            ("format.uuid().validate('123e4567')", vec!["does not match the UUID format".to_owned()]),
            ("format.byte().validate('aGVsbG8')", vec!["invalid base64".to_owned()]),
            ("format.byte().validate('')", vec!["invalid base64".to_owned()]),
            ("format.date().validate('2020-01-32')", vec!["invalid date".to_owned()]),
            ("format.date().validate('2021-02-29')", vec!["invalid date".to_owned()]),
            ("format.date().validate('2021-1-01')", vec!["invalid date".to_owned()]),
            ("format.datetime().validate('2020-01-32T00:00:00Z')", vec!["invalid datetime".to_owned()]),
            ("format.datetime().validate('2020-01-01T24:00:00Z')", vec!["invalid datetime".to_owned()]),
            ("format.datetime().validate('2020-01-01T00:00:00')", vec!["invalid datetime".to_owned()]),
        ] {
            assert_eq!(validation_errors(expression), expected, "{expression}");
        }
        let long_label = format!("format.dns1123Label().validate('{}')", "a".repeat(64));
        assert_eq!(validation_errors(&long_label), vec!["must be no more than 63 characters".to_owned()]);
        let too_many_slashes = validation_errors("format.qualifiedName().validate('a/b/c')");
        assert_eq!(
            too_many_slashes,
            vec!["a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end \
                  with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for \
                  validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix \
                  and '/' (e.g. 'example.com/MyName')"
                .to_owned()]
        );
        // Upstream's prefix masking slices a lone `-` out of range.
        assert!(eval("format.dns1123LabelPrefix().validate('-')").is_err());
    }

    #[test]
    fn format_names() {
        assert_false("format.named('unknown').hasValue()");
        for (name, _) in FORMATS {
            assert_true(&format!("format.named('{name}').hasValue()"));
            assert_true(&format!("format.named('{name}').value() == format.{name}()"));
            for (other, _) in FORMATS {
                if other != name {
                    assert_false(&format!("format.{name}() == format.{other}()"));
                }
            }
        }
        assert_true("type(format.uuid()) == kubernetes.NamedFormat");
        assert_true("format.named('uuid').value().validate('x').hasValue()");
        // The strings extension's `format` member function is another function.
        assert_value("'%s!'.format(['hi'])", "hi!");
    }
}
