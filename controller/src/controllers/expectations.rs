//! Expectations, as client-go's ControllerExpectations: after a controller creates or deletes pods, its cache
//! shows them only once their watch events arrive. Until then it must not act on the stale picture (it would
//! create the same pods twice). A controller records how many creations and deletions it expects and skips
//! managing pods until the watch has shown them all, or until five minutes pass (a lost event must not wedge it).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::queue::Key;

const EXPIRY: Duration = Duration::from_secs(300);

#[derive(Default)]
pub struct Expectations {
    pending: Mutex<HashMap<Key, (i64, i64, Instant)>>,
}

impl Expectations {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, (i64, i64, Instant)>> {
        self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn expect(&self, key: &str, creations: i64, deletions: i64) {
        self.lock().insert(key.to_string(), (creations, deletions, Instant::now()));
    }

    pub fn creation_observed(&self, key: &str) {
        if let Some((creations, _, _)) = self.lock().get_mut(key) {
            *creations -= 1;
        }
    }

    pub fn deletion_observed(&self, key: &str) {
        if let Some((_, deletions, _)) = self.lock().get_mut(key) {
            *deletions -= 1;
        }
    }

    pub fn satisfied(&self, key: &str) -> bool {
        match self.lock().get(key) {
            None => true,
            Some((creations, deletions, since)) => (*creations <= 0 && *deletions <= 0) || since.elapsed() > EXPIRY,
        }
    }

    pub fn forget(&self, key: &str) {
        self.lock().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn satisfied_once_every_expected_event_was_seen() {
        let expectations = Expectations::default();
        assert!(expectations.satisfied("default/web"));
        expectations.expect("default/web", 2, 1);
        expectations.creation_observed("default/web");
        expectations.deletion_observed("default/web");
        assert!(!expectations.satisfied("default/web"));
        expectations.creation_observed("default/web");
        assert!(expectations.satisfied("default/web"));
    }
}
