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
            let expires_in = match request.metadata.get("ttlInSeconds") {
                None => None,
                Some(ttl) => Some(ttl.parse().map_err(|_| {
                    Error::Malformed(format!(
                        "metadata.ttlInSeconds must be a whole number of seconds, not '{ttl}'"
                    ))
                })?),
            };
            if content_type.is_some_and(|t| t.starts_with(CLOUDEVENT_CONTENT_TYPE)) {
                let mut event = cloudevent::complete(&origin, &request.data).map_err(|reason| {
                    Error::CloudEvent {
                        pubsub: request.pubsub.clone(),
                        topic: request.topic.clone(),
                        reason,
                    }
                })?;
                if let Some(seconds) = expires_in {
                    cloudevent::expire_after(&mut event, seconds);
                }
                Bytes::from(serde_json::to_vec(&event).expect("a JSON map serialises"))
            } else {
                Bytes::from(cloudevent::wrap(
                    &origin,
                    &request.data,
                    content_type,
                    expires_in,
                ))
            }
        };
        let message = Message {
            topic: request.topic.clone(),
            data,
            metadata: request.metadata,
        };
        // The broker call runs under the component's outbound policy, when it has one;
        // every broker failure may be retried.
        let published = match self.publish_policy(&request.pubsub) {
            None => broker
                .publish(message)
                .await
                .map_err(|error| error.to_string()),
            Some(policy) => policy
                .run(|| broker.publish(message.clone()), |_| Verdict::Retryable)
                .await
                .map_err(|failure| failure.to_string()),
        };
        published.map_err(|reason| Error::Publish {
            pubsub: request.pubsub,
            topic: request.topic,
            reason,
        })
    }
}
