//! `SubscribeTopicEventsAlpha1`: the gRPC door of streaming subscriptions. The first
//! request names the pub/sub and topic; once the subscription is made the sidecar sends
//! the initial response, then each event as a `TopicEventRequest`; the app answers each
//! one with `event_processed` (its id and `SUCCESS`/`RETRY`/`DROP`). Events still
//! unanswered when the stream ends are delivered again.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;

use tandem_proto::runtime as pb;
use tandem_proto::runtime::subscribe_topic_events_request_alpha1::SubscribeTopicEventsRequestType as Incoming;
use tandem_proto::runtime::subscribe_topic_events_response_alpha1::SubscribeTopicEventsResponseType as Outgoing;
use tandem_runtime::{EventStream, Outcome, Runtime, StreamRequest};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::error::ApiError;

/// The stream of responses the door returns.
pub(super) type Events = Pin<
    Box<
        dyn tokio_stream::Stream<Item = Result<pb::SubscribeTopicEventsResponseAlpha1, Status>>
            + Send,
    >,
>;

/// How many responses may wait for the app to read them.
const WAITING: usize = 16;

pub(super) async fn subscribe(
    runtime: &Runtime,
    request: Request<Streaming<pb::SubscribeTopicEventsRequestAlpha1>>,
) -> Result<Response<Events>, Status> {
    let mut incoming = request.into_inner();
    let Some(Incoming::InitialRequest(initial)) = incoming
        .message()
        .await?
        .and_then(|first| first.subscribe_topic_events_request_type)
    else {
        // daprd's words; the SDKs show them.
        return Err(Status::unknown("initial request is required"));
    };
    let events = runtime
        .subscriptions()
        .stream(StreamRequest {
            pubsub: initial.pubsub_name,
            topic: initial.topic,
            metadata: initial.metadata.into_iter().collect(),
            dead_letter_topic: initial.dead_letter_topic,
        })
        .await
        .map_err(ApiError::from)?;
    let (out, responses) = mpsc::channel(WAITING);
    // The initial response goes first, before any event: the SDKs wait for it.
    let _ = out
        .send(Ok(pb::SubscribeTopicEventsResponseAlpha1 {
            subscribe_topic_events_response_type: Some(Outgoing::InitialResponse(
                pb::SubscribeTopicEventsResponseInitialAlpha1 {},
            )),
        }))
        .await;
    tokio::spawn(pump(events, incoming, out));
    Ok(Response::new(Box::pin(ReceiverStream::new(responses))))
}

/// Moves events out and answers in, until the app closes its side, cancels, or stops
/// reading. Dropping the unanswered events' answer senders makes them come again.
async fn pump(
    mut events: EventStream,
    mut incoming: Streaming<pb::SubscribeTopicEventsRequestAlpha1>,
    out: mpsc::Sender<Result<pb::SubscribeTopicEventsResponseAlpha1, Status>>,
) {
    // Answers awaited, by event id; one id may be in flight twice (a redelivery).
    let mut waiting: HashMap<String, VecDeque<oneshot::Sender<Outcome>>> = HashMap::new();
    loop {
        tokio::select! {
            event = events.events.recv() => {
                let Some(event) = event else { break };
                let id = event
                    .event
                    .get("id")
                    .and_then(|id| id.as_str())
                    .unwrap_or_default()
                    .to_owned();
                match tandem_runtime::topic_event(&event.event, &event.pubsub, &event.topic, "/") {
                    Ok(message) => {
                        waiting.entry(id).or_default().push_back(event.answer);
                        let response = pb::SubscribeTopicEventsResponseAlpha1 {
                            subscribe_topic_events_response_type: Some(Outgoing::EventMessage(message)),
                        };
                        if out.send(Ok(response)).await.is_err() {
                            break;
                        }
                    }
                    Err(why) => {
                        tracing::warn!(pubsub = %event.pubsub, topic = %event.topic, event = %id, "cannot stream the event ({why}); it will be redelivered");
                        let _ = event.answer.send(Outcome::Retry);
                    }
                }
            }
            request = incoming.message() => {
                let processed = match request {
                    Ok(Some(pb::SubscribeTopicEventsRequestAlpha1 {
                        subscribe_topic_events_request_type: Some(Incoming::EventProcessed(processed)),
                    })) => processed,
                    Ok(Some(_)) => {
                        tracing::warn!("a streaming subscriber sent a second initial request; ignored");
                        continue;
                    }
                    // The app closed its side or went away.
                    Ok(None) | Err(_) => break,
                };
                let answer = waiting.get_mut(&processed.id).and_then(VecDeque::pop_front);
                if waiting.get(&processed.id).is_some_and(VecDeque::is_empty) {
                    waiting.remove(&processed.id);
                }
                match answer {
                    Some(answer) => {
                        let _ = answer.send(outcome(processed.status.as_ref()));
                    }
                    None => tracing::warn!(event = %processed.id, "a streaming subscriber answered an event it was not sent; ignored"),
                }
            }
            () = out.closed() => break,
        }
    }
}

/// What the app's answer means: a missing status is `SUCCESS` (the protobuf default),
/// the rest as for any gRPC subscriber.
fn outcome(status: Option<&pb::TopicEventResponse>) -> Outcome {
    status.map_or(Outcome::Done, |status| {
        tandem_runtime::outcome_of_status(status.status)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_as_daprd_reads_them() {
        let status = |status| Some(pb::TopicEventResponse { status });
        assert_eq!(outcome(None), Outcome::Done);
        assert_eq!(outcome(status(0).as_ref()), Outcome::Done);
        assert_eq!(outcome(status(1).as_ref()), Outcome::Retry);
        assert_eq!(outcome(status(2).as_ref()), Outcome::Drop);
        assert_eq!(outcome(status(9).as_ref()), Outcome::Retry);
    }
}
