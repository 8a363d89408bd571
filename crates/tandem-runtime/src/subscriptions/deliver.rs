//! Delivering events to the app: choosing the route by the subscription's routing
//! rules, POSTing the event there (a gRPC app: `OnTopicEvent` with that path), reading
//! the answer the way Dapr does, and sending what the app refuses for good to the
//! subscription's dead-letter topic.
//!
//! | an HTTP app answers                           | outcome |
//! |-----------------------------------------------|---------|
//! | 2xx, body empty / not JSON / `SUCCESS`        | done    |
//! | 2xx with `{"status": "RETRY"}`                | retry   |
//! | 2xx with `{"status": "DROP"}`                 | dropped, with a warning |
//! | 2xx with another status word                  | retry, with a warning (as Dapr) |
//! | 404                                           | dropped, with a warning |
//! | any other status, or no answer                | retry   |
//!
//! A gRPC app's answers are read by the app channel (`app_channel/grpc.rs`): `SUCCESS`,
//! `RETRY`, `DROP`; `Unimplemented` is dropped, another error retried.
//!
//! Retries follow the pub/sub component's inbound resiliency policy; when it gives up
//! (with no policy: after the one attempt) the broker redelivers the event later.
//!
//! With a `deadLetterTopic`, as daprd: a dropped event (`DROP`, 404), one whose
//! retries ran out, an expired one, and one no routing rule matches are published to
//! the dead-letter topic on the same pub/sub, byte for byte as they were delivered,
//! and only then acknowledged. If that publish fails the event is not acknowledged:
//! the broker redelivers it and it is tried again, so nothing is lost. An event the
//! circuit breaker kept from the app, or one whose retries ended because the sidecar
//! is stopping, is left for redelivery rather than dead-lettered: the app never
//! refused it.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde::Deserialize;
use serde_json::{Map, Value};
use tandem_components::pubsub::{Deliver, Message, Outcome};
use tandem_resiliency::{Failure, Policy, Verdict};
use tokio_util::sync::CancellationToken;

use super::Subscription;
use crate::app_channel::AppChannel;
use crate::cloudevent::{self, CLOUDEVENT_CONTENT_TYPE, Origin};
use crate::publish::Publisher;

/// Delivers one subscription's events to the app.
pub(crate) struct AppDelivery {
    pub app: AppChannel,
    pub app_id: String,
    pub subscription: Subscription,
    /// The pub/sub component's inbound resiliency policy.
    pub policy: Policy,
    /// Where dead-lettered events are published.
    pub publisher: Arc<Publisher>,
    /// Fired when the subscription stops (pause or shutdown).
    pub stop: CancellationToken,
}

/// An event ready to go to the app.
pub(super) struct Prepared {
    pub event: Map<String, Value>,
    pub id: String,
    /// The route its subscription's rules chose.
    pub route: String,
}

/// How a delivery ended, before the dead-letter topic is considered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ending {
    /// The app processed it.
    Done,
    /// Refused for good by the app (`DROP`, 404), expired, or matched by no rule.
    Refused,
    /// Failed on every attempt the policy allowed.
    GaveUp,
    /// Not refused by the app, but not done either (circuit open): redelivered later.
    Later,
}

