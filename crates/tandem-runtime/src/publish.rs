//! The publishing half of pub/sub: [`Publisher`] owns the loaded brokers, wraps each
//! payload in a CloudEvent (unless asked not to) and hands it to the named broker under
//! the component's outbound resiliency policy. Subscriptions find their brokers here.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tandem_components::pubsub::{Message, PubSub};
use tandem_resiliency::{Policy, Verdict};

use crate::cloudevent::{self, CLOUDEVENT_CONTENT_TYPE, Origin};
use crate::error::{Error, Reason};

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

/// One event of a bulk publish.
#[derive(Debug, Clone, Default)]
pub struct BulkEntry {
    /// The caller's id for the entry, unique in the request: failures name it.
    pub entry_id: String,
    pub data: Bytes,
    pub content_type: Option<String>,
    /// The entry's own metadata; it wins over the request's.
    pub metadata: HashMap<String, String>,
}

/// A bulk publish: many events to one topic, as both front doors receive it.
#[derive(Debug, Clone, Default)]
pub struct BulkPublishRequest {
    pub pubsub: String,
    pub topic: String,
    pub entries: Vec<BulkEntry>,
    /// The request's metadata, for every entry.
    pub metadata: HashMap<String, String>,
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
}

/// An entry of a bulk publish the broker did not take, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedEntry {
    pub entry_id: String,
    pub error: String,
}

/// A loaded pub/sub component.
pub(crate) struct Broker {
    pub pubsub: Arc<dyn PubSub>,
    /// Its `spec.type`, which picks Dapr's default inbound policies.
    pub kind: String,
    /// Its outbound resiliency policy, worked out once (publishing is hot); `None`
    /// when it has none.
    pub policy: Option<Policy>,
}

/// The brokers of one sidecar, by name, and publishing to them.
pub struct Publisher {
    app_id: String,
    brokers: HashMap<String, Broker>,
}

/// The longest TTL Dapr can represent (Go's `time.Duration` in nanoseconds); a larger
/// `ttlInSeconds` is capped to it, as daprd caps it.
const MAX_EVENT_TTL: Duration = Duration::from_secs(i64::MAX as u64 / 1_000_000_000);

impl Publisher {
    pub(crate) fn new(app_id: &str, brokers: HashMap<String, Broker>) -> Self {
        Self {
            app_id: app_id.to_owned(),
            brokers,
        }
    }

    /// The broker named `name`, for a subscription.
    pub(crate) fn broker(&self, name: &str) -> Option<&Broker> {
        self.brokers.get(name)
    }

    /// The names of the loaded brokers, sorted.
    pub(crate) fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.brokers.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// Publishes one event.
    pub async fn publish(&self, request: PublishRequest) -> Result<(), Error> {
        if request.pubsub.is_empty() {
            return Err(Error::PubSubEmpty);
        }
        let broker = self
            .brokers
            .get(&request.pubsub)
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
            self.envelope(&request)?
        };
        let message = Message {
            topic: request.topic.clone(),
            data,
            metadata: request.metadata,
        };
        send(broker, message).await.map_err(|cause| Error::Publish {
            pubsub: request.pubsub,
            topic: request.topic,
            cause,
        })
    }

    /// Publishes a message delivered from `pubsub` again, to `topic` of the same
    /// pub/sub, byte for byte (its CloudEvent is not touched): how a dead-lettered
    /// event reaches its dead-letter topic.
    pub(crate) async fn forward(
        &self,
        pubsub: &str,
        topic: &str,
        delivered: &Message,
    ) -> Result<(), Error> {
        let broker = self
            .brokers
            .get(pubsub)
            .ok_or_else(|| Error::PubSubNotFound(pubsub.to_owned()))?;
        let message = Message {
            topic: topic.to_owned(),
            data: delivered.data.clone(),
            metadata: delivered.metadata.clone(),
        };
        send(broker, message).await.map_err(|cause| Error::Publish {
            pubsub: pubsub.to_owned(),
            topic: topic.to_owned(),
            cause,
        })
    }

    /// Publishes every entry of a bulk request, each as its own event (as daprd's
    /// default bulk publisher does for brokers without a native bulk call): all are
    /// attempted, concurrently, and the ones that failed are returned. The pub/sub and
    /// topic are checked first, so a wrong name fails the whole request.
    pub async fn publish_bulk(
        &self,
        request: BulkPublishRequest,
    ) -> Result<Vec<FailedEntry>, Error> {
        if request.pubsub.is_empty() {
            return Err(Error::PubSubEmpty);
        }
        if !self.brokers.contains_key(&request.pubsub) {
            return Err(Error::PubSubNotFound(request.pubsub));
        }
        if request.topic.is_empty() {
            return Err(Error::TopicEmpty(request.pubsub));
        }
        let BulkPublishRequest {
            pubsub,
            topic,
            entries,
            metadata,
            traceparent,
            tracestate,
        } = request;
        let publishes = entries.into_iter().map(|entry| {
            let mut merged = metadata.clone();
            merged.extend(entry.metadata);
            let single = PublishRequest {
                pubsub: pubsub.clone(),
                topic: topic.clone(),
                data: entry.data,
                content_type: entry.content_type,
                metadata: merged,
                traceparent: traceparent.clone(),
                tracestate: tracestate.clone(),
            };
            let entry_id = entry.entry_id;
            async move {
                self.publish(single).await.err().map(|error| FailedEntry {
                    entry_id,
                    error: error.to_string(),
                })
            }
        });
        Ok(futures_util::future::join_all(publishes)
            .await
            .into_iter()
            .flatten()
            .collect())
    }

    /// The CloudEvent for `request`: a fresh envelope around the payload, or the
    /// publisher's own envelope completed.
    fn envelope(&self, request: &PublishRequest) -> Result<Bytes, Error> {
        let origin = Origin {
            app_id: &self.app_id,
            pubsub: &request.pubsub,
            topic: &request.topic,
            traceparent: request.traceparent.as_deref(),
            tracestate: request.tracestate.as_deref(),
        };
        let invalid = |reason: String| Error::CloudEvent {
            pubsub: request.pubsub.clone(),
            topic: request.topic.clone(),
            reason,
        };
        let expires_in = match request.metadata.get("ttlInSeconds") {
            None => None,
            Some(text) => Some(event_ttl(text).map_err(|error| invalid(error.to_string()))?),
        };
        let content_type = request.content_type.as_deref();
        if content_type.is_some_and(|t| t.starts_with(CLOUDEVENT_CONTENT_TYPE)) {
            let mut event = cloudevent::complete(&origin, &request.data).map_err(invalid)?;
            if let Some(ttl) = expires_in {
                cloudevent::expire_after(&mut event, ttl);
            }
            Ok(Bytes::from(
                serde_json::to_vec(&event).expect("a JSON map serialises"),
            ))
        } else {
            Ok(Bytes::from(cloudevent::wrap_with(
                &origin,
                &request.data,
                content_type,
                expires_in,
                &cloudevent::Overrides::from_metadata(&request.metadata),
            )))
        }
    }
}

