use std::path::Path;
use std::time::Duration;

use super::*;

/// Dapr's "complete example policy", plus status code matching and an exponential
/// retry with every field.
const FULL: &str = r#"
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: myresiliency
  namespace: default
scopes:
  - app1
  - app2
spec:
  policies:
    timeouts:
      general: 5s
      important: 60s
      largeResponse: 10000
    retries:
      pubsubRetry:
        policy: constant
        duration: 5s
        maxRetries: 10
      retryForever:
        policy: exponential
        maxInterval: 15s
        maxRetries: -1
      important:
        policy: Constant
        duration: 5s
        maxRetries: 30
      someOperation:
        policy: exponential
        initialInterval: 100ms
        maxInterval: 15s
      retry5xxOnly:
        policy: constant
        duration: 5s
        maxRetries: 3
        matching:
          httpStatusCodes: "429,500-599"
          gRPCStatusCodes: "1-4,8-11,13,14"
    circuitBreakers:
      simpleCB:
        maxRequests: 1
        timeout: 30s
        trip: consecutiveFailures >= 5
      pubsubCB:
        maxRequests: 1
        interval: 8s
        timeout: 45s
        trip: consecutiveFailures > 8
      defaults: {}
  targets:
    apps:
      appB:
        timeout: general
        retry: important
        circuitBreaker: simpleCB
    actors:
      myActorType:
        timeout: general
        retry: important
        circuitBreaker: simpleCB
        circuitBreakerScope: both
        circuitBreakerCacheSize: 5000
    components:
      statestore1:
        outbound:
          timeout: general
          retry: retryForever
          circuitBreaker: simpleCB
      pubsub2:
        outbound:
          retry: pubsubRetry
          circuitBreaker: pubsubCB
        inbound:
          timeout: general
          retry: important
          circuitBreaker: pubsubCB
"#;

/// Parses the first document of `text` the way `load` does.
fn parse(text: &str) -> Result<Resiliency, ResourceError> {
    let file = Path::new("resiliency.yaml");
    from_node(file, &crate::yaml::documents(file, text)?[0])
}

/// The full example with one line replaced, e.g. to break a field.
fn full_with(old: &str, new: &str) -> String {
    assert!(FULL.contains(old), "the example has no `{old}`");
    FULL.replacen(old, new, 1)
}

fn error(text: &str) -> ResourceError {
    parse(text).expect_err("the resource should be refused")
}

