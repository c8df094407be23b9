//! The semver library: `semver` and `isSemver` (with the optional `normalize` argument, which upstream's
//! environment enables along with the library), `major`, `minor`, `patch`, `isLessThan`, `isGreaterThan`,
//! `compareTo` and `==`, on `kubernetes.Semver` ([`Semver`]), with `github.com/blang/semver/v4`'s parsing, order and
//! messages.

use std::cmp::Ordering;

use cel::common::types::{CelBool, CelInt, CelString, BOOL_TYPE, STRING_TYPE};
use cel::common::value::{CowVal, Val};
use cel::objects::Opaque;
use cel::{DeclarationError, Env, ExecutionError};

use super::{go_quote, opaque_arg, opaque_result, opaque_type, owned, string_arg, take, unexpected, Returned};

const SEMVER_TYPE: &str = "kubernetes.Semver";

/// A semantic version (`kubernetes.Semver`), as `github.com/blang/semver/v4` parses and orders it: build metadata
/// counts for neither order nor equality.
#[derive(Clone, Debug)]
pub struct Semver {
    major: u64,
    minor: u64,
    patch: u64,
    pre_release: Vec<PreRelease>,
    build: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum PreRelease {
    Numeric(u64),
    Alphanumeric(String),
}

impl PreRelease {
    fn cmp(&self, other: &PreRelease) -> Ordering {
        match (self, other) {
            (PreRelease::Numeric(a), PreRelease::Numeric(b)) => a.cmp(b),
            (PreRelease::Numeric(_), PreRelease::Alphanumeric(_)) => Ordering::Less,
            (PreRelease::Alphanumeric(_), PreRelease::Numeric(_)) => Ordering::Greater,
            (PreRelease::Alphanumeric(a), PreRelease::Alphanumeric(b)) => a.cmp(b),
        }
    }
}

fn is_semver_alphanumeric(text: &str) -> bool {
    text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn is_digits(text: &str) -> bool {
    text.bytes().all(|b| b.is_ascii_digit())
}

/// Go's `strconv.ParseUint(text, 10, 64)`, with its error message.
fn parse_version_number(text: &str) -> Result<u64, String> {
    text.parse().map_err(|_| {
        let reason = if text.is_empty() || !is_digits(text) { "invalid syntax" } else { "value out of range" };
        format!("strconv.ParseUint: parsing {}: {reason}", go_quote(text))
    })
}

impl Semver {
    /// blang/semver's `Parse`, with its messages.
    fn parse(text: &str) -> Result<Semver, String> {
        if text.is_empty() {
            return Err("Version string empty".to_owned());
        }
        let parts: Vec<&str> = text.splitn(3, '.').collect();
        let [major, minor, rest] = parts[..] else {
            return Err("No Major.Minor.Patch elements found".to_owned());
        };
        let number = |part: &str, name: &str, capitalized: &str| -> Result<u64, String> {
            if !is_digits(part) {
                return Err(format!("Invalid character(s) found in {name} number {}", go_quote(part)));
            }
            if part.len() > 1 && part.starts_with('0') {
                return Err(format!("{capitalized} number must not contain leading zeroes {}", go_quote(part)));
            }
            parse_version_number(part)
        };
        let major = number(major, "major", "Major")?;
        let minor = number(minor, "minor", "Minor")?;
        let (rest, build) = match rest.split_once('+') {
            Some((rest, build)) => (rest, Some(build)),
            None => (rest, None),
        };
        let (patch, pre_release) = match rest.split_once('-') {
            Some((patch, pre_release)) => (patch, Some(pre_release)),
            None => (rest, None),
        };
        let patch = number(patch, "patch", "Patch")?;
        let mut version = Semver { major, minor, patch, pre_release: Vec::new(), build: Vec::new() };
        for part in pre_release.into_iter().flat_map(|pre_release| pre_release.split('.')) {
            if part.is_empty() {
                return Err("Prerelease is empty".to_owned());
            }
            let part = if is_digits(part) {
                if part.len() > 1 && part.starts_with('0') {
                    return Err(format!(
                        "Numeric PreRelease version must not contain leading zeroes {}",
                        go_quote(part)
                    ));
                }
                PreRelease::Numeric(parse_version_number(part)?)
            } else if is_semver_alphanumeric(part) {
                PreRelease::Alphanumeric(part.to_owned())
            } else {
                return Err(format!("Invalid character(s) found in prerelease {}", go_quote(part)));
            };
            version.pre_release.push(part);
        }
        for part in build.into_iter().flat_map(|build| build.split('.')) {
            if part.is_empty() {
                return Err("Build meta data is empty".to_owned());
            }
            if !is_semver_alphanumeric(part) {
                return Err(format!("Invalid character(s) found in build meta data {}", go_quote(part)));
            }
            version.build.push(part.to_owned());
        }
        Ok(version)
    }

    /// Upstream's `normalizeAndParse`: without a leading `v`, with missing minor and patch numbers as zeros, and
    /// without leading zeros.
    fn parse_normalized(text: &str) -> Result<Semver, String> {
        let text = text.strip_prefix('v').unwrap_or(text);
        let mut parts: Vec<String> = text
            .splitn(3, '.')
            .map(|part| {
                if part.len() <= 1 {
                    return part.to_owned();
                }
                let trimmed = part.trim_start_matches('0');
                if trimmed.bytes().next().is_some_and(|b| b.is_ascii_digit()) {
                    trimmed.to_owned()
                } else {
                    format!("0{trimmed}")
                }
            })
            .collect();
        if parts.len() < 3 {
            if parts.last().is_some_and(|last| last.contains(['+', '-'])) {
                return Err("short version cannot contain PreRelease/Build meta data".to_owned());
            }
            parts.resize(3, "0".to_owned());
        }
        Semver::parse(&parts.join("."))
    }

    fn cmp(&self, other: &Semver) -> Ordering {
        let by_numbers = (self.major, self.minor, self.patch).cmp(&(other.major, other.minor, other.patch));
        if by_numbers != Ordering::Equal {
            return by_numbers;
        }
        // A release sorts after its pre-releases; pre-releases compare identifier by identifier, then by length.
        match (self.pre_release.is_empty(), other.pre_release.is_empty()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => self
                .pre_release
                .iter()
                .zip(&other.pre_release)
                .map(|(a, b)| a.cmp(b))
                .find(|ordering| *ordering != Ordering::Equal)
                .unwrap_or_else(|| self.pre_release.len().cmp(&other.pre_release.len())),
        }
    }
}

impl PartialEq for Semver {
    fn eq(&self, other: &Semver) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Semver {}

impl Opaque for Semver {
    fn runtime_type_name(&self) -> &str {
        SEMVER_TYPE
    }
}

pub(super) fn register_semver(env: &mut Env) -> Result<(), DeclarationError> {
    let semver = || opaque_type(SEMVER_TYPE);
    env.add_type(semver())?;
    env.add_overload("semver", "string_to_semver", vec![STRING_TYPE], semver_from_string)?;
    env.add_overload("semver", "string_bool_to_semver", vec![STRING_TYPE, BOOL_TYPE], semver_from_string_normalized)?;
    cel::add_overload!(env, fn is_semver: (CelString<'_>) -> CelBool, id = "is_semver_string")?;
    cel::add_overload!(env, fn is_semver_normalized: (CelString<'_>, CelBool) -> CelBool, name = "isSemver",
        id = "is_semver_string_bool")?;
    env.add_member_overload("isGreaterThan", "semver_is_greater_than", semver(), vec![semver()], semver_greater)?;
    env.add_member_overload("isLessThan", "semver_is_less_than", semver(), vec![semver()], semver_less)?;
    env.add_member_overload("compareTo", "semver_compare_to", semver(), vec![semver()], semver_compare_to)?;
    env.add_member_overload("major", "semver_major", semver(), vec![], semver_major)?;
    env.add_member_overload("minor", "semver_minor", semver(), vec![], semver_minor)?;
    env.add_member_overload("patch", "semver_patch", semver(), vec![], semver_patch)?;
    Ok(())
}

fn semver_arg(value: &dyn Val) -> Result<Semver, ExecutionError> {
    opaque_arg(value, SEMVER_TYPE)
}

fn bool_arg(value: &dyn Val) -> Result<bool, ExecutionError> {
    value.downcast_ref::<CelBool>().map(|b| *b.inner()).ok_or_else(|| unexpected(value, "bool"))
}

fn parse_semver(text: &str, normalize: bool) -> Result<Semver, String> {
    if normalize {
        Semver::parse_normalized(text)
    } else {
        Semver::parse(text)
    }
}

fn semver_from_string<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Returned<'b, 'v> {
    let [text] = take(args)?;
    let version = parse_semver(string_arg(&*text)?, false).map_err(|m| ExecutionError::function_error("semver", m))?;
    opaque_result(version)
}

fn semver_from_string_normalized<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Returned<'b, 'v> {
    let [text, normalize] = take(args)?;
    let version = parse_semver(string_arg(&*text)?, bool_arg(&*normalize)?)
        .map_err(|message| ExecutionError::function_error("semver", message))?;
    opaque_result(version)
}

fn is_semver(text: &CelString<'_>) -> CelBool {
    parse_semver(text, false).is_ok().into()
}

fn is_semver_normalized(text: &CelString<'_>, normalize: &CelBool) -> CelBool {
    parse_semver(text, *normalize.inner()).is_ok().into()
}

fn semver_pair(args: Vec<CowVal<'_, '_>>) -> Result<(Semver, Semver), ExecutionError> {
    let [this, other] = take(args)?;
    Ok((semver_arg(&*this)?, semver_arg(&*other)?))
}

fn semver_greater<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Returned<'b, 'v> {
    let (this, other) = semver_pair(args)?;
    owned(CelBool::from(this.cmp(&other) == Ordering::Greater))
}

fn semver_less<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Returned<'b, 'v> {
    let (this, other) = semver_pair(args)?;
    owned(CelBool::from(this.cmp(&other) == Ordering::Less))
}

fn semver_compare_to<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Returned<'b, 'v> {
    let (this, other) = semver_pair(args)?;
    owned(CelInt::from(this.cmp(&other) as i64))
}

/// The version numbers are unsigned, and upstream converts them to CEL's `int` as Go does, wrapping.
fn semver_number<'b, 'v>(args: Vec<CowVal<'b, 'v>>, number: fn(&Semver) -> u64) -> Returned<'b, 'v> {
    let [version] = take(args)?;
    owned(CelInt::from(number(&semver_arg(&*version)?) as i64))
}

fn semver_major<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Returned<'b, 'v> {
    semver_number(args, |version| version.major)
}

fn semver_minor<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Returned<'b, 'v> {
    semver_number(args, |version| version.minor)
}

fn semver_patch<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Returned<'b, 'v> {
    semver_number(args, |version| version.patch)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{assert_error, assert_false, assert_true, assert_value};

    #[test]
    fn semver_parses_as_blang() {
        assert_true("semver('1.0.0') == semver('1.0.0')");
        assert_true("semver('0.1.0-alpha.1') == semver('0.1.0-alpha.1')");
        assert_true("semver('1.0.0+build.1') == semver('1.0.0+other')");
        assert_true("type(semver('1.0.0')) == kubernetes.Semver");
        for (input, message) in [
            ("", "Version string empty"),
            ("200K", "No Major.Minor.Patch elements found"),
            ("Three", "No Major.Minor.Patch elements found"),
            ("v1.0.0", "Invalid character(s) found in major number \"v1\""),
            ("01.0.0", "Major number must not contain leading zeroes \"01\""),
            ("1.01.0", "Minor number must not contain leading zeroes \"01\""),
            ("1.0.01", "Patch number must not contain leading zeroes \"01\""),
            ("1.x.0", "Invalid character(s) found in minor number \"x\""),
            ("1.0.x", "Invalid character(s) found in patch number \"x\""),
            ("1..0", "strconv.ParseUint: parsing \"\": invalid syntax"),
            ("99999999999999999999.0.0", "strconv.ParseUint: parsing \"99999999999999999999\": value out of range"),
            ("1.0.0-", "Prerelease is empty"),
            ("1.0.0-01", "Numeric PreRelease version must not contain leading zeroes \"01\""),
            ("1.0.0-a_b", "Invalid character(s) found in prerelease \"a_b\""),
            ("1.0.0+", "Build meta data is empty"),
            ("1.0.0+a_b", "Invalid character(s) found in build meta data \"a_b\""),
        ] {
            assert_error(&format!("semver('{input}')"), message);
            assert_false(&format!("isSemver('{input}')"));
        }
        assert_true("isSemver('1.0.0') && isSemver('1.2.3-rc.1+build.5')");
        assert_false("isSemver('v1.0')");
    }

    #[test]
    fn semver_normalizes_on_request() {
        assert_true("semver('v1.0.0', true) == semver('1.0.0')");
        assert_true("semver('1.0', true) == semver('1.0.0')");
        assert_true("semver('1', true) == semver('1.0.0')");
        assert_true("semver('01.01.01', true) == semver('1.1.1')");
        assert_true("semver('1.0.0', false) == semver('1.0.0')");
        assert_true("isSemver('v1.0', true) && !isSemver('v1.0', false)");
        assert_error("semver('1.0-alpha', true)", "short version cannot contain PreRelease/Build meta data");
        assert_error("semver('v1.0', false)", "No Major.Minor.Patch elements found");
    }

    #[test]
    fn semver_numbers_and_order() {
        assert_value("semver('1.2.3').major()", 1);
        assert_value("semver('1.2.3').minor()", 2);
        assert_value("semver('1.2.3').patch()", 3);
        assert_value("semver('1.2.3').compareTo(semver('1.2.3'))", 0);
        assert_value("semver('1.2.3').compareTo(semver('2.0.0'))", -1);
        assert_value("semver('1.2.3').compareTo(semver('0.1.2'))", 1);
        assert_true("semver('1.2.3').isGreaterThan(semver('1.2.2'))");
        assert_false("semver('1.2.3').isGreaterThan(semver('1.2.3'))");
        assert_true("semver('1.2.3').isLessThan(semver('1.10.0'))");
        let ascending = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
        ];
        for pair in ascending.windows(2) {
            assert_true(&format!("semver('{}').isLessThan(semver('{}'))", pair[0], pair[1]));
            assert_value(&format!("semver('{}').compareTo(semver('{}'))", pair[1], pair[0]), 1);
        }
    }
}
