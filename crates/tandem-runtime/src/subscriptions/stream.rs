//! Streaming subscriptions (`SubscribeTopicEventsAlpha1`): an app opens a gRPC stream to
//! its sidecar, names a pub/sub and a topic, and gets the topic's events on that stream,
//! answering each one — the SDKs' `client.subscribe(...)`, with no app port and no
//! `/dapr/subscribe`.
//!
//! The broker subscription is made before [`Subscriptions::stream`] returns, so what is
//! published after the app got its initial response reaches it. Each event waits for
//! the app's answer; an event whose stream ends unanswered (the app stopped, crashed or
//! cancelled) is not acknowledged, so the broker delivers it again — to the next stream
//! of that topic. With a dead-letter topic, an event the app answers `DROP` or `RETRY` is
//! published there and then acknowledged, as with other subscriptions. The subscription
//! lives as long as the [`EventStream`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use serde_json::{Map, Value};
use tandem_components::pubsub::{Deliver, Message, Outcome, Subscribe};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::Subscriptions;
use crate::cloudevent::{self, Origin};
use crate::error::Error;
use crate::metadata::SubscriptionInfo;

/// What a streaming subscriber asks for in its initial request.
#[derive(Debug, Clone, Default)]
pub struct StreamRequest {
    pub pubsub: String,
    pub topic: String,
    /// Subscription metadata (`rawPayload`, broker settings such as `queueName`).
    pub metadata: BTreeMap<String, String>,
    pub dead_letter_topic: Option<String>,
}

/// One event on its way to a streaming subscriber, with where its answer goes.
pub struct StreamedEvent {
    /// The CloudEvent, as delivered to any subscriber.
    pub event: Map<String, Value>,
    pub pubsub: String,
    pub topic: String,
    /// Where the app's answer goes; dropping it unanswered means "deliver it again".
    pub answer: oneshot::Sender<Outcome>,
}

/// The events of one streaming subscription. Dropping it ends the subscription.
pub struct EventStream {
    pub events: mpsc::Receiver<StreamedEvent>,
    /// Cancels the broker subscription when the stream goes.
    _end: DropGuard,
    /// Takes the subscription off the metadata API's list when the stream goes.
    _listed: Listed,
}

/// A streaming subscription's entry in the metadata API's list.
struct Listed {
    id: u64,
    subscriptions: Arc<parking_lot::Mutex<Vec<(u64, SubscriptionInfo)>>>,
}

impl Drop for Listed {
    fn drop(&mut self) {
        self.subscriptions.lock().retain(|(id, _)| *id != self.id);
    }
}

static NEXT_STREAM: AtomicU64 = AtomicU64::new(1);

/// How many events may wait for the subscriber to take them. Small: the broker keeps the
/// rest, and the delivery slots bound what is in flight.
const WAITING_EVENTS: usize = 16;

impl Subscriptions {
    /// Subscribes a stream to `request`'s topic; the broker subscription is made when
    /// this returns.
    pub async fn stream(&self, request: StreamRequest) -> Result<EventStream, Error> {
        if request.pubsub.is_empty() {
            return Err(Error::PubSubEmpty);
        }
        if request.topic.is_empty() {
            return Err(Error::TopicEmpty(request.pubsub));
        }
        let broker = self
            .publisher
            .broker(&request.pubsub)
            .ok_or_else(|| Error::PubSubNotFound(request.pubsub.clone()))?;
        let (sender, events) = mpsc::channel(WAITING_EVENTS);
        let raw_payload = request
            .metadata
            .get("rawPayload")
            .is_some_and(|value| value.eq_ignore_ascii_case("true"));
        let delivery = Arc::new(StreamDelivery {
            sender,
            publisher: self.publisher.clone(),
            dead_letter_topic: request
                .dead_letter_topic
                .clone()
                .filter(|topic| !topic.is_empty()),
            app_id: self.app_id.clone(),
            pubsub: request.pubsub.clone(),
            topic: request.topic.clone(),
            raw_payload,
        });
        let end = self.stop.child_token();
        broker
            .pubsub
            .subscribe(
                Subscribe {
                    topic: request.topic.clone(),
                    metadata: request.metadata.clone().into_iter().collect(),
                },
                delivery,
                end.clone(),
            )
            .await
            .map_err(|cause| Error::Subscribe {
                pubsub: request.pubsub.clone(),
                topic: request.topic.clone(),
                cause: cause.to_string(),
            })?;
        tracing::info!(pubsub = %request.pubsub, topic = %request.topic, "streaming subscription opened");
        let id = NEXT_STREAM.fetch_add(1, Ordering::Relaxed);
        self.streams.lock().push((id, stream_info(&request)));
        Ok(EventStream {
            events,
            _end: CancellationToken::drop_guard(end),
            _listed: Listed {
                id,
                subscriptions: self.streams.clone(),
            },
        })
    }
}