/// Hands `message` to `broker` under its outbound policy.
async fn send(broker: &Broker, message: Message) -> Result<(), crate::error::Cause> {
    match &broker.policy {
        None => broker.pubsub.publish(message).await.map_err(Error::cause),
        // Every broker failure may be retried: a publish is not applied twice by
        // any broker tandem has (the message id is the broker's).
        Some(policy) => policy
            .run(
                || broker.pubsub.publish(message.clone()),
                |_| Verdict::Retryable,
            )
            .await
            .map_err(|failure| Error::cause(Reason(failure.to_string()))),
    }
}

/// Why a publish's `ttlInSeconds` was refused.
#[derive(Debug, PartialEq, thiserror::Error)]
enum EventTtlError {
    #[error("metadata ttlInSeconds must be higher than zero: actual is '{0}'")]
    NotPositive(String),
    #[error(
        "metadata ttlInSeconds must be a whole number of seconds or a duration such as `90s`: actual is '{0}'"
    )]
    NotADuration(String),
}

/// `metadata.ttlInSeconds` of a publish, read as daprd reads it: a whole number of
/// seconds or a Go duration (`90s`, `1h`), more than zero; larger than Dapr can
/// represent is capped.
fn event_ttl(text: &str) -> Result<Duration, EventTtlError> {
    let text = text.trim();
    let ttl = match text.parse::<i128>() {
        Ok(seconds) if seconds <= 0 => return Err(EventTtlError::NotPositive(text.to_owned())),
        Ok(seconds) => Duration::from_secs(u64::try_from(seconds).unwrap_or(u64::MAX)),
        Err(_) if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => {
            // Digits only, but beyond i128: as long as daprd's cap.
            MAX_EVENT_TTL
        }
        Err(_) => match tandem_spec::parse_duration(text) {
            Ok(ttl) if !ttl.is_zero() => ttl,
            _ => return Err(EventTtlError::NotADuration(text.to_owned())),
        },
    };
    Ok(ttl.min(MAX_EVENT_TTL))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ttls_are_read_as_daprd_reads_them() {
        assert_eq!(event_ttl("60"), Ok(Duration::from_secs(60)));
        assert_eq!(event_ttl(" 90s "), Ok(Duration::from_secs(90)));
        assert_eq!(event_ttl("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(event_ttl("9223372036854775807"), Ok(MAX_EVENT_TTL));
        assert_eq!(
            event_ttl("99999999999999999999999999999999999999999999"),
            Ok(MAX_EVENT_TTL)
        );
        for bad in ["0", "-1", "-9223372036854775808", "soon", "", "1e3", "0s"] {
            let error = event_ttl(bad).unwrap_err().to_string();
            assert!(error.contains("ttlInSeconds"), "{bad}: {error}");
        }
    }
}
