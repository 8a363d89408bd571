//! The waits between retries: the policies' backoff, and a plain capped exponential
//! wait for the components' own retry loops.

use std::time::Duration;

use tandem_spec::{BackoffPolicy, RetrySpec};

/// How much an exponential wait grows per retry, and how much it is randomized
/// (±50%): the values Dapr's backoff (cenkalti/backoff) uses.
const MULTIPLIER: f64 = 1.5;
const RANDOMIZATION: f64 = 0.5;

/// The retries of one operation: counts them and says how long to wait before each.
#[derive(Debug)]
pub(crate) struct Backoff<'a> {
    spec: &'a RetrySpec,
    retries: u32,
    /// The exponential wait before randomization.
    interval: Duration,
}

impl<'a> Backoff<'a> {
    pub(crate) fn new(spec: &'a RetrySpec) -> Self {
        Self {
            spec,
            retries: 0,
            interval: spec.initial_interval,
        }
    }

    /// The wait before the next retry, or `None` when `maxRetries` are used up.
    /// `random` is uniform in `[0, 1)`: the jitter of an exponential wait.
    pub(crate) fn next_delay(&mut self, random: f64) -> Option<Duration> {
        if self.spec.max_retries.is_some_and(|max| self.retries >= max) {
            return None;
        }
        self.retries += 1;
        Some(match self.spec.policy {
            BackoffPolicy::Constant => self.spec.duration,
            BackoffPolicy::Exponential => {
                // Dapr's documented rule: grow ×1.5 with ±50% jitter, never past
                // maxInterval (the cap applies after the jitter).
                let factor = 1.0 - RANDOMIZATION + 2.0 * RANDOMIZATION * random;
                let delay = scale(self.interval, factor).min(self.spec.max_interval);
                self.interval = scale(self.interval, MULTIPLIER).min(self.spec.max_interval);
                delay
            }
        })
    }
}

fn scale(duration: Duration, factor: f64) -> Duration {
    Duration::try_from_secs_f64(duration.as_secs_f64() * factor).unwrap_or(Duration::MAX)
}

/// A number uniform in `[0, 1)`, for jitter.
pub(crate) fn random_fraction() -> f64 {
    rand::random::<f64>()
}

/// The wait before the `attempt`-th retry (from 1) of a plain capped exponential
/// backoff: `first`, doubling with each attempt, never more than `max`. Without
/// jitter, so that tests and logs can tell how long a retry waited. It never
/// overflows, whatever the attempt.
pub fn exponential_wait(attempt: u32, first: Duration, max: Duration) -> Duration {
    let doublings = attempt.saturating_sub(1).min(31);
    first.saturating_mul(1u32 << doublings).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exponential(initial: u64, max: u64, retries: Option<u32>) -> RetrySpec {
        RetrySpec {
            policy: BackoffPolicy::Exponential,
            initial_interval: Duration::from_millis(initial),
            max_interval: Duration::from_millis(max),
            max_retries: retries,
            ..RetrySpec::DEFAULT
        }
    }

    #[test]
    fn exponential_waits_grow_and_are_capped_by_max_interval() {
        let spec = exponential(1000, 3000, Some(6));
        let mut backoff = Backoff::new(&spec);
        // No jitter (random = 0.5): 1s, 1.5s, 2.25s, then the 3s cap.
        let waits: Vec<u128> = std::iter::from_fn(|| backoff.next_delay(0.5))
            .map(|wait| wait.as_millis())
            .collect();
        assert_eq!(waits, [1000, 1500, 2250, 3000, 3000, 3000]);

        // Most jitter upwards: still never past maxInterval.
        let mut backoff = Backoff::new(&spec);
        let waits: Vec<u128> = std::iter::from_fn(|| backoff.next_delay(0.999_999))
            .map(|wait| wait.as_millis())
            .collect();
        assert_eq!(waits, [1499, 2249, 3000, 3000, 3000, 3000]);

        // Most jitter downwards: half the interval.
        let mut backoff = Backoff::new(&spec);
        assert_eq!(backoff.next_delay(0.0), Some(Duration::from_millis(500)));
        assert_eq!(backoff.next_delay(0.0), Some(Duration::from_millis(750)));
    }

    #[test]
    fn constant_waits_are_the_duration_and_retries_are_counted() {
        let spec = RetrySpec {
            duration: Duration::from_millis(200),
            max_retries: Some(2),
            ..RetrySpec::DEFAULT
        };
        let mut backoff = Backoff::new(&spec);
        assert_eq!(backoff.next_delay(0.9), Some(Duration::from_millis(200)));
        assert_eq!(backoff.next_delay(0.1), Some(Duration::from_millis(200)));
        assert_eq!(backoff.next_delay(0.5), None);
        assert_eq!(backoff.retries, 2);

        let never = RetrySpec {
            max_retries: Some(0),
            ..RetrySpec::DEFAULT
        };
        assert_eq!(Backoff::new(&never).next_delay(0.5), None);

        let forever = RetrySpec::DEFAULT;
        let mut backoff = Backoff::new(&forever);
        assert!((0..10_000).all(|_| backoff.next_delay(0.5) == Some(Duration::from_secs(5))));
    }

    #[test]
    fn exponential_waits_double_up_to_the_cap() {
        let (first, max) = (Duration::from_millis(100), Duration::from_secs(5));
        let waits: Vec<u128> = (0..9)
            .map(|attempt| exponential_wait(attempt, first, max).as_millis())
            .collect();
        assert_eq!(waits, [100, 100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(exponential_wait(u32::MAX, first, max), max);
        assert_eq!(
            exponential_wait(40, Duration::from_secs(u64::MAX), Duration::MAX),
            Duration::MAX
        );
    }

    #[test]
    fn random_fractions_are_in_range_and_vary() {
        let fractions: Vec<f64> = (0..100).map(|_| random_fraction()).collect();
        assert!(fractions.iter().all(|f| (0.0..1.0).contains(f)));
        assert!(fractions.windows(2).any(|pair| pair[0] != pair[1]));
    }
}