/// How a streaming subscription shows in the metadata API: type `STREAMING`, every
/// event to the stream's one route, `/`, as daprd lists it.
fn stream_info(request: &StreamRequest) -> SubscriptionInfo {
    SubscriptionInfo {
        pubsub: request.pubsub.clone(),
        topic: request.topic.clone(),
        rules: vec![crate::metadata::RuleInfo {
            condition: String::new(),
            path: "/".into(),
        }],
        metadata: request.metadata.clone(),
        dead_letter_topic: request.dead_letter_topic.clone().unwrap_or_default(),
        origin: "STREAMING",
    }
}

/// Hands a subscription's messages to its stream and waits for the app's answers.
struct StreamDelivery {
    sender: mpsc::Sender<StreamedEvent>,
    /// Where dead-lettered events are published.
    publisher: Arc<crate::publish::Publisher>,
    dead_letter_topic: Option<String>,
    app_id: String,
    pubsub: String,
    topic: String,
    raw_payload: bool,
}

#[async_trait]
impl Deliver for StreamDelivery {
    async fn deliver(&self, message: Message) -> Outcome {
        let origin = Origin {
            app_id: &self.app_id,
            pubsub: &self.pubsub,
            topic: &self.topic,
            traceparent: None,
            tracestate: None,
        };
        let event = cloudevent::for_delivery(&origin, &message.data, self.raw_payload);
        if cloudevent::has_expired(&event) {
            tracing::warn!(pubsub = %self.pubsub, topic = %self.topic, "event expired before it could be delivered; dropped");
            return Outcome::Drop;
        }
        let (answer, answered) = oneshot::channel();
        let streamed = StreamedEvent {
            event,
            pubsub: self.pubsub.clone(),
            topic: self.topic.clone(),
            answer,
        };
        if self.sender.send(streamed).await.is_err() {
            // The stream is gone: the broker keeps the message for the next one.
            return Outcome::Retry;
        }
        // No answer (the stream ended): not the app refusing it, so never dead-lettered.
        let Ok(outcome) = answered.await else {
            return Outcome::Retry;
        };
        match (outcome, &self.dead_letter_topic) {
            // As with other subscriptions: what the app refuses (`DROP`) or did not
            // process (`RETRY`) goes to the dead-letter topic, then is acknowledged.
            (Outcome::Drop | Outcome::Retry, Some(dead_letter)) => {
                match self
                    .publisher
                    .forward(&self.pubsub, dead_letter, &message)
                    .await
                {
                    Ok(()) => {
                        tracing::warn!(pubsub = %self.pubsub, topic = %self.topic, "event sent to dead-letter topic '{dead_letter}' (the streaming subscriber answered {outcome:?})");
                        Outcome::Drop
                    }
                    Err(error) => {
                        tracing::error!(pubsub = %self.pubsub, topic = %self.topic, "the event could not be sent to dead-letter topic '{dead_letter}': {error}; it stays unacknowledged and will be redelivered");
                        Outcome::Retry
                    }
                }
            }
            (outcome, _) => outcome,
        }
    }
}
