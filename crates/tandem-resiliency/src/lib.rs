//! Dapr's resiliency policies, applied: timeouts, retries and circuit breakers.
//!
//! [`Resiliencies`] reads an app's `kind: Resiliency` resources (parsed by
//! `tandem-spec`) and answers, for each target — an app called through service
//! invocation, a component called by the sidecar (outbound) or calling into the app
//! through the sidecar (inbound) — the [`Policy`] its calls run under: the policies
//! the target names, else Dapr's default policies, else none.
//!
//! [`Policy::run`] runs one operation under a policy:
//!
//! ```text
//! for each attempt:
//!     circuit breaker open?        → Failure::CircuitOpen, without calling
//!     op() under the timeout       → Ok: return it
//!     failure (error or timeout)   → counted by the breaker;
//!         permanent (the caller's classifier says so) → Failure::Failed
//!         retries left             → wait (constant or exponential backoff), again
//!         none left                → Failure::Exhausted / Failure::TimedOut
//! ```
//!
//! Circuit breakers keep their state per target for as long as the [`Resiliencies`]
//! lives; a [`Policy`] is cheap to clone and its clones share the breaker.
#![forbid(unsafe_code)]

mod backoff;
mod breaker;
mod policy;
mod resiliencies;

use std::time::Duration;

pub use backoff::exponential_wait;
pub use breaker::{BreakerState, CircuitBreaker, Refusal};
pub use policy::{Failure, Policy, Verdict};
pub use resiliencies::{BUILT_IN_SERVICE_RETRIES, Direction, Resiliencies};

/// `1m30s`, `500ms`, `2.5s`: a duration the way resource files write them.
pub(crate) fn human(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis < 1000 {
        return if millis == 0 && !duration.is_zero() {
            format!("{}µs", duration.as_micros())
        } else {
            format!("{millis}ms")
        };
    }
    let (hours, minutes) = (millis / 3_600_000, millis / 60_000 % 60);
    let (seconds, rest) = (millis / 1000 % 60, millis % 1000);
    let mut text = String::new();
    if hours > 0 {
        text += &format!("{hours}h");
    }
    if minutes > 0 {
        text += &format!("{minutes}m");
    }
    if seconds > 0 || rest > 0 {
        text += &format!("{seconds}");
        if rest > 0 {
            text += format!(".{rest:03}").trim_end_matches('0');
        }
        text += "s";
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_resource_files() {
        assert_eq!(human(Duration::from_millis(500)), "500ms");
        assert_eq!(human(Duration::from_secs(30)), "30s");
        assert_eq!(human(Duration::from_millis(2500)), "2.5s");
        assert_eq!(human(Duration::from_secs(90)), "1m30s");
        assert_eq!(human(Duration::from_secs(3600)), "1h");
        assert_eq!(human(Duration::ZERO), "0ms");
        assert_eq!(human(Duration::from_micros(20)), "20µs");
    }
}