#[test]
fn the_full_example_parses() {
    let resiliency = parse(FULL).unwrap();
    assert_eq!(resiliency.name, "myresiliency");
    assert_eq!(resiliency.namespace.as_deref(), Some("default"));
    assert_eq!(resiliency.scopes, ["app1", "app2"]);
    assert_eq!(
        resiliency.file.as_deref(),
        Some(Path::new("resiliency.yaml"))
    );
    assert!(resiliency.is_in_scope("app2"));
    assert!(!resiliency.is_in_scope("app3"));

    let policies = &resiliency.policies;
    assert_eq!(policies.timeouts["general"], Duration::from_secs(5));
    assert_eq!(policies.timeouts["important"], Duration::from_secs(60));
    // A bare number is milliseconds, as in Dapr.
    assert_eq!(policies.timeouts["largeResponse"], Duration::from_secs(10));

    let pubsub_retry = &policies.retries["pubsubRetry"];
    assert_eq!(pubsub_retry.policy, BackoffPolicy::Constant);
    assert_eq!(pubsub_retry.duration, Duration::from_secs(5));
    assert_eq!(pubsub_retry.max_retries, Some(10));
    assert!(
        pubsub_retry.matching.matches_http(404),
        "no list retries every code"
    );

    let forever = &policies.retries["retryForever"];
    assert_eq!(forever.policy, BackoffPolicy::Exponential);
    assert_eq!(forever.max_interval, Duration::from_secs(15));
    assert_eq!(forever.initial_interval, Duration::from_millis(500));
    assert_eq!(forever.max_retries, None);

    assert_eq!(
        policies.retries["important"].policy,
        BackoffPolicy::Constant
    );
    let some_operation = &policies.retries["someOperation"];
    assert_eq!(some_operation.initial_interval, Duration::from_millis(100));
    assert_eq!(
        some_operation.max_retries, None,
        "maxRetries defaults to -1"
    );

    let matching = &policies.retries["retry5xxOnly"].matching;
    assert_eq!(matching.http_status_codes, [429..=429, 500..=599]);
    assert_eq!(
        matching.grpc_status_codes,
        [1..=4, 8..=11, 13..=13, 14..=14]
    );
    assert!(matching.matches_http(503));
    assert!(!matching.matches_http(404));
    assert!(matching.matches_grpc(14));
    assert!(!matching.matches_grpc(5));

    let simple = &policies.circuit_breakers["simpleCB"];
    assert_eq!(simple.max_requests, 1);
    assert_eq!(simple.interval, Duration::ZERO);
    assert_eq!(simple.timeout, Duration::from_secs(30));
    assert_eq!(simple.trip.as_str(), "consecutiveFailures >= 5");
    assert_eq!(
        policies.circuit_breakers["pubsubCB"].interval,
        Duration::from_secs(8)
    );
    assert_eq!(
        policies.circuit_breakers["defaults"],
        CircuitBreakerSpec::default(),
        "an empty breaker takes Dapr's defaults"
    );

    let targets = &resiliency.targets;
    assert_eq!(
        targets.apps["appB"],
        TargetPolicies {
            timeout: Some("general".into()),
            retry: Some("important".into()),
            circuit_breaker: Some("simpleCB".into()),
            cache: None,
        }
    );
    let pubsub2 = &targets.components["pubsub2"];
    assert_eq!(pubsub2.outbound.retry.as_deref(), Some("pubsubRetry"));
    assert_eq!(pubsub2.outbound.timeout, None);
    assert_eq!(pubsub2.inbound.timeout.as_deref(), Some("general"));
    assert_eq!(
        targets.components["statestore1"].inbound,
        TargetPolicies::default()
    );
    let actor = &targets.actors["myActorType"];
    assert_eq!(actor.circuit_breaker_scope, Some(ActorBreakerScope::Both));
    assert_eq!(actor.circuit_breaker_cache_size, Some(5000));
}

#[test]
fn a_target_naming_an_undefined_policy_is_refused() {
    let error = error(&full_with(
        "        retry: important\n        circuitBreaker: simpleCB\n    actors",
        "        retry: importnt\n        circuitBreaker: simpleCB\n    actors",
    ));
    assert_eq!(error.field.as_deref(), Some("spec.targets.apps.appB.retry"));
    assert_eq!(error.resource.as_deref(), Some("Resiliency 'myresiliency'"));
    assert!(
        error
            .message
            .contains("retry policy 'importnt' is not defined")
            && error.message.contains("did you mean 'important'?"),
        "{error}"
    );
    assert_eq!(
        error.to_string(),
        "resiliency.yaml: Resiliency 'myresiliency': field `spec.targets.apps.appB.retry`: \
         retry policy 'importnt' is not defined in `spec.policies.retries`; did you mean 'important'?"
    );

    let error = self::error(&full_with(
        "circuitBreaker: pubsubCB\n        inbound",
        "circuitBreaker: nothingLikeIt\n        inbound",
    ));
    assert_eq!(
        error.field.as_deref(),
        Some("spec.targets.components.pubsub2.outbound.circuitBreaker")
    );
    assert!(
        error
            .message
            .contains("it defines: defaults, pubsubCB, simpleCB"),
        "{error}"
    );

    let error = self::error(
        "kind: Resiliency\nmetadata: {name: r}\nspec:\n  targets:\n    apps:\n      a: {timeout: general}\n",
    );
    assert_eq!(error.field.as_deref(), Some("spec.targets.apps.a.timeout"));
    assert!(
        error.message.ends_with("this resource defines no timeouts"),
        "{error}"
    );
}

