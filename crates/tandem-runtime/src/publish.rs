//! Publishing: wrap the payload in a CloudEvent (unless asked not to) and hand it to
//! the named broker.

use std::collections::HashMap;

use bytes::Bytes;
use tandem_components::pubsub::Message;
use tandem_resiliency::Verdict;

use crate::cloudevent::{self, CLOUDEVENT_CONTENT_TYPE, Origin};
use crate::error::Error;
use crate::runtime::Runtime;

/// One publish call, as both front doors receive it.
#[derive(Debug, Clone, Default)]
pub struct PublishRequest {
    pub pubsub: String,
    pub topic: String,
    pub data: Bytes,
    /// The payload's content type; `text/plain` when absent.
    pub content_type: Option<String>,
    /// `metadata.*` query parameters / gRPC metadata: `rawPayload`, `ttlInSeconds`, ...
    pub metadata: HashMap<String, String>,
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
}

impl Runtime {
    /// Publishes one event.
    pub async fn publish(&self, request: PublishRequest) -> Result<(), Error> {
        if request.pubsub.is_empty() {
            return Err(Error::PubSubEmpty);
        }
        let broker = self
            .pubsub(&request.pubsub)
            .ok_or_else(|| Error::PubSubNotFound(request.pubsub.clone()))?;
        if request.topic.is_empty() {
            return Err(Error::TopicEmpty(request.pubsub));
        }
        let raw_payload = request
            .metadata
            .get("rawPayload")
            .is_some_and(|value| value.eq_ignore_ascii_case("true"));
        let data = if raw_payload {
            request.data
        } else {
            let origin = Origin {
                app_id: self.app_id(),
                pubsub: &request.pubsub,
                topic: &request.topic,
                traceparent: request.traceparent.as_deref(),
                tracestate: request.tracestate.as_deref(),
            };
            let content_type = request.content_type.as_deref();
            let mut event = if content_type.is_some_and(|t| t.starts_with(CLOUDEVENT_CONTENT_TYPE))
            {
                cloudevent::complete(&origin, &request.data).map_err(|reason| {
                    Error::CloudEvent {
                        pubsub: request.pubsub.clone(),
                        topic: request.topic.clone(),
                        reason,
                    }
                })?
            } else {
                cloudevent::wrap(&origin, &request.data, content_type)
            };
            if let Some(ttl) = request.metadata.get("ttlInSeconds") {
                let seconds = ttl.parse().map_err(|_| {
                    Error::Malformed(format!(
                        "metadata.ttlInSeconds must be a whole number of seconds, not '{ttl}'"
                    ))
                })?;
                cloudevent::expire_after(&mut event, seconds);
            }
            Bytes::from(serde_json::to_vec(&event).expect("a JSON map serialises"))
        };
        let message = Message {
            topic: request.topic.clone(),
            data,
            metadata: request.metadata,
        };
        // The broker call runs under the component's outbound policy; every broker
        // failure may be retried.
        let policy = self
            .resiliency()
            .for_component_outbound(&request.pubsub, self.component_kind(&request.pubsub));
        policy
            .run(|| broker.publish(message.clone()), |_| Verdict::Retryable)
            .await
            .map_err(|failure| Error::Publish {
                pubsub: request.pubsub,
                topic: request.topic,
                reason: failure.to_string(),
            })
    }
}
