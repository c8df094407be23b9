//! The lists library: `isSorted()`, `sum()`, `min()`, `max()`, `indexOf(x)` and `lastIndexOf(x)` on lists. They are
//! registered by hand with `list` receivers, as the crate's lists extension does, so they take any list and coexist
//! with the string functions of the same names; on a list of elements of a type upstream does not declare them for,
//! they fail when they run, with a "no matching overload" error naming the function.

use std::cmp::Ordering;

use cel::common::types::{CelBool, CelInt, Kind, DYN_TYPE, LIST_TYPE};
use cel::common::value::{CowVal, Val};
use cel::{DeclarationError, Env, ExecutionError};

use super::{owned, take, unexpected, Returned};

pub(super) fn register_lists(env: &mut Env) -> Result<(), DeclarationError> {
    // By hand, with `list` receivers, as the crate's lists extension does: these take any list, whatever it holds.
    env.add_member_overload("isSorted", "list_is_sorted_bool", LIST_TYPE, vec![], list_is_sorted)?;
    env.add_member_overload("sum", "list_sum", LIST_TYPE, vec![], list_sum)?;
    env.add_member_overload("min", "list_min", LIST_TYPE, vec![], list_min)?;
    env.add_member_overload("max", "list_max", LIST_TYPE, vec![], list_max)?;
    env.add_member_overload("indexOf", "list_a_index_of_int", LIST_TYPE, vec![DYN_TYPE], list_index_of)?;
    env.add_member_overload("lastIndexOf", "list_a_last_index_of_int", LIST_TYPE, vec![DYN_TYPE], list_last_index_of)?;
    Ok(())
}

/// The elements of `list`, or a "no matching overload" error naming `function` when they are not all of `allowed`
/// kinds: upstream declares these functions for lists of those types only.
fn list_elements<'b, 'v>(
    list: &'b (dyn Val + 'v),
    function: &str,
    allowed: &[Kind],
) -> Result<Vec<&'b (dyn Val + 'v)>, ExecutionError> {
    let no_overload =
        |element_type: &str| ExecutionError::no_such_member_overload(function, vec![format!("list({element_type})")]);
    let iterable = list.as_iterable().ok_or_else(|| no_overload("dyn"))?;
    let mut items = iterable.iter();
    let mut elements = Vec::new();
    while let Some(item) = items.next() {
        if !allowed.is_empty() && !allowed.contains(&item.get_type().kind()) {
            return Err(no_overload(item.get_type().name()));
        }
        elements.push(item);
    }
    Ok(elements)
}

const COMPARABLE_KINDS: &[Kind] =
    &[Kind::Int, Kind::UInt, Kind::Double, Kind::Boolean, Kind::Duration, Kind::Timestamp, Kind::String, Kind::Bytes];

const SUMMABLE_KINDS: &[Kind] = &[Kind::Int, Kind::UInt, Kind::Double, Kind::Duration];

fn compare(a: &dyn Val, b: &dyn Val) -> Result<Ordering, ExecutionError> {
    a.as_comparer().ok_or_else(|| unexpected(a, "a comparable type"))?.compare(b)
}

fn list_is_sorted<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Returned<'b, 'v> {
    let [list] = take(args)?;
    let elements = list_elements(&*list, "isSorted", COMPARABLE_KINDS)?;
    for pair in elements.windows(2) {
        if compare(pair[0], pair[1])? == Ordering::Greater {
            return owned(CelBool::from(false));
        }
    }
    owned(CelBool::from(true))
}

fn list_sum<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Returned<'b, 'v> {
    let [list] = take(args)?;
    let elements = list_elements(&*list, "sum", SUMMABLE_KINDS)?;
    let Some((first, rest)) = elements.split_first() else {
        // Upstream starts from the zero of the list's declared element type; without a type checker the element
        // type of an empty list is unknown, and `[].sum()` is `0` upstream too.
        return owned(CelInt::from(0));
    };
    let mut total: Box<dyn Val + 'v> = first.clone_as_boxed();
    for item in rest {
        let sum = total.as_adder().ok_or_else(|| unexpected(&*total, "a summable type"))?.add(*item)?.into_owned();
        total = sum;
    }
    Ok(CowVal::Owned(total))
}

fn list_min<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Returned<'b, 'v> {
    list_extreme(args, "min", Ordering::Greater)
}

