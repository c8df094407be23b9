//! `spec.successPolicy` of Indexed Jobs: the Job succeeds early once the succeeded indexes satisfy one rule.

use std::collections::BTreeSet;

use k8s_openapi::api::batch::v1::SuccessPolicy;

use super::indexes;

/// The message of the `SuccessCriteriaMet` condition when a rule matches (upstream's wording), or None.
pub fn matched(policy: Option<&SuccessPolicy>, completions: i32, succeeded: &BTreeSet<i32>) -> Option<String> {
    let policy = policy?;
    if succeeded.is_empty() {
        return None;
    }
    let position = policy.rules.iter().position(|rule| match (&rule.succeeded_indexes, rule.succeeded_count) {
        (Some(required), count) => {
            let required = indexes::parse(required, completions);
            let done = required.intersection(succeeded).count();
            // Without a count every named index must succeed; with one, that many of them.
            !required.is_empty() && count.map_or(done == required.len(), |count| done >= count.max(0) as usize)
        }
        (None, Some(count)) => succeeded.len() >= count.max(0) as usize,
        (None, None) => false,
    })?;
    Some(format!("Matched rules at index {position}"))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::batch::v1::SuccessPolicyRule;

    use super::*;

    fn rule(indexes: Option<&str>, count: Option<i32>) -> SuccessPolicyRule {
        SuccessPolicyRule { succeeded_indexes: indexes.map(str::to_string), succeeded_count: count }
    }

    fn set(indexes: &[i32]) -> BTreeSet<i32> {
        indexes.iter().copied().collect()
    }

    #[test]
    fn named_indexes_must_all_succeed_without_a_count() {
        let policy = SuccessPolicy { rules: vec![rule(Some("0-2"), None)] };
        assert_eq!(matched(Some(&policy), 10, &set(&[0, 1])), None);
        assert_eq!(matched(Some(&policy), 10, &set(&[0, 1, 2, 7])), Some("Matched rules at index 0".into()));
    }

    #[test]
    fn a_count_among_named_indexes_is_enough() {
        let policy = SuccessPolicy { rules: vec![rule(Some("0,2,4"), Some(2))] };
        assert_eq!(matched(Some(&policy), 5, &set(&[0, 1])), None, "index 1 is not one of the named");
        assert_eq!(matched(Some(&policy), 5, &set(&[0, 4])), Some("Matched rules at index 0".into()));
    }

    #[test]
    fn a_count_alone_counts_any_index_and_later_rules_are_tried() {
        let policy = SuccessPolicy { rules: vec![rule(Some("9"), None), rule(None, Some(3))] };
        assert_eq!(matched(Some(&policy), 10, &set(&[1, 5])), None);
        assert_eq!(matched(Some(&policy), 10, &set(&[1, 5, 6])), Some("Matched rules at index 1".into()));
    }

    #[test]
    fn nothing_matches_before_any_index_succeeded_or_without_a_policy() {
        let policy = SuccessPolicy { rules: vec![rule(None, Some(0))] };
        assert_eq!(matched(Some(&policy), 3, &set(&[])), None);
        assert_eq!(matched(None, 3, &set(&[0, 1, 2])), None);
    }
}
