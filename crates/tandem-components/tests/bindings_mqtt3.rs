//! `bindings.mqtt3` against a private Mosquitto on a free port: `create` publishes to the
//! component's topic (or the request's), reading hands each message over with its topic
//! and acknowledges it only once taken.

use std::sync::Arc;
use std::time::Duration;

use tandem_components::bindings::{Binding, Outcome};
use tandem_testkit::MosquittoServer;
use tokio_util::sync::CancellationToken;

mod support;
use support::bindings::{Events, create, next_event};

async fn binding(values: &[(&str, &str)]) -> Result<Arc<dyn Binding>, String> {
    support::bindings::binding("bindings.mqtt3", "sensors", values).await
}

#[tokio::test]
async fn create_publishes_and_reading_hands_over_each_message_with_its_topic() {
    let broker = MosquittoServer::start();
    let url = format!("tcp://{}", broker.address());
    let reader = binding(&[("url", &url), ("topic", "sensors/#")])
        .await
        .unwrap();
    let writer = binding(&[("url", &url), ("topic", "sensors/kitchen")])
        .await
        .unwrap();
    assert_eq!(writer.operations(), ["create"]);

    let (recorder, mut received) = Events::new(vec![Outcome::Retry]);
    let stop = CancellationToken::new();
    let task = reader.read(recorder, stop.clone()).await.unwrap();

    assert_eq!(writer.invoke(create("21.5", &[])).await.unwrap(), None);
    writer
        .invoke(create("19.0", &[("topic", "sensors/hall")]))
        .await
        .unwrap();
    let first = next_event(&mut received, Duration::from_secs(5))
        .await
        .expect("the first reading");
    assert_eq!(first.data, "21.5");
    assert_eq!(first.metadata["topic"], "sensors/kitchen");
    // Refused once: offered again before anything is lost.
    let mut rest = Vec::new();
    while rest.len() < 2 {
        let event = next_event(&mut received, Duration::from_secs(5))
            .await
            .expect("more readings");
        rest.push((event.metadata["topic"].clone(), event.data));
    }
    rest.sort();
    assert_eq!(
        rest,
        [
            ("sensors/hall".to_owned(), "19.0".into()),
            ("sensors/kitchen".to_owned(), "21.5".into())
        ]
    );
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn wrong_settings_name_the_field() {
    let error = binding(&[("url", "tcp://127.0.0.1:1")])
        .await
        .err()
        .unwrap();
    assert!(error.contains("topic"), "{error}");
    let error = binding(&[
        ("url", "tcp://127.0.0.1:1"),
        ("topic", "t"),
        ("backOffMaxRetries", "x"),
    ])
    .await
    .err()
    .unwrap();
    assert!(error.contains("backOffMaxRetries"), "{error}");
}
