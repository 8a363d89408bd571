//! `bindings.rabbitmq` against a real RabbitMQ: the machine's broker when it runs (each
//! test on a queue of its own, deleted when unused), a private node for the restart test.

use std::sync::Arc;
use std::time::Duration;

use tandem_components::bindings::{self, Binding, Outcome};
use tandem_testkit::{RabbitMq, RabbitMqServer};
use tokio_util::sync::CancellationToken;

mod support;
use support::bindings::{Events, create, next_event};

async fn binding(url: &str, queue: &str, extra: &[(&str, &str)]) -> Arc<dyn Binding> {
    let mut values = vec![
        ("host", url),
        ("queueName", queue),
        ("deleteWhenUnused", "true"),
        ("reconnectWaitInSeconds", "1"),
    ];
    values.extend_from_slice(extra);
    support::bindings::binding("bindings.rabbitmq", "queue", &values)
        .await
        .unwrap_or_else(|error| panic!("bindings.rabbitmq builds: {error}"))
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

#[tokio::test]
async fn create_puts_a_message_on_the_queue_and_reading_hands_it_over_with_its_headers() {
    let broker = RabbitMq::shared();
    let queue = unique("jobs");
    let binding = binding(&broker.url(), &queue, &[]).await;
    assert_eq!(binding.operations(), ["create"]);
    assert!(binding.reads());
    let answer = binding
        .invoke(create(
            "first",
            &[("tenant", "acme"), ("ttlInSeconds", "60")],
        ))
        .await
        .unwrap();
    assert_eq!(answer, None, "create answers nothing, as Dapr's");

    let (recorder, mut seen) = Events::new(vec![Outcome::Retry]);
    let stop = CancellationToken::new();
    let reader = binding.read(recorder, stop.clone()).await.unwrap();
    let event = next_event(&mut seen, Duration::from_secs(5))
        .await
        .expect("the message");
    assert_eq!(event.data, "first");
    assert_eq!(
        event.metadata.get("tenant").map(String::as_str),
        Some("acme")
    );
    // Refused once: it comes back.
    let again = next_event(&mut seen, Duration::from_secs(5))
        .await
        .expect("the message again");
    assert_eq!(again.data, "first");
    binding.invoke(create("second", &[])).await.unwrap();
    let second = next_event(&mut seen, Duration::from_secs(5))
        .await
        .expect("the second");
    assert_eq!(second.data, "second");
    assert!(
        next_event(&mut seen, Duration::from_millis(700))
            .await
            .is_none(),
        "taken ones are acknowledged"
    );
    stop.cancel();
    reader.await.unwrap();
}

#[tokio::test]
async fn bad_request_metadata_is_the_callers_error() {
    let broker = RabbitMq::shared();
    let binding = binding(&broker.url(), &unique("jobs"), &[]).await;
    for (key, value) in [("ttlInSeconds", "-5"), ("priority", "high")] {
        let error = binding
            .invoke(create("x", &[(key, value)]))
            .await
            .unwrap_err();
        assert!(
            matches!(error, bindings::BindingError::Invalid(_)),
            "{key}: {error}"
        );
        assert!(error.to_string().contains(key), "{error}");
    }
}

#[tokio::test]
async fn reading_and_writing_resume_after_a_broker_restart() {
    let mut server = RabbitMqServer::start();
    let queue = unique("restart");
    let durable = [("durable", "true"), ("deleteWhenUnused", "false")];
    let binding = binding(&server.url(), &queue, &durable).await;
    let (recorder, mut seen) = Events::new(vec![]);
    let stop = CancellationToken::new();
    let reader = binding.read(recorder, stop.clone()).await.unwrap();
    binding.invoke(create("before", &[])).await.unwrap();
    assert_eq!(
        next_event(&mut seen, Duration::from_secs(5))
            .await
            .unwrap()
            .data,
        "before"
    );

    server.stop();
    assert!(
        binding.invoke(create("while down", &[])).await.is_err(),
        "writing to a stopped broker fails loudly"
    );
    server.start_again();
    let mut written = false;
    for _ in 0..60 {
        if binding.invoke(create("after", &[])).await.is_ok() {
            written = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(written, "writing resumes by itself");
    // At least once: "before" may come again if its acknowledgement was cut off by the
    // stop; nothing else may.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let event = tokio::time::timeout_at(deadline, seen.recv())
            .await
            .ok()
            .flatten()
            .expect("reading resumes by itself");
        if event.data == "after" {
            break;
        }
        assert_eq!(event.data, "before");
    }
    stop.cancel();
    reader.await.unwrap();
}
