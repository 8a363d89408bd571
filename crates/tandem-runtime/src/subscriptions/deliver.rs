//! Delivering events to the app: finding its subscriptions (`GET /dapr/subscribe`),
//! POSTing each event to its route, and reading the answer the way Dapr does.
//!
//! | app answers                                   | outcome |
//! |-----------------------------------------------|---------|
//! | 2xx, body empty / not JSON / `SUCCESS`        | done    |
//! | 2xx with `{"status": "RETRY"}`                | retry   |
//! | 2xx with `{"status": "DROP"}`                 | dropped, with a warning |
//! | 2xx with another status word                  | retry, with a warning (as Dapr) |
//! | 404                                           | dropped, with a warning |
//! | any other status, or no answer                | retry   |

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde::Deserialize;
use tandem_components::pubsub::{Deliver, Message, Outcome};
use tandem_resiliency::{Policy, Verdict};

use crate::app_channel::{AppCallError, AppChannel};
use crate::cloudevent::{self, CLOUDEVENT_CONTENT_TYPE, Origin};
use crate::metadata::SubscriptionInfo;

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
}

#[derive(Debug, Deserialize)]
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
    path: String,
}

/// Asks the app which topics it subscribes to: `GET /dapr/subscribe`, or
/// `ListTopicSubscriptions` for a gRPC app. An app without either subscribes to nothing.
pub(crate) async fn discover(app: &AppChannel) -> Result<Vec<SubscriptionInfo>, DiscoverError> {
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

fn parse_subscriptions(body: &[u8]) -> Result<Vec<SubscriptionInfo>, DiscoverError> {
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
            dead_letter_topic: Some(listed.dead_letter_topic).filter(|topic| !topic.is_empty()),
        }
    }
}

/// The subscriptions an app declared. A gRPC app's subscription without any route gets
/// the empty path, which its SDK maps back to the topic's handler (as with `daprd`).
fn from_declared(declared: Vec<Declared>, grpc: bool) -> Vec<SubscriptionInfo> {
    let mut subscriptions = Vec::new();
    for entry in declared {
        let routes = entry.routes.unwrap_or(Routes {
            default: None,
            rules: Vec::new(),
        });
        let route = entry
            .route
            .filter(|route| !route.is_empty())
            .or(routes.default.filter(|route| !route.is_empty()))
            .or_else(|| {
                // Without a default, the catch-all rule (empty match) is the route.
                routes
                    .rules
                    .iter()
                    .find(|rule| rule.condition.is_empty())
                    .map(|rule| rule.path.clone())
            })
            .or_else(|| (grpc && routes.rules.is_empty()).then(String::new));
        let Some(route) = route else {
            tracing::warn!(
                pubsub = %entry.pubsub, topic = %entry.topic,
                "subscription has only conditional routing rules, which tandem does not evaluate yet; give it a `routes.default`"
            );
            continue;
        };
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
        subscriptions.push(SubscriptionInfo {
            pubsub: entry.pubsub,
            topic: entry.topic,
            route,
            metadata,
            dead_letter_topic: entry.dead_letter_topic.unwrap_or_default(),
            origin: "PROGRAMMATIC",
        });
    }
    subscriptions
}

/// Delivers one subscription's events to the app.
pub(crate) struct AppDelivery {
    pub app: AppChannel,
    pub app_id: String,
    pub subscription: SubscriptionInfo,
    /// The pub/sub component's inbound resiliency policy.
    pub policy: Policy,
}

#[async_trait]
impl Deliver for AppDelivery {
    /// Delivers under the component's inbound policy: a delivery the app asks to retry
    /// (or fails) is retried as the policy says; when it gives up the broker redelivers.
    async fn deliver(&self, message: Message) -> Outcome {
        if self.policy.is_none() {
            return self.deliver_once(&message).await;
        }
        let attempt = || async {
            match self.deliver_once(&message).await {
                Outcome::Retry => Err(NotDone),
                settled => Ok(settled),
            }
        };
        match self.policy.run(attempt, |_| Verdict::Retryable).await {
            Ok(settled) => settled,
            Err(failure) => {
                tracing::warn!(
                    pubsub = %self.subscription.pubsub, topic = %self.subscription.topic,
                    "delivery not done ({failure}); the broker will redeliver it"
                );
                Outcome::Retry
            }
        }
    }
}

/// A delivery the app did not finish (it asked to retry, failed, or was unreachable).
struct NotDone;

impl std::fmt::Display for NotDone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the app did not finish the event")
    }
}

impl AppDelivery {
    async fn deliver_once(&self, message: &Message) -> Outcome {
        let subscription = &self.subscription;
        let raw_payload = subscription
            .metadata
            .get("rawPayload")
            .is_some_and(|value| value.eq_ignore_ascii_case("true"));
        let origin = Origin {
            app_id: &self.app_id,
            pubsub: &subscription.pubsub,
            topic: &subscription.topic,
            traceparent: None,
            tracestate: None,
        };
        let event = cloudevent::for_delivery(&origin, &message.data, raw_payload);
        if cloudevent::has_expired(&event) {
            tracing::warn!(
                pubsub = %subscription.pubsub, topic = %subscription.topic,
                "event {} expired at {} before it could be delivered; dropped",
                event.get("id").and_then(|id| id.as_str()).unwrap_or_default(),
                event.get("expiration").and_then(|at| at.as_str()).unwrap_or_default()
            );
            return Outcome::Drop;
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static(CLOUDEVENT_CONTENT_TYPE),
        );
        for field in ["traceparent", "tracestate"] {
            if let Some(value) = event.get(field).and_then(|value| value.as_str())
                && let Ok(value) = HeaderValue::from_str(value)
                && !value.is_empty()
            {
                headers.insert(field, value);
            }
        }
        let id = event
            .get("id")
            .and_then(|id| id.as_str())
            .unwrap_or_default()
            .to_owned();
        let (outcome, warning) = if let Some(grpc) = self.app.grpc() {
            let _permit = self.app.permit().await;
            grpc.deliver(
                &event,
                &subscription.pubsub,
                &subscription.topic,
                &subscription.route,
            )
            .await
        } else {
            self.deliver_http(&event, headers).await
        };
        if let Some(warning) = warning {
            tracing::warn!(
                pubsub = %subscription.pubsub, topic = %subscription.topic, event = %id,
                "delivery to {}: {warning}; {}",
                if subscription.route.is_empty() { "the app" } else { &subscription.route },
                match outcome {
                    Outcome::Retry => "it will be redelivered",
                    Outcome::Drop => "the event is dropped",
                    Outcome::Done => "done",
                }
            );
        }
        outcome
    }