fn list_max<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Returned<'b, 'v> {
    list_extreme(args, "max", Ordering::Less)
}

/// The element that no other beats: the current pick is replaced by an element when it compares as `replaced_when`
/// to it, so the first of equal elements wins, as upstream.
fn list_extreme<'b, 'v>(args: Vec<CowVal<'b, 'v>>, function: &str, replaced_when: Ordering) -> Returned<'b, 'v> {
    let [list] = take(args)?;
    let elements = list_elements(&*list, function, COMPARABLE_KINDS)?;
    let mut pick: Option<&(dyn Val + 'v)> = None;
    for item in elements {
        pick = match pick {
            Some(current) if compare(current, item)? != replaced_when => Some(current),
            _ => Some(item),
        };
    }
    let pick =
        pick.ok_or_else(|| ExecutionError::function_error(function, format!("{function} called on empty list")))?;
    Ok(CowVal::Owned(pick.clone_as_boxed()))
}

fn list_index_of<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Returned<'b, 'v> {
    let [list, wanted] = take(args)?;
    let elements = list_elements(&*list, "indexOf", &[])?;
    let index = elements.iter().position(|item| item.equals(&*wanted));
    owned(CelInt::from(index.map_or(-1, |i| i as i64)))
}

fn list_last_index_of<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Returned<'b, 'v> {
    let [list, wanted] = take(args)?;
    let elements = list_elements(&*list, "lastIndexOf", &[])?;
    let index = elements.iter().rposition(|item| item.equals(&*wanted));
    owned(CelInt::from(index.map_or(-1, |i| i as i64)))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{assert_error, assert_false, assert_no_overload, assert_true, assert_value, eval};
    use cel::objects::Value;
    use cel::ExecutionError;

    #[test]
    fn is_sorted() {
        assert_true("[1, 2, 3].isSorted()");
        assert_true("['a', 'b', 'b', 'c'].isSorted()");
        assert_false("[2.0, 1.0].isSorted()");
        assert_true("[1].isSorted()");
        assert_true("[].isSorted()");
        assert_true("[1u, 2u].isSorted()");
        assert_false("[true, false].isSorted()");
        assert_true("[duration('1s'), duration('1m')].isSorted()");
        assert_false("[timestamp('2024-01-02T00:00:00Z'), timestamp('2024-01-01T00:00:00Z')].isSorted()");
        assert_no_overload("[[1], [2]].isSorted()");
        assert!(eval("[1, 'a'].isSorted()").is_err());
    }

    #[test]
    fn sum() {
        assert_value("[1, 3].sum()", 4);
        assert_value("[1.0, 3.0].sum()", 4.0);
        assert_value("[1u, 3u].sum()", Value::UInt(4));
        assert_true("[duration('1m'), duration('1s')].sum() == duration('61s')");
        assert_value("[].sum()", 0);
        assert_value("[5].sum()", 5);
        assert_no_overload("['a', 'b'].sum()");
        assert!(matches!(eval("[9223372036854775807, 1].sum()"), Err(ExecutionError::Overflow(..))));
    }

    #[test]
    fn min_and_max() {
        assert_value("[1, 3].min()", 1);
        assert_value("[1, 3].max()", 3);
        assert_value("[3, 1, 2].min()", 1);
        assert_value("['b', 'a', 'c'].max()", "c");
        assert_value("[1].min()", 1);
        assert_value("([0] + []).min()", 0);
        assert_value("[1, 2.5].max()", 2.5);
        assert_true(
            "[timestamp('2024-01-02T00:00:00Z'), timestamp('2024-01-01T00:00:00Z')].min() \
                     == timestamp('2024-01-01T00:00:00Z')",
        );
        assert_error("[].min()", "min called on empty list");
        assert_error("[].max()", "max called on empty list");
        assert_no_overload("[{'a': 1}].max()");
    }

    #[test]
    fn index_of_and_last_index_of() {
        assert_value("[1, 2, 2, 3].indexOf(2)", 1);
        assert_value("['a', 'b', 'b', 'c'].lastIndexOf('b')", 2);
        assert_value("[1.0].indexOf(1.1)", -1);
        assert_value("[].indexOf('string')", -1);
        assert_value("[].lastIndexOf('string')", -1);
        assert_value("[[1], [2], [2]].indexOf([2])", 1);
        assert_value("[1, 2].lastIndexOf(1)", 0);
    }
}
