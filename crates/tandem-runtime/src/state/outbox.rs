//! The transactional outbox (`outboxPublishPubsub` and `outboxPublishTopic` on a state
//! store): every upsert of a state transaction is published as a CloudEvent to that
//! topic — if, and only if, the transaction committed.
//!
//! Dapr's two steps, so a consumer never sees an event of a transaction that failed
//! and never misses one of a transaction that committed:
//!
//! 1. Before the transaction, each upsert's event (id `outbox-{uuid}`) is published to
//!    an internal topic, `{namespace}{appid}{topic}outbox` on `outboxPubsub` (by default
//!    the publishing pub/sub); the transaction then also writes a marker key — the
//!    event's id — so the marker exists exactly when the transaction committed. A failed
//!    internal publish fails the transaction before anything is written.
//! 2. The sidecar subscribes to its internal topic; for each event it waits until the
//!    marker is readable (the transaction may still be committing), then publishes the
//!    event to `outboxPublishTopic` on `outboxPublishPubsub` and deletes the marker. A
//!    marker that never appears (the transaction failed) drops the event when
//!    `outboxDiscardWhenMissingState` is on, else the broker delivers it again later.
//!
//! An upsert with `outbox.projection: "true"` is not stored: its value is what the
//! event carries for that key, while the upsert without it is what the store keeps.
//! The operation's metadata is copied into the event's attributes (but `id` and
//! `data`), as daprd copies it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{Map, Value};
use tandem_components::pubsub::{Deliver, Message, Outcome, Subscribe};
use tandem_spec::{ComponentMetadata, ResourceError};
use tokio_util::sync::CancellationToken;

use super::{Consistency, StateItem, StateOperation, StateService};
use crate::cloudevent::{self, CLOUDEVENT_CONTENT_TYPE, Origin};
use crate::error::Error;
use crate::publish::{PublishRequest, Publisher};

/// The pauses between looks for a transaction's marker: about ten seconds in all, as
/// daprd waits, the first look at once.
const MARKER_WAITS: &[u64] = &[0, 250, 500, 1000, 1500, 2500, 4000];

/// A store's outbox settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OutboxConfig {
    pub publish_pubsub: String,
    pub publish_topic: String,
    /// Where the internal topic lives: `outboxPubsub`, else `outboxPublishPubsub`.
    pub outbox_pubsub: String,
    pub discard_when_missing_state: bool,
}

impl OutboxConfig {
    /// The store's outbox, when it sets both `outboxPublishPubsub` and
    /// `outboxPublishTopic` (as daprd, one without the other is no outbox).
    pub fn read(metadata: &ComponentMetadata) -> Result<Option<Self>, ResourceError> {
        let text = |name: &str| metadata.get(name).unwrap_or_default().trim().to_owned();
        let (publish_pubsub, publish_topic) =
            (text("outboxPublishPubsub"), text("outboxPublishTopic"));
        if publish_pubsub.is_empty() || publish_topic.is_empty() {
            for name in ["outboxPublishPubsub", "outboxPublishTopic"] {
                if !text(name).is_empty() {
                    tracing::warn!(
                        "{}: `{name}` alone is no outbox: set both outboxPublishPubsub and \
                         outboxPublishTopic",
                        metadata.component().name
                    );
                }
            }
            return Ok(None);
        }
        let outbox_pubsub = match text("outboxPubsub") {
            pubsub if pubsub.is_empty() => publish_pubsub.clone(),
            pubsub => pubsub,
        };
        Ok(Some(Self {
            publish_pubsub,
            publish_topic,
            outbox_pubsub,
            discard_when_missing_state: metadata.bool_or("outboxDiscardWhenMissingState", false)?,
        }))
    }
}

/// What the outbox needs from the rest of the sidecar.
#[derive(Clone)]
pub(crate) struct OutboxParts {
    pub publisher: Arc<Publisher>,
    pub app_id: String,
    pub namespace: Option<String>,
}