    /// POSTs the event to the subscription's route on an HTTP app.
    async fn deliver_http(
        &self,
        event: &serde_json::Map<String, serde_json::Value>,
        headers: HeaderMap,
    ) -> (Outcome, Option<String>) {
        let subscription = &self.subscription;
        let body = Bytes::from(serde_json::to_vec(event).expect("a JSON map serialises"));
        let answer = self
            .app
            .call(Method::POST, &subscription.route, headers, body)
            .await;
        match answer {
            Ok(response) => outcome_of(response.status, &response.body),
            Err(error) => (Outcome::Retry, Some(error.to_string())),
        }
    }
}

#[derive(Deserialize)]
struct AppAnswer {
    #[serde(default)]
    status: Option<String>,
}

/// Reads the app's answer to a delivery (see the table at the top of this module).
pub(crate) fn outcome_of(status: StatusCode, body: &[u8]) -> (Outcome, Option<String>) {
    if status == StatusCode::NOT_FOUND {
        return (Outcome::Drop, Some("the app answered 404 Not Found".into()));
    }
    if !status.is_success() {
        return (Outcome::Retry, Some(format!("the app answered {status}")));
    }
    let Ok(AppAnswer { status: Some(word) }) = serde_json::from_slice::<AppAnswer>(body) else {
        return (Outcome::Done, None);
    };
    match word.to_ascii_uppercase().as_str() {
        "SUCCESS" | "" => (Outcome::Done, None),
        "RETRY" => (Outcome::Retry, None),
        "DROP" => (Outcome::Drop, Some("the app answered DROP".into())),
        other => (
            Outcome::Retry,
            Some(format!("the app answered an unknown status '{other}'")),
        ),
    }
}

/// The delivery of one subscription's events into the app.
pub(crate) fn delivery(
    app: &AppChannel,
    app_id: &str,
    subscription: &SubscriptionInfo,
    policy: Policy,
) -> Arc<dyn Deliver> {
    Arc::new(AppDelivery {
        app: app.clone(),
        app_id: app_id.to_owned(),
        subscription: subscription.clone(),
        policy,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_as_dapr_reads_them() {
        let ok = StatusCode::OK;
        assert_eq!(outcome_of(ok, b"").0, Outcome::Done);
        assert_eq!(outcome_of(ok, br#"{"success": true}"#).0, Outcome::Done);
        assert_eq!(outcome_of(ok, b"not json").0, Outcome::Done);
        assert_eq!(outcome_of(ok, br#"{"status": "SUCCESS"}"#).0, Outcome::Done);
        assert_eq!(outcome_of(ok, br#"{"status": "success"}"#).0, Outcome::Done);
        assert_eq!(outcome_of(ok, br#"{"status": "RETRY"}"#).0, Outcome::Retry);
        assert_eq!(outcome_of(ok, br#"{"status": "DROP"}"#).0, Outcome::Drop);
        assert_eq!(outcome_of(ok, br#"{"status": "MAYBE"}"#).0, Outcome::Retry);
        assert_eq!(outcome_of(StatusCode::NO_CONTENT, b"").0, Outcome::Done);
        assert_eq!(outcome_of(StatusCode::NOT_FOUND, b"").0, Outcome::Drop);
        assert_eq!(
            outcome_of(StatusCode::INTERNAL_SERVER_ERROR, b"").0,
            Outcome::Retry
        );
        assert_eq!(
            outcome_of(StatusCode::BAD_REQUEST, br#"{"status": "SUCCESS"}"#).0,
            Outcome::Retry
        );
    }

    #[test]
    fn subscriptions_take_route_or_the_default_route() {
        let body = br#"[
            {"pubsubname": "order_pub_sub", "topic": "orders", "route": "/events/order_pub_sub/orders", "metadata": {}},
            {"pubsubname": "p", "topic": "t", "routes": {"default": "/t", "rules": [{"match": "event.type == 'x'", "path": "/x"}]}, "deadLetterTopic": "poison"},
            {"pubsubname": "p", "topic": "only-rules", "routes": {"rules": [{"match": "event.type == 'x'", "path": "/x"}]}},
            {"pubsubname": "p", "topic": "raw", "route": "/raw", "metadata": {"rawPayload": "true", "n": 3}}
        ]"#;
        let subscriptions = parse_subscriptions(body).unwrap();
        assert_eq!(subscriptions.len(), 3);
        assert_eq!(subscriptions[0].route, "/events/order_pub_sub/orders");
        assert_eq!(subscriptions[1].route, "/t");
        assert_eq!(subscriptions[1].dead_letter_topic, "poison");
        assert_eq!(subscriptions[2].metadata["rawPayload"], "true");
        assert_eq!(subscriptions[2].metadata["n"], "3");
        assert!(parse_subscriptions(b"{}").is_err());
    }
}
