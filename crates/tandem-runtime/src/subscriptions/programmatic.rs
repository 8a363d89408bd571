//! Programmatic subscriptions: what the app answers at `GET /dapr/subscribe`, or a
//! gRPC app at `ListTopicSubscriptions`.
//!
//! Each entry is read as daprd reads it: its `routes.rules` in order, then
//! `routes.default` (or, without one, `route`) as the rule that matches every event.
//! An HTTP app's entry with no route at all is left out with a warning; a gRPC app's
//! gets the empty path, which its SDK maps to the topic's handler. An entry whose
//! routing rule does not compile is left out with an error naming it and the rule;
//! daprd instead drops every subscription of the app, declarative ones included.

use std::collections::BTreeMap;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use serde::Deserialize;

use super::routing::Routing;
use super::{Source, Subscription};
use crate::app_channel::{AppCallError, AppChannel};

/// Why the app's subscriptions could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DiscoverError {
    #[error(transparent)]
    Call(#[from] AppCallError),
    #[error("GET /dapr/subscribe answered {0}")]
    Status(StatusCode),
    #[error("the app's /dapr/subscribe answer is not a list of subscriptions: {0}")]
    NotAList(#[source] serde_json::Error),
}

/// One entry of the app's `/dapr/subscribe` answer.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Declared {
    #[serde(rename = "pubsubname", alias = "pubsubName")]
    pubsub: String,
    topic: String,
    #[serde(default)]
    route: Option<String>,
    #[serde(default)]
    routes: Option<Routes>,
    #[serde(default)]
    metadata: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default)]
    dead_letter_topic: Option<String>,
    #[serde(default)]
    bulk_subscribe: Option<BulkSubscribe>,
}

#[derive(Debug, Default, Deserialize)]
struct Routes {
    #[serde(default)]
    default: Option<String>,
    #[serde(default)]
    rules: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
struct Rule {
    #[serde(default, rename = "match")]
    condition: String,
    #[serde(default)]
    path: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BulkSubscribe {
    #[serde(default)]
    enabled: bool,
    #[serde(default)]
    max_messages_count: Option<u32>,
    #[serde(default)]
    max_await_duration_ms: Option<u32>,
}

/// Asks the app which topics it subscribes to: `GET /dapr/subscribe`, or
/// `ListTopicSubscriptions` for a gRPC app. An app without either subscribes to nothing.
pub(crate) async fn discover(app: &AppChannel) -> Result<Vec<Subscription>, DiscoverError> {
    if let Some(grpc) = app.grpc() {
        let listed = grpc.list_subscriptions().await?;
        return Ok(from_declared(
            listed.into_iter().map(Declared::from).collect(),
            true,
        ));
    }
    let response = app
        .call(
            Method::GET,
            "/dapr/subscribe",
            HeaderMap::new(),
            Bytes::new(),
        )
        .await?;
    if response.status == StatusCode::NOT_FOUND || response.body.is_empty() {
        return Ok(Vec::new());
    }
    if !response.status.is_success() {
        return Err(DiscoverError::Status(response.status));
    }
    parse_subscriptions(&response.body)
}

pub(crate) fn parse_subscriptions(body: &[u8]) -> Result<Vec<Subscription>, DiscoverError> {
    let declared: Vec<Declared> = serde_json::from_slice(body).map_err(DiscoverError::NotAList)?;
    Ok(from_declared(declared, false))
}

/// A gRPC app's subscription in the shape of an HTTP app's `/dapr/subscribe` entry.
impl From<tandem_proto::runtime::TopicSubscription> for Declared {
    fn from(listed: tandem_proto::runtime::TopicSubscription) -> Self {
        let routes = listed.routes.map(|routes| Routes {
            default: Some(routes.default),
            rules: routes
                .rules
                .into_iter()
                .map(|rule| Rule {
                    condition: rule.r#match,
                    path: rule.path,
                })
                .collect(),
        });
        let bulk_subscribe = listed.bulk_subscribe.map(|bulk| BulkSubscribe {
            enabled: bulk.enabled,
            max_messages_count: u32::try_from(bulk.max_messages_count).ok(),
            max_await_duration_ms: u32::try_from(bulk.max_await_duration_ms).ok(),
        });
        Declared {
            pubsub: listed.pubsub_name,
            topic: listed.topic,
            route: None,
            routes,
            metadata: Some(
                listed
                    .metadata
                    .into_iter()
                    .map(|(key, value)| (key, serde_json::Value::String(value)))
                    .collect(),
            ),
            dead_letter_topic: Some(listed.dead_letter_topic),
            bulk_subscribe,
        }
    }
}

/// The subscriptions an app declared (`grpc`: by a gRPC app).
fn from_declared(declared: Vec<Declared>, grpc: bool) -> Vec<Subscription> {
    let mut subscriptions = Vec::new();
    for entry in declared {
        let routes = entry.routes.unwrap_or_default();
        // daprd: `routes.default` when given, else `route`.
        let default = routes
            .default
            .filter(|route| !route.is_empty())
            .or(entry.route.filter(|route| !route.is_empty()));
        let rules = routes
            .rules
            .iter()
            .map(|rule| (rule.condition.as_str(), rule.path.as_str()));
        let routing = match Routing::new(rules, default.as_deref()) {
            // daprd: a gRPC app's subscription without a route has the empty path.
            Ok(routing) if grpc && routing.is_empty() => Routing::catch_all(""),
            Ok(routing) => routing,
            Err(error) => {
                tracing::error!(
                    pubsub = %entry.pubsub, topic = %entry.topic,
                    "the app's subscription to topic '{}' of pubsub '{}' is not made: its {error}",
                    entry.topic, entry.pubsub
                );
                continue;
            }
        };
        if routing.is_empty() {
            tracing::warn!(
                pubsub = %entry.pubsub, topic = %entry.topic,
                "the app's subscription to topic '{}' has no route (`route`, `routes.default` or `routes.rules`); it is not made",
                entry.topic
            );
            continue;
        }
        let metadata = entry
            .metadata
            .unwrap_or_default()
            .into_iter()
            .map(|(key, value)| {
                let value = match value {
                    serde_json::Value::String(text) => text,
                    other => other.to_string(),
                };
                (key, value)
            })
            .collect();
        let bulk = entry.bulk_subscribe.unwrap_or_default();
        subscriptions.push(Subscription {
            pubsub: entry.pubsub,
            topic: entry.topic,
            routing,
            metadata,
            dead_letter_topic: entry.dead_letter_topic.filter(|topic| !topic.is_empty()),
            bulk: tandem_spec::BulkSubscribe {
                enabled: bulk.enabled,
                max_messages_count: bulk.max_messages_count,
                max_await_duration_ms: bulk.max_await_duration_ms,
            },
            source: Source::Programmatic,
        });
    }
    subscriptions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_read_as_daprd_reads_them() {
        let body = br#"[
            {"pubsubname": "order_pub_sub", "topic": "orders", "route": "/events/order_pub_sub/orders", "metadata": {}},
            {"pubsubname": "p", "topic": "t", "route": "/ignored", "routes": {"default": "/t", "rules": [{"match": "event.type == 'x'", "path": "/x"}]}, "deadLetterTopic": "poison"},
            {"pubsubname": "p", "topic": "only-rules", "routes": {"rules": [{"match": "event.type == 'x'", "path": "/x"}]}},
            {"pubsubname": "p", "topic": "raw", "route": "/raw", "metadata": {"rawPayload": "true", "n": 3}, "bulkSubscribe": {"enabled": true, "maxMessagesCount": 10}},
            {"pubsubname": "p", "topic": "no-route"},
            {"pubsubname": "p", "topic": "broken", "routes": {"rules": [{"match": "event.type ==", "path": "/x"}], "default": "/d"}}
        ]"#;
        let subscriptions = parse_subscriptions(body).unwrap();
        let topics: Vec<_> = subscriptions.iter().map(|s| s.topic.as_str()).collect();
        assert_eq!(topics, ["orders", "t", "only-rules", "raw"]);
        assert_eq!(
            subscriptions[0].routing.paths(),
            "/events/order_pub_sub/orders"
        );
        assert_eq!(subscriptions[0].info().origin, "PROGRAMMATIC");
        assert_eq!(subscriptions[1].routing.paths(), "/x, /t");
        assert_eq!(
            subscriptions[1].dead_letter_topic.as_deref(),
            Some("poison")
        );
        assert_eq!(subscriptions[2].routing.paths(), "/x");
        assert_eq!(subscriptions[3].metadata["rawPayload"], "true");
        assert_eq!(subscriptions[3].metadata["n"], "3");
        assert!(subscriptions[3].bulk.enabled);
        assert_eq!(subscriptions[3].bulk.max_messages_count, Some(10));
        assert!(parse_subscriptions(b"{}").is_err());
    }

