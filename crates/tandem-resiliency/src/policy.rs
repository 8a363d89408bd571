//! A [`Policy`]: the timeout, retry and circuit breaker one target's calls run under.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tandem_spec::{CircuitBreakerSpec, RetrySpec};

use crate::backoff::{Backoff, random_fraction};
use crate::breaker::{CircuitBreaker, Refusal};
use crate::human;

/// The timeout, retry and circuit breaker policies of one target, any of them absent.
///
/// Cheap to clone; clones share the circuit breaker, so every call to a target counts
/// towards the same breaker.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// What the calls go to (`app 'orders'`), for logs.
    target: Arc<str>,
    timeout: Option<(Arc<str>, Duration)>,
    retry: Option<Arc<(String, RetrySpec)>>,
    breaker: Option<Arc<CircuitBreaker>>,
}

/// What the caller's classifier says of a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Worth trying again, if the retry policy allows.
    Retryable,
    /// Trying again will not help (e.g. a status code the retry's `matching` does not
    /// list): the error is returned at once.
    Permanent,
}

impl Verdict {
    /// `Retryable` when `retry` is true.
    pub fn retry_if(retry: bool) -> Self {
        if retry {
            Verdict::Retryable
        } else {
            Verdict::Permanent
        }
    }
}

/// Why [`Policy::run`] returned no value.
#[derive(Debug)]
pub enum Failure<E> {
    /// The call failed and was not retried: no retry policy, or the classifier called
    /// the error permanent.
    Failed { error: E, attempts: u32 },
    /// The call failed every time the retry policy allowed.
    Exhausted {
        error: E,
        /// The retry policy's name.
        retry: String,
        attempts: u32,
    },
    /// The last attempt took longer than the timeout policy allows (and no retries
    /// were left).
    TimedOut {
        /// The timeout policy's name.
        timeout: String,
        after: Duration,
        attempts: u32,
        /// The retry policy that gave up, when there was one.
        retry: Option<String>,
    },
    /// The circuit breaker refused the call (possibly a retry) without making it.
    CircuitOpen {
        /// The circuit breaker policy's name.
        breaker: String,
        refusal: Refusal,
        /// Attempts made before the refusal.
        attempts: u32,
    },
}

impl<E> Failure<E> {
    /// The operation's own error, when it returned one.
    pub fn error(&self) -> Option<&E> {
        match self {
            Failure::Failed { error, .. } | Failure::Exhausted { error, .. } => Some(error),
            _ => None,
        }
    }

    /// The operation's own error, when it returned one.
    pub fn into_error(self) -> Option<E> {
        match self {
            Failure::Failed { error, .. } | Failure::Exhausted { error, .. } => Some(error),
            _ => None,
        }
    }

    /// Calls made.
    pub fn attempts(&self) -> u32 {
        match self {
            Failure::Failed { attempts, .. }
            | Failure::Exhausted { attempts, .. }
            | Failure::TimedOut { attempts, .. }
            | Failure::CircuitOpen { attempts, .. } => *attempts,
        }
    }

    pub fn is_timeout(&self) -> bool {
        matches!(self, Failure::TimedOut { .. })
    }

    pub fn is_circuit_open(&self) -> bool {
        matches!(self, Failure::CircuitOpen { .. })
    }
}

fn attempts(count: u32) -> String {
    if count == 1 {
        "1 attempt".into()
    } else {
        format!("{count} attempts")
    }
}

