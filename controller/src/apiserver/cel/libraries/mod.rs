//! The Kubernetes CEL libraries, as the API server of Kubernetes v1.33 declares them, as an extension of the `cel`
//! crate: register them with `env.add_extension(extension)` on an `Env` that has the standard library (and, as
//! kaasd's has, the crate's `strings` and `lists` extensions, which they coexist with).
//!
//! Done, with upstream's function names, overloads, type names and error messages, one library a file:
//! - lists (`lists.rs`): `isSorted()`, `sum()`, `min()`, `max()`, `indexOf(x)`, `lastIndexOf(x)` on lists;
//! - regex (`regex.rs`): `find`, `findAll` (with an optional limit);
//! - quantity (`quantity.rs`): `quantity`, `isQuantity`, `sign` (global, as upstream declares it, and as a member),
//!   `isInteger`, `asInteger`, `asApproximateFloat`, `add`, `sub`, `isLessThan`, `isGreaterThan`, `compareTo`,
//!   and `==` by value; `kubernetes.Quantity`;
//! - url (`url.rs`): `url`, `isURL`, `getScheme`, `getHost`, `getHostname`, `getPort`, `getEscapedPath`,
//!   `getQuery`, with Go's `net/url` parsing reimplemented (its `ParseRequestURI` to accept, its `Parse` for the
//!   parts); `kubernetes.URL`;
//! - ip (`ip.rs`): `ip`, `isIP`, `ip.isCanonical`, `family`, `isUnspecified`, `isLoopback`, `isLinkLocalMulticast`,
//!   `isLinkLocalUnicast`, `isGlobalUnicast`, `string(ip)`, with Go's `net/netip` parsing and its messages; `net.IP`;
//! - cidr (`cidr.rs`): `cidr`, `isCIDR`, `containsIP`, `containsCIDR` (as fixed in v1.33: any subnet inside), `ip`,
//!   `masked`, `prefixLength`, `string(cidr)`; `net.CIDR`;
//! - format (`format.rs`): `format.named`, the thirteen `format.<name>()` constants and `validate`, which yields
//!   `optional.none()` or the messages of upstream's validation functions; `kubernetes.NamedFormat`;
//! - semver (`semver.rs`): `semver` and `isSemver` (with the optional `normalize` argument, which upstream's
//!   environment enables along with the library), `major`, `minor`, `patch`, `isLessThan`, `isGreaterThan`,
//!   `compareTo`, `==`; `kubernetes.Semver`.
//!
//! This file registers them all ([`extension`]) and holds the plumbing several of them share: taking an overload's
//! arguments, making its result, the opaque values of the new types, and Go's `strconv.Quote` for messages; its
//! `test_support` module holds the environment and assertions of the libraries' tests.
//!
//! The values of the new types are the crate's opaque values (`cel::objects::Opaque`): a program returning one
//! yields a `Value::Opaque` whose `runtime_type_name()` is the upstream type name, which downcasts to the types of
//! this module, and binds back as a variable with `add_variable_from_value`.
//!
//! Not done, and why:
//! - type checking: the crate has no checker, so what upstream refuses when a rule is written (`isQuantity(1)`,
//!   `['a'].sum()`) fails here only when it runs, with a "no matching overload" error;
//! - cost estimation and limits, which the crate has no notion of;
//! - the libraries upstream has beyond these: `authz` (it needs an authorizer), and what came after v1.33
//!   (`jsonpatch`, `image`, lists' `includes`, quantity's `mul`, `div` and `divInt`);
//! - a quantity is exact within an `i128` mantissa (38 digits) and a base-10 exponent, where upstream's is
//!   unbounded: parsing a number of more than 38 significant digits, and a sum whose exact digits would not fit,
//!   fail with an error instead. `asApproximateFloat` may differ from upstream in the last bit for quantities that
//!   upstream keeps as an `inf.Dec`;
//! - regular expressions are the `regex` crate's, whose syntax is RE2's, but whose `\d`, `\w`, `\s` and `\b` are
//!   Unicode-aware where Go's are ASCII-only.