impl OutboxParts {
    /// The internal topic of `topic`: `{namespace}{appid}{topic}outbox`, daprd's name,
    /// so a tandem and a daprd sidecar of one app share it.
    fn internal_topic(&self, topic: &str) -> String {
        format!(
            "{}{}{topic}outbox",
            self.namespace.as_deref().unwrap_or_default(),
            self.app_id
        )
    }

    /// Step 1: publishes one event per upsert of `operations` to the internal topic and
    /// returns the operations to store — the projections taken out, a marker per event
    /// added.
    pub async fn stage(
        &self,
        config: &OutboxConfig,
        operations: Vec<StateOperation>,
    ) -> Result<Vec<StateOperation>, Error> {
        let is_projection = |item: &StateItem| {
            item.metadata
                .get("outbox.projection")
                .is_some_and(|value| is_truthy(value))
        };
        let mut projections: HashMap<String, StateItem> = HashMap::new();
        let mut stored = Vec::with_capacity(operations.len() * 2);
        for operation in operations {
            match operation {
                StateOperation::Upsert(item) if is_projection(&item) => {
                    projections.insert(item.key.clone(), item);
                }
                other => stored.push(other),
            }
        }
        let topic = self.internal_topic(&config.publish_topic);
        let mut markers = Vec::new();
        for operation in &stored {
            let StateOperation::Upsert(item) = operation else {
                continue;
            };
            let marker = format!("outbox-{}", uuid::Uuid::new_v4());
            let published = projections.get(&item.key).unwrap_or(item);
            let event = self.event(config, &topic, &marker, item, published);
            self.publisher
                .publish(PublishRequest {
                    pubsub: config.outbox_pubsub.clone(),
                    topic: topic.clone(),
                    data: Bytes::from(serde_json::to_vec(&event).expect("a JSON map serialises")),
                    content_type: Some(CLOUDEVENT_CONTENT_TYPE.to_owned()),
                    ..PublishRequest::default()
                })
                .await?;
            markers.push(StateOperation::Upsert(StateItem {
                key: marker,
                value: Bytes::from_static(b"\"0\""),
                ..StateItem::default()
            }));
        }
        stored.extend(markers);
        Ok(stored)
    }

    /// The event of one upsert: `published`'s value (the projection, if any) with the
    /// operation's metadata as attributes.
    fn event(
        &self,
        config: &OutboxConfig,
        topic: &str,
        marker: &str,
        operation: &StateItem,
        published: &StateItem,
    ) -> Map<String, Value> {
        let content_type = published
            .metadata
            .get("contentType")
            .cloned()
            // A value saved over HTTP is JSON text: it travels as JSON.
            .or_else(|| {
                serde_json::from_slice::<Value>(&published.value)
                    .is_ok()
                    .then(|| "application/json".to_owned())
            });
        let origin = Origin {
            app_id: &self.app_id,
            pubsub: &config.outbox_pubsub,
            topic,
            traceparent: None,
            tracestate: None,
        };
        let wrapped = cloudevent::wrap(&origin, &published.value, content_type.as_deref(), None);
        let mut event: Map<String, Value> =
            serde_json::from_slice(&wrapped).expect("a wrapped event is a JSON object");
        event.insert("id".into(), Value::String(marker.to_owned()));
        for (name, value) in &operation.metadata {
            if name != "id" && name != "data" {
                event.insert(name.clone(), Value::String(value.clone()));
            }
        }
        event
    }
}

/// Daprd's truthy strings.
fn is_truthy(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "y" | "yes" | "true" | "t" | "on" | "1"
    )
}

/// Step 2 for one store: the internal topic's subscriber.
struct Relay {
    store: String,
    config: OutboxConfig,
    state: Arc<StateService>,
    publisher: Arc<Publisher>,
    stop: CancellationToken,
}

