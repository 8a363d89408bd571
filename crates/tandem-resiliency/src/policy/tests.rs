use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use tandem_spec::{BackoffPolicy, RetryMatching, TripExpression};
use tokio::time::Instant;

use super::*;
use crate::BreakerState;

/// An error the tests' operations return.
#[derive(Debug, PartialEq, Eq)]
struct Broken(&'static str);

impl fmt::Display for Broken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

fn constant(duration_ms: u64, max_retries: Option<u32>) -> RetrySpec {
    RetrySpec {
        policy: BackoffPolicy::Constant,
        duration: Duration::from_millis(duration_ms),
        max_retries,
        ..RetrySpec::DEFAULT
    }
}

fn retry_all(_: &Broken) -> Verdict {
    Verdict::Retryable
}

/// Counts calls; fails the first `failures` of them.
fn flaky(
    calls: &Arc<AtomicU32>,
    failures: u32,
) -> impl FnMut() -> std::future::Ready<Result<u32, Broken>> {
    let calls = calls.clone();
    move || {
        let call = calls.fetch_add(1, Ordering::SeqCst) + 1;
        std::future::ready(if call <= failures {
            Err(Broken("connection refused"))
        } else {
            Ok(call)
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_retry_that_fails_twice_then_succeeds() {
    let policy =
        Policy::for_target("app 'orders'").with_retry("important", constant(1000, Some(3)));
    let calls = Arc::new(AtomicU32::new(0));
    let start = Instant::now();
    let answer = policy.run(flaky(&calls, 2), retry_all).await.unwrap();
    assert_eq!(answer, 3, "the third call answers");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(2),
        "two waits of `duration`"
    );
}

#[tokio::test(start_paused = true)]
async fn exhausted_retries_name_the_policy() {
    let policy = Policy::none().with_retry("important", constant(100, Some(2)));
    let calls = Arc::new(AtomicU32::new(0));
    let failure = policy
        .run(flaky(&calls, u32::MAX), retry_all)
        .await
        .unwrap_err();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "the first call and 2 retries"
    );
    match &failure {
        Failure::Exhausted {
            error,
            retry,
            attempts,
        } => {
            assert_eq!(error, &Broken("connection refused"));
            assert_eq!(retry, "important");
            assert_eq!(*attempts, 3);
        }
        other => panic!("expected Exhausted, got {other:?}"),
    }
    assert_eq!(
        failure.to_string(),
        "retry policy 'important' gave up after 3 attempts: connection refused"
    );
    assert_eq!(failure.into_error(), Some(Broken("connection refused")));
}

#[tokio::test(start_paused = true)]
async fn permanent_errors_are_not_retried() {
    let policy = Policy::none().with_retry("forever", constant(100, None));
    let calls = Arc::new(AtomicU32::new(0));
    let failure = policy
        .run(flaky(&calls, u32::MAX), |_| Verdict::Permanent)
        .await
        .unwrap_err();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(matches!(failure, Failure::Failed { attempts: 1, .. }));
    assert_eq!(failure.to_string(), "connection refused");
}

#[tokio::test(start_paused = true)]
async fn without_a_retry_policy_a_failure_is_returned_at_once() {
    let calls = Arc::new(AtomicU32::new(0));
    let failure = Policy::none()
        .run(flaky(&calls, 1), retry_all)
        .await
        .unwrap_err();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(matches!(failure, Failure::Failed { attempts: 1, .. }));
}

#[tokio::test(start_paused = true)]
async fn exponential_backoff_is_capped_by_max_interval() {
    let spec = RetrySpec {
        policy: BackoffPolicy::Exponential,
        initial_interval: Duration::from_secs(1),
        max_interval: Duration::from_secs(4),
        max_retries: Some(8),
        ..RetrySpec::DEFAULT
    };
    let policy = Policy::none().with_retry("growing", spec);
    let starts = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let record = starts.clone();
    let failure = policy
        .run(
            move || {
                record.lock().push(Instant::now());
                std::future::ready(Err::<(), _>(Broken("busy")))
            },
            retry_all,
        )
        .await
        .unwrap_err();
    assert_eq!(failure.attempts(), 9);
    let starts = starts.lock();
    let waits: Vec<Duration> = starts.windows(2).map(|pair| pair[1] - pair[0]).collect();
    // 1s ±50%, then growing ×1.5, never past maxInterval.
    assert!(
        waits[0] >= Duration::from_millis(500) && waits[0] <= Duration::from_millis(1500),
        "{waits:?}"
    );
    assert!(
        waits.iter().all(|wait| *wait <= Duration::from_secs(4)),
        "{waits:?}"
    );
    // From the 5th retry the un-jittered interval is at the cap (1 × 1.5⁴ > 4), so
    // the waits are between half the cap and the cap.
    assert!(
        waits[4..]
            .iter()
            .all(|wait| *wait >= Duration::from_secs(2)),
        "{waits:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_timeout_that_fires() {
    let policy = Policy::none().with_timeout("general", Duration::from_secs(1));
    let start = Instant::now();
    let failure = policy
        .run(
            || async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                Ok::<_, Broken>(())
            },
            retry_all,
        )
        .await
        .unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert!(failure.is_timeout());
    assert_eq!(
        failure.to_string(),
        "timed out after 1s (timeout policy 'general')"
    );
}

#[tokio::test(start_paused = true)]
async fn the_timeout_applies_to_each_attempt_and_timeouts_are_retried() {
    let policy = Policy::none()
        .with_timeout("general", Duration::from_secs(1))
        .with_retry("twice", constant(500, Some(2)));
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let start = Instant::now();
    let failure = policy
        .run(
            move || {
                counter.fetch_add(1, Ordering::SeqCst);
                async {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    Ok::<_, Broken>(())
                }
            },
            retry_all,
        )
        .await
        .unwrap_err();
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    // Three attempts of 1s each and two waits of 500ms.
    assert_eq!(start.elapsed(), Duration::from_secs(4));
    assert_eq!(
        failure.to_string(),
        "timed out after 1s (timeout policy 'general'); retry policy 'twice' gave up after 3 attempts"
    );

    // A slow first attempt, a fast second: the retry recovers.
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let answer = policy
        .run(
            move || {
                let call = counter.fetch_add(1, Ordering::SeqCst) + 1;
                async move {
                    if call == 1 {
                        tokio::time::sleep(Duration::from_secs(10)).await;
                    }
                    Ok::<_, Broken>(call)
                }
            },
            retry_all,
        )
        .await
        .unwrap();
    assert_eq!(answer, 2);
}

fn breaker_spec(trip: &str, timeout_s: u64) -> CircuitBreakerSpec {
    CircuitBreakerSpec {
        max_requests: 1,
        interval: Duration::ZERO,
        timeout: Duration::from_secs(timeout_s),
        trip: TripExpression::parse(trip).unwrap(),
    }
}

#[tokio::test(start_paused = true)]
async fn a_breaker_opens_fails_fast_half_opens_and_closes() {
    let policy = Policy::for_target("app 'orders'")
        .with_circuit_breaker("cb-orders", breaker_spec("consecutiveFailures >= 5", 30));
    let breaker_of = |policy: &Policy| policy.circuit_breaker().unwrap().state();
    let calls = Arc::new(AtomicU32::new(0));
    let mut failing = flaky(&calls, u32::MAX);

    for _ in 0..4 {
        policy.run(&mut failing, retry_all).await.unwrap_err();
    }
    assert_eq!(
        breaker_of(&policy),
        BreakerState::Closed,
        "4 failures do not trip `>= 5`"
    );
    let failure = policy.run(&mut failing, retry_all).await.unwrap_err();
    assert!(
        matches!(failure, Failure::Failed { .. }),
        "the tripping call returns its own error"
    );
    assert_eq!(breaker_of(&policy), BreakerState::Open);
    assert_eq!(calls.load(Ordering::SeqCst), 5);

    // Open: calls fail fast, without being made; clones share the breaker.
    tokio::time::advance(Duration::from_secs(12)).await;
    let clone = policy.clone();
    let failure = clone.run(&mut failing, retry_all).await.unwrap_err();
    assert!(failure.is_circuit_open());
    assert_eq!(calls.load(Ordering::SeqCst), 5, "no call while open");
    assert_eq!(
        failure.to_string(),
        "circuit breaker 'cb-orders' is open: 5 consecutive failures (trip: consecutiveFailures >= 5); \
         calls fail fast until 30s after it opened (18s from now)"
    );

    // After the timeout: half-open, one trial call; its success closes the breaker.
    tokio::time::advance(Duration::from_secs(18)).await;
    assert_eq!(breaker_of(&policy), BreakerState::HalfOpen);
    let answer = policy
        .run(|| std::future::ready(Ok::<_, Broken>("hello")), retry_all)
        .await
        .unwrap();
    assert_eq!(answer, "hello");
    assert_eq!(breaker_of(&policy), BreakerState::Closed);
    assert_eq!(
        policy.circuit_breaker().unwrap().counts().requests,
        0,
        "fresh counts"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_trial_reopens_the_breaker_and_other_calls_wait_for_the_trial() {
    let policy =
        Policy::none().with_circuit_breaker("cb", breaker_spec("consecutiveFailures > 0", 10));
    let calls = Arc::new(AtomicU32::new(0));
    policy
        .run(flaky(&calls, u32::MAX), retry_all)
        .await
        .unwrap_err();
    assert_eq!(
        policy.circuit_breaker().unwrap().state(),
        BreakerState::Open
    );

    tokio::time::advance(Duration::from_secs(10)).await;
    // A slow trial call is in flight: others fail fast.
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let mut released = Some(released);
    let trial_policy = policy.clone();
    let trial = tokio::spawn(async move {
        trial_policy
            .run(
                move || {
                    let released = released.take();
                    async move {
                        if let Some(released) = released {
                            let _ = released.await;
                        }
                        Err::<(), _>(Broken("still down"))
                    }
                },
                retry_all,
            )
            .await
    });
    tokio::task::yield_now().await;
    let refused = policy.run(flaky(&calls, 0), retry_all).await.unwrap_err();
    assert_eq!(
        refused.to_string(),
        "circuit breaker 'cb' is half-open and its 1 trial call is already in flight; \
         other calls fail fast until it comes back"
    );
    release.send(()).unwrap();
    trial.await.unwrap().unwrap_err();
    assert_eq!(
        policy.circuit_breaker().unwrap().state(),
        BreakerState::Open,
        "the trial failed"
    );
    let failure = policy.run(flaky(&calls, 0), retry_all).await.unwrap_err();
    assert!(
        failure.to_string().contains("a trial call failed while it was half-open; calls fail fast until 10s after it opened (10s from now)"),
        "{failure}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_trial_gives_its_place_back() {
    let policy =
        Policy::none().with_circuit_breaker("cb", breaker_spec("consecutiveFailures > 0", 10));
    let calls = Arc::new(AtomicU32::new(0));
    policy
        .run(flaky(&calls, u32::MAX), retry_all)
        .await
        .unwrap_err();
    tokio::time::advance(Duration::from_secs(10)).await;

    // The caller gives up on the trial call (e.g. the client went away).
    let never = policy.run(std::future::pending::<Result<(), Broken>>, retry_all);
    assert!(
        tokio::time::timeout(Duration::from_millis(10), never)
            .await
            .is_err()
    );

    let answer = policy.run(flaky(&calls, 0), retry_all).await;
    assert!(answer.is_ok(), "the next call is the trial: {answer:?}");
    assert_eq!(
        policy.circuit_breaker().unwrap().state(),
        BreakerState::Closed
    );
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_stops_the_retries() {
    let policy = Policy::none()
        .with_retry("forever", constant(100, None))
        .with_circuit_breaker("cb", breaker_spec("consecutiveFailures >= 3", 60));
    let calls = Arc::new(AtomicU32::new(0));
    let failure = policy
        .run(flaky(&calls, u32::MAX), retry_all)
        .await
        .unwrap_err();
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert!(failure.is_circuit_open());
    assert_eq!(failure.attempts(), 3);
}

#[tokio::test(start_paused = true)]
async fn the_interval_clears_a_closed_breakers_counts() {
    let spec = CircuitBreakerSpec {
        interval: Duration::from_secs(8),
        ..breaker_spec("consecutiveFailures > 2", 60)
    };
    let policy = Policy::none().with_circuit_breaker("cb", spec);
    let calls = Arc::new(AtomicU32::new(0));
    for _ in 0..2 {
        policy
            .run(flaky(&calls, u32::MAX), retry_all)
            .await
            .unwrap_err();
    }
    tokio::time::advance(Duration::from_secs(8)).await;
    assert_eq!(
        policy
            .circuit_breaker()
            .unwrap()
            .counts()
            .consecutive_failures,
        0
    );
    for _ in 0..2 {
        policy
            .run(flaky(&calls, u32::MAX), retry_all)
            .await
            .unwrap_err();
    }
    assert_eq!(
        policy.circuit_breaker().unwrap().state(),
        BreakerState::Closed
    );
}

#[test]
fn status_codes_are_retried_by_dapr_rules() {
    assert!(
        !Policy::none().retries_status(503),
        "no retry policy, no retries"
    );
    assert!(!Policy::none().retries_grpc_code(14));

    let any = Policy::none().with_retry("any", constant(1, Some(1)));
    assert!(any.retries_status(503) && any.retries_status(404) && any.retries_status(100));
    assert!(
        !any.retries_status(200) && !any.retries_status(302),
        "successes are not retried"
    );
    assert!(any.retries_grpc_code(14) && any.retries_grpc_code(5));
    assert!(!any.retries_grpc_code(0), "OK is not retried");

    let matching = RetryMatching {
        http_status_codes: vec![429..=429, 500..=599],
        grpc_status_codes: vec![14..=14],
    };
    let listed = Policy::none().with_retry(
        "listed",
        RetrySpec {
            matching,
            ..constant(1, Some(1))
        },
    );
    assert!(listed.retries_status(429) && listed.retries_status(503));
    assert!(!listed.retries_status(404));
    assert!(listed.retries_grpc_code(14));
    assert!(!listed.retries_grpc_code(5) && !listed.retries_grpc_code(-1));

    assert!(listed.has_retries());
    assert!(
        !Policy::none()
            .with_retry("never", constant(1, Some(0)))
            .has_retries()
    );
}

#[test]
fn policies_and_their_runs_can_cross_threads() {
    fn send<T: Send>(_: &T) {}
    fn shared<T: Send + Sync>() {}
    shared::<Policy>();
    shared::<crate::Resiliencies>();
    let policy = Policy::none();
    let run = policy.run(|| async { Ok::<_, Broken>(()) }, retry_all);
    send(&run);
}