impl<E: fmt::Display> fmt::Display for Failure<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Failed { error, .. } => write!(f, "{error}"),
            Failure::Exhausted {
                error,
                retry,
                attempts: count,
            } => write!(
                f,
                "retry policy '{retry}' gave up after {}: {error}",
                attempts(*count)
            ),
            Failure::TimedOut {
                timeout,
                after,
                attempts: count,
                retry,
            } => {
                write!(
                    f,
                    "timed out after {} (timeout policy '{timeout}')",
                    human(*after)
                )?;
                if let Some(retry) = retry {
                    write!(
                        f,
                        "; retry policy '{retry}' gave up after {}",
                        attempts(*count)
                    )?;
                }
                Ok(())
            }
            Failure::CircuitOpen {
                breaker, refusal, ..
            } => match refusal {
                Refusal::Open {
                    because,
                    timeout,
                    remaining,
                } => write!(
                    f,
                    "circuit breaker '{breaker}' is open: {because}; calls fail fast until {} after it opened ({} from now)",
                    human(*timeout),
                    human(*remaining)
                ),
                Refusal::HalfOpenBusy { max_requests } => write!(
                    f,
                    "circuit breaker '{breaker}' is half-open and its {max_requests} trial call{} already in flight; other calls fail fast until {} back",
                    if *max_requests == 1 { " is" } else { "s are" },
                    if *max_requests == 1 {
                        "it comes"
                    } else {
                        "they come"
                    }
                ),
            },
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for Failure<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            // `Failed` displays as its error, so its source is the error's.
            Failure::Failed { error, .. } => error.source(),
            Failure::Exhausted { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// How one attempt ended.
enum Attempt<T, E> {
    Done(Result<T, E>),
    TimedOut,
}

impl Policy {
    /// No timeout, no retries, no circuit breaker: the call is made once.
    pub fn none() -> Self {
        Self::default()
    }

    /// An empty policy for `target` (`app 'orders'`), the name logs use.
    pub fn for_target(target: impl Into<String>) -> Self {
        Self {
            target: target.into().into(),
            ..Self::default()
        }
    }

    /// Adds timeout policy `name`: each attempt may take at most `timeout`.
    pub fn with_timeout(mut self, name: impl Into<String>, timeout: Duration) -> Self {
        self.timeout = Some((name.into().into(), timeout));
        self
    }

    /// Adds retry policy `name`.
    pub fn with_retry(mut self, name: impl Into<String>, retry: RetrySpec) -> Self {
        self.retry = Some(Arc::new((name.into(), retry)));
        self
    }

    /// Adds circuit breaker policy `name`, with a new (closed) breaker that this
    /// policy and its clones share.
    pub fn with_circuit_breaker(self, name: impl Into<String>, spec: CircuitBreakerSpec) -> Self {
        let breaker = CircuitBreaker::new(name, self.target.to_string(), spec);
        self.with_breaker(Arc::new(breaker))
    }

    /// Uses an existing breaker (shared with other policies of the same target).
    pub fn with_breaker(mut self, breaker: Arc<CircuitBreaker>) -> Self {
        self.breaker = Some(breaker);
        self
    }

    /// Whether there is nothing to apply.
    pub fn is_none(&self) -> bool {
        self.timeout.is_none() && self.retry.is_none() && self.breaker.is_none()
    }

    /// What the calls go to, as logs name it.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The timeout policy: its name and duration.
    pub fn timeout(&self) -> Option<(&str, Duration)> {
        self.timeout
            .as_ref()
            .map(|(name, timeout)| (&**name, *timeout))
    }

    /// The retry policy: its name and settings.
    pub fn retry(&self) -> Option<(&str, &RetrySpec)> {
        self.retry
            .as_deref()
            .map(|(name, spec)| (name.as_str(), spec))
    }

    /// The circuit breaker.
    pub fn circuit_breaker(&self) -> Option<&CircuitBreaker> {
        self.breaker.as_deref()
    }

    /// Whether a failed call may be made again: a caller that streams a request body
    /// must keep a copy of it to replay (Dapr's rule: with retries the body is
    /// buffered).
    pub fn has_retries(&self) -> bool {
        self.retry()
            .is_some_and(|(_, spec)| spec.max_retries != Some(0))
    }

    /// Whether a call answered with HTTP `http_status` should be retried. 200-399 are
    /// successes and never retried (Dapr's service invocation counts `< 200` and
    /// `> 399` as failures); a failure is retried when the retry policy's
    /// `httpStatusCodes` lists it or is empty. Without a retry policy nothing is.
    pub fn retries_status(&self, http_status: u16) -> bool {
        let failed = !(200..=399).contains(&http_status);
        failed
            && self
                .retry()
                .is_some_and(|(_, spec)| spec.matching.matches_http(http_status))
    }

    /// Whether a call that failed with gRPC status `code` should be retried: never for
    /// `OK` (0), and otherwise when the retry policy's `gRPCStatusCodes` lists it or is
    /// empty. Without a retry policy nothing is retried.
    pub fn retries_grpc_code(&self, code: i32) -> bool {
        code != 0
            && u16::try_from(code).is_ok_and(|code| {
                self.retry()
                    .is_some_and(|(_, spec)| spec.matching.matches_grpc(code))
            })
    }

    /// Runs `op` under this policy.
    ///
    /// Each attempt first asks the circuit breaker (open: fail fast without calling
    /// `op`), then runs under the timeout (Dapr applies it to each attempt, and a
    /// timed-out attempt is dropped, cancelling it). A failure counts against the
    /// breaker; it is retried after the retry policy's wait when `classify` calls it
    /// retryable and the policy has retries left. Timeouts are retryable. `Ok` is
    /// success: a caller that must retry some answers (an HTTP 503) returns them as
    /// its `E` and gets them back in the [`Failure`].
    pub async fn run<T, E, F, Fut>(
        &self,
        mut op: F,
        classify: impl Fn(&E) -> Verdict,
    ) -> Result<T, Failure<E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut backoff = self.retry.as_deref().map(|(_, spec)| Backoff::new(spec));
        let mut attempts: u32 = 0;
        loop {
            let permit = match &self.breaker {
                None => None,
                Some(breaker) => match breaker.admit() {
                    Ok(permit) => Some(permit),
                    Err(refusal) => {
                        return Err(Failure::CircuitOpen {
                            breaker: breaker.name().to_owned(),
                            refusal,
                            attempts,
                        });
                    }
                },
            };
            attempts += 1;
            let outcome = match &self.timeout {
                None => Attempt::Done(op().await),
                Some((_, limit)) => match tokio::time::timeout(*limit, op()).await {
                    Ok(result) => Attempt::Done(result),
                    Err(_) => Attempt::TimedOut,
                },
            };
            let succeeded = matches!(outcome, Attempt::Done(Ok(_)));
            if let Some(permit) = permit {
                if succeeded {
                    permit.succeeded();
                } else {
                    permit.failed();
                }
            }
            let error = match outcome {
                Attempt::Done(Ok(value)) => {
                    if attempts > 1 {
                        tracing::info!("{}: recovered on attempt {attempts}", self.describe());
                    }
                    return Ok(value);
                }
                Attempt::Done(Err(error)) => {
                    if classify(&error) == Verdict::Permanent {
                        return Err(Failure::Failed { error, attempts });
                    }
                    Some(error)
                }
                Attempt::TimedOut => None,
            };
            // A retryable failure: wait and go again, if the retry policy allows.
            let delay = backoff
                .as_mut()
                .and_then(|backoff| backoff.next_delay(random_fraction()));
            let Some(delay) = delay else {
                let retry = self.retry.as_deref().map(|(name, _)| name.clone());
                return Err(match (error, retry) {
                    (Some(error), Some(retry)) => Failure::Exhausted {
                        error,
                        retry,
                        attempts,
                    },
                    (Some(error), None) => Failure::Failed { error, attempts },
                    (None, retry) => {
                        let (name, after) = self.timeout.clone().unwrap_or_default();
                        Failure::TimedOut {
                            timeout: name.to_string(),
                            after,
                            attempts,
                            retry,
                        }
                    }
                });
            };
            let what = if error.is_some() {
                "failed"
            } else {
                "timed out"
            };
            if attempts == 1 {
                // Like Dapr: one line when a call starts retrying, one when it recovers.
                tracing::info!(
                    "{}: attempt 1 {what}; retrying in {}",
                    self.describe(),
                    human(delay)
                );
            } else {
                tracing::debug!(
                    "{}: attempt {attempts} {what}; retrying in {}",
                    self.describe(),
                    human(delay)
                );
            }
            tokio::time::sleep(delay).await;
        }
    }

    /// `app 'orders' (retry policy 'important')`, for logs.
    fn describe(&self) -> String {
        let target = if self.target.is_empty() {
            "call"
        } else {
            &self.target
        };
        match self.retry() {
            Some((name, _)) => format!("{target} (retry policy '{name}')"),
            None => target.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests;