#[test]
fn built_in_retries_may_be_named_without_being_defined() {
    let resiliency = parse(&full_with(
        "retry: pubsubRetry",
        "retry: DaprBuiltInServiceRetries",
    ))
    .unwrap();
    assert_eq!(
        resiliency.targets.components["pubsub2"]
            .outbound
            .retry
            .as_deref(),
        Some("DaprBuiltInServiceRetries")
    );
}

#[test]
fn bad_durations_are_refused() {
    let error = error(&full_with("general: 5s", "general: 5 seconds"));
    assert_eq!(
        error.field.as_deref(),
        Some("spec.policies.timeouts.general")
    );
    assert!(
        error.message.contains("`5 seconds` is not a duration"),
        "{error}"
    );

    let error = self::error(&full_with(
        "maxInterval: 15s\n        maxRetries: -1",
        "maxInterval: soon\n        maxRetries: -1",
    ));
    assert_eq!(
        error.field.as_deref(),
        Some("spec.policies.retries.retryForever.maxInterval")
    );

    let error = self::error(&full_with("interval: 8s", "interval: -8s"));
    assert_eq!(
        error.field.as_deref(),
        Some("spec.policies.circuitBreakers.pubsubCB.interval")
    );
}

#[test]
fn bad_status_code_lists_are_refused() {
    for (codes, why) in [
        ("\"429,500-600\"", "600 is not a valid code"),
        ("\"504-500\"", "a range must start with its lower code"),
        ("\"5xx\"", "`5xx` is not a status code"),
        ("\"500-502-504\"", "is not a status code"),
    ] {
        let error = error(&full_with("\"429,500-599\"", codes));
        assert_eq!(
            error.field.as_deref(),
            Some("spec.policies.retries.retry5xxOnly.matching.httpStatusCodes")
        );
        assert!(error.message.contains(why), "{codes}: {error}");
        assert!(
            error.message.contains("HTTP status codes are 100-599"),
            "{error}"
        );
    }
    let error = error(&full_with("\"1-4,8-11,13,14\"", "\"14,17\""));
    assert_eq!(
        error.field.as_deref(),
        Some("spec.policies.retries.retry5xxOnly.matching.gRPCStatusCodes")
    );
    assert!(
        error.message.contains("gRPC status codes are 0-16"),
        "{error}"
    );

    // Dapr skips empty items; an empty list means every code.
    assert_eq!(
        parse_status_codes(" 500 , ,502-504,", 100..=599).unwrap(),
        [500..=500, 502..=504]
    );
    assert_eq!(parse_status_codes("", 100..=599).unwrap(), []);
}

#[test]
fn bad_trip_expressions_are_refused() {
    for (trip, why) in [
        (
            "consecutiveFailure > 5",
            "unknown counter `consecutiveFailure`; did you mean `consecutiveFailures`?",
        ),
        ("(consecutiveFailures > 5)", "parentheses are not supported"),
        (
            "consecutiveFailures",
            "each comparison must read `counter operator number`",
        ),
        ("consecutiveFailures > 5 &&", "a comparison is missing"),
        ("errors > 5", "unknown counter `errors`"),
        (
            "consecutiveFailures > -1",
            "negative numbers are not supported",
        ),
        ("consecutiveFailures % 2 == 0", "unexpected `%`"),
    ] {
        let error = error(&full_with(
            "trip: consecutiveFailures >= 5",
            &format!("trip: \"{trip}\""),
        ));
        assert_eq!(
            error.field.as_deref(),
            Some("spec.policies.circuitBreakers.simpleCB.trip")
        );
        assert!(error.message.contains(why), "{trip}: {error}");
        assert!(
            error
                .message
                .contains("tandem supports comparisons of requests"),
            "{error}"
        );
    }
}

