//! Bulk subscriptions (`bulkSubscribe.enabled`): batches of events, gathered by
//! [`Batcher`](super::batch::Batcher), delivered in one call — to an HTTP app as daprd's
//! bulk envelope POSTed to the route, to a gRPC app as `OnBulkTopicEvent` — and settled
//! one by one by the app's per-entry statuses.
//!
//! The HTTP envelope: `{"id", "type": "com.dapr.event.sent.bulk", "pubsubname",
//! "topic", "metadata": {}, "entries": [{"entryId", "event", "contentType",
//! "metadata"}]}`, each `event` the CloudEvent (`application/cloudevents+json`) — or,
//! for `rawPayload`, the broker's bytes in base64 (`application/octet-stream`). The app
//! answers `{"statuses": [{"entryId", "status": "SUCCESS" | "RETRY" | "DROP"}]}`.
//!
//! An entry the answer leaves out, or an answer that cannot be read, is not done: it is
//! delivered again, never acknowledged. Events of one batch that their routing rules
//! send to different paths go in one call per path. Dead-letter topics apply per event,
//! as for single deliveries. Bulk calls are made once: a failed one is redelivered by the
//! broker rather than retried by the resiliency policy.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use tandem_components::pubsub::{Message, Outcome};

use super::batch::DeliverBatch;
use super::deliver::{AppDelivery, Ending, Prepared};
use crate::app_channel::bulk_entry;

/// The `type` of a bulk envelope, as daprd names it.
const BULK_EVENT_TYPE: &str = "com.dapr.event.sent.bulk";

/// Delivers one bulk subscription's batches.
pub(crate) struct BulkDelivery {
    pub single: Arc<AppDelivery>,
}

#[async_trait]
impl DeliverBatch for BulkDelivery {
    async fn deliver_batch(&self, batch: &[Message]) -> Vec<Outcome> {
        let mut endings: Vec<Option<(Ending, String)>> = vec![None; batch.len()];
        // The events by route, each with its place in the batch.
        let mut by_route: BTreeMap<String, Vec<(usize, Prepared)>> = BTreeMap::new();
        for (index, message) in batch.iter().enumerate() {
            match self.single.prepare(message) {
                Ok(prepared) => by_route
                    .entry(prepared.route.clone())
                    .or_default()
                    .push((index, prepared)),
                Err(ending) => endings[index] = Some(ending),
            }
        }
        for (route, events) in by_route {
            let answers = self.send(&route, &events, batch).await;
            for ((index, prepared), outcome) in events.iter().zip(answers) {
                let id = &prepared.id;
                endings[*index] = Some(match outcome {
                    Outcome::Done => (Ending::Done, String::new()),
                    Outcome::Drop => (Ending::Refused, format!("event {id}: the app dropped it")),
                    Outcome::Retry => (
                        Ending::GaveUp,
                        format!("event {id}: the app did not process it"),
                    ),
                });
            }
        }
        let mut outcomes = Vec::with_capacity(batch.len());
        for (message, ending) in batch.iter().zip(endings) {
            let (ending, why) = ending.unwrap_or((Ending::GaveUp, "not delivered".into()));
            outcomes.push(self.single.settle(message, ending, why).await);
        }
        outcomes
    }
}

/// An HTTP app's answer to a bulk delivery.
#[derive(Deserialize)]
struct BulkAnswer {
    #[serde(default)]
    statuses: Vec<EntryStatus>,
}

#[derive(Deserialize)]
struct EntryStatus {
    #[serde(rename = "entryId", default)]
    entry_id: String,
    #[serde(default)]
    status: String,
}

