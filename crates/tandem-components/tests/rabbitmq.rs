//! `pubsub.rabbitmq` against a real RabbitMQ: the machine's broker on 127.0.0.1:5672
//! when it runs (every test uses topics and consumer ids of its own), otherwise a private
//! node; the restart test always starts a private node, which it stops and starts.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use lapin::options::{BasicGetOptions, QueueDeleteOptions};
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use tandem_components::pubsub::{Outcome, PubSub, Subscribe};
use tandem_spec::{Component, ComponentMetadata};
use tandem_testkit::{RabbitMq, RabbitMqServer};
use tokio_util::sync::CancellationToken;

mod support;
use support::*;

/// A name no other test run uses.
fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A `pubsub.rabbitmq` whose queues go when their subscribers do (so tests leave nothing
/// on the machine's broker), unless `extra` says `deletedWhenUnused: false`.
async fn rabbit(url: &str, consumer: &str, extra: &[(&str, &str)]) -> Arc<dyn PubSub> {
    let mut values = vec![
        ("connectionString", url),
        ("consumerID", consumer),
        ("deletedWhenUnused", "true"),
    ];
    values.extend_from_slice(extra);
    build("pubsub.rabbitmq", &values).await
}

/// Removes what a test declared with `deletedWhenUnused: false`.
async fn delete_queues(url: &str, queues: &[String]) {
    let connection = Connection::connect(url, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    for queue in queues {
        let _ = channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
}

#[tokio::test]
async fn delivers_to_every_app_once_and_shares_between_replicas() {
    let broker = RabbitMq::shared();
    let url = broker.url();
    let topic = unique("orders");
    let (app_a, app_b) = (unique("app-a"), unique("app-b"));
    let stop = CancellationToken::new();

    // Two replicas of app A share its queue; app B has its own.
    let (a1, mut seen_a1) = Recorder::new(vec![]);
    let (a2, mut seen_a2) = Recorder::new(vec![]);
    let (b, mut seen_b) = Recorder::new(vec![]);
    let mut tasks = Vec::new();
    for (consumer, recorder) in [(&app_a, a1), (&app_a, a2), (&app_b, b)] {
        let pubsub = rabbit(&url, consumer, &[]).await;
        tasks.push(
            pubsub
                .subscribe(subscription(&topic), recorder, stop.clone())
                .await
                .unwrap(),
        );
    }
    let publisher = rabbit(&url, &app_a, &[]).await;
    for n in 0..20 {
        publisher
            .publish(message(&topic, &format!("m{n}")))
            .await
            .unwrap();
    }
    let mut for_b = Vec::new();
    while let Some(data) = next(&mut seen_b, Duration::from_secs(5)).await {
        for_b.push(data);
        if for_b.len() == 20 {
            break;
        }
    }
    assert_eq!(for_b.len(), 20, "app B gets every message");
    let mut for_a = Vec::new();
    for seen in [&mut seen_a1, &mut seen_a2] {
        while let Some(data) = next(seen, Duration::from_millis(500)).await {
            for_a.push(data);
        }
    }
    for_a.sort();
    let mut expected: Vec<String> = (0..20).map(|n| format!("m{n}")).collect();
    expected.sort();
    assert_eq!(
        for_a, expected,
        "app A's replicas share the messages, once each"
    );
    stop.cancel();
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test]
async fn a_retry_comes_back_and_a_drop_does_not() {
    let broker = RabbitMq::shared();
    let url = broker.url();
    let topic = unique("retries");
    let pubsub = rabbit(&url, &unique("app"), &[]).await;
    let (recorder, mut seen) = Recorder::new(vec![Outcome::Retry, Outcome::Drop]);
    let stop = CancellationToken::new();
    let task = pubsub
        .subscribe(subscription(&topic), recorder, stop.clone())
        .await
        .unwrap();
    pubsub.publish(message(&topic, "again")).await.unwrap();
    for _ in 0..2 {
        assert_eq!(
            next(&mut seen, Duration::from_secs(5)).await.as_deref(),
            Some("again")
        );
    }
    assert_eq!(next(&mut seen, Duration::from_secs(1)).await, None);
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn an_unfinished_delivery_goes_to_the_next_subscriber() {
    let broker = RabbitMq::shared();
    let url = broker.url();
    let topic: &'static str = Box::leak(unique("jobs").into_boxed_str());
    let app = unique("app");
    let durable = [("deletedWhenUnused", "false")];
    {
        let (url, app) = (url.clone(), app.clone());
        crash_mid_delivery(
            move || Box::pin(async move { rabbit(&url, &app, &durable).await }),
            topic,
        );
    }
    let pubsub = rabbit(&url, &app, &durable).await;
    let (recorder, mut seen) = Recorder::new(vec![]);
    let stop = CancellationToken::new();
    let task = pubsub
        .subscribe(subscription(topic), recorder, stop.clone())
        .await
        .unwrap();
    assert_eq!(
        next(&mut seen, Duration::from_secs(10)).await.as_deref(),
        Some("unfinished")
    );
    stop.cancel();
    task.await.unwrap();
    delete_queues(&url, &[format!("{app}-{topic}")]).await;
}

#[tokio::test]
async fn a_refused_message_goes_to_the_dead_letter_queue_when_asked() {
    let broker = RabbitMq::shared();
    let url = broker.url();
    let topic = unique("refused");
    let app = unique("app");
    let pubsub = rabbit(
        &url,
        &app,
        &[("enableDeadLetter", "true"), ("deletedWhenUnused", "false")],
    )
    .await;
    let (recorder, mut seen) = Recorder::new(vec![Outcome::Retry]);
    let stop = CancellationToken::new();
    let task = pubsub
        .subscribe(subscription(&topic), recorder, stop.clone())
        .await
        .unwrap();
    pubsub.publish(message(&topic, "poison")).await.unwrap();
    assert_eq!(
        next(&mut seen, Duration::from_secs(5)).await.as_deref(),
        Some("poison")
    );
    assert_eq!(next(&mut seen, Duration::from_secs(1)).await, None);
    stop.cancel();
    task.await.unwrap();

    let queue = format!("{app}-{topic}");
    let dead = format!("dlq-{queue}");
    let connection = Connection::connect(&url, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let got = channel
        .basic_get(dead.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("the refused message is in the dead-letter queue");
    assert_eq!(got.delivery.data, b"poison");
    delete_queues(&url, &[queue, dead]).await;
}

#[tokio::test]
async fn routing_keys_select_what_a_subscription_gets() {
    let broker = RabbitMq::shared();
    let url = broker.url();
    let topic = unique("events");
    let pubsub = rabbit(&url, &unique("app"), &[("exchangeKind", "topic")]).await;
    let (recorder, mut seen) = Recorder::new(vec![]);
    let stop = CancellationToken::new();
    let task = pubsub
        .subscribe(
            Subscribe {
                topic: topic.clone(),
                metadata: HashMap::from([("routingKey".to_owned(), "eu.*,us.east".to_owned())]),
            },
            recorder,
            stop.clone(),
        )
        .await
        .unwrap();
    for (key, data) in [("eu.west", "1"), ("asia.x", "2"), ("us.east", "3")] {
        let mut published = message(&topic, data);
        published
            .metadata
            .insert("routingKey".to_owned(), key.to_owned());
        pubsub.publish(published).await.unwrap();
    }
    assert_eq!(
        next(&mut seen, Duration::from_secs(5)).await.as_deref(),
        Some("1")
    );
    assert_eq!(
        next(&mut seen, Duration::from_secs(5)).await.as_deref(),
        Some("3")
    );
    assert_eq!(next(&mut seen, Duration::from_millis(500)).await, None);
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn a_mismatched_exchange_fails_the_publish_loudly() {
    let broker = RabbitMq::shared();
    let url = broker.url();
    let topic = unique("kinds");
    // The exchange exists as `direct`; this component wants `fanout`.
    let connection = Connection::connect(&url, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel
        .exchange_declare(
            topic.as_str().into(),
            ExchangeKind::Direct,
            lapin::options::ExchangeDeclareOptions {
                auto_delete: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .unwrap();
    let pubsub = rabbit(&url, &unique("app"), &[]).await;
    let error = pubsub
        .publish(message(&topic, "x"))
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains(&topic), "{error}");
    assert!(error.contains("PRECONDITION_FAILED"), "{error}");
    // The component recovers for the next topic.
    pubsub.publish(message(&unique("ok"), "x")).await.unwrap();
}

#[tokio::test]
async fn delivery_and_publishing_resume_after_a_broker_restart() {
    let mut server = RabbitMqServer::start();
    let url = server.url();
    let topic = unique("restart");
    let pubsub = rabbit(
        &url,
        "app",
        &[
            ("reconnectWaitSeconds", "1"),
            ("deliveryMode", "2"),
            ("deletedWhenUnused", "false"),
        ],
    )
    .await;
    let (recorder, mut seen) = Recorder::new(vec![]);
    let stop = CancellationToken::new();
    let task = pubsub
        .subscribe(subscription(&topic), recorder, stop.clone())
        .await
        .unwrap();
    pubsub.publish(message(&topic, "before")).await.unwrap();
    assert_eq!(
        next(&mut seen, Duration::from_secs(5)).await.as_deref(),
        Some("before")
    );

    server.stop();
    let failed = pubsub.publish(message(&topic, "while down")).await;
    assert!(
        failed.is_err(),
        "publishing to a stopped broker fails loudly"
    );
    server.start_again();

    let mut published = false;
    for _ in 0..100 {
        if pubsub.publish(message(&topic, "after")).await.is_ok() {
            published = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(published, "publishing resumes by itself");
    // The durable queue survived the restart and the consumer came back to it. "before"
    // may come again: its acknowledgement may not have reached the broker before it was
    // killed — at least once, never lost.
    loop {
        match next(&mut seen, Duration::from_secs(20)).await.as_deref() {
            Some("after") => break,
            Some("before") => continue,
            other => panic!("expected 'after', got {other:?}"),
        }
    }
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn an_unreachable_broker_stops_start_up_without_showing_the_password() {
    let port = tandem_testkit::free_port();
    let component = Component {
        file: Some("components/rabbit.yaml".into()),
        ..Component::new("orders", "pubsub.rabbitmq")
    };
    let values = [
        (
            "connectionString".to_owned(),
            format!("amqp://user:hunter2@127.0.0.1:{port}"),
        ),
        ("consumerID".to_owned(), "app".to_owned()),
    ];
    let error = tandem_components::pubsub::registry()
        .build(&ComponentMetadata::new(
            component,
            values.into_iter().collect(),
        ))
        .await
        .err()
        .expect("no broker there")
        .to_string();
    assert!(error.starts_with("components/rabbit.yaml"), "{error}");
    assert!(error.contains("connectionString"), "{error}");
    assert!(error.contains(&format!("127.0.0.1:{port}")), "{error}");
    assert!(!error.contains("hunter2"), "{error}");
}