#[async_trait]
impl Deliver for AppDelivery {
    async fn deliver(&self, message: Message) -> Outcome {
        let (ending, why) = self.try_deliver(&message).await;
        self.settle(&message, ending, why).await
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
    /// The event a broker message becomes, and where it goes: its CloudEvent, id and
    /// route — or how it ends without reaching the app (expired, matched by no rule).
    pub(super) fn prepare(&self, message: &Message) -> Result<Prepared, (Ending, String)> {
        let subscription = &self.subscription;
        let origin = Origin {
            app_id: &self.app_id,
            pubsub: &subscription.pubsub,
            topic: &subscription.topic,
            traceparent: None,
            tracestate: None,
        };
        let event = cloudevent::for_delivery(&origin, &message.data, self.raw_payload());
        let id = text_field(&event, "id");
        if cloudevent::has_expired(&event) {
            tracing::warn!(
                pubsub = %subscription.pubsub, topic = %subscription.topic,
                "event {id} expired at {} before it could be delivered; dropped",
                text_field(&event, "expiration")
            );
            return Err((Ending::Refused, format!("event {id}: it expired")));
        }
        let Some(route) = subscription.routing.route(&event) else {
            tracing::debug!(
                pubsub = %subscription.pubsub, topic = %subscription.topic,
                "event {id} matches no routing rule and the subscription has no default route: not delivered"
            );
            return Err((
                Ending::Refused,
                format!("event {id}: no routing rule matched it"),
            ));
        };
        let route = route.to_owned();
        Ok(Prepared { event, id, route })
    }

    /// Whether the subscription asks for the broker's bytes as they are (`rawPayload`).
    pub(super) fn raw_payload(&self) -> bool {
        self.subscription
            .metadata
            .get("rawPayload")
            .is_some_and(|value| value.eq_ignore_ascii_case("true"))
    }

    /// Routes the event and delivers it under the component's inbound policy: a
    /// delivery the app asks to retry (or fails) is retried as the policy says.
    async fn try_deliver(&self, message: &Message) -> (Ending, String) {
        let subscription = &self.subscription;
        let Prepared { event, id, route } = match self.prepare(message) {
            Ok(prepared) => prepared,
            Err(ending) => return ending,
        };
        let route = route.as_str();
        let body = Bytes::from(serde_json::to_vec(&event).expect("a JSON map serialises"));
        let headers = delivery_headers(&event, &subscription.pubsub);
        if self.policy.is_none() {
            return match self.deliver_once(&event, route, &id, headers, body).await {
                Outcome::Done => (Ending::Done, String::new()),
                Outcome::Drop => (Ending::Refused, format!("event {id}: the app dropped it")),
                Outcome::Retry => (
                    Ending::GaveUp,
                    format!("event {id}: the app did not process it"),
                ),
            };
        }
        let attempt = || async {
            match self
                .deliver_once(&event, route, &id, headers.clone(), body.clone())
                .await
            {
                Outcome::Retry => Err(NotDone),
                settled => Ok(settled),
            }
        };
        match self.policy.run(attempt, |_| Verdict::Retryable).await {
            Ok(Outcome::Drop) => (Ending::Refused, format!("event {id}: the app dropped it")),
            Ok(_) => (Ending::Done, String::new()),
            Err(failure @ Failure::CircuitOpen { .. }) => {
                tracing::warn!(
                    pubsub = %subscription.pubsub, topic = %subscription.topic, event = %id,
                    "delivery not done ({failure}); the broker will redeliver it"
                );
                (Ending::Later, format!("event {id}: {failure}"))
            }
            Err(failure) => (Ending::GaveUp, format!("event {id}: {failure}")),
        }
    }

    /// The outcome for the broker: without a dead-letter topic, a refused event is
    /// dropped and one the app gave up on is redelivered; with one, both are
    /// acknowledged once the dead-letter topic has them.
    pub(super) async fn settle(&self, message: &Message, ending: Ending, why: String) -> Outcome {
        let subscription = &self.subscription;
        let dead_letter = subscription.dead_letter_topic.as_deref();
        match (ending, dead_letter) {
            (Ending::Done, _) => Outcome::Done,
            (Ending::Later, _) => Outcome::Retry,
            (Ending::Refused, None) => Outcome::Drop,
            (Ending::GaveUp, None) => {
                // Without a policy, the one attempt's warning has said it all.
                if !self.policy.is_none() {
                    tracing::warn!(
                        pubsub = %subscription.pubsub, topic = %subscription.topic,
                        "delivery not done ({why}); the broker will redeliver it"
                    );
                }
                Outcome::Retry
            }
            (Ending::GaveUp, Some(_)) if self.stop.is_cancelled() => {
                // Stopping is not the app refusing: the event waits for the next start.
                Outcome::Retry
            }
            (Ending::Refused | Ending::GaveUp, Some(topic)) => {
                match self
                    .publisher
                    .forward(&subscription.pubsub, topic, message)
                    .await
                {
                    Ok(()) => {
                        tracing::warn!(
                            pubsub = %subscription.pubsub, topic = %subscription.topic,
                            "event sent to dead-letter topic '{topic}' ({why})"
                        );
                        Outcome::Drop
                    }
                    Err(error) => {
                        tracing::error!(
                            pubsub = %subscription.pubsub, topic = %subscription.topic,
                            "the event could not be sent to dead-letter topic '{topic}' ({why}): {error}; it stays unacknowledged and will be redelivered"
                        );
                        Outcome::Retry
                    }
                }
            }
        }
    }

    /// Delivers the event to `route` once and reads the answer: POSTed to an HTTP app
    /// (as `body`), `OnTopicEvent` with `route` as its path to a gRPC app.
    async fn deliver_once(
        &self,
        event: &Map<String, Value>,
        route: &str,
        id: &str,
        headers: HeaderMap,
        body: Bytes,
    ) -> Outcome {
        let subscription = &self.subscription;
        let (outcome, warning) = if let Some(grpc) = self.app.grpc() {
            let _permit = self.app.permit().await;
            grpc.deliver(event, &subscription.pubsub, &subscription.topic, route)
                .await
        } else {
            match self.app.call(Method::POST, route, headers, body).await {
                Ok(response) => outcome_of(response.status, &response.body),
                Err(error) => (Outcome::Retry, Some(error.to_string())),
            }
        };
        if let Some(warning) = warning {
            tracing::warn!(
                pubsub = %subscription.pubsub, topic = %subscription.topic, event = %id,
                "delivery to {}: {warning}; {}",
                if route.is_empty() { "the app" } else { route },
                match outcome {
                    Outcome::Retry => "not done",
                    Outcome::Drop => "the app refuses it",
                    Outcome::Done => "done",
                }
            );
        }
        outcome
    }
}

/// A text field of the event, or empty.
pub(super) fn text_field(event: &Map<String, Value>, field: &str) -> String {
    event
        .get(field)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// The headers of a delivery, as daprd sends them: the CloudEvent content type, the
/// pub/sub's name (`pubsubname`) and the trace context.
fn delivery_headers(event: &Map<String, Value>, pubsub: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(CLOUDEVENT_CONTENT_TYPE),
    );
    if let Ok(pubsub) = HeaderValue::from_str(pubsub) {
        headers.insert("pubsubname", pubsub);
    }
    for field in ["traceparent", "tracestate"] {
        if let Some(value) = event.get(field).and_then(Value::as_str)
            && let Ok(value) = HeaderValue::from_str(value)
            && !value.is_empty()
        {
            headers.insert(field, value);
        }
    }
    headers
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
    subscription: &Subscription,
    policy: Policy,
    publisher: Arc<Publisher>,
    stop: CancellationToken,
) -> Arc<AppDelivery> {
    Arc::new(AppDelivery {
        app: app.clone(),
        app_id: app_id.to_owned(),
        subscription: subscription.clone(),
        policy,
        publisher,
        stop,
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
}