mod cidr;
mod format;
mod ip;
mod lists;
mod quantity;
mod regex;
mod semver;
mod url;

// Go's `%q`, shared with the API server's validation messages.
use crate::apiserver::validation::{go_quote, go_quote_bytes};
use std::sync::Arc;

use cel::common::types::{CelList, CelString, Type};
use cel::common::value::{CowVal, Val};
use cel::objects::{Opaque, Value};
use cel::{DeclarationError, Env, ExecutionError};

/// Registers every library of this module on `env`.
///
/// # Errors
///
/// Fails if `env` already declares one of their overloads (with the same id, or the same signature), as when the
/// extension is added twice.
pub fn extension(env: &mut Env) -> Result<(), DeclarationError> {
    lists::register_lists(env)?;
    regex::register_regex(env)?;
    quantity::register_quantity(env)?;
    url::register_urls(env)?;
    ip::register_ip(env)?;
    cidr::register_cidr(env)?;
    format::register_format(env)?;
    semver::register_semver(env)?;
    Ok(())
}

type Returned<'b, 'v> = Result<CowVal<'b, 'v>, ExecutionError>;

/// `args` as the `N` arguments (the receiver first) an overload was registered with.
fn take<'b, 'v, const N: usize>(args: Vec<CowVal<'b, 'v>>) -> Result<[CowVal<'b, 'v>; N], ExecutionError> {
    args.try_into().map_err(|args: Vec<_>| ExecutionError::invalid_argument_count(N, args.len()))
}

fn unexpected(value: &dyn Val, want: &str) -> ExecutionError {
    ExecutionError::UnexpectedType { got: value.get_type().name().to_owned(), want: want.to_owned() }
}

fn string_arg(value: &dyn Val) -> Result<&str, ExecutionError> {
    value.downcast_ref::<CelString<'_>>().map(|s| s.inner()).ok_or_else(|| unexpected(value, "string"))
}

/// The value of one of this module's types behind `value`. The crate keeps opaque values as an `Arc<dyn Opaque>`
/// it only hands out through `Value`, so this clones the (small) value out.
fn opaque_arg<T: Opaque + Clone>(value: &dyn Val, type_name: &str) -> Result<T, ExecutionError> {
    match Value::try_from(value) {
        Ok(Value::Opaque(opaque)) => opaque.downcast_ref::<T>().cloned().ok_or_else(|| unexpected(value, type_name)),
        _ => Err(unexpected(value, type_name)),
    }
}

/// `value` as a CEL value of its opaque type.
fn opaque_result<'b, 'v>(value: impl Opaque) -> Returned<'b, 'v> {
    let boxed: Box<dyn Val> = Value::Opaque(Arc::new(value)).try_into()?;
    Ok(CowVal::Owned(boxed))
}

fn owned<'b, 'v>(value: impl Val + 'static) -> Returned<'b, 'v> {
    Ok(CowVal::owned(value))
}

fn string_list(items: impl IntoIterator<Item = String>) -> CelList<'static> {
    items.into_iter().map(|item| Box::new(CelString::from(item)) as Box<dyn Val>).collect::<Vec<_>>().into()
}

/// The value of one hexadecimal digit (0 for anything else: callers check the digits first).
fn unhex(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => 0,
    }
}

fn opaque_type(name: &'static str) -> Type {
    Type::new_opaque_type(name)
}

#[cfg(test)]
mod test_support {
    //! The environment the libraries' tests evaluate in, and their assertions.

    use std::sync::{Arc, LazyLock};

    use cel::objects::Value;
    use cel::{Context, Env, ExecutionError};

    use super::extension;

    /// The environment kaasd evaluates rules in: the standard library, the crate's strings and lists extensions,
    /// and this one.
    pub(super) static ENVIRONMENT: LazyLock<Arc<Env>> = LazyLock::new(|| {
        let mut env = Env::stdlib();
        env.add_extension(cel::extensions::strings).expect("the strings extension loads");
        env.add_extension(cel::extensions::lists).expect("the lists extension loads");
        env.add_extension(extension).expect("the Kubernetes libraries load");
        Arc::new(env)
    });

