use std::path::Path;

use super::*;
use crate::load::{LoadOptions, load, parse_file};

fn parse(text: &str) -> Result<Subscription, ResourceError> {
    let found = parse_file(Path::new("subs.yaml"), text)?;
    assert_eq!(found.subscriptions.len(), 1, "{found:?}");
    Ok(found.subscriptions.into_iter().next().unwrap())
}

fn refused(text: &str) -> ResourceError {
    parse(text).unwrap_err()
}

const V2: &str = r#"
apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata:
  name: orders
spec:
  pubsubname: pubsub
  topic: inventory
  routes:
    rules:
      - match: event.type == "widget"
        path: /widgets
      - match: 'event.data.price > 2000'
        path: /expensive
    default: /products
  deadLetterTopic: poison
  metadata:
    rawPayload: "true"
    maxLen: 10
  bulkSubscribe:
    enabled: true
    maxMessagesCount: 100
    maxAwaitDurationMs: 40
scopes:
- app1
- app2
"#;

#[test]
fn a_v2alpha1_subscription_keeps_every_field() {
    let subscription = parse(V2).unwrap();
    assert_eq!(subscription.name, "orders");
    assert_eq!(subscription.api_version, SUBSCRIPTION_V2ALPHA1);
    assert_eq!(subscription.pubsub, "pubsub");
    assert_eq!(subscription.topic, "inventory");
    assert_eq!(
        subscription.rules,
        [
            RoutingRule {
                condition: r#"event.type == "widget""#.into(),
                path: "/widgets".into()
            },
            RoutingRule {
                condition: "event.data.price > 2000".into(),
                path: "/expensive".into()
            },
        ]
    );
    assert_eq!(subscription.default_route.as_deref(), Some("/products"));
    assert_eq!(subscription.dead_letter_topic.as_deref(), Some("poison"));
    assert_eq!(subscription.metadata["rawPayload"], "true");
    assert_eq!(subscription.metadata["maxLen"], "10");
    assert_eq!(
        subscription.bulk_subscribe,
        BulkSubscribe {
            enabled: true,
            max_messages_count: Some(100),
            max_await_duration_ms: Some(40),
        }
    );
    assert_eq!(subscription.scopes, ["app1", "app2"]);
    assert!(subscription.is_in_scope("app2"));
    assert!(!subscription.is_in_scope("app3"));
    assert_eq!(subscription.file.as_deref(), Some(Path::new("subs.yaml")));
}

#[test]
fn a_v1alpha1_route_is_the_default_route() {
    let subscription = parse(
        "apiVersion: dapr.io/v1alpha1\nkind: Subscription\nmetadata:\n  name: s\nspec:\n  pubsubName: pubsub\n  topic: orders\n  route: /orders\n",
    )
    .unwrap();
    assert_eq!(subscription.api_version, SUBSCRIPTION_V1ALPHA1);
    assert_eq!(subscription.pubsub, "pubsub");
    assert!(subscription.rules.is_empty());
    assert_eq!(subscription.default_route.as_deref(), Some("/orders"));
    assert_eq!(subscription.dead_letter_topic, None);
    assert_eq!(subscription.bulk_subscribe, BulkSubscribe::default());
    assert!(subscription.is_in_scope("anyone"));
}

#[test]
fn rules_alone_or_a_catch_all_rule_are_routes_enough() {
    let subscription = parse(
        "apiVersion: dapr.io/v2alpha1\nkind: Subscription\nmetadata:\n  name: s\nspec:\n  pubsubname: p\n  topic: t\n  routes:\n    rules:\n    - match: ''\n      path: /all\n",
    )
    .unwrap();
    assert_eq!(subscription.rules[0].condition, "");
    assert_eq!(subscription.default_route, None);
}

