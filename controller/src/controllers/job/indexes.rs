//! Completion indexes of Indexed Jobs: the interval strings of `status.completedIndexes`, `status.failedIndexes`
//! and `successPolicy.rules[].succeededIndexes` ("0-2,4"), and the index and failure count each pod carries.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Pod;

/// Annotation and label holding a pod's completion index.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// Annotation holding how many pods of the same index failed before this one (with `backoffLimitPerIndex`).
pub const INDEX_FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-failure-count";

/// The indexes below `completions` that an interval string names. Parts that do not parse are skipped, as upstream
/// skips them: the string is either written by this controller or validated by the API server.
pub fn parse(intervals: &str, completions: i32) -> BTreeSet<i32> {
    let mut indexes = BTreeSet::new();
    for part in intervals.split(',').map(str::trim).filter(|part| !part.is_empty()) {
        let (first, last) = match part.split_once('-') {
            Some((first, last)) => (first.parse::<i32>(), last.parse::<i32>()),
            None => (part.parse::<i32>(), part.parse::<i32>()),
        };
        let (Ok(first), Ok(last)) = (first, last) else { continue };
        if first < 0 || last < first {
            continue;
        }
        indexes.extend(first..=last.min(completions - 1));
    }
    indexes
}

/// Upstream's compressed form: runs of three or more as "first-last", a run of two as "a,b" ("0-2,4,5,7").
pub fn format(indexes: &BTreeSet<i32>) -> String {
    let mut runs: Vec<(i32, i32)> = Vec::new();
    for &index in indexes {
        match runs.last_mut() {
            Some((_, last)) if *last + 1 == index => *last = index,
            _ => runs.push((index, index)),
        }
    }
    let parts: Vec<String> = runs
        .into_iter()
        .map(|(first, last)| match last - first {
            0 => first.to_string(),
            1 => format!("{first},{last}"),
            _ => format!("{first}-{last}"),
        })
        .collect();
    parts.join(",")
}

/// The pod's completion index, if it has a valid one below `completions`.
pub fn of_pod(pod: &Pod, completions: i32) -> Option<i32> {
    let value = pod.metadata.annotations.as_ref()?.get(COMPLETION_INDEX)?;
    value.parse::<i32>().ok().filter(|index| (0..completions).contains(index))
}

/// How many pods of the pod's index failed before it (0 when not recorded).
pub fn failure_count(pod: &Pod) -> i32 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|annotations| annotations.get(INDEX_FAILURE_COUNT))
        .and_then(|count| count.parse().ok())
        .unwrap_or(0)
}

/// The lowest `count` indexes below `completions` that are neither finished (succeeded or failed) nor running.
pub fn to_start(completions: i32, finished: &BTreeSet<i32>, running: &BTreeSet<i32>, count: usize) -> Vec<i32> {
    (0..completions).filter(|index| !finished.contains(index) && !running.contains(index)).take(count).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn set(indexes: &[i32]) -> BTreeSet<i32> {
        indexes.iter().copied().collect()
    }

    fn pod_with(annotations: &[(&str, &str)]) -> Pod {
        let annotations: BTreeMap<String, String> =
            annotations.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect();
        Pod { metadata: ObjectMeta { annotations: Some(annotations), ..Default::default() }, ..Default::default() }
    }

    #[test]
    fn intervals_are_written_as_upstream_writes_them() {
        assert_eq!(format(&set(&[])), "");
        assert_eq!(format(&set(&[3])), "3");
        assert_eq!(format(&set(&[0, 1])), "0,1");
        assert_eq!(format(&set(&[0, 1, 2, 4])), "0-2,4");
        assert_eq!(format(&set(&[0, 1, 2, 4, 5, 7, 9, 10, 11, 12])), "0-2,4,5,7,9-12");
    }

    #[test]
    fn intervals_parse_back_below_completions() {
        assert_eq!(parse("0-2,4", 10), set(&[0, 1, 2, 4]));
        assert_eq!(parse("0,1", 10), set(&[0, 1]));
        assert_eq!(parse("", 10), set(&[]));
        assert_eq!(parse("1-3,8-20", 10), set(&[1, 2, 3, 8, 9]), "indexes past completions are dropped");
        assert_eq!(parse("x,2,5-3,-1", 10), set(&[2]), "what does not parse is skipped");
        for indexes in [set(&[0, 1, 2, 4]), set(&[1, 3, 5, 6, 7])] {
            assert_eq!(parse(&format(&indexes), 10), indexes);
        }
    }

    #[test]
    fn a_pod_index_counts_only_when_valid() {
        assert_eq!(of_pod(&pod_with(&[(COMPLETION_INDEX, "2")]), 3), Some(2));
        assert_eq!(of_pod(&pod_with(&[(COMPLETION_INDEX, "3")]), 3), None);
        assert_eq!(of_pod(&pod_with(&[(COMPLETION_INDEX, "-1")]), 3), None);
        assert_eq!(of_pod(&pod_with(&[(COMPLETION_INDEX, "one")]), 3), None);
        assert_eq!(of_pod(&Pod::default(), 3), None);
    }

    #[test]
    fn failure_counts_default_to_zero() {
        assert_eq!(failure_count(&pod_with(&[(INDEX_FAILURE_COUNT, "2")])), 2);
        assert_eq!(failure_count(&Pod::default()), 0);
    }

    #[test]
    fn lowest_free_indexes_start_first() {
        assert_eq!(to_start(5, &set(&[0]), &set(&[2]), 2), vec![1, 3]);
        assert_eq!(to_start(3, &set(&[0, 1]), &set(&[2]), 2), Vec::<i32>::new());
        assert_eq!(to_start(i32::MAX, &set(&[]), &set(&[]), 3), vec![0, 1, 2], "stops after what it needs");
    }
}
