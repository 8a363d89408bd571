//! `bindings.mqtt3`: one MQTT topic, written to (`create`) and read from, compatible
//! with Dapr's binding.
//!
//! It is `pubsub.mqtt3` underneath — the same connections, TLS, reconnection and
//! acknowledgement rules — aimed at the one `topic` of the component: `create` publishes
//! the data there (or to the request's `topic` metadata) and returns once the broker
//! acknowledged it (QoS 1); as an input binding it subscribes to `topic` (wildcards
//! allowed) and hands each message to the app with its topic as the `topic` metadata,
//! acknowledging it to the broker only once the app took it.
//!
//! Differences from Dapr, both so that no message is lost: a message the app refuses is
//! offered again until it takes it (Dapr gives up after `backOffMaxRetries`, which is
//! read and not used), and publishing is not retried behind the caller's back — a
//! failed `create` fails loudly.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use tandem_spec::{ComponentMetadata, ResourceError};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Binding, BindingError, Handle, InputEvent, InvokeRequest, InvokeResponse, Outcome};
use crate::pubsub::mqtt3::Mqtt3;
use crate::pubsub::{Deliver, Message, PubSub, Subscribe};

pub const METADATA: &[&str] = &[
    "url",
    "topic",
    "consumerID",
    "qos",
    "retain",
    "cleanSession",
    "backOffMaxRetries",
    "caCert",
    "clientCert",
    "clientKey",
];

/// The MQTT binding.
pub struct Mqtt3Binding {
    broker: Arc<dyn PubSub>,
    topic: String,
}

impl Mqtt3Binding {
    pub async fn build(metadata: &ComponentMetadata) -> Result<Arc<dyn Binding>, ResourceError> {
        let topic = metadata.required("topic")?.to_owned();
        let _: i64 = metadata.number_or("backOffMaxRetries", 3)?;
        // Dapr's binding starts clean sessions unless told otherwise, and works without
        // a client id; one of its own keeps two sidecars from taking each other's.
        let client_id = format!(
            "{}-{}",
            metadata.component().name,
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let metadata = metadata
            .clone()
            .with_default("cleanSession", "true")
            .with_default("consumerID", client_id);
        Ok(Arc::new(Self {
            broker: Mqtt3::build(&metadata).await?,
            topic,
        }))
    }
}

#[async_trait]
impl Binding for Mqtt3Binding {
    fn operations(&self) -> &'static [&'static str] {
        &["create"]
    }

    async fn invoke(&self, request: InvokeRequest) -> Result<Option<InvokeResponse>, BindingError> {
        let topic = request
            .metadata
            .get("topic")
            .filter(|topic| !topic.is_empty())
            .cloned()
            .unwrap_or_else(|| self.topic.clone());
        self.broker
            .publish(Message {
                topic,
                data: request.data,
                metadata: request.metadata,
            })
            .await
            .map_err(|error| BindingError::failed("publishing to MQTT", error))?;
        Ok(None)
    }

    fn reads(&self) -> bool {
        true
    }

    async fn read(
        &self,
        handler: Arc<dyn Handle>,
        stop: CancellationToken,
    ) -> Result<JoinHandle<()>, BindingError> {
        self.broker
            .subscribe(
                Subscribe {
                    topic: self.topic.clone(),
                    metadata: HashMap::new(),
                },
                Arc::new(ToHandler(handler)),
                stop,
            )
            .await
            .map_err(|error| BindingError::failed("subscribing to MQTT", error))
    }
}

/// Hands the subscription's messages to the binding's handler.
struct ToHandler(Arc<dyn Handle>);

#[async_trait]
impl Deliver for ToHandler {
    async fn deliver(&self, message: Message) -> Outcome {
        self.0
            .handle(InputEvent {
                data: message.data,
                metadata: HashMap::from([("topic".to_owned(), message.topic)]),
            })
            .await
    }
}
