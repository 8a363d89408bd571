use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use super::*;
use crate::{BreakerState, Verdict};

fn parse(text: &str) -> Resiliency {
    let value: yaml_serde::Value = yaml_serde::from_str(text).unwrap();
    tandem_spec::parse_resiliency(Path::new("resiliency.yaml"), value).unwrap()
}

const NAMED: &str = r#"
kind: Resiliency
metadata:
  name: named
spec:
  policies:
    timeouts:
      general: 5s
    retries:
      important:
        policy: constant
        duration: 1s
        maxRetries: 3
    circuitBreakers:
      simpleCB:
        timeout: 30s
        trip: consecutiveFailures >= 2
  targets:
    apps:
      appB:
        timeout: general
        retry: important
        circuitBreaker: simpleCB
      appT:
        timeout: general
    components:
      statestore:
        outbound:
          retry: important
          circuitBreaker: simpleCB
        inbound:
          timeout: general
"#;

/// Dapr's default policy example
/// (<https://docs.dapr.io/operations/resiliency/policies/default-policies/>).
const DEFAULTS: &str = r#"
kind: Resiliency
metadata:
  name: defaults
spec:
  policies:
    timeouts:
      DefaultTimeoutPolicy: 20s
      DefaultComponentOutboundTimeoutPolicy: 3s
    retries:
      DefaultRetryPolicy:
        policy: constant
        duration: 1s
        maxRetries: 3
      DefaultAppRetryPolicy:
        policy: constant
        duration: 100ms
        maxRetries: 5
      DefaultComponentInboundRetryPolicy:
        policy: constant
        duration: 5s
        maxRetries: 5
      DefaultStatestoreComponentOutboundRetryPolicy:
        policy: exponential
        maxInterval: 60s
        maxRetries: -1
      fastRetries:
        policy: constant
        duration: 10ms
        maxRetries: 3
    circuitBreakers:
      DefaultComponentCircuitBreakerPolicy:
        trip: consecutiveFailures > 3
  targets:
    apps:
      appA:
        retry: fastRetries
    components:
      actorstore:
        outbound:
          retry: fastRetries
"#;

fn names(policy: &Policy) -> (Option<&str>, Option<&str>, Option<&str>) {
    (
        policy.timeout().map(|(name, _)| name),
        policy.retry().map(|(name, _)| name),
        policy
            .circuit_breaker()
            .map(super::super::breaker::CircuitBreaker::name),
    )
}

#[test]
fn named_targets_get_exactly_what_they_name() {
    let resiliencies = Resiliencies::new(&[parse(NAMED)], "checkout");
    let app_b = resiliencies.for_app("appB");
    assert_eq!(
        names(&app_b),
        (Some("general"), Some("important"), Some("simpleCB"))
    );
    assert_eq!(app_b.timeout().unwrap().1, Duration::from_secs(5));
    assert_eq!(app_b.target(), "app 'appB'");
    assert_eq!(
        names(&resiliencies.for_app("appT")),
        (Some("general"), None, None)
    );

    let outbound = resiliencies.for_component_outbound("statestore", "state.redis");
    assert_eq!(
        names(&outbound),
        (None, Some("important"), Some("simpleCB"))
    );
    assert_eq!(outbound.target(), "component 'statestore' (outbound)");
    let inbound = resiliencies.for_component_inbound("statestore", "state.redis");
    assert_eq!(names(&inbound), (Some("general"), None, None));

    // Without default policies, anything else runs without a policy.
    assert!(resiliencies.for_app("appZ").is_none());
    assert!(
        resiliencies
            .for_component_outbound("pubsub", "pubsub.redis")
            .is_none()
    );
}

#[test]
fn other_targets_get_default_policies_most_specific_first() {
    let resiliencies = Resiliencies::new(&[parse(DEFAULTS)], "checkout");
    // The table of Dapr's default policies page.
    assert_eq!(names(&resiliencies.for_app("appA")).1, Some("fastRetries"));
    assert_eq!(
        names(&resiliencies.for_app("appC")).1,
        Some("DefaultAppRetryPolicy")
    );
    assert_eq!(
        names(&resiliencies.for_component_outbound("pubsub", "pubsub.redis")).1,
        Some("DefaultRetryPolicy")
    );
    assert_eq!(
        names(&resiliencies.for_component_inbound("pubsub", "pubsub.redis")).1,
        Some("DefaultComponentInboundRetryPolicy")
    );
    assert_eq!(
        names(&resiliencies.for_component_outbound("statestore", "state.redis")).1,
        Some("DefaultStatestoreComponentOutboundRetryPolicy")
    );
    assert_eq!(
        names(&resiliencies.for_component_outbound("actorstore", "state.redis")).1,
        Some("fastRetries")
    );

    // Each kind is looked up on its own.
    let state = resiliencies.for_component_outbound("statestore", "state.redis");
    assert_eq!(
        names(&state),
        (
            Some("DefaultComponentOutboundTimeoutPolicy"),
            Some("DefaultStatestoreComponentOutboundRetryPolicy"),
            Some("DefaultComponentCircuitBreakerPolicy")
        )
    );
    assert_eq!(
        names(&resiliencies.for_app("appC")),
        (
            Some("DefaultTimeoutPolicy"),
            Some("DefaultAppRetryPolicy"),
            None
        )
    );
    // A named target gets no defaults, not even for the kinds it does not name.
    assert_eq!(
        names(&resiliencies.for_app("appA")),
        (None, Some("fastRetries"), None)
    );
}

