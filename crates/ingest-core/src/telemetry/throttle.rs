//! One log line per distinct message per interval, with how often it repeated meanwhile.
//!
//! A Kafka client pointed at a wrong address reports the same failure dozens of times a second,
//! differing only in numbers (`after 3ms`, `1 identical error(s) suppressed`): logged as is, the
//! one line that matters scrolls away. Messages are keyed with their digits removed; the first
//! of a key is logged at once, the next ones only once the interval has passed, carrying the
//! count of those not logged.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Keys remembered at most; past it the table starts over (a flood of distinct messages then
/// logs a little more, never unboundedly many lines nor memory).
const MAX_KEYS: usize = 256;

/// A log throttle. Cheap when idle; one short lock per message.
#[derive(Debug)]
pub struct LogThrottle {
    interval: Duration,
    seen: Mutex<HashMap<String, (Instant, u64)>>,
}

impl LogThrottle {
    /// A throttle letting each distinct message through once per `interval`.
    pub fn new(interval: Duration) -> Self {
        Self { interval, seen: Mutex::new(HashMap::new()) }
    }

    /// `Some(repeated)` when `message` is to be logged now (`repeated`: how many of it were not
    /// logged since the last time); `None` when it is counted and dropped.
    pub fn admit(&self, message: &str, now: Instant) -> Option<u64> {
        // librdkafka appends how long it took and how many it already folded together:
        // `(after 0ms in state CONNECT, 1 identical error(s) suppressed)`. Not part of the error.
        let head = message.split(" (after ").next().unwrap_or(message);
        let key: String = head.chars().filter(|c| !c.is_ascii_digit()).collect();
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.len() >= MAX_KEYS && !seen.contains_key(&key) {
            seen.clear();
        }
        match seen.get_mut(&key) {
            Some((last, skipped)) if now.duration_since(*last) < self.interval => {
                *skipped += 1;
                None
            }
            Some((last, skipped)) => {
                *last = now;
                Some(std::mem::take(skipped))
            }
            None => {
                seen.insert(key, (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_distinct_message_per_interval_with_the_repeat_count() {
        let t = LogThrottle::new(Duration::from_secs(30));
        let t0 = Instant::now();
        let msg =
            |ms: u32| format!("wrong:9092/bootstrap: Failed to resolve 'wrong:9092' (after {ms}ms in state CONNECT)");
        assert_eq!(t.admit(&msg(3), t0), Some(0), "the first is logged");
        // 25 a second for 29 s: all counted, none logged.
        let mut logged = 0;
        for i in 1..(29 * 25) {
            let at = t0 + Duration::from_millis(40 * i);
            logged += usize::from(t.admit(&msg(u32::try_from(i).unwrap()), at).is_some());
        }
        assert_eq!(logged, 0);
        assert_eq!(t.admit(&msg(7), t0 + Duration::from_secs(30)), Some(29 * 25 - 1), "then one line with the count");
        assert_eq!(t.admit("another error", t0 + Duration::from_secs(30)), Some(0), "a distinct message is logged");
        let folded = "b/bootstrap: Connect failed: Connection refused (after 0ms in state CONNECT, 1 identical error(s) suppressed)";
        assert_eq!(
            t.admit("b/bootstrap: Connect failed: Connection refused (after 2ms in state CONNECT)", t0),
            Some(0)
        );
        assert_eq!(t.admit(folded, t0), None, "librdkafka's own suffix does not make it another error");
    }
}
