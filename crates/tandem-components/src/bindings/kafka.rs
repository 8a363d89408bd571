//! `bindings.kafka`: writes records to one Kafka topic (`create`) and reads from
//! several, compatible with Dapr's binding.
//!
//! It is `pubsub.kafka` underneath — the same connections, authentication, headers and
//! commit rules: `create` writes the data to `publishTopic` with the request's metadata
//! as headers (`partitionKey` the key) and returns once the broker acknowledged it; as
//! an input binding it joins `consumerGroup` on `topics` and hands each record to the
//! app with its headers and `__key`, `__topic`, `__partition`, `__offset` and
//! `__timestamp` as metadata, committing its offset only once the app took it.
//!
//! Difference from Dapr, so that no record is lost: a record the app refuses is offered
//! again until it takes it (Dapr's binding, without `consumeRetryEnabled`, logs the
//! error and moves on).

use std::sync::Arc;

use async_trait::async_trait;
use tandem_spec::{ComponentMetadata, ResourceError};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Binding, BindingError, Handle, InputEvent, InvokeRequest, InvokeResponse, Outcome};
use crate::pubsub::kafka::{self, KafkaPubSub};
use crate::pubsub::{Deliver, Message};

/// The pub/sub component's fields, and the binding's own topics.
pub const METADATA: &[&str] = {
    const OWN: [&str; 2] = ["topics", "publishTopic"];
    const ALL: [&str; OWN.len() + kafka::METADATA.len()] = {
        let mut all = [""; OWN.len() + kafka::METADATA.len()];
        let mut i = 0;
        while i < OWN.len() {
            all[i] = OWN[i];
            i += 1;
        }
        while i < all.len() {
            all[i] = kafka::METADATA[i - OWN.len()];
            i += 1;
        }
        all
    };
    &ALL
};

/// The Kafka binding.
pub struct KafkaBinding {
    kafka: KafkaPubSub,
    publish_topic: Option<String>,
    topics: Vec<String>,
}

impl KafkaBinding {
    pub async fn build(metadata: &ComponentMetadata) -> Result<Arc<dyn Binding>, ResourceError> {
        let topics: Vec<String> = metadata
            .get("topics")
            .map(|topics| {
                topics
                    .split(',')
                    .map(str::trim)
                    .filter(|topic| !topic.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        // Dapr's binding joins `consumerGroup` only (no app id stands in for it).
        if !topics.is_empty() && metadata.get("consumerGroup").is_none() {
            return Err(metadata.field_error("consumerGroup", "is required to read `topics`"));
        }
        Ok(Arc::new(Self {
            kafka: KafkaPubSub::open(metadata).await?,
            publish_topic: metadata.get("publishTopic").map(str::to_owned),
            topics,
        }))
    }
}

#[async_trait]
impl Binding for KafkaBinding {
    fn operations(&self) -> &'static [&'static str] {
        &["create"]
    }

    async fn invoke(&self, request: InvokeRequest) -> Result<Option<InvokeResponse>, BindingError> {
        let topic = self.publish_topic.clone().ok_or_else(|| {
            BindingError::Invalid(
                "the binding has no publishTopic: set it in the component to write to Kafka"
                    .to_owned(),
            )
        })?;
        self.kafka
            .write(Message {
                topic,
                data: request.data,
                metadata: request.metadata,
            })
            .await
            .map_err(|error| BindingError::failed("writing to Kafka", error))?;
        Ok(None)
    }

    fn reads(&self) -> bool {
        !self.topics.is_empty()
    }

    async fn read(
        &self,
        handler: Arc<dyn Handle>,
        stop: CancellationToken,
    ) -> Result<JoinHandle<()>, BindingError> {
        let group = self.kafka.group().ok_or(BindingError::NotInput)?.to_owned();
        self.kafka
            .read(
                &group,
                self.topics.clone(),
                Arc::new(ToHandler(handler)),
                stop,
            )
            .await
            .map_err(|error| BindingError::failed("reading from Kafka", error))
    }
}

/// Hands the records read to the binding's handler, with their metadata.
struct ToHandler(Arc<dyn Handle>);

#[async_trait]
impl Deliver for ToHandler {
    async fn deliver(&self, message: Message) -> Outcome {
        self.0
            .handle(InputEvent {
                data: message.data,
                metadata: message.metadata,
            })
            .await
    }
}