    pub(super) fn eval(expression: &str) -> Result<Value, ExecutionError> {
        let program = ENVIRONMENT.compile(expression).unwrap_or_else(|error| panic!("{expression}: {error}"));
        program.execute(&Context::with_env(ENVIRONMENT.clone()))
    }

    pub(super) fn assert_value(expression: &str, expected: impl Into<Value>) {
        assert_eq!(eval(expression), Ok(expected.into()), "{expression}");
    }

    pub(super) fn assert_true(expression: &str) {
        assert_value(expression, true);
    }

    pub(super) fn assert_false(expression: &str) {
        assert_value(expression, false);
    }

    pub(super) fn error_message(expression: &str) -> String {
        match eval(expression) {
            Err(ExecutionError::FunctionError { message, .. }) => message,
            other => panic!("{expression}: expected a function error, got {other:?}"),
        }
    }

    pub(super) fn assert_error(expression: &str, message: &str) {
        assert_eq!(error_message(expression), message, "{expression}");
    }

    pub(super) fn assert_no_overload(expression: &str) {
        assert!(
            matches!(eval(expression), Err(ExecutionError::NoSuchOverload(_))),
            "{expression}: {:?}",
            eval(expression)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::quantity::{parse_quantity, Quantity};
    use super::test_support::{assert_value, eval, ENVIRONMENT};
    use super::*;
    use cel::Context;

    #[test]
    fn registering_twice_is_a_duplicate_overload() {
        let mut env = Env::stdlib();
        assert_eq!(env.add_extension(extension), Ok(()));
        assert!(matches!(env.add_extension(extension), Err(DeclarationError::DuplicateOverload { .. })));
    }

    #[test]
    fn list_functions_coexist_with_the_string_ones_of_the_same_name() {
        assert_value("'abcb'.indexOf('b')", 1);
        assert_value("'abcb'.lastIndexOf('b')", 3);
        assert_value("[1, 2, 2].indexOf(2)", 1);
        assert_value("[1, 2, 2].lastIndexOf(2)", 2);
        assert_value("['a', 'b'].join('-')", "a-b");
    }

    #[test]
    fn an_unknown_function_compiles_and_fails_when_it_runs() {
        let program = ENVIRONMENT.compile("noSuchFunction(1)").expect("the crate does not check names");
        assert_eq!(
            program.execute(&Context::with_env(ENVIRONMENT.clone())),
            Err(ExecutionError::undeclared_reference("noSuchFunction"))
        );
    }

    #[test]
    fn values_of_the_new_types_come_out_of_a_program_as_opaque_values_and_go_back_in() {
        let Ok(Value::Opaque(opaque)) = eval("quantity('1k')") else { panic!("an opaque value") };
        assert_eq!(opaque.runtime_type_name(), "kubernetes.Quantity");
        assert_eq!(opaque.downcast_ref::<Quantity>(), parse_quantity("1000").ok().as_ref());

        let mut context = Context::with_env(ENVIRONMENT.clone());
        context.add_variable_from_value("q", Value::Opaque(opaque));
        let program = ENVIRONMENT.compile("q.add(1) == quantity('1001') && type(q) == kubernetes.Quantity").unwrap();
        assert_eq!(program.execute(&context), Ok(Value::Bool(true)));

        for (expression, type_name) in [
            ("url('/a')", "kubernetes.URL"),
            ("ip('::1')", "net.IP"),
            ("cidr('::/0')", "net.CIDR"),
            ("format.uuid()", "kubernetes.NamedFormat"),
            ("semver('1.0.0')", "kubernetes.Semver"),
        ] {
            match eval(expression) {
                Ok(Value::Opaque(opaque)) => assert_eq!(opaque.runtime_type_name(), type_name, "{expression}"),
                other => panic!("{expression}: {other:?}"),
            }
        }
    }
}