#[test]
fn trip_expressions_compare_the_counts() {
    let counts = BreakerCounts {
        requests: 10,
        total_successes: 4,
        total_failures: 6,
        consecutive_successes: 0,
        consecutive_failures: 3,
    };
    let tripped = |text: &str| TripExpression::parse(text).unwrap().is_tripped_by(&counts);
    assert!(tripped("consecutiveFailures > 2"));
    assert!(!tripped("consecutiveFailures > 3"));
    assert!(tripped("consecutiveFailures >= 3"));
    assert!(tripped("consecutiveFailures == 3"));
    assert!(tripped("consecutiveFailures != 4"));
    assert!(tripped("consecutiveSuccesses < 1"));
    assert!(tripped("totalSuccesses <= 4"));
    assert!(tripped("requests > 5 && totalFailures > 5"));
    assert!(!tripped("requests > 5 && totalFailures > 6"));
    assert!(tripped("consecutiveFailures > 5 || totalFailures>5"));
    // `&&` binds tighter than `||`, as in CEL.
    assert!(tripped(
        "requests > 100 && totalFailures > 0 || consecutiveFailures == 3"
    ));
    assert!(!tripped(
        "requests > 100 && consecutiveFailures == 3 || totalFailures > 100"
    ));

    let expression =
        TripExpression::parse("requests > 5 && totalFailures > 5 || consecutiveFailures > 2")
            .unwrap();
    assert_eq!(
        expression.describe(&counts),
        "10 calls, 6 failures, 3 consecutive failures"
    );
    assert_eq!(
        TripExpression::default().describe(&BreakerCounts {
            consecutive_failures: 1,
            ..counts
        }),
        "1 consecutive failure"
    );
}

#[test]
fn an_unknown_retry_policy_kind_is_refused() {
    let error = error(&full_with(
        "policy: exponential\n        maxInterval: 15s\n        maxRetries: -1",
        "policy: linear\n        maxInterval: 15s\n        maxRetries: -1",
    ));
    assert_eq!(
        error.field.as_deref(),
        Some("spec.policies.retries.retryForever.policy")
    );
    assert_eq!(
        error.message,
        "unknown retry policy `linear`: it must be `constant` or `exponential`"
    );
}

#[test]
fn max_retries_must_be_minus_one_or_a_count() {
    for bad in ["-2", "three", "1.5"] {
        let error = error(&full_with("maxRetries: 10", &format!("maxRetries: {bad}")));
        assert_eq!(
            error.field.as_deref(),
            Some("spec.policies.retries.pubsubRetry.maxRetries")
        );
    }
    let resiliency = parse(&full_with("maxRetries: 10", "maxRetries: 0")).unwrap();
    assert_eq!(
        resiliency.policies.retries["pubsubRetry"].max_retries,
        Some(0)
    );
}

#[test]
fn unknown_fields_are_refused_with_a_suggestion() {
    let error = error(&full_with("maxRetries: 10", "maxRetry: 10"));
    assert_eq!(
        error.field.as_deref(),
        Some("spec.policies.retries.pubsubRetry.maxRetry")
    );
    assert_eq!(
        error.message,
        "unknown field `maxRetry`; did you mean `maxRetries`?"
    );

    let error = self::error(&full_with("        inbound:", "        input:"));
    assert_eq!(
        error.field.as_deref(),
        Some("spec.targets.components.pubsub2.input")
    );
    assert!(
        error
            .message
            .contains("known fields are: outbound, inbound"),
        "{error}"
    );

    let error = self::error(&full_with("  targets:", "  target:"));
    assert_eq!(error.field.as_deref(), Some("spec.target"));
    assert!(error.message.contains("did you mean `targets`?"), "{error}");
}

#[test]
fn a_resource_without_name_or_spec_is_refused() {
    let error = error("kind: Resiliency\nmetadata: {}\nspec: {}\n");
    assert_eq!(error.field.as_deref(), Some("metadata.name"));
    assert_eq!(error.resource.as_deref(), Some("Resiliency"));

    let error = self::error("kind: Resiliency\nmetadata:\n  name: r\n  spec: {}\n");
    assert_eq!(error.field.as_deref(), Some("spec"));
    assert!(
        error.message.contains("indented under `metadata`"),
        "{error}"
    );
}