#[test]
fn malformed_subscriptions_name_the_file_resource_and_field() {
    let head = "kind: Subscription\nmetadata:\n  name: s\n";
    let cases: &[(&str, &str, &str)] = &[
        (
            "apiVersion: dapr.io/v2alpha1\nspec:\n  topic: t\n  routes: {default: /t}\n",
            "spec.pubsubname",
            "needs a `pubsubname`",
        ),
        (
            "apiVersion: dapr.io/v2alpha1\nspec:\n  pubsubname: p\n  routes: {default: /t}\n",
            "spec.topic",
            "needs a `topic`",
        ),
        (
            "apiVersion: dapr.io/v2alpha1\nspec:\n  pubsubname: p\n  topic: t\n  route: /t\n",
            "spec.route",
            "did you mean `routes`?",
        ),
        (
            "apiVersion: dapr.io/v1alpha1\nspec:\n  pubsubname: p\n  topic: t\n  routes: {default: /t}\n",
            "spec.routes",
            "did you mean `route`?",
        ),
        (
            "apiVersion: dapr.io/v1alpha1\nspec:\n  pubsubname: p\n  topic: t\n",
            "spec.route",
            "needs a `route`",
        ),
        (
            "apiVersion: dapr.io/v2alpha1\nspec:\n  pubsubname: p\n  topic: t\n",
            "spec.routes",
            "`rules` or a `default`",
        ),
        (
            "apiVersion: dapr.io/v2alpha1\nspec:\n  pubsubname: p\n  topic: t\n  routes:\n    rules:\n    - match: event.type == 'a'\n",
            "spec.routes.rules[0].path",
            "needs a `path`",
        ),
        (
            "apiVersion: dapr.io/v2alpha1\nspec:\n  pubsubname: p\n  topic: t\n  routes:\n    rules:\n    - match: event.type == 'a'\n      path: /a\n      when: now\n",
            "spec.routes.rules[0].when",
            "unknown field",
        ),
        (
            "apiVersion: dapr.io/v2alpha1\nspec:\n  pubsubname: p\n  topic: t\n  routes: {default: /t}\n  metadata:\n    rawPayload: [true]\n",
            "spec.metadata.rawPayload",
            "plain value",
        ),
        (
            "apiVersion: dapr.io/v2alpha1\nspec:\n  pubsubname: p\n  topic: t\n  routes: {default: /t}\n  bulkSubscribe:\n    enabled: true\n    maxMessagesCount: -1\n",
            "spec.bulkSubscribe.maxMessagesCount",
            "0 or more",
        ),
        (
            "apiVersion: dapr.io/v2alpha1\nspec:\n  pubsubname: p\n  topic: t\n  routes: {default: /t}\n  deadLetterTopc: d\n",
            "spec.deadLetterTopc",
            "did you mean `deadLetterTopic`?",
        ),
        (
            "apiVersion: dapr.io/v3\nspec:\n  pubsubname: p\n  topic: t\n  routes: {default: /t}\n",
            "apiVersion",
            "not `dapr.io/v3`",
        ),
        (
            "spec:\n  pubsubname: p\n  topic: t\n  routes: {default: /t}\n",
            "apiVersion",
            "needs an `apiVersion`",
        ),
        (
            "apiVersion: dapr.io/v2alpha1\nspec: 5\n",
            "spec",
            "must be a mapping",
        ),
        (
            "apiVersion: dapr.io/v2alpha1\nspec:\n  pubsubname: p\n  topic: t\n  routes: {default: /t}\nscopes: ['']\n",
            "scopes[0]",
            "app id",
        ),
    ];
    for (body, field, says) in cases {
        let error = refused(&format!("{head}{body}"));
        assert_eq!(
            error.file.as_deref(),
            Some(Path::new("subs.yaml")),
            "{error}"
        );
        assert_eq!(
            error.resource.as_deref(),
            Some("Subscription 's'"),
            "{error}"
        );
        assert_eq!(error.field.as_deref(), Some(*field), "{body}: {error}");
        assert!(error.message.contains(says), "{body}: {error}");
    }
    let nameless = refused(
        "apiVersion: dapr.io/v2alpha1\nkind: Subscription\nspec:\n  pubsubname: p\n  topic: t\n  routes: {default: /t}\n",
    );
    assert_eq!(nameless.field.as_deref(), Some("metadata.name"));
}

#[test]
fn loading_keeps_file_order_and_scopes_and_refuses_duplicate_names() {
    let dir = tempfile::tempdir().unwrap();
    let subscription = |name: &str, topic: &str, scopes: &str| {
        format!(
            "apiVersion: dapr.io/v2alpha1\nkind: Subscription\nmetadata:\n  name: {name}\nspec:\n  pubsubname: p\n  topic: {topic}\n  routes:\n    default: /{topic}\nscopes: [{scopes}]\n"
        )
    };
    std::fs::write(
        dir.path().join("a.yaml"),
        format!(
            "{}---\n{}",
            subscription("first", "orders", ""),
            subscription("mine", "mine", "me")
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("b.yaml"),
        format!(
            "{}---\n{}",
            subscription("theirs", "theirs", "someone-else"),
            subscription("second", "orders", "me, you")
        ),
    )
    .unwrap();
    let options = LoadOptions {
        app_id: "me".into(),
        namespace: None,
    };
    let loaded = load(&[dir.path().into()], &options).unwrap();
    let names: Vec<_> = loaded
        .subscriptions
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(names, ["first", "mine", "second"]);

    std::fs::write(
        dir.path().join("c.yaml"),
        subscription("first", "again", ""),
    )
    .unwrap();
    let error = load(&[dir.path().into()], &options).unwrap_err();
    assert_eq!(error.field.as_deref(), Some("metadata.name"), "{error}");
    assert!(error.message.contains("a.yaml"), "{error}");
}