#[test]
fn resources_scoped_to_other_apps_are_not_used() {
    let scoped = NAMED.replace("kind: Resiliency", "kind: Resiliency\nscopes: [orders]");
    let resources = [parse(&scoped)];
    assert!(
        Resiliencies::new(&resources, "checkout")
            .for_app("appB")
            .is_none()
    );
    assert!(
        !Resiliencies::new(&resources, "orders")
            .for_app("appB")
            .is_none()
    );
}

#[test]
fn built_in_service_retries_apply_unless_the_app_is_a_named_target() {
    let resiliencies = Resiliencies::new(&[parse(NAMED)], "checkout");
    assert!(resiliencies.built_in_service_retries("appB").is_none());
    let built_in = resiliencies.built_in_service_retries("appZ").unwrap();
    let (name, retry) = built_in.retry().unwrap();
    assert_eq!(name, "DaprBuiltInServiceRetries");
    assert_eq!(retry.max_retries, Some(3));
    assert_eq!(retry.duration, Duration::from_secs(1));

    // An override may retry more, but not less than 3 times.
    let more = NAMED.replace(
        "    retries:\n",
        "    retries:\n      DaprBuiltInServiceRetries:\n        duration: 5s\n        maxRetries: 10\n",
    );
    let resiliencies = Resiliencies::new(&[parse(&more)], "checkout");
    let built_in = resiliencies.built_in_service_retries("appZ").unwrap();
    assert_eq!(built_in.retry().unwrap().1.max_retries, Some(10));
    let less = more.replace("maxRetries: 10", "maxRetries: 1");
    let resiliencies = Resiliencies::new(&[parse(&less)], "checkout");
    let built_in = resiliencies.built_in_service_retries("appZ").unwrap();
    assert_eq!(built_in.retry().unwrap().1.max_retries, Some(3));
    assert_eq!(built_in.retry().unwrap().1.duration, Duration::from_secs(5));
}

#[test]
fn later_resources_override_policies_and_targets_of_the_same_name() {
    let later = NAMED
        .replace("name: named", "name: later")
        .replace("general: 5s", "general: 9s");
    let resiliencies = Resiliencies::new(&[parse(NAMED), parse(&later)], "checkout");
    assert_eq!(
        resiliencies.for_app("appB").timeout().unwrap().1,
        Duration::from_secs(9)
    );
}

#[tokio::test(start_paused = true)]
async fn each_target_has_its_own_breaker_shared_by_its_policies() {
    let resiliencies = Resiliencies::new(&[parse(NAMED)], "checkout");
    let calls = Arc::new(AtomicU32::new(0));
    let fail = || {
        calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Err::<(), &str>("down"))
    };
    for _ in 0..2 {
        // The app's policy retries 3 times, 1s apart; the breaker trips at 2
        // consecutive failures and stops the retries.
        let failure = resiliencies
            .for_app("appB")
            .run(fail, |_| Verdict::Retryable)
            .await
            .unwrap_err();
        assert!(failure.is_circuit_open(), "{failure}");
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "the second run is refused at once"
    );
    let app_b = resiliencies.for_app("appB");
    assert_eq!(app_b.circuit_breaker().unwrap().state(), BreakerState::Open);
    // Same policy, another target: its own, closed breaker.
    let state = resiliencies.for_component_outbound("statestore", "state.redis");
    assert_eq!(
        state.circuit_breaker().unwrap().state(),
        BreakerState::Closed
    );
}

#[test]
fn actor_targets_get_their_policies_and_breakers_by_scope() {
    let resource = parse(
        r#"
kind: Resiliency
metadata:
  name: actors
spec:
  policies:
    timeouts:
      quick: 2s
      DefaultActorTimeoutPolicy: 9s
    retries:
      again:
        policy: constant
        duration: 10ms
        maxRetries: 2
    circuitBreakers:
      perType:
        trip: consecutiveFailures >= 2
  targets:
    actors:
      Counter:
        timeout: quick
        retry: again
        circuitBreaker: perType
        circuitBreakerScope: type
"#,
    );
    let resiliencies = Resiliencies::new(&[resource], "app");
    let one = resiliencies.for_actor("Counter", "1");
    assert_eq!(names(&one), (Some("quick"), Some("again"), Some("perType")));
    assert_eq!(one.target(), "actor type 'Counter'");
    // Scoped by type: every id of the type shares one breaker.
    let two = resiliencies.for_actor("Counter", "2");
    let (Some(first), Some(second)) = (one.circuit_breaker(), two.circuit_breaker()) else {
        panic!("no breakers")
    };
    assert!(std::ptr::eq(first, second));
    // Another type gets the default actor policies.
    let other = resiliencies.for_actor("Other", "1");
    assert_eq!(
        names(&other),
        (Some("DefaultActorTimeoutPolicy"), None, None)
    );
    assert_eq!(other.target(), "actor 'Other/1'");
}