#[test]
fn an_actor_circuit_breaker_needs_a_scope() {
    let error = error(&full_with("        circuitBreakerScope: both\n", ""));
    assert_eq!(
        error.field.as_deref(),
        Some("spec.targets.actors.myActorType.circuitBreakerScope")
    );
}

#[test]
fn breaker_zeroes_mean_gobreaker_defaults() {
    let resiliency = parse(&full_with(
        "maxRequests: 1\n        timeout: 30s",
        "maxRequests: 0\n        timeout: 0s",
    ))
    .unwrap();
    let simple = &resiliency.policies.circuit_breakers["simpleCB"];
    assert_eq!(simple.max_requests, 1);
    assert_eq!(simple.timeout, Duration::from_secs(60));
}

#[test]
fn cache_policies_are_read_and_checked() {
    let text = r#"
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: caching
spec:
  policies:
    caches:
      catalog:
        ttl: 30s
        store: statestore
        staleIfError: 5m
        methods: [get, head]
        varyHeaders: [Accept-Language]
  targets:
    apps:
      catalog-api:
        cache: catalog
"#;
    let value: yaml_serde::Value = yaml_serde::from_str(text).unwrap();
    let resiliency = crate::parse_resiliency("r.yaml".as_ref(), value).unwrap();
    let cache = &resiliency.policies.caches["catalog"];
    assert_eq!(cache.ttl, std::time::Duration::from_secs(30));
    assert_eq!(cache.store.as_deref(), Some("statestore"));
    assert_eq!(cache.stale_if_error, std::time::Duration::from_secs(300));
    assert_eq!(cache.methods, ["GET", "HEAD"]);
    assert_eq!(cache.vary_headers, ["Accept-Language"]);
    assert_eq!(
        resiliency.targets.apps["catalog-api"].cache.as_deref(),
        Some("catalog")
    );

    let no_ttl = text.replace("        ttl: 30s\n", "");
    let error = crate::parse_resiliency("r.yaml".as_ref(), yaml_serde::from_str(&no_ttl).unwrap())
        .unwrap_err();
    assert!(error.to_string().contains("needs a `ttl`"), "{error}");
    let unknown = text.replace("cache: catalog", "cache: catalgo");
    let error = crate::parse_resiliency("r.yaml".as_ref(), yaml_serde::from_str(&unknown).unwrap())
        .unwrap_err();
    assert!(
        error.to_string().contains("did you mean 'catalog'"),
        "{error}"
    );
}

