//! Streaming subscriptions (`SubscribeTopicEventsAlpha1`) against a real sidecar: the
//! initial response comes first, then the events; answers decide what happens to them;
//! a stream without an initial request, or for a pub/sub that is not loaded, is refused.

mod common;

use std::time::Duration;

use tandem_proto::runtime::subscribe_topic_events_request_alpha1::SubscribeTopicEventsRequestType as Incoming;
use tandem_proto::runtime::subscribe_topic_events_response_alpha1::SubscribeTopicEventsResponseType as Outgoing;
use tandem_proto::runtime::{
    PublishEventRequest, SubscribeTopicEventsRequestAlpha1,
    SubscribeTopicEventsRequestInitialAlpha1, SubscribeTopicEventsRequestProcessedAlpha1,
    TopicEventRequest, TopicEventResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use common::Sidecar;

fn resources() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("pubsub.yaml"),
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: pubsub\nspec:\n  type: pubsub.in-memory\n  version: v1\n",
    )
    .unwrap();
    dir
}

fn initial(pubsub: &str, topic: &str) -> SubscribeTopicEventsRequestAlpha1 {
    SubscribeTopicEventsRequestAlpha1 {
        subscribe_topic_events_request_type: Some(Incoming::InitialRequest(
            SubscribeTopicEventsRequestInitialAlpha1 {
                pubsub_name: pubsub.into(),
                topic: topic.into(),
                ..Default::default()
            },
        )),
    }
}

fn processed(id: &str, status: i32) -> SubscribeTopicEventsRequestAlpha1 {
    SubscribeTopicEventsRequestAlpha1 {
        subscribe_topic_events_request_type: Some(Incoming::EventProcessed(
            SubscribeTopicEventsRequestProcessedAlpha1 {
                id: id.into(),
                status: Some(TopicEventResponse { status }),
            },
        )),
    }
}

async fn next_event(
    events: &mut tonic::Streaming<tandem_proto::runtime::SubscribeTopicEventsResponseAlpha1>,
) -> TopicEventRequest {
    let response = tokio::time::timeout(Duration::from_secs(10), events.message())
        .await
        .expect("an event within 10 s")
        .unwrap()
        .expect("the stream is open");
    match response.subscribe_topic_events_response_type {
        Some(Outgoing::EventMessage(event)) => event,
        other => panic!("expected an event, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn streamed_events_follow_the_initial_response_and_retries_come_back() {
    let resources = resources();
    let sidecar = Sidecar::start(resources.path(), None, None);
    let mut client = sidecar.grpc().await;
    let (requests, outgoing) = mpsc::channel(8);
    requests.send(initial("pubsub", "orders")).await.unwrap();
    let mut events = client
        .subscribe_topic_events_alpha1(ReceiverStream::new(outgoing))
        .await
        .unwrap()
        .into_inner();
    let first = events.message().await.unwrap().unwrap();
    assert!(matches!(
        first.subscribe_topic_events_response_type,
        Some(Outgoing::InitialResponse(_))
    ));

    let metadata: serde_json::Value = reqwest::get(sidecar.url("/v1.0/metadata"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        metadata["subscriptions"][0]["type"], "STREAMING",
        "{metadata}"
    );

    for data in ["one", "two"] {
        client
            .publish_event(PublishEventRequest {
                pubsub_name: "pubsub".into(),
                topic: "orders".into(),
                data: data.as_bytes().to_vec(),
                data_content_type: "text/plain".into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let one = next_event(&mut events).await;
    assert_eq!(
        (
            one.data.as_slice(),
            one.topic.as_str(),
            one.pubsub_name.as_str()
        ),
        (&b"one"[..], "orders", "pubsub")
    );
    assert_eq!(one.path, "/");
    let two = next_event(&mut events).await;
    assert_eq!(two.data, b"two");
    // RETRY brings "one" back; SUCCESS for "two" does not.
    requests.send(processed(&one.id, 1)).await.unwrap();
    requests.send(processed(&two.id, 0)).await.unwrap();
    let again = next_event(&mut events).await;
    assert_eq!(
        (again.id.as_str(), again.data.as_slice()),
        (one.id.as_str(), &b"one"[..])
    );
    requests.send(processed(&again.id, 2)).await.unwrap();
    let more = tokio::time::timeout(Duration::from_secs(2), events.message()).await;
    assert!(more.is_err(), "nothing more: {more:?}");

    // Closing the stream ends the subscription.
    drop(requests);
    drop(events);
    let mut gone = false;
    for _ in 0..100 {
        let metadata: serde_json::Value = reqwest::get(sidecar.url("/v1.0/metadata"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if metadata
            .get("subscriptions")
            .and_then(|list| list.as_array())
            .is_none_or(Vec::is_empty)
        {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "the closed stream leaves the metadata API");
}

#[tokio::test(flavor = "multi_thread")]
async fn streams_without_an_initial_request_or_a_loaded_pubsub_are_refused() {
    let resources = resources();
    let sidecar = Sidecar::start(resources.path(), None, None);
    let mut client = sidecar.grpc().await;

    let refused = client
        .subscribe_topic_events_alpha1(tokio_stream::iter([processed("x", 0)]))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unknown);
    assert_eq!(refused.message(), "initial request is required");

    let (requests, outgoing) = mpsc::channel(1);
    requests.send(initial("nope", "orders")).await.unwrap();
    let refused = client
        .subscribe_topic_events_alpha1(ReceiverStream::new(outgoing))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(refused.message().contains("nope"), "{}", refused.message());
}
