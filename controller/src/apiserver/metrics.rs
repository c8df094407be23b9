//! Histograms for `/metrics`, in Prometheus' text format: lock-free counters per bucket, so recording costs a few
//! atomic adds on the request path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in seconds: fine below a millisecond, where the admission budget lies.
const BUCKETS: [f64; 12] = [0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5];

/// Durations counted in fixed buckets, with their sum and count.
#[derive(Default)]
pub struct DurationHistogram {
    /// One counter per bucket (not cumulative), and the last one for everything slower than the last bound.
    counts: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl DurationHistogram {
    pub fn record(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let bucket = BUCKETS.iter().position(|bound| seconds <= *bound).unwrap_or(BUCKETS.len());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// The histogram as Prometheus text, with cumulative `le` buckets.
    pub fn render(&self, name: &str, help: &str) -> String {
        let mut text = format!("# HELP {name} {help}\n# TYPE {name} histogram\n");
        let mut cumulative = 0;
        for (index, count) in self.counts.iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            let bound = BUCKETS.get(index).map_or_else(|| "+Inf".to_string(), |bound| bound.to_string());
            text.push_str(&format!("{name}_bucket{{le=\"{bound}\"}} {cumulative}\n"));
        }
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        text.push_str(&format!("{name}_sum {sum}\n{name}_count {cumulative}\n"));
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_land_in_cumulative_buckets() {
        let histogram = DurationHistogram::default();
        histogram.record(Duration::from_micros(30));
        histogram.record(Duration::from_micros(700));
        histogram.record(Duration::from_secs(10));
        let text = histogram.render("x_seconds", "test");
        assert!(text.contains("x_seconds_bucket{le=\"0.00005\"} 1\n"), "{text}");
        assert!(text.contains("x_seconds_bucket{le=\"0.001\"} 2\n"), "{text}");
        assert!(text.contains("x_seconds_bucket{le=\"2.5\"} 2\n"), "{text}");
        assert!(text.contains("x_seconds_bucket{le=\"+Inf\"} 3\n"), "{text}");
        assert!(text.contains("x_seconds_count 3\n"), "{text}");
    }
}
