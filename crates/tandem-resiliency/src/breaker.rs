//! Circuit breakers: stop calling a target that keeps failing, then try it again.
//!
//! The state machine is the one Dapr runs (sony/gobreaker):
//!
//! - **closed**: calls go through and are counted; the counts are cleared every
//!   `interval` (never when it is zero). When a call fails and the `trip` expression
//!   is true of the counts, the breaker opens.
//! - **open**: calls fail fast, without being made, for `timeout`; then it half-opens.
//! - **half-open**: `maxRequests` trial calls go through, others fail fast. A failed
//!   trial reopens the breaker; `maxRequests` consecutive successes close it.
//!
//! Every state change starts a new *generation* with fresh counts; a call that
//! finishes after its generation ended (say, a slow call that started before the
//! breaker opened) is not counted.

use std::time::Duration;

use parking_lot::{Mutex, MutexGuard};
use tandem_spec::{BreakerCounts, CircuitBreakerSpec};
use tokio::time::Instant;

use crate::human;

/// The state of a circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl std::fmt::Display for BreakerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
        })
    }
}

/// Why a breaker refused a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The breaker is open.
    Open {
        /// What opened it, e.g. `5 consecutive failures (trip: consecutiveFailures >= 5)`.
        because: String,
        /// How long it stays open (the policy's `timeout`).
        timeout: Duration,
        /// How much of that is left.
        remaining: Duration,
    },
    /// The breaker is half-open and its trial calls are all in flight.
    HalfOpenBusy { max_requests: u32 },
}

/// One circuit breaker: the state of one target under one circuit breaker policy.
#[derive(Debug)]
pub struct CircuitBreaker {
    /// The policy's name, for messages.
    name: String,
    /// What it protects (`app 'orders'`), for logs.
    target: String,
    spec: CircuitBreakerSpec,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    generation: u64,
    counts: BreakerCounts,
    /// When the current generation ends: a closed breaker clears its counts, an open
    /// one half-opens. `None`: never (closed with a zero interval, half-open).
    expiry: Option<Instant>,
    /// Why the breaker last opened.
    because: String,
}

/// Leave to make one call. Report how it went with [`Permit::succeeded`] or
/// [`Permit::failed`]; a permit dropped without a report (the caller gave up on the
/// call) gives its place back, so a half-open breaker is not stuck waiting for a
/// trial that will never finish.
pub(crate) struct Permit<'a> {
    breaker: &'a CircuitBreaker,
    generation: u64,
    reported: bool,
}

impl Permit<'_> {
    pub(crate) fn succeeded(mut self) {
        self.reported = true;
        self.breaker.record(self.generation, true);
    }

    pub(crate) fn failed(mut self) {
        self.reported = true;
        self.breaker.record(self.generation, false);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.reported {
            self.breaker.release(self.generation);
        }
    }
}