/// Numbers and durations far out of range are refused with the field and a reason,
/// never a panic or a wrapped-around value.
#[test]
fn out_of_range_numbers_and_durations_are_refused() {
    for (old, new, field, why) in [
        (
            "general: 5s",
            "general: 99999999999999999999h",
            "spec.policies.timeouts.general",
            "is longer than the longest duration",
        ),
        (
            "largeResponse: 10000",
            "largeResponse: 99999999999999999999",
            "spec.policies.timeouts.largeResponse",
            "is longer than the longest duration",
        ),
        (
            "general: 5s",
            "general: 2562048h",
            "spec.policies.timeouts.general",
            "is longer than the longest duration",
        ),
        (
            "maxRetries: 10",
            "maxRetries: 99999999999999999999",
            "spec.policies.retries.pubsubRetry.maxRetries",
            "must be -1 (retry forever), 0 (never retry) or a number of retries up to 4294967295, not `99999999999999999999`",
        ),
        (
            "maxRetries: 10",
            "maxRetries: 4294967296",
            "spec.policies.retries.pubsubRetry.maxRetries",
            "not `4294967296`",
        ),
        (
            "maxRetries: 10",
            "maxRetries: -99999999999999999999",
            "spec.policies.retries.pubsubRetry.maxRetries",
            "not `-99999999999999999999`",
        ),
        (
            "maxRequests: 1\n        timeout: 30s",
            "maxRequests: -1\n        timeout: 30s",
            "spec.policies.circuitBreakers.simpleCB.maxRequests",
            "not `-1`",
        ),
        (
            "maxRequests: 1\n        timeout: 30s",
            "maxRequests: 99999999999999999999\n        timeout: 30s",
            "spec.policies.circuitBreakers.simpleCB.maxRequests",
            "not `99999999999999999999`",
        ),
        (
            "interval: 8s",
            "interval: 9999999999999999h9999999999999999m",
            "spec.policies.circuitBreakers.pubsubCB.interval",
            "is longer than the longest duration",
        ),
        (
            "trip: consecutiveFailures >= 5",
            "trip: consecutiveFailures >= 99999999999999999999",
            "spec.policies.circuitBreakers.simpleCB.trip",
            "99999999999999999999 is too large",
        ),
        (
            "circuitBreakerCacheSize: 5000",
            "circuitBreakerCacheSize: 99999999999999999999",
            "spec.targets.actors.myActorType.circuitBreakerCacheSize",
            "not `99999999999999999999`",
        ),
        (
            "circuitBreakerCacheSize: 5000",
            "circuitBreakerCacheSize: 0",
            "spec.targets.actors.myActorType.circuitBreakerCacheSize",
            "not `0`",
        ),
        (
            "\"429,500-599\"",
            "\"99999999999999999999\"",
            "spec.policies.retries.retry5xxOnly.matching.httpStatusCodes",
            "is not a status code",
        ),
    ] {
        let error = error(&full_with(old, new));
        assert_eq!(error.field.as_deref(), Some(field), "{new}: {error}");
        assert!(error.message.contains(why), "{new}: {error}");
    }

    let resiliency = parse(&full_with(
        "general: 5s",
        "general: 2562047h47m16.854775807s",
    ))
    .unwrap();
    assert_eq!(
        resiliency.policies.timeouts["general"],
        crate::MAX_DURATION,
        "the longest Go duration is accepted"
    );
    let resiliency = parse(&full_with("maxRetries: 10", "maxRetries: 4294967295")).unwrap();
    assert_eq!(
        resiliency.policies.retries["pubsubRetry"].max_retries,
        Some(u32::MAX)
    );
}

#[test]
fn cache_extremes_are_refused() {
    let text = "kind: Resiliency\nmetadata: {name: r}\nspec:\n  policies:\n    caches:\n      c:\n        ttl: 30s\n";
    for (line, field, why) in [
        (
            "ttl: 99999999999999999999.5s",
            "spec.policies.caches.c.ttl",
            "is longer than the longest duration",
        ),
        (
            "ttl: 0s",
            "spec.policies.caches.c.ttl",
            "must be longer than zero",
        ),
        (
            "ttl: 30s\n        staleIfError: 99999999999999999999m",
            "spec.policies.caches.c.staleIfError",
            "is longer than the longest duration",
        ),
        (
            "ttl: 30s\n        maxEntries: 99999999999999999999999999999999999999999",
            "spec.policies.caches.c.maxEntries",
            "must be a number of entries, 1 or more",
        ),
        (
            "ttl: 30s\n        maxEntries: 0",
            "spec.policies.caches.c.maxEntries",
            "not `0`",
        ),
    ] {
        let error = error(&text.replace("ttl: 30s", line));
        assert_eq!(error.field.as_deref(), Some(field), "{line}: {error}");
        assert!(error.message.contains(why), "{line}: {error}");
    }
}

#[test]
fn wrong_types_say_what_was_expected() {
    let error = error(&full_with(
        "      retry5xxOnly:\n        policy: constant",
        "      retry5xxOnly: 5\n      unused:\n        policy: constant",
    ));
    assert_eq!(
        error.field.as_deref(),
        Some("spec.policies.retries.retry5xxOnly")
    );
    assert!(
        error
            .message
            .starts_with("must be a retry policy: a mapping such as"),
        "{error}"
    );

    let error = self::error(&full_with("general: 5s", "general: [5s]"));
    assert_eq!(
        error.message,
        "must be a duration such as `500ms`, `5s` or `1m30s`, not a list"
    );

    let error = self::error(&full_with(
        "circuitBreakerScope: both",
        "circuitBreakerScope: all",
    ));
    assert_eq!(error.message, "must be `id`, `type` or `both`, not `all`");
}