impl Relay {
    /// Whether the transaction that wrote `marker` committed, looking for a while.
    async fn committed(&self, marker: &str) -> bool {
        for wait in MARKER_WAITS {
            tokio::select! {
                _ = self.stop.cancelled() => return false,
                _ = tokio::time::sleep(Duration::from_millis(*wait)) => {}
            }
            match self
                .state
                .get(&self.store, marker, Consistency::Strong)
                .await
            {
                Ok(Some(_)) => return true,
                Ok(None) => {}
                Err(error) => {
                    tracing::debug!("outbox of {}: reading {marker}: {error}", self.store);
                }
            }
        }
        false
    }
}

#[async_trait]
impl Deliver for Relay {
    async fn deliver(&self, message: Message) -> Outcome {
        let Ok(Value::Object(mut event)) = serde_json::from_slice::<Value>(&message.data) else {
            tracing::error!(
                "outbox of {}: an internal message is not a CloudEvent; dropped",
                self.store
            );
            return Outcome::Drop;
        };
        let Some(marker) = event.get("id").and_then(Value::as_str).map(str::to_owned) else {
            tracing::error!(
                "outbox of {}: an internal event has no id; dropped",
                self.store
            );
            return Outcome::Drop;
        };
        if !self.committed(&marker).await {
            if self.config.discard_when_missing_state {
                tracing::error!(
                    "outbox of {}: the transaction of {marker} did not commit; its event to {} \
                     is discarded (outboxDiscardWhenMissingState)",
                    self.store,
                    self.config.publish_topic
                );
                return Outcome::Drop;
            }
            tracing::warn!(
                "outbox of {}: the transaction of {marker} is not committed (yet); its event \
                 is delivered again later",
                self.store
            );
            return Outcome::Retry;
        }
        event.insert(
            "topic".into(),
            Value::String(self.config.publish_topic.clone()),
        );
        event.insert(
            "pubsubname".into(),
            Value::String(self.config.publish_pubsub.clone()),
        );
        let published = self
            .publisher
            .publish(PublishRequest {
                pubsub: self.config.publish_pubsub.clone(),
                topic: self.config.publish_topic.clone(),
                data: Bytes::from(serde_json::to_vec(&event).expect("a JSON map serialises")),
                content_type: Some(CLOUDEVENT_CONTENT_TYPE.to_owned()),
                ..PublishRequest::default()
            })
            .await;
        if let Err(error) = published {
            tracing::warn!(
                "outbox of {}: publishing {marker}: {error}; trying again later",
                self.store
            );
            return Outcome::Retry;
        }
        // The event is out: the marker has done its work. A marker left behind (the
        // delete failed) only costs a key; the event is not sent twice for it.
        if let Err(error) = self.state.delete(&self.store, &marker, None, false).await {
            tracing::warn!(
                "outbox of {}: deleting marker {marker}: {error}",
                self.store
            );
        }
        Outcome::Done
    }
}

/// Subscribes each outbox store's relay to its internal topic, until `stop`.
pub(crate) async fn start(state: Arc<StateService>, parts: OutboxParts, stop: CancellationToken) {
    for (store, config) in state.outboxes() {
        let Some(broker) = parts.publisher.broker(&config.outbox_pubsub) else {
            tracing::warn!(
                "outbox of {store}: pub/sub '{}' is not loaded; its transactions publish nothing",
                config.outbox_pubsub
            );
            continue;
        };
        let relay = Arc::new(Relay {
            store: store.clone(),
            config: config.clone(),
            state: state.clone(),
            publisher: parts.publisher.clone(),
            stop: stop.clone(),
        });
        let subscription = Subscribe {
            topic: parts.internal_topic(&config.publish_topic),
            metadata: HashMap::new(),
        };
        if let Err(error) = broker
            .pubsub
            .subscribe(subscription, relay, stop.child_token())
            .await
        {
            tracing::error!(
                "outbox of {store}: subscribing to its internal topic on '{}' failed: {error}",
                config.outbox_pubsub
            );
        }
    }
}