impl CircuitBreaker {
    /// A closed breaker for `target` under policy `name`.
    pub fn new(
        name: impl Into<String>,
        target: impl Into<String>,
        spec: CircuitBreakerSpec,
    ) -> Self {
        let now = Instant::now();
        let expiry = (!spec.interval.is_zero()).then(|| now + spec.interval);
        Self {
            name: name.into(),
            target: target.into(),
            spec,
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                generation: 0,
                counts: BreakerCounts::default(),
                expiry,
                because: String::new(),
            }),
        }
    }

    /// The policy's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The policy.
    pub fn spec(&self) -> &CircuitBreakerSpec {
        &self.spec
    }

    /// The state now (an open breaker whose timeout has passed reads half-open).
    pub fn state(&self) -> BreakerState {
        let mut inner = self.lock();
        self.advance(&mut inner, Instant::now());
        inner.state
    }

    /// The counts of the current generation.
    pub fn counts(&self) -> BreakerCounts {
        let mut inner = self.lock();
        self.advance(&mut inner, Instant::now());
        inner.counts
    }

    /// Asks to make a call.
    pub(crate) fn admit(&self) -> Result<Permit<'_>, Refusal> {
        let mut inner = self.lock();
        let now = Instant::now();
        self.advance(&mut inner, now);
        match inner.state {
            BreakerState::Open => {
                return Err(Refusal::Open {
                    because: inner.because.clone(),
                    timeout: self.spec.timeout,
                    remaining: inner.expiry.map_or(Duration::ZERO, |expiry| {
                        expiry.saturating_duration_since(now)
                    }),
                });
            }
            BreakerState::HalfOpen if inner.counts.requests >= self.spec.max_requests => {
                return Err(Refusal::HalfOpenBusy {
                    max_requests: self.spec.max_requests,
                });
            }
            _ => {}
        }
        inner.counts.requests = inner.counts.requests.saturating_add(1);
        Ok(Permit {
            breaker: self,
            generation: inner.generation,
            reported: false,
        })
    }

    fn record(&self, generation: u64, success: bool) {
        let mut guard = self.lock();
        let inner: &mut Inner = &mut guard;
        let now = Instant::now();
        self.advance(inner, now);
        if inner.generation != generation {
            return; // the call started in an earlier generation
        }
        let counts = &mut inner.counts;
        if success {
            counts.total_successes = counts.total_successes.saturating_add(1);
            counts.consecutive_successes = counts.consecutive_successes.saturating_add(1);
            counts.consecutive_failures = 0;
            if inner.state == BreakerState::HalfOpen
                && inner.counts.consecutive_successes >= self.spec.max_requests
            {
                self.change(inner, BreakerState::Closed, now);
            }
        } else {
            counts.total_failures = counts.total_failures.saturating_add(1);
            counts.consecutive_failures = counts.consecutive_failures.saturating_add(1);
            counts.consecutive_successes = 0;
            match inner.state {
                BreakerState::Closed if self.spec.trip.is_tripped_by(&inner.counts) => {
                    inner.because = format!(
                        "{} (trip: {})",
                        self.spec.trip.describe(&inner.counts),
                        self.spec.trip
                    );
                    self.change(inner, BreakerState::Open, now);
                }
                BreakerState::HalfOpen => {
                    inner.because = "a trial call failed while it was half-open".into();
                    self.change(inner, BreakerState::Open, now);
                }
                _ => {}
            }
        }
    }

    fn release(&self, generation: u64) {
        let mut inner = self.lock();
        if inner.generation == generation {
            inner.counts.requests = inner.counts.requests.saturating_sub(1);
        }
    }

    /// Applies what time alone changes: a closed breaker's counts clear every
    /// `interval`, an open breaker half-opens after `timeout`.
    fn advance(&self, inner: &mut Inner, now: Instant) {
        let expired = inner.expiry.is_some_and(|expiry| expiry <= now);
        match inner.state {
            BreakerState::Closed if expired => self.new_generation(inner, now),
            BreakerState::Open if expired => self.change(inner, BreakerState::HalfOpen, now),
            _ => {}
        }
    }

    fn change(&self, inner: &mut Inner, to: BreakerState, now: Instant) {
        if inner.state == to {
            return;
        }
        let from = inner.state;
        inner.state = to;
        self.new_generation(inner, now);
        match to {
            BreakerState::Open => tracing::warn!(
                "circuit breaker '{}' for {} opened after {}; calls fail fast for {}",
                self.name,
                self.target,
                inner.because,
                human(self.spec.timeout)
            ),
            _ => tracing::info!(
                "circuit breaker '{}' for {} changed from {from} to {to}",
                self.name,
                self.target
            ),
        }
    }

    fn new_generation(&self, inner: &mut Inner, now: Instant) {
        inner.generation += 1;
        inner.counts = BreakerCounts::default();
        inner.expiry = match inner.state {
            BreakerState::Closed => {
                (!self.spec.interval.is_zero()).then(|| now + self.spec.interval)
            }
            BreakerState::Open => Some(now + self.spec.timeout),
            BreakerState::HalfOpen => None,
        };
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // No poisoning: the state stays consistent across a panic elsewhere, as every
        // change is made under the lock in a few assignments.
        self.inner.lock()
    }
}