    #[test]
    fn a_grpc_apps_subscriptions_are_read_as_daprd_reads_them() {
        use tandem_proto::runtime::{
            BulkSubscribeConfig, TopicRoutes, TopicRule, TopicSubscription,
        };
        let listed = |topic: &str, routes: Option<TopicRoutes>| TopicSubscription {
            pubsub_name: "p".into(),
            topic: topic.into(),
            metadata: [("rawPayload".to_owned(), "true".to_owned())].into(),
            routes,
            dead_letter_topic: String::new(),
            bulk_subscribe: Some(BulkSubscribeConfig {
                enabled: true,
                max_messages_count: -1,
                max_await_duration_ms: 50,
            }),
        };
        let rule = |condition: &str, path: &str| TopicRule {
            r#match: condition.into(),
            path: path.into(),
        };
        let subscriptions = from_declared(
            vec![
                listed("plain", None).into(),
                listed(
                    "routed",
                    Some(TopicRoutes {
                        rules: vec![rule("event.type == 'a'", "a")],
                        default: "d".into(),
                    }),
                )
                .into(),
                listed("empty", Some(TopicRoutes::default())).into(),
                listed(
                    "broken",
                    Some(TopicRoutes {
                        rules: vec![rule("event.type ==", "a")],
                        default: String::new(),
                    }),
                )
                .into(),
            ],
            true,
        );
        let seen: Vec<_> = subscriptions
            .iter()
            .map(|s| (s.topic.as_str(), s.routing.paths()))
            .collect();
        assert_eq!(
            seen,
            [
                ("plain", String::new()),
                ("routed", "a, d".to_owned()),
                ("empty", String::new()),
            ]
        );
        assert_eq!(subscriptions[0].metadata["rawPayload"], "true");
        assert_eq!(subscriptions[0].dead_letter_topic, None);
        assert!(subscriptions[0].bulk.enabled);
        assert_eq!(subscriptions[0].bulk.max_messages_count, None);
        assert_eq!(subscriptions[0].bulk.max_await_duration_ms, Some(50));
    }
}