impl BulkDelivery {
    /// One call with `events` (all for `route`); one outcome per event, in order.
    async fn send(
        &self,
        route: &str,
        events: &[(usize, Prepared)],
        batch: &[Message],
    ) -> Vec<Outcome> {
        let subscription = &self.single.subscription;
        let raw = self.single.raw_payload();
        let entry_ids: Vec<String> = (0..events.len())
            .map(|_| uuid::Uuid::new_v4().to_string())
            .collect();
        let statuses = if let Some(grpc) = self.single.app.grpc() {
            let mut entries = Vec::with_capacity(events.len());
            for ((index, prepared), entry_id) in events.iter().zip(&entry_ids) {
                let bytes = raw.then(|| batch[*index].data.as_ref());
                match bulk_entry(entry_id.clone(), &prepared.event, bytes) {
                    Ok(entry) => entries.push(entry),
                    Err(why) => tracing::warn!(
                        pubsub = %subscription.pubsub, topic = %subscription.topic, event = %prepared.id,
                        "cannot put the event in a bulk request ({why}); it will be redelivered"
                    ),
                }
            }
            let request = tandem_proto::runtime::TopicEventBulkRequest {
                id: uuid::Uuid::new_v4().to_string(),
                entries,
                metadata: HashMap::new(),
                topic: subscription.topic.clone(),
                pubsub_name: subscription.pubsub.clone(),
                r#type: BULK_EVENT_TYPE.into(),
                path: route.to_owned(),
            };
            let _permit = self.single.app.permit().await;
            grpc.deliver_bulk(request).await
        } else {
            self.send_http(route, events, batch, &entry_ids, raw).await
        };
        match statuses {
            Ok(statuses) => {
                let by_id: HashMap<String, Outcome> = statuses.into_iter().collect();
                let missing = entry_ids
                    .iter()
                    .filter(|id| !by_id.contains_key(*id))
                    .count();
                if missing > 0 {
                    tracing::warn!(
                        pubsub = %subscription.pubsub, topic = %subscription.topic,
                        "the app's answer to a bulk delivery to {route} has no status for {missing} of its {} events; they will be redelivered",
                        entry_ids.len()
                    );
                }
                entry_ids
                    .iter()
                    .map(|id| by_id.get(id).copied().unwrap_or(Outcome::Retry))
                    .collect()
            }
            Err((outcome, why)) => {
                tracing::warn!(
                    pubsub = %subscription.pubsub, topic = %subscription.topic,
                    "bulk delivery of {} events to {}: {why}",
                    entry_ids.len(),
                    if route.is_empty() { "the app" } else { route }
                );
                vec![outcome; entry_ids.len()]
            }
        }
    }

    /// POSTs daprd's bulk envelope to `route` and reads the per-entry statuses.
    async fn send_http(
        &self,
        route: &str,
        events: &[(usize, Prepared)],
        batch: &[Message],
        entry_ids: &[String],
        raw: bool,
    ) -> Result<Vec<(String, Outcome)>, (Outcome, String)> {
        let subscription = &self.single.subscription;
        let entries: Vec<Value> = events
            .iter()
            .zip(entry_ids)
            .map(|((index, prepared), entry_id)| {
                if raw {
                    json!({
                        "entryId": entry_id,
                        "event": base64::engine::general_purpose::STANDARD.encode(&batch[*index].data),
                        "contentType": "application/octet-stream",
                        "metadata": {},
                    })
                } else {
                    json!({
                        "entryId": entry_id,
                        "event": prepared.event,
                        "contentType": crate::cloudevent::CLOUDEVENT_CONTENT_TYPE,
                        "metadata": {},
                    })
                }
            })
            .collect();
        let envelope = json!({
            "id": uuid::Uuid::new_v4().to_string(),
            "type": BULK_EVENT_TYPE,
            "pubsubname": subscription.pubsub,
            "topic": subscription.topic,
            "metadata": {},
            "entries": entries,
        });
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Ok(pubsub) = HeaderValue::from_str(&subscription.pubsub) {
            headers.insert("pubsubname", pubsub);
        }
        let body = Bytes::from(envelope.to_string());
        let response = self
            .single
            .app
            .call(Method::POST, route, headers, body)
            .await
            .map_err(|error| (Outcome::Retry, error.to_string()))?;
        if response.status == StatusCode::NOT_FOUND {
            return Err((Outcome::Drop, "the app answered 404 Not Found".into()));
        }
        if !response.status.is_success() {
            return Err((
                Outcome::Retry,
                format!("the app answered {}", response.status),
            ));
        }
        let answer: BulkAnswer = serde_json::from_slice(&response.body).map_err(|error| {
            (
                Outcome::Retry,
                format!("the app's answer is not a list of statuses: {error}"),
            )
        })?;
        Ok(answer
            .statuses
            .into_iter()
            .map(|entry| {
                let outcome = match entry.status.to_ascii_uppercase().as_str() {
                    "SUCCESS" => Outcome::Done,
                    "DROP" => Outcome::Drop,
                    _ => Outcome::Retry,
                };
                (entry.entry_id, outcome)
            })
            .collect())
    }
}
