//! `bindings.kafka` against a private `tansu` broker on a free port: `create` writes to
//! `publishTopic` with the request's metadata as headers, reading joins `consumerGroup`
//! on `topics` and hands each record over with its metadata, committing it only once
//! taken.

use std::sync::Arc;
use std::time::Duration;

use tandem_components::bindings::{Binding, Outcome};
use tandem_testkit::KafkaServer;
use tokio_util::sync::CancellationToken;

mod support;
use support::bindings::{Events, create, next_event};

async fn binding(values: &[(&str, &str)]) -> Result<Arc<dyn Binding>, String> {
    support::bindings::binding("bindings.kafka", "orders", values).await
}

#[tokio::test]
async fn create_writes_and_reading_hands_over_each_record_with_its_metadata() {
    let server = KafkaServer::start();
    let brokers = server.brokers();
    let common = [
        ("brokers", brokers.as_str()),
        ("authType", "none"),
        ("initialOffset", "oldest"),
    ];
    let writer = binding(&[&common[..], &[("publishTopic", "orders")]].concat())
        .await
        .unwrap();
    assert_eq!(writer.operations(), ["create"]);
    assert!(!writer.reads(), "no topics: output only");
    let read_settings = [
        &common[..],
        &[("topics", "orders, returns"), ("consumerGroup", "billing")],
    ]
    .concat();
    let reader = binding(&read_settings).await.unwrap();
    assert!(reader.reads());

    assert_eq!(
        writer
            .invoke(create(
                "{\"id\":1}",
                &[("partitionKey", "customer-9"), ("source", "shop")]
            ))
            .await
            .unwrap(),
        None
    );
    // The same key: the same partition, so the order below holds.
    writer
        .invoke(create("{\"id\":2}", &[("partitionKey", "customer-9")]))
        .await
        .unwrap();

    // Refused once: offered again, in order, before anything is lost.
    let (recorder, mut received) = Events::new(vec![Outcome::Retry]);
    let stop = CancellationToken::new();
    let task = reader.read(recorder, stop.clone()).await.unwrap();
    let mut events = Vec::new();
    while events.len() < 3 {
        events.push(
            next_event(&mut received, Duration::from_secs(10))
                .await
                .expect("the records"),
        );
    }
    let first = &events[0];
    assert_eq!(first.data, "{\"id\":1}");
    assert_eq!(first.metadata["__key"], "customer-9");
    assert_eq!(first.metadata["source"], "shop");
    assert_eq!(first.metadata["__topic"], "orders");
    assert!(first.metadata.contains_key("__offset"));
    assert_eq!(events[1].data, events[0].data, "the refused record again");
    assert_eq!(events[2].data, "{\"id\":2}");
    stop.cancel();
    task.await.unwrap();

    // Taken records were committed: the group goes on after them.
    writer.invoke(create("{\"id\":3}", &[])).await.unwrap();
    let reader = binding(&read_settings).await.unwrap();
    let (recorder, mut received) = Events::new(vec![]);
    let stop = CancellationToken::new();
    let task = reader.read(recorder, stop.clone()).await.unwrap();
    let event = next_event(&mut received, Duration::from_secs(10))
        .await
        .expect("the new record");
    assert_eq!(event.data, "{\"id\":3}");
    assert!(
        next_event(&mut received, Duration::from_secs(1))
            .await
            .is_none()
    );
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn wrong_settings_name_the_field() {
    let error = binding(&[
        ("brokers", "127.0.0.1:1"),
        ("authType", "none"),
        ("topics", "orders"),
    ])
    .await
    .err()
    .unwrap();
    assert!(error.contains("consumerGroup"), "{error}");
    let server = KafkaServer::start();
    let writer = binding(&[("brokers", &server.brokers()), ("authType", "none")])
        .await
        .unwrap();
    let error = writer
        .invoke(create("x", &[]))
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("publishTopic"), "{error}");
}
