//! The regex library: `find`, and `findAll` with an optional limit, on strings. Patterns are compiled with the
//! `regex` crate, whose syntax is RE2's, as Go's, but whose `\d`, `\w`, `\s` and `\b` are Unicode-aware where Go's are
//! ASCII-only; a pattern that does not compile fails the call with upstream's `Illegal regex: ` message.

use cel::common::types::{CelInt, CelList, CelString};
use cel::{DeclarationError, Env, ExecutionError};
use regex::Regex;

use super::string_list;

pub(super) fn register_regex(env: &mut Env) -> Result<(), DeclarationError> {
    cel::add_member_overload!(env, fn find: (CelString<'_>, CelString<'_>) -> Result<CelString<'_>>,
        id = "string_find_string")?;
    cel::add_member_overload!(env, fn find_all: (CelString<'_>, CelString<'_>) -> Result<CelList<'_>>,
        id = "string_find_all_string")?;
    cel::add_member_overload!(env, fn find_all_limited: (CelString<'_>, CelString<'_>, CelInt) -> Result<CelList<'_>>,
        name = "findAll", id = "string_find_all_string_int")?;
    Ok(())
}

fn compile_regex(pattern: &str, function: &str) -> Result<Regex, ExecutionError> {
    Regex::new(pattern).map_err(|error| ExecutionError::function_error(function, format!("Illegal regex: {error}")))
}

/// The first match of `pattern`, or `""` when there is none.
fn find(this: &CelString<'_>, pattern: &CelString<'_>) -> Result<CelString<'static>, ExecutionError> {
    let regex = compile_regex(pattern, "find")?;
    Ok(regex.find(this).map_or_else(String::new, |found| found.as_str().to_owned()).into())
}

fn find_all(this: &CelString<'_>, pattern: &CelString<'_>) -> Result<CelList<'static>, ExecutionError> {
    find_all_limited(this, pattern, &CelInt::from(-1))
}

/// The matches of `pattern`, at most `limit` of them unless it is negative. Like Go's `FindAllString`, and the
/// `regex` crate alike, an empty match right after a match is not one.
fn find_all_limited(
    this: &CelString<'_>,
    pattern: &CelString<'_>,
    limit: &CelInt,
) -> Result<CelList<'static>, ExecutionError> {
    let regex = compile_regex(pattern, "findAll")?;
    let limit = usize::try_from(*limit.inner()).unwrap_or(usize::MAX);
    Ok(string_list(regex.find_iter(this).take(limit).map(|found| found.as_str().to_owned())))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{assert_value, error_message};

    #[test]
    fn find() {
        assert_value("'abc 123'.find('[0-9]+')", "123");
        assert_value("'abc 123'.find('xyz')", "");
        // Leftmost match, even an empty one, as Go's `FindString`.
        assert_value("'abc 123'.find('[0-9]*')", "");
        assert!(error_message("'abc'.find('(')").starts_with("Illegal regex: "));
    }

    #[test]
    fn find_all() {
        assert_value("'123 abc 456'.findAll('[0-9]+')", vec!["123", "456"]);
        assert_value("'123 abc 456'.findAll('[0-9]+', 1)", vec!["123"]);
        assert_value("'123 abc 456'.findAll('[0-9]+', 0)", Vec::<&str>::new());
        assert_value("'123 abc 456'.findAll('[0-9]+', -1)", vec!["123", "456"]);
        assert_value("'123 abc 456'.findAll('xyz')", Vec::<&str>::new());
        // Go's `FindAllString` skips an empty match right after a match, and so does the `regex` crate.
        assert_value("'123 abc 456'.findAll('[0-9]*')", vec!["123", "", "", "", "", "456"]);
        assert!(error_message("'abc'.findAll('[')").starts_with("Illegal regex: "));
    }
}
